//! The robust lock word behind [`Mutex`](crate::Mutex), [`Value`](crate::Value) and
//! [`Array`](crate::Array).
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
//! PARKED was set. A waiter whose sleep slice runs out asks the kernel whether the owner's
//! liveness lock is still held; if not, the owner died, and the waiter takes the word over
//! with a CAS `dead → token`, so exactly one waiter inherits the lock.
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

use std::time::{Duration, Instant};

use super::wait::{self, Deadline, SPIN_LIMIT};
use crate::error::{Error, Result};
use crate::primitive::{AtomicU32, Ordering};
use crate::segment::Segment;

const PARKED: u32 = 1 << 31;
const TOKEN_MASK: u32 = !PARKED;

const CONSISTENT: u32 = 0;
const INCONSISTENT: u32 = 1;
const NOT_RECOVERABLE: u32 = 2;

/// The first sleep slice after which a waiter checks the owner's liveness; it doubles up
/// to [`MAX_SLICE`].
const FIRST_SLICE: Duration = Duration::from_millis(1);
const MAX_SLICE: Duration = Duration::from_millis(64);

/// The shared part of a robust mutex.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct RawMutex {
    /// Owner token and PARKED flag (see the module docs).
    word: AtomicU32,
    /// CONSISTENT, INCONSISTENT or NOT_RECOVERABLE (see the module docs).
    state: AtomicU32,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<RawMutex>() == 8);
#[cfg(not(loom))]
const _: () = assert!(std::mem::align_of::<RawMutex>() == 4);

/// How a lock was acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// Normally.
    Clean,
    /// From (or after) an owner that died: the data may be inconsistent.
    OwnerDied,
}

impl RawMutex {
    /// Locks, waiting until `deadline`. `seg` is the segment the mutex lives in (for
    /// liveness).
    #[inline]
    pub(crate) fn lock(&self, seg: &Segment, deadline: Deadline) -> Result<Acquired> {
        let me = seg.token()?;
        // Acquire: pairs with the Release swap in `unlock`: the previous holder's writes
        // to the protected data are visible once we own the word.
        if self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return self.check_state();
        }
        self.lock_slow(seg, me, deadline)
    }

    #[cold]
    fn lock_slow(&self, seg: &Segment, me: u32, deadline: Deadline) -> Result<Acquired> {
        let mut spins = 0;
        let mut slept = false;
        let mut slice = FIRST_SLICE;
        // Owner checks are driven by the clock, not by how sleeps end: a stream of signals
        // (each interrupting the futex wait) must not postpone them for ever.
        let mut next_check = Instant::now() + slice;
        // Under loom, where the clock must not steer the model: whether the last sleep's
        // slice ran out (it does when a modelled process dies; see `primitive::model`).
        let mut slice_out = false;
        loop {
            // Relaxed: only a hint for which CAS to try; every CAS re-validates.
            let w = self.word.load(Ordering::Relaxed);
            let owner = w & TOKEN_MASK;
            if owner == 0 {
                // Free. After sleeping once we keep PARKED set: others may still sleep.
                let new = me | if slept { PARKED } else { w & PARKED };
                // Acquire: as in `lock`.
                if self
                    .word
                    .compare_exchange(w, new, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return self.check_state();
                }
                continue;
            }
            let due = |slice_out: &mut bool| {
                if cfg!(loom) {
                    std::mem::take(slice_out)
                } else {
                    Instant::now() >= next_check
                }
            };
            if slept && owner != me && due(&mut slice_out) {
                slice = (slice * 2).min(MAX_SLICE);
                next_check = Instant::now() + slice;
                if let Some(how) = self.take_over_if_dead(seg, me, w)? {
                    return Ok(how);
                }
                continue;
            }
            if spins < SPIN_LIMIT && !slept {
                spins += 1;
                crate::primitive::spin_hint();
                continue;
            }
            if w & PARKED == 0 {
                // Announce a sleeper before sleeping; the unlocker reads it in its swap.
                // Relaxed: the swap in `unlock` is an RMW on the same word, which sees this
                // write or makes this CAS fail.
                if self
                    .word
                    .compare_exchange(w, w | PARKED, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
                {
                    continue;
                }
            }
            slept = true;
            match wait::sleep(&self.word, w | PARKED, deadline, Some(slice)) {
                Ok(woken) => slice_out = !woken,
                // Out of time: one last attempt, which also takes over from a dead owner, so
                // that short timeouts in a loop still recover a dead owner's lock.
                Err(Error::Timeout) => {
                    return match self.try_lock_with(seg, me) {
                        Err(Error::WouldBlock) => Err(Error::Timeout),
                        other => other,
                    };
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Tries once, without waiting. A dead owner is detected (one `fcntl`) and taken over.
    pub(crate) fn try_lock(&self, seg: &Segment) -> Result<Acquired> {
        let me = seg.token()?;
        self.try_lock_with(seg, me)
    }

    fn try_lock_with(&self, seg: &Segment, me: u32) -> Result<Acquired> {
        // Acquire: as in `lock`.
        let w = match self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => return self.check_state(),
            Err(w) => w,
        };
        if w & TOKEN_MASK == 0 {
            // Free but PARKED: sleepers remain, keep the flag.
            // Acquire: as in `lock`.
            if self
                .word
                .compare_exchange(w, me | PARKED, Ordering::Acquire, Ordering::Relaxed)
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
        if seg.is_alive(w & TOKEN_MASK)? {
            return Ok(None);
        }
        // Acquire: the dead owner's writes (whatever it completed) are visible.
        if self
            .word
            .compare_exchange(w, me | (w & PARKED), Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return self.adopt_dead().map(Some);
        }
        Ok(None)
    }

    /// We hold the word: look at the state the previous holder left.
    fn check_state(&self) -> Result<Acquired> {
        // Relaxed: written only by holders, before their Release unlock that our Acquire
        // lock synchronised with.
        match self.state.load(Ordering::Relaxed) {
            CONSISTENT => Ok(Acquired::Clean),
            INCONSISTENT => Ok(Acquired::OwnerDied),
            NOT_RECOVERABLE => {
                self.unlock();
                Err(Error::NotRecoverable)
            }
            other => {
                self.unlock();
                Err(Error::corrupt(format!("mutex state word holds {other}")))
            }
        }
    }

    /// We took the word over from a dead owner.
    fn adopt_dead(&self) -> Result<Acquired> {
        // Relaxed: we hold the lock; see `check_state`.
        match self.state.load(Ordering::Relaxed) {
            NOT_RECOVERABLE => {
                self.unlock();
                Err(Error::NotRecoverable)
            }
            _ => {
                // Relaxed: published by our Release unlock.
                self.state.store(INCONSISTENT, Ordering::Relaxed);
                Ok(Acquired::OwnerDied)
            }
        }
    }

    /// Marks the data consistent again (the holder repaired it).
    pub(crate) fn mark_consistent(&self) {
        // Relaxed: we hold the lock; published by our Release unlock.
        self.state.store(CONSISTENT, Ordering::Relaxed);
    }

    /// Whether the state is INCONSISTENT (we hold the lock).
    pub(crate) fn is_inconsistent(&self) -> bool {
        // Relaxed: we hold the lock.
        self.state.load(Ordering::Relaxed) == INCONSISTENT
    }

    /// Marks the lock not recoverable (an inconsistent lock released unrepaired).
    pub(crate) fn mark_not_recoverable(&self) {
        // Relaxed: we hold the lock; published by our Release unlock.
        self.state.store(NOT_RECOVERABLE, Ordering::Relaxed);
    }

    /// Unlocks. The caller holds the lock.
    #[inline]
    pub(crate) fn unlock(&self) {
        // Release: publishes the critical section to the next holder's Acquire CAS.
        let old = self.word.swap(0, Ordering::Release);
        if old & PARKED != 0 {
            wait::wake(&self.word, 1);
        }
    }

    /// Initial value (for the creator's body initialisation).
    pub(crate) fn new() -> RawMutex {
        RawMutex {
            word: AtomicU32::new(0),
            state: AtomicU32::new(CONSISTENT),
        }
    }
}
