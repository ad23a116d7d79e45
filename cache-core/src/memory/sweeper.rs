//! The maintenance thread: advances the coarse clock every millisecond while the process reads
//! it, and sweeps expired entries from every memory tier a few times a second, so entries that
//! are never read again are still reclaimed (`cached`'s `TimedCache` leaks exactly those).
//!
//! When nothing has read the clock for [`PROBE_TICKS`](crate::clock::PROBE_TICKS) ticks, the
//! thread parks and wakes only once a [`PARKED_WAKE`] to sweep and evaluate alerts, until a
//! reader wakes it (see `clock/coarse.rs`): a quiet process is not woken a thousand times a
//! second.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

use super::MemoryStore;
use crate::clock::{self, AfterProbe};

const TICK: Duration = Duration::from_millis(1);
/// How often expired entries are swept.
const SWEEP_EVERY: Duration = Duration::from_millis(50);
/// Most entries one store drops per sweep, so one huge expiry wave cannot stall the clock.
const SWEEP_BUDGET: usize = 10_000;
/// How often alert rules are evaluated.
const ALERT_EVERY: Duration = Duration::from_secs(1);
/// How long the thread sleeps while parked: sweeps and alerts then run about this often.
const PARKED_WAKE: Duration = Duration::from_secs(1);

static STORES: Mutex<SweepList> = Mutex::new(SweepList(Vec::new()));
/// The maintenance thread, once started (`None` if it could not be).
static THREAD: OnceLock<Option<Thread>> = OnceLock::new();

/// The stores the maintenance thread sweeps, held weakly so that a dropped cache goes.
#[derive(Default)]
struct SweepList(Vec<Weak<MemoryStore>>);

impl SweepList {
    /// Adds `store`, first forgetting the dropped stores when the list is full. A dropped store's
    /// `Weak` keeps its allocation (36 KiB: the counters are inline) until it leaves the list;
    /// left to the sweeps, which run a few times a second (once a second while the thread is
    /// parked), a loop creating managers pinned thousands. Pruning only when the vector would
    /// grow keeps the cost amortised constant, and the list within twice the most stores alive at
    /// once.
    fn add(&mut self, store: &Arc<MemoryStore>) {
        if self.0.len() == self.0.capacity() {
            self.0.retain(|w| w.strong_count() > 0);
        }
        self.0.push(Arc::downgrade(store));
    }

    /// The stores still alive; the others are forgotten.
    fn live(&mut self) -> Vec<Arc<MemoryStore>> {
        self.0.retain(|w| w.strong_count() > 0);
        self.0.iter().filter_map(Weak::upgrade).collect()
    }
}

/// Adds a store to the sweep list and starts the thread on first use.
pub(crate) fn register(store: &Arc<MemoryStore>) {
    super::lock(&STORES).add(store);
    THREAD.get_or_init(|| {
        clock::refresh_coarse();
        let spawned = std::thread::Builder::new()
            .name("cache-core-maintenance".into())
            .spawn(run);
        match spawned {
            Ok(handle) => Some(handle.thread().clone()),
            Err(e) => {
                // Without the thread the coarse clock stands still; misses still refresh it, and
                // `CacheManager::run_pending_maintenance` sweeps on demand.
                tracing::error!(error = %e, "cache-core could not start its maintenance thread");
                None
            }
        }
    });
}

/// Wakes a parked maintenance thread: the coarse clock is being read again.
pub(crate) fn wake() {
    if let Some(Some(thread)) = THREAD.get() {
        thread.unpark();
    }
}

fn run() {
    clock::mark_maintenance_thread();
    let mut ticks_since_probe = 0u32;
    let mut last_sweep = Instant::now();
    let mut last_alerts = last_sweep;
    loop {
        if clock::coarse_is_idle() {
            // Woken early by a reader (which cleared the flag), or after `PARKED_WAKE`; spurious
            // wake-ups only cost a loop.
            std::thread::park_timeout(PARKED_WAKE);
        } else {
            std::thread::sleep(TICK);
        }
        let now = Instant::now();
        clock::refresh_coarse();
        if !clock::coarse_is_idle() {
            ticks_since_probe += 1;
            if ticks_since_probe >= clock::PROBE_TICKS {
                ticks_since_probe = 0;
                if clock::probe_coarse() == AfterProbe::Park {
                    tracing::trace!("cache-core maintenance: no clock reads, parking");
                }
            }
        }
        if now.duration_since(last_sweep) >= SWEEP_EVERY {
            last_sweep = now;
            for store in live_stores() {
                survive("sweep", || {
                    store.sweep_expired(SWEEP_BUDGET);
                });
            }
        }
        if now.duration_since(last_alerts) >= ALERT_EVERY {
            last_alerts = now;
            survive("alerts", crate::alerts::evaluate_watched);
        }
    }
}

/// Runs one maintenance step, logging a panic instead of letting it end the thread: a user's
/// `Drop` run by a sweep, or a tracing layer, may panic, and without this thread the coarse clock
/// stands still (it moves only on misses), so hits would go on serving expired entries.
fn survive(step: &str, f: impl FnOnce()) -> bool {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(()) => true,
        Err(panic) => {
            tracing::error!(step, error = %crate::warming::panicked(&*panic), "cache-core maintenance step failed; the thread goes on");
            false
        }
    }
}

fn live_stores() -> Vec<Arc<MemoryStore>> {
    super::lock(&STORES).live()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Clock, Policy};

    #[test]
    fn dropped_stores_do_not_pile_up_between_sweeps() {
        // A dropped store's `Weak` keeps its allocation (36 KiB: its counters are inline) until
        // it leaves the list, which only the sweeps did, at most a few times a second: a loop
        // creating managers (a property test, a test harness) pinned thousands of them.
        let mut list = SweepList::default();
        let kept = MemoryStore::new("kept".into(), Policy::new(), Clock::manual());
        list.add(&kept);
        for i in 0..2_000 {
            let name = format!("dropped:{i}");
            list.add(&MemoryStore::new(
                name.into(),
                Policy::new(),
                Clock::manual(),
            ));
        }
        assert!(
            list.0.len() <= 64,
            "{} stores listed, 1 of them alive",
            list.0.len()
        );
        assert_eq!(list.live().len(), 1);
    }

    #[test]
    fn a_panicking_step_is_survived() {
        assert!(!survive("test", || panic!("a value's Drop")));
        assert!(survive("test", || {}));
    }
}
