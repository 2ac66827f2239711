//! Operator tools across real processes: `list` and `inspect` tell held from stale by the
//! kernel's locks, and `clean` removes exactly the stale segments, once, even with eight
//! cleaners racing, and never one a live process holds (RELIABILITY.md scenario 13).

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::process::Stdio;

use common::{arg, die_now, finish, finish_ok, report, spawn, Names};
use shmkit::{frames, mpmc, spsc, CleanMode, CreationMode, Options, Value};

#[test]
fn __child() {
    common::child_main(&[
        ("make_and_die", make_and_die),
        ("hold_until_stdin_closes", hold_until_stdin_closes),
        ("cleaner", cleaner),
    ]);
}

/// Creates a channel of each kind (both ends attached) and a value, all kept, then dies
/// with everything open: every process of these channels is killed.
fn make_and_die() {
    let p = arg("prefix");
    let keep = Options::new().keep(true);
    let cm = CreationMode::Create;
    let _a = spsc::Sender::<u64>::with_options(&format!("{p}spsc"), cm, 8, &keep).unwrap();
    let _b = spsc::Receiver::<u64>::open(&format!("{p}spsc")).unwrap();
    let _c = mpmc::Sender::<u64>::with_options(&format!("{p}mpmc"), cm, 8, &keep).unwrap();
    let _d = mpmc::Receiver::<u64>::open(&format!("{p}mpmc")).unwrap();
    let _e = frames::Sender::with_options(&format!("{p}frames"), cm, 4096, &keep).unwrap();
    let _f = Value::<u64>::with_options(&format!("{p}value"), cm, 7, &keep).unwrap();
    die_now();
}

/// Opens a segment and holds it until the parent closes our stdin.
fn hold_until_stdin_closes() {
    let _v = Value::<u64>::open(&arg("name")).unwrap();
    report("holding", 1);
    let mut buf = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut buf);
}

fn cleaner() {
    let barrier = shmkit::Barrier::open(&arg("barrier")).unwrap();
    barrier.wait().unwrap();
    let removed = shmkit::clean(&arg("prefix"), CleanMode::Remove).unwrap();
    report("removed", removed.join(","));
}

fn spawn_holder(name: &str) -> std::process::Child {
    let exe = std::env::current_exe().unwrap();
    let mut kid = std::process::Command::new(exe)
        .args([
            "__child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env("SHMKIT_ROLE", "hold_until_stdin_closes")
        .env("SHMKIT_ARG_name", name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for its "holding" line.
    let mut out = kid.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    while !String::from_utf8_lossy(&seen).contains("REPORT holding=1") {
        assert_eq!(out.read(&mut byte).unwrap(), 1, "holder exited early");
        seen.push(byte[0]);
    }
    kid
}

fn held(name: &str) -> bool {
    shmkit::list()
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("{name} not listed"))
        .held
}

#[test]
fn list_and_inspect_tell_held_segments_from_stale_ones_by_the_kernel() {
    let names = Names::new("clean_list");
    let prefix = names.name("s.");
    finish(spawn("make_and_die", &[("prefix", prefix.clone())]));
    for kind in ["spsc", "mpmc", "frames", "value"] {
        assert!(!held(&format!("{prefix}{kind}")), "{kind}: nobody holds it");
    }
    // The dead processes' endpoints show as dead, not as attached and alive.
    let report = shmkit::inspect(&format!("{prefix}spsc")).unwrap();
    let field = |k: &str| {
        report
            .fields
            .iter()
            .find(|(f, _)| f == k)
            .unwrap_or_else(|| panic!("no {k} in {:?}", report.fields))
            .1
            .clone()
    };
    assert!(field("sender").ends_with("dead"), "{:?}", report.fields);
    assert!(field("receiver").ends_with("dead"));
    assert_eq!(field("kind"), "spsc");
    let report = shmkit::inspect(&format!("{prefix}mpmc")).unwrap();
    assert!(report
        .fields
        .iter()
        .any(|(k, v)| k == "senders" && v.contains("dead")));

    // A live holder in another process makes it held; when it goes, it is not.
    let value = format!("{prefix}value");
    let mut holder = spawn_holder(&value);
    assert!(held(&value));
    assert!(shmkit::inspect(&value).unwrap().info.held);
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    assert!(!held(&value));
    let would = shmkit::clean(&prefix, CleanMode::DryRun).unwrap();
    assert_eq!(would.len(), 4, "{would:?}");
    assert!(would.contains(&format!("shmkit.{value}")));
    // A dry run removes nothing.
    assert_eq!(Value::<u64>::open(&value).unwrap().get().unwrap(), 7);
}

#[test]
fn eight_racing_cleaners_remove_each_stale_segment_once_and_spare_held_ones() {
    let names = Names::new("clean_race");
    let prefix = names.name("s.");
    finish(spawn("make_and_die", &[("prefix", prefix.clone())]));
    let stale: BTreeSet<String> = ["spsc", "mpmc", "frames", "value"]
        .iter()
        .map(|k| format!("shmkit.{prefix}{k}"))
        .collect();
    // Held: one by this process, one by a live child.
    let ours = Value::<u64>::create(&format!("{prefix}held.here"), 1).unwrap();
    let theirs_name = format!("{prefix}held.there");
    let keep = Options::new().keep(true);
    let theirs = Value::<u64>::with_options(&theirs_name, CreationMode::Create, 2, &keep).unwrap();
    let mut holder = spawn_holder(&theirs_name);
    drop(theirs); // kept: now only the child holds it
    assert!(held(&theirs_name));

    let barrier_name = names.name("barrier");
    let _barrier = shmkit::Barrier::create(&barrier_name, 8).unwrap();
    let kids: Vec<_> = (0..8)
        .map(|_| {
            spawn(
                "cleaner",
                &[
                    ("prefix", prefix.clone()),
                    ("barrier", barrier_name.clone()),
                ],
            )
        })
        .collect();
    let mut removed = Vec::new();
    for kid in kids {
        let o = finish_ok(kid);
        let r: String = o.get("removed");
        removed.extend(r.split(',').filter(|s| !s.is_empty()).map(str::to_owned));
    }
    let unique: BTreeSet<String> = removed.iter().cloned().collect();
    assert_eq!(removed.len(), unique.len(), "removed twice: {removed:?}");
    assert_eq!(unique, stale);
    // The held ones are still there and open.
    assert_eq!(ours.get().unwrap(), 1);
    assert_eq!(Value::<u64>::open(&theirs_name).unwrap().get().unwrap(), 2);
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    // Now nobody holds it: the next clean takes it.
    assert_eq!(
        shmkit::clean(&prefix, CleanMode::Remove).unwrap(),
        [format!("shmkit.{theirs_name}")]
    );
}

/// Writes a file under our prefix by hand, as another program could.
fn plant(name: &str, bytes: &[u8]) {
    std::fs::write(format!("/dev/shm/shmkit.{name}"), bytes).unwrap();
}

#[test]
fn clean_leaves_files_shmkit_did_not_create_unless_asked() {
    let names = Names::new("clean_foreign");
    let prefix = names.name("s.");
    // Stale segments of ours, from processes that died...
    finish(spawn("make_and_die", &[("prefix", prefix.clone())]));
    // ...and three files under our prefix that shmkit never created.
    let mut noise = vec![0u8; 4096];
    for (i, b) in noise.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(151).wrapping_add(7);
    }
    let foreign = [
        (format!("{prefix}random"), noise),
        (format!("{prefix}empty"), Vec::new()),
        (format!("{prefix}zeros"), vec![0u8; 4096]),
    ];
    for (name, bytes) in &foreign {
        plant(name, bytes);
    }
    let listed: Vec<_> = shmkit::list()
        .unwrap()
        .into_iter()
        .filter(|s| s.name.starts_with(&prefix))
        .collect();
    for (name, _) in &foreign {
        let info = listed.iter().find(|s| &s.name == name).unwrap();
        assert!(info.foreign && info.kind.is_none(), "{info:?}");
        let e = shmkit::inspect(name).unwrap_err().to_string();
        assert!(
            e.contains("not a shmkit segment") || e.contains("shorter"),
            "{e}"
        );
    }
    assert!(listed
        .iter()
        .filter(|s| !s.foreign)
        .all(|s| s.kind.is_some()));

    let ours: BTreeSet<String> = ["spsc", "mpmc", "frames", "value"]
        .iter()
        .map(|k| format!("shmkit.{prefix}{k}"))
        .collect();
    let would: BTreeSet<String> = shmkit::clean(&prefix, CleanMode::DryRun)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(would, ours, "a dry run counts only our stale segments");
    let removed: BTreeSet<String> = shmkit::clean(&prefix, CleanMode::Remove)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(removed, ours);
    for (name, _) in &foreign {
        assert!(std::path::Path::new(&format!("/dev/shm/shmkit.{name}")).exists());
    }
    // Asked explicitly, the foreign files go too.
    let removed: BTreeSet<String> = shmkit::clean(&prefix, CleanMode::RemoveIncludingForeign)
        .unwrap()
        .into_iter()
        .collect();
    let expected: BTreeSet<String> = foreign.iter().map(|(n, _)| format!("shmkit.{n}")).collect();
    assert_eq!(removed, expected);
}
