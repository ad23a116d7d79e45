//! Per-cache counters.
//!
//! Counters are striped over cache-line-padded slots picked per thread, so two cores counting
//! hits on the same cache do not fight over one cache line (a shared atomic costs more than the
//! whole lookup under contention).

use std::cell::Cell;

use crate::LatencySummary;
use crate::histogram::Histogram;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const STRIPES: usize = 16;

#[repr(align(128))]
#[derive(Default)]
struct Slot(AtomicU64);

/// A counter spread over [`STRIPES`] slots.
#[derive(Default)]
pub(crate) struct StripedCounter {
    slots: [Slot; STRIPES],
}

/// The next never-used thread index. Indexes below [`OWNED`] are handed back when their thread
/// ends (see [`ReleaseIndex`]) and reused before a new one is drawn.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

/// Owned-slot indexes whose threads have ended.
static FREE_INDEXES: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// The index of a thread whose index was handed back: it counts through the shared slots.
const RELEASED: usize = usize::MAX - 1;

thread_local! {
    static THREAD: Cell<usize> = const { Cell::new(usize::MAX) };
    static RELEASE: ReleaseIndex = const { ReleaseIndex };
}

/// Hands the thread's index back when the thread ends, so that a process that keeps starting
/// and ending threads (a blocking pool, a benchmark harness) does not run out of owned slots.
/// The thread's last count happens before this destructor, which happens before the next owner
/// takes the index from [`FREE_INDEXES`] (a mutex): the slot never has two writers.
struct ReleaseIndex;

impl Drop for ReleaseIndex {
    fn drop(&mut self) {
        // Any count made later in this thread's teardown (another thread-local's destructor
        // calling a cached function) goes to the shared slots.
        let index = THREAD.replace(RELEASED);
        if index < OWNED {
            FREE_INDEXES
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(index);
        }
    }
}

/// This thread's index (see [`NEXT_THREAD`]).
#[inline(always)]
fn thread_index() -> usize {
    // `get` rather than `with` and a closure: the closure's instance was left out of line on
    // the hit path.
    let v = THREAD.get();
    if v != usize::MAX {
        v
    } else {
        assign_thread_index()
    }
}

/// Out of line, so the common path of [`thread_index`] is a load and a compare.
#[cold]
#[inline(never)]
fn assign_thread_index() -> usize {
    // Registering the destructor first: if it cannot be (the thread is already being torn
    // down), the thread takes no owned index, so none is lost.
    if RELEASE.try_with(|_| ()).is_err() {
        THREAD.set(RELEASED);
        return RELEASED;
    }
    let reused = FREE_INDEXES.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let v = reused.unwrap_or_else(|| NEXT_THREAD.fetch_add(1, Ordering::Relaxed));
    THREAD.set(v);
    v
}

// Always inlined: on the hit path an out-of-line call here cost more than the increment.
#[inline(always)]
fn stripe() -> usize {
    thread_index() % STRIPES
}

impl StripedCounter {
    #[inline(always)]
    pub(crate) fn incr(&self) {
        self.add(1);
    }

    #[inline(always)]
    pub(crate) fn add(&self, n: u64) {
        self.slots[stripe()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.slots.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }

    pub(crate) fn reset(&self) {
        for s in &self.slots {
            s.0.store(0, Ordering::Relaxed);
        }
    }
}

/// Threads (by [`thread_index`]) that own a slot of an [`OwnedCounter`].
const OWNED: usize = 64;
/// Slots shared, with locked increments, by the threads after the first [`OWNED`].
const SHARED: usize = 8;

/// A counter for the hit path: each of up to [`OWNED`] live threads owns a slot that only it
/// writes, so it counts with a plain load and store. A locked increment (what
/// [`StripedCounter`] does) waits for every earlier load and store of the thread to complete,
/// and measured as about a sixth of a memory hit. An ended thread's slot passes to a later
/// thread with its count in it; threads beyond [`OWNED`] alive at once count in the shared
/// slots, still exactly, with the locked increment.
pub(crate) struct OwnedCounter {
    owned: [Slot; OWNED],
    shared: [Slot; SHARED],
    /// The sum at the last [`reset`](Self::reset): resetting never writes an owned slot, so it
    /// cannot race with its owner's load and store.
    base: AtomicU64,
}

impl Default for OwnedCounter {
    fn default() -> Self {
        OwnedCounter {
            owned: std::array::from_fn(|_| Slot::default()),
            shared: Default::default(),
            base: AtomicU64::new(0),
        }
    }
}

impl OwnedCounter {
    #[inline(always)]
    pub(crate) fn incr(&self) {
        let t = thread_index();
        match self.owned.get(t) {
            Some(slot) => {
                // Only this thread writes this slot: the load and store cannot lose a count.
                let v = slot.0.load(Ordering::Relaxed);
                slot.0.store(v.wrapping_add(1), Ordering::Relaxed);
            }
            None => {
                self.shared[t % SHARED].0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn sum(&self) -> u64 {
        self.owned
            .iter()
            .chain(&self.shared)
            .fold(0u64, |acc, s| acc.wrapping_add(s.0.load(Ordering::Relaxed)))
    }

    pub(crate) fn get(&self) -> u64 {
        self.sum().wrapping_sub(self.base.load(Ordering::Relaxed))
    }

    pub(crate) fn reset(&self) {
        self.base.store(self.sum(), Ordering::Relaxed);
    }
}

/// A random number per call, from a per-thread xorshift generator, for sampling: a fixed stride
/// would alias with periodic access patterns and always sample the same key of a cycle.
#[inline(always)]
pub(crate) fn sample() -> u32 {
    thread_local! {
        static STATE: Cell<u32> = const { Cell::new(0) };
    }
    STATE.with(|s| {
        let mut x = s.get();
        if x == 0 {
            // Seed from the slot's address: distinct per thread, never zero.
            x = (s as *const Cell<u32> as usize as u32) | 1;
        }
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        s.set(x);
        x
    })
}

/// The live counters of one memory tier.
#[derive(Default)]
pub(crate) struct Counters {
    /// Counted on every memory hit, so without a locked instruction.
    pub(crate) hits: OwnedCounter,
    pub(crate) misses: StripedCounter,
    pub(crate) inserts: StripedCounter,
    pub(crate) evictions: StripedCounter,
    pub(crate) expirations: StripedCounter,
    pub(crate) invalidations: StripedCounter,
    pub(crate) coalesced: StripedCounter,
    pub(crate) bypassed: StripedCounter,
    pub(crate) preload_hits: StripedCounter,
    pub(crate) stale_served: StripedCounter,
    pub(crate) refreshes: StripedCounter,
    pub(crate) refreshes_skipped: StripedCounter,
    pub(crate) fail_safe: StripedCounter,
    pub(crate) body_failures: StripedCounter,
    pub(crate) timeouts: StripedCounter,
    /// Memory-tier lookups, one in 64 timed.
    pub(crate) lookup_latency: Histogram,
    /// The wrapped bodies, every run timed.
    pub(crate) body_latency: Histogram,
}

/// A snapshot of one named cache's counters.
///
/// # Examples
///
/// ```
/// # tokio_test_block_on(async {
/// use cache_core::CacheManager;
///
/// let manager = CacheManager::builder().build();
/// let users = manager.cache("users");
/// users.set("user:1", 1_u32).await;
/// assert_eq!(users.get::<u32>("user:1").await, Some(1));
/// assert_eq!(users.get::<u32>("user:2").await, None);
/// let stats = users.stats();
/// assert_eq!((stats.hits, stats.misses, stats.entries), (1, 1, 1));
/// assert_eq!(stats.hit_rate(), 0.5);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// The cache's name.
    pub name: String,
    /// Lookups that found a live entry.
    pub hits: u64,
    /// Lookups that found nothing (or an expired or foreign entry).
    pub misses: u64,
    /// Values stored.
    pub inserts: u64,
    /// Entries removed to respect `max_entries` / `max_weight`.
    pub evictions: u64,
    /// Entries removed because their TTL passed.
    pub expirations: u64,
    /// Entries removed by invalidation (key, cache or all).
    pub invalidations: u64,
    /// Times a caller joined another caller's computation (single flight) and waited for it.
    /// Most such waits end with the leader's value; a caller whose leader's outcome is not cached
    /// (`Err`, `None`) or was abandoned (cancelled, panicked, overlapped an invalidation) then
    /// runs the body itself, and a caller that joins again after an abandoned flight counts
    /// again. So this counts waits, not body runs saved; `body_latency.count` is the body runs.
    pub coalesced: u64,
    /// Calls that skipped the cache because a `#[cache_if]` condition was false.
    pub bypassed: u64,
    /// Entries held now.
    pub entries: u64,
    /// Weight held now, in the weigher's unit (bytes by default).
    pub weight: u64,
    /// Memory-tier hits on entries preloaded from the remote tier as hot keys (decoded on first
    /// use; counted as misses by `hits`/`misses`, which see only typed entries).
    pub preload_hits: u64,
    /// Calls answered with a value past its TTL: stale-while-revalidate, or a fail-safe value
    /// after a soft timeout.
    #[serde(default)]
    pub stale_served: u64,
    /// Background refreshes started (stale-while-revalidate and refresh-ahead).
    #[serde(default)]
    pub refreshes: u64,
    /// Sync background refreshes not started because all
    /// [`MAX_SYNC_REFRESH_THREADS`](crate::MAX_SYNC_REFRESH_THREADS) were busy: the stale value
    /// was served and the refresh left to a later read.
    #[serde(default)]
    pub refreshes_skipped: u64,
    /// Failed body runs (`Err`, panic, hard timeout) answered with a fail-safe value instead:
    /// once per run, however many callers were waiting on it (those count in `coalesced`, or in
    /// `timeouts` when a timeout answered them first).
    #[serde(default)]
    pub fail_safe: u64,
    /// Body runs that failed: returned `Err`, panicked or passed the hard timeout.
    #[serde(default)]
    pub body_failures: u64,
    /// Calls answered because of a soft or hard timeout: with a fallback or their timeout
    /// error, whether their own timer ran out or their leader's body passed the hard timeout.
    /// Waiters that share the fail-safe value their leader served count in `coalesced` instead.
    #[serde(default)]
    pub timeouts: u64,
    /// Latency of memory-tier lookups (one in 64 sampled).
    pub lookup_latency: LatencySummary,
    /// Latency of the wrapped function bodies (every run, failed ones and those cut short by a
    /// dropped caller included).
    pub body_latency: LatencySummary,
    /// The remote tier's counters, for caches that have one.
    pub remote: Option<crate::RemoteStats>,
}

impl CacheStats {
    /// `hits / (hits + misses)`, or 0 when nothing was looked up.
    ///
    /// ```
    /// let cache = cache_core::CacheManager::builder().build().cache("users");
    /// assert_eq!(cache.stats().hit_rate(), 0.0);
    /// cache.blocking().set("a", 1_u8);
    /// cache.blocking().get::<u8>("a");
    /// cache.blocking().get::<u8>("b");
    /// assert_eq!(cache.stats().hit_rate(), 0.5);
    /// ```
    pub fn hit_rate(&self) -> f64 {
        // Summed as floats: two counts that each fit a `u64` may not fit one together (a debug
        // build panicked on such stats, deserialized ones included).
        let total = self.hits as f64 + self.misses as f64;
        if total == 0.0 {
            0.0
        } else {
            self.hits as f64 / total
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests below count thread indexes drawn process-wide: one at a time.
    static INDEXES: Mutex<()> = Mutex::new(());

    #[test]
    fn owned_counter_counts_exactly_from_owning_and_sharing_threads() {
        let _one_at_a_time = INDEXES.lock().unwrap_or_else(|e| e.into_inner());
        let counter = OwnedCounter::default();
        // More threads alive at once than owned slots (the barrier holds them all), so some
        // count through the shared slots, several at once.
        let threads = OWNED + 2 * SHARED;
        let all_started = std::sync::Barrier::new(threads);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    counter.incr();
                    all_started.wait();
                    for _ in 1..1_000 {
                        counter.incr();
                    }
                });
            }
        });
        assert!(NEXT_THREAD.load(Ordering::Relaxed) > OWNED);
        assert_eq!(counter.get(), (OWNED + 2 * SHARED) as u64 * 1_000);
        counter.reset();
        assert_eq!(counter.get(), 0);
        counter.incr();
        assert_eq!(counter.get(), 1);
    }

    #[test]
    fn the_hit_rate_of_counts_near_the_top_of_u64_is_a_ratio() {
        let stats = CacheStats {
            hits: u64::MAX,
            misses: u64::MAX,
            ..CacheStats::default()
        };
        assert_eq!(stats.hit_rate(), 0.5);
        assert_eq!(CacheStats::default().hit_rate(), 0.0);
    }

    #[test]
    fn ended_threads_hand_their_slot_to_later_threads() {
        let _one_at_a_time = INDEXES.lock().unwrap_or_else(|e| e.into_inner());
        let counter = OwnedCounter::default();
        let before = NEXT_THREAD.load(Ordering::Relaxed);
        // One thread after another: each takes the slot (and the count) of one that ended.
        for _ in 0..200 {
            std::thread::scope(|s| {
                s.spawn(|| {
                    for _ in 0..100 {
                        counter.incr();
                    }
                });
            });
        }
        assert_eq!(counter.get(), 200 * 100);
        // Without reuse every thread would have drawn a new index; other tests' threads running
        // meanwhile may draw a few.
        let drawn = NEXT_THREAD.load(Ordering::Relaxed) - before;
        assert!(
            drawn < 64,
            "{drawn} new thread indexes for 200 threads in turn"
        );
    }
}
