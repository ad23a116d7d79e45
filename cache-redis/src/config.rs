//! [`RedisConfig`]: where Redis is and how the tier lays out and bounds what it stores.

use std::fmt;
use std::time::Duration;

use crate::redact::redact;

/// The default namespace: the first segment of every key this backend writes.
///
/// ```
/// use cache_redis::{DEFAULT_NAMESPACE, RedisBackend, RedisConfig};
///
/// let backend = RedisBackend::new(RedisConfig::standalone("redis://127.0.0.1:1"));
/// assert_eq!(backend.redis_key("users", "user:1"), format!("{DEFAULT_NAMESPACE}:users:user:1"));
/// ```
pub const DEFAULT_NAMESPACE: &str = "cache";
/// The default largest value accepted on write (8 MiB).
///
/// ```
/// use cache_redis::{DEFAULT_MAX_VALUE_BYTES, RedisConfig};
///
/// let config = RedisConfig::standalone("redis://127.0.0.1")
///     .max_value_bytes(DEFAULT_MAX_VALUE_BYTES / 8);
/// # drop(config);
/// ```
pub const DEFAULT_MAX_VALUE_BYTES: usize = 8 << 20;
/// The default longest logical key sent to Redis as it is (longer ones are hashed).
///
/// ```
/// use cache_redis::{DEFAULT_MAX_KEY_BYTES, RedisBackend, RedisConfig};
///
/// let config = RedisConfig::standalone("redis://127.0.0.1:1").namespace("app");
/// let backend = RedisBackend::new(config);
/// let long = "k".repeat(DEFAULT_MAX_KEY_BYTES + 1);
/// assert!(backend.redis_key("c", &long).starts_with("app:c:h:")); // hashed
/// ```
pub const DEFAULT_MAX_KEY_BYTES: usize = 512;
/// The default bound on establishing a connection.
///
/// ```
/// use cache_redis::{DEFAULT_CONNECT_TIMEOUT, RedisConfig};
///
/// let config = RedisConfig::standalone("redis://127.0.0.1")
///     .connect_timeout(DEFAULT_CONNECT_TIMEOUT * 3);
/// # drop(config);
/// ```
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The default bound on waiting for one reply.
///
/// ```
/// use cache_redis::{DEFAULT_RESPONSE_TIMEOUT, RedisConfig};
///
/// let config = RedisConfig::standalone("redis://127.0.0.1")
///     .response_timeout(DEFAULT_RESPONSE_TIMEOUT / 2);
/// # drop(config);
/// ```
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Standalone server or cluster.
#[derive(Clone)]
pub(crate) enum Mode {
    Standalone(String),
    Cluster(Vec<String>),
}

/// How to reach Redis and how to use it.
///
/// Built with [`standalone`](Self::standalone) or [`cluster`](Self::cluster) and consuming
/// setters; nothing connects until the backend's first operation.
///
/// # Examples
///
/// ```
/// use cache_redis::RedisConfig;
/// use std::time::Duration;
///
/// let config = RedisConfig::standalone("redis://app:s3cret@127.0.0.1:6379/0")
///     .namespace("billing")
///     .max_value_bytes(1 << 20)
///     .response_timeout(Duration::from_millis(500));
/// // The password never shows.
/// assert!(!format!("{config:?}").contains("s3cret"));
///
/// let cluster = RedisConfig::cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]);
/// # drop(cluster);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    pub(crate) mode: Mode,
    pub(crate) namespace: String,
    pub(crate) max_value_bytes: usize,
    pub(crate) max_key_bytes: usize,
    pub(crate) pool_size: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
}

impl RedisConfig {
    fn with_mode(mode: Mode) -> Self {
        RedisConfig {
            mode,
            namespace: DEFAULT_NAMESPACE.to_owned(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
            pool_size: 1,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        }
    }

    /// One Redis server (or a proxy in front of several): `redis://[user[:password]@]host[:port][/db]`,
    /// `rediss://` for TLS, `unix:///path/to/socket` for a local socket.
    ///
    /// ```
    /// use cache_redis::RedisConfig;
    ///
    /// let config = RedisConfig::standalone("redis://:s3cret@127.0.0.1:6379/0");
    /// assert!(format!("{config:?}").contains(r#"standalone: "redis://:***@127.0.0.1:6379/0""#));
    /// ```
    pub fn standalone(url: impl Into<String>) -> Self {
        Self::with_mode(Mode::Standalone(url.into()))
    }

    /// A Redis Cluster, found through any of these seed nodes (one reachable seed is enough; the
    /// rest of the topology is discovered). All seeds must share credentials and TLS settings.
    ///
    /// ```
    /// use cache_core::RemoteBackend;
    /// use cache_redis::{RedisBackend, RedisConfig};
    ///
    /// let config = RedisConfig::cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]);
    /// let backend = RedisBackend::new(config.namespace("shop"));
    /// assert!(backend.describe().contains("(cluster, namespace \"shop\")"));
    /// ```
    pub fn cluster<I, S>(seed_urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_mode(Mode::Cluster(
            seed_urls.into_iter().map(Into::into).collect(),
        ))
    }

    /// The first segment of every key (default `"cache"`), so that several applications, or
    /// several environments, can share one Redis without reading or clearing each other's
    /// entries. Use the application's name.
    ///
    /// A `:` or `%` in the namespace is percent-encoded in keys (`a:b` → `a%3Ab`) so that no
    /// namespace's keys can fall under another's prefix.
    ///
    /// ```
    /// use cache_redis::{RedisBackend, RedisConfig};
    ///
    /// let config = RedisConfig::standalone("redis://127.0.0.1:1");
    /// let backend = RedisBackend::new(config.clone().namespace("billing"));
    /// assert_eq!(backend.redis_key("users", "user:1"), "billing:users:user:1");
    /// let backend = RedisBackend::new(config.namespace("a:b"));
    /// assert_eq!(backend.redis_key("users", "user:1"), "a%3Ab:users:user:1");
    /// ```
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The largest value written (default 8 MiB); larger ones are refused with
    /// [`RemoteError::TooLarge`](cache_core::RemoteError::TooLarge) and never sent.
    /// `usize::MAX` means no limit.
    ///
    /// Refused before anything is sent, so this runs without a server:
    ///
    /// ```
    /// use cache_core::{RemoteError, RemoteTier};
    /// use cache_redis::{RedisBackend, RedisConfig};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let config = RedisConfig::standalone("redis://127.0.0.1:1").max_value_bytes(4);
    /// let tier = RedisBackend::new(config).redis_tier("c");
    /// let refused = tier.set("k", vec![0; 5], None, &[]).await;
    /// assert_eq!(refused, Err(RemoteError::TooLarge { size: 5, limit: 4 }));
    /// # });
    /// ```
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// The longest logical key sent to Redis as it is (default 512 bytes). Longer keys, and keys
    /// containing control characters, are stored under `h:` followed by the hex XXH3-128 of the
    /// key instead (the envelope still carries the real key's hash, so a collision is a miss).
    ///
    /// ```
    /// use cache_redis::{RedisBackend, RedisConfig};
    ///
    /// let config = RedisConfig::standalone("redis://127.0.0.1:1")
    ///     .namespace("app")
    ///     .max_key_bytes(8);
    /// let backend = RedisBackend::new(config);
    /// assert_eq!(backend.redis_key("c", "short"), "app:c:short");
    /// assert!(backend.redis_key("c", "much longer than 8").starts_with("app:c:h:"));
    /// ```
    pub fn max_key_bytes(mut self, bytes: usize) -> Self {
        self.max_key_bytes = bytes;
        self
    }

    /// How many multiplexed connections a standalone backend opens and uses in turn (default 1,
    /// which is enough for most loads: one connection pipelines every concurrent request). More
    /// help when large values or heavy pipelines queue behind each other. Ignored for a cluster,
    /// which keeps one multiplexed connection per node.
    ///
    /// ```
    /// use cache_redis::RedisConfig;
    ///
    /// let config = RedisConfig::standalone("redis://127.0.0.1").pool_size(4);
    /// assert!(format!("{config:?}").contains("pool_size: 4"));
    /// ```
    pub fn pool_size(mut self, connections: usize) -> Self {
        self.pool_size = connections.max(1);
        self
    }

    /// The longest a connection attempt may take (default 1 s). The core's per-operation
    /// timeout is usually much shorter; this bounds the connection itself, so a server that
    /// accepts connections but never answers cannot hold one open forever.
    ///
    /// ```
    /// use cache_redis::RedisConfig;
    /// use std::time::Duration;
    ///
    /// let config = RedisConfig::standalone("redis://127.0.0.1")
    ///     .connect_timeout(Duration::from_millis(250));
    /// assert!(format!("{config:?}").contains("connect_timeout: 250ms"));
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The longest the connection waits for one reply (default 1 s), a backstop under the
    /// core's per-operation timeout. A standalone connection that leaves a reply (or the `PING`
    /// that checks it after a caller stopped waiting) unanswered for longer is dropped, and the
    /// next operation connects again.
    ///
    /// ```
    /// use cache_redis::RedisConfig;
    /// use std::time::Duration;
    ///
    /// let config = RedisConfig::standalone("redis://127.0.0.1")
    ///     .response_timeout(Duration::from_millis(300));
    /// assert!(format!("{config:?}").contains("response_timeout: 300ms"));
    /// ```
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// The configured URLs, as given (with passwords).
    /// The logical database of a standalone URL (`/N`); 0 on a cluster, which has only that
    /// one, and for a URL that does not parse (it connects nowhere anyway).
    pub(crate) fn database(&self) -> i64 {
        match &self.mode {
            Mode::Standalone(url) => redis::IntoConnectionInfo::into_connection_info(url.as_str())
                .map_or(0, |info| info.redis_settings().db()),
            Mode::Cluster(_) => 0,
        }
    }

    pub(crate) fn urls(&self) -> Vec<&str> {
        match &self.mode {
            Mode::Standalone(url) => vec![url.as_str()],
            Mode::Cluster(seeds) => seeds.iter().map(String::as_str).collect(),
        }
    }

    /// The URLs with passwords redacted, comma-separated.
    pub(crate) fn redacted_urls(&self) -> String {
        self.urls()
            .into_iter()
            .map(redact)
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.mode, Mode::Cluster(_))
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls().into_iter().map(redact).collect();
        let mut s = f.debug_struct("RedisConfig");
        match &self.mode {
            Mode::Standalone(_) => s.field("standalone", &urls[0]),
            Mode::Cluster(_) => s.field("cluster", &urls),
        };
        s.field("namespace", &self.namespace)
            .field("max_value_bytes", &self.max_value_bytes)
            .field("max_key_bytes", &self.max_key_bytes)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_every_url() {
        let c = RedisConfig::standalone("redis://u:topsecret@h:1");
        let d = format!("{c:?}");
        assert!(d.contains("redis://u:***@h:1"), "{d}");
        assert!(!d.contains("topsecret"));
        let c = RedisConfig::cluster(["redis://:topsecret@a:1", "redis://:topsecret@b:1"]);
        assert!(!format!("{c:?}").contains("topsecret"));
        assert_eq!(c.redacted_urls(), "redis://:***@a:1, redis://:***@b:1");
    }

    #[test]
    fn defaults_and_setters() {
        let c = RedisConfig::standalone("redis://h");
        assert_eq!(c.namespace, "cache");
        assert_eq!(c.max_value_bytes, 8 << 20);
        assert_eq!(c.max_key_bytes, 512);
        assert_eq!(c.pool_size, 1);
        let c = c.pool_size(0).namespace("x").max_key_bytes(10);
        assert_eq!(
            (c.pool_size, c.namespace.as_str(), c.max_key_bytes),
            (1, "x", 10)
        );
        assert!(!c.is_cluster());
    }
}
