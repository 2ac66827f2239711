//! The one switch between the real world and the loom model checker.
//!
//! The synchronisation algorithms import their atomics, their spin hint and their futex
//! from here. Normally these are `std`'s atomics and the kernel's futex (through `os`);
//! under `--cfg loom` they are loom's atomics and a model of the futex, so that the
//! algorithms can be model-checked in-process (see `tests/loom.rs`). Only the algorithms'
//! in-process form runs under loom: nothing is mapped there.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// Outcome of [`futex_wait`]; see `os::FutexWait`.
pub(crate) use crate::os::FutexWait;

/// Sleeps while `*word == expected`, at most `timeout`.
#[cfg(not(loom))]
#[inline]
pub(crate) fn futex_wait(
    word: &AtomicU32,
    expected: u32,
    timeout: Option<std::time::Duration>,
) -> FutexWait {
    crate::os::futex_wait(word, expected, timeout)
}

/// Wakes at most `n` sleepers on `word`.
#[cfg(not(loom))]
#[inline]
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) {
    crate::os::futex_wake(word, n);
}

/// A pause inside a spin loop.
#[cfg(not(loom))]
#[inline]
pub(crate) fn spin_hint() {
    std::hint::spin_loop();
}

#[cfg(loom)]
pub(crate) use model::{futex_wait, futex_wake, spin_hint};

/// The futex, modelled: comparing the word and going to sleep happen under one lock, as
/// the kernel does under its hash-bucket lock, and a wake wakes every sleeper (waking more
/// than asked is allowed: every caller re-checks). Timeouts are not modelled: a sleeper
/// sleeps until woken, so a lost wake-up becomes a deadlock that loom reports.
#[cfg(loom)]
mod model {
    use super::{AtomicU32, FutexWait, Ordering};
    use loom::sync::{Condvar, Mutex};

    loom::lazy_static! {
        static ref KERNEL: (Mutex<u64>, Condvar) = (Mutex::new(0), Condvar::new());
    }

    pub(crate) fn futex_wait(
        word: &AtomicU32,
        expected: u32,
        _timeout: Option<std::time::Duration>,
    ) -> FutexWait {
        let (lock, cv) = &*KERNEL;
        let mut wakes = lock.lock().unwrap();
        if word.load(Ordering::SeqCst) != expected {
            return FutexWait::Woken;
        }
        let seen = *wakes;
        while *wakes == seen {
            wakes = cv.wait(wakes).unwrap();
        }
        FutexWait::Woken
    }

    pub(crate) fn futex_wake(_word: &AtomicU32, _n: u32) {
        let (lock, cv) = &*KERNEL;
        *lock.lock().unwrap() += 1;
        cv.notify_all();
    }

    pub(crate) fn spin_hint() {
        loom::thread::yield_now();
    }
}

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
