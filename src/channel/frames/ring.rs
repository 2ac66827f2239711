//! The byte ring proper: the record layout (`[stamp][len | PAD][payload][padding]`), the
//! mapping of the segment, reading and validating a published record, and the receiver's
//! poll and release, which the waiting loop calls with split borrows. See the
//! [module docs](super) for the layout.
//!
//! What lives here may touch the channel header and the data area; a record's length word
//! is read once and checked against the ring before any payload is touched.

use std::ptr::NonNull;

use super::super::{Header, Poll};
use super::{MAX_CAPACITY, MIN_CAPACITY};
use crate::error::{Error, Result};
use crate::object::{type_tag, At, Head};
use crate::os::failpoint::failpoint;
use crate::primitive::{AtomicU64, Ordering};
use crate::segment::{CreationMode, Kind, Layout, Segment};

/// Size of a record header.
pub(in crate::channel) const REC_HDR: u64 = 16;
/// Records start at multiples of this.
pub(in crate::channel) const ALIGN: u64 = 16;
/// Offset of the stamp word in a record.
pub(in crate::channel) const STAMP_AT: usize = 0;
/// Offset of the length word in a record.
pub(in crate::channel) const LEN_AT: usize = 8;
/// Marks a padding record in the length word.
pub(in crate::channel) const PAD: u64 = 1 << 63;
pub(super) fn body_len(cap: u64) -> Option<u64> {
    if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&cap) || !cap.is_power_of_two() {
        return None;
    }
    cap.checked_add(std::mem::size_of::<Header>() as u64)
}

pub(super) fn record_size(len: u64) -> u64 {
    REC_HDR + len.next_multiple_of(ALIGN)
}

pub(super) struct Ring {
    pub(super) seg: Segment,
    pub(super) hdr: NonNull<Header>,
    pub(super) data: NonNull<u8>,
    pub(super) cap: u64,
    /// Under loom: the stamp and length words, which live in plain ring bytes for real
    /// and which loom can only model as atomics it constructed itself.
    #[cfg(loom)]
    words: loom_words::Words,
}

/// Under loom, the record header words of each ring (by segment name): the model is one
/// process, so a table beside the mapping stands for the words in the ring's bytes.
#[cfg(loom)]
mod loom_words {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use crate::primitive::AtomicU64;

    /// `(stamps, lengths)`, one of each per 16-byte record position.
    pub(super) type Words = Arc<(Vec<AtomicU64>, Vec<AtomicU64>)>;

    pub(super) fn of(name: &str, cap: u64) -> Words {
        static TABLES: Mutex<Option<HashMap<String, Words>>> = Mutex::new(None);
        let mut t = TABLES.lock().unwrap_or_else(|e| e.into_inner());
        let n = (cap / super::ALIGN) as usize;
        let new = || (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        t.get_or_insert_with(HashMap::new)
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new((new(), new())))
            .clone()
    }
}

// SAFETY: shared memory reached through atomics and through byte ranges that the protocol
// hands to one side at a time; endpoints are used through `&mut self`.
unsafe impl Send for Ring {}

impl Ring {
    pub(super) fn new(at: At<'_>, capacity: usize) -> Result<Ring> {
        let cap = capacity as u64;
        if at.mode() != CreationMode::Open && body_len(cap).is_none() {
            return Err(Error::InvalidArgument(format!(
                "a frame ring's capacity must be a power of two between {MIN_CAPACITY} and \
                 {MAX_CAPACITY} bytes, not {capacity}"
            )));
        }
        let layout = Layout {
            kind: Kind::Frames,
            elem_size: 1,
            elem_align: 1,
            type_tag: type_tag::<u8>(),
            capacity: cap,
            body_len,
        };
        let init = |seg: &Segment| {
            // SAFETY: the body is 128-aligned, zero-filled, and holds the header and `cap`
            // bytes; nobody else sees it yet. The data bytes are zero: every stamp reads
            // 0, "not published". The header starts all zero.
            unsafe { Head::zero(Header::new).init(seg.as_ptr() as *mut Header) };
            Ok(())
        };
        let seg = at.segment(layout, init)?;
        let base = seg.as_ptr();
        Ok(Ring {
            hdr: NonNull::new(base as *mut Header).expect("mapping is not null"),
            // SAFETY: validated: the body holds the header and then `cap` bytes.
            data: NonNull::new(unsafe { base.add(std::mem::size_of::<Header>()) })
                .expect("mapping is not null"),
            cap: seg.capacity(),
            #[cfg(loom)]
            words: loom_words::of(at.name().unwrap_or_default(), seg.capacity()),
            seg,
        })
    }

    pub(super) fn hdr(&self) -> &Header {
        // SAFETY: the header is mapped, initialised by the creator, and all atomics.
        unsafe { self.hdr.as_ref() }
    }

    pub(super) fn offset(&self, pos: u64) -> u64 {
        pos & (self.cap - 1)
    }

    /// The stamp word of the record at `pos` (16-aligned).
    #[cfg(not(loom))]
    pub(super) fn stamp(&self, pos: u64) -> &AtomicU64 {
        // SAFETY: `offset(pos)` is a multiple of 16 below `cap`, so the word is inside the
        // data area and 8-aligned (the area starts 128-aligned).
        unsafe {
            &*(self.data.as_ptr().add(self.offset(pos) as usize + STAMP_AT) as *const AtomicU64)
        }
    }

    /// The length word of the record at `pos`.
    #[cfg(not(loom))]
    pub(super) fn len_word(&self, pos: u64) -> &AtomicU64 {
        // SAFETY: as in `stamp`, 8 bytes further: still inside (records are 16 bytes min).
        unsafe {
            &*(self.data.as_ptr().add(self.offset(pos) as usize + LEN_AT) as *const AtomicU64)
        }
    }

    #[cfg(loom)]
    pub(super) fn stamp(&self, pos: u64) -> &AtomicU64 {
        &self.words.0[(self.offset(pos) / ALIGN) as usize]
    }

    #[cfg(loom)]
    pub(super) fn len_word(&self, pos: u64) -> &AtomicU64 {
        &self.words.1[(self.offset(pos) / ALIGN) as usize]
    }

    /// Payload pointer of the record at `pos`.
    pub(super) fn payload(&self, pos: u64) -> *mut u8 {
        // SAFETY: callers only use it for records that fit before the end of the data area
        // (checked), so `offset + 16 .. offset + 16 + len` is inside it.
        unsafe {
            self.data
                .as_ptr()
                .add((self.offset(pos) + REC_HDR) as usize)
        }
    }

    pub(super) fn claim(&self, end: usize, role: &str) -> Result<()> {
        self.hdr().claim(&self.seg, end, role, "frame channel")
    }

    /// Reads and validates the record published at `pos`: `(payload length, is padding)`.
    pub(super) fn record_at(&self, pos: u64) -> Result<(u64, bool)> {
        // Relaxed: read after the Acquire load of the stamp that published it.
        let w = self.len_word(pos).load(Ordering::Relaxed);
        let room = self.cap - self.offset(pos);
        if w & PAD != 0 {
            let n = w & !PAD;
            if n != room {
                return Err(Error::corrupt(format!(
                    "frame ring: padding record of {n} bytes at offset {} (expected {room})",
                    self.offset(pos)
                )));
            }
            return Ok((n, true));
        }
        if record_size(w) > room || w > self.cap {
            return Err(Error::corrupt(format!(
                "frame ring: record of {w} bytes at offset {} does not fit",
                self.offset(pos)
            )));
        }
        Ok((w, false))
    }
}

/// Polls for a record at `pos`, consuming padding records; `Ready(len)`.
pub(super) fn poll_frame(ring: &Ring, pos: &mut u64) -> Result<Poll<u64>> {
    for _ in 0..2 {
        let p = *pos;
        // Acquire: pairs with the sender's Release stamp store: the length word and the
        // payload are visible.
        if ring.stamp(p).load(Ordering::Acquire) != p.wrapping_add(1) {
            return Ok(Poll::Pending);
        }
        let (n, pad) = ring.record_at(p)?;
        if !pad {
            return Ok(Poll::Ready(n));
        }
        release(ring, pos, n);
    }
    Err(Error::corrupt("frame ring: two padding records in a row"))
}

/// Releases `size` bytes at `pos`.
pub(super) fn release(ring: &Ring, pos: &mut u64, size: u64) {
    *pos = pos.wrapping_add(size);
    // Release: our reads of the released bytes are done before the sender reuses them
    // (pairs with its Acquire load of `head`).
    ring.hdr().head.0.store(*pos, Ordering::Release);
    failpoint!("frames.released");
    ring.hdr().space.notify();
}
