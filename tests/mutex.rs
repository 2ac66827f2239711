//! Robust mutex, Value and RawValue across real processes: counting, owner death,
//! recovery, and the creation race.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{
    arg, arg_as, die_now, finish, finish_ok, report, spawn, wait_until, Names, SignalStorm,
};
use shmkit::{Error, LockError, Mutex, MutexGuard, RawValue, Value};

const ADDS: u64 = 100_000;
/// Long enough that only a broken lock reaches it; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);

#[test]
fn __child() {
    common::child_main(&[
        ("add_value", add_value),
        ("add_raw", add_raw),
        ("die_holding", die_holding),
        ("recover_and_die", recover_and_die),
        ("expect_not_recoverable", expect_not_recoverable),
        ("expect_plain_owner_died", expect_plain_owner_died),
        ("race_open_or_create", race_open_or_create),
        ("try_lock_held", try_lock_held),
        ("die_holding_value", die_holding_value),
        ("hold_until_killed", hold_until_killed),
        ("lock_under_signals", lock_under_signals),
    ]);
}

fn add_value() {
    let v = Value::<u64>::open(&arg("name")).unwrap();
    for _ in 0..ADDS {
        *v.lock().unwrap() += 1;
    }
}

fn add_raw() {
    let v = RawValue::<u64>::open(&arg("name")).unwrap();
    for _ in 0..ADDS {
        v.atomic().fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn four_processes_add_under_the_value_lock() {
    let names = Names::new("value_add");
    let name = names.name("counter");
    let v = Value::<u64>::create(&name, 0).unwrap();
    let kids: Vec<_> = (0..4)
        .map(|_| spawn("add_value", &[("name", name.clone())]))
        .collect();
    kids.into_iter().for_each(|c| {
        finish_ok(c);
    });
    assert_eq!(v.get().unwrap(), 4 * ADDS);
}

#[test]
fn four_processes_add_to_a_raw_value_atomically() {
    let names = Names::new("raw_add");
    let name = names.name("counter");
    let v = RawValue::<u64>::create(&name, 0).unwrap();
    let kids: Vec<_> = (0..4)
        .map(|_| spawn("add_raw", &[("name", name.clone())]))
        .collect();
    kids.into_iter().for_each(|c| {
        finish_ok(c);
    });
    assert_eq!(v.get(), 4 * ADDS);
}

/// Locks the pair, writes the first half of the invariant, and dies before the second.
fn die_holding() {
    let m = Mutex::<[u64; 2]>::open(&arg("name")).unwrap();
    let mut g = match m.lock() {
        Ok(g) => g,
        Err(e) => panic!("child could not lock: {e}"),
    };
    g[0] += 1;
    die_now();
}

/// Inherits a dead owner's lock, starts repairing, and dies before marking consistent.
fn recover_and_die() {
    let m = Mutex::<[u64; 2]>::open(&arg("name")).unwrap();
    match m.lock_recover_timeout(PATIENCE) {
        Err(LockError::OwnerDied(mut g)) => {
            g[1] = g[0];
            die_now();
        }
        Ok(_) => std::process::exit(2),
        Err(e) => panic!("unexpected: {e}"),
    };
}

fn expect_not_recoverable() {
    let m = Mutex::<[u64; 2]>::open(&arg("name")).unwrap();
    match m.lock_timeout(PATIENCE) {
        Err(Error::NotRecoverable) => {}
        other => panic!("expected NotRecoverable, got {:?}", other.map(|_| ())),
    };
}

fn killed_child(name: &str, role: &str) {
    let o = finish(spawn(role, &[("name", name.to_owned())]));
    assert_eq!(
        o.signal,
        Some(libc::SIGKILL),
        "child should die by SIGKILL: {o:?}"
    );
}

/// The next lock after a death must be `OwnerDied`, carrying a guard over the torn pair.
fn expect_owner_died(m: &Mutex<[u64; 2]>) -> MutexGuard<'_, [u64; 2]> {
    match m.lock_recover_timeout(PATIENCE) {
        Err(LockError::OwnerDied(g)) => g,
        Ok(_) => panic!("lock succeeded silently after the owner died"),
        Err(e) => panic!("expected OwnerDied, got {e}"),
    }
}

#[test]
fn holder_killed_between_two_writes_is_reported_and_repaired() {
    let names = Names::new("owner_died");
    let name = names.name("pair");
    let m = Mutex::<[u64; 2]>::create(&name, [0, 0]).unwrap();
    for round in 1..=20 {
        killed_child(&name, "die_holding");
        let mut g = expect_owner_died(&m);
        assert_eq!(
            *g,
            [round, round - 1],
            "the dead child's half-write is visible"
        );
        assert!(MutexGuard::is_inconsistent(&g));
        g[1] = g[0];
        MutexGuard::mark_consistent(&g);
        drop(g);
        let g = m.lock().expect("repaired mutex locks normally");
        assert_eq!(*g, [round, round]);
    }
}

#[test]
fn a_recoverer_killed_before_marking_consistent_is_reported_again() {
    let names = Names::new("recoverer_died");
    let name = names.name("pair");
    let m = Mutex::<[u64; 2]>::create(&name, [0, 0]).unwrap();
    killed_child(&name, "die_holding");
    killed_child(&name, "recover_and_die");
    let mut g = expect_owner_died(&m);
    g[1] = g[0];
    MutexGuard::mark_consistent(&g);
    drop(g);
    assert_eq!(*m.lock().unwrap(), [1, 1]);
}

/// The common path: `?` into `Box<dyn Error>`, as in a `main` (this compiles: the error
/// does not borrow the lock).
fn add_one(m: &Mutex<[u64; 2]>) -> Result<(), Box<dyn std::error::Error>> {
    let mut g = m.lock()?;
    g[0] += 1;
    g[1] += 1;
    Ok(())
}

#[test]
fn a_plain_lock_reports_a_dead_holder_as_an_error_and_leaves_it_repairable() {
    let names = Names::new("plain_died");
    let name = names.name("pair");
    let m = Mutex::<[u64; 2]>::create(&name, [0, 0]).unwrap();
    add_one(&m).unwrap();
    killed_child(&name, "die_holding");
    // Every plain locker is told, in this process and in others, and none of them makes
    // the mutex unusable by giving up.
    for _ in 0..3 {
        let e = add_one(&m).unwrap_err();
        assert!(
            matches!(e.downcast_ref::<Error>(), Some(Error::OwnerDied)),
            "{e}"
        );
        assert!(matches!(m.try_lock(), Err(Error::OwnerDied)));
    }
    let o = finish(spawn("expect_plain_owner_died", &[("name", name.clone())]));
    assert_eq!(o.code, Some(0), "{o:?}");
    // The data is still the dead holder's half-write, and a recovering lock repairs it.
    let mut g = expect_owner_died(&m);
    assert_eq!(*g, [2, 1]);
    g[1] = g[0];
    MutexGuard::mark_consistent(&g);
    drop(g);
    add_one(&m).unwrap();
    assert_eq!(*m.lock().unwrap(), [3, 3]);
}

fn expect_plain_owner_died() {
    let m = Mutex::<[u64; 2]>::open(&arg("name")).unwrap();
    assert!(matches!(m.lock_timeout(PATIENCE), Err(Error::OwnerDied)));
}

#[test]
fn dropping_the_guard_unrepaired_makes_the_mutex_not_recoverable() {
    let names = Names::new("not_recoverable");
    let name = names.name("pair");
    let m = Mutex::<[u64; 2]>::create(&name, [0, 0]).unwrap();
    killed_child(&name, "die_holding");
    drop(expect_owner_died(&m));
    match m.lock_timeout(PATIENCE) {
        Err(Error::NotRecoverable) => {}
        other => panic!("expected NotRecoverable, got {:?}", other.map(|_| ())),
    }
    assert!(matches!(m.try_lock(), Err(Error::NotRecoverable)));
    finish_ok(spawn("expect_not_recoverable", &[("name", name.clone())]));
}

fn die_holding_value() {
    let v = Value::<[u64; 2]>::open(&arg("name")).unwrap();
    let mut g = v.lock().unwrap();
    g[0] += 1;
    die_now();
}

#[test]
fn value_get_reports_a_dead_holder_until_set_repairs_it() {
    let names = Names::new("value_died");
    let name = names.name("value");
    let v = Value::<[u64; 2]>::create(&name, [7, 7]).unwrap();
    killed_child(&name, "die_holding_value");
    // `get` cannot vouch for the data and leaves it marked for the next locker.
    assert!(matches!(v.get(), Err(Error::OwnerDied)));
    assert!(matches!(v.get(), Err(Error::OwnerDied)));
    // `set` overwrites the whole value: that repairs it.
    v.set([1, 2]).unwrap();
    assert_eq!(v.get().unwrap(), [1, 2]);
    assert_eq!(*v.lock().unwrap(), [1, 2]);
}

fn try_lock_held() {
    let m = Mutex::<[u64; 2]>::open(&arg("name")).unwrap();
    match m.try_lock() {
        Err(Error::WouldBlock) => report("try", "would_block"),
        other => panic!("expected WouldBlock, got {:?}", other.map(|_| ())),
    }
    match m.lock_timeout(Duration::from_millis(20)) {
        Err(Error::Timeout) => report("timed", "timeout"),
        other => panic!("expected Timeout, got {:?}", other.map(|_| ())),
    };
}

#[test]
fn a_lock_held_by_a_live_process_blocks_try_and_timed_lock() {
    let names = Names::new("held");
    let name = names.name("pair");
    let m = Mutex::<[u64; 2]>::create(&name, [0, 0]).unwrap();
    let g = m.lock().unwrap();
    let o = finish_ok(spawn("try_lock_held", &[("name", name.clone())]));
    assert_eq!(o.get::<String>("try"), "would_block");
    assert_eq!(o.get::<String>("timed"), "timeout");
    drop(g);
}

fn race_open_or_create() {
    let me: u64 = arg_as("me");
    let arrived = RawValue::<u32>::open(&arg("arrived")).unwrap();
    let v = Value::<u64>::open_or_create(&arg("name"), 1000 + me).unwrap();
    report("created", v.is_creator());
    report("seen", v.get().unwrap());
    // Stay until everybody has opened: the creator's handle unlinks the name when it drops.
    arrived.atomic().fetch_add(1, Ordering::SeqCst);
    common::wait_until(PATIENCE, || arrived.atomic().load(Ordering::SeqCst) == 8);
}

#[test]
fn eight_processes_race_open_or_create_and_exactly_one_initialises() {
    for round in 0..3 {
        let names = Names::new(&format!("race{round}"));
        let name = names.name("v");
        let arrived = RawValue::<u32>::create(&names.name("arrived"), 0).unwrap();
        let arrived_name = names.name("arrived");
        let kids: Vec<_> = (0..8)
            .map(|i| {
                spawn(
                    "race_open_or_create",
                    &[
                        ("name", name.clone()),
                        ("me", i.to_string()),
                        ("arrived", arrived_name.clone()),
                    ],
                )
            })
            .collect();
        let outs: Vec<_> = kids.into_iter().map(finish_ok).collect();
        let creators = outs.iter().filter(|o| o.get::<bool>("created")).count();
        assert_eq!(creators, 1, "{outs:?}");
        let seen: Vec<u64> = outs.iter().map(|o| o.get("seen")).collect();
        assert!(seen.iter().all(|&s| s == seen[0]), "{seen:?}");
        assert!((1000..1008).contains(&seen[0]));
        drop(arrived);
        assert_eq!(
            names.leftovers(),
            Vec::<String>::new(),
            "the creator unlinks on drop"
        );
    }
}

#[test]
fn short_timeouts_in_a_loop_still_recover_a_dead_owners_lock() {
    let names = Names::new("short_timeouts");
    let name = names.name("pair");
    let m = Mutex::<[u64; 2]>::create(&name, [0, 0]).unwrap();
    killed_child(&name, "die_holding");
    // Each call gives up after a millisecond, before any sleep slice could end; the last
    // attempt at the deadline must still notice the dead owner.
    let mut attempts = 0;
    let mut g = loop {
        attempts += 1;
        assert!(
            attempts < 10_000,
            "short timeouts never recovered the dead owner's lock"
        );
        match m.lock_recover_timeout(Duration::from_millis(1)) {
            Err(LockError::OwnerDied(g)) => break g,
            Err(LockError::Error(Error::Timeout)) => continue,
            Ok(_) => panic!("lock succeeded silently after the owner died"),
            Err(e) => panic!("{e}"),
        }
    };
    g[1] = g[0];
    MutexGuard::mark_consistent(&g);
}

/// How long a waiter waits behind a live holder before the signals start.
const STORM_DELAY: Duration = Duration::from_millis(300);

/// Locks the pair, says so through the `held` flag, and waits to be killed.
fn hold_until_killed() {
    let m = Mutex::<[u64; 2]>::open(&arg("name")).unwrap();
    let mut g = m.lock_timeout(PATIENCE).unwrap();
    g[0] += 1;
    RawValue::<u32>::open(&arg("held")).unwrap().set(1);
    loop {
        std::thread::sleep(PATIENCE);
    }
}

/// With SIGALRM interrupting this thread every 2 ms, locks behind a holder that the
/// parent kills, and expects `OwnerDied`.
fn lock_under_signals() {
    let m = Mutex::<[u64; 2]>::open(&arg("name")).unwrap();
    // The signals start once the sleep slices have grown to their longest (64 ms) behind
    // the live holder: a waiter that checks liveness only when a slice runs out then
    // never checks again.
    let storm = SignalStorm::start(STORM_DELAY, Duration::from_millis(2));
    RawValue::<u32>::open(&arg("waiting")).unwrap().set(1);
    let g = expect_owner_died(&m);
    drop(storm);
    MutexGuard::mark_consistent(&g);
    report("seen", g[0]);
    report("alarms", SignalStorm::alarms());
}

/// Scenario 19: a locker whose futex waits are interrupted by a signal more often than its
/// sleep slice still notices a holder killed while it waits (within a generous bound: a
/// bound on "never notices", not a measure of speed).
#[test]
fn a_locker_interrupted_by_signals_still_notices_a_killed_holder() {
    let names = Names::new("signals");
    let name = names.name("pair");
    let m = Mutex::<[u64; 2]>::create(&name, [0, 0]).unwrap();
    let held = RawValue::<u32>::create(&names.name("held"), 0).unwrap();
    let waiting = RawValue::<u32>::create(&names.name("waiting"), 0).unwrap();
    let mut holder = spawn(
        "hold_until_killed",
        &[("name", name.clone()), ("held", names.name("held"))],
    );
    wait_until(PATIENCE, || held.get() == 1);
    let waiter = spawn(
        "lock_under_signals",
        &[("name", name.clone()), ("waiting", names.name("waiting"))],
    );
    wait_until(PATIENCE, || waiting.get() == 1);
    // Kill the holder once the storm has begun.
    std::thread::sleep(STORM_DELAY + Duration::from_millis(100));
    let killed = Instant::now();
    holder.kill().unwrap();
    let o = finish(holder);
    assert_eq!(o.signal, Some(libc::SIGKILL), "{o:?}");
    let o = finish_ok(waiter);
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "a locker under signals took {took:?} to notice the dead holder"
    );
    assert_eq!(
        o.get::<u64>("seen"),
        1,
        "the dead holder's write is visible"
    );
    assert!(o.get::<u32>("alarms") > 20, "not interrupted: {o:?}");
    drop((m, held, waiting));
    assert_eq!(names.leftovers(), Vec::<String>::new());
}
