//! The memory tier's books after a storm of concurrent writes: tasks on two threads overwrite a
//! few keys with values of every size class (an overwrite in another class moves the key to
//! that class's map), delete them, invalidate their tags and clear the cache, under an entry
//! bound that evicts. Once they are done, the entry count and the weight the cache reports must
//! be exactly those of the entries it holds: a drift would let `max_entries` and `max_weight`
//! bound the wrong thing for the rest of the process's life. The tag records must come through
//! as well: invalidating a tag afterwards takes exactly the entries written with it.

use std::sync::Arc;
use std::time::Duration;

use cache_core::testing::TestClock;
use cache_core::{Cache, CacheManager, EntryOptions, Policy};
use serde::{Deserialize, Serialize};
use stress_support::Rng;

mod stress_support;

const KEYS: u64 = 24;

/// 64 bytes inline: the medium size class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Medium([u64; 8]);

/// 160 bytes inline: the large size class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Large([u64; 20]);

/// With `clock`, half the writes get a TTL of 1 to 5 seconds, and the task now and then moves
/// the clock on by 100 ms and sweeps what expired, while the others write.
async fn storm(cache: Cache, seed: u64, ops: usize, clock: Option<(TestClock, Arc<CacheManager>)>) {
    let mut rng = Rng(seed);
    for _ in 0..ops {
        let r = rng.next();
        let k = r % KEYS;
        let key = format!("k{k}");
        let mut tagged = EntryOptions::new().tag(format!("t{}", k % 4));
        if let Some((clock, manager)) = &clock {
            if (r >> 32) & 1 == 1 {
                tagged = tagged.ttl(Duration::from_secs(1 + (r >> 33) % 5));
            }
            if (r >> 40).is_multiple_of(200) {
                clock
                    .advance(Duration::from_millis(100), [&**manager])
                    .await;
            }
        }
        match (r >> 8) % 16 {
            0..=2 => cache.set_with(&key, r, tagged).await,
            3..=5 => {
                let text = "x".repeat((r >> 16) as usize % 40);
                cache.set_with(&key, text, tagged).await;
            }
            6..=8 => cache.set_with(&key, Medium([r; 8]), tagged).await,
            9..=11 => cache.set_with(&key, Large([r; 20]), tagged).await,
            12 | 13 => {
                cache.delete(&key).await;
            }
            14 => {
                cache.invalidate_tag(&format!("t{}", k % 4)).await;
            }
            _ if (r >> 20).is_multiple_of(64) => {
                cache.clear().await;
            }
            _ => {
                let _ = cache.get::<u64>(&key).await;
            }
        }
        if r.is_multiple_of(7) {
            tokio::task::yield_now().await;
        }
    }
}

/// The entry under `key` and its weight by the default weigher (key length, the value's inline
/// size and 64 for the entry's own bookkeeping), whatever its type.
async fn held(cache: &Cache, key: &str) -> Vec<u64> {
    let mut found = Vec::new();
    let weigh = |size: usize| (key.len() + size + 64) as u64;
    if cache.get::<u64>(key).await.is_some() {
        found.push(weigh(size_of::<u64>()));
    }
    if cache.get::<String>(key).await.is_some() {
        found.push(weigh(size_of::<String>()));
    }
    if cache.get::<Medium>(key).await.is_some() {
        found.push(weigh(size_of::<Medium>()));
    }
    if cache.get::<Large>(key).await.is_some() {
        found.push(weigh(size_of::<Large>()));
    }
    found
}

/// The entry count and weight of what `cache` holds under the storm's keys, each key held as one
/// type at most.
async fn books(cache: &Cache) -> (u64, u64) {
    let (mut entries, mut weight) = (0u64, 0u64);
    for k in 0..KEYS {
        let key = format!("k{k}");
        let found = held(cache, &key).await;
        assert!(
            found.len() <= 1,
            "{key} held as {} types at once",
            found.len()
        );
        entries += found.len() as u64;
        weight += found.iter().sum::<u64>();
    }
    (entries, weight)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_count_and_weight_match_the_entries_after_concurrent_writes() {
    for (round, bound) in [(0, None), (1, Some(16)), (2, Some(8))] {
        let mut builder = CacheManager::builder();
        let mut policy = Policy::new().ttl_secs(3600);
        if let Some(n) = bound {
            policy = policy.max_entries(n);
        }
        builder = builder.cache("books", policy);
        let manager = Arc::new(builder.build());
        let cache = manager.cache("books");
        let tasks: Vec<_> = (0..6)
            .map(|t| tokio::spawn(storm(cache.clone(), 0x9e37 + round * 100 + t, 20_000, None)))
            .collect();
        for t in tasks {
            t.await.expect("no task panics");
        }

        let (entries, weight) = books(&cache).await;
        let s = cache.stats();
        assert_eq!(
            (s.entries, s.weight),
            (entries, weight),
            "bound {bound:?}: the books against the entries held: {s:?}"
        );
        if let Some(n) = bound {
            assert!(entries <= n as u64, "bound {n}: {entries} entries held");
        }

        // The tag records came through the storm too: a tag's invalidation takes exactly the
        // entries written with it, and the books follow.
        let mut kept = Vec::new();
        for k in 0..KEYS {
            let key = format!("k{k}");
            if k % 4 != 0 {
                kept.push((key.clone(), held(&cache, &key).await));
            }
        }
        cache.invalidate_tag("t0").await;
        for k in (0..KEYS).step_by(4) {
            let key = format!("k{k}");
            assert!(
                held(&cache, &key).await.is_empty(),
                "{key} outlived its tag's invalidation"
            );
        }
        let (entries, weight) = books(&cache).await;
        for (key, before) in &kept {
            assert_eq!(&held(&cache, key).await, before, "{key} has another tag");
        }
        let s = cache.stats();
        assert_eq!((s.entries, s.weight), (entries, weight), "after t0: {s:?}");
    }
}

/// Where entries also expire, and the sweep runs while tasks write: the books must match what
/// is held midway through the TTLs, and once every TTL has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_books_hold_while_entries_expire_and_are_swept_under_writes() {
    let clock = TestClock::manual();
    let manager = Arc::new(
        CacheManager::builder()
            .clock(clock.clock())
            .cache("books", Policy::new().ttl_secs(3600).max_entries(20))
            .build(),
    );
    let cache = manager.cache("books");
    let tasks: Vec<_> = (0..6)
        .map(|t| {
            let clocked = Some((clock.clone(), manager.clone()));
            tokio::spawn(storm(cache.clone(), 0x51ed + t, 20_000, clocked))
        })
        .collect();
    for t in tasks {
        t.await.expect("no task panics");
    }
    for step in [Duration::from_secs(2), Duration::from_secs(10)] {
        clock.advance(step, [&*manager]).await;
        let (entries, weight) = books(&cache).await;
        let s = cache.stats();
        assert_eq!(
            (s.entries, s.weight),
            (entries, weight),
            "{step:?} later: {s:?}"
        );
        assert!(s.expirations > 0, "some TTLs ran out: {s:?}");
    }
}
