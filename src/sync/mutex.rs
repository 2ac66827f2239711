//! [`Mutex<T>`]: a robust, process-shared mutual-exclusion lock protecting a `T`.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::Duration;

use bytemuck::Pod;

use super::raw_mutex::{Acquired, RawMutex};
use super::wait::Deadline;
use crate::error::{plain, LockError, LockResult, Result, Unrepaired};
use crate::object::{constructors, object_debug, At, Body, Head};
use crate::segment::{Kind, Segment};

/// The storage of `Mutex`, `Value` and `Array`: a [`RawMutex`] followed by `len` values of
/// `T` (see [`crate::object`]).
pub(crate) type LockedBody<T> = Body<RawMutex, T>;

impl<T: Pod> LockedBody<T> {
    pub(crate) fn raw(&self) -> &RawMutex {
        self.head()
    }

    /// Locks and returns a guard over the whole data, as `[T]`.
    pub(crate) fn lock(&self, deadline: Deadline) -> LockResult<MutexGuard<'_, [T]>> {
        let how = self.raw().lock(self.segment(), deadline)?;
        self.guard(how)
    }

    pub(crate) fn try_lock(&self) -> LockResult<MutexGuard<'_, [T]>> {
        let how = self.raw().try_lock(self.segment())?;
        self.guard(how)
    }

    fn guard(
        &self,
        how: Acquired,
    ) -> std::result::Result<MutexGuard<'_, [T]>, LockError<MutexGuard<'_, [T]>>> {
        let data = std::ptr::slice_from_raw_parts_mut(self.ptr(), self.len());
        let g = MutexGuard {
            raw: self.raw(),
            seg: self.segment(),
            data: NonNull::new(data).expect("mapping is not null"),
            owner_died: how == Acquired::OwnerDied,
            _not_send: PhantomData,
        };
        how.result(g)
    }
}

/// RAII guard of a locked [`Mutex`] (or [`Value`](crate::Value), or
/// [`Array`](crate::Array)); derefs to the protected data, in place in shared memory.
/// Unlocks on drop.
///
/// Helpers are associated functions (`MutexGuard::mark_consistent(&g)`), so that they never
/// shadow methods of the protected data.
///
/// ```
/// # let name = shmkit::__private::test_name("doc-guard");
/// let m = shmkit::Mutex::<u32>::create(&name, 1)?;
/// let mut g = m.lock()?;
/// *g += 1; // in place, in shared memory
/// assert!(!shmkit::MutexGuard::is_inconsistent(&g));
/// drop(g); // unlocks
/// assert_eq!(*m.lock()?, 2);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct MutexGuard<'a, T: ?Sized> {
    raw: &'a RawMutex,
    seg: &'a Segment,
    data: NonNull<T>,
    owner_died: bool,
    /// The lock is owned by the process, but guards stay on the thread, as std's do.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared guard only hands out `&T`.
unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

impl<'a, T: ?Sized> MutexGuard<'a, T> {
    /// Marks the protected data consistent again after a previous owner died. Call it
    /// once the data is repaired; without it, dropping the guard makes the mutex not
    /// recoverable.
    pub fn mark_consistent(this: &Self) {
        this.raw.mark_consistent();
    }

    /// Whether this guard was obtained from (or after) an owner that died and the data
    /// has not been marked consistent since.
    pub fn is_inconsistent(this: &Self) -> bool {
        this.owner_died && this.raw.is_inconsistent()
    }

    /// Releases the lock for a condition-variable wait; the guard stays alive but must not
    /// be used until [`Self::relock`] succeeds.
    pub(crate) fn unlock_for_wait(this: &Self) {
        this.raw.unlock();
    }

    /// Takes the lock again after a condition-variable wait, waiting until `deadline`.
    /// `Ok(true)` if a previous owner died in between (the data may be inconsistent).
    pub(crate) fn relock(this: &mut Self, deadline: Deadline) -> Result<bool> {
        let how = this.raw.lock(this.seg, deadline)?;
        let died = how == Acquired::OwnerDied;
        this.owner_died |= died;
        Ok(died)
    }

    /// Narrows the guard to a part of the data (e.g. an element of an array).
    pub(crate) fn map<U: ?Sized>(
        this: Self,
        f: impl FnOnce(&mut T) -> &mut U,
    ) -> MutexGuard<'a, U> {
        let mut this = std::mem::ManuallyDrop::new(this);
        // SAFETY: the guard holds the lock, so we have exclusive access to the data.
        let data = NonNull::from(f(unsafe { this.data.as_mut() }));
        MutexGuard {
            raw: this.raw,
            seg: this.seg,
            data,
            owner_died: this.owner_died,
            _not_send: PhantomData,
        }
    }
}

impl<T: ?Sized> Unrepaired for MutexGuard<'_, T> {
    /// Releases the lock and leaves an inconsistent state as it is (the next locker is
    /// told `OwnerDied` again) instead of making it not recoverable.
    fn release_unrepaired(self) {
        let raw = self.raw;
        std::mem::forget(self);
        raw.unlock();
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock: no other guard exists, and cooperating peers
        // do not write the data without holding the lock.
        unsafe { self.data.as_ref() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`; `&mut self` makes the access unique in this process.
        unsafe { self.data.as_mut() }
    }
}

impl<T: ?Sized> Drop for MutexGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if self.owner_died && self.raw.is_inconsistent() {
            self.raw.mark_not_recoverable();
        }
        self.raw.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// A robust, process-shared mutex protecting a `T`.
///
/// `lock` blocks until the lock is free (spinning briefly, then sleeping on a futex);
/// `try_lock` never blocks; `lock_timeout` gives up after a duration. An uncontended lock
/// and unlock is one compare-and-swap and one swap, with no system call.
///
/// If a process dies while holding the lock, the data may be half-updated. `lock` then
/// returns [`Error::OwnerDied`](crate::Error::OwnerDied) (so `?` works anywhere, into
/// `Box<dyn Error>` or `anyhow` too) and leaves the lock free with the data marked
/// inconsistent: every locker is told, none can make it worse by giving up. To repair,
/// [`Mutex::lock_recover`] hands over the guard in [`LockError::OwnerDied`]: repair the
/// data and call [`MutexGuard::mark_consistent`]. A recovering guard dropped without that
/// makes the mutex not recoverable
/// ([`Error::NotRecoverable`](crate::Error::NotRecoverable) for every later lock). Death is detected through a lock that the kernel
/// releases when the process dies (see `raw_mutex` for why this is not a
/// `pthread_mutex_t`); detection takes a few milliseconds of a waiter's time.
///
/// ```
/// use shmkit::Mutex;
/// # let name = shmkit::__private::test_name("doc-mutex");
/// let m = Mutex::<[u64; 2]>::create(&name, [0, 0])?;
/// // In another process: let m = Mutex::<[u64; 2]>::open(&name)?;
/// {
///     let mut g = m.lock()?;
///     g[0] += 1;
///     g[1] += 1;
/// }
/// assert_eq!(*m.lock()?, [1, 1]);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Mutex<T: Pod> {
    body: LockedBody<T>,
}

object_debug!(Mutex<T>);

fn one<T: Pod>(body: MutexGuard<'_, [T]>) -> MutexGuard<'_, T> {
    // A Mutex body holds exactly one value (validated on open).
    MutexGuard::map(body, |s| &mut s[0])
}

pub(crate) fn one_result<T: Pod>(
    r: LockResult<MutexGuard<'_, [T]>>,
) -> LockResult<MutexGuard<'_, T>> {
    match r {
        Ok(g) => Ok(one(g)),
        Err(e) => Err(e.map(one)),
    }
}

impl<T: Pod> Mutex<T> {
    constructors!("mutex", init: T, open: T::zeroed());

    fn build(at: At<'_>, init: T) -> Result<Self> {
        Self::with_kind(at, Kind::Mutex, init)
    }

    /// A mutex-shaped object of another kind (a [`Value`](crate::Value)).
    pub(crate) fn with_kind(at: At<'_>, kind: Kind, init: T) -> Result<Self> {
        let body = LockedBody::one(at, kind, Head::zero(RawMutex::new), init)?;
        Ok(Mutex { body })
    }

    /// Locks, blocking until the lock is free.
    ///
    /// If a holder died holding it and nobody has repaired the data since, this is
    /// [`Error::OwnerDied`](crate::Error::OwnerDied): the lock is left free and the data
    /// marked inconsistent, so every locker is told until [`Mutex::lock_recover`] repairs it.
    #[inline]
    pub fn lock(&self) -> Result<MutexGuard<'_, T>> {
        plain(self.lock_recover())
    }

    /// Locks if that is possible without waiting; otherwise `Error::WouldBlock`. A dead
    /// holder is taken over (one `fcntl`) and reported as in [`Mutex::lock`].
    pub fn try_lock(&self) -> Result<MutexGuard<'_, T>> {
        plain(one_result(self.body.try_lock()))
    }

    /// Locks, waiting at most `timeout`; `Error::Timeout` if it could not. A dead holder
    /// is reported as in [`Mutex::lock`].
    pub fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard<'_, T>> {
        plain(self.lock_recover_timeout(timeout))
    }

    /// Locks to repair: like [`Mutex::lock`], but if a holder died and nobody has repaired
    /// the data since, the caller gets the guard in [`LockError::OwnerDied`], holds the
    /// lock, repairs the data and calls [`MutexGuard::mark_consistent`]. A guard dropped
    /// without that makes the mutex not recoverable
    /// ([`Error::NotRecoverable`](crate::Error::NotRecoverable) for every later lock).
    pub fn lock_recover(&self) -> LockResult<MutexGuard<'_, T>> {
        one_result(self.body.lock(Deadline::NEVER))
    }

    /// [`Mutex::lock_recover`], waiting at most `timeout` (`Duration::ZERO`: only try).
    pub fn lock_recover_timeout(&self, timeout: Duration) -> LockResult<MutexGuard<'_, T>> {
        one_result(self.body.lock(Deadline::after(timeout)))
    }

    /// The segment the mutex lives in.
    pub fn segment(&self) -> &Segment {
        self.body.segment()
    }
}
