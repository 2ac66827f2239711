//! The MPMC rows of `shmkit bench`: one-way throughput of `shmkit::mpmc` with 1 or 2
//! producer processes and 1 or 2 consumer processes, 8- and 64-byte messages, against the
//! same work between threads of one process through crossbeam's `ArrayQueue` (what
//! crossing processes costs), in the same run.
//!
//! Each producer sends `n` messages; when every producer is done, the coordinator (this
//! process, which otherwise only waits) sends one sentinel per consumer. Timed: from the
//! moment every party is attached and released together until the last consumer has
//! counted its last message. Parties are pinned round-robin over the CPUs; on the 2-vCPU
//! VM, 2p2c puts four busy parties on two CPUs: the rows show what oversubscription does.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use shmkit::{mpmc, Event, RawValue};

use super::{pin_to_cpu, Case, Measure, Plan, Res, Samples};

/// Slots of every queue.
const CAPACITY: usize = 4096;
/// The shapes measured: (producers, consumers).
const SHAPES: [(usize, usize); 4] = [(1, 1), (2, 1), (1, 2), (2, 2)];

/// The rows, interleaved with the rest of the showdown.
pub(super) fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for size in [8, 64] {
        for (p, c) in SHAPES {
            let (id, label, xid, xlabel) = names(p, c);
            v.push(Case {
                id,
                label,
                size,
                measure: Measure::Throughput,
                floor: Some(xid),
                pipe: Some("tp_pipe"),
            });
            v.push(Case {
                id: xid,
                label: xlabel,
                size,
                measure: Measure::Throughput,
                floor: None,
                pipe: Some("tp_pipe"),
            });
        }
    }
    v
}

fn names(p: usize, c: usize) -> (&'static str, &'static str, &'static str, &'static str) {
    match (p, c) {
        (1, 1) => (
            "tp_mpmc_1_1",
            "shmkit mpmc 1p1c",
            "tp_xbeam_1_1",
            "threads: ArrayQueue 1p1c",
        ),
        (2, 1) => (
            "tp_mpmc_2_1",
            "shmkit mpmc 2p1c",
            "tp_xbeam_2_1",
            "threads: ArrayQueue 2p1c",
        ),
        (1, 2) => (
            "tp_mpmc_1_2",
            "shmkit mpmc 1p2c",
            "tp_xbeam_1_2",
            "threads: ArrayQueue 1p2c",
        ),
        _ => (
            "tp_mpmc_2_2",
            "shmkit mpmc 2p2c",
            "tp_xbeam_2_2",
            "threads: ArrayQueue 2p2c",
        ),
    }
}

/// `(producers, consumers, cross-process?)` of a case id of this file.
pub(super) fn shape(id: &str) -> Option<(usize, usize, bool)> {
    let (procs, rest) = if let Some(r) = id.strip_prefix("tp_mpmc_") {
        (true, r)
    } else {
        (false, id.strip_prefix("tp_xbeam_")?)
    };
    let (p, c) = rest.split_once('_')?;
    Some((p.parse().ok()?, c.parse().ok()?, procs))
}

/// Messages per producer.
fn per_producer(plan: &Plan) -> u64 {
    plan.small_messages * 4
}

/// A message of `W` words: a sequence number in every word (so the consumer reads them all).
fn message<const W: usize>(seq: u64) -> [u64; W] {
    [seq; W]
}

pub(super) fn run(case: &Case, plan: &Plan, name: &str, out: &mut Samples) -> Res<()> {
    let (p, c, procs) = shape(case.id).ok_or("not an mpmc case")?;
    let n = per_producer(plan);
    let secs = match (procs, case.size) {
        (true, 8) => run_procs::<1>(p, c, n, name)?,
        (true, _) => run_procs::<8>(p, c, n, name)?,
        (false, 8) => run_threads::<1>(p, c, n),
        (false, _) => run_threads::<8>(p, c, n),
    };
    let total = n * p as u64;
    out.rounds.push((total, total * case.size as u64, secs));
    Ok(())
}

/// The CPUs of the machine, as counted before the bench pinned itself.
pub(super) static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

fn cpus() -> usize {
    CPUS.get().copied().unwrap_or(1).max(1)
}

/// Waits a little when the queue was full or empty: spins, and yields the CPU now and then
/// (a party spinning on a CPU another party needs only delays it).
struct Backoff(u32);

impl Backoff {
    fn snooze(&mut self) {
        self.0 += 1;
        if self.0.is_multiple_of(64) {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

fn run_procs<const W: usize>(p: usize, c: usize, n: u64, name: &str) -> Res<f64> {
    let q = format!("{name}.q");
    let mut tx = mpmc::Sender::<[u64; W]>::create(&q, CAPACITY)?;
    let ready = RawValue::<u64>::create(&format!("{name}.ready"), 0)?;
    let got = RawValue::<u64>::create(&format!("{name}.got"), 0)?;
    let go = Event::create(&format!("{name}.go"))?;
    let size = (W * 8).to_string();
    let mut kids = Vec::new();
    // Parties pinned round-robin, the first one beside us: we only wait.
    for k in 0..p + c {
        let role = if k < p { "mpmc_prod" } else { "mpmc_cons" };
        let cpu = (k + 1) % cpus();
        let kid = std::process::Command::new(std::env::current_exe()?)
            .args(["__peer", role, name, &size, &n.to_string()])
            .env("SHMKIT_BENCH_CPU", cpu.to_string())
            .stdin(std::process::Stdio::null())
            .spawn()?;
        kids.push((k < p, kid));
    }
    let attach_by = Instant::now() + Duration::from_secs(30);
    while ready.atomic().load(Ordering::Acquire) < (p + c) as u64 {
        if Instant::now() > attach_by {
            return Err("mpmc peers did not attach".into());
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let t = Instant::now();
    go.set();
    for (producer, kid) in kids.iter_mut() {
        if *producer && !kid.wait()?.success() {
            return Err("an mpmc producer failed".into());
        }
    }
    for _ in 0..c {
        tx.send(message::<W>(u64::MAX))
            .map_err(shmkit::Error::from)?;
    }
    for (producer, kid) in kids.iter_mut() {
        if !*producer && !kid.wait()?.success() {
            return Err("an mpmc consumer failed".into());
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let total = n * p as u64;
    let counted = got.atomic().load(Ordering::Acquire);
    if counted != total {
        return Err(format!("mpmc consumers counted {counted} messages, expected {total}").into());
    }
    Ok(secs)
}

/// The peer side: `mpmc_prod` and `mpmc_cons`. `None` for other roles.
pub(super) fn peer(role: &str, name: &str, size: usize, count: u64) -> Option<Res<()>> {
    if role != "mpmc_prod" && role != "mpmc_cons" {
        return None;
    }
    if let Some(cpu) = std::env::var("SHMKIT_BENCH_CPU")
        .ok()
        .and_then(|c| c.parse().ok())
    {
        let _ = pin_to_cpu(cpu);
    }
    let producer = role == "mpmc_prod";
    Some(if size == 8 {
        party::<1>(producer, name, count)
    } else {
        party::<8>(producer, name, count)
    })
}

fn party<const W: usize>(producer: bool, name: &str, n: u64) -> Res<()> {
    let q = format!("{name}.q");
    let ready = RawValue::<u64>::open(&format!("{name}.ready"))?;
    let got = RawValue::<u64>::open(&format!("{name}.got"))?;
    let go = Event::open(&format!("{name}.go"))?;
    if producer {
        let mut tx = mpmc::Sender::<[u64; W]>::open(&q)?;
        ready.atomic().fetch_add(1, Ordering::AcqRel);
        go.wait()?;
        for i in 0..n {
            tx.send(message::<W>(i)).map_err(shmkit::Error::from)?;
        }
    } else {
        let mut rx = mpmc::Receiver::<[u64; W]>::open(&q)?;
        ready.atomic().fetch_add(1, Ordering::AcqRel);
        go.wait()?;
        let (mut count, mut acc) = (0u64, 0u64);
        loop {
            let m = rx.recv()?;
            if m[0] == u64::MAX {
                break;
            }
            acc ^= m.iter().fold(0, |a, w| a ^ w);
            count += 1;
        }
        std::hint::black_box(acc);
        got.atomic().fetch_add(count, Ordering::AcqRel);
    }
    Ok(())
}

/// The same work between threads of this process, through crossbeam's `ArrayQueue`
/// (spinning when full or empty, as the channel's busy paths do).
fn run_threads<const W: usize>(p: usize, c: usize, n: u64) -> f64 {
    let q = Arc::new(ArrayQueue::<[u64; W]>::new(CAPACITY));
    let start = Arc::new(std::sync::Barrier::new(p + c + 1));
    let mut handles = Vec::new();
    for k in 0..p + c {
        let (q, start) = (q.clone(), start.clone());
        let cpu = (k + 1) % cpus();
        handles.push(std::thread::spawn(move || {
            let _ = pin_to_cpu(cpu);
            start.wait();
            if k < p {
                let mut wait = Backoff(0);
                for i in 0..n {
                    let mut m = message::<W>(i);
                    while let Err(back) = q.push(m) {
                        m = back;
                        wait.snooze();
                    }
                }
                0
            } else {
                let (mut count, mut acc) = (0u64, 0u64);
                let mut wait = Backoff(0);
                loop {
                    let Some(m) = q.pop() else {
                        wait.snooze();
                        continue;
                    };
                    if m[0] == u64::MAX {
                        break;
                    }
                    acc ^= m.iter().fold(0, |a, w| a ^ w);
                    count += 1;
                }
                std::hint::black_box(acc);
                count
            }
        }));
    }
    start.wait();
    let t = Instant::now();
    let mut producers: Vec<_> = handles.drain(..p).collect();
    for h in producers.drain(..) {
        let _ = h.join();
    }
    let mut wait = Backoff(0);
    for _ in 0..c {
        let mut m = message::<W>(u64::MAX);
        while let Err(back) = q.push(m) {
            m = back;
            wait.snooze();
        }
    }
    let counted: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    let secs = t.elapsed().as_secs_f64();
    debug_assert_eq!(counted, n * p as u64);
    secs
}
