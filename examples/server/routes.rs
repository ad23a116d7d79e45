//! The HTTP API.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use cache_core::CacheManager;
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
        .route("/search", get(search))
        .route("/templates/{id}", get(get_template))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(state)
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

async fn get_video(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Video>, AppError> {
    let id = parse_id(&id, "video")?;
    Ok(Json(service::video(&s.db, id).await?))
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
    let (results, cached) = if q.trim().chars().count() < 2 {
        // Too short to be worth caching: straight to the database.
        (s.db.search(q.clone()).await?, false)
    } else {
        (service::search(&s.db, q.clone()).await?, true)
    };
    Ok(Json(
        json!({ "q": q, "cacheable": cached, "results": results }),
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
