//! [`Event`]: a process-shared flag that processes wait for (Python's

use std::time::Duration;

use super::wait::{self, announce, Bells, Deadline, WAITERS};
use crate::error::{Error, Result};
use crate::object::{head_object, object_debug, Shared};
use crate::primitive::{AtomicU32, Ordering};
use crate::segment::Kind;

const SET: u32 = 1;
/// Bits 1..=30 count the transitions from unset to set.
const GEN_ONE: u32 = 2;
const GEN_MASK: u32 = !(SET | WAITERS);

/// The shared state: one word and its async waiters' doorbells, on their own line.
///
/// | bits | meaning |
/// |---|---|
/// | 0 | SET |
/// | 1..=30 | generation: bumped by every `set` of an unset event |
/// | 31 | WAITERS: somebody may sleep; `set` clears it and wakes all |
#[derive(Debug)]
#[repr(C, align(128))]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
pub struct EventState {
    word: AtomicU32,
    bells: Bells,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<EventState>() == 128);

impl EventState {
    /// An unset event.
    pub fn new() -> EventState {
        EventState {
            word: AtomicU32::new(0),
            bells: Bells::new(),
        }
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.set_with(crate::os::doorbell::ring);
    }

    /// [`set`](Self::set), ringing doorbells with `ring` (the loom models record them).
    fn set_with(&self, ring: impl FnMut(u64)) {
        let word = &self.word;
        // Relaxed: a hint for the CAS.
        let mut w = word.load(Ordering::Relaxed);
        loop {
            if w & SET != 0 {
                return; // already set: nobody sleeps on a set event
            }
            let new = SET | (w.wrapping_add(GEN_ONE) & GEN_MASK);
            // Release: publishes what we wrote before `set` to the waiters' Acquire loads.
            match word.compare_exchange_weak(w, new, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(cur) => w = cur,
            }
        }
        if w & WAITERS != 0 {
            wait::wake_word(word, &self.bells, ring);
        }
    }

    /// Resets the flag.
    pub fn clear(&self) {
        // Relaxed: clearing publishes nothing; waiters keep their WAITERS bit.
        self.word.fetch_and(!SET, Ordering::Relaxed);
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        // Acquire: pairs with the Release CAS in `set`.
        self.word.load(Ordering::Acquire) & SET != 0
    }

    /// Waits until the flag is set (or was set since we started) or the deadline passes.
    pub(crate) fn wait_until(&self, deadline: Deadline) -> Result<()> {
        let word = &self.word;
        // Acquire: pairs with the Release CAS in `set`.
        let start = word.load(Ordering::Acquire);
        let fired = |w: u32| w & SET != 0 || (w & GEN_MASK) != (start & GEN_MASK);
        if fired(start) {
            return Ok(());
        }
        wait::wait_for(
            word,
            deadline,
            // Acquire: as above.
            || Ok(fired(word.load(Ordering::Acquire)).then_some(())),
            |w| announce(word, w, |w| !fired(w)),
        )
    }

    /// For an async wait (`aio`): the word's generation now, to pass to
    /// [`fired_since`](Self::fired_since).
    #[cfg_attr(not(any(feature = "tokio", loom)), allow(dead_code))]
    pub fn generation(&self) -> u32 {
        // Acquire: pairs with the Release CAS in `set`.
        self.word.load(Ordering::Acquire)
    }

    /// Whether the flag is set, or was set since `start` (a [`generation`](Self::generation)).
    #[cfg_attr(not(any(feature = "tokio", loom)), allow(dead_code))]
    pub(crate) fn fired_since(&self, start: u32) -> bool {
        // Acquire: pairs with the Release CAS in `set`.
        let w = self.word.load(Ordering::Acquire);
        w & SET != 0 || (w & GEN_MASK) != (start & GEN_MASK)
    }

    /// Registers doorbell `bell` and announces an async waiter (see `wait::arm`).
    /// The word and its doorbells, for an async wait (see `wait::arm`).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn async_parts(&self) -> (&AtomicU32, &Bells) {
        (&self.word, &self.bells)
    }

    /// The async waiter's arming (`aio`), for the loom models: registers doorbell `id`,
    /// announces itself and re-checks; whether the flag fired since `start` (a
    /// [`generation`](Self::generation)).
    #[cfg(loom)]
    pub fn arm_and_check(&self, id: u64, start: u32) -> bool {
        wait::arm(&self.word, &self.bells, id).unwrap();
        self.fired_since(start)
    }

    /// `set`, recording the doorbells it rings with `ring` (for the loom models).
    #[cfg(loom)]
    pub fn set_recording(&self, ring: impl FnMut(u64)) {
        self.set_with(ring);
    }

    /// Waits until the flag is set (the in-process form, for the loom models).
    #[cfg_attr(not(loom), allow(dead_code))]
    pub fn wait_blocking(&self) -> Result<()> {
        self.wait_until(Deadline::NEVER)
    }
}

impl Default for EventState {
    fn default() -> Self {
        Self::new()
    }
}

/// A process-shared event flag.
///
/// [`Event`]: a process-shared flag that processes wait for (Python's
/// `multiprocessing.Event`).
///
/// `set` sets the flag and wakes every waiter in every process (one syscall, and only if
/// somebody sleeps); `clear` resets it; `wait` blocks until the flag is set;
/// `wait_timeout` gives up after a duration and says whether the flag was set. A waiter
/// that was waiting when `set` ran returns `true` even if the flag is cleared again before
/// it wakes up, as in Python.
///
/// ```
/// use shmkit::Event;
/// # let name = shmkit::__private::test_name("doc-event");
/// let ready = Event::create(&name)?;
/// // In other processes: Event::open(&name)?.wait()?;
/// assert!(!ready.wait_timeout(std::time::Duration::from_millis(1))?);
/// ready.set();
/// assert!(ready.is_set());
/// ready.wait()?;
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Event(Shared<EventState>);

object_debug!(Event, is_set);

impl Event {
    head_object!("event", Kind::Event, EventState, len: 0);

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.state().set();
    }

    /// Resets the flag.
    pub fn clear(&self) {
        self.state().clear();
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> bool {
        self.state().is_set()
    }

    /// Blocks until the flag is set.
    pub fn wait(&self) -> Result<()> {
        self.state().wait_until(Deadline::NEVER)
    }

    /// Blocks until the flag is set or `timeout` passes; returns whether it was set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        match self.state().wait_until(Deadline::after(timeout)) {
            Ok(()) => Ok(true),
            Err(Error::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_state_starts_all_zero() {
        crate::object::assert_zero_start(EventState::new(), |_| ());
    }
}
