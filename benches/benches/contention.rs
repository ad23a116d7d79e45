//! Contention: 2 threads reading a Zipf(1.0) trace over 10k preloaded keys (all hits), through
//! our `#[cached]` and each peer. One iteration is both threads each serving `PER_THREAD`
//! requests; `scripts/bench` turns the time into operations per second.
//!
//! Run: `cargo bench -p benches --bench contention`.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::hash::BuildHasherDefault;

use benches::{OneMultiply, Profile, consume, zipf_trace};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const KEYS: u64 = 10_000;
const THREADS: usize = 2;
const PER_THREAD: usize = 20_000;

#[cache_core::cached(cache = "contention", key = "user:{id}")]
fn ours(id: u64) -> Profile {
    benches::body(id)
}

#[cached::cached]
fn peer_cached(id: u64) -> Profile {
    benches::body(id)
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

/// The CPUs this process may run on, read once (each read is a few system calls, and every
/// iteration's threads pin themselves).
static CPUS: LazyLock<usize> =
    LazyLock::new(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

/// Pins the calling thread to CPU `i` (modulo the CPUs there are).
fn pin(i: usize) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    if !benches::pin_to_cpu(0, i % *CPUS) {
        WARNED.call_once(|| eprintln!("could not pin the contention threads to CPUs"));
    }
}

/// What one call of [`run`] measured, summed over its iterations.
#[derive(Clone, Copy, Default)]
struct Timing {
    /// The slower thread's CPU time.
    cpu: Duration,
    /// From the first thread's start to the last one's end.
    wall: Duration,
}

impl Timing {
    fn cpu(self) -> Duration {
        self.cpu
    }
    fn wall(self) -> Duration {
        self.wall
    }
}

/// Runs `op` over each thread's slice of the trace, `iters` times, counting only the iterations
/// in which the threads ran side by side (see [`run_once`]); returns the sums over those
/// iterations of the slower thread's CPU time and of the wall time both threads took.
///
/// CPU time is what criterion is given: the machine is shared with compiles that take the cores
/// away for milliseconds at a time, which wall time charged to whichever cache was running, and
/// cache-line transfers between the cores stall the thread and so still count as its CPU time.
/// But a thread asleep on a lock uses none, so the paired comparisons (whose alternating batches
/// keep wall time fair on a noisy machine) are judged by wall time.
fn run(traces: &[Vec<u64>], op: &(impl Fn(u64) + Sync), iters: u64) -> Timing {
    let mut total = Timing::default();
    let mut counted = 0;
    // With fewer CPUs than threads they cannot all run at once: count what there is.
    let must_overlap = *CPUS >= traces.len();
    for attempt in 0.. {
        RAN.fetch_add(1, Ordering::Relaxed);
        let (timing, together) = run_once(traces, op);
        if !together && must_overlap {
            // Bounded, so that a machine that never runs the threads together still finishes;
            // what it then measures is counted, and reported as such.
            if attempt < 20 * iters {
                SKIPPED.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            COUNTED_APART.fetch_add(1, Ordering::Relaxed);
        }
        total.cpu += timing.cpu;
        total.wall += timing.wall;
        counted += 1;
        if counted == iters {
            break;
        }
    }
    total
}

/// Iterations run; those not counted because the threads did not overlap; and those counted
/// although they did not, once an iteration had run out of retries.
static RAN: AtomicU64 = AtomicU64::new(0);
static SKIPPED: AtomicU64 = AtomicU64::new(0);
static COUNTED_APART: AtomicU64 = AtomicU64::new(0);

/// One iteration: each thread, pinned to its own CPU, spins until all have started, then serves
/// its trace. Returns the timing and whether the threads overlapped for at least 90% of the wall
/// time. On this machine's two vCPUs they often did not, even pinned and spinning: one ran its
/// whole trace, then the other (the host ran one vCPU at a time), which measures a single thread
/// twice, not contention, and made a lock look free.
fn run_once(traces: &[Vec<u64>], op: &(impl Fn(u64) + Sync)) -> (Timing, bool) {
    let arrived = AtomicUsize::new(0);
    let spans = std::thread::scope(|s| {
        let threads: Vec<_> = traces
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let arrived = &arrived;
                s.spawn(move || {
                    // One thread per CPU: left to the scheduler, the thread a barrier woke was
                    // often queued behind the waker on its CPU.
                    pin(i);
                    // Spinning, not a blocking barrier: a sleeping thread's wake-up could take
                    // longer than the other thread's whole run.
                    arrived.fetch_add(1, Ordering::SeqCst);
                    while arrived.load(Ordering::SeqCst) < traces.len() {
                        std::hint::spin_loop();
                    }
                    let (began, began_cpu) = (Instant::now(), thread_cpu_time());
                    for &k in t {
                        op(k);
                    }
                    (began, Instant::now(), thread_cpu_time() - began_cpu)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a benchmark thread"))
            .collect::<Vec<_>>()
    });
    let first = spans.iter().map(|s| s.0).min().expect("threads ran");
    let last = spans.iter().map(|s| s.1).max().expect("threads ran");
    let last_start = spans.iter().map(|s| s.0).max().expect("threads ran");
    let first_end = spans.iter().map(|s| s.1).min().expect("threads ran");
    let wall = last - first;
    let overlap = first_end.saturating_duration_since(last_start);
    let timing = Timing {
        cpu: spans.iter().map(|s| s.2).max().unwrap_or_default(),
        wall,
    };
    (timing, overlap.as_secs_f64() >= 0.9 * wall.as_secs_f64())
}

/// The paired comparison (see `benches::paired`) of `ours` (side `a`) with `peer`, each batch
/// five iterations (about 10 ms: in a single one the threads' overlap depends on when each is
/// scheduled, and a lock that is rarely contended looks cheap), timed by `measure`.
fn pair(
    traces: &[Vec<u64>],
    ours: &(impl Fn(u64) + Sync),
    peer: &(impl Fn(u64) + Sync),
    measure: fn(Timing) -> Duration,
) -> benches::Paired {
    const ITERS: u64 = 5;
    benches::paired(PAIRED_ROUNDS, ITERS, |side| {
        measure(if side == 0 {
            run(traces, ours, ITERS)
        } else {
            run(traces, peer, ITERS)
        })
    })
}

/// Rounds of each paired comparison.
const PAIRED_ROUNDS: usize = 30;

fn contention(c: &mut Criterion) {
    cache_core::CacheManager::builder()
        .cache(
            "contention",
            cache_core::Policy::new().max_entries(KEYS as usize),
        )
        .install()
        .expect("the benchmark installs the global manager first");
    let moka = moka::sync::Cache::<u64, Profile>::new(KEYS);
    // quick_cache sizes its shards from the capacity and evicts before it is reached: at
    // exactly `KEYS` it kept 9,850 of the 10,000 keys, and its rows then timed misses (`get`
    // returning `None`, cheaper than a hit). An eighth more room keeps them all (checked below).
    let quick = quick_cache::sync::Cache::<u64, Profile>::new(KEYS as usize + KEYS as usize / 8);
    let floor = scc::HashIndex::<u64, Profile, BuildHasherDefault<OneMultiply>>::default();
    let floor_dashmap =
        dashmap::DashMap::<u64, Profile, BuildHasherDefault<OneMultiply>>::default();
    for id in 0..KEYS {
        let _ = floor.insert_sync(id, Profile::load(id));
        floor_dashmap.insert(id, Profile::load(id));
        ours(id);
        peer_cached(id);
        moka.insert(id, Profile::load(id));
        quick.insert(id, Profile::load(id));
    }
    // Every timed call must be a hit: no body may run from here on (checked after the criterion
    // group and after the paired runs), and each peer's map must still hold every key (their
    // `get`s return `None` on a miss).
    let preloaded = benches::body_runs();
    let all_present = || {
        for id in 0..KEYS {
            assert!(moka.contains_key(&id), "moka lost key {id}");
            assert!(quick.peek(&id).is_some(), "quick_cache lost key {id}");
            assert!(floor.contains(&id), "the scc floor lost key {id}");
            assert!(
                floor_dashmap.contains_key(&id),
                "the dashmap floor lost key {id}"
            );
        }
    };
    all_present();
    let traces: Vec<Vec<u64>> = (0..THREADS)
        .map(|t| zipf_trace(1.0, KEYS, PER_THREAD, 0xC0FFEE + t as u64))
        .collect();

    let mut g = c.benchmark_group("contention");
    g.throughput(Throughput::Elements((THREADS * PER_THREAD) as u64));
    g.sample_size(20);
    g.bench_function("ours", |b| {
        b.iter_custom(|iters| run(&traces, &|k| consume(ours(k)), iters).cpu)
    });
    g.bench_function("cached", |b| {
        b.iter_custom(|iters| run(&traces, &|k| consume(peer_cached(k)), iters).cpu)
    });
    g.bench_function("moka", |b| {
        b.iter_custom(|iters| run(&traces, &|k| consume(moka.get(&k)), iters).cpu)
    });
    g.bench_function("quick_cache", |b| {
        b.iter_custom(|iters| run(&traces, &|k| consume(quick.get(&k)), iters).cpu)
    });
    // The bare map under our memory tier, as in the hit benchmark: epoch guard, lookup, clone.
    let floor_op = |k: u64| {
        let guard = scc::Guard::new();
        consume(floor.peek(&k, &guard).cloned());
    };
    g.bench_function("floor", |b| {
        b.iter_custom(|iters| run(&traces, &floor_op, iters).cpu)
    });
    // And dashmap, as in the hit benchmark: its shards' read locks are written by every reader.
    let floor_dashmap_op = |k: u64| consume(floor_dashmap.get(&k).map(|v| v.clone()));
    g.bench_function("floor_dashmap", |b| {
        b.iter_custom(|iters| run(&traces, &floor_dashmap_op, iters).cpu)
    });
    g.finish();
    benches::assert_only_hits_since(preloaded, "the contention group");
    all_present();

    if benches::is_bench_run() {
        // The targets' ratios in alternating runs: judged by wall time (see `run`), with the
        // CPU-time ratios beside them.
        let ours_op = |k| consume(ours(k));
        let quick_op = |k| consume(quick.get(&k));
        let cached_op = |k| consume(peer_cached(k));
        let results = [
            (
                "vs_quick_cache",
                pair(&traces, &ours_op, &quick_op, Timing::wall),
            ),
            (
                "vs_cached",
                pair(&traces, &ours_op, &cached_op, Timing::wall),
            ),
            (
                "vs_quick_cache_cpu",
                pair(&traces, &ours_op, &quick_op, Timing::cpu),
            ),
            (
                "vs_cached_cpu",
                pair(&traces, &ours_op, &cached_op, Timing::cpu),
            ),
        ];
        for (name, p) in &results {
            eprintln!(
                "paired ({PAIRED_ROUNDS} rounds of 5 ABBA): throughput ours ÷ peer, {name}: median {:.3} (middle half {:.3}-{:.3})",
                1.0 / p.ratio,
                1.0 / p.ratio_q3,
                1.0 / p.ratio_q1
            );
        }
        let fields: Vec<String> = results
            .iter()
            .map(|(name, p)| format!("\"{name}\": {}", p.json()))
            .collect();
        let [ran, skipped, apart] =
            [&RAN, &SKIPPED, &COUNTED_APART].map(|c| c.load(Ordering::Relaxed));
        eprintln!(
            "contention: {skipped} of {ran} iterations not counted (threads did not overlap), {apart} counted without overlap after 20 retries"
        );
        benches::write_extra(
            "contention_paired",
            &format!(
                "{{\"rounds\": {PAIRED_ROUNDS}, \"iterations\": {ran}, \"skipped\": {skipped}, \"counted_apart\": {apart}, {}}}",
                fields.join(", ")
            ),
        );
        benches::assert_only_hits_since(preloaded, "the contention pairs");
        all_present();
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
