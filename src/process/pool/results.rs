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
}

impl Stream {
    pub(crate) fn new() -> Arc<Stream> {
        Arc::new(Stream {
            q: Mutex::new(StreamQ {
                ready: Vec::new(),
                waiting: false,
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
    }
}

/// How long the consumer of an `imap` sleeps before it checks that answers can still
/// come (a job that is dropped unanswered, which only a dispatcher that died can do).
const CHECK: Duration = Duration::from_millis(100);

/// The results of [`Pool::imap`](super::Pool::imap) (in the order of the inputs) or
/// [`Pool::imap_unordered`](super::Pool::imap_unordered) (as they finish): one
/// `Result` per input, decoded in the thread that iterates.
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
        self.received += 1;
        if let Some(a) = self.taken.pop_front() {
            return a;
        }
        let mut q = self.stream.q.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if !q.ready.is_empty() {
                self.taken.extend(q.ready.drain(..));
                drop(q);
                return self.taken.pop_front().expect("not empty");
            }
            // Only we hold the stream: no job is left to answer (the dispatcher answers
            // every job, also when the pool ends; it would take a dispatcher that died).
            if Arc::strong_count(&self.stream) == 1 {
                return (self.first_missing(), Answer::Failed(Failure::Terminated));
            }
            q.waiting = true;
            q = self
                .stream
                .cv
                .wait_timeout(q, CHECK)
                .unwrap_or_else(|e| e.into_inner())
                .0;
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

impl<R> fmt::Debug for Imap<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("task", &self.task)
            .field("chunks", &self.sizes.len())
            .field("ordered", &self.ordered)
            .finish()
    }
}
