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

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use dashmap::mapref::entry::Entry as MapEntry;

use crate::key::KeyBuf;
use crate::memory::{HashKeyed, InsertOptions, Value};
use crate::outcome::Strategy;
use crate::remote::codec::Codec;
use crate::remote::run_blocking;
use crate::store::Store;

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
    /// The cache's flight generation when the leader started; see `join`.
    generation: u64,
    slot: Mutex<Slot>,
    notify: tokio::sync::Notify,
    condvar: Condvar,
}

impl Flight {
    fn new(key: &[u8], generation: u64) -> Self {
        Flight {
            key: FlightKey::new(key),
            generation,
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

/// Held by the leader while it loads or computes; settles the flight however the leader ends.
struct LeaderGuard<'a> {
    store: &'a Store,
    hash: u64,
    flight: Arc<Flight>,
    settled: bool,
}

impl LeaderGuard<'_> {
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

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.settle(State::Abandoned);
        }
    }
}

/// What a caller that missed does next.
enum Role<'a, T> {
    /// The value appeared meanwhile.
    Hit(T),
    Lead(LeaderGuard<'a>),
    Follow(Arc<Flight>),
    /// Another key with the same 64-bit hash is in flight: run without coalescing.
    Alone,
}

fn join<'a, T: Clone + Send + Sync + 'static>(
    store: &'a Store,
    key: &KeyBuf,
    hash: u64,
    local: bool,
) -> Role<'a, T> {
    let generation = store.memory.epochs.flight_generation();
    let flight = match store.flights.entry(hash) {
        // A flight that started before an invalidation of this cache may bring a value older
        // than it: a caller arriving after the invalidation does not wait for that value but
        // leads a new flight in its place (the old leader's followers keep theirs).
        MapEntry::Occupied(mut o) if o.get().key.as_bytes() == key.as_bytes() => {
            if o.get().generation == generation {
                return Role::Follow(o.get().clone());
            }
            let flight = Arc::new(Flight::new(key.as_bytes(), generation));
            o.insert(flight.clone());
            flight
        }
        MapEntry::Occupied(_) => return Role::Alone,
        MapEntry::Vacant(v) => {
            let flight = Arc::new(Flight::new(key.as_bytes(), generation));
            v.insert(flight.clone());
            flight
        }
    };
    let mut guard = LeaderGuard {
        store,
        hash,
        flight,
        settled: false,
    };
    // A leader that finished between our lookup and our registration has stored its value.
    if local {
        if let Some(value) = store.memory.peek_value(key.as_bytes(), hash) {
            if let Some(v) = value.downcast_ref::<T>() {
                let v = v.clone();
                guard.settle(State::Done(value));
                return Role::Hit(v);
            }
        }
    }
    Role::Lead(guard)
}

/// The span a body runs in: which cache, which key, and that it was a miss. At `debug` level, so
/// it costs one interest check when disabled.
fn miss_span(store: &Store, key: &KeyBuf) -> tracing::Span {
    tracing::debug_span!("cached", cache = %store.name, key = key.as_str(), outcome = "miss")
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
    /// The cacheable part of `out`, copied only if someone waits (a remote-only cache keeps no
    /// copy in memory, so a lone caller pays for none).
    FromOut,
    /// Nothing: the outcome is not cached.
    Nothing,
    /// Nothing, and followers start over: the value straddles an invalidation.
    Retry,
}

impl<R, T: Clone + Send + Sync + 'static> Outcome<R, T> {
    /// The state the flight settles in.
    fn state<S: Strategy<R, Value = T>>(&self, strategy: &S, waiting: bool) -> State {
        match &self.share {
            Share::Value(v) => State::Done(v.clone()),
            Share::FromOut if waiting => {
                // A computed value is at hand (it is about to be written); a promoted one is
                // taken from the answer.
                let value = match &self.to_remote {
                    Some((v, ..)) => Some(v.clone()),
                    None => strategy.cacheable(&self.out),
                };
                value.map_or(State::Uncached, |v| State::Done(Arc::new(v)))
            }
            Share::FromOut => State::Unshared,
            Share::Nothing => State::Uncached,
            Share::Retry => State::Abandoned,
        }
    }
}

/// Stores the cacheable part of a computed `out` in L1 and returns what followers get. A value
/// without a codec stays in L1 even in a remote-only cache ([`Store::keeps_local`]).
#[allow(clippy::too_many_arguments)]
fn keep_computed<R, S: Strategy<R>>(
    store: &Store,
    key: &KeyBuf,
    hash: u64,
    mut opts: InsertOptions,
    strategy: &S,
    has_codec: bool,
    out: R,
    took: Duration,
    epoch: u64,
) -> Outcome<R, S::Value> {
    store.memory.counters.body_latency.record(took);
    match strategy.cacheable(&out) {
        Some(v) => {
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
                    to_remote: Some((v, opts, took)),
                };
            }
            let (value, to_remote): (Value, _) = if to_remote {
                (Arc::new(v.clone()), Some((v, opts.clone(), took)))
            } else {
                (Arc::new(v), None)
            };
            let stored = if has_codec {
                store.put_local(key.as_str(), hash, value.clone(), opts)
            } else {
                store.put_local_only(key.as_str(), hash, value.clone(), opts)
            };
            if !stored {
                return straddled(store, key, out);
            }
            Outcome {
                out,
                share: Share::Value(value),
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
fn keep_promoted<R, S: Strategy<R>>(
    store: &Store,
    key: &KeyBuf,
    hash: u64,
    mut opts: InsertOptions,
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
    let value: Value = Arc::new(hit.value.clone());
    opts.ttl = hit.remaining;
    opts.epoch = Some(epoch);
    if !store.put_local(key.as_str(), hash, value.clone(), opts) {
        return straddled(store, key, strategy.rebuild(hit.value));
    }
    Outcome {
        out: strategy.rebuild(hit.value),
        share: Share::Value(value),
        to_remote: None,
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

fn warn_no_codec(store: &Store) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            cache = %store.name,
            "a cached value type is not serde-serializable, so it is kept in memory only although the cache has a remote tier"
        );
    });
}

/// Loads from L2 or computes, as the leader (or a lone caller).
async fn load_or_compute<R, S, Fut>(
    store: &Store,
    key: &KeyBuf,
    hash: u64,
    opts: InsertOptions,
    strategy: &S,
    codec: Option<&Codec<S::Value>>,
    body: Fut,
) -> Outcome<R, S::Value>
where
    S: Strategy<R>,
    Fut: Future<Output = R>,
{
    let epoch = store.memory.epochs.snapshot(hash, &opts.tags);
    if let Some(codec) = codec {
        if let Some(hit) = store.take_preloaded(key.as_str(), hash, codec) {
            return keep_promoted(store, key, hash, opts, strategy, hit, epoch);
        }
        if let Some(hit) = store.get_remote(key.as_str(), codec).await {
            return keep_promoted(store, key, hash, opts, strategy, hit, epoch);
        }
    }
    let started = Instant::now();
    let out = tracing::Instrument::instrument(body, miss_span(store, key)).await;
    let has_codec = codec.is_some();
    keep_computed(
        store,
        key,
        hash,
        opts,
        strategy,
        has_codec,
        out,
        started.elapsed(),
        epoch,
    )
}

async fn write_remote<T>(
    store: &Store,
    key: &KeyBuf,
    codec: Option<&Codec<T>>,
    pending: Option<(T, InsertOptions, Duration)>,
) {
    if let (Some(codec), Some((value, opts, took))) = (codec, pending) {
        store
            .put_remote(key.as_str(), &value, codec, &opts, took)
            .await;
    }
}

/// Reads `key`, or computes it with `body` once across concurrent callers.
#[inline(always)]
pub(crate) async fn get_or_compute<R, S, Fut>(
    store: &Store,
    key: &KeyBuf,
    opts: impl FnOnce() -> InsertOptions,
    strategy: &S,
    body: Fut,
) -> R
where
    S: Strategy<R>,
    Fut: Future<Output = R>,
{
    let hash = key.lookup_hash();
    if let Some(v) = store.get_local::<S::Value>(key.as_bytes(), hash) {
        // Rebuilt before the event, so the value is built where it is returned instead of being
        // moved (150+ bytes for a typical row) across the call into tracing.
        let out = strategy.rebuild(v);
        tracing::trace!(cache = %store.name, outcome = "hit", "cached call");
        return out;
    }
    // Boxed so the caller's future holds a pointer rather than the whole miss state machine
    // (single flight, L2 read, body, L2 write): a hit then builds and moves a small future.
    Box::pin(miss(store, key, hash, opts, strategy, body)).await
}

/// The miss path of [`get_or_compute`], kept out of line so the hit path stays small.
#[inline(never)]
async fn miss<R, S, Fut>(
    store: &Store,
    key: &KeyBuf,
    hash: u64,
    opts: impl FnOnce() -> InsertOptions,
    strategy: &S,
    body: Fut,
) -> R
where
    S: Strategy<R>,
    Fut: Future<Output = R>,
{
    let codec = strategy.codec();
    if store.remote.is_some() && codec.is_none() {
        warn_no_codec(store);
    }
    let codec = codec.as_ref().filter(|_| store.remote.is_some());
    let has_codec = codec.is_some();
    if let Some(v) = store.get_local_only::<S::Value>(key.as_bytes(), hash, has_codec) {
        return strategy.rebuild(v);
    }
    let local = store.keeps_local(has_codec);
    loop {
        match join::<S::Value>(store, key, hash, local) {
            Role::Hit(v) => return strategy.rebuild(v),
            Role::Lead(mut guard) => {
                let outcome =
                    load_or_compute(store, key, hash, opts(), strategy, codec, body).await;
                // Followers get the value before the remote write's round trip.
                guard.settle_with(|waiting| outcome.state(strategy, waiting));
                write_remote(store, key, codec, outcome.to_remote).await;
                return outcome.out;
            }
            Role::Alone => {
                let outcome =
                    load_or_compute(store, key, hash, opts(), strategy, codec, body).await;
                write_remote(store, key, codec, outcome.to_remote).await;
                return outcome.out;
            }
            Role::Follow(flight) => {
                store.memory.counters.coalesced.incr();
                match flight.wait().await {
                    State::Done(value) => match value.downcast_ref::<S::Value>() {
                        Some(v) => return strategy.rebuild(v.clone()),
                        // Same key, another type: another function shares this key template.
                        None => return body.await,
                    },
                    State::Uncached | State::Unshared => {
                        let outcome =
                            load_or_compute(store, key, hash, opts(), strategy, codec, body).await;
                        write_remote(store, key, codec, outcome.to_remote).await;
                        return outcome.out;
                    }
                    State::Abandoned | State::Running => continue,
                }
            }
        }
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
    run_blocking(async move { store.put_remote(&key, &value, &codec, &opts, took).await });
}

fn load_or_compute_blocking<R, S, F>(
    store: &Arc<Store>,
    key: &KeyBuf,
    hash: u64,
    opts: InsertOptions,
    strategy: &S,
    codec: Option<&Codec<S::Value>>,
    body: F,
) -> Outcome<R, S::Value>
where
    S: Strategy<R>,
    F: FnOnce() -> R,
{
    let epoch = store.memory.epochs.snapshot(hash, &opts.tags);
    if let Some(codec) = codec {
        if let Some(hit) = store.take_preloaded(key.as_str(), hash, codec) {
            return keep_promoted(store, key, hash, opts, strategy, hit, epoch);
        }
        if let Some(hit) = get_remote_blocking(store, key, codec) {
            return keep_promoted(store, key, hash, opts, strategy, hit, epoch);
        }
    }
    let started = Instant::now();
    let out = miss_span(store, key).in_scope(body);
    let has_codec = codec.is_some();
    keep_computed(
        store,
        key,
        hash,
        opts,
        strategy,
        has_codec,
        out,
        started.elapsed(),
        epoch,
    )
}

/// [`get_or_compute`] for synchronous bodies: followers block their thread.
#[inline(always)]
pub(crate) fn get_or_compute_blocking<R, S, F>(
    store: &Arc<Store>,
    key: &KeyBuf,
    opts: impl FnOnce() -> InsertOptions,
    strategy: &S,
    body: F,
) -> R
where
    S: Strategy<R>,
    F: FnOnce() -> R,
{
    let hash = key.lookup_hash();
    if let Some(v) = store.get_local::<S::Value>(key.as_bytes(), hash) {
        // Rebuilt before the event, so the value is built where it is returned instead of being
        // moved (150+ bytes for a typical row) across the call into tracing.
        let out = strategy.rebuild(v);
        tracing::trace!(cache = %store.name, outcome = "hit", "cached call");
        return out;
    }
    miss_blocking(store, key, hash, opts, strategy, body)
}

/// The miss path of [`get_or_compute_blocking`], out of line.
#[inline(never)]
fn miss_blocking<R, S, F>(
    store: &Arc<Store>,
    key: &KeyBuf,
    hash: u64,
    opts: impl FnOnce() -> InsertOptions,
    strategy: &S,
    body: F,
) -> R
where
    S: Strategy<R>,
    F: FnOnce() -> R,
{
    let codec = strategy.codec();
    if store.remote.is_some() && codec.is_none() {
        warn_no_codec(store);
    }
    let codec = codec.as_ref().filter(|_| store.remote.is_some());
    let has_codec = codec.is_some();
    if let Some(v) = store.get_local_only::<S::Value>(key.as_bytes(), hash, has_codec) {
        return strategy.rebuild(v);
    }
    let local = store.keeps_local(has_codec);
    loop {
        match join::<S::Value>(store, key, hash, local) {
            Role::Hit(v) => return strategy.rebuild(v),
            Role::Lead(mut guard) => {
                let outcome =
                    load_or_compute_blocking(store, key, hash, opts(), strategy, codec, body);
                guard.settle_with(|waiting| outcome.state(strategy, waiting));
                write_remote_blocking(store, key, codec, outcome.to_remote);
                return outcome.out;
            }
            Role::Alone => {
                let outcome =
                    load_or_compute_blocking(store, key, hash, opts(), strategy, codec, body);
                write_remote_blocking(store, key, codec, outcome.to_remote);
                return outcome.out;
            }
            Role::Follow(flight) => {
                store.memory.counters.coalesced.incr();
                match flight.wait_blocking() {
                    State::Done(value) => match value.downcast_ref::<S::Value>() {
                        Some(v) => return strategy.rebuild(v.clone()),
                        None => return body(),
                    },
                    State::Uncached | State::Unshared => {
                        let outcome = load_or_compute_blocking(
                            store,
                            key,
                            hash,
                            opts(),
                            strategy,
                            codec,
                            body,
                        );
                        write_remote_blocking(store, key, codec, outcome.to_remote);
                        return outcome.out;
                    }
                    State::Abandoned | State::Running => continue,
                }
            }
        }
    }
}
