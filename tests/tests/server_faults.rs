//! The demo server (the real binary, real HTTP on loopback) with its Redis behind a TCP proxy the
//! test owns, through each network fault the proxy makes: added latency below and above the
//! Redis timeout, connections reset (RST), a black hole (connections half-open, nothing
//! answered), and the link cut; then through Redis itself killed (and restarted empty on the same
//! port) and paused (`SIGSTOP`, then `SIGCONT`). For each:
//! - every response is 200 with the same body the uncached route gives (correct data);
//! - no request takes longer than the server's Redis budget (its default 100 ms timeout, for each
//!   of a read, a write and a publish) plus the database and a margin for a loaded machine: a
//!   hang bound, not a performance target;
//! - once the proxy passes traffic again, values reach Redis again, without restarting the server.
//!
//! The figures (requests, errors, max latency) are printed per scenario; docs/reliability.md
//! records a run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_redis::{RedisBackend, RedisConfig};
use tests::RedisServer;
use tests::demo_server::{DemoServer, request};
use tests::fault_proxy::{FaultProxy, ProxyMode};

/// The demo server's Redis timeout (its default `Resilience`).
const REDIS_TIMEOUT: Duration = Duration::from_millis(100);
/// What one request may take at most: a miss makes up to three Redis operations in turn (the
/// read, the write-through and the backplane publish), each cut at the timeout, then the
/// database (5 ms), and slack for a loaded two-core machine.
const REQUEST_BOUND: Duration = Duration::from_millis(800);
const CLIENTS: u64 = 4;
const PER_CLIENT: u64 = 30;

/// Video ids are handed out once each, so every request is a memory-tier miss and goes to Redis.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

struct Figures {
    requests: u64,
    errors: u64,
    max: Duration,
}

/// `CLIENTS` threads, each sending `PER_CLIENT` requests for fresh video ids, checking each body
/// against the uncached route's.
fn drive(server: &DemoServer, scenario: &str) -> Figures {
    let addr = server.addr();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut figures = Figures {
                    requests: 0,
                    errors: 0,
                    max: Duration::ZERO,
                };
                for _ in 0..PER_CLIENT {
                    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                    let path = format!("/videos/{id}");
                    let started = Instant::now();
                    let r = request(addr, "GET", &path, None);
                    let took = started.elapsed();
                    figures.requests += 1;
                    figures.max = figures.max.max(took);
                    let truth = request(addr, "GET", &format!("/raw/videos/{id}"), None);
                    if r.status != 200 || r.body != truth.body {
                        figures.errors += 1;
                        eprintln!(
                            "{path}: {} {:?} (expected {:?})",
                            r.status, r.body, truth.body
                        );
                    }
                }
                figures
            })
        })
        .collect();
    let mut all = Figures {
        requests: 0,
        errors: 0,
        max: Duration::ZERO,
    };
    for t in threads {
        let f = t.join().expect("a client thread panicked");
        all.requests += f.requests;
        all.errors += f.errors;
        all.max = all.max.max(f.max);
    }
    println!(
        "scenario {scenario:<28} requests {:>4}  non-200 or wrong {:>2}  max latency {:>4} ms",
        all.requests,
        all.errors,
        all.max.as_millis()
    );
    all
}

/// Requests fresh ids until one's value is in Redis: caching through Redis works again.
fn wait_until_cached_in_redis(server: &DemoServer, redis: &RedisServer, after: &str) -> Duration {
    let keys = RedisBackend::new(RedisConfig::standalone(redis.url()).namespace("demo"));
    let started = Instant::now();
    loop {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let r = server.get(&format!("/videos/{id}"));
        assert_eq!(r.status, 200, "{r:?}");
        let key = keys.redis_key("videos", &format!("video:{id}"));
        // The write-through follows the response; give it a moment before asking Redis.
        let landed = (0..20).any(|_| {
            if redis.cli(&["EXISTS", &key]) == "1" {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
            false
        });
        if landed {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "after {after}: no value reached Redis within 15 s of the proxy passing traffic again"
        );
    }
}

#[test]
fn the_demo_server_answers_correctly_through_every_network_fault() {
    let mut redis = RedisServer::start();
    let proxy = FaultProxy::start(redis.port());
    let url = proxy.url();
    let server = DemoServer::start(&[("REDIS_URL", url.as_str()), ("DB_LATENCY_MS", "5")]);
    let queries_at_start = Arc::new(server.db_queries());

    let baseline = drive(&server, "pass (baseline)");
    assert_eq!(baseline.errors, 0);
    wait_until_cached_in_redis(&server, &redis, "start");

    let scenarios = [
        (
            "latency 30 ms (< timeout)",
            ProxyMode::Latency(Duration::from_millis(30)),
        ),
        (
            "latency 300 ms (> timeout)",
            ProxyMode::Latency(Duration::from_millis(300)),
        ),
        ("reset (RST)", ProxyMode::Reset),
        ("black hole (half-open)", ProxyMode::BlackHole),
        ("cut (FIN, then closed)", ProxyMode::Cut),
    ];
    let mut worst = Duration::ZERO;
    for (name, mode) in scenarios {
        proxy.set(mode);
        let f = drive(&server, name);
        assert_eq!(
            f.errors, 0,
            "{name}: every response is 200 with the right body"
        );
        assert!(
            f.max < REQUEST_BOUND,
            "{name}: a request took {:?} (bound {REQUEST_BOUND:?}, Redis timeout {REDIS_TIMEOUT:?})",
            f.max
        );
        worst = worst.max(f.max);
        proxy.set(ProxyMode::Pass);
        let resumed = wait_until_cached_in_redis(&server, &redis, name);
        println!(
            "scenario {name:<28} caching through Redis resumed {} ms after recovery",
            resumed.as_millis()
        );
    }

    // Redis itself: killed (its data gone; restarted on the same port), then paused.
    for (name, fault, heal) in [
        (
            "redis killed, restarted",
            RedisServer::stop as fn(&mut RedisServer),
            RedisServer::restart as fn(&mut RedisServer),
        ),
        (
            "redis paused (SIGSTOP)",
            RedisServer::pause,
            RedisServer::resume,
        ),
    ] {
        fault(&mut redis);
        let f = drive(&server, name);
        assert_eq!(
            f.errors, 0,
            "{name}: every response is 200 with the right body"
        );
        assert!(f.max < REQUEST_BOUND, "{name}: a request took {:?}", f.max);
        worst = worst.max(f.max);
        heal(&mut redis);
        let resumed = wait_until_cached_in_redis(&server, &redis, name);
        println!(
            "scenario {name:<28} caching through Redis resumed {} ms after recovery",
            resumed.as_millis()
        );
    }

    // Each request ran its query once (no retries that double the load), and the stats say the
    // faults were seen and survived.
    let stats = server.stats();
    let videos = stats["caches"]
        .as_array()
        .expect("caches")
        .iter()
        .find(|c| c["name"] == "videos")
        .expect("a videos cache")
        .clone();
    println!(
        "redis tier after all scenarios: {}  proxy: {:?}  db queries: {}",
        videos["remote"],
        proxy.counts(),
        server.db_queries() - *queries_at_start
    );
    let remote = &videos["remote"];
    assert!(remote["errors"].as_u64().unwrap() > 0, "{remote}");
    assert!(remote["timeouts"].as_u64().unwrap() > 0, "{remote}");
    assert_eq!(remote["breaker"], "Closed", "{remote}");
    assert!(proxy.counts().reset > 0 && proxy.counts().cut > 0);
    println!("worst request under any fault: {} ms", worst.as_millis());
}
