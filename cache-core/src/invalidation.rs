//! Invalidation entry points of a [`CacheManager`]: by key, tag, pattern, named cache, event, or
//! everything. Each acts on every tier of the caches it names; remote failures are logged and
//! counted, never returned (the memory tier is always cleaned, and a remote entry that survives an
//! outage still expires by its TTL). Counts are of entries removed from memory. A named cache
//! that does not exist here is not created, unless it has a remote tier to clean.

use crate::events::{Action, Event, EventArgs, EventError};
use crate::key::{Glob, lookup_hash};
use crate::remote::backplane::Invalidation;
use crate::{Cache, CacheManager};

impl CacheManager {
    /// Removes one key from a named cache. True if an entry was removed.
    ///
    /// `key` is the logical key as stored: a template's literal parts with each argument value
    /// escaped ([`escape_key_part`](crate::escape_key_part)); numbers and plain words are
    /// unchanged.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let manager = cache_core::CacheManager::builder().build();
    /// manager.cache("users").set("user:7", 7_u32).await;
    /// assert!(manager.invalidate_key("users", "user:7").await);
    /// assert!(!manager.invalidate_key("users", "user:7").await);
    /// # });
    /// ```
    pub async fn invalidate_key(&self, cache: &str, key: &str) -> bool {
        match self.store_to_invalidate(cache) {
            Some(store) => store
                .remove(key, lookup_hash(key.as_bytes()))
                .await
                .anywhere(),
            None => false,
        }
    }

    /// Removes every entry, in every cache, tagged `tag`. Returns how many left memory.
    ///
    /// ```
    /// use cache_core::{CacheManager, EntryOptions};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let manager = CacheManager::builder().build();
    /// let tagged = || EntryOptions::new().tag("user:7");
    /// manager.cache("users").set_with("user:7", 7_u32, tagged()).await;
    /// manager.cache("posts").set_with("post:1", 1_u32, tagged()).await;
    /// assert_eq!(manager.invalidate_tag("user:7").await, 2); // across caches
    /// # });
    /// ```
    pub async fn invalidate_tag(&self, tag: &str) -> usize {
        let stores = self.stores();
        let removed = stores.iter().map(|s| s.memory.remove_tag(tag)).sum();
        if let Some(backend) = self.remote() {
            // Writes already under way land before the delete (see `write_gate`).
            for store in &stores {
                store.drain_writes().await;
            }
            let _ = self.run_remote_bulk(backend.delete_tag(tag)).await;
            // Again: what a read found remotely before the delete may be back in memory.
            for store in &stores {
                store.memory.remove_tag(tag);
            }
        }
        self.announce(Invalidation::Tag {
            tag: tag.to_owned(),
        })
        .await;
        removed
    }

    /// Removes the keys of a named cache that match a glob (`*`, `?`, `[..]`, `\` escapes).
    /// Returns how many. Build patterns from untrusted values with
    /// [`escape_glob`](crate::escape_glob), or use a pattern template in `#[invalidates]`, which
    /// escapes for you.
    ///
    /// ```
    /// use cache_core::{CacheManager, escape_glob};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let manager = CacheManager::builder().build();
    /// let search = manager.cache("search");
    /// search.set("q:rust", 1_u8).await;
    /// search.set("q:r*", 2_u8).await;
    /// let exact = format!("q:{}", escape_glob("r*")); // only the key `q:r*`
    /// assert_eq!(manager.invalidate_pattern("search", &exact).await, 1);
    /// assert_eq!(manager.invalidate_pattern("search", "q:*").await, 1);
    /// # });
    /// ```
    pub async fn invalidate_pattern(&self, cache: &str, pattern: &str) -> usize {
        match self.store_to_invalidate(cache) {
            Some(store) => Cache::from_store(store).invalidate_pattern(pattern).await,
            None => 0,
        }
    }

    /// Empties a named cache, in every tier. Returns how many entries left memory.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let manager = cache_core::CacheManager::builder().build();
    /// manager.cache("pages").set("a", 1_u8).await;
    /// manager.cache("users").set("a", 1_u8).await;
    /// assert_eq!(manager.invalidate_cache("pages").await, 1);
    /// assert_eq!(manager.cache("users").len(), 1);
    /// # });
    /// ```
    pub async fn invalidate_cache(&self, cache: &str) -> usize {
        match self.store_to_invalidate(cache) {
            Some(store) => Cache::from_store(store).clear().await,
            None => 0,
        }
    }

    /// Empties every cache, and the backend's whole namespace. Returns how many entries left
    /// memory.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let manager = cache_core::CacheManager::builder().build();
    /// manager.cache("pages").set("a", 1_u8).await;
    /// manager.cache("users").set("a", 1_u8).await;
    /// assert_eq!(manager.invalidate_all().await, 2);
    /// # });
    /// ```
    pub async fn invalidate_all(&self) -> usize {
        let stores = self.stores();
        let removed = stores.iter().map(|s| s.memory.clear()).sum();
        if let Some(backend) = self.remote() {
            for store in &stores {
                store.drain_writes().await;
            }
            let _ = self.run_remote_bulk(backend.clear_all()).await;
            for store in &stores {
                store.memory.clear();
            }
        }
        self.announce(Invalidation::All).await;
        removed
    }

    /// Registers (or replaces) an invalidation event. Fails if a template is malformed or uses a
    /// placeholder that is not a parameter of the event.
    ///
    /// ```
    /// use cache_core::{CacheManager, Event};
    ///
    /// let manager = CacheManager::builder().build();
    /// manager.register_event(Event::new("user_update", ["id"]).tag("user:{id}"))?;
    /// assert!(manager.register_event(Event::new("broken", ["id"]).tag("user:{id")).is_err());
    /// # Ok::<(), cache_core::EventError>(())
    /// ```
    pub fn register_event(&self, event: Event) -> Result<(), EventError> {
        self.events_mut().register(event)
    }

    /// Fires an event: performs every invalidation it names, with `args` in the templates.
    /// Returns how many entries left memory. Fails, invalidating nothing, if the event is unknown
    /// or an argument is missing or unexpected.
    ///
    /// ```
    /// use cache_core::{CacheManager, Event, EventArgs};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let manager = CacheManager::builder().build();
    /// manager.register_event(Event::new("user_update", ["id"]).key("users", "user:{id}"))?;
    /// manager.cache("users").set("user:7", 7_u32).await;
    /// assert_eq!(manager.fire("user_update", &EventArgs::new().arg("id", 7)).await?, 1);
    /// assert!(manager.fire("user_update", &EventArgs::new()).await.is_err(), "missing `id`");
    /// # Ok::<(), cache_core::EventError>(())
    /// # }).unwrap();
    /// ```
    pub async fn fire(&self, event: &str, args: &EventArgs) -> Result<usize, EventError> {
        let actions = self.events().resolve(event, args)?;
        let mut removed = 0;
        for action in actions {
            removed += match action {
                // Counted as the other actions are: whether it left memory (`invalidate_key`
                // also says whether the remote tier held it).
                Action::Key { cache, key } => match self.store_to_invalidate(&cache) {
                    Some(store) => usize::from(
                        store
                            .remove(&key, lookup_hash(key.as_bytes()))
                            .await
                            .from_memory,
                    ),
                    None => 0,
                },
                Action::Pattern { cache, pattern } => {
                    self.invalidate_pattern(&cache, &pattern).await
                }
                Action::Tag(tag) => self.invalidate_tag(&tag).await,
                Action::Cache(cache) => self.invalidate_cache(&cache).await,
            };
        }
        Ok(removed)
    }
}

impl Cache {
    /// Removes the keys matching a glob, in every tier. Returns how many left memory.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let c = cache_core::CacheManager::builder().build().cache("search");
    /// c.set("search:rust", 1).await;
    /// c.set("search:redis", 2).await;
    /// c.set("trending", 3).await;
    /// assert_eq!(c.invalidate_pattern("search:*").await, 2);
    /// assert_eq!(c.len(), 1);
    /// # });
    /// ```
    pub async fn invalidate_pattern(&self, pattern: &str) -> usize {
        let glob = Glob::new(pattern);
        if glob.is_literal() {
            // Names one key: no scan. The literal is the pattern with its escapes resolved.
            // Counted as a glob's matches are: whether it left memory.
            let key = unescape(pattern);
            let removed = self.store().remove(&key, lookup_hash(key.as_bytes())).await;
            return usize::from(removed.from_memory);
        }
        let store = self.store();
        let removed = store.memory.remove_where(|key| glob.matches(key));
        if let Some(remote) = &store.remote {
            store.drain_writes().await;
            let _ = remote.run_bulk(remote.inner.delete_pattern(pattern)).await;
            store.memory.remove_where(|key| glob.matches(key));
        }
        store
            .announce(Invalidation::Pattern {
                cache: store.name.to_string(),
                pattern: pattern.to_owned(),
            })
            .await;
        removed
    }
}

fn unescape(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(n) = chars.next()
        {
            out.push(n);
            continue;
        }
        out.push(c);
    }
    out
}
