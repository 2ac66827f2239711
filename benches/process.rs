//! Process-layer benchmarks: what `Process` and `Pool` cost per process and per task.
//!
//! Groups:
//! - `process/start_join`: `Process::spawn` of a trivial task and `join` (one iteration is
//!   one whole child process: exec, the worker's start, one call, exit).
//! - `pool/imap_unordered_chunk1`: a trivial task over 10,000 items with chunk size 1, one
//!   criterion iteration per batch; throughput in tasks (the per-task overhead).
//! - `pool/apply_async_callback`: 10,000 `apply_async_then` calls with a callback, waiting
//!   for the last.
//! - `pool/map_default_chunks`: `map` of 100,000 items with Python's default chunk size.
//!
//! Python's `multiprocessing` doing the same work runs once at the start when `python3` is
//! on the PATH (`scripts/python/pool_bench.py`; its numbers go to stderr; the note says so
//! when it is skipped); the ratios we quote come from `shmkit bench`, which interleaves
//! both round by round.
//!
//! Run: `cargo bench --bench process`; `-- --test` for a quick check. Pools have two
//! workers (this VM's CPUs); `SHMKIT_BENCH_WORKERS` sets another number.
//!
//! The bench binary is also the workers' binary: `main` calls `shmkit::init()` first.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use shmkit::process::{Pool, Process};

shmkit::task! {
    fn nothing() {}
}

shmkit::task! {
    fn ident(x: u64) -> u64 { x }
}

fn workers() -> usize {
    std::env::var("SHMKIT_BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

fn python_reference(workers: usize) {
    let dir = std::env::temp_dir().join(format!("shmkit-bench-py-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("f"), vec![7u8; 1 << 20]);
    common::python(
        "pool_bench.py",
        &[
            workers.to_string(),
            dir.display().to_string(),
            "--quick".into(),
        ],
        &format!("Python multiprocessing, same work ({workers} workers):"),
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    shmkit::init();
    let workers = workers();
    if common::measuring() {
        python_reference(workers);
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20)
        .configure_from_args();

    let mut g = c.benchmark_group("process");
    g.bench_function("start_join", |b| {
        b.iter(|| Process::spawn(nothing, ()).unwrap().join().unwrap())
    });
    g.finish();

    let pool = Pool::new(workers).unwrap();
    pool.map(ident, 0..workers as u64 * 4).unwrap();
    let mut g = c.benchmark_group("pool");
    const N: u64 = 10_000;
    g.throughput(Throughput::Elements(N));
    g.bench_function("imap_unordered_chunk1", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for r in pool.imap_unordered(ident, 0..N, 1).unwrap() {
                sum = sum.wrapping_add(r.unwrap());
            }
            assert_eq!(sum, N * (N - 1) / 2);
        })
    });
    g.bench_function("apply_async_callback", |b| {
        b.iter(|| {
            let done = Arc::new(AtomicU64::new(0));
            let mut last = None;
            for i in 0..N {
                let done = done.clone();
                last = Some(
                    pool.apply_async_then(ident, i, move |r| {
                        assert!(r.is_ok());
                        // Relaxed: a count, read after every result is ready.
                        done.fetch_add(1, Ordering::Relaxed);
                    })
                    .unwrap(),
                );
            }
            last.unwrap().wait();
            while done.load(Ordering::Relaxed) < N {
                std::thread::yield_now();
            }
        })
    });
    const M: u64 = 100_000;
    g.throughput(Throughput::Elements(M));
    g.bench_function("map_default_chunks", |b| {
        b.iter(|| assert_eq!(pool.map(ident, 0..M).unwrap().len() as u64, M))
    });
    g.finish();
    c.final_summary();
}
