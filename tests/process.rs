//! The process layer across real processes: `Process` and `Pool`, their results and their
//! failures (RELIABILITY.md scenarios 20-22).

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{report, wait_until};
use serde::{Deserialize, Serialize};
use shmkit::process::{ExitStatus, Pool, Process};
use shmkit::Error;

shmkit::test_support!();

#[test]
fn __child() {
    common::child_main(&[("pool_parent", pool_parent)]);
}

shmkit::task! {
    fn add(a: u64, b: u64) -> u64 { a + b }
}

shmkit::task! {
    fn square(x: u64) -> u64 { x * x }
}

shmkit::task! {
    fn whoami() -> u32 { std::process::id() }
}

shmkit::task! {
    fn tagged_pid(i: u32) -> (u32, u32) { (i, std::process::id()) }
}

shmkit::task! {
    fn explode(msg: String) -> u64 { panic!("boom: {msg}") }
}

shmkit::task! {
    fn sleep_ms(ms: u64) { std::thread::sleep(Duration::from_millis(ms)) }
}

shmkit::task! {
    /// Writes this worker's pid to `path`, then sleeps.
    fn pid_then_sleep(path: String, ms: u64) -> u32 {
        std::fs::write(&path, std::process::id().to_string()).unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        std::process::id()
    }
}

shmkit::task! {
    fn reversed(v: Vec<u8>) -> Vec<u8> { v.into_iter().rev().collect() }
}

shmkit::task! {
    /// What this process's descriptors point to.
    fn open_fds() -> Vec<String> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|p| p.display().to_string())
            .collect()
    }
}

shmkit::task! {
    /// Appends a line to `path`, then fails if `fail`.
    fn count_and_maybe_fail(path: String, fail: bool) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        writeln!(f, "started").unwrap();
        assert!(!fail, "initializer refuses");
    }
}

/// A value whose encoding always fails.
#[derive(Debug, Deserialize)]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "this value refuses to be encoded",
        ))
    }
}

shmkit::task! {
    fn make_unencodable() -> Unencodable { Unencodable }
}

shmkit::task! {
    fn take_unencodable(_x: Unencodable) -> u8 { 1 }
}

/// A fresh path in the temp directory, removed on drop.
struct TempPath(PathBuf);

impl TempPath {
    fn new(what: &str) -> TempPath {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        TempPath(std::env::temp_dir().join(format!("shmkit-{what}-{}-{n}", std::process::id())))
    }

    fn s(&self) -> String {
        self.0.display().to_string()
    }

    /// The pid a task wrote here, once it has.
    fn pid(&self) -> u32 {
        let mut pid = 0;
        wait_until(Duration::from_secs(30), || {
            pid = std::fs::read_to_string(&self.0)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            pid != 0
        });
        pid
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn kill(pid: u32, sig: i32) {
    // SAFETY: a plain syscall.
    unsafe { libc::kill(pid as i32, sig) };
}

/// The files in /dev/shm of the process-layer objects of process `pid`.
fn shm_of(pid: u32) -> Vec<String> {
    let prefix = format!("shmkit.mp.{pid}.");
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Process

#[test]
fn a_process_returns_its_result_and_runs_elsewhere() {
    let p = Process::spawn(add, (2, 40)).unwrap();
    assert_ne!(p.pid(), std::process::id());
    assert_eq!(p.join().unwrap(), 42);
    let p = Process::spawn(whoami, ()).unwrap();
    let pid = p.pid();
    assert_eq!(p.join().unwrap(), pid);
}

#[test]
fn a_panic_in_a_process_is_an_error_with_its_message() {
    let mut p = Process::spawn(explode, "here".into()).unwrap();
    match p.join_timeout(Duration::from_secs(60)) {
        Err(Error::Panicked { message, pid, task }) => {
            assert_eq!(message, "boom: here");
            assert_eq!(pid, p.pid());
            assert!(task.ends_with("::explode"), "{task}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.exit_status(), Some(ExitStatus::Code(0)));
}

#[test]
fn a_killed_process_is_an_error_naming_the_signal() {
    let mut p = Process::spawn(sleep_ms, 60_000).unwrap();
    assert!(p.is_alive());
    assert!(matches!(
        p.join_timeout(Duration::from_millis(1)),
        Err(Error::Timeout)
    ));
    p.kill().unwrap();
    match p.join_timeout(Duration::from_secs(60)) {
        Err(Error::ProcessDied { status, pid, task }) => {
            assert_eq!(status, ExitStatus::Signal(libc::SIGKILL));
            assert_eq!(pid, p.pid());
            assert!(task.unwrap().ends_with("::sleep_ms"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!p.is_alive());
    assert_eq!(p.exit_status(), Some(ExitStatus::Signal(libc::SIGKILL)));
    let e = p.join_timeout(Duration::from_secs(1)).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "joined twice: {e}");
}

#[test]
fn terminate_sends_sigterm() {
    let mut p = Process::spawn(sleep_ms, 60_000).unwrap();
    p.terminate().unwrap();
    let e = p.join_timeout(Duration::from_secs(60)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::ProcessDied {
                status: ExitStatus::Signal(libc::SIGTERM),
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("SIGTERM"), "{e}");
}

#[test]
fn large_arguments_and_results_travel_out_of_line() {
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let want: Vec<u8> = big.iter().rev().copied().collect();
    let p = Process::spawn(reversed, big.clone()).unwrap();
    assert_eq!(p.join().unwrap(), want);
    let pool = Pool::builder()
        .processes(1)
        .ring_capacity(64 << 10)
        .build()
        .unwrap();
    assert_eq!(pool.apply(reversed, big).unwrap(), want);
    let small: Vec<Vec<u8>> = (0..50).map(|i| vec![i as u8; 40_000]).collect();
    let back = pool.map_chunked(reversed, small.clone(), 3).unwrap();
    assert_eq!(back, small);
}

#[test]
fn a_worker_inherits_no_stray_descriptor() {
    let path = TempPath::new("fd");
    std::fs::write(&path.0, b"x").unwrap();
    let c = std::ffi::CString::new(path.s()).unwrap();
    // SAFETY: opens a file without O_CLOEXEC, on purpose: a leak the worker must not keep.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0);
    let fds = Process::spawn(open_fds, ()).unwrap().join().unwrap();
    // SAFETY: our own descriptor, closed once.
    unsafe { libc::close(fd) };
    assert!(!fds.iter().any(|f| f == &path.s()), "{fds:?}");
}

// ---------------------------------------------------------------------------------------
// Pool: results

#[test]
fn a_pool_maps_in_order_with_any_chunk_size() {
    let pool = Pool::new(2).unwrap();
    let want: Vec<u64> = (0..1000u64).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..1000u64).unwrap(), want);
    for chunk in [1, 7, 1000, 5000] {
        assert_eq!(pool.map_chunked(square, 0..1000u64, chunk).unwrap(), want);
    }
    assert_eq!(pool.map(square, []).unwrap(), Vec::<u64>::new());
    let starmap = pool.map(add, [(1, 2), (3, 4)]).unwrap();
    assert_eq!(starmap, [3, 7]);
}

#[test]
fn imap_keeps_order_and_imap_unordered_yields_each_once() {
    let pool = Pool::new(2).unwrap();
    let ordered: Vec<u64> = pool
        .imap(square, 0..500u64, 3)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(ordered, (0..500u64).map(|x| x * x).collect::<Vec<_>>());
    let mut ids: Vec<u32> = pool
        .imap_unordered(tagged_pid, 0..500u32, 1)
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..500u32).collect::<Vec<_>>());
}

#[test]
fn tasks_run_in_the_pool_s_workers() {
    let pool = Pool::new(2).unwrap();
    let pids = pool.worker_pids();
    assert_eq!(pids.len(), 2);
    let seen: Vec<(u32, u32)> = pool.map_chunked(tagged_pid, 0..200u32, 1).unwrap();
    assert!(
        seen.iter().all(|(_, pid)| pids.contains(pid)),
        "{seen:?} {pids:?}"
    );
    assert!(!pids.contains(&std::process::id()));
}

#[test]
fn apply_async_results_and_callbacks() {
    let pool = Pool::new(2).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut handles = Vec::new();
    for i in 0..10u64 {
        let tx = tx.clone();
        let h = pool
            .apply_async_then(square, i, move |r| {
                // Runs in this process, in the pool's thread.
                tx.send((std::process::id(), *r.unwrap())).unwrap();
            })
            .unwrap();
        handles.push(h);
    }
    let got: Vec<u64> = handles.into_iter().map(|h| h.get().unwrap()).collect();
    assert_eq!(got, (0..10u64).map(|i| i * i).collect::<Vec<_>>());
    let mut called: Vec<(u32, u64)> = rx.iter().take(10).collect();
    called.sort_unstable();
    assert!(called.iter().all(|(pid, _)| *pid == std::process::id()));
    assert_eq!(called.iter().map(|c| c.1).collect::<Vec<_>>(), got);

    let err = pool
        .apply_async_then(explode, "cb".into(), |r| assert!(r.is_err()))
        .unwrap();
    err.wait();
    assert_eq!(err.successful(), Some(false));
    assert!(matches!(err.get(), Err(Error::Panicked { .. })));
}

#[test]
fn close_then_join_finishes_queued_work_and_refuses_more() {
    let mut pool = Pool::new(2).unwrap();
    let pids = pool.worker_pids();
    let pending: Vec<_> = (0..20)
        .map(|i| pool.apply_async(square, i).unwrap())
        .collect();
    assert!(matches!(pool.join(), Err(Error::InvalidArgument(_))));
    pool.close();
    assert!(matches!(
        pool.apply_async(square, 1),
        Err(Error::InvalidArgument(_))
    ));
    pool.join().unwrap();
    for (i, r) in pending.into_iter().enumerate() {
        assert_eq!(r.get().unwrap(), (i * i) as u64);
    }
    for pid in pids {
        assert!(gone(pid), "worker {pid} outlived join");
    }
}

// ---------------------------------------------------------------------------------------
// Pool: failures

#[test]
fn a_panicking_task_fails_alone_and_the_pool_goes_on() {
    let pool = Pool::new(2).unwrap();
    match pool.apply(explode, "in pool".into()) {
        Err(Error::Panicked { message, .. }) => assert_eq!(message, "boom: in pool"),
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.apply(square, 12).unwrap(), 144);
    let mixed: Vec<_> = pool
        .imap(explode, ["a".to_string(), "b".to_string()], 1)
        .unwrap()
        .collect();
    assert!(mixed
        .iter()
        .all(|r| matches!(r, Err(Error::Panicked { .. }))));
    assert_eq!(pool.map(square, 0..10u64).unwrap()[9], 81);
}

#[test]
fn a_worker_killed_mid_task_fails_exactly_that_task_and_is_replaced() {
    let pool = Pool::new(2).unwrap();
    let path = TempPath::new("victim");
    let victim = pool
        .apply_async(pid_then_sleep, (path.s(), 60_000))
        .unwrap();
    let pid = path.pid();
    // Queue work behind it, then kill the worker running the long task.
    let others: Vec<_> = (0..50u64)
        .map(|i| pool.apply_async(square, i).unwrap())
        .collect();
    kill(pid, libc::SIGKILL);
    match victim.get() {
        Err(Error::ProcessDied {
            pid: p,
            status,
            task,
        }) => {
            assert_eq!(p, pid);
            assert_eq!(status, ExitStatus::Signal(libc::SIGKILL));
            assert!(task.unwrap().ends_with("::pid_then_sleep"));
        }
        other => panic!("{other:?}"),
    }
    for (i, r) in others.into_iter().enumerate() {
        assert_eq!(r.get().unwrap(), (i * i) as u64, "task {i}");
    }
    wait_until(Duration::from_secs(60), || {
        let pids = pool.worker_pids();
        pids.len() == 2 && !pids.contains(&pid)
    });
    assert_eq!(pool.map(square, 0..100u64).unwrap()[99], 99 * 99);
}

#[test]
fn a_failing_initializer_fails_build_once_without_a_respawn_loop() {
    let marks = TempPath::new("init");
    let e = Pool::builder()
        .processes(2)
        .initializer(count_and_maybe_fail, (marks.s(), true))
        .build()
        .unwrap_err();
    match &e {
        Error::Worker { reason, task, .. } => {
            assert!(reason.contains("initializer refuses"), "{e}");
            assert!(task.ends_with("::count_and_maybe_fail"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    let started = std::fs::read_to_string(&marks.0)
        .unwrap_or_default()
        .lines()
        .count();
    assert!((1..=2).contains(&started), "{started} initializer runs");
    // A working initializer runs once per worker.
    let marks = TempPath::new("init-ok");
    let pool = Pool::builder()
        .processes(2)
        .initializer(count_and_maybe_fail, (marks.s(), false))
        .build()
        .unwrap();
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    let started = std::fs::read_to_string(&marks.0).unwrap().lines().count();
    assert_eq!(started, 2);
}

#[test]
fn what_cannot_be_encoded_fails_that_call_not_the_pool() {
    let pool = Pool::new(1).unwrap();
    assert!(matches!(
        pool.apply(make_unencodable, ()),
        Err(Error::Codec { .. })
    ));
    assert!(matches!(
        pool.apply(take_unencodable, Unencodable),
        Err(Error::Codec { .. })
    ));
    assert_eq!(pool.apply(square, 5).unwrap(), 25);
    assert!(matches!(
        Process::spawn(take_unencodable, Unencodable),
        Err(Error::Codec { .. })
    ));
    let e = Process::spawn(make_unencodable, ())
        .unwrap()
        .join()
        .unwrap_err();
    assert!(matches!(e, Error::Codec { .. }), "{e}");
}

#[test]
fn max_tasks_per_child_replaces_workers_without_losing_or_repeating_calls() {
    let pool = Pool::builder()
        .processes(2)
        .max_tasks_per_child(3)
        .build()
        .unwrap();
    let mut seen: Vec<(u32, u32)> = pool
        .imap_unordered(tagged_pid, 0..60u32, 1)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    seen.sort_unstable();
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        (0..60u32).collect::<Vec<_>>()
    );
    let mut per_pid = std::collections::HashMap::<u32, usize>::new();
    for (_, pid) in &seen {
        *per_pid.entry(*pid).or_default() += 1;
    }
    assert!(per_pid.values().all(|&n| n <= 3), "{per_pid:?}");
    assert!(per_pid.len() >= 20, "{per_pid:?}");
}

#[test]
fn terminate_with_calls_in_flight_returns_and_leaves_nothing() {
    let mut pool = Pool::new(2).unwrap();
    let pids = pool.worker_pids();
    let path = TempPath::new("term");
    let running = pool
        .apply_async(pid_then_sleep, (path.s(), 60_000))
        .unwrap();
    let queued: Vec<_> = (0..10)
        .map(|_| pool.apply_async(sleep_ms, 60_000).unwrap())
        .collect();
    path.pid();
    pool.terminate();
    assert!(matches!(running.get(), Err(Error::Disconnected)));
    for q in queued {
        assert!(matches!(q.get(), Err(Error::Disconnected)));
    }
    for pid in pids {
        assert!(gone(pid), "worker {pid} outlived terminate");
    }
    drop(pool);
}

// ---------------------------------------------------------------------------------------
// Ctrl-C and parent death

/// Child role: a program with a pool busy on long tasks; reports its workers' pids.
fn pool_parent() {
    let pool = Pool::new(2).unwrap();
    for pid in pool.worker_pids() {
        report("worker", pid);
    }
    let pending: Vec<_> = (0..4)
        .map(|_| pool.apply_async(sleep_ms, 60_000).unwrap())
        .collect();
    report("ready", 1);
    for p in pending {
        let _ = p.get();
    }
}

/// Starts `pool_parent` in a process group of its own (as a shell starts a job) and
/// waits until its workers run: `(child, worker pids)`.
fn start_pool_parent() -> (std::process::Child, Vec<u32>) {
    let mut cmd = common::command("pool_parent", &[]);
    cmd.process_group(0).stdout(Stdio::piped());
    // As a terminal's shell starts a foreground job: SIGINT at its default, even when
    // this test runs in the background (where the shell made us ignore it).
    // SAFETY: `signal` is async-signal-safe, and nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut workers = Vec::new();
    for line in out.lines() {
        let line = line.unwrap();
        if let Some(pid) = line.strip_prefix("REPORT worker=") {
            workers.push(pid.parse().unwrap());
        }
        if line == "REPORT ready=1" {
            break;
        }
    }
    assert_eq!(workers.len(), 2);
    (child, workers)
}

/// After the parent `pid` died: its workers exit, and it leaves only its pool's doorbell
/// and in-flight slots (which it cannot remove as it dies), which the next pool's sweep
/// removes.
fn after_parent_death(pid: u32, workers: &[u32]) {
    for &w in workers {
        wait_until(Duration::from_secs(30), || gone(w));
    }
    let mut left = shm_of(pid);
    left.sort();
    assert!(
        left.iter()
            .all(|n| n.ends_with(".bell") || n.ends_with(".slots")),
        "{left:?}"
    );
    drop(Pool::new(1).unwrap()); // sweeps
                                 // A concurrent test's pool may be sweeping the same files (and holds them while it
                                 // removes them): they go either way.
    wait_until(Duration::from_secs(30), || {
        drop(Pool::new(1).unwrap());
        shm_of(pid).is_empty()
    });
}

#[test]
fn ctrl_c_reaches_the_parent_and_no_worker_outlives_it() {
    let (mut child, workers) = start_pool_parent();
    let pid = child.id();
    // As a terminal does: SIGINT to the whole foreground process group.
    // SAFETY: a plain syscall.
    unsafe { libc::killpg(pid as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
    after_parent_death(pid, &workers);
}

#[test]
fn a_parent_killed_with_sigkill_takes_its_workers_along() {
    let (mut child, workers) = start_pool_parent();
    let pid = child.id();
    kill(pid, libc::SIGKILL);
    child.wait().unwrap();
    after_parent_death(pid, &workers);
}

/// Async waits for processes and pool results (the `tokio` feature).
#[cfg(feature = "tokio")]
mod awaited {
    use super::*;
    use common::runtime;

    #[test]
    fn join_async_gives_the_result_and_the_errors_of_join() {
        runtime().block_on(async {
            // Several processes awaited together on one thread.
            let ps: Vec<_> = (0..4u64)
                .map(|i| Process::spawn(square, i + 10).unwrap())
                .collect();
            let mut got = Vec::new();
            for p in ps {
                got.push(p.join_async().await.unwrap());
            }
            assert_eq!(got, [100, 121, 144, 169]);
            let p = Process::spawn(explode, "async".to_string()).unwrap();
            match p.join_async().await {
                Err(Error::Panicked { message, .. }) => assert!(message.contains("boom: async")),
                r => panic!("{r:?}"),
            }
            let mut p = Process::spawn(sleep_ms, 60_000).unwrap();
            p.kill().unwrap();
            assert!(matches!(
                p.join_async().await,
                Err(Error::ProcessDied { .. })
            ));
        });
    }

    /// Drains an `Imap` as a stream.
    async fn collect<R: serde::de::DeserializeOwned>(mut s: shmkit::process::Imap<R>) -> Vec<R> {
        use futures_core::Stream;
        let mut out = Vec::new();
        while let Some(r) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut s).poll_next(cx)).await
        {
            out.push(r.unwrap());
        }
        out
    }

    #[test]
    fn imap_results_are_a_stream_in_order_or_as_they_finish() {
        let pool = Pool::new(2).unwrap();
        runtime().block_on(async {
            let ordered = collect(pool.imap(square, 0..500u64, 7).unwrap()).await;
            assert_eq!(ordered, (0..500u64).map(|x| x * x).collect::<Vec<_>>());
            let mut unordered = collect(pool.imap_unordered(square, 0..500u64, 1).unwrap()).await;
            unordered.sort();
            assert_eq!(unordered, (0..500u64).map(|x| x * x).collect::<Vec<_>>());
            // Slow tasks: the stream waits, woken by the pool, without blocking the thread:
            // a task spawned on this one-thread runtime runs before the results come.
            let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let ran2 = ran.clone();
            let other = tokio::spawn(async move {
                ran2.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            let slow = pool.imap(sleep_ms, [200u64, 200, 200, 200], 1).unwrap();
            let slow = collect(slow).await;
            assert_eq!(slow.len(), 4);
            assert!(
                ran.load(std::sync::atomic::Ordering::SeqCst),
                "the stream blocked the thread while the tasks ran"
            );
            other.await.unwrap();
        });
    }

    #[test]
    fn an_async_result_is_a_future() {
        let mut pool = Pool::new(2).unwrap();
        runtime().block_on(async {
            let rs: Vec<_> = (0..20u64)
                .map(|i| pool.apply_async(add, (i, 1)).unwrap())
                .collect();
            let mut got = Vec::new();
            for r in rs {
                got.push(r.await.unwrap());
            }
            assert_eq!(got, (1..=20).collect::<Vec<_>>());
            let r = pool.apply_async(explode, "awaited".to_string()).unwrap();
            assert!(matches!(r.await, Err(Error::Panicked { .. })));
        });
        // Results awaited after the pool ended: each either arrived or says why not.
        let r = pool.apply_async(sleep_ms, 60_000).unwrap();
        pool.terminate();
        let got = runtime().block_on(async {
            tokio::time::timeout(Duration::from_secs(30), r)
                .await
                .expect("a terminated pool's result does not hang")
        });
        assert!(got.is_err(), "{got:?}");
    }
}
