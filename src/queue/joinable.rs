//! [`JoinableQueue`]: a [`Queue`] with Python's `task_done` and `join`, and what happens
//! when a consumer dies holding items.
//!
//! The task counters live in a second segment, `NAME.jq` (kind `joinable-queue`): the
//! number of items put and not yet done (`unfinished`), a table of consumers (each a
//! liveness token and the number of items it took and has not marked done), the number of
//! items lost to dead consumers, and a wake-up word for `join`.
//!
//! A consumer counts an item as held *before* it takes it from the queue, and `task_done`
//! counts it back, so a consumer killed at any point is found holding every item it took
//! and did not finish (and, if it died between counting and taking, one more, which then
//! stays in the queue for another consumer: `join` can be told of one item too many, never
//! wait for one it cannot see). A `join` that waits looks for dead consumers whenever its
//! sleep slice ends: their items are taken out of `unfinished`, counted as lost, and `join`
//! returns [`Error::TasksLost`] with that count instead of waiting forever. A consumer
//! handle dropped while it holds items it never marked done counts them as lost too.

use std::fmt;
use std::time::Duration;

use super::Queue;
use crate::channel::{wait_until, Check, Line, Poll, Signal, WaitStrategy};
use crate::codec::{Codec, Postcard};
use crate::error::{Error, Result};
use crate::object::{At, Head, Len, Shared};
use crate::primitive::{AtomicU32, AtomicU64, Ordering};
use crate::segment::{CreationMode, Kind, Options};
use crate::sync::wait::Deadline;

/// How many consumer handles can hold items at a time.
const CONSUMERS: usize = 64;

/// A consumer registration being reaped (never a liveness token).
const REAPING: u32 = u32::MAX;

/// One consumer's registration.
#[derive(Debug)]
#[repr(C)]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
struct Consumer {
    /// The liveness token of the process (0: free).
    token: AtomicU32,
    _pad: u32,
    /// Items taken and not marked done.
    held: AtomicU64,
}

/// The shared task counters.
#[derive(Debug)]
#[repr(C)]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
pub(crate) struct JoinState {
    unfinished: Line<AtomicU64>,
    lost: AtomicU64,
    done: Signal,
    consumers: [Consumer; CONSUMERS],
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Consumer>() == 16);

impl JoinState {
    fn new() -> JoinState {
        JoinState {
            unfinished: Line(AtomicU64::new(0)),
            lost: AtomicU64::new(0),
            done: Signal::new(),
            consumers: std::array::from_fn(|_| Consumer {
                token: AtomicU32::new(0),
                _pad: 0,
                held: AtomicU64::new(0),
            }),
        }
    }
}

/// A [`Queue`] whose items are marked done ([`task_done`](Self::task_done)) and waited for
/// ([`join`](Self::join)), as Python's `JoinableQueue`. A consumer that dies (or drops its
/// handle) holding items it did not mark done does not leave `join` waiting forever: its
/// items are counted as lost and `join` returns [`Error::TasksLost`] with their number.
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
        let queue = Queue::with_mode(name, mode, capacity, opts)?;
        Ok(JoinableQueue {
            queue,
            state,
            me: None,
        })
    }

    fn st(&self) -> &JoinState {
        self.state.head()
    }

    /// Puts `item` (see [`Queue::put`]); it counts as unfinished until a consumer calls
    /// [`task_done`](Self::task_done) for it.
    pub fn put(&mut self, item: &T) -> Result<()> {
        self.counted_put(|q| q.put(item))
    }

    /// [`Queue::try_put`], counted.
    pub fn try_put(&mut self, item: &T) -> Result<()> {
        self.counted_put(|q| q.try_put(item))
    }

    /// [`Queue::put_timeout`], counted.
    pub fn put_timeout(&mut self, item: &T, timeout: Duration) -> Result<()> {
        self.counted_put(|q| q.put_timeout(item, timeout))
    }

    /// [`Queue::attempt_put`], counted (while it waits, it is not counted).
    pub(crate) fn attempt_put(&mut self, item: &T) -> Result<()> {
        // Not counted, not even encoded, while there is no room.
        self.queue.attempt_ready()?;
        self.counted_put(|q| q.attempt_put_now(item))
    }

    /// [`Queue::leave_turn`].
    pub(crate) fn leave_turn(&mut self) {
        self.queue.leave_turn();
    }

    fn counted_put(&mut self, put: impl FnOnce(&mut Queue<T, C>) -> Result<()>) -> Result<()> {
        // Counted before it can be taken, so a `task_done` never runs ahead of its `put`.
        // AcqRel: pairs with the decrements in `task_done` and `reap`.
        self.st().unfinished.0.fetch_add(1, Ordering::AcqRel);
        let r = put(&mut self.queue);
        if r.is_err() {
            self.finish(1);
        }
        r
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
            // Acquire: pairs with the Release in `unregister`.
            let cur = c.token.load(Ordering::Acquire);
            let free = cur == 0 || (cur != me && cur != REAPING && !seg.is_alive(cur)?);
            if !free {
                continue;
            }
            if cur != 0 {
                self.reap_one(i, cur);
            }
            // AcqRel: takes the slot (a racing registrant or reaper loses the CAS).
            if c.token
                .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                self.me = Some(i);
                return Ok(i);
            }
        }
        Err(Error::Busy {
            what: format!("all {CONSUMERS} consumer registrations of a joinable queue"),
        })
    }

    /// Takes the next item (see [`Queue::get`]); call [`task_done`](Self::task_done) when
    /// it is processed.
    pub fn get(&mut self) -> Result<T> {
        self.counted_get(|q| q.get())
    }

    /// [`Queue::try_get`], counted.
    pub fn try_get(&mut self) -> Result<T> {
        self.counted_get(|q| q.try_get())
    }

    /// [`Queue::get_timeout`], counted.
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<T> {
        self.counted_get(|q| q.get_timeout(timeout))
    }

    fn counted_get(&mut self, get: impl FnOnce(&mut Queue<T, C>) -> Result<T>) -> Result<T> {
        let i = self.register()?;
        let held = &self.state.head().consumers[i].held;
        // Before the item is taken (see the module docs). Relaxed: only this process
        // writes it while it lives; reapers read it after its death.
        held.fetch_add(1, Ordering::Relaxed);
        let r = get(&mut self.queue);
        match &r {
            // Not taken, except an item that did not decode: it was taken (and is done).
            Err(Error::Codec { .. }) => {
                held.fetch_sub(1, Ordering::Relaxed);
                self.finish(1);
            }
            Err(_) => {
                held.fetch_sub(1, Ordering::Relaxed);
            }
            Ok(_) => {}
        }
        r
    }

    /// Marks one item taken by this process done (Python's `task_done`).
    /// [`Error::InvalidArgument`] if more items were marked done than were put.
    pub fn task_done(&mut self) -> Result<()> {
        if let Some(i) = self.me {
            let held = &self.st().consumers[i].held;
            // Relaxed: see `counted_get`. Only this process writes it while it lives.
            let h = held.load(Ordering::Relaxed);
            if h > 0 {
                held.store(h - 1, Ordering::Relaxed);
            }
        }
        if self.finish(1) == 0 {
            return Err(Error::InvalidArgument(
                "task_done() called more times than there were items".into(),
            ));
        }
        Ok(())
    }

    /// Takes up to `n` from `unfinished` (never below 0) and wakes `join` if it reaches 0;
    /// how many it took.
    fn finish(&self, n: u64) -> u64 {
        finish(self.st(), n)
    }

    /// Reaps consumer `i`, whose process (token `token`) is dead: its held items count as
    /// lost.
    fn reap_one(&self, i: usize, token: u32) {
        reap_one(self.st(), i, token);
    }

    /// Waits until every item put has been marked done. [`Error::TasksLost`] if items were
    /// taken by consumers that died before marking them done (counted since the queue was
    /// created; Python's `join` would wait forever).
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
        wait_until(
            &st.done,
            WaitStrategy::Blocking,
            deadline,
            // Acquire: pairs with the decrements, so the work done before a `task_done` is
            // visible after `join`.
            || {
                Ok(if st.unfinished.0.load(Ordering::Acquire) == 0 {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                })
            },
            |check| {
                if check == Check::Full {
                    for (i, c) in st.consumers.iter().enumerate() {
                        // Acquire: pairs with the registration CAS.
                        let t = c.token.load(Ordering::Acquire);
                        if t != 0 && t != REAPING && !seg.is_alive(t)? {
                            reap_one(st, i, t);
                        }
                    }
                }
                Ok(false)
            },
        )?;
        // Acquire: pairs with the AcqRel add in `reap_one`.
        match st.lost.load(Ordering::Acquire) {
            0 => Ok(()),
            count => Err(Error::TasksLost { count }),
        }
    }

    /// Items taken by consumers that died before marking them done, since the queue was
    /// created.
    pub fn lost_tasks(&self) -> u64 {
        // Relaxed: a snapshot.
        self.st().lost.load(Ordering::Relaxed)
    }

    /// Items put and not yet marked done (a snapshot).
    pub fn unfinished(&self) -> u64 {
        // Relaxed: a snapshot.
        self.st().unfinished.0.load(Ordering::Relaxed)
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

/// See [`JoinableQueue::finish`].
fn finish(st: &JoinState, n: u64) -> u64 {
    let u = &st.unfinished.0;
    // Acquire: pairs with the increments in `counted_put` and the other decrements.
    let mut cur = u.load(Ordering::Acquire);
    loop {
        let took = cur.min(n);
        if took == 0 {
            return 0;
        }
        // AcqRel: pairs with the increments in `counted_put` and the Acquire load in
        // `join`, so work done before `task_done` is visible after `join`.
        match u.compare_exchange_weak(cur, cur - took, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                if cur == took {
                    st.done.notify();
                }
                return took;
            }
            Err(now) => cur = now,
        }
    }
}

/// See [`JoinableQueue::reap_one`].
fn reap_one(st: &JoinState, i: usize, token: u32) {
    let c = &st.consumers[i];
    // Whoever swaps the dead token out reaps: exactly once. AcqRel: pairs with the
    // registration CAS.
    if c.token
        .compare_exchange(token, REAPING, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return;
    }
    give_up(st, c);
    // Release: the slot is free again, its count zero.
    c.token.store(0, Ordering::Release);
}

/// The items consumer `c` holds (it died, or closed without marking them done) are taken
/// out of `unfinished` and counted as lost.
fn give_up(st: &JoinState, c: &Consumer) {
    // Relaxed: the holder wrote it last (it is dead, or this is its own drop); the token
    // CAS before this orders our read.
    let held = c.held.swap(0, Ordering::Relaxed);
    if held > 0 {
        let took = finish(st, held);
        // AcqRel: pairs with the Acquire load in `join`.
        st.lost.fetch_add(took, Ordering::AcqRel);
    }
}

impl<T, C: Codec<T>> Drop for JoinableQueue<T, C> {
    fn drop(&mut self) {
        if let Some(i) = self.me {
            let st = self.state.head();
            if let Ok(me) = self.state.segment().token() {
                let c = &st.consumers[i];
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
            .field(
                "unfinished",
                &self.state.head().unfinished.0.load(Ordering::Relaxed),
            )
            .finish()
    }
}
