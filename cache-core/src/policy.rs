//! Per-cache policies: how long entries live, how many the memory tier keeps, what it evicts.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::{RefreshAhead, Tier};

/// Which entry the memory tier gives up when it is full.
///
/// All three keep the hit path free of locks: a hit only bumps a small counter in the entry, and
/// the bookkeeping happens on insert, under the cache's eviction lock.
///
/// ```
/// use cache_core::{Eviction, Policy};
///
/// assert_eq!(Eviction::default(), Eviction::S3Fifo);
/// let p = Policy::new().eviction(Eviction::Lru);
/// # drop(p);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Eviction {
    /// Least recently used, approximated by the CLOCK algorithm (one reference bit per entry,
    /// second chance on eviction), as most operating systems do for pages.
    Lru,
    /// Least frequently used: a saturating access counter per entry; eviction samples the five
    /// oldest candidates, evicts the least used and halves the others' counts (ageing), as
    /// Redis's `allkeys-lfu` does.
    Lfu,
    /// S3-FIFO (Yang et al., SOSP 2023): a small probationary queue, a main queue and a ghost
    /// list. Scan-resistant, and the best hit ratio of the three on skewed (Zipf) workloads.
    #[default]
    S3Fifo,
}

/// Computes an entry's weight in bytes for [`Policy::max_weight`].
///
/// ```
/// use cache_core::Weigher;
/// use std::sync::Arc;
///
/// let by_key: Weigher = Arc::new(|key, _value| key.len() as u64);
/// assert_eq!(by_key("user:1", &0_u32), 6);
/// ```
pub type Weigher = Arc<dyn Fn(&str, &(dyn Any + Send + Sync)) -> u64 + Send + Sync>;

/// The rules of one named cache.
///
/// # Examples
///
/// ```
/// use cache_core::{CacheManager, Eviction, Policy};
/// use std::time::Duration;
///
/// let manager = CacheManager::builder()
///     .cache("users", Policy::new().ttl_secs(1800).max_entries(10_000))
///     .cache("static", Policy::new().ttl(Duration::from_secs(86_400)).eviction(Eviction::Lfu))
///     .build();
/// # drop(manager);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct Policy {
    pub(crate) ttl: Option<Duration>,
    pub(crate) max_entries: usize,
    pub(crate) max_weight: Option<u64>,
    pub(crate) weigher: Option<Weigher>,
    pub(crate) eviction: Eviction,
    pub(crate) tier: Tier,
    pub(crate) l1_ttl: Option<Duration>,
    // Freshness (see `freshness.rs`).
    pub(crate) stale: Option<Duration>,
    pub(crate) fail_safe: Option<Duration>,
    pub(crate) fail_safe_throttle: Option<Duration>,
    pub(crate) refresh_ahead: RefreshAhead,
    pub(crate) jitter_pct: u8,
    pub(crate) soft_timeout: Option<Duration>,
    pub(crate) hard_timeout: Option<Duration>,
    // Distributed single flight (remote and hybrid caches); see `remote/lock.rs`.
    pub(crate) distributed_lock: bool,
    pub(crate) lock_ttl: Duration,
    pub(crate) lock_wait: Option<Duration>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("ttl", &self.ttl)
            .field("max_entries", &self.max_entries)
            .field("max_weight", &self.max_weight)
            .field("weigher", &self.weigher.as_ref().map(|_| "<fn>"))
            .field("eviction", &self.eviction)
            .field("tier", &self.tier)
            .field("l1_ttl", &self.l1_ttl)
            .field("stale", &self.stale)
            .field("fail_safe", &self.fail_safe)
            .field("fail_safe_throttle", &self.fail_safe_throttle)
            .field("refresh_ahead", &self.refresh_ahead)
            .field("jitter_pct", &self.jitter_pct)
            .field("soft_timeout", &self.soft_timeout)
            .field("hard_timeout", &self.hard_timeout)
            .field("distributed_lock", &self.distributed_lock)
            .field("lock_ttl", &self.lock_ttl)
            .field("lock_wait", &self.lock_wait_or_default())
            .finish()
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self::new()
    }
}

/// The default bound: enough for a service's hot set, small enough not to surprise anyone.
///
/// ```
/// assert_eq!(cache_core::Policy::new().max_entries_value(), cache_core::DEFAULT_MAX_ENTRIES);
/// ```
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// The default TTL of the distributed single-flight lock ([`Policy::lock_ttl`]): longer than
/// most bodies a cache fronts, short enough that a crashed holder delays the others briefly.
///
/// ```
/// use cache_core::{DEFAULT_LOCK_TTL, Policy};
///
/// assert_eq!(Policy::new().lock_ttl_value(), DEFAULT_LOCK_TTL);
/// ```
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(5);

impl Policy {
    /// The default policy: no TTL, at most [`DEFAULT_MAX_ENTRIES`] entries, S3-FIFO eviction.
    ///
    /// ```
    /// use cache_core::{DEFAULT_MAX_ENTRIES, Policy, Tier};
    ///
    /// let p = Policy::new();
    /// assert_eq!(p.ttl_value(), None);
    /// assert_eq!(p.max_entries_value(), DEFAULT_MAX_ENTRIES);
    /// assert_eq!(p.tier_value(), Tier::Memory);
    /// ```
    pub fn new() -> Self {
        Policy {
            ttl: None,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_weight: None,
            weigher: None,
            eviction: Eviction::default(),
            tier: Tier::default(),
            l1_ttl: None,
            stale: None,
            fail_safe: None,
            fail_safe_throttle: None,
            refresh_ahead: RefreshAhead::Off,
            jitter_pct: 0,
            soft_timeout: None,
            hard_timeout: None,
            distributed_lock: true,
            lock_ttl: DEFAULT_LOCK_TTL,
            lock_wait: None,
        }
    }

    /// Default time to live of entries (a function's own `ttl` wins).
    ///
    /// ```
    /// use cache_core::Policy;
    /// use std::time::Duration;
    ///
    /// let p = Policy::new().ttl(Duration::from_secs(90));
    /// assert_eq!(p.ttl_value(), Some(Duration::from_secs(90)));
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// [`Policy::ttl`] in whole seconds.
    ///
    /// ```
    /// use cache_core::Policy;
    /// use std::time::Duration;
    ///
    /// assert_eq!(Policy::new().ttl_secs(90).ttl_value(), Some(Duration::from_secs(90)));
    /// ```
    pub fn ttl_secs(self, secs: u64) -> Self {
        self.ttl(Duration::from_secs(secs))
    }

    /// Entries live until evicted or invalidated.
    ///
    /// ```
    /// use cache_core::Policy;
    ///
    /// assert_eq!(Policy::new().ttl_secs(90).no_ttl().ttl_value(), None);
    /// ```
    pub fn no_ttl(mut self) -> Self {
        self.ttl = None;
        self
    }

    /// The most entries the memory tier holds (at least 1).
    ///
    /// ```
    /// use cache_core::Policy;
    ///
    /// assert_eq!(Policy::new().max_entries(500).max_entries_value(), 500);
    /// assert_eq!(Policy::new().max_entries(0).max_entries_value(), 1);
    /// ```
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n.max(1);
        self
    }

    /// The most bytes the memory tier holds, as measured by the weigher. An entry heavier than
    /// this on its own is evicted as it is inserted, leaving the others in place.
    ///
    /// ```
    /// use cache_core::Policy;
    ///
    /// let p = Policy::new().max_weight(256 << 20); // 256 MiB, by the default weigher
    /// # drop(p);
    /// ```
    pub fn max_weight(mut self, bytes: u64) -> Self {
        self.max_weight = Some(bytes);
        self
    }

    /// How to weigh an entry. Without one, an entry weighs its key's length plus the shallow
    /// size of its value (`size_of_val`) plus 64 (the entry's own bookkeeping), which
    /// undercounts heap data such as `String`s: give a
    /// weigher that knows your types when `max_weight` matters. Hot keys preloaded from the
    /// remote tier are held as their encoded bytes until a read decodes them; those weigh their
    /// key's length plus the bytes' (plus 64), without the weigher, which cannot know them.
    ///
    /// ```
    /// use cache_core::Policy;
    ///
    /// let p = Policy::new().max_weight(64 << 20).weigher(|key, value| {
    ///     let body = value.downcast_ref::<String>().map_or(64, |s| s.len() as u64);
    ///     key.len() as u64 + body
    /// });
    /// # drop(p);
    /// ```
    pub fn weigher(
        mut self,
        f: impl Fn(&str, &(dyn Any + Send + Sync)) -> u64 + Send + Sync + 'static,
    ) -> Self {
        self.weigher = Some(Arc::new(f));
        self
    }

    /// The eviction strategy.
    ///
    /// ```
    /// use cache_core::{CacheManager, Eviction, Policy};
    ///
    /// let manager = CacheManager::builder()
    ///     .cache("scans", Policy::new().eviction(Eviction::Lru))
    ///     .build();
    /// assert_eq!(manager.cache("scans").eviction(), Eviction::Lru);
    /// ```
    pub fn eviction(mut self, e: Eviction) -> Self {
        self.eviction = e;
        self
    }

    /// Where entries live: memory (default), the remote backend, or both (L1 + L2). A remote or
    /// hybrid tier needs a backend, given with
    /// [`CacheManagerBuilder::remote`](crate::CacheManagerBuilder::remote); without one the
    /// cache stays in memory and says so in a warning.
    ///
    /// ```
    /// use cache_core::{CacheManager, Policy, Tier};
    ///
    /// // No backend configured: the cache stays in memory.
    /// let manager = CacheManager::builder()
    ///     .cache("users", Policy::new().tier(Tier::Hybrid))
    ///     .build();
    /// assert_eq!(manager.policy("users").tier_value(), Tier::Hybrid);
    /// assert_eq!(manager.cache("users").tier(), Tier::Memory);
    /// ```
    pub fn tier(mut self, tier: Tier) -> Self {
        self.tier = tier;
        self
    }

    /// For [`Tier::Hybrid`]: a shorter TTL for the memory copy than for the remote one (for
    /// example 24 h in memory, 7 days in Redis). Never longer than the entry's remaining TTL.
    /// A memory copy that ends before its entry is not kept for stale or fail-safe windows nor
    /// refreshed ahead: past it, the next read fetches the value from Redis.
    ///
    /// ```
    /// use cache_core::{Policy, Tier};
    /// use std::time::Duration;
    ///
    /// let day = Duration::from_secs(86_400);
    /// let p = Policy::new().tier(Tier::Hybrid).ttl(7 * day).l1_ttl(day);
    /// # drop(p);
    /// ```
    pub fn l1_ttl(mut self, ttl: Duration) -> Self {
        self.l1_ttl = Some(ttl);
        self
    }

    /// Stale-while-revalidate: for `window` past its TTL an entry is served at once while one
    /// background task refreshes it. Runs in the background only for `#[cached]` functions that
    /// name `stale`, `refresh_ahead` or `soft_timeout` themselves (the refresh outlives the call,
    /// which the macro checks only when asked); for other calls the window is a fail-safe
    /// window. See `docs/freshness.md`.
    ///
    /// ```
    /// use cache_core::Policy;
    /// use std::time::Duration;
    ///
    /// let p = Policy::new().ttl_secs(60).stale(Duration::from_secs(600));
    /// # drop(p);
    /// ```
    pub fn stale(mut self, window: Duration) -> Self {
        self.stale = Some(window).filter(|w| !w.is_zero());
        self
    }

    /// Fail-safe: for `window` past its TTL an entry is kept, and a call whose body fails
    /// (`Err`, panic or timeout) returns it instead of the failure; it is then served as fresh for
    /// the [throttle](Policy::fail_safe_throttle).
    ///
    /// ```
    /// use cache_core::Policy;
    /// use std::time::Duration;
    ///
    /// let p = Policy::new()
    ///     .ttl_secs(60)
    ///     .fail_safe(Duration::from_secs(3600))
    ///     .fail_safe_throttle(Duration::from_secs(10));
    /// # drop(p);
    /// ```
    pub fn fail_safe(mut self, window: Duration) -> Self {
        self.fail_safe = Some(window).filter(|w| !w.is_zero());
        self
    }

    /// How long a fail-safe value is served as fresh after a failure before the body is tried
    /// again (default 30 s, never past the fail-safe window).
    ///
    /// ```
    /// use cache_core::Policy;
    /// use std::time::Duration;
    ///
    /// let p = Policy::new()
    ///     .fail_safe(Duration::from_secs(3600))
    ///     .fail_safe_throttle(Duration::from_secs(5));
    /// # drop(p);
    /// ```
    pub fn fail_safe_throttle(mut self, throttle: Duration) -> Self {
        self.fail_safe_throttle = Some(throttle);
        self
    }

    /// Refreshes entries in the background before they expire; see [`RefreshAhead`]. Like
    /// [`Policy::stale`], only for `#[cached]` functions that name `stale`, `refresh_ahead` or
    /// `soft_timeout` themselves.
    ///
    /// ```
    /// use cache_core::{Policy, RefreshAhead};
    ///
    /// let p = Policy::new().ttl_secs(300).refresh_ahead(RefreshAhead::after(0.8));
    /// # drop(p);
    /// ```
    pub fn refresh_ahead(mut self, mode: RefreshAhead) -> Self {
        self.refresh_ahead = mode;
        self
    }

    /// Shortens each entry's TTL by a random 0..`percent`% so entries written together do not
    /// expire together.
    ///
    /// ```
    /// use cache_core::Policy;
    ///
    /// let p = Policy::new().ttl_secs(600).jitter(10); // 540..=600 s
    /// # drop(p);
    /// ```
    pub fn jitter(mut self, percent: u8) -> Self {
        self.jitter_pct = percent.min(100);
        self
    }

    /// Soft timeout of a cached function's body: past it, a caller that has a stale or fail-safe
    /// value gets that value and the body finishes in the background (async `#[cached]` functions
    /// that name `stale`, `refresh_ahead` or `soft_timeout` themselves, as for [`Policy::stale`]).
    ///
    /// ```
    /// use cache_core::Policy;
    /// use std::time::Duration;
    ///
    /// let p = Policy::new()
    ///     .stale(Duration::from_secs(600))
    ///     .soft_timeout(Duration::from_millis(200));
    /// # drop(p);
    /// ```
    pub fn soft_timeout(mut self, timeout: Duration) -> Self {
        self.soft_timeout = Some(timeout);
        self
    }

    /// Hard timeout of a cached async function's body: past it, the caller gets its fail-safe
    /// value or, for a function returning `Result<_, E>` with `E: From<cache_core::TimedOut>`,
    /// a timeout error. Functions of other return types ignore a policy's hard timeout (their
    /// `#[cached(timeout = ..)]` is a compile error).
    ///
    /// ```
    /// use cache_core::Policy;
    /// use std::time::Duration;
    ///
    /// let p = Policy::new().hard_timeout(Duration::from_secs(2));
    /// # drop(p);
    /// ```
    pub fn hard_timeout(mut self, timeout: Duration) -> Self {
        self.hard_timeout = Some(timeout);
        self
    }

    /// Distributed single flight for a [`Tier::Remote`] or [`Tier::Hybrid`] cache (on by
    /// default; no effect on a memory cache): on a miss, one instance computes the value under a
    /// short lock in the remote backend while the others wait for it, so a cold key runs its
    /// body once across all instances instead of once per instance. Turn it off for cheap bodies,
    /// where the lock's round trips cost more than computing twice.
    ///
    /// ```
    /// use cache_core::{Policy, Tier};
    ///
    /// let p = Policy::new().tier(Tier::Hybrid).distributed_lock(false);
    /// assert!(!p.distributed_lock_value());
    /// assert!(Policy::new().distributed_lock_value());
    /// ```
    pub fn distributed_lock(mut self, on: bool) -> Self {
        self.distributed_lock = on;
        self
    }

    /// How long the distributed lock lives ([`DEFAULT_LOCK_TTL`] by default; at least 1 ms). A
    /// holder slower than this loses the lock, and another instance may compute the same value
    /// meanwhile; a crashed holder delays the others at most this long. Make it longer than the
    /// body usually takes.
    ///
    /// ```
    /// use cache_core::Policy;
    /// use std::time::Duration;
    ///
    /// let p = Policy::new().lock_ttl(Duration::from_secs(30));
    /// assert_eq!(p.lock_ttl_value(), Duration::from_secs(30));
    /// // The wait follows the TTL unless set (see `lock_wait`).
    /// assert_eq!(p.lock_wait_value(), Duration::from_secs(60));
    /// ```
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl.max(Duration::from_millis(1));
        self
    }

    /// The longest a caller waits for another instance's value before computing it itself
    /// (twice [`lock_ttl`](Self::lock_ttl) by default: enough for a crashed holder's lock to
    /// expire and one successor to compute, so a crash costs one extra body run, not one per
    /// instance). `Duration::ZERO` never waits: a held lock means "compute now".
    ///
    /// ```
    /// use cache_core::Policy;
    /// use std::time::Duration;
    ///
    /// let p = Policy::new().lock_wait(Duration::from_millis(500));
    /// assert_eq!(p.lock_wait_value(), Duration::from_millis(500));
    /// ```
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = Some(wait);
        self
    }

    /// Whether distributed single flight is on.
    ///
    /// ```
    /// use cache_core::Policy;
    ///
    /// assert!(Policy::new().distributed_lock_value());
    /// assert!(!Policy::new().distributed_lock(false).distributed_lock_value());
    /// ```
    pub fn distributed_lock_value(&self) -> bool {
        self.distributed_lock
    }

    /// The distributed lock's TTL.
    ///
    /// ```
    /// use cache_core::{DEFAULT_LOCK_TTL, Policy};
    ///
    /// assert_eq!(Policy::new().lock_ttl_value(), DEFAULT_LOCK_TTL);
    /// ```
    pub fn lock_ttl_value(&self) -> Duration {
        self.lock_ttl
    }

    /// The bounded wait for another instance's value.
    ///
    /// ```
    /// use cache_core::{DEFAULT_LOCK_TTL, Policy};
    ///
    /// assert_eq!(Policy::new().lock_wait_value(), 2 * DEFAULT_LOCK_TTL);
    /// ```
    pub fn lock_wait_value(&self) -> Duration {
        self.lock_wait_or_default()
    }

    pub(crate) fn lock_wait_or_default(&self) -> Duration {
        self.lock_wait.unwrap_or(self.lock_ttl.saturating_mul(2))
    }

    /// The tier.
    ///
    /// ```
    /// use cache_core::{Policy, Tier};
    ///
    /// assert_eq!(Policy::new().tier(Tier::Remote).tier_value(), Tier::Remote);
    /// ```
    pub fn tier_value(&self) -> Tier {
        self.tier
    }

    /// The default TTL, if any.
    ///
    /// ```
    /// use cache_core::Policy;
    /// use std::time::Duration;
    ///
    /// assert_eq!(Policy::new().ttl_secs(5).ttl_value(), Some(Duration::from_secs(5)));
    /// ```
    pub fn ttl_value(&self) -> Option<Duration> {
        self.ttl
    }

    /// The entry bound.
    ///
    /// ```
    /// use cache_core::{DEFAULT_MAX_ENTRIES, Policy};
    ///
    /// assert_eq!(Policy::new().max_entries_value(), DEFAULT_MAX_ENTRIES);
    /// ```
    pub fn max_entries_value(&self) -> usize {
        self.max_entries
    }
}
