//! Hit ratio on Zipf traces: not a timing. For each skew `s` and capacity `C`, one fixed-seed
//! trace is replayed through each cache (a miss inserts the key), and the static optimum — the
//! `C` most frequent keys of the trace, preloaded and never evicted — is the ceiling. An ideal
//! online LFU (exact counts of every key, see [`ideal_lfu`]) shows how close to that ceiling a
//! policy that has to learn the frequencies can come.
//!
//! Prints a table and writes `target/bench-extra/hit_ratio.json` for `scripts/bench`.
//! Run: `cargo bench -p benches --bench hit_ratio` (`HIT_RATIO_REQUESTS` overrides the length).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::num::NonZeroUsize;

use benches::zipf_trace;
use cache_core::{CacheManager, Eviction, Policy};

const KEYS: u64 = 100_000;
const SKEWS: [f64; 3] = [0.8, 1.0, 1.2];
const CAPACITIES: [usize; 2] = [1_000, 10_000];
const SEED: u64 = 0x5EED;

type Replay = fn(&[u64], usize) -> u64;

fn ours(eviction: Eviction, trace: &[u64], cap: usize) -> u64 {
    let manager = CacheManager::builder()
        .cache("h", Policy::new().max_entries(cap).eviction(eviction))
        .build();
    let cache = manager.cache("h");
    let c = cache.blocking();
    let mut key = String::new();
    let mut hits = 0;
    for &k in trace {
        key.clear();
        let _ = write!(key, "{k}");
        if c.get::<u64>(&key).is_some() {
            hits += 1;
        } else {
            c.set(&key, k);
        }
    }
    holds_at_most(cap, cache.stats().entries as usize, "ours");
    hits
}

fn ours_lru(t: &[u64], cap: usize) -> u64 {
    ours(Eviction::Lru, t, cap)
}
fn ours_lfu(t: &[u64], cap: usize) -> u64 {
    ours(Eviction::Lfu, t, cap)
}
fn ours_s3fifo(t: &[u64], cap: usize) -> u64 {
    ours(Eviction::S3Fifo, t, cap)
}

fn moka(trace: &[u64], cap: usize) -> u64 {
    let cache = moka::sync::Cache::<u64, u64>::new(cap as u64);
    let mut hits = 0;
    for &k in trace {
        if cache.get(&k).is_some() {
            hits += 1;
        } else {
            cache.insert(k, k);
        }
    }
    cache.run_pending_tasks();
    holds_at_most(cap, cache.entry_count() as usize, "moka");
    hits
}

fn quick(trace: &[u64], cap: usize) -> u64 {
    let mut cache = quick_cache::unsync::Cache::<u64, u64>::new(cap);
    let mut hits = 0;
    for &k in trace {
        if cache.get(&k).is_some() {
            hits += 1;
        } else {
            cache.insert(k, k);
        }
    }
    holds_at_most(cap, cache.len(), "quick_cache");
    hits
}

fn cached_lru(trace: &[u64], cap: usize) -> u64 {
    use cached::Cached;
    let mut cache = cached::LruCache::<u64, u64>::builder()
        .max_size(cap)
        .build()
        .expect("an LRU cache");
    let mut hits = 0;
    for &k in trace {
        if cache.cache_get(&k).is_some() {
            hits += 1;
        } else {
            cache.cache_set(k, k);
        }
    }
    holds_at_most(cap, cache.cache_size(), "cached");
    hits
}

/// A cache that ended a trace holding more than its capacity would have had more room than the
/// others: its hit ratio would not be comparable.
fn holds_at_most(cap: usize, len: usize, who: &str) {
    assert!(len <= cap, "{who} holds {len} entries at capacity {cap}");
}

/// The best an online frequency policy can do here, as a second ceiling: exact counts of every
/// key seen so far (no sketch, no aging, unbounded memory), the `cap` keys with the highest
/// counts cached, and a missed key admitted only when its count beats the lowest cached one.
/// Unlike the static optimum it must first see a key to count it, so it pays each cached key's
/// first miss and learns the frequencies as the trace goes; on a trace whose frequencies never
/// change (as here) no online policy is expected to do better.
fn ideal_lfu(trace: &[u64], cap: usize) -> u64 {
    use std::cmp::Reverse;
    use std::collections::{BinaryHeap, HashSet};
    let mut counts: HashMap<u64, u64> = HashMap::new();
    let mut cached: HashSet<u64> = HashSet::with_capacity(cap);
    // (count, key) of cached keys; a record whose count is no longer the key's is stale and
    // skipped (counts only grow, so a key's current record is its latest).
    let mut by_count: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
    let mut hits = 0;
    for &k in trace {
        let count = counts.entry(k).or_default();
        *count += 1;
        let count = *count;
        if cached.contains(&k) {
            hits += 1;
            by_count.push(Reverse((count, k)));
            continue;
        }
        if cached.len() < cap {
            cached.insert(k);
            by_count.push(Reverse((count, k)));
            continue;
        }
        let (min_count, min_key) = loop {
            let Reverse((c, key)) = *by_count.peek().expect("a record per cached key");
            if cached.contains(&key) && counts[&key] == c {
                break (c, key);
            }
            by_count.pop();
        };
        if count > min_count {
            by_count.pop();
            cached.remove(&min_key);
            cached.insert(k);
            by_count.push(Reverse((count, k)));
        }
    }
    hits
}

fn optimum(trace: &[u64], cap: usize) -> u64 {
    let mut counts: HashMap<u64, u64> = HashMap::new();
    for &k in trace {
        *counts.entry(k).or_default() += 1;
    }
    let mut by_count: Vec<u64> = counts.into_values().collect();
    by_count.sort_unstable_by(|a, b| b.cmp(a));
    by_count.iter().take(cap).sum()
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that is not ours means "not me".
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"hit_ratio".contains(a.as_str()))
    {
        return;
    }
    let requests: usize = std::env::var("HIT_RATIO_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let _ = NonZeroUsize::new(requests).expect("HIT_RATIO_REQUESTS > 0");
    let contenders: [(&str, Replay); 8] = [
        ("ours LRU", ours_lru),
        ("ours LFU", ours_lfu),
        ("ours S3-FIFO", ours_s3fifo),
        ("moka (TinyLFU)", moka),
        ("quick_cache (S3-FIFO)", quick),
        ("cached LruCache", cached_lru),
        ("ideal online LFU", ideal_lfu),
        ("static optimum", optimum),
    ];
    println!("hit ratio: Zipf over {KEYS} keys, {requests} requests per trace, seed {SEED:#x}");
    print!("{:<8}{:>8}", "s", "C");
    for (name, _) in &contenders {
        print!("{name:>26}");
    }
    println!();
    let mut rows = Vec::new();
    for s in SKEWS {
        let trace = zipf_trace(s, KEYS, requests, SEED);
        for cap in CAPACITIES {
            print!("{s:<8}{cap:>8}");
            let mut cells = Vec::new();
            for (name, replay) in &contenders {
                let ratio = replay(&trace, cap) as f64 / requests as f64;
                print!("{ratio:>26.4}");
                cells.push(format!("\"{name}\": {ratio:.4}"));
            }
            println!();
            rows.push(format!(
                "{{\"s\": {s}, \"capacity\": {cap}, {}}}",
                cells.join(", ")
            ));
        }
    }
    benches::write_extra(
        "hit_ratio",
        &format!(
            "{{\"keys\": {KEYS}, \"requests\": {requests}, \"seed\": {SEED}, \"rows\": [{}]}}",
            rows.join(", ")
        ),
    );
}
