//! Channel benchmarks: shmkit's channels against a pipe, a Unix socket and the raw floors,
//! all through one harness, across two real processes.
//!
//! Every case runs between this process (pinned to CPU 0) and a peer process: this bench
//! executable re-run with `SHMKIT_CHANNELS_PEER` set, pinned to CPU 1 (CPU 0 too for the
//! same-core groups). One generic function, [`bench_case`], drives every transport through
//! the [`Transport`] trait (send a message of `size` bytes, receive one in place), so
//! shmkit and the baselines run exactly the same code around them. Every sender writes
//! the whole message (a copy from a prepared buffer) and every receiver reads every byte
//! of it (an xor over its words), whatever the transport.
//!
//! Groups (`SIZE` is 8B, 64B, 1KiB, 64KiB, 1MiB):
//! - `round_trip/SIZE/KIND`: one request of `SIZE` bytes and a reply of `SIZE` bytes,
//!   processes on different CPUs; one criterion iteration is one round trip. Each round
//!   trip is also timed on its own: p50/p99/p99.9 go to stderr at the end of each case
//!   and into `target/criterion/percentiles.json` (warm-up excluded).
//! - `round_trip_same_core/SIZE/KIND` (8B and 64KiB, blocking kinds only): both
//!   processes pinned to CPU 0, so every hand-off is a context switch. Busy-polling kinds
//!   are left out: on one core they only measure the scheduler's time slice.
//! - `throughput/SIZE/KIND`: one way, one message per iteration (criterion reports
//!   elements/s for 8B, bytes/s for the others); a batch ends when the peer acknowledges
//!   its last message (a short reply), so the time covers delivery, not just sending.
//!
//! Kinds:
//! - `spsc_busy`, `spsc_blocking`: `shmkit::spsc` with a `[u64; SIZE / 8]` payload type,
//!   written in place through `loan` and read in place through the receive guard, with
//!   `WaitStrategy::BusyPoll` or the default blocking strategy (spin briefly, then futex).
//! - `mpmc`: `shmkit::mpmc` (Vyukov), one sender and one receiver, same payload, blocking.
//! - `frames`: `shmkit::frames`, `send(&[u8])`, read in place, blocking.
//! - `pipe`: two OS pipes, length-prefixed frames (one `writev` per message; the reader is
//!   buffered, 64 KiB).
//! - `unix_socket`: a Unix stream socket pair, framed the same way.
//! - `floor_spin`: a one-slot mailbox per direction in a `RawArray<u32>` (a state word, the
//!   length and the payload on the same cache line for 8 bytes), both sides spinning: the
//!   cache-line ping-pong floor, plus the copies for larger sizes.
//! - `floor_futex`: the same mailbox, but a waiter always sleeps at once in `FUTEX_WAIT`
//!   (no spinning) and a sender always calls `FUTEX_WAKE`: the raw blocking floor.
//!
//! Run: `cargo bench --bench channels` (about 10 minutes on 2 cores), a subset with a
//! filter (`cargo bench --bench channels -- 'round_trip/8B'`), a quick check with
//! `cargo bench --bench channels -- --test`. Only ratios within one run hold on a noisy
//! machine. Every round trip is timed with one `Instant::now()` (about 20 ns here),
//! included in the criterion time of every kind alike.
//!
//! Clean-up: this process creates every segment and its handles unlink them when dropped,
//! also while unwinding from a panic; segments left by a killed run (SIGKILL, Ctrl-C) are
//! removed by the next run (`shmkit::clean`, which spares any segment a live process holds). A peer exits when its channel reports the bench
//! gone (`Disconnected`, a pipe's end of file, the mailbox's closed flag) and is killed by
//! the kernel if the bench process dies (`PR_SET_PDEATHSIG`).

use std::fs::File;
use std::io::{BufReader, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use shmkit::{__private::pin_to_cpu, frames, mpmc, spsc, Error, RawArray, WaitStrategy};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Set in a peer process: `KIND SIZE CPU NAME PARENT_PID`.
const PEER: &str = "SHMKIT_CHANNELS_PEER";

/// Every segment this bench creates is named `NAME_PREFIX<pid>-...`.
const NAME_PREFIX: &str = "bench-ch-";

const SIZES: [usize; 5] = [8, 64, 1 << 10, 64 << 10, 1 << 20];
const SAME_CORE_SIZES: [usize; 2] = [8, 64 << 10];

/// Default criterion settings (the command line overrides them): about 4.5 s per case,
/// 92 cases.
const WARM_UP: Duration = Duration::from_secs(1);
const MEASURE: Duration = Duration::from_secs(3);
const SAMPLES: usize = 20;

/// Tag bits in the first 8 bytes of a message: the peer replies to it ...
const REPLY: u64 = 1 << 63;
/// ... with an 8-byte reply (the tag alone) instead of a full-size one.
const SHORT: u64 = 1 << 62;

fn main() {
    if let Ok(spec) = std::env::var(PEER) {
        if let Err(e) = peer_main(&spec) {
            eprintln!("channels bench peer ({spec}): {e}");
            std::process::exit(1);
        }
        return;
    }
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("note: fewer than 2 CPUs: the cross-core cases share one CPU");
    }
    // Segments left by an earlier run that was killed (SIGKILL, or Ctrl-C, which does not
    // unwind): `clean` removes only those that no live process holds.
    match shmkit::clean(NAME_PREFIX, shmkit::CleanMode::Remove) {
        Ok(removed) if !removed.is_empty() => {
            eprintln!(
                "removed {} stale segment(s) of an earlier run",
                removed.len()
            )
        }
        Ok(_) => {}
        Err(e) => eprintln!("note: could not clean stale segments: {e}"),
    }
    let _ = pin_to_cpu(0);
    let mut c = Criterion::default()
        .warm_up_time(WARM_UP)
        .measurement_time(MEASURE)
        .sample_size(SAMPLES)
        .configure_from_args();
    let mut report = Percentiles::new();

    for size in SIZES {
        let mut g = c.benchmark_group(format!("round_trip/{}", human(size)));
        for kind in Kind::ALL.into_iter().filter(|k| k.supports(size)) {
            let case = Case {
                kind,
                size,
                mode: Mode::RoundTrip,
                peer_cpu: 1,
            };
            with_transport(kind, size, Bench(&mut g, &mut report, case));
        }
        g.finish();
    }
    for size in SAME_CORE_SIZES {
        let mut g = c.benchmark_group(format!("round_trip_same_core/{}", human(size)));
        for kind in Kind::ALL
            .into_iter()
            .filter(|k| !k.spins() && k.supports(size))
        {
            let case = Case {
                kind,
                size,
                mode: Mode::RoundTrip,
                peer_cpu: 0,
            };
            with_transport(kind, size, Bench(&mut g, &mut report, case));
        }
        g.finish();
    }
    for size in SIZES {
        let mut g = c.benchmark_group(format!("throughput/{}", human(size)));
        g.throughput(if size == 8 {
            Throughput::Elements(1)
        } else {
            Throughput::Bytes(size as u64)
        });
        for kind in Kind::ALL.into_iter().filter(|k| k.supports(size)) {
            let case = Case {
                kind,
                size,
                mode: Mode::Throughput,
                peer_cpu: 1,
            };
            with_transport(kind, size, Bench(&mut g, &mut report, case));
        }
        g.finish();
    }
    c.final_summary();
}

// ---------------------------------------------------------------------------------------
// Cases

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    SpscBusy,
    SpscBlocking,
    Mpmc,
    Frames,
    Pipe,
    UnixSocket,
    FloorSpin,
    FloorFutex,
}

impl Kind {
    const ALL: [Kind; 8] = [
        Kind::FloorSpin,
        Kind::SpscBusy,
        Kind::SpscBlocking,
        Kind::Mpmc,
        Kind::Frames,
        Kind::FloorFutex,
        Kind::Pipe,
        Kind::UnixSocket,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::SpscBusy => "spsc_busy",
            Kind::SpscBlocking => "spsc_blocking",
            Kind::Mpmc => "mpmc",
            Kind::Frames => "frames",
            Kind::Pipe => "pipe",
            Kind::UnixSocket => "unix_socket",
            Kind::FloorSpin => "floor_spin",
            Kind::FloorFutex => "floor_futex",
        }
    }

    fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Whether a waiting side never sleeps (pointless with both processes on one CPU).
    fn spins(self) -> bool {
        matches!(self, Kind::SpscBusy | Kind::FloorSpin)
    }

    /// Whether this kind is benchmarked with messages of `size` bytes: all of them, now
    /// that large payloads are no longer read with one `read_volatile` of the whole `T`
    /// (which made a 1 MiB `T` take over 20 minutes to compile).
    fn supports(self, _size: usize) -> bool {
        true
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    RoundTrip,
    Throughput,
}

#[derive(Clone, Copy, Debug)]
struct Case {
    kind: Kind,
    size: usize,
    mode: Mode,
    peer_cpu: usize,
}

/// Something generic over the transport, run for a kind chosen at run time.
trait Visit {
    type Out;
    fn visit<T: Transport>(self) -> Self::Out;
}

/// Calls `v.visit::<T>()` with the transport type of `kind` for messages of `size` bytes.
fn with_transport<V: Visit>(kind: Kind, size: usize, v: V) -> V::Out {
    // Typed channels carry `[u64; size / 8]`: one instantiation per size.
    macro_rules! typed {
        ($t:ident) => {
            match size {
                8 => v.visit::<$t<1>>(),
                64 => v.visit::<$t<8>>(),
                1024 => v.visit::<$t<128>>(),
                65536 => v.visit::<$t<8192>>(),
                1048576 => v.visit::<$t<131072>>(),
                other => panic!("no typed payload of {other} bytes"),
            }
        };
    }
    match kind {
        Kind::SpscBusy => typed!(SpscBusy),
        Kind::SpscBlocking => typed!(SpscBlocking),
        Kind::Mpmc => match size {
            8 => v.visit::<Mpmc<1>>(),
            64 => v.visit::<Mpmc<8>>(),
            1024 => v.visit::<Mpmc<128>>(),
            65536 => v.visit::<Mpmc<8192>>(),
            1048576 => v.visit::<Mpmc<131072>>(),
            other => panic!("no mpmc case for {other} bytes"),
        },
        Kind::Frames => v.visit::<Frames>(),
        Kind::Pipe => v.visit::<Stream<false>>(),
        Kind::UnixSocket => v.visit::<Stream<true>>(),
        Kind::FloorSpin => v.visit::<Mailbox<false>>(),
        Kind::FloorFutex => v.visit::<Mailbox<true>>(),
    }
}

// ---------------------------------------------------------------------------------------
// The harness: one generic function for every transport

/// A two-way message link between the bench process and its peer. The bench process
/// creates it ([`Transport::create`]) and the peer opens it ([`Transport::open`]); the
/// bench process sends on the request direction and receives on the reply direction, the
/// peer the other way round.
trait Transport: Sized {
    /// Creates the link for messages of up to `size` bytes; `peer` is the command that
    /// will start the peer, for transports that hand it file descriptors.
    fn create(name: &str, size: usize, peer: &mut Command) -> Res<Self>;
    /// Opens the link in the peer.
    fn open(name: &str, size: usize) -> Res<Self>;
    /// Sends `msg` (at most `size` bytes; its first 8 bytes are the tag), blocking while
    /// there is no room.
    fn send(&mut self, msg: &[u8]) -> Res<()>;
    /// Receives the next message and gives it to `f` (in place where the transport can);
    /// `None` when the other side is gone. Waits until `deadline` at most (`None`: for
    /// ever).
    fn recv<R>(&mut self, deadline: Option<Instant>, f: impl FnOnce(&[u8]) -> R) -> Res<Option<R>>;
}

/// One case's running link: the transport and the peer process.
struct Session<T: Transport> {
    // Field order matters: the link is dropped (closed) before the peer is awaited.
    link: T,
    _peer: Peer,
    /// The request message, sent over and over with a new tag.
    msg: Vec<u8>,
    seq: u64,
    /// Time returned to criterion so far: calls after the warm-up are recorded.
    elapsed: Duration,
    warm_up: Duration,
    /// Every round trip, and those after the warm-up.
    all: Hist,
    measured: Hist,
}

impl<T: Transport> Session<T> {
    fn start(case: &Case, warm_up: Duration) -> Res<Self> {
        let name = unique_name(case.kind.name());
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.env(
            PEER,
            format!(
                "{} {} {} {} {}",
                case.kind.name(),
                case.size,
                case.peer_cpu,
                name,
                std::process::id()
            ),
        )
        .stdin(Stdio::null());
        let link = T::create(&name, case.size, &mut cmd)?;
        let peer = Peer(Some(cmd.spawn()?));
        // Closes our copies of the peer's descriptors (pipes and sockets): end of file
        // must come when the peer's side closes.
        drop(cmd);
        let mut s = Session {
            link,
            _peer: peer,
            msg: vec![0x5a; case.size],
            seq: 0,
            elapsed: Duration::ZERO,
            warm_up,
            all: Hist::new(),
            measured: Hist::new(),
        };
        // The peer is attached and running before anything is timed.
        let tag = s.next_tag(REPLY | SHORT);
        s.link.send(&tag.to_le_bytes()[..8.min(case.size)])?;
        match s
            .link
            .recv(Some(Instant::now() + Duration::from_secs(20)), tag_of)?
        {
            Some(t) if t == tag => Ok(s),
            Some(t) => {
                Err(format!("handshake: peer answered tag {t:#x}, expected {tag:#x}").into())
            }
            None => Err("handshake: the peer went away".into()),
        }
    }

    fn next_tag(&mut self, flags: u64) -> u64 {
        self.seq += 1;
        (self.seq & !(REPLY | SHORT)) | flags
    }

    /// `iters` round trips, each timed on its own.
    fn round_trips(&mut self, iters: u64) -> Duration {
        let record = self.elapsed > self.warm_up;
        let start = Instant::now();
        let mut prev = start;
        for _ in 0..iters {
            let tag = self.next_tag(REPLY);
            self.msg[..8].copy_from_slice(&tag.to_le_bytes());
            self.link.send(&self.msg).expect("send");
            let (t, x) = self
                .link
                .recv(None, |m| (tag_of(m), xor_words(m)))
                .expect("recv")
                .expect("the peer went away");
            std::hint::black_box(x);
            assert_eq!(t, tag, "reply out of order");
            let now = Instant::now();
            let ns = (now - prev).as_nanos() as u64;
            prev = now;
            self.all.add(ns);
            if record {
                self.measured.add(ns);
            }
        }
        let d = prev - start;
        self.elapsed += d;
        d
    }

    /// `iters` messages one way; the last asks for a short acknowledgement.
    fn stream(&mut self, iters: u64) -> Duration {
        let start = Instant::now();
        for i in 0..iters {
            let tag = self.next_tag(if i + 1 == iters { REPLY | SHORT } else { 0 });
            self.msg[..8].copy_from_slice(&tag.to_le_bytes());
            self.link.send(&self.msg).expect("send");
            if i + 1 == iters {
                let t = self
                    .link
                    .recv(None, tag_of)
                    .expect("recv")
                    .expect("the peer went away");
                assert_eq!(t, tag, "acknowledgement out of order");
            }
        }
        start.elapsed()
    }
}

/// The bench side of every case: the one generic function every transport runs through.
fn bench_case<T: Transport>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    report: &mut Percentiles,
    case: Case,
) {
    let warm_up = report.warm_up;
    // Started on first use, so that a case left out by a filter spawns nothing.
    let mut session: Option<Session<T>> = None;
    g.bench_function(case.kind.name(), |b| {
        let s = session.get_or_insert_with(|| {
            Session::start(&case, warm_up).unwrap_or_else(|e| {
                panic!("{} {} B: set-up failed: {e}", case.kind.name(), case.size)
            })
        });
        match case.mode {
            Mode::RoundTrip => b.iter_custom(|iters| s.round_trips(iters)),
            Mode::Throughput => b.iter_custom(|iters| s.stream(iters)),
        }
    });
    if let Some(s) = session {
        if case.mode == Mode::RoundTrip {
            let hist = if s.measured.n > 0 {
                &s.measured
            } else {
                &s.all
            };
            let placement = if case.peer_cpu == 0 {
                "round_trip_same_core"
            } else {
                "round_trip"
            };
            let id = format!("{placement}/{}/{}", human(case.size), case.kind.name());
            report.add(&id, hist);
        }
        // Dropping the session closes the link; the peer sees it and exits.
    }
}

struct Bench<'a, 'g>(
    &'a mut BenchmarkGroup<'g, WallTime>,
    &'a mut Percentiles,
    Case,
);

impl Visit for Bench<'_, '_> {
    type Out = ();
    fn visit<T: Transport>(self) {
        bench_case::<T>(self.0, self.1, self.2)
    }
}

/// The peer side of every case: receive, read every byte, reply when asked.
fn serve<T: Transport>(name: &str, size: usize) -> Res<()> {
    let mut link = T::open(name, size)?;
    let mut reply = vec![0xa5u8; size];
    loop {
        let Some((tag, x)) = link.recv(None, |m| (tag_of(m), xor_words(m)))? else {
            return Ok(());
        };
        std::hint::black_box(x);
        if tag & REPLY != 0 {
            let len = if tag & SHORT != 0 { 8.min(size) } else { size };
            reply[..8].copy_from_slice(&tag.to_le_bytes());
            link.send(&reply[..len])?;
        }
    }
}

struct Serve<'a>(&'a str, usize);

impl Visit for Serve<'_> {
    type Out = Res<()>;
    fn visit<T: Transport>(self) -> Res<()> {
        serve::<T>(self.0, self.1)
    }
}

fn peer_main(spec: &str) -> Res<()> {
    let parts: Vec<&str> = spec.split(' ').collect();
    let [kind, size, cpu, name, parent] = parts[..] else {
        return Err(format!("bad {PEER}").into());
    };
    let kind = Kind::from_name(kind).ok_or("unknown kind")?;
    let (size, cpu, parent): (usize, usize, i32) = (size.parse()?, cpu.parse()?, parent.parse()?);
    // SAFETY: prctl(PR_SET_PDEATHSIG) and getppid take and return plain integers.
    let orphan = unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::getppid() != parent
    };
    if orphan {
        // The bench died before the death signal was armed.
        return Ok(());
    }
    let _ = pin_to_cpu(cpu);
    with_transport(kind, size, Serve(name, size))
}

/// The peer process; awaited (then killed, if it does not exit) when dropped.
struct Peer(Option<Child>);

impl Drop for Peer {
    fn drop(&mut self) {
        let Some(mut child) = self.0.take() else {
            return;
        };
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        eprintln!("channels bench: peer exited with {status}");
                    }
                    return;
                }
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(1)),
                _ => {
                    eprintln!("channels bench: peer did not exit; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }
}

fn unique_name(kind: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    // Relaxed: a counter for unique names, nothing is published through it.
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{NAME_PREFIX}{}-{kind}-{n}", std::process::id())
}

fn tag_of(m: &[u8]) -> u64 {
    m.get(..8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

fn xor_words(bytes: &[u8]) -> u64 {
    let mut x = 0u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        x ^= u64::from_le_bytes(c.try_into().expect("8 bytes"));
    }
    for &b in chunks.remainder() {
        x ^= u64::from(b);
    }
    x
}

fn human(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{}MiB", s >> 20),
        s if s >= 1 << 10 => format!("{}KiB", s >> 10),
        s => format!("{s}B"),
    }
}

// ---------------------------------------------------------------------------------------
// shmkit transports

/// A message of `8 * W` bytes for the typed channels.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct Words<const W: usize>([u64; W]);

// SAFETY: a transparent array of `u64`: no padding, and every bit pattern (zero included)
// is a valid value; `Copy` and `'static`.
unsafe impl<const W: usize> bytemuck::Zeroable for Words<W> {}
// SAFETY: as above.
unsafe impl<const W: usize> bytemuck::Pod for Words<W> {}

/// Slots for a typed ring: up to 4096 messages, about 8 MiB, at least 4 messages.
fn typed_capacity(size: usize) -> usize {
    ((8 << 20) / (size + 8)).clamp(4, 4096).next_power_of_two()
}

struct Spsc<const W: usize, const BUSY: bool> {
    tx: spsc::Sender<Words<W>>,
    rx: spsc::Receiver<Words<W>>,
}
type SpscBusy<const W: usize> = Spsc<W, true>;
type SpscBlocking<const W: usize> = Spsc<W, false>;

impl<const W: usize, const BUSY: bool> Spsc<W, BUSY> {
    fn configure(mut self) -> Self {
        if BUSY {
            self.tx.set_wait_strategy(WaitStrategy::BusyPoll);
            self.rx.set_wait_strategy(WaitStrategy::BusyPoll);
        }
        self
    }
}

impl<const W: usize, const BUSY: bool> Transport for Spsc<W, BUSY> {
    fn create(name: &str, size: usize, _: &mut Command) -> Res<Self> {
        let cap = typed_capacity(size);
        Ok(Spsc {
            tx: spsc::Sender::create(&format!("{name}.req"), cap)?,
            rx: spsc::Receiver::create(&format!("{name}.resp"), cap)?,
        }
        .configure())
    }

    fn open(name: &str, _: usize) -> Res<Self> {
        Ok(Spsc {
            rx: spsc::Receiver::open(&format!("{name}.req"))?,
            tx: spsc::Sender::open(&format!("{name}.resp"))?,
        }
        .configure())
    }

    fn send(&mut self, msg: &[u8]) -> Res<()> {
        let mut slot = self.tx.loan()?;
        bytemuck::bytes_of_mut(&mut *slot)[..msg.len()].copy_from_slice(msg);
        slot.commit()?;
        Ok(())
    }

    fn recv<R>(&mut self, deadline: Option<Instant>, f: impl FnOnce(&[u8]) -> R) -> Res<Option<R>> {
        let got = match deadline {
            None => self.rx.recv_ref(),
            Some(d) => self
                .rx
                .recv_ref_timeout(d.saturating_duration_since(Instant::now())),
        };
        match got {
            Ok(g) => Ok(Some(f(bytemuck::bytes_of(&*g)))),
            Err(Error::Disconnected) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

struct Mpmc<const W: usize> {
    tx: mpmc::Sender<Words<W>>,
    rx: mpmc::Receiver<Words<W>>,
}

impl<const W: usize> Transport for Mpmc<W> {
    fn create(name: &str, size: usize, _: &mut Command) -> Res<Self> {
        let cap = typed_capacity(size);
        Ok(Mpmc {
            tx: mpmc::Sender::create(&format!("{name}.req"), cap)?,
            rx: mpmc::Receiver::create(&format!("{name}.resp"), cap)?,
        })
    }

    fn open(name: &str, _: usize) -> Res<Self> {
        Ok(Mpmc {
            rx: mpmc::Receiver::open(&format!("{name}.req"))?,
            tx: mpmc::Sender::open(&format!("{name}.resp"))?,
        })
    }

    fn send(&mut self, msg: &[u8]) -> Res<()> {
        let mut slot = self.tx.loan()?;
        bytemuck::bytes_of_mut(&mut *slot)[..msg.len()].copy_from_slice(msg);
        slot.commit()?;
        Ok(())
    }

    fn recv<R>(&mut self, deadline: Option<Instant>, f: impl FnOnce(&[u8]) -> R) -> Res<Option<R>> {
        let got = match deadline {
            None => self.rx.recv_ref(),
            Some(d) => self
                .rx
                .recv_ref_timeout(d.saturating_duration_since(Instant::now())),
        };
        match got {
            Ok(g) => Ok(Some(f(bytemuck::bytes_of(&*g)))),
            Err(Error::Disconnected) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

struct Frames {
    tx: frames::Sender,
    rx: frames::Receiver,
}

impl Transport for Frames {
    fn create(name: &str, size: usize, _: &mut Command) -> Res<Self> {
        // A record is a 16-byte header and the payload rounded up to 16 bytes; room for up
        // to 4096 records, at least 8 MiB when that is not enough for 4.
        let record = 16 + size.next_multiple_of(16);
        let cap = (4096 * record).min((8 << 20).max(4 * record) + 32);
        let cap = cap.next_power_of_two();
        Ok(Frames {
            tx: frames::Sender::create(&format!("{name}.req"), cap)?,
            rx: frames::Receiver::create(&format!("{name}.resp"), cap)?,
        })
    }

    fn open(name: &str, _: usize) -> Res<Self> {
        Ok(Frames {
            rx: frames::Receiver::open(&format!("{name}.req"))?,
            tx: frames::Sender::open(&format!("{name}.resp"))?,
        })
    }

    fn send(&mut self, msg: &[u8]) -> Res<()> {
        Ok(self.tx.send(msg)?)
    }

    fn recv<R>(&mut self, deadline: Option<Instant>, f: impl FnOnce(&[u8]) -> R) -> Res<Option<R>> {
        let got = match deadline {
            None => self.rx.recv_ref(),
            Some(d) => self
                .rx
                .recv_ref_timeout(d.saturating_duration_since(Instant::now())),
        };
        match got {
            Ok(frame) => Ok(Some(f(&frame))),
            Err(Error::Disconnected) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Baselines: a pipe and a Unix socket

/// Length-prefixed frames over a pair of pipes (`SOCKET = false`) or a Unix stream socket
/// pair. The peer gets its ends as stdin and stdout.
struct Stream<const SOCKET: bool> {
    w: File,
    r: BufReader<File>,
    buf: Vec<u8>,
}

impl<const SOCKET: bool> Transport for Stream<SOCKET> {
    fn create(_: &str, size: usize, peer: &mut Command) -> Res<Self> {
        let (w, r, peer_in, peer_out): (OwnedFd, OwnedFd, OwnedFd, OwnedFd) = if SOCKET {
            let (ours, theirs) = UnixStream::pair()?;
            (
                ours.try_clone()?.into(),
                ours.into(),
                theirs.try_clone()?.into(),
                theirs.into(),
            )
        } else {
            let (req_r, req_w) = std::io::pipe()?;
            let (resp_r, resp_w) = std::io::pipe()?;
            (req_w.into(), resp_r.into(), req_r.into(), resp_w.into())
        };
        peer.stdin(Stdio::from(peer_in))
            .stdout(Stdio::from(peer_out));
        Ok(Stream {
            w: File::from(w),
            r: BufReader::with_capacity(64 << 10, File::from(r)),
            buf: vec![0; size],
        })
    }

    fn open(_: &str, size: usize) -> Res<Self> {
        // Our own descriptors for stdin and stdout (the peer never prints to stdout).
        let r = std::io::stdin().as_fd().try_clone_to_owned()?;
        let w = std::io::stdout().as_fd().try_clone_to_owned()?;
        Ok(Stream {
            w: File::from(w),
            r: BufReader::with_capacity(64 << 10, File::from(r)),
            buf: vec![0; size],
        })
    }

    fn send(&mut self, msg: &[u8]) -> Res<()> {
        let len = (msg.len() as u32).to_le_bytes();
        let mut slices = [IoSlice::new(&len), IoSlice::new(msg)];
        let mut bufs = &mut slices[..];
        while !bufs.is_empty() {
            match self.w.write_vectored(bufs) {
                Ok(0) => return Err("write returned 0".into()),
                Ok(n) => IoSlice::advance_slices(&mut bufs, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn recv<R>(&mut self, deadline: Option<Instant>, f: impl FnOnce(&[u8]) -> R) -> Res<Option<R>> {
        if let Some(d) = deadline {
            if self.r.buffer().is_empty() {
                let mut pfd = libc::pollfd {
                    fd: self.r.get_ref().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ms = d.saturating_duration_since(Instant::now()).as_millis();
                // SAFETY: `pfd` is a valid pollfd array of length 1 for the call.
                let n = unsafe { libc::poll(&mut pfd, 1, ms.min(i32::MAX as u128) as i32) };
                if n == 0 {
                    return Err("timed out".into());
                }
            }
        }
        let mut len = [0u8; 4];
        match self.r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let n = u32::from_le_bytes(len) as usize;
        if n > self.buf.len() {
            return Err(format!("frame of {n} bytes, more than {}", self.buf.len()).into());
        }
        self.r.read_exact(&mut self.buf[..n])?;
        Ok(Some(f(&self.buf[..n])))
    }
}

// ---------------------------------------------------------------------------------------
// Floors: a one-slot mailbox per direction in raw shared memory

/// Two one-slot mailboxes (request, reply) in a `RawArray<u32>`, laid out from the first
/// 128-byte boundary of the array: a line with each side's `closed` flag, then per
/// direction a 128-byte-aligned region `[state: u32][len: u32][payload]`.
///
/// Protocol per direction: for its `k`-th message (counting from 0, wrapping) the sender
/// waits for `state == 2k` (free), writes the payload and the length, and stores
/// `2k + 1`; the receiver waits for `2k + 1`, reads in place and stores `2k + 2`. One side
/// writes the slot at a time. `FUTEX = false`: waits spin. `FUTEX = true`: a waiter sleeps
/// in `FUTEX_WAIT` at once, and every state store is followed by `FUTEX_WAKE`.
struct Mailbox<const FUTEX: bool> {
    mem: RawArray<u32>,
    /// Byte offset of the layout from the start of the array (128-byte aligned).
    base: usize,
    region: usize,
    size: usize,
    /// 0 in the bench process, 1 in the peer; we send on direction `me`.
    me: usize,
    sent: u32,
    received: u32,
}

impl<const FUTEX: bool> Mailbox<FUTEX> {
    fn region(size: usize) -> usize {
        (8 + size).next_multiple_of(128)
    }

    fn with(mem: RawArray<u32>, size: usize, me: usize) -> Res<Self> {
        // The array starts at the same offset within a page in both processes (mappings
        // are page-aligned), so both find the same 128-byte boundary.
        let base = (mem.as_ptr() as *mut u8).align_offset(128);
        let region = Self::region(size);
        if (base + 128 + 2 * region) > mem.len() * 4 {
            return Err("mailbox array too small".into());
        }
        Ok(Mailbox {
            mem,
            base,
            region,
            size,
            me,
            sent: 0,
            received: 0,
        })
    }

    /// The `u32` at byte offset `off` from the layout's start.
    fn word(&self, off: usize) -> &AtomicU32 {
        &self.mem.atomics()[(self.base + off) / 4]
    }

    fn closed(&self, side: usize) -> &AtomicU32 {
        self.word(4 * side)
    }

    fn state(&self, dir: usize) -> &AtomicU32 {
        self.word(128 + dir * self.region)
    }

    fn len(&self, dir: usize) -> &AtomicU32 {
        self.word(128 + dir * self.region + 4)
    }

    fn payload(&self, dir: usize) -> *mut u8 {
        // SAFETY: `base + 128 + 2 * region` is within the array (checked in `with`), and
        // the payload of `dir` lies below it.
        unsafe { (self.mem.as_ptr() as *mut u8).add(self.base + 128 + dir * self.region + 8) }
    }

    fn peer_closed(&self) -> bool {
        // Acquire: pairs with the Release store in the other side's `drop`.
        self.closed(1 - self.me).load(Ordering::Acquire) != 0
    }

    /// Waits until the state of `dir` is `want`; `false` if the other side closed first.
    fn wait(&self, dir: usize, want: u32, deadline: Option<Instant>) -> Res<bool> {
        let state = self.state(dir);
        let mut spins = 0u32;
        loop {
            // Acquire: pairs with the other side's Release store of the state: the payload
            // (or its reading of the slot) is complete.
            let v = state.load(Ordering::Acquire);
            if v == want {
                return Ok(true);
            }
            spins = spins.wrapping_add(1);
            if !FUTEX && !spins.is_multiple_of(1024) {
                std::hint::spin_loop();
                continue;
            }
            if self.peer_closed() {
                return Ok(false);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err("timed out".into());
            }
            if FUTEX {
                // A timed sleep, so that a close between our check and the sleep is seen.
                futex_wait(state, v, Duration::from_millis(10));
            }
        }
    }

    fn publish(&self, dir: usize, v: u32) {
        // Release: pairs with the Acquire load in the other side's `wait`.
        self.state(dir).store(v, Ordering::Release);
        if FUTEX {
            futex_wake(self.state(dir));
        }
    }
}

impl<const FUTEX: bool> Transport for Mailbox<FUTEX> {
    fn create(name: &str, size: usize, _: &mut Command) -> Res<Self> {
        let words = (128 + 128 + 2 * Self::region(size)) / 4;
        Self::with(RawArray::create_zeroed(name, words)?, size, 0)
    }

    fn open(name: &str, size: usize) -> Res<Self> {
        Self::with(RawArray::open(name)?, size, 1)
    }

    fn send(&mut self, msg: &[u8]) -> Res<()> {
        let dir = self.me;
        let n = msg.len().min(self.size);
        let k = self.sent.wrapping_mul(2);
        if !self.wait(dir, k, None)? {
            return Err("the peer closed the mailbox".into());
        }
        // SAFETY: state `2k` gives us the slot: the receiver does not read it before we
        // publish `2k + 1`; `n <= size` bytes fit in the payload area.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), self.payload(dir), n) };
        // Relaxed: published by the Release store of the state below.
        self.len(dir).store(n as u32, Ordering::Relaxed);
        self.publish(dir, k.wrapping_add(1));
        self.sent = self.sent.wrapping_add(1);
        Ok(())
    }

    fn recv<R>(&mut self, deadline: Option<Instant>, f: impl FnOnce(&[u8]) -> R) -> Res<Option<R>> {
        let dir = 1 - self.me;
        let k = self.received.wrapping_mul(2);
        if !self.wait(dir, k.wrapping_add(1), deadline)? {
            return Ok(None);
        }
        // Relaxed: made visible by the Acquire load of the state in `wait`. Untrusted:
        // clamped to the payload area.
        let n = (self.len(dir).load(Ordering::Relaxed) as usize).min(self.size);
        // SAFETY: state `2k + 1` gives us the slot: the sender does not write it again
        // before we store `2k + 2` (after `f` returns); `n <= size` bytes are in bounds.
        let r = f(unsafe { std::slice::from_raw_parts(self.payload(dir), n) });
        self.publish(dir, k.wrapping_add(2));
        self.received = self.received.wrapping_add(1);
        Ok(Some(r))
    }
}

impl<const FUTEX: bool> Drop for Mailbox<FUTEX> {
    fn drop(&mut self) {
        // Release: pairs with the Acquire load in the other side's `peer_closed`.
        self.closed(self.me).store(1, Ordering::Release);
        futex_wake(self.state(0));
        futex_wake(self.state(1));
    }
}

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a valid, aligned u32 in shared memory (FUTEX_WAIT without
    // PRIVATE, as the peer is another process); `ts` outlives the call. FUTEX_WAIT
    // compares the word with `expected` and sleeps only if they are equal.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
        )
    };
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned u32 in shared memory; FUTEX_WAKE only reads the
    // address as a key.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1) };
}

// ---------------------------------------------------------------------------------------
// Percentiles

/// A log-linear histogram of nanoseconds: exact below 64, then 64 buckets per power of
/// two (at most 1.6% wide).
struct Hist {
    counts: Vec<u64>,
    n: u64,
    max: u64,
}

impl Hist {
    const SUB: u64 = 64;

    fn new() -> Hist {
        Hist {
            counts: vec![0; 64 * 60],
            n: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < Self::SUB {
            return v as usize;
        }
        let e = 63 - v.leading_zeros() as u64; // >= 6
        let m = v >> (e - 6); // in 64..128
        ((e - 5) * Self::SUB + (m - Self::SUB)) as usize
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> f64 {
        let i = i as u64;
        if i < Self::SUB {
            return i as f64;
        }
        let (e, m) = (i / Self::SUB + 5, i % Self::SUB + Self::SUB);
        let width = 1u64 << (e - 6);
        (m << (e - 6)) as f64 + (width as f64 - 1.0) / 2.0
    }

    fn add(&mut self, ns: u64) {
        let i = Self::index(ns).min(self.counts.len() - 1);
        self.counts[i] += 1;
        self.n += 1;
        self.max = self.max.max(ns);
    }

    fn percentile(&self, p: f64) -> f64 {
        let rank = ((p * self.n as f64).ceil() as u64).clamp(1, self.n.max(1));
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i).min(self.max as f64);
            }
        }
        f64::NAN
    }
}

/// Round-trip percentiles: printed to stderr, and kept in `percentiles.json` beside
/// criterion's results (merged with the entries of earlier runs of other cases).
struct Percentiles {
    warm_up: Duration,
    /// Only real runs write the file (not `--test`, `--list`, `--profile-time`).
    write: bool,
    /// `(id, json)`, in run order.
    entries: Vec<(String, String)>,
}

impl Percentiles {
    fn new() -> Percentiles {
        let args: Vec<String> = std::env::args().collect();
        let mut warm_up = WARM_UP;
        for (i, a) in args.iter().enumerate() {
            let v = if a == "--warm-up-time" {
                args.get(i + 1).map(String::as_str)
            } else {
                a.strip_prefix("--warm-up-time=")
            };
            if let Some(secs) = v.and_then(|s| s.parse::<f64>().ok()) {
                warm_up = Duration::from_secs_f64(secs.max(0.0));
            }
        }
        let write = !args
            .iter()
            .any(|a| matches!(a.as_str(), "--test" | "--list" | "--profile-time"));
        Percentiles {
            warm_up,
            write,
            entries: Vec::new(),
        }
    }

    fn add(&mut self, id: &str, h: &Hist) {
        let (p50, p99, p999) = (h.percentile(0.5), h.percentile(0.99), h.percentile(0.999));
        eprintln!(
            "{id}: {} round trips: p50 {} p99 {} p99.9 {} max {}",
            h.n,
            ns(p50),
            ns(p99),
            ns(p999),
            ns(h.max as f64)
        );
        let json = format!(
            "{{\"n\": {}, \"p50_ns\": {p50:.0}, \"p99_ns\": {p99:.0}, \"p999_ns\": {p999:.0}, \"max_ns\": {}}}",
            h.n, h.max
        );
        self.entries.push((id.to_string(), json));
        if self.write {
            if let Err(e) = self.save() {
                eprintln!("could not write percentiles.json: {e}");
            }
        }
    }

    fn path() -> PathBuf {
        if let Some(home) = std::env::var_os("CRITERION_HOME") {
            return PathBuf::from(home).join("percentiles.json");
        }
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
            PathBuf::from,
        );
        target.join("criterion").join("percentiles.json")
    }

    /// Writes one entry per line; entries of earlier runs that this run did not measure
    /// are kept.
    fn save(&self) -> std::io::Result<()> {
        let path = Self::path();
        let mut lines: Vec<(String, String)> = Vec::new();
        if let Ok(old) = std::fs::read_to_string(&path) {
            for line in old.lines() {
                let line = line.trim().trim_end_matches(',');
                let Some(rest) = line.strip_prefix('"') else {
                    continue;
                };
                let Some((id, json)) = rest.split_once("\": ") else {
                    continue;
                };
                if !self.entries.iter().any(|(i, _)| i == id) {
                    lines.push((id.to_string(), json.to_string()));
                }
            }
        }
        lines.extend(self.entries.iter().cloned());
        lines.sort_by(|a, b| a.0.cmp(&b.0));
        let body: Vec<String> = lines
            .iter()
            .map(|(id, json)| format!("  \"{id}\": {json}"))
            .collect();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, format!("{{\n{}\n}}\n", body.join(",\n")))
    }
}

fn ns(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x >= 1e6 {
        format!("{:.2} ms", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.2} µs", x / 1e3)
    } else {
        format!("{x:.0} ns")
    }
}
