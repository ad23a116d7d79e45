//! The coarse clock's counter: milliseconds since a process-wide origin, advanced by the
//! maintenance thread while the process reads it, and left standing while nothing does.
//!
//! Ticking every millisecond costs a process that has gone quiet a thousand wake-ups a second (on
//! a 2-vCPU VM, a thousand context switches beside the application). So the maintenance thread
//! asks, every [`PROBE_TICKS`] ticks, whether anyone still reads: it sets [`PROBE`] in the
//! counter's word and the next coarse read clears it. A probe still standing at the next probe
//! means nobody read for that long; the thread then marks the word [`IDLE`] and parks (waking
//! once a second to sweep). The first read that finds `IDLE` takes a real reading of the system
//! clock instead, stores it, and wakes the thread: an idle process never serves an entry past its
//! TTL on a stale counter.
//!
//! The flags live in the top bits of the one word a hit already loads, so a hit pays one
//! predictable branch and writes nothing: the cold path runs once per probe (clearing `PROBE`)
//! and once per wake-up, not per hit.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Set by the maintenance thread before it parks; a reader that finds it reads the system clock
/// and wakes the thread.
const IDLE: u64 = 1 << 63;
/// Set by the maintenance thread to ask whether anyone reads; cleared by the next coarse read.
const PROBE: u64 = 1 << 62;
const FLAGS: u64 = IDLE | PROBE;
/// The milliseconds part of the word.
const TIME: u64 = PROBE - 1;

/// Ticks between probes: the thread parks after this many ticks (about 100 ms) without a read.
pub(crate) const PROBE_TICKS: u32 = 100;

thread_local! {
    /// Whether this thread is the maintenance thread, whose own readings (sweeps, alerts) are not
    /// a sign that the process is busy, and must not wake it.
    static IS_MAINTENANCE: Cell<bool> = const { Cell::new(false) };
}

/// Marks the calling thread as the maintenance thread.
pub(crate) fn mark_maintenance_thread() {
    IS_MAINTENANCE.set(true);
}

fn is_maintenance_thread() -> bool {
    IS_MAINTENANCE.get()
}

/// What the maintenance thread does after a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterProbe {
    /// Someone read since the last probe (or this is the first): keep ticking.
    Tick,
    /// Nobody read since the last probe; the word is now `IDLE`: park until woken.
    Park,
}

/// A coarse millisecond counter with its idle protocol; one process-wide instance backs
/// [`Clock::Coarse`](super::Clock::Coarse), tests make their own.
pub(crate) struct CoarseCounter {
    word: AtomicU64,
    /// Milliseconds since the origin, from the system clock: for a read that finds `IDLE`.
    system_ms: fn() -> u64,
    /// Wakes the maintenance thread; called by whoever clears `IDLE`.
    wake: fn(),
}

impl CoarseCounter {
    pub(crate) const fn new(system_ms: fn() -> u64, wake: fn()) -> Self {
        CoarseCounter {
            word: AtomicU64::new(0),
            system_ms,
            wake,
        }
    }

    /// The hit path's reading: one load and, unless the maintenance thread is probing or idle,
    /// nothing else.
    #[inline(always)]
    pub(crate) fn read(&self) -> u64 {
        let word = self.word.load(Ordering::Relaxed);
        if word & FLAGS == 0 {
            return word;
        }
        self.read_flagged(word)
    }

    #[cold]
    #[inline(never)]
    fn read_flagged(&self, word: u64) -> u64 {
        if is_maintenance_thread() {
            return word & TIME;
        }
        if word & IDLE != 0 {
            // The counter stopped when the thread parked: read the real time (which also clears
            // the flags and wakes the thread).
            return self.refresh((self.system_ms)());
        }
        // Answer the probe: someone reads. Clears only `PROBE`, so a concurrent tick is kept.
        self.word.fetch_and(!PROBE, Ordering::Relaxed);
        word & TIME
    }

    /// Moves the counter to `now_ms` if that is later (never backwards), and returns the
    /// counter's time. A real reading (a miss, a write): clears `IDLE` and wakes the thread,
    /// unless it is the maintenance thread's own. Leaves `PROBE` alone: a reading of the system
    /// clock does not say that hits still read the counter.
    pub(crate) fn refresh(&self, now_ms: u64) -> u64 {
        let keep_idle = is_maintenance_thread();
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            let time = (word & TIME).max(now_ms);
            let idle = word & IDLE != 0 && keep_idle;
            let new = time | (word & PROBE) | if idle { IDLE } else { 0 };
            // Within a millisecond the counter already says `now`: skipping the write spares
            // every miss a locked instruction on a line all cores read.
            if new == word {
                return time;
            }
            match self
                .word
                .compare_exchange_weak(word, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    if word & IDLE != 0 && new & IDLE == 0 {
                        (self.wake)();
                    }
                    return time;
                }
                Err(actual) => word = actual,
            }
        }
    }

    /// The maintenance thread's probe, every [`PROBE_TICKS`] ticks: parks the counter if the last
    /// probe is still unanswered, else sets a new one.
    pub(crate) fn probe(&self) -> AfterProbe {
        let word = self.word.load(Ordering::Relaxed);
        if word & PROBE == 0 {
            self.word.fetch_or(PROBE, Ordering::Relaxed);
            return AfterProbe::Tick;
        }
        // Unanswered. Fails if a reader answered (or ticked) meanwhile: then keep ticking.
        let parked = (word & TIME) | IDLE;
        match self
            .word
            .compare_exchange(word, parked, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => AfterProbe::Park,
            Err(_) => AfterProbe::Tick,
        }
    }

    /// Whether the counter is parked (a reader has not woken it since).
    pub(crate) fn is_idle(&self) -> bool {
        self.word.load(Ordering::Relaxed) & IDLE != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    // One counter per test, each with its own statics: the hooks are plain `fn`s.
    macro_rules! counter {
        ($c:ident, $now:ident, $wakes:ident) => {
            static $now: AtomicU64 = AtomicU64::new(1_000);
            static $wakes: AtomicUsize = AtomicUsize::new(0);
            let $c = CoarseCounter::new(
                || $now.load(Ordering::SeqCst),
                || {
                    $wakes.fetch_add(1, Ordering::SeqCst);
                },
            );
        };
    }

    #[test]
    fn a_read_answers_the_probe_and_keeps_the_thread_ticking() {
        counter!(c, NOW, WAKES);
        c.refresh(5);
        assert_eq!(c.probe(), AfterProbe::Tick, "the first probe only asks");
        assert_eq!(
            c.read(),
            5,
            "the probe does not change the time a reader sees"
        );
        assert_eq!(c.probe(), AfterProbe::Tick, "the read answered the probe");
        assert!(!c.is_idle());
        assert_eq!(WAKES.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn an_unanswered_probe_parks_and_the_next_read_takes_the_real_time_and_wakes() {
        counter!(c, NOW, WAKES);
        c.refresh(5);
        assert_eq!(c.probe(), AfterProbe::Tick);
        assert_eq!(
            c.probe(),
            AfterProbe::Park,
            "nobody read since the last probe"
        );
        assert!(c.is_idle());
        // Time passes while the thread sleeps; the counter alone would still say 5.
        NOW.store(9_000, Ordering::SeqCst);
        assert_eq!(
            c.read(),
            9_000,
            "a read of an idle counter reads the system clock"
        );
        assert_eq!(WAKES.load(Ordering::SeqCst), 1, "and wakes the thread");
        assert!(!c.is_idle());
        assert_eq!(c.read(), 9_000, "later reads are plain loads again");
        assert_eq!(WAKES.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_real_reading_wakes_an_idle_counter_but_leaves_a_probe_unanswered() {
        counter!(c, NOW, WAKES);
        c.refresh(5);
        c.probe();
        assert_eq!(c.refresh(7), 7, "a tick moves the time under a probe");
        assert_eq!(c.probe(), AfterProbe::Park, "a tick or miss is no hit");
        assert_eq!(c.refresh(8), 8, "a miss on an idle counter");
        assert_eq!(WAKES.load(Ordering::SeqCst), 1);
        assert!(!c.is_idle());
        assert_eq!(c.refresh(3), 8, "never backwards");
        assert_eq!(WAKES.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_maintenance_threads_own_readings_neither_answer_nor_wake() {
        counter!(c, NOW, WAKES);
        c.refresh(5);
        std::thread::scope(|s| {
            s.spawn(|| {
                mark_maintenance_thread();
                assert_eq!(c.probe(), AfterProbe::Tick);
                assert_eq!(c.read(), 5, "a sweep's reading");
                assert_eq!(
                    c.probe(),
                    AfterProbe::Park,
                    "the sweep's read was no answer"
                );
                assert_eq!(c.refresh(6), 6, "a tick while parked moves the time...");
                assert!(c.is_idle(), "...and keeps it parked");
                assert_eq!(c.read(), 6);
                assert!(c.is_idle());
            });
        });
        assert_eq!(WAKES.load(Ordering::SeqCst), 0);
        NOW.store(7, Ordering::SeqCst);
        assert_eq!(c.read(), 7, "another thread's read wakes it");
        assert_eq!(WAKES.load(Ordering::SeqCst), 1);
    }
}
