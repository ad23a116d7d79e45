//! The memory tier: typed values in a read-optimized concurrent map (`scc::HashIndex`), per-entry
//! expiry, a bound by entry count and weight, and an eviction policy.
//!
//! Locks, in the only order they are ever nested: the evictor mutex or the expiry mutex, then a
//! map bucket. A hit takes no lock and writes no shared memory: `HashIndex` reads are lock-free
//! (epoch-based reclamation keeps a removed entry alive until no reader can still see it), and
//! writers lock only the key's bucket. See `docs/architecture.md` for why not dashmap here.

mod entry;
pub(crate) mod epochs;
mod evictor;
pub(crate) mod hot;
pub(crate) use hot::TOP as HOT_TOP;
mod sweeper;
mod tags;
mod value;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use dashmap::DashMap;
use scc::hash_index::Entry as IndexEntry;

pub(crate) use entry::{Entry, Lookup, Miss, NEVER, StoredKey, Times};
use evictor::{Evictor, Probe, Slot};
pub(crate) use sweeper::{register as register_for_maintenance, wake as wake_maintenance};
use tags::TagIndex;
pub(crate) use value::LARGE;
use value::{LARGE_CLASS, MEDIUM, MEDIUM_CLASS, SMALL, SMALL_CLASS, StoredValue, class_of};
pub(crate) use value::{Stored, Value, fits_inline};

use crate::stats::Counters;
use crate::{CacheStats, Clock, Eviction, Policy};

/// The map is keyed by a hash that is already well mixed; hashing it again would only cost time.
#[derive(Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else for safety.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub(crate) type HashKeyed<V> = DashMap<u64, V, BuildHasherDefault<PassThrough>>;

/// The entries of one size class (see `value.rs`), by the key's lookup hash.
type Entries<const N: usize> = scc::HashIndex<u64, Entry<N>, BuildHasherDefault<PassThrough>>;

/// The low two bits of an entry's id name its class, so eviction, expiry and tag records (which
/// carry the id) find the right map.
const CLASS_BITS: u32 = 2;

/// Evaluates `$body` with `$map` bound to the map of size class `$class` (the maps differ in
/// type, so each arm is its own instance of the body).
macro_rules! in_class {
    ($store:expr, $class:expr, |$map:ident| $body:expr) => {
        match $class {
            SMALL_CLASS => {
                let $map = &$store.small;
                $body
            }
            MEDIUM_CLASS => {
                let $map = &$store.medium;
                $body
            }
            _ => {
                let $map = &$store.large;
                $body
            }
        }
    };
}

/// The most one entry is counted as weighing. The total is kept in an `i64`, so a weigher's
/// `u64::MAX` taken as is wrapped it negative and switched `max_weight` off; an entry this heavy
/// is over any real bound anyway, and 2^15 of them still fit.
const MAX_ENTRY_WEIGHT: u64 = 1 << 48;

/// The tag of entries stored without knowing their real tags: values promoted from the remote
/// tier by `Cache::get` and hot keys preloaded as bytes (the remote tier keeps tags beside values,
/// not in them). Every tag invalidation removes them too, since any tag may have been theirs; the
/// next read fetches them again. The NUL keeps it apart from any tag a template renders.
pub(crate) const UNKNOWN_TAGS: &str = "\0unknown-tags";

/// The size classes, for what is done in each map in turn.
const CLASSES: [u64; 3] = [SMALL_CLASS, MEDIUM_CLASS, LARGE_CLASS];

/// The size class of the entry a queue record names.
fn class_of_slot(slot: Slot) -> u64 {
    slot.id & ((1 << CLASS_BITS) - 1)
}

/// Why an entry left the memory tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RemovalCause {
    Expired,
    Evicted,
    Invalidated,
    /// Moved to another size class's map by an insert of the same key (not counted).
    Replaced,
}

/// How an entry is to be stored.
#[derive(Debug, Default, Clone)]
pub(crate) struct InsertOptions {
    /// Overrides the policy's TTL.
    pub(crate) ttl: Option<Duration>,
    pub(crate) tags: Vec<Arc<str>>,
    /// Store only if the invalidation epochs of the key and tags still sum to this (the value
    /// was read or computed since); checked under the map's shard lock, so an invalidation either
    /// sees the new entry and removes it, or the entry sees the invalidation and is not stored.
    pub(crate) epoch: Option<u64>,
    /// How long past its TTL the entry is kept (stale, fail-safe and refresh windows).
    pub(crate) keep_ms: u64,
    /// Refresh-ahead mode, which decides `soft_at`.
    pub(crate) refresh: crate::RefreshAhead,
    /// Measured recompute time in milliseconds.
    pub(crate) delta_ms: u32,
    /// The clock's precise reading the caller just took (a miss that timed its body), so that
    /// the insert need not read the clock again; `None`: the insert reads it.
    pub(crate) now_ms: Option<u64>,
    /// Store only over the entry with these `(soft_at, expires_at)`, or over none that is live:
    /// a fail-safe value, read before its body ran, must not go over a value another computation
    /// of the key stored meanwhile (checked under the map's shard lock, as `epoch` is).
    pub(crate) only_over: Option<(u64, u64)>,
}

pub(crate) struct MemoryStore {
    pub(crate) name: Arc<str>,
    /// Entries whose value is up to `SMALL` bytes, or shared.
    small: Entries<SMALL>,
    /// Entries whose value is up to `MEDIUM` bytes (and more than `SMALL`).
    medium: Entries<MEDIUM>,
    /// Entries whose value is up to `LARGE` bytes (and more than `MEDIUM`). A key is in one of
    /// the three maps: an insert in one removes it from the others.
    large: Entries<LARGE>,
    pub(crate) policy: Policy,
    pub(crate) clock: Clock,
    len: AtomicI64,
    weight: AtomicI64,
    next_id: AtomicU64,
    evictor: Mutex<Evictor>,
    expiry: Mutex<BinaryHeap<Reverse<(u64, Slot)>>>,
    tags: TagIndex,
    /// Orders a tag invalidation's epoch bump and taking of the tag's records against an
    /// insert's epoch check and recording of its tags: the insert holds the read side across
    /// both, the invalidation the write side, so an insert either sees the bump (and stores
    /// nothing) or has recorded its tags by the time they are taken (and its entry goes). Without
    /// it an insert could pass its check just before the bump and record its tags just after the
    /// take, and a value read before the invalidation outlived it.
    tag_gate: RwLock<()>,
    pub(crate) counters: Counters,
    /// Sampled access frequencies, for hot-key preloading.
    pub(crate) hot: hot::HotKeys,
    /// Invalidation epochs, so a computation that overlapped an invalidation is not stored.
    pub(crate) epochs: epochs::Epochs,
}

impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Slot {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.hash, self.id).cmp(&(other.hash, other.id))
    }
}

/// Locks a mutex, shrugging off poisoning: every critical section here leaves its data consistent
/// between statements, and a panicking user body never runs under these locks.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryStore {
    pub(crate) fn new(name: Arc<str>, policy: Policy, clock: Clock) -> Arc<Self> {
        let store = Arc::new(MemoryStore {
            evictor: Mutex::new(Evictor::new(policy.eviction, policy.max_entries)),
            name,
            small: Entries::default(),
            medium: Entries::default(),
            large: Entries::default(),
            policy,
            clock,
            len: AtomicI64::new(0),
            weight: AtomicI64::new(0),
            next_id: AtomicU64::new(1),
            expiry: Mutex::new(BinaryHeap::new()),
            tags: TagIndex::default(),
            tag_gate: RwLock::new(()),
            counters: Counters::default(),
            hot: hot::HotKeys::default(),
            epochs: epochs::Epochs::default(),
        });
        register_for_maintenance(&store);
        store
    }

    /// Looks a key up and counts a hit or a miss (an entry past its `soft_at` is counted by
    /// whoever decides what it is). On a hit, the value is borrowed for as long as `guard` lives:
    /// scc reclaims a removed entry only once no guard that could see it remains.
    ///
    /// Shaped for the hit path: everything that writes shared memory or calls out of line (the
    /// hit counter's increment, scc's guard, the sampling) happens before the caller clones the
    /// value, so the caller can build its result where it returns it (no 150-byte copies through
    /// intermediate results) and no locked instruction waits for the clone's stores to drain.
    #[inline(always)]
    pub(crate) fn get_ref<'g, T: 'static>(
        &'g self,
        key: &[u8],
        hash: u64,
        guard: &'g scc::Guard,
    ) -> Result<&'g T, Miss> {
        // One lookup in 64 is timed and feeds the hot-key sketch, out of line. (One in 16 fed
        // the sketch before: its four counter increments, on lines that every core's samples
        // write, were 5-6% of the 2-thread benchmark; a key hot enough to preload is still
        // sampled often at 1 in 64.)
        if crate::stats::sample() & 63 == 0 {
            return self.get_timed(key, hash, guard);
        }
        self.lookup_counted(key, hash, guard)
    }

    /// [`get_ref`](Self::get_ref) returning a clone of the value.
    #[inline(always)]
    pub(crate) fn get<T: Clone + 'static>(&self, key: &[u8], hash: u64) -> Lookup<T> {
        let guard = scc::Guard::new();
        match self.get_ref::<T>(key, hash, &guard) {
            Ok(v) => Lookup::Hit(v.clone()),
            Err(Miss::Later) => Lookup::Later,
            Err(Miss::Absent) => Lookup::Absent,
        }
    }

    /// [`get_ref`](Self::get_ref) for a sampled lookup: timed, and fed to the hot-key sketch.
    #[inline(never)]
    fn get_timed<'g, T: 'static>(
        &'g self,
        key: &[u8],
        hash: u64,
        guard: &'g scc::Guard,
    ) -> Result<&'g T, Miss> {
        self.hot.record(key, hash);
        let started = std::time::Instant::now();
        let found = self.lookup_counted(key, hash, guard);
        self.counters.lookup_latency.record(started.elapsed());
        found
    }

    #[inline(always)]
    fn lookup_counted<'g, T: 'static>(
        &'g self,
        key: &[u8],
        hash: u64,
        guard: &'g scc::Guard,
    ) -> Result<&'g T, Miss> {
        // Decided at compile time: a `T` is only ever stored in its own class.
        in_class!(self, class_of::<T>(), |map| self
            .lookup_in(map, key, hash, guard))
    }

    #[inline(always)]
    fn lookup_in<'g, T: 'static, const N: usize>(
        &'g self,
        map: &'g Entries<N>,
        key: &[u8],
        hash: u64,
        guard: &'g scc::Guard,
    ) -> Result<&'g T, Miss> {
        let now = self.clock.now_ms();
        let found = match map.peek(&hash, guard) {
            Some(entry) if entry.key.is(key) => {
                if entry.soft_at <= now {
                    if entry.keep_until > now {
                        // Counted by whoever decides what the entry is.
                        return Err(Miss::Later);
                    }
                    None
                } else {
                    entry.value.downcast_ref::<T>().map(|value| (entry, value))
                }
            }
            _ => None,
        };
        let Some((entry, value)) = found else {
            self.counters.misses.incr();
            return Err(Miss::Absent);
        };
        entry.touch(self.policy.eviction);
        self.counters.hits.incr();
        Ok(value)
    }

    /// The value under `key` with its times, while it is kept (fresh or not); not counted.
    pub(crate) fn peek_kept(&self, key: &[u8], hash: u64) -> Option<(Value, Times)> {
        CLASSES
            .into_iter()
            .find_map(|class| in_class!(self, class, |map| self.peek_kept_in(map, key, hash)))
    }

    fn peek_kept_in<const N: usize>(
        &self,
        map: &Entries<N>,
        key: &[u8],
        hash: u64,
    ) -> Option<(Value, Times)> {
        let now = self.clock.now_ms();
        let guard = scc::Guard::new();
        let entry = map.peek(&hash, &guard)?;
        if entry.key.as_bytes() != key || entry.keep_until <= now {
            return None;
        }
        entry.touch(self.policy.eviction);
        Some((entry.value.share(), entry.times()))
    }

    /// The value under `key` while it is fresh, shared and type-erased, for a caller that only
    /// wants a `T` (a `Value` for a shared one): looks in `T`'s size class alone, the one map a
    /// `T` is ever stored in (as the hit path's lookup does), instead of all three. Not counted.
    /// The leader's re-check on every miss, and the preloaded-bytes check.
    pub(crate) fn peek_value_of<T: 'static>(&self, key: &[u8], hash: u64) -> Option<Value> {
        let now = self.clock.now_ms();
        in_class!(self, class_of::<T>(), |map| self
            .peek_kept_in(map, key, hash))
        .and_then(|(value, times)| (times.expires_at > now).then_some(value))
    }

    /// Stores a value, replacing any entry under the same key, then evicts to respect the bounds.
    /// Returns false when `opts.epoch` says an invalidation overlapped the value (not stored).
    pub(crate) fn insert(&self, key: &str, hash: u64, value: Stored, opts: InsertOptions) -> bool {
        match value {
            Stored::Small(v) => self.insert_in(&self.small, SMALL_CLASS, key, hash, v, opts),
            Stored::Medium(v) => self.insert_in(&self.medium, MEDIUM_CLASS, key, hash, v, opts),
            Stored::Large(v) => self.insert_in(&self.large, LARGE_CLASS, key, hash, v, opts),
        }
    }

    /// [`insert`](Self::insert) into `map`, the map of the value's `class`; the key is then
    /// removed from the other classes' maps (the same key stored with a value of another type, or
    /// a preloaded hot key now decoded).
    fn insert_in<const N: usize>(
        &self,
        map: &Entries<N>,
        class: u64,
        key: &str,
        hash: u64,
        value: StoredValue<N>,
        opts: InsertOptions,
    ) -> bool {
        let now = opts.now_ms.unwrap_or_else(|| self.clock.now_ms_precise());
        let ttl = opts.ttl.or(self.policy.ttl);
        let ttl_ms = ttl.map(|t| t.as_millis().min(u128::from(u64::MAX / 4)) as u64);
        let expires_at = match ttl_ms {
            Some(t) => now.saturating_add(t),
            None => NEVER,
        };
        let (soft_at, keep_until) = match ttl_ms {
            Some(t) => (
                crate::freshness::soft_at(opts.refresh, now, expires_at, t, opts.delta_ms),
                expires_at.saturating_add(opts.keep_ms),
            ),
            None => (NEVER, NEVER),
        };
        let undecoded = value.as_any().downcast_ref::<crate::store::Undecoded>();
        let weight = match (undecoded, &self.policy.weigher) {
            // A preloaded hot key's bytes, whose type is not known yet: no weigher can know them
            // (it fell back to its default, say 1 for a 100 kB page), and their `size_of` is a
            // `Vec`'s. They weigh what they hold until a read decodes them.
            (Some(bytes), _) => (key.len() + bytes.0.len() + 64) as u64,
            (None, Some(w)) => w(key, value.as_any()),
            (None, None) => (key.len() + value.size() + 64) as u64,
        }
        .min(MAX_ENTRY_WEIGHT);
        let id = (self.next_id.fetch_add(1, Ordering::Relaxed) << CLASS_BITS) | class;
        let slot = Slot { hash, id };
        let entry = Entry {
            key: StoredKey::new(key),
            soft_at,
            expires_at,
            keep_until,
            delta_ms: opts.delta_ms,
            id,
            weight,
            freq: Default::default(),
            tags: opts.tags.into_boxed_slice(),
            value,
        };
        let replaced = {
            // The bucket stays locked until the new entry is in: an invalidation of this key
            // (epoch bump, then a removal that takes the same lock) is either seen here or finds
            // the entry.
            let slot_entry = map.entry_sync(hash);
            // See `tag_gate`: held until the tags are recorded.
            let _tag_gate = (opts.epoch.is_some() && !entry.tags.is_empty())
                .then(|| self.tag_gate.read().unwrap_or_else(|e| e.into_inner()));
            if let Some(expected) = opts.epoch
                && self.epochs.snapshot(hash, &entry.tags) != expected
            {
                return false;
            }
            if let (Some(kept), IndexEntry::Occupied(o)) = (opts.only_over, &slot_entry)
                && o.get().is_live(now)
                && (o.get().soft_at, o.get().expires_at) != kept
            {
                return false;
            }
            // The tag index changes under the same lock, so its records for this hash follow the
            // map's order of writes: two inserts racing on a key cannot leave the survivor
            // unrecorded (the loser removing the winner's record as "the old entry's"); and, under
            // the tag gate, a tag invalidation that takes the records either sees this entry's or
            // moved the epochs before the check above (a value with no epoch to check is a write
            // concurrent with it, and may stay).
            match slot_entry {
                IndexEntry::Occupied(mut o) => {
                    // The old entry stays readable to lookups already under way and is dropped
                    // once none can see it; what the bookkeeping needs is copied out.
                    let old = o.get();
                    self.tags.remove(&old.tags, Slot { hash, id: old.id });
                    let old_weight = old.weight;
                    self.tags.add(&entry.tags, slot);
                    o.update(entry);
                    Some(old_weight)
                }
                IndexEntry::Vacant(v) => {
                    self.tags.add(&entry.tags, slot);
                    v.insert_entry(entry);
                    None
                }
            }
        };
        match replaced {
            Some(old_weight) => {
                self.weight
                    .fetch_add(weight as i64 - old_weight as i64, Ordering::Relaxed);
            }
            None => {
                self.len.fetch_add(1, Ordering::Relaxed);
                self.weight.fetch_add(weight as i64, Ordering::Relaxed);
            }
        }
        // The key may be in another class's map (stored before with a value of another type, or
        // preloaded as bytes): it lives in one map only. Looked for without a lock first, since it
        // almost never is.
        for other in CLASSES.into_iter().filter(|c| *c != class) {
            in_class!(self, other, |other| {
                if other
                    .peek_with(&hash, |_, e| e.key.as_bytes() == key.as_bytes())
                    .unwrap_or(false)
                {
                    let now = self.clock.now_ms();
                    if let Some((weight, tags, id, _)) =
                        Self::take_key(other, key.as_bytes(), hash, now)
                    {
                        self.account_removal(
                            weight,
                            &tags,
                            Slot { hash, id },
                            RemovalCause::Replaced,
                        );
                    }
                }
            })
        }
        self.counters.inserts.incr();
        if keep_until != NEVER {
            let mut heap = lock(&self.expiry);
            heap.push(Reverse((keep_until, slot)));
        }
        let mut evictor = lock(&self.evictor);
        evictor.on_insert(slot);
        // An entry heavier than the whole weight bound cannot stay. It goes at once: left to the
        // strategy, it is the newest and so the last candidate of each, and every other entry
        // was evicted before it.
        if self.policy.max_weight.is_some_and(|max| weight > max) {
            self.remove_slot(slot, RemovalCause::Evicted);
        }
        self.enforce_bounds(&mut evictor);
        if evictor.queued() > 2 * self.len() + 1024 {
            evictor.compact(self);
        }
        true
    }

    fn over_bounds(&self) -> bool {
        self.len() > self.policy.max_entries
            || self
                .policy
                .max_weight
                .is_some_and(|max| self.weight.load(Ordering::Relaxed).max(0) as u64 > max)
    }

    fn enforce_bounds(&self, evictor: &mut Evictor) {
        while self.over_bounds() {
            let Some(victim) = evictor.next_victim(self) else {
                break;
            };
            self.remove_slot(victim, RemovalCause::Evicted);
        }
    }

    /// Removes the entry a queue record names, if that record is still current.
    fn remove_slot(&self, slot: Slot, cause: RemovalCause) -> bool {
        in_class!(self, class_of_slot(slot), |map| {
            self.remove_slot_in(map, slot, cause)
        })
    }

    fn remove_slot_in<const N: usize>(
        &self,
        map: &Entries<N>,
        slot: Slot,
        cause: RemovalCause,
    ) -> bool {
        // An invalidated entry already past its TTL is counted as expired, as `remove` and
        // `remove_where` count it; the other causes do not depend on the time.
        let now = (cause == RemovalCause::Invalidated).then(|| self.clock.now_ms());
        let mut removed = None;
        map.remove_if_sync(&slot.hash, |e| {
            if e.id != slot.id {
                return false;
            }
            let expired = now.is_some_and(|now| !e.is_live(now));
            removed = Some((e.weight, e.tags.clone(), expired));
            true
        });
        match removed {
            Some((weight, tags, expired)) => {
                let cause = if expired {
                    RemovalCause::Expired
                } else {
                    cause
                };
                self.account_removal(weight, &tags, slot, cause);
                true
            }
            None => false,
        }
    }

    fn account_removal(&self, weight: u64, tags: &[Arc<str>], slot: Slot, cause: RemovalCause) {
        self.len.fetch_sub(1, Ordering::Relaxed);
        self.weight.fetch_sub(weight as i64, Ordering::Relaxed);
        self.tags.remove(tags, slot);
        match cause {
            RemovalCause::Expired => self.counters.expirations.incr(),
            RemovalCause::Evicted => self.counters.evictions.incr(),
            RemovalCause::Invalidated => self.counters.invalidations.incr(),
            RemovalCause::Replaced => {}
        }
    }

    /// Removes `key`. True if a live entry was removed.
    pub(crate) fn remove(&self, key: &[u8], hash: u64) -> bool {
        // Bumped before (an insert checking the epochs under the bucket lock either sees it or is
        // removed below) and after (a reader that noted the epochs after the first bump and read
        // the value before it went holds an old value, a fail-safe fallback say, whose epochs
        // must not pass when it is stored again).
        self.epochs.bump_key(hash);
        // Every map, even after a removal: a racing insert of another type may have left a copy.
        let mut live = false;
        for class in CLASSES {
            live |= in_class!(self, class, |map| self.remove_key_in(map, key, hash));
        }
        self.epochs.bump_key(hash);
        live
    }

    /// Removes `key` from one class's map, counted as invalidated if it was live, else expired.
    /// True if a live entry was removed.
    fn remove_key_in<const N: usize>(&self, map: &Entries<N>, key: &[u8], hash: u64) -> bool {
        let now = self.clock.now_ms();
        match Self::take_key(map, key, hash, now) {
            Some((weight, tags, id, live)) => {
                let cause = if live {
                    RemovalCause::Invalidated
                } else {
                    RemovalCause::Expired
                };
                self.account_removal(weight, &tags, Slot { hash, id }, cause);
                live
            }
            None => false,
        }
    }

    /// Removes `key` from `map`: its weight, tags, id and whether it was live, for the accounts.
    #[allow(clippy::type_complexity)]
    fn take_key<const N: usize>(
        map: &Entries<N>,
        key: &[u8],
        hash: u64,
        now: u64,
    ) -> Option<(u64, Box<[Arc<str>]>, u64, bool)> {
        let mut removed = None;
        map.remove_if_sync(&hash, |e| {
            if e.key.as_bytes() != key {
                return false;
            }
            removed = Some((e.weight, e.tags.clone(), e.id, e.is_live(now)));
            true
        });
        removed
    }

    /// Removes every entry whose key satisfies `pred`. Returns how many were removed.
    pub(crate) fn remove_where(&self, mut pred: impl FnMut(&str) -> bool) -> usize {
        // Before and after, as in `remove`.
        self.epochs.bump_all();
        let now = self.clock.now_ms();
        let mut removed = Vec::new();
        for class in CLASSES {
            in_class!(self, class, |map| Self::take_where(
                map,
                now,
                &mut pred,
                &mut removed
            ));
        }
        for (hash, id, weight, tags, was_live) in &removed {
            // Counted as `remove` counts a single key: an entry already past its TTL expired.
            let cause = if *was_live {
                RemovalCause::Invalidated
            } else {
                RemovalCause::Expired
            };
            self.account_removal(
                *weight,
                tags,
                Slot {
                    hash: *hash,
                    id: *id,
                },
                cause,
            );
        }
        self.epochs.bump_all();
        removed.len()
    }

    /// Removes the entries of `map` whose key satisfies `pred`, noting what the accounts need.
    #[allow(clippy::type_complexity)]
    fn take_where<const N: usize>(
        map: &Entries<N>,
        now: u64,
        pred: &mut impl FnMut(&str) -> bool,
        removed: &mut Vec<(u64, u64, u64, Box<[Arc<str>]>, bool)>,
    ) {
        map.retain_sync(|hash, e| {
            if pred(e.key.as_str()) {
                removed.push((*hash, e.id, e.weight, e.tags.clone(), e.is_live(now)));
                false
            } else {
                true
            }
        });
    }

    /// Removes every entry carrying `tag`, in time proportional to those entries.
    pub(crate) fn remove_tag(&self, tag: &str) -> usize {
        // Before and after, as in `remove`; entries whose tags are unknown go with any tag. The
        // first bump and the take under the gate's write side (see `tag_gate`).
        let slots = {
            let _gate = self.tag_gate.write().unwrap_or_else(|e| e.into_inner());
            self.epochs.bump_tag(tag);
            self.epochs.bump_tag(UNKNOWN_TAGS);
            let mut slots = self.tags.take(tag);
            slots.extend(self.tags.take(UNKNOWN_TAGS));
            slots
        };
        let removed = slots
            .into_iter()
            .filter(|slot| self.remove_slot(*slot, RemovalCause::Invalidated))
            .count();
        self.epochs.bump_tag(tag);
        self.epochs.bump_tag(UNKNOWN_TAGS);
        removed
    }

    /// Removes everything. Returns how many entries were removed.
    pub(crate) fn clear(&self) -> usize {
        // The queues first: an insert that lands after the scan below passed its bucket pushed
        // its records after this, so it stays evictable and sweepable. Cleared afterwards, they
        // lost such an entry's records, and it was never swept or evicted again.
        lock(&self.evictor).clear();
        lock(&self.expiry).clear();
        self.remove_where(|_| true)
    }

    /// Removes up to `budget` entries whose TTL has passed, oldest first. Returns how many.
    pub(crate) fn sweep_expired(&self, budget: usize) -> usize {
        let now = self.clock.now_ms_precise();
        let mut heap = lock(&self.expiry);
        let mut removed = 0;
        for _ in 0..budget {
            match heap.peek() {
                Some(Reverse((at, _))) if *at <= now => {}
                _ => break,
            }
            let Some(Reverse((_, slot))) = heap.pop() else {
                break;
            };
            if self.remove_slot(slot, RemovalCause::Expired) {
                removed += 1;
            }
        }
        // Records of replaced or evicted entries linger until their time; drop them in bulk when
        // they outnumber the live entries, so the heap stays proportional to the cache.
        if heap.len() > 2 * self.len() + 1024 {
            heap.retain(|Reverse((_, slot))| self.freq(*slot).is_some());
        }
        removed
    }

    /// Live entry count (may lag concurrent inserts by a few).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed).max(0) as usize
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            name: self.name.to_string(),
            hits: c.hits.get(),
            misses: c.misses.get(),
            inserts: c.inserts.get(),
            evictions: c.evictions.get(),
            expirations: c.expirations.get(),
            invalidations: c.invalidations.get(),
            coalesced: c.coalesced.get(),
            bypassed: c.bypassed.get(),
            preload_hits: c.preload_hits.get(),
            stale_served: c.stale_served.get(),
            refreshes: c.refreshes.get(),
            refreshes_skipped: c.refreshes_skipped.get(),
            fail_safe: c.fail_safe.get(),
            body_failures: c.body_failures.get(),
            timeouts: c.timeouts.get(),
            lookup_latency: c.lookup_latency.summary(),
            body_latency: c.body_latency.summary(),
            entries: self.len() as u64,
            weight: self.weight.load(Ordering::Relaxed).max(0) as u64,
            remote: None,
        }
    }

    pub(crate) fn reset_stats(&self) {
        let c = &self.counters;
        c.hits.reset();
        for counter in [
            &c.misses,
            &c.inserts,
            &c.evictions,
            &c.expirations,
            &c.invalidations,
            &c.coalesced,
            &c.bypassed,
            &c.preload_hits,
            &c.stale_served,
            &c.refreshes,
            &c.refreshes_skipped,
            &c.fail_safe,
            &c.body_failures,
            &c.timeouts,
        ] {
            counter.reset();
        }
        c.lookup_latency.reset();
        c.body_latency.reset();
    }

    /// The eviction strategy in force.
    pub(crate) fn eviction(&self) -> Eviction {
        self.policy.eviction
    }
}

impl Probe for MemoryStore {
    fn freq(&self, slot: Slot) -> Option<u8> {
        fn freq_in<const N: usize>(map: &Entries<N>, slot: Slot) -> Option<u8> {
            map.peek_with(&slot.hash, |_, e| {
                (e.id == slot.id).then(|| e.freq.load(Ordering::Relaxed))
            })
            .flatten()
        }
        in_class!(self, class_of_slot(slot), |map| freq_in(map, slot))
    }

    fn set_freq(&self, slot: Slot, freq: u8) {
        fn set_in<const N: usize>(map: &Entries<N>, slot: Slot, freq: u8) {
            map.peek_with(&slot.hash, |_, e| {
                if e.id == slot.id {
                    e.freq.store(freq, Ordering::Relaxed);
                }
            });
        }
        in_class!(self, class_of_slot(slot), |map| set_in(map, slot, freq))
    }

    fn resident(&self) -> usize {
        self.len()
    }
}

// Last, so the tests see `in_class!`.
#[cfg(test)]
mod tests;
