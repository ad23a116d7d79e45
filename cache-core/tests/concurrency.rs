//! Correctness under concurrency: reads racing invalidations never return data older than an
//! invalidation that already returned; callers dropped at any await point leave no stuck flight.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use cache_core::CacheManager;

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

/// Invalidate-then-read is linearizable on one instance: after `invalidate_key` returns, no read
/// that starts later returns a version older than the one written before the invalidation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_read_after_an_invalidation_sees_older_data() {
    const KEYS: u64 = 8;
    let m = CacheManager::default();
    let db: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let mut tasks = Vec::new();
    for seed in 1..=8u64 {
        let m = m.clone();
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let cache = m.cache("linearizable");
            for _ in 0..2_000 {
                let k = rng.next() % KEYS;
                let key = format!("k{k}");
                if rng.next().is_multiple_of(4) {
                    // A write: bump the version in the "database", then invalidate.
                    let written = db[k as usize].fetch_add(1, Ordering::SeqCst) + 1;
                    m.invalidate_key("linearizable", &key).await;
                    // Any read that starts now must see at least `written`.
                    let seen = read(&cache, &db, k, &key, &mut rng).await;
                    assert!(
                        seen >= written,
                        "key {k}: read {seen} after invalidating version {written}"
                    );
                } else {
                    // Plain reads keep values cached and computations overlapping the writes.
                    read(&cache, &db, k, &key, &mut rng).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn read(
    cache: &cache_core::Cache,
    db: &Arc<Vec<AtomicU64>>,
    k: u64,
    key: &str,
    rng: &mut Rng,
) -> u64 {
    let pause = rng.next() % 3;
    let db = db.clone();
    cache
        .get_or_insert_with(key, || async move {
            let v = db[k as usize].load(Ordering::SeqCst);
            // Yield a little so computations overlap invalidations.
            for _ in 0..pause {
                tokio::task::yield_now().await;
            }
            v
        })
        .await
}

/// Polls the inner future `polls` times, then drops it (a caller that gives up mid-flight).
/// Unlike `cache_core::testing::give_up_after` it wakes itself after each pending poll, so its
/// polls run out on their own while the call waits, with no wake from the call's leader.
struct DropAfter<F> {
    inner: Option<Pin<Box<F>>>,
    polls: usize,
}

impl<F: Future> Future for DropAfter<F> {
    type Output = Option<F::Output>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.polls == 0 {
            self.inner = None;
            return Poll::Ready(None);
        }
        self.polls -= 1;
        let inner = self.inner.as_mut().expect("polled after completion");
        match inner.as_mut().poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending => {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

/// Callers dropped at every await point of the cached path leave no stuck single-flight entry:
/// a later caller of the same key always completes, and its body runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_dropped_at_any_await_point_leave_nothing_stuck() {
    let m = CacheManager::default();
    let runs = Arc::new(AtomicUsize::new(0));
    for polls in 0..12 {
        let key = format!("cancel:{polls}");
        let mut dropped = Vec::new();
        // A leader and followers, each given up after `polls` polls.
        for _ in 0..3 {
            let cache = m.cache("cancel");
            let runs = runs.clone();
            let key = key.clone();
            dropped.push(tokio::spawn(DropAfter {
                inner: Some(Box::pin(async move {
                    cache
                        .get_or_insert_with(&key, || async move {
                            runs.fetch_add(1, Ordering::SeqCst);
                            for _ in 0..5 {
                                tokio::task::yield_now().await;
                            }
                            7_u32
                        })
                        .await
                })),
                polls,
            }));
        }
        for d in dropped {
            d.await.unwrap();
        }
        let after = tokio::time::timeout(
            Duration::from_secs(5),
            m.cache("cancel")
                .get_or_insert_with(&key, || async { 7_u32 }),
        )
        .await
        .unwrap_or_else(|_| panic!("a caller after {polls} polls hung: a flight was left behind"));
        assert_eq!(after, 7);
    }
}

/// Sync callers of a key (`Cache::blocking()`, a sync `#[cached]` function) called from tasks of
/// a multi-thread runtime while an async task leads the key: waiting, they blocked both workers,
/// and the leader, a task, was never polled again (a deadlock for good, which this test's own
/// thread bounds). They compute on their own instead, as on a current-thread runtime.
#[test]
fn sync_callers_on_every_worker_do_not_starve_an_async_leader() {
    let (done, finished) = std::sync::mpsc::channel();
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let m = CacheManager::default();
        let answers = rt.block_on(async move {
            let (started, running) = tokio::sync::oneshot::channel();
            let (cache, runs) = (m.cache("mixed"), counted.clone());
            let leader = tokio::spawn(async move {
                cache
                    .get_or_insert_with("k", || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let _ = started.send(());
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        7_u64
                    })
                    .await
            });
            running.await.unwrap();
            let followers: Vec<_> = (0..2)
                .map(|_| {
                    let (cache, runs) = (m.cache("mixed"), counted.clone());
                    tokio::spawn(async move {
                        cache.blocking().get_or_insert_with("k", || {
                            runs.fetch_add(1, Ordering::SeqCst);
                            7_u64
                        })
                    })
                })
                .collect();
            let mut answers = vec![leader.await.unwrap()];
            for f in followers {
                answers.push(f.await.unwrap());
            }
            answers
        });
        let _ = done.send(answers);
        // Dropped on this thread it would wait for workers that a deadlock never frees.
        std::mem::forget(rt);
    });
    let answers = finished
        .recv_timeout(Duration::from_secs(10))
        .expect("the async leader never finished: the blocked sync callers starved it");
    assert_eq!(answers, [7, 7, 7]);
    assert!(runs.load(Ordering::SeqCst) <= 3);
}
