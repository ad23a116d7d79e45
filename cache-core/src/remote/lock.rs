//! Distributed single flight: on a miss of a Redis-backed cache, one instance computes the value
//! under a short lock in the remote tier, and the others wait for that value instead of computing
//! it too.
//!
//! The lock is a key holding a random [`LockToken`] with a TTL (`SET NX PX` in Redis), released
//! only by its owner (compare-and-delete), so a holder that was slower than the TTL cannot delete
//! its successor's lock. A holder that crashes leaves its lock to expire.
//!
//! A caller that finds the lock held polls the value with backoff (5 ms doubling to 100 ms) and
//! tries the lock again each time, until the value appears, the lock is free (a finished or
//! crashed holder), or its bounded wait ([`Policy::lock_wait`](crate::Policy::lock_wait)) runs
//! out; then it computes without the lock rather than hang. Polling rather than pub/sub: a
//! waiter needs no subscription of its own, it works the same on a cluster, and a value written
//! by any path (another cache call, `Cache::set`) ends the wait.
//!
//! Fail-open: a remote error, an open breaker or a backend without locks means "compute now",
//! never "wait".

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

// The tokio clock, as for the pauses between looks: under a paused clock (tests) the wait ends
// when the paused time passes its deadline, not after real time while the pauses take none.
use tokio::time::Instant;

use super::ResilientTier;
use super::codec::Codec;
use crate::store::{RemoteHit, Store};

/// The first pause of a waiter between looks at the value; it doubles up to [`MAX_POLL`].
const FIRST_POLL: Duration = Duration::from_millis(5);
/// The longest pause between looks: a waiter learns of the value at most this late.
const MAX_POLL: Duration = Duration::from_millis(100);

/// The owner of a distributed lock: 128 random bits, stored as the lock's value so that only the
/// owner can release it.
///
/// Tokens are unique rather than secret: anyone who can write to the backend can delete a lock
/// anyway. They are drawn from the standard library's randomly seeded SipHash, mixed with a
/// process-wide counter, the process id and the time, so two instances (or two calls) never
/// share one.
///
/// # Examples
///
/// ```
/// use cache_core::remote::LockToken;
///
/// let a = LockToken::random();
/// assert_ne!(a, LockToken::random());
/// // What a backend stores: 32 lowercase hex digits.
/// assert_eq!(a.to_string().len(), 32);
/// assert_eq!(LockToken::from_u128(255).to_string(), format!("{:032x}", 255));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LockToken(u128);

impl LockToken {
    /// A fresh token.
    ///
    /// ```
    /// use cache_core::remote::LockToken;
    ///
    /// assert_ne!(LockToken::random(), LockToken::random());
    /// ```
    pub fn random() -> Self {
        use std::hash::{BuildHasher, Hasher};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let high = h.finish();
        h.write_u64(high);
        LockToken((u128::from(high) << 64) | u128::from(h.finish()))
    }

    /// A token with a given value (for backends and tests).
    ///
    /// ```
    /// use cache_core::remote::LockToken;
    ///
    /// assert_eq!(LockToken::from_u128(7).to_string(), "00000000000000000000000000000007");
    /// ```
    pub fn from_u128(value: u128) -> Self {
        LockToken(value)
    }

    /// The token's value.
    ///
    /// ```
    /// use cache_core::remote::LockToken;
    ///
    /// assert_eq!(LockToken::from_u128(7).as_u128(), 7);
    /// ```
    pub fn as_u128(self) -> u128 {
        self.0
    }
}

impl fmt::Display for LockToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for LockToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LockToken({self})")
    }
}

/// What [`RemoteTier::try_lock`](super::RemoteTier::try_lock) found.
///
/// # Examples
///
/// ```
/// use cache_core::remote::LockAttempt;
///
/// // A backend without locks answers `Unsupported`, and callers compute without waiting.
/// assert_ne!(LockAttempt::Unsupported, LockAttempt::Held);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockAttempt {
    /// The lock was free and now holds the caller's token.
    Acquired,
    /// Another token holds the lock.
    Held,
    /// The backend has no locks.
    Unsupported,
}

/// What a flight leader does after an L2 miss.
pub(crate) enum LockWait<T> {
    /// This instance holds the lock: compute, write the value, then drop the guard.
    Acquired(FlightLock),
    /// Another instance's value appeared while waiting: use it as an L2 hit, stored against the
    /// invalidation epoch noted just before the read that found it.
    Appeared(RemoteHit<T>, u64),
    /// Compute without the lock: no remote tier or no locks, the remote tier is failing, or the
    /// bounded wait ran out.
    Proceed,
    /// The caller's own limit on the wait ran out (a caller with a fallback waits no longer than
    /// its soft timeout): another instance is still computing.
    GaveUp,
}

/// A held lock, released when dropped: after the leader's remote write, or when the leader's
/// future is dropped or its body panics.
///
/// The release is sent from a spawned task rather than awaited: a `Drop` cannot await, and the
/// leader's caller already has its value, so it should not pay the round trip. Waiters do not
/// need the release to find the value (they poll the value itself); it only frees the key for the
/// next miss sooner. The task runs on the tokio runtime that took the lock (it already has a
/// connection), else on cache-core's I/O runtime. Not on the runtime current where the lock is
/// dropped: a synchronous caller takes it on cache-core's I/O runtime and drops it on its own
/// thread, which may be blocking a current-thread runtime that would run the release only at its
/// next `.await`, after the caller's next miss of the key found the lock still held. If no
/// runtime runs it (one shutting down), the lock expires after its TTL, which is also what
/// happens when the holder crashes.
///
/// A `FlightLock` exists from just before the `SET NX` is sent: if the caller's future is dropped
/// while the command is in flight, or the attempt times out, Redis may have applied it without
/// the caller ever seeing `Acquired`, and the drop releases what the token may hold (the release
/// is a compare-and-delete, a no-op when the key holds another token or nothing). Only an answer
/// that says the token was not stored (`Held`, `Unsupported`, or the breaker skipping the
/// command) disarms it.
pub(crate) struct FlightLock {
    remote: Arc<ResilientTier>,
    key: Box<str>,
    token: LockToken,
    armed: bool,
    /// The runtime that sent the `SET NX`, for the release.
    runtime: Option<tokio::runtime::Handle>,
}

impl FlightLock {
    /// Armed for `token` before the attempt to store it.
    fn attempt(remote: &Arc<ResilientTier>, key: &str, token: LockToken) -> Self {
        FlightLock {
            remote: remote.clone(),
            key: key.into(),
            token,
            armed: true,
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// The backend answered that it did not store the token: nothing to release.
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for FlightLock {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let remote = self.remote.clone();
        let key = std::mem::take(&mut self.key);
        let token = self.token;
        let release = async move {
            let _ = remote.run(remote.inner.unlock(&key, token)).await;
        };
        match self.runtime.take() {
            Some(handle) => drop(handle.spawn(release)),
            None => super::blocking::spawn(release),
        }
    }
}

impl Store {
    /// After an L2 miss of `key`: takes the distributed lock, or waits for the instance that holds
    /// it (see the module docs). Never waits when the remote tier fails.
    pub(crate) async fn lock_or_wait<T>(
        &self,
        key: &str,
        (hash, tags): (u64, &[Arc<str>]),
        codec: &Codec<T>,
        limit: Option<Duration>,
    ) -> LockWait<T> {
        let Some(remote) = self
            .remote
            .as_ref()
            .filter(|_| self.policy.distributed_lock)
        else {
            return LockWait::Proceed;
        };
        let ttl = self.policy.lock_ttl;
        let policy_wait = self.policy.lock_wait_or_default();
        let gives_up = limit.is_some_and(|l| l < policy_wait);
        let deadline = deadline_after(limit.map_or(policy_wait, |l| l.min(policy_wait)));
        let mut pause = FIRST_POLL;
        let mut waited = false;
        loop {
            let token = LockToken::random();
            // Armed before the command is sent (see `FlightLock`): dropping this future while
            // `SET NX` is in flight must not leave the token in the key until the TTL.
            let lock = FlightLock::attempt(remote, key, token);
            match remote.run(remote.inner.try_lock(key, token, ttl)).await {
                Ok(LockAttempt::Acquired) => {
                    // A holder may have written the value and released the lock between our
                    // last read and our `SET NX`; read once more under the lock, so that the body
                    // never runs for a value that is already there. (Dropping `lock` releases it.)
                    // If that read fails, the body runs, still under the lock, so that other
                    // instances that reach the backend keep waiting for this value.
                    if let Ok(Some((hit, epoch))) = self.poll_noted(key, (hash, tags), codec).await
                    {
                        return LockWait::Appeared(hit, epoch);
                    }
                    remote.counters.lock_acquired.incr();
                    return LockWait::Acquired(lock);
                }
                Ok(LockAttempt::Held) => lock.disarm(),
                Ok(LockAttempt::Unsupported) => {
                    lock.disarm();
                    return LockWait::Proceed;
                }
                // The breaker skipped the command: nothing was sent, nothing to release.
                Err(super::RemoteError::CircuitOpen) => {
                    lock.disarm();
                    return LockWait::Proceed;
                }
                // A timeout or a broken connection may have come after Redis stored the token:
                // dropping `lock` releases it.
                Err(_) => return LockWait::Proceed,
            }
            if !waited {
                waited = true;
                remote.counters.lock_waits.incr();
            }
            let now = Instant::now();
            if now >= deadline {
                if gives_up {
                    return LockWait::GaveUp;
                }
                remote.counters.lock_wait_timeouts.incr();
                tracing::debug!(cache = %self.name, key, "waited too long for another instance's value; computing it here");
                return LockWait::Proceed;
            }
            // The last pause ends at the deadline, so the last look at the lock is made there: a
            // crashed holder's lock, taken no earlier than this wait began, has expired by then
            // when the wait is at least the lock's TTL.
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_POLL);
            match self.poll_noted(key, (hash, tags), codec).await {
                Ok(Some((hit, epoch))) => return LockWait::Appeared(hit, epoch),
                Ok(None) => {}
                Err(()) => return LockWait::Proceed,
            }
        }
    }

    /// One look at L2 for a waited-for value, with the invalidation epoch noted just before it,
    /// as a leader notes its own before its first read: an invalidation that overlaps the read
    /// keeps the value out of memory, one that came before it does not. The wait began before
    /// the value was written, and the holder announces its write, which moves this instance's
    /// epoch: against the leader's first note every value that appeared would be refused.
    async fn poll_noted<T>(
        &self,
        key: &str,
        (hash, tags): (u64, &[Arc<str>]),
        codec: &Codec<T>,
    ) -> Result<Option<(RemoteHit<T>, u64)>, ()> {
        let epoch = self.memory.epochs.snapshot(hash, tags);
        Ok(self.poll_remote(key, codec).await?.map(|hit| (hit, epoch)))
    }
}

/// `now + wait`, or a century away for a wait too long to add (`Duration::MAX`): an `Instant`
/// addition that overflows panics, and a policy value must not.
fn deadline_after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_wait_does_not_overflow() {
        assert!(deadline_after(Duration::MAX) > Instant::now() + Duration::from_secs(86_400));
        let soon = deadline_after(Duration::from_millis(10));
        assert!(soon <= Instant::now() + Duration::from_millis(10));
    }

    #[test]
    fn tokens_are_distinct_and_print_as_32_hex_digits() {
        let tokens: std::collections::HashSet<_> =
            (0..10_000).map(|_| LockToken::random()).collect();
        assert_eq!(tokens.len(), 10_000);
        let t = LockToken::from_u128(0xabc);
        assert_eq!(t.to_string(), "00000000000000000000000000000abc");
        assert_eq!(t.as_u128(), 0xabc);
        assert_eq!(
            format!("{t:?}"),
            "LockToken(00000000000000000000000000000abc)"
        );
    }
}
