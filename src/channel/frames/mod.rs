//! A single-producer single-consumer ring of variable-length records (frames) in shared
//! memory: the FloatChannel done right.
//!
//! [`Sender::send`] copies a byte slice in; [`Sender::loan`] lends `len` bytes inside the
//! ring to fill in place and [`FrameLoan::commit`] publishes them. [`Receiver::recv`]
//! (and `try_recv`, `recv_timeout`) copies the next frame out into a `Vec<u8>` and
//! releases its space: safe whatever the sender does. [`Receiver::recv_ref`] (and
//! `try_recv_ref`, `recv_ref_timeout`) returns a [`Frame`] that views the record in place
//! as `&[u8]`, or as `&[T]` for any `T: Pod` through [`Frame::as_slice`] (payloads start
//! 16-byte aligned); the space is released when the frame drops. Zero copies, for a
//! cooperating sender: the frame derefs into shared memory that a misbehaving one could
//! write while it is viewed. [`Receiver::iter`] and [`Receiver::try_iter`] yield
//! `Result<Vec<u8>>` and end as in [`spsc`](crate::spsc). Every record is contiguous: at the end of the ring a
//! padding record fills the rest. A record larger than [`Sender::max_frame`] is an error
//! at send ([`Error::InvalidArgument`]), never a hang. Blocking, waking, timeouts and
//! peer death behave as in [`spsc`](crate::spsc).
//!
//! # Sizing the ring
//! Give the ring room for the burst you expect, not much more: a ring that stays in the
//! L1 caches (tens of KiB) moves 1-4 KiB frames at up to twice the rate of a 1 MiB ring,
//! whose every line streams through L2/L3 (`shmkit bench` uses 16 KiB up to 4 KiB frames;
//! see BENCHMARKS.md). Frames larger than a quarter of the ring leave few in flight.
//!
//! # Layout
//! Records are 16-byte aligned: `[stamp: u64][len | PAD: u64][payload][padding]`. The
//! stamp is `pos + 1` once the record at byte position `pos` is published. Before it
//! publishes a record, the sender zeroes the stamp of the record that will follow it, so
//! the receiver, which polls only the stamp at its position, never mistakes old payload
//! bytes of a previous lap for a header. The sender learns about free space from the
//! receiver's published position, which it caches and reloads only when the cache says
//! the ring is full.
//!
//! ```
//! use shmkit::frames;
//! # let name = shmkit::__private::test_name("doc-frames");
//! let mut tx = frames::Sender::create(&name, 1 << 16)?;
//! let mut rx = frames::Receiver::open(&name)?; // usually in another process
//! tx.send(b"hello")?;
//! tx.send_slice(&[1.5f64, 2.5])?;
//! {
//!     let mut loan = tx.loan(3)?; // write in place
//!     loan.copy_from_slice(b"abc");
//!     loan.commit()?;
//! }
//! assert_eq!(rx.recv()?, b"hello"); // a copy
//! assert_eq!(rx.recv_ref()?.as_slice::<f64>()?, &[1.5, 2.5]); // in place
//! assert_eq!(&*rx.recv_ref()?, b"abc");
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! # Files
//! - `ring`: the record layout, the mapping, reading and releasing records.
//! - `endpoints`: [`Sender`], [`FrameLoan`], [`Receiver`], [`Frame`].
//! - `mod.rs`: [`Holder`] (its API from the channel module's `holder!`).
//!
//! [`Error::InvalidArgument`]: crate::Error::InvalidArgument
//! [`Error::Corrupt`]: crate::Error::Corrupt

mod endpoints;
pub(in crate::channel) mod ring;

pub use endpoints::{Frame, FrameLoan, Receiver, Sender};

/// The channel without an endpoint: an object of its own, held by a process that is
/// neither its sender nor its receiver, as [`spsc::Holder`](crate::spsc::Holder) is for
/// typed rings (and [`PipeHolder`](crate::PipeHolder) for pipes).
///
/// The holder creates the ring and keeps it, and its name, for as long as it lives; the
/// ends ([`Sender::open`], [`Receiver::open`], in any process) find it whenever they come,
/// and see each other as if one of them had created it. The holder that created the ring
/// removes the name when it drops; ends already open keep working.
///
/// ```
/// use shmkit::frames;
/// # let name = shmkit::__private::test_name("doc-frames-holder");
/// let held = frames::Holder::create(&name, 1 << 16)?; // the parent: no end
/// let mut tx = frames::Sender::open(&name)?; // a child
/// let mut rx = frames::Receiver::open(&name)?; // another child
/// tx.send(b"hello")?;
/// assert_eq!(held.len(), 32); // bytes: one record
/// assert_eq!(rx.recv()?, b"hello");
/// drop(held); // the name goes; the ends keep working
/// assert!(matches!(frames::Receiver::open(&name), Err(shmkit::Error::NotFound { .. })));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Holder {
    ring: ring::Ring,
}

super::holder!([] Holder, "frames", "", open: 0,
    capacity: |r| r.cap as usize, len: |r| r.hdr().len(r.cap));

/// The smallest and largest ring sizes (bytes).
pub const MIN_CAPACITY: u64 = 64;
/// The largest ring (bytes).
pub const MAX_CAPACITY: u64 = 1 << 36;
