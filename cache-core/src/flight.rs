//! Per-key single flight: concurrent misses of one key run the body once.
//!
//! The first caller to miss becomes the *leader* and registers a [`Flight`]; later callers of the
//! same key *follow* it and wait for its value. No lock is held while the body runs, so other keys
//! never wait and a recursive cached function does not deadlock on itself.
//!
//! When the leader cannot deliver a value — its future was dropped (axum drops handlers of
//! disconnected clients), its body panicked, or its outcome is not cached (`Err`, `None`) — the
//! [`LeaderGuard`] marks the flight so its followers do not hang: after an abandoned flight they
//! start over and one of them leads; after an uncached outcome each runs the body itself, because
//! a value that was not cached cannot be shared (an `E` need not be `Clone`).

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Condvar, Mutex};

use dashmap::mapref::entry::Entry as MapEntry;

use crate::key::KeyBuf;
use crate::memory::{HashKeyed, InsertOptions, MemoryStore, Value};
use crate::outcome::Strategy;

pub(crate) type Flights = HashKeyed<Arc<Flight>>;

#[derive(Clone)]
enum State {
    Running,
    Done(Value),
    /// The leader finished with an outcome that is not cached.
    Uncached,
    /// The leader was cancelled or panicked.
    Abandoned,
}

pub(crate) struct Flight {
    key: Box<[u8]>,
    state: Mutex<State>,
    notify: tokio::sync::Notify,
    condvar: Condvar,
}

impl Flight {
    fn new(key: &[u8]) -> Self {
        Flight {
            key: key.into(),
            state: Mutex::new(State::Running),
            notify: tokio::sync::Notify::new(),
            condvar: Condvar::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn wait(&self) -> State {
        loop {
            let mut notified = pin!(self.notify.notified());
            notified.as_mut().enable();
            let state = self.state().clone();
            if !matches!(state, State::Running) {
                return state;
            }
            notified.await;
        }
    }

    fn wait_blocking(&self) -> State {
        let mut state = self.state();
        while matches!(*state, State::Running) {
            state = self.condvar.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.clone()
    }
}

/// Held by the leader while its body runs; settles the flight however the leader ends.
struct LeaderGuard<'a> {
    store: &'a MemoryStore,
    hash: u64,
    flight: Arc<Flight>,
    settled: bool,
}

impl LeaderGuard<'_> {
    fn settle(&mut self, state: State) {
        self.settled = true;
        *self.flight.state() = state;
        self.store
            .flights
            .remove_if(&self.hash, |_, f| Arc::ptr_eq(f, &self.flight));
        self.flight.notify.notify_waiters();
        self.flight.condvar.notify_all();
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
    store: &'a MemoryStore,
    key: &KeyBuf,
    hash: u64,
) -> Role<'a, T> {
    let flight = match store.flights.entry(hash) {
        MapEntry::Occupied(o) if &*o.get().key == key.as_bytes() => {
            return Role::Follow(o.get().clone());
        }
        MapEntry::Occupied(_) => return Role::Alone,
        MapEntry::Vacant(v) => {
            let flight = Arc::new(Flight::new(key.as_bytes()));
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
    if let Some(value) = store.peek_value(key.as_bytes(), hash) {
        if let Some(v) = value.downcast_ref::<T>() {
            let v = v.clone();
            guard.settle(State::Done(value));
            return Role::Hit(v);
        }
    }
    Role::Lead(guard)
}

/// Stores the cacheable part of `out` and returns the state to hand followers.
fn store_outcome<R, S: Strategy<R>>(
    store: &MemoryStore,
    key: &KeyBuf,
    hash: u64,
    opts: InsertOptions,
    strategy: &S,
    out: &R,
) -> State {
    match strategy.cacheable(out) {
        Some(v) => {
            let value: Value = Arc::new(v);
            store.insert(key.as_str(), hash, value.clone(), opts);
            State::Done(value)
        }
        None => State::Uncached,
    }
}

/// Reads `key`, or computes it with `body` once across concurrent callers.
pub(crate) async fn get_or_compute<R, S, Fut>(
    store: &MemoryStore,
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
    if let Some(v) = store.get::<S::Value>(key.as_bytes(), hash) {
        return strategy.rebuild(v);
    }
    loop {
        match join::<S::Value>(store, key, hash) {
            Role::Hit(v) => return strategy.rebuild(v),
            Role::Lead(mut guard) => {
                let out = body.await;
                let state = store_outcome(store, key, hash, opts(), strategy, &out);
                guard.settle(state);
                return out;
            }
            Role::Alone => {
                let out = body.await;
                store_outcome(store, key, hash, opts(), strategy, &out);
                return out;
            }
            Role::Follow(flight) => {
                store.counters.coalesced.incr();
                match flight.wait().await {
                    State::Done(value) => match value.downcast_ref::<S::Value>() {
                        Some(v) => return strategy.rebuild(v.clone()),
                        // Same key, another type: another function shares this key template.
                        None => return body.await,
                    },
                    State::Uncached => {
                        let out = body.await;
                        store_outcome(store, key, hash, opts(), strategy, &out);
                        return out;
                    }
                    State::Abandoned | State::Running => continue,
                }
            }
        }
    }
}

/// [`get_or_compute`] for synchronous bodies: followers block their thread.
pub(crate) fn get_or_compute_blocking<R, S, F>(
    store: &MemoryStore,
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
    if let Some(v) = store.get::<S::Value>(key.as_bytes(), hash) {
        return strategy.rebuild(v);
    }
    loop {
        match join::<S::Value>(store, key, hash) {
            Role::Hit(v) => return strategy.rebuild(v),
            Role::Lead(mut guard) => {
                let out = body();
                let state = store_outcome(store, key, hash, opts(), strategy, &out);
                guard.settle(state);
                return out;
            }
            Role::Alone => {
                let out = body();
                store_outcome(store, key, hash, opts(), strategy, &out);
                return out;
            }
            Role::Follow(flight) => {
                store.counters.coalesced.incr();
                match flight.wait_blocking() {
                    State::Done(value) => match value.downcast_ref::<S::Value>() {
                        Some(v) => return strategy.rebuild(v.clone()),
                        None => return body(),
                    },
                    State::Uncached => {
                        let out = body();
                        store_outcome(store, key, hash, opts(), strategy, &out);
                        return out;
                    }
                    State::Abandoned | State::Running => continue,
                }
            }
        }
    }
}
