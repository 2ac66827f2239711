//! [`Pool`]: Python's `multiprocessing.Pool`, over frame rings in shared memory.
//!
//! # How work flows
//! The calling threads encode arguments (postcard) into jobs and queue them in this
//! process; one dispatcher thread per pool sends them to the workers, each over a frame
//! ring of its own, and hands the replies back (to an [`AsyncResult`], a callback or an
//! [`Imap`]). Results are decoded by whoever takes them. The dispatcher keeps a small
//! window of calls queued at each worker, so a worker never waits for the parent between
//! quick tasks, and shrinks it to one for slow tasks, so that no task waits behind a long
//! one while another worker is idle.
//!
//! Each worker has its own rings (rather than all sharing one queue) so that the parent
//! always knows which calls a worker holds: when one dies, the call it was running (its
//! in-flight slot in shared memory says which) fails with [`Error::ProcessDied`], and the
//! calls queued behind it, which it never started, go to the other workers. Nothing is
//! lost, nothing runs twice.
//!
//! # Failures
//! - A task that panics: [`Error::Panicked`] for that call; the worker goes on.
//! - A worker killed mid-task: [`Error::ProcessDied`] for that call (for every item of
//!   its chunk, with chunks); the pool starts a replacement.
//! - An initializer that fails (or a worker that cannot start): [`PoolBuilder::build`]
//!   returns [`Error::Worker`] once; if it happens to a replacement later, every pending
//!   and later call fails with that error. Never a respawn loop.
//! - An argument or result that cannot be encoded: [`Error::Codec`] for that call.
//! - [`Pool::terminate`] (and dropping the pool) kills the workers at once; calls not yet
//!   answered fail with [`Error::Disconnected`].
//! - The parent dies (even by SIGKILL): the kernel kills the workers. Ctrl-C: workers
//!   ignore SIGINT, the parent decides (by default it dies, and the workers with it).

mod dispatch;
mod results;

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use results::{Answer, Failure, Filler, Slot, Stream};
pub use results::{AsyncResult, Imap};

use super::task::Task;
use super::wire::{self, Builder};
use crate::codec::{Codec, Postcard};
use crate::error::{Error, Result};
use crate::sync::Event;

/// The callback of a job: called once by the dispatcher with how it ended.
type Reply = Box<dyn FnOnce(Answer) + Send>;

/// Who gets a job's answer.
pub(crate) enum Sink {
    /// A callback, called by the dispatcher at once.
    Call(Reply),
    /// Chunk `.1` of an `imap`: answers are handed over in batches.
    Stream(Arc<Stream>, usize),
}

/// One call message waiting for a worker: a frame (head and items) and who gets the
/// answer.
pub(crate) struct Job {
    /// The whole frame; the dispatcher writes the call's sequence number into its head.
    frame: Vec<u8>,
    task: &'static str,
    sink: Sink,
}

/// What the calling threads and the dispatcher share (in this process).
struct Shared {
    state: Mutex<State>,
    /// Signalled when `started`, `broken` or `finished` change.
    changed: Condvar,
    /// The dispatcher sleeps on this event in shared memory; workers set it after each
    /// reply, calling threads after queueing.
    bell: Event,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    closed: bool,
    terminate: bool,
    /// Workers of the first generation that reported ready.
    started: usize,
    broken: Option<Failure>,
    finished: bool,
    pids: Vec<u32>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the dispatcher.
    fn ring(&self) {
        // SeqCst fence: what we queued (under the mutex) before the bell's load in `set`;
        // pairs with the dispatcher's fence after it clears the bell (as the workers do).
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.bell.set();
    }
}

/// Removes the doorbells and in-flight slots that pools of dead parents left (a parent
/// killed by a signal cannot remove its own): those nobody has open. Everything else a
/// pool names is removed as soon as it has been opened.
fn sweep_stale() {
    let Ok(all) = crate::admin::list() else {
        return;
    };
    for s in all {
        if s.name.starts_with("mp.") && (s.name.ends_with(".bell") || s.name.ends_with(".slots")) {
            // `clean` never touches a segment that a live process has open.
            let _ = crate::admin::clean(&s.name, crate::CleanMode::Remove);
        }
    }
}

/// How to build a [`Pool`]: [`Pool::builder`].
///
/// ```
/// use shmkit::process::Pool;
///
/// shmkit::task! { fn setup(tag: String) { std::env::set_var("TAG", tag) } }
/// shmkit::task! { fn read_tag(_x: u8) -> String { std::env::var("TAG").unwrap_or_default() } }
///
/// # shmkit::init();
/// let pool = Pool::builder()
///     .processes(2)
///     .initializer(setup, "ready".to_string())
///     .max_tasks_per_child(100)
///     .build()?;
/// assert_eq!(pool.apply(read_tag, 0)?, "ready");
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct PoolBuilder {
    processes: usize,
    init: Option<Result<(u64, &'static str, Vec<u8>)>>,
    max_tasks_per_child: Option<u64>,
    ring: usize,
}

impl PoolBuilder {
    /// The number of worker processes (default: the available parallelism).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = n;
        self
    }

    /// A task each worker runs once before its first call (its result is discarded). If
    /// it fails (panics, or its argument cannot be encoded), [`build`](Self::build)
    /// returns the error, once.
    pub fn initializer<T: Task>(mut self, task: T, arg: T::Arg) -> Self {
        let _ = task;
        let mut b = Builder::new();
        let mut err = None;
        b.item(|buf| match Postcard::encode(&arg, buf) {
            Ok(()) => wire::OK,
            Err(e) => {
                err = Some(e);
                wire::CODEC
            }
        });
        self.init = Some(match err {
            Some(e) => Err(e),
            None => Ok((
                T::fingerprint(),
                T::NAME,
                b.finish(wire::INIT, 0, T::fingerprint()).to_vec(),
            )),
        });
        self
    }

    /// Replaces each worker after it has run `k` calls (a chunk of `map` is one call), as
    /// Python's `maxtasksperchild` does: no queued call is lost or run twice.
    pub fn max_tasks_per_child(mut self, k: u64) -> Self {
        self.max_tasks_per_child = Some(k.max(1));
        self
    }

    /// The bytes of each ring between the parent and a worker (default 256 KiB; a
    /// message larger than a quarter of it goes out of line, through a segment of its
    /// own).
    pub fn ring_capacity(mut self, bytes: usize) -> Self {
        self.ring = bytes;
        self
    }

    /// Starts the workers and waits until each has run its initializer.
    pub fn build(self) -> Result<Pool> {
        if self.processes == 0 {
            return Err(Error::InvalidArgument(
                "a pool needs at least one process".into(),
            ));
        }
        let init = self.init.transpose()?;
        sweep_stale();
        let base = super::link::fresh_name();
        let bell = Event::create(&format!("{base}.bell"))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            bell,
        });
        let d = dispatch::Dispatcher::new(
            shared.clone(),
            base,
            self.processes,
            init,
            self.max_tasks_per_child,
            self.ring,
        )?;
        let thread = std::thread::Builder::new()
            .name("shmkit-pool".into())
            .spawn(move || d.run())
            .map_err(|e| Error::io("starting the pool's dispatcher thread", e))?;
        let mut pool = Pool {
            shared,
            thread: Some(thread),
            processes: self.processes,
        };
        let mut st = pool.shared.lock();
        while st.started < pool.processes && st.broken.is_none() && !st.finished {
            st = pool
                .shared
                .changed
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
        if let Some(f) = st.broken.clone() {
            drop(st);
            pool.stop(true);
            return Err(f.error("the pool's initializer"));
        }
        drop(st);
        Ok(pool)
    }
}

/// A pool of worker processes running [`task!`](crate::task) functions: Python's
/// `multiprocessing.Pool`, with errors where Python hangs (see the
/// [module docs](crate::process) and [`PoolBuilder`]).
///
/// Dropping a pool terminates it: its workers are killed at once and calls not yet
/// answered fail with [`Error::Disconnected`]. To let queued work finish, call
/// [`close`](Self::close) then [`join`](Self::join).
///
/// ```
/// use shmkit::process::Pool;
///
/// shmkit::task! { fn cube(x: i64) -> i64 { x * x * x } }
/// shmkit::task! { fn add(a: i64, b: i64) -> i64 { a + b } }
///
/// # shmkit::init();
/// let mut pool = Pool::new(2)?;
/// assert_eq!(pool.map(cube, 1..=4)?, [1, 8, 27, 64]);
/// assert_eq!(pool.map(add, [(1, 2), (3, 4)])?, [3, 7]); // Python's starmap
/// let mut unordered: Vec<i64> = pool.imap_unordered(cube, 0..10, 1)?.collect::<Result<_, _>>()?;
/// unordered.sort();
/// assert_eq!(unordered[9], 729);
/// pool.close();
/// pool.join()?;
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Pool {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    processes: usize,
}

impl Pool {
    /// A pool of `processes` workers, with no initializer.
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// A builder with the defaults: as many workers as the available parallelism.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: std::thread::available_parallelism().map_or(1, |n| n.get()),
            init: None,
            max_tasks_per_child: None,
            ring: 256 << 10,
        }
    }

    /// The number of worker processes.
    pub fn processes(&self) -> usize {
        self.processes
    }

    /// The pids of the current workers (replacements get new ones).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.shared.lock().pids.clone()
    }

    /// Queues `jobs`; an error if the pool is closed or broken.
    fn submit(&self, jobs: impl IntoIterator<Item = Job>) -> Result<()> {
        let mut st = self.shared.lock();
        if st.closed || st.terminate || st.finished {
            return Err(Error::InvalidArgument(
                "the pool is closed: it takes no more work".into(),
            ));
        }
        if let Some(f) = &st.broken {
            return Err(f.error("the pool's initializer"));
        }
        let was_empty = st.jobs.is_empty();
        st.jobs.extend(jobs);
        drop(st);
        // A queue that was not empty has a ring on its way (whoever queued first rings
        // after unlocking), and the dispatcher takes the whole queue when it wakes.
        if was_empty {
            self.shared.ring();
        }
        Ok(())
    }

    /// Encodes `args` into one call frame of `task`.
    fn call_frame<T: Task>(args: impl IntoIterator<Item = T::Arg>) -> Vec<u8> {
        let mut b = Builder::new();
        for arg in args {
            b.item(|buf| {
                let at = buf.len();
                match Postcard::encode(&arg, buf) {
                    Ok(()) => wire::OK,
                    Err(e) => {
                        // Travels as a failed item: the worker hands it back as it is.
                        buf.truncate(at);
                        buf.extend_from_slice(e.to_string().as_bytes());
                        wire::CODEC
                    }
                }
            });
        }
        b.finish(wire::CALL, 0, T::fingerprint()).to_vec()
    }

    /// Runs `task(arg)` in a worker and waits for its result.
    pub fn apply<T: Task>(&self, task: T, arg: T::Arg) -> Result<T::Output> {
        self.apply_async(task, arg)?.get()
    }

    /// Starts `task(arg)` in a worker; the result comes through the [`AsyncResult`].
    pub fn apply_async<T: Task>(&self, task: T, arg: T::Arg) -> Result<AsyncResult<T::Output>> {
        self.apply_async_then(task, arg, |_| {})
    }

    /// [`apply_async`](Self::apply_async) with a callback that runs in this process (in
    /// the pool's dispatcher thread, as Python's `callback` and `error_callback` run in
    /// its result-handler thread) when the call finishes, before the `AsyncResult` is
    /// ready: `Ok(&result)` or `Err(&error)`. Keep it short: it holds up the pool's other
    /// results. A callback that panics is caught; the result is kept.
    ///
    /// ```
    /// use shmkit::process::Pool;
    /// use std::sync::mpsc;
    ///
    /// shmkit::task! { fn plus_100(i: u32) -> u32 { i + 100 } }
    ///
    /// # shmkit::init();
    /// let pool = Pool::new(2)?;
    /// let (tx, rx) = mpsc::channel();
    /// for i in 0..3 {
    ///     let tx = tx.clone();
    ///     pool.apply_async_then(plus_100, i, move |r| tx.send(*r.unwrap()).unwrap())?;
    /// }
    /// let mut got: Vec<u32> = rx.iter().take(3).collect();
    /// got.sort();
    /// assert_eq!(got, [100, 101, 102]);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub fn apply_async_then<T: Task>(
        &self,
        task: T,
        arg: T::Arg,
        callback: impl FnOnce(std::result::Result<&T::Output, &Error>) + Send + 'static,
    ) -> Result<AsyncResult<T::Output>> {
        let _ = task;
        let slot = Slot::new();
        let filled = Filler(slot.clone());
        let reply: Reply = Box::new(move |answer: Answer| {
            let r = answer
                .results::<T::Output>(1, T::NAME)
                .pop_front()
                .expect("one result per item");
            let cb = std::panic::AssertUnwindSafe(|| callback(r.as_ref()));
            let _ = std::panic::catch_unwind(cb);
            filled.fill(r);
        });
        self.submit([Job {
            frame: Self::call_frame::<T>([arg]),
            task: T::NAME,
            sink: Sink::Call(reply),
        }])?;
        Ok(AsyncResult::new(slot))
    }

    /// Runs `task` on every item and returns the results in order: the first error if any
    /// call failed (every other call still ran). Items go to workers in chunks, of
    /// Python's default size (the items over four times the workers, rounded up); see
    /// [`map_chunked`](Self::map_chunked). Tuples as items give Python's `starmap`.
    pub fn map<T: Task>(
        &self,
        task: T,
        items: impl IntoIterator<Item = T::Arg>,
    ) -> Result<Vec<T::Output>> {
        let items: Vec<T::Arg> = items.into_iter().collect();
        let chunk = items.len().div_ceil(4 * self.processes).max(1);
        self.map_chunked(task, items, chunk)
    }

    /// [`map`](Self::map) with chunks of `chunk_size` items.
    pub fn map_chunked<T: Task>(
        &self,
        task: T,
        items: impl IntoIterator<Item = T::Arg>,
        chunk_size: usize,
    ) -> Result<Vec<T::Output>> {
        self.imap(task, items, chunk_size)?.collect()
    }

    /// Runs `task` on every item; the results come in the order of the items, each as
    /// soon as it and those before it are done. Every item is encoded and queued before
    /// this returns (as Python's task-handler thread takes the whole input); results are
    /// decoded as they are taken.
    pub fn imap<T: Task>(
        &self,
        task: T,
        items: impl IntoIterator<Item = T::Arg>,
        chunk_size: usize,
    ) -> Result<Imap<T::Output>> {
        self.stream(task, items, chunk_size, true)
    }

    /// [`imap`](Self::imap), with results in the order they finish.
    pub fn imap_unordered<T: Task>(
        &self,
        task: T,
        items: impl IntoIterator<Item = T::Arg>,
        chunk_size: usize,
    ) -> Result<Imap<T::Output>> {
        self.stream(task, items, chunk_size, false)
    }

    fn stream<T: Task>(
        &self,
        task: T,
        items: impl IntoIterator<Item = T::Arg>,
        chunk_size: usize,
        ordered: bool,
    ) -> Result<Imap<T::Output>> {
        let _ = task;
        let chunk_size = chunk_size.max(1);
        let stream = Stream::new();
        let mut sizes = Vec::new();
        let mut jobs = Vec::new();
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let chunk: Vec<T::Arg> = items.by_ref().take(chunk_size).collect();
            let index = sizes.len();
            sizes.push(chunk.len());
            jobs.push(Job {
                frame: Self::call_frame::<T>(chunk),
                task: T::NAME,
                sink: Sink::Stream(stream.clone(), index),
            });
        }
        self.submit(jobs)?;
        Ok(Imap::new(stream, sizes, T::NAME, ordered))
    }

    /// Takes no more work (Python's `close`); what is queued still runs.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.ring();
    }

    /// Waits until every queued call has finished and the workers have exited. Call
    /// [`close`](Self::close) first ([`Error::InvalidArgument`] otherwise, where Python
    /// raises `ValueError`).
    pub fn join(&mut self) -> Result<()> {
        if !self.shared.lock().closed {
            return Err(Error::InvalidArgument(
                "close() the pool before join()".into(),
            ));
        }
        self.stop(false);
        Ok(())
    }

    /// Kills the workers now (Python's `terminate`); calls not yet answered fail with
    /// [`Error::Disconnected`]. Returns once the workers are gone.
    pub fn terminate(&mut self) {
        self.stop(true);
    }

    fn stop(&mut self, now: bool) {
        if now {
            self.shared.lock().terminate = true;
            self.shared.ring();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.stop(true);
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.processes)
            .field("bell", &self.shared.bell)
            .finish()
    }
}
