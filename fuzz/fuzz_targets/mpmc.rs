//! The mpmc queue under a hostile peer: a real queue with up to three senders and three
//! receivers in this process, whose control words (tail, head, signal words, the lost
//! counter, endpoint registrations with their pending positions, slot stamps and values)
//! are overwritten with fuzz-chosen values between calls. Every call must return `Ok` or
//! `Err` promptly: no panic, no hang, no access outside the mapping.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmkit::{mpmc, CreationMode, Options};
use shmkit_fuzz::{
    install_cleanup_hook, micros, mpmc as layout, peek64, unique_name, Mapping, NameGuard, Poke,
    Scribbler,
};

const SLOT: usize = shmkit_fuzz::SLOT_U64;
/// Endpoints of each side this target juggles.
const ENDS: usize = 3;

#[derive(Arbitrary, Debug)]
enum Act {
    TrySend(u8, u64),
    SendTimeout(u8, u64, u8),
    /// `try_loan`, then commit at once, drop (give back), or forget (given back later).
    TryLoan {
        who: u8,
        v: u64,
        how: u8,
    },
    TryRecv {
        who: u8,
        forget: bool,
    },
    RecvTimeout(u8, u8),
    DropSender(u8),
    DropReceiver(u8),
    OpenSender(u8),
    OpenReceiver(u8),
    Query,
}

#[derive(Arbitrary, Debug)]
struct Round {
    pokes: Vec<Poke>,
    acts: Vec<Act>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    cap: u8,
    rounds: Vec<Round>,
}

fn ignore<T, E>(_: Result<T, E>) {}

struct Ends {
    tx: [Option<mpmc::Sender<u64>>; ENDS],
    rx: [Option<mpmc::Receiver<u64>>; ENDS],
}

/// Checks a received value: it lies in one of the `cap` slots of the receiver's mapping.
fn look(v: &u64, rx_body: usize, cap: usize) -> u64 {
    let at = v as *const u64 as usize;
    let first = rx_body + layout::SIZE + 8;
    assert!(
        at >= first && at < first + cap * SLOT && (at - first).is_multiple_of(SLOT),
        "a message at body offset {} is not a slot value",
        at.wrapping_sub(rx_body)
    );
    *v
}

fn act(a: &Act, name: &str, cap: usize, e: &mut Ends) {
    let i = |w: u8| usize::from(w) % ENDS;
    match *a {
        Act::TrySend(w, v) => {
            if let Some(tx) = &mut e.tx[i(w)] {
                ignore(tx.try_send(v));
            }
        }
        Act::SendTimeout(w, v, t) => {
            if let Some(tx) = &mut e.tx[i(w)] {
                ignore(tx.send_timeout(v, micros(t)));
            }
        }
        Act::TryLoan { who, v, how } => {
            if let Some(tx) = &mut e.tx[i(who)] {
                // Committed right after the claim, with no write in between: the slot
                // cannot have been skipped, so `commit` never falls back to a blocking send.
                if let Ok(mut l) = tx.try_loan() {
                    *l = v;
                    match how % 3 {
                        0 => ignore(l.commit()),
                        1 => drop(l),
                        _ => std::mem::forget(l),
                    }
                }
            }
        }
        Act::TryRecv { who, forget } => {
            if let Some(rx) = &mut e.rx[i(who)] {
                let body = rx.segment().as_ptr() as usize;
                if let Ok(g) = rx.try_recv_ref() {
                    look(&g, body, cap);
                    if forget {
                        std::mem::forget(g);
                    }
                }
            }
        }
        Act::RecvTimeout(w, t) => {
            if let Some(rx) = &mut e.rx[i(w)] {
                let body = rx.segment().as_ptr() as usize;
                ignore(rx.recv_ref_timeout(micros(t)).map(|g| look(&g, body, cap)));
            }
        }
        Act::DropSender(w) => e.tx[i(w)] = None,
        Act::DropReceiver(w) => e.rx[i(w)] = None,
        Act::OpenSender(w) => {
            if e.tx[i(w)].is_none() {
                e.tx[i(w)] = mpmc::Sender::open(name).ok();
            }
        }
        Act::OpenReceiver(w) => {
            if e.rx[i(w)].is_none() {
                e.rx[i(w)] = mpmc::Receiver::open(name).ok();
            }
        }
        Act::Query => {
            for tx in e.tx.iter().flatten() {
                let _ = (tx.len(), tx.lost(), tx.capacity(), tx.is_disconnected());
            }
            for rx in e.rx.iter_mut().flatten() {
                let _ = (rx.len(), rx.lost(), rx.is_empty(), rx.is_disconnected());
                let _ = rx.try_iter().take(4).count();
            }
        }
    }
}

fuzz_target!(|input: Input| {
    install_cleanup_hook();
    let cap = usize::from(input.cap % 8) + 1; // 1..=8, powers of two or not
    let name = unique_name("mpmc");
    let _guard = NameGuard::new(&name);
    let opts = Options::new().keep(true);
    let rx0 = mpmc::Receiver::<u64>::with_options(&name, CreationMode::Create, cap, &opts)
        .expect("create mpmc queue");
    let tx0 = mpmc::Sender::<u64>::open(&name).expect("open mpmc sender");
    let mut ends = Ends {
        tx: [Some(tx0), None, None],
        rx: [Some(rx0), None, None],
    };
    let map = Mapping::open(&name).expect("map mpmc queue");
    let (body, len) = map.body();
    assert!(
        len >= layout::SIZE + cap * SLOT,
        "mpmc body shorter than expected"
    );
    // The harness mirrors the layout: check it on the fresh queue before relying on it.
    for k in 0..cap {
        // SAFETY: inside the body (length checked above), 8-aligned.
        let stamp = unsafe { peek64(body, layout::SIZE + k * SLOT) };
        assert_eq!(
            stamp, k as u64,
            "fuzz harness out of date: mpmc slot layout changed"
        );
    }
    // SAFETY: as above.
    let pending = unsafe { peek64(body, layout::SENDERS + 128 + layout::PENDING) };
    assert_eq!(
        pending,
        layout::IDLE,
        "fuzz harness out of date: mpmc registration layout changed"
    );

    let mut s = Scribbler::new();
    // SAFETY: our own mapping of the whole body, kept alive (`map`) until the end.
    let area = unsafe { s.add_area(body, len) };
    s.field(area, layout::TAIL, true);
    s.field(area, layout::HEAD, true);
    s.field(area, layout::DATA, false);
    s.field(area, layout::SPACE, false);
    s.field(area, layout::LOST, true);
    for table in [layout::SENDERS, layout::RECEIVERS] {
        for j in [0, 1, 2, 3, 63] {
            let reg = table + j * 128;
            s.field(area, reg, false); // token
            s.field(area, reg + 4, false); // pid
            s.field(area, reg + 8, false); // ever
            s.field(area, reg + layout::PENDING, true);
        }
    }
    for k in 0..cap {
        s.field(area, layout::SIZE + k * SLOT, true);
        s.field(area, layout::SIZE + k * SLOT + 8, true);
    }

    let mut budget = 64;
    for round in input.rounds.iter().take(8) {
        s.apply_all(&round.pokes, 16);
        for a in round.acts.iter().take(budget) {
            budget -= 1;
            act(a, &name, cap, &mut ends);
        }
    }
    drop(ends);
    drop(map);
});
