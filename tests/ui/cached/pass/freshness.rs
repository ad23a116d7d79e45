//! Every freshness option, on the function shapes that take them.
#![deny(warnings)]

use std::sync::Arc;

use cache_core::{TimedOut, cached};

#[derive(Debug, Clone)]
pub enum DbError {
    Timeout,
    Missing,
}

impl From<TimedOut> for DbError {
    fn from(_: TimedOut) -> Self {
        DbError::Timeout
    }
}

#[cached(
    ttl = 60,
    stale = 600,
    fail_safe = "1h",
    soft_timeout = "100ms",
    timeout = "2s",
    refresh_ahead,
    jitter = 10,
    key = "user:{id}"
)]
pub async fn user(id: u64, db: Arc<String>) -> Result<String, DbError> {
    if id == 0 {
        return Err(DbError::Missing);
    }
    Ok(format!("{db}:{id}"))
}

#[cached(ttl = 60, refresh_ahead = 0.8)]
pub fn setting(name: String) -> String {
    name
}

// Fail-safe alone runs nothing in the background: borrowed arguments are fine.
#[cached(ttl = 60, fail_safe = 600)]
pub async fn borrowed(name: &str) -> Result<String, DbError> {
    Ok(name.to_owned())
}

pub struct Repo;

impl Repo {
    #[cached(ttl = 60, stale = 600)]
    pub async fn by_id(self: Arc<Self>, id: u64) -> u64 {
        id
    }
}

fn main() {
    let _ = (user, setting, borrowed, Repo::by_id, DbError::Timeout);
}
