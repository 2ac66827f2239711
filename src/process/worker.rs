//! The worker side: what `shmkit::init()` runs in a process started as a worker, and the
//! spec that tells it where its rings are.
//!
//! A worker asks the kernel to kill it when its parent dies (then checks that the parent
//! did not die before the request), ignores SIGINT (a terminal's Ctrl-C is for the parent
//! to decide), closes descriptors it inherited by mistake, opens its two rings, and then
//! answers messages until [`STOP`](super::wire::STOP) or until the parent is gone.

use std::time::Duration;

use super::task::{self, Outcome};
use super::wire::{self, Builder, Msg};
use crate::channel::frames;
use crate::error::{Error, Result};
use crate::sync::Event;
use crate::RawArray;

/// Where a worker finds its parent's objects: passed in the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spec {
    /// The rings' name: `NAME.i` (to the worker) and `NAME.o` (back).
    pub(crate) rings: String,
    /// The pool's doorbell (an `Event` the worker sets after each reply), if any.
    pub(crate) bell: Option<String>,
    /// The pool's in-flight slots (`RawArray<u64>`) and this worker's index there.
    pub(crate) slots: Option<(String, u32)>,
    /// The parent's pid.
    pub(crate) parent: u32,
}

const VERSION: &str = "1";

impl Spec {
    /// The environment value.
    pub(crate) fn encode(&self) -> String {
        let (slots, index) = match &self.slots {
            Some((s, i)) => (s.as_str(), *i),
            None => ("-", 0),
        };
        format!(
            "{VERSION};{};{};{slots};{index};{}",
            self.rings,
            self.bell.as_deref().unwrap_or("-"),
            self.parent
        )
    }

    /// Parses the environment value; `None` if it is not one of ours.
    pub(crate) fn parse(s: &str) -> Option<Spec> {
        let mut it = s.split(';');
        if it.next()? != VERSION {
            return None;
        }
        let rings = it.next()?.to_owned();
        let bell = Some(it.next()?).filter(|b| *b != "-").map(str::to_owned);
        let slots = it.next()?;
        let index: u32 = it.next()?.parse().ok()?;
        let parent = it.next()?.parse().ok()?;
        if it.next().is_some() {
            return None;
        }
        let slots = (slots != "-").then(|| (slots.to_owned(), index));
        Some(Spec {
            rings,
            bell,
            slots,
            parent,
        })
    }
}

/// Runs the worker described by `spec` (the value of the environment variable); returns
/// the process's exit code.
pub(crate) fn main(spec: &str) -> i32 {
    let Some(spec) = Spec::parse(spec) else {
        eprintln!(
            "shmkit: this process was started as a worker with a spec it cannot read: {spec:?}"
        );
        return 2;
    };
    match crate::os::process::die_with_parent(libc::SIGKILL, spec.parent) {
        Ok(true) => {}
        // The parent is gone already (or the request failed): nobody waits for us.
        _ => return 3,
    }
    let _ = crate::os::process::ignore_sigint();
    crate::os::process::close_inherited(&[]);
    match serve(&spec) {
        Ok(code) => code,
        // The parent closed or died: nothing to report to.
        Err(Error::Disconnected) => 0,
        Err(e) => {
            eprintln!("shmkit worker {}: {e}", std::process::id());
            4
        }
    }
}

/// Answers the parent's messages; `Ok(exit code)` on STOP or a failed initializer.
fn serve(spec: &Spec) -> Result<i32> {
    let mut rx = frames::Receiver::open(&format!("{}.i", spec.rings))?;
    let mut tx = frames::Sender::open(&format!("{}.o", spec.rings))?;
    // Both ends are open now (the parent created them): the names have done their job.
    // Removing them here means that nothing is left in /dev/shm whoever dies next.
    for end in ["i", "o"] {
        let _ = crate::admin::unlink(&format!("{}.{end}", spec.rings));
    }
    let bell = spec.bell.as_deref().map(Event::open).transpose()?;
    let slots = match &spec.slots {
        Some((name, i)) => {
            let a = RawArray::<u64>::open(name)?;
            if *i as usize >= a.len() {
                return Err(Error::corrupt(
                    "a worker index past the pool's in-flight slots",
                ));
            }
            Some((a, *i as usize))
        }
        None => None,
    };
    let limit = wire::inline_limit(&tx);
    let ool_base = format!("{}.x", spec.rings);
    let mut ool_n = 0u64;
    let mut out = Builder::new();
    loop {
        let msg = Msg::parse(rx.recv()?, &ool_base)?;
        out.clear();
        let kind = match msg.kind() {
            wire::STOP => return Ok(0),
            wire::CALL => {
                if let Some((a, i)) = &slots {
                    // Release: pairs with the parent's Acquire load after this process
                    // died; says which call was running.
                    a.atomics()[*i].store(msg.head.seq, std::sync::atomic::Ordering::Release);
                }
                run_items(&msg, &mut out)?;
                wire::REPLY
            }
            wire::INIT => {
                if msg.head.fp == 0 {
                    wire::READY
                } else {
                    let ok = run_items(&msg, &mut out)?;
                    if !ok || msg.head.count != 1 {
                        wire::INIT_FAILED
                    } else {
                        out.clear();
                        wire::READY
                    }
                }
            }
            k => {
                return Err(Error::corrupt(format!(
                    "a process-layer message of unknown kind {k}"
                )))
            }
        };
        let seq = msg.head.seq;
        let frame = out.finish(kind, seq, msg.head.fp);
        let spilled = wire::spill(frame, limit, || {
            ool_n += 1;
            format!("{ool_base}{ool_n}")
        })?;
        tx.send(spilled.as_ref().map_or(frame, |(f, _)| f))?;
        if let Some(b) = &bell {
            // SeqCst fence: our reply's publication (the frame's stamp) before the bell's
            // load in `set`; pairs with the fence the parent issues after clearing the
            // bell and before it polls the rings (Dekker: it sees the reply or we see the
            // cleared bell and wake it).
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            b.set();
        }
        if kind == wire::INIT_FAILED {
            // Let the parent read the reply before our end goes.
            std::thread::sleep(Duration::from_millis(1));
            return Ok(1);
        }
    }
}

/// Runs every item of call `msg` with its task, appending one result item each; `true` if
/// every one succeeded.
fn run_items(msg: &Msg, out: &mut Builder) -> Result<bool> {
    let run = task::lookup(msg.head.fp);
    let mut all_ok = true;
    for item in msg.items() {
        let (status, arg) = item?;
        if status != wire::OK {
            // An argument the parent could not encode: its error goes back as it came.
            all_ok = false;
            out.item_bytes(status, arg);
            continue;
        }
        match &run {
            Some(f) => out.item(|buf| {
                let at = buf.len();
                let outcome = f(arg, buf);
                all_ok &= matches!(outcome, Outcome::Ok);
                match outcome {
                    Outcome::Ok => wire::OK,
                    Outcome::Panicked(m) => {
                        buf.truncate(at);
                        buf.extend_from_slice(m.as_bytes());
                        wire::PANICKED
                    }
                    Outcome::Codec(m) => {
                        buf.truncate(at);
                        buf.extend_from_slice(m.as_bytes());
                        wire::CODEC
                    }
                }
            }),
            None => {
                all_ok = false;
                out.item_bytes(wire::REFUSED, task::NOT_REGISTERED.as_bytes());
            }
        }
    }
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_and_foreign_values_are_refused() {
        let s = Spec {
            rings: "mp.1.2.3".into(),
            bell: Some("mp.1.2.bell".into()),
            slots: Some(("mp.1.2.st".into(), 4)),
            parent: 77,
        };
        assert_eq!(Spec::parse(&s.encode()), Some(s));
        let single = Spec {
            rings: "mp.1.9".into(),
            bell: None,
            slots: None,
            parent: 5,
        };
        assert_eq!(Spec::parse(&single.encode()), Some(single));
        for bad in ["", "2;a;-;-;0;1", "1;a;-;-;x;1", "1;a;-;-;0;1;extra"] {
            assert_eq!(Spec::parse(bad), None, "{bad}");
        }
    }
}
