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

mod header;
mod liveness;

pub(crate) use header::{
    check_prefix, raw_layout, validate, Header, Layout, HEADER_SIZE, HOLDER_BYTE, LIVENESS_BASE,
    MAGIC, MAX_TOKEN, PREFIX, TMP_PREFIX, VERSION,
};
pub use header::{Kind, MAX_NAME_LEN};
use header::{MAX_TOTAL_LEN, NEXT_TOKEN_OFFSET, STATE_OFFSET, STATE_READY};
use liveness::Liveness;

use crate::os::failpoint::failpoint;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::os;

/// How a constructor treats an existing name.
///
/// ```
/// use shmkit::{CreationMode, Options, Semaphore};
/// # let name = shmkit::__private::test_name("doc-mode");
/// let a = Semaphore::with_options(&name, CreationMode::OpenOrCreate, 1, &Options::new())?;
/// let b = Semaphore::with_options(&name, CreationMode::Open, 0, &Options::new())?;
/// assert!(a.is_creator() && !b.is_creator());
/// # Ok::<(), shmkit::Error>(())
/// ```
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
    type_name: Option<&'static str>,
    populate: bool,
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
            type_name: None,
            populate: false,
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

    /// The name the element type is fingerprinted under, instead of its Rust path
    /// (`std::any::type_name`). Every object records a fingerprint of its element type, and
    /// `open` refuses another one ([`Error::LayoutMismatch`]); give the same name here in
    /// every program that shares the object when the type's path differs between them (a
    /// type renamed or moved in a new version, two crates defining the same layout).
    ///
    /// ```
    /// use shmkit::{CreationMode, Options, Value};
    /// # let name = format!("doc-typename-{}", std::process::id());
    /// let opts = Options::new().type_name("orders::Book/v1");
    /// let v = Value::<u64>::with_options(&name, CreationMode::Create, 1, &opts)?;
    /// // A program whose type has another path opens it under the same name:
    /// let w = Value::<u64>::with_options(&name, CreationMode::Open, 0, &opts)?;
    /// assert_eq!(w.get()?, 1);
    /// // Without it, the fingerprints differ:
    /// assert!(matches!(Value::<u64>::open(&name), Err(shmkit::Error::LayoutMismatch { .. })));
    /// # drop(v);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub const fn type_name(mut self, name: &'static str) -> Self {
        self.type_name = Some(name);
        self
    }

    /// Whether `create` and `open` map every page of the segment at once (`MAP_POPULATE`),
    /// instead of on first touch (default: on first touch). For latency-critical
    /// processes: no page fault on the hot path afterwards (a fresh mapping of a ring, a
    /// dict or an array otherwise faults at the first touch of each of its pages, a few
    /// microseconds each: a fresh dict of 400,000 entries spent about a fifth of filling
    /// itself in them). The cost moves to `create` and `open`, which then take time and
    /// page tables in proportion to the segment's size (for that dict, here, 11-15 ms
    /// more for its creator and 3-4 ms for each process that opens it).
    ///
    /// ```
    /// use shmkit::{CreationMode, Options, RawArray};
    /// # let name = format!("doc-populate-{}", std::process::id());
    /// let opts = Options::new().populate(true);
    /// let zeros = vec![0.0; 1 << 16];
    /// let a = RawArray::<f64>::with_options(&name, CreationMode::Create, &zeros, &opts)?;
    /// # drop(a);
    /// # Ok::<(), shmkit::Error>(())
    /// ```
    pub const fn populate(mut self, populate: bool) -> Self {
        self.populate = populate;
        self
    }

    /// The element type's name for its fingerprint, if the caller chose one.
    pub(crate) fn elem_type_name(&self) -> Option<&'static str> {
        self.type_name
    }
}

/// The mapping of `len` bytes, populated at once if `populate` (see [`Options::populate`]).
fn map_options(len: usize, populate: bool) -> MmapOptions {
    let mut o = MmapOptions::new();
    o.len(len);
    if populate {
        o.populate();
    }
    o
}

/// Validates a user-facing name and returns the OS path of the segment.
pub(crate) fn os_path(name: &str) -> Result<String> {
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
/// # let name = shmkit::__private::test_name("doc-seg");
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
            let mut seg = Self::build_with(fd, layout, false, opts.populate)?;
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
        let seg = Self::build_with(fd, layout, true, false)?;
        init(&seg)?;
        seg.publish_ready();
        Ok(seg)
    }

    /// Sizes, maps and writes the header of a fresh file. The state stays 0 until
    /// [`Self::publish_ready`].
    fn build_with(fd: OwnedFd, layout: Layout, seal: bool, populate: bool) -> Result<Segment> {
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
        reserve(&fd, total)?;
        if seal {
            os::seal_size(&fd).map_err(|e| Error::io("fcntl(F_ADD_SEALS)", e))?;
        }
        let map = map_options(total as usize, populate)
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
            type_tag: layout.type_tag,
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
        let map = map_options(st.size as usize, opts.populate)
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
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.liveness.release();
        let Some(pid) = self.creator_local_pid else {
            return;
        };
        if self.keep.load(Ordering::Relaxed) || pid != os::getpid() {
            return;
        }
        self.remove_name();
    }
}

impl Segment {
    /// Removes this segment's name if it still names the file this handle maps (somebody
    /// may have removed it and created another segment under the same name since), whoever
    /// created it. The mapping stays valid for everyone who has it.
    pub(crate) fn remove_name(&self) {
        if let Some(path) = &self.path {
            if let (Ok(ours), Ok(now)) = (os::fstat(self.fd.as_raw_fd()), os::stat_path(path)) {
                if (ours.dev, ours.ino) == (now.dev, now.ino) {
                    let _ = os::unlink(path);
                }
            }
        }
    }
}

/// Sizes a fresh file to `total` bytes and reserves them, so that a full tmpfs is an error
/// here rather than a SIGBUS at the first touch of a page, in this process or a peer.
fn reserve(fd: &OwnedFd, total: u64) -> Result<()> {
    let no_space = |free| Error::NoSpace { size: total, free };
    // A quick refusal of what cannot fit, before allocating (and then releasing) most of
    // the free space; `allocate` below still decides, as others allocate concurrently.
    if let Ok(Some(free)) = os::free_space(fd) {
        if free < total {
            return Err(no_space(free));
        }
    }
    os::ftruncate(fd, total).map_err(|e| Error::io("ftruncate", e))?;
    match os::allocate(fd, total) {
        Ok(()) => Ok(()),
        Err(e) if os::is_no_space(&e) => {
            Err(no_space(os::free_space(fd).ok().flatten().unwrap_or(0)))
        }
        // A file system that cannot reserve (not tmpfs): pages come at first touch.
        Err(e) if os::is_unsupported(&e) => Ok(()),
        Err(e) => Err(Error::io("fallocate", e)),
    }
}

/// Takes the shared holder lock on `fd` and checks that `path` still names its file.
/// `Ok(false)` if a cleaner holds the file (it is being removed) or removed it already.
pub(crate) fn hold(fd: &OwnedFd, path: &str) -> Result<bool> {
    if !os::ofd_try_read_lock(fd.as_raw_fd(), HOLDER_BYTE)
        .map_err(|e| Error::io("fcntl(F_OFD_SETLK)", e))?
    {
        return Ok(false);
    }
    let ours = os::fstat(fd.as_raw_fd()).map_err(|e| Error::io("fstat", e))?;
    Ok(os::stat_path(path).is_ok_and(|now| (now.dev, now.ino) == (ours.dev, ours.ino)))
}

pub(crate) fn map_io_err(name: &str, op: &'static str, e: std::io::Error) -> Error {
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
}
