// An extractor that axum extracts optionally (`Option<T>`) or with its rejection (`Result<T, E>`)
// carries the same per-user input as the bare extractor: the same error, not a complaint that
// the wrapper is not `Serialize` (whose way out, `skip`, would hide the leak).
use axum::extract::rejection::ExtensionRejection;
use axum::extract::{Extension, Path};
use cache_core::cached;

#[derive(Clone, serde::Serialize)]
struct CurrentUser {
    id: u64,
}

#[cached]
async fn greeting(Path(id): Path<u64>, user: Option<Extension<CurrentUser>>) -> String {
    format!("{id} {}", user.map_or(0, |Extension(u)| u.id))
}

#[cached]
async fn inbox(user: Result<Extension<CurrentUser>, ExtensionRejection>) -> String {
    user.map_or_else(|_| "anonymous".into(), |Extension(u)| u.id.to_string())
}

// Allowed: covered by an explicit key, or an ordinary `Option` argument.
#[cached(key = "greeting:{id}")]
async fn keyed(Path(id): Path<u64>, user: Option<Extension<CurrentUser>>) -> String {
    format!("{id} {}", user.is_some())
}

#[cached]
async fn page(number: Option<u32>) -> String {
    number.unwrap_or(1).to_string()
}

fn main() {}
