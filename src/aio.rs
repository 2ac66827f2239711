//! Async receiving: [`Async`] wraps a receiving end (`spsc`, `mpmc`, `frames`, a
//! [`Queue`] or [`JoinableQueue`]) so that an executor can wait for it without a thread per wait.
//!
//! # How a wake-up crosses processes
//! An `Async` owns a *doorbell*: a Unix datagram socket of its own, bound to an abstract
//! address (Linux: nothing in the file system, gone with the socket). To wait, it registers
//! the doorbell in the channel's signal in shared memory, announces itself there exactly as
//! a sleeping blocking receiver does (the WAITERS bit), checks the ring once more, and only
//! then waits for the socket to become readable. A producer that publishes looks at the
//! WAITERS bit anyway (one fence and one load); only when it is set does it make the
//! futex wake and ring the registered doorbells (one `sendto` each). So with no async (or
//! blocking) waiter parked, the producer makes no syscall at all, and blocking and async
//! waiters on one channel coexist. A datagram from anyone else costs a re-check, never a
//! wrong result.
//!
//! # Executors
//! The core is executor-agnostic: [`Async::try_recv_or_arm`] takes a message if one is
//! ready, or arms the doorbell and says [`Error::WouldBlock`]; the doorbell's descriptor
//! ([`AsFd`]) becomes readable when a wake-up comes. With the `tokio` feature,
//! [`Async::recv`] does the waiting under tokio (any runtime with IO and time enabled,
//! current-thread or multi-thread).
//!
//! # Cancel safety
//! `recv` is cancel-safe: a message is taken only in a synchronous step that returns it,
//! so dropping the future (in `tokio::select!`, on a timeout) loses nothing. The doorbell
//! stays registered until the `Async` drops; a registration left behind costs a producer
//! nothing until somebody announces a wait again.
//!
//! # Dead peers
//! A peer that closes rings the doorbell (its close wakes every waiter); one killed is
//! noticed within the same bound as a blocking wait: the async wait looks at the ring (and
//! so at its peers' liveness) at least every 64 ms.
//!
//! This module uses `channel` (the signals) and `os` (the sockets).

use std::fmt;
#[cfg(feature = "tokio")]
use std::future::Future;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::channel::{frames, mpmc, spsc, Signal};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::queue::{JoinableQueue, Queue};

mod sealed {
    pub trait Sealed {}
}

/// A receiving end that [`Async`] can wait for: `spsc::Receiver`, `mpmc::Receiver`,
/// `frames::Receiver`, [`Queue`], [`JoinableQueue`]. Sealed.
pub trait AsyncEndpoint: sealed::Sealed {
    /// What a receive returns.
    type Item;

    /// One receive that never blocks ([`Error::WouldBlock`] if nothing is ready).
    #[doc(hidden)]
    fn attempt(&mut self) -> Result<Self::Item>;

    /// Registers doorbell `bell` and announces a waiter on the receiving signal.
    #[doc(hidden)]
    fn arm(&mut self, bell: u64) -> Result<()>;

    /// Removes doorbell `bell`.
    #[doc(hidden)]
    fn disarm(&mut self, bell: u64);
}

/// Registers `bell` on `signal` and announces a waiter.
fn arm_signal(signal: &Signal, bell: u64) -> Result<()> {
    if !signal.add_bell(bell) {
        return Err(Error::Busy {
            what: format!(
                "all {} async-waiter doorbells of this channel",
                crate::channel::BELLS
            ),
        });
    }
    signal.prepare_wait();
    Ok(())
}

macro_rules! endpoint {
    ($ty:ty, $item:ty $(, $g:ident)?) => {
        impl$(<$g: bytemuck::Pod>)? sealed::Sealed for $ty {}
        impl$(<$g: bytemuck::Pod>)? AsyncEndpoint for $ty {
            type Item = $item;
            #[inline]
            fn attempt(&mut self) -> Result<$item> {
                self.try_recv()
            }
            fn arm(&mut self, bell: u64) -> Result<()> {
                arm_signal(self.data_signal(), bell)
            }
            fn disarm(&mut self, bell: u64) {
                self.data_signal().remove_bell(bell);
            }
        }
    };
}

endpoint!(spsc::Receiver<T>, T, T);
endpoint!(mpmc::Receiver<T>, T, T);
endpoint!(frames::Receiver, Vec<u8>);

/// The serde queues: `get` is their receive; their receiving end attaches on first use.
macro_rules! serde_queue {
    ($ty:ident) => {
        impl<T: Serialize + DeserializeOwned, C: Codec> sealed::Sealed for $ty<T, C> {}
        impl<T: Serialize + DeserializeOwned, C: Codec> AsyncEndpoint for $ty<T, C> {
            type Item = T;
            #[inline]
            fn attempt(&mut self) -> Result<T> {
                self.try_get()
            }
            fn arm(&mut self, bell: u64) -> Result<()> {
                arm_signal(self.receiving_signal()?, bell)
            }
            fn disarm(&mut self, bell: u64) {
                if let Ok(s) = self.receiving_signal() {
                    s.remove_bell(bell);
                }
            }
        }
    };
}

serde_queue!(Queue);
serde_queue!(JoinableQueue);

/// A receiving end that async code can wait for; see the [module docs](self).
///
/// ```
/// # #[cfg(feature = "tokio")]
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use shmkit::{aio::Async, spsc};
/// # let name = shmkit::__private::test_name("doc-async");
/// let mut tx = spsc::Sender::<u64>::create(&name, 64)?;
/// let mut rx = Async::new(spsc::Receiver::<u64>::open(&name)?)?; // usually in another process
/// tx.send(7)?;
/// assert_eq!(rx.recv().await?, 7);
/// # Ok::<(), shmkit::Error>(())
/// # }).unwrap();
/// ```
pub struct Async<E: AsyncEndpoint> {
    end: E,
    bell: u64,
    socket: Socket,
    /// An error met after a batch of `recv_many`: the next receive returns it.
    deferred: Option<Error>,
    /// The liveness slice of a pending `poll_recv`.
    #[cfg(feature = "tokio")]
    slice: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

/// The doorbell's socket: plain until the first `recv` under tokio registers it.
enum Socket {
    Plain(UnixDatagram),
    #[cfg(feature = "tokio")]
    Tokio(tokio::io::unix::AsyncFd<UnixDatagram>),
    /// Only while moving from one to the other.
    #[cfg(feature = "tokio")]
    Moving,
}

impl Socket {
    fn get(&self) -> &UnixDatagram {
        match self {
            Socket::Plain(s) => s,
            #[cfg(feature = "tokio")]
            Socket::Tokio(a) => a.get_ref(),
            #[cfg(feature = "tokio")]
            Socket::Moving => unreachable!("the doorbell is always put back"),
        }
    }
}

/// Attempts before arming the doorbell (about a microsecond).
const SPIN: u32 = 64;

/// How long an async wait goes without looking at the ring (and its peers' liveness).
#[cfg(feature = "tokio")]
const SLICE: std::time::Duration = std::time::Duration::from_millis(64);

impl<E: AsyncEndpoint> Async<E> {
    /// Wraps `end`, with a doorbell of its own.
    pub fn new(end: E) -> Result<Self> {
        let (bell, socket) =
            crate::os::doorbell::open().map_err(|e| Error::io("doorbell socket", e))?;
        Ok(Async {
            end,
            bell,
            socket: Socket::Plain(socket),
            deferred: None,
            #[cfg(feature = "tokio")]
            slice: None,
        })
    }

    /// The wrapped end.
    pub fn get_ref(&self) -> &E {
        &self.end
    }

    /// The wrapped end, for its synchronous calls.
    pub fn get_mut(&mut self) -> &mut E {
        &mut self.end
    }

    /// Takes a message if one is ready; otherwise arms the doorbell (so that the next
    /// publication rings it) and returns [`Error::WouldBlock`]: wait for the doorbell's
    /// descriptor ([`AsFd`]) to become readable, call [`Async::clear`], and try again.
    /// Any other error ([`Error::Disconnected`], ...) is the receive's.
    #[inline]
    pub fn try_recv_or_arm(&mut self) -> Result<E::Item> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        // A short spin first (about a microsecond), as a blocking wait does: a busy peer
        // usually publishes within it, and arming would cost it a wake syscall.
        for _ in 0..SPIN {
            match self.end.attempt() {
                Err(Error::WouldBlock) => std::hint::spin_loop(),
                r => return r,
            }
        }
        self.end.arm(self.bell)?;
        // After the announcement: a message published before it is seen here, one
        // published after it rings the doorbell.
        self.end.attempt()
    }

    /// Takes the datagrams that rang the doorbell (after it became readable).
    pub fn clear(&self) {
        crate::os::doorbell::drain(self.socket.get());
    }

    /// Receives the next message, waiting without blocking the thread. Cancel-safe.
    /// [`Error::Disconnected`] once the senders are gone and the ring is drained.
    #[cfg(feature = "tokio")]
    pub async fn recv(&mut self) -> Result<E::Item> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Receives at least one message (waiting as [`recv`](Self::recv) does) and then
    /// every one ready now, up to `max` in all, appended to `buf`; how many. Cancel-safe.
    /// The form for throughput: one wait for a batch. `Ok(0)` only if `max` is 0; the
    /// errors are `recv`'s, after what was received is in `buf`.
    #[cfg(feature = "tokio")]
    pub async fn recv_many(&mut self, buf: &mut Vec<E::Item>, max: usize) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        buf.push(self.recv().await?);
        let mut n = 1;
        while n < max {
            match self.end.attempt() {
                Ok(v) => {
                    buf.push(v);
                    n += 1;
                }
                Err(Error::WouldBlock) => break,
                // After the batch: the next receive returns it.
                Err(e) => {
                    self.deferred = Some(e);
                    break;
                }
            }
        }
        Ok(n)
    }

    /// The poll form of [`recv`](Self::recv), for hand-written futures and streams: a
    /// message if one is ready, or `Pending` with the task woken by the doorbell (or,
    /// without a ring, after the liveness slice).
    #[cfg(feature = "tokio")]
    #[inline]
    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<E::Item>> {
        use std::task::Poll;
        loop {
            match self.try_recv_or_arm() {
                Err(Error::WouldBlock) => {}
                r => {
                    if self.slice.is_some() {
                        self.slice = None;
                    }
                    return Poll::Ready(r);
                }
            }
            let afd = match self.tokio_fd() {
                Ok(a) => a,
                Err(e) => return Poll::Ready(Err(e)),
            };
            match afd.poll_read_ready(cx) {
                Poll::Ready(Ok(mut ready)) => {
                    crate::os::doorbell::drain(ready.get_inner());
                    ready.clear_ready();
                    continue; // rung: look again
                }
                Poll::Ready(Err(e)) => {
                    return Poll::Ready(Err(Error::io("waiting for a doorbell", e)));
                }
                Poll::Pending => {}
            }
            // No ring yet: also wake after a slice, to look at the ring and its peers.
            let slice = self
                .slice
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(SLICE)));
            if slice.as_mut().poll(cx).is_ready() {
                self.slice = None;
                continue;
            }
            return Poll::Pending;
        }
    }

    /// The doorbell, registered with tokio's reactor (on the first call, which must be
    /// inside a runtime).
    #[cfg(feature = "tokio")]
    fn tokio_fd(&mut self) -> Result<&tokio::io::unix::AsyncFd<UnixDatagram>> {
        if let Socket::Plain(_) = self.socket {
            let Socket::Plain(s) = std::mem::replace(&mut self.socket, Socket::Moving) else {
                unreachable!("checked");
            };
            if tokio::runtime::Handle::try_current().is_err() {
                self.socket = Socket::Plain(s);
                return Err(Error::io(
                    "registering a doorbell with tokio",
                    std::io::Error::other("not inside a tokio runtime"),
                ));
            }
            // SAFETY: the socket owns its descriptor, which stays open and the same for as
            // long as the `AsyncFd` owns the socket (it never gives it away).
            let r = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(s, tokio::io::Interest::READABLE)
            };
            match r {
                Ok(a) => self.socket = Socket::Tokio(a),
                Err(e) => {
                    let (s, e) = e.into_parts();
                    self.socket = Socket::Plain(s);
                    return Err(Error::io("registering a doorbell with tokio", e));
                }
            }
        }
        match &self.socket {
            Socket::Tokio(a) => Ok(a),
            _ => unreachable!("set above"),
        }
    }
}

impl<E: AsyncEndpoint> AsFd for Async<E> {
    /// The doorbell: readable after a wake-up (see [`Async::try_recv_or_arm`]).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.get().as_fd()
    }
}

impl<E: AsyncEndpoint> Drop for Async<E> {
    fn drop(&mut self) {
        self.end.disarm(self.bell);
    }
}

impl<E: AsyncEndpoint + fmt::Debug> fmt::Debug for Async<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Async")
            .field("end", &self.end)
            .field("bell", &format_args!("{:#x}", self.bell))
            .finish()
    }
}
