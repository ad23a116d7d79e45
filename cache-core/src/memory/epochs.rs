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
    slots: Box<[AtomicU64]>,
}

impl Default for Epochs {
    fn default() -> Self {
        Epochs {
            all: AtomicU64::new(0),
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
    }

    pub(crate) fn bump_tag(&self, tag: &str) {
        self.slots[tag_slot(tag)].fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn bump_all(&self) {
        self.all.fetch_add(1, Ordering::SeqCst);
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
