//! `shmkit bench`: shmkit against a pipe, a Unix socket and the hardware floors.
//!
//! Every case runs across two processes, this one pinned to CPU 0 and a peer (this binary
//! re-run as `shmkit __peer`) pinned to CPU 1. All cases run in several rounds,
//! interleaved (round 1 of every case, then round 2 of every case, ...), so that a change
//! in the machine's state during the run hits every case alike and ratios hold.
//!
//! Round trips: one 8-byte request and its reply; every round trip is timed, and the
//! percentiles are over all of them. Floors: the busy cache-line round trip (both sides
//! spin on a shared word) and the futex round trip (both sides always sleep). The
//! "sleeping" cases wait 50 µs (untimed) before each request so that the peer has gone to
//! sleep: they measure a wake-up.
//!
//! Throughput: one way, from the first send to the peer's acknowledgement of the last
//! message; the receiver reads every byte of every message (an xor over its words) in all
//! cases alike.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use shmkit::__layout::frames::{ALIGN, REC_HDR};
use shmkit::__private::pin_to_cpu;
use std::time::{Duration, Instant};

use shmkit::{frames, spsc, Error, RawArray, WaitStrategy};

mod asyncrt;
mod dict;
mod mpmc;
mod pool;
mod python;
mod queue;
mod report;

use report::Report;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Options of `shmkit bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// More rounds and more messages (several minutes).
    #[arg(long, conflicts_with = "quick")]
    full: bool,
    /// The default: a quick run (about 90 s, the Python rows included).
    #[arg(long)]
    quick: bool,
    /// Prints the results as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// Writes `results.json` and `chart.svg` into this directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Runs only these groups (for a quick look at one of them; the README's numbers come
    /// from whole runs).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Group>,
}

/// The groups of the showdown, for `--only`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// Process pools against Python's `Pool`.
    Pool,
    /// Serde queues against Python's `Queue` and `JoinableQueue`.
    Queue,
    /// Shared dict sets against Python's `Manager().dict()`.
    Dict,
    /// Async (tokio) round trips and one-way transfers.
    Async,
    /// Round trips and throughput of the rings against pipes, sockets and the floors.
    Rings,
}

struct Plan {
    rounds: usize,
    /// Most time one case may take in one round; a case that reaches it stops early and
    /// reports what it measured (busy-polling on a host that time-slices our two vCPUs
    /// onto one core can cost milliseconds per round trip).
    budget: Duration,
    round_trips: usize,
    small_messages: u64,
    bytes_per_size: u64,
}

const QUICK: Plan = Plan {
    rounds: 3,
    budget: Duration::from_millis(700),
    round_trips: 20_000,
    small_messages: 300_000,
    bytes_per_size: 64 << 20,
};

const FULL: Plan = Plan {
    rounds: 7,
    budget: Duration::from_secs(4),
    round_trips: 100_000,
    small_messages: 2_000_000,
    bytes_per_size: 512 << 20,
};

#[derive(Clone, Copy, PartialEq)]
enum Measure {
    RoundTrip,
    Throughput,
}

#[derive(Clone, Copy)]
struct Case {
    id: &'static str,
    label: &'static str,
    size: usize,
    measure: Measure,
    /// The case this one is compared to as its floor (round trips).
    floor: Option<&'static str>,
    /// The case this one is compared to as the pipe baseline.
    pipe: Option<&'static str>,
}

const SIZES: [usize; 6] = [64, 256, 1024, 4096, 64 << 10, 1 << 20];

fn cases() -> Vec<Case> {
    let rt = |id, label, floor, pipe| Case {
        id,
        label,
        size: 8,
        measure: Measure::RoundTrip,
        floor,
        pipe,
    };
    let mut v = vec![
        rt(
            "rt_floor_spin",
            "floor: cache-line ping-pong (spin)",
            None,
            Some("rt_pipe"),
        ),
        rt(
            "rt_spsc_busy",
            "shmkit spsc, busy-poll",
            Some("rt_floor_spin"),
            Some("rt_pipe"),
        ),
        rt(
            "rt_spsc_block",
            "shmkit spsc, blocking",
            Some("rt_floor_spin"),
            Some("rt_pipe"),
        ),
        rt(
            "rt_futex_sleeping",
            "floor: futex wake, peer asleep",
            None,
            Some("rt_pipe_sleeping"),
        ),
        rt(
            "rt_spsc_sleeping",
            "shmkit spsc, blocking, peer asleep",
            Some("rt_futex_sleeping"),
            Some("rt_pipe_sleeping"),
        ),
        rt("rt_pipe", "pipe", None, None),
        rt("rt_pipe_sleeping", "pipe, peer asleep", None, None),
        // Both processes on one CPU (more runnable processes than CPUs): nobody can spin
        // the other's answer in, every message is a hand-over of the CPU.
        rt(
            "rt_futex_same",
            "floor: futex round trip, one CPU",
            None,
            Some("rt_pipe_same"),
        ),
        rt(
            "rt_spsc_same",
            "shmkit spsc, blocking, one CPU",
            Some("rt_futex_same"),
            Some("rt_pipe_same"),
        ),
        rt("rt_pipe_same", "pipe, one CPU", None, None),
        rt("rt_socket", "unix socket", None, Some("rt_pipe")),
    ];
    let tp = |id, label, size, pipe| Case {
        id,
        label,
        size,
        measure: Measure::Throughput,
        floor: None,
        pipe,
    };
    v.push(tp(
        "tp_spsc",
        "shmkit spsc u64 (chunks)",
        8,
        Some("tp_pipe"),
    ));
    v.push(tp("tp_pipe", "pipe", 8, None));
    v.push(tp("tp_socket", "unix socket", 8, Some("tp_pipe")));
    v.extend(mpmc::cases());
    for size in SIZES {
        let mut frames = tp("tp_frames", "shmkit frames", size, Some("tp_pipe"));
        frames.floor = Some("tp_copy");
        v.push(frames);
        v.push(tp(
            "tp_copy",
            "floor: copy in, read in place",
            size,
            Some("tp_pipe"),
        ));
        v.push(tp("tp_pipe", "pipe", size, None));
        v.push(tp("tp_socket", "unix socket", size, Some("tp_pipe")));
    }
    v
}

/// What one case measured, pooled over rounds.
#[derive(Default, Clone)]
struct Samples {
    /// Round trips: every round trip, in nanoseconds.
    rtt_ns: Vec<u64>,
    /// Throughput: (messages, bytes, seconds) per round.
    rounds: Vec<(u64, u64, f64)>,
}

pub fn run(args: &Args) -> Res<()> {
    let plan = if args.full { FULL } else { QUICK };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Before we pin ourselves (which makes `available_parallelism` say 1, and which the
    // pools' workers would inherit).
    let _ = mpmc::CPUS.set(cpus);
    let runs = |g: Group| args.only.is_empty() || args.only.contains(&g);
    let mut pools = String::new();
    if runs(Group::Pool) {
        pools += &pool::run(plan.rounds, args.full, cpus)?;
    }
    if runs(Group::Queue) {
        pools += &queue::run(plan.rounds, args.full)?;
    }
    if runs(Group::Dict) {
        pools += &dict::run(plan.rounds, args.full)?;
    }
    if cpus > 1 {
        pin_to_cpu(0)?;
    }
    // Pinned, with its peers on the other CPU, as the rows below.
    if runs(Group::Async) {
        pools += &asyncrt::run(plan.rounds, args.full)?;
    }
    let cases = if runs(Group::Rings) {
        cases()
    } else {
        Vec::new()
    };
    let mut samples = vec![Samples::default(); cases.len()];
    let start = Instant::now();
    for round in 0..plan.rounds {
        for (i, case) in cases.iter().enumerate() {
            eprint!(
                "\r\x1b[2Kround {}/{}: {} ({} B)",
                round + 1,
                plan.rounds,
                case.label,
                case.size
            );
            let _ = std::io::stderr().flush();
            run_case(case, &plan, &mut samples[i])?;
        }
    }
    eprintln!("\r\x1b[2Kdone in {:.1} s", start.elapsed().as_secs_f64());
    let report = Report::new(&cases, &samples, &plan, cpus);
    if args.json {
        eprint!("{}", report.table());
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    if args.json {
        eprint!("{pools}");
    } else {
        print!("{pools}");
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("results.json"), report.json())?;
        std::fs::write(dir.join("chart.svg"), report.svg())?;
        eprintln!(
            "wrote {} and {}",
            dir.join("results.json").display(),
            dir.join("chart.svg").display()
        );
    }
    Ok(())
}

fn unique_name(case: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "bench.{}.{}.{}",
        std::process::id(),
        case,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn spawn_peer(
    case: &str,
    name: &str,
    size: usize,
    count: u64,
    stdio: Option<(OwnedFd, OwnedFd)>,
) -> Res<Child> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["__peer", case, name, &size.to_string(), &count.to_string()]);
    if let Some((input, output)) = stdio {
        cmd.stdin(Stdio::from(input)).stdout(Stdio::from(output));
    } else {
        cmd.stdin(Stdio::null());
    }
    Ok(cmd.spawn()?)
}

fn spin_for(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Times `one(i)` for the plan's round trips (a tenth of them with the peer asleep, each
/// preceded by 50 µs of our own work so that it has gone to sleep), plus a tenth more,
/// within the plan's time budget; each duration in nanoseconds goes to `local`.
fn timed_round_trips(
    plan: &Plan,
    sleeping: bool,
    local: &mut Vec<u64>,
    mut one: impl FnMut(u64) -> Res<()>,
) -> Res<()> {
    let n = if sleeping {
        plan.round_trips / 10
    } else {
        plan.round_trips
    };
    let t0 = Instant::now();
    for i in 0..(n + n / 10) as u64 {
        if i % 64 == 0 && t0.elapsed() > plan.budget {
            break;
        }
        if sleeping {
            spin_for(Duration::from_micros(50));
        }
        let t = Instant::now();
        one(i)?;
        local.push(t.elapsed().as_nanos() as u64);
    }
    Ok(())
}

/// The case whose code runs `id`, and whether the peer shares our CPU: the one-CPU cases
/// are their two-CPU counterparts with the peer pinned beside us.
fn base(id: &str) -> (&str, bool) {
    match id {
        "rt_futex_same" => ("rt_futex_sleeping", true),
        "rt_spsc_same" => ("rt_spsc_block", true),
        "rt_pipe_same" => ("rt_pipe", true),
        "echo_same" => ("echo", true),
        other => (other, false),
    }
}

fn run_case(case: &Case, plan: &Plan, out: &mut Samples) -> Res<()> {
    let name = unique_name(case.id);
    // Round trips of this round; the first tenth is warm-up and is dropped at the end.
    let mut local: Vec<u64> = Vec::new();
    let (id, same) = base(case.id);
    if mpmc::shape(id).is_some() {
        return mpmc::run(case, plan, &name, out);
    }
    match id {
        "rt_floor_spin" | "rt_futex_sleeping" => {
            let words = RawArray::<u32>::create_zeroed(&name, 3)?;
            let mut kid = spawn_peer(case.id, &name, 8, 0, None)?;
            let (ping, pong, stop) = (
                &words.atomics()[0],
                &words.atomics()[1],
                &words.atomics()[2],
            );
            let sleeping = id == "rt_futex_sleeping";
            let n = if sleeping {
                plan.round_trips / 10
            } else {
                plan.round_trips
            };
            let mut seq = 0u32;
            let t0 = Instant::now();
            for i in 0..n + n / 10 {
                if i % 64 == 0 && t0.elapsed() > plan.budget {
                    break;
                }
                if sleeping {
                    spin_for(Duration::from_micros(50));
                }
                seq = seq.wrapping_add(1).max(1);
                let t = Instant::now();
                ping.store(seq, Ordering::Release);
                if sleeping {
                    futex_wake(ping);
                }
                loop {
                    let v = pong.load(Ordering::Acquire);
                    if v == seq {
                        break;
                    }
                    if sleeping {
                        futex_wait(pong, v);
                    } else {
                        std::hint::spin_loop();
                    }
                }
                local.push(t.elapsed().as_nanos() as u64);
            }
            stop.store(1, Ordering::Release);
            ping.store(seq.wrapping_add(1).max(1), Ordering::Release);
            futex_wake(ping);
            kid.wait()?;
        }
        "rt_spsc_busy" | "rt_spsc_block" | "rt_spsc_sleeping" => {
            let mut req = spsc::Sender::<u64>::create(&format!("{name}.req"), 64)?;
            let mut resp = spsc::Receiver::<u64>::create(&format!("{name}.resp"), 64)?;
            let busy = id == "rt_spsc_busy";
            let sleeping = id == "rt_spsc_sleeping";
            if busy {
                req.set_wait_strategy(WaitStrategy::BusyPoll);
                resp.set_wait_strategy(WaitStrategy::BusyPoll);
            }
            let mut kid = spawn_peer(case.id, &name, 8, 0, None)?;
            timed_round_trips(plan, sleeping, &mut local, |i| {
                req.send(i).map_err(Error::from)?;
                let v = *resp.recv_ref()?;
                if v != i {
                    return Err(format!("peer echoed {v}, expected {i}").into());
                }
                Ok(())
            })?;
            drop(req);
            kid.wait()?;
        }
        "rt_pipe" | "rt_pipe_sleeping" | "rt_socket" => {
            let (mut to, mut from, stdio) = endpoints(id == "rt_socket")?;
            let echo = if same { "echo_same" } else { "echo" };
            let mut kid = spawn_peer(echo, &name, 8, 0, Some(stdio))?;
            let sleeping = id == "rt_pipe_sleeping";
            let mut buf = [0u8; 8];
            timed_round_trips(plan, sleeping, &mut local, |i| {
                to.write_all(&i.to_le_bytes())?;
                from.read_exact(&mut buf)?;
                Ok(())
            })?;
            // Close both of our ends (for a socket, both are the same connection).
            drop((to, from));
            kid.wait()?;
        }
        "tp_spsc" => {
            // 1,024 slots of 16 bytes: 16 KiB, in the L1 caches (4,096 slots measured about
            // two thirds of this rate, the working set spilling to L2).
            let mut tx = spsc::Sender::<u64>::create(&format!("{name}.req"), 1024)?;
            let mut ack = spsc::Receiver::<u64>::create(&format!("{name}.resp"), 64)?;
            let n = plan.small_messages * 10;
            let mut kid = spawn_peer(case.id, &name, 8, n, None)?;
            // Wait for the peer to be ready, so that process start-up is not timed.
            tx.send(u64::MAX).map_err(Error::from)?;
            let _ = *ack.recv_ref()?;
            let t = Instant::now();
            let mut i = 0;
            while i < n {
                let mut chunk = tx.write_chunk(256)?;
                let k = chunk.fill_from(i..n);
                chunk.commit(k);
                i += k as u64;
            }
            let _ = *ack.recv_ref()?;
            out.rounds.push((n, n * 8, t.elapsed().as_secs_f64()));
            drop(tx);
            kid.wait()?;
        }
        "tp_frames" => {
            // A ring that stays in the L1 caches for messages up to 4 KiB (16 KiB, or room
            // for four records: a 4 KiB frame's record is 4,112 bytes, and 16 KiB holds
            // three of them and a lap-end padding record; 32 KiB ran them at 1.06-1.16x
            // the copy floor against 0.89-0.97x, interleaved); a ring much larger than L1
            // streams every line through L2/L3 and costs up to half the throughput at
            // 1-4 KiB (measured). Larger messages need room for several in flight.
            let ring = if case.size <= 4096 {
                let record = REC_HDR + case.size.next_multiple_of(ALIGN);
                (4 * record).next_power_of_two().max(16 << 10)
            } else {
                (case.size * 8).next_power_of_two().max(1 << 20)
            };
            let mut tx = frames::Sender::create(&format!("{name}.req"), ring)?;
            let mut ack = spsc::Receiver::<u64>::create(&format!("{name}.resp"), 64)?;
            let n = messages_for(case.size, plan);
            let mut kid = spawn_peer(case.id, &name, case.size, n, None)?;
            let payload = vec![0x5au8; case.size];
            tx.send(&payload)?;
            let _ = *ack.recv_ref()?;
            let t = Instant::now();
            for _ in 0..n {
                tx.send(&payload)?;
            }
            let _ = *ack.recv_ref()?;
            out.rounds
                .push((n, n * case.size as u64, t.elapsed().as_secs_f64()));
            drop(tx);
            kid.wait()?;
        }
        "tp_copy" => {
            // The floor for frames: the same bytes copied into shared memory and read in
            // place on the other side, through a double buffer and two spin flags, with
            // nothing else (no headers, no wrap, no wake-ups).
            let data = RawArray::<u8>::create_zeroed(&format!("{name}.data"), 2 * case.size)?;
            let flags = RawArray::<u32>::create_zeroed(&format!("{name}.flags"), 2)?;
            let mut ack = spsc::Receiver::<u64>::create(&format!("{name}.resp"), 64)?;
            let n = messages_for(case.size, plan);
            let mut kid = spawn_peer(case.id, &name, case.size, n, None)?;
            let payload = vec![0x5au8; case.size];
            let _ = *ack.recv_ref()?;
            let t = Instant::now();
            for i in 0..n as usize {
                let slot = i % 2;
                // Acquire: pairs with the reader's Release after it finished reading.
                while flags.atomics()[slot].load(Ordering::Acquire) != 0 {
                    std::hint::spin_loop();
                }
                // SAFETY: the slot is ours while its flag is 0, and inside the array.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        payload.as_ptr(),
                        data.as_ptr().add(slot * case.size),
                        case.size,
                    )
                };
                // Release: publishes the bytes to the reader's Acquire load.
                flags.atomics()[slot].store(1, Ordering::Release);
            }
            let _ = *ack.recv_ref()?;
            out.rounds
                .push((n, n * case.size as u64, t.elapsed().as_secs_f64()));
            kid.wait()?;
        }
        "tp_pipe" | "tp_socket" => {
            let (mut to, mut from, stdio) = endpoints(case.id == "tp_socket")?;
            let n = if case.size == 8 {
                plan.small_messages
            } else {
                messages_for(case.size, plan)
            };
            let mut kid = spawn_peer("sink", &name, case.size, n, Some(stdio))?;
            // Length-prefixed frames, one write per message.
            let mut msg = vec![0x5au8; 4 + case.size];
            msg[..4].copy_from_slice(&(case.size as u32).to_le_bytes());
            let mut ackb = [0u8; 1];
            to.write_all(&msg)?;
            from.read_exact(&mut ackb)?;
            let t = Instant::now();
            for _ in 0..n {
                to.write_all(&msg)?;
            }
            to.write_all(&u32::MAX.to_le_bytes())?; // end marker
            from.read_exact(&mut ackb)?;
            out.rounds
                .push((n, n * case.size as u64, t.elapsed().as_secs_f64()));
            // Close both of our ends (for a socket, both are the same connection).
            drop((to, from));
            kid.wait()?;
        }
        other => return Err(format!("unknown case {other}").into()),
    }
    out.rtt_ns.extend_from_slice(&local[local.len() / 10..]);
    Ok(())
}

fn messages_for(size: usize, plan: &Plan) -> u64 {
    (plan.bytes_per_size / size as u64).clamp(200, plan.small_messages)
}

/// A pipe pair or a socket pair: our write end, our read end, and the peer's (stdin,
/// stdout).
fn endpoints(socket: bool) -> Res<(File, File, (OwnedFd, OwnedFd))> {
    if socket {
        let (ours, theirs) = UnixStream::pair()?;
        let ours2 = ours.try_clone()?;
        let theirs2 = theirs.try_clone()?;
        Ok((
            File::from(OwnedFd::from(ours)),
            File::from(OwnedFd::from(ours2)),
            (OwnedFd::from(theirs), OwnedFd::from(theirs2)),
        ))
    } else {
        let (req_r, req_w) = std::io::pipe()?;
        let (resp_r, resp_w) = std::io::pipe()?;
        Ok((
            File::from(OwnedFd::from(req_w)),
            File::from(OwnedFd::from(resp_r)),
            (OwnedFd::from(req_r), OwnedFd::from(resp_w)),
        ))
    }
}

fn xor_words(bytes: &[u8]) -> u64 {
    let mut x = 0u64;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        x ^= u64::from_le_bytes(c.try_into().expect("8 bytes"));
    }
    for &b in chunks.remainder() {
        x ^= u64::from(b);
    }
    x
}

/// The peer side of every case.
pub fn peer(case: &str, name: &str, size: usize, count: u64) -> Res<()> {
    // Not conditional on `available_parallelism`: we inherit the parent's affinity (CPU 0
    // only), so that would say 1 and leave both processes on one CPU. On a one-CPU
    // machine this fails and we stay where we are.
    if let Some(r) = mpmc::peer(case, name, size, count) {
        return r;
    }
    let (case, same) = base(case);
    let _ = pin_to_cpu(if same { 0 } else { 1 });
    match case {
        "rt_floor_spin" | "rt_futex_sleeping" => {
            let words = RawArray::<u32>::open(name)?;
            let (ping, pong, stop) = (
                &words.atomics()[0],
                &words.atomics()[1],
                &words.atomics()[2],
            );
            let sleeping = case == "rt_futex_sleeping";
            let mut seen = 0;
            loop {
                let v = ping.load(Ordering::Acquire);
                if v == seen {
                    if sleeping {
                        futex_wait(ping, v);
                    } else {
                        std::hint::spin_loop();
                    }
                    continue;
                }
                seen = v;
                if stop.load(Ordering::Acquire) != 0 {
                    return Ok(());
                }
                pong.store(v, Ordering::Release);
                if sleeping {
                    futex_wake(pong);
                }
            }
        }
        "rt_spsc_busy" | "rt_spsc_block" | "rt_spsc_sleeping" => {
            let mut req = spsc::Receiver::<u64>::open(&format!("{name}.req"))?;
            let mut resp = spsc::Sender::<u64>::open(&format!("{name}.resp"))?;
            if case == "rt_spsc_busy" {
                req.set_wait_strategy(WaitStrategy::BusyPoll);
                resp.set_wait_strategy(WaitStrategy::BusyPoll);
            }
            loop {
                let v = match req.recv_ref() {
                    Ok(g) => *g,
                    Err(Error::Disconnected) => return Ok(()),
                    Err(e) => return Err(e.into()),
                };
                resp.send(v).map_err(Error::from)?;
            }
        }
        "echo" => {
            // SAFETY: fds 0 and 1 are the pipe or socket ends the parent gave us, owned by
            // nobody else in this process.
            let (mut input, mut output) = unsafe { (File::from_raw_fd(0), File::from_raw_fd(1)) };
            let mut buf = [0u8; 8];
            while input.read_exact(&mut buf).is_ok() {
                output.write_all(&buf)?;
            }
            Ok(())
        }
        "sink" => {
            // SAFETY: as for "echo".
            let (mut input, mut output) = unsafe { (File::from_raw_fd(0), File::from_raw_fd(1)) };
            let mut buf = vec![0u8; size];
            let mut len = [0u8; 4];
            let mut acc = 0u64;
            // The first message says we are ready; then `count` messages and an end marker.
            for i in 0..=count + 1 {
                input.read_exact(&mut len)?;
                let n = u32::from_le_bytes(len);
                if n == u32::MAX {
                    break;
                }
                let n = (n as usize).min(size);
                input.read_exact(&mut buf[..n])?;
                acc ^= xor_words(&buf[..n]);
                if i == 0 {
                    output.write_all(&[1])?;
                }
            }
            std::hint::black_box(acc);
            output.write_all(&[1])?;
            Ok(())
        }
        "tp_spsc" => {
            let mut rx = spsc::Receiver::<u64>::open(&format!("{name}.req"))?;
            let mut ack = spsc::Sender::<u64>::open(&format!("{name}.resp"))?;
            let _ = *rx.recv_ref()?;
            ack.send(0).map_err(Error::from)?;
            let mut acc = 0u64;
            let mut got = 0u64;
            while got < count {
                let chunk = rx.read_chunk(256)?;
                for v in chunk.iter() {
                    acc ^= *v;
                }
                got += chunk.len() as u64;
                chunk.commit_all();
            }
            ack.send(acc).map_err(Error::from)?;
            Ok(())
        }
        "tp_frames" => {
            let mut rx = frames::Receiver::open(&format!("{name}.req"))?;
            let mut ack = spsc::Sender::<u64>::open(&format!("{name}.resp"))?;
            let mut acc = 0u64;
            let _ = rx.recv_ref()?.len();
            ack.send(0).map_err(Error::from)?;
            for _ in 0..count {
                acc ^= xor_words(&rx.recv_ref()?);
            }
            ack.send(acc).map_err(Error::from)?;
            Ok(())
        }
        "tp_copy" => {
            let data = RawArray::<u8>::open(&format!("{name}.data"))?;
            let flags = RawArray::<u32>::open(&format!("{name}.flags"))?;
            let mut ack = spsc::Sender::<u64>::open(&format!("{name}.resp"))?;
            if data.len() != 2 * size {
                return Err("copy floor: buffer of the wrong size".into());
            }
            ack.send(0).map_err(Error::from)?;
            let mut acc = 0u64;
            for i in 0..count as usize {
                let slot = i % 2;
                // Acquire: pairs with the writer's Release after it filled the slot.
                while flags.atomics()[slot].load(Ordering::Acquire) != 1 {
                    std::hint::spin_loop();
                }
                // SAFETY: the slot is ours while its flag is 1 (the writer waits for 0),
                // and inside the array (length checked above).
                let bytes =
                    unsafe { std::slice::from_raw_parts(data.as_ptr().add(slot * size), size) };
                acc ^= xor_words(bytes);
                // Release: our reads are done before the writer reuses the slot.
                flags.atomics()[slot].store(0, Ordering::Release);
            }
            ack.send(acc).map_err(Error::from)?;
            Ok(())
        }
        other => Err(format!("unknown peer case {other}").into()),
    }
}

fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a valid u32 in shared memory; FUTEX_WAIT compares and sleeps.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            std::ptr::null::<libc::timespec>(),
        )
    };
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a valid u32 in shared memory.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1) };
}

// ---------------------------------------------------------------------------------------
// Reporting
