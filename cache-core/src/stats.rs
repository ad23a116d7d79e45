//! Per-cache counters.
//!
//! Counters are striped over cache-line-padded slots picked per thread, so two cores counting
//! hits on the same cache do not fight over one cache line (a shared atomic costs more than the
//! whole lookup under contention).

use std::cell::Cell;

use crate::LatencySummary;
use crate::histogram::Histogram;
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

static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
fn stripe() -> usize {
    STRIPE.with(|s| {
        let v = s.get();
        if v != usize::MAX {
            return v;
        }
        let v = NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES;
        s.set(v);
        v
    })
}

impl StripedCounter {
    #[inline]
    pub(crate) fn incr(&self) {
        self.add(1);
    }

    #[inline]
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
    pub(crate) hits: StripedCounter,
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
    /// Callers that waited for another caller's computation instead of running the body.
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
    /// Calls whose body failed (`Err`, panic, hard timeout) that got a fail-safe value instead.
    #[serde(default)]
    pub fail_safe: u64,
    /// Body runs that failed: returned `Err`, panicked or passed the hard timeout.
    #[serde(default)]
    pub body_failures: u64,
    /// Calls that passed a soft or hard timeout.
    #[serde(default)]
    pub timeouts: u64,
    /// Latency of memory-tier lookups (one in 64 sampled).
    pub lookup_latency: LatencySummary,
    /// Latency of the wrapped function bodies (every run).
    pub body_latency: LatencySummary,
    /// The remote tier's counters, for caches that have one.
    pub remote: Option<crate::RemoteStats>,
}

impl CacheStats {
    /// `hits / (hits + misses)`, or 0 when nothing was looked up.
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}
