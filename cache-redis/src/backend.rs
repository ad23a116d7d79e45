//! [`RedisBackend`] and its per-cache [`RemoteTier`]s: the cache-core traits on Redis.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::remote::backplane::Backplane;
use cache_core::remote::{BoxFuture, LockAttempt, LockToken};
use cache_core::{RemoteBackend, RemoteError, RemoteTier};
use redis::Cmd;

use crate::backplane::RedisBackplane;
use crate::config::RedisConfig;
use crate::conn::{BATCH, Conn};
use crate::keys::{CacheLayout, Layout};

/// Records a value key in a tag's record and keeps the record alive as long as its values.
///
/// `KEYS[1]` is the record, a sorted set of value keys each scored by when its value expires (ms
/// since the epoch on the record's server; `+inf`: never), `ARGV[1]` the value's TTL in
/// milliseconds (`0`: none), `ARGV[2]` the value's key. First the names of values that have
/// expired leave the record, so it names the tag's live values (and those that expired since
/// its last write) rather than every value ever tagged. The value's score only grows: two
/// writers of one key may tag it in the other order than they wrote it, and the longer expiry
/// may be the value that stayed. The record then expires with its latest member (persistent
/// while one never expires), so it never expires before one of its values.
///
/// The time is the record's server's (`TIME`), read after the value's `SET` was acknowledged,
/// so a score is never earlier than its value's expiry: on a standalone server it is the clock
/// that expires the value, and on a cluster, where the value may live on another node, each
/// node counts the same TTL from about the same moment on its own clock, so their clocks need
/// not agree. Scripts calling `TIME` before writing are replicated by their effects (the
/// default since Redis 5). It touches only `KEYS[1]`, so it is cluster-safe.
const TAG_SCRIPT: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.0f', now))
local ttl = tonumber(ARGV[1])
local expires = math.huge
if ttl > 0 then
  expires = now + ttl
end
local old = redis.call('ZSCORE', KEYS[1], ARGV[2])
if not old or (old ~= 'inf' and tonumber(old) < expires) then
  local score = '+inf'
  if expires ~= math.huge then
    score = string.format('%.0f', expires)
  end
  redis.call('ZADD', KEYS[1], score, ARGV[2])
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2]
if last == 'inf' then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('PEXPIREAT', KEYS[1], last)
end
return 1
";

/// Takes up to `ARGV[1]` members out of the tag record `KEYS[1]` and returns their names.
/// A script around `ZPOPMIN` so that the reply is the same flat list of names whatever protocol
/// the connection speaks (RESP3 would nest `[name, score]` pairs). It touches only `KEYS[1]`.
const POP_SCRIPT: &str = r"
local popped = redis.call('ZPOPMIN', KEYS[1], ARGV[1])
local names = {}
for i = 1, #popped, 2 do
  names[#names + 1] = popped[i]
end
return names
";

/// Releases a single-flight lock only if it still holds the caller's token: `KEYS[1]` is the
/// lock, `ARGV[1]` the token. A script because `GET` then `DEL` from the client could delete a
/// lock that expired in between and was taken by another instance. It touches only `KEYS[1]`,
/// so it is cluster-safe.
const UNLOCK_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// The longest TTL sent to Redis (about 2,230 years); longer ones are clamped so that
/// `now + ttl` cannot overflow in the server.
const MAX_TTL_MS: u64 = 1 << 46;

/// A Redis (standalone or cluster) remote backend for cache-core.
///
/// Creating one never connects and never fails: the first operation connects, an operation
/// while Redis is unreachable returns an error quickly (the core treats it as a miss and runs
/// the function), and later operations reconnect on their own once Redis is back.
///
/// # Examples
///
/// ```
/// use cache_core::RemoteBackend;
/// use cache_redis::{RedisBackend, RedisConfig};
///
/// // Nothing listens here; creating the backend still succeeds at once.
/// let backend = RedisBackend::new(RedisConfig::standalone("redis://:pw@127.0.0.1:1").namespace("shop"));
/// assert_eq!(backend.describe(), r#"redis://:***@127.0.0.1:1 (standalone, namespace "shop")"#);
/// ```
pub struct RedisBackend {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) config: RedisConfig,
    layout: Layout,
    pub(crate) conn: Conn,
}

impl RedisBackend {
    /// A backend for `config`. Does not connect (see the type's docs).
    ///
    /// ```
    /// use cache_core::{CacheManager, Policy, Tier};
    /// use cache_redis::{RedisBackend, RedisConfig};
    ///
    /// // Connects on the first operation, not here: this runs without a server.
    /// let manager = CacheManager::builder()
    ///     .remote(RedisBackend::new(RedisConfig::standalone("redis://127.0.0.1:6379")))
    ///     .cache("users", Policy::new().tier(Tier::Hybrid))
    ///     .build();
    /// assert_eq!(manager.cache("users").tier(), Tier::Hybrid);
    /// ```
    pub fn new(config: RedisConfig) -> Self {
        let layout = Layout::new(&config.namespace, config.max_key_bytes);
        let conn = Conn::new(&config);
        RedisBackend {
            shared: Arc::new(Shared {
                config,
                layout,
                conn,
            }),
        }
    }

    /// The configuration (its `Debug` output redacts passwords).
    ///
    /// ```
    /// use cache_redis::{RedisBackend, RedisConfig};
    ///
    /// let config = RedisConfig::standalone("redis://:s3cret@127.0.0.1").pool_size(2);
    /// let backend = RedisBackend::new(config);
    /// let shown = format!("{:?}", backend.config());
    /// assert!(shown.contains("pool_size: 2") && !shown.contains("s3cret"));
    /// ```
    pub fn config(&self) -> &RedisConfig {
        &self.shared.config
    }

    /// The concrete tier of one named cache (what [`RemoteBackend::tier`] returns, unboxed).
    ///
    /// Using the tier needs a running server:
    ///
    /// ```no_run
    /// use cache_core::RemoteTier;
    /// use cache_redis::{RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = RedisBackend::new(RedisConfig::standalone("redis://127.0.0.1:6379"));
    /// let users = backend.redis_tier("users");
    /// users.set("user:1", b"raw bytes".to_vec(), None, &[]).await?;
    /// assert_eq!(users.get("user:1").await?, Some(b"raw bytes".to_vec()));
    /// # Ok::<(), cache_core::RemoteError>(())
    /// # }).unwrap();
    /// ```
    pub fn redis_tier(&self, cache: &str) -> RedisTier {
        RedisTier {
            layout: self.shared.layout.cache(cache),
            cache: cache.into(),
            shared: Arc::clone(&self.shared),
        }
    }

    /// The Redis key a logical key of `cache` is stored under (for inspection and tests).
    ///
    /// ```
    /// use cache_redis::{RedisBackend, RedisConfig};
    ///
    /// let config = RedisConfig::standalone("redis://127.0.0.1:1").namespace("shop");
    /// let backend = RedisBackend::new(config);
    /// assert_eq!(backend.redis_key("users", "user:42"), "shop:users:user:42");
    /// // Control characters are never sent raw: such a key is hashed.
    /// assert!(backend.redis_key("users", "a\nb").starts_with("shop:users:h:"));
    /// ```
    pub fn redis_key(&self, cache: &str, key: &str) -> String {
        self.shared.layout.cache(cache).value_key(key)
    }

    /// The Redis key of the single-flight lock of a logical key of `cache` (for inspection and
    /// tests). Locks live outside their cache's keys, so pattern invalidation and clearing the
    /// cache never touch them.
    ///
    /// ```
    /// use cache_redis::{RedisBackend, RedisConfig};
    ///
    /// let b = RedisBackend::new(RedisConfig::standalone("redis://127.0.0.1:1").namespace("shop"));
    /// assert_eq!(b.redis_key("users", "user:42"), "shop:users:user:42");
    /// assert_eq!(b.lock_key("users", "user:42"), "shop:lock:users:user:42");
    /// ```
    pub fn lock_key(&self, cache: &str, key: &str) -> String {
        self.shared.layout.cache(cache).lock_key(key)
    }

    /// The Redis key of a tag's record: a sorted set of the Redis keys of the values carrying
    /// the tag, each scored by its value's expiry in milliseconds since the epoch (`+inf` for
    /// a value without TTL).
    ///
    /// ```
    /// use cache_redis::{RedisBackend, RedisConfig};
    ///
    /// let config = RedisConfig::standalone("redis://127.0.0.1:1").namespace("shop");
    /// let backend = RedisBackend::new(config);
    /// assert_eq!(backend.tag_key("user:42"), "shop:%tag:user:42");
    /// ```
    pub fn tag_key(&self, tag: &str) -> String {
        self.shared.layout.tag_key(tag)
    }

    /// The pub/sub channel of this backend's backplane (for `redis-cli SUBSCRIBE` and ACLs).
    /// Pub/sub ignores the database number, so a database other than 0 is part of the name.
    ///
    /// ```
    /// use cache_redis::{RedisBackend, RedisConfig};
    ///
    /// let shop = RedisBackend::new(RedisConfig::standalone("redis://127.0.0.1:1").namespace("shop"));
    /// assert_eq!(shop.backplane_channel(), "shop:backplane");
    /// let on_db_2 = RedisConfig::standalone("redis://127.0.0.1:1/2").namespace("shop");
    /// assert_eq!(RedisBackend::new(on_db_2).backplane_channel(), "shop:backplane:db2");
    /// ```
    pub fn backplane_channel(&self) -> String {
        crate::backplane::channel(&self.shared.config.namespace, self.shared.config.database())
    }
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Runs a bulk operation (tag, pattern or namespace invalidation) in its own task, so that it
/// runs to completion even when the caller stops waiting: the core bounds every remote
/// operation by a timeout much shorter than a large invalidation can take, and an invalidation
/// cut off halfway would leave stale entries behind. The caller still gets the result if it
/// waits for it.
async fn detached<T: Send + 'static>(
    op: impl Future<Output = Result<T, RemoteError>> + Send + 'static,
) -> Result<T, RemoteError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(RemoteError::Backend(
            "the Redis tier runs on tokio; no tokio runtime is running".to_owned(),
        ));
    }
    tokio::spawn(op).await.unwrap_or_else(|e| {
        Err(RemoteError::Backend(format!(
            "Redis bulk operation task failed: {e}"
        )))
    })
}

impl Shared {
    async fn delete_tag(self: Arc<Self>, tag: String) -> Result<u64, RemoteError> {
        let mut pop = redis::cmd("EVAL");
        pop.arg(POP_SCRIPT)
            .arg(1)
            .arg(self.layout.tag_key(&tag))
            .arg(BATCH);
        let mut removed = self.drain(&pop).await?;
        // The plain set versions before the sorted records kept (see `Layout::legacy_tag_key`):
        // values they tagged may still live. Usually one `SPOP` that finds nothing.
        let mut spop = redis::cmd("SPOP");
        spop.arg(self.layout.legacy_tag_key(&tag)).arg(BATCH);
        removed += self.drain(&spop).await?;
        Ok(removed)
    }

    /// Runs `pop` (which takes up to [`BATCH`] value keys out of a tag's record and returns
    /// them) and unlinks what it took, until it takes less than a batch; returns how many values
    /// existed. Popping is atomic, so a value tagged while this runs is either popped (and
    /// unlinked) here or stays recorded for the next invalidation. Running detached (see
    /// `detached`), a popped batch is always unlinked. A record disappears with its last member.
    async fn drain(&self, pop: &Cmd) -> Result<u64, RemoteError> {
        let mut removed = 0;
        loop {
            let members: Vec<Vec<u8>> = self.conn.query(pop).await?;
            let last = members.len() < BATCH;
            removed += self.conn.unlink(members).await?;
            if last {
                return Ok(removed);
            }
        }
    }

    async fn ping(&self) -> Result<Duration, RemoteError> {
        // Connect first, so the measured time is one round trip; and PING on that same
        // connection, since with several per server the next `query` takes the next one,
        // which may still have to connect.
        let handle = self.conn.handle().await?;
        let started = Instant::now();
        let _: String = self.conn.query_on(&handle, &redis::cmd("PING")).await?;
        Ok(started.elapsed())
    }
}

impl RemoteBackend for RedisBackend {
    fn tier(&self, cache: &str) -> Arc<dyn RemoteTier> {
        Arc::new(self.redis_tier(cache))
    }

    fn delete_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>> {
        Box::pin(detached(
            Arc::clone(&self.shared).delete_tag(tag.to_owned()),
        ))
    }

    fn clear_all(&self) -> BoxFuture<'_, Result<u64, RemoteError>> {
        let shared = Arc::clone(&self.shared);
        Box::pin(detached(async move {
            let glob = shared.layout.namespace_glob();
            shared.conn.scan_unlink(&glob).await
        }))
    }

    fn ping(&self) -> BoxFuture<'_, Result<Duration, RemoteError>> {
        Box::pin(self.shared.ping())
    }

    fn backplane(&self) -> Option<Arc<dyn Backplane>> {
        Some(Arc::new(RedisBackplane::new(Arc::clone(&self.shared))))
    }

    fn describe(&self) -> String {
        let config = &self.shared.config;
        let mode = if config.is_cluster() {
            "cluster"
        } else {
            "standalone"
        };
        format!(
            "{} ({mode}, namespace {:?})",
            config.redacted_urls(),
            config.namespace
        )
    }
}

/// One named cache's slice of a [`RedisBackend`]: keys `{namespace}:{cache}:{key}`.
///
/// ```
/// use cache_core::RemoteBackend;
/// use cache_redis::{RedisBackend, RedisConfig};
///
/// let backend = RedisBackend::new(RedisConfig::standalone("redis://127.0.0.1:1"));
/// let tier = backend.redis_tier("users"); // or, boxed: backend.tier("users")
/// assert!(format!("{tier:?}").contains("users"));
/// ```
pub struct RedisTier {
    shared: Arc<Shared>,
    layout: CacheLayout,
    cache: Box<str>,
}

impl fmt::Debug for RedisTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTier")
            .field("cache", &self.cache)
            .field("namespace", &self.shared.config.namespace)
            .finish_non_exhaustive()
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    // `PX 0` is an error in Redis; a zero TTL means "expire at once", i.e. the shortest one.
    (ttl.as_millis().min(u128::from(MAX_TTL_MS)) as u64).max(1)
}

impl RedisTier {
    fn set_commands(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        tags: &[Arc<str>],
    ) -> Vec<Cmd> {
        let full = self.layout.value_key(key);
        let ttl_ms = ttl.map(ttl_ms);
        let mut cmds = Vec::with_capacity(1 + tags.len());
        let mut set = redis::cmd("SET");
        set.arg(&full).arg(value);
        if let Some(ms) = ttl_ms {
            set.arg("PX").arg(ms);
        }
        cmds.push(set);
        for tag in tags {
            let mut eval = redis::cmd("EVAL");
            eval.arg(TAG_SCRIPT)
                .arg(1)
                .arg(self.shared.layout.tag_key(tag))
                .arg(ttl_ms.unwrap_or(0))
                .arg(&full);
            cmds.push(eval);
        }
        cmds
    }
}

impl RemoteTier for RedisTier {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>> {
        Box::pin(async move {
            // `GETRANGE 0 limit` rather than `GET`: a value someone else stored under our key
            // may be of any size (up to 512 MiB), and reading it whole would hold all of it in
            // memory; this reads at most one byte past the limit, enough to know it is too
            // large. A missing key reads as empty, which no envelope is.
            let limit = self.shared.config.max_value_bytes;
            let mut get = self.layout.key_command("GETRANGE", key);
            // Redis parses the end as a signed 64-bit integer and refuses anything larger, which
            // would fail every read of a backend configured with `usize::MAX` ("no limit") and
            // open the breaker. No string is that long, so the clamp changes nothing else.
            get.arg(0).arg(limit.min(i64::MAX as usize));
            match self.shared.conn.query::<Vec<u8>>(&get).await {
                Ok(bytes) if bytes.is_empty() => Ok(None),
                Ok(bytes) if bytes.len() > limit => Err(RemoteError::TooLarge {
                    size: bytes.len(),
                    limit,
                }),
                Ok(bytes) => Ok(Some(bytes)),
                // A list, hash or set under our key (another client's) holds no value of ours:
                // a miss, not a failure of the connection, so it cannot open the breaker.
                Err(RemoteError::Backend(msg)) if msg.contains("WRONGTYPE") => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        tags: &'a [Arc<str>],
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        Box::pin(async move {
            let limit = self.shared.config.max_value_bytes;
            if value.len() > limit {
                return Err(RemoteError::TooLarge {
                    size: value.len(),
                    limit,
                });
            }
            // The value first, then its tags: a `delete_tag` running in between can miss this
            // one write (as any invalidation racing a write may), but a tag record never names a
            // key that was then written without it.
            let cmds = self.set_commands(key, value, ttl, tags);
            self.shared.conn.first_then_batch(cmds).await.map(drop)
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, RemoteError>> {
        Box::pin(async move {
            let unlink = self.layout.key_command("UNLINK", key);
            let n: u64 = self.shared.conn.query(&unlink).await?;
            Ok(n > 0)
        })
    }

    fn delete_pattern<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>> {
        let glob = self.layout.pattern(pattern);
        let shared = Arc::clone(&self.shared);
        Box::pin(detached(
            async move { shared.conn.scan_unlink(&glob).await },
        ))
    }

    fn clear<'a>(&'a self) -> BoxFuture<'a, Result<u64, RemoteError>> {
        let glob = self.layout.all();
        let shared = Arc::clone(&self.shared);
        Box::pin(detached(
            async move { shared.conn.scan_unlink(&glob).await },
        ))
    }

    fn try_lock<'a>(
        &'a self,
        key: &'a str,
        token: LockToken,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<LockAttempt, RemoteError>> {
        Box::pin(async move {
            let mut set = redis::cmd("SET");
            set.arg(self.layout.lock_key(key))
                .arg(token.to_string())
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms(ttl));
            // `OK` when set, nil when the key exists.
            let reply: Option<String> = self.shared.conn.query(&set).await?;
            Ok(if reply.is_some() {
                LockAttempt::Acquired
            } else {
                LockAttempt::Held
            })
        })
    }

    fn unlock<'a>(
        &'a self,
        key: &'a str,
        token: LockToken,
    ) -> BoxFuture<'a, Result<bool, RemoteError>> {
        Box::pin(async move {
            let mut eval = redis::cmd("EVAL");
            eval.arg(UNLOCK_SCRIPT)
                .arg(1)
                .arg(self.layout.lock_key(key))
                .arg(token.to_string());
            let deleted: u64 = self.shared.conn.query(&eval).await?;
            Ok(deleted > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_bounds() {
        assert_eq!(ttl_ms(Duration::ZERO), 1);
        assert_eq!(ttl_ms(Duration::from_micros(10)), 1);
        assert_eq!(ttl_ms(Duration::from_millis(1500)), 1500);
        assert_eq!(ttl_ms(Duration::MAX), MAX_TTL_MS);
    }

    #[test]
    fn describe_redacts_and_names_the_mode() {
        let b = RedisBackend::new(RedisConfig::standalone("redis://u:hunter2@127.0.0.1:6379"));
        assert_eq!(
            b.describe(),
            r#"redis://u:***@127.0.0.1:6379 (standalone, namespace "cache")"#
        );
        let b = RedisBackend::new(
            RedisConfig::cluster(["redis://:hunter2@a:7000", "redis://:hunter2@b:7000"])
                .namespace("app"),
        );
        assert_eq!(
            b.describe(),
            r#"redis://:***@a:7000, redis://:***@b:7000 (cluster, namespace "app")"#
        );
        assert!(!format!("{b:?}").contains("hunter2"));
    }

    #[test]
    fn a_bad_url_is_an_error_on_use_not_a_panic() {
        let b = RedisBackend::new(RedisConfig::standalone("nonsense://:hunter2@"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt.block_on(b.tier("c").get("k")).unwrap_err();
        assert!(matches!(err, RemoteError::Backend(_)), "{err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let b = RedisBackend::new(RedisConfig::cluster(Vec::<String>::new()));
        assert!(rt.block_on(b.ping()).is_err());
    }
}
