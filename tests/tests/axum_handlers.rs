//! `#[cached]` on axum handlers: extractors in the arguments, `State` left out of the key,
//! `Json` values, the `Handler` bound kept (`#[debug_handler]` above and below), and the
//! `x-cache` layer.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router, debug_handler};
use cache_core::http::CacheHeadersLayer;
use cache_core::{CacheManager, Policy, cached};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;

#[derive(Clone)]
struct AppState {
    runs: Arc<AtomicUsize>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Item {
    id: u64,
    page: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct PageQuery {
    page: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct NewItem {
    id: u64,
}

#[debug_handler]
#[cached(cache = "handlers", ttl = 60)]
async fn item(
    State(s): State<AppState>,
    Path(id): Path<u64>,
    Query(q): Query<PageQuery>,
) -> Json<Item> {
    s.runs.fetch_add(1, Ordering::SeqCst);
    Json(Item { id, page: q.page })
}

#[cached(cache = "handlers", ttl = 60)]
#[debug_handler]
async fn item_result(
    State(s): State<AppState>,
    Path((a, b)): Path<(u64, u32)>,
) -> Result<Json<Item>, (StatusCode, String)> {
    s.runs.fetch_add(1, Ordering::SeqCst);
    if a == 0 {
        return Err((StatusCode::NOT_FOUND, "no item 0".into()));
    }
    Ok(Json(Item { id: a, page: b }))
}

#[debug_handler]
#[cached(cache = "handlers", ttl = 60)]
async fn created(State(s): State<AppState>, Json(body): Json<NewItem>) -> (StatusCode, Json<Item>) {
    s.runs.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::CREATED,
        Json(Item {
            id: body.id,
            page: 1,
        }),
    )
}

/// Answers 503 while `s.runs` is below 2, then 200.
#[cached(cache = "handlers", ttl = 60)]
async fn status_of(State(s): State<AppState>, Path(id): Path<u64>) -> (StatusCode, Json<Item>) {
    let run = s.runs.fetch_add(1, Ordering::SeqCst) + 1;
    let status = if run < 2 {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(Item { id, page: 1 }))
}

/// Answers 200 on its first run, 503 after (its database went down).
#[cached(cache = "handlers", ttl = 10, fail_safe = 600)]
async fn kept_status(State(s): State<AppState>, Path(id): Path<u64>) -> (StatusCode, Json<Item>) {
    let run = s.runs.fetch_add(1, Ordering::SeqCst) + 1;
    let status = if run == 1 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Item {
            id,
            page: run as u32,
        }),
    )
}

/// A per-user input the response does not depend on, skipped explicitly.
#[debug_handler]
#[cached(cache = "handlers", ttl = 60, skip(headers))]
async fn with_headers(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> String {
    let _ = headers;
    s.runs.fetch_add(1, Ordering::SeqCst);
    format!("item {id}")
}

/// A per-user input covered by an explicit key.
#[cached(cache = "handlers", ttl = 60, key = "user-page:{user}")]
async fn per_user(State(s): State<AppState>, headers: HeaderMap, user: String) -> String {
    let _ = headers;
    s.runs.fetch_add(1, Ordering::SeqCst);
    format!("for {user}")
}

fn app(state: AppState) -> Router {
    Router::new()
        .route("/items/{id}", get(item))
        .route("/pairs/{a}/{b}", get(item_result))
        .route("/items", post(created))
        .route("/headers/{id}", get(with_headers))
        .route("/plain", get(|| async { "plain" }))
        .route("/status/{id}", get(status_of))
        .with_state(state)
        .layer(
            CacheHeadersLayer::new()
                .max_age(Duration::from_secs(30))
                .etag(true),
        )
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn get_path(app: &Router, path: &str) -> Reply {
    send(app, Request::get(path).body(Body::empty()).unwrap()).await
}

fn x_cache(r: &Reply) -> &str {
    r.headers
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("<none>")
}

fn manager() -> CacheManager {
    CacheManager::builder()
        .cache("handlers", Policy::new().max_entries(1000))
        .build()
}

#[tokio::test]
async fn state_is_left_out_of_the_key_and_extractors_are_in_it() {
    let m = manager();
    m.scope(async {
        let runs = Arc::new(AtomicUsize::new(0));
        // Two different states: the key does not depend on which one the handler got.
        let a = app(AppState { runs: runs.clone() });
        let b = app(AppState { runs: runs.clone() });
        let first = get_path(&a, "/items/5?page=2").await;
        assert_eq!(first.status, StatusCode::OK);
        assert_eq!(first.body, r#"{"id":5,"page":2}"#);
        assert_eq!(x_cache(&first), "MISS");
        let again = get_path(&b, "/items/5?page=2").await;
        assert_eq!(
            (again.body.as_str(), x_cache(&again)),
            (first.body.as_str(), "HIT")
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Another query string is another key.
        let other = get_path(&a, "/items/5?page=3").await;
        assert_eq!(x_cache(&other), "MISS");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    })
    .await;
}

#[tokio::test]
async fn results_cache_ok_only_and_tuples_are_keys() {
    let m = manager();
    m.scope(async {
        let runs = Arc::new(AtomicUsize::new(0));
        let app = app(AppState { runs: runs.clone() });
        for _ in 0..2 {
            let r = get_path(&app, "/pairs/0/1").await;
            assert_eq!(r.status, StatusCode::NOT_FOUND);
            assert_eq!(x_cache(&r), "MISS", "an error is not cached");
            assert!(!r.headers.contains_key(header::CACHE_CONTROL));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        let r = get_path(&app, "/pairs/3/4").await;
        assert_eq!((r.status, x_cache(&r)), (StatusCode::OK, "MISS"));
        let r = get_path(&app, "/pairs/3/4").await;
        assert_eq!((r.status, x_cache(&r)), (StatusCode::OK, "HIT"));
        assert_eq!(r.body, r#"{"id":3,"page":4}"#);
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    })
    .await;
}

#[tokio::test]
async fn json_bodies_are_keys_and_status_tuples_are_values() {
    let m = manager();
    m.scope(async {
        let runs = Arc::new(AtomicUsize::new(0));
        let app = app(AppState { runs: runs.clone() });
        for expect in ["MISS", "HIT"] {
            let req = Request::post("/items")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"id":9}"#))
                .unwrap();
            let r = send(&app, req).await;
            assert_eq!((r.status, x_cache(&r)), (StatusCode::CREATED, expect));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    })
    .await;
}

#[tokio::test]
async fn skipped_per_user_inputs_are_allowed() {
    let m = manager();
    m.scope(async {
        let runs = Arc::new(AtomicUsize::new(0));
        let app = app(AppState { runs: runs.clone() });
        assert_eq!(get_path(&app, "/headers/1").await.body, "item 1");
        assert_eq!(x_cache(&get_path(&app, "/headers/1").await), "HIT");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let state = AppState { runs: runs.clone() };
        assert_eq!(
            per_user(State(state.clone()), HeaderMap::new(), "ann".into()).await,
            "for ann"
        );
        assert_eq!(
            per_user(State(state), HeaderMap::new(), "ann".into()).await,
            "for ann"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    })
    .await;
}

#[tokio::test]
async fn the_layer_sets_cache_control_etag_and_answers_304() {
    let m = manager();
    m.scope(async {
        let app = app(AppState {
            runs: Arc::new(AtomicUsize::new(0)),
        });
        let r = get_path(&app, "/items/77?page=1").await;
        assert_eq!(r.headers.get(header::CACHE_CONTROL).unwrap(), "max-age=30");
        let etag = r.headers.get(header::ETAG).expect("an ETag").clone();
        let req = Request::get("/items/77?page=1")
            .header(header::IF_NONE_MATCH, etag.clone())
            .body(Body::empty())
            .unwrap();
        let r = send(&app, req).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED);
        assert_eq!(r.body, "");
        assert_eq!(r.headers.get(header::ETAG), Some(&etag));
        assert_eq!(x_cache(&r), "HIT");
        // `If-None-Match` is a list, which may come as several lines: the tag on any of them
        // matches, and tags on none of them do not.
        let two_lines = |second: &str| {
            Request::get("/items/77?page=1")
                .header(header::IF_NONE_MATCH, "\"another\", W/\"a,b\"")
                .header(header::IF_NONE_MATCH, second)
                .body(Body::empty())
                .unwrap()
        };
        let r = send(&app, two_lines(etag.to_str().unwrap())).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED);
        let r = send(&app, two_lines("\"yet-another\"")).await;
        assert_eq!((r.status, r.body.is_empty()), (StatusCode::OK, false));
        // A route without a cached call is a BYPASS, without cache headers.
        let r = get_path(&app, "/plain").await;
        assert_eq!((x_cache(&r), r.body.as_str()), ("BYPASS", "plain"));
        assert!(!r.headers.contains_key(header::ETAG));
        assert!(!r.headers.contains_key(header::CACHE_CONTROL));
    })
    .await;
}

/// A `HEAD` is answered by axum's router with the `GET` handler's headers and no body. With the
/// layer inside the router (`Router::layer`) it sees the body before axum drops it; wrapped
/// around the whole router (`ServiceBuilder`, `Layer::layer(&layer, router)`) it sees the body
/// already dropped, and hashed that: every resource's `HEAD` got the one `ETag` of an empty body,
/// unlike its `GET`'s, and an `If-None-Match` of that tag was a `304` for any resource.
#[tokio::test]
async fn a_head_never_gets_the_etag_of_the_empty_body_axum_sent_it() {
    use tower::Layer;
    let m = manager();
    m.scope(async {
        let state = AppState {
            runs: Arc::new(AtomicUsize::new(0)),
        };
        let router = Router::new()
            .route("/items/{id}", get(item))
            .with_state(state);
        let inner = router.clone().layer(CacheHeadersLayer::new().etag(true));
        let outer = CacheHeadersLayer::new().etag(true).layer(router);
        // The tag a HEAD around the router answered for the previous resource.
        let mut previous_head_etag = None;
        let reply = |res: axum::response::Response| Reply {
            status: res.status(),
            headers: res.headers().clone(),
            body: String::new(),
        };
        for path in ["/items/1?page=1", "/items/2?page=1"] {
            let got = get_path(&inner, path).await;
            let etag = got.headers.get(header::ETAG).expect("a GET's ETag").clone();
            let head = || Request::head(path).body(Body::empty()).unwrap();
            let r = send(&inner, head()).await;
            assert_eq!(
                r.headers.get(header::ETAG),
                Some(&etag),
                "inside the router"
            );
            let r = reply(outer.clone().oneshot(head()).await.unwrap());
            assert_eq!(r.status, StatusCode::OK);
            assert!(
                r.headers.get(header::ETAG).is_none_or(|t| t == etag),
                "around the router: {:?}, the GET's is {etag:?}",
                r.headers.get(header::ETAG)
            );
            if let Some(other) = previous_head_etag.take() {
                let mut req = head();
                req.headers_mut().insert(header::IF_NONE_MATCH, other);
                let r = reply(outer.clone().oneshot(req).await.unwrap());
                assert_eq!(
                    r.status,
                    StatusCode::OK,
                    "another resource's tag is no match"
                );
            }
            previous_head_etag = r.headers.get(header::ETAG).cloned();
        }
    })
    .await;
}

/// What a client reads off the wire for a `304`, from a real listening server: axum gives the
/// empty `304` body a `Content-Length: 0`, which hyper drops from a `GET`'s answer but sends with a
/// `HEAD`'s, telling the client the resource is empty. RFC 9110 allows a `304` a `Content-Length`
/// only when it is the length of the `200`'s content; the `HEAD`'s now carries that one.
#[tokio::test]
async fn a_304_on_the_wire_never_claims_an_empty_resource() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let m = manager();
    let scoped = m.clone();
    let router = app(AppState {
        runs: Arc::new(AtomicUsize::new(0)),
    })
    .layer(axum::middleware::from_fn(
        move |req: Request<Body>, next: axum::middleware::Next| {
            let m = scoped.clone();
            async move { m.scope(next.run(req)).await }
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    // One request on its own connection; the head of the answer, lower-cased, and its body.
    let exchange = |request: String| async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
        (head.to_ascii_lowercase(), body.to_owned())
    };
    let request = |method: &str, etag: Option<&str>| {
        let condition = etag.map_or(String::new(), |t| format!("if-none-match: {t}\r\n"));
        format!(
            "{method} /items/9?page=3 HTTP/1.1\r\nhost: test\r\nconnection: close\r\n{condition}\r\n"
        )
    };
    let header = |head: &str, name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_owned))
    };

    let (head, body) = exchange(request("GET", None)).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let etag = header(&head, "etag").expect("an ETag");
    let length = body.len().to_string();
    assert_eq!(header(&head, "content-length"), Some(length.clone()));

    let (head, body) = exchange(request("GET", Some(&etag))).await;
    assert!(head.starts_with("http/1.1 304"), "{head}");
    assert_eq!(body, "");
    assert_eq!(header(&head, "content-length"), None, "{head}");

    let (head, body) = exchange(request("HEAD", Some(&etag))).await;
    assert!(head.starts_with("http/1.1 304"), "{head}");
    assert_eq!(body, "");
    assert_eq!(header(&head, "etag"), Some(etag.clone()));
    assert_eq!(
        header(&head, "content-length"),
        Some(length.clone()),
        "the GET's length, not 0"
    );

    let (head, _) = exchange(request("HEAD", None)).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(header(&head, "content-length"), Some(length));
}

#[tokio::test]
async fn without_the_layer_handlers_are_cached_the_same() {
    let m = manager();
    m.scope(async {
        let runs = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/items/{id}", get(item))
            .with_state(AppState { runs: runs.clone() });
        for _ in 0..3 {
            let r = app
                .clone()
                .oneshot(Request::get("/items/1?page=1").body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert!(!r.headers().contains_key("x-cache"));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    })
    .await;
}

#[test]
// The `&&` is autoref specialization, as in the macro's expansion: it is what picks the codec.
#[allow(clippy::needless_borrow)]
fn json_values_travel_as_their_content_and_others_stay_in_memory() {
    #[allow(unused_imports)]
    use cache_core::remote::codec::{CodecProbe, ViaNothing as _, ViaSerde as _};
    struct Opaque;
    assert!((&&CodecProbe::<Json<Item>>::new()).codec().is_some());
    assert!((&&CodecProbe::<Json<Opaque>>::new()).codec().is_none());
    assert!(
        (&&CodecProbe::<(StatusCode, Json<Item>)>::new())
            .codec()
            .is_none()
    );
}

#[tokio::test]
async fn only_answers_to_get_and_head_get_cache_headers_or_a_304() {
    let m = manager();
    m.scope(async {
        let app = app(AppState {
            runs: Arc::new(AtomicUsize::new(0)),
        });
        let post = |if_none_match: Option<&str>| {
            let mut req = Request::post("/items").header(header::CONTENT_TYPE, "application/json");
            if let Some(tag) = if_none_match {
                req = req.header(header::IF_NONE_MATCH, tag);
            }
            req.body(Body::from(r#"{"id":5}"#)).unwrap()
        };
        let r = send(&app, post(None)).await;
        assert_eq!((r.status, x_cache(&r)), (StatusCode::CREATED, "MISS"));
        assert!(
            !r.headers.contains_key(header::CACHE_CONTROL),
            "{:?}",
            r.headers
        );
        assert!(!r.headers.contains_key(header::ETAG), "{:?}", r.headers);
        // A matching precondition on an unsafe method is not answered "not modified" (the
        // request was carried out).
        let r = send(&app, post(Some("*"))).await;
        assert_eq!((r.status, x_cache(&r)), (StatusCode::CREATED, "HIT"));
        assert!(r.body.contains("\"id\":5"), "{}", r.body);
    })
    .await;
}

#[tokio::test]
async fn private_makes_the_max_age_private() {
    let m = manager();
    m.scope(async {
        let app = Router::new()
            .route("/items/{id}", get(item))
            .with_state(AppState {
                runs: Arc::new(AtomicUsize::new(0)),
            })
            .layer(
                CacheHeadersLayer::new()
                    .max_age(Duration::from_secs(30))
                    .private(true),
            );
        let r = get_path(&app, "/items/8?page=1").await;
        assert_eq!(
            r.headers.get(header::CACHE_CONTROL).unwrap(),
            "private, max-age=30"
        );
    })
    .await;
}

#[tokio::test]
async fn a_status_tuple_is_cached_only_when_the_status_is_a_success() {
    let m = manager();
    m.scope(async {
        let runs = Arc::new(AtomicUsize::new(0));
        let app = app(AppState { runs: runs.clone() });
        let r = get_path(&app, "/status/3").await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!r.headers.contains_key(header::CACHE_CONTROL));
        // The 503 was not stored: the handler runs again, and its 200 is.
        let r = get_path(&app, "/status/3").await;
        assert_eq!((r.status, x_cache(&r)), (StatusCode::OK, "MISS"));
        let r = get_path(&app, "/status/3").await;
        assert_eq!((r.status, x_cache(&r)), (StatusCode::OK, "HIT"));
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_5xx_status_tuple_is_a_failure_the_fail_safe_value_replaces() {
    let m = CacheManager::builder()
        .clock(cache_core::Clock::tokio())
        .cache("handlers", Policy::new().max_entries(1000))
        .build();
    m.scope(async {
        let runs = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/kept/{id}", get(kept_status))
            .with_state(AppState { runs: runs.clone() });
        let first = get_path(&app, "/kept/4").await;
        assert_eq!(first.status, StatusCode::OK);
        tokio::time::advance(Duration::from_secs(11)).await;
        // Past the TTL the handler runs again and answers 503: the kept 200 is served instead.
        let r = get_path(&app, "/kept/4").await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (StatusCode::OK, first.body.as_str())
        );
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(m.cache("handlers").stats().fail_safe, 1);
    })
    .await;
}

/// Answers at once on its first run; later runs take 5 s (its database got slow).
#[cached(cache = "handlers", ttl = 10, fail_safe = 600, soft_timeout = "100ms")]
async fn slowed(State(s): State<AppState>, Path(id): Path<u64>) -> Json<Item> {
    let run = s.runs.fetch_add(1, Ordering::SeqCst) + 1;
    if run > 1 {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    Json(Item {
        id,
        page: run as u32,
    })
}

/// A call that ran its body but answered with its fail-safe value (the body failed) or its
/// soft-timeout fallback served a value past its TTL: `STALE`, as the layer's docs say, not the
/// `MISS` its body run had recorded first, which hid every fallback answer of an outage.
#[tokio::test(start_paused = true)]
async fn a_fallback_answer_is_marked_stale() {
    let m = CacheManager::builder()
        .clock(cache_core::Clock::tokio())
        .cache("handlers", Policy::new().max_entries(1000))
        .build();
    m.scope(async {
        let runs = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/kept/{id}", get(kept_status))
            .route("/slowed/{id}", get(slowed))
            .with_state(AppState { runs: runs.clone() })
            .layer(CacheHeadersLayer::new());
        let first = get_path(&app, "/kept/5").await;
        assert_eq!((first.status, x_cache(&first)), (StatusCode::OK, "MISS"));
        tokio::time::advance(Duration::from_secs(11)).await;
        // The handler runs again and answers 503: the kept 200 is served.
        let failed = get_path(&app, "/kept/5").await;
        assert_eq!(failed.body, first.body);
        assert_eq!(x_cache(&failed), "STALE");
        assert_eq!(runs.load(Ordering::SeqCst), 2);

        runs.store(0, Ordering::SeqCst);
        let first = get_path(&app, "/slowed/6").await;
        assert_eq!(x_cache(&first), "MISS");
        tokio::time::advance(Duration::from_secs(11)).await;
        // The handler runs again and passes its soft timeout: the kept value is served.
        let slow = get_path(&app, "/slowed/6").await;
        assert_eq!(slow.body, first.body);
        assert_eq!(x_cache(&slow), "STALE");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(m.cache("handlers").stats().fail_safe, 1);
    })
    .await;
}

#[tokio::test]
async fn a_streamed_body_is_passed_through_without_an_etag() {
    // Buffering a stream to hash it could wait for ever (server-sent events); its length is not
    // known up front, which is what the layer goes by.
    let m = manager();
    m.scope(async {
        let runs = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route(
                "/stream/{a}/{b}",
                get(
                    |state: State<AppState>, path: Path<(u64, u32)>| async move {
                        let Json(item) = item_result(state, path).await.unwrap();
                        let chunks = [format!("{}", item.id), format!(":{}", item.page)];
                        Body::from_stream(futures_util::stream::iter(
                            chunks.map(Ok::<_, std::io::Error>),
                        ))
                    },
                ),
            )
            .with_state(AppState { runs })
            .layer(CacheHeadersLayer::new().etag(true));
        let r = get_path(&app, "/stream/6/2").await;
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "6:2"));
        assert_eq!(x_cache(&r), "MISS");
        assert!(!r.headers.contains_key(header::ETAG), "{:?}", r.headers);
    })
    .await;
}
