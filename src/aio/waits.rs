//! The async waits of the objects that are not channels: [`Event::wait_async`],
//! [`Semaphore::acquire_async`] and [`BoundedSemaphore::acquire_async`]. Each is one
//! attempt first (no socket, no syscall when it succeeds), then a doorbell of its own for
//! the rest of the wait, removed from the object when the wait ends or its future is
//! dropped.

use std::future::poll_fn;

use super::bell::Doorbell;
use crate::error::Result;
use crate::primitive::AtomicU32;
use crate::sync::wait::{self, Bells};
use crate::{BoundedSemaphore, Event, Semaphore};

/// Runs its closure when dropped: removes a one-shot wait's doorbell.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// Waits until `attempt` gives a value: at once if it does, otherwise on a fresh doorbell
/// registered beside `word` (an event's or a semaphore's) and removed when the wait ends.
async fn until<R>(
    (word, bells): (&AtomicU32, &Bells),
    mut attempt: impl FnMut() -> Result<Option<R>>,
) -> Result<R> {
    if let Some(r) = attempt()? {
        return Ok(r);
    }
    let mut bell = Doorbell::new()?;
    let id = bell.id();
    let _registered = OnDrop(|| bells.remove(id));
    poll_fn(|cx| bell.poll_until(cx, &mut (), |_| attempt(), |_, b| wait::arm(word, bells, b)))
        .await
}

impl Event {
    /// Waits until the flag is set (or was set since the call began), without blocking
    /// the thread (tokio). Cancel-safe: dropping the future ends the wait, leaving nothing
    /// registered.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # let name = shmkit::__private::test_name("doc-event-async");
    /// let ready = shmkit::Event::create(&name)?;
    /// ready.set(); // usually in another process
    /// ready.wait_async().await?;
    /// # Ok::<(), shmkit::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn wait_async(&self) -> Result<()> {
        let st = self.state();
        let start = st.generation();
        until(st.async_parts(), || Ok(st.fired_since(start).then_some(()))).await
    }
}

macro_rules! acquire_async {
    ($ty:ident) => {
        impl $ty {
            /// Takes a permit, waiting without blocking the thread while there is none
            /// (tokio). Cancel-safe: a permit is taken only by the step that completes the
            /// future. Give it back with `release`.
            ///
            /// ```
            /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
            /// # let name = shmkit::__private::test_name("doc-sem-async");
            #[doc = concat!("let slots = shmkit::", stringify!($ty), "::create(&name, 1)?;")]
            /// slots.acquire_async().await?;
            /// assert!(!slots.try_acquire()?);
            /// slots.release()?;
            /// # Ok::<(), shmkit::Error>(())
            /// # }).unwrap();
            /// ```
            pub async fn acquire_async(&self) -> Result<()> {
                let st = self.state();
                until(st.async_parts(), || Ok(st.try_take().then_some(()))).await
            }
        }
    };
}

acquire_async!(Semaphore);
acquire_async!(BoundedSemaphore);
