//! Hostile peers and hostile environments (RELIABILITY.md scenarios 8, 9, 10, 12, 16):
//!
//! - a hostile writer process scribbles over a channel's control words (positions, stamps,
//!   endpoint tokens, lengths, wake words) while a real sender process and a real receiver
//!   process keep going, for spsc, mpmc and frames;
//! - named segments truncated under a peer that maps them, and anonymous segments that
//!   refuse to shrink;
//! - names squatted by someone else (garbage, a wrong mode, another owner, a symbolic
//!   link, a FIFO, a directory);
//! - hostile umasks;
//! - other format versions, header sizes, kinds and element layouts.
//!
//! Truncation, squatting, umasks and layouts are checked for every kind of named object
//! (`KINDS`), where `tests/segment.rs` checks `Value` and raw segments.
//!
//! The hostile writer needs the byte offsets of the channels' control words. They mirror
//! the `#[repr(C)]` layouts in `src/channel/` (documented there, and already used by the
//! corruption tests in `tests/spsc.rs`, `tests/mpmc.rs` and `tests/frames.rs`).

mod common;

use std::any::Any;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::process::Child;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{arg, arg_as, finish, report, spawn, wait_until, Names, Outcome};
use shmkit::{
    frames, mpmc, spsc, Array, Barrier, BoundedSemaphore, Condvar, CreationMode, Error, Event,
    Mutex, Options, RawArray, RawValue, ReentrantMutex, RwLock, Segment, Semaphore, Value,
};

/// A failure bound only: nothing here waits this long when things work.
const PATIENCE: Duration = Duration::from_secs(30);

#[test]
fn __child() {
    common::child_main(&[
        ("hostile_consumer", hostile_consumer),
        ("hostile_sender", hostile_sender),
        ("hostile_writer", hostile_writer),
        ("truncate_under_a_peer", truncate_under_a_peer),
        ("anonymous_seals", anonymous_seals),
        ("umask_every_kind", umask_every_kind),
    ]);
}

fn path_of(name: &str) -> String {
    format!("/dev/shm/shmkit.{name}")
}

// ---------------------------------------------------------------------------------------
// Every kind of named object, through its own constructors.

/// Every kind of named object (the names are those of `shmkit::Kind::as_str`).
const KINDS: [&str; 18] = [
    "raw",
    "value",
    "raw-value",
    "array",
    "raw-array",
    "mutex",
    "rwlock",
    "reentrant-mutex",
    "semaphore",
    "bounded-semaphore",
    "event",
    "condvar",
    "barrier",
    "spsc",
    "mpmc",
    "frames",
    "dict",
    "list",
];

type Object = Box<dyn Any>;

fn boxed<T: Any>(r: Result<T, Error>) -> Result<Object, Error> {
    r.map(|v| Box::new(v) as Object)
}

/// Creates, opens or opens-or-creates the object of `kind` named `name` through its own
/// constructor, with `opts`. Channels are created through their sender and opened through
/// their receiver, so that opening beside the live creator is not [`Error::Busy`].
fn object(kind: &str, name: &str, mode: CreationMode, opts: &Options) -> Result<Object, Error> {
    let rx = mode != CreationMode::Create;
    match kind {
        "raw" => boxed(match mode {
            CreationMode::Create => Segment::create(name, 64, opts),
            CreationMode::Open => Segment::open(name, opts),
            CreationMode::OpenOrCreate => Segment::open_or_create(name, 64, opts),
        }),
        "value" => boxed(Value::<u64>::with_options(name, mode, 7, opts)),
        "raw-value" => boxed(RawValue::<u64>::with_options(name, mode, 7, opts)),
        "array" => boxed(Array::<u64>::with_options(name, mode, &[7; 4], opts)),
        "raw-array" => boxed(RawArray::<u64>::with_options(name, mode, &[7; 4], opts)),
        "mutex" => boxed(Mutex::<u64>::with_options(name, mode, 7, opts)),
        "rwlock" => boxed(RwLock::<u64>::with_options(name, mode, 7, opts)),
        "reentrant-mutex" => boxed(ReentrantMutex::with_options(name, mode, opts)),
        "semaphore" => boxed(Semaphore::with_options(name, mode, 1, opts)),
        "bounded-semaphore" => boxed(BoundedSemaphore::with_options(name, mode, 1, opts)),
        "event" => boxed(Event::with_options(name, mode, opts)),
        "condvar" => boxed(Condvar::with_options(name, mode, opts)),
        "barrier" => boxed(Barrier::with_options(name, mode, 2, opts)),
        "spsc" if rx => boxed(spsc::Receiver::<u64>::with_options(name, mode, 8, opts)),
        "spsc" => boxed(spsc::Sender::<u64>::with_options(name, mode, 8, opts)),
        "mpmc" if rx => boxed(mpmc::Receiver::<u64>::with_options(name, mode, 8, opts)),
        "mpmc" => boxed(mpmc::Sender::<u64>::with_options(name, mode, 8, opts)),
        "frames" if rx => boxed(frames::Receiver::with_options(name, mode, 1024, opts)),
        "frames" => boxed(frames::Sender::with_options(name, mode, 1024, opts)),
        "dict" => boxed(shmkit::SharedDict::<u64, String>::with_options(
            name, mode, 4, opts,
        )),
        "list" => boxed(shmkit::SharedList::<String>::with_options(
            name, mode, 4, opts,
        )),
        _ => panic!("unknown kind {kind}"),
    }
}

fn create(kind: &str, name: &str) -> Object {
    object(kind, name, CreationMode::Create, &Options::new())
        .unwrap_or_else(|e| panic!("create {kind} {name}: {e}"))
}

fn open(kind: &str, name: &str) -> Result<Object, Error> {
    object(kind, name, CreationMode::Open, &Options::new())
}

fn open_trusted(kind: &str, name: &str) -> Result<Object, Error> {
    object(
        kind,
        name,
        CreationMode::Open,
        &Options::new().trust_shared(true),
    )
}

fn is_corrupt(r: &Result<Object, Error>) -> bool {
    matches!(r, Err(Error::Corrupt { .. }))
}

fn is_mismatch(r: &Result<Object, Error>) -> bool {
    matches!(r, Err(Error::LayoutMismatch { .. }))
}

fn is_denied(r: &Result<Object, Error>) -> bool {
    matches!(r, Err(Error::PermissionDenied { .. }))
}

fn is_taken(r: &Result<Object, Error>) -> bool {
    matches!(r, Err(Error::AlreadyExists { .. }))
}

/// `Result<Object, _>` has no `Debug` (the object is `dyn Any`): what it is, for messages.
fn show(r: &Result<Object, Error>) -> String {
    match r {
        Ok(_) => "Ok(..)".to_owned(),
        Err(e) => format!("Err({e:?})"),
    }
}

/// Writes a file under our prefix by hand, as a squatter would.
fn plant(name: &str, bytes: &[u8], mode: u32) {
    std::fs::write(path_of(name), bytes).unwrap();
    std::fs::set_permissions(path_of(name), std::fs::Permissions::from_mode(mode)).unwrap();
}

fn put(name: &str, at: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path_of(name))
        .unwrap();
    f.write_all_at(bytes, at).unwrap();
}

// ---------------------------------------------------------------------------------------
// Children: spawned, waited for within a bound, killed if the test gives up on them.

/// A child process that is killed if the test panics before it finished.
struct Kid(Option<Child>);

impl Kid {
    fn spawn(role: &str, args: &[(&str, String)]) -> Kid {
        Kid(Some(spawn(role, args)))
    }

    /// Waits for the child; a child still running after `limit` is hung: it is killed and
    /// the test fails.
    fn finish_within(mut self, limit: Duration, what: &str) -> Outcome {
        let mut child = self.0.take().expect("a child");
        let start = Instant::now();
        loop {
            if child.try_wait().expect("try_wait").is_some() {
                return finish(child);
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let o = finish(child);
                panic!("{what} still running after {limit:?}: it hangs ({o:?})");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Asserts that a child exited by itself with status 0: no panic, no signal.
fn assert_survived(o: &Outcome, what: &str) {
    assert_eq!(o.signal, None, "{what} was killed by a signal: {o:?}");
    assert_eq!(o.code, Some(0), "{what} failed: {o:?}");
}

// Messages that show any damage: (producer id, sequence number, length, checksum), then
// filler bytes derived from the id and the sequence number.
use common::msg::*;

// ---------------------------------------------------------------------------------------
// Scenario 8: a hostile writer.
//
// The receiver process creates the channel; a sender process sends checksummed messages
// with bounded calls only; once messages flow, the writer process maps the segment file
// itself (it is not an endpoint: it mmaps /dev/shm/shmkit.NAME directly, since
// `Segment::open` only opens raw segments) and scribbles over the control words. Then the
// parent stops everybody through an `Event` that the writer never touches.
//
// Two rounds per channel kind:
// - "implausible": every garbage value is one that no correct peer could ever write there
//   (a position or stamp or length changed in bits 40..63, far beyond any position this
//   test reaches; any value in the 32-bit wake words and endpoint pid/ever words), put
//   with a CAS and taken back with a CAS a moment later, so that a legitimate write is
//   never lost. The receiver must get only intact messages or errors.
//   Liveness tokens are the exception: a forged token of a dead process is a plausible
//   value (it says "that endpoint died"), and an mpmc sender that believes a receiver
//   died frees the slot that receiver may still be copying, exactly as it must for a
//   receiver that really died. So in this round an mpmc token is only ever cleared or
//   swapped with another live endpoint's; spsc and frames never free a peer's slot, so
//   there any token value goes.
// - "anything": any value, plausible ones included (off by one, a lap ahead, zero, the
//   previous value's neighbours, forged tokens), most put and taken back as above, one in
//   sixteen stored for good. A writer that can forge a plausible stamp can forge a message,
//   which no check inside the library could catch (payload bytes belong to the peers:
//   RELIABILITY.md promise 3 is about bounds, panics, hangs and allocation, not
//   authentication), so this round asserts survival, bounded calls and in-bounds frames,
//   and only counts damaged messages.

/// How long the writer attacks, per round.
const ATTACK: Duration = Duration::from_millis(1200);
/// How long every blocking call of the sender and the receiver may wait.
const SLICE: Duration = Duration::from_millis(20);

// The real layouts (computed from the structs), so that the attacked words are the real
// ones: segment header, then the channel header (each hot word on its own line), then the
// ring.
use shmkit::__layout::{mpmc as mpmc_layout, pair, segment as seg_layout, slot};
/// The segment header; the channel header follows.
const SEG_HDR: usize = seg_layout::SIZE;
/// The header of spsc and frames: the endpoint line, `tail`, `head`, two wake words.
const PAIR_HDR: usize = pair::SIZE;
/// The mpmc header: `tail`, `head`, two wake words, `lost`, then the sender and receiver
/// registrations.
const MPMC_HDR: usize = mpmc_layout::SIZE;
/// A slot of spsc and mpmc: the stamp, then the message.
const SLOT: usize = slot::size::<Msg>();
/// Frame records in the hostile test are all 64 bytes (16-byte header, payloads of 33 to
/// 48 bytes padded to 48), so record headers are always at multiples of 64 and never in
/// a payload: the writer hits only control words.
const RECORD: usize = 64;

const SPSC_CAP: usize = 16;
/// Not a power of two: the lap encoding has unused indices.
const MPMC_CAP: usize = 7;
const FRAMES_CAP: usize = 1024;

fn capacity(kind: &str) -> usize {
    match kind {
        "spsc" => SPSC_CAP,
        "mpmc" => MPMC_CAP,
        _ => FRAMES_CAP,
    }
}

/// A shared word the hostile writer attacks: its offset in the file, and its width.
#[derive(Debug, Clone, Copy)]
struct Word {
    off: usize,
    wide: bool,
    /// A liveness token.
    token: bool,
}

/// The control words of a channel of `kind`.
fn control_words(kind: &str) -> Vec<Word> {
    let narrow = |off| Word {
        off,
        wide: false,
        token: false,
    };
    let token = |off| Word {
        off,
        wide: false,
        token: true,
    };
    let wide = |off| Word {
        off,
        wide: true,
        token: false,
    };
    let b = SEG_HDR;
    let mut w = Vec::new();
    match kind {
        "spsc" | "frames" => {
            // Endpoint slots [sender, receiver]: token, pid, ever (u32 each).
            for end in 0..2 {
                let e = b + pair::ENDS + end * pair::END_SIZE;
                w.push(token(e + pair::END_TOKEN));
                w.push(narrow(e + pair::END_PID));
                w.push(narrow(e + pair::END_EVER));
            }
            w.push(wide(b + pair::TAIL));
            w.push(wide(b + pair::HEAD));
            w.push(narrow(b + pair::DATA)); // wake word
            w.push(narrow(b + pair::SPACE)); // wake word
            let data = b + PAIR_HDR;
            if kind == "spsc" {
                w.extend((0..SPSC_CAP).map(|i| wide(data + i * SLOT + slot::STAMP)));
            } else {
                for r in 0..FRAMES_CAP / RECORD {
                    w.push(wide(data + r * RECORD + shmkit::__layout::frames::STAMP));
                    w.push(wide(data + r * RECORD + shmkit::__layout::frames::LEN));
                }
            }
        }
        "mpmc" => {
            w.push(wide(b + mpmc_layout::TAIL));
            w.push(wide(b + mpmc_layout::HEAD));
            w.push(narrow(b + mpmc_layout::DATA)); // wake word
            w.push(narrow(b + mpmc_layout::SPACE)); // wake word
            w.push(wide(b + mpmc_layout::LOST));
            let tables = [b + mpmc_layout::SENDERS, b + mpmc_layout::RECEIVERS];
            for table in tables {
                // The registrations in use, and a few free ones.
                for j in 0..4 {
                    let reg = table + j * mpmc_layout::REG_SIZE;
                    let e = reg + mpmc_layout::REG_END;
                    w.extend([
                        token(e + pair::END_TOKEN),
                        narrow(e + pair::END_PID),
                        narrow(e + pair::END_EVER),
                    ]);
                    w.push(wide(reg + mpmc_layout::PENDING));
                }
            }
            let data = b + MPMC_HDR;
            w.extend((0..MPMC_CAP).map(|i| wide(data + i * SLOT + slot::STAMP)));
        }
        _ => panic!("unknown channel kind {kind}"),
    }
    w
}

/// Offsets of the sender's and the receiver's liveness tokens (attached when non-zero),
/// and of the published tail.
fn attach_words(kind: &str) -> (usize, usize, usize) {
    match kind {
        "mpmc" => (
            SEG_HDR + mpmc_layout::SENDERS + mpmc_layout::REG_END + pair::END_TOKEN,
            SEG_HDR + mpmc_layout::RECEIVERS + mpmc_layout::REG_END + pair::END_TOKEN,
            SEG_HDR + mpmc_layout::TAIL,
        ),
        _ => (
            SEG_HDR + pair::ENDS + pair::SENDER * pair::END_SIZE + pair::END_TOKEN,
            SEG_HDR + pair::ENDS + pair::RECEIVER * pair::END_SIZE + pair::END_TOKEN,
            SEG_HDR + pair::TAIL,
        ),
    }
}

enum Tx {
    Spsc(spsc::Sender<Msg>),
    Mpmc(mpmc::Sender<Msg>),
    Frames(frames::Sender),
}

impl Tx {
    fn open(kind: &str, name: &str) -> Result<Tx, Error> {
        Ok(match kind {
            "spsc" => Tx::Spsc(spsc::Sender::open(name)?),
            "mpmc" => Tx::Mpmc(mpmc::Sender::open(name)?),
            _ => Tx::Frames(frames::Sender::open(name)?),
        })
    }

    /// Sends message `seq` by a path chosen by `path`; never waits longer than `SLICE`.
    /// (Not through `mpmc::Loan::commit`: when its slot was skipped under it, which a
    /// hostile writer can cause, it sends again with an unbounded blocking `send`.)
    fn send(&mut self, seq: u64, path: u64, len: usize) -> Result<(), Error> {
        match self {
            Tx::Spsc(tx) => {
                let m = msg(0, seq);
                match path % 3 {
                    0 => tx.send_timeout(m, SLICE).map_err(Error::from),
                    1 => tx.try_send(m).map_err(Error::from),
                    _ => {
                        let mut slot = tx.try_loan()?;
                        *slot = m;
                        slot.commit()
                    }
                }
            }
            Tx::Mpmc(tx) => {
                let m = msg(0, seq);
                match path % 2 {
                    0 => tx.send_timeout(m, SLICE).map_err(Error::from),
                    _ => tx.try_send(m).map_err(Error::from),
                }
            }
            Tx::Frames(tx) => {
                let mut buf = [0u8; 48];
                let bytes = &mut buf[..len];
                encode(bytes, 0, seq);
                match path % 3 {
                    0 => tx.send_timeout(bytes, SLICE),
                    1 => tx.try_send(bytes),
                    _ => {
                        let mut loan = tx.try_loan(len)?;
                        loan.copy_from_slice(bytes);
                        loan.commit()
                    }
                }
            }
        }
    }
}

enum Rx {
    Spsc(spsc::Receiver<Msg>),
    Mpmc(mpmc::Receiver<Msg>),
    Frames(frames::Receiver),
}

impl Rx {
    fn create(kind: &str, name: &str) -> Result<Rx, Error> {
        let cap = capacity(kind);
        Ok(match kind {
            "spsc" => Rx::Spsc(spsc::Receiver::create(name, cap)?),
            "mpmc" => Rx::Mpmc(mpmc::Receiver::create(name, cap)?),
            _ => Rx::Frames(frames::Receiver::create(name, cap)?),
        })
    }

    /// Receives by a path chosen by `path` (timed or not, a copy or in place) and hands
    /// the bytes to `f`; never waits longer than `SLICE`.
    fn recv(&mut self, path: u64, f: impl FnOnce(&[u8])) -> Result<(), Error> {
        let timed = path.is_multiple_of(2);
        let copy = (path / 2).is_multiple_of(2);
        match self {
            Rx::Spsc(rx) if copy => {
                let v = if timed {
                    rx.recv_timeout(SLICE)?
                } else {
                    rx.try_recv()?
                };
                f(bytemuck::bytes_of(&v));
            }
            Rx::Spsc(rx) => {
                let g = if timed {
                    rx.recv_ref_timeout(SLICE)?
                } else {
                    rx.try_recv_ref()?
                };
                f(bytemuck::bytes_of(&*g));
            }
            Rx::Mpmc(rx) if copy => {
                let v = if timed {
                    rx.recv_timeout(SLICE)?
                } else {
                    rx.try_recv()?
                };
                f(bytemuck::bytes_of(&v));
            }
            Rx::Mpmc(rx) => {
                let g = if timed {
                    rx.recv_ref_timeout(SLICE)?
                } else {
                    rx.try_recv_ref()?
                };
                f(bytemuck::bytes_of(&*g));
            }
            Rx::Frames(rx) if copy => {
                let v = if timed {
                    rx.recv_timeout(SLICE)?
                } else {
                    rx.try_recv()?
                };
                f(&v);
            }
            Rx::Frames(rx) => {
                let frame = if timed {
                    rx.recv_ref_timeout(SLICE)?
                } else {
                    rx.try_recv_ref()?
                };
                f(&frame);
            }
        }
        Ok(())
    }
}

/// What a hostile-round endpoint saw.
#[derive(Debug, Default)]
struct Tally {
    ok: u64,
    damaged: u64,
    corrupt: u64,
    idle: u64,
    disconnected: u64,
    other: u64,
    longest: usize,
    sample: String,
}

impl Tally {
    fn error(&mut self, e: Error) {
        match e {
            Error::Corrupt { .. } => self.corrupt += 1,
            Error::Timeout | Error::WouldBlock => self.idle += 1,
            Error::Disconnected => self.disconnected += 1,
            e => {
                self.other += 1;
                if self.sample.is_empty() {
                    self.sample = e.to_string();
                }
            }
        }
    }

    fn report(&self) {
        report("ok", self.ok);
        report("damaged", self.damaged);
        report("corrupt", self.corrupt);
        report("idle", self.idle);
        report("disconnected", self.disconnected);
        report("other", self.other);
        report("longest", self.longest);
        report("sample", self.sample.replace('\n', " "));
    }
}

fn hostile_consumer() {
    let kind = arg("kind");
    let stop = Event::open(&arg("stop")).unwrap();
    let mut rx = Rx::create(&kind, &arg("name")).unwrap();
    let mut t = Tally::default();
    for i in 0u64.. {
        // Relaxed enough: the event is set once, by the parent, when it is time to stop.
        if i % 16 == 0 && stop.is_set() {
            break;
        }
        let mut got = None;
        match rx.recv(i, |b| {
            got = Some((b.len(), decode(b).is_some(), b.to_vec()))
        }) {
            Ok(()) => {
                let (len, intact, bytes) = got.expect("the closure ran");
                t.longest = t.longest.max(len);
                if intact {
                    t.ok += 1;
                } else {
                    t.damaged += 1;
                    if t.sample.is_empty() {
                        t.sample = format!("damaged message {bytes:02x?}");
                    }
                }
            }
            Err(e) => {
                let pause = !matches!(e, Error::Timeout);
                t.error(e);
                if pause {
                    // Errors come back at once: do not burn a shared core on them.
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    t.report();
}

fn hostile_sender() {
    let kind = arg("kind");
    let stop = Event::open(&arg("stop")).unwrap();
    let mut tx = Tx::open(&kind, &arg("name")).unwrap();
    let mut rng = Rng::new(arg_as("seed"));
    let mut t = Tally::default();
    let mut seq = 0;
    for i in 0u64.. {
        if i % 16 == 0 && stop.is_set() {
            break;
        }
        let len = 33 + rng.below(16) as usize; // frames only: records of 64 bytes
        match tx.send(seq, rng.next(), len) {
            Ok(()) => {
                t.ok += 1;
                seq += 1;
            }
            Err(e) => {
                let pause = !matches!(e, Error::Timeout);
                t.error(e);
                if pause {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    t.report();
}

/// A value in bits 40..63 changed: no position, stamp or length this test reaches.
fn implausible(rng: &mut Rng, orig: u64) -> u64 {
    let high = ((rng.next() >> 40) | 1) << 40;
    if rng.below(2) == 0 {
        orig ^ (1 << (40 + rng.below(24))) // one bit
    } else {
        orig ^ high ^ (rng.next() & 0xff_ffff_ffff) // anything, with a high bit changed
    }
}

/// Any value, plausible ones first among them.
fn anything(rng: &mut Rng, orig: u64, cap: u64) -> u64 {
    match rng.below(10) {
        0 => orig.wrapping_add(1),
        1 => orig.wrapping_sub(1),
        2 => orig.wrapping_add(cap),
        3 => orig.wrapping_add((cap + 1).next_power_of_two()),
        4 => orig.wrapping_sub(cap),
        5 => 0,
        6 => u64::MAX,
        7 => orig ^ (1 << rng.below(64)),
        8 => rng.below(4 * cap),
        _ => rng.next(),
    }
}

/// Spins or sleeps a random moment.
fn moment(rng: &mut Rng, max_us: u64) {
    let us = rng.below(max_us + 1);
    if us < 20 {
        for _ in 0..us * 50 {
            std::hint::spin_loop();
        }
    } else {
        std::thread::sleep(Duration::from_micros(us));
    }
}

fn hostile_writer() {
    let kind = arg("kind");
    let round = arg("round");
    let mut rng = Rng::new(arg_as("seed"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path_of(&arg("name")))
        .unwrap();
    let map = memmap2::MmapOptions::new().map_raw(&file).unwrap();
    let base = map.as_mut_ptr();
    let len = map.len();
    let words = control_words(&kind);
    let u32_at = |off: usize| {
        assert!(off + 4 <= len && off.is_multiple_of(4));
        // SAFETY: in bounds of the mapping (checked) and 4-aligned (the mapping is
        // page-aligned); shared memory is only ever accessed through atomics here.
        unsafe { &*(base.add(off) as *const AtomicU32) }
    };
    let u64_at = |off: usize| {
        assert!(off + 8 <= len && off.is_multiple_of(8));
        // SAFETY: as for `u32_at`, 8-aligned.
        unsafe { &*(base.add(off) as *const AtomicU64) }
    };

    // Attack only once both ends are attached and messages flow.
    let (tx_token, rx_token, tail) = attach_words(&kind);
    let since = Instant::now();
    while (u32_at(tx_token).load(Ordering::Relaxed) == 0
        || u32_at(rx_token).load(Ordering::Relaxed) == 0
        || u64_at(tail).load(Ordering::Relaxed) == 0)
        && since.elapsed() < PATIENCE
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(20));

    let cap = capacity(&kind) as u64;
    let careful = round == "implausible";
    let (mut hits, mut stolen) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < ATTACK {
        let w = words[rng.below(words.len() as u64) as usize];
        // Most garbage is put with a CAS and taken back with a CAS a moment later: a
        // legitimate write in between wins, and is never undone. In the "anything" round
        // one in sixteen values is stored for good instead.
        let for_good = !careful && rng.below(16) == 0;
        // SeqCst everywhere: the writer wants its values seen, in any order; it pairs with
        // nothing in particular.
        let (put, restored) = if w.wide {
            let a = u64_at(w.off);
            let orig = a.load(Ordering::SeqCst);
            let bad = if careful {
                implausible(&mut rng, orig)
            } else {
                anything(&mut rng, orig, cap)
            };
            if for_good {
                a.store(bad, Ordering::SeqCst);
                (true, true)
            } else if a
                .compare_exchange(orig, bad, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                moment(&mut rng, 300);
                let back = a.compare_exchange(bad, orig, Ordering::SeqCst, Ordering::SeqCst);
                (true, back.is_ok())
            } else {
                (false, true)
            }
        } else {
            let a = u32_at(w.off);
            let orig = a.load(Ordering::SeqCst);
            let bad = if careful && w.token && kind == "mpmc" {
                // Cleared, or another live endpoint's token (see above).
                let other = [tx_token, rx_token]
                    .map(|off| u32_at(off).load(Ordering::SeqCst))
                    .into_iter()
                    .find(|&t| t != orig && t != 0);
                match (rng.below(2), other) {
                    (0, Some(t)) => t,
                    _ => 0,
                }
            } else {
                match rng.below(4) {
                    0 => 0,
                    1 => rng.below(8) as u32,
                    2 => orig ^ (1 << rng.below(32)),
                    _ => rng.next() as u32,
                }
            };
            if for_good {
                a.store(bad, Ordering::SeqCst);
                (true, true)
            } else if bad != orig
                && a.compare_exchange(orig, bad, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
            {
                moment(&mut rng, 300);
                let back = a.compare_exchange(bad, orig, Ordering::SeqCst, Ordering::SeqCst);
                (true, back.is_ok())
            } else {
                (false, true)
            }
        };
        hits += u64::from(put);
        stolen += u64::from(!restored);
        moment(&mut rng, 1500);
    }
    report("hits", hits);
    report("stolen", stolen);
}

fn hostile_round(kind: &str, round: &str) {
    let names = Names::new(&format!("hostile_{kind}_{round}"));
    let name = names.name("ch");
    let stop = Event::create(&names.name("stop")).unwrap();
    let seed = seed();
    let args = |role_seed: u64| {
        vec![
            ("kind", kind.to_owned()),
            ("name", name.clone()),
            ("stop", names.name("stop")),
            ("round", round.to_owned()),
            ("seed", role_seed.to_string()),
        ]
    };
    let consumer = Kid::spawn("hostile_consumer", &args(seed));
    wait_until(PATIENCE, || std::path::Path::new(&path_of(&name)).exists());
    let sender = Kid::spawn("hostile_sender", &args(seed ^ 1));
    let writer = Kid::spawn("hostile_writer", &args(seed ^ 2));
    let w = writer.finish_within(PATIENCE, "the hostile writer");
    // Let what survived flow a little after the attack, then stop.
    std::thread::sleep(Duration::from_millis(100));
    stop.set();
    let s = sender.finish_within(PATIENCE, "the sender");
    let c = consumer.finish_within(PATIENCE, "the receiver");
    eprintln!(
        "hostile {kind} {round} (seed {seed}): writer {:?}; sender {:?}; receiver {:?}",
        w.values, s.values, c.values
    );
    assert_survived(&w, "the hostile writer");
    assert_survived(&c, "the receiver");
    assert_survived(&s, "the sender");
    assert!(w.get::<u64>("hits") > 0, "the writer never wrote: {w:?}");
    // Only library errors, of the documented kinds.
    assert_eq!(c.get::<u64>("other"), 0, "receiver: {c:?}");
    assert_eq!(s.get::<u64>("other"), 0, "sender: {s:?}");
    // A frame viewed in place always lies inside the ring.
    if kind == "frames" {
        assert!(c.get::<usize>("longest") <= FRAMES_CAP - 16, "{c:?}");
    }
    if round == "implausible" {
        assert_eq!(
            c.get::<u64>("damaged"),
            0,
            "a damaged message was delivered (seed {seed}): {c:?}"
        );
    }
    drop(stop);
    drop(names);
}

#[test]
fn a_hostile_writer_on_spsc_control_words_gets_only_intact_messages_or_errors() {
    hostile_round("spsc", "implausible");
    hostile_round("spsc", "anything");
}

#[test]
fn a_hostile_writer_on_mpmc_control_words_gets_only_intact_messages_or_errors() {
    hostile_round("mpmc", "implausible");
    hostile_round("mpmc", "anything");
}

#[test]
fn a_hostile_writer_on_frame_control_words_gets_only_intact_frames_or_errors() {
    hostile_round("frames", "implausible");
    hostile_round("frames", "anything");
}

// ---------------------------------------------------------------------------------------
// Scenario 8, at attach: an endpoint that takes over from a dead one (resumes) reads
// positions, stamps and records that a hostile peer could have forged. The work of one
// call is bounded by one ring: an spsc sender walks at most `capacity + 1` stamps (the
// slot of `pos + capacity` is the slot of `pos`, so no fixed pattern can extend the walk,
// and the loop is bounded besides), an spsc receiver resumes in O(1) (the head, checked
// against the tail and the stamp before it); a frame receiver resumes in O(1) (the head, checked
// against the tail) and consumes at most two records per receive; a frame sender walks
// records of at least 16 bytes and never more than one ring past the head. These tests
// forge the longest walks and check that each call returns, where it says.

/// The position an endpoint's `Debug` shows.
fn position_of(end: &dyn std::fmt::Debug) -> u64 {
    let d = format!("{end:?}");
    let at = d.find("position: ").expect("Debug shows the position") + "position: ".len();
    d[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn an_spsc_sender_resuming_over_forged_stamps_walks_at_most_one_ring() {
    const CAP: u64 = 1 << 16;
    let names = Names::new("resume_spsc");
    let name = names.name("ch");
    // The live receiver: the sender sees `WouldBlock`, never `Disconnected`.
    let _rx = spsc::Receiver::<u64>::create(&name, CAP as usize).unwrap();
    let body = seg_layout::SIZE as u64;
    let slots = body + pair::SIZE as u64;
    let stride = slot::size::<u64>() as u64;
    let near_wrap = u64::MAX - 2;
    for head in [0, 5, near_wrap] {
        // Every slot says "published" from the head on, while the tail still says the
        // head (a dead sender that never stored it): the longest walk there is.
        let mut ring = vec![0u8; (CAP * stride) as usize];
        for k in 0..CAP {
            let pos = head.wrapping_add(k);
            let at = ((pos & (CAP - 1)) * stride) as usize + slot::STAMP;
            ring[at..at + 8].copy_from_slice(&pos.wrapping_add(1).to_ne_bytes());
        }
        put(&name, slots, &ring);
        forge_positions(&name, head, head);
        let mut tx = spsc::Sender::<u64>::open(&name).unwrap();
        // One ring past the head, and not one slot further: the ring is full.
        assert_eq!(position_of(&tx), head.wrapping_add(CAP));
        match tx.try_send(1) {
            Err(e) if matches!(e.error, Error::WouldBlock) => {}
            other => panic!("head {head}: {other:?}"),
        }
        drop(tx);
        // The receiver's head ahead of the sender, or more than a ring behind it: refused
        // on attach.
        for bad_head in [head.wrapping_add(CAP + 1), head.wrapping_sub(1)] {
            forge_positions(&name, bad_head, head);
            assert!(
                matches!(spsc::Sender::<u64>::open(&name), Err(Error::Corrupt { .. })),
                "head {head}, forged head {bad_head}"
            );
        }
        // A stamp that is neither published nor the previous lap's, where the walk stops:
        // refused on attach.
        let bad = head.wrapping_add(5);
        let at = slots + (bad & (CAP - 1)) * stride + slot::STAMP as u64;
        put(&name, at, &bad.wrapping_add(3).to_ne_bytes());
        forge_positions(&name, head, head);
        assert!(matches!(
            spsc::Sender::<u64>::open(&name),
            Err(Error::Corrupt { .. })
        ));
    }
}

#[test]
fn an_spsc_receiver_resumes_at_the_head_and_refuses_forged_positions() {
    const CAP: u64 = 8;
    let names = Names::new("resume_spsc_rx");
    let name = names.name("ch");
    let mut tx = spsc::Sender::<u64>::create(&name, CAP as usize).unwrap();
    for i in 0..5 {
        tx.send(i).unwrap();
    }
    let mut rx = spsc::Receiver::<u64>::open(&name).unwrap();
    assert_eq!(rx.recv().unwrap(), 0);
    assert_eq!(rx.recv().unwrap(), 1);
    drop(rx);
    // In O(1): at the head, whatever the stamps after it say.
    let rx = spsc::Receiver::<u64>::open(&name).unwrap();
    assert_eq!(position_of(&rx), 2);
    drop(rx);
    // A head ahead of the published messages (the stamp before it is not published), or
    // more than a ring away from the tail: refused on attach.
    let far_behind = 5u64.wrapping_sub(CAP + 1);
    for (head, tail) in [(6, 5), (7, 5), (5 + CAP + 1, 5), (far_behind, 5)] {
        forge_positions(&name, head, tail);
        assert!(
            matches!(
                spsc::Receiver::<u64>::open(&name),
                Err(Error::Corrupt { .. })
            ),
            "head {head}, tail {tail}"
        );
    }
    // A head that lags the tail (a sender that died before its tail store): accepted.
    forge_positions(&name, 4, 3);
    let rx = spsc::Receiver::<u64>::open(&name).unwrap();
    assert_eq!(position_of(&rx), 4);
    drop(rx);
    // The real positions again: the messages not yet released are delivered.
    forge_positions(&name, 2, 5);
    let mut rx = spsc::Receiver::<u64>::open(&name).unwrap();
    assert_eq!(
        rx.try_iter().collect::<Result<Vec<_>, _>>().unwrap(),
        [2, 3, 4]
    );
}

/// Writes a frame ring whose every record, from `from` on for one ring, is a published
/// empty frame: the longest chain of records there is.
fn forge_empty_frames(name: &str, cap: u64, from: u64) {
    use shmkit::__layout::frames as rec;
    let data = (seg_layout::SIZE + pair::SIZE) as u64;
    let mut ring = vec![0u8; cap as usize];
    for k in 0..cap / rec::ALIGN as u64 {
        let pos = from.wrapping_add(k * rec::ALIGN as u64);
        let at = (pos & (cap - 1)) as usize;
        ring[at + rec::STAMP..at + rec::STAMP + 8].copy_from_slice(&(pos + 1).to_ne_bytes());
        ring[at + rec::LEN..at + rec::LEN + 8].copy_from_slice(&0u64.to_ne_bytes());
    }
    put(name, data, &ring);
}

fn forge_positions(name: &str, head: u64, tail: u64) {
    let body = seg_layout::SIZE as u64;
    put(name, body + pair::HEAD as u64, &head.to_ne_bytes());
    put(name, body + pair::TAIL as u64, &tail.to_ne_bytes());
}

#[test]
fn a_frame_receiver_resuming_over_forged_records_reads_at_most_one_ring_per_lap() {
    const CAP: u64 = 1 << 12;
    let records = CAP / shmkit::__layout::frames::ALIGN as u64;
    let names = Names::new("resume_frames_rx");
    let name = names.name("ch");
    let _tx = frames::Sender::create(&name, CAP as usize).unwrap();
    for head in [0, u64::MAX - 15 - CAP] {
        forge_empty_frames(&name, CAP, head);
        forge_positions(&name, head, head.wrapping_add(CAP));
        let mut rx = frames::Receiver::open(&name).unwrap();
        assert_eq!(position_of(&rx), head);
        // Each receive reads one record; after one ring the forged chain meets its own
        // start, which is not published for that lap.
        let mut got = 0;
        loop {
            match rx.try_recv() {
                Ok(f) => {
                    assert!(f.is_empty());
                    got += 1;
                    assert!(got <= records, "more records than one ring holds");
                }
                Err(Error::WouldBlock) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert_eq!(got, records);
        drop(rx);
        // Forged positions: refused on attach, before any record is read.
        for (h, t) in [
            (head.wrapping_add(8), head),
            (head, head.wrapping_add(CAP + 16)),
            (head.wrapping_add(CAP + 16), head),
        ] {
            forge_positions(&name, h, t);
            assert!(
                matches!(frames::Receiver::open(&name), Err(Error::Corrupt { .. })),
                "head {h}, tail {t}"
            );
        }
    }
    // Padding after padding: one receive reads two records at most, then says `Corrupt`.
    use shmkit::__layout::frames as rec;
    let data = (seg_layout::SIZE + pair::SIZE) as u64;
    let head = CAP - 16; // the last record of the ring: a padding of 16 bytes
    forge_positions(&name, head, head + 32);
    put(
        &name,
        data + head + rec::STAMP as u64,
        &(head + 1).to_ne_bytes(),
    );
    put(
        &name,
        data + head + rec::LEN as u64,
        &(rec::PAD | 16).to_ne_bytes(),
    );
    put(&name, data + rec::STAMP as u64, &(CAP + 1).to_ne_bytes());
    put(
        &name,
        data + rec::LEN as u64,
        &(rec::PAD | CAP).to_ne_bytes(),
    );
    let mut rx = frames::Receiver::open(&name).unwrap();
    assert!(matches!(rx.try_recv(), Err(Error::Corrupt { .. })));
}

#[test]
fn a_frame_sender_resuming_over_forged_records_walks_at_most_one_ring() {
    const CAP: u64 = 1 << 12;
    let names = Names::new("resume_frames_tx");
    let name = names.name("ch");
    // The live receiver; a sender attached once and left (so the next one resumes).
    let _rx = frames::Receiver::create(&name, CAP as usize).unwrap();
    drop(frames::Sender::open(&name).unwrap());
    for tail in [0, u64::MAX - 15 - CAP] {
        // A stale tail and a chain of published records all round the ring: the walk
        // stops one ring past the head (the ring is full), never later.
        forge_empty_frames(&name, CAP, tail);
        forge_positions(&name, tail, tail);
        let mut tx = frames::Sender::open(&name).unwrap();
        assert_eq!(position_of(&tx), tail.wrapping_add(CAP));
        assert!(matches!(tx.try_send(b"x"), Err(Error::WouldBlock)));
        drop(tx);
        // The head more than a ring behind where the chain leads: refused, not followed.
        forge_positions(&name, tail.wrapping_sub(16), tail);
        assert!(matches!(
            frames::Sender::open(&name),
            Err(Error::Corrupt { .. })
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Scenario 9: truncation.

/// Runs in a child (a SIGBUS would end it, not the test harness): every kind, truncated to
/// zero, to its bare header, and to half its size while its creator maps it; every way of
/// opening it again is refused with `Corrupt` before the first access to the body.
fn truncate_under_a_peer() {
    let base = arg("base");
    for kind in KINDS {
        for cut in ["zero", "header", "half"] {
            let name = format!("{base}.{kind}.{cut}");
            let peer = create(kind, &name);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(path_of(&name))
                .unwrap();
            let size = f.metadata().unwrap().len();
            f.set_len(match cut {
                "zero" => 0,
                "header" => seg_layout::SIZE as u64,
                _ => size / 2,
            })
            .unwrap();
            for mode in [CreationMode::Open, CreationMode::OpenOrCreate] {
                let r = object(kind, &name, mode, &Options::new());
                assert!(
                    is_corrupt(&r),
                    "{kind} cut to {cut}, {mode:?}: {}",
                    show(&r)
                );
            }
            let r = open_trusted(kind, &name);
            assert!(is_corrupt(&r), "{kind} cut to {cut}, trusted: {}", show(&r));
            // Plain reads only: no mapping, no SIGBUS either.
            let _ = shmkit::inspect(&name);
            // The creator still maps the cut file: touching its body now would raise
            // SIGBUS (named shared memory cannot be sealed), and dropping a channel
            // endpoint writes its header. So it is leaked, not dropped; the parent's
            // `Names` removes the file.
            std::mem::forget(peer);
        }
    }
    assert!(!shmkit::list().unwrap().is_empty());
    report("done", 1);
}

#[test]
fn a_segment_truncated_under_a_mapped_peer_is_refused_by_every_kind_without_sigbus() {
    let names = Names::new("truncate");
    let o = Kid::spawn("truncate_under_a_peer", &[("base", names.name("t"))])
        .finish_within(PATIENCE, "the truncating child");
    assert_survived(&o, "the truncating child");
    assert_eq!(o.get::<u32>("done"), 1);
}

/// The memfd descriptors of shmkit's anonymous segments in this process:
/// `(fd, inode)`.
fn anonymous_fds() -> Vec<(i32, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue; // the directory's own descriptor, closed already
        };
        if !target.to_string_lossy().starts_with("/memfd:shmkit.anon") {
            continue;
        }
        let fd: i32 = e.file_name().to_str().unwrap().parse().unwrap();
        let ino = std::fs::metadata(e.path()).unwrap().ino();
        out.push((fd, ino));
    }
    out
}

/// Runs in a child: the descriptors it looks at are its own.
fn anonymous_seals() {
    assert!(anonymous_fds().is_empty());
    let seg = Segment::anonymous(64).unwrap();
    let value = Value::<u64>::anonymous(1).unwrap();
    let raw_value = RawValue::<u64>::anonymous(2).unwrap();
    let array = Array::<u64>::anonymous(&[3; 4]).unwrap();
    let raw_array = RawArray::<u64>::anonymous_zeroed(4).unwrap();
    let mutex = Mutex::<u64>::anonymous(4).unwrap();
    let rwlock = RwLock::<u64>::anonymous(5).unwrap();
    let reentrant = ReentrantMutex::anonymous().unwrap();
    let sem = Semaphore::anonymous(1).unwrap();
    let bounded = BoundedSemaphore::anonymous(1).unwrap();
    let event = Event::anonymous().unwrap();
    let condvar = Condvar::anonymous().unwrap();
    let barrier = Barrier::anonymous(1).unwrap();
    // Use the locks, so that their liveness descriptors (reopened through /proc) exist too.
    *mutex.lock().unwrap() += 1;
    *rwlock.write().unwrap() += 1;
    drop(reentrant.lock().unwrap());
    sem.acquire_timeout(PATIENCE).unwrap();

    let fds = anonymous_fds();
    let mut inodes: Vec<u64> = fds.iter().map(|&(_, ino)| ino).collect();
    inodes.sort_unstable();
    inodes.dedup();
    report("inodes", inodes.len());
    for &(fd, _) in &fds {
        // SAFETY: `fd` is an open descriptor of this process; F_GET_SEALS takes no argument.
        let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
        assert!(seals >= 0, "F_GET_SEALS on fd {fd}");
        for seal in [libc::F_SEAL_SHRINK, libc::F_SEAL_GROW, libc::F_SEAL_SEAL] {
            assert_ne!(seals & seal, 0, "fd {fd}: seals {seals:#x} lack {seal:#x}");
        }
        for len in [0, 64, 1 << 20] {
            // SAFETY: `fd` is an open descriptor of this process; a refused ftruncate
            // changes nothing, and a successful one is reported (nothing touches the
            // mapping afterwards in that case).
            let r = unsafe { libc::ftruncate(fd, len) };
            let err = std::io::Error::last_os_error();
            assert_eq!(r, -1, "fd {fd}: ftruncate to {len} succeeded");
            assert_eq!(err.raw_os_error(), Some(libc::EPERM), "fd {fd}: {err}");
        }
    }
    // Still whole.
    assert_eq!(value.get().unwrap(), 1);
    assert_eq!(raw_value.get(), 2);
    assert_eq!(array.get(3).unwrap(), 3);
    assert_eq!(raw_array.get(3).unwrap(), 0);
    assert_eq!(*mutex.lock().unwrap(), 5);
    event.set();
    assert!(event.is_set());
    drop((seg, condvar, barrier, bounded));
    report("fds", fds.len());
}

#[test]
fn anonymous_segments_of_every_kind_are_sealed_against_resizing() {
    let o = Kid::spawn("anonymous_seals", &[]).finish_within(PATIENCE, "the child");
    assert_survived(&o, "the child");
    // One memfd per object (13 kinds have an anonymous form; the channels have none).
    assert_eq!(o.get::<usize>("inodes"), 13, "{o:?}");
    assert!(o.get::<usize>("fds") >= 13, "{o:?}");
}

// ---------------------------------------------------------------------------------------
// Scenario 10: name squatting, for every kind.

#[test]
fn a_name_squatted_with_garbage_is_neither_created_over_nor_opened_by_any_kind() {
    let names = Names::new("squat_all");
    for kind in KINDS {
        // World-writable garbage: somebody else's, whatever it claims to be.
        let n = names.name(&format!("{kind}.garbage"));
        plant(&n, &[0xAB; 4096], 0o666);
        let r = object(kind, &n, CreationMode::Create, &Options::new());
        assert!(is_taken(&r), "{kind} create: {}", show(&r));
        let r = open(kind, &n);
        assert!(is_denied(&r), "{kind} open: {}", show(&r));
        let r = object(kind, &n, CreationMode::OpenOrCreate, &Options::new());
        assert!(is_denied(&r), "{kind} open_or_create: {}", show(&r));
        // Trusting it does not make garbage valid.
        let r = open_trusted(kind, &n);
        assert!(is_corrupt(&r), "{kind} trusted open: {}", show(&r));
        let trust = Options::new().trust_shared(true);
        let r = object(kind, &n, CreationMode::OpenOrCreate, &trust);
        assert!(
            is_corrupt(&r),
            "{kind} trusted open_or_create: {}",
            show(&r)
        );

        // Garbage of ours (mode 0600): not a permission question, still corrupt.
        let n = names.name(&format!("{kind}.stale"));
        plant(&n, &[0x5A; 4096], 0o600);
        let r = open(kind, &n);
        assert!(is_corrupt(&r), "{kind} open of our garbage: {}", show(&r));
        let r = object(kind, &n, CreationMode::Create, &Options::new());
        assert!(is_taken(&r), "{kind} create over our garbage: {}", show(&r));
    }
}

#[test]
fn a_valid_segment_writable_by_others_or_owned_by_another_user_opens_only_when_trusted() {
    let names = Names::new("squat_valid");
    let mut held = Vec::new();
    for kind in KINDS {
        for mode in [0o666, 0o620, 0o602] {
            let n = names.name(&format!("{kind}.{mode:o}"));
            let opts = Options::new().mode(mode);
            held.push(object(kind, &n, CreationMode::Create, &opts).unwrap());
            let r = open(kind, &n);
            assert!(is_denied(&r), "{kind} mode {mode:o}: {}", show(&r));
            let r = object(kind, &n, CreationMode::OpenOrCreate, &Options::new());
            assert!(is_denied(&r), "{kind} mode {mode:o}: {}", show(&r));
            let r = open_trusted(kind, &n);
            assert!(r.is_ok(), "{kind} mode {mode:o}, trusted: {}", show(&r));
        }
        // Readable by others is not writable by them: opened.
        let n = names.name(&format!("{kind}.644"));
        held.push(object(kind, &n, CreationMode::Create, &Options::new().mode(0o644)).unwrap());
        let r = open(kind, &n);
        assert!(r.is_ok(), "{kind} mode 644: {}", show(&r));

        // Owned by another user, mode 0600 (only root can make one to test with).
        let n = names.name(&format!("{kind}.theirs"));
        held.push(create(kind, &n));
        match std::os::unix::fs::chown(path_of(&n), Some(65534), Some(65534)) {
            Ok(()) => {
                let r = open(kind, &n);
                assert!(is_denied(&r), "{kind} of uid 65534: {}", show(&r));
                let r = open_trusted(kind, &n);
                assert!(r.is_ok(), "{kind} of uid 65534, trusted: {}", show(&r));
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                eprintln!("not root: another user's segment not tested ({e})");
            }
            Err(e) => panic!("chown: {e}"),
        }
    }
    drop(held);
    assert!(names.leftovers().is_empty(), "{:?}", names.leftovers());
}

/// Removes directories planted under our prefix (`Names` removes only files).
struct RemoveDirs(Vec<String>);

impl Drop for RemoveDirs {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

#[test]
fn symlinks_fifos_and_directories_at_the_name_are_refused_without_blocking() {
    let names = Names::new("squat_special");
    let mut dirs = RemoveDirs(Vec::new());
    let mut held = Vec::new();
    let mut planted = Vec::new();
    for kind in KINDS {
        // A link to a valid segment of ours, and a dangling one.
        let target = names.name(&format!("{kind}.target"));
        held.push(create(kind, &target));
        let link = names.name(&format!("{kind}.link"));
        std::os::unix::fs::symlink(path_of(&target), path_of(&link)).unwrap();
        let nowhere = names.name(&format!("{kind}.nowhere"));
        let dangling = names.name(&format!("{kind}.dangling"));
        std::os::unix::fs::symlink(path_of(&nowhere), path_of(&dangling)).unwrap();
        for n in [&link, &dangling] {
            for opts in [Options::new(), Options::new().trust_shared(true)] {
                let r = object(kind, n, CreationMode::Open, &opts);
                assert!(is_denied(&r), "{kind} open {n}: {}", show(&r));
                let r = object(kind, n, CreationMode::OpenOrCreate, &opts);
                assert!(is_denied(&r), "{kind} open_or_create {n}: {}", show(&r));
            }
            let r = object(kind, n, CreationMode::Create, &Options::new());
            assert!(is_taken(&r), "{kind} create {n}: {}", show(&r));
        }
        // Creating "through" the dangling link made nothing at its target.
        assert!(std::fs::symlink_metadata(path_of(&nowhere)).is_err());

        let fifo = names.name(&format!("{kind}.fifo"));
        let c = std::ffi::CString::new(path_of(&fifo)).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let dir = names.name(&format!("{kind}.dir"));
        std::fs::create_dir(path_of(&dir)).unwrap();
        dirs.0.push(path_of(&dir));
        planted.push((kind, fifo, dir));
    }
    // A FIFO must not block an opener: open in a thread, and give up on it after a bound.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let jobs = planted.clone();
    std::thread::spawn(move || {
        for (kind, fifo, dir) in jobs {
            for n in [&fifo, &dir] {
                for mode in [
                    CreationMode::Open,
                    CreationMode::OpenOrCreate,
                    CreationMode::Create,
                ] {
                    let r = object(kind, n, mode, &Options::new());
                    let trusted = object(kind, n, mode, &Options::new().trust_shared(true));
                    done_tx
                        .send((
                            format!("{kind} {n} {mode:?}"),
                            r.is_err() && trusted.is_err(),
                        ))
                        .unwrap();
                }
            }
            let _ = shmkit::inspect(&fifo);
        }
        let _ = shmkit::list().unwrap();
        drop(done_tx);
    });
    let mut checked = 0;
    loop {
        match done_rx.recv_timeout(PATIENCE) {
            Ok((what, refused)) => {
                assert!(refused, "{what}: accepted");
                checked += 1;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("opening a FIFO or a directory blocked ({checked} done)")
            }
        }
    }
    assert_eq!(checked, KINDS.len() * 2 * 3);
    drop(held);
    drop(dirs);
}

// ---------------------------------------------------------------------------------------
// Scenario 12: hostile umasks, for every kind.

/// Runs in a child: the umask is process-wide.
fn umask_every_kind() {
    let umask = u32::from_str_radix(&arg("umask"), 8).unwrap();
    // SAFETY: umask only changes this child process's file-creation mask.
    unsafe { libc::umask(umask as libc::mode_t) };
    let base = arg("base");
    let mut held = Vec::new();
    for kind in KINDS {
        for mode in [None, Some(0o640), Some(0o666), Some(0o000)] {
            let n = format!(
                "{base}.{kind}.{}",
                mode.map_or("default".into(), |m| format!("{m:o}"))
            );
            let opts = mode.map_or(Options::new(), |m| Options::new().mode(m));
            held.push(object(kind, &n, CreationMode::Create, &opts).unwrap());
            let got = std::fs::metadata(path_of(&n)).unwrap().permissions().mode() & 0o7777;
            let key = format!(
                "{kind}.{}",
                mode.map_or("default".into(), |m| format!("{m:o}"))
            );
            report(&key, format!("{got:o}"));
        }
    }
    // Anonymous objects reopen their memfd through /proc for liveness: unaffected too.
    let m = Mutex::<u64>::anonymous(0).unwrap();
    *m.lock().unwrap() += 1;
    report("anonymous", *m.lock().unwrap());
}

#[test]
fn every_kind_gets_exactly_the_mode_asked_whatever_the_umask() {
    for umask in ["000", "077", "777", "022"] {
        let names = Names::new(&format!("umask{umask}"));
        let o = Kid::spawn(
            "umask_every_kind",
            &[("umask", umask.to_owned()), ("base", names.name("m"))],
        )
        .finish_within(PATIENCE, "the child");
        assert_survived(&o, "the umask child");
        for kind in KINDS {
            // The owner always keeps read and write (liveness locks reopen the file).
            for (asked, want) in [
                ("default", "600"),
                ("640", "640"),
                ("666", "666"),
                ("0", "600"),
            ] {
                assert_eq!(
                    o.get::<String>(&format!("{kind}.{asked}")),
                    want,
                    "umask {umask}, {kind}, mode {asked}"
                );
            }
        }
        assert_eq!(o.get::<u64>("anonymous"), 1);
        assert!(names.leftovers().is_empty(), "{:?}", names.leftovers());
    }
}

// ---------------------------------------------------------------------------------------
// Scenario 16: other format versions, header sizes, kinds and element layouts.

/// Offsets in the fixed header prefix.
const VERSION_AT: u64 = seg_layout::VERSION as u64;
const HEADER_SIZE_AT: u64 = seg_layout::HEADER_SIZE as u64;

#[test]
fn every_kind_refuses_another_format_version_or_header_size() {
    let names = Names::new("version_all");
    for kind in KINDS {
        let n = names.name(kind);
        let _creator = create(kind, &n);
        let (good_version, next) = (seg_layout::FORMAT_VERSION, seg_layout::FORMAT_VERSION + 1);
        for (at, v) in [(VERSION_AT, next), (VERSION_AT, 0), (HEADER_SIZE_AT, 64)] {
            let good = if at == VERSION_AT { good_version } else { 128 };
            put(&n, at, &v.to_le_bytes());
            for mode in [CreationMode::Open, CreationMode::OpenOrCreate] {
                let r = object(kind, &n, mode, &Options::new());
                assert!(is_mismatch(&r), "{kind} with {v} at {at}: {}", show(&r));
            }
            put(&n, at, &good.to_le_bytes());
        }
        let r = open(kind, &n);
        assert!(r.is_ok(), "{kind} once repaired: {}", show(&r));
    }
}

#[test]
fn another_format_is_refused_before_anything_past_the_fixed_prefix_is_read() {
    let names = Names::new("version_prefix");
    for kind in KINDS {
        let n = names.name(kind);
        let _creator = create(kind, &n);
        // Another format version, and everything after the 16-byte prefix (kind, state,
        // sizes, lengths, ...) garbage: a later format may put anything there.
        let next = seg_layout::FORMAT_VERSION + 1;
        put(&n, VERSION_AT, &next.to_le_bytes());
        put(&n, 16, &[0xFF; 112]);
        let r = open(kind, &n);
        assert!(is_mismatch(&r), "{kind}, version {next}: {}", show(&r));
        // The same with this version but another header size.
        put(&n, VERSION_AT, &seg_layout::FORMAT_VERSION.to_le_bytes());
        put(&n, HEADER_SIZE_AT, &256u32.to_le_bytes());
        let r = open(kind, &n);
        assert!(is_mismatch(&r), "{kind}, header size 256: {}", show(&r));
    }
}

#[test]
fn every_kind_opened_as_another_kind_is_a_layout_mismatch() {
    let names = Names::new("kind_matrix");
    let mut held = Vec::new();
    for made in KINDS {
        let n = names.name(made);
        held.push(create(made, &n));
        for other in KINDS.iter().filter(|&&k| k != made) {
            let r = open(other, &n);
            assert!(is_mismatch(&r), "{made} opened as {other}: {}", show(&r));
        }
    }
}

#[test]
fn an_element_type_of_another_size_or_alignment_is_a_layout_mismatch() {
    type SameSizeAlign1 = [u8; 8];
    type SameSizeAlign4 = [u32; 2];
    let names = Names::new("elem_layout");
    let mismatch = |what: &str, r: Result<(), Error>| {
        assert!(
            matches!(r, Err(Error::LayoutMismatch { .. })),
            "{what}: {r:?}"
        );
    };
    let n = |k: &str| names.name(k);
    let _v = Value::<u64>::create(&n("value"), 1).unwrap();
    mismatch(
        "value",
        Value::<SameSizeAlign1>::open(&n("value")).map(drop),
    );
    mismatch(
        "value",
        Value::<SameSizeAlign4>::open(&n("value")).map(drop),
    );
    let _rv = RawValue::<u64>::create(&n("raw-value"), 1).unwrap();
    mismatch(
        "raw-value",
        RawValue::<SameSizeAlign1>::open(&n("raw-value")).map(drop),
    );
    let _a = Array::<u64>::create(&n("array"), &[1; 4]).unwrap();
    mismatch(
        "array",
        Array::<SameSizeAlign4>::open(&n("array")).map(drop),
    );
    mismatch("array", Array::<u32>::open(&n("array")).map(drop));
    let _ra = RawArray::<u64>::create(&n("raw-array"), &[1; 4]).unwrap();
    mismatch(
        "raw-array",
        RawArray::<SameSizeAlign1>::open(&n("raw-array")).map(drop),
    );
    let _m = Mutex::<u64>::create(&n("mutex"), 1).unwrap();
    mismatch(
        "mutex",
        Mutex::<SameSizeAlign4>::open(&n("mutex")).map(drop),
    );
    let _l = RwLock::<u64>::create(&n("rwlock"), 1).unwrap();
    mismatch(
        "rwlock",
        RwLock::<SameSizeAlign1>::open(&n("rwlock")).map(drop),
    );
    let _s = spsc::Sender::<u64>::create(&n("spsc"), 8).unwrap();
    mismatch(
        "spsc",
        spsc::Receiver::<SameSizeAlign1>::open(&n("spsc")).map(drop),
    );
    mismatch(
        "spsc",
        spsc::Receiver::<SameSizeAlign4>::open(&n("spsc")).map(drop),
    );
    let _q = mpmc::Sender::<u64>::create(&n("mpmc"), 8).unwrap();
    mismatch(
        "mpmc",
        mpmc::Receiver::<SameSizeAlign1>::open(&n("mpmc")).map(drop),
    );
    mismatch("mpmc", mpmc::Sender::<[u64; 2]>::open(&n("mpmc")).map(drop));
    // The right types open.
    assert!(spsc::Receiver::<u64>::open(&n("spsc")).is_ok());
    assert!(mpmc::Receiver::<u64>::open(&n("mpmc")).is_ok());
}

#[test]
fn an_spsc_head_forged_backwards_is_corrupt_not_a_slot_lent_twice() {
    let names = Names::new("spsc_head_back");
    let name = names.name("ch");
    let mut tx = spsc::Sender::<u64>::create(&name, 4).unwrap();
    let mut rx = spsc::Receiver::<u64>::open(&name).unwrap();
    for v in 0..4 {
        tx.send(v).unwrap();
    }
    assert_eq!(rx.recv().unwrap(), 0);
    assert_eq!(rx.recv().unwrap(), 1);
    // Full by its copy of `head` (0): the sender reloads it (2) and sends.
    tx.send(4).unwrap();
    // `head` forged back to 1: within a ring of the sender (at 5), but behind what it
    // read. A chunk of 4 reloads it and must refuse, not lend the unreleased slot.
    put(
        &name,
        seg_layout::SIZE as u64 + pair::HEAD as u64,
        &1u64.to_ne_bytes(),
    );
    assert!(matches!(tx.write_chunk(4), Err(Error::Corrupt { .. })));
}
