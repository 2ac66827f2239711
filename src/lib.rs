//! # shmkit
//!
//! Inter-process communication over shared memory, for Linux: what Python's
//! `multiprocessing` offers processes (shared `Value`/`Array`/`RawValue`/`RawArray`,
//! process-shared locks), done for Rust, with zero copies and validated shared state.
//!
//! - [`Segment`]: a named or anonymous shared-memory region with a validated header;
//!   created exclusively and published atomically, opened with owner, mode, size and type
//!   checks, unlinked by its creator.
//! - [`Mutex<T>`]: a robust process-shared mutex; a holder that dies does not block the
//!   others, who are told ([`LockError::OwnerDied`]) and can repair the data.
//! - [`Value<T>`], [`RawValue<T>`], [`Array<T>`], [`RawArray<T>`]: typed views of shared
//!   memory for any `T: bytemuck::Pod`, mapped in place.
//!
//! Every object is one segment, found by name: `create` in one process, `open` in another.
//!
//! ```
//! use shmkit::Value;
//! # let name = format!("doc-lib-{}", std::process::id());
//! let counter = Value::<u64>::create(&name, 0)?;
//! // Another process: `let counter = Value::<u64>::open(&name)?;`
//! *counter.lock()? += 1;
//! assert_eq!(counter.get()?, 1);
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! # Trust
//! Everything another process can write is treated as untrusted: headers, lock words and
//! lengths are read once, checked, and only then used. A peer that writes garbage can make
//! calls fail with [`Error::Corrupt`]; it cannot make this crate read or write out of
//! bounds, panic or wait for ever. Payload bytes are the peers' business: payload types are
//! `Pod`, so any bytes are a valid value.

#![deny(missing_docs, missing_debug_implementations, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "shmkit supports Linux only for now: it relies on futexes, memfd and OFD locks. \
     Ports add their own `os` module."
);

mod array;
mod channel;
mod error;
mod failpoint;
mod inspect;
mod os;
mod primitive;
mod segment;
mod sync;
mod value;

pub use array::{Array, RawArray};
pub use channel::pipe::Pipe;
pub use channel::{frames, mpmc, spsc, SendError, WaitStrategy};
pub use error::{Error, LockError, LockResult, Result};
pub use inspect::{inspect, Inspection};
pub use segment::{
    clean, list, unlink, CleanMode, CreationMode, Kind, Options, Segment, SegmentInfo, MAX_NAME_LEN,
};
pub use sync::{
    Barrier, BarrierWaitResult, BoundedSemaphore, Condvar, Event, Mutex, MutexGuard, Semaphore,
    SemaphoreGuard, WaitTimeoutResult,
};
pub use sync::{ReentrantMutex, ReentrantMutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use value::{AtomicPod, RawValue, Value};

/// The byte layout of the shared structures, for shmkit's own tests and fuzz targets: not
/// part of the stable API.
#[doc(hidden)]
#[path = "layout.rs"]
pub mod __layout;

/// Support for shmkit's own benchmarks and tests: not part of the stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::os::pin_to_cpu;
}

/// In-process forms of the synchronisation algorithms, for the loom models in
/// `tests/loom.rs` (built only with `--cfg loom`).
#[cfg(loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::channel::HandshakeModel;
    pub use crate::primitive::process::{die_after, quiet_kills, Killed};
    pub use crate::sync::barrier::BarrierState;
    pub use crate::sync::condvar::CondState;
    pub use crate::sync::event::EventState;
    pub use crate::sync::semaphore::SemState;
}
