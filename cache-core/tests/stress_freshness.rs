//! The stress of `stress.rs` through the freshness options: a short TTL, a stale window (reads
//! refresh in the background) and a fail-safe window over a body that fails one run in three.
//! Stale values and fail-safe fallbacks are allowed, but never one older than a write (an
//! invalidation of any kind, or a `Cache::set`) that returned before the read began.

mod stress_support;

use cache_core::CacheManager;
use stress_support::{Mix, TASKS, freshness_row};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_and_fail_safe_reads_never_go_back_past_a_finished_write() {
    let m = CacheManager::builder().build();
    let mix = Mix {
        reads: 3_000,
        write_one_in: 30,
        pauses: true,
    };
    stress_support::race_reads_and_writes(&m, mix, |k, [pause, ..]| async move {
        freshness_row(k, pause % 3).await.ok()
    })
    .await;
    let s = stress_support::every_run_timed(&m).await;
    assert_eq!(
        s.hits + s.misses + s.stale_served,
        TASKS * 3_000,
        "every read counted once: {s:?}"
    );
    assert!(
        s.stale_served > 0 && s.refreshes > 0 && s.body_failures > 0,
        "the run exercised stale values and failures: {s:?}"
    );
}
