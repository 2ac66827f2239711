//! Frame channel across real processes: random sizes with checksums, producer death at
//! every step, oversized frames, corruption, timeouts.

mod common;

use std::time::Duration;

use common::{arg, arg_as, die_now, finish, spawn, Names};
use shmkit::{frames, Error};

const PATIENCE: Duration = Duration::from_secs(30);

#[test]
fn __child() {
    common::child_main(&[
        ("random_sender", random_sender),
        ("die_sending", die_sending),
    ]);
}

/// A frame: `[seq: u64][len-derived bytes...][checksum: u64]`, fully determined by seq.
fn frame(seq: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    if len >= 16 {
        v[..8].copy_from_slice(&seq.to_le_bytes());
        let sum = v[..len - 8]
            .iter()
            .fold(0u64, |a, &b| a.rotate_left(5) ^ u64::from(b));
        v[len - 8..].copy_from_slice(&sum.to_le_bytes());
    }
    v
}

fn length_of(seq: u64) -> usize {
    // 0..64 KiB, skewed towards small frames, some exactly at alignment edges.
    let x = seq.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
    match seq % 7 {
        0 => (x % 65_536) as usize,
        1 => 16 * (x % 8) as usize,
        2 => 0,
        _ => (x % 512) as usize,
    }
}

const FRAMES: u64 = 20_000;

fn random_sender() {
    let mut tx = frames::Sender::open(&arg("name")).unwrap();
    for seq in 0..FRAMES {
        let f = frame(seq, length_of(seq));
        if seq % 2 == 0 {
            tx.send(&f).unwrap();
        } else {
            let mut loan = tx.loan(f.len()).unwrap();
            loan.copy_from_slice(&f);
            loan.commit().unwrap();
        }
    }
}

#[test]
fn random_lengths_up_to_64k_arrive_whole_and_in_order() {
    let names = Names::new("frames_random");
    let name = names.name("ch");
    let mut rx = frames::Receiver::create(&name, 1 << 18).unwrap();
    let kid = spawn("random_sender", &[("name", name.clone())]);
    let mut seq = 0;
    loop {
        match rx.recv_timeout(PATIENCE) {
            Ok(f) => {
                assert_eq!(
                    &*f,
                    &frame(seq, length_of(seq))[..],
                    "frame {seq} torn or misplaced"
                );
                seq += 1;
            }
            Err(Error::Disconnected) => break,
            Err(e) => panic!("after {seq} frames: {e}"),
        }
    }
    assert_eq!(seq, FRAMES);
    assert_eq!(finish(kid).code, Some(0));
}

fn die_sending() {
    let mut tx = frames::Sender::open(&arg("name")).unwrap();
    let k: u64 = arg_as("k");
    for seq in 0..k {
        tx.send(&frame(seq, 1000)).unwrap();
    }
    let f = frame(k, 1000);
    let mut loan = tx.loan(f.len()).unwrap();
    match arg("step").as_str() {
        "after_loan" => die_now(),
        "mid_write" => {
            loan[..500].copy_from_slice(&f[..500]);
            die_now();
        }
        "before_commit" => {
            loan.copy_from_slice(&f);
            die_now();
        }
        "after_commit" => {
            loan.copy_from_slice(&f);
            loan.commit().unwrap();
            die_now();
        }
        other => panic!("unknown step {other}"),
    }
}

#[test]
fn a_producer_killed_at_each_step_delivers_every_committed_frame_and_nothing_torn() {
    for (step, committed) in [
        ("after_loan", 7),
        ("mid_write", 7),
        ("before_commit", 7),
        ("after_commit", 8),
    ] {
        let names = Names::new(&format!("frames_kill_{step}"));
        let name = names.name("ch");
        // A small ring, so the stream wraps (padding records included).
        let mut rx = frames::Receiver::create(&name, 4096).unwrap();
        let kid = spawn(
            "die_sending",
            &[
                ("name", name.clone()),
                ("k", "7".into()),
                ("step", step.into()),
            ],
        );
        let mut seq = 0;
        loop {
            match rx.recv_timeout(PATIENCE) {
                Ok(f) => {
                    assert_eq!(&*f, &frame(seq, 1000)[..], "{step}: frame {seq}");
                    seq += 1;
                }
                Err(Error::Disconnected) => break,
                Err(e) => panic!("{step}: {e}"),
            }
        }
        assert_eq!(seq, committed, "{step}");
        assert_eq!(finish(kid).signal, Some(libc::SIGKILL));
        // A new sender attaches and continues.
        let mut tx = frames::Sender::open(&name).unwrap();
        tx.send(b"again").unwrap();
        assert_eq!(&rx.recv().unwrap(), b"again");
    }
}

#[test]
fn oversized_frames_are_refused_at_send_and_views_are_typed() {
    let names = Names::new("frames_big");
    let name = names.name("ch");
    let mut tx = frames::Sender::create(&name, 1024).unwrap();
    let mut rx = frames::Receiver::open(&name).unwrap();
    assert_eq!(tx.max_frame(), 1024 - 32);
    assert!(matches!(
        tx.send(&[0; 1000]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(tx.loan(5000), Err(Error::InvalidArgument(_))));
    tx.send(&vec![7; tx.max_frame()]).unwrap();
    assert_eq!(rx.recv().unwrap().len(), 992);
    tx.send_slice(&[1.0f64, 2.0, 3.0]).unwrap();
    let f = rx.recv_ref().unwrap();
    assert_eq!(f.as_slice::<f64>().unwrap(), &[1.0, 2.0, 3.0]);
    assert!(f.as_slice::<[u8; 7]>().is_err());
    drop(f);
    assert!(matches!(
        frames::Sender::create(&names.name("odd"), 1000),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn try_and_timeout_forms_do_not_block() {
    let names = Names::new("frames_try");
    let name = names.name("ch");
    let mut tx = frames::Sender::create(&name, 256).unwrap();
    let mut rx = frames::Receiver::open(&name).unwrap();
    assert!(matches!(rx.try_recv(), Err(Error::WouldBlock)));
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(5)),
        Err(Error::Timeout)
    ));
    let mut sent = 0;
    while tx.try_send(&[1; 40]).is_ok() {
        sent += 1;
    }
    assert!(sent > 0);
    assert!(matches!(tx.try_send(&[1; 40]), Err(Error::WouldBlock)));
    assert!(matches!(
        tx.send_timeout(&[1; 40], Duration::from_millis(5)),
        Err(Error::Timeout)
    ));
    for _ in 0..sent {
        assert_eq!(rx.recv().unwrap(), vec![1; 40]);
    }
    assert!(rx.is_empty());
}

#[test]
fn a_corrupted_length_word_is_an_error_not_ub() {
    use std::os::unix::fs::FileExt;
    let names = Names::new("frames_corrupt");
    let name = names.name("ch");
    let mut rx = frames::Receiver::create(&name, 1024).unwrap();
    let mut tx = frames::Sender::open(&name).unwrap();
    tx.send(b"fine").unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm/shmkit.{name}"))
        .unwrap();
    use shmkit::__layout::{frames as layout, pair, segment};
    // Segment header + channel header; then the first record, with its length word.
    let len_word = (segment::SIZE + pair::SIZE + layout::LEN) as u64;
    file.write_at(&(1u64 << 40).to_le_bytes(), len_word)
        .unwrap();
    assert!(matches!(rx.try_recv(), Err(Error::Corrupt { .. })));
    // A padding record that does not reach the end of the ring.
    file.write_at(&(layout::PAD | 48).to_le_bytes(), len_word)
        .unwrap();
    assert!(matches!(
        rx.recv_timeout(PATIENCE),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn a_frame_that_is_not_whole_values_of_a_type_says_so_in_our_words() {
    use shmkit::bytemuck::{Pod, Zeroable};
    /// Needs more alignment than a frame's payload has (16 bytes).
    #[derive(Clone, Copy, Pod, Zeroable)]
    #[bytemuck(crate = "shmkit::bytemuck")]
    #[repr(C, align(32))]
    struct Wide([u8; 32]);

    let names = Names::new("frames_cast");
    let name = names.name("ch");
    let mut tx = frames::Sender::create(&name, 1024).unwrap();
    let mut rx = frames::Receiver::open(&name).unwrap();
    let slop = |r: Result<usize, Error>| match r {
        Err(Error::InvalidArgument(msg)) => msg,
        other => panic!("{other:?}"),
    };
    // Received: 12 bytes are not a whole number of f64.
    tx.send(&[0; 12]).unwrap();
    let f = rx.recv_ref().unwrap();
    let msg = slop(f.as_slice::<f64>().map(<[f64]>::len));
    assert_eq!(
        msg,
        "a frame of 12 bytes is not a whole number of f64 (8 bytes)"
    );
    assert_eq!(f.as_slice::<u32>().unwrap().len(), 3);
    drop(f);
    // Lent: the same words.
    let mut loan = tx.loan(12).unwrap();
    let msg = slop(loan.as_mut_slice::<u64>().map(|s| s.len()));
    assert_eq!(
        msg,
        "a frame of 12 bytes is not a whole number of u64 (8 bytes)"
    );
    drop(loan);
    // Alignment beyond the payload's: the first record's payload sits 16 bytes into a
    // 128-aligned ring, so it is not 32-aligned.
    let name = names.name("aligned");
    let mut tx = frames::Sender::create(&name, 1024).unwrap();
    let mut rx = frames::Receiver::open(&name).unwrap();
    tx.send(&[0; 32]).unwrap();
    let f = rx.recv_ref().unwrap();
    let msg = slop(f.as_slice::<Wide>().map(<[Wide]>::len));
    assert!(
        msg.contains("32-byte alignment") && msg.contains("16-byte aligned"),
        "{msg}"
    );
}
