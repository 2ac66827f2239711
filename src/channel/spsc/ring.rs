//! The ring proper: the shared slots (a stamp beside each value) and the mapping of the
//! segment, which both endpoints share. See the [module docs](super) for the protocol.
//!
//! What lives here may touch the channel header and the slots; it holds no position of
//! its own: each endpoint (in `endpoints`) keeps its position, and the stamp checks live
//! there too.

use bytemuck::Pod;

use super::super::typed::{self, Shape, Slot};
use super::super::Header;
use super::MAX_CAPACITY;
use crate::error::{Error, Result};
use crate::object::{At, Head};
use crate::segment::Kind;

pub(super) fn body_len<T>(cap: u64) -> Option<u64> {
    // At least two slots (a format rule kept from the first protocol, whose stamps needed
    // them; the stamps of this one would tell one slot's laps apart too).
    if cap < 2 || !cap.is_power_of_two() || cap > MAX_CAPACITY {
        return None;
    }
    (std::mem::size_of::<Slot<T>>() as u64)
        .checked_mul(cap)?
        .checked_add(std::mem::size_of::<Header>() as u64)
}

/// The mapped ring, shared by both endpoint types.
pub(super) type Ring<T> = typed::Ring<Header, T>;

impl<T: Pod> Ring<T> {
    pub(super) fn new(at: At<'_>, capacity: usize) -> Result<Self> {
        let shape = Shape::new(Kind::Spsc, body_len::<T>, |c| {
            format!("capacity {c} must be a power of two between 2 and {MAX_CAPACITY}")
        });
        Self::map(at, capacity, shape, Head::zero(Header::new), |_| ())
    }

    /// The slots, for a loop over many of them (a chunk): see [`Slots`].
    #[inline]
    pub(super) fn slots(&self) -> Slots<'_, T> {
        Slots {
            slots: self.slots,
            mask: self.cap - 1,
            _ring: std::marker::PhantomData,
        }
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
        self.hdr().claim(&self.seg, end, role, "channel")
    }
}

/// A ring's slots with the mask of positions, copied out of the ring once for a loop over
/// a chunk: through `&Ring`, the compiler reloads both from memory at every slot (a write
/// into shared memory, or an Acquire load, might have changed them, as far as it can
/// tell): three loads a slot in the sender's fill loop, and a store of the position a
/// slot in its publication loop (see BENCHMARKS.md, "spsc chunks with leaner loops").
#[derive(Clone, Copy)]
pub(super) struct Slots<'a, T> {
    slots: std::ptr::NonNull<Slot<T>>,
    mask: u64,
    _ring: std::marker::PhantomData<&'a Ring<T>>,
}

impl<'a, T> Slots<'a, T> {
    /// The slot for position `pos`.
    #[inline(always)]
    pub(super) fn at(self, pos: u64) -> &'a Slot<T> {
        // SAFETY: `mask` is the validated capacity (a power of two) minus one, so the slot is
        // inside the mapping, which the ring borrowed for `'a` keeps mapped; its stamp is
        // atomic and its value is behind an UnsafeCell.
        unsafe { &*self.slots.as_ptr().add((pos & self.mask) as usize) }
    }
}
