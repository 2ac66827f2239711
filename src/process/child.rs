//! Starting a copy of this binary as a worker, and watching it: [`Child`] and
//! [`ExitStatus`].
//!
//! Every worker is started by one long-lived thread of this process (the spawner), because
//! the kernel's parent-death signal, which a worker asks for first thing, fires when the
//! *thread* that started it exits: a worker started from a short-lived thread would be
//! killed with that thread. The spawner lives as long as the process, so a worker dies
//! with its parent process and not before.
//!
//! Waiting and signalling go through a pidfd where the kernel has them (Linux 5.3), and
//! fall back to `waitpid` polling and `kill`: both are safe from pid reuse here, because a
//! child's pid cannot be reused before its parent reaps it, which only [`Child`] does.

use std::ffi::OsString;
use std::fmt;
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::os::process as os;

/// The environment variable that makes a process a worker; its value is the worker's spec.
pub(crate) const WORKER_ENV: &str = "SHMKIT_WORKER";

/// The arguments a worker starts with. A binary that calls `shmkit::init()` first thing
/// never looks at them; a test harness (`cargo test`) reads them as "run only the test
/// `__shmkit_worker`, quietly", which is the entry [`test_support!`](crate::test_support)
/// defines.
const WORKER_ARGS: [&str; 5] = [
    "__shmkit_worker",
    "--exact",
    "--nocapture",
    "--test-threads=1",
    "-q",
];

/// How a process ended: Python's `exitcode`, as a type.
///
/// ```
/// use shmkit::process::ExitStatus;
/// assert_eq!(ExitStatus::Signal(9).to_string(), "was killed by signal 9 (SIGKILL)");
/// assert_eq!(ExitStatus::Code(3).code(), Some(3));
/// assert!(ExitStatus::Code(0).success());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it (Python reports `-signal`).
    Signal(i32),
}

impl ExitStatus {
    /// The exit code, if it exited.
    pub fn code(&self) -> Option<i32> {
        match *self {
            ExitStatus::Code(c) => Some(c),
            ExitStatus::Signal(_) => None,
        }
    }

    /// The signal that killed it, if one did.
    pub fn signal(&self) -> Option<i32> {
        match *self {
            ExitStatus::Signal(s) => Some(s),
            ExitStatus::Code(_) => None,
        }
    }

    /// Whether it exited with code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }

    fn from_std(s: std::process::ExitStatus) -> ExitStatus {
        match (s.code(), s.signal()) {
            (Some(c), _) => ExitStatus::Code(c),
            (None, Some(sig)) => ExitStatus::Signal(sig),
            // Stopped or continued: `wait` does not report those without WUNTRACED.
            (None, None) => ExitStatus::Code(-1),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Code(c) => write!(f, "exited with code {c}"),
            ExitStatus::Signal(s) => match signal_name(s) {
                Some(n) => write!(f, "was killed by signal {s} ({n})"),
                None => write!(f, "was killed by signal {s}"),
            },
        }
    }
}

/// The names of the signals that end processes (Linux numbering).
fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    })
}

/// A request to the spawner thread.
struct Request {
    cmd: Command,
    reply: mpsc::SyncSender<std::io::Result<std::process::Child>>,
}

/// The spawner thread's queue (the thread starts with the first worker).
fn spawner() -> Result<&'static mpsc::Sender<Request>> {
    static SPAWNER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    if let Some(s) = SPAWNER.get() {
        return Ok(s);
    }
    let (tx, rx) = mpsc::channel::<Request>();
    let started = std::thread::Builder::new()
        .name("shmkit-spawner".into())
        .spawn(move || {
            // Lives as long as the process: the queue's sender is in a static.
            for r in rx {
                let mut cmd = r.cmd;
                let _ = r.reply.send(cmd.spawn());
            }
        });
    if let Err(e) = started {
        return Err(Error::io("starting the worker-spawning thread", e));
    }
    // Two racing first callers: one thread's queue wins, the other thread exits when its
    // sender drops here.
    Ok(SPAWNER.get_or_init(|| tx))
}

/// A worker process of ours: spawned, watched, signalled and reaped here only.
pub(crate) struct Child {
    child: std::process::Child,
    pidfd: Option<OwnedFd>,
    status: Option<ExitStatus>,
}

impl Child {
    /// Starts this binary as a worker with `spec` in its environment.
    pub(crate) fn spawn(spec: &str) -> Result<Child> {
        let mut cmd = Command::new("/proc/self/exe");
        // The program's own name in `ps`, not "exe".
        cmd.arg0(
            std::env::args_os()
                .next()
                .unwrap_or_else(|| OsString::from("shmkit-worker")),
        )
        .args(WORKER_ARGS)
        .env(WORKER_ENV, spec)
        .stdin(Stdio::null());
        let (reply, answer) = mpsc::sync_channel(1);
        spawner()?.send(Request { cmd, reply }).map_err(|_| {
            Error::io(
                "starting a worker",
                std::io::Error::other("the spawner thread is gone"),
            )
        })?;
        let child = answer
            .recv()
            .map_err(|_| {
                Error::io(
                    "starting a worker",
                    std::io::Error::other("the spawner thread is gone"),
                )
            })?
            .map_err(|e| Error::io("starting a worker (re-executing /proc/self/exe)", e))?;
        // Not reaped yet, so the pid is still this child's (see the module docs).
        let pidfd = os::pidfd_open(child.id()).ok();
        Ok(Child {
            child,
            pidfd,
            status: None,
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How it ended, if it has (reaping it); never blocks.
    pub(crate) fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            match self.child.try_wait() {
                Ok(s) => self.status = s.map(ExitStatus::from_std),
                Err(e) => return Err(Error::io("waitpid", e)),
            }
        }
        Ok(self.status)
    }

    /// Waits at most `timeout` (`None`: without limit) for it to end.
    pub(crate) fn wait_timeout(&mut self, timeout: Option<Duration>) -> Result<Option<ExitStatus>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut nap = Duration::from_micros(200);
        loop {
            if let Some(s) = self.try_status()? {
                return Ok(Some(s));
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(None);
            }
            match &self.pidfd {
                Some(fd) => {
                    os::poll_readable(fd, left).map_err(|e| Error::io("poll(pidfd)", e))?;
                }
                None => {
                    // No pidfd (kernel before 5.3): poll the child's state, backing off.
                    std::thread::sleep(left.map_or(nap, |l| l.min(nap)));
                    nap = (nap * 2).min(Duration::from_millis(10));
                }
            }
        }
    }

    /// Waits for it to end without blocking the thread (tokio): on its pidfd, which
    /// becomes readable when it exits; without one (kernel before 5.3), by polling its
    /// state every 10 ms.
    #[cfg(feature = "tokio")]
    pub(crate) async fn exit_async(&mut self) -> Result<ExitStatus> {
        use tokio::io::unix::AsyncFd;
        let fd = match &self.pidfd {
            Some(fd) => Some(fd.try_clone().map_err(|e| Error::io("dup(pidfd)", e))?),
            None => None,
        };
        let afd = match fd {
            // SAFETY: the `AsyncFd` owns the duplicate descriptor, which stays open and
            // the same until the `AsyncFd` drops (it never gives it away).
            Some(fd) => Some(
                unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                    .map_err(|e| Error::io("registering a pidfd with tokio", e.into_parts().1))?,
            ),
            None => None,
        };
        loop {
            if let Some(s) = self.try_status()? {
                return Ok(s);
            }
            match &afd {
                Some(afd) => {
                    // Readable once it has exited: `try_status` then reaps it.
                    let mut ready = afd
                        .readable()
                        .await
                        .map_err(|e| Error::io("waiting for a pidfd", e))?;
                    if let Some(s) = self.try_status()? {
                        return Ok(s);
                    }
                    ready.clear_ready(); // spurious: wait again
                }
                None => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// Sends `sig`, unless it has been reaped already.
    pub(crate) fn signal(&mut self, sig: i32) -> Result<()> {
        if self.try_status()?.is_some() {
            return Ok(());
        }
        let r = match &self.pidfd {
            Some(fd) => os::pidfd_send_signal(fd, sig),
            None => os::kill(self.pid(), sig),
        };
        match r {
            Ok(()) => Ok(()),
            // Exited between our check and the signal: nothing to do.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(Error::io("signalling a worker", e)),
        }
    }

    /// SIGKILLs it (if it runs) and reaps it.
    pub(crate) fn kill_and_reap(&mut self) -> ExitStatus {
        let _ = self.signal(libc::SIGKILL);
        match self.child.wait() {
            Ok(s) if self.status.is_none() => {
                self.status = Some(ExitStatus::from_std(s));
            }
            _ => {}
        }
        self.status.unwrap_or(ExitStatus::Signal(libc::SIGKILL))
    }
}

impl fmt::Debug for Child {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.pid())
            .field("status", &self.status)
            .finish()
    }
}
