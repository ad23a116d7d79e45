//! The maintenance thread stops ticking the coarse clock when nothing reads it, and an idle
//! process still never serves an entry past its TTL.
//!
//! One test in its own binary (its own process): any other test reading a cache would keep the
//! thread awake. The thread is observed from outside, through its context switches in `/proc`:
//! ticking, it sleeps and wakes about a thousand times a second; parked, about once.

use std::time::{Duration, Instant};

use cache_core::{CacheManager, EntryOptions, Policy};

/// The maintenance thread's name as `/proc` shows it (truncated to 15 bytes).
const THREAD_COMM: &str = "cache-core-main";

/// The maintenance thread's id. The thread names itself once it runs, which on a loaded machine
/// can be a while after the first cache started it.
fn maintenance_tid() -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
            let task = task.expect("task entry").path();
            let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
            if comm.trim_end() == THREAD_COMM {
                return task.file_name().unwrap().to_string_lossy().into_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "no thread named {THREAD_COMM} after 10 s: the maintenance thread did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Voluntary plus involuntary context switches of thread `tid` so far.
fn switches(tid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).expect("status");
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches:"))
        .map(|l| l.split_whitespace().last().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Context switches of `tid` over `window`, during which this thread reads no cache.
fn switches_over(tid: &str, window: Duration) -> u64 {
    let before = switches(tid);
    std::thread::sleep(window);
    switches(tid) - before
}

/// Waits (up to a deadline) until the thread switches at most a few times in a 200 ms window.
fn wait_until_parked(tid: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = switches_over(tid, Duration::from_millis(200));
        if n <= 3 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the maintenance thread still switches {n} times per 200 ms after 5 s without reads"
        );
    }
}

#[test]
fn an_idle_process_parks_the_clock_and_still_expires_entries_on_time() {
    let manager = CacheManager::builder()
        .cache("idle", Policy::new().max_entries(100))
        .build();
    let cache = manager.cache("idle");
    let blocking = cache.blocking();
    blocking.set("forever", 1u32);
    assert_eq!(blocking.get::<u32>("forever"), Some(1));
    let tid = maintenance_tid();

    // While the process reads, the thread ticks: far more than a few switches per 200 ms.
    let busy = {
        let before = switches(&tid);
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until {
            assert_eq!(blocking.get::<u32>("forever"), Some(1));
            std::thread::sleep(Duration::from_micros(200));
        }
        switches(&tid) - before
    };
    assert!(
        busy >= 20,
        "a thread ticking every millisecond switched only {busy} times in 200 ms of reads"
    );

    // Without reads it parks: about one wake-up a second (the sweep) instead of a thousand.
    wait_until_parked(&tid);
    let parked = switches_over(&tid, Duration::from_millis(600));
    assert!(
        parked <= 3,
        "a parked thread switched {parked} times in 600 ms"
    );

    // An entry that expires while the thread is parked (the counter standing still) is a miss:
    // the first read of a parked clock reads the system clock.
    blocking.set_with(
        "short",
        2u32,
        EntryOptions::new().ttl(Duration::from_millis(300)),
    );
    let written = Instant::now();
    wait_until_parked(&tid);
    let until = written + Duration::from_millis(400);
    std::thread::sleep(until.saturating_duration_since(Instant::now()));
    assert_eq!(
        blocking.get::<u32>("short"),
        None,
        "an entry 400 ms old with a 300 ms TTL was served on a parked clock"
    );
    assert_eq!(blocking.get::<u32>("forever"), Some(1));

    // That read woke the thread: it ticks again for at least one probe period.
    let woken = switches_over(&tid, Duration::from_millis(60));
    assert!(
        woken >= 10,
        "the thread switched only {woken} times in the 60 ms after a read woke it"
    );

    // Entries that are never read again are still swept while it is parked.
    blocking.set_with(
        "swept",
        3u32,
        EntryOptions::new().ttl(Duration::from_millis(100)),
    );
    assert_eq!(cache.len(), 2);
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.len() > 1 {
        assert!(
            Instant::now() < deadline,
            "an expired entry was not swept within 5 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        cache.stats().expirations,
        2,
        "`short` at its read, `swept` by the sweep"
    );
}
