//! The byte layout of a dict's or list's body, for `shmkit inspect` (`describe`) and for
//! tests and fuzz targets that write into one by hand (re-exported as
//! `shmkit::__layout::collections`). Head offsets are from the body's start; stripe and
//! slot offsets from the stripe's or slot's start. A list's index map (`u32` per position)
//! starts at `HEAD`, its slots after it, at `HEAD + (capacity * 4)` rounded up to 8; a
//! dict's stripes start at `HEAD`, its slots at `dict_slots_at`. A slot is `SLOT` bytes
//! plus the entry room (`max_entry_bytes` rounded up to 8).

use std::mem::size_of;

use super::slots::{SlotHead, TableHead, SLOT_HEAD};
use super::stripes::{self, StripeHead};
use crate::__layout::offsets;

/// Size of the head: the map or the slots follow.
pub const HEAD: usize = size_of::<TableHead>();
/// Size of a slot's fixed part: the entry's bytes follow.
pub const SLOT: usize = size_of::<SlotHead>();
/// List: the lock's state word (`u32`: 0 consistent, 1 a holder died, 2 not
/// recoverable).
pub const LOCK_STATE: usize = LOCK_WORD + 4;
/// Size of a dict's stripe record: a dict's stripes follow the head, its slots follow
/// them (see `dict_slots_at`).
pub const STRIPE: usize = size_of::<StripeHead>();
/// A stripe's lock's state word (as `LOCK_STATE`).
pub const STRIPE_LOCK_STATE: usize = STRIPE_LOCK_WORD + 4;

/// Where a dict of `capacity` entries keeps its first slot, from the body's start.
pub fn dict_slots_at(capacity: usize) -> usize {
    use crate::collections::slots::Design;
    HEAD + crate::collections::dict::DictTable::slots_at(capacity)
}

offsets!(TableHead;
    /// List: the lock word (owner token, parked bit).
    LOCK_WORD: u32 = lock,
    /// List: its length.
    LEN: u64 = len,
    /// Dict: non-zero once a dead writer's stripe was met, until `recover`.
    DIED: u64 = died,
    /// List: the spare slot.
    PENDING_NEW: u64 = pending_new,
    CAPACITY: u64 = capacity, SLOTS: u64 = slots, SLOT_SIZE: u64 = slot_size,
);
offsets!(StripeHead;
    /// A stripe's lock word (as `LOCK_WORD`), from the stripe's start.
    STRIPE_LOCK_WORD: u32 = lock,
    /// The stripe's free places (low 32 bits) and places given back to it (high 32).
    STRIPE_PLACES: u64 = places,
    STRIPE_PENDING_OLD: u64 = pending_old, STRIPE_PENDING_NEW: u64 = pending_new,
);
offsets!(SlotHead;
    /// 0 empty, 1 full, 2 removed (dict only).
    SLOT_STATE: u32 = state,
    SLOT_KLEN: u32 = klen, SLOT_VLEN: u32 = vlen, SLOT_HASH: u64 = hash,
    SLOT_CHECK: u64 = check,
);

/// For `shmkit inspect`: the length, capacity and lock state from a copy of a table's body
/// (`striped`: a dict's, whose locks and counts are in its stripes).
pub(crate) fn describe(body: &[u8], striped: bool) -> Vec<(String, String)> {
    let u64_at = |off: usize| {
        body.get(off..off + 8)
            .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
    };
    let mut out = Vec::new();
    let cap = u64_at(std::mem::offset_of!(TableHead, capacity));
    let size = u64_at(std::mem::offset_of!(TableHead, slot_size));
    // The locks, as (word, state) pairs, and the length: the head's, or the stripes'.
    let mut locks = Vec::new();
    let len = if striped {
        let slots = u64_at(std::mem::offset_of!(TableHead, slots)).unwrap_or(0);
        let n = stripes::stripes_for(usize::try_from(slots).unwrap_or(0));
        let mut free = 0u64;
        for s in 0..n {
            let at = HEAD + s * STRIPE;
            if let (Some(w), Some(p)) = (u64_at(at), u64_at(at + STRIPE_PLACES)) {
                locks.push((w as u32, (w >> 32) as u32));
                free = free.saturating_add(stripes::free_of(p));
            }
        }
        out.push(("lock stripes".to_owned(), n.to_string()));
        cap.map(|c| c.saturating_sub(free))
    } else {
        if let Some(w) = u64_at(0) {
            locks.push((w as u32, (w >> 32) as u32));
        }
        u64_at(std::mem::offset_of!(TableHead, len))
    };
    if let (Some(len), Some(cap)) = (len, cap) {
        out.push(("len".to_owned(), len.to_string()));
        out.push(("capacity (entries)".to_owned(), cap.to_string()));
        if len > cap {
            out.push((
                "warning".to_owned(),
                "len exceeds the capacity: corrupt".to_owned(),
            ));
        }
    }
    if let Some(size) = size {
        out.push((
            "max entry bytes".to_owned(),
            size.saturating_sub(SLOT_HEAD as u64).to_string(),
        ));
    }
    let held: Vec<u32> = locks
        .iter()
        .map(|&(w, _)| w & crate::sync::raw_mutex::TOKEN_MASK)
        .filter(|&t| t != 0)
        .collect();
    let left = locks.iter().filter(|&&(w, s)| w == 0 && s != 0).count();
    let lock = match (held.as_slice(), left) {
        ([], 0) => "free".to_owned(),
        ([], _) => "free, left inconsistent by a dead writer (call `recover`)".to_owned(),
        ([t], _) if locks.len() == 1 => format!("held (token {t})"),
        (h, _) => format!("{} of {} stripes held (tokens {h:?})", h.len(), locks.len()),
    };
    out.push(("lock".to_owned(), lock));
    out
}
