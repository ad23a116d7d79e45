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
