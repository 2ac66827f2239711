//! # shmkit
//!
//! Inter-process communication over shared memory, for Linux: what Python's
//! `multiprocessing` gives processes (shared values and arrays, process-shared locks,
//! queues), done for Rust: zero copies, validated shared state, and failures that are
//! errors, never hangs.
//!
//! Every object is one shared-memory segment found by name: `create` it in one process,
//! `open` it in the others (its kind, element type and size are checked first),
//! `open_or_create` when any of them may come first. Pass the *name* to a worker (an
//! argument, an environment variable); the creator's handle removes the name when it drops.
//!
//! ```
//! use shmkit::Value;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     # let name = shmkit::__private::test_name("doc-lib");
//!     let counter = Value::<u64>::create(&name, 0)?;
//!     // In another process: let counter = Value::<u64>::open(&name)?;
//!     *counter.lock()? += 1; // a holder that died is an error here, not a hang
//!     assert_eq!(counter.get()?, 1);
//!     Ok(())
//! }
//! ```
//!
//! # What there is
//! | | |
//! |---|---|
//! | shared data | [`Value<T>`] and [`Array<T>`] (with a robust lock), [`RawValue<T>`] and [`RawArray<T>`] (without), for any `T:` [`Pod`](bytemuck::Pod), mapped in place |
//! | locks | [`Mutex<T>`] (robust: a holder that dies is reported as [`Error::OwnerDied`], never a deadlock, and repaired through [`LockError::OwnerDied`]), [`RwLock<T>`], [`ReentrantMutex`] |
//! | signalling | [`Semaphore`], [`BoundedSemaphore`], [`Event`], [`Condvar`], [`Barrier`] |
//! | channels | [`spsc`] and [`mpmc`] rings of typed slots, [`frames`] (variable-length byte records: the FloatChannel done right), [`Pipe`] (two frame rings) |
//! | processes | [`process::Process`] and [`process::Pool`] (a registered function in a re-executed copy of this binary), [`Queue`] and [`JoinableQueue`] for any serde type, [`SharedDict`] and [`SharedList`] |
//! | async | [`aio::Async`] (await receiving from and sending into any channel or queue), `Event::wait_async`, `Semaphore::acquire_async`, `Process::join_async`, [`AsyncResult`](process::AsyncResult) as a future (the `tokio` feature) |
//! | segments | [`Segment`] (raw bytes with a validated header), [`Options`], anonymous objects for `fork`ed children |
//! | operators | [`list`], [`inspect`], [`clean`], [`unlink`] (also as `shmkit list/inspect/clean`) |
//!
//! Every blocking call has a `try_` form that never blocks and a `_timeout` form; a peer
//! that dies is detected through a lock the kernel releases at its death, never by pid.
//!
//! # Conventions
//! - Every object: `create` (exclusive), `open` (checked), `open_or_create` (race-free),
//!   `anonymous` (for `fork`), `with_options` ([`Options`], [`CreationMode`]),
//!   `is_creator`, `segment`.
//! - Every blocking call has a `try_` form (never blocks: [`Error::WouldBlock`]) and a
//!   `_timeout` form ([`Error::Timeout`]).
//! - Channels, as `std::sync::mpsc` and crossbeam: `send`/`try_send`/`send_timeout`;
//!   `recv`/`try_recv`/`recv_timeout` return an owned copy; `recv_ref…` a guard in place;
//!   `iter`/`try_iter` yield `Result`s and end on disconnection.
//! - Locks: `lock`/`read`/`write` return [`Result`], so `?` works everywhere; the
//!   `…_recover` forms return [`LockResult`] to repair what a dead holder left.
//! - A call that can fail returns `Result`; one that cannot returns `()`:
//!   [`Event::set`] and [`Condvar::notify_all`] cannot fail, while
//!   [`Semaphore::release`] can ([`Error::Overflow`] past the bound or the largest count).
//!   Loans' `commit` returns `Result` on every channel, as mpmc's can fail (its slot
//!   skipped meanwhile by a receiver that took the sender for dead).
//!
//! # Your own types in shared memory
//! Anything that is plain data (`Copy`, no pointers, no padding, every bit pattern valid)
//! can live in shared memory: derive [`Pod`](bytemuck::Pod) through the re-exported
//! [`bytemuck`] (no second dependency needed). Arrays of any length are `Pod` too.
//!
//! ```
//! use shmkit::bytemuck::{Pod, Zeroable};
//!
//! #[derive(Clone, Copy, Pod, Zeroable)]
//! #[bytemuck(crate = "shmkit::bytemuck")]
//! #[repr(C)]
//! struct Order {
//!     id: u64,
//!     price: f64,
//!     qty: [u32; 2],
//! }
//!
//! # let name = shmkit::__private::test_name("doc-lib-pod");
//! let book = shmkit::Mutex::create(&name, Order { id: 1, price: 9.5, qty: [3, 0] })?;
//! book.lock()?.qty[1] += 1;
//! assert_eq!(book.lock()?.qty, [3, 1]);
//! let _ = shmkit::Value::<[u8; 100]>::anonymous([0; 100])?;
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! # Starting workers
//! shmkit shares memory between processes you start: re-run your own binary with an
//! argument that says which role to play, and pass the object names to it. The examples
//! (`examples/`, each mirroring a classic `multiprocessing` program) show the pattern;
//! the README has a table from Python's names to these.
//!
//! # Trust
//! Two kinds of access, with different promises:
//!
//! - **Control state is always validated.** Headers, lock words, positions, lengths and
//!   sequence numbers that another process can write are read once, checked, and only then
//!   used. A peer that writes garbage can make calls fail with [`Error::Corrupt`] (or
//!   time out); it cannot make this crate read or write out of bounds, panic, allocate
//!   without bound or wait for ever.
//! - **In-place views assume cooperating peers.** A guard that derefs into shared memory,
//!   [`MutexGuard`], [`RwLockReadGuard`]/[`RwLockWriteGuard`], the channels'
//!   `recv_ref` guards, loans and [`frames::Frame`], gives you `&T` / `&mut T` over memory
//!   that a peer *could* write at the same moment if it broke the protocol. Payload types
//!   are `Pod`, so any bytes are a valid value (no undefined behaviour from the bytes
//!   themselves), but a misbehaving peer can change what you read while you read it. Use
//!   them between processes you trust (your own workers); that is what makes them zero-copy.
//! - **Copies are safe against hostile peers.** The channels' `recv` family copies the
//!   message out and re-validates it, [`RawValue::get`] and [`RawArray::read`] copy,
//!   [`Value::get`] and [`Array::to_vec`] copy under the lock: what you get is a value that
//!   is yours, validated where the protocol can tell.
//!
//! Segments are created with mode `0600` and opened only if they belong to this user and
//! nobody else can write them, unless [`Options::trust_shared`] says otherwise.

#![deny(missing_docs, missing_debug_implementations, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(not(target_os = "linux"))]
compile_error!(
    "shmkit supports Linux only for now: it relies on futexes, memfd and OFD locks. \
     Ports add their own `os` module."
);

mod admin;
pub mod aio;
mod array;
mod channel;
pub mod codec;
mod collections;
mod copy;
mod error;
mod object;
mod os;
mod primitive;
pub mod process;
pub mod queue;
mod segment;
mod sync;
mod value;

pub use admin::{clean, inspect, list, unlink, CleanMode, Inspection, SegmentInfo};
pub use array::{Array, RawArray};
pub use channel::pipe::{Pipe, PipeHolder};
pub use channel::{frames, mpmc, spsc, SendError, WaitStrategy};
pub use collections::{Recovery, SharedDict, SharedList};
pub use error::{Error, LockError, LockResult, Result};
pub use process::init;
pub use queue::{JoinableQueue, Queue};
pub use segment::{CreationMode, Kind, Options, Segment, MAX_NAME_LEN};
pub use sync::{
    Barrier, BarrierWaitResult, BoundedSemaphore, Condvar, Event, Mutex, MutexGuard, Semaphore,
    SemaphoreGuard, WaitTimeoutResult,
};
pub use sync::{ReentrantMutex, ReentrantMutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
pub use value::{AtomicPod, RawValue, Value};

/// The crate shmkit's payload traits come from, re-exported: derive `Pod` and `Zeroable`
/// for your own types with `#[bytemuck(crate = "shmkit::bytemuck")]` (see the crate docs).
pub use bytemuck;

/// The byte layout of the shared structures, for shmkit's own tests and fuzz targets: not
/// part of the stable API.
#[doc(hidden)]
#[path = "layout.rs"]
pub mod __layout;

/// Support for shmkit's own benchmarks and tests: not part of the stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::os::pin_to_cpu;
    /// For `shmkit::task!`'s registration.
    pub use inventory;

    /// For the fuzz target `process_wire`: parses `frame` as a message between a pool and
    /// its worker, reads every item, and decodes each as a reply of a task returning
    /// `(String, Vec<u64>)`. Out-of-line bodies are refused (they name segments).
    pub fn fuzz_process_message(frame: &[u8]) -> usize {
        crate::process::fuzz_message(frame)
    }

    /// For the tests of a dict's lock stripes: the slot where `key`'s probe starts, and
    /// that slot's stripe.
    pub fn dict_home<K, V>(d: &crate::SharedDict<K, V>, key: &K) -> crate::Result<(usize, usize)>
    where
        K: serde::Serialize + serde::de::DeserializeOwned + Eq,
        V: serde::Serialize + serde::de::DeserializeOwned,
    {
        d.home_of(key)
    }

    /// How many async doorbells this process has rung (one `sendto` each): the tests
    /// check that a channel without async waiters makes none.
    pub fn doorbell_rings() -> u64 {
        crate::os::doorbell::RINGS.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// For the fuzz target `queue_slot`: `bytes` as a slot of a `Queue<(String, Vec<u64>)>`
    /// and of a `Queue<[u32; 3], codec::Pod>`; whether each decoded.
    pub fn fuzz_queue_slot(bytes: &[u8]) -> (bool, bool) {
        crate::queue::fuzz_slot(bytes)
    }

    /// A segment name for a test or doc test: `t.RUN.WHAT.PID`, where `RUN` is
    /// `$SHMKIT_TEST_RUN` (CI sets a value unique to the run, so that its leak check counts
    /// only this run's segments, whatever else runs on the machine) or `local`.
    pub fn test_name(what: &str) -> String {
        let run = std::env::var("SHMKIT_TEST_RUN")
            .ok()
            .filter(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric()))
            .unwrap_or_else(|| "local".to_owned());
        format!("t.{run}.{what}.{}", std::process::id())
    }
}

/// In-process forms of the synchronisation algorithms, for the loom models in
/// `tests/loom.rs` (built only with `--cfg loom`).
#[cfg(loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::channel::{BellModel, HandshakeModel};
    pub use crate::primitive::process::{die_after, quiet_kills, Killed};
    pub use crate::sync::barrier::BarrierState;
    pub use crate::sync::condvar::CondState;
    pub use crate::sync::event::EventState;
    pub use crate::sync::semaphore::SemState;

    /// Moves the modelled clock on by `ms` milliseconds (`restart`: sets it to `ms`, for
    /// the start of a model's iteration); sleepers' slices run out.
    pub fn advance_clock(ms: u64, restart: bool) {
        crate::primitive::advance_clock(ms, restart);
    }

    /// Whether a producer of `q` has taken the queue's turn.
    pub fn turn_taken<T, C: crate::codec::Codec<T>>(q: &crate::Queue<T, C>) -> bool {
        q.turn_taken()
    }
}
