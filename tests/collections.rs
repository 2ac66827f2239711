//! `SharedDict` and `SharedList` across real processes (RELIABILITY.md scenarios 24 and
//! 25): many writers, atomic updates, writers killed at each step of a write (through the
//! `failpoints` feature), a full table, another type on open, and a hostile process
//! writing garbage into the segment while another process keeps using it.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use common::{arg, arg_as, finish, finish_ok, report, spawn, wait_until, Names};
use shmkit::__layout::collections as lay;
use shmkit::{CreationMode, Error, Event, Options, SharedDict, SharedList};

/// A failure bound only: nothing waits this long when things work.
const PATIENCE: Duration = Duration::from_secs(30);
const UPDATES: u64 = 20_000;

#[test]
fn __child() {
    common::child_main(&[
        ("write_pid", write_pid),
        ("add", add),
        ("hostile_writer", hostile_writer),
        ("hostile_user", hostile_user),
        ("hold_stripe", hold_stripe),
        ("insert_key", insert_key),
        ("churn", churn),
        ("come_and_go", come_and_go),
        #[cfg(feature = "failpoints")]
        ("overwrite", overwrite),
        #[cfg(feature = "failpoints")]
        ("insert_new", insert_new),
        #[cfg(feature = "failpoints")]
        ("list_push", list_push),
        #[cfg(feature = "failpoints")]
        ("list_set", list_set),
        #[cfg(feature = "failpoints")]
        ("recover_dict", recover_dict),
        #[cfg(feature = "failpoints")]
        ("replace_key", replace_key),
    ]);
}

fn path_of(name: &str) -> String {
    format!("/dev/shm/shmkit.{name}")
}

/// Writes `bytes` at `off` of the segment's body (after its 128-byte header).
fn poke(name: &str, off: usize, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path_of(name))
        .expect("open the segment file");
    f.write_all_at(bytes, (shmkit::__layout::segment::SIZE + off) as u64)
        .expect("write into the segment");
}

fn write_pid() {
    let d = SharedDict::<u32, u32>::open(&arg("dict")).unwrap();
    let l = SharedList::<u32>::open(&arg("list")).unwrap();
    let pid = std::process::id();
    assert_eq!(d.insert(&pid, &pid).unwrap(), None);
    l.push(&pid).unwrap();
    report("pid", pid);
}

#[test]
fn ten_processes_each_write_their_pid_and_the_parent_sees_all() {
    let names = Names::new("dict_pids");
    let (dn, ln) = (names.name("d"), names.name("l"));
    let d = SharedDict::<u32, u32>::create(&dn, 16).unwrap();
    let l = SharedList::<u32>::create(&ln, 16).unwrap();
    let kids: Vec<_> = (0..10)
        .map(|_| spawn("write_pid", &[("dict", dn.clone()), ("list", ln.clone())]))
        .collect();
    let pids: BTreeSet<u32> = kids.into_iter().map(|c| finish_ok(c).get("pid")).collect();
    assert_eq!(pids.len(), 10);
    assert_eq!(d.len(), 10);
    for &pid in &pids {
        assert_eq!(d.get(&pid).unwrap(), Some(pid));
    }
    let snap: BTreeSet<(u32, u32)> = d.snapshot().unwrap().into_iter().collect();
    assert_eq!(snap, pids.iter().map(|&p| (p, p)).collect());
    let listed: BTreeSet<u32> = l.to_vec().unwrap().into_iter().collect();
    assert_eq!(l.len(), 10);
    assert_eq!(listed, pids);
}

fn add() {
    let d = SharedDict::<String, u64>::open(&arg("dict")).unwrap();
    let me: u64 = arg_as("me");
    for i in 0..UPDATES {
        let k = format!("k{}", i % 7);
        d.update(&k, |v| Some(v.unwrap_or(0) + 1)).unwrap();
        // A nested value: Manager().dict() loses `d[k].append(x)` from two processes.
        if i.is_multiple_of(100) {
            d.update(&"log".to_string(), |v| Some(v.unwrap_or(0) + me))
                .unwrap();
        }
    }
}

#[test]
fn concurrent_updates_from_four_processes_lose_nothing() {
    let names = Names::new("dict_update");
    let dn = names.name("d");
    let d = SharedDict::<String, u64>::create(&dn, 16).unwrap();
    let kids: Vec<_> = (1..=4u64)
        .map(|me| spawn("add", &[("dict", dn.clone()), ("me", me.to_string())]))
        .collect();
    kids.into_iter().for_each(|c| {
        finish_ok(c);
    });
    let total: u64 = (0..7)
        .map(|k| d.get(&format!("k{k}")).unwrap().unwrap())
        .sum();
    assert_eq!(total, 4 * UPDATES);
    assert_eq!(
        d.get(&"log".to_string()).unwrap(),
        Some((1 + 2 + 3 + 4) * UPDATES / 100)
    );
    assert_eq!(d.len(), 8);
}

#[test]
fn a_full_dict_or_list_and_an_entry_too_large_are_errors_that_change_nothing() {
    let names = Names::new("dict_full");
    let d = SharedDict::<u64, String>::create_with(&names.name("d"), 4, 32).unwrap();
    for k in 0..4 {
        d.insert(&k, &format!("v{k}")).unwrap();
    }
    assert!(matches!(
        d.insert(&9, &"x".into()),
        Err(Error::Overflow { limit: 4 })
    ));
    assert!(matches!(
        d.update(&9, |_| Some("x".into())),
        Err(Error::Overflow { limit: 4 })
    ));
    // Replacing an existing key still works in a full dict.
    assert_eq!(d.insert(&2, &"w".into()).unwrap().as_deref(), Some("v2"));
    assert!(matches!(
        d.insert(&1, &"y".repeat(40)),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(d.get(&1).unwrap().as_deref(), Some("v1"));
    assert_eq!(d.len(), 4);
    assert_eq!(d.remove(&0).unwrap().as_deref(), Some("v0"));
    d.insert(&9, &"x".into()).unwrap();
    let mut all = d.snapshot().unwrap();
    all.sort();
    let want: Vec<(u64, String)> = [(1, "v1"), (2, "w"), (3, "v3"), (9, "x")]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect();
    assert_eq!(all, want);

    let l = SharedList::<String>::create_with(&names.name("l"), 2, 8).unwrap();
    l.push(&"a".into()).unwrap();
    assert!(matches!(
        l.push(&"b".repeat(20)),
        Err(Error::InvalidArgument(_))
    ));
    l.push(&"b".into()).unwrap();
    assert!(matches!(
        l.push(&"c".into()),
        Err(Error::Overflow { limit: 2 })
    ));
    assert!(matches!(
        l.set(2, &"c".into()),
        Err(Error::OutOfBounds { index: 2, len: 2 })
    ));
    assert_eq!(l.to_vec().unwrap(), ["a", "b"]);
}

#[test]
fn many_inserts_removes_and_replacements_agree_with_a_btreemap() {
    // Exercises probing, tombstones, their clean-up and moves against a model.
    let names = Names::new("dict_model");
    let d = SharedDict::<u64, u64>::create(&names.name("d"), 64).unwrap();
    let mut model = std::collections::BTreeMap::new();
    let mut x: u64 = 0x9e37_79b9;
    for step in 0..20_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let k = x % 97;
        match x % 5 {
            0 | 1 => {
                if model.len() < 64 || model.contains_key(&k) {
                    assert_eq!(d.insert(&k, &step).unwrap(), model.insert(k, step));
                } else {
                    assert!(matches!(d.insert(&k, &step), Err(Error::Overflow { .. })));
                }
            }
            2 => assert_eq!(d.remove(&k).unwrap(), model.remove(&k)),
            3 => assert_eq!(d.get(&k).unwrap(), model.get(&k).copied()),
            _ => {
                if model.contains_key(&k) {
                    let new = d.update(&k, |v| v.map(|v| v + 1)).unwrap();
                    let m = model.get_mut(&k).unwrap();
                    *m += 1;
                    assert_eq!(new, Some(*m));
                }
            }
        }
        assert_eq!(d.len(), model.len());
    }
    let mut all = d.snapshot().unwrap();
    all.sort();
    assert_eq!(all, model.into_iter().collect::<Vec<_>>());
}

#[test]
fn another_type_kind_or_size_on_open_is_a_layout_mismatch() {
    let names = Names::new("dict_types");
    let (dn, ln) = (names.name("d"), names.name("l"));
    let _d = SharedDict::<String, u64>::create(&dn, 8).unwrap();
    let _l = SharedList::<String>::create(&ln, 8).unwrap();
    let mismatch = |e: Error| matches!(e, Error::LayoutMismatch { .. });
    assert!(mismatch(SharedDict::<u64, u64>::open(&dn).unwrap_err()));
    assert!(mismatch(SharedDict::<String, i64>::open(&dn).unwrap_err()));
    assert!(mismatch(SharedList::<u64>::open(&ln).unwrap_err()));
    assert!(mismatch(SharedList::<String>::open(&dn).unwrap_err()));
    assert!(mismatch(SharedDict::<String, u64>::open(&ln).unwrap_err()));
    assert!(mismatch(
        SharedDict::<String, u64>::open_or_create(&dn, 9).unwrap_err()
    ));
    assert!(mismatch(shmkit::Value::<u64>::open(&dn).unwrap_err()));
    // Another shape with the same body size: 3 entries of 112 bytes (4 slots of 144) and
    // 1 entry of 256 (2 slots of 288) both take 576 bytes.
    let same = names.name("same");
    let _s = SharedDict::<u64, u64>::create_with(&same, 3, 112).unwrap();
    assert!(mismatch(
        SharedDict::<u64, u64>::open_or_create(&same, 1).unwrap_err()
    ));
    assert!(matches!(
        SharedDict::<u64, u64>::create_with(&names.name("zero"), 0, 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        SharedList::<u64>::create(&names.name("zero"), 0),
        Err(Error::InvalidArgument(_))
    ));
    // The right types open, and see the same entries.
    SharedDict::<String, u64>::open(&dn)
        .unwrap()
        .insert(&"k".into(), &1)
        .unwrap();
    assert_eq!(_d.get(&"k".into()).unwrap(), Some(1));
    let again = SharedDict::<String, u64>::open_or_create(&dn, 8).unwrap();
    assert!(!again.is_creator());
    let _ = SharedDict::<String, u64>::with_options(
        &names.name("kept"),
        CreationMode::Create,
        4,
        &Options::new(),
    )
    .unwrap();
}

#[test]
fn inspect_shows_the_length_and_capacity() {
    let names = Names::new("dict_inspect");
    let (dn, ln) = (names.name("d"), names.name("l"));
    let d = SharedDict::<u64, u64>::create(&dn, 8).unwrap();
    let l = SharedList::<u64>::create(&ln, 5).unwrap();
    d.insert(&1, &1).unwrap();
    d.insert(&2, &2).unwrap();
    l.push(&1).unwrap();
    for (name, kind, len, cap) in [(&dn, "dict", "2", "8"), (&ln, "list", "1", "5")] {
        let r = shmkit::inspect(name).unwrap();
        let field = |k: &str| {
            r.fields
                .iter()
                .find(|(f, _)| f == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {k} in {:?}", r.fields))
        };
        assert_eq!(field("kind"), kind);
        assert_eq!(field("len"), len);
        assert_eq!(field("capacity (entries)"), cap);
        assert_eq!(field("lock"), "free");
    }
}

// ---------------------------------------------------------------------------------------
// Lock stripes: probes that cross stripes and wrap around the table.

/// Holds the stripe of `key`'s home inside an `update` until `release` is set.
fn hold_stripe() {
    let d = SharedDict::<u64, u64>::open(&arg("dict")).unwrap();
    let held = Event::open(&arg("held")).unwrap();
    let release = Event::open(&arg("release")).unwrap();
    d.update(&arg_as("key"), |_| {
        held.set();
        assert!(release.wait_timeout(PATIENCE).unwrap(), "never released");
        Some(7)
    })
    .unwrap();
}

fn insert_key() {
    let mut d = SharedDict::<u64, u64>::open(&arg("dict")).unwrap();
    d.set_timeout(Some(PATIENCE));
    d.insert(&arg_as("key"), &3).unwrap();
}

/// Reads the `u32` at `off` of the segment's body.
fn peek_u32(name: &str, off: usize) -> u32 {
    let f = std::fs::File::open(path_of(name)).expect("open the segment file");
    let mut b = [0; 4];
    f.read_exact_at(&mut b, (shmkit::__layout::segment::SIZE + off) as u64)
        .expect("read the segment");
    u32::from_ne_bytes(b)
}

#[test]
fn a_probe_that_wraps_into_a_busy_stripe_waits_holding_no_other_stripe() {
    let names = Names::new("dict_wrap");
    let dn = names.name("d");
    // 400 entries: 501 slots in 7 stripes of 72 (the last of 69).
    let mut d = SharedDict::<u64, u64>::create(&dn, 400).unwrap();
    let home = |k: u64| shmkit::__private::dict_home(&d, &k).unwrap();
    let last: Vec<u64> = (0..).filter(|&k| home(k).0 == 500).take(3).collect();
    let first = (0..).find(|&k| home(k).0 < 60).unwrap();
    assert_eq!(home(last[0]).1, 6);
    assert_eq!(home(first).1, 0);
    d.insert(&last[0], &1).unwrap(); // slot 500
    d.insert(&last[1], &2).unwrap(); // wraps to slot 0, in stripe 0

    // One process holds stripe 0; another inserts a third key of home 500, whose probe
    // wraps into stripe 0 and must wait there.
    let (held, release) = (names.name("held"), names.name("release"));
    let (held_ev, release_ev) = (
        Event::create(&held).unwrap(),
        Event::create(&release).unwrap(),
    );
    let holder = spawn(
        "hold_stripe",
        &[
            ("dict", dn.clone()),
            ("key", first.to_string()),
            ("held", held.clone()),
            ("release", release.clone()),
        ],
    );
    assert!(held_ev.wait_timeout(PATIENCE).unwrap());
    let inserter = spawn(
        "insert_key",
        &[("dict", dn.clone()), ("key", last[2].to_string())],
    );
    // The inserter sleeps on stripe 0's lock (its PARKED bit, bit 31).
    let word = lay::HEAD + lay::STRIPE_LOCK_WORD;
    wait_until(PATIENCE, || peek_u32(&dn, word) & 1 << 31 != 0);
    // Had it kept stripe 6 while it waits, this would wait for it, it for the holder, the
    // holder for us: the timeout turns that into a failure.
    d.set_timeout(Some(PATIENCE));
    assert_eq!(d.get(&last[0]).unwrap(), Some(1));
    release_ev.set();
    finish_ok(holder);
    finish_ok(inserter);
    for (k, v) in [(last[0], 1), (last[1], 2), (last[2], 3), (first, 7)] {
        assert_eq!(d.get(&k).unwrap(), Some(v), "key {k}");
    }
    assert_eq!(d.len(), 4);
}

const CHURN_ROUNDS: u64 = 40;

/// Process `me` of `of` works on the keys `k < keys` with `k % of == me`: each round puts
/// them all (inserts or replacements), checks and bumps each, removes every other one,
/// and adds one to the shared counter (key `u64::MAX`). Ends with all its keys present,
/// each holding `CHURN_ROUNDS * 10 + 1`.
fn churn() {
    let mut d = SharedDict::<u64, u64>::open(&arg("dict")).unwrap();
    d.set_timeout(Some(PATIENCE));
    let (me, of, keys): (u64, u64, u64) = (arg_as("me"), arg_as("of"), arg_as("keys"));
    let mine: Vec<u64> = (0..keys).filter(|k| k % of == me).collect();
    for round in 1..=CHURN_ROUNDS {
        for &k in &mine {
            d.insert(&k, &(round * 10)).unwrap();
        }
        for &k in &mine {
            let v = d.update(&k, |v| v.map(|v| v + 1)).unwrap();
            assert_eq!(v, Some(round * 10 + 1), "key {k}, round {round}");
        }
        for &k in mine.iter().step_by(2).filter(|_| round < CHURN_ROUNDS) {
            assert_eq!(d.remove(&k).unwrap(), Some(round * 10 + 1));
            assert!(!d.contains_key(&k).unwrap());
        }
        d.update(&u64::MAX, |c| Some(c.unwrap_or(0) + 1)).unwrap();
    }
}

#[test]
fn four_processes_churn_a_full_many_striped_dict_and_lose_nothing() {
    let names = Names::new("dict_churn");
    let dn = names.name("d");
    // 600 entries and the counter: 752 slots in 11 stripes, full at the end, so probes
    // cross stripes and wrap around the table, while all four processes write.
    let (keys, cap) = (600u64, 601usize);
    let d = SharedDict::<u64, u64>::create(&dn, cap).unwrap();
    let kids: Vec<_> = (0..4u64)
        .map(|me| {
            spawn(
                "churn",
                &[
                    ("dict", dn.clone()),
                    ("me", me.to_string()),
                    ("of", "4".to_owned()),
                    ("keys", keys.to_string()),
                ],
            )
        })
        .collect();
    kids.into_iter().for_each(|c| {
        finish_ok(c);
    });
    let want: BTreeSet<(u64, u64)> = (0..keys)
        .map(|k| (k, CHURN_ROUNDS * 10 + 1))
        .chain([(u64::MAX, 4 * CHURN_ROUNDS)])
        .collect();
    let have: BTreeSet<(u64, u64)> = d.snapshot().unwrap().into_iter().collect();
    assert_eq!(have, want);
    assert_eq!(d.len(), cap);
    assert!(matches!(
        d.insert(&keys, &0),
        Err(Error::Overflow { limit }) if limit == cap as u64
    ));
    // Every place is accounted for: emptied, the dict takes `cap` new keys again.
    d.clear().unwrap();
    assert_eq!(d.len(), 0);
    for k in 0..cap as u64 {
        d.insert(&(k + 1000), &k).unwrap();
    }
    assert!(matches!(d.insert(&0, &0), Err(Error::Overflow { .. })));
}

const COME_AND_GO: u64 = 50_000;

/// Inserts a key of its own and removes it, `COME_AND_GO` times: never more than one key
/// of its own in the dict.
fn come_and_go() {
    let mut d = SharedDict::<u64, u64>::open(&arg("dict")).unwrap();
    d.set_timeout(Some(PATIENCE));
    let me: u64 = arg_as("me");
    for i in 0..COME_AND_GO {
        let k = (me + 1) << 32 | i;
        if let Err(e) = d.insert(&k, &i) {
            panic!("insert {i} of process {me}: {e} (the dict was never full)");
        }
        assert_eq!(d.remove(&k).unwrap(), Some(i));
    }
}

#[test]
fn a_dict_one_place_short_of_full_per_process_never_reports_itself_full() {
    let names = Names::new("dict_places");
    let dn = names.name("d");
    // 4,096 entries in 64 stripes, all but two filled: the two free places move between
    // stripes as the processes take them (mostly from another stripe than their key's,
    // after a search through many) and give them back (to their key's).
    let (cap, procs) = (4096u64, 2u64);
    let d = SharedDict::<u64, u64>::create(&dn, cap as usize).unwrap();
    for k in 0..cap - procs {
        d.insert(&k, &k).unwrap();
    }
    let kids: Vec<_> = (0..procs)
        .map(|me| {
            spawn(
                "come_and_go",
                &[("dict", dn.clone()), ("me", me.to_string())],
            )
        })
        .collect();
    kids.into_iter().for_each(|c| {
        finish_ok(c);
    });
    assert_eq!(d.len() as u64, cap - procs);
    for k in cap - procs..cap {
        d.insert(&k, &k).unwrap();
    }
    assert!(matches!(d.insert(&cap, &0), Err(Error::Overflow { .. })));
}

// ---------------------------------------------------------------------------------------
// Forged bytes, one field at a time: each is an error, never a panic.

#[test]
fn forged_fields_are_corrupt_errors_and_recover_drops_forged_entries() {
    let names = Names::new("dict_forged");
    let dn = names.name("d");
    let d = SharedDict::<u64, String>::create_with(&dn, 8, 24).unwrap();
    for k in 0..6 {
        d.insert(&k, &format!("value {k}")).unwrap();
    }
    let slots = 8 + 8 / 4 + 1;
    let slot_size = lay::SLOT + 24;
    let slot_at = |i: usize| lay::dict_slots_at(8) + i * slot_size;
    // Flip one byte of every full slot's value: each read of it is Corrupt.
    let mut damaged = 0;
    let file = std::fs::read(path_of(&dn)).unwrap();
    let body = &file[shmkit::__layout::segment::SIZE..];
    for i in 0..slots {
        if body[slot_at(i) + lay::SLOT_STATE] == 1 && damaged < 2 {
            let at = slot_at(i) + lay::SLOT + 1;
            poke(&dn, at, &[body[at] ^ 0x55]);
            damaged += 1;
        }
    }
    assert_eq!(damaged, 2);
    let errors = (0..6)
        .filter(|k| matches!(d.get(k), Err(Error::Corrupt { .. })))
        .count();
    assert_eq!(errors, 2);
    assert!(matches!(d.snapshot(), Err(Error::Corrupt { .. })));

    // A huge key length, an unknown state: Corrupt.
    let last_full = (0..slots)
        .rev()
        .find(|&i| body[slot_at(i) + lay::SLOT_STATE] == 1)
        .unwrap();
    poke(
        &dn,
        slot_at(last_full) + lay::SLOT_KLEN,
        &u32::MAX.to_ne_bytes(),
    );
    assert!(matches!(d.snapshot(), Err(Error::Corrupt { .. })));
    poke(
        &dn,
        slot_at(last_full) + lay::SLOT_STATE,
        &7u32.to_ne_bytes(),
    );
    assert!(matches!(d.snapshot(), Err(Error::Corrupt { .. })));
    // A forged lock word naming a dead process: OwnerDied, then recover drops what is bad.
    let stripe0 = lay::HEAD; // a dict this small has one stripe
    poke(
        &dn,
        stripe0 + lay::STRIPE_LOCK_WORD,
        &0x7fff_fff0u32.to_ne_bytes(),
    );
    assert!(matches!(d.get(&0), Err(Error::OwnerDied)));
    assert!(matches!(d.get(&0), Err(Error::OwnerDied))); // until repaired
    let r = d.recover().unwrap();
    assert!(r.owner_died);
    assert_eq!(r.dropped, 3); // two checksums, one unknown state
    assert_eq!(d.len(), 3);
    assert_eq!(d.snapshot().unwrap().len(), 3);
    d.insert(&100, &"after".into()).unwrap();
    assert_eq!(d.len(), 4);

    // A forged count of free places, more than the capacity: a new key is Corrupt (a
    // replacement takes no place); `recover` recounts.
    poke(&dn, stripe0 + lay::STRIPE_PLACES, &u64::MAX.to_ne_bytes());
    assert_eq!(d.len(), 0); // a hint, clamped
    assert!(matches!(
        d.insert(&200, &"more".into()),
        Err(Error::Corrupt { .. })
    ));
    let replaced = d.insert(&100, &"again".into()).unwrap();
    assert_eq!(replaced.as_deref(), Some("after"));
    poke(
        &dn,
        stripe0 + lay::STRIPE_LOCK_WORD,
        &0x7fff_fff0u32.to_ne_bytes(),
    );
    assert!(d.recover().unwrap().owner_died);
    assert_eq!(d.len(), 4);
    d.insert(&200, &"more".into()).unwrap();
    assert_eq!(d.len(), 5);

    // Head parameters that do not fit the segment: open refuses, Corrupt.
    poke(&dn, lay::SLOT_SIZE, &13u64.to_ne_bytes());
    assert!(matches!(
        SharedDict::<u64, String>::open(&dn),
        Err(Error::Corrupt { .. })
    ));
    poke(&dn, lay::SLOT_SIZE, &(slot_size as u64).to_ne_bytes());
    poke(&dn, lay::CAPACITY, &(1u64 << 40).to_ne_bytes());
    assert!(matches!(
        SharedDict::<u64, String>::open(&dn),
        Err(Error::Corrupt { .. })
    ));

    // A list whose map points outside, or whose spare is out of range.
    let ln = names.name("l");
    let l = SharedList::<u64>::create(&ln, 4).unwrap();
    l.push(&1).unwrap();
    l.push(&2).unwrap();
    poke(&ln, lay::HEAD + 4, &99u32.to_ne_bytes());
    assert!(matches!(l.get(1), Err(Error::Corrupt { .. })));
    assert_eq!(l.get(0).unwrap(), 1);
    poke(&ln, lay::HEAD + 4, &0u32.to_ne_bytes()); // position 1 maps to slot 0 twice
    poke(&ln, lay::LOCK_WORD, &0x7fff_fff0u32.to_ne_bytes());
    assert!(matches!(l.push(&3), Err(Error::OwnerDied)));
    assert!(matches!(l.recover(), Err(Error::Corrupt { .. })));
    poke(&ln, lay::HEAD + 4, &1u32.to_ne_bytes());
    poke(&ln, lay::PENDING_NEW, &u64::MAX.to_ne_bytes());
    let r = l.recover().unwrap();
    assert!(r.owner_died);
    l.set(1, &20).unwrap(); // uses the recomputed spare
    l.push(&3).unwrap();
    assert_eq!(l.to_vec().unwrap(), [1, 20, 3]);
}

// ---------------------------------------------------------------------------------------
// A hostile process scribbling over the whole segment while another uses it.

/// xorshift64*: deterministic per seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn hostile_writer() {
    let name = arg("name");
    let body_len: usize = arg_as("body_len");
    let writes: u64 = arg_as("writes");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path_of(&name))
        .unwrap();
    let mut rng = Rng(arg_as::<u64>("seed") | 1);
    for _ in 0..writes {
        let r = rng.next();
        // Mostly small writes of telling values at 8-aligned offsets; sometimes random bytes.
        let off = ((r as usize >> 8) % body_len) & !7;
        let v: u64 = match r % 6 {
            0 => 0,
            1 => u64::MAX,
            2 => rng.next() % 4,
            3 => rng.next() % 300,
            4 => 1 << (rng.next() % 64),
            _ => rng.next(),
        };
        let off = (shmkit::__layout::segment::SIZE + off) as u64;
        let _ = f.write_all_at(&v.to_ne_bytes(), off);
        if r.is_multiple_of(16) {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

fn hostile_user() {
    let name = arg("name");
    let list = arg("kind") == "list";
    let ready = Event::open(&arg("ready")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(arg_as("seconds"));
    let (mut ok, mut errors) = (0u64, 0u64);
    let mut note = |r: Result<(), Error>| match r {
        Ok(()) => ok += 1,
        Err(
            Error::Corrupt { .. }
            | Error::Codec { .. }
            | Error::OwnerDied
            | Error::NotRecoverable
            | Error::Timeout
            | Error::Overflow { .. }
            | Error::OutOfBounds { .. },
        ) => errors += 1,
        Err(e) => panic!("unexpected error: {e}"),
    };
    let mut i = 0u64;
    if list {
        let mut l = SharedList::<String>::open(&name).unwrap();
        l.set_timeout(Some(Duration::from_millis(20)));
        ready.set(); // the hostile writer starts now
        while Instant::now() < deadline {
            i += 1;
            note(l.push(&format!("v{i}")));
            note(l.get(i as usize % 16).map(drop));
            note(l.set(i as usize % 8, &"s".repeat(i as usize % 40)));
            note(l.to_vec().map(drop));
            note(l.pop().map(drop));
            note(l.recover().map(drop));
            let _ = l.len();
        }
    } else {
        let mut d = SharedDict::<u64, String>::open(&name).unwrap();
        d.set_timeout(Some(Duration::from_millis(20)));
        ready.set(); // the hostile writer starts now
        while Instant::now() < deadline {
            i += 1;
            let k = i % 40;
            note(d.insert(&k, &"v".repeat(k as usize)).map(drop));
            note(d.get(&(i % 50)).map(drop));
            note(
                d.update(&(i % 30), |v| match v {
                    Some(s) if s.len() < 30 => Some(s + "u"),
                    _ => Some(String::new()),
                })
                .map(drop),
            );
            note(d.remove(&(i % 45)).map(drop));
            note(d.snapshot().map(drop));
            if i.is_multiple_of(64) {
                note(d.clear());
            }
            note(d.recover().map(drop));
            let _ = (d.len(), d.contains_key(&k));
        }
    }
    report("ok", ok);
    report("errors", errors);
}

fn hostile_round(kind: &str, seed: u64) {
    let names = Names::new("dict_hostile");
    let name = names.name(kind);
    let keep: Box<dyn std::any::Any>;
    let body_len = if kind == "list" {
        let l = SharedList::<String>::create_with(&name, 16, 48).unwrap();
        for i in 0..10 {
            l.push(&format!("seed {i}")).unwrap();
        }
        keep = Box::new(l); // the user process works on it
        lay::HEAD + 16 * 4 + 17 * (lay::SLOT + 48)
    } else {
        // 200 entries: 251 slots in 3 lock stripes.
        let d = SharedDict::<u64, String>::create_with(&name, 200, 48).unwrap();
        for k in 0..20 {
            d.insert(&k, &format!("seed {k}")).unwrap();
        }
        keep = Box::new(d);
        lay::dict_slots_at(200) + 251 * (lay::SLOT + 48)
    };
    let ready = Event::create(&names.name("ready")).unwrap();
    let user = spawn(
        "hostile_user",
        &[
            ("name", name.clone()),
            ("kind", kind.to_owned()),
            ("seconds", "2".to_owned()),
            ("ready", names.name("ready")),
        ],
    );
    // The user opens the table before the garbage starts (an open over garbage is an
    // error, checked by `forged_fields_…`).
    assert!(
        ready.wait_timeout(PATIENCE).unwrap(),
        "the user never opened"
    );
    let writer = spawn(
        "hostile_writer",
        &[
            ("name", name.clone()),
            ("body_len", body_len.to_string()),
            ("writes", "4000".to_owned()),
            ("seed", seed.to_string()),
        ],
    );
    finish_ok(writer);
    let started = Instant::now();
    let o = finish(user);
    assert!(started.elapsed() < PATIENCE);
    assert_eq!(o.code, Some(0), "the user process did not survive: {o:?}");
    let errors: u64 = o.get("errors");
    assert!(errors > 0, "the garbage was never noticed: {o:?}");
    drop(keep);
}

#[test]
fn a_hostile_writer_scribbling_over_a_dict_gets_only_values_or_errors() {
    for seed in [1, 2] {
        hostile_round("dict", seed);
    }
}

#[test]
fn a_hostile_writer_scribbling_over_a_list_gets_only_values_or_errors() {
    for seed in [3, 4] {
        hostile_round("list", seed);
    }
}

// ---------------------------------------------------------------------------------------
// Writers killed at each step of a write (the `failpoints` feature).

#[cfg(feature = "failpoints")]
mod killed {
    use super::*;
    use common::spawn_with_env;

    const KEYS: u64 = 20;

    fn old(k: u64) -> String {
        format!("old value of {k}")
    }

    fn new(k: u64) -> String {
        format!("the new value of key {k}, longer")
    }

    /// Replaces every key's value, in key order, until the failpoint kills it.
    pub(super) fn overwrite() {
        let d = SharedDict::<u64, String>::open(&arg("name")).unwrap();
        for k in 0..KEYS {
            d.insert(&k, &new(k)).unwrap();
        }
    }

    /// Inserts new keys `KEYS..`, until the failpoint kills it.
    pub(super) fn insert_new() {
        let d = SharedDict::<u64, String>::open(&arg("name")).unwrap();
        for k in KEYS..2 * KEYS {
            d.insert(&k, &new(k)).unwrap();
        }
    }

    pub(super) fn replace_key() {
        let d = SharedDict::<u64, String>::open(&arg("name")).unwrap();
        let k = arg_as("key");
        d.insert(&k, &new(k)).unwrap();
    }

    #[test]
    fn a_writer_killed_holding_two_stripes_leaves_both_to_recover() {
        let names = Names::new("dict_two_stripes");
        let name = names.name("d");
        // 400 entries: 501 slots in 7 stripes of 72. Two keys whose probes start at slot
        // 71, the last of stripe 0: the second lives at slot 72, in stripe 1, and its
        // replacement goes to slot 73, so the writer holds stripes 0 and 1.
        let d = SharedDict::<u64, String>::create(&name, 400).unwrap();
        let home = |k: u64| shmkit::__private::dict_home(&d, &k).unwrap();
        let at71: Vec<u64> = (0..).filter(|&k| home(k).0 == 71).take(2).collect();
        let far = (0..).find(|&k| home(k).1 == 4).unwrap();
        let in1 = (0..).find(|&k| (80..140).contains(&home(k).0)).unwrap(); // stripe 1
        for k in [at71[0], at71[1], far] {
            d.insert(&k, &old(k)).unwrap();
        }
        let o = finish(spawn_with_env(
            "replace_key",
            &[("name", name.clone()), ("key", at71[1].to_string())],
            &[("SHMKIT_FAILPOINT", "dict.moved@1")],
        ));
        assert_eq!(
            o.signal,
            Some(libc::SIGKILL),
            "the failpoint did not fire: {o:?}"
        );
        // Nobody has met the death yet: a key in another stripe is served.
        assert_eq!(d.get(&far).unwrap(), Some(old(far)));
        // Each stripe the writer held reports it (stripe 1 here, where the key was not at
        // home); from then on every operation does.
        assert!(matches!(d.get(&in1), Err(Error::OwnerDied)));
        assert!(matches!(d.get(&far), Err(Error::OwnerDied)));
        assert!(matches!(d.get(&at71[0]), Err(Error::OwnerDied)));
        let r = d.recover().unwrap();
        assert!(r.owner_died && r.completed && r.dropped == 0, "{r:?}");
        assert_eq!(d.get(&at71[0]).unwrap(), Some(old(at71[0])));
        assert_eq!(d.get(&at71[1]).unwrap(), Some(new(at71[1])));
        assert_eq!(d.get(&far).unwrap(), Some(old(far)));
        assert_eq!(d.len(), 3);
        assert_eq!(d.snapshot().unwrap().len(), 3);
    }

    pub(super) fn list_push() {
        let l = SharedList::<String>::open(&arg("name")).unwrap();
        for k in KEYS..2 * KEYS {
            l.push(&new(k)).unwrap();
        }
    }

    pub(super) fn list_set() {
        let l = SharedList::<String>::open(&arg("name")).unwrap();
        for k in 0..KEYS {
            l.set(k as usize, &new(k)).unwrap();
        }
    }

    fn killed_at(role: &str, name: &str, point: &str) {
        let o = finish(spawn_with_env(
            role,
            &[("name", name.to_owned())],
            &[("SHMKIT_FAILPOINT", point)],
        ));
        assert_eq!(
            o.signal,
            Some(libc::SIGKILL),
            "the failpoint {point} did not fire: {o:?}"
        );
    }

    /// A dict of many lock stripes (1,000 entries: 19), its keys spread over them.
    fn filled(names: &Names, what: &str) -> (String, SharedDict<u64, String>) {
        let name = names.name(what);
        let d = SharedDict::<u64, String>::create(&name, 1000).unwrap();
        for k in 0..KEYS {
            d.insert(&k, &old(k)).unwrap();
        }
        (name, d)
    }

    /// Once an operation met the dead writer's stripes (a snapshot meets them all), every
    /// operation is OwnerDied (every time) until `recover`; then every entry decodes and
    /// the length is right.
    fn recovered(d: &SharedDict<u64, String>) -> shmkit::Recovery {
        assert!(matches!(d.snapshot(), Err(Error::OwnerDied)));
        assert!(matches!(d.get(&0), Err(Error::OwnerDied)));
        assert!(matches!(d.insert(&99, &"x".into()), Err(Error::OwnerDied)));
        let r = d.recover().unwrap();
        assert!(r.owner_died);
        assert_eq!(r.dropped, 0, "a writer's death alone left a bad slot");
        let snap = d.snapshot().unwrap();
        assert_eq!(snap.len(), d.len());
        let keys: BTreeSet<u64> = snap.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys.len(), snap.len(), "a key appears twice: {snap:?}");
        assert_eq!(d.recover().unwrap(), shmkit::Recovery::default());
        r
    }

    #[test]
    fn a_writer_killed_between_a_replacement_s_bytes_and_its_checksum_leaves_the_old_value() {
        let names = Names::new("dict_torn_replace");
        for nth in [1, 2, 7, KEYS] {
            let (name, d) = filled(&names, &format!("d{nth}"));
            killed_at("overwrite", &name, &format!("collections.torn@{nth}"));
            let r = recovered(&d);
            assert!(!r.completed);
            for k in 0..KEYS {
                let want = if k + 1 < nth { new(k) } else { old(k) };
                assert_eq!(d.get(&k).unwrap(), Some(want), "key {k}, killed at {nth}");
            }
            assert_eq!(d.len(), KEYS as usize);
            // The dict goes on: the killed replacement can be redone.
            d.insert(&(nth - 1), &new(nth - 1)).unwrap();
        }
    }

    #[test]
    fn a_writer_killed_after_committing_a_replacement_is_finished_by_recover() {
        let names = Names::new("dict_moved");
        for (point, nth) in [
            ("dict.moved", 1),
            ("dict.moved", 5),
            ("collections.written", 3),
        ] {
            let (name, d) = filled(&names, &format!("d{point}{nth}"));
            killed_at("overwrite", &name, &format!("{point}@{nth}"));
            let r = recovered(&d);
            // Killed after the commit: done; after the checksum but before it: not done.
            let done = point == "dict.moved";
            assert_eq!(r.completed, done);
            for k in 0..KEYS {
                let want = if k + 1 < nth || (done && k + 1 == nth) {
                    new(k)
                } else {
                    old(k)
                };
                assert_eq!(d.get(&k).unwrap(), Some(want), "key {k}, {point}@{nth}");
            }
            assert_eq!(d.len(), KEYS as usize);
        }
    }

    pub(super) fn recover_dict() {
        let d = SharedDict::<u64, String>::open(&arg("name")).unwrap();
        d.recover().unwrap();
    }

    #[test]
    fn a_recoverer_killed_mid_repair_leaves_the_work_to_the_next_one() {
        let names = Names::new("dict_recoverer");
        let (name, d) = filled(&names, "d");
        killed_at("overwrite", &name, "dict.moved@3");
        killed_at("recover_dict", &name, "dict.recovering");
        let r = recovered(&d);
        assert!(r.completed);
        for k in 0..KEYS {
            let want = if k < 3 { new(k) } else { old(k) };
            assert_eq!(d.get(&k).unwrap(), Some(want), "key {k}");
        }
        assert_eq!(d.len(), KEYS as usize);
    }

    #[test]
    fn a_writer_killed_inserting_a_new_key_leaves_it_absent_or_whole() {
        let names = Names::new("dict_torn_new");
        for (point, nth, present) in [
            ("collections.torn", 3, false),
            ("collections.written", 1, false),
            ("dict.committed", 4, true),
        ] {
            let (name, d) = filled(&names, &format!("d{point}{nth}"));
            killed_at("insert_new", &name, &format!("{point}@{nth}"));
            recovered(&d);
            let killed = KEYS + nth - 1;
            let want = if present { Some(new(killed)) } else { None };
            assert_eq!(d.get(&killed).unwrap(), want, "{point}@{nth}");
            let expect = KEYS + nth - 1 + u64::from(present);
            assert_eq!(d.len() as u64, expect);
            for k in 0..KEYS {
                assert_eq!(d.get(&k).unwrap(), Some(old(k)));
            }
        }
    }

    #[test]
    fn a_list_writer_killed_mid_push_or_mid_set_leaves_whole_values() {
        let names = Names::new("list_killed");
        for (role, point, nth) in [
            ("list_push", "collections.torn", 2),
            ("list_push", "collections.written", 1),
            ("list_set", "collections.torn", 3),
            ("list_set", "list.set.committed", 4),
        ] {
            let name = names.name(&format!("l{role}{point}{nth}"));
            let l = SharedList::<String>::create(&name, 64).unwrap();
            for k in 0..KEYS {
                l.push(&old(k)).unwrap();
            }
            killed_at(role, &name, &format!("{point}@{nth}"));
            assert!(matches!(l.get(0), Err(Error::OwnerDied)));
            let r = l.recover().unwrap();
            assert!(r.owner_died);
            let v = l.to_vec().unwrap();
            if role == "list_push" {
                let want: Vec<String> = (0..KEYS)
                    .map(old)
                    .chain((KEYS..KEYS + nth - 1).map(new))
                    .collect();
                assert_eq!(v, want, "{point}@{nth}");
            } else {
                let done = point == "list.set.committed";
                assert_eq!(r.completed, done);
                let want: Vec<String> = (0..KEYS)
                    .map(|k| {
                        if k + 1 < nth || (done && k + 1 == nth) {
                            new(k)
                        } else {
                            old(k)
                        }
                    })
                    .collect();
                assert_eq!(v, want, "{point}@{nth}");
            }
            // The spare slot is right again: every position can be set, and pushed to.
            for k in 0..l.len() {
                l.set(k, &format!("again {k}")).unwrap();
            }
            while l.len() < l.capacity() {
                l.push(&"more".into()).unwrap();
            }
            let v = l.to_vec().unwrap();
            assert_eq!(v.len(), 64);
            let distinct: BTreeSet<&String> = v.iter().filter(|s| s.starts_with("again")).collect();
            assert_eq!(
                distinct.len(),
                v.iter().filter(|s| s.starts_with("again")).count()
            );
        }
    }
}

#[cfg(feature = "failpoints")]
use killed::{insert_new, list_push, list_set, overwrite, recover_dict, replace_key};
