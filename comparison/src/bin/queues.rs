//! shmkit's `Queue<Option<String>>` against the two crates Rust users pick for typed
//! cross-process queues, ipc-channel (servo; Unix `SOCK_SEQPACKET` sockets, postcard) and
//! ipmpsc (a shared-memory ring with a process-shared mutex and condition variable,
//! bincode), through one harness, in one run, rounds interleaved (round 1 of every case,
//! then round 2 of every case, ...), so that a change in the machine's state hits all three
//! alike and the ratios hold.
//!
//! The workload is `shmkit bench`'s queue row: short strings, `Some(format!("msg-{i}"))`,
//! from this process (pinned to CPU 0) to a peer process (this binary re-run with
//! `SHMKIT_QUEUES_PEER` set, pinned to CPU 1), each library with its default, blocking
//! `send` and `recv`; the message type is `Option<String>` for all three.
//!
//! - Round trip: this process sends `Some("msg-i")`, the peer sends the string it received
//!   back; each round trip is timed on its own (one `Instant::now()` per round trip). Per
//!   round: the p50 (its median over the rounds, with min-max) and the samples pooled for
//!   p99 and p99.9. 1,000 untimed round trips before the timed ones.
//! - Round trip, peer asleep: the same, with a 100 µs pause (this process spinning) before
//!   each request, so that the peer's wait has gone to sleep (shmkit's spins a few
//!   microseconds first; ipc-channel's and ipmpsc's sleep at once) and every message costs
//!   a wake-up on each side.
//! - Throughput: up to 1,000,000 strings one way (2 s budget per round), then `None`; the
//!   peer adds up the strings' lengths and answers with the sum, which is checked. Timed from
//!   the first send until that answer arrives (process start and warm-up are not timed).
//!
//! `cargo run --release --bin queues [-- --rounds N]`.

#[path = "../harness.rs"]
mod harness;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipc_channel::ipc::{IpcOneShotServer, IpcReceiver, IpcSender};
use shmkit::Queue;

use harness::{percentile, Peer, Res};
type Msg = Option<String>;

/// Set in the peer: `KIND MEASURE ARG PARENT_PID`.
const PEER: &str = "SHMKIT_QUEUES_PEER";
/// shmkit's queues hold this many items; ipmpsc's ring has `DEPTH * 32` bytes (an item of
/// this workload takes 4 + 1 + 8 + up to 11 bytes there: room for about 1,400).
const DEPTH: usize = 1024;
const ROUND_TRIPS: usize = 100_000;
const WARM_UP_ROUND_TRIPS: usize = 1_000;
const MESSAGES: u64 = 1_000_000;
/// Most time one case may take in one round.
const BUDGET: Duration = Duration::from_secs(2);
/// A ping: the throughput peer answers strings that start with it and counts the rest.
const PING: &str = "?ping";
/// The pause before each request of the peer-asleep round trips (shmkit's wait spins
/// 200 times and yields once before it sleeps: a few microseconds).
const PAUSE: Duration = Duration::from_micros(100);

fn main() -> Res<()> {
    if let Ok(spec) = std::env::var(PEER) {
        return peer_main(&spec);
    }
    let Some(rounds) = harness::parse_rounds(5, "queues")? else {
        return Ok(());
    };
    harness::clean_stale(NAME_PREFIX);
    clean_stale_ipmpsc_files();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus > 1 {
        shmkit::__private::pin_to_cpu(0)?;
    }

    let kinds = [Kind::Shmkit, Kind::IpcChannel, Kind::Ipmpsc];
    let measures = [
        Measure::RoundTrip,
        Measure::RoundTripAsleep,
        Measure::Throughput,
    ];
    // [measure][kind][round]: the round trips of a round-trip case, in ns.
    let mut rtt: Vec<Vec<Vec<Vec<u64>>>> = measures
        .iter()
        .map(|_| kinds.iter().map(|_| Vec::new()).collect())
        .collect();
    let mut rates: Vec<Vec<f64>> = kinds.iter().map(|_| Vec::new()).collect();
    let t0 = Instant::now();
    for round in 0..rounds {
        for (m, &measure) in measures.iter().enumerate() {
            for (i, &kind) in kinds.iter().enumerate() {
                eprint!(
                    "\r\x1b[2Kround {}/{rounds}: {} {}",
                    round + 1,
                    kind.label(),
                    measure.label()
                );
                let out = match kind {
                    Kind::Shmkit => run_case::<ShmkitQueue>(kind, measure)?,
                    Kind::IpcChannel => run_case::<IpcChannel>(kind, measure)?,
                    Kind::Ipmpsc => run_case::<Ipmpsc>(kind, measure)?,
                };
                match out {
                    Outcome::RoundTrips(v) => rtt[m][i].push(v),
                    Outcome::Rate(r) => rates[i].push(r),
                }
            }
        }
    }
    eprintln!("\r\x1b[2Kdone in {:.1} s", t0.elapsed().as_secs_f64());

    println!(
        "Queue<Option<String>> of \"msg-N\" strings, one process to another, blocking send and \
         recv: {rounds} interleaved rounds, {cpus} CPUs{}",
        if cpus > 1 {
            ", pinned to CPUs 0 and 1"
        } else {
            ""
        }
    );
    println!(
        "medians over the rounds [min-max]; ratio: that case over shmkit in the same round \
         (round trip: its time / shmkit's; throughput: shmkit's rate / its rate; > 1: shmkit \
         ahead), median over the rounds [min-max]"
    );

    for (m, measure) in measures.iter().enumerate() {
        if *measure == Measure::Throughput {
            continue;
        }
        let p50s: Vec<Vec<f64>> = rtt[m]
            .iter()
            .map(|rounds| {
                rounds
                    .iter()
                    .map(|r| {
                        let mut v = r.clone();
                        v.sort_unstable();
                        percentile(&v, 0.5)
                    })
                    .collect()
            })
            .collect();
        println!("\n{} (µs)", measure.label());
        println!(
            "{:<24} {:>24} {:>22} {:>9} {:>9} {:>9}",
            "", "p50 of a round", "ratio", "p99", "p99.9", "n"
        );
        for (i, kind) in kinds.iter().enumerate() {
            let mut pooled: Vec<u64> = rtt[m][i].iter().flatten().copied().collect();
            pooled.sort_unstable();
            let (lo, hi) = spread(&p50s[i]);
            let med = median(&p50s[i]);
            let ratios: Vec<f64> = p50s[i].iter().zip(&p50s[0]).map(|(a, b)| a / b).collect();
            println!(
                "{:<24} {:>24} {:>22} {:>9.1} {:>9.1} {:>9}",
                kind.label(),
                format!("{:.2} [{:.2}-{:.2}]", med / 1e3, lo / 1e3, hi / 1e3),
                ratio(&ratios),
                percentile(&pooled, 0.99) / 1e3,
                percentile(&pooled, 0.999) / 1e3,
                pooled.len()
            );
        }
    }
    println!("\nOne-way throughput (strings/s)");
    println!("{:<24} {:>30} {:>22}", "", "rate", "ratio");
    for (i, kind) in kinds.iter().enumerate() {
        let (lo, hi) = spread(&rates[i]);
        let med = median(&rates[i]);
        let ratios: Vec<f64> = rates[0].iter().zip(&rates[i]).map(|(a, b)| a / b).collect();
        println!(
            "{:<24} {:>30} {:>22}",
            kind.label(),
            format!("{} [{}-{}]", si(med), si(lo), si(hi)),
            ratio(&ratios)
        );
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Shmkit,
    IpcChannel,
    Ipmpsc,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Shmkit => "shmkit Queue",
            Kind::IpcChannel => "ipc-channel",
            Kind::Ipmpsc => "ipmpsc",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Shmkit => "shmkit",
            Kind::IpcChannel => "ipc-channel",
            Kind::Ipmpsc => "ipmpsc",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Measure {
    RoundTrip,
    /// Round trips 100 µs apart: both sides have gone to sleep when a message comes.
    RoundTripAsleep,
    Throughput,
}

impl Measure {
    fn label(self) -> &'static str {
        match self {
            Measure::RoundTrip => "Round trip, back to back",
            Measure::RoundTripAsleep => "Round trip, 100 µs apart (peer asleep)",
            Measure::Throughput => "One-way throughput",
        }
    }

    /// What the peer does: answer everything, or count.
    fn peer_mode(self) -> &'static str {
        match self {
            Measure::RoundTrip | Measure::RoundTripAsleep => "round-trip",
            Measure::Throughput => "throughput",
        }
    }
}

enum Outcome {
    RoundTrips(Vec<u64>),
    Rate(f64),
}

// ---------------------------------------------------------------------------------------
// The harness

/// A two-way link of `Option<String>`: the bench process sets it up and sends requests,
/// the peer joins it and sends replies.
trait Link: Sized {
    /// Sets the link up in the bench process; `spawn` starts the peer with the argument it
    /// needs to join.
    fn create(name: &str, spawn: &mut dyn FnMut(&str) -> Res<Peer>) -> Res<(Self, Peer)>;
    /// Joins the link in the peer.
    fn join(arg: &str) -> Res<Self>;
    fn send(&mut self, m: Msg) -> Res<()>;
    /// Waits for the next message.
    fn recv(&mut self) -> Res<Msg>;
}

fn run_case<L: Link>(kind: Kind, measure: Measure) -> Res<Outcome> {
    let name = unique_name(kind.name());
    let (mut link, peer) = L::create(&name, &mut |arg| Peer::spawn(kind, measure, arg))?;
    // The peer is up and reading (it answers pings in both modes).
    ping(&mut link)?;
    let out = match measure {
        Measure::RoundTrip | Measure::RoundTripAsleep => {
            let pause = if measure == Measure::RoundTripAsleep {
                PAUSE
            } else {
                Duration::ZERO
            };
            for i in 0..WARM_UP_ROUND_TRIPS {
                let s = format!("msg-{i}");
                link.send(Some(s.clone()))?;
                check_echo(&s, link.recv()?)?;
            }
            let mut local = Vec::with_capacity(ROUND_TRIPS);
            let t0 = Instant::now();
            for i in 0..ROUND_TRIPS {
                if i % 1024 == 0 && t0.elapsed() > BUDGET {
                    break;
                }
                let s = format!("msg-{i}");
                if !pause.is_zero() {
                    // Spin, not sleep: this process keeps its CPU, the peer's wait runs
                    // out of spinning and sleeps.
                    let until = Instant::now() + pause;
                    while Instant::now() < until {
                        std::hint::spin_loop();
                    }
                }
                let t = Instant::now();
                link.send(Some(s.clone()))?;
                let r = link.recv()?;
                local.push(t.elapsed().as_nanos() as u64);
                check_echo(&s, r)?;
            }
            link.send(None)?;
            Outcome::RoundTrips(local)
        }
        Measure::Throughput => {
            // Warm-up: some strings, then a ping, so that they have been read.
            let mut expected = 0;
            for i in 0..10_000 {
                let s = format!("msg-{i}");
                expected += s.len() as u64;
                link.send(Some(s))?;
            }
            ping(&mut link)?;
            let t = Instant::now();
            let mut n = 0;
            for i in 0..MESSAGES {
                if i % 4096 == 0 && t.elapsed() > BUDGET {
                    break;
                }
                let s = format!("msg-{i}");
                expected += s.len() as u64;
                link.send(Some(s))?;
                n += 1;
            }
            link.send(None)?;
            let sum = link.recv()?;
            let rate = n as f64 / t.elapsed().as_secs_f64();
            if sum.as_deref() != Some(expected.to_string().as_str()) {
                return Err(format!("{}: sum {sum:?}, expected {expected}", kind.name()).into());
            }
            Outcome::Rate(rate)
        }
    };
    peer.finish()?;
    drop(link);
    Ok(out)
}

fn ping<L: Link>(link: &mut L) -> Res<()> {
    link.send(Some(PING.to_owned()))?;
    check_echo(PING, link.recv()?)
}

fn check_echo(sent: &str, got: Msg) -> Res<()> {
    if got.as_deref() != Some(sent) {
        return Err(format!("reply {got:?} to {sent:?}").into());
    }
    Ok(())
}

/// The peer. Round trip: send every string back, exit at `None`. Throughput: answer pings,
/// add up the lengths of the other strings, answer `None` with the sum and exit.
fn serve<L: Link>(measure: &str, arg: &str) -> Res<()> {
    let mut link = L::join(arg)?;
    let mut sum = 0u64;
    loop {
        match link.recv()? {
            Some(s) if measure == "round-trip" || s.starts_with(PING) => link.send(Some(s))?,
            Some(s) => sum += s.len() as u64,
            None if measure == "round-trip" => break,
            None => {
                link.send(Some(sum.to_string()))?;
                break;
            }
        }
    }
    // ipc-channel and ipmpsc: the last reply is in the socket or the ring, and stays
    // readable after this process exits; shmkit's reply queue is held by its creator.
    Ok(())
}

fn peer_main(spec: &str) -> Res<()> {
    let parts: Vec<&str> = spec.split(' ').collect();
    let [kind, measure, arg, parent] = parts[..] else {
        return Err(format!("bad {PEER}").into());
    };
    if !harness::become_peer(parent)? {
        return Ok(()); // orphaned before it started
    }
    match kind {
        "shmkit" => serve::<ShmkitQueue>(measure, arg),
        "ipc-channel" => serve::<IpcChannel>(measure, arg),
        "ipmpsc" => serve::<Ipmpsc>(measure, arg),
        other => Err(format!("unknown kind {other}").into()),
    }
}

impl Peer {
    fn spawn(kind: Kind, measure: Measure, arg: &str) -> Res<Peer> {
        let child = Command::new(std::env::current_exe()?)
            .env(
                PEER,
                format!(
                    "{} {} {arg} {}",
                    kind.name(),
                    measure.peer_mode(),
                    std::process::id()
                ),
            )
            .stdin(Stdio::null())
            .spawn()?;
        Ok(Peer(child))
    }
}

/// Names of shmkit segments start with this.
const NAME_PREFIX: &str = "cmpq-";

fn unique_name(kind: &str) -> String {
    harness::unique_name(NAME_PREFIX, kind)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn spread(v: &[f64]) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}

/// `median [min-max]` of per-round ratios.
fn ratio(v: &[f64]) -> String {
    let (lo, hi) = spread(v);
    format!("{:.2}x [{:.2}-{:.2}]", median(v), lo, hi)
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else {
        format!("{:.0} k", v / 1e3)
    }
}

// ---------------------------------------------------------------------------------------
// shmkit: two `Queue<Option<String>>`, both created (and so held, and unlinked at the end)
// by the bench process; the peer opens them.

struct ShmkitQueue {
    tx: Queue<Msg>,
    rx: Queue<Msg>,
}

impl Link for ShmkitQueue {
    fn create(name: &str, spawn: &mut dyn FnMut(&str) -> Res<Peer>) -> Res<(Self, Peer)> {
        let link = ShmkitQueue {
            tx: Queue::create(&format!("{name}.req"), DEPTH)?,
            rx: Queue::create(&format!("{name}.resp"), DEPTH)?,
        };
        let peer = spawn(name)?;
        Ok((link, peer))
    }

    fn join(name: &str) -> Res<Self> {
        Ok(ShmkitQueue {
            rx: Queue::open(&format!("{name}.req"))?,
            tx: Queue::open(&format!("{name}.resp"))?,
        })
    }

    fn send(&mut self, m: Msg) -> Res<()> {
        Ok(self.tx.put(&m)?)
    }

    fn recv(&mut self) -> Res<Msg> {
        Ok(self.rx.get()?)
    }
}

// ---------------------------------------------------------------------------------------
// ipc-channel: the bench process opens a one-shot server; the peer connects to it and
// sends the sender of the request channel and the receiver of the reply channel, both of
// which it created (the way servo hands channels to a new process).

struct IpcChannel {
    tx: IpcSender<Msg>,
    rx: IpcReceiver<Msg>,
}

type Bootstrap = (IpcSender<Msg>, IpcReceiver<Msg>);

impl Link for IpcChannel {
    fn create(_name: &str, spawn: &mut dyn FnMut(&str) -> Res<Peer>) -> Res<(Self, Peer)> {
        let (server, server_name) = IpcOneShotServer::<Bootstrap>::new()?;
        let peer = spawn(&server_name)?;
        let (_, (tx, rx)) = server.accept()?;
        Ok((IpcChannel { tx, rx }, peer))
    }

    fn join(server_name: &str) -> Res<Self> {
        let (req_tx, req_rx) = ipc_channel::ipc::channel::<Msg>()?;
        let (resp_tx, resp_rx) = ipc_channel::ipc::channel::<Msg>()?;
        IpcSender::<Bootstrap>::connect(server_name.to_owned())?.send((req_tx, resp_rx))?;
        Ok(IpcChannel {
            tx: resp_tx,
            rx: req_rx,
        })
    }

    fn send(&mut self, m: Msg) -> Res<()> {
        Ok(self.tx.send(m)?)
    }

    fn recv(&mut self) -> Res<Msg> {
        Ok(self.rx.recv()?)
    }
}

// ---------------------------------------------------------------------------------------
// ipmpsc: two rings, files in /dev/shm (tmpfs, as shmkit's segments), created by the bench
// process, opened by the peer, removed by the bench process after the case.

struct Ipmpsc {
    tx: ipmpsc::Sender,
    rx: ipmpsc::Receiver,
    /// In the bench process: the files to remove.
    files: Vec<String>,
}

const IPMPSC_DIR: &str = "/dev/shm";
const IPMPSC_PREFIX: &str = "shmkit-cmpq-ipmpsc-";

/// The bench process pins itself; the peer has a parent that the kernel kills it with.
/// A wait longer than this means the other side is gone (ipmpsc does not notice that).
const IPMPSC_TIMEOUT: Duration = Duration::from_secs(10);

impl Link for Ipmpsc {
    fn create(name: &str, spawn: &mut dyn FnMut(&str) -> Res<Peer>) -> Res<(Self, Peer)> {
        let file = |dir: &str| format!("{IPMPSC_DIR}/{IPMPSC_PREFIX}{name}.{dir}");
        let size = (DEPTH * 32) as u32;
        let link = Ipmpsc {
            tx: ipmpsc::Sender::new(ipmpsc::SharedRingBuffer::create(&file("req"), size)?),
            rx: ipmpsc::Receiver::new(ipmpsc::SharedRingBuffer::create(&file("resp"), size)?),
            files: vec![file("req"), file("resp")],
        };
        let peer = spawn(name)?;
        Ok((link, peer))
    }

    fn join(name: &str) -> Res<Self> {
        let file = |dir: &str| format!("{IPMPSC_DIR}/{IPMPSC_PREFIX}{name}.{dir}");
        Ok(Ipmpsc {
            rx: ipmpsc::Receiver::new(ipmpsc::SharedRingBuffer::open(&file("req"))?),
            tx: ipmpsc::Sender::new(ipmpsc::SharedRingBuffer::open(&file("resp"))?),
            files: Vec::new(),
        })
    }

    fn send(&mut self, m: Msg) -> Res<()> {
        Ok(self.tx.send(&m)?)
    }

    fn recv(&mut self) -> Res<Msg> {
        self.rx
            .recv_timeout(IPMPSC_TIMEOUT)?
            .ok_or_else(|| "ipmpsc: no message in 10 s".into())
    }
}

impl Drop for Ipmpsc {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Removes ring files left by a killed run (their creator's pid is in the name, after the
/// shmkit prefix: `shmkit-cmpq-ipmpsc-cmpq-PID-...`).
fn clean_stale_ipmpsc_files() {
    let Ok(dir) = std::fs::read_dir(IPMPSC_DIR) else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(IPMPSC_PREFIX) else {
            continue;
        };
        let pid = rest
            .strip_prefix(NAME_PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<i32>().ok());
        // SAFETY: kill with signal 0 only checks that the process exists.
        let alive = pid.is_some_and(|p| unsafe { libc::kill(p, 0) } == 0);
        if !alive {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
