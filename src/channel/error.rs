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
