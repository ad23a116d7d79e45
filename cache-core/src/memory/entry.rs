//! One stored value with the metadata the memory tier needs to serve, expire and evict it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use super::value::StoredValue;
use crate::Eviction;

/// `expires_at` of an entry that never expires.
pub(crate) const NEVER: u64 = u64::MAX;

/// One stored value, inline in `N` bytes when its type fits (see `value.rs`). Laid out for the
/// hit path: what a hit reads (key, `soft_at`, `freq`, the value's type: the first 64 bytes)
/// comes first, then the value, then what only writers and the Later path read.
#[repr(C)]
pub(crate) struct Entry<const N: usize> {
    /// The logical key, compared on every hit so a 64-bit hash collision is only a miss.
    pub(crate) key: StoredKey,
    /// Clock milliseconds before which a read is a plain hit: `expires_at`, or earlier when the
    /// entry is refreshed ahead (see `freshness.rs`). The only time the hit path reads.
    pub(crate) soft_at: u64,
    /// Eviction metadata: the reference bit (LRU), the access count (LFU) or the 0..=3
    /// frequency (S3-FIFO). Bumped on hits without a lock.
    pub(crate) freq: AtomicU8,
    pub(crate) value: StoredValue<N>,
    /// Clock milliseconds after which the entry is no longer fresh, or [`NEVER`].
    pub(crate) expires_at: u64,
    /// Clock milliseconds after which the entry is removed: `expires_at` plus its stale,
    /// fail-safe or refresh grace window.
    pub(crate) keep_until: u64,
    /// How long the value took to compute, in milliseconds (for XFetch).
    pub(crate) delta_ms: u32,
    /// Distinguishes this entry from an earlier one under the same hash in the eviction queue,
    /// the expiry heap and the tag index, whose records are never updated in place.
    pub(crate) id: u64,
    pub(crate) weight: u64,
    pub(crate) tags: Box<[Arc<str>]>,
}

// The layout the comment on `Entry` describes, and the sizes `docs/architecture.md` gives: a
// small entry is no larger than the entry before size classes (112 bytes) plus the allocation
// its value then had.
const _: () = {
    use super::value::{LARGE, MEDIUM, SMALL};
    assert!(std::mem::offset_of!(Entry<SMALL>, value) + 16 == 64);
    assert!(std::mem::offset_of!(Entry<MEDIUM>, value) + 16 == 64);
    assert!(std::mem::offset_of!(Entry<LARGE>, value) + 16 == 64);
    assert!(std::mem::size_of::<Entry<SMALL>>() == 152);
    assert!(std::mem::size_of::<Entry<MEDIUM>>() == 216);
    assert!(std::mem::size_of::<Entry<LARGE>>() == 312);
};

/// An entry's logical key: inline when short (template keys such as `user:42` are), so a hit
/// reads the key from the entry itself instead of following a pointer to another cache line.
pub(crate) enum StoredKey {
    Inline {
        len: u8,
        bytes: [u8; StoredKey::INLINE],
    },
    Heap(Box<str>),
}

impl StoredKey {
    /// 30 bytes keep the key at 32 bytes, two more than a `Box<str>` and its tag.
    const INLINE: usize = 30;

    pub(crate) fn new(key: &str) -> Self {
        if key.len() <= Self::INLINE {
            let mut bytes = [0; Self::INLINE];
            bytes[..key.len()].copy_from_slice(key.as_bytes());
            StoredKey::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            StoredKey::Heap(key.into())
        }
    }

    #[inline(always)]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            StoredKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            StoredKey::Heap(b) => b.as_bytes(),
        }
    }

    /// Whether this is `key`: the hit path's comparison. Keys of up to 64 bytes (every inline
    /// key, and default keys) are compared with overlapping word loads instead of a `memcmp`
    /// call, whose dispatch cost more than the comparison of a short key.
    #[inline(always)]
    pub(crate) fn is(&self, key: &[u8]) -> bool {
        let stored = self.as_bytes();
        let n = stored.len();
        if n != key.len() {
            return false;
        }
        // The two loads overlap when `n` is not twice the word size; each byte is compared at
        // least once, so equal words on both sides mean equal keys.
        fn word<const W: usize>(b: &[u8], at: usize) -> [u8; W] {
            b[at..at + W].try_into().expect("W bytes")
        }
        match n {
            // Default keys (`module::fn:` and 32 hex digits) live here, on the heap: four
            // overlapping 16-byte words instead of a `memcmp` call.
            33..=64 => {
                word::<16>(stored, 0) == word::<16>(key, 0)
                    && word::<16>(stored, 16) == word::<16>(key, 16)
                    && word::<16>(stored, n - 32) == word::<16>(key, n - 32)
                    && word::<16>(stored, n - 16) == word::<16>(key, n - 16)
            }
            16..=32 => {
                word::<16>(stored, 0) == word::<16>(key, 0)
                    && word::<16>(stored, n - 16) == word::<16>(key, n - 16)
            }
            8..=15 => {
                word::<8>(stored, 0) == word::<8>(key, 0)
                    && word::<8>(stored, n - 8) == word::<8>(key, n - 8)
            }
            4..=7 => {
                word::<4>(stored, 0) == word::<4>(key, 0)
                    && word::<4>(stored, n - 4) == word::<4>(key, n - 4)
            }
            _ => stored == key,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Built from a `&str` of exactly these bytes.
            StoredKey::Inline { .. } => {
                std::str::from_utf8(self.as_bytes()).expect("an inline key is the bytes of a str")
            }
            StoredKey::Heap(b) => b,
        }
    }
}

impl<const N: usize> Entry<N> {
    /// Fresh: within its TTL.
    #[inline]
    pub(crate) fn is_live(&self, now_ms: u64) -> bool {
        self.expires_at > now_ms
    }

    /// Its times, for decisions past `soft_at`.
    pub(crate) fn times(&self) -> Times {
        Times {
            soft_at: self.soft_at,
            expires_at: self.expires_at,
            keep_until: self.keep_until,
            delta_ms: self.delta_ms,
        }
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

/// An entry's times; see [`Entry`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Times {
    pub(crate) soft_at: u64,
    pub(crate) expires_at: u64,
    pub(crate) keep_until: u64,
    pub(crate) delta_ms: u32,
}

/// What a lookup found.
pub(crate) enum Lookup<T> {
    /// A value before its `soft_at`: serve it.
    Hit(T),
    /// An entry past its `soft_at` but still kept: to refresh ahead, serve stale, or keep as a
    /// fail-safe fallback (decided off the hit path, by `flight`).
    Later,
    /// Nothing usable.
    Absent,
}

/// Why [`MemoryStore::get_ref`](super::MemoryStore::get_ref) found no value to serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Miss {
    /// See [`Lookup::Later`].
    Later,
    /// See [`Lookup::Absent`].
    Absent,
}

#[cfg(test)]
mod tests {
    use super::StoredKey;

    #[test]
    fn a_stored_key_is_exactly_the_key_it_was_made_from() {
        let keys: Vec<String> = (0..=70)
            .map(|n| (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect())
            .collect();
        for key in &keys {
            let stored = StoredKey::new(key);
            assert!(stored.is(key.as_bytes()), "{key:?}");
            // Every single-byte change, at every position, and every other length.
            for at in 0..key.len() {
                let mut other = key.clone().into_bytes();
                other[at] ^= 1;
                assert!(!stored.is(&other), "{key:?} vs a change at {at}");
            }
            for other in &keys {
                assert_eq!(stored.is(other.as_bytes()), other == key);
            }
        }
    }
}
