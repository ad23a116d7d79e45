//! Values `Cache::get` promotes from the remote tier into memory: they go with the invalidations
//! that remove them remotely, including a tag invalidation (the remote tier does not say which
//! tags a value carries) and one that overlaps the read. The remote tier is the in-process
//! `MemoryBackend`, behind a `FaultyBackend` that holds one read's answer back where the
//! interleaving matters, so it is exact rather than hoped for.

use std::time::Duration;

use cache_core::remote::backplane::BackplaneStats;
use cache_core::testing::{FaultyBackend, MemoryBackend, SharedBackend};
use cache_core::{CacheManager, EntryOptions, Policy, Resilience, Tier};

/// Waits (bounded) until `m`'s backplane stats satisfy `done`: its first subscription clears the
/// memory tiers, and a message from another instance evicts, neither of which may happen in the
/// middle of a test.
async fn backplane(m: &CacheManager, what: &str, done: impl Fn(&BackplaneStats) -> bool) {
    for _ in 0..1_000 {
        if m.backplane_stats().is_some_and(|s| done(&s)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the backplane never {what}");
}

#[tokio::test]
async fn a_copy_read_before_a_delete_is_not_kept_in_memory_after_it() {
    let shared = SharedBackend::new(MemoryBackend::new());
    let gated = FaultyBackend::new(shared.clone());
    let faults = gated.faults();
    let reader = CacheManager::builder()
        .remote(gated)
        // Long enough that a held read is never cut by the timeout on a loaded machine.
        .resilience(Resilience::new().timeout(Duration::from_secs(30)))
        .cache("items", Policy::new().tier(Tier::Hybrid))
        .build();
    let writer = CacheManager::builder()
        .remote(shared)
        .cache("items", Policy::new().tier(Tier::Remote))
        .build();
    backplane(&reader, "subscribed", |s| s.subscriptions > 0).await;
    writer.cache("items").set("item:1", 1u64).await;

    let held = faults.hold_next_get();
    let items = reader.cache("items");
    let read = tokio::spawn({
        let items = items.clone();
        async move { items.get::<u64>("item:1").await }
    });
    held.reached().await;
    // The remote tier answered the read with the old value; now the key is deleted, and the
    // delete returns before the read gets its answer.
    assert!(items.delete("item:1").await);
    held.release();
    // The read was concurrent with the delete: either answer is right for it.
    assert!(matches!(read.await.unwrap(), Some(1) | None));

    assert_eq!(
        items.get::<u64>("item:1").await,
        None,
        "a read after the delete returned must not see the old value"
    );
}

#[tokio::test]
async fn a_promoted_copy_goes_with_a_tag_invalidation_of_its_value() {
    let shared = SharedBackend::new(MemoryBackend::new());
    let instance = || {
        CacheManager::builder()
            .remote(shared.clone())
            .cache("items", Policy::new().tier(Tier::Hybrid))
            .build()
    };
    let (a, b) = (instance(), instance());
    backplane(&a, "subscribed", |s| s.subscriptions > 0).await;
    backplane(&b, "subscribed", |s| s.subscriptions > 0).await;
    a.cache("items")
        .set_with("item:1", 1u64, EntryOptions::new().tag("owner:7"))
        .await;
    // A's message about its write, which would evict B's copy if it came after B's read.
    backplane(&b, "delivered A's message", |s| s.applied > 0).await;
    // B reads A's value from the remote tier and keeps a copy in memory.
    assert_eq!(b.cache("items").get::<u64>("item:1").await, Some(1));
    assert_eq!(b.cache("items").len(), 1);

    b.invalidate_tag("owner:7").await;
    assert_eq!(
        b.cache("items").get::<u64>("item:1").await,
        None,
        "B's copy was removed with the tag, not served until its TTL"
    );
}

/// `Cache::set` while a computation of the key writes its value through to the remote tier: the
/// computed value was read before the set, and its write, checked against the invalidation
/// epochs just before the set moved them, was still on its way when the set's own write landed.
/// It then landed over the set's value, and every read after the set had returned got the older
/// one from the remote tier. The remote tier's write is held back by a delay switched on as the
/// body returns, so the interleaving is exact.
#[tokio::test(start_paused = true)]
async fn a_value_computed_before_a_set_does_not_land_over_it_remotely() {
    use cache_core::testing::Fault;

    let backend = FaultyBackend::new(MemoryBackend::new());
    let faults = backend.faults();
    let m = CacheManager::builder()
        .remote(backend)
        .resilience(Resilience::new().timeout(Duration::from_secs(30)))
        .cache("items", Policy::new().tier(Tier::Remote))
        .build();
    let cache = m.cache("items");
    let (computed, done) = tokio::sync::oneshot::channel();
    let leader = tokio::spawn({
        let (cache, faults) = (cache.clone(), faults.clone());
        async move {
            cache
                .get_or_insert_with("k", move || async move {
                    // The database says 1; the write of this value to the remote tier is slow.
                    faults.set(Fault::Delay(Duration::from_secs(1)));
                    let _ = computed.send(());
                    1_u64
                })
                .await
        }
    });
    // On this one thread the leader has gone on to its (delayed) remote write by now.
    done.await.unwrap();
    faults.clear();
    cache.set("k", 2_u64).await;
    assert_eq!(
        leader.await.unwrap(),
        1,
        "the leader's caller gets its value"
    );
    assert_eq!(
        cache.get::<u64>("k").await,
        Some(2),
        "a read after the set returned gets the set's value"
    );
}

/// A read that starts while `Cache::set` is writing, and finds the old value in the remote tier
/// before the new one lands: a caller that starts after the set returned must not be handed that
/// old value by joining the read's flight. (`set` moved the key's epochs only before its write, so
/// the flight, registered after that, was still joinable; `tests/tests/linearizable_redis.rs`
/// caught it about once in ten loaded runs.) The set's write is slowed and the read's answer held,
/// so the interleaving is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_overlapped_a_set_hands_no_old_value_to_callers_after_it() {
    use cache_core::testing::Fault;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

    for tier in [Tier::Remote, Tier::Hybrid] {
        let shared = SharedBackend::new(MemoryBackend::new());
        let backend = FaultyBackend::new(shared.clone());
        let faults = backend.faults();
        let m = CacheManager::builder()
            .remote(backend)
            .resilience(Resilience::new().timeout(Duration::from_secs(30)))
            .cache("items", Policy::new().tier(tier))
            .build();
        if tier == Tier::Hybrid {
            backplane(&m, "subscribed", |s| s.subscriptions > 0).await;
        }
        // The old value, written by another instance: in the remote tier only, so that the
        // reads below go there.
        let writer = CacheManager::builder()
            .remote(shared)
            .cache("items", Policy::new().tier(Tier::Remote))
            .build();
        writer.cache("items").set("item:1", 1u64).await;
        if tier == Tier::Hybrid {
            // Its announcement evicts (nothing) and moves the epochs: done before the test.
            backplane(&m, "heard the writer", |s| s.applied >= 1).await;
        }
        let items = m.cache("items");

        // The set moves the epochs, then its write to the remote tier is slowed.
        faults.set(Fault::Delay(Duration::from_millis(300)));
        let set = tokio::spawn({
            let items = items.clone();
            async move { items.set("item:1", 2u64).await }
        });
        while faults.counts().delayed == 0 {
            tokio::task::yield_now().await;
        }
        faults.clear();
        // A read registers its flight after the set's first epoch move, and reads the old value,
        // which the remote tier still holds; its answer is held.
        let held = faults.hold_next_get();
        let body_runs = Arc::new(AtomicU64::new(0));
        let read = || {
            let (items, runs) = (items.clone(), body_runs.clone());
            tokio::spawn(async move {
                items
                    .get_or_insert_with("item:1", || async move {
                        runs.fetch_add(1, SeqCst);
                        0u64
                    })
                    .await
            })
        };
        let first = read();
        held.reached().await;
        set.await.unwrap();

        // The set has returned: a new caller reads for itself, while the old read is still held.
        // (Joined to the old read, it would wait for it, and for ever here.)
        let later = tokio::time::timeout(Duration::from_secs(10), read())
            .await
            .unwrap_or_else(|_| panic!("{tier:?}: a read after the set waited for the old read"))
            .unwrap();
        assert_eq!(
            later, 2,
            "{tier:?}: a read after the set returned sees the set's value"
        );
        held.release();
        assert_eq!(
            first.await.unwrap(),
            1,
            "{tier:?}: the overlapping read may see the old value"
        );
        assert_eq!(
            items.get::<u64>("item:1").await,
            Some(2),
            "{tier:?}: the old value was not stored over the set's"
        );
        assert_eq!(
            body_runs.load(SeqCst),
            0,
            "{tier:?}: every read found a value"
        );
    }
}
