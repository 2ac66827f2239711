//! Shared-collection benchmarks: `dict sets from 2 processes`.
//!
//! - `dict/sets_2procs`: two worker processes at once each insert `K` distinct `u64` keys
//!   (`d[k] = k`, as in the seeds' Manager programs) into one `SharedDict<u64, u64>`;
//!   one criterion iteration is one round of `2 K` sets, timed from the barrier that
//!   releases both workers to the barrier both reach when done; the dict is cleared
//!   between rounds, outside the timing. Throughput in sets.
//! - `dict/sets_1proc`: the same `2 K` sets from the bench process alone (no contention),
//!   for scale.
//!
//! Python's `multiprocessing.Manager().dict()` doing the same work (two processes setting
//! distinct keys through one proxy, `scripts/python/manager_dict_bench.py`) runs once at
//! the start when `python3` is on the PATH; its numbers go to stderr, and the note says so
//! when it is skipped.
//!
//! Run: `cargo bench --bench collections`; `-- --test` for a quick check.
//!
//! The bench binary is also the workers' binary: `main` calls `shmkit::init()` first.

mod common;

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use shmkit::process::Process;
use shmkit::{Barrier, SharedDict};

/// Keys per worker per round.
const K: u64 = 50_000;

shmkit::task! {
    /// Opens the dict and the barrier, then for each round: waits for the start, inserts
    /// keys `base..base + K`, waits for the end, waits for the parent's clear.
    fn setter(dict: String, barrier: String, base: u64, rounds: u64) {
        let d = SharedDict::<u64, u64>::open(&dict).expect("open the dict");
        let b = Barrier::open(&barrier).expect("open the barrier");
        for _ in 0..rounds {
            b.wait().expect("start");
            for k in base..base + K {
                d.insert(&k, &k).expect("insert");
            }
            b.wait().expect("end");
            b.wait().expect("cleared");
        }
    }
}

fn python_reference() {
    common::python(
        "manager_dict_bench.py",
        &["20000".into(), "3".into()],
        "Python Manager().dict(), same work (2 processes, 20,000 sets each):",
    );
}

/// `rounds` rounds of 2 K sets from two worker processes: the time spent setting.
fn two_processes(rounds: u64) -> Duration {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // Relaxed: only uniqueness matters.
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tag = format!("bench.dict.{}.{n}", std::process::id());
    let (dn, bn) = (format!("{tag}.d"), format!("{tag}.b"));
    let d = SharedDict::<u64, u64>::create_with(&dn, 2 * K as usize, 16).unwrap();
    let b = Barrier::create(&bn, 3).unwrap();
    let workers: Vec<_> = (0..2)
        .map(|i| Process::spawn(setter, (dn.clone(), bn.clone(), i * K, rounds)).unwrap())
        .collect();
    let mut total = Duration::ZERO;
    for _ in 0..rounds {
        b.wait().unwrap();
        let t = Instant::now();
        b.wait().unwrap();
        total += t.elapsed();
        assert_eq!(d.len(), 2 * K as usize);
        d.clear().unwrap();
        b.wait().unwrap();
    }
    for w in workers {
        w.join().unwrap();
    }
    total
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

    let mut g = c.benchmark_group("dict");
    g.throughput(Throughput::Elements(2 * K));
    g.bench_function("sets_2procs", |b| b.iter_custom(two_processes));
    let name = format!("bench.dict.{}.solo", std::process::id());
    let d = SharedDict::<u64, u64>::create_with(&name, 2 * K as usize, 16).unwrap();
    g.bench_function("sets_1proc", |b| {
        b.iter(|| {
            for k in 0..2 * K {
                d.insert(&k, &k).unwrap();
            }
            d.clear().unwrap();
        })
    });
    g.finish();
    c.final_summary();
}
