//! What the stress tests (`stress.rs`, `stress_freshness.rs`, `stress_cancel.rs`) share: a
//! versioned "database" of a few keys, writers of every kind, and seeded reader tasks that check
//! that no read goes back past a write that had returned before the read began.
//!
//! Each test binary has its own copy of the statics, so the tests do not see each other's
//! versions. A test's `#[cached]` function reads [`DB`] and counts its runs in [`RUNS`].

#![allow(dead_code)] // not every binary uses every part

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use cache_core::{CacheManager, CacheStats, EntryOptions, cached};

/// The keys `row:0` to `row:3` of the cache `stress`: few, so reads and writes collide.
pub(crate) const KEYS: usize = 4;
/// Reader tasks per run, each with its own seed.
pub(crate) const TASKS: u64 = 6;

/// The "database": a version per key, bumped by writers.
pub(crate) static DB: [AtomicU64; KEYS] = [const { AtomicU64::new(0) }; KEYS];
/// For each key, the newest version a write has finished invalidating or setting.
pub(crate) static FLOOR: [AtomicU64; KEYS] = [const { AtomicU64::new(0) }; KEYS];
/// Runs of the test's body.
pub(crate) static RUNS: AtomicU64 = AtomicU64::new(0);
/// For each key, the kind of its last finished write (see [`write`]), for the failure message.
pub(crate) static LAST_HOW: [AtomicU64; KEYS] = [const { AtomicU64::new(0) }; KEYS];

/// A tiny deterministic generator (xorshift), so a failure reproduces with its seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The row of `stress_freshness.rs` and `stress_cancel.rs`: a short TTL, a stale window (reads
/// refresh in the background) and a fail-safe window over a body that fails one run in three.
#[cached(
    cache = "stress",
    key = "row:{k}",
    tags = ["row:{k}"],
    ttl = "2ms",
    stale = "10ms",
    fail_safe = "60ms"
)]
pub(crate) async fn freshness_row(k: usize, pause: u64) -> Result<u64, String> {
    let run = RUNS.fetch_add(1, SeqCst);
    let v = DB[k].load(SeqCst);
    for _ in 0..pause {
        tokio::task::yield_now().await;
    }
    if run % 3 == 2 {
        return Err("the database is down".into());
    }
    Ok(v)
}

/// Bumps key `k`'s version, then makes it known in one of five ways: invalidating the key, its
/// tag, a pattern, the whole cache, or `Cache::set` of the new version. Writers of one key take
/// its lock, so two writes of a key do not race each other: what is checked is reads against
/// writes.
pub(crate) async fn write(m: &CacheManager, locks: &[tokio::sync::Mutex<()>], k: usize, how: u64) {
    let _held = locks[k].lock().await;
    let version = DB[k].fetch_add(1, SeqCst) + 1;
    let key = format!("row:{k}");
    match how {
        0 => {
            m.invalidate_key("stress", &key).await;
        }
        1 => {
            m.invalidate_tag(&key).await;
        }
        2 => {
            m.invalidate_pattern("stress", &format!("row:{k}*")).await;
        }
        3 => {
            m.invalidate_cache("stress").await;
        }
        _ => {
            let tagged = EntryOptions::new().tag(&key);
            m.cache("stress").set_with(&key, version, tagged).await;
        }
    }
    LAST_HOW[k].store(how, SeqCst);
    FLOOR[k].fetch_max(version, SeqCst);
}

/// How a run mixes its operations.
#[derive(Clone, Copy)]
pub(crate) struct Mix {
    /// Reads per task.
    pub(crate) reads: usize,
    /// One read in this many is preceded by a write of its key.
    pub(crate) write_one_in: u64,
    /// Whether half the reads wait 0.5 ms first, for entries to pass a short TTL.
    pub(crate) pauses: bool,
}

/// Runs [`TASKS`] seeded reader tasks on `m` (two threads under `#[tokio::test(flavor =
/// "multi_thread")]`). `read(k, dice)` reads key `k`, using the three random numbers `dice` as it
/// likes, and returns the version it saw, or `None` for a read that failed or was given up on.
/// Panics if a read saw a version older than a write that had returned before it began, or if a
/// task is still running after a minute (a deadlock).
pub(crate) async fn race_reads_and_writes<R, F>(m: &CacheManager, mix: Mix, read: R)
where
    R: Fn(usize, [u64; 3]) -> F + Clone + Send + 'static,
    F: Future<Output = Option<u64>> + Send,
{
    let locks: Arc<Vec<tokio::sync::Mutex<()>>> =
        Arc::new((0..KEYS).map(|_| tokio::sync::Mutex::new(())).collect());
    let mut tasks = Vec::new();
    for seed in 1..=TASKS {
        let (m, locks, read) = (m.clone(), locks.clone(), read.clone());
        let Mix {
            reads,
            write_one_in,
            pauses,
        } = mix;
        tasks.push(tokio::spawn(m.clone().scope(async move {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            for _ in 0..reads {
                let k = (rng.next() % KEYS as u64) as usize;
                if rng.next().is_multiple_of(write_one_in) {
                    write(&m, &locks, k, rng.next() % 5).await;
                }
                if pauses && rng.next().is_multiple_of(2) {
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
                let floor = FLOOR[k].load(SeqCst);
                let dice = [rng.next(), rng.next(), rng.next()];
                let Some(seen) = read(k, dice).await else {
                    continue;
                };
                assert!(
                    seen >= floor,
                    "seed {seed}, key {k}: read version {seen} after a write of {floor} returned (write kind {})",
                    LAST_HOW[k].load(SeqCst)
                );
            }
        })));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("no deadlock")
            .unwrap();
    }
}

/// The cache `stress`'s statistics once every body run has been timed (refreshes started by the
/// last reads may still be running: each is timed when it ends), checking that it is.
pub(crate) async fn every_run_timed(m: &CacheManager) -> CacheStats {
    for _ in 0..5_000 {
        if m.cache("stress").stats().body_latency.count == RUNS.load(SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let s = m.cache("stress").stats();
    assert_eq!(
        s.body_latency.count,
        RUNS.load(SeqCst),
        "every body run is timed: {s:?}"
    );
    s
}
