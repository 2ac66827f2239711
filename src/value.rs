//! [`Value<T>`] (a value with its own robust lock, like `multiprocessing.Value`) and
//! [`RawValue<T>`] (no lock, like `multiprocessing.RawValue`): one `T: Pod` in a segment of
//! its own, mapped in place, plus [`AtomicPod`], the integer types a raw value can be
//! viewed as an atomic of. Both are built on the object model (`crate::object`); the lock
//! is the robust mutex of `sync::raw_mutex`.

use std::ops::Deref;
use std::sync::atomic;

use bytemuck::Pod;

use crate::error::{Error, LockError, Result};
use crate::object::{constructors, object_debug, At, Body, Head};
use crate::segment::{Kind, Segment};
use crate::sync::{Mutex, MutexGuard};

/// A `T` with its own robust lock, in shared memory: `multiprocessing.Value` with
/// `get_lock()`.
///
/// `get` and `set` lock around a copy; [`Mutex::lock`] (a `Value` derefs to its mutex) gives a guard for read-modify-write.
/// If a holder died, `get` returns [`Error::OwnerDied`] and leaves the value marked
/// inconsistent for the next locker; `set` overwrites the whole value and so marks it
/// consistent again.
///
/// ```
/// use shmkit::{RawValue, Value};
/// # let (a, b) = (shmkit::__private::test_name("doc-v"), shmkit::__private::test_name("doc-rv"));
/// let hits = Value::<u64>::create(&a, 0)?;
/// *hits.lock()? += 1; // read-modify-write under the lock
/// hits.set(hits.get()? + 1)?;
/// assert_eq!(hits.get()?, 2);
///
/// let ticks = RawValue::<u64>::create(&b, 0)?;
/// ticks.atomic().fetch_add(1, std::sync::atomic::Ordering::Relaxed);
/// assert_eq!(ticks.get(), 1);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Value<T: Pod> {
    mutex: Mutex<T>,
}

object_debug!(Value<T>);

/// A `Value` is a [`Mutex`] (of its own kind) with [`Value::get`] and [`Value::set`]:
/// `lock`, `try_lock`, `lock_timeout` and `segment` are the mutex's.
impl<T: Pod> Deref for Value<T> {
    type Target = Mutex<T>;
    fn deref(&self) -> &Mutex<T> {
        &self.mutex
    }
}

impl<T: Pod> Value<T> {
    constructors!("value", init: T, open: T::zeroed());

    fn build(at: At<'_>, init: T) -> Result<Self> {
        Ok(Value {
            mutex: Mutex::with_kind(at, Kind::Value, init)?,
        })
    }

    /// Returns a copy of the value, taken under the lock. If a holder died, this is
    /// [`Error::OwnerDied`] and the value stays marked inconsistent for the next locker.
    pub fn get(&self) -> Result<T> {
        Ok(*self.mutex.lock()?)
    }

    /// Replaces the value under the lock. This repairs a value whose holder died.
    pub fn set(&self, v: T) -> Result<()> {
        match self.mutex.lock_recover() {
            Ok(mut g) => *g = v,
            Err(LockError::OwnerDied(mut g)) => {
                *g = v;
                MutexGuard::mark_consistent(&g);
            }
            Err(LockError::Error(e)) => return Err(e),
        }
        Ok(())
    }
}

mod sealed {
    pub trait Sealed {}
}

/// Plain-data types that have a matching standard atomic type of the same size and
/// alignment, so that shared memory holding them can be viewed as that atomic
/// ([`RawValue::atomic`], [`RawArray::atomics`](crate::RawArray::atomics)).
///
/// ```
/// use std::sync::atomic::{AtomicI32, Ordering};
/// # let name = shmkit::__private::test_name("doc-atomicpod");
/// let flag = shmkit::RawValue::<i32>::create(&name, 0)?;
/// let a: &AtomicI32 = flag.atomic(); // `<i32 as AtomicPod>::Atomic`
/// assert_eq!(a.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire), Ok(0));
/// assert_eq!(flag.get(), 1);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub trait AtomicPod: Pod + sealed::Sealed {
    /// The atomic type (`AtomicU64` for `u64`, ...).
    type Atomic: Send + Sync;
}

macro_rules! atomic_pod {
    ($($t:ty => $a:ty),* $(,)?) => {$(
        impl sealed::Sealed for $t {}
        impl AtomicPod for $t {
            type Atomic = $a;
        }
        const _: () = assert!(
            std::mem::size_of::<$t>() == std::mem::size_of::<$a>()
                && std::mem::align_of::<$t>() == std::mem::align_of::<$a>()
        );
    )*};
}

atomic_pod! {
    u8 => atomic::AtomicU8, i8 => atomic::AtomicI8,
    u16 => atomic::AtomicU16, i16 => atomic::AtomicI16,
    u32 => atomic::AtomicU32, i32 => atomic::AtomicI32,
    u64 => atomic::AtomicU64, i64 => atomic::AtomicI64,
    usize => atomic::AtomicUsize, isize => atomic::AtomicIsize,
}

/// The storage of `RawValue` and `RawArray`: `len` values of `T` at offset 0, with no lock
/// (see [`crate::object`]).
pub(crate) type PlainBody<T> = Body<(), T>;

impl<T: Pod> PlainBody<T> {
    /// Volatile read of element `i` (checked).
    pub(crate) fn read(&self, i: usize) -> Result<T> {
        if i >= self.len() {
            return Err(Error::OutOfBounds {
                index: i,
                len: self.len(),
            });
        }
        // SAFETY: `i < len`, so the element is inside the mapping and aligned; volatile
        // because another process may write it; any bit pattern is a valid `T` (Pod).
        Ok(unsafe { crate::copy::read_shared(self.ptr().add(i)) })
    }

    /// Volatile write of element `i` (checked).
    pub(crate) fn write(&self, i: usize, v: T) -> Result<()> {
        if i >= self.len() {
            return Err(Error::OutOfBounds {
                index: i,
                len: self.len(),
            });
        }
        // SAFETY: as in `read`.
        unsafe { crate::copy::write_shared(self.ptr().add(i), v) };
        Ok(())
    }

    /// The data viewed as atomics.
    pub(crate) fn atomics(&self) -> &[T::Atomic]
    where
        T: AtomicPod,
    {
        // SAFETY: `T::Atomic` has the size and alignment of `T` (asserted per type), the
        // memory is mapped for as long as `self` lives, and atomics tolerate concurrent
        // access from other processes.
        unsafe { std::slice::from_raw_parts(self.ptr() as *const T::Atomic, self.len()) }
    }
}

/// A `T` in shared memory without a lock: `multiprocessing.RawValue`.
///
/// [`RawValue::get`] and [`RawValue::set`] are single volatile accesses for types of up to
/// 16 bytes (plain copies for larger ones): for types no wider than a machine word and
/// naturally aligned they are not torn on x86-64 and arm64, but they order nothing. For integer types, [`RawValue::atomic`] gives the standard atomic
/// type in place, with every operation and ordering it has. For anything larger, use
/// [`Value`] (or your own protocol, with a semaphore for instance).
///
/// ```
/// use std::sync::atomic::Ordering;
/// # let name = shmkit::__private::test_name("doc-rawvalue");
/// let ticks = shmkit::RawValue::<u64>::create(&name, 0)?;
/// // In another process: let ticks = shmkit::RawValue::<u64>::open(&name)?;
/// ticks.atomic().fetch_add(5, Ordering::Relaxed);
/// ticks.set(ticks.get() * 2); // a read and a write, not one atomic step
/// assert_eq!(ticks.get(), 10);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct RawValue<T: Pod> {
    body: PlainBody<T>,
}

object_debug!(RawValue<T>);

impl<T: Pod> RawValue<T> {
    constructors!("raw value", init: T, open: T::zeroed());

    fn build(at: At<'_>, init: T) -> Result<Self> {
        let body = PlainBody::one(at, Kind::RawValue, Head::zero(|| ()), init)?;
        Ok(RawValue { body })
    }

    /// A read of the value (see the type docs for what that guarantees).
    pub fn get(&self) -> T {
        // SAFETY: `ptr()` points to one valid, aligned `T` in the mapping; volatile because
        // other processes write it; any bit pattern is a valid `T`.
        unsafe { crate::copy::read_shared(self.body.ptr()) }
    }

    /// A write of the value (see the type docs).
    pub fn set(&self, v: T) {
        // SAFETY: as in `get`.
        unsafe { crate::copy::write_shared(self.body.ptr(), v) }
    }

    /// Pointer to the value in shared memory.
    pub fn as_ptr(&self) -> *mut T {
        self.body.ptr()
    }

    /// The value as the matching standard atomic type, in place: `fetch_add`,
    /// `compare_exchange` and the rest, across processes.
    pub fn atomic(&self) -> &T::Atomic
    where
        T: AtomicPod,
    {
        &self.body.atomics()[0]
    }

    /// The segment the value lives in.
    pub fn segment(&self) -> &Segment {
        self.body.segment()
    }
}
