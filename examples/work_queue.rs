//! An MPMC work queue feeding 4 worker processes: the shape of `Pool.map` /
//! `imap_unordered`. The parent puts task numbers on one queue; workers take them, compute,
//! and put `(task, result)` on a results queue; the parent collects them in any order.
//!
//! ```sh
//! cargo run --release --example work_queue
//! ```

use std::process::Command;

use shmkit::mpmc;

const WORKERS: usize = 4;
const TASKS: u64 = 10_000;
const STOP: u64 = u64::MAX;

/// The "expensive" function being mapped.
fn work(n: u64) -> u64 {
    (0..1000).fold(n, |a, i| {
        a.wrapping_mul(6364136223846793005).wrapping_add(i)
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, tasks, results] = args.as_slice() {
        assert_eq!(role, "worker");
        let mut tasks = mpmc::Receiver::<u64>::open(tasks)?;
        let mut results = mpmc::Sender::<[u64; 2]>::open(results)?;
        loop {
            let n = tasks.recv()?;
            if n == STOP {
                return Ok(());
            }
            results.send([n, work(n)])?;
        }
    }

    let pid = std::process::id();
    let (tq, rq) = (
        format!("example-wq-tasks-{pid}"),
        format!("example-wq-results-{pid}"),
    );
    let mut tasks = mpmc::Sender::<u64>::create(&tq, 256)?;
    let mut results = mpmc::Receiver::<[u64; 2]>::create(&rq, 256)?;
    let exe = std::env::current_exe()?;
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| Command::new(&exe).args(["worker", &tq, &rq]).spawn())
        .collect::<Result<_, _>>()?;
    let mut done = vec![false; TASKS as usize];
    let (mut sent, mut received) = (0u64, 0u64);
    // Interleave feeding and collecting, so that neither queue fills up for good.
    while received < TASKS {
        while sent < TASKS {
            match tasks.try_send(sent) {
                Ok(()) => sent += 1,
                Err(e) if matches!(e.error, shmkit::Error::WouldBlock) => break,
                Err(e) => return Err(e.error.into()),
            }
        }
        let [n, r] = results.recv()?;
        assert_eq!(r, work(n));
        assert!(
            !std::mem::replace(&mut done[n as usize], true),
            "task {n} done twice"
        );
        received += 1;
    }
    for _ in 0..WORKERS {
        tasks.send(STOP)?;
    }
    for mut w in workers {
        assert!(w.wait()?.success());
    }
    println!("{TASKS} tasks mapped over {WORKERS} worker processes, each result exactly once");
    Ok(())
}
