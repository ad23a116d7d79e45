//! The eviction queues. They live behind one mutex per cache that only inserts and evictions
//! take; hits never do (they bump the entry's `freq` atomically).
//!
//! Queue records are `(hash, id)` pairs and are never updated in place: a record whose entry was
//! removed or replaced is *stale* and is skipped when it reaches the front. Compaction drops stale
//! records when the queues grow past twice the live entries, so churn cannot grow them without
//! bound.

use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasherDefault;

use super::PassThrough;
use crate::Eviction;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) hash: u64,
    pub(crate) id: u64,
}

/// What the evictor may ask of the store about a queued record.
pub(crate) trait Probe {
    /// The entry's `freq` if the record is still live.
    fn freq(&self, slot: Slot) -> Option<u8>;
    /// Overwrites a live entry's `freq`.
    fn set_freq(&self, slot: Slot, freq: u8);
    /// How many entries the cache holds now.
    fn resident(&self) -> usize;
}

/// S3-FIFO's probationary (small) queue, in percent of the capacity. The paper's 10% lost 0.1-0.8
/// points of hit ratio to quick_cache (3%) on the Zipf grid of `benches/hit_ratio.rs`; 2% beat
/// it at every point (sweep in docs/benchmarks.md). A smaller queue gives one-hit wonders less
/// room; a returning key still gets in through the ghosts.
const SMALL_PERCENT: usize = 2;
/// Ghost entries remembered, in percent of the capacity (was 100%; quick_cache keeps 50%). Ghosts
/// that old mostly readmit keys whose popularity has passed.
const GHOST_PERCENT: usize = 40;

/// How many candidates LFU compares per eviction (Redis's `maxmemory-samples` default).
const LFU_SAMPLES: usize = 5;

pub(crate) struct Evictor {
    kind: Eviction,
    /// LRU/LFU: the only queue. S3-FIFO: the main queue.
    main: VecDeque<Slot>,
    /// S3-FIFO's small probationary queue.
    small: VecDeque<Slot>,
    /// S3-FIFO's ghosts: hashes recently evicted from `small`, whose return goes straight to main.
    ghost: VecDeque<u64>,
    /// Keyed by the (seeded, well mixed) lookup hash as it is: a SipHash of it cost three hashings
    /// per miss.
    ghost_set: HashSet<u64, BuildHasherDefault<PassThrough>>,
    capacity: usize,
    /// The record inserted last: LFU never picks it, or every new entry (count 0) would be evicted
    /// on arrival.
    newest: Option<Slot>,
}

impl Evictor {
    pub(crate) fn new(kind: Eviction, capacity: usize) -> Self {
        Evictor {
            kind,
            main: VecDeque::new(),
            small: VecDeque::new(),
            ghost: VecDeque::new(),
            ghost_set: HashSet::default(),
            capacity: capacity.max(1),
            newest: None,
        }
    }

    pub(crate) fn queued(&self) -> usize {
        self.main.len() + self.small.len()
    }

    pub(crate) fn on_insert(&mut self, slot: Slot) {
        self.newest = Some(slot);
        match self.kind {
            Eviction::Lru | Eviction::Lfu => self.main.push_back(slot),
            Eviction::S3Fifo => {
                if self.ghost_set.remove(&slot.hash) {
                    self.main.push_back(slot);
                } else {
                    self.small.push_back(slot);
                }
            }
        }
    }

    /// Picks the next entry to evict, or `None` when nothing live is queued.
    pub(crate) fn next_victim(&mut self, probe: &impl Probe) -> Option<Slot> {
        match self.kind {
            Eviction::Lru => self.clock_victim(probe),
            Eviction::Lfu => self.lfu_victim(probe),
            Eviction::S3Fifo => self.s3fifo_victim(probe),
        }
    }

    fn clock_victim(&mut self, probe: &impl Probe) -> Option<Slot> {
        // Every live entry loses its reference bit on the first pass, so two passes suffice; the
        // limit only guards against hits re-setting bits faster than we clear them.
        let mut budget = 2 * self.main.len() + 2;
        while let Some(slot) = self.main.pop_front() {
            match probe.freq(slot) {
                None => continue,
                Some(f) if f > 0 && budget > 0 => {
                    budget -= 1;
                    probe.set_freq(slot, 0);
                    self.main.push_back(slot);
                }
                Some(_) => return Some(slot),
            }
        }
        None
    }

    fn lfu_victim(&mut self, probe: &impl Probe) -> Option<Slot> {
        let mut sample: Vec<(Slot, u8)> = Vec::with_capacity(LFU_SAMPLES);
        while sample.len() < LFU_SAMPLES {
            let Some(slot) = self.main.pop_front() else {
                break;
            };
            if let Some(f) = probe.freq(slot) {
                sample.push((slot, f));
            }
        }
        let newest = self.newest;
        let (victim_at, _) = sample
            .iter()
            .enumerate()
            .min_by_key(|(_, (slot, f))| (Some(*slot) == newest && sample.len() > 1, *f))?;
        let (victim, _) = sample.swap_remove(victim_at);
        for (slot, f) in sample {
            // Ageing: survivors lose half their count, so yesterday's favourites can leave.
            probe.set_freq(slot, f / 2);
            self.main.push_back(slot);
        }
        Some(victim)
    }

    fn s3fifo_victim(&mut self, probe: &impl Probe) -> Option<Slot> {
        // The queues are sized by what the cache holds, which under a weight bound is far less
        // than `max_entries`: sized by that, the small queue never reached its target, every
        // victim came from main (the entries read again), and a scan flushed the hot set.
        let capacity = self.capacity.min(probe.resident()).max(1);
        let small_target = (capacity.saturating_mul(SMALL_PERCENT) / 100).max(1);
        let mut budget = 4 * self.queued() + 4;
        loop {
            let from_small = !self.small.is_empty()
                && (self.small.len() >= small_target || self.main.is_empty());
            if from_small {
                let slot = self.small.pop_front()?;
                match probe.freq(slot) {
                    None => continue,
                    // Read again while on probation: promote to main.
                    Some(f) if f > 0 => {
                        probe.set_freq(slot, 0);
                        self.main.push_back(slot);
                    }
                    Some(_) => {
                        self.remember_ghost(slot.hash, capacity);
                        return Some(slot);
                    }
                }
            } else {
                let slot = self.main.pop_front()?;
                match probe.freq(slot) {
                    None => continue,
                    Some(f) if f > 0 && budget > 0 => {
                        budget -= 1;
                        probe.set_freq(slot, f - 1);
                        self.main.push_back(slot);
                    }
                    Some(_) => return Some(slot),
                }
            }
        }
    }

    fn remember_ghost(&mut self, hash: u64, capacity: usize) {
        if self.ghost_set.insert(hash) {
            self.ghost.push_back(hash);
        }
        while self.ghost.len() > (capacity.saturating_mul(GHOST_PERCENT) / 100).max(1) {
            if let Some(old) = self.ghost.pop_front() {
                self.ghost_set.remove(&old);
            }
        }
    }

    /// Drops stale records. Called when the queues hold far more records than live entries.
    pub(crate) fn compact(&mut self, probe: &impl Probe) {
        self.main.retain(|s| probe.freq(*s).is_some());
        self.small.retain(|s| probe.freq(*s).is_some());
    }

    pub(crate) fn clear(&mut self) {
        self.main.clear();
        self.small.clear();
        self.ghost.clear();
        self.ghost_set.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// A fake store: hash -> (id, freq).
    #[derive(Default)]
    struct Fake(RefCell<HashMap<u64, (u64, u8)>>);

    impl Probe for Fake {
        fn freq(&self, s: Slot) -> Option<u8> {
            self.0
                .borrow()
                .get(&s.hash)
                .filter(|(id, _)| *id == s.id)
                .map(|(_, f)| *f)
        }
        fn set_freq(&self, s: Slot, f: u8) {
            if let Some(e) = self.0.borrow_mut().get_mut(&s.hash) {
                e.1 = f;
            }
        }
        fn resident(&self) -> usize {
            self.0.borrow().len()
        }
    }

    fn slot(h: u64) -> Slot {
        Slot { hash: h, id: h }
    }

    fn fill(ev: &mut Evictor, fake: &Fake, keys: &[(u64, u8)]) {
        for &(h, f) in keys {
            fake.0.borrow_mut().insert(h, (h, f));
            ev.on_insert(slot(h));
        }
    }

    #[test]
    fn lru_spares_recently_read_entries() {
        let fake = Fake::default();
        let mut ev = Evictor::new(Eviction::Lru, 3);
        fill(&mut ev, &fake, &[(1, 1), (2, 0), (3, 0)]);
        assert_eq!(ev.next_victim(&fake), Some(slot(2)));
    }

    #[test]
    fn lfu_evicts_the_least_used_but_never_the_newest() {
        let fake = Fake::default();
        let mut ev = Evictor::new(Eviction::Lfu, 3);
        fill(&mut ev, &fake, &[(1, 5), (2, 3), (3, 1), (4, 0)]);
        assert_eq!(ev.next_victim(&fake), Some(slot(3)));
    }

    #[test]
    fn s3fifo_evicts_one_hit_wonders_first_and_remembers_them() {
        let fake = Fake::default();
        let mut ev = Evictor::new(Eviction::S3Fifo, 10);
        fill(&mut ev, &fake, &[(1, 1), (2, 0)]);
        // 1 was read on probation: promoted; 2 was not: evicted and remembered as a ghost.
        assert_eq!(ev.next_victim(&fake), Some(slot(2)));
        fake.0.borrow_mut().remove(&2);
        ev.on_insert(slot(2));
        assert_eq!(ev.main.len(), 2, "a returning ghost goes straight to main");
    }

    #[test]
    fn stale_records_are_skipped() {
        let fake = Fake::default();
        let mut ev = Evictor::new(Eviction::Lru, 3);
        fill(&mut ev, &fake, &[(1, 0), (2, 0)]);
        fake.0.borrow_mut().remove(&1);
        assert_eq!(ev.next_victim(&fake), Some(slot(2)));
        assert_eq!(ev.next_victim(&fake), None);
    }
}
