//! The one helper every multi-process test uses.
//!
//! Children are real processes: the test binary re-runs itself (`current_exe()`) with the
//! `__child` test selected and `SHMKIT_ROLE` naming what to do; every test file has a
//! `#[test] fn __child()` that calls [`child_main`] with its role table. No test forks
//! inside the multi-threaded harness.
//!
//! Names come from [`Names`], unique per test and process; dropping it removes whatever
//! segment of its prefix is left, also when the test panics. A child is killed when the
//! test thread that spawned it ends (`PR_SET_PDEATHSIG`), so a failed test leaves no child
//! behind.

#![allow(dead_code)]

pub mod msg;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const ROLE_ENV: &str = "SHMKIT_ROLE";
const ARG_PREFIX: &str = "SHMKIT_ARG_";

/// Runs the role named in the environment, if any, and exits the process with its outcome
/// (0: the role returned; 101: it panicked). Without a role it returns at once: the
/// `__child` entry then does nothing in the normal test run.
pub fn child_main(roles: &[(&str, fn())]) {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    // A child must not outlive the test that started it: when a test fails (its thread
    // unwinds without waiting for its children), a child blocked for ever would keep the
    // harness's inherited stderr open, and whatever reads it (CI) waiting. The kernel
    // kills it when the thread that spawned it ends.
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number; no memory is involved.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let f = roles
        .iter()
        .find(|(n, _)| *n == role)
        .unwrap_or_else(|| panic!("unknown child role {role}"))
        .1;
    let ok = std::panic::catch_unwind(f).is_ok();
    std::process::exit(if ok { 0 } else { 101 });
}

/// An argument passed to this child process.
pub fn arg(key: &str) -> String {
    std::env::var(format!("{ARG_PREFIX}{key}"))
        .unwrap_or_else(|_| panic!("missing child arg {key}"))
}

/// An argument parsed.
pub fn arg_as<T: std::str::FromStr>(key: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    arg(key).parse().expect("child arg parses")
}

/// Starts a child running `role`, with `args` (available through [`arg`]). Its stdout is
/// piped (see [`finish`]); stderr is inherited.
pub fn spawn(role: &str, args: &[(&str, String)]) -> Child {
    spawn_with_env(role, args, &[])
}

/// [`spawn`], with extra environment variables (such as `SHMKIT_FAILPOINT`).
pub fn spawn_with_env(role: &str, args: &[(&str, String)], env: &[(&str, &str)]) -> Child {
    let mut cmd = child_command(&[], role, args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child")
}

/// [`spawn`] under a wrapper command (e.g. `unshare --mount`), which runs the test binary
/// with the child's arguments; `Err` if the wrapper cannot be started.
pub fn spawn_wrapped(
    wrapper: &[&str],
    role: &str,
    args: &[(&str, String)],
) -> std::io::Result<Child> {
    child_command(wrapper, role, args).spawn()
}

/// The command that runs `role` in a child, to adjust before spawning it.
pub fn command(role: &str, args: &[(&str, String)]) -> Command {
    child_command(&[], role, args)
}

/// The command that runs `role` in a child (under `wrapper`, if any).
fn child_command(wrapper: &[&str], role: &str, args: &[(&str, String)]) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = match wrapper.split_first() {
        Some((w, rest)) => {
            let mut c = Command::new(w);
            c.args(rest).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args([
        "__child",
        "--exact",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(ROLE_ENV, role)
    .stdout(Stdio::piped())
    .stdin(Stdio::null());
    for (k, v) in args {
        cmd.env(format!("{ARG_PREFIX}{k}"), v);
    }
    cmd
}

/// What a child reported: its exit code (`None` if killed by a signal) and the
/// `key=value` pairs it printed with [`report`].
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub values: HashMap<String, String>,
}

impl Outcome {
    pub fn get<T: std::str::FromStr>(&self, key: &str) -> T
    where
        T::Err: std::fmt::Debug,
    {
        self.values
            .get(key)
            .unwrap_or_else(|| panic!("child did not report {key}: {self:?}"))
            .parse()
            .expect("reported value parses")
    }
}

/// Waits for a child and collects what it reported.
pub fn finish(child: Child) -> Outcome {
    use std::os::unix::process::ExitStatusExt;
    let out = child.wait_with_output().expect("wait for child");
    let text = String::from_utf8_lossy(&out.stdout);
    let values = text
        .lines()
        .filter_map(|l| l.strip_prefix("REPORT "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Outcome {
        code: out.status.code(),
        signal: out.status.signal(),
        values,
    }
}

/// Waits for a child and asserts that it exited successfully.
pub fn finish_ok(child: Child) -> Outcome {
    let o = finish(child);
    assert_eq!(o.code, Some(0), "child failed: {o:?}");
    o
}

/// Prints a `key=value` pair for the parent (children only).
pub fn report(key: &str, value: impl std::fmt::Display) {
    println!("REPORT {key}={value}");
}

/// Ends this (child) process with SIGKILL: a test-only failpoint at an exact step.
pub fn die_now() -> ! {
    // SAFETY: raising a signal has no memory-safety preconditions.
    unsafe { libc::raise(libc::SIGKILL) };
    unreachable!("SIGKILL is not survivable")
}

/// Spins (yielding) until `cond` holds; panics after `limit` so a broken test fails
/// instead of hanging.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "condition not reached within {limit:?}"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Waits (sleeping briefly) until `cond` holds or `limit` passes: whether it held.
pub fn try_wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    true
}

/// Unique segment names for one test; removes leftovers on drop.
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(test: &str) -> Names {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        Names {
            prefix: format!("{}.{n}", shmkit::__private::test_name(test)),
        }
    }

    pub fn name(&self, what: &str) -> String {
        format!("{}.{what}", self.prefix)
    }

    /// The prefix of every name this gives out.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Our segments (and creators' temporary files) still present in /dev/shm.
    pub fn leftovers(&self) -> Vec<String> {
        let os_prefix = format!("shmkit.{}.", self.prefix);
        let tmp_prefix = format!("shmkit~{}.", self.prefix);
        std::fs::read_dir("/dev/shm")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.starts_with(&os_prefix) || n.starts_with(&tmp_prefix))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        for f in self.leftovers() {
            let _ = std::fs::remove_file(format!("/dev/shm/{f}"));
        }
    }
}

/// SIGALRMs received while a [`SignalStorm`] ran (any thread of this process).
static ALARMS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_alarm(_: libc::c_int) {
    // Async-signal-safe: one atomic RMW.
    ALARMS.fetch_add(1, Ordering::Relaxed);
}

/// An interval timer that interrupts the calling thread with SIGALRM every `period`, from
/// `delay` on: a
/// no-op handler installed without `SA_RESTART`, so each signal ends a blocking system
/// call (a futex wait) of this thread with `EINTR`, as a profiler's or an application's
/// interval timer would. The timer is aimed at this thread (`SIGEV_THREAD_ID`): a
/// process-wide `setitimer(ITIMER_REAL)` delivers to the main thread, and libtest runs a
/// test on another one. Stopped on drop (the handler stays installed: the process ends).
pub struct SignalStorm {
    timer: libc::timer_t,
}

impl SignalStorm {
    pub fn start(delay: Duration, period: Duration) -> SignalStorm {
        // SAFETY: plain libc calls on zero-initialised, fully written C structs; the
        // handler only touches an atomic.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as libc::sighandler_t;
            sa.sa_flags = 0; // no SA_RESTART: the futex wait really returns EINTR
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut()), 0);
            let mut sev: libc::sigevent = std::mem::zeroed();
            sev.sigev_notify = libc::SIGEV_THREAD_ID;
            sev.sigev_signo = libc::SIGALRM;
            sev.sigev_notify_thread_id = libc::gettid();
            let mut timer: libc::timer_t = std::ptr::null_mut();
            assert_eq!(
                libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer),
                0,
                "timer_create: {}",
                std::io::Error::last_os_error()
            );
            let ts = |d: Duration| libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            };
            let spec = libc::itimerspec {
                it_interval: ts(period),
                it_value: ts(delay.max(Duration::from_nanos(1))),
            };
            assert_eq!(
                libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()),
                0
            );
            SignalStorm { timer }
        }
    }

    /// How many SIGALRMs this process has received so far.
    pub fn alarms() -> u32 {
        ALARMS.load(Ordering::Relaxed)
    }
}

impl Drop for SignalStorm {
    fn drop(&mut self) {
        // SAFETY: `timer` was created by `timer_create` and is deleted once.
        unsafe { libc::timer_delete(self.timer) };
    }
}

/// A current-thread tokio runtime with IO and time (the async tests).
#[cfg(not(loom))]
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A multi-thread tokio runtime of two workers with IO and time (the async tests).
#[cfg(not(loom))]
pub fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
