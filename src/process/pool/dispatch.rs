//! The pool's dispatcher thread: starts and replaces workers, sends them calls, takes
//! their replies, notices their deaths, and shuts the pool down.
//!
//! One loop: clear the bell, take queued jobs, drain every worker's replies, look at the
//! workers' processes (every [`LOOK`]), send calls where a window has room; sleep on the
//! bell when nothing moved. Workers set the bell after each reply, calling threads after
//! queueing, so a sleep ends as soon as there is something to do.

use std::collections::VecDeque;
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::child::ExitStatus;
use super::super::link::Link;
use super::super::wire::{self, Msg};
use super::results::{Answer, Failure, Stream};
use super::{Job, Shared, Sink};
use crate::error::{Error, Result};
use crate::RawArray;

/// How often the dispatcher looks at its workers' processes while nothing wakes it.
const LOOK: Duration = Duration::from_millis(20);

/// The most calls queued at one worker; the window starts at [`START_WINDOW`] and grows
/// while calls take less than [`QUICK`], shrinks to 1 when they take more than [`SLOW`].
const MAX_WINDOW: usize = 64;
const START_WINDOW: usize = 2;
const QUICK: Duration = Duration::from_micros(200);
const SLOW: Duration = Duration::from_millis(5);

/// A worker, as the dispatcher tracks it.
struct Worker {
    link: Link,
    ready: bool,
    /// Told to exit after its calls (max tasks per child, or the pool closing).
    stopping: bool,
    calls: u64,
    /// The calls sent and not answered, oldest first: `(seq, job)`.
    inflight: VecDeque<(u64, Job)>,
    window: usize,
    last_reply: Instant,
}

pub(super) struct Dispatcher {
    shared: Arc<Shared>,
    base: String,
    slots: RawArray<u64>,
    workers: Vec<Option<Worker>>,
    init: Option<(u64, &'static str, Vec<u8>)>,
    max_tasks: Option<u64>,
    ring: usize,
    pending: VecDeque<Job>,
    /// The calling threads' queue as last taken: swapped with theirs under the lock (so
    /// the lock is held for a swap, not a copy of every job), appended to `pending`
    /// after, and handed back empty, its buffer kept, at the next swap.
    incoming: VecDeque<Job>,
    seq: u64,
    generation: u64,
    broken: Option<Failure>,
    /// Workers of the first generation still starting.
    first: usize,
    /// Answers for `imap` streams, handed over once per round.
    outbox: Vec<(Arc<Stream>, usize, Answer)>,
    /// The clock at the start of this round (one reading per round, not per reply).
    now: Instant,
}

impl Dispatcher {
    pub(super) fn new(
        shared: Arc<Shared>,
        base: String,
        processes: usize,
        init: Option<(u64, &'static str, Vec<u8>)>,
        max_tasks: Option<u64>,
        ring: usize,
    ) -> Result<Dispatcher> {
        let slots = RawArray::<u64>::create_zeroed(&format!("{base}.slots"), processes)?;
        Ok(Dispatcher {
            shared,
            base,
            slots,
            workers: (0..processes).map(|_| None).collect(),
            init,
            max_tasks,
            ring,
            pending: VecDeque::new(),
            incoming: VecDeque::new(),
            seq: 0,
            generation: 0,
            broken: None,
            first: processes,
            outbox: Vec::new(),
            now: Instant::now(),
        })
    }

    pub(super) fn run(mut self) {
        for i in 0..self.workers.len() {
            self.spawn(i);
        }
        let mut next_look = Instant::now() + LOOK;
        loop {
            self.shared.bell.clear();
            // SeqCst fence: the bell's clearing before our polls of the rings and the
            // queue; pairs with the fence a worker (or a caller) issues between
            // publishing and setting the bell.
            fence(Ordering::SeqCst);
            let (closed, terminate) = {
                let mut st = self.shared.lock();
                std::mem::swap(&mut st.jobs, &mut self.incoming);
                (st.closed, st.terminate)
            };
            self.pending.append(&mut self.incoming);
            if terminate {
                self.shutdown(true);
                break;
            }
            let mut moved = false;
            self.now = Instant::now();
            for i in 0..self.workers.len() {
                moved |= self.drain(i);
            }
            if self.now >= next_look {
                for i in 0..self.workers.len() {
                    self.look(i);
                }
                next_look = Instant::now() + LOOK;
            }
            if let Some(f) = self.broken.clone() {
                for job in std::mem::take(&mut self.pending) {
                    self.answer(job, Answer::Failed(f.clone()));
                }
                if self.first > 0 {
                    // Broken while starting: `build` reports it and terminates us.
                    self.shared.changed.notify_all();
                }
            }
            moved |= self.dispatch();
            self.flush();
            if closed && self.pending.is_empty() && self.idle() {
                self.shutdown(false);
                break;
            }
            if !moved {
                let _ = self.shared.bell.wait_timeout(LOOK);
            }
        }
        let mut st = self.shared.lock();
        st.finished = true;
        st.pids.clear();
        drop(st);
        self.shared.changed.notify_all();
    }

    /// Delivers `answer` to `job`'s sink: a callback now, a stream at the next flush.
    fn answer(&mut self, job: Job, answer: Answer) {
        match job.sink {
            Sink::Call(reply) => reply(answer),
            Sink::Stream(stream, index) => self.outbox.push((stream, index, answer)),
        }
    }

    /// Hands the answers gathered this round to their streams, one batch per stream.
    fn flush(&mut self) {
        let Some((first, _, _)) = self.outbox.first() else {
            return;
        };
        if self.outbox.iter().all(|(s, _, _)| Arc::ptr_eq(s, first)) {
            // The usual case: one stream.
            let stream = first.clone();
            stream.put(self.outbox.drain(..).map(|(_, i, a)| (i, a)));
            return;
        }
        let mut out = std::mem::take(&mut self.outbox);
        while let Some((stream, _, _)) = out.first() {
            let stream = stream.clone();
            let (mine, rest): (Vec<_>, Vec<_>) = out
                .into_iter()
                .partition(|(s, _, _)| Arc::ptr_eq(s, &stream));
            stream.put(mine.into_iter().map(|(_, i, a)| (i, a)));
            out = rest;
        }
    }

    /// Whether no worker holds a call.
    fn idle(&self) -> bool {
        self.workers.iter().flatten().all(|w| w.inflight.is_empty())
    }

    /// Starts a worker in slot `i` and sends it its initializer.
    fn spawn(&mut self, i: usize) {
        self.generation += 1;
        let rings = format!("{}.w{}", self.base, self.generation);
        let bell = format!("{}.bell", self.base);
        let slots = format!("{}.slots", self.base);
        let started = Link::start(rings, self.ring, Some(&bell), Some((&slots, i as u32)));
        let mut link = match started {
            Ok(l) => l,
            Err(e) => return self.break_pool(0, e.to_string()),
        };
        let init = match &self.init {
            Some((_, _, frame)) => frame.clone(),
            None => wire::frame(wire::INIT, 0, 0, 0, &[]),
        };
        if let Err(e) = link.send(&init) {
            let pid = link.pid();
            let status = link.close();
            return self.break_pool(pid, format!("it {status} before it started ({e})"));
        }
        self.shared.lock().pids.push(link.pid());
        self.workers[i] = Some(Worker {
            link,
            ready: false,
            stopping: false,
            calls: 0,
            inflight: VecDeque::new(),
            window: START_WINDOW,
            last_reply: Instant::now(),
        });
    }

    /// Marks the pool broken: no call can run.
    fn break_pool(&mut self, pid: u32, reason: String) {
        if self.broken.is_some() {
            return;
        }
        let task = self
            .init
            .as_ref()
            .map_or("the worker start", |(_, n, _)| n)
            .to_owned();
        let f = Failure::Broken { pid, task, reason };
        self.shared.lock().broken = Some(f.clone());
        self.shared.changed.notify_all();
        self.broken = Some(f);
    }

    /// Takes every reply worker `i` has sent; whether there was any.
    fn drain(&mut self, i: usize) -> bool {
        let mut any = false;
        loop {
            let Some(w) = self.workers[i].as_mut() else {
                return any;
            };
            match w.link.try_recv() {
                Ok(Some(msg)) => {
                    any = true;
                    if let Err(why) = self.reply(i, msg) {
                        self.lost(i, Some(why));
                        return true;
                    }
                }
                Ok(None) => return any,
                Err(Error::Disconnected) => {
                    self.lost(i, None);
                    return true;
                }
                Err(e) => {
                    self.lost(i, Some(e.to_string()));
                    return true;
                }
            }
        }
    }

    /// Handles reply `msg` of worker `i`; `Err` if it makes no sense.
    fn reply(&mut self, i: usize, msg: Msg) -> std::result::Result<(), String> {
        let w = self.workers[i].as_mut().expect("a live worker");
        let pid = w.link.pid();
        match msg.kind() {
            wire::READY if !w.ready => {
                w.ready = true;
                if self.first > 0 {
                    self.first -= 1;
                    self.shared.lock().started += 1;
                    self.shared.changed.notify_all();
                }
                Ok(())
            }
            wire::INIT_FAILED => {
                let reason = match msg.items().next() {
                    Some(Ok((status, bytes))) => {
                        let what = String::from_utf8_lossy(bytes);
                        match status {
                            wire::PANICKED => format!("the initializer panicked: {what}"),
                            _ => format!("the initializer failed: {what}"),
                        }
                    }
                    _ => "the initializer failed".to_owned(),
                };
                self.break_pool(pid, reason);
                Ok(())
            }
            wire::REPLY => {
                let Some((seq, _)) = w.inflight.front() else {
                    return Err(format!("process {pid} replied to no call"));
                };
                if *seq != msg.head.seq {
                    return Err(format!(
                        "process {pid} replied to call {} when {seq} was next",
                        msg.head.seq
                    ));
                }
                let (_, job) = w.inflight.pop_front().expect("checked");
                let now = self.now;
                let took = now.saturating_duration_since(w.last_reply);
                w.last_reply = now;
                if took < QUICK {
                    w.window = (w.window * 2).min(MAX_WINDOW);
                } else if took > SLOW {
                    w.window = 1;
                }
                self.answer(job, Answer::Done { pid, msg });
                Ok(())
            }
            k => Err(format!("process {pid} sent a message of kind {k}")),
        }
    }

    /// Checks worker `i`'s process; handles its end if it has ended.
    fn look(&mut self, i: usize) {
        let Some(w) = self.workers[i].as_mut() else {
            return;
        };
        let pid = w.link.pid();
        if let Ok(Some(_)) = w.link.child.try_status() {
            // Take what it sent before it went; `drain` may have handled its end already
            // (and started a replacement in its slot).
            self.drain(i);
            if self.workers[i]
                .as_ref()
                .is_some_and(|w| w.link.pid() == pid)
            {
                self.lost(i, None);
            }
        }
    }

    /// Worker `i` is gone (or `corrupt` says why we give up on it): the call it was
    /// running fails, the calls behind it go back to the queue, and a replacement starts.
    fn lost(&mut self, i: usize, corrupt: Option<String>) {
        let Some(mut w) = self.workers[i].take() else {
            return;
        };
        let pid = w.link.pid();
        let status = w.link.close();
        self.shared.lock().pids.retain(|&p| p != pid);
        // Acquire: pairs with the worker's Release store of the call it started; the
        // worker is dead and reaped, so the value is final.
        let running = self.slots.atomics()[i].load(Ordering::Acquire);
        let failure = match corrupt {
            Some(what) => Failure::Corrupt(what),
            None => Failure::Died { pid, status },
        };
        if !w.ready && self.broken.is_none() {
            let reason = match status {
                ExitStatus::Code(0) => "it exited without starting: call `shmkit::init()` first \
                    thing in `main` (or put `shmkit::test_support!()` in the test binary)"
                    .to_owned(),
                s => format!("it {s} while starting"),
            };
            self.break_pool(pid, reason);
        }
        let mut requeue = Vec::new();
        for (seq, job) in w.inflight.drain(..) {
            if seq == running || matches!(failure, Failure::Corrupt(_)) {
                self.answer(job, Answer::Failed(failure.clone()));
            } else {
                requeue.push(job);
            }
        }
        for job in requeue.into_iter().rev() {
            self.pending.push_front(job);
        }
        let closed = self.shared.lock().closed;
        if self.broken.is_none() && (!closed || !self.pending.is_empty()) {
            self.spawn(i);
        }
    }

    /// Sends queued calls to workers with room; whether any was sent.
    fn dispatch(&mut self) -> bool {
        let mut sent = false;
        while !self.pending.is_empty() {
            let Some(i) = self.choose() else {
                break;
            };
            let mut job = self.pending.pop_front().expect("not empty");
            self.seq += 1;
            job.frame[8..16].copy_from_slice(&self.seq.to_le_bytes());
            let w = self.workers[i].as_mut().expect("chosen");
            match w.link.try_send(&job.frame) {
                Ok(true) => {
                    sent = true;
                    w.inflight.push_back((self.seq, job));
                    w.calls += 1;
                    if self.max_tasks == Some(w.calls) {
                        w.stopping = true;
                        if w.link.send(&wire::frame(wire::STOP, 0, 0, 0, &[])).is_err() {
                            self.look(i);
                        }
                    }
                }
                Ok(false) => {
                    // Its ring is full: it is busy; the bell rings when it replies.
                    self.pending.push_front(job);
                    w.window = w.inflight.len().max(1);
                    break;
                }
                Err(Error::Disconnected) => {
                    self.pending.push_front(job);
                    self.look(i);
                }
                Err(e) => {
                    let f = Failure::Corrupt(format!("sending a call of `{}`: {e}", job.task));
                    self.answer(job, Answer::Failed(f));
                }
            }
        }
        sent
    }

    /// The ready worker with the most room in its window.
    fn choose(&self) -> Option<usize> {
        self.workers
            .iter()
            .enumerate()
            .filter_map(|(i, w)| w.as_ref().map(|w| (i, w)))
            .filter(|(_, w)| w.ready && !w.stopping && w.inflight.len() < w.window)
            .min_by_key(|(_, w)| w.inflight.len())
            .map(|(i, _)| i)
    }

    /// Ends the pool: `now`, killing the workers; else after telling them to stop and
    /// waiting for them. Every call not answered fails; nothing is left in `/dev/shm`.
    fn shutdown(&mut self, now: bool) {
        if !now {
            for w in self.workers.iter_mut().flatten() {
                if !w.stopping {
                    let _ = w.link.send(&wire::frame(wire::STOP, 0, 0, 0, &[]));
                }
            }
            for w in self.workers.iter_mut().flatten() {
                let _ = w.link.child.wait_timeout(None);
            }
        }
        let mut unanswered: Vec<Job> = Vec::new();
        for slot in self.workers.iter_mut() {
            if let Some(mut w) = slot.take() {
                w.link.close();
                unanswered.extend(w.inflight.drain(..).map(|(_, job)| job));
            }
        }
        unanswered.extend(self.pending.drain(..));
        // Out of the lock before the replies run (a callback may call into the pool).
        let queued: Vec<Job> = self.shared.lock().jobs.drain(..).collect();
        for job in unanswered.into_iter().chain(queued) {
            self.answer(job, Answer::Failed(Failure::Terminated));
        }
        self.flush();
        let _ = crate::admin::clean(&format!("{}.", self.base), crate::CleanMode::Remove);
    }
}
