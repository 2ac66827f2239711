//! What the shmkit fuzz targets share: unique names, clean-up that survives a panic, a
//! private mapping of a named segment, and the "hostile peer" that writes fuzz-chosen
//! values into shared control words ([`Scribbler`]).
//!
//! Every target is single-threaded: the only other writer of the shared memory is the
//! target itself, between calls into shmkit, so plain volatile writes into our own
//! mapping are what a peer process would do, minus the timing.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};

use arbitrary::Arbitrary;
use memmap2::{MmapOptions, MmapRaw};

/// Where named segments live, and the crate's prefix for them.
pub const SHM_DIR: &str = "/dev/shm";
/// The OS-level prefix shmkit gives named segments (`/dev/shm/shmkit.NAME`).
pub const PREFIX: &str = "shmkit.";
/// The size of the segment header that precedes every body.
pub const HEADER_SIZE: usize = shmkit::__layout::segment::SIZE;

/// The OS path of the segment a user name `name` refers to.
pub fn os_path(name: &str) -> String {
    format!("{SHM_DIR}/{PREFIX}{name}")
}

/// A name no other process and no earlier input uses: `fz.<pid>.<tag><n>`. Everything the
/// fuzz targets create starts with `shmkit.fz.` in `/dev/shm`, so `.ci/fuzz.sh` can sweep
/// exactly those files after a crash.
pub fn unique_name(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    // Relaxed: only uniqueness matters.
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("fz.{}.{tag}{n}", std::process::id())
}

// ---------------------------------------------------------------------------------------
// Clean-up, also after a panic.

/// Paths this process created and has not removed yet.
static LIVE: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Chains a panic hook in front of libFuzzer's (which aborts, so destructors never run):
/// it removes every file still registered, then lets libFuzzer report the crash. Call it
/// at the start of every target; only the first call installs it.
pub fn install_cleanup_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let next = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // `try_lock`: never deadlock if the panic happened while the set was locked.
            if let Ok(mut live) = LIVE.try_lock() {
                for path in live.take().unwrap_or_default() {
                    let _ = std::fs::remove_file(path);
                }
            }
            next(info);
        }));
    });
}

fn register(path: &str) {
    if let Ok(mut live) = LIVE.lock() {
        live.get_or_insert_with(HashSet::new)
            .insert(path.to_owned());
    }
}

fn unregister(path: &str) {
    if let Ok(mut live) = LIVE.lock() {
        if let Some(set) = live.as_mut() {
            set.remove(path);
        }
    }
}

/// Removes the named segment `name` (its file in `/dev/shm`) when dropped, or when the
/// process panics first. Handles opened on it keep their mappings.
#[derive(Debug)]
pub struct NameGuard {
    path: String,
}

impl NameGuard {
    /// Guards the segment that the user name `name` refers to (it may not exist yet).
    pub fn new(name: &str) -> NameGuard {
        let path = os_path(name);
        register(&path);
        NameGuard { path }
    }

    /// The OS path.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl Drop for NameGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        unregister(&self.path);
    }
}

/// Creates the file of segment `name` (mode exactly 0600, whatever the umask) holding
/// `bytes`, then sized to `len` bytes (zero-filled past `bytes`). Returns the guard that
/// removes it.
pub fn write_segment_file(name: &str, bytes: &[u8], len: u64) -> std::io::Result<NameGuard> {
    use std::io::Write;
    let guard = NameGuard::new(name);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(guard.path())?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.set_len(len)?;
    Ok(guard)
}

/// A private read-write mapping of a named segment's whole file: stays valid whatever
/// happens to the shmkit handles (endpoints dropped and reopened, the name unlinked).
#[derive(Debug)]
pub struct Mapping {
    map: MmapRaw,
    _file: File,
}

impl Mapping {
    /// Maps the file of segment `name`.
    pub fn open(name: &str) -> std::io::Result<Mapping> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(os_path(name))?;
        let len = file.metadata()?.len() as usize;
        let map = MmapOptions::new().len(len).map_raw(&file)?;
        Ok(Mapping { map, _file: file })
    }

    /// The body (past the 128-byte header): its address and length.
    pub fn body(&self) -> (*mut u8, usize) {
        assert!(
            self.map.len() >= HEADER_SIZE,
            "segment shorter than a header"
        );
        // SAFETY: the mapping is at least HEADER_SIZE bytes long (checked above).
        let base = unsafe { self.map.as_mut_ptr().add(HEADER_SIZE) };
        (base, self.map.len() - HEADER_SIZE)
    }
}

// ---------------------------------------------------------------------------------------
// The hostile peer.

/// A place in shared memory to write: one of the target's known control words, or any
/// aligned word of one of its areas.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Loc {
    /// Known control word number `n` (modulo how many the target registered).
    Field(u8),
    /// Word `word` (4-byte units, modulo the area) of area `area`; `wide`: 8 bytes.
    Raw { area: u8, word: u16, wide: bool },
}

/// One write by the hostile peer.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Poke {
    /// Stores a value.
    Set(Loc, u64),
    /// Stores a small signed value (so -1 is all ones).
    Small(Loc, i8),
    /// Stores the value of another word plus a small delta: plausible positions, stamps
    /// one off, a token copied from another slot.
    Rel(Loc, Loc, i8),
    /// Flips one bit.
    Flip(Loc, u8),
}

struct Area {
    base: *mut u8,
    len: usize,
}

struct Field {
    ptr: *mut u8,
    wide: bool,
}

/// Writes fuzz-chosen values into shared memory, as a misbehaving peer would.
pub struct Scribbler {
    areas: Vec<Area>,
    fields: Vec<Field>,
}

impl Default for Scribbler {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Scribbler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scribbler")
            .field("areas", &self.areas.len())
            .field("fields", &self.fields.len())
            .finish()
    }
}

impl Scribbler {
    /// Nothing to write into yet.
    pub fn new() -> Scribbler {
        Scribbler {
            areas: Vec::new(),
            fields: Vec::new(),
        }
    }

    /// Adds an area and returns its number.
    ///
    /// # Safety
    /// `base..base + len` must be mapped, writable and 8-aligned at `base`, and stay so for
    /// as long as this scribbler is used; nobody may hold a Rust reference to a non-atomic
    /// value in it while [`Scribbler::apply`] runs.
    pub unsafe fn add_area(&mut self, base: *mut u8, len: usize) -> usize {
        assert_eq!(base as usize % 8, 0, "areas start 8-aligned");
        self.areas.push(Area { base, len });
        self.areas.len() - 1
    }

    /// Registers the control word at byte `off` of `area` (4 or, `wide`, 8 bytes).
    /// Panics if it is not inside the area or not aligned (a harness bug).
    pub fn field(&mut self, area: usize, off: usize, wide: bool) {
        let a = &self.areas[area];
        let w = if wide { 8 } else { 4 };
        assert!(
            off.is_multiple_of(w) && off + w <= a.len,
            "field {off} outside area"
        );
        // `wrapping_add`: only an address; it is inside the area (checked above).
        self.fields.push(Field {
            ptr: a.base.wrapping_add(off),
            wide,
        });
    }

    /// How many control words are registered.
    pub fn fields(&self) -> usize {
        self.fields.len()
    }

    fn resolve(&self, loc: Loc) -> Option<(*mut u8, bool)> {
        match loc {
            Loc::Field(n) => {
                let f = self.fields.get(usize::from(n) % self.fields.len().max(1))?;
                Some((f.ptr, f.wide))
            }
            Loc::Raw { area, word, wide } => {
                let a = self
                    .areas
                    .get(usize::from(area) % self.areas.len().max(1))?;
                let w = if wide { 8 } else { 4 };
                if a.len < w {
                    return None;
                }
                let off = (usize::from(word) * 4) % (a.len - w + 1);
                let off = off - off % w;
                Some((a.base.wrapping_add(off), wide))
            }
        }
    }

    /// The current value of the word at `loc` (zero-extended when 4 bytes).
    pub fn read(&self, loc: Loc) -> Option<u64> {
        let (ptr, wide) = self.resolve(loc)?;
        // SAFETY: `resolve` gives an aligned address inside a registered area, which the
        // caller of `add_area` guarantees is mapped; volatile, as another process's read.
        Some(unsafe {
            if wide {
                std::ptr::read_volatile(ptr as *const u64)
            } else {
                u64::from(std::ptr::read_volatile(ptr as *const u32))
            }
        })
    }

    /// Stores `v` (truncated to 4 bytes for a narrow word) at `loc`.
    pub fn write(&self, loc: Loc, v: u64) {
        let Some((ptr, wide)) = self.resolve(loc) else {
            return;
        };
        // SAFETY: as in `read`; any bytes are what a hostile peer may store, and shmkit
        // keeps only atomics (no references to plain data) over these words.
        unsafe {
            if wide {
                std::ptr::write_volatile(ptr as *mut u64, v);
            } else {
                std::ptr::write_volatile(ptr as *mut u32, v as u32);
            }
        }
    }

    /// Performs one write.
    pub fn apply(&self, p: &Poke) {
        match *p {
            Poke::Set(at, v) => self.write(at, v),
            Poke::Small(at, v) => self.write(at, v as i64 as u64),
            Poke::Rel(at, from, d) => {
                if let Some(v) = self.read(from) {
                    self.write(at, v.wrapping_add(d as i64 as u64));
                }
            }
            Poke::Flip(at, bit) => {
                if let Some((_, wide)) = self.resolve(at) {
                    let bits = if wide { 64 } else { 32 };
                    if let Some(v) = self.read(at) {
                        self.write(at, v ^ (1u64 << (u32::from(bit) % bits)));
                    }
                }
            }
        }
    }

    /// Performs at most `max` writes.
    pub fn apply_all(&self, pokes: &[Poke], max: usize) {
        for p in pokes.iter().take(max) {
            self.apply(p);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Layouts of the shared structures: the crate's own numbers, computed from its structs
// (`shmkit::__layout`), so that they cannot drift; each target still checks them against a
// freshly created object before it relies on them.

/// `channel::Header` of spsc and frames channels.
pub use shmkit::__layout::pair;

/// `mpmc::Header`, its registrations, and its position arithmetic.
pub use shmkit::__layout::mpmc;

/// Size of one `Slot<u64>` of spsc and mpmc: the stamp, then the value.
pub const SLOT_U64: usize = shmkit::__layout::slot::size::<u64>();

/// Reads a `u64` at byte `off` of a body (volatile).
///
/// # Safety
/// `base + off .. + 8` must be mapped and 8-aligned.
pub unsafe fn peek64(base: *mut u8, off: usize) -> u64 {
    // SAFETY: the caller guarantees the word is mapped and aligned.
    unsafe { std::ptr::read_volatile(base.add(off) as *const u64) }
}

/// Writes a `u64` at byte `off` of a body (volatile).
///
/// # Safety
/// As for [`peek64`]; and no Rust reference to a plain value may cover the word.
pub unsafe fn poke64(base: *mut u8, off: usize, v: u64) {
    // SAFETY: the caller guarantees the word is mapped, aligned, and not borrowed.
    unsafe { std::ptr::write_volatile(base.add(off) as *mut u64, v) }
}

/// A short timeout chosen by the input: zero most of the time, at most 255 µs.
pub fn micros(t: u8) -> std::time::Duration {
    if t < 128 {
        std::time::Duration::ZERO
    } else {
        std::time::Duration::from_micros(u64::from(t))
    }
}
