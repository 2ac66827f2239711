//! What a pool hands back: [`AsyncResult`] (one call) and [`Imap`] (a stream of calls), and
//! the [`Answer`] the dispatcher gives each job.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::super::child::ExitStatus;
use super::super::link::item_result;
use super::super::wire::Msg;
use crate::error::{Error, Result};

/// Why a job failed as a whole (every item of it): cloneable, made into an [`Error`] per
/// item.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// The worker running it died.
    Died { pid: u32, status: ExitStatus },
    /// The pool cannot run tasks (a worker could not start, an initializer failed).
    Broken {
        pid: u32,
        task: String,
        reason: String,
    },
    /// The pool was terminated (or dropped) first.
    Terminated,
    /// The worker's reply made no sense.
    Corrupt(String),
}

impl Failure {
    pub(crate) fn error(&self, task: &str) -> Error {
        match self {
            Failure::Died { pid, status } => Error::ProcessDied {
                pid: *pid,
                status: *status,
                task: Some(task.to_owned()),
            },
            Failure::Broken { pid, task, reason } => Error::Worker {
                pid: *pid,
                task: task.clone(),
                reason: reason.clone(),
            },
            Failure::Terminated => Error::Disconnected,
            Failure::Corrupt(what) => Error::corrupt(what.clone()),
        }
    }
}

/// How a job ended: the worker's reply, or a failure of the whole job.
#[derive(Debug)]
pub(crate) enum Answer {
    Done { pid: u32, msg: Msg },
    Failed(Failure),
}

impl Answer {
    /// The `count` results of task `task` this answer carries, decoded.
    pub(crate) fn results<R: DeserializeOwned>(
        self,
        count: usize,
        task: &str,
    ) -> VecDeque<Result<R>> {
        match self {
            Answer::Done { pid, msg } => {
                if msg.head.count as usize != count {
                    let f = Failure::Corrupt(format!(
                        "process {pid} replied with {} results to a call of {count}",
                        msg.head.count
                    ));
                    return (0..count).map(|_| Err(f.error(task))).collect();
                }
                msg.items()
                    .map(|item| {
                        item.and_then(|(status, bytes)| item_result(status, bytes, task, pid))
                    })
                    .collect()
            }
            Answer::Failed(f) => (0..count).map(|_| Err(f.error(task))).collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// AsyncResult

/// The shared state of one [`AsyncResult`].
pub(crate) struct Slot<R> {
    state: Mutex<SlotState<R>>,
    done: Condvar,
}

struct SlotState<R> {
    value: Option<Result<R>>,
    /// Threads sleeping on `done`: `fill` wakes only if there are any (a condition
    /// variable's notify is a syscall even with nobody waiting).
    waiters: usize,
    /// The task awaiting the result, if it is awaited (see `impl Future`).
    waker: Option<std::task::Waker>,
}

impl<R> Slot<R> {
    pub(crate) fn new() -> Arc<Slot<R>> {
        Arc::new(Slot {
            state: Mutex::new(SlotState {
                value: None,
                waiters: 0,
                waker: None,
            }),
            done: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState<R>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn fill(&self, r: Result<R>) {
        let mut st = self.lock();
        st.value = Some(r);
        if st.waiters > 0 {
            self.done.notify_all();
        }
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Waits until filled or `deadline`; whether filled.
    /// Waits until filled or `deadline`. A slot that nobody else holds any more (its job
    /// was dropped unanswered, which only a dispatcher that died can do) is filled with
    /// [`Error::Disconnected`] rather than waited for forever.
    fn wait_until(
        self: &Arc<Self>,
        deadline: Option<Instant>,
    ) -> std::sync::MutexGuard<'_, SlotState<R>> {
        let mut st = self.lock();
        while st.value.is_none() {
            if Arc::strong_count(self) == 1 {
                st.value = Some(Err(Error::Disconnected));
                break;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                break;
            }
            let slice = left.map_or(CHECK, |l| l.min(CHECK));
            st.waiters += 1;
            st = self
                .done
                .wait_timeout(st, slice)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            st.waiters -= 1;
        }
        st
    }
}

/// Fills its slot with [`Error::Disconnected`] if it is dropped unfilled (a call dropped
/// unanswered, which only a dispatcher that died can do), so that an awaiting task wakes.
pub(crate) struct Filler<R>(pub(crate) Arc<Slot<R>>);

impl<R> Filler<R> {
    pub(crate) fn fill(&self, r: Result<R>) {
        self.0.fill(r);
    }
}

impl<R> Drop for Filler<R> {
    fn drop(&mut self) {
        if self.0.lock().value.is_none() {
            self.0.fill(Err(Error::Disconnected));
        }
    }
}

/// The result of [`Pool::apply_async`](super::Pool::apply_async): Python's `AsyncResult`.
///
/// It is also a future (any executor: the pool's dispatcher thread wakes the task):
/// `pool.apply_async(f, x)?.await` gives the result without blocking a thread. Dropping
/// it (awaited or not) discards the result; the call still runs.
///
/// ```
/// use shmkit::process::Pool;
/// use std::time::Duration;
///
/// shmkit::task! { fn double(x: i32) -> i32 { 2 * x } }
///
/// # shmkit::init();
/// let pool = Pool::new(1)?;
/// let r = pool.apply_async(double, 21)?;
/// r.wait();
/// assert!(r.ready());
/// assert_eq!(r.successful(), Some(true));
/// assert_eq!(r.get_timeout(Duration::from_secs(5))?, 42);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct AsyncResult<R> {
    slot: Arc<Slot<R>>,
}

impl<R> AsyncResult<R> {
    pub(crate) fn new(slot: Arc<Slot<R>>) -> Self {
        AsyncResult { slot }
    }

    /// Whether the call has finished (either way).
    pub fn ready(&self) -> bool {
        self.slot.lock().value.is_some()
    }

    /// Whether it finished without an error; `None` while it runs (Python raises there).
    pub fn successful(&self) -> Option<bool> {
        self.slot.lock().value.as_ref().map(|r| r.is_ok())
    }

    /// Waits until it has finished.
    pub fn wait(&self) {
        drop(self.slot.wait_until(None));
    }

    /// Waits at most `timeout`; whether it has finished.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.slot
            .wait_until(Some(Instant::now() + timeout))
            .value
            .is_some()
    }

    /// Waits for the result.
    pub fn get(self) -> Result<R> {
        self.slot.wait_until(None).value.take().expect("filled")
    }

    /// Waits at most `timeout` for the result: [`Error::Timeout`] if it is not ready (the
    /// call goes on; to wait again, use [`wait_timeout`](Self::wait_timeout) before
    /// `get`).
    pub fn get_timeout(self, timeout: Duration) -> Result<R> {
        let deadline = Instant::now() + timeout;
        self.slot
            .wait_until(Some(deadline))
            .value
            .take()
            .unwrap_or(Err(Error::Timeout))
    }
}

impl<R> std::future::Future for AsyncResult<R> {
    type Output = Result<R>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<R>> {
        use std::task::Poll;
        let mut st = self.slot.lock();
        if let Some(r) = st.value.take() {
            return Poll::Ready(r);
        }
        if Arc::strong_count(&self.slot) == 1 {
            return Poll::Ready(Err(Error::Disconnected));
        }
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<R> fmt::Debug for AsyncResult<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

// ---------------------------------------------------------------------------------------
// Imap

/// Where the dispatcher puts the answers of one `imap`: in batches (one lock and at most
/// one wake-up per round of the dispatcher, not one per answer).
pub(crate) struct Stream {
    q: Mutex<StreamQ>,
    cv: Condvar,
}

struct StreamQ {
    ready: Vec<(usize, Answer)>,
    /// The consumer sleeps on `cv`.
    waiting: bool,
    /// The task awaiting the stream, if it is awaited (`futures_core::Stream`).
    waker: Option<std::task::Waker>,
}

impl Stream {
    pub(crate) fn new() -> Arc<Stream> {
        Arc::new(Stream {
            q: Mutex::new(StreamQ {
                ready: Vec::new(),
                waiting: false,
                waker: None,
            }),
            cv: Condvar::new(),
        })
    }

    /// Hands over answers `(chunk, answer)`.
    pub(crate) fn put(&self, answers: impl IntoIterator<Item = (usize, Answer)>) {
        let mut q = self.q.lock().unwrap_or_else(|e| e.into_inner());
        q.ready.extend(answers);
        if std::mem::take(&mut q.waiting) {
            self.cv.notify_one();
        }
        let waker = q.waker.take();
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// How long the consumer of an `imap` sleeps before it checks that answers can still
/// come (a job that is dropped unanswered, which only a dispatcher that died can do).
const CHECK: Duration = Duration::from_millis(100);

/// The results of [`Pool::imap`](super::Pool::imap) (in the order of the inputs) or
/// [`Pool::imap_unordered`](super::Pool::imap_unordered) (as they finish): one
/// `Result` per input, decoded in the thread that iterates. With the `tokio` feature it is
/// also a `futures_core::Stream` of the same items, for async code.
pub struct Imap<R> {
    stream: Arc<Stream>,
    /// Answers taken from the stream, not yet looked at.
    taken: VecDeque<(usize, Answer)>,
    /// Each chunk's item count, by chunk index.
    sizes: Vec<usize>,
    task: &'static str,
    ordered: bool,
    /// Ordered: the next chunk to yield, and those that came early.
    next_chunk: usize,
    early: BTreeMap<usize, Answer>,
    current: VecDeque<Result<R>>,
    received: usize,
    /// Awaited: the next look at whether answers can still come (see `CHECK`).
    #[cfg(feature = "tokio")]
    check: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    _r: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> Imap<R> {
    pub(crate) fn new(
        stream: Arc<Stream>,
        sizes: Vec<usize>,
        task: &'static str,
        ordered: bool,
    ) -> Self {
        Imap {
            stream,
            taken: VecDeque::new(),
            sizes,
            task,
            ordered,
            next_chunk: 0,
            early: BTreeMap::new(),
            current: VecDeque::new(),
            received: 0,
            #[cfg(feature = "tokio")]
            check: None,
            _r: PhantomData,
        }
    }

    /// The next chunk's answer, in the order this iterator yields; `None` when all came.
    fn next_answer(&mut self) -> Option<(usize, Answer)> {
        if self.ordered {
            if self.next_chunk == self.sizes.len() {
                return None;
            }
            while !self.early.contains_key(&self.next_chunk) {
                let (i, a) = self.recv();
                self.early.insert(i, a);
            }
            let i = self.next_chunk;
            self.next_chunk += 1;
            self.early.remove(&i).map(|a| (i, a))
        } else {
            if self.received == self.sizes.len() {
                return None;
            }
            Some(self.recv())
        }
    }

    /// The next answer to arrive.
    fn recv(&mut self) -> (usize, Answer) {
        if let Some(a) = self.taken.pop_front() {
            self.received += 1;
            return a;
        }
        let stream = self.stream.clone();
        let mut q = stream.q.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(a) = self.arrived(&mut q) {
                return a;
            }
            q.waiting = true;
            q = stream
                .cv
                .wait_timeout(q, CHECK)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The next answer, if one has arrived (taking every answer handed over so far), or
    /// the failure of the first missing one if none can come any more; counts it.
    fn arrived(&mut self, q: &mut StreamQ) -> Option<(usize, Answer)> {
        let a = if !q.ready.is_empty() {
            self.taken.extend(q.ready.drain(..));
            self.taken.pop_front().expect("not empty")
        } else if Arc::strong_count(&self.stream) <= 2 {
            // Only we hold the stream (with the clone our caller holds): no job is left to
            // answer (the dispatcher answers every job, also when the pool ends; it would
            // take a dispatcher that died).
            (self.first_missing(), Answer::Failed(Failure::Terminated))
        } else {
            return None;
        };
        self.received += 1;
        Some(a)
    }

    /// The poll form of `recv`: the task is woken by the dispatcher's next hand-over, or
    /// after `CHECK` to look at whether answers can still come.
    #[cfg(feature = "tokio")]
    fn poll_recv(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<(usize, Answer)> {
        use std::future::Future;
        use std::task::Poll;
        if let Some(a) = self.taken.pop_front() {
            self.received += 1;
            return Poll::Ready(a);
        }
        let stream = self.stream.clone();
        let mut q = stream.q.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = self.arrived(&mut q) {
            self.check = None;
            return Poll::Ready(a);
        }
        match &q.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => q.waker = Some(cx.waker().clone()),
        }
        drop(q);
        let check = self
            .check
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(CHECK)));
        if check.as_mut().poll(cx).is_ready() {
            self.check = None;
            cx.waker().wake_by_ref(); // look again
        }
        Poll::Pending
    }

    /// The poll form of `next_answer`.
    #[cfg(feature = "tokio")]
    fn poll_next_answer(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<(usize, Answer)>> {
        use std::task::Poll;
        if self.ordered {
            if self.next_chunk == self.sizes.len() {
                return Poll::Ready(None);
            }
            while !self.early.contains_key(&self.next_chunk) {
                let Poll::Ready((i, a)) = self.poll_recv(cx) else {
                    return Poll::Pending;
                };
                self.early.insert(i, a);
            }
            let i = self.next_chunk;
            self.next_chunk += 1;
            Poll::Ready(self.early.remove(&i).map(|a| (i, a)))
        } else {
            if self.received == self.sizes.len() {
                return Poll::Ready(None);
            }
            self.poll_recv(cx).map(Some)
        }
    }

    fn first_missing(&self) -> usize {
        (self.next_chunk..self.sizes.len())
            .find(|i| !self.early.contains_key(i))
            .unwrap_or(self.sizes.len().saturating_sub(1))
    }
}

impl<R: DeserializeOwned> Iterator for Imap<R> {
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        loop {
            if let Some(r) = self.current.pop_front() {
                return Some(r);
            }
            let (i, answer) = self.next_answer()?;
            let n = self.sizes.get(i).copied().unwrap_or(0);
            self.current = answer.results(n, self.task);
        }
    }
}

// Nothing in an `Imap` is ever pinned in place (no field is projected from a pin): it
// may move freely, whatever `R` is.
impl<R> Unpin for Imap<R> {}

/// The results as a stream, for async code (the `tokio` feature): the same items as the
/// iterator, in the same order, without blocking the thread while they are computed.
/// The pool's dispatcher wakes the task.
#[cfg(feature = "tokio")]
impl<R: DeserializeOwned> futures_core::Stream for Imap<R> {
    type Item = Result<R>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<R>>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            if let Some(r) = this.current.pop_front() {
                return Poll::Ready(Some(r));
            }
            let Poll::Ready(next) = this.poll_next_answer(cx) else {
                return Poll::Pending;
            };
            let Some((i, answer)) = next else {
                return Poll::Ready(None);
            };
            let n = this.sizes.get(i).copied().unwrap_or(0);
            this.current = answer.results(n, this.task);
        }
    }
}

impl<R> fmt::Debug for Imap<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("task", &self.task)
            .field("chunks", &self.sizes.len())
            .field("ordered", &self.ordered)
            .finish()
    }
}
