//! Time as the cache sees it: milliseconds on a clock chosen per [`CacheManager`](crate::CacheManager).
//!
//! A hit must not pay for a `clock_gettime` call (about 30 ns here, a third of the hit budget), so
//! the default clock is *coarse*: a process-wide millisecond counter that the maintenance thread
//! advances every millisecond while the process reads it (see `coarse.rs` for how it stops when
//! nothing does). Tests swap in tokio's clock (so `tokio::time::pause`/`advance` drive expiry) or
//! a manual clock they advance themselves.

mod coarse;

pub(crate) use coarse::{AfterProbe, PROBE_TICKS, mark_maintenance_thread};

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coarse::CoarseCounter;

/// Process-wide origin of the coarse clock.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Milliseconds since [`EPOCH`], advanced by the maintenance thread.
static COARSE: CoarseCounter = CoarseCounter::new(
    || ms_since_epoch(Instant::now()),
    crate::memory::wake_maintenance,
);

fn ms_since_epoch(at: Instant) -> u64 {
    at.saturating_duration_since(*EPOCH).as_millis() as u64
}

/// Re-reads the real time into the coarse counter. Called by the maintenance thread every tick and
/// on every miss, so a coarse reading is never older than one tick.
pub(crate) fn refresh_coarse() -> u64 {
    refresh_coarse_at(Instant::now())
}

/// [`refresh_coarse`] with a reading of the system clock the caller already took.
fn refresh_coarse_at(at: Instant) -> u64 {
    COARSE.refresh(ms_since_epoch(at))
}

/// The maintenance thread's probe of the coarse counter (see `coarse.rs`).
pub(crate) fn probe_coarse() -> AfterProbe {
    COARSE.probe()
}

/// Whether the coarse counter is parked until a reader wakes the maintenance thread.
pub(crate) fn coarse_is_idle() -> bool {
    COARSE.is_idle()
}

/// The source of "now" for expiry decisions.
///
/// # Examples
///
/// ```
/// use cache_core::{CacheManager, Clock};
/// use std::time::Duration;
///
/// let clock = Clock::manual();
/// let manager = CacheManager::builder().clock(clock.clone()).build();
/// clock.advance(Duration::from_secs(5));
/// # drop(manager);
/// ```
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// A millisecond counter advanced by a background thread; one atomic load per read.
    #[default]
    Coarse,
    /// `tokio::time::Instant`, which follows `tokio::time::pause` and `advance`; for tests.
    Tokio(TokioClock),
    /// A clock that moves only when told to; for tests that run without tokio.
    Manual(ManualClock),
}

impl Clock {
    /// The coarse, process-wide clock (the default).
    ///
    /// ```
    /// use cache_core::{CacheManager, Clock};
    ///
    /// let manager = CacheManager::builder().clock(Clock::coarse()).build();
    /// assert!(matches!(manager.clock(), Clock::Coarse));
    /// ```
    pub fn coarse() -> Self {
        Clock::Coarse
    }

    /// Tokio's clock, measured from the moment this is called. Create it inside the runtime whose
    /// time is paused (for example in a `#[tokio::test(start_paused = true)]`).
    ///
    /// ```
    /// use cache_core::{CacheManager, Clock, Policy};
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
    /// let manager = CacheManager::builder()
    ///     .clock(Clock::tokio())
    ///     .default_policy(Policy::new().ttl_secs(60))
    ///     .build();
    /// manager.cache("c").set("k", 1_u8).await;
    /// tokio::time::advance(Duration::from_secs(61)).await;
    /// assert_eq!(manager.cache("c").get::<u8>("k").await, None);
    /// # });
    /// ```
    pub fn tokio() -> Self {
        Clock::Tokio(TokioClock {
            origin: tokio::time::Instant::now(),
            runtime: tokio::runtime::Handle::try_current().ok(),
        })
    }

    /// A manual clock starting at zero; move it with [`Clock::advance`].
    ///
    /// ```
    /// use cache_core::{CacheManager, Clock, Policy};
    /// use std::time::Duration;
    ///
    /// let clock = Clock::manual();
    /// let manager = CacheManager::builder()
    ///     .clock(clock.clone())
    ///     .default_policy(Policy::new().ttl_secs(60))
    ///     .build();
    /// manager.cache("c").blocking().set("k", 1_u8);
    /// clock.advance(Duration::from_secs(61));
    /// assert_eq!(manager.cache("c").blocking().get::<u8>("k"), None);
    /// ```
    pub fn manual() -> Self {
        Clock::Manual(ManualClock::default())
    }

    /// Moves a manual clock forward. Does nothing on the other clocks, whose time is not ours to move.
    ///
    /// ```
    /// use cache_core::Clock;
    /// use std::time::Duration;
    ///
    /// let clock = Clock::manual();
    /// clock.advance(Duration::from_secs(1)); // moves it
    /// Clock::coarse().advance(Duration::from_secs(1)); // does nothing
    /// ```
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(m) = self {
            m.ms.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
        }
    }

    /// Milliseconds since this clock's origin.
    #[inline]
    pub(crate) fn now_ms(&self) -> u64 {
        match self {
            Clock::Coarse => COARSE.read(),
            Clock::Tokio(t) => t.now_ms(),
            Clock::Manual(m) => m.ms.load(Ordering::SeqCst),
        }
    }

    /// [`now_ms_precise`](Self::now_ms_precise) with the `Instant` it was read at, from one
    /// read of the system clock on the coarse clock: the miss path times its body with these two
    /// readings (before and after) and stores the value with the second, where it read the
    /// system clock five times (each about 25 ns here, together a tenth of a miss).
    pub(crate) fn reading(&self) -> (u64, Instant) {
        match self {
            Clock::Coarse => {
                let at = Instant::now();
                (refresh_coarse_at(at), at)
            }
            _ => (self.now_ms(), Instant::now()),
        }
    }

    /// An exact reading, for the miss path where a syscall is affordable.
    pub(crate) fn now_ms_precise(&self) -> u64 {
        match self {
            Clock::Coarse => refresh_coarse(),
            _ => self.now_ms(),
        }
    }
}

/// See [`Clock::tokio`].
///
/// ```
/// use cache_core::Clock;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// assert!(matches!(Clock::tokio(), Clock::Tokio(_)));
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct TokioClock {
    origin: tokio::time::Instant,
    /// The runtime whose clock this is, when it was made in one.
    runtime: Option<tokio::runtime::Handle>,
}

impl TokioClock {
    fn now_ms(&self) -> u64 {
        // Read in the clock's own runtime: elsewhere (the maintenance thread's sweeps,
        // cache-core's I/O runtime) tokio's `Instant::now()` is real time, by which entries
        // expired while the test's paused clock stood still.
        let _in_runtime = self.runtime.as_ref().map(|r| r.enter());
        self.origin.elapsed().as_millis() as u64
    }
}

/// See [`Clock::manual`].
///
/// ```
/// use cache_core::Clock;
///
/// assert!(matches!(Clock::manual(), Clock::Manual(_)));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    ms: Arc<AtomicU64>,
}
