//! Shared helpers for the integration tests in `tests/tests/`.
//!
//! - [`redis_server`]: real `redis-server` processes (a single server, a three-master cluster)
//!   and a black-hole listener, started on free loopback ports and killed on drop.
//! - [`fault_proxy`]: a TCP proxy between an application and Redis that adds latency, resets
//!   connections, black-holes them or cuts the link, switched while a test runs.
//! - [`demo_server`]: the demo server binary (`examples/server`), started on a free port, and a
//!   small HTTP/1.1 client for it.

pub mod demo_server;
pub mod fault_proxy;
pub mod redis_server;

pub use redis_server::{BlackHole, NO_BULK_COMMANDS, RedisCluster, RedisServer};

/// Waits (at most 5 s, else fails) for the first backplane subscription of a manager that must
/// have a backplane. That subscription clears the memory tiers and keeps values computed across
/// it from being stored, so a test that counts body runs or hits starts after it.
pub async fn backplane_subscribed(manager: &cache_core::CacheManager) {
    assert!(
        manager.backplane_stats().is_some(),
        "a hybrid cache on a backend with a backplane"
    );
    assert!(
        manager
            .backplane_subscribed(std::time::Duration::from_secs(5))
            .await,
        "the backplane never subscribed"
    );
}
