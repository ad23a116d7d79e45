//! Freshness on Redis-backed caches, on a real `redis-server`: a value kept in Redis past its TTL
//! (for its stale and fail-safe windows) serves stale-while-revalidate and fail-safe for an
//! instance that has never seen it in memory, as after a restart. Redis keeps time itself, so the
//! TTLs here are short real durations.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cache_core::testing::give_up_after;
use cache_core::{CacheManager, Policy, Resilience, Tier, cached};
use cache_redis::{RedisBackend, RedisConfig};
use tests::RedisServer;

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::start_with_args(tests::NO_BULK_COMMANDS))
}

/// A fresh "process": its own memory tier, the Redis tier under `namespace`.
fn instance(namespace: &str, tier: Tier) -> CacheManager {
    CacheManager::builder()
        .remote(RedisBackend::new(
            RedisConfig::standalone(server().url()).namespace(namespace),
        ))
        .resilience(Resilience::new().timeout(Duration::from_secs(2)))
        .cache("articles", Policy::new().tier(tier))
        .cache("prices", Policy::new().tier(tier))
        .build()
}

/// Polls until `f` holds; background work runs on other tasks meanwhile.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "{what} within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

static ARTICLE_RUNS: AtomicU64 = AtomicU64::new(0);
static ARTICLE_VERSION: AtomicU64 = AtomicU64::new(1);

#[cached(cache = "articles", key = "article:{id}", ttl = "300ms", stale = "1m")]
async fn article(id: u64) -> String {
    ARTICLE_RUNS.fetch_add(1, SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    format!("article {id} v{}", ARTICLE_VERSION.load(SeqCst))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_only_cache_serves_stale_from_redis_and_refreshes_it() {
    let writer = instance("fresh-swr", Tier::Remote);
    assert_eq!(writer.scope(article(1)).await, "article 1 v1");
    assert_eq!(ARTICLE_RUNS.load(SeqCst), 1);

    // Redis expires nothing at the TTL: the value stays for its stale window.
    tokio::time::sleep(Duration::from_millis(400)).await;
    ARTICLE_VERSION.store(2, SeqCst);

    // Another instance, which never held the value, gets the stale one without waiting for
    // the 200 ms body, and one background refresh runs.
    let reader = instance("fresh-swr", Tier::Remote);
    let started = Instant::now();
    assert_eq!(reader.scope(article(1)).await, "article 1 v1");
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "served without the body"
    );
    assert_eq!(reader.cache("articles").stats().stale_served, 1);
    eventually("the refresh", || ARTICLE_RUNS.load(SeqCst) == 2).await;
    // The refresh writes to Redis after its body: wait until a plain read sees a fresh value.
    let deadline = Instant::now() + Duration::from_secs(10);
    while reader
        .cache("articles")
        .get::<String>("article:1")
        .await
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "the refreshed value in Redis within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(writer.scope(article(1)).await, "article 1 v2");
    assert_eq!(ARTICLE_RUNS.load(SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hybrid_cache_keeps_the_stale_value_in_memory_after_reading_it_from_redis() {
    let writer = instance("fresh-hybrid", Tier::Hybrid);
    subscribed(&writer).await;
    let first = writer.scope(hybrid_article(5)).await;
    tokio::time::sleep(Duration::from_millis(400)).await;

    let reader = instance("fresh-hybrid", Tier::Hybrid);
    subscribed(&reader).await;
    // Stale from Redis, then stale from memory: the second read needs no round trip and starts
    // no second refresh.
    assert_eq!(reader.scope(hybrid_article(5)).await, first);
    assert_eq!(reader.scope(hybrid_article(5)).await, first);
    let s = reader.cache("articles").stats();
    assert_eq!(s.stale_served, 2);
    eventually("the refresh", || {
        reader.cache("articles").stats().refreshes == 1
    })
    .await;
}

/// Waits for a hybrid instance's first backplane subscription, which clears its memory tier (it
/// may have missed invalidations before it), so that the test's values are not cleared with it.
async fn subscribed(m: &CacheManager) {
    m.cache("articles");
    tests::backplane_subscribed(m).await;
}

static HYBRID_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = "articles", key = "hybrid:{id}", ttl = "300ms", stale = "1m")]
async fn hybrid_article(id: u64) -> String {
    let run = HYBRID_RUNS.fetch_add(1, SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(200)).await;
    format!("hybrid {id} run {run}")
}

static PRICE_FAIL: AtomicBool = AtomicBool::new(false);
static PRICE_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = "prices", key = "price:{id}", ttl = "300ms", fail_safe = "1m")]
async fn price(id: u64) -> Result<u64, String> {
    PRICE_RUNS.fetch_add(1, SeqCst);
    if PRICE_FAIL.load(SeqCst) {
        return Err("pricing database down".into());
    }
    Ok(id * 10)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_safe_reaches_the_value_kept_in_redis_from_a_new_instance() {
    let first = instance("fresh-failsafe", Tier::Remote);
    assert_eq!(first.scope(price(3)).await, Ok(30));
    tokio::time::sleep(Duration::from_millis(400)).await;

    PRICE_FAIL.store(true, SeqCst);
    let second = instance("fresh-failsafe", Tier::Remote);
    assert_eq!(second.scope(price(3)).await, Ok(30));
    assert_eq!(PRICE_RUNS.load(SeqCst), 2, "the body ran and failed");
    assert_eq!(second.cache("prices").stats().fail_safe, 1);

    // A key Redis never held has no fallback.
    assert!(second.scope(price(4)).await.is_err());
    PRICE_FAIL.store(false, SeqCst);
}

#[derive(Debug, Clone, PartialEq)]
struct QuoteError;

impl From<cache_core::TimedOut> for QuoteError {
    fn from(_: cache_core::TimedOut) -> Self {
        QuoteError
    }
}

static QUOTE_RUNS: AtomicU64 = AtomicU64::new(0);
static QUOTE_DELAY_MS: AtomicU64 = AtomicU64::new(0);

#[cached(
    cache = "prices",
    key = "quote:{id}",
    ttl = "300ms",
    fail_safe = "1m",
    soft_timeout = "100ms",
    timeout = "10s"
)]
async fn quote(id: u64) -> Result<u64, QuoteError> {
    let run = QUOTE_RUNS.fetch_add(1, SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(QUOTE_DELAY_MS.load(SeqCst))).await;
    Ok(id * 1000 + run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_with_a_fallback_waits_for_another_instances_lock_no_longer_than_its_soft_timeout()
{
    let a = instance("fresh-lock-soft", Tier::Remote);
    assert_eq!(a.scope(quote(1)).await, Ok(1001));
    tokio::time::sleep(Duration::from_millis(400)).await;

    // Instance A recomputes slowly under the distributed lock: past its soft timeout it answers
    // with the value Redis kept, and its body goes on in the background, holding the lock.
    QUOTE_DELAY_MS.store(2_000, SeqCst);
    let started = Instant::now();
    assert_eq!(a.scope(quote(1)).await, Ok(1001));
    assert!(started.elapsed() < Duration::from_millis(1_500));

    // Instance B finds the lock held: it waits its soft timeout, not the lock's, and answers
    // with the kept value without running the body.
    let b = instance("fresh-lock-soft", Tier::Remote);
    let started = Instant::now();
    assert_eq!(b.scope(quote(1)).await, Ok(1001));
    assert!(
        started.elapsed() < Duration::from_millis(1_500),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(
        QUOTE_RUNS.load(SeqCst),
        2,
        "only A's background body ran again"
    );
    assert_eq!(b.cache("prices").stats().stale_served, 1);

    // A's body finishes and writes the new value, which both read.
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.cache("prices").get::<u64>("quote:1").await.is_none() {
        assert!(
            Instant::now() < deadline,
            "the background value within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.scope(quote(1)).await, Ok(1002));
    QUOTE_DELAY_MS.store(0, SeqCst);
}

#[derive(Debug, PartialEq)]
enum PriceError {
    TimedOut,
}

impl From<cache_core::TimedOut> for PriceError {
    fn from(_: cache_core::TimedOut) -> Self {
        PriceError::TimedOut
    }
}

static BOUNDED_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = "prices", key = "bounded:{id}", ttl = 60, timeout = "300ms")]
async fn bounded_price(id: u64) -> Result<u64, PriceError> {
    BOUNDED_RUNS.fetch_add(1, SeqCst);
    Ok(id)
}

/// The hard timeout bounds the whole call, the wait for another instance's value included: a
/// caller whose lock is held elsewhere (by an instance computing, or crashed) answers with its
/// timeout at 300 ms, not after the lock wait (3 s here) plus a fresh 300 ms for the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hard_timeout_bounds_the_wait_for_another_instance() {
    let m = CacheManager::builder()
        .remote(RedisBackend::new(
            RedisConfig::standalone(server().url()).namespace("bounded-wait"),
        ))
        .resilience(Resilience::new().timeout(Duration::from_secs(2)))
        .cache(
            "prices",
            Policy::new()
                .tier(Tier::Remote)
                .lock_wait(Duration::from_secs(3)),
        )
        .build();
    // Another instance holds the lock.
    server().cli(&[
        "SET",
        "bounded-wait:lock:prices:bounded:1",
        "x",
        "PX",
        "60000",
    ]);
    let started = Instant::now();
    assert_eq!(m.scope(bounded_price(1)).await, Err(PriceError::TimedOut));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(2_000),
        "answered after {took:?} with a 300 ms hard timeout and a 3 s lock wait"
    );
    assert_eq!(BOUNDED_RUNS.load(SeqCst), 0, "the body never ran");
    assert_eq!(m.cache("prices").stats().timeouts, 1);
}

static GONE: AtomicBool = AtomicBool::new(false);
static GONE_RUNS: AtomicU64 = AtomicU64::new(0);

/// `None` is an answer ("no such row"), not a failure.
#[cached(cache = "articles", key = "gone:{id}", ttl = "300ms", stale = "1m")]
async fn listing(id: u64) -> Option<u64> {
    GONE_RUNS.fetch_add(1, SeqCst);
    (!GONE.load(SeqCst)).then_some(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_answering_none_removes_the_stale_copy_from_redis_too() {
    use cache_core::remote::RemoteBackend as _;

    let writer = instance("fresh-gone", Tier::Hybrid);
    subscribed(&writer).await;
    assert_eq!(writer.scope(listing(1)).await, Some(1));
    tokio::time::sleep(Duration::from_millis(400)).await;
    GONE.store(true, SeqCst);

    // Stale: the old value at once, and a refresh that learns the row is gone.
    assert_eq!(writer.scope(listing(1)).await, Some(1));
    let redis = RedisBackend::new(RedisConfig::standalone(server().url()).namespace("fresh-gone"))
        .tier("articles");
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.get("gone:1").await.expect("redis answers").is_some() {
        assert!(
            Instant::now() < deadline,
            "the refresh removed the stale copy from Redis within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(GONE_RUNS.load(SeqCst), 2, "one refresh");

    // A new instance has no stale copy to serve: the body answers.
    let late = instance("fresh-gone", Tier::Hybrid);
    subscribed(&late).await;
    assert_eq!(late.scope(listing(1)).await, None);
    assert_eq!(late.cache("articles").stats().stale_served, 0);
    assert_eq!(GONE_RUNS.load(SeqCst), 3);
}

static HELD_RUNS: AtomicU64 = AtomicU64::new(0);
static HELD_DELAY_MS: AtomicU64 = AtomicU64::new(0);

#[cached(
    cache = "prices",
    key = "held:{id}",
    ttl = "300ms",
    fail_safe = "1m",
    soft_timeout = "100ms",
    timeout = "10s"
)]
async fn held_quote(id: u64) -> Result<u64, QuoteError> {
    let run = HELD_RUNS.fetch_add(1, SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(HELD_DELAY_MS.load(SeqCst))).await;
    Ok(id * 1000 + run)
}

/// While instance A holds the distributed lock, instance B's leading caller (which waits for
/// the lock with a fallback in hand) is dropped before each of its polls, with two callers of
/// its own waiting on it: they always answer with the kept value within about their soft
/// timeout, B never runs the body, and once A's value is written B reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_waiter_dropped_at_any_poll_leaves_its_followers_their_fallback() {
    let a = instance("fresh-lock-drop", Tier::Remote);
    assert_eq!(a.scope(held_quote(1)).await, Ok(1001));
    tokio::time::sleep(Duration::from_millis(400)).await;
    HELD_DELAY_MS.store(3_000, SeqCst);
    // A answers at its soft timeout; its body goes on under the lock for 3 s.
    assert_eq!(a.scope(held_quote(1)).await, Ok(1001));
    let b = instance("fresh-lock-drop", Tier::Remote);
    for polls in 0..8 {
        let leader = tokio::spawn(b.scope(give_up_after(polls, held_quote(1))));
        tokio::task::yield_now().await;
        let followers: Vec<_> = (0..2)
            .map(|_| tokio::spawn(b.scope(held_quote(1))))
            .collect();
        let started = Instant::now();
        let led = leader.await.unwrap();
        for f in followers {
            assert_eq!(f.await.unwrap(), Ok(1001), "polls {polls}");
        }
        assert!(
            started.elapsed() < Duration::from_millis(1_000),
            "polls {polls}: waited {:?}",
            started.elapsed()
        );
        assert!(
            matches!(led, None | Some(Ok(1001))),
            "polls {polls}: {led:?}"
        );
        assert_eq!(
            HELD_RUNS.load(SeqCst),
            2,
            "polls {polls}: only A's body ran"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.scope(held_quote(1)).await != Ok(1002) {
        assert!(Instant::now() < deadline, "A's value within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(HELD_RUNS.load(SeqCst), 2);
    HELD_DELAY_MS.store(0, SeqCst);
}

static BURST_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = "articles", key = "burst:{id}", ttl = "300ms", stale = "1m")]
async fn burst_article(id: u64) -> String {
    let run = BURST_RUNS.fetch_add(1, SeqCst) + 1;
    if run > 1 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    format!("burst {id} run {run}")
}

/// Stale-while-revalidate for a burst of callers on an instance that never held the value: the
/// one that reads it from Redis and the ones that joined its read all get the stale value at
/// once, and one refresh runs. (The callers that joined waited for the refresh's body.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_reading_a_stale_value_from_redis_is_served_at_once() {
    let writer = instance("fresh-burst", Tier::Remote);
    assert_eq!(writer.scope(burst_article(1)).await, "burst 1 run 1");
    tokio::time::sleep(Duration::from_millis(400)).await;

    let reader = instance("fresh-burst", Tier::Remote);
    let started = Instant::now();
    let calls: Vec<_> = (0..10)
        .map(|_| tokio::spawn(reader.scope(burst_article(1))))
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap(), "burst 1 run 1");
    }
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "nobody waited for the 500 ms refresh: {:?}",
        started.elapsed()
    );
    eventually("the refresh", || BURST_RUNS.load(SeqCst) == 2).await;
    let s = reader.cache("articles").stats();
    assert_eq!(s.refreshes, 1, "{s:?}");
}

static SOFT_BURST_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(
    cache = "prices",
    key = "soft_burst:{id}",
    ttl = "300ms",
    fail_safe = "1m",
    soft_timeout = "100ms",
    timeout = "10s"
)]
async fn soft_burst_quote(id: u64) -> Result<u64, QuoteError> {
    let run = SOFT_BURST_RUNS.fetch_add(1, SeqCst) + 1;
    if run > 1 {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    Ok(id * 1000 + run)
}

/// The soft timeout for a burst of callers on an instance whose fallback is in Redis only: the
/// caller that read it answers with it at its soft timeout, and so do the callers that joined
/// it (they read nothing themselves), instead of waiting for the slow body, which runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_past_its_soft_timeout_is_answered_with_the_fallback_from_redis() {
    let a = instance("fresh-soft-burst", Tier::Remote);
    assert_eq!(a.scope(soft_burst_quote(1)).await, Ok(1001));
    tokio::time::sleep(Duration::from_millis(400)).await;

    let b = instance("fresh-soft-burst", Tier::Remote);
    let started = Instant::now();
    let calls: Vec<_> = (0..5)
        .map(|_| tokio::spawn(b.scope(soft_burst_quote(1))))
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap(), Ok(1001));
    }
    assert!(
        started.elapsed() < Duration::from_millis(1_000),
        "nobody waited for the 1.5 s body: {:?}",
        started.elapsed()
    );
    // Once the body's value is written, a call reads it: the body ran once.
    eventually("the body's value", || SOFT_BURST_RUNS.load(SeqCst) == 2).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.cache("prices").get::<u64>("soft_burst:1").await.is_none() {
        assert!(Instant::now() < deadline, "the body's value within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(b.scope(soft_burst_quote(1)).await, Ok(1002));
    assert_eq!(SOFT_BURST_RUNS.load(SeqCst), 2, "the body ran once");
}
