//! Stats in the Prometheus text exposition format, for a `/metrics` endpoint without any metrics
//! library. (Services already on the `metrics` facade can publish the same numbers through it.)

use std::fmt::Write;

use crate::{BreakerState, CacheManager, CacheStats, RemoteStats};

impl CacheManager {
    /// Every cache's counters in the Prometheus text format (version 0.0.4), labelled by cache
    /// and tier.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let manager = cache_core::CacheManager::builder().build();
    /// manager.cache("users").set("user:1", 1).await;
    /// let text = manager.prometheus_text();
    /// assert!(text.contains("cache_inserts_total{cache=\"users\",tier=\"memory\"} 1"));
    /// # });
    /// ```
    pub fn prometheus_text(&self) -> String {
        prometheus_text(&self.stats())
    }
}

/// Renders `stats` in the Prometheus text format: one family per metric, its samples together.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let manager = cache_core::CacheManager::builder().build();
/// manager.cache("users").get::<u32>("user:1").await;
/// let text = cache_core::prometheus_text(&manager.stats());
/// assert!(text.contains("cache_misses_total{cache=\"users\",tier=\"memory\"} 1"));
/// # });
/// ```
pub fn prometheus_text(stats: &[CacheStats]) -> String {
    type Sample = (String, String);
    let mut families: Vec<(&str, &str, Vec<Sample>)> = Vec::new();
    let mut family = |name: &'static str, kind: &'static str, samples: Vec<Sample>| {
        if !samples.is_empty() {
            families.push((name, kind, samples));
        }
    };
    let memory = |get: fn(&CacheStats) -> String| -> Vec<Sample> {
        stats
            .iter()
            .map(|s| {
                (
                    format!("cache=\"{}\",tier=\"memory\"", escape(&s.name)),
                    get(s),
                )
            })
            .collect()
    };
    let remote = |get: fn(&RemoteStats) -> String| -> Vec<Sample> {
        stats
            .iter()
            .filter_map(|s| s.remote.as_ref().map(|r| (s, r)))
            .map(|(s, r)| {
                (
                    format!("cache=\"{}\",tier=\"remote\"", escape(&s.name)),
                    get(r),
                )
            })
            .collect()
    };
    let both = |m: fn(&CacheStats) -> String, r: fn(&RemoteStats) -> String| {
        let mut v = memory(m);
        v.extend(remote(r));
        v
    };
    family(
        "cache_hits_total",
        "counter",
        both(|s| s.hits.to_string(), |r| r.hits.to_string()),
    );
    family(
        "cache_misses_total",
        "counter",
        both(|s| s.misses.to_string(), |r| r.misses.to_string()),
    );
    family(
        "cache_hit_ratio",
        "gauge",
        memory(|s| s.hit_rate().to_string()),
    );
    family(
        "cache_inserts_total",
        "counter",
        memory(|s| s.inserts.to_string()),
    );
    family(
        "cache_evictions_total",
        "counter",
        memory(|s| s.evictions.to_string()),
    );
    family(
        "cache_expirations_total",
        "counter",
        memory(|s| s.expirations.to_string()),
    );
    family(
        "cache_invalidations_total",
        "counter",
        memory(|s| s.invalidations.to_string()),
    );
    family(
        "cache_coalesced_total",
        "counter",
        memory(|s| s.coalesced.to_string()),
    );
    family(
        "cache_bypassed_total",
        "counter",
        memory(|s| s.bypassed.to_string()),
    );
    family(
        "cache_stale_served_total",
        "counter",
        memory(|s| s.stale_served.to_string()),
    );
    family(
        "cache_refreshes_total",
        "counter",
        memory(|s| s.refreshes.to_string()),
    );
    family(
        "cache_refreshes_skipped_total",
        "counter",
        memory(|s| s.refreshes_skipped.to_string()),
    );
    family(
        "cache_fail_safe_total",
        "counter",
        memory(|s| s.fail_safe.to_string()),
    );
    family(
        "cache_body_failures_total",
        "counter",
        memory(|s| s.body_failures.to_string()),
    );
    family(
        "cache_timeouts_total",
        "counter",
        memory(|s| s.timeouts.to_string()),
    );
    family("cache_entries", "gauge", memory(|s| s.entries.to_string()));
    family(
        "cache_weight_bytes",
        "gauge",
        memory(|s| s.weight.to_string()),
    );
    family(
        "cache_lookup_duration_p50_microseconds",
        "gauge",
        memory(|s| s.lookup_latency.p50_us.to_string()),
    );
    family(
        "cache_lookup_duration_p99_microseconds",
        "gauge",
        memory(|s| s.lookup_latency.p99_us.to_string()),
    );
    family(
        "cache_body_duration_p50_microseconds",
        "gauge",
        memory(|s| s.body_latency.p50_us.to_string()),
    );
    family(
        "cache_body_duration_p99_microseconds",
        "gauge",
        memory(|s| s.body_latency.p99_us.to_string()),
    );
    family(
        "cache_body_runs_total",
        "counter",
        memory(|s| s.body_latency.count.to_string()),
    );
    family(
        "cache_remote_errors_total",
        "counter",
        remote(|r| r.errors.to_string()),
    );
    family(
        "cache_remote_timeouts_total",
        "counter",
        remote(|r| r.timeouts.to_string()),
    );
    family(
        "cache_remote_skipped_total",
        "counter",
        remote(|r| r.skipped.to_string()),
    );
    family(
        "cache_remote_decode_errors_total",
        "counter",
        remote(|r| r.decode_errors.to_string()),
    );
    family(
        "cache_remote_refused_too_large_total",
        "counter",
        remote(|r| r.too_large.to_string()),
    );
    family(
        "cache_remote_lock_acquired_total",
        "counter",
        remote(|r| r.lock_acquired.to_string()),
    );
    family(
        "cache_remote_lock_waits_total",
        "counter",
        remote(|r| r.lock_waits.to_string()),
    );
    family(
        "cache_remote_lock_wait_timeouts_total",
        "counter",
        remote(|r| r.lock_wait_timeouts.to_string()),
    );
    family(
        "cache_remote_latency_mean_microseconds",
        "gauge",
        remote(|r| r.mean_latency_us.to_string()),
    );
    family(
        "cache_remote_breaker_open",
        "gauge",
        remote(|r| u8::from(r.breaker != Some(BreakerState::Closed)).to_string()),
    );
    let mut out = String::new();
    for (name, kind, samples) in families {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
    out
}

/// Escapes a label value (`\`, `"`, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
