//! Arbitrary bytes as the file of a named segment, opened as every kind of object.
//!
//! Input: one flag byte, then the file's contents (header first). Flags:
//! - bit 0: size the file by the header's `total_len` (zero-filled past the input) when
//!   that is at least the input and at most 1 MiB, so that large bodies (mpmc) need not
//!   be spelled out byte by byte;
//! - bit 1: force the fixed prefix valid (magic, version 1, header size 128);
//! - bit 2: force the init state *ready*;
//! - bit 3: force `total_len` to the file's real length.
//!
//! Every open must return `Ok` or `Err`; an `Ok` handle then gets a few non-blocking calls
//! (try-locks, zero timeouts, a try_send and a try_recv), which must also just return.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shmkit::__layout::segment as seg;
use shmkit::{
    frames, mpmc, spsc, Array, Barrier, BoundedSemaphore, Condvar, Event, Mutex, Options, RawArray,
    RawValue, ReentrantMutex, RwLock, Segment, Semaphore, Value,
};
use shmkit_fuzz::{install_cleanup_hook, unique_name, write_segment_file, HEADER_SIZE};

/// The largest file the target makes.
const MAX_FILE: u64 = 1 << 20;

const MAGIC: u64 = u64::from_le_bytes(*b"SHMKIT\0\x01");

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_ne_bytes());
}

fn get_u64(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// Drops whatever a call returned; only panics, hangs and crashes count.
fn ignore<T, E>(_: Result<T, E>) {}

fuzz_target!(|data: &[u8]| {
    install_cleanup_hook();
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut bytes = rest.to_vec();
    let mut len = bytes.len() as u64;
    if bytes.len() >= HEADER_SIZE {
        if flags & 2 != 0 {
            put_u64(&mut bytes, seg::MAGIC, MAGIC);
            put_u32(&mut bytes, seg::VERSION, seg::FORMAT_VERSION);
            put_u32(&mut bytes, seg::HEADER_SIZE, HEADER_SIZE as u32);
        }
        if flags & 4 != 0 {
            put_u32(&mut bytes, seg::STATE, 2);
        }
        let total = get_u64(&bytes, seg::TOTAL_LEN);
        if flags & 1 != 0 && total >= len && total <= MAX_FILE {
            len = total;
        }
        if flags & 8 != 0 {
            put_u64(&mut bytes, 56, len);
        }
    }

    let name = unique_name("");
    let _file = match write_segment_file(&name, &bytes, len) {
        Ok(g) => g,
        Err(e) => panic!("cannot create the segment file for {name}: {e}"),
    };
    let n = name.as_str();
    let z = Duration::ZERO;

    if let Ok(seg) = Segment::open(n, &Options::new()) {
        let _ = (seg.len(), seg.kind(), seg.creator_pid(), seg.is_creator());
    }
    if let Ok(info) = shmkit::inspect(n) {
        let _ = info.fields.len();
    }
    if let Ok(v) = Value::<u64>::open(n) {
        ignore(v.try_lock().map(|mut g| *g += 1));
        ignore(v.lock_timeout(z));
    }
    if let Ok(v) = RawValue::<u64>::open(n) {
        v.set(v.get().wrapping_add(1));
    }
    if let Ok(a) = Array::<u64>::open(n) {
        ignore(a.try_lock().map(|g| g.iter().fold(0u64, |s, x| s ^ x)));
        let _ = a.len();
    }
    if let Ok(a) = Array::<u8>::open(n) {
        ignore(a.lock_timeout(z).map(|g| g.len()));
    }
    if let Ok(a) = RawArray::<u64>::open(n) {
        let mut buf = vec![0u64; a.len().min(1 << 16)];
        ignore(a.read(0, &mut buf));
        ignore(a.get(a.len()));
        ignore(a.set(0, 1));
    }
    if let Ok(m) = Mutex::<u64>::open(n) {
        ignore(m.try_lock().map(|mut g| *g = 7));
        ignore(m.lock_timeout(z));
    }
    if let Ok(m) = Mutex::<[u8; 3]>::open(n) {
        ignore(m.try_lock().map(|g| g[2]));
    }
    if let Ok(l) = RwLock::<u64>::open(n) {
        ignore(l.try_read());
        ignore(l.try_write().map(|mut g| *g = 1));
        ignore(l.read_timeout(z));
    }
    if let Ok(m) = ReentrantMutex::open(n) {
        if let Ok(g) = m.try_lock() {
            ignore(m.try_lock());
            drop(g);
        }
    }
    if let Ok(s) = Semaphore::open(n) {
        if s.try_acquire().unwrap_or(false) {
            ignore(s.release());
        }
        ignore(s.acquire_timeout(z));
        let _ = s.value();
    }
    if let Ok(s) = BoundedSemaphore::open(n) {
        ignore(s.release());
        ignore(s.try_acquire());
    }
    if let Ok(e) = Event::open(n) {
        ignore(e.wait_timeout(z));
        e.set();
        e.clear();
    }
    if let Ok(c) = Condvar::open(n) {
        c.notify_one();
        c.notify_all();
    }
    if let Ok(b) = Barrier::open(n) {
        let _ = (b.parties(), b.is_broken());
        ignore(b.wait_timeout(z));
        b.reset();
    }
    if let Ok(mut rx) = spsc::Receiver::<u64>::open(n) {
        ignore(rx.try_recv());
        ignore(rx.recv_timeout(z));
        let _ = (rx.len(), rx.is_disconnected());
    }
    if let Ok(mut tx) = spsc::Sender::<u64>::open(n) {
        ignore(tx.try_send(1));
        let _ = tx.len();
    }
    if let Ok(mut rx) = spsc::Receiver::<[u32; 3]>::open(n) {
        ignore(rx.try_recv());
    }
    if let Ok(mut rx) = mpmc::Receiver::<u64>::open(n) {
        ignore(rx.try_recv());
        let _ = (rx.len(), rx.lost(), rx.is_disconnected());
    }
    if let Ok(mut tx) = mpmc::Sender::<u64>::open(n) {
        ignore(tx.try_send(1));
        ignore(tx.try_loan().map(|mut l| *l = 2));
    }
    if let Ok(mut rx) = frames::Receiver::open(n) {
        ignore(rx.try_recv().map(|f| f.len()));
        ignore(
            rx.recv_ref_timeout(z)
                .map(|f| f.as_slice::<u64>().map(|s| s.len())),
        );
        let _ = (rx.len(), rx.max_frame());
    }
    if let Ok(mut tx) = frames::Sender::open(n) {
        ignore(tx.try_send(b"fuzz"));
        ignore(tx.try_loan(24).and_then(|l| l.commit()));
    }
});
