//! The cached reads, one per data type, each in the named cache whose policy fits it (see
//! `main.rs`). Writes invalidate by tag, so a user's profile and every page of their videos go
//! together.

use std::sync::Arc;

use cache_core::{cache_if, cached};

use crate::db::Db;
use crate::error::AppError;
use crate::model::{Template, User, Video, VideoPage};

/// A profile survives a database outage: for an hour past its TTL the last good profile answers
/// a failing or hanging (over 2 s) query, marked `x-cache: STALE`.
#[cached(
    cache = "users",
    ttl = 1800,
    key = "user:{id}",
    tags = ["user:{id}"],
    fail_safe = "1h",
    timeout = "2s"
)]
pub(crate) async fn user(db: &Arc<Db>, id: u64) -> Result<User, AppError> {
    db.user(id).await
}

#[cached(cache = "videos", ttl = 300, key = "user:{user_id}:videos:{page}", tags = ["user:{user_id}"])]
pub(crate) async fn user_videos(
    db: &Arc<Db>,
    user_id: u64,
    page: u32,
) -> Result<VideoPage, AppError> {
    db.user_videos(user_id, page).await
}

/// Search results, keyed case-insensitively (SQLite's `LIKE` is). Queries under two characters
/// are not cached (counted as bypassed): they match nearly everything and are rarely repeated.
#[cached(cache = "search", ttl = 600, key = "search:{q:lower}")]
#[cache_if(q.trim().chars().count() >= 2)]
pub(crate) async fn search(db: &Arc<Db>, q: String) -> Result<Vec<Video>, AppError> {
    db.search(q).await
}

#[cached(cache = "static", key = "template:{id}")]
pub(crate) async fn template(db: &Arc<Db>, id: u64) -> Result<Template, AppError> {
    db.template(id).await
}

/// Loads every template at start, so the first page views are hits.
pub(crate) async fn warm_templates(db: &Arc<Db>) -> usize {
    let mut warmed = 0;
    for id in 1..=crate::db::TEMPLATES {
        if template(db, id).await.is_ok() {
            warmed += 1;
        }
    }
    warmed
}

/// Applies a patch and invalidates everything cached about the user, on this instance and (with
/// Redis) on every other.
pub(crate) async fn update_user(
    db: &Arc<Db>,
    id: u64,
    name: Option<String>,
    email: Option<String>,
) -> Result<User, AppError> {
    db.update_user(id, name, email).await?;
    cache_core::invalidate_tag(&format!("user:{id}")).await;
    user(db, id).await
}
