//! The public endpoints of the ring: [`Sender`] (with its [`Loan`] and [`WriteChunk`]) and
//! [`Receiver`] (with its [`RecvGuard`] and [`ReadChunk`]), their constructors, where a new
//! endpoint resumes, and the waiting around the stamp polls. See the [module docs](super)
//! for the contract.
//!
//! Both endpoints are an [`End`], generic over its side: the stamps that give a slot to
//! each side, its counter and its signals are the only differences, chosen in one place
//! each (`End::ready`, `End::pending`, `End::done`, ...). The public types add only their
//! own API on top.
//!
//! What lives here touches shared memory through the ring (`ring`): the stamp of the slot
//! at its own position, the value in it while the stamp gives it to this side, and its
//! own published counter (`tail` or `head`) and endpoint registration.

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
use crate::primitive::{AtomicU64, Ordering};
use crate::sync::wait::Deadline;

// ---------------------------------------------------------------------------------------
// The end both sides share

/// [`End`]'s side: the sender's.
const TX: bool = true;
/// [`End`]'s side: the receiver's.
const RX: bool = false;

/// One end of the ring, the sender's (`End<T, TX>`) or the receiver's (`End<T, RX>`): its
/// position (process-local), how it waits, and the stamp protocol seen from its side.
/// [`Sender`] and [`Receiver`] are each one of these.
struct End<T, const SIDE: bool> {
    ring: Ring<T>,
    pos: u64,
    strategy: WaitStrategy,
    peer: PeerCheck,
}

impl<T: Pod, const SIDE: bool> End<T, SIDE> {
    /// The peer's registration in the channel header.
    const PEER: usize = if SIDE == TX { RECEIVER } else { SENDER };

    fn at(ring: Ring<T>, pos: u64) -> Self {
        End {
            ring,
            pos,
            strategy: WaitStrategy::Blocking,
            peer: PeerCheck::new(),
        }
    }

    // The stamps of the slot of `pos` in a ring of `cap` slots, as this side reads them
    // (the module docs have the protocol).

    /// The stamp that gives the slot to this side: free for `pos` (sender), published for
    /// `pos` (receiver).
    #[inline]
    fn ready(pos: u64) -> u64 {
        if SIDE == TX {
            pos
        } else {
            pos.wrapping_add(1)
        }
    }

    /// The stamp that says the peer still has the slot: the previous lap's message
    /// (sender), not yet published (receiver).
    #[inline]
    fn pending(pos: u64, cap: u64) -> u64 {
        if SIDE == TX {
            pos.wrapping_add(1).wrapping_sub(cap)
        } else {
            pos
        }
    }

    /// The stamp this side leaves when done with the slot: published (sender), free for
    /// the next lap (receiver).
    #[inline]
    fn done(pos: u64, cap: u64) -> u64 {
        if SIDE == TX {
            pos.wrapping_add(1)
        } else {
            pos.wrapping_add(cap)
        }
    }

    /// The stamps that say an earlier end of this side was done with the slot, perhaps
    /// after its last counter update, and the peer may have taken it since: published, or
    /// published and released (sender); released, or released and refilled for the next
    /// lap (receiver).
    #[inline]
    fn passed(pos: u64, cap: u64) -> [u64; 2] {
        let done = Self::done(pos, cap);
        if SIDE == TX {
            [done, pos.wrapping_add(cap)]
        } else {
            [done, done.wrapping_add(1)]
        }
    }

    /// This side's published counter: `tail` (sender), `head` (receiver).
    #[inline]
    fn counter(h: &Header) -> &AtomicU64 {
        if SIDE == TX {
            &h.tail.0
        } else {
            &h.head.0
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

    /// Where this end resumes, from the shared state (after the claim): after the slots
    /// that an earlier end of this side was done with, even after its last counter update
    /// (it died in between).
    fn resume(ring: &Ring<T>) -> Result<u64> {
        let cap = ring.cap;
        // Acquire: pairs with the previous end's Release in its endpoint release.
        let mut pos = Self::counter(ring.hdr()).load(Ordering::Acquire);
        // At most one ring of stamps, whatever a peer forged: the slot of `pos + cap` is
        // the slot of `pos`, whose stamp cannot say "passed" for both laps (tests/hostile.rs
        // forges the longest such walk); the loop bound holds even against stamps
        // rewritten during the walk.
        for _ in 0..=cap {
            // Acquire: pairs with the stamp stores of both sides.
            let stamp = ring.slot(pos).stamp.load(Ordering::Acquire);
            if Self::passed(pos, cap).contains(&stamp) {
                pos = pos.wrapping_add(1);
            } else if stamp == Self::ready(pos) || stamp == Self::pending(pos, cap) {
                return Ok(pos);
            } else {
                return Err(ring.corrupt("on attach", pos, stamp));
            }
        }
        Err(Error::corrupt(if SIDE == TX {
            "spsc: every slot claims to be newly published"
        } else {
            "spsc: every slot claims to be newly released"
        }))
    }

    /// Whether the slot `i` places after our position is ours now (by its stamp).
    #[inline]
    fn is_ready(&self, i: u64) -> bool {
        let pos = self.pos.wrapping_add(i);
        // Acquire: as in `poll`.
        self.ring.slot(pos).stamp.load(Ordering::Acquire) == Self::ready(pos)
    }

    /// Polls the slot at our position: ours, still the peer's, or corrupt.
    #[inline]
    fn poll(&self) -> Result<Poll<()>> {
        let pos = self.pos;
        // Acquire: pairs with the peer's Release stamp store in `stamp_done`: the sender's
        // value is visible to the receiver; the receiver's reads of the old value are done
        // before the sender overwrites it.
        let stamp = self.ring.slot(pos).stamp.load(Ordering::Acquire);
        if stamp == Self::ready(pos) {
            Ok(Poll::Ready(()))
        } else if stamp == Self::pending(pos, self.ring.cap) {
            Ok(Poll::Pending)
        } else {
            let role = if SIDE == TX { "sender" } else { "receiver" };
            Err(self.ring.corrupt(role, pos, stamp))
        }
    }

    /// Waits until the slot at our position is ours, until `deadline`.
    fn wait(&mut self, deadline: Deadline) -> Result<()> {
        if let Poll::Ready(()) = self.poll()? {
            return Ok(());
        }
        let ring = &self.ring;
        let this = &*self;
        wait_until(
            Self::signals(ring.hdr()).0,
            self.strategy,
            deadline,
            || this.poll(),
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
                } else if SIDE == RX && matches!(self.poll()?, Poll::Ready(())) {
                    // The sender may have published just before it went.
                    Ok(())
                } else {
                    Err(Error::Disconnected)
                }
            }
        }
    }

    /// Waits until the slot at our position is ours, then counts how many of the next `n`
    /// (at least one, at most a ring) are.
    fn wait_chunk(&mut self, n: usize) -> Result<usize> {
        self.wait(Deadline::NEVER)?;
        let mut len = 1;
        while len < n.min(self.ring.cap as usize) && self.is_ready(len as u64) {
            len += 1;
        }
        Ok(len)
    }

    /// The value in the slot `i` places after our position.
    #[inline]
    fn value(&self, i: usize) -> *mut T {
        self.ring.slot(self.pos.wrapping_add(i as u64)).value.get()
    }

    /// Hands the slot at our position to the peer: stamps it and announces it.
    #[inline]
    fn finish(&mut self) {
        self.stamp_done();
        self.announce();
    }

    /// Hands the first `n` slots from our position to the peer, in order.
    fn finish_n(&mut self, n: usize) {
        for _ in 0..n {
            self.stamp_done();
        }
        if n > 0 {
            self.announce();
        }
    }

    /// Stamps the slot at our position done (published, or free for the sender's next
    /// lap) and moves on; the peer, which polls the stamp, can take it now.
    #[inline]
    fn stamp_done(&mut self) {
        let pos = self.pos;
        // Release: the sender's publishes the value written into the slot to the
        // receiver's Acquire load of the stamp; the receiver's says that its reads of the
        // value are done before the sender may overwrite it (pairs with the sender's
        // Acquire load in `poll`).
        self.ring
            .slot(pos)
            .stamp
            .store(Self::done(pos, self.ring.cap), Ordering::Release);
        self.pos = pos.wrapping_add(1);
        if SIDE == TX {
            failpoint!("spsc.published");
        } else {
            failpoint!("spsc.released");
        }
    }

    /// After one or more stamps: updates the published counter and wakes a sleeper.
    #[inline]
    fn announce(&self) {
        let h = self.ring.hdr();
        // Relaxed: a published counter for `len` and for a new end of this side; never
        // polled.
        Self::counter(h).store(self.pos, Ordering::Relaxed);
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
        // SAFETY: the stamp said the slot is free for our position: the receiver does not
        // read it until we publish, and we are the only sender.
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
        // SAFETY: the slot is free for our position: only we access it until we publish.
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
            // SAFETY: the `len` slots from our position were free for their positions when
            // lent, and stay ours until we publish them.
            unsafe { &mut *self.end.value(i) }
        })
    }

    /// Fills the chunk from `values` (as many as fit) and returns how many were written;
    /// they are published by `commit`.
    pub fn fill_from(&mut self, values: impl IntoIterator<Item = T>) -> usize {
        let mut n = 0;
        for v in values.into_iter().take(self.len) {
            *self.get_mut(n).expect("n < len") = v;
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
        (0..self.len).filter_map(move |i| self.get(i))
    }
}

#[allow(dead_code)]
fn _assert_send<T: Pod + Send>() {
    fn is_send<X: Send>(_: PhantomData<X>) {}
    is_send(PhantomData::<Sender<T>>);
    is_send(PhantomData::<Receiver<T>>);
}
