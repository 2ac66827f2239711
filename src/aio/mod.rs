//! Async waits: [`Async`] wraps a channel end (`spsc`, `mpmc`, `frames`, a [`Pipe`], a
//! [`Queue`] or [`JoinableQueue`]) so that an executor can wait to receive from it or to
//! send into it without a thread per wait; `Event::wait_async`,
//! `Semaphore::acquire_async` (and `BoundedSemaphore`'s), `Process::join_async` (with the
//! `tokio` feature), [`AsyncResult`](crate::process::AsyncResult) (a future, any
//! executor) and [`Imap`](crate::process::Imap) (a stream, with `tokio`) do the same for
//! the other objects that can be waited for.
//!
//! # How a wake-up crosses processes
//! An async waiter owns a *doorbell*: a Unix datagram socket of its own, bound to an
//! abstract address (Linux: nothing in the file system, gone with the socket). To wait, it
//! registers the doorbell in the object's shared state (a channel's signal, an event's or
//! a semaphore's word: each has room for 8 doorbells), announces itself there as a
//! sleeping blocking waiter does (a channel's signal has a bit of its own for async
//! waiters, ASYNC, beside WAITERS; an event's or a semaphore's word shares WAITERS),
//! checks its condition once more, and only then waits for the socket to become readable.
//! A peer that publishes (sends, receives, sets, releases) looks at those bits anyway (one
//! fence and one load, or the read-modify-write it makes regardless); only when one is set
//! does it wake: the futex wake for WAITERS, the registered doorbells (one `sendto` each)
//! for ASYNC. So with no async (or blocking) waiter parked, the peer makes no syscall at
//! all, and blocking and async waiters on one object coexist. A datagram from anyone else
//! costs a re-check, never a wrong result.
//!
//! # Executors
//! The core is executor-agnostic: [`Async::try_recv_or_arm`] (and
//! [`Async::try_send_or_arm`]) takes a message if one is ready, or arms the doorbell and
//! says [`Error::WouldBlock`]; the doorbell's descriptor ([`AsFd`]) becomes readable when a
//! wake-up comes. With the `tokio` feature, `Async::recv`, `Async::send`, the other
//! `_async` waits and `futures_core::Stream` for receivers do the waiting under
//! tokio (any runtime with IO and time enabled, current-thread or multi-thread).
//!
//! Under tokio, a wait that begins shortly after its thread woke a peer asleep in a
//! blocking wait (a futex wake: a request sent to a server process that slept) first
//! polls through a *handoff window*, as a blocking wait does (up to 100 µs after that
//! wake, narrower while it does not pay): one attempt per poll of its task, after a
//! `sched_yield` of its thread, and in between the task yields as
//! `tokio::task::yield_now` does, so the executor runs its other ready tasks (and looks
//! at its IO and timers) between two attempts. The answer then lands in a ring nobody
//! sleeps on, and neither side pays a wake-up for it: a round trip to a sleeping peer
//! costs one wake-up, not two. Ringing an async peer's doorbell opens no window: between
//! two async ends, a round trip still costs two wake-ups. The window belongs to the
//! executor thread, as a blocking thread's does: after a futex wake made on that thread,
//! every wait that begins on it within the window polls first.
//! [`Async::try_recv_or_arm`] has no window (the caller does the waiting).
//!
//! # Cancel safety
//! Every async operation here is cancel-safe, as tokio means it: a message is taken (or
//! put, or a permit taken) only in a synchronous step that then returns it, so dropping a
//! pending future (in `tokio::select!`, on a timeout) loses nothing and sends nothing. An
//! [`Async`] keeps its doorbell registered until it drops; a registration left behind
//! costs a peer nothing until somebody announces a wait again. The one-shot waits
//! (`wait_async`, `acquire_async`) remove theirs when they finish or are dropped.
//!
//! # Dead peers
//! A peer that closes rings the doorbell (its close wakes every waiter); one killed is
//! noticed within the same bound as a blocking wait: an async wait looks at its condition
//! (and so at its peers' liveness) at least every 64 ms.
//!
//! # Files
//! - `mod.rs`: [`Async`] and the ends it wraps.
//! - `bell`: the doorbell and the one async wait step.
//! - `waits`: the async waits of events, semaphores and processes.
//!
//! This module uses `channel` (the signals), `sync` (the words), `process`, `queue` and
//! `os` (the sockets).

mod bell;
#[cfg(feature = "tokio")]
mod waits;

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd};

use bytemuck::Pod;

use crate::channel::{frames, mpmc, spsc, Signal};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::queue::{JoinableQueue, Queue};
use crate::Pipe;
use bell::Doorbell;

mod sealed {
    pub trait Sealed {}
}

/// A channel end that [`Async`] can wrap: the receiving and sending ends of `spsc`,
/// `mpmc` and `frames`, [`Pipe`], [`Queue`], [`JoinableQueue`]. Sealed.
pub trait AsyncEndpoint: sealed::Sealed {
    /// Registers doorbell `bell` and announces a waiter on the signal that a receive
    /// (`send == false`) or a send waits on.
    #[doc(hidden)]
    fn arm(&mut self, bell: u64, send: bool) -> Result<()>;

    /// Removes doorbell `bell` from every signal it may be registered on.
    #[doc(hidden)]
    fn disarm(&mut self, bell: u64);
}

/// An end that receives: [`Async::try_recv_or_arm`] and (with `tokio`) `recv` and the
/// other receiving calls.
pub trait AsyncRecv: AsyncEndpoint {
    /// What a receive returns.
    type Item;

    /// One receive that never blocks ([`Error::WouldBlock`] if nothing is ready).
    #[doc(hidden)]
    fn attempt_recv(&mut self) -> Result<Self::Item>;
}

/// An end that sends: [`Async::try_send_or_arm`] and (with `tokio`) `send`.
pub trait AsyncSend: AsyncEndpoint {
    /// What a send takes: the value (`spsc`, `mpmc`), the bytes (`frames`, [`Pipe`]) or a
    /// reference to the item (the serde queues).
    type Msg<'a>: Copy
    where
        Self: 'a;

    /// One send that never blocks ([`Error::WouldBlock`] if there is no room).
    #[doc(hidden)]
    fn attempt_send(&mut self, msg: Self::Msg<'_>) -> Result<()>;

    /// Gives up a send that `attempt_send` left waiting (a serde queue's long item ends
    /// its turn).
    #[doc(hidden)]
    fn abandon_send(&mut self) {}
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
    signal.prepare_async_wait();
    Ok(())
}

/// `Sealed` and [`AsyncEndpoint`] for an end, with its generic parameters in brackets:
/// the ends of the typed and frame rings (`one`: one side, one signal to wait on), or the
/// ends that both send and receive (`two`: [`Pipe`], and the serde queues, which attach
/// each side on first use).
macro_rules! endpoint {
    (one [$($gen:tt)*] $ty:ty) => {
        impl<$($gen)*> sealed::Sealed for $ty {}
        impl<$($gen)*> AsyncEndpoint for $ty {
            fn arm(&mut self, bell: u64, _send: bool) -> Result<()> {
                arm_signal(self.wait_signal(), bell)
            }
            fn disarm(&mut self, bell: u64) {
                self.wait_signal().remove_bell(bell);
            }
        }
    };
    (two [$($gen:tt)*] $ty:ty) => {
        impl<$($gen)*> sealed::Sealed for $ty {}
        impl<$($gen)*> AsyncEndpoint for $ty {
            fn arm(&mut self, bell: u64, send: bool) -> Result<()> {
                let signal = if send {
                    self.sender()?.wait_signal()
                } else {
                    self.receiver()?.wait_signal()
                };
                arm_signal(signal, bell)
            }
            fn disarm(&mut self, bell: u64) {
                for s in self.attached_signals() {
                    s.remove_bell(bell);
                }
            }
        }
    };
}

/// [`AsyncRecv`] for an end whose non-blocking receive is `$call`.
macro_rules! receives {
    ([$($gen:tt)*] $ty:ty, $item:ty, $call:ident) => {
        impl<$($gen)*> AsyncRecv for $ty {
            type Item = $item;
            #[inline]
            fn attempt_recv(&mut self) -> Result<$item> {
                self.$call()
            }
        }
    };
}

/// [`AsyncSend`] for an end that takes `$msg`, sending with `$send(end, msg)` (and
/// giving up with `$abandon(end)`).
macro_rules! sends {
    ([$($gen:tt)*] $ty:ty, $msg:ty, $send:expr $(, $abandon:expr)?) => {
        impl<$($gen)*> AsyncSend for $ty {
            type Msg<'a>
                = $msg
            where
                Self: 'a;
            #[inline]
            fn attempt_send(&mut self, msg: Self::Msg<'_>) -> Result<()> {
                $send(self, msg)
            }
            $(
                fn abandon_send(&mut self) {
                    $abandon(self)
                }
            )?
        }
    };
}

endpoint!(one [T: Pod] spsc::Receiver<T>);
endpoint!(one [T: Pod] mpmc::Receiver<T>);
endpoint!(one [] frames::Receiver);
endpoint!(one [T: Pod] spsc::Sender<T>);
endpoint!(one [T: Pod] mpmc::Sender<T>);
endpoint!(one [] frames::Sender);
endpoint!(two [] Pipe);
endpoint!(two [T, C: Codec<T>] Queue<T, C>);
endpoint!(two [T, C: Codec<T>] JoinableQueue<T, C>);

receives!([T: Pod] spsc::Receiver<T>, T, try_recv);
receives!([T: Pod] mpmc::Receiver<T>, T, try_recv);
receives!([] frames::Receiver, Vec<u8>, try_recv);
receives!([] Pipe, Vec<u8>, try_recv);
receives!([T, C: Codec<T>] Queue<T, C>, T, try_get);
receives!([T, C: Codec<T>] JoinableQueue<T, C>, T, try_get);

/// A typed ring's send: the value comes back in the error, which drops it.
fn send_value<T: Pod>(r: std::result::Result<(), crate::SendError<T>>) -> Result<()> {
    r.map_err(|e| e.error)
}

sends!([T: Pod] spsc::Sender<T>, T, |end: &mut Self, v| send_value(end.try_send(v)));
sends!([T: Pod] mpmc::Sender<T>, T, |end: &mut Self, v| send_value(end.try_send(v)));
sends!([] frames::Sender, &'a [u8], |end: &mut Self, b| end.try_send(b));
sends!([] Pipe, &'a [u8], |end: &mut Self, b| end.try_send(b));
// A long item takes the turn as a blocking `put` does (see `Queue::attempt_put`), and
// ends it when the send is given up.
sends!([T, C: Codec<T>] Queue<T, C>, &'a T, |q: &mut Self, item| q.attempt_put(item),
    |q: &mut Self| q.leave_turn());
sends!([T, C: Codec<T>] JoinableQueue<T, C>, &'a T, |q: &mut Self, item| q.attempt_put(item),
    |q: &mut Self| q.leave_turn());

/// `Some(value)`, `None` for [`Error::WouldBlock`], or the error.
#[inline]
fn ready<R>(r: Result<R>) -> Result<Option<R>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Error::WouldBlock) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A channel end that async code can wait on; see the [module docs](self).
///
/// ```
/// # #[cfg(feature = "tokio")]
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use shmkit::{aio::Async, spsc};
/// # let name = shmkit::__private::test_name("doc-async");
/// let mut tx = Async::new(spsc::Sender::<u64>::create(&name, 64)?)?;
/// let mut rx = Async::new(spsc::Receiver::<u64>::open(&name)?)?; // usually in another process
/// tx.send(7).await?;
/// assert_eq!(rx.recv().await?, 7);
/// # Ok::<(), shmkit::Error>(())
/// # }).unwrap();
/// ```
pub struct Async<E: AsyncEndpoint> {
    end: E,
    bell: Doorbell,
    /// An error met after a batch of `recv_many`: the next receive returns it.
    deferred: Option<Error>,
    /// The stream has ended (`Stream::poll_next` returned `None`).
    #[cfg(feature = "tokio")]
    ended: bool,
}

impl<E: AsyncEndpoint> Async<E> {
    /// Wraps `end`, with a doorbell of its own.
    pub fn new(end: E) -> Result<Self> {
        Ok(Async {
            end,
            bell: Doorbell::new()?,
            deferred: None,
            #[cfg(feature = "tokio")]
            ended: false,
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

    /// Takes the datagrams that rang the doorbell (after it became readable).
    pub fn clear(&self) {
        self.bell.clear();
    }
}

impl<E: AsyncRecv> Async<E> {
    /// Takes a message if one is ready; otherwise arms the doorbell (so that the next
    /// publication rings it) and returns [`Error::WouldBlock`]: wait for the doorbell's
    /// descriptor ([`AsFd`]) to become readable, call [`Async::clear`], and try again.
    /// Any other error ([`Error::Disconnected`], ...) is the receive's.
    #[inline]
    pub fn try_recv_or_arm(&mut self) -> Result<E::Item> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        let r = self.bell.attempt_or_arm(
            &mut self.end,
            |end| ready(end.attempt_recv()),
            |end, bell| end.arm(bell, false),
        );
        r?.ok_or(Error::WouldBlock)
    }

    /// Receives the next message, waiting without blocking the thread. Cancel-safe.
    /// [`Error::Disconnected`] once the senders are gone and the ring is drained.
    #[cfg(feature = "tokio")]
    pub async fn recv(&mut self) -> Result<E::Item> {
        // The usual case under load, ready at once: one direct receive.
        if self.deferred.is_none() {
            match self.end.attempt_recv() {
                Err(Error::WouldBlock) => {}
                r => return r,
            }
        }
        self.bell.begin();
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
            match self.end.attempt_recv() {
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
    /// without a ring, after the liveness slice), or, in a handoff window (see the
    /// [module docs](self)), by the executor itself once its other ready tasks have run,
    /// with the doorbell not armed: wake the task when the waker says so (a caller
    /// that waits only for the doorbell's descriptor uses
    /// [`try_recv_or_arm`](Self::try_recv_or_arm) instead). A wait given up before it
    /// completes leaves its state to the next poll, which carries on from there: a window
    /// ends within its 100 µs (one resumed later ends at its first attempt, and narrows
    /// the thread's next windows as a missed one does), and after an arming no window
    /// opens until a wait completes (`recv` and `send` start afresh).
    #[cfg(feature = "tokio")]
    #[inline]
    pub fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<E::Item>> {
        if let Some(e) = self.deferred.take() {
            return std::task::Poll::Ready(Err(e));
        }
        self.bell.poll_until(
            cx,
            &mut self.end,
            |end| ready(end.attempt_recv()),
            |end, bell| end.arm(bell, false),
        )
    }
}

impl<E: AsyncSend> Async<E> {
    /// Sends `msg` if there is room; otherwise arms the doorbell (so that the next
    /// release of room rings it) and returns [`Error::WouldBlock`], as
    /// [`try_recv_or_arm`](Self::try_recv_or_arm) does for receiving.
    ///
    /// A [`Queue`]'s long item that finds no room takes the queue's turn, as a blocking
    /// `put` does (see the [`queue`](crate::queue) module docs): the other producers let
    /// the queue drain for it. Call this again when woken, or
    /// [`abandon_send`](Self::abandon_send) to give the send up. A queue remembers how
    /// many slots its last attempt lacked, so that the next attempts encode nothing
    /// until they may be free: call `abandon_send` before sending another item instead,
    /// or that item waits once for as many slots.
    #[inline]
    pub fn try_send_or_arm(&mut self, msg: E::Msg<'_>) -> Result<()> {
        let r = self.bell.attempt_or_arm(
            &mut self.end,
            |end| ready(end.attempt_send(msg)),
            |end, bell| end.arm(bell, true),
        );
        r?.ok_or(Error::WouldBlock)
    }

    /// Gives up a send that [`try_send_or_arm`](Self::try_send_or_arm) or
    /// [`poll_send`](Self::poll_send) left waiting: a [`Queue`]'s long item ends its
    /// turn (see the [`queue`](crate::queue) module docs), which would otherwise hold the
    /// other producers back until it runs out (200 ms after its taker last saw the queue
    /// drain, and their next look). Nothing to do for the other ends; dropping a
    /// [`send`](Self::send) future does it.
    pub fn abandon_send(&mut self) {
        self.end.abandon_send();
    }

    /// Sends `msg`, waiting without blocking the thread while there is no room.
    /// Cancel-safe: dropped before it completes, it has sent nothing (and a [`Queue`]'s
    /// long item gives up its turn). The errors are the synchronous send's
    /// ([`Error::Disconnected`] once the receivers are gone, ...).
    #[cfg(feature = "tokio")]
    pub async fn send(&mut self, msg: E::Msg<'_>) -> Result<()> {
        // The usual case under load, room at once: one direct send.
        match self.end.attempt_send(msg) {
            Err(Error::WouldBlock) => {}
            r => return r,
        }
        // From here on, a send dropped before it completes is given up (a serde queue's
        // long item ends its turn).
        struct Waiting<'a, E: AsyncSend>(&'a mut Async<E>);
        impl<E: AsyncSend> Drop for Waiting<'_, E> {
            fn drop(&mut self) {
                self.0.end.abandon_send();
            }
        }
        self.bell.begin();
        let w = Waiting(self);
        std::future::poll_fn(|cx| w.0.poll_send(cx, msg)).await
    }

    /// The poll form of [`send`](Self::send). A caller that stops polling before it is
    /// ready calls [`abandon_send`](Self::abandon_send) (or drops the [`Async`]). Its
    /// `Pending` is [`poll_recv`](Self::poll_recv)'s: the waker may be the executor's,
    /// in a handoff window.
    #[cfg(feature = "tokio")]
    #[inline]
    pub fn poll_send(
        &mut self,
        cx: &mut std::task::Context<'_>,
        msg: E::Msg<'_>,
    ) -> std::task::Poll<Result<()>> {
        self.bell.poll_until(
            cx,
            &mut self.end,
            |end| ready(end.attempt_send(msg)),
            |end, bell| end.arm(bell, true),
        )
    }
}

/// Receivers as a stream: `None` once every sender is gone and the ring is drained
/// ([`Error::Disconnected`]); any other error is yielded, and then the stream ends,
/// except [`Error::Codec`] (a queue's item that did not decode), after which it goes
/// on, as the receivers' `iter()` do.
#[cfg(feature = "tokio")]
impl<E: AsyncRecv + Unpin> futures_core::Stream for Async<E> {
    type Item = Result<E::Item>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match this.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(v)) => Poll::Ready(Some(Ok(v))),
            Poll::Ready(Err(Error::Disconnected)) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => {
                this.ended = !matches!(e, Error::Codec { .. });
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

#[cfg(feature = "tokio")]
impl<E: AsyncRecv + Unpin> futures_core::FusedStream for Async<E> {
    fn is_terminated(&self) -> bool {
        self.ended
    }
}

impl<E: AsyncEndpoint> AsFd for Async<E> {
    /// The doorbell: readable after a wake-up (see [`Async::try_recv_or_arm`]).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.bell.as_fd()
    }
}

impl<E: AsyncEndpoint> Drop for Async<E> {
    fn drop(&mut self) {
        self.end.disarm(self.bell.id());
    }
}

impl<E: AsyncEndpoint + fmt::Debug> fmt::Debug for Async<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Async")
            .field("end", &self.end)
            .field("bell", &format_args!("{:#x}", self.bell.id()))
            .finish()
    }
}
