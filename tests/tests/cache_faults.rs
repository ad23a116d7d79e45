//! `#[cached]` on a real Redis wrapped in `cache_core::testing::FaultyBackend`: the faults users
//! can inject in their own tests (fail always, fail with a seeded probability, delay, hang),
//! exercised here through the whole stack, with body-run counts. Also several instances in one
//! process sharing one Redis (`testing::instances`), and the manual test clock on a hybrid cache.
//!
//! One Redis server serves the binary; each test has its own namespace.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cache_core::testing::{Fault, Faults, FaultyBackend, TestClock, instances};
use cache_core::{BreakerState, CacheManager, Policy, RemoteStats, Resilience, Tier, cached};
use cache_redis::{RedisBackend, RedisConfig};
use tests::RedisServer;

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| RedisServer::start_with_args(tests::NO_BULK_COMMANDS))
}

const TIMEOUT: Duration = Duration::from_millis(50);
/// A read and a write cut at the timeout, plus slack for a loaded machine: a hang bound.
const CALL_BOUND: Duration = Duration::from_millis(500);

fn redis(namespace: &str) -> RedisBackend {
    RedisBackend::new(RedisConfig::standalone(server().url()).namespace(namespace))
}

fn resilience() -> Resilience {
    Resilience::new()
        .timeout(TIMEOUT)
        .failure_threshold(3)
        .open_for(Duration::from_millis(100))
}

/// A Redis-only `users` cache behind a faulty wrapper; the switch is returned.
fn faulty_manager(namespace: &str, resilience: Resilience) -> (CacheManager, Faults) {
    let backend = FaultyBackend::new(redis(namespace)).seed(42);
    let faults = backend.faults();
    let m = CacheManager::builder()
        .remote(backend)
        .resilience(resilience)
        .cache("users", Policy::new().tier(Tier::Remote).ttl_secs(60))
        .build();
    (m, faults)
}

fn remote(m: &CacheManager) -> RemoteStats {
    m.cache("users").stats().remote.expect("remote stats")
}

/// Calls under `m` and checks the answer and the time it took.
async fn bounded<F: Future<Output = String>>(
    m: &CacheManager,
    call: F,
    expected: &str,
) -> Duration {
    let started = Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(5), m.scope(call))
        .await
        .expect("a call hung");
    let took = started.elapsed();
    assert_eq!(got, expected);
    assert!(took < CALL_BOUND, "a call took {took:?}");
    took
}

/// Calls `f(id)` until its value is served from Redis without running the body (the breaker
/// may still be open for a moment after a fault ends).
async fn until_served_from_redis<F, Fut>(m: &CacheManager, runs: &AtomicUsize, f: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = String>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        m.scope(f()).await;
        let before = runs.load(SeqCst);
        m.scope(f()).await;
        if runs.load(SeqCst) == before && remote(m).breaker == Some(BreakerState::Closed) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "caching through Redis did not resume within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "user:{id}")]
async fn user(id: u64) -> String {
    RUNS.fetch_add(1, SeqCst);
    format!("user {id}")
}

#[tokio::test]
async fn every_fault_answers_from_the_body_within_the_timeout_and_caching_resumes() {
    let (m, faults) = faulty_manager("faulty-each", resilience());
    until_served_from_redis(&m, &RUNS, || user(1)).await;

    // Fail always: the body answers every call; nothing is served from Redis.
    faults.set(Fault::FailAlways);
    let runs = RUNS.load(SeqCst);
    for i in 0..10 {
        bounded(&m, user(1), "user 1").await;
        assert_eq!(RUNS.load(SeqCst), runs + 1 + i, "the body answers");
    }
    let s = remote(&m);
    assert_eq!(s.breaker, Some(BreakerState::Open), "{s:?}");
    assert!(faults.counts().failed >= 3, "{:?}", faults.counts());
    faults.clear();
    until_served_from_redis(&m, &RUNS, || user(2)).await;

    // A delay under the timeout: Redis is slower, and still used.
    faults.set(Fault::Delay(Duration::from_millis(10)));
    let runs = RUNS.load(SeqCst);
    bounded(&m, user(3), "user 3").await;
    let took = bounded(&m, user(3), "user 3").await;
    assert_eq!(
        RUNS.load(SeqCst),
        runs + 1,
        "the second call was a Redis hit"
    );
    assert!(
        took >= Duration::from_millis(10),
        "the delay applied: {took:?}"
    );
    assert!(faults.counts().delayed >= 3);

    // A delay over the timeout, and a hang: each call is cut at the timeout and the body answers.
    for fault in [Fault::Delay(Duration::from_millis(300)), Fault::Hang] {
        faults.set(fault);
        let runs = RUNS.load(SeqCst);
        for i in 0..6 {
            bounded(&m, user(3), "user 3").await;
            assert_eq!(
                RUNS.load(SeqCst),
                runs + 1 + i,
                "{fault:?}: the body answers"
            );
        }
        let s = remote(&m);
        assert!(s.timeouts >= 3, "{fault:?}: {s:?}");
        faults.clear();
        until_served_from_redis(&m, &RUNS, || user(4)).await;
    }
    assert!(faults.counts().hung >= 3, "{:?}", faults.counts());
}

static SOMETIMES_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "sometimes:{id}")]
async fn sometimes(id: u64) -> String {
    SOMETIMES_RUNS.fetch_add(1, SeqCst);
    format!("value {id}")
}

#[tokio::test]
async fn failing_sometimes_never_gives_a_wrong_answer() {
    // A breaker that never opens, so every call meets the coin.
    let (m, faults) = faulty_manager(
        "faulty-sometimes",
        Resilience::new()
            .timeout(Duration::from_secs(2))
            .failure_threshold(u32::MAX),
    );
    faults.set(Fault::FailSometimes(0.3));
    const CALLS: usize = 300;
    for i in 0..CALLS as u64 {
        let id = i % 20;
        assert_eq!(m.scope(sometimes(id)).await, format!("value {id}"));
    }
    let s = remote(&m);
    let runs = SOMETIMES_RUNS.load(SeqCst);
    let c = faults.counts();
    println!("fail sometimes (p = 0.3, seed 42): {CALLS} calls, {runs} body runs, {s:?}, {c:?}");
    // Each call was answered either by a Redis hit or by the body, never by both or neither.
    assert_eq!(s.hits as usize + runs, CALLS, "{s:?}");
    assert!(s.hits > 100, "most reads still hit: {s:?}");
    assert!(
        runs > 20,
        "failed reads and writes made the body run: {runs}"
    );
    assert_eq!(
        c.failed, s.errors,
        "every injected failure was counted as a Redis error"
    );
}

static SHARED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "shared:{id}", tags = ["shared"])]
async fn shared(id: u64) -> String {
    SHARED_RUNS.fetch_add(1, SeqCst);
    format!("shared {id} v{}", SHARED_RUNS.load(SeqCst))
}

#[tokio::test]
async fn instances_in_one_process_share_redis_and_survive_its_failure_together() {
    let backend = FaultyBackend::new(redis("faulty-instances"));
    let faults = backend.faults();
    let [a, b]: [CacheManager; 2] = instances(2, backend, |_, builder| {
        builder
            // Generous while healthy (a slow first connection must not turn A's write into a
            // skipped one); injected failures are immediate anyway.
            .resilience(resilience().timeout(Duration::from_secs(2)))
            .cache("users", Policy::new().tier(Tier::Hybrid).ttl_secs(60))
    })
    .try_into()
    .expect("two instances");
    tests::backplane_subscribed(&a).await;
    tests::backplane_subscribed(&b).await;

    // A computes, B reads A's value from Redis.
    let first = a.scope(shared(1)).await;
    let runs = SHARED_RUNS.load(SeqCst);
    assert_eq!(b.scope(shared(1)).await, first);
    assert_eq!(SHARED_RUNS.load(SeqCst), runs, "B read A's value");

    // An invalidation on A reaches B's memory through the backplane.
    let applied = b.backplane_stats().expect("a backplane").applied;
    a.invalidate_tag("shared").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.backplane_stats().expect("a backplane").applied == applied {
        assert!(
            Instant::now() < deadline,
            "B never heard of A's invalidation"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let fresh = b.scope(shared(1)).await;
    assert_ne!(fresh, first, "B recomputed after the invalidation");

    // Redis failing for both: each answers from its own body and memory.
    faults.set(Fault::FailAlways);
    let runs = SHARED_RUNS.load(SeqCst);
    bounded(&a, shared(2), &format!("shared 2 v{}", runs + 1)).await;
    bounded(&b, shared(2), &format!("shared 2 v{}", runs + 2)).await;
    assert_eq!(
        SHARED_RUNS.load(SeqCst),
        runs + 2,
        "no shared tier: each ran the body"
    );
    faults.clear();
}

static CLOCK_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "clock:{id}")]
async fn clocked(id: u64) -> String {
    CLOCK_RUNS.fetch_add(1, SeqCst);
    format!("clocked {id}")
}

#[tokio::test]
async fn a_manual_clock_expires_memory_and_the_value_comes_back_from_redis() {
    let clock = TestClock::manual();
    let m = CacheManager::builder()
        .clock(clock.clock())
        .remote(redis("faulty-clock"))
        .resilience(Resilience::new().timeout(Duration::from_secs(2)))
        .cache(
            "users",
            Policy::new()
                .tier(Tier::Hybrid)
                .ttl_secs(60)
                .l1_ttl(Duration::from_secs(1)),
        )
        .build();
    tests::backplane_subscribed(&m).await;
    m.scope(clocked(1)).await;
    assert_eq!(m.cache("users").stats().entries, 1);
    clock.advance(Duration::from_secs(2), [&m]).await;
    assert_eq!(
        m.cache("users").stats().entries,
        0,
        "the memory copy expired and was swept"
    );
    let hits = remote(&m).hits;
    assert_eq!(m.scope(clocked(1)).await, "clocked 1");
    assert_eq!(
        CLOCK_RUNS.load(SeqCst),
        1,
        "served from Redis, not recomputed"
    );
    assert_eq!(remote(&m).hits, hits + 1);
}

// --- cancellation on the remote path ----------------------------------------------------------

/// Polls its future at most `limit` times, then drops it: a caller that gives up at an await
/// point (axum drops a handler whose client went away). Each poll is a real one: the inner
/// future's waker wakes this task, nothing re-polls it spuriously.
struct DropAfter<F> {
    inner: Option<std::pin::Pin<Box<F>>>,
    polls: usize,
    limit: usize,
}

impl<F: Future> Future for DropAfter<F> {
    /// The value, or `None` if it was dropped; and the polls used.
    type Output = (Option<F::Output>, usize);

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        if self.polls >= self.limit {
            self.inner = None;
            return std::task::Poll::Ready((None, self.polls));
        }
        self.polls += 1;
        let polls = self.polls;
        let inner = self.inner.as_mut().expect("polled after completion");
        match inner.as_mut().poll(cx) {
            std::task::Poll::Ready(v) => std::task::Poll::Ready((Some(v), polls)),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

static CANCEL_RUNS: AtomicUsize = AtomicUsize::new(0);

/// The distributed lock's TTL in the cancellation test: how long a lock leaked by a dropped
/// caller would hold the next one up (none may be leaked).
const LOCK_TTL: Duration = Duration::from_millis(300);

#[cached(cache = "users", key = "cancel:{id}")]
async fn cancellable(id: u64) -> String {
    CANCEL_RUNS.fetch_add(1, SeqCst);
    tokio::task::yield_now().await; // one more await point inside the body
    format!("cancel {id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_dropped_at_every_await_point_of_the_redis_path_leave_nothing_stuck() {
    // A hybrid cache on Redis, each Redis operation slowed a little so that it spans polls: the
    // cached path then has await points at the L2 read, the distributed lock, the body, the
    // write-through and the backplane publish, and a caller is dropped at each.
    //
    // A caller dropped while its `SET NX` is on the wire has the lock taken in Redis without
    // having seen it; the attempt's guard releases it, so the next caller of the key must not
    // wait out the lock's TTL (300 ms here).
    let backend = FaultyBackend::new(redis("faulty-cancel"))
        .with_fault(Fault::Delay(Duration::from_millis(1)));
    let m = CacheManager::builder()
        .remote(backend)
        .resilience(Resilience::new().timeout(Duration::from_secs(2)))
        .cache(
            "users",
            Policy::new()
                .tier(Tier::Hybrid)
                .ttl_secs(60)
                .lock_ttl(LOCK_TTL),
        )
        .build();
    tests::backplane_subscribed(&m).await;

    // How many polls a whole cold call takes.
    let (value, full) = m
        .scope(DropAfter {
            inner: Some(Box::pin(cancellable(0))),
            polls: 0,
            limit: usize::MAX,
        })
        .await;
    assert_eq!(value.as_deref(), Some("cancel 0"));
    assert!(full >= 3, "a cold call spans several polls: {full}");

    let mut leaked_locks = Vec::new();
    for limit in 0..=full {
        let id = 1 + limit as u64;
        // A leader and two followers of the same key, each dropped after `limit` polls.
        let callers: Vec<_> = (0..3)
            .map(|_| {
                let m = m.clone();
                tokio::spawn(async move {
                    m.scope(DropAfter {
                        inner: Some(Box::pin(cancellable(id))),
                        polls: 0,
                        limit,
                    })
                    .await
                })
            })
            .collect();
        for c in callers {
            c.await.expect("a caller panicked");
        }
        // Nothing is stuck: a new caller of the same key completes, with the right value.
        let started = Instant::now();
        let after = tokio::time::timeout(Duration::from_secs(5), m.scope(cancellable(id)))
            .await
            .unwrap_or_else(|_| panic!("a call after callers dropped at poll {limit} hung"));
        let waited = started.elapsed();
        assert_eq!(after, format!("cancel {id}"));
        // A leaked lock would make the next call wait nearly the whole TTL; a released one at
        // most a few 5 ms polls.
        if waited >= LOCK_TTL * 2 / 3 {
            leaked_locks.push((limit, waited));
        }
    }
    assert!(
        leaked_locks.is_empty(),
        "drop points (poll, next call's wait) after which the next call waited out a leaked \
         lock: {leaked_locks:?}"
    );
    println!(
        "dropped callers after 0..={full} polls of a {full}-poll cold call; {} body runs for {} keys",
        CANCEL_RUNS.load(SeqCst),
        full + 2
    );
}

/// Waits until `done` holds, checking every millisecond; fails the test after 10 s.
async fn until(done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "the awaited condition never held"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn a_probe_whose_caller_goes_away_leaves_the_breaker_able_to_close() {
    // `open_for` zero: once the breaker is open, every call is its probe, so no clock is needed.
    let (m, faults) = faulty_manager(
        "faulty-dropped-probe",
        Resilience::new()
            .timeout(Duration::from_secs(5))
            .failure_threshold(1)
            .open_for(Duration::ZERO),
    );
    let c = m.cache("users");
    faults.set(Fault::FailAlways);
    // A read, not a set: a set's announcement (the test backend's backplane has no faults)
    // would be the next probe, and close the breaker.
    assert_eq!(c.get::<u64>("k").await, None);
    assert_eq!(remote(&m).breaker, Some(BreakerState::Open));

    // The probe reaches a hanging Redis, and its caller goes away long before the breaker's
    // timeout: an HTTP client disconnecting, or the caller's own timeout or `select!`.
    faults.set(Fault::Hang);
    tokio::select! {
        _ = c.get::<u64>("k") => panic!("Redis hangs: the probe cannot finish"),
        () = until(|| faults.counts().hung == 1) => {}
    }
    assert_ne!(
        remote(&m).breaker,
        Some(BreakerState::HalfOpen),
        "stuck half-open"
    );

    // Redis is healthy again: the next operation probes, succeeds and closes the breaker.
    faults.clear();
    c.set("k", 2u64).await;
    assert_eq!(remote(&m).breaker, Some(BreakerState::Closed));
    assert_eq!(
        c.get::<u64>("k").await,
        Some(2),
        "the Redis tier is used again"
    );
}

/// A Redis whose `PUBLISH` hangs or fails while reads and writes work (`Faults::set_publish_fault`):
/// the writing instance still answers within its timeout and Redis holds the new value, but the
/// announcement is lost, so another instance keeps its memory copy until the publishes work
/// again. The next announcement then reaches it.
#[tokio::test]
async fn a_failing_publish_delays_nothing_past_the_timeout_and_loses_only_that_announcement() {
    let backend = FaultyBackend::new(redis("faulty-publish"));
    let faults = backend.faults();
    let hybrid = Policy::new().tier(Tier::Hybrid).ttl_secs(60);
    let a = CacheManager::builder()
        .remote(backend)
        .resilience(resilience())
        .cache("users", hybrid.clone())
        .build();
    let b = CacheManager::builder()
        .remote(redis("faulty-publish"))
        .resilience(Resilience::new().timeout(Duration::from_secs(2)))
        .cache("users", hybrid)
        .build();
    tests::backplane_subscribed(&a).await;
    tests::backplane_subscribed(&b).await;
    let applied = || b.backplane_stats().expect("hybrid").applied;
    let (ca, cb) = (a.cache("users"), b.cache("users"));
    let b_reads = || async { cb.get::<String>("user:1").await };

    ca.set("user:1", "v1".to_owned()).await;
    until(|| applied() >= 1).await;
    assert_eq!(
        b_reads().await.as_deref(),
        Some("v1"),
        "from Redis, now in B's memory"
    );

    for (fault, version) in [(Fault::Hang, "v2"), (Fault::FailAlways, "v3")] {
        faults.set_publish_fault(fault);
        let started = Instant::now();
        ca.set("user:1", version.to_owned()).await;
        assert!(
            started.elapsed() < CALL_BOUND,
            "{fault:?}: the write took {:?}",
            started.elapsed()
        );
        assert_eq!(ca.get::<String>("user:1").await.as_deref(), Some(version));
        assert_eq!(
            b_reads().await.as_deref(),
            Some("v1"),
            "{fault:?}: the announcement is lost; B keeps its copy"
        );
    }
    let injected = faults.publish_counts();
    assert_eq!((injected.hung, injected.failed), (1, 1), "{injected:?}");
    assert_eq!(
        faults.counts().failed,
        0,
        "reads and writes were not faulted"
    );

    faults.set_publish_fault(Fault::None);
    let before = applied();
    ca.set("user:1", "v4".to_owned()).await;
    until(|| applied() > before).await;
    assert_eq!(b_reads().await.as_deref(), Some("v4"), "announced again");
}
