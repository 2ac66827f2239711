//! The synchronisation primitives under a hostile peer: one real object per input (a
//! semaphore, an event, a condition variable with its mutex, a barrier, a mutex, a value,
//! an array, an rwlock or a re-entrant mutex) whose shared words (lock words, state words,
//! counters, reader slots, member tables) are overwritten with fuzz-chosen values between
//! non-blocking or briefly timed calls. Every call must return promptly with `Ok` or an
//! error: no panic, no hang.
//!
//! Only the `try_` and `_timeout` forms are called: the blocking forms may wait for ever
//! on a lock word that names a live process (this one), which the docs allow.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmkit::{
    Array, Barrier, BoundedSemaphore, Condvar, Event, LockError, LockResult, Mutex, MutexGuard,
    ReentrantMutex, ReentrantMutexGuard, RwLock, RwLockWriteGuard, Semaphore, Value,
};
use shmkit_fuzz::{install_cleanup_hook, micros, unique_name, NameGuard, Poke, Scribbler};

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Which {
    Semaphore,
    BoundedSemaphore,
    Event,
    Condvar,
    Barrier,
    Mutex,
    Value,
    Array,
    RwLock,
    Reentrant,
}

/// What to do; each primitive reads the variants its own way (see `run_*`).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Act {
    A,
    B,
    Timed(u8),
    TimedB(u8),
    Release(u8),
    Mark(u8),
    Forget(u8),
    Open,
    Query,
}

#[derive(Arbitrary, Debug)]
struct Round {
    pokes: Vec<Poke>,
    acts: Vec<Act>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    which: Which,
    param: u8,
    rounds: Vec<Round>,
}

/// Guards held at once, at most.
const HELD: usize = 6;

fn ignore<T, E>(_: Result<T, E>) {}

/// Keeps the guard of a successful lock (also one from a dead owner).
fn keep<G>(r: LockResult<G>, held: &mut Vec<G>) {
    match r {
        Ok(g) | Err(LockError::OwnerDied(g)) => {
            if held.len() < HELD {
                held.push(g);
            }
        }
        Err(LockError::Error(_)) => {}
    }
}

fn take<G>(held: &mut Vec<G>, i: u8) -> Option<G> {
    if held.is_empty() {
        return None;
    }
    let i = usize::from(i) % held.len();
    Some(held.swap_remove(i))
}

/// Runs the rounds: the pokes, then the acts, within a budget.
fn drive(input: &Input, s: &Scribbler, mut f: impl FnMut(Act)) {
    let mut budget = 48;
    for round in input.rounds.iter().take(8) {
        s.apply_all(&round.pokes, 16);
        for a in round.acts.iter().take(budget) {
            budget -= 1;
            f(*a);
        }
    }
}

/// A body to scribble on: its address, its length, and its control words
/// (`(offset, wide)`).
type Body<'a> = (*mut u8, usize, &'a [(usize, bool)]);

/// A scribbler over some bodies, with their control words registered.
fn scribbler(areas: &[Body<'_>]) -> Scribbler {
    let mut s = Scribbler::new();
    for &(base, len, fields) in areas {
        // SAFETY: the body of a segment that the caller keeps open for as long as the
        // scribbler is used; shmkit keeps only atomics over its control words.
        let area = unsafe { s.add_area(base, len) };
        for &(off, wide) in fields {
            s.field(area, off, wide);
        }
    }
    s
}

macro_rules! semaphore {
    ($ty:ty, $input:expr, $name:expr) => {{
        let sem = <$ty>::create($name, u32::from($input.param % 4)).expect("create semaphore");
        let seg = sem.segment();
        let s = scribbler(&[(seg.as_ptr(), seg.len(), &[(0, false)])]);
        drive($input, &s, |a| match a {
            Act::A => ignore(sem.try_acquire()),
            Act::B => ignore(sem.release()),
            Act::Timed(t) => ignore(sem.acquire_timeout(micros(t))),
            Act::Release(n) => ignore(sem.release_n(u32::from(n))),
            Act::Open => {
                if let Ok(other) = <$ty>::open($name) {
                    if other.try_acquire().unwrap_or(false) {
                        ignore(other.release());
                    }
                }
            }
            _ => {
                let _ = sem.value();
            }
        });
    }};
}

fn run_event(input: &Input, name: &str) {
    let ev = Event::create(name).expect("create event");
    let seg = ev.segment();
    let s = scribbler(&[(seg.as_ptr(), seg.len(), &[(0, false)])]);
    drive(input, &s, |a| match a {
        Act::A => ev.set(),
        Act::B => ev.clear(),
        Act::Timed(t) | Act::TimedB(t) => ignore(ev.wait_timeout(micros(t))),
        Act::Open => {
            if let Ok(other) = Event::open(name) {
                ignore(other.wait_timeout(std::time::Duration::ZERO));
            }
        }
        _ => {
            let _ = ev.is_set();
        }
    });
}

fn run_condvar(input: &Input, name: &str) {
    let mname = format!("{name}m");
    let _mguard = NameGuard::new(&mname);
    let cv = Condvar::create(name).expect("create condvar");
    let m = Mutex::<u64>::create(&mname, 0).expect("create mutex");
    let (cs, ms) = (cv.segment(), m.segment());
    let s = scribbler(&[
        (cs.as_ptr(), cs.len(), &[(0, false)]),
        (ms.as_ptr(), ms.len(), &[(0, false), (4, false), (8, true)]),
    ]);
    let mut held: Vec<MutexGuard<'_, u64>> = Vec::new();
    drive(input, &s, |a| match a {
        Act::A => cv.notify_one(),
        Act::B => cv.notify_all(),
        Act::Timed(t) => {
            let g = match take(&mut held, t) {
                Some(g) => g,
                None => match m.lock_recover_timeout(micros(0)) {
                    Ok(g) | Err(LockError::OwnerDied(g)) => g,
                    Err(LockError::Error(_)) => return,
                },
            };
            if let Ok((g, _)) = cv.wait_timeout(g, micros(t)) {
                held.push(g);
            }
        }
        Act::TimedB(t) => {
            if let Some(g) = take(&mut held, t) {
                if let Ok((g, _)) = cv.wait_timeout_while(g, micros(t), |v| v.is_multiple_of(2)) {
                    held.push(g);
                }
            }
        }
        Act::Release(i) => drop(take(&mut held, i)),
        Act::Mark(i) => {
            if let Some(g) = held.get(usize::from(i) % held.len().max(1)) {
                MutexGuard::mark_consistent(g);
            }
        }
        Act::Forget(i) => {
            if let Some(g) = take(&mut held, i) {
                std::mem::forget(g);
            }
        }
        Act::Open => {
            if let Ok(other) = Condvar::open(name) {
                other.notify_all();
            }
        }
        Act::Query => keep(m.lock_recover_timeout(micros(0)), &mut held),
    });
}

fn run_barrier(input: &Input, name: &str) {
    let b = Barrier::create(name, 1 + u32::from(input.param % 3)).expect("create barrier");
    let seg = b.segment();
    let fields = [
        (0, false),
        (4, false),
        (8, false),
        (12, false),
        (16, false),
        (20, false),
        (16 + 251 * 4, false),
    ];
    let s = scribbler(&[(seg.as_ptr(), seg.len(), &fields)]);
    let mut others: Vec<Barrier> = Vec::new();
    drive(input, &s, |a| match a {
        Act::A => ignore(b.wait_timeout(std::time::Duration::ZERO)),
        Act::B => {
            b.reset();
        }
        Act::Timed(t) | Act::TimedB(t) => ignore(b.wait_timeout(micros(t))),
        Act::Open => {
            if others.len() < 3 {
                if let Ok(o) = Barrier::open(name) {
                    others.push(o);
                }
            }
        }
        Act::Release(i) => drop(take(&mut others, i)),
        Act::Mark(i) | Act::Forget(i) => {
            if let Some(o) = others.get(usize::from(i) % others.len().max(1)) {
                ignore(o.wait_timeout(std::time::Duration::ZERO));
            }
        }
        Act::Query => {
            let _ = (b.is_broken(), b.parties());
        }
    });
}

/// Mutex, Value and Array share the lock word layout: `[word u32][state u32][data]`.
macro_rules! locked {
    ($input:expr, $name:expr, $obj:expr, $open:expr, $guard:ty) => {{
        let obj = $obj;
        let seg = obj.segment();
        let s = scribbler(&[(
            seg.as_ptr(),
            seg.len(),
            &[(0, false), (4, false), (8, true)],
        )]);
        let mut held: Vec<$guard> = Vec::new();
        drive($input, &s, |a| match a {
            // The recovering calls: they hand over a dead owner's guard too.
            Act::A => keep(obj.lock_recover_timeout(micros(0)), &mut held),
            Act::Timed(t) | Act::TimedB(t) => keep(obj.lock_recover_timeout(micros(t)), &mut held),
            Act::B => {
                if let Some(g) = held.last() {
                    let _ = MutexGuard::is_inconsistent(g);
                }
            }
            Act::Release(i) => drop(take(&mut held, i)),
            Act::Mark(i) => {
                if let Some(g) = held.get(usize::from(i) % held.len().max(1)) {
                    MutexGuard::mark_consistent(g);
                }
            }
            Act::Forget(i) => {
                if let Some(g) = take(&mut held, i) {
                    std::mem::forget(g);
                }
            }
            Act::Open => {
                if let Ok(other) = $open($name) {
                    let _ = other.try_lock().is_ok();
                }
            }
            Act::Query => {
                let _ = held.len();
            }
        });
    }};
}

enum RwGuard<'a> {
    Read(shmkit::RwLockReadGuard<'a, u64>),
    Write(RwLockWriteGuard<'a, u64>),
}

fn keep_read<'a>(r: LockResult<shmkit::RwLockReadGuard<'a, u64>>) -> Option<RwGuard<'a>> {
    match r {
        Ok(g) | Err(LockError::OwnerDied(g)) => Some(RwGuard::Read(g)),
        Err(LockError::Error(_)) => None,
    }
}

fn keep_write<'a>(r: LockResult<RwLockWriteGuard<'a, u64>>) -> Option<RwGuard<'a>> {
    match r {
        Ok(g) | Err(LockError::OwnerDied(g)) => Some(RwGuard::Write(g)),
        Err(LockError::Error(_)) => None,
    }
}

fn run_rwlock(input: &Input, name: &str) {
    let l = RwLock::<u64>::create(name, 0).expect("create rwlock");
    let seg = l.segment();
    let mut fields = vec![(0, false), (4, false), (8, false), (12, false)];
    for i in [0usize, 1, 2, 3, 63] {
        fields.push((128 * (1 + i), true));
    }
    let s = scribbler(&[(seg.as_ptr(), seg.len(), &fields)]);
    let mut held: Vec<RwGuard<'_>> = Vec::new();
    drive(input, &s, |a| {
        let got = match a {
            Act::A => keep_read(l.read_recover_timeout(micros(0))),
            Act::B => keep_write(l.write_recover_timeout(micros(0))),
            Act::Timed(t) => keep_read(l.read_recover_timeout(micros(t))),
            Act::TimedB(t) => keep_write(l.write_recover_timeout(micros(t))),
            Act::Release(i) => {
                drop(take(&mut held, i));
                None
            }
            Act::Mark(i) => {
                if let Some(RwGuard::Write(g)) = held.get(usize::from(i) % held.len().max(1)) {
                    RwLockWriteGuard::mark_consistent(g);
                }
                None
            }
            Act::Forget(i) => {
                if let Some(g) = take(&mut held, i) {
                    std::mem::forget(g);
                }
                None
            }
            Act::Open => {
                if let Ok(other) = RwLock::<u64>::open(name) {
                    let _ = other.try_read().is_ok();
                }
                None
            }
            Act::Query => {
                for g in &held {
                    let _ = match g {
                        RwGuard::Read(g) => **g,
                        RwGuard::Write(g) => **g,
                    };
                }
                None
            }
        };
        if let Some(g) = got {
            if held.len() < HELD {
                held.push(g);
            }
        }
    });
}

fn run_reentrant(input: &Input, name: &str) {
    let m = ReentrantMutex::create(name).expect("create reentrant mutex");
    let seg = m.segment();
    let fields = [(0, false), (4, false), (8, true), (16, false), (20, false)];
    let s = scribbler(&[(seg.as_ptr(), seg.len(), &fields)]);
    let mut held: Vec<ReentrantMutexGuard<'_>> = Vec::new();
    drive(input, &s, |a| match a {
        Act::A => keep(m.lock_recover_timeout(micros(0)), &mut held),
        Act::Timed(t) | Act::TimedB(t) => keep(m.lock_recover_timeout(micros(t)), &mut held),
        Act::B => {
            if let Some(g) = held.last() {
                let _ = ReentrantMutexGuard::is_inconsistent(g);
            }
        }
        Act::Release(i) => drop(take(&mut held, i)),
        Act::Mark(i) => {
            if let Some(g) = held.get(usize::from(i) % held.len().max(1)) {
                ReentrantMutexGuard::mark_consistent(g);
            }
        }
        Act::Forget(i) => {
            if let Some(g) = take(&mut held, i) {
                std::mem::forget(g);
            }
        }
        Act::Open => {
            if let Ok(other) = ReentrantMutex::open(name) {
                let _ = other.try_lock().is_ok();
            }
        }
        Act::Query => {
            let _ = held.len();
        }
    });
}

fuzz_target!(|input: Input| {
    install_cleanup_hook();
    let name = unique_name("sync");
    let _guard = NameGuard::new(&name);
    let n = name.as_str();
    match input.which {
        Which::Semaphore => semaphore!(Semaphore, &input, n),
        Which::BoundedSemaphore => semaphore!(BoundedSemaphore, &input, n),
        Which::Event => run_event(&input, n),
        Which::Condvar => run_condvar(&input, n),
        Which::Barrier => run_barrier(&input, n),
        Which::Mutex => locked!(
            &input,
            n,
            Mutex::<u64>::create(n, 0).expect("create mutex"),
            Mutex::<u64>::open,
            MutexGuard<'_, u64>
        ),
        Which::Value => locked!(
            &input,
            n,
            Value::<u64>::create(n, 0).expect("create value"),
            Value::<u64>::open,
            MutexGuard<'_, u64>
        ),
        Which::Array => locked!(
            &input,
            n,
            Array::<u64>::create_zeroed(n, 1 + usize::from(input.param % 4)).expect("create array"),
            Array::<u64>::open,
            MutexGuard<'_, [u64]>
        ),
        Which::RwLock => run_rwlock(&input, n),
        Which::Reentrant => run_reentrant(&input, n),
    }
});
