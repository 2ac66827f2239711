//! What the typed rings ([`spsc`](crate::spsc) and [`mpmc`](crate::mpmc)) share: the slot
//! (a sequence stamp beside the value) and the mapping of a ring of slots behind a header.
//!
//! What lives here touches shared memory only while creating a ring, before it is
//! published: it writes the header and the slots' first stamps. Each ring's protocol (what
//! a stamp means) lives in its own module.

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

/// A ring of `Slot<T>`s after a header `H`, freshly mapped and validated.
pub(crate) struct Mapped<H, T> {
    pub(crate) seg: Segment,
    pub(crate) hdr: NonNull<H>,
    pub(crate) slots: NonNull<Slot<T>>,
}

/// What kind of typed ring to map.
pub(crate) struct Shape {
    pub(crate) kind: Kind,
    /// The body length for a capacity; `None` if the capacity is impossible.
    pub(crate) body_len: fn(u64) -> Option<u64>,
    /// What is wrong with a capacity that `body_len` refuses.
    pub(crate) bad_capacity: fn(usize) -> String,
}

/// Creates and/or opens (as `mode` says; anonymous if `name` is `None`) a typed ring of
/// `shape`: the header written by `header`, then `capacity` slots whose stamps start as
/// their index ("free for position i", lap 0; the value bytes stay zero, a valid `T`). The
/// capacity is checked only when creating is allowed (an opener reads it from the segment).
pub(crate) fn map<T: Pod, H>(
    at: At<'_>,
    capacity: usize,
    shape: Shape,
    header: RingHead<H>,
) -> Result<Mapped<H, T>>
where
    H: ZeroHead,
{
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
    Ok(Mapped {
        hdr: NonNull::new(base as *mut H).expect("mapping is not null"),
        slots: NonNull::new(slots).expect("mapping is not null"),
        seg,
    })
}
