//! What `shmkit inspect` shows of an mpmc queue: its header's fields, read from a copy of
//! the segment's bytes (nothing here touches a live mapping).

use super::ring::{Geometry, Header, Registration, Tail};
use super::turns::{turn_expired, turn_now, turn_owner};
use super::{MAX_CAPACITY, MAX_ENDPOINTS};
use crate::channel::{EndpointSlot, Line};

/// The fields of an mpmc queue header in `body` (a snapshot read with plain reads; only
/// displayed), for `shmkit inspect`.
pub(crate) fn describe(
    body: &[u8],
    capacity: u64,
    alive: &dyn Fn(u32) -> bool,
) -> Vec<(String, String)> {
    use crate::channel::{u32_at, u64_at};
    let mut out = Vec::new();
    let tail = u64_at(
        body,
        std::mem::offset_of!(Header, tail) + std::mem::offset_of!(Tail, pos),
    );
    let head = u64_at(body, std::mem::offset_of!(Header, head));
    if let (Some(tail), Some(head)) = (tail, head) {
        let geo = Geometry::new(capacity.clamp(1, MAX_CAPACITY));
        out.push((
            "depth (claimed, not yet received)".to_owned(),
            geo.depth(head, tail)
                .map_or_else(|| "inconsistent positions".to_owned(), |d| d.to_string()),
        ));
    }
    let turn = u64_at(
        body,
        std::mem::offset_of!(Header, tail) + std::mem::offset_of!(Tail, turn),
    );
    if let Some(t) = turn.filter(|&t| t != 0) {
        let now = turn_now();
        out.push((
            "turn (a sender waiting for several slots)".to_owned(),
            match turn_owner(t).checked_sub(1) {
                Some(j) => format!(
                    "sender registration {j}, fresh {} ms ago{}",
                    now.wrapping_sub(t >> 8),
                    if turn_expired(t, now) {
                        " (past its time)"
                    } else {
                        ""
                    }
                ),
                None => format!("garbage ({t:#x})"),
            },
        ));
    }
    if let Some(lost) = u64_at(body, std::mem::offset_of!(Header, lost)) {
        out.push(("lost to dead endpoints".to_owned(), lost.to_string()));
    }
    let line = std::mem::size_of::<Line<Registration>>();
    let end = std::mem::offset_of!(Registration, end);
    for (table, role) in [
        (std::mem::offset_of!(Header, senders), "senders"),
        (std::mem::offset_of!(Header, receivers), "receivers"),
    ] {
        let mut held = Vec::new();
        for i in 0..MAX_ENDPOINTS {
            let off = table + i * line + end;
            let token = u32_at(body, off + std::mem::offset_of!(EndpointSlot, token));
            if token.is_some_and(|t| t != 0) {
                held.push(crate::channel::describe_end(body, off, alive).unwrap_or_default());
            }
        }
        out.push((
            role.to_owned(),
            if held.is_empty() {
                "none attached".to_owned()
            } else {
                format!("{} attached: {}", held.len(), held.join("; "))
            },
        ));
    }
    out
}
