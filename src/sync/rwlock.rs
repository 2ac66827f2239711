//! [`RwLock<T>`]: a robust, process-shared reader-writer lock protecting a `T`.
//!
//! Any number of readers (threads of any processes) may hold the lock at once, or one
//! writer. `read`/`write` block (spinning briefly, then sleeping on a futex), the `try_`
//! forms never block, the `_timeout` forms give up with [`Error::Timeout`]. Uncontended,
//! a read or a write and its release are a few atomic operations and no system call; the
//! wake syscall is made only when somebody sleeps. A writer that is waiting keeps new
//! readers out, so a stream of readers cannot starve writers. If a writer dies holding the
//! lock, every `read` and `write` reports [`Error::OwnerDied`] (leaving the lock free and
//! the data marked inconsistent) until a writer repairs it: `write_recover` hands over the
//! guard in [`LockError::OwnerDied`](crate::LockError::OwnerDied), the writer repairs the data and calls
//! [`RwLockWriteGuard::mark_consistent`] (a recovering write guard dropped unrepaired makes
//! the lock not recoverable: every later `read` or `write` fails with
//! [`Error::NotRecoverable`]); `read_recover` lets a reader look at what was left. A reader that dies holding a
//! read lock leaves the data consistent: waiting writers notice the death (a few
//! milliseconds of their time) and take its place back. At most [`RwLock::READER_SLOTS`]
//! processes hold read locks at the same time; a reader of a further process waits for a
//! slot. As with `std`'s lock, a thread that holds a read guard and asks for another one
//! (or for a write guard) while a writer waits deadlocks; use the timeout forms where that
//! could happen.
//!
//! ```
//! use shmkit::RwLock;
//! # let name = shmkit::__private::test_name("doc-rwlock");
//! let lock = RwLock::<[u64; 2]>::create(&name, [0, 0])?;
//! // In another process: let lock = RwLock::<[u64; 2]>::open(&name)?;
//! {
//!     let mut w = lock.write()?;
//!     w[0] += 1;
//!     w[1] += 1;
//! }
//! let (r1, r2) = (lock.read()?, lock.read()?); // readers share the lock
//! assert_eq!(*r1, [1, 1]);
//! assert_eq!(*r1, *r2);
//! # drop((r1, r2));
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! # Design
//! The body of the segment is the shared state of the reader-writer protocol (a head line
//! and a table of reader slots, see `raw_rwlock`) followed by the `T`. This file holds the
//! typed lock, its constructors and its guards.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use bytemuck::Pod;

use super::raw_mutex::Acquired;
use super::raw_rwlock::{RawRwLock, RwShared, READER_SLOTS};
use super::wait::Deadline;
use crate::error::{plain, LockResult, Result, Unrepaired};
use crate::object::{constructors, object_debug, At, Body, Head};
use crate::segment::{Kind, Segment};

/// A robust, process-shared reader-writer lock protecting a `T`: many readers or one
/// writer, in any processes.
///
/// A waiting writer keeps new readers out. A writer that dies holding the lock is reported
/// to every locker as [`Error::OwnerDied`](crate::Error::OwnerDied) until a writer repairs
/// the data through [`RwLock::write_recover`] and calls
/// [`RwLockWriteGuard::mark_consistent`] (a recovering write guard dropped unrepaired makes
/// the lock [`Error::NotRecoverable`](crate::Error::NotRecoverable)); readers that die holding read locks are reclaimed by
/// waiting writers. At most [`RwLock::READER_SLOTS`] processes read at the same time.
/// Uncontended locking makes no system call.
///
/// ```
/// # let name = shmkit::__private::test_name("doc-rwlock-type");
/// let lock = shmkit::RwLock::<u64>::create(&name, 1)?;
/// *lock.write()? += 1;
/// assert_eq!(*lock.read()?, 2);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct RwLock<T: Pod> {
    /// The shared state (head and reader slots), then the `T`.
    body: Body<RwShared, T>,
    /// The slot this process claimed last: a process-local hint, always `< READER_SLOTS`.
    hint: AtomicUsize,
}

// SAFETY: the body's pointers point into the mapping it owns; the shared state is atomics;
// the data is handed out only under the lock, and `T: Send` values may move between threads.
unsafe impl<T: Pod + Send> Send for RwLock<T> {}
// SAFETY: as above; readers on several threads share `&T`, hence `T: Sync`.
unsafe impl<T: Pod + Send + Sync> Sync for RwLock<T> {}

object_debug!(RwLock<T>);

impl<T: Pod> RwLock<T> {
    /// How many processes can hold read locks at the same time; a reader of a further
    /// process waits until one of them releases its last read guard.
    pub const READER_SLOTS: usize = READER_SLOTS;

    constructors!("reader-writer lock", init: T, open: T::zeroed());

    fn build(at: At<'_>, init: T) -> Result<Self> {
        let body = Body::one(at, Kind::RwLock, Head::zero(RwShared::new), init)?;
        Ok(RwLock {
            body,
            hint: AtomicUsize::new(0),
        })
    }

    /// The reader-writer protocol on this lock's shared state.
    fn raw(&self) -> RawRwLock<'_> {
        RawRwLock::new(self.body.head(), self.body.segment(), &self.hint)
    }

    /// Locks for reading, blocking while a writer holds or waits for the lock.
    ///
    /// If a writer died holding the lock and no writer has repaired the data since, this is
    /// [`Error::OwnerDied`](crate::Error::OwnerDied) (the read lock is not kept): readers
    /// cannot repair; a writer does, with [`RwLock::write_recover`].
    #[inline]
    pub fn read(&self) -> Result<RwLockReadGuard<'_, T>> {
        plain(self.read_recover())
    }

    /// Locks for reading if that is possible without waiting; otherwise
    /// `Error::WouldBlock`.
    pub fn try_read(&self) -> Result<RwLockReadGuard<'_, T>> {
        plain(self.read_guard(self.raw().try_lock_read()))
    }

    /// Locks for reading, waiting at most `timeout`; `Error::Timeout` if it could not.
    pub fn read_timeout(&self, timeout: Duration) -> Result<RwLockReadGuard<'_, T>> {
        plain(self.read_recover_timeout(timeout))
    }

    /// Locks for reading even if a writer died: the guard comes in
    /// [`LockError::OwnerDied`](crate::LockError::OwnerDied) while the data is unrepaired, to look at what the dead writer
    /// left (a reader cannot repair it; [`RwLock::write_recover`] does).
    pub fn read_recover(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        self.read_guard(self.raw().lock_read(Deadline::NEVER))
    }

    /// [`RwLock::read_recover`], waiting at most `timeout`.
    pub fn read_recover_timeout(&self, timeout: Duration) -> LockResult<RwLockReadGuard<'_, T>> {
        self.read_guard(self.raw().lock_read(Deadline::after(timeout)))
    }

    /// Locks for writing, blocking until no reader or writer holds the lock.
    ///
    /// If a writer died holding the lock and nobody has repaired the data since, this is
    /// [`Error::OwnerDied`](crate::Error::OwnerDied): the lock is left free and the data
    /// marked inconsistent, so every locker is told until [`RwLock::write_recover`]
    /// repairs it.
    #[inline]
    pub fn write(&self) -> Result<RwLockWriteGuard<'_, T>> {
        plain(self.write_recover())
    }

    /// Locks for writing if that is possible without waiting; otherwise
    /// `Error::WouldBlock`. Dead readers and a dead writer are detected (one `fcntl` each).
    pub fn try_write(&self) -> Result<RwLockWriteGuard<'_, T>> {
        plain(self.write_guard(self.raw().try_lock_write()))
    }

    /// Locks for writing, waiting at most `timeout`; `Error::Timeout` if it could not.
    pub fn write_timeout(&self, timeout: Duration) -> Result<RwLockWriteGuard<'_, T>> {
        plain(self.write_recover_timeout(timeout))
    }

    /// Locks for writing to repair: like [`RwLock::write`], but if a writer died and nobody
    /// has repaired the data since, the caller gets the guard in [`LockError::OwnerDied`](crate::LockError::OwnerDied),
    /// repairs the data and calls [`RwLockWriteGuard::mark_consistent`]. A guard dropped
    /// without that makes the lock not recoverable.
    pub fn write_recover(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.write_guard(self.raw().lock_write(Deadline::NEVER))
    }

    /// [`RwLock::write_recover`], waiting at most `timeout`.
    pub fn write_recover_timeout(&self, timeout: Duration) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.write_guard(self.raw().lock_write(Deadline::after(timeout)))
    }

    /// The segment the lock lives in.
    pub fn segment(&self) -> &Segment {
        self.body.segment()
    }

    fn read_guard(&self, r: Result<(usize, u32, Acquired)>) -> LockResult<RwLockReadGuard<'_, T>> {
        let (slot, token, how) = r?;
        let g = RwLockReadGuard {
            lock: self,
            slot,
            token,
            _not_send: PhantomData,
        };
        how.result(g)
    }

    fn write_guard(&self, r: Result<Acquired>) -> LockResult<RwLockWriteGuard<'_, T>> {
        let how = r?;
        let g = RwLockWriteGuard {
            lock: self,
            owner_died: how == Acquired::OwnerDied,
            _not_send: PhantomData,
        };
        how.result(g)
    }
}

/// RAII guard of a read lock on an [`RwLock`]; derefs to the protected data, in place in
/// shared memory. Releases the read lock on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockReadGuard<'a, T: Pod> {
    lock: &'a RwLock<T>,
    slot: usize,
    token: u32,
    /// Guards stay on the thread that took them, as std's do.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared read guard only hands out `&T`.
unsafe impl<T: Pod + Sync> Sync for RwLockReadGuard<'_, T> {}

impl<T: Pod> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds a read lock: no writer writes the data meanwhile (a
        // cooperating peer writes only under the write lock); the pointer is aligned and in
        // the live mapping; any bytes are a valid `T: Pod`.
        unsafe { &*self.lock.body.ptr() }
    }
}

impl<T: Pod> Drop for RwLockReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.raw().release_slot(self.slot, self.token);
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// RAII guard of the write lock on an [`RwLock`]; derefs (mutably) to the protected data,
/// in place in shared memory. Releases the lock on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: Pod> {
    lock: &'a RwLock<T>,
    owner_died: bool,
    /// Guards stay on the thread that took them, as std's do.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared write guard only hands out `&T`.
unsafe impl<T: Pod + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<T: Pod> RwLockWriteGuard<'_, T> {
    /// Marks the protected data consistent again after a writer died. Call it once the data
    /// is repaired; without it, dropping the guard makes the lock not recoverable.
    pub fn mark_consistent(this: &Self) {
        this.lock.raw().writer().mark_consistent();
    }

    /// Whether this guard was obtained after a writer died and the data has not been
    /// marked consistent since.
    pub fn is_inconsistent(this: &Self) -> bool {
        this.owner_died && this.lock.raw().writer().is_inconsistent()
    }
}

impl<T: Pod> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the write lock: no other guard exists, and cooperating
        // peers do not touch the data without a lock; aligned, in the live mapping, Pod.
        unsafe { &*self.lock.body.ptr() }
    }
}

impl<T: Pod> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`; `&mut self` makes the access unique in this process.
        unsafe { &mut *self.lock.body.ptr() }
    }
}

impl<T: Pod> Drop for RwLockWriteGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        let raw = self.lock.raw();
        if Self::is_inconsistent(self) {
            raw.writer().mark_not_recoverable();
        }
        raw.unlock_write();
    }
}

impl<T: Pod> Unrepaired for RwLockReadGuard<'_, T> {
    /// A reader changes nothing: releasing its lock leaves the state as it is.
    fn release_unrepaired(self) {}
}

impl<T: Pod> Unrepaired for RwLockWriteGuard<'_, T> {
    fn release_unrepaired(self) {
        let raw = self.lock.raw();
        std::mem::forget(self);
        raw.unlock_write();
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::sync::assert_taken_for_another_thread;

    #[test]
    fn data_follows_the_shared_state_aligned() {
        use crate::object::data_offset;
        assert_eq!(data_offset::<RwShared, u8>(), size_of::<RwShared>());
        assert_eq!(data_offset::<RwShared, u64>(), size_of::<RwShared>());
        #[repr(C, align(128))]
        #[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
        struct Line([u8; 128]);
        assert_eq!(data_offset::<RwShared, Line>() % 128, 0);
        // A type aligned beyond what a segment's body can honour is refused.
        #[repr(C, align(4096))]
        #[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
        struct Page([u8; 4096]);
        assert!(matches!(
            RwLock::<Page>::anonymous(Page([0; 4096])),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn readers_share_and_writers_exclude_between_threads() {
        let l = RwLock::<u64>::anonymous(7).unwrap();
        let (a, b) = (l.read().unwrap(), l.try_read().unwrap());
        assert_eq!((*a, *b), (7, 7));
        assert!(matches!(l.try_write(), Err(Error::WouldBlock)));
        drop((a, b));
        let mut w = l.try_write().unwrap();
        *w += 1;
        assert_taken_for_another_thread(|| l.try_read(), |t| l.read_timeout(t));
        drop(w);
        assert_eq!(*l.read().unwrap(), 8);
    }
}
