//! Publishing the stats through the `metrics` facade (feature `metrics`), so any exporter
//! (Prometheus, StatsD, OpenTelemetry) sees them, labelled by cache and tier.

use metrics::{counter, gauge};

use crate::CacheManager;

impl CacheManager {
    /// Publishes every cache's counters (as absolute counter values) and gauges to the installed
    /// `metrics` recorder. Cheap: it reads the striped counters once per call; call it on a timer
    /// or before each scrape.
    ///
    /// The families of [`prometheus_text`](crate::prometheus_text), with durations in seconds
    /// (`_seconds` where the text format has `_microseconds`). Counters `cache_hits_total`,
    /// `cache_misses_total` (label `cache`, and `tier` = `memory` or `remote`),
    /// `cache_inserts_total`, `cache_evictions_total`, `cache_expirations_total`,
    /// `cache_invalidations_total`, `cache_coalesced_total`, `cache_bypassed_total`,
    /// `cache_stale_served_total`, `cache_refreshes_total`, `cache_refreshes_skipped_total`,
    /// `cache_fail_safe_total`, `cache_body_failures_total`, `cache_timeouts_total`,
    /// `cache_body_runs_total`; gauges
    /// `cache_entries`, `cache_weight_bytes`, `cache_hit_ratio`,
    /// `cache_lookup_duration_p50_seconds`, `cache_lookup_duration_p99_seconds`,
    /// `cache_body_duration_p50_seconds`, `cache_body_duration_p99_seconds`; and for remote tiers
    /// counters `cache_remote_errors_total`, `cache_remote_timeouts_total`,
    /// `cache_remote_skipped_total`, `cache_remote_decode_errors_total`,
    /// `cache_remote_refused_too_large_total`, `cache_remote_lock_acquired_total`,
    /// `cache_remote_lock_waits_total`, `cache_remote_lock_wait_timeouts_total`, gauges
    /// `cache_remote_latency_mean_seconds` and `cache_remote_breaker_open`.
    ///
    /// ```
    /// use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    ///
    /// let manager = cache_core::CacheManager::builder().build();
    /// manager.cache("users").blocking().set("user:1", 1_u32);
    /// let recorder = DebuggingRecorder::new();
    /// let snapshotter = recorder.snapshotter();
    /// metrics::with_local_recorder(&recorder, || manager.publish_metrics());
    /// let metrics = snapshotter.snapshot().into_vec();
    /// let find = |name| metrics.iter().find(|(k, ..)| k.key().name() == name);
    /// let (.., inserts) = find("cache_inserts_total").unwrap();
    /// assert_eq!(*inserts, DebugValue::Counter(1));
    /// ```
    pub fn publish_metrics(&self) {
        for s in self.stats() {
            let name = s.name.clone();
            let mem = |metric: &'static str, v: u64| {
                counter!(metric, "cache" => name.clone(), "tier" => "memory").absolute(v);
            };
            mem("cache_hits_total", s.hits);
            mem("cache_misses_total", s.misses);
            mem("cache_inserts_total", s.inserts);
            mem("cache_evictions_total", s.evictions);
            mem("cache_expirations_total", s.expirations);
            mem("cache_invalidations_total", s.invalidations);
            mem("cache_coalesced_total", s.coalesced);
            mem("cache_bypassed_total", s.bypassed);
            mem("cache_stale_served_total", s.stale_served);
            mem("cache_refreshes_total", s.refreshes);
            mem("cache_refreshes_skipped_total", s.refreshes_skipped);
            mem("cache_fail_safe_total", s.fail_safe);
            mem("cache_body_failures_total", s.body_failures);
            mem("cache_timeouts_total", s.timeouts);
            mem("cache_body_runs_total", s.body_latency.count);
            let g = |metric: &'static str, v: f64| {
                gauge!(metric, "cache" => name.clone(), "tier" => "memory").set(v);
            };
            g("cache_entries", s.entries as f64);
            g("cache_weight_bytes", s.weight as f64);
            g("cache_hit_ratio", s.hit_rate());
            g(
                "cache_body_duration_p50_seconds",
                s.body_latency.p50_us / 1e6,
            );
            g(
                "cache_body_duration_p99_seconds",
                s.body_latency.p99_us / 1e6,
            );
            g(
                "cache_lookup_duration_p50_seconds",
                s.lookup_latency.p50_us / 1e6,
            );
            g(
                "cache_lookup_duration_p99_seconds",
                s.lookup_latency.p99_us / 1e6,
            );
            if let Some(r) = &s.remote {
                let rem = |metric: &'static str, v: u64| {
                    counter!(metric, "cache" => name.clone(), "tier" => "remote").absolute(v);
                };
                rem("cache_hits_total", r.hits);
                rem("cache_misses_total", r.misses);
                rem("cache_remote_errors_total", r.errors);
                rem("cache_remote_timeouts_total", r.timeouts);
                rem("cache_remote_skipped_total", r.skipped);
                rem("cache_remote_decode_errors_total", r.decode_errors);
                rem("cache_remote_refused_too_large_total", r.too_large);
                rem("cache_remote_lock_acquired_total", r.lock_acquired);
                rem("cache_remote_lock_waits_total", r.lock_waits);
                rem(
                    "cache_remote_lock_wait_timeouts_total",
                    r.lock_wait_timeouts,
                );
                gauge!("cache_remote_latency_mean_seconds", "cache" => name.clone(), "tier" => "remote")
                    .set(r.mean_latency_us as f64 / 1e6);
                let open = r.breaker != Some(crate::BreakerState::Closed);
                gauge!("cache_remote_breaker_open", "cache" => name.clone(), "tier" => "remote")
                    .set(f64::from(u8::from(open)));
            }
        }
    }
}
