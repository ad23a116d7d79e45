//! Timeouts and a circuit breaker around any remote tier, so a slow or dead backend costs callers
//! at most the timeout, and after repeated failures nothing at all until a probe succeeds.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{RemoteError, RemoteTier};
use crate::stats::StripedCounter;

/// Timeout and breaker settings of a remote backend.
///
/// # Examples
///
/// ```
/// use cache_core::Resilience;
/// use std::time::Duration;
///
/// let r = Resilience::new()
///     .timeout(Duration::from_millis(50))
///     .failure_threshold(3)
///     .open_for(Duration::from_secs(2));
/// # drop(r);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Resilience {
    pub(crate) timeout: Duration,
    pub(crate) bulk_timeout: Duration,
    pub(crate) failure_threshold: u32,
    pub(crate) open_for: Duration,
}

impl Default for Resilience {
    fn default() -> Self {
        Self::new()
    }
}

impl Resilience {
    /// 100 ms per operation, 5 s per bulk invalidation; open after 5 consecutive failures; probe
    /// again after 1 s.
    ///
    /// ```
    /// use cache_core::{CacheManager, Resilience};
    ///
    /// let manager = CacheManager::builder().resilience(Resilience::new()).build();
    /// # drop(manager);
    /// ```
    pub fn new() -> Self {
        Resilience {
            timeout: Duration::from_millis(100),
            bulk_timeout: Duration::from_secs(5),
            failure_threshold: 5,
            open_for: Duration::from_secs(1),
        }
    }

    /// The longest any one remote operation may take before it counts as failed.
    ///
    /// ```
    /// use cache_core::Resilience;
    /// use std::time::Duration;
    ///
    /// let r = Resilience::new().timeout(Duration::from_millis(50));
    /// # drop(r);
    /// ```
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// How long the caller waits for a bulk invalidation (tag, pattern, clear) before moving on.
    /// Backends finish such work even when the caller stops waiting, and a bulk timeout does not
    /// count against the backend's health: it measures the data, not the connection.
    ///
    /// ```
    /// use cache_core::Resilience;
    /// use std::time::Duration;
    ///
    /// let r = Resilience::new().bulk_timeout(Duration::from_secs(30));
    /// # drop(r);
    /// ```
    pub fn bulk_timeout(mut self, t: Duration) -> Self {
        self.bulk_timeout = t;
        self
    }

    /// Consecutive failures that open the breaker (at least 1).
    ///
    /// ```
    /// use cache_core::Resilience;
    ///
    /// let r = Resilience::new().failure_threshold(10);
    /// # drop(r);
    /// ```
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.failure_threshold = n.max(1);
        self
    }

    /// How long the breaker stays open before letting one probe through (`Duration::MAX`: no
    /// probe, ever).
    ///
    /// ```
    /// use cache_core::Resilience;
    /// use std::time::Duration;
    ///
    /// let r = Resilience::new().failure_threshold(3).open_for(Duration::from_secs(5));
    /// # drop(r);
    /// ```
    pub fn open_for(mut self, d: Duration) -> Self {
        self.open_for = d;
        self
    }
}

/// The breaker's state.
///
/// ```
/// use cache_core::testing::MemoryBackend;
/// use cache_core::{BreakerState, CacheManager};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let manager = CacheManager::builder().remote(MemoryBackend::new()).build();
/// assert_eq!(manager.health().await.remote.unwrap().breaker, BreakerState::Closed);
/// # });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum BreakerState {
    /// Operations go through.
    Closed,
    /// Operations are skipped.
    Open,
    /// One probe is in flight; the rest are skipped until it answers.
    HalfOpen,
}

/// Counters of one remote tier.
///
/// ```
/// use cache_core::testing::MemoryBackend;
/// use cache_core::{CacheManager, Policy, Tier};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let manager = CacheManager::builder()
///     .remote(MemoryBackend::new())
///     .cache("users", Policy::new().tier(Tier::Remote))
///     .build();
/// let users = manager.cache("users");
/// users.set("user:1", 1_u32).await;
/// assert_eq!(users.get::<u32>("user:1").await, Some(1));
/// assert_eq!(users.get::<u32>("user:2").await, None);
/// let remote = users.stats().remote.expect("a remote tier");
/// assert_eq!((remote.hits, remote.misses, remote.errors), (1, 1, 0));
/// # });
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RemoteStats {
    /// Reads that found a usable value.
    pub hits: u64,
    /// Reads that found nothing usable (absent, expired, undecodable).
    pub misses: u64,
    /// Operations that failed (including timeouts).
    pub errors: u64,
    /// Operations that hit the timeout.
    pub timeouts: u64,
    /// Operations skipped because the breaker was open.
    pub skipped: u64,
    /// Values that could not be decoded and were deleted.
    pub decode_errors: u64,
    /// Values refused on write for exceeding the size limit.
    pub too_large: u64,
    /// Misses on which this instance took the distributed lock and computed the value.
    pub lock_acquired: u64,
    /// Misses that found the distributed lock held by another instance and waited for its value
    /// (each counted once, however long it waited).
    pub lock_waits: u64,
    /// Waits that ran out ([`Policy::lock_wait`](crate::Policy::lock_wait)) and computed the
    /// value without the lock.
    pub lock_wait_timeouts: u64,
    /// Mean round trip of completed operations, in microseconds.
    pub mean_latency_us: u64,
    /// The breaker's state now.
    pub breaker: Option<BreakerState>,
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

#[derive(Default)]
pub(crate) struct RemoteCounters {
    pub(crate) hits: StripedCounter,
    pub(crate) misses: StripedCounter,
    pub(crate) errors: StripedCounter,
    pub(crate) timeouts: StripedCounter,
    pub(crate) skipped: StripedCounter,
    pub(crate) decode_errors: StripedCounter,
    pub(crate) too_large: StripedCounter,
    pub(crate) lock_acquired: StripedCounter,
    pub(crate) lock_waits: StripedCounter,
    pub(crate) lock_wait_timeouts: StripedCounter,
    latency_us_total: StripedCounter,
    latency_samples: StripedCounter,
}

/// A remote tier with a timeout on every operation and a breaker shared by all of a backend's
/// caches (they share one connection, so they fail together).
pub(crate) struct ResilientTier {
    pub(crate) inner: Arc<dyn RemoteTier>,
    pub(crate) breaker: Arc<Breaker>,
    pub(crate) counters: RemoteCounters,
}

pub(crate) struct Breaker {
    settings: Resilience,
    state: AtomicU8,
    consecutive_failures: AtomicU32,
    /// Milliseconds since `origin` at which an open breaker may let a probe through.
    reopen_at_ms: AtomicU64,
    origin: Instant,
}

impl Breaker {
    pub(crate) fn new(settings: Resilience) -> Self {
        Breaker {
            settings,
            state: AtomicU8::new(CLOSED),
            consecutive_failures: AtomicU32::new(0),
            reopen_at_ms: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    pub(crate) fn settings(&self) -> &Resilience {
        &self.settings
    }

    pub(crate) fn state(&self) -> BreakerState {
        match self.state.load(Ordering::Acquire) {
            CLOSED => BreakerState::Closed,
            OPEN => BreakerState::Open,
            _ => BreakerState::HalfOpen,
        }
    }

    /// Whether an operation may go through now, and whether it is the breaker's probe.
    fn admit(&self) -> Admit {
        match self.state.load(Ordering::Acquire) {
            CLOSED => Admit::Closed,
            OPEN if self.now_ms() >= self.reopen_at_ms.load(Ordering::Acquire) => {
                // One caller wins the right to probe.
                match self.state.compare_exchange(
                    OPEN,
                    HALF_OPEN,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => Admit::Probe,
                    Err(_) => Admit::Refused,
                }
            }
            _ => Admit::Refused,
        }
    }

    /// Runs one operation under the timeout and the breaker.
    pub(crate) async fn run_standalone<T>(
        &self,
        op: impl Future<Output = Result<T, RemoteError>>,
    ) -> Result<T, RemoteError> {
        self.guard(op, self.settings.timeout, false).await
    }

    /// Runs a bulk invalidation under the bulk timeout and the breaker; its timeout is not a
    /// failure of the backend.
    pub(crate) async fn run_bulk<T>(
        &self,
        op: impl Future<Output = Result<T, RemoteError>>,
    ) -> Result<T, RemoteError> {
        self.guard(op, self.settings.bulk_timeout, true).await
    }

    async fn guard<T>(
        &self,
        op: impl Future<Output = Result<T, RemoteError>>,
        timeout: Duration,
        bulk: bool,
    ) -> Result<T, RemoteError> {
        let probe = match self.admit() {
            Admit::Refused => return Err(RemoteError::CircuitOpen),
            Admit::Closed => None,
            Admit::Probe => Some(ProbeSlot(self)),
        };
        let result = match tokio::time::timeout(timeout, op).await {
            Ok(r) => r,
            Err(_) => Err(RemoteError::Timeout),
        };
        // The probe finished: its result judges the backend below, not the slot's drop.
        std::mem::forget(probe);
        if bulk && matches!(result, Err(RemoteError::Timeout)) {
            tracing::warn!(
                ?timeout,
                "bulk remote invalidation still running after the bulk timeout; not waiting for it"
            );
            // Neither a success nor a failure: hand a half-open probe slot back without judging.
            let _ =
                self.state
                    .compare_exchange(HALF_OPEN, OPEN, Ordering::AcqRel, Ordering::Acquire);
            return result;
        }
        match &result {
            // A value refused for its size says nothing against the backend's health.
            Ok(_) | Err(RemoteError::TooLarge { .. }) => self.on_success(),
            Err(_) => self.on_failure(),
        }
        result
    }

    fn on_success(&self) {
        // Read before writing: nearly every operation succeeds on a closed breaker with no
        // failures counted, and unconditional writes (a store and a locked swap per operation)
        // made every core's remote calls take this line in turn. Skipping a write that would
        // change nothing orders the same as the write would have.
        if self.consecutive_failures.load(Ordering::Acquire) != 0 {
            self.consecutive_failures.store(0, Ordering::Release);
        }
        if self.state.load(Ordering::Acquire) != CLOSED
            && self.state.swap(CLOSED, Ordering::AcqRel) != CLOSED
        {
            tracing::info!("remote cache tier recovered; circuit breaker closed");
        }
    }

    fn on_failure(&self) {
        let failures = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        let probing = self.state.load(Ordering::Acquire) == HALF_OPEN;
        if probing || failures >= self.settings.failure_threshold {
            // Saturating: a period too long for `u64` milliseconds (`Duration::MAX`) means open
            // for good, not an overflow panic, nor a cast wrapping it to a short one.
            let open_for_ms = u64::try_from(self.settings.open_for.as_millis()).unwrap_or(u64::MAX);
            self.reopen_at_ms
                .store(self.now_ms().saturating_add(open_for_ms), Ordering::Release);
            if self.state.swap(OPEN, Ordering::AcqRel) == CLOSED {
                tracing::warn!(
                    failures,
                    "remote cache tier failing; circuit breaker open, serving without it"
                );
            }
        }
    }
}

/// What [`Breaker::admit`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admit {
    /// The breaker is closed: go ahead.
    Closed,
    /// Go ahead as the single probe of a half-open breaker.
    Probe,
    /// Skip the backend.
    Refused,
}

/// The half-open breaker's probe slot, held while the probe runs. Only the probe's result moves
/// a half-open breaker on, so a probe whose caller stops polling it (a dropped request, a
/// `select!` or timeout around the call) would leave the breaker half-open, refusing every
/// operation, for good. Dropped unfinished, the slot hands the probe back without judging the
/// backend: the breaker is open again and, its period already over, lets the next caller probe.
struct ProbeSlot<'a>(&'a Breaker);

impl Drop for ProbeSlot<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .state
            .compare_exchange(HALF_OPEN, OPEN, Ordering::AcqRel, Ordering::Acquire);
    }
}

impl ResilientTier {
    pub(crate) fn new(inner: Arc<dyn RemoteTier>, breaker: Arc<Breaker>) -> Self {
        ResilientTier {
            inner,
            breaker,
            counters: RemoteCounters::default(),
        }
    }

    /// Runs one operation under the timeout and the breaker, and counts how it went.
    pub(crate) async fn run<T>(
        &self,
        op: impl Future<Output = Result<T, RemoteError>>,
    ) -> Result<T, RemoteError> {
        let started = Instant::now();
        let result = self.breaker.run_standalone(op).await;
        self.count(started, &result);
        result
    }

    /// Runs a bulk invalidation; see [`Breaker::run_bulk`].
    pub(crate) async fn run_bulk<T>(
        &self,
        op: impl Future<Output = Result<T, RemoteError>>,
    ) -> Result<T, RemoteError> {
        let started = Instant::now();
        let result = self.breaker.run_bulk(op).await;
        self.count(started, &result);
        result
    }

    fn count<T>(&self, started: Instant, result: &Result<T, RemoteError>) {
        let c = &self.counters;
        match result {
            Ok(_) => {
                c.latency_us_total.add(started.elapsed().as_micros() as u64);
                c.latency_samples.incr();
            }
            Err(RemoteError::CircuitOpen) => c.skipped.incr(),
            Err(RemoteError::TooLarge { .. }) => c.too_large.incr(),
            Err(RemoteError::Timeout) => {
                c.timeouts.incr();
                c.errors.incr();
            }
            Err(e) => {
                c.errors.incr();
                tracing::debug!(error = %e, "remote cache operation failed");
            }
        }
    }

    /// Zeroes the counters (the breaker's state is not a counter: it stays).
    pub(crate) fn reset_stats(&self) {
        let c = &self.counters;
        for counter in [
            &c.hits,
            &c.misses,
            &c.errors,
            &c.timeouts,
            &c.skipped,
            &c.decode_errors,
            &c.too_large,
            &c.lock_acquired,
            &c.lock_waits,
            &c.lock_wait_timeouts,
            &c.latency_us_total,
            &c.latency_samples,
        ] {
            counter.reset();
        }
    }

    pub(crate) fn stats(&self) -> RemoteStats {
        let c = &self.counters;
        let samples = c.latency_samples.get();
        RemoteStats {
            hits: c.hits.get(),
            misses: c.misses.get(),
            errors: c.errors.get(),
            timeouts: c.timeouts.get(),
            skipped: c.skipped.get(),
            decode_errors: c.decode_errors.get(),
            too_large: c.too_large.get(),
            lock_acquired: c.lock_acquired.get(),
            lock_waits: c.lock_waits.get(),
            lock_wait_timeouts: c.lock_wait_timeouts.get(),
            mean_latency_us: c.latency_us_total.get().checked_div(samples).unwrap_or(0),
            breaker: Some(self.breaker.state()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_once() {
        let b = Breaker::new(
            Resilience::new()
                .failure_threshold(2)
                .open_for(Duration::ZERO),
        );
        assert_eq!(b.admit(), Admit::Closed);
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Closed);
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.admit(), Admit::Probe, "open_for elapsed: one probe");
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert_eq!(b.admit(), Admit::Refused, "only one probe at a time");
        b.on_failure();
        assert_eq!(b.state(), BreakerState::Open, "a failed probe reopens");
        assert_eq!(b.admit(), Admit::Probe);
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_success_starts_the_failure_count_over() {
        let b = Breaker::new(Resilience::new().failure_threshold(3));
        for _ in 0..3 {
            b.on_failure();
            b.on_failure();
            b.on_success();
        }
        assert_eq!(b.state(), BreakerState::Closed, "never 3 failures in a row");
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed);
        for _ in 0..3 {
            b.on_failure();
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn stays_open_for_its_period() {
        let b = Breaker::new(
            Resilience::new()
                .failure_threshold(1)
                .open_for(Duration::from_secs(3600)),
        );
        b.on_failure();
        assert_eq!(b.admit(), Admit::Refused);
        assert_eq!(b.admit(), Admit::Refused);
    }

    #[test]
    fn an_open_period_too_long_for_milliseconds_stays_open() {
        // `Duration::MAX`, and exactly 2^64 ms (which a cast to `u64` turns into 0).
        for open_for in [
            Duration::MAX,
            Duration::new(18_446_744_073_709_551, 616_000_000),
        ] {
            let b = Breaker {
                // A breaker that has been running for a while.
                origin: Instant::now()
                    .checked_sub(Duration::from_secs(1))
                    .unwrap_or_else(Instant::now),
                ..Breaker::new(Resilience::new().failure_threshold(1).open_for(open_for))
            };
            b.on_failure();
            assert_eq!(b.state(), BreakerState::Open);
            assert_eq!(b.admit(), Admit::Refused, "{open_for:?}: no probe yet");
        }
    }

    #[tokio::test]
    async fn a_probe_dropped_unfinished_hands_the_breaker_back() {
        let b = Breaker::new(
            Resilience::new()
                .failure_threshold(1)
                .open_for(Duration::ZERO),
        );
        b.on_failure();
        // The caller polls the probe once (it is then waiting on the backend), then goes
        // elsewhere, as a `select!` or a client disconnect does.
        tokio::select! {
            biased;
            _ = b.run_standalone(std::future::pending::<Result<(), RemoteError>>()) => {
                unreachable!("the backend never answers")
            }
            () = std::future::ready(()) => {}
        }
        assert_eq!(b.state(), BreakerState::Open, "not stuck half-open");
        assert_eq!(b.admit(), Admit::Probe, "the next caller probes");
        b.on_success();
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn an_operation_dropped_while_closed_leaves_the_breaker_alone() {
        let b = Breaker::new(Resilience::new().failure_threshold(1));
        tokio::select! {
            biased;
            _ = b.run_standalone(std::future::pending::<Result<(), RemoteError>>()) => {
                unreachable!("the backend never answers")
            }
            () = std::future::ready(()) => {}
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
