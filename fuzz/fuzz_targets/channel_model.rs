//! The three channels against a model: a sequence of operations chosen by the input
//! (sends, loans committed or dropped, chunk writes and reads, receives, endpoints dropped
//! and reopened) on an spsc ring, an mpmc queue and a frame ring in this process, each
//! checked against a `VecDeque` that says what must come out and when the channel is full
//! or empty. Positions can start anywhere, up to just below the `u64` wrap point.
//!
//! Capacity semantics, from the module docs and the designs:
//! - spsc: `capacity` messages; `try_send` fails when `capacity` are unreleased.
//! - mpmc: `capacity` slots. A loan dropped uncommitted is skipped: its position is used
//!   up, and its slot is free again for the next lap at once, so "full" means "the slot
//!   of the next position still holds a message of the previous lap".
//! - frames: a byte ring; a record takes `16 + len` rounded up to 16 bytes, a sender
//!   also needs the next record's 16-byte header free, and a record that does not fit
//!   before the end is preceded by a padding record to the end (published even when the
//!   record itself then does not fit).
//!
//! Every message carries a unique sequence number, so loss, duplication and reordering
//! all show as a mismatch with the model.

#![no_main]

use std::collections::VecDeque;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmkit::{frames, mpmc, spsc, CreationMode, Error, Options};
use shmkit_fuzz::{
    install_cleanup_hook, mpmc as mlayout, pair, poke64, unique_name, Mapping, NameGuard,
};

const SLOT: usize = shmkit_fuzz::SLOT_U64;
/// Endpoints of each side of the mpmc queue.
const ENDS: usize = 3;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Start {
    Zero,
    /// Just below the wrap point of the position counters.
    NearWrap(u8),
    Any(u64),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum SOp {
    Send,
    SendTimeout,
    Loan { commit: bool },
    WriteChunk { n: u8, commit: u8 },
    Recv,
    RecvTimeout,
    ReadChunk { n: u8, commit: u8 },
    DropTx,
    DropRx,
    OpenTx,
    OpenRx,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum MOp {
    Send(u8),
    SendTimeout(u8),
    Loan { who: u8, commit: bool },
    Recv(u8),
    RecvTimeout(u8),
    DropTx(u8),
    DropRx(u8),
    OpenTx(u8),
    OpenRx(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FOp {
    Send { len: u8 },
    SendTimeout { len: u8 },
    Loan { len: u8, commit: bool },
    Recv,
    RecvTimeout,
    DropTx,
    DropRx,
    OpenTx,
    OpenRx,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    S(SOp),
    M(MOp),
    F(FOp),
}

#[derive(Arbitrary, Debug)]
struct Input {
    spsc_cap: u8,
    mpmc_cap: u8,
    frames_cap: u8,
    spsc_start: Start,
    mpmc_start: Start,
    frames_start: Start,
    ops: Vec<Op>,
}

/// What an operation that finds the channel full (or empty) may say: `WouldBlock` (or
/// `Timeout` for a timed call) while the peer is there, `Disconnected` once it is gone.
fn check_blocked(e: &Error, timed: bool, peer_gone: bool, what: &str) {
    let ok = match e {
        Error::WouldBlock => !timed && !peer_gone,
        Error::Timeout => timed,
        Error::Disconnected => peer_gone,
        _ => false,
    };
    assert!(
        ok,
        "{what}: unexpected {e:?} (timed {timed}, peer gone {peer_gone})"
    );
}

// ---------------------------------------------------------------------------------------
// spsc

struct SpscModel {
    name: String,
    cap: usize,
    tx: Option<spsc::Sender<u64>>,
    rx: Option<spsc::Receiver<u64>>,
    q: VecDeque<u64>,
}

impl SpscModel {
    fn new(cap: usize, start: u64) -> (SpscModel, NameGuard) {
        let name = unique_name("mspsc");
        let guard = NameGuard::new(&name);
        let opts = Options::new().keep(true);
        let rx0 = spsc::Receiver::<u64>::with_options(&name, CreationMode::Create, cap, &opts)
            .expect("create spsc");
        {
            // An empty ring at `start`: both positions there, every slot stamped with the
            // previous lap's message (published and released: `pos + 1 - cap` for its next
            // position `pos`). The creator's receiver is dropped before anyone resumes from
            // it.
            let map = Mapping::open(&name).expect("map spsc");
            let (body, len) = map.body();
            assert!(len >= pair::SIZE + cap * SLOT);
            // SAFETY: inside our own mapping (length checked), 8-aligned words; no handle
            // uses the ring while we write.
            unsafe {
                poke64(body, pair::TAIL, start);
                poke64(body, pair::HEAD, start);
                for p in 0..cap as u64 {
                    let pos = start.wrapping_add(p);
                    let slot = (pos & (cap as u64 - 1)) as usize;
                    let stamp = pos.wrapping_add(1).wrapping_sub(cap as u64);
                    poke64(body, pair::SIZE + slot * SLOT, stamp);
                }
            }
        }
        drop(rx0);
        let tx = spsc::Sender::open(&name).expect("open spsc sender");
        let rx = spsc::Receiver::open(&name).expect("open spsc receiver");
        let m = SpscModel {
            name,
            cap,
            tx: Some(tx),
            rx: Some(rx),
            q: VecDeque::new(),
        };
        (m, guard)
    }

    fn check_len(&self, at: &str) {
        let want = self.q.len();
        if let Some(tx) = &self.tx {
            assert_eq!(tx.len(), want, "spsc sender len after {at}");
        }
        if let Some(rx) = &self.rx {
            assert_eq!(rx.len(), want, "spsc receiver len after {at}");
        }
    }

    fn op(&mut self, op: SOp, seq: &mut u64) {
        let full = self.q.len() >= self.cap;
        let rx_gone = self.rx.is_none();
        let tx_gone = self.tx.is_none();
        match op {
            SOp::Send | SOp::SendTimeout => {
                let Some(tx) = &mut self.tx else { return };
                let v = next(seq);
                let timed = matches!(op, SOp::SendTimeout);
                let r = if timed {
                    tx.send_timeout(v, Duration::ZERO)
                } else {
                    tx.try_send(v)
                };
                match r {
                    Ok(()) => {
                        assert!(
                            !full,
                            "spsc accepted a message beyond its capacity {}",
                            self.cap
                        );
                        self.q.push_back(v);
                    }
                    Err(e) => {
                        assert!(full, "spsc refused a send with room: {:?}", e.error);
                        assert_eq!(e.value, v);
                        check_blocked(&e.error, timed, rx_gone, "spsc send");
                    }
                }
            }
            SOp::Loan { commit } => {
                let Some(tx) = &mut self.tx else { return };
                match tx.try_loan() {
                    Ok(mut l) => {
                        assert!(!full, "spsc lent a slot beyond its capacity");
                        let v = next(seq);
                        *l = v;
                        if commit {
                            l.commit().expect("a loan's commit never fails here");
                            self.q.push_back(v);
                        }
                    }
                    Err(e) => {
                        assert!(full, "spsc refused a loan with room: {e:?}");
                        check_blocked(&e, false, rx_gone, "spsc loan");
                    }
                }
            }
            SOp::WriteChunk { n, commit } => {
                // `write_chunk` waits while the ring is full: only when the model has room.
                if full {
                    return;
                }
                let Some(tx) = &mut self.tx else { return };
                let free = self.cap - self.q.len();
                let mut c = tx
                    .write_chunk(usize::from(n))
                    .expect("spsc write_chunk with room");
                let want = usize::from(n).clamp(1, free);
                assert_eq!(c.len(), want, "spsc write_chunk({n}) with {free} free");
                let first = *seq;
                let k = c.fill_from((0..).map(|i| first + i));
                assert_eq!(k, want);
                *seq += k as u64;
                let published = usize::from(commit).min(k);
                c.commit(usize::from(commit));
                for i in 0..published as u64 {
                    self.q.push_back(first + i);
                }
            }
            SOp::Recv | SOp::RecvTimeout => {
                let Some(rx) = &mut self.rx else { return };
                let timed = matches!(op, SOp::RecvTimeout);
                let r = if timed {
                    rx.recv_timeout(Duration::ZERO)
                } else {
                    rx.try_recv()
                };
                match (r, self.q.front()) {
                    (Ok(v), Some(&want)) => {
                        assert_eq!(v, want, "spsc delivered out of order");
                        self.q.pop_front();
                    }
                    (Ok(v), None) => panic!("spsc delivered {v} from an empty ring"),
                    (Err(e), Some(want)) => panic!("spsc receive failed with {want} ready: {e:?}"),
                    (Err(e), None) => check_blocked(&e, timed, tx_gone, "spsc receive"),
                }
            }
            SOp::ReadChunk { n, commit } => {
                // `read_chunk` waits while the ring is empty: only when the model has some.
                if self.q.is_empty() {
                    return;
                }
                let Some(rx) = &mut self.rx else { return };
                let c = rx
                    .read_chunk(usize::from(n))
                    .expect("spsc read_chunk with messages");
                let want = usize::from(n).clamp(1, self.q.len());
                assert_eq!(
                    c.len(),
                    want,
                    "spsc read_chunk({n}) with {} ready",
                    self.q.len()
                );
                for i in 0..c.len() {
                    assert_eq!(c.get(i).copied(), Some(self.q[i]), "spsc chunk message {i}");
                }
                let released = usize::from(commit).min(c.len());
                c.commit(usize::from(commit));
                self.q.drain(..released);
            }
            SOp::DropTx => self.tx = None,
            SOp::DropRx => self.rx = None,
            SOp::OpenTx => {
                if self.tx.is_none() {
                    self.tx = Some(spsc::Sender::open(&self.name).expect("reopen spsc sender"));
                }
            }
            SOp::OpenRx => {
                if self.rx.is_none() {
                    self.rx = Some(spsc::Receiver::open(&self.name).expect("reopen spsc receiver"));
                }
            }
        }
        self.check_len(&format!("{op:?}"));
    }
}

// ---------------------------------------------------------------------------------------
// mpmc

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Msg(u64),
    /// A position given back by a dropped loan.
    Skipped,
}

struct MpmcModel {
    name: String,
    cap: usize,
    tx: [Option<mpmc::Sender<u64>>; ENDS],
    rx: [Option<mpmc::Receiver<u64>>; ENDS],
    /// Positions from `head` to `tail`, oldest first.
    q: VecDeque<Entry>,
    _map: Mapping,
}

impl MpmcModel {
    fn new(cap: usize, start_lap: u64) -> (MpmcModel, NameGuard) {
        let name = unique_name("mmpmc");
        let guard = NameGuard::new(&name);
        let opts = Options::new().keep(true);
        let rx0 = mpmc::Receiver::<u64>::with_options(&name, CreationMode::Create, cap, &opts)
            .expect("create mpmc");
        let tx0 = mpmc::Sender::<u64>::open(&name).expect("open mpmc sender");
        let map = Mapping::open(&name).expect("map mpmc");
        let (body, len) = map.body();
        assert!(len >= mlayout::SIZE + cap * SLOT);
        let one_lap = mlayout::one_lap(cap as u64);
        let start = start_lap.wrapping_mul(one_lap);
        // SAFETY: inside our own mapping (length checked), 8-aligned words; nothing is
        // claimed, so no handle holds a position while we move them all.
        unsafe {
            poke64(body, mlayout::TAIL, start);
            poke64(body, mlayout::HEAD, start);
            for i in 0..cap {
                poke64(body, mlayout::SIZE + i * SLOT, start.wrapping_add(i as u64));
            }
        }
        let m = MpmcModel {
            name,
            cap,
            tx: [Some(tx0), None, None],
            rx: [Some(rx0), None, None],
            q: VecDeque::new(),
            _map: map,
        };
        (m, guard)
    }

    /// Whether the slot of the next position is free: its previous-lap position was
    /// received, or skipped.
    fn has_room(&self) -> bool {
        let n = self.q.len();
        n < self.cap || self.q[n - self.cap] == Entry::Skipped
    }

    fn senders_gone(&self) -> bool {
        self.tx.iter().all(Option::is_none)
    }

    fn receivers_gone(&self) -> bool {
        self.rx.iter().all(Option::is_none)
    }

    fn check(&self, at: &str) {
        let want = self.q.len().min(self.cap);
        for tx in self.tx.iter().flatten() {
            assert_eq!(tx.len(), want, "mpmc len after {at}: model {:?}", self.q);
            assert_eq!(tx.lost(), 0, "mpmc lost messages with every endpoint alive");
        }
        for rx in self.rx.iter().flatten() {
            assert_eq!(rx.len(), want, "mpmc len after {at}: model {:?}", self.q);
        }
    }

    fn op(&mut self, op: MOp, seq: &mut u64) {
        let i = |w: u8| usize::from(w) % ENDS;
        let room = self.has_room();
        let rx_gone = self.receivers_gone();
        match op {
            MOp::Send(w) | MOp::SendTimeout(w) => {
                let timed = matches!(op, MOp::SendTimeout(_));
                let Some(tx) = &mut self.tx[i(w)] else { return };
                let v = next(seq);
                let r = if timed {
                    tx.send_timeout(v, Duration::ZERO)
                } else {
                    tx.try_send(v)
                };
                match r {
                    Ok(()) => {
                        assert!(room, "mpmc accepted a message while full: {:?}", self.q);
                        self.q.push_back(Entry::Msg(v));
                    }
                    Err(e) => {
                        assert!(
                            !room,
                            "mpmc refused a send with room: {:?} {:?}",
                            e.error, self.q
                        );
                        check_blocked(&e.error, timed, rx_gone, "mpmc send");
                    }
                }
            }
            MOp::Loan { who, commit } => {
                let Some(tx) = &mut self.tx[i(who)] else {
                    return;
                };
                match tx.try_loan() {
                    Ok(mut l) => {
                        assert!(room, "mpmc lent a slot while full: {:?}", self.q);
                        let v = next(seq);
                        *l = v;
                        if commit {
                            l.commit().expect("mpmc commit of a fresh loan");
                            self.q.push_back(Entry::Msg(v));
                        } else {
                            drop(l);
                            // Given back: skipped, and `head` moves past it at once if it
                            // was there.
                            if self.q.is_empty() {
                                // (nothing: the position is gone)
                            } else {
                                self.q.push_back(Entry::Skipped);
                            }
                        }
                    }
                    Err(e) => {
                        assert!(!room, "mpmc refused a loan with room: {e:?} {:?}", self.q);
                        check_blocked(&e, false, rx_gone, "mpmc loan");
                    }
                }
            }
            MOp::Recv(w) | MOp::RecvTimeout(w) => {
                let timed = matches!(op, MOp::RecvTimeout(_));
                let tx_gone = self.senders_gone();
                let Some(rx) = &mut self.rx[i(w)] else { return };
                let r = if timed {
                    rx.recv_timeout(Duration::ZERO)
                } else {
                    rx.try_recv()
                };
                // A receiver passes skipped positions.
                while self.q.front() == Some(&Entry::Skipped) {
                    self.q.pop_front();
                }
                match (r, self.q.front()) {
                    (Ok(v), Some(&Entry::Msg(want))) => {
                        assert_eq!(v, want, "mpmc delivered out of order");
                        self.q.pop_front();
                    }
                    (Ok(v), _) => panic!("mpmc delivered {v} from an empty queue"),
                    (Err(e), Some(want)) => {
                        panic!("mpmc receive failed with {want:?} ready: {e:?}")
                    }
                    (Err(e), None) => check_blocked(&e, timed, tx_gone, "mpmc receive"),
                }
            }
            MOp::DropTx(w) => self.tx[i(w)] = None,
            MOp::DropRx(w) => self.rx[i(w)] = None,
            MOp::OpenTx(w) => {
                if self.tx[i(w)].is_none() {
                    self.tx[i(w)] = Some(mpmc::Sender::open(&self.name).expect("open mpmc sender"));
                }
            }
            MOp::OpenRx(w) => {
                if self.rx[i(w)].is_none() {
                    self.rx[i(w)] =
                        Some(mpmc::Receiver::open(&self.name).expect("open mpmc receiver"));
                }
            }
        }
        self.check(&format!("{op:?}"));
    }
}

// ---------------------------------------------------------------------------------------
// frames

#[derive(Debug)]
enum Rec {
    Pad(u64),
    Msg(Vec<u8>),
}

struct FramesModel {
    name: String,
    cap: u64,
    tx: Option<frames::Sender>,
    rx: Option<frames::Receiver>,
    /// The sender's byte position and the receiver's.
    tx_pos: u64,
    head: u64,
    q: VecDeque<Rec>,
}

fn record_size(len: u64) -> u64 {
    16 + len.next_multiple_of(16)
}

fn payload(len: usize, seq: u64) -> Vec<u8> {
    let mut b: Vec<u8> = (0..len)
        .map(|i| (seq as u8).wrapping_add(i as u8))
        .collect();
    let tag = seq.to_ne_bytes();
    let k = len.min(8);
    b[..k].copy_from_slice(&tag[..k]);
    b
}

impl FramesModel {
    fn new(cap: u64, start: u64) -> (FramesModel, NameGuard) {
        let name = unique_name("mframes");
        let guard = NameGuard::new(&name);
        let opts = Options::new().keep(true);
        let rx0 = frames::Receiver::with_options(&name, CreationMode::Create, cap as usize, &opts)
            .expect("create frames");
        let start = start & !15;
        {
            let map = Mapping::open(&name).expect("map frames");
            let (body, len) = map.body();
            assert!(len >= pair::SIZE + cap as usize);
            // SAFETY: inside our own mapping, 8-aligned words; no handle uses the ring
            // while we write. The ring's bytes are zero: no stamp says "published".
            unsafe {
                poke64(body, pair::TAIL, start);
                poke64(body, pair::HEAD, start);
            }
        }
        drop(rx0);
        let tx = frames::Sender::open(&name).expect("open frames sender");
        let rx = frames::Receiver::open(&name).expect("open frames receiver");
        let m = FramesModel {
            name,
            cap,
            tx: Some(tx),
            rx: Some(rx),
            tx_pos: start,
            head: start,
            q: VecDeque::new(),
        };
        (m, guard)
    }

    fn free(&self) -> u64 {
        self.cap - self.tx_pos.wrapping_sub(self.head)
    }

    /// What the model says a non-blocking reservation of `len` bytes does: `Ok(size)` with
    /// the padding (if any) already pushed, or `Err(())` when there is no room (padding
    /// may have been pushed even then).
    fn reserve(&mut self, len: u64) -> Result<u64, ()> {
        let size = record_size(len);
        let room = self.cap - (self.tx_pos & (self.cap - 1));
        if size > room {
            if self.free() < room + 16 {
                return Err(());
            }
            self.q.push_back(Rec::Pad(room));
            self.tx_pos = self.tx_pos.wrapping_add(room);
        }
        if self.free() < size + 16 {
            return Err(());
        }
        Ok(size)
    }

    fn check_len(&self, at: &str) {
        let want = self.tx_pos.wrapping_sub(self.head).min(self.cap) as usize;
        if let Some(tx) = &self.tx {
            assert_eq!(tx.len(), want, "frames sender len after {at}");
        }
        if let Some(rx) = &self.rx {
            assert_eq!(rx.len(), want, "frames receiver len after {at}");
        }
    }

    fn op(&mut self, op: FOp, seq: &mut u64) {
        let max = self.cap - 32;
        let rx_gone = self.rx.is_none();
        let tx_gone = self.tx.is_none();
        match op {
            FOp::Send { len } | FOp::SendTimeout { len } | FOp::Loan { len, .. } => {
                if self.tx.is_none() {
                    return;
                }
                let len = u64::from(len);
                let v = next(seq);
                let bytes = payload(len as usize, v);
                let timed = matches!(op, FOp::SendTimeout { .. });
                let tx = self.tx.as_mut().expect("checked");
                let r = match op {
                    FOp::Loan { commit, .. } => tx.try_loan(len as usize).map(|mut l| {
                        l.copy_from_slice(&bytes);
                        if commit {
                            l.commit().expect("a loan's commit never fails here");
                        }
                        commit
                    }),
                    FOp::SendTimeout { .. } => {
                        tx.send_timeout(&bytes, Duration::ZERO).map(|()| true)
                    }
                    _ => tx.try_send(&bytes).map(|()| true),
                };
                if len > max {
                    assert!(
                        matches!(r, Err(Error::InvalidArgument(_))),
                        "frames: a {len}-byte frame in a {}-byte ring: {r:?}",
                        self.cap
                    );
                    return;
                }
                let want = self.reserve(len);
                match (r, want) {
                    (Ok(published), Ok(size)) => {
                        if published {
                            self.q.push_back(Rec::Msg(bytes));
                            self.tx_pos = self.tx_pos.wrapping_add(size);
                        }
                    }
                    (Ok(_), Err(())) => panic!("frames accepted {len} bytes without room"),
                    (Err(e), Ok(_)) => panic!("frames refused {len} bytes with room: {e:?}"),
                    (Err(e), Err(())) => check_blocked(&e, timed, rx_gone, "frames send"),
                }
            }
            FOp::Recv | FOp::RecvTimeout => {
                let Some(rx) = &mut self.rx else { return };
                let timed = matches!(op, FOp::RecvTimeout);
                let r = if timed {
                    rx.recv_ref_timeout(Duration::ZERO).map(|f| {
                        let w = f.as_slice::<u64>().map(|s| s.len());
                        (f.to_vec(), w)
                    })
                } else {
                    rx.try_recv_ref().map(|f| {
                        let w = f.as_slice::<u64>().map(|s| s.len());
                        (f.to_vec(), w)
                    })
                };
                // The receiver consumes a padding record whenever it polls past one.
                if let Some(Rec::Pad(n)) = self.q.front() {
                    self.head = self.head.wrapping_add(*n);
                    self.q.pop_front();
                }
                match (r, self.q.front()) {
                    (Ok((got, words)), Some(Rec::Msg(want))) => {
                        assert_eq!(&got, want, "frames delivered the wrong bytes");
                        if got.len().is_multiple_of(8) {
                            assert_eq!(words.ok(), Some(got.len() / 8), "frames as_slice::<u64>");
                        } else {
                            assert!(words.is_err(), "frames as_slice of {} bytes", got.len());
                        }
                        self.head = self.head.wrapping_add(record_size(got.len() as u64));
                        self.q.pop_front();
                    }
                    (Ok((got, _)), _) => {
                        panic!("frames delivered {} bytes from nothing", got.len())
                    }
                    (Err(e), Some(r)) => panic!("frames receive failed with {r:?} ready: {e:?}"),
                    (Err(e), None) => check_blocked(&e, timed, tx_gone, "frames receive"),
                }
            }
            FOp::DropTx => self.tx = None,
            FOp::DropRx => self.rx = None,
            FOp::OpenTx => {
                if self.tx.is_none() {
                    self.tx = Some(frames::Sender::open(&self.name).expect("reopen frames sender"));
                }
            }
            FOp::OpenRx => {
                if self.rx.is_none() {
                    self.rx =
                        Some(frames::Receiver::open(&self.name).expect("reopen frames receiver"));
                }
            }
        }
        self.check_len(&format!("{op:?}"));
    }
}

fn next(seq: &mut u64) -> u64 {
    *seq += 1;
    *seq
}

fuzz_target!(|input: Input| {
    install_cleanup_hook();
    let pos = |s: Start, top: u64| match s {
        Start::Zero => 0,
        Start::NearWrap(k) => top.wrapping_sub(u64::from(k % 8)),
        Start::Any(v) => v,
    };
    let mut seq = 0u64;
    let mut s: Option<(SpscModel, NameGuard)> = None;
    let mut m: Option<(MpmcModel, NameGuard)> = None;
    let mut f: Option<(FramesModel, NameGuard)> = None;
    for op in input.ops.iter().take(256) {
        match *op {
            Op::S(o) => {
                let (model, _) = s.get_or_insert_with(|| {
                    let cap = 2usize << (input.spsc_cap % 4);
                    SpscModel::new(cap, pos(input.spsc_start, u64::MAX))
                });
                model.op(o, &mut seq);
            }
            Op::M(o) => {
                let (model, _) = m.get_or_insert_with(|| {
                    let cap = usize::from(input.mpmc_cap % 8) + 1;
                    let laps = u64::MAX >> mlayout::one_lap(cap as u64).trailing_zeros();
                    MpmcModel::new(cap, pos(input.mpmc_start, laps))
                });
                model.op(o, &mut seq);
            }
            Op::F(o) => {
                let (model, _) = f.get_or_insert_with(|| {
                    let cap = 64u64 << (input.frames_cap % 4);
                    FramesModel::new(cap, pos(input.frames_start, u64::MAX - 15))
                });
                model.op(o, &mut seq);
            }
        }
    }
    // Is anything still in the channels handed out, in order, once?
    if let Some((model, _)) = &mut s {
        for _ in 0..=model.cap {
            model.op(SOp::OpenRx, &mut seq);
            model.op(SOp::Recv, &mut seq);
        }
        assert!(model.q.is_empty(), "spsc kept {:?}", model.q);
    }
    if let Some((model, _)) = &mut m {
        model.op(MOp::OpenRx(0), &mut seq);
        for _ in 0..=2 * model.cap {
            model.op(MOp::Recv(0), &mut seq);
        }
        assert!(
            model.q.iter().all(|e| *e == Entry::Skipped),
            "mpmc kept {:?}",
            model.q
        );
    }
    if let Some((model, _)) = &mut f {
        model.op(FOp::OpenRx, &mut seq);
        for _ in 0..model.cap / 16 {
            model.op(FOp::Recv, &mut seq);
        }
        assert!(model.q.is_empty(), "frames kept {:?}", model.q);
    }
});
