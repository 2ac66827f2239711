//! In-process forms of the channels' sleep/wake handshakes, for the loom models in
//! `tests/loom.rs` (built only with `--cfg loom`): the futex sleeper's (`HandshakeModel`)
//! and the async waiter's doorbell (`BellModel`).

use super::{wait_until, Poll, Signal, WaitStrategy};
use crate::error::Result;
use crate::primitive::{AtomicU64, Ordering};
use crate::sync::wait::Deadline;

/// The channels' sleep/wake handshake on one published word, in-process, for the loom
/// models: `publish` stores a stamp and notifies, as a sender does after writing a slot;
/// `wait_for` waits for it with the real waiting loop, as a blocked receiver does.
#[derive(Debug)]
pub struct HandshakeModel {
    stamp: AtomicU64,
    signal: Signal,
}

impl HandshakeModel {
    /// Nothing published.
    pub fn new() -> Self {
        HandshakeModel {
            stamp: AtomicU64::new(0),
            signal: Signal::new(),
        }
    }

    /// Publishes `stamp` (Release) and wakes a sleeper, exactly as `spsc` and `frames` do.
    pub fn publish(&self, stamp: u64) {
        self.stamp.store(stamp, Ordering::Release);
        self.signal.notify();
    }

    /// Blocks until the stamp is at least `stamp`, with the real waiting loop.
    pub fn wait_for(&self, stamp: u64) -> Result<()> {
        wait_until(
            &self.signal,
            WaitStrategy::Blocking,
            Deadline::NEVER,
            || {
                Ok(if self.stamp.load(Ordering::Acquire) >= stamp {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                })
            },
            |_| Ok(false),
        )
    }
}

/// The async waiter's handshake (see `aio`), in-process for the loom models: a waiter
/// registers a doorbell, announces itself and re-checks; a publisher publishes and
/// notifies, ringing what is registered.
#[derive(Debug)]
pub struct BellModel {
    stamp: AtomicU64,
    signal: Signal,
    rung: AtomicU64,
}

impl BellModel {
    /// Nothing published, nothing registered.
    pub fn new() -> Self {
        BellModel {
            stamp: AtomicU64::new(0),
            signal: Signal::new(),
            rung: AtomicU64::new(0),
        }
    }

    /// The async waiter's arming (`Async::try_recv_or_arm`): registers doorbell `id`,
    /// announces itself, and re-checks; whether it saw the publication.
    pub fn arm_and_check(&self, id: u64) -> bool {
        assert!(self.signal.add_bell(id));
        self.signal.prepare_async_wait();
        // Acquire: pairs with the Release store in `publish`.
        self.stamp.load(Ordering::Acquire) != 0
    }

    /// Publishes and notifies, as every channel does; rung doorbells are recorded.
    pub fn publish(&self) {
        // Release: pairs with the Acquire load in `arm_and_check`.
        self.stamp.store(1, Ordering::Release);
        // Relaxed: recorded for the model's final check, after the threads joined.
        self.signal
            .notify_with(|id| self.rung.store(id, Ordering::Relaxed));
    }

    /// The doorbell rung, if any.
    pub fn rung(&self) -> u64 {
        // Relaxed: read after the threads joined.
        self.rung.load(Ordering::Relaxed)
    }
}

impl Default for BellModel {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for HandshakeModel {
    fn default() -> Self {
        Self::new()
    }
}
