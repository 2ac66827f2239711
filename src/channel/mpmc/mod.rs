//! A bounded multi-producer multi-consumer queue of typed slots in shared memory.
//!
//! The algorithm is Dmitry Vyukov's bounded MPMC queue
//! (<https://www.1024cores.net/home/lock-free-algorithms/queues/bounded-mpmc-queue>), with
//! the position encoding of crossbeam-queue's `ArrayQueue`
//! (`crossbeam-queue/src/array_queue.rs`), made to survive the death of any process that
//! uses it.
//!
//! Any number of processes (or threads, one handle each) open [`Sender`]s and
//! [`Receiver`]s by name, up to [`MAX_ENDPOINTS`] of each at a time (the queue may be
//! created by one of them, or held by a process that is neither: [`Holder`]); each message goes to
//! exactly one receiver, and the messages of one sender arrive in order at each receiver.
//! `send` blocks while the queue is full, `recv` while it is empty (see [`WaitStrategy`]
//! for how); `try_` forms never block ([`Error::WouldBlock`]); `_timeout` forms give up
//! with [`Error::Timeout`]. Nothing allocates and no syscall is made on the hot path unless
//! a peer sleeps. A side whose peers never attached waits for them. `recv` returns
//! [`Error::Disconnected`] once every sender that attached is gone (closed or dead) and
//! the queue is drained; `send` returns it when the queue is full and every receiver is
//! gone. A sender killed between claiming a slot and publishing it does not stall anyone:
//! the slot is skipped once a blocked peer (or a `JoinableQueue`'s `join`) notices
//! (within a sleep slice), and counted in
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
//! # let name = shmkit::__private::test_name("doc-mpmc");
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
//!
//! # Multi-slot messages
//! The serde [`Queue`](crate::Queue) sends items of any length through this ring: an item
//! takes `k` consecutive slots (`1 <= k <= capacity`), its *first* slot and `k - 1`
//! *continuations*, claimed by one CAS of `tail` from `p` to `p + k` once every one of
//! them is free (stamp = its position). Only the first slot is published (`p → p + 1`):
//! a continuation keeps its claimed stamp `q` until it is freed, which makes the state of
//! a message one word, decided by one CAS, as for a one-slot message. A receiver that sees
//! the first slot published reads `k` from it (the queue's length word) and checks it: at
//! most the capacity, every slot before `tail` (past it, a free slot's stamp is its
//! position too) and every continuation at its claimed stamp; otherwise it takes one slot
//! and the reader finds a length that one slot cannot hold (`Error::Corrupt` for that
//! item). It CASes `head` from `p` to `p + k`. Releasing frees the continuations first
//! (`q → q + one_lap`), then the first slot, so a continuation is never held after its
//! first slot is free; each CAS also validates the copy, seqlock style.
//!
//! Dead peers, for such messages:
//! - A sender dies between its claim and its publication: its first slot is skipped as
//!   above (counted lost). Nobody has a continuation's position pending (a claimer has
//!   only the first), so a receiver that steps onto a claimed slot that no endpoint has
//!   pending (after a skipped first slot, `head` moves one slot at a time) frees it and
//!   steps on: the continuations of a skipped message, stepped over within one recovery.
//!   (Recording `k` in the sender's registration would not do: a loser of the claiming
//!   CAS that died before clearing its pending word would leave another `k` for the same
//!   `p`.)
//! - A receiver dies holding a message: a sender that needs one of its slots finds the
//!   first slot held (the first not free, as it checks every slot it wants), and frees
//!   the message in the holder's own order, reading `k` from the held message itself,
//!   seqlock style (its value does not change while its first slot's stamp says held).
//!   Never from what an endpoint recorded: a dead loser of the race for `p`, or a
//!   registration taken over meanwhile, could say anything.
//!
//! # Turns
//! A message of `k > 1` slots needs `k` free slots at `tail` at once, while a one-slot
//! message needs one: with senders of short messages that keep the queue full, every slot a
//! receiver frees would go to one of them, and a long message could wait forever. So a
//! sender that *waits* (blocking, with a timeout, or an async send between its attempts;
//! not a `try_`) to claim a message of several slots and cannot claim it now takes the
//! *turn*: the word beside `tail`, on the same line, holds its registration's index plus
//! one and the time it took it (the monotonic clock, in milliseconds). While a turn is
//! taken, every other sender's poll says "not now", as if the queue were full, and the
//! queue drains until the long message fits; its sender then claims it and ends the turn,
//! waking the others.
//!
//! A turn lasts while the queue drains: its taker keeps it fresh whenever receivers have
//! freed slots since it last looked, and it runs out after `TURN_MS` (200 ms) in which they
//! freed none that it saw. Then (workers that must put before they can get again, so that
//! nobody gets while everybody waits; a taker that is stopped) the taker ends it, and takes
//! it again only after as long again, while the others ignore a turn past its time. A taker
//! that looks only now and then (a timed send called in a loop, an async send between
//! polls) may find its turn run out and cleared by another sender while the queue drained:
//! it takes it again at once, without the rest. A sender ends its turn when it claims, when
//! its wait fails (disconnected), when it makes a claim of another kind, and when it
//! closes; a wait that only gives up for now (a time-out, or an async send's attempt) keeps
//! it, so that a timed send called again in a loop, or an async send polled again, goes on
//! in turn (an async send dropped ends it); a new endpoint that takes over a dead one's
//! registration ends the dead one's turn; a blocked sender's recovery ends the turn of a
//! sender that is gone, a turn past its time, and one that names no registration.
//! When every receiver is gone, a one-slot sender's recovery ends any turn, so that a
//! message that fits goes in (it waits for a receiver to come), as it would without the
//! turn; the turn's taker is told `Disconnected`. The turn is a hint, read Relaxed: a
//! stale or forged one costs fairness for at most its time, never a message. Queues of
//! one-slot messages (plain `mpmc`) never read it.
//!
//! # Files
//! - `ring`: the shared layout, position arithmetic and the lock-free queue.
//! - `recovery`: registration, recovering what dead endpoints left behind, and `drained`
//!   (for a `JoinableQueue`'s `join`, which waits for the queue without receiving).
//! - `endpoints`: [`Sender`], [`Loan`], [`Receiver`], [`RecvGuard`].
//! - `spans`: the endpoints' crate-internal forms for messages of several slots.
//! - `turns`: the turn of a sender waiting for several slots.
//! - `inspect`: what `shmkit inspect` shows of the header.
//! - `mod.rs`: [`Holder`] (its API from the channel module's `holder!`).
//!
//! [`WaitStrategy`]: crate::WaitStrategy
//! [`Error::WouldBlock`]: crate::Error::WouldBlock
//! [`Error::Timeout`]: crate::Error::Timeout
//! [`Error::Disconnected`]: crate::Error::Disconnected
//! [`Error::Corrupt`]: crate::Error::Corrupt
//! [`crate::spsc`]: crate::spsc

mod endpoints;
mod inspect;
mod recovery;
pub(in crate::channel) mod ring;
mod spans;
mod turns;

pub use super::SendError;
pub use endpoints::{Loan, Receiver, RecvGuard, Sender};
pub(crate) use inspect::describe;
pub(crate) use spans::{Attempts, Claim};

/// The queue without an endpoint: an object of its own, held by a process that is
/// neither a sender nor a receiver (Python's habit: create the queue in the parent, hand
/// its name to the children). The serde [`Queue`](crate::Queue) is built on it.
///
/// The holder creates the queue and keeps it, and its name, for as long as it lives; the
/// ends ([`Sender::open`], [`Receiver::open`], in any process) find it whenever they come,
/// and see each other as if one of them had created it (receivers wait for a first
/// sender). The holder that created the queue removes the name when it drops; ends
/// already open keep working.
///
/// ```
/// use shmkit::mpmc;
/// # let name = shmkit::__private::test_name("doc-mpmc-holder");
/// let held = mpmc::Holder::<u64>::create(&name, 16)?; // the parent: no end
/// let mut rx = mpmc::Receiver::<u64>::open(&name)?; // children
/// let mut tx = mpmc::Sender::<u64>::open(&name)?;
/// tx.send(7)?;
/// assert_eq!((held.len(), held.lost()), (1, 0));
/// assert_eq!(rx.recv()?, 7);
/// drop(held); // the name goes; the ends keep working
/// assert!(matches!(mpmc::Sender::<u64>::open(&name), Err(shmkit::Error::NotFound { .. })));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Holder<T: bytemuck::Pod> {
    ring: ring::Ring<T>,
}

super::holder!([T: bytemuck::Pod] Holder<T>, "mpmc", "::<u64>", open: 1,
    capacity: |r| r.geo.cap as usize, len: |r| r.len());

impl<T: bytemuck::Pod> Holder<T> {
    /// How many messages were lost to dead endpoints since the queue was created (see
    /// [`Receiver::lost`]).
    ///
    /// ```
    /// use shmkit::mpmc;
    /// # let name = shmkit::__private::test_name("doc-mpmc-holder-lost");
    /// let held = mpmc::Holder::<u64>::create(&name, 16)?;
    /// assert_eq!(held.lost(), 0);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn lost(&self) -> u64 {
        self.ring.lost()
    }

    /// [`Holder::build`](Self::build), for a queue of multi-slot messages: see
    /// [`Receiver::build_spans`].
    pub(crate) fn build_spans(
        at: crate::object::At<'_>,
        capacity: usize,
        span_of: Option<fn(*const u8) -> u64>,
    ) -> crate::Result<Self> {
        let mut ring = ring::Ring::new(at, capacity)?;
        ring.geo.span_of = span_of;
        Ok(Holder { ring })
    }

    /// Whether nothing waits in the queue or is being put: see `Ring::drained`.
    pub(crate) fn drained(&self, full: bool) -> crate::Result<bool> {
        self.ring.drained(full)
    }

    /// Whether a sender has taken the turn (for the loom models, which cannot read the
    /// word as `shmkit inspect` does).
    #[cfg(loom)]
    pub(crate) fn turn_taken(&self) -> bool {
        // Relaxed: a hint (see `Tail::turn`).
        self.ring
            .hdr()
            .tail
            .0
            .turn
            .load(crate::primitive::Ordering::Relaxed)
            != 0
    }
}

/// The largest capacity (slots) a queue may have.
pub const MAX_CAPACITY: u64 = 1 << 32;

/// How many senders, and how many receivers, may be attached at a time.
pub const MAX_ENDPOINTS: usize = 64;
