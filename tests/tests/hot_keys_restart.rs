//! Hot-key preloading across a restart, on a real `redis-server`: instance A serves traffic and
//! persists its hottest keys; instance B starts cold on the same Redis, preloads, and its first
//! requests for those keys are answered from memory (no body run, no Redis read).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use cache_core::{CacheManager, Policy, Resilience, Tier, cached};
use cache_redis::{RedisBackend, RedisConfig};
use serde::{Deserialize, Serialize};
use tests::RedisServer;

static BODY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Video {
    id: u64,
    title: String,
}

#[cached(cache = "videos", key = "video:{id}")]
async fn video(id: u64) -> Video {
    BODY_RUNS.fetch_add(1, SeqCst);
    Video {
        id,
        title: format!("video {id}"),
    }
}

fn instance(url: &str) -> CacheManager {
    CacheManager::builder()
        .remote(RedisBackend::new(
            RedisConfig::standalone(url).namespace("hotkeys"),
        ))
        .resilience(Resilience::new().timeout(Duration::from_secs(2)))
        .cache("videos", Policy::new().tier(Tier::Hybrid).ttl_secs(600))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_starts_with_its_hot_keys_in_memory() {
    let redis = RedisServer::start();

    // Instance A: keys 1..=3 are hot, 100..400 are read once.
    let a = instance(&redis.url());
    a.scope(async {
        for round in 0..1000u64 {
            for id in 1..=3 {
                video(id).await;
            }
            video(100 + round).await;
        }
    })
    .await;
    let hot: Vec<String> = a
        .cache("videos")
        .hot_keys(3)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let mut sorted = hot.clone();
    sorted.sort();
    assert_eq!(sorted, ["video:1", "video:2", "video:3"], "{hot:?}");
    assert!(a.persist_hot_keys().await >= 3);
    drop(a);

    // Instance B: cold memory, same Redis.
    let runs_before = BODY_RUNS.load(SeqCst);
    let b = instance(&redis.url());
    // The first backplane subscription clears the memory tier (it may have missed messages);
    // preload after it, or it may clear what was preloaded (seen on a loaded machine).
    tests::backplane_subscribed(&b).await;
    let loaded = b.preload_hot_keys().await;
    assert!(loaded >= 3, "loaded {loaded}");
    let remote_reads_after_preload = b.cache("videos").stats().remote.expect("hybrid").hits;
    b.scope(async {
        for id in 1..=3 {
            assert_eq!(
                video(id).await,
                Video {
                    id,
                    title: format!("video {id}")
                }
            );
        }
    })
    .await;
    let s = b.cache("videos").stats();
    assert_eq!(
        BODY_RUNS.load(SeqCst),
        runs_before,
        "no body ran for a hot key"
    );
    assert_eq!(
        s.remote.expect("hybrid").hits,
        remote_reads_after_preload,
        "no Redis read: served from memory"
    );
    assert_eq!(s.preload_hits, 3);
    // And from then on they are ordinary typed memory hits.
    b.scope(async {
        video(1).await;
    })
    .await;
    assert_eq!(b.cache("videos").stats().hits, 1);
}

#[tokio::test]
async fn preloaded_bytes_are_weighed_by_their_size_against_max_weight() {
    let redis = RedisServer::start();
    // Incompressible, so the envelope holds all 100 kB.
    let mut seed = 7u64;
    let big: String = (0..100_000)
        .map(|_| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            char::from(b'!' + (seed >> 58) as u8)
        })
        .collect();
    let instance = |policy: Policy| {
        CacheManager::builder()
            .remote(RedisBackend::new(
                RedisConfig::standalone(redis.url()).namespace("hotweight"),
            ))
            .resilience(Resilience::new().timeout(Duration::from_secs(2)))
            .cache("pages", policy.tier(Tier::Hybrid).ttl_secs(600))
            .build()
    };
    let a = instance(Policy::new());
    let pages = a.cache("pages");
    pages.set("page:big", big.clone()).await;
    // One read in 64 is sampled for the hot list.
    for _ in 0..2_000 {
        assert!(pages.get::<String>("page:big").await.is_some());
    }
    assert!(a.persist_hot_keys().await >= 1);
    drop(a);

    // B holds at most 10 kB by a weigher that knows its values are `String`s. The preloaded
    // bytes of a 100 kB page are not a `String` yet: the weigher's fallback of 1 let them in.
    let b = instance(
        Policy::new()
            .max_weight(10_000)
            .weigher(|_, v| v.downcast_ref::<String>().map_or(1, |s| s.len() as u64)),
    );
    tests::backplane_subscribed(&b).await;
    b.preload_hot_keys().await;
    let s = b.cache("pages").stats();
    assert_eq!(
        (s.entries, s.weight),
        (0, 0),
        "100 kB held under a 10 kB bound: {s:?}"
    );
    // The page is still one Redis read away, and then weighed as the `String` it is.
    assert_eq!(b.cache("pages").get::<String>("page:big").await, Some(big));
}
