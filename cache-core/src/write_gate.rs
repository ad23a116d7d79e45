//! [`WriteGate`]: orders a cache's remote writes before the remote deletes of the invalidations
//! that follow them, so invalidate-then-read stays linearizable on one instance with a remote
//! tier in the path.
//!
//! The race it closes: a leader computes a value, stores it in memory (its epoch still current),
//! then writes it through to Redis. An invalidation that runs in between removes the memory copy
//! and deletes the key in Redis, and returns; the leader's `SET`, still in flight, lands after
//! the `DEL`. A read after the invalidation misses memory, reads Redis, and gets the value from
//! before the invalidation. (`tests/tests/linearizable_redis.rs` found this: about one stale read
//! in 3,200 operations.)
//!
//! The gate: a write registers in the current *phase* and then checks its epochs (skipping the
//! write if an invalidation moved them); an invalidation, after bumping the epochs, starts a new
//! phase and waits until every write registered in earlier phases is done before deleting
//! remotely. Registration and the phase change are ordered by one mutex, so for any write either
//! its epoch check sees the invalidation (and it does not write), or the invalidation waits for
//! its `SET` (and the `DEL` comes after). The wait is bounded by the writes' own timeouts, and
//! by the caller's limit past them: a write whose future cannot run (its runtime's one thread is
//! the one blocked on this invalidation, through a sync caller) would otherwise hold it for ever.
//! Later writes (a new phase) never hold an invalidation up, so a busy cache cannot starve it.
//!
//! `Cache::set` drains the same way before its own write: a computed value whose write passed
//! its epoch check just before the set moved the epochs would otherwise land over the set's.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tokio::sync::Notify;

#[derive(Default)]
pub(crate) struct WriteGate {
    state: Mutex<State>,
    done: Notify,
}

#[derive(Default)]
struct State {
    phase: u64,
    /// Writes in flight, by the phase they registered in.
    in_flight: BTreeMap<u64, usize>,
}

/// A registered write; dropping it (done, failed or cancelled) releases it.
pub(crate) struct WriteTicket<'a> {
    gate: &'a WriteGate,
    phase: u64,
}

impl WriteGate {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a counter change that completes, so a poisoned lock is consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a write. Check the epochs after this, not before.
    pub(crate) fn enter(&self) -> WriteTicket<'_> {
        let mut state = self.state();
        let phase = state.phase;
        *state.in_flight.entry(phase).or_default() += 1;
        WriteTicket { gate: self, phase }
    }

    /// Waits until every write registered before this call is done, or `limit` has passed
    /// (logged: the delete then goes ahead, and such a write may land after it). Call after
    /// bumping the epochs and before deleting (or, for `Cache::set`, writing) remotely.
    pub(crate) async fn drain(&self, limit: std::time::Duration) {
        if tokio::time::timeout(limit, self.drain_all()).await.is_err() {
            tracing::warn!(
                ?limit,
                "an invalidation waited its limit for earlier remote writes and goes ahead"
            );
        }
    }

    async fn drain_all(&self) {
        let before = {
            let mut state = self.state();
            let p = state.phase;
            state.phase += 1;
            p
        };
        loop {
            let done = self.done.notified();
            tokio::pin!(done);
            // Registered before the check, so a release in between is not missed.
            done.as_mut().enable();
            if self.state().in_flight.range(..=before).next().is_none() {
                return;
            }
            done.await;
        }
    }
}

impl Drop for WriteTicket<'_> {
    fn drop(&mut self) {
        let mut state = self.gate.state();
        if let Some(n) = state.in_flight.get_mut(&self.phase) {
            *n -= 1;
            if *n == 0 {
                state.in_flight.remove(&self.phase);
            }
        }
        drop(state);
        self.gate.done.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn an_invalidation_waits_for_earlier_writes_only() {
        let gate = WriteGate::default();
        let early = gate.enter();
        let drain = gate.drain(Duration::from_secs(3600));
        tokio::pin!(drain);
        // Not done while the earlier write is in flight.
        assert!(
            tokio::time::timeout(Duration::from_millis(20), drain.as_mut())
                .await
                .is_err()
        );
        // A later write does not hold it up.
        let _late = gate.enter();
        drop(early);
        tokio::time::timeout(Duration::from_secs(1), drain)
            .await
            .expect("drained once the earlier write was done");
        // Nothing in flight: at once.
        let gate = WriteGate::default();
        gate.drain(Duration::from_secs(3600)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_never_ends_holds_an_invalidation_for_its_limit_only() {
        let gate = WriteGate::default();
        let _stuck = gate.enter();
        let started = tokio::time::Instant::now();
        gate.drain(Duration::from_secs(2)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }
}
