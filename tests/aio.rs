//! Async receiving across real processes (`aio::Async` under tokio): a million messages
//! from a producer process, `select!` over two channels and a timeout, futures dropped
//! mid-wait, a producer killed while the receiver waits, and no doorbell rung (no syscall)
//! when no async waiter exists.

#![cfg(feature = "tokio")]

mod common;

use std::time::Duration;

use common::{arg, arg_as, finish, finish_ok, report, spawn, Names};
use shmkit::aio::Async;
use shmkit::{spsc, Error, Queue};

#[test]
fn __child() {
    common::child_main(&[
        ("count_up", count_up),
        ("slow_pair", slow_pair),
        ("stall", stall),
    ]);
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_tokio_task_receives_a_million_messages_from_a_producer_process() {
    let names = Names::new("aio-million");
    let name = names.name("c");
    let mut rx = Async::new(spsc::Receiver::<u64>::create(&name, 1024).unwrap()).unwrap();
    const N: u64 = 1_000_000;
    let child = spawn("count_up", &[("name", name.clone()), ("n", N.to_string())]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
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
