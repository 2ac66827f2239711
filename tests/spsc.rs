//! SPSC channel across real processes: ordering, exactly-once delivery, peer death at
//! every step, corruption, timeouts.

mod common;

use std::time::Duration;

use common::{arg, arg_as, die_now, finish, finish_ok, report, spawn, Names};
use shmkit::{spsc, Error, WaitStrategy};

const PATIENCE: Duration = Duration::from_secs(30);

#[test]
fn __child() {
    common::child_main(&[
        ("seq_sender", seq_sender),
        ("die_sending", die_sending),
        ("die_holding_guard", die_holding_guard),
        ("drain_from", drain_from),
    ]);
}

const N: u64 = 10_000_000;

fn seq_sender() {
    let mut tx = spsc::Sender::<u64>::open(&arg("name")).unwrap();
    if arg("busy") == "1" {
        tx.set_wait_strategy(WaitStrategy::BusyPoll);
    }
    let mut i = 0;
    while i < N {
        // Alternate the single, loan and batch paths.
        match i % 3 {
            0 => tx.send(i).unwrap(),
            1 => {
                let mut s = tx.loan().unwrap();
                *s = i;
                s.commit().unwrap();
            }
            _ => {
                let mut c = tx.write_chunk(64).unwrap();
                let n = c.fill_from(i..N);
                c.commit(n);
                i += n as u64;
                continue;
            }
        }
        i += 1;
    }
}

#[test]
fn ten_million_sequence_numbers_arrive_exactly_once_in_order() {
    for busy in ["0", "1"] {
        let names = Names::new(&format!("spsc_seq{busy}"));
        let name = names.name("ch");
        let mut rx = spsc::Receiver::<u64>::create(&name, 1024).unwrap();
        if busy == "1" {
            rx.set_wait_strategy(WaitStrategy::BusyPoll);
        }
        let kid = spawn(
            "seq_sender",
            &[("name", name.clone()), ("busy", busy.into())],
        );
        let mut expected = 0u64;
        loop {
            match rx.read_chunk(256) {
                Ok(chunk) => {
                    for v in chunk.iter() {
                        assert_eq!(*v, expected, "out of order or lost");
                        expected += 1;
                    }
                    chunk.commit_all();
                }
                Err(Error::Disconnected) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(expected, N);
        finish_ok(kid);
    }
}

/// A record that shows tearing: four words and a checksum of them.
type Rec = [u64; 5];

fn rec(i: u64) -> Rec {
    let w = [i, i.wrapping_mul(0x9e37_79b9_7f4a_7c15), !i, i ^ 0x5555];
    [
        w[0],
        w[1],
        w[2],
        w[3],
        w.iter().fold(0, |a, x| a ^ x.rotate_left(7)),
    ]
}

fn valid(r: &Rec) -> bool {
    *r == rec(r[0])
}

/// Sends `k` committed records, then dies at the given step of the next one.
fn die_sending() {
    let mut tx = spsc::Sender::<Rec>::open(&arg("name")).unwrap();
    let k: u64 = arg_as("k");
    for i in 0..k {
        tx.send(rec(i)).unwrap();
    }
    let mut slot = tx.loan().unwrap();
    let r = rec(k);
    match arg("step").as_str() {
        "after_loan" => die_now(),
        "mid_write" => {
            slot[0] = r[0];
            slot[1] = r[1];
            die_now();
        }
        "before_commit" => {
            *slot = r;
            die_now();
        }
        "after_commit" => {
            *slot = r;
            slot.commit().unwrap();
            die_now();
        }
        other => panic!("unknown step {other}"),
    }
}

#[test]
fn a_producer_killed_at_each_step_loses_nothing_committed_and_delivers_nothing_torn() {
    for (step, committed) in [
        ("after_loan", 5),
        ("mid_write", 5),
        ("before_commit", 5),
        ("after_commit", 6),
    ] {
        let names = Names::new(&format!("spsc_kill_{step}"));
        let name = names.name("ch");
        let mut rx = spsc::Receiver::<Rec>::create(&name, 8).unwrap();
        let o = finish(spawn(
            "die_sending",
            &[
                ("name", name.clone()),
                ("k", "5".into()),
                ("step", step.into()),
            ],
        ));
        assert_eq!(o.signal, Some(libc::SIGKILL), "{step}: {o:?}");
        let mut got = 0;
        loop {
            match rx.recv_timeout(PATIENCE) {
                Ok(r) => {
                    assert!(valid(&r), "{step}: torn record {r:?}");
                    assert_eq!(r[0], got, "{step}: out of order");
                    got += 1;
                }
                Err(Error::Disconnected) => break,
                Err(e) => panic!("{step}: {e}"),
            }
        }
        assert_eq!(got, committed, "{step}");
        // A new sender can attach and continues after the last committed record.
        let mut tx = spsc::Sender::<Rec>::open(&name).unwrap();
        tx.send(rec(100)).unwrap();
        assert_eq!(rx.recv().unwrap(), rec(100));
    }
}

fn die_holding_guard() {
    let mut rx = spsc::Receiver::<u64>::open(&arg("name")).unwrap();
    let g = rx.recv_ref().unwrap();
    assert_eq!(*g, 0);
    die_now();
}

fn drain_from() {
    let mut rx = spsc::Receiver::<u64>::open(&arg("name")).unwrap();
    let n: u64 = arg_as("n");
    for i in 0..n {
        assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), i);
    }
    report("drained", n);
}

#[test]
fn a_consumer_killed_holding_a_slot_does_not_block_the_producer_for_ever() {
    let names = Names::new("spsc_rx_kill");
    let name = names.name("ch");
    let mut tx = spsc::Sender::<u64>::create(&name, 4).unwrap();
    for i in 0..4 {
        tx.send(i).unwrap();
    }
    let o = finish(spawn("die_holding_guard", &[("name", name.clone())]));
    assert_eq!(o.signal, Some(libc::SIGKILL));
    // Full, and the receiver is dead: the producer is told, not blocked.
    let e = tx.send(4).unwrap_err();
    assert!(matches!(e.error, Error::Disconnected), "{e}");
    assert_eq!(e.into_inner(), 4);
    // A new receiver resumes at the message the dead one held, and the space comes back.
    let kid = spawn("drain_from", &[("name", name.clone()), ("n", "8".into())]);
    common::wait_until(PATIENCE, || !tx.is_disconnected());
    for i in 4..8 {
        tx.send_timeout(i, PATIENCE).unwrap();
    }
    assert_eq!(finish_ok(kid).get::<u64>("drained"), 8);
}

#[test]
fn try_and_timeout_forms_do_not_block() {
    let names = Names::new("spsc_try");
    let name = names.name("ch");
    let mut tx = spsc::Sender::<u32>::create(&name, 2).unwrap();
    let mut rx = spsc::Receiver::<u32>::open(&name).unwrap();
    assert!(matches!(rx.try_recv(), Err(Error::WouldBlock)));
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(5)),
        Err(Error::Timeout)
    ));
    tx.try_send(1).unwrap();
    tx.send(2).unwrap();
    let e = tx.try_send(3).unwrap_err();
    assert!(matches!(e.error, Error::WouldBlock));
    let e = tx.send_timeout(3, Duration::from_millis(5)).unwrap_err();
    assert!(matches!(e.error, Error::Timeout));
    assert!(tx.try_loan().is_err());
    assert_eq!(tx.len(), 2);
    assert_eq!(
        rx.try_iter().collect::<Result<Vec<_>, _>>().unwrap(),
        vec![1, 2]
    );
    assert!(rx.is_empty());
}

#[test]
fn a_second_live_sender_is_refused_and_a_closed_sender_disconnects() {
    let names = Names::new("spsc_busy");
    let name = names.name("ch");
    let tx = spsc::Sender::<u8>::create(&name, 16).unwrap();
    assert!(matches!(
        spsc::Sender::<u8>::open(&name),
        Err(Error::Busy { .. })
    ));
    let mut rx = spsc::Receiver::<u8>::open(&name).unwrap();
    assert!(matches!(
        spsc::Receiver::<u8>::open(&name),
        Err(Error::Busy { .. })
    ));
    assert!(!rx.is_disconnected());
    assert!(matches!(
        spsc::Receiver::<u64>::open(&name),
        Err(Error::LayoutMismatch { .. })
    ));
    drop(tx);
    assert!(rx.is_disconnected());
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));
    assert!(matches!(
        spsc::Sender::<u8>::create(&names.name("bad"), 3),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn corrupted_stamps_and_positions_are_errors_not_hangs() {
    use std::os::unix::fs::FileExt;
    let names = Names::new("spsc_corrupt");
    let name = names.name("ch");
    let mut rx = spsc::Receiver::<u64>::create(&name, 8).unwrap();
    let mut tx = spsc::Sender::<u64>::open(&name).unwrap();
    tx.send(1).unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/shmkit.{name}"))
        .unwrap();
    use shmkit::__layout::{pair, segment, slot};
    // Segment header + channel header; then slot 0, whose stamp is at `slot::STAMP`.
    let slot0 = (segment::SIZE + pair::SIZE + slot::STAMP) as u64;
    file.write_at(&0xdead_beef_u64.to_le_bytes(), slot0)
        .unwrap();
    assert!(matches!(rx.try_recv(), Err(Error::Corrupt { .. })));
    assert!(matches!(
        rx.recv_timeout(PATIENCE),
        Err(Error::Corrupt { .. })
    ));
    assert!(matches!(rx.try_recv_ref(), Err(Error::Corrupt { .. })));
    // The iterators yield the error once, then end.
    let mut it = rx.iter();
    assert!(matches!(it.next(), Some(Err(Error::Corrupt { .. }))));
    assert!(it.next().is_none());
    assert!(it.next().is_none());
    drop(it);
    let mut it = rx.try_iter();
    assert!(matches!(it.next(), Some(Err(Error::Corrupt { .. }))));
    assert!(it.next().is_none());
    // A corrupt published tail is caught when a new sender attaches.
    drop(tx);
    let tail = (segment::SIZE + pair::TAIL) as u64;
    file.write_at(&u64::MAX.to_le_bytes(), tail).unwrap();
    assert!(matches!(
        spsc::Sender::<u64>::open(&name),
        Err(Error::Corrupt { .. })
    ));
}
