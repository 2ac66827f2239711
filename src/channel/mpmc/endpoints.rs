//! The public endpoints of the queue: [`Sender`] (with its [`Loan`]) and [`Receiver`]
//! (with its [`RecvGuard`]), their constructors, and the waiting around the ring's
//! non-blocking polls. See the [module docs](super) for the contract.
//!
//! What lives here touches shared memory only through the ring (`ring`) and its recovery
//! (`recovery`); it keeps the process-local state: the registration index, the wait
//! strategy, and the position of a forgotten loan or guard, given back on the next call.
//!
//! Both endpoints are an [`End`], generic over its side, which claims, waits, gives back
//! and unregisters; `endpoint!` gives both public types their constructors, accessors and
//! `Debug`, and each adds only its own API.

use crate::os::failpoint::failpoint;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::super::{
    ends_iter, ends_try_iter, fmt_endpoint, recv_iter, wait_until, Check, Poll, WaitStrategy,
};
use super::ring::{Ring, Side};
use super::spans::SpanView;
use super::turns::TurnState;
use super::SendError;
use crate::error::{Error, Result};
use crate::object::At;
use crate::segment::Segment;
use crate::sync::wait::Deadline;

/// The most times one send starts over because its claimed slot was skipped.
const MAX_RESENDS: usize = 16;

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

/// [`End`]'s side: a sender's.
pub(super) const TX: bool = true;
/// [`End`]'s side: a receiver's.
pub(super) const RX: bool = false;

/// One endpoint of the queue, a sender (`End<T, TX>`) or a receiver (`End<T, RX>`): its
/// registration, how it waits, and the slot it may still hold. [`Sender`] and [`Receiver`]
/// are each one of these; dropping it gives the slot back and unregisters.
pub(super) struct End<T: Pod, const SIDE: bool> {
    pub(super) ring: Ring<T>,
    pub(super) reg: usize,
    strategy: WaitStrategy,
    check: Every,
    /// A position lent by a sender's `loan` or viewed by a receiver's guard whose loan or
    /// guard was forgotten (never committed nor dropped), and its number of slots: given
    /// back on the next claim.
    pub(super) held: Option<(u64, u64)>,
    /// A sender's turn, kept between its claims of several slots (see `spans`); unused by
    /// receivers.
    pub(super) turn: TurnState,
}

impl<T: Pod, const SIDE: bool> End<T, SIDE> {
    /// This endpoint's side, as the ring names it.
    const SIDE: Side = if SIDE == TX { Side::Send } else { Side::Recv };

    fn attach(ring: Ring<T>, reg: usize) -> Self {
        End {
            ring,
            reg,
            strategy: WaitStrategy::Blocking,
            check: Every { next: None },
            held: None,
            turn: TurnState::default(),
        }
    }

    /// Gives back the slot of a forgotten loan (skipped, so that receivers do not wait for
    /// it) or guard (its message released).
    #[inline]
    pub(super) fn give_back(&mut self) {
        if let Some((pos, k)) = self.held.take() {
            if SIDE == TX {
                // Its continuations, if any, are stepped over after it (`recover_recv`).
                self.ring.skip(pos, false);
            } else {
                let _ = self.ring.release(pos, k);
            }
        }
    }

    /// One attempt to claim a free slot (sender) or a published message (receiver).
    #[inline]
    fn poll(ring: &Ring<T>, reg: usize) -> Result<Poll<u64>> {
        if SIDE == TX {
            ring.poll_send(reg)
        } else {
            ring.poll_recv(reg)
        }
    }

    /// Claims a free slot (sender) or a published message (receiver), waiting until
    /// `deadline`.
    /// The signal this side sleeps on: `space` (sender) or `data` (receiver).
    fn signal(ring: &Ring<T>) -> &crate::channel::Signal {
        let h = ring.hdr();
        if SIDE == TX {
            &h.space
        } else {
            &h.data
        }
    }

    #[inline]
    fn claim(&mut self, deadline: Deadline) -> Result<u64> {
        self.claim_by(deadline, 1, Self::poll)
    }

    /// Claims a slot or a message if there is one now.
    fn try_claim(&mut self) -> Result<u64> {
        self.try_claim_by(1, Self::poll)
    }

    /// `claim` with another poll (a multi-slot claim's, of `want` slots: what a blocked
    /// sender recovers, see `Ring::stalled`); `None` for a try.
    #[inline]
    pub(super) fn claim_until<P>(
        &mut self,
        deadline: Option<Deadline>,
        want: u64,
        poll: impl Fn(&Ring<T>, usize) -> Result<Poll<P>>,
    ) -> Result<P> {
        match deadline {
            Some(d) => self.claim_by(d, want, poll),
            None => self.try_claim_by(want, poll),
        }
    }

    /// `claim` with another poll.
    #[inline]
    fn claim_by<P>(
        &mut self,
        deadline: Deadline,
        want: u64,
        poll: impl Fn(&Ring<T>, usize) -> Result<Poll<P>>,
    ) -> Result<P> {
        self.give_back();
        let (ring, reg) = (&self.ring, self.reg);
        if let Poll::Ready(pos) = poll(ring, reg)? {
            return Ok(pos);
        }
        let r = wait_until(
            Self::signal(ring),
            self.strategy,
            deadline,
            || poll(ring, reg),
            |check| match check {
                Check::Cheap => Self::closed(ring, want),
                Check::Full => ring.stalled(Self::SIDE, want),
            },
        );
        match r {
            // A wait shorter than a sleep slice never runs the full check: do it here (as
            // often as a try does), so that short timeouts called in a loop still recover
            // what a dead peer left at the front of the queue, and look once more.
            Err(Error::Timeout) if self.check.due() => {
                let gone = ring.stalled(Self::SIDE, want)?;
                match poll(ring, reg)? {
                    Poll::Ready(pos) => Ok(pos),
                    Poll::Pending if gone => Err(Error::Disconnected),
                    Poll::Pending => Err(Error::Timeout),
                }
            }
            r => r,
        }
    }

    /// The cheap check of a blocked endpoint: whether every peer closed cleanly (no kernel
    /// question). If so, it recovers first, as `stalled` does (`Ok(false)` if that changed
    /// the queue): a peer that took over a dead one's registration settled its claim and
    /// closed, and what the claim left (a skipped message's continuations) may stand
    /// between a receiver and the messages sent after it.
    fn closed(ring: &Ring<T>, want: u64) -> Result<bool> {
        if !ring.all_closed(Self::SIDE.other()) {
            return Ok(false);
        }
        ring.stalled(Self::SIDE, want)
    }

    /// `try_claim` with another poll.
    fn try_claim_by<P>(
        &mut self,
        want: u64,
        poll: impl Fn(&Ring<T>, usize) -> Result<Poll<P>>,
    ) -> Result<P> {
        self.give_back();
        if let Poll::Ready(pos) = poll(&self.ring, self.reg)? {
            return Ok(pos);
        }
        let gone = if self.check.due() {
            self.ring.stalled(Self::SIDE, want)?
        } else {
            Self::closed(&self.ring, want)?
        };
        // One more look: a recovery may have unblocked us, or a peer moved just before it
        // went.
        match poll(&self.ring, self.reg)? {
            Poll::Ready(pos) => Ok(pos),
            Poll::Pending if gone => Err(Error::Disconnected),
            Poll::Pending => Err(Error::WouldBlock),
        }
    }
}

impl<T: Pod> End<T, TX> {
    /// Whether a send of `k` slots may find room now, without claiming (for senders that
    /// must prepare their message before claiming, such as the serde queues' async
    /// `put`): `Ok` if `k` slots may be free (counted from `head`: a receiver may still be
    /// copying out of some) and no other sender's turn holds them back;
    /// [`Error::Disconnected`] if not and every receiver is gone (by the checks of
    /// `try_claim`, as often: a one-slot sender's recovery then ends any turn);
    /// otherwise [`Error::WouldBlock`], after taking or keeping the turn for a message of
    /// several slots, as its claim would.
    fn room(&mut self, k: u64) -> Result<()> {
        let fits = |ring: &Ring<T>, reg: usize| {
            (ring.len() as u64).saturating_add(k) <= ring.geo.cap
                && (ring.geo.span_of.is_none() || ring.may_claim(reg))
        };
        if fits(&self.ring, self.reg) {
            return Ok(());
        }
        if k > 1 && self.ring.geo.span_of.is_some() {
            self.ring.forget_lost_turn(self.reg, &self.turn);
            self.ring.keep_turn(self.reg, &self.turn);
        }
        let gone = if self.check.due() {
            self.ring.stalled(Self::SIDE, k)?
        } else {
            Self::closed(&self.ring, k)?
        };
        match (gone, fits(&self.ring, self.reg)) {
            (_, true) => Ok(()),
            (true, false) => Err(Error::Disconnected),
            (false, false) => Err(Error::WouldBlock),
        }
    }
}

impl<T: Pod, const SIDE: bool> Drop for End<T, SIDE> {
    fn drop(&mut self) {
        self.give_back();
        self.ring.unregister(Self::SIDE, self.reg);
    }
}

/// What both endpoint types share, over their one field `end: End<T, $side>`: the
/// constructors, the accessors, `is_disconnected` (whether every `$peers` is gone) and
/// `Debug` (as `$name`).
macro_rules! endpoint {
    ($ty:ident, $side:ident, $name:literal, $peers:literal) => {
        impl<T: Pod> $ty<T> {
            crate::object::constructors!(
                @named "queue",
                capacity: usize,
                open: 1,
                " The capacity is a number of slots, from 1 to \
                  [`MAX_CAPACITY`](super::MAX_CAPACITY). This endpoint is attached: \
                  [`Error::Busy`] if [`MAX_ENDPOINTS`](super::MAX_ENDPOINTS) live endpoints of \
                  its kind are attached already."
            );

            /// Creates and/or opens the queue at `at` and attaches this endpoint (for
            /// objects built on the queue, which give `at` their own fingerprint).
            pub(crate) fn build(at: At<'_>, capacity: usize) -> Result<Self> {
                Self::build_spans(at, capacity, None)
            }

            /// `build`, for a queue of multi-slot messages (the serde queue's; see
            /// *Multi-slot messages* in the module docs) if `span_of` is given: it reads
            /// how many slots a message takes from its first slot's value (a pointer into
            /// shared memory: volatile reads only; any answer is checked). Set before the
            /// endpoint registers: taking over a dead endpoint's registration may free a
            /// message it held, all its slots.
            pub(crate) fn build_spans(
                at: At<'_>,
                capacity: usize,
                span_of: Option<fn(*const u8) -> u64>,
            ) -> Result<Self> {
                let mut ring = Ring::new(at, capacity)?;
                ring.geo.span_of = span_of;
                let reg = ring.register(End::<T, $side>::SIDE)?;
                Ok($ty {
                    end: End::attach(ring, reg),
                })
            }

            /// The signal this endpoint sleeps on: where `aio` registers its doorbell.
            pub(crate) fn wait_signal(&self) -> &crate::channel::Signal {
                End::<T, $side>::signal(&self.end.ring)
            }

            /// The waiting strategy of this endpoint (default [`WaitStrategy::Blocking`]).
            pub fn set_wait_strategy(&mut self, strategy: WaitStrategy) {
                self.end.strategy = strategy;
            }

            /// The number of slots.
            pub fn capacity(&self) -> usize {
                self.end.ring.geo.cap as usize
            }

            /// Messages claimed by senders and not yet received (a snapshot).
            pub fn len(&self) -> usize {
                self.end.ring.len()
            }

            /// Whether no message is waiting (a snapshot).
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// How many messages were lost to dead endpoints since the queue was created:
            /// claimed by a sender that died before publishing, or held by a receiver that
            /// died before releasing.
            pub fn lost(&self) -> u64 {
                self.end.ring.lost()
            }

            /// The segment the queue lives in.
            pub fn segment(&self) -> &Segment {
                &self.end.ring.seg
            }

            #[doc = concat!("Whether every ", $peers, " is gone: some attached, and all closed or died.")]
            pub fn is_disconnected(&self) -> bool {
                let peers = End::<T, $side>::SIDE.other();
                self.end.ring.all_gone(peers).unwrap_or(true)
            }
        }

        impl<T: Pod> fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let (ring, reg) = (&self.end.ring, self.end.reg as u64);
                fmt_endpoint(f, $name, &ring.seg, ring.geo.cap, "registration", reg)
            }
        }
    };
}

// ---------------------------------------------------------------------------------------
// Sender

/// A producing end of an MPMC queue. See the [module docs](crate::mpmc).
///
/// ```
/// use shmkit::{mpmc, Error};
/// # let name = shmkit::__private::test_name("doc-mpmc-tx");
/// let mut tx = mpmc::Sender::<u64>::create(&name, 2)?; // unlinks the name on drop
/// let mut tx2 = mpmc::Sender::<u64>::open(&name)?; // any number of senders
/// let mut rx = mpmc::Receiver::<u64>::open(&name)?;
/// tx.send(1)?;
/// tx2.try_send(2)?;
/// let full = tx.try_send(3).unwrap_err(); // the value comes back
/// assert!(matches!(full.error, Error::WouldBlock));
/// assert_eq!(rx.recv()? + rx.recv()?, 3);
/// tx.send_timeout(full.into_inner(), std::time::Duration::from_millis(10))?;
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Sender<T: Pod> {
    pub(super) end: End<T, TX>,
}

endpoint!(Sender, TX, "mpmc::Sender", "receiver");

impl<T: Pod> Sender<T> {
    /// Whether a send of `k` slots would find room now, without claiming: see
    /// `End::room`.
    pub(crate) fn room(&mut self, k: u64) -> Result<()> {
        self.end.room(k)
    }

    #[inline]
    fn send_with(
        &mut self,
        v: T,
        mut claim: impl FnMut(&mut End<T, TX>) -> Result<u64>,
    ) -> std::result::Result<(), SendError<T>> {
        for _ in 0..MAX_RESENDS {
            let pos = match claim(&mut self.end) {
                Ok(pos) => pos,
                Err(error) => return Err(SendError { value: v, error }),
            };
            failpoint!("mpmc.send.claimed");
            // SAFETY: we claimed `pos`: no receiver reads the slot until we publish it, and
            // no other sender writes it (it is not free for anyone else).
            unsafe { self.end.ring.claimed_slot(pos).value.get().write(v) };
            if self.end.ring.publish(pos) {
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
        self.send_with(v, |end| end.claim(Deadline::NEVER))
    }

    /// Sends `v` if there is room now; never blocks.
    pub fn try_send(&mut self, v: T) -> std::result::Result<(), SendError<T>> {
        self.send_with(v, |end| end.try_claim())
    }

    /// Sends `v`, waiting at most `timeout` for room.
    pub fn send_timeout(
        &mut self,
        v: T,
        timeout: Duration,
    ) -> std::result::Result<(), SendError<T>> {
        let deadline = Deadline::after(timeout);
        self.send_with(v, |end| end.claim(deadline))
    }

    /// Waits for a free slot, claims it and lends it out to be written in place;
    /// [`Loan::commit`] publishes it. Receivers wait at this position until it is
    /// committed or given back (a loan dropped without `commit` is skipped, not delivered),
    /// so do not hold a loan for long.
    pub fn loan(&mut self) -> Result<Loan<'_, T>> {
        let pos = self.end.claim(Deadline::NEVER)?;
        Ok(self.lend(pos, true))
    }

    /// Lends a slot if one is free now; never blocks.
    pub fn try_loan(&mut self) -> Result<Loan<'_, T>> {
        let pos = self.end.try_claim()?;
        Ok(self.lend(pos, false))
    }

    /// Lends a slot, waiting at most `timeout` for one ([`Error::Timeout`]); its
    /// [`Loan::commit`] sends again without blocking if it must (as after `try_loan`).
    pub fn loan_timeout(&mut self, timeout: Duration) -> Result<Loan<'_, T>> {
        let pos = self.end.claim(Deadline::after(timeout))?;
        Ok(self.lend(pos, false))
    }

    /// The loan of the slot at `pos`, just claimed; `blocking`: how its `commit` sends
    /// again, should it have to.
    #[inline]
    fn lend(&mut self, pos: u64, blocking: bool) -> Loan<'_, T> {
        self.end.held = Some((pos, 1));
        Loan {
            tx: self,
            pos,
            done: false,
            blocking,
        }
    }
}

/// A claimed slot lent by [`Sender::loan`]: derefs to the `T` in the queue.
///
/// ```
/// use shmkit::mpmc;
/// # let name = shmkit::__private::test_name("doc-mpmc-loan");
/// let mut tx = mpmc::Sender::<[u32; 8]>::create(&name, 4)?;
/// let mut rx = mpmc::Receiver::<[u32; 8]>::open(&name)?;
/// let mut slot = tx.loan()?; // claimed: receivers wait for it, so commit soon
/// slot.fill(5);
/// slot.commit()?;
/// assert_eq!(rx.recv()?, [5; 8]);
/// # Ok::<(), shmkit::Error>(())
/// ```
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
        self.tx.end.held = None;
        if self.tx.end.ring.publish(self.pos) {
            return Ok(());
        }
        // SAFETY: in bounds (a claimed position); a volatile read of a Pod value, which
        // is valid whatever its bytes.
        let v = unsafe {
            crate::copy::read_shared(self.tx.end.ring.claimed_slot(self.pos).value.get())
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
            // `held` is our position: give it back.
            self.tx.end.give_back();
        }
    }
}

impl<T: Pod> Deref for Loan<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: we claimed the position and have not published it: nobody else reads or
        // writes the slot until we do.
        unsafe { &*self.tx.end.ring.claimed_slot(self.pos).value.get() }
    }
}

impl<T: Pod> DerefMut for Loan<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes the access unique.
        unsafe { &mut *self.tx.end.ring.claimed_slot(self.pos).value.get() }
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
///
/// ```
/// use shmkit::{mpmc, Error};
/// # let name = shmkit::__private::test_name("doc-mpmc-rx");
/// let mut rx = mpmc::Receiver::<u64>::create(&name, 16)?; // either side may create
/// let mut tx = mpmc::Sender::<u64>::open(&name)?; // usually in other processes
/// assert!(matches!(rx.try_recv(), Err(Error::WouldBlock)));
/// for i in 0..4 {
///     tx.send(i)?;
/// }
/// assert_eq!(rx.recv()?, 0);
/// drop(tx); // every sender gone: `iter` drains the queue, then ends
/// assert_eq!(rx.iter().collect::<Result<Vec<_>, _>>()?, [1, 2, 3]);
/// assert_eq!(rx.lost(), 0); // nothing skipped for a dead sender
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Receiver<T: Pod> {
    pub(super) end: End<T, RX>,
}

endpoint!(Receiver, RX, "mpmc::Receiver", "sender");

impl<T: Pod> Receiver<T> {
    fn guard(&mut self, pos: u64) -> RecvGuard<'_, T> {
        self.end.held = Some((pos, 1));
        failpoint!("mpmc.recv.claimed");
        RecvGuard { rx: self, pos }
    }

    /// Copies the claimed message at `pos` out and releases its slot, checking that the
    /// slot stayed ours during the copy.
    #[inline]
    fn take(&mut self, pos: u64) -> Result<T> {
        self.take_with(pos, 1, |view| {
            // SAFETY: in bounds (a claimed position); a volatile read of a Pod value,
            // valid whatever bytes a misbehaving peer put there.
            unsafe { crate::copy::read_shared(view.slot(0)) }
        })
    }

    /// Hands the claimed message at `pos` (`k` slots) to `read`, then releases its slots:
    /// `read`'s result if they stayed ours meanwhile (see [`Receiver::recv_span_with`]).
    #[inline]
    pub(super) fn take_with<R>(
        &mut self,
        pos: u64,
        k: u64,
        read: impl FnOnce(SpanView<'_, T>) -> R,
    ) -> Result<R> {
        failpoint!("mpmc.recv.claimed");
        // Recorded while `read` runs: if it panics, the next call or the drop gives the
        // slots back, as for a forgotten guard.
        self.end.held = Some((pos, k));
        let r = read(SpanView::new(&self.end.ring, pos, k));
        self.end.held = None;
        if self.end.ring.release(pos, k) {
            Ok(r)
        } else {
            Err(Error::corrupt(format!(
                "mpmc message {pos:#x} was freed under its receiver while it was read"
            )))
        }
    }

    /// Receives the next message as a copy, blocking while the queue is empty; the slot
    /// is free again when this returns. [`Error::Disconnected`] once every sender is gone
    /// and the queue is drained; [`Error::Corrupt`] if the slot did not stay ours during
    /// the copy (tampered shared state; the copy is dropped, never returned torn).
    #[inline]
    pub fn recv(&mut self) -> Result<T> {
        let pos = self.end.claim(Deadline::NEVER)?;
        self.take(pos)
    }

    /// Receives a copy if a message is ready; never blocks ([`Error::WouldBlock`] if
    /// empty).
    pub fn try_recv(&mut self) -> Result<T> {
        let pos = self.end.try_claim()?;
        self.take(pos)
    }

    /// Receives a copy, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T> {
        let pos = self.end.claim(Deadline::after(timeout))?;
        self.take(pos)
    }

    /// Receives the next message in place, blocking while the queue is empty; the guard
    /// reads the slot and frees it when dropped. Zero copies, for cooperating senders: the
    /// guard derefs into shared memory that a misbehaving peer could write meanwhile.
    #[inline]
    pub fn recv_ref(&mut self) -> Result<RecvGuard<'_, T>> {
        let pos = self.end.claim(Deadline::NEVER)?;
        Ok(self.guard(pos))
    }

    /// Receives in place if a message is ready; never blocks.
    pub fn try_recv_ref(&mut self) -> Result<RecvGuard<'_, T>> {
        let pos = self.end.try_claim()?;
        Ok(self.guard(pos))
    }

    /// Receives in place, waiting at most `timeout`.
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<RecvGuard<'_, T>> {
        let pos = self.end.claim(Deadline::after(timeout))?;
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
}

/// A message received by [`Receiver::recv_ref`], read in place; the slot is freed when the
/// guard drops. For cooperating peers: it derefs into memory a sender could write.
///
/// ```
/// use shmkit::mpmc;
/// # let name = shmkit::__private::test_name("doc-mpmc-guard");
/// let mut tx = mpmc::Sender::<[u8; 256]>::create(&name, 4)?;
/// let mut rx = mpmc::Receiver::<[u8; 256]>::open(&name)?;
/// tx.send([9; 256])?;
/// let msg = rx.recv_ref()?; // no copy: `msg` views the slot
/// assert!(msg.iter().all(|&b| b == 9));
/// drop(msg); // frees the slot
/// assert!(rx.is_empty());
/// # Ok::<(), shmkit::Error>(())
/// ```
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
        unsafe { &*self.rx.end.ring.claimed_slot(self.pos).value.get() }
    }
}

impl<T: Pod> Drop for RecvGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.rx.end.held = None;
        // A slot freed under us already is no concern of an in-place view.
        let _ = self.rx.end.ring.release(self.pos, 1);
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
    use crate::primitive::Ordering;

    /// A sender and a receiver of a fresh queue of `cap` slots.
    fn pair(tag: &str, cap: usize) -> (Sender<u64>, Receiver<u64>) {
        let name = format!("unit-mpmc-{tag}-{}", std::process::id());
        let tx = Sender::<u64>::create(&name, cap).unwrap();
        let rx = Receiver::<u64>::open(&name).unwrap();
        (tx, rx)
    }

    #[test]
    fn a_copy_whose_slot_is_freed_under_it_is_corrupt_never_returned() {
        let (mut tx, mut rx) = pair("take", 4);
        tx.send(7).unwrap();
        tx.send(8).unwrap();
        let pos = rx.end.try_claim().unwrap();
        // A peer frees the slot while we copy it (as if it took us for dead): the copy may
        // be torn, so it is not returned.
        let freed = pos.wrapping_add(rx.end.ring.geo.one_lap);
        rx.end
            .ring
            .claimed_slot(pos)
            .stamp
            .store(freed, Ordering::Release);
        assert!(matches!(rx.take(pos), Err(Error::Corrupt { .. })));
        // The queue goes on.
        assert_eq!(rx.recv().unwrap(), 8);
    }

    /// Found by the fuzzer (`fuzz/regressions/channel_model/mpmc-len-laps-of-given-back-loans`):
    /// loans dropped without a commit free their slots at once, so `tail` ran more than two
    /// laps ahead of `head`, and `len` said 0 with two messages waiting.
    #[test]
    fn len_counts_messages_behind_laps_of_given_back_loans() {
        let (mut tx, mut rx) = pair("len-laps", 2);
        // The fuzzer's sequence: `head` left on a given-back slot, three more given back.
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert_eq!(rx.recv().unwrap(), 1);
        drop(tx.loan().unwrap()); // given back: skipped, never delivered
        assert_eq!(rx.recv().unwrap(), 2);
        for _ in 0..3 {
            drop(tx.loan().unwrap());
        }
        tx.send(9).unwrap();
        tx.send(10).unwrap();
        assert_eq!(tx.len(), 2);
        assert!(!rx.is_empty());
        assert_eq!(rx.recv().unwrap(), 9);
        assert_eq!(rx.recv().unwrap(), 10);
        assert!(rx.is_empty());
    }
}
