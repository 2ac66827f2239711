//! The one place where shmkit blocks: spin briefly, then sleep on a futex, always with an
//! optional deadline on the monotonic clock.
//!
//! Every blocking primitive follows the same shape: check its condition, spin a little
//! (a peer that answers within a few microseconds never costs a syscall), then announce
//! itself as a sleeper in the shared word and call [`sleep`]. The waking side makes the
//! wake syscall only when a sleeper announced itself, so the uncontended paths make no
//! syscalls at all.

use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::os;

/// How many times a waiter re-checks its condition before it sleeps.
pub(crate) const SPIN_LIMIT: u32 = 200;

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

/// Sleeps while `*word == expected`, at most `slice` (if given) and never past `deadline`.
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
    let timeout = match (left, slice) {
        (Some(l), Some(s)) => Some(l.min(s)),
        (l, s) => l.or(s),
    };
    match os::futex_wait(word, expected, timeout) {
        os::FutexWait::Woken => Ok(true),
        os::FutexWait::TimedOut => {
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
    os::futex_wake(word, n);
}
