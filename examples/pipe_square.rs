//! The two-pipe pipeline of the `multiprocessing` docs: one process sends 0..10 down a
//! pipe, a second squares each number and sends it down another pipe, and the parent
//! prints the squares until that pipe closes.
//!
//! The producer and the squarer start together and meet with `Pipe::open_or_create`:
//! whichever comes first creates the pipe, and neither waits for the other to be ready.
//! As the creator's end removes the pipe's name when it drops, the producer ends its
//! stream with an empty frame and keeps its end until the squarer has closed its own.
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
            // Sends 0..10 into the squarer's pipe, then an empty frame: the end.
            let mut out = Pipe::open_or_create(&args[2], RING)?;
            for i in 0u64..10 {
                out.send(&i.to_le_bytes())?;
            }
            out.send(b"")?;
            // Hold the pipe (and its name, if we created it) until the squarer is done.
            match out.recv() {
                Err(Error::Disconnected) => Ok(()),
                other => Err(format!("expected the squarer to close, got {other:?}").into()),
            }
        }
        Some("squarer") => {
            let mut input = Pipe::open_or_create(&args[2], RING)?;
            let mut out = Pipe::open(&args[3])?;
            loop {
                let frame = input.recv()?;
                if frame.is_empty() {
                    return Ok(()); // the producer is done
                }
                let n = u64::from_le_bytes(frame[..].try_into()?);
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
            // No handshake: the two meet on `numbers`, whichever starts first.
            let mut producer = Command::new(&exe).args(["numbers", &numbers]).spawn()?;
            let mut squarer = Command::new(&exe)
                .args(["squarer", &numbers, &squares])
                .spawn()?;
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
