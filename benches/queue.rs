//! Serde queue benchmarks: short strings (`"msg-N"`, postcard) between processes.
//!
//! - `queue/strings_1p1c`: one producer process puts `N` strings into a `Queue<String>`,
//!   one consumer process gets them; one criterion iteration is one such run, timed from
//!   the consumer's start to both processes' end (process starts included: about a
//!   millisecond each, against tens of milliseconds of transfer).
//! - `queue/strings_2p2c`: the same `N` strings from two producers to two consumers.
//! - `queue/strings_500B_1p1c`: as `strings_1p1c`, each string padded with 500 bytes (an
//!   item whose tail travels in its slot's extension).
//! - `joinable/task_done_2c`: the bench process puts `N` strings into a `JoinableQueue`,
//!   two consumer processes `get` and `task_done` them, the bench process `join`s.
//!
//! Python's `multiprocessing.Queue` and `JoinableQueue` doing the same work
//! (`scripts/python/queue_bench.py`, the script `shmkit bench` also runs) run once at the
//! start when `python3` is on the PATH; their numbers go to stderr, and the note says so
//! when they are skipped. `shmkit bench` has the same rows with Python interleaved in
//! every round, and the ratios.
//!
//! Run: `cargo bench --bench queue`; `-- --test` for a quick check.
//!
//! The bench binary is also the workers' binary: `main` calls `shmkit::init()` first.

mod common;

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use shmkit::process::Process;
use shmkit::{JoinableQueue, Queue};

/// Strings per iteration.
const N: u64 = 200_000;
/// The padding of the longer strings' row.
const PAD: usize = 500;

shmkit::task! {
    /// Puts `"msg-0"`, `"msg-1"`, ... (each followed by `pad` bytes `x`) `n` times, then
    /// `stops` `None` sentinels.
    fn produce(name: String, n: u64, stops: u32, pad: usize) {
        let mut q = Queue::<Option<String>>::open(&name).expect("open the queue");
        let pad = "x".repeat(pad);
        for i in 0..n {
            q.put(&Some(format!("msg-{i}{pad}"))).expect("put");
        }
        for _ in 0..stops {
            q.put(&None).expect("put a sentinel");
        }
    }
}

shmkit::task! {
    /// Gets strings until a `None`; how many it got.
    fn consume(name: String) -> u64 {
        let mut q = Queue::<Option<String>>::open(&name).expect("open the queue");
        let mut n = 0;
        while q.get().expect("get").is_some() {
            n += 1;
        }
        n
    }
}

shmkit::task! {
    /// Gets and marks done until a `None`; how many strings it got.
    fn consume_joinable(name: String) -> u64 {
        let mut q = JoinableQueue::<Option<String>>::open(&name).expect("open the queue");
        let mut n = 0;
        loop {
            let item = q.get().expect("get");
            q.task_done().expect("task_done");
            match item {
                Some(_) => n += 1,
                None => return n,
            }
        }
    }
}

fn python_reference() {
    for pad in [0, PAD] {
        let title = format!(
            "Python multiprocessing, same work ({N} strings padded with {pad} bytes; msg/s per row):"
        );
        if !common::python("queue_bench.py", &[N.to_string(), pad.to_string()], &title) {
            return;
        }
    }
}

fn unique(what: &str) -> String {
    static K: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // Relaxed: only uniqueness matters.
    let k = K.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("bench.queue.{}.{what}.{k}", std::process::id())
}

/// One run of `N` strings (padded with `pad` bytes) from `producers` to `consumers`
/// processes: its time.
fn strings(producers: u64, consumers: u32, pad: usize) -> Duration {
    let name = unique("q");
    let _hold = Queue::<Option<String>>::create(&name, 1024).unwrap();
    let t = Instant::now();
    let cs: Vec<_> = (0..consumers)
        .map(|_| Process::spawn(consume, name.clone()).unwrap())
        .collect();
    let ps: Vec<_> = (0..producers)
        .map(|i| {
            let stops =
                consumers / producers as u32 + u32::from((i as u32) < consumers % producers as u32);
            Process::spawn(produce, (name.clone(), N / producers, stops, pad)).unwrap()
        })
        .collect();
    for p in ps {
        p.join().unwrap();
    }
    let got: u64 = cs.into_iter().map(|c| c.join().unwrap()).sum();
    let took = t.elapsed();
    assert_eq!(got, N / producers * producers);
    took
}

/// One run of `N` strings through a joinable queue to two consumers, until `join`.
fn joinable() -> Duration {
    let name = unique("jq");
    let mut q = JoinableQueue::<Option<String>>::create(&name, 1024).unwrap();
    let t = Instant::now();
    let cs: Vec<_> = (0..2)
        .map(|_| Process::spawn(consume_joinable, name.clone()).unwrap())
        .collect();
    for i in 0..N {
        q.put(&Some(format!("msg-{i}"))).unwrap();
    }
    q.join().unwrap();
    let took = t.elapsed();
    for _ in 0..2 {
        q.put(&None).unwrap();
    }
    let got: u64 = cs.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(got, N);
    took
}

fn main() {
    shmkit::init();
    if common::measuring() {
        python_reference();
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(10)
        .configure_from_args();

    let mut g = c.benchmark_group("queue");
    g.throughput(Throughput::Elements(N));
    g.bench_function("strings_1p1c", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| strings(1, 1, 0)).sum())
    });
    g.bench_function("strings_2p2c", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| strings(2, 2, 0)).sum())
    });
    g.bench_function("strings_500B_1p1c", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| strings(1, 1, PAD)).sum())
    });
    g.finish();

    let mut g = c.benchmark_group("joinable");
    g.throughput(Throughput::Elements(N));
    g.bench_function("task_done_2c", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| joinable()).sum())
    });
    g.finish();
    c.final_summary();
}
