//! Arbitrary bytes as a message between a pool and its worker (the process layer's wire
//! format): the head, the item list and each item's postcard value must be refused with an
//! error, never a panic, an out-of-bounds read or an allocation larger than the input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = shmkit::__private::fuzz_process_message(data);
    assert!(decoded <= data.len());
});
