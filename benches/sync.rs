//! Synchronisation benchmarks.
//!
//! - `uncontended/*`: lock + unlock with nobody else around: shmkit's robust `Mutex` next
//!   to `std::sync::Mutex` (goal: within 2x).
//! - `handoff/*`: two processes pinned to different CPUs pass a turn back and forth; one
//!   iteration is a round trip (two hand-offs). The shmkit mutex hand-off is measured next
//!   to the same round trip over a pair of pipes, in the same run, so the ratio holds on a
//!   noisy machine.
//!
//! Children are this bench binary re-run with `SHMKIT_BENCH_ROLE` set.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::Criterion;
use shmkit::{__private::pin_to_cpu, Mutex};

const ROLE: &str = "SHMKIT_BENCH_ROLE";
const NAME: &str = "SHMKIT_BENCH_NAME";
const STOP: u64 = u64::MAX;

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        child(&role);
        return;
    }
    let _ = pin_to_cpu(0);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    uncontended(&mut c);
    handoff(&mut c);
    c.final_summary();
}

fn spawn(role: &str, name: &str, piped: bool) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(ROLE, role).env(NAME, name);
    if piped {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    }
    cmd.spawn().expect("spawn bench child")
}

fn child(role: &str) {
    let _ = pin_to_cpu(1);
    let name = std::env::var(NAME).unwrap_or_default();
    match role {
        "mutex_handoff" => {
            let m = Mutex::<u64>::open(&name).unwrap();
            loop {
                let mut g = m.lock().unwrap();
                if *g == STOP {
                    return;
                }
                if *g % 2 == 1 {
                    *g += 1;
                }
            }
        }
        "pipe_echo" => {
            let (mut i, mut o) = (std::io::stdin().lock(), std::io::stdout().lock());
            let mut buf = [0u8; 8];
            while i.read_exact(&mut buf).is_ok() {
                if o.write_all(&buf).and_then(|_| o.flush()).is_err() {
                    return;
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended");
    let name = format!("bench-uncontended-{}", std::process::id());
    let m = Mutex::<u64>::create(&name, 0).unwrap();
    g.bench_function("shmkit_mutex", |b| {
        b.iter(|| {
            *m.lock().unwrap() += 1;
        })
    });
    let s = std::sync::Mutex::new(0u64);
    g.bench_function("std_mutex", |b| {
        b.iter(|| {
            *s.lock().unwrap() += 1;
        })
    });
    g.finish();
}

fn handoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("handoff");
    let name = format!("bench-handoff-{}", std::process::id());
    let m = Mutex::<u64>::create(&name, 0).unwrap();
    let mut kid = spawn("mutex_handoff", &name, false);
    g.bench_function("shmkit_mutex_round_trip", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                loop {
                    let mut v = m.lock().unwrap();
                    if *v % 2 == 0 {
                        *v += 1;
                        break;
                    }
                }
            }
            // Wait for the last answer so every iteration is a full round trip.
            while *m.lock().unwrap() % 2 == 1 {}
            start.elapsed()
        })
    });
    *m.lock().unwrap() = STOP;
    kid.wait().unwrap();

    let mut echo = spawn("pipe_echo", "", true);
    let mut to = echo.stdin.take().unwrap();
    let mut from = echo.stdout.take().unwrap();
    g.bench_function("pipe_round_trip", |b| {
        b.iter_custom(|iters| {
            let mut buf = [0u8; 8];
            let start = Instant::now();
            for i in 0..iters {
                to.write_all(&i.to_le_bytes()).unwrap();
                from.read_exact(&mut buf).unwrap();
            }
            start.elapsed()
        })
    });
    drop(to);
    echo.wait().unwrap();
    g.finish();
}
