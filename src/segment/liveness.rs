//! Per-process liveness registration: which processes are alive in a segment, decided by
//! the kernel.
//!
//! A process that needs it takes a *token* (from the counter in the header) and holds an
//! OFD write lock on byte `LIVENESS_BASE + token` of the segment's file through an open file
//! description of its own; the kernel drops the lock when the process dies, and a peer asks
//! with `F_OFD_GETLK`. After `fork`, the child drops the parent's liveness descriptors (an
//! `atfork` handler closes them) and registers anew on first use.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};

use super::{Segment, LIVENESS_BASE, MAX_TOKEN};
use crate::error::{Error, Result};
use crate::os;

impl Segment {
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

/// A segment's process-local liveness registration.
pub(super) struct Liveness {
    /// `fork_generation << 32 | token`, or 0 when this process has not registered.
    reg: AtomicU64,
    /// Index in [`LIVE_FDS`] of our liveness descriptor, or -1.
    slot: AtomicI32,
}

impl Liveness {
    pub(super) fn new() -> Self {
        Liveness {
            reg: AtomicU64::new(0),
            slot: AtomicI32::new(-1),
        }
    }

    /// Releases this process's liveness lock in the segment (closes our own descriptor), if
    /// it registered in this fork generation. The handle is being dropped.
    pub(super) fn release(&self) {
        // Relaxed: process-local bookkeeping (see `Segment::token`).
        let reg = self.reg.load(Ordering::Relaxed);
        if reg != 0 && (reg >> 32) as u32 == fork_generation() {
            let slot = self.slot.load(Ordering::Relaxed);
            if slot >= 0 {
                untrack_fd(slot as usize, Some(reg as u32));
            }
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
