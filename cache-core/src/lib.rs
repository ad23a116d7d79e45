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

mod cache;
mod clock;
mod flight;
mod key;
mod manager;
mod memory;
mod outcome;
mod policy;
mod stats;

#[doc(hidden)]
pub mod __private;

pub use cache::{BlockingCache, Cache, EntryOptions};
pub use clock::{Clock, ManualClock, TokioClock};
pub use key::{escape_glob, escape_key_part};
pub use manager::{AlreadyInstalled, CacheManager, CacheManagerBuilder};
pub use outcome::CacheValue;
pub use policy::{DEFAULT_MAX_ENTRIES, Eviction, Policy, Weigher};
pub use stats::CacheStats;

pub use cache_macros::cached;

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
