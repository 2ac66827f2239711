//! `SharedDict` and `SharedList` over arbitrary bytes: a real dict or list is created and
//! filled, its whole body (head, index map, slots) is XORed with the input, and a second
//! handle opens it and calls every operation. Each call must return `Ok` or an error: no
//! panic, no hang (the lock waits are zero), no allocation beyond the table's size.
//!
//! Input: a flag byte (bit 0: a list rather than a dict; bits 1-7: how many entries to put
//! in first), a capacity byte (top bit clear: 1 to 16 entries; set: 103 to 355, a dict of
//! 2 to 6 lock stripes), an entry-size byte (1 to 64 bytes), then the XOR mask over the
//! body (all zero: the intact table).

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use shmkit::{SharedDict, SharedList};
use shmkit_fuzz::{install_cleanup_hook, unique_name, Mapping, NameGuard};

/// Drops whatever a call returned; only panics, hangs and crashes count.
fn ignore<T, E>(_: Result<T, E>) {}

fn scramble(name: &str, mask: &[u8]) {
    let Ok(map) = Mapping::open(name) else {
        return;
    };
    let (body, len) = map.body();
    for (i, &m) in mask.iter().take(len).enumerate() {
        // SAFETY: `i < len`, inside the mapped body; this process is the only one using
        // the segment, and no shmkit call runs meanwhile.
        unsafe { *body.add(i) ^= m };
    }
}

fn dict(name: &str, fill: u8, cap: usize, entry: usize, mask: &[u8]) {
    let Ok(made) = SharedDict::<u16, String>::create_with(name, cap, entry) else {
        return;
    };
    for k in 0..u16::from(fill) {
        ignore(made.insert(&k, &"v".repeat(usize::from(k) % 8)));
    }
    scramble(name, mask);
    let Ok(mut d) = SharedDict::<u16, String>::open(name) else {
        return;
    };
    d.set_timeout(Some(Duration::ZERO));
    for round in 0..2u16 {
        for k in 0..20u16 {
            ignore(d.get(&k));
        }
        ignore(d.snapshot());
        ignore(d.contains_key(&3));
        ignore(d.insert(&(round + 40), &"new".to_string()));
        ignore(d.update(&1, |v| Some(v.unwrap_or_default() + "u")));
        ignore(d.update(&2, |_| None));
        ignore(d.remove(&(round + 5)));
        let _ = (d.len(), d.is_empty(), d.capacity(), d.max_entry_bytes());
        ignore(d.recover());
    }
    ignore(d.clear());
    ignore(d.snapshot());
    ignore(shmkit::inspect(name).map(|r| r.fields.len()));
}

fn list(name: &str, fill: u8, cap: usize, entry: usize, mask: &[u8]) {
    let Ok(made) = SharedList::<String>::create_with(name, cap, entry) else {
        return;
    };
    for k in 0..usize::from(fill) {
        ignore(made.push(&"v".repeat(k % 8)));
    }
    scramble(name, mask);
    let Ok(mut l) = SharedList::<String>::open(name) else {
        return;
    };
    l.set_timeout(Some(Duration::ZERO));
    for _ in 0..2 {
        for i in 0..20 {
            ignore(l.get(i));
        }
        ignore(l.to_vec());
        ignore(l.set(1, &"set".to_string()));
        ignore(l.push(&"pushed".to_string()));
        ignore(l.pop());
        let _ = (l.len(), l.is_empty(), l.capacity(), l.max_entry_bytes());
        ignore(l.recover());
    }
    ignore(l.clear());
    ignore(shmkit::inspect(name).map(|r| r.fields.len()));
}

fuzz_target!(|data: &[u8]| {
    install_cleanup_hook();
    let [flags, cap, entry, mask @ ..] = data else {
        return;
    };
    let cap = if cap & 0x80 == 0 {
        usize::from(cap % 16) + 1
    } else {
        103 + usize::from(cap % 64) * 4
    };
    let entry = usize::from(entry % 64) + 1;
    let fill = (flags >> 1) % 24;
    let name = unique_name("dict");
    let _guard = NameGuard::new(&name);
    if flags & 1 == 0 {
        dict(&name, fill, cap, entry, mask);
    } else {
        list(&name, fill, cap, entry, mask);
    }
});
