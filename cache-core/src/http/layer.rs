//! [`CacheHeadersLayer`]: the options of [`CacheHeaders`].

use std::time::Duration;

use super::{CacheHeaders, Config};

/// Marks responses with `x-cache` (and optionally `Cache-Control` / `ETag`); see the
/// [module docs](super).
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct CacheHeadersLayer {
    config: Config,
}

impl CacheHeadersLayer {
    /// `x-cache` only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `Cache-Control: max-age=<secs>` to successful responses that went through the cache
    /// (not to `BYPASS` ones, nor when the handler set `Cache-Control` itself).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.config.max_age = Some(max_age);
        self
    }

    /// With `true`, a `200` that went through the cache gets a strong `ETag` (a hash of its body,
    /// which is buffered for it), and a request whose `If-None-Match` matches gets
    /// `304 Not Modified` with no body.
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
