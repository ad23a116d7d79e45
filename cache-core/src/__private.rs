//! What the macros' expansions call. Not public API: no semver promise, hidden from docs.
//!
//! Everything a `#[cached]` function needs at run time goes through [`cached_async`] or
//! [`cached_sync`], which call the same single-flight path as [`Cache::get_or_insert_with`]
//! (crate::Cache::get_or_insert_with).

use std::future::Future;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use ::core;
pub use ::std;

pub use crate::key::{KeyArgs, KeyBuf, KeyPart};
pub use crate::outcome::{
    CacheValue, PlainFallback, PlainStrategy, Probe, Strategy, check_strategy,
};

use crate::flight;
use crate::manager::with_current;
use crate::memory::{InsertOptions, MemoryStore};
use crate::{CacheManager, Clock};

/// The static part of one `#[cached]` function: its cache name and TTL, and its resolved store
/// in the global manager (so a hit does not look the cache up by name).
#[derive(Debug)]
pub struct CallSite {
    cache: &'static str,
    /// TTL in milliseconds; 0 means "the cache policy's".
    ttl_ms: u64,
    global: OnceLock<Arc<MemoryStore>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl CallSite {
    /// A call site of `cache` with `ttl_ms` (0: the policy's TTL).
    pub const fn new(cache: &'static str, ttl_ms: u64) -> Self {
        CallSite {
            cache,
            ttl_ms,
            global: OnceLock::new(),
        }
    }

    fn ttl(&self) -> Option<Duration> {
        (self.ttl_ms != 0).then(|| Duration::from_millis(self.ttl_ms))
    }

    fn store(&'static self) -> StoreRef {
        with_current(|manager: &CacheManager, is_global| {
            if is_global {
                StoreRef::Static(self.global.get_or_init(|| manager.store(self.cache)))
            } else {
                StoreRef::Owned(manager.store(self.cache))
            }
        })
    }

    fn options<'t>(&self, tags: &'t [KeyBuf]) -> impl FnOnce() -> InsertOptions + 't {
        let ttl = self.ttl();
        move || InsertOptions {
            ttl,
            tags: tags.iter().map(|t| Arc::from(t.as_str())).collect(),
        }
    }
}

/// The global manager's store is borrowed for the program's life; a scoped one is counted.
enum StoreRef {
    Static(&'static Arc<MemoryStore>),
    Owned(Arc<MemoryStore>),
}

impl Deref for StoreRef {
    type Target = MemoryStore;
    #[inline]
    fn deref(&self) -> &MemoryStore {
        match self {
            StoreRef::Static(s) => s,
            StoreRef::Owned(s) => s,
        }
    }
}

/// The body of an `async fn` under `#[cached]`.
#[inline]
pub async fn cached_async<R, S, Fut>(
    site: &'static CallSite,
    key: &KeyBuf,
    tags: &[KeyBuf],
    strategy: S,
    body: Fut,
) -> R
where
    S: Strategy<R>,
    Fut: Future<Output = R>,
{
    let store = site.store();
    flight::get_or_compute(&store, key, site.options(tags), &strategy, body).await
}

/// The body of a sync `fn` under `#[cached]`.
#[inline]
pub fn cached_sync<R, S, F>(
    site: &'static CallSite,
    key: &KeyBuf,
    tags: &[KeyBuf],
    strategy: S,
    body: F,
) -> R
where
    S: Strategy<R>,
    F: FnOnce() -> R,
{
    let store = site.store();
    flight::get_or_compute_blocking(&store, key, site.options(tags), &strategy, body)
}

/// Type-checks one argument of a default key, spanned on that argument by the macro.
#[inline(always)]
pub fn assert_key_arg<T: KeyArgs + ?Sized>(_: &T) {}

/// Type-checks one key-template placeholder, spanned on the placeholder by the macro.
#[inline(always)]
pub fn assert_key_part<T: KeyPart + ?Sized>(_: &T) {}

/// Keeps `Clock` reachable for generated test helpers.
pub type RuntimeClock = Clock;
