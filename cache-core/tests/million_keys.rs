//! The memory tier's bound under one million distinct keys, through `#[cached]` as an
//! application would hit it: the entry count never exceeds `max_entries`, and the process's
//! resident memory stops growing once the cache is full (eviction bookkeeping is compacted, not
//! accumulated). Alone in its binary, so the resident memory measured is this test's.
//!
//! About 15 s per eviction policy in a debug build; `-- --nocapture` shows the figures.

use std::time::Instant;

use cache_core::{CacheManager, Clock, Eviction, Policy, cached};

const MAX_ENTRIES: u64 = 10_000;
const KEYS: u64 = 1_000_000;

#[cached(cache = "bounded", key = "item:{id}")]
fn item(id: u64) -> String {
    format!("value of item {id}, about fifty bytes long......")
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("read /proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[test]
fn a_million_distinct_keys_stay_within_the_bound() {
    for eviction in [Eviction::S3Fifo, Eviction::Lru, Eviction::Lfu] {
        let m = CacheManager::builder()
            .clock(Clock::manual())
            .cache(
                "bounded",
                Policy::new()
                    .max_entries(MAX_ENTRIES as usize)
                    .eviction(eviction),
            )
            .build();
        let cache = m.cache("bounded");
        let started = Instant::now();
        let mut rss_full = 0;
        let mut max_len = 0;
        m.scope_sync(|| {
            for id in 0..KEYS {
                item(id);
                let len = cache.len() as u64;
                max_len = max_len.max(len);
                assert!(
                    len <= MAX_ENTRIES,
                    "{eviction:?}: {len} entries after key {id}"
                );
                if id == 10 * MAX_ENTRIES {
                    // Full for a while: every later insert evicts.
                    rss_full = rss_kib();
                }
            }
        });
        let rss_end = rss_kib();
        let s = cache.stats();
        println!(
            "{eviction:?}: {KEYS} keys in {:?}; entries {} (max seen {max_len}), evictions {}, \
             RSS {rss_full} KiB after {} keys, {rss_end} KiB after {KEYS}",
            started.elapsed(),
            s.entries,
            s.evictions,
            10 * MAX_ENTRIES
        );
        assert_eq!(s.entries, MAX_ENTRIES, "{eviction:?}");
        assert_eq!(s.evictions, KEYS - MAX_ENTRIES, "{eviction:?}");
        assert_eq!(
            s.inserts, KEYS,
            "{eviction:?}: every key's body ran and was stored once"
        );
        // 900,000 more distinct keys after the cache was full may not grow memory by more than
        // a few MiB of allocator slack (unbounded bookkeeping would be tens of MiB).
        assert!(
            rss_end <= rss_full + 8 * 1024,
            "{eviction:?}: resident memory grew from {rss_full} KiB to {rss_end} KiB"
        );
    }
}
