//! Warming: fill caches before traffic asks, at start and on an interval (the guides' warming),
//! with each warmer's failures (errors and panics) logged and counted, never fatal.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::CacheManager;
use crate::remote::BoxFuture;

type WarmFn = dyn Fn() -> BoxFuture<'static, Result<usize, String>> + Send + Sync;

/// A named warming job: an async function that loads entries (usually by calling cached
/// functions, or `Cache::set`) and says how many it loaded.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use cache_core::{CacheManager, Warmer};
/// use std::time::Duration;
///
/// let manager = CacheManager::builder()
///     .warmer(Warmer::new("config", || async {
///         cache_core::cache("static").set("theme", "dark".to_string()).await;
///         Ok::<_, std::convert::Infallible>(1)
///     }).every(Duration::from_secs(300)))
///     .build();
/// let report = manager.warm().await;
/// assert_eq!(report[0].loaded, 1);
/// assert_eq!(manager.cache("static").get::<String>("theme").await.as_deref(), Some("dark"));
/// # });
/// ```
#[derive(Clone)]
pub struct Warmer {
    name: Arc<str>,
    interval: Option<Duration>,
    run: Arc<WarmFn>,
    counters: Arc<WarmerCounters>,
}

#[derive(Default)]
struct WarmerCounters {
    runs: AtomicU64,
    errors: AtomicU64,
    loaded: AtomicU64,
}

impl fmt::Debug for Warmer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Warmer")
            .field("name", &self.name)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Warmer {
    /// A warmer that runs `f` (at start, with [`CacheManager::warm`] or
    /// [`CacheManager::spawn_warmers`]).
    ///
    /// ```
    /// use cache_core::{CacheManager, Warmer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let failing = Warmer::new("feeds", || async { Err::<usize, _>("upstream down") });
    /// let manager = CacheManager::builder().warmer(failing).build();
    /// let report = manager.warm().await;
    /// assert_eq!(report[0].error.as_deref(), Some("upstream down")); // reported, not fatal
    /// # });
    /// ```
    pub fn new<F, Fut, E>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<usize, E>> + Send + 'static,
        E: fmt::Display,
    {
        let f = Arc::new(f);
        Warmer {
            name: Arc::from(name.into()),
            interval: None,
            run: Arc::new(move || {
                let fut = f();
                Box::pin(async move { fut.await.map_err(|e| e.to_string()) })
            }),
            counters: Arc::default(),
        }
    }

    /// Runs again every `interval` after the first run (with [`CacheManager::spawn_warmers`]).
    ///
    /// ```
    /// use cache_core::Warmer;
    /// use std::time::Duration;
    ///
    /// let warmer = Warmer::new("config", || async { Ok::<_, String>(0) })
    ///     .every(Duration::from_secs(60));
    /// # drop(warmer);
    /// ```
    pub fn every(mut self, interval: Duration) -> Self {
        self.interval = Some(interval);
        self
    }

    /// The warmer's name.
    ///
    /// ```
    /// use cache_core::Warmer;
    ///
    /// assert_eq!(Warmer::new("config", || async { Ok::<_, String>(0) }).name(), "config");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn run_once(&self, manager: &CacheManager) -> WarmReport {
        self.counters.runs.fetch_add(1, Ordering::Relaxed);
        match self.run_caught(manager).await {
            Ok(n) => {
                self.counters.loaded.fetch_add(n as u64, Ordering::Relaxed);
                tracing::debug!(warmer = %self.name, loaded = n, "cache warmer ran");
                WarmReport {
                    warmer: self.name.to_string(),
                    loaded: n,
                    error: None,
                }
            }
            Err(e) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(warmer = %self.name, error = %e, "cache warmer failed; the caches fill on demand instead");
                WarmReport {
                    warmer: self.name.to_string(),
                    loaded: 0,
                    error: Some(e),
                }
            }
        }
    }

    /// Runs the warmer's function in the manager's scope, a panic (making the future or polling
    /// it) turned into its error: a failing warmer is never fatal, and unwinding through
    /// `spawn_warmers`' task would end an interval warmer for good, uncounted.
    async fn run_caught(&self, manager: &CacheManager) -> Result<usize, String> {
        let run = match catch_unwind(AssertUnwindSafe(|| (self.run)())) {
            Ok(run) => run,
            Err(panic) => return Err(panicked(&*panic)),
        };
        let mut run = pin!(manager.scope(run));
        // A future that panicked is dropped, never polled again.
        std::future::poll_fn(|cx| {
            catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(cx)))
                .unwrap_or_else(|panic| Poll::Ready(Err(panicked(&*panic))))
        })
        .await
    }

    fn stats(&self) -> WarmerStats {
        WarmerStats {
            name: self.name.to_string(),
            runs: self.counters.runs.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
            loaded: self.counters.loaded.load(Ordering::Relaxed),
        }
    }
}

/// A panic as an error message: the panic's message when it has one.
pub(crate) fn panicked(panic: &(dyn Any + Send)) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str));
    match message {
        Some(message) => format!("panicked: {message}"),
        None => "panicked".to_owned(),
    }
}

/// What one warmer run did.
///
/// ```
/// use cache_core::{CacheManager, Warmer};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let manager = CacheManager::builder()
///     .warmer(Warmer::new("ten", || async { Ok::<_, String>(10) }))
///     .build();
/// let report = &manager.warm().await[0];
/// assert_eq!((report.warmer.as_str(), report.loaded, report.error.as_deref()), ("ten", 10, None));
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WarmReport {
    /// The warmer.
    pub warmer: String,
    /// Entries it loaded.
    pub loaded: usize,
    /// Its error, if it failed.
    pub error: Option<String>,
}

/// A warmer's counters.
///
/// ```
/// use cache_core::{CacheManager, Warmer};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let manager = CacheManager::builder()
///     .warmer(Warmer::new("ten", || async { Ok::<_, String>(10) }))
///     .build();
/// manager.warm().await;
/// manager.warm().await;
/// let stats = &manager.warmer_stats()[0];
/// assert_eq!((stats.runs, stats.errors, stats.loaded), (2, 0, 20));
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WarmerStats {
    /// The warmer.
    pub name: String,
    /// Runs so far.
    pub runs: u64,
    /// Failed runs.
    pub errors: u64,
    /// Entries loaded over all runs.
    pub loaded: u64,
}

impl CacheManager {
    /// Runs every warmer once, one after another, inside this manager's scope (so cached
    /// functions called by a warmer fill this manager's caches). Failures, panics included, are
    /// reported, logged and counted, never returned as errors or propagated.
    ///
    /// With a backplane and at least one warmer, waits first (at most 5 s) for its first
    /// subscription, which clears the memory tiers and keeps values computed across it from being
    /// stored (see [`CacheManager::backplane_subscribed`]): warmed before it, the entries would
    /// be lost. With no warmer there is nothing to lose, so it returns at once.
    ///
    /// ```
    /// use cache_core::{CacheManager, Warmer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let manager = CacheManager::builder()
    ///     .warmer(Warmer::new("boom", || async {
    ///         let config: Option<usize> = None;
    ///         Ok::<_, String>(config.expect("bad config"))
    ///     }))
    ///     .build();
    /// let report = manager.warm().await;
    /// assert_eq!(report[0].error.as_deref(), Some("panicked: bad config"));
    /// # });
    /// ```
    pub async fn warm(&self) -> Vec<WarmReport> {
        if self.warmers().is_empty() {
            return Vec::new();
        }
        self.backplane_subscribed(Self::FIRST_SUBSCRIPTION_WAIT)
            .await;
        let mut reports = Vec::new();
        for warmer in self.warmers() {
            reports.push(warmer.run_once(self).await);
        }
        reports
    }

    /// Starts every warmer on the current tokio runtime: once now (after the backplane's first
    /// subscription, as [`CacheManager::warm`] does), then every interval for those that have
    /// one. A run that fails or panics is counted and the warmer keeps its schedule. The tasks
    /// end when the manager is dropped (a run under way first finishes), not at their next
    /// interval: they hold the warmers, and whatever their closures captured.
    ///
    /// ```
    /// use cache_core::{CacheManager, Warmer};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let manager = CacheManager::builder()
    ///     .warmer(Warmer::new("greeting", || async {
    ///         cache_core::cache("static").set("hello", "world".to_string()).await;
    ///         Ok::<_, String>(1)
    ///     }))
    ///     .build();
    /// for task in manager.spawn_warmers() {
    ///     task.await.unwrap(); // no interval: one run, then done
    /// }
    /// assert_eq!(manager.warmer_stats()[0].loaded, 1);
    /// # });
    /// ```
    pub fn spawn_warmers(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.warmers()
            .iter()
            .cloned()
            .map(|warmer| {
                let manager = self.downgrade();
                let subscribed = self.first_subscription();
                let dropped = self.dropped();
                tokio::spawn(async move {
                    let mut dropped = pin!(dropped);
                    tokio::select! {
                        _ = subscribed.wait(Self::FIRST_SUBSCRIPTION_WAIT) => {}
                        () = &mut dropped => return,
                    }
                    loop {
                        let Some(m) = manager.upgrade() else { return };
                        warmer.run_once(&m).await;
                        drop(m);
                        let Some(every) = warmer.interval else { return };
                        tokio::select! {
                            () = tokio::time::sleep(every) => {}
                            () = &mut dropped => return,
                        }
                    }
                })
            })
            .collect()
    }

    /// Every warmer's counters.
    ///
    /// ```
    /// use cache_core::{CacheManager, Warmer};
    ///
    /// let manager = CacheManager::builder()
    ///     .warmer(Warmer::new("config", || async { Ok::<_, String>(1) }))
    ///     .build();
    /// let stats = manager.warmer_stats();
    /// assert_eq!((stats[0].name.as_str(), stats[0].runs), ("config", 0));
    /// ```
    pub fn warmer_stats(&self) -> Vec<WarmerStats> {
        self.warmers().iter().map(Warmer::stats).collect()
    }
}
