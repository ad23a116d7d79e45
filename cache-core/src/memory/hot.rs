//! Which keys are hot: a count-min sketch of sampled accesses and a small top list, in bounded
//! memory (32 KiB and 32 keys per cache), so a restarted instance can preload what mattered.
//!
//! The design guides track pairwise access correlations, which is quadratic in the number of keys
//! and predicts little that frequency does not; a frequency sketch answers "what will be asked
//! for first after a deploy" in constant memory.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

const ROWS: usize = 4;
const WIDTH: usize = 2048;
/// Keys kept in the top list.
pub(crate) const TOP: usize = 32;
/// Counts halve after this many recordings on average, so yesterday's favourites fade.
const DECAY_EVERY: u32 = 1 << 16;

pub(crate) struct HotKeys {
    cells: Box<[AtomicU32]>,
    top: Mutex<Vec<(Box<str>, u32)>>,
    /// The smallest count in `top` when it is full, else 0 (read without the lock).
    floor: AtomicU32,
}

impl Default for HotKeys {
    fn default() -> Self {
        HotKeys {
            cells: (0..ROWS * WIDTH).map(|_| AtomicU32::new(0)).collect(),
            top: Mutex::new(Vec::with_capacity(TOP + 1)),
            floor: AtomicU32::new(0),
        }
    }
}

impl HotKeys {
    fn slots(h: u64) -> [usize; ROWS] {
        let (a, b) = (h as u32 as usize, (h >> 32) as usize | 1);
        std::array::from_fn(|row| row * WIDTH + (a.wrapping_add(row.wrapping_mul(b)) % WIDTH))
    }

    /// Counts one (sampled) access of `key`, whose lookup hash (seeded XXH3-64 of the key, already
    /// computed by the caller) picks the cells.
    pub(crate) fn record(&self, key: &[u8], hash: u64) {
        let mut estimate = u32::MAX;
        for slot in Self::slots(hash) {
            let v = self.cells[slot]
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1);
            estimate = estimate.min(v);
        }
        // Decays once in DECAY_EVERY records on average, drawn per thread: a shared count of
        // records was one more cache line that every core recording wrote.
        if crate::stats::sample().is_multiple_of(DECAY_EVERY) {
            self.decay();
        }
        // Most sampled keys are not hot enough for the list: say so without the lock, which
        // every core recording at once would otherwise take in turn.
        if estimate <= self.floor.load(Ordering::Relaxed) {
            return;
        }
        let Ok(key) = std::str::from_utf8(key) else {
            return;
        };
        // A busy list skips this sample rather than making a hit wait; the sketch counts it.
        let mut top = match self.top.try_lock() {
            Ok(top) => top,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        let full = top.len() >= TOP;
        if full && top.last().is_some_and(|(_, min)| *min >= estimate) {
            return;
        }
        match top.iter_mut().find(|(k, _)| &**k == key) {
            Some(entry) => entry.1 = estimate,
            None => top.push((key.into(), estimate)),
        }
        top.sort_by_key(|entry| std::cmp::Reverse(entry.1));
        top.truncate(TOP);
        self.set_floor(&top);
    }

    /// The estimate a key must beat to enter the list: the last one's once the list is full.
    fn set_floor(&self, top: &[(Box<str>, u32)]) {
        let floor = if top.len() >= TOP {
            top.last().map_or(0, |(_, c)| *c)
        } else {
            0
        };
        self.floor.store(floor, Ordering::Relaxed);
    }

    fn decay(&self) {
        for c in self.cells.iter() {
            let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v / 2));
        }
        let mut top = self.top.lock().unwrap_or_else(|e| e.into_inner());
        for entry in top.iter_mut() {
            entry.1 /= 2;
        }
        self.set_floor(&top);
    }

    /// The hottest keys with their estimated (sampled) counts, hottest first.
    pub(crate) fn top(&self, n: usize) -> Vec<(String, u64)> {
        let top = self.top.lock().unwrap_or_else(|e| e.into_inner());
        top.iter()
            .take(n)
            .map(|(k, c)| (k.to_string(), u64::from(*c)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(hot: &HotKeys, key: &str) {
        hot.record(key.as_bytes(), crate::key::lookup_hash(key.as_bytes()));
    }

    #[test]
    fn finds_the_hot_keys_among_many_cold_ones() {
        let hot = HotKeys::default();
        for round in 0..200 {
            for k in 0..5 {
                record(&hot, &format!("hot:{k}"));
            }
            record(&hot, &format!("cold:{round}"));
        }
        let top: Vec<String> = hot.top(5).into_iter().map(|(k, _)| k).collect();
        let mut sorted = top.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            ["hot:0", "hot:1", "hot:2", "hot:3", "hot:4"],
            "{top:?}"
        );
        assert!(hot.top(100).len() <= TOP);
    }
}
