//! What the macros' expansions call. Not public API: no semver promise, hidden from docs.
//!
//! Everything a `#[cached]` function needs at run time goes through [`cached_async`] or
//! [`cached_sync`], which call the same single-flight path as
//! [`Cache::get_or_insert_with`](crate::Cache::get_or_insert_with).

use std::future::Future;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use ::core;
pub use ::std;
pub use scc::Guard;

pub use crate::key::{
    ArgBytes, Int, IntProbe, IntViaDisplay, IntViaPrimitive, KeyArgs, KeyArgsTuple, KeyBuf,
    KeyPart, StrProbe, StrViaDisplay, StrViaStr,
};
pub use crate::outcome::{
    CacheValue, Filtered, PlainFallback, PlainStrategy, Probe, Strategy, WithCodec, check_strategy,
    store_if,
};
pub use crate::remote::codec::{CodecProbe, ValueOf, ValueOfPlain, ViaNothing, ViaSerde};

pub use crate::job::{
    AsyncCall, Attached, Detachable, InPlace, Job, MayDetach, SyncAttached, SyncCall,
    SyncDetachable, SyncJob, Work,
};

pub use crate::flight::LocalMiss;

use crate::flight::{self, Plan};
use crate::freshness::{Freshness, SiteFreshness};
use crate::manager::with_current;
use crate::memory::InsertOptions;
use crate::store::Store;
use crate::{CacheManager, Clock, RefreshAhead, TimedOut};

/// The static part of one `#[cached]` function: its cache name and TTL, and its resolved store
/// in the global manager (so a hit does not look the cache up by name).
#[derive(Debug)]
pub struct CallSite {
    cache: &'static str,
    /// TTL in milliseconds; 0 means "the cache policy's".
    ttl_ms: u64,
    fresh: SiteFreshness,
    global: OnceLock<Arc<Store>>,
}

impl CallSite {
    /// A call site of `cache` with `ttl_ms` (0: the policy's TTL).
    pub const fn new(cache: &'static str, ttl_ms: u64) -> Self {
        CallSite {
            cache,
            ttl_ms,
            fresh: SiteFreshness::NONE,
            global: OnceLock::new(),
        }
    }

    /// `stale = ..`: the stale-while-revalidate window in milliseconds.
    pub const fn stale(mut self, ms: u64) -> Self {
        self.fresh.stale_ms = ms;
        self
    }

    /// `fail_safe = ..`: the fail-safe window in milliseconds.
    pub const fn fail_safe(mut self, ms: u64) -> Self {
        self.fresh.fail_safe_ms = ms;
        self
    }

    /// `soft_timeout = ..` in milliseconds.
    pub const fn soft_timeout(mut self, ms: u64) -> Self {
        self.fresh.soft_timeout_ms = ms;
        self
    }

    /// `timeout = ..` (the hard timeout) in milliseconds.
    pub const fn hard_timeout(mut self, ms: u64) -> Self {
        self.fresh.hard_timeout_ms = ms;
        self
    }

    /// `refresh_ahead` (XFetch with `beta`) or `refresh_ahead = <fraction>`.
    pub const fn refresh_ahead(mut self, mode: RefreshAhead) -> Self {
        self.fresh.refresh = mode;
        self
    }

    /// `jitter = ..` in percent.
    pub const fn jitter(mut self, percent: u8) -> Self {
        self.fresh.jitter_pct = percent;
        self
    }

    fn ttl(&self) -> Option<Duration> {
        (self.ttl_ms != 0).then(|| Duration::from_millis(self.ttl_ms))
    }

    #[inline(always)]
    fn store(&'static self) -> StoreRef {
        // The common case in two loads: no scope anywhere, and this site already resolved its
        // store in the global manager (which `with_current` would fetch out of line first).
        if crate::manager::no_scopes()
            && let Some(store) = self.global.get()
        {
            return StoreRef::Static(store);
        }
        with_current(|manager: &CacheManager, is_global| {
            if is_global {
                StoreRef::Static(self.global.get_or_init(|| manager.store(self.cache)))
            } else {
                StoreRef::Owned(manager.store(self.cache))
            }
        })
    }

    fn plan<'t>(&'t self, store: &'t Store, tags: &'t [KeyBuf]) -> impl FnOnce() -> Plan + 't {
        move || Plan {
            opts: InsertOptions {
                ttl: self.ttl(),
                tags: tags.iter().map(|t| Arc::from(t.as_str())).collect(),
                ..InsertOptions::default()
            },
            fresh: Freshness::resolve(&self.fresh, &store.policy),
        }
    }
}

/// Where a `#[cached]` function with a default key is declared, for the start of that key.
///
/// A function of a module keeps `module_path!()::name`, the key it always had. A function in an
/// `impl` or a trait, or inside another function, is not told apart by its module and name: two
/// traits' methods `name` on one type, or two local `fn inner`s in one module, would share
/// entries. Their key starts with the path of the scope they are in instead, as the compiler
/// spells it for a type declared in the function's body (`std::any::type_name`):
/// `app::Repo::name`, `<app::Repo as app::Loader>::name`, `app::outer::inner`.
///
/// Found once per function (the first call) and kept: a hit reads one initialized `OnceLock`.
///
/// Except where the scope has type arguments: a function of a generic `impl<T>`, or a trait's
/// provided method, may read `T`, the trait's arguments or the implementor's `Self` in its body
/// whatever its signature shows (`impl<T> Repo<T> { fn size() }`, a provided `fn greeting()`
/// calling `Self::name()`, `trait Sizer<T> { fn size(&self) }` implemented twice for one type).
/// The type declared in its body is not generic, so its name spells them `_` or not at all
/// (`app::Repo<_>`, `app::Named`), and those instances would share entries. Such a function's
/// key starts with the scope of its instance instead, as spelled for a closure in its body
/// (`app::Repo<u8>`, `<app::Ada as app::Named>`, `<app::X as app::Sizer<u8>>`), worked out on
/// each call.
#[derive(Debug)]
pub struct ItemScope(OnceLock<Scope>);

#[derive(Debug, Clone, Copy)]
enum Scope {
    /// The same for every instance (a function of a module: `None`).
    Fixed(Option<&'static str>),
    /// Each instance's own: see [`ItemScope`].
    PerInstance,
}

impl ItemScope {
    /// An item scope not yet looked at.
    #[allow(clippy::new_without_default)] // only ever a `static` of the expansion
    pub const fn new() -> Self {
        ItemScope(OnceLock::new())
    }

    /// The scope the function is in when it is not its module: `marker` gives the `type_name` of
    /// a type declared in the body of the function (or of its key companion, a sibling), which
    /// is `<scope>::<function>::<marker>`; `instance` that of a closure there,
    /// `<scope>::<function>[<..>]::{{closure}}`, whose scope has this instance's type arguments
    /// where `marker`'s has `_` or none; `module` is the function's `module_path!()`. `None` for
    /// a function of the module itself.
    #[inline(always)]
    pub fn nested(
        &'static self,
        marker: fn() -> &'static str,
        instance: &'static str,
        module: &'static str,
    ) -> Option<&'static str> {
        let scope = *self.0.get_or_init(|| {
            let fixed = nested_scope(marker(), module);
            if fixed == nested_scope(instance, module) {
                Scope::Fixed(fixed)
            } else {
                Scope::PerInstance
            }
        });
        match scope {
            Scope::Fixed(scope) => scope,
            Scope::PerInstance => nested_scope(instance, module),
        }
    }
}

/// The `type_name` of `value`'s type, for a closure: see [`ItemScope::nested`].
#[inline(always)]
pub fn type_name_of<T>(_: &T) -> &'static str {
    std::any::type_name::<T>()
}

fn nested_scope(name: &'static str, module: &str) -> Option<&'static str> {
    // `<scope>::<function>::<marker>`, or `<scope>::<function>::{{closure}}`, with `::{{closure}}`
    // after the function in an `async fn` (its body is a coroutine). The function's segment may
    // have type arguments (`size<u8>`), which may hold paths: segments are split outside
    // brackets.
    let (mut function, _marker) = split_last_segment(name)?;
    while let Some((outer, _)) =
        split_last_segment(function).filter(|(_, last)| last.starts_with("{{"))
    {
        function = outer;
    }
    let (scope, _function) = split_last_segment(function)?;
    (!same_path(scope, module)).then_some(scope)
}

/// `a::b<c::d>::e` into `a::b<c::d>` and `e`: at the last `::` outside `<..>`, `(..)` and `[..]`
/// (the `>` of a function type's `->` closes nothing, nor does a `char` const argument: `'>'`).
fn split_last_segment(path: &str) -> Option<(&str, &str)> {
    let bytes = path.as_bytes();
    let mut depth = 0usize;
    let mut last = None;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'-' if bytes.get(i + 1) == Some(&b'>') => i += 1,
            b'\'' => i = char_literal_end(path, i).unwrap_or(i),
            b'<' | b'(' | b'[' => depth += 1,
            b'>' | b')' | b']' => depth = depth.saturating_sub(1),
            b':' if depth == 0 && bytes.get(i + 1) == Some(&b':') => {
                last = Some(i);
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    last.map(|i| (&path[..i], &path[i + 2..]))
}

/// Where the `char` literal opening at `start` ends (its closing quote): `'x'` or an escape,
/// `'\''`, `'\u{301}'`. `None` for a lifetime (`'_`, `'a`), which has no closing quote.
fn char_literal_end(path: &str, start: usize) -> Option<usize> {
    let rest = &path[start + 1..];
    let len = match rest.strip_prefix('\\') {
        // An escape: one escaped character, then anything up to the closing quote.
        Some(escaped) => {
            let first = escaped.chars().next()?.len_utf8();
            1 + first + escaped[first..].find('\'')?
        }
        None => rest.chars().next()?.len_utf8(),
    };
    (rest.as_bytes().get(len) == Some(&b'\'')).then_some(start + 1 + len)
}

/// Whether two paths name the same module: `module_path!()` keeps raw identifiers (`r#async`),
/// `type_name` drops the `r#`.
fn same_path(a: &str, b: &str) -> bool {
    fn unraw(segment: &str) -> &str {
        segment.strip_prefix("r#").unwrap_or(segment)
    }
    a.split("::").map(unraw).eq(b.split("::").map(unraw))
}

/// The global manager's store is borrowed for the program's life; a scoped one is counted.
enum StoreRef {
    Static(&'static Arc<Store>),
    Owned(Arc<Store>),
}

impl Deref for StoreRef {
    type Target = Arc<Store>;
    #[inline]
    fn deref(&self) -> &Arc<Store> {
        match self {
            StoreRef::Static(s) => s,
            StoreRef::Owned(s) => s,
        }
    }
}

/// The body of an `async fn` under `#[cached]`, in three steps so that a hit returns from the
/// function itself:
///
/// ```text
/// let call = cached_async(&SITE, &k, &tags, job);
/// let later = {
///     let guard = Guard::new();
///     match call.lookup(&guard) {
///         Ok(value) => return call.rebuild(value),
///         Err(later) => later,
///     }
/// };
/// call.miss(later).await
/// ```
///
/// The value is cloned straight into the function's return value, and no future of ours stands
/// between the hit and the caller: when `cached_async` was an `async fn` awaited by the
/// expansion, its future stored the four arguments and read them back at the first poll with
/// wider loads, a store-forwarding stall on every hit (see `docs/benchmarks-history.md`, sixth pass).
#[inline(always)]
pub fn cached_async<'a, R, J: Job<R>>(
    site: &'static CallSite,
    key: &'a KeyBuf,
    tags: &'a [KeyBuf],
    job: J,
) -> AsyncCached<'a, R, J> {
    // Under `CacheHeadersLayer`: a hit unless the miss path notes a body run or a stale value
    // (the request's status is the worst noted). Noted first, so the hit's value is not held
    // across the call.
    #[cfg(feature = "axum")]
    crate::http::record(crate::http::CacheStatus::Hit);
    AsyncCached {
        store: site.store(),
        site,
        key,
        tags,
        job,
        result: PhantomData,
    }
}

/// See [`cached_async`]: one call of a cached `async fn`, between its memory lookup and its miss.
pub struct AsyncCached<'a, R, J> {
    store: StoreRef,
    site: &'static CallSite,
    key: &'a KeyBuf,
    tags: &'a [KeyBuf],
    job: J,
    result: PhantomData<fn() -> R>,
}

/// The methods of [`AsyncCached`] for when its job is not a [`Job`], found by "autoref
/// specialization" (they take `&AsyncCached` by value, a step after the real ones): the bound
/// has then failed already at [`cached_async`], where it is reported once, underlining the
/// return type, and these keep the expansion's later steps from each reporting it again.
/// Never called: a program that reaches them does not compile.
pub trait AsyncCachedWithoutJob<R> {
    /// See [`AsyncCached::lookup`].
    fn lookup(self, guard: &Guard) -> Result<&std::convert::Infallible, LocalMiss>;
    /// See [`AsyncCached::rebuild`].
    fn rebuild(self, value: &std::convert::Infallible) -> R;
    /// See [`AsyncCached::miss`].
    fn miss(self, later: LocalMiss) -> std::future::Pending<R>;
}

impl<R, J> AsyncCachedWithoutJob<R> for &AsyncCached<'_, R, J> {
    fn lookup(self, _: &Guard) -> Result<&std::convert::Infallible, LocalMiss> {
        unreachable!("`cached_async` requires a `Job`")
    }
    fn rebuild(self, value: &std::convert::Infallible) -> R {
        match *value {}
    }
    fn miss(self, _: LocalMiss) -> std::future::Pending<R> {
        unreachable!("`cached_async` requires a `Job`")
    }
}

impl<R, J> std::fmt::Debug for AsyncCached<'_, R, J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncCached")
            .field("site", &self.site)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<'a, R, J: Job<R>> AsyncCached<'a, R, J> {
    /// The memory tier's value for the key, borrowed for as long as `guard` lives.
    #[inline(always)]
    pub fn lookup<'g>(&'g self, guard: &'g Guard) -> Result<&'g flight::ValueOf<R, J>, LocalMiss> {
        flight::lookup_local(&self.store, self.key, guard)
    }

    /// The function's return value from a value [`lookup`](Self::lookup) found.
    #[inline(always)]
    pub fn rebuild(&self, value: &flight::ValueOf<R, J>) -> R {
        self.job.strategy().rebuild_cloned(value)
    }

    /// Everything after a memory miss: single flight, the remote tier, the body.
    #[inline(always)]
    pub async fn miss(self, later: LocalMiss) -> R {
        let AsyncCached {
            store,
            site,
            key,
            tags,
            job,
            ..
        } = self;
        // Boxed so the caller's future holds a pointer rather than the whole miss state machine
        // (single flight, L2 read, body, L2 write): a hit then builds and moves a small future.
        Box::pin(flight::miss(
            &store,
            key,
            later.hash,
            site.plan(&store, tags),
            job,
            later.later,
        ))
        .await
    }
}

/// The body of a sync `fn` under `#[cached]`.
#[inline(always)]
pub fn cached_sync<R, J: SyncJob<R>>(
    site: &'static CallSite,
    key: &KeyBuf,
    tags: &[KeyBuf],
    job: J,
) -> R {
    #[cfg(feature = "axum")]
    crate::http::record(crate::http::CacheStatus::Hit);
    let store = site.store();
    flight::get_or_compute_blocking(&store, key, site.plan(&store, tags), job)
}

/// The job of a `#[cached]` async function: detachable when the function asked for a mode that
/// runs its body in the background (the macro checked that its arguments are owned).
///
/// No bounds here: a value type that cannot be cached is reported once, by `cached_async`'s.
#[inline(always)]
pub fn job<R, S, F>(strategy: S, body: F) -> Attached<S, F, R> {
    Attached::new(strategy, body)
}

/// A `#[cached]` async function's job whose body may run in the background.
#[diagnostic::on_unimplemented(
    message = "this `#[cached]` function's body must be able to run in the background",
    label = "`stale`, `refresh_ahead` and `soft_timeout` run the body after the call returns",
    note = "the body must be `Send + 'static`: take arguments by value (`String`, `Arc<T>`) rather than by reference, or remove those options"
)]
pub trait Background: Future + Send + 'static {}
impl<F: Future + Send + 'static> Background for F {}

/// See [`job`]: a detachable job, checking that the body can outlive its caller.
#[inline(always)]
pub fn detachable_job<R, S, F>(strategy: S, body: F) -> Detachable<S, F, R>
where
    F: Background<Output = R>,
{
    Detachable::new(strategy, body)
}

/// The job of a sync `#[cached]` function.
#[inline(always)]
pub fn sync_job<S, F>(strategy: S, body: F) -> SyncAttached<S, F> {
    SyncAttached::new(strategy, body)
}

/// A sync body that may run on a background thread.
#[diagnostic::on_unimplemented(
    message = "this `#[cached]` function's body must be able to run on a background thread",
    label = "`stale` and `refresh_ahead` run the body after the call returns",
    note = "the body must be `Send + 'static`: take arguments by value (`String`, `Arc<T>`) rather than by reference, or remove those options"
)]
pub trait BackgroundFn<R>: FnOnce() -> R + Send + 'static {}
impl<R, F: FnOnce() -> R + Send + 'static> BackgroundFn<R> for F {}

/// See [`sync_job`]: a detachable sync job.
#[inline(always)]
pub fn sync_detachable_job<R, S, F>(strategy: S, body: F) -> SyncDetachable<S, F>
where
    F: BackgroundFn<R>,
{
    SyncDetachable::new(strategy, body)
}

/// The return types a hard timeout can answer with an error.
#[diagnostic::on_unimplemented(
    message = "`timeout` needs a function returning `Result<T, E>` with `E: From<cache_core::TimedOut>`, not `{Self}`",
    label = "a hard timeout returns an error, which this return type cannot hold",
    note = "implement `From<cache_core::TimedOut>` for the error type, or give the function a fail-safe window (`fail_safe = ..`) and a `soft_timeout` instead"
)]
pub trait TimeoutResult: Sized {
    /// The error value for a timeout.
    fn timed_out(t: TimedOut) -> Self;
}

impl<T, E: From<TimedOut>> TimeoutResult for Result<T, E> {
    fn timed_out(t: TimedOut) -> Self {
        Err(E::from(t))
    }
}

/// `<R as TimeoutResult>::timed_out`, named for the macro.
#[inline(always)]
pub fn timeout_error<R: TimeoutResult>() -> fn(TimedOut) -> R {
    R::timed_out
}

/// Runs the body of a sync `#[invalidates]` function, wrapped in a closure so that `return` and
/// `?` keep their meaning.
#[inline(always)]
pub fn call_body<R>(body: impl FnOnce() -> R) -> R {
    body()
}

/// Asks a `#[cache_if(result = ..)]` predicate about a return value. Its bound gives a closure
/// its parameter type, and reports a predicate of the wrong type at the predicate.
#[inline(always)]
pub fn keep<R: ?Sized, F: Fn(&R) -> bool>(predicate: F, value: &R) -> bool {
    predicate(value)
}

/// Counts a call whose `#[cache_if]` condition was false (the body ran, the cache was not used).
#[inline]
pub fn bypass(site: &'static CallSite) {
    site.store().memory.counters.bypassed.incr();
    #[cfg(feature = "axum")]
    crate::http::record(crate::http::CacheStatus::Bypass);
}

/// `#[invalidates(key = ..)]` / the `get_user(id)` form: removes one key from a named cache.
pub async fn invalidate_key(cache: &str, key: &KeyBuf) {
    CacheManager::current()
        .invalidate_key(cache, key.as_str())
        .await;
}

/// `#[invalidates(tags = [..])]`: removes every entry carrying the tag, in every cache.
pub async fn invalidate_tag(tag: &KeyBuf) {
    CacheManager::current().invalidate_tag(tag.as_str()).await;
}

/// `#[invalidates(pattern = ..)]`: removes the keys of a named cache matching the glob (built
/// with [`KeyBuf::pattern_part`], so argument values match only themselves).
pub async fn invalidate_pattern(cache: &str, pattern: &KeyBuf) {
    CacheManager::current()
        .invalidate_pattern(cache, pattern.as_str())
        .await;
}

/// `#[invalidates(cache = .., all = true)]`: empties a named cache.
pub async fn invalidate_cache(cache: &str) {
    CacheManager::current().invalidate_cache(cache).await;
}

/// Runs an invalidation future for a sync function: the memory tier is done when this returns;
/// a remote tier is reached on cache-core's I/O runtime, and this waits for it (bounded by the
/// backend's timeout).
fn blocking<F: Future<Output = ()> + Send + 'static>(make: impl FnOnce(CacheManager) -> F) {
    let manager = CacheManager::current();
    // Memory-only work completes on the first poll: no thread hop for it.
    let remote = manager.remote().is_some();
    crate::remote::run_sync(make(manager), remote);
}

/// [`invalidate_key`] for sync functions.
pub fn invalidate_key_blocking(cache: &str, key: &KeyBuf) {
    let (cache, key) = (cache.to_owned(), key.as_str().to_owned());
    blocking(|m| async move {
        m.invalidate_key(&cache, &key).await;
    });
}

/// [`invalidate_tag`] for sync functions.
pub fn invalidate_tag_blocking(tag: &KeyBuf) {
    let tag = tag.as_str().to_owned();
    blocking(|m| async move {
        m.invalidate_tag(&tag).await;
    });
}

/// [`invalidate_pattern`] for sync functions.
pub fn invalidate_pattern_blocking(cache: &str, pattern: &KeyBuf) {
    let (cache, pattern) = (cache.to_owned(), pattern.as_str().to_owned());
    blocking(|m| async move {
        m.invalidate_pattern(&cache, &pattern).await;
    });
}

/// [`invalidate_cache`] for sync functions.
pub fn invalidate_cache_blocking(cache: &str) {
    let cache = cache.to_owned();
    blocking(|m| async move {
        m.invalidate_cache(&cache).await;
    });
}

/// Type-checks one argument of a default key, spanned on that argument by the macro.
#[inline(always)]
pub fn assert_key_arg<T: KeyArgs + ?Sized>(_: &T) {}

/// Type-checks one key-template placeholder, spanned on the placeholder by the macro.
#[inline(always)]
pub fn assert_key_part<T: KeyPart + ?Sized>(_: &T) {}

/// Keeps `Clock` reachable for generated test helpers.
pub type RuntimeClock = Clock;

/// `#[invalidates]` with `{arg:lower}` in a pattern: the lowercased key form, escaped for the glob.
pub fn pattern_part_lower<T: KeyPart + ?Sized>(pattern: &mut KeyBuf, value: &T) {
    let mut key_form = KeyBuf::new();
    key_form.part_lower(value);
    glob_escaped(pattern, key_form.as_str());
}

/// `#[invalidates]` with `{arg:upper}` in a pattern: the uppercased key form, escaped for the glob.
pub fn pattern_part_upper<T: KeyPart + ?Sized>(pattern: &mut KeyBuf, value: &T) {
    let mut key_form = KeyBuf::new();
    key_form.part_upper(value);
    glob_escaped(pattern, key_form.as_str());
}

/// Appends a key form so that a glob matches only itself (as [`KeyBuf::pattern_part`] does).
fn glob_escaped(pattern: &mut KeyBuf, key_form: &str) {
    let mut rest = key_form;
    while let Some(at) = rest.find(['\\', '*', '?', '[', ']', '^']) {
        pattern.lit(&rest[..at]);
        pattern.lit("\\");
        pattern.lit(&rest[at..=at]);
        rest = &rest[at + 1..];
    }
    pattern.lit(rest);
}

/// What the key companion of a `#[cached(key = <expression>)]` function returns: such a key is the
/// user's code over owned arguments, which a companion taking them borrowed cannot re-run.
#[derive(Debug)]
pub struct KeyIsAnExpression;

/// The result of a key companion: the cache's name and the key.
#[diagnostic::on_unimplemented(
    message = "this `#[cached]` function's key is an expression (`key = ...`), which `#[invalidates]` cannot re-derive from the arguments",
    label = "its key is built by an expression",
    note = "invalidate its entries with `#[invalidates(key = <the same key>, cache = \"...\")]` instead, or give it a key template such as `key = \"user:{{id}}\"`"
)]
pub trait CompanionKey {
    /// The cache's name and the key.
    fn into_key(self) -> (&'static str, KeyBuf);
}

impl CompanionKey for (&'static str, KeyBuf) {
    #[inline(always)]
    fn into_key(self) -> (&'static str, KeyBuf) {
        self
    }
}

/// `#[invalidates(get_user(id))]`: the key `get_user(id)` would use, from its companion.
#[inline(always)]
pub fn companion_key<K: CompanionKey>(key: K) -> (&'static str, KeyBuf) {
    key.into_key()
}

/// Decides whether an `#[invalidates]` function succeeded, from its return type, by the same
/// technique as [`Probe`]: an inherent method on `OnSuccess<Result<T, E>>` wins over the
/// [`OnSuccessFallback`] method that every other `OnSuccess<R>` gets. `Result` succeeds on `Ok`;
/// anything else always.
#[derive(Debug)]
pub struct OnSuccess<R>(PhantomData<fn() -> R>);

impl<R> OnSuccess<R> {
    /// The probe for the type of `out`, and `out`. Takes it by value: a borrowed local would be
    /// kept in an `async fn`'s state across later `.await`s, making a `!Send` error type matter.
    #[inline(always)]
    pub fn with(out: R) -> (Self, R) {
        (OnSuccess(PhantomData), out)
    }
}

impl<T, E> OnSuccess<Result<T, E>> {
    /// `Result`: `Ok` succeeded.
    #[inline(always)]
    pub fn split(&self) -> OkSplit<T, E> {
        OkSplit(PhantomData)
    }
}

/// The split of every return type that is not a `Result`.
pub trait OnSuccessFallback<R> {
    /// Every value succeeded.
    fn split(&self) -> WholeSplit<R>;
}

impl<R> OnSuccessFallback<R> for OnSuccess<R> {
    #[inline(always)]
    fn split(&self) -> WholeSplit<R> {
        WholeSplit(PhantomData)
    }
}

/// Separates a successful return value from a failed one, so that only what is returned after
/// the invalidations (the `Ok` value, not the error) is held across their `.await`.
pub trait SuccessSplit<R> {
    /// What a success holds until it is returned.
    type Kept;
    /// `Ok(kept)` on success, `Err(out)` (returned at once) on failure.
    fn kept(&self, out: R) -> Result<Self::Kept, R>;
    /// The return value of a success.
    fn rebuild(&self, kept: Self::Kept) -> R;
}

/// [`SuccessSplit`] of `Result<T, E>`.
#[derive(Debug)]
pub struct OkSplit<T, E>(PhantomData<fn() -> (T, E)>);

impl<T, E> SuccessSplit<Result<T, E>> for OkSplit<T, E> {
    type Kept = T;
    #[inline(always)]
    fn kept(&self, out: Result<T, E>) -> Result<T, Result<T, E>> {
        match out {
            Ok(value) => Ok(value),
            Err(e) => Err(Err(e)),
        }
    }
    #[inline(always)]
    fn rebuild(&self, kept: T) -> Result<T, E> {
        Ok(kept)
    }
}

/// [`SuccessSplit`] of every other type.
#[derive(Debug)]
pub struct WholeSplit<R>(PhantomData<fn() -> R>);

impl<R> SuccessSplit<R> for WholeSplit<R> {
    type Kept = R;
    #[inline(always)]
    fn kept(&self, out: R) -> Result<R, R> {
        Ok(out)
    }
    #[inline(always)]
    fn rebuild(&self, kept: R) -> R {
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_of_its_module_keeps_the_module_path() {
        assert_eq!(nested_scope("app::users::get_user::M", "app::users"), None);
        assert_eq!(
            nested_scope("app::users::get_user::{{closure}}::M", "app::users"),
            None
        );
        // `type_name` drops the `r#` that `module_path!()` keeps.
        assert_eq!(nested_scope("app::async::get::M", "app::r#async"), None);
    }

    #[test]
    fn a_function_in_an_impl_or_another_function_is_keyed_by_its_scope() {
        assert_eq!(
            nested_scope("<app::S as app::A>::name::M", "app"),
            Some("<app::S as app::A>")
        );
        assert_eq!(nested_scope("app::S::name::M", "app"), Some("app::S"));
        assert_eq!(
            nested_scope("app::outer::inner::M", "app"),
            Some("app::outer")
        );
        assert_eq!(
            nested_scope("app::f::{{closure}}::inner::M", "app"),
            Some("app::f::{{closure}}")
        );
        // A companion (`__cache_key_inner`) is in the same scope as its function.
        assert_eq!(
            nested_scope("app::outer::__cache_key_inner::M", "app"),
            Some("app::outer")
        );
    }

    #[test]
    fn a_closure_names_the_scope_of_its_instance() {
        assert_eq!(
            nested_scope("app::Repo<u8>::size::{{closure}}", "app"),
            Some("app::Repo<u8>")
        );
        assert_eq!(
            nested_scope(
                "<app::Ada as app::Named>::greet::{{closure}}::{{closure}}",
                "app"
            ),
            Some("<app::Ada as app::Named>")
        );
        // Type arguments with paths, tuples and function types, on the scope and the function.
        assert_eq!(
            nested_scope(
                "app::Repo<(alloc::string::String, fn(u8) -> app::X)>::get<core::option::Option<u8>>::{{closure}}",
                "app"
            ),
            Some("app::Repo<(alloc::string::String, fn(u8) -> app::X)>")
        );
        assert_eq!(nested_scope("app::get<app::X>::{{closure}}", "app"), None);
        // A `char` const argument is spelled as a literal, brackets and quotes included.
        assert_eq!(
            nested_scope("app::S::get<'>'>::{{closure}}", "app"),
            Some("app::S")
        );
        assert_eq!(
            nested_scope("app::S<')', ']'>::get<'\\''>::{{closure}}", "app"),
            Some("app::S<')', ']'>")
        );
        assert_eq!(
            nested_scope("app::L<'_>::get<'\\u{301}', ':'>::{{closure}}", "app"),
            Some("app::L<'_>")
        );
    }
}
