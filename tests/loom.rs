//! Loom models of the synchronisation algorithms and their sleep/wake handshakes.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --no-default-features --test loom`
//! (`.ci/run` does; without default features because the CLI's tokio has `cfg(loom)` paths).
//! The futex is modelled exactly (compare-and-sleep under one lock, no timeouts), so a
//! lost wake-up shows up as a deadlock that loom reports; every interleaving of the
//! atomics within loom's preemption bound is explored.
//!
//! Each model has at least two waiters: checked by mutation (deleting a wake), a model
//! with a single waiter can miss the lost wake-up, because a spinning waiter's yield hands
//! the schedule back to the notifier; with two waiters loom finds it.

#![cfg(loom)]

use loom::sync::{Arc, Mutex};
use loom::thread;
use shmkit::__loom::{BarrierState, BellModel, CondState, EventState, HandshakeModel, SemState};

const NO_BOUND: u32 = (1 << 31) - 1;

#[test]
fn semaphore_release_wakes_a_sleeping_acquirer() {
    loom::model(|| {
        let s = Arc::new(SemState::new(0));
        let s2 = s.clone();
        let t = thread::spawn(move || s2.acquire_blocking().unwrap());
        s.release(1, NO_BOUND).unwrap();
        t.join().unwrap();
        assert_eq!(s.value(), 0);
    });
}

#[test]
fn semaphore_two_acquirers_two_releases_none_lost() {
    loom::model(|| {
        let s = Arc::new(SemState::new(0));
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || s.acquire_blocking().unwrap())
            })
            .collect();
        s.release(1, NO_BOUND).unwrap();
        s.release(1, NO_BOUND).unwrap();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(s.value(), 0);
    });
}

#[test]
fn bounded_semaphore_never_exceeds_its_bound() {
    loom::model(|| {
        let s = Arc::new(SemState::new(1));
        let s2 = s.clone();
        let t = thread::spawn(move || s2.release(1, 1).is_ok());
        let mine = s.release(1, 1).is_ok();
        let theirs = t.join().unwrap();
        assert!(!mine && !theirs);
        assert_eq!(s.value(), 1);
    });
}

#[test]
fn event_set_wakes_every_waiter() {
    loom::model(|| {
        let e = Arc::new(EventState::new());
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let e = e.clone();
                thread::spawn(move || e.wait_blocking().unwrap())
            })
            .collect();
        e.set();
        for t in ts {
            t.join().unwrap();
        }
        assert!(e.is_set());
    });
}

/// Whenever the waiter starts, a set-clear-set sequence releases it: either it sees a
/// set, or the generation moved while it waited. (A waiter that starts after a final
/// `clear` blocks, as in Python, so the sequence ends set.)
#[test]
fn set_clear_set_always_releases_the_waiter() {
    loom::model(|| {
        let e = Arc::new(EventState::new());
        let e2 = e.clone();
        let t = thread::spawn(move || e2.wait_blocking().unwrap());
        e.set();
        e.clear();
        e.set();
        t.join().unwrap();
    });
}

/// The condvar handshake exactly as `Condvar::wait` runs it: announce under the mutex,
/// release it, sleep, relock; the notifier changes the condition under the mutex.
#[test]
fn condvar_notify_after_a_change_under_the_mutex_is_never_lost() {
    for all in [false, true] {
        loom::model(move || {
            let m = Arc::new(Mutex::new(false));
            let cv = Arc::new(CondState::new());
            let ts: Vec<_> = (0..2)
                .map(|_| {
                    let (m, cv) = (m.clone(), cv.clone());
                    thread::spawn(move || {
                        let mut g = m.lock().unwrap();
                        while !*g {
                            let expected = cv.prepare_wait();
                            drop(g);
                            cv.wait_changed_blocking(expected).unwrap();
                            g = m.lock().unwrap();
                        }
                    })
                })
                .collect();
            *m.lock().unwrap() = true;
            cv.notify(all);
            if !all {
                cv.notify(false);
            }
            for t in ts {
                t.join().unwrap();
            }
        });
    }
}

#[test]
fn barrier_has_exactly_one_leader_per_generation() {
    loom::model(|| {
        let b = Arc::new(BarrierState::new());
        let b2 = b.clone();
        let t = thread::spawn(move || {
            let first = b2.wait_blocking(2).unwrap();
            let second = b2.wait_blocking(2).unwrap();
            (first, second)
        });
        let first = b.wait_blocking(2).unwrap();
        let second = b.wait_blocking(2).unwrap();
        let (f, s) = t.join().unwrap();
        assert!(first ^ f, "one leader in generation 1");
        assert!(second ^ s, "one leader in generation 2");
    });
}

/// The channels' eventcount: receivers that announce themselves and sleep are always
/// woken by the sender's publish-then-notify, in every order of the race.
#[test]
fn an_async_waiter_either_sees_the_publication_or_its_doorbell_rings() {
    loom::model(|| {
        let m = Arc::new(BellModel::new());
        let m2 = m.clone();
        let waiter = thread::spawn(move || m2.arm_and_check(7));
        m.publish();
        let saw = waiter.join().unwrap();
        assert!(saw || m.rung() == 7, "a lost wake-up: not seen, not rung");
    });
}

/// The same handshake on an event's word (`Event::wait_async`): the waiter registers,
/// announces with an RMW and re-checks; `set` rings what its RMW saw announced.
#[test]
fn an_async_event_waiter_either_sees_the_set_or_its_doorbell_rings() {
    loom::model(|| {
        let e = Arc::new(EventState::new());
        let rung = Arc::new(loom::sync::atomic::AtomicU64::new(0));
        let start = e.generation();
        let e2 = e.clone();
        let waiter = thread::spawn(move || e2.arm_and_check(7, start));
        // Relaxed: read after the threads joined.
        e.set_recording(|id| rung.store(id, std::sync::atomic::Ordering::Relaxed));
        let saw = waiter.join().unwrap();
        let rung = rung.load(std::sync::atomic::Ordering::Relaxed);
        assert!(saw || rung == 7, "a lost wake-up: not seen, not rung");
    });
}

/// And on a semaphore's word (`Semaphore::acquire_async`): the permit is taken by the
/// waiter's last try, or the release rings its doorbell.
#[test]
fn an_async_semaphore_waiter_either_takes_the_permit_or_its_doorbell_rings() {
    loom::model(|| {
        let s = Arc::new(SemState::new(0));
        let rung = Arc::new(loom::sync::atomic::AtomicU64::new(0));
        let s2 = s.clone();
        let waiter = thread::spawn(move || s2.arm_and_try(7));
        // Relaxed: read after the threads joined.
        s.release_recording(1, NO_BOUND, |id| {
            rung.store(id, std::sync::atomic::Ordering::Relaxed)
        })
        .unwrap();
        let took = waiter.join().unwrap();
        let rung = rung.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            took || rung == 7,
            "a lost wake-up: no permit taken, not rung"
        );
    });
}

#[test]
fn channel_sleep_wake_handshake_never_loses_a_wake_up() {
    loom::model(|| {
        let h = Arc::new(HandshakeModel::new());
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let h = h.clone();
                thread::spawn(move || h.wait_for(1).unwrap())
            })
            .collect();
        h.publish(1);
        for t in ts {
            t.join().unwrap();
        }
    });
}

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}.{}",
        shmkit::__private::test_name(&format!("loom.{tag}")),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The real spsc ring (stamps, positions, eventcounts, endpoint slots are loom atomics in a
/// real segment; the frame ring cannot be modelled this way, as its stamps live in plain
/// ring bytes): three messages through two slots, so that it wraps and both sides wait.
#[test]
fn spsc_ring_delivers_in_order_through_wrap_and_waits() {
    loom::model(|| {
        let name = unique("spsc");
        let mut rx = shmkit::spsc::Receiver::<u64>::create(&name, 2).unwrap();
        let mut tx = shmkit::spsc::Sender::<u64>::open(&name).unwrap();
        let t = thread::spawn(move || {
            for i in 0..3 {
                tx.send(i).unwrap();
            }
        });
        for i in 0..3 {
            assert_eq!(rx.recv().unwrap(), i);
        }
        t.join().unwrap();
    });
}

/// The chunked paths of the real spsc ring: the sender lends chunks by its cached copy of
/// the receiver's `head` (reloaded only when it says full) and stamps each slot; the
/// receiver reads chunks by their stamps and releases each with one `head` store. Three
/// messages through two slots, in chunks of up to two, so that it wraps and both sides
/// wait.
#[test]
fn spsc_chunks_deliver_in_order_through_wrap_and_waits() {
    loom::model(|| {
        let name = unique("spsc-chunks");
        let mut rx = shmkit::spsc::Receiver::<u64>::create(&name, 2).unwrap();
        let mut tx = shmkit::spsc::Sender::<u64>::open(&name).unwrap();
        let t = thread::spawn(move || {
            let mut next = 0;
            while next < 3 {
                let mut c = tx.write_chunk(2).unwrap();
                let n = c.fill_from(next..3);
                c.commit(n);
                next += n as u64;
            }
        });
        let mut got = 0;
        while got < 3 {
            let c = rx.read_chunk(2).unwrap();
            for v in c.iter() {
                assert_eq!(*v, got);
                got += 1;
            }
            c.commit_all();
        }
        t.join().unwrap();
    });
}

/// The real mpmc queue: two producers, one consumer, capacity 1; every message exactly
/// once. (The mpmc header, with its two registration tables, needs larger coroutine
/// stacks than loom's default.) The full mpmc model takes minutes at three preemptions;
/// two keep it within CI's budget and still cover a producer preempted between its claim
/// and its publish while the other producer and the consumer run.
#[test]
fn mpmc_queue_delivers_each_message_once() {
    fn big<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> thread::JoinHandle<T> {
        thread::Builder::new().stack_size(8 << 20).spawn(f).unwrap()
    }
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(model.preemption_bound.map_or(2, |b| b.min(2)));
    model.check(|| {
        big(|| {
            let name = unique("mpmc");
            let mut rx = shmkit::mpmc::Receiver::<u64>::create(&name, 1).unwrap();
            let ts: Vec<_> = (0..2u64)
                .map(|p| {
                    let mut tx = shmkit::mpmc::Sender::<u64>::open(&name).unwrap();
                    big(move || tx.send(p).unwrap())
                })
                .collect();
            let mut got = [rx.recv().unwrap(), rx.recv().unwrap()];
            got.sort();
            assert_eq!(got, [0, 1]);
            for t in ts {
                t.join().unwrap();
            }
        })
        .join()
        .unwrap();
    });
}

/// The real frame ring (its record header words stand in a table beside the ring under
/// loom, see `frames.rs`): three records through a 64-byte ring, so that both wrap points
/// need a padding record and the sender waits for space twice; every record arrives whole
/// and in order.
#[test]
fn frame_ring_delivers_whole_records_through_padding_and_waits() {
    loom::model(|| {
        let name = unique("frames");
        let mut rx = shmkit::frames::Receiver::create(&name, 64).unwrap();
        let mut tx = shmkit::frames::Sender::open(&name).unwrap();
        let msgs: [&[u8]; 3] = [&[1; 8], &[2; 24], &[3; 8]];
        let t = thread::spawn(move || {
            for m in msgs {
                tx.send(m).unwrap();
            }
        });
        for m in msgs {
            assert_eq!(&rx.recv().unwrap(), m);
        }
        t.join().unwrap();
    });
}

// ---------------------------------------------------------------------------------------
// Killed processes. Each model below runs once for every step at which its victim can be
// killed: `die_after(k, ..)` kills the victim thread just before its k-th step (atomic
// operation or futex call), leaving shared memory exactly as `kill -9` would, and the
// kernel's part follows (its liveness token dies, sleepers' slices run out). The driver
// raises k until no execution kills the victim any more, so every step of attaching,
// sending or receiving, waiting and closing is covered, in every interleaving within the
// preemption bound. The survivors must neither hang (loom reports a deadlock) nor see
// anything but an in-order, duplicate-free stream, and a successor must attach in the dead
// endpoint's place and carry on.

use shmkit::__loom::{die_after, quiet_kills};
use shmkit::{CreationMode, Error, Options};
use std::sync::atomic::{AtomicBool as StdBool, AtomicU64 as StdU64, Ordering::Relaxed};

/// Messages the victim sends or receives.
const MSGS: u64 = 3;
/// What the successor sender sends.
const LAST: u64 = 100;

/// One channel kind, seen through `u64` messages.
trait Chan: 'static {
    type Tx: Send + 'static;
    type Rx: Send + 'static;
    /// The capacity the models use (slots, or bytes of ring).
    const CAP: usize;
    /// A message held by a killed receiver is lost (mpmc frees its slot) rather than
    /// delivered again to the next receiver (spsc, frames resume at the unreleased one).
    const AT_MOST_ONCE: bool;
    fn tx_create(name: &str) -> Self::Tx;
    fn rx_create(name: &str) -> Self::Rx;
    fn tx_open(name: &str) -> Self::Tx;
    fn rx_open(name: &str) -> Self::Rx;
    fn send(tx: &mut Self::Tx, v: u64) -> Result<(), Error>;
    /// Receives a message and hands it to `seen` before releasing it.
    fn recv_with(rx: &mut Self::Rx, seen: impl FnOnce(u64)) -> Result<(), Error>;
    fn recv(rx: &mut Self::Rx) -> Result<u64, Error> {
        let mut v = None;
        Self::recv_with(rx, |x| v = Some(x))?;
        Ok(v.expect("seen"))
    }
}

/// A [`Chan`]'s constructors: every channel type here has `with_options` (created kept,
/// see [`kept`]) and `open`.
macro_rules! chan_constructors {
    () => {
        fn tx_create(name: &str) -> Self::Tx {
            Self::Tx::with_options(name, CreationMode::Create, Self::CAP, &kept()).unwrap()
        }
        fn rx_create(name: &str) -> Self::Rx {
            Self::Rx::with_options(name, CreationMode::Create, Self::CAP, &kept()).unwrap()
        }
        fn tx_open(name: &str) -> Self::Tx {
            Self::Tx::open(name).unwrap()
        }
        fn rx_open(name: &str) -> Self::Rx {
            Self::Rx::open(name).unwrap()
        }
    };
}

/// A typed ring (spsc, mpmc) of `u64`, as a [`Chan`].
macro_rules! typed_chan {
    ($kind:ident, $module:ident, $cap:expr, $at_most_once:expr) => {
        struct $kind;
        impl Chan for $kind {
            type Tx = shmkit::$module::Sender<u64>;
            type Rx = shmkit::$module::Receiver<u64>;
            const CAP: usize = $cap;
            const AT_MOST_ONCE: bool = $at_most_once;
            chan_constructors!();
            fn send(tx: &mut Self::Tx, v: u64) -> Result<(), Error> {
                tx.send(v).map_err(Error::from)
            }
            fn recv_with(rx: &mut Self::Rx, seen: impl FnOnce(u64)) -> Result<(), Error> {
                let g = rx.recv_ref()?;
                seen(*g);
                drop(g);
                Ok(())
            }
        }
    };
}

typed_chan!(Spsc, spsc, 2, false);
typed_chan!(Mpmc, mpmc, 1, true);

struct Frames;
impl Chan for Frames {
    type Tx = shmkit::frames::Sender;
    type Rx = shmkit::frames::Receiver;
    /// Two 8-byte records fit (each with its header), so the ring wraps and fills.
    const CAP: usize = 64;
    const AT_MOST_ONCE: bool = false;
    chan_constructors!();
    fn send(tx: &mut Self::Tx, v: u64) -> Result<(), Error> {
        tx.send(&v.to_le_bytes())
    }
    fn recv_with(rx: &mut Self::Rx, seen: impl FnOnce(u64)) -> Result<(), Error> {
        let f = rx.recv_ref()?;
        let bytes: [u8; 8] = (&*f)
            .try_into()
            .unwrap_or_else(|_| panic!("a record of {} bytes", f.len()));
        seen(u64::from_le_bytes(bytes));
        drop(f);
        Ok(())
    }
}

/// The serde queue (`shmkit::Queue<Vec<u8>>`) with items of two slots each (120 bytes of
/// payload encode to 121), in a queue of 4 slots: claims of several slots, a dead
/// producer's continuation stepped over after its skipped first slot, a dead consumer's
/// two slots freed by a blocked producer.
struct SerdeQueue;
impl SerdeQueue {
    fn item(v: u64) -> Vec<u8> {
        let mut b = vec![0u8; 120];
        b[..8].copy_from_slice(&v.to_le_bytes());
        b[112..].copy_from_slice(&v.to_le_bytes());
        b
    }
}
impl Chan for SerdeQueue {
    type Tx = shmkit::Queue<Vec<u8>>;
    type Rx = shmkit::Queue<Vec<u8>>;
    const CAP: usize = 4;
    /// An item taken is copied out after it is released: a consumer killed in between
    /// loses it (it never sees it), as mpmc's does.
    const AT_MOST_ONCE: bool = true;
    chan_constructors!();
    fn send(tx: &mut Self::Tx, v: u64) -> Result<(), Error> {
        tx.put(&Self::item(v))
    }
    fn recv_with(rx: &mut Self::Rx, seen: impl FnOnce(u64)) -> Result<(), Error> {
        let b = rx.get()?;
        let v = u64::from_le_bytes(b[..8].try_into().unwrap());
        assert_eq!(b, Self::item(v), "a torn item");
        seen(v);
        Ok(())
    }
}

/// The models' channels outlive their creators (a successor may attach after the creator
/// closed); [`Name`] unlinks them.
fn kept() -> Options {
    Options::new().keep(true)
}

/// A channel name, unlinked when dropped (also when a model fails).
struct Name(String);

impl Drop for Name {
    fn drop(&mut self) {
        let _ = shmkit::unlink(&self.0);
    }
}

/// Receives until `stop` arrives or the channel is disconnected.
fn drain<C: Chan>(rx: &mut C::Rx, got: &mut Vec<u64>, stop: Option<u64>) {
    loop {
        match C::recv(rx) {
            Ok(v) => {
                got.push(v);
                if Some(v) == stop {
                    return;
                }
            }
            Err(Error::Disconnected) => return,
            Err(e) => panic!("receiver: {e}"),
        }
    }
}

fn big<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> thread::JoinHandle<T> {
    thread::Builder::new().stack_size(8 << 20).spawn(f).unwrap()
}

/// Runs `model(k)` for k = 0, 1, … until no execution of it kills its victim (the model
/// returns whether it did). Returns the number of kill points covered.
///
/// One preemption by default, to keep CI within its budget (every execution maps real
/// segments); `SHMKIT_LOOM_KILL_PREEMPTIONS=2` explores more (about twenty minutes for
/// all seven models on one thread). `SHMKIT_LOOM_VERBOSE=1` prints each kill point.
fn at_every_kill_point(model: impl Fn(u32) -> bool + Clone + Send + Sync + 'static) -> u32 {
    quiet_kills();
    let preemptions = std::env::var("SHMKIT_LOOM_KILL_PREEMPTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    for k in 0..10_000 {
        if std::env::var_os("SHMKIT_LOOM_VERBOSE").is_some() {
            eprintln!("kill point {k}");
        }
        let killed = std::sync::Arc::new(StdBool::new(false));
        let (m, any) = (model.clone(), killed.clone());
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(
            b.preemption_bound
                .map_or(preemptions, |p| p.min(preemptions)),
        );
        // An mpmc wait scans 64 registrations before it sleeps: many loads, no spinning.
        b.max_branches = b.max_branches.max(100_000);
        // The mpmc header needs larger coroutine stacks than loom's default.
        b.check(move || {
            let m = m.clone();
            if big(move || m(k)).join().unwrap() {
                any.store(true, Relaxed);
            }
        });
        if !killed.load(Relaxed) {
            eprintln!("{k} kill points, each in every interleaving within the bound");
            return k;
        }
    }
    panic!("the victim is still killed after 10,000 steps: it never ends");
}

/// The sender is killed at step `k` of attaching, sending `MSGS` messages and closing,
/// while the receiver drains; then a successor sender attaches and sends `LAST`. The
/// receiver gets the killed sender's messages in order (every one whose `send` returned,
/// plus perhaps the one published just before the kill), then `LAST`; it never hangs.
/// (Every endpoint stays in the thread that made it: a thread is a process here.)
fn sender_killed<C: Chan>(k: u32) -> bool {
    let name = unique("kill-tx");
    let _unlink = Name(name.clone());
    let mut rx = C::rx_create(&name);
    let sent = std::sync::Arc::new(StdU64::new(0));
    let victim = {
        let (name, sent) = (name.clone(), sent.clone());
        big(move || {
            die_after(k, || {
                let mut tx = C::tx_open(&name);
                for i in 0..MSGS {
                    C::send(&mut tx, i).unwrap();
                    sent.store(i + 1, Relaxed);
                }
                drop(tx);
            })
            .is_none()
        })
    };
    let successor = big(move || {
        let killed = victim.join().unwrap();
        let mut tx = C::tx_open(&name);
        C::send(&mut tx, LAST).unwrap();
        killed
    });
    let mut got = Vec::new();
    drain::<C>(&mut rx, &mut got, Some(LAST));
    let killed = successor.join().unwrap();
    if got.last() != Some(&LAST) {
        drain::<C>(&mut rx, &mut got, None);
    }
    assert_eq!(got.pop(), Some(LAST), "k={k}: {got:?}");
    let n = got.len() as u64;
    assert!(
        got.iter().copied().eq(0..n),
        "k={k}: in order, no gap: {got:?}"
    );
    let sent = sent.load(Relaxed);
    assert!(
        n == sent || (killed && n == sent + 1),
        "k={k}: {sent} sent, {got:?} received"
    );
    killed
}

/// The receiver is killed at step `k` of attaching, receiving two messages and closing,
/// while a sender sends `MSGS` (stopping if it sees the receiver gone); then a successor
/// receiver attaches and drains. Together they get every message whose `send` returned,
/// in order: the victim sees each message before it releases it, and the one it held when
/// killed is delivered again (spsc, frames: it was not released) or, if claimed and not
/// yet seen, lost (mpmc: its slot is freed and counted in `lost`).
fn receiver_killed<C: Chan>(k: u32) -> bool {
    let name = unique("kill-rx");
    let _unlink = Name(name.clone());
    let mut tx = C::tx_create(&name);
    let victim_got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let victim = {
        let (name, got) = (name.clone(), victim_got.clone());
        big(move || {
            die_after(k, || {
                let mut rx = C::rx_open(&name);
                for _ in 0..2 {
                    C::recv_with(&mut rx, |v| got.lock().unwrap().push(v)).unwrap();
                }
                drop(rx);
            })
            .is_none()
        })
    };
    let successor = big(move || {
        let killed = victim.join().unwrap();
        let mut rx = C::rx_open(&name);
        let mut got = Vec::new();
        drain::<C>(&mut rx, &mut got, None);
        (killed, got)
    });
    let mut ok = 0;
    for i in 0..MSGS {
        match C::send(&mut tx, i) {
            Ok(()) => ok += 1,
            Err(Error::Disconnected) => break,
            Err(e) => panic!("sender: {e}"),
        }
    }
    drop(tx);
    let (killed, got) = successor.join().unwrap();
    let first = victim_got.lock().unwrap().clone();
    let a = first.len() as u64;
    assert!(first.iter().copied().eq(0..a), "k={k}: {first:?}");
    let from = ok - got.len() as u64;
    assert!(
        got.iter().copied().eq(from..ok),
        "k={k}: {got:?} after {first:?}"
    );
    let fine = from == a
        || (killed && C::AT_MOST_ONCE && from == a + 1)
        || (killed && !C::AT_MOST_ONCE && from + 1 == a);
    assert!(
        fine,
        "k={k}: victim {first:?}, successor {got:?}, {ok} sent"
    );
    killed
}

#[test]
fn spsc_survives_a_sender_killed_at_any_step() {
    let n = at_every_kill_point(sender_killed::<Spsc>);
    assert!(n > 10, "{n} kill points");
}

#[test]
fn spsc_survives_a_receiver_killed_at_any_step() {
    let n = at_every_kill_point(receiver_killed::<Spsc>);
    assert!(n > 10, "{n} kill points");
}

#[test]
fn frame_ring_survives_a_sender_killed_at_any_step() {
    let n = at_every_kill_point(sender_killed::<Frames>);
    assert!(n > 10, "{n} kill points");
}

#[test]
fn frame_ring_survives_a_receiver_killed_at_any_step() {
    let n = at_every_kill_point(receiver_killed::<Frames>);
    assert!(n > 10, "{n} kill points");
}

#[test]
fn mpmc_survives_a_sender_killed_at_any_step() {
    let n = at_every_kill_point(sender_killed::<Mpmc>);
    assert!(n > 10, "{n} kill points");
}

#[test]
fn mpmc_survives_a_receiver_killed_at_any_step() {
    let n = at_every_kill_point(receiver_killed::<Mpmc>);
    assert!(n > 10, "{n} kill points");
}

#[test]
fn serde_queue_of_two_slot_items_survives_a_producer_killed_at_any_step() {
    let n = at_every_kill_point(sender_killed::<SerdeQueue>);
    assert!(n > 10, "{n} kill points");
}

#[test]
fn serde_queue_of_two_slot_items_survives_a_consumer_killed_at_any_step() {
    let n = at_every_kill_point(receiver_killed::<SerdeQueue>);
    assert!(n > 10, "{n} kill points");
}

/// Turns: a producer of one two-slot item, killed at step `k` of attaching, putting it and
/// closing, and a producer of four one-slot items share a queue of four slots and one
/// consumer. The short producer puts three, starts the victim and puts its fourth; the
/// consumer starts taking only then. The long item needs two slots where one is free, so
/// its producer waits, and takes the turn (unless the consumer has made room already); the
/// short producer is never kept waiting by it for good (the turn ends when the long item is
/// claimed, or its producer closes or dies), and the consumer gets every item put, in
/// order, nothing torn. (The queue has four slots so that the long item travels in place,
/// through the ring: at most half the slots.)
fn turn_holder_killed(k: u32) -> bool {
    type Q = shmkit::Queue<Vec<u8>>;
    fn long() -> Vec<u8> {
        vec![7u8; 120] // 121 bytes encoded: two slots
    }
    let name = unique("kill-turn");
    let _unlink = Name(name.clone());
    let mut rx = Q::with_options(&name, CreationMode::Create, 4, &kept()).unwrap();
    let put = std::sync::Arc::new(StdBool::new(false));
    let go = Arc::new(loom::sync::Notify::new());
    // Each endpoint stays in the thread that opened it (a thread is a process here).
    let short = {
        let (name, put, go) = (name.clone(), put.clone(), go.clone());
        big(move || {
            let mut tx = Q::open(&name).unwrap();
            for i in 0..3 {
                tx.put(&vec![i]).unwrap();
            }
            let victim = big(move || {
                die_after(k, || {
                    let mut tx = Q::open(&name).unwrap();
                    tx.put(&long()).unwrap();
                    put.store(true, Relaxed);
                    drop(tx);
                })
                .is_none()
            });
            go.notify();
            tx.put(&vec![3]).unwrap();
            drop(tx);
            victim.join().unwrap()
        })
    };
    go.wait();
    // Until the four short items came (the long one may come before, between or after
    // them); then, with both producers done, whatever is left. (Not until `Disconnected`:
    // the model's sleeps time out once per death, where a real one runs out every slice,
    // and only that check tells a dead producer's registration from a closed one.)
    let mut got: Vec<Vec<u8>> = Vec::new();
    while got.iter().filter(|v| v.len() == 1).count() < 4 {
        got.push(rx.get().unwrap_or_else(|e| panic!("k={k}: consumer: {e}")));
    }
    let killed = short.join().unwrap();
    loop {
        match rx.try_get() {
            Ok(v) => got.push(v),
            Err(Error::WouldBlock | Error::Disconnected) => break,
            Err(e) => panic!("k={k}: consumer: {e}"),
        }
    }
    let shorts: Vec<_> = got.iter().filter(|v| v.len() == 1).cloned().collect();
    assert_eq!(
        shorts,
        [vec![0], vec![1], vec![2], vec![3]],
        "k={k}: {got:?}"
    );
    let longs = got.iter().filter(|v| v.len() > 1).count();
    assert!(
        got.iter().all(|v| v.len() == 1 || *v == long()),
        "k={k}: a torn item"
    );
    // A long item put is received; one published by a victim killed before `put`
    // returned may be.
    let put = put.load(Relaxed);
    assert!(
        longs == usize::from(put) || (killed && !put && longs <= 1),
        "k={k}: put {put}, killed {killed}, {longs} long items received"
    );
    killed
}

#[test]
fn serde_queue_turn_of_a_long_producer_killed_at_any_step_never_blocks_a_short_one() {
    let n = at_every_kill_point(turn_holder_killed);
    assert!(n > 10, "{n} kill points");
}

/// A turn runs out (see *Turns* in the mpmc module docs), on the modelled clock: a worker
/// that must put before it gets again, so that nobody drains the queue for the turn, is
/// held back only until the turn's time has passed. A queue of four slots holds three
/// short items; a producer of a long item, which needs two slots, waits and takes the
/// turn; the worker waits for that, moves the clock on by the turn's time, puts a short
/// item (the free slot is its own once it finds the turn past its time), and gets the
/// five items, the long one last. The long producer, whose turn ended under it, claims
/// once the worker has made room. (Three things end a turn past its time: its taker, a
/// claim that finds it so, and a blocked sender's recovery; with none of them, this
/// model deadlocks.)
#[test]
fn serde_queue_turn_past_its_time_lets_a_worker_that_cannot_drain_put() {
    type Q = shmkit::Queue<Vec<u8>>;
    fn long() -> Vec<u8> {
        vec![7u8; 120] // 121 bytes encoded: two slots (in place: at most half the queue)
    }
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(b.preemption_bound.map_or(2, |p| p.min(2)));
    b.max_branches = b.max_branches.max(100_000);
    b.check(|| {
        big(|| {
            shmkit::__loom::advance_clock(0, true);
            let name = unique("turn-time");
            let _unlink = Name(name.clone());
            let mut w = Q::with_options(&name, CreationMode::Create, 4, &kept()).unwrap();
            for i in 0..3 {
                w.put(&vec![i]).unwrap();
            }
            let producer = {
                let name = name.clone();
                big(move || Q::open(&name).unwrap().put(&long()))
            };
            while !shmkit::__loom::turn_taken(&w) {
                thread::yield_now();
            }
            shmkit::__loom::advance_clock(200, false); // TURN_MS
            w.put(&vec![3]).unwrap();
            for want in [vec![0], vec![1], vec![2], vec![3], long()] {
                assert_eq!(w.get().unwrap(), want);
            }
            producer.join().unwrap().unwrap();
            shmkit::__loom::advance_clock(0, true);
        })
        .join()
        .unwrap();
    });
}

/// The robust mutex: a holder killed at any step of opening, locking twice and unlocking
/// (the count it protects is written between its steps). The survivor, which locks twice
/// too, never hangs: it takes a dead holder's lock over and is told `OwnerDied` (then it
/// repairs and marks the data consistent), and only if the victim was killed holding it.
/// No increment is lost, none is made twice.
#[test]
fn mutex_survives_a_holder_killed_at_any_step() {
    /// Adds `add`; returns the count before, and whether the lock came from a dead owner.
    fn lock_and_add(m: &shmkit::Mutex<u64>, add: u64) -> (u64, bool) {
        let (mut g, died) = match m.lock_recover() {
            Ok(g) => (g, false),
            Err(shmkit::LockError::OwnerDied(g)) => {
                shmkit::MutexGuard::mark_consistent(&g);
                (g, true)
            }
            Err(shmkit::LockError::Error(e)) => panic!("lock: {e}"),
        };
        let before = *g;
        *g += add;
        (before, died)
    }
    let n = at_every_kill_point(|k| {
        let name = unique("kill-mutex");
        let _unlink = Name(name.clone());
        let m = shmkit::Mutex::with_options(&name, CreationMode::Create, 0u64, &kept()).unwrap();
        let locked = std::sync::Arc::new(StdU64::new(0));
        let victim = {
            let (name, locked) = (name.clone(), locked.clone());
            big(move || {
                die_after(k, || {
                    let m = shmkit::Mutex::<u64>::open(&name).unwrap();
                    for _ in 0..2 {
                        let mut g = m
                            .lock()
                            .unwrap_or_else(|_| panic!("the victim is told OwnerDied"));
                        locked.fetch_add(1, Relaxed);
                        *g += 1;
                    }
                })
                .is_none()
            })
        };
        let survivor = big(move || {
            let m = shmkit::Mutex::<u64>::open(&name).unwrap();
            (0..2).filter(|_| lock_and_add(&m, 1).1).count()
        });
        let killed = victim.join().unwrap();
        let mut died = survivor.join().unwrap();
        // The victim may have died holding the lock after the survivor was done.
        let (count, last) = lock_and_add(&m, 0);
        died += usize::from(last);
        assert!(
            died <= 1 && (died == 0 || killed),
            "k={k}: OwnerDied {died} times, killed {killed}"
        );
        assert_eq!(count, 2 + locked.load(Relaxed), "k={k}");
        killed
    });
    assert!(n > 5, "{n} kill points");
}
