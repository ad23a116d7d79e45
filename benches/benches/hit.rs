//! The hit path: a cached function called with a key that is already cached, through our
//! `#[cached]` and through each peer, with the same keys and the same value type in the same run,
//! so the ratios hold on a noisy machine.
//!
//! Run: `cargo bench -p benches --bench hit`.

use std::hash::BuildHasherDefault;
use std::hint::black_box;

use benches::{KEYS, OneMultiply, Paired, Profile, consume};
use criterion::{Criterion, criterion_group, criterion_main};

mod ours {
    use super::Profile;

    #[cache_core::cached(cache = "bench", key = "user:{id}")]
    pub(crate) fn sync_template(id: u64) -> Profile {
        benches::body(id)
    }

    #[cache_core::cached(cache = "bench")]
    pub(crate) fn sync_default_key(id: u64) -> Profile {
        benches::body(id)
    }

    #[cache_core::cached(cache = "bench", key = "user:{email}")]
    pub(crate) fn sync_email(email: &str) -> Profile {
        benches::body(email.len() as u64)
    }

    #[cache_core::cached(cache = "bench", key = "user:{id}")]
    pub(crate) async fn async_template(id: u64) -> Profile {
        benches::body(id)
    }

    #[cache_core::cached(cache = "bench")]
    pub(crate) async fn async_default_key(id: u64) -> Profile {
        benches::body(id)
    }
}

mod peer_cached {
    use super::Profile;
    use cached::cached;

    #[cached]
    pub(crate) fn sync_unbounded(id: u64) -> Profile {
        benches::body(id)
    }

    #[cached(max_size = 10_000)]
    pub(crate) fn sync_lru(id: u64) -> Profile {
        benches::body(id)
    }

    #[cached]
    pub(crate) async fn async_unbounded(id: u64) -> Profile {
        benches::body(id)
    }

    // The same `"user:{id}"` key as ours, built the way `cached` lets a user build one.
    #[cached(key = "String", convert = r#"{ format!("user:{}", id) }"#)]
    pub(crate) fn sync_template(id: u64) -> Profile {
        benches::body(id)
    }

    #[cached(key = "String", convert = r#"{ format!("user:{}", id) }"#)]
    pub(crate) async fn async_template(id: u64) -> Profile {
        benches::body(id)
    }

    #[cached(key = "String", convert = r#"{ format!("user:{}", email) }"#)]
    pub(crate) fn sync_email(email: &str) -> Profile {
        benches::body(email.len() as u64)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn hits(c: &mut Criterion) {
    cache_core::CacheManager::builder()
        .cache("bench", cache_core::Policy::new().max_entries(10_000))
        .install()
        .expect("the benchmark installs the global manager first");
    let rt = runtime();

    // A string key: an email address per id, as a handler would take from a request.
    let emails: Vec<String> = (0..KEYS)
        .map(|id| format!("user{id}@example.com"))
        .collect();
    // Preload every key in every cache.
    let moka_sync = moka::sync::Cache::<u64, Profile>::new(10_000);
    let moka_future = moka::future::Cache::<u64, Profile>::new(10_000);
    let quick = quick_cache::sync::Cache::<u64, Profile>::new(10_000);
    let floor_scc = scc::HashIndex::<u64, Profile, BuildHasherDefault<OneMultiply>>::default();
    let floor_dashmap =
        dashmap::DashMap::<u64, Profile, BuildHasherDefault<OneMultiply>>::default();
    for id in 0..KEYS {
        ours::sync_template(id);
        ours::sync_default_key(id);
        ours::sync_email(&emails[id as usize]);
        peer_cached::sync_email(&emails[id as usize]);
        rt.block_on(ours::async_template(id));
        rt.block_on(ours::async_default_key(id));
        peer_cached::sync_template(id);
        rt.block_on(peer_cached::async_template(id));
        peer_cached::sync_unbounded(id);
        peer_cached::sync_lru(id);
        rt.block_on(peer_cached::async_unbounded(id));
        moka_sync.insert(id, Profile::load(id));
        rt.block_on(moka_future.insert(id, Profile::load(id)));
        quick.insert(id, Profile::load(id));
        let _ = floor_scc.insert_sync(id, Profile::load(id));
        floor_dashmap.insert(id, Profile::load(id));
        front_floor::fill(id, Profile::load(id));
    }

    // Every timed call below must be a hit: each row checks that no body ran while it did.
    let preloaded = benches::body_runs();
    let mut g = c.benchmark_group("hit");
    let mut id = 0u64;
    let mut next = move || {
        id = (id + 1) % KEYS;
        id
    };
    hit_row(&mut g, "ours/sync key=\"user:{id}\"", |b| {
        b.iter(|| consume(ours::sync_template(black_box(next()))))
    });
    hit_row(&mut g, "ours/sync default key", |b| {
        b.iter(|| consume(ours::sync_default_key(black_box(next()))))
    });
    hit_row(&mut g, "ours/sync key=\"user:{email}\"", |b| {
        b.iter(|| consume(ours::sync_email(&emails[black_box(next()) as usize])))
    });
    hit_row(&mut g, "cached/sync key=\"user:{email}\"", |b| {
        b.iter(|| consume(peer_cached::sync_email(&emails[black_box(next()) as usize])))
    });
    hit_row(&mut g, "cached/sync unbounded", |b| {
        b.iter(|| consume(peer_cached::sync_unbounded(black_box(next()))))
    });
    hit_row(&mut g, "cached/sync max_size", |b| {
        b.iter(|| consume(peer_cached::sync_lru(black_box(next()))))
    });
    hit_row(&mut g, "cached/sync key=\"user:{id}\"", |b| {
        b.iter(|| consume(peer_cached::sync_template(black_box(next()))))
    });
    hit_row(&mut g, "moka/sync get", |b| {
        b.iter(|| consume(moka_sync.get(&black_box(next()))))
    });
    hit_row(&mut g, "quick_cache/get", |b| {
        b.iter(|| consume(quick.get(&black_box(next()))))
    });
    // The floor: the bare map under our memory tier, with the same keys and the same clone: what
    // any hit on it costs (epoch guard, lookup, clone) before key rendering, expiry, stats or
    // single flight.
    hit_row(&mut g, "floor/scc HashIndex peek + clone", |b| {
        b.iter(|| {
            let key = black_box(next());
            let guard = scc::Guard::new();
            consume(floor_scc.peek(&key, &guard).cloned())
        })
    });
    // The floor of a per-thread front cache (an L0 in front of the shared map): a thread-local
    // slot per key, a generation and an expiry check, a thread-local hit counter and the same
    // clone; no lock, no guard, no atomic write. What the hit targets would start from if the
    // memory tier copied hot values into every thread (see `front_floor`).
    hit_row(&mut g, "floor/thread-local front + clone", |b| {
        b.iter(|| consume(front_floor::hit(black_box(next()))))
    });
    // The same with dashmap (a shard's read lock, hashbrown, the clone): what a memory tier on
    // the design's first-named map would start from.
    hit_row(&mut g, "floor/dashmap get + clone", |b| {
        b.iter(|| {
            let key = black_box(next());
            consume(floor_dashmap.get(&key).map(|v| v.clone()))
        })
    });
    hit_row(&mut g, "ours/async key=\"user:{id}\"", |b| {
        b.to_async(&rt).iter(|| {
            let id = black_box(next());
            async move { consume(ours::async_template(id).await) }
        })
    });
    hit_row(&mut g, "ours/async default key", |b| {
        b.to_async(&rt).iter(|| {
            let id = black_box(next());
            async move { consume(ours::async_default_key(id).await) }
        })
    });
    hit_row(&mut g, "cached/async key=\"user:{id}\"", |b| {
        b.to_async(&rt).iter(|| {
            let id = black_box(next());
            async move { consume(peer_cached::async_template(id).await) }
        })
    });
    hit_row(&mut g, "cached/async unbounded", |b| {
        b.to_async(&rt).iter(|| {
            let id = black_box(next());
            async move { consume(peer_cached::async_unbounded(id).await) }
        })
    });
    hit_row(&mut g, "moka/future get", |b| {
        b.to_async(&rt).iter(|| {
            let id = black_box(next());
            let cache = &moka_future;
            async move { consume(cache.get(&id).await) }
        })
    });
    // The same async hits awaited back to back inside one task, as a handler awaits them:
    // `to_async` above enters the runtime once per call, a cost about the size of a hit that
    // every row there pays alike.
    macro_rules! in_task {
        ($name:expr, |$id:ident| $call:expr) => {
            hit_row(&mut g, $name, |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let started = std::time::Instant::now();
                        for _ in 0..iters {
                            let $id = black_box(next());
                            consume($call);
                        }
                        started.elapsed()
                    })
                })
            });
        };
    }
    in_task!("ours/async key=\"user:{id}\", in one task", |id| {
        ours::async_template(id).await
    });
    in_task!("ours/async default key, in one task", |id| {
        ours::async_default_key(id).await
    });
    in_task!("cached/async unbounded, in one task", |id| {
        peer_cached::async_unbounded(id).await
    });
    in_task!("cached/async key=\"user:{id}\", in one task", |id| {
        peer_cached::async_template(id).await
    });
    in_task!("moka/future get, in one task", |id| moka_future
        .get(&id)
        .await);
    g.finish();

    if benches::is_bench_run() {
        paired_targets(&rt, &quick);
    }
    benches::assert_only_hits_since(preloaded, "the hit benchmarks");
    // The peers' rows time `get`s, which return `None` on a miss instead of running a body:
    // check that each still holds every key, so that none of them was timed finding nothing.
    for id in 0..KEYS {
        assert!(moka_sync.contains_key(&id), "moka::sync lost key {id}");
        assert!(moka_future.contains_key(&id), "moka::future lost key {id}");
        assert!(quick.peek(&id).is_some(), "quick_cache lost key {id}");
        assert!(floor_scc.contains(&id), "the scc floor lost key {id}");
        assert!(
            floor_dashmap.contains_key(&id),
            "the dashmap floor lost key {id}"
        );
    }
}

/// Runs one row of the hit group, then checks that none of its calls ran a body: a row that
/// missed would time a body run and report it as a hit.
fn hit_row(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    f: impl FnMut(&mut criterion::Bencher<'_>),
) {
    let mark = benches::body_runs();
    g.bench_function(name, f);
    benches::assert_only_hits_since(mark, name);
}

/// The hit targets' ratios measured in alternating batches (see [`benches::paired`]), which
/// `scripts/bench` reports beside criterion's medians and judges the targets by.
fn paired_targets(rt: &tokio::runtime::Runtime, quick: &quick_cache::sync::Cache<u64, Profile>) {
    const ROUNDS: usize = 200;
    const BATCH: u64 = 500;
    // Generic, not `&dyn Fn`: an indirect call per hit would add the same nanoseconds to both
    // sides and pull every ratio towards 1.
    fn sync_batch(id: &mut u64, f: impl Fn(u64)) -> std::time::Duration {
        let started = std::time::Instant::now();
        for _ in 0..BATCH {
            *id = (*id + 1) % KEYS;
            f(black_box(*id));
        }
        started.elapsed()
    }
    // Generic over both sides, so each pairing is compiled with its own two calls inlined.
    fn sync_pair(id: &mut u64, first: impl Fn(u64) + Copy, second: impl Fn(u64) + Copy) -> Paired {
        benches::paired(ROUNDS, BATCH, |side| {
            if side == 0 {
                sync_batch(id, first)
            } else {
                sync_batch(id, second)
            }
        })
    }
    let ours_sync = |id| consume(ours::sync_template(id));
    let cached_sync = |id| consume(peer_cached::sync_unbounded(id));
    let mut id = 0u64;
    let sync_vs_cached = sync_pair(&mut id, ours_sync, cached_sync);
    let sync_vs_quick = sync_pair(&mut id, ours_sync, |id| consume(quick.get(&id)));
    // The per-thread front floor (see `front_floor`) against the same peer: how far under
    // `cached` a hit could get if the tier copied hot values into each thread.
    let front_floor_vs_cached = sync_pair(&mut id, |id| consume(front_floor::hit(id)), cached_sync);
    let mut id = 0u64;
    let async_vs_cached = benches::paired(ROUNDS, BATCH, |side| {
        rt.block_on(async {
            let started = std::time::Instant::now();
            for _ in 0..BATCH {
                id = (id + 1) % KEYS;
                if side == 0 {
                    consume(ours::async_template(black_box(id)).await);
                } else {
                    consume(peer_cached::async_unbounded(black_box(id)).await);
                }
            }
            started.elapsed()
        })
    });
    for (name, p) in [
        ("sync templated ÷ cached unbounded", sync_vs_cached),
        ("sync templated ÷ quick_cache get", sync_vs_quick),
        (
            "async templated ÷ cached unbounded, in one task",
            async_vs_cached,
        ),
        (
            "floor: thread-local front ÷ cached unbounded",
            front_floor_vs_cached,
        ),
    ] {
        eprintln!(
            "paired ({ROUNDS} rounds of {BATCH} ABBA): {name}: median ratio {:.3} (middle half {:.3}-{:.3})",
            p.ratio, p.ratio_q1, p.ratio_q3
        );
    }
    benches::write_extra(
        "hit_paired",
        &format!(
            "{{\"rounds\": {ROUNDS}, \"batch\": {BATCH}, \"sync_vs_cached\": {}, \"sync_vs_quick\": {}, \"async_vs_cached\": {}, \"front_floor_vs_cached\": {}}}",
            sync_vs_cached.json(),
            sync_vs_quick.json(),
            async_vs_cached.json(),
            front_floor_vs_cached.json()
        ),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = hits
}
criterion_main!(benches);

/// The cheapest front cache there could be, as a floor: each thread's own array with a slot per
/// key (no collisions, no eviction), checked against a shared per-slot generation (what an
/// invalidation from another thread would bump) and an expiry, and counted in a thread-local
/// counter. Not a cache: it only holds what [`fill`] put into the calling thread's array, which
/// is the benchmark's main thread, where criterion and the paired runs call it.
mod front_floor {
    use super::{KEYS, Profile};
    use std::cell::{Cell, RefCell};
    use std::sync::atomic::{AtomicU64, Ordering};

    const SLOTS: usize = 1024;
    const _: () = assert!(KEYS as usize <= SLOTS);

    struct Slot {
        generation: u64,
        soft_at: u64,
        value: Profile,
    }

    #[allow(clippy::declare_interior_mutable_const)]
    const ZERO: AtomicU64 = AtomicU64::new(0);
    static GENERATIONS: [AtomicU64; SLOTS] = [ZERO; SLOTS];
    static NOW_MS: AtomicU64 = AtomicU64::new(1);

    thread_local! {
        // `const` initialisers, so an access is a plain thread-pointer-relative load with no
        // lazy-initialisation check or out-of-line `LocalKey::with` (which, tried first, copied
        // the 168-byte row through its return value and made this "floor" slower than scc's).
        static FRONT: Cell<*const Slot> = const { Cell::new(std::ptr::null()) };
        static HITS: Cell<u64> = const { Cell::new(0) };
        static OWNED: RefCell<Vec<Slot>> = const { RefCell::new(Vec::new()) };
    }

    /// A key's slot: a bijection of `0..SLOTS` (multiplications by odd numbers and xor-shifts,
    /// all invertible mod 2^10) that scatters consecutive keys the way a hash would. Slots in
    /// key order would let the hardware prefetcher stream the benchmark's cycled keys, which no
    /// real key order allows.
    #[inline(always)]
    fn slot_of(key: u64) -> usize {
        let mut x = key as usize & (SLOTS - 1);
        x = x.wrapping_mul(0x2C5) & (SLOTS - 1);
        x ^= x >> 5;
        x = x.wrapping_mul(0x1F3) & (SLOTS - 1);
        x ^ (x >> 5)
    }

    /// Puts `value` in the calling thread's slot for `key` (< `KEYS`).
    pub(crate) fn fill(key: u64, value: Profile) {
        assert!(key < KEYS, "one slot per benchmark key");
        OWNED.with_borrow_mut(|slots| {
            if slots.is_empty() {
                // Never current (generation `u64::MAX`) until filled; never reallocated after,
                // so the published pointer stays valid.
                slots.extend((0..SLOTS).map(|_| Slot {
                    generation: u64::MAX,
                    soft_at: 0,
                    value: Profile::load(0),
                }));
                FRONT.set(slots.as_ptr());
            }
            let i = slot_of(key);
            slots[i] = Slot {
                generation: GENERATIONS[i].load(Ordering::Acquire),
                soft_at: u64::MAX,
                value,
            };
        });
    }

    /// [`get`], for the benchmark's calls, which must all be hits: a floor that found nothing
    /// (a call from a thread that did not fill its slots) would measure less than a hit and look
    /// faster than it is.
    #[inline(always)]
    pub(crate) fn hit(key: u64) -> Profile {
        get(key).expect("the calling thread filled a current slot for every benchmark key")
    }

    /// The calling thread's value for `key`, if it filled one and it is still current.
    #[inline(always)]
    pub(crate) fn get(key: u64) -> Option<Profile> {
        let slots = FRONT.get();
        if slots.is_null() || key >= KEYS {
            return None;
        }
        let i = slot_of(key);
        // SAFETY: `fill` published the pointer after creating all `SLOTS` slots, and the
        // thread-local vector that owns them is never resized; `fill` and `get` run on the
        // same thread, one at a time.
        let slot = unsafe { &*slots.add(i) };
        if slot.generation == GENERATIONS[i].load(Ordering::Acquire)
            && slot.soft_at > NOW_MS.load(Ordering::Relaxed)
        {
            HITS.set(HITS.get() + 1);
            Some(slot.value.clone())
        } else {
            None
        }
    }
}
