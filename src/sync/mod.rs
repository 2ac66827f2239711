//! Process-shared synchronisation primitives, laid out `#[repr(C)]` inside segments.
//!
//! All blocking goes through one small wait module (spin briefly, then sleep on a futex,
//! with optional deadlines on the monotonic clock).

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
