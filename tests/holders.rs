//! Channels as objects of their own (issue 16): a parent holds an spsc, mpmc or frame
//! channel, or a pipe, without being one of its ends; children open the ends late, in
//! either order, and talk; nobody meets `NotFound` while the holder lives, the name goes
//! when it drops (ends already open keep working), and a wrong type or capacity is
//! `LayoutMismatch`.

mod common;

use std::time::Duration;

use common::{arg, arg_as, finish_ok, report, spawn, Names};
use shmkit::{frames, mpmc, spsc, Error, Pipe};

/// A failure bound only: nothing here waits this long when things work.
const PATIENCE: Duration = Duration::from_secs(30);

/// Messages per channel: more than its capacity, so that a sender that comes first waits
/// for a receiver that has not attached yet.
const N: u64 = 1000;

/// Capacity of the typed rings (frames: bytes).
const CAP: usize = 8;
const FRAME_CAP: usize = 256;

#[test]
fn __child() {
    common::child_main(&[
        ("sender", sender),
        ("receiver", receiver),
        ("pipe_first", pipe_first),
        ("pipe_second", pipe_second),
    ]);
}

/// Sleeps `delay_ms` (the child comes late), then opens the sender of the `kind` channel
/// `name` and sends `0..N`.
fn sender() {
    std::thread::sleep(Duration::from_millis(arg_as("delay_ms")));
    let name = arg("name");
    match arg("kind").as_str() {
        "spsc" => {
            let mut tx = spsc::Sender::<u64>::open(&name).unwrap();
            (0..N).for_each(|i| tx.send(i).unwrap());
        }
        "mpmc" => {
            let mut tx = mpmc::Sender::<u64>::open(&name).unwrap();
            (0..N).for_each(|i| tx.send(i).unwrap());
        }
        "frames" => {
            let mut tx = frames::Sender::open(&name).unwrap();
            (0..N).for_each(|i| tx.send(&i.to_le_bytes()).unwrap());
        }
        k => panic!("unknown kind {k}"),
    }
}

/// Sleeps `delay_ms`, then opens the receiver of the `kind` channel `name` and receives
/// until the sender is gone, checking the sequence; reports how many arrived.
fn receiver() {
    std::thread::sleep(Duration::from_millis(arg_as("delay_ms")));
    let name = arg("name");
    let got: Vec<u64> = match arg("kind").as_str() {
        "spsc" => {
            let mut rx = spsc::Receiver::<u64>::open(&name).unwrap();
            rx.iter().map(Result::unwrap).collect()
        }
        "mpmc" => {
            let mut rx = mpmc::Receiver::<u64>::open(&name).unwrap();
            rx.iter().map(Result::unwrap).collect()
        }
        "frames" => {
            let mut rx = frames::Receiver::open(&name).unwrap();
            rx.iter()
                .map(|f| u64::from_le_bytes(f.unwrap().try_into().unwrap()))
                .collect()
        }
        k => panic!("unknown kind {k}"),
    };
    assert!(got.iter().copied().eq(0..got.len() as u64), "out of order");
    report("received", got.len());
}

/// Sleeps `delay_ms`, opens the first end of the held pipe `name`, sends `0..N` and checks
/// the doubled answers.
fn pipe_first() {
    std::thread::sleep(Duration::from_millis(arg_as("delay_ms")));
    let mut a = Pipe::open_first(&arg("name")).unwrap();
    for i in 0..N {
        a.send(&i.to_le_bytes()).unwrap();
        let back = a.recv_timeout(PATIENCE).unwrap();
        assert_eq!(u64::from_le_bytes(back.try_into().unwrap()), 2 * i);
    }
    report("rounds", N);
}

/// Sleeps `delay_ms`, opens the second end of the held pipe `name`, and answers every
/// number with its double until the first end is gone.
fn pipe_second() {
    std::thread::sleep(Duration::from_millis(arg_as("delay_ms")));
    let mut b = Pipe::open(&arg("name")).unwrap();
    let mut n = 0u64;
    loop {
        match b.recv() {
            Ok(m) => {
                let i = u64::from_le_bytes(m.try_into().unwrap());
                b.send(&(2 * i).to_le_bytes()).unwrap();
                n += 1;
            }
            Err(Error::Disconnected) => break,
            Err(e) => panic!("recv: {e}"),
        }
    }
    report("rounds", n);
}

/// Whether `name` is gone: no holder of `kind` can open it.
fn is_gone(kind: &str, name: &str) -> bool {
    let r = match kind {
        "spsc" => spsc::Holder::<u64>::open(name).map(drop),
        "mpmc" => mpmc::Holder::<u64>::open(name).map(drop),
        _ => frames::Holder::open(name).map(drop),
    };
    matches!(r, Err(Error::NotFound { .. }))
}

#[test]
fn children_open_a_held_channel_late_in_either_order_and_talk() {
    for kind in ["spsc", "mpmc", "frames"] {
        // (sender's delay, receiver's delay): the sender first (it fills the ring and
        // waits for a receiver that never attached yet), then the receiver first.
        for (tx_ms, rx_ms) in [(20, 300), (300, 20)] {
            let names = Names::new(&format!("held_{kind}_{tx_ms}"));
            let name = names.name("ch");
            let holder: Box<dyn std::any::Any> = match kind {
                "spsc" => Box::new(spsc::Holder::<u64>::create(&name, CAP).unwrap()),
                "mpmc" => Box::new(mpmc::Holder::<u64>::create(&name, CAP).unwrap()),
                _ => Box::new(frames::Holder::create(&name, FRAME_CAP).unwrap()),
            };
            let args = |ms: u64| {
                [
                    ("kind", kind.to_owned()),
                    ("name", name.clone()),
                    ("delay_ms", ms.to_string()),
                ]
            };
            let tx = spawn("sender", &args(tx_ms));
            let rx = spawn("receiver", &args(rx_ms));
            finish_ok(tx);
            let got: u64 = finish_ok(rx).get("received");
            assert_eq!(got, N, "{kind}, delays {tx_ms}/{rx_ms}");
            // Both ends are gone; the holder still holds the name.
            assert!(!is_gone(kind, &name), "{kind}: the name went with the ends");
            drop(holder);
            assert!(is_gone(kind, &name), "{kind}: the name outlived its holder");
            assert!(names.leftovers().is_empty(), "{:?}", names.leftovers());
        }
    }
}

#[test]
fn a_held_pipe_gives_its_two_ends_to_two_late_children() {
    for (first_ms, second_ms) in [(20, 300), (300, 20)] {
        let names = Names::new(&format!("held_pipe_{first_ms}"));
        let name = names.name("p");
        let held = Pipe::hold(&name, 1 << 10).unwrap();
        let args = |ms: u64| [("name", name.clone()), ("delay_ms", ms.to_string())];
        let a = spawn("pipe_first", &args(first_ms));
        let b = spawn("pipe_second", &args(second_ms));
        assert_eq!(finish_ok(a).get::<u64>("rounds"), N);
        assert_eq!(finish_ok(b).get::<u64>("rounds"), N);
        // Both ends are gone; the holder still holds the name.
        assert!(matches!(
            Pipe::create(&name, 1 << 10),
            Err(Error::AlreadyExists { .. })
        ));
        drop(held);
        assert!(matches!(Pipe::open(&name), Err(Error::NotFound { .. })));
        assert!(names.leftovers().is_empty(), "{:?}", names.leftovers());
    }
}

#[test]
fn a_holders_drop_removes_the_name_and_open_ends_keep_working() {
    let names = Names::new("held_drop");

    let name = names.name("spsc");
    let held = spsc::Holder::<u64>::create(&name, CAP).unwrap();
    let (mut tx, mut rx) = (
        spsc::Sender::<u64>::open(&name).unwrap(),
        spsc::Receiver::<u64>::open(&name).unwrap(),
    );
    assert!(!tx.is_creator() && !rx.is_creator());
    drop(held);
    assert!(is_gone("spsc", &name));
    tx.send(1).unwrap();
    assert_eq!(rx.recv().unwrap(), 1);
    drop(tx);
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));

    let name = names.name("mpmc");
    let held = mpmc::Holder::<u64>::create(&name, CAP).unwrap();
    let (mut tx, mut rx) = (
        mpmc::Sender::<u64>::open(&name).unwrap(),
        mpmc::Receiver::<u64>::open(&name).unwrap(),
    );
    drop(held);
    assert!(is_gone("mpmc", &name));
    tx.send(2).unwrap();
    assert_eq!(rx.recv().unwrap(), 2);
    drop(tx);
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));

    let name = names.name("frames");
    let held = frames::Holder::create(&name, FRAME_CAP).unwrap();
    let (mut tx, mut rx) = (
        frames::Sender::open(&name).unwrap(),
        frames::Receiver::open(&name).unwrap(),
    );
    drop(held);
    assert!(is_gone("frames", &name));
    tx.send(b"3").unwrap();
    assert_eq!(rx.recv().unwrap(), b"3");
    drop(tx);
    assert!(matches!(rx.recv(), Err(Error::Disconnected)));

    let name = names.name("pipe");
    let held = Pipe::hold(&name, 1 << 10).unwrap();
    let (mut a, mut b) = (Pipe::open_first(&name).unwrap(), Pipe::open(&name).unwrap());
    assert!(!a.is_creator() && !b.is_creator());
    drop(held);
    assert!(matches!(Pipe::open(&name), Err(Error::NotFound { .. })));
    assert!(matches!(
        Pipe::open_first(&name),
        Err(Error::NotFound { .. })
    ));
    a.send(b"4").unwrap();
    assert_eq!(b.recv().unwrap(), b"4");
    b.send(b"5").unwrap();
    assert_eq!(a.recv().unwrap(), b"5");
    drop(b);
    assert!(matches!(a.recv(), Err(Error::Disconnected)));

    assert!(names.leftovers().is_empty(), "{:?}", names.leftovers());
}

/// Whether `r` is a `LayoutMismatch`.
fn mismatch<T: std::fmt::Debug>(r: shmkit::Result<T>) -> bool {
    matches!(r, Err(Error::LayoutMismatch { .. }))
}

#[test]
fn opening_a_held_channel_with_another_type_or_capacity_is_a_layout_mismatch() {
    let names = Names::new("held_mismatch");

    let name = names.name("spsc");
    let _spsc = spsc::Holder::<u64>::create(&name, 64).unwrap();
    assert!(mismatch(spsc::Receiver::<f64>::open(&name)));
    assert!(mismatch(spsc::Sender::<u32>::open(&name)));
    assert!(mismatch(spsc::Sender::<u64>::open_or_create(&name, 128)));
    assert!(mismatch(spsc::Holder::<u64>::open_or_create(&name, 128)));
    assert!(mismatch(spsc::Holder::<f64>::open(&name)));
    assert!(mismatch(mpmc::Receiver::<u64>::open(&name))); // another kind
    assert!(matches!(
        spsc::Sender::<u64>::create(&name, 64),
        Err(Error::AlreadyExists { .. })
    ));
    assert!(spsc::Sender::<u64>::open_or_create(&name, 64).is_ok());

    let name = names.name("mpmc");
    let _mpmc = mpmc::Holder::<u64>::create(&name, 10).unwrap();
    assert!(mismatch(mpmc::Sender::<f64>::open(&name)));
    assert!(mismatch(mpmc::Receiver::<u64>::open_or_create(&name, 11)));
    assert!(mismatch(mpmc::Holder::<u64>::open_or_create(&name, 11)));
    assert!(mismatch(spsc::Receiver::<u64>::open(&name)));

    let name = names.name("frames");
    let _frames = frames::Holder::create(&name, 1024).unwrap();
    assert!(mismatch(frames::Sender::open_or_create(&name, 2048)));
    assert!(mismatch(frames::Holder::open_or_create(&name, 2048)));
    assert!(mismatch(spsc::Receiver::<u8>::open(&name)));

    let name = names.name("pipe");
    let _pipe = Pipe::hold(&name, 1 << 10).unwrap();
    assert!(mismatch(frames::Holder::open_or_create(
        &format!("{name}.c2o"),
        1 << 11
    )));
    drop((_spsc, _mpmc, _frames, _pipe));
    assert!(names.leftovers().is_empty(), "{:?}", names.leftovers());
}

#[test]
fn each_end_of_a_held_pipe_is_taken_once() {
    let names = Names::new("held_pipe_ends");
    let leaks = |what: &str| what.contains(".c2o") || what.contains(".o2c");

    let name = names.name("duplex");
    let held = Pipe::hold(&name, 1 << 10).unwrap();
    assert!(
        matches!(Pipe::hold(&name, 1 << 10), Err(Error::AlreadyExists { name: n }) if n == name)
    );
    let a = Pipe::open_first(&name).unwrap();
    match Pipe::open_first(&name) {
        Err(Error::Busy { what }) => assert!(what.contains(&name) && !leaks(&what), "{what}"),
        other => panic!("a second first end: {other:?}"),
    }
    let b = Pipe::open(&name).unwrap();
    assert!(matches!(Pipe::open(&name), Err(Error::Busy { .. })));
    // An end closed is free for the next process.
    drop(a);
    let _a = Pipe::open_first(&name).unwrap();
    drop((b, held));

    let name = names.name("oneway");
    let held = Pipe::hold_one_way(&name, 1 << 10).unwrap();
    let mut r = Pipe::open_first(&name).unwrap();
    let mut w = Pipe::open(&name).unwrap();
    assert!(matches!(r.send(b"x"), Err(Error::InvalidArgument(_))));
    assert!(matches!(w.try_recv(), Err(Error::InvalidArgument(_))));
    w.send(b"one way").unwrap();
    assert_eq!(r.recv().unwrap(), b"one way");
    drop((r, w, held));

    // A pipe made by `create` has its first end taken by its creator.
    let name = names.name("created");
    let _creator = Pipe::create(&name, 1 << 10).unwrap();
    assert!(matches!(Pipe::open_first(&name), Err(Error::Busy { .. })));
    let _opener = Pipe::open(&name).unwrap();

    let name = names.name("missing");
    assert!(matches!(Pipe::open_first(&name), Err(Error::NotFound { name: n }) if n == name));
    drop((_creator, _opener));
    assert!(names.leftovers().is_empty(), "{:?}", names.leftovers());
}
