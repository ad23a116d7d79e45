//! Cancellation at every await point, through `#[cached]`: a call is dropped before its poll
//! number 1, 2, 3, ... (and a leading task aborted, and a body panicking) while other callers
//! of the key wait, and after each a fresh call must still answer correctly, no waiter may hang
//! (every wait is bounded, on tokio's paused clock, so a hang fails at once), the body must run
//! no more often than single flight allows, and the counts must agree with the body runs.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use cache_core::testing::give_up_after;
use cache_core::{CacheManager, CacheStats, Clock, TimedOut, cached};
use tokio::time::{advance, sleep, timeout};

fn manager() -> CacheManager {
    CacheManager::builder().clock(Clock::tokio()).build()
}

fn stats(m: &CacheManager, cache: &str) -> CacheStats {
    m.cache(cache).stats()
}

/// Waits for `f`, failing the test if it takes an hour of (paused, so instant) time.
async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    timeout(Duration::from_secs(3600), f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

/// Lets background work run until `done` holds, bounded.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..100_000 {
        if done() {
            return;
        }
        sleep(Duration::from_millis(1)).await;
    }
    panic!("gave up waiting for {what}");
}

#[derive(Debug, Clone, PartialEq)]
enum LoadError {
    Failed,
    TimedOut,
}

impl From<TimedOut> for LoadError {
    fn from(_: TimedOut) -> Self {
        LoadError::TimedOut
    }
}

// --- a plain miss: the leader dropped at each poll while followers wait ----------------------

static PLAIN_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = "plain", key = "plain:{id}", ttl = 60)]
async fn plain(id: u64) -> u64 {
    PLAIN_RUNS.fetch_add(1, SeqCst);
    for _ in 0..3 {
        sleep(Duration::from_millis(10)).await;
    }
    id
}

#[tokio::test(start_paused = true)]
async fn a_leader_dropped_at_any_poll_hands_over_to_its_followers() {
    for polls in 0..10 {
        let m = manager();
        PLAIN_RUNS.store(0, SeqCst);
        let leader = tokio::spawn(m.scope(give_up_after(polls, plain(polls as u64))));
        tokio::task::yield_now().await;
        let followers: Vec<_> = (0..2)
            .map(|_| tokio::spawn(m.scope(plain(polls as u64))))
            .collect();
        let led = bounded("the leader", leader).await.unwrap();
        for f in followers {
            assert_eq!(bounded("a follower", f).await.unwrap(), polls as u64);
        }
        let runs = PLAIN_RUNS.load(SeqCst);
        match led {
            Some(v) => {
                assert_eq!(v, polls as u64);
                assert_eq!(runs, 1, "polls {polls}: one run shared by all");
            }
            None => assert!(
                runs <= 2,
                "polls {polls}: the leader's run and one follower's: {runs}"
            ),
        }
        // A fresh call is a hit: the value was stored once, nothing left in flight.
        assert_eq!(
            bounded("a fresh call", m.scope(plain(polls as u64))).await,
            polls as u64
        );
        assert_eq!(PLAIN_RUNS.load(SeqCst), runs);
        let s = stats(&m, "plain");
        assert_eq!(s.inserts, 1, "polls {polls}: {s:?}");
        assert_eq!(
            s.body_latency.count, runs,
            "polls {polls}: every run timed: {s:?}"
        );
        if led.is_some() {
            break;
        }
    }
}

static ABORT_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = "abort", key = "abort:{id}", ttl = 60)]
async fn aborted(id: u64) -> u64 {
    ABORT_RUNS.fetch_add(1, SeqCst);
    for _ in 0..3 {
        sleep(Duration::from_millis(10)).await;
    }
    id
}

#[tokio::test(start_paused = true)]
async fn an_aborted_leading_task_hands_over_to_its_followers() {
    for after_ms in [0, 5, 10, 15, 20, 25, 29] {
        let m = manager();
        ABORT_RUNS.store(0, SeqCst);
        let id = 100 + after_ms;
        let leader = tokio::spawn(m.scope(aborted(id)));
        tokio::task::yield_now().await;
        let followers: Vec<_> = (0..2).map(|_| tokio::spawn(m.scope(aborted(id)))).collect();
        sleep(Duration::from_millis(after_ms)).await;
        leader.abort();
        assert!(bounded("the aborted leader", leader).await.is_err());
        for f in followers {
            assert_eq!(bounded("a follower", f).await.unwrap(), id);
        }
        let runs = ABORT_RUNS.load(SeqCst);
        assert!(runs <= 2, "aborted after {after_ms} ms: {runs}");
        assert_eq!(bounded("a fresh call", m.scope(aborted(id))).await, id);
        assert_eq!(ABORT_RUNS.load(SeqCst), runs);
        let s = stats(&m, "abort");
        assert_eq!(
            s.body_latency.count, runs,
            "aborted after {after_ms} ms: {s:?}"
        );
    }
}

// --- a body that panics while followers wait ---------------------------------------------------

static PANIC_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = "panics", key = "panics:{id}", ttl = 60)]
async fn panics_first(id: u64) -> u64 {
    let run = PANIC_RUNS.fetch_add(1, SeqCst);
    sleep(Duration::from_millis(10)).await;
    if run == 0 {
        panic!("the first body run panics");
    }
    id
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_body_panics_hands_over_to_its_followers() {
    let m = manager();
    let leader = tokio::spawn(m.scope(panics_first(1)));
    tokio::task::yield_now().await;
    let followers: Vec<_> = (0..3)
        .map(|_| tokio::spawn(m.scope(panics_first(1))))
        .collect();
    assert!(
        bounded("the leader", leader).await.is_err(),
        "its panic propagates"
    );
    for f in followers {
        assert_eq!(bounded("a follower", f).await.unwrap(), 1);
    }
    assert_eq!(PANIC_RUNS.load(SeqCst), 2, "one follower ran it again");
    assert_eq!(bounded("a fresh call", m.scope(panics_first(1))).await, 1);
    let s = stats(&m, "panics");
    assert_eq!(
        (s.inserts, s.body_failures, s.body_latency.count),
        (1, 1, 2),
        "{s:?}"
    );
}

// --- fail-safe: the leader of a failing body dropped at each poll -----------------------------

static FS_RUNS: AtomicU64 = AtomicU64::new(0);
static FS_FAIL: AtomicBool = AtomicBool::new(false);

#[cached(cache = "fs", key = "fs:{id}", ttl = 10, fail_safe = 3600)]
async fn guarded(id: u64) -> Result<u64, LoadError> {
    let run = FS_RUNS.fetch_add(1, SeqCst) + 1;
    sleep(Duration::from_millis(10)).await;
    sleep(Duration::from_millis(10)).await;
    if FS_FAIL.load(SeqCst) {
        return Err(LoadError::Failed);
    }
    Ok(id * 1000 + run)
}

#[tokio::test(start_paused = true)]
async fn a_failing_leader_dropped_at_any_poll_leaves_the_fallback_to_its_followers() {
    for polls in 0..8 {
        let m = manager();
        FS_RUNS.store(0, SeqCst);
        FS_FAIL.store(false, SeqCst);
        assert_eq!(m.scope(guarded(1)).await, Ok(1001));
        advance(Duration::from_secs(11)).await;
        FS_FAIL.store(true, SeqCst);
        let leader = tokio::spawn(m.scope(give_up_after(polls, guarded(1))));
        tokio::task::yield_now().await;
        let followers: Vec<_> = (0..2).map(|_| tokio::spawn(m.scope(guarded(1)))).collect();
        let led = bounded("the leader", leader).await.unwrap();
        for f in followers {
            assert_eq!(bounded("a follower", f).await.unwrap(), Ok(1001));
        }
        let runs = FS_RUNS.load(SeqCst);
        assert!(runs <= 3, "polls {polls}: {runs}");
        // The fallback is kept as fresh for the throttle: a fresh call is answered by it.
        assert_eq!(bounded("a fresh call", m.scope(guarded(1))).await, Ok(1001));
        assert_eq!(FS_RUNS.load(SeqCst), runs);
        let s = stats(&m, "fs");
        assert_eq!(s.body_latency.count, runs, "polls {polls}: {s:?}");
        if led.is_some() {
            assert_eq!(led, Some(Ok(1001)));
            assert_eq!(runs, 2);
            break;
        }
    }
}

// --- soft and hard timeouts --------------------------------------------------------------------

static SOFT_RUNS: AtomicU64 = AtomicU64::new(0);
static SOFT_DELAY_MS: AtomicU64 = AtomicU64::new(0);

#[cached(
    cache = "soft",
    key = "soft:{id}",
    ttl = 10,
    fail_safe = 600,
    soft_timeout = "50ms",
    timeout = "1s"
)]
async fn slow(id: u64) -> Result<u64, LoadError> {
    let run = SOFT_RUNS.fetch_add(1, SeqCst) + 1;
    for _ in 0..4 {
        sleep(Duration::from_millis(SOFT_DELAY_MS.load(SeqCst) / 4)).await;
    }
    Ok(id * 1000 + run)
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_at_any_poll_around_its_soft_timeout_leaves_nothing_stuck() {
    for polls in 0..8 {
        let m = manager();
        SOFT_RUNS.store(0, SeqCst);
        SOFT_DELAY_MS.store(0, SeqCst);
        assert_eq!(m.scope(slow(1)).await, Ok(1001));
        advance(Duration::from_secs(11)).await;
        SOFT_DELAY_MS.store(200, SeqCst);
        let leader = tokio::spawn(m.scope(give_up_after(polls, slow(1))));
        tokio::task::yield_now().await;
        let follower = tokio::spawn(m.scope(slow(1)));
        let led = bounded("the leader", leader).await.unwrap();
        // Each gets the stale value (at its soft timeout) or the new one.
        let followed = bounded("the follower", follower).await.unwrap().unwrap();
        assert!(followed == 1001 || followed == 1002, "{followed}");
        if let Some(v) = &led {
            assert_eq!(*v, Ok(1001), "answered at the soft timeout");
        }
        // Eventually a call gets the new value, and the body never ran for two callers at once.
        until("a fresh value", || stats(&m, "soft").inserts >= 2).await;
        let now = bounded("a fresh call", m.scope(slow(1))).await.unwrap();
        let runs = SOFT_RUNS.load(SeqCst);
        assert!(now > 1001 && runs <= 3, "polls {polls}: {now}, {runs} runs");
        let s = stats(&m, "soft");
        until("every run timed", || {
            stats(&m, "soft").body_latency.count == runs
        })
        .await;
        assert_eq!(s.body_failures, 0, "{s:?}");
        if led.is_some() {
            break;
        }
    }
}

static HARD_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = "hard", key = "hard:{id}", ttl = 10, timeout = "100ms")]
async fn hangs(id: u64) -> Result<u64, LoadError> {
    HARD_RUNS.fetch_add(1, SeqCst);
    sleep(Duration::from_secs(3)).await;
    Ok(id)
}

#[tokio::test(start_paused = true)]
async fn a_leader_dropped_before_its_hard_timeout_leaves_its_followers_their_own() {
    for polls in 0..4 {
        let m = manager();
        HARD_RUNS.store(0, SeqCst);
        let leader = tokio::spawn(m.scope(give_up_after(polls, hangs(1))));
        tokio::task::yield_now().await;
        let followers: Vec<_> = (0..2).map(|_| tokio::spawn(m.scope(hangs(1)))).collect();
        let led = bounded("the leader", leader).await.unwrap();
        for f in followers {
            assert_eq!(
                bounded("a follower", f).await.unwrap(),
                Err(LoadError::TimedOut)
            );
        }
        let runs = HARD_RUNS.load(SeqCst);
        assert!(runs <= 2, "polls {polls}: {runs}");
        let s = stats(&m, "hard");
        assert_eq!(s.body_latency.count, runs, "polls {polls}: {s:?}");
        if led.is_some() {
            assert_eq!(led, Some(Err(LoadError::TimedOut)));
            break;
        }
    }
}

// --- stale-while-revalidate: the call that starts a refresh dropped ---------------------------

static SWR_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = "swr", key = "swr:{id}", ttl = 10, stale = 600)]
async fn profile(id: u64) -> u64 {
    let run = SWR_RUNS.fetch_add(1, SeqCst) + 1;
    sleep(Duration::from_millis(20)).await;
    id * 1000 + run
}

#[tokio::test(start_paused = true)]
async fn a_stale_read_dropped_at_any_poll_still_refreshes_once() {
    for polls in 0..3 {
        let m = manager();
        SWR_RUNS.store(0, SeqCst);
        assert_eq!(m.scope(profile(1)).await, 1001);
        advance(Duration::from_secs(11)).await;
        let led = bounded("the stale read", m.scope(give_up_after(polls, profile(1)))).await;
        if polls == 0 {
            assert_eq!(led, None);
            continue;
        }
        assert_eq!(led, Some(1001));
        until("the refresh", || stats(&m, "swr").inserts == 2).await;
        assert_eq!(bounded("a fresh call", m.scope(profile(1))).await, 1002);
        let s = stats(&m, "swr");
        assert_eq!(
            (SWR_RUNS.load(SeqCst), s.refreshes, s.body_latency.count),
            (2, 1, 2),
            "{s:?}"
        );
    }
}

// --- a background refresh that panics while a caller waits for it ----------------------------

static REFRESH_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(
    cache = "refresh_panics",
    key = "rp:{id}",
    ttl = 10,
    stale = 1,
    fail_safe = 600
)]
async fn refreshed(id: u64) -> u64 {
    let run = REFRESH_RUNS.fetch_add(1, SeqCst) + 1;
    if run > 1 {
        sleep(Duration::from_secs(2)).await;
        panic!("the refresh panics");
    }
    id
}

#[tokio::test(start_paused = true)]
async fn a_refresh_that_panics_answers_its_waiters_with_the_fail_safe_value() {
    let m = manager();
    assert_eq!(m.scope(refreshed(1)).await, 1);
    advance(Duration::from_millis(10_500)).await;
    // Stale: served at once, and a refresh starts (its body takes 2 s, then panics).
    assert_eq!(m.scope(refreshed(1)).await, 1);
    until("the refresh to start", || REFRESH_RUNS.load(SeqCst) == 2).await;
    // Past the stale window: this caller waits for the refresh under way rather than run the
    // body again, and gets the fail-safe value when it panics.
    advance(Duration::from_millis(600)).await;
    let started = tokio::time::Instant::now();
    assert_eq!(
        bounded("a waiter of the refresh", m.scope(refreshed(1))).await,
        1
    );
    assert!(
        started.elapsed() > Duration::ZERO,
        "it waited for the refresh"
    );
    assert_eq!(
        REFRESH_RUNS.load(SeqCst),
        2,
        "the waiter did not run the body"
    );
    let s = stats(&m, "refresh_panics");
    assert_eq!(
        (s.body_failures, s.refreshes, s.body_latency.count),
        (1, 1, 2),
        "{s:?}"
    );
}

// --- a fail-safe fallback does not go back over a newer value --------------------------------

static ROW_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(cache = "rows", key = "row:{id}", ttl = 10, fail_safe = 3600)]
async fn maybe_row(id: u64) -> Option<u64> {
    let _ = id;
    match ROW_RUNS.fetch_add(1, SeqCst) + 1 {
        1 => Some(1),
        // The leader: the row is gone for a moment (an answer, not cached).
        2 => {
            sleep(Duration::from_millis(10)).await;
            None
        }
        // Its two waiters then run the body each: one reads the new row...
        3 => {
            sleep(Duration::from_millis(10)).await;
            Some(3)
        }
        // ...the other fails after that value was stored.
        _ => {
            sleep(Duration::from_millis(20)).await;
            panic!("the database connection broke");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_body_does_not_put_its_fallback_over_a_newer_value() {
    let m = manager();
    assert_eq!(m.scope(maybe_row(0)).await, Some(1));
    advance(Duration::from_secs(11)).await;
    let calls: Vec<_> = (0..3)
        .map(|_| tokio::spawn(m.scope(maybe_row(0))))
        .collect();
    let mut answers = Vec::new();
    for c in calls {
        answers.push(bounded("a call", c).await.unwrap());
    }
    answers.sort();
    assert_eq!(answers, [None, Some(1), Some(3)], "each its own answer");
    assert_eq!(ROW_RUNS.load(SeqCst), 4);
    // The newest good value is 3: the failed run's fallback (1, read before it) is older.
    assert_eq!(
        bounded("a fresh call", m.scope(maybe_row(0))).await,
        Some(3)
    );
}

// --- the refresh-ahead grace is a grace, not the fail-safe window -------------------------------

static GRACE_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(
    cache = "grace",
    key = "grace:{id}",
    ttl = 10,
    refresh_ahead = 0.8,
    fail_safe = 3600
)]
async fn graced(id: u64) -> Result<u64, LoadError> {
    let run = GRACE_RUNS.fetch_add(1, SeqCst) + 1;
    if run > 1 {
        sleep(Duration::from_secs(1)).await;
    }
    Ok(id * 1000 + run)
}

#[tokio::test(start_paused = true)]
async fn a_value_long_expired_is_not_served_as_a_refresh_ahead_grace() {
    let m = manager();
    assert_eq!(m.scope(graced(1)).await, Ok(1001));
    // Long past its TTL (kept only as a fail-safe fallback), far past the refresh-ahead grace.
    advance(Duration::from_secs(1_000)).await;
    let leader = tokio::spawn(m.scope(graced(1)));
    until("the leader's body", || GRACE_RUNS.load(SeqCst) == 2).await;
    // A caller while the body runs waits for it: nothing has failed, so the fallback is not an
    // answer, and it expired 990 s ago, not "just".
    assert_eq!(bounded("a waiter", m.scope(graced(1))).await, Ok(1002));
    assert_eq!(leader.await.unwrap(), Ok(1002));
    let s = stats(&m, "grace");
    assert_eq!((s.coalesced, GRACE_RUNS.load(SeqCst)), (1, 2), "{s:?}");
}
