//! The classic `multiprocessing.Lock` program: 10 processes print under one lock, so
//! their lines never interleave.
//!
//! ```sh
//! cargo run --release --example lock_print
//! ```

use std::io::Write;
use std::process::Command;

use shmkit::Mutex;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, name, i] = args.as_slice() {
        let lock = Mutex::<()>::open(name)?;
        for line in 0..3 {
            let _g = lock.lock()?;
            let mut out = std::io::stdout().lock();
            // Written in pieces on purpose: without the lock, other processes' pieces
            // would land in between.
            for word in ["hello", "world", "from", "process", i.as_str(), "line"] {
                write!(out, "{word} ")?;
                out.flush()?;
            }
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }

    let name = format!("example-lock-print-{}", std::process::id());
    let _lock = Mutex::<()>::create(&name, ())?;
    let kids: Vec<_> = (0..10)
        .map(|i| {
            Command::new(std::env::current_exe()?)
                .args([&name, &i.to_string()])
                .spawn()
        })
        .collect::<Result<_, _>>()?;
    for mut k in kids {
        assert!(k.wait()?.success());
    }
    Ok(())
}
