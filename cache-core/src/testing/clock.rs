//! [`TestClock`]: time that moves only when a test says so.

use std::time::Duration;

use crate::{CacheManager, Clock};

/// A clock for managers under test, and the one call that moves it and lets the managers catch
/// up (expire what is due), so TTL tests neither sleep nor depend on the machine's speed.
///
/// Two kinds:
/// - [`TestClock::manual`]: a counter; works with or without tokio.
/// - [`TestClock::tokio`]: tokio's clock, for tests whose runtime starts paused
///   (`#[tokio::test(start_paused = true)]`), so TTLs move with `tokio::time::advance` as the
///   test's own timers do.
///
/// # Examples
///
/// ```
/// use cache_core::testing::TestClock;
/// use cache_core::{CacheManager, Policy};
/// use std::time::Duration;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let clock = TestClock::manual();
/// let manager = CacheManager::builder()
///     .clock(clock.clock())
///     .cache("sessions", Policy::new().ttl_secs(60))
///     .build();
/// let sessions = manager.cache("sessions");
/// sessions.set("s1", 1u32).await;
///
/// clock.advance(Duration::from_secs(59), [&manager]).await;
/// assert_eq!(sessions.get::<u32>("s1").await, Some(1));
/// clock.advance(Duration::from_secs(1), [&manager]).await;
/// assert_eq!(sessions.get::<u32>("s1").await, None, "expired, and swept");
/// assert_eq!(manager.cache("sessions").stats().entries, 0);
/// # });
/// ```
#[derive(Clone, Debug)]
pub struct TestClock {
    clock: Clock,
}

impl TestClock {
    /// A manual clock at zero.
    ///
    /// ```
    /// use cache_core::testing::TestClock;
    /// use cache_core::{CacheManager, Clock};
    ///
    /// let clock = TestClock::manual();
    /// let manager = CacheManager::builder().clock(clock.clock()).build();
    /// assert!(matches!(manager.clock(), Clock::Manual(_)));
    /// ```
    pub fn manual() -> Self {
        TestClock {
            clock: Clock::manual(),
        }
    }

    /// Tokio's clock. Create it inside a runtime whose time is paused; [`advance`](Self::advance)
    /// then calls `tokio::time::advance`, which panics if time is not paused.
    ///
    /// ```
    /// use cache_core::testing::TestClock;
    /// use cache_core::{CacheManager, Policy};
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
    /// let clock = TestClock::tokio();
    /// let manager = CacheManager::builder()
    ///     .clock(clock.clock())
    ///     .default_policy(Policy::new().ttl_secs(5))
    ///     .build();
    /// manager.cache("c").set("k", 1_u8).await;
    /// clock.advance(Duration::from_secs(5), [&manager]).await;
    /// assert!(manager.cache("c").is_empty());
    /// # });
    /// ```
    pub fn tokio() -> Self {
        TestClock {
            clock: Clock::tokio(),
        }
    }

    /// The clock to give [`CacheManagerBuilder::clock`](crate::CacheManagerBuilder::clock).
    ///
    /// ```
    /// use cache_core::testing::TestClock;
    /// use cache_core::CacheManager;
    ///
    /// let clock = TestClock::manual();
    /// let manager = CacheManager::builder().clock(clock.clock()).build();
    /// # drop(manager);
    /// ```
    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }

    /// Moves time forward by `by`, then sweeps the expired entries of every manager in
    /// `managers` (as their maintenance thread would), so stats and memory reflect the new time.
    ///
    /// ```
    /// use cache_core::testing::TestClock;
    /// use cache_core::{CacheManager, Policy};
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let clock = TestClock::manual();
    /// let manager = CacheManager::builder()
    ///     .clock(clock.clock())
    ///     .default_policy(Policy::new().ttl_secs(5))
    ///     .build();
    /// manager.cache("c").set("k", 1_u8).await;
    /// clock.advance(Duration::from_secs(5), [&manager]).await;
    /// assert_eq!(manager.cache("c").stats().entries, 0, "swept");
    /// # });
    /// ```
    pub async fn advance<'a>(
        &self,
        by: Duration,
        managers: impl IntoIterator<Item = &'a CacheManager>,
    ) {
        match &self.clock {
            Clock::Manual(_) => self.clock.advance(by),
            Clock::Tokio(_) => tokio::time::advance(by).await,
            Clock::Coarse => unreachable!("a TestClock is manual or tokio"),
        }
        for manager in managers {
            manager.run_pending_maintenance();
        }
    }
}
