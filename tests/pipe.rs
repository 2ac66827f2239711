//! `Pipe` across real processes: `open_or_create` raced by many processes (exactly one
//! creator, one opener, the rest `Busy`), a creator killed between its two rings, and
//! errors that name the pipe the user gave, never its rings (`NAME.c2o`, `NAME.o2c`).

mod common;

use std::process::Child;
use std::time::Duration;

use common::{arg, finish, finish_ok, report, spawn, wait_until, Names};
use shmkit::{Error, Event, Pipe};

/// A failure bound only: nothing here waits this long when things work.
const PATIENCE: Duration = Duration::from_secs(30);

#[test]
fn __child() {
    common::child_main(&[("racer", racer), ("dies_between_rings", dies_between_rings)]);
}

/// Whether a message mentions one of the pipe's internal ring names.
fn leaks_ring_names(msg: &str) -> bool {
    msg.contains(".c2o") || msg.contains(".o2c")
}

/// Races for the pipe `name`; the two winners say hello to each other and hold their ends
/// until the event `stop` is set, so that every racer meets a live pipe.
fn racer() {
    let name = arg("name");
    let stop = Event::open(&arg("stop")).unwrap();
    match Pipe::open_or_create(&name, 1 << 12) {
        Ok(mut pipe) => {
            let me = if pipe.is_creator() {
                "creator"
            } else {
                "opener"
            };
            report("role", me);
            pipe.send(me.as_bytes()).unwrap();
            let peer = pipe.recv_timeout(PATIENCE).unwrap();
            report("peer", String::from_utf8(peer).unwrap());
            assert!(stop.wait_timeout(PATIENCE).unwrap(), "never told to stop");
        }
        Err(Error::Busy { what }) => {
            assert!(what.contains(&name) && !leaks_ring_names(&what), "{what}");
            report("role", "busy");
        }
        Err(e) => panic!("open_or_create: {e} ({e:?})"),
    }
}

#[test]
fn racing_open_or_create_makes_exactly_one_creator_and_one_opener() {
    const RACERS: usize = 8;
    let names = Names::new("pipe_race");
    let name = names.name("p");
    let stop = Event::create(&names.name("stop")).unwrap();
    let mut kids: Vec<Option<Child>> = (0..RACERS)
        .map(|_| {
            Some(spawn(
                "racer",
                &[("name", name.clone()), ("stop", names.name("stop"))],
            ))
        })
        .collect();
    // The losers exit at once; the two winners hold their ends until all have tried.
    let mut outcomes = Vec::new();
    wait_until(PATIENCE, || {
        for kid in kids.iter_mut() {
            if kid
                .as_mut()
                .is_some_and(|c| c.try_wait().unwrap().is_some())
            {
                outcomes.push(finish(kid.take().unwrap()));
            }
        }
        outcomes.len() >= RACERS - 2
    });
    stop.set();
    outcomes.extend(kids.into_iter().flatten().map(finish_ok));
    let roles = |r: &str| {
        outcomes
            .iter()
            .filter(|o| o.get::<String>("role") == r)
            .count()
    };
    assert!(outcomes.iter().all(|o| o.code == Some(0)), "{outcomes:?}");
    assert_eq!(
        (roles("creator"), roles("opener"), roles("busy")),
        (1, 1, RACERS - 2),
        "{outcomes:?}"
    );
    // The two ends talked to each other.
    for o in outcomes
        .iter()
        .filter(|o| o.get::<String>("role") != "busy")
    {
        let expected = if o.get::<String>("role") == "creator" {
            "opener"
        } else {
            "creator"
        };
        assert_eq!(o.get::<String>("peer"), expected, "{o:?}");
    }
    drop(stop);
    // The creator's end removed both rings.
    assert!(names.leftovers().is_empty(), "{:?}", names.leftovers());
}

#[test]
fn open_or_create_in_one_process_gives_the_two_ends_then_busy() {
    let names = Names::new("pipe_ooc");
    let name = names.name("p");
    let mut a = Pipe::open_or_create(&name, 1 << 10).unwrap();
    let mut b = Pipe::open_or_create(&name, 1 << 10).unwrap();
    assert!(a.is_creator() && !b.is_creator());
    match Pipe::open_or_create(&name, 1 << 10) {
        Err(Error::Busy { what }) => assert!(what.contains(&name) && !leaks_ring_names(&what)),
        other => panic!("a third end: {other:?}"),
    }
    a.send(b"to b").unwrap();
    b.send(b"to a").unwrap();
    assert_eq!(b.recv().unwrap(), b"to b");
    assert_eq!(a.recv().unwrap(), b"to a");
    // The opener leaves: its end can be taken again, and resumes.
    drop(b);
    assert!(matches!(a.recv_timeout(PATIENCE), Err(Error::Disconnected)));
    let mut c = Pipe::open_or_create(&name, 1 << 10).unwrap();
    assert!(!c.is_creator());
    c.send(b"again").unwrap();
    assert_eq!(a.recv().unwrap(), b"again");
    drop((a, c));
    assert!(names.leftovers().is_empty(), "{:?}", names.leftovers());
    // Gone with its creator: the next caller creates it afresh.
    let d = Pipe::open_or_create(&name, 1 << 10).unwrap();
    assert!(d.is_creator());
}

#[test]
fn open_or_create_over_a_one_way_pipe_is_already_exists_and_leaves_nothing() {
    let names = Names::new("pipe_oneway");
    let name = names.name("p");
    let mut rx = Pipe::create_one_way(&name, 1 << 10).unwrap();
    match Pipe::open_or_create(&name, 1 << 10) {
        Err(Error::AlreadyExists { name: n }) => assert_eq!(n, name),
        other => panic!("{other:?}"),
    }
    // The one-way pipe is intact, and `open` still finds it one-way.
    let mut tx = Pipe::open(&name).unwrap();
    tx.send(b"one way").unwrap();
    assert_eq!(rx.recv().unwrap(), b"one way");
    assert!(matches!(tx.recv(), Err(Error::InvalidArgument(_))));
    drop((rx, tx));
    assert!(names.leftovers().is_empty(), "{:?}", names.leftovers());
}

#[test]
fn pipe_errors_name_the_pipe_not_its_rings() {
    let names = Names::new("pipe_errors");
    let name = names.name("p");
    match Pipe::open(&name) {
        Err(e @ Error::NotFound { .. }) => {
            assert!(!leaks_ring_names(&e.to_string()), "{e}");
            assert!(matches!(e, Error::NotFound { name: ref n } if *n == name));
        }
        other => panic!("{other:?}"),
    }
    let _creator = Pipe::create(&name, 1 << 10).unwrap();
    match Pipe::create(&name, 1 << 10) {
        Err(Error::AlreadyExists { name: n }) => assert_eq!(n, name),
        other => panic!("{other:?}"),
    }
    let _opener = Pipe::open(&name).unwrap();
    match Pipe::open(&name) {
        Err(e @ Error::Busy { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&name) && !leaks_ring_names(&msg), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    // Names: the user's, whatever rule they break (the rings' suffix counts against the
    // length limit, and is said to).
    let long = "a".repeat(shmkit::MAX_NAME_LEN - 2);
    let bad = "no/slash";
    for n in [long.as_str(), bad] {
        for r in [
            Pipe::create(n, 1 << 10),
            Pipe::open(n),
            Pipe::open_or_create(n, 1 << 10),
            Pipe::create_one_way(n, 1 << 10),
        ] {
            match r {
                Err(Error::InvalidName { name: got, .. }) => assert_eq!(got, n),
                other => panic!("{n}: {other:?}"),
            }
        }
    }
    match Pipe::create(&names.name("odd"), 1000) {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("{other:?}"),
    }
    assert!(Pipe::open(&names.name("odd")).is_err());
}

/// Creates the pipe with a failpoint armed between its rings: dies there.
fn dies_between_rings() {
    let _ = Pipe::open_or_create(&arg("name"), 1 << 10);
    panic!("the failpoint did not fire");
}

#[cfg(feature = "failpoints")]
#[test]
fn a_creator_killed_between_its_rings_is_reported_to_the_opener_not_awaited() {
    let names = Names::new("pipe_half");
    let name = names.name("p");
    let kid = common::spawn_with_env(
        "dies_between_rings",
        &[("name", name.clone())],
        &[("SHMKIT_FAILPOINT", "pipe.between_rings")],
    );
    assert_eq!(finish(kid).signal, Some(libc::SIGKILL));
    // Its first ring is there, with a dead sender; its second never came.
    for _ in 0..2 {
        match Pipe::open_or_create(&name, 1 << 10) {
            Err(Error::Disconnected) => {}
            other => panic!("{other:?}"),
        }
    }
    match Pipe::open(&name) {
        Err(Error::NotFound { name: n }) => assert_eq!(n, name),
        other => panic!("{other:?}"),
    }
    // Once the half-made pipe is cleaned up, the name works again. (A child that another
    // test thread forks at the wrong moment holds our descriptors, and so the file, until
    // it execs: `clean` rightly leaves a held file alone, so look again a few times.)
    let mut removed = Vec::new();
    for _ in 0..100 {
        removed = shmkit::clean(&name, shmkit::CleanMode::Remove).unwrap();
        if !removed.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(removed.len(), 1, "{removed:?}");
    let p = Pipe::open_or_create(&name, 1 << 10).unwrap();
    assert!(p.is_creator());
}
