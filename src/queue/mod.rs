//! [`Queue<T>`] and [`JoinableQueue<T>`]: Python's `multiprocessing.Queue` and
//! `JoinableQueue` for any serde type (or any `bytemuck::Pod` type, unserialized), in
//! shared memory, without a feeder thread, a pipe or pickling.
//!
//! # How items travel
//! A queue is an [`mpmc`] queue of 128-byte slots (a stamp and 120 bytes): any number of
//! producer and consumer processes, each item to exactly one consumer, the items of one
//! producer in order at each consumer. An item is encoded with the codec (postcard by
//! default) and copied into as many *consecutive* slots as it needs, claimed together by
//! one compare-and-swap, so that items of any length share one ring and take only the
//! room they need (the ring is a multi-producer variable-length ring, in slots of 120
//! bytes):
//!
//! | encoding | travels | cost |
//! |---|---|---|
//! | up to 48 bytes (a short string, a small struct) | in one slot's first cache line, with its length | one cache line from producer to consumer |
//! | up to 112 bytes | in one slot | two lines |
//! | up to [`Queue::in_place_limit`] (half the slots: 61,432 bytes in a queue of 1,024) | 112 bytes in its first slot, 120 in each further one (its *continuations*) | one line per 64 bytes, one stamp per slot; no system call |
//! | larger | out of line, in a segment of its own that the consumer copies out and removes | one `create`, `mmap` and `unlink`: tens of microseconds |
//!
//! `capacity` counts slots: `Queue::create(name, 1024)` takes 128 KiB of `/dev/shm`
//! (reserved when the queue is created, as every segment is, so that a full tmpfs is an
//! error then and never a `SIGBUS` later) and holds 1,024 short items, or fewer longer
//! ones. [`Queue::len`] and [`Queue::is_full`] count slots too. Every item goes up to the
//! queue's item limit (1 GiB by default, [`Queue::set_max_item`]). An out-of-line item's
//! segment name (`NAME.xPID.N`) must fit in a slot's 112 bytes (else that `put` is
//! [`Error::InvalidArgument`]). `put` writes into shared memory before it returns: Python's
//! "join a process before its queue is drained" deadlock cannot happen.
//!
//! A producer that dies mid-`put` costs that item, skipped and counted in [`Queue::lost`],
//! never a torn item: its first slot is skipped as any dead producer's slot in [`mpmc`],
//! and the consumers then step over its continuations. A consumer that dies holding an
//! item (between taking it from the ring and copying it out) costs that item too, and its
//! slots are freed, all of them, when a producer needs them. See *Multi-slot messages*
//! in the [`mpmc`] module docs for the protocol.
//!
//! A long item needs all its slots free at once: so that producers of short items, which
//! take each slot a consumer frees, cannot keep it waiting for ever, a blocking or timed
//! `put` of a long item that cannot claim at once takes the queue's *turn*, and the other
//! producers wait (as if the queue were full) while the consumers free slots for it; 200
//! ms without a slot freed end it (workers that must put before they can get are held up,
//! not deadlocked). See *Turns* in the [`mpmc`] module docs. The turn outlives a
//! `put_timeout` that times out, so that one called again in a loop waits in turn; the
//! producer's next `put` of another kind, a `put` that fails, or its close ends it. An
//! async `put` ([`aio::Async`](crate::aio::Async)'s `send`) takes the turn too, and ends
//! it when it fails or its future is dropped. [`Queue::try_put`] never takes it, and may
//! keep finding the queue full.
//!
//! # The queue is an object of its own
//! The process that creates a queue need not put or get: it holds the queue (and its
//! name) for as long as its handle lives, so a child that opens it late finds it. A handle
//! attaches as a producer on its first `put` and as a consumer on its first `get`.
//! [`Queue::get`] returns [`Error::Disconnected`] once every producer that attached is gone
//! and the queue is empty (iteration ends there), as `std::sync::mpsc` does; until a first
//! producer attaches, it waits. Where producers come and go (Python programs that stop
//! consumers with sentinels), keep one producer attached throughout (the process that
//! puts the sentinels, from its first `put`), or a gap between producers reads as
//! `Disconnected`.
//!
//! # `Pod` items
//! For plain-old-data items (`bytemuck::Pod`: numbers, arrays, `#[repr(C)]` structs
//! without padding), `Queue<T, codec::Pod>` skips serialization: an item's encoding is its
//! own `size_of::<T>()` bytes, copied into its slots as they are, and on `get` copied out
//! at any alignment; everything else (slots, out of line past the in-place limit, dead
//! processes) is as above. See [`codec::Pod`](crate::codec::Pod).
//!
//! Where even that copy counts, [`mpmc`] itself is the queue of `Pod` items: typed slots
//! written and read in place, the same multi-producer multi-consumer protocol, and an
//! [`mpmc::Holder`] to keep it as an object of its own, as this queue does.
//!
//! # Untrusted input
//! Everything a peer wrote is checked: an item's length against the slots it says it
//! takes (and those against the ring: claimed, at most the capacity, every continuation
//! still claimed), an out-of-line item's segment name (it must be one of this queue's) and length (against the item
//! limit, before anything is allocated). An item that does not decode is
//! [`Error::Codec`] for that item alone (and counted in [`Queue::undecodable`]); the queue
//! goes on.
//!
//! The codec is the second type parameter (default [`Postcard`]; [`codec::Pod`](crate::codec::Pod)
//! for `Pod` items; any [`Codec<T>`] plugs in). The segment header records a fingerprint
//! of `T` and of the codec: opening a `Queue<String>` as a `Queue<u64>`, or a
//! `Queue<u64, codec::Pod>` as a `Queue<u64>`, is [`Error::LayoutMismatch`].
//!
//! # Files
//! - `mod.rs`: [`Queue`].
//! - `slot`: the slot format, and copying and decoding an item's pieces.
//! - `joinable`: [`JoinableQueue`] and its shared task counters.
//!
//! This module uses `channel` (mpmc), `codec`, `object` and `segment`.

mod joinable;
mod slot;

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use bytemuck::Zeroable;

pub use joinable::JoinableQueue;
pub(crate) use slot::fuzz_slot;
use slot::{
    carried, copy_out, decode_parts, for_each_piece, max_span, span, span_of, span_of_bytes, Slot,
    IN_SLOT, OUT_OF_LINE,
};

use crate::channel::mpmc::{self, Claim};
use crate::codec::{Codec, Postcard};
use crate::error::{Error, Result};
use crate::object::At;
use crate::os::failpoint::failpoint;
use crate::segment::{CreationMode, Options, Segment};
use crate::sync::wait::Deadline;
use crate::SendError;
use std::sync::atomic::{compiler_fence, Ordering::SeqCst};

/// How many times a `put` claims a slot again when the one it wrote was skipped under it
/// (only tampered shared state makes a live producer look dead).
const MAX_RESENDS: usize = 16;

/// The default limit of one item's encoding.
const MAX_ITEM: usize = 1 << 30;

/// The fingerprint of a queue of `T` encoded with `C`: the type's name, size and alignment
/// and the codec, so that two builds whose same-named `T` differ in layout (which is the
/// wire format itself for `codec::Pod`) are refused at `open`, not at every item; and
/// whether it is a [`JoinableQueue`]'s, whose consumers count what they take: a plain
/// `Queue` handle taking its items uncounted would let `join` return while they are
/// processed.
fn tag<T, C: Codec<T>>(joinable: bool) -> u64 {
    let layout = format!("{}/{}", size_of::<T>(), align_of::<T>());
    // "spans": items take consecutive slots (an earlier format had per-slot extensions).
    let kind = if joinable {
        "joinable queue spans"
    } else {
        "queue spans"
    };
    crate::codec::fingerprint(C::ID, &[kind, std::any::type_name::<T>(), &layout])
}

/// A multi-producer multi-consumer queue of `T` in shared memory: see the
/// [module docs](crate::queue).
///
/// ```
/// use shmkit::Queue;
/// # let name = shmkit::__private::test_name("doc-queue");
/// let mut q = Queue::<(String, u32)>::create(&name, 64)?;
/// let mut other = Queue::<(String, u32)>::open(&name)?; // usually in another process
/// q.put(&("A".to_string(), 1))?; // one slot
/// q.put(&("B".repeat(1000), 2))?; // in place: nine slots
/// q.put(&("C".repeat(5000), 3))?; // out of line: more than half the queue's slots
/// assert_eq!(other.get()?, ("A".to_string(), 1));
/// assert_eq!(other.get()?, ("B".repeat(1000), 2));
/// assert_eq!(other.get()?.1, 3);
/// assert!(matches!(other.try_get(), Err(shmkit::Error::WouldBlock)));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Queue<T, C: Codec<T> = Postcard> {
    holder: mpmc::Holder<Slot>,
    /// The fingerprint (see [`tag`]), computed once: it hashes the type's name byte by
    /// byte.
    tag: u64,
    name: String,
    tx: Option<mpmc::Sender<Slot>>,
    rx: Option<mpmc::Receiver<Slot>>,
    buf: Vec<u8>,
    ool_n: u64,
    /// How many slots the last async `put` attempt found no room for (0: none): the next
    /// attempt encodes nothing until that many may be free (see `attempt_ready`).
    waiting: u64,
    max_item: usize,
    undecodable: u64,
    _t: PhantomData<fn(T, C) -> T>,
}

/// `create`, `open` and `open_or_create` of a queue type, over its
/// `with_mode(name, mode, capacity)`; `$extra` is appended to `create`'s doc.
macro_rules! queue_constructors {
    ($extra:literal) => {
        #[doc = concat!("Creates the queue `name` with `capacity` slots", $extra, "; [`Error::AlreadyExists`] if the name exists.")]
        ///
        /// An item whose encoding is at most 112 bytes takes one slot, a longer one a slot
        /// more for each 120 bytes further (a slot is 128 bytes of `/dev/shm`, reserved
        /// when the queue is created); items of up to half the slots travel in place
        /// ([`Queue::in_place_limit`](crate::Queue::in_place_limit)), longer ones out of line.
        pub fn create(name: &str, capacity: usize) -> Result<Self> {
            Self::with_mode(name, crate::CreationMode::Create, capacity, &crate::Options::new())
        }

        /// Opens the existing queue `name` ([`Error::NotFound`] if there is none;
        /// [`Error::LayoutMismatch`] if it holds another type or codec).
        pub fn open(name: &str) -> Result<Self> {
            Self::with_mode(name, crate::CreationMode::Open, 1, &crate::Options::new())
        }

        /// Opens the queue `name`, or creates it with `capacity` slots.
        pub fn open_or_create(name: &str, capacity: usize) -> Result<Self> {
            Self::with_mode(name, crate::CreationMode::OpenOrCreate, capacity, &crate::Options::new())
        }

        /// Creates and/or opens the queue `name` as `mode` says, with `opts` (mode bits,
        /// keep, trust: see [`Options`](crate::Options)); `capacity` is used only if it is created.
        pub fn with_options(
            name: &str,
            mode: crate::CreationMode,
            capacity: usize,
            opts: &crate::Options,
        ) -> Result<Self> {
            Self::with_mode(name, mode, capacity, opts)
        }
    };
}
use queue_constructors;

impl<T, C: Codec<T>> Queue<T, C> {
    queue_constructors!("");

    fn with_mode(name: &str, mode: CreationMode, capacity: usize, opts: &Options) -> Result<Self> {
        Self::with_tag(name, mode, capacity, opts, tag::<T, C>(false))
    }

    /// `with_mode`, with the fingerprint `tag` (see [`tag`]).
    fn with_tag(
        name: &str,
        mode: CreationMode,
        capacity: usize,
        opts: &Options,
        tag: u64,
    ) -> Result<Self> {
        let holder = mpmc::Holder::build_spans(
            At::named(name, mode, opts).tagged(tag),
            capacity,
            Some(span_of_bytes),
        )?;
        Ok(Queue {
            holder,
            tag,
            name: name.to_owned(),
            tx: None,
            rx: None,
            buf: Vec::new(),
            ool_n: 0,
            waiting: 0,
            max_item: MAX_ITEM,
            undecodable: 0,
            _t: PhantomData,
        })
    }

    /// Whether this handle created the queue.
    pub fn is_creator(&self) -> bool {
        self.holder.segment().is_creator()
    }

    /// The largest encoding of one item this handle sends or accepts (default 1 GiB): a
    /// larger one is [`Error::InvalidArgument`] at `put`, [`Error::Corrupt`] at `get`
    /// (before anything is allocated).
    pub fn set_max_item(&mut self, bytes: usize) {
        self.max_item = bytes;
    }

    /// This handle's producing end (attached on first use).
    pub(crate) fn sender(&mut self) -> Result<&mut mpmc::Sender<Slot>> {
        attach(&mut self.tx, &self.name, self.tag, |at, c| {
            mpmc::Sender::build_spans(at, c, Some(span_of_bytes))
        })
    }

    /// The signals of the ends this handle has attached (none attached here).
    pub(crate) fn attached_signals(&self) -> impl Iterator<Item = &crate::channel::Signal> {
        let rx = self.rx.iter().map(|r| r.wait_signal());
        rx.chain(self.tx.iter().map(|t| t.wait_signal()))
    }

    /// This handle's consuming end (attached on first use).
    pub(crate) fn receiver(&mut self) -> Result<&mut mpmc::Receiver<Slot>> {
        attach(&mut self.rx, &self.name, self.tag, |at, c| {
            mpmc::Receiver::build_spans(at, c, Some(span_of_bytes))
        })
    }

    /// The longest encoding that travels in place, through the ring: as many bytes as
    /// half the queue's slots carry (112 in the first, 120 in each further one), at least
    /// 112. A queue of 1,024 slots takes items of up to 61,432 bytes in place.
    ///
    /// ```
    /// # let name = shmkit::__private::test_name("doc-queue-limit");
    /// let q = shmkit::Queue::<String>::create(&name, 1024)?;
    /// assert_eq!(q.in_place_limit(), 112 + 511 * 120);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn in_place_limit(&self) -> usize {
        carried(max_span(self.holder.capacity() as u64))
    }

    /// Writes the encoding in `self.buf` (longer than the in-place limit) out of line: the slot
    /// that names it, and the segment's name, to remove should the slot not be sent.
    fn out_of_line(&mut self) -> Result<(Slot, String)> {
        let n = self.buf.len();
        if n > u32::MAX as usize {
            return Err(too_large(n, u32::MAX as usize));
        }
        self.ool_n += 1;
        let ool = format!("{}.x{}.{}", self.name, std::process::id(), self.ool_n);
        let name = ool.as_bytes();
        if name.len() > IN_SLOT {
            return Err(Error::InvalidArgument(
                "the queue's name is too long for out-of-line items".into(),
            ));
        }
        let seg = Segment::create(&ool, n, &Options::new().keep(true))?;
        // SAFETY: the segment is ours alone (just created, its name not yet sent) and `n`
        // bytes long; the source is our own buffer.
        unsafe { std::ptr::copy_nonoverlapping(self.buf.as_ptr(), seg.as_ptr(), n) };
        let mut slot = Slot::zeroed();
        slot.len = n as u32;
        slot.flags = OUT_OF_LINE | (name.len() as u32) << 8;
        slot.bytes[..name.len()].copy_from_slice(name);
        Ok((slot, ool))
    }

    fn send(&mut self, item: &T, how: Send) -> Result<()> {
        if !matches!(how, Send::Attempt) {
            self.waiting = 0;
        }
        let r = self.send_now(item, how);
        match (&r, how) {
            (Ok(()), _)
            | (Err(Error::WouldBlock), Send::Attempt)
            | (Err(Error::Timeout), Send::Timeout(_)) => {}
            // A put that failed for good, also before it could claim (an item that does
            // not encode, say), waits no more.
            (Err(_), _) => self.leave_turn(),
        }
        r
    }

    fn send_now(&mut self, item: &T, how: Send) -> Result<()> {
        self.buf.clear();
        C::encode(item, &mut self.buf)?;
        let n = self.buf.len();
        if n > self.max_item {
            return Err(too_large(n, self.max_item));
        }
        if n > self.in_place_limit() {
            if let Send::Attempt = how {
                // Not a segment per attempt while there is no room for its slot.
                self.sender()?.room(1)?;
            }
            let (slot, ool) = self.out_of_line()?;
            let tx = self.sender()?;
            tx.leave_turn();
            let r = match how {
                Send::Block => tx.send(slot),
                Send::Try | Send::Attempt => tx.try_send(slot),
                Send::Timeout(t) => tx.send_timeout(slot, t),
            };
            return r.map_err(|e: SendError<Slot>| {
                let _ = crate::admin::unlink(&ool);
                e.into()
            });
        }
        // In place: copied from the encoding into the claimed slots.
        self.sender()?;
        let k = span(n as u64);
        let claim = match how {
            Send::Block => Claim::Until(Deadline::NEVER),
            Send::Try => Claim::Try,
            Send::Attempt => Claim::Attempt,
            Send::Timeout(t) => Claim::Until(Deadline::after(t)),
        };
        for _ in 0..MAX_RESENDS {
            let tx = self.tx.as_mut().expect("attached");
            let loan = match tx.claim_span_now(k) {
                Some(pos) => tx.span_loan(pos, k),
                None => tx.claim_span(k, claim)?,
            };
            failpoint!("queue.put.claimed");
            let buf = &self.buf;
            let head = loan.slot(0);
            // SAFETY: we own the `k` claimed slots (the stamps give them to one process
            // at a time; a receiver's release of the previous lap happens-before our
            // claim); `k` slots carry at least `n` bytes, so every piece is inside one of
            // them; the source is our own buffer. Raw writes, fenced so that they stay
            // before the publishing Release.
            unsafe {
                std::ptr::addr_of_mut!((*head).len).write(n as u32);
                std::ptr::addr_of_mut!((*head).flags).write(0);
                compiler_fence(SeqCst);
                let copy = |start, end| {
                    if end <= IN_SLOT {
                        // In the first slot (all of a short item): one copy.
                        let to = std::ptr::addr_of_mut!((*head).bytes).cast::<u8>();
                        std::ptr::copy_nonoverlapping(
                            buf.as_ptr().add(start),
                            to.add(start),
                            end - start,
                        );
                    } else {
                        for_each_piece(start, end, |j, at, from, len| {
                            let to = loan.slot(j).cast::<u8>().add(at);
                            std::ptr::copy_nonoverlapping(buf.as_ptr().add(from), to, len);
                        });
                    }
                };
                copy(0, n / 2);
                failpoint!("queue.put.half_written");
                copy(n / 2, n);
                compiler_fence(SeqCst);
            }
            if loan.publish() {
                failpoint!("queue.put.committed");
                return Ok(());
            }
            // Skipped under us (we were taken for dead: tampered state): put it again.
        }
        Err(Error::corrupt(
            "queue: every slot this producer claimed was skipped under it",
        ))
    }

    /// Puts `item`, waiting while the queue is full. [`Error::Codec`] if it cannot be
    /// encoded; [`Error::Disconnected`] if the queue is full and every consumer is gone.
    pub fn put(&mut self, item: &T) -> Result<()> {
        self.send(item, Send::Block)
    }

    /// Puts `item` if there is room now ([`Error::WouldBlock`] if not).
    pub fn try_put(&mut self, item: &T) -> Result<()> {
        self.send(item, Send::Try)
    }

    /// Puts `item`, waiting at most `timeout` for room ([`Error::Timeout`]). A long item's
    /// turn (see the [module docs](self)) outlives a time-out, so that calling this again
    /// in a loop waits in turn as one longer call would.
    pub fn put_timeout(&mut self, item: &T, timeout: Duration) -> Result<()> {
        self.send(item, Send::Timeout(timeout))
    }

    /// Whether a producer has taken the queue's turn (loom models).
    #[cfg(loom)]
    pub(crate) fn turn_taken(&self) -> bool {
        self.holder.turn_taken()
    }

    /// One attempt of an async `put`: [`Error::WouldBlock`] if there is no room now, in
    /// which case a long item takes (or keeps) the turn, as a waiting `put` does; the
    /// caller tries again when woken, or calls [`Queue::leave_turn`].
    pub(crate) fn attempt_put(&mut self, item: &T) -> Result<()> {
        self.attempt_ready()?;
        self.attempt_put_now(item)
    }

    /// [`Queue::attempt_put`] after `attempt_ready` said the slots may be free.
    pub(crate) fn attempt_put_now(&mut self, item: &T) -> Result<()> {
        let r = self.send(item, Send::Attempt);
        self.waiting = match r {
            // The encoding is still in `buf`.
            Err(Error::WouldBlock) if self.buf.len() > self.in_place_limit() => 1,
            Err(Error::WouldBlock) => span(self.buf.len() as u64),
            _ => 0,
        };
        r
    }

    /// Before an async `put` attempt: [`Error::WouldBlock`], with no encoding, while the
    /// last attempt's slots cannot be free (an async wake-up makes dozens of attempts: see
    /// `aio`), keeping a long item's turn meanwhile. (A different item than the last
    /// attempt's waits for as many slots once, at worst.)
    pub(crate) fn attempt_ready(&mut self) -> Result<()> {
        let k = self.waiting;
        if k == 0 {
            return Ok(());
        }
        let r = self.sender()?.room(k);
        if let Err(e) = &r {
            if !matches!(e, Error::WouldBlock) {
                self.leave_turn();
            }
        }
        r
    }

    /// Ends the turn this handle's producer holds, if any (an async `put` dropped before
    /// it could put, or one that failed).
    pub(crate) fn leave_turn(&mut self) {
        self.waiting = 0;
        if let Some(tx) = self.tx.as_mut() {
            tx.leave_turn();
        }
    }

    fn recv(&mut self, how: Recv) -> Result<T> {
        self.recv_told(how, &())
    }

    /// `recv`, telling `attempts` of each attempt to claim an item (see
    /// [`mpmc::Attempts`]).
    #[inline]
    fn recv_told(&mut self, how: Recv, attempts: &impl mpmc::Attempts) -> Result<T> {
        let deadline = match how {
            Recv::Block => Some(Deadline::NEVER),
            Recv::Try => None,
            Recv::Timeout(t) => Some(Deadline::after(t)),
        };
        self.receiver()?;
        let (rx, buf) = (self.rx.as_mut().expect("attached"), &mut self.buf);
        let (len, flags) = rx.recv_span_with(deadline, span_of, attempts, |view| {
            copy_out(|j| view.slot(j), view.len(), buf)
        })?;
        let r = decode_parts::<T, C>(len, flags, &self.buf, &self.name, self.max_item);
        if matches!(r, Err(Error::Codec { .. })) {
            self.undecodable += 1;
        }
        r
    }

    /// Takes the next item, waiting while there is none. [`Error::Disconnected`] once every
    /// producer that attached is gone and the queue is empty; [`Error::Codec`] for an item
    /// that does not decode (the next `get` goes on).
    pub fn get(&mut self) -> Result<T> {
        self.recv(Recv::Block)
    }

    /// Takes an item if one is ready ([`Error::WouldBlock`] if not).
    pub fn try_get(&mut self) -> Result<T> {
        self.recv(Recv::Try)
    }

    /// Takes an item, waiting at most `timeout` ([`Error::Timeout`]).
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<T> {
        self.recv(Recv::Timeout(timeout))
    }

    /// The items until every producer is gone and the queue is empty; an error other than
    /// that is yielded once, and ends the iteration.
    pub fn iter(&mut self) -> impl Iterator<Item = Result<T>> + '_ {
        let mut done = false;
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            match self.get() {
                Err(Error::Disconnected) => None,
                Err(e) if !matches!(e, Error::Codec { .. }) => {
                    done = true;
                    Some(Err(e))
                }
                r => Some(r),
            }
        })
    }

    /// Whether every item put has been taken (see `mpmc::Holder::drained`).
    fn drained(&self, full: bool) -> Result<bool> {
        self.holder.drained(full)
    }

    /// Slots in use: items put and not yet taken, an item longer than 112 bytes encoded
    /// counting as the slots it takes (approximate, as Python's `qsize`).
    pub fn len(&self) -> usize {
        self.holder.len()
    }

    /// Whether no item is waiting (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether every slot is in use (a snapshot; a long item may find no room before).
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity()
    }

    /// The queue's number of slots: how many items of up to 112 bytes encoded it holds.
    pub fn capacity(&self) -> usize {
        self.holder.capacity()
    }

    /// Items lost to processes that died mid-`put` or mid-`get` (since the queue was made).
    pub fn lost(&self) -> u64 {
        self.holder.lost()
    }

    /// Items this handle took that did not decode.
    pub fn undecodable(&self) -> u64 {
        self.undecodable
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The endpoint in `end`, attaching it to queue `name` (fingerprint `tag`) first if this
/// handle has none yet.
#[inline]
fn attach<'a, E>(
    end: &'a mut Option<E>,
    name: &str,
    tag: u64,
    build: fn(At<'_>, usize) -> Result<E>,
) -> Result<&'a mut E> {
    if end.is_none() {
        let opts = Options::new();
        *end = Some(build(
            At::named(name, CreationMode::Open, &opts).tagged(tag),
            1,
        )?);
    }
    Ok(end.as_mut().expect("attached"))
}

/// An item of `n` bytes encoded, over the limit of `max` bytes.
fn too_large(n: usize, max: usize) -> Error {
    Error::InvalidArgument(format!(
        "an item of {n} bytes encoded is over this queue's limit of {max} bytes"
    ))
}

impl<T, C: Codec<T>> Drop for Queue<T, C> {
    fn drop(&mut self) {
        if self.holder.segment().is_creator() {
            // Out-of-line items nobody took (their producer or consumer died): removed,
            // unless a live process still has one open.
            let _ = crate::admin::clean_with(
                &format!("{}.x", self.name),
                crate::CleanMode::Remove,
                crate::admin::Spare::AllButItemsOf(&self.name),
            );
        }
    }
}

impl<T, C: Codec<T>> fmt::Debug for Queue<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("segment", self.holder.segment())
            .field("len", &self.holder.len())
            .finish_non_exhaustive()
    }
}

/// How a put waits.
#[derive(Clone, Copy)]
enum Send {
    Block,
    Try,
    /// An async `put`'s attempt: see [`Queue::attempt_put`].
    Attempt,
    Timeout(Duration),
}

/// How a get waits.
#[derive(Clone, Copy)]
enum Recv {
    Block,
    Try,
    Timeout(Duration),
}
