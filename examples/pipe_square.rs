//! The two-pipe pipeline of the `multiprocessing` docs: one process sends 0..10 down a
//! pipe, a second squares each number and sends it down another pipe, and the parent
//! prints the squares until that pipe closes.
//!
//! ```sh
//! cargo run --release --example pipe_square
//! ```

use std::process::Command;

use shmkit::{Error, Pipe};

const RING: usize = 1 << 12;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("numbers") => {
            // Sends 0..10 into the squarer's pipe, then closes it (drop).
            let mut out = Pipe::open(&args[2])?;
            for i in 0u64..10 {
                out.send(&i.to_le_bytes())?;
            }
            Ok(())
        }
        Some("squarer") => {
            let mut input = Pipe::create_one_way(&args[2], RING)?;
            let mut out = Pipe::open(&args[3])?;
            out.send(b"ready")?; // the parent starts the producer once we listen
            loop {
                let n = match input.recv() {
                    Ok(frame) => u64::from_le_bytes(frame[..].try_into()?),
                    Err(Error::Disconnected) => return Ok(()), // producer done
                    Err(e) => return Err(e.into()),
                };
                out.send(&(n * n).to_le_bytes())?;
            }
        }
        _ => {
            let pid = std::process::id();
            let (numbers, squares) = (
                format!("example-numbers-{pid}"),
                format!("example-squares-{pid}"),
            );
            let mut squares_in = Pipe::create_one_way(&squares, RING)?;
            let exe = std::env::current_exe()?;
            let mut squarer = Command::new(&exe)
                .args(["squarer", &numbers, &squares])
                .spawn()?;
            assert_eq!(&*squares_in.recv()?, b"ready");
            let mut producer = Command::new(&exe).args(["numbers", &numbers]).spawn()?;
            loop {
                match squares_in.recv() {
                    Ok(frame) => println!("{}", u64::from_le_bytes(frame[..].try_into()?)),
                    Err(Error::Disconnected) => break, // the squarer closed its end
                    Err(e) => return Err(e.into()),
                }
            }
            assert!(producer.wait()?.success() && squarer.wait()?.success());
            Ok(())
        }
    }
}
