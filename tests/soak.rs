//! Soak (RELIABILITY.md scenario 14): every mix of producers and consumers, each a process
//! of its own, over every capacity, with random message sizes and random stalls, and the
//! position counters started a few laps before they wrap around `u64::MAX`.
//!
//! Every test here is `#[ignore]`d: run them with `scripts/soak.sh [SECONDS]`, or
//! `SHMKIT_SOAK_SECS=60 cargo test --release --test soak -- --ignored --nocapture
//! --test-threads=1`. `SHMKIT_SOAK_SECS` is the time for all three tests together
//! (default 60), shared out by their number of configurations: 36 mpmc, 2 spsc, 3 frames.
//! A configuration runs for that share divided by its test's configurations (at least
//! 0.2 s, at most 30 s); a test runs its configurations again until its share is spent.
//!
//! Configurations:
//! - mpmc: producers × consumers in {1, 2, 4} × {1, 2, 4}, capacities {1, 2, 1023, 1024}
//!   (mpmc takes any capacity from 1).
//! - spsc: 1 × 1; capacities {2, 1024}: spsc needs a power of two of at least 2, so 1 and 2
//!   map to 2, and 1023 and 1024 to 1024.
//! - frames: 1 × 1; capacities in bytes (a power of two of at least 64): 1 and 2 map to 64
//!   (one small record at a time: every frame is 32 bytes, the largest that fits), 1023 and
//!   1024 to 1024, and 65536 is added for large frames. Frame sizes are random, from 32
//!   bytes to the largest frame the ring takes.
//!
//! Messages carry (producer id, sequence number, length, checksum) and, in frames, filler
//! bytes derived from the id and the sequence number. Consumers check each message, its
//! order per producer, and mark it in a shared bitmap (a `RawArray<u64>`, one bit per
//! producer and sequence number), which tells duplicates at once and losses at the end.
//!
//! Wrapping: the API cannot start a channel at a chosen position, so the parent creates
//! the channel (kept), closes it, and rewrites its positions and slot stamps in the file,
//! following the `#[repr(C)]` layouts in `src/channel/` (as the corruption tests in
//! `tests/spsc.rs` and `tests/mpmc.rs` do), to a point 1 to 64 laps before `u64::MAX`;
//! then the endpoints attach. At the end the parent reads the final positions back and
//! checks that they moved exactly as far as the messages did, through the wrap.
//!
//! Reported per configuration: messages moved, lost, duplicated, out of order per
//! producer, damaged (all but the first must be 0), whether the counters wrapped, and the
//! resident memory (VmRSS) of every process at its start and its end, which must not grow
//! by more than `RSS_SLACK_KB`.

mod common;

use std::os::unix::fs::FileExt;
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{arg, arg_as, finish, report, spawn, Names, Outcome};
use shmkit::{frames, mpmc, spsc, CreationMode, Error, Event, Options, RawArray, Semaphore};

/// A failure bound only: nothing here waits this long when things work.
const PATIENCE: Duration = Duration::from_secs(30);
/// The most messages one producer sends in one configuration (the bitmap's size).
const MAX_SEQ: u64 = 1 << 25;
/// How much a process's resident memory may grow from its start to its end.
const RSS_SLACK_KB: u64 = 1024;

#[test]
fn __child() {
    common::child_main(&[
        ("soak_produce", soak_produce),
        ("soak_consume", soak_consume),
    ]);
}

fn path_of(name: &str) -> String {
    format!("/dev/shm/shmkit.{name}")
}

// ---------------------------------------------------------------------------------------
// Messages: (producer id, sequence number, length, checksum), then filler.

use common::msg::*;

/// Random stalls: now and then a yield, rarely a sleep of up to 2 ms, very rarely 5 ms
/// (long enough for the other side to fill or drain the ring and go to sleep).
fn stall(rng: &mut Rng) {
    let r = rng.next();
    match r % (1 << 17) {
        0 => std::thread::sleep(Duration::from_millis(5)),
        1..=15 => std::thread::sleep(Duration::from_micros((r >> 40) % 2000)),
        16..=511 => std::thread::yield_now(),
        _ => {}
    }
}

/// This process's resident memory, in kB.
fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

// ---------------------------------------------------------------------------------------
// The channels' layouts (see `src/channel/`), for positioning the counters.

use shmkit::__layout::{mpmc as mpmc_layout, pair, segment as seg_layout, slot};
const SEG_HDR: usize = seg_layout::SIZE;
/// spsc and frames: endpoint slots, `tail`, `head`, two wake words, each on a 128-byte line.
const PAIR_HDR: usize = pair::SIZE;
/// mpmc: `tail`, `head`, two wake words, `lost`, the registrations.
const MPMC_HDR: usize = mpmc_layout::SIZE;
/// A slot of spsc and mpmc: the stamp, then the message.
const SLOT: usize = slot::size::<Msg>();
/// The mpmc pending word of an endpoint that claims nothing.
const IDLE: u64 = mpmc_layout::IDLE;

fn one_lap(kind: &str, cap: u64) -> u64 {
    match kind {
        "mpmc" => (cap + 1).next_power_of_two(),
        _ => cap,
    }
}

/// Where position `start` is after `n` messages of an spsc or mpmc channel.
fn advanced(kind: &str, cap: u64, start: u64, n: u64) -> u64 {
    match kind {
        "mpmc" => start
            .wrapping_add((n / cap).wrapping_mul(one_lap(kind, cap)))
            .wrapping_add(n % cap),
        _ => start.wrapping_add(n),
    }
}

/// Creates channel `name` with nobody attached and its counters `laps` laps before they
/// wrap; returns the start position.
fn create_near_wrap(kind: &str, name: &str, cap: usize, laps: u64) -> u64 {
    let kept = Options::new().keep(true);
    match kind {
        "spsc" => {
            drop(spsc::Sender::<Msg>::with_options(name, CreationMode::Create, cap, &kept).unwrap())
        }
        "mpmc" => {
            drop(mpmc::Sender::<Msg>::with_options(name, CreationMode::Create, cap, &kept).unwrap())
        }
        _ => drop(frames::Sender::with_options(name, CreationMode::Create, cap, &kept).unwrap()),
    }
    let cap = cap as u64;
    let start = 0u64.wrapping_sub(laps * one_lap(kind, cap));
    let mut b = std::fs::read(path_of(name)).unwrap();
    let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
    let h = SEG_HDR;
    match kind {
        "mpmc" => {
            put(h + mpmc_layout::TAIL, &start.to_le_bytes());
            put(h + mpmc_layout::HEAD, &start.to_le_bytes());
            put(h + mpmc_layout::LOST, &0u64.to_le_bytes());
            for r in 0..2 * mpmc::MAX_ENDPOINTS {
                // Never attached: token, pid, ever 0; pending idle.
                let reg = h + mpmc_layout::SENDERS + r * mpmc_layout::REG_SIZE;
                put(reg + mpmc_layout::REG_END, &[0; pair::END_SIZE]);
                put(reg + mpmc_layout::PENDING, &IDLE.to_le_bytes());
            }
            for i in 0..cap {
                // Slot i is free for position `start + i` (lap-aligned start).
                let stamp = start + i;
                let at = h + MPMC_HDR + i as usize * SLOT + slot::STAMP;
                put(at, &stamp.to_le_bytes());
            }
        }
        _ => {
            put(h + pair::ENDS, &[0; 2 * pair::END_SIZE]); // both ends: never attached
            put(h + pair::TAIL, &start.to_le_bytes());
            put(h + pair::HEAD, &start.to_le_bytes());
            if kind == "spsc" {
                for k in 0..cap {
                    // The slot of position `start + k` holds the previous lap's message
                    // (stamp `pos + 1 - cap`): not yet published for `pos`, and released
                    // (the head is `start`).
                    let pos = start.wrapping_add(k);
                    let i = (pos & (cap - 1)) as usize;
                    let stamp = pos.wrapping_add(1).wrapping_sub(cap);
                    put(h + PAIR_HDR + i * SLOT + slot::STAMP, &stamp.to_le_bytes());
                }
            }
            // frames: the data bytes are zero, so no stamp says "published".
        }
    }
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path_of(name))
        .unwrap();
    f.write_all_at(&b, 0).unwrap();
    start
}

/// The final `(tail, head)` of channel `name`.
fn positions(kind: &str, name: &str) -> (u64, u64) {
    let f = std::fs::File::open(path_of(name)).unwrap();
    let at = |off: usize| {
        let mut w = [0u8; 8];
        f.read_exact_at(&mut w, off as u64).unwrap();
        u64::from_le_bytes(w)
    };
    match kind {
        "mpmc" => (
            at(SEG_HDR + mpmc_layout::TAIL),
            at(SEG_HDR + mpmc_layout::HEAD),
        ),
        _ => (at(SEG_HDR + pair::TAIL), at(SEG_HDR + pair::HEAD)),
    }
}

// ---------------------------------------------------------------------------------------
// Endpoints, with every sending and receiving path taken in turn at random.

enum Tx {
    Spsc(spsc::Sender<Msg>),
    Mpmc(mpmc::Sender<Msg>),
    Frames(frames::Sender),
}

impl Tx {
    fn open(kind: &str, name: &str) -> Tx {
        match kind {
            "spsc" => Tx::Spsc(spsc::Sender::open(name).unwrap()),
            "mpmc" => Tx::Mpmc(mpmc::Sender::open(name).unwrap()),
            _ => Tx::Frames(frames::Sender::open(name).unwrap()),
        }
    }

    /// Sends message `seq` of producer `id` (and, in a batch, a few after it, at most up to
    /// `limit`); returns how many were sent. `r` picks the path (and a frame's size).
    fn send(&mut self, id: u64, seq: u64, limit: u64, r: u64, buf: &mut [u8]) -> u64 {
        let since = Instant::now();
        let waited = |what: &str| {
            assert!(since.elapsed() < PATIENCE, "{what}: no room for too long");
            std::thread::yield_now();
        };
        match self {
            Tx::Spsc(tx) => match r % 5 {
                0 => tx.send(msg(id, seq)).map(|()| 1).unwrap(),
                1 => tx.send_timeout(msg(id, seq), PATIENCE).map(|()| 1).unwrap(),
                2 => loop {
                    match tx.try_send(msg(id, seq)) {
                        Ok(()) => break 1,
                        Err(e) if matches!(e.error, Error::WouldBlock) => waited("try_send"),
                        Err(e) => panic!("{e}"),
                    }
                },
                3 => {
                    let mut slot = tx.loan().unwrap();
                    *slot = msg(id, seq);
                    slot.commit().unwrap();
                    1
                }
                _ => {
                    let want = (1 + (r >> 8) % 16).min(limit - seq) as usize;
                    let mut chunk = tx.write_chunk(want).unwrap();
                    let n = chunk.fill_from((seq..).map(|s| msg(id, s)));
                    chunk.commit(n);
                    n as u64
                }
            },
            Tx::Mpmc(tx) => {
                match r % 4 {
                    0 => tx.send(msg(id, seq)).unwrap(),
                    1 => tx.send_timeout(msg(id, seq), PATIENCE).unwrap(),
                    2 => loop {
                        match tx.try_send(msg(id, seq)) {
                            Ok(()) => break,
                            Err(e) if matches!(e.error, Error::WouldBlock) => waited("try_send"),
                            Err(e) => panic!("{e}"),
                        }
                    },
                    _ => {
                        let mut slot = tx.loan().unwrap();
                        *slot = msg(id, seq);
                        slot.commit().unwrap();
                    }
                }
                1
            }
            Tx::Frames(tx) => {
                // Half small frames, half of any size the ring takes.
                let max = tx.max_frame();
                let len = if r & 1 == 0 {
                    MSG_HDR + (r >> 8) as usize % (max - MSG_HDR).clamp(1, 64)
                } else {
                    MSG_HDR + (r >> 8) as usize % (max - MSG_HDR + 1)
                };
                let len = len.min(max);
                match (r >> 1) % 4 {
                    0 => {
                        encode(&mut buf[..len], id, seq);
                        tx.send(&buf[..len]).unwrap();
                    }
                    1 => {
                        encode(&mut buf[..len], id, seq);
                        tx.send_timeout(&buf[..len], PATIENCE).unwrap();
                    }
                    2 => {
                        encode(&mut buf[..len], id, seq);
                        loop {
                            match tx.try_send(&buf[..len]) {
                                Ok(()) => break,
                                Err(Error::WouldBlock) => waited("try_send"),
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                    _ => {
                        let mut loan = tx.loan(len).unwrap();
                        encode(&mut loan[..], id, seq);
                        loan.commit().unwrap();
                    }
                }
                1
            }
        }
    }
}

enum Rx {
    Spsc(spsc::Receiver<Msg>),
    Mpmc(mpmc::Receiver<Msg>),
    Frames(frames::Receiver),
}

impl Rx {
    fn open(kind: &str, name: &str) -> Rx {
        match kind {
            "spsc" => Rx::Spsc(spsc::Receiver::open(name).unwrap()),
            "mpmc" => Rx::Mpmc(mpmc::Receiver::open(name).unwrap()),
            _ => Rx::Frames(frames::Receiver::open(name).unwrap()),
        }
    }

    /// Receives one message (or, in a batch, a few) and hands each to `f`; `false` once
    /// every producer is gone and the channel drained. `r` picks the path.
    fn recv(&mut self, r: u64, f: &mut dyn FnMut(&[u8])) -> bool {
        let since = Instant::now();
        let waited = |what: &str| {
            assert!(since.elapsed() < PATIENCE, "{what}: nothing for too long");
            std::thread::yield_now();
        };
        let got = match self {
            Rx::Spsc(rx) => match r % 5 {
                0 => rx.recv_ref().map(|g| f(bytemuck::bytes_of(&*g))),
                1 => rx
                    .recv_ref_timeout(PATIENCE)
                    .map(|g| f(bytemuck::bytes_of(&*g))),
                2 => rx.recv().map(|m| f(bytemuck::bytes_of(&m))),
                3 => loop {
                    match rx.try_recv_ref() {
                        Err(Error::WouldBlock) => waited("try_recv_ref"),
                        other => break other.map(|g| f(bytemuck::bytes_of(&*g))),
                    }
                },
                _ => rx.read_chunk(1 + (r >> 8) as usize % 16).map(|chunk| {
                    for m in chunk.iter() {
                        f(bytemuck::bytes_of(m));
                    }
                    chunk.commit_all();
                }),
            },
            Rx::Mpmc(rx) => match r % 4 {
                0 => rx.recv_ref().map(|g| f(bytemuck::bytes_of(&*g))),
                1 => rx
                    .recv_ref_timeout(PATIENCE)
                    .map(|g| f(bytemuck::bytes_of(&*g))),
                2 => rx.recv().map(|m| f(bytemuck::bytes_of(&m))),
                _ => loop {
                    match rx.try_recv_ref() {
                        Err(Error::WouldBlock) => waited("try_recv_ref"),
                        other => break other.map(|g| f(bytemuck::bytes_of(&*g))),
                    }
                },
            },
            Rx::Frames(rx) => match r % 3 {
                0 => rx.recv().map(|fr| f(&fr)),
                1 => rx.recv_ref_timeout(PATIENCE).map(|fr| f(&fr)),
                _ => loop {
                    match rx.try_recv_ref() {
                        Err(Error::WouldBlock) => waited("try_recv_ref"),
                        other => break other.map(|fr| f(&fr)),
                    }
                },
            },
        };
        match got {
            Ok(()) => true,
            Err(Error::Disconnected) => false,
            Err(e) => panic!("receive: {e}"),
        }
    }

    fn lost(&self) -> u64 {
        match self {
            Rx::Mpmc(rx) => rx.lost(),
            _ => 0,
        }
    }
}

/// In a child, once its endpoint is attached: says so, and waits for everybody.
fn attached() {
    Semaphore::open(&arg("ready")).unwrap().release().unwrap();
    assert!(Event::open(&arg("go"))
        .unwrap()
        .wait_timeout(PATIENCE)
        .unwrap());
}

fn soak_produce() {
    let kind = arg("kind");
    let id: u64 = arg_as("id");
    let run = Duration::from_millis(arg_as("ms"));
    let mut rng = Rng::new(arg_as("seed"));
    let mut tx = Tx::open(&kind, &arg("name"));
    let mut buf = vec![0u8; if kind == "frames" { arg_as("cap") } else { 0 }];
    attached();
    let rss_start = rss_kb();
    let end = Instant::now() + run;
    let mut seq = 0;
    let mut calls = 0u64;
    while seq < MAX_SEQ && (!calls.is_multiple_of(64) || Instant::now() < end) {
        seq += tx.send(id, seq, MAX_SEQ, rng.next(), &mut buf);
        calls += 1;
        stall(&mut rng);
    }
    let rss_end = rss_kb();
    drop(tx);
    report("sent", seq);
    report("rss_start", rss_start);
    report("rss_end", rss_end);
}

/// What a consumer checks of every message.
struct Check<'a> {
    bits: &'a [AtomicU64],
    last: Vec<Option<u64>>,
    received: u64,
    duplicated: u64,
    out_of_order: u64,
    damaged: u64,
}

impl Check<'_> {
    fn check(&mut self, bytes: &[u8]) {
        let producers = self.last.len() as u64;
        let Some((id, seq)) = decode(bytes).filter(|&(id, seq)| id < producers && seq < MAX_SEQ)
        else {
            self.damaged += 1;
            return;
        };
        self.received += 1;
        let last = &mut self.last[id as usize];
        if last.is_some_and(|l| seq <= l) {
            self.out_of_order += 1;
        }
        *last = Some(last.map_or(seq, |l| l.max(seq)));
        let bit = id * MAX_SEQ + seq;
        let mask = 1u64 << (bit % 64);
        // Relaxed: the bitmap is read by the parent only after every consumer exited.
        if self.bits[(bit / 64) as usize].fetch_or(mask, Ordering::Relaxed) & mask != 0 {
            self.duplicated += 1;
        }
    }
}

fn soak_consume() {
    let kind = arg("kind");
    let producers: usize = arg_as("producers");
    let mut rng = Rng::new(arg_as("seed"));
    let mut rx = Rx::open(&kind, &arg("name"));
    let seen = RawArray::<u64>::open(&arg("seen")).unwrap();
    let bits = seen.atomics();
    // Map every page of the bitmap now, so that touching it later does not count as growth.
    // A plain write of 0 (an idempotent RMW would be compiled into a load): nothing is marked
    // before `go`, which waits for every consumer to get here.
    for w in bits.iter().step_by(512) {
        // Relaxed: the parent's `go` orders these before any marking.
        w.store(0, Ordering::Relaxed);
    }
    let mut c = Check {
        bits,
        last: vec![None; producers],
        received: 0,
        duplicated: 0,
        out_of_order: 0,
        damaged: 0,
    };
    attached();
    let rss_start = rss_kb();
    while rx.recv(rng.next(), &mut |b| c.check(b)) {
        stall(&mut rng);
    }
    let rss_end = rss_kb();
    report("received", c.received);
    report("duplicated", c.duplicated);
    report("out_of_order", c.out_of_order);
    report("damaged", c.damaged);
    report("lost", rx.lost());
    report("rss_start", rss_start);
    report("rss_end", rss_end);
}

// ---------------------------------------------------------------------------------------
// The parent.

/// A child process that is killed if the test panics before it finished.
struct Kid(Option<Child>);

impl Kid {
    fn finish_within(mut self, limit: Duration, what: &str) -> Outcome {
        let mut child = self.0.take().expect("a child");
        let start = Instant::now();
        loop {
            if child.try_wait().expect("try_wait").is_some() {
                let o = finish(child);
                assert_eq!(o.signal, None, "{what} was killed by a signal: {o:?}");
                assert_eq!(o.code, Some(0), "{what} failed: {o:?}");
                return o;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let o = finish(child);
                panic!("{what} still running after {limit:?}: it hangs ({o:?})");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Config {
    kind: &'static str,
    producers: u64,
    consumers: u64,
    cap: usize,
}

/// All the configurations, in the three tests' order.
fn configs(kind: &'static str) -> Vec<Config> {
    let one = |cap| Config {
        kind,
        producers: 1,
        consumers: 1,
        cap,
    };
    match kind {
        "mpmc" => {
            let mut v = Vec::new();
            for producers in [1, 2, 4] {
                for consumers in [1, 2, 4] {
                    for cap in [1, 2, 1023, 1024] {
                        v.push(Config {
                            kind,
                            producers,
                            consumers,
                            cap,
                        });
                    }
                }
            }
            v
        }
        // 1 and 2 -> 2; 1023 and 1024 -> 1024 (a power of two of at least 2).
        "spsc" => vec![one(2), one(1024)],
        // Bytes: 1 and 2 -> 64; 1023 and 1024 -> 1024; and large frames.
        _ => vec![one(64), one(1024), one(65536)],
    }
}

const ALL_CONFIGS: usize = 36 + 2 + 3;

/// The totals of one configuration's run.
#[derive(Debug, Default)]
struct Totals {
    moved: u64,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    damaged: u64,
    phantom: u64,
    lost_counted: u64,
}

fn run(cfg: Config, slice: Duration, seed: u64) -> Totals {
    let mut rng = Rng::new(seed);
    let names = Names::new(&format!("soak_{}", cfg.kind));
    let name = names.name("ch");
    let laps = 1 + rng.below(64);
    let start = create_near_wrap(cfg.kind, &name, cfg.cap, laps);
    let words = (cfg.producers * MAX_SEQ / 64) as usize;
    let seen = RawArray::<u64>::create_zeroed(&names.name("seen"), words).unwrap();
    let ready = Semaphore::create(&names.name("ready"), 0).unwrap();
    let go = Event::create(&names.name("go")).unwrap();
    let common = |seed: u64| {
        vec![
            ("kind", cfg.kind.to_owned()),
            ("name", name.clone()),
            ("cap", cfg.cap.to_string()),
            ("producers", cfg.producers.to_string()),
            ("ms", slice.as_millis().to_string()),
            ("seed", seed.to_string()),
            ("seen", names.name("seen")),
            ("ready", names.name("ready")),
            ("go", names.name("go")),
        ]
    };
    let consumers: Vec<Kid> = (0..cfg.consumers)
        .map(|c| Kid(Some(spawn("soak_consume", &common(rng.next() ^ c)))))
        .collect();
    let producers: Vec<Kid> = (0..cfg.producers)
        .map(|id| {
            let mut a = common(rng.next() ^ id);
            a.push(("id", id.to_string()));
            Kid(Some(spawn("soak_produce", &a)))
        })
        .collect();
    for _ in 0..cfg.producers + cfg.consumers {
        ready.acquire_timeout(PATIENCE).unwrap();
    }
    let began = Instant::now();
    go.set();
    let limit = slice + PATIENCE;
    let sent: Vec<Outcome> = producers
        .into_iter()
        .map(|k| k.finish_within(limit, "a producer"))
        .collect();
    let got: Vec<Outcome> = consumers
        .into_iter()
        .map(|k| k.finish_within(limit, "a consumer"))
        .collect();
    let took = began.elapsed();

    let mut t = Totals::default();
    let sum = |v: &[Outcome], k: &str| v.iter().map(|o| o.get::<u64>(k)).sum::<u64>();
    t.moved = sum(&got, "received");
    t.duplicated = sum(&got, "duplicated");
    t.out_of_order = sum(&got, "out_of_order");
    t.damaged = sum(&got, "damaged");
    t.lost_counted = got.iter().map(|o| o.get::<u64>("lost")).max().unwrap_or(0);
    let bits = seen.atomics();
    for (id, o) in sent.iter().enumerate() {
        let n: u64 = o.get("sent");
        let mut distinct = 0;
        let mut phantom = 0;
        for (w, word) in bits[id * (MAX_SEQ / 64) as usize..][..(MAX_SEQ / 64) as usize]
            .iter()
            .enumerate()
        {
            // Relaxed: every consumer has exited.
            let v = word.load(Ordering::Relaxed);
            let first = w as u64 * 64;
            let below = n.saturating_sub(first).min(64);
            let in_range = if below == 64 {
                u64::MAX
            } else {
                (1u64 << below) - 1
            };
            distinct += u64::from((v & in_range).count_ones());
            phantom += u64::from((v & !in_range).count_ones());
        }
        t.lost += n - distinct;
        t.phantom += phantom;
    }
    let total_sent = sum(&sent, "sent");

    // The counters moved exactly as far as the messages, through the wrap.
    let (tail, head) = positions(cfg.kind, &name);
    assert_eq!(tail, head, "{cfg:?}: not drained");
    let cap = cfg.cap as u64;
    let wrapped = head < start;
    if cfg.kind == "frames" {
        // Every frame takes at least 48 bytes of ring.
        let moved = head.wrapping_sub(start);
        assert!(moved >= 48 * total_sent, "{cfg:?}: {moved} bytes moved");
        assert_eq!(wrapped, moved >= laps * cap, "{cfg:?}");
    } else {
        assert_eq!(
            head,
            advanced(cfg.kind, cap, start, total_sent),
            "{cfg:?}: start {start:#x}, {total_sent} messages"
        );
        assert_eq!(wrapped, total_sent >= laps * cap, "{cfg:?}");
    }
    shmkit::unlink(&name).unwrap();

    let rss = |v: &[Outcome], who: &str| {
        v.iter()
            .enumerate()
            .map(|(i, o)| {
                let (s, e) = (o.get::<u64>("rss_start"), o.get::<u64>("rss_end"));
                assert!(
                    e <= s + RSS_SLACK_KB,
                    "{cfg:?}: {who} {i} grew from {s} kB to {e} kB"
                );
                format!("{who}{i} {s}->{e}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rss_line = format!("{}, {}", rss(&sent, "p"), rss(&got, "c"));
    eprintln!(
        "soak {} {}x{} cap {}: {} moved in {:.2} s ({} sent), lost {}, duplicated {}, \
         out of order {}, damaged {}, phantom {}, counted lost {}; start {start:#x} ({laps} laps \
         before the wrap), wrapped {wrapped}; VmRSS kB {rss_line} (seed {seed})",
        cfg.kind,
        cfg.producers,
        cfg.consumers,
        cfg.cap,
        t.moved,
        took.as_secs_f64(),
        total_sent,
        t.lost,
        t.duplicated,
        t.out_of_order,
        t.damaged,
        t.phantom,
        t.lost_counted,
    );
    assert_eq!(t.moved, total_sent, "{cfg:?}: {t:?}");
    assert_eq!(
        (
            t.lost,
            t.duplicated,
            t.out_of_order,
            t.damaged,
            t.phantom,
            t.lost_counted
        ),
        (0, 0, 0, 0, 0, 0),
        "{cfg:?} (seed {seed}): {t:?}"
    );
    drop((seen, ready, go));
    assert!(names.leftovers().is_empty(), "{:?}", names.leftovers());
    t
}

/// Runs `kind`'s configurations, again and again, for its share of `SHMKIT_SOAK_SECS`.
fn soak(kind: &'static str) {
    let total: f64 = std::env::var("SHMKIT_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60.0);
    let cfgs = configs(kind);
    let share = Duration::from_secs_f64(total * cfgs.len() as f64 / ALL_CONFIGS as f64);
    let slice = (share / cfgs.len() as u32).clamp(Duration::from_millis(200), PATIENCE);
    let seed = seed();
    eprintln!(
        "soak {kind}: {} configurations, {slice:?} each, {share:?} in all (seed {seed})",
        cfgs.len()
    );
    let began = Instant::now();
    let mut moved = 0;
    let mut pass = 0u64;
    loop {
        for (i, cfg) in cfgs.iter().enumerate() {
            moved += run(*cfg, slice, seed ^ (pass << 32) ^ i as u64).moved;
        }
        pass += 1;
        if began.elapsed() >= share {
            break;
        }
    }
    eprintln!(
        "soak {kind}: {moved} messages moved in {pass} pass(es), {:.1} s; nothing lost, \
         duplicated, reordered or damaged; memory flat",
        began.elapsed().as_secs_f64()
    );
}

#[test]
#[ignore = "soak: run with scripts/soak.sh (SHMKIT_SOAK_SECS)"]
fn soak_mpmc_producers_by_consumers_by_capacity() {
    soak("mpmc");
}

#[test]
#[ignore = "soak: run with scripts/soak.sh (SHMKIT_SOAK_SECS)"]
fn soak_spsc() {
    soak("spsc");
}

#[test]
#[ignore = "soak: run with scripts/soak.sh (SHMKIT_SOAK_SECS)"]
fn soak_frames_random_sizes() {
    soak("frames");
}
