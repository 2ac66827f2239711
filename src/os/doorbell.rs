//! Doorbells: the kernel objects an async executor waits on for a wake-up from another
//! process. One Unix datagram socket per async waiter, bound to an abstract address
//! (`\0shmkit-db.ID`, Linux): nothing in the file system, gone when the socket closes.
//! Ringing is one `sendto` of one byte; a full socket buffer (already rung) or a closed
//! one (the waiter went) is ignored. A datagram from anybody else costs the waiter a
//! re-check, never a wrong result.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// The abstract address of doorbell `id`.
fn addr(id: u64) -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(format!("shmkit-db.{id:016x}").as_bytes())
}

/// A fresh doorbell: its id (never 0) and its socket (non-blocking).
pub(crate) fn open() -> io::Result<(u64, UnixDatagram)> {
    static N: AtomicU32 = AtomicU32::new(0);
    for _ in 0..64 {
        // Relaxed: a counter for uniqueness within this process; the pid makes it unique
        // on the machine (a stale id of a dead process is free again: its socket closed).
        let n = N.fetch_add(1, Ordering::Relaxed);
        let id = (u64::from(std::process::id()) << 32) | u64::from(n) | 1 << 63;
        match UnixDatagram::bind_addr(&addr(id)?) {
            Ok(s) => {
                s.set_nonblocking(true)?;
                return Ok((id, s));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from(io::ErrorKind::AddrInUse))
}

/// Rings doorbell `id` (best effort: see the module docs).
pub(crate) fn ring(id: u64) {
    static SENDER: OnceLock<Option<UnixDatagram>> = OnceLock::new();
    let Some(tx) = SENDER.get_or_init(|| {
        let s = UnixDatagram::unbound().ok()?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    }) else {
        return;
    };
    if let Ok(a) = addr(id) {
        let _ = tx.send_to_addr(&[1], &a);
        // Relaxed: a statistic (tests count the syscalls a sync path did not make).
        RINGS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Takes every datagram waiting on `s`; whether there was any.
pub(crate) fn drain(s: &UnixDatagram) -> bool {
    let mut buf = [0u8; 16];
    let mut any = false;
    while s.recv(&mut buf).is_ok() {
        any = true;
    }
    any
}

/// Doorbells this process rang (each one `sendto`).
pub(crate) static RINGS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
