//! Hit ratio on Zipf traces: not a timing. For each skew `s` and capacity `C`, one fixed-seed
//! trace is replayed through each cache (a miss inserts the key), and the static optimum — the
//! `C` most frequent keys of the trace, preloaded and never evicted — is the ceiling.
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
    let contenders: [(&str, Replay); 7] = [
        ("ours LRU", ours_lru),
        ("ours LFU", ours_lfu),
        ("ours S3-FIFO", ours_s3fifo),
        ("moka (TinyLFU)", moka),
        ("quick_cache (S3-FIFO)", quick),
        ("cached LruCache", cached_lru),
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
