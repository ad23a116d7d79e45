//! The maintenance thread: advances the coarse clock every millisecond and sweeps expired entries
//! from every memory tier a few times a second, so entries that are never read again are still
//! reclaimed (`cached`'s `TimedCache` leaks exactly those).

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use super::MemoryStore;

const TICK: Duration = Duration::from_millis(1);
/// Sweep every this many ticks.
const SWEEP_EVERY: u32 = 50;
/// Most entries one store drops per sweep, so one huge expiry wave cannot stall the clock.
const SWEEP_BUDGET: usize = 10_000;
/// Evaluate alert rules every this many ticks (about a second).
const ALERT_EVERY: u32 = 1_000;

static STORES: Mutex<Vec<Weak<MemoryStore>>> = Mutex::new(Vec::new());
static THREAD: OnceLock<()> = OnceLock::new();

/// Adds a store to the sweep list and starts the thread on first use.
pub(crate) fn register(store: &Arc<MemoryStore>) {
    super::lock(&STORES).push(Arc::downgrade(store));
    THREAD.get_or_init(|| {
        crate::clock::refresh_coarse();
        let spawned = std::thread::Builder::new()
            .name("cache-core-maintenance".into())
            .spawn(run);
        if let Err(e) = spawned {
            // Without the thread the coarse clock stands still; misses still refresh it, and
            // `CacheManager::run_pending_maintenance` sweeps on demand.
            tracing::error!(error = %e, "cache-core could not start its maintenance thread");
        }
    });
}

fn run() {
    let mut tick = 0u32;
    loop {
        std::thread::sleep(TICK);
        crate::clock::refresh_coarse();
        tick = tick.wrapping_add(1);
        if tick % SWEEP_EVERY == 0 {
            for store in live_stores() {
                store.sweep_expired(SWEEP_BUDGET);
            }
        }
        if tick % ALERT_EVERY == 0 {
            crate::alerts::evaluate_watched();
        }
    }
}

fn live_stores() -> Vec<Arc<MemoryStore>> {
    let mut stores = super::lock(&STORES);
    stores.retain(|w| w.strong_count() > 0);
    stores.iter().filter_map(Weak::upgrade).collect()
}
