//! What observability costs a hit: the same `#[cached]` hit with no tracing subscriber, and with a
//! subscriber installed at INFO and at DEBUG (hits emit a TRACE event, so both levels only pay the
//! interest check). Stats (striped counters, 1-in-64 timing and hot-key sampling) are always
//! on and are part of every figure; `hit.rs` compares that against the peers.
//!
//! Run: `cargo bench -p benches --bench observability`.

use std::hint::black_box;

use benches::{KEYS, Profile, consume};
use criterion::{Criterion, criterion_group, criterion_main};

#[cache_core::cached(cache = "obs", key = "user:{id}")]
fn profile(id: u64) -> Profile {
    Profile::load(id)
}

fn bench(c: &mut Criterion) {
    for id in 0..KEYS {
        profile(id);
    }
    let mut id = 0u64;
    let mut next = move || {
        id = (id + 1) % KEYS;
        id
    };
    let mut g = c.benchmark_group("observability");
    g.bench_function("hit, no subscriber", |b| {
        b.iter(|| consume(profile(black_box(next()))))
    });
    for level in [tracing::Level::INFO, tracing::Level::DEBUG] {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            g.bench_function(format!("hit, subscriber at {level}"), |b| {
                b.iter(|| consume(profile(black_box(next()))))
            });
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
