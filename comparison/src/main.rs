//! shmkit's `spsc` channel against iceoryx2's publish-subscribe, through one harness, in
//! one run, rounds interleaved (round 1 of every case, then round 2 of every case, ...), so
//! that a change in the machine's state hits both alike and the ratios hold.
//!
//! Both run between this process (pinned to CPU 0) and a peer process (this binary re-run
//! with `SHMKIT_COMPARISON_PEER` set, pinned to CPU 1), with 8-byte (`u64`) messages, both
//! busy-polling, both zero-copy: shmkit writes the slot in place (`loan`) and reads it in
//! place (the receive guard); iceoryx2 writes a loaned sample (`loan_uninit` +
//! `write_payload` + `send`) and reads the received sample in place.
//!
//! - Round trip: a request and its reply; every round trip is timed on its own
//!   (`Instant::now()` once per round trip, in both cases alike); p50/p99/p99.9 pooled over
//!   the rounds, the first tenth of each round dropped as warm-up.
//! - Throughput: messages one way, from the first send until the peer acknowledges the
//!   last; the median over the rounds. iceoryx2's publisher waits for room
//!   (`BackpressureStrategy::RetryUntilDelivered`, no safe overflow), as shmkit's sender
//!   does, with the same queue depth (1024).
//!
//! `cargo run --release [-- --rounds N]`.

mod harness;

use std::hint::spin_loop;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;
use shmkit::{spsc, Error, WaitStrategy};

use harness::{percentile, Peer, Res};

/// Set in the peer: `KIND MEASURE NAME PARENT_PID`.
const PEER: &str = "SHMKIT_COMPARISON_PEER";
/// The peer answers a message with this bit set ...
const REPLY: u64 = 1 << 63;
/// ... and exits on this one.
const STOP: u64 = 1 << 62;
/// Queue depth of both channels.
const DEPTH: usize = 1024;

fn main() -> Res<()> {
    set_log_level(LogLevel::Error);
    if let Ok(spec) = std::env::var(PEER) {
        return peer_main(&spec);
    }
    let Some(rounds) = harness::parse_rounds(7, "shmkit-comparison")? else {
        return Ok(());
    };
    harness::clean_stale(NAME_PREFIX);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus > 1 {
        shmkit::__private::pin_to_cpu(0)?;
    }

    let cases = [
        (Kind::Shmkit, Measure::RoundTrip),
        (Kind::Iceoryx2, Measure::RoundTrip),
        (Kind::Shmkit, Measure::Throughput),
        (Kind::Iceoryx2, Measure::Throughput),
    ];
    let mut results: Vec<Samples> = cases.iter().map(|_| Samples::default()).collect();
    let t0 = Instant::now();
    for round in 0..rounds {
        for (i, &(kind, measure)) in cases.iter().enumerate() {
            eprint!(
                "\r\x1b[2Kround {}/{rounds}: {} {}",
                round + 1,
                kind.label(),
                measure.label()
            );
            match kind {
                Kind::Shmkit => run_case::<ShmkitSpsc>(kind, measure, &mut results[i])?,
                Kind::Iceoryx2 => run_case::<Iceoryx2>(kind, measure, &mut results[i])?,
            }
        }
    }
    eprintln!("\r\x1b[2Kdone in {:.1} s", t0.elapsed().as_secs_f64());

    println!(
        "shmkit spsc vs iceoryx2 publish-subscribe: 8-byte messages, busy-polling, {rounds} \
         interleaved rounds, {cpus} CPUs{}\n",
        if cpus > 1 {
            ", pinned to CPUs 0 and 1"
        } else {
            ""
        }
    );
    println!("Round trip (ns)");
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>9}",
        "", "p50", "p99", "p99.9", "n"
    );
    for (i, (kind, measure)) in cases.iter().enumerate() {
        if *measure != Measure::RoundTrip {
            continue;
        }
        let mut v = results[i].rtt_ns.clone();
        v.sort_unstable();
        println!(
            "{:<28} {:>9.0} {:>9.0} {:>9.0} {:>9}",
            kind.label(),
            percentile(&v, 0.5),
            percentile(&v, 0.99),
            percentile(&v, 0.999),
            v.len()
        );
    }
    println!("\nOne-way throughput (median of rounds)");
    for (i, (kind, measure)) in cases.iter().enumerate() {
        if *measure != Measure::Throughput {
            continue;
        }
        let mut v = results[i].rates.clone();
        v.sort_by(f64::total_cmp);
        let median = v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
        println!("{:<28} {:>9.2} M msg/s", kind.label(), median / 1e6);
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Shmkit,
    Iceoryx2,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Shmkit => "shmkit spsc (busy-poll)",
            Kind::Iceoryx2 => "iceoryx2 pub-sub (busy-poll)",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Shmkit => "shmkit",
            Kind::Iceoryx2 => "iceoryx2",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Measure {
    RoundTrip,
    Throughput,
}

impl Measure {
    fn label(self) -> &'static str {
        match self {
            Measure::RoundTrip => "round trip",
            Measure::Throughput => "throughput",
        }
    }
}

#[derive(Default)]
struct Samples {
    rtt_ns: Vec<u64>,
    /// Messages per second, one per round.
    rates: Vec<f64>,
}

// ---------------------------------------------------------------------------------------
// The harness

/// A two-way link of `u64` messages: the bench process creates it and sends requests, the
/// peer opens it and sends replies.
trait Link: Sized {
    fn create(name: &str) -> Res<Self>;
    fn open(name: &str) -> Res<Self>;
    fn send(&mut self, v: u64) -> Res<()>;
    /// Busy-polls for the next message; `None` when the other side is gone.
    fn recv(&mut self) -> Res<Option<u64>>;
    /// The next message if there is one now.
    fn try_recv(&mut self) -> Res<Option<u64>>;
}

const ROUND_TRIPS: usize = 200_000;
const MESSAGES: u64 = 2_000_000;
/// Most time one case may take in one round.
const BUDGET: Duration = Duration::from_secs(2);

fn run_case<L: Link>(kind: Kind, measure: Measure, out: &mut Samples) -> Res<()> {
    let name = unique_name(kind.name());
    let mut link = L::create(&name)?;
    let peer = Peer::spawn(kind, &name)?;
    handshake(&mut link, &peer)?;
    match measure {
        Measure::RoundTrip => {
            let mut local = Vec::with_capacity(ROUND_TRIPS);
            let t0 = Instant::now();
            let mut prev = Instant::now();
            for i in 1..=ROUND_TRIPS as u64 {
                if i % 1024 == 0 && t0.elapsed() > BUDGET {
                    break;
                }
                link.send(i | REPLY)?;
                let v = link.recv()?.ok_or("the peer went away")?;
                let now = Instant::now();
                local.push((now - prev).as_nanos() as u64);
                prev = now;
                if v != i | REPLY {
                    return Err(format!("reply {v:#x} to {:#x}", i | REPLY).into());
                }
            }
            out.rtt_ns.extend_from_slice(&local[local.len() / 10..]);
        }
        Measure::Throughput => {
            let t = Instant::now();
            let mut n = 0;
            for i in 1..=MESSAGES {
                if i % 4096 == 0 && t.elapsed() > BUDGET {
                    break;
                }
                link.send(i)?;
                n = i;
            }
            n += 1;
            link.send(n | REPLY)?;
            let v = link.recv()?.ok_or("the peer went away")?;
            out.rates.push(n as f64 / t.elapsed().as_secs_f64());
            if v != n | REPLY {
                return Err(format!("acknowledgement {v:#x} to {:#x}", n | REPLY).into());
            }
        }
    }
    link.send(STOP)?;
    peer.finish()?;
    Ok(())
}

/// Sends hellos until the peer answers one (a subscriber that has not connected yet misses
/// what is published), then drains the answers to the other hellos.
fn handshake<L: Link>(link: &mut L, peer: &Peer) -> Res<()> {
    let until = Instant::now() + Duration::from_secs(20);
    let mut answered = false;
    while !answered {
        if Instant::now() > until || peer.exited() {
            return Err("the peer did not answer".into());
        }
        link.send(REPLY)?;
        let wait = Instant::now() + Duration::from_millis(2);
        while Instant::now() < wait {
            if link.try_recv()?.is_some() {
                answered = true;
                break;
            }
            spin_loop();
        }
    }
    std::thread::sleep(Duration::from_millis(20));
    while link.try_recv()?.is_some() {}
    Ok(())
}

/// The peer: answer what asks for an answer, read everything, exit on STOP.
fn serve<L: Link>(name: &str) -> Res<()> {
    let mut link = L::open(name)?;
    let mut acc = 0u64;
    loop {
        let Some(v) = link.recv()? else {
            return Ok(());
        };
        acc ^= v;
        if v & STOP != 0 {
            std::hint::black_box(acc);
            return Ok(());
        }
        if v & REPLY != 0 {
            link.send(v)?;
        }
    }
}

fn peer_main(spec: &str) -> Res<()> {
    let parts: Vec<&str> = spec.split(' ').collect();
    let [kind, name, parent] = parts[..] else {
        return Err(format!("bad {PEER}").into());
    };
    if !harness::become_peer(parent)? {
        return Ok(()); // orphaned before it started
    }
    match kind {
        "shmkit" => serve::<ShmkitSpsc>(name),
        "iceoryx2" => serve::<Iceoryx2>(name),
        other => Err(format!("unknown kind {other}").into()),
    }
}

impl Peer {
    fn spawn(kind: Kind, name: &str) -> Res<Peer> {
        let child = Command::new(std::env::current_exe()?)
            .env(
                PEER,
                format!("{} {name} {}", kind.name(), std::process::id()),
            )
            .stdin(Stdio::null())
            .spawn()?;
        Ok(Peer(child))
    }

    fn exited(&self) -> bool {
        // /proc/PID/stat: "PID (COMM) STATE ..."; a dead child is a zombie until reaped.
        std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).map_or(true, |s| {
            s.rsplit_once(')')
                .is_none_or(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
    }
}

/// Names of shmkit segments start with this.
const NAME_PREFIX: &str = "cmp-";

fn unique_name(kind: &str) -> String {
    harness::unique_name(NAME_PREFIX, kind)
}

// ---------------------------------------------------------------------------------------
// shmkit

struct ShmkitSpsc {
    tx: spsc::Sender<u64>,
    rx: spsc::Receiver<u64>,
}

impl ShmkitSpsc {
    fn busy(mut self) -> Self {
        self.tx.set_wait_strategy(WaitStrategy::BusyPoll);
        self.rx.set_wait_strategy(WaitStrategy::BusyPoll);
        self
    }
}

impl Link for ShmkitSpsc {
    fn create(name: &str) -> Res<Self> {
        Ok(ShmkitSpsc {
            tx: spsc::Sender::create(&format!("{name}.req"), DEPTH)?,
            rx: spsc::Receiver::create(&format!("{name}.resp"), DEPTH)?,
        }
        .busy())
    }

    fn open(name: &str) -> Res<Self> {
        Ok(ShmkitSpsc {
            rx: spsc::Receiver::open(&format!("{name}.req"))?,
            tx: spsc::Sender::open(&format!("{name}.resp"))?,
        }
        .busy())
    }

    fn send(&mut self, v: u64) -> Res<()> {
        let mut slot = self.tx.loan()?;
        *slot = v;
        slot.commit()?;
        Ok(())
    }

    fn recv(&mut self) -> Res<Option<u64>> {
        match self.rx.recv_ref() {
            Ok(g) => Ok(Some(*g)),
            Err(Error::Disconnected) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn try_recv(&mut self) -> Res<Option<u64>> {
        match self.rx.try_recv_ref() {
            Ok(g) => Ok(Some(*g)),
            Err(Error::WouldBlock) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// iceoryx2

struct Iceoryx2 {
    // Ports before the node: they are dropped first.
    tx: Publisher<ipc::Service, u64, ()>,
    rx: Subscriber<ipc::Service, u64, ()>,
    _node: Node<ipc::Service>,
    /// In the peer: the bench process, whose death ends the busy wait.
    parent: Option<i32>,
}

impl Iceoryx2 {
    fn new(name: &str, parent: Option<i32>) -> Res<Self> {
        let node = NodeBuilder::new()
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<ipc::Service>()?;
        let service = |dir: &str| {
            node.service_builder(&ServiceName::new(&format!("shmkit-cmp/{name}/{dir}"))?)
                .publish_subscribe::<u64>()
                .max_publishers(1)
                .max_subscribers(1)
                .history_size(0)
                .subscriber_max_buffer_size(DEPTH)
                .enable_safe_overflow(false)
                .open_or_create()
                .map_err(|e| -> Box<dyn std::error::Error> { format!("{e:?}").into() })
        };
        let (out, inp) = if parent.is_none() {
            ("req", "resp")
        } else {
            ("resp", "req")
        };
        let out = service(out)?;
        let inp = service(inp)?;
        let tx = out
            .publisher_builder()
            .max_loaned_samples(1)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()?;
        let rx = inp.subscriber_builder().buffer_size(DEPTH).create()?;
        Ok(Iceoryx2 {
            tx,
            rx,
            _node: node,
            parent,
        })
    }
}

impl Link for Iceoryx2 {
    fn create(name: &str) -> Res<Self> {
        Iceoryx2::new(name, None)
    }

    fn open(name: &str) -> Res<Self> {
        // SAFETY: getppid takes no arguments and cannot fail.
        Iceoryx2::new(name, Some(unsafe { libc::getppid() }))
    }

    fn send(&mut self, v: u64) -> Res<()> {
        self.tx.loan_uninit()?.write_payload(v).send()?;
        Ok(())
    }

    fn recv(&mut self) -> Res<Option<u64>> {
        let mut spins = 0u32;
        loop {
            if let Some(sample) = self.rx.receive()? {
                return Ok(Some(*sample.payload()));
            }
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1 << 20) {
                // SAFETY: getppid takes no arguments and cannot fail.
                if self.parent.is_some_and(|p| unsafe { libc::getppid() } != p) {
                    return Ok(None);
                }
            }
            spin_loop();
        }
    }

    fn try_recv(&mut self) -> Res<Option<u64>> {
        Ok(self.rx.receive()?.map(|s| *s.payload()))
    }
}
