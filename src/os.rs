//! Every call into the kernel, as small safe functions returning `io::Result`.
//!
//! Nothing outside this module calls `libc`. Linux is the only platform implemented; the
//! crate refuses to build elsewhere (see `lib.rs`), and a port adds its own version of
//! these functions here.
//!
//! Named segments live in `/dev/shm`, the tmpfs mount that glibc's `shm_open` uses. We
//! open files there with `open(2)` directly (which is all `shm_open` does) because
//! creation needs one more call that `shm_open` does not offer: `renameat2` with
//! `RENAME_NOREPLACE`, which publishes a fully initialised segment under its name
//! atomically (see the `segment` module).

pub(crate) mod doorbell;
pub(crate) mod failpoint;
pub(crate) mod process;

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// The directory in which named segments live.
pub(crate) const SHM_DIR: &str = "/dev/shm";

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cpath(path: &str) -> io::Result<CString> {
    CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// Opens an existing file for reading and writing, refusing symbolic links.
pub(crate) fn open_rw(path: &str) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: `c` is a valid NUL-terminated path; the flags take no further arguments.
    let fd = cvt(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: `open` returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates a new file exclusively (`O_CREAT | O_EXCL`), mode 0600 until `fchmod` sets the
/// final mode.
pub(crate) fn create_excl(path: &str) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: `c` is a valid path; `O_CREAT` takes the mode as the third argument.
    let fd = cvt(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    })?;
    // SAFETY: `open` returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Renames `from` to `to`, failing with `AlreadyExists` if `to` exists.
pub(crate) fn rename_noreplace(from: &str, to: &str) -> io::Result<()> {
    let (f, t) = (cpath(from)?, cpath(to)?);
    // SAFETY: both paths are valid NUL-terminated strings; AT_FDCWD is ignored for absolute paths.
    cvt(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    })?;
    Ok(())
}

/// Removes a file.
pub(crate) fn unlink(path: &str) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: `c` is a valid NUL-terminated path.
    cvt(unsafe { libc::unlink(c.as_ptr()) })?;
    Ok(())
}

/// Sets a file's permission bits, whatever the umask said at creation.
pub(crate) fn fchmod(fd: &OwnedFd, mode: u32) -> io::Result<()> {
    // SAFETY: `fd` is an open descriptor for the duration of the call.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })?;
    Ok(())
}

/// Sets a file's length.
pub(crate) fn ftruncate(fd: &OwnedFd, len: u64) -> io::Result<()> {
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `fd` is an open descriptor for the duration of the call.
    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len) })?;
    Ok(())
}

/// Allocates the first `len` bytes of the file behind `fd` (`fallocate`), so that a later
/// access to its pages cannot fail for want of space (on tmpfs, a SIGBUS). `ENOSPC` when
/// the file system is full (`ENOMEM` at a memory limit); `EOPNOTSUPP` where the file system
/// cannot reserve.
///
/// In chunks, each retried a bounded number of times when a signal interrupts it (tmpfs
/// checks for signals while it allocates): a call that a fast interval timer (a profiler)
/// keeps interrupting must neither loop for ever nor start over from the first page. A
/// chunk takes well under a millisecond, and what earlier chunks allocated stays allocated.
pub(crate) fn allocate(fd: &OwnedFd, len: u64) -> io::Result<()> {
    const CHUNK: u64 = 2 << 20;
    const RETRIES: u32 = 10_000;
    let mut at = 0u64;
    while at < len {
        let n = CHUNK.min(len - at);
        let off =
            libc::off_t::try_from(at).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let n_off =
            libc::off_t::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut tries = 0;
        loop {
            // SAFETY: `fd` is an open descriptor for the duration of the call; mode 0 only
            // allocates blocks inside the file's size, which is already `len` or more.
            match cvt(unsafe { libc::fallocate(fd.as_raw_fd(), 0, off, n_off) }) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted && tries < RETRIES => {
                    tries += 1;
                }
                Err(e) => return Err(e),
                Ok(_) => break,
            }
        }
        at += n;
    }
    Ok(())
}

/// Whether `e` says there is no room: a full file system, or a memory limit.
pub(crate) fn is_no_space(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::ENOMEM))
}

/// Whether `e` says the file system cannot do it (`EOPNOTSUPP`).
pub(crate) fn is_unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EOPNOTSUPP)
}

/// The bytes an unprivileged process may still allocate on the file system of `fd`;
/// `None` where it has no limit to report (the kernel's internal tmpfs behind memfds).
pub(crate) fn free_space(fd: &OwnedFd) -> io::Result<Option<u64>> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `st` is a valid place for the kernel to write a `statvfs`; `fd` is open.
    cvt(unsafe { libc::fstatvfs(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: `fstatvfs` succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    if st.f_blocks == 0 {
        return Ok(None);
    }
    // `fsblkcnt_t` and `c_ulong` are u64 on the 64-bit Linux targets we build for.
    Ok(Some(st.f_bavail.saturating_mul(st.f_frsize)))
}

/// What `fstat` says about a file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileStat {
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub dev: u64,
    pub ino: u64,
    pub is_file: bool,
}

/// Returns a file's size, mode, owner and identity.
pub(crate) fn fstat(fd: RawFd) -> io::Result<FileStat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a valid place for the kernel to write a `stat`.
    cvt(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: `fstat` succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    Ok(FileStat {
        size: st.st_size as u64,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        dev: st.st_dev,
        ino: st.st_ino,
        is_file: st.st_mode & libc::S_IFMT == libc::S_IFREG,
    })
}

/// The effective user id of this process.
pub(crate) fn geteuid() -> u32 {
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The monotonic clock (`CLOCK_MONOTONIC`, the same in every process of the machine), in
/// milliseconds: for times that processes compare through shared memory. (Loom's models
/// use a modelled clock instead.)
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1000)
        .wrapping_add(ts.tv_nsec as u64 / 1_000_000)
}

/// This process's id (for display only: liveness is never judged by pid).
pub(crate) fn getpid() -> u32 {
    std::process::id()
}

/// Creates an anonymous memory file that allows sealing.
pub(crate) fn memfd_create(name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated; the flags are valid for memfd_create.
    let fd = cvt(unsafe {
        libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })?;
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Seals a memfd against shrinking and growing, and the seals themselves.
pub(crate) fn seal_size(fd: &OwnedFd) -> io::Result<()> {
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: `fd` is open; F_ADD_SEALS takes an int argument.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    Ok(())
}

/// Opens a new open file description of the file behind `fd` (through `/proc/self/fd`).
///
/// OFD locks belong to the open file description, which a forked child shares with its
/// parent through an inherited descriptor; a process that needs a lock of its own opens
/// the file anew with this.
pub(crate) fn reopen(fd: RawFd) -> io::Result<OwnedFd> {
    // `/proc/self/fd/N` is a magic link to the very file behind `fd`: it must be followed
    // (no O_NOFOLLOW), and it cannot be redirected by anybody else.
    let c = cpath(&format!("/proc/self/fd/{fd}"))?;
    // SAFETY: `c` is a valid NUL-terminated path; the flags take no further arguments.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
    // SAFETY: `open` returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn flock_at(kind: libc::c_short, offset: u64) -> io::Result<libc::flock> {
    let start =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `flock` is plain old data; all-zero is a valid value (l_pid must be 0 for OFD locks).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start;
    fl.l_len = 1;
    Ok(fl)
}

/// Tries to take an OFD write lock on one byte at `offset`; `Ok(false)` if another open
/// file description holds a conflicting lock. The kernel drops the lock when the last
/// descriptor of this open file description closes, in particular when the process dies.
pub(crate) fn ofd_try_lock(fd: RawFd, offset: u64) -> io::Result<bool> {
    ofd_try(fd, offset, libc::F_WRLCK as libc::c_short)
}

/// [`ofd_try_lock`] for a shared (read) lock: any number of open file descriptions may
/// hold one together; it conflicts only with write locks.
pub(crate) fn ofd_try_read_lock(fd: RawFd, offset: u64) -> io::Result<bool> {
    ofd_try(fd, offset, libc::F_RDLCK as libc::c_short)
}

fn ofd_try(fd: RawFd, offset: u64, kind: libc::c_short) -> io::Result<bool> {
    let fl = flock_at(kind, offset)?;
    // SAFETY: `fl` is a valid flock for F_OFD_SETLK.
    match cvt(unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &fl) }) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Releases an OFD lock taken with [`ofd_try_lock`].
pub(crate) fn ofd_unlock(fd: RawFd, offset: u64) -> io::Result<()> {
    let fl = flock_at(libc::F_UNLCK as libc::c_short, offset)?;
    // SAFETY: `fl` is a valid flock for F_OFD_SETLK.
    cvt(unsafe { libc::fcntl(fd, libc::F_OFD_SETLK, &fl) })?;
    Ok(())
}

/// Whether an open file description other than `fd`'s holds a lock on the byte at `offset`.
pub(crate) fn ofd_is_locked(fd: RawFd, offset: u64) -> io::Result<bool> {
    let mut fl = flock_at(libc::F_WRLCK as libc::c_short, offset)?;
    // SAFETY: `fl` is a valid flock that F_OFD_GETLK overwrites in place.
    cvt(unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut fl) })?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

/// The outcome of [`futex_wait`].
#[cfg_attr(loom, allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FutexWait {
    /// Woken, or the word no longer held the expected value, or a signal interrupted the
    /// wait: the caller re-checks its condition.
    Woken,
    /// The timeout elapsed.
    TimedOut,
}

/// Sleeps while `*word == expected`, at most `timeout` (measured on the monotonic clock).
///
/// The word may live in memory shared with other processes: this uses the shared (not the
/// process-private) futex operations.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> FutexWait {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call; FUTEX_WAIT reads
    // it atomically and sleeps only if it equals `expected`; `ts_ptr` is null or points to a
    // valid relative timespec (FUTEX_WAIT measures it on CLOCK_MONOTONIC).
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT) {
        FutexWait::TimedOut
    } else {
        // 0 (woken), EAGAIN (value changed), EINTR (signal): the caller re-checks.
        FutexWait::Woken
    }
}

/// Wakes at most `n` sleepers on `word`, in any process. Returns how many were woken.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn futex_wake(word: &AtomicU32, n: u32) -> usize {
    let n = n.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE does not access memory beyond it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if r < 0 {
        0
    } else {
        r as usize
    }
}

/// `membarrier(2)` commands (`linux/membarrier.h`; a stable ABI, defined here because the
/// `libc` versions this crate accepts do not all export them).
const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
const MEMBARRIER_CMD_GLOBAL: libc::c_int = 1 << 0;
const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;

fn membarrier(cmd: libc::c_int) -> io::Result<libc::c_long> {
    // SAFETY: `membarrier` takes two integers and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_uint) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// Registers this process for [`heavy_barrier`]: from then on, another process's
/// `heavy_barrier` makes every CPU that runs a thread of this one execute a full memory
/// barrier. Done once per process (later calls return the first answer). `false` where the
/// kernel (before 4.16) or a seccomp filter does not allow it.
pub(crate) fn register_for_heavy_barrier() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *REGISTERED.get_or_init(|| {
        let supported = membarrier(MEMBARRIER_CMD_QUERY).is_ok_and(|mask| {
            let both = (MEMBARRIER_CMD_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED)
                as libc::c_long;
            mask & both == both
        });
        supported && membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED).is_ok()
    })
}

/// The heavy side of an asymmetric fence (`membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`):
/// when it returns, every thread of every process registered with
/// [`register_for_heavy_barrier`] has executed a full memory barrier since the call began
/// (an interrupt of each CPU that runs one; one that does not run has passed through the
/// scheduler, which is one). So those threads' light side needs only a compiler fence.
/// Costly (about 14 µs in a VM while such a process runs on another CPU, which it
/// interrupts): for rare waits only. Should the expedited command be refused (a seccomp
/// filter, no memory for its CPU mask), the plain one gives the same guarantee, slowly: it
/// waits for every CPU to pass through the scheduler (milliseconds, on every call).
pub(crate) fn heavy_barrier() -> io::Result<()> {
    membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)
        .or_else(|_| membarrier(MEMBARRIER_CMD_GLOBAL))
        .map(drop)
}

/// Registers `prepare` to run in the parent before every `fork`, and `child` in the child
/// after it.
pub(crate) fn at_fork(prepare: extern "C" fn(), child: extern "C" fn()) -> io::Result<()> {
    // SAFETY: the handlers are plain `extern "C" fn`s with no preconditions.
    let r = unsafe { libc::pthread_atfork(Some(prepare), None, Some(child)) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Closes a raw descriptor; used in the fork child handler, where only async-signal-safe
/// calls are allowed (`close` is one).
pub(crate) fn close_raw(fd: RawFd) {
    // SAFETY: the caller owns `fd` and never uses it again.
    unsafe { libc::close(fd) };
}

/// Kills this process with SIGKILL, as a crash would (test failpoints only).
#[cfg(feature = "failpoints")]
pub(crate) fn kill_self() -> ! {
    // SAFETY: plain syscalls with valid arguments; SIGKILL cannot be caught, so `kill`
    // does not return; `abort` is the fallback should it somehow fail.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort()
}

/// Pins the calling thread to one CPU (for benchmarks).
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: `cpu_set_t` is plain old data; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: `cpu` is below CPU_SETSIZE, checked above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 means the calling thread.
    cvt(unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) })?;
    Ok(())
}

/// Whether `e` is the error `open(O_NOFOLLOW)` gives for a symbolic link.
pub(crate) fn is_symlink_refusal(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

/// `stat` of a path, without following a final symbolic link.
pub(crate) fn stat_path(path: &str) -> io::Result<FileStat> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path)?;
    Ok(FileStat {
        size: m.size(),
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        dev: m.dev(),
        ino: m.ino(),
        is_file: m.file_type().is_file(),
    })
}

/// Opens a file for reading with plain reads (never follows a symbolic link, never blocks
/// on a FIFO), with its `fstat`.
pub(crate) fn open_read(path: &str) -> io::Result<(std::fs::File, FileStat)> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let st = fstat(f.as_raw_fd())?;
    Ok((f, st))
}

/// Reads exactly `buf.len()` bytes at `offset`; `Ok(false)` if the file is shorter.
pub(crate) fn read_exact_at(f: &std::fs::File, buf: &mut [u8], offset: u64) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    match f.read_exact_at(buf, offset) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_heavy_barrier_works_wherever_registering_for_it_does() {
        // A consumer that registered publishes with a compiler fence only, trusting the
        // joiner's barrier: it must then succeed.
        if super::register_for_heavy_barrier() {
            super::heavy_barrier().unwrap();
            assert!(super::register_for_heavy_barrier()); // once per process
        }
    }
}
