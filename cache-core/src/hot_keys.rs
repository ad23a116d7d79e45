//! Hot-key preloading: an instance remembers its hottest keys in the remote tier, and a new
//! instance (a deploy, a restart, a scale-out) loads those entries into memory before traffic
//! asks, so it does not start at a hit rate of zero.
//!
//! Entries are preloaded as their envelope bytes and decoded on first use, when the calling
//! function says what type they are (the memory tier holds typed values, and a preloader cannot
//! know the types).

use std::sync::Arc;
use std::time::Duration;

use crate::memory::{InsertOptions, Stored};
use crate::remote::envelope::{peek_meta, unix_ms_now};
use crate::store::Undecoded;
use crate::{Cache, CacheManager};

/// Where a cache's hot-key list lives in its remote tier. The control character keeps it apart
/// from every key a template or the programmatic API can produce (those escape control
/// characters), and backends hash such keys instead of sending them raw.
const HOT_KEYS_KEY: &str = "\u{1}hot-keys";
/// How long a persisted list is kept.
const HOT_KEYS_TTL: Duration = Duration::from_secs(7 * 86_400);

impl Cache {
    /// The hottest keys of this cache, hottest first, with their estimated access counts (from a
    /// 1-in-64 sample, so counts are in sampled units).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let cache = cache_core::CacheManager::builder().build().cache("pages");
    /// cache.set("home", 1_u8).await;
    /// cache.set("about", 2_u8).await;
    /// for _ in 0..1_000 {
    ///     cache.get::<u8>("home").await;
    /// }
    /// assert_eq!(cache.hot_keys(1)[0].0, "home");
    /// # });
    /// ```
    pub fn hot_keys(&self, n: usize) -> Vec<(String, u64)> {
        self.store().memory.hot.top(n)
    }
}

impl CacheManager {
    /// Writes each remote-backed cache's hottest keys to its remote tier, for
    /// [`CacheManager::preload_hot_keys`] in the next instance. Returns how many keys were written.
    /// Call it on an interval (a [`Warmer`](crate::Warmer) with `every` does) and at shutdown.
    ///
    /// ```
    /// use cache_core::testing::MemoryBackend;
    /// use cache_core::{CacheManager, Policy, Tier};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let manager = CacheManager::builder()
    ///     .remote(MemoryBackend::new())
    ///     .cache("pages", Policy::new().tier(Tier::Hybrid))
    ///     .build();
    /// let pages = manager.cache("pages");
    /// pages.set("home", 1_u8).await;
    /// for _ in 0..1_000 {
    ///     pages.get::<u8>("home").await;
    /// }
    /// assert_eq!(manager.persist_hot_keys().await, 1);
    /// # });
    /// ```
    pub async fn persist_hot_keys(&self) -> usize {
        let mut written = 0;
        for store in self.stores() {
            let Some(remote) = &store.remote else {
                continue;
            };
            let keys: Vec<String> = store
                .memory
                .hot
                .top(crate::memory::HOT_TOP)
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            if keys.is_empty() {
                continue;
            }
            let Ok(bytes) = rmp_serde::to_vec(&keys) else {
                continue;
            };
            if remote
                .run(
                    remote
                        .inner
                        .set(HOT_KEYS_KEY, bytes, Some(HOT_KEYS_TTL), &[]),
                )
                .await
                .is_ok()
            {
                written += keys.len();
            }
        }
        written
    }

    /// Loads the entries of the hot keys an earlier instance persisted into the memory tier of
    /// each hybrid cache, with their remaining TTL. Returns how many entries were loaded. Failures
    /// are skipped: preloading only ever saves work. Waits first (at most 5 s) for the backplane's
    /// first subscription, which clears the memory tiers.
    ///
    /// ```
    /// use cache_core::testing::{MemoryBackend, SharedBackend};
    /// use cache_core::{CacheManager, Policy, Tier};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = SharedBackend::new(MemoryBackend::new());
    /// let instance = || {
    ///     CacheManager::builder()
    ///         .remote(backend.clone())
    ///         .cache("pages", Policy::new().tier(Tier::Hybrid))
    ///         .build()
    /// };
    /// let old = instance();
    /// old.cache("pages").set("home", 1_u8).await;
    /// for _ in 0..1_000 {
    ///     old.cache("pages").get::<u8>("home").await;
    /// }
    /// old.persist_hot_keys().await;
    ///
    /// let new = instance(); // a restart: its memory is empty
    /// assert_eq!(new.preload_hot_keys().await, 1);
    /// assert_eq!(new.cache("pages").len(), 1);
    /// # });
    /// ```
    pub async fn preload_hot_keys(&self) -> usize {
        let mut loaded = 0;
        // The backplane's first subscription clears the memory tiers; entries loaded before it
        // would be lost, so the preload comes after (bounded: without Redis it never comes).
        self.backplane_subscribed(Self::FIRST_SUBSCRIPTION_WAIT)
            .await;
        for store in self.all_stores() {
            let Some(remote) = &store.remote else {
                continue;
            };
            if !store.tier.uses_memory() {
                continue;
            }
            let Ok(Some(list)) = remote.run(remote.inner.get(HOT_KEYS_KEY)).await else {
                continue;
            };
            let Ok(keys) = rmp_serde::from_slice::<Vec<String>>(&list) else {
                continue;
            };
            let mut loaded_here = 0;
            for key in keys {
                let hash = crate::key::lookup_hash(key.as_bytes());
                // Which tags the value carries is not known here: it goes with every tag
                // invalidation, and one that overlaps the read keeps it out (see `UNKNOWN_TAGS`).
                let tags = vec![Arc::from(crate::memory::UNKNOWN_TAGS)];
                let epoch = store.memory.epochs.snapshot(hash, &tags);
                let Ok(Some(bytes)) = remote.run(remote.inner.get(&key)).await else {
                    continue;
                };
                let Ok(meta) = peek_meta(&key, &bytes, unix_ms_now()) else {
                    continue;
                };
                let ttl = meta
                    .expires_at_unix_ms
                    .map(|at| Duration::from_millis(at.saturating_sub(unix_ms_now())));
                let stored = store.put_local(
                    &key,
                    hash,
                    Stored::shared(Arc::new(Undecoded(bytes))),
                    InsertOptions {
                        ttl,
                        tags,
                        epoch: Some(epoch),
                        ..Default::default()
                    },
                );
                loaded_here += usize::from(stored);
            }
            // Per cache: the running total made every cache after the first look fuller.
            tracing::info!(cache = %store.name, loaded = loaded_here, "preloaded hot keys from the remote tier");
            loaded += loaded_here;
        }
        loaded
    }
}
