//! The spsc ring under a hostile peer: a real channel whose control words (endpoint
//! slots, published positions, signal words, slot stamps and values) are overwritten with
//! fuzz-chosen values between calls. Every call must return `Ok` or `Err` promptly: no
//! panic, no hang, no access outside the mapping.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use shmkit::{spsc, CreationMode, Options};
use shmkit_fuzz::{
    install_cleanup_hook, micros, pair, peek64, unique_name, Mapping, NameGuard, Poke, Scribbler,
};

const SLOT: usize = shmkit_fuzz::SLOT_U64;

#[derive(Arbitrary, Debug)]
enum Act {
    TrySend(u64),
    SendTimeout(u64, u8),
    TryLoan {
        v: u64,
        commit: bool,
    },
    /// `write_chunk`, only once a `try_loan` showed a free slot (it would wait otherwise).
    WriteChunk {
        n: u8,
        fill: u64,
        commit: u8,
    },
    TryRecv {
        forget: bool,
    },
    RecvTimeout(u8),
    /// `read_chunk`, only once a `try_recv` showed a ready message.
    ReadChunk {
        n: u8,
        commit: u8,
    },
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

/// Checks a received value: it lies in one of the `cap` slots of the receiver's mapping.
fn look(v: &u64, rx_body: usize, cap: usize) -> u64 {
    let at = v as *const u64 as usize;
    let first = rx_body + pair::SIZE + 8;
    assert!(
        at >= first && at < first + cap * SLOT && (at - first).is_multiple_of(SLOT),
        "a message at body offset {} is not a slot value",
        at.wrapping_sub(rx_body)
    );
    *v
}

fn act(
    a: &Act,
    name: &str,
    cap: usize,
    tx: &mut Option<spsc::Sender<u64>>,
    rx: &mut Option<spsc::Receiver<u64>>,
) {
    let rx_body = rx.as_ref().map_or(0, |r| r.segment().as_ptr() as usize);
    match *a {
        Act::TrySend(v) => {
            if let Some(tx) = tx {
                ignore(tx.try_send(v));
            }
        }
        Act::SendTimeout(v, t) => {
            if let Some(tx) = tx {
                ignore(tx.send_timeout(v, micros(t)));
            }
        }
        Act::TryLoan { v, commit } => {
            if let Some(tx) = tx {
                if let Ok(mut l) = tx.try_loan() {
                    *l = v;
                    if commit {
                        ignore(l.commit());
                    }
                }
            }
        }
        Act::WriteChunk { n, fill, commit } => {
            if let Some(tx) = tx {
                let free = tx.try_loan().is_ok();
                if free {
                    if let Ok(mut c) = tx.write_chunk(usize::from(n)) {
                        let k = c.fill_from((0..).map(|i| fill.wrapping_add(i)));
                        assert!(k <= c.len());
                        c.commit(usize::from(commit));
                    }
                }
            }
        }
        Act::TryRecv { forget } => {
            if let Some(rx) = rx {
                if let Ok(g) = rx.try_recv_ref() {
                    look(&g, rx_body, cap);
                    if forget {
                        std::mem::forget(g);
                    }
                }
            }
        }
        Act::RecvTimeout(t) => {
            if let Some(rx) = rx {
                ignore(
                    rx.recv_ref_timeout(micros(t))
                        .map(|g| look(&g, rx_body, cap)),
                );
            }
        }
        Act::ReadChunk { n, commit } => {
            if let Some(rx) = rx {
                let ready = match rx.try_recv_ref() {
                    Ok(g) => {
                        // Leave it unreleased: the chunk below starts with it.
                        std::mem::forget(g);
                        true
                    }
                    Err(_) => false,
                };
                if ready {
                    if let Ok(c) = rx.read_chunk(usize::from(n)) {
                        let _ = c.iter().fold(0u64, |s, x| s ^ look(x, rx_body, cap));
                        assert!(c.get(c.len()).is_none());
                        c.commit(usize::from(commit));
                    }
                }
            }
        }
        Act::DropSender => *tx = None,
        Act::DropReceiver => *rx = None,
        Act::OpenSender => {
            if tx.is_none() {
                *tx = spsc::Sender::open(name).ok();
            }
        }
        Act::OpenReceiver => {
            if rx.is_none() {
                *rx = spsc::Receiver::open(name).ok();
            }
        }
        Act::Query => {
            if let Some(tx) = tx {
                let _ = (tx.len(), tx.is_empty(), tx.capacity(), tx.is_disconnected());
            }
            if let Some(rx) = rx {
                let _ = (rx.len(), rx.is_empty(), rx.capacity(), rx.is_disconnected());
                let _ = rx.try_iter().take(4).count();
            }
        }
    }
}

fuzz_target!(|input: Input| {
    install_cleanup_hook();
    let cap = 2usize << (input.cap_log % 4); // 2..=16
    let name = unique_name("spsc");
    let _guard = NameGuard::new(&name);
    let opts = Options::new().keep(true);
    let mut rx = Some(
        spsc::Receiver::<u64>::with_options(&name, CreationMode::Create, cap, &opts)
            .expect("create spsc channel"),
    );
    let mut tx = Some(spsc::Sender::<u64>::open(&name).expect("open spsc sender"));
    let map = Mapping::open(&name).expect("map spsc channel");
    let (body, len) = map.body();
    assert!(
        len >= pair::SIZE + cap * SLOT,
        "spsc body shorter than expected"
    );
    // The harness mirrors the layout: check it on the fresh ring before relying on it.
    for i in 0..cap {
        // SAFETY: inside the body (length checked above), 8-aligned.
        let stamp = unsafe { peek64(body, pair::SIZE + i * SLOT) };
        assert_eq!(
            stamp, i as u64,
            "fuzz harness out of date: spsc slot layout changed"
        );
    }

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
    for i in 0..cap {
        s.field(area, pair::SIZE + i * SLOT, true);
        s.field(area, pair::SIZE + i * SLOT + 8, true);
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
