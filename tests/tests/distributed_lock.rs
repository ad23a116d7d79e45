//! Distributed single flight across real processes on a real `redis-server` (and a real
//! three-master cluster): on a cold key, one instance computes under a short Redis lock while the
//! others wait for its value.
//!
//! What is shown: 1,000 concurrent callers over 4 `cache_instance` processes, body 200 ms, run
//! the body once in total and all get the value (async and sync callers, standalone and
//! cluster); a lock holder killed with SIGKILL mid-body delays the others only until its lock
//! expires, and then exactly one survivor computes; with Redis stopped or frozen, callers compute
//! at once instead of waiting for a lock; a holder that is cancelled or panics releases its lock
//! at once, and one whose result is not cached (`Err`) lets a waiting instance compute without
//! waiting for the TTL, and so does a caller dropped while its `SET NX` is in flight; only a lock's
//! owner releases it, and the lock is not a value to pattern
//! invalidation or clearing.

mod hybrid_common;

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use cache_core::RemoteTier;
use cache_core::remote::{LockAttempt, LockToken};
use cache_core::testing::give_up_after;
use cache_redis::{RedisBackend, RedisConfig};
use hybrid_common::{Db, Instance, Options, Reply, Target};
use tests::{RedisCluster, RedisServer};

/// The tests of this file run one at a time: each runs up to four processes with hundreds of
/// callers, and on a two-core machine two such tests at once would measure the scheduler.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

/// The cache all instances use (see `cache_instance`).
const CACHE: &str = "items";
const NAMES: [&str; 4] = ["A", "B", "C", "D"];

fn start_all(db: &Db, options: &Options) -> Vec<Instance> {
    NAMES
        .iter()
        .map(|name| Instance::start(name, db, options))
        .collect()
}

/// Sends `command` to every instance first, so they all work at once, then collects the replies.
fn on_all(instances: &mut [Instance], command: &str) -> Vec<Reply> {
    for i in instances.iter_mut() {
        i.send(command);
    }
    instances.iter_mut().map(|i| i.reply(command)).collect()
}

/// Sums a stats counter over instances.
fn total(instances: &mut [Instance], field: &str) -> u64 {
    instances.iter_mut().map(|i| i.stats().num(field)).sum()
}

/// The 4 × 250 burst on a cold key: one body run in total, every caller gets the value.
fn burst_runs_once(target: Target, namespace: &str, command: &str) {
    let db = Db::new(namespace);
    db.write(7, "alpha");
    let options = Options::new(target, namespace).args(&["--body-delay-ms", "200"]);
    let mut instances = start_all(&db, &options);
    let started = Instant::now();
    let replies = on_all(&mut instances, &format!("{command} 7 250"));
    let took = started.elapsed();
    for r in &replies {
        assert_eq!(r.str("calls"), "250", "{}", r.line);
        assert_eq!(
            r.str("values"),
            "alpha:250",
            "every caller gets the value: {}",
            r.line
        );
    }
    let ran: u64 = replies.iter().map(|r| r.num("ran")).sum();
    let lines: Vec<&str> = replies.iter().map(|r| r.line.as_str()).collect();
    assert_eq!(
        ran, 1,
        "the body ran once across 4 processes × 250 callers: {lines:#?}"
    );
    assert_eq!(total(&mut instances, "lock_acquired"), 1, "one lock holder");
    assert_eq!(
        total(&mut instances, "lock_wait_timeouts"),
        0,
        "nobody gave up waiting"
    );
    println!(
        "{namespace}: 1,000 callers over 4 processes in {took:?}, {} instance(s) waited: {lines:#?}",
        total(&mut instances, "lock_waits")
    );
}

#[test]
fn a_cold_key_runs_its_body_once_across_four_processes() {
    let _serial = one_at_a_time();
    burst_runs_once(Target::Standalone(server().url()), "lockburst", "burst");
}

#[test]
fn sync_callers_run_the_body_once_across_four_processes() {
    let _serial = one_at_a_time();
    burst_runs_once(Target::Standalone(server().url()), "locksync", "sburst");
}

#[test]
fn a_cold_key_runs_its_body_once_across_four_processes_on_a_cluster() {
    let _serial = one_at_a_time();
    let cluster = RedisCluster::start();
    burst_runs_once(Target::Cluster(cluster.seed_urls()), "lockcluster", "burst");
}

/// Polls `what` every 5 ms until it holds; fails after `limit`. For conditions outside the test
/// process (another process's progress), which send no signal of their own.
fn until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_killed_lock_holder_delays_the_others_only_until_its_lock_expires() {
    let _serial = one_at_a_time();
    const LOCK_TTL: Duration = Duration::from_secs(1);
    let namespace = "lockkill";
    let db = Db::new(namespace);
    db.write(3, "beta");
    let ttl = LOCK_TTL.as_millis().to_string();
    let base = Options::new(Target::Standalone(server().url()), namespace);
    // The holder's body would take a minute; it is killed long before.
    let mut holder = Instance::start(
        "A",
        &db,
        &base
            .clone()
            .args(&["--lock-ttl-ms", &ttl, "--body-delay-ms", "60000"]),
    );
    let others_options = base.args(&[
        "--lock-ttl-ms",
        &ttl,
        "--body-delay-ms",
        "200",
        // Long enough that no survivor gives up before the successor's value arrives (the
        // default, twice the TTL, is also enough; this keeps a loaded machine from flaking).
        "--lock-wait-ms",
        "5000",
    ]);
    let mut others: Vec<Instance> = NAMES[1..]
        .iter()
        .map(|name| Instance::start(name, &db, &others_options))
        .collect();

    holder.send("burst 3 10");
    let lock_key = RedisBackend::new(RedisConfig::standalone(server().url()).namespace(namespace))
        .lock_key(CACHE, "item:3");
    until(Duration::from_secs(10), "A takes the lock", || {
        server().cli(&["EXISTS", &lock_key]) == "1"
    });
    let locked = Instant::now();
    for o in &mut others {
        o.send("burst 3 50");
    }
    holder.kill();
    let replies: Vec<Reply> = others.iter_mut().map(|o| o.reply("burst 3 50")).collect();
    let took = locked.elapsed();

    for r in &replies {
        assert_eq!(r.str("values"), "beta:50", "{}", r.line);
    }
    let ran: Vec<u64> = replies.iter().map(|r| r.num("ran")).collect();
    assert_eq!(
        ran.iter().sum::<u64>(),
        1,
        "exactly one survivor computed: {ran:?}"
    );
    assert_eq!(total(&mut others, "lock_wait_timeouts"), 0);
    assert_eq!(total(&mut others, "lock_acquired"), 1);
    // The lock was taken before `locked`, so it expired within LOCK_TTL of it; then one body
    // (200 ms) and the others' next look (≤ 100 ms apart). The rest is slack for a loaded
    // machine; what matters is that nobody waited for the minute-long body or the 5 s wait.
    let bound = LOCK_TTL + Duration::from_millis(300) + Duration::from_millis(1500);
    assert!(
        took < bound,
        "the survivors took {took:?} after the holder's lock was taken (bound {bound:?})"
    );
    println!("killed holder: the survivors answered {took:?} after its lock was taken");
}

/// Redis gone (stopped, or frozen so every operation times out): callers compute at once rather
/// than wait for a lock they cannot see, even with a long lock TTL and wait.
#[test]
fn without_redis_callers_compute_without_waiting_for_a_lock() {
    let _serial = one_at_a_time();
    let mut server = RedisServer::start();
    let db = Db::new("lockdown");
    let options = Options::new(Target::Standalone(server.url()), "lockdown").args(&[
        "--lock-ttl-ms",
        "10000",
        "--body-delay-ms",
        "50",
        "--timeout-ms",
        "100",
    ]);
    let mut a = Instance::start("A", &db, &options);
    // What one burst may take: a read, a lock attempt and a write, each cut at the 100 ms
    // timeout, and the body, plus slack; far below the 10 s lock TTL and 20 s wait.
    let bound = Duration::from_millis(2000);

    server.pause();
    let r = a.cmd("burst 1 20");
    server.resume();
    assert_eq!(r.str("values"), "v0:20", "{}", r.line);
    assert_eq!(
        r.num("ran"),
        1,
        "the body ran (once: in-process single flight)"
    );
    let took = Duration::from_micros(r.num("us"));
    assert!(took < bound, "frozen Redis: {took:?}");

    server.stop();
    let r = a.cmd("burst 2 20");
    assert_eq!(r.str("values"), "v0:20", "{}", r.line);
    assert_eq!(r.num("ran"), 1, "{}", r.line);
    let took = Duration::from_micros(r.num("us"));
    assert!(took < bound, "stopped Redis: {took:?}");

    let s = a.stats();
    assert_eq!(
        (s.num("lock_waits"), s.num("lock_wait_timeouts")),
        (0, 0),
        "nobody waited: {}",
        s.line
    );
}

/// A tier of its own namespace on the shared server, for the lock primitives.
fn tier(namespace: &str) -> (RedisBackend, impl RemoteTier) {
    let backend = RedisBackend::new(RedisConfig::standalone(server().url()).namespace(namespace));
    let tier = backend.redis_tier("c");
    (backend, tier)
}

#[tokio::test]
async fn only_the_owner_releases_a_lock() {
    let (backend, t) = tier("lockowner");
    let lock_key = backend.lock_key("c", "k");
    let (one, two) = (LockToken::random(), LockToken::random());
    let long = Duration::from_secs(60);

    assert_eq!(t.try_lock("k", one, long).await, Ok(LockAttempt::Acquired));
    assert_eq!(t.try_lock("k", two, long).await, Ok(LockAttempt::Held));
    assert_eq!(t.unlock("k", two).await, Ok(false), "not the owner");
    assert_eq!(server().cli(&["GET", &lock_key]), one.to_string());
    assert_eq!(t.unlock("k", one).await, Ok(true), "the owner");
    assert_eq!(server().cli(&["EXISTS", &lock_key]), "0");
    assert_eq!(t.unlock("k", one).await, Ok(false), "released already");

    // The lock expires (its holder was too slow, or died) and another token takes it: the first
    // owner's late release must leave its successor's lock alone.
    assert_eq!(
        t.try_lock("k", one, Duration::from_millis(50)).await,
        Ok(LockAttempt::Acquired)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while t.try_lock("k", two, long).await != Ok(LockAttempt::Acquired) {
        assert!(Instant::now() < deadline, "the 50 ms lock never expired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(t.unlock("k", one).await, Ok(false), "the expired owner");
    assert_eq!(server().cli(&["GET", &lock_key]), two.to_string());
    let pttl: i64 = server().cli(&["PTTL", &lock_key]).parse().unwrap();
    assert!(
        pttl > 0 && pttl <= 60_000,
        "the lock expires by itself: {pttl}"
    );
    assert_eq!(t.unlock("k", two).await, Ok(true));
}

#[tokio::test]
async fn a_lock_is_not_a_value_to_invalidation() {
    let (backend, t) = tier("lockscan");
    t.set("k", vec![1], None, &[]).await.unwrap();
    let token = LockToken::random();
    let long = Duration::from_secs(60);
    assert_eq!(
        t.try_lock("k", token, long).await,
        Ok(LockAttempt::Acquired)
    );
    let lock_key = backend.lock_key("c", "k");
    assert_eq!(t.delete_pattern("*").await, Ok(1), "the value only");
    assert_eq!(server().cli(&["EXISTS", &lock_key]), "1");
    t.set("k", vec![1], None, &[]).await.unwrap();
    assert_eq!(t.clear().await, Ok(1), "the value only");
    assert_eq!(server().cli(&["EXISTS", &lock_key]), "1");
    assert_eq!(t.get("k").await, Ok(None));
    assert_eq!(t.unlock("k", token).await, Ok(true));
    // A long key is hashed in the lock key as in the value key.
    let long_key = "x".repeat(10_000);
    assert_eq!(
        t.try_lock(&long_key, token, long).await,
        Ok(LockAttempt::Acquired)
    );
    assert!(backend.lock_key("c", &long_key).len() < 100);
    assert_eq!(t.unlock(&long_key, token).await, Ok(true));
}

/// Two managers on one server stand for two instances (each has its own memory and flights).
fn instance(namespace: &str) -> cache_core::CacheManager {
    cache_core::CacheManager::builder()
        .remote(RedisBackend::new(
            RedisConfig::standalone(server().url()).namespace(namespace),
        ))
        .cache(
            "c",
            cache_core::Policy::new()
                .tier(cache_core::Tier::Remote)
                // Far longer than the test may take: a lock gone early was released, not expired.
                .lock_ttl(Duration::from_secs(60)),
        )
        .build()
}

fn lock_stats(m: &cache_core::CacheManager) -> (u64, u64, u64) {
    let r = m.cache("c").stats().remote.expect("a remote tier");
    (r.lock_acquired, r.lock_waits, r.lock_wait_timeouts)
}

async fn until_gone(lock_key: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while server().cli(&["EXISTS", lock_key]) != "0" {
        assert!(Instant::now() < deadline, "{what}: the lock is still held");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_or_panicking_holder_releases_its_lock_at_once() {
    let namespace = "lockdrop";
    let m = instance(namespace);
    let lock_key = RedisBackend::new(RedisConfig::standalone(server().url()).namespace(namespace))
        .lock_key("c", "k");

    // Cancelled: the caller's future is dropped while the body runs (a client went away).
    let (started, running) = tokio::sync::oneshot::channel();
    let cache = m.cache("c");
    let call = tokio::spawn(async move {
        cache
            .get_or_insert_with("k", || async move {
                let _ = started.send(());
                std::future::pending::<u64>().await
            })
            .await
    });
    running.await.expect("the body started");
    assert_eq!(
        server().cli(&["EXISTS", &lock_key]),
        "1",
        "held while computing"
    );
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    until_gone(&lock_key, "after a cancelled holder").await;

    // Panicked.
    let (started, running) = tokio::sync::oneshot::channel::<()>();
    let cache = m.cache("c");
    let call = tokio::spawn(async move {
        cache
            .get_or_insert_with("k", || async move {
                running.await.expect("the test lets it go on");
                panic!("the body fails");
                #[allow(unreachable_code)]
                0u64
            })
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while server().cli(&["EXISTS", &lock_key]) != "1" {
        assert!(
            Instant::now() < deadline,
            "the second call never took the lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.send(()).unwrap();
    assert!(call.await.unwrap_err().is_panic());
    until_gone(&lock_key, "after a panicking holder").await;

    // The key is free again: the next call computes at once, without waiting.
    assert_eq!(
        m.cache("c")
            .get_or_insert_with("k", || async { 7u64 })
            .await,
        7
    );
    assert_eq!(lock_stats(&m), (3, 0, 0));
}

/// A caller dropped while its `SET NX` is in flight (applied by Redis, its reply not yet read)
/// never held a `FlightLock`, yet the key holds its token: the attempt releases it (a
/// compare-and-delete, a no-op when the lock is someone else's) instead of leaving it until the
/// lock's TTL, which here is a minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_dropped_while_taking_the_lock_releases_it() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tests::fault_proxy::{FaultProxy, ProxyMode};

    let namespace = "lockinflight";
    // The proxy owns a runtime: started and dropped off this one's threads.
    let port = server().port();
    let proxy = tokio::task::spawn_blocking(move || FaultProxy::start(port))
        .await
        .expect("proxy started");
    let m = cache_core::CacheManager::builder()
        .remote(RedisBackend::new(
            RedisConfig::standalone(proxy.url()).namespace(namespace),
        ))
        .cache(
            "c",
            cache_core::Policy::new()
                .tier(cache_core::Tier::Remote)
                .lock_ttl(Duration::from_secs(60)),
        )
        // Slow replies are not failures here: the attempt must still be waiting when dropped.
        .resilience(cache_core::Resilience::new().timeout(Duration::from_secs(30)))
        .build();
    let lock_key = RedisBackend::new(RedisConfig::standalone(server().url()).namespace(namespace))
        .lock_key("c", "k");
    // Connected while the link is fast; then every chunk takes 800 ms each way, so a reply comes
    // back 800 ms after Redis applied its command.
    assert_eq!(m.cache("c").get::<u64>("warm-up").await, None);
    proxy.set(ProxyMode::Latency(Duration::from_millis(800)));

    let runs = Arc::new(AtomicU64::new(0));
    let cache = m.cache("c");
    let body_runs = runs.clone();
    let call = tokio::spawn(async move {
        cache
            .get_or_insert_with("k", || async move {
                body_runs.fetch_add(1, Ordering::SeqCst);
                7u64
            })
            .await
    });
    // Watched on the server directly, not through the proxy: the `SET NX` has been applied.
    let deadline = Instant::now() + Duration::from_secs(20);
    while server().cli(&["EXISTS", &lock_key]) != "1" {
        assert!(Instant::now() < deadline, "the call never took the lock");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Its reply is still on the slow link: the caller has not seen `Acquired`.
    assert_eq!(lock_stats(&m), (0, 0, 0));
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    proxy.set(ProxyMode::Pass);
    until_gone(&lock_key, "after a caller dropped during its SET NX").await;
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the body never ran");

    // The key is free again: the next call computes at once, without waiting for the lock.
    assert_eq!(
        m.cache("c")
            .get_or_insert_with("k", || async { 8u64 })
            .await,
        8
    );
    assert_eq!(lock_stats(&m), (1, 0, 0));
    drop(m);
    tokio::task::spawn_blocking(move || drop(proxy))
        .await
        .expect("proxy stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_result_is_not_cached_lets_a_waiter_compute_without_waiting_for_the_ttl() {
    let namespace = "lockerr";
    let (one, two) = (instance(namespace), instance(namespace));
    let lock_key = RedisBackend::new(RedisConfig::standalone(server().url()).namespace(namespace))
        .lock_key("c", "k");

    // Instance one computes, and will fail (an `Err` is not cached).
    let (fail, failing) = tokio::sync::oneshot::channel::<()>();
    let cache = one.cache("c");
    let holder = tokio::spawn(async move {
        cache
            .try_get_or_insert_with("k", || async move {
                failing.await.expect("the test lets it fail");
                Err::<u64, String>("database down".to_owned())
            })
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while server().cli(&["EXISTS", &lock_key]) != "1" {
        assert!(
            Instant::now() < deadline,
            "instance one never took the lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Instance two misses and waits for one's value.
    let cache = two.cache("c");
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let v = cache.get_or_insert_with("k", || async { 42u64 }).await;
        (v, started.elapsed())
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while lock_stats(&two).1 == 0 {
        assert!(Instant::now() < deadline, "instance two never waited");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    fail.send(()).unwrap();
    assert_eq!(holder.await.unwrap(), Err("database down".to_owned()));
    let (value, took) = waiter.await.unwrap();
    assert_eq!(value, 42, "two computed its own value");
    assert!(
        took < Duration::from_secs(10),
        "two waited {took:?}: for the release, not the 60 s TTL"
    );
    assert_eq!(lock_stats(&one), (1, 0, 0));
    assert_eq!(
        lock_stats(&two),
        (1, 1, 0),
        "two waited, then took the lock"
    );
}

/// The caller that takes the lock reads the key once more under it: a value kept past its TTL
/// (for the fail-safe window) that both reads find is one miss of one call, not two.
#[tokio::test]
async fn a_call_past_the_ttl_counts_one_remote_miss() {
    let m = cache_core::CacheManager::builder()
        .remote(RedisBackend::new(
            RedisConfig::standalone(server().url()).namespace("stalemiss"),
        ))
        .cache(
            "c",
            cache_core::Policy::new()
                .tier(cache_core::Tier::Remote)
                .ttl(Duration::from_millis(100))
                .fail_safe(Duration::from_secs(60)),
        )
        .build();
    let c = m.cache("c");
    let misses = || c.stats().remote.expect("a remote tier").misses;
    assert_eq!(c.get_or_insert_with("k", || async { 1_u32 }).await, 1);
    assert_eq!(misses(), 1, "the cold read");
    // The remote copy's expiry is wall-clock time (it is shared by every instance).
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(c.get_or_insert_with("k", || async { 2_u32 }).await, 2);
    let r = c.stats().remote.expect("a remote tier");
    assert_eq!(r.lock_acquired, 2, "{r:?}");
    assert_eq!(r.misses, 2, "one miss per call: {r:?}");
}

/// A holder dropped before each of its polls, over a real Redis, while another instance waits
/// for its lock: the waiter always gets the value well before the lock's minute-long TTL, the
/// lock never outlives the calls, the body runs at most once per holder, and a fresh call on
/// either instance reads the value instead of computing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_dropped_at_any_poll_leaves_no_lock_and_no_waiter_behind() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let namespace = "lockpolls";
    let (a, b) = (instance(namespace), instance(namespace));
    let backend = RedisBackend::new(RedisConfig::standalone(server().url()).namespace(namespace));
    let runs = Arc::new(AtomicU64::new(0));
    let call = |m: &cache_core::CacheManager, key: String| {
        let (cache, runs) = (m.cache("c"), runs.clone());
        async move {
            cache
                .get_or_insert_with(&key, || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    for _ in 0..3 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    7u64
                })
                .await
        }
    };
    for polls in 0..60 {
        let key = format!("k{polls}");
        let lock_key = backend.lock_key("c", &key);
        runs.store(0, Ordering::SeqCst);
        let holder = tokio::spawn(give_up_after(polls, call(&a, key.clone())));
        let waiter = tokio::spawn(call(&b, key.clone()));
        let held = holder.await.unwrap();
        let started = Instant::now();
        let waited = tokio::time::timeout(Duration::from_secs(20), waiter)
            .await
            .unwrap_or_else(|_| panic!("polls {polls}: the waiter hung"))
            .unwrap();
        assert_eq!(waited, 7);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "polls {polls}: the waiter waited for the lock's TTL"
        );
        until_gone(&lock_key, &format!("polls {polls}")).await;
        let ran = runs.load(Ordering::SeqCst);
        assert!((1..=2).contains(&ran), "polls {polls}: {ran} runs");
        for m in [&a, &b] {
            assert_eq!(call(m, key.clone()).await, 7);
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            ran,
            "polls {polls}: read, not computed"
        );
        if held.is_some() {
            assert_eq!(held, Some(7));
            return;
        }
    }
    panic!("the holder never finished within 60 polls");
}

/// A waiter dropped before each of its polls while another instance holds the lock: it leaves
/// nothing behind (its own instance's next call reads the holder's value at once instead of
/// computing it or waiting), and the holder's lock is released when its value is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_dropped_at_any_poll_leaves_nothing_behind() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let namespace = "lockwaiterpolls";
    let (a, b) = (instance(namespace), instance(namespace));
    let backend = RedisBackend::new(RedisConfig::standalone(server().url()).namespace(namespace));
    let runs = Arc::new(AtomicU64::new(0));
    for polls in 0..12 {
        let key = format!("k{polls}");
        let lock_key = backend.lock_key("c", &key);
        runs.store(0, Ordering::SeqCst);
        let (go, gate) = tokio::sync::oneshot::channel::<()>();
        let (cache, body_runs) = (a.cache("c"), runs.clone());
        let holder_key = key.clone();
        let holder = tokio::spawn(async move {
            cache
                .get_or_insert_with(&holder_key, || async move {
                    body_runs.fetch_add(1, Ordering::SeqCst);
                    gate.await.expect("the test lets it finish");
                    7u64
                })
                .await
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while server().cli(&["EXISTS", &lock_key]) != "1" {
            assert!(Instant::now() < deadline, "the holder never took the lock");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let (cache, body_runs) = (b.cache("c"), runs.clone());
        let waiter_key = key.clone();
        let waited = give_up_after(polls, async move {
            cache
                .get_or_insert_with(&waiter_key, || async move {
                    body_runs.fetch_add(1, Ordering::SeqCst);
                    8u64
                })
                .await
        })
        .await;
        assert_eq!(waited, None, "polls {polls}: still waiting for the holder");
        go.send(()).unwrap();
        assert_eq!(holder.await.unwrap(), 7);
        until_gone(&lock_key, &format!("polls {polls}")).await;
        let started = Instant::now();
        let fresh = b
            .cache("c")
            .get_or_insert_with(&key, || async { 9u64 })
            .await;
        assert_eq!(fresh, 7, "polls {polls}: read, not computed");
        assert!(started.elapsed() < Duration::from_secs(2), "polls {polls}");
        assert_eq!(runs.load(Ordering::SeqCst), 1, "polls {polls}");
    }
}
