//! Health of a manager's tiers, for a service's `/health` endpoint.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{BreakerState, CacheManager};

/// The health of every tier of a [`CacheManager`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let manager = cache_core::CacheManager::builder().build();
/// let health = manager.health().await;
/// assert!(health.healthy && health.remote.is_none());
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Health {
    /// True when every tier is usable. A degraded remote tier leaves the service answering
    /// (fail-open), so callers usually report it without failing their own health check.
    pub healthy: bool,
    /// The memory tier.
    pub memory: MemoryHealth,
    /// The remote tier, if one is configured.
    pub remote: Option<RemoteHealth>,
}

/// The memory tier's state.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let manager = cache_core::CacheManager::builder().build();
/// manager.cache("users").set("user:1", 1_u32).await;
/// let memory = manager.health().await.memory;
/// assert_eq!(memory.entries, 1);
/// assert_eq!(memory.caches.len(), 1);
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MemoryHealth {
    /// Entries held, over all caches.
    pub entries: u64,
    /// Weight held, over all caches.
    pub weight: u64,
    /// Per cache: entries held and the bound.
    pub caches: Vec<CacheFill>,
}

/// How full one named cache's memory tier is.
///
/// ```
/// use cache_core::{CacheManager, Policy};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let manager = CacheManager::builder().cache("users", Policy::new().max_entries(100)).build();
/// manager.cache("users").set("user:1", 1_u32).await;
/// let fill = &manager.health().await.memory.caches[0];
/// assert_eq!((fill.name.as_str(), fill.entries, fill.max_entries), ("users", 1, 100));
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CacheFill {
    /// The cache.
    pub name: String,
    /// Entries held.
    pub entries: u64,
    /// The entry bound.
    pub max_entries: u64,
}

/// The remote tier's state.
///
/// ```
/// use cache_core::testing::MemoryBackend;
/// use cache_core::{BreakerState, CacheManager};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let manager = CacheManager::builder().remote(MemoryBackend::new()).build();
/// let remote = manager.health().await.remote.expect("a backend is configured");
/// assert!(remote.reachable);
/// assert_eq!(remote.breaker, BreakerState::Closed);
/// # });
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RemoteHealth {
    /// The backend, password redacted.
    pub backend: String,
    /// Whether a ping answered.
    pub reachable: bool,
    /// The ping's round trip, if it answered.
    pub ping_ms: Option<f64>,
    /// The circuit breaker.
    pub breaker: BreakerState,
    /// Why the ping failed, if it did.
    pub error: Option<String>,
}

impl CacheManager {
    /// Checks every tier: the memory tier's fill, and a ping of the remote backend (bounded by the
    /// backend timeout; it does not go through the breaker, so it also tells when Redis is back).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let manager = cache_core::CacheManager::builder().build();
    /// let health = manager.health().await;
    /// assert!(health.healthy);
    /// assert!(health.remote.is_none());
    /// # });
    /// ```
    pub async fn health(&self) -> Health {
        // One list of stores for both: a cache created in between two lists shifted the names
        // against the bounds.
        let stores = self.stores();
        let stats: Vec<_> = stores.iter().map(|s| s.stats()).collect();
        let caches = stores
            .iter()
            .zip(&stats)
            .map(|(store, s)| CacheFill {
                name: s.name.clone(),
                entries: s.entries,
                max_entries: store.policy.max_entries as u64,
            })
            .collect();
        let memory = MemoryHealth {
            entries: stats.iter().map(|s| s.entries).sum(),
            weight: stats.iter().map(|s| s.weight).sum(),
            caches,
        };
        let remote = match self.remote() {
            None => None,
            Some(backend) => {
                let timeout = self.resilience().timeout.max(Duration::from_millis(100));
                let ping = tokio::time::timeout(timeout, backend.ping()).await;
                let (reachable, ping_ms, error) = match ping {
                    Ok(Ok(rtt)) => (true, Some(rtt.as_secs_f64() * 1000.0), None),
                    Ok(Err(e)) => (false, None, Some(e.to_string())),
                    Err(_) => (false, None, Some(format!("no answer within {timeout:?}"))),
                };
                Some(RemoteHealth {
                    backend: backend.describe(),
                    reachable,
                    ping_ms,
                    breaker: self.breaker_state(),
                    error,
                })
            }
        };
        Health {
            healthy: remote.as_ref().is_none_or(|r| r.reachable),
            memory,
            remote,
        }
    }
}
