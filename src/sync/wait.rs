//! The one place where shmkit blocks: spin briefly, then sleep on a futex, always with an
//! optional deadline on the monotonic clock.
//!
//! Every blocking primitive follows the same shape: check its condition, spin a little
//! (a peer that answers within a few microseconds never costs a syscall), then announce
//! itself as a sleeper in the shared word and call [`sleep`]. The waking side makes the
//! wake syscall only when a sleeper announced itself, so the uncontended paths make no
//! syscalls at all.

use crate::primitive::{self, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The sleeper flag every futex word of this crate keeps in bit 31: set by a waiter
/// before it sleeps, seen by the waker in its read-modify-write of the same word.
pub(crate) const WAITERS: u32 = 1 << 31;

/// How many times a waiter re-checks its condition before it sleeps.
#[cfg(not(loom))]
pub(crate) const SPIN_LIMIT: u32 = 200;
/// Under loom a spin is a yield: keep the state space small.
#[cfg(loom)]
pub(crate) const SPIN_LIMIT: u32 = 1;

/// The longest a waiter sleeps before it re-checks its condition by itself. A notifier
/// that dies between changing the shared state and making the wake syscall therefore
/// delays a sleeper by at most this long, never for ever.
pub(crate) const MAX_SLICE: Duration = Duration::from_millis(100);

/// A point in monotonic time after which a wait gives up; `None` waits for ever.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline.
    pub(crate) const NEVER: Deadline = Deadline(None);

    /// `timeout` from now. A timeout too large to represent waits for ever.
    pub(crate) fn after(timeout: Duration) -> Deadline {
        Deadline(Instant::now().checked_add(timeout))
    }

    /// The time left, `Some(None)` for no deadline, or `None` if it has passed.
    pub(crate) fn remaining(&self) -> Option<Option<Duration>> {
        match self.0 {
            None => Some(None),
            Some(at) => {
                let now = Instant::now();
                (now < at).then(|| Some(at - now))
            }
        }
    }
}

/// Sleeps while `*word == expected`, at most `slice` (and never more than [`MAX_SLICE`]),
/// and never past `deadline`.
///
/// Returns `Ok(true)` if woken (or the value changed, or a signal arrived: the caller
/// re-checks), `Ok(false)` if the slice ran out, and `Err(Timeout)` if the deadline passed.
pub(crate) fn sleep(
    word: &AtomicU32,
    expected: u32,
    deadline: Deadline,
    slice: Option<Duration>,
) -> Result<bool> {
    let Some(left) = deadline.remaining() else {
        return Err(Error::Timeout);
    };
    let slice = slice.map_or(MAX_SLICE, |s| s.min(MAX_SLICE));
    let timeout = Some(left.map_or(slice, |l| l.min(slice)));
    match primitive::futex_wait(word, expected, timeout) {
        primitive::FutexWait::Woken => Ok(true),
        primitive::FutexWait::TimedOut => {
            if deadline.remaining().is_none() {
                Err(Error::Timeout)
            } else {
                Ok(false)
            }
        }
    }
}

/// Wakes at most `n` sleepers on `word` in any process.
pub(crate) fn wake(word: &AtomicU32, n: u32) {
    primitive::futex_wake(word, n);
}

/// Waits until `ready` returns `Some`, spinning first and then sleeping on `word`.
///
/// `announce` is called with the word's current value before each sleep; it sets the
/// sleeper flag in the word (with a CAS that fails if the word changed) and returns the
/// value to sleep on, or `None` to re-check at once. The waking side clears or keeps the
/// flag and wakes; every sleep is sliced (see [`MAX_SLICE`]), so a lost wake-up costs at
/// most one slice.
pub(crate) fn wait_for<R>(
    word: &AtomicU32,
    deadline: Deadline,
    mut ready: impl FnMut() -> Result<Option<R>>,
    mut announce: impl FnMut(u32) -> Option<u32>,
) -> Result<R> {
    for _ in 0..SPIN_LIMIT {
        if let Some(r) = ready()? {
            return Ok(r);
        }
        primitive::spin_hint();
    }
    let mut busy = 0u32;
    loop {
        if let Some(r) = ready()? {
            return Ok(r);
        }
        // Relaxed: `announce` re-validates with a CAS, and the futex compares atomically.
        let w = word.load(Ordering::Relaxed);
        let Some(expected) = announce(w) else {
            // The word moved, or says we need not sleep while `ready` disagrees: normally a
            // race that settles at once; a peer scribbling on the word must not keep us
            // here past the deadline, nor on a CPU.
            if deadline.remaining().is_none() {
                return Err(Error::Timeout);
            }
            busy = busy.wrapping_add(1);
            #[cfg(not(loom))]
            if busy.is_multiple_of(64) {
                std::thread::yield_now();
            }
            primitive::spin_hint();
            continue;
        };
        busy = 0;
        if let Some(r) = ready()? {
            return Ok(r);
        }
        sleep(word, expected, deadline, None)?;
    }
}

/// Sets the WAITERS bit on `word` (seen as `w`) unless `still_blocked(w)` is false.
/// Returns the value to sleep on, or `None` to re-check at once.
pub(crate) fn announce(
    word: &AtomicU32,
    w: u32,
    still_blocked: impl Fn(u32) -> bool,
) -> Option<u32> {
    if !still_blocked(w) {
        return None;
    }
    if w & WAITERS != 0 {
        return Some(w);
    }
    // Relaxed: the waker's RMW on the same word either sees the bit or makes this CAS fail;
    // the futex re-compares the value in the kernel.
    word.compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
        .ok()
        .map(|_| w | WAITERS)
}
