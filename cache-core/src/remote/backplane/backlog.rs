//! The bounded queue between the backplane's subscription loop and the thread that applies its
//! messages.
//!
//! The loop must never wait for an application: a subscriber that stops reading is cut off by
//! Redis (`client-output-buffer-limit pubsub`), but one that keeps reading while applying slowly
//! (pattern, cache and `All` invalidations cost time in proportion to the memory tier) would
//! otherwise pile messages up in the process without bound, applied later and later. So the loop
//! only queues; a full queue refuses the message, and the backlog is then in a gap, like a lost
//! subscription: the applier takes the gap before anything still queued, and clears the memory
//! tiers instead, which covers every message refused or still queued (messages only evict).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

/// Messages received and not yet applied, at most `max_items` of them and, beyond the first,
/// `max_bytes` of their encoded sizes.
pub(crate) struct Backlog<T> {
    state: Mutex<State<T>>,
    /// Signalled when there is something to take, or the backlog closed.
    ready: Condvar,
    max_items: usize,
    max_bytes: usize,
}

struct State<T> {
    queued: VecDeque<(T, usize)>,
    bytes: usize,
    /// Messages refused since the applier last took a gap.
    refused: u64,
    /// The receiving end is gone: the applier stops.
    closed: bool,
}

/// What [`Backlog::push`] did with a message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// Refused: the backlog is full. `first` for the first refusal of a gap.
    Refused {
        first: bool,
    },
}

/// What the applier does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<T> {
    /// Apply this message.
    Apply(T),
    /// Messages were refused: `missed` of them (refused, and discarded from the queue) are to be
    /// covered by clearing the memory tiers.
    Gap { missed: u64 },
    /// The backlog closed: stop.
    Closed,
}

impl<T> Backlog<T> {
    pub(crate) fn new(max_items: usize, max_bytes: usize) -> Self {
        Backlog {
            state: Mutex::new(State {
                queued: VecDeque::new(),
                bytes: 0,
                refused: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            max_items,
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item` of `bytes` encoded bytes, unless the backlog is full. Never waits.
    pub(crate) fn push(&self, item: T, bytes: usize) -> Pushed {
        let mut state = self.lock();
        // One message is always taken, however large: the subscription loop used to apply any
        // single message it read.
        let full = state.queued.len() >= self.max_items
            || (!state.queued.is_empty() && state.bytes.saturating_add(bytes) > self.max_bytes);
        let pushed = if full {
            state.refused += 1;
            Pushed::Refused {
                first: state.refused == 1,
            }
        } else {
            state.queued.push_back((item, bytes));
            state.bytes += bytes;
            Pushed::Queued
        };
        drop(state);
        self.ready.notify_one();
        pushed
    }

    /// Waits for the next thing to do. A gap comes before anything still queued, which it
    /// discards: the clear that covers the refused messages covers those received before them.
    pub(crate) fn next(&self) -> Next<T> {
        let mut state = self.lock();
        loop {
            if state.refused > 0 {
                let missed = state.refused + state.queued.len() as u64;
                state.refused = 0;
                state.queued.clear();
                state.bytes = 0;
                return Next::Gap { missed };
            }
            if let Some((item, bytes)) = state.queued.pop_front() {
                state.bytes -= bytes;
                return Next::Apply(item);
            }
            if state.closed {
                return Next::Closed;
            }
            state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Ends the applier once it has taken what is queued.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_backlog_refuses_and_the_gap_comes_before_what_was_queued() {
        let backlog = Backlog::new(2, 1 << 20);
        assert_eq!(backlog.push(1, 10), Pushed::Queued);
        assert_eq!(backlog.next(), Next::Apply(1));
        assert_eq!(backlog.push(2, 10), Pushed::Queued);
        assert_eq!(backlog.push(3, 10), Pushed::Queued);
        assert_eq!(backlog.push(4, 10), Pushed::Refused { first: true });
        assert_eq!(backlog.push(5, 10), Pushed::Refused { first: false });
        // Two refused, two discarded.
        assert_eq!(backlog.next(), Next::Gap { missed: 4 });
        assert_eq!(backlog.push(6, 10), Pushed::Queued);
        assert_eq!(backlog.next(), Next::Apply(6));
        backlog.close();
        assert_eq!(backlog.next(), Next::Closed);
    }

    #[test]
    fn bytes_bound_the_backlog_too_but_one_message_always_fits() {
        let backlog = Backlog::new(100, 100);
        assert_eq!(backlog.push("huge", 1_000), Pushed::Queued);
        assert_eq!(backlog.push("small", 1), Pushed::Refused { first: true });
        assert_eq!(backlog.next(), Next::Gap { missed: 2 });
        assert_eq!(backlog.push("a", 60), Pushed::Queued);
        assert_eq!(backlog.push("b", 40), Pushed::Queued);
        assert_eq!(backlog.push("c", 1), Pushed::Refused { first: true });
    }

    #[test]
    fn the_applier_waits_for_a_message_and_ends_when_closed() {
        let backlog = std::sync::Arc::new(Backlog::new(4, 1 << 20));
        let applier = {
            let backlog = backlog.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Next::Apply(item) = backlog.next() {
                    got.push(item);
                }
                got
            })
        };
        backlog.push(1, 1);
        backlog.push(2, 1);
        backlog.close();
        // What was queued before the close, in order.
        assert_eq!(applier.join().unwrap(), [1, 2]);
    }
}
