//! Resident memory under a long stream of distinct keys through a memory tier bounded to 1,000
//! entries, with what else such keys bring: a TTL that expires most of them before eviction
//! does, a tag of their own and a shared one, tag invalidations, misses, and overwrites. Every
//! piece of bookkeeping (entries, the tag index, the expiry heap, the eviction queues and ghosts,
//! the hot-key top list) must stop growing once the cache is full. Alone in its binary, so the
//! resident memory measured is this test's.

use std::time::Duration;

use cache_core::{CacheManager, Clock, EntryOptions, Policy};

const MAX_ENTRIES: usize = 1_000;
const KEYS: u64 = 400_000;

/// Resident pages of this process (`/proc/self/statm`, second field).
fn resident_pages() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .expect("read /proc/self/statm")
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("resident pages in /proc/self/statm")
}

#[tokio::test]
async fn distinct_keys_with_ttls_and_tags_keep_resident_memory_flat() {
    let clock = Clock::manual();
    let m = CacheManager::builder()
        .clock(clock.clone())
        .cache(
            "stream",
            Policy::new()
                .max_entries(MAX_ENTRIES)
                .ttl(Duration::from_millis(300)),
        )
        .build();
    let cache = m.cache("stream");
    let mut warm = 0;
    for id in 0..KEYS {
        let key = format!("item:{id}");
        let options = EntryOptions::new()
            .tag(format!("owner:{id}"))
            .tag(format!("batch:{}", id / 100));
        cache
            .set_with(&key, format!("value of {key}"), options)
            .await;
        // A miss, and a read of the entry just written (feeds the hot-key sketch).
        assert_eq!(cache.get::<String>(&format!("absent:{id}")).await, None);
        assert!(cache.get::<String>(&key).await.is_some());
        if id % 7 == 0 {
            // An overwrite of an older key, with other tags.
            let older = format!("item:{}", id / 2);
            cache
                .set_with(&older, 1_u32, EntryOptions::new().tag("rewritten"))
                .await;
        }
        if id % 100 == 99 {
            clock.advance(Duration::from_millis(100));
            m.run_pending_maintenance();
            cache
                .invalidate_tag(&format!("batch:{}", (id / 100).saturating_sub(1)))
                .await;
        }
        assert!(cache.len() <= MAX_ENTRIES, "{} entries", cache.len());
        if id == KEYS / 8 {
            warm = resident_pages();
        }
    }
    let end = resident_pages();
    println!(
        "resident pages: {warm} after {} keys, {end} after {KEYS}",
        KEYS / 8
    );
    // 350,000 more distinct keys may not grow memory by more than allocator slack: 2 MiB in
    // 4 KiB pages (unbounded bookkeeping of these keys would be tens of MiB).
    assert!(
        end <= warm + 512,
        "resident pages grew from {warm} to {end} over {} distinct keys",
        KEYS - KEYS / 8
    );
}
