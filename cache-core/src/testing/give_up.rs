//! A caller that gives up: a future dropped after a set number of polls.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Polls `future` at most `polls` times, then drops it and yields `None`, as a caller does when
/// its client disconnects or its own timeout fires; yields `Some(output)` if the future finished
/// first. With `polls` from 0 upwards a test drops a cache call before each of its await points
/// in turn (the body still running, a lock held, a refresh under way) and checks that nothing is
/// left behind.
///
/// # Examples
///
/// ```
/// use cache_core::testing::give_up_after;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let slow = async {
///     tokio::task::yield_now().await; // one await point: ready on the second poll
///     7
/// };
/// assert_eq!(give_up_after(1, slow).await, None, "dropped at its await point");
/// assert_eq!(give_up_after(2, async { 7 }).await, Some(7));
/// # });
/// ```
pub fn give_up_after<F: Future>(polls: usize, future: F) -> GiveUpAfter<F> {
    GiveUpAfter {
        inner: Some(Box::pin(future)),
        polls,
    }
}

/// The future of [`give_up_after`].
#[must_use = "futures do nothing unless awaited"]
pub struct GiveUpAfter<F> {
    /// Boxed so that dropping it early needs no pinning of `Self`.
    inner: Option<Pin<Box<F>>>,
    polls: usize,
}

impl<F> std::fmt::Debug for GiveUpAfter<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GiveUpAfter")
            .field("running", &self.inner.is_some())
            .field("polls_left", &self.polls)
            .finish()
    }
}

impl<F: Future> Future for GiveUpAfter<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.polls == 0 {
            self.inner = None;
            return Poll::Ready(None);
        }
        self.polls -= 1;
        let inner = self.inner.as_mut().expect("polled after completion");
        inner.as_mut().poll(cx).map(Some)
    }
}
