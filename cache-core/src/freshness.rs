//! Freshness: what a cache does around an entry's TTL rather than only at it.
//!
//! - *Stale-while-revalidate*: for `stale` past its TTL an entry is served at once while one
//!   background task refreshes it.
//! - *Fail-safe*: for `fail_safe` past its TTL an entry is kept as a fallback: when the body fails
//!   (`Err`, panic, timeout) its caller gets that value instead of the failure, and the value is
//!   served as fresh for a short throttle so a failing database is not asked again at once.
//! - *Timeouts*: past the soft timeout a caller that has a fallback gets it and the body finishes in
//!   the background; past the hard timeout the caller gets the fallback or a timeout error.
//! - *Refresh-ahead*: an entry read near the end of its TTL is refreshed in the background before
//!   it expires: after a fixed fraction of the TTL, or by XFetch (Vattani et al., VLDB 2015), which
//!   refreshes at remaining time `t` with probability `exp(-t / (β·δ))`, where `δ` is the measured
//!   time the value took to compute, so expensive values refresh earlier than cheap ones.
//! - *Jitter*: TTLs shortened by a random fraction so entries written together expire apart.
//!
//! The memory tier keeps three times per entry (see `memory::Entry`): `soft_at`, before which a
//! read is a plain hit (the hit path compares against this one field, as it compared against the
//! expiry before); `expires_at`, the end of the TTL; and `keep_until`, after which the entry is
//! removed. Everything between `soft_at` and `keep_until` is decided here, off the hit path.

use std::time::Duration;

use crate::Policy;

/// When an entry is refreshed before it expires.
///
/// ```
/// use cache_core::{Policy, RefreshAhead};
///
/// // XFetch with the paper's β = 1: no window to tune.
/// let p = Policy::new().ttl_secs(60).refresh_ahead(RefreshAhead::xfetch());
/// // The guides' fixed window: refresh entries read in the last 20% of their TTL.
/// let q = Policy::new().ttl_secs(60).refresh_ahead(RefreshAhead::after(0.8));
/// # drop((p, q));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum RefreshAhead {
    /// Entries expire; the next read computes (the default).
    #[default]
    Off,
    /// A read after this fraction of the TTL (0 < f < 1) refreshes the entry.
    After(f64),
    /// XFetch: a read at remaining time `t` refreshes with probability `exp(-(t - δ) / (β·δ))`;
    /// larger `β` refreshes earlier. `t` is counted to the moment a refresh started now would
    /// land (`δ` before the expiry), so a refresh lands before the entry expires.
    XFetch {
        /// The eagerness β (1.0 in the paper).
        beta: f64,
    },
}

impl RefreshAhead {
    /// XFetch with β = 1.
    ///
    /// ```
    /// use cache_core::{Policy, RefreshAhead};
    ///
    /// assert_eq!(RefreshAhead::xfetch(), RefreshAhead::XFetch { beta: 1.0 });
    /// let p = Policy::new().ttl_secs(300).refresh_ahead(RefreshAhead::xfetch());
    /// # drop(p);
    /// ```
    pub const fn xfetch() -> Self {
        RefreshAhead::XFetch { beta: 1.0 }
    }

    /// XFetch with eagerness `beta` (clamped to at least 0.01).
    ///
    /// ```
    /// use cache_core::RefreshAhead;
    ///
    /// assert_eq!(RefreshAhead::xfetch_beta(2.0), RefreshAhead::XFetch { beta: 2.0 });
    /// assert_eq!(RefreshAhead::xfetch_beta(0.0), RefreshAhead::XFetch { beta: 0.01 });
    /// ```
    pub fn xfetch_beta(beta: f64) -> Self {
        RefreshAhead::XFetch {
            beta: beta.max(0.01),
        }
    }

    /// Refresh entries read after `fraction` of their TTL (clamped to 0.01..=0.99).
    ///
    /// ```
    /// use cache_core::RefreshAhead;
    ///
    /// assert_eq!(RefreshAhead::after(0.8), RefreshAhead::After(0.8));
    /// assert_eq!(RefreshAhead::after(1.5), RefreshAhead::After(0.99));
    /// ```
    pub fn after(fraction: f64) -> Self {
        RefreshAhead::After(fraction.clamp(0.01, 0.99))
    }

    pub(crate) fn is_on(self) -> bool {
        !matches!(self, RefreshAhead::Off)
    }
}

/// What a `#[cached(timeout = ..)]` function returns (through `From`) when its body ran past the
/// hard timeout and no fail-safe value existed.
///
/// ```
/// use cache_core::TimedOut;
///
/// #[derive(Debug)]
/// enum DbError { Timeout, Other }
/// impl From<TimedOut> for DbError {
///     fn from(_: TimedOut) -> Self { DbError::Timeout }
/// }
/// # let _ = DbError::Other;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut {
    /// The hard timeout that passed.
    pub after: Duration,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cached function timed out after {:?}", self.after)
    }
}

impl std::error::Error for TimedOut {}

/// The default fail-safe throttle: how long a fallback value is served as fresh after a failure.
///
/// ```
/// use cache_core::DEFAULT_FAIL_SAFE_THROTTLE;
/// use std::time::Duration;
///
/// assert_eq!(DEFAULT_FAIL_SAFE_THROTTLE, Duration::from_secs(30));
/// ```
pub const DEFAULT_FAIL_SAFE_THROTTLE: Duration = Duration::from_secs(30);

/// A call's freshness settings: a function's own options over its cache's policy.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Freshness {
    pub(crate) stale_ms: u64,
    pub(crate) fail_safe_ms: u64,
    pub(crate) throttle_ms: u64,
    pub(crate) refresh: RefreshAhead,
    pub(crate) jitter_pct: u8,
    pub(crate) soft_timeout: Option<Duration>,
    pub(crate) hard_timeout: Option<Duration>,
}

/// A function's own settings (0 / `Off` / `None`: the policy's).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SiteFreshness {
    pub(crate) stale_ms: u64,
    pub(crate) fail_safe_ms: u64,
    pub(crate) refresh: RefreshAhead,
    pub(crate) jitter_pct: u8,
    pub(crate) soft_timeout_ms: u64,
    pub(crate) hard_timeout_ms: u64,
}

impl SiteFreshness {
    pub(crate) const NONE: SiteFreshness = SiteFreshness {
        stale_ms: 0,
        fail_safe_ms: 0,
        refresh: RefreshAhead::Off,
        jitter_pct: 0,
        soft_timeout_ms: 0,
        hard_timeout_ms: 0,
    };
}

fn ms(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| d.as_millis().min(u128::from(u64::MAX / 4)) as u64)
}

fn nonzero_or(site: u64, policy: u64) -> u64 {
    if site != 0 { site } else { policy }
}

impl Freshness {
    pub(crate) fn resolve(site: &SiteFreshness, policy: &Policy) -> Freshness {
        let timeout = |site_ms: u64, policy: Option<Duration>| {
            (site_ms != 0)
                .then(|| Duration::from_millis(site_ms))
                .or(policy)
        };
        Freshness {
            stale_ms: nonzero_or(site.stale_ms, ms(policy.stale)),
            fail_safe_ms: nonzero_or(site.fail_safe_ms, ms(policy.fail_safe)),
            throttle_ms: ms(Some(
                policy
                    .fail_safe_throttle
                    .unwrap_or(DEFAULT_FAIL_SAFE_THROTTLE),
            ))
            .max(1),
            refresh: if site.refresh.is_on() {
                site.refresh
            } else {
                policy.refresh_ahead
            },
            jitter_pct: if site.jitter_pct != 0 {
                site.jitter_pct
            } else {
                policy.jitter_pct
            },
            soft_timeout: timeout(site.soft_timeout_ms, policy.soft_timeout),
            hard_timeout: timeout(site.hard_timeout_ms, policy.hard_timeout),
        }
    }

    /// How long past its TTL an entry stays in memory: its stale and fail-safe windows, and for
    /// refresh-ahead a grace in which a read finding its refresh under way is served the old value.
    pub(crate) fn keep_ms(&self, delta_ms: u32) -> u64 {
        self.stale_ms
            .max(self.fail_safe_ms)
            .max(self.refresh_grace_ms(delta_ms))
    }

    /// How long past its TTL an entry refreshed ahead is still served while a refresh is under
    /// way (`max(2δ, 1 s)`): the refresh lands in a moment. Not the whole time the entry is
    /// kept, which a fail-safe window may make hours.
    pub(crate) fn refresh_grace_ms(&self, delta_ms: u32) -> u64 {
        if self.refresh.is_on() {
            (2 * u64::from(delta_ms)).max(1_000)
        } else {
            0
        }
    }

    /// The TTL with jitter applied: shortened by up to `jitter_pct` percent, never lengthened, so
    /// a TTL stays a bound on an entry's age.
    pub(crate) fn jittered(&self, ttl: Option<Duration>) -> Option<Duration> {
        let ttl = ttl?;
        if self.jitter_pct == 0 {
            return Some(ttl);
        }
        let unit = f64::from(crate::stats::sample()) / f64::from(u32::MAX);
        Some(cut_by(ttl, self.jitter_pct, unit))
    }
}

/// `ttl` shortened by `unit` (0 to 1) of `pct` percent of it.
fn cut_by(ttl: Duration, pct: u8, unit: f64) -> Duration {
    let cut = ttl.as_secs_f64() * f64::from(pct.min(100)) / 100.0 * unit;
    // `try_`: for a huge TTL (`Duration::MAX`) the product rounds past what a `Duration` holds,
    // where `from_secs_f64` panics; the whole TTL is cut then.
    ttl.saturating_sub(Duration::try_from_secs_f64(cut).unwrap_or(ttl))
}

/// When a read of an entry stored now stops being a plain hit: its expiry, or earlier for
/// refresh-ahead.
pub(crate) fn soft_at(
    refresh: RefreshAhead,
    now_ms: u64,
    expires_at: u64,
    ttl_ms: u64,
    delta_ms: u32,
) -> u64 {
    match refresh {
        RefreshAhead::Off => expires_at,
        RefreshAhead::After(f) => now_ms.saturating_add((ttl_ms as f64 * f) as u64),
        // exp(-x) < 1e-5 past x = 11.5: reads before `expires_at - δ - 12βδ` never refresh, so
        // they take the plain hit path.
        RefreshAhead::XFetch { beta } => {
            let delta = u64::from(delta_ms);
            let horizon = delta.saturating_add((12.0 * beta * delta as f64) as u64);
            expires_at.saturating_sub(horizon).max(now_ms)
        }
    }
    .min(expires_at)
}

/// Whether a read at `now_ms` of an entry in its refresh window starts a refresh.
pub(crate) fn should_refresh(
    refresh: RefreshAhead,
    now_ms: u64,
    soft_at: u64,
    expires_at: u64,
    delta_ms: u32,
) -> bool {
    match refresh {
        RefreshAhead::Off => false,
        RefreshAhead::After(_) => now_ms >= soft_at,
        RefreshAhead::XFetch { beta } => {
            if delta_ms == 0 {
                // Nothing to gain: a value that costs nothing is recomputed on the miss.
                return false;
            }
            let delta = f64::from(delta_ms);
            let until_landing = expires_at as f64 - delta - now_ms as f64;
            if until_landing <= 0.0 {
                return true;
            }
            let p = (-until_landing / (beta * delta)).exp();
            let unit = f64::from(crate::stats::sample()) / f64::from(u32::MAX);
            unit < p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_cut_of_the_largest_ttl_does_not_panic() {
        assert_eq!(cut_by(Duration::MAX, 100, 1.0), Duration::ZERO);
        assert_eq!(
            cut_by(Duration::from_secs(10), 50, 1.0),
            Duration::from_secs(5)
        );
        assert_eq!(
            cut_by(Duration::from_secs(10), 50, 0.0),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn xfetch_refreshes_more_often_near_expiry_and_for_costlier_values() {
        let refresh = RefreshAhead::xfetch();
        let rate = |remaining: u64, delta: u32| {
            let expires_at = 1_000_000;
            let now = expires_at - remaining;
            let soft = soft_at(refresh, 0, expires_at, expires_at, delta);
            (0..20_000)
                .filter(|_| now >= soft && should_refresh(refresh, now, soft, expires_at, delta))
                .count() as f64
                / 20_000.0
        };
        // At one δ (plus the landing δ) before expiry: exp(-1) ≈ 0.37.
        let p = rate(200, 100);
        assert!((0.3..0.45).contains(&p), "{p}");
        // Further from expiry: rarer.
        assert!(rate(400, 100) < 0.1);
        // The same remaining time for a value ten times costlier: almost certain.
        assert!(rate(400, 1000) > 0.9);
        // Within δ of the expiry: always.
        assert_eq!(rate(50, 100), 1.0);
        // Far away: never, and without touching the random number (plain hit path).
        assert_eq!(rate(100_000, 100), 0.0);
    }

    #[test]
    fn fixed_window_refreshes_after_the_fraction() {
        let refresh = RefreshAhead::after(0.8);
        let soft = soft_at(refresh, 0, 10_000, 10_000, 0);
        assert_eq!(soft, 8_000);
        assert!(!should_refresh(refresh, 7_999, soft, 10_000, 0) || 7_999 >= soft);
        assert!(should_refresh(refresh, 8_000, soft, 10_000, 0));
    }

    #[test]
    fn jitter_only_shortens() {
        let f = Freshness {
            jitter_pct: 10,
            ..Freshness::default()
        };
        let ttl = Duration::from_secs(100);
        let mut seen_short = false;
        for _ in 0..1000 {
            let t = f.jittered(Some(ttl)).unwrap();
            assert!(t <= ttl && t >= Duration::from_secs(90), "{t:?}");
            seen_short |= t < Duration::from_secs(99);
        }
        assert!(seen_short);
    }
}
