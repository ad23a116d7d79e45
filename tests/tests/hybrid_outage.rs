//! Backplane loss: what an instance's memory tier guarantees when Redis (and with it the
//! backplane) goes away while an invalidation happens elsewhere.
//!
//! During the outage an invalidation on A reaches neither Redis nor B, and B keeps serving its
//! memory copy: nothing can tell B. Two things end that:
//! - **Resubscription** (the common case): when B's backplane subscription comes back, B clears
//!   the memory tier of its remote-backed caches, because it may have missed messages. From then
//!   on B reads Redis (or recomputes). Shown with the memory copy's TTL at a minute, so the TTL
//!   cannot be what ended it.
//! - **The L1 TTL** (the worst case, Redis down for longer): the memory copy expires after the L1
//!   TTL like any entry, and B recomputes (Redis being down, its reads are misses). Shown with an
//!   L1 TTL of 800 ms and Redis never coming back.
//!
//! Whichever comes first bounds how long B serves a value invalidated during an outage — provided
//! Redis itself no longer holds it: here the restart empties Redis (no persistence). A Redis that
//! kept its data through a network partition still holds the value A failed to delete, and B
//! would read it back from there until its Redis TTL (see docs/hybrid.md).

mod hybrid_common;

use std::time::{Duration, Instant};

use hybrid_common::{Db, Instance, Options, Target, cache_on_both};
use tests::RedisServer;

#[test]
fn after_a_restart_an_instance_stops_serving_what_was_invalidated_during_the_outage() {
    let mut server = RedisServer::start();
    let db = Db::new("restart");
    db.write(1, "old");
    // One minute in memory: only the resubscription can end B's stale copy within this test.
    let options = Options::new(Target::Standalone(server.url()), "restart");
    let mut a = Instance::start("A", &db, &options);
    let mut b = Instance::start("B", &db, &options);
    let applied = cache_on_both(&mut a, &mut b, 1, "old");
    assert_eq!(b.backplane().num("subscriptions"), 1);

    server.stop();
    db.write(1, "new");
    let errors = a.stats().num("l2_errors");
    a.cmd("del 1");
    assert!(
        a.stats().num("l2_errors") > errors,
        "A's delete could not reach Redis"
    );
    // The gap: B has no way to know, and serves its memory copy.
    let r = b.get(1);
    assert_eq!(
        (r.value(), r.ran()),
        ("old", false),
        "during the outage B serves its memory copy"
    );

    let restarted = Instant::now();
    server.restart();
    let restart_took = restarted.elapsed();
    b.wait("subscriptions", 2, Duration::from_secs(10));
    let resubscribed = restarted.elapsed();
    let r = b.get(1);
    assert_eq!(
        (r.value(), r.ran()),
        ("new", true),
        "after resubscribing B cleared its memory tier; Redis restarted empty, so B recomputed"
    );
    assert_eq!(
        b.backplane().num("applied"),
        applied,
        "A's invalidation never reached B: the resubscription is what ended the stale copy"
    );
    println!(
        "Redis restarted in {restart_took:?}; B resubscribed (and cleared its memory tier) {resubscribed:?} after the restart began"
    );
    // The reconnection back-off is capped at 2 s; starting the server is part of the time too.
    assert!(
        resubscribed < Duration::from_secs(5),
        "B took {resubscribed:?} to resubscribe"
    );
    // Both instances are coherent again (once A, too, has resubscribed): B's next change
    // reaches A.
    a.wait("subscriptions", 2, Duration::from_secs(10));
    let r = a.get(1);
    assert_eq!(r.value(), "new");
    db.write(1, "newer");
    let applied_a = a.backplane().num("applied");
    b.cmd("del 1");
    a.wait("applied", applied_a + 1, Duration::from_secs(2));
    assert_eq!(a.get(1).value(), "newer");
}

#[test]
fn with_redis_gone_for_good_the_l1_ttl_bounds_staleness() {
    const L1_TTL: Duration = Duration::from_millis(800);
    let mut server = RedisServer::start();
    let db = Db::new("l1bound");
    db.write(1, "old");
    let options = Options::new(Target::Standalone(server.url()), "l1bound").l1_ttl(L1_TTL);
    let mut a = Instance::start("A", &db, &options);
    let mut b = Instance::start("B", &db, &options);
    assert!(a.get(1).ran());
    b.wait("applied", 1, Duration::from_secs(5));
    // B's memory copy is made during this call (promoted from Redis).
    let cached_from = Instant::now();
    let r = b.get(1);
    let cached_by = Instant::now();
    assert_eq!((r.value(), r.ran()), ("old", false));

    server.stop();
    db.write(1, "new");
    a.cmd("del 1");
    let mut stale_seen = false;
    let mut last_stale = cached_from;
    let fresh_at = loop {
        let r = b.get(1);
        let now = Instant::now();
        if r.value() == "old" {
            stale_seen = true;
            last_stale = now;
        } else {
            assert_eq!(r.value(), "new");
            break now;
        }
        assert!(
            now - cached_from < L1_TTL + Duration::from_secs(3),
            "B still serves the stale value {:?} after the copy was made",
            now - cached_from
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(stale_seen, "B served its stale copy during the outage");
    let stale_for = last_stale - cached_from;
    let fresh_after = fresh_at - cached_by;
    println!(
        "Redis down: B served the invalidated value until {stale_for:?} after caching it, and the new one {fresh_after:?} after (L1 TTL {L1_TTL:?})"
    );
    // Never past the L1 TTL, give or take the memory tier's coarse clock, which a busy machine
    // may advance late.
    assert!(
        stale_for <= L1_TTL + Duration::from_millis(100),
        "stale for {stale_for:?}, beyond the L1 TTL of {L1_TTL:?}"
    );
}
