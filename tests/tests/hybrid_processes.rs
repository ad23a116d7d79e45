//! Hybrid L1 + L2 across real processes on one real `redis-server`: each instance is a separate
//! `cache_instance` process with its own memory tier; they share Redis and its backplane.
//!
//! What is shown: a value cached by A is an L2 hit on B (B's body does not run); an invalidation
//! on A — by key, tag, pattern, cache or all — and an overwrite on A reach B's memory tier within
//! the bound of 100 ms, measured from the moment A is told to invalidate until B returns
//! the new value. B waits on its own backplane counter for A's message and then reads once (see
//! `Instance::applied_then_get`), so the measurement also includes A's whole invalidation and two
//! command round trips to B. The measured latencies are printed (`--nocapture`).

mod hybrid_common;

use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use hybrid_common::{BOUND, Db, Instance, Options, Target, cache_on_both};
use tests::RedisServer;

/// The tests of this file run one at a time: each runs two or three processes, and on a
/// two-core machine several such tests at once would measure the scheduler, not the backplane.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

fn pair(namespace: &str, db: &Db) -> (Instance, Instance) {
    let options = Options::new(Target::Standalone(server().url()), namespace);
    (
        Instance::start("A", db, &options),
        Instance::start("B", db, &options),
    )
}

#[test]
fn a_value_cached_by_one_instance_is_an_l2_hit_on_another() {
    let _serial = one_at_a_time();
    let db = Db::new("l2hit");
    db.write(1, "alpha");
    let (mut a, mut b) = pair("l2hit", &db);
    let r = a.get(1);
    assert_eq!((r.value(), r.ran()), ("alpha", true));
    // A announced its write to Redis; B applies that before reading, or the late message would
    // evict what B is about to promote (harmless, but the counts below would be off by one).
    b.wait("applied", 1, Duration::from_secs(5));
    let r = b.get(1);
    assert_eq!(
        (r.value(), r.ran()),
        ("alpha", false),
        "B's body did not run"
    );
    let r = b.get(1);
    assert_eq!((r.value(), r.ran()), ("alpha", false));
    let s = b.stats();
    assert_eq!(
        (
            s.num("l1_hits"),
            s.num("l1_misses"),
            s.num("l2_hits"),
            s.num("l2_misses"),
            s.num("runs")
        ),
        (1, 1, 1, 0, 0),
        "B: one L1 miss served by an L2 hit, then one L1 hit, no body: {}",
        s.line
    );
    let s = a.stats();
    assert_eq!(
        (
            s.num("l1_hits"),
            s.num("l1_misses"),
            s.num("l2_hits"),
            s.num("l2_misses"),
            s.num("runs")
        ),
        (0, 1, 0, 1, 1),
        "A: one miss in both tiers, one body run: {}",
        s.line
    );
}

#[test]
fn every_kind_of_invalidation_on_one_instance_reaches_the_others_within_100ms() {
    let _serial = one_at_a_time();
    let db = Db::new("invalidate");
    let (mut a, mut b) = pair("invalidate", &db);
    let kinds: [(&str, u64, String); 5] = [
        ("key", 1, "del 1".to_owned()),
        ("tag", 2, "tag 2".to_owned()),
        ("pattern", 3, "pattern item:3*".to_owned()),
        ("cache", 4, "clear".to_owned()),
        ("all", 5, "all".to_owned()),
    ];
    let mut report = Vec::new();
    for (kind, id, command) in kinds {
        db.write(id, &format!("old-{id}"));
        let applied = cache_on_both(&mut a, &mut b, id, &format!("old-{id}"));
        // The data changes, and A (which made the change) invalidates.
        db.write(id, &format!("new-{id}"));
        let started = Instant::now();
        let a_took = a.cmd(&command).num("us");
        // B's memory copy had a minute to live: only A's message can make B read anew.
        let latency = b.applied_then_get(
            applied + 1,
            id,
            &format!("new-{id}"),
            started,
            Duration::from_secs(2),
        );
        report.push(format!(
            "{kind}: B returned the new value {latency:?} after A was told to invalidate (A's call took {a_took} µs)"
        ));
        assert!(
            latency <= BOUND,
            "{kind} invalidation took {latency:?} to reach B (bound {BOUND:?})"
        );
    }
    println!(
        "cross-process invalidation latency:\n  {}",
        report.join("\n  ")
    );
}

#[test]
fn an_overwrite_on_one_instance_is_seen_by_the_others_from_redis() {
    let _serial = one_at_a_time();
    let db = Db::new("overwrite");
    db.write(7, "from-db");
    let (mut a, mut b) = pair("overwrite", &db);
    let applied = cache_on_both(&mut a, &mut b, 7, "from-db");
    let started = Instant::now();
    a.cmd("set 7 written-by-a 7");
    let latency = b.applied_then_get(
        applied + 1,
        7,
        "written-by-a",
        started,
        Duration::from_secs(2),
    );
    println!("overwrite seen by B after {latency:?}");
    assert!(latency <= BOUND, "overwrite took {latency:?} to reach B");
    // B read A's value from Redis (not from its body, which would say "from-db").
    let s = b.stats();
    assert_eq!(s.num("runs"), 0, "{}", s.line);
    let r = b.get(7);
    assert_eq!((r.value(), r.ran()), ("written-by-a", false));
}

#[test]
fn three_instances_and_an_instance_ignores_its_own_messages() {
    let _serial = one_at_a_time();
    let db = Db::new("three");
    db.write(1, "one");
    let options = Options::new(Target::Standalone(server().url()), "three");
    let mut a = Instance::start("A", &db, &options);
    let mut b = Instance::start("B", &db, &options);
    let mut c = Instance::start("C", &db, &options);
    assert_eq!(a.get(1).value(), "one");
    // A's fill announced the key to B and C; A ignored its own copy of the message.
    b.wait("applied", 1, Duration::from_secs(5));
    c.wait("applied", 1, Duration::from_secs(5));
    a.wait("own", 1, Duration::from_secs(5));
    assert_eq!(a.backplane().num("applied"), 0);
    for i in [&mut b, &mut c] {
        let r = i.get(1);
        assert_eq!((r.value(), r.ran()), ("one", false));
    }
    db.write(1, "uno");
    let started = Instant::now();
    a.cmd("del 1");
    let lb = b.applied_then_get(2, 1, "uno", started, Duration::from_secs(2));
    let lc = c.applied_then_get(2, 1, "uno", started, Duration::from_secs(2));
    println!("three instances: B after {lb:?}, C after {lc:?}");
    assert!(lb <= BOUND && lc <= BOUND, "B {lb:?}, C {lc:?}");
}

#[test]
fn namespaces_do_not_hear_each_other() {
    let _serial = one_at_a_time();
    let db = Db::new("namespaces");
    db.write(1, "x");
    let mut a = Instance::start(
        "A",
        &db,
        &Options::new(Target::Standalone(server().url()), "ns-one"),
    );
    let mut b = Instance::start(
        "B",
        &db,
        &Options::new(Target::Standalone(server().url()), "ns-two"),
    );
    assert_eq!(b.get(1).value(), "x");
    assert!(
        a.get(1).ran(),
        "another namespace's Redis entry is not shared"
    );
    a.cmd("all");
    // Give a stray message time to arrive, then check that none did.
    a.wait("own", 2, Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(b.backplane().num("applied"), 0);
    let r = b.get(1);
    assert_eq!((r.value(), r.ran()), ("x", false), "B kept its entry");
}
