//! The Redis tier on a real three-master Redis Cluster (one cluster for the whole binary; each
//! test uses its own namespace). `KEYS`, `FLUSHDB` and `FLUSHALL` are renamed away on every
//! node, so a bulk operation using them would fail here.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cache_core::RemoteBackend;
use cache_redis::{RedisBackend, RedisConfig};
use tests::RedisCluster;
use tests::redis_server::cli;

fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start_with_args(tests::NO_BULK_COMMANDS))
}

fn backend(namespace: &str) -> RedisBackend {
    RedisBackend::new(RedisConfig::cluster(cluster().seed_urls()).namespace(namespace))
}

fn tags(names: &[&str]) -> Vec<Arc<str>> {
    names.iter().map(|&n| Arc::from(n)).collect()
}

/// How many of the namespace's keys each master holds.
fn keys_per_node(namespace: &str) -> Vec<usize> {
    let c = cluster();
    c.ports()
        .iter()
        .map(|&p| c.node_keys(p, &format!("{namespace}:*")).len())
        .collect()
}

fn assert_spread(namespace: &str) {
    let per_node = keys_per_node(namespace);
    assert!(
        per_node.iter().all(|&n| n > 0),
        "the keys should live on every master: {per_node:?}"
    );
}

#[tokio::test]
async fn round_trip_across_slots() {
    let b = backend("c-round-trip");
    let t = b.tier("c");
    for i in 0..60 {
        let key = format!("k{i}");
        t.set(
            &key,
            key.as_bytes().to_vec(),
            Some(Duration::from_secs(60)),
            &[],
        )
        .await
        .unwrap();
    }
    assert_spread("c-round-trip");
    for i in 0..60 {
        let key = format!("k{i}");
        assert_eq!(t.get(&key).await.unwrap().as_deref(), Some(key.as_bytes()));
    }
    assert!(t.delete("k0").await.unwrap());
    assert_eq!(t.get("k0").await.unwrap(), None);
    assert!(b.ping().await.unwrap() < Duration::from_secs(1));
    assert!(
        b.describe()
            .ends_with("(cluster, namespace \"c-round-trip\")")
    );
}

#[tokio::test]
async fn ttl_expires_on_the_cluster() {
    let b = backend("c-ttl");
    let t = b.tier("c");
    t.set(
        "k",
        vec![1],
        Some(Duration::from_millis(200)),
        &tags(&["t"]),
    )
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while t.get("k").await.unwrap().is_some() {
        assert!(std::time::Instant::now() < deadline, "expired within 5 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn tags_whose_members_span_slots() {
    let b = backend("c-tags");
    let users = b.tier("users");
    let posts = b.tier("posts");
    let tag = tags(&["team:1"]);
    for i in 0..40 {
        users
            .set(
                &format!("u{i}"),
                vec![1],
                Some(Duration::from_secs(60)),
                &tag,
            )
            .await
            .unwrap();
        posts
            .set(&format!("p{i}"), vec![1], None, &tag)
            .await
            .unwrap();
        users
            .set(&format!("untagged{i}"), vec![1], None, &[])
            .await
            .unwrap();
    }
    assert_spread("c-tags");
    assert_eq!(names_in(&b.tag_key("team:1")), 80);
    assert_eq!(b.delete_tag("team:1").await.unwrap(), 80);
    for i in 0..40 {
        assert_eq!(users.get(&format!("u{i}")).await.unwrap(), None);
        assert_eq!(posts.get(&format!("p{i}")).await.unwrap(), None);
        assert!(users.get(&format!("untagged{i}")).await.unwrap().is_some());
    }
    assert_eq!(cluster().cli(&["EXISTS", &b.tag_key("team:1")]), "0");
}

/// How many value names the record at `key` holds, whatever its type (a sorted set; a plain set
/// as older versions wrote).
fn names_in(key: &str) -> usize {
    let count = match cluster().cli(&["TYPE", key]).as_str() {
        "zset" => "ZCARD",
        "set" => "SCARD",
        "none" => return 0,
        other => panic!("{key} holds a {other}"),
    };
    cluster().cli(&[count, key]).parse().unwrap()
}

#[tokio::test]
async fn a_tag_record_forgets_values_that_expired_on_the_cluster() {
    // Values spread over every master, their tag's record on one: short-lived values under a tag
    // that longer-lived ones keep alive. The record used to keep every name until the tag was
    // invalidated; now the next write drops the expired ones, and invalidation still reaches
    // every live value.
    let b = backend("c-tag-trim");
    let t = b.tier("c");
    let tag = tags(&["category:books"]);
    let record = b.tag_key("category:books");
    for i in 0..50 {
        t.set(
            &format!("live{i}"),
            vec![1],
            Some(Duration::from_secs(60)),
            &tag,
        )
        .await
        .unwrap();
    }
    let short: Vec<String> = (0..150).map(|i| format!("short{i}")).collect();
    for key in &short {
        t.set(key, vec![1], Some(Duration::from_millis(100)), &tag)
            .await
            .unwrap();
    }
    assert_spread("c-tag-trim");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    for key in &short {
        while t.get(key).await.unwrap().is_some() {
            assert!(std::time::Instant::now() < deadline, "expired within 5 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    t.set("last", vec![1], Some(Duration::from_secs(60)), &tag)
        .await
        .unwrap();
    assert_eq!(names_in(&record), 51, "the live values only");

    assert_eq!(b.delete_tag("category:books").await.unwrap(), 51);
    for i in 0..50 {
        assert_eq!(t.get(&format!("live{i}")).await.unwrap(), None);
    }
    assert_eq!(t.get("last").await.unwrap(), None);
    assert_eq!(cluster().cli(&["EXISTS", &record]), "0");
}

#[tokio::test]
async fn invalidation_drains_the_tag_sets_of_older_versions_on_the_cluster() {
    // An older version's values and the plain set naming them under `{namespace}:tag:{tag}`,
    // beside this version's record of the same tag (on another slot).
    let b = backend("c-tag-legacy");
    let t = b.tier("c");
    let legacy = "c-tag-legacy:tag:team:7";
    let old: Vec<String> = (0..60).map(|i| format!("old{i}")).collect();
    for key in &old {
        t.set(key, vec![1], Some(Duration::from_secs(60)), &[])
            .await
            .unwrap();
    }
    let mut sadd = vec!["SADD".to_owned(), legacy.to_owned()];
    sadd.extend(old.iter().map(|k| b.redis_key("c", k)));
    let sadd: Vec<&str> = sadd.iter().map(String::as_str).collect();
    assert_eq!(cluster().cli(&sadd), "60");
    t.set(
        "new",
        vec![1],
        Some(Duration::from_secs(60)),
        &tags(&["team:7"]),
    )
    .await
    .unwrap();

    assert_eq!(b.delete_tag("team:7").await.unwrap(), 61);
    for key in old.iter().map(String::as_str).chain(["new"]) {
        assert_eq!(t.get(key).await.unwrap(), None, "{key}");
    }
    assert_eq!(cluster().cli(&["EXISTS", legacy]), "0");
    assert_eq!(cluster().cli(&["EXISTS", &b.tag_key("team:7")]), "0");
}

#[tokio::test]
async fn patterns_delete_on_every_master() {
    let b = backend("c-pattern");
    let t = b.tier("users");
    for i in 0..60 {
        t.set(&format!("user:{i}"), vec![1], None, &[])
            .await
            .unwrap();
        t.set(&format!("order:{i}"), vec![1], None, &[])
            .await
            .unwrap();
    }
    t.set("user:*", vec![1], None, &[]).await.unwrap();
    assert_spread("c-pattern");

    assert_eq!(t.delete_pattern("user:\\*").await.unwrap(), 1);
    assert_eq!(t.delete_pattern("user:*").await.unwrap(), 60);
    for i in 0..60 {
        assert_eq!(t.get(&format!("user:{i}")).await.unwrap(), None);
        assert!(t.get(&format!("order:{i}")).await.unwrap().is_some());
    }
    assert_eq!(t.clear().await.unwrap(), 60);
}

#[tokio::test]
async fn clear_all_empties_one_namespace_on_every_master() {
    let a = backend("c-clear-a");
    let other = backend("c-clear-b");
    for i in 0..30 {
        for cache in ["x", "y"] {
            a.tier(cache)
                .set(&format!("k{i}"), vec![1], None, &tags(&["t"]))
                .await
                .unwrap();
        }
        other
            .tier("x")
            .set(&format!("k{i}"), vec![1], None, &[])
            .await
            .unwrap();
    }
    assert_spread("c-clear-a");
    // 60 values and the tag set.
    assert_eq!(a.clear_all().await.unwrap(), 61);
    assert_eq!(keys_per_node("c-clear-a"), vec![0, 0, 0]);
    assert_eq!(keys_per_node("c-clear-b").iter().sum::<usize>(), 30);
}

#[tokio::test]
async fn an_unreachable_cluster_fails_fast_without_panicking() {
    let port = tests::redis_server::free_port(false);
    let started = std::time::Instant::now();
    let b = RedisBackend::new(RedisConfig::cluster([format!("redis://127.0.0.1:{port}")]));
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "new() does not connect"
    );
    for _ in 0..2 {
        let r = tokio::time::timeout(Duration::from_secs(2), b.tier("c").get("k")).await;
        assert!(matches!(r, Ok(Err(_))), "{r:?}");
    }
    assert!(b.clear_all().await.is_err());
}

/// The port of the master holding `key`, from `CLUSTER KEYSLOT` and `CLUSTER NODES`.
fn owner(cluster: &RedisCluster, key: &str) -> u16 {
    let port = cluster.ports()[0];
    let slot: u16 = cli(port, &["CLUSTER", "KEYSLOT", key]).parse().unwrap();
    for line in cli(port, &["CLUSTER", "NODES"]).lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let holds = fields
            .iter()
            .skip(8)
            .any(|range| match range.split_once('-') {
                Some((lo, hi)) => (lo.parse().unwrap()..=hi.parse().unwrap()).contains(&slot),
                None => range.parse() == Ok(slot),
            });
        if holds {
            // `127.0.0.1:PORT@BUSPORT`
            let addr = fields[1].split('@').next().unwrap();
            return addr.rsplit(':').next().unwrap().parse().unwrap();
        }
    }
    panic!("no master holds slot {slot}");
}

#[tokio::test]
async fn a_value_exists_before_any_tag_names_it() {
    // Its own cluster: writes are paused on one of its masters, which would hold up the other
    // tests' writes.
    let cluster = RedisCluster::start();
    let ns = "c-tag-order";
    let b = RedisBackend::new(RedisConfig::cluster(cluster.seed_urls()).namespace(ns));
    let t = b.tier("c");
    let tag_key = b.tag_key("t");
    let tag_node = owner(&cluster, &tag_key);
    // A value on another master than its tag set, and a probe key on the tag set's master.
    let on = |prefix: &str, same: bool| {
        (0..)
            .map(|i| format!("{prefix}{i}"))
            .find(|k| (owner(&cluster, &b.redis_key("c", k)) == tag_node) == same)
            .unwrap()
    };
    let (key, probe) = (on("k", false), on("p", true));
    let value_key = b.redis_key("c", &key);
    let value_node = owner(&cluster, &value_key);
    t.get(&probe).await.unwrap(); // connected

    // Writes wait on the value's master, so its SET is held there.
    cli(value_node, &["CLIENT", "PAUSE", "5000", "WRITE"]);
    let writer = {
        let t = b.tier("c");
        let key = key.clone();
        tokio::spawn(async move {
            t.set(&key, vec![1], Some(Duration::from_secs(60)), &tags(&["t"]))
                .await
        })
    };
    while cli(value_node, &["INFO", "clients"])
        .lines()
        .any(|l| l.trim() == "blocked_clients:0")
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // A read on the tag set's master over the same connection: a tag script sent along with the
    // SET has run by the time it answers.
    t.get(&probe).await.unwrap();
    // `ZSCORE` answers nothing (an empty line) for a value the record does not name.
    let named_early = cli(tag_node, &["ZSCORE", &tag_key, &value_key]);
    cli(value_node, &["CLIENT", "UNPAUSE"]);
    writer.await.unwrap().unwrap();
    // Named before it existed, a value can escape its tag for good: a `delete_tag` popping the
    // set in between deletes nothing, and the SET lands after it.
    assert_eq!(named_early, "", "the tag named the value before it existed");
    assert_ne!(cli(tag_node, &["ZSCORE", &tag_key, &value_key]), "");
    assert_eq!(cli(value_node, &["EXISTS", &value_key]), "1");
}

#[test]
fn a_backend_serves_every_runtime_that_uses_it() {
    let b = backend("c-runtimes");
    for round in 0..3u8 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let t = b.tier("c");
            t.set("k", vec![round], None, &[]).await.unwrap();
            assert_eq!(t.get("k").await.unwrap(), Some(vec![round]));
        });
    }
}

/// How many connections the node on `port` has accepted since it started.
fn connections_received(port: u16) -> u64 {
    cli(port, &["INFO", "stats"])
        .lines()
        .find_map(|l| l.trim().strip_prefix("total_connections_received:"))
        .and_then(|n| n.parse().ok())
        .expect("INFO stats lists total_connections_received")
}

#[tokio::test]
async fn a_master_that_stops_answering_leaves_the_other_masters_serving() {
    // Its own cluster: one of its masters stops answering clients for a while.
    let cluster = RedisCluster::start();
    let ns = "c-slow-master";
    let b = RedisBackend::new(
        RedisConfig::cluster(cluster.seed_urls())
            .namespace(ns)
            .response_timeout(Duration::from_millis(200)),
    );
    let t = b.tier("c");
    let silent_node = cluster.ports()[0];
    let on = |prefix: &str, silent: bool| {
        (0..)
            .map(|i| format!("{prefix}{i}"))
            .find(|k| (owner(&cluster, &b.redis_key("c", k)) == silent_node) == silent)
            .unwrap()
    };
    let (slow, fast) = (on("s", true), on("f", false));
    let fast_node = owner(&cluster, &b.redis_key("c", &fast));
    t.set(&fast, vec![1], None, &[]).await.unwrap(); // connected
    let connections_before = connections_received(fast_node);

    // One master answers no client for longer than the test runs (the cluster bus still runs:
    // it stays a master; the cluster dies with the test).
    cli(silent_node, &["CLIENT", "PAUSE", "10000", "ALL"]);
    let mut failed = Vec::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    for round in 0..60 {
        ticks.tick().await;
        // A caller gives up on a key of the silent master, as the core's timeout does.
        let gave_up = tokio::time::timeout(Duration::from_millis(20), t.get(&slow)).await;
        assert!(gave_up.is_err(), "the paused master answered: {gave_up:?}");
        // A key of another master is served all along.
        let read = tokio::time::timeout(Duration::from_millis(100), t.get(&fast)).await;
        if !matches!(read, Ok(Ok(Some(_)))) {
            failed.push((round, format!("{read:?}")));
        }
    }
    // Less the connection of this `INFO` itself.
    let reconnects = connections_received(fast_node) - connections_before - 1;
    assert!(
        failed.is_empty(),
        "reads of a healthy master failed while another was silent: {failed:?}"
    );
    assert_eq!(
        reconnects, 0,
        "the healthy master's connection was replaced while another master was silent"
    );
}
