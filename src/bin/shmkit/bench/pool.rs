//! The process layer's rows of `shmkit bench`: `Process` start + join and `Pool` per-task
//! overhead, against Python's `multiprocessing` doing the same work in the same run
//! (`scripts/python/pool_bench.py`, when `python3` is on the PATH), interleaved round by
//! round.
//!
//! Rows: process start + join (a trivial task; Python: `fork`, its fastest start);
//! `imap_unordered` with chunk size 1 over a trivial task (the per-task overhead);
//! `apply_async` with a callback; `map` with the default chunks; SHA-512 of a directory of
//! 500 files of 64 KiB (MB/s), with the floor "every worker hashing alone" (one thread's
//! rate, measured in the same round, times the workers).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha512};
use shmkit::process::{Pool, Process};

use super::python::{self, Row};
use super::Res;

shmkit::task! {
    fn nothing() {}
}

shmkit::task! {
    fn ident(x: u64) -> u64 { x }
}

shmkit::task! {
    fn sha512_file(path: String) -> Vec<u8> {
        std::fs::read(path).map(|b| Sha512::digest(&b).to_vec()).unwrap_or_default()
    }
}

const ROWS: [Row; 5] = [
    Row {
        id: "start_join",
        label: "Process start + join",
        unit: "µs",
        higher_is_better: false,
    },
    Row {
        id: "imap_chunk1",
        label: "imap_unordered, chunk size 1",
        unit: "tasks/s",
        higher_is_better: true,
    },
    Row {
        id: "apply_async",
        label: "apply_async + callback",
        unit: "tasks/s",
        higher_is_better: true,
    },
    Row {
        id: "map_default",
        label: "map, default chunks",
        unit: "tasks/s",
        higher_is_better: true,
    },
    Row {
        id: "sha512_dir",
        label: "SHA-512 of a directory",
        unit: "MB/s",
        higher_is_better: true,
    },
];

const FILES: usize = 500;
const FILE_SIZE: usize = 64 << 10;

/// Sizes of one round.
struct Sizes {
    starts: usize,
    imap: u64,
    apply: u64,
    map: u64,
}

/// Runs the rows for `rounds` rounds with `workers` workers; the table.
pub(super) fn run(rounds: usize, full: bool, workers: usize) -> Res<String> {
    let sizes = if full {
        Sizes {
            starts: 50,
            imap: 400_000,
            apply: 200_000,
            map: 4_000_000,
        }
    } else {
        Sizes {
            starts: 20,
            imap: 100_000,
            apply: 50_000,
            map: 1_000_000,
        }
    };
    let dir = make_files()?;
    let python = python::available();
    let mut ours: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut theirs: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut floor = Vec::new();
    for round in 0..rounds {
        eprint!("\r\x1b[2Kprocess layer: round {}/{rounds}", round + 1);
        for (id, v) in round_ours(&sizes, workers, &dir.0, &mut floor)? {
            ours.entry(id).or_default().push(v);
        }
        if python {
            for (id, v) in round_python(workers, &dir.0, full)? {
                theirs.entry(id).or_default().push(v);
            }
        }
    }
    eprint!("\r\x1b[2K");
    Ok(table(&ours, &theirs, &floor, workers, python))
}

/// A directory of test files, removed on drop.
struct Files(PathBuf);

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn make_files() -> Res<Files> {
    let dir = std::env::temp_dir().join(format!("shmkit-bench-digest-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let files = Files(dir);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..FILES {
        let bytes: Vec<u8> = (0..FILE_SIZE)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(files.0.join(format!("f{i:03}")), bytes)?;
    }
    Ok(files)
}

fn round_python(workers: usize, dir: &Path, full: bool) -> Res<Vec<(String, f64)>> {
    let (w, d) = (workers.to_string(), dir.display().to_string());
    let mut args = vec![w.as_str(), d.as_str()];
    if !full {
        args.push("--quick");
    }
    python::run("pool_bench.py", &args)
}

fn round_ours(
    s: &Sizes,
    workers: usize,
    dir: &Path,
    floor: &mut Vec<f64>,
) -> Res<Vec<(&'static str, f64)>> {
    let mut rows = Vec::new();

    let mut t: Vec<f64> = (0..s.starts)
        .map(|_| {
            let start = Instant::now();
            Process::spawn(nothing, ())?.join()?;
            Ok(start.elapsed().as_secs_f64() * 1e6)
        })
        .collect::<Res<_>>()?;
    t.sort_by(f64::total_cmp);
    rows.push(("start_join", t[t.len() / 2]));

    let pool = Pool::new(workers)?;
    pool.map(ident, 0..workers as u64 * 4)?; // every worker has answered once

    let start = Instant::now();
    let mut sum = 0u64;
    for r in pool.imap_unordered(ident, 0..s.imap, 1)? {
        sum = sum.wrapping_add(r?);
    }
    assert_eq!(sum, s.imap * (s.imap - 1) / 2);
    rows.push(("imap_chunk1", s.imap as f64 / start.elapsed().as_secs_f64()));

    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut last = None;
    for i in 0..s.apply {
        let done = done.clone();
        last = Some(pool.apply_async_then(ident, i, move |r| {
            if r.is_ok() {
                // Relaxed: a count, read after the last result is ready.
                done.fetch_add(1, Ordering::Relaxed);
            }
        })?);
    }
    // Results come back in order of submission per worker; wait for all of them.
    if let Some(l) = last {
        l.wait();
    }
    while done.load(Ordering::Relaxed) < s.apply {
        std::thread::yield_now();
    }
    rows.push((
        "apply_async",
        s.apply as f64 / start.elapsed().as_secs_f64(),
    ));

    let start = Instant::now();
    let out = pool.map(ident, 0..s.map)?;
    assert_eq!(out.len() as u64, s.map);
    rows.push(("map_default", s.map as f64 / start.elapsed().as_secs_f64()));

    let mut paths: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path().display().to_string())
        .collect();
    paths.sort();
    let total = (FILES * FILE_SIZE) as f64;
    let start = Instant::now();
    for r in pool.imap_unordered(sha512_file, paths.clone(), 20)? {
        assert_eq!(r?.len(), 64);
    }
    rows.push(("sha512_dir", total / start.elapsed().as_secs_f64() / 1e6));
    drop(pool);

    // The floor: one thread hashing the same files (read included), times the workers.
    let start = Instant::now();
    for p in &paths {
        assert_eq!(sha512_file.call(p.clone()).len(), 64);
    }
    floor.push(total / start.elapsed().as_secs_f64() / 1e6);
    Ok(rows)
}

fn table(
    ours: &BTreeMap<&str, Vec<f64>>,
    theirs: &BTreeMap<String, Vec<f64>>,
    floor: &[f64],
    workers: usize,
    python_ran: bool,
) -> String {
    let mut t = python::table(
        &format!("Process layer ({workers} workers)"),
        &ROWS,
        ours,
        theirs,
        python_ran,
    );
    if let (Some(v), false) = (ours.get("sha512_dir"), floor.is_empty()) {
        let (f, _, _) = python::stats(floor);
        t.push_str(&format!(
            "SHA-512: one thread hashes {} MB/s; the pool reaches {:.2}× that ({workers} workers)\n",
            python::num(f),
            python::paired(v, floor)
        ));
    }
    t
}
