//! The on-file format of a segment: the 128-byte [`Header`] every segment starts with, the
//! object [`Kind`]s, the file-layout constants (where the body, the holder byte and the
//! liveness bytes are), and the validation of a header copy against what an opener
//! expects ([`validate`]).
//!
//! Nothing here touches the kernel or a mapping: these are pure functions over a header
//! *copy*, so the fuzz targets can feed them arbitrary bytes.

use crate::error::{Error, Result};

/// The magic number at the start of every segment: `b"SHMKIT\0\x01"` in little endian.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMKIT\0\x01");
/// The format version. A segment of another version is refused.
///
/// 2: spsc stamps only say "published" (the receiver releases through `head`); a serde
/// queue's slot holds 120 bytes, and a longer item takes consecutive slots (the queue's
/// type fingerprint says so).
pub(crate) const VERSION: u32 = 2;
/// Size of the header, and offset of the body.
pub const HEADER_SIZE: usize = 128;
/// The largest segment we create or accept (the liveness bytes live above it).
pub(crate) const MAX_TOTAL_LEN: u64 = 1 << 40;
/// Offset of the first liveness byte in a segment's file: far past any body.
pub(crate) const LIVENESS_BASE: u64 = 1 << 41;
/// The byte every handle of a named segment holds a shared OFD lock on, through its own
/// open file description, for as long as it is open: "held by a live process" for
/// [`list`] and [`clean`], decided by the kernel. A cleaner takes a write lock on it, so
/// that it never removes a segment somebody holds, and nobody opens one being removed.
pub(crate) const HOLDER_BYTE: u64 = LIVENESS_BASE - 1;
/// Liveness tokens are in `1..=MAX_TOKEN`; they fit in 31 bits so that lock words can
/// keep a flag bit beside them.
pub(crate) const MAX_TOKEN: u32 = (1 << 31) - 1;

/// The OS-level prefix of every named segment of this crate.
pub(crate) const PREFIX: &str = "shmkit.";
/// The OS-level prefix of temporary files of creators that have not published yet.
pub(crate) const TMP_PREFIX: &str = "shmkit~";
/// The longest user name.
pub const MAX_NAME_LEN: usize = 200;

pub(crate) const STATE_READY: u32 = 2;

/// The kind of object a segment holds, stored in its header.
///
/// ```
/// # let name = shmkit::__private::test_name("doc-kind");
/// let ev = shmkit::Event::create(&name)?;
/// assert_eq!(ev.segment().kind(), shmkit::Kind::Event);
/// assert_eq!(shmkit::Kind::Event.as_str(), "event");
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u32)]
pub enum Kind {
    /// Plain bytes ([`Segment::create`](crate::Segment::create)).
    Raw = 1,
    /// [`crate::Mutex`].
    Mutex = 2,
    /// [`crate::Value`].
    Value = 3,
    /// [`crate::RawValue`].
    RawValue = 4,
    /// [`crate::Array`].
    Array = 5,
    /// [`crate::RawArray`].
    RawArray = 6,
    /// [`crate::Semaphore`].
    Semaphore = 7,
    /// [`crate::BoundedSemaphore`].
    BoundedSemaphore = 8,
    /// [`crate::Event`].
    Event = 9,
    /// [`crate::Condvar`].
    Condvar = 10,
    /// [`crate::Barrier`].
    Barrier = 11,
    /// [`crate::RwLock`].
    RwLock = 12,
    /// [`crate::ReentrantMutex`].
    ReentrantMutex = 13,
    /// [`crate::spsc`] channel.
    Spsc = 16,
    /// [`crate::mpmc`] channel.
    Mpmc = 17,
    /// [`crate::frames`] channel.
    Frames = 18,
    /// The task counters of a [`crate::JoinableQueue`] (its items live in an mpmc queue).
    JoinableQueue = 19,
    /// [`crate::SharedDict`].
    Dict = 24,
    /// [`crate::SharedList`].
    List = 25,
}

impl Kind {
    pub(crate) fn from_u32(v: u32) -> Option<Kind> {
        Some(match v {
            1 => Kind::Raw,
            2 => Kind::Mutex,
            3 => Kind::Value,
            4 => Kind::RawValue,
            5 => Kind::Array,
            6 => Kind::RawArray,
            7 => Kind::Semaphore,
            8 => Kind::BoundedSemaphore,
            9 => Kind::Event,
            10 => Kind::Condvar,
            11 => Kind::Barrier,
            12 => Kind::RwLock,
            13 => Kind::ReentrantMutex,
            16 => Kind::Spsc,
            17 => Kind::Mpmc,
            18 => Kind::Frames,
            19 => Kind::JoinableQueue,
            24 => Kind::Dict,
            25 => Kind::List,
            _ => return None,
        })
    }

    /// A short lower-case name for display.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Raw => "raw",
            Kind::Mutex => "mutex",
            Kind::Value => "value",
            Kind::RawValue => "raw-value",
            Kind::Array => "array",
            Kind::RawArray => "raw-array",
            Kind::Semaphore => "semaphore",
            Kind::BoundedSemaphore => "bounded-semaphore",
            Kind::Event => "event",
            Kind::Condvar => "condvar",
            Kind::Barrier => "barrier",
            Kind::RwLock => "rwlock",
            Kind::ReentrantMutex => "reentrant-mutex",
            Kind::Spsc => "spsc",
            Kind::Mpmc => "mpmc",
            Kind::Frames => "frames",
            Kind::JoinableQueue => "joinable-queue",
            Kind::Dict => "dict",
            Kind::List => "list",
        }
    }
}

/// The header at offset 0 of every segment.
///
/// Written once by the creator before the segment is published; read by openers only
/// through a volatile copy (a peer could be writing it), then validated field by field.
/// `magic`, `version` and `header_size` form the fixed prefix that every format version
/// keeps: an opener checks them before it interprets anything else.
#[repr(C)]
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Header {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`VERSION`].
    pub version: u32,
    /// [`HEADER_SIZE`].
    pub header_size: u32,
    /// A [`Kind`].
    pub kind: u32,
    /// Init state: 0 uninitialised, 1 initialising, 2 ready. Atomic in place
    /// (see [`Segment::state_word`]).
    pub state: u32,
    /// Size of the payload type in bytes.
    pub elem_size: u64,
    /// Alignment of the payload type in bytes.
    pub elem_align: u64,
    /// Number of elements (or the object's own capacity measure).
    pub capacity: u64,
    /// Length of the body in bytes.
    pub body_len: u64,
    /// Length of the whole file in bytes (header, body, padding to a page).
    pub total_len: u64,
    /// Optional tag naming the payload type (0: unchecked).
    pub type_tag: u64,
    /// The creator's pid, for display only.
    pub creator_pid: u32,
    /// Next liveness token to hand out. Atomic in place (see [`Segment::token_counter`]).
    pub next_token: u32,
    /// Creation time, nanoseconds since the Unix epoch, for display.
    pub created_ns: u64,
    /// Zero; room for later versions.
    pub reserved: [u64; 5],
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(std::mem::align_of::<Header>() == 8);
pub(crate) const STATE_OFFSET: usize = std::mem::offset_of!(Header, state);
pub(crate) const NEXT_TOKEN_OFFSET: usize = std::mem::offset_of!(Header, next_token);

/// What an object expects of the segment it opens: the header fields it checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub kind: Kind,
    pub elem_size: u64,
    pub elem_align: u64,
    /// A fingerprint of the element type (see `object::type_tag`); 0 checks nothing.
    pub type_tag: u64,
    /// Capacity to create with (ignored by `open`, which reads it from the header).
    pub capacity: u64,
    /// Body length for a given capacity; `None` if the capacity is impossible.
    pub body_len: fn(u64) -> Option<u64>,
}

pub(crate) fn raw_layout(len: usize) -> Result<Layout> {
    Ok(Layout {
        kind: Kind::Raw,
        elem_size: 1,
        elem_align: 1,
        type_tag: 0,
        capacity: len as u64,
        body_len: Some,
    })
}

/// Checks the fixed prefix that every format version keeps: magic, version, header size.
pub(crate) fn check_prefix(name: &str, magic: u64, version: u32, header_size: u32) -> Result<()> {
    if magic != MAGIC {
        return Err(Error::corrupt(format!(
            "segment `{name}`: bad magic {magic:#018x}: this is not a shmkit segment"
        )));
    }
    let mismatch = |what: String| Error::LayoutMismatch {
        name: name.to_owned(),
        what,
    };
    if version != VERSION {
        return Err(mismatch(format!(
            "format version {version} (this build of shmkit reads version {VERSION})"
        )));
    }
    if header_size != HEADER_SIZE as u32 {
        return Err(mismatch(format!(
            "header size {header_size} (expected {HEADER_SIZE})"
        )));
    }
    Ok(())
}

/// Checks a header copy against the file's real size and the caller's expectations, and
/// returns it. Public to the crate for the fuzz target.
pub(crate) fn validate(name: &str, h: &Header, file_len: u64, layout: &Layout) -> Result<Header> {
    let corrupt = |what: String| Error::corrupt(format!("segment `{name}`: {what}"));
    let mismatch = |what: String| Error::LayoutMismatch {
        name: name.to_owned(),
        what,
    };
    // The fixed prefix first.
    check_prefix(name, h.magic, h.version, h.header_size)?;
    let Some(kind) = Kind::from_u32(h.kind) else {
        return Err(corrupt(format!("unknown object kind {}", h.kind)));
    };
    if kind != layout.kind {
        return Err(mismatch(format!(
            "it holds a {}, not a {}",
            kind.as_str(),
            layout.kind.as_str()
        )));
    }
    // A raw segment of any length opens as raw; typed objects check their element type.
    if layout.kind != Kind::Raw
        && (h.elem_size != layout.elem_size || h.elem_align != layout.elem_align)
    {
        return Err(mismatch(format!(
            "element type of size {} and alignment {} (expected size {} and alignment {})",
            h.elem_size, h.elem_align, layout.elem_size, layout.elem_align
        )));
    }
    if layout.kind != Kind::Raw && layout.type_tag != 0 && h.type_tag != layout.type_tag {
        return Err(mismatch(format!(
            "element type fingerprint {:#018x} (expected {:#018x}): it was created for another \
             element type of the same size",
            h.type_tag, layout.type_tag
        )));
    }
    if h.total_len != file_len {
        return Err(corrupt(format!(
            "header says {} bytes, the file has {file_len}",
            h.total_len
        )));
    }
    let Some(expected_body) = (layout.body_len)(h.capacity) else {
        return Err(corrupt(format!("impossible capacity {}", h.capacity)));
    };
    if h.body_len != expected_body {
        return Err(corrupt(format!(
            "body length {} does not match capacity {} (expected {expected_body})",
            h.body_len, h.capacity
        )));
    }
    if (HEADER_SIZE as u64)
        .checked_add(h.body_len)
        .is_none_or(|end| end > file_len)
    {
        return Err(corrupt(format!(
            "body of {} bytes does not fit in a file of {file_len}",
            h.body_len
        )));
    }
    Ok(*h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Header {
        Header {
            magic: MAGIC,
            version: VERSION,
            header_size: HEADER_SIZE as u32,
            kind: Kind::Raw as u32,
            state: STATE_READY,
            elem_size: 1,
            elem_align: 1,
            capacity: 100,
            body_len: 100,
            total_len: 4096,
            type_tag: 0,
            creator_pid: 1,
            next_token: 1,
            created_ns: 0,
            reserved: [0; 5],
        }
    }

    #[test]
    fn header_validation_rejects_each_bad_field() {
        let l = raw_layout(0).unwrap();
        assert!(validate("t", &good(), 4096, &l).is_ok());
        type Case = (fn(&mut Header), bool);
        let cases: Vec<Case> = vec![
            (|h| h.magic ^= 1, false),
            (|h| h.version = VERSION + 1, true),
            (|h| h.header_size = 64, true),
            (|h| h.kind = 999, false),
            (|h| h.kind = Kind::Mutex as u32, true),
            (|h| h.total_len = 8192, false),
            (|h| h.body_len = 5000, false),
            (|h| h.capacity = u64::MAX, false),
        ];
        for (f, is_mismatch) in cases {
            let mut h = good();
            f(&mut h);
            match validate("t", &h, 4096, &l) {
                Err(Error::LayoutMismatch { .. }) if is_mismatch => {}
                Err(Error::Corrupt { .. }) if !is_mismatch => {}
                other => panic!("{h:?}: {other:?}"),
            }
        }
    }

    proptest::proptest! {
        /// Arbitrary header bytes and file lengths: validation returns, never panics, and
        /// accepts only headers whose body fits in the file.
        #[test]
        fn validation_of_arbitrary_headers_never_panics(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, HEADER_SIZE),
            file_len in 0u64..=u64::MAX,
            magic_ok in proptest::bool::ANY,
        ) {
            let mut h: Header = bytemuck::pod_read_unaligned(&bytes);
            if magic_ok {
                h.magic = MAGIC;
                h.version = VERSION;
                h.header_size = HEADER_SIZE as u32;
            }
            for kind in [Kind::Raw, Kind::Value, Kind::Array] {
                let l = Layout { kind, elem_size: 8, elem_align: 8, type_tag: 0, capacity: 0, body_len: |c| c.checked_mul(8) };
                if let Ok(v) = validate("p", &h, file_len, &l) {
                    proptest::prop_assert!(HEADER_SIZE as u64 + v.body_len <= file_len);
                }
            }
        }
    }
}
