//! How an item lies in its slots (see *How items travel* in the [module docs](super)): the
//! slot format, how many slots an encoding takes, copying an item's pieces in and out, and
//! decoding what a slot says, checked before anything is allocated; the fuzz entry for it.
//!
//! What lives here reads slots through the raw pointers the ring lends (never a reference
//! over bytes a peer writes) and opens an out-of-line item's segment.

use std::sync::atomic::{compiler_fence, Ordering::SeqCst};

use bytemuck::{Pod, Zeroable};

use crate::codec::{Codec, Postcard};
use crate::error::{Error, Result};
use crate::segment::{Options, Segment};

/// The bytes of an item's encoding that travel in its first slot (with the length, in the
/// slot's first cache line when short).
pub(super) const IN_SLOT: usize = 112;

/// The bytes of an item's encoding that each of its further slots (its *continuations*)
/// carries: the whole value of a slot.
const IN_CONTINUATION: usize = size_of::<Slot>();

/// How many slots an item whose encoding is `n` bytes long takes in place: one for up to
/// [`IN_SLOT`] bytes, and one more for each [`IN_CONTINUATION`] bytes after them.
pub(crate) fn span(n: u64) -> u64 {
    if n <= IN_SLOT as u64 {
        1
    } else {
        1 + (n - IN_SLOT as u64).div_ceil(IN_CONTINUATION as u64)
    }
}

/// The bytes that `k` slots carry (`k >= 1`).
pub(super) fn carried(k: u64) -> usize {
    IN_SLOT + (k.saturating_sub(1) as usize).saturating_mul(IN_CONTINUATION)
}

/// The most slots one item takes in place in a queue of `cap` slots: half of them (at least
/// one), so that a long item waits for at most half the queue to drain, and two fit.
pub(super) fn max_span(cap: u64) -> u64 {
    (cap / 2).max(1)
}

/// Slot flag: the bytes are the name of the segment that holds the item.
pub(super) const OUT_OF_LINE: u32 = 1;

/// One slot's value: 120 bytes, so that with the ring's 8-byte stamp a slot is exactly two
/// cache lines and never shares one with its neighbours; the stamp, the length and the
/// first 48 bytes of the encoding share the first line, so a short item moves one line
/// from producer to consumer (the consumer copies out only the bytes the length names).
/// This is an item's first slot; a longer item's further slots (its continuations) carry
/// 120 bytes of its encoding each, in the same place.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct Slot {
    /// The encoding's length (in place or out of line).
    pub(super) len: u32,
    /// `OUT_OF_LINE`, and the name's length in bits 8..16.
    pub(super) flags: u32,
    pub(super) bytes: [u8; IN_SLOT],
}

// With the ring's 8-byte stamp in front: 128 bytes a slot.
const _: () = assert!(size_of::<u64>() + size_of::<Slot>() == 128 && align_of::<Slot>() <= 8);

/// Calls `f(j, at, from, len)` for each piece of an item's encoding between its bytes
/// `start` and `end`: `len` bytes from offset `from` of the encoding go to byte `at` of the
/// value of the item's slot `j` (the first slot's bytes start after its length and flags).
#[inline]
pub(super) fn for_each_piece(
    start: usize,
    end: usize,
    mut f: impl FnMut(u64, usize, usize, usize),
) {
    let head_at = std::mem::offset_of!(Slot, bytes);
    let mut o = start;
    while o < end {
        let (j, at, room) = if o < IN_SLOT {
            (0, head_at + o, IN_SLOT - o)
        } else {
            let r = o - IN_SLOT;
            let (j, at) = (r / IN_CONTINUATION, r % IN_CONTINUATION);
            (1 + j as u64, at, IN_CONTINUATION - at)
        };
        let len = room.min(end - o);
        f(j, at, o, len);
        o += len;
    }
}

/// How many slots the item whose first slot is at `slot` (in shared memory) says it takes
/// (the ring checks it, see `mpmc`'s `span_at`): one for an out-of-line item.
pub(super) fn span_of(slot: *const Slot) -> u64 {
    // SAFETY: `slot` points at a published slot in the mapping (`recv_span_with`'s
    // contract); volatile reads of two plain words, valid whatever their bits.
    let (len, flags) = unsafe {
        (
            std::ptr::addr_of!((*slot).len).read_volatile(),
            std::ptr::addr_of!((*slot).flags).read_volatile(),
        )
    };
    if flags == 0 {
        span(len.into())
    } else {
        1
    }
}

/// [`span_of`] for the ring, which knows a slot's value only as bytes.
pub(super) fn span_of_bytes(value: *const u8) -> u64 {
    span_of(value.cast::<Slot>())
}

/// Copies the length, the flags and the bytes they name of the item whose `k` slots are
/// at `slot(0)`, … `slot(k - 1)` into `buf` (cleared first): an item in place (at most
/// what `k` slots carry), or an out-of-line item's name. The length and flags are returned
/// as read, unchecked ([`decode_parts`] checks them).
pub(super) fn copy_out(slot: impl Fn(u64) -> *const Slot, k: u64, buf: &mut Vec<u8>) -> (u32, u32) {
    let head = slot(0);
    // SAFETY: `slot(j)` points at the claimed slot `j < k` in the mapping
    // (`recv_span_with`'s contract), read through raw pointers only: volatile reads of the
    // two words, then fenced copies of at most what the `k` slots carry (each piece inside
    // one slot, `for_each_piece`) into `buf`, which has room for them. Any bytes are valid
    // `u8`s; a peer writing meanwhile can only make them garbage, which the release check
    // in `recv_span_with` then reports.
    unsafe {
        let len = std::ptr::addr_of!((*head).len).read_volatile();
        let flags = std::ptr::addr_of!((*head).flags).read_volatile();
        let n = if flags == 0 {
            (len as usize).min(carried(k))
        } else {
            ((flags >> 8 & 0xff) as usize).min(IN_SLOT)
        };
        buf.clear();
        buf.reserve(n);
        compiler_fence(SeqCst);
        let to = buf.as_mut_ptr();
        if n <= IN_SLOT {
            // All in the first slot: one copy.
            let src = std::ptr::addr_of!((*head).bytes).cast::<u8>();
            std::ptr::copy_nonoverlapping(src, to, n);
        } else {
            for_each_piece(0, n, |j, at, from, len| {
                let src = slot(j).cast::<u8>().add(at);
                std::ptr::copy_nonoverlapping(src, to.add(from), len);
            });
        }
        compiler_fence(SeqCst);
        buf.set_len(n);
        (len, flags)
    }
}

/// The item of queue `queue` whose slot said `len` and `flags`, with `bytes` copied from
/// it (the first `len` bytes inline, or the out-of-line segment's name), checked (lengths
/// against the bytes copied and `max_item`, an out-of-line name against the queue's) before
/// anything is allocated.
pub(super) fn decode_parts<T, C: Codec<T>>(
    len: u32,
    flags: u32,
    bytes: &[u8],
    queue: &str,
    max_item: usize,
) -> Result<T> {
    let n = len as usize;
    if flags == 0 {
        if n > max_item {
            return Err(Error::corrupt(format!(
                "a queue item says {n} bytes; the limit is {max_item}"
            )));
        }
        if n > bytes.len() {
            return Err(Error::corrupt(format!(
                "a queue slot says {n} bytes; it holds at most {}",
                bytes.len()
            )));
        }
        return C::decode(&bytes[..n]);
    }
    let name_len = (flags >> 8 & 0xff) as usize;
    if flags & !0xff00 != OUT_OF_LINE || name_len > IN_SLOT || name_len > bytes.len() {
        return Err(Error::corrupt(format!(
            "a queue slot with flags {flags:#x}"
        )));
    }
    let name = std::str::from_utf8(&bytes[..name_len])
        .ok()
        .filter(|n| is_ool_name(queue, n))
        .ok_or_else(|| Error::corrupt("an out-of-line item names a segment not of its queue"))?;
    let seg = Segment::open(name, &Options::new())?;
    // Remove the name first: whatever happens next, nothing is left behind.
    let _ = crate::admin::unlink(name);
    if n > max_item || n > seg.len() {
        return Err(Error::corrupt(format!(
            "an out-of-line item says {n} bytes; its segment holds {} and the limit is {}",
            seg.len(),
            max_item
        )));
    }
    let mut v = Vec::with_capacity(n);
    // SAFETY: the segment is mapped for `seg.len() >= n` bytes; `v` has room for `n`;
    // a raw copy, so no reference is formed over bytes another process could write.
    unsafe {
        std::ptr::copy_nonoverlapping(seg.as_ptr(), v.as_mut_ptr(), n);
        v.set_len(n);
    }
    C::decode(&v)
}

/// Whether `n` is `QUEUE.xPID.N`, an out-of-line item of queue `queue`.
fn is_ool_name(queue: &str, n: &str) -> bool {
    crate::admin::item_queue(n) == Some(queue)
}

/// For the fuzz target `queue_slot`: `bytes` as the slots of an item (its first slot, then
/// up to 15 continuations) of a queue named `fuzzq`, of `(String, Vec<u64>)` (postcard)
/// and of `[u32; 3]` (`codec::Pod`); whether each decoded. The number of slots is the one
/// the first slot says, if the bytes give that many (else 1), as the ring decides.
pub(crate) fn fuzz_slot(bytes: &[u8]) -> (bool, bool) {
    let mut slots = [Slot::zeroed(); 16];
    let given = bytes
        .len()
        .div_ceil(size_of::<Slot>())
        .clamp(1, slots.len());
    for (slot, chunk) in slots.iter_mut().zip(bytes.chunks(size_of::<Slot>())) {
        bytemuck::bytes_of_mut(slot)[..chunk.len()].copy_from_slice(chunk);
    }
    let k = span_of(&slots[0]);
    let k = if k <= given as u64 { k } else { 1 };
    let mut buf = Vec::new();
    let (len, flags) = copy_out(|j| &slots[j as usize] as *const Slot, k, &mut buf);
    (
        decode_parts::<(String, Vec<u64>), Postcard>(len, flags, &buf, "fuzzq", 1 << 20).is_ok(),
        decode_parts::<[u32; 3], crate::codec::Pod>(len, flags, &buf, "fuzzq", 1 << 20).is_ok(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_slot<T, C: Codec<T>>(slot: &Slot, queue: &str, max_item: usize) -> Result<T> {
        let mut buf = Vec::new();
        let (len, flags) = copy_out(|_| slot as *const Slot, 1, &mut buf);
        decode_parts::<T, C>(len, flags, &buf, queue, max_item)
    }

    #[test]
    fn out_of_line_names_must_be_the_queue_s_own_and_garbage_is_an_error() {
        let name = crate::__private::test_name("q-oolnames");
        assert!(is_ool_name(&name, &format!("{name}.x12.3")));
        for bad in [
            "orders.lock".to_string(),
            format!("{name}.x12"),
            format!("{name}.x.3"),
            format!("{name}.x12.3/.."),
            format!("{name}x12.3"),
        ] {
            assert!(!is_ool_name(&name, &bad), "{bad}");
        }
        // Garbage slots: errors, never a panic or an allocation past the limits.
        let mut slot = Slot::zeroed();
        slot.len = IN_SLOT as u32 + 1;
        assert!(matches!(
            decode_slot::<String, Postcard>(&slot, &name, 1 << 20),
            Err(Error::Corrupt { .. })
        ));
        slot.flags = OUT_OF_LINE | 3 << 8;
        slot.bytes[..3].copy_from_slice(b"abc");
        assert!(matches!(
            decode_slot::<String, Postcard>(&slot, &name, 1 << 20),
            Err(Error::Corrupt { .. })
        ));
        slot.flags = 7;
        assert!(matches!(
            decode_slot::<String, Postcard>(&slot, &name, 1 << 20),
            Err(Error::Corrupt { .. })
        ));
        slot.flags = 0;
        slot.len = 4;
        slot.bytes[..4].copy_from_slice(&[3, 0xff, 0xfe, 0xfd]);
        assert!(matches!(
            decode_slot::<String, Postcard>(&slot, &name, 1 << 20),
            Err(Error::Codec { .. })
        ));
    }
}
