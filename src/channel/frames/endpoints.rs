//! The public endpoints of a frame channel: [`Sender`] (with its [`FrameLoan`]) and
//! [`Receiver`] (with its [`Frame`]), their constructors, where a new endpoint resumes,
//! reserving room for a record (with a padding record at the end of the ring), and the
//! waiting. See the [module docs](super) for the contract.
//!
//! What lives here touches shared memory through the ring (`ring`): the sender writes the
//! record at its position and the stamp after it, the receiver reads published records and
//! publishes its position; each updates only its own counter and endpoint registration.

use super::super::{pair_endpoint, pair_endpoint_impls};
use crate::os::failpoint::failpoint;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bytemuck::Pod;

use super::super::{
    ends_iter, ends_try_iter, recv_iter, wait_until, PeerCheck, Poll, WaitStrategy, RECEIVER,
    SENDER,
};
use super::ring::{poll_frame, record_size, release, Ring, ALIGN, PAD, REC_HDR};
use crate::error::{Error, Result};
use crate::primitive::Ordering;
use crate::sync::wait::Deadline;

// ---------------------------------------------------------------------------------------
// Sender

/// The producing end of a frame channel. See the [module docs](crate::frames).
///
/// ```
/// use shmkit::{frames, Error};
/// # let name = shmkit::__private::test_name("doc-frames-tx");
/// let mut tx = frames::Sender::create(&name, 4096)?; // unlinks the name on drop
/// let mut rx = frames::Receiver::open(&name)?; // usually in another process
/// tx.send(b"any length")?;
/// tx.send_slice(&[1u32, 2, 3])?; // a slice of any Pod type, as one frame
/// assert!(matches!(tx.send(&vec![0; tx.max_frame() + 1]), Err(Error::InvalidArgument(_))));
/// assert_eq!(rx.recv()?, b"any length");
/// assert_eq!(rx.recv()?.len(), 12);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Sender {
    ring: Ring,
    pos: u64,
    /// Our cached copy of the receiver's published position.
    head: u64,
    strategy: WaitStrategy,
    peer: PeerCheck,
}

/// The largest payload one frame can carry in a ring of `cap` bytes: a record, plus the
/// header of the next one that the sender clears.
fn max_frame(cap: u64) -> usize {
    (cap - 2 * REC_HDR) as usize
}

impl Sender {
    pair_endpoint!(SENDER, "sender", "receiver", open: 0, capacity: "The ring's size in bytes (a power of two).", len: "Bytes published and not yet released (a snapshot).");

    /// The largest payload one frame can carry.
    pub fn max_frame(&self) -> usize {
        max_frame(self.ring.cap)
    }

    fn at(ring: Ring, (pos, head): (u64, u64)) -> Self {
        Sender {
            ring,
            pos,
            head,
            strategy: WaitStrategy::Blocking,
            peer: PeerCheck::new(),
        }
    }

    /// Where this end resumes, from the shared state (after the claim).
    fn resume(ring: &Ring) -> Result<(u64, u64)> {
        let h = ring.hdr();
        // Acquire: pairs with the previous endpoints' Release in their endpoint release.
        let mut pos = h.tail.0.load(Ordering::Acquire);
        let head = h.head.0.load(Ordering::Acquire);
        // Skip records published after the last tail update (a sender that died between
        // its stamp and its tail store). The receiver may have consumed those already, so
        // until the walk ends the head may be ahead of the stale tail, by at most a ring.
        let out_of_range = |pos: u64| {
            Error::corrupt(format!(
                "frame ring positions out of range: tail {pos}, head {head}"
            ))
        };
        // At most one ring of records (each is 16 bytes or more), and never more than a
        // ring from the head, whatever a peer forged (tests/hostile.rs).
        for _ in 0..=(ring.cap / REC_HDR) {
            if (pos.wrapping_sub(head) > ring.cap && head.wrapping_sub(pos) > ring.cap)
                || !pos.is_multiple_of(ALIGN)
            {
                return Err(out_of_range(pos));
            }
            // Acquire: pairs with the previous sender's Release stamp store.
            if ring.stamp(pos).load(Ordering::Acquire) != pos.wrapping_add(1) {
                if pos.wrapping_sub(head) > ring.cap {
                    return Err(out_of_range(pos));
                }
                return Ok((pos, head));
            }
            let (n, pad) = ring.record_at(pos)?;
            pos = pos.wrapping_add(if pad { n } else { record_size(n) });
        }
        Err(Error::corrupt(
            "frame ring: endless chain of published records",
        ))
    }

    /// Whether `need` bytes from our position are free (refreshing the cached head).
    fn poll_space(&mut self, need: u64) -> Result<Poll<()>> {
        if self.ring.cap - self.pos.wrapping_sub(self.head) >= need {
            return Ok(Poll::Ready(()));
        }
        // Acquire: pairs with the receiver's Release store of `head` after it finished
        // reading the bytes it released.
        let head = self.ring.hdr().head.0.load(Ordering::Acquire);
        let used = self.pos.wrapping_sub(head);
        if used > self.ring.cap {
            return Err(Error::corrupt(format!(
                "frame ring: receiver position {head} is not within a ring of our position {}",
                self.pos
            )));
        }
        self.head = head;
        Ok(if self.ring.cap - used >= need {
            Poll::Ready(())
        } else {
            Poll::Pending
        })
    }

    fn wait_space(&mut self, need: u64, deadline: Option<Deadline>) -> Result<()> {
        if let Poll::Ready(()) = self.poll_space(need)? {
            return Ok(());
        }
        let Some(deadline) = deadline else {
            let gone = {
                let ring = &self.ring;
                self.peer.gone(&ring.seg, &ring.hdr().ends.0[RECEIVER])?
            };
            return Err(if gone {
                Error::Disconnected
            } else {
                Error::WouldBlock
            });
        };
        let strategy = self.strategy;
        // Disjoint field borrows: the ring for both closures, the cached head for `poll`.
        let (ring, pos, head) = (&self.ring, self.pos, &mut self.head);
        let signal = &ring.hdr().space;
        let mut poll = || -> Result<Poll<()>> {
            // Acquire: as in `poll_space`.
            let h = ring.hdr().head.0.load(Ordering::Acquire);
            let used = pos.wrapping_sub(h);
            if used > ring.cap {
                return Err(Error::corrupt("frame ring: receiver position out of range"));
            }
            *head = h;
            Ok(if ring.cap - used >= need {
                Poll::Ready(())
            } else {
                Poll::Pending
            })
        };
        wait_until(signal, strategy, deadline, &mut poll, |check| {
            ring.hdr().ends.0[RECEIVER].is_gone_by(&ring.seg, check)
        })
    }

    /// Reserves a record of `len` bytes at our position (writing a padding record first if
    /// it would not fit before the end). `deadline: None` means do not wait.
    fn reserve(&mut self, len: usize, deadline: Option<Deadline>) -> Result<u64> {
        let len = len as u64;
        if len > self.ring.cap - 2 * REC_HDR {
            return Err(Error::InvalidArgument(format!(
                "a frame of {len} bytes does not fit in a ring of {} bytes (at most {})",
                self.ring.cap,
                self.ring.cap - 2 * REC_HDR
            )));
        }
        let size = record_size(len);
        let room = self.ring.cap - self.ring.offset(self.pos);
        if size > room {
            // Pad to the end of the ring; the record goes to offset 0.
            self.wait_space(room + REC_HDR, deadline)?;
            let pos = self.pos;
            // Relaxed: published by the Release stamp store below.
            self.ring.len_word(pos).store(PAD | room, Ordering::Relaxed);
            self.finish(pos, room);
        }
        // The record, and the header of the next one (cleared before we publish).
        self.wait_space(size + REC_HDR, deadline)?;
        Ok(size)
    }

    /// Clears the next record's stamp and publishes the record at `pos` spanning `size`.
    fn finish(&mut self, pos: u64, size: u64) {
        let next = pos.wrapping_add(size);
        // Relaxed: ordered before the Release stamp store below, which the receiver's
        // Acquire load of that stamp synchronises with; the receiver reads `next`'s stamp
        // only after that.
        self.ring.stamp(next).store(0, Ordering::Relaxed);
        // Release: publishes the length word, the payload and the cleared next stamp to the
        // receiver's Acquire load of this stamp.
        self.ring
            .stamp(pos)
            .store(pos.wrapping_add(1), Ordering::Release);
        self.pos = next;
        failpoint!("frames.published");
        // Relaxed: a published counter for `len` and for a new sender; never polled.
        self.ring.hdr().tail.0.store(next, Ordering::Relaxed);
        self.ring.hdr().data.notify();
    }

    fn commit(&mut self, len: u64, size: u64) {
        let pos = self.pos;
        // Relaxed: published by the Release stamp store in `finish`.
        self.ring.len_word(pos).store(len, Ordering::Relaxed);
        self.finish(pos, size);
    }

    fn send_with(&mut self, bytes: &[u8], deadline: Option<Deadline>) -> Result<()> {
        let size = self.reserve(bytes.len(), deadline)?;
        // SAFETY: the reserved record lies inside the data area (checked by `reserve`) and
        // the receiver does not read it before we publish it.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ring.payload(self.pos), bytes.len())
        };
        self.commit(bytes.len() as u64, size);
        Ok(())
    }

    /// Sends a copy of `bytes`, blocking while the ring lacks room.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.send_with(bytes, Some(Deadline::NEVER))
    }

    /// Sends `values` as one frame (their bytes).
    pub fn send_slice<T: Pod>(&mut self, values: &[T]) -> Result<()> {
        self.send(bytemuck::cast_slice(values))
    }

    /// Sends if there is room now; never blocks ([`Error::WouldBlock`] if full).
    pub fn try_send(&mut self, bytes: &[u8]) -> Result<()> {
        self.send_with(bytes, None)
    }

    /// Sends, waiting at most `timeout` for room.
    pub fn send_timeout(&mut self, bytes: &[u8], timeout: Duration) -> Result<()> {
        self.send_with(bytes, Some(Deadline::after(timeout)))
    }

    /// Waits for room and lends `len` bytes of the ring to fill in place;
    /// [`FrameLoan::commit`] publishes them. A loan dropped uncommitted publishes nothing.
    pub fn loan(&mut self, len: usize) -> Result<FrameLoan<'_>> {
        let size = self.reserve(len, Some(Deadline::NEVER))?;
        Ok(FrameLoan {
            tx: self,
            len: len as u64,
            size,
        })
    }

    /// Lends `len` bytes if there is room now; never blocks.
    pub fn try_loan(&mut self, len: usize) -> Result<FrameLoan<'_>> {
        let size = self.reserve(len, None)?;
        Ok(FrameLoan {
            tx: self,
            len: len as u64,
            size,
        })
    }
}

pair_endpoint_impls!([] Sender, SENDER, "frames::Sender");

/// Bytes of the ring lent by [`Sender::loan`], to fill in place.
///
/// ```
/// use shmkit::frames;
/// # let name = shmkit::__private::test_name("doc-frames-loan");
/// let mut tx = frames::Sender::create(&name, 4096)?;
/// let mut rx = frames::Receiver::open(&name)?;
/// let mut loan = tx.loan(3 * 8)?; // 24 bytes inside the ring
/// loan.as_mut_slice::<f64>()?.copy_from_slice(&[0.5, 1.5, 2.5]);
/// loan.commit()?; // a loan dropped uncommitted publishes nothing
/// assert_eq!(rx.recv_ref()?.as_slice::<f64>()?, &[0.5, 1.5, 2.5]);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[must_use = "a loan publishes nothing unless committed"]
pub struct FrameLoan<'a> {
    tx: &'a mut Sender,
    len: u64,
    size: u64,
}

impl FrameLoan<'_> {
    /// Publishes the frame. Never fails (it returns `Result` like the other channels'
    /// loans, whose commit can).
    pub fn commit(self) -> Result<()> {
        let (len, size) = (self.len, self.size);
        self.tx.commit(len, size);
        Ok(())
    }

    /// The lent bytes viewed as `T`s (the length must be a multiple of `T`'s size):
    /// [`Error::InvalidArgument`] if it is not, or if `T` needs more than 16-byte alignment.
    pub fn as_mut_slice<T: Pod>(&mut self) -> Result<&mut [T]> {
        let len = self.len;
        bytemuck::try_cast_slice_mut(self).map_err(|e| cast_error::<T>(e, len))
    }
}

impl Deref for FrameLoan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the reserved record lies inside the data area and is ours until published.
        unsafe { std::slice::from_raw_parts(self.tx.ring.payload(self.tx.pos), self.len as usize) }
    }
}

impl DerefMut for FrameLoan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes the access unique.
        unsafe {
            std::slice::from_raw_parts_mut(self.tx.ring.payload(self.tx.pos), self.len as usize)
        }
    }
}

impl fmt::Debug for FrameLoan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameLoan").field("len", &self.len).finish()
    }
}

/// Why a frame of `len` bytes cannot be viewed as `T`s, in the crate's words (bytemuck's
/// error type is not part of our API).
#[cold]
fn cast_error<T>(e: bytemuck::PodCastError, len: u64) -> Error {
    let (ty, size, align) = (
        std::any::type_name::<T>(),
        std::mem::size_of::<T>(),
        std::mem::align_of::<T>(),
    );
    Error::InvalidArgument(match e {
        bytemuck::PodCastError::TargetAlignmentGreaterAndInputNotAligned
        | bytemuck::PodCastError::AlignmentMismatch => format!(
            "a frame cannot be viewed as {ty}: it needs {align}-byte alignment, and frames \
             are {PAYLOAD_ALIGN}-byte aligned"
        ),
        bytemuck::PodCastError::OutputSliceWouldHaveSlop | bytemuck::PodCastError::SizeMismatch => {
            format!("a frame of {len} bytes is not a whole number of {ty} ({size} bytes)")
        }
    })
}

/// The alignment of every payload (records start 16-aligned, after a 16-byte header).
const PAYLOAD_ALIGN: u64 = ALIGN;

// ---------------------------------------------------------------------------------------
// Receiver

/// The consuming end of a frame channel. See the [module docs](crate::frames).
///
/// ```
/// use shmkit::{frames, Error};
/// use std::time::Duration;
/// # let name = shmkit::__private::test_name("doc-frames-rx");
/// let mut rx = frames::Receiver::create(&name, 4096)?; // either side may create
/// let mut tx = frames::Sender::open(&name)?; // usually in another process
/// assert!(matches!(rx.try_recv(), Err(Error::WouldBlock)));
/// tx.send(b"one")?;
/// tx.send(b"two")?;
/// assert_eq!(rx.recv_timeout(Duration::from_secs(1))?, b"one");
/// drop(tx); // the sender goes: `iter` drains the ring, then ends
/// assert_eq!(rx.iter().collect::<Result<Vec<_>, _>>()?, [b"two".to_vec()]);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Receiver {
    ring: Ring,
    pos: u64,
    strategy: WaitStrategy,
    peer: PeerCheck,
}

impl Receiver {
    pair_endpoint!(RECEIVER, "receiver", "sender", open: 0, capacity: "The ring's size in bytes (a power of two).", len: "Bytes published and not yet released (a snapshot).");

    /// The largest payload one frame can carry.
    pub fn max_frame(&self) -> usize {
        max_frame(self.ring.cap)
    }

    fn at(ring: Ring, pos: u64) -> Self {
        Receiver {
            ring,
            pos,
            strategy: WaitStrategy::Blocking,
            peer: PeerCheck::new(),
        }
    }

    /// Where this end resumes, from the shared state (after the claim): the head, checked
    /// against the tail, in O(1); each receive then reads at most two records.
    fn resume(ring: &Ring) -> Result<u64> {
        let h = ring.hdr();
        // Acquire: pairs with the previous receiver's Release in its endpoint release.
        let pos = h.head.0.load(Ordering::Acquire);
        // Relaxed: only checked for plausibility; the stamps decide what is published.
        let tail = h.tail.0.load(Ordering::Relaxed);
        // The tail may lag the head by a record or so (a sender that died between its stamp
        // and its tail store, then the record was received); never by more than a ring.
        if !pos.is_multiple_of(ALIGN)
            || (tail.wrapping_sub(pos) > ring.cap && pos.wrapping_sub(tail) > ring.cap)
        {
            return Err(Error::corrupt(format!(
                "frame ring: receiver position {pos} is not aligned or not within a ring of the sender's {tail}"
            )));
        }
        Ok(pos)
    }

    fn poll_frame(&mut self) -> Result<Poll<u64>> {
        poll_frame(&self.ring, &mut self.pos)
    }

    fn wait_frame(&mut self, deadline: Option<Deadline>) -> Result<u64> {
        if let Poll::Ready(n) = self.poll_frame()? {
            return Ok(n);
        }
        let Some(deadline) = deadline else {
            let gone = {
                let ring = &self.ring;
                self.peer.gone(&ring.seg, &ring.hdr().ends.0[SENDER])?
            };
            if gone {
                if let Poll::Ready(n) = self.poll_frame()? {
                    return Ok(n);
                }
                return Err(Error::Disconnected);
            }
            return Err(Error::WouldBlock);
        };
        let (ring, pos) = (&self.ring, &mut self.pos);
        wait_until(
            &ring.hdr().data,
            self.strategy,
            deadline,
            || poll_frame(ring, pos),
            |check| ring.hdr().ends.0[SENDER].is_gone_by(&ring.seg, check),
        )
    }

    /// Releases `size` bytes at our position.
    fn release(&mut self, size: u64) {
        release(&self.ring, &mut self.pos, size);
    }

    fn frame(&mut self, len: u64) -> Frame<'_> {
        Frame { rx: self, len }
    }

    /// Copies the ready frame of `len` bytes at our position out and releases it.
    fn take(&mut self, len: u64) -> Vec<u8> {
        let n = len as usize;
        let mut v = Vec::with_capacity(n);
        // SAFETY: the record at our position is published and validated to fit inside the
        // data area (`record_at`); `v` has room for `n` bytes, all written by the copy. A
        // raw copy: no `&[u8]` is formed over bytes a peer may write.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ring.payload(self.pos), v.as_mut_ptr(), n);
            v.set_len(n);
        }
        self.release(record_size(len));
        v
    }

    /// Receives the next frame as an owned copy, blocking while there is none; its space
    /// is free again when this returns. [`Error::Disconnected`] once the sender is gone and
    /// everything it committed has been received.
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        let n = self.wait_frame(Some(Deadline::NEVER))?;
        Ok(self.take(n))
    }

    /// Receives a copy if a frame is ready; never blocks ([`Error::WouldBlock`] if none).
    pub fn try_recv(&mut self) -> Result<Vec<u8>> {
        let n = self.wait_frame(None)?;
        Ok(self.take(n))
    }

    /// Receives a copy, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        let n = self.wait_frame(Some(Deadline::after(timeout)))?;
        Ok(self.take(n))
    }

    /// Receives the next frame in place, blocking while there is none; the [`Frame`] views
    /// it and releases it when dropped. Zero copies, for a cooperating sender: the frame
    /// derefs into shared memory that a misbehaving one could write meanwhile.
    pub fn recv_ref(&mut self) -> Result<Frame<'_>> {
        let n = self.wait_frame(Some(Deadline::NEVER))?;
        Ok(self.frame(n))
    }

    /// Receives a frame in place if one is ready; never blocks.
    pub fn try_recv_ref(&mut self) -> Result<Frame<'_>> {
        let n = self.wait_frame(None)?;
        Ok(self.frame(n))
    }

    /// Receives in place, waiting at most `timeout`.
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<Frame<'_>> {
        let n = self.wait_frame(Some(Deadline::after(timeout)))?;
        Ok(self.frame(n))
    }

    /// Waits (at most `timeout`; `None`: not at all) until a frame is ready, without
    /// receiving it.
    pub(crate) fn peek(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.wait_frame(timeout.map(Deadline::after)).map(drop)
    }

    /// A blocking iterator of copies ([`Receiver::recv`]). It ends (`None`) when the
    /// sender is gone and the ring is drained; any other error (such as
    /// [`Error::Corrupt`]) is yielded once, and then it ends.
    pub fn iter(&mut self) -> impl std::iter::FusedIterator<Item = Result<Vec<u8>>> + '_ {
        recv_iter(move || self.recv(), ends_iter)
    }

    /// An iterator of copies of the frames ready now ([`Receiver::try_recv`]). It ends
    /// when none is ready (or the sender is gone and the ring is drained); any other error
    /// is yielded once, and then it ends.
    pub fn try_iter(&mut self) -> impl std::iter::FusedIterator<Item = Result<Vec<u8>>> + '_ {
        recv_iter(move || self.try_recv(), ends_try_iter)
    }
}

pair_endpoint_impls!([] Receiver, RECEIVER, "frames::Receiver");

/// A frame received by [`Receiver::recv_ref`], viewed in place; released when dropped. For
/// cooperating peers: it derefs into memory the sender could write.
///
/// ```
/// use shmkit::frames;
/// # let name = shmkit::__private::test_name("doc-frames-frame");
/// let mut tx = frames::Sender::create(&name, 4096)?;
/// let mut rx = frames::Receiver::open(&name)?;
/// tx.send_slice(&[1.0f64, 2.0, 4.0])?;
/// let frame = rx.recv_ref()?; // no copy: `frame` views the record in the ring
/// assert_eq!(frame.len(), 24); // as bytes
/// assert_eq!(frame.as_slice::<f64>()?.iter().sum::<f64>(), 7.0); // as f64s
/// drop(frame); // releases the record
/// assert!(rx.is_empty());
/// # Ok::<(), shmkit::Error>(())
/// ```
#[must_use = "dropping the frame releases it at once"]
pub struct Frame<'a> {
    rx: &'a mut Receiver,
    len: u64,
}

impl Frame<'_> {
    /// The frame viewed as `T`s, in place (payloads are 16-byte aligned; the length must
    /// be a multiple of `T`'s size): [`Error::InvalidArgument`] if it is not, or if `T`
    /// needs more than 16-byte alignment.
    pub fn as_slice<T: Pod>(&self) -> Result<&[T]> {
        bytemuck::try_cast_slice(self).map_err(|e| cast_error::<T>(e, self.len))
    }
}

impl Deref for Frame<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the record at our position is published, validated to fit inside the
        // data area, and not reused by the sender before we release it.
        unsafe { std::slice::from_raw_parts(self.rx.ring.payload(self.rx.pos), self.len as usize) }
    }
}

impl Drop for Frame<'_> {
    fn drop(&mut self) {
        let size = record_size(self.len);
        self.rx.release(size);
    }
}

impl fmt::Debug for Frame<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame").field("len", &self.len).finish()
    }
}
