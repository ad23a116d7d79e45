//! Several instances of an application in one process, sharing one remote backend.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::remote::backplane::Backplane;
use crate::remote::{BoxFuture, RemoteBackend, RemoteError, RemoteTier};
use crate::{CacheManager, CacheManagerBuilder};

/// One remote backend handed to several managers: each manager gets a `SharedBackend` pointing at
/// the same backend (the same Redis connection, the same [`MemoryBackend`](super::MemoryBackend)
/// data, the same [`FaultyBackend`](super::FaultyBackend) switch). [`instances`] uses it; build
/// managers by hand with it when they need different settings.
///
/// ```
/// use cache_core::testing::{MemoryBackend, SharedBackend};
/// use cache_core::{CacheManager, Policy, Tier};
///
/// let shared = SharedBackend::new(MemoryBackend::new());
/// let a = CacheManager::builder()
///     .remote(shared.clone())
///     .cache("users", Policy::new().tier(Tier::Hybrid))
///     .build();
/// let b = CacheManager::builder()
///     .remote(shared)
///     .cache("users", Policy::new().tier(Tier::Remote))
///     .build();
/// # drop((a, b));
/// ```
#[derive(Clone)]
pub struct SharedBackend(Arc<dyn RemoteBackend>);

impl fmt::Debug for SharedBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedBackend")
            .field(&self.0.describe())
            .finish()
    }
}

impl SharedBackend {
    /// Shares `backend`.
    ///
    /// ```
    /// use cache_core::testing::{MemoryBackend, SharedBackend};
    /// use cache_core::RemoteBackend;
    ///
    /// let shared = SharedBackend::new(MemoryBackend::new());
    /// assert_eq!(shared.describe(), shared.clone().describe());
    /// ```
    pub fn new(backend: impl RemoteBackend) -> Self {
        SharedBackend(Arc::new(backend))
    }
}

impl RemoteBackend for SharedBackend {
    fn tier(&self, cache: &str) -> Arc<dyn RemoteTier> {
        self.0.tier(cache)
    }

    fn delete_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>> {
        self.0.delete_tag(tag)
    }

    fn clear_all(&self) -> BoxFuture<'_, Result<u64, RemoteError>> {
        self.0.clear_all()
    }

    fn ping(&self) -> BoxFuture<'_, Result<Duration, RemoteError>> {
        self.0.ping()
    }

    fn describe(&self) -> String {
        self.0.describe()
    }

    fn backplane(&self) -> Option<Arc<dyn Backplane>> {
        self.0.backplane()
    }
}

/// Builds `n` managers sharing `backend`, as `n` processes of one application sharing one Redis
/// would: each has its own memory tiers, its own stats and its own identity on the backplane, so
/// an invalidation on one reaches the others' memory tiers through the backplane, as between
/// processes. `configure` gets each instance's index and a builder with the remote already set,
/// and adds the caches (the same policies on every instance, usually).
///
/// Cached functions called inside `managers[i].scope(..)` use instance `i`.
///
/// # Examples
///
/// ```
/// use cache_core::testing::{MemoryBackend, instances};
/// use cache_core::{Policy, Tier};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let [a, b] = instances(2, MemoryBackend::new(), |_, builder| {
///     builder.cache("users", Policy::new().tier(Tier::Hybrid))
/// })
/// .try_into()
/// .unwrap();
/// a.cache("users").set("user:1", "Ada".to_string()).await;
/// // B's memory is empty; it reads A's value from the shared remote tier.
/// assert_eq!(b.cache("users").get::<String>("user:1").await.as_deref(), Some("Ada"));
/// # });
/// ```
pub fn instances(
    n: usize,
    backend: impl RemoteBackend,
    configure: impl Fn(usize, CacheManagerBuilder) -> CacheManagerBuilder,
) -> Vec<CacheManager> {
    let shared = SharedBackend::new(backend);
    (0..n)
        .map(|i| configure(i, CacheManager::builder().remote(shared.clone())).build())
        .collect()
}
