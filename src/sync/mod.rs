//! Process-shared synchronisation primitives, laid out `#[repr(C)]` inside segments.
//!
//! All blocking goes through one small wait module (spin briefly, then sleep on a futex,
//! with optional deadlines on the monotonic clock).

pub(crate) mod mutex;
pub(crate) mod raw_mutex;
pub(crate) mod wait;

pub use mutex::{Mutex, MutexGuard};
