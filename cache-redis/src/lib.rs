//! The Redis tier of cache-core: standalone Redis and Redis Cluster behind cache-core's
//! [`RemoteBackend`](cache_core::RemoteBackend) trait.
//!
//! ```no_run
//! use cache_core::RemoteBackend;
//! use cache_redis::{RedisBackend, RedisConfig};
//! use std::sync::Arc;
//!
//! let backend: Arc<dyn RemoteBackend> = Arc::new(RedisBackend::new(
//!     RedisConfig::standalone("redis://127.0.0.1:6379").namespace("myapp"),
//! ));
//! ```
//!
//! What it guarantees:
//! - **Lazy and panic-free.** [`RedisBackend::new`] never connects and never fails; the first
//!   operation connects, operations while Redis is down fail fast, and the connection heals
//!   itself when Redis returns. Connection and reply timeouts bound every wait.
//! - **Namespaced.** Keys are `{namespace}:{cache}:{key}`; tag records are
//!   `{namespace}:%tag:{tag}`. Clearing a cache or a namespace touches nothing else.
//! - **No database-wide commands.** Bulk deletes are `SCAN MATCH` + `UNLINK` in batches, on every
//!   master of a cluster; never `KEYS`, `FLUSHDB` or `FLUSHALL`. A tag's record is a
//!   sorted set of its values' keys, so invalidating a tag touches only its members, in
//!   whichever slots they live; each write of the tag drops the names of expired values.
//! - **No leaked passwords.** `Debug`, [`describe`](cache_core::RemoteBackend::describe),
//!   logs and error messages show URLs through [`redact`].
//!
//! Values are opaque bytes here: cache-core writes its envelope (see `docs/redis.md`).
//!
//! A backend's connections belong to the tokio runtime that first uses it; create one per
//! runtime (one per `#[tokio::test]`, for instance).

mod backend;
mod backplane;
mod config;
mod conn;
mod keys;
mod redact;

pub use backend::{RedisBackend, RedisTier};
pub use backplane::RedisBackplane;
pub use config::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_KEY_BYTES, DEFAULT_MAX_VALUE_BYTES, DEFAULT_NAMESPACE,
    DEFAULT_RESPONSE_TIMEOUT, RedisConfig,
};
pub use redact::redact;
