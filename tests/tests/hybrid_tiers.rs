//! The hybrid tier within one process, on a real `redis-server`: where hits come from (stats per
//! tier), the L1 TTL, promotion with the remaining TTL, and memory bounds on L1.
//!
//! Two managers on one namespace stand for two instances (each has its own memory tier; they
//! share Redis and the backplane).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_core::{Cache, CacheManager, CacheStats, Policy, Resilience, Tier};
use cache_redis::{RedisBackend, RedisConfig};
use tests::RedisServer;

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

/// A manager with one hybrid cache, `items`, whose backplane is subscribed.
async fn instance(namespace: &str, policy: Policy) -> CacheManager {
    instance_on(redis(namespace), policy).await
}

fn redis(namespace: &str) -> RedisBackend {
    RedisBackend::new(RedisConfig::standalone(server().url()).namespace(namespace))
}

/// [`instance`] on a backend of the test's making (a faulty wrapper).
async fn instance_on(backend: impl cache_core::RemoteBackend, policy: Policy) -> CacheManager {
    let manager = CacheManager::builder()
        .remote(backend)
        .cache("items", policy.tier(Tier::Hybrid))
        // Generous: a busy two-core machine must not turn a slow write or publish into a
        // skipped one, which would make the exact counts below wrong.
        .resilience(Resilience::new().timeout(Duration::from_secs(2)))
        .build();
    tests::backplane_subscribed(&manager).await;
    manager
}

/// Waits until the manager's backplane counters satisfy `f`.
async fn backplane_reaches(
    manager: &CacheManager,
    f: impl Fn(&cache_core::remote::backplane::BackplaneStats) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = manager
            .backplane_stats()
            .expect("a hybrid cache has a backplane");
        if f(&stats) {
            return;
        }
        assert!(Instant::now() < deadline, "backplane stuck at {stats:?}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Reads `key` through the cache, counting body runs in `runs`.
async fn read(cache: &Cache, key: &str, runs: &AtomicU64) -> String {
    cache
        .get_or_insert_with(key, || async {
            runs.fetch_add(1, Ordering::SeqCst);
            format!("value of {key}")
        })
        .await
}

/// (L1 hits, L1 misses, L2 hits, L2 misses)
fn tiers(stats: &CacheStats) -> (u64, u64, u64, u64) {
    let remote = stats.remote.clone().unwrap_or_default();
    (stats.hits, stats.misses, remote.hits, remote.misses)
}

#[tokio::test]
async fn stats_per_tier_show_where_hits_come_from() {
    let a = instance("tiers-stats", Policy::new().ttl_secs(60)).await;
    let b = instance("tiers-stats", Policy::new().ttl_secs(60)).await;
    let (ca, cb) = (a.cache("items"), b.cache("items"));
    let runs = AtomicU64::new(0);

    // A: a miss in both tiers (the body runs, the value goes to both), then a memory hit.
    read(&ca, "k1", &runs).await;
    read(&ca, "k1", &runs).await;
    // A's write to Redis is announced; B hears it before reading (see hybrid_processes).
    backplane_reaches(&b, |s| s.applied >= 1).await;
    // B: a memory miss served by Redis (promoted), then a memory hit.
    read(&cb, "k1", &runs).await;
    read(&cb, "k1", &runs).await;
    // B: a key nobody has: a miss in both tiers, the body runs.
    read(&cb, "k2", &runs).await;
    // B: a plain lookup of a key nobody has: a miss in both tiers, nothing runs.
    assert_eq!(cb.get::<String>("k3").await, None);

    assert_eq!(runs.load(Ordering::SeqCst), 2, "k1 once (on A), k2 once");
    //                          (L1 hits, L1 misses, L2 hits, L2 misses)
    assert_eq!(tiers(&ca.stats()), (1, 1, 0, 1), "A: {:?}", ca.stats());
    assert_eq!(tiers(&cb.stats()), (1, 3, 1, 2), "B: {:?}", cb.stats());
    assert_eq!(
        cb.stats().inserts,
        2,
        "B's memory took k1 (promoted) and k2"
    );
    let b_remote = cb.stats().remote.unwrap_or_default();
    assert_eq!((b_remote.errors, b_remote.timeouts), (0, 0));
}

#[tokio::test]
async fn after_the_l1_ttl_the_value_comes_from_redis_without_running_the_body() {
    const L1_TTL: Duration = Duration::from_millis(300);
    let m = instance("tiers-l1ttl", Policy::new().ttl_secs(60).l1_ttl(L1_TTL)).await;
    let c = m.cache("items");
    let runs = AtomicU64::new(0);
    read(&c, "k", &runs).await;
    read(&c, "k", &runs).await;
    assert_eq!(tiers(&c.stats()), (1, 1, 0, 1));

    tokio::time::sleep(L1_TTL + Duration::from_millis(100)).await;
    read(&c, "k", &runs).await;
    assert_eq!(
        tiers(&c.stats()),
        (1, 2, 1, 1),
        "memory expired, Redis (60 s) still had it"
    );
    read(&c, "k", &runs).await;
    assert_eq!(tiers(&c.stats()), (2, 2, 1, 1), "promoted back into memory");

    // The promoted copy has the L1 TTL again, not the 60 s left in Redis.
    tokio::time::sleep(L1_TTL + Duration::from_millis(100)).await;
    read(&c, "k", &runs).await;
    assert_eq!(tiers(&c.stats()), (2, 3, 2, 1));
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once in all");
}

#[tokio::test]
async fn a_promoted_entry_never_outlives_what_is_left_of_its_redis_ttl() {
    // One second in Redis; memory would keep a copy for a minute if promotion did not cap it.
    let policy = Policy::new()
        .ttl(Duration::from_secs(1))
        .l1_ttl(Duration::from_secs(60));
    let a = instance("tiers-remaining", policy.clone()).await;
    let b = instance("tiers-remaining", policy).await;
    let (ca, cb) = (a.cache("items"), b.cache("items"));
    let runs = AtomicU64::new(0);

    let written = Instant::now();
    read(&ca, "k", &runs).await;
    backplane_reaches(&b, |s| s.applied >= 1).await;
    tokio::time::sleep(Duration::from_millis(600).saturating_sub(written.elapsed())).await;
    // B promotes it with about 400 ms left.
    read(&cb, "k", &runs).await;
    read(&cb, "k", &runs).await;
    assert_eq!(tiers(&cb.stats()), (1, 1, 1, 0));

    tokio::time::sleep(Duration::from_millis(1150).saturating_sub(written.elapsed())).await;
    read(&cb, "k", &runs).await;
    assert_eq!(
        tiers(&cb.stats()),
        (1, 2, 1, 1),
        "B's copy expired with the Redis entry, 1 s after A wrote it, not 1 s after B promoted it"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn memory_bounds_apply_to_l1_and_redis_keeps_the_rest() {
    let m = instance("tiers-bounds", Policy::new().ttl_secs(60).max_entries(2)).await;
    let c = m.cache("items");
    let runs = AtomicU64::new(0);
    for i in 0..6 {
        read(&c, &format!("k{i}"), &runs).await;
    }
    assert!(c.len() <= 2, "memory holds {} entries, bound 2", c.len());
    assert!(c.stats().evictions >= 4, "{:?}", c.stats());
    for i in 0..6 {
        assert_eq!(
            read(&c, &format!("k{i}"), &runs).await,
            format!("value of k{i}")
        );
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        6,
        "evicted from memory, still in Redis: no body ran again"
    );
    assert!(c.stats().remote.unwrap_or_default().hits >= 4);
}

static PROFILE_RUNS: AtomicU64 = AtomicU64::new(0);

#[cache_core::cached(cache = "profiles", key = "profile:{id}", stale = "1h")]
async fn profile(id: u64) -> String {
    PROFILE_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("profile {id}")
}

#[cache_core::cached(cache = "profiles", key = "avatar:{id}", refresh_ahead = 0.5)]
async fn avatar(id: u64) -> String {
    PROFILE_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("avatar {id}")
}

#[tokio::test]
async fn past_the_l1_ttl_a_value_fresh_in_redis_is_read_from_redis_not_refreshed() {
    // The memory copy lives 1 s, the entry an hour in Redis. Past the L1 TTL the copy's value is
    // not stale: the next read fetches it from Redis (docs/hybrid.md). It used to be served as
    // stale with a body run in the background, and refresh-ahead ran the body at half the L1
    // TTL instead of half the hour.
    for what in ["stale", "refresh-ahead"] {
        let read = |id| async move {
            match what {
                "stale" => profile(id).await,
                _ => avatar(id).await,
            }
        };
        let clock = cache_core::Clock::manual();
        let m = CacheManager::builder()
            .remote(RedisBackend::new(
                RedisConfig::standalone(server().url()).namespace(format!("tiers-l1-{what}")),
            ))
            .cache(
                "profiles",
                Policy::new()
                    .tier(Tier::Hybrid)
                    .ttl_secs(3600)
                    .l1_ttl(Duration::from_secs(1)),
            )
            .resilience(Resilience::new().timeout(Duration::from_secs(2)))
            .clock(clock.clone())
            .build();
        tests::backplane_subscribed(&m).await;
        PROFILE_RUNS.store(0, Ordering::SeqCst);
        let c = m.cache("profiles");
        // A refresh is a task spawned on this (current-thread) runtime: yielding after each
        // read lets one that was started run its body.
        let first = m.scope(read(1)).await;
        clock.advance(Duration::from_millis(700));
        assert_eq!(m.scope(read(1)).await, first);
        tokio::task::yield_now().await;
        clock.advance(Duration::from_millis(600));
        assert_eq!(m.scope(read(1)).await, first);
        tokio::task::yield_now().await;
        let s = c.stats();
        assert_eq!(
            (s.stale_served, s.refreshes),
            (0, 0),
            "{what}: a value fresh in Redis was treated as stale: {s:?}"
        );
        assert_eq!(tiers(&s), (1, 2, 1, 1), "{what}: memory, then Redis");
        assert_eq!(PROFILE_RUNS.load(Ordering::SeqCst), 1, "{what}");
    }
}

/// A write-through that runs out of the core's timeout may still land in Redis (a slow link: the
/// `SET` is on the wire). It is announced all the same, or another instance would keep serving
/// its memory copy of the old value until the L1 TTL while Redis holds the new one.
#[tokio::test]
async fn a_write_that_timed_out_is_announced_since_it_may_have_landed() {
    use tests::fault_proxy::{FaultProxy, ProxyMode};

    // The proxy owns a runtime: started and dropped off this one's threads.
    let port = server().port();
    let proxy = tokio::task::spawn_blocking(move || FaultProxy::start(port))
        .await
        .expect("proxy started");
    let a = CacheManager::builder()
        .remote(RedisBackend::new(
            RedisConfig::standalone(proxy.url()).namespace("timed-out-write"),
        ))
        .cache("items", Policy::new().ttl_secs(600).tier(Tier::Hybrid))
        .resilience(
            Resilience::new()
                .timeout(Duration::from_millis(100))
                .failure_threshold(1_000),
        )
        .build();
    tests::backplane_subscribed(&a).await;
    let b = instance("timed-out-write", Policy::new().ttl_secs(600)).await;
    let (ca, cb) = (a.cache("items"), b.cache("items"));
    let runs = AtomicU64::new(0);

    ca.set("k", "old".to_owned()).await;
    backplane_reaches(&b, |s| s.applied >= 1).await;
    let old: String = cb
        .get_or_insert_with("k", || async { unreachable!() })
        .await;
    assert_eq!(old, "old", "B holds the old value in memory");
    let applied = b.backplane_stats().unwrap().applied;

    // Each way 300 ms: A's `SET` outlasts its 100 ms timeout, and lands.
    proxy.set(ProxyMode::Latency(Duration::from_millis(300)));
    ca.set("k", "new".to_owned()).await;
    assert!(
        a.stats()[0].remote.clone().unwrap_or_default().timeouts >= 1,
        "A's write timed out"
    );
    backplane_reaches(&b, |s| s.applied > applied).await;
    let now: String = cb
        .get_or_insert_with("k", || async {
            runs.fetch_add(1, Ordering::SeqCst);
            "computed".to_owned()
        })
        .await;
    assert_eq!(
        (now.as_str(), runs.load(Ordering::SeqCst)),
        ("new", 0),
        "B dropped its copy and read the new value from Redis"
    );
    drop(a);
    tokio::task::spawn_blocking(move || drop(proxy))
        .await
        .unwrap();
}

/// A computation that asks for its own key (two functions sharing a key template, one calling
/// the other) computes it alone, as in a memory cache: it does not wait for the distributed lock
/// its own outer call holds, which would keep it waiting for its own value until that lock
/// expires (here 30 s) before computing anyway.
#[tokio::test]
async fn a_computation_asking_for_its_own_key_does_not_wait_for_its_own_lock() {
    let policy = Policy::new()
        .ttl(Duration::from_secs(60))
        .lock_ttl(Duration::from_secs(30));
    let manager = instance("self-lock", policy).await;
    let cache = manager.cache("items");
    let runs = AtomicU64::new(0);
    let outer = cache.get_or_insert_with("user:1", || async {
        runs.fetch_add(1, Ordering::SeqCst);
        let inner = cache
            .get_or_insert_with("user:1", || async {
                runs.fetch_add(1, Ordering::SeqCst);
                1u32
            })
            .await;
        inner + 1
    });
    let value = tokio::time::timeout(Duration::from_secs(10), outer)
        .await
        .expect("the inner call waited for the lock its outer call holds");
    assert_eq!(value, 2);
    assert_eq!(runs.load(Ordering::SeqCst), 2, "each body ran once");
}

/// The same for a synchronous body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_computation_asking_for_its_own_key_does_not_wait_for_its_own_lock() {
    let policy = Policy::new()
        .ttl(Duration::from_secs(60))
        .lock_ttl(Duration::from_secs(30));
    let manager = instance("self-lock-blocking", policy).await;
    let cache = manager.cache("items");
    let outer = tokio::task::spawn_blocking(move || {
        cache.blocking().get_or_insert_with("user:1", || {
            cache.blocking().get_or_insert_with("user:1", || 1u32) + 1
        })
    });
    let value = tokio::time::timeout(Duration::from_secs(10), outer)
        .await
        .expect("the inner call waited for the lock its outer call holds")
        .unwrap();
    assert_eq!(value, 2);
}

/// A value too large for Redis is refused before anything is sent, so Redis still holds the key's
/// previous value: `Cache::set` then deletes that value and announces it, or every other instance
/// (and this one, past its L1 TTL) would go on reading a value older than the last write.
#[tokio::test]
async fn a_set_too_large_for_redis_does_not_leave_the_old_value_there() {
    let namespace = "too-large-set";
    let a = CacheManager::builder()
        .remote(RedisBackend::new(
            RedisConfig::standalone(server().url())
                .namespace(namespace)
                .max_value_bytes(1024),
        ))
        .cache("items", Policy::new().ttl_secs(600).tier(Tier::Hybrid))
        .resilience(Resilience::new().timeout(Duration::from_secs(2)))
        .build();
    tests::backplane_subscribed(&a).await;
    let b = instance(namespace, Policy::new().ttl_secs(600)).await;
    let (ca, cb) = (a.cache("items"), b.cache("items"));

    ca.set("k", "old".to_owned()).await;
    backplane_reaches(&b, |s| s.applied >= 1).await;
    assert_eq!(cb.get::<String>("k").await.as_deref(), Some("old"));
    let applied = b.backplane_stats().unwrap().applied;

    // Incompressible, so its envelope stays past the limit.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let big: String = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    ca.set("k", big.clone()).await;
    assert_eq!(
        a.stats()[0].remote.clone().unwrap_or_default().too_large,
        1,
        "Redis refused the new value"
    );
    assert_eq!(
        ca.get::<String>("k").await,
        Some(big),
        "A holds it in memory"
    );
    backplane_reaches(&b, |s| s.applied > applied).await;
    assert_eq!(
        cb.get::<String>("k").await,
        None,
        "B reads neither its copy of the old value nor the old value in Redis"
    );
}

/// An instance like [`instance`] whose Redis user may not `PUBLISH`: its writes reach Redis, its
/// announcements nobody (a failed publish, which docs/hybrid.md bounds by the L1 TTL).
async fn instance_that_cannot_publish(namespace: &str) -> CacheManager {
    let acl = std::process::Command::new(tests::redis_server::find_program("redis-cli"))
        .args(["-p", &server().port().to_string()])
        .args([
            "ACL", "SETUSER", "nopub", "on", "nopass", "~*", "&*", "+@all",
        ])
        .arg("-publish")
        .output()
        .expect("redis-cli runs");
    assert_eq!(String::from_utf8_lossy(&acl.stdout).trim(), "OK");
    let manager = CacheManager::builder()
        .remote(RedisBackend::new(
            RedisConfig::standalone(format!("redis://nopub:x@127.0.0.1:{}", server().port()))
                .namespace(namespace),
        ))
        .cache("items", Policy::new().tier(Tier::Hybrid))
        .resilience(
            Resilience::new()
                .timeout(Duration::from_secs(2))
                .failure_threshold(1_000),
        )
        .build();
    tests::backplane_subscribed(&manager).await;
    manager
}

/// Waits (bounded) until `m`'s cache "items" has seen a body fail: the background refresh a stale
/// read started has ended.
async fn until_a_body_failed(m: &CacheManager) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.cache("items").stats().body_failures == 0 {
        assert!(Instant::now() < deadline, "the refresh never ended");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `a` writes a newer value under `key`; the value lands in Redis but its announcement is
/// refused (`a` is an [`instance_that_cannot_publish`]).
async fn set_unannounced(a: &CacheManager, key: &str, value: &str) {
    let errors = a.cache("items").stats().remote.unwrap_or_default().errors;
    a.cache("items").set(key, value.to_owned()).await;
    assert!(
        a.cache("items").stats().remote.unwrap_or_default().errors > errors,
        "A's PUBLISH was refused"
    );
}

static QUOTE_FAILS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cache_core::cached(cache = "items", key = "quote:{id}", ttl = "300ms", stale = "1m")]
async fn quote(id: u64) -> Result<String, String> {
    if QUOTE_FAILS.load(Ordering::SeqCst) {
        return Err("the data source is down".to_owned());
    }
    Ok(format!("quote {id} v1"))
}

/// A stale value read from Redis and served stale-while-revalidate is kept in memory, to serve
/// while its refresh runs; in a hybrid cache that copy, like any other, lives no longer than the
/// L1 TTL. Past it the instance reads Redis again, which may hold a newer value whose message
/// never arrived (a failed `PUBLISH`: docs/hybrid.md says the copy lasts until the L1 TTL), rather
/// than serving the old one for the whole stale window each time its refresh fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_copy_from_redis_lives_no_longer_than_the_l1_ttl() {
    let namespace = "stale-copy-l1";
    let a = instance_that_cannot_publish(namespace).await;
    let b = instance(namespace, Policy::new().l1_ttl(Duration::from_millis(100))).await;

    assert_eq!(b.scope(quote(1)).await.unwrap(), "quote 1 v1");
    // Past the TTL (Redis keeps the value for its stale window), and the source goes down.
    tokio::time::sleep(Duration::from_millis(400)).await;
    QUOTE_FAILS.store(true, Ordering::SeqCst);
    assert_eq!(
        b.scope(quote(1)).await.unwrap(),
        "quote 1 v1",
        "B serves the stale value from Redis"
    );
    until_a_body_failed(&b).await;

    set_unannounced(&a, "quote:1", "quote 1 v2").await;
    // Past B's L1 TTL.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        b.scope(quote(1)).await.unwrap(),
        "quote 1 v2",
        "past the L1 TTL B reads Redis, which holds A's value"
    );
}

static FS_FAILS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cache_core::cached(cache = "items", key = "fsq:{id}", ttl = "300ms", fail_safe = "1m")]
async fn fsq(id: u64) -> Result<String, String> {
    if FS_FAILS.load(Ordering::SeqCst) {
        return Err("the data source is down".to_owned());
    }
    Ok(format!("fsq {id} v1"))
}

/// The fail-safe copy an instance keeps after its body failed (the old value, fresh for the
/// throttle, 30 s by default) is an L1 copy too: in a hybrid cache it lives no longer than the L1
/// TTL, so past it the instance reads Redis, which may hold a newer value whose message never
/// arrived, before trying its body again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fail_safe_copy_lives_no_longer_than_the_l1_ttl() {
    let namespace = "fs-copy-l1";
    let a = instance_that_cannot_publish(namespace).await;
    let b = instance(namespace, Policy::new().l1_ttl(Duration::from_millis(100))).await;

    assert_eq!(b.scope(fsq(1)).await.unwrap(), "fsq 1 v1");
    // Past the TTL (Redis keeps the value for its stale window), and the source goes down.
    tokio::time::sleep(Duration::from_millis(400)).await;
    FS_FAILS.store(true, Ordering::SeqCst);
    assert_eq!(
        b.scope(fsq(1)).await.unwrap(),
        "fsq 1 v1",
        "B serves its fail-safe value"
    );
    until_a_body_failed(&b).await;

    set_unannounced(&a, "fsq:1", "fsq 1 v2").await;
    // Past B's L1 TTL.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        b.scope(fsq(1)).await.unwrap(),
        "fsq 1 v2",
        "past the L1 TTL B reads Redis, which holds A's value"
    );
}

static PAGE_FAILS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cache_core::cached(cache = "items", key = "page:{id}", ttl = "300ms", stale = "1m")]
async fn page(id: u64) -> Result<String, String> {
    if PAGE_FAILS.load(Ordering::SeqCst) {
        return Err("the data source is down".to_owned());
    }
    Ok(format!("page {id} v1"))
}

/// With an L1 TTL longer than the entry's TTL, the memory copy keeps its stale window (it serves
/// stale-while-revalidate from memory), but only until the L1 TTL: past it the instance reads
/// Redis, which may hold a newer value whose message never arrived, rather than serving its old
/// copy for the whole stale window each time its refresh fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_kept_past_its_ttl_lives_no_longer_than_the_l1_ttl() {
    let namespace = "kept-copy-l1";
    let a = instance_that_cannot_publish(namespace).await;
    let b = instance(namespace, Policy::new().l1_ttl(Duration::from_secs(1))).await;

    assert_eq!(b.scope(page(1)).await.unwrap(), "page 1 v1");
    // Past the TTL, within the L1 TTL, and the source goes down: B serves its copy stale.
    tokio::time::sleep(Duration::from_millis(400)).await;
    PAGE_FAILS.store(true, Ordering::SeqCst);
    assert_eq!(b.scope(page(1)).await.unwrap(), "page 1 v1");
    until_a_body_failed(&b).await;

    set_unannounced(&a, "page:1", "page 1 v2").await;
    // Past B's L1 TTL, counted from when B stored its copy.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        b.scope(page(1)).await.unwrap(),
        "page 1 v2",
        "past the L1 TTL B reads Redis, which holds A's value"
    );
}

/// An instance that waited for another's value (the distributed lock) keeps it in memory like
/// any L2 hit: the holder's announcement of its write, which arrives during the wait, is not an
/// invalidation of a value read after it. (It was taken for one, so every waiting instance
/// returned the value without storing it, and read Redis again on its next call.)
///
/// The order is pinned: B's poll is held until the announcement has been applied on B, so B reads
/// the value after it. Left to timing, the announcement could also arrive after B stored the
/// value and evict it, which is correct (B cannot tell it announces the value it holds) and costs
/// one read, but is not what this test is about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_waited_for_on_another_instance_is_kept_in_memory() {
    use cache_core::testing::FaultyBackend;
    use std::sync::Arc;
    use tokio::sync::Notify;

    let a = instance("lock-wait-kept", Policy::new().ttl_secs(60)).await;
    let b_backend = FaultyBackend::new(redis("lock-wait-kept"));
    let b_faults = b_backend.faults();
    let b = instance_on(b_backend, Policy::new().ttl_secs(60)).await;
    let (ca, cb) = (a.cache("items"), b.cache("items"));
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let runs = Arc::new(AtomicU64::new(0));

    let holder = tokio::spawn({
        let (started, release, runs) = (started.clone(), release.clone(), runs.clone());
        async move {
            ca.get_or_insert_with("k", || async {
                runs.fetch_add(1, Ordering::SeqCst);
                started.notify_one();
                release.notified().await;
                "A's value".to_owned()
            })
            .await
        }
    });
    // A holds the lock once its body runs.
    tokio::time::timeout(Duration::from_secs(5), started.notified())
        .await
        .expect("A's body started");
    let waiter = tokio::spawn({
        let (cb, runs) = (cb.clone(), runs.clone());
        async move {
            cb.get_or_insert_with("k", || async {
                runs.fetch_add(1, Ordering::SeqCst);
                "B's value".to_owned()
            })
            .await
        }
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while cb.stats().remote.unwrap_or_default().lock_waits == 0 {
        assert!(Instant::now() < deadline, "B never waited for A's lock");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // B's next look at the value, made while A still computes, answers "none yet" and is held.
    let poll = b_faults.hold_next_get();
    tokio::time::timeout(Duration::from_secs(5), poll.reached())
        .await
        .expect("B polled for A's value");
    let applied = b.backplane_stats().expect("hybrid").applied;
    release.notify_one();
    assert_eq!(holder.await.unwrap(), "A's value");
    // A has written and announced; B applies the announcement while it is still waiting.
    backplane_reaches(&b, |s| s.applied > applied).await;
    poll.release();
    assert_eq!(waiter.await.unwrap(), "A's value", "B got A's value");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "only A's body ran");

    assert_eq!(cb.len(), 1, "B keeps the value it waited for");
    let remote_hits = cb.stats().remote.unwrap_or_default().hits;
    let again: String = cb
        .get_or_insert_with("k", || async { unreachable!() })
        .await;
    assert_eq!(again, "A's value");
    assert_eq!(
        cb.stats().remote.unwrap_or_default().hits,
        remote_hits,
        "B's next call is a memory hit, not another Redis read"
    );
}

#[tokio::test]
async fn deployments_on_different_databases_do_not_hear_each_other() {
    // Redis pub/sub ignores the database number: without it in the channel name, an instance
    // on database 0 emptied the memory tiers of a deployment on database 1 of the same server.
    let on_db = |db: u8| {
        let url = format!("{}/{db}", server().url());
        async move {
            let manager = CacheManager::builder()
                .remote(RedisBackend::new(
                    RedisConfig::standalone(url).namespace("tiers-databases"),
                ))
                .cache("items", Policy::new().ttl_secs(60).tier(Tier::Hybrid))
                .resilience(Resilience::new().timeout(Duration::from_secs(2)))
                .build();
            tests::backplane_subscribed(&manager).await;
            manager
        }
    };
    let (zero, one, one_again) = (on_db(0).await, on_db(1).await, on_db(1).await);

    // Database 0 announces a delete, then database 1 announces one. Had they shared a
    // channel, the subscriber on database 1 would get both, in that order.
    zero.cache("items").delete("k").await;
    one_again.cache("items").delete("k").await;
    backplane_reaches(&one, |s| s.applied >= 1).await;
    let heard = one.backplane_stats().unwrap();
    assert_eq!(
        (heard.applied, heard.foreign),
        (1, 0),
        "database 1 heard only database 1"
    );
}

#[tokio::test]
async fn an_admin_process_without_hybrid_caches_reaches_the_instances_memory() {
    // An admin tool or a worker invalidates what the application instances cache. It has no
    // hybrid cache of its own; before, it got no backplane at all, so its invalidations
    // changed Redis and never reached the instances' memory copies (until their L1 TTL).
    let app = instance("tiers-admin", Policy::new().ttl_secs(60)).await;
    let items = app.cache("items");
    let remote_only = |policies: &[(&str, Tier)]| {
        let mut builder = CacheManager::builder()
            .remote(RedisBackend::new(
                RedisConfig::standalone(server().url()).namespace("tiers-admin"),
            ))
            .resilience(Resilience::new().timeout(Duration::from_secs(2)));
        for (name, tier) in policies {
            builder = builder.cache(*name, Policy::new().ttl_secs(60).tier(*tier));
        }
        builder.build()
    };
    // Knows `items` as a remote cache; and one that knows no cache at all.
    let admin = remote_only(&[("items", Tier::Remote)]);
    let bare = remote_only(&[]);
    assert!(
        admin.backplane_stats().is_none(),
        "it publishes, it does not subscribe"
    );

    let runs = AtomicU64::new(0);
    // Each way of invalidating from the admin: the app's next read runs its body again.
    for (what, step) in [
        ("invalidate_key", 0),
        ("Cache::delete", 1),
        ("invalidate_pattern", 2),
        ("invalidate_cache", 3),
        ("Cache::set", 4),
        ("invalidate_tag from a manager with no caches", 5),
        ("invalidate_all from a manager with no caches", 6),
    ] {
        let key = format!("k{step}");
        if step == 5 {
            items
                .set_with(
                    &key,
                    "tagged".to_owned(),
                    cache_core::EntryOptions::new().tag("t5"),
                )
                .await;
        } else {
            read(&items, &key, &runs).await;
        }
        let before = runs.load(Ordering::SeqCst);
        read(&items, &key, &runs).await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            before,
            "{what}: a memory hit first"
        );

        match step {
            0 => assert!(admin.invalidate_key("items", &key).await),
            1 => assert!(admin.cache("items").delete(&key).await),
            2 => {
                admin.invalidate_pattern("items", "k2*").await;
            }
            3 => {
                admin.invalidate_cache("items").await;
            }
            4 => {
                admin
                    .cache("items")
                    .set(&key, "set by admin".to_owned())
                    .await
            }
            5 => {
                bare.invalidate_tag("t5").await;
            }
            _ => {
                bare.invalidate_all().await;
            }
        }
        // One message per step.
        backplane_reaches(&app, |s| s.applied > step).await;
        let value = read(&items, &key, &runs).await;
        if step == 4 {
            assert_eq!(value, "set by admin", "{what}: the app reads the new value");
        } else {
            assert_eq!(
                runs.load(Ordering::SeqCst),
                before + 1,
                "{what}: the app's memory copy is gone"
            );
        }
    }
}
