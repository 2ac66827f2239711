//! RwLock and ReentrantMutex across real processes: exclusion, shared reading, writer
//! preference, writer and reader death, recovery, try and timeout forms, corrupt words.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{
    arg, arg_as, die_now, finish, finish_ok, report, spawn, wait_until, Names, SignalStorm,
};
use shmkit::{
    Error, LockError, RawValue, ReentrantMutex, ReentrantMutexGuard, RwLock, RwLockReadGuard,
    RwLockWriteGuard,
};

type Pair = RwLock<[u64; 2]>;

/// Long enough that only a broken lock reaches it; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);
/// A wait that is expected to time out.
const SHORT: Duration = Duration::from_millis(20);
const ITERS: u64 = 2_000;

#[test]
fn __child() {
    common::child_main(&[
        ("rw_worker", rw_worker),
        ("reader_barrier", reader_barrier),
        ("writer_dies", writer_dies),
        ("writer_blocks_then_writes", writer_blocks_then_writes),
        ("reader_dies", reader_dies),
        ("reader_holds_then_dies", reader_holds_then_dies),
        ("expect_read_owner_died", expect_read_owner_died),
        ("expect_not_recoverable", expect_not_recoverable),
        ("try_forms_under_write", try_forms_under_write),
        ("try_forms_under_read", try_forms_under_read),
        ("rlock_try", rlock_try),
        ("rlock_take", rlock_take),
        ("rlock_die", rlock_die),
        ("rlock_recover_and_die", rlock_recover_and_die),
        ("rlock_expect_not_recoverable", rlock_expect_not_recoverable),
        ("hold_write_until_killed", hold_write_until_killed),
        ("wait_under_signals", wait_under_signals),
    ]);
}

fn counter(name: &str) -> RawValue<u32> {
    RawValue::<u32>::open(name).unwrap()
}

fn killed_child(role: &str, args: &[(&str, String)]) {
    let o = finish(spawn(role, args));
    assert_eq!(
        o.signal,
        Some(libc::SIGKILL),
        "child should die by SIGKILL: {o:?}"
    );
}

fn assert_clean(names: &Names) {
    assert_eq!(
        names.leftovers(),
        Vec::<String>::new(),
        "segments left behind"
    );
}

// --- exclusion and sharing -------------------------------------------------------------

/// Mixes writes and reads, checking inside each critical section through shared counters.
fn rw_worker() {
    let me: u64 = arg_as("me");
    let l = Pair::open(&arg("name")).unwrap();
    let readers = counter(&arg("readers"));
    let writers = counter(&arg("writers"));
    let max_writers = counter(&arg("max_writers"));
    let bad = counter(&arg("bad"));
    let (readers, writers, max_writers, bad) = (
        readers.atomic(),
        writers.atomic(),
        max_writers.atomic(),
        bad.atomic(),
    );
    for i in 0..ITERS {
        if (i + me).is_multiple_of(4) {
            let mut g = l.write().unwrap();
            let w = writers.fetch_add(1, Ordering::SeqCst) + 1;
            max_writers.fetch_max(w, Ordering::SeqCst);
            if readers.load(Ordering::SeqCst) != 0 {
                bad.fetch_add(1, Ordering::SeqCst);
            }
            g[0] += 1;
            std::hint::spin_loop();
            g[1] = g[0];
            writers.fetch_sub(1, Ordering::SeqCst);
        } else {
            let g = l.read().unwrap();
            readers.fetch_add(1, Ordering::SeqCst);
            if writers.load(Ordering::SeqCst) != 0 || g[0] != g[1] {
                bad.fetch_add(1, Ordering::SeqCst);
            }
            readers.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn writers_are_exclusive_and_never_overlap_readers() {
    let names = Names::new("rw_excl");
    let l = Pair::create(&names.name("lock"), [0, 0]).unwrap();
    let counters: Vec<_> = ["readers", "writers", "max_writers", "bad"]
        .iter()
        .map(|c| (*c, RawValue::<u32>::create(&names.name(c), 0).unwrap()))
        .collect();
    let kids: Vec<_> = (0..4u64)
        .map(|me| {
            let mut args = vec![("name", names.name("lock")), ("me", me.to_string())];
            args.extend(counters.iter().map(|(c, _)| (*c, names.name(c))));
            spawn("rw_worker", &args)
        })
        .collect();
    kids.into_iter().for_each(|c| {
        finish_ok(c);
    });
    let get = |c: &str| counters.iter().find(|(n, _)| *n == c).unwrap().1.get();
    assert_eq!(get("bad"), 0, "a reader or writer overlapped a writer");
    assert_eq!(get("max_writers"), 1);
    assert_eq!((get("readers"), get("writers")), (0, 0));
    let writes = 4 * ITERS / 4;
    assert_eq!(*l.read().unwrap(), [writes, writes]);
    drop((l, counters));
    assert_clean(&names);
}

/// Holds a read lock until all `n` readers are inside at once.
fn reader_barrier() {
    let n: u32 = arg_as("n");
    let l = Pair::open(&arg("name")).unwrap();
    let inside = counter(&arg("inside"));
    let g = l.read_timeout(PATIENCE).unwrap();
    inside.atomic().fetch_add(1, Ordering::SeqCst);
    wait_until(PATIENCE, || inside.atomic().load(Ordering::SeqCst) == n);
    report("seen", g[0]);
}

#[test]
fn readers_of_several_processes_hold_the_lock_together() {
    let names = Names::new("rw_share");
    let l = Pair::create(&names.name("lock"), [5, 5]).unwrap();
    let inside = RawValue::<u32>::create(&names.name("inside"), 0).unwrap();
    let n = 4;
    let kids: Vec<_> = (0..n)
        .map(|_| {
            spawn(
                "reader_barrier",
                &[
                    ("name", names.name("lock")),
                    ("inside", names.name("inside")),
                    ("n", n.to_string()),
                ],
            )
        })
        .collect();
    for o in kids.into_iter().map(finish_ok) {
        assert_eq!(o.get::<u64>("seen"), 5);
    }
    assert_eq!(inside.get(), n);
    drop((l, inside));
    assert_clean(&names);
}

fn writer_blocks_then_writes() {
    let l = Pair::open(&arg("name")).unwrap();
    let mut g = l.write_timeout(PATIENCE).unwrap();
    *g = [42, 42];
}

#[test]
fn a_waiting_writer_keeps_new_readers_out() {
    let names = Names::new("rw_pref");
    let name = names.name("lock");
    let l = Pair::create(&name, [0, 0]).unwrap();
    let held = l.read().unwrap();
    let child = spawn("writer_blocks_then_writes", &[("name", name.clone())]);
    // Once the writer waits for us, a new reader (even of our own process) stays out.
    wait_until(PATIENCE, || matches!(l.try_read(), Err(Error::WouldBlock)));
    drop(held);
    finish_ok(child);
    assert_eq!(*l.read().unwrap(), [42, 42]);
    drop(l);
    assert_clean(&names);
}

// --- writer death ----------------------------------------------------------------------

/// Writes the first half of the invariant pair and dies before the second.
fn writer_dies() {
    let l = Pair::open(&arg("name")).unwrap();
    let mut g = match l.write_timeout(PATIENCE) {
        Ok(g) => g,
        Err(e) => panic!("child could not lock: {e}"),
    };
    g[0] += 1;
    die_now();
}

fn expect_write_owner_died(l: &Pair) -> RwLockWriteGuard<'_, [u64; 2]> {
    match l.write_recover_timeout(PATIENCE) {
        Err(LockError::OwnerDied(g)) => g,
        Ok(_) => panic!("write succeeded silently after the writer died"),
        Err(e) => panic!("expected OwnerDied, got {e}"),
    }
}

fn expect_read_owner_died_on(l: &Pair) -> RwLockReadGuard<'_, [u64; 2]> {
    match l.read_recover_timeout(PATIENCE) {
        Err(LockError::OwnerDied(g)) => g,
        Ok(_) => panic!("read succeeded silently after the writer died"),
        Err(e) => panic!("expected OwnerDied, got {e}"),
    }
}

fn expect_read_owner_died() {
    let l = Pair::open(&arg("name")).unwrap();
    let g = expect_read_owner_died_on(&l);
    report("seen", format!("{}-{}", g[0], g[1]));
}

#[test]
fn a_writer_killed_between_two_writes_is_reported_to_the_next_writer() {
    let names = Names::new("rw_wdied");
    let name = names.name("pair");
    let l = Pair::create(&name, [0, 0]).unwrap();
    for round in 1..=10 {
        killed_child("writer_dies", &[("name", name.clone())]);
        let mut g = expect_write_owner_died(&l);
        assert_eq!(
            *g,
            [round, round - 1],
            "the dead writer's half-write is visible"
        );
        assert!(RwLockWriteGuard::is_inconsistent(&g));
        g[1] = g[0];
        RwLockWriteGuard::mark_consistent(&g);
        drop(g);
        assert_eq!(
            *l.read().expect("repaired lock reads normally"),
            [round, round]
        );
        drop(l.write().expect("repaired lock writes normally"));
    }
    drop(l);
    assert_clean(&names);
}

#[test]
fn readers_are_told_of_a_dead_writer_until_a_writer_repairs() {
    let names = Names::new("rw_rdied");
    let name = names.name("pair");
    let l = Pair::create(&name, [0, 0]).unwrap();
    killed_child("writer_dies", &[("name", name.clone())]);
    // A reader cannot repair: every read reports the death, here and in other processes.
    assert_eq!(*expect_read_owner_died_on(&l), [1, 0]);
    assert!(matches!(l.try_read(), Err(Error::OwnerDied)));
    assert!(matches!(l.read(), Err(Error::OwnerDied)));
    let o = finish_ok(spawn("expect_read_owner_died", &[("name", name.clone())]));
    assert_eq!(o.get::<String>("seen"), "1-0");
    let mut g = expect_write_owner_died(&l);
    g[1] = g[0];
    RwLockWriteGuard::mark_consistent(&g);
    drop(g);
    assert_eq!(*l.read().unwrap(), [1, 1]);
    drop(l);
    assert_clean(&names);
}

fn expect_not_recoverable() {
    let l = Pair::open(&arg("name")).unwrap();
    assert!(matches!(
        l.read_timeout(PATIENCE),
        Err(Error::NotRecoverable)
    ));
    assert!(matches!(
        l.write_timeout(PATIENCE),
        Err(Error::NotRecoverable)
    ));
}

#[test]
fn a_write_guard_dropped_unrepaired_makes_the_lock_not_recoverable() {
    let names = Names::new("rw_nrec");
    let name = names.name("pair");
    let l = Pair::create(&name, [0, 0]).unwrap();
    killed_child("writer_dies", &[("name", name.clone())]);
    // Readers that saw the death and dropped their guards change nothing.
    drop(expect_read_owner_died_on(&l));
    drop(expect_write_owner_died(&l));
    for r in [l.read().map(drop), l.try_read().map(drop)] {
        assert!(matches!(r, Err(Error::NotRecoverable)));
    }
    for r in [l.write().map(drop), l.try_write().map(drop)] {
        assert!(matches!(r, Err(Error::NotRecoverable)));
    }
    finish_ok(spawn("expect_not_recoverable", &[("name", name.clone())]));
    drop(l);
    assert_clean(&names);
}

#[test]
fn a_writer_killed_while_waiting_for_readers_does_not_block_them() {
    let names = Names::new("rw_wdrain");
    let name = names.name("pair");
    let l = Pair::create(&name, [3, 3]).unwrap();
    let held = l.read().unwrap();
    let mut child = spawn("writer_blocks_then_writes", &[("name", name.clone())]);
    wait_until(PATIENCE, || matches!(l.try_read(), Err(Error::WouldBlock)));
    child.kill().unwrap();
    killed_child_reaped(child);
    // The writer held the lock when it died: readers are told, the data is untouched.
    assert_eq!(*expect_read_owner_died_on(&l), [3, 3]);
    drop(held);
    let g = expect_write_owner_died(&l);
    RwLockWriteGuard::mark_consistent(&g);
    drop(g);
    assert_eq!(*l.read().unwrap(), [3, 3]);
    drop(l);
    assert_clean(&names);
}

fn killed_child_reaped(child: std::process::Child) {
    let o = finish(child);
    assert_eq!(o.signal, Some(libc::SIGKILL), "{o:?}");
}

// --- signals (reliability scenario 19) ---------------------------------------------------

/// How long a waiter may take to notice a writer's death: generous, a bound on "never
/// notices", not a measure of speed (a waiter notices within about one 64 ms slice).
const NOTICE_BOUND: Duration = Duration::from_secs(5);
/// How long a waiter waits behind a live holder before the signals start.
const STORM_DELAY: Duration = Duration::from_millis(300);

/// Takes the write lock, says so through the `held` flag, and waits to be killed.
fn hold_write_until_killed() {
    let l = Pair::open(&arg("name")).unwrap();
    let mut g = l.write_timeout(PATIENCE).unwrap();
    g[0] += 1;
    counter(&arg("held")).set(1);
    loop {
        std::thread::sleep(PATIENCE);
    }
}

/// With SIGALRM interrupting this thread every 2 ms, waits (as `mode`: `read` or `write`)
/// behind a writer that the parent kills, and expects `OwnerDied`.
fn wait_under_signals() {
    let l = Pair::open(&arg("name")).unwrap();
    // The signals start once the sleep slices have grown to their longest (64 ms) behind
    // the live holder: a waiter that checks liveness only when a slice runs out then
    // never checks again.
    let storm = SignalStorm::start(STORM_DELAY, Duration::from_millis(2));
    counter(&arg("waiting")).set(1);
    let seen = match arg("mode").as_str() {
        "read" => expect_read_owner_died_on(&l)[0],
        _ => {
            let g = expect_write_owner_died(&l);
            RwLockWriteGuard::mark_consistent(&g);
            g[0]
        }
    };
    drop(storm);
    report("seen", seen);
    report("alarms", SignalStorm::alarms());
}

/// Scenario 19: a waiter whose futex waits are interrupted by a signal more often than its
/// sleep slice still notices a writer killed while it waits. (A liveness check made only
/// when a slice runs out never came: such a waiter slept on for seconds.)
fn waiter_under_signals_notices_a_killed_writer(mode: &str) {
    let names = Names::new(&format!("rw_signals_{mode}"));
    let name = names.name("pair");
    let l = Pair::create(&name, [0, 0]).unwrap();
    let held = RawValue::<u32>::create(&names.name("held"), 0).unwrap();
    let waiting = RawValue::<u32>::create(&names.name("waiting"), 0).unwrap();
    let holder = spawn(
        "hold_write_until_killed",
        &[("name", name.clone()), ("held", names.name("held"))],
    );
    wait_until(PATIENCE, || held.get() == 1);
    let waiter = spawn(
        "wait_under_signals",
        &[
            ("name", name.clone()),
            ("waiting", names.name("waiting")),
            ("mode", mode.to_owned()),
        ],
    );
    wait_until(PATIENCE, || waiting.get() == 1);
    // Kill the writer once the storm has begun.
    std::thread::sleep(STORM_DELAY + Duration::from_millis(100));
    let mut holder = holder;
    let killed = Instant::now();
    holder.kill().unwrap();
    killed_child_reaped(holder);
    let o = finish_ok(waiter);
    let took = killed.elapsed();
    assert!(
        took < NOTICE_BOUND,
        "a {mode} waiter under signals took {took:?} to notice the dead writer"
    );
    assert_eq!(
        o.get::<u64>("seen"),
        1,
        "the dead writer's write is visible"
    );
    assert!(
        o.get::<u32>("alarms") > 20,
        "the waiter was not interrupted: {o:?}"
    );
    drop((l, held, waiting));
    assert_clean(&names);
}

#[test]
fn a_reader_interrupted_by_signals_still_notices_a_killed_writer() {
    waiter_under_signals_notices_a_killed_writer("read");
}

#[test]
fn a_writer_interrupted_by_signals_still_notices_a_killed_writer() {
    waiter_under_signals_notices_a_killed_writer("write");
}

// --- reader death ----------------------------------------------------------------------

fn reader_dies() {
    let l = Pair::open(&arg("name")).unwrap();
    let _g = l.read_timeout(PATIENCE).unwrap();
    die_now();
}

#[test]
fn readers_killed_holding_read_locks_do_not_block_writers() {
    let names = Names::new("rw_rdead");
    let name = names.name("pair");
    let l = Pair::create(&name, [0, 0]).unwrap();
    killed_child("reader_dies", &[("name", name.clone())]);
    // Even the non-blocking form looks at the holders' liveness once.
    let mut g = l
        .try_write()
        .expect("a dead reader is detected by try_write");
    g[0] = 1;
    drop(g);
    for _ in 0..3 {
        killed_child("reader_dies", &[("name", name.clone())]);
    }
    let mut g = l
        .write_timeout(PATIENCE)
        .expect("dead readers are reclaimed");
    g[1] = 1;
    drop(g);
    // A reader's death leaves the data consistent: nobody is told OwnerDied.
    assert_eq!(*l.read().unwrap(), [1, 1]);
    drop(l);
    assert_clean(&names);
}

fn reader_holds_then_dies() {
    let l = Pair::open(&arg("name")).unwrap();
    let flag = counter(&arg("flag"));
    let _g = l.read_timeout(PATIENCE).unwrap();
    flag.atomic().store(1, Ordering::SeqCst);
    wait_until(PATIENCE, || flag.atomic().load(Ordering::SeqCst) == 2);
    die_now();
}

#[test]
fn a_blocked_writer_reclaims_a_reader_that_dies_while_it_waits() {
    let names = Names::new("rw_rdead_wait");
    let name = names.name("pair");
    let l = Pair::create(&name, [0, 0]).unwrap();
    let flag = RawValue::<u32>::create(&names.name("flag"), 0).unwrap();
    let child = spawn(
        "reader_holds_then_dies",
        &[("name", name.clone()), ("flag", names.name("flag"))],
    );
    wait_until(PATIENCE, || flag.atomic().load(Ordering::SeqCst) == 1);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut g = l.write_timeout(PATIENCE).expect("writer gets the lock");
            g[0] = 9;
        });
        // The writer holds the word and waits for the reader; then the reader dies.
        wait_until(PATIENCE, || matches!(l.try_read(), Err(Error::WouldBlock)));
        flag.atomic().store(2, Ordering::SeqCst);
        writer.join().unwrap();
    });
    killed_child_reaped(child);
    assert_eq!(*l.read().unwrap(), [9, 0]);
    drop((l, flag));
    assert_clean(&names);
}

// --- try and timeout forms -------------------------------------------------------------

fn try_forms_under_write() {
    let l = Pair::open(&arg("name")).unwrap();
    assert!(matches!(l.try_read(), Err(Error::WouldBlock)));
    assert!(matches!(l.read_timeout(SHORT), Err(Error::Timeout)));
    assert!(matches!(l.try_write(), Err(Error::WouldBlock)));
    assert!(matches!(l.write_timeout(SHORT), Err(Error::Timeout)));
    report("done", 1);
}

fn try_forms_under_read() {
    let l = Pair::open(&arg("name")).unwrap();
    let a = l.try_read().expect("readers share");
    let b = l.read_timeout(SHORT).expect("readers share");
    assert_eq!((*a, *b), ([7, 7], [7, 7]));
    drop((a, b));
    assert!(matches!(l.try_write(), Err(Error::WouldBlock)));
    assert!(matches!(l.write_timeout(SHORT), Err(Error::Timeout)));
    report("done", 1);
}

#[test]
fn try_and_timeout_forms_give_would_block_and_timeout_across_processes() {
    let names = Names::new("rw_try");
    let name = names.name("pair");
    let l = Pair::create(&name, [7, 7]).unwrap();
    let w = l.write().unwrap();
    let o = finish_ok(spawn("try_forms_under_write", &[("name", name.clone())]));
    assert_eq!(o.get::<u32>("done"), 1);
    drop(w);
    let r = l.read().unwrap();
    let o = finish_ok(spawn("try_forms_under_read", &[("name", name.clone())]));
    assert_eq!(o.get::<u32>("done"), 1);
    // A writer that timed out while waiting for us left nothing behind.
    drop(r);
    drop(l.try_write().expect("free again"));
    drop(l);
    assert_clean(&names);
}

// --- corrupt shared words --------------------------------------------------------------

/// Writes `v` at `offset` of the lock's body. The offsets are the documented layout: the
/// head line (`word`, `state`, `drain`, `high`: u32 each) then 128-byte reader slots.
fn scribble<V: Copy>(l: &Pair, offset: usize, v: V) -> V {
    let p = l.segment().as_ptr().wrapping_add(offset) as *mut V;
    // SAFETY: `offset` is inside the body's head or slot table and aligned for `V`; no
    // other thread or process uses the lock during this test.
    unsafe {
        let old = p.read_volatile();
        p.write_volatile(v);
        old
    }
}

#[test]
fn corrupt_lock_words_give_corrupt_errors_not_hangs() {
    let names = Names::new("rw_corrupt");
    let l = Pair::create(&names.name("pair"), [0, 0]).unwrap();
    let corrupt = |r: Result<(), Error>| matches!(r, Err(Error::Corrupt { .. }));
    // A state word no correct peer writes.
    let old = scribble(&l, 4, 77u32);
    assert!(corrupt(l.read().map(drop)));
    assert!(corrupt(l.write_timeout(PATIENCE).map(drop)));
    scribble(&l, 4, old);
    // A reader slot with a zero token (first slot, after the head line).
    drop(l.read().unwrap()); // raises the high-water mark past slot 0
    let old = scribble(&l, 128, 5u64);
    assert!(corrupt(l.write_timeout(PATIENCE).map(drop)));
    assert!(corrupt(l.try_write().map(drop)));
    scribble(&l, 128, old);
    // A high-water mark beyond the table.
    let old = scribble(&l, 12, 10_000u32);
    assert!(corrupt(l.write_timeout(PATIENCE).map(drop)));
    scribble(&l, 12, old);
    // Repaired by hand, the lock works again.
    *l.write().unwrap() = [1, 1];
    assert_eq!(*l.read().unwrap(), [1, 1]);
    drop(l);
    assert_clean(&names);
}

// --- ReentrantMutex --------------------------------------------------------------------

fn rlock_try() {
    let m = ReentrantMutex::open(&arg("name")).unwrap();
    assert!(matches!(m.try_lock(), Err(Error::WouldBlock)));
    assert!(matches!(m.lock_timeout(SHORT), Err(Error::Timeout)));
    report("done", 1);
}

fn rlock_take() {
    let m = ReentrantMutex::open(&arg("name")).unwrap();
    let a = m.lock_timeout(PATIENCE).unwrap();
    let b = m.try_lock().expect("the owner re-enters without waiting");
    drop((b, a));
    report("done", 1);
}

#[test]
fn reentrant_mutex_reenters_in_its_thread_and_excludes_other_processes() {
    let names = Names::new("rlock");
    let name = names.name("m");
    let m = ReentrantMutex::create(&name).unwrap();
    let a = m.lock().unwrap();
    let b = m.lock().unwrap();
    let c = m.try_lock().unwrap();
    let d = m.lock_timeout(SHORT).unwrap();
    let o = finish_ok(spawn("rlock_try", &[("name", name.clone())]));
    assert_eq!(o.get::<u32>("done"), 1);
    // Released only by the last guard, in any order.
    drop((b, d, a));
    finish_ok(spawn("rlock_try", &[("name", name.clone())]));
    drop(c);
    finish_ok(spawn("rlock_take", &[("name", name.clone())]));
    drop(m.try_lock().expect("free again"));
    drop(m);
    assert_clean(&names);
}

fn rlock_die() {
    let m = ReentrantMutex::open(&arg("name")).unwrap();
    let _a = m.lock_timeout(PATIENCE).unwrap();
    let _b = m.lock().unwrap();
    die_now();
}

fn rlock_recover_and_die() {
    let m = ReentrantMutex::open(&arg("name")).unwrap();
    let r = m.lock_recover_timeout(PATIENCE);
    match r {
        Err(LockError::OwnerDied(_g)) => die_now(),
        other => panic!("expected OwnerDied, got {:?}", other.map(drop)),
    }
}

fn rlock_expect_not_recoverable() {
    let m = ReentrantMutex::open(&arg("name")).unwrap();
    assert!(matches!(
        m.lock_timeout(PATIENCE),
        Err(Error::NotRecoverable)
    ));
}

fn expect_rlock_owner_died(m: &ReentrantMutex) -> ReentrantMutexGuard<'_> {
    match m.lock_recover_timeout(PATIENCE) {
        Err(LockError::OwnerDied(g)) => g,
        Ok(_) => panic!("lock succeeded silently after the owner died"),
        Err(e) => panic!("expected OwnerDied, got {e}"),
    }
}

#[test]
fn reentrant_mutex_owner_killed_is_reported_and_repaired() {
    let names = Names::new("rlock_died");
    let name = names.name("m");
    let m = ReentrantMutex::create(&name).unwrap();
    killed_child("rlock_die", &[("name", name.clone())]);
    // A recoverer that dies too leaves it inconsistent for the next one.
    killed_child("rlock_recover_and_die", &[("name", name.clone())]);
    let g = expect_rlock_owner_died(&m);
    assert!(ReentrantMutexGuard::is_inconsistent(&g));
    // Re-entering while still inconsistent says so again.
    assert!(matches!(
        m.lock_recover_timeout(Duration::ZERO),
        Err(LockError::OwnerDied(_))
    ));
    ReentrantMutexGuard::mark_consistent(&g);
    drop(m.lock().expect("consistent now"));
    drop(g);
    finish_ok(spawn("rlock_take", &[("name", name.clone())]));
    drop(m);
    assert_clean(&names);
}

#[test]
fn reentrant_mutex_released_unrepaired_is_not_recoverable() {
    let names = Names::new("rlock_nrec");
    let name = names.name("m");
    let m = ReentrantMutex::create(&name).unwrap();
    killed_child("rlock_die", &[("name", name.clone())]);
    let g = expect_rlock_owner_died(&m);
    drop(g);
    assert!(matches!(m.lock(), Err(Error::NotRecoverable)));
    assert!(matches!(m.try_lock(), Err(Error::NotRecoverable)));
    finish_ok(spawn(
        "rlock_expect_not_recoverable",
        &[("name", name.clone())],
    ));
    drop(m);
    assert_clean(&names);
}

#[test]
fn reentrant_mutex_excludes_other_threads_of_the_same_process() {
    let m = ReentrantMutex::anonymous().unwrap();
    let step = AtomicU32::new(0);
    let g = m.lock().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            assert!(matches!(m.try_lock(), Err(Error::WouldBlock)));
            step.store(1, Ordering::SeqCst);
            let _g = m.lock_timeout(PATIENCE).unwrap();
            step.store(2, Ordering::SeqCst);
        });
        wait_until(PATIENCE, || step.load(Ordering::SeqCst) == 1);
        // Released by this thread's last guard only; the other thread then gets it.
        let g2 = m.lock().unwrap();
        drop(g);
        assert_eq!(step.load(Ordering::SeqCst), 1, "entered while still held");
        drop(g2);
    });
    assert_eq!(step.load(Ordering::SeqCst), 2);
}
