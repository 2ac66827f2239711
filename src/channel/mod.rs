//! Zero-copy channels in shared memory: what they share.
//!
//! - [`spsc`]: one producer, one consumer, typed slots.
//! - [`mpmc`]: any number of producers and consumers, typed slots.
//! - [`frames`]: one producer, one consumer, variable-length byte records; `Pipe` over two.
//! - A `Holder` of each kind, which keeps a channel (and its name) without being one of
//!   its ends: the channel is an object of its own (see `holder`).
//! - The errors of the channels ([`SendError`]) and the iterators' shape ([`recv_iter`]).
//!
//! # One receive vocabulary
//! Every receiving end has the same six receives, shaped like `std::sync::mpsc`:
//! `recv`, `try_recv` and `recv_timeout` return an owned copy (`T`, or `Vec<u8>` for
//! frames) and release the slot before they return: the form for peers you do not trust.
//! `recv_ref`, `try_recv_ref` and `recv_ref_timeout` return a guard that views the message
//! in place (zero copies) and releases it on drop: the form for cooperating peers, as the
//! guard derefs into memory that a misbehaving peer could write while it is viewed.
//! `iter` and `try_iter` yield `Result`s of owned copies; see [`recv_iter`].
//! - The wait strategy ([`WaitStrategy`]) and the sleep/wake handshake ([`Signal`]).
//! - Endpoint registration and dead-peer detection ([`EndpointSlot`]).
//!
//! # Sleeping and waking
//! Each direction has a [`Signal`]: a futex word whose bit 31 says "somebody may sleep
//! here". A side that must wait spins briefly, then sets the bit, re-checks the ring, and
//! sleeps; the other side, after publishing, issues a full fence and looks at the bit, and
//! only if it is set clears it and makes the wake syscall. So the hot path makes no
//! syscall unless the peer sleeps. Sleeps are sliced: a waiter re-checks the ring, and
//! its peer's liveness, at least every 64 ms. The waiting loop itself is in `waiting`
//! (`wait_until`); a rare wait whose publishers are hot (a `JoinableQueue`'s `join`) may
//! instead take the whole cost of the handshake's barrier on its side
//! (`wait_until_heavy`, [`Signal::notify_light_if`]).
//!
//! # Liveness
//! Every endpoint registers in a slot of the channel header: its process's liveness token
//! (see the `segment` module), held through a lock the kernel drops when the process
//! dies. A clean drop clears the slot and wakes the peer at once; a killed peer is noticed
//! when a waiter's sleep slice runs out.

mod error;
pub mod frames;
mod holder;
pub(crate) mod layout;
#[cfg(loom)]
mod models;
pub mod mpmc;
pub(crate) mod pipe;
pub mod spsc;
mod typed;
mod waiting;

pub use error::SendError;
pub(crate) use holder::holder;
#[cfg(loom)]
pub use models::{BellModel, HandshakeModel};
pub(crate) use waiting::{wait_until, wait_until_heavy, Check, Poll};

/// The constructors and accessors both ends of a one-sender one-receiver channel (spsc,
/// frames) share. The endpoint type has `ring` (with `new(at, capacity)`, `claim`, `hdr`,
/// `cap`, `seg`), `strategy`, a `resume(&ring)` that finds where to start and an
/// `at(ring, start)` that builds the end; `$capacity` and `$len` document what
/// `capacity()` and `len()` count. Its `Drop` and `Debug` come from [`pair_endpoint_impls!`].
///
/// With `in field: Core,` those are not the endpoint's own but those of its one field
/// `field`, of type `Core` (an end generic over its side).
macro_rules! pair_endpoint {
    (@core) => { Self };
    (@core $core:ty) => { $core };
    (@wrap ; $e:expr) => { $e };
    (@wrap $f:ident; $e:expr) => { Self { $f: $e } };
    ($end:expr, $role:literal, $peer:literal, $(in $f:ident: $core:ty,)? open: $open:expr, capacity: $capacity:literal, len: $len:literal) => {
        crate::object::constructors!(
            @named "channel",
            capacity: usize,
            open: $open,
            concat!(" ", $capacity, " This end is taken: [`Error::Busy`](crate::Error::Busy) if a live process holds it already.")
        );

        fn build(at: crate::object::At<'_>, capacity: usize) -> crate::Result<Self> {
            let ring = Ring::new(at, capacity)?;
            ring.claim($end, $role)?;
            match <$crate::channel::pair_endpoint!(@core $($core)?)>::resume(&ring) {
                Ok(start) => Ok($crate::channel::pair_endpoint!(
                    @wrap $($f)?; <$crate::channel::pair_endpoint!(@core $($core)?)>::at(ring, start)
                )),
                Err(e) => {
                    // Nothing can be resumed: give the claim back before reporting.
                    ring.hdr().ends.0[$end].release(&ring.seg);
                    Err(e)
                }
            }
        }

        /// The waiting strategy of this end (default [`WaitStrategy::Blocking`](crate::WaitStrategy::Blocking)).
        pub fn set_wait_strategy(&mut self, strategy: crate::WaitStrategy) {
            self$(.$f)?.strategy = strategy;
        }

        #[doc = $capacity]
        pub fn capacity(&self) -> usize {
            self$(.$f)?.ring.cap as usize
        }

        #[doc = $len]
        pub fn len(&self) -> usize {
            self$(.$f)?.ring.hdr().len(self$(.$f)?.ring.cap)
        }

        /// Whether nothing is waiting (a snapshot).
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// The segment the channel lives in.
        pub fn segment(&self) -> &crate::Segment {
            &self$(.$f)?.ring.seg
        }

        #[doc = concat!("Whether the ", $peer, " is gone: one attached, and it closed or its process died.")]
        pub fn is_disconnected(&self) -> bool {
            self$(.$f)?.ring.hdr().peer_gone(&self$(.$f)?.ring.seg, $end)
        }

        /// The signal this end sleeps on (`space` for the sender, `data` for the
        /// receiver): where `aio` registers its doorbell.
        pub(crate) fn wait_signal(&self) -> &$crate::channel::Signal {
            let h = self$(.$f)?.ring.hdr();
            if $end == $crate::channel::SENDER { &h.space } else { &h.data }
        }
    };
}
pub(crate) use pair_endpoint;

/// `Drop` (which closes the end) and `Debug` (as `$name`, with its position) of an endpoint
/// type of a one-sender one-receiver channel (see [`pair_endpoint!`]), with its generic
/// parameters in brackets: `pair_endpoint_impls!([T: Pod] Sender<T>, SENDER, "spsc::Sender")`.
macro_rules! pair_endpoint_impls {
    ([$($gen:tt)*] $ty:ty, $(in $f:ident,)? $end:expr, $name:literal) => {
        impl<$($gen)*> Drop for $ty {
            fn drop(&mut self) {
                self$(.$f)?.ring.hdr().close(&self$(.$f)?.ring.seg, $end);
            }
        }

        impl<$($gen)*> std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let ring = &self$(.$f)?.ring;
                $crate::channel::fmt_endpoint(f, $name, &ring.seg, ring.cap, "position", self$(.$f)?.pos)
            }
        }
    };
}
pub(crate) use pair_endpoint_impls;

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::primitive::{self, AtomicU32, AtomicU64, Ordering};
use crate::segment::Segment;
pub(crate) use crate::sync::wait::BELLS;

/// Signal word bit 30: an async waiter may be waiting for its doorbell (see [`Signal`]).
const ASYNC: u32 = 1 << 30;
/// The signal word's counter bits.
const COUNT: u32 = !(WAITERS | ASYNC);
use crate::sync::wait::{self, Bells, WAITERS};

/// A value on its own 128-byte line (two lines of the adjacent-line prefetcher).
#[derive(Debug)]
#[repr(C, align(128))]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
pub(crate) struct Line<T>(pub(crate) T);

/// The header of a one-sender one-receiver channel (spsc, frames): one line per writer so
/// that nothing false-shares.
#[derive(Debug)]
#[repr(C)]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
pub(crate) struct Header {
    /// Endpoint registrations: `[sender, receiver]`.
    pub(crate) ends: Line<[EndpointSlot; 2]>,
    /// Position of the next message to publish (written by the sender; the frame ring's
    /// sender also polls nothing here, it is for `len` and for a new sender).
    pub(crate) tail: Line<AtomicU64>,
    /// Position of the next message to release (written by the receiver).
    pub(crate) head: Line<AtomicU64>,
    /// The receiver sleeps here when the ring is empty.
    pub(crate) data: Signal,
    /// The sender sleeps here when the ring is full.
    pub(crate) space: Signal,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Header>() == 5 * 128);

/// Index of the sender's slot in [`Header::ends`].
pub(crate) const SENDER: usize = 0;
/// Index of the receiver's slot in [`Header::ends`].
pub(crate) const RECEIVER: usize = 1;

impl Header {
    pub(crate) fn new() -> Header {
        Header {
            ends: Line([EndpointSlot::new(), EndpointSlot::new()]),
            tail: Line(AtomicU64::new(0)),
            head: Line(AtomicU64::new(0)),
            data: Signal::new(),
            space: Signal::new(),
        }
    }

    /// Claims end `end` ([`SENDER`] or [`RECEIVER`]) for this process; [`Error::Busy`]
    /// ("the `role` of `channel` `name`") if a live process holds it.
    pub(crate) fn claim(&self, seg: &Segment, end: usize, role: &str, channel: &str) -> Result<()> {
        if self.ends.0[end].claim(seg)? {
            Ok(())
        } else {
            Err(Error::Busy {
                what: format!(
                    "the {role} of {channel} `{}`",
                    seg.name().unwrap_or("(anonymous)")
                ),
            })
        }
    }

    /// Messages (or bytes) published and not yet released in a ring of `cap`: a snapshot.
    pub(crate) fn len(&self, cap: u64) -> usize {
        // Relaxed: a snapshot of counters; nothing is read through it.
        let tail = self.tail.0.load(Ordering::Relaxed);
        let head = self.head.0.load(Ordering::Relaxed);
        tail.wrapping_sub(head).min(cap) as usize
    }

    /// Closes end `end` cleanly (an endpoint's drop): frees its registration, then wakes
    /// the peer if it sleeps, so that it sees the close at once.
    pub(crate) fn close(&self, seg: &Segment, end: usize) {
        self.ends.0[end].release(seg);
        if end == SENDER {
            self.data.wake_all();
        } else {
            self.space.wake_all();
        }
    }

    /// Whether the peer of end `end` is gone: it attached, and it closed or its process
    /// died (an error asking the kernel counts as gone).
    pub(crate) fn peer_gone(&self, seg: &Segment, end: usize) -> bool {
        self.ends.0[1 - end].is_gone(seg).unwrap_or(true)
    }
}

/// The `Debug` form of a channel endpoint: its type, segment and capacity, and the one
/// process-local number that says where it is (`key`: its position or registration).
pub(crate) fn fmt_endpoint(
    f: &mut std::fmt::Formatter<'_>,
    name: &str,
    seg: &Segment,
    capacity: u64,
    key: &str,
    value: u64,
) -> std::fmt::Result {
    f.debug_struct(name)
        .field("segment", seg)
        .field("capacity", &capacity)
        .field(key, &value)
        .finish()
}

/// Rate-limits the liveness question of non-blocking calls.
#[derive(Debug)]
pub(crate) struct PeerCheck {
    next: Option<Instant>,
}

impl PeerCheck {
    pub(crate) fn new() -> PeerCheck {
        PeerCheck { next: None }
    }

    /// Whether the peer in `slot` is gone, asking the kernel at most every 10 ms (a cleared
    /// slot is seen at once).
    pub(crate) fn gone(&mut self, seg: &Segment, slot: &EndpointSlot) -> Result<bool> {
        let now = Instant::now();
        // Under loom the clock must not steer the model: only the cheap question (the
        // models kill peers around blocking calls, whose slices run out; see `wait_until`).
        if cfg!(loom) || self.next.is_some_and(|n| now < n) {
            return Ok(slot.is_closed());
        }
        self.next = Some(now + Duration::from_millis(10));
        slot.is_gone(seg)
    }
}

/// The iterators of the receiving ends: `next` until it fails, as
/// `Receiver::iter`/`try_iter` document. The iterator ends (`None`) on an error for which
/// `ends` is true (`Disconnected` for `iter`; also `WouldBlock` for `try_iter`), yields
/// any other error (`Corrupt`, ...) once and then ends: it is fused either way.
pub(crate) fn recv_iter<T>(
    mut next: impl FnMut() -> Result<T>,
    ends: fn(&Error) -> bool,
) -> impl std::iter::FusedIterator<Item = Result<T>> {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match next() {
            Ok(v) => Some(Ok(v)),
            Err(e) => {
                done = true;
                (!ends(&e)).then_some(Err(e))
            }
        }
    })
    .fuse()
}

/// For [`recv_iter`]: what ends a blocking iterator.
pub(crate) fn ends_iter(e: &Error) -> bool {
    matches!(e, Error::Disconnected)
}

/// For [`recv_iter`]: what ends a non-blocking iterator.
pub(crate) fn ends_try_iter(e: &Error) -> bool {
    matches!(e, Error::Disconnected | Error::WouldBlock)
}

/// How an endpoint waits when it must.
///
/// ```
/// use shmkit::{spsc, WaitStrategy};
/// # let name = shmkit::__private::test_name("doc-wait");
/// let mut tx = spsc::Sender::<u64>::create(&name, 64)?;
/// let mut rx = spsc::Receiver::<u64>::open(&name)?;
/// rx.set_wait_strategy(WaitStrategy::BusyPoll); // lowest latency, one busy core
/// tx.send(1)?;
/// assert_eq!(rx.recv()?, 1);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitStrategy {
    /// Spin briefly, then sleep on a futex until the peer wakes us (the default). Costs no
    /// CPU while waiting; a wake-up costs the peer a syscall and us a scheduler round trip.
    /// Right after this thread woke a sleeper (its peer, usually), a wait polls a while
    /// longer (until 100 µs after that wake, yielding the CPU between polls) before it
    /// sleeps: the peer is about to answer, and sleeping would cost a second wake-up, for
    /// both sides in turn when they take turns to fill and drain a small ring.
    #[default]
    Blocking,
    /// Never sleep: poll the ring in a loop (still checking the peer's liveness now and
    /// then). The lowest latency, at the price of a busy CPU while waiting.
    BusyPoll,
}

/// A process-shared eventcount: one futex word, bit 31 WAITERS (a futex sleeper may be
/// there), bit 30 ASYNC (an async waiter may be there), bits 0..=29 a counter bumped by
/// every wake; and the doorbells of async waiters ([`Bells`]), rung by the wake only when
/// ASYNC was announced, as the futex wake is made only when WAITERS was: a channel with
/// only async waiters costs its notifier a `sendto` per wake, no futex call.
#[derive(Debug)]
#[repr(C, align(128))]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
pub(crate) struct Signal {
    word: AtomicU32,
    bells: Bells,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Signal>() == 128);

impl Signal {
    pub(crate) fn new() -> Signal {
        Signal {
            word: AtomicU32::new(0),
            bells: Bells::new(),
        }
    }

    /// Registers doorbell `id` to be rung by every wake (idempotent). `false` if all
    /// [`BELLS`] are taken. The waiter announces itself afterwards (`prepare_wait`).
    pub(crate) fn add_bell(&self, id: u64) -> bool {
        self.bells.add(id)
    }

    /// Removes doorbell `id`.
    pub(crate) fn remove_bell(&self, id: u64) {
        self.bells.remove(id);
    }

    /// Called by the publishing side after it published (a stamp store or similar): wakes
    /// sleepers if there are any. One fence and one load when nobody sleeps.
    #[inline]
    pub(crate) fn notify(&self) {
        self.notify_with(crate::os::doorbell::ring);
    }

    /// [`Signal::notify`], ringing doorbells with `ring` (the loom model records them).
    #[inline]
    pub(crate) fn notify_with(&self, ring: impl FnMut(u64)) {
        // SeqCst fence: orders our publication (a store) before the load of the WAITERS
        // bit; pairs with the fence in `prepare_wait` on the waiting side (Dekker: either
        // we see its bit, or it sees our publication when it re-checks).
        primitive::fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence above.
        if self.word.load(Ordering::Relaxed) & (WAITERS | ASYNC) != 0 {
            self.wake_all_with(ring, true);
        }
    }

    /// [`Signal::notify`] for a publisher whose publication was a `SeqCst`
    /// read-modify-write (the mpmc ring's stamp CASes): the same guarantee without the
    /// fence, which costs as much as the CAS itself (a locked instruction on x86), for
    /// every waiter whose re-check reads a word that a `SeqCst` RMW of ours, sequenced
    /// before this call, wrote: the mpmc stamps, and `head` and `tail`, which the claims
    /// move with `SeqCst` CASes for this (an async sender's `room` re-checks `head`).
    /// Where the change may be another process's (a slot freed under us), use `notify`.
    ///
    /// Why no wake-up is lost (C++20 [atomics.order]/4, which Rust follows): let the
    /// waiter's announcing RMW of the word be `A`, its fence `F` (`prepare_wait`), its
    /// re-check's load of our stamp `L`; our publication `P` and our load of the word `R`,
    /// all but `L` `SeqCst`. Suppose `R` misses `A` and `L` misses `P`. `R` is then
    /// coherence-ordered before `A`, both `SeqCst`: `R` precedes `A` in the total order
    /// `S`. `A` is sequenced before `F`: `A` precedes `F`. `F` happens before `L`, which is
    /// coherence-ordered before the `SeqCst` `P`: `F` precedes `P` (4.3). `P` is sequenced
    /// before `R`: `P` precedes `R`. A cycle in `S`: impossible. So `R` reads `A` or a
    /// later value (another waker's clearing CAS, which woke the waiter already), or the
    /// re-check sees the publication, as the two fences of `notify` guarantee. (`L` may be
    /// `Relaxed`: 4.3 asks nothing of it.)
    ///
    /// Under loom the fence stays: loom treats `SeqCst` accesses as `AcqRel` (a documented
    /// limitation, tokio-rs/loom#180), under which this form would lose wake-ups that
    /// the memory model rules out; its models check the fenced form.
    #[inline]
    pub(crate) fn notify_after_seqcst_rmw(&self) {
        if cfg!(loom) {
            return self.notify();
        }
        // SeqCst: `R` above, after the caller's `SeqCst` publication `P`.
        if self.word.load(Ordering::SeqCst) & (WAITERS | ASYNC) != 0 {
            self.wake_all_with(crate::os::doorbell::ring, true);
        }
    }

    /// Called after a publication (a `Release` store) that may let sleepers finish: wakes
    /// them if there are any and `worth` (asked only then) says that their condition may
    /// now hold; a sleeper whose condition `worth` rules out must be woken by whoever
    /// makes it hold, who calls this too (or else by its sleep slice's end). For waits
    /// through
    /// [`wait_until_heavy`], whose waiters issue the heavy side of an asymmetric fence
    /// (`os::heavy_barrier`) after announcing themselves and before they re-check.
    ///
    /// `light`: this process is registered for that barrier
    /// (`os::register_for_heavy_barrier`), and a compiler fence takes the place of the
    /// `SeqCst` fence of [`Signal::notify`]: either our load of the word below ran before
    /// the waiter's barrier interrupted us, and then our publication, sequenced before it,
    /// is visible to the re-check after the barrier; or it ran after, and then it sees the
    /// announcement (the barrier orders it after everything before the barrier call).
    /// Without `light`, the `SeqCst` fence pairs with the waiter's, as in `notify`.
    ///
    /// `worth`'s loads come after a `SeqCst` fence, so that a waiter's `SeqCst` loads of
    /// our publication, made after it reads what `worth` read change, see it.
    #[inline]
    pub(crate) fn notify_light_if(&self, light: bool, worth: impl FnOnce() -> bool) {
        // (Loom has no asymmetric fence to model: there, always the fence.)
        if light && !cfg!(loom) {
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
        } else {
            // SeqCst: see above.
            primitive::fence(Ordering::SeqCst);
        }
        // Relaxed: ordered by the fence above, or by the waiter's barrier.
        if self.word.load(Ordering::Relaxed) & (WAITERS | ASYNC) != 0 {
            // SeqCst: see above.
            primitive::fence(Ordering::SeqCst);
            if worth() {
                self.wake_all_with(crate::os::doorbell::ring, true);
            }
        }
    }

    /// Wakes every sleeper and rings every registered doorbell (a closing end: whether
    /// or not anybody announced itself).
    #[cold]
    pub(crate) fn wake_all(&self) {
        self.wake_all_with(crate::os::doorbell::ring, false);
    }

    /// `announced`: wake futex sleepers only if WAITERS was set, ring doorbells only if
    /// ASYNC was (the notify path); otherwise both, always.
    #[cold]
    fn wake_all_with(&self, ring: impl FnMut(u64), announced: bool) {
        // Bump the counter and clear WAITERS and ASYNC in one CAS: every sleeper wakes,
        // and re-announces itself if it must sleep again.
        // Release: a closing end clears its slot before it wakes; a waiter whose announcing
        // RMW (`prepare_wait`, Acquire) reads this bump, or a later value, then sees the
        // cleared slot in its cheap check (see `wait_until`). Relaxed load and failure:
        // only the value to replace.
        let mut w = self.word.load(Ordering::Relaxed);
        loop {
            let new = (w & COUNT).wrapping_add(1) & COUNT;
            match self
                .word
                .compare_exchange_weak(w, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(cur) => w = cur,
            }
        }
        if !announced || w & WAITERS != 0 {
            wait::wake(&self.word, u32::MAX);
        }
        if !announced || w & ASYNC != 0 {
            // The bells' SeqCst loads come after the SeqCst fence of `notify_with`, or after
            // the SeqCst load of `notify_after_seqcst_rmw`, which read the waiter's
            // announcing RMW or a later RMW (its release sequence: the word changes by RMWs
            // only) and so synchronizes with it; or, from `wake_all`, after a close that a
            // waiter's cheap check looks at. See `Bells::add`.
            self.bells.ring_with(ring);
        }
    }

    /// The async form of [`prepare_wait`](Self::prepare_wait), after the doorbell was
    /// registered (`add_bell`): announces an async waiter (ASYNC), with the same fences.
    /// The caller re-checks its condition after this and then waits for its doorbell.
    pub(crate) fn prepare_async_wait(&self) {
        // SeqCst: the RMW and the fence pair with the fence in `notify` (as in
        // `prepare_wait`); the RMW also orders the registration before the announcement.
        self.word.fetch_or(ASYNC, Ordering::SeqCst);
        primitive::fence(Ordering::SeqCst);
    }

    /// Step 1 of sleeping: announce a sleeper and return the value to sleep on. The caller
    /// re-checks its condition after this and before it sleeps on the word.
    pub(crate) fn prepare_wait(&self) -> u32 {
        // SeqCst: the RMW and the fence pair with the fence in `notify`.
        let w = self.word.fetch_or(WAITERS, Ordering::SeqCst) | WAITERS;
        primitive::fence(Ordering::SeqCst);
        w
    }
}

/// An endpoint's registration in a channel header: the liveness token of the process that
/// holds it (0: free) and its pid (display only).
#[derive(Debug)]
#[repr(C)]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
pub(crate) struct EndpointSlot {
    token: AtomicU32,
    pid: AtomicU32,
    /// Non-zero once any process has held the slot: a peer that never came is not gone.
    ever: AtomicU32,
}

impl EndpointSlot {
    pub(crate) fn new() -> EndpointSlot {
        EndpointSlot {
            token: AtomicU32::new(0),
            pid: AtomicU32::new(0),
            ever: AtomicU32::new(0),
        }
    }

    /// Claims the slot for this process: free, or held by a dead process. `Ok(false)` if a
    /// live process holds it.
    pub(crate) fn claim(&self, seg: &Segment) -> Result<bool> {
        let me = seg.token()?;
        for _ in 0..16 {
            // Acquire: pairs with the Release in `release`, so the previous holder's last
            // writes (its position) are visible to us.
            let cur = self.token.load(Ordering::Acquire);
            if cur != 0 && (cur == me || seg.is_alive(cur)?) {
                return Ok(false);
            }
            // AcqRel: as above, and publishes our claim.
            if self
                .token
                .compare_exchange(cur, me, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                // Relaxed: display only.
                self.pid.store(std::process::id(), Ordering::Relaxed);
                // Release: after our token; readers load `ever` (Acquire) before `token`,
                // so one that sees `ever` also sees our token, never a stale 0 from
                // before the claim (which would read as "closed").
                self.ever.store(1, Ordering::Release);
                return Ok(true);
            }
        }
        Err(Error::corrupt("endpoint slot keeps changing under us"))
    }

    /// Gives the slot up (clean close).
    pub(crate) fn release(&self, seg: &Segment) {
        if let Ok(me) = seg.token() {
            // Release: publishes our last writes to the next holder's Acquire in `claim`.
            let _ = self
                .token
                .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed);
        }
    }

    /// Whether the peer closed its end cleanly: a cheap check, no syscall.
    pub(crate) fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release store in `claim`; loaded first (see there).
        self.ever.load(Ordering::Acquire) != 0
        // Acquire: pairs with the Release in `release`, so everything the peer published
        // before it closed is visible to the final poll that follows a `true`.
            && self.token.load(Ordering::Acquire) == 0
    }

    /// [`EndpointSlot::is_closed`] or [`EndpointSlot::is_gone`], as `check` says.
    pub(crate) fn is_gone_by(&self, seg: &Segment, check: Check) -> Result<bool> {
        match check {
            Check::Cheap => Ok(self.is_closed()),
            Check::Full => self.is_gone(seg),
        }
    }

    /// Whether the peer is gone: it attached once, and now the slot is free or its
    /// process is dead. A peer that never attached is not gone (it may still come).
    pub(crate) fn is_gone(&self, seg: &Segment) -> Result<bool> {
        // Acquire: pairs with the Release store in `claim`; loaded first (see there).
        let ever = self.ever.load(Ordering::Acquire) != 0;
        // Acquire: a cleared slot means the peer closed after its last publication.
        let t = self.token.load(Ordering::Acquire);
        if t == 0 {
            return Ok(ever);
        }
        Ok(!seg.is_alive(t)?)
    }
}

// ---------------------------------------------------------------------------------------
// Inspection (for `shmkit inspect`): decoding a snapshot of a channel header read with
// plain reads. The bytes are a peer-written snapshot: every value is only displayed.

/// A `u32` at `off` in `b`, if in bounds.
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// A `u64` at `off` in `b`, if in bounds.
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// What an endpoint slot at `off` says: `None` if out of bounds.
fn describe_end(b: &[u8], off: usize, alive: &dyn Fn(u32) -> bool) -> Option<String> {
    let token = u32_at(b, off + std::mem::offset_of!(EndpointSlot, token))?;
    let pid = u32_at(b, off + std::mem::offset_of!(EndpointSlot, pid))?;
    let ever = u32_at(b, off + std::mem::offset_of!(EndpointSlot, ever))?;
    Some(if token != 0 {
        format!("pid {pid}, {}", if alive(token) { "alive" } else { "dead" })
    } else if ever != 0 {
        format!("closed (last held by pid {pid})")
    } else {
        "never attached".to_owned()
    })
}

/// The fields of a one-sender one-receiver channel header (spsc, frames) in `body`;
/// `unit` names what the positions count.
pub(crate) fn describe_pair(
    body: &[u8],
    capacity: u64,
    unit: &str,
    alive: &dyn Fn(u32) -> bool,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let ends = std::mem::offset_of!(Header, ends);
    let size = std::mem::size_of::<EndpointSlot>();
    for (i, role) in [(SENDER, "sender"), (RECEIVER, "receiver")] {
        if let Some(d) = describe_end(body, ends + i * size, alive) {
            out.push((role.to_owned(), d));
        }
    }
    let tail = u64_at(body, std::mem::offset_of!(Header, tail));
    let head = u64_at(body, std::mem::offset_of!(Header, head));
    if let (Some(tail), Some(head)) = (tail, head) {
        out.push((format!("published ({unit})"), tail.to_string()));
        out.push((format!("released ({unit})"), head.to_string()));
        let depth = tail.wrapping_sub(head);
        out.push((
            format!("depth ({unit})"),
            if depth <= capacity {
                depth.to_string()
            } else {
                format!("{depth} (inconsistent: more than the capacity)")
            },
        ));
    }
    out
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_pair_header_starts_all_zero() {
        crate::object::assert_zero_start(Header::new(), |_| ());
    }
}
