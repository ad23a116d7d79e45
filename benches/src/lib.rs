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
    if !std::env::args().any(|a| a == "--bench") {
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
