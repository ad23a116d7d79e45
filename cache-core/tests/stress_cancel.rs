//! The stress of `stress_freshness.rs` with callers that give up: a third of the reads are
//! dropped after a random number of polls (a client that disconnects), leaders and waiters
//! alike. The reads that finish still never return a version older than a write that returned
//! before they began, nothing hangs, and every body run, cut short or not, is timed.

mod stress_support;

use cache_core::CacheManager;
use cache_core::testing::give_up_after;
use stress_support::{Mix, freshness_row};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_dropped_at_random_points_leave_nothing_stale_or_stuck() {
    let m = CacheManager::builder().build();
    let mix = Mix {
        reads: 3_000,
        write_one_in: 30,
        pauses: true,
    };
    stress_support::race_reads_and_writes(&m, mix, |k, [pause, give_up, polls]| async move {
        let read = freshness_row(k, pause % 3);
        let seen = if give_up.is_multiple_of(3) {
            let polls = (polls % 4) as usize;
            give_up_after(polls, read).await?
        } else {
            read.await
        };
        seen.ok()
    })
    .await;
    let s = stress_support::every_run_timed(&m).await;
    assert!(
        s.stale_served > 0 && s.refreshes > 0 && s.body_failures > 0,
        "the run exercised stale values and failures: {s:?}"
    );
}
