//! A subscriber that applies backplane messages more slowly than they arrive, on a real
//! `redis-server`: its backlog stays bounded, and what it could not keep up with is covered by
//! clearing its memory tiers (docs/hybrid.md, guarantee 3), so nothing it serves afterwards is
//! stale.
//!
//! Two managers on one namespace stand for two instances. B's applier is stalled on purpose, a
//! stand-in for a pattern or cache invalidation of a huge memory tier: applying a message looks
//! the cache up in the manager's list of caches, and the test holds that list's lock by creating
//! a cache whose remote tier (made under the lock) waits on a gate.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cache_core::remote::backplane::{Backplane, BackplaneStats};
use cache_core::remote::{BoxFuture, RemoteTier};
use cache_core::{CacheManager, Policy, RemoteBackend, RemoteError, Resilience, Tier};
use cache_redis::{RedisBackend, RedisConfig};
use tests::RedisServer;

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

fn config(namespace: &str) -> RedisConfig {
    RedisConfig::standalone(server().url()).namespace(namespace)
}

/// A manager with one hybrid cache, `items`, and a remote-only one, `stall`, whose backplane is
/// subscribed.
async fn instance(backend: impl RemoteBackend) -> CacheManager {
    let manager = CacheManager::builder()
        .remote(backend)
        .cache("items", Policy::new().ttl_secs(600).tier(Tier::Hybrid))
        .cache("stall", Policy::new().ttl_secs(600).tier(Tier::Remote))
        .resilience(Resilience::new().timeout(Duration::from_secs(2)))
        .build();
    tests::backplane_subscribed(&manager).await;
    manager
}

/// Waits (at most 10 s) until the manager's backplane counters satisfy `f`.
async fn backplane_reaches(
    manager: &CacheManager,
    what: &str,
    f: impl Fn(&BackplaneStats) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = manager.backplane_stats().expect("a backplane");
        if f(&stats) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: backplane stuck at {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Holds whoever calls [`Gate::hold`] until it is opened.
#[derive(Default)]
struct Gate {
    /// Notified when a caller starts waiting.
    entered: tokio::sync::Notify,
    open: Mutex<bool>,
    opened: Condvar,
    /// Set if a caller gave up waiting (the test failed before opening the gate).
    gave_up: AtomicBool,
}

impl Gate {
    fn hold(&self) {
        self.entered.notify_one();
        let open = self.open.lock().unwrap();
        // Bounded, so a failing test ends instead of leaving a thread stuck.
        let (_open, waited) = self
            .opened
            .wait_timeout_while(open, Duration::from_secs(30), |open| !*open)
            .unwrap();
        if waited.timed_out() {
            self.gave_up.store(true, Ordering::SeqCst);
        }
    }

    fn release(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

/// Redis, except that making the remote tier of the cache `stall` waits on the gate.
struct Stalling {
    redis: RedisBackend,
    gate: Arc<Gate>,
}

impl RemoteBackend for Stalling {
    fn tier(&self, cache: &str) -> Arc<dyn RemoteTier> {
        if cache == "stall" {
            self.gate.hold();
        }
        self.redis.tier(cache)
    }
    fn delete_tag<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Result<u64, RemoteError>> {
        self.redis.delete_tag(tag)
    }
    fn clear_all(&self) -> BoxFuture<'_, Result<u64, RemoteError>> {
        self.redis.clear_all()
    }
    fn ping(&self) -> BoxFuture<'_, Result<Duration, RemoteError>> {
        self.redis.ping()
    }
    fn describe(&self) -> String {
        self.redis.describe()
    }
    fn backplane(&self) -> Option<Arc<dyn Backplane>> {
        self.redis.backplane()
    }
}

/// Messages A sends while B is stalled: far more than B may queue.
const BURST: u64 = 4_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_too_slow_for_its_messages_clears_its_memory_instead_of_queueing_them() {
    let namespace = "slow-subscriber";
    let gate = Arc::new(Gate::default());
    let a = instance(RedisBackend::new(config(namespace))).await;
    let b = instance(Stalling {
        redis: RedisBackend::new(config(namespace)),
        gate: gate.clone(),
    })
    .await;
    let (ca, cb) = (a.cache("items"), b.cache("items"));
    let runs = AtomicU64::new(0);
    let read = |key: &'static str| {
        let cb = cb.clone();
        let runs = &runs;
        async move {
            cb.get_or_insert_with(key, || async move {
                runs.fetch_add(1, Ordering::SeqCst);
                format!("computed {key}")
            })
            .await
        }
    };

    // B holds a value A will change, and one no message names.
    ca.set("changed", "old".to_owned()).await;
    backplane_reaches(&b, "A's first write", |s| s.applied >= 1).await;
    assert_eq!(read("changed").await, "old");
    assert_eq!(read("kept").await, "computed kept");
    assert_eq!((cb.len(), runs.load(Ordering::SeqCst)), (2, 1));
    let applied_before = b.backplane_stats().unwrap().applied;

    // B's list of caches is locked until the gate opens: its applier stalls on A's next message.
    let creating = {
        let b = b.clone();
        tokio::task::spawn_blocking(move || drop(b.cache("stall")))
    };
    tokio::time::timeout(Duration::from_secs(10), gate.entered.notified())
        .await
        .expect("B never started creating the cache `stall`");

    // Meanwhile A goes on: a burst of invalidations, then a change of a key B holds.
    for i in 0..BURST {
        ca.delete(&format!("gone:{i}")).await;
    }
    ca.set("changed", "new".to_owned()).await;
    let sent = BURST + 1;
    // A payload that is not a message, published after all of A's: once B counts it as
    // foreign, B's subscription has taken every message of A's off the connection.
    let marker = RedisBackend::new(config(namespace));
    marker
        .backplane()
        .expect("Redis offers a backplane")
        .publish(b"not a backplane message")
        .await
        .expect("published");
    backplane_reaches(
        &b,
        "B's subscription reading on while its applier is stalled",
        |s| s.foreign >= 1,
    )
    .await;

    gate.release();
    creating.await.unwrap();
    assert!(!gate.gave_up.load(Ordering::SeqCst));
    // Every message of A's is accounted for: applied one by one, or covered by a clear.
    backplane_reaches(&b, "B catching up", |s| {
        s.applied + s.overflowed >= applied_before + sent
    })
    .await;
    let stats = b.backplane_stats().unwrap();
    assert_eq!(
        stats.applied + stats.overflowed,
        applied_before + sent,
        "no message counted twice: {stats:?}"
    );
    assert_eq!(
        stats.applied,
        applied_before + 1,
        "only the message under way when the stall began was applied late: {stats:?}"
    );
    assert_eq!(
        stats.subscriptions, 1,
        "the subscription itself never dropped"
    );

    // B's memory tier was cleared: the value A changed is read from Redis, new, and the one no
    // message named is read from Redis too, without running the body again.
    assert_eq!(cb.len(), 0, "B's memory tier was cleared");
    assert_eq!(read("changed").await, "new");
    assert_eq!(read("kept").await, "computed kept");
    assert_eq!(runs.load(Ordering::SeqCst), 1);

    // After the gap, messages are applied one by one again.
    let applied = b.backplane_stats().unwrap().applied;
    ca.set("kept", "kept, new".to_owned()).await;
    backplane_reaches(&b, "A's write after the gap", |s| s.applied > applied).await;
    assert_eq!(read("kept").await, "kept, new");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
