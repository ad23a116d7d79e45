//! `#[cached]` on a Redis-only cache while Redis misbehaves: stopped, restarted, paused
//! (SIGSTOP), replaced by a listener that never answers, refusing writes, or not there yet when
//! the application starts. In every case a call answers correctly by running its body, no call
//! waits much longer than the configured timeout (50 ms here), the breaker opens after repeated
//! failures and then skips Redis, and caching resumes by itself once Redis is healthy again.
//!
//! Each test owns its server (they stop and pause them) and its manager.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cache_core::{BreakerState, CacheManager, Policy, RemoteStats, Resilience, Tier, cached};
use cache_redis::{RedisBackend, RedisConfig};
use tests::redis_server::{BlackHole, RedisServer, free_port};

/// The per-operation timeout under test.
const TIMEOUT: Duration = Duration::from_millis(50);
/// What one call may take at most: a read and a write, each cut at the timeout, plus slack for
/// a loaded machine. A hang bound, not a performance target.
const CALL_BOUND: Duration = Duration::from_millis(500);

fn manager_with(config: RedisConfig) -> CacheManager {
    CacheManager::builder()
        .remote(RedisBackend::new(config))
        .resilience(
            Resilience::new()
                .timeout(TIMEOUT)
                .failure_threshold(3)
                .open_for(Duration::from_millis(100))
                .bulk_timeout(Duration::from_millis(200)),
        )
        .cache("users", Policy::new().tier(Tier::Remote).ttl_secs(60))
        .build()
}

fn manager(url: &str, namespace: &str) -> CacheManager {
    manager_with(RedisConfig::standalone(url).namespace(namespace))
}

fn remote(m: &CacheManager) -> RemoteStats {
    m.cache("users").stats().remote.expect("remote stats")
}

fn exists(server: &RedisServer, namespace: &str, key: &str) -> bool {
    let full = RedisBackend::new(RedisConfig::standalone(server.url()).namespace(namespace))
        .redis_key("users", key);
    server.cli(&["EXISTS", &full]) == "1"
}

/// Runs `call` under `m`, checks it answered `expected` within [`CALL_BOUND`].
async fn bounded_call<F: Future<Output = String>>(m: &CacheManager, call: F, expected: &str) {
    let started = Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(5), m.scope(call))
        .await
        .expect("a call hung");
    let took = started.elapsed();
    assert_eq!(got, expected);
    assert!(took < CALL_BOUND, "a call took {took:?}");
}

/// Polls `f` until it returns true, or panics with `what` after `limit`.
async fn eventually<Fut: Future<Output = bool>>(
    limit: Duration,
    what: &str,
    mut f: impl FnMut() -> Fut,
) {
    let deadline = Instant::now() + limit;
    while !f().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Calls until a value computed by `call` lands in Redis under `key` and the breaker is closed:
/// on a loaded machine the first connection may miss the 50 ms timeout, and that must not fail
/// a test about something else.
async fn until_cached<F, Fut>(m: &CacheManager, server: &RedisServer, ns: &str, key: &str, call: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = String>,
{
    eventually(
        Duration::from_secs(10),
        "the value reaches Redis",
        || async {
            m.scope(call()).await;
            remote(m).breaker == Some(BreakerState::Closed) && exists(server, ns, key)
        },
    )
    .await;
}

// --- Redis stopped, then restarted ---------------------------------------------------------

static STOP_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "stop:{id}")]
async fn stop_value(id: u64) -> String {
    STOP_RUNS.fetch_add(1, SeqCst);
    format!("value {id}")
}

#[tokio::test]
async fn redis_stopped_mid_test_then_restarted() {
    const NS: &str = "stop";
    let mut server = RedisServer::start();
    let m = manager(&server.url(), NS);
    until_cached(&m, &server, NS, "stop:1", || stop_value(1)).await;
    let runs = STOP_RUNS.load(SeqCst);
    bounded_call(&m, stop_value(1), "value 1").await;
    assert_eq!(STOP_RUNS.load(SeqCst), runs, "a Redis hit");

    server.stop();
    for i in 0..10 {
        bounded_call(&m, stop_value(1), "value 1").await;
        assert_eq!(STOP_RUNS.load(SeqCst), runs + 1 + i, "the body answers");
    }
    let s = remote(&m);
    assert_eq!(s.breaker, Some(BreakerState::Open), "{s:?}");
    assert!(s.errors >= 3, "{s:?}");
    assert!(
        s.skipped > 0,
        "calls skip Redis while the breaker is open: {s:?}"
    );
    let skipped = s.skipped;
    bounded_call(&m, stop_value(1), "value 1").await;
    assert!(remote(&m).skipped > skipped);
    // Invalidations while Redis is down return promptly too.
    let started = Instant::now();
    m.invalidate_tag("anything").await;
    m.invalidate_pattern("users", "stop:*").await;
    assert!(started.elapsed() < CALL_BOUND, "{:?}", started.elapsed());

    // Same port, empty data: the app notices by itself; no restart, no reconfiguration.
    server.restart();
    until_cached(&m, &server, NS, "stop:2", || stop_value(2)).await;
    let runs = STOP_RUNS.load(SeqCst);
    let hits = remote(&m).hits;
    bounded_call(&m, stop_value(2), "value 2").await;
    assert_eq!(STOP_RUNS.load(SeqCst), runs, "an L2 hit again");
    assert_eq!(remote(&m).hits, hits + 1);
    assert_eq!(remote(&m).breaker, Some(BreakerState::Closed));
}

// --- Redis paused (accepts, never answers) -------------------------------------------------

static PAUSE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "pause:{id}")]
async fn pause_value(id: u64) -> String {
    PAUSE_RUNS.fetch_add(1, SeqCst);
    format!("value {id}")
}

#[tokio::test]
async fn a_paused_redis_costs_each_call_at_most_the_timeout() {
    const NS: &str = "pause";
    let mut server = RedisServer::start();
    let m = manager(&server.url(), NS);
    until_cached(&m, &server, NS, "pause:1", || pause_value(1)).await;

    server.pause();
    let runs = PAUSE_RUNS.load(SeqCst);
    for i in 0..8 {
        bounded_call(&m, pause_value(1), "value 1").await;
        assert_eq!(PAUSE_RUNS.load(SeqCst), runs + 1 + i);
    }
    let s = remote(&m);
    assert_eq!(s.breaker, Some(BreakerState::Open), "{s:?}");
    assert!(s.timeouts >= 3, "the timeout fired: {s:?}");
    assert!(s.skipped > 0, "{s:?}");

    // Concurrent callers of many keys: each bounded, all answered.
    let started = Instant::now();
    let calls: Vec<_> = (10..30)
        .map(|id| {
            let m = m.clone();
            tokio::spawn(async move { m.scope(pause_value(id)).await })
        })
        .collect();
    for (call, id) in calls.into_iter().zip(10..) {
        assert_eq!(call.await.unwrap(), format!("value {id}"));
    }
    assert!(
        started.elapsed() < CALL_BOUND * 2,
        "{:?}",
        started.elapsed()
    );

    // An invalidation waits no longer than the bulk timeout.
    tokio::time::sleep(Duration::from_millis(120)).await; // let the breaker half-open
    let started = Instant::now();
    m.invalidate_tag("t").await;
    assert!(started.elapsed() < CALL_BOUND, "{:?}", started.elapsed());

    server.resume();
    until_cached(&m, &server, NS, "pause:2", || pause_value(2)).await;
    let runs = PAUSE_RUNS.load(SeqCst);
    bounded_call(&m, pause_value(2), "value 2").await;
    assert_eq!(PAUSE_RUNS.load(SeqCst), runs, "an L2 hit after resume");
}

// --- a listener that never answers ---------------------------------------------------------

static HOLE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "hole:{id}")]
async fn hole_value(id: u64) -> String {
    HOLE_RUNS.fetch_add(1, SeqCst);
    format!("value {id}")
}

#[tokio::test]
async fn a_black_hole_costs_each_call_at_most_the_timeout() {
    let hole = BlackHole::start();
    let m = manager(&hole.url(), "hole");
    for i in 0..8 {
        bounded_call(&m, hole_value(i % 2), &format!("value {}", i % 2)).await;
    }
    assert_eq!(
        HOLE_RUNS.load(SeqCst),
        8,
        "nothing was cached, every call answered"
    );
    let s = remote(&m);
    assert_eq!(s.breaker, Some(BreakerState::Open), "{s:?}");
    assert!(s.timeouts >= 3, "{s:?}");
    assert!(s.skipped > 0, "{s:?}");
    assert_eq!(s.hits, 0);
}

// --- writes that fail ----------------------------------------------------------------------

static OOM_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "oom:{id}")]
async fn oom_value(id: u64) -> Result<String, String> {
    OOM_RUNS.fetch_add(1, SeqCst);
    Ok(format!("value {id}"))
}

static BIG_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "big:{id}")]
async fn big_value(id: u64) -> Vec<u64> {
    BIG_RUNS.fetch_add(1, SeqCst);
    (0..1_000).map(|i| i * id + i * i).collect()
}

#[tokio::test]
async fn a_failed_write_never_turns_the_value_into_an_error() {
    const NS: &str = "oom";
    let server = RedisServer::start();
    let m = manager(&server.url(), NS);
    until_cached(&m, &server, NS, "oom:0", || async {
        oom_value(0).await.unwrap()
    })
    .await;

    // Reads work, every write is refused: `OOM command not allowed when used memory > 'maxmemory'`.
    server.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    server.cli(&["CONFIG", "SET", "maxmemory", "1"]);
    let before = remote(&m);
    let runs = OOM_RUNS.load(SeqCst);
    for id in 1..=5 {
        let started = Instant::now();
        assert_eq!(m.scope(oom_value(id)).await, Ok(format!("value {id}")));
        assert!(started.elapsed() < CALL_BOUND);
    }
    assert_eq!(OOM_RUNS.load(SeqCst), runs + 5);
    let s = remote(&m);
    // Each call's single-flight lock (`SET NX`, a write too) and its value's `SET` are refused;
    // the refused lock means "compute now", never "wait".
    assert_eq!(
        s.errors,
        before.errors + 10,
        "each refused SET counted: {s:?}"
    );
    assert_eq!(s.lock_waits, before.lock_waits, "{s:?}");
    assert!(!exists(&server, NS, "oom:1"));
    // The already stored value is still served (reads work).
    assert_eq!(m.scope(oom_value(0)).await, Ok("value 0".to_owned()));
    assert_eq!(OOM_RUNS.load(SeqCst), runs + 5);
    server.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    m.scope(oom_value(1)).await.unwrap();
    assert!(exists(&server, NS, "oom:1"), "writes land again");

    // A value over the tier's size limit is refused before it is sent; the caller still gets
    // it, and the refusal says nothing against Redis's health.
    let small = manager_with(
        RedisConfig::standalone(server.url())
            .namespace(NS)
            .max_value_bytes(256),
    );
    for _ in 0..5 {
        assert_eq!(small.scope(big_value(3)).await.len(), 1_000);
    }
    assert_eq!(BIG_RUNS.load(SeqCst), 5);
    let s = remote(&small);
    assert_eq!(s.too_large, 5, "{s:?}");
    assert_eq!(s.errors, 0, "{s:?}");
    assert_eq!(s.breaker, Some(BreakerState::Closed), "{s:?}");
    assert!(!exists(&server, NS, "big:3"));
}

// --- started while Redis is down -----------------------------------------------------------

static LATE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "late:{id}")]
async fn late_value(id: u64) -> String {
    LATE_RUNS.fetch_add(1, SeqCst);
    format!("value {id}")
}

#[tokio::test]
async fn the_app_starts_while_redis_is_down_and_serves_through_it() {
    const NS: &str = "late";
    let port = free_port(false);
    let m = manager(&format!("redis://127.0.0.1:{port}"), NS);
    for i in 0..6 {
        bounded_call(&m, late_value(1), "value 1").await;
        assert_eq!(LATE_RUNS.load(SeqCst), 1 + i);
    }
    let s = remote(&m);
    assert_eq!(s.breaker, Some(BreakerState::Open), "{s:?}");
    assert!(s.skipped > 0, "{s:?}");
    // The Cache API too.
    let users = m.cache("users");
    users.set("direct", 1u32).await;
    assert_eq!(users.get::<u32>("direct").await, None);

    let server = RedisServer::start_on_port(port, &[]);
    until_cached(&m, &server, NS, "late:1", || late_value(1)).await;
    let runs = LATE_RUNS.load(SeqCst);
    bounded_call(&m, late_value(1), "value 1").await;
    assert_eq!(LATE_RUNS.load(SeqCst), runs, "an L2 hit");
    users.set("direct", 2u32).await;
    assert_eq!(users.get::<u32>("direct").await, Some(2));
}

#[tokio::test]
async fn backplane_subscribed_says_false_while_redis_is_down_and_true_once_it_is_up() {
    let port = free_port(false);
    let m = CacheManager::builder()
        .remote(RedisBackend::new(
            RedisConfig::standalone(format!("redis://127.0.0.1:{port}")).namespace("readiness"),
        ))
        .cache("users", Policy::new().tier(Tier::Hybrid))
        .build();
    assert!(
        m.backplane_stats().is_some(),
        "a hybrid cache has a backplane"
    );
    let asked = Instant::now();
    assert!(
        !m.backplane_subscribed(Duration::from_millis(200)).await,
        "nothing listens on port {port}"
    );
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < CALL_BOUND,
        "waited {waited:?} for a 200 ms limit"
    );

    let _server = RedisServer::start_on_port(port, &[]);
    // The subscription loop retries with a back-off of at most 2 s.
    assert!(
        m.backplane_subscribed(Duration::from_secs(10)).await,
        "the backplane subscribed once Redis was up"
    );
    assert_eq!(m.backplane_stats().map(|s| s.subscriptions), Some(1));
}
