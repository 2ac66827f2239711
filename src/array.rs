//! [`Array<T>`] (elements with one robust lock, like `multiprocessing.Array`) and
//! [`RawArray<T>`] (no lock, like `multiprocessing.RawArray`): `len` elements of a
//! `T: Pod` in a segment of their own, mapped in place. Both are built on the object model
//! (`crate::object`); the lock is the robust mutex of `sync::raw_mutex`.

use std::time::Duration;

use bytemuck::Pod;

use crate::error::{plain, Error, LockError, LockResult, Result};
use crate::object::{constructors, object_debug, At, Body, Head, Len};
use crate::segment::{Kind, Segment};
use crate::sync::mutex::LockedBody;
use crate::sync::raw_mutex::RawMutex;
use crate::sync::wait::Deadline;
use crate::sync::MutexGuard;
use crate::value::{AtomicPod, PlainBody};

/// How a new array's elements are filled.
enum Fill<'a, T> {
    /// `n` zeroed elements.
    Zero(usize),
    /// A copy of these.
    From(&'a [T]),
}

impl<'a, T> From<&'a [T]> for Fill<'a, T> {
    fn from(data: &'a [T]) -> Self {
        Fill::From(data)
    }
}

impl<T: Pod> Fill<'_, T> {
    fn len(&self) -> u64 {
        match self {
            Fill::Zero(n) => *n as u64,
            Fill::From(src) => src.len() as u64,
        }
    }

    fn apply(&self, dst: &mut [T]) {
        match self {
            // The file is zero-filled by `ftruncate`, and zero is a valid `T`.
            Fill::Zero(_) => {}
            Fill::From(src) => dst.copy_from_slice(src),
        }
    }
}

/// What [`Array`] and [`RawArray`] share inside their `impl`, over their field `body`:
/// the constructors, the `build` behind them (a body of `$kind`, its head started by
/// `$head`, see [`Head::zero`]), `len`, `is_empty` and `segment`.
macro_rules! array_common {
    ($what:literal, $kind:expr, $head:expr) => {
        constructors!($what, data: &[T], open: Fill::Zero(0));
        constructors!(@zeroed $what, Fill::Zero);

        fn build(at: At<'_>, fill: Fill<'_, T>) -> Result<Self> {
            let len = Len::Create(fill.len());
            let body = Body::new(at, $kind, len, Head::zero($head), |d| fill.apply(d))?;
            Ok(Self { body })
        }

        /// Number of elements.
        pub fn len(&self) -> usize {
            self.body.len()
        }

        /// Whether the array has no elements.
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// The segment the array lives in.
        pub fn segment(&self) -> &Segment {
            self.body.segment()
        }
    };
}

fn check_len(expected: usize, got: usize) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::OutOfBounds {
            index: got,
            len: expected,
        })
    }
}

/// Elements of `T` with one robust lock, in shared memory: `multiprocessing.Array`.
///
/// Element access (`get`, `set`, the copies) takes the lock for the duration of the call;
/// [`Array::lock`] gives a guard that derefs to `[T]` for longer work. If a holder died,
/// the reads return [`Error::OwnerDied`] and leave the array marked inconsistent for the
/// next locker; [`Array::copy_from_slice`] overwrites everything and so repairs it.
///
/// ```
/// use shmkit::{Array, RawArray};
/// # let (a, b) = (shmkit::__private::test_name("doc-a"), shmkit::__private::test_name("doc-ra"));
/// let totals = Array::<f64>::create_zeroed(&a, 4)?;
/// totals.set(2, 1.5)?;
/// totals.lock()?[3] += 2.0; // the guard derefs to `[f64]`, in place
/// assert_eq!(totals.to_vec()?, vec![0.0, 0.0, 1.5, 2.0]);
///
/// let samples = RawArray::<f64>::create(&b, &[1.0, 2.0, 3.0])?;
/// let mut out = [0.0; 2];
/// samples.read(1, &mut out)?;
/// assert_eq!(out, [2.0, 3.0]);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Array<T: Pod> {
    body: LockedBody<T>,
}

object_debug!(Array<T>, len);

impl<T: Pod> Array<T> {
    array_common!("array", Kind::Array, RawMutex::new);

    /// Locks the array; the guard derefs to `[T]` in place. A holder that died is reported
    /// as by [`Mutex::lock`](crate::Mutex::lock): [`Error::OwnerDied`], the lock left free
    /// and the data marked inconsistent until [`Array::lock_recover`] repairs it.
    #[inline]
    pub fn lock(&self) -> Result<MutexGuard<'_, [T]>> {
        plain(self.lock_recover())
    }

    /// Locks if possible without waiting; otherwise `Error::WouldBlock`.
    pub fn try_lock(&self) -> Result<MutexGuard<'_, [T]>> {
        plain(self.body.try_lock())
    }

    /// Locks, waiting at most `timeout`; `Error::Timeout` if it could not.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard<'_, [T]>> {
        plain(self.lock_recover_timeout(timeout))
    }

    /// Locks to repair, as [`Mutex::lock_recover`](crate::Mutex::lock_recover): a dead
    /// holder's data comes with the guard in [`LockError::OwnerDied`].
    pub fn lock_recover(&self) -> LockResult<MutexGuard<'_, [T]>> {
        self.body.lock(Deadline::NEVER)
    }

    /// [`Array::lock_recover`], waiting at most `timeout`.
    pub fn lock_recover_timeout(&self, timeout: Duration) -> LockResult<MutexGuard<'_, [T]>> {
        self.body.lock(Deadline::after(timeout))
    }

    /// A copy of element `i`.
    pub fn get(&self, i: usize) -> Result<T> {
        let len = self.len();
        self.lock()?
            .get(i)
            .copied()
            .ok_or(Error::OutOfBounds { index: i, len })
    }

    /// Sets element `i`.
    pub fn set(&self, i: usize, v: T) -> Result<()> {
        if i >= self.len() {
            return Err(Error::OutOfBounds {
                index: i,
                len: self.len(),
            });
        }
        self.lock()?[i] = v;
        Ok(())
    }

    /// Copies the whole array into `dst`, which must have the same length.
    pub fn copy_to_slice(&self, dst: &mut [T]) -> Result<()> {
        check_len(self.len(), dst.len())?;
        dst.copy_from_slice(&self.lock()?);
        Ok(())
    }

    /// Overwrites the whole array with `src`, which must have the same length. This repairs
    /// an array whose holder died.
    pub fn copy_from_slice(&self, src: &[T]) -> Result<()> {
        check_len(self.len(), src.len())?;
        match self.lock_recover() {
            Ok(mut g) => g.copy_from_slice(src),
            Err(LockError::OwnerDied(mut g)) => {
                g.copy_from_slice(src);
                MutexGuard::mark_consistent(&g);
            }
            Err(LockError::Error(e)) => return Err(e),
        }
        Ok(())
    }

    /// A copy of the whole array.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        Ok(self.lock()?.to_vec())
    }
}

/// Elements of `T` in shared memory without a lock: `multiprocessing.RawArray`.
///
/// # Data races
/// Other processes may write any element at any time. The safe methods copy element by
/// element, with volatile accesses for elements of up to 16 bytes: each element no wider than a machine word is read or
/// written whole, but a copy of several elements is not a snapshot, and nothing is
/// ordered with respect to other memory. Synchronise with a [`Semaphore`]-style protocol
/// or use [`Array`] when that matters. [`RawArray::as_slice`] and
/// [`RawArray::as_mut_slice`] give in-place views for zero-copy work; they are `unsafe`
/// because the caller must guarantee that no other process (or thread) writes the viewed
/// elements while the view lives, as the FloatChannel pattern does with two semaphores.
/// For integer elements, [`RawArray::atomics`] views the array as atomics, which is safe
/// under any sharing.
///
/// ```
/// use shmkit::{RawArray, Semaphore};
/// # let (a, s) = (shmkit::__private::test_name("doc-rawarray"), shmkit::__private::test_name("doc-rawarray-sem"));
/// let samples = RawArray::<f64>::create_zeroed(&a, 3)?;
/// let filled = Semaphore::create(&s, 0)?;
/// // The writer (another process, normally) fills the array in place, then hands it over:
/// // SAFETY: nobody else reads or writes the elements until `filled` is released.
/// unsafe { samples.as_mut_slice() }.copy_from_slice(&[1.0, 2.0, 3.0]);
/// filled.release()?;
/// // The reader waits for the hand-over, then reads in place:
/// filled.acquire()?;
/// // SAFETY: the writer is done (the semaphore says so) and writes nothing more.
/// let sum: f64 = unsafe { samples.as_slice() }.iter().sum();
/// assert_eq!(sum, 6.0);
/// # Ok::<(), shmkit::Error>(())
/// ```
///
/// [`Semaphore`]: https://docs.python.org/3/library/multiprocessing.html#multiprocessing.Semaphore
pub struct RawArray<T: Pod> {
    body: PlainBody<T>,
}

object_debug!(RawArray<T>, len);

impl<T: Pod> RawArray<T> {
    array_common!("raw array", Kind::RawArray, || ());

    /// A volatile read of element `i`.
    pub fn get(&self, i: usize) -> Result<T> {
        self.body.read(i)
    }

    /// A volatile write of element `i`.
    pub fn set(&self, i: usize, v: T) -> Result<()> {
        self.body.write(i, v)
    }

    fn check_range(&self, at: usize, n: usize) -> Result<()> {
        match at.checked_add(n) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(Error::OutOfBounds {
                index: at.saturating_add(n),
                len: self.len(),
            }),
        }
    }

    /// Copies `dst.len()` elements starting at `at` into `dst`.
    pub fn read(&self, at: usize, dst: &mut [T]) -> Result<()> {
        self.check_range(at, dst.len())?;
        for (k, d) in dst.iter_mut().enumerate() {
            // SAFETY: `at + k < len` (checked above): inside the mapping and aligned.
            *d = unsafe { crate::copy::read_shared(self.body.ptr().add(at + k)) };
        }
        Ok(())
    }

    /// Copies `src` into the array starting at `at`.
    pub fn write(&self, at: usize, src: &[T]) -> Result<()> {
        self.check_range(at, src.len())?;
        for (k, s) in src.iter().enumerate() {
            // SAFETY: as in `read`.
            unsafe { crate::copy::write_shared(self.body.ptr().add(at + k), *s) };
        }
        Ok(())
    }

    /// Pointer to the first element in shared memory.
    pub fn as_ptr(&self) -> *mut T {
        self.body.ptr()
    }

    /// The elements, in place.
    ///
    /// # Safety
    /// While the returned slice lives, no process or thread may write any element (your
    /// protocol must guarantee it, for example a semaphore handed from writer to reader).
    pub unsafe fn as_slice(&self) -> &[T] {
        // SAFETY: the memory is mapped, aligned and `len` elements long; the caller rules
        // out concurrent writes.
        unsafe { std::slice::from_raw_parts(self.body.ptr(), self.len()) }
    }

    /// The elements, in place and writable.
    ///
    /// # Safety
    /// While the returned slice lives, no other process or thread may read or write any
    /// element, and no other view of them may exist.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn as_mut_slice(&self) -> &mut [T] {
        // SAFETY: as in `as_slice`; the caller guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.body.ptr(), self.len()) }
    }

    /// The elements as the matching standard atomic type, in place.
    pub fn atomics(&self) -> &[T::Atomic]
    where
        T: AtomicPod,
    {
        self.body.atomics()
    }
}
