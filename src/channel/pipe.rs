//! [`Pipe`]: Python's `multiprocessing.Pipe`, over two frame rings.
//!
//! `Pipe::create(name, capacity)` in one process and `Pipe::open(name)` in another give the
//! two ends of a connection: what one end sends, the other receives, in both directions
//! (or in one, with [`Pipe::create_one_way`]: the creator only receives, the opener only
//! sends, like `Pipe(duplex=False)`). Messages are byte frames, received as copies
//! (`recv`, `try_recv`, `recv_timeout`: `Vec<u8>`) or in place (`recv_ref`,
//! `try_recv_ref`, `recv_ref_timeout`: a [`Frame`](crate::frames::Frame), for cooperating
//! peers), as in [`frames`](crate::frames).
//! `recv` returns [`Error::Disconnected`] once the other end is gone and everything it
//! sent has been received; `poll(timeout)` says whether a message is ready.
//!
//! The two directions are two frame channels named `NAME.c2o` (creator to opener) and
//! `NAME.o2c`.
//!
//! ```
//! use shmkit::Pipe;
//! # let name = format!("doc-pipe-{}", std::process::id());
//! let mut parent = Pipe::create(&name, 1 << 16)?;
//! let mut child = Pipe::open(&name)?; // in the child process
//! parent.send(b"ping")?;
//! assert_eq!(child.recv()?, b"ping");
//! child.send(b"pong")?;
//! assert!(parent.poll(std::time::Duration::from_secs(1))?);
//! assert_eq!(&*parent.recv_ref()?, b"pong"); // in place
//! # Ok::<(), shmkit::Error>(())
//! ```

use std::time::Duration;

use super::frames::{Frame, Receiver, Sender};
use crate::error::{Error, Result};

/// One end of a pipe. See the [module docs](crate::Pipe).
#[derive(Debug)]
pub struct Pipe {
    tx: Option<Sender>,
    rx: Option<Receiver>,
}

fn names(name: &str) -> (String, String) {
    (format!("{name}.c2o"), format!("{name}.o2c"))
}

impl Pipe {
    /// Creates a duplex pipe whose rings hold `capacity` bytes each, and returns the
    /// creator's end.
    pub fn create(name: &str, capacity: usize) -> Result<Pipe> {
        let (c2o, o2c) = names(name);
        let tx = Sender::create(&c2o, capacity)?;
        let rx = Receiver::create(&o2c, capacity)?;
        Ok(Pipe {
            tx: Some(tx),
            rx: Some(rx),
        })
    }

    /// Creates a one-way pipe: the creator's end only receives, the opener's only sends.
    pub fn create_one_way(name: &str, capacity: usize) -> Result<Pipe> {
        let (_, o2c) = names(name);
        Ok(Pipe {
            tx: None,
            rx: Some(Receiver::create(&o2c, capacity)?),
        })
    }

    /// Opens the other end of the pipe `name` (duplex or one-way, as it was created).
    pub fn open(name: &str) -> Result<Pipe> {
        let (c2o, o2c) = names(name);
        let tx = Sender::open(&o2c)?;
        let rx = match Receiver::open(&c2o) {
            Ok(rx) => Some(rx),
            Err(Error::NotFound { .. }) => None, // one-way
            Err(e) => return Err(e),
        };
        Ok(Pipe { tx: Some(tx), rx })
    }

    fn tx(&mut self) -> Result<&mut Sender> {
        self.tx.as_mut().ok_or_else(|| {
            Error::InvalidArgument("this end of a one-way pipe only receives".into())
        })
    }

    fn rx(&mut self) -> Result<&mut Receiver> {
        self.rx
            .as_mut()
            .ok_or_else(|| Error::InvalidArgument("this end of a one-way pipe only sends".into()))
    }

    /// Sends a copy of `bytes` to the other end, blocking while its ring is full.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.tx()?.send(bytes)
    }

    /// Sends, waiting at most `timeout` for room.
    pub fn send_timeout(&mut self, bytes: &[u8], timeout: Duration) -> Result<()> {
        self.tx()?.send_timeout(bytes, timeout)
    }

    /// Receives the next message as an owned copy, blocking while there is none.
    pub fn recv(&mut self) -> Result<Vec<u8>> {
        self.rx()?.recv()
    }

    /// Receives a copy if a message is ready; never blocks ([`Error::WouldBlock`] if none).
    pub fn try_recv(&mut self) -> Result<Vec<u8>> {
        self.rx()?.try_recv()
    }

    /// Receives a copy, waiting at most `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>> {
        self.rx()?.recv_timeout(timeout)
    }

    /// Receives the next message in place (for a cooperating peer; see
    /// [`frames::Receiver::recv_ref`](crate::frames::Receiver::recv_ref)).
    pub fn recv_ref(&mut self) -> Result<Frame<'_>> {
        self.rx()?.recv_ref()
    }

    /// Receives in place if a message is ready; never blocks.
    pub fn try_recv_ref(&mut self) -> Result<Frame<'_>> {
        self.rx()?.try_recv_ref()
    }

    /// Receives in place, waiting at most `timeout`.
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<Frame<'_>> {
        self.rx()?.recv_ref_timeout(timeout)
    }

    /// Whether a message is ready, waiting at most `timeout` for one (`Duration::ZERO`
    /// asks without waiting). `Ok(false)` also when the other end is gone and nothing is
    /// left: the next `recv` says `Disconnected`.
    pub fn poll(&mut self, timeout: Duration) -> Result<bool> {
        let rx = self.rx()?;
        let r = if timeout.is_zero() {
            rx.peek(None)
        } else {
            rx.peek(Some(timeout))
        };
        match r {
            Ok(()) => Ok(true),
            Err(Error::WouldBlock | Error::Timeout | Error::Disconnected) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
