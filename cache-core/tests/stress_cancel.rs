//! The stress of `stress_freshness.rs` with callers that give up: a third of the reads are
//! dropped after a random number of polls (a client that disconnects), leaders and waiters
//! alike. The reads that finish still never return a version older than a write that returned
//! before they began, nothing hangs, and every body run, cut short or not, is timed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use cache_core::{CacheManager, EntryOptions, cached};

const KEYS: usize = 4;

/// The "database": a version per key, bumped by writers.
static DB: [AtomicU64; KEYS] = [const { AtomicU64::new(0) }; KEYS];
/// For each key, the newest version a write has finished invalidating or setting.
static FLOOR: [AtomicU64; KEYS] = [const { AtomicU64::new(0) }; KEYS];
static RUNS: AtomicU64 = AtomicU64::new(0);
/// For each key, the kind of its last finished write (see `write`), for the failure message.
static LAST_HOW: [AtomicU64; KEYS] = [const { AtomicU64::new(0) }; KEYS];

/// A tiny deterministic generator (xorshift), so a failure reproduces with its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[cached(
    cache = "stress",
    key = "row:{k}",
    tags = ["row:{k}"],
    ttl = "2ms",
    stale = "10ms",
    fail_safe = "60ms"
)]
async fn row(k: usize, pause: u64) -> Result<u64, String> {
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

/// Writers of one key take its lock, so two writes of a key do not race each other: what is
/// checked is reads against writes.
async fn write(m: &CacheManager, locks: &[tokio::sync::Mutex<()>], k: usize, how: u64) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_dropped_at_random_points_leave_nothing_stale_or_stuck() {
    let m = CacheManager::builder().build();
    let locks: Arc<Vec<tokio::sync::Mutex<()>>> =
        Arc::new((0..KEYS).map(|_| tokio::sync::Mutex::new(())).collect());
    let mut tasks = Vec::new();
    for seed in 1..=6u64 {
        let (m, locks) = (m.clone(), locks.clone());
        tasks.push(tokio::spawn(m.clone().scope(async move {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            for _ in 0..3_000 {
                let k = (rng.next() % KEYS as u64) as usize;
                if rng.next().is_multiple_of(30) {
                    write(&m, &locks, k, rng.next() % 5).await;
                }
                if rng.next().is_multiple_of(2) {
                    // Time for entries to pass their TTL and go stale.
                    tokio::time::sleep(Duration::from_micros(500)).await;
                }
                let floor = FLOOR[k].load(SeqCst);
                let read = row(k, rng.next() % 3);
                let seen = if rng.next().is_multiple_of(3) {
                    let polls = (rng.next() % 4) as usize;
                    match (DropBefore { inner: Some(Box::pin(read)), polls }).await {
                        Some(read) => read,
                        None => continue,
                    }
                } else {
                    read.await
                };
                let Ok(seen) = seen else {
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
    // Refreshes started by the last reads may still be running: each is timed when it ends.
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
    assert!(
        s.stale_served > 0 && s.refreshes > 0 && s.body_failures > 0,
        "the run exercised stale values and failures: {s:?}"
    );
}

/// Polls the inner future at most `polls` times, then drops it (a caller that gives up).
struct DropBefore<F> {
    inner: Option<std::pin::Pin<Box<F>>>,
    polls: usize,
}

impl<F: std::future::Future> std::future::Future for DropBefore<F> {
    type Output = Option<F::Output>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        if self.polls == 0 {
            self.inner = None;
            return std::task::Poll::Ready(None);
        }
        self.polls -= 1;
        let inner = self.inner.as_mut().expect("polled after completion");
        inner.as_mut().poll(cx).map(Some)
    }
}
