//! The HTTP API.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use cache_core::http::CacheHeadersLayer;
use cache_core::{CacheManager, cached};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::db::Db;
use crate::error::{AppError, parse_id};
use crate::model::{Template, User, UserPatch, Video, VideoPage};
use crate::service;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) db: Arc<Db>,
    pub(crate) caches: CacheManager,
}

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/users/{id}", get(get_user).put(put_user))
        .route("/users/{id}/videos", get(get_user_videos))
        .route("/videos/{id}", get(get_video))
        // The same read without the cache, and a constant: the baselines of `scripts/load`.
        .route("/raw/videos/{id}", get(get_video_uncached))
        .route("/ping", get(ping))
        .route("/search", get(search))
        .route("/templates/{id}", get(get_template))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(state)
        // `x-cache: HIT | MISS | BYPASS` on every response, from what the cached calls did.
        .layer(CacheHeadersLayer::new())
}

async fn get_user(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<User>, AppError> {
    let id = parse_id(&id, "user")?;
    Ok(Json(service::user(&s.db, id).await?))
}

async fn put_user(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<UserPatch>, JsonRejection>,
) -> Result<Json<User>, AppError> {
    let id = parse_id(&id, "user")?;
    let Json(patch) = body.map_err(|e| AppError::Unprocessable(e.body_text()))?;
    if patch.name.is_none() && patch.email.is_none() {
        return Err(AppError::Unprocessable("give `name` and/or `email`".into()));
    }
    if patch.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(AppError::Unprocessable("`name` must not be empty".into()));
    }
    Ok(Json(
        service::update_user(&s.db, id, patch.name, patch.email).await?,
    ))
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<String>,
}

async fn get_user_videos(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<VideoPage>, AppError> {
    let id = parse_id(&id, "user")?;
    let page = match q.page.as_deref() {
        None => 1,
        Some(p) => p.parse::<u32>().ok().filter(|p| *p > 0).ok_or_else(|| {
            AppError::BadRequest(format!("page must be a positive integer, got {p:?}"))
        })?,
    };
    Ok(Json(service::user_videos(&s.db, id, page).await?))
}

/// Cached as a handler: the key is the video's id (`State` is never part of a key); errors (an
/// unknown id) are not cached. The id is parsed by its extractor, before the cache sees it, so
/// `/videos/5`, `/videos/+5` and `/videos/005` are one entry, not three a client could use to go
/// around the cache, and a bad id is a 400 that never reaches it.
#[cached(cache = "videos", ttl = 3600, key = "video:{id}")]
async fn get_video(
    State(s): State<AppState>,
    VideoId(id): VideoId,
) -> Result<Json<Video>, AppError> {
    Ok(Json(s.db.video(id).await?))
}

/// `GET /raw/videos/{id}`: `/videos/{id}` without the cache.
async fn get_video_uncached(
    State(s): State<AppState>,
    VideoId(id): VideoId,
) -> Result<Json<Video>, AppError> {
    Ok(Json(s.db.video(id).await?))
}

/// The `{id}` of a video route, parsed as [`parse_id`] does; a bad one is the same JSON 400.
pub(crate) struct VideoId(pub(crate) u64);

impl<S: Send + Sync> FromRequestParts<S> for VideoId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| AppError::BadRequest(e.body_text()))?;
        parse_id(&raw, "video").map(VideoId)
    }
}

async fn ping() -> &'static str {
    "pong"
}

#[derive(Deserialize)]
struct SearchQuery {
    q: Option<String>,
}

async fn search(
    State(s): State<AppState>,
    Query(q): Query<SearchQuery>,
) -> Result<Json<Value>, AppError> {
    let q = q.q.unwrap_or_default();
    if q.len() > 200 {
        return Err(AppError::BadRequest(
            "q is longer than 200 characters".into(),
        ));
    }
    // Queries under two characters bypass the cache (`#[cache_if]` on `service::search`).
    let cacheable = q.trim().chars().count() >= 2;
    let results = service::search(&s.db, q.clone()).await?;
    Ok(Json(
        json!({ "q": q, "cacheable": cacheable, "results": results }),
    ))
}

async fn get_template(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Template>, AppError> {
    let id = parse_id(&id, "template")?;
    Ok(Json(service::template(&s.db, id).await?))
}

async fn stats(State(s): State<AppState>) -> Json<Value> {
    let caches: Vec<Value> = s
        .caches
        .stats()
        .into_iter()
        .map(|c| {
            json!({
                "name": c.name,
                "hit_rate": c.hit_rate(),
                "memory": {
                    "hits": c.hits, "misses": c.misses, "inserts": c.inserts,
                    "entries": c.entries, "weight": c.weight, "evictions": c.evictions,
                    "expirations": c.expirations, "invalidations": c.invalidations,
                    "coalesced": c.coalesced, "bypassed": c.bypassed,
                },
                "remote": c.remote,
            })
        })
        .collect();
    Json(json!({ "db_queries": s.db.queries(), "caches": caches }))
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let mut text = s.caches.prometheus_text();
    text.push_str("# TYPE demo_db_queries_total counter\n");
    text.push_str(&format!("demo_db_queries_total {}\n", s.db.queries()));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn health(State(s): State<AppState>) -> Json<Value> {
    let h = s.caches.health().await;
    Json(json!({ "status": if h.healthy { "ok" } else { "degraded" }, "tiers": h }))
}
