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
