//! A memory hit allocates nothing: the key (templated or default) is rendered into stack buffers
//! and the value is cloned into the caller's return value. Counted with a global allocator that
//! counts on this test's own thread only (the maintenance thread and the harness allocate on
//! theirs).
//!
//! One side path may allocate, by design: one hit in 64 is sampled for the hot-key list, and a
//! key entering that list is copied into it. The test warms its keys past that point first, so
//! every counted sample finds its key already listed and updates it in place.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use cache_core::cached;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed on as it is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made on this thread by `f`.
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

static BODY_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(key = "user:{id}")]
fn templated(id: u64) -> u64 {
    BODY_RUNS.fetch_add(1, Ordering::Relaxed);
    id * 2
}

#[cached]
fn default_key(id: u64, name: &str) -> u64 {
    BODY_RUNS.fetch_add(1, Ordering::Relaxed);
    id + name.len() as u64
}

#[cached]
async fn default_key_async(id: u64) -> u64 {
    BODY_RUNS.fetch_add(1, Ordering::Relaxed);
    id + 1
}

#[test]
fn memory_hits_allocate_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    const ID: u64 = 7;
    // Warm-up: one miss each, then enough hits for each key to enter the hot-key list.
    for _ in 0..2_000 {
        templated(ID);
        default_key(ID, "ada");
        rt.block_on(default_key_async(ID));
    }
    assert_eq!(
        BODY_RUNS.load(Ordering::Relaxed),
        3,
        "each key's body ran once"
    );

    let hits = allocations(|| {
        for _ in 0..10_000 {
            assert_eq!(templated(ID), ID * 2);
            assert_eq!(default_key(ID, "ada"), ID + 3);
            assert_eq!(rt.block_on(default_key_async(ID)), ID + 1);
        }
    });
    assert_eq!(
        BODY_RUNS.load(Ordering::Relaxed),
        3,
        "every later call was a hit"
    );
    assert_eq!(hits, 0, "30,000 memory hits allocated {hits} times");
}
