//! Process-shared synchronisation primitives, laid out `#[repr(C)]` inside segments.
//!
//! All blocking goes through one small wait module (spin briefly, then sleep on a futex,
//! with optional deadlines on the monotonic clock; right after waking a sleeper, a wait on
//! a peer's progress polls a while longer first).

pub(crate) mod barrier;
pub(crate) mod condvar;
pub(crate) mod event;
pub(crate) mod mutex;
pub(crate) mod raw_mutex;
pub(crate) mod raw_rwlock;
pub(crate) mod reentrant;
pub(crate) mod rwlock;
pub(crate) mod semaphore;
pub(crate) mod wait;

pub use barrier::{Barrier, BarrierWaitResult};
pub use condvar::{Condvar, WaitTimeoutResult};
pub use event::Event;
pub use mutex::{Mutex, MutexGuard};
pub use reentrant::{ReentrantMutex, ReentrantMutexGuard};
pub use rwlock::{RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};

/// For unit tests: runs `f` in a thread of its own and waits for it (a panic there fails
/// the test), to see a lock as another thread of this process sees it.
#[cfg(test)]
pub(crate) fn in_another_thread(f: impl FnOnce() + Send) {
    std::thread::scope(|s| {
        s.spawn(f);
    });
}

/// For unit tests: asserts that another thread of this process finds a lock taken: its
/// `try_lock` would block, and its `lock_timeout` times out.
#[cfg(test)]
pub(crate) fn assert_taken_for_another_thread<G>(
    try_lock: impl FnOnce() -> crate::Result<G> + Send,
    lock_timeout: impl FnOnce(std::time::Duration) -> crate::Result<G> + Send,
) {
    use crate::Error;
    in_another_thread(|| {
        assert!(matches!(try_lock(), Err(Error::WouldBlock)));
        assert!(matches!(
            lock_timeout(std::time::Duration::from_millis(5)),
            Err(Error::Timeout)
        ));
    });
}
