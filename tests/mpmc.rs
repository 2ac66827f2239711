//! MPMC queue across real processes: exactly-once delivery with per-producer order, a
//! producer killed between claiming and publishing, a consumer killed holding a message,
//! disconnection, non-blocking forms, corruption.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{arg, arg_as, die_now, finish, finish_ok, report, spawn, Names, Outcome};
use shmkit::{mpmc, Error, Event, Semaphore, WaitStrategy};

/// A failure bound only: nothing here waits this long when things work.
const PATIENCE: Duration = Duration::from_secs(30);

#[test]
fn __child() {
    common::child_main(&[
        ("produce", produce),
        ("consume", consume),
        ("die_after_loan", die_after_loan),
        ("die_holding_guard", die_holding_guard),
        ("attach_and_die", attach_and_die),
    ]);
}

/// A message: producer id, sequence number, and a check word that shows tearing.
type Msg = [u64; 3];

fn mix(id: u64, seq: u64) -> u64 {
    // splitmix64 of both.
    let mut z = (id << 40 ^ seq).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn msg(id: u64, seq: u64) -> Msg {
    [id, seq, mix(id, seq)]
}

fn valid(m: &Msg) -> bool {
    *m == msg(m[0], m[1])
}

/// Producers start together: a queue whose every attached sender is gone is disconnected,
/// so a fast producer must not finish before a slow one attaches.
struct Start {
    ready: Semaphore,
    go: Event,
}

impl Start {
    fn new(names: &Names) -> Start {
        Start {
            ready: Semaphore::create(&names.name("ready"), 0).unwrap(),
            go: Event::create(&names.name("go")).unwrap(),
        }
    }

    fn args(names: &Names) -> [(&'static str, String); 2] {
        [("ready", names.name("ready")), ("go", names.name("go"))]
    }

    /// Waits until `n` producers have attached, then lets them all go.
    fn release(&self, n: usize) {
        for _ in 0..n {
            self.ready.acquire_timeout(PATIENCE).unwrap();
        }
        self.go.set();
    }
}

/// In a producer, once its sender is attached.
fn attached() {
    Semaphore::open(&arg("ready")).unwrap().release().unwrap();
    assert!(Event::open(&arg("go"))
        .unwrap()
        .wait_timeout(PATIENCE)
        .unwrap());
}

/// Sends `n` messages of producer `id`, through every sending path in turn.
fn produce() {
    let mut tx = mpmc::Sender::<Msg>::open(&arg("name")).unwrap();
    if arg("busy") == "1" {
        tx.set_wait_strategy(WaitStrategy::BusyPoll);
    }
    let id: u64 = arg_as("id");
    let n: u64 = arg_as("n");
    attached();
    for seq in 0..n {
        let m = msg(id, seq);
        match seq % 4 {
            0 | 1 => tx.send(m).unwrap(),
            2 => {
                let mut slot = tx.loan().unwrap();
                *slot = m;
                slot.commit().unwrap();
            }
            _ => {
                let start = Instant::now();
                let mut m = m;
                loop {
                    match tx.try_send(m) {
                        Ok(()) => break,
                        Err(e) if matches!(e.error, Error::WouldBlock) => {
                            assert!(start.elapsed() < PATIENCE, "try_send never succeeded");
                            m = e.into_inner();
                            std::thread::yield_now();
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            }
        }
    }
    if arg("die") == "1" {
        die_now();
    }
}

/// What one consumer saw of each producer.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    count: u64,
    sum: u64,
    xor: u64,
    last: Option<u64>,
}

impl Seen {
    fn add(&mut self, m: &Msg) {
        assert!(valid(m), "torn or invalid message {m:?}");
        if let Some(last) = self.last {
            assert!(
                m[1] > last,
                "producer {} out of order: {} after {last}",
                m[0],
                m[1]
            );
        }
        self.last = Some(m[1]);
        self.count += 1;
        self.sum = self.sum.wrapping_add(m[2]);
        self.xor ^= m[2];
    }

    /// What seeing `seqs` of producer `id` exactly once gives.
    fn expected(id: u64, seqs: impl Iterator<Item = u64>) -> Seen {
        let mut s = Seen::default();
        for seq in seqs {
            s.add(&msg(id, seq));
        }
        s
    }
}

/// Receives until every producer is gone, through every receiving path in turn; reports
/// per producer the count, the sum and the xor of the check words.
fn consume() {
    let mut rx = mpmc::Receiver::<Msg>::open(&arg("name")).unwrap();
    let mut seen: HashMap<u64, Seen> = HashMap::new();
    for i in 0u64.. {
        let got = match i % 3 {
            0 => rx.recv_timeout(PATIENCE),
            1 => rx.recv(),
            _ => {
                let start = Instant::now();
                loop {
                    match rx.try_recv() {
                        Err(Error::WouldBlock) => {
                            assert!(start.elapsed() < PATIENCE, "try_recv: nothing for too long");
                            std::thread::yield_now();
                        }
                        other => break other,
                    }
                }
            }
        };
        match got {
            Ok(m) => seen.entry(m[0]).or_default().add(&m),
            Err(Error::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    for (id, s) in &seen {
        report(&format!("count{id}"), s.count);
        report(&format!("sum{id}"), s.sum);
        report(&format!("xor{id}"), s.xor);
    }
    report("lost", rx.lost());
}

/// Adds up what the consumers reported about producer `id`.
fn total(outcomes: &[Outcome], id: u64) -> Seen {
    let mut t = Seen::default();
    for o in outcomes {
        if let Some(c) = o.values.get(&format!("count{id}")) {
            t.count += c.parse::<u64>().unwrap();
            t.sum = t.sum.wrapping_add(o.get::<u64>(&format!("sum{id}")));
            t.xor ^= o.get::<u64>(&format!("xor{id}"));
        }
    }
    t
}

fn assert_exactly_once(outcomes: &[Outcome], id: u64, n: u64) {
    let got = total(outcomes, id);
    let want = Seen::expected(id, 0..n);
    assert_eq!(
        (got.count, got.sum, got.xor),
        (want.count, want.sum, want.xor),
        "producer {id}: messages lost or duplicated"
    );
}

fn args<'a>(name: &str, kv: &[(&'a str, &str)]) -> Vec<(&'a str, String)> {
    let mut v = vec![("name", name.to_owned())];
    v.extend(kv.iter().map(|(k, val)| (*k, (*val).to_owned())));
    v
}

/// `args` plus the start handshake's.
fn producer_args<'a>(names: &Names, name: &str, kv: &[(&'a str, &str)]) -> Vec<(&'a str, String)> {
    let mut v = args(name, kv);
    v.extend(Start::args(names));
    v
}

#[test]
fn two_producers_two_consumers_a_million_messages_each_exactly_once_in_order() {
    const N: u64 = 1_000_000;
    let names = Names::new("mpmc_2x2");
    let name = names.name("q");
    // The creator's handle keeps the name; it never receives.
    let anchor = mpmc::Receiver::<Msg>::create(&name, 1024).unwrap();
    let start = Start::new(&names);
    let n = N.to_string();
    let consumers: Vec<_> = (0..2)
        .map(|_| spawn("consume", &args(&name, &[])))
        .collect();
    let producers: Vec<_> = (0..2)
        .map(|id| {
            let busy = if id == 0 { "0" } else { "1" };
            spawn(
                "produce",
                &producer_args(
                    &names,
                    &name,
                    &[
                        ("id", &id.to_string()),
                        ("n", &n),
                        ("busy", busy),
                        ("die", "0"),
                    ],
                ),
            )
        })
        .collect();
    start.release(2);
    for p in producers {
        finish_ok(p);
    }
    let outcomes: Vec<_> = consumers.into_iter().map(finish_ok).collect();
    for id in 0..2 {
        assert_exactly_once(&outcomes, id, N);
    }
    assert_eq!(anchor.lost(), 0);
    assert!(anchor.is_empty());
    drop((anchor, start));
    assert!(names.leftovers().is_empty());
}

/// Messages of producer `id` arrived exactly once, and form a gap-free prefix of its
/// sequence (it was killed at an unknown point).
fn assert_prefix(outcomes: &[Outcome], id: u64) {
    let got = total(outcomes, id);
    let want = Seen::expected(id, 0..got.count);
    assert_eq!(
        (got.sum, got.xor),
        (want.sum, want.xor),
        "killed producer {id}: {} messages, not a gap-free prefix",
        got.count
    );
}

#[test]
fn producers_killed_at_random_points_leave_gap_free_prefixes_and_stall_nobody() {
    const N: u64 = 50_000;
    for (round, delay_ms) in [1u64, 3, 7, 15, 30].into_iter().enumerate() {
        let names = Names::new(&format!("mpmc_random_kill{round}"));
        let name = names.name("q");
        let anchor = mpmc::Receiver::<Msg>::create(&name, 32).unwrap();
        let start = Start::new(&names);
        let n = N.to_string();
        let consumers: Vec<_> = (0..2)
            .map(|_| spawn("consume", &args(&name, &[])))
            .collect();
        // Producers 0 and 1 finish; 2 and 3 would run for ever and are killed.
        let producers: Vec<_> = (0..4u64)
            .map(|id| {
                let n = if id < 2 { n.as_str() } else { "1000000000" };
                spawn(
                    "produce",
                    &producer_args(
                        &names,
                        &name,
                        &[
                            ("id", &id.to_string()),
                            ("n", n),
                            ("busy", "0"),
                            ("die", "0"),
                        ],
                    ),
                )
            })
            .collect();
        start.release(4);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let mut producers = producers.into_iter();
        let keep: Vec<_> = producers.by_ref().take(2).collect();
        for mut victim in producers {
            victim.kill().unwrap();
            assert_eq!(finish(victim).signal, Some(libc::SIGKILL));
            std::thread::sleep(Duration::from_millis(delay_ms));
        }
        for p in keep {
            finish_ok(p);
        }
        let outcomes: Vec<_> = consumers.into_iter().map(finish_ok).collect();
        assert_exactly_once(&outcomes, 0, N);
        assert_exactly_once(&outcomes, 1, N);
        assert_prefix(&outcomes, 2);
        assert_prefix(&outcomes, 3);
        // At most the one message each victim had claimed and not published.
        assert!(anchor.lost() <= 2, "round {round}: lost {}", anchor.lost());
        drop((anchor, start));
        assert!(names.leftovers().is_empty());
    }
}

/// Sends `k` messages as producer `id`, then claims a slot and dies at `step`.
fn die_after_loan() {
    let mut tx = mpmc::Sender::<Msg>::open(&arg("name")).unwrap();
    let id: u64 = arg_as("id");
    let k: u64 = arg_as("k");
    attached();
    for seq in 0..k {
        tx.send(msg(id, seq)).unwrap();
    }
    let m = msg(id, k);
    let mut slot = tx.loan().unwrap();
    match arg("step").as_str() {
        "after_loan" => die_now(),
        "mid_write" => {
            slot[0] = m[0];
            slot[1] = m[1];
            die_now();
        }
        "before_commit" => {
            *slot = m;
            die_now();
        }
        "after_commit" => {
            *slot = m;
            slot.commit().unwrap();
            die_now();
        }
        other => panic!("unknown step {other}"),
    }
}

#[test]
fn a_producer_killed_between_claim_and_publish_is_skipped_while_others_keep_sending() {
    const N: u64 = 20_000;
    const K: u64 = 50;
    let names = Names::new("mpmc_kill_tx");
    let name = names.name("q");
    // A small queue, so that the dead slot comes round while the others keep sending.
    let anchor = mpmc::Receiver::<Msg>::create(&name, 16).unwrap();
    let start = Start::new(&names);
    let n = N.to_string();
    let consumers: Vec<_> = (0..2)
        .map(|_| spawn("consume", &args(&name, &[])))
        .collect();
    let k = K.to_string();
    let dier = spawn(
        "die_after_loan",
        &producer_args(
            &names,
            &name,
            &[("id", "2"), ("k", &k), ("step", "before_commit")],
        ),
    );
    let producers: Vec<_> = (0..2)
        .map(|id| {
            spawn(
                "produce",
                &producer_args(
                    &names,
                    &name,
                    &[
                        ("id", &id.to_string()),
                        ("n", &n),
                        ("busy", "0"),
                        ("die", "0"),
                    ],
                ),
            )
        })
        .collect();
    start.release(3);
    let o = finish(dier);
    assert_eq!(o.signal, Some(libc::SIGKILL), "{o:?}");
    for p in producers {
        finish_ok(p);
    }
    let outcomes: Vec<_> = consumers.into_iter().map(finish_ok).collect();
    assert_exactly_once(&outcomes, 0, N);
    assert_exactly_once(&outcomes, 1, N);
    // Every committed message of the dead producer, and not the one it never published.
    assert_exactly_once(&outcomes, 2, K);
    assert_eq!(anchor.lost(), 1, "the dead producer's slot is skipped once");
    for o in &outcomes {
        assert_eq!(o.get::<u64>("lost"), 1);
    }
    drop((anchor, start));
    assert!(names.leftovers().is_empty());
}

#[test]
fn a_producer_killed_at_each_step_loses_nothing_committed_and_delivers_nothing_torn() {
    for (step, committed) in [
        ("after_loan", 5),
        ("mid_write", 5),
        ("before_commit", 5),
        ("after_commit", 6),
    ] {
        let names = Names::new(&format!("mpmc_kill_{step}"));
        let name = names.name("q");
        let mut rx = mpmc::Receiver::<Msg>::create(&name, 16).unwrap();
        let start = Start::new(&names);
        let dier = spawn(
            "die_after_loan",
            &producer_args(&names, &name, &[("id", "2"), ("k", "5"), ("step", step)]),
        );
        start.release(1);
        let o = finish(dier);
        assert_eq!(o.signal, Some(libc::SIGKILL), "{step}: {o:?}");
        // Another producer sends after the dead one's claim.
        let mut tx = mpmc::Sender::<Msg>::open(&name).unwrap();
        for seq in 0..3 {
            tx.send(msg(0, seq)).unwrap();
        }
        let mut got = Vec::new();
        for _ in 0..committed + 3 {
            let m = rx.recv_timeout(PATIENCE).unwrap();
            assert!(valid(&m), "{step}: torn message {m:?}");
            got.push((m[0], m[1]));
        }
        let want: Vec<_> = (0..committed)
            .map(|s| (2, s))
            .chain((0..3).map(|s| (0, s)))
            .collect();
        assert_eq!(got, want, "{step}");
        let lost = if step == "after_commit" { 0 } else { 1 };
        assert_eq!(rx.lost(), lost, "{step}");
        assert!(matches!(rx.try_recv(), Err(Error::WouldBlock)), "{step}");
        drop(tx);
        assert!(
            matches!(rx.recv_timeout(PATIENCE), Err(Error::Disconnected)),
            "{step}"
        );
        drop((rx, start));
        assert!(names.leftovers().is_empty());
    }
}

fn die_holding_guard() {
    let mut rx = mpmc::Receiver::<u64>::open(&arg("name")).unwrap();
    let g = rx.recv_ref_timeout(PATIENCE).unwrap();
    report("held", *g);
    die_now();
}

#[test]
fn a_consumer_killed_holding_a_message_does_not_block_the_producers() {
    let names = Names::new("mpmc_kill_rx");
    let name = names.name("q");
    let mut tx = mpmc::Sender::<u64>::create(&name, 4).unwrap();
    let mut rx = mpmc::Receiver::<u64>::open(&name).unwrap(); // alive, idle for now
    for i in 0..4 {
        tx.send(i).unwrap();
    }
    let o = finish(spawn("die_holding_guard", &args(&name, &[])));
    assert_eq!(o.signal, Some(libc::SIGKILL), "{o:?}");
    assert_eq!(o.get::<u64>("held"), 0);
    // Full: slot 0 is held by the dead consumer. The producer frees it once it notices.
    tx.send_timeout(4, PATIENCE).unwrap();
    assert_eq!(tx.lost(), 1);
    let got: Vec<u64> = (0..4).map(|_| rx.recv().unwrap()).collect();
    assert_eq!(got, [1, 2, 3, 4]);
    // And the flow goes on, lap after lap.
    for i in 5..50 {
        tx.send_timeout(i, PATIENCE).unwrap();
        assert_eq!(rx.recv().unwrap(), i);
    }
    drop((tx, rx));
    assert!(names.leftovers().is_empty());
}

#[test]
fn a_new_consumer_taking_a_dead_ones_registration_frees_the_message_it_held() {
    let names = Names::new("mpmc_settle_rx");
    let name = names.name("q");
    let mut tx = mpmc::Sender::<u64>::create(&name, 2).unwrap();
    for i in 0..2 {
        tx.send(i).unwrap();
    }
    // The dead consumer takes registration 0 and holds message 0.
    let o = finish(spawn("die_holding_guard", &args(&name, &[])));
    assert_eq!(o.signal, Some(libc::SIGKILL), "{o:?}");
    // The next consumer takes that registration over and settles what it held.
    let mut rx = mpmc::Receiver::<u64>::open(&name).unwrap();
    assert_eq!(rx.lost(), 1);
    tx.try_send(2).unwrap();
    assert_eq!(
        rx.try_iter().collect::<Result<Vec<_>, _>>().unwrap(),
        [1, 2]
    );
    drop((tx, rx));
    assert!(names.leftovers().is_empty());
}

fn attach_and_die() {
    let _rx = mpmc::Receiver::<u64>::open(&arg("name")).unwrap();
    die_now();
}

#[test]
fn disconnected_once_every_sender_is_gone_and_the_queue_drained() {
    let names = Names::new("mpmc_disc");
    let name = names.name("q");
    let mut rx = mpmc::Receiver::<Msg>::create(&name, 8).unwrap();
    // No sender ever attached: that is waiting, not disconnection.
    assert!(!rx.is_disconnected());
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    assert!(matches!(rx.try_recv(), Err(Error::WouldBlock)));
    // One producer closes cleanly, the other dies; both after their last send.
    let start = Start::new(&names);
    let a = spawn(
        "produce",
        &producer_args(
            &names,
            &name,
            &[("id", "0"), ("n", "100"), ("busy", "0"), ("die", "0")],
        ),
    );
    let b = spawn(
        "produce",
        &producer_args(
            &names,
            &name,
            &[("id", "1"), ("n", "100"), ("busy", "0"), ("die", "1")],
        ),
    );
    start.release(2);
    let mut seen = [Seen::default(), Seen::default()];
    loop {
        match rx.recv_timeout(PATIENCE) {
            Ok(m) => seen[m[0] as usize].add(&m),
            Err(Error::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    finish_ok(a);
    assert_eq!(finish(b).signal, Some(libc::SIGKILL));
    for (id, s) in seen.iter().enumerate() {
        assert_eq!(s.count, 100, "producer {id}");
    }
    assert!(rx.is_disconnected());
    // `try_recv` asks the kernel about dead peers at most every 10 ms.
    common::wait_until(PATIENCE, || {
        matches!(rx.try_recv(), Err(Error::Disconnected))
    });
    assert_eq!(rx.lost(), 0);
    drop((rx, start));

    // The sending side: full, and every receiver gone (one closed, one died).
    let name = names.name("q2");
    let mut tx = mpmc::Sender::<u64>::create(&name, 2).unwrap();
    let rx = mpmc::Receiver::<u64>::open(&name).unwrap();
    assert_eq!(
        finish(spawn("attach_and_die", &args(&name, &[]))).signal,
        Some(libc::SIGKILL)
    );
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    assert!(!tx.is_disconnected());
    assert!(matches!(
        tx.try_send(3).unwrap_err().error,
        Error::WouldBlock
    ));
    drop(rx);
    let e = tx.send(3).unwrap_err();
    assert!(matches!(e.error, Error::Disconnected), "{e}");
    assert_eq!(e.into_inner(), 3);
    assert!(tx.is_disconnected());
    // `try_send` asks the kernel about dead peers at most every 10 ms.
    common::wait_until(PATIENCE, || {
        matches!(tx.try_send(3).unwrap_err().error, Error::Disconnected)
    });
    drop(tx);
    assert!(names.leftovers().is_empty());
}

#[test]
fn try_and_timeout_forms_do_not_block() {
    let names = Names::new("mpmc_try");
    let name = names.name("q");
    // Any capacity works, not only powers of two.
    let mut tx = mpmc::Sender::<u32>::create(&name, 3).unwrap();
    let mut rx = mpmc::Receiver::<u32>::open(&name).unwrap();
    assert_eq!(tx.capacity(), 3);
    assert!(matches!(rx.try_recv(), Err(Error::WouldBlock)));
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(5)),
        Err(Error::Timeout)
    ));
    tx.try_send(1).unwrap();
    tx.send(2).unwrap();
    tx.send_timeout(3, Duration::from_millis(5)).unwrap();
    let e = tx.try_send(4).unwrap_err();
    assert!(matches!(e.error, Error::WouldBlock));
    assert_eq!(e.into_inner(), 4);
    let e = tx.send_timeout(4, Duration::from_millis(5)).unwrap_err();
    assert!(matches!(e.error, Error::Timeout));
    assert!(matches!(tx.try_loan(), Err(Error::WouldBlock)));
    assert_eq!((tx.len(), rx.len()), (3, 3));
    assert_eq!(
        rx.try_iter().collect::<Result<Vec<_>, _>>().unwrap(),
        vec![1, 2, 3]
    );
    assert!(rx.is_empty());
    // A loan dropped without commit is skipped, not delivered, and not counted lost.
    drop(tx.loan().unwrap());
    tx.send(5).unwrap();
    assert_eq!(rx.recv().unwrap(), 5);
    assert_eq!(rx.lost(), 0);
    // A forgotten guard is released by the next receive.
    tx.send(6).unwrap();
    tx.send(7).unwrap();
    std::mem::forget(rx.recv_ref().unwrap());
    assert_eq!(rx.recv().unwrap(), 7);
    for i in 0..6 {
        tx.send_timeout(i, PATIENCE).unwrap();
        assert_eq!(rx.recv().unwrap(), i);
    }
    drop((tx, rx));
    assert!(names.leftovers().is_empty());
}

#[test]
fn registrations_are_bounded_and_layouts_checked() {
    let names = Names::new("mpmc_reg");
    let name = names.name("q");
    let tx = mpmc::Sender::<u8>::create(&name, 1).unwrap();
    let rxs: Vec<_> = (0..mpmc::MAX_ENDPOINTS)
        .map(|_| mpmc::Receiver::<u8>::open(&name).unwrap())
        .collect();
    assert!(matches!(
        mpmc::Receiver::<u8>::open(&name),
        Err(Error::Busy { .. })
    ));
    drop(rxs);
    let mut rx = mpmc::Receiver::<u8>::open(&name).unwrap();
    assert!(matches!(
        mpmc::Receiver::<u64>::open(&name),
        Err(Error::LayoutMismatch { .. })
    ));
    assert!(matches!(
        mpmc::Sender::<u8>::create(&names.name("zero"), 0),
        Err(Error::InvalidArgument(_))
    ));
    // Capacity 1: every message takes the one slot in turn.
    let mut tx = tx;
    for i in 0..10 {
        tx.send(i).unwrap();
        assert!(matches!(
            tx.try_send(99).unwrap_err().error,
            Error::WouldBlock
        ));
        assert_eq!(rx.recv().unwrap(), i);
    }
    drop((tx, rx));
    assert!(names.leftovers().is_empty());
}

#[test]
fn corrupted_stamps_and_positions_are_errors_not_hangs() {
    use shmkit::__layout::{mpmc as layout, segment, slot};
    use std::os::unix::fs::FileExt;
    // Segment header, then the queue header (tail, head, two signals, the lost counter,
    // the registrations), then the slots (stamp, value).
    const TAIL: u64 = (segment::SIZE + layout::TAIL) as u64;
    const HEAD: u64 = (segment::SIZE + layout::HEAD) as u64;
    const SLOT0: u64 = (segment::SIZE + layout::SIZE + slot::STAMP) as u64;
    let names = Names::new("mpmc_corrupt");
    let name = names.name("q");
    let mut rx = mpmc::Receiver::<u64>::create(&name, 8).unwrap();
    let mut tx = mpmc::Sender::<u64>::open(&name).unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/shmkit.{name}"))
        .unwrap();
    let put = |at: u64, v: u64| file.write_all_at(&v.to_le_bytes(), at).unwrap();

    // A stamp no peer writes.
    tx.send(1).unwrap();
    put(SLOT0, 0xdead_beef);
    assert!(matches!(rx.try_recv(), Err(Error::Corrupt { .. })));
    assert!(matches!(
        rx.recv_timeout(PATIENCE),
        Err(Error::Corrupt { .. })
    ));
    put(SLOT0, 1); // repaired: published at position 0
    assert_eq!(rx.recv().unwrap(), 1);

    // A tail that is not a position.
    put(TAIL, u64::MAX);
    assert!(matches!(
        tx.try_send(2).unwrap_err().error,
        Error::Corrupt { .. }
    ));
    assert!(matches!(
        tx.send_timeout(2, PATIENCE).unwrap_err().error,
        Error::Corrupt { .. }
    ));
    assert!(matches!(
        rx.recv_timeout(PATIENCE),
        Err(Error::Corrupt { .. })
    ));

    // A plausible tail ahead of what anybody claimed: nobody claims those positions.
    put(TAIL, 4);
    assert!(matches!(
        rx.recv_timeout(PATIENCE),
        Err(Error::Corrupt { .. })
    ));
    put(TAIL, 1);

    // A head that is not a position.
    put(HEAD, 0x0123_4567_89ab_cdef);
    assert!(matches!(rx.try_recv(), Err(Error::Corrupt { .. })));
    assert!(matches!(
        rx.recv_timeout(PATIENCE),
        Err(Error::Corrupt { .. })
    ));
    put(HEAD, 1);
    tx.send(3).unwrap();
    assert_eq!(rx.recv().unwrap(), 3);

    drop((tx, rx));
    assert!(names.leftovers().is_empty());
}

/// Found by the `channel_model` fuzz target: a slot given back twice while `head` still
/// waited behind it is two laps ahead; the message after it must still be delivered.
#[test]
fn slots_given_back_repeatedly_behind_a_waiting_head_do_not_block_later_messages() {
    let names = Names::new("mpmc_double_skip");
    let name = names.name("q");
    let mut tx = mpmc::Sender::<u64>::create(&name, 2).unwrap();
    let mut rx = mpmc::Receiver::<u64>::open(&name).unwrap();
    tx.send(1).unwrap();
    drop(tx.loan().unwrap()); // position 1 given back
    assert_eq!(rx.recv().unwrap(), 1);
    for _ in 0..5 {
        drop(tx.loan().unwrap()); // given back again and again, head still behind
    }
    // Fill it: a sender blocked on the full queue, with `head` laps behind, is told
    // "timeout", not "corrupt", when it checks for dead peers.
    let mut sent = Vec::new();
    for v in 2.. {
        match tx.try_send(v) {
            Ok(()) => sent.push(v),
            Err(e) if matches!(e.error, Error::WouldBlock) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(!sent.is_empty());
    let e = tx.send_timeout(99, Duration::from_millis(50)).unwrap_err();
    assert!(matches!(e.error, Error::Timeout), "{e}");
    for v in sent {
        assert_eq!(rx.try_recv().unwrap(), v);
    }
    tx.send(100).unwrap();
    assert_eq!(rx.recv().unwrap(), 100);
    assert!(matches!(rx.try_recv(), Err(Error::WouldBlock)));
}
