//! The frame ring under a hostile peer: a real channel whose control words (endpoint
//! slots, published positions, signal words, and every possible record header: stamp and
//! length word) are overwritten with fuzz-chosen values between calls. Every call must
//! return `Ok` or `Err` promptly, and a received frame must lie inside the ring.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmkit::{frames, CreationMode, Options};
use shmkit_fuzz::{
    install_cleanup_hook, micros, pair, unique_name, Mapping, NameGuard, Poke, Scribbler,
};

/// Records start at multiples of this; each begins with `[stamp: u64][len: u64]`.
const ALIGN: usize = 16;

#[derive(Arbitrary, Debug)]
enum Act {
    TrySend { len: u8, byte: u8 },
    SendTimeout { len: u8, byte: u8, t: u8 },
    TryLoan { len: u8, byte: u8, commit: bool },
    TryRecv { forget: bool },
    RecvTimeout(u8),
    DropSender,
    DropReceiver,
    OpenSender,
    OpenReceiver,
    Query,
}

#[derive(Arbitrary, Debug)]
struct Round {
    pokes: Vec<Poke>,
    acts: Vec<Act>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    cap_log: u8,
    rounds: Vec<Round>,
}

fn ignore<T, E>(_: Result<T, E>) {}

/// Checks a received frame: it lies inside the ring (whose data starts at `ring` in the
/// receiver's mapping), and its bytes are readable.
fn look(f: &[u8], ring: usize, cap: usize) {
    let at = f.as_ptr() as usize;
    assert!(
        at >= ring && at + f.len() <= ring + cap,
        "a frame of {} bytes at ring offset {} of a {cap}-byte ring",
        f.len(),
        at.wrapping_sub(ring)
    );
    let _ = f.iter().fold(0u8, |s, b| s ^ b);
}

fn act(
    a: &Act,
    name: &str,
    cap: usize,
    tx: &mut Option<frames::Sender>,
    rx: &mut Option<frames::Receiver>,
) {
    match *a {
        Act::TrySend { len, byte } => {
            if let Some(tx) = tx {
                let b = [byte; 256];
                ignore(tx.try_send(&b[..usize::from(len)]));
            }
        }
        Act::SendTimeout { len, byte, t } => {
            if let Some(tx) = tx {
                let b = [byte; 256];
                ignore(tx.send_timeout(&b[..usize::from(len)], micros(t)));
            }
        }
        Act::TryLoan { len, byte, commit } => {
            if let Some(tx) = tx {
                if let Ok(mut l) = tx.try_loan(usize::from(len)) {
                    assert_eq!(l.len(), usize::from(len));
                    l.fill(byte);
                    if commit {
                        ignore(l.commit());
                    }
                }
            }
        }
        Act::TryRecv { forget } => {
            if let Some(rx) = rx {
                let ring = rx.segment().as_ptr() as usize + pair::SIZE;
                if let Ok(f) = rx.try_recv_ref() {
                    look(&f, ring, cap);
                    let _ = f.as_slice::<u64>().map(|s| s.len());
                    if forget {
                        std::mem::forget(f);
                    }
                }
            }
        }
        Act::RecvTimeout(t) => {
            if let Some(rx) = rx {
                let ring = rx.segment().as_ptr() as usize + pair::SIZE;
                if let Ok(f) = rx.recv_ref_timeout(micros(t)) {
                    look(&f, ring, cap);
                }
            }
        }
        Act::DropSender => *tx = None,
        Act::DropReceiver => *rx = None,
        Act::OpenSender => {
            if tx.is_none() {
                *tx = frames::Sender::open(name).ok();
            }
        }
        Act::OpenReceiver => {
            if rx.is_none() {
                *rx = frames::Receiver::open(name).ok();
            }
        }
        Act::Query => {
            if let Some(tx) = tx {
                let _ = (
                    tx.len(),
                    tx.is_empty(),
                    tx.max_frame(),
                    tx.is_disconnected(),
                );
            }
            if let Some(rx) = rx {
                let _ = (rx.len(), rx.is_empty(), rx.capacity(), rx.is_disconnected());
            }
        }
    }
}

fuzz_target!(|input: Input| {
    install_cleanup_hook();
    let cap = 64usize << (input.cap_log % 4); // 64..=512 bytes
    let name = unique_name("frames");
    let _guard = NameGuard::new(&name);
    let opts = Options::new().keep(true);
    let mut rx = Some(
        frames::Receiver::with_options(&name, CreationMode::Create, cap, &opts)
            .expect("create frame channel"),
    );
    let mut tx = Some(frames::Sender::open(&name).expect("open frame sender"));
    let map = Mapping::open(&name).expect("map frame channel");
    let (body, len) = map.body();
    assert!(len >= pair::SIZE + cap, "frame body shorter than expected");

    let mut s = Scribbler::new();
    // SAFETY: our own mapping of the whole body, kept alive (`map`) until the end.
    let area = unsafe { s.add_area(body, len) };
    for end in 0..2 {
        for word in 0..3 {
            s.field(area, pair::ENDS + end * pair::END_SIZE + word * 4, false);
        }
    }
    s.field(area, pair::TAIL, true);
    s.field(area, pair::HEAD, true);
    s.field(area, pair::DATA, false);
    s.field(area, pair::SPACE, false);
    for r in (0..cap).step_by(ALIGN) {
        s.field(area, pair::SIZE + r, true);
        s.field(area, pair::SIZE + r + 8, true);
    }

    let mut budget = 64;
    for round in input.rounds.iter().take(8) {
        s.apply_all(&round.pokes, 16);
        for a in round.acts.iter().take(budget) {
            budget -= 1;
            act(a, &name, cap, &mut tx, &mut rx);
        }
    }
    drop((tx, rx));
    drop(map);
});
