//! The memory tier through the programmatic API: expiry, bounds, eviction, the sweeper, stats.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_core::{CacheManager, Clock, EntryOptions, Eviction, Policy};

fn manager_with(policy: Policy, clock: Clock) -> CacheManager {
    CacheManager::builder()
        .default_policy(policy)
        .clock(clock)
        .build()
}

#[tokio::test(start_paused = true)]
async fn entries_expire_on_tokios_paused_clock() {
    let m = manager_with(Policy::new().ttl_secs(60), Clock::tokio());
    let c = m.cache("users");
    c.set("user:1", 1_u32).await;
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(c.get::<u32>("user:1").await, Some(1));
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        c.get::<u32>("user:1").await,
        None,
        "an expired entry is never returned"
    );
}

#[tokio::test(start_paused = true)]
async fn the_maintenance_thread_sweeps_by_the_paused_clock_not_real_time() {
    let m = manager_with(
        Policy::new().ttl(Duration::from_millis(100)),
        Clock::tokio(),
    );
    let c = m.cache("paused");
    c.set("k", 1_u32).await;
    // Real time passes (a slow machine) while the paused clock stands still.
    std::thread::sleep(Duration::from_millis(200));
    // What the maintenance thread does, on a thread outside this runtime. It read tokio's clock
    // there as real time, and dropped the entry 100 ms into a test that had not moved time.
    let sweep = || {
        let m = m.clone();
        std::thread::spawn(move || m.run_pending_maintenance())
            .join()
            .unwrap()
    };
    sweep();
    assert_eq!(c.stats().expirations, 0, "expired by real time");
    assert_eq!(c.get::<u32>("k").await, Some(1));
    tokio::time::advance(Duration::from_millis(100)).await;
    sweep();
    assert_eq!(c.stats().expirations, 1, "expired by the paused clock");
}

#[tokio::test(start_paused = true)]
async fn per_entry_ttl_overrides_the_policy() {
    let m = manager_with(Policy::new().ttl_secs(3600), Clock::tokio());
    let c = m.cache("sessions");
    c.set_with(
        "short",
        1_u8,
        EntryOptions::new().ttl(Duration::from_secs(5)),
    )
    .await;
    c.set("long", 2_u8).await;
    tokio::time::advance(Duration::from_secs(6)).await;
    assert_eq!(c.get::<u8>("short").await, None);
    assert_eq!(c.get::<u8>("long").await, Some(2));
}

#[test]
fn entries_never_read_again_are_reclaimed_by_the_sweeper() {
    let clock = Clock::manual();
    let m = manager_with(
        Policy::new().ttl_secs(10).max_entries(1_000_000),
        clock.clone(),
    );
    let c = m.cache("leaky");
    for i in 0..10_000 {
        c.blocking().set(&format!("k{i}"), i);
    }
    assert_eq!(c.len(), 10_000);
    clock.advance(Duration::from_secs(11));
    m.run_pending_maintenance();
    assert_eq!(c.len(), 0, "expired entries are dropped without being read");
    assert_eq!(c.stats().expirations, 10_000);
}

#[test]
fn the_background_sweeper_runs_without_being_asked() {
    // Real time: the maintenance thread sweeps every 50 ms; poll its effect with a deadline.
    let m = manager_with(
        Policy::new().ttl(Duration::from_millis(20)),
        Clock::coarse(),
    );
    let c = m.cache("bg");
    for i in 0..100 {
        c.blocking().set(&format!("k{i}"), i);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !c.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "sweeper did not run: {} left",
            c.len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(c.stats().expirations, 100);
}

#[test]
fn the_entry_bound_holds_with_100k_distinct_keys() {
    for eviction in [Eviction::Lru, Eviction::Lfu, Eviction::S3Fifo] {
        let m = manager_with(
            Policy::new().max_entries(1_000).eviction(eviction),
            Clock::manual(),
        );
        let c = m.cache("bounded");
        for i in 0..100_000u64 {
            c.blocking().set(&format!("key:{i}"), i);
            assert!(c.len() <= 1_000, "{eviction:?}: {} entries", c.len());
        }
        let s = c.stats();
        assert_eq!(s.entries, 1_000, "{eviction:?}");
        assert_eq!(s.evictions, 99_000, "{eviction:?}");
    }
}

#[test]
fn the_entry_bound_holds_under_concurrent_inserts() {
    let m = manager_with(Policy::new().max_entries(500), Clock::manual());
    let c = m.cache("contended");
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let c = c.clone();
            s.spawn(move || {
                for i in 0..25_000u64 {
                    c.blocking().set(&format!("{t}:{i}"), i);
                }
            });
        }
    });
    assert_eq!(c.len(), 500);
    assert_eq!(c.stats().evictions, 100_000 - 500);
}

#[test]
fn the_weight_bound_holds() {
    let m = manager_with(
        Policy::new()
            .max_entries(1_000_000)
            .max_weight(10_000)
            .weigher(|_, v| v.downcast_ref::<String>().map_or(1, |s| s.len() as u64)),
        Clock::manual(),
    );
    let c = m.cache("weighed");
    for i in 0..1_000 {
        c.blocking().set(&format!("k{i}"), "x".repeat(100));
    }
    let s = c.stats();
    assert!(s.weight <= 10_000, "weight {}", s.weight);
    assert_eq!(s.entries, 100);
}

#[test]
fn lru_keeps_what_was_read() {
    let m = manager_with(
        Policy::new().max_entries(3).eviction(Eviction::Lru),
        Clock::manual(),
    );
    let c = m.cache("lru").blocking().get_or_insert_with("a", || 1);
    assert_eq!(c, 1);
    let cache = m.cache("lru");
    let b = cache.blocking();
    b.set("b", 2);
    b.set("c", 3);
    assert_eq!(b.get::<i32>("a"), Some(1));
    b.set("d", 4);
    assert_eq!(b.get::<i32>("b"), None, "b was least recently used");
    assert_eq!(b.get::<i32>("a"), Some(1));
    assert_eq!(b.get::<i32>("c"), Some(3));
    assert_eq!(b.get::<i32>("d"), Some(4));
}

#[test]
fn lfu_keeps_what_is_read_often() {
    let m = manager_with(
        Policy::new().max_entries(3).eviction(Eviction::Lfu),
        Clock::manual(),
    );
    let cache = m.cache("lfu");
    let b = cache.blocking();
    b.set("a", 1);
    b.set("b", 2);
    b.set("c", 3);
    for _ in 0..5 {
        b.get::<i32>("a");
        b.get::<i32>("c");
    }
    b.get::<i32>("b");
    b.set("d", 4);
    assert_eq!(b.get::<i32>("b"), None, "b was least frequently used");
    assert_eq!(b.get::<i32>("a"), Some(1));
    assert_eq!(b.get::<i32>("c"), Some(3));
}

/// Reads a hot set of 50 keys three times, then writes a one-pass scan of 1,000 keys through a
/// cache bounded to about 100: how many of the hot keys are still there.
fn hot_keys_kept_after_a_scan(policy: Policy) -> usize {
    let m = manager_with(policy.eviction(Eviction::S3Fifo), Clock::manual());
    let cache = m.cache("scan");
    let b = cache.blocking();
    for i in 0..50 {
        b.set(&format!("hot{i}"), i);
    }
    for _ in 0..3 {
        for i in 0..50 {
            assert_eq!(b.get::<i32>(&format!("hot{i}")), Some(i));
        }
    }
    for i in 0..1_000 {
        b.set(&format!("scan{i}"), i);
    }
    (0..50)
        .filter(|i| b.get::<i32>(&format!("hot{i}")).is_some())
        .count()
}

#[test]
fn s3fifo_resists_a_scan() {
    let kept = hot_keys_kept_after_a_scan(Policy::new().max_entries(100));
    assert_eq!(kept, 50, "a one-pass scan must not flush the hot set");
}

#[test]
fn s3fifo_resists_a_scan_under_a_weight_bound() {
    // Bounded by weight (100 entries of weight 1) rather than by count.
    let kept = hot_keys_kept_after_a_scan(Policy::new().max_weight(100).weigher(|_, _| 1));
    assert_eq!(kept, 50, "a one-pass scan must not flush the hot set");
}

#[test]
fn a_value_read_as_another_type_is_a_miss() {
    let m = CacheManager::default();
    let cache = m.cache("typed");
    cache.blocking().set("k", 1_u32);
    assert_eq!(cache.blocking().get::<u64>("k"), None);
    assert_eq!(cache.blocking().get::<u32>("k"), Some(1));
}

/// Values of up to 24, 88 and 184 bytes are kept in three maps (size classes); a key lives in one
/// of them, whatever the types stored under it over time.
#[test]
fn a_key_keeps_one_entry_across_value_sizes() {
    let m = manager_with(Policy::new().max_entries(100), Clock::manual());
    let cache = m.cache("classes");
    let b = cache.blocking();
    let row = [7_u64; 16]; // 128 bytes: the large class
    let pair = (String::from("a"), 5_u64); // 32 bytes: the medium class
    let big = vec![1_u8; 1000]; // a Vec is 24 bytes: the small class
    b.set("k", 1_u64);
    b.set("k", row);
    assert_eq!(cache.len(), 1, "moved to the large class, not copied");
    assert_eq!(b.get::<[u64; 16]>("k"), Some(row));
    assert_eq!(b.get::<u64>("k"), None, "the small value was replaced");
    b.set("k", pair.clone());
    assert_eq!(cache.len(), 1);
    assert_eq!(b.get::<(String, u64)>("k"), Some(pair));
    assert_eq!(
        b.get::<[u64; 16]>("k"),
        None,
        "the large value was replaced"
    );
    b.set("k", big.clone());
    assert_eq!(cache.len(), 1);
    assert_eq!(b.get::<Vec<u8>>("k"), Some(big));
    assert_eq!(
        b.get::<(String, u64)>("k"),
        None,
        "the medium value was replaced"
    );
    b.set("other", [9_u64; 16]);
    assert!(b.delete("other"));
    assert_eq!(b.get::<[u64; 16]>("other"), None);
    assert_eq!(cache.len(), 1);
    // Eviction reaches every class.
    for i in 0..200_u64 {
        match i % 3 {
            0 => b.set(&format!("s{i}"), i),
            1 => b.set(&format!("m{i}"), (i.to_string(), i)),
            _ => b.set(&format!("l{i}"), [i; 16]),
        }
    }
    assert!(cache.len() <= 100, "{} entries", cache.len());
    let s = cache.stats();
    assert_eq!(s.entries as usize, cache.len());
    assert_eq!(
        s.evictions,
        201 - s.entries,
        "every entry beyond the bound was evicted"
    );
}

#[test]
fn stats_count_exactly() {
    let m = manager_with(Policy::new().max_entries(2), Clock::manual());
    let cache = m.cache("counted");
    let b = cache.blocking();
    b.set("a", 1);
    b.get::<i32>("a");
    b.get::<i32>("a");
    b.get::<i32>("zz");
    b.set("b", 2);
    b.set("c", 3);
    assert!(b.delete("c"));
    let s = cache.stats();
    assert_eq!(
        (
            s.hits,
            s.misses,
            s.inserts,
            s.evictions,
            s.invalidations,
            s.entries
        ),
        (2, 1, 3, 1, 1, 1)
    );
    assert_eq!(m.stats().len(), 1);
}

#[tokio::test]
async fn invalidation_by_key_cache_and_all() {
    let m = CacheManager::default();
    m.cache("a").set("k1", 1).await;
    m.cache("a").set("k2", 2).await;
    m.cache("b").set("k1", 3).await;
    assert!(m.invalidate_key("a", "k1").await);
    assert!(!m.invalidate_key("a", "k1").await);
    assert_eq!(m.cache("a").get::<i32>("k2").await, Some(2));
    assert_eq!(m.invalidate_cache("a").await, 1);
    assert_eq!(m.cache("b").get::<i32>("k1").await, Some(3));
    assert_eq!(m.invalidate_all().await, 1);
    assert!(m.cache("b").is_empty());
}

#[tokio::test]
async fn tags_remove_exactly_their_entries() {
    let m = CacheManager::default();
    let c = m.cache("tagged");
    c.set_with("user:1", 1, EntryOptions::new().tag("user:1"))
        .await;
    c.set_with("user:1:videos", 10, EntryOptions::new().tag("user:1"))
        .await;
    c.set_with("user:2", 2, EntryOptions::new().tag("user:2"))
        .await;
    assert_eq!(c.invalidate_tag("user:1").await, 2);
    assert_eq!(c.get::<i32>("user:1").await, None);
    assert_eq!(c.get::<i32>("user:1:videos").await, None);
    assert_eq!(c.get::<i32>("user:2").await, Some(2));
    assert_eq!(c.invalidate_tag("user:1").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_or_insert_with_runs_once_for_1000_concurrent_callers() {
    let m = CacheManager::default();
    let runs = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..1_000 {
        let c = m.cache("flight");
        let runs = runs.clone();
        tasks.push(tokio::spawn(async move {
            c.get_or_insert_with("cold", || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                7_u64
            })
            .await
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 7);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(m.cache("flight").stats().inserts, 1);
}

#[tokio::test]
async fn try_get_or_insert_with_does_not_store_errors() {
    let m = CacheManager::default();
    let c = m.cache("fallible");
    let r: Result<u8, &str> = c
        .try_get_or_insert_with("k", || async { Err("db down") })
        .await;
    assert_eq!(r, Err("db down"));
    assert!(c.is_empty());
    let r: Result<u8, &str> = c.try_get_or_insert_with("k", || async { Ok(1) }).await;
    assert_eq!(r, Ok(1));
    assert_eq!(c.get::<u8>("k").await, Some(1));
}

#[test]
fn blocking_single_flight_across_threads() {
    let m = CacheManager::default();
    let runs = AtomicUsize::new(0);
    let c = m.cache("threads");
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let v = c.blocking().get_or_insert_with("k", || {
                    runs.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(50));
                    5
                });
                assert_eq!(v, 5);
            });
        }
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn install_refuses_a_second_global() {
    // The only test in this binary that touches the global manager.
    let first = CacheManager::builder()
        .cache("users", Policy::new().ttl_secs(5))
        .install();
    assert!(first.is_ok());
    let second = CacheManager::builder().install();
    let err = second.unwrap_err();
    assert!(err.to_string().contains("already"));
    assert_eq!(
        CacheManager::global().policy("users").ttl_value(),
        Some(Duration::from_secs(5))
    );
}

#[test]
fn a_blocking_call_on_a_current_thread_runtime_does_not_wait_for_a_leader_of_that_thread() {
    // The leader is an async task of the runtime whose only thread the blocking call occupies:
    // waiting for it would wait for ever. The blocking call computes on its own instead.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let answers = runtime.block_on(async {
            let cache = CacheManager::builder().build().cache("c");
            let leader = tokio::spawn({
                let cache = cache.clone();
                async move {
                    cache
                        .get_or_insert_with("k", || async {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            1u32
                        })
                        .await
                }
            });
            // The leader starts and awaits its sleep.
            tokio::task::yield_now().await;
            let blocking = cache.blocking().get_or_insert_with("k", || 2u32);
            (blocking, leader.await.unwrap())
        });
        let _ = tx.send(answers);
    });
    let answers = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the blocking call waited for a leader that could not run");
    assert_eq!(answers, (2, 1), "each computed its own value");
}

#[tokio::test(start_paused = true)]
async fn setting_one_key_does_not_split_another_keys_single_flight() {
    let cache = CacheManager::builder().build().cache("c");
    let runs = Arc::new(AtomicUsize::new(0));
    let load = |cache: cache_core::Cache, runs: Arc<AtomicUsize>| async move {
        cache
            .get_or_insert_with("b", || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                1u32
            })
            .await
    };
    let first = tokio::spawn(load(cache.clone(), runs.clone()));
    tokio::time::sleep(Duration::from_millis(1)).await;
    cache.set("a", 5u32).await;
    let second = tokio::spawn(load(cache.clone(), runs.clone()));
    assert_eq!((first.await.unwrap(), second.await.unwrap()), (1, 1));
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the second caller joined the first's flight"
    );
}

/// A caller of `key` in its own task, counting body runs; the body waits for `gate`.
async fn gated_load(
    cache: cache_core::Cache,
    key: &'static str,
    runs: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
) -> u32 {
    cache
        .get_or_insert_with(key, || async move {
            let run = runs.fetch_add(1, Ordering::SeqCst) as u32 + 1;
            let _ = gate.acquire().await.unwrap();
            run
        })
        .await
}

#[tokio::test]
async fn invalidating_other_keys_does_not_split_a_keys_single_flight() {
    let m = CacheManager::builder().build();
    let cache = m.cache("c");
    cache.set("a", 5u32).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let first = tokio::spawn(gated_load(cache.clone(), "b", runs.clone(), gate.clone()));
    while runs.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    m.invalidate_key("c", "a").await;
    cache.invalidate_tag("unrelated").await;
    let second = tokio::spawn(gated_load(cache.clone(), "b", runs.clone(), gate.clone()));
    // Until it has joined, or has run the body itself.
    while cache.stats().coalesced == 0 && runs.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(2);
    assert_eq!((first.await.unwrap(), second.await.unwrap()), (1, 1));
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the second caller joined");
}

#[tokio::test]
async fn a_caller_after_an_invalidation_of_its_key_leads_a_new_flight() {
    let m = CacheManager::builder().build();
    let cache = m.cache("c");
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let first = tokio::spawn(gated_load(cache.clone(), "b", runs.clone(), gate.clone()));
    while runs.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    m.invalidate_key("c", "b").await;
    let second = tokio::spawn(gated_load(cache.clone(), "b", runs.clone(), gate.clone()));
    while runs.load(Ordering::SeqCst) < 2 {
        tokio::task::yield_now().await;
    }
    gate.add_permits(2);
    assert_eq!(
        (first.await.unwrap(), second.await.unwrap()),
        (1, 2),
        "the value begun before the invalidation is not given to a caller after it"
    );
    assert_eq!(cache.stats().coalesced, 0);
}

#[test]
fn an_entry_heavier_than_max_weight_does_not_flush_the_others() {
    for eviction in [Eviction::Lru, Eviction::Lfu, Eviction::S3Fifo] {
        let m = manager_with(
            Policy::new()
                .max_weight(1_000)
                .eviction(eviction)
                .weigher(|_, v| v.downcast_ref::<String>().map_or(1, |s| s.len() as u64)),
            Clock::manual(),
        );
        let c = m.cache("weighed");
        for i in 0..10 {
            c.blocking().set(&format!("k{i}"), "x".repeat(50));
        }
        c.blocking().set("huge", "x".repeat(2_000));
        assert_eq!(c.blocking().get::<String>("huge"), None, "{eviction:?}");
        let s = c.stats();
        assert_eq!(
            s.entries, 10,
            "{eviction:?}: the others were evicted for it"
        );
        assert_eq!(s.weight, 500, "{eviction:?}");
        assert_eq!(s.evictions, 1, "{eviction:?}");
    }
}

#[test]
fn the_policys_jitter_spreads_the_expiry_of_values_set_together() {
    // A warmer's `Cache::set`s are the batch that jitter exists for (docs/freshness.md).
    let clock = Clock::manual();
    let m = manager_with(Policy::new().ttl_secs(100).jitter(50), clock.clone());
    let c = m.cache("warmed");
    for i in 0..200u32 {
        c.blocking().set(&format!("k{i}"), i);
    }
    let alive = |c: &cache_core::Cache| {
        (0..200u32)
            .filter(|i| c.blocking().get::<u32>(&format!("k{i}")).is_some())
            .count()
    };
    clock.advance(Duration::from_secs(49));
    assert_eq!(alive(&c), 200, "jitter shortens a TTL by at most 50%");
    clock.advance(Duration::from_secs(50));
    // Each survives to 99 s with probability 1/50 under jitter; all 200 did without it.
    assert!(alive(&c) < 200, "every entry set together expires together");
}

#[test]
fn get_answers_an_entry_in_its_refresh_ahead_window_and_counts_one_past_its_ttl() {
    let clock = Clock::manual();
    let m = manager_with(
        Policy::new()
            .ttl_secs(10)
            .refresh_ahead(cache_core::RefreshAhead::After(0.5))
            .stale(Duration::from_secs(60)),
        clock.clone(),
    );
    let c = m.cache("ahead");
    let b = c.blocking();
    assert_eq!(b.get_or_insert_with("k", || 1_u32), 1);
    m.reset_stats();
    // Past the refresh-ahead point, before the TTL: still live. `get` used to answer None.
    clock.advance(Duration::from_secs(6));
    assert_eq!(b.get::<u32>("k"), Some(1), "fresh for 4 more seconds");
    // Past the TTL, kept for the stale window: not served by a plain read, and a miss (it was
    // counted as neither).
    clock.advance(Duration::from_secs(5));
    assert_eq!(b.get::<u32>("k"), None);
    let s = c.stats();
    assert_eq!((s.hits, s.misses), (1, 1), "{s:?}");
}

/// A cached computation that asks for its own key (two functions sharing a key template, one
/// calling the other) cannot wait for itself: the inner call computes on its own.
#[tokio::test]
async fn a_computation_asking_for_its_own_key_does_not_wait_for_itself() {
    let cache = CacheManager::builder().build().cache("c");
    let inner_cache = cache.clone();
    let outer = cache.get_or_insert_with("user:1", || async move {
        inner_cache
            .get_or_insert_with("user:1", || async { 1u32 })
            .await
            + 1
    });
    let value = tokio::time::timeout(Duration::from_secs(10), outer)
        .await
        .expect("the inner call waited for the outer one, which waits for it");
    assert_eq!(value, 2, "the outer value is the one stored last");
    assert_eq!(cache.get::<u32>("user:1").await, Some(2));
}

#[test]
fn a_blocking_computation_asking_for_its_own_key_does_not_wait_for_itself() {
    let cache = CacheManager::builder().build().cache("c");
    let (done, finished) = std::sync::mpsc::channel();
    let worker = std::thread::spawn({
        let cache = cache.clone();
        move || {
            let value = cache.blocking().get_or_insert_with("user:1", || {
                cache.blocking().get_or_insert_with("user:1", || 1u32) + 1
            });
            done.send(value).unwrap();
        }
    });
    let value = finished
        .recv_timeout(Duration::from_secs(10))
        .expect("the inner call waited for the outer one, which waits for it");
    worker.join().unwrap();
    assert_eq!(value, 2);
}
