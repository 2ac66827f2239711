//! The raw reader-writer protocol behind [`RwLock<T>`](crate::RwLock): the shared head
//! line, the reader slots, the reader/writer handshake, the drain and the reclaiming of
//! dead readers. Nothing here knows the protected `T` (see `rwlock` for the typed lock and
//! its guards).
//!
//! The shared state is a [`Head`] line and a table of [`READER_SLOTS`] reader slots, each on
//! its own 128-byte line; the `T` follows it in the segment.
//!
//! # The writer word (`Head::writer`)
//! A `raw_mutex` lock word of the [`Handshake`] flavor: a liveness token (see the `segment`
//! module) in the low 31 bits and a PARKED flag in bit 31, with its state word beside it.
//!
//! | word              | meaning                                                          |
//! |-------------------|------------------------------------------------------------------|
//! | `0`               | no writer: readers may enter                                     |
//! | `token`           | the writer `token` owns it: it waits for readers to leave, or writes; new readers stay out |
//! | `token \| PARKED` | the same, and readers or writers may be sleeping on the word     |
//!
//! A writer takes it with a CAS `0 → token`, then waits until every reader slot is empty
//! (the *drain*), then writes. Release swaps in `0` and wakes every sleeper if PARKED was
//! set. A waiter asks the kernel, about once per sleep slice (by the clock, see
//! `wait::wait`), whether the owner's liveness lock is still held; if not, it takes the
//! word over with a CAS `dead → token` (exactly one wins) and records the death in the
//! state word; a writer keeps the word, a reader releases it.
//!
//! # Reader slots (`slots[i]`, an `AtomicU64`)
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
//! # The handshake
//! A reader's slot CAS followed by its load of the word, against a writer's word CAS
//! followed by its loads of the slots, is the store-buffering pattern: with all four
//! `SeqCst`, at least one side sees the other, so a reader never reads while a writer
//! writes. The drain wait is the same pattern: the writer stores `drain = 1` and re-scans
//! before sleeping on `drain`; a reader that frees a slot loads `drain` and, if set, clears
//! it and wakes the writer.
//!
//! # The state word, as in `raw_mutex`
//! `CONSISTENT` (0), `INCONSISTENT` (1: a writer died holding the lock, until a writer marks
//! it consistent), `NOT_RECOVERABLE` (2: a write guard from a dead owner was dropped
//! unrepaired). Written only by whoever holds the writer word.

use std::sync::atomic::AtomicUsize;

use super::raw_mutex::{Acquired, Handshake, RawMutex, TOKEN_MASK};
use super::wait::{self, Announced, Deadline, Waiter};
use crate::error::{Error, Result};
use crate::primitive::{AtomicU32, AtomicU64, Ordering};
use crate::segment::{Segment, MAX_TOKEN};

/// How many processes can hold read locks at the same time.
pub(crate) const READER_SLOTS: usize = 64;
/// The most read guards one process holds through one slot; more is taken as corruption.
const MAX_COUNT: u32 = 1 << 30;

/// Wake every sleeper.
const ALL: u32 = i32::MAX as u32;

/// The line every locker reads.
#[derive(Debug)]
#[repr(C, align(128))]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
struct Head {
    /// Writer word (token and PARKED flag) and state word (see the module docs).
    writer: RawMutex<Handshake>,
    /// 1 while a writer holding the word may sleep on it waiting for readers to leave.
    drain: AtomicU32,
    /// One past the highest reader slot index ever claimed (at most `READER_SLOTS`).
    high: AtomicU32,
}

/// One reader slot: `token << 32 | count`, or 0 when free.
#[derive(Debug)]
#[repr(C, align(128))]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
struct Slot {
    word: AtomicU64,
}

/// The shared state at the start of an rwlock's body (the `T` follows it).
#[derive(Debug)]
#[repr(C)]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
pub(crate) struct RwShared {
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
    pub(crate) fn new() -> RwShared {
        RwShared {
            head: Head {
                writer: RawMutex::new(),
                drain: AtomicU32::new(0),
                high: AtomicU32::new(0),
            },
            slots: std::array::from_fn(|_| Slot {
                word: AtomicU64::new(0),
            }),
        }
    }
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

/// One process's view of an rwlock: the shared state, the segment it lives in (for
/// tokens and liveness) and the process-local hint of the slot it claimed last.
#[derive(Clone, Copy)]
pub(crate) struct RawRwLock<'a> {
    shared: &'a RwShared,
    seg: &'a Segment,
    /// Always taken modulo `READER_SLOTS`.
    hint: &'a AtomicUsize,
}

impl<'a> RawRwLock<'a> {
    pub(crate) fn new(shared: &'a RwShared, seg: &'a Segment, hint: &'a AtomicUsize) -> Self {
        RawRwLock { shared, seg, hint }
    }

    fn head(&self) -> &'a Head {
        &self.shared.head
    }

    /// The writer word and its state word.
    pub(crate) fn writer(&self) -> &'a RawMutex<Handshake> {
        &self.shared.head.writer
    }

    // --- readers ---------------------------------------------------------------------

    /// Takes a read lock: `(slot, token, how)`.
    #[inline]
    pub(crate) fn lock_read(&self, deadline: Deadline) -> Result<(usize, u32, Acquired)> {
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
            let w = self.writer().word().load(Ordering::SeqCst);
            if w & TOKEN_MASK == 0 {
                return self.reader_state(slot, me).map(|how| (slot, me, how));
            }
            // A writer holds or waits for the word: let it have the lock first.
            self.release_slot(slot, me);
            self.wait_for_writer(me, deadline)?;
        }
    }

    pub(crate) fn try_lock_read(&self) -> Result<(usize, u32, Acquired)> {
        let me = self.seg.token()?;
        // Twice: once more after taking the word back from a dead writer.
        for _ in 0..2 {
            let Some(slot) = self.claim_slot(me, None)? else {
                return Err(Error::WouldBlock);
            };
            // SeqCst: as in `lock_read`.
            let w = self.writer().word().load(Ordering::SeqCst);
            if w & TOKEN_MASK == 0 {
                return self.reader_state(slot, me).map(|how| (slot, me, how));
            }
            self.release_slot(slot, me);
            if !self.writer().release_if_dead(self.seg, me, w)? {
                break;
            }
        }
        Err(Error::WouldBlock)
    }

    /// We hold a read lock through `slot`: look at the state the writers left (the
    /// writer word's state, read after our SeqCst load of the word).
    fn reader_state(&self, slot: usize, me: u32) -> Result<Acquired> {
        self.writer()
            .state()
            .inspect_err(|_| self.release_slot(slot, me))
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
        match deadline {
            None => self.scan_slots(me),
            Some(deadline) => wait::wait(&mut SlotWaiter { lock: *self, me }, deadline).map(Some),
        }
    }

    /// Claims the first slot of ours or free: `None` if every slot belongs to another
    /// process.
    fn scan_slots(&self, me: u32) -> Result<Option<usize>> {
        for i in 0..READER_SLOTS {
            if self.try_slot(i, me)? {
                // Relaxed: process-local hint.
                self.hint.store(i, Ordering::Relaxed);
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// Tries to add one read guard to slot `i`: `Ok(false)` if it belongs to another process.
    #[inline]
    fn try_slot(&self, i: usize, me: u32) -> Result<bool> {
        let slot = &self.shared.slots[i].word;
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
    pub(crate) fn release_slot(&self, slot: usize, me: u32) {
        let word = &self.shared.slots[slot].word;
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
        wait::wait(
            &mut WriterWaiter {
                lock: *self,
                me,
                seen: 0,
            },
            deadline,
        )
    }

    // --- writers ---------------------------------------------------------------------

    /// Takes the write lock.
    #[inline]
    pub(crate) fn lock_write(&self, deadline: Deadline) -> Result<Acquired> {
        // The word's SeqCst CAS (the `Handshake` flavor) is the writer half of the
        // handshake: a reader whose slot CAS precedes it in the total order is seen by our
        // slot loads in `drain`; a later one sees our token.
        let how = self.writer().lock(self.seg, deadline)?;
        if let Err(e) = self.drain(Some(deadline)) {
            self.unlock_write();
            return Err(e);
        }
        Ok(how)
    }

    pub(crate) fn try_lock_write(&self) -> Result<Acquired> {
        // SeqCst, as in `lock_write`.
        let how = self.writer().try_lock(self.seg)?;
        if let Err(e) = self.drain(None) {
            self.unlock_write();
            return Err(e);
        }
        Ok(how)
    }

    /// Releases the writer word (held by us) and wakes every sleeper if any announced
    /// itself (SeqCst: publishes the critical section and the state word to the next
    /// holder's CAS and to readers' SeqCst loads of the word).
    #[inline]
    pub(crate) fn unlock_write(&self) {
        self.writer().unlock();
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
        let mut drainer = Drainer {
            lock: *self,
            announced: false,
        };
        let result = wait::wait(&mut drainer, deadline);
        if drainer.announced {
            // Relaxed: a hint for readers only; a stale 1 costs one wake syscall.
            self.head().drain.store(0, Ordering::Relaxed);
        }
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
        for (i, slot) in self.shared.slots[..high].iter().enumerate() {
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
        for (i, slot) in self.shared.slots.iter().enumerate() {
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
}

/// A reader of a further process, waiting for a reader slot (every slot belongs to other
/// processes). Nothing wakes it when a slot frees: it sleeps on the writer word (cut short
/// if a writer comes or goes) a slice at a time, and looks again.
struct SlotWaiter<'a> {
    lock: RawRwLock<'a>,
    me: u32,
}

impl Waiter for SlotWaiter<'_> {
    type Output = usize;

    fn word(&self) -> &AtomicU32 {
        self.lock.writer().word()
    }

    fn attempt(&mut self) -> Result<Option<usize>> {
        self.lock.scan_slots(self.me)
    }

    fn announce(&mut self) -> Result<Announced<usize>> {
        // Relaxed: only the value to sleep on; the futex compares it again.
        Ok(Announced::Sleep(self.word().load(Ordering::Relaxed)))
    }

    fn check(&mut self) -> Result<Option<usize>> {
        if self.lock.reclaim_dead_readers()? {
            return self.attempt();
        }
        Ok(None)
    }

    fn last_chance(&mut self) -> Result<usize> {
        self.lock.reclaim_dead_readers()?;
        self.attempt()?.ok_or(Error::Timeout)
    }
}

/// A reader waiting for the writer word to clear (the caller then runs the handshake
/// again); it takes the word back from a dead writer.
struct WriterWaiter<'a> {
    lock: RawRwLock<'a>,
    me: u32,
    /// The word as the last attempt saw it.
    seen: u32,
}

impl Waiter for WriterWaiter<'_> {
    type Output = ();

    fn word(&self) -> &AtomicU32 {
        self.lock.writer().word()
    }

    fn attempt(&mut self) -> Result<Option<()>> {
        // Relaxed: a hint; the caller runs the handshake again once the word is free.
        self.seen = self.word().load(Ordering::Relaxed);
        Ok((self.seen & TOKEN_MASK == 0).then_some(()))
    }

    fn announce(&mut self) -> Result<Announced<()>> {
        Ok(match self.lock.writer().announce_sleeper(self.seen) {
            Some(expected) => Announced::Sleep(expected),
            None => Announced::Retry,
        })
    }

    fn check(&mut self) -> Result<Option<()>> {
        // A dead writer: take the word over, record the death, release it.
        let dead = self
            .lock
            .writer()
            .release_if_dead(self.lock.seg, self.me, self.seen)?;
        if dead {
            return self.attempt();
        }
        Ok(None)
    }

    fn last_chance(&mut self) -> Result<()> {
        if self.attempt()?.is_some() {
            return Ok(());
        }
        let dead = self
            .lock
            .writer()
            .release_if_dead(self.lock.seg, self.me, self.seen)?;
        if dead && self.attempt()?.is_some() {
            return Ok(());
        }
        Err(Error::Timeout)
    }
}

/// A writer holding the word, waiting for the readers to leave (the drain handshake).
struct Drainer<'a> {
    lock: RawRwLock<'a>,
    /// Whether we stored `drain = 1` (to be cleared when the wait ends).
    announced: bool,
}

impl Waiter for Drainer<'_> {
    type Output = ();

    fn word(&self) -> &AtomicU32 {
        &self.lock.head().drain
    }

    fn attempt(&mut self) -> Result<Option<()>> {
        Ok((!self.lock.readers_present()?).then_some(()))
    }

    fn announce(&mut self) -> Result<Announced<()>> {
        // SeqCst: the writer half of the drain handshake with `wake_drainer`: a reader
        // that frees its slot after our re-scan below sees this flag and wakes us.
        self.word().store(1, Ordering::SeqCst);
        self.announced = true;
        Ok(match self.attempt()? {
            Some(()) => Announced::Ready(()),
            None => Announced::Sleep(1),
        })
    }

    fn check(&mut self) -> Result<Option<()>> {
        // Readers left for a slice: are they alive?
        if self.lock.reclaim_dead_readers()? {
            return self.attempt();
        }
        Ok(None)
    }

    fn last_chance(&mut self) -> Result<()> {
        self.lock.reclaim_dead_readers()?;
        self.attempt()?.ok_or(Error::Timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(not(loom))]
    fn the_shared_state_starts_all_zero() {
        crate::object::assert_zero_start(RwShared::new(), |_| ());
    }

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
}
