//! Alert rules (the guides' monitoring thresholds): a low hit rate, a memory tier over a weight,
//! evictions faster than a rate. Evaluated once per window over that window's counts; a rule that
//! trips logs one warning for the window, never one per call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::CacheManager;
use crate::manager::WeakManager;

/// Thresholds, evaluated per named cache and per window.
///
/// # Examples
///
/// ```
/// use cache_core::{AlertRules, CacheManager, Clock};
/// use std::time::Duration;
///
/// let clock = Clock::manual();
/// let manager = CacheManager::builder()
///     .clock(clock.clone())
///     .alerts(AlertRules::new().window(Duration::from_secs(60)).min_hit_rate(0.5).min_lookups(2))
///     .build();
/// assert!(manager.check_alerts().is_empty(), "the first check opens the first window");
/// let c = manager.cache("users");
/// c.blocking().get::<u32>("a");
/// c.blocking().get::<u32>("b");
/// clock.advance(Duration::from_secs(60));
/// let alerts = manager.check_alerts();
/// assert_eq!(alerts.len(), 1);
/// assert!(manager.check_alerts().is_empty(), "once per window");
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct AlertRules {
    pub(crate) window: Duration,
    pub(crate) min_hit_rate: Option<f64>,
    pub(crate) min_lookups: u64,
    pub(crate) max_weight: Option<u64>,
    pub(crate) max_evictions_per_sec: Option<f64>,
}

impl Default for AlertRules {
    fn default() -> Self {
        Self::new()
    }
}

impl AlertRules {
    /// No thresholds; a 5-minute window; a hit rate is judged only over 100 lookups or more.
    ///
    /// ```
    /// use cache_core::{AlertRules, CacheManager};
    ///
    /// let manager = CacheManager::builder().alerts(AlertRules::new()).build();
    /// assert!(manager.check_alerts().is_empty(), "no thresholds, no alerts");
    /// ```
    pub fn new() -> Self {
        AlertRules {
            window: Duration::from_secs(300),
            min_hit_rate: None,
            min_lookups: 100,
            max_weight: None,
            max_evictions_per_sec: None,
        }
    }

    /// The evaluation window.
    ///
    /// ```
    /// use cache_core::AlertRules;
    /// use std::time::Duration;
    ///
    /// let rules = AlertRules::new().window(Duration::from_secs(60));
    /// # drop(rules);
    /// ```
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Alert when a cache's hit rate over the window is below `rate` (0.0 to 1.0).
    ///
    /// ```
    /// use cache_core::AlertRules;
    ///
    /// let rules = AlertRules::new().min_hit_rate(0.9); // alert under 90% hits
    /// # drop(rules);
    /// ```
    pub fn min_hit_rate(mut self, rate: f64) -> Self {
        self.min_hit_rate = Some(rate);
        self
    }

    /// Judge the hit rate only when the window saw at least this many lookups.
    ///
    /// ```
    /// use cache_core::AlertRules;
    ///
    /// let rules = AlertRules::new().min_hit_rate(0.9).min_lookups(1_000);
    /// # drop(rules);
    /// ```
    pub fn min_lookups(mut self, n: u64) -> Self {
        self.min_lookups = n;
        self
    }

    /// Alert when a cache's memory tier holds more than `bytes` (the guides' memory alert).
    ///
    /// ```
    /// use cache_core::AlertRules;
    ///
    /// let rules = AlertRules::new().max_weight(512 << 20); // 512 MiB
    /// # drop(rules);
    /// ```
    pub fn max_weight(mut self, bytes: u64) -> Self {
        self.max_weight = Some(bytes);
        self
    }

    /// Alert when a cache evicts more than `per_sec` entries per second over the window.
    ///
    /// ```
    /// use cache_core::AlertRules;
    ///
    /// let rules = AlertRules::new().max_evictions_per_sec(100.0);
    /// # drop(rules);
    /// ```
    pub fn max_evictions_per_sec(mut self, per_sec: f64) -> Self {
        self.max_evictions_per_sec = Some(per_sec);
        self
    }
}

/// Which rule tripped.
///
/// ```
/// use cache_core::{AlertKind, AlertRules, CacheManager, Clock, Policy};
/// use std::time::Duration;
///
/// let clock = Clock::manual();
/// let manager = CacheManager::builder()
///     .clock(clock.clone())
///     .cache("users", Policy::new().max_weight(1 << 20))
///     .alerts(AlertRules::new().window(Duration::from_secs(60)).max_weight(1))
///     .build();
/// manager.check_alerts(); // opens the first window
/// manager.cache("users").blocking().set("user:1", 1_u32);
/// clock.advance(Duration::from_secs(60));
/// assert_eq!(manager.check_alerts()[0].kind, AlertKind::HighWeight);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AlertKind {
    /// The hit rate was under [`AlertRules::min_hit_rate`].
    LowHitRate,
    /// The weight was over [`AlertRules::max_weight`].
    HighWeight,
    /// Evictions were faster than [`AlertRules::max_evictions_per_sec`].
    HighEvictionRate,
}

/// One tripped rule for one cache and window.
///
/// ```
/// use cache_core::{AlertRules, CacheManager, Clock};
/// use std::time::Duration;
///
/// let clock = Clock::manual();
/// let manager = CacheManager::builder()
///     .clock(clock.clone())
///     .alerts(AlertRules::new().window(Duration::from_secs(60)).min_hit_rate(0.5).min_lookups(1))
///     .build();
/// manager.check_alerts(); // opens the first window
/// manager.cache("users").blocking().get::<u32>("absent");
/// clock.advance(Duration::from_secs(60));
/// let alert = &manager.check_alerts()[0];
/// assert_eq!((alert.cache.as_str(), alert.value, alert.threshold), ("users", 0.0, 0.5));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Alert {
    /// The cache.
    pub cache: String,
    /// The rule.
    pub kind: AlertKind,
    /// What was measured.
    pub value: f64,
    /// The threshold it crossed.
    pub threshold: f64,
}

#[derive(Debug)]
pub(crate) struct AlertState {
    rules: AlertRules,
    window_start_ms: Option<u64>,
    /// Per cache: hits, misses, evictions at the window's start.
    baseline: HashMap<String, (u64, u64, u64)>,
    /// The alerts of the last window evaluated, until `check_alerts` returns them: the
    /// maintenance thread evaluates windows too, and mostly first.
    unreturned: Vec<Alert>,
}

impl AlertState {
    pub(crate) fn new(rules: AlertRules) -> Mutex<Self> {
        Mutex::new(AlertState {
            rules,
            window_start_ms: None,
            baseline: HashMap::new(),
            unreturned: Vec::new(),
        })
    }

    /// The counters were reset: the window goes on, counting from zero.
    pub(crate) fn restart_counts(&mut self) {
        self.baseline.clear();
    }
}

/// Managers whose rules the maintenance thread evaluates.
static WATCHED: Mutex<Vec<WeakManager>> = Mutex::new(Vec::new());

pub(crate) fn watch(manager: &CacheManager) {
    let mut watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
    // A dropped manager's allocation lives as long as a weak reference to it: pruned here as
    // well as each second, a program that builds managers in a loop keeps only the live ones.
    watched.retain(WeakManager::is_alive);
    watched.push(manager.downgrade());
}

/// Called by the maintenance thread about once a second.
pub(crate) fn evaluate_watched() {
    let managers: Vec<CacheManager> = {
        let mut watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
        watched.retain(WeakManager::is_alive);
        watched.iter().filter_map(WeakManager::upgrade).collect()
    };
    for m in managers {
        if let Some(state) = m.alert_state() {
            m.evaluate_window(&mut state.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }
}

impl CacheManager {
    /// Evaluates the alert rules if a window has passed since the last evaluation (logging a
    /// warning per tripped rule), and returns the alerts of the last window evaluated, once,
    /// whoever evaluated it: the maintenance thread also evaluates the rules every second, and
    /// usually ends a window first. Returns nothing in the middle of a window, and nothing for a
    /// window whose alerts were already returned; of windows that ended since the last call, only
    /// the latest one's alerts are kept. Tests call it after moving the clock.
    ///
    /// ```
    /// use cache_core::{AlertRules, CacheManager};
    ///
    /// // Without alert rules there is nothing to check.
    /// assert!(CacheManager::builder().build().check_alerts().is_empty());
    /// let manager = CacheManager::builder().alerts(AlertRules::new().max_weight(1)).build();
    /// assert!(manager.check_alerts().is_empty(), "the first window has only begun");
    /// ```
    pub fn check_alerts(&self) -> Vec<Alert> {
        let Some(state) = self.alert_state() else {
            return Vec::new();
        };
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        self.evaluate_window(&mut state);
        std::mem::take(&mut state.unreturned)
    }

    /// Evaluates the rules if a window has passed: logs the tripped ones and keeps them for
    /// [`check_alerts`](Self::check_alerts), then opens the next window.
    fn evaluate_window(&self, state: &mut AlertState) {
        let now = self.clock().now_ms_precise();
        let stats = self.stats();
        let Some(start) = state.window_start_ms else {
            // The first call opens the first window, from the counts as they stand: what came
            // before it (start-up, warming) is not this window's.
            state.window_start_ms = Some(now);
            state.baseline = stats
                .iter()
                .map(|s| (s.name.clone(), (s.hits, s.misses, s.evictions)))
                .collect();
            return;
        };
        let elapsed_ms = now.saturating_sub(start);
        // Saturating: a cast keeps the low 64 bits, and a window of 2^62 s became 0 ms.
        let window_ms = u64::try_from(state.rules.window.as_millis()).unwrap_or(u64::MAX);
        if elapsed_ms < window_ms {
            return;
        }
        let rules = state.rules.clone();
        let mut alerts = Vec::new();
        for s in &stats {
            let (h0, m0, e0) = state.baseline.get(&s.name).copied().unwrap_or_default();
            let (hits, misses, evictions) = (
                s.hits - h0.min(s.hits),
                s.misses - m0.min(s.misses),
                s.evictions - e0.min(s.evictions),
            );
            let lookups = hits + misses;
            if let Some(min) = rules.min_hit_rate {
                let rate = if lookups == 0 {
                    1.0
                } else {
                    hits as f64 / lookups as f64
                };
                if lookups >= rules.min_lookups && rate < min {
                    alerts.push(Alert {
                        cache: s.name.clone(),
                        kind: AlertKind::LowHitRate,
                        value: rate,
                        threshold: min,
                    });
                }
            }
            if let Some(max) = rules.max_weight
                && s.weight > max
            {
                alerts.push(Alert {
                    cache: s.name.clone(),
                    kind: AlertKind::HighWeight,
                    value: s.weight as f64,
                    threshold: max as f64,
                });
            }
            if let Some(max) = rules.max_evictions_per_sec {
                let rate = evictions as f64 / (elapsed_ms.max(1) as f64 / 1000.0);
                if rate > max {
                    alerts.push(Alert {
                        cache: s.name.clone(),
                        kind: AlertKind::HighEvictionRate,
                        value: rate,
                        threshold: max,
                    });
                }
            }
        }
        for a in &alerts {
            tracing::warn!(cache = %a.cache, kind = ?a.kind, value = a.value, threshold = a.threshold, "cache alert");
        }
        state.window_start_ms = Some(now);
        state.baseline = stats
            .iter()
            .map(|s| (s.name.clone(), (s.hits, s.misses, s.evictions)))
            .collect();
        state.unreturned = alerts;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AlertRules;

    #[test]
    fn managers_built_and_dropped_in_a_loop_are_not_kept() {
        for _ in 0..1_000 {
            drop(
                CacheManager::builder()
                    .alerts(AlertRules::new().max_weight(1))
                    .build(),
            );
        }
        let dead = WATCHED
            .lock()
            .unwrap()
            .iter()
            .filter(|w| !w.is_alive())
            .count();
        // Other tests of this binary may have dropped a manager of theirs since their last build.
        assert!(dead < 16, "{dead} dropped managers still pinned");
    }
}
