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
