//! [`JoinableQueue`]: a [`Queue`] with Python's `task_done` and `join`, and what happens
//! when a consumer dies holding items.
//!
//! The task counters live in a second segment, `NAME.jq` (kind `joinable-queue`): a table
//! of consumers, each on a line of its own (a liveness token, and `held`: the number of
//! items it took and has not marked done), the number of items lost to dead consumers,
//! and a wake-up word for `join`.
//!
//! Nothing is counted when an item is put: an item is unfinished while it waits in the
//! queue, then while the consumer that took it holds it. So `join` returns once the queue
//! is drained (every position claimed for sending has been claimed for receiving; `join`
//! itself steps over what dead producers and given-back claims left at its front) and no
//! consumer holds an item. A consumer that finds an item published sets `TAKING` in its
//! `held` right before the CAS that claims it, and clears it if another consumer's CAS
//! won: whoever sees the queue's `head` past an item (Acquire, against the claim's
//! `SeqCst` CAS) sees it held or being taken. A consumer waiting on an empty queue counts
//! nothing. A producer killed mid-`put` (even one blocked on a full queue) leaves nothing
//! counted: `join` steps over its claim, if it made one.
//!
//! Each `held` is written by its consumer alone, on its own line, with plain stores: a
//! `put` adds nothing to the queue's own work, and a `task_done` shares no cache line with
//! the other processes and, in a registered process (below), makes no locked instruction
//! unless `join` sleeps. (Measured, one producer and two consumers: a counter that every
//! `put` incremented and every `task_done` decremented held the queue to 0.4x the rate of
//! a plain `Queue`; a read-modify-write of each consumer's own count to about 0.55x; a
//! store and a `SeqCst` fence in `task_done` to about 0.6x.)
//!
//! The one ordering that plain stores do not give is the wake-up's: a consumer stores its
//! count, then looks whether `join` sleeps, while `join` announces its sleep, then reads
//! the counts. That handshake needs a full barrier on both sides; the consumers' side is
//! taken by `join`, which after announcing itself calls
//! `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` (see [`Signal::notify_light_if`]): once
//! per sleep, where a barrier per item would cost every `task_done`. A consumer process
//! that cannot register for it (a kernel before 4.16, a seccomp filter) uses a `SeqCst`
//! fence instead. A consumer wakes `join` only when its count reaches 0 with nothing left
//! in the queue (whoever takes what is left wakes it when done).
//!
//! A consumer killed at any point is found holding every item it took and did not finish
//! (and, if it died between `TAKING` and its claim's CAS or the clearing after a failed
//! one, one more, which then stays in the queue for another consumer: `join` can be told
//! of one item too many, never wait for one it cannot see). A `join` that waits looks for
//! dead consumers and dead producers' claims whenever its sleep slice ends (a
//! `join_timeout` shorter than a slice, at most once in 10 ms when it times out): their
//! items are counted as lost and `join` returns [`Error::TasksLost`] with that count
//! instead of waiting forever. A consumer handle dropped while it holds items it never
//! marked done counts them as lost too.
//!
//! Where Python counts `task_done` per queue, it is counted per handle here: a handle marks
//! done the items it took (one handle per thread, or one shared behind a mutex, as
//! Python's threads share one queue object). Python's `join` on a thread that holds
//! unfinished items waits forever; here it is an error.

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

use super::{Queue, Recv};
use crate::channel::mpmc::Attempts;
use crate::channel::{wait_until_heavy, Check, Line, Poll, Signal};
use crate::codec::{Codec, Postcard};
use crate::error::{Error, Result};
use crate::object::{At, Head, Len, Shared};
use crate::primitive::{AtomicU32, AtomicU64, Ordering};
use crate::segment::{CreationMode, Kind, Options};
use crate::sync::wait::Deadline;

/// How many consumer handles can hold items at a time.
const CONSUMERS: usize = 64;

/// In a consumer's `held`: an attempt to take an item is under way (see the module docs).
const TAKING: u64 = 1 << 63;

/// One consumer's registration.
#[derive(Debug)]
#[repr(C)]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
struct Consumer {
    /// The liveness token of the consumer's handle, or of the handle reaping it after its
    /// death (0: free).
    token: AtomicU32,
    _pad: u32,
    /// Items taken and not marked done, plus [`TAKING`] while an attempt to take one is
    /// under way. Written by the consumer alone while it lives; by its reaper after.
    held: AtomicU64,
}

/// The shared task counters.
#[derive(Debug)]
#[repr(C)]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
pub(crate) struct JoinState {
    /// Items taken by consumers that died (or closed) before marking them done.
    lost: Line<AtomicU64>,
    /// `join` sleeps here.
    done: Signal,
    consumers: [Line<Consumer>; CONSUMERS],
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Consumer>() == 16);
#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<JoinState>() == (2 + CONSUMERS) * 128);

impl JoinState {
    fn new() -> JoinState {
        JoinState {
            lost: Line(AtomicU64::new(0)),
            done: Signal::new(),
            consumers: std::array::from_fn(|_| {
                Line(Consumer {
                    token: AtomicU32::new(0),
                    _pad: 0,
                    held: AtomicU64::new(0),
                })
            }),
        }
    }
}

/// A [`Queue`] whose items are marked done ([`task_done`](Self::task_done)) and waited for
/// ([`join`](Self::join)), as Python's `JoinableQueue`. A consumer that dies (or drops its
/// handle) holding items it did not mark done does not leave `join` waiting forever: its
/// items are counted as lost and `join` returns [`Error::TasksLost`] with their number.
///
/// A handle's [`task_done`](Self::task_done) marks done an item that handle took: Python
/// counts `task_done` per queue object, which its threads share; share one handle (behind
/// a mutex) for that. A [`join`](Self::join) on a handle that holds items it has not
/// marked done is an error (Python's would wait forever). A producer killed mid-`put`
/// leaves nothing to wait for: an item counts from when it is in the queue.
///
/// ```
/// use shmkit::JoinableQueue;
/// # let name = shmkit::__private::test_name("doc-jq");
/// let mut q = JoinableQueue::<String>::create(&name, 16)?;
/// let mut worker = JoinableQueue::<String>::open(&name)?; // usually in another process
/// q.put(&"task".to_string())?;
/// let t = worker.get()?;
/// worker.task_done()?;
/// q.join()?; // every item put has been marked done
/// assert!(matches!(worker.task_done(), Err(shmkit::Error::InvalidArgument(_))));
/// # let _ = t;
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct JoinableQueue<T, C: Codec<T> = Postcard> {
    queue: Queue<T, C>,
    state: Shared<JoinState>,
    /// This handle's consumer registration, once it has taken an item.
    me: Option<usize>,
    /// Whether this process is registered for the heavy barrier that `join` issues, so
    /// that its counts are published with a compiler fence only (see the module docs).
    light: bool,
    /// When a `join` that times out before its first sleep slice ends may look for dead
    /// peers next (short timeouts in a loop still find them).
    next_check: Cell<Option<Instant>>,
}

impl<T, C: Codec<T>> JoinableQueue<T, C> {
    super::queue_constructors!(" (and its task counters, `NAME.jq`)");

    fn with_mode(name: &str, mode: CreationMode, capacity: usize, opts: &Options) -> Result<Self> {
        let counters = format!("{name}.jq");
        // Counters first: an opener that finds the queue finds them too.
        let at = At::named(&counters, mode, opts);
        let state = Shared::new(
            at,
            Kind::JoinableQueue,
            Len::Exactly(0),
            Head::zero(JoinState::new),
            |_| (),
        )?;
        let queue = Queue::with_tag(name, mode, capacity, opts, super::tag::<T, C>(true))?;
        Ok(JoinableQueue {
            queue,
            state,
            me: None,
            light: false,
            next_check: Cell::new(None),
        })
    }

    fn st(&self) -> &JoinState {
        self.state.head()
    }

    /// Puts `item` (see [`Queue::put`]); it is unfinished until the consumer that takes it
    /// calls [`task_done`](Self::task_done).
    pub fn put(&mut self, item: &T) -> Result<()> {
        self.queue.put(item)
    }

    /// [`Queue::try_put`].
    pub fn try_put(&mut self, item: &T) -> Result<()> {
        self.queue.try_put(item)
    }

    /// [`Queue::put_timeout`].
    pub fn put_timeout(&mut self, item: &T, timeout: Duration) -> Result<()> {
        self.queue.put_timeout(item, timeout)
    }

    /// [`Queue::attempt_put`].
    pub(crate) fn attempt_put(&mut self, item: &T) -> Result<()> {
        self.queue.attempt_put(item)
    }

    /// [`Queue::leave_turn`].
    pub(crate) fn leave_turn(&mut self) {
        self.queue.leave_turn();
    }

    /// Registers this handle as a consumer (once): a free slot, or a dead process's, whose
    /// items are reaped first.
    fn register(&mut self) -> Result<usize> {
        if let Some(i) = self.me {
            return Ok(i);
        }
        let seg = self.state.segment();
        let me = seg.token()?;
        for (i, c) in self.st().consumers.iter().enumerate() {
            // Acquire: pairs with the Release in `Drop` and `reap_one`.
            let cur = c.0.token.load(Ordering::Acquire);
            let free = cur == 0 || (cur != me && !seg.is_alive(cur)?);
            if !free {
                continue;
            }
            if cur != 0 {
                reap_one(self.st(), i, cur, me);
            }
            // AcqRel: takes the slot (a racing registrant or reaper loses the CAS).
            if c.0
                .token
                .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                // Relaxed: nothing to inherit (a free slot's count is 0, unless tampered
                // with); our claims' CASes publish it, as every store to it.
                c.0.held.store(0, Ordering::Relaxed);
                self.me = Some(i);
                self.light = crate::os::register_for_heavy_barrier();
                return Ok(i);
            }
        }
        Err(Error::Busy {
            what: format!("all {CONSUMERS} consumer registrations of a joinable queue"),
        })
    }

    /// Takes the next item (see [`Queue::get`]); call [`task_done`](Self::task_done) on
    /// this handle when it is processed.
    pub fn get(&mut self) -> Result<T> {
        self.counted_get(Recv::Block)
    }

    /// [`Queue::try_get`], counted.
    pub fn try_get(&mut self) -> Result<T> {
        self.counted_get(Recv::Try)
    }

    /// [`Queue::get_timeout`], counted.
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<T> {
        self.counted_get(Recv::Timeout(timeout))
    }

    fn counted_get(&mut self, how: Recv) -> Result<T> {
        let i = self.register()?;
        let st = self.state.head();
        let taking = Taking {
            held: &st.consumers[i].0.held,
            done: &st.done,
            light: self.light,
            taken: Cell::new(false),
        };
        let r = self.queue.recv_told(how, &taking);
        taking.taken.set(r.is_ok());
        drop(taking); // settles the claim, if there was one
        r
    }

    /// Marks one item taken by this handle done (Python's `task_done`).
    /// [`Error::InvalidArgument`] if this handle marked done as many items as it took.
    pub fn task_done(&mut self) -> Result<()> {
        let Some(i) = self.me else {
            return Err(too_many());
        };
        // Relaxed: only this handle writes it while it lives (no attempt is under way).
        let h = self.st().consumers[i].0.held.load(Ordering::Relaxed);
        if h == 0 {
            return Err(too_many());
        }
        self.count_back(i, h);
        Ok(())
    }

    /// Counts one of the `h` items that consumer `i` (this handle) holds back, and wakes
    /// `join` if this may have been the last unfinished item.
    fn count_back(&self, i: usize, h: u64) {
        let st = self.st();
        // Release: pairs with `join`'s loads, so that the work done before `task_done` is
        // visible after `join`. A store, not a read-modify-write: see the module docs.
        st.consumers[i]
            .0
            .held
            .store(h.wrapping_sub(1), Ordering::Release);
        if h == 1 {
            // Only if nothing waits in the queue: whoever takes what does wakes `join`
            // when it is done. (An error there is left for `join` to find.)
            st.done
                .notify_light_if(self.light, || self.queue.drained(false).unwrap_or(true));
        }
    }

    /// Waits until every item put has been marked done. [`Error::TasksLost`] if items were
    /// taken by consumers that died before marking them done (counted since the queue was
    /// created; Python's `join` would wait forever). [`Error::InvalidArgument`] at once if
    /// this handle holds items it has not marked done (only it can, so this would wait
    /// forever).
    pub fn join(&self) -> Result<()> {
        self.join_until(Deadline::NEVER)
    }

    /// [`join`](Self::join), waiting at most `timeout` ([`Error::Timeout`]).
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.join_until(Deadline::after(timeout))
    }

    fn join_until(&self, deadline: Deadline) -> Result<()> {
        let st = self.st();
        let seg = self.state.segment();
        let me = seg.token()?;
        if let Some(i) = self.me {
            // Relaxed: only this handle writes it (and no attempt is under way).
            let h = st.consumers[i].0.held.load(Ordering::Relaxed);
            if h > 0 {
                return Err(Error::InvalidArgument(format!(
                    "join() on a handle that holds {h} item(s) it has not marked done \
                     (task_done): it would wait forever"
                )));
            }
        }
        let r = wait_until_heavy(
            &st.done,
            deadline,
            || {
                Ok(if self.finished()? {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                })
            },
            |check| {
                if check == Check::Full {
                    self.look_for_the_dead(me)?;
                }
                Ok(false)
            },
        );
        match r {
            // A wait shorter than a sleep slice never looks for the dead: look here, as
            // often as the slices would, and poll once more.
            Err(Error::Timeout) if self.check_due() => {
                self.look_for_the_dead(me)?;
                if !self.finished()? {
                    return Err(Error::Timeout);
                }
            }
            r => r?,
        }
        // Acquire: pairs with the AcqRel add in `give_up`.
        match st.lost.0.load(Ordering::Acquire) {
            0 => Ok(()),
            count => Err(Error::TasksLost { count }),
        }
    }

    /// `join`'s liveness check, as the handle with token `me`: the items of dead consumers
    /// count as lost, and what a dead producer's claim left at the front of the queue is
    /// skipped, should no consumer be blocked there to do it.
    fn look_for_the_dead(&self, me: u32) -> Result<()> {
        let (st, seg) = (self.st(), self.state.segment());
        for (i, c) in st.consumers.iter().enumerate() {
            // Acquire: pairs with the registration CAS.
            let t = c.0.token.load(Ordering::Acquire);
            if t != 0 && t != me && !seg.is_alive(t)? {
                reap_one(st, i, t, me);
            }
        }
        self.queue.drained(true)?;
        Ok(())
    }

    /// Whether 10 ms have passed since the last time this said so.
    fn check_due(&self) -> bool {
        if cfg!(loom) {
            return false; // the clock must not steer a loom model
        }
        let now = Instant::now();
        if self.next_check.get().is_some_and(|n| now < n) {
            return false;
        }
        self.next_check.set(Some(now + Duration::from_millis(10)));
        true
    }

    /// Whether every item put has been marked done (or lost): the queue drained, then no
    /// consumer holding one. In that order: a consumer counts an item held before its claim
    /// moves `head` past it, and `drained` reads `head` with Acquire (see the module docs).
    /// A free registration's count is not looked at: a consumer's count is 0 (its items
    /// counted as lost) before its registration is freed, and a new one starts at 0.
    fn finished(&self) -> Result<bool> {
        Ok(self.queue.drained(false)?
            && self.st().consumers.iter().all(|c| {
                // SeqCst (so Acquire): pairs with the Release stores of `count_back` (the
                // work done before `task_done`) and of `give_up`; SeqCst for the
                // wake-up's skip (see `Signal::notify_light_if`). Acquire: pairs with the
                // Release store of 0 in `reap_one` and `Drop`, after `give_up`.
                c.0.held.load(Ordering::SeqCst) == 0 || c.0.token.load(Ordering::Acquire) == 0
            }))
    }

    /// Items taken by consumers that died before marking them done, since the queue was
    /// created.
    pub fn lost_tasks(&self) -> u64 {
        // Relaxed: a snapshot.
        self.st().lost.0.load(Ordering::Relaxed)
    }

    /// Items put and not yet marked done (a snapshot): those waiting in the queue (as
    /// [`Queue::len`] counts them, a long item as the slots it takes) and those consumers
    /// took and hold.
    pub fn unfinished(&self) -> u64 {
        self.st()
            .consumers
            .iter()
            // Relaxed: a snapshot. A free registration's count is not looked at, as in
            // `finished`.
            .filter(|c| c.0.token.load(Ordering::Relaxed) != 0)
            .map(|c| c.0.held.load(Ordering::Relaxed) & !TAKING)
            // Saturating: the counts are peers' to write.
            .fold(self.queue.len() as u64, u64::saturating_add)
    }

    /// This handle's producing end (attached on first use).
    pub(crate) fn sender(&mut self) -> Result<&mut crate::channel::mpmc::Sender<super::Slot>> {
        self.queue.sender()
    }

    /// This handle's consuming end (attached on first use).
    pub(crate) fn receiver(&mut self) -> Result<&mut crate::channel::mpmc::Receiver<super::Slot>> {
        self.queue.receiver()
    }

    /// The signals of the ends this handle has attached.
    pub(crate) fn attached_signals(&self) -> impl Iterator<Item = &crate::channel::Signal> {
        self.queue.attached_signals()
    }

    /// The queue itself (`len`, `capacity`, `lost`, ...).
    pub fn queue(&self) -> &Queue<T, C> {
        &self.queue
    }
}

fn too_many() -> Error {
    Error::InvalidArgument("task_done() called more times than this handle took items".into())
}

/// A consumer's count of the item it takes (see the module docs): `TAKING` from right
/// before the claiming CAS, then, when it is dropped after the receive, one more held
/// item (`taken`) or, if the receive failed after its claim (the item did not decode, or
/// its slots were tampered with; or a `Deserialize` impl panicked), one item done.
struct Taking<'a> {
    held: &'a AtomicU64,
    done: &'a Signal,
    light: bool,
    taken: Cell<bool>,
}

impl Drop for Taking<'_> {
    fn drop(&mut self) {
        // Relaxed: only this handle writes it. TAKING is still set if a claim succeeded (a
        // failed one cleared it).
        let h = self.held.load(Ordering::Relaxed);
        if h & TAKING == 0 {
            return;
        }
        let count = h & !TAKING;
        if self.taken.get() {
            // Relaxed: from one count that is not 0 to another (nothing for `join`).
            self.held.store(count.wrapping_add(1), Ordering::Relaxed);
        } else {
            // Release: as in `count_back`. Nobody will mark it done: it is done.
            self.held.store(count, Ordering::Release);
            if count == 0 {
                self.done.notify_light_if(self.light, || true);
            }
        }
    }
}

impl Attempts for Taking<'_> {
    #[inline]
    fn claiming(&self) {
        // Relaxed (load and store: only this consumer writes it while it lives): the store
        // is sequenced before the claiming CAS of `head` (SeqCst), which publishes it to
        // `join`'s Acquire load of `head` (`Holder::drained`).
        let h = self.held.load(Ordering::Relaxed);
        self.held.store(h | TAKING, Ordering::Relaxed);
    }

    #[inline]
    fn missed(&self, drained: impl FnOnce() -> bool) {
        // Relaxed load: as in `claiming`. Release store: as in `count_back`.
        let h = self.held.load(Ordering::Relaxed) & !TAKING;
        self.held.store(h, Ordering::Release);
        if h == 0 {
            // A `join` that saw this claim counted may sleep. Only if nothing waits in the
            // queue, as in `count_back`: whoever took the message wakes `join` when done.
            self.done.notify_light_if(self.light, drained);
        }
    }
}

/// Reaps consumer `i`, whose handle (token `token`) is dead, as the handle with token
/// `me`: its held items count as lost.
fn reap_one(st: &JoinState, i: usize, token: u32, me: u32) {
    let c = &st.consumers[i].0;
    // Whoever swaps the dead token out reaps: once. Its own token goes in, so that a
    // reaper killed before it is done is reaped in turn (its items may then be counted
    // twice: `join` is told of too many, never waits for one it cannot see). AcqRel:
    // pairs with the registration CAS.
    if c.token
        .compare_exchange(token, me, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    give_up(st, c);
    // Release: the slot is free again, its count zero.
    c.token.store(0, Ordering::Release);
}

/// The items consumer `c` holds (it died, or closed without marking them done) are counted
/// as lost, and `join` is woken.
fn give_up(st: &JoinState, c: &Consumer) {
    // Acquire: the holder wrote it last (it is dead, or this is its own drop); the token
    // CAS before this orders our read. An attempt under way counts as an item taken: it
    // may have claimed one.
    let h = c.held.load(Ordering::Acquire);
    let held = (h & !TAKING).wrapping_add(h >> 63);
    if held > 0 {
        // AcqRel: pairs with the Acquire load in `join`.
        st.lost.0.fetch_add(held, Ordering::AcqRel);
        // Release: a `join` that reads 0 here (Acquire) reads `lost` with the add above.
        c.held.store(0, Ordering::Release);
        st.done.notify();
    }
}

impl<T, C: Codec<T>> Drop for JoinableQueue<T, C> {
    fn drop(&mut self) {
        if let Some(i) = self.me {
            let st = self.state.head();
            if let Ok(me) = self.state.segment().token() {
                let c = &st.consumers[i].0;
                // Acquire: pairs with the registration CAS. Not ours any more (tampered
                // with, or a copy of the handle): nothing to give up.
                if c.token.load(Ordering::Acquire) != me {
                    return;
                }
                // Items it took and never marked done would keep `join` waiting forever:
                // they count as lost, as a dead consumer's do.
                give_up(st, c);
                // Release: pairs with the Acquire loads of registrants.
                let _ = c
                    .token
                    .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed);
            }
        }
    }
}

impl<T, C: Codec<T>> fmt::Debug for JoinableQueue<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("queue", &self.queue)
            .field("unfinished", &self.unfinished())
            .finish()
    }
}
