//! Test your own code against cache faults (feature `testing`).
//!
//! A cache must never be why a service answers wrongly or not at all; this module lets an
//! application's tests check that of their own code, with the same tools the project's
//! reliability suite uses (see `docs/reliability.md`):
//!
//! - [`FaultyBackend`]: wraps any remote backend (Redis, or [`MemoryBackend`]) and makes its
//!   operations fail always, fail with a seeded probability, slow down, or hang, switched at run
//!   time through [`Faults`], with [`FaultCounts`] of what it injected. The backplane's
//!   publishes have a switch of their own ([`Faults::set_publish_fault`]), and so do the messages
//!   its subscription delivers ([`Faults::set_drop_messages`], [`Faults::resubscribe`]).
//! - [`MemoryBackend`]: an in-process remote backend with a backplane, for unit tests that need
//!   a second tier without a server. Not Redis: test against Redis too.
//! - [`instances`]: several managers sharing one backend in one process, as several processes
//!   of an application share one Redis ([`SharedBackend`] hands one backend to many managers).
//! - [`TestClock`]: a manual or paused tokio clock, moved together with the managers' expiry
//!   sweeps, so TTL tests of the memory tiers neither sleep nor race (a remote value's logical
//!   expiry, in its envelope, stays on the wall clock).
//! - [`give_up_after`]: a caller that gives up, dropping its call after a set number of polls,
//!   to check that a call cut short at any await point leaves nothing behind.
//! - [`fuzz`]: the fuzz targets' entry points (the value envelope decoder, key templates).
//!
//! ```toml
//! [dev-dependencies]
//! cache-core = { version = "0.1", features = ["testing"] }
//! ```

mod clock;
mod faulty;
pub mod fuzz;
mod give_up;
mod instances;
mod memory_backend;

pub use clock::TestClock;
pub use faulty::{Fault, FaultCounts, Faults, FaultyBackend, HeldGet};
pub use give_up::{GiveUpAfter, give_up_after};
pub use instances::{SharedBackend, instances};
pub use memory_backend::MemoryBackend;
