//! The parent's side of one worker: the child process and the two rings to it
//! ([`Link`]), and what a reply item means ([`item_result`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::child::Child;
use super::wire::{self, Msg};
use super::worker::Spec;
use crate::channel::frames;
use crate::error::{Error, Result};

/// A fresh base name for this process's process-layer objects: `mp.PID.N`.
pub(crate) fn fresh_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    // Relaxed: a counter; uniqueness is all that matters.
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("mp.{}.{n}", std::process::id())
}

/// One worker, seen from its parent.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) child: Child,
    tx: frames::Sender,
    rx: frames::Receiver,
    /// The rings' name (`NAME.i`, `NAME.o`); out-of-line bodies are `NAME.xN`.
    rings: String,
    ool_n: u64,
    /// `NAME.x`: what the worker's out-of-line bodies are called.
    ool_prefix: String,
    limit: usize,
}

impl Link {
    /// Creates the rings `rings.i`/`rings.o` of `capacity` bytes each and starts a worker
    /// on them.
    pub(crate) fn start(
        rings: String,
        capacity: usize,
        bell: Option<&str>,
        slots: Option<(&str, u32)>,
    ) -> Result<Link> {
        let tx = frames::Sender::create(&format!("{rings}.i"), capacity)?;
        let rx = frames::Receiver::create(&format!("{rings}.o"), capacity)?;
        let spec = Spec {
            rings: rings.clone(),
            bell: bell.map(str::to_owned),
            slots: slots.map(|(s, i)| (s.to_owned(), i)),
            parent: std::process::id(),
        };
        let child = Child::spawn(&spec.encode())?;
        let limit = wire::inline_limit(&tx);
        Ok(Link {
            child,
            tx,
            rx,
            ool_prefix: format!("{rings}.x"),
            rings,
            ool_n: 0,
            limit,
        })
    }

    /// The worker's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Sends `frame` if the ring has room now (`Ok(false)` if not), spilling a large body
    /// out of line.
    pub(crate) fn try_send(&mut self, frame: &[u8]) -> Result<bool> {
        let (rings, n) = (&self.rings, &mut self.ool_n);
        let spilled = wire::spill(frame, self.limit, || {
            *n += 1;
            format!("{rings}.x{n}")
        })?;
        match self.tx.try_send(spilled.as_ref().map_or(frame, |(f, _)| f)) {
            Ok(()) => Ok(true),
            Err(e) => {
                if let Some((_, name)) = &spilled {
                    let _ = crate::admin::unlink(name);
                }
                match e {
                    Error::WouldBlock => Ok(false),
                    e => Err(e),
                }
            }
        }
    }

    /// Sends `frame`, waiting for room while the worker lives.
    pub(crate) fn send(&mut self, frame: &[u8]) -> Result<()> {
        loop {
            if self.try_send(frame)? {
                return Ok(());
            }
            if self.child.try_status()?.is_some() {
                return Err(Error::Disconnected);
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// The next message if one is ready; `Err(Disconnected)` once the worker's end is gone
    /// and everything it sent has been received.
    pub(crate) fn try_recv(&mut self) -> Result<Option<Msg>> {
        match self.rx.try_recv() {
            Ok(f) => Msg::parse(f, &self.ool_prefix).map(Some),
            Err(Error::WouldBlock) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The next message, waiting at most `timeout` (`Ok(None)` if none came).
    pub(crate) fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Msg>> {
        match self.rx.recv_timeout(timeout) {
            Ok(f) => Msg::parse(f, &self.ool_prefix).map(Some),
            Err(Error::Timeout) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Kills the worker (if it runs), reaps it, and removes whatever out-of-line body
    /// nobody took.
    pub(crate) fn close(&mut self) -> super::ExitStatus {
        let status = self.child.kill_and_reap();
        let _ = crate::admin::clean(&format!("{}.x", self.rings), crate::CleanMode::Remove);
        status
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.close();
    }
}

/// What reply item `(status, bytes)` of task `task` from worker `pid` means for the
/// caller.
pub(crate) fn item_result<R: DeserializeOwned>(
    status: u8,
    bytes: &[u8],
    task: &str,
    pid: u32,
) -> Result<R> {
    let text = || String::from_utf8_lossy(bytes).into_owned();
    match status {
        wire::OK => crate::codec::postcard_decode(bytes).map_err(|e| Error::Codec {
            what: format!("the result of `{task}` from process {pid}: {e}"),
        }),
        wire::PANICKED => Err(Error::Panicked {
            task: task.to_owned(),
            pid,
            message: text(),
        }),
        wire::CODEC => Err(Error::Codec {
            what: format!("`{task}` in process {pid}: {}", text()),
        }),
        wire::REFUSED => Err(super::task::worker_error(pid, task, text())),
        s => Err(Error::corrupt(format!(
            "a reply item of unknown status {s} from process {pid}"
        ))),
    }
}
