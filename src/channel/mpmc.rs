//! A bounded multi-producer multi-consumer queue of typed slots in shared memory.
//!
//! The algorithm is Dmitry Vyukov's bounded MPMC queue
//! (<https://www.1024cores.net/home/lock-free-algorithms/queues/bounded-mpmc-queue>), with
//! the position encoding of crossbeam-queue's `ArrayQueue`
//! (`crossbeam-queue/src/array_queue.rs`), made to survive the death of any process that
//! uses it.
//!
//! Any number of processes (or threads, one handle each) open [`Sender`]s and
//! [`Receiver`]s by name, up to [`MAX_ENDPOINTS`] of each at a time; each message goes to
//! exactly one receiver, and the messages of one sender arrive in order at each receiver.
//! `send` blocks while the queue is full, `recv` while it is empty (see [`WaitStrategy`]
//! for how); `try_` forms never block ([`Error::WouldBlock`]); `_timeout` forms give up
//! with [`Error::Timeout`]. Nothing allocates and no syscall is made on the hot path unless
//! a peer sleeps. A side whose peers never attached waits for them. `recv` returns
//! [`Error::Disconnected`] once every sender that attached is gone (closed or dead) and
//! the queue is drained; `send` returns it when the queue is full and every receiver is
//! gone. A sender killed between claiming a slot and publishing it does not stall anyone:
//! the slot is skipped once a blocked peer notices (within a sleep slice), and counted in
//! [`Receiver::lost`]. A receiver killed while it holds a message in a [`RecvGuard`] does
//! not stall the senders either: the slot is freed once a blocked sender notices, and that
//! message is lost (counted too; it is not delivered again, unlike in [`crate::spsc`]).
//!
//! Receiving: [`Receiver::recv`] (and `try_recv`, `recv_timeout`) copies the message out,
//! then releases the slot with a compare-and-swap of its stamp that also checks, seqlock
//! style, that the slot stayed ours during the copy: a torn message is never returned (if
//! the stamp changed meanwhile, which only tampered shared state can cause, it is
//! [`Error::Corrupt`]). Zero copies: [`Sender::loan`] lends the claimed slot to be written
//! in place, and [`Receiver::recv_ref`] (and `try_recv_ref`, `recv_ref_timeout`) returns a
//! guard that reads the slot in place and frees it on drop; the guard derefs into shared
//! memory that a misbehaving peer could write while it is viewed, so use it with
//! cooperating peers. [`Receiver::iter`] and [`Receiver::try_iter`] yield `Result<T>`:
//! they end when every sender is gone and the queue is drained (`iter`) or when nothing is
//! ready (`try_iter`), and end after yielding any other error (such as
//! [`Error::Corrupt`]).
//!
//! ```
//! use shmkit::mpmc;
//! # let name = format!("doc-mpmc-{}", std::process::id());
//! let mut tx = mpmc::Sender::<u64>::create(&name, 8)?;
//! let mut tx2 = mpmc::Sender::<u64>::open(&name)?; // usually in other processes
//! let mut rx = mpmc::Receiver::<u64>::open(&name)?;
//! let mut rx2 = mpmc::Receiver::<u64>::open(&name)?;
//! tx.send(1)?;
//! {
//!     let mut slot = tx2.loan()?; // write in place
//!     *slot = 2;
//!     slot.commit()?;
//! }
//! assert_eq!(*rx.recv_ref()?, 1); // read in place; the slot is freed when the guard drops
//! assert_eq!(rx2.recv()?, 2); // a copy
//! assert!(matches!(rx.try_recv(), Err(shmkit::Error::WouldBlock)));
//! drop((tx, tx2));
//! assert!(matches!(rx.recv(), Err(shmkit::Error::Disconnected)));
//! assert_eq!(rx.lost(), 0);
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! # Design
//! Positions are `u64`s: a lap number in the high bits and a slot index below it, as in
//! crossbeam: `one_lap` is `(capacity + 1).next_power_of_two()`, the position after index
//! `capacity - 1` of lap `l` is index 0 of lap `l + 1`, so any capacity works (1 and 1023
//! included) and `pos + 1` never looks like a position of that slot. `tail` is the next
//! position to claim for sending, `head` the next to claim for receiving; both only grow.
//!
//! The stamp of slot `i`, for a position `p` of that slot (`p & (one_lap - 1) == i`):
//!
//! | stamp           | `tail`, `head`          | meaning                                    |
//! |-----------------|-------------------------|--------------------------------------------|
//! | `p`             | `tail <= p`             | free, next to be written at `p`            |
//! | `p`             | `tail > p`, `head <= p` | claimed by a sender that has not published |
//! | `p + 1`         | `head <= p`             | message `p` published, not yet received    |
//! | `p + 1`         | `head > p`              | message `p` held by a receiver (a guard)   |
//! | `p + one_lap`   | `head > p`              | released: free for `p + one_lap`           |
//! | `p + one_lap`   | `head == p`             | skipped, `head` not yet moved past it      |
//!
//! Sending: load `tail`; if the stamp is `tail`, CAS `tail` to the next position, write,
//! then CAS the stamp `p → p + 1` (a CAS, not a store: see below). Receiving: load `head`;
//! if the stamp is `head + 1`, CAS `head` forward, read in place, and on release CAS the
//! stamp `p + 1 → p + one_lap`. A stamp one lap behind means full (sending) or empty
//! (receiving); a stamp ahead means our copy of `tail`/`head` is stale; anything else,
//! with the position unchanged, is [`Error::Corrupt`].
//!
//! # Dead peers
//! Each endpoint registers in a table in the header (one 128-byte line each): an
//! `EndpointSlot` with its liveness token, and its *pending* word:
//!
//! | pending   | meaning                                                              |
//! |-----------|----------------------------------------------------------------------|
//! | `IDLE`    | (`u64::MAX`) not claiming anything                                   |
//! | `p`       | about to CAS `tail`/`head` at `p`, or holding `p` after winning it:  |
//! |           | a sender until it publishes `p`, a receiver until it releases `p`    |
//! | stale `p` | after that; harmless, because every use checks the stamp of `p` first |
//!
//! The pending word is stored (Release) *before* the claiming CAS (Release), so whoever
//! reads `tail > p` (Acquire) also sees the claimer's pending word `p` or a later one,
//! which it writes only after publishing `p`. So a receiver blocked on position `p`
//! (stamp `p`, `tail > p`) asks, when its sleep slice runs out: does any endpoint with a
//! *live* process have pending `p`? If none does and one with a dead process does, the
//! claimer is dead: it CASes the stamp `p → p + one_lap` (as if received), moves `head`
//! past `p` (or leaves that to the receivers that get there), and counts the message
//! lost. The CAS races the claimer's publishing CAS, so exactly one wins; a live sender
//! whose publishing CAS fails anyway (only possible if it was taken for dead) sends again
//! at a new position. A sender blocked because the previous lap's message in its slot is
//! unpublished does the same skip; one blocked on a slot whose message `p` is held by a
//! receiver (stamp `p + 1`, `head > p`) asks the same of the receivers' table and CASes
//! `p + 1 → p + one_lap`. A new endpoint that takes over a dead one's registration settles
//! the dead one's pending claim first. A loser of a claiming CAS has pending `p` for a
//! moment too; that only delays the verdict. A claimed position that *nobody* has pending
//! cannot happen (the claimer's word stays until it publishes): it is [`Error::Corrupt`].
//!
//! Liveness is per handle: each endpoint's segment mapping holds its own liveness lock, so
//! a closed handle in a live process counts as gone. A loan or guard that is forgotten
//! (`mem::forget`) is given back by the endpoint's next call or its drop. Handles must not
//! be used in a child created by `fork`.
//!
//! Everything read from the segment is checked before use: positions' slot indices, stamps
//! against the positions, distances between `head` and `tail`, pending words. A bad value
//! is [`Error::Corrupt`]; every retry loop is bounded.

use crate::failpoint::failpoint;
use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::{
    ends_iter, ends_try_iter, recv_iter, wait_until, Check, EndpointSlot, Line, Poll, Signal,
    WaitStrategy,
};
use crate::error::{Error, Result};
use crate::primitive::{AtomicU64, Ordering};
use crate::segment::{CreationMode, Kind, Layout, Options, Segment};
use crate::sync::wait::Deadline;

pub use super::SendError;

/// The largest capacity (slots) a queue may have.
pub const MAX_CAPACITY: u64 = 1 << 32;

/// How many senders, and how many receivers, may be attached at a time.
pub const MAX_ENDPOINTS: usize = 64;

/// The pending word of an endpoint that claims nothing.
const IDLE: u64 = u64::MAX;
/// The most rounds one poll makes when positions move under it (lost CAS races, stale
/// copies); after that it reports "not now" and the caller's wait loop polls again.
const RETRIES: usize = 1024;
/// The most times one send starts over because its claimed slot was skipped.
const MAX_RESENDS: usize = 16;
/// How long a new endpoint waits for a dead predecessor's claim to be decided.
const SETTLE_PATIENCE: Duration = Duration::from_millis(200);

/// One endpoint's registration: its liveness slot and the position it claims.
#[derive(Debug)]
#[repr(C)]
struct Registration {
    end: EndpointSlot,
    /// [`IDLE`], or the position this endpoint is claiming or holds (see the module docs).
    pending: AtomicU64,
}

/// The queue header. Hot words each on their own 128-byte line.
#[repr(C)]
struct Header {
    /// The next position to claim for sending. Only grows (CAS).
    tail: Line<AtomicU64>,
    /// The next position to claim for receiving. Only grows (CAS).
    head: Line<AtomicU64>,
    /// Receivers sleep here when the queue is empty.
    data: Signal,
    /// Senders sleep here when the queue is full.
    space: Signal,
    /// Messages lost to dead endpoints: skipped claims and released holds.
    lost: Line<AtomicU64>,
    senders: [Line<Registration>; MAX_ENDPOINTS],
    receivers: [Line<Registration>; MAX_ENDPOINTS],
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Registration>() == 24);
#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Line<Registration>>() == 128);
#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Header>() == (5 + 2 * MAX_ENDPOINTS) * 128);
#[cfg(not(loom))]
const _: () = assert!(std::mem::align_of::<Header>() == 128);

impl Header {
    fn new() -> Header {
        let reg = || {
            Line(Registration {
                end: EndpointSlot::new(),
                pending: AtomicU64::new(IDLE),
            })
        };
        Header {
            tail: Line(AtomicU64::new(0)),
            head: Line(AtomicU64::new(0)),
            data: Signal::new(),
            space: Signal::new(),
            lost: Line(AtomicU64::new(0)),
            senders: std::array::from_fn(|_| reg()),
            receivers: std::array::from_fn(|_| reg()),
        }
    }
}

/// A slot: its stamp and its value, side by side.
#[repr(C)]
struct Slot<T> {
    stamp: AtomicU64,
    value: UnsafeCell<T>,
}

fn body_len<T>(cap: u64) -> Option<u64> {
    if cap == 0 || cap > MAX_CAPACITY {
        return None;
    }
    (std::mem::size_of::<Slot<T>>() as u64)
        .checked_mul(cap)?
        .checked_add(std::mem::size_of::<Header>() as u64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Send,
    Recv,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Send => Side::Recv,
            Side::Recv => Side::Send,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Side::Send => "sender",
            Side::Recv => "receiver",
        }
    }
}

/// Who holds a position, according to the pending words of one side's table.
#[derive(Debug, PartialEq, Eq)]
enum Holder {
    /// No registered endpoint has it pending.
    Nobody,
    /// An endpoint of a live process has it pending (it may be the claimer).
    Live,
    /// Only endpoints of dead processes have it pending.
    Dead,
}

/// Position arithmetic for a capacity (crossbeam's encoding: a lap number above the slot
/// index).
#[derive(Debug, Clone, Copy)]
struct Geometry {
    cap: u64,
    /// `(cap + 1).next_power_of_two()`: the distance between a slot's positions.
    one_lap: u64,
    /// `one_lap - 1`: the index bits of a position.
    mask: u64,
    /// `log2(one_lap)`.
    shift: u32,
}

/// The fields of an mpmc queue header in `body` (a snapshot read with plain reads; only
/// displayed), for `shmkit inspect`.
pub(crate) fn describe(
    body: &[u8],
    capacity: u64,
    alive: &dyn Fn(u32) -> bool,
) -> Vec<(String, String)> {
    use super::{u32_at, u64_at};
    let mut out = Vec::new();
    let tail = u64_at(body, std::mem::offset_of!(Header, tail));
    let head = u64_at(body, std::mem::offset_of!(Header, head));
    if let (Some(tail), Some(head)) = (tail, head) {
        let geo = Geometry::new(capacity.clamp(1, MAX_CAPACITY));
        out.push((
            "depth (claimed, not yet received)".to_owned(),
            geo.distance(head, tail)
                .map_or_else(|| "inconsistent positions".to_owned(), |d| d.to_string()),
        ));
    }
    if let Some(lost) = u64_at(body, std::mem::offset_of!(Header, lost)) {
        out.push(("lost to dead endpoints".to_owned(), lost.to_string()));
    }
    let line = std::mem::size_of::<Line<Registration>>();
    let end = std::mem::offset_of!(Registration, end);
    for (table, role) in [
        (std::mem::offset_of!(Header, senders), "senders"),
        (std::mem::offset_of!(Header, receivers), "receivers"),
    ] {
        let mut held = Vec::new();
        for i in 0..MAX_ENDPOINTS {
            let off = table + i * line + end;
            let token = u32_at(body, off + std::mem::offset_of!(EndpointSlot, token));
            if token.is_some_and(|t| t != 0) {
                held.push(super::describe_end(body, off, alive).unwrap_or_default());
            }
        }
        out.push((
            role.to_owned(),
            if held.is_empty() {
                "none attached".to_owned()
            } else {
                format!("{} attached: {}", held.len(), held.join("; "))
            },
        ));
    }
    out
}

impl Geometry {
    fn new(cap: u64) -> Geometry {
        let one_lap = (cap + 1).next_power_of_two();
        Geometry {
            cap,
            one_lap,
            mask: one_lap - 1,
            shift: one_lap.trailing_zeros(),
        }
    }

    /// The position after `pos`.
    #[inline]
    fn next(&self, pos: u64) -> u64 {
        if (pos & self.mask) + 1 < self.cap {
            pos.wrapping_add(1)
        } else {
            (pos & !self.mask).wrapping_add(self.one_lap)
        }
    }

    /// How many positions `to` is ahead of `from`; `None` if it is behind, more than two
    /// laps ahead, or either is not a position.
    fn distance(&self, from: u64, to: u64) -> Option<u64> {
        let (fi, ti) = (from & self.mask, to & self.mask);
        if fi >= self.cap || ti >= self.cap {
            return None;
        }
        let laps = (to & !self.mask).wrapping_sub(from & !self.mask) >> self.shift;
        if laps > 2 {
            return None;
        }
        (laps * self.cap + ti).checked_sub(fi)
    }

    /// Whether `cur` (a later reading of `tail` or `head`) has moved past `pos`. Legitimate
    /// distances are at most twice the capacity (skipped slots let `tail` run up to a lap
    /// ahead of a `head` that has not moved past them yet).
    fn passed(&self, pos: u64, cur: u64) -> bool {
        matches!(self.distance(pos, cur), Some(d) if d >= 1 && d <= 2 * self.cap)
    }
}

/// The mapped queue, shared by both endpoint types.
struct Ring<T> {
    seg: Segment,
    hdr: NonNull<Header>,
    slots: NonNull<Slot<T>>,
    geo: Geometry,
}

// SAFETY: the ring lives in shared memory accessed through atomics and through slots that
// the stamp protocol hands to one endpoint at a time; endpoints are used from one thread
// at a time (`&mut self`), and may move between threads.
unsafe impl<T: Send> Send for Ring<T> {}

impl<T: Pod> Ring<T> {
    fn new(name: &str, mode: CreationMode, capacity: usize, opts: &Options) -> Result<Self> {
        if std::mem::align_of::<T>() > 128 {
            return Err(Error::InvalidArgument(
                "channel elements aligned to more than 128 bytes are not supported".into(),
            ));
        }
        let cap = capacity as u64;
        if mode != CreationMode::Open && body_len::<T>(cap).is_none() {
            return Err(Error::InvalidArgument(format!(
                "capacity {capacity} must be between 1 and {MAX_CAPACITY} (and fit in memory)"
            )));
        }
        let layout = Layout {
            kind: Kind::Mpmc,
            elem_size: std::mem::size_of::<T>() as u64,
            elem_align: std::mem::align_of::<T>() as u64,
            capacity: cap,
            body_len: body_len::<T>,
        };
        let init = |seg: &Segment| {
            let base = seg.as_ptr();
            // SAFETY: the body is 128-aligned and large enough for the header and
            // `capacity` slots (the layout says so); nobody else sees it before it is
            // published.
            unsafe {
                (base as *mut Header).write(Header::new());
                let slots = base.add(std::mem::size_of::<Header>()) as *mut Slot<T>;
                for i in 0..seg.capacity() {
                    // Value bytes stay zero (a valid `T`); the stamp says "free for
                    // position i" (lap 0, index i).
                    std::ptr::addr_of_mut!((*slots.add(i as usize)).stamp).write(AtomicU64::new(i));
                }
            }
            Ok(())
        };
        let seg = Segment::named(name, mode, layout, opts, init)?;
        // Validated on open: `body_len(capacity)` matched, so 1 <= cap <= MAX_CAPACITY.
        let cap = seg.capacity();
        let base = seg.as_ptr();
        // SAFETY: validated: the body holds the header and `cap` slots.
        let slots = unsafe { base.add(std::mem::size_of::<Header>()) } as *mut Slot<T>;
        Ok(Ring {
            hdr: NonNull::new(base as *mut Header).expect("mapping is not null"),
            slots: NonNull::new(slots).expect("mapping is not null"),
            geo: Geometry::new(cap),
            seg,
        })
    }

    #[inline]
    fn hdr(&self) -> &Header {
        // SAFETY: the header is mapped, initialised by the creator, and all atomics.
        unsafe { self.hdr.as_ref() }
    }

    fn table(&self, side: Side) -> &[Line<Registration>; MAX_ENDPOINTS] {
        match side {
            Side::Send => &self.hdr().senders,
            Side::Recv => &self.hdr().receivers,
        }
    }

    #[inline]
    fn pending(&self, side: Side, reg: usize) -> &AtomicU64 {
        &self.table(side)[reg].0.pending
    }

    /// The slot of position `pos`, which came from shared memory: its index is checked.
    #[inline]
    fn slot(&self, pos: u64) -> Result<&Slot<T>> {
        let i = pos & self.geo.mask;
        if i >= self.geo.cap {
            return Err(Error::corrupt(format!(
                "mpmc position {pos:#x} has slot index {i}, past the capacity {}",
                self.geo.cap
            )));
        }
        // SAFETY: `i < cap`, so the slot is inside the mapping; its stamp is atomic and its
        // value is behind an UnsafeCell.
        Ok(unsafe { &*self.slots.as_ptr().add(i as usize) })
    }

    /// The slot of a position this endpoint claimed (checked when it was claimed, and kept
    /// in process-local memory since).
    #[inline]
    fn claimed_slot(&self, pos: u64) -> &Slot<T> {
        // `min` keeps even a broken invariant in bounds.
        let i = (pos & self.geo.mask).min(self.geo.cap - 1);
        // SAFETY: `i < cap`: inside the mapping, as in `slot`.
        unsafe { &*self.slots.as_ptr().add(i as usize) }
    }

    fn corrupt(&self, who: &str, pos: u64, stamp: u64) -> Error {
        Error::corrupt(format!(
            "mpmc slot for position {pos:#x} has stamp {stamp:#x}, impossible for the {who}"
        ))
    }

    fn corrupt_positions(&self, head: u64, tail: u64) -> Error {
        Error::corrupt(format!(
            "mpmc head {head:#x} and tail {tail:#x} are inconsistent with capacity {}",
            self.geo.cap
        ))
    }

    // -----------------------------------------------------------------------------------
    // The queue proper.

    /// One attempt to claim a free slot for sending (a few rounds when others win races).
    #[inline]
    fn poll_send(&self, reg: usize) -> Result<Poll<u64>> {
        let h = self.hdr();
        let pending = self.pending(Side::Send, reg);
        // Acquire: pairs with the Release of the claiming CAS that moved `tail` here (and,
        // through the release sequence, the earlier ones): whoever claimed this slot's
        // previous lap had seen it free, so the stamp we load next is no older than that
        // lap. With Relaxed, a stale stamp two laps behind would read as corruption (loom
        // finds it).
        let mut tail = h.tail.0.load(Ordering::Acquire);
        for _ in 0..RETRIES {
            let slot = self.slot(tail)?;
            // Acquire: pairs with the Release CAS that freed the slot (a receiver's
            // release, or a skip): the last reads of the old value are done before we
            // overwrite it.
            let stamp = slot.stamp.load(Ordering::Acquire);
            let prev = tail.wrapping_sub(self.geo.one_lap);
            if stamp == tail {
                // Free for `tail`. Say what we claim before claiming it. Release: pairs
                // with the Acquire loads in `holder`, through the CAS below.
                pending.store(tail, Ordering::Release);
                // AcqRel: Release publishes the pending word to whoever reads this tail or
                // a later one with Acquire (a recovering peer); Acquire orders our write
                // of the value after the claim.
                // Acquire on failure: as the load of `tail` above, for the value we retry.
                match h.tail.0.compare_exchange_weak(
                    tail,
                    self.geo.next(tail),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Ok(Poll::Ready(tail)),
                    Err(cur) => {
                        // Lost the race: we claim nothing. Release: as above.
                        pending.store(IDLE, Ordering::Release);
                        tail = cur;
                    }
                }
            } else if stamp == prev || stamp == prev.wrapping_add(1) {
                // The previous lap's message is still in the slot (being written, not yet
                // received, or held by a receiver): full.
                return Ok(Poll::Pending);
            } else {
                // Acquire: as above.
                let now = h.tail.0.load(Ordering::Acquire);
                if now == tail {
                    // A stamp ahead of a tail that has not moved: nobody wrote that.
                    return Err(self.corrupt("sender", tail, stamp));
                }
                tail = now; // our copy of tail was stale
            }
        }
        Ok(Poll::Pending)
    }

    /// Publishes the message written at `pos`; `false` if the slot was skipped meanwhile
    /// (we were taken for dead), so that the message must be sent again.
    #[inline]
    fn publish(&self, pos: u64) -> bool {
        // Release: publishes the value to the receivers' Acquire load of the stamp.
        // Relaxed on failure: we learn only that the slot is no longer ours.
        let ok = self
            .claimed_slot(pos)
            .stamp
            .compare_exchange(
                pos,
                pos.wrapping_add(1),
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok();
        if ok {
            self.hdr().data.notify();
        }
        ok
    }

    /// One attempt to claim a published message for receiving.
    #[inline]
    fn poll_recv(&self, reg: usize) -> Result<Poll<u64>> {
        let h = self.hdr();
        let pending = self.pending(Side::Recv, reg);
        // Acquire: pairs with the Release of the CAS that moved `head` here (a claim, or a
        // skip, which frees the slot before it moves `head`): the stamp we load next is
        // then no older than that. With Relaxed, a receiver could see `head` moved past a
        // skipped slot and the slot's stamp from before the skip, and report corruption
        // (found by the loom model of a sender killed after its claim).
        let mut head = h.head.0.load(Ordering::Acquire);
        for _ in 0..RETRIES {
            let slot = self.slot(head)?;
            // Acquire: pairs with the sender's Release CAS in `publish`: the value is
            // visible once we see its stamp.
            let stamp = slot.stamp.load(Ordering::Acquire);
            let ahead = head.wrapping_add(self.geo.one_lap);
            if stamp == head.wrapping_add(1) {
                // Published: claim it. Release (both): as in `poll_send`.
                pending.store(head, Ordering::Release);
                // AcqRel, and Acquire on failure: as in `poll_send`.
                match h.head.0.compare_exchange_weak(
                    head,
                    self.geo.next(head),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => return Ok(Poll::Ready(head)),
                    Err(cur) => {
                        pending.store(IDLE, Ordering::Release);
                        head = cur;
                    }
                }
            } else if stamp == head || stamp == head.wrapping_sub(self.geo.one_lap).wrapping_add(1)
            {
                // Not published yet (empty, or a sender is writing), or the previous lap's
                // message is still held there (then nothing was sent at `head` either).
                return Ok(Poll::Pending);
            } else if stamp == ahead
                || stamp == ahead.wrapping_add(1)
                || self.laps_ahead(head, stamp)
            {
                // Message `head` was received or skipped. If `head` still says so, it was a
                // skip whose skipper has not moved `head` yet (or died before it could):
                // move it. (A slot's stamp only grows, and only through each of its
                // positions in turn, so any later lap means `head`'s turn is over: slots
                // given back repeatedly while `head` waited further back can be several
                // laps ahead.) AcqRel/Acquire: as the claiming CAS.
                let next = self.geo.next(head);
                head = match h.head.0.compare_exchange_weak(
                    head,
                    next,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => next,
                    Err(cur) => cur,
                };
            } else {
                // Acquire: as above.
                let now = h.head.0.load(Ordering::Acquire);
                if now == head {
                    return Err(self.corrupt("receiver", head, stamp));
                }
                head = now; // our copy of head was stale
            }
        }
        Ok(Poll::Pending)
    }

    /// Frees the slot of the message at `pos` that we hold (a guard dropped, or a copy
    /// taken). `false` if the slot was no longer ours: a sender took us for dead and freed
    /// it already (or a peer forged its stamp), so a copy taken before may be torn.
    #[inline]
    fn release(&self, pos: u64) -> bool {
        // Release: our reads of the value are done before a sender may overwrite it
        // (pairs with its Acquire stamp load in `poll_send`). Relaxed on failure: we learn
        // only that the slot is no longer ours. Success also validates a copy (seqlock
        // style): the stamp is still `pos + 1`, and a sender writes the slot only after it
        // saw the stamp we store here, so nobody wrote it while we read.
        let ok = self
            .claimed_slot(pos)
            .stamp
            .compare_exchange(
                pos.wrapping_add(1),
                pos.wrapping_add(self.geo.one_lap),
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok();
        self.hdr().space.notify();
        ok
    }

    /// Whether `stamp` is a later lap of `head`'s slot (free or published for a position
    /// at least two laps on): `head`'s own turn at the slot is over.
    fn laps_ahead(&self, head: u64, stamp: u64) -> bool {
        // `stamp - head` is `k` laps (free for that position) or `k` laps and one
        // (published there), `k >= 2`; far ahead (a quarter of the counter) is corrupt.
        let d = stamp.wrapping_sub(head);
        d & self.geo.mask <= 1 && d >= 2 * self.geo.one_lap && d < 1 << 62
    }

    /// Marks the claimed, unpublished position `pos` as skipped, as if received, and moves
    /// `head` past it if it is there. `count`: a message lost to a dead sender (not a loan
    /// given back). `false` if the stamp was no longer `pos` (published or skipped).
    fn skip(&self, pos: u64, count: bool) -> bool {
        // AcqRel: Release, so that a sender that reuses the slot is ordered after us;
        // Acquire, to see the claimer's last writes (nothing is read, but it is cheap).
        // The CAS decides against the claimer's publishing CAS: exactly one wins.
        if self
            .claimed_slot(pos)
            .stamp
            .compare_exchange(
                pos,
                pos.wrapping_add(self.geo.one_lap),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return false;
        }
        let h = self.hdr();
        if count {
            // Relaxed: a statistic.
            h.lost.0.fetch_add(1, Ordering::Relaxed);
        }
        // AcqRel/Relaxed: as the receivers' claiming CAS. Fails harmlessly if `head` has
        // not reached `pos` yet (receivers move it past the skipped slot when they get
        // there) or has moved on.
        let _ =
            h.head
                .0
                .compare_exchange(pos, self.geo.next(pos), Ordering::AcqRel, Ordering::Relaxed);
        h.data.notify();
        h.space.notify();
        true
    }

    /// Frees the slot of message `pos`, held by a dead receiver. `false` if it was not held.
    fn free_held(&self, pos: u64) -> bool {
        // AcqRel: as in `skip`; decides against the holder's own release CAS.
        let ok = self
            .claimed_slot(pos)
            .stamp
            .compare_exchange(
                pos.wrapping_add(1),
                pos.wrapping_add(self.geo.one_lap),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok();
        if ok {
            // Relaxed: a statistic.
            self.hdr().lost.0.fetch_add(1, Ordering::Relaxed);
            self.hdr().space.notify();
        }
        ok
    }

    // -----------------------------------------------------------------------------------
    // Liveness and recovery (slow paths only).

    /// Who has `pos` pending on `side`, leaving out registration `exclude`.
    fn holder(&self, side: Side, pos: u64, exclude: Option<usize>) -> Result<Holder> {
        let mut dead = false;
        for (j, line) in self.table(side).iter().enumerate() {
            if exclude == Some(j) {
                continue;
            }
            let reg = &line.0;
            // Acquire: pairs with the AcqRel claim of the registration, so that the pending
            // word read next is this holder's (or a later holder's).
            let t1 = reg.end.token.load(Ordering::Acquire);
            if t1 == 0 {
                continue; // free: its last holder closed, after finishing its claims
            }
            // Acquire: pairs with the Release pending stores. A value later than `pos`
            // means the holder published (or released) `pos` before it wrote it, and that
            // is then visible to our later loads of the stamp.
            let p = reg.pending.load(Ordering::Acquire);
            if p != pos {
                if p != IDLE && (p & self.geo.mask) >= self.geo.cap {
                    return Err(Error::corrupt(format!(
                        "mpmc {} registration {j} has pending position {p:#x}",
                        side.name()
                    )));
                }
                continue;
            }
            // Acquire: as for `t1`. A changed token: somebody took the registration over
            // while we looked; count it as live (we decide nothing this round).
            let t2 = reg.end.token.load(Ordering::Acquire);
            if t2 != t1 || self.seg.is_alive(t1)? {
                return Ok(Holder::Live);
            }
            dead = true;
        }
        Ok(if dead { Holder::Dead } else { Holder::Nobody })
    }

    /// Skips the claimed, unpublished position `pos` if its sender is dead. `true` if the
    /// queue changed (skipped, or published meanwhile).
    fn skip_dead_claim(&self, pos: u64) -> Result<bool> {
        match self.holder(Side::Send, pos, None)? {
            Holder::Live => Ok(false),
            Holder::Dead => {
                self.skip(pos, true);
                Ok(true)
            }
            Holder::Nobody => {
                // The claimer's pending word moves on only after it publishes, so nobody
                // having `pos` pending means it was published while we looked.
                // Acquire: see `holder`.
                if self.slot(pos)?.stamp.load(Ordering::Acquire) != pos {
                    Ok(true)
                } else {
                    Err(Error::corrupt(format!(
                        "mpmc position {pos:#x} is claimed but no sender claims it"
                    )))
                }
            }
        }
    }

    /// Frees the slot of message `pos` if the receiver holding it is dead. `true` if the
    /// queue changed.
    fn free_dead_hold(&self, pos: u64) -> Result<bool> {
        match self.holder(Side::Recv, pos, None)? {
            Holder::Live => Ok(false),
            Holder::Dead => {
                self.free_held(pos);
                Ok(true)
            }
            Holder::Nobody => {
                // As in `skip_dead_claim`. Acquire: see `holder`.
                if self.slot(pos)?.stamp.load(Ordering::Acquire) != pos.wrapping_add(1) {
                    Ok(true)
                } else {
                    Err(Error::corrupt(format!(
                        "mpmc message {pos:#x} is held but no receiver holds it"
                    )))
                }
            }
        }
    }

    /// A receiver is stuck: if the message at `head` was claimed by a sender that died
    /// before publishing it, skip it. `true` if the queue changed.
    fn recover_recv(&self) -> Result<bool> {
        let h = self.hdr();
        // Acquire (all three): pair with the claiming CASes and the stamp CASes, so that
        // the claimers' pending words are visible to `holder`.
        let head = h.head.0.load(Ordering::Acquire);
        let stamp = self.slot(head)?.stamp.load(Ordering::Acquire);
        if stamp != head {
            return Ok(false); // published, or nothing to do with a dead sender
        }
        let tail = h.tail.0.load(Ordering::Acquire);
        match self.geo.distance(head, tail) {
            Some(0) => Ok(false), // empty
            Some(d) if d <= 2 * self.geo.cap => self.skip_dead_claim(head),
            _ => Err(self.corrupt_positions(head, tail)),
        }
    }

    /// A sender is stuck on a full slot: if its previous message was claimed by a sender
    /// that died before publishing, skip it; if it is held by a receiver that died, free
    /// it. `true` if the queue changed.
    fn recover_send(&self) -> Result<bool> {
        let h = self.hdr();
        // Acquire (all): as in `recover_recv`.
        let tail = h.tail.0.load(Ordering::Acquire);
        let stamp = self.slot(tail)?.stamp.load(Ordering::Acquire);
        let prev = tail.wrapping_sub(self.geo.one_lap);
        if stamp == prev {
            // Claimed one lap ago and never published (`tail` has passed it).
            self.skip_dead_claim(prev)
        } else if stamp == prev.wrapping_add(1) {
            let head = h.head.0.load(Ordering::Acquire);
            if self.geo.passed(prev, head) {
                self.free_dead_hold(prev) // received, not released
            } else if prev.wrapping_sub(head) < 1 << 62 {
                // Not received yet: plainly full. (`head` may be several laps behind: slots
                // given back while it waited, see `laps_ahead`; receivers move it on.)
                Ok(false)
            } else {
                Err(self.corrupt_positions(head, tail))
            }
        } else {
            Ok(false)
        }
    }

    /// Whether every endpoint of `side` that ever attached is gone, and one did.
    fn all_gone(&self, side: Side) -> Result<bool> {
        let mut ever = false;
        for line in self.table(side) {
            let end = &line.0.end;
            // Acquire: pairs with the Release store of `ever` after the token in
            // `EndpointSlot::claim`; loaded first, so a claim is never missed half-way.
            let was = end.ever.load(Ordering::Acquire) != 0;
            // Acquire: a cleared registration means its endpoint closed after its last
            // publication (pairs with the Release in `EndpointSlot::release`).
            let t = end.token.load(Ordering::Acquire);
            if t != 0 {
                if self.seg.is_alive(t)? {
                    return Ok(false);
                }
                ever = true;
            } else if was {
                ever = true;
            }
        }
        Ok(ever)
    }

    /// `all_gone` without asking the kernel: only cleanly closed endpoints count as gone.
    fn all_closed(&self, side: Side) -> bool {
        let mut ever = false;
        for line in self.table(side) {
            let end = &line.0.end;
            // Acquire (both), `ever` first: as in `all_gone`.
            let was = end.ever.load(Ordering::Acquire) != 0;
            if end.token.load(Ordering::Acquire) != 0 {
                return false;
            }
            ever |= was;
        }
        ever
    }

    /// Called by a blocked `side` when a sleep slice runs out: recover what dead peers left
    /// behind, then tell whether the other side is gone (`Ok(false)` after a recovery, so
    /// that the caller polls again first).
    fn stalled(&self, side: Side) -> Result<bool> {
        let changed = match side {
            Side::Send => self.recover_send()?,
            Side::Recv => self.recover_recv()?,
        };
        if changed {
            return Ok(false);
        }
        self.all_gone(side.other())
    }

    /// Decides what a dead (or closed) predecessor in registration `j` left pending, so
    /// that its evidence can be overwritten. `false` while that cannot be decided (a live
    /// endpoint has the same position pending).
    fn settle(&self, side: Side, j: usize, old: u64) -> Result<bool> {
        if old == IDLE || (old & self.geo.mask) >= self.geo.cap {
            return Ok(true);
        }
        let h = self.hdr();
        // Acquire (all): as in `recover_recv`.
        let stamp = self.slot(old)?.stamp.load(Ordering::Acquire);
        match side {
            Side::Send => {
                let tail = h.tail.0.load(Ordering::Acquire);
                if stamp != old || !self.geo.passed(old, tail) {
                    return Ok(true); // published, skipped, or never claimed
                }
                if self.holder(side, old, Some(j))? == Holder::Live {
                    return Ok(false);
                }
                // No live sender claims it, and the predecessor had it pending: it was
                // the claimer, and it is gone.
                self.skip(old, true);
            }
            Side::Recv => {
                let head = h.head.0.load(Ordering::Acquire);
                if stamp != old.wrapping_add(1) || !self.geo.passed(old, head) {
                    return Ok(true); // released, or never received
                }
                if self.holder(side, old, Some(j))? == Holder::Live {
                    return Ok(false);
                }
                self.free_held(old);
            }
        }
        Ok(true)
    }

    /// Takes a registration on `side`: a free one, or one whose process died (after
    /// settling what it left pending).
    fn register(&self, side: Side) -> Result<usize> {
        for (j, line) in self.table(side).iter().enumerate() {
            let reg = &line.0;
            // Acquire: as in `holder`.
            let t = reg.end.token.load(Ordering::Acquire);
            if t != 0 {
                if self.seg.is_alive(t)? {
                    continue;
                }
                // Acquire: as in `holder`.
                let old = reg.pending.load(Ordering::Acquire);
                if !self.settle(side, j, old)? {
                    continue; // cannot decide now: leave its evidence alone
                }
            }
            if !reg.end.claim(&self.seg)? {
                continue;
            }
            // Ours now. Whoever had it before is gone; settle what it left (again, if
            // another opener raced us to it), waiting a little for a live endpoint with
            // the same position pending to move on.
            // Acquire: the claim's AcqRel makes the predecessor's last writes visible.
            let old = reg.pending.load(Ordering::Acquire);
            let since = Instant::now();
            while !self.settle(side, j, old)? && since.elapsed() < SETTLE_PATIENCE {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Release: pairs with the Acquire loads in `holder`.
            reg.pending.store(IDLE, Ordering::Release);
            return Ok(j);
        }
        Err(Error::Busy {
            what: format!(
                "every {} registration ({MAX_ENDPOINTS}) of channel `{}`",
                side.name(),
                self.seg.name().unwrap_or("(anonymous)")
            ),
        })
    }

    fn unregister(&self, side: Side, reg: usize) {
        let h = self.hdr();
        self.table(side)[reg].0.end.release(&self.seg);
        // Wake the other side so that a blocked peer re-checks whether we were the last.
        match side {
            Side::Send => h.data.wake_all(),
            Side::Recv => h.space.wake_all(),
        }
    }

    /// Messages published and not yet received (a snapshot).
    fn len(&self) -> usize {
        let h = self.hdr();
        // Relaxed: a snapshot; nothing is read through it. Head first, so that the tail
        // read after it is not behind it.
        let head = h.head.0.load(Ordering::Relaxed);
        let tail = h.tail.0.load(Ordering::Relaxed);
        self.geo
            .distance(head, tail)
            .map_or(0, |d| d.min(self.geo.cap)) as usize
    }

    fn lost(&self) -> u64 {
        // Relaxed: a statistic.
        self.hdr().lost.0.load(Ordering::Relaxed)
    }
}

/// Rate-limits the kernel's liveness questions of non-blocking calls.
#[derive(Debug)]
struct Every {
    next: Option<Instant>,
}

impl Every {
    /// Whether 10 ms have passed since the last time this said so.
    fn due(&mut self) -> bool {
        if cfg!(loom) {
            return false; // the clock must not steer a loom model
        }
        let now = Instant::now();
        if self.next.is_some_and(|n| now < n) {
            return false;
        }
        self.next = Some(now + Duration::from_millis(10));
        true
    }
}

macro_rules! constructors {
    ($side:expr) => {
        /// Creates the queue `name` with `capacity` slots (any number from 1 to
        /// [`MAX_CAPACITY`]) and attaches this endpoint; fails if the name exists.
        pub fn create(name: &str, capacity: usize) -> Result<Self> {
            Self::with_options(name, CreationMode::Create, capacity, &Options::new())
        }

        /// Opens the existing queue `name` and attaches this endpoint.
        pub fn open(name: &str) -> Result<Self> {
            Self::with_options(name, CreationMode::Open, 1, &Options::new())
        }

        /// Opens the queue `name`, or creates it with `capacity` slots, and attaches this
        /// endpoint.
        pub fn open_or_create(name: &str, capacity: usize) -> Result<Self> {
            Self::with_options(name, CreationMode::OpenOrCreate, capacity, &Options::new())
        }

        /// Creates and/or opens as `mode` says, with `opts`, and attaches this endpoint.
        /// Fails with [`Error::Busy`] if [`MAX_ENDPOINTS`] live endpoints of this kind are
        /// attached already.
        pub fn with_options(
            name: &str,
            mode: CreationMode,
            capacity: usize,
            opts: &Options,
        ) -> Result<Self> {
            let ring = Ring::new(name, mode, capacity, opts)?;
            let reg = ring.register($side)?;
            Ok(Self::attach(ring, reg))
        }

        /// The waiting strategy of this endpoint (default [`WaitStrategy::Blocking`]).
        pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
            self.strategy = strategy;
        }

        /// The number of slots.
        pub fn capacity(&self) -> usize {
            self.ring.geo.cap as usize
        }

        /// Messages claimed by senders and not yet received (a snapshot).
        pub fn len(&self) -> usize {
            self.ring.len()
        }

        /// Whether no message is waiting (a snapshot).
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// How many messages were lost to dead endpoints since the queue was created:
        /// claimed by a sender that died before publishing, or held by a receiver that
        /// died before releasing.
        pub fn lost(&self) -> u64 {
            self.ring.lost()
        }

        /// The segment the queue lives in.
        pub fn segment(&self) -> &Segment {
            &self.ring.seg
        }
    };
}

// ---------------------------------------------------------------------------------------
// Sender

/// A producing end of an MPMC queue. See the [module docs](crate::mpmc).
pub struct Sender<T: Pod> {
    ring: Ring<T>,
    reg: usize,
    strategy: WaitStrategy,
    check: Every,
    /// A position lent by `loan` whose `Loan` was forgotten (never committed nor dropped).
    loaned: Option<u64>,
}

impl<T: Pod> Sender<T> {
    constructors!(Side::Send);

    fn attach(ring: Ring<T>, reg: usize) -> Self {
        Sender {
            ring,
            reg,
            strategy: WaitStrategy::Blocking,
            check: Every { next: None },
            loaned: None,
        }
    }

    /// Gives back the slot of a forgotten loan, so that receivers do not wait for it.
    #[cold]
    fn give_back_loan(&mut self, pos: u64) {
        self.ring.skip(pos, false);
    }

    /// Claims a free slot, waiting until `deadline`.
    #[inline]
    fn claim(&mut self, deadline: Deadline) -> Result<u64> {
        if let Some(pos) = self.loaned.take() {
            self.give_back_loan(pos);
        }
        if let Poll::Ready(pos) = self.ring.poll_send(self.reg)? {
            return Ok(pos);
        }
        let (ring, reg) = (&self.ring, self.reg);
        wait_until(
            &ring.hdr().space,
            self.strategy,
            deadline,
            || ring.poll_send(reg),
            |check| match check {
                Check::Cheap => Ok(ring.all_closed(Side::Recv)),
                Check::Full => ring.stalled(Side::Send),
            },
        )
    }

    /// Claims a free slot if there is one now.
    fn try_claim(&mut self) -> Result<u64> {
        if let Some(pos) = self.loaned.take() {
            self.give_back_loan(pos);
        }
        if let Poll::Ready(pos) = self.ring.poll_send(self.reg)? {
            return Ok(pos);
        }
        let gone = if self.check.due() {
            self.ring.stalled(Side::Send)?
        } else {
            self.ring.all_closed(Side::Recv)
        };
        match self.ring.poll_send(self.reg)? {
            Poll::Ready(pos) => Ok(pos),
            Poll::Pending if gone => Err(Error::Disconnected),
            Poll::Pending => Err(Error::WouldBlock),
        }
    }

    #[inline]
    fn send_with(
        &mut self,
        v: T,
        mut claim: impl FnMut(&mut Self) -> Result<u64>,
    ) -> std::result::Result<(), SendError<T>> {
        for _ in 0..MAX_RESENDS {
            let pos = match claim(self) {
                Ok(pos) => pos,
                Err(error) => return Err(SendError { value: v, error }),
            };
            failpoint!("mpmc.send.claimed");
            // SAFETY: we claimed `pos`: no receiver reads the slot until we publish it, and
            // no other sender writes it (it is not free for anyone else).
            unsafe { self.ring.claimed_slot(pos).value.get().write(v) };
            if self.ring.publish(pos) {
                return Ok(());
            }
            // Skipped under us (we were taken for dead): send again elsewhere.
        }
        Err(SendError {
            value: v,
            error: Error::corrupt("mpmc: every slot this sender claimed was skipped under it"),
        })
    }

    /// Sends `v`, blocking while the queue is full. [`Error::Disconnected`] if the queue is
    /// full and every receiver is gone.
    #[inline]
    pub fn send(&mut self, v: T) -> std::result::Result<(), SendError<T>> {
        self.send_with(v, |s| s.claim(Deadline::NEVER))
    }

    /// Sends `v` if there is room now; never blocks.
    pub fn try_send(&mut self, v: T) -> std::result::Result<(), SendError<T>> {
        self.send_with(v, |s| s.try_claim())
    }

    /// Sends `v`, waiting at most `timeout` for room.
    pub fn send_timeout(
        &mut self,
        v: T,
        timeout: Duration,
    ) -> std::result::Result<(), SendError<T>> {
        let deadline = Deadline::after(timeout);
        self.send_with(v, |s| s.claim(deadline))
    }

    /// Waits for a free slot, claims it and lends it out to be written in place;
    /// [`Loan::commit`] publishes it. Receivers wait at this position until it is
    /// committed or given back (a loan dropped without `commit` is skipped, not delivered),
    /// so do not hold a loan for long.
    pub fn loan(&mut self) -> Result<Loan<'_, T>> {
        let pos = self.claim(Deadline::NEVER)?;
        self.loaned = Some(pos);
        Ok(Loan {
            tx: self,
            pos,
            done: false,
            blocking: true,
        })
    }

    /// Lends a slot if one is free now; never blocks.
    pub fn try_loan(&mut self) -> Result<Loan<'_, T>> {
        let pos = self.try_claim()?;
        self.loaned = Some(pos);
        Ok(Loan {
            tx: self,
            pos,
            done: false,
            blocking: false,
        })
    }

    /// Whether every receiver is gone: some attached, and all closed or died.
    pub fn is_disconnected(&self) -> bool {
        self.ring.all_gone(Side::Recv).unwrap_or(true)
    }
}

impl<T: Pod> Drop for Sender<T> {
    fn drop(&mut self) {
        if let Some(pos) = self.loaned.take() {
            self.give_back_loan(pos);
        }
        self.ring.unregister(Side::Send, self.reg);
    }
}

impl<T: Pod> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpmc::Sender")
            .field("segment", &self.ring.seg)
            .field("capacity", &self.ring.geo.cap)
            .field("registration", &self.reg)
            .finish()
    }
}

/// A claimed slot lent by [`Sender::loan`]: derefs to the `T` in the queue.
#[must_use = "a loan dropped without `commit` is skipped, not delivered"]
pub struct Loan<'a, T: Pod> {
    tx: &'a mut Sender<T>,
    pos: u64,
    done: bool,
    /// Whether the loan came from the blocking `loan` (else from `try_loan`).
    blocking: bool,
}

impl<T: Pod> Loan<'_, T> {
    /// Publishes the slot. If the slot was skipped meanwhile (only possible if this process
    /// was taken for dead, that is, if the shared state was tampered with), its value is
    /// sent again at a new position, as the loan was taken: blocking after
    /// [`Sender::loan`], never blocking after [`Sender::try_loan`] (then
    /// [`Error::WouldBlock`] if there is no room); that send's error is returned.
    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        self.tx.loaned = None;
        if self.tx.ring.publish(self.pos) {
            return Ok(());
        }
        // SAFETY: in bounds (a claimed position); a volatile read of a Pod value, which
        // is valid whatever its bytes.
        let v = unsafe {
            crate::primitive::read_shared(self.tx.ring.claimed_slot(self.pos).value.get())
        };
        if self.blocking {
            self.tx.send(v).map_err(|e| e.error)
        } else {
            self.tx.try_send(v).map_err(|e| e.error)
        }
    }
}

impl<T: Pod> Drop for Loan<'_, T> {
    fn drop(&mut self) {
        if !self.done {
            self.tx.loaned = None;
            self.tx.give_back_loan(self.pos);
        }
    }
}

impl<T: Pod> Deref for Loan<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: we claimed the position and have not published it: nobody else reads or
        // writes the slot until we do.
        unsafe { &*self.tx.ring.claimed_slot(self.pos).value.get() }
    }
}

impl<T: Pod> DerefMut for Loan<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes the access unique.
        unsafe { &mut *self.tx.ring.claimed_slot(self.pos).value.get() }
    }
}

impl<T: Pod> fmt::Debug for Loan<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpmc::Loan")
            .field("position", &self.pos)
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// Receiver

/// A consuming end of an MPMC queue. See the [module docs](crate::mpmc).
pub struct Receiver<T: Pod> {
    ring: Ring<T>,
    reg: usize,
    strategy: WaitStrategy,
    check: Every,
    /// The position of the message a live guard views, or a forgotten guard viewed.
    held: Option<u64>,
}

impl<T: Pod> Receiver<T> {
    constructors!(Side::Recv);

    fn attach(ring: Ring<T>, reg: usize) -> Self {
        Receiver {
            ring,
            reg,
            strategy: WaitStrategy::Blocking,
            check: Every { next: None },
            held: None,
        }
    }

    /// Releases the message of a forgotten guard.
    #[inline]
    fn release_forgotten(&mut self) {
        if let Some(pos) = self.held.take() {
            let _ = self.ring.release(pos);
        }
    }

    /// Claims a published message, waiting until `deadline`.
    #[inline]
    fn claim(&mut self, deadline: Deadline) -> Result<u64> {
        self.release_forgotten();
        if let Poll::Ready(pos) = self.ring.poll_recv(self.reg)? {
            return Ok(pos);
        }
        let (ring, reg) = (&self.ring, self.reg);
        wait_until(
            &ring.hdr().data,
            self.strategy,
            deadline,
            || ring.poll_recv(reg),
            |check| match check {
                Check::Cheap => Ok(ring.all_closed(Side::Send)),
                Check::Full => ring.stalled(Side::Recv),
            },
        )
    }

    fn try_claim(&mut self) -> Result<u64> {
        self.release_forgotten();
        if let Poll::Ready(pos) = self.ring.poll_recv(self.reg)? {
            return Ok(pos);
        }
        let gone = if self.check.due() {
            self.ring.stalled(Side::Recv)?
        } else {
            self.ring.all_closed(Side::Send)
        };
        // One more look: a recovery may have unblocked us, or a sender published just
        // before it went.
        match self.ring.poll_recv(self.reg)? {
            Poll::Ready(pos) => Ok(pos),
            Poll::Pending if gone => Err(Error::Disconnected),
            Poll::Pending => Err(Error::WouldBlock),
        }
    }

    fn guard(&mut self, pos: u64) -> RecvGuard<'_, T> {
        self.held = Some(pos);
        failpoint!("mpmc.recv.claimed");
        RecvGuard { rx: self, pos }
    }

    /// Copies the claimed message at `pos` out and releases its slot, checking that the
    /// slot stayed ours during the copy.
    #[inline]
    fn take(&mut self, pos: u64) -> Result<T> {
        failpoint!("mpmc.recv.claimed");
        // SAFETY: in bounds (a claimed position); a volatile read of a Pod value, valid
        // whatever bytes a misbehaving peer put there.
        let v = unsafe { crate::primitive::read_shared(self.ring.claimed_slot(pos).value.get()) };
        if self.ring.release(pos) {
            Ok(v)
        } else {
            Err(Error::corrupt(format!(
                "mpmc message {pos:#x} was freed under its receiver while it was copied"
            )))
        }
    }

    /// Receives the next message as a copy, blocking while the queue is empty; the slot
    /// is free again when this returns. [`Error::Disconnected`] once every sender is gone
    /// and the queue is drained; [`Error::Corrupt`] if the slot did not stay ours during
    /// the copy (tampered shared state; the copy is dropped, never returned torn).
    #[inline]
    pub fn recv(&mut self) -> Result<T> {
        let pos = self.claim(Deadline::NEVER)?;
        self.take(pos)
    }

    /// Receives a copy if a message is ready; never blocks ([`Error::WouldBlock`] if
    /// empty).
    pub fn try_recv(&mut self) -> Result<T> {
        let pos = self.try_claim()?;
        self.take(pos)
    }

    /// Receives a copy, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T> {
        let pos = self.claim(Deadline::after(timeout))?;
        self.take(pos)
    }

    /// Receives the next message in place, blocking while the queue is empty; the guard
    /// reads the slot and frees it when dropped. Zero copies, for cooperating senders: the
    /// guard derefs into shared memory that a misbehaving peer could write meanwhile.
    #[inline]
    pub fn recv_ref(&mut self) -> Result<RecvGuard<'_, T>> {
        let pos = self.claim(Deadline::NEVER)?;
        Ok(self.guard(pos))
    }

    /// Receives in place if a message is ready; never blocks.
    pub fn try_recv_ref(&mut self) -> Result<RecvGuard<'_, T>> {
        let pos = self.try_claim()?;
        Ok(self.guard(pos))
    }

    /// Receives in place, waiting at most `timeout`.
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<RecvGuard<'_, T>> {
        let pos = self.claim(Deadline::after(timeout))?;
        Ok(self.guard(pos))
    }

    /// A blocking iterator of copies ([`Receiver::recv`]). It ends (`None`) when every
    /// sender is gone and the queue is drained; any other error (such as
    /// [`Error::Corrupt`]) is yielded once, and then it ends.
    pub fn iter(&mut self) -> impl std::iter::FusedIterator<Item = Result<T>> + '_ {
        recv_iter(move || self.recv(), ends_iter)
    }

    /// An iterator of copies of the messages ready now ([`Receiver::try_recv`]). It ends
    /// when none is ready (or every sender is gone and the queue is drained); any other
    /// error is yielded once, and then it ends.
    pub fn try_iter(&mut self) -> impl std::iter::FusedIterator<Item = Result<T>> + '_ {
        recv_iter(move || self.try_recv(), ends_try_iter)
    }

    /// Whether every sender is gone: some attached, and all closed or died.
    pub fn is_disconnected(&self) -> bool {
        self.ring.all_gone(Side::Send).unwrap_or(true)
    }
}

impl<T: Pod> Drop for Receiver<T> {
    fn drop(&mut self) {
        self.release_forgotten();
        self.ring.unregister(Side::Recv, self.reg);
    }
}

impl<T: Pod> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("mpmc::Receiver")
            .field("segment", &self.ring.seg)
            .field("capacity", &self.ring.geo.cap)
            .field("registration", &self.reg)
            .finish()
    }
}

/// A message received by [`Receiver::recv_ref`], read in place; the slot is freed when the
/// guard drops. For cooperating peers: it derefs into memory a sender could write.
#[must_use = "dropping the guard frees the slot at once"]
pub struct RecvGuard<'a, T: Pod> {
    rx: &'a mut Receiver<T>,
    pos: u64,
}

impl<T: Pod> Deref for RecvGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: we claimed the published message at `pos`; no sender touches the slot
        // until we release it (cooperating senders; see `recv_ref`).
        unsafe { &*self.rx.ring.claimed_slot(self.pos).value.get() }
    }
}

impl<T: Pod> Drop for RecvGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.rx.held = None;
        // A slot freed under us already is no concern of an in-place view.
        let _ = self.rx.ring.release(self.pos);
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RecvGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[allow(dead_code)]
fn _assert_send<T: Pod + Send>() {
    fn is_send<X: Send>(_: PhantomData<X>) {}
    is_send(PhantomData::<Sender<T>>);
    is_send(PhantomData::<Receiver<T>>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_step_through_every_slot_and_wrap_at_u64() {
        for cap in [1u64, 2, 3, 1023, 1024] {
            let g = Geometry::new(cap);
            // Start two laps before the u64 wrap point.
            let mut p = 0u64.wrapping_sub(2 * g.one_lap);
            for k in 0..(5 * cap) {
                assert!((p & g.mask) < cap);
                assert_eq!(g.distance(p, p), Some(0));
                let q = g.next(p);
                assert_eq!(g.distance(p, q), Some(1), "cap {cap} step {k} at {p:#x}");
                assert_eq!(g.distance(q, p), None);
                assert!(g.passed(p, q) && !g.passed(q, p));
                // A slot's published stamp is never one of its free stamps.
                assert_ne!(p.wrapping_add(1) & g.mask, p & g.mask);
                p = q;
            }
            // A full lap ahead is `cap` positions; garbage is no position.
            assert_eq!(g.distance(p, p.wrapping_add(g.one_lap)), Some(cap));
            assert_eq!(g.distance(p, u64::MAX), None);
            assert_eq!(g.distance(p, p.wrapping_add(3 * g.one_lap)), None);
        }
    }
}
