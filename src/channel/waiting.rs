//! The waiting loop of the channels (and of the objects built on them): poll the ring,
//! spin, announce a sleep on the ring's [`Signal`], re-check, sleep; and ask, now and then,
//! whether the peers are gone.

use super::{Signal, WaitStrategy};
use crate::error::{Error, Result};
use crate::primitive::AtomicU32;
use crate::sync::wait::{self, Deadline};

/// What a waiting loop asks of the ring on each round.
pub(crate) enum Poll<R> {
    /// Done.
    Ready(R),
    /// Not yet.
    Pending,
}

/// How thoroughly [`wait_until`] asks whether the peer is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Only what shared memory says (a cleanly closed end): no syscall. Asked before
    /// every sleep, after announcing it: a closing end clears its slot and then bumps the
    /// signal word, so either the close is seen here or the bump stops the sleep.
    Cheap,
    /// Also ask the kernel whether the holder is alive. Asked whenever a slice runs out.
    Full,
}

/// The waiting loop of the channels, on the crate's one wait loop (`wait::wait`): poll,
/// spin, then (blocking) announce, re-poll, ask `peer_gone` ([`Check::Cheap`]) and sleep on
/// `signal`; ask it ([`Check::Full`]) about once per slice, by the clock (or, busy-polling,
/// every `wait::BUSY_CHECK`). `poll` returns errors (corruption) as they are.
#[inline]
pub(crate) fn wait_until<R>(
    signal: &Signal,
    strategy: WaitStrategy,
    deadline: Deadline,
    poll: impl FnMut() -> Result<Poll<R>>,
    peer_gone: impl FnMut(Check) -> Result<bool>,
) -> Result<R> {
    let busy = strategy == WaitStrategy::BusyPoll;
    wait_on(signal, busy, false, deadline, poll, peer_gone)
}

/// [`wait_until`] (blocking) for a condition whose publishers call
/// [`Signal::notify_light_if`]: after announcing itself, the waiter issues the heavy side
/// of an asymmetric fence (`os::heavy_barrier`) before it re-checks. For rare waits whose
/// publishers are hot (a `JoinableQueue`'s `join` and its consumers' `task_done`): each
/// sleep costs an interrupt of every CPU that runs a registered process. Should the
/// barrier fail (a seccomp filter that allows it to the publishers and not to us), a
/// wake-up can be missed: the wait then goes on when its sleep slice ends (at most 64 ms),
/// with its liveness checks as usual.
pub(crate) fn wait_until_heavy<R>(
    signal: &Signal,
    deadline: Deadline,
    poll: impl FnMut() -> Result<Poll<R>>,
    peer_gone: impl FnMut(Check) -> Result<bool>,
) -> Result<R> {
    wait_on(signal, false, true, deadline, poll, peer_gone)
}

#[inline]
fn wait_on<R>(
    signal: &Signal,
    busy: bool,
    heavy: bool,
    deadline: Deadline,
    poll: impl FnMut() -> Result<Poll<R>>,
    peer_gone: impl FnMut(Check) -> Result<bool>,
) -> Result<R> {
    let mut waiter = ChannelWaiter {
        signal,
        busy,
        heavy,
        poll,
        peer_gone,
    };
    wait::wait(&mut waiter, deadline)
}

/// A channel endpoint waiting for the ring, as `wait::wait` drives it.
struct ChannelWaiter<'a, P, G> {
    signal: &'a Signal,
    busy: bool,
    /// Whether it issues the heavy barrier after announcing ([`wait_until_heavy`]).
    heavy: bool,
    poll: P,
    peer_gone: G,
}

impl<R, P, G> ChannelWaiter<'_, P, G>
where
    P: FnMut() -> Result<Poll<R>>,
    G: FnMut(Check) -> Result<bool>,
{
    /// The peer is gone: one last look, as it may have published just before it went.
    fn gone(&mut self) -> Result<R> {
        match (self.poll)()? {
            Poll::Ready(r) => Ok(r),
            Poll::Pending => Err(Error::Disconnected),
        }
    }
}

impl<R, P, G> wait::Waiter for ChannelWaiter<'_, P, G>
where
    P: FnMut() -> Result<Poll<R>>,
    G: FnMut(Check) -> Result<bool>,
{
    type Output = R;

    fn word(&self) -> &AtomicU32 {
        &self.signal.word
    }

    fn sleeps(&self) -> bool {
        !self.busy
    }

    fn handoff(&self) -> bool {
        true
    }

    fn attempt(&mut self) -> Result<Option<R>> {
        Ok(match (self.poll)()? {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        })
    }

    fn announce(&mut self) -> Result<wait::Announced<R>> {
        let expected = self.signal.prepare_wait();
        if self.heavy {
            // A failure costs a slice at worst: see `wait_until_heavy`.
            let _ = crate::os::heavy_barrier();
        }
        if let Poll::Ready(r) = (self.poll)()? {
            return Ok(wait::Announced::Ready(r));
        }
        // After the announcement: a peer that closed before it is seen here; one that
        // closes after it bumps the word, and the sleep does not happen or ends (see
        // `EndpointSlot::release` and `Signal::wake_all`).
        if (self.peer_gone)(Check::Cheap)? {
            return self.gone().map(wait::Announced::Ready);
        }
        Ok(wait::Announced::Sleep(expected))
    }

    fn check(&mut self) -> Result<Option<R>> {
        if (self.peer_gone)(Check::Full)? {
            return self.gone().map(Some);
        }
        Ok(None)
    }
}
