//! Copies into and out of shared memory that another process may write or read at the same
//! time: the one place that decides how a `Pod` value is moved across the boundary
//! (volatile for small values, a fenced plain copy for large ones). Used by the typed
//! objects and the channels' copy-out receives; nothing here synchronises anything.

/// Reads a value that another process may write at the same time, as one volatile load
/// when it is small; a large value is copied with `copy_nonoverlapping` instead, because
/// a volatile read of a large array compiles to one load per element (minutes of
/// compile time for a 1 MiB payload). Either way any bytes are a valid `T` (`Pod`).
///
/// # Safety
/// `src` is valid for reads of a `T` and aligned.
#[inline]
pub(crate) unsafe fn read_shared<T: bytemuck::Pod>(src: *const T) -> T {
    if std::mem::size_of::<T>() <= 16 {
        // SAFETY: the caller's contract.
        unsafe { src.read_volatile() }
    } else {
        let mut v = std::mem::MaybeUninit::<T>::uninit();
        // The fences keep the copy where it is: the compiler may not hoist it out of a
        // polling loop nor reuse an earlier read, as it could with a plain copy.
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: the caller's contract for `src`; `v` is a fresh local of the same type,
        // fully written by the copy, and every bit pattern is a valid `T` (`Pod`).
        let v = unsafe {
            std::ptr::copy_nonoverlapping(src, v.as_mut_ptr(), 1);
            v.assume_init()
        };
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        v
    }
}

/// Writes a value that another process may read at the same time; see [`read_shared`].
///
/// # Safety
/// `dst` is valid for writes of a `T` and aligned.
#[inline]
pub(crate) unsafe fn write_shared<T: bytemuck::Pod>(dst: *mut T, v: T) {
    if std::mem::size_of::<T>() <= 16 {
        // SAFETY: the caller's contract.
        unsafe { dst.write_volatile(v) }
    } else {
        // As in `read_shared`: the copy stays where it is written.
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: the caller's contract; `v` is a local, so the regions do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(&v, dst, 1) };
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}
