//! [`Cache`]: the programmatic API of one named cache, for what a macro cannot express (sessions,
//! values written by one function and read by another, warming).
//!
//! The macros expand into the same single-flight path as [`Cache::get_or_insert_with`], so code
//! that mixes both sees one cache.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::flight;
use crate::key::{KeyBuf, lookup_hash};
use crate::memory::{InsertOptions, MemoryStore};
use crate::outcome::{CacheValue, PlainStrategy, ResultStrategy};
use crate::{CacheStats, Eviction};

/// A handle to one named cache. Cheap to clone.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use cache_core::{CacheManager, EntryOptions};
/// use std::time::Duration;
///
/// let sessions = CacheManager::builder().build().cache("sessions");
/// sessions
///     .set_with("session:abc", 7_u64, EntryOptions::new().ttl(Duration::from_secs(3600)).tag("user:7"))
///     .await;
/// assert_eq!(sessions.get::<u64>("session:abc").await, Some(7));
/// assert!(sessions.delete("session:abc").await);
/// assert_eq!(sessions.get::<u64>("session:abc").await, None);
/// # });
/// ```
#[derive(Clone)]
pub struct Cache {
    store: Arc<MemoryStore>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.name())
            .field("entries", &self.len())
            .finish()
    }
}

/// Per-entry options for [`Cache::set_with`].
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct EntryOptions {
    ttl: Option<Duration>,
    tags: Vec<Arc<str>>,
}

impl EntryOptions {
    /// No TTL override, no tags.
    pub fn new() -> Self {
        Self::default()
    }

    /// This entry's time to live (instead of the cache policy's).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Adds a tag, for [`Cache::invalidate_tag`].
    pub fn tag(mut self, tag: impl AsRef<str>) -> Self {
        self.tags.push(Arc::from(tag.as_ref()));
        self
    }

    fn into_insert(self) -> InsertOptions {
        InsertOptions {
            ttl: self.ttl,
            tags: self.tags,
        }
    }
}

impl Cache {
    pub(crate) fn from_store(store: Arc<MemoryStore>) -> Self {
        Cache { store }
    }

    pub(crate) fn store(&self) -> &MemoryStore {
        &self.store
    }

    /// The current manager's cache of this name.
    pub fn named(name: &str) -> Self {
        crate::CacheManager::current().cache(name)
    }

    /// This cache's name.
    pub fn name(&self) -> &str {
        &self.store.name
    }

    /// The value under `key`, if present, live, and of type `T` (a value stored as another type is
    /// a miss, never a wrongly typed answer).
    pub async fn get<T: CacheValue>(&self, key: &str) -> Option<T> {
        self.blocking().get(key)
    }

    /// Stores `value` under `key` with the cache's default TTL.
    pub async fn set<T: CacheValue>(&self, key: &str, value: T) {
        self.blocking().set(key, value)
    }

    /// Stores `value` under `key` with its own TTL and tags.
    pub async fn set_with<T: CacheValue>(&self, key: &str, value: T, options: EntryOptions) {
        self.blocking().set_with(key, value, options)
    }

    /// Removes `key`. True if a live entry was removed.
    pub async fn delete(&self, key: &str) -> bool {
        self.blocking().delete(key)
    }

    /// The value under `key`, or the one `init` computes, stored. Concurrent callers for the same
    /// key run `init` once and share its value.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = cache_core::CacheManager::builder().build().cache("pages");
    /// let page = cache.get_or_insert_with("page:1", || async { "hello".to_string() }).await;
    /// assert_eq!(page, "hello");
    /// # });
    /// ```
    pub async fn get_or_insert_with<T, F, Fut>(&self, key: &str, init: F) -> T
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let key = KeyBuf::from_key(key);
        flight::get_or_compute(
            &self.store,
            &key,
            InsertOptions::default,
            &PlainStrategy::new(),
            async { init().await },
        )
        .await
    }

    /// Like [`Cache::get_or_insert_with`] for fallible computations: only `Ok` is stored, and an
    /// `Err` goes back to its caller.
    pub async fn try_get_or_insert_with<T, E, F, Fut>(&self, key: &str, init: F) -> Result<T, E>
    where
        T: CacheValue,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let key = KeyBuf::from_key(key);
        let strategy: ResultStrategy<T, E> =
            crate::outcome::Probe::<Result<T, E>>::new().strategy();
        flight::get_or_compute(
            &self.store,
            &key,
            InsertOptions::default,
            &strategy,
            async { init().await },
        )
        .await
    }

    /// Removes every entry tagged `tag`. Returns how many.
    pub async fn invalidate_tag(&self, tag: &str) -> usize {
        self.store.remove_tag(tag)
    }

    /// Removes everything. Returns how many entries were removed.
    pub async fn clear(&self) -> usize {
        self.store.clear()
    }

    /// This cache's counters.
    pub fn stats(&self) -> CacheStats {
        self.store.stats()
    }

    /// Entries held in memory now.
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The eviction strategy of this cache's memory tier.
    pub fn eviction(&self) -> Eviction {
        self.store.eviction()
    }

    /// The synchronous form of this API, for code that is not async.
    pub fn blocking(&self) -> BlockingCache<'_> {
        BlockingCache { cache: self }
    }
}

/// Synchronous access to a [`Cache`]; see [`Cache::blocking`].
///
/// ```
/// let cache = cache_core::CacheManager::builder().build().cache("config");
/// let c = cache.blocking();
/// c.set("theme", "dark".to_string());
/// assert_eq!(c.get::<String>("theme").as_deref(), Some("dark"));
/// assert_eq!(c.get_or_insert_with("lang", || "en".to_string()), "en");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct BlockingCache<'a> {
    cache: &'a Cache,
}

impl BlockingCache<'_> {
    /// See [`Cache::get`].
    pub fn get<T: CacheValue>(&self, key: &str) -> Option<T> {
        self.cache
            .store
            .get(key.as_bytes(), lookup_hash(key.as_bytes()))
    }

    /// See [`Cache::set`].
    pub fn set<T: CacheValue>(&self, key: &str, value: T) {
        self.set_with(key, value, EntryOptions::default())
    }

    /// See [`Cache::set_with`].
    pub fn set_with<T: CacheValue>(&self, key: &str, value: T, options: EntryOptions) {
        self.cache.store.insert(
            key,
            lookup_hash(key.as_bytes()),
            Arc::new(value),
            options.into_insert(),
        )
    }

    /// See [`Cache::delete`].
    pub fn delete(&self, key: &str) -> bool {
        self.cache
            .store
            .remove(key.as_bytes(), lookup_hash(key.as_bytes()))
    }

    /// See [`Cache::get_or_insert_with`]; concurrent callers block until the first one's value.
    pub fn get_or_insert_with<T: CacheValue>(&self, key: &str, init: impl FnOnce() -> T) -> T {
        let key = KeyBuf::from_key(key);
        flight::get_or_compute_blocking(
            &self.cache.store,
            &key,
            InsertOptions::default,
            &PlainStrategy::new(),
            init,
        )
    }
}
