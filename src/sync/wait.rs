//! The one place where shmkit blocks: spin briefly, then sleep on a futex, always with an
//! optional deadline on the monotonic clock.
//!
//! Every blocking wait of the crate (locks, semaphores, events, barriers, channels) is one
//! loop, [`wait`], driving a [`Waiter`]: check the condition (or try the lock), spin a
//! little (a peer that answers within a few microseconds never costs a syscall; the spin
//! adapts to whether it pays, and a spin that did not end the wait yields the CPU once, one
//! `sched_yield`, for a peer that may need this very CPU), then announce itself as a
//! sleeper in the shared word and sleep on the futex in slices that grow from 1 ms to
//! 64 ms. A thread that has just woken a sleeper, waiting now on a peer's progress (a
//! channel, a semaphore, an event; not a lock), first keeps polling a while longer,
//! yielding the CPU between polls (the *handoff window*, [`HANDOFF`]): the peer it woke is
//! about to run, and what it waits for is usually that peer's answer; sleeping now would
//! make the peer pay a wake-up in turn, and two sides that take turns to sleep on a small
//! ring pay one per turn (a convoy: 4 KiB frames through a 16 KiB ring ran at a third of
//! their rate on this crate's VM, where such a sleep lasted 16 to 90 µs; see BENCHMARKS.md).
//! The waking side makes the wake syscall only when a sleeper announced itself, so the
//! uncontended paths make no syscalls at all. A waiter that depends on a holder (a
//! lock's owner, a rwlock's readers) asks the kernel whether it is alive about once per
//! slice, *by the clock*: a signal that interrupts every sleep (an interval timer, a
//! profiler) must not postpone that question for ever. At the deadline the waiter gets
//! one last attempt, which also takes a dead holder's place. (The condition variable's
//! sleep, with no condition of its own to spin on and no holder to check, calls [`sleep`]
//! directly.)

use crate::primitive::{self, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// The sleeper flag every futex word of this crate keeps in bit 31: set by a waiter
/// before it sleeps, seen by the waker in its read-modify-write of the same word.
pub(crate) const WAITERS: u32 = 1 << 31;

/// How many times a waiter re-checks its condition, spinning, before it sleeps (or, right
/// after it woke a sleeper, before its handoff window: see [`HANDOFF`]).
#[cfg(not(loom))]
pub(crate) const SPIN_LIMIT: u32 = 200;
/// Under loom a spin is a yield: keep the state space small.
#[cfg(loom)]
pub(crate) const SPIN_LIMIT: u32 = 1;

/// The longest handoff window: after it woke a sleeper, a thread's waits on a peer's
/// progress poll, yielding between polls, until this long after that wake before they
/// sleep. Long enough to cover a wake-up on a busy virtual machine (sleeps ended by a
/// wake-up lasted 16 to 90 µs on this crate's 2-vCPU VM); where the peer answers sooner,
/// the window ends then. It shrinks while it does not pay (see `spin`), so a thread
/// whose peers answer late (a client of a slow server) soon stops spending CPU on it.
#[cfg(not(loom))]
pub(crate) const HANDOFF: Duration = Duration::from_micros(100);

/// A `sched_yield` that returns after this long let another process run on our CPU (one
/// that finds nobody else to run is a plain syscall).
#[cfg(not(loom))]
const SHARED_YIELD: Duration = Duration::from_micros(20);

/// The longest a waiter sleeps before it re-checks its condition (and, in [`wait`], its
/// holder's liveness) by itself. A notifier that dies between changing the shared state
/// and making the wake syscall therefore delays a sleeper by at most this long, never for
/// ever; a dead holder is noticed about this long after its death at the latest.
pub(crate) const MAX_SLICE: Duration = Duration::from_millis(64);

/// A point in monotonic time after which a wait gives up; `None` waits for ever.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline.
    pub(crate) const NEVER: Deadline = Deadline(None);

    /// `timeout` from now. A timeout too large to represent waits for ever.
    pub(crate) fn after(timeout: Duration) -> Deadline {
        Deadline(Instant::now().checked_add(timeout))
    }

    /// Whether the deadline has passed already (`false` for no deadline: no clock read).
    pub(crate) fn expired(&self) -> bool {
        self.0.is_some_and(|at| Instant::now() >= at)
    }

    /// The time left, `Some(None)` for no deadline, or `None` if it has passed.
    pub(crate) fn remaining(&self) -> Option<Option<Duration>> {
        match self.0 {
            None => Some(None),
            Some(at) => {
                let now = Instant::now();
                (now < at).then(|| Some(at - now))
            }
        }
    }
}

/// Sleeps while `*word == expected`, at most `slice` (and never more than [`MAX_SLICE`]),
/// and never past `deadline`.
///
/// Returns `Ok(true)` if woken (or the value changed, or a signal arrived: the caller
/// re-checks), `Ok(false)` if the slice ran out, and `Err(Timeout)` if the deadline passed.
pub(crate) fn sleep(
    word: &AtomicU32,
    expected: u32,
    deadline: Deadline,
    slice: Option<Duration>,
) -> Result<bool> {
    let Some(left) = deadline.remaining() else {
        return Err(Error::Timeout);
    };
    let slice = slice.map_or(MAX_SLICE, |s| s.min(MAX_SLICE));
    let timeout = Some(left.map_or(slice, |l| l.min(slice)));
    match primitive::futex_wait(word, expected, timeout) {
        primitive::FutexWait::Woken => Ok(true),
        primitive::FutexWait::TimedOut => {
            if deadline.remaining().is_none() {
                Err(Error::Timeout)
            } else {
                Ok(false)
            }
        }
    }
}

/// Wakes at most `n` sleepers on `word` in any process.
pub(crate) fn wake(word: &AtomicU32, n: u32) {
    primitive::futex_wake(word, n);
    #[cfg(not(loom))]
    spin::woke();
}

/// What a [`Waiter`]'s announcement found.
pub(crate) enum Announced<R> {
    /// The wait is over (the waiter re-checked after announcing itself).
    Ready(R),
    /// Sleep while the futex word holds this value.
    Sleep(u32),
    /// The word moved under us: look again at once.
    Retry,
}

/// One blocked caller, as [`wait`] drives it: a lock acquisition, a reader waiting for a
/// writer, a writer waiting for readers, a waiter for a count or a flag.
pub(crate) trait Waiter {
    /// What a finished wait returns.
    type Output;

    /// The futex word this waiter sleeps on.
    fn word(&self) -> &AtomicU32;

    /// One attempt to finish (take the lock, see the condition hold); never blocks.
    fn attempt(&mut self) -> Result<Option<Self::Output>>;

    /// Before a sleep: announces a sleeper in the shared state, so that the waking side
    /// makes its wake syscall, re-checks whatever the handshake requires after the
    /// announcement, and says what to sleep on.
    fn announce(&mut self) -> Result<Announced<Self::Output>>;

    /// Asks whether the holder (or the peers) the waiter depends on are alive, and takes
    /// a dead holder's place or frees what dead peers held (then attempts again): `Some`
    /// ends the wait. Called right after a failed [`Waiter::attempt`], about once per
    /// slice once the waiter has slept, by the clock (see [`wait`]). By default there is
    /// nothing to check.
    fn check(&mut self) -> Result<Option<Self::Output>> {
        Ok(None)
    }

    /// Whether a wait right after this thread woke a sleeper polls through the handoff
    /// window (see [`HANDOFF`]) before it sleeps: for waits on a peer's progress
    /// (channels, semaphores, events), where the peer just woken is about to answer. Not
    /// for locks (the default): the waker wants the lock back while the woken thread
    /// holds it, and two lockers that poll one lock word run slower than one that sleeps
    /// (measured: shared-dict sets at about 0.93x, three interleaved pairs).
    #[cfg_attr(loom, allow(dead_code))]
    fn handoff(&self) -> bool {
        false
    }

    /// Whether the waiter sleeps (the default) or busy-polls: then it never announces
    /// itself nor sleeps, and its liveness checks come every [`BUSY_CHECK`] from the start.
    fn sleeps(&self) -> bool {
        true
    }

    /// The deadline has passed: a last attempt, which may also take a dead holder's place
    /// (so that short timeouts in a loop still recover a dead holder's lock), or
    /// [`Error::Timeout`].
    fn last_chance(&mut self) -> Result<Self::Output> {
        Err(Error::Timeout)
    }
}

/// The first sleep slice of [`wait`]; slices double up to [`MAX_SLICE`].
pub(crate) const FIRST_SLICE: Duration = Duration::from_millis(1);
/// A busy-polling waiter checks liveness this often (under loom, only when a slice runs
/// out, which a busy poller's never does).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) const BUSY_CHECK: Duration = Duration::from_millis(10);

/// When the next liveness check of [`wait`] is due.
///
/// Checks are driven by the clock, never by how a sleep ended: a signal that arrives more
/// often than a slice (an interval timer, a profiler) interrupts every futex wait, and a
/// check made only when a slice runs out would never come. Under loom, where the clock
/// must not steer the model, a check is due when the last sleep's slice ran out (the
/// modelled futex times out when a modelled process dies; see `primitive::model`).
struct Slices {
    slice: Duration,
    /// `None` until the first sleep: a waiter that has not slept checks nothing (a
    /// busy-polling one starts its clock at once).
    #[cfg(not(loom))]
    next_check: Option<Instant>,
    /// Whether the waiter busy-polls (checks every [`BUSY_CHECK`]).
    #[cfg(not(loom))]
    busy: bool,
    #[cfg(loom)]
    slice_out: bool,
}

impl Slices {
    fn new(sleeps: bool) -> Slices {
        #[cfg(loom)]
        let _ = sleeps;
        Slices {
            slice: FIRST_SLICE,
            #[cfg(not(loom))]
            next_check: (!sleeps).then(|| Instant::now() + FIRST_SLICE),
            #[cfg(not(loom))]
            busy: !sleeps,
            #[cfg(loom)]
            slice_out: false,
        }
    }

    /// Whether a liveness check is due now; if so, the next one is a (longer) slice away.
    fn due(&mut self) -> bool {
        #[cfg(not(loom))]
        {
            let Some(at) = self.next_check else {
                return false;
            };
            let now = Instant::now();
            if now < at {
                return false;
            }
            self.slice = (self.slice * 2).min(MAX_SLICE);
            self.next_check = Some(now + if self.busy { BUSY_CHECK } else { self.slice });
            true
        }
        #[cfg(loom)]
        {
            std::mem::take(&mut self.slice_out)
        }
    }

    /// How long the next sleep may last: until the next check is due.
    fn sleep_for(&mut self) -> Duration {
        #[cfg(not(loom))]
        {
            let now = Instant::now();
            let at = *self.next_check.get_or_insert(now + self.slice);
            at.saturating_duration_since(now)
                .max(Duration::from_micros(100))
        }
        #[cfg(loom)]
        {
            self.slice
        }
    }

    /// A sleep ended: `woken`, or its slice ran out.
    fn slept(&mut self, woken: bool) {
        #[cfg(loom)]
        {
            self.slice_out = !woken;
        }
        #[cfg(not(loom))]
        let _ = woken;
    }
}

/// The one sliced wait loop of the crate: spin, then announce, sleep and re-check.
///
/// 1. Up to [`SPIN_LIMIT`] attempts, with a spin hint between them: a holder that lets go
///    within a few microseconds never costs a syscall. The budget adapts per thread to
///    whether spinning pays (see `spin`); a spin that did not end the wait yields the CPU
///    once, for a peer that may be waiting for it.
/// 2. For a waiter on a peer's progress ([`Waiter::handoff`]) whose thread woke a
///    sleeper less than its window ago: attempts, each after a yield, until the window
///    ends or the deadline passes (see [`HANDOFF`]).
/// 3. Then, round after round: an attempt; a liveness check if one is due (by the clock,
///    once the waiter has slept: about 1, 3, 7, … ms after its first sleep, then every
///    [`MAX_SLICE`]); the deadline; the announcement; a futex sleep that lasts until
///    the next check is due, and never past the deadline. (A busy-polling waiter spins
///    instead of announcing and sleeping, and checks every [`BUSY_CHECK`].)
/// 4. At the deadline, [`Waiter::last_chance`].
///
/// A waiter whose announcement keeps being retried (a peer scribbling on the word) stays
/// bounded by the deadline and yields its CPU now and then.
#[inline]
pub(crate) fn wait<W: Waiter>(waiter: &mut W, deadline: Deadline) -> Result<W::Output> {
    if !waiter.sleeps() {
        // A busy poller polls anyway: no budget to adapt, nothing to give up; it polls
        // without reading the clock for a while before the sliced loop does.
        for _ in 0..SPIN_LIMIT {
            if let Some(r) = waiter.attempt()? {
                return Ok(r);
            }
            primitive::spin_hint();
        }
        return wait_sliced(waiter, deadline);
    }
    if deadline.expired() {
        // Only a try (a zero timeout): no spin, no yield; one attempt, then the last chance.
        return wait_sliced(waiter, deadline);
    }
    if let Some(r) = spin_phase(SPIN_LIMIT, || waiter.attempt())? {
        return Ok(r);
    }
    #[cfg(not(loom))]
    if waiter.handoff() {
        if let Some(r) = handoff_phase(waiter, deadline)? {
            return Ok(r);
        }
    }
    wait_sliced(waiter, deadline)
}

/// The handoff window (see the module docs and [`HANDOFF`]): if this thread woke a
/// sleeper less than its window ago, polls until the window ends (or the deadline),
/// yielding the CPU before each attempt, so that a woken peer that shares our CPU runs at
/// once, and ends at once after a yield that ran another process; `None` if nothing came
/// (or there is no window), and it is time to sleep.
#[cfg(not(loom))]
fn handoff_phase<W: Waiter>(waiter: &mut W, deadline: Deadline) -> Result<Option<W::Output>> {
    let Some(mut window) = Handoff::open(deadline) else {
        return Ok(None);
    };
    loop {
        match window.step(|| waiter.attempt())? {
            Step::Done(r) => return Ok(Some(r)),
            Step::Again => {}
            Step::Over => return Ok(None),
        }
    }
}

/// A handoff window being polled (see [`HANDOFF`]): by the blocking wait's
/// `handoff_phase`, and one [`Handoff::step`] per poll by an async wait, which comes back
/// through its executor between steps rather than holding its thread.
#[cfg(not(loom))]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Handoff {
    /// When the window ends: this thread's last wake plus its window now.
    window: Instant,
    /// When polling stops: the window's end, or the wait's deadline if sooner.
    until: Instant,
    /// When the last step (or the opening) ended: a step that starts long after it had
    /// its yield run another process.
    before: Instant,
}

/// Makes this thread's handoff window open now and end 200 ms from now (as if it had
/// woken a sleeper): for the tests of the waits that poll it.
#[cfg(all(test, not(loom)))]
pub(crate) fn open_window_for_tests() {
    spin::woke_at(Instant::now() + Duration::from_millis(200) - HANDOFF);
}

/// What one [`Handoff::step`] found.
#[cfg(not(loom))]
pub(crate) enum Step<R> {
    /// The attempt succeeded within the window.
    Done(R),
    /// Nothing yet; the window is still open: step again.
    Again,
    /// The window (or the deadline) is over, or our CPU is wanted elsewhere: sleep.
    Over,
}

#[cfg(not(loom))]
impl Handoff {
    /// The window of a wait starting now, if this thread woke a sleeper less than its
    /// window ago; polling ends at `deadline` if that comes first.
    pub(crate) fn open(deadline: Deadline) -> Option<Handoff> {
        let now = Instant::now();
        let window = spin::handoff_until(now)?;
        Some(Handoff {
            window,
            until: deadline.0.map_or(window, |at| at.min(window)),
            before: now,
        })
    }

    /// Yields the CPU, then attempts once. Adapts the window (see `spin`): whole again on
    /// a success, narrower when it ran out or a yield ran another process (only a window
    /// that ran out says polling did not pay; the deadline does not).
    pub(crate) fn step<R>(
        &mut self,
        attempt: impl FnOnce() -> Result<Option<R>>,
    ) -> Result<Step<R>> {
        std::thread::yield_now();
        if let Some(r) = attempt()? {
            spin::handoff_hit();
            return Ok(Step::Done(r));
        }
        let now = Instant::now();
        // A yield that took this long ran someone else on our CPU: more runnable
        // processes than CPUs, where polling takes CPU time from the peers (the one we
        // woke among them) and sleeping gives it back. (An async wait measures from its
        // last step, other tasks' polls included: a long gap between steps also says the
        // thread has better things to do than poll.)
        let shared = now - self.before >= SHARED_YIELD;
        if shared || now >= self.until {
            if shared || now >= self.window {
                spin::handoff_miss();
            }
            return Ok(Step::Over);
        }
        self.before = now;
        Ok(Step::Again)
    }
}

/// The spinning phase of a wait that may sleep (blocking here, or on a doorbell in `aio`):
/// up to the thread's spin budget (at most `limit`) of attempts with a spin hint between them, then, the
/// peer perhaps waiting for this very CPU (more runnable processes than CPUs), the CPU
/// given up once and one more attempt; `None` if nothing came, and it is time to announce
/// and sleep. Adapts the budget (see `spin`). Where a CPU is idle, the yield returns at
/// once. (No yield under loom, whose models need no scheduler.)
#[inline]
pub(crate) fn spin_phase<R>(
    limit: u32,
    mut attempt: impl FnMut() -> Result<Option<R>>,
) -> Result<Option<R>> {
    let budget = spin::budget().min(limit);
    for _ in 0..budget {
        if let Some(r) = attempt()? {
            spin::hit();
            return Ok(Some(r));
        }
        primitive::spin_hint();
    }
    #[cfg(not(loom))]
    {
        let before = Instant::now();
        std::thread::yield_now();
        // A long yield ran someone else on our CPU: no handoff window for this wait.
        spin::yielded(before.elapsed() >= SHARED_YIELD);
        if let Some(r) = attempt()? {
            // Done as soon as we let go of the CPU: the peer needed it, and spinning only
            // kept it from answering.
            spin::shared_cpu();
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// Arms an async waiter (`aio`) on a futex word whose waker wakes with [`wake_word`]:
/// registers doorbell `bell`, then announces a waiter (WAITERS). The caller attempts once
/// more afterwards: a change made before the announcement is seen then, one made after it
/// rings the doorbell. (The bit may stay set for nothing, if the attempt succeeds: the
/// next waker then makes one needless wake.)
#[cfg_attr(not(any(feature = "tokio", loom)), allow(dead_code))]
pub(crate) fn arm(word: &AtomicU32, bells: &Bells, bell: u64) -> Result<()> {
    if !bells.add(bell) {
        return Err(Error::Busy {
            what: format!("all {BELLS} async-waiter doorbells of this object"),
        });
    }
    // AcqRel, and an RMW even if the bit is set already: the Release half publishes the
    // registration above to the waker, whose RMW reads this value or a later one (an RMW
    // continues the release sequence) and which then fences (Acquire, in `wake_word`);
    // the Acquire half orders the re-attempt after what that RMW read.
    word.fetch_or(WAITERS, Ordering::AcqRel);
    Ok(())
}

/// The wake of a futex word with [`Bells`], after the waker's read-modify-write saw
/// WAITERS (and cleared it): wakes every futex sleeper and rings every doorbell.
/// `ring` rings a doorbell (`os::doorbell::ring`; the loom models record it).
#[cold]
pub(crate) fn wake_word(word: &AtomicU32, bells: &Bells, ring: impl FnMut(u64)) {
    wake(word, u32::MAX);
    // Acquire: pairs with the Release half of `arm`'s announcement, which the waker's RMW
    // read (or a later value of its release sequence): the registration is seen below.
    primitive::fence(Ordering::Acquire);
    bells.ring_with(ring);
}

/// How many async waiters (doorbells) one futex word can have at a time.
pub(crate) const BELLS: usize = 8;

/// The doorbells of the async waiters of one futex word (see `aio`): the ids of the
/// sockets to ring (0: free), rung by the same wake that wakes the futex sleepers, so only
/// when somebody announced itself (the WAITERS bit). Lives in shared memory beside its
/// word; a peer can write any id here, which costs a `sendto` to nobody (or a spurious
/// wake-up, which the woken waiter re-checks), never a wrong result.
#[derive(Debug)]
#[repr(C)]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
pub(crate) struct Bells([AtomicU64; BELLS]);

impl Bells {
    pub(crate) fn new() -> Bells {
        Bells(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    /// Registers doorbell `id` (idempotent). `false` if all [`BELLS`] are taken.
    pub(crate) fn add(&self, id: u64) -> bool {
        // SeqCst: the registration must precede, for a waker that sees the waiter's
        // WAITERS bit, the announcement that follows it; pairs with the SeqCst loads in
        // `ring_with` (after the waker's SeqCst fence, Acquire fence or SeqCst load of the
        // word, see its callers).
        if self.0.iter().any(|b| b.load(Ordering::SeqCst) == id) {
            return true;
        }
        self.0.iter().any(|b| {
            b.compare_exchange(0, id, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        })
    }

    /// Removes doorbell `id`.
    pub(crate) fn remove(&self, id: u64) {
        for b in &self.0 {
            // Relaxed: a waker that still reads the id rings a closed socket: harmless.
            let _ = b.compare_exchange(id, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Rings every registered doorbell with `ring` (the loom models record them).
    #[cold]
    pub(crate) fn ring_with(&self, mut ring: impl FnMut(u64)) {
        for b in &self.0 {
            // SeqCst: pairs with the registration in `add` (see there).
            let id = b.load(Ordering::SeqCst);
            if id != 0 {
                ring(id);
            }
        }
    }
}

/// Per thread: how long a waiter spins before it sleeps, and its handoff window.
#[cfg(not(loom))]
mod spin;

/// Under loom a spin is one yield and the budget is fixed: the model stays small and
/// deterministic.
#[cfg(loom)]
mod spin {
    pub(super) fn budget() -> u32 {
        super::SPIN_LIMIT
    }
    pub(super) fn hit() {}
}

fn wait_sliced<W: Waiter>(waiter: &mut W, deadline: Deadline) -> Result<W::Output> {
    let sleeps = waiter.sleeps();
    let mut slices = Slices::new(sleeps);
    let mut busy = 0u32;
    loop {
        if let Some(r) = waiter.attempt()? {
            return Ok(r);
        }
        if slices.due() {
            if let Some(r) = waiter.check()? {
                return Ok(r);
            }
        }
        if deadline.remaining().is_none() {
            return waiter.last_chance();
        }
        if !sleeps {
            primitive::spin_hint();
            continue;
        }
        let expected = match waiter.announce()? {
            Announced::Ready(r) => return Ok(r),
            Announced::Sleep(expected) => expected,
            Announced::Retry => {
                // Normally a race that settles at once; a peer scribbling on the word must
                // not keep us on a CPU (the deadline is checked on every round).
                busy = busy.wrapping_add(1);
                #[cfg(not(loom))]
                if busy.is_multiple_of(64) {
                    std::thread::yield_now();
                }
                primitive::spin_hint();
                continue;
            }
        };
        busy = 0;
        match sleep(waiter.word(), expected, deadline, Some(slices.sleep_for())) {
            Ok(woken) => slices.slept(woken),
            Err(Error::Timeout) => return waiter.last_chance(),
            Err(e) => return Err(e),
        }
    }
}

/// Waits until `ready` returns `Some`, with [`wait`]: spinning first, then sleeping on
/// `word` (for the primitives with no holder to check: semaphores, events).
///
/// `announce` is called with the word's current value before each sleep; it sets the
/// sleeper flag in the word (with a CAS that fails if the word changed) and returns the
/// value to sleep on, or `None` to re-check at once. The waking side clears or keeps the
/// flag and wakes; every sleep is sliced, so a lost wake-up costs at most one slice.
pub(crate) fn wait_for<R>(
    word: &AtomicU32,
    deadline: Deadline,
    ready: impl FnMut() -> Result<Option<R>>,
    announce: impl FnMut(u32) -> Option<u32>,
) -> Result<R> {
    struct Cond<'a, F, A> {
        word: &'a AtomicU32,
        ready: F,
        announce: A,
    }
    impl<R, F, A> Waiter for Cond<'_, F, A>
    where
        F: FnMut() -> Result<Option<R>>,
        A: FnMut(u32) -> Option<u32>,
    {
        type Output = R;
        fn word(&self) -> &AtomicU32 {
            self.word
        }
        fn attempt(&mut self) -> Result<Option<R>> {
            (self.ready)()
        }
        fn handoff(&self) -> bool {
            true
        }
        fn announce(&mut self) -> Result<Announced<R>> {
            // Relaxed: `announce` re-validates with a CAS, and the futex compares atomically.
            let w = self.word.load(Ordering::Relaxed);
            let Some(expected) = (self.announce)(w) else {
                return Ok(Announced::Retry);
            };
            Ok(match (self.ready)()? {
                Some(r) => Announced::Ready(r),
                None => Announced::Sleep(expected),
            })
        }
    }
    wait(
        &mut Cond {
            word,
            ready,
            announce,
        },
        deadline,
    )
}

/// Sets the WAITERS bit on `word` (seen as `w`) unless `still_blocked(w)` is false.
/// Returns the value to sleep on, or `None` to re-check at once.
pub(crate) fn announce(
    word: &AtomicU32,
    w: u32,
    still_blocked: impl Fn(u32) -> bool,
) -> Option<u32> {
    if !still_blocked(w) {
        return None;
    }
    if w & WAITERS != 0 {
        return Some(w);
    }
    // Relaxed: the waker's RMW on the same word either sees the bit or makes this CAS fail;
    // the futex re-compares the value in the kernel.
    word.compare_exchange(w, w | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
        .ok()
        .map(|_| w | WAITERS)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A waiter whose condition never holds, sleeping on a word nobody changes.
    struct Never(AtomicU32, u32);

    impl Waiter for Never {
        type Output = ();
        fn word(&self) -> &AtomicU32 {
            &self.0
        }
        fn attempt(&mut self) -> Result<Option<()>> {
            self.1 += 1;
            Ok(None)
        }
        fn announce(&mut self) -> Result<Announced<()>> {
            Ok(Announced::Sleep(self.0.load(Ordering::Relaxed)))
        }
        fn handoff(&self) -> bool {
            true
        }
    }

    // Each test runs on a thread of its own, and the handoff state is per thread.

    #[test]
    fn handoff_window_opens_only_after_a_wake() {
        let t = Instant::now();
        assert_eq!(spin::handoff_until(t), None);
        let word = AtomicU32::new(0);
        wake(&word, 1); // nobody sleeps there: the window opens all the same
        let (woke, window) = spin::handoff_state();
        let woke = woke.expect("the wake is recorded");
        assert_eq!(window, HANDOFF);
        assert_eq!(spin::handoff_until(woke), Some(woke + HANDOFF));
        assert_eq!(spin::handoff_until(woke + HANDOFF), None);
    }

    #[test]
    fn handoff_window_halves_while_the_peer_is_late_and_recovers_when_it_is_not() {
        let t = Instant::now();
        spin::woke_at(t);
        spin::handoff_miss();
        assert_eq!(spin::handoff_state().1, HANDOFF / 2);
        for _ in 0..20 {
            spin::handoff_miss();
        }
        let narrowest = spin::handoff_state().1;
        assert!(narrowest > Duration::ZERO && narrowest < HANDOFF / 8);
        // One window in PROBE_EVERY is whole, whatever the narrowing.
        let whole = (0..spin::PROBE_EVERY)
            .filter(|_| spin::handoff_until(t) == Some(t + HANDOFF))
            .count();
        assert_eq!(whole, 1);
        spin::handoff_hit();
        assert_eq!(spin::handoff_state().1, HANDOFF);
    }

    #[test]
    fn wait_right_after_a_wake_still_times_out() {
        spin::woke();
        let mut w = Never(AtomicU32::new(0), 0);
        let r = wait(&mut w, Deadline::after(Duration::from_micros(30)));
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        assert!(w.1 > 0);
    }

    #[test]
    fn handoff_window_ends_at_the_deadline() {
        // A window that ends 200 ms from now, and a deadline 1 ms from now: the window
        // polls until the deadline and hands over to the sleeping loop, which times out.
        spin::woke_at(Instant::now() + Duration::from_millis(200) - HANDOFF);
        let deadline = Deadline::after(Duration::from_millis(1));
        let mut w = Never(AtomicU32::new(0), 0);
        let r = handoff_phase(&mut w, deadline);
        assert!(matches!(r, Ok(None)), "the wait goes on to sleep");
        assert!(w.1 > 0);
        assert!(matches!(wait_sliced(&mut w, deadline), Err(Error::Timeout)));
    }

    #[test]
    fn handoff_window_that_runs_out_is_halved() {
        // A window that ends 200 ms from now (a wake recorded as if in the future, so
        // that the window is still open when the wait reaches it, however loaded the
        // machine), and a deadline after it.
        spin::woke_at(Instant::now() + Duration::from_millis(200) - HANDOFF);
        let mut w = Never(AtomicU32::new(0), 0);
        let r = handoff_phase(&mut w, Deadline::after(Duration::from_millis(400)));
        assert!(matches!(r, Ok(None)), "the wait goes on to sleep");
        assert!(w.1 > 0);
        // The window ran out before the deadline (or a yield found our CPU shared): the
        // window halves either way.
        assert_eq!(spin::handoff_state().1, HANDOFF / 2);
    }
}
