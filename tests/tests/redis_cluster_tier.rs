//! `#[cached]` on a Redis-only cache backed by a real three-master Redis Cluster: values round
//! trip across slots, a second manager reads them, tags whose entries live in many slots and
//! patterns whose keys live on every master are invalidated completely, and clearing a cache
//! touches only that cache. One cluster serves the whole binary (each test has its own
//! namespace); `KEYS`, `FLUSHDB` and `FLUSHALL` are renamed away on every node.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use cache_core::{CacheManager, Policy, Resilience, Tier, cached};
use cache_redis::{RedisBackend, RedisConfig};
use serde::{Deserialize, Serialize};
use tests::RedisCluster;

fn cluster() -> &'static RedisCluster {
    static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| RedisCluster::start_with_args(tests::NO_BULK_COMMANDS))
}

fn config(namespace: &str) -> RedisConfig {
    RedisConfig::cluster(cluster().seed_urls()).namespace(namespace)
}

fn manager(namespace: &str) -> CacheManager {
    CacheManager::builder()
        .remote(RedisBackend::new(config(namespace)))
        // Generous: these tests are about behaviour on a healthy cluster.
        .resilience(Resilience::new().timeout(Duration::from_secs(2)))
        .cache("users", Policy::new().tier(Tier::Remote).ttl_secs(60))
        .cache("posts", Policy::new().tier(Tier::Remote).ttl_secs(60))
        .build()
}

fn redis_key(namespace: &str, cache: &str, key: &str) -> String {
    RedisBackend::new(config(namespace)).redis_key(cache, key)
}

fn exists(namespace: &str, cache: &str, key: &str) -> bool {
    cluster().cli(&["EXISTS", &redis_key(namespace, cache, key)]) == "1"
}

/// How many keys matching `glob` each master holds.
fn keys_per_node(glob: &str) -> Vec<usize> {
    let c = cluster();
    c.ports()
        .iter()
        .map(|&p| c.node_keys(p, glob).len())
        .collect()
}

fn assert_on_every_master(glob: &str) {
    let per_node = keys_per_node(glob);
    assert!(
        per_node.iter().all(|&n| n > 0),
        "{glob} should live on every master: {per_node:?}"
    );
}

fn assert_gone(glob: &str) {
    let per_node = keys_per_node(glob);
    assert!(
        per_node.iter().all(|&n| n == 0),
        "{glob} left: {per_node:?}"
    );
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Member {
    id: u64,
    team: u64,
    name: String,
    history: Vec<(u32, Option<String>)>,
}

fn member(id: u64, team: u64) -> Member {
    Member {
        id,
        team,
        name: format!("member {id}"),
        history: vec![(1, None), (2, Some(format!("joined team {team}")))],
    }
}

static MEMBER_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "member:{id}", tags = ["team:{team}", "members"])]
async fn load_member(id: u64, team: u64) -> Member {
    MEMBER_RUNS.fetch_add(1, SeqCst);
    member(id, team)
}

#[tokio::test]
async fn values_round_trip_across_slots() {
    const NS: &str = "ct-round-trip";
    let a = manager(NS);
    a.scope(async {
        for id in 0..60 {
            assert_eq!(load_member(id, id % 3).await, member(id, id % 3));
        }
    })
    .await;
    assert_eq!(MEMBER_RUNS.load(SeqCst), 60);
    assert_on_every_master(&format!("{NS}:users:*"));
    let pttl: i64 = cluster()
        .cli(&["PTTL", &redis_key(NS, "users", "member:0")])
        .parse()
        .unwrap();
    assert!((59_000..=60_000).contains(&pttl), "{pttl}");

    // Another process reads every one of them.
    let b = manager(NS);
    b.scope(async {
        for id in 0..60 {
            assert_eq!(load_member(id, id % 3).await, member(id, id % 3));
        }
    })
    .await;
    assert_eq!(MEMBER_RUNS.load(SeqCst), 60, "no body ran in b");
    let s = b.cache("users").stats().remote.unwrap();
    assert_eq!((s.hits, s.misses, s.errors), (60, 0, 0), "{s:?}");
}

static BIG_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "posts", key = "big:{n}")]
async fn big(n: usize) -> Vec<String> {
    BIG_RUNS.fetch_add(1, SeqCst);
    (0..n)
        .map(|i| format!("paragraph {i} of a long post"))
        .collect()
}

#[tokio::test]
async fn a_large_value_round_trips_compressed() {
    const NS: &str = "ct-large";
    let value = manager(NS).scope(big(500)).await;
    assert_eq!(manager(NS).scope(big(500)).await, value);
    assert_eq!(BIG_RUNS.load(SeqCst), 1);
    // STRLEN: the stored envelope is far smaller than the MessagePack it holds.
    let stored: usize = cluster()
        .cli(&["STRLEN", &redis_key(NS, "posts", "big:500")])
        .parse()
        .unwrap();
    let plain: usize = value.iter().map(|s| s.len() + 1).sum();
    assert!(stored < plain / 2, "{stored} bytes stored for {plain}");
}

static TAGGED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "tagged:{id}", tags = ["group:{group}"])]
async fn tagged(id: u64, group: u64) -> String {
    TAGGED_RUNS.fetch_add(1, SeqCst);
    format!("{id} in {group}")
}

#[cached(cache = "posts", key = "tagged-post:{id}", tags = ["group:{group}"])]
async fn tagged_post(id: u64, group: u64) -> String {
    TAGGED_RUNS.fetch_add(1, SeqCst);
    format!("post {id} in {group}")
}

#[tokio::test]
async fn a_tag_whose_entries_span_slots_is_invalidated_everywhere() {
    const NS: &str = "ct-tags";
    let m = manager(NS);
    m.scope(async {
        for id in 0..60 {
            tagged(id, id % 2).await;
            tagged_post(id, id % 2).await;
        }
    })
    .await;
    assert_eq!(TAGGED_RUNS.load(SeqCst), 120);
    // Group 0's entries (both caches) live on every master.
    assert_on_every_master(&format!("{NS}:users:tagged:*"));

    m.invalidate_tag("group:0").await;
    for id in 0..60 {
        let gone = id % 2 == 0;
        assert_eq!(!exists(NS, "users", &format!("tagged:{id}")), gone, "{id}");
        assert_eq!(
            !exists(NS, "posts", &format!("tagged-post:{id}")),
            gone,
            "{id}"
        );
    }
    let tag_key = RedisBackend::new(config(NS)).tag_key("group:0");
    assert_eq!(cluster().cli(&["EXISTS", &tag_key]), "0");

    // Another process recomputes exactly the invalidated entries.
    manager(NS)
        .scope(async {
            for id in 0..60 {
                tagged(id, id % 2).await;
                tagged_post(id, id % 2).await;
            }
        })
        .await;
    assert_eq!(TAGGED_RUNS.load(SeqCst), 180);
}

static SEARCH_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "search:{q}")]
async fn search(q: &str) -> Vec<String> {
    SEARCH_RUNS.fetch_add(1, SeqCst);
    vec![q.to_owned()]
}

#[tokio::test]
async fn a_pattern_is_invalidated_on_every_master() {
    const NS: &str = "ct-pattern";
    let m = manager(NS);
    let queries: Vec<String> = (0..40)
        .flat_map(|i| [format!("a{i}"), format!("b{i}")])
        .collect();
    m.scope(async {
        for q in &queries {
            search(q).await;
        }
    })
    .await;
    assert_on_every_master(&format!("{NS}:users:search:a*"));
    assert_on_every_master(&format!("{NS}:users:search:b*"));

    m.invalidate_pattern("users", "search:a*").await;
    assert_gone(&format!("{NS}:users:search:a*"));
    assert_eq!(
        keys_per_node(&format!("{NS}:users:search:b*"))
            .iter()
            .sum::<usize>(),
        40
    );

    let runs = SEARCH_RUNS.load(SeqCst);
    m.scope(async {
        for q in &queries {
            search(q).await;
        }
    })
    .await;
    assert_eq!(
        SEARCH_RUNS.load(SeqCst),
        runs + 40,
        "only the a* entries reran"
    );
}

static CLEAR_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "c:{id}", tags = ["clear"])]
async fn clear_user(id: u64) -> u64 {
    CLEAR_RUNS.fetch_add(1, SeqCst);
    id
}

#[cached(cache = "posts", key = "c:{id}", tags = ["clear"])]
async fn clear_post(id: u64) -> u64 {
    CLEAR_RUNS.fetch_add(1, SeqCst);
    id + 1
}

#[tokio::test]
async fn clearing_a_cache_touches_only_that_cache() {
    const NS: &str = "ct-clear";
    let m = manager(NS);
    let other = manager("ct-clear-other");
    let fill = |m: &CacheManager| {
        m.scope(async {
            for id in 0..30 {
                clear_user(id).await;
                clear_post(id).await;
            }
        })
    };
    fill(&m).await;
    fill(&other).await;
    assert_on_every_master(&format!("{NS}:users:*"));
    assert_on_every_master(&format!("{NS}:posts:*"));

    m.invalidate_cache("users").await;
    assert_gone(&format!("{NS}:users:*"));
    assert_eq!(
        keys_per_node(&format!("{NS}:posts:*"))
            .iter()
            .sum::<usize>(),
        30
    );
    assert_eq!(
        keys_per_node("ct-clear-other:*").iter().sum::<usize>(),
        61,
        "the other namespace: 60 values and one tag set"
    );

    m.invalidate_all().await;
    assert_gone(&format!("{NS}:*"));
    assert_eq!(keys_per_node("ct-clear-other:*").iter().sum::<usize>(), 61);

    let runs = CLEAR_RUNS.load(SeqCst);
    fill(&other).await;
    assert_eq!(
        CLEAR_RUNS.load(SeqCst),
        runs,
        "the other namespace still hits"
    );
}
