//! Surviving dead endpoints: registering an endpoint (and settling what a dead predecessor
//! in its registration left pending), deciding who holds a claimed position (`holder`),
//! skipping a position claimed by a dead sender and freeing one held by a dead receiver
//! (counting both in `lost`), and telling whether the other side is gone. Slow paths only:
//! a blocked endpoint calls into here when a sleep slice runs out.
//!
//! What lives here may touch every registration (tokens and pending words), `head` (to
//! move it past a skipped slot), `lost`, and a slot's stamp, always by a compare-and-swap
//! that races the live claimer's own and decides exactly once. See the
//! [module docs](super), *Dead peers*.

use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::ring::{Ring, Side, IDLE};
use super::MAX_ENDPOINTS;
use crate::error::{Error, Result};
use crate::primitive::Ordering;

/// How long a new endpoint waits for a dead predecessor's claim to be decided.
const SETTLE_PATIENCE: Duration = Duration::from_millis(200);

/// Who holds a position, according to the pending words of one side's table.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Holder {
    /// No registered endpoint has it pending.
    Nobody,
    /// An endpoint of a live process has it pending (it may be the claimer).
    Live,
    /// Only endpoints of dead processes have it pending.
    Dead,
}

impl<T: Pod> Ring<T> {
    /// Marks the claimed, unpublished position `pos` as skipped, as if received, and moves
    /// `head` past it if it is there. `count`: a message lost to a dead sender (not a loan
    /// given back). `false` if the stamp was no longer `pos` (published or skipped).
    pub(super) fn skip(&self, pos: u64, count: bool) -> bool {
        // AcqRel: Release, so that a sender that reuses the slot is ordered after us;
        // Acquire, to see the claimer's last writes (nothing is read, but it is cheap).
        // The CAS decides against the claimer's publishing CAS: exactly one wins.
        if self
            .claimed_slot(pos)
            .stamp
            .compare_exchange(
                pos,
                pos.wrapping_add(self.geo.one_lap),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return false;
        }
        let h = self.hdr();
        if count {
            // Relaxed: a statistic.
            h.lost.0.fetch_add(1, Ordering::Relaxed);
        }
        // AcqRel/Relaxed: as the receivers' claiming CAS. Fails harmlessly if `head` has
        // not reached `pos` yet (receivers move it past the skipped slot when they get
        // there) or has moved on.
        let _ =
            h.head
                .0
                .compare_exchange(pos, self.geo.next(pos), Ordering::AcqRel, Ordering::Relaxed);
        h.data.notify();
        h.space.notify();
        true
    }

    /// Frees the slots of message `pos`, held by a dead receiver, in the holder's own
    /// order: its continuations (those the holder did not free before it died), then its
    /// first slot, whose CAS decides. So a continuation is never held after its first slot
    /// is free, whoever dies when. How many slots it takes is read from the held message
    /// itself (`held_span`), never from what an endpoint said: a dead loser of the race
    /// for `pos`, or a registration taken over meanwhile, may say anything. `false` if it
    /// was not held.
    pub(super) fn free_held(&self, pos: u64) -> bool {
        let Some(k) = self.held_span(pos) else {
            return false;
        };
        for j in 1..k {
            // AcqRel: as below. An exact CAS: it fails for a continuation freed already
            // (and reused since), so a stale verdict frees nothing of anyone else's.
            self.free_continuation(self.geo.advance(pos, j), Ordering::AcqRel);
        }
        // AcqRel: as in `skip`; decides against the holder's own release CAS.
        let ok = self.free_slot(pos, Ordering::AcqRel);
        if ok {
            // Relaxed: a statistic.
            self.hdr().lost.0.fetch_add(1, Ordering::Relaxed);
            self.hdr().space.notify();
        }
        ok
    }

    // -----------------------------------------------------------------------------------
    // Liveness and recovery (slow paths only).

    /// Who has `pos` pending on `side`, leaving out registration `exclude`.
    pub(super) fn holder(&self, side: Side, pos: u64, exclude: Option<usize>) -> Result<Holder> {
        let mut dead = false;
        for (j, line) in self.table(side).iter().enumerate() {
            if exclude == Some(j) {
                continue;
            }
            let reg = &line.0;
            // Acquire: pairs with the AcqRel claim of the registration, so that the pending
            // word read next is this holder's (or a later holder's).
            let t1 = reg.end.token.load(Ordering::Acquire);
            if t1 == 0 {
                continue; // free: its last holder closed, after finishing its claims
            }
            // Acquire: pairs with the Release pending stores. A value later than `pos`
            // means the holder published (or released) `pos` before it wrote it, and that
            // is then visible to our later loads of the stamp.
            let p = reg.pending.load(Ordering::Acquire);
            if p != pos {
                if p != IDLE && (p & self.geo.mask) >= self.geo.cap {
                    return Err(Error::corrupt(format!(
                        "mpmc {} registration {j} has pending position {p:#x}",
                        side.name()
                    )));
                }
                continue;
            }
            // Acquire: as for `t1`. A changed token: somebody took the registration over
            // while we looked; count it as live (we decide nothing this round).
            let t2 = reg.end.token.load(Ordering::Acquire);
            if t2 != t1 || self.seg.is_alive(t1)? {
                return Ok(Holder::Live);
            }
            dead = true;
        }
        Ok(if dead { Holder::Dead } else { Holder::Nobody })
    }

    /// Skips the claimed, unpublished position `pos` if its sender is dead. `true` if the
    /// queue changed (skipped, or published meanwhile). `at_head`: `pos` is where `head`
    /// is; then, in a queue of multi-slot messages, a claimed slot that no sender has
    /// pending is a skipped message's continuation, freed here and stepped over (`head`
    /// reaches a continuation only by stepping over its message's skipped first slot).
    pub(super) fn skip_dead_claim(&self, pos: u64, at_head: bool) -> Result<bool> {
        match self.holder(Side::Send, pos, None)? {
            Holder::Live => Ok(false),
            Holder::Dead => {
                self.skip(pos, true);
                Ok(true)
            }
            Holder::Nobody => {
                // The claimer's pending word moves on only after it publishes, so nobody
                // having `pos` pending means it was published while we looked.
                // Acquire: see `holder`.
                if self.slot(pos)?.stamp.load(Ordering::Acquire) != pos {
                    Ok(true)
                } else if self.geo.span_of.is_some() && at_head {
                    // A continuation: nobody claims a continuation's position itself.
                    self.skip(pos, false);
                    Ok(true)
                } else if self.geo.span_of.is_some() {
                    // A continuation of a message being written, published or held: full.
                    Ok(false)
                } else {
                    Err(Error::corrupt(format!(
                        "mpmc position {pos:#x} is claimed but no sender claims it"
                    )))
                }
            }
        }
    }

    /// Frees the slots of message `pos` if the receiver holding it is dead. `true` if the
    /// queue changed.
    pub(super) fn free_dead_hold(&self, pos: u64) -> Result<bool> {
        match self.holder(Side::Recv, pos, None)? {
            Holder::Live => Ok(false),
            Holder::Dead => {
                self.free_held(pos);
                Ok(true)
            }
            Holder::Nobody => {
                // As in `skip_dead_claim`. Acquire: see `holder`.
                if self.slot(pos)?.stamp.load(Ordering::Acquire) != pos.wrapping_add(1) {
                    Ok(true)
                } else {
                    Err(Error::corrupt(format!(
                        "mpmc message {pos:#x} is held but no receiver holds it"
                    )))
                }
            }
        }
    }

    /// A receiver is stuck: if the message at `head` was claimed by a sender that died
    /// before publishing it, skip it (and, in a queue of multi-slot messages, its
    /// continuations after it). `true` if the queue changed.
    pub(super) fn recover_recv(&self) -> Result<bool> {
        let h = self.hdr();
        let mut changed = false;
        for _ in 0..=self.geo.cap {
            // Acquire (all three): pair with the claiming CASes and the stamp CASes, so
            // that the claimers' pending words are visible to `holder`.
            let head = h.head.0.load(Ordering::Acquire);
            let stamp = self.slot(head)?.stamp.load(Ordering::Acquire);
            if stamp != head {
                return Ok(changed); // published, or nothing to do with a dead sender
            }
            let tail = h.tail.0.pos.load(Ordering::Acquire);
            match self.geo.distance(head, tail) {
                Some(0) => return Ok(changed), // empty
                Some(d) if d <= 2 * self.geo.cap => {
                    if !self.skip_dead_claim(head, true)? {
                        return Ok(changed);
                    }
                    changed = true;
                }
                _ => return Err(self.corrupt_positions(head, tail)),
            }
        }
        Ok(changed)
    }

    /// Whether nothing waits in the queue or is being put: `head` has caught up with
    /// `tail`. For a process that waits for the queue to drain without receiving from it
    /// (a `JoinableQueue`'s `join`, and the consumers that may wake it): it moves `head`
    /// past the slots at the front whose turn is over (given back, skipped), as a
    /// receiver's poll does, and, with `full` (once a sleep slice), first skips a message
    /// at `head` that a dead sender claimed, as a blocked receiver does; so that neither
    /// waits for a receiver to come by. A message claimed by a live sender counts as
    /// waiting.
    ///
    /// `head` is read with `SeqCst` (so Acquire): it pairs with the receivers' claiming
    /// CASes, so that what a receiver wrote before its claim is seen after; and `SeqCst`
    /// for the argument of the `JoinableQueue`'s wake-up (`Signal::notify_light_if`),
    /// whose `worth` reads both words after a `SeqCst` fence. A sweep ends after `cap + 1`
    /// steps (more can be gone, after many claims given back): the next call goes on.
    pub(super) fn drained(&self, full: bool) -> Result<bool> {
        let drained = self.sweep_head()?;
        if drained || !full || !self.recover_recv()? {
            return Ok(drained);
        }
        self.sweep_head()
    }

    /// `drained`'s sweep: `head` moved past the front slots whose message is gone, then
    /// whether it has caught up with `tail`.
    fn sweep_head(&self) -> Result<bool> {
        let h = self.hdr();
        for _ in 0..=self.geo.cap {
            // SeqCst: see `drained`. `tail` read after `head`, and `head <= tail` always.
            let head = h.head.0.load(Ordering::SeqCst);
            if head == h.tail.0.pos.load(Ordering::SeqCst) {
                return Ok(true);
            }
            // Acquire: as in `poll_recv_by`.
            let stamp = self.slot(head)?.stamp.load(Ordering::Acquire);
            if !self.message_gone(head, stamp) {
                return Ok(false);
            }
            self.step_head(head);
        }
        Ok(false)
    }

    /// A sender that wants `want` slots is stuck: if the first of them that is not free
    /// holds a message claimed by a sender that died before publishing it, skip it; if it
    /// holds one held by a receiver that died, free it. `true` if the queue changed.
    pub(super) fn recover_send(&self, want: u64) -> Result<bool> {
        if self.geo.span_of.is_some() && self.end_dead_turn()? {
            return Ok(true);
        }
        let h = self.hdr();
        // Acquire (all): as in `recover_recv`.
        let tail = h.tail.0.pos.load(Ordering::Acquire);
        self.slot(tail)?;
        for j in 0..want.clamp(1, self.geo.cap) {
            let q = self.geo.advance(tail, j);
            let stamp = self.claimed_slot(q).stamp.load(Ordering::Acquire);
            if stamp != q {
                return self.recover_slot(q, stamp);
            }
        }
        Ok(false)
    }

    /// `recover_send` for the slot of position `q` (at or past `tail`), whose stamp is
    /// `stamp`, not free.
    fn recover_slot(&self, q: u64, stamp: u64) -> Result<bool> {
        let h = self.hdr();
        let prev = q.wrapping_sub(self.geo.one_lap);
        if stamp == prev {
            // Acquire: as in `recover_recv`.
            let head = h.head.0.load(Ordering::Acquire);
            if self.geo.span_of.is_some() && self.geo.passed(prev, head) {
                // `head` passed it: claimed by a receiver, or stepped over after a skip;
                // both change the stamp before they move `head`, so (Acquire, after the
                // Acquire load of `head`) the stamp has moved on, and we poll again.
                if self.claimed_slot(q).stamp.load(Ordering::Acquire) != prev {
                    return Ok(true);
                }
                // Still `prev`: a continuation received and not freed. Its first slot is
                // freed last (`release`, `free_held`), and before `q`, so it would be held
                // and block the sender first: only tampered state gets here.
                return Err(Error::corrupt(format!(
                    "mpmc continuation {prev:#x} is held after its message was freed"
                )));
            }
            // Claimed one lap ago and never published (`tail` has passed it); at `head`, a
            // skipped message's continuation is stepped over by whoever finds it.
            self.skip_dead_claim(prev, head == prev)
        } else if stamp == prev.wrapping_add(1) {
            // Acquire: as in `recover_recv`.
            let head = h.head.0.load(Ordering::Acquire);
            if self.geo.passed(prev, head) {
                self.free_dead_hold(prev) // received, not released
            } else if prev.wrapping_sub(head) < 1 << 62 {
                // Not received yet: plainly full. (`head` may be several laps behind: slots
                // given back while it waited, see `laps_ahead`; receivers move it on.)
                Ok(false)
            } else {
                Err(self.corrupt_positions(head, q))
            }
        } else {
            Ok(false)
        }
    }

    /// Whether every endpoint of `side` that ever attached is gone, and one did.
    pub(super) fn all_gone(&self, side: Side) -> Result<bool> {
        let mut ever = false;
        for line in self.table(side) {
            let end = &line.0.end;
            // Acquire: pairs with the Release store of `ever` after the token in
            // `EndpointSlot::claim`; loaded first, so a claim is never missed half-way.
            let was = end.ever.load(Ordering::Acquire) != 0;
            // Acquire: a cleared registration means its endpoint closed after its last
            // publication (pairs with the Release in `EndpointSlot::release`).
            let t = end.token.load(Ordering::Acquire);
            if t != 0 {
                if self.seg.is_alive(t)? {
                    return Ok(false);
                }
                ever = true;
            } else if was {
                ever = true;
            }
        }
        Ok(ever)
    }

    /// `all_gone` without asking the kernel: only cleanly closed endpoints count as gone.
    pub(super) fn all_closed(&self, side: Side) -> bool {
        let mut ever = false;
        for line in self.table(side) {
            let end = &line.0.end;
            // Acquire (both), `ever` first: as in `all_gone`.
            let was = end.ever.load(Ordering::Acquire) != 0;
            if end.token.load(Ordering::Acquire) != 0 {
                return false;
            }
            ever |= was;
        }
        ever
    }

    /// Called by a blocked `side` when a sleep slice runs out: recover what dead peers left
    /// behind (a sender that wants `want` slots: in any of them), then tell whether the
    /// other side is gone (`Ok(false)` after a recovery, so that the caller polls again
    /// first).
    pub(super) fn stalled(&self, side: Side, want: u64) -> Result<bool> {
        let changed = match side {
            Side::Send => self.recover_send(want)?,
            Side::Recv => self.recover_recv()?,
        };
        if changed {
            return Ok(false);
        }
        let gone = self.all_gone(side.other())?;
        if gone && side == Side::Send && want == 1 && self.geo.span_of.is_some() {
            // Every receiver is gone: nobody drains the queue for a turn, and a one-slot
            // message that fits may still be put (it waits for a receiver to come). End
            // the turn and poll again first; its taker, waiting for several slots, is
            // told `Disconnected` by its own check (and ends it too).
            if self.end_any_turn() {
                return Ok(false);
            }
        }
        Ok(gone)
    }

    /// Decides what a dead (or closed) predecessor in registration `j` left pending, so
    /// that its evidence can be overwritten. `false` while that cannot be decided (a live
    /// endpoint has the same position pending).
    pub(super) fn settle(&self, side: Side, j: usize, old: u64) -> Result<bool> {
        if old == IDLE || (old & self.geo.mask) >= self.geo.cap {
            return Ok(true);
        }
        let h = self.hdr();
        // Acquire (all): as in `recover_recv`.
        let stamp = self.slot(old)?.stamp.load(Ordering::Acquire);
        match side {
            Side::Send => {
                let tail = h.tail.0.pos.load(Ordering::Acquire);
                if stamp != old || !self.geo.passed(old, tail) {
                    return Ok(true); // published, skipped, or never claimed
                }
                if self.holder(side, old, Some(j))? == Holder::Live {
                    return Ok(false);
                }
                // No live sender claims it, and the predecessor had it pending: it was
                // the claimer, and it is gone.
                self.skip(old, true);
            }
            Side::Recv => {
                let head = h.head.0.load(Ordering::Acquire);
                if stamp != old.wrapping_add(1) || !self.geo.passed(old, head) {
                    return Ok(true); // released, or never received
                }
                if self.holder(side, old, Some(j))? == Holder::Live {
                    return Ok(false);
                }
                self.free_held(old);
            }
        }
        Ok(true)
    }

    /// Takes a registration on `side`: a free one, or one whose process died (after
    /// settling what it left pending).
    pub(super) fn register(&self, side: Side) -> Result<usize> {
        for (j, line) in self.table(side).iter().enumerate() {
            let reg = &line.0;
            // Acquire: as in `holder`.
            let t = reg.end.token.load(Ordering::Acquire);
            if t != 0 {
                if self.seg.is_alive(t)? {
                    continue;
                }
                // Acquire: as in `holder`.
                let old = reg.pending.load(Ordering::Acquire);
                if !self.settle(side, j, old)? {
                    continue; // cannot decide now: leave its evidence alone
                }
            }
            if !reg.end.claim(&self.seg)? {
                continue;
            }
            // Ours now. Whoever had it before is gone; settle what it left (again, if
            // another opener raced us to it), waiting a little for a live endpoint with
            // the same position pending to move on.
            // Acquire: the claim's AcqRel makes the predecessor's last writes visible.
            let old = reg.pending.load(Ordering::Acquire);
            let since = Instant::now();
            while !self.settle(side, j, old)? && since.elapsed() < SETTLE_PATIENCE {
                std::thread::sleep(Duration::from_millis(1));
            }
            // Release: pairs with the Acquire loads in `holder`.
            reg.pending.store(IDLE, Ordering::Release);
            if side == Side::Send {
                // A predecessor that died waiting for its turn: end it.
                self.end_turn(j);
            }
            return Ok(j);
        }
        Err(Error::Busy {
            what: format!(
                "every {} registration ({MAX_ENDPOINTS}) of channel `{}`",
                side.name(),
                self.seg.name().unwrap_or("(anonymous)")
            ),
        })
    }

    pub(super) fn unregister(&self, side: Side, reg: usize) {
        let h = self.hdr();
        if side == Side::Send {
            self.end_turn(reg);
        }
        self.table(side)[reg].0.end.release(&self.seg);
        // Wake the other side so that a blocked peer re-checks whether we were the last.
        match side {
            Side::Send => h.data.wake_all(),
            Side::Recv => h.space.wake_all(),
        }
    }
}
