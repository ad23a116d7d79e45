//! Values `Cache::get` promotes from the remote tier into memory: they go with the invalidations
//! that remove them remotely, including a tag invalidation (the remote tier does not say which
//! tags a value carries) and one that overlaps the read. The remote tier is the in-process
//! `MemoryBackend`, behind a gate that holds one read's answer back where the interleaving matters,
//! so it is exact rather than hoped for.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cache_core::remote::BoxFuture;
use cache_core::testing::{MemoryBackend, SharedBackend};
use cache_core::{
    CacheManager, EntryOptions, Policy, RemoteBackend, RemoteError, RemoteTier, Resilience, Tier,
};
use tokio::sync::{Notify, oneshot};

/// Holds back the answer of the next `get` once armed: the read has happened in the backend,
/// its bytes are on their way, and the caller does not have them yet.
#[derive(Clone, Default)]
struct Gate {
    armed: Arc<AtomicBool>,
    /// Told when the held read has its answer.
    held: Arc<Mutex<Option<oneshot::Sender<()>>>>,
    release: Arc<Notify>,
}

impl Gate {
    /// Arms the gate; the receiver fires once a read is held.
    fn arm(&self) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        *self.held.lock().unwrap() = Some(tx);
        self.armed.store(true, Ordering::SeqCst);
        rx
    }
}

struct GatedBackend {
    inner: SharedBackend,
    gate: Gate,
}

struct GatedTier {
    inner: Arc<dyn RemoteTier>,
    gate: Gate,
}

impl RemoteTier for GatedTier {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Vec<u8>>, RemoteError>> {
        Box::pin(async move {
            let answer = self.inner.get(key).await;
            if self.gate.armed.swap(false, Ordering::SeqCst) {
                let released = self.gate.release.notified();
                if let Some(held) = self.gate.held.lock().unwrap().take() {
                    let _ = held.send(());
                }
                released.await;
            }
            answer
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
        tags: &'a [Arc<str>],
    ) -> BoxFuture<'a, Result<(), RemoteError>> {
        self.inner.set(key, value, ttl, tags)
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, RemoteError>> {
        self.inner.delete(key)
    }

    fn delete_pattern<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>> {
        self.inner.delete_pattern(pattern)
    }

    fn clear<'a>(&'a self) -> BoxFuture<'a, Result<u64, RemoteError>> {
        self.inner.clear()
    }
}

impl RemoteBackend for GatedBackend {
    fn tier(&self, cache: &str) -> Arc<dyn RemoteTier> {
        Arc::new(GatedTier {
            inner: self.inner.tier(cache),
            gate: self.gate.clone(),
        })
    }

    fn delete_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>> {
        self.inner.delete_tag(tag)
    }

    fn clear_all(&self) -> BoxFuture<'_, Result<u64, RemoteError>> {
        self.inner.clear_all()
    }

    fn ping(&self) -> BoxFuture<'_, Result<Duration, RemoteError>> {
        self.inner.ping()
    }

    fn describe(&self) -> String {
        format!("gated {}", self.inner.describe())
    }
}

#[tokio::test]
async fn a_copy_read_before_a_delete_is_not_kept_in_memory_after_it() {
    let shared = SharedBackend::new(MemoryBackend::new());
    let gate = Gate::default();
    let reader = CacheManager::builder()
        .remote(GatedBackend {
            inner: shared.clone(),
            gate: gate.clone(),
        })
        // Long enough that a held read is never cut by the timeout on a loaded machine.
        .resilience(Resilience::new().timeout(Duration::from_secs(30)))
        .cache("items", Policy::new().tier(Tier::Hybrid))
        .build();
    let writer = CacheManager::builder()
        .remote(shared)
        .cache("items", Policy::new().tier(Tier::Remote))
        .build();
    writer.cache("items").set("item:1", 1u64).await;

    let held = gate.arm();
    let items = reader.cache("items");
    let read = tokio::spawn({
        let items = items.clone();
        async move { items.get::<u64>("item:1").await }
    });
    held.await.expect("the read reached the remote tier");
    // The remote tier answered the read with the old value; now the key is deleted, and the
    // delete returns before the read gets its answer.
    assert!(items.delete("item:1").await);
    gate.release.notify_one();
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
    // Without a backplane (the gate offers none): its first subscription would clear memory at a
    // moment of its own.
    let instance = || {
        CacheManager::builder()
            .remote(GatedBackend {
                inner: shared.clone(),
                gate: Gate::default(),
            })
            .cache("items", Policy::new().tier(Tier::Hybrid))
            .build()
    };
    let (a, b) = (instance(), instance());
    a.cache("items")
        .set_with("item:1", 1u64, EntryOptions::new().tag("owner:7"))
        .await;
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
