//! A single-producer single-consumer ring of typed slots in shared memory.
//!
//! One [`Sender`] and one [`Receiver`], in any two processes (or threads), found by name;
//! either side may create the channel, or a third process that holds it ([`Holder`]). `send` blocks while the ring is full, `recv` while
//! it is empty (see [`WaitStrategy`] for how); `try_` forms never block; `_timeout` forms
//! give up with [`Error::Timeout`]. Nothing allocates and no syscall is made on the hot
//! path unless the peer sleeps.
//!
//! Receiving: [`Receiver::recv`] (and `try_recv`, `recv_timeout`) copies the message
//! out and frees the slot before it returns: safe whatever the sender does (payloads are
//! `Pod`, so any bytes are a valid `T`). Zero copies: [`Sender::loan`] hands out the slot
//! in the ring to write in place, and [`Receiver::recv_ref`] (and `try_recv_ref`,
//! `recv_ref_timeout`) returns a guard that reads the slot in place and frees it on drop;
//! the guard derefs into shared memory that a misbehaving sender could write while it is
//! viewed, so use it with cooperating peers. [`Receiver::iter`] and
//! [`Receiver::try_iter`] yield `Result<T>`: they end when the sender is gone and the ring
//! is drained (`iter`) or when nothing is ready (`try_iter`), and end after yielding any
//! other error (such as [`Error::Corrupt`]).
//!
//! # Design
//! Every slot carries a stamp next to its value; a stamp only ever says "published": the
//! sender writes the value, then stores `pos + 1` in the stamp (Release), for the message
//! at position `pos`. The receiver polls only the stamp of the slot at its position
//! (Acquire) until it reads `pos + 1`, so a small message costs one cache-line transfer;
//! the stamp it finds there before that is the previous lap's, `pos + 1 - capacity`, or on
//! the first lap the slot's initial one (its index), which cannot be mistaken for it. Any
//! other stamp is [`Error::Corrupt`].
//!
//! The receiver never writes a slot. It releases messages by storing its position,
//! `head` (on its own 128-byte line), once per receive, guard drop or chunk commit
//! (Release: its reads are done before the sender reuses the slots). The sender keeps a
//! process-local copy of `head` and reloads the shared one (Acquire) only when that copy
//! says the ring is full, so while there is room it reads nothing the receiver writes,
//! and only the sender writes the data lines. A `head` ahead of the sender, or more
//! than a ring behind it, is [`Error::Corrupt`]. The sender also publishes its position,
//! `tail`, which nobody polls (it is for `len` and for a new sender).
//!
//! Sleeping follows the eventcount of the channel module: after its stamps or its `head`
//! store, each side looks (after one fence) at the peer's signal word, and makes the wake
//! syscall only if the peer announced that it sleeps; a sleeping sender waits for `head`
//! to move, a sleeping receiver for the stamp. Batches ([`Sender::write_chunk`],
//! [`Receiver::read_chunk`]) check `head` once (the cached copy, reloaded at most once)
//! and store `head` once per chunk; because stamps sit between the values, they expose
//! slots one by one rather than as slices.
//!
//! # When a peer dies
//! A peer that never attached is awaited, not reported: a receiver may be created before
//! its sender process starts. A blocked side notices a dead or closed peer within a sleep
//! slice: `recv` returns
//! [`Error::Disconnected`] once the sender is gone *and* everything it committed has been
//! received; `send` returns it when the ring is full and the receiver is gone. A new
//! endpoint can attach after the old one died: a new sender continues after the last
//! published message (from `tail`, over the stamps that say published after it: one that
//! died between its stamps and its `tail` store loses nothing; a message loaned but not
//! committed is never delivered), and never more than a ring ahead of `head`; a new
//! receiver resumes at `head`, the first message not yet released, so a message the dead receiver
//! held in a guard is delivered again.
//!
//! ```
//! use shmkit::spsc;
//! # let name = shmkit::__private::test_name("doc-spsc");
//! let mut tx = spsc::Sender::<u64>::create(&name, 1024)?;
//! let mut rx = spsc::Receiver::<u64>::open(&name)?; // usually in another process
//! tx.send(7)?;
//! {
//!     let mut slot = tx.loan()?; // write in place
//!     *slot = 8;
//!     slot.commit()?;
//! }
//! assert_eq!(rx.recv()?, 7); // a copy; the slot is freed already
//! assert_eq!(*rx.recv_ref()?, 8); // read in place; the slot is freed when the guard drops
//! drop(tx);
//! assert!(matches!(rx.recv(), Err(shmkit::Error::Disconnected)));
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! # Files
//! - `ring`: the slots and the mapping.
//! - `endpoints`: [`Sender`], [`Loan`], [`WriteChunk`], [`Receiver`], [`RecvGuard`],
//!   [`ReadChunk`].
//! - `mod.rs`: [`Holder`] (its API from the channel module's `holder!`).
//!
//! [`WaitStrategy`]: crate::WaitStrategy
//! [`Error::Timeout`]: crate::Error::Timeout
//! [`Error::Disconnected`]: crate::Error::Disconnected
//! [`Error::Corrupt`]: crate::Error::Corrupt

mod endpoints;
mod ring;

pub use super::SendError;
pub use endpoints::{Loan, ReadChunk, Receiver, RecvGuard, Sender, WriteChunk};

/// The channel without an endpoint: an object of its own, held by a process that is
/// neither its sender nor its receiver (Python's habit: create the queue in the parent,
/// hand its name to the children).
///
/// The holder creates the channel and keeps it, and its name, for as long as it lives:
/// the ends, opened with [`Sender::open`] and [`Receiver::open`] in any process, find it
/// whenever they come, and see each other as if one of them had created it (a peer that
/// never attached is awaited, not gone). The holder that created the channel removes the
/// name when it drops; ends already open keep working. [`mpmc::Holder`](crate::mpmc::Holder)
/// and [`frames::Holder`](crate::frames::Holder) hold the other kinds,
/// [`PipeHolder`](crate::PipeHolder) pipes.
///
/// ```
/// use shmkit::spsc;
/// # let name = shmkit::__private::test_name("doc-spsc-holder");
/// let held = spsc::Holder::<u64>::create(&name, 1024)?; // the parent: no end
/// let mut rx = spsc::Receiver::<u64>::open(&name)?; // a child
/// let mut tx = spsc::Sender::<u64>::open(&name)?; // another child, later
/// tx.send(7)?;
/// assert_eq!(rx.recv()?, 7);
/// drop(held); // the name goes; the ends keep working
/// assert!(matches!(spsc::Sender::<u64>::open(&name), Err(shmkit::Error::NotFound { .. })));
/// tx.send(8)?;
/// assert_eq!(rx.recv()?, 8);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Holder<T: bytemuck::Pod> {
    ring: ring::Ring<T>,
}

super::holder!([T: bytemuck::Pod] Holder<T>, "spsc", "::<u64>", open: 1,
    capacity: |r| r.cap as usize, len: |r| r.hdr().len(r.cap));

/// The largest capacity (slots) a ring may have.
pub const MAX_CAPACITY: u64 = 1 << 32;
