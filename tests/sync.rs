//! Semaphore, BoundedSemaphore, Event, Condvar and Barrier across real processes.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{arg, arg_as, die_now, finish, finish_ok, report, spawn, Names};
use shmkit::{
    Barrier, BoundedSemaphore, Condvar, Error, Event, Mutex, RawArray, RawValue, ReentrantMutex,
    RwLock, Semaphore,
};

/// Long enough that only a bug reaches it; never a timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);
const ROUNDS: u64 = 10_000;

#[test]
fn __child() {
    common::child_main(&[
        ("sem_hammer", sem_hammer),
        ("bounded_over_release", bounded_over_release),
        ("event_waiter", event_waiter),
        ("cv_producer", cv_producer),
        ("cv_consumer", cv_consumer),
        ("cv_ticket_taker", cv_ticket_taker),
        ("barrier_party", barrier_party),
        ("barrier_open_and_die", barrier_open_and_die),
        ("barrier_waiter", barrier_waiter),
        ("pong_semaphore", pong_semaphore),
        ("pong_event", pong_event),
        ("pong_barrier", pong_barrier),
        ("pong_condvar", pong_condvar),
        ("turns_mutex", turns_mutex),
        ("turns_rwlock", turns_rwlock),
        ("turns_reentrant", turns_reentrant),
        ("kill_storm", kill_storm),
    ]);
}

// ---------------------------------------------------------------------------------------
// Semaphores

fn sem_hammer() {
    let sem = Semaphore::open(&arg("sem")).unwrap();
    let stats = RawArray::<u32>::open(&arg("stats")).unwrap();
    let (inside, max) = (&stats.atomics()[0], &stats.atomics()[1]);
    for _ in 0..200 {
        sem.acquire().unwrap();
        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
        max.fetch_max(now, Ordering::SeqCst);
        // Hold the permit a moment so that holders overlap.
        std::thread::sleep(Duration::from_micros(50));
        inside.fetch_sub(1, Ordering::SeqCst);
        sem.release().unwrap();
    }
}

#[test]
fn three_permits_eight_processes_never_more_than_three_holders() {
    let names = Names::new("sem_hammer");
    let sem = Semaphore::create(&names.name("sem"), 3).unwrap();
    let stats = RawArray::<u32>::create_zeroed(&names.name("stats"), 2).unwrap();
    let args = [("sem", names.name("sem")), ("stats", names.name("stats"))];
    let kids: Vec<_> = (0..8).map(|_| spawn("sem_hammer", &args)).collect();
    kids.into_iter().for_each(|k| drop(finish_ok(k)));
    assert_eq!(
        stats.get(1).unwrap(),
        3,
        "largest number of simultaneous holders"
    );
    assert_eq!(stats.get(0).unwrap(), 0);
    assert_eq!(sem.value(), 3, "every permit came back");
}

fn bounded_over_release() {
    let sem = BoundedSemaphore::open(&arg("sem")).unwrap();
    sem.acquire().unwrap();
    sem.release().unwrap();
    match sem.release() {
        Err(Error::Overflow { limit: 2 }) => report("over", "refused"),
        other => panic!("over-release gave {other:?}"),
    }
}

#[test]
fn bounded_semaphore_over_release_is_an_error() {
    let names = Names::new("bounded");
    let sem = BoundedSemaphore::create(&names.name("sem"), 2).unwrap();
    assert!(matches!(sem.release(), Err(Error::Overflow { limit: 2 })));
    let o = finish_ok(spawn("bounded_over_release", &[("sem", names.name("sem"))]));
    assert_eq!(o.get::<String>("over"), "refused");
    assert_eq!(sem.value(), 2);
    // A plain semaphore has no such bound.
    let plain = Semaphore::create(&names.name("plain"), 2).unwrap();
    plain.release_n(5).unwrap();
    assert_eq!(plain.value(), 7);
}

#[test]
fn try_and_timed_acquire_do_not_block() {
    let names = Names::new("sem_try");
    let sem = Semaphore::create(&names.name("sem"), 1).unwrap();
    assert!(sem.try_acquire().unwrap());
    assert!(!sem.try_acquire().unwrap());
    assert!(matches!(
        sem.acquire_timeout(Duration::from_millis(5)),
        Err(Error::Timeout)
    ));
    sem.release().unwrap();
    let g = sem.acquire_guard().unwrap();
    assert_eq!(sem.value(), 0);
    drop(g);
    assert_eq!(sem.value(), 1);
}

// ---------------------------------------------------------------------------------------
// Event

fn event_waiter() {
    let ev = Event::open(&arg("ev")).unwrap();
    let ready = RawValue::<u32>::open(&arg("ready")).unwrap();
    ready.atomic().fetch_add(1, Ordering::SeqCst);
    assert!(ev.wait_timeout(PATIENCE).unwrap(), "event never fired");
    report("woke", 1);
}

#[test]
fn one_set_wakes_six_waiting_processes() {
    let names = Names::new("event6");
    let ev = Event::create(&names.name("ev")).unwrap();
    let ready = RawValue::<u32>::create(&names.name("ready"), 0).unwrap();
    let args = [("ev", names.name("ev")), ("ready", names.name("ready"))];
    let kids: Vec<_> = (0..6).map(|_| spawn("event_waiter", &args)).collect();
    common::wait_until(PATIENCE, || ready.atomic().load(Ordering::SeqCst) == 6);
    ev.set();
    let woke: u32 = kids
        .into_iter()
        .map(|k| finish_ok(k).get::<u32>("woke"))
        .sum();
    assert_eq!(woke, 6);
}

#[test]
fn wait_timeout_on_an_unset_event_returns_false() {
    let names = Names::new("event_timeout");
    let ev = Event::create(&names.name("ev")).unwrap();
    assert!(!ev.wait_timeout(Duration::from_millis(20)).unwrap());
    assert!(!ev.is_set());
    ev.set();
    assert!(ev.wait_timeout(Duration::from_millis(20)).unwrap());
    ev.clear();
    assert!(!ev.is_set());
}

// ---------------------------------------------------------------------------------------
// Condvar

const QCAP: usize = 64;
const ITEMS: u64 = 100_000;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Queue {
    head: u64,
    tail: u64,
    buf: [u64; QCAP],
}

struct QueueObjects {
    q: Mutex<Queue>,
    not_empty: Condvar,
    not_full: Condvar,
}

fn open_queue() -> QueueObjects {
    QueueObjects {
        q: Mutex::open(&arg("q")).unwrap(),
        not_empty: Condvar::open(&arg("ne")).unwrap(),
        not_full: Condvar::open(&arg("nf")).unwrap(),
    }
}

fn cv_producer() {
    let o = open_queue();
    for i in 0..ITEMS {
        let mut g = o
            .not_full
            .wait_while(o.q.lock().unwrap(), |q| q.tail - q.head == QCAP as u64)
            .unwrap();
        let t = g.tail;
        g.buf[(t % QCAP as u64) as usize] = i;
        g.tail = t + 1;
        drop(g);
        o.not_empty.notify_one();
    }
}

fn cv_consumer() {
    let o = open_queue();
    let mut expected = 0;
    while expected < ITEMS {
        let mut g = o
            .not_empty
            .wait_while(o.q.lock().unwrap(), |q| q.tail == q.head)
            .unwrap();
        while g.head < g.tail {
            let h = g.head;
            assert_eq!(
                g.buf[(h % QCAP as u64) as usize],
                expected,
                "lost or reordered"
            );
            g.head = h + 1;
            expected += 1;
        }
        drop(g);
        o.not_full.notify_one();
    }
    report("received", expected);
}

#[test]
fn condvar_producer_consumer_moves_100k_items_without_loss() {
    let names = Names::new("cv_pc");
    let _q = Mutex::<Queue>::create(&names.name("q"), bytemuck::Zeroable::zeroed()).unwrap();
    let _ne = Condvar::create(&names.name("ne")).unwrap();
    let _nf = Condvar::create(&names.name("nf")).unwrap();
    let args = [
        ("q", names.name("q")),
        ("ne", names.name("ne")),
        ("nf", names.name("nf")),
    ];
    let consumer = spawn("cv_consumer", &args);
    let producer = spawn("cv_producer", &args);
    finish_ok(producer);
    assert_eq!(finish_ok(consumer).get::<u64>("received"), ITEMS);
}

fn cv_ticket_taker() {
    let m = Mutex::<[u32; 2]>::open(&arg("m")).unwrap();
    let cv = Condvar::open(&arg("cv")).unwrap();
    // [tickets available, tickets taken]
    let mut g = cv.wait_while(m.lock().unwrap(), |t| t[0] == 0).unwrap();
    g[0] -= 1;
    g[1] += 1;
}

#[test]
fn each_notify_one_lets_exactly_one_waiter_through() {
    let names = Names::new("cv_one");
    let m = Mutex::<[u32; 2]>::create(&names.name("m"), [0, 0]).unwrap();
    let cv = Condvar::create(&names.name("cv")).unwrap();
    let args = [("m", names.name("m")), ("cv", names.name("cv"))];
    let mut kids: Vec<_> = (0..3).map(|_| spawn("cv_ticket_taker", &args)).collect();
    for issued in 1..=3u32 {
        m.lock().unwrap()[0] += 1;
        cv.notify_one();
        // Exactly one more waiter gets through per ticket, and the others keep waiting.
        common::wait_until(PATIENCE, || m.lock().unwrap()[1] == issued);
        assert_eq!(*m.lock().unwrap(), [0, issued]);
        let mut finished = 0;
        for k in kids.iter_mut() {
            if k.try_wait().unwrap().is_some() {
                finished += 1;
            }
        }
        assert!(finished <= issued as usize);
    }
    kids.into_iter().for_each(|k| drop(finish_ok(k)));
    assert_eq!(*m.lock().unwrap(), [0, 3]);
}

#[test]
fn condvar_wait_timeout_times_out_and_relocks() {
    let names = Names::new("cv_timeout");
    let m = Mutex::<u32>::create(&names.name("m"), 5).unwrap();
    let cv = Condvar::create(&names.name("cv")).unwrap();
    let (g, t) = cv
        .wait_timeout(m.lock().unwrap(), Duration::from_millis(10))
        .unwrap();
    assert!(t.timed_out());
    assert_eq!(*g, 5);
    assert!(matches!(m.try_lock(), Err(shmkit::Error::WouldBlock)));
    drop(g);
    let (g, t) = cv
        .wait_timeout_while(m.lock().unwrap(), Duration::from_millis(10), |v| *v == 5)
        .unwrap();
    assert!(t.timed_out());
    drop(g);
}

/// A waiter whose timeout passes while another thread holds the mutex: `wait_timeout`
/// (like std's) returns only once it holds the mutex again, after the holder let go;
/// `wait_timeout_bounded` gives up at its deadline without the mutex, while the holder
/// still holds it.
#[test]
fn condvar_timeout_behind_a_held_mutex_relocks_or_gives_up_as_documented() {
    use std::sync::atomic::{AtomicBool, AtomicU32};
    let names = Names::new("cv_held");
    let m = Mutex::<u32>::create(&names.name("m"), 0).unwrap();
    let cv = Condvar::create(&names.name("cv")).unwrap();
    for bounded in [false, true] {
        // 1: the holder has the mutex; 2: it let go.
        let held = AtomicU32::new(0);
        let release = AtomicBool::new(false);
        std::thread::scope(|s| {
            let g = m.lock().unwrap();
            s.spawn(|| {
                // Gets the mutex once the waiter below releases it for its wait.
                let g = m.lock_timeout(PATIENCE).unwrap();
                held.store(1, Ordering::SeqCst);
                // Past the waiter's timeout: until told (bounded), or a while (not).
                let hold = if bounded {
                    PATIENCE
                } else {
                    Duration::from_millis(400)
                };
                let _ = common::try_wait_until(hold, || release.load(Ordering::SeqCst));
                held.store(2, Ordering::SeqCst);
                drop(g);
            });
            let timeout = Duration::from_millis(100);
            if bounded {
                match cv.wait_timeout_bounded(g, timeout) {
                    Err(shmkit::Error::Timeout) => {}
                    Ok(_) => panic!("re-locked although the holder still held the mutex"),
                    Err(e) => panic!("{e}"),
                }
                assert_eq!(held.load(Ordering::SeqCst), 1, "gave up while it was held");
                release.store(true, Ordering::SeqCst);
            } else {
                let (g, t) = cv.wait_timeout(g, timeout).unwrap();
                assert!(t.timed_out());
                assert_eq!(held.load(Ordering::SeqCst), 2, "returned holding the mutex");
                drop(g);
            }
        });
        // Nothing is left locked.
        drop(m.try_lock().unwrap());
    }
}

// ---------------------------------------------------------------------------------------
// Barrier

const GENERATIONS: usize = 1000;

fn barrier_party() {
    let b = Barrier::open(&arg("b")).unwrap();
    let leaders = RawArray::<u32>::open(&arg("leaders")).unwrap();
    let progress = RawArray::<u32>::open(&arg("progress")).unwrap();
    let me: usize = arg_as("me");
    for g in 0..GENERATIONS {
        progress.atomics()[me].store(g as u32, Ordering::SeqCst);
        if b.wait().unwrap().is_leader() {
            leaders.atomics()[g].fetch_add(1, Ordering::SeqCst);
        }
        // Nobody leaves generation g before everybody reached it.
        for p in progress.atomics() {
            assert!(p.load(Ordering::SeqCst) >= g as u32, "a party ran ahead");
        }
    }
}

#[test]
fn four_processes_thousand_generations_one_leader_each() {
    let names = Names::new("barrier4");
    let _b = Barrier::create(&names.name("b"), 4).unwrap();
    let leaders = RawArray::<u32>::create_zeroed(&names.name("leaders"), GENERATIONS).unwrap();
    let _p = RawArray::<u32>::create_zeroed(&names.name("progress"), 4).unwrap();
    let kids: Vec<_> = (0..4)
        .map(|i| {
            spawn(
                "barrier_party",
                &[
                    ("b", names.name("b")),
                    ("leaders", names.name("leaders")),
                    ("progress", names.name("progress")),
                    ("me", i.to_string()),
                ],
            )
        })
        .collect();
    kids.into_iter().for_each(|k| drop(finish_ok(k)));
    let mut counts = vec![0u32; GENERATIONS];
    leaders.read(0, &mut counts).unwrap();
    assert!(
        counts.iter().all(|&c| c == 1),
        "leaders per generation: {counts:?}"
    );
}

fn barrier_open_and_die() {
    let _b = Barrier::open(&arg("b")).unwrap();
    die_now();
}

fn barrier_waiter() {
    let b = Barrier::open(&arg("b")).unwrap();
    match b.wait_timeout(PATIENCE) {
        Err(Error::BrokenBarrier) => report("result", "broken"),
        other => panic!("expected BrokenBarrier, got {other:?}"),
    }
}

#[test]
fn a_killed_party_breaks_the_barrier_instead_of_hanging_the_rest() {
    let names = Names::new("barrier_kill");
    let b = Barrier::create(&names.name("b"), 3).unwrap();
    let args = [("b", names.name("b"))];
    let waiters: Vec<_> = (0..2).map(|_| spawn("barrier_waiter", &args)).collect();
    let o = finish(spawn("barrier_open_and_die", &args));
    assert_eq!(o.signal, Some(libc::SIGKILL));
    for w in waiters {
        assert_eq!(finish_ok(w).get::<String>("result"), "broken");
    }
    assert!(b.is_broken());
    assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
    b.reset();
    assert!(!b.is_broken());
}

#[test]
fn a_timed_out_party_breaks_the_barrier_and_reset_repairs_it() {
    let names = Names::new("barrier_timeout");
    let b = Barrier::create(&names.name("b"), 2).unwrap();
    assert!(matches!(
        b.wait_timeout(Duration::from_millis(10)),
        Err(Error::Timeout)
    ));
    assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
    b.reset();
    let single = Barrier::create(&names.name("one"), 1).unwrap();
    assert!(single.wait().unwrap().is_leader());
}

// ---------------------------------------------------------------------------------------
// No lost wake-up: 10,000 round trips with the waker in another process, each side
// sleeping whenever the other is slow.

fn pong_semaphore() {
    let ping = Semaphore::open(&arg("ping")).unwrap();
    let pong = Semaphore::open(&arg("pong")).unwrap();
    for _ in 0..ROUNDS {
        ping.acquire_timeout(PATIENCE).unwrap();
        pong.release().unwrap();
    }
}

fn pong_event() {
    let ping = Event::open(&arg("ping")).unwrap();
    let pong = Event::open(&arg("pong")).unwrap();
    for _ in 0..ROUNDS {
        assert!(ping.wait_timeout(PATIENCE).unwrap(), "lost wake-up");
        ping.clear();
        pong.set();
    }
}

fn pong_barrier() {
    let b = Barrier::open(&arg("b")).unwrap();
    for _ in 0..ROUNDS {
        b.wait_timeout(PATIENCE).unwrap();
    }
}

fn pong_condvar() {
    let m = Mutex::<u64>::open(&arg("m")).unwrap();
    let cv = Condvar::open(&arg("cv")).unwrap();
    for i in 0..ROUNDS {
        let (mut g, t) = cv
            .wait_timeout_while(m.lock().unwrap(), PATIENCE, |v| *v != 2 * i + 1)
            .unwrap();
        assert!(!t.timed_out(), "lost wake-up");
        *g += 1;
        drop(g);
        cv.notify_all();
    }
}

#[test]
fn no_lost_wake_up_in_10k_semaphore_round_trips() {
    let names = Names::new("pong_sem");
    let ping = Semaphore::create(&names.name("ping"), 0).unwrap();
    let pong = Semaphore::create(&names.name("pong"), 0).unwrap();
    let kid = spawn(
        "pong_semaphore",
        &[("ping", names.name("ping")), ("pong", names.name("pong"))],
    );
    for _ in 0..ROUNDS {
        ping.release().unwrap();
        pong.acquire_timeout(PATIENCE).unwrap();
    }
    finish_ok(kid);
}

#[test]
fn no_lost_wake_up_in_10k_event_round_trips() {
    let names = Names::new("pong_ev");
    let ping = Event::create(&names.name("ping")).unwrap();
    let pong = Event::create(&names.name("pong")).unwrap();
    let kid = spawn(
        "pong_event",
        &[("ping", names.name("ping")), ("pong", names.name("pong"))],
    );
    for _ in 0..ROUNDS {
        ping.set();
        assert!(pong.wait_timeout(PATIENCE).unwrap(), "lost wake-up");
        pong.clear();
    }
    finish_ok(kid);
}

#[test]
fn no_lost_wake_up_in_10k_barrier_generations() {
    let names = Names::new("pong_bar");
    let b = Barrier::create(&names.name("b"), 2).unwrap();
    let kid = spawn("pong_barrier", &[("b", names.name("b"))]);
    for _ in 0..ROUNDS {
        b.wait_timeout(PATIENCE).unwrap();
    }
    finish_ok(kid);
}

#[test]
fn no_lost_wake_up_in_10k_condvar_round_trips() {
    let names = Names::new("pong_cv");
    let m = Mutex::<u64>::create(&names.name("m"), 0).unwrap();
    let cv = Condvar::create(&names.name("cv")).unwrap();
    let kid = spawn(
        "pong_condvar",
        &[("m", names.name("m")), ("cv", names.name("cv"))],
    );
    for i in 0..ROUNDS {
        let (mut g, t) = cv
            .wait_timeout_while(m.lock().unwrap(), PATIENCE, |v| *v != 2 * i)
            .unwrap();
        assert!(!t.timed_out(), "lost wake-up");
        *g += 1;
        drop(g);
        cv.notify_all();
    }
    finish_ok(kid);
}

// Locks handed back and forth 10,000 times between two processes: each side takes the
// lock, and gives it up at once unless it is its turn, so the lock is contended all the
// time and every release may have to wake a sleeper in the other process.

fn take_turns(me: u64, mut turn: impl FnMut(&mut dyn FnMut(&mut u64) -> bool)) {
    for i in 0..ROUNDS {
        let want = 2 * i + me;
        let mut done = false;
        while !done {
            turn(&mut |v: &mut u64| {
                if *v == want {
                    *v += 1;
                    done = true;
                }
                assert!(*v <= want + 1, "turn {want} was taken twice");
                done
            });
        }
    }
}

fn turns_mutex() {
    let m = Mutex::<u64>::open(&arg("lock")).unwrap();
    take_turns(arg_as("me"), |f| {
        f(&mut m.lock_timeout(PATIENCE).unwrap());
    });
}

fn turns_rwlock() {
    let l = RwLock::<u64>::open(&arg("lock")).unwrap();
    take_turns(arg_as("me"), |f| {
        // Look under a read lock first, so readers and writers both contend.
        let ready = *l.read_timeout(PATIENCE).unwrap() % 2 == arg_as::<u64>("me");
        if ready {
            f(&mut l.write_timeout(PATIENCE).unwrap());
        }
    });
}

fn turns_reentrant() {
    let m = ReentrantMutex::open(&arg("lock")).unwrap();
    let v = RawValue::<u64>::open(&arg("value")).unwrap();
    take_turns(arg_as("me"), |f| {
        let _outer = m.lock_timeout(PATIENCE).unwrap();
        let _inner = m.lock_timeout(PATIENCE).unwrap(); // re-entered
        let mut x = v.atomic().load(Ordering::Relaxed);
        f(&mut x);
        v.atomic().store(x, Ordering::Relaxed);
    });
}

fn two_take_turns(role: &str, args: &[(&str, String)]) {
    let with = |me: &str| {
        let mut a = args.to_vec();
        a.push(("me", me.to_owned()));
        spawn(role, &a)
    };
    let (a, b) = (with("0"), with("1"));
    finish_ok(a);
    finish_ok(b);
}

#[test]
fn a_mutex_handed_back_and_forth_10k_times_never_loses_a_wake_up() {
    let names = Names::new("turns_mutex");
    let m = Mutex::<u64>::create(&names.name("lock"), 0).unwrap();
    two_take_turns("turns_mutex", &[("lock", names.name("lock"))]);
    assert_eq!(*m.lock().unwrap(), 2 * ROUNDS);
}

#[test]
fn an_rwlock_handed_back_and_forth_10k_times_never_loses_a_wake_up() {
    let names = Names::new("turns_rw");
    let l = RwLock::<u64>::create(&names.name("lock"), 0).unwrap();
    two_take_turns("turns_rwlock", &[("lock", names.name("lock"))]);
    assert_eq!(*l.read().unwrap(), 2 * ROUNDS);
}

#[test]
fn a_reentrant_mutex_handed_back_and_forth_10k_times_never_loses_a_wake_up() {
    let names = Names::new("turns_re");
    let _m = ReentrantMutex::create(&names.name("lock")).unwrap();
    let v = RawValue::<u64>::create(&names.name("value"), 0).unwrap();
    two_take_turns(
        "turns_reentrant",
        &[("lock", names.name("lock")), ("value", names.name("value"))],
    );
    assert_eq!(v.atomic().load(Ordering::Relaxed), 2 * ROUNDS);
}

// ---------------------------------------------------------------------------------------
// Waiters and notifiers killed mid-call, 1,000 times: the survivors never block.

fn fork_child(f: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the child only uses shared memory, futexes and atomics (glibc's malloc is
    // fork-safe for the rare allocation), then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        f();
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    pid
}

fn kill_and_reap(pid: libc::pid_t, delay_us: u64) {
    std::thread::sleep(Duration::from_micros(delay_us));
    // SAFETY: `pid` is our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

/// Runs in its own process (forking inside the harness's process is avoided).
fn kill_storm() {
    let ev = Event::anonymous().unwrap();
    let sem = Semaphore::anonymous(0).unwrap();
    let m = Mutex::<u64>::anonymous(0).unwrap();
    let cv = Condvar::anonymous().unwrap();
    let bar = Barrier::anonymous(2).unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..1000u64 {
        let delay = rnd() % 300;
        let pid = match i % 6 {
            // Waiters killed while waiting (or about to).
            0 => fork_child(|| drop(ev.wait_timeout(PATIENCE))),
            1 => fork_child(|| drop(sem.acquire_timeout(PATIENCE))),
            2 => fork_child(|| {
                if let Ok(g) = m.lock() {
                    drop(cv.wait_timeout(g, PATIENCE));
                }
            }),
            // Notifiers killed mid-notification.
            3 => fork_child(|| loop {
                ev.set();
                ev.clear();
            }),
            4 => fork_child(|| loop {
                cv.notify_one();
                cv.notify_all();
            }),
            _ => fork_child(|| loop {
                sem.release().unwrap();
                let _ = sem.try_acquire();
            }),
        };
        kill_and_reap(pid, delay);
        // A waiter killed inside the condvar wait may have died holding the mutex after
        // relocking it: recover it like any dead owner.
        match m.lock_recover_timeout(PATIENCE) {
            Ok(_) => {}
            Err(shmkit::LockError::OwnerDied(g)) => shmkit::MutexGuard::mark_consistent(&g),
            Err(shmkit::LockError::Error(e)) => panic!("mutex wedged: {e}"),
        }
    }
    // Survivors: each primitive still wakes its waiter.
    ev.clear();
    let waiter = fork_child(|| {
        if !ev.wait_timeout(PATIENCE).unwrap() {
            // SAFETY: `_exit` in the forked child.
            unsafe { libc::_exit(3) };
        }
    });
    std::thread::sleep(Duration::from_millis(5));
    ev.set();
    assert_eq!(reap(waiter), Some(0), "event waiter after the storm");

    while sem.try_acquire().unwrap() {}
    let waiter = fork_child(|| {
        if sem.acquire_timeout(PATIENCE).is_err() {
            // SAFETY: `_exit` in the forked child.
            unsafe { libc::_exit(3) };
        }
    });
    std::thread::sleep(Duration::from_millis(5));
    sem.release().unwrap();
    assert_eq!(reap(waiter), Some(0), "semaphore waiter after the storm");

    let waiter = fork_child(|| {
        let ok = bar.wait_timeout(PATIENCE).is_ok();
        // SAFETY: `_exit` in the forked child.
        unsafe { libc::_exit(if ok { 0 } else { 3 }) };
    });
    bar.wait_timeout(PATIENCE).unwrap();
    assert_eq!(reap(waiter), Some(0), "barrier party after the storm");
    report("done", 1);
}

fn reap(pid: libc::pid_t) -> Option<i32> {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))
}

#[test]
fn waiters_and_notifiers_killed_mid_call_never_wedge_the_survivors() {
    let o = finish_ok(spawn("kill_storm", &[]));
    assert_eq!(o.get::<u32>("done"), 1);
}
