//! [`ReentrantMutex`]: a robust, process-shared lock that the thread holding it may take
//! again (Python's `RLock`).
//!
//! The lock is owned by one thread of one process. `lock` blocks while another thread (of
//! any process) holds it, `try_lock` never blocks, `lock_timeout` gives up with
//! [`Error::Timeout`]; the owning thread re-entering only bumps a count, and the lock is
//! released when the last of its guards drops. It protects no data (a re-entered lock
//! cannot hand out `&mut`), so it guards whatever the processes agree it guards. If the
//! owning process dies holding it, `lock` reports [`Error::OwnerDied`] (leaving it free and
//! marked inconsistent) until somebody repairs: `lock_recover` hands over the guard in
//! [`LockError::OwnerDied`](crate::LockError::OwnerDied); repair what the lock protects and call
//! [`ReentrantMutexGuard::mark_consistent`]. A recovering lock released (by its last guard)
//! unrepaired becomes not recoverable: every later lock fails with
//! [`Error::NotRecoverable`]. Uncontended lock and unlock make no
//! system call.
//!
//! ```
//! use shmkit::ReentrantMutex;
//! # let name = shmkit::__private::test_name("doc-rlock");
//! let m = ReentrantMutex::create(&name)?;
//! // In another process: let m = ReentrantMutex::open(&name)?;
//! let outer = m.lock()?;
//! let inner = m.lock()?; // the same thread may take it again
//! drop(inner);
//! drop(outer); // released here
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! # Design
//! The process-level lock is a `raw_mutex::RawMutex` (owner = the process's liveness
//! token; dead owners detected through the kernel; `state` tells of a death). Beside it, in
//! shared memory, written only by the holder:
//!
//! | `owner_token` | `owner_thread` | `count` | meaning |
//! |---|---|---|---|
//! | `0` | `0` | `0` | not held by any thread (the raw word may still be taken, briefly) |
//! | `token` | `tid` | `n ≥ 1` | thread `tid` of process `token` holds it, `n` guards deep |
//!
//! A thread re-enters when `(owner_token, owner_thread)` is its own pair: only that thread
//! ever writes that pair, and it clears it before releasing the raw word, so it cannot
//! read a stale match. Thread ids are process-local numbers (never reused within a
//! process); the token tells processes apart, including a forked child from its parent.

use crate::primitive::{AtomicU32, AtomicU64, Ordering};
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use super::raw_mutex::{Acquired, RawMutex};
use super::wait::Deadline;
use crate::error::{plain, Error, LockResult, Result, Unrepaired};
use crate::object::{head_object, object_debug, Shared};
use crate::segment::Kind;

/// The deepest re-entry; more is taken as corruption.
const MAX_DEPTH: u32 = 1 << 30;

/// The shared state: the whole body.
#[derive(Debug)]
#[repr(C, align(128))]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
pub(crate) struct ReShared {
    /// The process-level robust lock.
    raw: RawMutex,
    /// The holding thread (process-local id), or 0.
    owner_thread: AtomicU64,
    /// The holding process's liveness token, or 0.
    owner_token: AtomicU32,
    /// How many guards the holding thread has; 0 when not held.
    count: AtomicU32,
}

#[cfg(not(loom))]
const _: () = assert!(size_of::<ReShared>() == 128);
const _: () = assert!(align_of::<ReShared>() == 128);

impl ReShared {
    /// Free: no holder, no level, consistent.
    fn new() -> ReShared {
        ReShared {
            raw: RawMutex::new(),
            owner_thread: AtomicU64::new(0),
            owner_token: AtomicU32::new(0),
            count: AtomicU32::new(0),
        }
    }
}

/// This thread's process-local id: nonzero, never reused within the process.
fn thread_id() -> u64 {
    // Process-local: a plain std atomic, also under loom.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    thread_local! {
        static ID: Cell<u64> = const { Cell::new(0) };
    }
    ID.with(|id| {
        if id.get() == 0 {
            // Relaxed: only uniqueness matters.
            id.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        id.get()
    })
}

/// A robust, process-shared re-entrant lock (Python's `RLock`), owned by one thread of
/// one process.
///
/// The owning thread may lock it again (each guard is one level; the last one dropped
/// releases it). It protects no data. An owner that dies holding it is reported to every
/// locker as [`Error::OwnerDied`] until [`ReentrantMutex::lock_recover`] repairs it; a
/// recovering lock released unrepaired (without [`ReentrantMutexGuard::mark_consistent`])
/// becomes [`Error::NotRecoverable`].
///
/// ```
/// # let name = shmkit::__private::test_name("doc-rlock-type");
/// let m = shmkit::ReentrantMutex::create(&name)?;
/// let outer = m.lock()?;
/// let inner = m.try_lock()?; // re-entered: never blocks in the owning thread
/// # drop((inner, outer));
/// # Ok::<(), shmkit::Error>(())
/// ```
// `Send` and `Sync` from `Shared`: the shared state is made of atomics only.
pub struct ReentrantMutex(Shared<ReShared>);

object_debug!(ReentrantMutex);

impl ReentrantMutex {
    head_object!("reentrant lock", Kind::ReentrantMutex, ReShared, len: 1);

    /// Locks, blocking while another thread holds the lock; re-enters at once if this
    /// thread holds it.
    ///
    /// If a previous owner died holding it and nothing has been repaired since, this is
    /// [`Error::OwnerDied`]: the lock is left free and marked inconsistent, so every locker
    /// is told until [`ReentrantMutex::lock_recover`] repairs it.
    #[inline]
    pub fn lock(&self) -> Result<ReentrantMutexGuard<'_>> {
        plain(self.lock_recover())
    }

    /// Locks if that is possible without waiting; otherwise `Error::WouldBlock`.
    pub fn try_lock(&self) -> Result<ReentrantMutexGuard<'_>> {
        plain(self.guard(self.acquire(None)))
    }

    /// Locks, waiting at most `timeout`; `Error::Timeout` if it could not.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ReentrantMutexGuard<'_>> {
        plain(self.lock_recover_timeout(timeout))
    }

    /// Locks to repair: like [`ReentrantMutex::lock`], but a dead owner's lock comes with
    /// the guard in [`LockError::OwnerDied`](crate::LockError::OwnerDied); repair what it protects and call
    /// [`ReentrantMutexGuard::mark_consistent`] (released without that, the lock becomes
    /// not recoverable).
    pub fn lock_recover(&self) -> LockResult<ReentrantMutexGuard<'_>> {
        self.guard(self.acquire(Some(Deadline::NEVER)))
    }

    /// [`ReentrantMutex::lock_recover`], waiting at most `timeout`.
    pub fn lock_recover_timeout(&self, timeout: Duration) -> LockResult<ReentrantMutexGuard<'_>> {
        self.guard(self.acquire(Some(Deadline::after(timeout))))
    }

    fn guard(&self, r: Result<Acquired>) -> LockResult<ReentrantMutexGuard<'_>> {
        let how = r?;
        let g = ReentrantMutexGuard {
            lock: self,
            _not_send: PhantomData,
        };
        how.result(g)
    }

    /// Takes the lock (or one more level of it); `None` for no waiting at all.
    fn acquire(&self, deadline: Option<Deadline>) -> Result<Acquired> {
        let me = self.segment().token()?;
        let tid = thread_id();
        let s = self.state();
        // Relaxed: only this thread ever writes the pair (me, tid), and it clears it before
        // releasing the raw lock, so program order alone makes a match current.
        if s.owner_token.load(Ordering::Relaxed) == me
            && s.owner_thread.load(Ordering::Relaxed) == tid
        {
            // Relaxed: we hold the lock; only the holder writes `count`.
            let n = s.count.load(Ordering::Relaxed);
            if n == 0 || n >= MAX_DEPTH {
                return Err(Error::corrupt(format!(
                    "re-entrant mutex count is {n} while this thread holds it"
                )));
            }
            s.count.store(n + 1, Ordering::Relaxed);
            return Ok(if s.raw.is_inconsistent() {
                Acquired::OwnerDied
            } else {
                Acquired::Clean
            });
        }
        let how = match deadline {
            Some(deadline) => s.raw.lock(self.segment(), deadline)?,
            None => s.raw.try_lock(self.segment())?,
        };
        // Relaxed: we hold the raw lock; these are read by other threads only to compare
        // with their own pair, and by the next holder after the raw lock's Release/Acquire.
        s.count.store(1, Ordering::Relaxed);
        s.owner_thread.store(tid, Ordering::Relaxed);
        s.owner_token.store(me, Ordering::Relaxed);
        Ok(how)
    }

    /// Drops one level; the last one releases the lock.
    /// Releases one level; the last level of an inconsistent lock makes it not recoverable
    /// unless `unrepaired` (then it stays inconsistent).
    fn release(&self, unrepaired: bool) {
        let s = self.state();
        // Relaxed: we hold the lock; only the holder writes `count`.
        let n = s.count.load(Ordering::Relaxed);
        if n > 1 && n < MAX_DEPTH {
            s.count.store(n - 1, Ordering::Relaxed);
            return;
        }
        // The last level (or a count a peer scribbled on: release rather than keep it).
        // Relaxed: published by the raw unlock's Release; clearing our pair before the
        // unlock is what makes the re-entry check sound (program order, same thread).
        s.owner_token.store(0, Ordering::Relaxed);
        s.owner_thread.store(0, Ordering::Relaxed);
        s.count.store(0, Ordering::Relaxed);
        if !unrepaired && s.raw.is_inconsistent() {
            s.raw.mark_not_recoverable();
        }
        s.raw.unlock();
    }
}

/// RAII guard of a [`ReentrantMutex`]: one level of the lock, held by this thread. The lock
/// is released when the last guard drops.
///
/// ```
/// # let name = shmkit::__private::test_name("doc-reguard");
/// let lock = shmkit::ReentrantMutex::create(&name)?;
/// let outer = lock.lock()?;
/// let inner = lock.lock()?; // the same thread re-enters
/// drop(inner);
/// drop(outer); // released here
/// assert!(lock.try_lock().is_ok());
/// # Ok::<(), shmkit::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ReentrantMutexGuard<'a> {
    lock: &'a ReentrantMutex,
    /// The lock belongs to this thread: guards stay on it.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard offers only `mark_consistent` and `is_inconsistent`, atomic
// operations on shared memory.
unsafe impl Sync for ReentrantMutexGuard<'_> {}

impl ReentrantMutexGuard<'_> {
    /// Marks what the lock protects consistent again after a previous owner died. Call it
    /// once that is repaired; without it, releasing the lock makes it not recoverable.
    pub fn mark_consistent(this: &Self) {
        this.lock.state().raw.mark_consistent();
    }

    /// Whether a previous owner died and the lock has not been marked consistent since.
    pub fn is_inconsistent(this: &Self) -> bool {
        this.lock.state().raw.is_inconsistent()
    }
}

impl Drop for ReentrantMutexGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.lock.release(false);
    }
}

impl Unrepaired for ReentrantMutexGuard<'_> {
    fn release_unrepaired(self) {
        let lock = self.lock;
        std::mem::forget(self);
        lock.release(true);
    }
}

impl fmt::Debug for ReentrantMutexGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReentrantMutexGuard")
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{assert_taken_for_another_thread, in_another_thread};

    #[test]
    #[cfg(not(loom))]
    fn the_shared_state_starts_all_zero() {
        crate::object::assert_zero_start(ReShared::new(), |_| ());
    }

    #[test]
    fn thread_ids_differ_between_threads_and_stay_put() {
        let a = thread_id();
        assert_ne!(a, 0);
        assert_eq!(a, thread_id());
        let b = std::thread::spawn(thread_id).join().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn another_thread_waits_until_the_last_level_is_released() {
        let m = ReentrantMutex::anonymous().unwrap();
        let g1 = m.lock().unwrap();
        let g2 = m.try_lock().unwrap();
        assert_taken_for_another_thread(|| m.try_lock(), |t| m.lock_timeout(t));
        drop(g1);
        in_another_thread(|| assert!(matches!(m.try_lock(), Err(Error::WouldBlock))));
        drop(g2);
        in_another_thread(|| drop(m.try_lock().unwrap()));
    }
}
