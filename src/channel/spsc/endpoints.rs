//! The public endpoints of the ring: [`Sender`] (with its [`Loan`] and [`WriteChunk`]) and
//! [`Receiver`] (with its [`RecvGuard`] and [`ReadChunk`]), their constructors, where a new
//! endpoint resumes, and the waiting around the stamp polls. See the [module docs](super)
//! for the contract.
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
    ends_iter, ends_try_iter, recv_iter, wait_until, PeerCheck, Poll, WaitStrategy, RECEIVER,
    SENDER,
};
use super::ring::Ring;
use super::SendError;
use crate::error::{Error, Result};
use crate::primitive::Ordering;
use crate::sync::wait::Deadline;

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
    ring: Ring<T>,
    pos: u64,
    strategy: WaitStrategy,
    peer: PeerCheck,
}

impl<T: Pod> Sender<T> {
    pair_endpoint!(SENDER, "sender", "receiver", open: 1, capacity: "The number of slots (a power of two).", len: "Messages published and not yet released (a snapshot).");

    fn at(ring: Ring<T>, pos: u64) -> Self {
        Sender {
            ring,
            pos,
            strategy: WaitStrategy::Blocking,
            peer: PeerCheck::new(),
        }
    }

    /// Where this end resumes, from the shared state (after the claim).
    fn resume(ring: &Ring<T>) -> Result<u64> {
        // Resume after the last committed message: the published tail, plus any message
        // published after the previous sender's last tail update.
        // Acquire: pairs with the previous sender's Release in its endpoint release.
        let mut pos = ring.hdr().tail.0.load(Ordering::Acquire);
        // At most one ring of stamps, as in `Receiver::resume`.
        for _ in 0..=ring.cap {
            // Acquire: pairs with the stamp stores of both sides.
            let stamp = ring.slot(pos).stamp.load(Ordering::Acquire);
            // Published (`pos + 1`), or published and already released (`pos + cap`): the
            // message at `pos` was committed; go on.
            if stamp == pos.wrapping_add(1) || stamp == pos.wrapping_add(ring.cap) {
                pos = pos.wrapping_add(1);
            } else if stamp == pos || stamp == pos.wrapping_add(1).wrapping_sub(ring.cap) {
                return Ok(pos);
            } else {
                return Err(ring.corrupt("on attach", pos, stamp));
            }
        }
        Err(Error::corrupt(
            "spsc: every slot claims to be newly published",
        ))
    }

    /// Polls the slot at our position: free, full, or corrupt.
    #[inline]
    fn poll_free(&self) -> Result<Poll<()>> {
        let pos = self.pos;
        // Acquire: pairs with the receiver's Release stamp store when it released the slot
        // (its reads of the old value are done before we overwrite it).
        let stamp = self.ring.slot(pos).stamp.load(Ordering::Acquire);
        if stamp == pos {
            Ok(Poll::Ready(()))
        } else if stamp == pos.wrapping_add(1).wrapping_sub(self.ring.cap) {
            Ok(Poll::Pending) // still holds the message of the previous lap
        } else {
            Err(self.ring.corrupt("sender", pos, stamp))
        }
    }

    fn wait_free(&mut self, deadline: Deadline) -> Result<()> {
        if let Poll::Ready(()) = self.poll_free()? {
            return Ok(());
        }
        let ring = &self.ring;
        let this = &*self;
        wait_until(
            &ring.hdr().space,
            self.strategy,
            deadline,
            || this.poll_free(),
            |check| ring.hdr().ends.0[RECEIVER].is_gone_by(&ring.seg, check),
        )
    }

    fn try_free(&mut self) -> Result<()> {
        match self.poll_free()? {
            Poll::Ready(()) => Ok(()),
            Poll::Pending => {
                let ring = &self.ring;
                if self.peer.gone(&ring.seg, &ring.hdr().ends.0[RECEIVER])? {
                    Err(Error::Disconnected)
                } else {
                    Err(Error::WouldBlock)
                }
            }
        }
    }

    /// Publishes the slot at our position (its value is written).
    #[inline]
    fn publish(&mut self) {
        self.stamp_published();
        self.announce();
    }

    /// Stamps the slot at our position published (its value is written) and moves on; the
    /// receiver, which polls the stamp, can take it now.
    #[inline]
    fn stamp_published(&mut self) {
        let pos = self.pos;
        // Release: publishes the value written into the slot to the receiver's Acquire
        // load of the stamp.
        self.ring
            .slot(pos)
            .stamp
            .store(pos.wrapping_add(1), Ordering::Release);
        self.pos = pos.wrapping_add(1);
        failpoint!("spsc.published");
    }

    /// After one or more stamps: updates the published counter and wakes a sleeper.
    #[inline]
    fn announce(&self) {
        // Relaxed: a published counter for `len` and for a new sender; never polled.
        self.ring.hdr().tail.0.store(self.pos, Ordering::Relaxed);
        self.ring.hdr().data.notify();
    }

    fn write_value(&mut self, v: T) {
        // SAFETY: the stamp said the slot is free for our position: the receiver does not
        // read it until we publish, and we are the only sender.
        unsafe { *self.ring.slot(self.pos).value.get() = v };
    }

    fn send_with(&mut self, v: T, deadline: Deadline) -> std::result::Result<(), SendError<T>> {
        match self.wait_free(deadline) {
            Ok(()) => {
                self.write_value(v);
                self.publish();
                Ok(())
            }
            Err(error) => Err(SendError { value: v, error }),
        }
    }

    /// Sends `v`, blocking while the ring is full. [`Error::Disconnected`] if the ring is
    /// full and the receiver is gone.
    #[inline]
    pub fn send(&mut self, v: T) -> std::result::Result<(), SendError<T>> {
        if let Ok(Poll::Ready(())) = self.poll_free() {
            self.write_value(v);
            self.publish();
            return Ok(());
        }
        self.send_with(v, Deadline::NEVER)
    }

    /// Sends `v` if there is room now; never blocks.
    pub fn try_send(&mut self, v: T) -> std::result::Result<(), SendError<T>> {
        match self.try_free() {
            Ok(()) => {
                self.write_value(v);
                self.publish();
                Ok(())
            }
            Err(error) => Err(SendError { value: v, error }),
        }
    }

    /// Sends `v`, waiting at most `timeout` for room.
    pub fn send_timeout(
        &mut self,
        v: T,
        timeout: Duration,
    ) -> std::result::Result<(), SendError<T>> {
        self.send_with(v, Deadline::after(timeout))
    }

    /// Waits for a free slot and lends it out to be written in place; [`Loan::commit`]
    /// publishes it. A loan dropped without `commit` publishes nothing.
    pub fn loan(&mut self) -> Result<Loan<'_, T>> {
        self.wait_free(Deadline::NEVER)?;
        Ok(Loan { tx: self })
    }

    /// Lends the next slot if it is free now; never blocks.
    pub fn try_loan(&mut self) -> Result<Loan<'_, T>> {
        self.try_free()?;
        Ok(Loan { tx: self })
    }

    /// Waits until at least one slot is free, then lends up to `n` consecutive free slots
    /// for writing in place; [`WriteChunk::commit`] publishes a prefix of them at once.
    pub fn write_chunk(&mut self, n: usize) -> Result<WriteChunk<'_, T>> {
        self.wait_free(Deadline::NEVER)?;
        let mut len = 1;
        while len < n.min(self.ring.cap as usize) {
            let pos = self.pos.wrapping_add(len as u64);
            // Acquire: as in `poll_free`.
            if self.ring.slot(pos).stamp.load(Ordering::Acquire) != pos {
                break;
            }
            len += 1;
        }
        Ok(WriteChunk { tx: self, len })
    }
}

pair_endpoint_impls!([T: Pod] Sender<T>, SENDER, "spsc::Sender");

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
        self.tx.publish();
        Ok(())
    }
}

impl<T: Pod> Deref for Loan<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the slot is free for our position: only we access it until we publish.
        unsafe { &*self.tx.ring.slot(self.tx.pos).value.get() }
    }
}

impl<T: Pod> DerefMut for Loan<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes the access unique.
        unsafe { &mut *self.tx.ring.slot(self.tx.pos).value.get() }
    }
}

impl<T: Pod> fmt::Debug for Loan<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loan")
            .field("position", &self.tx.pos)
            .finish()
    }
}

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
pub struct WriteChunk<'a, T: Pod> {
    tx: &'a mut Sender<T>,
    len: usize,
}

impl<T: Pod> WriteChunk<'_, T> {
    /// How many slots were lent.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no slot was lent (never: a chunk has at least one).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Slot `i` of the chunk, to write in place.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        (i < self.len).then(|| {
            let pos = self.tx.pos.wrapping_add(i as u64);
            // SAFETY: slots `pos..pos + len` were free for their positions when lent, and
            // stay ours until we publish them.
            unsafe { &mut *self.tx.ring.slot(pos).value.get() }
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

    /// Publishes the first `n` slots (at most the chunk's length), in order.
    pub fn commit(self, n: usize) {
        let n = n.min(self.len);
        for _ in 0..n {
            self.tx.stamp_published();
        }
        if n > 0 {
            self.tx.announce();
        }
    }

    /// Publishes every slot of the chunk.
    pub fn commit_all(self) {
        let n = self.len;
        self.commit(n);
    }
}

impl<T: Pod> fmt::Debug for WriteChunk<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteChunk")
            .field("len", &self.len)
            .finish()
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
    ring: Ring<T>,
    pos: u64,
    strategy: WaitStrategy,
    peer: PeerCheck,
}

impl<T: Pod> Receiver<T> {
    pair_endpoint!(RECEIVER, "receiver", "sender", open: 1, capacity: "The number of slots (a power of two).", len: "Messages published and not yet released (a snapshot).");

    fn at(ring: Ring<T>, pos: u64) -> Self {
        Receiver {
            ring,
            pos,
            strategy: WaitStrategy::Blocking,
            peer: PeerCheck::new(),
        }
    }

    /// Where this end resumes, from the shared state (after the claim).
    fn resume(ring: &Ring<T>) -> Result<u64> {
        // Resume at the first message not yet released.
        // Acquire: pairs with the previous receiver's Release in its endpoint release.
        let mut pos = ring.hdr().head.0.load(Ordering::Acquire);
        // At most one ring of stamps, whatever a peer forged: the slot of `pos + cap` is
        // the slot of `pos`, whose stamp cannot say "released" for both laps (tests/hostile.rs
        // forges the longest such walk); the loop bound holds even against stamps
        // rewritten during the walk.
        for _ in 0..=ring.cap {
            // Acquire: pairs with the stamp stores of both sides.
            let stamp = ring.slot(pos).stamp.load(Ordering::Acquire);
            // Released after the last head update (`pos + cap`), and perhaps already
            // refilled by the sender for the next lap (`pos + cap + 1`): go on.
            let next_lap = pos.wrapping_add(ring.cap);
            if stamp == next_lap || stamp == next_lap.wrapping_add(1) {
                pos = pos.wrapping_add(1);
            } else if stamp == pos || stamp == pos.wrapping_add(1) {
                return Ok(pos);
            } else {
                return Err(ring.corrupt("on attach", pos, stamp));
            }
        }
        Err(Error::corrupt(
            "spsc: every slot claims to be newly released",
        ))
    }

    #[inline]
    fn poll_ready(&self) -> Result<Poll<()>> {
        let pos = self.pos;
        // Acquire: pairs with the sender's Release stamp store: the value is visible.
        let stamp = self.ring.slot(pos).stamp.load(Ordering::Acquire);
        if stamp == pos.wrapping_add(1) {
            Ok(Poll::Ready(()))
        } else if stamp == pos {
            Ok(Poll::Pending)
        } else {
            Err(self.ring.corrupt("receiver", pos, stamp))
        }
    }

    fn wait_ready(&mut self, deadline: Deadline) -> Result<()> {
        if let Poll::Ready(()) = self.poll_ready()? {
            return Ok(());
        }
        let ring = &self.ring;
        let this = &*self;
        wait_until(
            &ring.hdr().data,
            self.strategy,
            deadline,
            || this.poll_ready(),
            |check| ring.hdr().ends.0[SENDER].is_gone_by(&ring.seg, check),
        )
    }

    fn try_ready(&mut self) -> Result<()> {
        match self.poll_ready()? {
            Poll::Ready(()) => Ok(()),
            Poll::Pending => {
                let ring = &self.ring;
                if self.peer.gone(&ring.seg, &ring.hdr().ends.0[SENDER])? {
                    // The sender may have published just before it went.
                    match self.poll_ready()? {
                        Poll::Ready(()) => Ok(()),
                        Poll::Pending => Err(Error::Disconnected),
                    }
                } else {
                    Err(Error::WouldBlock)
                }
            }
        }
    }

    /// Releases the slot at our position.
    #[inline]
    fn release(&mut self) {
        self.stamp_released();
        self.announce();
    }

    /// Stamps the slot at our position free for the sender's next lap and moves on.
    #[inline]
    fn stamp_released(&mut self) {
        let pos = self.pos;
        // Release: our reads of the value are done before the sender may overwrite it
        // (pairs with its Acquire load in `poll_free`).
        self.ring
            .slot(pos)
            .stamp
            .store(pos.wrapping_add(self.ring.cap), Ordering::Release);
        self.pos = pos.wrapping_add(1);
        failpoint!("spsc.released");
    }

    /// After one or more releases: updates the published counter and wakes a sleeper.
    #[inline]
    fn announce(&self) {
        // Relaxed: a published counter for `len` and for a new receiver; never polled.
        self.ring.hdr().head.0.store(self.pos, Ordering::Relaxed);
        self.ring.hdr().space.notify();
    }

    fn guard(&mut self) -> RecvGuard<'_, T> {
        RecvGuard { rx: self }
    }

    /// Copies the ready message at our position out and releases its slot.
    #[inline]
    fn take(&mut self) -> T {
        // SAFETY: the slot is in bounds and the stamp said its message is published; a
        // volatile read of a Pod value, valid whatever bytes a misbehaving peer put there.
        let v = unsafe { crate::copy::read_shared(self.ring.slot(self.pos).value.get()) };
        self.release();
        v
    }

    /// Receives the next message as a copy, blocking while the ring is empty; the slot is
    /// free again when this returns. [`Error::Disconnected`] once the sender is gone and
    /// everything it committed has been received.
    #[inline]
    pub fn recv(&mut self) -> Result<T> {
        if let Poll::Ready(()) = self.poll_ready()? {
            return Ok(self.take());
        }
        self.wait_ready(Deadline::NEVER)?;
        Ok(self.take())
    }

    /// Receives a copy if a message is ready; never blocks ([`Error::WouldBlock`] if
    /// empty).
    pub fn try_recv(&mut self) -> Result<T> {
        self.try_ready()?;
        Ok(self.take())
    }

    /// Receives a copy, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T> {
        self.wait_ready(Deadline::after(timeout))?;
        Ok(self.take())
    }

    /// Receives the next message in place, blocking while the ring is empty; the guard
    /// reads the slot and frees it when dropped. Zero copies, for a cooperating sender: the
    /// guard derefs into shared memory that a misbehaving one could write meanwhile.
    #[inline]
    pub fn recv_ref(&mut self) -> Result<RecvGuard<'_, T>> {
        if let Poll::Ready(()) = self.poll_ready()? {
            return Ok(self.guard());
        }
        self.wait_ready(Deadline::NEVER)?;
        Ok(self.guard())
    }

    /// Receives in place if a message is ready; never blocks.
    pub fn try_recv_ref(&mut self) -> Result<RecvGuard<'_, T>> {
        self.try_ready()?;
        Ok(self.guard())
    }

    /// Receives in place, waiting at most `timeout`.
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<RecvGuard<'_, T>> {
        self.wait_ready(Deadline::after(timeout))?;
        Ok(self.guard())
    }

    /// Waits until at least one message is ready, then lends up to `n` consecutive ready
    /// messages to read in place; [`ReadChunk::commit_all`] releases them.
    pub fn read_chunk(&mut self, n: usize) -> Result<ReadChunk<'_, T>> {
        self.wait_ready(Deadline::NEVER)?;
        let mut len = 1;
        while len < n.min(self.ring.cap as usize) {
            let pos = self.pos.wrapping_add(len as u64);
            // Acquire: as in `poll_ready`.
            if self.ring.slot(pos).stamp.load(Ordering::Acquire) != pos.wrapping_add(1) {
                break;
            }
            len += 1;
        }
        Ok(ReadChunk { rx: self, len })
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

pair_endpoint_impls!([T: Pod] Receiver<T>, RECEIVER, "spsc::Receiver");

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
        unsafe { &*self.rx.ring.slot(self.rx.pos).value.get() }
    }
}

impl<T: Pod> Drop for RecvGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.rx.release();
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RecvGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

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
pub struct ReadChunk<'a, T: Pod> {
    rx: &'a mut Receiver<T>,
    len: usize,
}

impl<T: Pod> ReadChunk<'_, T> {
    /// How many messages were lent.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no message was lent (never: a chunk has at least one).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Message `i` of the chunk, in place.
    pub fn get(&self, i: usize) -> Option<&T> {
        (i < self.len).then(|| {
            let pos = self.rx.pos.wrapping_add(i as u64);
            // SAFETY: messages `pos..pos + len` were published when lent and stay ours
            // until released.
            unsafe { &*self.rx.ring.slot(pos).value.get() }
        })
    }

    /// The messages, in place.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        (0..self.len).filter_map(move |i| self.get(i))
    }

    /// Releases the first `n` messages (at most the chunk's length).
    pub fn commit(self, n: usize) {
        let n = n.min(self.len);
        for _ in 0..n {
            self.rx.stamp_released();
        }
        if n > 0 {
            self.rx.announce();
        }
    }

    /// Releases every message of the chunk.
    pub fn commit_all(self) {
        let n = self.len;
        self.commit(n);
    }
}

impl<T: Pod> fmt::Debug for ReadChunk<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadChunk").field("len", &self.len).finish()
    }
}

#[allow(dead_code)]
fn _assert_send<T: Pod + Send>() {
    fn is_send<X: Send>(_: PhantomData<X>) {}
    is_send(PhantomData::<Sender<T>>);
    is_send(PhantomData::<Receiver<T>>);
}
