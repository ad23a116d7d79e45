//! Errors as JSON responses. Errors are never cached (`#[cached]` stores only `Ok`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Clone, Debug)]
pub(crate) enum AppError {
    BadRequest(String),
    Unprocessable(String),
    NotFound(&'static str, u64),
    Internal(String),
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            AppError::Unprocessable(m) => (StatusCode::UNPROCESSABLE_ENTITY, m),
            AppError::NotFound(what, id) => {
                (StatusCode::NOT_FOUND, format!("{what} {id} not found"))
            }
            AppError::Internal(m) => {
                eprintln!("internal error: {m}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
        };
        (
            status,
            Json(json!({ "error": message, "status": status.as_u16() })),
        )
            .into_response()
    }
}

/// Parses a path id: a positive integer that SQLite's signed 64-bit rowids can hold, or a 400 that
/// says so (a larger `u64` failed only in the query, as a 500).
pub(crate) fn parse_id(raw: &str, what: &str) -> Result<u64, AppError> {
    raw.parse::<u64>()
        .ok()
        .filter(|id| (1..=i64::MAX as u64).contains(id))
        .ok_or_else(|| {
            AppError::BadRequest(format!(
                "{what} id must be a positive integer below 2^63, got {raw:?}"
            ))
        })
}

/// A cached read whose query ran past its hard timeout (`#[cached(timeout = ..)]`) and had no
/// fail-safe value to fall back on.
impl From<cache_core::TimedOut> for AppError {
    fn from(t: cache_core::TimedOut) -> Self {
        AppError::Internal(format!("database query timed out after {:?}", t.after))
    }
}
