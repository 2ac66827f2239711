//! Async waits across real processes (`aio::Async` and the `_async` waits under tokio): a
//! million messages from a producer process, a producer task sending into a blocking
//! consumer process, both directions at once, a pipe, a queue with out-of-line items,
//! `select!` over two channels and a timeout, futures dropped mid-wait, a producer killed
//! while the receiver waits, events and semaphores set by another process, receivers as
//! streams, and no doorbell rung (no syscall) when no async waiter exists.

#![cfg(feature = "tokio")]

mod common;

use std::time::Duration;

use common::{arg, arg_as, finish, finish_ok, multi_thread_runtime, report, runtime, spawn, Names};
use shmkit::aio::Async;
use shmkit::{spsc, Error, Event, Pipe, Queue, Semaphore};

#[test]
fn __child() {
    common::child_main(&[
        ("count_up", count_up),
        ("slow_pair", slow_pair),
        ("stall", stall),
        ("sum_up", sum_up),
        ("echo", echo),
        ("echo_late", echo_late),
        ("pipe_echo", pipe_echo),
        ("queue_lengths", queue_lengths),
        ("set_later", set_later),
        ("release_later", release_later),
        ("take_one_then_stall", take_one_then_stall),
    ]);
}

/// Child: takes one value from spsc `ring` and one item from queue `queue`, then waits to
/// be killed.
fn take_one_then_stall() {
    let mut rx = spsc::Receiver::<u64>::open(&arg("ring")).unwrap();
    let mut q = Queue::<String>::open(&arg("queue")).unwrap();
    rx.recv().unwrap();
    q.get().unwrap();
    report("took", 1);
    std::thread::sleep(Duration::from_secs(600));
}

/// Child: receives `n` values on spsc `name` (blocking, slowly now and then, so that the
/// sender fills the ring and waits), checks that they are 1..=n in order, reports the sum.
fn sum_up() {
    let mut rx = spsc::Receiver::<u64>::open(&arg("name")).unwrap();
    let mut sum = 0u64;
    for i in 1..=arg_as::<u64>("n") {
        assert_eq!(rx.recv().unwrap(), i, "in order, none lost, none twice");
        sum += i;
        if i % 1000 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    report("sum", sum);
}

/// Child: answers every value on spsc `req` with the value plus one on spsc `rep`
/// (blocking), until `req`'s sender is gone.
fn echo() {
    let mut rx = spsc::Receiver::<u64>::open(&arg("req")).unwrap();
    let mut tx = spsc::Sender::<u64>::open(&arg("rep")).unwrap();
    for v in rx.iter() {
        tx.send(v.unwrap() + 1).unwrap();
    }
}

/// Child: as `echo`, but answers every fourth request (values 3, 7, ...) only after 5 ms.
fn echo_late() {
    let mut rx = spsc::Receiver::<u64>::open(&arg("req")).unwrap();
    let mut tx = spsc::Sender::<u64>::open(&arg("rep")).unwrap();
    for v in rx.iter() {
        let v = v.unwrap();
        if v % 4 == 3 {
            std::thread::sleep(Duration::from_millis(5));
        }
        tx.send(v + 1).unwrap();
    }
}

/// Child: answers every frame on pipe `name` with the frame reversed, until the other end
/// is gone.
fn pipe_echo() {
    let mut p = Pipe::open(&arg("name")).unwrap();
    loop {
        match p.recv() {
            Ok(mut m) => {
                m.reverse();
                p.send(&m).unwrap();
            }
            Err(Error::Disconnected) => return,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Child: gets strings from queue `name` until `"end"`, reports how many and their total
/// length.
fn queue_lengths() {
    let mut q = Queue::<String>::open(&arg("name")).unwrap();
    let (mut n, mut len) = (0u64, 0u64);
    loop {
        let s = q.get().unwrap();
        if s == "end" {
            break;
        }
        n += 1;
        len += s.len() as u64;
    }
    report("n", n);
    report("len", len);
}

/// Child: sets event `name` after a pause.
fn set_later() {
    let e = Event::open(&arg("name")).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    e.set();
}

/// Child: releases `n` permits of semaphore `name`, one every few milliseconds.
fn release_later() {
    let s = Semaphore::open(&arg("name")).unwrap();
    for _ in 0..arg_as::<u32>("n") {
        std::thread::sleep(Duration::from_millis(3));
        s.release().unwrap();
    }
}

/// Child: sends 1..=n on the spsc channel `name` (blocking), then reports its rings.
fn count_up() {
    let mut tx = spsc::Sender::<u64>::open(&arg("name")).unwrap();
    for i in 1..=arg_as::<u64>("n") {
        tx.send(i).unwrap();
    }
    report("rings", shmkit::__private::doorbell_rings());
}

/// Child: sends 1..=n on `a` and on `b`, alternating, with pauses (so that the receiver
/// waits), then ends.
fn slow_pair() {
    let mut a = spsc::Sender::<u64>::open(&arg("a")).unwrap();
    let mut b = Queue::<String>::open(&arg("b")).unwrap();
    for i in 1..=arg_as::<u64>("n") {
        a.send(i).unwrap();
        b.put(&format!("b{i}")).unwrap();
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Child: sends 10 messages, then waits to be killed.
fn stall() {
    let mut tx = spsc::Sender::<u64>::open(&arg("name")).unwrap();
    for i in 0..10 {
        tx.send(i).unwrap();
    }
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_tokio_task_receives_a_million_messages_from_a_producer_process() {
    let names = Names::new("aio-million");
    let name = names.name("c");
    let mut rx = Async::new(spsc::Receiver::<u64>::create(&name, 1024).unwrap()).unwrap();
    const N: u64 = 1_000_000;
    let child = spawn("count_up", &[("name", name.clone()), ("n", N.to_string())]);
    let rt = multi_thread_runtime();
    let sum = rt.block_on(async {
        let mut sum = 0u64;
        let mut next = 1;
        loop {
            match rx.recv().await {
                Ok(v) => {
                    assert_eq!(v, next, "in order, none lost, none twice");
                    next += 1;
                    sum += v;
                }
                Err(Error::Disconnected) => return sum,
                Err(e) => panic!("{e}"),
            }
        }
    });
    assert_eq!(sum, N * (N + 1) / 2);
    finish_ok(child);
}

#[test]
fn select_over_two_channels_and_a_timeout_loses_nothing_and_dropped_futures_leave_no_trace() {
    let names = Names::new("aio-select");
    let (a, b) = (names.name("a"), names.name("b"));
    let mut ra = Async::new(spsc::Receiver::<u64>::create(&a, 16).unwrap()).unwrap();
    let mut rb = Async::new(Queue::<String>::create(&b, 16).unwrap()).unwrap();
    const N: u64 = 300;
    let child = spawn(
        "slow_pair",
        &[("a", a.clone()), ("b", b.clone()), ("n", N.to_string())],
    );
    let (got_a, got_b, timeouts) = runtime().block_on(async {
        let (mut got_a, mut got_b, mut timeouts) = (Vec::new(), Vec::new(), 0u32);
        while got_a.len() < N as usize || got_b.len() < N as usize {
            // Every round drops the futures that did not finish: a pending `recv` is
            // cancelled mid-wait many times.
            tokio::select! {
                r = ra.recv(), if got_a.len() < N as usize => got_a.push(r.unwrap()),
                r = rb.recv(), if got_b.len() < N as usize => got_b.push(r.unwrap()),
                _ = tokio::time::sleep(Duration::from_millis(1)) => timeouts += 1,
            }
        }
        (got_a, got_b, timeouts)
    });
    assert_eq!(got_a, (1..=N).collect::<Vec<_>>());
    assert_eq!(got_b, (1..=N).map(|i| format!("b{i}")).collect::<Vec<_>>());
    let _ = timeouts; // how often the timer won depends on scheduling; any count is fine
    finish_ok(child);
    // After the producer left, both ends say so.
    runtime().block_on(async {
        assert!(matches!(ra.recv().await, Err(Error::Disconnected)));
        assert!(matches!(rb.recv().await, Err(Error::Disconnected)));
    });
}

#[test]
fn a_producer_killed_while_the_async_receiver_waits_is_disconnected() {
    let names = Names::new("aio-kill");
    let name = names.name("c");
    let mut rx = Async::new(spsc::Receiver::<u64>::create(&name, 16).unwrap()).unwrap();
    let mut child = spawn("stall", &[("name", name.clone())]);
    runtime().block_on(async {
        for i in 0..10 {
            assert_eq!(rx.recv().await.unwrap(), i);
        }
        let waiting = tokio::spawn(async move { rx.recv().await });
        tokio::time::sleep(Duration::from_millis(20)).await; // it parks
        child.kill().unwrap();
        let r = tokio::time::timeout(Duration::from_secs(30), waiting).await;
        assert!(matches!(r, Ok(Ok(Err(Error::Disconnected)))), "{r:?}");
    });
    let _ = finish(child);
}

#[test]
fn without_async_waiters_a_producer_rings_no_doorbell() {
    let names = Names::new("aio-quiet");
    let name = names.name("c");
    let mut rx = spsc::Receiver::<u64>::create(&name, 64).unwrap();
    let child = spawn(
        "count_up",
        &[("name", name.clone()), ("n", "100000".into())],
    );
    let mut sum = 0;
    for v in rx.iter() {
        sum += v.unwrap();
    }
    assert_eq!(sum, 100_000 * 100_001 / 2);
    // The blocking receiver slept many times (the producer woke it with futex calls), but
    // nothing registered a doorbell: not one `sendto`.
    assert_eq!(finish_ok(child).get::<u64>("rings"), 0);
}

#[test]
fn a_joinable_queue_is_awaited_and_joined() {
    let names = Names::new("aio-jq");
    let name = names.name("q");
    let mut producer = shmkit::JoinableQueue::<String>::create(&name, 8).unwrap();
    let mut consumer = Async::new(shmkit::JoinableQueue::<String>::open(&name).unwrap()).unwrap();
    runtime().block_on(async {
        let waiting = tokio::spawn(async move {
            let s = consumer.recv().await.unwrap();
            consumer.get_mut().task_done().unwrap();
            s
        });
        tokio::time::sleep(Duration::from_millis(5)).await; // it parks first
        producer.put(&"job".to_string()).unwrap();
        assert_eq!(waiting.await.unwrap(), "job");
    });
    producer.join_timeout(Duration::from_secs(30)).unwrap();
}

#[test]
fn recv_many_takes_batches_in_order_and_then_says_disconnected() {
    let names = Names::new("aio-many");
    let name = names.name("c");
    let mut rx = Async::new(spsc::Receiver::<u64>::create(&name, 256).unwrap()).unwrap();
    const N: u64 = 200_000;
    let child = spawn("count_up", &[("name", name.clone()), ("n", N.to_string())]);
    let got = runtime().block_on(async {
        let mut all = Vec::new();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match rx.recv_many(&mut buf, 100).await {
                Ok(k) => {
                    assert!((1..=100).contains(&k) && k == buf.len());
                    all.extend_from_slice(&buf);
                }
                Err(Error::Disconnected) => return all,
                Err(e) => panic!("{e}"),
            }
        }
    });
    assert_eq!(got, (1..=N).collect::<Vec<_>>());
    finish_ok(child);
}

#[test]
fn a_producer_task_sends_into_a_blocking_consumer_process() {
    let names = Names::new("aio-send");
    let name = names.name("c");
    // A small ring, and a consumer that pauses: the sender finds it full many times.
    let mut tx = Async::new(spsc::Sender::<u64>::create(&name, 16).unwrap()).unwrap();
    const N: u64 = 200_000;
    let child = spawn("sum_up", &[("name", name.clone()), ("n", N.to_string())]);
    runtime().block_on(async {
        for i in 1..=N {
            tx.send(i).await.unwrap();
        }
    });
    assert_eq!(finish_ok(child).get::<u64>("sum"), N * (N + 1) / 2);
}

#[test]
fn a_task_sends_and_another_receives_at_once_through_a_blocking_echo_process() {
    let names = Names::new("aio-both");
    let (req, rep) = (names.name("req"), names.name("rep"));
    let mut tx = Async::new(spsc::Sender::<u64>::create(&req, 8).unwrap()).unwrap();
    let mut rx = Async::new(spsc::Receiver::<u64>::create(&rep, 8).unwrap()).unwrap();
    let child = spawn("echo", &[("req", req.clone()), ("rep", rep.clone())]);
    const N: u64 = 100_000;
    let rt = multi_thread_runtime();
    let got = rt.block_on(async {
        let sending = tokio::spawn(async move {
            for i in 0..N {
                tx.send(i).await.unwrap();
            }
            // `tx` drops here: the echo process sees Disconnected and exits.
        });
        let receiving = tokio::spawn(async move {
            let mut got = Vec::with_capacity(N as usize);
            loop {
                match rx.recv().await {
                    Ok(v) => got.push(v),
                    Err(Error::Disconnected) => return got,
                    Err(e) => panic!("{e}"),
                }
            }
        });
        sending.await.unwrap();
        receiving.await.unwrap()
    });
    assert_eq!(got, (1..=N).collect::<Vec<_>>());
    finish_ok(child);
}

/// A request that wakes the sleeping echo process opens this thread's handoff window: the
/// async receive polls for the reply through the executor before it arms its doorbell. A
/// reply that comes after the window (every fourth one here) wakes it through the
/// doorbell. (`aio::bell`'s unit tests check the window's polls one by one.)
#[test]
fn async_round_trips_to_a_sleeping_process_get_every_reply_within_or_after_the_window() {
    let names = Names::new("aio-window");
    let (req, rep) = (names.name("req"), names.name("rep"));
    let mut tx = spsc::Sender::<u64>::create(&req, 8).unwrap();
    let mut rx = Async::new(spsc::Receiver::<u64>::create(&rep, 8).unwrap()).unwrap();
    let child = spawn("echo_late", &[("req", req.clone()), ("rep", rep.clone())]);
    runtime().block_on(async {
        for i in 0..200 {
            // Long enough for the echo process to go to sleep: the request wakes it.
            tokio::time::sleep(Duration::from_millis(1)).await;
            tx.send(i).unwrap();
            assert_eq!(rx.recv().await.unwrap(), i + 1, "every reply, in order");
        }
    });
    drop(tx);
    finish_ok(child);
}

#[test]
fn an_async_pipe_sends_and_receives_frames_with_a_blocking_process() {
    let names = Names::new("aio-pipe");
    let name = names.name("p");
    let mut p = Async::new(Pipe::create(&name, 4096).unwrap()).unwrap();
    let child = spawn("pipe_echo", &[("name", name.clone())]);
    runtime().block_on(async {
        for i in 0..2_000u32 {
            // Up to 1 KiB: a few frames fill the ring, so sends wait too.
            let m: Vec<u8> = (0..(i % 1024)).map(|k| (k ^ i) as u8).collect();
            p.send(&m).await.unwrap();
            let back = p.recv().await.unwrap();
            assert_eq!(back, m.iter().rev().copied().collect::<Vec<_>>());
        }
    });
    drop(p);
    finish_ok(child);
}

#[test]
fn an_async_queue_producer_sends_inline_and_out_of_line_items() {
    let names = Names::new("aio-qsend");
    let name = names.name("q");
    let mut q = Async::new(Queue::<String>::create(&name, 4).unwrap()).unwrap();
    let child = spawn("queue_lengths", &[("name", name.clone())]);
    let mut len = 0u64;
    const N: u64 = 3_000;
    runtime().block_on(async {
        for i in 0..N {
            // Every tenth item is longer than a slot: it travels out of line.
            let s = "x".repeat(if i % 10 == 0 { 500 } else { (i % 100) as usize });
            len += s.len() as u64;
            q.send(&s).await.unwrap();
        }
        q.send(&"end".to_string()).await.unwrap();
    });
    let out = finish_ok(child);
    assert_eq!(out.get::<u64>("n"), N);
    assert_eq!(out.get::<u64>("len"), len);
}

/// Postcard, counting its encodings.
struct Counting;

static ENCODES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl shmkit::codec::Codec<String> for Counting {
    const ID: u32 = 0x636e_7401;

    fn encode(value: &String, out: &mut Vec<u8>) -> shmkit::Result<()> {
        ENCODES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        <shmkit::codec::Postcard as shmkit::codec::Codec<String>>::encode(value, out)
    }

    fn decode(bytes: &[u8]) -> shmkit::Result<String> {
        <shmkit::codec::Postcard as shmkit::codec::Codec<String>>::decode(bytes)
    }
}

#[test]
fn an_async_put_waiting_for_room_encodes_its_item_once_not_at_every_attempt() {
    // A wake-up makes dozens of attempts (a spin before the doorbell is armed): while the
    // queue has no room for the item's slots, they encode nothing (an item can be tens of
    // kilobytes), though a long item keeps the turn meanwhile.
    let names = Names::new("aio-qenc");
    let name = names.name("q");
    let mut q = Queue::<String, Counting>::create(&name, 4).unwrap();
    for i in 0..4 {
        q.put(&i.to_string()).unwrap();
    }
    for (len, slots) in [(5, 1), (150, 2)] {
        let before = ENCODES.load(std::sync::atomic::Ordering::Relaxed);
        let mut tx = Async::new(Queue::<String, Counting>::open(&name).unwrap()).unwrap();
        let item = "x".repeat(len);
        runtime().block_on(async {
            tokio::select! {
                r = tx.send(&item) => panic!("no room, yet {r:?}"),
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        });
        let encodes = ENCODES.load(std::sync::atomic::Ordering::Relaxed) - before;
        assert!(
            encodes <= 2,
            "{encodes} encodings of an item of {slots} slots"
        );
    }
    assert_eq!(q.len(), 4);
    drop(q);
    assert_eq!(names.leftovers(), Vec::<String>::new());
}

#[test]
fn an_event_set_by_another_process_wakes_an_async_waiter_and_cancelled_waits_leave_no_doorbell() {
    let names = Names::new("aio-event");
    let name = names.name("e");
    let e = Event::create(&name).unwrap();
    runtime().block_on(async {
        // More cancelled waits than an event has doorbells: each removed its own.
        for _ in 0..3 * 8 {
            let r = tokio::time::timeout(Duration::from_millis(1), e.wait_async()).await;
            assert!(r.is_err(), "nobody set it");
        }
    });
    let child = spawn("set_later", &[("name", name.clone())]);
    runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(30), e.wait_async())
            .await
            .expect("woken")
            .unwrap();
    });
    assert!(e.is_set());
    finish_ok(child);
}

#[test]
fn semaphore_permits_released_by_another_process_are_acquired_by_async_waiters() {
    let names = Names::new("aio-sem");
    let name = names.name("s");
    let sem = Semaphore::create(&name, 0).unwrap();
    const N: u32 = 20;
    let child = spawn(
        "release_later",
        &[("name", name.clone()), ("n", N.to_string())],
    );
    let rt = multi_thread_runtime();
    let sem = std::sync::Arc::new(sem);
    let taken = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let per_task = rt.block_on(async {
        // Four tasks wait at once; each permit goes to exactly one of them. A task stops
        // once all N are taken (it looks every 50 ms, dropping a pending wait each time).
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (sem, taken) = (sem.clone(), taken.clone());
                tokio::spawn(async move {
                    let mut got = 0u32;
                    while taken.load(std::sync::atomic::Ordering::SeqCst) < N {
                        let wait = sem.acquire_async();
                        if let Ok(r) = tokio::time::timeout(Duration::from_millis(50), wait).await {
                            r.unwrap();
                            got += 1;
                            taken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                    got
                })
            })
            .collect();
        let mut per_task = Vec::new();
        for t in tasks {
            per_task.push(t.await.unwrap());
        }
        per_task
    });
    assert_eq!(per_task.iter().sum::<u32>(), N);
    assert_eq!(sem.value(), 0);
    finish_ok(child);
}

#[test]
fn an_async_receiver_is_a_stream_that_ends_when_the_producer_is_gone() {
    use futures_core::Stream;
    let names = Names::new("aio-stream");
    let name = names.name("c");
    let mut rx = Async::new(spsc::Receiver::<u64>::create(&name, 64).unwrap()).unwrap();
    const N: u64 = 10_000;
    let child = spawn("count_up", &[("name", name.clone()), ("n", N.to_string())]);
    let got = runtime().block_on(async {
        let mut got = Vec::new();
        while let Some(v) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut rx).poll_next(cx)).await
        {
            got.push(v.unwrap());
        }
        got
    });
    assert_eq!(got, (1..=N).collect::<Vec<_>>());
    finish_ok(child);
}

#[test]
fn a_consumer_killed_while_async_senders_wait_for_room_is_disconnected() {
    let names = Names::new("aio-sendkill");
    let (ring, queue) = (names.name("r"), names.name("q"));
    let mut tx = Async::new(spsc::Sender::<u64>::create(&ring, 4).unwrap()).unwrap();
    let mut q = Async::new(Queue::<String>::create(&queue, 4).unwrap()).unwrap();
    let mut child = spawn(
        "take_one_then_stall",
        &[("ring", ring.clone()), ("queue", queue.clone())],
    );
    runtime().block_on(async {
        tx.send(0).await.unwrap();
        q.send(&"first".to_string()).await.unwrap();
        // Fill both, while the child has taken its one (then the rings stay full).
        let mut i = 1;
        while tokio::time::timeout(Duration::from_millis(200), tx.send(i))
            .await
            .is_ok()
        {
            i += 1;
        }
        while tokio::time::timeout(Duration::from_millis(200), q.send(&"x".to_string()))
            .await
            .is_ok()
        {}
        let ring_wait = tokio::spawn(async move { tx.send(u64::MAX).await });
        let queue_wait = tokio::spawn(async move { q.send(&"last".to_string()).await });
        tokio::time::sleep(Duration::from_millis(20)).await; // both park
        child.kill().unwrap();
        let r = tokio::time::timeout(Duration::from_secs(30), ring_wait).await;
        assert!(matches!(r, Ok(Ok(Err(Error::Disconnected)))), "{r:?}");
        let r = tokio::time::timeout(Duration::from_secs(30), queue_wait).await;
        assert!(matches!(r, Ok(Ok(Err(Error::Disconnected)))), "{r:?}");
    });
    let _ = finish(child);
}
