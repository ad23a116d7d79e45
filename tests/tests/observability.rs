//! Observability: exact counters for a known sequence, latency summaries, the `metrics` facade,
//! tracing spans, alert windows, warming.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cache_core::{AlertKind, AlertRules, CacheManager, Clock, Policy, Warmer, cached};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "obs", key = "n:{n}")]
fn square(n: u64) -> u64 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    n * n
}

fn known_sequence(m: &CacheManager) {
    m.scope_sync(|| {
        for n in [1, 2, 1, 1, 3, 2] {
            square(n);
        }
    });
}

#[test]
fn a_known_sequence_produces_exact_counters() {
    let m = CacheManager::builder()
        .default_policy(Policy::new().max_entries(2))
        .build();
    known_sequence(&m);
    let s = &m.stats()[0];
    // 1 miss, 2 miss, 1 hit, 1 hit, 3 miss (evicts one), 2: hit or miss depending on the victim.
    assert_eq!(s.inserts + s.hits, 6, "{s:?}");
    assert_eq!(s.misses, s.inserts);
    assert_eq!(s.evictions, s.inserts - 2);
    assert_eq!(s.entries, 2);
    assert_eq!(s.body_latency.count, s.inserts, "every body run is timed");
    assert!(
        s.lookup_latency.count <= s.hits + s.misses,
        "lookups are sampled"
    );
}

#[test]
fn metrics_facade_sees_the_same_numbers() {
    let m = CacheManager::builder().build();
    known_sequence(&m);
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || m.publish_metrics());
    let snapshot = snapshotter.snapshot().into_vec();
    let value = |name: &str| {
        snapshot
            .iter()
            .find(|(key, ..)| {
                key.key().name() == name
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "cache" && l.value() == "obs")
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "tier" && l.value() == "memory")
            })
            .map(|(.., v)| format!("{v:?}"))
            .unwrap_or_else(|| panic!("{name} not published"))
    };
    assert_eq!(
        value("cache_hits_total"),
        format!("{:?}", DebugValue::Counter(3))
    );
    assert_eq!(
        value("cache_misses_total"),
        format!("{:?}", DebugValue::Counter(3))
    );
    assert_eq!(
        value("cache_inserts_total"),
        format!("{:?}", DebugValue::Counter(3))
    );
    assert_eq!(
        value("cache_entries"),
        format!("{:?}", DebugValue::Gauge(3.0.into()))
    );
    assert_eq!(
        value("cache_hit_ratio"),
        format!("{:?}", DebugValue::Gauge(0.5.into()))
    );
}

#[test]
fn prometheus_text_has_every_family_once() {
    let m = CacheManager::builder().build();
    known_sequence(&m);
    let text = m.prometheus_text();
    assert!(
        text.contains("cache_hits_total{cache=\"obs\",tier=\"memory\"} 3"),
        "{text}"
    );
    let mut seen = std::collections::HashSet::new();
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        assert!(seen.insert(line.to_owned()), "duplicate family: {line}");
    }
}

/// A manager on a manual clock, checking `rules`.
fn alerting(rules: AlertRules) -> (Clock, CacheManager) {
    let clock = Clock::manual();
    let m = CacheManager::builder()
        .clock(clock.clone())
        .alerts(rules)
        .build();
    (clock, m)
}

#[test]
fn the_first_window_counts_from_when_it_opens() {
    let (clock, m) = alerting(
        AlertRules::new()
            .window(Duration::from_secs(60))
            .min_hit_rate(0.9)
            .min_lookups(3),
    );
    let c = m.cache("warm");
    // Misses before the first check (start-up) belong to no window.
    for _ in 0..5 {
        c.blocking().get::<u32>("absent");
    }
    assert!(
        m.check_alerts().is_empty(),
        "the first call opens the window"
    );
    clock.advance(Duration::from_secs(60));
    assert!(
        m.check_alerts().is_empty(),
        "no lookups in the window, so no hit rate to judge"
    );
}

#[test]
fn alerts_fire_once_per_window() {
    let clock = Clock::manual();
    let m = CacheManager::builder()
        .clock(clock.clone())
        .default_policy(Policy::new().max_entries(1))
        .alerts(
            AlertRules::new()
                .window(Duration::from_secs(60))
                .min_hit_rate(0.9)
                .min_lookups(3)
                .max_weight(1)
                .max_evictions_per_sec(0.01),
        )
        .build();
    assert!(
        m.check_alerts().is_empty(),
        "the first call opens the window"
    );
    let c = m.cache("hot");
    for i in 0..5u32 {
        c.blocking().set(&format!("k{i}"), i);
        c.blocking().get::<u32>("absent");
    }
    assert!(m.check_alerts().is_empty(), "mid-window: nothing");
    clock.advance(Duration::from_secs(60));
    let alerts = m.check_alerts();
    let kinds: Vec<_> = alerts.iter().map(|a| a.kind).collect();
    assert_eq!(
        kinds,
        [
            AlertKind::LowHitRate,
            AlertKind::HighWeight,
            AlertKind::HighEvictionRate
        ],
        "{alerts:?}"
    );
    assert!(m.check_alerts().is_empty(), "once per window, not per call");
    clock.advance(Duration::from_secs(60));
    let alerts = m.check_alerts();
    assert_eq!(
        alerts.iter().map(|a| a.kind).collect::<Vec<_>>(),
        [AlertKind::HighWeight],
        "no lookups or evictions in the second window"
    );
}

#[tokio::test]
async fn warmers_fill_caches_and_their_failures_are_counted_not_fatal() {
    static LOADED: AtomicUsize = AtomicUsize::new(0);
    #[cached(cache = "templates", key = "t:{id}")]
    async fn template(id: u64) -> String {
        LOADED.fetch_add(1, Ordering::SeqCst);
        format!("template {id}")
    }
    let m = CacheManager::builder()
        .warmer(Warmer::new("templates", || async {
            for id in 1..=5 {
                template(id).await;
            }
            Ok::<_, String>(5)
        }))
        .warmer(Warmer::new("broken", || async {
            Err::<usize, _>("database down")
        }))
        .build();
    let reports = m.warm().await;
    assert_eq!(reports[0].loaded, 5);
    assert_eq!(reports[1].error.as_deref(), Some("database down"));
    assert_eq!(
        m.cache("templates").len(),
        5,
        "the warmer filled this manager's cache"
    );
    m.scope(async {
        assert_eq!(template(3).await, "template 3");
    })
    .await;
    assert_eq!(
        LOADED.load(Ordering::SeqCst),
        5,
        "the first request after warming is a hit"
    );
    let stats = m.warmer_stats();
    assert_eq!((stats[1].runs, stats[1].errors), (1, 1));
}

#[tokio::test]
async fn a_panicking_warmer_is_counted_as_failed_and_the_others_still_run() {
    let m = CacheManager::builder()
        .warmer(Warmer::new("exploding", || async {
            if true {
                panic!("template directory missing");
            }
            Ok::<usize, String>(0)
        }))
        .warmer(Warmer::new("after", || async {
            cache_core::cache("after").set("k", 1_u64).await;
            Ok::<_, String>(1)
        }))
        .build();
    let reports = m.warm().await;
    assert_eq!(
        reports[0].error.as_deref(),
        Some("panicked: template directory missing")
    );
    assert_eq!(reports[0].loaded, 0);
    assert_eq!(
        (reports[1].loaded, reports[1].error.as_deref()),
        (1, None),
        "the next warmer ran"
    );
    assert_eq!(m.cache("after").len(), 1);
    let stats = m.warmer_stats();
    assert_eq!((stats[0].runs, stats[0].errors), (1, 1));
    assert_eq!((stats[1].runs, stats[1].errors), (1, 0));
}

#[tokio::test]
async fn warming_a_hybrid_cache_waits_for_the_backplane_so_its_entries_stay() {
    static LOADED: AtomicUsize = AtomicUsize::new(0);
    #[cached(cache = "pages", key = "p:{id}")]
    async fn page(id: u64) -> String {
        LOADED.fetch_add(1, Ordering::SeqCst);
        format!("page {id}")
    }
    let m = CacheManager::builder()
        .remote(cache_core::testing::MemoryBackend::new())
        .cache("pages", Policy::new().tier(cache_core::Tier::Hybrid))
        .warmer(Warmer::new("pages", || async {
            for id in 1..=5 {
                page(id).await;
            }
            Ok::<_, String>(5)
        }))
        .build();
    // At once after build: the backplane's first subscription, which clears the memory tier,
    // has not happened yet. Warmed before it, the entries would be cleared by it.
    let reports = m.warm().await;
    assert_eq!(reports[0].loaded, 5);
    assert_eq!(
        m.backplane_stats().map(|s| s.subscriptions),
        Some(1),
        "warm() ran after the first subscription"
    );
    assert_eq!(
        m.cache("pages").len(),
        5,
        "the warmed entries are in memory"
    );
    m.scope(async {
        assert_eq!(page(3).await, "page 3");
    })
    .await;
    assert_eq!(LOADED.load(Ordering::SeqCst), 5, "a hit after warming");
    assert_eq!(m.cache("pages").stats().hits, 1, "from the memory tier");
}

#[tokio::test]
async fn spawned_warmers_also_wait_for_the_backplane() {
    #[cached(cache = "spawned", key = "s:{id}")]
    async fn item(id: u64) -> u64 {
        id * 10
    }
    let m = CacheManager::builder()
        .remote(cache_core::testing::MemoryBackend::new())
        .cache("spawned", Policy::new().tier(cache_core::Tier::Hybrid))
        .warmer(Warmer::new("items", || async {
            for id in 1..=5 {
                item(id).await;
            }
            Ok::<_, String>(5)
        }))
        .build();
    for handle in m.spawn_warmers() {
        handle
            .await
            .expect("a warmer without an interval runs once and ends");
    }
    assert_eq!(m.backplane_stats().map(|s| s.subscriptions), Some(1));
    assert_eq!(
        m.cache("spawned").len(),
        5,
        "the warmed entries are in memory"
    );
}

/// A backend whose backplane never subscribes (as with Redis unreachable), and which says when
/// its manager has dropped it.
struct NeverSubscribes {
    inner: cache_core::testing::MemoryBackend,
    dropped: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for NeverSubscribes {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

struct SilentBackplane;

impl cache_core::remote::backplane::Backplane for SilentBackplane {
    fn publish<'a>(
        &'a self,
        _: &'a [u8],
    ) -> cache_core::remote::BoxFuture<'a, Result<(), cache_core::RemoteError>> {
        Box::pin(async { Ok(()) })
    }
    fn subscribe(
        &self,
        _: std::sync::Weak<dyn cache_core::remote::backplane::BackplaneSink>,
    ) -> cache_core::remote::BoxFuture<'static, ()> {
        Box::pin(std::future::pending())
    }
}

impl cache_core::RemoteBackend for NeverSubscribes {
    fn tier(&self, cache: &str) -> Arc<dyn cache_core::remote::RemoteTier> {
        self.inner.tier(cache)
    }
    fn delete_tag<'a>(
        &'a self,
        tag: &'a str,
    ) -> cache_core::remote::BoxFuture<'a, Result<u64, cache_core::RemoteError>> {
        self.inner.delete_tag(tag)
    }
    fn clear_all(&self) -> cache_core::remote::BoxFuture<'_, Result<u64, cache_core::RemoteError>> {
        self.inner.clear_all()
    }
    fn ping(&self) -> cache_core::remote::BoxFuture<'_, Result<Duration, cache_core::RemoteError>> {
        self.inner.ping()
    }
    fn describe(&self) -> String {
        "a backend whose backplane never subscribes".to_owned()
    }
    fn backplane(&self) -> Option<Arc<dyn cache_core::remote::backplane::Backplane>> {
        Some(Arc::new(SilentBackplane))
    }
}

#[tokio::test(start_paused = true)]
async fn warm_without_warmers_does_not_wait_for_a_backplane_that_never_subscribes() {
    let m = CacheManager::builder()
        .remote(NeverSubscribes {
            inner: cache_core::testing::MemoryBackend::new(),
            dropped: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })
        .cache("unwarmed", Policy::new().tier(cache_core::Tier::Hybrid))
        .build();
    // Paused: a wait for the subscription would move the clock by its 5 s limit.
    let started = tokio::time::Instant::now();
    assert!(m.warm().await.is_empty());
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "warm() waited for nothing"
    );
}

#[tokio::test]
async fn a_spawned_warmer_waiting_for_the_backplane_does_not_keep_its_manager_alive() {
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let m = CacheManager::builder()
        .remote(NeverSubscribes {
            inner: cache_core::testing::MemoryBackend::new(),
            dropped: dropped.clone(),
        })
        .cache("waiting", Policy::new().tier(cache_core::Tier::Hybrid))
        .warmer(Warmer::new("waiting", move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, String>(0) }
        }))
        .build();
    let handles = m.spawn_warmers();
    // Let the warmer's task start waiting for the subscription that never comes.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    drop(m);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the manager (and its backend) went when dropped, although its warmer was still waiting"
    );
    // Paused: the 5 s wait ends at once. The manager is gone, so the warmer never runs.
    tokio::time::pause();
    for h in handles {
        h.await.expect("the warmer's task ends");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn interval_warmers_run_again() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let m = CacheManager::builder()
        .warmer(
            Warmer::new("tick", move || {
                let runs = counted.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, String>(0)
                }
            })
            .every(Duration::from_secs(10)),
        )
        .build();
    let handles = m.spawn_warmers();
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 4, "at 0, 10, 20 and 30 s");
    drop(m);
    tokio::time::sleep(Duration::from_secs(20)).await;
    for h in handles {
        h.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn an_interval_warmer_that_panics_keeps_running() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let m = CacheManager::builder()
        .warmer(
            Warmer::new("flaky", move || {
                let run = counted.fetch_add(1, Ordering::SeqCst) + 1;
                async move {
                    // The first and third runs panic, the others load one entry.
                    if run % 2 == 1 {
                        panic!("run {run} crashed");
                    }
                    Ok::<_, String>(1)
                }
            })
            .every(Duration::from_secs(10)),
        )
        .build();
    let handles = m.spawn_warmers();
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        4,
        "at 0, 10, 20 and 30 s, panics or not"
    );
    let stats = m.warmer_stats();
    assert_eq!((stats[0].runs, stats[0].errors, stats[0].loaded), (4, 2, 2));
    drop(m);
    tokio::time::sleep(Duration::from_secs(20)).await;
    for h in handles {
        h.await
            .expect("the task ended with its manager, not with a panic");
    }
}

#[tokio::test(start_paused = true)]
async fn a_get_of_an_entry_kept_past_its_ttl_is_a_counted_miss() {
    let m = CacheManager::builder()
        .clock(Clock::tokio())
        .cache(
            "kept",
            Policy::new()
                .ttl_secs(10)
                .fail_safe(Duration::from_secs(60)),
        )
        .build();
    let c = m.cache("kept");
    c.set("k", 1_u32).await;
    assert_eq!(c.get::<u32>("k").await, Some(1));
    // Past its TTL the entry is kept for the fail-safe window, but `get` does not serve it.
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(c.get::<u32>("k").await, None);
    let s = c.stats();
    assert_eq!((s.hits, s.misses), (1, 1), "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn every_body_run_is_timed_failed_ones_included() {
    let m = CacheManager::builder()
        .clock(Clock::tokio())
        .cache(
            "flaky",
            Policy::new()
                .ttl_secs(10)
                .fail_safe(Duration::from_secs(600))
                .fail_safe_throttle(Duration::from_secs(1)),
        )
        .build();
    let c = m.cache("flaky");
    let runs = Arc::new(AtomicUsize::new(0));
    let body = |outcome: &'static str| {
        let runs = runs.clone();
        move || async move {
            runs.fetch_add(1, Ordering::SeqCst);
            match outcome {
                "ok" => Ok::<u32, String>(1),
                "err" => Err("database down".to_owned()),
                _ => panic!("database driver crashed"),
            }
        }
    };
    assert_eq!(c.try_get_or_insert_with("k", body("ok")).await, Ok(1));
    // Past the TTL: a failing body, then a panicking one, each answered by the fail-safe value.
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(c.try_get_or_insert_with("k", body("err")).await, Ok(1));
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(c.try_get_or_insert_with("k", body("panic")).await, Ok(1));
    // A panic with no fail-safe value reaches its caller.
    let c2 = c.clone();
    let panicking = body("panic");
    let crashed = tokio::spawn(async move { c2.try_get_or_insert_with("other", panicking).await });
    assert!(crashed.await.is_err());
    let s = c.stats();
    assert_eq!(runs.load(Ordering::SeqCst), 4);
    assert_eq!((s.fail_safe, s.body_failures), (2, 3), "{s:?}");
    assert_eq!(s.body_latency.count, 4, "every body run is timed: {s:?}");
}

#[tokio::test]
async fn the_metrics_facade_publishes_every_prometheus_family() {
    let m = CacheManager::builder()
        .remote(cache_core::testing::MemoryBackend::new())
        .cache("both", Policy::new().tier(cache_core::Tier::Hybrid))
        .build();
    let c = m.cache("both");
    c.set("k", 1_u32).await;
    assert_eq!(c.get::<u32>("k").await, Some(1));
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || m.publish_metrics());
    let published: std::collections::HashSet<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, ..)| key.key().name().to_owned())
        .collect();
    let text = m.prometheus_text();
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    assert!(families.contains(&"cache_remote_errors_total"), "{text}");
    // The facade takes durations in seconds (its convention); the text format in microseconds.
    let missing: Vec<&str> = families
        .iter()
        .copied()
        .filter(|f| {
            !published.contains(*f) && !published.contains(&f.replace("_microseconds", "_seconds"))
        })
        .collect();
    assert!(missing.is_empty(), "not published: {missing:?}");
}

#[tokio::test]
async fn an_entry_past_its_ttl_counts_as_expired_however_it_is_invalidated() {
    let clock = Clock::manual();
    let m = CacheManager::builder()
        .clock(clock.clone())
        .cache(
            "kept",
            Policy::new()
                .ttl_secs(10)
                .fail_safe(Duration::from_secs(600)),
        )
        .build();
    let c = m.cache("kept");
    let tagged = cache_core::EntryOptions::new().tag("t");
    c.set_with("by-key", 1_u32, tagged.clone()).await;
    c.set_with("by-pattern", 2_u32, tagged.clone()).await;
    c.set_with("by-tag", 3_u32, tagged).await;
    // Past the TTL, kept for the fail-safe window (the sweeper leaves them until its end).
    clock.advance(Duration::from_secs(11));
    m.invalidate_key("kept", "by-key").await;
    m.invalidate_pattern("kept", "by-pat*").await;
    m.invalidate_tag("t").await;
    let s = c.stats();
    assert_eq!(
        (s.expirations, s.invalidations, s.entries),
        (3, 0, 0),
        "{s:?}"
    );
}

#[tokio::test]
async fn reset_stats_zeroes_the_remote_tiers_counters_too() {
    let m = CacheManager::builder()
        .remote(cache_core::testing::MemoryBackend::new())
        .cache("both", Policy::new().tier(cache_core::Tier::Hybrid))
        .build();
    let c = m.cache("both");
    c.set("k", 1_u32).await;
    assert_eq!(c.get::<u32>("absent").await, None);
    let before = c.stats().remote.expect("a remote tier");
    assert_eq!(before.misses, 1, "{before:?}");
    m.reset_stats();
    let s = c.stats();
    assert_eq!((s.misses, s.inserts), (0, 0));
    let remote = s.remote.expect("a remote tier");
    assert_eq!(
        (
            remote.hits,
            remote.misses,
            remote.errors,
            remote.mean_latency_us
        ),
        (0, 0, 0, 0),
        "{remote:?}"
    );
}

#[test]
fn a_reset_in_the_middle_of_a_window_does_not_hide_that_windows_lookups() {
    let (clock, m) = alerting(
        AlertRules::new()
            .window(Duration::from_secs(60))
            .min_hit_rate(0.5)
            .min_lookups(100),
    );
    let c = m.cache("reset");
    for _ in 0..200 {
        c.blocking().get::<u32>("absent");
    }
    assert!(
        m.check_alerts().is_empty(),
        "the first call opens the window"
    );
    m.reset_stats();
    // 150 misses after the reset: fewer than the window's baseline of 200.
    for _ in 0..150 {
        c.blocking().get::<u32>("absent");
    }
    clock.advance(Duration::from_secs(60));
    let alerts = m.check_alerts();
    assert_eq!(
        alerts.iter().map(|a| (a.kind, a.value)).collect::<Vec<_>>(),
        [(AlertKind::LowHitRate, 0.0)],
        "{alerts:?}"
    );
}

#[test]
fn a_window_too_long_for_u64_milliseconds_never_ends() {
    // 2^62 s: its milliseconds are a multiple of 2^64, so a plain cast made it 0.
    let (clock, m) = alerting(
        AlertRules::new()
            .window(Duration::from_secs(1 << 62))
            .min_hit_rate(0.5)
            .min_lookups(1),
    );
    assert!(m.check_alerts().is_empty(), "the window opens");
    m.cache("cold").blocking().get::<u32>("absent");
    clock.advance(Duration::from_secs(3600));
    assert!(m.check_alerts().is_empty(), "the window is still open");
}

#[tokio::test(start_paused = true)]
async fn an_interval_warmer_ends_when_its_manager_is_dropped_not_at_its_next_interval() {
    let (ran, mut first_run) = tokio::sync::mpsc::unbounded_channel();
    let m = CacheManager::builder()
        .warmer(
            Warmer::new("hourly", move || {
                let _ = ran.send(());
                async { Ok::<_, String>(0) }
            })
            .every(Duration::from_secs(3600)),
        )
        .build();
    let handles = m.spawn_warmers();
    first_run.recv().await.expect("the warmer's first run");
    drop(m);
    // Paused: the clock jumps to the earliest timer, this timeout's second, long before the hour.
    for h in handles {
        tokio::time::timeout(Duration::from_secs(1), h)
            .await
            .expect("the task ended with its manager, not an interval later")
            .expect("without a panic");
    }
    assert!(
        first_run.recv().await.is_none(),
        "it never ran again (its closure, and what it captured, is gone)"
    );
}
