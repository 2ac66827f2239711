//! How long a waiter spins before it sleeps, adapted per thread to whether spinning pays.
//!
//! Spinning pays only when the peer runs at the same time on another CPU and answers
//! within the spin. With more runnable processes than CPUs (a pinned pair on one core, a
//! container limited to one CPU, a pool larger than the machine) the peer cannot run while
//! we spin: every spin is lost time, and the futex path plus a yield is the fastest way to
//! hand the CPU over. So the budget starts at [`SPIN_LIMIT`], shrinks by an eighth whenever
//! a wait ends right after its spin failed and it yielded the CPU (the peer needed our
//! CPU), and goes back to the full limit whenever a spin succeeds (a wait that had to
//! sleep says nothing: its peer was asleep or away, and spinning did not delay it);
//! every [`PROBE_EVERY`]th wait spins fully, so that a budget gone to zero notices when
//! spinning pays again.
//!
//! The handoff window ([`HANDOFF`]) adapts the same way: whole while the peers a thread
//! wakes answer within it, halved each time one did not (or a yield inside it ran another
//! process), whole once in [`PROBE_EVERY`] waits that could open it, whatever it is; and
//! skipped by a wait whose spin ended with such a yield.
//!
//! The state is per thread: no shared memory, no atomics. (An async executor's thread has
//! one state for all its tasks: see the `aio` module docs.)

use super::{HANDOFF, SPIN_LIMIT};
use std::cell::Cell;
use std::time::{Duration, Instant};

/// Every this many waits, a thread spins fully whatever its budget says.
pub(super) const PROBE_EVERY: u32 = 32;

thread_local! {
    /// `(budget, waits since the last full spin)`.
    static STATE: Cell<(u32, u32)> = const { Cell::new((SPIN_LIMIT, 0)) };
}

/// How many attempts the wait starting now may spin.
#[inline]
pub(super) fn budget() -> u32 {
    STATE.with(|s| {
        let (budget, n) = s.get();
        if n + 1 >= PROBE_EVERY {
            s.set((budget, 0));
            SPIN_LIMIT
        } else {
            s.set((budget, n + 1));
            budget
        }
    })
}

/// The spin ended the wait: keep spinning fully.
#[inline]
pub(super) fn hit() {
    STATE.with(|s| s.set((SPIN_LIMIT, s.get().1)));
}

/// The spin did not end the wait, yielding the CPU did: spin an eighth less next time.
/// Slowly, so that a peer that is late now and then (an interrupt, a scheduler hiccup)
/// does not cost the spinning of the many waits it answers in time; some forty in a
/// row (a peer that cannot run while we spin) take the budget to nothing.
#[inline]
pub(super) fn shared_cpu() {
    STATE.with(|s| {
        let (budget, n) = s.get();
        s.set((budget - budget.div_ceil(8), n));
    });
}

/// The narrowest handoff window: a thread whose woken peers never answer within the
/// window keeps this much of it.
const HANDOFF_MIN: Duration = Duration::from_micros(6);

/// The handoff state of this thread (see [`HANDOFF`]).
#[derive(Clone, Copy)]
struct Handoff {
    /// When this thread last woke a sleeper.
    woke: Option<Instant>,
    /// The window it gets now: [`HANDOFF`] while the window pays, halved (down to
    /// [`HANDOFF_MIN`]) each time the woken peer did not answer within it.
    window: Duration,
    /// Windows since the last full one: every [`PROBE_EVERY`]th is full, so a peer
    /// that answers in time again is noticed.
    n: u32,
    /// Whether the yield that ended this wait's spin ran another process on our CPU:
    /// then the wait sleeps at once (sleeping gives the CPU back, and a woken sleeper
    /// gets the CPU back sooner than one that yields it to a busy process).
    shared: bool,
}

thread_local! {
    static HANDOFF_STATE: Cell<Handoff> = const {
        Cell::new(Handoff { woke: None, window: HANDOFF, n: 0, shared: false })
    };
}

/// This thread woke a sleeper (after the syscall, which is the expensive part).
#[inline]
pub(super) fn woke() {
    woke_at(Instant::now());
}

/// This thread woke a sleeper at `now`.
pub(super) fn woke_at(now: Instant) {
    HANDOFF_STATE.with(|s| {
        s.set(Handoff {
            woke: Some(now),
            ..s.get()
        })
    });
}

/// The spin of a wait ended with a yield; `shared`: it ran another process.
pub(super) fn yielded(shared: bool) {
    HANDOFF_STATE.with(|s| s.set(Handoff { shared, ..s.get() }));
}

/// The end of this thread's handoff window, if it is still open at `now` (and the
/// wait's spin did not find our CPU shared).
pub(super) fn handoff_until(now: Instant) -> Option<Instant> {
    HANDOFF_STATE.with(|s| {
        let mut h = s.get();
        let woke = h.woke?;
        // Only waits that could still open a window count towards the whole one: a wait
        // long after the last wake has none to probe with.
        if h.shared || now >= woke + HANDOFF {
            return None;
        }
        h.n += 1;
        let window = if h.n >= PROBE_EVERY {
            h.n = 0;
            HANDOFF
        } else {
            h.window
        };
        s.set(h);
        let until = woke + window;
        (now < until).then_some(until)
    })
}

/// The peer answered within the window: keep it whole.
pub(super) fn handoff_hit() {
    HANDOFF_STATE.with(|s| {
        s.set(Handoff {
            window: HANDOFF,
            ..s.get()
        })
    });
}

/// The window ran out (or a yield in it ran another process): halve it (down to
/// [`HANDOFF_MIN`]).
pub(super) fn handoff_miss() {
    HANDOFF_STATE.with(|s| {
        let h = s.get();
        s.set(Handoff {
            window: (h.window / 2).max(HANDOFF_MIN),
            ..h
        });
    });
}

/// This thread's last wake and its window now, for the tests.
#[cfg(test)]
pub(super) fn handoff_state() -> (Option<Instant>, Duration) {
    HANDOFF_STATE.with(|s| (s.get().woke, s.get().window))
}
