//! [`Process`]: one task in a new process (Python's `multiprocessing.Process`).

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use super::child::ExitStatus;
use super::link::{fresh_name, item_result, Link};
use super::task::Task;
use super::wire::{self, Builder};
use crate::codec::{Codec, Postcard};
use crate::error::{Error, Result};

/// The rings of a single process: small; a larger argument or result goes out of line.
const RING: usize = 64 << 10;

/// How often a join looks at the process while no reply comes (a reply wakes it at once).
const LOOK: Duration = Duration::from_millis(20);

/// A task running in a process of its own: a re-executed copy of this binary (never a
/// `fork` of this one), started by [`Process::spawn`].
///
/// The handle is Python's `Process` after `start()`: [`pid`](Self::pid),
/// [`join`](Self::join) (which also returns the function's result),
/// [`join_timeout`](Self::join_timeout), [`is_alive`](Self::is_alive),
/// [`terminate`](Self::terminate) (SIGTERM), [`kill`](Self::kill) (SIGKILL) and
/// [`exit_status`](Self::exit_status) (Python's `exitcode`). Where Python reports a crash
/// only as an exit code, `join` says what happened: [`Error::Panicked`] with the panic's
/// message, [`Error::ProcessDied`] with the signal.
///
/// The process dies with its parent (the kernel sends it SIGKILL when this process exits,
/// however it exits), ignores SIGINT (Ctrl-C is for the parent to handle), and inherits
/// no descriptor but stdin (`/dev/null`), stdout and stderr. Dropping the handle of a
/// process that still runs kills it: join it to let it finish.
///
/// ```
/// use shmkit::process::Process;
///
/// shmkit::task! {
///     fn add(a: u64, b: u64) -> u64 { a + b }
/// }
///
/// # shmkit::init();
/// let p = Process::spawn(add, (2, 3))?;
/// println!("started process {}", p.pid());
/// assert_eq!(p.join()?, 5);
/// # Ok::<(), shmkit::Error>(())
/// ```
///
/// (The worker side: a program calls [`shmkit::init()`](crate::init) first thing in
/// `main`; a test binary has [`shmkit::test_support!()`](crate::test_support).)
pub struct Process<T: Task> {
    link: Link,
    result: Option<Result<T::Output>>,
    taken: bool,
    _task: PhantomData<T>,
}

impl<T: Task> Process<T> {
    /// Starts `task(arg)` in a new process. The argument is encoded here: one that cannot
    /// be is [`Error::Codec`], and no process is started.
    pub fn spawn(task: T, arg: T::Arg) -> Result<Process<T>> {
        let _ = task;
        let mut call = Builder::new();
        let mut failed = None;
        call.item(|buf| {
            if let Err(e) = Postcard::encode(&arg, buf) {
                failed = Some(e);
            }
            wire::OK
        });
        if let Some(e) = failed {
            return Err(e);
        }
        let mut link = Link::start(fresh_name(), RING, None, None)?;
        let sent = link.send(call.finish(wire::CALL, 1, T::fingerprint()));
        let sent = sent.and_then(|()| link.send(&wire::frame(wire::STOP, 0, 0, 0, &[])));
        let mut p = Process {
            link,
            result: None,
            taken: false,
            _task: PhantomData,
        };
        if let Err(e) = sent {
            // It died before it could take its call; join reports how.
            p.result = Some(Err(e));
        }
        Ok(p)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.link.pid()
    }

    /// Whether it still runs.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.link.child.try_status(), Ok(None))
    }

    /// How it ended (exit code or signal), or `None` while it runs; never blocks.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.link.child.try_status().ok().flatten()
    }

    /// Sends SIGTERM.
    pub fn terminate(&mut self) -> Result<()> {
        self.link.child.signal(libc::SIGTERM)
    }

    /// Sends SIGKILL.
    pub fn kill(&mut self) -> Result<()> {
        self.link.child.signal(libc::SIGKILL)
    }

    /// Waits for the process to end and returns what the function returned:
    /// [`Error::Panicked`] if it panicked, [`Error::ProcessDied`] if the process died
    /// before it replied (killed, or it exited), [`Error::Worker`] if it could not run the
    /// function at all.
    pub fn join(mut self) -> Result<T::Output> {
        self.wait(None)
    }

    /// [`join`](Self::join) without blocking the thread (tokio): waits for the process to
    /// end (on its pidfd, through the reactor), then takes its result. Cancel-safe:
    /// dropping the future drops the `Process`, which kills the process as a dropped
    /// `Process` does.
    ///
    /// ```
    /// use shmkit::process::Process;
    ///
    /// shmkit::task! { fn square(x: u64) -> u64 { x * x } }
    ///
    /// # shmkit::init();
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let p = Process::spawn(square, 12)?;
    /// assert_eq!(p.join_async().await?, 144);
    /// # Ok::<(), shmkit::Error>(())
    /// # }).unwrap();
    /// ```
    #[cfg(feature = "tokio")]
    pub async fn join_async(mut self) -> Result<T::Output> {
        self.link.child.exit_async().await?;
        self.join()
    }

    /// [`join`](Self::join), waiting at most `timeout`: [`Error::Timeout`] if it still
    /// runs (call again to go on waiting). Once it has returned anything else, the result
    /// is taken: a later call is [`Error::InvalidArgument`].
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<T::Output> {
        self.wait(Some(Instant::now() + timeout))
    }

    fn wait(&mut self, deadline: Option<Instant>) -> Result<T::Output> {
        if self.taken {
            return Err(Error::InvalidArgument(
                "this process's result was taken by an earlier join".into(),
            ));
        }
        let left = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
        while self.result.is_none() {
            if left() == Some(Duration::ZERO) {
                return Err(Error::Timeout);
            }
            let slice = left().map_or(LOOK, |l| l.min(LOOK));
            match self.link.recv_timeout(slice) {
                Ok(Some(msg)) => self.result = Some(self.reply(msg)),
                Ok(None) => {
                    if self.link.child.try_status()?.is_some() {
                        // It ended: take a reply it may have sent just before.
                        self.result = Some(match self.link.try_recv() {
                            Ok(Some(msg)) => self.reply(msg),
                            _ => Err(self.died()),
                        });
                    }
                }
                Err(Error::Disconnected) => {
                    // Its end is gone: it exits (or died); its status comes soon.
                    let _ = self.link.child.wait_timeout(Some(Duration::from_secs(1)));
                    self.result = Some(Err(self.died()));
                }
                Err(e) => self.result = Some(Err(e)),
            }
        }
        if self.link.child.wait_timeout(left())?.is_none() {
            return Err(Error::Timeout);
        }
        self.taken = true;
        self.result.take().expect("set above")
    }

    /// The error for a process that ended without a reply.
    fn died(&mut self) -> Error {
        let pid = self.pid();
        match self.link.child.try_status() {
            Ok(Some(ExitStatus::Code(0))) => super::task::worker_error(
                pid,
                T::NAME,
                "it exited without running the task: call `shmkit::init()` first thing in \
                 `main` (or put `shmkit::test_support!()` in the test binary)",
            ),
            Ok(Some(status)) => Error::ProcessDied {
                pid,
                status,
                task: Some(T::NAME.to_owned()),
            },
            Ok(None) => Error::Disconnected,
            Err(e) => e,
        }
    }

    /// The result carried by reply `msg`.
    fn reply(&self, msg: wire::Msg) -> Result<T::Output> {
        if msg.kind() != wire::REPLY || msg.head.count != 1 {
            return Err(Error::corrupt(format!(
                "process {} answered with a message of kind {} and {} items",
                self.pid(),
                msg.kind(),
                msg.head.count
            )));
        }
        let (status, bytes) = msg.items().next().expect("count is 1")?;
        item_result(status, bytes, T::NAME, self.pid())
    }
}

impl<T: Task> fmt::Debug for Process<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("task", &T::NAME)
            .field("pid", &self.pid())
            .finish()
    }
}
