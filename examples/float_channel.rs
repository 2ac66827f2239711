//! The FloatChannel, faithfully: Python's best-known shared-memory trick rewritten with
//! shmkit. A `RawArray<f64>` of 100,000 holds one message, a `Value<u64>` its length, and
//! two semaphores hand the buffer back and forth (`empty` = 1: the sender may write;
//! `full` = 0: the receiver may read). One process sends 1,000 messages of 100,000 `f64`,
//! another receives them and checks every one.
//!
//! ```sh
//! cargo run --release --example float_channel
//! ```
//!
//! `examples/float_channel_zero_copy.rs` (with the channels) does the same through a frame
//! ring, without the stop-and-wait.

use std::process::Command;
use std::time::Instant;

use shmkit::{RawArray, Semaphore, Value};

const LEN: usize = 100_000;
const MESSAGES: usize = 1_000;

struct Channel {
    buf: RawArray<f64>,
    len: Value<u64>,
    empty: Semaphore,
    full: Semaphore,
}

impl Channel {
    fn create(base: &str) -> shmkit::Result<Channel> {
        Ok(Channel {
            buf: RawArray::create_zeroed(&format!("{base}.buf"), LEN)?,
            len: Value::create(&format!("{base}.len"), 0)?,
            empty: Semaphore::create(&format!("{base}.empty"), 1)?,
            full: Semaphore::create(&format!("{base}.full"), 0)?,
        })
    }

    fn open(base: &str) -> shmkit::Result<Channel> {
        Ok(Channel {
            buf: RawArray::open(&format!("{base}.buf"))?,
            len: Value::open(&format!("{base}.len"))?,
            empty: Semaphore::open(&format!("{base}.empty"))?,
            full: Semaphore::open(&format!("{base}.full"))?,
        })
    }

    fn send(&self, msg: &[f64]) -> shmkit::Result<()> {
        self.empty.acquire()?;
        // SAFETY: holding `empty` means the receiver is not reading the buffer, and we are
        // the only sender.
        unsafe { self.buf.as_mut_slice()[..msg.len()].copy_from_slice(msg) };
        self.len.set(msg.len() as u64)?;
        self.full.release()
    }

    fn recv_with<R>(&self, f: impl FnOnce(&[f64]) -> R) -> shmkit::Result<R> {
        self.full.acquire()?;
        let n = (self.len.get()? as usize).min(LEN);
        // SAFETY: holding `full` means the sender has finished writing and waits for
        // `empty`, which we release only after the view is gone.
        let r = f(unsafe { &self.buf.as_slice()[..n] });
        self.empty.release()?;
        Ok(r)
    }
}

fn message(i: usize) -> impl Iterator<Item = f64> {
    (0..LEN).map(move |k| (i * LEN + k) as f64)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, base] = args.as_slice() {
        let ch = Channel::open(base)?;
        if role == "sender" {
            let mut msg = vec![0.0; LEN];
            for i in 0..MESSAGES {
                msg.iter_mut().zip(message(i)).for_each(|(m, v)| *m = v);
                ch.send(&msg)?;
            }
        } else {
            for i in 0..MESSAGES {
                let ok = ch.recv_with(|m| m.len() == LEN && m.iter().copied().eq(message(i)))?;
                assert!(ok, "message {i} arrived damaged");
            }
        }
        return Ok(());
    }

    let base = format!("example-floatch-{}", std::process::id());
    let _ch = Channel::create(&base)?;
    let exe = std::env::current_exe()?;
    let start = Instant::now();
    let mut receiver = Command::new(&exe).args(["receiver", &base]).spawn()?;
    let mut sender = Command::new(&exe).args(["sender", &base]).spawn()?;
    assert!(sender.wait()?.success() && receiver.wait()?.success());
    let secs = start.elapsed().as_secs_f64();
    let bytes = (MESSAGES * LEN * 8) as f64;
    println!(
        "FloatChannel (RawArray + 2 semaphores): {MESSAGES} messages of {LEN} f64 in {secs:.3} s: \
         {:.0} messages/s, {:.2} GB/s (includes starting both processes)",
        MESSAGES as f64 / secs,
        bytes / secs / 1e9
    );
    Ok(())
}
