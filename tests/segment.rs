//! Segments: validation on open, modes, squatting, clean-up, anonymous segments over fork.

mod common;

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::time::Duration;

use common::{arg, finish_ok, report, spawn, Names};
use shmkit::{
    Array, CreationMode, Error, Kind, LockError, Mutex, Options, RawArray, RawValue, Segment, Value,
};

#[test]
fn __child() {
    common::child_main(&[
        ("umask_modes", umask_modes),
        ("anonymous_fork", anonymous_fork),
        ("open_as_other_types", open_as_other_types),
        ("fill_a_small_tmpfs", fill_a_small_tmpfs),
        (
            "create_after_dirtying_the_stack",
            create_after_dirtying_the_stack,
        ),
        (
            "anonymous_mutex_owner_dies_in_fork_child",
            anonymous_mutex_owner_dies_in_fork_child,
        ),
    ]);
}

fn path_of(name: &str) -> String {
    format!("/dev/shm/shmkit.{name}")
}

fn mode_of(name: &str) -> u32 {
    std::fs::metadata(path_of(name))
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// Writes a file under our prefix by hand, as a squatter or a corrupting peer would.
fn plant(name: &str, bytes: &[u8], mode: u32) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path_of(name))
        .unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
    std::fs::set_permissions(path_of(name), std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn opening_with_the_wrong_kind_or_type_is_a_layout_mismatch() {
    let names = Names::new("mismatch");
    let v = names.name("value");
    let m = names.name("mutex");
    let _value = Value::<u64>::create(&v, 1).unwrap();
    let _mutex = Mutex::<u64>::create(&m, 1).unwrap();
    let mismatch =
        |r: Result<(), Error>| assert!(matches!(r, Err(Error::LayoutMismatch { .. })), "{r:?}");
    mismatch(Array::<f32>::open(&v).map(drop));
    mismatch(Value::<u32>::open(&v).map(drop));
    mismatch(Value::<[u64; 2]>::open(&v).map(drop));
    mismatch(RawValue::<u64>::open(&v).map(drop));
    mismatch(Value::<u64>::open(&m).map(drop));
    mismatch(Segment::open(&m, &Options::new()).map(drop));
    // The right type opens.
    assert_eq!(Value::<u64>::open(&v).unwrap().get().unwrap(), 1);
}

/// Child: opens the parent's objects with element types of the same size and alignment.
fn open_as_other_types() {
    let is_mismatch = |r: Result<(), Error>| matches!(r, Err(Error::LayoutMismatch { .. }));
    let (v, a, r) = (arg("value"), arg("array"), arg("raw"));
    report(
        "value_as_f64",
        is_mismatch(Value::<f64>::open(&v).map(drop)),
    );
    report(
        "value_as_i64",
        is_mismatch(Value::<i64>::open(&v).map(drop)),
    );
    report(
        "array_as_u64",
        is_mismatch(Array::<u64>::open(&a).map(drop)),
    );
    report(
        "raw_as_u32x2",
        is_mismatch(RawArray::<[u32; 2]>::open(&r).map(drop)),
    );
    report(
        "value_as_u64",
        Value::<u64>::open(&v).unwrap().get().unwrap(),
    );
    report(
        "array_as_f64",
        Array::<f64>::open(&a).unwrap().get(1).unwrap(),
    );
    // Under a name both programs give, another type of the same layout is accepted.
    let named = Options::new().type_name("tests/counter-v1");
    let r = Value::<i64>::with_options(&arg("renamed"), CreationMode::Open, 0, &named);
    report("renamed_as_i64", r.unwrap().get().unwrap());
}

#[test]
fn another_element_type_of_the_same_size_is_a_layout_mismatch_in_another_process() {
    let names = Names::new("typetag");
    let (v, a, r) = (names.name("v"), names.name("a"), names.name("r"));
    let _value = Value::<u64>::create(&v, 7).unwrap();
    let _array = Array::<f64>::create(&a, &[0.5, 1.5]).unwrap();
    let _raw = RawArray::<u64>::create_zeroed(&r, 3).unwrap();
    let renamed = names.name("renamed");
    let named = Options::new().type_name("tests/counter-v1");
    let _renamed = Value::<u64>::with_options(&renamed, CreationMode::Create, 41, &named).unwrap();
    // Without the name, the fingerprint is the type's own: refused.
    assert!(matches!(
        Value::<u64>::open(&renamed),
        Err(Error::LayoutMismatch { .. })
    ));
    let o = finish_ok(spawn(
        "open_as_other_types",
        &[("value", v), ("array", a), ("raw", r), ("renamed", renamed)],
    ));
    assert_eq!(o.values["renamed_as_i64"], "41");
    for k in [
        "value_as_f64",
        "value_as_i64",
        "array_as_u64",
        "raw_as_u32x2",
    ] {
        assert_eq!(o.values[k], "true", "{k}: {o:?}");
    }
    assert_eq!(o.values["value_as_u64"], "7");
    assert_eq!(o.values["array_as_f64"], "1.5");
}

#[test]
fn open_or_create_with_another_length_is_a_layout_mismatch() {
    let names = Names::new("oclen");
    let (a, r) = (names.name("a"), names.name("r"));
    let _array = Array::<f64>::create(&a, &[0.0; 10]).unwrap();
    let _raw = RawArray::<u8>::create_zeroed(&r, 10).unwrap();
    let got = Array::<f64>::open_or_create(&a, &[0.0; 20]);
    assert!(matches!(got, Err(Error::LayoutMismatch { .. })), "{got:?}");
    let got = RawArray::<u8>::open_or_create(&r, &[1; 9]);
    assert!(matches!(got, Err(Error::LayoutMismatch { .. })), "{got:?}");
    // The same length opens it; `open` takes whatever length it has.
    assert_eq!(
        Array::<f64>::open_or_create(&a, &[1.0; 10]).unwrap().len(),
        10
    );
    assert!(!Array::<f64>::open_or_create(&a, &[1.0; 10])
        .unwrap()
        .is_creator());
    assert_eq!(Array::<f64>::open(&a).unwrap().len(), 10);
    assert_eq!(RawArray::<u8>::open(&r).unwrap().len(), 10);
}

fn is_no_space<T: std::fmt::Debug>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(Error::NoSpace { .. }))
}

/// Bytes free on the tmpfs behind /dev/shm.
fn shm_free() -> u64 {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a valid C path and a place for the kernel to write a `statvfs`.
    assert_eq!(
        unsafe { libc::statvfs(c"/dev/shm".as_ptr(), st.as_mut_ptr()) },
        0
    );
    // SAFETY: `statvfs` succeeded.
    let st = unsafe { st.assume_init() };
    st.f_bavail * st.f_frsize
}

#[test]
fn a_segment_larger_than_the_free_shared_memory_is_an_error_at_create() {
    let names = Names::new("nospace");
    let name = names.name("big");
    let size = (shm_free() + (64 << 20)) as usize;
    let r = RawArray::<u8>::create_zeroed(&name, size);
    assert!(is_no_space(&r), "{r:?}");
    let r = Array::<u64>::create_zeroed(&name, size / 8);
    assert!(is_no_space(&r), "{r:?}");
    let r = shmkit::spsc::Sender::<u64>::create(&name, (size / 16).next_power_of_two());
    assert!(is_no_space(&r), "{r:?}");
    // Nothing is left behind: no segment, no creator's temporary file.
    assert!(names.leftovers().is_empty(), "{:?}", names.leftovers());
}

#[test]
fn a_large_segment_is_created_under_a_storm_of_signals() {
    // A 1 ms interval timer interrupts this thread's system calls, fallocate's included (a
    // profiler does the same): the reservation must still finish, in bounded time.
    let names = Names::new("storm");
    let storm = common::SignalStorm::start(Duration::ZERO, Duration::from_millis(1));
    let before = common::SignalStorm::alarms();
    let a = RawArray::<u8>::create_zeroed(&names.name("big"), 256 << 20).unwrap();
    let interrupts = common::SignalStorm::alarms() - before;
    drop(storm);
    assert_eq!(a.len(), 256 << 20);
    a.write(a.len() - 1, &[7]).unwrap();
    assert_eq!(a.get(a.len() - 1).unwrap(), 7);
    // The storm really ran while the segment was reserved.
    assert!(interrupts > 0, "no signal arrived");
}

/// Child, in a mount namespace of its own: a 1 MiB tmpfs on /dev/shm, then segments that do
/// and do not fit. Without reservation the too-large ones would be created and SIGBUS on
/// their first write.
fn fill_a_small_tmpfs() {
    let (src, dst, fs) = (c"tmpfs", c"/dev/shm", c"tmpfs");
    // SAFETY: valid C strings; the data argument is a C string of tmpfs options.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            fs.as_ptr(),
            0,
            c"size=1m".as_ptr().cast(),
        )
    };
    if rc != 0 {
        report("mounted", false);
        return;
    }
    report("mounted", true);
    let big = RawArray::<u8>::create_zeroed("small.big", 4 << 20);
    report("big", is_no_space(&big));
    // A body that fits in what is free, written end to end: no SIGBUS.
    let fits = RawArray::<u8>::create_zeroed("small.fits", 600 << 10).unwrap();
    let ones = vec![1u8; fits.len()];
    fits.write(0, &ones).unwrap();
    report("written", fits.get(fits.len() - 1).unwrap());
    // What is left is less than another such array.
    let second = Array::<u8>::create_zeroed("small.second", 600 << 10);
    report("second", is_no_space(&second));
    let ring = shmkit::mpmc::Sender::<u64>::create("small.ring", 1 << 16);
    report("ring", is_no_space(&ring));
    let left: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    report("left", left.join(","));
}

#[test]
fn a_full_private_tmpfs_is_an_error_at_create_never_a_sigbus() {
    let child = match common::spawn_wrapped(
        &["unshare", "--user", "--map-root-user", "--mount", "--"],
        "fill_a_small_tmpfs",
        &[],
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipped: cannot run unshare ({e}); the free-space test still runs");
            return;
        }
    };
    let o = common::finish(child);
    if o.code != Some(0) || o.values.get("mounted").map(String::as_str) != Some("true") {
        // unshare exists but namespaces are not allowed here (a container, a policy).
        eprintln!("skipped: no private tmpfs could be mounted: {o:?}");
        assert_ne!(o.signal, Some(libc::SIGBUS), "{o:?}");
        return;
    }
    assert_eq!(o.values["big"], "true", "{o:?}");
    assert_eq!(o.values["written"], "1", "{o:?}");
    assert_eq!(o.values["second"], "true", "{o:?}");
    assert_eq!(o.values["ring"], "true", "{o:?}");
    // Only the segment that fits remains (until the child exits and its tmpfs goes).
    assert_eq!(o.values["left"], "shmkit.small.fits", "{o:?}");
}

/// The pattern a child writes over its stack before creating objects.
const STACK_MARK: &[u8; 8] = b"STACK!!!";

#[inline(never)]
fn dirty_the_stack() -> u8 {
    let mut a = [0u8; 256 << 10];
    for c in a.chunks_mut(8) {
        c.copy_from_slice(STACK_MARK);
    }
    std::hint::black_box(&mut a);
    a[3]
}

/// Child: fills its stack with a pattern, creates one object of each kind with a padded
/// head, all kept when it exits.
fn create_after_dirtying_the_stack() {
    let p = arg("prefix");
    dirty_the_stack();
    let keep = Options::new().keep(true);
    let c = CreationMode::Create;
    let _a = shmkit::RwLock::<u64>::with_options(&format!("{p}rwlock"), c, 1, &keep).unwrap();
    let _b = shmkit::ReentrantMutex::with_options(&format!("{p}rlock"), c, &keep).unwrap();
    let _c = shmkit::Barrier::with_options(&format!("{p}barrier"), c, 2, &keep).unwrap();
    let _d = shmkit::Semaphore::with_options(&format!("{p}sem"), c, 3, &keep).unwrap();
    let _e = shmkit::Event::with_options(&format!("{p}event"), c, &keep).unwrap();
    let _f = shmkit::spsc::Sender::<u64>::with_options(&format!("{p}spsc"), c, 8, &keep).unwrap();
    let _g = shmkit::mpmc::Sender::<u64>::with_options(&format!("{p}mpmc"), c, 8, &keep).unwrap();
    let _h = shmkit::frames::Sender::with_options(&format!("{p}frames"), c, 4096, &keep).unwrap();
    report("made", 8);
}

#[test]
fn no_byte_of_the_creators_stack_reaches_a_segment() {
    let names = Names::new("stackleak");
    let prefix = names.name("o.");
    finish_ok(spawn(
        "create_after_dirtying_the_stack",
        &[("prefix", prefix.clone())],
    ));
    let mut seen = 0;
    for kind in [
        "rwlock", "rlock", "barrier", "sem", "event", "spsc", "mpmc", "frames",
    ] {
        let bytes = std::fs::read(path_of(&format!("{prefix}{kind}"))).unwrap();
        seen += 1;
        assert!(
            !bytes.windows(STACK_MARK.len()).any(|w| w == STACK_MARK),
            "{kind}: the creator's stack leaked into the segment"
        );
    }
    // What the objects hold is intact: they open and work.
    assert_eq!(seen, 8);
    assert_eq!(
        *shmkit::RwLock::<u64>::open(&format!("{prefix}rwlock"))
            .unwrap()
            .read()
            .unwrap(),
        1
    );
    assert!(shmkit::Semaphore::open(&format!("{prefix}sem"))
        .unwrap()
        .try_acquire()
        .unwrap());
    assert_eq!(
        shmkit::Barrier::open(&format!("{prefix}barrier"))
            .unwrap()
            .parties(),
        2
    );
}

fn valid_header_bytes(name: &str) -> Vec<u8> {
    // Make a real segment, copy its bytes, and remove it: a template to corrupt.
    let s = Segment::create(name, 64, &Options::new()).unwrap();
    let bytes = std::fs::read(path_of(name)).unwrap();
    drop(s);
    bytes
}

#[test]
fn garbage_truncated_or_absurd_segments_are_corrupt() {
    let names = Names::new("corrupt");
    let template = valid_header_bytes(&names.name("template"));
    let corrupt = |name: &str| {
        let r = Segment::open(name, &Options::new());
        assert!(matches!(r, Err(Error::Corrupt { .. })), "{name}: {r:?}");
        let r = Value::<u64>::open(name);
        assert!(
            matches!(
                r,
                Err(Error::Corrupt { .. }) | Err(Error::LayoutMismatch { .. })
            ),
            "{name}: {r:?}"
        );
    };

    // Random bytes.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    plant(&names.name("random"), &random, 0o600);
    corrupt(&names.name("random"));

    // Empty, and shorter than a header.
    plant(&names.name("empty"), &[], 0o600);
    corrupt(&names.name("empty"));
    plant(&names.name("short"), &template[..40], 0o600);
    corrupt(&names.name("short"));

    // A valid header, then the file cut below what the header claims.
    plant(&names.name("cut"), &template[..200], 0o600);
    corrupt(&names.name("cut"));

    // Valid magic with absurd lengths.
    let offsets = [
        (24, "elem_size"),
        (40, "capacity"),
        (48, "body_len"),
        (56, "total_len"),
    ];
    for (off, what) in offsets {
        let mut b = template.clone();
        b[off..off + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let n = names.name(what);
        plant(&n, &b, 0o600);
        let r = Segment::open(&n, &Options::new());
        // elem_size is not checked for raw segments; the others must be refused.
        if what != "elem_size" {
            assert!(matches!(r, Err(Error::Corrupt { .. })), "{what}: {r:?}");
        }
    }

    // Another format version is refused before the rest of the header is read.
    let mut b = template.clone();
    b[8..12].copy_from_slice(&99u32.to_le_bytes());
    b[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
    plant(&names.name("version"), &b, 0o600);
    let r = Segment::open(&names.name("version"), &Options::new());
    assert!(matches!(r, Err(Error::LayoutMismatch { .. })), "{r:?}");
}

fn umask_modes() {
    let names = Names::new(&format!("umask{}", arg("umask")));
    let umask = u32::from_str_radix(&arg("umask"), 8).unwrap();
    // SAFETY: umask only changes this child process's file-creation mask.
    unsafe { libc::umask(umask as libc::mode_t) };
    let a = names.name("default");
    let b = names.name("custom");
    let _x = Value::<u64>::create(&a, 0).unwrap();
    let _y = Value::<u64>::with_options(&b, CreationMode::Create, 0, &Options::new().mode(0o640))
        .unwrap();
    report("default", format!("{:o}", mode_of(&a)));
    report("custom", format!("{:o}", mode_of(&b)));
}

#[test]
fn the_mode_is_exactly_what_was_asked_whatever_the_umask() {
    for umask in ["000", "077"] {
        let o = finish_ok(spawn("umask_modes", &[("umask", umask.to_string())]));
        assert_eq!(o.get::<String>("default"), "600", "umask {umask}");
        assert_eq!(o.get::<String>("custom"), "640", "umask {umask}");
    }
}

#[test]
fn group_writable_segments_are_refused_unless_trusted() {
    let names = Names::new("groupw");
    let n = names.name("v");
    let _v = Value::<u64>::with_options(&n, CreationMode::Create, 5, &Options::new().mode(0o660))
        .unwrap();
    assert_eq!(mode_of(&n), 0o660);
    let r = Value::<u64>::open(&n);
    assert!(matches!(r, Err(Error::PermissionDenied { .. })), "{r:?}");
    let trusted = Value::<u64>::with_options(
        &n,
        CreationMode::Open,
        0,
        &Options::new().trust_shared(true),
    )
    .unwrap();
    assert_eq!(trusted.get().unwrap(), 5);
}

#[test]
fn a_squatted_name_is_not_created_over_nor_opened() {
    let names = Names::new("squat");
    let n = names.name("v");
    plant(&n, &[0xAB; 4096], 0o666);
    let r = Value::<u64>::create(&n, 0);
    assert!(matches!(r, Err(Error::AlreadyExists { .. })), "{r:?}");
    let r = Value::<u64>::open(&n);
    assert!(matches!(r, Err(Error::PermissionDenied { .. })), "{r:?}");
    let r = Value::<u64>::open_or_create(&n, 0);
    assert!(matches!(r, Err(Error::PermissionDenied { .. })), "{r:?}");
    // Trusting it does not make garbage valid.
    let r = Value::<u64>::with_options(
        &n,
        CreationMode::Open,
        0,
        &Options::new().trust_shared(true),
    );
    assert!(matches!(r, Err(Error::Corrupt { .. })), "{r:?}");
}

#[test]
fn a_symlink_under_our_prefix_is_refused() {
    let names = Names::new("symlink");
    let target = names.name("target");
    let link = names.name("link");
    let _v = Value::<u64>::create(&target, 3).unwrap();
    std::os::unix::fs::symlink(path_of(&target), path_of(&link)).unwrap();
    let r = Value::<u64>::open(&link);
    assert!(matches!(r, Err(Error::PermissionDenied { .. })), "{r:?}");
}

#[test]
fn invalid_names_are_refused() {
    for bad in ["", "a/b", "..", "with space", "nul\0", &"x".repeat(201)] {
        let r = Value::<u64>::create(bad, 0);
        assert!(
            matches!(r, Err(Error::InvalidName { .. })),
            "{bad:?}: {r:?}"
        );
    }
}

#[test]
fn the_creator_unlinks_on_drop_unless_kept_and_list_shows_ours() {
    let names = Names::new("cleanup");
    let a = names.name("dropped");
    let b = names.name("kept");
    let v = Value::<u64>::create(&a, 0).unwrap();
    let opened = Value::<u64>::open(&a).unwrap();
    let k = RawArray::<f64>::with_options(
        &b,
        CreationMode::Create,
        &[1.0; 10],
        &Options::new().keep(true),
    )
    .unwrap();

    let listed = shmkit::list().unwrap();
    let entry = listed.iter().find(|i| i.name == a).expect("listed");
    assert_eq!(entry.kind, Some(Kind::Value));
    assert_eq!(entry.creator_pid, std::process::id());
    assert_eq!(
        listed.iter().find(|i| i.name == b).unwrap().kind,
        Some(Kind::RawArray)
    );

    drop(v);
    // Gone by name, still usable through the mapping of whoever has it open.
    assert!(matches!(
        Value::<u64>::open(&a),
        Err(Error::NotFound { .. })
    ));
    opened.set(9).unwrap();
    assert_eq!(opened.get().unwrap(), 9);

    drop(k);
    assert_eq!(RawArray::<f64>::open(&b).unwrap().get(3).unwrap(), 1.0);
    shmkit::unlink(&b).unwrap();
    assert!(matches!(shmkit::unlink(&b), Err(Error::NotFound { .. })));
    assert!(names.leftovers().is_empty());
}

#[test]
fn arrays_copy_in_and_out_and_check_bounds() {
    let names = Names::new("arrays");
    let n = names.name("a");
    let a = Array::<f64>::create_zeroed(&n, 8).unwrap();
    let other = Array::<f64>::open(&n).unwrap();
    assert_eq!(other.len(), 8);
    a.copy_from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
        .unwrap();
    assert_eq!(other.get(7).unwrap(), 8.0);
    assert!(matches!(
        other.get(8),
        Err(Error::OutOfBounds { index: 8, len: 8 })
    ));
    assert!(matches!(other.set(9, 0.0), Err(Error::OutOfBounds { .. })));
    assert!(matches!(
        other.copy_from_slice(&[0.0; 3]),
        Err(Error::OutOfBounds { .. })
    ));
    other.lock().unwrap()[0] = -1.0;
    let mut out = [0.0; 8];
    a.copy_to_slice(&mut out).unwrap();
    assert_eq!(out[0], -1.0);

    let r = RawArray::<u32>::create(&names.name("raw"), &[1, 2, 3]).unwrap();
    assert!(matches!(
        r.read(2, &mut [0; 2]),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        r.write(usize::MAX, &[0; 2]),
        Err(Error::OutOfBounds { .. })
    ));
    r.atomics()[1].fetch_add(40, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(r.get(1).unwrap(), 42);
}

fn fork_and_wait(child: impl FnOnce() -> i32) -> Option<i32> {
    // SAFETY: the child only touches shared memory and our own atomics, then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = child();
        // SAFETY: `_exit` ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))
}

/// Runs in a child process of the harness (single purpose), so forking is safe.
fn anonymous_fork() {
    let v = RawValue::<u64>::anonymous(1).unwrap();
    let a = RawArray::<u8>::anonymous_zeroed(16).unwrap();
    let code = fork_and_wait(|| {
        v.set(v.get() + 41);
        a.set(15, 7).unwrap();
        0
    });
    assert_eq!(code, Some(0));
    report("value", v.get());
    report("byte", a.get(15).unwrap());
}

#[test]
fn an_anonymous_segment_is_shared_with_a_forked_child() {
    let o = finish_ok(spawn("anonymous_fork", &[]));
    assert_eq!(o.get::<u64>("value"), 42);
    assert_eq!(o.get::<u8>("byte"), 7);
}

fn anonymous_mutex_owner_dies_in_fork_child() {
    let m = Mutex::<u64>::anonymous(0).unwrap();
    // Register this process's liveness before forking: the child must not inherit it.
    *m.lock().unwrap() += 1;
    let code = fork_and_wait(|| {
        let mut g = match m.lock() {
            Ok(g) => g,
            Err(_) => return 3,
        };
        *g += 1;
        std::mem::forget(g);
        0 // exits holding the lock
    });
    assert_eq!(code, Some(0));
    match m.lock_recover_timeout(Duration::from_secs(30)) {
        Err(LockError::OwnerDied(g)) => report("seen", *g),
        Ok(_) => panic!("the forked child's death went unnoticed"),
        Err(e) => panic!("{e}"),
    };
}

#[test]
fn a_forked_child_that_dies_holding_an_anonymous_mutex_is_detected() {
    let o = finish_ok(spawn("anonymous_mutex_owner_dies_in_fork_child", &[]));
    assert_eq!(o.get::<u64>("seen"), 2);
}

/// The resident bytes of this process's mapping that holds `addr` (its `Rss` in
/// `/proc/self/smaps`).
fn rss_of_mapping_at(addr: *const u8) -> u64 {
    let a = addr as u64;
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-') {
            if let (Ok(s), Ok(e)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16)) {
                inside = s <= a && a < e;
                continue;
            }
        }
        if inside {
            if let Some(kb) = line.strip_prefix("Rss:") {
                return kb
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap()
                    * 1024;
            }
        }
    }
    panic!("no mapping holds {addr:p}");
}

#[test]
fn populate_maps_every_page_at_create_and_open_and_nothing_else_does() {
    let names = Names::new("populate");
    let len = 8 << 20;
    let eager = Options::new().populate(true);
    let lazy_name = names.name("lazy");
    let created = Segment::create(&lazy_name, len, &Options::new()).unwrap();
    let opened_lazily = Segment::open(&lazy_name, &Options::new()).unwrap();
    let opened_eagerly = Segment::open(&lazy_name, &eager).unwrap();
    let created_eagerly = Segment::create(&names.name("eager"), len, &eager).unwrap();
    // Without it, only what validation and the header touched (a few pages around them).
    assert!(rss_of_mapping_at(created.as_ptr()) < len as u64 / 4);
    assert!(rss_of_mapping_at(opened_lazily.as_ptr()) < len as u64 / 4);
    // With it, every page of the body is mapped before the first touch.
    assert!(rss_of_mapping_at(opened_eagerly.as_ptr()) >= len as u64);
    assert!(rss_of_mapping_at(created_eagerly.as_ptr()) >= len as u64);
    // The populated mapping is the same memory.
    // SAFETY: both map the same live segment, at least `len` bytes from `as_ptr`; this
    // process writes and reads one byte through them, nobody else touches it.
    unsafe {
        opened_eagerly.as_ptr().add(len - 1).write_volatile(7);
        assert_eq!(created.as_ptr().add(len - 1).read_volatile(), 7);
    }
}
