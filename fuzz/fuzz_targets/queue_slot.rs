//! Arbitrary bytes as a slot of a serde `Queue` and of a `Queue<_, codec::Pod>` (length,
//! flags, inline bytes or the name of an out-of-line segment): an error or a value, never
//! a panic (a `Pod` item of the wrong length included), an out-of-bounds read or an
//! allocation past the queue's limits.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = shmkit::__private::fuzz_queue_slot(data);
});
