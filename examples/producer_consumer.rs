//! The classic producer/consumer of `multiprocessing.Queue`, with a sentinel to stop:
//! first one producer and one consumer over an `spsc` channel, then one producer and
//! several consumers over an `mpmc` queue, one sentinel per consumer.
//!
//! ```sh
//! cargo run --release --example producer_consumer
//! ```

use std::process::Command;

use shmkit::{mpmc, spsc};

const ITEMS: u64 = 1_000_000;
const CONSUMERS: usize = 3;
const SENTINEL: u64 = u64::MAX;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("spsc-producer") => {
            let mut tx = spsc::Sender::<u64>::open(&args[2])?;
            for i in 0..ITEMS {
                tx.send(i)?;
            }
            tx.send(SENTINEL)?;
            Ok(())
        }
        Some("mpmc-producer") => {
            let mut tx = mpmc::Sender::<u64>::open(&args[2])?;
            for i in 0..ITEMS {
                tx.send(i)?;
            }
            for _ in 0..CONSUMERS {
                tx.send(SENTINEL)?;
            }
            Ok(())
        }
        Some("mpmc-consumer") => {
            let mut rx = mpmc::Receiver::<u64>::open(&args[2])?;
            let (mut count, mut sum) = (0u64, 0u64);
            loop {
                let v = rx.recv()?;
                if v == SENTINEL {
                    break;
                }
                count += 1;
                sum = sum.wrapping_add(v);
            }
            println!("consumer {}: {count} items, sum {sum}", std::process::id());
            Ok(())
        }
        _ => {
            let exe = std::env::current_exe()?;
            let pid = std::process::id();

            // One producer, one consumer (this process).
            let name = format!("example-pc-spsc-{pid}");
            let mut rx = spsc::Receiver::<u64>::create(&name, 1024)?;
            let mut producer = Command::new(&exe).args(["spsc-producer", &name]).spawn()?;
            let mut expected = 0;
            loop {
                let v = rx.recv()?;
                if v == SENTINEL {
                    break;
                }
                assert_eq!(v, expected, "lost or reordered");
                expected += 1;
            }
            assert!(producer.wait()?.success());
            println!("spsc: received {expected} items in order, then the sentinel");

            // One producer, several consumer processes, one sentinel each.
            let name = format!("example-pc-mpmc-{pid}");
            // The parent holds a receiver handle only to keep the queue's name alive.
            let keep = mpmc::Receiver::<u64>::create(&name, 1024)?;
            let consumers: Vec<_> = (0..CONSUMERS)
                .map(|_| Command::new(&exe).args(["mpmc-consumer", &name]).spawn())
                .collect::<Result<_, _>>()?;
            let mut producer = Command::new(&exe).args(["mpmc-producer", &name]).spawn()?;
            assert!(producer.wait()?.success());
            for mut c in consumers {
                assert!(c.wait()?.success());
            }
            drop(keep);
            println!(
                "mpmc: {ITEMS} items shared by {CONSUMERS} consumers (sum of all = {})",
                ITEMS * (ITEMS - 1) / 2
            );
            Ok(())
        }
    }
}
