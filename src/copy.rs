//! Copies into and out of shared memory that another process may write or read at the same
//! time: the one place that decides how a `Pod` value is moved across the boundary
//! (volatile for small values, a fenced plain copy for large ones), and the prefetch hint.
//! Used by the typed objects, the channels' copy-out receives and the shared dict; nothing
//! here synchronises anything.

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

/// Asks the CPU to bring the cache line at `p` into its cache: a hint, which reads and
/// writes nothing and never faults (a no-op where no prefetch instruction is wired up).
#[inline]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    // SAFETY: `prefetcht0` needs SSE, which every x86_64 CPU has; a prefetch is only a
    // hint: it accesses no memory observably and never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    let _ = p;
}
