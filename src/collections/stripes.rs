//! Lock striping for [`SharedDict`](super::SharedDict): the table's slots are cut into up
//! to [`MAX_STRIPES`] stripes of consecutive slots, each with its own robust lock, its own
//! replacement record and its own share of the capacity, so that processes working on
//! keys in different stripes do not wait for each other, and (until the dict is nearly
//! full) write no common cache line.
//!
//! # Which locks an operation holds
//! A key's probe starts at its home slot and walks forward (linear probing, wrapping at
//! the end). An operation locks the home slot's stripe, then each stripe its probe enters,
//! before it reads a slot there ([`Locked::reach`]): every slot an operation reads or
//! writes is in a stripe it holds, so two operations whose probes share a slot are
//! serialised, and two whose probes do not run side by side.
//!
//! Locks are taken in ascending stripe order, so no two operations wait for each other in
//! a cycle. The one step against the order is a probe that wraps from the last slot to the
//! first while holding a stripe above: that lock is only tried. If it is busy, the
//! operation lets every lock go, takes all the stripes it needs in ascending order, and
//! probes again from the start ([`Stop::Restart`]): nothing has been written by then (every
//! operation probes first and writes after).
//!
//! # The capacity, shared out
//! A dict holds at most `capacity` entries. Each stripe keeps a count of free places
//! (`places`, low half); the counts add up to `capacity` minus the live entries and the
//! inserts under way. A new key takes one place from its home stripe's count or, if that
//! is empty, from the next stripe's that has one (an atomic decrement, no lock); a removal
//! gives one back to its home stripe. So the common insert touches no line another
//! stripe's operation writes, and `len()` is `capacity` minus the sum of the counts.
//!
//! The search for a place reads the stripes one after another, not all at one moment: a
//! place given back to a stripe already passed, and taken from one not yet reached, would
//! make it miss while the dict was never full. So a give also counts itself in the same
//! word (`places`, high half, wrapping), and a search that found no place reads every word
//! again: if no stripe was given a place since the search read it, every count was zero
//! at once, at the end of the search, and the dict was full then. Otherwise it searches
//! again (a bounded number of times).
//!
//! A place taken by a writer that died before its commit is lost until `recover`, which
//! recounts everything under every lock. A count above the capacity (forged) is
//! [`Error::Corrupt`].
//!
//! # Stripes and deaths
//! Each stripe's lock is robust on its own: a writer that dies leaves every stripe it held
//! marked, and the next operation there is [`Error::OwnerDied`]. That operation also sets
//! the head's `died` word, which every operation reads once it holds its home stripe: from
//! then on every operation anywhere is `OwnerDied`, as with one lock, until `recover`
//! (which takes every stripe, in order, as `snapshot` and `clear` do) repairs and clears
//! it.

use crate::error::{Error, Result};
use crate::primitive::{AtomicU64, Ordering};
use crate::sync::raw_mutex::{Acquired, RawMutex};

use super::slots::{Design, Locked, Table};

/// Bytes of one stripe's record (two cache lines of 64: never shares a line with another
/// stripe's lock).
pub(crate) const STRIPE_BYTES: usize = 128;
/// The most stripes a table has (the held set is one bit each in a `u64`).
pub(crate) const MAX_STRIPES: usize = 64;
/// The fewest slots a stripe covers (but for a table smaller than that).
pub(crate) const MIN_SPAN: usize = 64;

/// A stripe's record, in the data area before the slots.
#[repr(C)]
pub(crate) struct StripeHead {
    /// The robust lock an operation holds while its probe is in the stripe.
    pub(crate) lock: RawMutex,
    /// Low 32 bits: places of the capacity this stripe has to give; high 32 bits: places
    /// given back to it, wrapping (see the module docs). Changed by atomic
    /// read-modify-writes only, by holders of any stripe's lock.
    pub(crate) places: AtomicU64,
    /// `old + 1` while an operation whose home is this stripe moves an entry from slot
    /// `old` to `new` (a replacement), 0 otherwise.
    pub(crate) pending_old: AtomicU64,
    /// `new + 1` while that move is under way, 0 otherwise.
    pub(crate) pending_new: AtomicU64,
    _pad: [u64; 12],
}

#[cfg(not(loom))]
const _: () = assert!(size_of::<StripeHead>() == STRIPE_BYTES);
#[cfg(not(loom))]
const _: () = assert!(std::mem::offset_of!(StripeHead, places) == 8);

/// Stripes for a table of `slots` slots: one per [`MIN_SPAN`] slots, at most
/// [`MAX_STRIPES`].
pub(crate) fn stripes_for(slots: usize) -> usize {
    (slots / MIN_SPAN).clamp(1, MAX_STRIPES)
}

/// Stripe `s`'s share of `places` free places: an even split, the remainder to the first
/// stripes.
pub(crate) fn share(places: usize, stripes: usize, s: usize) -> u64 {
    (places / stripes + usize::from(s < places % stripes)) as u64
}

/// The free places in a `places` word.
pub(crate) fn free_of(word: u64) -> u64 {
    word & FREE_MASK
}

/// The free places of a `places` word (its low half; capacities are below 2^31).
const FREE_MASK: u64 = u32::MAX as u64;
/// One place given back: one more free place, one more give.
const GIVE: u64 = 1 << 32 | 1;

/// Writes the initial records of a new table's `stripes` stripes into its data area
/// (zeroed: the locks free and consistent, no records).
pub(crate) fn fill(capacity: usize, stripes: usize, data: &mut [u64]) {
    const WORDS: usize = STRIPE_BYTES / 8;
    const FREE: usize = std::mem::offset_of!(StripeHead, places) / 8;
    for s in 0..stripes {
        data[s * WORDS + FREE] = share(capacity, stripes, s);
    }
}

/// Why a probe stopped before it found its answer.
pub(crate) enum Stop {
    /// It had to let its locks go and take them again in order: probe again.
    Restart,
    /// An error for the operation.
    Fail(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Fail(e)
    }
}

/// What one attempt to take a place from a stripe found.
enum Taken {
    Yes,
    /// No place: the word as read.
    No(u64),
    /// The word kept changing under us.
    Busy,
}

/// The result of a step that may have to start the probe again.
pub(crate) type Step<T> = std::result::Result<T, Stop>;

fn bit(s: usize) -> u64 {
    1 << s
}

impl<D: Design> Table<D> {
    /// Stripe `s`'s record (`s` below the table's stripes).
    pub(crate) fn stripe(&self, s: usize) -> &StripeHead {
        assert!(
            s < self.shape().stripes,
            "stripe index computed from the shape"
        );
        // SAFETY: the stripes are the first `stripes * STRIPE_BYTES` bytes of the data area
        // (the shape was validated against the body's size on open), 8-aligned;
        // `StripeHead` is atomics and padding only, so a shared reference is sound whatever
        // peers write.
        unsafe { &*(self.data().add(s * STRIPE_BYTES) as *const StripeHead) }
    }

    /// The stripe slot `i` is in.
    pub(crate) fn stripe_of(&self, i: usize) -> usize {
        i / self.shape().span
    }

    /// Locks the stripe of slot `home` (below the table's slots) for an operation on a key
    /// that lives there. A dead holder's unrepaired state is [`Error::OwnerDied`].
    pub(crate) fn lock_home(&self, home: usize) -> Result<Locked<'_, D>> {
        let s = self.stripe_of(home);
        let mut g = Locked {
            t: self,
            held: 0,
            home: s,
            deadline: self.deadline(),
        };
        let how = g.lock_one(s)?;
        g.clean(how)?;
        g.check_died()?;
        Ok(g)
    }

    /// Locks every stripe, in order: whether a dead holder left any to repair (those stay
    /// marked until the caller marks them consistent), or a process met one (`died`).
    pub(crate) fn lock_all(&self) -> Result<(Locked<'_, D>, Acquired)> {
        let mut g = Locked {
            t: self,
            held: 0,
            home: 0,
            deadline: self.deadline(),
        };
        let mut how = Acquired::Clean;
        for s in 0..self.shape().stripes {
            if g.lock_one(s)? == Acquired::OwnerDied {
                how = Acquired::OwnerDied;
            }
        }
        if how == Acquired::OwnerDied {
            g.record_death();
        } else if g.check_died().is_err() {
            how = Acquired::OwnerDied;
        }
        Ok((g, how))
    }

    /// `len()` of a striped table: the capacity less the free places of every stripe,
    /// clamped (a hint: no lock; each count of some moment).
    pub(crate) fn striped_len(&self) -> usize {
        let cap = self.shape().capacity;
        let free = (0..self.shape().stripes).fold(0usize, |sum, s| {
            // Relaxed: a hint; nothing is read through it.
            let f = free_of(self.stripe(s).places.load(Ordering::Relaxed));
            sum.saturating_add(usize::try_from(f).unwrap_or(usize::MAX))
        });
        cap.saturating_sub(free)
    }
}

impl<D: Design> Locked<'_, D> {
    /// Whether slot `i` is in a stripe we hold (always, under the head's lock).
    pub(crate) fn holds(&self, i: usize) -> bool {
        self.t.shape().stripes == 0 || self.held & bit(self.t.stripe_of(i)) != 0
    }

    /// Makes sure we hold slot `i`'s stripe (`i` below the table's slots) before the probe
    /// reads it. [`Stop::Restart`] if the locks had to be taken again in order (the
    /// caller probes again, from the start; it holds every stripe it held, and this one).
    pub(crate) fn reach(&mut self, i: usize) -> Step<()> {
        if self.holds(i) {
            return Ok(());
        }
        let s = self.t.stripe_of(i);
        // A stripe above every one we hold: wait for it. Below one (a probe that wrapped):
        // only try, and restart in order if it is busy.
        self.take(s, self.held >> s != 0)
    }

    /// Takes stripe `s`'s lock, or (`only_try`) tries it and on failure takes it and every
    /// held one again in ascending order ([`Stop::Restart`]).
    fn take(&mut self, s: usize, only_try: bool) -> Step<()> {
        if !only_try {
            return self
                .lock_one(s)
                .and_then(|how| self.clean(how))
                .map_err(Stop::Fail);
        }
        let seg = self.t.segment();
        match self.t.stripe(s).lock.try_lock(seg) {
            Ok(how) => {
                self.held |= bit(s);
                self.clean(how)?;
                Ok(())
            }
            Err(Error::WouldBlock) => {
                let want = self.held | bit(s);
                self.release_stripes();
                for s in (0..self.t.shape().stripes).filter(|&s| want & bit(s) != 0) {
                    let how = self.lock_one(s)?;
                    self.clean(how)?;
                }
                Err(Stop::Restart)
            }
            Err(e) => Err(Stop::Fail(e)),
        }
    }

    /// Locks stripe `s` (waiting until the deadline) and records it as held.
    fn lock_one(&mut self, s: usize) -> Result<Acquired> {
        let how = self
            .t
            .stripe(s)
            .lock
            .lock(self.t.segment(), self.deadline)?;
        self.held |= bit(s);
        Ok(how)
    }

    /// An ordinary operation's view of a lock it took: a dead holder's state is
    /// [`Error::OwnerDied`] (the lock is released with the others, still marked), and from
    /// now on every operation's (`died`).
    fn clean(&self, how: Acquired) -> Result<()> {
        match how {
            Acquired::Clean => Ok(()),
            Acquired::OwnerDied => {
                self.record_death();
                Err(Error::OwnerDied)
            }
        }
    }

    /// Tells every later operation that a dead writer's stripe was met.
    fn record_death(&self) {
        // Relaxed: a flag other operations read once they hold a lock; the stripe's own
        // mark (its lock's state) is what makes the operations there fail.
        self.t.head().died.store(1, Ordering::Relaxed);
    }

    /// [`Error::OwnerDied`] if a process met a dead writer's stripe and nobody recovered
    /// since.
    fn check_died(&self) -> Result<()> {
        // Relaxed: see `record_death`; `recover` clears it holding every lock, whose
        // releases publish the repair along with it.
        match self.t.head().died.load(Ordering::Relaxed) {
            0 => Ok(()),
            _ => Err(Error::OwnerDied),
        }
    }

    /// After a repair, with every stripe held: operations work again.
    pub(crate) fn clear_death(&self) {
        // Relaxed: published by our releases of every lock.
        self.t.head().died.store(0, Ordering::Relaxed);
    }

    /// Releases every stripe we hold.
    pub(super) fn release_stripes(&mut self) {
        let mut held = std::mem::take(&mut self.held);
        while held != 0 {
            let s = held.trailing_zeros() as usize;
            held &= held - 1;
            self.t.stripe(s).lock.unlock();
        }
    }

    /// The operation's home stripe's record.
    pub(crate) fn home_stripe(&self) -> &StripeHead {
        self.t.stripe(self.home)
    }

    /// Takes one free place for a new entry: from the home stripe, or else from the first
    /// stripe after it that has one. [`Error::Overflow`] if none has: the dict holds
    /// `capacity` entries (see the module docs for why that answer is exact).
    pub(crate) fn take_place(&self) -> Result<()> {
        let n = self.t.shape().stripes;
        // The word each stripe had when we found it without a place.
        let mut seen = [0u64; MAX_STRIPES];
        for _ in 0..64 {
            let mut sure = true;
            for k in 0..n {
                let s = (self.home + k) % n;
                match self.take_from(s)? {
                    Taken::Yes => return Ok(()),
                    Taken::No(word) => seen[s] = word,
                    Taken::Busy => sure = false,
                }
            }
            // Relaxed: see `take_from`; only which words changed matters.
            let given = (0..n).any(|s| {
                let now = self.t.stripe(s).places.load(Ordering::Relaxed);
                now >> 32 != seen[s] >> 32
            });
            if sure && !given {
                break;
            }
        }
        Err(Error::Overflow {
            limit: self.t.shape().capacity as u64,
        })
    }

    /// One attempt to take a place from stripe `s`.
    fn take_from(&self, s: usize) -> Result<Taken> {
        let places = &self.t.stripe(s).places;
        let cap = self.t.shape().capacity as u64;
        // Relaxed (all): a count; the atomic decrement keeps it exact among takers in
        // other stripes, and nothing else is published through it.
        let mut w = places.load(Ordering::Relaxed);
        // Bounded: a peer that keeps changing the word cannot hold us here.
        for _ in 0..64 {
            match free_of(w) {
                0 => return Ok(Taken::No(w)),
                f if f > cap => {
                    return Err(Error::corrupt(format!(
                        "dict stripe {s}: {f} free places, more than the capacity {cap}"
                    )))
                }
                _ => {}
            }
            match places.compare_exchange_weak(w, w - 1, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(Taken::Yes),
                Err(now) => w = now,
            }
        }
        Ok(Taken::Busy)
    }

    /// Gives a removed entry's place back, to the home stripe.
    pub(crate) fn give_place(&self) {
        // Relaxed: a count (see `take_from`). One more free place and one more give, in
        // one step; the free count cannot carry into the gives (it is at most the
        // capacity, below 2^31, or `take_from` reports it corrupt).
        self.home_stripe().places.fetch_add(GIVE, Ordering::Relaxed);
    }

    /// With every stripe held: shares out `capacity - live` free places afresh.
    pub(crate) fn reset_places(&self, live: usize) {
        let n = self.t.shape().stripes;
        assert_eq!(self.held.count_ones() as usize, n, "every stripe held");
        let places = self.t.shape().capacity.saturating_sub(live);
        for s in 0..n {
            let word = &self.t.stripe(s).places;
            // Relaxed (both): we hold every lock, so nobody takes or gives meanwhile; their
            // releases publish it. The gives go on counting (a change, for a search that
            // read the old word).
            let gives = (word.load(Ordering::Relaxed) >> 32).wrapping_add(1);
            word.store(gives << 32 | share(places, n, s), Ordering::Relaxed);
        }
    }

    /// Marks every stripe a dead holder left inconsistent as consistent, and clears
    /// `died` (we hold them all, and repaired).
    pub(crate) fn mark_stripes_consistent(&self) {
        for s in 0..self.t.shape().stripes {
            let lock = &self.t.stripe(s).lock;
            if lock.is_inconsistent() {
                lock.mark_consistent();
            }
        }
        self.clear_death();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_differ_by_at_most_one() {
        for (places, n) in [(0, 1), (7, 1), (7, 3), (100, 64), (3, 64), (1 << 30, 64)] {
            let shares: Vec<u64> = (0..n).map(|s| share(places, n, s)).collect();
            assert_eq!(shares.iter().sum::<u64>(), places as u64);
            let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
            assert!(hi - lo <= 1, "{places} over {n}: {shares:?}");
        }
    }

    #[test]
    fn stripes_cover_at_least_min_span_slots_and_are_at_most_max() {
        assert_eq!(stripes_for(1), 1);
        assert_eq!(stripes_for(MIN_SPAN * 2 - 1), 1);
        assert_eq!(stripes_for(MIN_SPAN * 2), 2);
        assert_eq!(stripes_for(usize::MAX / 2), MAX_STRIPES);
    }
}
