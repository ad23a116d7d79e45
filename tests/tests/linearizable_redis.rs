//! Invalidate-then-read on one instance, with Redis in the path: the randomized interleaving of
//! `cache-core/tests/concurrency.rs` (reads, writes, invalidations from many tasks; after each
//! invalidation returns, no read may return a value older than it), on a hybrid cache (memory in
//! front of Redis) and a Redis-only cache, where a value computed before an invalidation could
//! also come back through Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cache_core::{CacheManager, Policy, Resilience, Tier};
use cache_redis::{RedisBackend, RedisConfig};
use tests::RedisServer;

/// A tiny deterministic generator (xorshift), so a failure reproduces with its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

async fn run(tier: Tier, namespace: &str, server: &RedisServer) -> u64 {
    const KEYS: u64 = 6;
    let m = CacheManager::builder()
        .remote(RedisBackend::new(
            RedisConfig::standalone(server.url()).namespace(namespace),
        ))
        .resilience(Resilience::new().timeout(Duration::from_secs(5)))
        .cache("lin", Policy::new().tier(tier).ttl_secs(60))
        .build();
    let db: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let violations = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for seed in 1..=8u64 {
        let (m, db, violations) = (m.clone(), db.clone(), violations.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let cache = m.cache("lin");
            for _ in 0..400 {
                let k = rng.next() % KEYS;
                let key = format!("k{k}");
                let pause = rng.next() % 3;
                let read = || {
                    let db = db.clone();
                    cache.get_or_insert_with(&key, move || async move {
                        let v = db[k as usize].load(Ordering::SeqCst);
                        for _ in 0..pause {
                            tokio::task::yield_now().await;
                        }
                        v
                    })
                };
                if rng.next().is_multiple_of(4) {
                    let written = db[k as usize].fetch_add(1, Ordering::SeqCst) + 1;
                    m.invalidate_key("lin", &key).await;
                    let seen: u64 = read().await;
                    if seen < written {
                        violations.fetch_add(1, Ordering::Relaxed);
                        eprintln!(
                            "{tier:?} key {k}: read {seen} after invalidating version {written}"
                        );
                    }
                } else {
                    let _: u64 = read().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("a task panicked");
    }
    violations.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_read_after_an_invalidation_sees_older_data_with_redis_in_the_path() {
    let server = RedisServer::start_with_args(tests::NO_BULK_COMMANDS);
    let hybrid = run(Tier::Hybrid, "lin-hybrid", &server).await;
    let remote = run(Tier::Remote, "lin-remote", &server).await;
    println!("stale reads after an invalidation: hybrid {hybrid}, remote-only {remote}");
    assert_eq!((hybrid, remote), (0, 0));
}

const ROWS: usize = 4;
/// The "database" of the stress below: a version per row.
static DB: [AtomicU64; ROWS] = [const { AtomicU64::new(0) }; ROWS];
/// For each row, the newest version a write has finished invalidating or setting.
static FLOOR: [AtomicU64; ROWS] = [const { AtomicU64::new(0) }; ROWS];
/// For each row, the kind of its last finished write (see `write`), for the failure message.
static LAST_HOW: [AtomicU64; ROWS] = [const { AtomicU64::new(0) }; ROWS];

#[cache_core::cached(cache = "rows", key = "row:{k}", tags = ["row:{k}"], ttl = 60)]
async fn row(k: usize, pause: u64) -> u64 {
    let v = DB[k].load(Ordering::SeqCst);
    for _ in 0..pause {
        tokio::task::yield_now().await;
    }
    v
}

/// Bumps row `k`'s version, then invalidates it one of five ways (key, tag, pattern, cache) or
/// sets the new version. Writers of a row take its lock: reads are checked against writes, not
/// two writes against each other.
async fn write(m: &CacheManager, locks: &[tokio::sync::Mutex<()>], k: usize, how: u64) {
    let _held = locks[k].lock().await;
    let version = DB[k].fetch_add(1, Ordering::SeqCst) + 1;
    let key = format!("row:{k}");
    match how {
        0 => drop(m.invalidate_key("rows", &key).await),
        1 => drop(m.invalidate_tag(&key).await),
        2 => drop(m.invalidate_pattern("rows", &format!("row:{k}*")).await),
        3 => drop(m.invalidate_cache("rows").await),
        _ => {
            let tagged = cache_core::EntryOptions::new().tag(&key);
            m.cache("rows").set_with(&key, version, tagged).await;
        }
    }
    LAST_HOW[k].store(how, Ordering::SeqCst);
    FLOOR[k].fetch_max(version, Ordering::SeqCst);
}

async fn stress(tier: Tier, namespace: &str, server: &RedisServer) -> u64 {
    let m = CacheManager::builder()
        .remote(RedisBackend::new(
            RedisConfig::standalone(server.url()).namespace(namespace),
        ))
        .resilience(Resilience::new().timeout(Duration::from_secs(5)))
        .cache("rows", Policy::new().tier(tier).ttl_secs(60))
        .build();
    let locks: Arc<Vec<tokio::sync::Mutex<()>>> =
        Arc::new((0..ROWS).map(|_| tokio::sync::Mutex::new(())).collect());
    let violations = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for seed in 1..=6u64 {
        let (m, locks, violations) = (m.clone(), locks.clone(), violations.clone());
        tasks.push(tokio::spawn(m.clone().scope(async move {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            for _ in 0..300 {
                let k = (rng.next() % ROWS as u64) as usize;
                if rng.next().is_multiple_of(4) {
                    write(&m, &locks, k, rng.next() % 5).await;
                }
                let floor = FLOOR[k].load(Ordering::SeqCst);
                let seen = row(k, rng.next() % 3).await;
                if seen < floor {
                    violations.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "{tier:?} row {k}: read {seen} after a write of {floor} returned (write kind {})",
                        LAST_HOW[k].load(Ordering::SeqCst)
                    );
                }
            }
        })));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("no deadlock")
            .expect("a task panicked");
    }
    violations.load(Ordering::Relaxed)
}

/// Every kind of write (key, tag, pattern and cache invalidations, `Cache::set`) against reads
/// from other tasks, with Redis in the path: once a write has returned, no read that starts
/// later returns an older version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_read_after_any_write_sees_older_data_with_redis_in_the_path() {
    let server = RedisServer::start_with_args(tests::NO_BULK_COMMANDS);
    let hybrid = stress(Tier::Hybrid, "lin-any-hybrid", &server).await;
    let remote = stress(Tier::Remote, "lin-any-remote", &server).await;
    println!("stale reads after a write: hybrid {hybrid}, remote-only {remote}");
    assert_eq!((hybrid, remote), (0, 0));
}
