// Handlers with extractors: `State` is left out of the default key (it need not be `Serialize`),
// per-user input is fine when skipped or when the key is explicit, and the handler is still a
// `Handler` (checked by `debug_handler`, above and below).
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Json, debug_handler};
use cache_core::cached;
use serde::{Deserialize, Serialize};

#[derive(Clone)]
struct AppState;

#[derive(Clone, Serialize, Deserialize)]
struct Page {
    page: u32,
}

#[derive(Clone)]
struct CurrentUser {
    id: u64,
}

#[debug_handler]
#[cached]
async fn listing(State(_s): State<AppState>, Path(id): Path<u64>, Query(q): Query<Page>) -> Json<Page> {
    Json(Page { page: q.page + id as u32 })
}

#[cached]
#[debug_handler]
async fn created(Json(p): Json<Page>) -> (StatusCode, Json<Page>) {
    (StatusCode::CREATED, Json(p))
}

#[debug_handler]
#[cached(key = "me:{user_id}")]
async fn me(Extension(user): Extension<CurrentUser>, headers: HeaderMap, Path(user_id): Path<u64>) -> Result<Json<u64>, StatusCode> {
    let _ = user_id;
    let _ = headers;
    Ok(Json(user.id))
}

#[cached(skip(headers))]
async fn skipped(headers: HeaderMap, Path(id): Path<u64>) -> String {
    format!("{id} {}", headers.len())
}

fn main() {}
