//! Races between inserts, tag invalidations and clears, at the store's own level (the public API
//! reaches them too, but not often enough to catch a lost record in a bounded test).

use std::sync::atomic::AtomicBool;
use std::sync::{Barrier, Mutex};

use super::*;
use crate::key::lookup_hash;

fn store(policy: Policy) -> (Arc<MemoryStore>, Clock) {
    let clock = Clock::manual();
    (
        MemoryStore::new("races".into(), policy, clock.clone()),
        clock,
    )
}

fn tagged(tag: &str) -> InsertOptions {
    InsertOptions {
        tags: vec![Arc::from(tag)],
        ..Default::default()
    }
}

/// Runs `a` and `b` on two threads released together.
fn together(a: impl FnOnce() + Send, b: impl FnOnce() + Send) {
    let start = Barrier::new(2);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            start.wait();
            a()
        });
        scope.spawn(|| {
            start.wait();
            b()
        });
    });
}

#[test]
fn two_inserts_racing_on_a_tagged_key_leave_the_survivor_tagged() {
    // The loser of two inserts used to remove the winner's tag record as "the entry it
    // replaced", leaving the surviving entry out of the tag index.
    let (s, _) = store(Policy::new());
    let key = "user:1";
    let hash = lookup_hash(key.as_bytes());
    let mut untracked = 0;
    for round in 0..2_000u64 {
        together(
            || {
                s.insert(key, hash, Stored::new(round * 2), tagged("t"));
            },
            || {
                s.insert(key, hash, Stored::new(round * 2 + 1), tagged("t"));
            },
        );
        assert_eq!(
            s.remove_tag("t"),
            1,
            "round {round}: the tagged entry was not found"
        );
        if s.peek_kept(key.as_bytes(), hash).is_some() {
            untracked += 1;
            s.remove(key.as_bytes(), hash);
        }
    }
    assert_eq!(
        untracked, 0,
        "rounds that left the entry after invalidate_tag"
    );
}

#[test]
fn an_insert_racing_a_tag_invalidation_is_removed_by_it_or_by_the_next() {
    // An insert without an epoch (`Cache::set_with`) may land after a racing invalidation; the
    // invalidation used to take the tag's records before the entry landed but after its record
    // was added, so no later invalidation found it.
    let (s, _) = store(Policy::new());
    let key = "user:2";
    let hash = lookup_hash(key.as_bytes());
    let mut untracked = 0;
    for round in 0..2_000u64 {
        together(
            || {
                s.insert(key, hash, Stored::new(round), tagged("t"));
            },
            || {
                s.remove_tag("t");
            },
        );
        s.remove_tag("t");
        if s.peek_kept(key.as_bytes(), hash).is_some() {
            untracked += 1;
            s.remove(key.as_bytes(), hash);
        }
    }
    assert_eq!(
        untracked, 0,
        "rounds where the next invalidate_tag missed the entry"
    );
}

#[test]
fn entries_inserted_during_a_clear_still_expire_and_are_swept() {
    // clear() emptied the eviction queue and the expiry heap after its scan, dropping the
    // records of entries inserted meanwhile: those were never swept nor evicted.
    let (s, clock) = store(Policy::new().ttl(Duration::from_secs(1)));
    let stop = AtomicBool::new(false);
    let written = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{i}");
                s.insert(
                    &key,
                    lookup_hash(key.as_bytes()),
                    Stored::new(i),
                    InsertOptions::default(),
                );
                i += 1;
            }
            i
        });
        for round in 0..50u64 {
            for j in 0..2_000u64 {
                let key = format!("c{round}:{j}");
                s.insert(
                    &key,
                    lookup_hash(key.as_bytes()),
                    Stored::new(j),
                    InsertOptions::default(),
                );
            }
            s.clear();
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap()
    });
    assert!(written > 0);
    clock.advance(Duration::from_secs(10));
    while s.sweep_expired(usize::MAX) > 0 {}
    let guard = scc::Guard::new();
    let mut in_maps = 0;
    for class in CLASSES {
        in_maps += in_class!(s, class, |map| map.iter(&guard).count());
    }
    assert_eq!(
        (s.len(), in_maps),
        (0, 0),
        "entries past their TTL the sweep cannot reach"
    );
}

#[test]
fn a_weigher_answering_u64_max_does_not_switch_max_weight_off() {
    let (s, _) = store(Policy::new().max_weight(1_000).weigher(|_, _| u64::MAX));
    for i in 0..100u64 {
        let key = format!("k{i}");
        s.insert(
            &key,
            lookup_hash(key.as_bytes()),
            Stored::new(i),
            InsertOptions::default(),
        );
    }
    assert!(
        s.len() <= 1,
        "{} entries kept, each heavier than max_weight",
        s.len()
    );
}

#[test]
fn a_pattern_or_clear_counts_entries_past_their_ttl_as_expired() {
    // As `remove` of a single key does.
    let (s, clock) = store(Policy::new());
    let short = InsertOptions {
        ttl: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    for key in ["old:1", "old:2"] {
        s.insert(
            key,
            lookup_hash(key.as_bytes()),
            Stored::new(1u8),
            short.clone(),
        );
    }
    clock.advance(Duration::from_secs(2));
    s.insert(
        "new:1",
        lookup_hash(b"new:1"),
        Stored::new(1u8),
        InsertOptions::default(),
    );
    assert_eq!(s.clear(), 3);
    let stats = s.stats();
    assert_eq!((stats.invalidations, stats.expirations), (1, 2));
    assert_eq!(s.len(), 0);
}

#[test]
fn a_value_seen_before_a_removal_finished_carries_an_epoch_the_removal_moved() {
    // A reader notes the epochs, then reads the value (a fail-safe fallback, a promotion); it may
    // store that value later only if the epochs did not move. A removal that moved them only
    // before taking the entry left a gap: epochs noted after the bump, value read before the
    // entry went, and the old value could be stored again once the removal had returned.
    let (s, _) = store(Policy::new());
    let key = "user:3";
    let hash = lookup_hash(key.as_bytes());
    let mut stale = 0;
    for round in 0..3_000u64 {
        s.insert(key, hash, Stored::new(round), InsertOptions::default());
        let seen = Mutex::new(Vec::new());
        together(
            || {
                for _ in 0..8 {
                    let epoch = s.epochs.snapshot(hash, &[]);
                    if s.peek_kept(key.as_bytes(), hash).is_some() {
                        seen.lock().unwrap().push(epoch);
                    }
                }
            },
            || {
                s.remove(key.as_bytes(), hash);
            },
        );
        let after = s.epochs.snapshot(hash, &[]);
        stale += seen
            .into_inner()
            .unwrap()
            .iter()
            .filter(|e| **e == after)
            .count();
    }
    assert_eq!(stale, 0, "values read with the epochs the removal left");
}

#[test]
fn entries_of_unknown_tags_go_with_any_tag_invalidation() {
    // Preloaded hot keys and `Cache::get` promotions do not know the tags their value was
    // stored with.
    let (s, _) = store(Policy::new());
    let unknown = tagged(UNKNOWN_TAGS);
    let key = "item:1";
    let hash = lookup_hash(key.as_bytes());
    s.insert(key, hash, Stored::new(1u8), unknown.clone());
    s.insert(
        "other",
        lookup_hash(b"other"),
        Stored::new(2u8),
        tagged("t"),
    );
    let noted = s.epochs.snapshot(hash, &unknown.tags);
    assert_eq!(s.remove_tag("owner:7"), 1);
    assert!(s.peek_kept(key.as_bytes(), hash).is_none());
    assert!(
        s.peek_kept(b"other", lookup_hash(b"other")).is_some(),
        "other tags stay"
    );
    // A read of such a value that overlapped the invalidation is not stored after it.
    let late = InsertOptions {
        epoch: Some(noted),
        ..unknown
    };
    assert!(!s.insert(key, hash, Stored::new(1u8), late));
}
