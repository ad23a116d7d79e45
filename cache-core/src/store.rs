//! [`Store`]: one named cache across its tiers. L1 is the memory tier, L2 the remote one; a
//! cache uses either or both, as its policy's [`Tier`] says.

use std::sync::Arc;
use std::time::Duration;

use crate::flight::Flights;
use crate::memory::{InsertOptions, Lookup, MemoryStore, Miss, Stored};
use crate::remote::backplane::{Backplane, Invalidation, Message};
use crate::remote::codec::Codec;
use crate::remote::envelope::{DecodeError, unix_ms_now};
use crate::remote::{RemoteBackend, RemoteError, ResilientTier};
use crate::write_gate::WriteGate;
use crate::{CacheStats, Policy, Tier};

/// Why a value is written to the remote tier, which decides whether it is announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RemoteWrite {
    /// A body's value, after a miss or by a refresh.
    Computed,
    /// [`Cache::set`](crate::Cache::set) and friends.
    Set,
}

pub(crate) struct Store {
    pub(crate) name: Arc<str>,
    pub(crate) memory: Arc<MemoryStore>,
    pub(crate) remote: Option<Arc<ResilientTier>>,
    /// The backend behind `remote`, for operations that span caches (tags).
    pub(crate) backend: Option<Arc<dyn RemoteBackend>>,
    pub(crate) tier: Tier,
    pub(crate) policy: Policy,
    /// Where this cache announces overwrites, for caches with a remote tier: the backplane and this
    /// instance's origin id.
    pub(crate) backplane: Option<(Arc<dyn Backplane>, u128)>,
    pub(crate) flights: Flights,
    /// Orders remote writes before the remote deletes of later invalidations.
    pub(crate) writes: WriteGate,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("name", &self.name)
            .field("tier", &self.tier)
            .finish_non_exhaustive()
    }
}

/// Envelope bytes held in L1 until the first caller says what type they are.
pub(crate) struct Undecoded(pub(crate) Vec<u8>);

/// What [`Store::remove`] removed: callers that count entries count those that left memory (as
/// every other invalidation does), and those that say whether the key was there ask both tiers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Removed {
    /// A live entry left this process's memory.
    pub(crate) from_memory: bool,
    /// The remote tier deleted the key.
    pub(crate) from_remote: bool,
}

impl Removed {
    /// Whether the key was in either tier.
    pub(crate) fn anywhere(self) -> bool {
        self.from_memory || self.from_remote
    }
}

/// A value read from L2, with what is left of its TTL.
pub(crate) struct RemoteHit<T> {
    pub(crate) value: T,
    pub(crate) remaining: Option<Duration>,
    /// How long the value took to compute where it was computed (for XFetch).
    pub(crate) delta_ms: u32,
    /// How long ago its TTL ended, for a value kept past it (a stale or fail-safe window); `None`
    /// while it is fresh.
    pub(crate) stale_for: Option<Duration>,
}

impl<T> RemoteHit<T> {
    /// The hit if it is fresh.
    pub(crate) fn fresh(self) -> Option<Self> {
        self.stale_for.is_none().then_some(self)
    }
}

impl Store {
    pub(crate) fn new(
        memory: Arc<MemoryStore>,
        remote: Option<Arc<ResilientTier>>,
        backend: Option<Arc<dyn RemoteBackend>>,
    ) -> Self {
        let policy = memory.policy.clone();
        let tier = if remote.is_some() {
            policy.tier
        } else {
            Tier::Memory
        };
        Store {
            name: memory.name.clone(),
            memory,
            backend: remote.as_ref().and(backend),
            remote,
            tier,
            policy,
            backplane: None,
            flights: Flights::default(),
            writes: WriteGate::default(),
        }
    }

    /// L1 lookup, counted. Absent at once for a remote-only cache.
    #[inline(always)]
    pub(crate) fn get_local<T: Clone + 'static>(&self, key: &[u8], hash: u64) -> Lookup<T> {
        if self.tier.uses_memory() {
            self.memory.get(key, hash)
        } else {
            Lookup::Absent
        }
    }

    /// [`get_local`](Self::get_local) borrowing the value for as long as `guard` lives (see
    /// [`MemoryStore::get_ref`]): the hit path of a cached call.
    #[inline(always)]
    pub(crate) fn get_local_ref<'g, T: 'static>(
        &'g self,
        key: &[u8],
        hash: u64,
        guard: &'g scc::Guard,
    ) -> Result<&'g T, Miss> {
        if self.tier.uses_memory() {
            self.memory.get_ref(key, hash, guard)
        } else {
            Err(Miss::Absent)
        }
    }

    /// L1 write, with the L1 TTL cap of a hybrid cache.
    /// Returns false if `opts.epoch` rejected the value (an invalidation overlapped it).
    pub(crate) fn put_local(
        &self,
        key: &str,
        hash: u64,
        value: Stored,
        mut opts: InsertOptions,
    ) -> bool {
        if !self.tier.uses_memory() {
            return true;
        }
        if let Some(l1) = self.l1_cap() {
            match opts.ttl.or(self.policy.ttl) {
                Some(ttl) if ttl <= l1 => {
                    // The copy may serve its stale and fail-safe windows from memory, but like
                    // any copy only until the L1 TTL: past it the next read goes to Redis, which
                    // may hold a newer value whose message was lost.
                    let left = l1.saturating_sub(ttl).as_millis() as u64;
                    opts.keep_ms = opts.keep_ms.min(left);
                }
                _ => {
                    // The copy ends before the value does: past the L1 TTL the value is still
                    // fresh in Redis, where the next read finds it. So the copy is a plain one,
                    // neither kept for a stale window (which served it as stale and ran the body)
                    // nor refreshed ahead of the L1 TTL; Redis keeps the value for those windows
                    // of its own TTL.
                    opts.ttl = Some(l1);
                    opts.keep_ms = 0;
                    opts.refresh = crate::RefreshAhead::Off;
                }
            }
        }
        self.memory.insert(key, hash, value, opts)
    }

    /// The longest any L1 copy of this cache may live: a hybrid cache's `l1_ttl`, past which the
    /// next read goes to L2 (which may hold a newer value whose announcement was lost).
    pub(crate) fn l1_cap(&self) -> Option<Duration> {
        self.policy.l1_ttl.filter(|_| self.tier == Tier::Hybrid)
    }

    /// Whether values of this call live in L1: always in a cache with a memory tier, and in a
    /// remote-only cache for values that have no codec (they cannot go remote, so they are
    /// cached in this process's memory, as in a memory cache, rather than not at all).
    pub(crate) fn keeps_local(&self, has_codec: bool) -> bool {
        self.tier.uses_memory() || !has_codec
    }

    /// L1 lookup for a call that [`keeps_local`](Self::keeps_local) although the tier does not
    /// use memory; `None` at once otherwise (the normal L1 lookup already happened).
    pub(crate) fn get_local_only<T: Clone + 'static>(
        &self,
        key: &[u8],
        hash: u64,
        has_codec: bool,
    ) -> Lookup<T> {
        if self.tier.uses_memory() || has_codec {
            Lookup::Absent
        } else {
            self.memory.get(key, hash)
        }
    }

    /// L1 write of a value that has no codec: into memory whatever the tier (see
    /// [`keeps_local`](Self::keeps_local)).
    pub(crate) fn put_local_only(
        &self,
        key: &str,
        hash: u64,
        value: Stored,
        opts: InsertOptions,
    ) -> bool {
        if self.tier.uses_memory() {
            self.put_local(key, hash, value, opts)
        } else {
            self.memory.insert(key, hash, value, opts)
        }
    }

    /// The TTL an entry gets in L2.
    pub(crate) fn remote_ttl(&self, opts: &InsertOptions) -> Option<Duration> {
        opts.ttl.or(self.policy.ttl)
    }

    /// L2 lookup. Failures are misses (fail-open); a value that does not decode is logged,
    /// deleted, and a miss.
    pub(crate) async fn get_remote<T>(&self, key: &str, codec: &Codec<T>) -> Option<RemoteHit<T>> {
        let remote = self.remote.as_ref()?;
        match remote.run(remote.inner.get(key)).await {
            Ok(Some(bytes)) => self.decode_remote(remote, key, &bytes, codec, true).await,
            Ok(None) => {
                remote.counters.misses.incr();
                None
            }
            Err(_) => None,
        }
    }

    /// One look at L2 by a caller waiting for another instance's value (`remote::lock`): like
    /// [`get_remote`](Self::get_remote), but nothing usable (absent, or kept past its TTL) is not
    /// counted as a miss (the caller's first read counted it, and a waiter looks many times for
    /// one miss), and a failure is an `Err`, which ends the wait.
    pub(crate) async fn poll_remote<T>(
        &self,
        key: &str,
        codec: &Codec<T>,
    ) -> Result<Option<RemoteHit<T>>, ()> {
        let Some(remote) = self.remote.as_ref() else {
            return Err(());
        };
        match remote.run(remote.inner.get(key)).await {
            // A value kept past its TTL (stale window) is not the one a waiter waits for.
            Ok(Some(bytes)) => Ok(self
                .decode_remote(remote, key, &bytes, codec, false)
                .await
                .and_then(RemoteHit::fresh)),
            Ok(None) => Ok(None),
            Err(_) => Err(()),
        }
    }

    /// Decodes bytes read from L2: a hit, or a miss, counted if `count_miss` (an unusable value
    /// is deleted).
    async fn decode_remote<T>(
        &self,
        remote: &ResilientTier,
        key: &str,
        bytes: &[u8],
        codec: &Codec<T>,
        count_miss: bool,
    ) -> Option<RemoteHit<T>> {
        let miss = || {
            if count_miss {
                remote.counters.misses.incr();
            }
        };
        match codec.decode_kept(key, bytes) {
            Ok((value, meta)) => {
                let now = unix_ms_now();
                let stale_for = meta
                    .expires_at_unix_ms
                    .filter(|at| *at <= now)
                    .map(|at| Duration::from_millis(now - at));
                if stale_for.is_some() {
                    miss();
                } else {
                    remote.counters.hits.incr();
                }
                let remaining = meta
                    .expires_at_unix_ms
                    .map(|at| Duration::from_millis(at.saturating_sub(now)));
                Some(RemoteHit {
                    value,
                    remaining,
                    delta_ms: meta.recompute_ms,
                    stale_for,
                })
            }
            Err(DecodeError::Expired) => {
                miss();
                None
            }
            Err(e) => {
                miss();
                remote.counters.decode_errors.incr();
                tracing::warn!(cache = %self.name, key, error = %e, "unusable value in the remote cache; deleting it");
                let _ = remote.run(remote.inner.delete(key)).await;
                None
            }
        }
    }

    /// A value preloaded into L1 as bytes (a hot key of an earlier instance), decoded now that
    /// its type is known and replaced by the typed value. `None` if there is none or it does not
    /// decode as `T` (then it is dropped).
    pub(crate) fn take_preloaded<T>(
        &self,
        key: &str,
        hash: u64,
        codec: &Codec<T>,
    ) -> Option<RemoteHit<T>> {
        if !self.tier.uses_memory() {
            return None;
        }
        // Preloaded bytes are stored shared (as a `Value`), in the one class shared values use.
        let value = self
            .memory
            .peek_value_of::<crate::memory::Value>(key.as_bytes(), hash)?;
        let undecoded = value.downcast_ref::<Undecoded>()?;
        match codec.decode(key, &undecoded.0) {
            Ok((value, meta)) => {
                self.memory.counters.preload_hits.incr();
                let remaining = meta
                    .expires_at_unix_ms
                    .map(|at| Duration::from_millis(at.saturating_sub(unix_ms_now())));
                Some(RemoteHit {
                    value,
                    remaining,
                    delta_ms: meta.recompute_ms,
                    stale_for: None,
                })
            }
            Err(_) => {
                self.memory.remove(key.as_bytes(), hash);
                None
            }
        }
    }

    /// L2 write. A failure is logged and counted, not returned as an error: the caller already has
    /// its value. Returns false when the value itself cannot go to the remote tier (too large, or
    /// not serializable), which then keeps whatever the key held before.
    #[must_use]
    pub(crate) async fn put_remote<T>(
        &self,
        key: &str,
        value: &T,
        codec: &Codec<T>,
        opts: &InsertOptions,
        recompute: Duration,
        write: RemoteWrite,
    ) -> bool {
        let Some(remote) = &self.remote else {
            return true;
        };
        // Registered before the epoch check: see `write_gate`.
        let ticket = self.writes.enter();
        if let Some(epoch) = opts.epoch
            && self
                .memory
                .epochs
                .snapshot(crate::key::lookup_hash(key.as_bytes()), &opts.tags)
                != epoch
        {
            // Invalidated since the value was read or computed: writing it would bring it back.
            return true;
        }
        let ttl = self.remote_ttl(opts);
        // The backend keeps the value through its stale and fail-safe windows; the envelope
        // carries the TTL itself, so a reader knows when it went stale.
        let kept = ttl.map(|t| t.saturating_add(Duration::from_millis(opts.keep_ms)));
        let bytes = match codec.encode(key, value, ttl, recompute) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(cache = %self.name, key, error = %e, "value does not serialize; kept in memory only");
                return false;
            }
        };
        let written = remote
            .run(remote.inner.set(key, bytes, kept, &opts.tags))
            .await;
        drop(ticket);
        match written {
            // Never sent: the remote tier still holds what the other instances may have copied.
            Err(RemoteError::CircuitOpen) => return true,
            Err(RemoteError::TooLarge { .. }) => return false,
            Ok(()) => {}
            // A write that timed out or failed on the way may still have landed (a slow link:
            // the `SET` was on the wire); announced like a delete, either way, or the others
            // would keep their copies of the old value until their L1 TTL.
            Err(e) => {
                tracing::debug!(cache = %self.name, key, error = %e, "remote cache write failed")
            }
        }
        // An explicit set replaces a value other instances may hold in memory: always announced.
        // A computed value is announced by hybrid caches only, as before: for a remote-only
        // cache it would add a `PUBLISH` round trip to every miss, for copies that exist only
        // where another instance runs the same cache as hybrid.
        if write == RemoteWrite::Set || self.tier == Tier::Hybrid {
            self.announce(Invalidation::Key {
                cache: self.name.to_string(),
                key: key.to_owned(),
            })
            .await;
        }
        true
    }

    /// Deletes a key from the remote tier and from the other instances' memory, leaving this
    /// process's memory as it is.
    pub(crate) async fn remove_remote(&self, key: &str) {
        let Some(remote) = &self.remote else { return };
        self.drain_writes().await;
        let _ = remote.run(remote.inner.delete(key)).await;
        self.announce(Invalidation::Key {
            cache: self.name.to_string(),
            key: key.to_owned(),
        })
        .await
    }

    /// Tells the other instances to drop an entry from their memory tier (caches with a remote
    /// tier, whose keys other instances' hybrid caches may copy).
    pub(crate) async fn announce(&self, invalidation: Invalidation) {
        if let (Some((backplane, origin)), Some(remote)) = (&self.backplane, &self.remote) {
            let message = Message {
                origin: *origin,
                invalidation,
            }
            .encode();
            let _ = remote.run(backplane.publish(&message)).await;
        }
    }

    /// Removes a key from both tiers, and from the other instances' memory.
    /// Waits for the remote writes registered before an invalidation (see `write_gate`), at most
    /// a few of their timeouts: each is one bounded `SET`, with a cluster's tag scripts after it.
    pub(crate) async fn drain_writes(&self) {
        let timeout = self
            .remote
            .as_ref()
            .map_or(Duration::ZERO, |r| r.breaker.settings().timeout);
        self.writes
            .drain(timeout.saturating_mul(4) + Duration::from_secs(1))
            .await;
    }

    pub(crate) async fn remove(&self, key: &str, hash: u64) -> Removed {
        let local = self.memory.remove(key.as_bytes(), hash);
        let remote = match &self.remote {
            Some(r) => {
                self.drain_writes().await;
                let deleted = r.run(r.inner.delete(key)).await.unwrap_or(false);
                // Again after the remote delete: a read that began after the first removal may
                // have found the old value in the remote tier before it was deleted, and put it
                // back in memory (see `write_gate`).
                self.memory.remove(key.as_bytes(), hash);
                deleted
            }
            None => false,
        };
        self.announce(Invalidation::Key {
            cache: self.name.to_string(),
            key: key.to_owned(),
        })
        .await;
        Removed {
            from_memory: local,
            from_remote: remote,
        }
    }

    /// Removes a tag's entries: this cache's in memory, and the tag's remote entries (which the
    /// backend indexes across caches). Returns how many were removed from memory.
    pub(crate) async fn remove_tag(&self, tag: &str) -> usize {
        let n = self.memory.remove_tag(tag);
        if let (Some(remote), Some(backend)) = (&self.remote, &self.backend) {
            self.drain_writes().await;
            let _ = remote.run_bulk(backend.delete_tag(tag)).await;
            self.memory.remove_tag(tag);
        }
        self.announce(Invalidation::Tag {
            tag: tag.to_owned(),
        })
        .await;
        n
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let mut s = self.memory.stats();
        s.remote = self.remote.as_ref().map(|r| r.stats());
        s
    }

    /// Zeroes the counters of both tiers.
    pub(crate) fn reset_stats(&self) {
        self.memory.reset_stats();
        if let Some(remote) = &self.remote {
            remote.reset_stats();
        }
    }
}
