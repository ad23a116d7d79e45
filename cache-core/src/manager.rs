//! [`CacheManager`]: the named caches of one application, their policies and their clock.
//!
//! The macros reach the *current* manager: the one a test scoped with [`CacheManager::scope`] /
//! [`CacheManager::scope_sync`] if any, otherwise the global one, which is what
//! [`CacheManagerBuilder::install`] set or, when nothing was installed, the embedded default.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crate::alerts::{AlertRules, AlertState};
use crate::events::EventRegistry;
use crate::memory::MemoryStore;
use crate::remote::ResilientTier;
use crate::remote::backplane::{
    self, Backlog, Backplane, BackplaneSink, BackplaneStats, Invalidation, Message, Next, Pushed,
};
use crate::remote::resilient::Breaker;
use crate::remote::{RemoteBackend, Resilience};
use crate::store::Store;
use crate::{Cache, CacheStats, Clock, Policy, Tier, Warmer};

static GLOBAL: OnceLock<CacheManager> = OnceLock::new();

/// How many scopes are active in the process; while zero, finding the current manager costs one
/// atomic load and skips the thread- and task-local look-ups.
static ACTIVE_SCOPES: AtomicUsize = AtomicUsize::new(0);

/// Numbers scopes in the order they are entered: with both an async scope (task-local) and a
/// sync one (thread-local) in force, the one entered last is the innermost and wins.
static SCOPE_ORDER: AtomicU64 = AtomicU64::new(0);

fn next_scope_order() -> u64 {
    SCOPE_ORDER.fetch_add(1, Ordering::Relaxed)
}

tokio::task_local! {
    static TASK_MANAGER: (CacheManager, u64);
}

thread_local! {
    static THREAD_MANAGER: RefCell<Option<(CacheManager, u64)>> = const { RefCell::new(None) };
}

/// The caches of an application.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use cache_core::{CacheManager, Policy};
///
/// let manager = CacheManager::builder()
///     .cache("users", Policy::new().ttl_secs(1800).max_entries(10_000))
///     .build();
/// let users = manager.cache("users");
/// users.set("user:7", "Ada".to_string()).await;
/// assert_eq!(users.get::<String>("user:7").await.as_deref(), Some("Ada"));
/// # });
/// ```
#[derive(Clone)]
pub struct CacheManager {
    inner: Arc<Inner>,
}

struct Inner {
    default_policy: Policy,
    policies: HashMap<String, Policy>,
    caches: RwLock<HashMap<Arc<str>, Arc<Store>>>,
    clock: Clock,
    events: RwLock<EventRegistry>,
    remote: Option<Arc<dyn RemoteBackend>>,
    /// One breaker for the backend: its caches share a connection and fail together.
    breaker: Arc<Breaker>,
    /// The backend's backplane, when it offers one, and this instance's id on it. Subscribed to
    /// only when some cache is hybrid.
    backplane: Option<(Arc<dyn Backplane>, u128)>,
    /// Receives backplane messages; the subscription holds it weakly and ends with the manager.
    subscriber: OnceLock<Arc<Subscriber>>,
    warmers: Vec<Warmer>,
    alerts: Option<Mutex<AlertState>>,
    /// Never sent on: dropped with the manager, which wakes the background tasks that wait on
    /// it (see [`CacheManager::dropped`]).
    alive: tokio::sync::watch::Sender<()>,
}

impl fmt::Debug for CacheManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheManager")
            .field("caches", &self.cache_names())
            .field("clock", &self.inner.clock)
            .finish()
    }
}

impl Default for CacheManager {
    fn default() -> Self {
        Self::builder().build()
    }
}

/// The global manager was already set (by an earlier `install`, or by first use of a cache).
///
/// ```
/// use cache_core::CacheManager;
///
/// let first = CacheManager::builder().install();
/// assert!(first.is_ok());
/// // The global manager is in place: a second install hands it back as the error.
/// let again = CacheManager::builder().install().unwrap_err();
/// assert!(again.to_string().contains("already in place"));
/// # drop(again.0);
/// ```
#[derive(Debug, Clone)]
pub struct AlreadyInstalled(pub CacheManager);

impl fmt::Display for AlreadyInstalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a global cache manager is already in place: call `install()` once, at start, before any cached function runs",
        )
    }
}

impl std::error::Error for AlreadyInstalled {}

/// Configures a [`CacheManager`].
///
/// ```
/// use cache_core::{CacheManager, Policy};
///
/// let manager = CacheManager::builder()
///     .default_policy(Policy::new().ttl_secs(60))
///     .cache("users", Policy::new().ttl_secs(1800))
///     .build();
/// assert_eq!(manager.policy("users").ttl_value().unwrap().as_secs(), 1800);
/// ```
#[derive(Default)]
#[must_use]
pub struct CacheManagerBuilder {
    default_policy: Policy,
    policies: HashMap<String, Policy>,
    clock: Clock,
    remote: Option<Arc<dyn RemoteBackend>>,
    resilience: Resilience,
    warmers: Vec<Warmer>,
    alerts: Option<AlertRules>,
}

impl fmt::Debug for CacheManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheManagerBuilder")
            .field("default_policy", &self.default_policy)
            .field("policies", &self.policies)
            .field("clock", &self.clock)
            .field("remote", &self.remote.as_ref().map(|r| r.describe()))
            .field("resilience", &self.resilience)
            .field("warmers", &self.warmers)
            .field("alerts", &self.alerts)
            .finish()
    }
}

impl CacheManagerBuilder {
    /// The policy of a named cache.
    ///
    /// ```
    /// use cache_core::{CacheManager, Policy};
    ///
    /// let manager = CacheManager::builder()
    ///     .cache("users", Policy::new().max_entries(500))
    ///     .build();
    /// assert_eq!(manager.policy("users").max_entries_value(), 500);
    /// ```
    pub fn cache(mut self, name: impl Into<String>, policy: Policy) -> Self {
        self.policies.insert(name.into(), policy);
        self
    }

    /// The policy of caches not named with [`CacheManagerBuilder::cache`].
    ///
    /// ```
    /// use cache_core::{CacheManager, Policy};
    ///
    /// let manager = CacheManager::builder()
    ///     .default_policy(Policy::new().ttl_secs(120))
    ///     .build();
    /// assert_eq!(manager.policy("anything").ttl_value().unwrap().as_secs(), 120);
    /// ```
    pub fn default_policy(mut self, policy: Policy) -> Self {
        self.default_policy = policy;
        self
    }

    /// The clock deciding expiry (default: [`Clock::Coarse`]).
    ///
    /// ```
    /// use cache_core::{CacheManager, Clock};
    ///
    /// let manager = CacheManager::builder().clock(Clock::manual()).build();
    /// assert!(matches!(manager.clock(), Clock::Manual(_)));
    /// ```
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The remote backend (for example `cache_redis::RedisBackend`) behind caches whose policy
    /// has [`Tier::Remote`](crate::Tier::Remote) or [`Tier::Hybrid`](crate::Tier::Hybrid).
    ///
    /// ```
    /// use cache_core::testing::MemoryBackend; // cache_redis::RedisBackend in production
    /// use cache_core::{CacheManager, Policy, Tier};
    ///
    /// let manager = CacheManager::builder()
    ///     .remote(MemoryBackend::new())
    ///     .cache("users", Policy::new().tier(Tier::Remote))
    ///     .build();
    /// assert_eq!(manager.cache("users").tier(), Tier::Remote);
    /// ```
    pub fn remote(mut self, backend: impl RemoteBackend) -> Self {
        self.remote = Some(Arc::new(backend));
        self
    }

    /// Timeouts and circuit breaker of the remote backend.
    ///
    /// ```
    /// use cache_core::{CacheManager, Resilience};
    /// use std::time::Duration;
    ///
    /// let manager = CacheManager::builder()
    ///     .resilience(Resilience::new().timeout(Duration::from_millis(50)).failure_threshold(3))
    ///     .build();
    /// # drop(manager);
    /// ```
    pub fn resilience(mut self, resilience: Resilience) -> Self {
        self.resilience = resilience;
        self
    }

    /// Adds a warmer; see [`Warmer`].
    ///
    /// ```
    /// use cache_core::{CacheManager, Warmer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let manager = CacheManager::builder()
    ///     .warmer(Warmer::new("nothing", || async { Ok::<_, String>(0) }))
    ///     .build();
    /// assert_eq!(manager.warm().await.len(), 1);
    /// # });
    /// ```
    pub fn warmer(mut self, warmer: Warmer) -> Self {
        self.warmers.push(warmer);
        self
    }

    /// Alert thresholds; see [`AlertRules`].
    ///
    /// ```
    /// use cache_core::{AlertRules, CacheManager};
    ///
    /// let manager = CacheManager::builder()
    ///     .alerts(AlertRules::new().min_hit_rate(0.8))
    ///     .build();
    /// assert!(manager.check_alerts().is_empty(), "no window has ended yet");
    /// ```
    pub fn alerts(mut self, rules: AlertRules) -> Self {
        self.alerts = Some(rules);
        self
    }

    /// A manager for explicit use or for [`CacheManager::scope`].
    ///
    /// ```
    /// let manager = cache_core::CacheManager::builder().build();
    /// assert!(manager.cache_names().is_empty(), "caches are created on first use");
    /// ```
    pub fn build(self) -> CacheManager {
        let any_hybrid = self.default_policy.tier == Tier::Hybrid
            || self.policies.values().any(|p| p.tier == Tier::Hybrid);
        // Every manager with a backend that offers a backplane publishes its invalidations, so
        // that an admin process or a worker with only remote caches (or none configured) reaches
        // the memory copies of the instances that have hybrid caches. Only a manager with memory
        // copies of remote values to keep honest subscribes.
        let backplane = self
            .remote
            .as_ref()
            .and_then(|r| r.backplane())
            .map(|b| (b, new_origin()));
        let manager = CacheManager {
            inner: Arc::new(Inner {
                default_policy: self.default_policy,
                policies: self.policies,
                caches: RwLock::new(HashMap::new()),
                clock: self.clock,
                events: RwLock::new(EventRegistry::default()),
                breaker: Arc::new(Breaker::new(self.resilience)),
                remote: self.remote,
                backplane,
                subscriber: OnceLock::new(),
                warmers: self.warmers,
                alerts: self.alerts.map(AlertState::new),
                alive: tokio::sync::watch::Sender::new(()),
            }),
        };
        if any_hybrid {
            manager.subscribe();
        }
        if manager.inner.alerts.is_some() {
            crate::alerts::watch(&manager);
        }
        manager
    }

    /// Builds the manager and makes it the global one that cached functions use.
    ///
    /// Fails if a global manager is already in place, including the embedded default that the
    /// first cached call creates: install at the start of `main`.
    ///
    /// ```
    /// use cache_core::{CacheManager, Policy};
    ///
    /// CacheManager::builder()
    ///     .cache("users", Policy::new().ttl_secs(1800))
    ///     .install()
    ///     .expect("installed once, at start");
    /// ```
    pub fn install(self) -> Result<CacheManager, AlreadyInstalled> {
        let manager = self.build();
        let mut installed = false;
        let global = GLOBAL.get_or_init(|| {
            installed = true;
            manager.clone()
        });
        if installed {
            Ok(manager)
        } else {
            Err(AlreadyInstalled(global.clone()))
        }
    }
}

impl CacheManager {
    /// Starts configuring a manager.
    ///
    /// ```
    /// use cache_core::{CacheManager, Policy};
    ///
    /// let manager = CacheManager::builder().cache("users", Policy::new()).build();
    /// # drop(manager);
    /// ```
    pub fn builder() -> CacheManagerBuilder {
        CacheManagerBuilder::default()
    }

    /// The global manager: the installed one, or the embedded default.
    ///
    /// ```
    /// use cache_core::CacheManager;
    ///
    /// // Nothing installed: the embedded default, the same one every time.
    /// let a = CacheManager::global().cache("greetings");
    /// a.blocking().set("hello", "world".to_string());
    /// let b = CacheManager::global().cache("greetings");
    /// assert_eq!(b.blocking().get::<String>("hello").as_deref(), Some("world"));
    /// ```
    pub fn global() -> &'static CacheManager {
        GLOBAL.get_or_init(CacheManager::default)
    }

    /// The manager cached functions use here: the innermost scope's, or the global one.
    ///
    /// ```
    /// use cache_core::CacheManager;
    ///
    /// let scoped = CacheManager::builder().build();
    /// scoped.scope_sync(|| CacheManager::current().cache("inside"));
    /// assert_eq!(scoped.cache_names(), ["inside"]);
    /// ```
    pub fn current() -> CacheManager {
        with_current(|m, _| m.clone())
    }

    /// The handle of a named cache, created with its policy on first use.
    ///
    /// ```
    /// let manager = cache_core::CacheManager::builder().build();
    /// let users = manager.cache("users");
    /// users.blocking().set("user:1", 1_u32);
    /// assert_eq!(manager.cache("users").blocking().get::<u32>("user:1"), Some(1));
    /// ```
    pub fn cache(&self, name: &str) -> Cache {
        Cache::from_store(self.store(name))
    }

    pub(crate) fn store(&self, name: &str) -> Arc<Store> {
        if let Some(store) = self
            .inner
            .caches
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return store.clone();
        }
        let mut caches = self.inner.caches.write().unwrap_or_else(|e| e.into_inner());
        caches
            .entry(Arc::from(name))
            .or_insert_with_key(|name| {
                let policy = self
                    .inner
                    .policies
                    .get(&**name)
                    .unwrap_or(&self.inner.default_policy)
                    .clone();
                let wants_remote = policy.tier.uses_remote();
                let memory = MemoryStore::new(name.clone(), policy, self.inner.clock.clone());
                let remote = match (&self.inner.remote, wants_remote) {
                    (Some(backend), true) => Some(Arc::new(ResilientTier::new(backend.tier(name), self.inner.breaker.clone()))),
                    (None, true) => {
                        tracing::warn!(cache = %name, "cache policy asks for a remote tier but no backend is configured; using memory only");
                        None
                    }
                    _ => None,
                };
                let mut store = Store::new(memory, remote, self.inner.remote.clone());
                if store.remote.is_some() {
                    store.backplane = self.inner.backplane.clone();
                }
                Arc::new(store)
            })
            .clone()
    }

    /// The store an invalidation of the cache `name` acts on: the cache if it exists here, else
    /// a new one only if it has a remote tier, which another instance or an earlier process may
    /// have filled. A memory-only cache that does not exist holds nothing to remove; creating one
    /// for each name (about 80 KiB of counters, hot-key sketch and maps) let invalidations of
    /// names that are never used grow the manager without bound.
    pub(crate) fn store_to_invalidate(&self, name: &str) -> Option<Arc<Store>> {
        let existing = self
            .inner
            .caches
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        if existing.is_some() {
            return existing;
        }
        let remote = self.inner.remote.is_some() && self.policy(name).tier.uses_remote();
        remote.then(|| self.store(name))
    }

    pub(crate) fn stores(&self) -> Vec<Arc<Store>> {
        let caches = self.inner.caches.read().unwrap_or_else(|e| e.into_inner());
        let mut stores: Vec<_> = caches.values().cloned().collect();
        stores.sort_by(|a, b| a.name.cmp(&b.name));
        stores
    }

    pub(crate) fn events(&self) -> std::sync::RwLockReadGuard<'_, EventRegistry> {
        self.inner.events.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn events_mut(&self) -> std::sync::RwLockWriteGuard<'_, EventRegistry> {
        self.inner.events.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Names of the caches created so far, sorted.
    ///
    /// ```
    /// let manager = cache_core::CacheManager::builder().build();
    /// manager.cache("users");
    /// manager.cache("pages");
    /// assert_eq!(manager.cache_names(), ["pages", "users"]);
    /// ```
    pub fn cache_names(&self) -> Vec<String> {
        self.stores().iter().map(|s| s.name.to_string()).collect()
    }

    /// The policy a cache of this name has (or would have).
    ///
    /// ```
    /// use cache_core::{CacheManager, Policy};
    ///
    /// let manager = CacheManager::builder()
    ///     .cache("users", Policy::new().ttl_secs(30))
    ///     .build();
    /// assert_eq!(manager.policy("users").ttl_value().unwrap().as_secs(), 30);
    /// assert_eq!(manager.policy("other").ttl_value(), None); // the default policy
    /// ```
    pub fn policy(&self, name: &str) -> Policy {
        self.inner
            .policies
            .get(name)
            .unwrap_or(&self.inner.default_policy)
            .clone()
    }

    /// The remote backend, if one is configured.
    pub(crate) fn remote(&self) -> Option<&Arc<dyn RemoteBackend>> {
        self.inner.remote.as_ref()
    }

    /// Runs a backend-wide remote operation under the backend's timeout and breaker.
    pub(crate) async fn run_remote<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, crate::RemoteError>>,
    ) -> Result<T, crate::RemoteError> {
        self.inner.breaker.run_standalone(op).await
    }

    /// Publishes an invalidation on the backplane (when there is one).
    pub(crate) async fn announce(&self, invalidation: Invalidation) {
        if let Some((backplane, origin)) = &self.inner.backplane {
            let message = Message {
                origin: *origin,
                invalidation,
            }
            .encode();
            let _ = self.run_remote(backplane.publish(&message)).await;
        }
    }

    fn subscribe(&self) {
        let Some((backplane, origin)) = &self.inner.backplane else {
            return;
        };
        let manager = Arc::downgrade(&self.inner);
        let counters = Arc::new(SubscriberCounters::default());
        let subscriber = Arc::new(Subscriber {
            backlog: start_applier(manager.clone(), counters.clone()),
            manager,
            origin: *origin,
            counters,
        });
        let sink: Arc<dyn BackplaneSink> = subscriber.clone();
        let _ = self.inner.subscriber.set(subscriber);
        backplane::start(backplane, Arc::downgrade(&sink));
    }

    /// How long the startup helpers that fill memory tiers ([`CacheManager::warm`], warmers,
    /// [`CacheManager::preload_hot_keys`]) wait for the first subscription before going ahead
    /// without it (Redis down: they must not hold a start-up longer).
    pub(crate) const FIRST_SUBSCRIPTION_WAIT: std::time::Duration =
        std::time::Duration::from_secs(5);

    /// Waits, at most `limit`, until the backplane has subscribed for the first time; `true`
    /// once it has, or at once when this manager has no backplane, `false` if `limit` passed
    /// first (Redis unreachable: the caches still answer, see `docs/hybrid.md`).
    ///
    /// The first subscription clears the memory tier of every cache with a remote tier, since
    /// what it held could have missed invalidations, and a value computed across that moment is
    /// returned to its callers but not stored, in memory or in Redis. A process that wants its
    /// first calls' values kept (a benchmark, a warm-up, a readiness probe that waits for the
    /// backplane before taking traffic) awaits this first. Calls made before it are still
    /// correct; only their values may be computed again.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::testing::MemoryBackend;
    /// use cache_core::{CacheManager, Policy, Tier};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let manager = CacheManager::builder()
    ///     .remote(MemoryBackend::new())
    ///     .cache("users", Policy::new().tier(Tier::Hybrid))
    ///     .build();
    /// assert!(manager.backplane_subscribed(Duration::from_secs(5)).await);
    /// assert_eq!(manager.backplane_stats().unwrap().subscriptions, 1);
    ///
    /// // Without a remote tier there is no backplane to wait for.
    /// let local = CacheManager::builder().build();
    /// assert!(local.backplane_subscribed(Duration::ZERO).await);
    /// # });
    /// ```
    pub async fn backplane_subscribed(&self, limit: std::time::Duration) -> bool {
        self.first_subscription().wait(limit).await
    }

    /// What [`CacheManager::backplane_subscribed`] waits on, without keeping the manager alive
    /// (for tasks that hold only a weak reference to it).
    pub(crate) fn first_subscription(&self) -> FirstSubscription {
        FirstSubscription(self.inner.subscriber.get().cloned())
    }

    /// The backplane subscription's counters, when this manager has one (a hybrid cache and a backend that
    /// offers a backplane).
    ///
    /// ```
    /// // A memory-only manager has no backplane.
    /// assert!(cache_core::CacheManager::builder().build().backplane_stats().is_none());
    /// ```
    pub fn backplane_stats(&self) -> Option<BackplaneStats> {
        self.inner.subscriber.get().map(|s| s.counters.snapshot())
    }

    /// Runs a backend-wide bulk invalidation under the bulk timeout and the breaker.
    pub(crate) async fn run_remote_bulk<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, crate::RemoteError>>,
    ) -> Result<T, crate::RemoteError> {
        self.inner.breaker.run_bulk(op).await
    }

    /// Every cache this manager knows: those configured in the builder and those created since.
    pub(crate) fn all_stores(&self) -> Vec<Arc<Store>> {
        for name in self.inner.policies.keys() {
            self.store(name);
        }
        self.stores()
    }

    pub(crate) fn alert_state(&self) -> Option<&Mutex<AlertState>> {
        self.inner.alerts.as_ref()
    }

    pub(crate) fn warmers(&self) -> &[Warmer] {
        &self.inner.warmers
    }

    /// Resolves once this manager is dropped, without keeping it alive: a background task that
    /// sleeps between runs (an interval warmer) waits on it too, so it ends with the manager
    /// rather than at its next wake-up.
    pub(crate) fn dropped(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        let mut alive = self.inner.alive.subscribe();
        async move {
            // Nothing is ever sent: `changed` returns only when the sender (the manager) is gone.
            while alive.changed().await.is_ok() {}
        }
    }

    pub(crate) fn downgrade(&self) -> WeakManager {
        WeakManager(Arc::downgrade(&self.inner))
    }

    pub(crate) fn resilience(&self) -> &Resilience {
        self.inner.breaker.settings()
    }

    pub(crate) fn breaker_state(&self) -> crate::BreakerState {
        self.inner.breaker.state()
    }

    /// The clock this manager's caches expire entries by.
    ///
    /// ```
    /// use cache_core::{CacheManager, Clock};
    ///
    /// assert!(matches!(CacheManager::builder().build().clock(), Clock::Coarse));
    /// ```
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Stats of every cache created so far, sorted by name.
    ///
    /// ```
    /// let manager = cache_core::CacheManager::builder().build();
    /// manager.cache("users").blocking().set("a", 1_u8);
    /// manager.cache("pages").blocking().get::<u8>("a");
    /// let stats = manager.stats();
    /// assert_eq!((stats[0].name.as_str(), stats[0].misses), ("pages", 1));
    /// assert_eq!((stats[1].name.as_str(), stats[1].inserts), ("users", 1));
    /// ```
    pub fn stats(&self) -> Vec<CacheStats> {
        self.stores().iter().map(|s| s.stats()).collect()
    }

    /// Zeroes every cache's counters, its remote tier's included (entries, weight and the
    /// breaker's state stay).
    ///
    /// ```
    /// let manager = cache_core::CacheManager::builder().build();
    /// let users = manager.cache("users");
    /// users.blocking().set("a", 1_u8);
    /// manager.reset_stats();
    /// assert_eq!(users.stats().inserts, 0);
    /// assert_eq!(users.len(), 1, "entries stay");
    /// ```
    pub fn reset_stats(&self) {
        // Under the alert state's lock, whose window then counts from zero: against the counts
        // at its start, a reset would hide the window's lookups until they passed those counts.
        let alerts = self
            .alert_state()
            .map(|state| state.lock().unwrap_or_else(|e| e.into_inner()));
        for store in self.stores() {
            store.reset_stats();
        }
        if let Some(mut alerts) = alerts {
            alerts.restart_counts();
        }
    }

    /// Sweeps expired entries now instead of waiting for the maintenance thread (tests use this
    /// after moving a manual or paused clock).
    ///
    /// ```
    /// use cache_core::{CacheManager, Clock, Policy};
    /// use std::time::Duration;
    ///
    /// let clock = Clock::manual();
    /// let manager = CacheManager::builder()
    ///     .clock(clock.clone())
    ///     .default_policy(Policy::new().ttl_secs(10))
    ///     .build();
    /// manager.cache("c").blocking().set("k", 1_u8);
    /// clock.advance(Duration::from_secs(11));
    /// manager.run_pending_maintenance();
    /// assert_eq!(manager.cache("c").len(), 0);
    /// ```
    pub fn run_pending_maintenance(&self) {
        for store in self.stores() {
            while store.memory.sweep_expired(usize::MAX) > 0 {}
        }
    }

    /// Runs `fut` with this manager as the current one, so cached functions called inside it (on
    /// this task) use this manager's caches. Parallel tests each scope their own manager and share
    /// nothing. Tasks spawned inside do not inherit the scope: wrap their futures too.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use cache_core::{cached, CacheManager};
    ///
    /// #[cached]
    /// async fn answer() -> u32 { 42 }
    ///
    /// let manager = CacheManager::builder().build();
    /// manager.scope(async { answer().await }).await;
    /// assert_eq!(manager.stats()[0].inserts, 1);
    /// # });
    /// ```
    pub fn scope<F: Future>(&self, fut: F) -> impl Future<Output = F::Output> + use<F> {
        let manager = self.clone();
        async move {
            let _active = ScopeCount::enter();
            TASK_MANAGER.scope((manager, next_scope_order()), fut).await
        }
    }

    /// Runs `f` with this manager as the current one on this thread.
    ///
    /// ```
    /// use cache_core::{cached, CacheManager};
    ///
    /// #[cached]
    /// fn answer() -> u32 { 42 }
    ///
    /// let manager = CacheManager::builder().build();
    /// assert_eq!(manager.scope_sync(answer), 42);
    /// assert_eq!(manager.stats()[0].inserts, 1);
    /// ```
    pub fn scope_sync<R>(&self, f: impl FnOnce() -> R) -> R {
        let _active = ScopeCount::enter();
        let previous =
            THREAD_MANAGER.with(|t| t.borrow_mut().replace((self.clone(), next_scope_order())));
        struct Restore(Option<(CacheManager, u64)>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                THREAD_MANAGER.with(|t| *t.borrow_mut() = previous);
            }
        }
        let _restore = Restore(previous);
        f()
    }
}

/// A manager that does not keep its caches alive (for background tasks).
pub(crate) struct WeakManager(std::sync::Weak<Inner>);

impl WeakManager {
    pub(crate) fn upgrade(&self) -> Option<CacheManager> {
        self.0.upgrade().map(|inner| CacheManager { inner })
    }

    /// Whether the manager still exists, without taking a reference to it.
    pub(crate) fn is_alive(&self) -> bool {
        self.0.strong_count() > 0
    }
}

/// A random id for this instance on the backplane.
fn new_origin() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let seed = std::collections::hash_map::RandomState::new();
    let mut h = seed.build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    let high = h.finish();
    h.write_u64(high);
    (u128::from(high) << 64) | u128::from(h.finish())
}

/// The first backplane subscription of one manager, to wait for; see
/// [`CacheManager::backplane_subscribed`]. Holds the subscriber, which refers to its manager only
/// weakly, so a task waiting on it does not keep the manager alive.
pub(crate) struct FirstSubscription(Option<Arc<Subscriber>>);

impl FirstSubscription {
    /// `true` once the first subscription has happened (at once without a backplane), `false`
    /// if `limit` passes first.
    pub(crate) async fn wait(&self, limit: std::time::Duration) -> bool {
        let Some(subscriber) = &self.0 else {
            return true;
        };
        let counters = &subscriber.counters;
        tokio::time::timeout(limit, async {
            loop {
                let notified = counters.subscribed.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                if counters.subscriptions.load(Ordering::Acquire) > 0 {
                    return;
                }
                notified.await;
            }
        })
        .await
        .is_ok()
    }
}

/// Hears other instances' invalidations for this manager's memory tiers.
///
/// The backplane's subscription loop calls it for each message. It decodes the message and only
/// queues it for the applier thread ([`apply_queued`]): applying may take time in proportion to
/// a memory tier, and the loop must go on reading meanwhile (see [`Backlog`]).
struct Subscriber {
    manager: std::sync::Weak<Inner>,
    origin: u128,
    counters: Arc<SubscriberCounters>,
    /// Messages waiting for the applier thread; `None` if it could not start, and the
    /// subscription loop then applies each message itself.
    backlog: Option<Arc<Backlog<Invalidation>>>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some(backlog) = &self.backlog {
            backlog.close();
        }
    }
}

#[derive(Default)]
struct SubscriberCounters {
    subscriptions: AtomicU64,
    /// Woken at each subscription (see [`CacheManager::first_subscription`]).
    subscribed: tokio::sync::Notify,
    applied: AtomicU64,
    overflowed: AtomicU64,
    own: AtomicU64,
    foreign: AtomicU64,
}

impl SubscriberCounters {
    fn snapshot(&self) -> BackplaneStats {
        BackplaneStats {
            subscriptions: self.subscriptions.load(Ordering::Acquire),
            applied: self.applied.load(Ordering::Acquire),
            overflowed: self.overflowed.load(Ordering::Acquire),
            own: self.own.load(Ordering::Relaxed),
            foreign: self.foreign.load(Ordering::Relaxed),
        }
    }
}

impl BackplaneSink for Subscriber {
    fn on_message(&self, bytes: &[u8]) {
        // Decoded here, which is cheap, so that this instance's own messages and foreign payloads
        // take no room in the backlog.
        let Some(message) = Message::decode(bytes) else {
            self.counters.foreign.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if message.origin == self.origin {
            self.counters.own.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(backlog) = &self.backlog else {
            if let Some(inner) = self.manager.upgrade() {
                apply(
                    &CacheManager { inner },
                    message.invalidation,
                    &self.counters,
                );
            }
            return;
        };
        if let Pushed::Refused { first: true } = backlog.push(message.invalidation, bytes.len()) {
            tracing::warn!(
                queued = backplane::BACKLOG_MESSAGES,
                "cache backplane: invalidations arrive faster than this instance applies them; clearing the memory tiers of remote-backed caches instead of queueing more"
            );
        }
    }

    fn on_resubscribed(&self) {
        let Some(inner) = self.manager.upgrade() else {
            return;
        };
        clear_remote_backed(&CacheManager { inner }, "backplane reconnected");
        self.counters.subscriptions.fetch_add(1, Ordering::Release);
        self.counters.subscribed.notify_waiters();
    }
}

/// Starts the thread that applies a subscriber's queued messages, and returns its backlog;
/// `None` if the thread could not start.
///
/// A thread rather than a task on cache-core's I/O runtime: that runtime has one thread, which
/// also runs the subscription loop and the remote I/O of synchronous callers, and applying is
/// synchronous work that may take long.
fn start_applier(
    manager: std::sync::Weak<Inner>,
    counters: Arc<SubscriberCounters>,
) -> Option<Arc<Backlog<Invalidation>>> {
    let backlog = Arc::new(Backlog::new(
        backplane::BACKLOG_MESSAGES,
        backplane::BACKLOG_BYTES,
    ));
    let queue = backlog.clone();
    let spawned = std::thread::Builder::new()
        .name("cache-core-backplane".into())
        .spawn(move || apply_queued(&queue, &manager, &counters));
    match spawned {
        Ok(_) => Some(backlog),
        Err(e) => {
            tracing::error!(error = %e, "cache-core could not start its backplane thread; messages are applied as they are read");
            None
        }
    }
}

/// The applier thread: applies queued messages in order, and after a gap clears the memory
/// tiers instead. Ends with the subscriber, or at the first message after its manager is gone.
fn apply_queued(
    backlog: &Backlog<Invalidation>,
    manager: &std::sync::Weak<Inner>,
    counters: &SubscriberCounters,
) {
    loop {
        let next = backlog.next();
        let Some(inner) = manager.upgrade() else {
            return;
        };
        let manager = CacheManager { inner };
        let done = match next {
            Next::Apply(invalidation) => std::panic::catch_unwind(AssertUnwindSafe(|| {
                apply(&manager, invalidation, counters)
            })),
            Next::Gap { missed } => std::panic::catch_unwind(AssertUnwindSafe(|| {
                clear_remote_backed(
                    &manager,
                    "backplane messages arrived faster than they were applied",
                );
                // Counted once cleared, as `applied` is once applied.
                counters.overflowed.fetch_add(missed, Ordering::Release);
            })),
            Next::Closed => return,
        };
        // A user's `Drop` run by a removal, or a tracing layer, may panic: without this thread
        // no message would be applied again.
        if let Err(panic) = done {
            tracing::error!(error = %crate::warming::panicked(&*panic), "applying a backplane message failed; the backplane thread goes on");
        }
    }
}

/// Applies one invalidation from another instance to `manager`'s memory tiers.
fn apply(manager: &CacheManager, invalidation: Invalidation, counters: &SubscriberCounters) {
    let existing = |name: &str| {
        manager
            .inner
            .caches
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    };
    match invalidation {
        Invalidation::Key { cache, key } => {
            if let Some(store) = existing(&cache) {
                store
                    .memory
                    .remove(key.as_bytes(), crate::key::lookup_hash(key.as_bytes()));
            }
        }
        Invalidation::Tag { tag } => {
            for store in manager.stores() {
                store.memory.remove_tag(&tag);
            }
        }
        Invalidation::Pattern { cache, pattern } => {
            if let Some(store) = existing(&cache) {
                let glob = crate::Glob::new(&pattern);
                store.memory.remove_where(|k| glob.matches(k));
            }
        }
        Invalidation::Cache { cache } => {
            if let Some(store) = existing(&cache) {
                store.memory.clear();
            }
        }
        Invalidation::All => {
            for store in manager.stores() {
                store.memory.clear();
            }
        }
    }
    // Counted once applied, so a reader that sees the count sees the eviction.
    counters.applied.fetch_add(1, Ordering::Release);
}

/// Clears the memory tier of every cache that has a remote tier, after messages may have been
/// lost (`why`): nothing it holds can be trusted, and the remote tier still has the values.
fn clear_remote_backed(manager: &CacheManager, why: &str) {
    for store in manager.stores() {
        if store.remote.is_some() {
            let n = store.memory.clear();
            tracing::info!(cache = %store.name, entries = n, reason = why, "cleared the memory tier, which may have missed invalidations");
        }
    }
}

struct ScopeCount;

impl ScopeCount {
    fn enter() -> Self {
        ACTIVE_SCOPES.fetch_add(1, Ordering::SeqCst);
        ScopeCount
    }
}

impl Drop for ScopeCount {
    fn drop(&mut self) {
        ACTIVE_SCOPES.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether no [`CacheManager::scope`] is active anywhere, so every cached call uses the global
/// manager: the hit path's shortcut to a call site's store.
#[inline(always)]
pub(crate) fn no_scopes() -> bool {
    ACTIVE_SCOPES.load(Ordering::Relaxed) == 0
}

/// Calls `f` with the current manager and whether it is the global one.
#[inline(always)]
pub(crate) fn with_current<R>(f: impl FnOnce(&CacheManager, bool) -> R) -> R {
    if ACTIVE_SCOPES.load(Ordering::Relaxed) != 0 {
        let task = TASK_MANAGER.try_with(|scoped| scoped.clone()).ok();
        let thread = THREAD_MANAGER.with(|t| t.borrow().clone());
        // The innermost scope: `scope_sync` inside an async `scope`, or the reverse.
        let scoped = match (task, thread) {
            (Some(task), Some(thread)) => Some(if thread.1 > task.1 { thread } else { task }),
            (task, thread) => task.or(thread),
        };
        return match scoped {
            Some((m, _)) => f(&m, false),
            None => f(CacheManager::global(), true),
        };
    }
    f(CacheManager::global(), true)
}

#[cfg(test)]
mod tests {
    use super::CacheManager;

    #[test]
    fn the_innermost_scope_is_current_whichever_kind_it_is() {
        let a = CacheManager::builder().build();
        a.cache("only_a");
        let b = CacheManager::builder().build();
        b.cache("only_b");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // A sync scope inside an async one.
        let inner_sync = runtime
            .block_on(a.scope(async { b.scope_sync(|| CacheManager::current().cache_names()) }));
        assert_eq!(inner_sync, ["only_b"]);
        // An async scope inside a sync one.
        let inner_async = a.scope_sync(|| {
            runtime.block_on(b.scope(async { CacheManager::current().cache_names() }))
        });
        assert_eq!(inner_async, ["only_b"]);
    }
}
