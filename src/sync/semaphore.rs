//! [`Semaphore`] and [`BoundedSemaphore`]: process-shared counting semaphores.

use std::fmt;
use std::time::Duration;

use super::wait::{self, announce, Bells, Deadline, WAITERS};
use crate::error::{Error, Result};
use crate::object::{constructors, object_debug, At, Head, Len, Shared};
use crate::primitive::{AtomicU32, Ordering};
use crate::segment::{Kind, Segment};

const VALUE: u32 = !WAITERS;

/// The largest value a semaphore can hold.
pub const MAX_PERMITS: u32 = VALUE;

/// The shared state: one word and its async waiters' doorbells, on their own 128-byte
/// line.
///
/// | bits | meaning |
/// |---|---|
/// | 0..=30 | permits available |
/// | 31 | WAITERS: somebody may sleep on the word; the next `release` clears it and wakes all |
#[derive(Debug)]
#[repr(C, align(128))]
#[cfg_attr(not(loom), derive(bytemuck::Zeroable))]
pub struct SemState {
    word: AtomicU32,
    bells: Bells,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<SemState>() == 128);

impl SemState {
    /// A semaphore holding `permits`.
    pub fn new(permits: u32) -> SemState {
        SemState {
            word: AtomicU32::new(permits & VALUE),
            bells: Bells::new(),
        }
    }

    /// Sets the initial count in a zero-filled state (see `object::init_head`).
    pub(crate) fn init(&self, permits: u32) {
        // Relaxed: the segment is published afterwards with a Release store.
        self.word.store(permits & VALUE, Ordering::Relaxed);
    }

    /// One attempt: takes a permit if there is one.
    #[inline]
    pub fn try_take(&self) -> bool {
        let word = &self.word;
        // Relaxed: a hint for the CAS, which validates it.
        let mut w = word.load(Ordering::Relaxed);
        while w & VALUE != 0 {
            // Acquire: pairs with the Release CAS in `release`, so the releaser's writes
            // before it are visible to us. The WAITERS bit is kept for other sleepers.
            match word.compare_exchange_weak(w, w - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(cur) => w = cur,
            }
        }
        false
    }

    pub(crate) fn acquire(&self, deadline: Deadline) -> Result<()> {
        if self.try_take() {
            return Ok(());
        }
        let word = &self.word;
        wait::wait_for(
            word,
            deadline,
            || Ok(self.try_take().then_some(())),
            |w| announce(word, w, |w| w & VALUE == 0),
        )
    }

    /// Takes a permit, blocking (the in-process form, for the loom models).
    #[cfg_attr(not(loom), allow(dead_code))]
    pub fn acquire_blocking(&self) -> Result<()> {
        self.acquire(Deadline::NEVER)
    }

    /// Returns `n` permits unless that would exceed `limit`.
    pub fn release(&self, n: u32, limit: u32) -> Result<()> {
        self.release_with(n, limit, crate::os::doorbell::ring)
    }

    /// [`release`](Self::release), ringing doorbells with `ring` (the loom models record
    /// them).
    fn release_with(&self, n: u32, limit: u32, ring: impl FnMut(u64)) -> Result<()> {
        let word = &self.word;
        // Relaxed: a hint for the CAS.
        let mut w = word.load(Ordering::Relaxed);
        loop {
            let v = w & VALUE;
            let new = match v.checked_add(n) {
                Some(new) if new <= limit => new,
                _ => {
                    return Err(Error::Overflow {
                        limit: u64::from(limit),
                    })
                }
            };
            // Release: publishes our writes to the acquirer's Acquire CAS. Clearing
            // WAITERS: every sleeper is woken below and re-announces itself if it loses.
            match word.compare_exchange_weak(w, new, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(cur) => w = cur,
            }
        }
        if w & WAITERS != 0 {
            wait::wake_word(word, &self.bells, ring);
        }
        Ok(())
    }

    /// The async waiter's arming (`aio`), for the loom models: registers doorbell `id`,
    /// announces itself and tries once more; whether it took a permit.
    #[cfg(loom)]
    pub fn arm_and_try(&self, id: u64) -> bool {
        wait::arm(&self.word, &self.bells, id).unwrap();
        self.try_take()
    }

    /// `release`, recording the doorbells it rings with `ring` (for the loom models).
    #[cfg(loom)]
    pub fn release_recording(&self, n: u32, limit: u32, ring: impl FnMut(u64)) -> Result<()> {
        self.release_with(n, limit, ring)
    }

    /// The word and its doorbells, for an async wait (see `wait::arm`).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn async_parts(&self) -> (&AtomicU32, &Bells) {
        (&self.word, &self.bells)
    }

    /// The permits available now (a snapshot).
    pub fn value(&self) -> u32 {
        // Relaxed: a snapshot for display; it orders nothing.
        self.word.load(Ordering::Relaxed) & VALUE
    }
}

/// The implementation both semaphore types share.
struct RawSemaphore {
    shared: Shared<SemState>,
    /// The largest value `release` may produce: the bound, or [`MAX_PERMITS`].
    limit: u32,
}

impl RawSemaphore {
    fn new(at: At<'_>, kind: Kind, initial: u32) -> Result<Self> {
        if initial > MAX_PERMITS {
            return Err(Error::InvalidArgument(format!(
                "a semaphore holds at most {MAX_PERMITS} permits"
            )));
        }
        let shared = Shared::new(
            at,
            kind,
            Len::Create(u64::from(initial)),
            Head::with(|| SemState::new(initial), |s: &SemState| s.init(initial)),
            |_| (),
        )?;
        let cap = shared.len() as u64;
        if cap > u64::from(MAX_PERMITS) {
            return Err(Error::corrupt(format!(
                "semaphore capacity {cap} is out of range"
            )));
        }
        let limit = if kind == Kind::BoundedSemaphore {
            cap as u32
        } else {
            MAX_PERMITS
        };
        Ok(RawSemaphore { shared, limit })
    }

    fn state(&self) -> &SemState {
        self.shared.head()
    }

    #[inline]
    fn try_take(&self) -> bool {
        self.state().try_take()
    }

    fn acquire(&self, deadline: Deadline) -> Result<()> {
        self.state().acquire(deadline)
    }

    fn release(&self, n: u32) -> Result<()> {
        self.state().release(n, self.limit)
    }

    fn value(&self) -> u32 {
        self.state().value()
    }
}

macro_rules! semaphore_api {
    ($ty:ident, $kind:expr, $what:literal) => {
        impl $ty {
            constructors!($what, initial: u32, open: 0);

            /// The shared state, in place (for `aio`).
            #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
            pub(crate) fn state(&self) -> &SemState {
                self.0.state()
            }

            fn build(at: At<'_>, initial: u32) -> Result<Self> {
                Ok($ty(RawSemaphore::new(at, $kind, initial)?))
            }

            /// Takes a permit, blocking until one is available.
            pub fn acquire(&self) -> Result<()> {
                self.0.acquire(Deadline::NEVER)
            }

            /// Takes a permit if one is available now; `Ok(false)` otherwise. Never blocks.
            pub fn try_acquire(&self) -> Result<bool> {
                Ok(self.0.try_take())
            }

            /// Takes a permit, waiting at most `timeout`; `Error::Timeout` if none came.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<()> {
                self.0.acquire(Deadline::after(timeout))
            }

            /// Takes a permit and returns a guard that releases it on drop.
            pub fn acquire_guard(&self) -> Result<SemaphoreGuard<'_>> {
                self.0.acquire(Deadline::NEVER)?;
                Ok(SemaphoreGuard { sem: &self.0 })
            }

            /// Returns one permit, waking a sleeper if there is one.
            pub fn release(&self) -> Result<()> {
                self.0.release(1)
            }

            /// Returns `n` permits at once.
            pub fn release_n(&self, n: u32) -> Result<()> {
                self.0.release(n)
            }

            /// The permits available now (a snapshot).
            pub fn value(&self) -> u32 {
                self.0.value()
            }

            #[doc = concat!("The segment the ", $what, " lives in.")]
            pub fn segment(&self) -> &Segment {
                self.0.shared.segment()
            }
        }

        object_debug!($ty, value);
    };
}

/// A process-shared counting semaphore (Python's `multiprocessing.Semaphore`).
///
/// `acquire` takes a permit, blocking while there is none (spinning briefly, then
/// sleeping on a futex); `try_acquire` never blocks; `acquire_timeout` gives up after a
/// duration. `release` returns permits and makes the wake syscall only if somebody sleeps.
/// A `BoundedSemaphore` refuses to be released past its initial value
/// ([`Error::Overflow`], Python's `ValueError`). Permits are not owned: a process that
/// dies holding one does not give it back (as in Python); [`Semaphore::acquire_guard`]
/// gives a guard that releases on drop for the common scoped case.
///
/// A `release` pairs with the `acquire` that takes its permit (Release/Acquire), so data
/// written before `release` is visible after `acquire`: the FloatChannel hand-off.
///
/// ```
/// use shmkit::Semaphore;
/// # let name = shmkit::__private::test_name("doc-sem");
/// let slots = Semaphore::create(&name, 2)?;
/// // In other processes: let slots = Semaphore::open(&name)?;
/// slots.acquire()?;
/// {
///     let _permit = slots.acquire_guard()?;
///     assert!(!slots.try_acquire()?); // none left
/// } // the guard releases
/// slots.release()?;
/// assert_eq!(slots.value(), 2);
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct Semaphore(RawSemaphore);

/// A process-shared semaphore that may not be released past its initial value (Python's
/// `multiprocessing.BoundedSemaphore`). See the type docs.
///
/// ```
/// use shmkit::{BoundedSemaphore, Error};
/// # let name = shmkit::__private::test_name("doc-bsem");
/// let sem = BoundedSemaphore::create(&name, 1)?;
/// assert!(matches!(sem.release(), Err(Error::Overflow { limit: 1 })));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub struct BoundedSemaphore(RawSemaphore);

semaphore_api!(Semaphore, Kind::Semaphore, "semaphore");
semaphore_api!(
    BoundedSemaphore,
    Kind::BoundedSemaphore,
    "bounded semaphore"
);

/// A permit that is released when dropped. Returned by `acquire_guard`.
///
/// ```
/// # let name = shmkit::__private::test_name("doc-semguard");
/// let slots = shmkit::Semaphore::create(&name, 1)?;
/// {
///     let _permit = slots.acquire_guard()?;
///     assert!(!slots.try_acquire()?); // taken
/// } // released here
/// assert!(slots.try_acquire()?);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[must_use = "the permit is released as soon as the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    sem: &'a RawSemaphore,
}

impl SemaphoreGuard<'_> {
    /// Keeps the permit: it is not released on drop.
    pub fn forget(this: Self) {
        std::mem::forget(this);
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // Only a peer corrupting the word can make this fail; a guard has no way to report
        // it, and the permit is then lost, which the peer chose.
        let _ = self.sem.release(1);
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SemaphoreGuard")
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_zeroed_state_after_init_is_a_new_state() {
        crate::object::assert_zero_start(SemState::new(5), |s| s.init(5));
    }
}
