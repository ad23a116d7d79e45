//! [`MemoryBackend`]: a remote backend that lives in this process, for unit tests that need a
//! second tier and a backplane without a Redis server.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::Glob;
use crate::remote::backplane::{Backplane, BackplaneSink};
use crate::remote::{BoxFuture, LockAttempt, LockToken, RemoteBackend, RemoteError, RemoteTier};

/// A [`RemoteBackend`] kept in this process's memory: values with their TTLs, tag records, pattern
/// deletes, single-flight locks and a backplane, behind one mutex.
///
/// **It is not Redis.** It stores and answers like the Redis tier does, so the core's code paths
/// (envelopes, promotion, write-through, the backplane between instances) run for real, but it
/// has no network, no connection to lose and no latency. Put it inside a
/// [`FaultyBackend`](super::FaultyBackend) to add those, and test against a real Redis too before
/// trusting a deployment. Clones share the same data, so several managers built on clones (see
/// [`instances`](super::instances)) behave like processes sharing one Redis.
///
/// TTLs follow `tokio::time::Instant`, so they move with a paused tokio clock. Where it differs
/// from the Redis tier:
/// - a value's *logical* expiry, in its envelope, is wall-clock (Unix milliseconds), as in Redis:
///   a paused or manual clock moves the stored copy's TTL but not the envelope's, so past its
///   TTL a remote value still decodes as fresh until the wall clock gets there. Test stale
///   serving and refresh on the memory tier, or seed expired envelopes
///   ([`put_raw`](Self::put_raw));
/// - keys are matched by pattern as they are, where the Redis tier stores keys longer than its
///   `max_key_bytes` or holding control characters under a hash that no pattern reaches;
/// - a tag forgets the values that are gone (expired or deleted) now and then, where a Redis tag
///   record keeps a name until the expiry it was scored with has passed and the tag is written
///   again (or the record expires): a key deleted, then written again without the tag, may
///   still go with the tag's next invalidation there, and not here.
///
/// # Examples
///
/// ```
/// use cache_core::testing::MemoryBackend;
/// use cache_core::{CacheManager, Policy, Tier};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let backend = MemoryBackend::new();
/// let manager = CacheManager::builder()
///     .remote(backend.clone())
///     .cache("users", Policy::new().tier(Tier::Remote))
///     .build();
/// manager.cache("users").set("user:1", "Ada".to_string()).await;
/// assert_eq!(backend.len(), 1, "the value went to the remote tier");
/// # });
/// ```
#[derive(Clone)]
pub struct MemoryBackend {
    shared: Arc<Shared>,
}

struct Shared {
    data: Mutex<Data>,
    bus: broadcast::Sender<Arc<[u8]>>,
}

#[derive(Default)]
struct Data {
    /// `(cache, key)` → value.
    values: HashMap<(String, String), Stored>,
    /// tag → the `(cache, key)`s recorded under it.
    tags: HashMap<String, HashSet<(String, String)>>,
    /// `(cache, key)` → the token holding its single-flight lock, until when. Apart from the
    /// values, as in Redis, so patterns and clears never see them.
    locks: HashMap<(String, String), (LockToken, Instant)>,
    /// Values and locks held after the last [`purge`](Data::purge).
    after_purge: usize,
}

impl Data {
    /// Forgets what Redis would no longer hold: values and locks past their TTL (Redis expires
    /// them; here they stayed, every distinct key a test ever wrote), and tag records of values
    /// that are gone. Runs once the values and locks have doubled since the last purge, so its
    /// cost stays in proportion to the writes.
    fn purge(&mut self, now: Instant) {
        if self.values.len() + self.locks.len() < 2 * self.after_purge + 1024 {
            return;
        }
        self.values.retain(|_, v| v.live(now));
        self.locks.retain(|_, (_, until)| *until > now);
        let values = &self.values;
        self.tags.retain(|_, members| {
            members.retain(|id| values.contains_key(id));
            !members.is_empty()
        });
        self.after_purge = self.values.len() + self.locks.len();
    }
}

struct Stored {
    bytes: Vec<u8>,
    expires: Option<Instant>,
}

impl Stored {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("values", &self.len())
            .finish_non_exhaustive()
    }
}

impl MemoryBackend {
    /// An empty backend.
    ///
    /// ```
    /// use cache_core::testing::MemoryBackend;
    ///
    /// assert!(MemoryBackend::new().is_empty());
    /// ```
    pub fn new() -> Self {
        // Backplane messages are small and read at once; a lagging subscriber loses the oldest
        // and is told so, like a Redis subscriber that reconnects.
        let (bus, _) = broadcast::channel(1024);
        MemoryBackend {
            shared: Arc::new(Shared {
                data: Mutex::new(Data::default()),
                bus,
            }),
        }
    }

    /// How many live values it holds, across all caches.
    ///
    /// ```
    /// use cache_core::testing::MemoryBackend;
    ///
    /// let backend = MemoryBackend::new();
    /// backend.put_raw("users", "user:1", b"bytes".to_vec());
    /// assert_eq!(backend.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.data().values.values().filter(|v| v.live(now)).count()
    }

    /// True when it holds no live value.
    ///
    /// ```
    /// use cache_core::testing::MemoryBackend;
    ///
    /// let backend = MemoryBackend::new();
    /// assert!(backend.is_empty());
    /// backend.put_raw("users", "user:1", b"bytes".to_vec());
    /// assert!(!backend.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw bytes (the core's value envelope) stored under `key` of `cache`.
    ///
    /// ```
    /// use cache_core::testing::MemoryBackend;
    /// use cache_core::{CacheManager, Policy, Tier};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = MemoryBackend::new();
    /// let manager = CacheManager::builder()
    ///     .remote(backend.clone())
    ///     .cache("users", Policy::new().tier(Tier::Remote))
    ///     .build();
    /// manager.cache("users").set("user:1", 7_u32).await;
    /// let bytes = backend.raw("users", "user:1").expect("written");
    /// assert_eq!(&bytes[..2], &[0xCA, 0xC5]); // the envelope's magic
    /// # });
    /// ```
    pub fn raw(&self, cache: &str, key: &str) -> Option<Vec<u8>> {
        let now = Instant::now();
        self.data()
            .values
            .get(&(cache.to_owned(), key.to_owned()))
            .filter(|v| v.live(now))
            .map(|v| v.bytes.clone())
    }

    /// Stores raw bytes under `key` of `cache`, as another client could (for tests of what the
    /// core does with bytes it did not write).
    ///
    /// ```
    /// use cache_core::testing::MemoryBackend;
    /// use cache_core::{CacheManager, Policy, Tier};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = MemoryBackend::new();
    /// backend.put_raw("users", "user:1", b"not an envelope".to_vec());
    /// let manager = CacheManager::builder()
    ///     .remote(backend.clone())
    ///     .cache("users", Policy::new().tier(Tier::Remote))
    ///     .build();
    /// assert_eq!(manager.cache("users").get::<u32>("user:1").await, None); // a miss, not garbage
    /// # });
    /// ```
    pub fn put_raw(&self, cache: &str, key: &str, bytes: Vec<u8>) {
        self.data().values.insert(
            (cache.to_owned(), key.to_owned()),
            Stored {
                bytes,
                expires: None,
            },
        );
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        // A panic while holding the lock leaves the maps consistent (every update is one
        // insert or remove), so a poisoned lock is still usable.
        self.shared.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RemoteBackend for MemoryBackend {
    fn tier(&self, cache: &str) -> Arc<dyn RemoteTier> {
        Arc::new(MemoryTier {
            backend: self.clone(),
            cache: cache.to_owned(),
        })
    }

    fn delete_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut data = self.data();
            let keys = data.tags.remove(tag).unwrap_or_default();
            let mut removed = 0;
            for k in keys {
                // Counted as Redis counts them: an expired value is already gone there.
                removed += u64::from(data.values.remove(&k).is_some_and(|v| v.live(now)));
            }
            Ok(removed)
        })
    }

    fn clear_all(&self) -> BoxFuture<'_, Result<u64, RemoteError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut data = self.data();
            let n = data.values.values().filter(|v| v.live(now)).count() as u64;
            // Locks go too, as in Redis, where `clear_all` scans the whole namespace.
            data.values.clear();
            data.tags.clear();
            data.locks.clear();
            Ok(n)
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<Duration, RemoteError>> {
        Box::pin(async { Ok(Duration::ZERO) })
    }

    fn describe(&self) -> String {
        "in-process memory backend (testing; not Redis)".to_owned()
    }

    fn backplane(&self) -> Option<Arc<dyn Backplane>> {
        Some(Arc::new(MemoryBackplane {
            shared: Arc::clone(&self.shared),
        }))
    }
}

struct MemoryTier {
    backend: MemoryBackend,
    cache: String,
}

impl MemoryTier {
    fn id(&self, key: &str) -> (String, String) {
        (self.cache.clone(), key.to_owned())
    }
}

impl RemoteTier for MemoryTier {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>> {
        Box::pin(async move { Ok(self.backend.raw(&self.cache, key)) })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        tags: &'a [Arc<str>],
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            let id = self.id(key);
            let mut data = self.backend.data();
            data.purge(Instant::now());
            for tag in tags {
                data.tags
                    .entry(tag.to_string())
                    .or_default()
                    .insert(id.clone());
            }
            let expires = ttl.map(|t| Instant::now() + t);
            data.values.insert(
                id,
                Stored {
                    bytes: value,
                    expires,
                },
            );
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, RemoteError>> {
        Box::pin(async move {
            let now = Instant::now();
            let removed = self.backend.data().values.remove(&self.id(key));
            Ok(removed.is_some_and(|v| v.live(now)))
        })
    }

    fn delete_pattern<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>> {
        Box::pin(async move {
            let glob = Glob::new(pattern);
            let now = Instant::now();
            let mut removed = 0;
            self.backend.data().values.retain(|(cache, key), v| {
                let gone = cache == &self.cache && glob.matches(key);
                removed += u64::from(gone && v.live(now));
                !gone
            });
            Ok(removed)
        })
    }

    fn clear<'a>(&'a self) -> BoxFuture<'a, Result<u64, RemoteError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut removed = 0;
            self.backend.data().values.retain(|(cache, _), v| {
                let gone = cache == &self.cache;
                removed += u64::from(gone && v.live(now));
                !gone
            });
            Ok(removed)
        })
    }

    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        token: LockToken,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<LockAttempt, RemoteError>> {
        Box::pin(async move {
            let now = Instant::now();
            let mut data = self.backend.data();
            data.purge(now);
            let lock = data.locks.entry(self.id(key));
            match lock {
                std::collections::hash_map::Entry::Occupied(mut held) => {
                    // `SET NX`: a live lock is held, whoever holds it (even this token).
                    if held.get().1 > now {
                        return Ok(LockAttempt::Held);
                    }
                    held.insert((token, now + ttl));
                }
                std::collections::hash_map::Entry::Vacant(free) => {
                    free.insert((token, now + ttl));
                }
            }
            Ok(LockAttempt::Acquired)
        })
    }

    fn unlock<'a>(
        &'a self,
        key: &'a str,
        token: LockToken,
    ) -> BoxFuture<'a, Result<bool, RemoteError>> {
        Box::pin(async move {
            let mut data = self.backend.data();
            let id = self.id(key);
            let owned = data
                .locks
                .get(&id)
                .is_some_and(|(held, until)| *held == token && *until > Instant::now());
            if owned {
                data.locks.remove(&id);
            }
            Ok(owned)
        })
    }
}

struct MemoryBackplane {
    shared: Arc<Shared>,
}

impl Backplane for MemoryBackplane {
    fn publish<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<(), RemoteError>> {
        // No subscriber is not an error: Redis's PUBLISH to nobody succeeds too.
        let _ = self.shared.bus.send(Arc::from(message));
        Box::pin(async { Ok(()) })
    }

    fn subscribe(&self, sink: Weak<dyn BackplaneSink>) -> BoxFuture<'static, ()> {
        let mut rx = self.shared.bus.subscribe();
        Box::pin(async move {
            match sink.upgrade() {
                Some(s) => s.on_resubscribed(),
                None => return,
            }
            loop {
                // Wake up now and then to notice a manager that went away while all was quiet.
                let next = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
                let Some(sink) = sink.upgrade() else { return };
                match next {
                    Ok(Ok(message)) => sink.on_message(&message),
                    // Messages were dropped: the same gap a lost Redis subscription leaves.
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => sink.on_resubscribed(),
                    Ok(Err(broadcast::error::RecvError::Closed)) => return,
                    Err(_quiet) => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn it_answers_as_the_redis_tier_does() {
        let backend = MemoryBackend::new();
        let tier = backend.tier("c");
        let ttl = Some(Duration::from_secs(1));
        for key in ["a:1", "a:2", "b:1"] {
            tier.set(key, vec![1], ttl, &[Arc::from("t")])
                .await
                .unwrap();
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        // Expired values are gone in Redis, so no delete counts them.
        assert_eq!(tier.delete_pattern("a:*").await, Ok(0));
        assert_eq!(backend.delete_tag("t").await, Ok(0));
        tier.set("c:1", vec![1], None, &[]).await.unwrap();
        assert_eq!(tier.clear().await, Ok(1));

        // `SET NX`: a live lock is held, even against its own token.
        let token = LockToken::random();
        let hold = Duration::from_secs(5);
        assert_eq!(
            tier.try_lock("k", token, hold).await,
            Ok(LockAttempt::Acquired)
        );
        assert_eq!(tier.try_lock("k", token, hold).await, Ok(LockAttempt::Held));
        // `clear_all` scans the whole namespace, locks included.
        assert_eq!(backend.clear_all().await, Ok(0));
        let other = LockToken::random();
        assert_eq!(
            tier.try_lock("k", other, hold).await,
            Ok(LockAttempt::Acquired)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn what_redis_expires_does_not_pile_up() {
        // Values and locks past their TTL, and the tag records of values gone, were kept for
        // ever: a long test writing distinct keys held every one it ever wrote, where Redis
        // holds the live ones.
        let backend = MemoryBackend::new();
        let tier = backend.tier("c");
        let ttl = Duration::from_secs(1);
        for i in 0..100_000u32 {
            let key = format!("k{i}");
            let tags = [Arc::from("all"), Arc::from(format!("t{i}"))];
            tier.set(&key, vec![1], Some(ttl), &tags).await.unwrap();
            let token = LockToken::random();
            assert_eq!(
                tier.try_lock(&key, token, ttl).await,
                Ok(LockAttempt::Acquired)
            );
            if i % 1_000 == 999 {
                // The last 1,000 keys expire: at most 1,000 are ever live.
                tokio::time::advance(ttl).await;
            }
        }
        let data = backend.data();
        let members: usize = data.tags.values().map(HashSet::len).sum();
        let held = (
            data.values.len(),
            data.locks.len(),
            data.tags.len(),
            members,
        );
        assert!(
            held.0 <= 8_000 && held.1 <= 8_000 && held.2 <= 8_000 && held.3 <= 16_000,
            "(values, locks, tags, tag members) held for at most 1,000 live keys: {held:?}"
        );
    }
}
