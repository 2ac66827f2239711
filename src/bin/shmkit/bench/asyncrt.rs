//! The async rows of `shmkit bench`: an `aio::Async` receiver on a tokio current-thread
//! runtime, against the blocking receiver and against tokio's own `UnixStream`, in the same
//! rounds (interleaved: every round runs the three kinds).
//!
//! - Round trip, peer asleep: the parent sends an 8-byte request over an spsc ring and
//!   waits for the reply on another; the peer process (blocking) echoes. The parent waits
//!   50 µs (untimed) before each request, so the peer has gone to sleep: the time is one
//!   wake-up each way. The `UnixStream` kind does the same over a socket pair.
//! - One-way throughput: the peer sends `u64`s as fast as it can, one `send` (or one
//!   `write`) each; the parent receives every one: the async receiver with `recv_many`
//!   (one wait per batch of up to 1,024), the blocking one with `recv`, tokio's
//!   `UnixStream` with reads of up to 64 KiB, counted in 8-byte messages.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream as StdStream;
use std::time::{Duration, Instant};

use shmkit::aio::Async;
use shmkit::process::Process;
use shmkit::spsc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::python::{num, paired, stats};
use super::Res;

shmkit::task! {
    /// Echoes `n` requests from `req` to `rep`, blocking.
    fn echo(req: String, rep: String, n: u64, cpu: Option<usize>) -> Result<(), String> {
        pin(cpu);
        let mut rx = spsc::Receiver::<u64>::open(&req).map_err(|e| e.to_string())?;
        let mut tx = spsc::Sender::<u64>::open(&rep).map_err(|e| e.to_string())?;
        for _ in 0..n {
            let v = rx.recv().map_err(|e| e.to_string())?;
            tx.send(v + 1).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

shmkit::task! {
    /// Echoes `n` 8-byte requests on the Unix socket at `path`.
    fn echo_unix(path: String, n: u64, cpu: Option<usize>) -> Result<(), String> {
        pin(cpu);
        let mut s = StdStream::connect(&path).map_err(|e| e.to_string())?;
        let mut b = [0u8; 8];
        for _ in 0..n {
            s.read_exact(&mut b).map_err(|e| e.to_string())?;
            let v = u64::from_le_bytes(b) + 1;
            s.write_all(&v.to_le_bytes()).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

shmkit::task! {
    /// Sends `1..=n` on spsc `name`.
    fn produce(name: String, n: u64, cpu: Option<usize>) -> Result<(), String> {
        pin(cpu);
        let mut tx = spsc::Sender::<u64>::open(&name).map_err(|e| e.to_string())?;
        for i in 1..=n {
            tx.send(i).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

shmkit::task! {
    /// Sends `1..=n` as 8-byte messages on the Unix socket at `path`, one write each (a
    /// message is sent when `send` returns, as with the ring).
    fn produce_unix(path: String, n: u64, cpu: Option<usize>) -> Result<(), String> {
        pin(cpu);
        let mut s = StdStream::connect(&path).map_err(|e| e.to_string())?;
        for i in 1..=n {
            s.write_all(&i.to_le_bytes()).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// The peer's CPU: the second one, while this process runs pinned to the first (as the
/// showdown's own rows do: a wake-up is then always one across CPUs, whichever kind
/// makes it, rather than whatever the scheduler's placement makes it).
fn peer_cpu() -> Option<usize> {
    (super::mpmc::CPUS.get().copied().unwrap_or(1) > 1).then_some(1)
}

/// Pins the peer process (see `peer_cpu`).
fn pin(cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        let _ = shmkit::__private::pin_to_cpu(cpu);
    }
}

const KINDS: [&str; 3] = [
    "shmkit async (tokio)",
    "shmkit blocking",
    "tokio UnixStream",
];

fn name(what: &str) -> String {
    format!("bench.aio.{}.{what}", std::process::id())
}

fn socket_path(what: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("shmkit-bench-{}-{what}.sock", std::process::id()))
}

/// A peer process started by `spawn` (given the socket's path) and connected to us over
/// a Unix socket: our end (non-blocking, for tokio) and the peer.
fn unix_peer<P>(
    what: &str,
    spawn: impl FnOnce(String) -> shmkit::Result<P>,
) -> Res<(StdStream, P)> {
    let path = socket_path(what);
    let _ = std::fs::remove_file(&path);
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    let peer = spawn(path.display().to_string())?;
    let (s, _) = listener.accept()?;
    let _ = std::fs::remove_file(&path);
    s.set_nonblocking(true)?;
    Ok((s, peer))
}

/// Median round trip (ns) of kind `k`, `n` round trips with a sleeping peer.
fn round_trip(rt: &tokio::runtime::Runtime, k: usize, n: u64) -> Res<f64> {
    let mut times = Vec::with_capacity(n as usize);
    let pause = Duration::from_micros(50);
    if k < 2 {
        let (req, rep) = (name("req"), name("rep"));
        let mut tx = spsc::Sender::<u64>::create(&req, 64)?;
        let rx = spsc::Receiver::<u64>::create(&rep, 64)?;
        let peer = Process::spawn(echo, (req, rep, n, peer_cpu()))?;
        if k == 0 {
            let mut rx = Async::new(rx)?;
            rt.block_on(async {
                for i in 0..n {
                    std::thread::sleep(pause);
                    let t = Instant::now();
                    tx.send(i)?;
                    let v = rx.recv().await?;
                    times.push(t.elapsed().as_nanos() as f64);
                    assert_eq!(v, i + 1);
                }
                Ok::<(), shmkit::Error>(())
            })?;
        } else {
            let mut rx = rx;
            for i in 0..n {
                std::thread::sleep(pause);
                let t = Instant::now();
                tx.send(i)?;
                let v = rx.recv()?;
                times.push(t.elapsed().as_nanos() as f64);
                assert_eq!(v, i + 1);
            }
        }
        peer.join()??;
    } else {
        let (s, peer) = unix_peer("rt", |path| {
            Process::spawn(echo_unix, (path, n, peer_cpu()))
        })?;
        rt.block_on(async {
            let mut s = tokio::net::UnixStream::from_std(s)?;
            let mut b = [0u8; 8];
            for i in 0..n {
                std::thread::sleep(pause);
                let t = Instant::now();
                s.write_all(&i.to_le_bytes()).await?;
                s.read_exact(&mut b).await?;
                times.push(t.elapsed().as_nanos() as f64);
                assert_eq!(u64::from_le_bytes(b), i + 1);
            }
            Ok::<(), std::io::Error>(())
        })?;
        peer.join()??;
    }
    Ok(stats(&times).0)
}

/// Messages per second of kind `k`, `n` messages one way.
fn throughput(rt: &tokio::runtime::Runtime, k: usize, n: u64) -> Res<f64> {
    let t = Instant::now();
    if k < 2 {
        let ch = name("tp");
        let rx = spsc::Receiver::<u64>::create(&ch, 4096)?;
        let peer = Process::spawn(produce, (ch, n, peer_cpu()))?;
        let mut sum = 0u64;
        if k == 0 {
            // The throughput form: one wait per batch of whatever is ready.
            let mut rx = Async::new(rx)?;
            rt.block_on(async {
                let mut buf = Vec::with_capacity(1024);
                let mut got = 0;
                while got < n {
                    buf.clear();
                    got += rx.recv_many(&mut buf, 1024).await? as u64;
                    sum = buf.iter().fold(sum, |s, v| s.wrapping_add(*v));
                }
                Ok::<(), shmkit::Error>(())
            })?;
        } else {
            let mut rx = rx;
            for _ in 0..n {
                sum = sum.wrapping_add(rx.recv()?);
            }
        }
        assert_eq!(sum, n * (n + 1) / 2);
        peer.join()??;
    } else {
        let (s, peer) = unix_peer("tp", |path| {
            Process::spawn(produce_unix, (path, n, peer_cpu()))
        })?;
        let got = rt.block_on(async {
            let mut s = tokio::net::UnixStream::from_std(s)?;
            let mut buf = vec![0u8; 64 << 10];
            let mut bytes = 0u64;
            while bytes < n * 8 {
                let k = s.read(&mut buf).await?;
                if k == 0 {
                    break;
                }
                bytes += k as u64;
            }
            Ok::<u64, std::io::Error>(bytes)
        })?;
        assert_eq!(got, n * 8);
        peer.join()??;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// Runs the rows for `rounds` rounds; the table.
pub(super) fn run(rounds: usize, full: bool) -> Res<String> {
    let (trips, msgs) = if full {
        (20_000, 20_000_000)
    } else {
        (3_000, 2_000_000)
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut rtt = vec![Vec::new(); 3];
    let mut tp = vec![Vec::new(); 3];
    for round in 0..rounds {
        eprint!("\r\x1b[2Kasync: round {}/{rounds}", round + 1);
        for k in 0..3 {
            rtt[k].push(round_trip(&rt, k, trips)?);
            tp[k].push(throughput(&rt, k, msgs)?);
        }
    }
    eprint!("\r\x1b[2K");
    use std::fmt::Write;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\nAsync receiver on a tokio current-thread runtime (CPU 0, its peer on CPU 1); medians of {rounds} rounds, [min-max]"
    );
    let _ = writeln!(
        t,
        "{:<24} {:>30} {:>30}",
        "", "round trip, peer asleep (ns)", "one-way 8-byte msgs/s (*)"
    );
    for (k, kind) in KINDS.iter().enumerate() {
        let (rm, rlo, rhi) = stats(&rtt[k]);
        let (tm, tlo, thi) = stats(&tp[k]);
        let _ = writeln!(
            t,
            "{kind:<24} {:>30} {:>30}",
            format!("{} [{}-{}]", num(rm), num(rlo), num(rhi)),
            format!("{} [{}-{}]", num(tm), num(tlo), num(thi))
        );
    }
    let _ = writeln!(
        t,
        "(*) async: recv_many, batches of up to 1,024; blocking: recv; UnixStream: reads of up to 64 KiB"
    );
    // Each ratio the median of the rounds' ratios (the three kinds run back to back in
    // every round).
    let _ = writeln!(
        t,
        "async vs blocking: round trip {:.2}×, throughput {:.2}×; async vs tokio UnixStream: round trip {:.2}×, throughput {:.1}×",
        paired(&rtt[0], &rtt[1]),
        paired(&tp[0], &tp[1]),
        paired(&rtt[0], &rtt[2]),
        paired(&tp[0], &tp[2])
    );
    Ok(t)
}
