//! Tracing: each cached call is visible with its cache and outcome. In a binary of its own, so no
//! other test registers the callsites before the subscriber is in place (tracing caches a
//! callsite's interest at first use).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cache_core::{CacheManager, cached};

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "obs", key = "n:{n}")]
fn square(n: u64) -> u64 {
    RUNS.fetch_add(1, Ordering::SeqCst);
    n * n
}

static POLICY_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Names no background option, so its body cannot outlive the call.
#[cached(cache = "policy-stale", key = "n:{n}")]
fn policy_square(n: u64) -> u64 {
    POLICY_RUNS.fetch_add(1, Ordering::SeqCst) as u64 + n * n
}

/// A minimal subscriber that records the spans and events it is shown.
#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut fields = FieldText::default();
        span.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push(format!("span {} {}", span.metadata().name(), fields.0));
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = FieldText::default();
        event.record(&mut fields);
        self.0.lock().unwrap().push(format!("event {}", fields.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[derive(Default)]
struct FieldText(String);

impl tracing::field::Visit for FieldText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

#[test]
fn each_call_is_traced_with_its_cache_and_outcome() {
    let m = CacheManager::builder().build();
    let recorder = Recorder::default();
    tracing::subscriber::with_default(recorder.clone(), || {
        tracing::callsite::rebuild_interest_cache();
        m.scope_sync(|| {
            square(7);
            square(7);
        })
    });
    let lines = recorder.0.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.starts_with("span cached")
            && l.contains("cache=obs")
            && l.contains("outcome=\"miss\"")
            && l.contains("key=\"n:7\"")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("event")
            && l.contains("cache=obs")
            && l.contains("outcome=\"hit\"")),
        "{lines:#?}"
    );
}

/// A cache policy's stale window cannot run the body of a function that names no background
/// option in the background: the call past the TTL computes in the foreground, and a warning says
/// so instead of the setting silently doing less than it says.
#[test]
fn a_policy_stale_window_a_function_cannot_use_is_warned_about() {
    let clock = cache_core::Clock::manual();
    let m = CacheManager::builder()
        .clock(clock.clone())
        .cache(
            "policy-stale",
            cache_core::Policy::new()
                .ttl_secs(10)
                .stale(std::time::Duration::from_secs(600)),
        )
        .build();
    let recorder = Recorder::default();
    let (first, second) = tracing::subscriber::with_default(recorder.clone(), || {
        tracing::callsite::rebuild_interest_cache();
        m.scope_sync(|| {
            let first = policy_square(3);
            clock.advance(std::time::Duration::from_secs(11));
            (first, policy_square(3))
        })
    });
    assert_eq!(
        (first, second),
        (9, 10),
        "the second call waited for a new value"
    );
    assert_eq!(POLICY_RUNS.load(Ordering::SeqCst), 2);
    assert_eq!(m.cache("policy-stale").stats().stale_served, 0);
    let lines = recorder.0.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.starts_with("event")
            && l.contains("cache=policy-stale")
            && l.contains("apply only to #[cached] functions that name one of them")),
        "{lines:#?}"
    );
}

static BELOW_RUNS: AtomicUsize = AtomicUsize::new(0);
static ABOVE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(cache = "instrumented")]
#[tracing::instrument]
fn instrumented_below(n: u64) -> u64 {
    BELOW_RUNS.fetch_add(1, Ordering::SeqCst);
    n + 1
}

#[tracing::instrument]
#[cached(cache = "instrumented")]
fn instrumented_above(n: u64) -> u64 {
    ABOVE_RUNS.fetch_add(1, Ordering::SeqCst);
    n + 2
}

/// As docs/observability.md says: below `#[cached]`, `#[tracing::instrument]` covers every call;
/// above it, the body only.
#[test]
fn instrument_covers_every_call_below_cached_and_the_body_above_it() {
    let m = CacheManager::builder().build();
    let recorder = Recorder::default();
    tracing::subscriber::with_default(recorder.clone(), || {
        tracing::callsite::rebuild_interest_cache();
        m.scope_sync(|| {
            for _ in 0..3 {
                assert_eq!(instrumented_below(1), 2);
                assert_eq!(instrumented_above(1), 3);
            }
        })
    });
    assert_eq!(BELOW_RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(ABOVE_RUNS.load(Ordering::SeqCst), 1);
    let lines = recorder.0.lock().unwrap().clone();
    let spans = |name: &str| {
        lines
            .iter()
            .filter(|l| l.starts_with(&format!("span {name} ")))
            .count()
    };
    assert_eq!(
        (spans("instrumented_below"), spans("instrumented_above")),
        (3, 1),
        "{lines:#?}"
    );
}
