//! Secrets: a Redis password in a connection URL never shows in a log line, a `Debug` output, an
//! error, health output or the demo server's output, whatever fails (wrong password, nothing
//! listening), including its percent-decoded form.
//!
//! Every log event and span of the process is recorded by a global subscriber (the Redis tier
//! logs from its own I/O threads), at every level. In a binary of its own, so no other test's
//! callsites are registered before the subscriber is in place.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cache_core::{CacheManager, Policy, RemoteBackend, Resilience, Tier};
use cache_redis::{RedisBackend, RedisConfig};
use tests::RedisServer;
use tests::demo_server::DemoServer;

/// As written in URLs (`%2F` is `/`), and as it would read decoded.
const SECRETS: &[&str] = &["s3cr3t%2Fpw-8812", "s3cr3t/pw-8812", "s3cr3t"];

#[derive(Default, Clone)]
struct Recorder(Arc<Mutex<Vec<String>>>);

impl tracing::Subscriber for Recorder {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut text = FieldText(format!("span {} ", span.metadata().name()));
        span.record(&mut text);
        self.0.lock().unwrap().push(text.0);
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut text = FieldText("record ".to_owned());
        values.record(&mut text);
        self.0.lock().unwrap().push(text.0);
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut text = FieldText(format!("{} ", event.metadata().level()));
        event.record(&mut text);
        self.0.lock().unwrap().push(text.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

struct FieldText(String);

impl tracing::field::Visit for FieldText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

fn recorder() -> &'static Recorder {
    static RECORDER: OnceLock<Recorder> = OnceLock::new();
    RECORDER.get_or_init(|| {
        let r = Recorder::default();
        tracing::subscriber::set_global_default(r.clone()).expect("the only global subscriber");
        r
    })
}

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "{what} shows the password: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_show_in_logs_debug_errors_or_health() {
    let recorder = recorder();
    let server = RedisServer::start_with_args(&["--requirepass", "right-pw-1"]);
    let wrong_password = format!("redis://app:{}@127.0.0.1:{}", SECRETS[0], server.port());
    let nothing_there = format!(
        "redis://:{}@127.0.0.1:{}",
        SECRETS[0],
        tests::redis_server::free_port(false)
    );

    // Kept alive until the end: a manager's backplane subscription stops when it is dropped, and
    // must have tried (and logged) by then.
    let mut managers = Vec::new();
    for url in [&wrong_password, &nothing_there] {
        let builder = CacheManager::builder()
            .remote(RedisBackend::new(
                RedisConfig::standalone(url.clone()).namespace("secrets"),
            ))
            .resilience(Resilience::new().timeout(Duration::from_millis(500)))
            .cache("users", Policy::new().tier(Tier::Hybrid));
        assert_no_secret("the builder's Debug", &format!("{builder:?}"));
        let m = builder.build();
        assert_no_secret("the manager's Debug", &format!("{m:?}"));
        let users = m.cache("users");
        // Reads, writes, invalidations: each fails against this Redis, and is logged.
        users.set("k", 1u32).await;
        assert_eq!(users.get::<u32>("k").await, Some(1), "served from memory");
        m.invalidate_tag("t").await;
        m.invalidate_pattern("users", "k*").await;
        let health = m.health().await;
        assert_no_secret("health", &format!("{health:?}"));
        assert_no_secret(
            "health JSON",
            &serde_json::to_string(&health).expect("health as JSON"),
        );
        assert_no_secret("stats", &format!("{:?}", m.stats()));
        assert_no_secret("Prometheus text", &m.prometheus_text());
        let backend = RedisBackend::new(RedisConfig::standalone(url.clone()));
        let err = backend.ping().await.expect_err("this Redis refuses us");
        assert_no_secret("an error", &err.to_string());
        assert_no_secret("an error's Debug", &format!("{err:?}"));
        assert_no_secret("the backend's Debug", &format!("{backend:?}"));
        assert_no_secret("describe()", &backend.describe());
        managers.push(m);
    }

    // Let the backplane's subscription fail and log a few times (its first retry is quick).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines = recorder.0.lock().unwrap().clone();
        let warned = lines
            .iter()
            .filter(|l| l.contains("cache backplane cannot subscribe"))
            .count();
        if warned >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backplane never logged its failure: {lines:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines = recorder.0.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.contains("***")),
        "the URL is shown redacted: {lines:#?}"
    );
    for line in &lines {
        assert_no_secret("a log line", line);
    }
    println!("{} log lines recorded, none with the password", lines.len());
    drop(managers);
}

#[test]
fn the_demo_server_prints_its_redis_url_redacted() {
    let server = RedisServer::start_with_args(&["--requirepass", "right-pw-2"]);
    let url = format!("redis://:{}@127.0.0.1:{}", SECRETS[0], server.port());
    let demo = DemoServer::start(&[("REDIS_URL", url.as_str())]);
    // Requests through the failing Redis tier: answered, and nothing printed shows the password.
    assert_eq!(demo.get("/users/1").status, 200);
    assert_eq!(demo.get("/health").status, 200);
    let health = demo.get("/health").body;
    assert_no_secret("/health", &health);
    assert_no_secret("/stats", &demo.get("/stats").body);
    assert_no_secret("/metrics", &demo.get("/metrics").body);
    let output = demo.output().join("\n");
    assert!(output.contains("redis://:***@127.0.0.1"), "{output}");
    assert_no_secret("the server's output", &output);
}
