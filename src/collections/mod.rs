//! Shared collections of serde values: [`SharedDict<K, V>`] and [`SharedList<T>`], the
//! seeds' `Manager().dict()` and `Manager().list()` without a server process, in place in
//! one segment each.
//!
//! # Files
//! - `slots`: what both share: the segment's head (a robust lock, the length, the
//!   parameters), fixed-size slots of `[state | klen | vlen | hash | checksum | bytes]`,
//!   the checksum, the lock discipline.
//! - `stripes`: the dict's lock stripes (a robust lock, a replacement record and a share
//!   of the capacity per stripe of slots), the order they are taken in.
//! - `layout`: the byte offsets of both (for tests and fuzz targets), and what
//!   `shmkit inspect` reads from a copy of a body.
//! - `dict`: [`SharedDict`], open addressing over the slots.
//! - `list`: [`SharedList`], an index map over the slots.
//!
//! # Contract
//! - **Fixed capacity.** Both are created for a number of entries and a largest encoded
//!   entry (256 bytes unless `create_with` says otherwise). A full collection is
//!   [`Error::Overflow`](crate::Error::Overflow), an entry too large
//!   [`Error::InvalidArgument`](crate::Error::InvalidArgument); neither is ever a silent
//!   drop or a truncation.
//! - **Every operation holds a robust lock**: the list's one, or the locks of the dict's
//!   stripes that the operation works in (all of them for the calls that see the whole
//!   dict), blocking until they are free (or until the handle's `set_timeout`); reads
//!   copy out and decode, writes encode and copy in. No
//!   operation allocates more than its own entry (or, for snapshots, the entries there are);
//!   no system call unless the lock is contended.
//! - **A writer's death never leaves a torn entry visible.** Each change is written where
//!   no reader looks, checksummed, then committed by one store; a writer killed at any step
//!   leaves the operation done or not done (each module says which, step by step). The
//!   next operation that meets a lock it held is
//!   [`Error::OwnerDied`](crate::Error::OwnerDied), and from then on every operation,
//!   until a process calls `recover()`, which repairs and says what it found
//!   ([`Recovery`]).
//! - **Hostile bytes are errors.** Every index, length and state read from shared memory
//!   is checked before it is used, and every entry against its checksum before it is
//!   decoded: a peer that writes garbage gets [`Error::Corrupt`](crate::Error::Corrupt) or
//!   [`Error::Codec`](crate::Error::Codec) out of the calls, never a panic, an access out
//!   of bounds, an unbounded allocation or loop.
//! - **Types are checked on open.** The segment records a fingerprint of the key and value
//!   types and the codec (postcard): another type is
//!   [`Error::LayoutMismatch`](crate::Error::LayoutMismatch). Keys are compared by their
//!   encodings, so a key type must encode equal values alike (every type whose `Eq` is
//!   structural does; a `HashMap` as a key does not).
//!
//! This module uses `object`, `sync` (the robust lock) and `codec`.

/// The accessors a table type (`SharedDict`, `SharedList`) shares, over its field `table`:
/// `segment`, `set_timeout`, `capacity`, `max_entry_bytes`, `len`, `is_empty`. `$what`
/// names the type, `$items` what it holds, `$item` one of them for the size limit.
macro_rules! table_accessors {
    ($what:literal, $items:literal, $item:literal) => {
        #[doc = concat!("The segment the ", $what, " lives in.")]
        pub fn segment(&self) -> &crate::Segment {
            self.table.segment()
        }

        /// Waits at most `timeout` for the lock in every later call on this handle
        /// ([`Error::Timeout`](crate::Error::Timeout) then); `None` (the default) waits as
        /// long as it takes. A holder that dies is detected either way; a timeout bounds a
        /// live holder that never lets go (or a peer that forged the lock word).
        pub fn set_timeout(&mut self, timeout: Option<std::time::Duration>) {
            self.table.set_timeout(timeout);
        }

        #[doc = concat!("The most ", $items, " the ", $what, " holds.")]
        pub fn capacity(&self) -> usize {
            self.table.shape().capacity
        }

        #[doc = concat!("The largest ", $item, ", in bytes: the `max_entry_bytes` it was created with, rounded up to a multiple of 8.")]
        pub fn max_entry_bytes(&self) -> usize {
            self.table.shape().max_entry()
        }

        #[doc = concat!("The number of ", $items, ", as of the last completed operation (read without the lock; after a writer's death, until `recover`, possibly one off).")]
        pub fn len(&self) -> usize {
            self.table.len_hint()
        }

        #[doc = concat!("Whether the ", $what, " is empty (see `len`).")]
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }
    };
}
use table_accessors;

/// Creates a table type at `name` through its `build`, for `capacity` entries of at most
/// `max_entry` bytes (the types' `create_with`).
fn create_with<S>(
    name: &str,
    capacity: usize,
    max_entry: usize,
    build: fn(crate::object::At<'_>, slots::Params) -> crate::Result<S>,
) -> crate::Result<S> {
    let opts = crate::Options::new();
    let at = crate::object::At::named(name, crate::CreationMode::Create, &opts);
    build(
        at,
        slots::Params {
            capacity,
            max_entry,
        },
    )
}

pub(crate) mod dict;
pub mod layout;
mod list;
pub(crate) mod slots;
pub(crate) mod stripes;

pub use dict::SharedDict;
pub use list::SharedList;

/// What `recover()` found and did ([`SharedDict::recover`], [`SharedList::recover`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// Whether a writer had died holding the lock (`false`: there was nothing to repair).
    pub owner_died: bool,
    /// Whether the dead writer's last operation turned out committed (and was finished),
    /// rather than undone.
    pub completed: bool,
    /// Entries dropped because they failed their checksum (forged or damaged bytes; a
    /// writer's death alone never leaves one).
    pub dropped: usize,
}

/// For `shmkit inspect`: a dict's or list's length and capacity, from a copy of its body.
pub(crate) fn describe(kind: crate::segment::Kind, body: &[u8]) -> Vec<(String, String)> {
    layout::describe(body, kind == crate::segment::Kind::Dict)
}
