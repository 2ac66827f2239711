//! [`RwLock<T>`]: a robust, process-shared reader-writer lock protecting a `T`.
//!
//! Any number of readers (threads of any processes) may hold the lock at once, or one
//! writer. `read`/`write` block (spinning briefly, then sleeping on a futex), the `try_`
//! forms never block, the `_timeout` forms give up with [`Error::Timeout`]. Uncontended,
//! a read or a write and its release are a few atomic operations and no system call; the
//! wake syscall is made only when somebody sleeps. A writer that is waiting keeps new
//! readers out, so a stream of readers cannot starve writers. If a writer dies holding the
//! lock, the next locker, reader or writer, gets [`LockError::OwnerDied`] carrying its
//! guard: a writer repairs the data and calls [`RwLockWriteGuard::mark_consistent`] (a write
//! guard dropped unrepaired makes the lock not recoverable: every later `read` or `write`
//! fails with [`Error::NotRecoverable`]); a reader cannot repair, so every read reports
//! `OwnerDied` until a writer has marked the data consistent. A reader that dies holding a
//! read lock leaves the data consistent: waiting writers notice the death (a few
//! milliseconds of their time) and take its place back. At most [`RwLock::READER_SLOTS`]
//! processes hold read locks at the same time; a reader of a further process waits for a
//! slot. As with `std`'s lock, a thread that holds a read guard and asks for another one
//! (or for a write guard) while a writer waits deadlocks; use the timeout forms where that
//! could happen.
//!
//! ```
//! use shmkit::RwLock;
//! # let name = format!("doc-rwlock-{}", std::process::id());
//! let lock = RwLock::<[u64; 2]>::create(&name, [0, 0])?;
//! // In another process: let lock = RwLock::<[u64; 2]>::open(&name)?;
//! {
//!     let mut w = lock.write()?;
//!     w[0] += 1;
//!     w[1] += 1;
//! }
//! let (r1, r2) = (lock.read()?, lock.read()?); // readers share the lock
//! assert_eq!(*r1, [1, 1]);
//! assert_eq!(*r1, *r2);
//! # drop((r1, r2));
//! # Ok::<(), shmkit::Error>(())
//! ```
//!
//! # Design
//! The shared state is a [`Head`] line and a table of [`READER_SLOTS`] reader slots, each on
//! its own 128-byte line, followed by the `T`.
//!
//! ## The writer word (`Head::word`)
//! Like the mutex word of `raw_mutex`: a liveness token (see the `segment` module) in the
//! low 31 bits and a PARKED flag in bit 31.
//!
//! | word              | meaning                                                          |
//! |-------------------|------------------------------------------------------------------|
//! | `0`               | no writer: readers may enter                                     |
//! | `token`           | the writer `token` owns it: it waits for readers to leave, or writes; new readers stay out |
//! | `token \| PARKED` | the same, and readers or writers may be sleeping on the word     |
//!
//! A writer takes it with a CAS `0 → token`, then waits until every reader slot is empty
//! (the *drain*), then writes. Release swaps in `0` and wakes every sleeper if PARKED was
//! set. A waiter whose sleep slice runs out asks the kernel whether the owner's liveness
//! lock is still held; if not, it takes the word over with a CAS `dead → token` (exactly one
//! wins) and records the death in `state`; a writer keeps the word, a reader releases it.
//!
//! ## Reader slots (`slots[i]`, an `AtomicU64`)
//!
//! | slot                   | meaning                                                   |
//! |------------------------|-----------------------------------------------------------|
//! | `0`                    | free                                                      |
//! | `token << 32 \| n`, `n ≥ 1` | the process `token` holds `n` read guards through this slot |
//!
//! A reader CASes its process's slot `n → n + 1` (or a free one `0 → token << 32 | 1`),
//! then loads the word: no writer, and it holds the read lock; a writer, and it undoes its
//! CAS and waits for the word to clear. Release is `n → n - 1`, `1 → 0`. A slot is freed
//! by its last guard, so the table limits only how many processes read at the same time.
//! A waiting writer reclaims (CAS `slot → 0`) the slots whose token is dead. `Head::high`
//! is one past the highest slot index ever used, so a writer scans only that prefix.
//!
//! ## The handshake
//! A reader's slot CAS followed by its load of the word, against a writer's word CAS
//! followed by its loads of the slots, is the store-buffering pattern: with all four
//! `SeqCst`, at least one side sees the other, so a reader never reads while a writer
//! writes. The drain wait is the same pattern: the writer stores `drain = 1` and re-scans
//! before sleeping on `drain`; a reader that frees a slot loads `drain` and, if set, clears
//! it and wakes the writer.
//!
//! ## The state word (`Head::state`), as in `raw_mutex`
//! `CONSISTENT` (0), `INCONSISTENT` (1: a writer died holding the lock, until a writer marks
//! it consistent), `NOT_RECOVERABLE` (2: a write guard from a dead owner was dropped
//! unrepaired). Written only by whoever holds the writer word.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use bytemuck::Pod;

use super::raw_mutex::Acquired;
use super::wait::{self, Deadline, SPIN_LIMIT};
use crate::error::{Error, LockError, LockResult, Result};
use crate::primitive::{AtomicU32, AtomicU64, Ordering};
use crate::segment::{CreationMode, Kind, Layout, Options, Segment, MAX_TOKEN};

const PARKED: u32 = 1 << 31;
const TOKEN_MASK: u32 = !PARKED;

const CONSISTENT: u32 = 0;
const INCONSISTENT: u32 = 1;
const NOT_RECOVERABLE: u32 = 2;

/// How many processes can hold read locks at the same time.
const READER_SLOTS: usize = 64;
/// The most read guards one process holds through one slot; more is taken as corruption.
const MAX_COUNT: u32 = 1 << 30;

/// The first sleep slice after which a waiter checks owners' liveness; it doubles up to
/// [`MAX_SLICE`].
const FIRST_SLICE: Duration = Duration::from_millis(1);
const MAX_SLICE: Duration = Duration::from_millis(64);
/// Wake every sleeper.
const ALL: u32 = i32::MAX as u32;

/// The line every locker reads.
#[repr(C, align(128))]
struct Head {
    /// Writer token and PARKED flag (see the module docs).
    word: AtomicU32,
    /// CONSISTENT, INCONSISTENT or NOT_RECOVERABLE; written only by the word's holder.
    state: AtomicU32,
    /// 1 while a writer holding the word may sleep on it waiting for readers to leave.
    drain: AtomicU32,
    /// One past the highest reader slot index ever claimed (at most `READER_SLOTS`).
    high: AtomicU32,
}

/// One reader slot: `token << 32 | count`, or 0 when free.
#[repr(C, align(128))]
struct Slot {
    word: AtomicU64,
}

/// The shared state at the start of the body; the `T` follows at [`data_offset`].
#[repr(C)]
struct RwShared {
    head: Head,
    slots: [Slot; READER_SLOTS],
}

#[cfg(not(loom))]
const _: () = assert!(size_of::<Head>() == 128);
#[cfg(not(loom))]
const _: () = assert!(size_of::<Slot>() == 128);
#[cfg(not(loom))]
const _: () = assert!(size_of::<RwShared>() == 128 * (1 + READER_SLOTS));
const _: () = assert!(align_of::<RwShared>() == 128);

impl RwShared {
    fn new() -> RwShared {
        RwShared {
            head: Head {
                word: AtomicU32::new(0),
                state: AtomicU32::new(CONSISTENT),
                drain: AtomicU32::new(0),
                high: AtomicU32::new(0),
            },
            slots: std::array::from_fn(|_| Slot {
                word: AtomicU64::new(0),
            }),
        }
    }
}

/// Offset of the `T` in the body: after the shared state, aligned for `T`.
const fn data_offset<T>() -> usize {
    size_of::<RwShared>().next_multiple_of(align_of::<T>())
}

fn body_len<T>(cap: u64) -> Option<u64> {
    (size_of::<T>() as u64)
        .checked_mul(cap)?
        .checked_add(data_offset::<T>() as u64)
}

const fn pack(token: u32, count: u32) -> u64 {
    ((token as u64) << 32) | count as u64
}

/// Checks a slot value read from shared memory: `None` if free, else `(token, count)`.
fn unpack(i: usize, s: u64) -> Result<Option<(u32, u32)>> {
    if s == 0 {
        return Ok(None);
    }
    let (token, count) = ((s >> 32) as u32, s as u32);
    if token == 0 || token > MAX_TOKEN || count == 0 || count > MAX_COUNT {
        return Err(Error::corrupt(format!(
            "rwlock reader slot {i} holds {s:#018x}"
        )));
    }
    Ok(Some((token, count)))
}

/// A robust, process-shared reader-writer lock protecting a `T`: many readers or one
/// writer, in any processes.
///
/// A waiting writer keeps new readers out. A writer that dies holding the lock is reported
/// to the next locker as [`LockError::OwnerDied`] (readers keep being told until a writer
/// calls [`RwLockWriteGuard::mark_consistent`]; a write guard dropped unrepaired makes the
/// lock [`Error::NotRecoverable`]); readers that die holding read locks are reclaimed by
/// waiting writers. At most [`RwLock::READER_SLOTS`] processes read at the same time.
/// Uncontended locking makes no system call.
///
/// ```
/// # let name = format!("doc-rwlock-type-{}", std::process::id());
/// let lock = shmkit::RwLock::<u64>::create(&name, 1)?;
/// *lock.write()? += 1;
/// assert_eq!(*lock.read()?, 2);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct RwLock<T: Pod> {
    seg: Segment,
    shared: NonNull<RwShared>,
    data: NonNull<T>,
    /// The slot this process claimed last: a process-local hint, always `< READER_SLOTS`.
    hint: AtomicUsize,
}

// SAFETY: the pointers point into the mapping owned by `seg`; the shared state is atomics;
// the data is handed out only under the lock, and `T: Send` values may move between threads.
unsafe impl<T: Pod + Send> Send for RwLock<T> {}
// SAFETY: as above; readers on several threads share `&T`, hence `T: Sync`.
unsafe impl<T: Pod + Send + Sync> Sync for RwLock<T> {}

impl<T: Pod> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RwLock")
            .field("segment", &self.seg)
            .finish_non_exhaustive()
    }
}

impl<T: Pod> RwLock<T> {
    /// How many processes can hold read locks at the same time; a reader of a further
    /// process waits until one of them releases its last read guard.
    pub const READER_SLOTS: usize = READER_SLOTS;

    /// Creates the lock `name` holding `init`; fails if the name exists.
    pub fn create(name: &str, init: T) -> Result<Self> {
        Self::with_options(name, CreationMode::Create, init, &Options::new())
    }

    /// Opens the existing lock `name`, checking that it holds a `T`.
    pub fn open(name: &str) -> Result<Self> {
        Self::with_options(name, CreationMode::Open, T::zeroed(), &Options::new())
    }

    /// Opens the lock `name`, or creates it holding `init`. Of racing processes exactly one
    /// creates it; [`RwLock::is_creator`] tells which.
    pub fn open_or_create(name: &str, init: T) -> Result<Self> {
        Self::with_options(name, CreationMode::OpenOrCreate, init, &Options::new())
    }

    /// Creates an anonymous lock holding `init`, shared with children created by `fork`.
    pub fn anonymous(init: T) -> Result<Self> {
        Self::build(None, CreationMode::Create, init, &Options::new())
    }

    /// Creates and/or opens as `mode` says, with `opts` (mode bits, keep, trust).
    pub fn with_options(name: &str, mode: CreationMode, init: T, opts: &Options) -> Result<Self> {
        Self::build(Some(name), mode, init, opts)
    }

    fn build(name: Option<&str>, mode: CreationMode, init: T, opts: &Options) -> Result<Self> {
        if align_of::<T>() > 4096 {
            return Err(Error::InvalidArgument(
                "types aligned to more than a page are not supported".into(),
            ));
        }
        let layout = Layout {
            kind: Kind::RwLock,
            elem_size: size_of::<T>() as u64,
            elem_align: align_of::<T>() as u64,
            type_tag: 0,
            capacity: 1,
            body_len: body_len::<T>,
        };
        let init_body = |seg: &Segment| {
            let (shared, data) = Self::pointers(seg);
            // SAFETY: the body is 128-aligned and `data_offset + size_of::<T>()` bytes long
            // (capacity 1, `body_len`), `data_offset` is aligned for `T`; nobody else sees
            // the segment before it is published.
            unsafe {
                shared.as_ptr().write(RwShared::new());
                data.as_ptr().write(init);
            }
            Ok(())
        };
        let seg = match name {
            Some(name) => Segment::named(name, mode, layout, opts, init_body)?,
            None => Segment::anon(layout, init_body)?,
        };
        if seg.capacity() != 1 {
            return Err(Error::corrupt(
                "an rwlock segment must hold exactly one value",
            ));
        }
        let (shared, data) = Self::pointers(&seg);
        Ok(RwLock {
            seg,
            shared,
            data,
            hint: AtomicUsize::new(0),
        })
    }

    /// Pointers to the shared state and the data. Valid to use only once the capacity is
    /// known to be 1 (then `validate` has checked the body length against `body_len`).
    fn pointers(seg: &Segment) -> (NonNull<RwShared>, NonNull<T>) {
        let base = seg.as_ptr();
        // `wrapping_add`: computing the address needs no bound; it is dereferenced only
        // once the body is known to be long enough.
        let data = base.wrapping_add(data_offset::<T>()) as *mut T;
        (
            NonNull::new(base as *mut RwShared).expect("mapping is not null"),
            NonNull::new(data).expect("mapping is not null"),
        )
    }

    fn shared(&self) -> &RwShared {
        // SAFETY: points into the live mapping, initialised by the creator, made of atomics
        // only, so shared references are sound whatever peers do.
        unsafe { self.shared.as_ref() }
    }

    fn head(&self) -> &Head {
        &self.shared().head
    }

    /// Locks for reading, blocking while a writer holds or waits for the lock.
    ///
    /// `Err(LockError::OwnerDied(guard))` means a writer died holding the lock and no
    /// writer has marked the data consistent since; the caller holds a read lock.
    #[inline]
    pub fn read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        self.read_guard(self.lock_read(Deadline::NEVER))
    }

    /// Locks for reading if that is possible without waiting; otherwise
    /// `Error::WouldBlock`.
    pub fn try_read(&self) -> LockResult<RwLockReadGuard<'_, T>> {
        self.read_guard(self.try_lock_read())
    }

    /// Locks for reading, waiting at most `timeout`; `Error::Timeout` if it could not.
    pub fn read_timeout(&self, timeout: Duration) -> LockResult<RwLockReadGuard<'_, T>> {
        self.read_guard(self.lock_read(Deadline::after(timeout)))
    }

    /// Locks for writing, blocking until no reader or writer holds the lock.
    ///
    /// `Err(LockError::OwnerDied(guard))` means a writer died holding the lock; the caller
    /// holds it now, repairs the data and calls [`RwLockWriteGuard::mark_consistent`].
    #[inline]
    pub fn write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.write_guard(self.lock_write(Deadline::NEVER))
    }

    /// Locks for writing if that is possible without waiting; otherwise
    /// `Error::WouldBlock`. Dead readers and a dead writer are detected (one `fcntl` each).
    pub fn try_write(&self) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.write_guard(self.try_lock_write())
    }

    /// Locks for writing, waiting at most `timeout`; `Error::Timeout` if it could not.
    pub fn write_timeout(&self, timeout: Duration) -> LockResult<RwLockWriteGuard<'_, T>> {
        self.write_guard(self.lock_write(Deadline::after(timeout)))
    }

    /// Whether this handle created the lock.
    pub fn is_creator(&self) -> bool {
        self.seg.is_creator()
    }

    /// The segment the lock lives in.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    fn read_guard(&self, r: Result<(usize, u32, Acquired)>) -> LockResult<RwLockReadGuard<'_, T>> {
        let (slot, token, how) = r?;
        let g = RwLockReadGuard {
            lock: self,
            slot,
            token,
            _not_send: PhantomData,
        };
        match how {
            Acquired::Clean => Ok(g),
            Acquired::OwnerDied => Err(LockError::OwnerDied(g)),
        }
    }

    fn write_guard(&self, r: Result<Acquired>) -> LockResult<RwLockWriteGuard<'_, T>> {
        let how = r?;
        let g = RwLockWriteGuard {
            lock: self,
            owner_died: how == Acquired::OwnerDied,
            _not_send: PhantomData,
        };
        match how {
            Acquired::Clean => Ok(g),
            Acquired::OwnerDied => Err(LockError::OwnerDied(g)),
        }
    }

    // --- readers ---------------------------------------------------------------------

    /// Takes a read lock: `(slot, token, how)`.
    #[inline]
    fn lock_read(&self, deadline: Deadline) -> Result<(usize, u32, Acquired)> {
        let me = self.seg.token()?;
        loop {
            let slot = match self.claim_slot(me, Some(deadline))? {
                Some(slot) => slot,
                None => return Err(Error::Timeout), // not reached: a deadline waits
            };
            // SeqCst: the reader half of the handshake (module docs): our slot CAS comes
            // before this load in the total order, so a writer whose word CAS comes after
            // it sees our slot. Also acquires the last writer's release of the word, so its
            // writes to the data (and to `state`) are visible.
            let w = self.head().word.load(Ordering::SeqCst);
            if w & TOKEN_MASK == 0 {
                return self.reader_state(slot, me).map(|how| (slot, me, how));
            }
            // A writer holds or waits for the word: let it have the lock first.
            self.release_slot(slot, me);
            self.wait_for_writer(me, deadline)?;
        }
    }

    fn try_lock_read(&self) -> Result<(usize, u32, Acquired)> {
        let me = self.seg.token()?;
        // Twice: once more after taking the word back from a dead writer.
        for _ in 0..2 {
            let Some(slot) = self.claim_slot(me, None)? else {
                return Err(Error::WouldBlock);
            };
            // SeqCst: as in `lock_read`.
            let w = self.head().word.load(Ordering::SeqCst);
            let owner = w & TOKEN_MASK;
            if owner == 0 {
                return self.reader_state(slot, me).map(|how| (slot, me, how));
            }
            self.release_slot(slot, me);
            if owner == me || self.seg.is_alive(owner)? {
                break;
            }
            self.clean_dead_writer(w, me);
        }
        Err(Error::WouldBlock)
    }

    /// We hold a read lock through `slot`: look at the state the writers left.
    fn reader_state(&self, slot: usize, me: u32) -> Result<Acquired> {
        // Relaxed: written by the word's holders before their SeqCst (Release) release of
        // the word, which our SeqCst load of the word synchronised with.
        match self.head().state.load(Ordering::Relaxed) {
            CONSISTENT => Ok(Acquired::Clean),
            INCONSISTENT => Ok(Acquired::OwnerDied),
            NOT_RECOVERABLE => {
                self.release_slot(slot, me);
                Err(Error::NotRecoverable)
            }
            other => {
                self.release_slot(slot, me);
                Err(Error::corrupt(format!("rwlock state word holds {other}")))
            }
        }
    }

    /// Adds one read guard to a slot of ours or to a free one. Without a deadline, gives
    /// `None` when every slot belongs to other processes; with one, waits for a slot.
    #[inline]
    fn claim_slot(&self, me: u32, deadline: Option<Deadline>) -> Result<Option<usize>> {
        // Relaxed: a process-local hint; any index works, the CAS decides.
        let hint = self.hint.load(Ordering::Relaxed) % READER_SLOTS;
        if self.try_slot(hint, me)? {
            return Ok(Some(hint));
        }
        self.claim_slot_slow(me, deadline)
    }

    #[cold]
    fn claim_slot_slow(&self, me: u32, deadline: Option<Deadline>) -> Result<Option<usize>> {
        let mut slice = FIRST_SLICE;
        loop {
            for i in 0..READER_SLOTS {
                if self.try_slot(i, me)? {
                    // Relaxed: process-local hint.
                    self.hint.store(i, Ordering::Relaxed);
                    return Ok(Some(i));
                }
            }
            // Every slot belongs to another process.
            let Some(deadline) = deadline else {
                return Ok(None);
            };
            if self.reclaim_dead_readers()? {
                continue;
            }
            // Nothing to wake us when a slot frees: sleep a slice (cut short if a writer
            // comes or goes) and look again.
            // Relaxed: only the value to sleep on; the futex compares it again.
            let w = self.head().word.load(Ordering::Relaxed);
            wait::sleep(&self.head().word, w, deadline, Some(slice))?;
            slice = (slice * 2).min(MAX_SLICE);
        }
    }

    /// Tries to add one read guard to slot `i`: `Ok(false)` if it belongs to another process.
    #[inline]
    fn try_slot(&self, i: usize, me: u32) -> Result<bool> {
        let slot = &self.shared().slots[i].word;
        // Relaxed: only the expected value of the CAS, which re-validates.
        let mut s = slot.load(Ordering::Relaxed);
        loop {
            let new = match unpack(i, s)? {
                None => {
                    self.raise_high(i);
                    pack(me, 1)
                }
                Some((token, count)) if token == me => {
                    if count == MAX_COUNT {
                        return Err(Error::corrupt(format!(
                            "rwlock reader slot {i} is full ({MAX_COUNT} read guards)"
                        )));
                    }
                    s + 1
                }
                Some(_) => return Ok(false),
            };
            // SeqCst: the reader half of the handshake, paired with the writer's word CAS
            // and slot loads (see `lock_read`).
            match slot.compare_exchange_weak(s, new, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => return Ok(true),
                Err(cur) => s = cur,
            }
        }
    }

    /// Makes sure writers scan slot `i`: `high` must exceed it before the slot is claimed.
    #[inline]
    fn raise_high(&self, i: usize) {
        let high = &self.head().high;
        // SeqCst: comes before our slot CAS in the total order, so a writer whose SeqCst
        // load of `high` comes after our slot CAS sees `high > i` (it only ever grows).
        if high.load(Ordering::SeqCst) as usize <= i {
            high.fetch_max(i as u32 + 1, Ordering::SeqCst);
        }
    }

    /// Removes one read guard of ours from `slot`.
    #[inline]
    fn release_slot(&self, slot: usize, me: u32) {
        let word = &self.shared().slots[slot].word;
        // Relaxed: only the expected value of the CAS.
        let mut s = word.load(Ordering::Relaxed);
        loop {
            let new = match unpack(slot, s) {
                Ok(Some((token, 1))) if token == me => 0,
                Ok(Some((token, _))) if token == me => s - 1,
                // Not ours any more: only a peer scribbling on the slot does that, and
                // there is nothing left for us to release.
                _ => return,
            };
            // SeqCst: Release half: our reads of the data happen before the writes of a
            // writer whose SeqCst slot load sees this; and the reader half of the drain
            // handshake (see `wake_drainer`).
            match word.compare_exchange_weak(s, new, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => {
                    if new == 0 {
                        self.wake_drainer();
                    }
                    return;
                }
                Err(cur) => s = cur,
            }
        }
    }

    /// A slot was freed: wake the writer if it sleeps waiting for readers to leave.
    #[inline]
    fn wake_drainer(&self) {
        let drain = &self.head().drain;
        // SeqCst: pairs with the writer's SeqCst store of 1 before its re-scan
        // (store-buffering): either it sees our freed slot or we see its flag.
        if drain.load(Ordering::SeqCst) != 0 && drain.swap(0, Ordering::SeqCst) != 0 {
            wait::wake(drain, ALL);
        }
    }

    /// Waits until no writer holds the word, taking the word back from a dead writer.
    #[cold]
    fn wait_for_writer(&self, me: u32, deadline: Deadline) -> Result<()> {
        let word = &self.head().word;
        let mut spins = 0;
        let mut slice = FIRST_SLICE;
        let mut check_owner = false;
        loop {
            // Relaxed: a hint; the caller runs the handshake again once the word is free.
            let w = word.load(Ordering::Relaxed);
            let owner = w & TOKEN_MASK;
            if owner == 0 {
                return Ok(());
            }
            if check_owner && owner != me && !self.seg.is_alive(owner)? {
                self.clean_dead_writer(w, me);
                continue;
            }
            check_owner = false;
            if spins < SPIN_LIMIT {
                spins += 1;
                crate::primitive::spin_hint();
                continue;
            }
            if !self.park(w) {
                continue;
            }
            if !wait::sleep(word, w | PARKED, deadline, Some(slice))? {
                // The slice ran out with the writer still there: is it alive?
                check_owner = true;
                slice = (slice * 2).min(MAX_SLICE);
            }
        }
    }

    /// The writer `w & TOKEN_MASK` died holding the word: take the word over (exactly one
    /// process wins the CAS), record that the data may be torn, and release it.
    fn clean_dead_writer(&self, w: u32, me: u32) {
        // SeqCst: Acquire half: whatever the dead writer completed is visible to us.
        if self
            .head()
            .word
            .compare_exchange(w, me | (w & PARKED), Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            self.record_death();
            self.unlock_word();
        }
    }

    // --- writers ---------------------------------------------------------------------

    /// Takes the write lock.
    #[inline]
    fn lock_write(&self, deadline: Deadline) -> Result<Acquired> {
        let me = self.seg.token()?;
        // SeqCst: the writer half of the handshake (a reader whose slot CAS precedes this
        // in the total order is seen by our slot loads; a later one sees our token); its
        // Acquire half pairs with the previous holder's release in `unlock_word`.
        let how = if self
            .head()
            .word
            .compare_exchange(0, me, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
        {
            self.writer_state()?
        } else {
            self.lock_word_slow(me, deadline)?
        };
        if let Err(e) = self.drain(Some(deadline)) {
            self.unlock_word();
            return Err(e);
        }
        Ok(how)
    }

    fn try_lock_write(&self) -> Result<Acquired> {
        let me = self.seg.token()?;
        let word = &self.head().word;
        // SeqCst: as in `lock_write`.
        let how = match word.compare_exchange(0, me, Ordering::SeqCst, Ordering::Relaxed) {
            Ok(_) => self.writer_state()?,
            Err(w) => {
                let owner = w & TOKEN_MASK;
                let dead = owner != 0 && owner != me && !self.seg.is_alive(owner)?;
                if owner != 0 && !dead {
                    return Err(Error::WouldBlock);
                }
                // Free (with a stale PARKED) or held by a dead writer.
                // SeqCst: as in `lock_write`.
                if word
                    .compare_exchange(w, me | (w & PARKED), Ordering::SeqCst, Ordering::Relaxed)
                    .is_err()
                {
                    return Err(Error::WouldBlock);
                }
                if dead {
                    self.adopt_dead()?
                } else {
                    self.writer_state()?
                }
            }
        };
        if let Err(e) = self.drain(None) {
            self.unlock_word();
            return Err(e);
        }
        Ok(how)
    }

    #[cold]
    fn lock_word_slow(&self, me: u32, deadline: Deadline) -> Result<Acquired> {
        let word = &self.head().word;
        let mut spins = 0;
        let mut slice = FIRST_SLICE;
        let mut check_owner = false;
        loop {
            // Relaxed: only a hint for which CAS to try; every CAS re-validates.
            let w = word.load(Ordering::Relaxed);
            let owner = w & TOKEN_MASK;
            if owner == 0 {
                // SeqCst: as in `lock_write`.
                if word
                    .compare_exchange(w, me | (w & PARKED), Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    return self.writer_state();
                }
                continue;
            }
            if check_owner && owner != me && !self.seg.is_alive(owner)? {
                // The writer died holding the word. Exactly one waiter wins this CAS.
                // SeqCst: as in `lock_write`; the dead writer's completed writes are visible.
                if word
                    .compare_exchange(w, me | (w & PARKED), Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    return self.adopt_dead();
                }
                continue;
            }
            check_owner = false;
            if spins < SPIN_LIMIT {
                spins += 1;
                crate::primitive::spin_hint();
                continue;
            }
            if !self.park(w) {
                continue;
            }
            if !wait::sleep(word, w | PARKED, deadline, Some(slice))? {
                check_owner = true;
                slice = (slice * 2).min(MAX_SLICE);
            }
        }
    }

    /// Sets PARKED in the word (held by a writer, value `w`) before sleeping on it; false
    /// if the word changed meanwhile.
    fn park(&self, w: u32) -> bool {
        w & PARKED != 0
            // Relaxed: the releasing swap is an RMW on the same word: it sees this write
            // (and wakes us) or makes this CAS fail.
            || self
                .head()
                .word
                .compare_exchange(w, w | PARKED, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// We hold the word: look at the state the previous holder left.
    fn writer_state(&self) -> Result<Acquired> {
        // Relaxed: written only by holders of the word, before their release that our
        // SeqCst CAS synchronised with.
        match self.head().state.load(Ordering::Relaxed) {
            CONSISTENT => Ok(Acquired::Clean),
            INCONSISTENT => Ok(Acquired::OwnerDied),
            NOT_RECOVERABLE => {
                self.unlock_word();
                Err(Error::NotRecoverable)
            }
            other => {
                self.unlock_word();
                Err(Error::corrupt(format!("rwlock state word holds {other}")))
            }
        }
    }

    /// We took the word over from a dead writer.
    fn adopt_dead(&self) -> Result<Acquired> {
        if self.record_death() {
            Ok(Acquired::OwnerDied)
        } else {
            self.unlock_word();
            Err(Error::NotRecoverable)
        }
    }

    /// We hold the word after its writer died: mark the data inconsistent, unless the lock
    /// is already not recoverable (then false).
    fn record_death(&self) -> bool {
        let state = &self.head().state;
        // Relaxed: we hold the word; our release of it publishes the store.
        if state.load(Ordering::Relaxed) == NOT_RECOVERABLE {
            return false;
        }
        state.store(INCONSISTENT, Ordering::Relaxed);
        true
    }

    /// We hold the word: wait until every reader has left, reclaiming dead readers' slots.
    /// Without a deadline, looks once (with one liveness check) and gives `WouldBlock`.
    #[inline]
    fn drain(&self, deadline: Option<Deadline>) -> Result<()> {
        if self.readers_present()? {
            self.drain_slow(deadline)
        } else {
            Ok(())
        }
    }

    #[cold]
    fn drain_slow(&self, deadline: Option<Deadline>) -> Result<()> {
        let Some(deadline) = deadline else {
            self.reclaim_dead_readers()?;
            return if self.readers_present()? {
                Err(Error::WouldBlock)
            } else {
                Ok(())
            };
        };
        for _ in 0..SPIN_LIMIT {
            crate::primitive::spin_hint();
            if !self.readers_present()? {
                return Ok(());
            }
        }
        let drain = &self.head().drain;
        let mut slice = FIRST_SLICE;
        let result = loop {
            // SeqCst: the writer half of the drain handshake with `wake_drainer`: a reader
            // that frees its slot after our re-scan below sees this flag and wakes us.
            drain.store(1, Ordering::SeqCst);
            match self.readers_present() {
                Ok(false) => break Ok(()),
                Ok(true) => {}
                Err(e) => break Err(e),
            }
            match wait::sleep(drain, 1, deadline, Some(slice)) {
                Ok(true) => {}
                Ok(false) => {
                    // The slice ran out with readers left: are they alive?
                    if let Err(e) = self.reclaim_dead_readers() {
                        break Err(e);
                    }
                    slice = (slice * 2).min(MAX_SLICE);
                }
                Err(e) => break Err(e),
            }
        };
        // Relaxed: a hint for readers only; a stale 1 costs one wake syscall.
        drain.store(0, Ordering::Relaxed);
        result
    }

    /// Whether any reader slot is taken (the writer half of the handshake).
    fn readers_present(&self) -> Result<bool> {
        // SeqCst: after our word CAS in the total order (see `raise_high`).
        let high = self.head().high.load(Ordering::SeqCst) as usize;
        if high > READER_SLOTS {
            return Err(Error::corrupt(format!(
                "rwlock slot high-water mark is {high} (at most {READER_SLOTS})"
            )));
        }
        for (i, slot) in self.shared().slots[..high].iter().enumerate() {
            // SeqCst: the writer half of the handshake; its Acquire half pairs with the
            // release of the slot, so the readers' reads come before our writes.
            if unpack(i, slot.word.load(Ordering::SeqCst))?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Frees the slots of readers that died. Returns whether it freed any.
    fn reclaim_dead_readers(&self) -> Result<bool> {
        let mut freed = false;
        for (i, slot) in self.shared().slots.iter().enumerate() {
            // Relaxed: the CAS below re-validates the exact value.
            let s = slot.word.load(Ordering::Relaxed);
            let Some((token, _)) = unpack(i, s)? else {
                continue;
            };
            if self.seg.is_alive(token)? {
                continue;
            }
            // SeqCst: like a release by the dead reader (its reads are long over); the
            // CAS fails if the slot changed since we looked.
            if slot
                .word
                .compare_exchange(s, 0, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                freed = true;
            }
        }
        Ok(freed)
    }

    /// Releases the writer word (held by us) and wakes every sleeper if any announced
    /// itself.
    #[inline]
    fn unlock_word(&self) {
        // SeqCst: Release half: publishes the critical section and `state` to the next
        // holder's CAS and to readers' SeqCst loads of the word.
        let old = self.head().word.swap(0, Ordering::SeqCst);
        if old & PARKED != 0 {
            wait::wake(&self.head().word, ALL);
        }
    }
}

/// RAII guard of a read lock on an [`RwLock`]; derefs to the protected data, in place in
/// shared memory. Releases the read lock on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockReadGuard<'a, T: Pod> {
    lock: &'a RwLock<T>,
    slot: usize,
    token: u32,
    /// Guards stay on the thread that took them, as std's do.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared read guard only hands out `&T`.
unsafe impl<T: Pod + Sync> Sync for RwLockReadGuard<'_, T> {}

impl<T: Pod> Deref for RwLockReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds a read lock: no writer writes the data meanwhile (a
        // cooperating peer writes only under the write lock); the pointer is aligned and in
        // the live mapping; any bytes are a valid `T: Pod`.
        unsafe { self.lock.data.as_ref() }
    }
}

impl<T: Pod> Drop for RwLockReadGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.release_slot(self.slot, self.token);
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// RAII guard of the write lock on an [`RwLock`]; derefs (mutably) to the protected data,
/// in place in shared memory. Releases the lock on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct RwLockWriteGuard<'a, T: Pod> {
    lock: &'a RwLock<T>,
    owner_died: bool,
    /// Guards stay on the thread that took them, as std's do.
    _not_send: PhantomData<*const ()>,
}

// SAFETY: a shared write guard only hands out `&T`.
unsafe impl<T: Pod + Sync> Sync for RwLockWriteGuard<'_, T> {}

impl<T: Pod> RwLockWriteGuard<'_, T> {
    /// Marks the protected data consistent again after a writer died. Call it once the data
    /// is repaired; without it, dropping the guard makes the lock not recoverable.
    pub fn mark_consistent(this: &Self) {
        // Relaxed: we hold the word; published by the release in `unlock_word`.
        this.lock.head().state.store(CONSISTENT, Ordering::Relaxed);
    }

    /// Whether this guard was obtained after a writer died and the data has not been
    /// marked consistent since.
    pub fn is_inconsistent(this: &Self) -> bool {
        // Relaxed: we hold the word.
        this.owner_died && this.lock.head().state.load(Ordering::Relaxed) == INCONSISTENT
    }
}

impl<T: Pod> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the write lock: no other guard exists, and cooperating
        // peers do not touch the data without a lock; aligned, in the live mapping, Pod.
        unsafe { self.lock.data.as_ref() }
    }
}

impl<T: Pod> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`; `&mut self` makes the access unique in this process.
        unsafe { &mut *self.lock.data.as_ptr() }
    }
}

impl<T: Pod> Drop for RwLockWriteGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if Self::is_inconsistent(self) {
            // Relaxed: we hold the word; published by the release in `unlock_word`.
            self.lock
                .head()
                .state
                .store(NOT_RECOVERABLE, Ordering::Relaxed);
        }
        self.lock.unlock_word();
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_values_are_validated() {
        assert_eq!(unpack(0, 0).unwrap(), None);
        assert_eq!(unpack(0, pack(5, 3)).unwrap(), Some((5, 3)));
        for bad in [
            pack(0, 1),
            pack(5, 0),
            pack(MAX_TOKEN + 1, 1),
            pack(5, MAX_COUNT + 1),
            u64::MAX,
        ] {
            assert!(
                matches!(unpack(0, bad), Err(Error::Corrupt { .. })),
                "{bad:#x}"
            );
        }
    }

    #[test]
    fn data_follows_the_shared_state_aligned() {
        assert_eq!(data_offset::<u8>(), size_of::<RwShared>());
        assert_eq!(data_offset::<u64>(), size_of::<RwShared>());
        #[repr(C, align(4096))]
        #[derive(Clone, Copy)]
        struct Page([u8; 4096]);
        assert_eq!(data_offset::<Page>() % 4096, 0);
        assert!(data_offset::<Page>() >= size_of::<RwShared>());
    }

    #[test]
    fn readers_share_and_writers_exclude_between_threads() {
        let l = RwLock::<u64>::anonymous(7).unwrap();
        let (a, b) = (l.read().unwrap(), l.try_read().unwrap());
        assert_eq!((*a, *b), (7, 7));
        assert!(matches!(
            l.try_write(),
            Err(LockError::Error(Error::WouldBlock))
        ));
        drop((a, b));
        let mut w = l.try_write().unwrap();
        *w += 1;
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(matches!(
                    l.try_read(),
                    Err(LockError::Error(Error::WouldBlock))
                ));
                assert!(matches!(
                    l.read_timeout(Duration::from_millis(5)),
                    Err(LockError::Error(Error::Timeout))
                ));
            });
        });
        drop(w);
        assert_eq!(*l.read().unwrap(), 8);
    }
}
