//! A test binary that forgot `shmkit::test_support!()`: its workers cannot start, and the
//! parent is told why instead of waiting.

use shmkit::process::{Pool, Process};
use shmkit::Error;

shmkit::task! {
    fn one() -> u8 { 1 }
}

#[test]
fn a_worker_that_never_reaches_init_is_an_error_that_says_why() {
    let e = Process::spawn(one, ()).unwrap().join().unwrap_err();
    match &e {
        Error::Worker { reason, .. } => assert!(reason.contains("shmkit::init()"), "{e}"),
        other => panic!("{other:?}"),
    }
    let e = Pool::new(2).unwrap_err();
    match &e {
        Error::Worker { reason, .. } => assert!(reason.contains("shmkit::init()"), "{e}"),
        other => panic!("{other:?}"),
    }
}
