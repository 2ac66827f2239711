//! The process layer: run Rust functions in worker processes ([`Process`], [`Pool`]),
//! Python's `multiprocessing.Process` and `Pool` without `fork` and without hangs.
//!
//! # Three pieces
//! 1. **Tasks.** A function that workers can run is defined with [`task!`](crate::task):
//!    it keeps its signature (arguments and result are any serde types) and is registered
//!    at compile time under its path and a fingerprint of its types.
//! 2. **The worker entry.** A worker is this same binary, re-executed
//!    (`/proc/self/exe`), never a `fork` of the caller: after `fork` a multi-threaded
//!    process may only call async-signal-safe functions, which is why Python moved away
//!    from it. The new process must reach shmkit before it does anything else:
//!    - in a program: call [`shmkit::init()`](crate::init) first thing in `main` (it
//!      returns at once in the parent and never returns in a worker);
//!    - in a test binary (`cargo test`, where libtest owns `main`): put
//!      [`shmkit::test_support!()`](crate::test_support) at the top level of the test
//!      crate; the worker re-runs the harness with only that entry selected;
//!    - in a criterion benchmark (`harness = false`): write `main` yourself and call
//!      `shmkit::init()` before `criterion_main`'s functions.
//! 3. **Handles.** [`Process::spawn`] runs one call; a [`Pool`] keeps workers and feeds
//!    them calls (`map`, `imap`, `imap_unordered`, `apply`, `apply_async`).
//!
//! ```
//! use shmkit::process::Pool;
//!
//! shmkit::task! {
//!     fn square(x: u64) -> u64 { x * x }
//! }
//!
//! # shmkit::init();
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! # Failures are errors, never hangs
//! A panic in a task is [`Error::Panicked`](crate::Error::Panicked) with its message; a
//! worker killed mid-task fails that task with
//! [`Error::ProcessDied`](crate::Error::ProcessDied) (naming the process and the signal)
//! and is replaced; a task or initializer the worker cannot run is
//! [`Error::Worker`](crate::Error::Worker); an argument or result that cannot be encoded is
//! [`Error::Codec`](crate::Error::Codec) for that call. Workers
//! die with their parent (a parent-death signal, set up by a thread that lives as long as
//! the process), ignore SIGINT, and inherit no stray descriptors.
//!
//! # Files
//! - `task`: the [`Task`] trait, the [`task!`](crate::task) macro, the registry.
//! - `child`: spawning (one long-lived spawner thread), pidfds, [`ExitStatus`].
//! - `wire`: the messages between parent and worker.
//! - `worker`: what a worker process runs.
//! - `link`: the parent's side of one worker.
//! - `handle`: [`Process`].
//! - `pool`: [`Pool`], its builder, [`AsyncResult`] and the dispatcher thread.
//!
//! This module uses `channel` (frame rings), `sync` (an `Event` as the pool's doorbell),
//! `array` (the pool's in-flight slots) and `segment`; nothing below knows it exists.

mod child;
mod handle;
mod link;
mod pool;
mod task;
mod wire;
mod worker;

pub use child::ExitStatus;
pub use handle::Process;
pub use pool::{AsyncResult, Imap, Pool, PoolBuilder};
pub use task::Task;
#[doc(hidden)]
pub use task::{
    cached_fingerprint as __cached_fingerprint, fingerprint as __fingerprint, Registration,
};

/// See `shmkit::__private::fuzz_process_message`: how many items decoded.
pub(crate) fn fuzz_message(frame: &[u8]) -> usize {
    if frame.len() >= 4
        && u32::from_le_bytes(frame[..4].try_into().expect("4")) & wire::OUT_OF_LINE != 0
    {
        return 0;
    }
    let Ok(msg) = wire::Msg::parse(frame.to_vec(), "fuzz.x") else {
        return 0;
    };
    msg.items()
        .filter_map(|i| i.ok())
        .filter(|(status, bytes)| {
            link::item_result::<(String, Vec<u64>)>(*status, bytes, "fuzz", 1).is_ok()
        })
        .count()
}

/// The worker entry: call it first thing in `main`.
///
/// In a process that shmkit started as a worker, it runs the worker (the calls its parent
/// sends) and exits the process: it never returns. Anywhere else it returns at once, so
/// the parent goes on with `main`. Call it before anything that starts threads, parses
/// arguments or prints: a worker's command line is not the program's.
///
/// ```
/// # #[allow(clippy::needless_doctest_main)]
/// fn main() {
///     shmkit::init();
///     // ... the program, which may start `shmkit::process::Process`es and `Pool`s
/// }
/// ```
pub fn init() {
    let Some(spec) = std::env::var_os(child::WORKER_ENV) else {
        return;
    };
    // A process the worker itself starts (a command, a nested pool) must not take itself
    // for this worker: forget the spec. The worker has no other thread yet (this is the
    // first thing in `main`), so changing the environment races with nothing.
    std::env::remove_var(child::WORKER_ENV);
    let code = worker::main(&spec.to_string_lossy());
    std::process::exit(code);
}

/// The worker entry of a test binary: `shmkit::test_support!();` at the top level of
/// each test crate (an integration test file, or `lib.rs`/`main.rs` for unit tests) that
/// starts [`Process`]es or [`Pool`]s.
///
/// libtest owns a test binary's `main`, so the worker re-runs the binary asking for the
/// one test this macro defines, `__shmkit_worker`, which calls [`init`]. In the normal
/// test run that test returns at once.
#[macro_export]
macro_rules! test_support {
    () => {
        #[test]
        fn __shmkit_worker() {
            $crate::init();
        }
    };
}
