//! What the typed rings ([`spsc`](crate::spsc) and [`mpmc`](crate::mpmc)) share: the slot
//! (a sequence stamp beside the value) and the mapped ring of slots behind a header
//! ([`Ring`]), which each of them extends with its own `impl` block.
//!
//! What lives here writes shared memory only while creating a ring, before it is
//! published: the header and the slots' first stamps. Each ring's protocol (what a stamp
//! means) lives in its own module.

use std::cell::UnsafeCell;
use std::ptr::NonNull;

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::object::{At, Head, ZeroHead};
use crate::primitive::AtomicU64;
use crate::segment::{CreationMode, Kind, Layout, Segment};

/// A slot: its stamp and its value, side by side.
#[repr(C)]
pub(crate) struct Slot<T> {
    pub(crate) stamp: AtomicU64,
    pub(crate) value: UnsafeCell<T>,
}

/// How a ring's header starts (see [`Head`]).
pub(crate) type RingHead<H> = Head<fn() -> H, fn(&H)>;

/// A typed ring, mapped and validated: a header `H` (atomics only), then `cap` slots of
/// `T`. `geo` is what the ring's protocol derives from its capacity, once (`()` if
/// nothing).
pub(crate) struct Ring<H, T, G = ()> {
    pub(crate) seg: Segment,
    hdr: NonNull<H>,
    pub(crate) slots: NonNull<Slot<T>>,
    /// The capacity, as validated: a process-local copy that peers cannot change.
    pub(crate) cap: u64,
    pub(crate) geo: G,
}

// SAFETY: the ring lives in shared memory accessed through atomics and through slots that
// the stamp protocol hands to one endpoint at a time; endpoints are used from one thread
// at a time (`&mut self`), and may move between threads.
unsafe impl<H: Sync, T: Send, G: Send> Send for Ring<H, T, G> {}

impl<H, T, G> Ring<H, T, G> {
    /// The header.
    #[inline]
    pub(crate) fn hdr(&self) -> &H {
        // SAFETY: the header is mapped, initialised by the creator, and all atomics.
        unsafe { self.hdr.as_ref() }
    }
}

/// What kind of typed ring to map.
pub(crate) struct Shape {
    pub(crate) kind: Kind,
    /// The body length for a capacity; `None` if the capacity is impossible.
    pub(crate) body_len: fn(u64) -> Option<u64>,
    /// What is wrong with a capacity that `body_len` refuses.
    pub(crate) bad_capacity: fn(usize) -> String,
}

impl Shape {
    /// A ring of `kind`, whose body is `body_len` long for a capacity, and which says
    /// `bad_capacity` about a capacity that `body_len` refuses.
    pub(crate) const fn new(
        kind: Kind,
        body_len: fn(u64) -> Option<u64>,
        bad_capacity: fn(usize) -> String,
    ) -> Shape {
        Shape {
            kind,
            body_len,
            bad_capacity,
        }
    }
}

impl<H: ZeroHead, T: Pod, G> Ring<H, T, G> {
    /// Creates and/or opens (as `at` says) a typed ring of `shape`: the header written by
    /// `header`, then `capacity` slots whose stamps start as their index ("free for
    /// position i", lap 0; the value bytes stay zero, a valid `T`). The capacity is checked
    /// only when creating is allowed (an opener reads it from the segment); `geo` derives
    /// the geometry from the validated one.
    pub(crate) fn map(
        at: At<'_>,
        capacity: usize,
        shape: Shape,
        header: RingHead<H>,
        geo: impl FnOnce(u64) -> G,
    ) -> Result<Self> {
        let Shape {
            kind,
            body_len,
            bad_capacity,
        } = shape;
        if std::mem::align_of::<T>() > 128 {
            return Err(Error::InvalidArgument(
                "channel elements aligned to more than 128 bytes are not supported".into(),
            ));
        }
        let cap = capacity as u64;
        if at.mode() != CreationMode::Open && body_len(cap).is_none() {
            return Err(Error::InvalidArgument(bad_capacity(capacity)));
        }
        let layout = Layout {
            kind,
            elem_size: std::mem::size_of::<T>() as u64,
            elem_align: std::mem::align_of::<T>() as u64,
            type_tag: at.type_tag::<T>(),
            capacity: cap,
            body_len,
        };
        let init = |seg: &Segment| {
            let base = seg.as_ptr();
            // SAFETY: the body is 128-aligned, zero-filled and large enough for the header and
            // `capacity` slots (the layout says so); nobody else sees it before it is published.
            unsafe {
                header.init(base as *mut H);
                let slots = base.add(std::mem::size_of::<H>()) as *mut Slot<T>;
                for i in 0..seg.capacity() {
                    std::ptr::addr_of_mut!((*slots.add(i as usize)).stamp).write(AtomicU64::new(i));
                }
            }
            Ok(())
        };
        let seg = at.segment(layout, init)?;
        let base = seg.as_ptr();
        // SAFETY: validated: the body holds the header and `seg.capacity()` slots.
        let slots = unsafe { base.add(std::mem::size_of::<H>()) } as *mut Slot<T>;
        Ok(Ring {
            hdr: NonNull::new(base as *mut H).expect("mapping is not null"),
            slots: NonNull::new(slots).expect("mapping is not null"),
            cap: seg.capacity(),
            geo: geo(seg.capacity()),
            seg,
        })
    }
}
