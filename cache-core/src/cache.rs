//! [`Cache`]: the programmatic API of one named cache, for what a macro cannot express (sessions,
//! values written by one function and read by another, warming).
//!
//! The macros expand into the same single-flight path as [`Cache::get_or_insert_with`], so code
//! that mixes both sees one cache. Values here are [`Storable`] (serde as well as `Clone`) because
//! the cache may have a remote tier.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::flight::{self, Plan};
use crate::job::{Attached, SyncAttached};
use crate::key::{KeyBuf, lookup_hash};
use crate::memory::{InsertOptions, Stored};
use crate::outcome::{PlainStrategy, Probe, WithCodec};
use crate::remote::codec::{Codec, Storable};
use crate::store::Store;
use crate::{CacheStats, Eviction, Tier};

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
    store: Arc<Store>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.name())
            .field("tier", &self.tier())
            .field("entries", &self.len())
            .finish()
    }
}

/// Per-entry options for [`Cache::set_with`].
///
/// ```
/// use cache_core::{CacheManager, EntryOptions};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let cache = CacheManager::builder().build().cache("sessions");
/// let opts = EntryOptions::new().ttl(Duration::from_secs(60)).tag("user:7");
/// cache.set_with("session:1", 1_u32, opts).await;
/// assert_eq!(cache.invalidate_tag("user:7").await, 1);
/// # });
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct EntryOptions {
    ttl: Option<Duration>,
    tags: Vec<Arc<str>>,
}

impl EntryOptions {
    /// No TTL override, no tags.
    ///
    /// ```
    /// let opts = cache_core::EntryOptions::new(); // the cache policy's TTL, no tags
    /// # drop(opts);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// This entry's time to live (instead of the cache policy's), shortened by the policy's
    /// [jitter](crate::Policy::jitter) if it has one, as a computed value's TTL is.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let opts = cache_core::EntryOptions::new().ttl(Duration::from_secs(30));
    /// # drop(opts);
    /// ```
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Adds a tag, for [`Cache::invalidate_tag`].
    ///
    /// ```
    /// let opts = cache_core::EntryOptions::new().tag("user:7").tag("team:3");
    /// # drop(opts);
    /// ```
    pub fn tag(mut self, tag: impl AsRef<str>) -> Self {
        self.tags.push(Arc::from(tag.as_ref()));
        self
    }

    fn into_insert(self) -> InsertOptions {
        InsertOptions {
            ttl: self.ttl,
            tags: self.tags,
            epoch: None,
            ..Default::default()
        }
    }
}

impl Cache {
    pub(crate) fn from_store(store: Arc<Store>) -> Self {
        Cache { store }
    }

    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The current manager's cache of this name.
    ///
    /// ```
    /// let users = cache_core::Cache::named("users");
    /// assert_eq!(users.name(), "users");
    /// ```
    pub fn named(name: &str) -> Self {
        crate::CacheManager::current().cache(name)
    }

    /// This cache's name.
    ///
    /// ```
    /// let cache = cache_core::CacheManager::builder().build().cache("pages");
    /// assert_eq!(cache.name(), "pages");
    /// ```
    pub fn name(&self) -> &str {
        &self.store.name
    }

    /// Where this cache keeps entries (memory if a remote tier was asked for without a backend).
    ///
    /// ```
    /// use cache_core::{CacheManager, Tier};
    ///
    /// let cache = CacheManager::builder().build().cache("pages");
    /// assert_eq!(cache.tier(), Tier::Memory);
    /// ```
    pub fn tier(&self) -> Tier {
        self.store.tier
    }

    /// The value under `key`, if present, live, and of type `T` (a value stored as another type is
    /// a miss, never a wrongly typed answer). Reads memory, then the remote tier, promoting a
    /// remote hit into memory.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = cache_core::CacheManager::builder().build().cache("pages");
    /// cache.set("page:1", "hello".to_string()).await;
    /// assert_eq!(cache.get::<String>("page:1").await.as_deref(), Some("hello"));
    /// assert_eq!(cache.get::<u64>("page:1").await, None); // another type: a miss
    /// assert_eq!(cache.get::<String>("page:2").await, None);
    /// # });
    /// ```
    pub async fn get<T: Storable>(&self, key: &str) -> Option<T> {
        let hash = lookup_hash(key.as_bytes());
        match self.store.get_local(key.as_bytes(), hash) {
            crate::memory::Lookup::Hit(v) => return Some(v),
            // Past its refresh-ahead point or its TTL, and left uncounted for the caller to
            // decide: before its TTL it is live (a hit), after it only kept for a stale or
            // fail-safe window, which a plain read does not serve (a miss).
            crate::memory::Lookup::Later => {
                let memory = &self.store.memory;
                let live = memory
                    .peek_value_of::<T>(key.as_bytes(), hash)
                    .and_then(|v| v.downcast_ref::<T>().cloned());
                if live.is_some() {
                    memory.counters.hits.incr();
                    return live;
                }
                memory.counters.misses.incr();
            }
            crate::memory::Lookup::Absent => {}
        }
        // The remote tier does not say which tags the value was stored with: the copy goes with
        // every tag invalidation (see `UNKNOWN_TAGS`).
        let tags = vec![Arc::from(crate::memory::UNKNOWN_TAGS)];
        // Noted before the read: an invalidation (of the key, a tag, the cache) that overlaps it
        // makes the copy this read found stale, and it must not outlive it in memory.
        let epoch = self.store.memory.epochs.snapshot(hash, &tags);
        let hit = self
            .store
            .get_remote(key, &Codec::<T>::serde())
            .await?
            .fresh()?;
        let opts = InsertOptions {
            ttl: hit.remaining,
            tags,
            epoch: Some(epoch),
            ..Default::default()
        };
        self.store
            .put_local(key, hash, Stored::new(hit.value.clone()), opts);
        Some(hit.value)
    }

    /// Stores `value` under `key` with the cache's default TTL.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = cache_core::CacheManager::builder().build().cache("counts");
    /// cache.set("visits", 41_u64).await;
    /// cache.set("visits", 42_u64).await;
    /// assert_eq!(cache.get::<u64>("visits").await, Some(42));
    /// # });
    /// ```
    pub async fn set<T: Storable>(&self, key: &str, value: T) {
        self.set_with(key, value, EntryOptions::default()).await
    }

    /// Stores `value` under `key` with its own TTL and tags, in every tier of the cache. A value
    /// the remote tier refuses (larger than its limit, or not serializable) stays in memory only,
    /// and the key's previous value is deleted from the remote tier (and the other instances'
    /// memory), so that no reader gets a value older than this one. With a remote tier it first
    /// waits for the cache's remote writes already under way, as an invalidation does (bounded
    /// by a few of their timeouts), so that a value computed before it does not land over it.
    ///
    /// ```
    /// use cache_core::{CacheManager, EntryOptions};
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = CacheManager::builder().build().cache("tokens");
    /// let opts = EntryOptions::new().ttl(Duration::from_secs(300)).tag("user:7");
    /// cache.set_with("token:abc", "secret".to_string(), opts).await;
    /// assert_eq!(cache.get::<String>("token:abc").await.as_deref(), Some("secret"));
    /// # });
    /// ```
    pub async fn set_with<T: Storable>(&self, key: &str, value: T, options: EntryOptions) {
        let mut opts = options.into_insert();
        // Kept past its TTL for the policy's stale and fail-safe windows, like a computed value.
        let fresh = Plan::of(&self.store, InsertOptions::default()).fresh;
        opts.keep_ms = fresh.keep_ms(0);
        // Jittered as a computed value's TTL is: the sets of a warmer are the very batch that
        // jitter keeps from expiring in one instant.
        if fresh.jitter_pct != 0 {
            opts.ttl = fresh.jittered(opts.ttl.or(self.store.policy.ttl));
        }
        let hash = lookup_hash(key.as_bytes());
        // A value set explicitly is newer than anything a computation of this key already under
        // way may store: its value, or its fail-safe fallback (the old value, kept as fresh when
        // its body fails). Moving the key's epochs makes those skip their store, as after an
        // invalidation; their callers still get their answers.
        self.store.memory.epochs.bump_key(hash);
        if self.store.remote.is_some() {
            // A computation that checked the epochs just before the bump may have its value on
            // the way to the remote tier: it lands first, not over this one (see `write_gate`).
            self.store.drain_writes().await;
            let written = self
                .store
                .put_remote(
                    key,
                    &value,
                    &Codec::serde(),
                    &opts,
                    Duration::ZERO,
                    crate::store::RemoteWrite::Set,
                )
                .await;
            if !written {
                // Refused (too large, not serializable): the remote tier still holds the value
                // this one replaces, which every instance, this one past its L1 TTL, would read
                // again.
                self.store.remove_remote(key).await;
            }
            // Again after the remote write, as an invalidation bumps again after its delete: a
            // read that began after the first bump may have found the old value in the remote
            // tier before this write landed. Its flight, joinable under the epochs of the first
            // bump, would hand that old value to callers that start after this set returns, and
            // its store into memory would land over this one; both are refused from here on.
            self.store.memory.epochs.bump_key(hash);
        }
        self.store.put_local(key, hash, Stored::new(value), opts);
    }

    /// Removes `key` from every tier. True if an entry was removed.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = cache_core::CacheManager::builder().build().cache("pages");
    /// cache.set("page:1", 1_u8).await;
    /// assert!(cache.delete("page:1").await);
    /// assert!(!cache.delete("page:1").await); // nothing left to remove
    /// # });
    /// ```
    pub async fn delete(&self, key: &str) -> bool {
        self.store
            .remove(key, lookup_hash(key.as_bytes()))
            .await
            .anywhere()
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
        T: Storable,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let key = KeyBuf::from_key(key);
        let strategy = WithCodec::new(PlainStrategy::new(), Some(Codec::serde()));
        let plan = || Plan::of(&self.store, InsertOptions::default());
        flight::get_or_compute(
            &self.store,
            &key,
            plan,
            Attached::new(strategy, async { init().await }),
        )
        .await
    }

    /// Like [`Cache::get_or_insert_with`] for fallible computations: only `Ok` is stored, and an
    /// `Err` goes back to its caller.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = cache_core::CacheManager::builder().build().cache("users");
    /// let failed = cache
    ///     .try_get_or_insert_with("user:1", || async { Err::<u64, _>("db down") })
    ///     .await;
    /// assert_eq!(failed, Err("db down")); // not stored
    /// let ok = cache.try_get_or_insert_with("user:1", || async { Ok::<_, &str>(7_u64) }).await;
    /// assert_eq!(ok, Ok(7));
    /// assert_eq!(cache.get::<u64>("user:1").await, Some(7));
    /// # });
    /// ```
    pub async fn try_get_or_insert_with<T, E, F, Fut>(&self, key: &str, init: F) -> Result<T, E>
    where
        T: Storable,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let key = KeyBuf::from_key(key);
        let strategy = WithCodec::new(
            Probe::<Result<T, E>>::new().strategy(),
            Some(Codec::serde()),
        );
        let plan = || Plan::of(&self.store, InsertOptions::default());
        flight::get_or_compute(
            &self.store,
            &key,
            plan,
            Attached::new(strategy, async { init().await }),
        )
        .await
    }

    /// Removes every entry of this cache tagged `tag`. Returns how many left this process's
    /// memory.
    ///
    /// Tags are not per cache beyond this process's memory: a remote backend indexes them across
    /// caches, so every remote entry with the tag goes, and the backplane message tells other
    /// instances to drop the tag from all their caches. This process's other caches keep their
    /// copies until they expire; to drop those too, use
    /// [`CacheManager::invalidate_tag`](crate::CacheManager::invalidate_tag), which does the same
    /// everywhere.
    ///
    /// ```
    /// use cache_core::{CacheManager, EntryOptions};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = CacheManager::builder().build().cache("posts");
    /// cache.set_with("post:1", 1_u32, EntryOptions::new().tag("author:9")).await;
    /// cache.set_with("post:2", 2_u32, EntryOptions::new().tag("author:9")).await;
    /// cache.set("post:3", 3_u32).await;
    /// assert_eq!(cache.invalidate_tag("author:9").await, 2);
    /// assert_eq!(cache.len(), 1);
    /// # });
    /// ```
    pub async fn invalidate_tag(&self, tag: &str) -> usize {
        self.store.remove_tag(tag).await
    }

    /// Removes everything, in every tier. Returns how many entries were removed from memory.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = cache_core::CacheManager::builder().build().cache("pages");
    /// cache.set("a", 1_u8).await;
    /// cache.set("b", 2_u8).await;
    /// assert_eq!(cache.clear().await, 2);
    /// assert!(cache.is_empty());
    /// # });
    /// ```
    pub async fn clear(&self) -> usize {
        let n = self.store.memory.clear();
        if let Some(remote) = &self.store.remote {
            self.store.drain_writes().await;
            let _ = remote.run_bulk(remote.inner.clear()).await;
            // Again: what a read found remotely before the clear may be back in memory.
            self.store.memory.clear();
        }
        self.store
            .announce(crate::remote::backplane::Invalidation::Cache {
                cache: self.store.name.to_string(),
            })
            .await;
        n
    }

    /// This cache's counters (the memory tier's, and the remote tier's in
    /// [`CacheStats::remote`]).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = cache_core::CacheManager::builder().build().cache("pages");
    /// cache.set("a", 1_u8).await;
    /// let _ = cache.get::<u8>("a").await;
    /// let _ = cache.get::<u8>("b").await;
    /// let stats = cache.stats();
    /// assert_eq!((stats.hits, stats.misses), (1, 1));
    /// # });
    /// ```
    pub fn stats(&self) -> CacheStats {
        self.store.stats()
    }

    /// Entries held in memory now.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let cache = cache_core::CacheManager::builder().build().cache("pages");
    /// assert_eq!(cache.len(), 0);
    /// cache.set("a", 1_u8).await;
    /// assert_eq!(cache.len(), 1);
    /// # });
    /// ```
    pub fn len(&self) -> usize {
        self.store.memory.len()
    }

    /// True when nothing is held in memory.
    ///
    /// ```
    /// let cache = cache_core::CacheManager::builder().build().cache("pages");
    /// assert!(cache.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The eviction strategy of this cache's memory tier.
    ///
    /// ```
    /// use cache_core::{CacheManager, Eviction, Policy};
    ///
    /// let manager = CacheManager::builder()
    ///     .cache("hot", Policy::new().eviction(Eviction::Lfu))
    ///     .build();
    /// assert_eq!(manager.cache("hot").eviction(), Eviction::Lfu);
    /// assert_eq!(manager.cache("other").eviction(), Eviction::S3Fifo);
    /// ```
    pub fn eviction(&self) -> Eviction {
        self.store.memory.eviction()
    }

    /// The synchronous form of this API, for code that is not async.
    ///
    /// ```
    /// let cache = cache_core::CacheManager::builder().build().cache("config");
    /// cache.blocking().set("retries", 3_u8);
    /// assert_eq!(cache.blocking().get::<u8>("retries"), Some(3));
    /// ```
    pub fn blocking(&self) -> BlockingCache<'_> {
        BlockingCache { cache: self }
    }
}

/// Synchronous access to a [`Cache`]; see [`Cache::blocking`]. Remote tiers are reached on
/// cache-core's own I/O runtime while the calling thread waits (bounded by the backend timeout).
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
    fn run<T: Send + 'static, F: Future<Output = T> + Send + 'static>(&self, fut: F) -> Option<T> {
        crate::remote::run_sync(fut, self.cache.store.remote.is_some())
    }

    /// See [`Cache::get`].
    ///
    /// ```
    /// let cache = cache_core::CacheManager::builder().build().cache("config");
    /// cache.blocking().set("theme", "dark".to_string());
    /// assert_eq!(cache.blocking().get::<String>("theme").as_deref(), Some("dark"));
    /// assert_eq!(cache.blocking().get::<String>("font"), None);
    /// ```
    pub fn get<T: Storable>(&self, key: &str) -> Option<T> {
        let (cache, key) = (self.cache.clone(), key.to_owned());
        self.run(async move { cache.get::<T>(&key).await })
            .flatten()
    }

    /// See [`Cache::set`].
    ///
    /// ```
    /// let cache = cache_core::CacheManager::builder().build().cache("config");
    /// cache.blocking().set("retries", 3_u8);
    /// assert_eq!(cache.blocking().get::<u8>("retries"), Some(3));
    /// ```
    pub fn set<T: Storable>(&self, key: &str, value: T) {
        self.set_with(key, value, EntryOptions::default())
    }

    /// See [`Cache::set_with`].
    ///
    /// ```
    /// use cache_core::{CacheManager, EntryOptions};
    ///
    /// let cache = CacheManager::builder().build().cache("config");
    /// cache.blocking().set_with("theme", "dark".to_string(), EntryOptions::new().tag("ui"));
    /// assert_eq!(cache.blocking().get::<String>("theme").as_deref(), Some("dark"));
    /// ```
    pub fn set_with<T: Storable>(&self, key: &str, value: T, options: EntryOptions) {
        let (cache, key) = (self.cache.clone(), key.to_owned());
        self.run(async move { cache.set_with(&key, value, options).await });
    }

    /// See [`Cache::delete`].
    ///
    /// ```
    /// let cache = cache_core::CacheManager::builder().build().cache("config");
    /// cache.blocking().set("theme", "dark".to_string());
    /// assert!(cache.blocking().delete("theme"));
    /// assert!(!cache.blocking().delete("theme"));
    /// ```
    pub fn delete(&self, key: &str) -> bool {
        let (cache, key) = (self.cache.clone(), key.to_owned());
        self.run(async move { cache.delete(&key).await })
            .unwrap_or(false)
    }

    /// See [`Cache::get_or_insert_with`]; concurrent callers block until the first one's value.
    ///
    /// ```
    /// let cache = cache_core::CacheManager::builder().build().cache("config");
    /// let c = cache.blocking();
    /// assert_eq!(c.get_or_insert_with("lang", || "en".to_string()), "en");
    /// assert_eq!(c.get_or_insert_with("lang", || -> String { unreachable!("cached") }), "en");
    /// ```
    pub fn get_or_insert_with<T: Storable>(&self, key: &str, init: impl FnOnce() -> T) -> T {
        let key = KeyBuf::from_key(key);
        let strategy = WithCodec::new(PlainStrategy::new(), Some(Codec::serde()));
        let plan = || Plan::of(&self.cache.store, InsertOptions::default());
        flight::get_or_compute_blocking(
            &self.cache.store,
            &key,
            plan,
            SyncAttached::new(strategy, init),
        )
    }
}
