//! The shared dict's rows of `shmkit bench`: two processes at once each set their own `n`
//! distinct `u64` keys (`d[k] = k`, as in the seeds' Manager programs) in one
//! `SharedDict<u64, u64>`, then each gets them back; against Python's
//! `multiprocessing.Manager().dict()` doing the same in the same rounds
//! (`scripts/python/manager_dict_bench.py`, which `benches/collections.rs` runs too).
//!
//! Each phase is timed from the barrier that releases both workers to the barrier both
//! reach when done (Python: from a common start to the last finish), so process starts
//! are outside the timing on both sides. Python's Manager serves every operation with a
//! round trip over a socket to its server process: its `n` is a twentieth of ours, to keep
//! each round at a second or two.

use std::time::Instant;

use shmkit::process::Process;
use shmkit::{Barrier, SharedDict};

use super::python::{self, Row};
use super::Res;

shmkit::task! {
    /// Opens the dict and the barrier; sets keys `base..base + n` between the first two
    /// barriers, gets them (checking each) between the next two.
    fn dict_worker(dict: String, barrier: String, base: u64, n: u64) -> Result<(), String> {
        let d = SharedDict::<u64, u64>::open(&dict).map_err(|e| e.to_string())?;
        let b = Barrier::open(&barrier).map_err(|e| e.to_string())?;
        let wait = || b.wait().map(drop).map_err(|e| e.to_string());
        wait()?;
        for k in base..base + n {
            d.insert(&k, &k).map_err(|e| e.to_string())?;
        }
        wait()?;
        wait()?;
        for k in base..base + n {
            if d.get(&k).map_err(|e| e.to_string())? != Some(k) {
                return Err(format!("key {k} lost"));
            }
        }
        wait()
    }
}

const ROWS: [Row; 2] = [
    Row {
        id: "dict_sets_2procs",
        label: "SharedDict sets, 2 processes",
        unit: "sets/s",
        higher_is_better: true,
    },
    Row {
        id: "dict_gets_2procs",
        label: "SharedDict gets, 2 processes",
        unit: "gets/s",
        higher_is_better: true,
    },
];

/// One round: the sets and gets rates of two workers with `n` keys each.
fn round_ours(n: u64) -> Res<Vec<(&'static str, f64)>> {
    let tag = format!("bench.dict.{}", std::process::id());
    let (dn, bn) = (format!("{tag}.d"), format!("{tag}.b"));
    let d = SharedDict::<u64, u64>::create_with(&dn, 2 * n as usize, 16)?;
    let b = Barrier::create(&bn, 3)?;
    let workers = (0..2)
        .map(|i| Process::spawn(dict_worker, (dn.clone(), bn.clone(), i * n, n)))
        .collect::<Result<Vec<_>, _>>()?;
    let phase = || -> Res<f64> {
        b.wait()?;
        let t = Instant::now();
        b.wait()?;
        Ok(2.0 * n as f64 / t.elapsed().as_secs_f64())
    };
    let sets = phase()?;
    if d.len() != 2 * n as usize {
        return Err(format!("the dict holds {} keys, not {}", d.len(), 2 * n).into());
    }
    let gets = phase()?;
    for w in workers {
        w.join()??;
    }
    Ok(vec![("dict_sets_2procs", sets), ("dict_gets_2procs", gets)])
}

const GROUP: python::Group = python::Group {
    what: "dict",
    title: "Shared dict (u64 keys and values, each process its own keys)",
    rows: &ROWS,
    sizes: [(200_000, 10_000), (800_000, 40_000)],
    script: ("manager_dict_bench.py", &["1"]),
};

/// Runs the rows for `rounds` rounds; the table.
pub(super) fn run(rounds: usize, full: bool) -> Res<String> {
    python::interleaved(&GROUP, rounds, full, round_ours)
}
