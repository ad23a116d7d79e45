//! An instance whose backplane subscription goes silent (messages dropped, the connection
//! still up): what it keeps in memory, and how a resubscription repairs it. The remote tier is
//! the in-process `MemoryBackend`, shared by two managers as by two processes; the silent one
//! reaches it through a `FaultyBackend` whose switch drops the messages it would hear.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use cache_core::remote::backplane::BackplaneStats;
use cache_core::testing::{FaultyBackend, MemoryBackend, SharedBackend};
use cache_core::{CacheManager, Policy, Tier, cached};

/// What the "database" holds for user 1, and how often the cached function read it.
static VERSION: AtomicU64 = AtomicU64::new(0);
static RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "users", key = "user:{id}")]
async fn name(id: u64) -> String {
    RUNS.fetch_add(1, SeqCst);
    format!("user {id} v{}", VERSION.load(SeqCst))
}

/// Waits (bounded) until `done` holds; the signals it reads are counters the backplane moves.
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{what} never happened");
}

fn stats(m: &CacheManager) -> BackplaneStats {
    m.backplane_stats().expect("a hybrid cache has a backplane")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_subscription_keeps_old_values_until_a_resubscription_empties_memory() {
    let shared = SharedBackend::new(MemoryBackend::new());
    let silent = FaultyBackend::new(shared.clone());
    let faults = silent.faults();
    let hybrid = || Policy::new().tier(Tier::Hybrid).ttl_secs(3600);
    let a = CacheManager::builder()
        .remote(shared)
        .cache("users", hybrid())
        .build();
    let b = CacheManager::builder()
        .remote(silent)
        .cache("users", hybrid())
        .build();
    for m in [&a, &b] {
        assert!(m.backplane_subscribed(Duration::from_secs(10)).await);
    }

    // B computes the value once and keeps it in memory.
    assert_eq!(b.scope(name(1)).await, "user 1 v0");
    assert_eq!(b.scope(name(1)).await, "user 1 v0");
    assert_eq!(RUNS.load(SeqCst), 1);

    // B's subscription goes silent; A overwrites the value (Redis and A's memory).
    faults.set_drop_messages(true);
    VERSION.store(1, SeqCst);
    a.cache("users")
        .set("user:1", "user 1 v1".to_string())
        .await;
    until("A's announcement reaching B's subscription", || {
        faults.dropped_messages() >= 1
    })
    .await;
    assert_eq!(a.scope(name(1)).await, "user 1 v1");
    // The hazard the backplane is there for: B still answers from memory with the old value.
    assert_eq!(b.scope(name(1)).await, "user 1 v0");
    assert_eq!(RUNS.load(SeqCst), 1, "nobody ran the body again");

    // The subscription comes back: B's memory is emptied, and it reads A's value from the
    // remote tier, without running the body.
    let subscriptions = stats(&b).subscriptions;
    assert_eq!(faults.resubscribe(), 1);
    assert_eq!(stats(&b).subscriptions, subscriptions + 1);
    assert_eq!(b.cache("users").stats().entries, 0);
    assert_eq!(b.scope(name(1)).await, "user 1 v1");
    assert_eq!(RUNS.load(SeqCst), 1);

    // Heard again, A's next write reaches B's memory as soon as it is applied.
    faults.set_drop_messages(false);
    let dropped = faults.dropped_messages();
    let applied = stats(&b).applied;
    a.cache("users")
        .set("user:1", "user 1 v2".to_string())
        .await;
    until("B applying A's announcement", || {
        stats(&b).applied > applied
    })
    .await;
    assert_eq!(b.scope(name(1)).await, "user 1 v2");
    assert_eq!(faults.dropped_messages(), dropped);
    assert_eq!(RUNS.load(SeqCst), 1);
}
