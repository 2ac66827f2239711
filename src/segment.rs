//! Shared-memory segments: one mapped region with a validated header.
//!
//! A [`Segment`] is the unit every shmkit object lives in. Its first 128 bytes are a
//! [`Header`] written once by the creator; the body follows at offset 128.
//!
//! # Creating without races
//! A named segment is never visible half-made. The creator builds it under a private
//! temporary name (`O_CREAT | O_EXCL`, then `fchmod` to the requested mode whatever the
//! umask, `ftruncate`, map, write the header, initialise the body, store the *ready* state
//! with `Release`) and then publishes it under its real name with
//! `renameat2(RENAME_NOREPLACE)`, which succeeds for exactly one process. So:
//! - `create` is exclusive: if the name exists, it fails with [`Error::AlreadyExists`];
//! - `open_or_create` is race-free: of any number of racing processes exactly one
//!   initialises, and every other one opens the winner's segment;
//! - an opener never waits for a creator, and a creator that dies mid-initialisation
//!   leaves only its temporary file (named `shmkit~NAME~…`), never a half-initialised
//!   segment under the real name; [`clean`] removes such files once nobody holds them.
//!
//! # Opening with checks
//! `open` checks, before it reads anything past the fixed header prefix: the owner (our
//! effective uid), the mode (not writable by group or others), the size (`fstat`), the
//! magic, the format version and the header size. Then every other header field against
//! what the caller expects and against the real size. A segment that is not ours is
//! [`Error::PermissionDenied`] (unless [`Options::trust_shared`] allows it), a valid
//! segment of another kind or type is [`Error::LayoutMismatch`], anything inconsistent is
//! [`Error::Corrupt`].
//!
//! # Liveness
//! Locks and channels need to know whether a peer process is still alive, and pids are
//! reused, so a pid alone never decides. Each process that needs it registers in a
//! segment: it takes a *token* (a small integer from a counter in the header) and holds an
//! OFD write lock on byte `LIVENESS_BASE + token` of the segment's file, through an open
//! file description of its own. The kernel drops that lock when the process dies. A peer
//! that finds a token in a lock word asks the kernel (`F_OFD_GETLK`) whether the byte is
//! still locked. After `fork`, the child drops the parent's liveness descriptors (an
//! `atfork` handler closes them) and registers anew on first use.
//!
//! # Clean-up
//! Dropping the creator's handle unlinks the name (unless [`Options::keep`] asked
//! otherwise, or the name now refers to another segment); every mapping stays valid for
//! whoever still has it open. [`list`] shows this crate's segments and [`unlink`] removes
//! one by name. Every open handle of a named segment holds a shared OFD lock on one byte
//! of its file for as long as it is open, so the kernel knows whether any live process
//! holds a segment: [`clean`] removes exactly the segments (and creators' temporary files)
//! that nobody holds, taking that byte exclusively first, so that it never races an
//! opener.

use crate::failpoint::failpoint;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::os;

/// The magic number at the start of every segment: `b"SHMKIT\0\x01"` in little endian.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"SHMKIT\0\x01");
/// The format version. A segment of another version is refused.
pub(crate) const VERSION: u32 = 1;
/// Size of the header, and offset of the body.
pub const HEADER_SIZE: usize = 128;
/// The largest segment we create or accept (the liveness bytes live above it).
const MAX_TOTAL_LEN: u64 = 1 << 40;
/// Offset of the first liveness byte in a segment's file: far past any body.
const LIVENESS_BASE: u64 = 1 << 41;
/// The byte every handle of a named segment holds a shared OFD lock on, through its own
/// open file description, for as long as it is open: "held by a live process" for
/// [`list`] and [`clean`], decided by the kernel. A cleaner takes a write lock on it, so
/// that it never removes a segment somebody holds, and nobody opens one being removed.
const HOLDER_BYTE: u64 = LIVENESS_BASE - 1;
/// Liveness tokens are in `1..=MAX_TOKEN`; they fit in 31 bits so that lock words can
/// keep a flag bit beside them.
pub(crate) const MAX_TOKEN: u32 = (1 << 31) - 1;

/// The OS-level prefix of every named segment of this crate.
const PREFIX: &str = "shmkit.";
/// The OS-level prefix of temporary files of creators that have not published yet.
const TMP_PREFIX: &str = "shmkit~";
/// The longest user name.
pub const MAX_NAME_LEN: usize = 200;

const STATE_READY: u32 = 2;

/// The kind of object a segment holds, stored in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u32)]
pub enum Kind {
    /// Plain bytes ([`Segment::create`]).
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
}

impl Kind {
    fn from_u32(v: u32) -> Option<Kind> {
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
const STATE_OFFSET: usize = std::mem::offset_of!(Header, state);
const NEXT_TOKEN_OFFSET: usize = std::mem::offset_of!(Header, next_token);

/// How a constructor treats an existing name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreationMode {
    /// Create the object; fail with [`Error::AlreadyExists`] if the name is taken.
    Create,
    /// Open the existing object; fail with [`Error::NotFound`] if there is none.
    Open,
    /// Open the object if it exists, otherwise create it. Exactly one of any number of
    /// racing processes creates it.
    OpenOrCreate,
}

/// Options for creating and opening named segments.
///
/// ```
/// let opts = shmkit::Options::new().mode(0o640).keep(true);
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Options {
    mode: u32,
    keep: bool,
    trust_shared: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

impl Options {
    /// The defaults: mode `0o600`, unlinked when the creator's handle drops, and only
    /// segments owned by this user and not writable by group or others are opened.
    pub const fn new() -> Self {
        Options {
            mode: 0o600,
            keep: false,
            trust_shared: false,
        }
    }

    /// The permission bits a created segment gets, exactly (set with `fchmod`, so the umask
    /// does not change them). Only the lower nine bits are used, and the owner always keeps
    /// read and write permission (liveness locks reopen the file).
    pub const fn mode(mut self, mode: u32) -> Self {
        self.mode = (mode & 0o777) | 0o600;
        self
    }

    /// Whether the creator's handle leaves the name in place when it drops (default: it
    /// unlinks it).
    pub const fn keep(mut self, keep: bool) -> Self {
        self.keep = keep;
        self
    }

    /// Whether `open` accepts a segment owned by another user or writable by group or
    /// others. Such a segment can be changed by whoever else may write it; shmkit still
    /// validates everything it reads, but the data itself is theirs to change.
    pub const fn trust_shared(mut self, trust: bool) -> Self {
        self.trust_shared = trust;
        self
    }
}

/// What an object expects of the segment it opens: the header fields it checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub kind: Kind,
    pub elem_size: u64,
    pub elem_align: u64,
    /// Capacity to create with (ignored by `open`, which reads it from the header).
    pub capacity: u64,
    /// Body length for a given capacity; `None` if the capacity is impossible.
    pub body_len: fn(u64) -> Option<u64>,
}

/// Validates a user-facing name and returns the OS path of the segment.
fn os_path(name: &str) -> Result<String> {
    let bad = |reason| Error::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("a name must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(bad("a name must be at most 200 bytes long"));
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(bad("a name must start with an ASCII letter or digit"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(bad(
            "a name may contain only ASCII letters, digits, '.', '_' and '-'",
        ));
    }
    Ok(format!("{}/{PREFIX}{name}", os::SHM_DIR))
}

fn page_size() -> u64 {
    4096
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u64::MAX as u128) as u64)
}

/// One mapped shared-memory region with a validated header.
///
/// Most users never touch a `Segment` directly: the typed objects ([`crate::Mutex`],
/// [`crate::Value`], [`crate::Array`], ...) each own one. A raw segment is a plain byte
/// region for protocols of your own:
///
/// ```
/// use shmkit::{Options, Segment};
/// # let name = format!("doc-seg-{}", std::process::id());
/// let seg = Segment::create(&name, 4096, &Options::new())?;
/// let other = Segment::open(&name, &Options::new())?;
/// assert_eq!(other.len(), 4096);
/// // SAFETY: the body is 4096 bytes long and nobody else writes it concurrently.
/// unsafe { seg.as_ptr().write(42) };
/// // SAFETY: as above.
/// assert_eq!(unsafe { other.as_ptr().read() }, 42);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Segment {
    map: MmapRaw,
    fd: OwnedFd,
    name: Option<String>,
    path: Option<String>,
    /// pid of the process that created this handle as creator; only that process unlinks.
    creator_local_pid: Option<u32>,
    keep: AtomicBool,
    header: Header,
    liveness: Liveness,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("name", &self.name)
            .field("kind", &Kind::from_u32(self.header.kind))
            .field("len", &self.len())
            .field("creator_pid", &self.header.creator_pid)
            .finish()
    }
}

// SAFETY: the mapping is shared memory reached only through raw pointers and atomics; the
// handle's own fields are immutable or atomic.
unsafe impl Send for Segment {}
// SAFETY: as above; no method hands out unsynchronised references to process-local state.
unsafe impl Sync for Segment {}

impl Segment {
    /// Creates a raw named segment of `len` bytes (zeroed), exclusively.
    pub fn create(name: &str, len: usize, opts: &Options) -> Result<Segment> {
        Self::named(name, CreationMode::Create, raw_layout(len)?, opts, |_| {
            Ok(())
        })
    }

    /// Opens an existing raw named segment, of whatever length it has.
    pub fn open(name: &str, opts: &Options) -> Result<Segment> {
        Self::named(name, CreationMode::Open, raw_layout(0)?, opts, |_| Ok(()))
    }

    /// Opens the raw segment `name`, or creates it with `len` zeroed bytes.
    pub fn open_or_create(name: &str, len: usize, opts: &Options) -> Result<Segment> {
        Self::named(
            name,
            CreationMode::OpenOrCreate,
            raw_layout(len)?,
            opts,
            |_| Ok(()),
        )
    }

    /// Creates an anonymous segment of `len` zeroed bytes: it has no name, and a child
    /// created with `fork` inherits the mapping. It is sealed against shrinking, so nobody
    /// can truncate it under a process that maps it.
    pub fn anonymous(len: usize) -> Result<Segment> {
        Self::anon(raw_layout(len)?, |_| Ok(()))
    }

    /// Pointer to the first byte of the body.
    ///
    /// The memory is shared with other processes: access it through atomics, or only
    /// while your own protocol guarantees that no other process writes it.
    pub fn as_ptr(&self) -> *mut u8 {
        // SAFETY: the mapping is at least HEADER_SIZE + body_len bytes long (validated).
        unsafe { self.map.as_mut_ptr().add(HEADER_SIZE) }
    }

    /// Length of the body in bytes.
    pub fn len(&self) -> usize {
        self.header.body_len as usize
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The user-facing name; `None` for an anonymous segment.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The kind of object this segment holds.
    pub fn kind(&self) -> Kind {
        // Validated on open/create.
        Kind::from_u32(self.header.kind).unwrap_or(Kind::Raw)
    }

    /// Whether this handle created the segment (rather than opening an existing one).
    pub fn is_creator(&self) -> bool {
        self.creator_local_pid.is_some()
    }

    /// The pid of the process that created the segment (for display only).
    pub fn creator_pid(&self) -> u32 {
        self.header.creator_pid
    }

    /// Keeps the name in place when this (creator's) handle drops, or not.
    pub fn set_keep(&self, keep: bool) {
        // Relaxed: a process-local flag read only by `drop`, which runs after every other use.
        self.keep.store(keep, Ordering::Relaxed);
    }

    /// The capacity recorded in the header (validated against the body length on open).
    pub(crate) fn capacity(&self) -> u64 {
        self.header.capacity
    }

    /// The init-state word in the header.
    fn state_word(&self) -> &AtomicU32 {
        // SAFETY: the header is mapped, 8-aligned, and `state` is a u32 at a 4-aligned
        // offset; it is only ever accessed atomically once the segment is shared.
        unsafe { &*(self.map.as_mut_ptr().add(STATE_OFFSET) as *const AtomicU32) }
    }

    /// The liveness-token counter in the header.
    fn token_counter(&self) -> &AtomicU32 {
        // SAFETY: as for `state_word`.
        unsafe { &*(self.map.as_mut_ptr().add(NEXT_TOKEN_OFFSET) as *const AtomicU32) }
    }

    /// Creates, opens, or opens-or-creates a named segment of the given layout. `init`
    /// initialises the body of a newly created segment before anybody else can see it.
    pub(crate) fn named(
        name: &str,
        mode: CreationMode,
        layout: Layout,
        opts: &Options,
        init: impl Fn(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        let path = os_path(name)?;
        match mode {
            CreationMode::Open => Self::open_path(name, &path, layout, opts),
            CreationMode::Create => Self::create_path(name, &path, layout, opts, &init),
            CreationMode::OpenOrCreate => {
                // Opening fails only if nobody published yet; creating fails only if
                // somebody published first. A name that keeps appearing and vanishing
                // (another process creating and unlinking in a loop) ends the retries.
                for _ in 0..64 {
                    match Self::open_path(name, &path, layout, opts) {
                        Err(Error::NotFound { .. }) => {}
                        other => return other,
                    }
                    match Self::create_path(name, &path, layout, opts, &init) {
                        Err(Error::AlreadyExists { .. }) => std::thread::yield_now(),
                        other => return other,
                    }
                }
                Err(Error::Timeout)
            }
        }
    }

    fn create_path(
        name: &str,
        path: &str,
        layout: Layout,
        opts: &Options,
        init: &dyn Fn(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // The temporary name is private by being unpredictable enough; if somebody squats
        // on it anyway, take another instead of failing the caller's `create`.
        let mut attempt = 0;
        let (tmp, fd) = loop {
            // Relaxed: only uniqueness matters.
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            // `shmkit~NAME~PID.N.NS` in hex: within NAME_MAX (255) for the longest name.
            let tmp = format!(
                "{}/{TMP_PREFIX}{name}~{:x}.{:x}.{:x}",
                os::SHM_DIR,
                os::getpid(),
                n,
                now_ns() as u32
            );
            match os::create_excl(&tmp) {
                Ok(fd) => {
                    match hold(&fd, &tmp) {
                        Ok(true) => break (tmp, fd),
                        Ok(false) => {}
                        Err(e) => {
                            let _ = os::unlink(&tmp);
                            return Err(e);
                        }
                    }
                    // A cleaner removed the new file before we held it: take another.
                    if attempt >= 8 {
                        return Err(Error::io(
                            "create",
                            std::io::Error::other("temporary files keep being removed under us"),
                        ));
                    }
                    attempt += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                    attempt += 1;
                }
                Err(e) => return Err(map_io_err(name, "create", e)),
            }
        };
        let built = (|| {
            os::fchmod(&fd, opts.mode).map_err(|e| Error::io("fchmod", e))?;
            let mut seg = Self::build(fd, layout)?;
            seg.name = Some(name.to_owned());
            seg.path = Some(path.to_owned());
            seg.keep = AtomicBool::new(opts.keep);
            init(&seg)?;
            seg.publish_ready();
            Ok(seg)
        })();
        let seg = match built {
            Ok(seg) => seg,
            Err(e) => {
                let _ = os::unlink(&tmp);
                return Err(e);
            }
        };
        failpoint!("segment.before_publish");
        match os::rename_noreplace(&tmp, path) {
            Ok(()) => Ok(seg),
            Err(e) => {
                let _ = os::unlink(&tmp);
                // Dropping `seg` must not unlink the real name, which is not ours.
                let mut seg = seg;
                seg.creator_local_pid = None;
                drop(seg);
                Err(map_io_err(name, "publish (renameat2)", e))
            }
        }
    }

    /// Creates an anonymous (memfd) segment.
    pub(crate) fn anon(
        layout: Layout,
        init: impl FnOnce(&Segment) -> Result<()>,
    ) -> Result<Segment> {
        let fd = os::memfd_create(c"shmkit.anon").map_err(|e| Error::io("memfd_create", e))?;
        let seg = Self::build_with(fd, layout, true)?;
        init(&seg)?;
        seg.publish_ready();
        Ok(seg)
    }

    fn build(fd: OwnedFd, layout: Layout) -> Result<Segment> {
        Self::build_with(fd, layout, false)
    }

    /// Sizes, maps and writes the header of a fresh file. The state stays 0 until
    /// [`Self::publish_ready`].
    fn build_with(fd: OwnedFd, layout: Layout, seal: bool) -> Result<Segment> {
        let body_len = (layout.body_len)(layout.capacity).ok_or_else(|| {
            Error::InvalidArgument(format!("capacity {} is too large", layout.capacity))
        })?;
        let total = (HEADER_SIZE as u64)
            .checked_add(body_len)
            .and_then(|t| t.checked_next_multiple_of(page_size()))
            .filter(|&t| t <= MAX_TOTAL_LEN)
            .ok_or_else(|| {
                Error::InvalidArgument(format!("a body of {body_len} bytes is too large"))
            })?;
        os::ftruncate(&fd, total).map_err(|e| Error::io("ftruncate", e))?;
        if seal {
            os::seal_size(&fd).map_err(|e| Error::io("fcntl(F_ADD_SEALS)", e))?;
        }
        let map = MmapOptions::new()
            .len(total as usize)
            .map_raw(fd.as_raw_fd())
            .map_err(|e| Error::io("mmap", e))?;
        let header = Header {
            magic: MAGIC,
            version: VERSION,
            header_size: HEADER_SIZE as u32,
            kind: layout.kind as u32,
            state: 0,
            elem_size: layout.elem_size,
            elem_align: layout.elem_align,
            capacity: layout.capacity,
            body_len,
            total_len: total,
            type_tag: 0,
            creator_pid: os::getpid(),
            next_token: 1,
            created_ns: now_ns(),
            reserved: [0; 5],
        };
        // SAFETY: the mapping is at least HEADER_SIZE bytes, page-aligned, and nobody else
        // can see this file yet (it has a private temporary name, or none).
        unsafe { (map.as_mut_ptr() as *mut Header).write(header) };
        Ok(Segment {
            map,
            fd,
            name: None,
            path: None,
            creator_local_pid: Some(os::getpid()),
            keep: AtomicBool::new(false),
            header,
            liveness: Liveness::new(),
        })
    }

    fn publish_ready(&self) {
        // Release: publishes the header and the initialised body to the Acquire load in
        // `validate` of any process that opens the segment.
        self.state_word().store(STATE_READY, Ordering::Release);
    }

    fn open_path(name: &str, path: &str, layout: Layout, opts: &Options) -> Result<Segment> {
        let fd = os::open_rw(path).map_err(|e| map_io_err(name, "open", e))?;
        if !hold(&fd, path)? {
            // A cleaner is removing it (or removed it after we opened it): it is gone.
            return Err(Error::NotFound {
                name: name.to_owned(),
            });
        }
        let st = os::fstat(fd.as_raw_fd()).map_err(|e| Error::io("fstat", e))?;
        if !opts.trust_shared {
            if st.uid != os::geteuid() {
                return Err(Error::PermissionDenied {
                    name: name.to_owned(),
                    reason: format!(
                        "it is owned by uid {}, not by us (uid {}); pass Options::trust_shared(true) to accept it",
                        st.uid,
                        os::geteuid()
                    ),
                });
            }
            if st.mode & 0o022 != 0 {
                return Err(Error::PermissionDenied {
                    name: name.to_owned(),
                    reason: format!(
                        "its mode {:o} lets group or others write it; pass Options::trust_shared(true) to accept it",
                        st.mode
                    ),
                });
            }
        }
        let corrupt = |what: String| Error::corrupt(format!("segment `{name}`: {what}"));
        if !st.is_file {
            return Err(Error::PermissionDenied {
                name: name.to_owned(),
                reason: "it is not a regular file".into(),
            });
        }
        if st.size < HEADER_SIZE as u64 {
            return Err(corrupt(format!(
                "file is {} bytes long, shorter than the {HEADER_SIZE}-byte header",
                st.size
            )));
        }
        if st.size > MAX_TOTAL_LEN {
            return Err(corrupt(format!(
                "file is {} bytes long, more than we map",
                st.size
            )));
        }
        let map = MmapOptions::new()
            .len(st.size as usize)
            .map_raw(fd.as_raw_fd())
            .map_err(|e| Error::io("mmap", e))?;
        // The fixed prefix (magic, version, header size) before anything else: a segment
        // of another format version may lay out the rest differently.
        // SAFETY: the mapping is at least HEADER_SIZE bytes and page-aligned, so the first
        // 16 bytes are in bounds and aligned; volatile, as a peer may write them; plain
        // integers, so any bytes are valid.
        let (magic, version, header_size) = unsafe {
            let base = map.as_mut_ptr();
            (
                std::ptr::read_volatile(base as *const u64),
                std::ptr::read_volatile(base.add(8) as *const u32),
                std::ptr::read_volatile(base.add(12) as *const u32),
            )
        };
        check_prefix(name, magic, version, header_size)?;
        // SAFETY: as above, the state word is in bounds and 4-aligned.
        let state = unsafe { &*(map.as_mut_ptr().add(STATE_OFFSET) as *const AtomicU32) };
        // Acquire: pairs with the Release store in `publish_ready`: the header and the body
        // the creator initialised are visible from here on.
        if state.load(Ordering::Acquire) != STATE_READY {
            return Err(corrupt("init state is not `ready`".into()));
        }
        // SAFETY: as above; a volatile copy because a peer may write the header
        // concurrently (only `next_token` legitimately changes). `Header` is Pod.
        let header = unsafe { std::ptr::read_volatile(map.as_mut_ptr() as *const Header) };
        let mut seg = Segment {
            map,
            fd,
            name: Some(name.to_owned()),
            path: Some(path.to_owned()),
            creator_local_pid: None,
            keep: AtomicBool::new(true),
            header,
            liveness: Liveness::new(),
        };
        seg.header = validate(name, &header, st.size, &layout)?;
        Ok(seg)
    }

    /// This process's liveness token in this segment, registering it on first use (and
    /// again in a forked child). The fast path is two relaxed loads and a compare.
    #[inline]
    pub(crate) fn token(&self) -> Result<u32> {
        // Under loom each thread is a modelled process with its own token.
        #[cfg(loom)]
        if cfg!(loom) {
            return Ok(crate::primitive::process::token());
        }
        // Relaxed: the registration word is process-local and written only by this process;
        // a stale read sends us to the slow path, which re-checks under a CAS.
        let reg = self.liveness.reg.load(Ordering::Relaxed);
        if reg != 0 && (reg >> 32) as u32 == fork_generation() {
            return Ok(reg as u32);
        }
        self.register_slow()
    }

    #[cold]
    fn register_slow(&self) -> Result<u32> {
        install_fork_handlers();
        let gen = fork_generation();
        // A fork by another thread between our `reopen` and `track_fd` would give the
        // child an untracked copy of the descriptor, which would keep our liveness lock
        // alive after our death. The prepare handler counts forks: if one happened in that
        // window, drop this descriptor (it holds no lock yet) and open another.
        let (slot, raw) = loop {
            // SeqCst: ordered against the prepare handler's increment in another thread.
            let forks = FORKS_STARTED.load(Ordering::SeqCst);
            let fd = os::reopen(self.fd.as_raw_fd()).map_err(|e| Error::io("reopen segment", e))?;
            let raw = std::os::fd::IntoRawFd::into_raw_fd(fd); // owned by the table from here
            let slot = track_fd(raw)?;
            if FORKS_STARTED.load(Ordering::SeqCst) == forks {
                break (slot, raw);
            }
            untrack_fd(slot, None);
        };
        let counter = self.token_counter();
        let mut token = 0;
        for _ in 0..256 {
            // Relaxed: the counter only spreads tokens; uniqueness among live processes is
            // decided by the kernel lock below, not by this value (which a peer could forge).
            let t = counter.fetch_add(1, Ordering::Relaxed) & MAX_TOKEN;
            if t == 0 {
                continue;
            }
            match os::ofd_try_lock(raw, LIVENESS_BASE + u64::from(t)) {
                Ok(true) => {
                    token = t;
                    break;
                }
                Ok(false) => continue, // a live process holds this token
                Err(e) => {
                    untrack_fd(slot, None);
                    return Err(Error::io("fcntl(F_OFD_SETLK)", e));
                }
            }
        }
        if token == 0 {
            untrack_fd(slot, None);
            return Err(Error::corrupt(
                "no free liveness token after 256 tries: the token counter is being tampered with",
            ));
        }
        let new = (u64::from(gen) << 32) | u64::from(token);
        let old = self.liveness.reg.load(Ordering::Relaxed);
        if (old >> 32) as u32 == gen && old != 0 {
            // Another thread of this process registered first: use its token.
            untrack_fd(slot, Some(token));
            return Ok(old as u32);
        }
        // Relaxed on both sides: process-local bookkeeping; the lock is already held.
        match self
            .liveness
            .reg
            .compare_exchange(old, new, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => {
                // The previous generation's slot (if any) was closed by the fork handler.
                self.liveness.slot.store(slot as i32, Ordering::Relaxed);
                Ok(token)
            }
            Err(cur) => {
                untrack_fd(slot, Some(token));
                Ok(cur as u32)
            }
        }
    }

    /// Whether the process that registered `token` in this segment is alive. Our own token
    /// is alive by definition.
    pub(crate) fn is_alive(&self, token: u32) -> Result<bool> {
        if token == 0 || token > MAX_TOKEN {
            return Ok(false);
        }
        #[cfg(loom)]
        if cfg!(loom) {
            return Ok(crate::primitive::process::is_alive(token));
        }
        let reg = self.liveness.reg.load(Ordering::Relaxed);
        if reg != 0 && (reg >> 32) as u32 == fork_generation() && reg as u32 == token {
            return Ok(true);
        }
        // The main descriptor holds no lock on liveness bytes (only on the holder byte),
        // so any lock on that byte belongs to another open file description: a live
        // registered process.
        os::ofd_is_locked(self.fd.as_raw_fd(), LIVENESS_BASE + u64::from(token))
            .map_err(|e| Error::io("fcntl(F_OFD_GETLK)", e))
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Release our liveness lock (close our own descriptor) if it is of this process.
        let reg = self.liveness.reg.load(Ordering::Relaxed);
        if reg != 0 && (reg >> 32) as u32 == fork_generation() {
            let slot = self.liveness.slot.load(Ordering::Relaxed);
            if slot >= 0 {
                untrack_fd(slot as usize, Some(reg as u32));
            }
        }
        let Some(pid) = self.creator_local_pid else {
            return;
        };
        if self.keep.load(Ordering::Relaxed) || pid != os::getpid() {
            return;
        }
        if let Some(path) = &self.path {
            // Unlink only if the name still refers to our file: somebody may have removed it
            // and created another segment under the same name.
            if let (Ok(ours), Ok(now)) = (os::fstat(self.fd.as_raw_fd()), os::stat_path(path)) {
                if (ours.dev, ours.ino) == (now.dev, now.ino) {
                    let _ = os::unlink(path);
                }
            }
        }
    }
}

/// Takes the shared holder lock on `fd` and checks that `path` still names its file.
/// `Ok(false)` if a cleaner holds the file (it is being removed) or removed it already.
fn hold(fd: &OwnedFd, path: &str) -> Result<bool> {
    if !os::ofd_try_read_lock(fd.as_raw_fd(), HOLDER_BYTE)
        .map_err(|e| Error::io("fcntl(F_OFD_SETLK)", e))?
    {
        return Ok(false);
    }
    let ours = os::fstat(fd.as_raw_fd()).map_err(|e| Error::io("fstat", e))?;
    Ok(os::stat_path(path).is_ok_and(|now| (now.dev, now.ino) == (ours.dev, ours.ino)))
}

fn raw_layout(len: usize) -> Result<Layout> {
    Ok(Layout {
        kind: Kind::Raw,
        elem_size: 1,
        elem_align: 1,
        capacity: len as u64,
        body_len: Some,
    })
}

/// Checks the fixed prefix that every format version keeps: magic, version, header size.
fn check_prefix(name: &str, magic: u64, version: u32, header_size: u32) -> Result<()> {
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

fn map_io_err(name: &str, op: &'static str, e: std::io::Error) -> Error {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => Error::NotFound {
            name: name.to_owned(),
        },
        ErrorKind::AlreadyExists => Error::AlreadyExists {
            name: name.to_owned(),
        },
        ErrorKind::PermissionDenied => Error::PermissionDenied {
            name: name.to_owned(),
            reason: e.to_string(),
        },
        _ if os::is_symlink_refusal(&e) => Error::PermissionDenied {
            name: name.to_owned(),
            reason: "the name is a symbolic link".into(),
        },
        _ => Error::io(op, e),
    }
}

/// Removes the named segment `name`. Processes that have it mapped keep their mapping.
pub fn unlink(name: &str) -> Result<()> {
    let path = os_path(name)?;
    // Hold it while removing it, as an opener would: a cleaner that holds it exclusively
    // is removing it already, and one that comes later finds the name gone or reused, so
    // it can never remove a segment created under the same name after ours.
    let fd = os::open_rw(&path).map_err(|e| map_io_err(name, "open", e))?;
    if !hold(&fd, &path)? {
        return Err(Error::NotFound {
            name: name.to_owned(),
        });
    }
    os::unlink(&path).map_err(|e| map_io_err(name, "unlink", e))
}

/// What [`list`] reports about one segment.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// The user-facing name.
    pub name: String,
    /// The object kind; `None` if the header is not a valid shmkit header.
    pub kind: Option<Kind>,
    /// Size of the file in bytes.
    pub size: u64,
    /// The creator's pid as recorded (for display only).
    pub creator_pid: u32,
    /// When the segment was created, as recorded.
    pub created: Option<SystemTime>,
    /// The permission bits.
    pub mode: u32,
    /// The owner's uid.
    pub uid: u32,
    /// Whether a live process has it open (decided by the kernel, through the lock each
    /// open handle holds; never by pid). [`clean`] removes only segments nobody holds.
    pub held: bool,
}

/// Lists this crate's named segments (files in `/dev/shm` with our prefix). Reads headers
/// with plain reads, without mapping anything.
pub fn list() -> Result<Vec<SegmentInfo>> {
    let mut out = Vec::new();
    let dir = std::fs::read_dir(os::SHM_DIR).map_err(|e| Error::io("read_dir /dev/shm", e))?;
    for entry in dir.flatten() {
        let file_name = entry.file_name();
        let Some(fname) = file_name.to_str() else {
            continue;
        };
        let Some(name) = fname.strip_prefix(PREFIX) else {
            continue;
        };
        let path = format!("{}/{fname}", os::SHM_DIR);
        let Ok((f, st)) = os::open_read(&path) else {
            continue;
        };
        let mut b = [0u8; HEADER_SIZE];
        let h: Option<Header> = os::read_exact_at(&f, &mut b, 0)
            .unwrap_or(false)
            .then(|| bytemuck::pod_read_unaligned(&b));
        let held = os::ofd_is_locked(f.as_raw_fd(), HOLDER_BYTE).unwrap_or(true);
        let valid = h.filter(|h| h.magic == MAGIC && h.version == VERSION);
        out.push(SegmentInfo {
            name: name.to_owned(),
            kind: valid.and_then(|h| Kind::from_u32(h.kind)),
            size: st.size,
            creator_pid: valid.map_or(0, |h| h.creator_pid),
            created: valid.map(|h| UNIX_EPOCH + Duration::from_nanos(h.created_ns)),
            mode: st.mode,
            uid: st.uid,
            held,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A snapshot of a named segment's header for inspection: read with plain reads (nothing
/// mapped), the fixed prefix checked; everything else is only for display.
pub(crate) struct Snapshot {
    pub(crate) file: std::fs::File,
    pub(crate) header: Header,
    pub(crate) info: SegmentInfo,
}

impl Snapshot {
    /// Reads `name`'s header.
    pub(crate) fn read(name: &str) -> Result<Snapshot> {
        let path = os_path(name)?;
        let (file, st) = os::open_read(&path).map_err(|e| map_io_err(name, "open", e))?;
        if !st.is_file {
            return Err(Error::PermissionDenied {
                name: name.to_owned(),
                reason: "it is not a regular file".into(),
            });
        }
        let mut b = [0u8; HEADER_SIZE];
        if !os::read_exact_at(&file, &mut b, 0).map_err(|e| Error::io("read", e))? {
            return Err(Error::corrupt(format!(
                "segment `{name}`: {} bytes, shorter than a header",
                st.size
            )));
        }
        let h: Header = bytemuck::pod_read_unaligned(&b);
        if h.magic != MAGIC {
            return Err(Error::corrupt(format!(
                "segment `{name}`: bad magic {:#018x}",
                h.magic
            )));
        }
        if h.version != VERSION || h.header_size != HEADER_SIZE as u32 {
            return Err(Error::LayoutMismatch {
                name: name.to_owned(),
                what: format!(
                    "format version {} with a {}-byte header (this build reads version {VERSION})",
                    h.version, h.header_size
                ),
            });
        }
        let held = os::ofd_is_locked(file.as_raw_fd(), HOLDER_BYTE).unwrap_or(true);
        let info = SegmentInfo {
            name: name.to_owned(),
            kind: Kind::from_u32(h.kind),
            size: st.size,
            creator_pid: h.creator_pid,
            created: Some(UNIX_EPOCH + Duration::from_nanos(h.created_ns)),
            mode: st.mode,
            uid: st.uid,
            held,
        };
        Ok(Snapshot {
            file,
            header: h,
            info,
        })
    }

    /// Up to `max` bytes of the body (fewer if the file is shorter).
    pub(crate) fn body(&self, max: usize) -> Vec<u8> {
        let len = (self
            .header
            .body_len
            .min(self.info.size.saturating_sub(HEADER_SIZE as u64)) as usize)
            .min(max);
        let mut b = vec![0u8; len];
        match os::read_exact_at(&self.file, &mut b, HEADER_SIZE as u64) {
            Ok(true) => b,
            _ => Vec::new(),
        }
    }

    /// Whether the process that registered liveness `token` in this segment is alive.
    pub(crate) fn alive(&self, token: u32) -> bool {
        token != 0
            && token <= MAX_TOKEN
            && os::ofd_is_locked(self.file.as_raw_fd(), LIVENESS_BASE + u64::from(token))
                .unwrap_or(false)
    }
}

/// What [`clean`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanMode {
    /// Report what would be removed; remove nothing.
    DryRun,
    /// Remove.
    Remove,
}

/// Removes this crate's segments that no live process holds: named segments left behind by
/// processes that died (or kept on purpose with [`Options::keep`] and no longer open), and
/// temporary files of creators that died before publishing. Returns the OS file names (in
/// `/dev/shm`) removed, or that would be with [`CleanMode::DryRun`]. Only segments whose
/// name starts with `prefix` are considered (`""`: all of them).
///
/// ```
/// # let name = format!("doc-clean-{}", std::process::id());
/// let opts = shmkit::Options::new().keep(true);
/// drop(shmkit::Segment::create(&name, 64, &opts)?); // kept, and nobody holds it now
/// let live = shmkit::Segment::create(&format!("{name}.live"), 64, &shmkit::Options::new())?;
/// let removed = shmkit::clean(&name, shmkit::CleanMode::Remove)?;
/// assert_eq!(removed, [format!("shmkit.{name}")]); // the held one stays
/// # Ok::<(), shmkit::Error>(())
/// ```
///
/// Safe to run at any time and from several processes at once: a segment that any live
/// process has open is never touched (each open handle holds a shared kernel lock on its
/// file, which a cleaner must take exclusively before it unlinks), a process never opens a
/// segment that is being removed, and each stale file is removed by exactly one cleaner.
/// Files of other users are left alone.
pub fn clean(prefix: &str, mode: CleanMode) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let dir = std::fs::read_dir(os::SHM_DIR).map_err(|e| Error::io("read_dir /dev/shm", e))?;
    for entry in dir.flatten() {
        let file_name = entry.file_name();
        let Some(fname) = file_name.to_str() else {
            continue;
        };
        // Published `shmkit.NAME`, or a creator's temporary `shmkit~NAME~UNIQUE`.
        let user_name = match fname.strip_prefix(PREFIX) {
            Some(n) => n,
            None => match fname.strip_prefix(TMP_PREFIX) {
                Some(rest) => rest.rsplit_once('~').map_or(rest, |(n, _)| n),
                None => continue,
            },
        };
        if !user_name.starts_with(prefix) {
            continue;
        }
        let path = format!("{}/{fname}", os::SHM_DIR);
        // Our own open file description: the write lock below conflicts with every
        // holder's shared lock, whoever it is.
        let Ok(fd) = os::open_rw(&path) else {
            continue; // gone already, or not ours to open
        };
        let Ok(st) = os::fstat(fd.as_raw_fd()) else {
            continue;
        };
        if st.uid != os::geteuid() || !st.is_file {
            continue;
        }
        if mode == CleanMode::DryRun {
            // Only look (a lock taken here would make a concurrent open fail).
            if !os::ofd_is_locked(fd.as_raw_fd(), HOLDER_BYTE).unwrap_or(true) {
                out.push(fname.to_owned());
            }
            continue;
        }
        if !os::ofd_try_lock(fd.as_raw_fd(), HOLDER_BYTE).unwrap_or(false) {
            continue; // held by a live process, another cleaner is on it, or unlockable
        }
        // The name may have been removed and reused since we opened it.
        if !os::stat_path(&path).is_ok_and(|now| (now.dev, now.ino) == (st.dev, st.ino)) {
            continue;
        }
        // Exactly one cleaner gets here for a given file: the others found the write lock
        // taken, or (after we close) the name gone or naming another file.
        if os::unlink(&path).is_ok() {
            out.push(fname.to_owned());
        }
        // Dropping `fd` releases the lock.
    }
    out.sort();
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Per-process liveness registration and fork handling.

/// A segment's process-local liveness registration.
struct Liveness {
    /// `fork_generation << 32 | token`, or 0 when this process has not registered.
    reg: AtomicU64,
    /// Index in [`LIVE_FDS`] of our liveness descriptor, or -1.
    slot: AtomicI32,
}

impl Liveness {
    fn new() -> Self {
        Liveness {
            reg: AtomicU64::new(0),
            slot: AtomicI32::new(-1),
        }
    }
}

/// Bumped in every forked child, so that handles copied from the parent re-register.
static FORK_GEN: AtomicU32 = AtomicU32::new(1);

/// Every liveness descriptor this process holds, so that a forked child can close them all
/// (a child that kept them would keep its parent's tokens alive after the parent died).
/// A fixed table of atomics: the fork handler must not lock or allocate.
const MAX_LIVE_FDS: usize = 4096;
static LIVE_FDS: [AtomicI32; MAX_LIVE_FDS] = [const { AtomicI32::new(-1) }; MAX_LIVE_FDS];

fn fork_generation() -> u32 {
    // Relaxed: only the forking thread exists in the child when the handler bumps it, and
    // in the parent it never changes.
    FORK_GEN.load(Ordering::Relaxed)
}

extern "C" fn after_fork_in_child() {
    FORK_GEN.fetch_add(1, Ordering::Relaxed);
    for slot in LIVE_FDS.iter() {
        let fd = slot.swap(-1, Ordering::Relaxed);
        if fd >= 0 {
            os::close_raw(fd);
        }
    }
}

/// Forks started by this process (bumped by the prepare handler, in the parent).
static FORKS_STARTED: AtomicU64 = AtomicU64::new(0);

extern "C" fn before_fork() {
    FORKS_STARTED.fetch_add(1, Ordering::SeqCst);
}

fn install_fork_handlers() {
    // Not `Once`: a fork while another thread is inside `call_once` would leave the child
    // with a `Once` that never completes. Two threads racing here both see `true` at most
    // once; the loser may proceed a moment before the handlers are in place, which only
    // matters for a fork in that same moment.
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    // Relaxed: a one-shot flag; the handlers themselves are registered by libc.
    if !INSTALLED.swap(true, Ordering::Relaxed) {
        // Without the handlers a forked child would keep its parent's liveness locks; that
        // only delays dead-owner detection, so a failure here is not fatal.
        let _ = os::at_fork(before_fork, after_fork_in_child);
    }
}

fn track_fd(fd: RawFd) -> Result<usize> {
    for (i, slot) in LIVE_FDS.iter().enumerate() {
        // Relaxed: the table is only read by the fork handler, in a child where the
        // forking thread is the only one.
        if slot
            .compare_exchange(-1, fd, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(i);
        }
    }
    os::close_raw(fd);
    Err(Error::InvalidArgument(format!(
        "more than {MAX_LIVE_FDS} segments with liveness registrations in one process"
    )))
}

/// Closes a tracked liveness descriptor. With `token`, its lock is released explicitly
/// first, so that a child forked while we close cannot keep it alive.
fn untrack_fd(slot: usize, token: Option<u32>) {
    // Relaxed: see `track_fd`.
    let fd = LIVE_FDS[slot].load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    if let Some(t) = token {
        let _ = os::ofd_unlock(fd, LIVENESS_BASE + u64::from(t));
    }
    if LIVE_FDS[slot]
        .compare_exchange(fd, -1, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
    {
        os::close_raw(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(os_path("ok.name_1-2").is_ok());
        for bad in [
            "",
            "a/b",
            "../x",
            "..",
            ".hidden",
            "-x",
            "sp ace",
            "ü",
            &"x".repeat(201),
        ] {
            assert!(
                matches!(os_path(bad), Err(Error::InvalidName { .. })),
                "{bad:?} accepted"
            );
        }
    }

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
            (|h| h.version = 2, true),
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
                let l = Layout { kind, elem_size: 8, elem_align: 8, capacity: 0, body_len: |c| c.checked_mul(8) };
                if let Ok(v) = validate("p", &h, file_len, &l) {
                    proptest::prop_assert!(HEADER_SIZE as u64 + v.body_len <= file_len);
                }
            }
        }
    }
}
