//! Support for shmkit's own tests and fuzz targets, not part of the stable API: the byte
//! layout of the shared structures, computed from the real structs (`offset_of!`,
//! `size_of`), so that code writing into a segment by hand (a hostile peer, a fuzzer, a
//! test that forges a counter) never copies an offset that could drift.
//!
//! Offsets in `segment` are from the start of the file; all others are from the start of
//! the body, which follows the segment header (`segment::SIZE` bytes).

pub use crate::channel::layout::{frames, mpmc, pair, slot};
pub use crate::collections::slots::layout as collections;

/// The segment header that starts every segment file.
pub mod segment {
    use std::mem::{offset_of, size_of};

    use crate::segment::Header;

    /// Size of the segment header: the body follows.
    pub const SIZE: usize = size_of::<Header>();
    /// The magic word (`u64`).
    pub const MAGIC: usize = offset_of!(Header, magic);
    /// The format version (`u32`).
    pub const VERSION: usize = offset_of!(Header, version);
    /// The header size field (`u32`).
    pub const HEADER_SIZE: usize = offset_of!(Header, header_size);
    /// The object kind (`u32`).
    pub const KIND: usize = offset_of!(Header, kind);
    /// The init state (`u32`).
    pub const STATE: usize = offset_of!(Header, state);
    /// The capacity (`u64`).
    pub const CAPACITY: usize = offset_of!(Header, capacity);
    /// The body length (`u64`).
    pub const BODY_LEN: usize = offset_of!(Header, body_len);
    /// The file length (`u64`).
    pub const TOTAL_LEN: usize = offset_of!(Header, total_len);
}
