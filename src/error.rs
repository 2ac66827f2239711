//! The one error type of the crate.
//!
//! Every fallible call returns [`Result<T>`](crate::Result). The variants are the
//! cases a caller can act on; each message says what happened and, where there is
//! something to do, what to do about it. A lock whose holder died is
//! [`Error::OwnerDied`] for the plain calls; the recovering calls (`lock_recover`, ...)
//! return [`LockResult`], whose [`LockError::OwnerDied`] hands over the guard to repair
//! the data. A `LockError` deliberately does not convert into an `Error` with `?`: that
//! would drop a guard unrepaired and make the lock unrecoverable; match on it.

use std::fmt;
use std::io;

/// What went wrong.
///
/// Match on the variants a caller can act on; every message also reads well on its own.
///
/// ```
/// use shmkit::{Error, Value};
/// # let name = shmkit::__private::test_name("doc-error");
/// match Value::<u64>::open(&name) {
///     Err(Error::NotFound { .. }) => { /* not created yet: create it, or wait */ }
///     Err(Error::LayoutMismatch { what, .. }) => panic!("another type lives there: {what}"),
///     Err(e) => return Err(e),
///     Ok(v) => { let _ = v.get()?; }
/// }
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No segment exists under this name.
    #[error("shared-memory object `{name}` does not exist; create it first or check the name")]
    NotFound {
        /// The user-facing name that was looked up.
        name: String,
    },

    /// A segment already exists under this name.
    #[error(
        "shared-memory object `{name}` already exists; open it instead, or remove the stale one \
         (`shmkit::unlink`)"
    )]
    AlreadyExists {
        /// The user-facing name.
        name: String,
    },

    /// The segment is a valid shmkit segment, but of another kind, type or shape than the
    /// caller asked for (for example a `Value<u64>` opened as an `Array<f32>`).
    #[error("shared-memory object `{name}` does not match: {what}")]
    LayoutMismatch {
        /// The user-facing name.
        name: String,
        /// Which field differs, with the expected and the found value.
        what: String,
    },

    /// Shared state failed validation: a header, a position, a length or a lock word holds
    /// a value that a correct peer never writes. Nothing out of bounds was touched.
    #[error("shared state is corrupt: {what}")]
    Corrupt {
        /// What was found invalid.
        what: String,
    },

    /// The operation did not complete before its deadline.
    #[error("the operation timed out")]
    Timeout,

    /// A non-blocking operation could not complete now (the lock is held, nothing is ready).
    #[error("the operation would block")]
    WouldBlock,

    /// Every peer on the other side is gone.
    #[error("the peer has disconnected")]
    Disconnected,

    /// A process died holding the lock, and the data it protects has not been repaired
    /// since: it may be half-updated. The plain lock calls (`lock`, `read`, `write`, ...)
    /// report this and leave the lock free and the data marked inconsistent, so that every
    /// later locker is told too; the `*_recover` calls hand over the guard to repair it.
    /// A [`SharedDict`](crate::SharedDict) or [`SharedList`](crate::SharedList) repairs
    /// itself in `recover()`.
    #[error(
        "a process died holding the lock, so the protected data may be half-updated; lock it \
         with `lock_recover` (or `write_recover`) to repair it and call `mark_consistent` (a \
         shared dict or list: call `recover`)"
    )]
    OwnerDied,

    /// A lock whose owner died was released without being marked consistent; it can no longer
    /// be locked. Re-create the object.
    #[error(
        "the lock is not recoverable: a previous owner died and the lock was released without \
         `mark_consistent`; re-create the object"
    )]
    NotRecoverable,

    /// The segment is not ours to trust (another owner, or writable by group or others), or
    /// the operating system refused access.
    #[error("permission denied for `{name}`: {reason}")]
    PermissionDenied {
        /// The user-facing name.
        name: String,
        /// Why access was refused.
        reason: String,
    },

    /// The name is not a valid shmkit object name.
    #[error("invalid name `{name}`: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What rule it breaks.
        reason: &'static str,
    },

    /// There is not enough room in shared memory (the tmpfs behind `/dev/shm`, or the
    /// memory limit behind an anonymous segment) for a segment of this size. Reported when
    /// the segment is created, so that no access to it can fail later.
    #[error(
        "not enough shared memory for a segment of {size} bytes: {free} bytes are free; \
         free some (shmkit clean), ask for less, or enlarge the tmpfs"
    )]
    NoSpace {
        /// The size of the segment asked for, in bytes (header and body, rounded to a page).
        size: u64,
        /// The bytes free when it was refused (0 if unknown).
        free: u64,
    },

    /// An index or a length is outside the object.
    #[error("index {index} is out of bounds for length {len}")]
    OutOfBounds {
        /// The index or length asked for.
        index: usize,
        /// The object's length.
        len: usize,
    },

    /// The endpoint or resource is held by another live process (a second sender of a
    /// single-producer channel, for instance).
    #[error("{what} is held by another live process")]
    Busy {
        /// What is held.
        what: String,
    },

    /// A barrier is broken: a party timed out, died, or called `reset` while others waited
    /// (Python's `BrokenBarrierError`). Call `reset` to use it again.
    #[error(
        "the barrier is broken: a party timed out, died or reset it; call `reset` to reuse it"
    )]
    BrokenBarrier,

    /// A counter would exceed its limit: a `BoundedSemaphore` released more often than it
    /// was acquired (Python's `ValueError`), a semaphore past its largest value, or a
    /// `SharedDict` or `SharedList` that already holds its capacity.
    #[error("past the limit: the count would exceed {limit}")]
    Overflow {
        /// The largest value allowed.
        limit: u64,
    },

    /// A task panicked in its worker process; the pool or process goes on.
    #[error("task `{task}` panicked in process {pid}: {message}")]
    Panicked {
        /// The task's registered name.
        task: String,
        /// The worker process.
        pid: u32,
        /// The panic's message.
        message: String,
    },

    /// A worker process died (killed by a signal, or it exited) before it replied: the
    /// task it was running, if any, fails with this error; a pool replaces the worker.
    #[error("process {pid} {status}{}", died_while(task))]
    ProcessDied {
        /// The worker process.
        pid: u32,
        /// How it ended.
        status: crate::process::ExitStatus,
        /// The task it was running (`None` when it died between tasks).
        task: Option<String>,
    },

    /// A worker process cannot run the task: the function is not registered in its
    /// binary, its signature differs, its initializer failed, or the process never
    /// reached `shmkit::init()`.
    #[error("worker process {pid} cannot run `{task}`: {reason}")]
    Worker {
        /// The worker process (0 if none was started).
        pid: u32,
        /// The task (or initializer) it was asked to run.
        task: String,
        /// Why not.
        reason: String,
    },

    /// Items of a `JoinableQueue` were taken by consumers that died before `task_done`:
    /// `join` cannot see them done (Python's `join` would wait forever).
    #[error(
        "{count} item(s) were taken by consumers that died before calling task_done; they \
         were not done"
    )]
    TasksLost {
        /// How many items the dead consumers held.
        count: u64,
    },

    /// A value could not be encoded, or bytes could not be decoded, with the codec
    /// (postcard by default): the one message fails, not the channel or the pool.
    #[error("codec: {what}")]
    Codec {
        /// What failed, and why.
        what: String,
    },

    /// An argument is outside what the call accepts (a zero capacity, a size too large).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// An operating-system call failed.
    #[error("{op} failed: {source}")]
    Io {
        /// The system call or step that failed.
        op: &'static str,
        /// The error the operating system returned.
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        Error::Corrupt { what: what.into() }
    }

    pub(crate) fn io(op: &'static str, source: io::Error) -> Self {
        Error::Io { op, source }
    }
}

/// The end of [`Error::ProcessDied`]'s message: the task, if one was running.
fn died_while(task: &Option<String>) -> String {
    match task {
        Some(t) => format!(" while running `{t}`"),
        None => " before it replied".to_owned(),
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error of a recovering lock operation (`lock_recover`, `write_recover`, ...): either
/// a previous owner died (and the caller holds the lock now, through the guard carried
/// here, to repair the data), or an [`Error`].
///
/// This is `std`'s `PoisonError` idea made for processes. The plain calls (`lock`, ...)
/// return `shmkit::Result` instead, so that `?` works everywhere (into `Box<dyn Error>` or
/// `anyhow` too): a dead owner is [`Error::OwnerDied`] there, and the lock is left free and
/// marked inconsistent for a recovering call to repair. A guard from a recovering call that
/// is dropped without `mark_consistent` makes the lock not recoverable, so that nobody
/// later mistakes half-updated data for valid data.
///
/// ```
/// use shmkit::{LockError, Mutex, MutexGuard};
/// # let name = shmkit::__private::test_name("doc-lockerror");
/// let m = Mutex::<[u64; 2]>::create(&name, [0, 0])?;
/// let mut g = match m.lock_recover() {
///     Ok(g) => g,
///     Err(LockError::OwnerDied(mut g)) => {
///         g[1] = g[0]; // repair what the dead holder left half-done
///         MutexGuard::mark_consistent(&g);
///         g
///     }
///     Err(LockError::Error(e)) => return Err(e),
/// };
/// g[0] += 1;
/// g[1] += 1;
/// # Ok::<(), shmkit::Error>(())
/// ```
pub enum LockError<G> {
    /// The previous owner died while holding the lock. The caller holds it now.
    OwnerDied(G),
    /// The lock was not acquired.
    Error(Error),
}

/// The result of a lock operation.
pub type LockResult<G> = std::result::Result<G, LockError<G>>;

impl<G> LockError<G> {
    /// The guard, if the previous owner died; `None` for the other errors.
    pub fn into_guard(self) -> Option<G> {
        match self {
            LockError::OwnerDied(g) => Some(g),
            LockError::Error(_) => None,
        }
    }

    /// Whether the previous owner died.
    pub fn is_owner_died(&self) -> bool {
        matches!(self, LockError::OwnerDied(_))
    }
}

/// A guard that can be let go without repairing what a dead owner left: the lock is released
/// and the data stays marked inconsistent (not made unrecoverable).
pub(crate) trait Unrepaired {
    fn release_unrepaired(self);
}

impl<G: Unrepaired, X> Unrepaired for (G, X) {
    fn release_unrepaired(self) {
        self.0.release_unrepaired();
    }
}

/// The plain lock calls from the recovering ones: a dead owner becomes
/// [`Error::OwnerDied`], with the lock released and the data still marked inconsistent, so
/// that the next locker is told too and a recovering call can still repair it.
#[inline]
pub(crate) fn plain<G: Unrepaired>(r: LockResult<G>) -> Result<G> {
    match r {
        Ok(g) => Ok(g),
        Err(LockError::OwnerDied(g)) => {
            g.release_unrepaired();
            Err(Error::OwnerDied)
        }
        Err(LockError::Error(e)) => Err(e),
    }
}

impl<G> From<Error> for LockError<G> {
    fn from(e: Error) -> Self {
        LockError::Error(e)
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::Error(e) => f.debug_tuple("Error").field(e).finish(),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => fmt::Display::fmt(&Error::OwnerDied, f),
            LockError::Error(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl<G> std::error::Error for LockError<G> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LockError::OwnerDied(_) => None,
            LockError::Error(e) => e.source(),
        }
    }
}

impl<G> LockError<G> {
    /// Maps the guard carried by `OwnerDied`.
    pub fn map<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(g) => LockError::OwnerDied(f(g)),
            LockError::Error(e) => LockError::Error(e),
        }
    }
}
