//! Test-only failpoints: kill this process (SIGKILL, as a crash would) at a named step of
//! a protocol, so that tests can check what the peers see after a death at exactly that
//! step.
//!
//! Compiled in only with the `failpoints` cargo feature; without it [`failpoint!`] expands
//! to nothing. With it, the environment variable `SHMKIT_FAILPOINT` arms one point:
//! `NAME` kills at its first hit, `NAME@N` at its `N`th. The points:
//!
//! | name | where the process dies |
//! | --- | --- |
//! | `segment.before_publish` | a creator, after initialising, before its name appears |
//! | `spsc.published` | a sender, after a slot's stamp says published, before `tail` |
//! | `spsc.released` | a receiver, after `head` moved, before it wakes the sender |
//! | `frames.published` | a sender, after a record's stamp, before `tail` |
//! | `frames.released` | a receiver, after `head` moved, before it wakes the sender |
//! | `collections.torn` | a dict or list writer, after a slot's bytes, before its checksum |
//! | `collections.written` | a dict or list writer, after a slot's checksum, before its commit |
//! | `dict.committed` | a dict writer, after committing a new key's slot, before the length |
//! | `dict.moved` | a dict writer, after committing a replaced value's new slot, before retiring the old one |
//! | `list.set.committed` | a list writer, after switching a position to its new slot, before the spare |
//! | `dict.recovering` | a dict's recoverer, after finishing a dead writer's replacement, before clearing its record |
//! | `mpmc.send.claimed` | a sender, after claiming a slot, before writing it |
//! | `mpmc.recv.claimed` | a receiver, after claiming a message, before reading it |
//! | `mpmc.recv.empty` | a receiver, in a poll that found nothing published at `head` |
//! | `pipe.between_rings` | a pipe's creator, after its first ring, before its second |

/// Kills the process at the named point if `SHMKIT_FAILPOINT` arms it.
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        $crate::os::failpoint::hit($name);
    };
}
pub(crate) use failpoint;

#[cfg(feature = "failpoints")]
pub(crate) fn hit(name: &'static str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let armed = ARMED.get_or_init(|| {
        let v = std::env::var("SHMKIT_FAILPOINT").ok()?;
        Some(match v.split_once('@') {
            Some((n, k)) => (n.to_owned(), k.parse().unwrap_or(1)),
            None => (v, 1),
        })
    });
    if let Some((point, nth)) = armed {
        // Relaxed: a counter private to this process.
        if point == name && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *nth {
            crate::os::kill_self();
        }
    }
}
