//! Turns (see *Turns* in the [module docs](super)): the word beside `tail` with which a
//! sender waiting for several slots asks the others to let the queue drain for it, how it
//! takes, keeps fresh and ends it, how the others read it, and how a blocked sender's
//! recovery ends the turn of a sender that is gone or past its time. Used only where
//! messages may take several slots (the serde queue): plain `mpmc` never reads the turn.
//!
//! What lives here touches only the turn word (and reads `head`, the registrations'
//! tokens and the clock); it wakes waiting senders through the `space` signal.

use bytemuck::Pod;

use super::super::Poll;
use super::ring::{Ring, Side};
use super::MAX_ENDPOINTS;
use crate::error::Result;
use crate::primitive::Ordering;

/// How long a turn stays without receivers freeing a slot (see *Turns* in the module
/// docs): far longer than a receiver that runs takes to free one, short enough that
/// processes that must put before they get again (workers that feed their own queue) are
/// not stalled for long when the queue cannot drain.
pub(super) const TURN_MS: u64 = 200;

// The turn word keeps a registration's index plus one in its low 8 bits.
const _: () = assert!(MAX_ENDPOINTS < 255);

/// What a sender waiting for its turn keeps between polls (`poll_send_turn`), and between
/// calls: a timed `put` called again, or an async `put` polled again, goes on with the
/// turn it took (see `Sender::claim_span`).
#[derive(Debug, Default)]
pub(super) struct TurnState {
    /// Whether it has the turn, as far as it knows.
    held: std::cell::Cell<bool>,
    /// `head` as it last saw it while it had the turn.
    head: std::cell::Cell<u64>,
    /// Until when (the turns' clock) it does not take the turn again.
    rest: std::cell::Cell<u64>,
}

impl TurnState {
    /// Whether its sender has the turn, as far as it knows.
    pub(super) fn is_held(&self) -> bool {
        self.held.get()
    }
}

/// The turn word of sender registration `reg`, taken at `now` (milliseconds).
fn turn_word(reg: usize, now: u64) -> u64 {
    (reg as u64 + 1) | now << 8
}

/// The registration index plus one that turn word `t` names (0: none).
pub(super) fn turn_owner(t: u64) -> u64 {
    t & 0xff
}

/// Whether turn word `t` (not 0) is past its time at `now`: older than [`TURN_MS`], or
/// from a time that has not come (garbage).
pub(super) fn turn_expired(t: u64, now: u64) -> bool {
    now.wrapping_sub(t >> 8) >= TURN_MS
}

/// The clock that turns are timed by. Under loom, the modelled clock, which stands still
/// unless a model moves it.
pub(super) fn turn_now() -> u64 {
    #[cfg(loom)]
    let now = crate::primitive::clock_ms();
    #[cfg(not(loom))]
    let now = crate::os::monotonic_ms();
    now & (u64::MAX >> 8)
}

impl<T: Pod> Ring<T> {
    /// Whether sender registration `reg` may claim now: nobody's turn, or its own (see
    /// *Turns* in the module docs).
    #[inline]
    pub(super) fn may_claim(&self, reg: usize) -> bool {
        // Relaxed: a hint (see `Tail::turn`). A sender that misses a turn just taken claims
        // once more; one that misses its end is woken by it (`end_turn`).
        let t = self.hdr().tail.0.turn.load(Ordering::Relaxed);
        t == 0 || turn_owner(t) == reg as u64 + 1 || self.turn_over(t)
    }

    /// Whether another sender's turn `t` is past its time (the slow path of `may_claim`:
    /// the clock is read only when a turn is taken). One past its time is cleared, so that
    /// the next claims do not read the clock for it (its taker, if it still waits, then
    /// rests before it takes the turn again: see `keep_turn`).
    #[cold]
    fn turn_over(&self, t: u64) -> bool {
        if !turn_expired(t, turn_now()) {
            return false;
        }
        // Relaxed: a hint (see `Tail::turn`). Nobody waits for a turn to end by time.
        let _ = self
            .hdr()
            .tail
            .0
            .turn
            .compare_exchange(t, 0, Ordering::Relaxed, Ordering::Relaxed);
        true
    }

    /// `poll_send_n` for a sender that waits (blocking, until a deadline, or an async send
    /// between its attempts) to claim a message of `k > 1` slots, which needs them all free
    /// at once: one that cannot claim now takes the turn if nobody has it (or another's is
    /// past its time), so that the other senders, whose one-slot messages could otherwise
    /// take every slot as soon as it is freed, let the queue drain for it; it ends its turn
    /// when it claims. While receivers free slots (`head` moves), it keeps its turn fresh;
    /// once they have freed none for [`TURN_MS`], it ends the turn (or finds it ended by
    /// another sender) and does not take it again for as long. `state` is the caller's (see
    /// [`TurnState`]). The caller ends the turn too when it stops waiting for good
    /// (`leave_turn`); a wait that only gives up for now keeps it (see
    /// `Sender::claim_span`).
    pub(super) fn poll_send_turn(
        &self,
        reg: usize,
        k: u64,
        state: &TurnState,
    ) -> Result<Poll<u64>> {
        let r = self.poll_send_n(reg, k)?;
        match r {
            Poll::Ready(_) => {
                self.end_turn(reg);
                state.held.set(false);
            }
            Poll::Pending => self.keep_turn(reg, state),
        }
        Ok(r)
    }

    /// `poll_send_turn`'s part when it cannot claim: take, keep fresh, or give up the turn.
    pub(super) fn keep_turn(&self, reg: usize, state: &TurnState) {
        let h = self.hdr();
        let turn = &h.tail.0.turn;
        // Relaxed (the loads and the CASes): a hint (see `Tail::turn`); `head` only tells
        // whether receivers made progress.
        let t = turn.load(Ordering::Relaxed);
        let now = turn_now();
        let mine = turn_owner(t) == reg as u64 + 1;
        if state.held.get() && !mine {
            // Ended under us (past its time, by another sender, or because every receiver
            // is gone): as if we had ended it.
            state.held.set(false);
            state.rest.set(now.saturating_add(TURN_MS));
        }
        if mine {
            // Loom's models do not keep the turn fresh: it would add steps to every model,
            // while in the one model that moves the clock nothing drains while the turn is
            // taken.
            let head = if cfg!(loom) {
                state.head.get()
            } else {
                h.head.0.load(Ordering::Relaxed)
            };
            if head != state.head.get() {
                // The queue drains: keep the turn fresh.
                state.head.set(head);
                let _ = turn.compare_exchange(
                    t,
                    turn_word(reg, now),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            } else if turn_expired(t, now) {
                // Nothing drained for our time (its receivers wait for the very senders
                // that wait for us, say): let the others on.
                self.end_turn(reg);
                state.held.set(false);
                state.rest.set(now.saturating_add(TURN_MS));
            }
        } else if (t == 0 || turn_expired(t, now)) && now >= state.rest.get() {
            let taken = turn
                .compare_exchange(t, turn_word(reg, now), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
            if taken {
                state.held.set(true);
                if !cfg!(loom) {
                    state.head.set(h.head.0.load(Ordering::Relaxed));
                }
            }
        }
    }

    /// Ends turn `t` if it is still the turn, and wakes the senders that let the queue
    /// drain for it; `true` if it did.
    fn clear_turn(&self, t: u64) -> bool {
        // Relaxed: a hint (see `Tail::turn`). The notify's fence orders the CAS before its
        // check for sleepers (pairs with the fence of `prepare_wait`: a sender about to
        // sleep because of the turn sees it over when it polls again, or is woken).
        let ended = self
            .hdr()
            .tail
            .0
            .turn
            .compare_exchange(t, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        if ended {
            self.hdr().space.notify();
        }
        ended
    }

    /// Forgets a turn that `state` says sender registration `reg` holds but that ran out
    /// while it did not look (between two calls, or two polls of an async send, it does
    /// not keep the turn fresh), if the queue drained meanwhile: it takes the turn again at
    /// once, as if it had never had it, where a turn that ran out without the queue
    /// draining makes it rest (see `keep_turn`: the queue cannot drain for it, and the
    /// others must get on). Called before a claim or look of several slots.
    pub(super) fn forget_lost_turn(&self, reg: usize, state: &TurnState) {
        if cfg!(loom) || !state.held.get() {
            return; // loom's models do not track `head` for turns (see `keep_turn`)
        }
        let h = self.hdr();
        // Relaxed (both): a hint (see `Tail::turn`); `head` only tells whether receivers
        // made progress.
        if turn_owner(h.tail.0.turn.load(Ordering::Relaxed)) != reg as u64 + 1
            && h.head.0.load(Ordering::Relaxed) != state.head.get()
        {
            state.held.set(false);
        }
    }

    /// Ends sender registration `reg`'s turn if it holds one as far as `state` knows (a
    /// sender that stopped waiting for several slots: see `Sender::claim_span`).
    #[inline]
    pub(super) fn leave_turn(&self, reg: usize, state: &TurnState) {
        if state.held.get() {
            state.held.set(false);
            self.end_turn(reg);
        }
    }

    /// Ends sender registration `reg`'s turn, if it has it.
    pub(super) fn end_turn(&self, reg: usize) {
        // Relaxed: a hint (see `Tail::turn`).
        let t = self.hdr().tail.0.turn.load(Ordering::Relaxed);
        if t != 0 && turn_owner(t) == reg as u64 + 1 {
            self.clear_turn(t);
        }
    }

    /// Ends the turn (see *Turns* in the module docs) of a sender that is gone: closed, or
    /// its process dead (an endpoint that takes its registration over ends it too, in
    /// `register`); a turn past its time; a turn that names no registration (garbage): a
    /// turn is a hint, and ending one costs fairness, never a message. `true` if it did.
    pub(super) fn end_dead_turn(&self) -> Result<bool> {
        let turn = &self.hdr().tail.0.turn;
        // Relaxed: a hint (see `Tail::turn`).
        let t = turn.load(Ordering::Relaxed);
        if t == 0 {
            return Ok(false);
        }
        let reg = usize::try_from(turn_owner(t))
            .ok()
            .and_then(|j| j.checked_sub(1))
            .and_then(|j| self.table(Side::Send).get(j))
            .filter(|_| !turn_expired(t, turn_now()));
        let gone = match reg {
            None => true,
            Some(line) => {
                // Acquire: as in `holder`.
                let token = line.0.end.token.load(Ordering::Acquire);
                token == 0 || !self.seg.is_alive(token)?
            }
        };
        // If the registration changed hands and its new holder took the turn meanwhile,
        // ending it costs that sender one more poll, which takes it again.
        Ok(gone && self.clear_turn(t))
    }

    /// Ends whatever turn is taken; `true` if one was.
    pub(super) fn end_any_turn(&self) -> bool {
        // Relaxed: a hint (see `Tail::turn`).
        let t = self.hdr().tail.0.turn.load(Ordering::Relaxed);
        t != 0 && self.clear_turn(t)
    }
}
