//! Declarative caching for Rust services.
//!
//! Put `#[cached]` on a function and its results are cached in memory (and, with `cache-redis`,
//! in Redis), with per-key single flight, TTLs, bounds and stats:
//!
//! ```
//! use cache_core::cached;
//!
//! #[derive(Clone, Debug, PartialEq)]
//! struct User { id: u64, name: String }
//!
//! #[cached(ttl = 1800, key = "user:{id}")]
//! async fn get_user(id: u64) -> Result<User, String> {
//!     Ok(User { id, name: format!("user {id}") }) // a slow query in real life
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let first = get_user(42).await;   // runs the body, stores Ok(..)
//! let second = get_user(42).await;  // served from memory
//! assert_eq!(first, second);
//! # });
//! ```
//!
//! The pieces:
//! - [`cached`]: the attribute (see its docs for every option).
//! - [`CacheManager`]: named caches and their [`Policy`]; install one at start, or use the
//!   embedded default. Tests run against their own manager with [`CacheManager::scope`].
//! - [`Cache`]: the programmatic API (`get`, `set`, `delete`, `get_or_insert_with`).
//! - [`CacheStats`]: hits, misses, inserts, evictions, expirations per named cache.

mod alerts;
mod cache;
mod clock;
mod events;
mod export;
mod flight;
mod freshness;
mod health;
mod histogram;
mod hot_keys;
#[cfg(feature = "axum")]
pub mod http;
mod invalidation;
mod job;
mod key;
mod manager;
mod memory;
#[cfg(feature = "metrics")]
mod metrics_export;
mod outcome;
mod policy;
pub mod remote;
mod stats;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod warming;
mod write_gate;

#[doc(hidden)]
pub mod __private;

pub use alerts::{Alert, AlertKind, AlertRules};
pub use cache::{BlockingCache, Cache, EntryOptions};
pub use clock::{Clock, ManualClock, TokioClock};
pub use events::{Event, EventArgs, EventError};
pub use export::prometheus_text;
pub use freshness::{DEFAULT_FAIL_SAFE_THROTTLE, RefreshAhead, TimedOut};
pub use health::{CacheFill, Health, MemoryHealth, RemoteHealth};
pub use histogram::LatencySummary;
pub use job::MAX_SYNC_REFRESH_THREADS;
pub use key::template::TemplateError;
pub use key::{Glob, escape_glob, escape_key_part};
pub use manager::{AlreadyInstalled, CacheManager, CacheManagerBuilder};
pub use outcome::CacheValue;
pub use policy::{DEFAULT_LOCK_TTL, DEFAULT_MAX_ENTRIES, Eviction, Policy, Weigher};
pub use remote::{
    BreakerState, RemoteBackend, RemoteError, RemoteStats, RemoteTier, Resilience, Tier,
};
pub use stats::CacheStats;
pub use warming::{WarmReport, Warmer, WarmerStats};

pub use cache_macros::{cache_if, cached, invalidates};

/// The named cache `name` of the current manager (see [`CacheManager::current`]).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// cache_core::cache("greetings").set("hello", "world".to_string()).await;
/// # });
/// ```
pub fn cache(name: &str) -> Cache {
    Cache::named(name)
}

/// Removes `key` from the named cache `cache` of the current manager; see
/// [`CacheManager::invalidate_key`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// cache_core::cache("users").set("user:7", 7_u32).await;
/// assert!(cache_core::invalidate_key("users", "user:7").await);
/// assert_eq!(cache_core::cache("users").get::<u32>("user:7").await, None);
/// # });
/// ```
pub async fn invalidate_key(cache: &str, key: &str) -> bool {
    CacheManager::current().invalidate_key(cache, key).await
}

/// Removes every entry tagged `tag` from the current manager's caches; see
/// [`CacheManager::invalidate_tag`].
///
/// ```
/// use cache_core::EntryOptions;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let tagged = EntryOptions::new().tag("user:7");
/// cache_core::cache("users").set_with("user:7", 7_u32, tagged).await;
/// assert_eq!(cache_core::invalidate_tag("user:7").await, 1);
/// # });
/// ```
pub async fn invalidate_tag(tag: &str) -> usize {
    CacheManager::current().invalidate_tag(tag).await
}

/// Removes the keys of a named cache matching a glob; see [`CacheManager::invalidate_pattern`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// cache_core::cache("search").set("q:rust", 1_u8).await;
/// cache_core::cache("search").set("q:redis", 2_u8).await;
/// assert_eq!(cache_core::invalidate_pattern("search", "q:r*").await, 2);
/// # });
/// ```
pub async fn invalidate_pattern(cache: &str, pattern: &str) -> usize {
    CacheManager::current()
        .invalidate_pattern(cache, pattern)
        .await
}

/// Empties a named cache of the current manager.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// cache_core::cache("pages").set("a", 1_u8).await;
/// assert_eq!(cache_core::invalidate_cache("pages").await, 1);
/// assert!(cache_core::cache("pages").is_empty());
/// # });
/// ```
pub async fn invalidate_cache(cache: &str) -> usize {
    CacheManager::current().invalidate_cache(cache).await
}

/// Empties every cache of the current manager.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// cache_core::cache("pages").set("a", 1_u8).await;
/// cache_core::cache("users").set("a", 1_u8).await;
/// assert_eq!(cache_core::invalidate_all().await, 2);
/// # });
/// ```
pub async fn invalidate_all() -> usize {
    CacheManager::current().invalidate_all().await
}

/// Fires an invalidation event on the current manager; see [`CacheManager::fire`].
///
/// ```
/// use cache_core::{CacheManager, Event, EventArgs};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let event = Event::new("user_update", ["id"]).key("users", "user:{id}");
/// CacheManager::current().register_event(event)?;
/// cache_core::cache("users").set("user:7", 7_u32).await;
/// assert_eq!(cache_core::fire("user_update", &EventArgs::new().arg("id", 7)).await?, 1);
/// # Ok::<(), cache_core::EventError>(())
/// # }).unwrap();
/// ```
pub async fn fire(event: &str, args: &EventArgs) -> Result<usize, EventError> {
    CacheManager::current().fire(event, args).await
}
