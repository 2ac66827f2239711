//! Support for shmkit's own tests and fuzz targets, not part of the stable API: the byte
//! layout of the shared structures, computed from the real structs (`offset_of!`,
//! `size_of`), so that code writing into a segment by hand (a hostile peer, a fuzzer, a
//! test that forges a counter) never copies an offset that could drift.
//!
//! Offsets in `segment` are from the start of the file; all others are from the start of
//! the body, which follows the segment header (`segment::SIZE` bytes).

pub use crate::channel::layout::{frames, mpmc, pair, slot};
pub use crate::collections::layout as collections;

/// `offsets!(Struct; NAME: u64 = field, ...)`: one `pub const NAME: usize` per entry, the
/// offset of `field` in `Struct` (`offset_of!`), documented with the field and the width
/// a hand-writer uses there (`u64`). Doc comments before an entry are added to its doc.
macro_rules! offsets {
    ($ty:ident; $($(#[doc = $doc:literal])* $name:ident: $width:ty = $field:ident),+ $(,)?) => {
        $(
            #[doc = concat!(
                "Offset of `", stringify!($ty), "::", stringify!($field),
                "` (`", stringify!($width), "`)."
            )]
            $(#[doc = $doc])*
            pub const $name: usize = std::mem::offset_of!($ty, $field);
        )+
    };
}
pub(crate) use offsets;

/// The segment header that starts every segment file.
pub mod segment {
    use std::mem::size_of;

    use crate::segment::Header;

    /// Size of the segment header: the body follows.
    pub const SIZE: usize = size_of::<Header>();

    /// The format version this build writes and reads.
    pub const FORMAT_VERSION: u32 = crate::segment::VERSION;

    super::offsets!(Header;
        MAGIC: u64 = magic, VERSION: u32 = version, HEADER_SIZE: u32 = header_size,
        KIND: u32 = kind, STATE: u32 = state, CAPACITY: u64 = capacity,
        BODY_LEN: u64 = body_len, TOTAL_LEN: u64 = total_len,
    );
}
