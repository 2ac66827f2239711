//! [`Condvar`]: a process-shared condition variable for use with a shmkit
//! [`Mutex`](crate::Mutex) (Python's `multiprocessing.Condition`).

use std::time::Duration;

use super::mutex::MutexGuard;
use super::wait::{self, Deadline, WAITERS};
use crate::error::{plain, Error, LockError, LockResult, Result};
use crate::object::{head_object, object_debug, Shared};
use crate::primitive::{AtomicU32, Ordering};
use crate::segment::Kind;

const SEQ_MASK: u32 = !WAITERS;

/// The shared state: one word on its own line.
///
/// | bits | meaning |
/// |---|---|
/// | 0..=30 | sequence: bumped by every notification that finds a sleeper |
/// | 31 | WAITERS: somebody may sleep; `notify_all` clears it |
#[derive(Debug)]
#[repr(C, align(128))]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
pub struct CondState {
    seq: AtomicU32,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<CondState>() == 128);

impl CondState {
    /// A condition variable nobody waits on.
    pub fn new() -> CondState {
        CondState {
            seq: AtomicU32::new(0),
        }
    }

    /// Step 1 of a wait, while the caller still holds the mutex: announce a waiter and
    /// return the value to wait on.
    pub fn prepare_wait(&self) -> u32 {
        // AcqRel: the read half pairs with notifiers' Release RMWs, the write half with
        // their loads (made after they took the mutex the caller is about to release).
        self.seq.fetch_or(WAITERS, Ordering::AcqRel) | WAITERS
    }

    /// Step 2, after releasing the mutex: sleep until the word moves on from `expected`.
    /// Returns whether the deadline passed first.
    pub(crate) fn wait_changed(&self, expected: u32, deadline: Deadline) -> Result<bool> {
        loop {
            match wait::sleep(&self.seq, expected, deadline, None) {
                Ok(_) => {
                    // Woken, or a slice ended: return if anything was notified since.
                    // Relaxed: only compared; the mutex orders the data.
                    if self.seq.load(Ordering::Relaxed) != expected {
                        return Ok(false);
                    }
                }
                Err(Error::Timeout) => return Ok(true),
                Err(e) => return Err(e),
            }
        }
    }

    /// Step 2 without a deadline (the in-process form, for the loom models).
    #[cfg_attr(not(loom), allow(dead_code))]
    pub fn wait_changed_blocking(&self, expected: u32) -> Result<()> {
        self.wait_changed(expected, Deadline::NEVER).map(drop)
    }

    /// Wakes one waiter (`all == false`) or every waiter.
    pub fn notify(&self, all: bool) {
        let seq = &self.seq;
        // Acquire: pairs with the waiters' AcqRel `fetch_or`.
        let mut w = seq.load(Ordering::Acquire);
        loop {
            if w & WAITERS == 0 {
                return; // nobody announced itself
            }
            let next = w.wrapping_add(1) & SEQ_MASK;
            // notify_all clears WAITERS (everybody is woken); notify_one keeps it for the
            // sleepers it leaves asleep.
            let new = if all { next } else { next | WAITERS };
            // Release: pairs with the waiters' loads of the word after waking.
            match seq.compare_exchange_weak(w, new, Ordering::Release, Ordering::Acquire) {
                Ok(_) => break,
                Err(cur) => w = cur,
            }
        }
        wait::wake(seq, if all { u32::MAX } else { 1 });
    }
}

impl Default for CondState {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a timed wait returned because its timeout elapsed.
///
/// ```
/// use std::time::Duration;
/// # let (m, c) = (shmkit::__private::test_name("doc-wtr-m"), shmkit::__private::test_name("doc-wtr-c"));
/// let ready = shmkit::Mutex::<u32>::create(&m, 0)?;
/// let cv = shmkit::Condvar::create(&c)?;
/// let (g, res) = cv.wait_timeout(ready.lock()?, Duration::from_millis(10))?;
/// assert!(res.timed_out()); // nobody notified
/// assert_eq!(*g, 0);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// Whether the wait timed out.
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

/// A process-shared condition variable for use with a shmkit [`Mutex`](crate::Mutex)
/// (Python's `multiprocessing.Condition`).
///
/// Built on a futex sequence word, not on `pthread_cond_t`: a process that dies inside a
/// pthread condition variable can wedge every other user, while here a waiter holds no
/// shared state at all while it sleeps, and a notifier only bumps a counter.
///
/// `wait` releases the mutex, sleeps until notified, and locks the mutex again before it
/// returns. As with `std::sync::Condvar`, wake-ups can be spurious (a waiter also
/// re-checks the sequence word every 64 ms, so that a notifier killed between its two
/// steps delays it by at most that long): check your condition in a loop, or use
/// [`Condvar::wait_while`]. If a holder of the mutex died while we waited, `wait` returns
/// [`Error::OwnerDied`] (the mutex left free and its data marked inconsistent), exactly as
/// `Mutex::lock` does. So repair a dead holder's data before waiting: a guard from
/// `lock_recover` that is not yet marked consistent comes back from a wait as `OwnerDied`,
/// without the guard.
///
/// ```
/// use shmkit::{Condvar, Mutex};
/// # let (m, c) = (shmkit::__private::test_name("doc-cv-m"), shmkit::__private::test_name("doc-cv-c"));
/// let ready = Mutex::<u32>::create(&m, 0)?;
/// let cv = Condvar::create(&c)?;
/// // Another process: *ready.lock()? = 1; cv.notify_all();
/// # *ready.lock()? = 1; cv.notify_all();
/// let g = cv.wait_while(ready.lock()?, |r| *r == 0)?;
/// assert_eq!(*g, 1);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Condvar(Shared<CondState>);

object_debug!(Condvar);

impl Condvar {
    head_object!("condition variable", Kind::Condvar, CondState, len: 0);

    /// Releases the guard's mutex, waits for a notification, and locks it again.
    pub fn wait<'a, T: ?Sized>(&self, guard: MutexGuard<'a, T>) -> Result<MutexGuard<'a, T>> {
        Ok(plain(self.wait_inner(guard, Deadline::NEVER, false))?.0)
    }

    /// Waits while `condition` holds, re-checking it under the lock after every wake-up.
    pub fn wait_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> Result<MutexGuard<'a, T>> {
        while condition(&mut guard) {
            guard = self.wait(guard)?;
        }
        Ok(guard)
    }

    /// Like [`Condvar::wait`], giving up waiting for a notification after `timeout`.
    ///
    /// As with `std::sync::Condvar::wait_timeout`, the timeout covers the wait for a
    /// notification, not the re-locking of the mutex: the call returns only once it holds
    /// the mutex again (the guard comes back locked), so it can return later than
    /// `timeout` when another holder keeps the mutex locked past it. Then
    /// [`WaitTimeoutResult::timed_out`] is true if no notification came within `timeout`.
    /// To bound the whole call, re-locking included, use [`Condvar::wait_timeout_bounded`].
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> Result<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        plain(self.wait_inner(guard, Deadline::after(timeout), false))
    }

    /// Like [`Condvar::wait_timeout`], but `timeout` bounds the whole call, re-locking the
    /// mutex included: if the mutex cannot be locked again by then (another holder keeps
    /// it), the call gives up with [`Error::Timeout`], *without* the mutex (the guard is
    /// consumed, the mutex is not held and not unlocked by this call; lock it again to
    /// go on). Otherwise it returns as `wait_timeout` does (a dead owner found while
    /// re-locking is [`Error::OwnerDied`], the mutex left free). The re-lock
    /// makes one last attempt at the deadline, which also takes over a dead owner's lock.
    pub fn wait_timeout_bounded<'a, T: ?Sized>(
        &self,
        guard: MutexGuard<'a, T>,
        timeout: Duration,
    ) -> Result<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        plain(self.wait_inner(guard, Deadline::after(timeout), true))
    }

    /// Like [`Condvar::wait_while`], giving up after `timeout` (then the condition may still
    /// hold). As with [`Condvar::wait_timeout`], the timeout does not cover re-locking the
    /// mutex: the call returns holding it.
    pub fn wait_timeout_while<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        timeout: Duration,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> Result<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        let deadline = Deadline::after(timeout);
        while condition(&mut guard) {
            let (g, t) = plain(self.wait_inner(guard, deadline, false))?;
            guard = g;
            if t.timed_out() {
                let still = condition(&mut guard);
                return Ok((guard, WaitTimeoutResult(still)));
            }
        }
        Ok((guard, WaitTimeoutResult(false)))
    }

    /// Waits until `deadline`, then re-locks: until `deadline` too if `bounded`, else for as
    /// long as it takes.
    fn wait_inner<'a, T: ?Sized>(
        &self,
        mut guard: MutexGuard<'a, T>,
        deadline: Deadline,
        bounded: bool,
    ) -> LockResult<(MutexGuard<'a, T>, WaitTimeoutResult)> {
        // Announce ourselves while we still hold the mutex: a notifier that changes the
        // condition under the mutex after we release it sees WAITERS and wakes us.
        let expected = self.state().prepare_wait();
        MutexGuard::unlock_for_wait(&guard);
        let timed_out = match self.state().wait_changed(expected, deadline) {
            Ok(t) => t,
            Err(e) => return Err(self.relock_failed(guard, e)),
        };
        let relock_by = if bounded { deadline } else { Deadline::NEVER };
        match MutexGuard::relock(&mut guard, relock_by) {
            Ok(false) => Ok((guard, WaitTimeoutResult(timed_out))),
            Ok(true) => Err(LockError::OwnerDied((guard, WaitTimeoutResult(timed_out)))),
            Err(e) => Err(self.relock_failed(guard, e)),
        }
    }

    /// The mutex could not be taken again: the guard must not unlock on drop.
    fn relock_failed<G, T: ?Sized>(&self, guard: MutexGuard<'_, T>, e: Error) -> LockError<G> {
        std::mem::forget(guard);
        LockError::Error(e)
    }

    /// Wakes one waiter (or, rarely, more: see the module docs). No syscall if nobody waits.
    pub fn notify_one(&self) {
        self.notify(false);
    }

    /// Wakes every waiter. No syscall if nobody waits.
    pub fn notify_all(&self) {
        self.notify(true);
    }

    fn notify(&self, all: bool) {
        self.state().notify(all);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_state_starts_all_zero() {
        crate::object::assert_zero_start(CondState::new(), |_| ());
    }
}
