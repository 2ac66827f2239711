//! [`Value<T>`] (a value with its lock, like `multiprocessing.Value`) and [`RawValue<T>`]

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic;
use std::time::Duration;

use bytemuck::Pod;

use crate::error::{Error, LockError, LockResult, Result};
use crate::segment::{CreationMode, Kind, Layout, Options, Segment};
use crate::sync::mutex::{one_result, LockedBody};
use crate::sync::wait::Deadline;
use crate::MutexGuard;

/// A `T` with its own robust lock, in shared memory: `multiprocessing.Value` with
/// `get_lock()`.
///
/// `get` and `set` lock around a copy; [`Value::lock`] gives a guard for read-modify-write.
/// If a holder died, `get` returns [`Error::OwnerDied`] and leaves the value marked
/// inconsistent for the next locker; `set` overwrites the whole value and so marks it
/// consistent again.
///
/// [`Value<T>`] (a value with its lock, like `multiprocessing.Value`) and [`RawValue<T>`]
/// (no lock, like `multiprocessing.RawValue`), mapped in place.
///
/// ```
/// use shmkit::{RawValue, Value};
/// # let (a, b) = (format!("doc-v-{}", std::process::id()), format!("doc-rv-{}", std::process::id()));
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
    body: LockedBody<T>,
}

impl<T: Pod> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("segment", self.body.segment())
            .finish_non_exhaustive()
    }
}

impl<T: Pod> Value<T> {
    /// Creates the value `name` holding `init`; fails if the name exists.
    pub fn create(name: &str, init: T) -> Result<Self> {
        Self::with_options(name, CreationMode::Create, init, &Options::new())
    }

    /// Opens the existing value `name`, checking that it holds a `T`.
    pub fn open(name: &str) -> Result<Self> {
        Self::with_options(name, CreationMode::Open, T::zeroed(), &Options::new())
    }

    /// Opens the value `name`, or creates it holding `init` (exactly one racer creates).
    pub fn open_or_create(name: &str, init: T) -> Result<Self> {
        Self::with_options(name, CreationMode::OpenOrCreate, init, &Options::new())
    }

    /// Creates an anonymous value, shared with children created by `fork`.
    pub fn anonymous(init: T) -> Result<Self> {
        Self::build(None, CreationMode::Create, init, &Options::new())
    }

    /// Creates and/or opens as `mode` says, with `opts`.
    pub fn with_options(name: &str, mode: CreationMode, init: T, opts: &Options) -> Result<Self> {
        Self::build(Some(name), mode, init, opts)
    }

    fn build(name: Option<&str>, mode: CreationMode, init: T, opts: &Options) -> Result<Self> {
        let body = LockedBody::new(name, Kind::Value, mode, 1, opts, &|d| d[0] = init)?;
        if body.len() != 1 {
            return Err(Error::corrupt(
                "a value segment must hold exactly one value",
            ));
        }
        Ok(Value { body })
    }

    /// Returns a copy of the value, taken under the lock.
    pub fn get(&self) -> Result<T> {
        match self.body.lock(Deadline::NEVER) {
            Ok(g) => Ok(g[0]),
            Err(LockError::OwnerDied(g)) => {
                MutexGuard::release_unrepaired(g);
                Err(Error::OwnerDied)
            }
            Err(LockError::Error(e)) => Err(e),
        }
    }

    /// Replaces the value under the lock. This repairs a value whose holder died.
    pub fn set(&self, v: T) -> Result<()> {
        match self.body.lock(Deadline::NEVER) {
            Ok(mut g) => g[0] = v,
            Err(LockError::OwnerDied(mut g)) => {
                g[0] = v;
                MutexGuard::mark_consistent(&g);
            }
            Err(LockError::Error(e)) => return Err(e),
        }
        Ok(())
    }

    /// Locks the value for read-modify-write (as `Value.get_lock()` in Python).
    #[inline]
    pub fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
        one_result(self.body.lock(Deadline::NEVER))
    }

    /// Locks if possible without waiting.
    pub fn try_lock(&self) -> LockResult<MutexGuard<'_, T>> {
        one_result(self.body.try_lock())
    }

    /// Locks, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<MutexGuard<'_, T>> {
        one_result(self.body.lock(Deadline::after(timeout)))
    }

    /// Whether this handle created the value.
    pub fn is_creator(&self) -> bool {
        self.body.segment().is_creator()
    }

    /// The segment the value lives in.
    pub fn segment(&self) -> &Segment {
        self.body.segment()
    }
}

mod sealed {
    pub trait Sealed {}
}

/// Plain-data types that have a matching standard atomic type of the same size and
/// alignment, so that shared memory holding them can be viewed as that atomic.
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

/// A segment whose body is `len` values of `T` at offset 0, with no lock: the storage of
/// `RawValue` and `RawArray`.
pub(crate) struct PlainBody<T> {
    seg: Segment,
    data: NonNull<T>,
    len: usize,
    _t: PhantomData<T>,
}

// SAFETY: the pointer points into the mapping owned by `seg`; the types built on this only
// hand out copies, atomics, or `unsafe` views whose contracts are the caller's.
unsafe impl<T: Send> Send for PlainBody<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for PlainBody<T> {}

fn plain_body_len<T>(cap: u64) -> Option<u64> {
    (std::mem::size_of::<T>() as u64).checked_mul(cap)
}

impl<T: Pod> PlainBody<T> {
    pub(crate) fn new(
        name: Option<&str>,
        kind: Kind,
        mode: CreationMode,
        len: usize,
        opts: &Options,
        init: &dyn Fn(&mut [T]),
    ) -> Result<Self> {
        if std::mem::align_of::<T>() > 128 {
            return Err(Error::InvalidArgument(
                "raw values aligned to more than 128 bytes are not supported".into(),
            ));
        }
        let layout = Layout {
            kind,
            elem_size: std::mem::size_of::<T>() as u64,
            elem_align: std::mem::align_of::<T>() as u64,
            capacity: len as u64,
            body_len: plain_body_len::<T>,
        };
        let init_body = |seg: &Segment| {
            let (data, len) = Self::pointers(seg)?;
            // SAFETY: the body is mapped, 128-aligned, `len * size_of::<T>()` bytes long, and
            // not yet visible to anyone else.
            init(unsafe { std::slice::from_raw_parts_mut(data.as_ptr(), len) });
            Ok(())
        };
        let seg = match name {
            Some(name) => Segment::named(name, mode, layout, opts, init_body)?,
            None => Segment::anon(layout, init_body)?,
        };
        let (data, len) = Self::pointers(&seg)?;
        Ok(PlainBody {
            seg,
            data,
            len,
            _t: PhantomData,
        })
    }

    fn pointers(seg: &Segment) -> Result<(NonNull<T>, usize)> {
        let len = usize::try_from(seg.capacity())
            .map_err(|_| Error::corrupt("capacity does not fit in memory"))?;
        let data = NonNull::new(seg.as_ptr() as *mut T).expect("mapping is not null");
        Ok((data, len))
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn ptr(&self) -> *mut T {
        self.data.as_ptr()
    }

    /// Volatile read of element `i` (checked).
    pub(crate) fn read(&self, i: usize) -> Result<T> {
        if i >= self.len {
            return Err(Error::OutOfBounds {
                index: i,
                len: self.len,
            });
        }
        // SAFETY: `i < len`, so the element is inside the mapping and aligned; volatile
        // because another process may write it; any bit pattern is a valid `T` (Pod).
        Ok(unsafe { crate::primitive::read_shared(self.data.as_ptr().add(i)) })
    }

    /// Volatile write of element `i` (checked).
    pub(crate) fn write(&self, i: usize, v: T) -> Result<()> {
        if i >= self.len {
            return Err(Error::OutOfBounds {
                index: i,
                len: self.len,
            });
        }
        // SAFETY: as in `read`.
        unsafe { crate::primitive::write_shared(self.data.as_ptr().add(i), v) };
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
        unsafe { std::slice::from_raw_parts(self.data.as_ptr() as *const T::Atomic, self.len) }
    }
}

/// A `T` in shared memory without a lock: `multiprocessing.RawValue`.
///
/// [`RawValue::get`] and [`RawValue::set`] are single volatile accesses for types of up to
/// 16 bytes (plain copies for larger ones): for types no wider than a machine word and
/// naturally aligned they are not torn on x86-64 and arm64, but they order nothing. For integer types, [`RawValue::atomic`] gives the standard atomic
/// type in place, with every operation and ordering it has. For anything larger, use
/// [`Value`] (or your own protocol, with a semaphore for instance).
pub struct RawValue<T: Pod> {
    body: PlainBody<T>,
}

impl<T: Pod> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawValue")
            .field("segment", self.body.segment())
            .finish_non_exhaustive()
    }
}

impl<T: Pod> RawValue<T> {
    /// Creates the raw value `name` holding `init`; fails if the name exists.
    pub fn create(name: &str, init: T) -> Result<Self> {
        Self::with_options(name, CreationMode::Create, init, &Options::new())
    }

    /// Opens the existing raw value `name`, checking that it holds a `T`.
    pub fn open(name: &str) -> Result<Self> {
        Self::with_options(name, CreationMode::Open, T::zeroed(), &Options::new())
    }

    /// Opens the raw value `name`, or creates it holding `init` (exactly one racer creates).
    pub fn open_or_create(name: &str, init: T) -> Result<Self> {
        Self::with_options(name, CreationMode::OpenOrCreate, init, &Options::new())
    }

    /// Creates an anonymous raw value, shared with children created by `fork`.
    pub fn anonymous(init: T) -> Result<Self> {
        Self::build(None, CreationMode::Create, init, &Options::new())
    }

    /// Creates and/or opens as `mode` says, with `opts`.
    pub fn with_options(name: &str, mode: CreationMode, init: T, opts: &Options) -> Result<Self> {
        Self::build(Some(name), mode, init, opts)
    }

    fn build(name: Option<&str>, mode: CreationMode, init: T, opts: &Options) -> Result<Self> {
        let body = PlainBody::new(name, Kind::RawValue, mode, 1, opts, &|d| d[0] = init)?;
        if body.len() != 1 {
            return Err(Error::corrupt(
                "a raw-value segment must hold exactly one value",
            ));
        }
        Ok(RawValue { body })
    }

    /// A read of the value (see the type docs for what that guarantees).
    pub fn get(&self) -> T {
        // SAFETY: `ptr()` points to one valid, aligned `T` in the mapping; volatile because
        // other processes write it; any bit pattern is a valid `T`.
        unsafe { crate::primitive::read_shared(self.body.ptr()) }
    }

    /// A write of the value (see the type docs).
    pub fn set(&self, v: T) {
        // SAFETY: as in `get`.
        unsafe { crate::primitive::write_shared(self.body.ptr(), v) }
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

    /// Whether this handle created the value.
    pub fn is_creator(&self) -> bool {
        self.body.segment().is_creator()
    }

    /// The segment the value lives in.
    pub fn segment(&self) -> &Segment {
        self.body.segment()
    }
}
