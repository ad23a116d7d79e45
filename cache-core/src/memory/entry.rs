//! One stored value with the metadata the memory tier needs to serve, expire and evict it.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::Eviction;

/// A type-erased value. Typed on the way in and out, so a memory hit never deserializes.
pub(crate) type Value = Arc<dyn Any + Send + Sync>;

/// `expires_at` of an entry that never expires.
pub(crate) const NEVER: u64 = u64::MAX;

pub(crate) struct Entry {
    /// The logical key, compared on every hit so a 64-bit hash collision is only a miss.
    pub(crate) key: Box<str>,
    pub(crate) value: Value,
    /// Clock milliseconds after which the entry is dead, or [`NEVER`].
    pub(crate) expires_at: u64,
    /// Distinguishes this entry from an earlier one under the same hash in the eviction queue,
    /// the expiry heap and the tag index, whose records are never updated in place.
    pub(crate) id: u64,
    pub(crate) weight: u64,
    /// Eviction metadata: the reference bit (LRU), the access count (LFU) or the 0..=3
    /// frequency (S3-FIFO). Bumped on hits without a lock.
    pub(crate) freq: AtomicU8,
    pub(crate) tags: Box<[Arc<str>]>,
}

impl Entry {
    #[inline]
    pub(crate) fn is_live(&self, now_ms: u64) -> bool {
        self.expires_at > now_ms
    }

    /// Records an access. Reads before writing so that a hot entry's cache line is not written on
    /// every hit from every core.
    #[inline]
    pub(crate) fn touch(&self, eviction: Eviction) {
        let cap = match eviction {
            Eviction::Lru => 1,
            Eviction::Lfu => u8::MAX,
            Eviction::S3Fifo => 3,
        };
        let f = self.freq.load(Ordering::Relaxed);
        if f < cap {
            self.freq.store(f + 1, Ordering::Relaxed);
        }
    }
}
