//! A bounded soak of the demo server with Redis (the hybrid tier): keep-alive HTTP/1.1 load on
//! loopback from many connections for `SOAK_SECONDS` (20 by default, so CI stays short; 60 or
//! more locally), over a key space that fits the caches, with a few updates (invalidations) mixed
//! in. Checks:
//! - zero non-2xx responses and zero connection errors;
//! - resident memory (`VmRSS` from /proc) flat once warm: the highest sample of the last third is
//!   within 10 % + 4 MiB of the highest sample between warm-up and the last third. The key space
//!   is small enough for the caches to fill during the warm-up (the first quarter), so growth
//!   after that would be a leak, not the caches filling.
//!
//! It measures no throughput target; it prints requests, rate and the RSS series.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tests::RedisServer;
use tests::demo_server::{DemoServer, KeepAlive};

const CONNECTIONS: usize = 16;
/// Distinct video and user ids: small enough to be cached in full during the warm-up.
const VIDEOS: u64 = 2_000;
const USERS: u64 = 500;

fn soak_duration() -> Duration {
    let secs = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20u64);
    Duration::from_secs(secs.clamp(5, 3_600))
}

/// A per-connection xorshift: the request mix without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn a_bounded_soak_has_no_errors_and_flat_memory() {
    let duration = soak_duration();
    let redis = RedisServer::start_with_args(tests::NO_BULK_COMMANDS);
    let url = redis.url();
    let server = DemoServer::start(&[("REDIS_URL", url.as_str()), ("DB_LATENCY_MS", "1")]);
    let addr = server.addr();

    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let non_2xx = Arc::new(AtomicU64::new(0));
    let io_errors = Arc::new(AtomicU64::new(0));
    let max_latency_us = Arc::new(AtomicU64::new(0));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("the load generator's runtime");
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let (stop, requests, non_2xx, io_errors, max_latency_us) = (
                stop.clone(),
                requests.clone(),
                non_2xx.clone(),
                io_errors.clone(),
                max_latency_us.clone(),
            );
            runtime.spawn(async move {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1));
                let mut conn = KeepAlive::connect(addr).await.expect("connect");
                while !stop.load(Ordering::Relaxed) {
                    let path = match rng.below(100) {
                        0..50 => format!("/videos/{}", 1 + rng.below(VIDEOS)),
                        50..80 => format!("/users/{}", 1 + rng.below(USERS)),
                        80..90 => format!(
                            "/users/{}/videos?page={}",
                            1 + rng.below(USERS),
                            1 + rng.below(3)
                        ),
                        90..95 => format!("/search?q=video%20{}", rng.below(50)),
                        _ => "/ping".to_owned(),
                    };
                    let started = Instant::now();
                    match conn.get(&path).await {
                        Ok((status, _)) => {
                            if !(200..300).contains(&status) {
                                non_2xx.fetch_add(1, Ordering::Relaxed);
                                eprintln!("{path}: {status}");
                            }
                        }
                        Err(e) => {
                            io_errors.fetch_add(1, Ordering::Relaxed);
                            eprintln!("{path}: {e}");
                            conn = KeepAlive::connect(addr).await.expect("reconnect");
                        }
                    }
                    max_latency_us
                        .fetch_max(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    requests.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // Updates on fresh connections, about five a second: each invalidates a user's tag on this
    // instance, in Redis and on the backplane.
    let updater = {
        let stop = stop.clone();
        let non_2xx = non_2xx.clone();
        std::thread::spawn(move || {
            let mut rng = Rng(42);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = 1 + rng.below(USERS);
                n += 1;
                let r = tests::demo_server::request(
                    addr,
                    "PUT",
                    &format!("/users/{id}"),
                    Some(&format!(r#"{{"name":"Soak {n}"}}"#)),
                );
                if r.status != 200 {
                    non_2xx.fetch_add(1, Ordering::Relaxed);
                    eprintln!("PUT /users/{id}: {r:?}");
                }
                std::thread::sleep(Duration::from_millis(200)); // pacing, not synchronisation
            }
            n
        })
    };

    // Sample resident memory twice a second until the end.
    let started = Instant::now();
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    while started.elapsed() < duration {
        samples.push((started.elapsed(), server.rss_kib()));
        std::thread::sleep(Duration::from_millis(500)); // the sampling period
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        runtime.block_on(w).expect("a load connection panicked");
    }
    let updates = updater.join().expect("the updater panicked");
    let elapsed = started.elapsed();

    let total = requests.load(Ordering::Relaxed);
    let warm = duration / 4;
    let last_third = duration * 2 / 3;
    let middle_max = samples
        .iter()
        .filter(|(t, _)| *t >= warm && *t < last_third)
        .map(|s| s.1)
        .max()
        .expect("samples between warm-up and the last third");
    let end_max = samples
        .iter()
        .filter(|(t, _)| *t >= last_third)
        .map(|s| s.1)
        .max()
        .expect("samples in the last third");
    let series: Vec<u64> = samples.iter().map(|s| s.1 / 1024).collect();
    println!(
        "soak {:?}: {total} requests ({:.0}/s) on {CONNECTIONS} connections, {updates} updates, \
         {} non-2xx, {} connection errors, max latency {} ms; RSS MiB every 0.5 s: {series:?}; \
         max after warm-up {} KiB, max in the last third {} KiB",
        elapsed,
        total as f64 / elapsed.as_secs_f64(),
        non_2xx.load(Ordering::Relaxed),
        io_errors.load(Ordering::Relaxed),
        max_latency_us.load(Ordering::Relaxed) / 1000,
        middle_max,
        end_max,
    );
    let stats = server.stats();
    println!("server stats after the soak: {stats}");
    assert!(total > 1_000, "the load ran: {total} requests");
    assert_eq!(non_2xx.load(Ordering::Relaxed), 0, "non-2xx responses");
    assert_eq!(io_errors.load(Ordering::Relaxed), 0, "connection errors");
    assert!(
        end_max <= middle_max + middle_max / 10 + 4 * 1024,
        "resident memory kept growing: {middle_max} KiB after warm-up, {end_max} KiB at the end"
    );
    drop(redis);
}
