//! Shared helpers for the integration tests in `tests/tests/`.
//!
//! - [`redis_server`]: real `redis-server` processes (a single server, a three-master cluster)
//!   and a black-hole listener, started on free loopback ports and killed on drop.

pub mod redis_server;

pub use redis_server::{BlackHole, NO_BULK_COMMANDS, RedisCluster, RedisServer};
