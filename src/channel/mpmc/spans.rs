//! The endpoints' forms for messages of several consecutive slots (the serde queue's
//! items; see *Multi-slot messages* in the [module docs](super)): a sender's claim of `k`
//! slots lent as a [`SpanLoan`], a receiver's claimed message lent to its reader as a
//! [`SpanView`]. Crate-internal: the public endpoints send and receive one slot a message.

use bytemuck::Pod;

use super::endpoints::{Receiver, Sender};
use super::ring::Ring;
use crate::error::{Error, Result};
use crate::sync::wait::Deadline;

/// How [`Sender::claim_span`] waits for room.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Claim {
    /// Not at all (a `try_put`).
    Try,
    /// Not now, but the caller tries again when woken (an async `put`): as `Try`, but a
    /// message of several slots takes (or keeps) the turn, as a waiting one does.
    Attempt,
    /// Until the deadline.
    Until(Deadline),
}

impl<T: Pod> Sender<T> {
    /// Claims `k` consecutive slots (from 1 to the capacity) for one message of several
    /// slots, waiting as `how` says, and lends them: see [`SpanLoan`].
    ///
    /// A claim of several slots that waits takes the turn (see *Turns* in the module
    /// docs) and keeps it when it gives up for now ([`Error::Timeout`], or
    /// [`Error::WouldBlock`] for an [`Claim::Attempt`]): a timed `put` called again in a
    /// loop, or an async `put` polled again, goes on with it instead of queueing behind
    /// the short messages once more. It lasts until this sender claims, ends it
    /// ([`Sender::leave_turn`]), makes a claim of another kind, or closes; or until
    /// `TURN_MS` (200 ms) pass with no slot freed that it saw: between two calls it does
    /// not look, so a kept turn runs out 200 ms after the last call that saw the queue
    /// drain; the next call takes it again at once if the queue drained meanwhile (see
    /// `forget_lost_turn`), and rests first if not.
    #[inline]
    pub(crate) fn claim_span(&mut self, k: u64, how: Claim) -> Result<SpanLoan<'_, T>> {
        let long = k > 1 && self.end.ring.geo.span_of.is_some();
        let pos = match how {
            Claim::Until(d) if long => self.claim_with_turn(k, Some(d))?,
            Claim::Attempt if long => self.claim_with_turn(k, None)?,
            Claim::Until(d) => self.claim_short(k, Some(d))?,
            Claim::Try | Claim::Attempt => self.claim_short(k, None)?,
        };
        self.end.held = Some((pos, k));
        Ok(self.span_loan(pos, k))
    }

    /// `claim_span`'s common case, tried before it: `k` slots free now, claimed at once by
    /// a sender that holds no forgotten loan and does not know of a turn of its own;
    /// [`Sender::span_loan`] lends them. `None` for anything else (the caller then calls
    /// `claim_span`, which finds it again and handles it). Kept apart, with no [`Error`]
    /// in its result, so that the hot path of a `put` moves no error value around: the
    /// compiler copied `claim_span`'s `Result` through the stack in pieces that the loads
    /// after it could not forward from.
    #[inline]
    pub(crate) fn claim_span_now(&mut self, k: u64) -> Option<u64> {
        if self.end.held.is_some() || self.end.turn.is_held() {
            return None;
        }
        match self.end.ring.poll_send_n(self.end.reg, k) {
            Ok(super::super::Poll::Ready(pos)) => {
                if k > 1 {
                    // As `poll_send_turn` does on a claim: a turn that names our
                    // registration (which we did not know we held) ends with it.
                    self.end.ring.end_turn(self.end.reg);
                }
                self.end.held = Some((pos, k));
                Some(pos)
            }
            _ => None,
        }
    }

    /// The loan of the `k` slots at `pos` that this sender claimed (and recorded in
    /// `held`): `claim_span`'s, or [`Sender::claim_span_now`]'s.
    #[inline]
    pub(crate) fn span_loan(&mut self, pos: u64, k: u64) -> SpanLoan<'_, T> {
        SpanLoan {
            tx: self,
            pos,
            k,
            done: false,
        }
    }

    /// Ends this sender's turn, if it holds one (an async `put` dropped before it could
    /// claim).
    pub(crate) fn leave_turn(&mut self) {
        self.end.ring.leave_turn(self.end.reg, &self.end.turn);
    }

    /// `claim_span` without the turn: a short message, or a `try_put`. A turn this
    /// sender still holds from a wait it gave up is ended first: it no longer waits.
    #[inline]
    fn claim_short(&mut self, k: u64, deadline: Option<Deadline>) -> Result<u64> {
        self.leave_turn();
        self.end
            .claim_until(deadline, k, move |ring, reg| ring.poll_send_n(reg, k))
    }

    /// `claim_span`'s wait for several slots (`deadline: None`: one attempt), with the
    /// turn, so that one-slot messages do not keep it waiting (see *Turns* in the module
    /// docs). Out of line: the short messages' path stays as small as it was.
    #[inline(never)]
    fn claim_with_turn(&mut self, k: u64, deadline: Option<Deadline>) -> Result<u64> {
        // A turn that ran out since our last call while the queue drained.
        self.end.ring.forget_lost_turn(self.end.reg, &self.end.turn);
        // Out of the endpoint for the wait, which borrows the endpoint mutably.
        let state = std::mem::take(&mut self.end.turn);
        let r = self
            .end
            .claim_until(deadline, k, |ring, reg| ring.poll_send_turn(reg, k, &state));
        self.end.turn = state;
        match r {
            // Claimed (the poll ended the turn), or not yet: the turn stays (see
            // `claim_span`).
            Ok(_) | Err(Error::Timeout | Error::WouldBlock) => {}
            Err(_) => self.leave_turn(),
        }
        r
    }
}

impl<T: Pod> Receiver<T> {
    /// Receives the next message, of one or more slots (see *Multi-slot messages* in the
    /// module docs; `span_of` reads its number of slots from its first slot, through a
    /// pointer into shared memory, with volatile reads only), by handing its slots to
    /// `read`, then releases them and checks, as [`Receiver::recv`] does, that they stayed
    /// ours meanwhile: `read`'s result is returned only then. `deadline` is `None` for a
    /// try. For the serde queue, which copies out only the bytes an item has.
    ///
    /// `read` gets pointers to the values in shared memory, valid until it returns: it
    /// must copy out through raw, volatile or fenced reads (`crate::copy`), never form a
    /// reference, and treat what it read as untrusted until this returns `Ok`.
    ///
    /// `attempts` is told of every claiming CAS, before it (`claiming`), and of every one
    /// that failed, after it (`missed`): a `JoinableQueue` counts the item its consumer
    /// takes from before the claim (see [`Attempts`]).
    #[inline]
    pub(crate) fn recv_span_with<R>(
        &mut self,
        deadline: Option<Deadline>,
        span_of: impl Fn(*const T) -> u64,
        attempts: &impl Attempts,
        read: impl FnOnce(SpanView<'_, T>) -> R,
    ) -> Result<R> {
        let (pos, k) = self.end.claim_until(deadline, 1, |ring, reg| {
            ring.poll_recv_by(reg, &span_of, attempts)
        })?;
        self.take_with(pos, k, read)
    }
}

/// What [`Receiver::recv_span_with`] tells of its claims. `claiming` runs once a published
/// message is found, right before the CAS of `head` that claims it, so that what it
/// writes is sequenced before that `SeqCst` CAS: whoever reads `head` past the message
/// (Acquire) sees it. `missed` runs after such a CAS that failed (another receiver took
/// the message, or the weak CAS failed spuriously; the poll goes on), with `drained`,
/// which tells whether the queue is now drained (see `Holder::drained`). A receiver that
/// waits on an empty queue calls neither.
pub(crate) trait Attempts {
    /// Before a claiming CAS.
    fn claiming(&self);
    /// After a claiming CAS that failed.
    fn missed(&self, drained: impl FnOnce() -> bool);
}

/// No count: the plain queue's receive.
impl Attempts for () {
    #[inline]
    fn claiming(&self) {}
    #[inline]
    fn missed(&self, _: impl FnOnce() -> bool) {}
}

/// The `k` slots of one message, claimed by [`Sender::claim_span`], to be written through
/// raw pointers ([`SpanLoan::slot`]) and published with [`SpanLoan::publish`]; dropped
/// unpublished, it is given back (skipped, as a dropped [`Loan`]).
pub(crate) struct SpanLoan<'a, T: Pod> {
    tx: &'a mut Sender<T>,
    pos: u64,
    k: u64,
    done: bool,
}

impl<T: Pod> SpanLoan<'_, T> {
    /// The value of the message's slot `j` (`j < k`: the first, then its continuations),
    /// ours to write until published.
    #[inline]
    pub(crate) fn slot(&self, j: u64) -> *mut T {
        let ring = &self.tx.end.ring;
        // `min` keeps even a wrong `j` inside the claim, so inside the mapping.
        ring.claimed_slot(ring.geo.advance(self.pos, j.min(self.k - 1)))
            .value
            .get()
    }

    /// Publishes the message; `false` if it was skipped meanwhile (we were taken for dead:
    /// tampered shared state), and then nothing is sent.
    #[inline]
    pub(crate) fn publish(mut self) -> bool {
        self.done = true;
        self.tx.end.held = None;
        self.tx.end.ring.publish(self.pos)
    }
}

impl<T: Pod> Drop for SpanLoan<'_, T> {
    fn drop(&mut self) {
        if !self.done {
            // `held` is our claim: give it back.
            self.tx.end.give_back();
        }
    }
}

/// The `k` slots of a claimed message, lent to [`Receiver::recv_span_with`]'s reader.
pub(crate) struct SpanView<'a, T: Pod> {
    ring: &'a Ring<T>,
    pos: u64,
    k: u64,
}

impl<'a, T: Pod> SpanView<'a, T> {
    /// The claimed message of `k` slots at `pos` in `ring`.
    pub(super) fn new(ring: &'a Ring<T>, pos: u64, k: u64) -> Self {
        SpanView { ring, pos, k }
    }
}

impl<T: Pod> SpanView<'_, T> {
    /// The number of slots.
    #[inline]
    pub(crate) fn len(&self) -> u64 {
        self.k
    }

    /// The value of slot `j` (`j < len()`: the first, then its continuations), in shared
    /// memory: read it with raw, volatile or fenced reads only.
    #[inline]
    pub(crate) fn slot(&self, j: u64) -> *const T {
        // `min` keeps even a wrong `j` inside the claim, so inside the mapping.
        self.ring
            .claimed_slot(self.ring.geo.advance(self.pos, j.min(self.k - 1)))
            .value
            .get()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    #[test]
    fn a_reader_that_panics_leaves_no_slot_held() {
        let name = crate::__private::test_name("spans-panic");
        let mut tx = Sender::<u64>::create(&name, 2).unwrap();
        let mut rx = Receiver::<u64>::open(&name).unwrap();
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            rx.recv_span_with(Some(Deadline::NEVER), |_| 1, &(), |_| panic!("the reader"))
        }));
        assert!(r.is_err());
        // The receiver's next call frees the slot the reader had: both are free after it.
        assert_eq!(rx.recv().unwrap(), 2);
        tx.try_send(3).unwrap();
        tx.try_send(4).unwrap();
        assert_eq!((rx.recv().unwrap(), rx.recv().unwrap()), (3, 4));
        assert_eq!(rx.lost(), 0);
    }
}
