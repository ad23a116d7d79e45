//! Sync stale-while-revalidate under a storm of stale reads of distinct keys: at most
//! `MAX_SYNC_REFRESH_THREADS` refresh threads at once; the rest are served stale, counted as
//! skipped, and refreshed by a later read. Alone in its binary, because the bound is
//! process-wide and this test holds every place while it looks.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use cache_core::{CacheManager, Clock, MAX_SYNC_REFRESH_THREADS, cached};

const KEYS: u64 = 200;

/// Whether refreshing bodies must wait; `OPENED` wakes them.
static GATE_CLOSED: Mutex<bool> = Mutex::new(false);
static OPENED: Condvar = Condvar::new();
static RUNS: AtomicU64 = AtomicU64::new(0);
static STARTED_GATED: AtomicU64 = AtomicU64::new(0);
static FINISHED_GATED: AtomicU64 = AtomicU64::new(0);

#[cached(cache = "rows", key = "row:{id}", ttl = 10, stale = 600)]
fn row(id: u64) -> String {
    let run = RUNS.fetch_add(1, SeqCst) + 1;
    let mut closed = GATE_CLOSED.lock().unwrap();
    if *closed {
        STARTED_GATED.fetch_add(1, SeqCst);
        while *closed {
            closed = OPENED.wait(closed).unwrap();
        }
        FINISHED_GATED.fetch_add(1, SeqCst);
    }
    format!("row {id}, run {run}")
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn refresh_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("list this process's threads")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "cache-refresh")
        .count()
}

#[test]
fn a_storm_of_stale_reads_starts_a_bounded_number_of_refresh_threads() {
    let clock = Clock::manual();
    let m = CacheManager::builder().clock(clock.clone()).build();
    m.scope_sync(|| {
        for id in 0..KEYS {
            row(id);
        }
        assert_eq!(RUNS.load(SeqCst), KEYS);
        clock.advance(Duration::from_secs(11));

        *GATE_CLOSED.lock().unwrap() = true;
        for id in 0..KEYS {
            assert!(
                row(id).starts_with(&format!("row {id}, run ")),
                "served stale"
            );
        }
        let stats = m.cache("rows").stats();
        let skipped = stats.refreshes_skipped;
        let spawned = KEYS - skipped;
        assert_eq!(
            spawned as usize, MAX_SYNC_REFRESH_THREADS,
            "one refresh thread per place, the other reads skipped ({skipped} skipped)"
        );
        // Every spawned thread reaches its body and waits there; no more start.
        wait_until("the spawned refreshes to start", || {
            STARTED_GATED.load(SeqCst) == spawned
        });
        assert!(refresh_threads() <= MAX_SYNC_REFRESH_THREADS);

        {
            *GATE_CLOSED.lock().unwrap() = false;
            OPENED.notify_all();
        }
        wait_until("the refreshes to end", || {
            FINISHED_GATED.load(SeqCst) == spawned && refresh_threads() == 0
        });
        assert_eq!(RUNS.load(SeqCst), KEYS + spawned);

        // A key whose refresh was skipped is still stale; its next read refreshes it.
        let skipped = (0..KEYS)
            .find(|&id| row(id).ends_with(&format!("run {}", id + 1)))
            .expect("a key still holding its first value");
        let inserts = m.cache("rows").stats().inserts;
        wait_until("the later read's refresh", || {
            m.cache("rows").stats().inserts > inserts
        });
        assert_ne!(row(skipped), format!("row {skipped}, run {}", skipped + 1));
    });
}
