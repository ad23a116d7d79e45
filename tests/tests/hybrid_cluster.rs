//! Hybrid L1 + L2 across real processes on a real three-master Redis Cluster.
//!
//! Classic `PUBLISH` is broadcast to every node of a cluster, so each instance subscribes on one
//! node of its choice and still hears messages published through any other. Instance B is given
//! a dead first seed: its subscription moves on to the next seed.

mod hybrid_common;

use std::time::{Duration, Instant};

use hybrid_common::{BOUND, Db, Instance, Options, Target, cache_on_both};
use tests::RedisCluster;
use tests::redis_server::free_port;

#[test]
fn coherence_on_a_cluster_with_a_dead_seed() {
    let cluster = RedisCluster::start();
    let db = Db::new("cluster");
    let seeds = cluster.seed_urls();
    let mut a = Instance::start(
        "A",
        &db,
        &Options::new(Target::Cluster(seeds.clone()), "cluster"),
    );
    // Nothing listens on the first seed B is given.
    let mut b_seeds = vec![format!("redis://127.0.0.1:{}", free_port(false))];
    b_seeds.extend(seeds.iter().rev().cloned());
    let mut b = Instance::start("B", &db, &Options::new(Target::Cluster(b_seeds), "cluster"));

    // Several items, so that their keys (and tag sets) land in different slots and nodes.
    let mut report = Vec::new();
    for (id, command) in [
        (1, "del 1"),
        (2, "tag 2"),
        (3, "pattern item:3*"),
        (4, "clear"),
    ] {
        db.write(id, &format!("old-{id}"));
        let applied = cache_on_both(&mut a, &mut b, id, &format!("old-{id}"));
        db.write(id, &format!("new-{id}"));
        let started = Instant::now();
        a.cmd(command);
        let latency = b.applied_then_get(
            applied + 1,
            id,
            &format!("new-{id}"),
            started,
            Duration::from_secs(2),
        );
        report.push(format!("{command}: {latency:?}"));
        assert!(
            latency <= BOUND,
            "{command:?} took {latency:?} to reach B on the cluster"
        );
    }

    // An overwrite on B reaches A.
    db.write(5, "from-db");
    let applied = cache_on_both(&mut b, &mut a, 5, "from-db");
    let started = Instant::now();
    b.cmd("set 5 written-by-b 5");
    let latency = a.applied_then_get(
        applied + 1,
        5,
        "written-by-b",
        started,
        Duration::from_secs(2),
    );
    report.push(format!("overwrite (B to A): {latency:?}"));
    assert!(latency <= BOUND, "overwrite took {latency:?} to reach A");
    let r = a.get(5);
    assert_eq!((r.value(), r.ran()), ("written-by-b", false));

    println!("cluster invalidation latency:\n  {}", report.join("\n  "));
}
