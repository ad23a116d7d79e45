//! Cache headers for axum (feature `axum`): [`CacheHeadersLayer`] marks each response with
//! `x-cache: HIT | MISS | STALE | BYPASS` from what the `#[cached]` functions did while the
//! request was handled, and can add `Cache-Control: max-age` and an `ETag` (answering
//! `If-None-Match` with `304 Not Modified`).
//!
//! The layer runs the inner service inside a tokio task-local; the cache runtime records each
//! cached call's outcome into it when it is set (one task-local check per cached call, and only
//! with this feature). A call that ran its body but answered with a fallback instead of the
//! body's outcome (a fail-safe value after the body failed, a stale value past a soft timeout) is
//! a `STALE` call, not a `MISS`. Several cached calls in one request combine: any `MISS` makes the
//! response a `MISS`, else any `STALE` a `STALE`, else any `HIT` a `HIT`; a request that made no
//! cached call (or only bypassed ones) is a `BYPASS`.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use cache_core::http::CacheHeadersLayer;
//! use std::time::Duration;
//!
//! # async fn handler() -> &'static str { "" }
//! let app: Router = Router::new()
//!     .route("/videos/{id}", get(handler))
//!     .layer(CacheHeadersLayer::new().max_age(Duration::from_secs(60)).etag(true));
//! ```

mod layer;

use std::cell::Cell;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode, header};

pub use layer::CacheHeadersLayer;

/// What the cache did for one request.
///
/// ```
/// use cache_core::http::CacheStatus;
///
/// // Combining calls keeps the strongest: any MISS wins, then STALE, then HIT.
/// assert_eq!(CacheStatus::Hit.max(CacheStatus::Miss), CacheStatus::Miss);
/// assert!(CacheStatus::Bypass < CacheStatus::Hit);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum CacheStatus {
    /// No cached call, or only calls that `#[cache_if]` bypassed.
    Bypass,
    /// Every cached call was answered from a tier (memory, Redis, or another caller's flight).
    Hit,
    /// A value past its TTL was served: stale-while-revalidate, or a fail-safe value after the
    /// body failed or passed its soft timeout (and no other call answered with its body's
    /// outcome).
    Stale,
    /// At least one cached call ran its body and answered with its outcome.
    Miss,
}

impl CacheStatus {
    /// The header value: `HIT`, `MISS`, `STALE` or `BYPASS`.
    ///
    /// ```
    /// use cache_core::http::CacheStatus;
    ///
    /// assert_eq!(CacheStatus::Stale.as_str(), "STALE");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Bypass => "BYPASS",
            CacheStatus::Hit => "HIT",
            CacheStatus::Stale => "STALE",
            CacheStatus::Miss => "MISS",
        }
    }
}

tokio::task_local! {
    static REQUEST_STATUS: Cell<Tally>;
}

/// What the cached calls of one request did, combined into its [`CacheStatus`] at the end.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    /// Calls that ran their body, less those that then answered with a fallback.
    misses: u32,
    stale: bool,
    hit: bool,
}

impl Tally {
    fn status(self) -> CacheStatus {
        if self.misses > 0 {
            CacheStatus::Miss
        } else if self.stale {
            CacheStatus::Stale
        } else if self.hit {
            CacheStatus::Hit
        } else {
            CacheStatus::Bypass
        }
    }
}

/// Whether a [`CacheHeadersLayer`] was ever applied in this process. Until one is, no request
/// can be in its scope, and [`record`] skips the task-local lookup (an out-of-line call on every
/// hit of a program built with the `axum` feature that does not use the layer).
pub(crate) static LAYER_IN_USE: AtomicBool = AtomicBool::new(false);

/// Records one cached call's outcome for the current request, if the layer is in use.
#[inline(always)]
pub(crate) fn record(status: CacheStatus) {
    // Relaxed: the layer is applied while the service is built, before it serves a request.
    if !LAYER_IN_USE.load(Ordering::Relaxed) {
        return;
    }
    let _ = REQUEST_STATUS.try_with(|cell| {
        let mut tally = cell.get();
        match status {
            CacheStatus::Bypass => {}
            CacheStatus::Hit => tally.hit = true,
            CacheStatus::Stale => tally.stale = true,
            CacheStatus::Miss => tally.misses += 1,
        }
        cell.set(tally);
    });
}

/// Records that a call which recorded a `MISS` when its body started answered with a fallback
/// instead of the body's outcome: it is a `STALE` call.
#[inline(always)]
pub(crate) fn record_fallback() {
    if !LAYER_IN_USE.load(Ordering::Relaxed) {
        return;
    }
    let _ = REQUEST_STATUS.try_with(|cell| {
        let mut tally = cell.get();
        tally.misses = tally.misses.saturating_sub(1);
        tally.stale = true;
        cell.set(tally);
    });
}

/// The layer's options.
#[derive(Clone, Debug, Default)]
pub(crate) struct Config {
    pub(crate) max_age: Option<Duration>,
    pub(crate) private: bool,
    pub(crate) etag: bool,
}

/// The service of [`CacheHeadersLayer`].
///
/// ```
/// use axum::{Router, body::Body, http::Request, routing::get};
/// use cache_core::http::CacheHeadersLayer;
/// use tower_service::Service;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let mut app: Router = Router::new()
///     .route("/", get(|| async { "no cached call" }))
///     .layer(CacheHeadersLayer::new());
/// let response = app.call(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
/// assert_eq!(response.headers()["x-cache"], "BYPASS");
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct CacheHeaders<S> {
    inner: S,
    config: Config,
}

impl<S, B> tower_service::Service<Request<B>> for CacheHeaders<S>
where
    S: tower_service::Service<Request<B>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // Only answers to safe methods may be cached by clients or answered with a 304: a PUT
        // whose `If-None-Match` matched the new body would have been applied, then told
        // "not modified".
        let safe = matches!(*req.method(), Method::GET | Method::HEAD);
        let head = req.method() == Method::HEAD;
        // Every line of it: a list field may come as several (RFC 9110, 5.3).
        let if_none_match: Vec<HeaderValue> = if self.config.etag {
            req.headers()
                .get_all(header::IF_NONE_MATCH)
                .iter()
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let config = self.config.clone();
        let future = self.inner.call(req);
        Box::pin(async move {
            let (res, tally) = REQUEST_STATUS
                .scope(Cell::new(Tally::default()), async {
                    let res = future.await;
                    (res, REQUEST_STATUS.with(Cell::get))
                })
                .await;
            let res = res?;
            Ok(finish(res, tally.status(), (safe, head), &config, if_none_match).await)
        })
    }
}

/// Whether one `If-None-Match` line names `etag` (quoted), or is `*`: a list of entity tags,
/// compared weakly (a `W/` prefix is ignored), as RFC 9110 (13.1.2) asks of `If-None-Match`. A
/// tag's quotes are its bounds: a comma inside them is part of the tag, not a separator. A line
/// that does not parse matches nothing from where it stops being a list of tags.
fn none_match_names(line: &[u8], etag: &[u8]) -> bool {
    let mut rest = line;
    loop {
        rest = trim_list_start(rest);
        if rest.is_empty() {
            return false;
        }
        if let Some(after) = rest.strip_prefix(b"*") {
            // `*` alone, or ending its list element.
            return after.is_empty() || trim_list_start(after).len() < after.len();
        }
        let tag_start = rest.strip_prefix(b"W/").unwrap_or(rest);
        let Some(body) = tag_start.strip_prefix(b"\"") else {
            return false;
        };
        let Some(end) = body.iter().position(|&b| b == b'"') else {
            return false;
        };
        let tag = &tag_start[..end + 2];
        if tag == etag {
            return true;
        }
        rest = &body[end + 1..];
        let separated = trim_list_start(rest);
        if separated.len() == rest.len() && !rest.is_empty() {
            // Something other than a comma or space right after a tag: not a list of tags.
            return false;
        }
    }
}

/// `list` without the spaces, tabs and commas that separate (or lead) list elements.
fn trim_list_start(list: &[u8]) -> &[u8] {
    let skip = list
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b','))
        .unwrap_or(list.len());
    &list[skip..]
}

async fn finish(
    mut res: Response<Body>,
    status: CacheStatus,
    (safe_method, head): (bool, bool),
    config: &Config,
    if_none_match: Vec<HeaderValue>,
) -> Response<Body> {
    res.headers_mut()
        .insert("x-cache", HeaderValue::from_static(status.as_str()));
    let cacheable = safe_method && status != CacheStatus::Bypass && res.status().is_success();
    if !cacheable {
        return res;
    }
    if let Some(max_age) = config.max_age
        && !res.headers().contains_key(header::CACHE_CONTROL)
    {
        let scope = if config.private { "private, " } else { "" };
        if let Ok(v) = HeaderValue::from_str(&format!("{scope}max-age={}", max_age.as_secs())) {
            res.headers_mut().insert(header::CACHE_CONTROL, v);
        }
    }
    // A body of unknown length (a stream, server-sent events) is not buffered: it may never end.
    let Some(len) = axum::body::HttpBody::size_hint(res.body()).exact() else {
        return res;
    };
    if !config.etag || res.status() != StatusCode::OK || res.headers().contains_key(header::ETAG) {
        return res;
    }
    // Wrapped around a whole axum `Router`, the layer gets a `HEAD`'s answer with its body already
    // dropped (its `Content-Length` still the `GET`'s): there is nothing to hash, and the hash of
    // nothing would be one tag for every resource. Inside the router (`Router::layer`) the body is
    // still there.
    if head
        && len == 0
        && res
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|l| l != "0")
    {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let bytes = match axum::body::to_bytes(body, len.try_into().unwrap_or(usize::MAX)).await {
        Ok(b) => b,
        Err(_) => {
            parts.status = StatusCode::INTERNAL_SERVER_ERROR;
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.remove(header::CONTENT_TYPE);
            return Response::from_parts(parts, Body::empty());
        }
    };
    let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&bytes));
    let matches = if_none_match
        .iter()
        .any(|v| none_match_names(v.as_bytes(), etag.as_bytes()));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        parts.headers.insert(header::ETAG, v);
    }
    if matches {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_TYPE);
        // Left without one, axum gives the empty body a `Content-Length: 0`, which hyper drops
        // from a `GET`'s `304` but sends with a `HEAD`'s, where it says the resource is empty.
        // RFC 9110 (8.6) lets a `304` carry the length of the `200`'s content, and a `HEAD` is
        // answered with that length anyway.
        if head {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        } else {
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::none_match_names;

    const ETAG: &[u8] = b"\"00000000000000ab\"";

    #[test]
    fn a_line_names_the_tag_alone_weakly_or_in_a_list() {
        for line in [
            &b"\"00000000000000ab\""[..],
            b"W/\"00000000000000ab\"",
            b"\"x\", \"00000000000000ab\"",
            b"\"x\",W/\"00000000000000ab\" ,\"y\"",
            b" ,\t\"00000000000000ab\",",
            b"*",
            b" * ",
        ] {
            assert!(
                none_match_names(line, ETAG),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn a_comma_inside_a_tag_is_part_of_it() {
        // Split at every comma, this malformed line had a piece that read as our tag.
        assert!(!none_match_names(b"\"a,\"00000000000000ab\",b\"", ETAG));
        assert!(!none_match_names(b"\"a, 00000000000000ab\"", ETAG));
        assert!(none_match_names(b"\"a,b\", \"00000000000000ab\"", ETAG));
    }

    #[test]
    fn nothing_else_matches() {
        for line in [
            &b""[..],
            b"00000000000000ab",
            b"\"00000000000000a\"",
            b"\"00000000000000abc\"",
            b"W/00000000000000ab",
            b"*x",
            b"\"00000000000000ab",
            b"\"x\"junk, \"00000000000000ab\"",
        ] {
            assert!(
                !none_match_names(line, ETAG),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
