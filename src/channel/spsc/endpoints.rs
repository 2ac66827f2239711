//! The public endpoints of the ring: [`Sender`] (with its [`Loan`] and [`WriteChunk`]) and
//! [`Receiver`] (with its [`RecvGuard`] and [`ReadChunk`]), their constructors, where a new
//! endpoint resumes, and the waiting around the polls. See the [module docs](super) for
//! the contract.
//!
//! Both endpoints are an [`End`], generic over its side: what it polls (the sender its
//! cached copy of `head`, the receiver the stamp of the slot at its position), how it
//! hands slots over (the sender stamps them, the receiver stores `head`) and its signals
//! are the only differences, chosen in one place each (`End::poll_at`, `End::finish_n`,
//! `End::signals`, ...). The public types add only their own API on top.
//!
//! What lives here touches shared memory through the ring (`ring`): the stamps and values
//! of the slots the protocol gives to this side, the published counters (`tail`, written
//! by the sender; `head`, written by the receiver and read by the sender) and its own
//! endpoint registration.

use super::super::{pair_endpoint, pair_endpoint_impls};
use crate::os::failpoint::failpoint;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bytemuck::Pod;

use super::super::{
    ends_iter, ends_try_iter, recv_iter, wait_until, Header, PeerCheck, Poll, Signal, WaitStrategy,
    RECEIVER, SENDER,
};
use super::ring::Ring;
use super::SendError;
use crate::error::{Error, Result};
use crate::primitive::Ordering;
use crate::sync::wait::Deadline;

// ---------------------------------------------------------------------------------------
// The end both sides share

/// [`End`]'s side: the sender's.
const TX: bool = true;
/// [`End`]'s side: the receiver's.
const RX: bool = false;

/// One end of the ring, the sender's (`End<T, TX>`) or the receiver's (`End<T, RX>`): its
/// position (process-local), how it waits, and the protocol seen from its side.
/// [`Sender`] and [`Receiver`] are each one of these.
struct End<T, const SIDE: bool> {
    ring: Ring<T>,
    pos: u64,
    /// The sender's cached copy of the receiver's published `head` (`pos - head` never
    /// exceeds the capacity): reloaded only when it says the ring is full. The receiver
    /// does not use it.
    head: u64,
    strategy: WaitStrategy,
    peer: PeerCheck,
}

/// Whether stamp `s` of the slot of `pos` says "not published yet": the stamp of the
/// previous lap's message (`pos + 1 - cap`), or, on the first lap, the initial stamp (the
/// slot's index, which the ring starts with).
#[inline]
fn unpublished(pos: u64, cap: u64, s: u64) -> bool {
    s == pos.wrapping_add(1).wrapping_sub(cap) || (s == pos && pos < cap)
}

impl<T: Pod, const SIDE: bool> End<T, SIDE> {
    /// The peer's registration in the channel header.
    const PEER: usize = if SIDE == TX { RECEIVER } else { SENDER };

    fn at(ring: Ring<T>, (pos, head): (u64, u64)) -> Self {
        End {
            ring,
            pos,
            head,
            strategy: WaitStrategy::Blocking,
            peer: PeerCheck::new(),
        }
    }

    /// The signal this side sleeps on, and the one the peer sleeps on: `space` and `data`
    /// (sender), `data` and `space` (receiver).
    #[inline]
    fn signals(h: &Header) -> (&Signal, &Signal) {
        if SIDE == TX {
            (&h.space, &h.data)
        } else {
            (&h.data, &h.space)
        }
    }

    /// Where this end resumes, from the shared state (after the claim): `(position,
    /// head)`.
    ///
    /// A receiver resumes at the published `head` (checked against `tail` and against the
    /// stamp of the slot before it), in O(1): a message the dead receiver held but did not
    /// release is delivered again. A sender resumes after the last published message:
    /// from the published `tail` it walks over the slots whose stamps say published (an
    /// earlier sender may have died between its stamps and its `tail` store), at most one
    /// ring, and never more than a ring past `head`.
    fn resume(ring: &Ring<T>) -> Result<(u64, u64)> {
        let cap = ring.cap;
        let h = ring.hdr();
        // Acquire (both): pair with the previous ends' Release in their endpoint release
        // (and, for `head`, with the receiver's Release store of it).
        let tail = h.tail.0.load(Ordering::Acquire);
        let head = h.head.0.load(Ordering::Acquire);
        let positions = |what: &str, pos: u64| {
            Error::corrupt(format!(
                "spsc positions out of range ({what}): tail {tail}, head {head}, resuming at {pos}"
            ))
        };
        if SIDE == RX {
            // The tail may lag the head (a sender that died between its stamps and its
            // `tail` store, whose messages were received since); never by more than a ring.
            if tail.wrapping_sub(head) > cap && head.wrapping_sub(tail) > cap {
                return Err(positions("more than a ring apart", head));
            }
            // The message before `head` was published (and perhaps refilled for the next
            // lap since): a head forged ahead of the messages is refused here.
            if head != 0 {
                let prev = head.wrapping_sub(1);
                // Acquire: pairs with the sender's Release stamp store.
                let s = ring.slot(prev).stamp.load(Ordering::Acquire);
                if s != head && s != head.wrapping_add(cap) {
                    return Err(ring.corrupt("before the receiver's position", prev, s));
                }
            }
            return Ok((head, head));
        }
        let mut pos = tail;
        // At most one ring of stamps, whatever a peer forged: the slot of `pos + cap` is
        // the slot of `pos`, whose stamp cannot say "published" for both laps
        // (tests/hostile.rs forges the longest such walk); the bound holds even against
        // stamps rewritten during the walk.
        let mut walked = false;
        for _ in 0..=cap {
            // Acquire: pairs with the previous sender's Release stamp store.
            let s = ring.slot(pos).stamp.load(Ordering::Acquire);
            if s == pos.wrapping_add(1) {
                pos = pos.wrapping_add(1);
                continue;
            }
            if !unpublished(pos, cap, s) {
                return Err(ring.corrupt("on attach", pos, s));
            }
            walked = true;
            break;
        }
        if !walked {
            return Err(Error::corrupt(
                "spsc: every slot claims to be newly published",
            ));
        }
        // Never more than a ring of unreleased messages, and the receiver never ahead.
        if pos.wrapping_sub(head) > cap {
            return Err(positions("the receiver is not within a ring behind", pos));
        }
        // The message before our position was published: a tail forged ahead of the
        // messages is refused here (an empty ring has nothing to check).
        if pos != head {
            let prev = pos.wrapping_sub(1);
            // Acquire: as above.
            let s = ring.slot(prev).stamp.load(Ordering::Acquire);
            if s != pos {
                return Err(ring.corrupt("before the sender's position", prev, s));
            }
        }
        Ok((pos, head))
    }

    /// Polls for the slot at `pos`, for an end whose parts are borrowed apart (see
    /// `wait`): the sender asks whether the slot is free (by its cached `head`, reloaded
    /// if that says full), the receiver whether its message is published (by its stamp).
    #[inline]
    fn poll_at(ring: &Ring<T>, pos: u64, head: &mut u64) -> Result<Poll<()>> {
        let cap = ring.cap;
        if SIDE == TX {
            if pos.wrapping_sub(*head) < cap {
                return Ok(Poll::Ready(()));
            }
            let free = Self::reload_head(ring, pos, head)?;
            Ok(if free > 0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            })
        } else {
            // Acquire: pairs with the sender's Release stamp store in `finish_n`: the value
            // it wrote is visible to us.
            let s = ring.slot(pos).stamp.load(Ordering::Acquire);
            if s == pos.wrapping_add(1) {
                Ok(Poll::Ready(()))
            } else if unpublished(pos, cap, s) {
                Ok(Poll::Pending)
            } else {
                Err(ring.corrupt("receiver", pos, s))
            }
        }
    }

    /// The sender's reload of the receiver's `head` into `head`: how many slots are free
    /// from `pos`. A `head` ahead of `pos`, or more than a ring behind, is corrupt.
    #[inline]
    fn reload_head(ring: &Ring<T>, pos: u64, head: &mut u64) -> Result<u64> {
        // Acquire: pairs with the receiver's Release store of `head` in `release`: its reads
        // of the slots it released are done before we overwrite them.
        let h = ring.hdr().head.0.load(Ordering::Acquire);
        let used = pos.wrapping_sub(h);
        if used > ring.cap {
            return Err(Error::corrupt(format!(
                "spsc: receiver position {h} is not within a ring behind the sender's {pos}"
            )));
        }
        // `head` only grows: one behind our last reading of it was forged.
        if h.wrapping_sub(*head) > ring.cap {
            return Err(Error::corrupt(format!(
                "spsc: receiver position {h} moved back from {}",
                *head
            )));
        }
        *head = h;
        Ok(ring.cap - used)
    }

    /// Polls for the slot at our position: ours, not yet, or corrupt.
    #[inline]
    fn poll(&mut self) -> Result<Poll<()>> {
        Self::poll_at(&self.ring, self.pos, &mut self.head)
    }

    /// Waits until the slot at our position is ours, until `deadline`.
    fn wait(&mut self, deadline: Deadline) -> Result<()> {
        if let Poll::Ready(()) = self.poll()? {
            return Ok(());
        }
        // Disjoint borrows: the ring for both closures, the cached head for the poll.
        let (ring, pos, head) = (&self.ring, self.pos, &mut self.head);
        wait_until(
            Self::signals(ring.hdr()).0,
            self.strategy,
            deadline,
            || Self::poll_at(ring, pos, head),
            |check| ring.hdr().ends.0[Self::PEER].is_gone_by(&ring.seg, check),
        )
    }

    /// Whether the slot at our position is ours now; never blocks.
    fn try_now(&mut self) -> Result<()> {
        match self.poll()? {
            Poll::Ready(()) => Ok(()),
            Poll::Pending => {
                let ring = &self.ring;
                if !self.peer.gone(&ring.seg, &ring.hdr().ends.0[Self::PEER])? {
                    Err(Error::WouldBlock)
                } else if matches!(self.poll()?, Poll::Ready(())) {
                    // The sender may have published, or the receiver released, just before
                    // it went.
                    Ok(())
                } else {
                    Err(Error::Disconnected)
                }
            }
        }
    }

    /// Waits until the slot at our position is ours, then counts how many of the next `n`
    /// (at least one, at most a ring) are: the sender by its cached `head` (reloaded once
    /// if that says fewer than `n` are free), the receiver by their stamps.
    fn wait_chunk(&mut self, n: usize) -> Result<usize> {
        self.wait(Deadline::NEVER)?;
        let cap = self.ring.cap;
        let want = (n as u64).clamp(1, cap);
        if SIDE == TX {
            let mut free = cap - self.pos.wrapping_sub(self.head);
            if free < want {
                free = Self::reload_head(&self.ring, self.pos, &mut self.head)?;
            }
            // `wait` said at least one is free.
            Ok(want.min(free).max(1) as usize)
        } else {
            let (slots, pos) = (self.ring.slots(), self.pos);
            let mut len = 1;
            while len < want {
                let p = pos.wrapping_add(len);
                // Acquire: as in `poll_at`.
                if slots.at(p).stamp.load(Ordering::Acquire) != p.wrapping_add(1) {
                    break;
                }
                len += 1;
            }
            Ok(len as usize)
        }
    }

    /// The value in the slot `i` places after our position.
    #[inline]
    fn value(&self, i: usize) -> *mut T {
        self.ring.slot(self.pos.wrapping_add(i as u64)).value.get()
    }

    /// Hands the slot at our position to the peer.
    #[inline]
    fn finish(&mut self) {
        self.finish_n(1);
    }

    /// Hands the first `n` slots from our position to the peer, in order: the sender
    /// stamps each published, then stores `tail`; the receiver stores `head` once. Then
    /// wakes the peer if it sleeps.
    #[inline]
    fn finish_n(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if SIDE == TX {
            // The sender's publication of each slot: stamped `pos + 1`, so that the
            // receiver, which polls that stamp, can take it.
            let (slots, mut pos) = (self.ring.slots(), self.pos);
            for _ in 0..n {
                // Release: publishes the value written into the slot (and the stamps
                // before it) to the Acquire loads of the stamp: the receiver's in `poll_at`
                // and in `wait_chunk`'s scan, and a new sender's in `resume`.
                slots
                    .at(pos)
                    .stamp
                    .store(pos.wrapping_add(1), Ordering::Release);
                pos = pos.wrapping_add(1);
                failpoint!("spsc.published");
            }
            self.pos = pos;
        }
        let h = self.ring.hdr();
        if SIDE == TX {
            // Relaxed: a published counter for `len` and for a new sender (which checks it
            // against the stamps); never polled.
            h.tail.0.store(self.pos, Ordering::Relaxed);
        } else {
            self.pos = self.pos.wrapping_add(n as u64);
            // Release: our reads of the released slots are done before the sender, whose
            // Acquire load in `reload_head` pairs with this, overwrites them; also what a
            // new receiver resumes from.
            h.head.0.store(self.pos, Ordering::Release);
            failpoint!("spsc.released");
        }
        // The sleeper's re-check after announcing itself reads the stamp (receiver) or
        // `head` (sender) stored above: `notify`'s fence orders that store before its look
        // at the sleeper bit.
        Self::signals(h).1.notify();
    }
}

/// A chunk type: consecutive slots lent by the end of side `$side`, with what both chunk
/// types share: `len`, `is_empty`, `commit` (which hands the first `n` lent slots to the
/// peer: `$verb` them) and `commit_all`, and `Debug`.
macro_rules! chunk {
    ($(#[$attr:meta])* $chunk:ident($side:ident), $one:literal, $many:literal, $verb:literal) => {
        $(#[$attr])*
        pub struct $chunk<'a, T: Pod> {
            end: &'a mut End<T, $side>,
            len: usize,
        }

        impl<T: Pod> $chunk<'_, T> {
            #[doc = concat!("How many ", $many, " were lent.")]
            pub fn len(&self) -> usize {
                self.len
            }

            #[doc = concat!("Whether no ", $one, " was lent (never: a chunk has at least one).")]
            pub fn is_empty(&self) -> bool {
                self.len == 0
            }

            #[doc = concat!($verb, " the first `n` ", $many, " (at most the chunk's length), in order.")]
            pub fn commit(self, n: usize) {
                self.end.finish_n(n.min(self.len));
            }

            #[doc = concat!($verb, " every ", $one, " of the chunk.")]
            pub fn commit_all(self) {
                self.end.finish_n(self.len);
            }
        }

        impl<T: Pod> fmt::Debug for $chunk<'_, T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($chunk))
                    .field("len", &self.len)
                    .finish()
            }
        }
    };
}

// ---------------------------------------------------------------------------------------
// Sender

/// The producing end of an SPSC channel. See the [module docs](crate::spsc).
///
/// ```
/// use shmkit::{spsc, Error};
/// # let name = shmkit::__private::test_name("doc-spsc-tx");
/// let mut tx = spsc::Sender::<u32>::create(&name, 2)?; // unlinks the name on drop
/// let mut rx = spsc::Receiver::<u32>::open(&name)?; // usually in another process
/// tx.send(1)?;
/// tx.try_send(2)?;
/// let full = tx.try_send(3).unwrap_err(); // the value comes back
/// assert!(matches!(full.error, Error::WouldBlock));
/// assert_eq!(full.into_inner(), 3);
/// assert_eq!(rx.recv()?, 1);
/// tx.send_timeout(3, std::time::Duration::from_millis(10))?;
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Sender<T: Pod> {
    end: End<T, TX>,
}

impl<T: Pod> Sender<T> {
    pair_endpoint!(SENDER, "sender", "receiver", in end: End<T, TX>, open: 1, capacity: "The number of slots (a power of two).", len: "Messages published and not yet released (a snapshot).");

    /// Writes `v` into the free slot at our position and publishes it.
    #[inline]
    fn put(&mut self, v: T) {
        // SAFETY: the slot is in bounds, and `head` (cached or reloaded) said it is free: the
        // receiver released it (its reads were done before its Release store of `head`,
        // which our Acquire load read) and does not read it again until we publish; we are
        // the only sender.
        unsafe { *self.end.value(0) = v };
        self.end.finish();
    }

    /// Sends `v` once `ready` says the slot at our position is free; gives `v` back if not.
    fn send_if(
        &mut self,
        v: T,
        ready: impl FnOnce(&mut End<T, TX>) -> Result<()>,
    ) -> std::result::Result<(), SendError<T>> {
        match ready(&mut self.end) {
            Ok(()) => {
                self.put(v);
                Ok(())
            }
            Err(error) => Err(SendError { value: v, error }),
        }
    }

    /// Sends `v`, blocking while the ring is full. [`Error::Disconnected`] if the ring is
    /// full and the receiver is gone.
    #[inline]
    pub fn send(&mut self, v: T) -> std::result::Result<(), SendError<T>> {
        if let Ok(Poll::Ready(())) = self.end.poll() {
            self.put(v);
            return Ok(());
        }
        self.send_if(v, |end| end.wait(Deadline::NEVER))
    }

    /// Sends `v` if there is room now; never blocks.
    pub fn try_send(&mut self, v: T) -> std::result::Result<(), SendError<T>> {
        self.send_if(v, End::try_now)
    }

    /// Sends `v`, waiting at most `timeout` for room.
    pub fn send_timeout(
        &mut self,
        v: T,
        timeout: Duration,
    ) -> std::result::Result<(), SendError<T>> {
        self.send_if(v, |end| end.wait(Deadline::after(timeout)))
    }

    /// Waits for a free slot and lends it out to be written in place; [`Loan::commit`]
    /// publishes it. A loan dropped without `commit` publishes nothing.
    pub fn loan(&mut self) -> Result<Loan<'_, T>> {
        self.end.wait(Deadline::NEVER)?;
        Ok(Loan { tx: self })
    }

    /// Lends the next slot if it is free now; never blocks.
    pub fn try_loan(&mut self) -> Result<Loan<'_, T>> {
        self.end.try_now()?;
        Ok(Loan { tx: self })
    }

    /// Waits until at least one slot is free, then lends up to `n` consecutive free slots
    /// for writing in place; [`WriteChunk::commit`] publishes a prefix of them at once.
    pub fn write_chunk(&mut self, n: usize) -> Result<WriteChunk<'_, T>> {
        let len = self.end.wait_chunk(n)?;
        Ok(WriteChunk {
            end: &mut self.end,
            len,
        })
    }
}

pair_endpoint_impls!([T: Pod] Sender<T>, in end, SENDER, "spsc::Sender");

/// A slot lent by [`Sender::loan`]: derefs to the `T` in the ring.
///
/// ```
/// use shmkit::spsc;
/// # let name = shmkit::__private::test_name("doc-spsc-loan");
/// let mut tx = spsc::Sender::<[f64; 4]>::create(&name, 16)?;
/// let mut rx = spsc::Receiver::<[f64; 4]>::open(&name)?;
/// let mut slot = tx.loan()?; // the slot in the ring, written in place
/// slot[0] = 1.5;
/// slot[3] = 2.5;
/// slot.commit()?; // published; a loan dropped uncommitted publishes nothing
/// assert_eq!(rx.recv()?, [1.5, 0.0, 0.0, 2.5]);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[must_use = "a loan publishes nothing unless committed"]
pub struct Loan<'a, T: Pod> {
    tx: &'a mut Sender<T>,
}

impl<T: Pod> Loan<'_, T> {
    /// Publishes the slot. Never fails (it returns `Result` like the other channels'
    /// loans, whose commit can).
    pub fn commit(self) -> Result<()> {
        self.tx.end.finish();
        Ok(())
    }
}

impl<T: Pod> Deref for Loan<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: `head` said the slot is free (see `Sender::put`): only we access it until
        // we publish.
        unsafe { &*self.tx.end.value(0) }
    }
}

impl<T: Pod> DerefMut for Loan<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes the access unique.
        unsafe { &mut *self.tx.end.value(0) }
    }
}

impl<T: Pod> fmt::Debug for Loan<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loan")
            .field("position", &self.tx.end.pos)
            .finish()
    }
}

chunk! {
    /// Consecutive free slots lent by [`Sender::write_chunk`].
    ///
    /// ```
    /// use shmkit::spsc;
    /// # let name = shmkit::__private::test_name("doc-spsc-wchunk");
    /// let mut tx = spsc::Sender::<u64>::create(&name, 8)?;
    /// let mut rx = spsc::Receiver::<u64>::open(&name)?;
    /// let mut chunk = tx.write_chunk(4)?; // up to 4 free slots, at least 1
    /// let n = chunk.fill_from(10..14);
    /// chunk.commit(n); // publishes them at once
    /// assert_eq!(rx.try_iter().collect::<Result<Vec<_>, _>>()?, [10, 11, 12, 13]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[must_use = "a chunk publishes nothing unless committed"]
    WriteChunk(TX), "slot", "slots", "Publishes"
}

impl<T: Pod> WriteChunk<'_, T> {
    /// Slot `i` of the chunk, to write in place.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        (i < self.len).then(|| {
            // SAFETY: `head` said the `len` slots from our position were free when lent
            // (released by the receiver), and they stay ours until we publish them.
            unsafe { &mut *self.end.value(i) }
        })
    }

    /// Fills the chunk from `values` (as many as fit) and returns how many were written;
    /// they are published by `commit`.
    pub fn fill_from(&mut self, values: impl IntoIterator<Item = T>) -> usize {
        let (slots, pos) = (self.end.ring.slots(), self.end.pos);
        let mut n = 0;
        for v in values.into_iter().take(self.len) {
            // SAFETY: as in `get_mut`: slot `n < len` of the chunk is ours until published.
            unsafe { slots.at(pos.wrapping_add(n as u64)).value.get().write(v) };
            n += 1;
        }
        n
    }
}

// ---------------------------------------------------------------------------------------
// Receiver

/// The consuming end of an SPSC channel. See the [module docs](crate::spsc).
///
/// ```
/// use shmkit::{spsc, Error};
/// use std::time::Duration;
/// # let name = shmkit::__private::test_name("doc-spsc-rx");
/// let mut rx = spsc::Receiver::<u64>::create(&name, 64)?; // either side may create
/// let mut tx = spsc::Sender::<u64>::open(&name)?; // usually in another process
/// assert!(matches!(rx.try_recv(), Err(Error::WouldBlock)));
/// for i in 0..3 {
///     tx.send(i)?;
/// }
/// assert_eq!(rx.recv_timeout(Duration::from_secs(1))?, 0);
/// drop(tx); // the sender goes: `iter` drains the ring, then ends
/// assert_eq!(rx.iter().collect::<Result<Vec<_>, _>>()?, [1, 2]);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Receiver<T: Pod> {
    end: End<T, RX>,
}

impl<T: Pod> Receiver<T> {
    pair_endpoint!(RECEIVER, "receiver", "sender", in end: End<T, RX>, open: 1, capacity: "The number of slots (a power of two).", len: "Messages published and not yet released (a snapshot).");

    fn guard(&mut self) -> RecvGuard<'_, T> {
        RecvGuard { rx: self }
    }

    /// Copies the ready message at our position out and releases its slot.
    #[inline]
    fn take(&mut self) -> T {
        // SAFETY: the slot is in bounds and the stamp said its message is published; a
        // volatile read of a Pod value, valid whatever bytes a misbehaving peer put there.
        let v = unsafe { crate::copy::read_shared(self.end.value(0)) };
        self.end.finish();
        v
    }

    /// Receives the next message as a copy, blocking while the ring is empty; the slot is
    /// free again when this returns. [`Error::Disconnected`] once the sender is gone and
    /// everything it committed has been received.
    #[inline]
    pub fn recv(&mut self) -> Result<T> {
        if let Poll::Ready(()) = self.end.poll()? {
            return Ok(self.take());
        }
        self.end.wait(Deadline::NEVER)?;
        Ok(self.take())
    }

    /// Receives a copy if a message is ready; never blocks ([`Error::WouldBlock`] if
    /// empty).
    pub fn try_recv(&mut self) -> Result<T> {
        self.end.try_now()?;
        Ok(self.take())
    }

    /// Receives a copy, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T> {
        self.end.wait(Deadline::after(timeout))?;
        Ok(self.take())
    }

    /// Receives the next message in place, blocking while the ring is empty; the guard
    /// reads the slot and frees it when dropped. Zero copies, for a cooperating sender: the
    /// guard derefs into shared memory that a misbehaving one could write meanwhile.
    #[inline]
    pub fn recv_ref(&mut self) -> Result<RecvGuard<'_, T>> {
        if let Poll::Ready(()) = self.end.poll()? {
            return Ok(self.guard());
        }
        self.end.wait(Deadline::NEVER)?;
        Ok(self.guard())
    }

    /// Receives in place if a message is ready; never blocks.
    pub fn try_recv_ref(&mut self) -> Result<RecvGuard<'_, T>> {
        self.end.try_now()?;
        Ok(self.guard())
    }

    /// Receives in place, waiting at most `timeout`.
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<RecvGuard<'_, T>> {
        self.end.wait(Deadline::after(timeout))?;
        Ok(self.guard())
    }

    /// Waits until at least one message is ready, then lends up to `n` consecutive ready
    /// messages to read in place; [`ReadChunk::commit_all`] releases them.
    pub fn read_chunk(&mut self, n: usize) -> Result<ReadChunk<'_, T>> {
        let len = self.end.wait_chunk(n)?;
        Ok(ReadChunk {
            end: &mut self.end,
            len,
        })
    }

    /// A blocking iterator of copies ([`Receiver::recv`]). It ends (`None`) when the
    /// sender is gone and the ring is drained; any other error (such as
    /// [`Error::Corrupt`]) is yielded once, and then it ends.
    pub fn iter(&mut self) -> impl std::iter::FusedIterator<Item = Result<T>> + '_ {
        recv_iter(move || self.recv(), ends_iter)
    }

    /// An iterator of copies of the messages ready now ([`Receiver::try_recv`]). It ends
    /// when none is ready (or the sender is gone and the ring is drained); any other error
    /// is yielded once, and then it ends.
    pub fn try_iter(&mut self) -> impl std::iter::FusedIterator<Item = Result<T>> + '_ {
        recv_iter(move || self.try_recv(), ends_try_iter)
    }
}

pair_endpoint_impls!([T: Pod] Receiver<T>, in end, RECEIVER, "spsc::Receiver");

/// A message received by [`Receiver::recv_ref`], read in place; the slot is freed when the
/// guard drops. For cooperating peers: it derefs into memory the sender could write.
///
/// ```
/// use shmkit::spsc;
/// # let name = shmkit::__private::test_name("doc-spsc-guard");
/// let mut tx = spsc::Sender::<[u8; 64]>::create(&name, 4)?;
/// let mut rx = spsc::Receiver::<[u8; 64]>::open(&name)?;
/// tx.send([7; 64])?;
/// let msg = rx.recv_ref()?; // no copy: `msg` views the slot
/// assert_eq!(msg[63], 7);
/// drop(msg); // frees the slot
/// assert!(rx.is_empty());
/// # Ok::<(), shmkit::Error>(())
/// ```
#[must_use = "dropping the guard frees the slot at once"]
pub struct RecvGuard<'a, T: Pod> {
    rx: &'a mut Receiver<T>,
}

impl<T: Pod> Deref for RecvGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the stamp said the message at our position is published; the sender does
        // not touch the slot until we release it (a cooperating sender; see `recv_ref`).
        unsafe { &*self.rx.end.value(0) }
    }
}

impl<T: Pod> Drop for RecvGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.rx.end.finish();
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RecvGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

chunk! {
    /// Consecutive ready messages lent by [`Receiver::read_chunk`].
    ///
    /// ```
    /// use shmkit::spsc;
    /// # let name = shmkit::__private::test_name("doc-spsc-rchunk");
    /// let mut tx = spsc::Sender::<u64>::create(&name, 8)?;
    /// let mut rx = spsc::Receiver::<u64>::open(&name)?;
    /// for i in 1..=3 {
    ///     tx.send(i)?;
    /// }
    /// let chunk = rx.read_chunk(8)?; // every ready message, up to 8, in place
    /// assert_eq!(chunk.iter().sum::<u64>(), 6);
    /// chunk.commit_all(); // releases them at once
    /// assert!(rx.is_empty());
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    #[must_use = "a chunk releases nothing unless committed"]
    ReadChunk(RX), "message", "messages", "Releases"
}

impl<T: Pod> ReadChunk<'_, T> {
    /// Message `i` of the chunk, in place.
    pub fn get(&self, i: usize) -> Option<&T> {
        (i < self.len).then(|| {
            // SAFETY: the `len` messages from our position were published when lent and
            // stay ours until released.
            unsafe { &*self.end.value(i) }
        })
    }

    /// The messages, in place.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        let (slots, pos) = (self.end.ring.slots(), self.end.pos);
        (0..self.len as u64).map(move |i| {
            // SAFETY: as in `get`: message `i < len` of the chunk stays ours until released.
            unsafe { &*slots.at(pos.wrapping_add(i)).value.get() }
        })
    }
}

#[allow(dead_code)]
fn _assert_send<T: Pod + Send>() {
    fn is_send<X: Send>(_: PhantomData<X>) {}
    is_send(PhantomData::<Sender<T>>);
    is_send(PhantomData::<Receiver<T>>);
}
