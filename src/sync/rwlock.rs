//! [`RwLock<T>`]: a robust, process-shared reader-writer lock protecting a `T`.
//!
//! Any number of readers (threads of any processes) may hold the lock at once, or one
//! writer. `read`/`write` block (spinning briefly, then sleeping on a futex), the `try_`
//! forms never block, the `_timeout` forms give up with [`Error::Timeout`]. Uncontended,
//! a read or a write and its release are a few atomic operations and no system call; the
//! wake syscall is made only when somebody sleeps. A writer that is waiting keeps new
//! readers out, so a stream of readers cannot starve writers. If a writer dies holding the
//! lock, the next locker, reader or writer, gets [`LockError::OwnerDied`] carrying its
//! guard: a writer repairs the data and calls [`RwLockWriteGuard::mark_consistent`] (a write
//! guard dropped unrepaired makes the lock not recoverable: every later `read` or `write`
//! fails with [`Error::NotRecoverable`]); a reader cannot repair, so every read reports
//! `OwnerDied` until a writer has marked the data consistent. A reader that dies holding a
//! read lock leaves the data consistent: waiting writers notice the death (a few
//! milliseconds of their time) and take its place back. At most [`RwLock::READER_SLOTS`]
//! processes hold read locks at the same time; a reader of a further process waits for a
//! slot. As with `std`'s lock, a thread that holds a read guard and asks for another one
//! (or for a write guard) while a writer waits deadlocks; use the timeout forms where that
//! could happen.
//!
//! ```
//! use shmkit::RwLock;
//! # let name = format!("doc-rwlock-{}", std::process::id());
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
use std::ptr::NonNull;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use bytemuck::Pod;

use super::raw_mutex::Acquired;
use super::raw_rwlock::{RawRwLock, RwShared, READER_SLOTS};
use super::wait::Deadline;
use crate::error::{Error, LockError, LockResult, Result};
use crate::segment::{CreationMode, Kind, Layout, Options, Segment};

/// Offset of the `T` in the body: after the shared state, aligned for `T`.
const fn data_offset<T>() -> usize {
    size_of::<RwShared>().next_multiple_of(align_of::<T>())
}

fn body_len<T>(cap: u64) -> Option<u64> {
    (size_of::<T>() as u64)
        .checked_mul(cap)?
        .checked_add(data_offset::<T>() as u64)
}

/// A robust, process-shared reader-writer lock protecting a `T`: many readers or one
/// writer, in any processes.
///
/// A waiting writer keeps new readers out. A writer that dies holding the lock is reported
/// to the next locker as [`LockError::OwnerDied`] (readers keep being told until a writer
/// calls [`RwLockWriteGuard::mark_consistent`]; a write guard dropped unrepaired makes the
/// lock [`Error::NotRecoverable`]); readers that die holding read locks are reclaimed by
/// waiting writers. At most [`RwLock::READER_SLOTS`] processes read at the same time.
/// Uncontended locking makes no system call.
///
/// ```
/// # let name = format!("doc-rwlock-type-{}", std::process::id());
/// let lock = shmkit::RwLock::<u64>::create(&name, 1)?;
/// *lock.write()? += 1;
/// assert_eq!(*lock.read()?, 2);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct RwLock<T: Pod> {
    seg: Segment,
    shared: NonNull<RwShared>,
    data: NonNull<T>,
    /// The slot this process claimed last: a process-local hint, always `< READER_SLOTS`.
    hint: AtomicUsize,
}

// SAFETY: the pointers point into the mapping owned by `seg`; the shared state is atomics;
// the data is handed out only under the lock, and `T: Send` values may move between threads.
unsafe impl<T: Pod + Send> Send for RwLock<T> {}
// SAFETY: as above; readers on several threads share `&T`, hence `T: Sync`.
unsafe impl<T: Pod + Send + Sync> Sync for RwLock<T> {}

impl<T: Pod> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RwLock")
            .field("segment", &self.seg)
            .finish_non_exhaustive()
    }
}

impl<T: Pod> RwLock<T> {
    /// How many processes can hold read locks at the same time; a reader of a further
    /// process waits until one of them releases its last read guard.
    pub const READER_SLOTS: usize = READER_SLOTS;

    /// Creates the lock `name` holding `init`; fails if the name exists.
    pub fn create(name: &str, init: T) -> Result<Self> {
        Self::with_options(name, CreationMode::Create, init, &Options::new())
    }

    /// Opens the existing lock `name`, checking that it holds a `T`.
    pub fn open(name: &str) -> Result<Self> {
        Self::with_options(name, CreationMode::Open, T::zeroed(), &Options::new())
    }

    /// Opens the lock `name`, or creates it holding `init`. Of racing processes exactly one
    /// creates it; [`RwLock::is_creator`] tells which.
    pub fn open_or_create(name: &str, init: T) -> Result<Self> {
        Self::with_options(name, CreationMode::OpenOrCreate, init, &Options::new())
    }

    /// Creates an anonymous lock holding `init`, shared with children created by `fork`.
    pub fn anonymous(init: T) -> Result<Self> {
        Self::build(None, CreationMode::Create, init, &Options::new())
    }

    /// Creates and/or opens as `mode` says, with `opts` (mode bits, keep, trust).
    pub fn with_options(name: &str, mode: CreationMode, init: T, opts: &Options) -> Result<Self> {
        Self::build(Some(name), mode, init, opts)
    }

    fn build(name: Option<&str>, mode: CreationMode, init: T, opts: &Options) -> Result<Self> {
        if align_of::<T>() > 4096 {
            return Err(Error::InvalidArgument(
                "types aligned to more than a page are not supported".into(),
            ));
        }
        let layout = Layout {
            kind: Kind::RwLock,
            elem_size: size_of::<T>() as u64,
            elem_align: align_of::<T>() as u64,
            capacity: 1,
            body_len: body_len::<T>,
        };
        let init_body = |seg: &Segment| {
            let (shared, data) = Self::pointers(seg);
            // SAFETY: the body is 128-aligned and `data_offset + size_of::<T>()` bytes long
            // (capacity 1, `body_len`), `data_offset` is aligned for `T`; nobody else sees
            // the segment before it is published.
            unsafe {
                shared.as_ptr().write(RwShared::new());
                data.as_ptr().write(init);
            }
            Ok(())
        };
        let seg = match name {
            Some(name) => Segment::named(name, mode, layout, opts, init_body)?,
            None => Segment::anon(layout, init_body)?,
        };
        if seg.capacity() != 1 {
            return Err(Error::corrupt(
                "an rwlock segment must hold exactly one value",
            ));
        }
        let (shared, data) = Self::pointers(&seg);
        Ok(RwLock {
            seg,
            shared,
            data,
            hint: AtomicUsize::new(0),
        })
    }

    /// Pointers to the shared state and the data. Valid to use only once the capacity is
    /// known to be 1 (then `validate` has checked the body length against `body_len`).
    fn pointers(seg: &Segment) -> (NonNull<RwShared>, NonNull<T>) {
        let base = seg.as_ptr();
        // `wrapping_add`: computing the address needs no bound; it is dereferenced only
        // once the body is known to be long enough.
        let data = base.wrapping_add(data_offset::<T>()) as *mut T;
        (
            NonNull::new(base as *mut RwShared).expect("mapping is not null"),
            NonNull::new(data).expect("mapping is not null"),
        )
    }

    /// The reader-writer protocol on this lock's shared state.
    fn raw(&self) -> RawRwLock<'_> {
        // SAFETY: points into the live mapping, initialised by the creator, made of atomics
        // only, so shared references are sound whatever peers do.
        let shared = unsafe { self.shared.as_ref() };
        RawRwLock::new(shared, &self.seg, &self.hint)
    }

    /// Locks for reading, blocking while a writer holds or waits for the lock.
    ///
    /// `Err(LockError::OwnerDied(guard))` means a writer died holding the lock and no
    /// writer has marked the data consistent since; the caller holds a read lock.
    #[inline]
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        self.read_guard(self.raw().lock_read(Deadline::NEVER))
    }

    /// Locks for reading if that is possible without waiting; otherwise
    /// `Error::WouldBlock`.
    pub fn try_read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        self.read_guard(self.raw().try_lock_read())
    }

    /// Locks for reading, waiting at most `timeout`; `Error::Timeout` if it could not.
    pub fn read_timeout(&self, timeout: Duration) -> LockResult<RwLockReadGuard<'_, T>> {
        self.read_guard(self.raw().lock_read(Deadline::after(timeout)))
    }

    /// Locks for writing, blocking until no reader or writer holds the lock.
    ///
    /// `Err(LockError::OwnerDied(guard))` means a writer died holding the lock; the caller
    /// holds it now, repairs the data and calls [`RwLockWriteGuard::mark_consistent`].
    #[inline]
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.write_guard(self.raw().lock_write(Deadline::NEVER))
    }

    /// Locks for writing if that is possible without waiting; otherwise
    /// `Error::WouldBlock`. Dead readers and a dead writer are detected (one `fcntl` each).
    pub fn try_write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.write_guard(self.raw().try_lock_write())
    }

    /// Locks for writing, waiting at most `timeout`; `Error::Timeout` if it could not.
    pub fn write_timeout(&self, timeout: Duration) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.write_guard(self.raw().lock_write(Deadline::after(timeout)))
    }

    /// Whether this handle created the lock.
    pub fn is_creator(&self) -> bool {
        self.seg.is_creator()
    }

    /// The segment the lock lives in.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    fn read_guard(&self, r: Result<(usize, u32, Acquired)>) -> LockResult<RwLockReadGuard<'_, T>> {
        let (slot, token, how) = r?;
        let g = RwLockReadGuard {
            lock: self,
            slot,
            token,
            _not_send: PhantomData,
        };
        match how {
            Acquired::Clean => Ok(g),
            Acquired::OwnerDied => Err(LockError::OwnerDied(g)),
        }
    }

    fn write_guard(&self, r: Result<Acquired>) -> LockResult<RwLockWriteGuard<'_, T>> {
        let how = r?;
        let g = RwLockWriteGuard {
            lock: self,
            owner_died: how == Acquired::OwnerDied,
            _not_send: PhantomData,
        };
        match how {
            Acquired::Clean => Ok(g),
            Acquired::OwnerDied => Err(LockError::OwnerDied(g)),
        }
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
        unsafe { self.lock.data.as_ref() }
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
        unsafe { self.lock.data.as_ref() }
    }
}

impl<T: Pod> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`; `&mut self` makes the access unique in this process.
        unsafe { &mut *self.lock.data.as_ptr() }
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

impl<T: Pod + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_follows_the_shared_state_aligned() {
        assert_eq!(data_offset::<u8>(), size_of::<RwShared>());
        assert_eq!(data_offset::<u64>(), size_of::<RwShared>());
        #[repr(C, align(4096))]
        #[derive(Clone, Copy)]
        struct Page([u8; 4096]);
        assert_eq!(data_offset::<Page>() % 4096, 0);
        assert!(data_offset::<Page>() >= size_of::<RwShared>());
    }

    #[test]
    fn readers_share_and_writers_exclude_between_threads() {
        let l = RwLock::<u64>::anonymous(7).unwrap();
        let (a, b) = (l.read().unwrap(), l.try_read().unwrap());
        assert_eq!((*a, *b), (7, 7));
        assert!(matches!(
            l.try_write(),
            Err(LockError::Error(Error::WouldBlock))
        ));
        drop((a, b));
        let mut w = l.try_write().unwrap();
        *w += 1;
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(matches!(
                    l.try_read(),
                    Err(LockError::Error(Error::WouldBlock))
                ));
                assert!(matches!(
                    l.read_timeout(Duration::from_millis(5)),
                    Err(LockError::Error(Error::Timeout))
                ));
            });
        });
        drop(w);
        assert_eq!(*l.read().unwrap(), 8);
    }
}
