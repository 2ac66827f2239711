//! The classic `multiprocessing.Array` program: worker processes each fill their slice of
//! a shared array of `f64` (in place, under the array's lock), and the parent sums it.
//!
//! ```sh
//! cargo run --release --example shared_array
//! ```

use std::process::Command;

use shmkit::Array;

const WORKERS: usize = 4;
const LEN: usize = 1_000_000;

fn value_at(i: usize) -> f64 {
    (i as f64).sqrt()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, name, worker] = args.as_slice() {
        if role == "worker" {
            let worker: usize = worker.parse()?;
            let array = Array::<f64>::open(name)?;
            let chunk = array.len().div_ceil(WORKERS);
            let range = worker * chunk..((worker + 1) * chunk).min(array.len());
            // One lock for the whole array, as in Python; the guard derefs to `[f64]` in place.
            let mut data = array.lock()?;
            for i in range {
                data[i] = value_at(i);
            }
            return Ok(());
        }
    }

    let name = format!("example-array-{}", std::process::id());
    let array = Array::<f64>::create_zeroed(&name, LEN)?;
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            Command::new(std::env::current_exe()?)
                .args(["worker", &name, &w.to_string()])
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for mut w in workers {
        assert!(w.wait()?.success(), "a worker failed");
    }
    let sum: f64 = array.lock()?.iter().sum();
    let expected: f64 = (0..LEN).map(value_at).sum();
    println!(
        "{WORKERS} workers filled {LEN} f64 in place; sum = {sum:.3} (expected {expected:.3})"
    );
    assert!((sum - expected).abs() <= expected * 1e-12);
    Ok(())
}
