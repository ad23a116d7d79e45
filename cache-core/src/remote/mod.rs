//! Remote tiers: what a backend such as `cache-redis` implements, and what the core does around
//! it (the value envelope, timeouts, the circuit breaker).
//!
//! The core owns the boundary: a remote tier sees only strings and bytes, never a Rust value and
//! never a `redis` type. Every value crosses it inside an [`envelope`] that carries its format
//! version, its key's hash and its type's fingerprint, so a value read under the wrong key or as
//! another type is a miss, not a wrong answer.

pub mod backplane;
mod blocking;
pub mod codec;
pub mod envelope;
pub(crate) mod lock;
pub(crate) mod resilient;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use blocking::{run as run_blocking, run_sync, spawn as spawn_background};
pub(crate) use lock::LockWait;
pub use lock::{LockAttempt, LockToken};
pub(crate) use resilient::ResilientTier;
pub use resilient::{BreakerState, RemoteStats, Resilience};

/// A boxed, sendable future: what the object-safe remote traits return.
///
/// ```
/// use cache_core::remote::BoxFuture;
///
/// fn answer<'a>() -> BoxFuture<'a, u32> {
///     Box::pin(async { 42 })
/// }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// assert_eq!(answer().await, 42);
/// # });
/// ```
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a remote operation failed. The core never shows these to a cached function's caller: a
/// failed read is a miss and a failed write is logged and counted (fail-open).
///
/// ```
/// use cache_core::RemoteError;
///
/// let e = RemoteError::TooLarge { size: 2048, limit: 1024 };
/// assert_eq!(e.to_string(), "value of 2048 bytes exceeds the remote tier's limit of 1024 bytes");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteError {
    /// The operation did not finish within the configured timeout.
    Timeout,
    /// The circuit breaker is open: the tier failed repeatedly and is skipped until a probe
    /// succeeds.
    CircuitOpen,
    /// The value is larger than the tier accepts.
    TooLarge {
        /// The encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Connecting or talking to the backend failed. The message never contains credentials.
    Backend(String),
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RemoteError::Timeout => f.write_str("remote cache operation timed out"),
            RemoteError::CircuitOpen => f.write_str("remote cache skipped: circuit breaker open"),
            RemoteError::TooLarge { size, limit } => {
                write!(
                    f,
                    "value of {size} bytes exceeds the remote tier's limit of {limit} bytes"
                )
            }
            RemoteError::Backend(msg) => write!(f, "remote cache error: {msg}"),
        }
    }
}

impl std::error::Error for RemoteError {}

/// One named cache's slice of a remote backend. Keys passed in are the cache's logical keys
/// (`user:42`); the tier adds its own namespace and cache prefix.
///
/// ```
/// use cache_core::RemoteBackend;
/// use cache_core::testing::MemoryBackend;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let users = MemoryBackend::new().tier("users");
/// users.set("user:1", b"raw".to_vec(), None, &[]).await?;
/// assert_eq!(users.get("user:1").await?, Some(b"raw".to_vec()));
/// assert!(users.delete("user:1").await?);
/// # Ok::<(), cache_core::RemoteError>(())
/// # }).unwrap();
/// ```
pub trait RemoteTier: Send + Sync + 'static {
    /// The bytes stored under `key`, if any.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>>;

    /// Stores `value` under `key`, expiring after `ttl` in the backend itself, and records the
    /// key under each tag.
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        tags: &'a [Arc<str>],
    ) -> BoxFuture<'a, Result<(), RemoteError>>;

    /// Removes `key`. True if it existed.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, RemoteError>>;

    /// Removes this cache's keys matching a glob (Redis `SCAN MATCH` syntax; the tier prefixes
    /// it with its namespace). Returns how many. Never `KEYS`, never `FLUSHDB`.
    fn delete_pattern<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>>;

    /// Removes every key of this cache. Returns how many.
    fn clear<'a>(&'a self) -> BoxFuture<'a, Result<u64, RemoteError>>;

    /// Takes the lock that elects one instance to compute `key` after a miss (distributed single
    /// flight): stores `token` as the lock's owner for `ttl` unless another token holds it. The
    /// lock lives beside the value, never where pattern invalidation or [`clear`](Self::clear)
    /// looks for values.
    ///
    /// The default answers [`LockAttempt::Unsupported`]: callers then compute at once, as
    /// without a lock.
    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        token: LockToken,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<LockAttempt, RemoteError>> {
        let _ = (key, token, ttl);
        Box::pin(std::future::ready(Ok(LockAttempt::Unsupported)))
    }

    /// Releases the lock of `key` if `token` still owns it (compare-and-delete, atomically: a
    /// lock that expired and was taken by another token stays). True if it was released.
    ///
    /// The default does nothing and answers `false`.
    fn unlock<'a>(
        &'a self,
        key: &'a str,
        token: LockToken,
    ) -> BoxFuture<'a, Result<bool, RemoteError>> {
        let _ = (key, token);
        Box::pin(std::future::ready(Ok(false)))
    }
}

/// A remote backend: a connection (or cluster) shared by every named cache of a manager.
///
/// ```
/// use cache_core::RemoteBackend;
/// use cache_core::testing::MemoryBackend;
/// use std::sync::Arc;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let backend = MemoryBackend::new();
/// backend.tier("users").set("user:1", b"raw".to_vec(), None, &["team:3".into()]).await?;
/// assert_eq!(backend.delete_tag("team:3").await?, 1);
/// assert!(backend.ping().await.is_ok());
/// # Ok::<(), cache_core::RemoteError>(())
/// # }).unwrap();
/// ```
pub trait RemoteBackend: Send + Sync + 'static {
    /// The tier of one named cache.
    fn tier(&self, cache: &str) -> Arc<dyn RemoteTier>;

    /// Removes every entry of every cache carrying `tag`. Returns how many.
    fn delete_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>>;

    /// Removes every key of this backend's namespace (all caches). Returns how many.
    fn clear_all(&self) -> BoxFuture<'_, Result<u64, RemoteError>>;

    /// A round trip to the backend, for health checks.
    fn ping(&self) -> BoxFuture<'_, Result<Duration, RemoteError>>;

    /// A description for logs and health output, with any password redacted.
    fn describe(&self) -> String;

    /// The backplane between instances sharing this backend, if it offers one. Hybrid caches
    /// need it to keep their memory tiers coherent.
    fn backplane(&self) -> Option<Arc<dyn backplane::Backplane>> {
        None
    }
}

/// Where a named cache keeps its entries.
///
/// ```
/// use cache_core::testing::MemoryBackend;
/// use cache_core::{CacheManager, Policy, Tier};
///
/// let manager = CacheManager::builder()
///     .remote(MemoryBackend::new())
///     .cache("sessions", Policy::new().tier(Tier::Hybrid))
///     .build();
/// assert_eq!(manager.cache("sessions").tier(), Tier::Hybrid);
/// assert_eq!(manager.cache("other").tier(), Tier::Memory);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tier {
    /// In this process only (the default).
    #[default]
    Memory,
    /// In the remote backend only: shared between processes, one network round trip per read.
    Remote,
    /// Memory first, the remote backend behind it (L1 + L2): a remote hit is promoted into memory.
    Hybrid,
}

impl Tier {
    pub(crate) fn uses_memory(self) -> bool {
        matches!(self, Tier::Memory | Tier::Hybrid)
    }

    pub(crate) fn uses_remote(self) -> bool {
        matches!(self, Tier::Remote | Tier::Hybrid)
    }
}
