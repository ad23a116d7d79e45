//! Which part of a function's return value is cached.
//!
//! `Result<T, E>` caches only `Ok(T)`, `Option<T>` only `Some(T)`, an axum `(StatusCode, T)` only
//! a success status, anything else the whole value.
//! The choice is made by the compiler, not by reading the return type's name: the macro asks
//! `Probe::<R>::new().strategy()`, and inherent methods on `Probe<Result<..>>` and
//! `Probe<Option<..>>` win over the [`PlainFallback`] trait method that every other `Probe<R>`
//! gets. Type aliases (`type Res<T> = Result<T, MyError>`) therefore work, and a user type that
//! merely happens to be called `Result` is cached whole.

use std::marker::PhantomData;

use crate::remote::codec::Codec;

/// What a cached value must be: cloned out on every hit, shared between threads.
///
/// ```
/// use cache_core::CacheValue;
/// use std::sync::Arc;
///
/// struct Report { rows: Vec<u64> } // not `Clone`
///
/// fn cacheable<T: CacheValue>() {}
/// cacheable::<String>();
/// cacheable::<Arc<Report>>(); // one shared copy, cloned as a pointer
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored in the cache",
    label = "cached values must be `Clone + Send + Sync + 'static`",
    note = "derive `Clone` for `{Self}`, or return `std::sync::Arc<{Self}>` to share one copy"
)]
pub trait CacheValue: Clone + Send + Sync + 'static {}

impl<T: Clone + Send + Sync + 'static> CacheValue for T {}

/// Splits a return value into its cacheable part and rebuilds it from a cached one.
pub trait Strategy<R> {
    /// The type stored in the cache.
    type Value: CacheValue;
    /// The part of `out` to store, if any.
    fn cacheable(&self, out: &R) -> Option<Self::Value>;
    /// The return value for a cached `value`.
    fn rebuild(&self, value: Self::Value) -> R;
    /// The return value for a value borrowed from the cache: the hit path. Where `R` is the
    /// value itself, the clone is the return value, built where the caller returns it.
    #[inline(always)]
    fn rebuild_cloned(&self, value: &Self::Value) -> R {
        self.rebuild(value.clone())
    }
    /// How the value travels to a remote tier; `None` keeps it in memory only.
    fn codec(&self) -> Option<Codec<Self::Value>> {
        None
    }
    /// Whether `out` is a failure (an `Err`), which a fail-safe value may replace.
    fn failed(&self, out: &R) -> bool {
        let _ = out;
        false
    }
}

/// A strategy with the codec that [`CodecProbe`](crate::remote::codec::CodecProbe) found for its
/// value type.
#[derive(Debug)]
pub struct WithCodec<S, T> {
    inner: S,
    codec: Option<Codec<T>>,
}

impl<S, T> WithCodec<S, T> {
    /// Attaches `codec` to `strategy`.
    #[inline(always)]
    pub fn new(strategy: S, codec: Option<Codec<T>>) -> Self {
        WithCodec {
            inner: strategy,
            codec,
        }
    }
}

impl<R, S: Strategy<R>> Strategy<R> for WithCodec<S, S::Value> {
    type Value = S::Value;
    #[inline]
    fn cacheable(&self, out: &R) -> Option<S::Value> {
        self.inner.cacheable(out)
    }
    #[inline]
    fn rebuild(&self, value: S::Value) -> R {
        self.inner.rebuild(value)
    }
    #[inline(always)]
    fn rebuild_cloned(&self, value: &S::Value) -> R {
        self.inner.rebuild_cloned(value)
    }
    fn codec(&self) -> Option<Codec<S::Value>> {
        self.codec
    }
    #[inline]
    fn failed(&self, out: &R) -> bool {
        self.inner.failed(out)
    }
}

/// Caches `Ok` values.
#[derive(Debug)]
pub struct ResultStrategy<T, E>(PhantomData<fn() -> (T, E)>);

/// Caches `Some` values.
#[derive(Debug)]
pub struct OptionStrategy<T>(PhantomData<fn() -> T>);

/// Caches the whole value (also used for `Option` with `cache_none = true`).
#[derive(Debug)]
pub struct PlainStrategy<R>(PhantomData<fn() -> R>);

impl<R> PlainStrategy<R> {
    /// The strategy for `R`.
    pub const fn new() -> Self {
        PlainStrategy(PhantomData)
    }
}

impl<R> Default for PlainStrategy<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: CacheValue, E> Strategy<Result<T, E>> for ResultStrategy<T, E> {
    type Value = T;
    #[inline]
    fn cacheable(&self, out: &Result<T, E>) -> Option<T> {
        out.as_ref().ok().cloned()
    }
    #[inline]
    fn rebuild(&self, value: T) -> Result<T, E> {
        Ok(value)
    }
    #[inline]
    fn failed(&self, out: &Result<T, E>) -> bool {
        out.is_err()
    }
}

impl<T: CacheValue> Strategy<Option<T>> for OptionStrategy<T> {
    type Value = T;
    #[inline]
    fn cacheable(&self, out: &Option<T>) -> Option<T> {
        out.clone()
    }
    #[inline]
    fn rebuild(&self, value: T) -> Option<T> {
        Some(value)
    }
}

impl<R: CacheValue> Strategy<R> for PlainStrategy<R> {
    type Value = R;
    #[inline]
    fn cacheable(&self, out: &R) -> Option<R> {
        Some(out.clone())
    }
    #[inline]
    fn rebuild(&self, value: R) -> R {
        value
    }
    #[inline(always)]
    fn rebuild_cloned(&self, value: &R) -> R {
        value.clone()
    }
}

/// A strategy that stores a value only when a predicate over the whole return value agrees
/// (`#[cache_if(result = ...)]`): the value is returned either way.
#[derive(Debug)]
pub struct Filtered<S, F> {
    inner: S,
    keep: F,
}

impl<R, S: Strategy<R>, F: Fn(&R) -> bool> Strategy<R> for Filtered<S, F> {
    type Value = S::Value;
    #[inline]
    fn cacheable(&self, out: &R) -> Option<S::Value> {
        if (self.keep)(out) {
            self.inner.cacheable(out)
        } else {
            None
        }
    }
    #[inline]
    fn rebuild(&self, value: S::Value) -> R {
        self.inner.rebuild(value)
    }
    #[inline(always)]
    fn rebuild_cloned(&self, value: &S::Value) -> R {
        self.inner.rebuild_cloned(value)
    }
    fn codec(&self) -> Option<Codec<S::Value>> {
        self.inner.codec()
    }
    #[inline]
    fn failed(&self, out: &R) -> bool {
        self.inner.failed(out)
    }
}

/// Wraps `strategy` so that only return values `keep` accepts are stored.
#[inline(always)]
pub fn store_if<R, S: Strategy<R>, F: Fn(&R) -> bool>(strategy: S, keep: F) -> Filtered<S, F> {
    Filtered {
        inner: strategy,
        keep,
    }
}

/// Picks the [`Strategy`] for a return type `R`; see the module docs.
#[derive(Debug)]
pub struct Probe<R>(PhantomData<fn() -> R>);

impl<R> Probe<R> {
    /// A probe for `R`.
    pub const fn new() -> Self {
        Probe(PhantomData)
    }
}

impl<R> Default for Probe<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, E> Probe<Result<T, E>> {
    /// `Result` caches `Ok`.
    pub fn strategy(&self) -> ResultStrategy<T, E> {
        ResultStrategy(PhantomData)
    }
}

impl<T> Probe<Option<T>> {
    /// `Option` caches `Some`.
    pub fn strategy(&self) -> OptionStrategy<T> {
        OptionStrategy(PhantomData)
    }
}

/// Caches an axum `(StatusCode, T)` response only when its status is a success (2xx): a handler
/// that answers `(StatusCode::SERVICE_UNAVAILABLE, Json(..))` while its database is down must not
/// have that answer served for the whole TTL. A 5xx counts as a failure, which a fail-safe value
/// may replace, as an `Err` does.
#[cfg(feature = "axum")]
#[derive(Debug)]
pub struct StatusStrategy<T>(PhantomData<fn() -> T>);

#[cfg(feature = "axum")]
impl<T: CacheValue> Strategy<(axum::http::StatusCode, T)> for StatusStrategy<T> {
    type Value = (axum::http::StatusCode, T);
    #[inline]
    fn cacheable(&self, out: &Self::Value) -> Option<Self::Value> {
        out.0.is_success().then(|| out.clone())
    }
    #[inline]
    fn rebuild(&self, value: Self::Value) -> Self::Value {
        value
    }
    #[inline(always)]
    fn rebuild_cloned(&self, value: &Self::Value) -> Self::Value {
        value.clone()
    }
    #[inline]
    fn failed(&self, out: &Self::Value) -> bool {
        out.0.is_server_error()
    }
}

#[cfg(feature = "axum")]
impl<T> Probe<(axum::http::StatusCode, T)> {
    /// A `(StatusCode, T)` response caches only successes.
    pub fn strategy(&self) -> StatusStrategy<T> {
        StatusStrategy(PhantomData)
    }
}

/// The strategy of every return type that is neither `Result` nor `Option`.
pub trait PlainFallback<R> {
    /// Caches the whole value.
    fn strategy(&self) -> PlainStrategy<R>;
}

impl<R> PlainFallback<R> for Probe<R> {
    fn strategy(&self) -> PlainStrategy<R> {
        PlainStrategy::new()
    }
}

/// Checks `S` against `R` where the macro puts the call: on the function's return type, so a value
/// type that cannot be cached is reported there.
#[inline(always)]
pub fn check_strategy<R, S: Strategy<R>>(strategy: S) -> S {
    strategy
}
