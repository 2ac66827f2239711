//! The ring proper: the shared slots (a stamp beside each value), the mapping of the
//! segment, and the stamp checks both endpoints share. See the [module docs](super) for the
//! stamp protocol.
//!
//! What lives here may touch the channel header and the slots; it holds no position of
//! its own: each endpoint (in `endpoints`) keeps its position and polls only the stamp of
//! the slot it needs.

use std::ptr::NonNull;

use bytemuck::Pod;

use super::super::Header;
use super::MAX_CAPACITY;
use crate::error::{Error, Result};
use crate::primitive::AtomicU64;
use crate::segment::{CreationMode, Kind, Layout, Options, Segment};

/// A slot: its stamp and its value, side by side.
#[repr(C)]
pub(super) struct Slot<T> {
    pub(super) stamp: AtomicU64,
    pub(super) value: std::cell::UnsafeCell<T>,
}

pub(super) fn body_len<T>(cap: u64) -> Option<u64> {
    // With one slot, "published for pos" (pos + 1) and "free for the next position"
    // (pos + 1) would be the same stamp: at least two.
    if cap < 2 || !cap.is_power_of_two() || cap > MAX_CAPACITY {
        return None;
    }
    (std::mem::size_of::<Slot<T>>() as u64)
        .checked_mul(cap)?
        .checked_add(std::mem::size_of::<Header>() as u64)
}

/// The mapped ring, shared by both endpoint types.
pub(super) struct Ring<T> {
    pub(super) seg: Segment,
    pub(super) hdr: NonNull<Header>,
    pub(super) slots: NonNull<Slot<T>>,
    pub(super) cap: u64,
}

// SAFETY: the ring lives in shared memory accessed through atomics and through slots that
// the stamp protocol hands to one side at a time; endpoints are used from one thread at a
// time (`&mut self`), and may move between threads.
unsafe impl<T: Send> Send for Ring<T> {}

impl<T: Pod> Ring<T> {
    pub(super) fn new(
        name: Option<&str>,
        mode: CreationMode,
        capacity: usize,
        opts: &Options,
    ) -> Result<Self> {
        if std::mem::align_of::<T>() > 128 {
            return Err(Error::InvalidArgument(
                "channel elements aligned to more than 128 bytes are not supported".into(),
            ));
        }
        let cap = capacity as u64;
        if mode != CreationMode::Open && body_len::<T>(cap).is_none() {
            return Err(Error::InvalidArgument(format!(
                "capacity {capacity} must be a power of two between 2 and {MAX_CAPACITY}"
            )));
        }
        let layout = Layout {
            kind: Kind::Spsc,
            elem_size: std::mem::size_of::<T>() as u64,
            elem_align: std::mem::align_of::<T>() as u64,
            capacity: cap,
            body_len: body_len::<T>,
        };
        let init = |seg: &Segment| {
            let base = seg.as_ptr();
            // SAFETY: the body is 128-aligned and large enough for the header and `cap`
            // slots (the layout says so); nobody else sees it before it is published.
            unsafe {
                (base as *mut Header).write(Header::new());
                let slots = base.add(std::mem::size_of::<Header>()) as *mut Slot<T>;
                for i in 0..seg.capacity() {
                    // Value bytes stay zero (a valid `T`); the stamp says "free for i".
                    std::ptr::addr_of_mut!((*slots.add(i as usize)).stamp).write(AtomicU64::new(i));
                }
            }
            Ok(())
        };
        let seg = match name {
            Some(n) => Segment::named(n, mode, layout, opts, init)?,
            None => Segment::anon(layout, init)?,
        };
        let cap = seg.capacity();
        let base = seg.as_ptr();
        // SAFETY: validated: the body holds the header and `cap` slots.
        let slots = unsafe { base.add(std::mem::size_of::<Header>()) } as *mut Slot<T>;
        Ok(Ring {
            hdr: NonNull::new(base as *mut Header).expect("mapping is not null"),
            slots: NonNull::new(slots).expect("mapping is not null"),
            cap,
            seg,
        })
    }

    pub(super) fn hdr(&self) -> &Header {
        // SAFETY: the header is mapped, initialised by the creator, and all atomics.
        unsafe { self.hdr.as_ref() }
    }

    /// The slot for position `pos`.
    pub(super) fn slot(&self, pos: u64) -> &Slot<T> {
        // SAFETY: `pos & (cap - 1) < cap` (cap is a validated power of two), so the slot is
        // inside the mapping; its stamp is atomic and its value is behind an UnsafeCell.
        unsafe { &*self.slots.as_ptr().add((pos & (self.cap - 1)) as usize) }
    }

    pub(super) fn corrupt(&self, what: &str, pos: u64, stamp: u64) -> Error {
        Error::corrupt(format!(
            "spsc slot for position {pos} has stamp {stamp} ({what})"
        ))
    }

    pub(super) fn claim(&self, end: usize, role: &str) -> Result<()> {
        if self.hdr().ends.0[end].claim(&self.seg)? {
            Ok(())
        } else {
            Err(Error::Busy {
                what: format!(
                    "the {role} of channel `{}`",
                    self.seg.name().unwrap_or("(anonymous)")
                ),
            })
        }
    }
}
