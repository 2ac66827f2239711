//! Loom models of the synchronisation algorithms and their sleep/wake handshakes.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom` (`.ci/run` does).
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
use shmkit::__loom::{BarrierState, CondState, EventState, HandshakeModel, SemState};

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
        "loom.{tag}.{}.{}",
        std::process::id(),
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
            assert_eq!(*rx.recv().unwrap(), i);
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
            let mut got = [rx.recv_copy().unwrap(), rx.recv_copy().unwrap()];
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
            assert_eq!(&*rx.recv().unwrap(), m);
        }
        t.join().unwrap();
    });
}
