//! Contention: 2 threads reading a Zipf(1.0) trace over 10k preloaded keys (all hits), through
//! our `#[cached]` and each peer. One iteration is both threads each serving `PER_THREAD`
//! requests; `scripts/bench` turns the time into operations per second.
//!
//! Run: `cargo bench -p benches --bench contention`.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::Duration;

use std::hash::BuildHasherDefault;

use benches::{OneMultiply, Profile, zipf_trace};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const KEYS: u64 = 10_000;
const THREADS: usize = 2;
const PER_THREAD: usize = 20_000;

#[cache_core::cached(cache = "contention", key = "user:{id}")]
fn ours(id: u64) -> Profile {
    Profile::load(id)
}

#[cached::cached]
fn peer_cached(id: u64) -> Profile {
    Profile::load(id)
}

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `op` over each thread's slice of the trace, both threads released at once by a barrier,
/// `iters` times; returns the sum over iterations of the slower thread's *CPU* time.
///
/// CPU time rather than wall time: the machine is shared with compiles that take the cores away
/// for milliseconds at a time, which wall time charged to whichever cache was running. Cache-line
/// transfers between the cores stall the thread and so still count as its CPU time.
fn run(traces: &[Vec<u64>], op: &(impl Fn(u64) + Sync), iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Barrier::new(traces.len());
        let slowest = std::thread::scope(|s| {
            let threads: Vec<_> = traces
                .iter()
                .map(|t| {
                    let start = &start;
                    s.spawn(move || {
                        start.wait();
                        let began = thread_cpu_time();
                        for &k in t {
                            op(k);
                        }
                        thread_cpu_time() - began
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("a benchmark thread"))
                .max()
                .unwrap_or_default()
        });
        total += slowest;
    }
    total
}

fn contention(c: &mut Criterion) {
    cache_core::CacheManager::builder()
        .cache(
            "contention",
            cache_core::Policy::new().max_entries(KEYS as usize),
        )
        .install()
        .expect("the benchmark installs the global manager first");
    let moka = moka::sync::Cache::<u64, Profile>::new(KEYS);
    let quick = quick_cache::sync::Cache::<u64, Profile>::new(KEYS as usize);
    let floor = scc::HashIndex::<u64, Profile, BuildHasherDefault<OneMultiply>>::default();
    for id in 0..KEYS {
        let _ = floor.insert_sync(id, Profile::load(id));
        ours(id);
        peer_cached(id);
        moka.insert(id, Profile::load(id));
        quick.insert(id, Profile::load(id));
    }
    let traces: Vec<Vec<u64>> = (0..THREADS)
        .map(|t| zipf_trace(1.0, KEYS, PER_THREAD, 0xC0FFEE + t as u64))
        .collect();

    let mut g = c.benchmark_group("contention");
    g.throughput(Throughput::Elements((THREADS * PER_THREAD) as u64));
    g.sample_size(20);
    g.bench_function("ours", |b| {
        b.iter_custom(|iters| run(&traces, &|k| drop(black_box(ours(k))), iters))
    });
    g.bench_function("cached", |b| {
        b.iter_custom(|iters| run(&traces, &|k| drop(black_box(peer_cached(k))), iters))
    });
    g.bench_function("moka", |b| {
        b.iter_custom(|iters| run(&traces, &|k| drop(black_box(moka.get(&k))), iters))
    });
    g.bench_function("quick_cache", |b| {
        b.iter_custom(|iters| run(&traces, &|k| drop(black_box(quick.get(&k))), iters))
    });
    // The bare map under our memory tier, as in the hit benchmark: epoch guard, lookup, clone.
    let floor_op = |k: u64| {
        let guard = scc::Guard::new();
        drop(black_box(floor.peek(&k, &guard).cloned()));
    };
    g.bench_function("floor", |b| {
        b.iter_custom(|iters| run(&traces, &floor_op, iters))
    });
    g.finish();

    if benches::is_bench_run() {
        // The targets' ratios in alternating runs (see `benches::paired`): side `a` is ours, so
        // a ratio below 1 means ours took less CPU time for the same requests. Five iterations
        // a batch (about 10 ms): in a single one the threads' overlap depends on when each is
        // scheduled, and a lock that is rarely contended looks cheap.
        const ROUNDS: usize = 30;
        const ITERS: u64 = 5;
        let ours_op = |k| drop(black_box(ours(k)));
        let vs_quick = benches::paired(ROUNDS, ITERS, |side| {
            if side == 0 {
                run(&traces, &ours_op, ITERS)
            } else {
                run(&traces, &|k| drop(black_box(quick.get(&k))), ITERS)
            }
        });
        let vs_cached = benches::paired(ROUNDS, ITERS, |side| {
            if side == 0 {
                run(&traces, &ours_op, ITERS)
            } else {
                run(&traces, &|k| drop(black_box(peer_cached(k))), ITERS)
            }
        });
        for (name, p) in [("quick_cache", vs_quick), ("cached", vs_cached)] {
            eprintln!(
                "paired ({ROUNDS} rounds of {ITERS} ABBA): throughput ours ÷ {name}: median {:.3} (middle half {:.3}-{:.3})",
                1.0 / p.ratio,
                1.0 / p.ratio_q3,
                1.0 / p.ratio_q1
            );
        }
        benches::write_extra(
            "contention_paired",
            &format!(
                "{{\"rounds\": {ROUNDS}, \"vs_quick_cache\": {}, \"vs_cached\": {}}}",
                vs_quick.json(),
                vs_cached.json()
            ),
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = contention
}
criterion_main!(benches);
