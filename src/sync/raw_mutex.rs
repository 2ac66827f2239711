//! The robust lock word behind [`Mutex`](crate::Mutex), [`Value`](crate::Value),
//! [`Array`](crate::Array), [`ReentrantMutex`](crate::ReentrantMutex), and the writer word
//! of [`RwLock`](crate::RwLock) (see `raw_rwlock`).
//!
//! # Why not `pthread_mutex_t`
//! POSIX robust mutexes would give death detection through the kernel's robust-futex
//! list, but glibc links every held robust mutex into a per-thread list *through pointers
//! stored inside the mutex*, that is, in memory every peer can write. A peer that scribbles
//! on those pointers makes our unlock write through them: out-of-bounds writes driven by
//! another process, which this crate promises never to allow. So the lock word is ours, a
//! futex word that holds no pointer, and death is detected through a kernel-released lock.
//!
//! # The lock word
//! `word: AtomicU32` holds the owner's liveness token (see the `segment` module) in its
//! low 31 bits and a PARKED flag in bit 31:
//!
//! | word              | meaning                                              |
//! |-------------------|------------------------------------------------------|
//! | `0`               | unlocked                                             |
//! | `token`           | locked by the process that registered `token`        |
//! | `token \| PARKED` | locked, and somebody may be sleeping on the word     |
//!
//! Transitions: lock `0 → token` (one CAS: the fast path); a waiter sets PARKED before it
//! sleeps, and a waiter that has slept once acquires with `0 → token | PARKED` so that
//! later sleepers are not forgotten; unlock swaps in `0` and makes the wake syscall only if
//! PARKED was set. A waiter asks the kernel, about once per sleep slice (by the clock, see
//! `wait::wait`), whether the owner's liveness lock is still held; if not, the owner died,
//! and the waiter takes the word over with a CAS `dead → token`, so exactly one waiter
//! inherits the lock. At its deadline a waiter makes one last attempt, which also takes a
//! dead owner's word over.
//!
//! # Flavors
//! The same word serves two locks, which differ only in what a [`Flavor`] says:
//!
//! | flavor | used by | take / release orderings | a release wakes |
//! |---|---|---|---|
//! | [`Exclusive`] | mutexes | Acquire / Release | one sleeper (so a waiter that slept keeps PARKED when it takes the word) |
//! | [`Handshake`] | the rwlock's writer word | SeqCst / SeqCst (the store-buffering handshake with readers, see `raw_rwlock`) | every sleeper (readers sleep on the word too) |
//!
//! # The state word
//! `state: AtomicU32`, written only by the lock's holder:
//!
//! | state | meaning |
//! |---|---|
//! | `CONSISTENT` (0) | normal |
//! | `INCONSISTENT` (1) | an owner died holding the lock; the holder must repair and mark consistent |
//! | `NOT_RECOVERABLE` (2) | a holder released an inconsistent lock without repairing: every later lock fails |
//!
//! A holder that dies while repairing leaves `INCONSISTENT`, so the next one is told too.
//!
//! # Limits
//! Tokens are unique among the live processes of a segment (the kernel lock decides), but
//! a token can be issued again after 2^31 registrations in one segment, or if a peer
//! rewrites the counter. A process that receives the token of a dead owner still recorded
//! in a lock word sees that word as held by itself and waits (with `lock_timeout`, until
//! its deadline). A peer that can write the lock word can always make waiters wait; the
//! timed forms bound that.

use std::fmt;
use std::marker::PhantomData;

use super::wait::{self, Announced, Deadline, Waiter};
use crate::error::{Error, Result};
use crate::primitive::{AtomicU32, Ordering};
use crate::segment::Segment;

/// The sleeper flag of the word (bit 31: the crate's `wait::WAITERS`).
const PARKED: u32 = wait::WAITERS;
/// The owner's token in the word.
pub(crate) const TOKEN_MASK: u32 = !PARKED;

const CONSISTENT: u32 = 0;
const INCONSISTENT: u32 = 1;
const NOT_RECOVERABLE: u32 = 2;

/// How a lock word is used (see the module docs).
pub(crate) trait Flavor {
    /// Success ordering of the CASes that take the word: at least Acquire, pairing with
    /// [`Flavor::RELEASE`] of the previous holder's release.
    const ACQUIRE: Ordering;
    /// Ordering of the swap that releases the word: at least Release, pairing with
    /// [`Flavor::ACQUIRE`] of the next holder.
    const RELEASE: Ordering;
    /// How many sleepers a release wakes.
    const WAKE: u32;
    /// What the lock is called in error messages.
    const NAME: &'static str;
}

/// A mutex's word: only lockers sleep on it, and a release wakes one of them.
#[derive(Debug)]
pub(crate) enum Exclusive {}

impl Flavor for Exclusive {
    const ACQUIRE: Ordering = Ordering::Acquire;
    const RELEASE: Ordering = Ordering::Release;
    const WAKE: u32 = 1;
    const NAME: &'static str = "mutex";
}

/// The rwlock's writer word: SeqCst, as taking and releasing it are the writer's halves of
/// the store-buffering handshake with readers (see `raw_rwlock`); readers sleep on it too,
/// so a release wakes everybody.
#[derive(Debug)]
pub(crate) enum Handshake {}

impl Flavor for Handshake {
    const ACQUIRE: Ordering = Ordering::SeqCst;
    const RELEASE: Ordering = Ordering::SeqCst;
    const WAKE: u32 = i32::MAX as u32;
    const NAME: &'static str = "rwlock";
}

/// The shared part of a robust mutex (or of an rwlock's writer side).
#[repr(C)]
pub(crate) struct RawMutex<F: Flavor = Exclusive> {
    /// Owner token and PARKED flag (see the module docs).
    word: AtomicU32,
    /// CONSISTENT, INCONSISTENT or NOT_RECOVERABLE (see the module docs).
    state: AtomicU32,
    _flavor: PhantomData<F>,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<RawMutex>() == 8);

// SAFETY: two std atomics (zero is a valid value of each) and a zero-sized marker: all-zero
// bytes are a valid `RawMutex`, and its initial state (unlocked, consistent).
#[cfg(not(loom))]
unsafe impl<F: Flavor> bytemuck::Zeroable for RawMutex<F> {}
#[cfg(not(loom))]
const _: () = assert!(std::mem::align_of::<RawMutex>() == 4);
#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<RawMutex<Handshake>>() == 8);

impl<F: Flavor> fmt::Debug for RawMutex<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawMutex")
            .field("word", &self.word)
            .field("state", &self.state)
            .finish()
    }
}

/// How a lock was acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Normally.
    Clean,
    /// From (or after) an owner that died: the data may be inconsistent.
    OwnerDied,
}

impl Acquired {
    /// The guard `g` of a lock acquired this way, as the recovering calls return it.
    #[inline]
    pub(crate) fn result<G>(self, g: G) -> crate::error::LockResult<G> {
        match self {
            Acquired::Clean => Ok(g),
            Acquired::OwnerDied => Err(crate::error::LockError::OwnerDied(g)),
        }
    }
}

impl<F: Flavor> RawMutex<F> {
    /// Locks, waiting until `deadline`. `seg` is the segment the mutex lives in (for
    /// liveness).
    #[inline]
    pub(crate) fn lock(&self, seg: &Segment, deadline: Deadline) -> Result<Acquired> {
        let me = seg.token()?;
        // F::ACQUIRE: pairs with F::RELEASE of the swap in `unlock`: the previous holder's
        // writes to the protected data are visible once we own the word.
        if self
            .word
            .compare_exchange(0, me, F::ACQUIRE, Ordering::Relaxed)
            .is_ok()
        {
            return self.check_state();
        }
        self.lock_slow(seg, me, deadline)
    }

    #[cold]
    fn lock_slow(&self, seg: &Segment, me: u32, deadline: Deadline) -> Result<Acquired> {
        wait::wait(
            &mut Locker {
                lock: self,
                seg,
                me,
                seen: 0,
                slept: false,
            },
            deadline,
        )
    }

    /// Tries once, without waiting. A dead owner is detected (one `fcntl`) and taken over.
    pub(crate) fn try_lock(&self, seg: &Segment) -> Result<Acquired> {
        let me = seg.token()?;
        self.try_lock_with(seg, me)
    }

    fn try_lock_with(&self, seg: &Segment, me: u32) -> Result<Acquired> {
        // F::ACQUIRE: as in `lock`.
        let w = match self
            .word
            .compare_exchange(0, me, F::ACQUIRE, Ordering::Relaxed)
        {
            Ok(_) => return self.check_state(),
            Err(w) => w,
        };
        if w & TOKEN_MASK == 0 {
            // Free but PARKED: sleepers remain, keep the flag.
            // F::ACQUIRE: as in `lock`.
            if self
                .word
                .compare_exchange(w, me | PARKED, F::ACQUIRE, Ordering::Relaxed)
                .is_ok()
            {
                return self.check_state();
            }
            return Err(Error::WouldBlock);
        }
        if w & TOKEN_MASK != me {
            if let Some(how) = self.take_over_if_dead(seg, me, w)? {
                return Ok(how);
            }
        }
        Err(Error::WouldBlock)
    }

    /// If the owner recorded in `w` is dead, takes the word over (exactly one waiter wins
    /// the CAS) and reports `OwnerDied`.
    fn take_over_if_dead(&self, seg: &Segment, me: u32, w: u32) -> Result<Option<Acquired>> {
        if seg.is_alive(w & TOKEN_MASK)? || !self.take_over(me, w) {
            return Ok(None);
        }
        self.adopt_dead().map(Some)
    }

    /// The owner recorded in `w` is dead: takes the word over (exactly one caller wins the
    /// CAS). Whether we did.
    fn take_over(&self, me: u32, w: u32) -> bool {
        // F::ACQUIRE: the dead owner's writes (whatever it completed) are visible, as
        // after its release.
        self.word
            .compare_exchange(w, me | (w & PARKED), F::ACQUIRE, Ordering::Relaxed)
            .is_ok()
    }

    /// For a caller that does not want the lock (a reader of an rwlock): if the owner
    /// recorded in `w` (not us) is dead, takes the word over (exactly one caller wins),
    /// records the death in the state word, and releases the word. Whether the owner was
    /// dead (the word has moved on either way).
    pub(crate) fn release_if_dead(&self, seg: &Segment, me: u32, w: u32) -> Result<bool> {
        let owner = w & TOKEN_MASK;
        if owner == 0 || owner == me || seg.is_alive(owner)? {
            return Ok(false);
        }
        if self.take_over(me, w) {
            self.record_death();
            self.unlock();
        }
        Ok(true)
    }

    /// The state the word's holders left, decoded (the caller holds the word, or has
    /// synchronised with its last release). Not recoverable and corrupt states are errors.
    pub(crate) fn state(&self) -> Result<Acquired> {
        // Relaxed: written only by holders, before their release of the word (F::RELEASE)
        // that the caller's acquire synchronised with (our F::ACQUIRE CAS, or an rwlock
        // reader's SeqCst load of the word).
        match self.state.load(Ordering::Relaxed) {
            CONSISTENT => Ok(Acquired::Clean),
            INCONSISTENT => Ok(Acquired::OwnerDied),
            NOT_RECOVERABLE => Err(Error::NotRecoverable),
            other => Err(Error::corrupt(format!(
                "{} state word holds {other}",
                F::NAME
            ))),
        }
    }

    /// We hold the word: look at the state the previous holder left.
    fn check_state(&self) -> Result<Acquired> {
        self.state().inspect_err(|_| self.unlock())
    }

    /// We took the word over from a dead owner.
    fn adopt_dead(&self) -> Result<Acquired> {
        if self.record_death() {
            Ok(Acquired::OwnerDied)
        } else {
            self.unlock();
            Err(Error::NotRecoverable)
        }
    }

    /// We hold the word after its owner died: mark the data inconsistent, unless the lock
    /// is already not recoverable (then false).
    fn record_death(&self) -> bool {
        // Relaxed: we hold the word; see `check_state`.
        if self.state.load(Ordering::Relaxed) == NOT_RECOVERABLE {
            return false;
        }
        // Relaxed: published by our release of the word.
        self.state.store(INCONSISTENT, Ordering::Relaxed);
        true
    }

    /// Marks the data consistent again (the holder repaired it).
    pub(crate) fn mark_consistent(&self) {
        // Relaxed: we hold the lock; published by our release of the word.
        self.state.store(CONSISTENT, Ordering::Relaxed);
    }

    /// Whether the state is INCONSISTENT (we hold the lock).
    pub(crate) fn is_inconsistent(&self) -> bool {
        // Relaxed: we hold the lock.
        self.state.load(Ordering::Relaxed) == INCONSISTENT
    }

    /// Marks the lock not recoverable (an inconsistent lock released unrepaired).
    pub(crate) fn mark_not_recoverable(&self) {
        // Relaxed: we hold the lock; published by our release of the word.
        self.state.store(NOT_RECOVERABLE, Ordering::Relaxed);
    }

    /// Unlocks. The caller holds the lock.
    #[inline]
    pub(crate) fn unlock(&self) {
        // F::RELEASE: publishes the critical section (and `state`) to the next holder's
        // F::ACQUIRE CAS (and, for the rwlock, to readers' SeqCst loads of the word).
        let old = self.word.swap(0, F::RELEASE);
        if old & PARKED != 0 {
            wait::wake(&self.word, F::WAKE);
        }
    }

    /// Before sleeping on the word, seen as `w`: sets PARKED (the release swap is an RMW on
    /// the same word: it sees the flag and wakes us, or makes the CAS fail). The value to
    /// sleep on, or `None` to look again (the word is free, or moved).
    pub(crate) fn announce_sleeper(&self, w: u32) -> Option<u32> {
        wait::announce(&self.word, w, |w| w & TOKEN_MASK != 0)
    }

    /// The lock word itself, for the rwlock's readers (which load it and sleep on it).
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.word
    }

    /// Initial value (for the creator's body initialisation).
    pub(crate) fn new() -> Self {
        RawMutex {
            word: AtomicU32::new(0),
            state: AtomicU32::new(CONSISTENT),
            _flavor: PhantomData,
        }
    }
}

/// A locker in the slow path, as `wait::wait` drives it.
struct Locker<'a, F: Flavor> {
    lock: &'a RawMutex<F>,
    seg: &'a Segment,
    me: u32,
    /// The word as the last attempt saw it.
    seen: u32,
    /// Whether we have announced ourselves and slept.
    slept: bool,
}

impl<F: Flavor> Waiter for Locker<'_, F> {
    type Output = Acquired;

    fn word(&self) -> &AtomicU32 {
        &self.lock.word
    }

    fn attempt(&mut self) -> Result<Option<Acquired>> {
        // Relaxed: only a hint for which CAS to try; every CAS re-validates.
        let w = self.lock.word.load(Ordering::Relaxed);
        self.seen = w;
        if w & TOKEN_MASK != 0 {
            return Ok(None);
        }
        // Free. When a release wakes only one sleeper, one that has slept keeps PARKED set:
        // others may still sleep.
        let parked = if self.slept && F::WAKE == 1 {
            PARKED
        } else {
            w & PARKED
        };
        // F::ACQUIRE: as in `lock`.
        if self
            .lock
            .word
            .compare_exchange(w, self.me | parked, F::ACQUIRE, Ordering::Relaxed)
            .is_ok()
        {
            return self.lock.check_state().map(Some);
        }
        Ok(None)
    }

    fn announce(&mut self) -> Result<Announced<Acquired>> {
        let Some(expected) = self.lock.announce_sleeper(self.seen) else {
            return Ok(Announced::Retry);
        };
        self.slept = true;
        Ok(Announced::Sleep(expected))
    }

    fn check(&mut self) -> Result<Option<Acquired>> {
        let owner = self.seen & TOKEN_MASK;
        if owner == 0 || owner == self.me {
            return Ok(None);
        }
        self.lock.take_over_if_dead(self.seg, self.me, self.seen)
    }

    fn last_chance(&mut self) -> Result<Acquired> {
        match self.lock.try_lock_with(self.seg, self.me) {
            Err(Error::WouldBlock) => Err(Error::Timeout),
            other => other,
        }
    }
}
