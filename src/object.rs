//! The one object model: how every shared object is built on a segment.
//!
//! A shared object is one segment whose body is a fixed-size *head* `H` (a `#[repr(C)]`
//! struct of atomics: a lock word, a semaphore count, a channel's positions) followed by
//! `len` elements of `T` (the data, `Pod`), aligned for `T`:
//!
//! ```text
//! | segment header (128 B) | H | pad to align_of::<T>() | T; len |
//! ```
//!
//! [`Body<H, T>`] owns the mechanics every object shares: the layout recorded in the
//! segment header (kind, element size and alignment, a fingerprint of the element type, the
//! length), creation (named and exclusive, named open-or-create, or anonymous), validation
//! on open, and the pointers, computed once after validation. A concrete object supplies
//! only its [`Kind`], its head's start ([`Head`]: written into the zero-filled body field by
//! field, never by value, so no padding byte of the creator's stack reaches shared memory)
//! and its elements' fill, in one private `build(at: At, init)` function, and gets its
//! public constructors (`create`, `open`, `open_or_create`, `anonymous`, `with_options`,
//! `is_creator`) from [`constructors!`] and its `Debug` from [`object_debug!`]. Objects
//! without elements use `T = ()`; objects without a head use `H = ()`.
//!
//! This module may use `segment` only; everything above it (sync, value, array, channel)
//! builds on it.

use std::marker::PhantomData;
use std::ptr::NonNull;

use crate::error::{Error, Result};
use crate::segment::{CreationMode, Kind, Layout, Options, Segment};

/// Where an object is and how to get it: a name and what to do about it (or anonymous),
/// with the options. The constructors make one; `build` functions pass it on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct At<'a> {
    name: Option<&'a str>,
    mode: CreationMode,
    opts: &'a Options,
    /// The fingerprint of what the elements encode, for objects whose elements are bytes
    /// of another type (serde values): used instead of the element type's own.
    tag: Option<u64>,
}

impl<'a> At<'a> {
    /// The named object `name`, created and/or opened as `mode` says.
    pub(crate) fn named(name: &'a str, mode: CreationMode, opts: &'a Options) -> Self {
        At {
            name: Some(name),
            mode,
            opts,
            tag: None,
        }
    }

    /// This place, with the elements fingerprinted as `tag` (what their bytes encode)
    /// rather than as their own type; [`Options::type_name`] still wins.
    #[allow(dead_code)]
    pub(crate) fn tagged(mut self, tag: u64) -> Self {
        self.tag = Some(tag);
        self
    }

    /// The name; `None` for an anonymous object.
    #[cfg(loom)]
    pub(crate) fn name(&self) -> Option<&'a str> {
        self.name
    }

    /// What to do about the name.
    pub(crate) fn mode(&self) -> CreationMode {
        self.mode
    }

    /// Creates the object's segment (named or anonymous, as `self` says) with `layout`;
    /// `init` initialises a new body before anybody else can see it. Checks that an
    /// existing object found by `open_or_create` has the capacity asked for.
    pub(crate) fn segment(
        &self,
        layout: Layout,
        init: impl Fn(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        let seg = match self.name {
            Some(name) => Segment::named(name, self.mode, layout, self.opts, init)?,
            None => Segment::anon(layout, init)?,
        };
        let (cap, asked) = (seg.capacity(), layout.capacity);
        if self.mode == CreationMode::OpenOrCreate && cap != asked {
            return Err(Error::LayoutMismatch {
                name: seg.name().unwrap_or_default().to_owned(),
                what: format!(
                    "it exists with size {cap} (its length, capacity, permits or parties), not \
                     the {asked} asked for (use `open` to take it as it is)"
                ),
            });
        }
        Ok(seg)
    }

    /// The fingerprint of element type `T` for this object: under the name the caller
    /// chose ([`Options::type_name`]), or the type's own; 0 (unchecked) for objects without
    /// elements, whatever the options say.
    pub(crate) fn type_tag<T>(&self) -> u64 {
        match (self.opts.elem_type_name(), self.tag) {
            (Some(name), _) if size_of::<T>() != 0 => tag_of(name),
            (None, Some(tag)) if size_of::<T>() != 0 => tag,
            _ => type_tag::<T>(),
        }
    }

    /// A new anonymous object.
    pub(crate) fn anonymous() -> Self {
        const DEFAULT: Options = Options::new();
        At {
            name: None,
            mode: CreationMode::Create,
            opts: &DEFAULT,
            tag: None,
        }
    }
}

/// Heads whose all-zero bytes are a valid value: std atomics, checked by
/// `bytemuck::Zeroable` (loom's atomics are not plain memory: there every head is written
/// as a value).
#[cfg(not(loom))]
pub(crate) trait ZeroHead: bytemuck::Zeroable {}
#[cfg(not(loom))]
impl<H: bytemuck::Zeroable> ZeroHead for H {}
/// See the non-loom definition.
#[cfg(loom)]
pub(crate) trait ZeroHead {}
#[cfg(loom)]
impl<H> ZeroHead for H {}

/// How a new object's head starts: its initial `value` (written as is only under loom) and
/// `set`, which stores the fields that do not start at zero into a zero-filled head (see
/// [`init_head`]).
pub(crate) struct Head<V, S> {
    value: V,
    set: S,
}

impl<H, V: Fn() -> H> Head<V, fn(&H)> {
    /// A head whose initial state is all zero.
    pub(crate) fn zero(value: V) -> Self {
        Head { value, set: |_| () }
    }
}

impl<H, V: Fn() -> H, S: Fn(&H)> Head<V, S> {
    /// A head some of whose fields start non-zero: `set` stores them.
    pub(crate) fn with(value: V, set: S) -> Self {
        Head { value, set }
    }

    /// Initialises the head at `dst` (see [`init_head`]).
    ///
    /// # Safety
    /// As for [`init_head`].
    pub(crate) unsafe fn init(&self, dst: *mut H)
    where
        H: ZeroHead,
    {
        // SAFETY: the caller's contract.
        unsafe { init_head(dst, &self.value, &self.set) }
    }
}

/// Initialises a new object's head at `dst`, in a zero-filled body nobody else sees yet.
///
/// Heads are `#[repr(C)]` structs of atomics, most of them padded to 128-byte lines. A head
/// written *by value* carries its padding bytes from the creator's stack into shared
/// memory, where every process that may open the segment can read them (measured: an
/// `RwLock`'s segment held some 7 KB of its creator's stack). So outside loom a head is
/// never written whole: the zero-filled body already holds an all-zero head, a valid one
/// (`ZeroHead`), and `set` stores only the fields whose initial value is not zero. Under
/// loom, `value` is written (its atomics must be constructed; nothing is shared there).
///
/// # Safety
/// `dst` is valid for writes of an `H`, aligned, zero-filled, and not yet visible to any
/// other thread or process.
pub(crate) unsafe fn init_head<H: ZeroHead>(
    dst: *mut H,
    value: impl FnOnce() -> H,
    set: impl FnOnce(&H),
) {
    #[cfg(loom)]
    {
        // SAFETY: the caller's contract.
        unsafe { dst.write(value()) };
        let _ = set;
    }
    #[cfg(not(loom))]
    {
        let _ = value;
        // SAFETY: the caller's contract: valid, aligned, zero-filled memory, and all-zero
        // bytes are a valid `H` (`ZeroHead`); nobody else has a reference.
        set(unsafe { &*dst });
    }
}

/// What an object's creator asks for its length (or its parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Len {
    /// Always exactly this many (a `Value` holds one `T`): anything else on open is corrupt.
    Exactly(u64),
    /// This many when created. `open` takes whatever the segment has; `open_or_create`
    /// that finds the object existing requires the same (otherwise `LayoutMismatch`, see
    /// [`At::segment`]).
    Create(u64),
}

impl Len {
    fn get(self) -> u64 {
        match self {
            Len::Exactly(n) | Len::Create(n) => n,
        }
    }
}

/// A segment whose body is an `H` followed by `len` values of `T` (see the module docs).
///
/// `H` must be valid for shared access from other processes (atomics only: peers may
/// write any field at any time); `T` is payload, `Pod`, any bytes valid.
pub(crate) struct Body<H, T> {
    seg: Segment,
    head: NonNull<H>,
    data: NonNull<T>,
    len: usize,
    _t: PhantomData<(H, T)>,
}

// SAFETY: the pointers point into the mapping owned by `seg`, which lives as long as the
// body; `H` is made of atomics (shared by design) and access to the `T`s is governed by
// the object built on top (a lock, a protocol, or `unsafe` views whose contract is the
// caller's), so moving the handle between threads is sound when `T` may move.
unsafe impl<H: Sync, T: Send> Send for Body<H, T> {}
// SAFETY: as above; shared access to the `T`s goes through the object's own protocol.
unsafe impl<H: Sync, T: Send> Sync for Body<H, T> {}

/// Offset of the first `T` in the body: after the head, aligned for `T`.
pub(crate) const fn data_offset<H, T>() -> usize {
    size_of::<H>().next_multiple_of(align_of::<T>())
}

/// A fingerprint of the element type, recorded in the header so that opening an
/// `Array<f64>` as an `Array<u64>` (same size, same alignment) is refused: FNV-1a over the
/// type's name (`std::any::type_name`), 0 (unchecked) for objects without elements. The
/// head's layout is not in it: the object kind and the format version cover that.
/// `type_name`'s output is stable within a build and in practice across builds, but Rust
/// does not promise it across compiler versions; programs built apart that must agree give
/// [`Options::type_name`].
pub(crate) fn type_tag<T>() -> u64 {
    if size_of::<T>() == 0 {
        0
    } else {
        tag_of(std::any::type_name::<T>())
    }
}

/// The fingerprint of an element type named `elem`.
fn tag_of(elem: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in elem.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h | 1 // never 0, which means "unchecked"
}

impl<H: Sync, T: bytemuck::Pod> Body<H, T> {
    /// Creates and/or opens the object's segment. A new body's head is initialised from
    /// `head` (see [`Head`]) and `fill` fills its `len` elements (zeroed before); neither
    /// runs when an existing object is opened.
    pub(crate) fn new(
        at: At<'_>,
        kind: Kind,
        len: Len,
        head: Head<impl Fn() -> H, impl Fn(&H)>,
        fill: impl Fn(&mut [T]),
    ) -> Result<Self>
    where
        H: ZeroHead,
    {
        if align_of::<H>() > 128 || align_of::<T>() > 128 {
            // The body starts 128-aligned (after the 128-byte header of a page-aligned
            // mapping): larger alignments cannot be honoured.
            return Err(Error::InvalidArgument(
                "types aligned to more than 128 bytes are not supported in shared memory".into(),
            ));
        }
        // The element type in the header: `T`'s, or the head's for objects without one.
        let (elem_size, elem_align) = if size_of::<T>() == 0 {
            (size_of::<H>(), align_of::<H>())
        } else {
            (size_of::<T>(), align_of::<T>())
        };
        let layout = Layout {
            kind,
            elem_size: elem_size as u64,
            elem_align: elem_align as u64,
            type_tag: at.type_tag::<T>(),
            capacity: len.get(),
            body_len: body_len::<H, T>,
        };
        let init = |seg: &Segment| {
            let (h, data, n) = Self::pointers(seg)?;
            // SAFETY: the body is mapped, 128-aligned and `body_len(len)` bytes long (the
            // layout says so) and zero-filled: room for the head at 0 and `n` elements at
            // `data_offset`, each aligned (alignments ≤ 128, checked above). Nobody else
            // sees the segment before it is published, so these are the only references.
            unsafe {
                head.init(h.as_ptr());
                fill(std::slice::from_raw_parts_mut(data.as_ptr(), n));
            }
            Ok(())
        };
        let seg = at.segment(layout, init)?;
        if let Len::Exactly(n) = len {
            let cap = seg.capacity();
            if cap != n {
                return Err(Error::corrupt(format!(
                    "a {} segment must have capacity {n}, this one has {cap}",
                    kind.as_str()
                )));
            }
        }
        let (head, data, len) = Self::pointers(&seg)?;
        Ok(Body {
            seg,
            head,
            data,
            len,
            _t: PhantomData,
        })
    }

    /// [`Body::new`] for a body of exactly one `T`, `init` (values and locks).
    pub(crate) fn one(
        at: At<'_>,
        kind: Kind,
        head: Head<impl Fn() -> H, impl Fn(&H)>,
        init: T,
    ) -> Result<Self>
    where
        H: ZeroHead,
    {
        Self::new(at, kind, Len::Exactly(1), head, |d| d[0] = init)
    }

    /// The head, the first element and the length of a validated (or fresh) body.
    fn pointers(seg: &Segment) -> Result<(NonNull<H>, NonNull<T>, usize)> {
        let len = usize::try_from(seg.capacity())
            .map_err(|_| Error::corrupt("capacity does not fit in memory"))?;
        let base = seg.as_ptr();
        // `wrapping_add`: only an address; the body is at least `body_len(len)` bytes long
        // (validated on open against the header), so it is in bounds whenever used.
        let data = base.wrapping_add(data_offset::<H, T>()) as *mut T;
        let null = || Error::corrupt("null mapping");
        Ok((
            NonNull::new(base as *mut H).ok_or_else(null)?,
            NonNull::new(data).ok_or_else(null)?,
            len,
        ))
    }
}

impl<H, T> Body<H, T> {
    /// The head, in place.
    #[inline]
    pub(crate) fn head(&self) -> &H {
        // SAFETY: points into the live mapping, initialised by the creator; `H` is made of
        // atomics, so shared references are sound whatever peers do.
        unsafe { self.head.as_ref() }
    }

    /// The first element (valid for `len` elements).
    #[inline]
    pub(crate) fn ptr(&self) -> *mut T {
        self.data.as_ptr()
    }

    /// The number of elements (or the object's parameter, for objects without elements),
    /// as validated on open: a process-local copy that peers cannot change.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The segment.
    #[inline]
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }
}

/// The storage of objects whose body is only a head (semaphores, events, barriers, ...):
/// their parameter (permits, parties) is the length.
pub(crate) type Shared<H> = Body<H, ()>;

/// Body length of `cap` elements after the head; `None` if it overflows.
fn body_len<H, T>(cap: u64) -> Option<u64> {
    (size_of::<T>() as u64)
        .checked_mul(cap)?
        .checked_add(data_offset::<H, T>() as u64)
}

/// The public constructors of a shared object, from its private
/// `fn build(at: At<'_>, init) -> Result<Self>`, and `is_creator` from its `segment()`.
///
/// - `constructors!("value", init: T, open: T::zeroed())`: `create(name, init)`,
///   `open(name)` (which passes the `open` expression, never used to open), and so on;
///   `init` is converted with `Into` for `build`.
/// - `constructors!("event")`: objects without an initial argument (`build` takes `()`).
macro_rules! constructors {
    ($what:literal, $init:ident: $ty:ty, open: $open:expr) => {
        $crate::object::constructors!(@named $what, $init: $ty, open: $open, "");

        #[doc = concat!("Creates an anonymous ", $what, " from `", stringify!($init), "`: it has no name, and a child created with `fork` shares it.")]
        pub fn anonymous($init: $ty) -> $crate::Result<Self> {
            Self::build($crate::object::At::anonymous(), $init.into())
        }
    };
    // Named objects only (channel endpoints); `$note` is appended to each doc.
    (@named $what:literal, $init:ident: $ty:ty, open: $open:expr, $note:expr) => {
        #[doc = concat!("Creates the ", $what, " `name` from `", stringify!($init), "`; fails with [`Error::AlreadyExists`](crate::Error::AlreadyExists) if the name exists.", $note)]
        pub fn create(name: &str, $init: $ty) -> $crate::Result<Self> {
            Self::with_options(name, $crate::CreationMode::Create, $init, &$crate::Options::new())
        }

        #[doc = concat!("Opens the existing ", $what, " `name`, checking its kind and element type; [`Error::NotFound`](crate::Error::NotFound) if there is none.", $note)]
        pub fn open(name: &str) -> $crate::Result<Self> {
            let opts = $crate::Options::new();
            Self::build($crate::object::At::named(name, $crate::CreationMode::Open, &opts), $open)
        }

        #[doc = concat!("Opens the ", $what, " `name`, or creates it from `", stringify!($init), "`. Of racing processes exactly one creates it (`is_creator()` tells which); an existing one whose size differs from the one asked for is [`Error::LayoutMismatch`](crate::Error::LayoutMismatch).", $note)]
        pub fn open_or_create(name: &str, $init: $ty) -> $crate::Result<Self> {
            Self::with_options(name, $crate::CreationMode::OpenOrCreate, $init, &$crate::Options::new())
        }

        #[doc = concat!("Creates and/or opens the ", $what, " `name` as `mode` says, with `opts` (mode bits, keep, trust); `", stringify!($init), "` is used only if it is created.", $note)]
        pub fn with_options(
            name: &str,
            mode: $crate::CreationMode,
            $init: $ty,
            opts: &$crate::Options,
        ) -> $crate::Result<Self> {
            Self::build($crate::object::At::named(name, mode, opts), $init.into())
        }

        $crate::object::constructors!(@creator $what);
    };
    ($what:literal) => {
        #[doc = concat!("Creates the ", $what, " `name`; fails with [`Error::AlreadyExists`](crate::Error::AlreadyExists) if the name exists.")]
        pub fn create(name: &str) -> $crate::Result<Self> {
            Self::with_options(name, $crate::CreationMode::Create, &$crate::Options::new())
        }

        #[doc = concat!("Opens the existing ", $what, " `name`, checking its kind; [`Error::NotFound`](crate::Error::NotFound) if there is none.")]
        pub fn open(name: &str) -> $crate::Result<Self> {
            Self::with_options(name, $crate::CreationMode::Open, &$crate::Options::new())
        }

        #[doc = concat!("Opens the ", $what, " `name`, or creates it. Of racing processes exactly one creates it (`is_creator()` tells which).")]
        pub fn open_or_create(name: &str) -> $crate::Result<Self> {
            Self::with_options(name, $crate::CreationMode::OpenOrCreate, &$crate::Options::new())
        }

        #[doc = concat!("Creates an anonymous ", $what, ": it has no name, and a child created with `fork` shares it.")]
        pub fn anonymous() -> $crate::Result<Self> {
            Self::build($crate::object::At::anonymous(), ())
        }

        #[doc = concat!("Creates and/or opens the ", $what, " `name` as `mode` says, with `opts` (mode bits, keep, trust).")]
        pub fn with_options(
            name: &str,
            mode: $crate::CreationMode,
            opts: &$crate::Options,
        ) -> $crate::Result<Self> {
            Self::build($crate::object::At::named(name, mode, opts), ())
        }

        $crate::object::constructors!(@creator $what);
    };
    // `create_zeroed(name, len)` and `anonymous_zeroed(len)`, for arrays: `build` gets
    // `$zero(len)`.
    (@zeroed $what:literal, $zero:path) => {
        #[doc = concat!("Creates the ", $what, " `name` of `len` zeroed elements; fails with [`Error::AlreadyExists`](crate::Error::AlreadyExists) if the name exists.")]
        pub fn create_zeroed(name: &str, len: usize) -> $crate::Result<Self> {
            let opts = $crate::Options::new();
            Self::build($crate::object::At::named(name, $crate::CreationMode::Create, &opts), $zero(len))
        }

        #[doc = concat!("Creates an anonymous ", $what, " of `len` zeroed elements: it has no name, and a child created with `fork` shares it.")]
        pub fn anonymous_zeroed(len: usize) -> $crate::Result<Self> {
            Self::build($crate::object::At::anonymous(), $zero(len))
        }
    };
    (@creator $what:literal) => {
        #[doc = concat!("Whether this handle created the ", $what, " (rather than opening an existing one).")]
        pub fn is_creator(&self) -> bool {
            self.segment().is_creator()
        }
    };
}
pub(crate) use constructors;

/// Everything an object made of a head alone, with no parameter, needs inside its `impl`,
/// for a tuple struct over its storage: `pub struct Event(Shared<EventState>);`.
///
/// `head_object!("event", Kind::Event, EventState, len: 0)` gives `constructors!("event")`,
/// the `build` behind them (a head starting all zero, from `EventState::new`; the segment's
/// length always `len`), `state()` (the head, in place) and `segment()`.
macro_rules! head_object {
    ($what:literal, $kind:expr, $head:ty, len: $len:literal) => {
        $crate::object::constructors!($what);

        fn build(at: $crate::object::At<'_>, (): ()) -> $crate::Result<Self> {
            let head = $crate::object::Head::zero(<$head>::new);
            let len = $crate::object::Len::Exactly($len);
            $crate::object::Shared::new(at, $kind, len, head, |_| ()).map(Self)
        }

        /// The shared state, in place.
        #[inline]
        pub(crate) fn state(&self) -> &$head {
            self.0.head()
        }

        #[doc = concat!("The segment the ", $what, " lives in.")]
        pub fn segment(&self) -> &$crate::Segment {
            self.0.segment()
        }
    };
}
pub(crate) use head_object;

/// `Debug` for a shared object: its type's name, its segment, and the values of the
/// listed methods (`object_debug!(Array<T>, len)`).
macro_rules! object_debug {
    ($ty:ident $(<$t:ident>)? $(, $field:ident)* $(,)?) => {
        impl$(<$t: bytemuck::Pod>)? std::fmt::Debug for $ty$(<$t>)? {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("segment", self.segment())
                    $(.field(stringify!($field), &self.$field()))*
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use object_debug;

/// For the heads' unit tests: a zero-filled head after `set` must be the head `new` builds
/// (loom's models start from `new`, production from zeroed memory and `set`; see
/// [`init_head`]). Compared through `Debug`, which shows every field and no padding.
#[cfg(all(test, not(loom)))]
pub(crate) fn assert_zero_start<H: ZeroHead + std::fmt::Debug>(new: H, set: impl Fn(&H)) {
    let zeroed: H = bytemuck::Zeroable::zeroed();
    set(&zeroed);
    assert_eq!(format!("{zeroed:?}"), format!("{new:?}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_follows_the_head_aligned() {
        assert_eq!(data_offset::<(), u64>(), 0);
        assert_eq!(data_offset::<u32, u8>(), 4);
        assert_eq!(data_offset::<[u32; 2], u64>(), 8);
        assert_eq!(data_offset::<[u32; 3], u64>(), 16);
        assert_eq!(data_offset::<[u32; 3], ()>(), 12);
    }

    #[test]
    fn type_tags_tell_same_sized_types_apart() {
        assert_ne!(type_tag::<u64>(), type_tag::<f64>());
        assert_ne!(type_tag::<[u32; 2]>(), type_tag::<u64>());
        assert_eq!(type_tag::<u64>(), type_tag::<u64>());
        assert_ne!(type_tag::<u64>(), 0);
        assert_eq!(type_tag::<()>(), 0); // objects without elements: unchecked
    }
}
