//! Freshness around the TTL, through `#[cached]`: stale-while-revalidate, fail-safe, soft and hard
//! timeouts, refresh-ahead (fixed window and XFetch) and TTL jitter. Every test runs on tokio's
//! paused clock (the cache reads it through `Clock::tokio()`), so "immediately" means no virtual
//! time passed, and counts how often each body ran.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use cache_core::{CacheManager, CacheStats, Clock, TimedOut, cached};
use tokio::time::{Instant, advance, sleep};

fn manager() -> CacheManager {
    CacheManager::builder().clock(Clock::tokio()).build()
}

fn stats(m: &CacheManager, cache: &str) -> CacheStats {
    m.cache(cache).stats()
}

/// Lets background work run on the paused clock until `done` holds (virtual time only moves when
/// every task is idle, so this cannot race the work it waits for).
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3600);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        sleep(Duration::from_millis(1)).await;
    }
}

// --- stale-while-revalidate ------------------------------------------------------------------

static SWR_RUNS: AtomicU64 = AtomicU64::new(0);
static SWR_VERSION: AtomicU64 = AtomicU64::new(1);

#[cached(cache = "swr", key = "swr:{id}", ttl = 10, stale = 600)]
async fn profile(id: u64) -> String {
    SWR_RUNS.fetch_add(1, SeqCst);
    sleep(Duration::from_millis(200)).await;
    format!("{id}:v{}", SWR_VERSION.load(SeqCst))
}

#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_serves_the_old_value_at_once_and_refreshes_once() {
    let m = manager();
    m.scope(async {
        assert_eq!(profile(7).await, "7:v1");
        assert_eq!(SWR_RUNS.load(SeqCst), 1);

        advance(Duration::from_secs(11)).await;
        SWR_VERSION.store(2, SeqCst);

        // Past the TTL, within the stale window: the old value without waiting for the body,
        // for every concurrent caller, and one refresh in the background.
        let started = Instant::now();
        let calls: Vec<_> = (0..50).map(|_| profile(7)).collect();
        for value in futures_join(calls).await {
            assert_eq!(value, "7:v1");
        }
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "no caller waited for the body"
        );
        assert_eq!(stats(&m, "swr").stale_served, 50);

        until("the refresh", || stats(&m, "swr").inserts == 2).await;
        assert_eq!(SWR_RUNS.load(SeqCst), 2, "the refresh ran the body once");
        assert_eq!(stats(&m, "swr").refreshes, 1);

        let started = Instant::now();
        assert_eq!(profile(7).await, "7:v2");
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(SWR_RUNS.load(SeqCst), 2);

        // Past the stale window too: an ordinary miss that waits for the body.
        advance(Duration::from_secs(700)).await;
        SWR_VERSION.store(3, SeqCst);
        let started = Instant::now();
        assert_eq!(profile(7).await, "7:v3");
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        assert_eq!(SWR_RUNS.load(SeqCst), 3);
    })
    .await;
}

/// Runs futures concurrently on the current task.
async fn futures_join<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.expect("ready")).collect()
}

// --- fail-safe -------------------------------------------------------------------------------

static FS_RUNS: AtomicU64 = AtomicU64::new(0);
static FS_FAIL: AtomicBool = AtomicBool::new(false);
static FS_PANIC: AtomicBool = AtomicBool::new(false);

#[cached(cache = "fail_safe", key = "price:{id}", ttl = 10, fail_safe = 3600)]
async fn price(id: u64) -> Result<u64, String> {
    FS_RUNS.fetch_add(1, SeqCst);
    if FS_PANIC.load(SeqCst) {
        panic!("the pricing service crashed");
    }
    if FS_FAIL.load(SeqCst) {
        return Err("database unavailable".into());
    }
    Ok(id * 100 + FS_RUNS.load(SeqCst))
}

#[tokio::test(start_paused = true)]
async fn fail_safe_returns_the_last_good_value_until_its_window_ends() {
    let m = manager();
    m.scope(async {
        assert_eq!(price(1).await, Ok(101));
        advance(Duration::from_secs(11)).await;

        // The body fails after the TTL: the caller gets the last good value, the failure counts.
        FS_FAIL.store(true, SeqCst);
        assert_eq!(price(1).await, Ok(101));
        assert_eq!(FS_RUNS.load(SeqCst), 2);
        let s = stats(&m, "fail_safe");
        assert_eq!((s.fail_safe, s.body_failures), (1, 1));

        // The value is then served as fresh for the throttle: the failing body is not retried.
        assert_eq!(price(1).await, Ok(101));
        assert_eq!(FS_RUNS.load(SeqCst), 2);

        // After the throttle (30 s by default) the body is tried again; a panic is a failure too.
        advance(Duration::from_secs(31)).await;
        FS_PANIC.store(true, SeqCst);
        assert_eq!(price(1).await, Ok(101));
        assert_eq!(FS_RUNS.load(SeqCst), 3);
        FS_PANIC.store(false, SeqCst);

        // Past the fail-safe window (an hour after the TTL) the error is returned.
        advance(Duration::from_secs(3600)).await;
        assert_eq!(price(1).await, Err("database unavailable".to_owned()));
        assert_eq!(FS_RUNS.load(SeqCst), 4);

        // A recovered body caches again.
        FS_FAIL.store(false, SeqCst);
        assert_eq!(price(1).await, Ok(105));
        assert_eq!(price(1).await, Ok(105));
        assert_eq!(FS_RUNS.load(SeqCst), 5);
        assert_eq!(stats(&m, "fail_safe").fail_safe, 2);
    })
    .await;
}

static STOCK_FAIL: AtomicBool = AtomicBool::new(false);
static STOCK_PANIC: AtomicBool = AtomicBool::new(false);

#[cached(cache = "stock", key = "stock:{id}", ttl = 10, fail_safe = 3600)]
async fn stock(id: u64) -> Result<u64, String> {
    if STOCK_PANIC.load(SeqCst) {
        panic!("the stock service crashed");
    }
    if STOCK_FAIL.load(SeqCst) {
        return Err("database unavailable".into());
    }
    Ok(id)
}

#[tokio::test(start_paused = true)]
async fn without_a_fallback_an_error_is_returned_and_a_panic_propagates() {
    let m = manager();
    // A cold key has nothing to fall back on.
    STOCK_FAIL.store(true, SeqCst);
    assert_eq!(
        m.scope(stock(1)).await,
        Err("database unavailable".to_owned())
    );
    STOCK_FAIL.store(false, SeqCst);
    STOCK_PANIC.store(true, SeqCst);
    let m2 = m.clone();
    let crashed = tokio::spawn(async move { m2.scope(stock(2)).await }).await;
    assert!(crashed.unwrap_err().is_panic());
    STOCK_PANIC.store(false, SeqCst);
    assert_eq!(m.scope(stock(2)).await, Ok(2));
    assert_eq!(stats(&m, "stock").fail_safe, 0);
}

// --- invalidation while a fallback is held ---------------------------------------------------

static SWR_FS_RUNS: AtomicU64 = AtomicU64::new(0);
static SWR_FS_FAIL: AtomicBool = AtomicBool::new(false);

#[cached(
    cache = "swr_fs",
    key = "item:{id}",
    ttl = 10,
    stale = 600,
    fail_safe = 3600
)]
async fn item(id: u64) -> Result<u64, String> {
    let run = SWR_FS_RUNS.fetch_add(1, SeqCst) + 1;
    sleep(Duration::from_millis(100)).await;
    if SWR_FS_FAIL.load(SeqCst) {
        return Err("database unavailable".into());
    }
    Ok(id * 100 + run)
}

/// A stale read keeps the old value as the fallback of its background refresh. An invalidation
/// that returns before the refresh fails must stay in force: the failed refresh neither stores
/// the old value again nor hands it to a caller that arrived after the invalidation.
#[tokio::test(start_paused = true)]
async fn a_refresh_failing_after_an_invalidation_does_not_bring_the_old_value_back() {
    let m = manager();
    m.scope(async {
        assert_eq!(item(1).await, Ok(101));
        advance(Duration::from_secs(11)).await;
        SWR_FS_FAIL.store(true, SeqCst);

        // Stale: the old value at once; the refresh is spawned but has not started yet.
        assert_eq!(item(1).await, Ok(101));
        m.invalidate_key("swr_fs", "item:1").await;
        assert_eq!(
            SWR_FS_RUNS.load(SeqCst),
            1,
            "the refresh starts after the invalidation"
        );
        assert_eq!(m.cache("swr_fs").len(), 0);

        // The refresh starts. Its flight was claimed before the invalidation, so a caller
        // arriving now does not wait for it but runs its own body (which fails too).
        sleep(Duration::from_millis(1)).await;
        assert_eq!(SWR_FS_RUNS.load(SeqCst), 2, "the refresh is under way");
        let started = Instant::now();
        assert_eq!(
            item(1).await,
            Err("database unavailable".to_owned()),
            "nothing older than the invalidation is served"
        );
        assert_eq!(
            SWR_FS_RUNS.load(SeqCst),
            3,
            "the refresh and the caller's own body: it did not get the refresh's fallback"
        );
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(100),
            "the caller's own body alone: it did not wait for the refresh"
        );
        let s = stats(&m, "swr_fs");
        assert_eq!((s.refreshes, s.body_failures, s.fail_safe), (1, 2, 0));
        assert_eq!(
            m.cache("swr_fs").len(),
            0,
            "the failed refresh stored nothing"
        );

        // Still failing: each call runs the body, with no fallback to serve.
        assert_eq!(item(1).await, Err("database unavailable".to_owned()));
        assert_eq!(SWR_FS_RUNS.load(SeqCst), 4);

        SWR_FS_FAIL.store(false, SeqCst);
        assert_eq!(item(1).await, Ok(105));
        assert_eq!(item(1).await, Ok(105));
        assert_eq!(SWR_FS_RUNS.load(SeqCst), 5);
    })
    .await;
}

static TAKEOVER_RUNS: AtomicU64 = AtomicU64::new(0);
static TAKEOVER_FAIL: AtomicBool = AtomicBool::new(false);

#[cached(cache = "fs_takeover", key = "p:{id}", ttl = 10, fail_safe = 3600)]
async fn listing(id: u64) -> Result<u64, String> {
    let run = TAKEOVER_RUNS.fetch_add(1, SeqCst) + 1;
    sleep(Duration::from_millis(100)).await;
    if TAKEOVER_FAIL.load(SeqCst) {
        return Err("database unavailable".into());
    }
    Ok(id * 100 + run)
}

/// A follower read its fallback before an invalidation, then leads once its leader is cancelled
/// (as axum cancels a disconnected client's handler). When its body fails, its own caller (who
/// arrived before the invalidation) gets the old value, but the value is not stored and a caller
/// that arrived after the invalidation does not get it.
#[tokio::test(start_paused = true)]
async fn a_follower_taking_over_after_an_invalidation_keeps_its_fallback_to_itself() {
    let m = manager();
    assert_eq!(m.scope(listing(1)).await, Ok(101));
    advance(Duration::from_secs(11)).await;
    TAKEOVER_FAIL.store(true, SeqCst);

    let leader = tokio::spawn(m.scope(listing(1)));
    sleep(Duration::from_millis(1)).await;
    let follower = tokio::spawn(m.scope(listing(1)));
    sleep(Duration::from_millis(1)).await;
    assert_eq!(
        TAKEOVER_RUNS.load(SeqCst),
        2,
        "the follower waits for the leader"
    );

    m.invalidate_key("fs_takeover", "p:1").await;
    leader.abort();
    // The follower starts over and leads; a caller arriving now follows it.
    sleep(Duration::from_millis(1)).await;
    assert_eq!(TAKEOVER_RUNS.load(SeqCst), 3, "the follower took over");
    let late = tokio::spawn(m.scope(listing(1)));

    assert_eq!(
        follower.await.unwrap(),
        Ok(101),
        "its caller was concurrent with the invalidation: the old value is a correct answer"
    );
    assert_eq!(
        late.await.unwrap(),
        Err("database unavailable".to_owned()),
        "a caller after the invalidation gets nothing older than it"
    );
    assert_eq!(
        TAKEOVER_RUNS.load(SeqCst),
        4,
        "the late caller ran the body itself"
    );
    assert_eq!(
        m.cache("fs_takeover").len(),
        0,
        "the old value was not stored"
    );
    assert_eq!(
        m.scope(listing(1)).await,
        Err("database unavailable".to_owned())
    );
    assert_eq!(TAKEOVER_RUNS.load(SeqCst), 5);
    let s = stats(&m, "fs_takeover");
    assert_eq!((s.fail_safe, s.body_failures), (1, 3));
}

static OVERWRITE_RUNS: AtomicU64 = AtomicU64::new(0);

/// Its database is down throughout.
#[cached(cache = "fs_overwrite", key = "q:{id}", ttl = 10, fail_safe = 3600)]
async fn overwritten_quote(id: u64) -> Result<u64, String> {
    let _ = id;
    let run = OVERWRITE_RUNS.fetch_add(1, SeqCst) + 1;
    sleep(Duration::from_millis(100)).await;
    if run == 1 {
        return Ok(101);
    }
    Err("database unavailable".into())
}

/// A value set explicitly while a body runs is newer than the body's fail-safe fallback: the
/// failing body must not put the fallback back over it.
#[tokio::test(start_paused = true)]
async fn a_failing_body_does_not_put_its_fallback_over_a_value_set_meanwhile() {
    let m = manager();
    assert_eq!(m.scope(overwritten_quote(1)).await, Ok(101));
    advance(Duration::from_secs(11)).await;

    let call = tokio::spawn(m.scope(overwritten_quote(1)));
    sleep(Duration::from_millis(1)).await;
    assert_eq!(OVERWRITE_RUNS.load(SeqCst), 2, "the body is running");
    m.cache("fs_overwrite").set("q:1", 202u64).await;
    assert_eq!(
        call.await.unwrap(),
        Ok(101),
        "the caller, concurrent with the set, gets its fallback"
    );
    assert_eq!(
        m.scope(overwritten_quote(1)).await,
        Ok(202),
        "the value set meanwhile stays"
    );
    assert_eq!(OVERWRITE_RUNS.load(SeqCst), 2);
}

static REMOTE_FS_RUNS: AtomicU64 = AtomicU64::new(0);

/// Its database is down throughout: only what the cache kept can answer.
#[cached(
    cache = "hybrid_fs",
    key = "doc:{id}",
    ttl = 10,
    stale = 600,
    fail_safe = 3600
)]
async fn document(id: u64) -> Result<u64, String> {
    let _ = id;
    REMOTE_FS_RUNS.fetch_add(1, SeqCst);
    sleep(Duration::from_millis(100)).await;
    Err("database unavailable".into())
}

/// An in-process remote tier without a backplane: its first subscription, which clears the
/// memory tier, would come at no point of the paused clock that a test could wait for.
struct WithoutBackplane(cache_core::testing::MemoryBackend);

impl cache_core::RemoteBackend for WithoutBackplane {
    fn tier(&self, cache: &str) -> std::sync::Arc<dyn cache_core::remote::RemoteTier> {
        self.0.tier(cache)
    }
    fn delete_tag<'a>(
        &'a self,
        tag: &'a str,
    ) -> cache_core::remote::BoxFuture<'a, Result<u64, cache_core::RemoteError>> {
        self.0.delete_tag(tag)
    }
    fn clear_all(&self) -> cache_core::remote::BoxFuture<'_, Result<u64, cache_core::RemoteError>> {
        self.0.clear_all()
    }
    fn ping(&self) -> cache_core::remote::BoxFuture<'_, Result<Duration, cache_core::RemoteError>> {
        self.0.ping()
    }
    fn describe(&self) -> String {
        "an in-process remote tier without a backplane".to_owned()
    }
}

/// The same for a stale value an instance reads from the remote tier (it never held it in
/// memory): the refresh it starts keeps that value as its fallback, which an invalidation that
/// returned before the refresh failed must not let back into the instance's memory tier.
#[tokio::test(start_paused = true)]
async fn a_refresh_of_a_remote_value_failing_after_an_invalidation_stores_nothing() {
    use cache_core::remote::envelope;
    let remote = cache_core::testing::MemoryBackend::new();
    let reader = CacheManager::builder()
        .clock(Clock::tokio())
        .remote(WithoutBackplane(remote.clone()))
        .cache(
            "hybrid_fs",
            cache_core::Policy::new().tier(cache_core::Tier::Hybrid),
        )
        .build();
    // Written by another instance and past its TTL by 11 s (the remote tier keeps wall-clock
    // expiries, which the paused clock does not move): within the stale window.
    let meta = envelope::Meta {
        expires_at_unix_ms: Some(envelope::unix_ms_now() - 11_000),
        recompute_ms: 0,
    };
    let bytes = envelope::encode("doc:1", &101_u64, meta, usize::MAX).unwrap();
    remote.put_raw("hybrid_fs", "doc:1", bytes);

    assert_eq!(
        reader.scope(document(1)).await,
        Ok(101),
        "stale, from the remote tier"
    );
    assert_eq!(stats(&reader, "hybrid_fs").stale_served, 1);
    reader.invalidate_key("hybrid_fs", "doc:1").await;
    assert_eq!(
        REMOTE_FS_RUNS.load(SeqCst),
        0,
        "the refresh starts after the invalidation"
    );

    until("the refresh to fail", || {
        stats(&reader, "hybrid_fs").body_failures == 1
    })
    .await;
    assert_eq!(REMOTE_FS_RUNS.load(SeqCst), 1);
    assert_eq!(
        reader.cache("hybrid_fs").len(),
        0,
        "the failed refresh kept nothing in memory"
    );
    assert_eq!(
        reader.scope(document(1)).await,
        Err("database unavailable".to_owned())
    );
    assert_eq!(REMOTE_FS_RUNS.load(SeqCst), 2);
}

// --- timeouts --------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum LoadError {
    TimedOut(Duration),
}

impl From<TimedOut> for LoadError {
    fn from(t: TimedOut) -> Self {
        LoadError::TimedOut(t.after)
    }
}

static SLOW_RUNS: AtomicU64 = AtomicU64::new(0);
static SLOW_DELAY_MS: AtomicU64 = AtomicU64::new(0);

#[cached(
    cache = "timeouts",
    key = "report:{id}",
    ttl = 10,
    fail_safe = 600,
    soft_timeout = "100ms",
    timeout = "2s"
)]
async fn report(id: u64) -> Result<String, LoadError> {
    let run = SLOW_RUNS.fetch_add(1, SeqCst) + 1;
    sleep(Duration::from_millis(SLOW_DELAY_MS.load(SeqCst))).await;
    Ok(format!("report {id} run {run}"))
}

#[tokio::test(start_paused = true)]
async fn soft_timeout_serves_the_stale_value_and_the_body_finishes_in_the_background() {
    let m = manager();
    m.scope(async {
        assert_eq!(report(1).await.unwrap(), "report 1 run 1");
        advance(Duration::from_secs(11)).await;

        // The body now takes 500 ms: past the 100 ms soft timeout the caller gets the stale value.
        SLOW_DELAY_MS.store(500, SeqCst);
        let started = Instant::now();
        assert_eq!(report(1).await.unwrap(), "report 1 run 1");
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        assert_eq!(stats(&m, "timeouts").timeouts, 1);

        // The body finishes in the background and stores its value; nobody ran it again.
        until("the background body", || stats(&m, "timeouts").inserts == 2).await;
        let started = Instant::now();
        assert_eq!(report(1).await.unwrap(), "report 1 run 2");
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(SLOW_RUNS.load(SeqCst), 2);

        // A cold key has no stale value: the caller waits for the body (soft timeout does not
        // apply) up to the hard timeout, then gets the timeout error.
        SLOW_DELAY_MS.store(5_000, SeqCst);
        let started = Instant::now();
        assert_eq!(
            report(2).await,
            Err(LoadError::TimedOut(Duration::from_secs(2)))
        );
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        SLOW_DELAY_MS.store(0, SeqCst);
    })
    .await;
}

static STUCK_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(
    cache = "stuck",
    key = "stuck:{id}",
    ttl = 10,
    fail_safe = 600,
    soft_timeout = "100ms",
    timeout = "2s"
)]
async fn stuck(id: u64) -> Result<u64, LoadError> {
    if STUCK_RUNS.fetch_add(1, SeqCst) > 0 {
        sleep(Duration::from_secs(10)).await;
    }
    Ok(id)
}

#[tokio::test(start_paused = true)]
async fn a_call_past_its_soft_timeout_whose_body_then_passes_the_hard_one_is_one_timeout() {
    let m = manager();
    m.scope(async {
        assert_eq!(stuck(1).await, Ok(1));
        advance(Duration::from_secs(11)).await;
        // The call answers at the soft timeout; its body goes on and passes the hard timeout.
        assert_eq!(stuck(1).await, Ok(1));
        until("the body's hard timeout", || {
            stats(&m, "stuck").body_failures == 1
        })
        .await;
        let s = stats(&m, "stuck");
        assert_eq!(STUCK_RUNS.load(SeqCst), 2);
        assert_eq!(
            (s.timeouts, s.stale_served),
            (1, 1),
            "one call, one timeout: {s:?}"
        );
    })
    .await;
}

static HARD_RUNS: AtomicU64 = AtomicU64::new(0);
static HARD_DELAY_MS: AtomicU64 = AtomicU64::new(0);

#[cached(
    cache = "hard",
    key = "quote:{id}",
    ttl = 10,
    fail_safe = 600,
    timeout = "1s"
)]
async fn quote(id: u64) -> Result<u64, LoadError> {
    let run = HARD_RUNS.fetch_add(1, SeqCst) + 1;
    sleep(Duration::from_millis(HARD_DELAY_MS.load(SeqCst))).await;
    Ok(id * 1000 + run)
}

#[tokio::test(start_paused = true)]
async fn hard_timeout_answers_with_the_fail_safe_value_or_the_error_for_every_waiter() {
    let m = manager();
    m.scope(async {
        assert_eq!(quote(1).await, Ok(1001));
        advance(Duration::from_secs(11)).await;

        HARD_DELAY_MS.store(10_000, SeqCst);
        let started = Instant::now();
        // Twenty concurrent callers: one runs the body, all get the fail-safe value at 1 s.
        let calls: Vec<_> = (0..20).map(|_| quote(1)).collect();
        for value in futures_join(calls).await {
            assert_eq!(value, Ok(1001));
        }
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert_eq!(
            HARD_RUNS.load(SeqCst),
            2,
            "single flight held through the timeout"
        );
        // One body run passed the hard timeout and was answered with the fail-safe value, which
        // its nineteen waiters shared.
        let s = stats(&m, "hard");
        assert_eq!(
            (s.timeouts, s.fail_safe, s.coalesced, s.stale_served),
            (1, 1, 19, 0),
            "{s:?}"
        );

        // Without a fallback every waiter gets the timeout error, and the body still ran once.
        let started = Instant::now();
        let calls: Vec<_> = (0..20).map(|_| quote(2)).collect();
        for value in futures_join(calls).await {
            assert_eq!(value, Err(LoadError::TimedOut(Duration::from_secs(1))));
        }
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        assert_eq!(HARD_RUNS.load(SeqCst), 3);
        // Each call answered with its timeout error counts, whichever timer told it: its own
        // wait's or its leader's.
        assert_eq!(stats(&m, "hard").timeouts, 1 + 20);
        HARD_DELAY_MS.store(0, SeqCst);
    })
    .await;
}

// --- refresh-ahead ---------------------------------------------------------------------------

static XF_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = "xfetch", key = "feed:{id}", ttl = 1, refresh_ahead)]
async fn feed(id: u64) -> (u64, u64) {
    let run = XF_RUNS.fetch_add(1, SeqCst) + 1;
    sleep(Duration::from_millis(50)).await;
    (id, run)
}

#[tokio::test(start_paused = true)]
async fn xfetch_refreshes_a_steadily_read_key_before_it_expires() {
    let m = manager();
    m.scope(async {
        assert_eq!(feed(1).await, (1, 1));
        // Read every 10 ms for ten TTL periods: after the first call, no read waits for a body.
        let mut last_run = 1;
        for _ in 0..1_000 {
            sleep(Duration::from_millis(10)).await;
            let started = Instant::now();
            let (_, run) = feed(1).await;
            assert_eq!(
                started.elapsed(),
                Duration::ZERO,
                "a read waited for the body"
            );
            assert!(run >= last_run);
            last_run = run;
        }
        let s = stats(&m, "xfetch");
        assert_eq!(s.misses, 1, "only the first call missed");
        let runs = XF_RUNS.load(SeqCst);
        // One refresh per TTL period or so: never expired, and not refreshed on every read.
        assert!((10..=25).contains(&runs), "{runs} body runs over 10 s");
        assert_eq!(s.refreshes, runs - 1);
    })
    .await;
}

static FIXED_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = "fixed", key = "menu:{id}", ttl = 10, refresh_ahead = 0.8)]
async fn menu(id: u64) -> (u64, u64) {
    let run = FIXED_RUNS.fetch_add(1, SeqCst) + 1;
    (id, run)
}

#[tokio::test(start_paused = true)]
async fn a_fixed_window_refreshes_reads_in_the_last_part_of_the_ttl() {
    let m = manager();
    m.scope(async {
        assert_eq!(menu(1).await, (1, 1));
        advance(Duration::from_secs(7)).await;
        assert_eq!(menu(1).await, (1, 1));
        assert_eq!(
            FIXED_RUNS.load(SeqCst),
            1,
            "before 80% of the TTL: a plain hit"
        );
        advance(Duration::from_secs(2)).await;
        // After 80%: the current value, and a refresh in the background.
        assert_eq!(menu(1).await, (1, 1));
        until("the refresh", || stats(&m, "fixed").inserts == 2).await;
        assert_eq!(menu(1).await, (1, 2));
        assert_eq!(FIXED_RUNS.load(SeqCst), 2);
        assert_eq!(stats(&m, "fixed").misses, 1);
    })
    .await;
}

// --- jitter ----------------------------------------------------------------------------------

static JITTER_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = "jitter", key = "row:{id}", ttl = 100, jitter = 20)]
async fn row(id: u64) -> u64 {
    JITTER_RUNS.fetch_add(1, SeqCst);
    id
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_expiries_over_the_last_part_of_the_ttl() {
    let m = manager();
    m.scope(async {
        for id in 0..200 {
            row(id).await;
        }
        let reread = |at: &str| {
            let _ = at;
            async {
                let before = JITTER_RUNS.load(SeqCst);
                for id in 0..200 {
                    row(id).await;
                }
                JITTER_RUNS.load(SeqCst) - before
            }
        };
        // TTLs fall in 80..=100 s: none expired at 79 s, some but not all at 90 s, all at 101 s.
        advance(Duration::from_secs(79)).await;
        assert_eq!(reread("79 s").await, 0);
        advance(Duration::from_secs(11)).await;
        let expired = reread("90 s").await;
        assert!(
            (20..=180).contains(&expired),
            "{expired} of 200 expired at 90 s"
        );
        advance(Duration::from_secs(111)).await;
        assert_eq!(reread("201 s").await, 200);
    })
    .await;
}

// --- sync functions --------------------------------------------------------------------------

static SYNC_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = "sync_swr", key = "setting:{name}", ttl = 10, stale = 60)]
fn setting(name: String) -> String {
    let run = SYNC_RUNS.fetch_add(1, SeqCst) + 1;
    format!("{name}={run}")
}

#[test]
fn a_sync_function_serves_stale_and_refreshes_on_a_background_thread() {
    let clock = Clock::manual();
    let m = CacheManager::builder().clock(clock.clone()).build();
    m.scope_sync(|| {
        assert_eq!(setting("theme".into()), "theme=1");
        clock.advance(Duration::from_secs(11));
        assert_eq!(setting("theme".into()), "theme=1");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while m.cache("sync_swr").stats().inserts < 2 {
            assert!(std::time::Instant::now() < deadline, "no refresh");
            std::thread::yield_now();
        }
        assert_eq!(setting("theme".into()), "theme=2");
        assert_eq!(SYNC_RUNS.load(SeqCst), 2);
    });
}

// --- policy-level settings -------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_policy_fail_safe_covers_the_programmatic_api_too() {
    let m = CacheManager::builder()
        .clock(Clock::tokio())
        .cache(
            "rates",
            cache_core::Policy::new()
                .ttl_secs(10)
                .fail_safe(Duration::from_secs(60))
                .fail_safe_throttle(Duration::from_secs(5)),
        )
        .build();
    let rates = m.cache("rates");
    let ok = rates
        .try_get_or_insert_with("eur", || async { Ok::<u64, String>(108) })
        .await;
    assert_eq!(ok, Ok(108));
    advance(Duration::from_secs(11)).await;
    let runs = AtomicU64::new(0);
    let failing = || async {
        runs.fetch_add(1, SeqCst);
        Err::<u64, String>("rates service down".into())
    };
    assert_eq!(rates.try_get_or_insert_with("eur", failing).await, Ok(108));
    // Within the throttle the fallback answers as a hit.
    assert_eq!(rates.try_get_or_insert_with("eur", failing).await, Ok(108));
    assert_eq!(runs.load(SeqCst), 1);
    advance(Duration::from_secs(61)).await;
    assert!(rates.try_get_or_insert_with("eur", failing).await.is_err());
    assert_eq!(rates.stats().fail_safe, 1);
}

// --- the same windows for a value stored in the memory tier's large size class ---------------

/// 64 bytes: stored inline in the memory tier's large class (more than 24, at most 184 bytes), a
/// map apart from the one where small and shared values live. The stale and fail-safe entries
/// must land where a lookup of this type looks.
type Row = [u64; 8];

static ROW_RUNS: AtomicU64 = AtomicU64::new(0);
static ROW_FAIL: AtomicBool = AtomicBool::new(false);

#[cached(
    cache = "rows",
    key = "row:{id}",
    ttl = 10,
    stale = 60,
    fail_safe = 3600
)]
async fn row_of(id: u64) -> Result<Row, String> {
    let run = ROW_RUNS.fetch_add(1, SeqCst) + 1;
    if ROW_FAIL.load(SeqCst) {
        return Err("database unavailable".into());
    }
    Ok([id, run, 0, 0, 0, 0, 0, 0])
}

#[tokio::test(start_paused = true)]
async fn stale_and_fail_safe_values_of_the_large_size_class_are_served_and_throttled() {
    let m = manager();
    m.scope(async {
        let first = row_of(3).await.expect("computed");
        assert_eq!(first[..2], [3, 1]);
        assert_eq!(row_of(3).await, Ok(first), "a hit");
        assert_eq!(ROW_RUNS.load(SeqCst), 1);

        // Within the stale window: the old row at once, one refresh in the background.
        advance(Duration::from_secs(11)).await;
        assert_eq!(row_of(3).await, Ok(first));
        assert_eq!(stats(&m, "rows").stale_served, 1);
        until("the refresh", || stats(&m, "rows").inserts == 2).await;
        assert_eq!(ROW_RUNS.load(SeqCst), 2);
        let second = row_of(3).await.expect("refreshed");
        assert_eq!(second[..2], [3, 2]);
        assert_eq!(ROW_RUNS.load(SeqCst), 2, "the refreshed row is a hit");

        // Past the stale window the body fails: the last good row, then served as fresh for the
        // throttle without running the failing body again.
        advance(Duration::from_secs(100)).await;
        ROW_FAIL.store(true, SeqCst);
        assert_eq!(row_of(3).await, Ok(second));
        assert_eq!(ROW_RUNS.load(SeqCst), 3);
        let before = stats(&m, "rows");
        assert_eq!(row_of(3).await, Ok(second));
        assert_eq!(row_of(3).await, Ok(second));
        assert_eq!(
            ROW_RUNS.load(SeqCst),
            3,
            "throttled: the failing body did not run"
        );
        let after = stats(&m, "rows");
        assert_eq!(
            (after.hits - before.hits, after.misses - before.misses),
            (2, 0),
            "the fallback entry is a plain hit, found where a lookup of its type looks"
        );
        let s = stats(&m, "rows");
        assert_eq!((s.fail_safe, s.body_failures), (1, 1));
        assert_eq!(m.cache("rows").len(), 1, "one entry for the key");
    })
    .await;
}

// --- the TTL's start -------------------------------------------------------------------------

static TTL_START_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = "slow_ttl", key = "slow:{id}", ttl = 10)]
async fn slow_to_compute(id: u64) -> u64 {
    TTL_START_RUNS.fetch_add(1, SeqCst);
    sleep(Duration::from_secs(6)).await;
    id
}

/// The miss path reads the clock once before the body and once after, and stores the value
/// with the second reading: a value that took 6 s to compute is fresh for its whole 10 s TTL.
#[tokio::test(start_paused = true)]
async fn the_ttl_counts_from_when_the_body_returned() {
    let m = manager();
    m.scope(async {
        assert_eq!(slow_to_compute(1).await, 1);
        assert_eq!(TTL_START_RUNS.load(SeqCst), 1);

        // 15 s after the body started, 9 s after its value was stored.
        advance(Duration::from_secs(9)).await;
        assert_eq!(slow_to_compute(1).await, 1);
        assert_eq!(
            TTL_START_RUNS.load(SeqCst),
            1,
            "fresh 9 s after it was stored"
        );

        // 11 s after it was stored.
        advance(Duration::from_secs(2)).await;
        assert_eq!(slow_to_compute(1).await, 1);
        assert_eq!(
            TTL_START_RUNS.load(SeqCst),
            2,
            "expired 10 s after it was stored"
        );
    })
    .await;
}

static SKEWED_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = "skewed", key = "rate:{id}", ttl = 10)]
async fn rate(id: u64) -> u64 {
    SKEWED_RUNS.fetch_add(1, SeqCst);
    id
}

/// A value whose remote expiry lies further ahead than the TTL (written by a host whose clock
/// runs ahead of this one's): the copy kept in memory lives no longer than the TTL.
#[tokio::test(start_paused = true)]
async fn a_promoted_copy_lives_no_longer_than_the_ttl_whatever_the_remote_expiry_says() {
    use cache_core::remote::envelope;
    let remote = cache_core::testing::MemoryBackend::new();
    let reader = CacheManager::builder()
        .clock(Clock::tokio())
        .remote(WithoutBackplane(remote.clone()))
        .cache(
            "skewed",
            cache_core::Policy::new().tier(cache_core::Tier::Hybrid),
        )
        .build();
    let meta = envelope::Meta {
        expires_at_unix_ms: Some(envelope::unix_ms_now() + 3_600_000),
        recompute_ms: 0,
    };
    let bytes = envelope::encode("rate:1", &7_u64, meta, usize::MAX).unwrap();
    remote.put_raw("skewed", "rate:1", bytes);

    assert_eq!(reader.scope(rate(1)).await, 7, "from the remote tier");
    assert_eq!(reader.cache("skewed").len(), 1, "and kept in memory");
    advance(Duration::from_secs(11)).await;
    reader.run_pending_maintenance();
    assert_eq!(
        reader.cache("skewed").len(),
        0,
        "gone from memory after the TTL, not after the remote hour"
    );
    assert_eq!(SKEWED_RUNS.load(SeqCst), 0);
}

static BURST_RUNS: AtomicU64 = AtomicU64::new(0);

/// A body that returns at once (no await), so no refresh task is under way when the next read
/// comes.
#[cached(cache = "burst", key = "burst:{id}", ttl = 10, stale = 600)]
async fn burst(id: u64) -> u64 {
    BURST_RUNS.fetch_add(1, SeqCst);
    id
}

/// Stale reads in a burst, before any refresh task has run: one refresh, not one per read.
#[tokio::test(start_paused = true)]
async fn stale_reads_in_a_burst_refresh_once() {
    let m = manager();
    m.scope(async {
        assert_eq!(burst(1).await, 1);
        advance(Duration::from_secs(11)).await;
        for _ in 0..10 {
            assert_eq!(burst(1).await, 1, "stale, served at once");
        }
        sleep(Duration::from_millis(50)).await;
        assert_eq!(BURST_RUNS.load(SeqCst), 2, "the first run and one refresh");
        assert_eq!(stats(&m, "burst").refreshes, 1);
    })
    .await;
}

static GONE_RUNS: AtomicU64 = AtomicU64::new(0);
static GONE: AtomicBool = AtomicBool::new(false);

/// `None` is an answer ("no such row"), not a failure: a refresh that gets it has refreshed.
#[cached(cache = "swr_gone", key = "gone:{id}", ttl = 10, stale = 600)]
async fn account(id: u64) -> Option<u64> {
    GONE_RUNS.fetch_add(1, SeqCst);
    (!GONE.load(SeqCst)).then_some(id)
}

#[tokio::test(start_paused = true)]
async fn a_refresh_answering_none_ends_the_stale_value() {
    let m = manager();
    m.scope(async {
        assert_eq!(account(1).await, Some(1));
        advance(Duration::from_secs(11)).await;
        GONE.store(true, SeqCst);

        // Stale: the old value at once, and one refresh, which learns the row is gone.
        assert_eq!(account(1).await, Some(1));
        until("the refresh's answer to end the stale entry", || {
            m.cache("swr_gone").is_empty()
        })
        .await;
        assert_eq!(GONE_RUNS.load(SeqCst), 2, "one refresh");

        // Its answer is served from then on: `None` is not cached, so the body answers.
        assert_eq!(
            account(1).await,
            None,
            "the refresh's answer, not the deleted row"
        );
        assert_eq!(GONE_RUNS.load(SeqCst), 3);
        assert_eq!(stats(&m, "swr_gone").stale_served, 1);
    })
    .await;
}

static SYNC_GONE_RUNS: AtomicU64 = AtomicU64::new(0);
static SYNC_GONE: AtomicBool = AtomicBool::new(false);

#[cached(cache = "sync_gone", key = "gone:{id}", ttl = 10, stale = 60)]
fn sync_account(id: u64) -> Option<u64> {
    SYNC_GONE_RUNS.fetch_add(1, SeqCst);
    (!SYNC_GONE.load(SeqCst)).then_some(id)
}

#[test]
fn a_sync_refresh_answering_none_ends_the_stale_value() {
    let clock = Clock::manual();
    let m = CacheManager::builder().clock(clock.clone()).build();
    m.scope_sync(|| {
        assert_eq!(sync_account(1), Some(1));
        clock.advance(Duration::from_secs(11));
        SYNC_GONE.store(true, SeqCst);
        assert_eq!(sync_account(1), Some(1), "stale, and a background refresh");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !m.cache("sync_gone").is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the refresh's answer did not end the stale value within 30 s"
            );
            std::thread::yield_now();
        }
        assert_eq!(sync_account(1), None);
        assert_eq!(SYNC_GONE_RUNS.load(SeqCst), 3);
    });
}

static CAPPED_RUNS: AtomicU64 = AtomicU64::new(0);
static CAPPED_VALUE: AtomicU64 = AtomicU64::new(1);

/// A value `#[cache_if(result = ..)]` rejects is an answer too, here from a refresh ahead.
#[cached(
    cache = "ahead_rejected",
    key = "capped:{id}",
    ttl = 10,
    refresh_ahead = 0.8
)]
#[cache_core::cache_if(result = |n: &u64| *n < 100)]
async fn capped(id: u64) -> u64 {
    CAPPED_RUNS.fetch_add(1, SeqCst);
    id * CAPPED_VALUE.load(SeqCst)
}

#[tokio::test(start_paused = true)]
async fn a_refresh_ahead_whose_value_is_rejected_does_not_leave_the_old_one_cached() {
    let m = manager();
    m.scope(async {
        assert_eq!(capped(2).await, 2);
        advance(Duration::from_secs(9)).await;
        CAPPED_VALUE.store(500, SeqCst);
        // After 80% of the TTL: the current value, and a refresh whose value is not stored.
        assert_eq!(capped(2).await, 2);
        until("the refresh's answer to end the old entry", || {
            m.cache("ahead_rejected").is_empty()
        })
        .await;
        assert_eq!(CAPPED_RUNS.load(SeqCst), 2);
        assert_eq!(
            capped(2).await,
            1000,
            "the body's answer, not the replaced value"
        );
        assert_eq!(CAPPED_RUNS.load(SeqCst), 3);
    })
    .await;
}

static GONE_BURST_RUNS: AtomicU64 = AtomicU64::new(0);

/// Answers `None` from its second run on: the row is gone by the time the stale reads come.
#[cached(cache = "gone_burst", key = "gone_burst:{id}", ttl = 10, stale = 600)]
async fn gone_burst(id: u64) -> Option<u64> {
    (GONE_BURST_RUNS.fetch_add(1, SeqCst) == 0).then_some(id)
}

/// Stale reads in a burst whose refresh answers `None`: one refresh, as when it answers a value.
/// The refresh ends the stale entry, and the refreshes the other reads spawned find nothing left
/// to refresh rather than ask the data source again each.
#[tokio::test(start_paused = true)]
async fn stale_reads_in_a_burst_whose_refresh_answers_none_refresh_once() {
    let m = manager();
    m.scope(async {
        assert_eq!(gone_burst(1).await, Some(1));
        advance(Duration::from_secs(11)).await;
        for _ in 0..10 {
            assert_eq!(gone_burst(1).await, Some(1), "stale, served at once");
        }
        until("the refresh's answer to end the stale entry", || {
            m.cache("gone_burst").is_empty()
        })
        .await;
        sleep(Duration::from_millis(50)).await;
        assert_eq!(
            GONE_BURST_RUNS.load(SeqCst),
            2,
            "the first run and one refresh"
        );
        assert_eq!(stats(&m, "gone_burst").refreshes, 1);
    })
    .await;
}
