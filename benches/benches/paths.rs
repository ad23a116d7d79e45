//! The miss path and the stampede.
//!
//! - `miss`: a body that returns at once, called with a key never seen before (the caches are
//!   bounded at 10k entries, so each call is lookup + body + insert + one eviction), through our
//!   `#[cached]`, `cached`'s `#[cached(max_size)]` and moka's `get_with`.
//! - `stampede`: 1,000 tasks on a 2-worker runtime call a cold key at once; the body sleeps 1 ms.
//!   The time is from the first spawn until all 1,000 have their value; how many times each
//!   body ran is written to `target/bench-extra/stampede.json`.
//!
//! Run: `cargo bench -p benches --bench paths`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use benches::{Profile, consume};
use criterion::{Criterion, criterion_group, criterion_main};

const CAPACITY: u64 = 10_000;
const CALLERS: usize = 1_000;

static RUNS_OURS: AtomicUsize = AtomicUsize::new(0);
static RUNS_CACHED: AtomicUsize = AtomicUsize::new(0);
static RUNS_CACHED_SYNC_WRITES: AtomicUsize = AtomicUsize::new(0);
static RUNS_MOKA: AtomicUsize = AtomicUsize::new(0);

mod ours {
    use super::*;

    #[cache_core::cached(cache = "miss", key = "user:{id}")]
    pub(crate) fn miss(id: u64) -> Profile {
        benches::body(id)
    }

    #[cache_core::cached(cache = "miss", key = "user:{id}")]
    pub(crate) async fn miss_async(id: u64) -> Profile {
        benches::body(id)
    }

    #[cache_core::cached(cache = "stampede", key = "cold:{id}")]
    pub(crate) async fn stampede(id: u64) -> Profile {
        RUNS_OURS.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1)).await;
        Profile::load(id)
    }
}

mod peer {
    use super::*;
    use cached::cached;

    #[cached(max_size = 10_000)]
    pub(crate) fn miss(id: u64) -> Profile {
        benches::body(id)
    }

    #[cached(max_size = 10_000)]
    pub(crate) async fn stampede(id: u64) -> Profile {
        RUNS_CACHED.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1)).await;
        Profile::load(id)
    }

    #[cached(max_size = 10_000, sync_writes = "by_key")]
    pub(crate) async fn stampede_sync_writes(id: u64) -> Profile {
        RUNS_CACHED_SYNC_WRITES.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(1)).await;
        Profile::load(id)
    }
}

fn miss(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let moka = moka::sync::Cache::<u64, Profile>::new(CAPACITY);
    // Every call takes a fresh key, so every call misses.
    let fresh = AtomicU64::new(0);
    let next = || fresh.fetch_add(1, Ordering::Relaxed);

    let mut g = c.benchmark_group("miss");
    // Runs one row, then checks that every call of it was a miss: one body run per fresh key.
    let mut miss_row = |name: &str, f: &mut dyn FnMut(&mut criterion::Bencher<'_>)| {
        let (keys, runs) = (fresh.load(Ordering::Relaxed), benches::body_runs());
        g.bench_function(name, f);
        let (keys, runs) = (
            fresh.load(Ordering::Relaxed) - keys,
            benches::body_runs() - runs,
        );
        assert_eq!(
            runs, keys,
            "{name}: {keys} fresh keys ran the body {runs} times"
        );
    };
    miss_row("ours/sync", &mut |b| {
        b.iter(|| consume(ours::miss(black_box(next()))))
    });
    miss_row("ours/async", &mut |b| {
        b.to_async(&rt)
            .iter(|| async { consume(ours::miss_async(black_box(next())).await) })
    });
    miss_row("cached/sync max_size", &mut |b| {
        b.iter(|| consume(peer::miss(black_box(next()))))
    });
    miss_row("moka/sync get_with", &mut |b| {
        b.iter(|| {
            let id = black_box(next());
            consume(moka.get_with(id, || benches::body(id)))
        })
    });
    g.finish();
}

/// Spawns `CALLERS` tasks calling `call(key)` at once and waits for all of them.
async fn storm<F, Fut>(key: u64, call: F)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Profile> + Send + 'static,
{
    let tasks: Vec<_> = (0..CALLERS).map(|_| tokio::spawn(call(key))).collect();
    for t in tasks {
        black_box(t.await.expect("caller"));
    }
}

fn stampede(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let moka = moka::future::Cache::<u64, Profile>::new(CAPACITY);
    let cold = AtomicU64::new(0);
    let storms = AtomicU64::new(0);
    let mut g = c.benchmark_group("stampede");
    g.sample_size(10);
    let mut bench = |name: &str, runs: &'static AtomicUsize, f: &dyn Fn(u64)| {
        storms.store(0, Ordering::Relaxed);
        runs.store(0, Ordering::Relaxed);
        g.bench_function(name, |b| {
            b.iter(|| {
                storms.fetch_add(1, Ordering::Relaxed);
                f(cold.fetch_add(1, Ordering::Relaxed))
            })
        });
        let n = storms.load(Ordering::Relaxed).max(1);
        runs.load(Ordering::Relaxed) as f64 / n as f64
    };
    let ours_runs = bench("ours", &RUNS_OURS, &|k| {
        rt.block_on(storm(k, ours::stampede))
    });
    let cached_runs = bench("cached", &RUNS_CACHED, &|k| {
        rt.block_on(storm(k, peer::stampede))
    });
    let cached_sw_runs = bench(
        "cached sync_writes=by_key",
        &RUNS_CACHED_SYNC_WRITES,
        &|k| rt.block_on(storm(k, peer::stampede_sync_writes)),
    );
    let moka_runs = bench("moka get_with", &RUNS_MOKA, &|k| {
        let moka = moka.clone();
        rt.block_on(storm(k, move |k| {
            let moka = moka.clone();
            async move {
                moka.get_with(k, async move {
                    RUNS_MOKA.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Profile::load(k)
                })
                .await
            }
        }))
    });
    g.finish();
    let json = format!(
        "{{\"callers\": {CALLERS}, \"body_runs_per_storm\": {{\"ours\": {ours_runs:.2}, \"cached\": {cached_runs:.2}, \"cached sync_writes=by_key\": {cached_sw_runs:.2}, \"moka get_with\": {moka_runs:.2}}}}}"
    );
    println!("stampede body runs per {CALLERS} callers: {json}");
    // A run filtered to other groups ran no storm: it must not replace a real run's figures.
    if ours_runs > 0.0 {
        benches::write_extra("stampede", &json);
    }
}

fn setup() {
    cache_core::CacheManager::builder()
        .cache(
            "miss",
            cache_core::Policy::new().max_entries(CAPACITY as usize),
        )
        .cache(
            "stampede",
            cache_core::Policy::new().max_entries(CAPACITY as usize),
        )
        .install()
        .expect("the benchmark installs the global manager first");
}

fn all(c: &mut Criterion) {
    setup();
    miss(c);
    stampede(c);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = all
}
criterion_main!(benches);
