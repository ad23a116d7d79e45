//! [`FaultyBackend`]: any remote backend with faults switched on and off while a test runs.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::remote::backplane::{Backplane, BackplaneSink};
use crate::remote::{BoxFuture, LockAttempt, LockToken, RemoteBackend, RemoteError, RemoteTier};

/// The fault a [`FaultyBackend`] injects into every remote operation until told otherwise.
///
/// ```
/// use cache_core::testing::{Fault, FaultyBackend, MemoryBackend};
/// use std::time::Duration;
///
/// let faults = FaultyBackend::new(MemoryBackend::new()).faults();
/// for fault in [
///     Fault::FailAlways,
///     Fault::FailSometimes(0.25),
///     Fault::Delay(Duration::from_millis(30)),
///     Fault::Hang,
///     Fault::None,
/// ] {
///     faults.set(fault);
///     assert_eq!(faults.get(), fault);
/// }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum Fault {
    /// Operations reach the wrapped backend unchanged.
    #[default]
    None,
    /// Every operation fails at once with [`RemoteError::Backend`], as with a refused connection.
    FailAlways,
    /// Each operation fails with this probability (0.0 to 1.0), drawn from the backend's seeded
    /// generator, so a failing run can be replayed with the same seed.
    FailSometimes(f64),
    /// Each operation waits this long, then reaches the wrapped backend: a slow network.
    Delay(Duration),
    /// Each operation never finishes, as with a paused server or a dropped packet: only the
    /// core's timeout ends it.
    Hang,
}

/// What a [`FaultyBackend`] did so far.
///
/// ```
/// use cache_core::testing::{Fault, FaultyBackend, MemoryBackend};
/// use cache_core::{RemoteBackend, RemoteError};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let backend = FaultyBackend::new(MemoryBackend::new()).with_fault(Fault::FailAlways);
/// let tier = backend.tier("users");
/// assert!(matches!(tier.get("user:1").await, Err(RemoteError::Backend(_))));
/// backend.faults().clear();
/// assert_eq!(tier.get("user:1").await, Ok(None));
/// let counts = backend.faults().counts();
/// assert_eq!((counts.failed, counts.passed), (1, 1));
/// # });
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultCounts {
    /// Operations that reached the wrapped backend (delayed ones included).
    pub passed: u64,
    /// Operations failed by [`Fault::FailAlways`] or [`Fault::FailSometimes`].
    pub failed: u64,
    /// Operations slowed by [`Fault::Delay`].
    pub delayed: u64,
    /// Operations held forever by [`Fault::Hang`] (each ended by the caller's timeout).
    pub hung: u64,
}

/// The switch of a [`FaultyBackend`], kept by the test after the backend moved into a manager.
/// Clones control the same backend.
///
/// ```
/// use cache_core::testing::{Fault, FaultyBackend, MemoryBackend};
/// use cache_core::{CacheManager, Policy, Tier};
///
/// let backend = FaultyBackend::new(MemoryBackend::new()).seed(42);
/// let faults = backend.faults(); // keep the switch...
/// let manager = CacheManager::builder()
///     .remote(backend) // ...while the backend moves into the manager
///     .cache("users", Policy::new().tier(Tier::Hybrid))
///     .build();
/// faults.set(Fault::FailSometimes(0.5));
/// faults.clear();
/// # drop(manager);
/// ```
#[derive(Clone)]
pub struct Faults {
    state: Arc<State>,
}

struct State {
    fault: Mutex<Fault>,
    /// The fault of the backplane's publishes, switched apart from `fault`.
    publish_fault: Mutex<Fault>,
    /// xorshift64* state; never zero.
    rng: AtomicU64,
    /// What the tiers' and the backend's operations went through.
    operations: Counters,
    /// What the backplane's publishes went through.
    publishes: Counters,
    /// The next `get`'s answer to hold back, armed by [`Faults::hold_next_get`].
    hold: Mutex<Option<HeldGet>>,
    /// Whether messages from the backplane are dropped before the manager hears them.
    drop_messages: AtomicBool,
    /// How many were.
    dropped: AtomicU64,
    /// The managers' sinks of this backend's subscriptions, for [`Faults::resubscribe`].
    sinks: Mutex<Vec<Weak<dyn BackplaneSink>>>,
}

/// The counts behind a [`FaultCounts`].
#[derive(Default)]
struct Counters {
    passed: AtomicU64,
    failed: AtomicU64,
    delayed: AtomicU64,
    hung: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> FaultCounts {
        FaultCounts {
            passed: self.passed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            delayed: self.delayed.load(Ordering::Relaxed),
            hung: self.hung.load(Ordering::Relaxed),
        }
    }
}

/// The next `get` of a [`FaultyBackend`]'s tiers, held back after the backend answered it and
/// before its caller has the answer: the window in which a race with a write or an invalidation
/// is decided. Made by [`Faults::hold_next_get`].
///
/// ```
/// use cache_core::testing::{FaultyBackend, MemoryBackend};
/// use cache_core::RemoteBackend;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let backend = FaultyBackend::new(MemoryBackend::new());
/// let tier = backend.tier("users");
/// tier.set("user:1", b"old".to_vec(), None, &[]).await.unwrap();
/// let held = backend.faults().hold_next_get();
/// let read = tokio::spawn({
///     let tier = tier.clone();
///     async move { tier.get("user:1").await }
/// });
/// held.reached().await; // the backend has answered "old"...
/// tier.set("user:1", b"new".to_vec(), None, &[]).await.unwrap(); // ...then it changes
/// held.release();
/// assert_eq!(read.await.unwrap(), Ok(Some(b"old".to_vec())));
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct HeldGet {
    reached: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

impl HeldGet {
    /// Waits until the held `get` has its answer from the wrapped backend.
    pub async fn reached(&self) {
        self.reached.notified().await;
    }

    /// Lets the held `get` return its answer.
    pub fn release(&self) {
        self.release.notify_one();
    }

    /// Run by the held `get` once it has its answer.
    async fn hold(&self) {
        self.reached.notify_one();
        self.release.notified().await;
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults")
            .field("fault", &self.get())
            .field("counts", &self.counts())
            .finish()
    }
}

impl Faults {
    /// Injects `fault` from the next operation on.
    ///
    /// ```
    /// use cache_core::testing::{Fault, FaultyBackend, MemoryBackend};
    ///
    /// let faults = FaultyBackend::new(MemoryBackend::new()).faults();
    /// faults.set(Fault::FailAlways);
    /// assert_eq!(faults.get(), Fault::FailAlways);
    /// ```
    pub fn set(&self, fault: Fault) {
        *self.state.fault.lock().unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// Back to [`Fault::None`].
    ///
    /// ```
    /// use cache_core::testing::{Fault, FaultyBackend, MemoryBackend};
    ///
    /// let faults = FaultyBackend::new(MemoryBackend::new()).with_fault(Fault::Hang).faults();
    /// faults.clear();
    /// assert_eq!(faults.get(), Fault::None);
    /// ```
    pub fn clear(&self) {
        self.set(Fault::None);
    }

    /// The fault in force.
    ///
    /// ```
    /// use cache_core::testing::{Fault, FaultyBackend, MemoryBackend};
    ///
    /// assert_eq!(FaultyBackend::new(MemoryBackend::new()).faults().get(), Fault::None);
    /// ```
    pub fn get(&self) -> Fault {
        *self.state.fault.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What was injected so far.
    ///
    /// ```
    /// use cache_core::testing::{Fault, FaultyBackend, MemoryBackend};
    /// use cache_core::RemoteBackend;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = FaultyBackend::new(MemoryBackend::new()).with_fault(Fault::FailAlways);
    /// let _ = backend.tier("users").get("user:1").await;
    /// assert_eq!(backend.faults().counts().failed, 1);
    /// # });
    /// ```
    pub fn counts(&self) -> FaultCounts {
        self.state.operations.snapshot()
    }

    /// Injects `fault` into the backplane's publishes (the messages by which this instance tells
    /// the others to drop entries from their memory tiers) from the next one on, apart from the
    /// [`Fault`] of the other operations: a Redis whose `PUBLISH` fails or stalls while reads and
    /// writes still work. Messages from other instances are still delivered. A publish is one
    /// remote operation for the core's timeout and breaker, as in production.
    ///
    /// ```
    /// use cache_core::testing::{Fault, FaultyBackend, MemoryBackend};
    /// use cache_core::RemoteBackend;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = FaultyBackend::new(MemoryBackend::new());
    /// backend.faults().set_publish_fault(Fault::FailAlways);
    /// let backplane = backend.backplane().expect("MemoryBackend has one");
    /// assert!(backplane.publish(b"hello").await.is_err());
    /// assert_eq!(backend.tier("users").get("user:1").await, Ok(None), "reads still work");
    /// assert_eq!(backend.faults().publish_counts().failed, 1);
    /// assert_eq!(backend.faults().counts().failed, 0, "counted apart");
    /// # });
    /// ```
    pub fn set_publish_fault(&self, fault: Fault) {
        *self
            .state
            .publish_fault
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = fault;
    }

    /// The fault in force for the backplane's publishes (see [`Faults::set_publish_fault`]).
    ///
    /// ```
    /// use cache_core::testing::{Fault, FaultyBackend, MemoryBackend};
    ///
    /// let faults = FaultyBackend::new(MemoryBackend::new()).faults();
    /// faults.set(Fault::Hang);
    /// assert_eq!(faults.publish_fault(), Fault::None, "switched apart");
    /// ```
    pub fn publish_fault(&self) -> Fault {
        *self
            .state
            .publish_fault
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// What was injected into the backplane's publishes so far (see [`Faults::set_publish_fault`]).
    ///
    /// ```
    /// use cache_core::testing::{Fault, FaultyBackend, MemoryBackend};
    /// use cache_core::RemoteBackend;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = FaultyBackend::new(MemoryBackend::new());
    /// backend.backplane().unwrap().publish(b"hello").await.unwrap();
    /// assert_eq!(backend.faults().publish_counts().passed, 1);
    /// # });
    /// ```
    pub fn publish_counts(&self) -> FaultCounts {
        self.state.publishes.snapshot()
    }

    /// With `true`, drops every backplane message before this instance's manager hears it, from
    /// the next one on, until called with `false`: a subscription that went silent without
    /// ending (a NAT or firewall that dropped the connection's state, a cluster node that stopped
    /// forwarding). Publishes, reads and writes are untouched. What other instances invalidate or
    /// overwrite then stays in this instance's memory tiers, until its TTL there or until
    /// [`resubscribe`](Self::resubscribe). Counted in [`dropped_messages`](Self::dropped_messages).
    ///
    /// ```
    /// use cache_core::testing::{FaultyBackend, MemoryBackend};
    ///
    /// let faults = FaultyBackend::new(MemoryBackend::new()).faults();
    /// faults.set_drop_messages(true);
    /// assert_eq!(faults.dropped_messages(), 0, "none arrived yet");
    /// faults.set_drop_messages(false);
    /// ```
    pub fn set_drop_messages(&self, drop: bool) {
        self.state.drop_messages.store(drop, Ordering::SeqCst);
    }

    /// How many backplane messages [`set_drop_messages`](Self::set_drop_messages) dropped so far
    /// (this instance's own, which the manager would ignore, included).
    ///
    /// ```
    /// use cache_core::testing::{FaultyBackend, MemoryBackend};
    ///
    /// assert_eq!(FaultyBackend::new(MemoryBackend::new()).faults().dropped_messages(), 0);
    /// ```
    pub fn dropped_messages(&self) -> u64 {
        self.state.dropped.load(Ordering::SeqCst)
    }

    /// Tells the manager of each subscription of this backend that its subscription was lost
    /// and is back, as the Redis backplane does after it reconnects: messages may have been
    /// missed, so the manager empties the memory tier of every cache backed by the remote tier
    /// (before this returns), and counts a subscription in its backplane stats. Returns how many
    /// managers were told.
    ///
    /// ```
    /// use cache_core::testing::{FaultyBackend, MemoryBackend};
    /// use cache_core::{CacheManager, Policy, Tier};
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = FaultyBackend::new(MemoryBackend::new());
    /// let faults = backend.faults();
    /// let manager = CacheManager::builder()
    ///     .remote(backend)
    ///     .cache("users", Policy::new().tier(Tier::Hybrid))
    ///     .build();
    /// assert!(manager.backplane_subscribed(Duration::from_secs(5)).await);
    /// manager.cache("users").set("user:1", "Ada".to_string()).await;
    /// assert_eq!(manager.cache("users").stats().entries, 1);
    /// assert_eq!(faults.resubscribe(), 1);
    /// // Memory emptied; the remote tier keeps the value.
    /// assert_eq!(manager.cache("users").stats().entries, 0);
    /// # });
    /// ```
    pub fn resubscribe(&self) -> usize {
        let sinks: Vec<Arc<dyn BackplaneSink>> = {
            let mut sinks = self.state.sinks.lock().unwrap_or_else(|e| e.into_inner());
            sinks.retain(|s| s.strong_count() > 0);
            sinks.iter().filter_map(Weak::upgrade).collect()
        };
        for sink in &sinks {
            sink.on_resubscribed();
        }
        sinks.len()
    }

    /// Holds back the answer of the next `get` (of any of the backend's tiers): it reaches the
    /// wrapped backend as usual, then waits, its answer in hand, until [`HeldGet::release`]. Use
    /// it to put a write or an invalidation exactly between a read and its answer. Independent of
    /// the [`Fault`] in force.
    pub fn hold_next_get(&self) -> HeldGet {
        let held = HeldGet {
            reached: Arc::new(tokio::sync::Notify::new()),
            release: Arc::new(tokio::sync::Notify::new()),
        };
        *self.state.hold.lock().unwrap_or_else(|e| e.into_inner()) = Some(held.clone());
        held
    }

    /// A uniform draw in [0, 1) from the seeded generator.
    fn draw(&self) -> f64 {
        // xorshift64*: tiny, deterministic for a seed, good enough to pick failures.
        let mut x = self.state.rng.load(Ordering::Relaxed);
        loop {
            let mut next = x;
            next ^= next >> 12;
            next ^= next << 25;
            next ^= next >> 27;
            match self.state.rng.compare_exchange_weak(
                x,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let out = next.wrapping_mul(0x2545_F491_4F6C_DD1D);
                    return (out >> 11) as f64 / (1u64 << 53) as f64;
                }
                Err(seen) => x = seen,
            }
        }
    }

    /// Applies the fault in force to one operation.
    async fn apply<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, RemoteError>>,
    ) -> Result<T, RemoteError> {
        self.inject(self.get(), &self.state.operations, op).await
    }

    /// Applies the publishes' fault to one publish.
    async fn apply_publish<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, RemoteError>>,
    ) -> Result<T, RemoteError> {
        self.inject(self.publish_fault(), &self.state.publishes, op)
            .await
    }

    async fn inject<T>(
        &self,
        fault: Fault,
        counters: &Counters,
        op: impl std::future::Future<Output = Result<T, RemoteError>>,
    ) -> Result<T, RemoteError> {
        let fail = || {
            Err(RemoteError::Backend(
                "injected fault (FaultyBackend)".to_owned(),
            ))
        };
        match fault {
            Fault::None => {}
            Fault::FailAlways => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                return fail();
            }
            Fault::FailSometimes(p) => {
                if self.draw() < p {
                    counters.failed.fetch_add(1, Ordering::Relaxed);
                    return fail();
                }
            }
            Fault::Delay(d) => {
                counters.delayed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(d).await;
            }
            Fault::Hang => {
                counters.hung.fetch_add(1, Ordering::Relaxed);
                std::future::pending::<()>().await;
            }
        }
        counters.passed.fetch_add(1, Ordering::Relaxed);
        op.await
    }
}

/// Wraps a [`RemoteBackend`] (a `cache_redis::RedisBackend`, a [`MemoryBackend`](super::MemoryBackend))
/// and injects a [`Fault`] into every operation of it and of its tiers, switched at run time
/// through [`Faults`]. Use it to check what your code does when the cache's remote tier fails,
/// slows down or hangs: with the core's fail-open design, a cached function should still answer,
/// within the configured timeout.
///
/// The backplane (instance-to-instance messages) has faults of its own: for its publishes
/// ([`Faults::set_publish_fault`]), and for the messages it delivers
/// ([`Faults::set_drop_messages`], [`Faults::resubscribe`]); by default it passes both through.
///
/// # Examples
///
/// ```
/// use cache_core::testing::{Fault, FaultyBackend, MemoryBackend};
/// use cache_core::{CacheManager, Policy, Resilience, Tier, cached};
/// use std::time::Duration;
///
/// #[cached(cache = "users", key = "user:{id}")]
/// async fn user_name(id: u64) -> String {
///     format!("user {id}") // a database query in real life
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let backend = FaultyBackend::new(MemoryBackend::new()).seed(7);
/// let faults = backend.faults();
/// let manager = CacheManager::builder()
///     .remote(backend)
///     .resilience(Resilience::new().timeout(Duration::from_millis(50)))
///     .cache("users", Policy::new().tier(Tier::Remote))
///     .build();
///
/// faults.set(Fault::Hang);
/// let started = std::time::Instant::now();
/// assert_eq!(manager.scope(user_name(1)).await, "user 1"); // answered by the body
/// assert!(started.elapsed() < Duration::from_secs(1));     // cut at the timeout
/// assert!(faults.counts().hung >= 1);
///
/// faults.clear();
/// # });
/// ```
pub struct FaultyBackend {
    inner: Arc<dyn RemoteBackend>,
    faults: Faults,
}

impl fmt::Debug for FaultyBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyBackend")
            .field("inner", &self.inner.describe())
            .field("faults", &self.faults)
            .finish()
    }
}

impl FaultyBackend {
    /// Wraps `inner`, with no fault in force and the generator seeded with 1.
    ///
    /// ```
    /// use cache_core::testing::{Fault, FaultyBackend, MemoryBackend};
    /// use cache_core::RemoteBackend;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = FaultyBackend::new(MemoryBackend::new());
    /// assert_eq!(backend.faults().get(), Fault::None);
    /// assert_eq!(backend.tier("users").get("user:1").await, Ok(None)); // passed through
    /// # });
    /// ```
    pub fn new(inner: impl RemoteBackend) -> Self {
        FaultyBackend {
            inner: Arc::new(inner),
            faults: Faults {
                state: Arc::new(State {
                    fault: Mutex::new(Fault::None),
                    publish_fault: Mutex::new(Fault::None),
                    rng: AtomicU64::new(1),
                    operations: Counters::default(),
                    publishes: Counters::default(),
                    hold: Mutex::new(None),
                    drop_messages: AtomicBool::new(false),
                    dropped: AtomicU64::new(0),
                    sinks: Mutex::new(Vec::new()),
                }),
            },
        }
    }

    /// Seeds the generator behind [`Fault::FailSometimes`] (0 is taken as 1).
    ///
    /// ```
    /// use cache_core::testing::{Fault, FaultyBackend, MemoryBackend};
    /// use cache_core::RemoteBackend;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// // The same seed fails the same operations.
    /// let mut runs = Vec::new();
    /// for _ in 0..2 {
    ///     let backend = FaultyBackend::new(MemoryBackend::new())
    ///         .seed(7)
    ///         .with_fault(Fault::FailSometimes(0.5));
    ///     let tier = backend.tier("c");
    ///     let mut failed = Vec::new();
    ///     for _ in 0..8 {
    ///         failed.push(tier.get("k").await.is_err());
    ///     }
    ///     runs.push(failed);
    /// }
    /// assert_eq!(runs[0], runs[1]);
    /// # });
    /// ```
    #[must_use]
    pub fn seed(self, seed: u64) -> Self {
        self.faults.state.rng.store(seed.max(1), Ordering::Relaxed);
        self
    }

    /// Starts with `fault` in force.
    ///
    /// ```
    /// use cache_core::testing::{Fault, FaultyBackend, MemoryBackend};
    ///
    /// let backend = FaultyBackend::new(MemoryBackend::new()).with_fault(Fault::FailAlways);
    /// assert_eq!(backend.faults().get(), Fault::FailAlways);
    /// ```
    #[must_use]
    pub fn with_fault(self, fault: Fault) -> Self {
        self.faults.set(fault);
        self
    }

    /// The switch: keep it to change the fault after the backend moved into a manager.
    ///
    /// ```
    /// use cache_core::testing::{Fault, FaultyBackend, MemoryBackend};
    ///
    /// let backend = FaultyBackend::new(MemoryBackend::new());
    /// let switch = backend.faults();
    /// switch.set(Fault::FailAlways);
    /// assert_eq!(backend.faults().get(), Fault::FailAlways, "clones control the same backend");
    /// ```
    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }
}

impl RemoteBackend for FaultyBackend {
    fn tier(&self, cache: &str) -> Arc<dyn RemoteTier> {
        Arc::new(FaultyTier {
            inner: self.inner.tier(cache),
            faults: self.faults.clone(),
        })
    }

    fn delete_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>> {
        Box::pin(self.faults.apply(self.inner.delete_tag(tag)))
    }

    fn clear_all(&self) -> BoxFuture<'_, Result<u64, RemoteError>> {
        Box::pin(self.faults.apply(self.inner.clear_all()))
    }

    fn ping(&self) -> BoxFuture<'_, Result<Duration, RemoteError>> {
        Box::pin(self.faults.apply(self.inner.ping()))
    }

    fn describe(&self) -> String {
        format!("{} (with injected faults)", self.inner.describe())
    }

    fn backplane(&self) -> Option<Arc<dyn Backplane>> {
        let inner = self.inner.backplane()?;
        Some(Arc::new(FaultyBackplane {
            inner,
            faults: self.faults.clone(),
        }))
    }
}

/// The backplane of a [`FaultyBackend`]: publishes get [`Faults::publish_fault`]'s fault, the
/// subscription is the wrapped backplane's, its messages passed on unless
/// [`Faults::set_drop_messages`] drops them.
struct FaultyBackplane {
    inner: Arc<dyn Backplane>,
    faults: Faults,
}

impl Backplane for FaultyBackplane {
    fn publish<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(self.faults.apply_publish(self.inner.publish(message)))
    }

    fn subscribe(&self, sink: Weak<dyn BackplaneSink>) -> BoxFuture<'static, ()> {
        {
            let mut sinks = (self.faults.state.sinks.lock()).unwrap_or_else(|e| e.into_inner());
            // A `Weak` keeps its allocation: drop those of managers that are gone.
            sinks.retain(|s| s.strong_count() > 0);
            sinks.push(sink.clone());
        }
        let filter: Arc<dyn BackplaneSink> = Arc::new(MessageFilter {
            manager: sink.clone(),
            faults: self.faults.clone(),
        });
        let subscription = self.inner.subscribe(Arc::downgrade(&filter));
        Box::pin(async move {
            // The wrapped loop ends when its sink is gone, and its sink is `filter`, which lives
            // here: it goes once the manager's does, checked now and then as the loop itself
            // checks a quiet subscription.
            let manager_gone = async {
                while sink.strong_count() > 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            tokio::select! {
                () = subscription => {}
                () = manager_gone => {}
            }
            drop(filter);
        })
    }
}

/// Stands between a wrapped backplane's subscription and the manager's sink.
struct MessageFilter {
    manager: Weak<dyn BackplaneSink>,
    faults: Faults,
}

impl BackplaneSink for MessageFilter {
    fn on_message(&self, message: &[u8]) {
        if self.faults.state.drop_messages.load(Ordering::SeqCst) {
            self.faults.state.dropped.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if let Some(manager) = self.manager.upgrade() {
            manager.on_message(message);
        }
    }

    fn on_resubscribed(&self) {
        if let Some(manager) = self.manager.upgrade() {
            manager.on_resubscribed();
        }
    }
}

struct FaultyTier {
    inner: Arc<dyn RemoteTier>,
    faults: Faults,
}

impl RemoteTier for FaultyTier {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>> {
        Box::pin(async move {
            let answer = self.faults.apply(self.inner.get(key)).await;
            let held = (self.faults.state.hold.lock())
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(held) = held {
                held.hold().await;
            }
            answer
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        tags: &'a [Arc<str>],
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(self.faults.apply(self.inner.set(key, value, ttl, tags)))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, RemoteError>> {
        Box::pin(self.faults.apply(self.inner.delete(key)))
    }

    fn delete_pattern<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>> {
        Box::pin(self.faults.apply(self.inner.delete_pattern(pattern)))
    }

    fn clear<'a>(&'a self) -> BoxFuture<'a, Result<u64, RemoteError>> {
        Box::pin(self.faults.apply(self.inner.clear()))
    }

    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        token: LockToken,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<LockAttempt, RemoteError>> {
        Box::pin(self.faults.apply(self.inner.try_lock(key, token, ttl)))
    }

    fn unlock<'a>(
        &'a self,
        key: &'a str,
        token: LockToken,
    ) -> BoxFuture<'a, Result<bool, RemoteError>> {
        Box::pin(self.faults.apply(self.inner.unlock(key, token)))
    }
}
