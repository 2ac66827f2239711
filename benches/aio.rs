//! Async benchmarks: an `aio::Async` end on a tokio current-thread runtime against the
//! blocking end and against tokio's own `UnixStream`, with the peer in another process.
//!
//! Groups (each with the three kinds: `async`, `blocking`, `unix_stream`):
//! - `aio/round_trip_peer_asleep`: an 8-byte request over one spsc ring, the reply over
//!   another; the blocking peer echoes. A 50 µs pause (untimed) before each request lets
//!   the peer fall asleep, so each round trip is one wake-up each way.
//! - `aio/one_way_8B`: the peer sends `u64`s as fast as it can (one `send` or `write`
//!   each); the async end takes them with `recv_many` (and, `async_recv_each`, with one
//!   `recv().await` each), the blocking one with `recv`, `UnixStream` with reads of up to
//!   64 KiB.
//! - `aio/send_8B`: the async end sends (one `send().await` each) into a blocking
//!   receiver, against a blocking `send`.
//!
//! With two CPUs or more, this process runs on CPU 0 and its peers on CPU 1 (as in
//! `shmkit bench`): a wake-up is then always one across CPUs, whichever kind makes it.
//! `shmkit bench` interleaves the same kinds round by round and prints the ratios.
//!
//! Run: `cargo bench --bench aio --features tokio` (not `--all-features`, whose test-only
//! failpoints cost every protocol step a check); `-- --test` for a quick check. The bench
//! binary is also the peers' binary: `main` calls `shmkit::init()` first.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream as StdStream};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use shmkit::aio::Async;
use shmkit::process::Process;
use shmkit::spsc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

shmkit::task! {
    /// Echoes `n` requests from `req` to `rep`, blocking.
    fn echo(req: String, rep: String, n: u64, cpu: Option<usize>) {
        pin(cpu);
        let mut rx = spsc::Receiver::<u64>::open(&req).unwrap();
        let mut tx = spsc::Sender::<u64>::open(&rep).unwrap();
        for _ in 0..n {
            let v = rx.recv().unwrap();
            tx.send(v + 1).unwrap();
        }
    }
}

shmkit::task! {
    /// Echoes `n` 8-byte requests on the Unix socket at `path`.
    fn echo_unix(path: String, n: u64, cpu: Option<usize>) {
        pin(cpu);
        let mut s = StdStream::connect(&path).unwrap();
        let mut b = [0u8; 8];
        for _ in 0..n {
            s.read_exact(&mut b).unwrap();
            s.write_all(&(u64::from_le_bytes(b) + 1).to_le_bytes()).unwrap();
        }
    }
}

shmkit::task! {
    /// Sends `1..=n` on spsc `name`.
    fn produce(name: String, n: u64, cpu: Option<usize>) {
        pin(cpu);
        let mut tx = spsc::Sender::<u64>::open(&name).unwrap();
        for i in 1..=n {
            tx.send(i).unwrap();
        }
    }
}

shmkit::task! {
    /// Sends `1..=n` as 8-byte writes on the Unix socket at `path`.
    fn produce_unix(path: String, n: u64, cpu: Option<usize>) {
        pin(cpu);
        let mut s = StdStream::connect(&path).unwrap();
        for i in 1..=n {
            s.write_all(&i.to_le_bytes()).unwrap();
        }
    }
}

shmkit::task! {
    /// Receives `n` values on spsc `name` and returns their sum.
    fn consume(name: String, n: u64, cpu: Option<usize>) -> u64 {
        pin(cpu);
        let mut rx = spsc::Receiver::<u64>::open(&name).unwrap();
        (0..n).map(|_| rx.recv().unwrap()).fold(0u64, u64::wrapping_add)
    }
}

fn pin(cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        let _ = shmkit::__private::pin_to_cpu(cpu);
    }
}

fn name(what: &str) -> String {
    format!("bench.aio.{}.{what}", std::process::id())
}

/// A peer started by `spawn` (given a socket path) and connected to us: our end.
fn unix_peer<P>(spawn: impl FnOnce(String) -> P) -> (StdStream, P) {
    let path = std::env::temp_dir().join(format!("shmkit-bench-aio-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let peer = spawn(path.display().to_string());
    let (s, _) = listener.accept().unwrap();
    let _ = std::fs::remove_file(&path);
    s.set_nonblocking(true).unwrap();
    (s, peer)
}

const KINDS: [&str; 3] = ["async", "blocking", "unix_stream"];

/// `iters` round trips of kind `k` with a sleeping peer: the time of the round trips only.
fn round_trips(rt: &tokio::runtime::Runtime, k: usize, iters: u64, cpu: Option<usize>) -> Duration {
    let pause = Duration::from_micros(50);
    let mut total = Duration::ZERO;
    if k == 2 {
        let (s, peer) = unix_peer(|p| Process::spawn(echo_unix, (p, iters, cpu)).unwrap());
        rt.block_on(async {
            let mut s = tokio::net::UnixStream::from_std(s).unwrap();
            let mut b = [0u8; 8];
            for i in 0..iters {
                std::thread::sleep(pause);
                let t = Instant::now();
                s.write_all(&i.to_le_bytes()).await.unwrap();
                s.read_exact(&mut b).await.unwrap();
                total += t.elapsed();
                assert_eq!(u64::from_le_bytes(b), i + 1);
            }
        });
        peer.join().unwrap();
        return total;
    }
    let (req, rep) = (name("req"), name("rep"));
    let mut tx = spsc::Sender::<u64>::create(&req, 64).unwrap();
    let rx = spsc::Receiver::<u64>::create(&rep, 64).unwrap();
    let peer = Process::spawn(echo, (req, rep, iters, cpu)).unwrap();
    if k == 0 {
        let mut rx = Async::new(rx).unwrap();
        rt.block_on(async {
            for i in 0..iters {
                std::thread::sleep(pause);
                let t = Instant::now();
                tx.send(i).unwrap();
                let v = rx.recv().await.unwrap();
                total += t.elapsed();
                assert_eq!(v, i + 1);
            }
        });
    } else {
        let mut rx = rx;
        for i in 0..iters {
            std::thread::sleep(pause);
            let t = Instant::now();
            tx.send(i).unwrap();
            let v = rx.recv().unwrap();
            total += t.elapsed();
            assert_eq!(v, i + 1);
        }
    }
    peer.join().unwrap();
    total
}

/// `n` messages one way, kind `k`, from a producer process: the time to receive them.
fn one_way(rt: &tokio::runtime::Runtime, k: usize, n: u64, cpu: Option<usize>) -> Duration {
    if k == 2 {
        let (s, peer) = unix_peer(|p| Process::spawn(produce_unix, (p, n, cpu)).unwrap());
        let t = Instant::now();
        rt.block_on(async {
            let mut s = tokio::net::UnixStream::from_std(s).unwrap();
            let mut buf = vec![0u8; 64 << 10];
            let mut bytes = 0;
            while bytes < n * 8 {
                bytes += s.read(&mut buf).await.unwrap() as u64;
            }
        });
        let elapsed = t.elapsed();
        peer.join().unwrap();
        return elapsed;
    }
    let ch = name("oneway");
    let rx = spsc::Receiver::<u64>::create(&ch, 4096).unwrap();
    let peer = Process::spawn(produce, (ch, n, cpu)).unwrap();
    // From here: the peer may have sent up to a ring (4,096) already, a fraction of `n`.
    let t = Instant::now();
    let mut sum = 0u64;
    if k == 3 {
        let mut rx = Async::new(rx).unwrap();
        rt.block_on(async {
            for _ in 0..n {
                sum = sum.wrapping_add(rx.recv().await.unwrap());
            }
        });
    } else if k == 0 {
        let mut rx = Async::new(rx).unwrap();
        rt.block_on(async {
            let mut buf = Vec::with_capacity(1024);
            let mut got = 0;
            while got < n {
                buf.clear();
                got += rx.recv_many(&mut buf, 1024).await.unwrap() as u64;
                sum = buf.iter().fold(sum, |s, v| s.wrapping_add(*v));
            }
        });
    } else {
        let mut rx = rx;
        for _ in 0..n {
            sum = sum.wrapping_add(rx.recv().unwrap());
        }
    }
    assert_eq!(sum, n * (n + 1) / 2);
    let elapsed = t.elapsed();
    peer.join().unwrap();
    elapsed
}

/// `n` messages sent by us (async or blocking) to a consumer process.
fn sends(rt: &tokio::runtime::Runtime, asynchronous: bool, n: u64, cpu: Option<usize>) -> Duration {
    let ch = name("send");
    let tx = spsc::Sender::<u64>::create(&ch, 4096).unwrap();
    let peer = Process::spawn(consume, (ch, n, cpu)).unwrap();
    let t = Instant::now();
    if asynchronous {
        let mut tx = Async::new(tx).unwrap();
        rt.block_on(async {
            for i in 1..=n {
                tx.send(i).await.unwrap();
            }
        });
    } else {
        let mut tx = tx;
        for i in 1..=n {
            tx.send(i).unwrap();
        }
    }
    let elapsed = t.elapsed();
    assert_eq!(peer.join().unwrap(), n * (n + 1) / 2);
    elapsed
}

fn main() {
    shmkit::init();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = (cpus > 1).then_some(1);
    if cpus > 1 {
        let _ = shmkit::__private::pin_to_cpu(0);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20)
        .configure_from_args();

    let mut g = c.benchmark_group("aio/round_trip_peer_asleep");
    for (k, kind) in KINDS.iter().enumerate() {
        g.bench_function(*kind, |b| {
            b.iter_custom(|iters| round_trips(&rt, k, iters, cpu))
        });
    }
    g.finish();

    const N: u64 = 1_000_000;
    let mut g = c.benchmark_group("aio/one_way_8B");
    g.throughput(Throughput::Elements(N));
    for (k, kind) in KINDS.iter().chain(&["async_recv_each"]).enumerate() {
        g.bench_function(*kind, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| one_way(&rt, k, N, cpu)).sum())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("aio/send_8B");
    g.throughput(Throughput::Elements(N));
    for (asynchronous, kind) in [(true, "async"), (false, "blocking")] {
        g.bench_function(kind, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| sends(&rt, asynchronous, N, cpu)).sum())
        });
    }
    g.finish();
    c.final_summary();
}
