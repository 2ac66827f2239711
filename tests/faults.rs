//! Deaths at exact protocol steps, through the `failpoints` feature
//! (`SHMKIT_FAILPOINT=NAME@N` kills the child at the `N`th hit of a point; see
//! `src/failpoint.rs`). Run with `cargo test --features failpoints`; without the feature
//! this file is empty.
//!
//! The steps covered here are those between two stores of the library itself, which a
//! test cannot reach from outside: a sender that dies after a slot's stamp says
//! "published" but before it moved the shared tail, a receiver that dies after a slot's
//! stamp says "released" but before it moved the shared head, a creator that dies before
//! it publishes its segment. A new endpoint must attach and resume exactly where the dead
//! one stopped.
#![cfg(feature = "failpoints")]

mod common;

use std::time::Duration;

use common::{arg, arg_as, finish, report, spawn_with_env, Names};
use shmkit::{frames, mpmc, spsc, CleanMode, CreationMode, Error, Options, Value};

const PATIENCE: Duration = Duration::from_secs(30);

#[test]
fn __child() {
    common::child_main(&[
        ("spsc_send", spsc_send),
        ("spsc_send_chunk", spsc_send_chunk),
        ("spsc_recv", spsc_recv),
        ("frames_send", frames_send),
        ("frames_recv", frames_recv),
        ("mpmc_send", mpmc_send),
        ("racer", racer),
    ]);
}

fn killed_at(role: &str, name: &str, point: &str) -> std::process::Child {
    spawn_with_env(
        role,
        &[("name", name.to_owned())],
        &[("SHMKIT_FAILPOINT", point)],
    )
}

fn assert_killed(kid: std::process::Child) {
    let o = finish(kid);
    assert_eq!(
        o.signal,
        Some(libc::SIGKILL),
        "the failpoint did not fire: {o:?}"
    );
}

fn spsc_send() {
    let mut tx = spsc::Sender::<u64>::open(&arg("name")).unwrap();
    for i in 0.. {
        tx.send(i).unwrap();
    }
}

/// Child: sends 0..8 as one chunk (one `commit`), then 8.. one by one.
fn spsc_send_chunk() {
    let mut tx = spsc::Sender::<u64>::open(&arg("name")).unwrap();
    let mut chunk = tx.write_chunk(8).unwrap();
    assert_eq!(chunk.fill_from(0..8), 8);
    chunk.commit_all();
    for i in 8.. {
        tx.send(i).unwrap();
    }
}

fn spsc_recv() {
    let mut rx = spsc::Receiver::<u64>::open(&arg("name")).unwrap();
    for i in 0.. {
        assert_eq!(rx.recv().unwrap(), i);
    }
}

/// Child `role` sends into a fresh spsc ring of 8 slots and is killed at failpoint `point`:
/// the receiver gets exactly `0..committed`, then `Disconnected`; a new sender then
/// resumes after them, and `then` goes through one by one.
fn a_killed_sender_leaves(role: &str, point: &str, committed: u64, then: std::ops::Range<u64>) {
    let names = Names::new("fault_spsc_tx");
    let name = names.name("ch");
    // Room for all, so that the sender dies without waiting for us.
    let mut rx = spsc::Receiver::<u64>::create(&name, 8).unwrap();
    assert_killed(killed_at(role, &name, point));
    for i in 0..committed {
        assert_eq!(rx.recv().unwrap(), i);
    }
    assert!(matches!(rx.try_recv(), Err(Error::Disconnected)));
    let mut tx = spsc::Sender::<u64>::open(&name).unwrap();
    for i in then {
        tx.send(i).unwrap();
        assert_eq!(rx.recv().unwrap(), i);
    }
}

#[test]
fn a_sender_killed_between_its_stamp_and_its_tail_is_resumed_after_its_last_message() {
    // The 6th publication dies before its tail store: messages 0..=5 are committed.
    // Message 5's slot says "published" while the tail still points at it (and the head
    // is past it): a new sender must see that it was committed and continue after it.
    a_killed_sender_leaves("spsc_send", "spsc.published@6", 6, 6..20);
}

#[test]
fn a_sender_killed_in_the_middle_of_a_chunk_s_commit_leaves_the_slots_it_stamped() {
    // One commit of eight slots, killed after the third stamp (before the other five and
    // before `tail`): messages 0..=2 are committed, 3..8 never are. A new sender walks
    // over the three stamps (the tail still says 0) and goes on at 3.
    a_killed_sender_leaves("spsc_send_chunk", "spsc.published@3", 3, 100..120);
}

#[test]
fn a_sender_killed_between_its_stamp_and_its_tail_with_the_message_unread_is_resumed() {
    let names = Names::new("fault_spsc_tx_unread");
    let name = names.name("ch");
    let mut rx = spsc::Receiver::<u64>::create(&name, 8).unwrap();
    assert_killed(killed_at("spsc_send", &name, "spsc.published@3"));
    // Nothing received yet: the new sender walks over the published slot.
    let mut tx = spsc::Sender::<u64>::open(&name).unwrap();
    tx.send(3).unwrap();
    for i in 0..4 {
        assert_eq!(rx.recv().unwrap(), i);
    }
}

#[test]
fn a_receiver_killed_between_its_release_and_its_head_is_resumed_after_its_last_message() {
    let names = Names::new("fault_spsc_rx");
    let name = names.name("ch");
    let mut tx = spsc::Sender::<u64>::create(&name, 4).unwrap();
    let kid = killed_at("spsc_recv", &name, "spsc.released@3");
    // The receiver dies after its third `head` store, before it wakes us: fill until the
    // dead receiver is noticed (never waiting for ever for the wake it did not make).
    let mut sent = 0u64;
    loop {
        match tx.send_timeout(sent, PATIENCE) {
            Ok(()) => sent += 1,
            Err(e) if matches!(e.error, Error::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_killed(kid);
    assert_eq!(sent, 3 + 4, "three received, then a full ring");
    let mut rx = spsc::Receiver::<u64>::open(&name).unwrap();
    for i in 3..sent {
        assert_eq!(rx.recv().unwrap(), i);
    }
    assert!(matches!(rx.try_recv(), Err(Error::WouldBlock)));
    tx.send(sent).unwrap();
    assert_eq!(rx.recv().unwrap(), sent);
}

fn frame(seq: u64) -> Vec<u8> {
    let len = 40 + (seq as usize * 24) % 200;
    let mut v = vec![seq as u8; len];
    v[..8].copy_from_slice(&seq.to_le_bytes());
    v
}

fn frames_send() {
    let mut tx = frames::Sender::open(&arg("name")).unwrap();
    for seq in 0.. {
        tx.send(&frame(seq)).unwrap();
    }
}

fn frames_recv() {
    let mut rx = frames::Receiver::open(&arg("name")).unwrap();
    for seq in 0.. {
        assert_eq!(&rx.recv().unwrap(), &frame(seq)[..]);
    }
}

#[test]
fn a_frame_sender_killed_between_its_stamp_and_its_tail_is_resumed_after_its_last_record() {
    let names = Names::new("fault_frames_tx");
    let name = names.name("ch");
    let mut rx = frames::Receiver::create(&name, 1024).unwrap();
    assert_killed(killed_at("frames_send", &name, "frames.published@5"));
    for seq in 0..5 {
        assert_eq!(&rx.recv().unwrap(), &frame(seq)[..]);
    }
    assert!(matches!(rx.try_recv(), Err(Error::Disconnected)));
    // The receiver's head is now ahead of the stale tail.
    let mut tx = frames::Sender::open(&name).unwrap();
    for seq in 5..40 {
        tx.send(&frame(seq)).unwrap();
        assert_eq!(&rx.recv().unwrap(), &frame(seq)[..]);
    }
}

#[test]
fn a_frame_receiver_killed_after_moving_its_head_does_not_stall_the_sender() {
    let names = Names::new("fault_frames_rx");
    let name = names.name("ch");
    let mut tx = frames::Sender::create(&name, 1024).unwrap();
    let kid = killed_at("frames_recv", &name, "frames.released@4");
    let mut sent = 0u64;
    loop {
        match tx.send_timeout(&frame(sent), PATIENCE) {
            Ok(()) => sent += 1,
            Err(Error::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_killed(kid);
    let mut rx = frames::Receiver::open(&name).unwrap();
    for seq in 4..sent {
        assert_eq!(&rx.recv().unwrap(), &frame(seq)[..]);
    }
    assert!(matches!(rx.try_recv(), Err(Error::WouldBlock)));
}

fn mpmc_send() {
    let mut tx = mpmc::Sender::<u64>::open(&arg("name")).unwrap();
    for i in 0.. {
        tx.send(i).unwrap();
    }
}

#[test]
fn an_mpmc_sender_killed_holding_a_claimed_slot_is_skipped_and_counted() {
    let names = Names::new("fault_mpmc_tx");
    let name = names.name("ch");
    let mut rx = mpmc::Receiver::<u64>::create(&name, 8).unwrap();
    let mut other = mpmc::Sender::<u64>::open(&name).unwrap();
    // The 5th claim dies before writing: 0..4 were committed, slot 4 never will be.
    assert_killed(killed_at("mpmc_send", &name, "mpmc.send.claimed@5"));
    for i in 0..4 {
        assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), i);
    }
    // A live sender keeps flowing past the dead one's slot.
    for i in 100..130 {
        other.send(i).unwrap();
        assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), i);
    }
    assert_eq!(rx.lost(), 1);
}

fn racer() {
    let barrier = shmkit::Barrier::open(&arg("barrier")).unwrap();
    let id: u64 = arg_as("id");
    barrier.wait().unwrap();
    // Kept, so that a creator that finishes early does not take the name with it.
    let opts = Options::new().keep(true);
    let v =
        Value::<u64>::with_options(&arg("name"), CreationMode::OpenOrCreate, id, &opts).unwrap();
    report("created", v.is_creator());
    report("value", v.get().unwrap());
}

/// RELIABILITY.md scenario 11: 32 processes race `open_or_create`; half of them die if
/// they get to publish a segment. Exactly one survivor initialises, everyone sees its
/// value, and the dead creators' temporary files are found and removed by `clean`.
#[test]
fn thirty_two_racing_creators_some_killed_before_publishing_agree_on_one_segment() {
    let names = Names::new("fault_create_race");
    let name = names.name("value");
    let barrier_name = names.name("barrier");
    let _barrier = shmkit::Barrier::create(&barrier_name, 32).unwrap();
    let kids: Vec<_> = (0..32u64)
        .map(|id| {
            let point = if id % 2 == 1 {
                "segment.before_publish"
            } else {
                ""
            };
            spawn_with_env(
                "racer",
                &[
                    ("name", name.clone()),
                    ("barrier", barrier_name.clone()),
                    ("id", id.to_string()),
                ],
                &[("SHMKIT_FAILPOINT", point)],
            )
        })
        .collect();
    let outcomes: Vec<_> = kids.into_iter().map(finish).collect();
    let killed = outcomes
        .iter()
        .filter(|o| o.signal == Some(libc::SIGKILL))
        .count();
    let survivors: Vec<_> = outcomes.iter().filter(|o| o.code == Some(0)).collect();
    assert_eq!(killed + survivors.len(), 32, "{outcomes:?}");
    let creators: Vec<_> = survivors
        .iter()
        .filter(|o| o.get::<bool>("created"))
        .collect();
    assert_eq!(creators.len(), 1, "exactly one initialises: {outcomes:?}");
    let winner: u64 = creators[0].get("value");
    assert_eq!(winner % 2, 0, "an armed creator would have died");
    for o in &survivors {
        assert_eq!(o.get::<u64>("value"), winner);
    }
    // Hold the published segment; the rest is what the dead creators left.
    let v = Value::<u64>::open(&name).unwrap();
    let removed = shmkit::clean(names.prefix(), CleanMode::Remove).unwrap();
    assert_eq!(removed.len(), killed, "{removed:?}");
    assert!(removed
        .iter()
        .all(|f| f.starts_with(&format!("shmkit~{name}~"))));
    assert_eq!(v.get().unwrap(), winner);
}
