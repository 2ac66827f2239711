//! The ring proper: the shared layout (header, registrations, slots), the position
//! arithmetic ([`Geometry`]), and the lock-free Vyukov queue on it: claiming a slot to send
//! (`poll_send`), publishing it, claiming a message to receive (`poll_recv`) and releasing
//! it. See the [module docs](super) for the protocol and the stamp table.
//!
//! What lives here may touch the header's `tail`, `head` and signals, a slot's stamp and
//! value, and the caller's own pending word; it never judges liveness. Recovering from dead
//! endpoints (and registering them) is in `recovery`; the public endpoints in `endpoints`.

use bytemuck::Pod;

use super::super::typed::{self, Shape, Slot};
use super::super::{EndpointSlot, Line, Poll, Signal};
use super::spans::Attempts;
use super::{MAX_CAPACITY, MAX_ENDPOINTS};
use crate::error::{Error, Result};
use crate::object::{At, Head};
use crate::os::failpoint::failpoint;
use crate::primitive::{fence, AtomicU64, Ordering};
use crate::segment::Kind;

/// The pending word of an endpoint that claims nothing.
pub(in crate::channel) const IDLE: u64 = u64::MAX;
/// The most rounds one poll makes when positions move under it (lost CAS races, stale
/// copies); after that it reports "not now" and the caller's wait loop polls again.
const RETRIES: usize = 1024;

/// One endpoint's registration: its liveness slot and the position it claims.
#[derive(Debug)]
#[repr(C)]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
pub(in crate::channel) struct Registration {
    pub(in crate::channel) end: EndpointSlot,
    /// [`IDLE`], or the position this endpoint is claiming or holds (see the module docs).
    pub(in crate::channel) pending: AtomicU64,
}

/// `tail`'s line: the position, and whose turn it is to claim next.
#[derive(Debug)]
#[repr(C)]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
pub(in crate::channel) struct Tail {
    /// The next position to claim for sending. Only grows (CAS).
    pub(in crate::channel) pos: AtomicU64,
    /// In a queue of multi-slot messages: 0, or, while sender registration `j` waits to
    /// claim a message of several slots (which needs them all free at once) and has asked
    /// the other senders to let the queue drain until it has, `j + 1` in the low 8 bits
    /// and, above them, when it asked or last saw receivers free slots (the monotonic
    /// clock in milliseconds): a turn runs out after
    /// [`TURN_MS`](super::turns::TURN_MS) without (see *Turns* in the module docs). A hint
    /// that every sender reads with `pos` (the same line): a stale or garbage value costs
    /// fairness for a while, never a message.
    pub(in crate::channel) turn: AtomicU64,
}

/// The queue header. Hot words each on their own 128-byte line.
#[derive(Debug)]
#[repr(C)]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
pub(in crate::channel) struct Header {
    /// The next position to claim for sending, and whose turn it is.
    pub(in crate::channel) tail: Line<Tail>,
    /// The next position to claim for receiving. Only grows (CAS).
    pub(in crate::channel) head: Line<AtomicU64>,
    /// Receivers sleep here when the queue is empty.
    pub(in crate::channel) data: Signal,
    /// Senders sleep here when the queue is full.
    pub(in crate::channel) space: Signal,
    /// Messages lost to dead endpoints: skipped claims and released holds.
    pub(in crate::channel) lost: Line<AtomicU64>,
    pub(in crate::channel) senders: [Line<Registration>; MAX_ENDPOINTS],
    pub(in crate::channel) receivers: [Line<Registration>; MAX_ENDPOINTS],
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
    /// Sets the fields that do not start at zero in a zero-filled header (see
    /// `object::init_head`): every registration's `pending` is IDLE.
    pub(super) fn init(&self) {
        for r in self.senders.iter().chain(self.receivers.iter()) {
            // Relaxed: the segment is published afterwards with a Release store.
            r.0.pending.store(IDLE, Ordering::Relaxed);
        }
    }

    pub(super) fn new() -> Header {
        let reg = || {
            Line(Registration {
                end: EndpointSlot::new(),
                pending: AtomicU64::new(IDLE),
            })
        };
        Header {
            tail: Line(Tail {
                pos: AtomicU64::new(0),
                turn: AtomicU64::new(0),
            }),
            head: Line(AtomicU64::new(0)),
            data: Signal::new(),
            space: Signal::new(),
            lost: Line(AtomicU64::new(0)),
            senders: std::array::from_fn(|_| reg()),
            receivers: std::array::from_fn(|_| reg()),
        }
    }
}

pub(super) fn body_len<T>(cap: u64) -> Option<u64> {
    if cap == 0 || cap > MAX_CAPACITY {
        return None;
    }
    (std::mem::size_of::<Slot<T>>() as u64)
        .checked_mul(cap)?
        .checked_add(std::mem::size_of::<Header>() as u64)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Send,
    Recv,
}

impl Side {
    pub(super) fn other(self) -> Side {
        match self {
            Side::Send => Side::Recv,
            Side::Recv => Side::Send,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Side::Send => "sender",
            Side::Recv => "receiver",
        }
    }
}

/// Position arithmetic for a capacity (crossbeam's encoding: a lap number above the slot
/// index).
#[derive(Debug, Clone)]
pub(super) struct Geometry {
    pub(super) cap: u64,
    /// `(cap + 1).next_power_of_two()`: the distance between a slot's positions.
    pub(super) one_lap: u64,
    /// `one_lap - 1`: the index bits of a position.
    pub(super) mask: u64,
    /// `log2(one_lap)`.
    pub(super) shift: u32,
    /// How many slots a published message takes, read from its first slot's value (a
    /// pointer into shared memory, read with volatile reads only), where messages may take
    /// several (the serde queue's items; a process-local choice of the object built on
    /// the ring, see `build_spans`). Then, too, a claimed slot that no endpoint has
    /// pending is the continuation of a skipped message, freed and stepped over, rather
    /// than [`Error::Corrupt`].
    pub(super) span_of: Option<fn(*const u8) -> u64>,
    /// A value `tail` had (it only grows): a receiver that checks a message's slots
    /// against `tail` loads it only when this is not far enough (`span_at`).
    tail_seen: std::cell::Cell<u64>,
}

impl Geometry {
    pub(super) fn new(cap: u64) -> Geometry {
        let one_lap = (cap + 1).next_power_of_two();
        Geometry {
            cap,
            one_lap,
            mask: one_lap - 1,
            shift: one_lap.trailing_zeros(),
            span_of: None,
            tail_seen: std::cell::Cell::new(0),
        }
    }

    /// The position after `pos`.
    #[inline]
    pub(super) fn next(&self, pos: u64) -> u64 {
        self.advance(pos, 1)
    }

    /// The position `k` after `pos`, for `k <= cap` (a position's index is below `cap`,
    /// so the sum wraps into the next lap at most once).
    #[inline]
    pub(super) fn advance(&self, pos: u64, k: u64) -> u64 {
        let i = (pos & self.mask) + k;
        if i < self.cap {
            pos.wrapping_add(k)
        } else {
            (pos & !self.mask)
                .wrapping_add(self.one_lap)
                .wrapping_add(i - self.cap)
        }
    }

    /// How many positions `to` is ahead of `from`; `None` if it is behind, more than two
    /// laps ahead, or either is not a position.
    pub(super) fn distance(&self, from: u64, to: u64) -> Option<u64> {
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

    /// How many positions from `head` to `tail` have been claimed, at most the capacity;
    /// `None` if the two cannot be (`tail` behind `head`, or either forged). `tail` may be
    /// laps ahead: a claim given back (a loan dropped, a dead sender's claim skipped)
    /// frees its slot for the next lap before any receiver moves `head` over it, so
    /// `tail` can run laps ahead of a `head` that sits on such slots, every slot claimed
    /// since.
    pub(super) fn depth(&self, head: u64, tail: u64) -> Option<u64> {
        if let Some(d) = self.distance(head, tail) {
            return Some(d.min(self.cap));
        }
        let d = tail.wrapping_sub(head);
        let valid = (head & self.mask) < self.cap && (tail & self.mask) < self.cap;
        (valid && d > 2 * self.one_lap && d < 1 << 62).then_some(self.cap)
    }

    /// Whether `cur` (a later reading of `tail` or `head`) has moved past `pos`, a position
    /// whose slot is claimed or held (the only ones asked about): no sender can claim such
    /// a slot for its next lap, so legitimate distances are at most twice the capacity.
    /// (Past slots given back, `tail` can run further: see [`Geometry::depth`].)
    pub(super) fn passed(&self, pos: u64, cur: u64) -> bool {
        matches!(self.distance(pos, cur), Some(d) if d >= 1 && d <= 2 * self.cap)
    }
}

/// The mapped queue, shared by both endpoint types.
pub(super) type Ring<T> = typed::Ring<Header, T, Geometry>;

impl<T: Pod> Ring<T> {
    pub(in crate::channel) fn new(at: At<'_>, capacity: usize) -> Result<Self> {
        let shape = Shape::new(Kind::Mpmc, body_len::<T>, |c| {
            format!("capacity {c} must be between 1 and {MAX_CAPACITY} (and fit in memory)")
        });
        let head: typed::RingHead<Header> = Head::with(Header::new, Header::init);
        // Validated on open: `body_len(capacity)` matched, so 1 <= cap <= MAX_CAPACITY.
        Self::map(at, capacity, shape, head, Geometry::new)
    }

    pub(super) fn table(&self, side: Side) -> &[Line<Registration>; MAX_ENDPOINTS] {
        match side {
            Side::Send => &self.hdr().senders,
            Side::Recv => &self.hdr().receivers,
        }
    }

    #[inline]
    pub(super) fn pending(&self, side: Side, reg: usize) -> &AtomicU64 {
        &self.table(side)[reg].0.pending
    }

    /// The slot of position `pos`, which came from shared memory: its index is checked.
    #[inline]
    pub(super) fn slot(&self, pos: u64) -> Result<&Slot<T>> {
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
    pub(super) fn claimed_slot(&self, pos: u64) -> &Slot<T> {
        // `min` keeps even a broken invariant in bounds.
        let i = (pos & self.geo.mask).min(self.geo.cap - 1);
        // SAFETY: `i < cap`: inside the mapping, as in `slot`.
        unsafe { &*self.slots.as_ptr().add(i as usize) }
    }

    pub(super) fn corrupt(&self, who: &str, pos: u64, stamp: u64) -> Error {
        Error::corrupt(format!(
            "mpmc slot for position {pos:#x} has stamp {stamp:#x}, impossible for the {who}"
        ))
    }

    pub(super) fn corrupt_positions(&self, head: u64, tail: u64) -> Error {
        Error::corrupt(format!(
            "mpmc head {head:#x} and tail {tail:#x} are inconsistent with capacity {}",
            self.geo.cap
        ))
    }

    // -----------------------------------------------------------------------------------
    // The queue proper.

    /// The claiming CAS of `poll_send` and `poll_recv`: moves `end` (`tail` or `head`) on
    /// from `pos`, our copy of it, by `k` slots, having said in `pending` what we claim.
    /// `Err(cur)`: we lost the race and claim nothing; `cur` is `end` now.
    #[inline]
    fn claim(&self, end: &AtomicU64, pending: &AtomicU64, pos: u64, k: u64) -> Result<(), u64> {
        // Say what we claim before claiming it. Release: pairs with the Acquire loads in
        // `holder`, through the CAS below.
        pending.store(pos, Ordering::Release);
        // AcqRel: Release publishes the pending word to whoever reads this `end` or a later
        // one with Acquire (a recovering peer); Acquire orders our access to the slot (a
        // sender's write of the value, a receiver's read) after the claim. SeqCst on top
        // (the same instruction on x86 and AArch64): an async sender waiting for room
        // re-checks `head` itself (`room`), and the receiver that moved it wakes it with
        // the fence-free `notify_after_seqcst_rmw`, whose argument needs every write a
        // waiter re-checks to be a SeqCst RMW sequenced before the notify.
        // Acquire on failure: as the caller's Acquire load of `end`, for the value it
        // retries.
        match end.compare_exchange_weak(
            pos,
            self.geo.advance(pos, k),
            Ordering::SeqCst,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok(()),
            Err(cur) => {
                // Lost the race: we claim nothing. Release: as above.
                pending.store(IDLE, Ordering::Release);
                Err(cur)
            }
        }
    }

    /// For a stamp that `who` cannot explain at `pos`, its copy of `end` (`tail` or
    /// `head`): `end` as it is now if it has moved (the copy was stale), otherwise
    /// `Error::Corrupt` (a stamp ahead of a position that has not moved: nobody wrote that).
    fn moved_on(&self, end: &AtomicU64, pos: u64, stamp: u64, who: &str) -> Result<u64> {
        // Acquire: as the caller's first load of `end`.
        let now = end.load(Ordering::Acquire);
        if now == pos {
            return Err(self.corrupt(who, pos, stamp));
        }
        Ok(now)
    }

    /// One attempt to claim a free slot for sending (a few rounds when others win races).
    #[inline]
    pub(super) fn poll_send(&self, reg: usize) -> Result<Poll<u64>> {
        self.poll_send_n(reg, 1)
    }

    /// One attempt to claim `k` consecutive free slots for sending one message (`k` from 1
    /// to the capacity): the first is the message's, the others its continuations. Every
    /// one is checked free for its position before the claim: a slot may be claimed only
    /// for the lap after the one its stamp has, or the stamps would no longer tell laps
    /// apart (claiming first and waiting for the rest after lets `tail` run laps ahead).
    #[inline]
    pub(super) fn poll_send_n(&self, reg: usize, k: u64) -> Result<Poll<u64>> {
        if k == 0 || k > self.geo.cap {
            return Err(Error::InvalidArgument(format!(
                "a message of {k} slots in a queue of {}",
                self.geo.cap
            )));
        }
        let h = self.hdr();
        if self.geo.span_of.is_some() && !self.may_claim(reg) {
            // Another sender's turn: let the queue drain for it (see *Turns*).
            return Ok(Poll::Pending);
        }
        let pending = self.pending(Side::Send, reg);
        // Acquire: pairs with the Release of the claiming CAS that moved `tail` here (and,
        // through the release sequence, the earlier ones): whoever claimed this slot's
        // previous lap had seen it free, so the stamp we load next is no older than that
        // lap. With Relaxed, a stale stamp two laps behind would read as corruption (loom
        // finds it).
        let mut tail = h.tail.0.pos.load(Ordering::Acquire);
        for _ in 0..RETRIES {
            let slot = self.slot(tail)?;
            // Acquire: pairs with the releasing CAS (SeqCst) that freed the slot (a
            // receiver's release, or a skip): the last reads of the old value are done
            // before we overwrite it.
            let stamp = slot.stamp.load(Ordering::Acquire);
            let prev = tail.wrapping_sub(self.geo.one_lap);
            if stamp == tail {
                if k > 1 {
                    match self.rest_free(tail, k)? {
                        Ok(true) => {}
                        Ok(false) => return Ok(Poll::Pending),
                        Err(cur) => {
                            tail = cur;
                            continue;
                        }
                    }
                }
                // Free for `tail` (and the `k - 1` after it): claim them (see `claim` for
                // the orderings).
                match self.claim(&h.tail.0.pos, pending, tail, k) {
                    Ok(()) => return Ok(Poll::Ready(tail)),
                    Err(cur) => tail = cur,
                }
            } else if stamp == prev || stamp == prev.wrapping_add(1) {
                // The previous lap's message is still in the slot (being written, not yet
                // received, or held by a receiver): full.
                return Ok(Poll::Pending);
            } else {
                tail = self.moved_on(&h.tail.0.pos, tail, stamp, "sender")?;
            }
        }
        Ok(Poll::Pending)
    }

    /// Whether the `k - 1` slots after `tail`'s (free) one are free for their positions
    /// too: `Ok(true)` if so, `Ok(false)` if the previous lap still uses one (full),
    /// `Err(cur)` if `tail` moved on meanwhile (`cur`: where it is now).
    fn rest_free(&self, tail: u64, k: u64) -> Result<Result<bool, u64>> {
        for j in 1..k {
            let q = self.geo.advance(tail, j);
            // Acquire: as for the first slot's stamp in `poll_send_n`. A position at or past
            // `tail` was never claimed, so its slot's stamp is `q` (free), or the previous
            // lap's `q - one_lap` (claimed: a continuation, or a message being written) or
            // `q - one_lap + 1` (published or held).
            let stamp = self.claimed_slot(q).stamp.load(Ordering::Acquire);
            if stamp == q {
                continue;
            }
            // Acquire: as the first load of `tail`.
            let now = self.hdr().tail.0.pos.load(Ordering::Acquire);
            if now != tail {
                return Ok(Err(now));
            }
            let prev = q.wrapping_sub(self.geo.one_lap);
            if stamp == prev || stamp == prev.wrapping_add(1) {
                return Ok(Ok(false));
            }
            return Err(self.corrupt("sender", q, stamp));
        }
        Ok(Ok(true))
    }

    /// Publishes the message written at `pos`; `false` if the slot was skipped meanwhile
    /// (we were taken for dead), so that the message must be sent again. A message of
    /// several slots publishes its first only: its continuations keep their claimed stamps
    /// until the receiver frees them.
    #[inline]
    pub(super) fn publish(&self, pos: u64) -> bool {
        // SeqCst (Release is what the message needs): publishes the value (and its
        // continuations') to the receivers' Acquire load of the stamp; SeqCst so that the
        // wake-up check after it needs no fence (`Signal::notify_after_seqcst_rmw`).
        // Relaxed on failure: we learn only that the slot is no longer ours.
        let ok = self
            .claimed_slot(pos)
            .stamp
            .compare_exchange(
                pos,
                pos.wrapping_add(1),
                Ordering::SeqCst,
                Ordering::Relaxed,
            )
            .is_ok();
        if ok {
            self.hdr().data.notify_after_seqcst_rmw();
        }
        ok
    }

    /// One attempt to claim a published message for receiving.
    #[inline]
    pub(super) fn poll_recv(&self, reg: usize) -> Result<Poll<u64>> {
        Ok(match self.poll_recv_by(reg, |_| 1, &())? {
            Poll::Ready((pos, _)) => Poll::Ready(pos),
            Poll::Pending => Poll::Pending,
        })
    }

    /// One attempt to claim a published message of one or more slots for receiving: its
    /// position and its number of slots, which `span_of` reads from its first slot (a
    /// pointer to the value in shared memory, to be read with volatile reads only; what
    /// it says is checked, see `span_at`). `attempts` is told of each claiming CAS: before
    /// it, and after it if it failed (see [`Attempts`]).
    #[inline]
    pub(super) fn poll_recv_by(
        &self,
        reg: usize,
        span_of: impl Fn(*const T) -> u64,
        attempts: &impl Attempts,
    ) -> Result<Poll<(u64, u64)>> {
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
            // Acquire: pairs with the sender's CAS in `publish` (SeqCst): the value is
            // visible once we see its stamp.
            let stamp = slot.stamp.load(Ordering::Acquire);
            if stamp == head.wrapping_add(1) {
                // Published: claim it and the slots it takes (see `claim` for the
                // orderings).
                let k = self.span_at(head, slot, &span_of);
                attempts.claiming();
                match self.claim(&h.head.0, pending, head, k) {
                    Ok(()) => return Ok(Poll::Ready((head, k))),
                    Err(cur) => {
                        attempts.missed(|| self.drained_now());
                        head = cur;
                    }
                }
            } else if stamp == head || stamp == head.wrapping_sub(self.geo.one_lap).wrapping_add(1)
            {
                // Not published yet (empty, or a sender is writing), or the previous lap's
                // message is still held there (then nothing was sent at `head` either).
                failpoint!("mpmc.recv.empty");
                return Ok(Poll::Pending);
            } else if self.message_gone(head, stamp) {
                // Message `head` was received or skipped. If `head` still says so, it was a
                // skip whose skipper has not moved `head` yet (or died before it could):
                // move it.
                head = self.step_head(head);
            } else {
                head = self.moved_on(&h.head.0, head, stamp, "receiver")?;
            }
        }
        Ok(Poll::Pending)
    }

    /// The number of slots of the published message at `head`, as `span_of` reads it from
    /// its first slot, if that is possible: from 1 to the capacity, every slot claimed
    /// (before `tail`), and every continuation still at its claimed stamp (a sender leaves them so, and only the message's
    /// receiver changes them). Otherwise 1: the message's reader then finds a length that
    /// its one slot cannot hold and reports the message corrupt, and the slots after it
    /// are stepped over as a skipped message's continuations.
    #[inline]
    fn span_at(&self, head: u64, slot: &Slot<T>, span_of: &impl Fn(*const T) -> u64) -> u64 {
        let k = span_of(slot.value.get());
        if k <= 1 || k > self.geo.cap {
            return 1;
        }
        // The slots must all have been claimed: past `tail`, a free slot's stamp is its
        // position too. `tail` only grows, so a value seen before that is far enough ahead
        // says so; else load it. Acquire: as in `poll_send_n`.
        let claimed = |tail| self.geo.distance(head, tail).is_some_and(|d| d >= k);
        if !claimed(self.geo.tail_seen.get()) {
            let tail = self.hdr().tail.0.pos.load(Ordering::Acquire);
            self.geo.tail_seen.set(tail);
            if !claimed(tail) {
                return 1;
            }
        }
        for j in 1..k {
            let q = self.geo.advance(head, j);
            // Acquire: as the first slot's stamp (a later lap's stamp means this is not a
            // message of `k` slots).
            if self.claimed_slot(q).stamp.load(Ordering::Acquire) != q {
                return 1;
            }
        }
        k
    }

    /// Frees the slots of the message of `k` slots at `pos` that we hold (a guard dropped,
    /// or a copy taken): its continuations first, then its first slot, whose CAS decides
    /// against a recovering peer's (`free_held`). `false` if a slot was no longer ours: a
    /// sender took us for dead and freed it already (or a peer forged its stamp), so a copy
    /// taken before may be torn.
    #[inline]
    pub(super) fn release(&self, pos: u64, k: u64) -> bool {
        let mut ok = true;
        for j in 1..k {
            // SeqCst, and the validation: as `free_slot` below.
            ok &= self.free_continuation(self.geo.advance(pos, j), Ordering::SeqCst);
        }
        // SeqCst (Release is what the slot needs): our reads of the value are done before a
        // sender may overwrite it (pairs with its Acquire stamp load in `poll_send`); SeqCst
        // so that the wake-up check after it needs no fence
        // (`Signal::notify_after_seqcst_rmw`). Relaxed on failure: we learn only that the
        // slot is no longer ours. Success also validates a copy (seqlock style): the stamp
        // is still `pos + 1`, and a sender writes the slot only after it saw the stamp we
        // store here, so nobody wrote it while we read.
        ok &= self.free_slot(pos, Ordering::SeqCst);
        if ok {
            self.hdr().space.notify_after_seqcst_rmw();
        } else {
            // A slot freed under us by another process (taken for dead): the write a
            // waiting sender re-checks may be that process's, not a SeqCst RMW of ours.
            self.hdr().space.notify();
        }
        ok
    }

    /// The CAS that frees message `pos`'s slot for the next lap: `pos + 1` (held) to
    /// `pos + one_lap` (free for that position). `success` is the caller's ordering (see
    /// `release` and `free_held`); failure is Relaxed: the caller learns only that the slot
    /// was not held for `pos` any more.
    #[inline]
    pub(super) fn free_slot(&self, pos: u64, success: Ordering) -> bool {
        self.claimed_slot(pos)
            .stamp
            .compare_exchange(
                pos.wrapping_add(1),
                pos.wrapping_add(self.geo.one_lap),
                success,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// The number of slots of the message at `pos` while it is held (its first slot's stamp
    /// `pos + 1`: the value does not change then), read from the value itself, seqlock
    /// style (the stamp loaded before and after): `None` if it is not held. 1 where
    /// messages take one slot, or where the value says more than the capacity.
    pub(super) fn held_span(&self, pos: u64) -> Option<u64> {
        let slot = self.claimed_slot(pos);
        let held = pos.wrapping_add(1);
        // Acquire: pairs with the publishing CAS (SeqCst), so that the value read next is
        // the published one (or later).
        if slot.stamp.load(Ordering::Acquire) != held {
            return None;
        }
        let k = self
            .geo
            .span_of
            .map_or(1, |f| f(slot.value.get().cast::<u8>().cast_const()));
        // The seqlock's second look: the fence keeps the value's reads before the stamp
        // load after it (an Acquire load alone lets earlier reads move below it). A sender
        // writes a new value only after it saw the slot freed, so if the stamp still says
        // held, what we read was this message's.
        fence(Ordering::Acquire);
        // Relaxed: ordered by the fence above.
        (slot.stamp.load(Ordering::Relaxed) == held).then_some(if k == 0 || k > self.geo.cap {
            1
        } else {
            k
        })
    }

    /// The CAS that frees the continuation slot at `q` (its stamp still the claimed `q`)
    /// for the next lap; as `free_slot` otherwise.
    #[inline]
    pub(super) fn free_continuation(&self, q: u64, success: Ordering) -> bool {
        self.claimed_slot(q)
            .stamp
            .compare_exchange(
                q,
                q.wrapping_add(self.geo.one_lap),
                success,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Whether `stamp`, read at `head`, says that message `head` is gone: received, or
    /// skipped (given back, or claimed by a dead sender). A slot's stamp only grows, and
    /// only through each of its positions in turn, so any later lap says so: slots given
    /// back repeatedly while `head` waited further back can be several laps ahead.
    #[inline]
    pub(super) fn message_gone(&self, head: u64, stamp: u64) -> bool {
        let ahead = head.wrapping_add(self.geo.one_lap);
        stamp == ahead || stamp == ahead.wrapping_add(1) || self.laps_ahead(head, stamp)
    }

    /// `drained(false)` for [`Attempts::missed`], out of line: in `poll_recv_by`'s body, it
    /// cost the plain queue's receivers (whose `missed` never calls it) a fifth of their
    /// rate with two consumers (measured). An error is left for the caller's wait to find.
    #[inline(never)]
    fn drained_now(&self) -> bool {
        self.drained(false).unwrap_or(true)
    }

    /// Moves `head` from `head`, whose message is gone ([`Ring::message_gone`]), to the next
    /// position; `head`'s value after (ours, or a racer's).
    pub(super) fn step_head(&self, head: u64) -> u64 {
        let next = self.geo.next(head);
        // AcqRel/Acquire: as the claiming CAS (`claim`). Strong: a spurious failure would
        // cost `drained` a round.
        match self
            .hdr()
            .head
            .0
            .compare_exchange(head, next, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => next,
            Err(cur) => cur,
        }
    }

    /// Whether `stamp` is a later lap of `head`'s slot (free or published for a position
    /// at least two laps on): `head`'s own turn at the slot is over.
    pub(super) fn laps_ahead(&self, head: u64, stamp: u64) -> bool {
        // `stamp - head` is `k` laps (free for that position) or `k` laps and one
        // (published there), `k >= 2`; far ahead (a quarter of the counter) is corrupt.
        let d = stamp.wrapping_sub(head);
        d & self.geo.mask <= 1 && d >= 2 * self.geo.one_lap && d < 1 << 62
    }

    /// Messages published and not yet received (a snapshot).
    pub(in crate::channel) fn len(&self) -> usize {
        let h = self.hdr();
        // Relaxed: a snapshot; nothing is read through it. Head first, so that the tail
        // read after it is not behind it.
        let head = h.head.0.load(Ordering::Relaxed);
        let tail = h.tail.0.pos.load(Ordering::Relaxed);
        self.geo.depth(head, tail).map_or(0, |d| d as usize)
    }

    pub(in crate::channel) fn lost(&self) -> u64 {
        // Relaxed: a statistic.
        self.hdr().lost.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(not(loom))]
    fn a_zeroed_header_after_init_is_a_new_header() {
        crate::object::assert_zero_start(Header::new(), Header::init);
    }

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
