// A handler that reads per-user input its default key does not cover would serve the first
// caller's response to everyone: each such argument is an error, unless it is in `skip(...)` or
// the key is explicit.
use axum::extract::{Extension, Path, Request, State};
use axum::http::HeaderMap;
use cache_core::cached;

#[derive(Clone)]
struct AppState;

#[derive(Clone)]
struct CurrentUser {
    id: u64,
}

#[cached]
async fn profile(
    State(_s): State<AppState>,
    headers: HeaderMap,
    Extension(user): Extension<CurrentUser>,
    Path(id): Path<u64>,
) -> String {
    format!("{id} {} {}", user.id, headers.len())
}

#[cached]
async fn whole_request(req: Request) -> String {
    req.uri().to_string()
}

// Allowed: skipped, or covered by an explicit key.
#[cached(skip(headers))]
async fn skipped(headers: HeaderMap, Path(id): Path<u64>) -> String {
    format!("{id} {}", headers.len())
}

// A type of one's own that shares an extractor's name: written bare, it is taken for the
// extractor, and the error says how to keep it in the key; named by a path, it is an ordinary
// argument (hashed into the key).
mod own {
    use cache_core::cached;

    #[derive(Clone, serde::Serialize)]
    pub struct Parts {
        pub id: u64,
    }

    #[cached]
    pub fn by_bare_name(parts: Parts) -> u64 {
        parts.id
    }

    #[cached]
    pub fn by_path(parts: self::Parts) -> u64 {
        parts.id
    }
}

fn main() {}
