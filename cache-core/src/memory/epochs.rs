//! Invalidation epochs: what lets a computation that overlapped an invalidation know it did.
//!
//! A leader that starts computing key K (or reading it from the remote tier) before an
//! invalidation of K and finishes after it holds a value that may predate the invalidation.
//! Storing it would let later readers see data older than an invalidation that already returned.
//! So a computation notes the epochs of its key, of its tags, and of the whole cache when it
//! starts, and stores its value only if none moved; the value still goes back to its callers
//! (they were concurrent with the invalidation, so either answer is correct for them).
//!
//! Epochs are 1,024 counters indexed by a hash of the key or tag (a collision only skips a store)
//! plus one for the whole cache (patterns, clears). They only grow, so a sum of them changes
//! exactly when one of them did.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const SLOTS: usize = 1024;

pub(crate) struct Epochs {
    all: AtomicU64,
    /// Bumped by every invalidation of the cache: a single flight started under an older
    /// generation may hold a value from before an invalidation, so a caller arriving later does
    /// not join it (see `flight::join`).
    flights: AtomicU64,
    slots: Box<[AtomicU64]>,
}

impl Default for Epochs {
    fn default() -> Self {
        Epochs {
            all: AtomicU64::new(0),
            flights: AtomicU64::new(0),
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn tag_slot(tag: &str) -> usize {
    // Seeded apart from key hashes, so a tag and a key rarely share a slot.
    (xxhash_rust::xxh3::xxh3_64_with_seed(tag.as_bytes(), 0x7a67) as usize) % SLOTS
}

impl Epochs {
    pub(crate) fn bump_key(&self, hash: u64) {
        self.slots[hash as usize % SLOTS].fetch_add(1, Ordering::SeqCst);
        self.flights.fetch_add(1, Ordering::SeqCst);
    }

    /// For an overwrite (`Cache::set`): computations of the key under way no longer store, but
    /// the flight generation stays, since callers of other keys have no reason not to join their
    /// flights, and callers of this key find the new value in memory.
    pub(crate) fn bump_key_for_overwrite(&self, hash: u64) {
        self.slots[hash as usize % SLOTS].fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn bump_tag(&self, tag: &str) {
        self.slots[tag_slot(tag)].fetch_add(1, Ordering::SeqCst);
        self.flights.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn bump_all(&self) {
        self.all.fetch_add(1, Ordering::SeqCst);
        self.flights.fetch_add(1, Ordering::SeqCst);
    }

    /// The flight generation: how many invalidations the cache has seen.
    pub(crate) fn flight_generation(&self) -> u64 {
        self.flights.load(Ordering::SeqCst)
    }

    /// The epochs a value for `hash` with `tags` depends on, summed.
    pub(crate) fn snapshot(&self, hash: u64, tags: &[Arc<str>]) -> u64 {
        let mut sum = self.all.load(Ordering::SeqCst);
        sum = sum.wrapping_add(self.slots[hash as usize % SLOTS].load(Ordering::SeqCst));
        for tag in tags {
            sum = sum.wrapping_add(self.slots[tag_slot(tag)].load(Ordering::SeqCst));
        }
        sum
    }
}
