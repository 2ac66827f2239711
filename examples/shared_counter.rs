//! The classic `multiprocessing.Value` counter: several processes add to one shared
//! integer under its lock, and the parent checks that no increment was lost.
//!
//! ```sh
//! cargo run --release --example shared_counter
//! ```

use std::process::Command;
use std::time::Instant;

use shmkit::Value;

const WORKERS: usize = 4;
const ADDS: u64 = 250_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, name] = args.as_slice() {
        if role == "worker" {
            // A worker process: open the counter by name and add under its lock.
            let counter = Value::<u64>::open(name)?;
            for _ in 0..ADDS {
                *counter.lock()? += 1;
            }
            return Ok(());
        }
    }

    let name = format!("example-counter-{}", std::process::id());
    let counter = Value::<u64>::create(&name, 0)?;
    let start = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            Command::new(std::env::current_exe()?)
                .args(["worker", &name])
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for mut w in workers {
        assert!(w.wait()?.success(), "a worker failed");
    }
    let elapsed = start.elapsed();
    let total = counter.get()?;
    println!(
        "{WORKERS} processes x {ADDS} locked increments = {total} (expected {}), {:.1} M increments/s",
        WORKERS as u64 * ADDS,
        total as f64 / elapsed.as_secs_f64() / 1e6
    );
    assert_eq!(total, WORKERS as u64 * ADDS);
    Ok(())
    // `counter` drops here: the creator unlinks the name.
}
