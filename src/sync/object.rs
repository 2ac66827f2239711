//! The storage of the synchronisation objects: a segment whose body is one `#[repr(C)]`
//! struct of atomics, `S`.

use std::ptr::NonNull;

use crate::error::{Error, Result};
use crate::segment::{CreationMode, Kind, Layout, Options, Segment};

/// A segment holding one `S` at the start of its body. `S` must consist of atomics only
/// (every field may be written by peers at any time), with alignment at most 128.
pub(crate) struct Shared<S> {
    seg: Segment,
    ptr: NonNull<S>,
}

// SAFETY: `S` is made of atomics, which may be shared and sent between threads; the
// pointer stays valid for as long as `seg` owns the mapping.
unsafe impl<S: Sync> Send for Shared<S> {}
// SAFETY: as above.
unsafe impl<S: Sync> Sync for Shared<S> {}

fn fixed_len<S>(_capacity: u64) -> Option<u64> {
    Some(std::mem::size_of::<S>() as u64)
}

impl<S: Sync> Shared<S> {
    /// Creates and/or opens the object. `capacity` is the object's parameter (permits,
    /// parties, ...), recorded in the header and read back on open; `init` builds the
    /// initial state from it.
    pub(crate) fn new(
        name: Option<&str>,
        kind: Kind,
        mode: CreationMode,
        capacity: u64,
        opts: &Options,
        init: &dyn Fn(u64) -> S,
    ) -> Result<Self> {
        const { assert!(std::mem::align_of::<S>() <= 128) };
        let layout = Layout {
            kind,
            elem_size: std::mem::size_of::<S>() as u64,
            elem_align: std::mem::align_of::<S>() as u64,
            capacity,
            body_len: fixed_len::<S>,
        };
        let init_body = |seg: &Segment| {
            // SAFETY: the body is 128-aligned and `size_of::<S>()` bytes long (the layout
            // says so), and nobody else sees the segment before it is published.
            unsafe { (seg.as_ptr() as *mut S).write(init(capacity)) };
            Ok(())
        };
        let seg = match name {
            Some(name) => Segment::named(name, mode, layout, opts, init_body)?,
            None => Segment::anon(layout, init_body)?,
        };
        let ptr =
            NonNull::new(seg.as_ptr() as *mut S).ok_or_else(|| Error::corrupt("null mapping"))?;
        Ok(Shared { seg, ptr })
    }

    /// The shared state.
    pub(crate) fn get(&self) -> &S {
        // SAFETY: points into the live mapping, initialised by the creator; `S` is all
        // atomics, so shared references are sound whatever peers do.
        unsafe { self.ptr.as_ref() }
    }

    /// The object's parameter, as validated on open (a process-local copy: peers cannot
    /// change it under us).
    pub(crate) fn capacity(&self) -> u64 {
        self.seg.capacity()
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }
}
