//! The kernel calls of the process layer: pidfds (wait with a timeout, signal without a
//! pid-reuse race), the parent-death signal, and what a worker does to itself at start.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::cvt;

/// `pidfd_open(pid, 0)`: a descriptor that stays bound to this process (close-on-exec).
/// `Err` with `ENOSYS` on kernels before 5.3: callers fall back to pid-based calls.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall with integer arguments; on success it returns a new
    // descriptor that nothing else owns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned to us by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `sig` to the process behind `pidfd`. `ESRCH` if it has exited.
pub(crate) fn pidfd_send_signal(pidfd: &OwnedFd, sig: i32) -> io::Result<()> {
    // SAFETY: a plain syscall; `pidfd` is a live descriptor, the info pointer is null
    // (as for `kill`), flags 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `kill(pid, sig)`, for kernels without pidfds. Callers only signal their own children
/// that they have not reaped yet, whose pid cannot have been reused.
pub(crate) fn kill(pid: u32, sig: i32) -> io::Result<()> {
    // SAFETY: a plain syscall with integer arguments.
    cvt(unsafe { libc::kill(pid as libc::pid_t, sig) }).map(drop)
}

/// Waits until `fd` is readable (a pidfd is readable once its process has exited), at
/// most `timeout` (`None`: forever). `Ok(true)` if readable.
pub(crate) fn poll_readable(fd: &OwnedFd, timeout: Option<Duration>) -> io::Result<bool> {
    let ms = match timeout {
        None => -1,
        // Round up, so that a short timeout still waits rather than spins.
        Some(t) => t.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int,
    };
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid `pollfd` on our stack, count 1.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r >= 0 {
            return Ok(r > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
        // EINTR: the caller re-checks its deadline and calls again with what is left.
        if ms >= 0 {
            return Ok(false);
        }
    }
}

/// Asks the kernel to send `sig` to this process when the thread that created it exits,
/// then says whether the parent is still `parent` (it may have died before the request;
/// then it is the reaper's pid that `getppid` returns).
pub(crate) fn die_with_parent(sig: i32, parent: u32) -> io::Result<bool> {
    // SAFETY: prctl with integer arguments.
    cvt(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) })?;
    // SAFETY: getppid cannot fail.
    Ok(unsafe { libc::getppid() } as u32 == parent)
}

/// Ignores SIGINT in this process: a terminal's Ctrl-C reaches the whole foreground
/// process group, and a worker should neither die half-way through a write nor decide
/// for its parent.
pub(crate) fn ignore_sigint() -> io::Result<()> {
    // SAFETY: installs the SIG_IGN disposition; no handler code runs.
    let old = unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    if old == libc::SIG_ERR {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Closes every descriptor from 3 up, but `keep`: what the parent leaked into the new
/// process without close-on-exec. Best effort (`close_range` needs Linux 5.9; older
/// kernels keep them).
pub(crate) fn close_inherited(keep: &[RawFd]) {
    let mut from: u32 = 3;
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|&&f| f >= 3)
        .map(|&f| f as u32)
        .collect();
    keep.sort_unstable();
    for k in keep.into_iter().chain([u32::MAX]) {
        if k > from {
            // SAFETY: closes descriptors nothing in this process uses yet (called first
            // thing in a new worker, before anything is opened), all but `keep`.
            unsafe { libc::syscall(libc::SYS_close_range, from, k - 1, 0) };
        }
        from = k.saturating_add(1);
    }
}
