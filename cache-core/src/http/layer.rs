//! [`CacheHeadersLayer`]: the options of [`CacheHeaders`].

use std::time::Duration;

use super::{CacheHeaders, Config};

/// Marks responses with `x-cache` (and optionally `Cache-Control` / `ETag`); see the
/// [module docs](super).
///
/// ```
/// use axum::{Router, routing::get};
/// use cache_core::http::CacheHeadersLayer;
///
/// # async fn handler() -> &'static str { "" }
/// let app: Router = Router::new()
///     .route("/", get(handler))
///     .layer(CacheHeadersLayer::new());
/// # drop(app);
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct CacheHeadersLayer {
    config: Config,
}

impl CacheHeadersLayer {
    /// `x-cache` only.
    ///
    /// ```
    /// use cache_core::http::CacheHeadersLayer;
    ///
    /// let layer = CacheHeadersLayer::new(); // `x-cache`, no `Cache-Control`, no `ETag`
    /// # drop(layer);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `Cache-Control: max-age=<secs>` to successful responses to `GET` and `HEAD` that went
    /// through the cache (not to `BYPASS` ones, nor when the handler set `Cache-Control` itself).
    ///
    /// `max-age` alone lets shared caches (a CDN, a proxy) keep the response and serve it to
    /// anyone; for responses that depend on who asks (a handler keyed by the user's id), add
    /// [`private`](Self::private).
    ///
    /// ```
    /// use cache_core::http::CacheHeadersLayer;
    /// use std::time::Duration;
    ///
    /// let layer = CacheHeadersLayer::new().max_age(Duration::from_secs(300));
    /// # drop(layer);
    /// ```
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.config.max_age = Some(max_age);
        self
    }

    /// With `true`, the `Cache-Control` that [`max_age`](Self::max_age) adds is
    /// `private, max-age=<secs>`: only the client's own cache may keep the response.
    ///
    /// ```
    /// use cache_core::http::CacheHeadersLayer;
    /// use std::time::Duration;
    ///
    /// // For routes whose responses are per user (`/me`, `/cart`).
    /// let layer = CacheHeadersLayer::new()
    ///     .max_age(Duration::from_secs(60))
    ///     .private(true);
    /// # drop(layer);
    /// ```
    pub fn private(mut self, on: bool) -> Self {
        self.config.private = on;
        self
    }

    /// With `true`, a `200` to a `GET` or `HEAD` that went through the cache gets a strong `ETag`
    /// (a hash of its body, which is buffered for it), and a request whose `If-None-Match`
    /// matches gets `304 Not Modified` with no body. A body whose length is not known up front
    /// (a stream) is left alone: buffering it could wait for ever. So is the answer to a `HEAD`
    /// when the layer wraps a whole `Router` rather than being added with `Router::layer`: axum
    /// has dropped its body by then, and it has no `ETag` (its `GET` does).
    ///
    /// ```
    /// use cache_core::http::CacheHeadersLayer;
    ///
    /// let layer = CacheHeadersLayer::new().etag(true);
    /// # drop(layer);
    /// ```
    pub fn etag(mut self, on: bool) -> Self {
        self.config.etag = on;
        self
    }
}

impl<S> tower_layer::Layer<S> for CacheHeadersLayer {
    type Service = CacheHeaders<S>;

    fn layer(&self, inner: S) -> CacheHeaders<S> {
        super::LAYER_IN_USE.store(true, std::sync::atomic::Ordering::Relaxed);
        CacheHeaders {
            inner,
            config: self.config.clone(),
        }
    }
}
