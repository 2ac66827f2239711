//! The serde queues' rows of `shmkit bench`: short strings (`"msg-N"`; in one row with 500
//! bytes of padding, an item of five consecutive slots, in another with 4,000, 34 slots)
//! through a
//! `Queue<String>` from producer processes to consumer processes, and through a
//! `JoinableQueue<String>` with `task_done` and `join`, against Python's `Queue` and
//! `JoinableQueue` doing the same in the same rounds (`scripts/python/queue_bench.py`).
//!
//! Every row is timed from the first process's start to the last one's end (process
//! starts included: about a millisecond each, against runs of hundreds of milliseconds).
//! Consumers stop at a `None` sentinel, as in the seeds' programs.
//!
//! Producers write each string into the one buffer they keep (`put` takes the item by
//! reference, so a Rust producer need not make a new one per item); the row
//! `queue_1p1c+fresh` makes a new `String` per item (`format!`), as Python makes a new
//! string, and is compared with the same Python row as `queue_1p1c`.

use std::time::Instant;

use shmkit::process::Process;
use shmkit::{JoinableQueue, Queue};

use super::python::{self, Row};
use super::Res;

shmkit::task! {
    fn produce(name: String, n: u64, sentinels: u32, pad: usize, fresh: bool) -> Result<(), String> {
        let mut q = Queue::<Option<String>>::open(&name).map_err(|e| e.to_string())?;
        let pad = "x".repeat(pad);
        if fresh {
            for i in 0..n {
                q.put(&Some(format!("msg-{i}{pad}"))).map_err(|e| e.to_string())?;
            }
        } else {
            let mut item = Some(String::new());
            for i in 0..n {
                q.put(item_n(&mut item, i, &pad)).map_err(|e| e.to_string())?;
            }
        }
        for _ in 0..sentinels {
            q.put(&None).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// `item`, made `Some("msg-{i}{pad}")` in the buffer it already has (`put` takes the item
/// by reference: a producer keeps its buffer, where Python makes a new string each time).
fn item_n<'a>(item: &'a mut Option<String>, i: u64, pad: &str) -> &'a Option<String> {
    use std::fmt::Write;
    let s = item.get_or_insert_with(String::new);
    s.clear();
    let _ = write!(s, "msg-{i}{pad}");
    item
}

shmkit::task! {
    fn consume(name: String) -> Result<u64, String> {
        let mut q = Queue::<Option<String>>::open(&name).map_err(|e| e.to_string())?;
        let mut n = 0;
        while let Some(s) = q.get().map_err(|e| e.to_string())? {
            n += s.len() as u64;
        }
        Ok(n)
    }
}

shmkit::task! {
    fn consume_joinable(name: String) -> Result<u64, String> {
        let mut q = JoinableQueue::<Option<String>>::open(&name).map_err(|e| e.to_string())?;
        let mut n = 0;
        loop {
            let item = q.get().map_err(|e| e.to_string())?;
            q.task_done().map_err(|e| e.to_string())?;
            match item {
                Some(s) => n += s.len() as u64,
                None => return Ok(n),
            }
        }
    }
}

const ROWS: [Row; 6] = [
    Row {
        id: "queue_1p1c",
        label: "Queue<String>, 1 → 1 process",
        unit: "msg/s",
        higher_is_better: true,
    },
    Row {
        id: "queue_1p1c+fresh",
        label: "  the same, a new String per item",
        unit: "msg/s",
        higher_is_better: true,
    },
    Row {
        id: "queue_1p1c_500",
        label: "  the same, strings + 500 B",
        unit: "msg/s",
        higher_is_better: true,
    },
    Row {
        id: "queue_1p1c_4k",
        label: "  the same, strings + 4,000 B",
        unit: "msg/s",
        higher_is_better: true,
    },
    Row {
        id: "queue_2p2c",
        label: "Queue<String>, 2 → 2 processes",
        unit: "msg/s",
        higher_is_better: true,
    },
    Row {
        id: "joinable",
        label: "JoinableQueue, task_done + join",
        unit: "msg/s",
        higher_is_better: true,
    },
];

fn name(what: &str) -> String {
    format!("bench.q.{}.{}", std::process::id(), what.replace('+', "."))
}

fn join_all<T>(ps: Vec<Process<T>>) -> Res<()>
where
    T: shmkit::process::Task<Output = Result<u64, String>>,
{
    for p in ps {
        p.join()??;
    }
    Ok(())
}

fn round_ours(n: u64) -> Res<Vec<(&'static str, f64)>> {
    let mut rows = Vec::new();

    // One producer, one consumer: strings padded with `pad` bytes (a quarter of the
    // items for the longest, as in the Python script).
    for (row, pad, n, fresh) in [
        ("queue_1p1c", 0, n, false),
        ("queue_1p1c+fresh", 0, n, true),
        ("queue_1p1c_500", 500, n, false),
        ("queue_1p1c_4k", 4000, n / 4, false),
    ] {
        let q = name(row);
        let _hold = Queue::<Option<String>>::create(&q, 1024)?;
        let t = Instant::now();
        let c = Process::spawn(consume, q.clone())?;
        Process::spawn(produce, (q.clone(), n, 1, pad, fresh))?.join()??;
        join_all(vec![c])?;
        rows.push((row, n as f64 / t.elapsed().as_secs_f64()));
    }

    let q = name("2p2c");
    let _hold = Queue::<Option<String>>::create(&q, 1024)?;
    let t = Instant::now();
    let cs = vec![
        Process::spawn(consume, q.clone())?,
        Process::spawn(consume, q.clone())?,
    ];
    let ps = vec![
        Process::spawn(produce, (q.clone(), n / 2, 1, 0, false))?,
        Process::spawn(produce, (q.clone(), n / 2, 1, 0, false))?,
    ];
    for p in ps {
        p.join()??;
    }
    join_all(cs)?;
    rows.push(("queue_2p2c", n as f64 / t.elapsed().as_secs_f64()));

    let q = name("jq");
    let mut jq = JoinableQueue::<Option<String>>::create(&q, 1024)?;
    let t = Instant::now();
    let cs = vec![
        Process::spawn(consume_joinable, q.clone())?,
        Process::spawn(consume_joinable, q.clone())?,
    ];
    let mut item = None;
    for i in 0..n {
        jq.put(item_n(&mut item, i, ""))?;
    }
    jq.join()?;
    rows.push(("joinable", n as f64 / t.elapsed().as_secs_f64()));
    for _ in 0..2 {
        jq.put(&None)?;
    }
    join_all(cs)?;
    Ok(rows)
}

const GROUP: python::Group = python::Group {
    what: "queues",
    title: "Serde queues (short strings)",
    rows: &ROWS,
    sizes: [(1_000_000, 100_000), (4_000_000, 400_000)],
    script: ("queue_bench.py", &[]),
};

/// Runs the rows for `rounds` rounds; the table.
pub(super) fn run(rounds: usize, full: bool) -> Res<String> {
    python::interleaved(&GROUP, rounds, full, round_ours)
}
