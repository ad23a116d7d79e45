//! Shared fixtures of the benchmarks: the value every cache returns, the same for all peers.

/// A value of about 200 bytes: 168 inline, plus a 48-byte name on the heap.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    /// The id it was built for.
    pub id: u64,
    /// A 48-byte name.
    pub name: String,
    /// A score.
    pub score: f64,
    /// Padding to the size of a typical row.
    pub flags: [u64; 16],
}

impl Profile {
    /// The profile of `id`, as a "database" would build it.
    pub fn load(id: u64) -> Profile {
        Profile {
            id,
            name: format!("{id:0>48}"),
            score: id as f64 * 0.5,
            flags: [id; 16],
        }
    }
}

/// How many times a cached function's body ran, across every cached function of the benchmark
/// binary: the bodies call [`body`], and the benchmarks compare counts before and after their
/// timed loops, so a row that claims to measure hits (or misses) is checked to have measured them.
static BODY_RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A cached function's body: counts the run, then loads the profile. Only misses pay the
/// increment, so it adds nothing to a hit.
pub fn body(id: u64) -> Profile {
    BODY_RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Profile::load(id)
}

/// How many times [`body`] has run in this process.
pub fn body_runs() -> u64 {
    BODY_RUNS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Panics unless no body ran since `mark` (a [`body_runs`] reading): `what` claimed to time
/// hits only, and a miss in it would have timed a body run as if it were a hit.
pub fn assert_only_hits_since(mark: u64, what: &str) {
    let runs = body_runs() - mark;
    assert_eq!(
        runs, 0,
        "{what}: {runs} calls ran the body; the figures are not hits"
    );
}

/// Keeps a call's result from being optimised away without copying it: the benchmarks time
/// `consume(f(id))`, where `black_box(f(id))` would move the 168-byte result into a slot of its
/// own, and criterion's `iter` would move it once more into its own `black_box`. Those copies
/// read bytes the clone has just stored in narrower pieces and wait for them (a failed store
/// forward): about a tenth of every hit row's samples, the same nanoseconds added to every
/// row, which pulled every ratio towards 1.0. Here the result stays where the call wrote it;
/// only its address escapes, then it is dropped as a caller would drop it.
#[inline(always)]
pub fn consume<T>(result: T) {
    std::hint::black_box(&result);
}

/// How many distinct keys the hit benchmarks cycle through (all preloaded).
pub const KEYS: u64 = 1_000;

/// A reproducible Zipf(`s`) trace of `len` requests over keys `0..keys`: key `k` is drawn with
/// probability proportional to `1 / (k + 1)^s`. Same seed, same trace, on every machine.
pub fn zipf_trace(s: f64, keys: u64, len: usize, seed: u64) -> Vec<u64> {
    let mut cdf = Vec::with_capacity(keys as usize);
    let mut total = 0.0;
    for k in 0..keys {
        total += 1.0 / ((k + 1) as f64).powf(s);
        cdf.push(total);
    }
    let mut rng = SplitMix64(seed);
    (0..len)
        .map(|_| {
            let u = rng.next_f64() * total;
            cdf.partition_point(|&c| c < u).min(keys as usize - 1) as u64
        })
        .collect()
}

/// SplitMix64: a tiny, fast, seedable generator, good enough for traces.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Where the benchmarks that are not timings (hit ratios, stampede body runs) leave their
/// figures for `scripts/bench`: `<target dir>/bench-extra/<name>.json`, under `CARGO_TARGET_DIR`
/// when it is set (where `scripts/bench` looks), else the workspace's `target/`.
///
/// Only under `cargo bench` (criterion's `--bench` argument): `cargo test --all-targets` also
/// runs the benchmarks, once each in a debug build, and its figures must not replace a real run's.
pub fn write_extra(name: &str, json: &str) {
    if !is_bench_run() {
        return;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let dir = target.join("bench-extra");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(format!("{name}.json")), json);
    }
}

/// The result of [`paired`]: median times per call of the two sides, and the median and middle
/// half of the per-round ratios `a ÷ b`.
#[derive(Clone, Copy, Debug)]
pub struct Paired {
    /// Median time per call of side `a`, in nanoseconds.
    pub a_ns: f64,
    /// Median time per call of side `b`, in nanoseconds.
    pub b_ns: f64,
    /// Median of the per-round ratios `a ÷ b`.
    pub ratio: f64,
    /// First quartile of the per-round ratios.
    pub ratio_q1: f64,
    /// Third quartile of the per-round ratios.
    pub ratio_q3: f64,
}

impl Paired {
    /// As JSON for [`write_extra`].
    pub fn json(&self) -> String {
        format!(
            "{{\"a_ns\": {:.3}, \"b_ns\": {:.3}, \"ratio\": {:.4}, \"ratio_q1\": {:.4}, \"ratio_q3\": {:.4}}}",
            self.a_ns, self.b_ns, self.ratio, self.ratio_q1, self.ratio_q3
        )
    }
}

/// Compares two workloads on a noisy machine: `rounds` rounds, each running a batch of `a`, two
/// of `b` and one more of `a` (or the mirror order, alternating), so that drift and other
/// processes' load fall on both sides of a round alike; the per-round ratios' median is robust to
/// the bursts that move criterion's separate stretches of time against each other.
///
/// `batch(side)` runs one batch of side 0 (`a`) or 1 (`b`) and returns its time; `per_batch` is
/// the number of calls in a batch, to report times per call.
pub fn paired(
    rounds: usize,
    per_batch: u64,
    mut batch: impl FnMut(usize) -> std::time::Duration,
) -> Paired {
    let (mut a, mut b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    // One warm-up round, not counted.
    for side in [0, 1] {
        batch(side);
    }
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [0, 1, 1, 0]
        } else {
            [1, 0, 0, 1]
        };
        let mut times = [0f64; 2];
        for side in order {
            times[side] += batch(side).as_nanos() as f64 / (2 * per_batch) as f64;
        }
        a.push(times[0]);
        b.push(times[1]);
        ratios.push(times[0] / times[1]);
    }
    let quantile = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    Paired {
        a_ns: quantile(&mut a, 0.5),
        b_ns: quantile(&mut b, 0.5),
        ratio: quantile(&mut ratios, 0.5),
        ratio_q1: quantile(&mut ratios, 0.25),
        ratio_q3: quantile(&mut ratios, 0.75),
    }
}

/// Pins the thread or process `pid` (0: the calling thread) to CPU `cpu`; false if the system
/// refused (a restricted container), which leaves the scheduler's placement.
pub fn pin_to_cpu(pid: libc::pid_t, cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes within it; the call only reads
    // the set.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Whether this process runs under `cargo bench` (criterion's `--bench` argument) rather than
/// `cargo test --all-targets`, which runs each benchmark once in a debug build.
pub fn is_bench_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The floor map's hasher: one multiply and a shift of the `u64` key, cheaper than any real key's
/// hash (ours hashes the rendered key with XXH3), so the floor is a floor.
#[derive(Debug, Default)]
pub struct OneMultiply(u64);

impl std::hash::Hasher for OneMultiply {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("the floor map's keys are u64s, hashed by write_u64")
    }
    fn write_u64(&mut self, n: u64) {
        let m = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = m ^ (m >> 32);
    }
}
