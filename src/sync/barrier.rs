//! [`Barrier`]: a reusable process-shared barrier for a fixed number of parties (Python's
//! `multiprocessing.Barrier`).

use std::time::Duration;

use super::wait::{self, Announced, Deadline, Waiter, WAITERS};
use crate::error::{Error, Result};
use crate::object::{constructors, object_debug, At, Head, Len, Shared};
use crate::primitive::{AtomicU32, Ordering};
use crate::segment::{Kind, Segment};

/// Most handles registered at once.
pub const MAX_MEMBERS: usize = 252;

const BROKEN: u32 = 1 << 30;
const GEN_MASK: u32 = BROKEN - 1;

/// The shared state.
///
/// `gen` (the futex word): bits 0..=29 the generation, bumped by each generation's last
/// arrival; bit 30 BROKEN (sticky until `reset`); bit 31 WAITERS.
/// `arrived`: how many parties have arrived in the current generation.
/// `reset_gen`: the generation last ended by `reset` (its waiters are told it broke).
/// `members`: liveness tokens of the processes holding handles (0: free).
#[derive(Debug)]
#[repr(C, align(128))]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
pub struct BarrierState {
    gen: AtomicU32,
    arrived: AtomicU32,
    reset_gen: AtomicU32,
    _pad: AtomicU32,
    members: [AtomicU32; MAX_MEMBERS],
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<BarrierState>() == 1024);

impl BarrierState {
    /// Sets the fields that do not start at zero in a zero-filled state (see
    /// `object::init_head`).
    pub(crate) fn init(&self) {
        // Relaxed: the segment is published afterwards with a Release store.
        self.reset_gen.store(GEN_MASK, Ordering::Relaxed);
    }

    /// A barrier with no arrivals and no members.
    pub fn new() -> BarrierState {
        BarrierState {
            gen: AtomicU32::new(0),
            arrived: AtomicU32::new(0),
            reset_gen: AtomicU32::new(GEN_MASK),
            _pad: AtomicU32::new(0),
            members: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    /// Waits for `parties` arrivals; `Ok(true)` for the leader. `member_died` is asked
    /// about once per sleep slice (by the clock, see `wait::wait`).
    pub(crate) fn wait(
        &self,
        parties: u32,
        deadline: Deadline,
        member_died: &dyn Fn() -> Result<bool>,
    ) -> Result<bool> {
        let st = self;
        // Acquire: pairs with the leader's Release CAS that started this generation.
        let g = st.gen.load(Ordering::Acquire);
        if g & BROKEN != 0 {
            return Err(Error::BrokenBarrier);
        }
        // AcqRel: the last arrival's RMW reads every earlier arrival's (their writes before
        // `wait` happen before the leader's release of the generation).
        let n = st.arrived.fetch_add(1, Ordering::AcqRel).wrapping_add(1);
        if n > parties {
            self.break_barrier();
            return Err(Error::corrupt(format!(
                "barrier arrival count {n} exceeds its {parties} parties"
            )));
        }
        if n == parties {
            // Leader: reset the count for the next generation, then release this one.
            // Relaxed: published by the Release CAS below.
            st.arrived.store(0, Ordering::Relaxed);
            self.advance_generation(g, |cur| {
                if cur & BROKEN != 0 || (cur & GEN_MASK) != (g & GEN_MASK) {
                    Err(Error::BrokenBarrier)
                } else {
                    Ok(())
                }
            })?;
            return Ok(true);
        }
        self.wait_for_generation(g, deadline, member_died)
    }

    /// Waits without a deadline, no member checks (the in-process form, for loom).
    #[cfg_attr(not(loom), allow(dead_code))]
    pub fn wait_blocking(&self, parties: u32) -> Result<bool> {
        self.wait(parties, Deadline::NEVER, &|| Ok(false))
    }

    fn wait_for_generation(
        &self,
        g: u32,
        deadline: Deadline,
        member_died: &dyn Fn() -> Result<bool>,
    ) -> Result<bool> {
        wait::wait(
            &mut GenerationWaiter {
                st: self,
                g,
                seen: g,
                member_died,
            },
            deadline,
        )
    }

    /// Moves `gen` on to the next generation (clearing WAITERS), starting from the value
    /// `cur` and retrying as the word moves; `before(cur)` runs before each attempt and may
    /// refuse. Wakes the sleepers if any announced themselves.
    fn advance_generation(
        &self,
        mut cur: u32,
        mut before: impl FnMut(u32) -> Result<()>,
    ) -> Result<()> {
        loop {
            before(cur)?;
            let next = cur.wrapping_add(1) & GEN_MASK;
            // Release: publishes what the caller wrote before (the arrivals' writes and the
            // count reset, or `reset_gen`) to the waiters' Acquire loads of `gen`.
            match self
                .gen
                .compare_exchange_weak(cur, next, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(c) => cur = c,
            }
        }
        if cur & WAITERS != 0 {
            wait::wake(&self.gen, u32::MAX);
        }
        Ok(())
    }

    fn break_barrier(&self) {
        // Release: pairs with the waiters' Acquire loads; they only need the flag.
        let old = self.gen.fetch_or(BROKEN, Ordering::Release);
        if old & WAITERS != 0 {
            wait::wake(&self.gen, u32::MAX);
        }
    }

    /// See [`Barrier::reset`].
    pub fn reset(&self) {
        // Relaxed: a hint for the CAS.
        let cur = self.gen.load(Ordering::Relaxed);
        let reset = self.advance_generation(cur, |cur| {
            // Relaxed: published by the Release CAS in `advance_generation`.
            self.reset_gen.store(cur & GEN_MASK, Ordering::Relaxed);
            self.arrived.store(0, Ordering::Relaxed);
            Ok(())
        });
        debug_assert!(reset.is_ok(), "`before` never refuses");
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> bool {
        // Relaxed: a snapshot.
        self.gen.load(Ordering::Relaxed) & BROKEN != 0
    }
}

impl Default for BarrierState {
    fn default() -> Self {
        Self::new()
    }
}

/// A party waiting for its generation to end, as `wait::wait` drives it.
struct GenerationWaiter<'a> {
    st: &'a BarrierState,
    /// The generation we arrived in.
    g: u32,
    /// `gen` as the last attempt saw it.
    seen: u32,
    member_died: &'a dyn Fn() -> Result<bool>,
}

impl Waiter for GenerationWaiter<'_> {
    type Output = bool;

    fn word(&self) -> &AtomicU32 {
        &self.st.gen
    }

    fn attempt(&mut self) -> Result<Option<bool>> {
        // Acquire: pairs with the leader's Release CAS.
        let cur = self.st.gen.load(Ordering::Acquire);
        self.seen = cur;
        if cur & BROKEN != 0 {
            return Err(Error::BrokenBarrier);
        }
        if (cur & GEN_MASK) != (self.g & GEN_MASK) {
            // Relaxed: `reset` writes it before bumping the generation (Release).
            return if self.st.reset_gen.load(Ordering::Relaxed) == (self.g & GEN_MASK) {
                Err(Error::BrokenBarrier)
            } else {
                Ok(Some(false))
            };
        }
        Ok(None)
    }

    fn announce(&mut self) -> Result<Announced<bool>> {
        Ok(match wait::announce(&self.st.gen, self.seen, |_| true) {
            Some(expected) => Announced::Sleep(expected),
            None => Announced::Retry,
        })
    }

    fn check(&mut self) -> Result<Option<bool>> {
        // Is every member still alive?
        if (self.member_died)()? {
            self.st.break_barrier();
            return Err(Error::BrokenBarrier);
        }
        Ok(None)
    }

    fn last_chance(&mut self) -> Result<bool> {
        self.st.break_barrier();
        Err(Error::Timeout)
    }
}

/// What [`Barrier::wait`] returns: whether this party is the one that completed the
/// generation (exactly one per generation is).
///
/// ```
/// # let name = shmkit::__private::test_name("doc-bwr");
/// let b = shmkit::Barrier::create(&name, 1)?;
/// if b.wait()?.is_leader() {
///     println!("everyone is here; the leader does the once-per-round work");
/// }
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierWaitResult(bool);

impl BarrierWaitResult {
    /// Whether this caller was the generation's leader (exactly one per generation: the
    /// last to arrive).
    pub fn is_leader(&self) -> bool {
        self.0
    }
}

/// A reusable process-shared barrier for a fixed number of parties (Python's
/// `multiprocessing.Barrier`).
///
/// `wait` blocks until `parties` callers (in any processes) have called it, then releases
/// them all; exactly one of them is told it is the leader. The barrier is then ready for
/// the next generation, for ever. If a waiter times out, or a process that holds the
/// barrier open dies, the barrier breaks: every waiter, present and future, gets
/// [`Error::BrokenBarrier`] (the one that timed out gets [`Error::Timeout`]) until somebody
/// calls [`Barrier::reset`], instead of leaving the others waiting for a party that will
/// never come.
///
/// Members: every handle registers this process's liveness token in a table in the
/// barrier (up to 252 handles at a time) and removes it on drop; waiters look for dead
/// members about once per sleep slice (at least every 64 ms). A handle inherited across
/// `fork` is the parent's registration: open the barrier again in the child for the
/// child's death to be noticed.
///
/// ```
/// use shmkit::Barrier;
/// # let name = shmkit::__private::test_name("doc-barrier");
/// let b = Barrier::create(&name, 1)?;
/// // With more parties, other processes: Barrier::open(&name)?.wait()?;
/// assert!(b.wait()?.is_leader());
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Barrier {
    shared: Shared<BarrierState>,
    parties: u32,
    /// Our slot in the member table.
    slot: usize,
}

object_debug!(Barrier, parties);

impl Barrier {
    constructors!("barrier", parties: u32, open: 1);

    fn build(at: At<'_>, parties: u32) -> Result<Self> {
        if parties == 0 || parties > GEN_MASK {
            return Err(Error::InvalidArgument(format!(
                "a barrier needs between 1 and {GEN_MASK} parties"
            )));
        }
        let shared = Shared::new(
            at,
            Kind::Barrier,
            Len::Create(u64::from(parties)),
            Head::with(BarrierState::new, BarrierState::init),
            |_| (),
        )?;
        let parties = u32::try_from(shared.len())
            .ok()
            .filter(|&p| p != 0 && p <= GEN_MASK)
            .ok_or_else(|| Error::corrupt("barrier party count out of range"))?;
        let slot = Self::register(&shared)?;
        Ok(Barrier {
            shared,
            parties,
            slot,
        })
    }

    fn register(shared: &Shared<BarrierState>) -> Result<usize> {
        let seg = shared.segment();
        let me = seg.token()?;
        let members = &shared.head().members;
        for round in 0..2 {
            for (i, m) in members.iter().enumerate() {
                // Relaxed: the table only feeds liveness checks, which ask the kernel.
                let t = m.load(Ordering::Relaxed);
                // First round: free slots; second round: slots of dead processes.
                let usable = if round == 0 {
                    t == 0
                } else {
                    t != me && !seg.is_alive(t)?
                };
                if usable
                    && m.compare_exchange(t, me, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    return Ok(i);
                }
            }
        }
        Err(Error::InvalidArgument(format!(
            "the barrier already has {MAX_MEMBERS} live handles"
        )))
    }

    /// The number of parties.
    pub fn parties(&self) -> u32 {
        self.parties
    }

    /// Waits for all parties; see the type docs.
    pub fn wait(&self) -> Result<BarrierWaitResult> {
        self.wait_until(Deadline::NEVER)
    }

    /// Like [`Barrier::wait`], giving up after `timeout`; a timeout breaks the barrier for
    /// everybody (as in Python).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<BarrierWaitResult> {
        self.wait_until(Deadline::after(timeout))
    }

    fn wait_until(&self, deadline: Deadline) -> Result<BarrierWaitResult> {
        let died = || self.some_member_died();
        self.shared
            .head()
            .wait(self.parties, deadline, &died)
            .map(BarrierWaitResult)
    }

    fn some_member_died(&self) -> Result<bool> {
        let seg = self.shared.segment();
        for m in &self.shared.head().members {
            // Relaxed: see `register`.
            let t = m.load(Ordering::Relaxed);
            if t != 0 && !seg.is_alive(t)? {
                // Free the slot so the death is reported once, not again after a reset.
                let _ = m.compare_exchange(t, 0, Ordering::Relaxed, Ordering::Relaxed);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Returns the barrier to its initial state: waiters of the current generation get
    /// [`Error::BrokenBarrier`], and the next generation starts empty and unbroken.
    pub fn reset(&self) {
        self.shared.head().reset();
    }

    /// Whether the barrier is broken.
    pub fn is_broken(&self) -> bool {
        self.shared.head().is_broken()
    }

    /// The segment the barrier lives in.
    pub fn segment(&self) -> &Segment {
        self.shared.segment()
    }
}

impl Drop for Barrier {
    fn drop(&mut self) {
        if let Ok(me) = self.shared.segment().token() {
            // Relaxed: see `register`. Only our own registration is removed.
            let _ = self.shared.head().members[self.slot].compare_exchange(
                me,
                0,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_zeroed_state_after_init_is_a_new_state() {
        crate::object::assert_zero_start(BarrierState::new(), BarrierState::init);
    }
}
