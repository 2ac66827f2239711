//! Synchronisation benchmarks.
//!
//! - `uncontended/*`: lock + unlock with nobody else around: shmkit's robust `Mutex` next
//!   to `std::sync::Mutex` (goal: within 2x) and to `raw_sync`'s process-shared (not
//!   robust) pthread mutex, an unmaintained crate used here as a baseline only.
//! - `handoff/*`: two processes pinned to different CPUs pass a turn back and forth; one
//!   iteration is a round trip (two hand-offs). The shmkit mutex hand-off is measured next
//!   to the same round trip over a pair of pipes, in the same run, so the ratio holds on a
//!   noisy machine.
//!
//! - `round_trip/*`: semaphore and event ping-pong between two pinned processes, next to
//!   the floors measured in the same run: the busy cache-line round trip (both sides spin
//!   on a shared word) and the raw futex round trip (both sides always sleep), and a pipe.
//! - `float_channel`: the FloatChannel program's throughput, 100,000 `f64` per message,
//!   three ways in the same run: the Python shape (a `RawArray` and two semaphores, one
//!   copy in), zero-copy frames (the sender writes into a loan in the ring, the receiver
//!   sums in place), and a pipe (length-prefixed, copied in and out of the kernel).
//!
//! Children are this bench binary re-run with `SHMKIT_BENCH_ROLE` set.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU32, Ordering};

use criterion::{Criterion, Throughput};
use shmkit::{__private::pin_to_cpu, frames, spsc, Event, Mutex, RawArray, RawValue, Semaphore};

const ROLE: &str = "SHMKIT_BENCH_ROLE";
const NAME: &str = "SHMKIT_BENCH_NAME";
const STOP: u64 = u64::MAX;

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        child(&role);
        return;
    }
    let _ = pin_to_cpu(0);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    uncontended(&mut c);
    handoff(&mut c);
    round_trips(&mut c);
    float_channel(&mut c);
    c.final_summary();
}

fn spawn(role: &str, name: &str, piped: bool) -> Child {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(ROLE, role).env(NAME, name);
    if piped {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    }
    cmd.spawn().expect("spawn bench child")
}

fn child(role: &str) {
    let _ = pin_to_cpu(1);
    let name = std::env::var(NAME).unwrap_or_default();
    match role {
        "mutex_handoff" => {
            let m = Mutex::<u64>::open(&name).unwrap();
            loop {
                let mut g = m.lock().unwrap();
                if *g == STOP {
                    return;
                }
                if !g.is_multiple_of(2) {
                    *g += 1;
                }
            }
        }
        "pipe_echo" => {
            let (mut i, mut o) = (std::io::stdin().lock(), std::io::stdout().lock());
            let mut buf = [0u8; 8];
            while i.read_exact(&mut buf).is_ok() {
                if o.write_all(&buf).and_then(|_| o.flush()).is_err() {
                    return;
                }
            }
        }
        "sem_pong" => {
            let ping = Semaphore::open(&format!("{name}.ping")).unwrap();
            let pong = Semaphore::open(&format!("{name}.pong")).unwrap();
            let stop = RawValue::<u32>::open(&format!("{name}.stop")).unwrap();
            loop {
                ping.acquire().unwrap();
                if stop.get() != 0 {
                    return;
                }
                pong.release().unwrap();
            }
        }
        "event_pong" => {
            let ping = Event::open(&format!("{name}.ping")).unwrap();
            let pong = Event::open(&format!("{name}.pong")).unwrap();
            let stop = RawValue::<u32>::open(&format!("{name}.stop")).unwrap();
            loop {
                ping.wait().unwrap();
                ping.clear();
                if stop.get() != 0 {
                    return;
                }
                pong.set();
            }
        }
        "spin_pong" | "futex_pong" => {
            let words = RawArray::<u32>::open(&name).unwrap();
            let (ping, pong, stop) = (
                &words.atomics()[0],
                &words.atomics()[1],
                &words.atomics()[2],
            );
            let sleep = role == "futex_pong";
            let mut seen = 0;
            loop {
                seen = wait_change(ping, seen, sleep);
                if stop.load(Ordering::Acquire) != 0 {
                    return;
                }
                pong.store(seen, Ordering::Release);
                if sleep {
                    futex_wake(pong);
                }
            }
        }
        "float_receiver" => {
            let ch = FloatChannel::open(&name);
            loop {
                ch.full.acquire().unwrap();
                let n = ch.len.get() as usize;
                if n == usize::MAX >> 1 {
                    return;
                }
                // SAFETY: holding `full`: the sender does not write until we release `empty`.
                let sum: f64 = unsafe { ch.buf.as_slice()[..n.min(FLOATS)].iter().sum() };
                std::hint::black_box(sum);
                ch.empty.release().unwrap();
            }
        }
        "float_frames" => {
            let mut rx = frames::Receiver::open(&name).unwrap();
            let mut ack = spsc::Sender::<u64>::open(&format!("{name}.ack")).unwrap();
            loop {
                let f = match rx.recv_ref() {
                    Ok(f) => f,
                    Err(_) => return, // the bench closed the channel
                };
                let sum: f64 = f.as_slice::<f64>().unwrap().iter().sum();
                std::hint::black_box(sum);
                let last = f.len() == 8;
                drop(f);
                if last {
                    ack.send(0).unwrap(); // a batch's end marker
                }
            }
        }
        "float_pipe" => {
            let (mut i, mut o) = (std::io::stdin().lock(), std::io::stdout().lock());
            let mut buf = vec![0u8; FLOATS * 8];
            let mut len = [0u8; 8];
            while i.read_exact(&mut len).is_ok() {
                let n = (u64::from_le_bytes(len) as usize).min(buf.len());
                if n == 0 {
                    o.write_all(&[1]).unwrap(); // a batch's end marker
                    o.flush().unwrap();
                    continue;
                }
                i.read_exact(&mut buf[..n]).unwrap();
                let floats: &[f64] = bytemuck::cast_slice(&buf[..n]);
                std::hint::black_box(floats.iter().sum::<f64>());
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("uncontended");
    let name = format!("bench-uncontended-{}", std::process::id());
    let m = Mutex::<u64>::create(&name, 0).unwrap();
    g.bench_function("shmkit_mutex", |b| {
        b.iter(|| {
            *m.lock().unwrap() += 1;
        })
    });
    let s = std::sync::Mutex::new(0u64);
    g.bench_function("std_mutex", |b| {
        b.iter(|| {
            *s.lock().unwrap() += 1;
        })
    });
    // raw_sync (unmaintained; a baseline only): a PTHREAD_PROCESS_SHARED pthread mutex (not
    // robust) at the start of a 128-byte shmkit segment, guarding the u64 at byte 64.
    let raw = RawArray::<u64>::create_zeroed(&format!("{name}.raw"), 16).unwrap();
    let base = raw.as_ptr() as *mut u8;
    // SAFETY: `raw` maps 128 bytes, 8-aligned, for longer than `lock` lives (dropped below,
    // before `raw`); raw_sync initialises a pthread_mutex_t (40 bytes) at `base` and hands
    // back `base + 64` as its data pointer; no other process maps this segment.
    let (lock, _) =
        unsafe { <raw_sync::locks::Mutex as raw_sync::locks::LockInit>::new(base, base.add(64)) }
            .unwrap();
    g.bench_function("raw_sync_mutex", |b| {
        b.iter(|| {
            let guard = lock.lock().unwrap();
            // SAFETY: the guard holds the mutex; `*guard` is `base + 64`, an aligned u64
            // inside the segment that only this loop touches.
            unsafe { *(*guard as *mut u64) += 1 };
        })
    });
    drop(lock);
    drop(raw);
    g.finish();
}

fn handoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("handoff");
    let name = format!("bench-handoff-{}", std::process::id());
    let m = Mutex::<u64>::create(&name, 0).unwrap();
    let mut kid = spawn("mutex_handoff", &name, false);
    g.bench_function("shmkit_mutex_round_trip", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                loop {
                    let mut v = m.lock().unwrap();
                    if v.is_multiple_of(2) {
                        *v += 1;
                        break;
                    }
                }
            }
            // Wait for the last answer so every iteration is a full round trip.
            while !m.lock().unwrap().is_multiple_of(2) {}
            start.elapsed()
        })
    });
    *m.lock().unwrap() = STOP;
    kid.wait().unwrap();

    let mut echo = spawn("pipe_echo", "", true);
    let mut to = echo.stdin.take().unwrap();
    let mut from = echo.stdout.take().unwrap();
    g.bench_function("pipe_round_trip", |b| {
        b.iter_custom(|iters| {
            let mut buf = [0u8; 8];
            let start = Instant::now();
            for i in 0..iters {
                to.write_all(&i.to_le_bytes()).unwrap();
                from.read_exact(&mut buf).unwrap();
            }
            start.elapsed()
        })
    });
    drop(to);
    echo.wait().unwrap();
    g.finish();
}

/// Waits until `word` differs from `old` and returns its value: spinning, or sleeping on the
/// futex without spinning (the blocking floor).
fn wait_change(word: &AtomicU32, old: u32, sleep: bool) -> u32 {
    loop {
        let v = word.load(Ordering::Acquire);
        if v != old {
            return v;
        }
        if sleep {
            // SAFETY: `word` is a valid u32 in shared memory; FUTEX_WAIT compares and sleeps.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    word.as_ptr(),
                    libc::FUTEX_WAIT,
                    old,
                    std::ptr::null::<libc::timespec>(),
                )
            };
        } else {
            std::hint::spin_loop();
        }
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a valid u32 in shared memory.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1) };
}

fn round_trips(c: &mut Criterion) {
    let mut g = c.benchmark_group("round_trip");
    let base = format!("bench-rt-{}", std::process::id());

    // Floors: raw words in shared memory, spinning or always sleeping.
    for (role, label) in [
        ("spin_pong", "floor_cache_line"),
        ("futex_pong", "floor_futex"),
    ] {
        let words = RawArray::<u32>::create_zeroed(&base, 3).unwrap();
        let mut kid = spawn(role, &base, false);
        let (ping, pong, stop) = (
            &words.atomics()[0],
            &words.atomics()[1],
            &words.atomics()[2],
        );
        let sleep = role == "futex_pong";
        let mut seq = 0u32;
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    seq = seq.wrapping_add(1).max(1);
                    ping.store(seq, Ordering::Release);
                    if sleep {
                        futex_wake(ping);
                    }
                    loop {
                        let v = pong.load(Ordering::Acquire);
                        if v == seq {
                            break;
                        }
                        if sleep {
                            wait_change(pong, v, true);
                        } else {
                            std::hint::spin_loop();
                        }
                    }
                }
                start.elapsed()
            })
        });
        stop.store(1, Ordering::Release);
        ping.store(seq.wrapping_add(1).max(1), Ordering::Release);
        futex_wake(ping);
        kid.wait().unwrap();
    }

    {
        let ping = Semaphore::create(&format!("{base}.ping"), 0).unwrap();
        let pong = Semaphore::create(&format!("{base}.pong"), 0).unwrap();
        let stop = RawValue::<u32>::create(&format!("{base}.stop"), 0).unwrap();
        let mut kid = spawn("sem_pong", &base, false);
        g.bench_function("semaphore", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    ping.release().unwrap();
                    pong.acquire().unwrap();
                }
                start.elapsed()
            })
        });
        stop.set(1);
        ping.release().unwrap();
        kid.wait().unwrap();
    }

    {
        let ping = Event::create(&format!("{base}.ping")).unwrap();
        let pong = Event::create(&format!("{base}.pong")).unwrap();
        let stop = RawValue::<u32>::create(&format!("{base}.stop"), 0).unwrap();
        let mut kid = spawn("event_pong", &base, false);
        g.bench_function("event", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    ping.set();
                    pong.wait().unwrap();
                    pong.clear();
                }
                start.elapsed()
            })
        });
        stop.set(1);
        ping.set();
        kid.wait().unwrap();
    }
    g.finish();
}

const FLOATS: usize = 100_000;

struct FloatChannel {
    buf: RawArray<f64>,
    len: RawValue<u64>,
    empty: Semaphore,
    full: Semaphore,
}

impl FloatChannel {
    fn create(base: &str) -> FloatChannel {
        FloatChannel {
            buf: RawArray::create_zeroed(&format!("{base}.buf"), FLOATS).unwrap(),
            len: RawValue::create(&format!("{base}.len"), 0).unwrap(),
            empty: Semaphore::create(&format!("{base}.empty"), 1).unwrap(),
            full: Semaphore::create(&format!("{base}.full"), 0).unwrap(),
        }
    }

    fn open(base: &str) -> FloatChannel {
        FloatChannel {
            buf: RawArray::open(&format!("{base}.buf")).unwrap(),
            len: RawValue::open(&format!("{base}.len")).unwrap(),
            empty: Semaphore::open(&format!("{base}.empty")).unwrap(),
            full: Semaphore::open(&format!("{base}.full")).unwrap(),
        }
    }
}

fn float_channel(c: &mut Criterion) {
    let mut g = c.benchmark_group("float_channel");
    g.throughput(Throughput::Bytes((FLOATS * 8) as u64));
    let base = format!("bench-fc-{}", std::process::id());
    let ch = FloatChannel::create(&base);
    let mut kid = spawn("float_receiver", &base, false);
    let msg: Vec<f64> = (0..FLOATS).map(|i| i as f64).collect();
    g.bench_function("semaphores_100k_f64", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                ch.empty.acquire().unwrap();
                // SAFETY: holding `empty`: the receiver is not reading.
                unsafe { ch.buf.as_mut_slice().copy_from_slice(&msg) };
                ch.len.set(FLOATS as u64);
                ch.full.release().unwrap();
            }
            // The last message has been consumed when `empty` comes back.
            ch.empty.acquire().unwrap();
            ch.empty.release().unwrap();
            start.elapsed()
        })
    });
    ch.empty.acquire().unwrap();
    ch.len.set((usize::MAX >> 1) as u64);
    ch.full.release().unwrap();
    kid.wait().unwrap();

    // Zero-copy frames: room for several messages, so the sender runs ahead.
    let fname = format!("{base}.frames");
    let mut tx = frames::Sender::create(&fname, 8 << 20).unwrap();
    let mut ack = spsc::Receiver::<u64>::create(&format!("{fname}.ack"), 4).unwrap();
    let mut kid = spawn("float_frames", &fname, false);
    g.bench_function("frames_zero_copy_100k_f64", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let mut loan = tx.loan(FLOATS * 8).unwrap();
                loan.as_mut_slice::<f64>().unwrap().copy_from_slice(&msg);
                loan.commit().unwrap();
            }
            tx.send(&[0u8; 8]).unwrap(); // end of batch: wait until all were summed
            let _ = ack.recv().unwrap();
            start.elapsed()
        })
    });
    drop(tx);
    kid.wait().unwrap();

    // A pipe: what `multiprocessing.Queue` does underneath, without the pickling.
    let mut kid = spawn("float_pipe", "", true);
    let (mut to, mut from) = (kid.stdin.take().unwrap(), kid.stdout.take().unwrap());
    let bytes: &[u8] = bytemuck::cast_slice(&msg);
    g.bench_function("pipe_100k_f64", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                to.write_all(&(bytes.len() as u64).to_le_bytes()).unwrap();
                to.write_all(bytes).unwrap();
            }
            to.write_all(&0u64.to_le_bytes()).unwrap();
            to.flush().unwrap();
            let mut done = [0u8; 1];
            from.read_exact(&mut done).unwrap();
            start.elapsed()
        })
    });
    drop((to, from));
    kid.wait().unwrap();
    g.finish();
}
