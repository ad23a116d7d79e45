//! Alerts forwarded by polling `check_alerts` while the maintenance thread evaluates the same
//! windows. In a binary of its own: it installs a global tracing subscriber, the one signal of
//! the maintenance thread's evaluation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_core::{AlertKind, AlertRules, CacheManager, Clock};

/// Records the messages of the events it is shown, from every thread.
#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut message = Message::default();
        event.record(&mut message);
        self.0.lock().unwrap().push(message.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[derive(Default)]
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[test]
fn check_alerts_returns_a_window_the_maintenance_thread_evaluated_first() {
    let recorder = Recorder::default();
    tracing::subscriber::set_global_default(recorder.clone()).unwrap();
    let clock = Clock::manual();
    let m = CacheManager::builder()
        .clock(clock.clone())
        .alerts(
            AlertRules::new()
                .window(Duration::from_secs(60))
                .min_hit_rate(0.5)
                .min_lookups(1),
        )
        .build();
    assert!(m.check_alerts().is_empty(), "the window opens");
    for _ in 0..3 {
        m.cache("cold").blocking().get::<u32>("absent");
    }
    clock.advance(Duration::from_secs(60));
    // The maintenance thread evaluates the rules every second: it logs the window's alert.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !recorder
        .0
        .lock()
        .unwrap()
        .iter()
        .any(|m| m == "cache alert")
    {
        assert!(
            Instant::now() < deadline,
            "the maintenance thread evaluated the window"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // A service forwarding alerts to a pager still gets them, once.
    let alerts = m.check_alerts();
    assert_eq!(
        alerts.iter().map(|a| a.kind).collect::<Vec<_>>(),
        [AlertKind::LowHitRate],
        "{alerts:?}"
    );
    assert!(m.check_alerts().is_empty(), "once per window");
}
