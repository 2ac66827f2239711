//! The FloatChannel done right: the same 1,000 messages of 100,000 `f64` as
//! `examples/float_channel.rs`, through a frame ring. The sender process fills each message
//! in place in the ring (no staging buffer, and no stop-and-wait on two semaphores: up to
//! ten messages are in flight); the receiver (this process) reads each one in place as
//! `&[f64]` and checks every value.
//!
//! ```sh
//! cargo run --release --example float_channel_zero_copy
//! ```

use std::process::Command;
use std::time::Instant;

use shmkit::frames;

const LEN: usize = 100_000;
const MESSAGES: usize = 1_000;
const RING: usize = 8 << 20; // 8 MiB: ten messages

fn value(i: usize, k: usize) -> f64 {
    (i * LEN + k) as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, role, name] = args.as_slice() {
        assert_eq!(role, "sender");
        let mut tx = frames::Sender::open(name)?;
        for i in 0..MESSAGES {
            let mut loan = tx.loan(LEN * 8)?;
            for (k, x) in loan.as_mut_slice::<f64>()?.iter_mut().enumerate() {
                *x = value(i, k);
            }
            loan.commit()?;
        }
        return Ok(());
    }

    let name = format!("example-floatch-zc-{}", std::process::id());
    let mut rx = frames::Receiver::create(&name, RING)?;
    let start = Instant::now();
    let mut sender = Command::new(std::env::current_exe()?)
        .args(["sender", &name])
        .spawn()?;
    for i in 0..MESSAGES {
        let frame = rx.recv_ref()?; // in place: zero copies
        let floats = frame.as_slice::<f64>()?;
        let ok = floats.len() == LEN && floats.iter().enumerate().all(|(k, &x)| x == value(i, k));
        assert!(ok, "message {i} arrived damaged");
    }
    let secs = start.elapsed().as_secs_f64();
    assert!(sender.wait()?.success());
    println!(
        "FloatChannel (zero-copy frame ring): {MESSAGES} messages of {LEN} f64 in {secs:.3} s: \
         {:.0} messages/s, {:.2} GB/s (includes starting the sender process)",
        MESSAGES as f64 / secs,
        (MESSAGES * LEN * 8) as f64 / secs / 1e9
    );
    Ok(())
}
