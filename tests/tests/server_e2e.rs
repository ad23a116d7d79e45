//! End-to-end tests of the demo server (`examples/server`): the real binary, started on a free
//! port, spoken to over real HTTP/1.1 on loopback.
//!
//! The binary is `target/<profile>/examples/server`, which `scripts/test` builds first
//! (`cargo build --example server`). The server process and the client (a few lines of HTTP/1.1
//! over `TcpStream`, `Connection: close`, so the tests measure the server, not a client's pool)
//! are `tests::demo_server`, shared with the fault and soak tests.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tests::RedisServer;
use tests::demo_server::{DemoServer as Server, Response, request};

#[test]
fn a_miss_then_a_hit_runs_one_query() {
    let server = Server::start(&[]);
    let before = server.db_queries();
    let first = server.get("/users/7");
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.json()["id"], 7);
    let after_miss = server.db_queries();
    assert_eq!(after_miss, before + 1, "the miss runs one query");
    let second = server.get("/users/7");
    assert_eq!(second.status, 200);
    assert_eq!(second.body, first.body, "the hit returns the same body");
    assert_eq!(server.db_queries(), after_miss, "the hit runs no query");

    // The same for a page of a user's videos, and a video.
    let page = server.get("/users/7/videos?page=2");
    assert_eq!(page.status, 200, "{page:?}");
    let q = server.db_queries();
    assert_eq!(server.get("/users/7/videos?page=2").body, page.body);
    assert_eq!(server.db_queries(), q);
    let video = server.get("/videos/42");
    assert_eq!(video.status, 200);
    let q = server.db_queries();
    assert_eq!(server.get("/videos/42").body, video.body);
    assert_eq!(server.db_queries(), q);
}

#[test]
fn the_cache_layer_marks_a_miss_then_a_hit() {
    let server = Server::start(&[]);
    let miss = server.get("/videos/43");
    assert_eq!(miss.status, 200);
    let hit = server.get("/videos/43");
    match (miss.header("x-cache"), hit.header("x-cache")) {
        (Some(m), Some(h)) => {
            assert_eq!((m, h), ("MISS", "HIT"));
        }
        (m, h) => panic!("x-cache headers missing: miss {m:?}, hit {h:?}"),
    }
    // Other spellings of the same id are the same entry: a client cannot go around the cache
    // (or fill it) with leading zeros.
    let q = server.db_queries();
    for path in ["/videos/043", "/videos/+43", "/videos/0000043"] {
        let r = server.get(path);
        assert_eq!(
            (r.status, r.header("x-cache")),
            (200, Some("HIT")),
            "{path}"
        );
        assert_eq!(r.body, hit.body, "{path}");
    }
    assert_eq!(server.db_queries(), q);
    // The uncached twin and the constant route go around the cache.
    let raw = server.get("/raw/videos/43");
    assert_eq!((raw.status, raw.body.as_str()), (200, miss.body.as_str()));
    assert_eq!(raw.header("x-cache"), Some("BYPASS"));
    let ping = server.get("/ping");
    assert_eq!((ping.status, ping.body.as_str()), (200, "pong"));
    // A one-character search bypasses the cache; a longer one is a miss, then a hit.
    assert_eq!(server.get("/search?q=a").header("x-cache"), Some("BYPASS"));
    assert_eq!(server.get("/search?q=a").header("x-cache"), Some("BYPASS"));
    assert_eq!(
        server.get("/search?q=Video%201").header("x-cache"),
        Some("MISS")
    );
    let hit = server.get("/search?q=video%201");
    assert_eq!(
        hit.header("x-cache"),
        Some("HIT"),
        "keys are case-insensitive"
    );
    assert_eq!(hit.json()["cacheable"], true);
}

#[test]
fn an_update_is_read_back_fresh() {
    let server = Server::start(&[]);
    let old = server.get("/users/11").json();
    let page = server.get("/users/11/videos").json();
    assert_eq!(page["user_id"], 11);
    let put = server.put_json("/users/11", r#"{"name":"Renamed Eleven"}"#);
    assert_eq!(put.status, 200, "{put:?}");
    assert_eq!(put.json()["name"], "Renamed Eleven");
    let fresh = server.get("/users/11").json();
    assert_eq!(fresh["name"], "Renamed Eleven");
    assert_eq!(fresh["email"], old["email"], "the email is unchanged");
    // The tag dropped the user's video pages too: the next read is a query.
    let q = server.db_queries();
    server.get("/users/11/videos");
    assert_eq!(server.db_queries(), q + 1, "the page was invalidated");
}

#[test]
fn two_hundred_concurrent_cold_requests_run_one_query() {
    let server = Server::start(&[]);
    let addr = server.addr();
    let before = server.db_queries();
    let barrier = Arc::new(Barrier::new(200));
    let threads: Vec<_> = (0..200)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                request(addr, "GET", "/videos/777", None)
            })
        })
        .collect();
    let bodies: Vec<Response> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(bodies.iter().all(|r| r.status == 200));
    assert!(bodies.iter().all(|r| r.body == bodies[0].body));
    assert_eq!(
        server.db_queries(),
        before + 1,
        "200 concurrent cold requests share one query"
    );
}

#[test]
fn bad_inputs_are_json_errors_and_are_not_cached() {
    let server = Server::start(&[]);
    for (path, status) in [
        ("/users/abc", 400),
        ("/users/0", 400),
        ("/users/-3", 400),
        ("/videos/1.5", 400),
        // Beyond SQLite's signed rowids: refused as input, not a failed query (500).
        ("/videos/9223372036854775808", 400),
        ("/users/18446744073709551615", 400),
        ("/users/18446744073709551615/videos", 400),
        ("/templates/9223372036854775808", 400),
        ("/users/999999", 404),
        ("/videos/999999", 404),
        ("/templates/999", 404),
        ("/users/3/videos?page=x", 400),
    ] {
        let r = server.get(path);
        assert_eq!(r.status, status, "{path}: {r:?}");
        let body = r.json();
        assert!(body["error"].is_string(), "{path}: {body}");
        assert_eq!(body["status"], status);
    }
    // An unknown id is asked of the database each time: errors are not cached.
    let q = server.db_queries();
    assert_eq!(server.get("/users/999999").status, 404);
    assert_eq!(server.get("/users/999999").status, 404);
    assert_eq!(server.db_queries(), q + 2, "a 404 is not cached");

    for body in ["{not json", r#"{"nmae":"x"}"#, "{}", r#"{"name":"  "}"#] {
        let r = server.put_json("/users/5", body);
        assert!(r.status == 422 || r.status == 400, "PUT {body}: {r:?}");
    }
    let r = server.put_json("/users/abc", r#"{"name":"x"}"#);
    assert_eq!(r.status, 400);
    let r = server.put_json("/users/999999", r#"{"name":"x"}"#);
    assert_eq!(r.status, 404, "{r:?}");
}

#[test]
fn metrics_are_prometheus_text_and_health_is_json() {
    let server = Server::start(&[]);
    server.get("/users/1");
    server.get("/users/1");
    let m = server.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{:?}",
        m.header("content-type")
    );
    assert!(m.body.contains("# TYPE"), "{}", m.body);
    assert!(m.body.contains("demo_db_queries_total"));
    for line in m
        .body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let value = line.rsplit(' ').next().unwrap();
        assert!(
            value.parse::<f64>().is_ok() || value == "NaN" || value == "+Inf",
            "not a sample line: {line:?}"
        );
    }
    let h = server.get("/health");
    assert_eq!(h.status, 200);
    let h = h.json();
    assert_eq!(h["status"], "ok", "{h}");
    assert!(h["tiers"].is_object(), "{h}");

    let stats = server.stats();
    let users = stats["caches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "users")
        .expect("a users cache in /stats");
    assert!(users["memory"]["hits"].as_u64().unwrap() >= 1, "{users}");
}

#[test]
fn two_servers_sharing_redis_see_each_others_updates_within_100ms() {
    let redis = RedisServer::start();
    let dir = std::env::temp_dir().join(format!("cache-rs-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("demo.sqlite");
    let _ = std::fs::remove_file(&db);
    let db_path = db.to_str().unwrap().to_owned();
    let url = redis.url();
    let env = [("REDIS_URL", url.as_str()), ("DB_PATH", db_path.as_str())];
    // One after the other: the first creates and seeds the file.
    let a = Server::start(&env);
    let b = Server::start(&env);

    // Both warmed every template at start, after their backplane's first subscription (which
    // clears the memory tier): a template is a hit on each, with no query.
    for (name, server) in [("A", &a), ("B", &b)] {
        let q = server.db_queries();
        let template = server.get("/templates/3");
        assert_eq!(
            (template.status, template.header("x-cache")),
            (200, Some("HIT")),
            "{name}: {template:?}"
        );
        assert_eq!(server.db_queries(), q, "{name} warmed its templates");
    }

    for round in 0..3 {
        assert_eq!(a.get("/users/21").status, 200);
        assert_eq!(b.get("/users/21").status, 200);
        let name = format!("Shared {round}");
        let put = a.put_json("/users/21", &format!(r#"{{"name":"{name}"}}"#));
        assert_eq!(put.status, 200, "{put:?}");
        let start = Instant::now();
        loop {
            let seen = b.get("/users/21").json();
            if seen["name"] == name.as_str() {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_millis(100),
                "B still answers {seen} {:?} after A's PUT",
                start.elapsed()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        eprintln!(
            "round {round}: B saw A's update after {:?}",
            start.elapsed()
        );
    }

    // A `#[cached]` handler returning `Json<Video>` reaches Redis through `Video`'s codec: what A
    // computed is a hit on B, without a query.
    let miss = a.get("/videos/55");
    assert_eq!(miss.header("x-cache"), Some("MISS"));
    let q = b.db_queries();
    let hit = b.get("/videos/55");
    assert_eq!(
        (hit.header("x-cache"), hit.body.as_str()),
        (Some("HIT"), miss.body.as_str())
    );
    assert_eq!(b.db_queries(), q, "B read A's value from Redis");

    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}
