//! A cached call's work: its [`Strategy`], its body, and whether that body may outlive its caller.
//!
//! Stale-while-revalidate, refresh-ahead and the soft timeout hand a body to a background task.
//! That needs a `Send + 'static` body and strategy, which a function taking `&self` or `&str`
//! cannot offer, so the bound is carried by the job's type rather than required of every cached
//! function: `#[cached]` builds a [`Detachable`] job when the function asks for one of those modes
//! (it checks that the arguments are owned) and an [`Attached`] one otherwise. The runtime asks
//! [`Work::DETACHABLE`] and, for an attached job, computes in the foreground instead.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::CacheManager;
use crate::freshness::{Freshness, TimedOut};
use crate::key::KeyBuf;
use crate::memory::InsertOptions;
use crate::outcome::Strategy;
use crate::store::Store;

/// What a background task needs to finish or redo a cached call.
pub struct Background {
    pub(crate) store: Arc<Store>,
    pub(crate) key: KeyBuf,
    pub(crate) hash: u64,
    pub(crate) opts: InsertOptions,
    pub(crate) fresh: Freshness,
    /// The flight the task settles, when it continues a leader's (soft timeout).
    pub(crate) guard: Option<crate::flight::LeaderGuard>,
    /// The value being refreshed, kept as the fail-safe fallback if the refresh fails, with the
    /// invalidation epoch read before it was.
    pub(crate) fallback: Option<crate::flight::Kept>,
    /// When the body started, in the cache clock's milliseconds (for its recompute time), and
    /// the invalidation epoch then, when the task continues a started body.
    pub(crate) started: Option<(u64, std::time::Instant, u64)>,
    /// The distributed lock the body runs under, released once its value is written.
    pub(crate) lock: Option<crate::remote::lock::FlightLock>,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("cache", &self.store.name)
            .field("key", &self.key.as_str())
            .finish_non_exhaustive()
    }
}

/// What every cached call's work offers, async or sync.
pub trait Work<R>: Sized {
    /// Whether [`Work::refresh_in_background`] can succeed.
    const DETACHABLE: bool;
    /// How the return value is cached.
    type Strategy: Strategy<R>;
    /// The strategy.
    fn strategy(&self) -> &Self::Strategy;
    /// Runs the whole call as a background refresh; `Err(self)` if the body cannot outlive its
    /// caller.
    fn refresh_in_background(self, ctx: Background) -> Result<(), Self>;
}

/// An async cached call's work.
pub trait Job<R>: Work<R> {
    /// The body.
    type Body: Future<Output = R>;
    /// How to make a timeout error, if the function has a hard timeout.
    fn on_timeout(&self) -> Option<fn(TimedOut) -> R>;
    /// The job's parts: its strategy and its body, boxed so that it can still move after it was
    /// polled.
    fn into_parts(self) -> (Self::Strategy, Pin<Box<Self::Body>>);
    /// Lets a started body finish in the background and store its value. False (the body is
    /// dropped) if it cannot outlive its caller: ask [`Work::DETACHABLE`] first.
    fn finish_in_background(
        strategy: Self::Strategy,
        body: Pin<Box<Self::Body>>,
        ctx: Background,
    ) -> bool;
}

/// Marks a job computed in the foreground only: its body borrows from its caller.
#[derive(Debug)]
pub enum InPlace {}

/// Marks a job whose body owns everything it uses (`Send + 'static`): it may run in the
/// background.
#[derive(Debug)]
pub enum MayDetach {}

/// An async call's strategy and body; its mode (`InPlace` or `MayDetach`) says whether the body
/// may outlive the call.
#[derive(Debug)]
pub struct AsyncCall<S, F, R, Mode> {
    strategy: S,
    body: F,
    on_timeout: Option<fn(TimedOut) -> R>,
    mode: PhantomData<Mode>,
}

/// A foreground-only async job.
pub type Attached<S, F, R> = AsyncCall<S, F, R, InPlace>;

/// An async job that may run in the background.
pub type Detachable<S, F, R> = AsyncCall<S, F, R, MayDetach>;

impl<S, F, R, Mode> AsyncCall<S, F, R, Mode> {
    /// A job of `strategy` and `body`.
    #[inline(always)]
    pub fn new(strategy: S, body: F) -> Self {
        AsyncCall {
            strategy,
            body,
            on_timeout: None,
            mode: PhantomData,
        }
    }

    /// With the error a hard timeout returns.
    #[inline(always)]
    pub fn on_timeout(mut self, make: fn(TimedOut) -> R) -> Self {
        self.on_timeout = Some(make);
        self
    }
}

impl<R, S: Strategy<R>, F: Future<Output = R>> Work<R> for Attached<S, F, R> {
    const DETACHABLE: bool = false;
    type Strategy = S;

    #[inline(always)]
    fn strategy(&self) -> &S {
        &self.strategy
    }

    fn refresh_in_background(self, _: Background) -> Result<(), Self> {
        Err(self)
    }
}

impl<R, S: Strategy<R>, F: Future<Output = R>> Job<R> for Attached<S, F, R> {
    type Body = F;

    fn on_timeout(&self) -> Option<fn(TimedOut) -> R> {
        self.on_timeout
    }

    fn into_parts(self) -> (S, Pin<Box<F>>) {
        (self.strategy, Box::pin(self.body))
    }

    fn finish_in_background(_: S, _: Pin<Box<F>>, _: Background) -> bool {
        false
    }
}

impl<R, S, F> Work<R> for Detachable<S, F, R>
where
    R: Send + 'static,
    S: Strategy<R> + Send + Sync + 'static,
    F: Future<Output = R> + Send + 'static,
{
    const DETACHABLE: bool = true;
    type Strategy = S;

    #[inline(always)]
    fn strategy(&self) -> &S {
        &self.strategy
    }

    fn refresh_in_background(self, ctx: Background) -> Result<(), Self> {
        spawn(crate::flight::background::<R, S, F>(
            ctx,
            self.strategy,
            Box::pin(self.body),
        ));
        Ok(())
    }
}

impl<R, S, F> Job<R> for Detachable<S, F, R>
where
    R: Send + 'static,
    S: Strategy<R> + Send + Sync + 'static,
    F: Future<Output = R> + Send + 'static,
{
    type Body = F;

    fn on_timeout(&self) -> Option<fn(TimedOut) -> R> {
        self.on_timeout
    }

    fn into_parts(self) -> (S, Pin<Box<F>>) {
        (self.strategy, Box::pin(self.body))
    }

    fn finish_in_background(strategy: S, body: Pin<Box<F>>, ctx: Background) -> bool {
        spawn(crate::flight::background::<R, S, F>(ctx, strategy, body));
        true
    }
}

/// A sync cached call's work.
pub trait SyncJob<R>: Work<R> {
    /// The body.
    type Body: FnOnce() -> R;
    /// The strategy and the body.
    fn into_parts(self) -> (Self::Strategy, Self::Body);
}

/// A sync call's strategy and body, with its mode as for [`AsyncCall`].
#[derive(Debug)]
pub struct SyncCall<S, F, Mode> {
    strategy: S,
    body: F,
    mode: PhantomData<Mode>,
}

/// A foreground-only sync job.
pub type SyncAttached<S, F> = SyncCall<S, F, InPlace>;

/// A sync job that may run on a background thread.
pub type SyncDetachable<S, F> = SyncCall<S, F, MayDetach>;

impl<S, F, Mode> SyncCall<S, F, Mode> {
    /// A job of `strategy` and `body`.
    #[inline(always)]
    pub fn new(strategy: S, body: F) -> Self {
        SyncCall {
            strategy,
            body,
            mode: PhantomData,
        }
    }
}

impl<R, S: Strategy<R>, F: FnOnce() -> R> Work<R> for SyncAttached<S, F> {
    const DETACHABLE: bool = false;
    type Strategy = S;

    #[inline(always)]
    fn strategy(&self) -> &S {
        &self.strategy
    }

    fn refresh_in_background(self, _: Background) -> Result<(), Self> {
        Err(self)
    }
}

impl<R, S: Strategy<R>, F: FnOnce() -> R> SyncJob<R> for SyncAttached<S, F> {
    type Body = F;

    fn into_parts(self) -> (S, F) {
        (self.strategy, self.body)
    }
}

impl<R, S, F> Work<R> for SyncDetachable<S, F>
where
    R: Send + 'static,
    S: Strategy<R> + Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    const DETACHABLE: bool = true;
    type Strategy = S;

    #[inline(always)]
    fn strategy(&self) -> &S {
        &self.strategy
    }

    fn refresh_in_background(self, ctx: Background) -> Result<(), Self> {
        let Some(slot) = RefreshThread::claim() else {
            // Dropping `ctx` gives up the refresh's flight: the stale value is served, and the
            // next stale read of the key tries again.
            refresh_skipped(&ctx);
            return Ok(());
        };
        let manager = scoped_manager();
        let (strategy, body) = (self.strategy, self.body);
        let spawned = std::thread::Builder::new()
            .name(REFRESH_THREAD_NAME.into())
            .spawn(move || {
                let _slot = slot;
                let run = move || crate::flight::background_blocking(ctx, &strategy, body);
                match manager {
                    Some(m) => m.scope_sync(run),
                    None => run(),
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start a background refresh thread");
        }
        Ok(())
    }
}

impl<R, S, F> SyncJob<R> for SyncDetachable<S, F>
where
    R: Send + 'static,
    S: Strategy<R> + Send + 'static,
    F: FnOnce() -> R + Send + 'static,
{
    type Body = F;

    fn into_parts(self) -> (S, F) {
        (self.strategy, self.body)
    }
}

/// The name of the threads sync background refreshes run on.
pub(crate) const REFRESH_THREAD_NAME: &str = "cache-refresh";

/// How many sync background refreshes may run at once, process-wide. Each has a thread of its
/// own (a sync body may block, so it cannot share a runtime's threads); without a bound, a
/// burst of stale reads of distinct keys started a thread per key (2,000 reads, 2,000
/// threads). Past it a stale read still serves its value and leaves the refresh to a later
/// read, counted in [`CacheStats::refreshes_skipped`](crate::CacheStats::refreshes_skipped).
/// 64 blocking bodies at once is already more than most databases want from one process.
///
/// ```
/// use cache_core::{CacheManager, MAX_SYNC_REFRESH_THREADS};
///
/// let manager = CacheManager::builder().build();
/// // Nothing skipped yet; a storm of stale reads past this many would show here.
/// assert_eq!(manager.cache("settings").stats().refreshes_skipped, 0);
/// assert_eq!(MAX_SYNC_REFRESH_THREADS, 64);
/// ```
pub const MAX_SYNC_REFRESH_THREADS: usize = 64;

static SYNC_REFRESH_THREADS: AtomicUsize = AtomicUsize::new(0);

/// One of the [`MAX_SYNC_REFRESH_THREADS`] places, held by a refresh thread until it ends.
struct RefreshThread(());

impl RefreshThread {
    fn claim() -> Option<Self> {
        SYNC_REFRESH_THREADS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_SYNC_REFRESH_THREADS).then_some(n + 1)
            })
            .ok()
            .map(|_| RefreshThread(()))
    }
}

impl Drop for RefreshThread {
    fn drop(&mut self) {
        SYNC_REFRESH_THREADS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Notes a sync refresh left to a later read because every refresh thread was busy: counted,
/// and logged once per process at warn level (a storm of stale reads would otherwise log per
/// read).
fn refresh_skipped(ctx: &Background) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    ctx.store.memory.counters.refreshes_skipped.incr();
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            cache = %ctx.store.name,
            limit = MAX_SYNC_REFRESH_THREADS,
            "every sync background refresh thread is busy; stale values are served and their refreshes left to later reads"
        );
    } else {
        tracing::debug!(cache = %ctx.store.name, key = %ctx.key.as_str(), "sync background refresh skipped: every refresh thread is busy");
    }
}

/// The current manager if it is a scoped one (the global one needs no scope).
fn scoped_manager() -> Option<CacheManager> {
    crate::manager::with_current(|m, is_global| (!is_global).then(|| m.clone()))
}

/// Runs a background task on the caller's tokio runtime, or on cache-core's own when there is
/// none, under the caller's manager.
fn spawn<F: Future<Output = ()> + Send + 'static>(task: F) {
    let manager = scoped_manager();
    let task = async move {
        match manager {
            Some(m) => m.scope(task).await,
            None => task.await,
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(task);
        }
        Err(_) => crate::remote::spawn_background(task),
    }
}
