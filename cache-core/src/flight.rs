//! Per-key single flight: concurrent misses of one key run the body once.
//!
//! The first caller to miss becomes the *leader* and registers a [`Flight`]; later callers of the
//! same key *follow* it and wait for its value. No lock is held while the body runs, so other keys
//! never wait and a recursive cached function does not deadlock on itself. The leader is also the
//! only caller that reads the remote tier, so a cold key costs one round trip per process.
//!
//! When the leader cannot deliver a value — its future was dropped (axum drops handlers of
//! disconnected clients), its body panicked, or its outcome is not cached (`Err`, `None`) — the
//! [`LeaderGuard`] marks the flight so its followers do not hang: after an abandoned flight they
//! start over and one of them leads; after an uncached outcome each runs the body itself, because
//! a value that was not cached cannot be shared (an `E` need not be `Clone`).

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::{Pin, pin};
use std::sync::{Arc, Condvar, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use dashmap::mapref::entry::Entry as MapEntry;

use crate::freshness::{Freshness, SiteFreshness, TimedOut, should_refresh};
use crate::job::{Background, Job, SyncJob, Work};
use crate::key::KeyBuf;
use crate::memory::{HashKeyed, InsertOptions, Lookup, Miss, Stored, Times, Value, fits_inline};
use crate::outcome::Strategy;
use crate::remote::codec::Codec;
use crate::remote::lock::FlightLock;
use crate::remote::{LockWait, run_blocking, run_sync};
use crate::store::{RemoteWrite, Store};

pub(crate) type Flights = HashKeyed<Arc<Flight>>;

#[derive(Clone)]
enum State {
    Running,
    Done(Value),
    /// The leader finished with an outcome that is not cached.
    Uncached,
    /// The leader had a value but nobody was waiting, so it made no shareable copy (a
    /// remote-only cache keeps none in memory). A caller that joined in the instant before the
    /// flight was removed loads the value itself.
    Unshared,
    /// The leader was cancelled or panicked, or its value straddles an invalidation: followers
    /// start over.
    Abandoned,
    /// The body passed its hard timeout: followers answer as their own timeout would (fail-safe
    /// value or timeout error) instead of each running the body again.
    TimedOut,
}

/// A flight's state, and whether anyone waits for it (so that a leader nobody waits for skips
/// the wake-ups: `Condvar::notify_all` is a futex system call even without waiters).
struct Slot {
    state: State,
    waiting: bool,
}

/// A flight's key, inline when short (most keys are) so registering a flight is one allocation.
enum FlightKey {
    Inline {
        len: u8,
        bytes: [u8; FlightKey::INLINE],
    },
    Heap(Box<[u8]>),
}

impl FlightKey {
    const INLINE: usize = 64;

    fn new(key: &[u8]) -> Self {
        if key.len() <= Self::INLINE {
            let mut bytes = [0; Self::INLINE];
            bytes[..key.len()].copy_from_slice(key);
            FlightKey::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            FlightKey::Heap(key.into())
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            FlightKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            FlightKey::Heap(b) => b,
        }
    }
}

pub(crate) struct Flight {
    key: FlightKey,
    /// The tags the leader's value is stored under, and the invalidation epochs of its key, of
    /// those tags and of the whole cache when the flight was registered; see `join`.
    tags: Box<[Arc<str>]>,
    generation: u64,
    /// Whether the leader's body runs as a tokio task (an async caller, or an async background
    /// refresh), which some thread of its runtime must poll: see `miss_blocking`.
    on_task: bool,
    slot: Mutex<Slot>,
    notify: tokio::sync::Notify,
    condvar: Condvar,
}

impl Flight {
    fn new(key: &[u8], tags: &[Arc<str>], generation: u64, on_task: bool) -> Self {
        Flight {
            key: FlightKey::new(key),
            tags: tags.into(),
            generation,
            on_task,
            slot: Mutex::new(Slot {
                state: State::Running,
                waiting: false,
            }),
            notify: tokio::sync::Notify::new(),
            condvar: Condvar::new(),
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn wait(&self) -> State {
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            {
                let mut slot = self.slot();
                if !matches!(slot.state, State::Running) {
                    return slot.state.clone();
                }
                // Under the lock: a leader settling after this sees it and wakes us.
                slot.waiting = true;
            }
            notified.await;
        }
    }

    fn wait_blocking(&self) -> State {
        let mut slot = self.slot();
        while matches!(slot.state, State::Running) {
            slot.waiting = true;
            slot = self.condvar.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
        slot.state.clone()
    }
}

/// The computations whose bodies this thread is running (polling, for an async body) now, as
/// (store, key hash).
///
/// A body that asks for its own key (two cached functions sharing a key template, one calling
/// the other) would otherwise join its own flight and wait for itself for ever: such a caller
/// computes on its own instead, without waiting for the distributed lock either, which its outer
/// call holds. Marked only while the body runs, not for its whole task, so
/// that callers of the key that the same task runs side by side (`join!`) still share one
/// computation. A body that hands the call to another task or thread and waits for it is not
/// recognised.
mod computing {
    use std::cell::RefCell;

    thread_local! {
        static NOW: RefCell<Vec<(usize, u64)>> = const { RefCell::new(Vec::new()) };
    }

    /// Marks (store, hash) as running on this thread until the guard drops (unwinding included).
    pub(super) fn enter(store: usize, hash: u64) -> Entered {
        NOW.with(|now| now.borrow_mut().push((store, hash)));
        Entered
    }

    pub(super) fn contains(store: usize, hash: u64) -> bool {
        NOW.with(|now| now.borrow().contains(&(store, hash)))
    }

    pub(super) struct Entered;

    impl Drop for Entered {
        fn drop(&mut self) {
            NOW.with(|now| now.borrow_mut().pop());
        }
    }
}

/// The identity of a store in [`computing`].
fn store_id(store: &Store) -> usize {
    std::ptr::from_ref(store) as usize
}

/// Whether the caller runs inside a current-thread tokio runtime (see `get_or_compute_blocking`).
fn on_current_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
}

/// Held by the leader while it loads or computes; settles the flight however the leader ends.
/// Owns its store so that a background task can hold it (soft timeout).
pub(crate) struct LeaderGuard {
    store: Arc<Store>,
    hash: u64,
    flight: Arc<Flight>,
    settled: bool,
}

impl LeaderGuard {
    fn settle(&mut self, state: State) {
        self.settle_with(|_| state);
    }

    /// Settles with the state `make` builds, told whether anyone is waiting yet. `make` runs
    /// outside the lock (it may clone a user value, which may panic: the guard then abandons the
    /// flight as usual); a caller that starts waiting meanwhile gets what `make` returned.
    fn settle_with(&mut self, make: impl FnOnce(bool) -> State) {
        let waiting = self.flight.slot().waiting;
        let state = make(waiting);
        self.settled = true;
        let waiting = {
            let mut slot = self.flight.slot();
            slot.state = state;
            slot.waiting
        };
        self.store
            .flights
            .remove_if(&self.hash, |_, f| Arc::ptr_eq(f, &self.flight));
        if waiting {
            self.flight.notify.notify_waiters();
            self.flight.condvar.notify_all();
        }
    }
}

impl Drop for LeaderGuard {
    fn drop(&mut self) {
        if !self.settled {
            self.settle(State::Abandoned);
        }
    }
}

/// What a caller that missed does next.
enum Role<T> {
    /// The value appeared meanwhile.
    Hit(T),
    Lead(LeaderGuard),
    Follow(Arc<Flight>),
    /// Another key with the same 64-bit hash is in flight: run without coalescing.
    Alone,
}

fn join<T: Clone + Send + Sync + 'static>(
    store: &Arc<Store>,
    key: &KeyBuf,
    hash: u64,
    tags: &[Arc<str>],
    local: bool,
    on_task: bool,
) -> Role<T> {
    let epochs = &store.memory.epochs;
    let flight = match store.flights.entry(hash) {
        // A flight that started before an invalidation of its key, of one of its tags or of the
        // whole cache may bring a value older than it: a caller arriving after the invalidation
        // does not wait for that value but leads a new flight in its place (the old leader's
        // followers keep theirs). Invalidations of other keys and tags leave the flight joinable,
        // so a hot key still loads once while the rest of the cache is being written. The
        // epochs are compared over the flight's own tags, whose counters only grow, so any
        // invalidation since it registered shows; a caller naming other tags for the same key
        // cannot tell, and leads.
        MapEntry::Occupied(mut o) if o.get().key.as_bytes() == key.as_bytes() => {
            let current = o.get();
            if computing::contains(store_id(store), hash) {
                return Role::Alone;
            }
            if *current.tags == *tags && epochs.snapshot(hash, tags) == current.generation {
                return Role::Follow(current.clone());
            }
            let flight = Arc::new(Flight::new(
                key.as_bytes(),
                tags,
                epochs.snapshot(hash, tags),
                on_task,
            ));
            o.insert(flight.clone());
            flight
        }
        MapEntry::Occupied(_) => return Role::Alone,
        MapEntry::Vacant(v) => {
            let flight = Arc::new(Flight::new(
                key.as_bytes(),
                tags,
                epochs.snapshot(hash, tags),
                on_task,
            ));
            v.insert(flight.clone());
            flight
        }
    };
    let mut guard = LeaderGuard {
        store: store.clone(),
        hash,
        flight,
        settled: false,
    };
    // A leader that finished between our lookup and our registration has stored its value.
    if local
        && let Some(value) = store.memory.peek_value_of::<T>(key.as_bytes(), hash)
        && let Some(v) = value.downcast_ref::<T>()
    {
        let v = v.clone();
        guard.settle(State::Done(value));
        return Role::Hit(v);
    }
    Role::Lead(guard)
}

/// The span a body runs in: which cache, which key, and that it was a miss. At `debug` level, so
/// it costs one interest check when disabled.
fn miss_span(store: &Store, key: &KeyBuf) -> tracing::Span {
    tracing::debug_span!("cached", cache = %store.name, key = key.as_str(), outcome = "miss")
}

/// Tells a `CacheHeadersLayer` (feature `axum`) what this call did.
#[inline]
fn note(status: Status) {
    #[cfg(feature = "axum")]
    match status {
        Status::Miss => crate::http::record(crate::http::CacheStatus::Miss),
        Status::Stale => crate::http::record(crate::http::CacheStatus::Stale),
        Status::FellBack => crate::http::record_fallback(),
    }
    #[cfg(not(feature = "axum"))]
    let _ = status;
}

#[derive(Clone, Copy)]
enum Status {
    /// The call runs its body.
    Miss,
    /// The call serves a value past its TTL without running its body.
    Stale,
    /// The call, which ran its body (a `Miss`), serves a fallback instead of its outcome.
    FellBack,
}

/// How a call is stored and served: its insert options, and its freshness settings.
pub(crate) struct Plan {
    pub(crate) opts: InsertOptions,
    pub(crate) fresh: Freshness,
}

impl Plan {
    /// The plan of a call with no settings of its own (the programmatic API).
    pub(crate) fn of(store: &Store, opts: InsertOptions) -> Plan {
        Plan {
            opts,
            fresh: Freshness::resolve(&SiteFreshness::NONE, &store.policy),
        }
    }
}

/// A value kept past its TTL that may stand in for a failed computation.
struct Fallback<T> {
    value: T,
    kept: Kept,
}

/// A kept value as a fallback carries it: shared, with its entry's times, and the invalidation
/// epoch of its key and tags read no later than the value was. A failed body runs after the
/// read, so an invalidation may have run in between: this epoch, not one read when the body
/// started, is what says whether the value may still be stored or shared.
pub(crate) struct Kept {
    shared: Value,
    times: Times,
    epoch: u64,
}

impl Kept {
    /// What the flight's followers get when `self` answers for a failed body: the value, unless
    /// an invalidation ran since it was read. They then start over, as after a value that
    /// straddles an invalidation: some may have arrived after the invalidation returned, and
    /// must not get a value older than it.
    fn settles(&self, store: &Store, key: &KeyBuf, hash: u64, opts: &InsertOptions) -> State {
        if store.memory.epochs.snapshot(hash, &opts.tags) == self.epoch {
            State::Done(self.shared.clone())
        } else {
            tracing::debug!(cache = %store.name, key = key.as_str(), "fallback read before an invalidation; not stored or shared");
            State::Abandoned
        }
    }
}

/// What the leader found or made, before the remote write.
struct Outcome<R, T> {
    out: R,
    share: Share,
    /// A computed value still to be written to the remote tier.
    to_remote: Option<(T, InsertOptions, Duration)>,
}

/// What the leader's followers get.
enum Share {
    /// The shared value that went into L1.
    Value(Value),
    /// The value went into L1 inline (it is small; see `memory/value.rs`): a copy is made for
    /// followers only if someone waits, from the value still to be written remotely or from
    /// `out`; a caller that joined just as the flight settles starts over and finds it in L1.
    Stored,
    /// The cacheable part of `out`, copied only if someone waits (a remote-only cache keeps no
    /// copy in memory, so a lone caller pays for none).
    FromOut,
    /// Nothing: the outcome is not cached.
    Nothing,
    /// Nothing, and followers start over: the value straddles an invalidation.
    Retry,
}

impl<R, T> Outcome<R, T> {
    /// Whether the body answered with something that is not cached (`None`, a status that is not
    /// a success, a value `#[cache_if(result = ..)]` rejects): an answer all the same.
    fn answered_uncached(&self) -> bool {
        matches!(self.share, Share::Nothing)
    }
}

impl<R, T: Clone + Send + Sync + 'static> Outcome<R, T> {
    /// The state the flight settles in.
    fn state<S: Strategy<R, Value = T>>(&self, strategy: &S, waiting: bool) -> State {
        match &self.share {
            Share::Value(v) => State::Done(v.clone()),
            Share::FromOut | Share::Stored if waiting => {
                // A computed value is at hand (it is about to be written); a promoted one is
                // taken from the answer.
                let value = match &self.to_remote {
                    Some((v, ..)) => Some(v.clone()),
                    None => strategy.cacheable(&self.out),
                };
                value.map_or(State::Uncached, |v| State::Done(Arc::new(v)))
            }
            Share::FromOut => State::Unshared,
            Share::Stored => State::Abandoned,
            Share::Nothing => State::Uncached,
            Share::Retry => State::Abandoned,
        }
    }

    fn settle<S: Strategy<R, Value = T>>(&self, guard: Option<&mut LeaderGuard>, strategy: &S) {
        if let Some(guard) = guard {
            guard.settle_with(|waiting| self.state(strategy, waiting));
        }
    }
}

/// What a computed value's entry looks like: its TTL (with jitter), its recompute time and how
/// long it is kept past its TTL.
fn stamp(store: &Store, opts: &mut InsertOptions, fresh: &Freshness, took_ms: u64) {
    if fresh.jitter_pct != 0 {
        opts.ttl = fresh.jittered(opts.ttl.or(store.policy.ttl));
    }
    opts.delta_ms = took_ms.min(u64::from(u32::MAX)) as u32;
    opts.keep_ms = fresh.keep_ms(opts.delta_ms);
    opts.refresh = fresh.refresh;
}

/// An async body run under way, timed however it ends: by [`BodyRun::ended`], or when dropped
/// unended, as happens when its caller's future is dropped (a cancelled request, an aborted task)
/// while the body runs: that run asked the data source all the same, and `body_latency` counts
/// every run.
struct BodyRun<'a> {
    store: &'a Store,
    started: Instant,
    timed: bool,
}

impl<'a> BodyRun<'a> {
    fn start(store: &'a Store, started: Instant) -> Self {
        BodyRun {
            store,
            started,
            timed: false,
        }
    }

    /// See [`body_ended`].
    fn ended(mut self) -> u64 {
        self.timed = true;
        body_ended(self.store, self.started)
    }

    /// The body goes on elsewhere (past its soft timeout, in the background), which times it.
    fn handed_off(mut self) {
        self.timed = true;
    }
}

impl Drop for BodyRun<'_> {
    fn drop(&mut self) {
        if !self.timed {
            body_ended(self.store, self.started);
        }
    }
}

/// Times a body run that has just ended, however it ended: `body_latency` counts every run (its
/// count is how often the data source was asked), a failed one answered by a fail-safe value
/// included. Returns the clock's reading of the end, in milliseconds, for the stored entry.
fn body_ended(store: &Store, started: Instant) -> u64 {
    let (ended_ms, ended) = store.memory.clock.reading();
    store
        .memory
        .counters
        .body_latency
        .record(ended.saturating_duration_since(started));
    ended_ms
}

/// Stores the cacheable part of a computed `out` in L1 and returns what followers get. A value
/// without a codec stays in L1 even in a remote-only cache ([`Store::keeps_local`]).
#[allow(clippy::too_many_arguments)]
fn keep_computed<R, S: Strategy<R>>(
    store: &Store,
    key: &KeyBuf,
    hash: u64,
    mut opts: InsertOptions,
    fresh: &Freshness,
    strategy: &S,
    has_codec: bool,
    out: R,
    started_ms: u64,
    ended_ms: u64,
    epoch: u64,
) -> Outcome<R, S::Value> {
    let took_ms = ended_ms.saturating_sub(started_ms);
    opts.now_ms = Some(ended_ms);
    match strategy.cacheable(&out) {
        Some(v) => {
            stamp(store, &mut opts, fresh, took_ms);
            let to_remote = store.remote.is_some() && has_codec;
            opts.epoch = Some(epoch);
            if !store.keeps_local(has_codec) {
                if store.memory.epochs.snapshot(hash, &opts.tags) != epoch {
                    return straddled(store, key, out);
                }
                // Remote-only: nothing for L1, and no copy for followers unless they wait.
                return Outcome {
                    out,
                    share: Share::FromOut,
                    to_remote: Some((v, opts, Duration::from_millis(took_ms))),
                };
            }
            let (local, to_remote) = if to_remote {
                (
                    v.clone(),
                    Some((v, opts.clone(), Duration::from_millis(took_ms))),
                )
            } else {
                (v, None)
            };
            let (value, share) = stored_and_shared(local);
            let stored = if has_codec {
                store.put_local(key.as_str(), hash, value, opts)
            } else {
                store.put_local_only(key.as_str(), hash, value, opts)
            };
            if !stored {
                return straddled(store, key, out);
            }
            Outcome {
                out,
                share,
                to_remote,
            }
        }
        None => Outcome {
            out,
            share: Share::Nothing,
            to_remote: None,
        },
    }
}

/// A value found in L2: promoted into L1 with what is left of its TTL (never longer).
#[allow(clippy::too_many_arguments)]
fn keep_promoted<R, S: Strategy<R>>(
    store: &Store,
    key: &KeyBuf,
    hash: u64,
    mut opts: InsertOptions,
    fresh: &Freshness,
    strategy: &S,
    hit: crate::store::RemoteHit<S::Value>,
    epoch: u64,
) -> Outcome<R, S::Value> {
    if !store.tier.uses_memory() {
        // Remote-only: the hit is the caller's; followers, if any, get a copy at settling.
        return Outcome {
            out: strategy.rebuild(hit.value),
            share: Share::FromOut,
            to_remote: None,
        };
    }
    let (value, share) = stored_and_shared(hit.value.clone());
    // What Redis says is left, judged by this host's wall clock: never more than the TTL itself,
    // so a clock running behind the writer's does not keep the copy longer.
    opts.ttl = match (hit.remaining, opts.ttl.or(store.policy.ttl)) {
        (Some(left), Some(ttl)) => Some(left.min(ttl)),
        (left, _) => left,
    };
    opts.epoch = Some(epoch);
    opts.delta_ms = hit.delta_ms;
    opts.keep_ms = fresh.keep_ms(hit.delta_ms);
    opts.refresh = fresh.refresh;
    if !store.put_local(key.as_str(), hash, value, opts) {
        return straddled(store, key, strategy.rebuild(hit.value));
    }
    Outcome {
        out: strategy.rebuild(hit.value),
        share,
        to_remote: None,
    }
}

/// What goes into L1 for a value and what its followers get: a small value is moved into the
/// entry and copied for followers only if they wait ([`Share::Stored`]); a large one is shared by
/// both through one `Arc`, as before.
fn stored_and_shared<T: Clone + Send + Sync + 'static>(value: T) -> (Stored, Share) {
    if fits_inline::<T, { crate::memory::LARGE }>() {
        (Stored::new(value), Share::Stored)
    } else {
        let shared: Value = Arc::new(value);
        (Stored::shared(shared.clone()), Share::Value(shared))
    }
}

/// A shared value stored where a typed lookup finds it: a value that fits inline is copied into
/// its type's class (stored shared, it would sit in the small class's map, where lookups of a
/// medium- or large-class type never look); a larger one keeps its `Arc`.
fn typed<T: Clone + Send + Sync + 'static>(shared: &Value) -> Stored {
    match shared.downcast_ref::<T>() {
        Some(v) if fits_inline::<T, { crate::memory::LARGE }>() => Stored::new(v.clone()),
        _ => Stored::shared(shared.clone()),
    }
}

/// A value read or computed across an invalidation (its epoch moved): the caller gets it (it was
/// concurrent with the invalidation), nothing is stored, and followers start over, since some
/// joined after the invalidation returned and must not get this value. The check is made under
/// the map's shard lock (`MemoryStore::insert`), so an invalidation either removes the new entry
/// or the entry sees the invalidation.
fn straddled<R, T>(store: &Store, key: &KeyBuf, out: R) -> Outcome<R, T> {
    tracing::debug!(cache = %store.name, key = key.as_str(), "value read or computed across an invalidation; not stored");
    Outcome {
        out,
        share: Share::Retry,
        to_remote: None,
    }
}

/// Keeps a fail-safe value in L1 as fresh for the throttle (never past its fail-safe window), so
/// the failing body is not retried on every call, then settles the flight with it. Checked
/// against the epoch read with the value (not the one the failed body started under), so a value
/// read before an invalidation is never stored after it.
fn keep_fallback<T: Clone + Send + Sync + 'static>(
    store: &Store,
    key: &KeyBuf,
    hash: u64,
    opts: &InsertOptions,
    fresh: &Freshness,
    kept: Kept,
    guard: Option<&mut LeaderGuard>,
) {
    store_fallback::<T>(store, key, hash, opts, fresh, &kept);
    if let Some(guard) = guard {
        guard.settle(kept.settles(store, key, hash, opts));
    }
}

/// The store of [`keep_fallback`]; nothing past the fail-safe window or in a remote-only cache.
fn store_fallback<T: Clone + Send + Sync + 'static>(
    store: &Store,
    key: &KeyBuf,
    hash: u64,
    opts: &InsertOptions,
    fresh: &Freshness,
    kept: &Kept,
) {
    let times = kept.times;
    let now = store.memory.clock.now_ms_precise();
    let window_end = times
        .expires_at
        .saturating_add(fresh.fail_safe_ms.max(fresh.stale_ms))
        .min(times.keep_until);
    if window_end <= now || !store.tier.uses_memory() {
        return;
    }
    // In a hybrid cache the copy, like any, lives no longer than the L1 TTL: past it the next
    // call looks at Redis, where another instance may have written a newer value whose message
    // was lost, before the failing body is tried again.
    let life = store.l1_cap().map_or(window_end - now, |l1| {
        (window_end - now).min(l1.as_millis() as u64)
    });
    let ttl = fresh.throttle_ms.min(life);
    let opts = InsertOptions {
        ttl: Some(Duration::from_millis(ttl)),
        tags: opts.tags.clone(),
        epoch: Some(kept.epoch),
        keep_ms: life - ttl,
        refresh: crate::RefreshAhead::Off,
        delta_ms: times.delta_ms,
        now_ms: Some(now),
        // Not over a value computed since the fallback was read (by a caller that did not wait
        // for this body: its flight had ended, or it computed alone).
        only_over: Some((times.soft_at, times.expires_at)),
    };
    store
        .memory
        .insert(key.as_str(), hash, typed::<T>(&kept.shared), opts);
}

/// What a leader knows for the whole of its computation: where it stores, its settings, and the
/// invalidation epoch it started under.
#[derive(Clone, Copy)]
struct At<'a> {
    store: &'a Arc<Store>,
    key: &'a KeyBuf,
    hash: u64,
    fresh: &'a Freshness,
    epoch: u64,
}

impl At<'_> {
    /// Serves a fail-safe value in place of a failed body's outcome, to the caller and its
    /// followers, and keeps it as fresh for the throttle. The caller ran the body (and noted a
    /// `Miss`), so the note here turns its call into a stale one.
    fn fail_safe<R, S: Strategy<R>>(
        &self,
        opts: &InsertOptions,
        strategy: &S,
        fallback: Fallback<S::Value>,
        guard: &mut Option<LeaderGuard>,
        why: &str,
    ) -> R {
        let store = self.store;
        store.memory.counters.fail_safe.incr();
        note(Status::FellBack);
        tracing::warn!(cache = %store.name, key = self.key.as_str(), why, "cached function failed; serving its fail-safe value");
        // The caller gets its fallback even if it was read before an invalidation that ran
        // since: the caller arrived before the invalidation returned, so either answer is
        // correct for it (as for a value that straddles one). It is not kept for later callers.
        keep_fallback::<S::Value>(
            store,
            self.key,
            self.hash,
            opts,
            self.fresh,
            fallback.kept,
            guard.as_mut(),
        );
        strategy.rebuild(fallback.value)
    }

    /// A fresh value from L2: promoted into L1, shared with the followers, returned.
    fn promote<R, S: Strategy<R>>(
        &self,
        opts: &InsertOptions,
        strategy: &S,
        hit: crate::store::RemoteHit<S::Value>,
        guard: &mut Option<LeaderGuard>,
    ) -> R {
        let outcome = keep_promoted(
            self.store,
            self.key,
            self.hash,
            opts.clone(),
            self.fresh,
            strategy,
            hit,
            self.epoch,
        );
        outcome.settle(guard.as_mut(), strategy);
        outcome.out
    }

    /// What the leader's L2 read gives: an answer (a fresh value, or a stale one served while it
    /// refreshes), or a computation still to do, perhaps with a fallback.
    fn use_remote_read<R, W: Work<R>>(
        &self,
        opts: &InsertOptions,
        work: W,
        hit: Option<crate::store::RemoteHit<ValueOf<R, W>>>,
        guard: &mut Option<LeaderGuard>,
    ) -> Later<R, W, ValueOf<R, W>> {
        match hit {
            Some(hit) if hit.stale_for.is_some() => remote_stale(
                self.store, self.key, self.hash, opts, self.fresh, work, hit, guard, self.epoch,
            ),
            Some(hit) => Later::Served(self.promote(opts, work.strategy(), hit, guard)),
            None => Later::Compute(work, None),
        }
    }

    /// A body's return value: a failure with a fallback is answered by the fallback (`Err`);
    /// anything else is kept, its flight settled, and its remote write still to do (`Ok`).
    #[allow(clippy::too_many_arguments)]
    fn take_returned<R, S: Strategy<R>>(
        &self,
        opts: InsertOptions,
        strategy: &S,
        has_codec: bool,
        out: R,
        (started_ms, ended_ms): (u64, u64),
        fallback: Option<Fallback<S::Value>>,
        guard: &mut Option<LeaderGuard>,
    ) -> Result<Outcome<R, S::Value>, R> {
        if strategy.failed(&out) {
            self.store.memory.counters.body_failures.incr();
            if let Some(fallback) = fallback {
                return Err(self.fail_safe(&opts, strategy, fallback, guard, "returned an error"));
            }
        }
        let outcome = keep_computed(
            self.store, self.key, self.hash, opts, self.fresh, strategy, has_codec, out,
            started_ms, ended_ms, self.epoch,
        );
        outcome.settle(guard.as_mut(), strategy);
        Ok(outcome)
    }
}

fn warn_no_codec(store: &Store) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            cache = %store.name,
            "a cached value type is not serde-serializable, so it is kept in memory only although the cache has a remote tier"
        );
    });
}

/// A cache's policy asks for a background body (stale-while-revalidate, refresh-ahead, a soft
/// timeout) that a call cannot give: `#[cached]` makes a body detachable only when the function
/// names one of those options itself (only then does it check that the arguments are owned), and
/// `Cache::get_or_insert_with` never does. Said once, since it would otherwise go unnoticed.
fn warn_attached_background(store: &Store) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            cache = %store.name,
            "the cache's policy sets stale, refresh_ahead or soft_timeout, which apply only to #[cached] functions that name one of them; this call computes in the foreground (a policy stale window still serves as a fail-safe fallback)"
        );
    });
}

async fn write_remote<T>(
    store: &Store,
    key: &KeyBuf,
    codec: Option<&Codec<T>>,
    pending: Option<(T, InsertOptions, Duration)>,
) {
    if let (Some(codec), Some((value, opts, took))) = (codec, pending) {
        // A computed value replaces none that is fresh: a refused one leaves the remote tier as
        // it was (deleting and announcing it there would have every instance that computes it
        // drop the others' memory copies in turn).
        let _ = store
            .put_remote(
                key.as_str(),
                &value,
                codec,
                &opts,
                took,
                RemoteWrite::Computed,
            )
            .await;
    }
}

pub(crate) type ValueOf<R, W> = <<W as Work<R>>::Strategy as Strategy<R>>::Value;

/// What a memory lookup that found no value to serve hands to the miss path.
#[derive(Clone, Copy, Debug)]
pub struct LocalMiss {
    /// Whether an entry past its `soft_at` was found (refresh ahead, serve stale, fail-safe).
    pub(crate) later: bool,
    /// The key's lookup hash, computed once.
    pub(crate) hash: u64,
}

/// The memory-tier step of every cached call's hit path: the value under `key`, borrowed for as
/// long as `guard` lives, or what the miss path needs.
///
/// The caller takes the guard before calling: its locked instruction waits for the key's
/// just-rendered bytes to reach the cache, so the hash's loads that follow find them there
/// instead of stalling on store forwarding across the several stores that wrote them.
#[inline(always)]
pub(crate) fn lookup_local<'g, T: 'static>(
    store: &'g Store,
    key: &KeyBuf,
    guard: &'g scc::Guard,
) -> Result<&'g T, LocalMiss> {
    let hash = key.lookup_hash();
    match store.get_local_ref::<T>(key.as_bytes(), hash, guard) {
        Ok(v) => {
            tracing::trace!(cache = %store.name, outcome = "hit", "cached call");
            Ok(v)
        }
        Err(Miss::Later) => Err(LocalMiss { later: true, hash }),
        Err(Miss::Absent) => Err(LocalMiss { later: false, hash }),
    }
}

/// The memory hit of [`get_or_compute`] and [`get_or_compute_blocking`]: returns the value from
/// the calling function, else evaluates to the [`LocalMiss`] for the miss path.
///
/// A macro rather than a function because the `return` is the point: the value is cloned
/// straight into the caller's return value (which is the expansion's: it returns it as it is)
/// while the guard, a local of the caller, keeps the entry alive. Returned through a function,
/// a 168-byte row was copied once per layer (see `docs/benchmarks-history.md`, third pass). Expanded inside a
/// function generic over `R` (the return type) and `J` (its job), as both callers are. The
/// async expansion does the same steps itself (see `__private::cached_async`).
macro_rules! return_hit_or_later {
    ($store:expr, $key:expr, $job:expr) => {{
        let guard = scc::Guard::new();
        match lookup_local::<ValueOf<R, J>>($store, $key, &guard) {
            Ok(v) => return $job.strategy().rebuild_cloned(v),
            Err(later) => later,
        }
    }};
}

/// Reads `key`, or computes it with the job's body once across concurrent callers.
#[inline(always)]
pub(crate) async fn get_or_compute<R, J: Job<R>>(
    store: &Arc<Store>,
    key: &KeyBuf,
    plan: impl FnOnce() -> Plan,
    job: J,
) -> R {
    let later = return_hit_or_later!(store, key, job);
    // Boxed so the caller's future holds a pointer rather than the whole miss state machine
    // (single flight, L2 read, body, L2 write): a hit then builds and moves a small future.
    Box::pin(miss(store, key, later.hash, plan, job, later.later)).await
}

/// What to do with an entry found past its `soft_at`.
enum Later<R, W, T> {
    /// Answered from the entry (refresh-ahead window, stale-while-revalidate, refresh grace).
    Served(R),
    /// Compute, with the entry as a fail-safe fallback if it is within its window.
    Compute(W, Option<Fallback<T>>),
}

/// Decides what an entry past its `soft_at` gives its caller; see `freshness.rs`.
fn serve_later<R, W: Work<R>>(
    store: &Arc<Store>,
    key: &KeyBuf,
    hash: u64,
    opts: &InsertOptions,
    fresh: &Freshness,
    work: W,
    on_task: bool,
) -> Later<R, W, ValueOf<R, W>> {
    // Read before the value: an invalidation that removes it after this moves the epoch, so the
    // value is not stored again as a fallback (read after, the epoch may already include an
    // invalidation the value predates).
    let epoch = store.memory.epochs.snapshot(hash, &opts.tags);
    let Some((shared, times)) = store.memory.peek_kept(key.as_bytes(), hash) else {
        store.memory.counters.misses.incr();
        return Later::Compute(work, None);
    };
    let Some(value) = shared.downcast_ref::<ValueOf<R, W>>().cloned() else {
        store.memory.counters.misses.incr();
        return Later::Compute(work, None);
    };
    let now = store.memory.clock.now_ms();
    if !W::DETACHABLE && (fresh.stale_ms > 0 || fresh.refresh.is_on()) {
        warn_attached_background(store);
    }
    let in_flight = store.flights.contains_key(&hash);
    // The value being refreshed is its fallback, with the epochs read before it.
    let refresh = |work: W, shared: Value| {
        if !W::DETACHABLE {
            return;
        }
        let kept = Kept {
            shared,
            times,
            epoch,
        };
        // The refresh's flight is claimed here, before its task is spawned, so that the other
        // reads of a burst find it in flight and start none of their own (claimed only once the
        // task ran, the map stayed empty until then and every read spawned a task, each running
        // the body when the first one's answer had ended the entry). `false`: an entry refreshed
        // ahead is still fresh, which is no reason to stop.
        // `on_task`: an async caller's refresh is a task, a sync caller's runs on a thread.
        let guard = match join::<ValueOf<R, W>>(store, key, hash, &opts.tags, false, on_task) {
            Role::Lead(guard) if !refreshed_meanwhile(store, key, hash, Some(&kept)) => guard,
            // Someone else computes it, or has.
            _ => return,
        };
        let ctx = Background {
            store: store.clone(),
            key: key.clone(),
            hash,
            opts: opts.clone(),
            fresh: *fresh,
            guard: Some(guard),
            fallback: Some(kept),
            started: None,
            lock: None,
        };
        let _ = work.refresh_in_background(ctx);
    };
    if now < times.expires_at {
        // Refresh-ahead window: a hit, which may start a refresh.
        store.memory.counters.hits.incr();
        let out = work.strategy().rebuild(value);
        if !in_flight
            && should_refresh(
                fresh.refresh,
                now,
                times.soft_at,
                times.expires_at,
                times.delta_ms,
            )
        {
            refresh(work, shared);
        }
        return Later::Served(out);
    }
    if W::DETACHABLE && now < times.expires_at.saturating_add(fresh.stale_ms) {
        // Stale-while-revalidate: the old value now, one refresh in the background.
        store.memory.counters.stale_served.incr();
        note(Status::Stale);
        let out = work.strategy().rebuild(value);
        if !in_flight {
            refresh(work, shared);
        }
        return Later::Served(out);
    }
    if in_flight
        && W::DETACHABLE
        && now
            < times
                .expires_at
                .saturating_add(fresh.refresh_grace_ms(times.delta_ms))
    {
        // Refresh-ahead grace: the refresh under way will land in a moment.
        store.memory.counters.hits.incr();
        return Later::Served(work.strategy().rebuild(value));
    }
    store.memory.counters.misses.incr();
    // A stale window on a body that cannot run in the background still gives a fallback.
    let window = if W::DETACHABLE {
        fresh.fail_safe_ms
    } else {
        fresh.fail_safe_ms.max(fresh.stale_ms)
    };
    let fallback = (now < times.expires_at.saturating_add(window)).then_some(Fallback {
        value,
        kept: Kept {
            shared,
            times,
            epoch,
        },
    });
    Later::Compute(work, fallback)
}

/// A value read from L2 past its TTL but kept there for its stale or fail-safe window: served
/// with a background refresh (stale-while-revalidate, the refresh continuing this leader's
/// flight), or kept as the fallback of the computation that follows. A hybrid cache also keeps it
/// in L1 as a stale entry, so the next local reads need no round trip.
#[allow(clippy::too_many_arguments)]
fn remote_stale<R, W: Work<R>>(
    store: &Arc<Store>,
    key: &KeyBuf,
    hash: u64,
    opts: &InsertOptions,
    fresh: &Freshness,
    work: W,
    hit: crate::store::RemoteHit<ValueOf<R, W>>,
    guard: &mut Option<LeaderGuard>,
    epoch: u64,
) -> Later<R, W, ValueOf<R, W>> {
    let stale_for = hit.stale_for.unwrap_or_default().as_millis() as u64;
    let now = store.memory.clock.now_ms();
    let expires_at = now.saturating_sub(stale_for);
    let times = Times {
        soft_at: expires_at,
        expires_at,
        keep_until: expires_at.saturating_add(fresh.keep_ms(hit.delta_ms)),
        delta_ms: hit.delta_ms,
    };
    if times.keep_until <= now {
        return Later::Compute(work, None);
    }
    let shared: Value = Arc::new(hit.value.clone());
    if W::DETACHABLE && stale_for < fresh.stale_ms {
        if store.tier.uses_memory() {
            // Kept to serve while its refresh runs, and like any L1 copy no longer than the L1
            // TTL: served from memory, it would otherwise stand for the whole stale window each
            // time the refresh fails, never looking at Redis, where a newer value may be.
            let keep_ms = times.keep_until - now;
            let keep_ms = store
                .l1_cap()
                .map_or(keep_ms, |l1| keep_ms.min(l1.as_millis() as u64));
            let stale_entry = InsertOptions {
                ttl: Some(Duration::ZERO),
                tags: opts.tags.clone(),
                epoch: Some(epoch),
                keep_ms,
                refresh: crate::RefreshAhead::Off,
                delta_ms: hit.delta_ms,
                now_ms: None,
                only_over: None,
            };
            store.memory.insert(
                key.as_str(),
                hash,
                typed::<ValueOf<R, W>>(&shared),
                stale_entry,
            );
        }
        store.memory.counters.stale_served.incr();
        note(Status::Stale);
        let out = work.strategy().rebuild(hit.value);
        // The leader's epoch was read before the remote read that found the value.
        let kept = Kept {
            shared,
            times,
            epoch,
        };
        // The callers that joined this read get the stale value now too: it is
        // stale-while-revalidate's answer to every concurrent caller, and the refresh's body may
        // take long.
        let guard = match guard.take() {
            Some(joined) => match hand_over::<ValueOf<R, W>>(store, key, hash, opts, &kept, joined)
            {
                Some(refresh) => Some(refresh),
                // Someone else computes it already.
                None => return Later::Served(out),
            },
            // A caller computing alone: its refresh joins when it runs.
            None => None,
        };
        let ctx = Background {
            store: store.clone(),
            key: key.clone(),
            hash,
            opts: opts.clone(),
            fresh: *fresh,
            guard,
            fallback: Some(kept),
            started: None,
            lock: None,
        };
        let _ = work.refresh_in_background(ctx);
        return Later::Served(out);
    }
    let window = if W::DETACHABLE {
        fresh.fail_safe_ms
    } else {
        fresh.fail_safe_ms.max(fresh.stale_ms)
    };
    let fallback = (stale_for < window).then_some(Fallback {
        value: hit.value,
        kept: Kept {
            shared,
            times,
            epoch,
        },
    });
    Later::Compute(work, fallback)
}

/// Settles a leader's flight with `kept`, the stale or fallback value its caller is answered
/// with, so that its followers get that answer now too instead of waiting for a body that goes
/// on in the background (they may have read no value of their own: on a cache whose values are
/// in Redis, only the leader reads it). Then claims a new flight for that body, so that callers
/// arriving meanwhile wait for it rather than run it again (as `serve_later` claims one before
/// spawning its refresh). `None` if another caller leads the key already.
fn hand_over<T: Clone + Send + Sync + 'static>(
    store: &Arc<Store>,
    key: &KeyBuf,
    hash: u64,
    opts: &InsertOptions,
    kept: &Kept,
    mut joined: LeaderGuard,
) -> Option<LeaderGuard> {
    joined.settle(kept.settles(store, key, hash, opts));
    match join::<T>(store, key, hash, &opts.tags, false, joined.flight.on_task) {
        Role::Lead(continued) => Some(continued),
        _ => None,
    }
}

/// How a body run ended.
enum BodyEnd<R> {
    Returned(R),
    Panicked(Box<dyn Any + Send>),
    SoftTimedOut,
    HardTimedOut(Duration),
}

/// Polls `body` inside its span, catching a panic, until it returns or a timeout passes. Timeouts
/// need tokio's timer: outside a tokio runtime they are not applied.
async fn run_body<F: Future + ?Sized>(
    body: &mut Pin<Box<F>>,
    (store, hash): (&Store, u64),
    span: &tracing::Span,
    soft: Option<Duration>,
    hard: Option<Duration>,
) -> BodyEnd<F::Output> {
    let timers =
        (soft.is_some() || hard.is_some()) && tokio::runtime::Handle::try_current().is_ok();
    let mut soft = soft
        .filter(|_| timers)
        .map(|d| Box::pin(tokio::time::sleep(d)));
    let mut hard = hard
        .filter(|_| timers)
        .map(|d| (d, Box::pin(tokio::time::sleep(d))));
    std::future::poll_fn(|cx| {
        let polled = {
            let _entered = span.enter();
            let _computing = computing::enter(store_id(store), hash);
            catch_unwind(AssertUnwindSafe(|| body.as_mut().poll(cx)))
        };
        match polled {
            Err(panic) => return Poll::Ready(BodyEnd::Panicked(panic)),
            Ok(Poll::Ready(out)) => return Poll::Ready(BodyEnd::Returned(out)),
            Ok(Poll::Pending) => {}
        }
        if let Some((after, sleep)) = hard.as_mut()
            && sleep.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(BodyEnd::HardTimedOut(*after));
        }
        if let Some(sleep) = soft.as_mut()
            && sleep.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(BodyEnd::SoftTimedOut);
        }
        Poll::Pending
    })
    .await
}

/// The miss path of [`get_or_compute`], kept out of line so the hit path stays small.
#[inline(never)]
pub(crate) async fn miss<R, J: Job<R>>(
    store: &Arc<Store>,
    key: &KeyBuf,
    hash: u64,
    plan: impl FnOnce() -> Plan,
    job: J,
    mut later: bool,
) -> R {
    let codec = job.strategy().codec();
    if store.remote.is_some() && codec.is_none() {
        warn_no_codec(store);
    }
    let codec = codec.as_ref().filter(|_| store.remote.is_some());
    let has_codec = codec.is_some();
    match store.get_local_only::<ValueOf<R, J>>(key.as_bytes(), hash, has_codec) {
        Lookup::Hit(v) => return job.strategy().rebuild(v),
        Lookup::Later => later = true,
        Lookup::Absent => {}
    }
    let Plan { opts, fresh } = plan();
    let (job, fallback) = if later {
        match serve_later(store, key, hash, &opts, &fresh, job, true) {
            Later::Served(out) => return out,
            Later::Compute(job, fallback) => (job, fallback),
        }
    } else {
        (job, None)
    };
    let local = store.keeps_local(has_codec);
    loop {
        match join::<ValueOf<R, J>>(store, key, hash, &opts.tags, local, true) {
            Role::Hit(v) => return job.strategy().rebuild(v),
            Role::Lead(guard) => {
                return lead(
                    store,
                    key,
                    hash,
                    opts,
                    &fresh,
                    job,
                    codec,
                    fallback,
                    Some(guard),
                )
                .await;
            }
            Role::Alone => {
                return lead(store, key, hash, opts, &fresh, job, codec, fallback, None).await;
            }
            Role::Follow(flight) => {
                store.memory.counters.coalesced.incr();
                let on_timeout = job.on_timeout();
                let limit = match &fallback {
                    Some(_) => fresh.soft_timeout.or(fresh.hard_timeout),
                    None => fresh.hard_timeout.filter(|_| on_timeout.is_some()),
                }
                .filter(|_| tokio::runtime::Handle::try_current().is_ok());
                let state = match limit {
                    Some(limit) => tokio::time::timeout(limit, flight.wait()).await.ok(),
                    None => Some(flight.wait().await),
                };
                match state {
                    None => {
                        let after = limit.unwrap_or_default();
                        match follower_timed_out(store, job.strategy(), on_timeout, after, fallback)
                        {
                            Ok(out) => return out,
                            Err(_) => unreachable!(
                                "a follower waits with a limit only when it can answer at it"
                            ),
                        }
                    }
                    Some(State::Done(value)) => match value.downcast_ref::<ValueOf<R, J>>() {
                        Some(v) => return job.strategy().rebuild(v.clone()),
                        // Same key, another type: another function shares this key template.
                        None => return job.into_parts().1.await,
                    },
                    Some(State::TimedOut) => {
                        let after = fresh.hard_timeout.unwrap_or_default();
                        match follower_timed_out(store, job.strategy(), on_timeout, after, fallback)
                        {
                            Ok(out) => return out,
                            Err(fallback) => {
                                return lead(
                                    store, key, hash, opts, &fresh, job, codec, fallback, None,
                                )
                                .await;
                            }
                        }
                    }
                    Some(State::Uncached | State::Unshared) => {
                        return lead(store, key, hash, opts, &fresh, job, codec, fallback, None)
                            .await;
                    }
                    Some(State::Abandoned | State::Running) => continue,
                }
            }
        }
    }
}

/// A follower's answer when its wait passed its timeout or its leader's body passed the hard
/// timeout: its fallback, or its timeout error; `Err` with the fallback when it has neither.
/// Either answer counts the call in `timeouts`, whichever timer ran out: a follower whose own
/// wait ran out and one told by its leader that the body passed the hard timeout are the same
/// kind of call.
fn follower_timed_out<R, S: Strategy<R>>(
    store: &Store,
    strategy: &S,
    on_timeout: Option<fn(TimedOut) -> R>,
    after: Duration,
    fallback: Option<Fallback<S::Value>>,
) -> Result<R, Option<Fallback<S::Value>>> {
    match (fallback, on_timeout) {
        (Some(fallback), _) => {
            store.memory.counters.timeouts.incr();
            store.memory.counters.stale_served.incr();
            note(Status::Stale);
            Ok(strategy.rebuild(fallback.value))
        }
        (None, Some(make)) => {
            store.memory.counters.timeouts.incr();
            Ok(make(TimedOut { after }))
        }
        (None, None) => Err(None),
    }
}

/// Loads from L2 or computes, as the leader (or a lone caller), and settles its flight.
#[allow(clippy::too_many_arguments)]
async fn lead<R, J: Job<R>>(
    store: &Arc<Store>,
    key: &KeyBuf,
    hash: u64,
    opts: InsertOptions,
    fresh: &Freshness,
    job: J,
    codec: Option<&Codec<ValueOf<R, J>>>,
    mut fallback: Option<Fallback<ValueOf<R, J>>>,
    mut guard: Option<LeaderGuard>,
) -> R {
    let epoch = store.memory.epochs.snapshot(hash, &opts.tags);
    let at = At {
        store,
        key,
        hash,
        fresh,
        epoch,
    };
    let mut job = job;
    // Distributed single flight: one instance computes, the others wait for its value. The lock
    // is held until the value is written (dropping it releases it).
    let mut lock: Option<FlightLock> = None;
    // How long the wait for another instance took, taken off the body's timeouts.
    let mut waited = Duration::ZERO;
    if let Some(codec) = codec {
        let hit = match store.take_preloaded(key.as_str(), hash, codec) {
            Some(hit) => Some(hit),
            // The remote tier's futures are boxed here and below: held inline, they made every
            // cached call's miss future (boxed by the caller, so moved whole) kilobytes larger,
            // memory-only caches included; one allocation beside a round trip costs nothing.
            None => Box::pin(store.get_remote(key.as_str(), codec)).await,
        };
        match at.use_remote_read(&opts, job, hit, &mut guard) {
            Later::Served(out) => return out,
            Later::Compute(work, kept) => {
                job = work;
                fallback = fallback.or(kept);
            }
        }
        // A caller with a fallback waits for another instance no longer than its soft timeout,
        // then answers with the fallback; and no caller waits past its hard timeout, which
        // bounds the whole call, not only the body.
        let soft_limit = fresh.soft_timeout.filter(|_| fallback.is_some());
        let hard_limit = fresh
            .hard_timeout
            .filter(|_| fallback.is_some() || job.on_timeout().is_some());
        let limit = match (soft_limit, hard_limit) {
            (Some(s), Some(h)) => Some(s.min(h)),
            (s, h) => s.or(h),
        };
        let wait_started = tokio::time::Instant::now();
        let wait = if computing::contains(store_id(store), hash) {
            // A body asking for its own key: the lock is its own outer call's.
            LockWait::Proceed
        } else {
            Box::pin(store.lock_or_wait(key.as_str(), (hash, &opts.tags), codec, limit)).await
        };
        match wait {
            LockWait::Appeared(hit, epoch) => {
                return At { epoch, ..at }.promote(&opts, job.strategy(), hit, &mut guard);
            }
            LockWait::Acquired(held) => lock = Some(held),
            LockWait::Proceed => {}
            LockWait::GaveUp => {
                store.memory.counters.timeouts.incr();
                if let Some(fallback) = fallback {
                    store.memory.counters.stale_served.incr();
                    note(Status::Stale);
                    if let Some(guard) = guard.as_mut() {
                        guard.settle(fallback.kept.settles(store, key, hash, &opts));
                    }
                    return job.strategy().rebuild(fallback.value);
                }
                // Only a hard timeout gives up without a fallback, and only with its answer.
                if let (Some(after), Some(make)) = (hard_limit, job.on_timeout()) {
                    tracing::warn!(cache = %store.name, key = key.as_str(), ?after, "cached function timed out waiting for another instance's value");
                    if let Some(guard) = guard.as_mut() {
                        guard.settle(State::TimedOut);
                    }
                    return make(TimedOut { after });
                }
            }
        }
        waited = wait_started.elapsed();
    }
    note(Status::Miss);
    let on_timeout = job.on_timeout();
    let (strategy, mut body) = job.into_parts();
    // What a wait for another instance's value used of the timeouts is not the body's to use.
    if !J::DETACHABLE && fresh.soft_timeout.is_some() && fallback.is_some() {
        warn_attached_background(store);
    }
    let soft = fresh
        .soft_timeout
        .filter(|_| fallback.is_some() && J::DETACHABLE)
        .map(|t| t.saturating_sub(waited));
    let hard = fresh
        .hard_timeout
        .filter(|_| fallback.is_some() || on_timeout.is_some())
        .map(|t| t.saturating_sub(waited));
    let (started_ms, started) = store.memory.clock.reading();
    let span = miss_span(store, key);
    let run = BodyRun::start(store, started);
    match run_body(&mut body, (store, hash), &span, soft, hard).await {
        BodyEnd::Returned(out) => {
            let ended_ms = run.ended();
            match at.take_returned(
                opts,
                &strategy,
                codec.is_some(),
                out,
                (started_ms, ended_ms),
                fallback,
                &mut guard,
            ) {
                Ok(outcome) => {
                    if codec.is_some() {
                        Box::pin(write_remote(store, key, codec, outcome.to_remote)).await;
                    }
                    drop(lock);
                    outcome.out
                }
                Err(answer) => answer,
            }
        }
        BodyEnd::Panicked(panic) => {
            run.ended();
            store.memory.counters.body_failures.incr();
            match fallback {
                Some(fallback) => at.fail_safe(&opts, &strategy, fallback, &mut guard, "panicked"),
                // The guard abandons the flight as it unwinds; a follower takes over.
                None => resume_unwind(panic),
            }
        }
        // The body goes on in the background, which times it when it ends.
        BodyEnd::SoftTimedOut => {
            run.handed_off();
            store.memory.counters.timeouts.incr();
            store.memory.counters.stale_served.incr();
            note(Status::FellBack);
            let Some(fallback) = fallback else {
                unreachable!("a soft timeout is set only with a fallback")
            };
            let out = strategy.rebuild(fallback.value);
            tracing::debug!(cache = %store.name, key = key.as_str(), "soft timeout: serving the stale value, the body finishes in the background");
            // Its followers get the fallback too. If another caller leads the key by now, the
            // body still goes on; it gives way when it finds that flight (see `background`).
            let guard = guard.and_then(|joined| {
                hand_over::<ValueOf<R, J>>(store, key, hash, &opts, &fallback.kept, joined)
            });
            let ctx = Background {
                store: store.clone(),
                key: key.clone(),
                hash,
                opts,
                fresh: *fresh,
                guard,
                fallback: Some(fallback.kept),
                started: Some((started_ms, started, epoch)),
                lock: lock.take(),
            };
            // Detachable: checked with the soft timeout above.
            let _ = J::finish_in_background(strategy, body, ctx);
            out
        }
        BodyEnd::HardTimedOut(after) => {
            // The configured timeout, of which a wait for another instance may have used part.
            let after = fresh.hard_timeout.unwrap_or(after);
            drop(body);
            run.ended();
            store.memory.counters.timeouts.incr();
            store.memory.counters.body_failures.incr();
            match (fallback, on_timeout) {
                (Some(fallback), _) => {
                    at.fail_safe(&opts, &strategy, fallback, &mut guard, "timed out")
                }
                (None, Some(make)) => {
                    tracing::warn!(cache = %store.name, key = key.as_str(), ?after, "cached function timed out");
                    if let Some(guard) = guard.as_mut() {
                        guard.settle(State::TimedOut);
                    }
                    make(TimedOut { after })
                }
                (None, None) => unreachable!("a hard timeout is set only when it can be answered"),
            }
        }
    }
}

/// Whether the entry a refresh was spawned for has been replaced since (by an earlier refresh
/// of the same entry, or any store). Reads in a burst each find the flight map empty until the
/// first refresh task runs, and spawn one each; without this, every late task would find the
/// first one's flight gone and run the body again for an entry already fresh.
fn refreshed_meanwhile(store: &Store, key: &KeyBuf, hash: u64, asked: Option<&Kept>) -> bool {
    let Some(asked) = asked else {
        return false;
    };
    store
        .memory
        .peek_kept(key.as_bytes(), hash)
        .is_some_and(|(_, now)| {
            (now.soft_at, now.expires_at) != (asked.times.soft_at, asked.times.expires_at)
        })
}

/// A body running in the background: a stale-while-revalidate or refresh-ahead refresh (which
/// leads its own flight, or does nothing if one is under way), or a leader's body continued past
/// its soft timeout (which settles that leader's flight). A failure keeps the old value as the
/// fail-safe value if the cache has a fail-safe window; it is logged, never raised.
pub(crate) async fn background<R, S: Strategy<R>, F: Future<Output = R>>(
    ctx: Background,
    strategy: S,
    mut body: Pin<Box<F>>,
) {
    let Background {
        store,
        key,
        hash,
        opts,
        fresh,
        guard,
        fallback,
        started,
        lock,
    } = ctx;
    let codec = strategy.codec();
    let codec = codec.as_ref().filter(|_| store.remote.is_some());
    let mut guard = match guard {
        Some(guard) => guard,
        // `false`: an entry refreshed ahead is still fresh, which is no reason to stop.
        None => match join::<S::Value>(&store, &key, hash, &opts.tags, false, true) {
            Role::Lead(guard) if !refreshed_meanwhile(&store, &key, hash, fallback.as_ref()) => {
                guard
            }
            // Someone else computes it, or has.
            _ => return,
        },
    };
    if started.is_none() {
        store.memory.counters.refreshes.incr();
    }
    let (started_ms, started, epoch) = started.unwrap_or_else(|| {
        let (started_ms, started) = store.memory.clock.reading();
        (
            started_ms,
            started,
            store.memory.epochs.snapshot(hash, &opts.tags),
        )
    });
    let hard = fresh
        .hard_timeout
        .map(|h| h.saturating_sub(started.elapsed()));
    let span = miss_span(&store, &key);
    let tags = opts.tags.clone();
    let run = BodyRun::start(&store, started);
    let end = run_body(&mut body, (&store, hash), &span, None, hard).await;
    let ended_ms = run.ended();
    let why = match end {
        BodyEnd::Returned(out) if !strategy.failed(&out) => {
            let outcome = keep_computed(
                &store,
                &key,
                hash,
                opts,
                &fresh,
                &strategy,
                codec.is_some(),
                out,
                started_ms,
                ended_ms,
                epoch,
            );
            outcome.settle(Some(&mut guard), &strategy);
            if outcome.answered_uncached() {
                drop_refreshed(&store, &key, hash, &tags, epoch).await;
            }
            write_remote(&store, &key, codec, outcome.to_remote).await;
            drop(lock);
            return;
        }
        BodyEnd::Returned(_) => "returned an error",
        BodyEnd::Panicked(_) => "panicked",
        // A body failure, not a call's timeout: `timeouts` counts calls, and a call that left
        // at its soft timeout was counted then.
        BodyEnd::HardTimedOut(_) | BodyEnd::SoftTimedOut => "timed out",
    };
    store.memory.counters.body_failures.incr();
    tracing::warn!(cache = %store.name, key = key.as_str(), why, "background refresh failed");
    match fallback {
        Some(kept) if fresh.fail_safe_ms > 0 => {
            keep_fallback::<S::Value>(&store, &key, hash, &opts, &fresh, kept, Some(&mut guard));
        }
        _ => guard.settle(State::Uncached),
    }
}

/// After a refresh whose answer is not cached (see [`Outcome::answered_uncached`]): the value it
/// refreshed is no longer the answer, so it is removed from every tier (and the other instances'
/// memory) rather than served stale, or as fresh until its TTL, after the refresh said otherwise.
/// Unless the key was invalidated or written since the refresh began: that dealt with it, and a
/// value written since is newer than the refresh.
async fn drop_refreshed(store: &Store, key: &KeyBuf, hash: u64, tags: &[Arc<str>], epoch: u64) {
    if store.memory.epochs.snapshot(hash, tags) == epoch {
        store.remove(key.as_str(), hash).await;
    }
}

/// [`background`] for a sync body, on its own thread.
pub(crate) fn background_blocking<R, S: Strategy<R>, F: FnOnce() -> R>(
    ctx: Background,
    strategy: &S,
    body: F,
) {
    let Background {
        store,
        key,
        hash,
        opts,
        fresh,
        guard,
        fallback,
        ..
    } = ctx;
    let codec = strategy.codec();
    let codec = codec.as_ref().filter(|_| store.remote.is_some());
    let mut guard = match guard {
        Some(guard) => guard,
        // `false`: an entry refreshed ahead is still fresh, which is no reason to stop.
        None => match join::<S::Value>(&store, &key, hash, &opts.tags, false, false) {
            Role::Lead(guard) if !refreshed_meanwhile(&store, &key, hash, fallback.as_ref()) => {
                guard
            }
            _ => return,
        },
    };
    store.memory.counters.refreshes.incr();
    let epoch = store.memory.epochs.snapshot(hash, &opts.tags);
    let tags = opts.tags.clone();
    let (started_ms, started) = store.memory.clock.reading();
    let ran = catch_unwind(AssertUnwindSafe(|| {
        let _computing = computing::enter(store_id(&store), hash);
        miss_span(&store, &key).in_scope(body)
    }));
    let ended_ms = body_ended(&store, started);
    let why = match ran {
        Ok(out) if !strategy.failed(&out) => {
            let outcome = keep_computed(
                &store,
                &key,
                hash,
                opts,
                &fresh,
                strategy,
                codec.is_some(),
                out,
                started_ms,
                ended_ms,
                epoch,
            );
            outcome.settle(Some(&mut guard), strategy);
            if outcome.answered_uncached() {
                let (store, key) = (store.clone(), key.clone());
                let remote = store.remote.is_some();
                run_sync(
                    async move { drop_refreshed(&store, &key, hash, &tags, epoch).await },
                    remote,
                );
            }
            write_remote_blocking(&store, &key, codec, outcome.to_remote);
            return;
        }
        Ok(_) => "returned an error",
        Err(_) => "panicked",
    };
    store.memory.counters.body_failures.incr();
    tracing::warn!(cache = %store.name, key = key.as_str(), why, "background refresh failed");
    match fallback {
        Some(kept) if fresh.fail_safe_ms > 0 => {
            keep_fallback::<S::Value>(&store, &key, hash, &opts, &fresh, kept, Some(&mut guard));
        }
        _ => guard.settle(State::Uncached),
    }
}

/// L2 read for a synchronous caller, on cache-core's I/O runtime.
fn get_remote_blocking<T: Send + Sync + 'static>(
    store: &Arc<Store>,
    key: &KeyBuf,
    codec: &Codec<T>,
) -> Option<crate::store::RemoteHit<T>> {
    let store = store.clone();
    let key = key.as_str().to_owned();
    let codec = *codec;
    run_blocking(async move { store.get_remote(&key, &codec).await }).flatten()
}

/// L2 write for a synchronous caller, on cache-core's I/O runtime.
fn write_remote_blocking<T: Send + Sync + 'static>(
    store: &Arc<Store>,
    key: &KeyBuf,
    codec: Option<&Codec<T>>,
    pending: Option<(T, InsertOptions, Duration)>,
) {
    let (Some(codec), Some((value, opts, took))) = (codec, pending) else {
        return;
    };
    let store = store.clone();
    let key = key.as_str().to_owned();
    let codec = *codec;
    run_blocking(async move {
        let _ = store
            .put_remote(&key, &value, &codec, &opts, took, RemoteWrite::Computed)
            .await;
    });
}

/// [`lead`] for synchronous bodies (no timeouts: a sync body cannot be interrupted).
#[allow(clippy::too_many_arguments)]
fn lead_blocking<R, J: SyncJob<R>>(
    store: &Arc<Store>,
    key: &KeyBuf,
    hash: u64,
    opts: InsertOptions,
    fresh: &Freshness,
    job: J,
    codec: Option<&Codec<ValueOf<R, J>>>,
    mut fallback: Option<Fallback<ValueOf<R, J>>>,
    mut guard: Option<LeaderGuard>,
) -> R {
    let epoch = store.memory.epochs.snapshot(hash, &opts.tags);
    let at = At {
        store,
        key,
        hash,
        fresh,
        epoch,
    };
    let mut job = job;
    let mut lock: Option<FlightLock> = None;
    if let Some(codec) = codec {
        let hit = match store.take_preloaded(key.as_str(), hash, codec) {
            Some(hit) => Some(hit),
            None => get_remote_blocking(store, key, codec),
        };
        match at.use_remote_read(&opts, job, hit, &mut guard) {
            Later::Served(out) => return out,
            Later::Compute(work, kept) => {
                job = work;
                fallback = fallback.or(kept);
            }
        }
        // A body asking for its own key: the lock is its own outer call's.
        let wait = if computing::contains(store_id(store), hash) {
            LockWait::Proceed
        } else {
            lock_or_wait_blocking(store, key, (hash, &opts.tags), codec)
        };
        match wait {
            LockWait::Appeared(hit, epoch) => {
                return At { epoch, ..at }.promote(&opts, job.strategy(), hit, &mut guard);
            }
            LockWait::Acquired(held) => lock = Some(held),
            LockWait::Proceed | LockWait::GaveUp => {}
        }
    }
    note(Status::Miss);
    let (strategy, body) = job.into_parts();
    let (started_ms, started) = store.memory.clock.reading();
    let span = miss_span(store, key);
    let ran = catch_unwind(AssertUnwindSafe(|| {
        let _computing = computing::enter(store_id(store), hash);
        span.in_scope(body)
    }));
    let ended_ms = body_ended(store, started);
    let out = match ran {
        Ok(out) => out,
        Err(panic) => {
            store.memory.counters.body_failures.incr();
            return match fallback {
                Some(fallback) => at.fail_safe(&opts, &strategy, fallback, &mut guard, "panicked"),
                None => resume_unwind(panic),
            };
        }
    };
    match at.take_returned(
        opts,
        &strategy,
        codec.is_some(),
        out,
        (started_ms, ended_ms),
        fallback,
        &mut guard,
    ) {
        Ok(outcome) => {
            write_remote_blocking(store, key, codec, outcome.to_remote);
            drop(lock);
            outcome.out
        }
        Err(answer) => answer,
    }
}

/// [`Store::lock_or_wait`] for a synchronous caller, on cache-core's I/O runtime.
fn lock_or_wait_blocking<T: Send + Sync + 'static>(
    store: &Arc<Store>,
    key: &KeyBuf,
    (hash, tags): (u64, &[Arc<str>]),
    codec: &Codec<T>,
) -> LockWait<T> {
    let store = store.clone();
    let key = key.as_str().to_owned();
    let tags = tags.to_vec();
    let codec = *codec;
    run_blocking(async move { store.lock_or_wait(&key, (hash, &tags), &codec, None).await })
        .unwrap_or(LockWait::Proceed)
}

/// [`get_or_compute`] for synchronous bodies: followers block their thread.
#[inline(always)]
pub(crate) fn get_or_compute_blocking<R, J: SyncJob<R>>(
    store: &Arc<Store>,
    key: &KeyBuf,
    plan: impl FnOnce() -> Plan,
    job: J,
) -> R {
    let later = return_hit_or_later!(store, key, job);
    miss_blocking(store, key, later.hash, plan, job, later.later)
}

/// The miss path of [`get_or_compute_blocking`], out of line.
#[inline(never)]
fn miss_blocking<R, J: SyncJob<R>>(
    store: &Arc<Store>,
    key: &KeyBuf,
    hash: u64,
    plan: impl FnOnce() -> Plan,
    job: J,
    mut later: bool,
) -> R {
    let codec = job.strategy().codec();
    if store.remote.is_some() && codec.is_none() {
        warn_no_codec(store);
    }
    let codec = codec.as_ref().filter(|_| store.remote.is_some());
    let has_codec = codec.is_some();
    match store.get_local_only::<ValueOf<R, J>>(key.as_bytes(), hash, has_codec) {
        Lookup::Hit(v) => return job.strategy().rebuild(v),
        Lookup::Later => later = true,
        Lookup::Absent => {}
    }
    let Plan { opts, fresh } = plan();
    let (job, fallback) = if later {
        match serve_later(store, key, hash, &opts, &fresh, job, false) {
            Later::Served(out) => return out,
            Later::Compute(job, fallback) => (job, fallback),
        }
    } else {
        (job, None)
    };
    let local = store.keeps_local(has_codec);
    loop {
        match join::<ValueOf<R, J>>(store, key, hash, &opts.tags, local, false) {
            Role::Hit(v) => return job.strategy().rebuild(v),
            Role::Lead(guard) => {
                return lead_blocking(
                    store,
                    key,
                    hash,
                    opts,
                    &fresh,
                    job,
                    codec,
                    fallback,
                    Some(guard),
                );
            }
            Role::Alone => {
                return lead_blocking(store, key, hash, opts, &fresh, job, codec, fallback, None);
            }
            // A blocking caller on a current-thread runtime cannot wait for a leader: the leader
            // may be an async task of this very thread, which cannot run while it waits (a
            // deadlock, not a delay). Nor can one on a multi-thread runtime wait for a leader
            // that is a task: blocked callers may hold every worker (or the worker whose
            // next-task slot, which others cannot steal, holds the leader), and the leader then
            // never runs. It computes on its own instead.
            Role::Follow(flight)
                if on_current_thread_runtime()
                    || (flight.on_task && tokio::runtime::Handle::try_current().is_ok()) =>
            {
                return lead_blocking(store, key, hash, opts, &fresh, job, codec, fallback, None);
            }
            Role::Follow(flight) => {
                store.memory.counters.coalesced.incr();
                match flight.wait_blocking() {
                    State::Done(value) => match value.downcast_ref::<ValueOf<R, J>>() {
                        Some(v) => return job.strategy().rebuild(v.clone()),
                        None => return (job.into_parts().1)(),
                    },
                    State::Uncached | State::Unshared | State::TimedOut => {
                        return lead_blocking(
                            store, key, hash, opts, &fresh, job, codec, fallback, None,
                        );
                    }
                    State::Abandoned | State::Running => continue,
                }
            }
        }
    }
}
