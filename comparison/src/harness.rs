//! What both comparison binaries share: the peer process (the same binary re-run), unique
//! segment names, percentiles. Included by `main.rs` (`mod harness;`) and by
//! `bin/queues.rs` (`#[path = "../harness.rs"] mod harness;`).

use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// A peer process; killed and reaped if still running when dropped.
pub struct Peer(pub Child);

impl Peer {
    /// Waits (at most 10 s) for the peer to exit, successfully.
    pub fn finish(mut self) -> Res<()> {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.0.try_wait()? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!("peer exited with {status}").into())
                };
            }
            if Instant::now() > until {
                return Err("the peer did not exit".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A segment name of this process, unique within it: `PREFIX.PID-KIND-N`.
pub fn unique_name(prefix: &str, kind: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    // Relaxed: a counter for unique names, nothing is published through it.
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}-{kind}-{n}", std::process::id())
}

/// The `p` quantile of sorted samples (NaN if none).
pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64
}

/// The command line, `[--rounds N | --quick]`: the rounds to run (`default` without
/// arguments, 3 with `--quick`), or `None` once `--help` has printed the usage.
pub fn parse_rounds(default: usize, program: &str) -> Res<Option<usize>> {
    let mut rounds = default;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => rounds = args.next().ok_or("--rounds N")?.parse()?,
            "--quick" => rounds = 3,
            "-h" | "--help" => {
                println!("usage: {program} [--rounds N | --quick]");
                return Ok(None);
            }
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    Ok(Some(rounds))
}

/// Removes shmkit segments that earlier runs (killed ones) left under `prefix`.
pub fn clean_stale(prefix: &str) {
    if let Err(e) = shmkit::clean(prefix, shmkit::CleanMode::Remove) {
        eprintln!("note: could not clean stale segments: {e}");
    }
}

/// The peer's set-up, from the last field of its spec (`parent`, the parent's pid): dies
/// with the parent (`false` if the parent is gone already), and runs on CPU 1.
pub fn become_peer(parent: &str) -> Res<bool> {
    let parent: i32 = parent.parse()?;
    // SAFETY: prctl(PR_SET_PDEATHSIG) and getppid take and return plain integers.
    let orphan = unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::getppid() != parent
    };
    // Not conditioned on `available_parallelism`: we inherited the parent's affinity (CPU 0
    // alone), so it would say 1. Fails harmlessly on a one-CPU machine.
    let _ = shmkit::__private::pin_to_cpu(1);
    Ok(!orphan)
}
