//! The process layer across real processes: `Process` and `Pool`, their results and their
//! failures (RELIABILITY.md scenarios 20-22).

mod common;

use std::time::Duration;

use shmkit::process::{ExitStatus, Pool, Process};
use shmkit::Error;

shmkit::test_support!();

shmkit::task! {
    fn add(a: u64, b: u64) -> u64 { a + b }
}

shmkit::task! {
    fn square(x: u64) -> u64 { x * x }
}

shmkit::task! {
    fn whoami() -> u32 { std::process::id() }
}

shmkit::task! {
    fn explode(msg: String) -> u64 { panic!("boom: {msg}") }
}

#[test]
fn a_process_returns_its_result_and_runs_elsewhere() {
    let p = Process::spawn(add, (2, 40)).unwrap();
    assert_ne!(p.pid(), std::process::id());
    assert_eq!(p.join().unwrap(), 42);
    let p = Process::spawn(whoami, ()).unwrap();
    let pid = p.pid();
    assert_eq!(p.join().unwrap(), pid);
}

#[test]
fn a_panic_in_a_process_is_an_error_with_its_message() {
    let mut p = Process::spawn(explode, "here".into()).unwrap();
    match p.join_timeout(Duration::from_secs(30)) {
        Err(Error::Panicked { message, pid, .. }) => {
            assert_eq!(message, "boom: here");
            assert_eq!(pid, p.pid());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p.exit_status(), Some(ExitStatus::Code(0)));
}

#[test]
fn a_pool_maps_in_order() {
    let pool = Pool::new(2).unwrap();
    let out = pool.map(square, 0..1000u64).unwrap();
    assert_eq!(out, (0..1000u64).map(|x| x * x).collect::<Vec<_>>());
}
