//! The one switch between the real world and the loom model checker.
//!
//! The synchronisation algorithms import their atomics, their spin hint and their futex
//! from here. Normally these are `std`'s atomics and the kernel's futex (through `os`);
//! under `--cfg loom` they are loom's atomics and a model of the futex, so that the
//! algorithms can be model-checked in-process (see `tests/loom.rs`). Only the algorithms'
//! in-process form runs under loom: nothing is mapped there.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, Ordering};
#[cfg(loom)]
pub(crate) use process::{AtomicU32, AtomicU64};

/// Outcome of [`futex_wait`]; see `os::FutexWait`.
pub(crate) use crate::os::FutexWait;

/// Sleeps while `*word == expected`, at most `timeout`.
#[cfg(not(loom))]
#[inline]
pub(crate) fn futex_wait(
    word: &AtomicU32,
    expected: u32,
    timeout: Option<std::time::Duration>,
) -> FutexWait {
    crate::os::futex_wait(word, expected, timeout)
}

/// Wakes at most `n` sleepers on `word`.
#[cfg(not(loom))]
#[inline]
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) {
    crate::os::futex_wake(word, n);
}

/// A pause inside a spin loop.
#[cfg(not(loom))]
#[inline]
pub(crate) fn spin_hint() {
    std::hint::spin_loop();
}

#[cfg(loom)]
pub(crate) use model::{advance_clock, clock_ms, futex_wait, futex_wake, spin_hint};

/// The futex, modelled: comparing the word and going to sleep happen under one lock, as
/// the kernel does under its hash-bucket lock, and a wake wakes every sleeper (waking more
/// than asked is allowed: every caller re-checks). Time is modelled only as far as
/// deaths and the modelled clock's moves make sleepers' slices run out (see
/// `model::futex_wait`): otherwise a sleeper sleeps until woken, so a lost wake-up becomes
/// a deadlock that loom reports.
#[cfg(loom)]
mod model {
    use super::{AtomicU32, FutexWait};
    use loom::sync::{Condvar, Mutex};

    loom::lazy_static! {
        static ref KERNEL: (Mutex<Kernel>, Condvar) = (Mutex::new(Kernel::default()), Condvar::new());
    }

    /// What the modelled kernel counts: wake calls, deaths of modelled processes, and
    /// moves of the modelled clock.
    #[derive(Default)]
    pub(super) struct Kernel {
        wakes: u64,
        deaths: u64,
        ticks: u64,
    }

    loom::thread_local! {
        /// The deaths, the wakes and the clock's moves counted at this thread's last
        /// timed-out wait (see [`futex_wait`]).
        static SEEN: std::cell::Cell<(u64, u64, u64)> = std::cell::Cell::new((0, 0, 0));
    }

    std::thread_local! {
        /// The modelled clock (milliseconds): still unless a model moves it
        /// ([`advance_clock`]). A `std` thread-local on purpose: loom runs a model's
        /// threads on the one thread of its test, so they all see this one, while the
        /// models of other tests, on other threads, keep theirs. Reading or moving it is
        /// no step that loom interleaves: a model explores the orders of the loom
        /// operations around those reads and moves, not every order of the reads and
        /// moves themselves (incomplete, not wrong).
        static CLOCK: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// The modelled clock's time (milliseconds since the model began).
    pub(crate) fn clock_ms() -> u64 {
        CLOCK.with(|c| c.get())
    }

    /// Moves the modelled clock on by `ms` (the first call of a model's iteration starts
    /// it from 0 again: pass `restart`). Time passing is a sleeper's slice running out:
    /// every timed sleep returns `TimedOut` once (see [`futex_wait`]).
    pub(crate) fn advance_clock(ms: u64, restart: bool) {
        CLOCK.with(|c| c.set(if restart { ms } else { c.get() + ms }));
        if restart {
            return;
        }
        let (lock, cv) = &*KERNEL;
        lock.lock().unwrap().ticks += 1;
        cv.notify_all();
    }

    /// A timed wait returns `TimedOut` once for every death of another modelled process (or
    /// move of the modelled clock) since this thread's last timed-out wait, and, once a
    /// process has died, once more whenever a wake happened since then: a real sleeper's
    /// slice runs out some time after a peer's death, and then again every slice, and that
    /// is when it checks its peers' liveness. A thread whose wait had run out before what
    /// it waits for came to depend on the dead (a dead sender's claim that it reached only
    /// later, say) gets to check again, as a real one would, without a model that times out
    /// forever. Otherwise a sleeper sleeps until woken (a lost wake-up is a deadlock that
    /// loom reports).
    pub(crate) fn futex_wait(
        word: &AtomicU32,
        expected: u32,
        timeout: Option<std::time::Duration>,
    ) -> FutexWait {
        if !super::process::step() {
            return FutexWait::Woken;
        }
        let (lock, cv) = &*KERNEL;
        let mut k = lock.lock().unwrap();
        if word.kernel_load() != expected {
            return FutexWait::Woken;
        }
        let timed = timeout.is_some();
        let timed_out = |k: &Kernel| {
            timed
                && SEEN.with(|seen| {
                    let (deaths, wakes, ticks) = seen.get();
                    let out =
                        k.deaths > deaths || (k.deaths > 0 && k.wakes > wakes) || k.ticks > ticks;
                    if out {
                        seen.set((k.deaths, k.wakes, k.ticks));
                    }
                    out
                })
        };
        if timed_out(&k) {
            return FutexWait::TimedOut;
        }
        let wakes = k.wakes;
        while k.wakes == wakes {
            k = cv.wait(k).unwrap();
            if timed_out(&k) {
                return FutexWait::TimedOut;
            }
        }
        FutexWait::Woken
    }

    pub(crate) fn futex_wake(_word: &AtomicU32, _n: u32) {
        if !super::process::step() {
            return;
        }
        let (lock, cv) = &*KERNEL;
        lock.lock().unwrap().wakes += 1;
        cv.notify_all();
    }

    /// The kernel's part in a modelled process's death: sleepers' slices run out.
    pub(super) fn death() {
        let (lock, cv) = &*KERNEL;
        lock.lock().unwrap().deaths += 1;
        cv.notify_all();
    }

    pub(crate) fn spin_hint() {
        loom::thread::yield_now();
    }
}

/// Processes, modelled: under loom every thread stands for a process, with its own
/// liveness token, and a model can kill one after any number of its steps.
///
/// A step is one operation on shared memory (an atomic load, store or read-modify-write)
/// or one futex call; [`die_after`] runs a closure that is killed, by an unwinding panic
/// caught at its end, just before its `n`-th step. From then on the thread is a ghost:
/// its shared-memory operations do nothing (loads read 0, compare-exchanges pretend to
/// succeed, futex calls return at once), so the destructors that run while it unwinds
/// release what the kernel would release for a killed process (descriptors, mappings) and
/// touch no shared memory. What the victim leaves behind is then exactly what `kill -9`
/// leaves: the steps it made, none of those it did not. The kernel's part follows at
/// once: the process's liveness token is dead and every sleeper's slice runs out (see
/// `model::futex_wait`).
#[cfg(loom)]
pub mod process {
    use std::cell::Cell;
    use std::panic::{self, AssertUnwindSafe};

    use super::Ordering;

    /// How many more steps this thread may make.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum Budget {
        Unlimited,
        Left(u32),
        Killed,
    }

    /// The payload of the panic that kills a modelled process.
    #[derive(Debug)]
    pub struct Killed;

    /// Liveness tokens handed out in this execution, and those of dead processes. Not a
    /// loom object: a token's liveness is the kernel's business, asked in one system
    /// call, not a memory access to interleave.
    #[derive(Default)]
    struct Registry {
        issued: u32,
        dead: Vec<u32>,
    }

    loom::lazy_static! {
        static ref REGISTRY: std::sync::Mutex<Registry> = std::sync::Mutex::new(Registry::default());
    }

    loom::thread_local! {
        static BUDGET: Cell<Budget> = Cell::new(Budget::Unlimited);
        static TOKEN: Cell<u32> = Cell::new(0);
    }

    fn registry() -> std::sync::MutexGuard<'static, Registry> {
        REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one step of this thread, and kills it if its budget is spent. `false` if the
    /// thread is a ghost (killed): the step must have no effect.
    pub(crate) fn step() -> bool {
        // Unwinding: a killed process's destructors, or loom tearing a failed execution
        // down (when loom's thread state may no longer be reached). Either way, a ghost.
        if std::thread::panicking() {
            return false;
        }
        match BUDGET.with(Cell::get) {
            Budget::Unlimited => true,
            Budget::Left(0) => {
                BUDGET.with(|b| b.set(Budget::Killed));
                panic::panic_any(Killed);
            }
            Budget::Left(n) => {
                BUDGET.with(|b| b.set(Budget::Left(n - 1)));
                true
            }
            Budget::Killed => false,
        }
    }

    /// This thread's liveness token (tokens start at 1).
    pub(crate) fn token() -> u32 {
        if std::thread::panicking() {
            return 0; // a ghost's token: only used in steps that have no effect
        }
        TOKEN.with(|t| {
            if t.get() == 0 {
                let mut r = registry();
                r.issued += 1;
                t.set(r.issued);
            }
            t.get()
        })
    }

    /// Whether the modelled process that holds `token` is alive.
    pub(crate) fn is_alive(token: u32) -> bool {
        let r = registry();
        token != 0 && token <= r.issued && !r.dead.contains(&token)
    }

    /// Runs `f` as a process that is killed just before its `steps`-th step (counted
    /// from 0): `Some` with `f`'s result if it was not, `None` if it was. Either way the
    /// thread is dead afterwards (a ghost), as a process that exits, and its token with
    /// it. What `f` owns is dropped as it unwinds, as a ghost: see the module docs.
    pub fn die_after<R>(steps: u32, f: impl FnOnce() -> R) -> Option<R> {
        BUDGET.with(|b| b.set(Budget::Left(steps)));
        let out = match panic::catch_unwind(AssertUnwindSafe(f)) {
            Ok(r) => Some(r),
            Err(p) if p.is::<Killed>() => None,
            Err(p) => panic::resume_unwind(p),
        };
        BUDGET.with(|b| b.set(Budget::Killed));
        let me = token();
        registry().dead.push(me);
        super::model::death();
        out
    }

    /// Installs (once) a panic hook that keeps quiet about [`Killed`] panics.
    pub fn quiet_kills() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let prev = panic::take_hook();
            panic::set_hook(Box::new(move |info| {
                if !info.payload().is::<Killed>() {
                    prev(info);
                }
            }));
        });
    }

    /// Read-modify-writes of one operand: a ghost's read 0 and change nothing.
    macro_rules! fetch {
        ($int:ty; $($op:ident),*) => {$(
            pub(crate) fn $op(&self, v: $int, o: Ordering) -> $int {
                if !step() {
                    return 0;
                }
                self.0.$op(v, o)
            }
        )*};
    }

    /// Compare-and-swaps: a ghost's "succeed" and change nothing.
    macro_rules! cas {
        ($int:ty; $($op:ident),*) => {$(
            pub(crate) fn $op(
                &self,
                cur: $int,
                new: $int,
                s: Ordering,
                f: Ordering,
            ) -> Result<$int, $int> {
                if !step() {
                    return Ok(cur);
                }
                self.0.$op(cur, new, s, f)
            }
        )*};
    }

    macro_rules! atomic {
        ($name:ident, $int:ty) => {
            /// loom's atomic, each operation counted as a step of the modelled process.
            #[derive(Debug)]
            #[repr(transparent)]
            pub(crate) struct $name(loom::sync::atomic::$name);

            #[allow(dead_code)]
            impl $name {
                pub(crate) fn new(v: $int) -> Self {
                    $name(loom::sync::atomic::$name::new(v))
                }
                pub(crate) fn load(&self, o: Ordering) -> $int {
                    if !step() {
                        return 0;
                    }
                    self.0.load(o)
                }
                /// The futex's compare: the kernel's read, not a step of the caller.
                pub(crate) fn kernel_load(&self) -> $int {
                    self.0.load(Ordering::SeqCst)
                }
                pub(crate) fn store(&self, v: $int, o: Ordering) {
                    if step() {
                        self.0.store(v, o)
                    }
                }
                cas!($int; compare_exchange, compare_exchange_weak);
                fetch!($int; swap, fetch_add, fetch_sub, fetch_and, fetch_or, fetch_max);
            }
        };
    }
    atomic!(AtomicU32, u32);
    atomic!(AtomicU64, u64);
}
