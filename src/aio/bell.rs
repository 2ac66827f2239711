//! The doorbell an async wait sleeps on, and the one wait step every async operation of
//! the crate takes: attempt (spinning briefly, as a blocking wait does), arm (register the
//! doorbell and announce a waiter in shared memory), attempt once more, then wait for the
//! doorbell, or for the liveness slice to pass, and look again.
//!
//! Under tokio, a wait that starts shortly after its thread woke a blocking sleeper (a
//! futex wake; a doorbell ring opens no window) polls through its handoff window before
//! it arms, as a blocking wait does (see
//! [`HANDOFF`](crate::sync::wait::HANDOFF)), but one attempt per poll of its task: between
//! two attempts it returns `Pending` with its wake-up deferred as `tokio::task::yield_now`
//! defers it, so the executor runs its other ready tasks and polls its drivers first. The
//! peer it woke then answers into a ring nobody sleeps on, and rings no doorbell.
//!
//! What lives here touches no shared memory itself: arming and attempting are the
//! caller's (a channel's signal, an event's or a semaphore's word).

#[cfg(feature = "tokio")]
use std::future::Future;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
#[cfg(feature = "tokio")]
use std::task::{Context, Poll};

use crate::error::{Error, Result};
use crate::sync::wait;
#[cfg(feature = "tokio")]
use crate::sync::wait::{Deadline, Handoff, Step};

/// Attempts before arming (about a microsecond): an async wait spins less than a blocking
/// one (whose budget is [`wait::SPIN_LIMIT`]), since it holds an executor thread that
/// other tasks may need.
const SPIN: u32 = 64;

/// How long an async wait goes without looking at its condition (and, through it, its
/// peers' liveness).
#[cfg(feature = "tokio")]
pub(crate) const SLICE: std::time::Duration = wait::MAX_SLICE;

/// A doorbell: a Unix datagram socket of its own, bound to an abstract address (see
/// `os::doorbell`), plain until the first wait under tokio registers it with the reactor.
pub(crate) struct Doorbell {
    id: u64,
    socket: Socket,
    /// The liveness slice of a pending wait.
    #[cfg(feature = "tokio")]
    slice: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// The handoff window the current wait is polling through, if any.
    #[cfg(feature = "tokio")]
    window: Option<Handoff>,
    /// Whether the current wait has armed the doorbell: it opens no window after that (a
    /// ring that found nothing is not a handoff). Both are reset when a wait ends, and
    /// by [`Doorbell::begin`] (a wait whose future was dropped did not end).
    #[cfg(feature = "tokio")]
    armed: bool,
}

enum Socket {
    Plain(UnixDatagram),
    #[cfg(feature = "tokio")]
    Tokio(tokio::io::unix::AsyncFd<UnixDatagram>),
    /// Only while moving from one to the other.
    #[cfg(feature = "tokio")]
    Moving,
}

impl Doorbell {
    /// A fresh doorbell.
    pub(crate) fn new() -> Result<Doorbell> {
        let (id, socket) =
            crate::os::doorbell::open().map_err(|e| Error::io("doorbell socket", e))?;
        Ok(Doorbell {
            id,
            socket: Socket::Plain(socket),
            #[cfg(feature = "tokio")]
            slice: None,
            #[cfg(feature = "tokio")]
            window: None,
            #[cfg(feature = "tokio")]
            armed: false,
        })
    }

    /// The id that wakers ring (registered in shared memory by arming).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    fn socket(&self) -> &UnixDatagram {
        match &self.socket {
            Socket::Plain(s) => s,
            #[cfg(feature = "tokio")]
            Socket::Tokio(a) => a.get_ref(),
            #[cfg(feature = "tokio")]
            Socket::Moving => unreachable!("the doorbell is always put back"),
        }
    }

    /// A new wait begins: forget a window or an arming left by a wait whose future was
    /// dropped before it ended (another operation's, perhaps).
    #[cfg(feature = "tokio")]
    pub(crate) fn begin(&mut self) {
        self.window = None;
        self.armed = false;
    }

    /// Takes the datagrams that rang the doorbell.
    pub(crate) fn clear(&self) {
        crate::os::doorbell::drain(self.socket());
    }

    /// One executor-agnostic wait step on `state`: `Some` if `attempt` gives a value
    /// within a short spin; otherwise arms with `arm(state, id)` and attempts once more
    /// (`None`: wait for the doorbell, then call again).
    #[inline]
    pub(crate) fn attempt_or_arm<S: ?Sized, R>(
        &self,
        state: &mut S,
        mut attempt: impl FnMut(&mut S) -> Result<Option<R>>,
        arm: impl FnOnce(&mut S, u64) -> Result<()>,
    ) -> Result<Option<R>> {
        match spun(state, &mut attempt)? {
            None => self.arm_then_attempt(state, attempt, arm),
            r => Ok(r),
        }
    }

    /// Arms with `arm(state, id)`, then attempts once more: a change made before the
    /// announcement is seen here, one made after it rings the doorbell.
    #[inline]
    fn arm_then_attempt<S: ?Sized, R>(
        &self,
        state: &mut S,
        mut attempt: impl FnMut(&mut S) -> Result<Option<R>>,
        arm: impl FnOnce(&mut S, u64) -> Result<()>,
    ) -> Result<Option<R>> {
        arm(state, self.id)?;
        attempt(state)
    }

    /// The whole async wait on `state`, as a poll: `Ready` with what `attempt` gives (or
    /// its error), or `Pending` with the task woken by the doorbell or after the liveness
    /// slice (or, in the handoff window, by itself).
    #[cfg(feature = "tokio")]
    pub(crate) fn poll_until<S: ?Sized, R>(
        &mut self,
        cx: &mut Context<'_>,
        state: &mut S,
        mut attempt: impl FnMut(&mut S) -> Result<Option<R>>,
        mut arm: impl FnMut(&mut S, u64) -> Result<()>,
    ) -> Poll<Result<R>> {
        loop {
            let r = match self.window.take() {
                // In the window: one attempt (after a yield of the thread) per poll.
                Some(mut window) => match window.step(|| attempt(state)) {
                    Ok(Step::Done(r)) => Ok(Some(r)),
                    Ok(Step::Again) => {
                        self.window = Some(window);
                        return come_back(cx);
                    }
                    Ok(Step::Over) => self.arm_now(state, &mut attempt, &mut arm),
                    Err(e) => Err(e),
                },
                None => match spun(state, &mut attempt) {
                    Ok(None) if !self.armed => match Handoff::open(Deadline::NEVER) {
                        Some(window) => {
                            self.window = Some(window);
                            return come_back(cx);
                        }
                        None => self.arm_now(state, &mut attempt, &mut arm),
                    },
                    Ok(None) => self.arm_now(state, &mut attempt, &mut arm),
                    r => r,
                },
            };
            match r {
                Ok(None) => {}
                r => {
                    if self.slice.is_some() {
                        self.slice = None;
                    }
                    self.armed = false;
                    return Poll::Ready(r.map(|v| v.expect("matched above")));
                }
            }
            match self.poll_rung(cx) {
                Poll::Ready(Ok(())) => continue, // rung, or the slice passed: look again
                Poll::Ready(Err(e)) => {
                    self.armed = false;
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// [`arm_then_attempt`](Self::arm_then_attempt), remembering for this wait that it
    /// armed.
    #[cfg(feature = "tokio")]
    fn arm_now<S: ?Sized, R>(
        &mut self,
        state: &mut S,
        attempt: impl FnMut(&mut S) -> Result<Option<R>>,
        arm: impl FnOnce(&mut S, u64) -> Result<()>,
    ) -> Result<Option<R>> {
        self.armed = true;
        self.arm_then_attempt(state, attempt, arm)
    }

    /// `Ready(Ok)` once the doorbell rang (drained) or the liveness slice passed; `Pending`
    /// with the task registered for both otherwise.
    #[cfg(feature = "tokio")]
    fn poll_rung(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let afd = self.tokio_fd()?;
        match afd.poll_read_ready(cx) {
            Poll::Ready(Ok(mut ready)) => {
                crate::os::doorbell::drain(ready.get_inner());
                ready.clear_ready();
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => {
                return Poll::Ready(Err(Error::io("waiting for a doorbell", e)));
            }
            Poll::Pending => {}
        }
        let slice = self
            .slice
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(SLICE)));
        if slice.as_mut().poll(cx).is_ready() {
            self.slice = None;
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }

    /// The socket, registered with tokio's reactor (on the first call, which must be
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

/// `Pending`, the task to be polled again once the executor has run its other ready tasks
/// and looked at its IO and timers: tokio's own `yield_now`, whose wake-up the scheduler
/// defers so (a plain self-wake would put the task straight back at the front of the
/// queue, and on a multi-thread runtime may wake an idle worker, with a syscall, to
/// steal it).
#[cfg(feature = "tokio")]
fn come_back<T>(cx: &mut Context<'_>) -> Poll<T> {
    let yielding = std::pin::pin!(tokio::task::yield_now());
    // The first poll of `yield_now` hands our waker to the scheduler and is `Pending`;
    // dropping the future after it changes nothing.
    let _ = yielding.poll(cx);
    Poll::Pending
}

/// One attempt, then (if it gave nothing) the spin of a blocking wait, up to [`SPIN`]
/// attempts: `None` if nothing came.
#[inline]
fn spun<S: ?Sized, R>(
    state: &mut S,
    mut attempt: impl FnMut(&mut S) -> Result<Option<R>>,
) -> Result<Option<R>> {
    // The usual case under load: ready at once (no spin budget to consult).
    if let Some(r) = attempt(state)? {
        return Ok(Some(r));
    }
    wait::spin_phase(SPIN, || attempt(state))
}

impl AsFd for Doorbell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket().as_fd()
    }
}

#[cfg(all(test, feature = "tokio", not(loom)))]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// One poll of a wait: whether a window was open before it, the attempts and
    /// armings it made, and whether after it a window was open or the doorbell armed.
    #[derive(Debug, Clone, Copy)]
    struct Polled {
        window_before: bool,
        attempts: u32,
        arms: u32,
        window_after: bool,
        armed_after: bool,
        pending: bool,
    }

    /// Runs `f` with a fresh doorbell on a current-thread runtime, this thread's handoff
    /// window open (as if it had just woken a sleeper).
    fn in_a_window<R, F: std::future::Future<Output = R>>(f: impl FnOnce(Doorbell) -> F) -> R {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            wait::open_window_for_tests();
            f(Doorbell::new().unwrap()).await
        })
    }

    /// A wait whose condition holds from its `ready_at`th poll on, begun right after this
    /// thread (pretendedly) woke a sleeper; each poll as seen from outside.
    fn polls_of_a_wait(ready_at: u32) -> (u32, Vec<Polled>) {
        in_a_window(|mut bell| async move {
            let (attempts, arms) = (Cell::new(0), Cell::new(0));
            let (mut n, mut log) = (0, Vec::new());
            let got = std::future::poll_fn(|cx| {
                n += 1;
                let now = n;
                let before = (bell.window.is_some(), attempts.get(), arms.get());
                let p = bell.poll_until(
                    cx,
                    &mut (),
                    |_| {
                        attempts.set(attempts.get() + 1);
                        Ok((now >= ready_at).then_some(now))
                    },
                    |_, _| {
                        arms.set(arms.get() + 1);
                        Ok(())
                    },
                );
                log.push(Polled {
                    window_before: before.0,
                    attempts: attempts.get() - before.1,
                    arms: arms.get() - before.2,
                    window_after: bell.window.is_some(),
                    armed_after: bell.armed,
                    pending: p.is_pending(),
                });
                p
            })
            .await
            .unwrap();
            assert!(
                bell.window.is_none() && !bell.armed,
                "a wait that ends leaves nothing"
            );
            (got, log)
        })
    }

    #[test]
    fn a_wait_in_its_handoff_window_attempts_once_a_poll_and_arms_only_after_it() {
        let (got, log) = polls_of_a_wait(5);
        assert_eq!(
            got,
            log.len() as u32,
            "ready at the poll that found it: {log:?}"
        );
        assert!(got >= 5);
        let mut armed = false;
        for p in &log {
            // A round of a poll is at most a first attempt, a spin and its last look, and
            // the attempt after arming; a poll that finds its liveness slice passed makes
            // a second round (nothing rings this doorbell). So a poll never holds the
            // thread through a window (200 ms of attempts).
            assert!(
                p.attempts <= 2 * (SPIN + 3) && p.arms <= 2,
                "{p:?} in {log:?}"
            );
            // Every `Pending` comes back: through the executor (a window) or the doorbell.
            assert!(
                !p.pending || p.window_after != p.armed_after,
                "{p:?} in {log:?}"
            );
            if p.window_before {
                // A window's poll: one attempt, no arming; or, the window over, the arming
                // and the attempt after it.
                assert!(
                    (p.attempts, p.arms) == (1, 0) || (p.attempts, p.arms) == (2, 1),
                    "{p:?} in {log:?}"
                );
            }
            // Armed once, the wait opens no window again.
            assert!(!(armed && p.window_after), "{p:?} in {log:?}");
            armed |= p.armed_after;
        }
        // The window (200 ms) outlasts the five polls unless a yield in it ran another
        // process (a loaded machine): then the wait armed instead, as it should.
        if log[0].window_after && !armed {
            assert_eq!(log.len(), 5);
            assert!(log.iter().all(|p| p.arms == 0));
        }
    }

    #[test]
    fn a_wait_begun_after_one_was_dropped_in_its_window_starts_afresh() {
        in_a_window(|mut bell| async move {
            // One poll of a wait that then is dropped: its window (if it opened) or its
            // arming stays behind.
            let _ = std::future::poll_fn(|cx| {
                Poll::Ready(bell.poll_until(cx, &mut (), |_| Ok(None::<()>), |_, _| Ok(())))
            })
            .await;
            assert!(bell.window.is_some() || bell.armed);
            bell.begin();
            assert!(bell.window.is_none() && !bell.armed);
        });
    }
}
