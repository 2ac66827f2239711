//! The channels' own error types, shared by every channel module.
//!
//! Receives return the crate-wide [`Error`] (`WouldBlock`, `Timeout`, `Disconnected`,
//! `Corrupt`); a typed send hands its value back in a [`SendError`], as crossbeam's does.
//! Nothing here touches shared memory.

use std::fmt;

use crate::error::Error;

/// A value that could not be sent, and why ([`Error::WouldBlock`] when full,
/// [`Error::Timeout`], [`Error::Disconnected`], or [`Error::Corrupt`]). Returned by the
/// typed channels ([`spsc`](crate::spsc), [`mpmc`](crate::mpmc)); converts into [`Error`]
/// with `?`.
///
/// ```
/// use shmkit::{spsc, Error, SendError};
/// # let name = shmkit::__private::test_name("doc-senderror");
/// let mut tx = spsc::Sender::<u64>::create(&name, 2)?;
/// let mut rx = spsc::Receiver::<u64>::open(&name)?;
/// tx.send(1)?; // `?` converts a SendError into shmkit::Error
/// tx.send(2)?;
/// match tx.try_send(3) {
///     Err(SendError { value, error: Error::WouldBlock }) => {
///         assert_eq!(rx.recv()?, 1); // make room, then send the value handed back
///         tx.send(value)?;
///     }
///     other => panic!("the ring was full: {other:?}"),
/// }
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug)]
pub struct SendError<T> {
    /// The value, handed back.
    pub value: T,
    /// Why it was not sent.
    pub error: Error,
}

impl<T> SendError<T> {
    /// The value that was not sent.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "send failed: {}", self.error)
    }
}

impl<T: fmt::Debug> std::error::Error for SendError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl<T> From<SendError<T>> for Error {
    fn from(e: SendError<T>) -> Error {
        e.error
    }
}
