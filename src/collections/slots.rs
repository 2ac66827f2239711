//! What [`SharedDict`](super::SharedDict) and [`SharedList`](super::SharedList) share: the
//! head of their segment (the list's robust lock and length, the parameters), the
//! fixed-size slots their entries live in, the checksum that tells a written slot from a
//! torn one, and the lock discipline (every slot read or written under a lock that covers
//! it: the list's, or a dict's stripe's; a dead holder is reported as
//! [`Error::OwnerDied`] until `recover` repairs).
//!
//! # Layout
//! ```text
//! | segment header | TableHead (256 B) | list: index map, u32 × capacity, padded to 8 | slots |
//! | segment header | TableHead (256 B) | dict: lock stripes, 128 B each                | slots |
//! ```
//! A list holds the head's lock for every operation; a dict the locks of the stripes its
//! operation touches (see `stripes`).
//! A slot is a [`SlotHead`] (32 bytes) followed by `max_entry` bytes rounded up to 8:
//!
//! | field | meaning |
//! |---|---|
//! | `state` | dict: `EMPTY` (never used since the last clear), `FULL`, `TOMB` (removed); list: unused |
//! | `klen`, `vlen` | the encoded key's and value's lengths (list: `klen` is 0) |
//! | `hash` | dict: the key's hash (seeded SipHash of its encoded bytes) |
//! | `check` | [`checksum`] of `klen`, `vlen`, `hash` and the bytes: written after them |
//!
//! Every field a peer can write is read once into a local and checked before it is used:
//! a length past the slot, an unknown state, an index past the table, a checksum that does
//! not match, are [`Error::Corrupt`], never an access out of bounds, a panic or an
//! allocation larger than one slot.

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::object::{At, Body, Head, Len};
use crate::primitive::{AtomicU32, AtomicU64, Ordering};
use crate::segment::{CreationMode, Kind, Segment};
use crate::sync::raw_mutex::{Acquired, RawMutex};
use crate::sync::wait::Deadline;

/// The largest `max_entry_bytes` (encoded key and value of one entry).
pub(crate) const MAX_ENTRY: usize = 1 << 20;
/// The largest capacity in entries.
pub(crate) const MAX_CAPACITY: usize = 1 << 30;
/// The default `max_entry_bytes`.
pub(crate) const DEFAULT_ENTRY: usize = 256;

/// A slot's state (dict only).
pub(crate) const EMPTY: u32 = 0;
pub(crate) const FULL: u32 = 1;
pub(crate) const TOMB: u32 = 2;

/// The head of a dict's or list's segment: the lock, the hot words beside it (one line, as
/// the holder touches them together), the creator's parameters on the next line. A dict
/// uses the parameters and `died`: its locks, records and counts are in its stripes.
#[repr(C)]
pub(crate) struct TableHead {
    /// List: the robust lock every operation holds (see `sync::raw_mutex`).
    pub(crate) lock: RawMutex,
    /// List: its length. Written under the lock; read without it only by `len()` (a hint).
    pub(crate) len: AtomicU64,
    /// Dict: non-zero once a process has met a stripe that a dead writer left: every
    /// operation is then [`Error::OwnerDied`] until `recover` repairs and clears it (a word
    /// written only then, so every process keeps its line in its cache).
    pub(crate) died: AtomicU64,
    /// List: the spare slot (the one physical slot no index maps to).
    pub(crate) pending_new: AtomicU64,
    _hot_pad: [u64; 12],
    /// Entries the creator asked for.
    pub(crate) capacity: AtomicU64,
    /// Physical slots.
    pub(crate) slots: AtomicU64,
    /// Bytes of one slot (a multiple of 8, at least `SlotHead` plus 8).
    pub(crate) slot_size: AtomicU64,
    /// Dict: the hash seed (SipHash keys), chosen at random by the creator.
    pub(crate) seed: [AtomicU64; 2],
    _cold_pad: [u64; 11],
}

#[cfg(not(loom))]
const _: () = assert!(size_of::<TableHead>() == 256);
#[cfg(not(loom))]
const _: () = assert!(std::mem::offset_of!(TableHead, capacity) == 128);

// SAFETY: a `RawMutex` (all-zero valid, see its impl) and std atomics and integers: all-zero
// bytes are a valid `TableHead`.
#[cfg(not(loom))]
unsafe impl bytemuck::Zeroable for TableHead {}

impl TableHead {
    /// The initial head, all zero (for `Head::with`, which outside loom stores only the
    /// non-zero fields into zeroed memory).
    fn new() -> Self {
        TableHead {
            lock: RawMutex::new(),
            len: AtomicU64::new(0),
            died: AtomicU64::new(0),
            pending_new: AtomicU64::new(0),
            _hot_pad: [0; 12],
            capacity: AtomicU64::new(0),
            slots: AtomicU64::new(0),
            slot_size: AtomicU64::new(0),
            seed: [AtomicU64::new(0), AtomicU64::new(0)],
            _cold_pad: [0; 11],
        }
    }
}

/// The fixed part of a slot.
#[repr(C)]
pub(crate) struct SlotHead {
    pub(crate) state: AtomicU32,
    pub(crate) klen: AtomicU32,
    pub(crate) vlen: AtomicU32,
    _reserved: AtomicU32,
    pub(crate) hash: AtomicU64,
    pub(crate) check: AtomicU64,
}

/// Bytes of a slot's fixed part (32 outside loom, whose atomics are larger).
pub(crate) const SLOT_HEAD: usize = size_of::<SlotHead>();
#[cfg(not(loom))]
const _: () = assert!(SLOT_HEAD == 32);
#[cfg(not(loom))]
const _: () = assert!(align_of::<SlotHead>() == 8);

/// What an entry holds, as read from a slot: lengths checked against the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lens {
    pub(crate) klen: usize,
    pub(crate) vlen: usize,
    pub(crate) hash: u64,
    pub(crate) check: u64,
}

/// A checksum of a slot's contents: detects a slot whose writer died before it finished
/// (not an adversary: a peer that can write the slot can write a matching checksum).
/// Mixes 8 bytes at a time; identical in every process.
pub(crate) fn checksum(klen: usize, vlen: usize, hash: u64, bytes: &[u8]) -> u64 {
    const M: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (klen as u64) << 32 ^ vlen as u64 ^ 0x5348_4d4b_4954_2121; // "SHMKIT!!"
    h = (h ^ hash).wrapping_mul(M);
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        h = (h ^ w).wrapping_mul(M);
        h ^= h >> 29;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(last) ^ (rest.len() as u64) << 59).wrapping_mul(M);
    }
    h ^= h >> 32;
    h = h.wrapping_mul(M);
    h ^ h >> 29
}

/// Creation parameters, or `OPEN` (read from the segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) capacity: usize,
    pub(crate) max_entry: usize,
}

impl Params {
    /// Passed by `open` (which takes the segment's parameters): never used.
    pub(crate) const OPEN: Params = Params {
        capacity: 0,
        max_entry: 0,
    };

    pub(crate) fn check(self, what: &str) -> Result<Self> {
        if self.capacity == 0 || self.capacity > MAX_CAPACITY {
            return Err(Error::InvalidArgument(format!(
                "a {what}'s capacity must be 1 to {MAX_CAPACITY} entries, not {}",
                self.capacity
            )));
        }
        if self.max_entry == 0 || self.max_entry > MAX_ENTRY {
            return Err(Error::InvalidArgument(format!(
                "a {what}'s entry size limit must be 1 to {MAX_ENTRY} bytes, not {}",
                self.max_entry
            )));
        }
        Ok(self)
    }
}

impl From<usize> for Params {
    fn from(capacity: usize) -> Self {
        Params {
            capacity,
            max_entry: DEFAULT_ENTRY,
        }
    }
}

/// The shape of a table: everything computed from the parameters, validated once on open
/// and kept in the handle (peers cannot change it afterwards).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) capacity: usize,
    pub(crate) slots: usize,
    pub(crate) slot_size: usize,
    /// Bytes before the first slot (the list's index map, the dict's stripes).
    pub(crate) slots_at: usize,
    pub(crate) seed: [u64; 2],
    /// Lock stripes (0: the head's lock alone), each over `span` consecutive slots (the
    /// last over what remains).
    pub(crate) stripes: usize,
    pub(crate) span: usize,
}

impl Shape {
    /// The largest encoded entry a slot holds.
    pub(crate) fn max_entry(&self) -> usize {
        self.slot_size - SLOT_HEAD
    }
}

/// How a kind lays out its table.
pub(crate) trait Design {
    /// The segment kind; its name (`dict`, `list`) names the type in errors.
    const KIND: Kind;
    /// Physical slots for `capacity` entries.
    fn slots(capacity: usize) -> usize;
    /// Bytes before the first slot (none unless the design keeps something there).
    fn slots_at(_capacity: usize) -> usize {
        0
    }
    /// Fills a new table's data (zeroed before; words of 8 bytes). Nothing by default.
    fn fill(_capacity: usize, _data: &mut [u64]) {}
    /// Sets the non-zero head fields of a new table (beyond the parameters). Nothing by
    /// default.
    fn init_head(_capacity: usize, _head: &TableHead) {}
    /// Lock stripes for a table of `slots` slots (see `stripes`); 0 (the default): one
    /// lock, the head's.
    fn stripes(_slots: usize) -> usize {
        0
    }
}

fn slot_bytes_for(max_entry: usize) -> usize {
    SLOT_HEAD + max_entry.next_multiple_of(8)
}

/// A dict's or list's storage: the segment, its validated shape, the lock timeout.
pub(crate) struct Table<D> {
    body: Body<TableHead, u64>,
    shape: Shape,
    timeout: Option<Duration>,
    _d: PhantomData<D>,
}

impl<D: Design> Table<D> {
    /// Creates or opens (as `at` says) the table; `tag` is the fingerprint of what its
    /// entries encode.
    pub(crate) fn new(at: At<'_>, params: Params, tag: u64) -> Result<Self> {
        let mode = at.mode();
        // Parameters matter (and are checked) unless the caller only opens.
        let creating = mode != CreationMode::Open;
        let (words, p) = if creating {
            let p = params.check(D::KIND.as_str())?;
            let bytes =
                D::slots_at(p.capacity) + D::slots(p.capacity) * slot_bytes_for(p.max_entry);
            (bytes / 8, p)
        } else {
            (0, params)
        };
        let seed = if creating { random_seed() } else { [0, 0] };
        let head = Head::with(TableHead::new, |h: &TableHead| {
            // Relaxed: the segment is published to openers with Release after this.
            h.capacity.store(p.capacity as u64, Ordering::Relaxed);
            h.slots
                .store(D::slots(p.capacity) as u64, Ordering::Relaxed);
            h.slot_size
                .store(slot_bytes_for(p.max_entry) as u64, Ordering::Relaxed);
            h.seed[0].store(seed[0], Ordering::Relaxed);
            h.seed[1].store(seed[1], Ordering::Relaxed);
            D::init_head(p.capacity, h);
        });
        let body = Body::new(
            at.tagged(tag),
            D::KIND,
            Len::Create(words as u64),
            head,
            |d: &mut [u64]| D::fill(p.capacity, d),
        )?;
        let shape = Self::validate(&body)?;
        // The body's size can agree for another capacity and entry size: compare both.
        if mode == CreationMode::OpenOrCreate
            && (shape.capacity != p.capacity || shape.slot_size != slot_bytes_for(p.max_entry))
        {
            return Err(Error::LayoutMismatch {
                name: body.segment().name().unwrap_or_default().to_owned(),
                what: format!(
                    "it exists for {} entries of {} bytes, not the {} of {} asked for (use \
                     `open` to take it as it is)",
                    shape.capacity,
                    shape.max_entry(),
                    p.capacity,
                    p.max_entry
                ),
            });
        }
        Ok(Table {
            body,
            shape,
            timeout: None,
            _d: PhantomData,
        })
    }

    /// Reads the parameters once and checks them against the segment's real size.
    fn validate(body: &Body<TableHead, u64>) -> Result<Shape> {
        let h = body.head();
        // Relaxed: written once by the creator before it published the segment, which
        // our open synchronised with (Acquire of the ready state).
        let capacity = h.capacity.load(Ordering::Relaxed);
        let slots = h.slots.load(Ordering::Relaxed);
        let slot_size = h.slot_size.load(Ordering::Relaxed);
        let seed = [
            h.seed[0].load(Ordering::Relaxed),
            h.seed[1].load(Ordering::Relaxed),
        ];
        let bad = |what: String| Error::corrupt(format!("{} head: {what}", D::KIND.as_str()));
        let capacity = usize::try_from(capacity)
            .ok()
            .filter(|&c| (1..=MAX_CAPACITY).contains(&c))
            .ok_or_else(|| bad(format!("capacity {capacity}")))?;
        let slot_size = usize::try_from(slot_size)
            .ok()
            .filter(|&s| s.is_multiple_of(8) && s > SLOT_HEAD && s <= slot_bytes_for(MAX_ENTRY))
            .ok_or_else(|| bad(format!("slot size {slot_size}")))?;
        if slots != D::slots(capacity) as u64 {
            return Err(bad(format!(
                "{slots} slots for capacity {capacity} (expected {})",
                D::slots(capacity)
            )));
        }
        let slots = D::slots(capacity);
        let slots_at = D::slots_at(capacity);
        // No overflow: capacity ≤ 2^30, slot_size ≤ 2^20 + 32.
        let need = slots_at + slots * slot_size;
        let have = body.len().checked_mul(8);
        if have != Some(need) {
            return Err(bad(format!(
                "{slots} slots of {slot_size} bytes need {need} bytes, the body has {}",
                body.len().saturating_mul(8)
            )));
        }
        let stripes = D::stripes(slots);
        Ok(Shape {
            capacity,
            slots,
            slot_size,
            slots_at,
            seed,
            stripes,
            span: slots.div_ceil(stripes.max(1)),
        })
    }

    pub(crate) fn shape(&self) -> &Shape {
        &self.shape
    }

    pub(crate) fn head(&self) -> &TableHead {
        self.body.head()
    }

    pub(crate) fn segment(&self) -> &Segment {
        self.body.segment()
    }

    pub(crate) fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// The data area (after the head), as bytes.
    pub(super) fn data(&self) -> *mut u8 {
        self.body.ptr().cast()
    }

    /// Asks the CPU to fetch slot `i`'s first line, before the caller takes the lock: the
    /// cache miss of a large table then overlaps the lock's acquisition instead of
    /// lengthening the critical section that every process waits for. A hint only: it
    /// reads and writes nothing.
    #[inline]
    pub(crate) fn prefetch_slot(&self, i: usize) {
        if i >= self.shape.slots {
            return;
        }
        let off = self.shape.slots_at + i * self.shape.slot_size;
        // In bounds (`i < slots`, as in `Locked::slot`); `wrapping_add` forms the address
        // without asserting anything about it.
        crate::copy::prefetch(self.data().wrapping_add(off));
    }

    /// `Debug` for the table type `name` over this table: its segment, length and capacity.
    pub(crate) fn debug(&self, f: &mut std::fmt::Formatter<'_>, name: &str) -> std::fmt::Result {
        f.debug_struct(name)
            .field("segment", self.segment())
            .field("len", &self.len_hint())
            .field("capacity", &self.shape.capacity)
            .finish_non_exhaustive()
    }

    /// The live-entry count, clamped to the capacity (a hint: no lock).
    pub(crate) fn len_hint(&self) -> usize {
        if self.shape.stripes > 0 {
            return self.striped_len();
        }
        // Relaxed: a hint, the value of some moment; nothing is read through it.
        let n = self.head().len.load(Ordering::Relaxed);
        usize::try_from(n).map_or(self.shape.capacity, |n| n.min(self.shape.capacity))
    }

    /// Locks for an ordinary operation: a dead holder's unrepaired state is
    /// [`Error::OwnerDied`] (the lock is left free and the state inconsistent).
    pub(crate) fn lock(&self) -> Result<Locked<'_, D>> {
        let (g, how) = self.lock_any()?;
        match how {
            Acquired::Clean => Ok(g),
            Acquired::OwnerDied => {
                g.release_unrepaired();
                Err(Error::OwnerDied)
            }
        }
    }

    /// Locks, whatever the state: whether a dead holder left it to repair.
    pub(crate) fn lock_any(&self) -> Result<(Locked<'_, D>, Acquired)> {
        debug_assert_eq!(self.shape.stripes, 0, "a striped table locks its stripes");
        let deadline = self.deadline();
        let how = self.head().lock.lock(self.segment(), deadline)?;
        Ok((
            Locked {
                t: self,
                held: 0,
                home: 0,
                deadline,
            },
            how,
        ))
    }

    /// The deadline of an operation starting now.
    pub(super) fn deadline(&self) -> Deadline {
        self.timeout.map_or(Deadline::NEVER, Deadline::after)
    }
}

/// The table's lock, or some of its stripes' locks, held: everything that reads or writes
/// slots goes through it.
pub(crate) struct Locked<'a, D: Design> {
    pub(super) t: &'a Table<D>,
    /// Striped tables: the stripes held, one bit each (see `stripes`). Unused (0) for the
    /// head's lock.
    pub(super) held: u64,
    /// Striped tables: the stripe of the operation's key (its records and count).
    pub(super) home: usize,
    /// When the operation stops waiting for a lock.
    pub(super) deadline: Deadline,
}

impl<D: Design> Drop for Locked<'_, D> {
    fn drop(&mut self) {
        if self.t.shape.stripes == 0 {
            self.t.head().lock.unlock();
        } else {
            self.release_stripes();
        }
    }
}

impl<'a, D: Design> Locked<'a, D> {
    /// Releases, leaving a dead holder's state inconsistent for the next locker.
    fn release_unrepaired(self) {
        drop(self);
    }

    /// Marks the state consistent (after a repair) and releases.
    pub(crate) fn mark_consistent(self) {
        self.t.head().lock.mark_consistent();
    }

    /// The stored length (live entries, or the list's length), checked against the
    /// capacity.
    pub(crate) fn stored_len(&self) -> Result<usize> {
        // Relaxed: under the lock.
        let n = self.head().len.load(Ordering::Relaxed);
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.shape().capacity)
            .ok_or_else(|| {
                let what = D::KIND.as_str();
                Error::corrupt(format!("{what}: length {n} exceeds the capacity"))
            })
    }

    pub(crate) fn shape(&self) -> &'a Shape {
        &self.t.shape
    }

    pub(crate) fn head(&self) -> &'a TableHead {
        self.t.head()
    }

    pub(crate) fn table(&self) -> &'a Table<D> {
        self.t
    }

    /// The raw data area at byte `off` (within the body: callers check).
    pub(crate) fn data_at(&self, off: usize) -> *mut u8 {
        self.t.data().wrapping_add(off)
    }

    /// Slot `i`'s fixed part. `i` must be below `slots` (callers check), and in a stripe
    /// we hold (the probes reach it first): nobody else touches its bytes meanwhile.
    pub(crate) fn slot(&self, i: usize) -> &'a SlotHead {
        assert!(i < self.t.shape.slots, "slot index checked by the caller");
        assert!(self.holds(i), "slot {i}'s stripe taken by the caller");
        let off = self.t.shape.slots_at + i * self.t.shape.slot_size;
        // SAFETY: `i < slots`, so the slot lies in the body (validated on open: `slots_at
        // + slots * slot_size` bytes), 8-aligned (the body is, and `slots_at` and
        // `slot_size` are multiples of 8); `SlotHead` is atomics only, so a shared
        // reference is sound whatever peers do.
        unsafe { &*(self.t.data().add(off) as *const SlotHead) }
    }

    /// Slot `i`'s bytes.
    fn slot_bytes(&self, i: usize) -> *mut u8 {
        (self.slot(i) as *const SlotHead as *mut u8).wrapping_add(SLOT_HEAD)
    }

    /// Slot `i`'s lengths, hash and checksum, checked against the slot's size.
    pub(crate) fn lens(&self, i: usize) -> Result<Lens> {
        let s = self.slot(i);
        // Relaxed (all four): we hold the lock, whose Acquire made the last holder's
        // writes visible.
        let klen = s.klen.load(Ordering::Relaxed) as usize;
        let vlen = s.vlen.load(Ordering::Relaxed) as usize;
        let hash = s.hash.load(Ordering::Relaxed);
        let check = s.check.load(Ordering::Relaxed);
        if klen.saturating_add(vlen) > self.t.shape.max_entry() {
            return Err(Error::corrupt(format!(
                "{} slot {i}: {klen} + {vlen} bytes in a slot of {}",
                D::KIND.as_str(),
                self.t.shape.max_entry()
            )));
        }
        Ok(Lens {
            klen,
            vlen,
            hash,
            check,
        })
    }

    /// Copies slot `i`'s first `n` bytes (`n` ≤ the slot's room: callers use `lens`) into
    /// `out`, replacing its contents.
    pub(crate) fn read_bytes(&self, i: usize, n: usize, out: &mut Vec<u8>) {
        assert!(
            n <= self.t.shape.max_entry(),
            "length checked by the caller"
        );
        out.clear();
        out.reserve(n);
        let src = self.slot_bytes(i);
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: `src` is slot `i`'s byte area, `max_entry` ≥ `n` bytes inside the body;
        // `out` has room for `n` bytes and is a local buffer (no overlap). Peers write the
        // slot only under the lock, which we hold.
        unsafe {
            std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), n);
            out.set_len(n);
        }
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }

    /// Reads slot `i` whole into `out` and checks its checksum: its lengths.
    pub(crate) fn read_entry(&self, i: usize, out: &mut Vec<u8>) -> Result<Lens> {
        let l = self.lens(i)?;
        self.read_bytes(i, l.klen + l.vlen, out);
        if checksum(l.klen, l.vlen, l.hash, out) != l.check {
            return Err(Error::corrupt(format!(
                "{} slot {i}: checksum mismatch (a torn or forged entry)",
                D::KIND.as_str()
            )));
        }
        Ok(l)
    }

    /// Whether slot `i` holds a complete entry (lengths in bounds, checksum right).
    pub(crate) fn is_intact(&self, i: usize, scratch: &mut Vec<u8>) -> bool {
        self.read_entry(i, scratch).is_ok()
    }

    /// Writes an entry into slot `i` (not yet visible: the caller commits it): lengths,
    /// hash, bytes, then the checksum. `klen + bytes.len()` fits (checked by the caller).
    pub(crate) fn write_entry(&self, i: usize, klen: usize, hash: u64, bytes: &[u8]) {
        assert!(
            bytes.len() <= self.t.shape.max_entry() && klen <= bytes.len(),
            "entry size checked by the caller"
        );
        let vlen = bytes.len() - klen;
        let s = self.slot(i);
        // Relaxed (all): we hold the lock; its Release publishes them to the next holder.
        s.klen.store(klen as u32, Ordering::Relaxed);
        s.vlen.store(vlen as u32, Ordering::Relaxed);
        s.hash.store(hash, Ordering::Relaxed);
        let dst = self.slot_bytes(i);
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: slot `i`'s byte area holds `max_entry` ≥ `bytes.len()` bytes inside the
        // body; `bytes` is a local buffer (no overlap); we hold the lock.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        crate::os::failpoint::failpoint!("collections.torn");
        s.check
            .store(checksum(klen, vlen, hash, bytes), Ordering::Relaxed);
        crate::os::failpoint::failpoint!("collections.written");
    }
}

/// A random hash seed for a new dict (std's per-process random keys, mixed).
fn random_seed() -> [u64; 2] {
    use std::hash::{BuildHasher, Hasher};
    let s = std::collections::hash_map::RandomState::new();
    let mut a = s.build_hasher();
    a.write_u64(0x6469_6374);
    let mut b = s.build_hasher();
    b.write_u64(0x7365_6564);
    [a.finish(), b.finish()]
}

/// The seeded hash of an encoded key: SipHash-2-4, whose output is fixed by its
/// specification (std's `DefaultHasher` may change between Rust versions, and the table is
/// shared between processes, maybe built apart).
pub(crate) fn key_hash(seed: [u64; 2], key: &[u8]) -> u64 {
    #[allow(deprecated)] // deprecated for "use DefaultHasher", whose output is not fixed
    let mut h = std::hash::SipHasher::new_with_keys(seed[0], seed[1]);
    std::hash::Hasher::write(&mut h, key);
    std::hash::Hasher::finish(&h)
}

/// Encodes `value` with the default codec, appending to `out`.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    crate::codec::postcard_encode(value, out)
}

/// Decodes a value that fills `bytes`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    crate::codec::postcard_decode(bytes)
}

/// The fingerprint of what a table's entries encode.
pub(crate) fn fingerprint(parts: &[&str]) -> u64 {
    crate::codec::fingerprint(crate::codec::POSTCARD_ID, parts) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_tell_a_torn_entry_from_a_whole_one() {
        let whole = checksum(3, 5, 7, b"abcdefgh");
        assert_eq!(whole, checksum(3, 5, 7, b"abcdefgh"));
        assert_ne!(whole, checksum(3, 5, 7, b"abcdefgX"));
        assert_ne!(whole, checksum(4, 4, 7, b"abcdefgh"));
        assert_ne!(whole, checksum(3, 5, 8, b"abcdefgh"));
        assert_ne!(checksum(0, 1, 0, &[0]), checksum(0, 2, 0, &[0, 0]));
        assert_ne!(checksum(0, 0, 0, &[]), 0);
    }

    #[test]
    fn key_hashes_are_the_same_in_every_process() {
        // SipHash-2-4's reference vector for keys 00..0f and the empty message.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        assert_eq!(key_hash([k0, k1], b""), 0x726f_db47_dd0e_0e31);
    }

    #[test]
    fn parameters_are_checked() {
        assert!(Params::from(0).check("dict").is_err());
        assert!(Params {
            capacity: 1,
            max_entry: MAX_ENTRY + 1
        }
        .check("dict")
        .is_err());
        assert!(Params::from(1).check("dict").is_ok());
    }
}
