//! A lock-free latency histogram: log-linear buckets (four per power of two, so any reading is
//! at most 25% above the truth), each an atomic counter. Recording is one `fetch_add`; percentiles
//! are read from a snapshot of the counts. Cheap enough for every miss; hits are sampled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Sub-buckets per power of two.
const SUB: u32 = 4;
/// Powers of two covered: 1 ns up to 2^40 ns (about 18 minutes).
const POWERS: u32 = 40;
/// The bucket of every value from 2^40 ns on. Kept apart from the covered range's top bucket, so
/// that values in that bucket still read at most 25% high when longer ones were seen.
const OVERFLOW: usize = (POWERS * SUB) as usize;
const BUCKETS: usize = OVERFLOW + 1;

pub(crate) struct Histogram {
    counts: Box<[AtomicU64]>,
    max_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_ns: AtomicU64::new(0),
        }
    }
}

fn bucket_of(ns: u64) -> usize {
    if ns < u64::from(SUB) {
        return ns as usize;
    }
    let power = 63 - ns.leading_zeros(); // >= 2
    if power >= POWERS {
        return OVERFLOW;
    }
    let sub = (ns >> (power - 2)) & u64::from(SUB - 1);
    (power * SUB) as usize + sub as usize
}

/// The largest value a bucket holds (what a percentile reports: never an underestimate).
fn upper_of(bucket: usize) -> u64 {
    let b = bucket as u32;
    if b < SUB {
        return u64::from(b);
    }
    let power = b / SUB;
    let sub = u64::from(b % SUB);
    ((SUB as u64 + sub + 1) << (power - 2)) - 1
}

/// What a percentile falling in `bucket` reports (before the cap at the largest value seen): the
/// bucket's upper end, except for [`OVERFLOW`], which has none and so reports the largest value
/// seen rather than understate it.
fn upper_bound(bucket: usize) -> u64 {
    if bucket == OVERFLOW {
        u64::MAX
    } else {
        upper_of(bucket)
    }
}

impl Histogram {
    pub(crate) fn record(&self, d: Duration) {
        let ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.counts[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        // Read first: `fetch_max` is a locked read-modify-write even when the maximum stands,
        // which would pull the line away from every other core recording at the same time.
        if ns > self.max_ns.load(Ordering::Relaxed) {
            self.max_ns.fetch_max(ns, Ordering::Relaxed);
        }
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let at = |q: f64| -> u64 {
            if total == 0 {
                return 0;
            }
            let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0;
            for (bucket, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return upper_bound(bucket);
                }
            }
            upper_bound(OVERFLOW)
        };
        let max = self.max_ns.load(Ordering::Relaxed);
        LatencySummary {
            count: total,
            p50_us: at(0.50).min(max) as f64 / 1000.0,
            p90_us: at(0.90).min(max) as f64 / 1000.0,
            p99_us: at(0.99).min(max) as f64 / 1000.0,
            max_us: max as f64 / 1000.0,
        }
    }

    pub(crate) fn reset(&self) {
        for c in self.counts.iter() {
            c.store(0, Ordering::Relaxed);
        }
        self.max_ns.store(0, Ordering::Relaxed);
    }
}

/// Percentiles of a latency, in microseconds (each at most 25% above the true value, never below,
/// and never above the largest value seen; a percentile past 2^40 ns, about 18 minutes, reads as
/// the largest value seen).
///
/// ```
/// use cache_core::cached;
///
/// #[cached]
/// fn square(x: u64) -> u64 { x * x }
///
/// let manager = cache_core::CacheManager::builder().build();
/// manager.scope_sync(|| (square(3), square(3)));
/// let body = &manager.stats()[0].body_latency;
/// assert_eq!(body.count, 1, "the body ran once");
/// assert!(body.p50_us <= body.max_us);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest value seen.
    pub max_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_past_the_last_bucket_is_never_understated() {
        let h = Histogram::default();
        let long = Duration::from_secs(3600); // past 2^40 ns
        h.record(long);
        let s = h.summary();
        assert_eq!(s.p50_us, long.as_nanos() as f64 / 1000.0);
        assert_eq!(s.p99_us, s.max_us);
    }

    #[test]
    fn values_just_under_the_last_power_stay_within_the_bound_beside_longer_ones() {
        let h = Histogram::default();
        // About 16.7 minutes: under 2^40 ns, in the top sub-bucket of the last power.
        let long = Duration::from_secs(1000);
        for _ in 0..99 {
            h.record(long);
        }
        h.record(Duration::from_secs(3600));
        let s = h.summary();
        let true_us = long.as_nanos() as f64 / 1000.0;
        assert!(
            (true_us..=true_us * 1.25).contains(&s.p50_us),
            "p50 {} for a true median of {true_us}",
            s.p50_us
        );
        assert_eq!(s.max_us, 3_600_000_000.0);
    }

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut last = 0;
        for ns in [0u64, 1, 3, 4, 5, 7, 8, 100, 1_000, 123_456, 10_000_000_000] {
            let b = bucket_of(ns);
            assert!(b >= last, "{ns}");
            last = b;
            let upper = upper_of(b);
            assert!(upper >= ns, "{ns} -> bucket {b} upper {upper}");
            assert!(upper as f64 <= ns as f64 * 1.25 + 1.0, "{ns} -> {upper}");
        }
    }

    #[test]
    fn percentiles() {
        let h = Histogram::default();
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.summary();
        assert_eq!(s.count, 100);
        assert!((50.0..=62.5).contains(&s.p50_us), "{s:?}");
        assert!((99.0..=100.0).contains(&s.p99_us), "{s:?}");
        assert_eq!(s.max_us, 100.0);
        h.reset();
        assert_eq!(h.summary(), LatencySummary::default());
    }
}
