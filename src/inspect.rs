//! What a named segment holds, for operators: [`inspect`] (behind `shmkit inspect`).
//!
//! Everything is read with plain reads from the segment's file (nothing is mapped, no
//! endpoint is registered, no lock is taken), so inspecting never disturbs the processes
//! using the segment, and a corrupt or truncated segment is reported, not trusted. The
//! values are a snapshot: a busy channel moves on while it is displayed.

use std::time::SystemTime;

use crate::channel;
use crate::error::Result;
use crate::segment::{Kind, SegmentInfo, Snapshot};

/// What [`inspect`] found.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// What [`list`](crate::list) says of it.
    pub info: SegmentInfo,
    /// Header fields and, for channels, their state (positions, depth, endpoints and their
    /// liveness, lost messages), as `(field, value)` in display order.
    pub fields: Vec<(String, String)>,
}

/// Inspects the named segment `name`: its header, and for channels their depth, capacity,
/// endpoints (with the liveness of each, asked of the kernel) and lost-message counts.
///
/// ```
/// # let name = format!("doc-inspect-{}", std::process::id());
/// let _rx = shmkit::spsc::Receiver::<u64>::create(&name, 8)?;
/// let report = shmkit::inspect(&name)?;
/// assert!(report.info.held);
/// let receiver = report.fields.iter().find(|(k, _)| k == "receiver").unwrap();
/// assert!(receiver.1.ends_with("alive"));
/// # Ok::<(), shmkit::Error>(())
/// ```
pub fn inspect(name: &str) -> Result<Inspection> {
    let snap = Snapshot::read(name)?;
    let h = &snap.header;
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut field = |k: &str, v: String| fields.push((k.to_owned(), v));
    field("format version", h.version.to_string());
    field(
        "kind",
        snap.info.kind.map_or_else(
            || format!("unknown ({})", h.kind),
            |k| k.as_str().to_owned(),
        ),
    );
    field(
        "state",
        match h.state {
            2 => "ready".to_owned(),
            s => format!("not ready ({s})"),
        },
    );
    field("element size", h.elem_size.to_string());
    field("element alignment", h.elem_align.to_string());
    field("capacity", h.capacity.to_string());
    field("body bytes", h.body_len.to_string());
    field("file bytes", snap.info.size.to_string());
    if h.total_len != snap.info.size {
        field(
            "warning",
            format!(
                "the header says {} bytes: truncated or corrupt",
                h.total_len
            ),
        );
    }
    field("creator pid", h.creator_pid.to_string());
    if let Some(age) = snap
        .info
        .created
        .and_then(|c| SystemTime::now().duration_since(c).ok())
    {
        field("age", format!("{:.1} s", age.as_secs_f64()));
    }
    field(
        "held",
        if snap.info.held {
            "yes (a live process has it open)".to_owned()
        } else {
            "no (nobody has it open: `shmkit clean` would remove it)".to_owned()
        },
    );
    let alive = |t: u32| snap.alive(t);
    let body = snap.body(64 << 10);
    match snap.info.kind {
        Some(Kind::Spsc) => fields.extend(channel::describe_pair(
            &body, h.capacity, "messages", &alive,
        )),
        Some(Kind::Frames) => {
            fields.extend(channel::describe_pair(&body, h.capacity, "bytes", &alive))
        }
        Some(Kind::Mpmc) => fields.extend(channel::mpmc::describe(&body, h.capacity, &alive)),
        _ => {}
    }
    Ok(Inspection {
        info: snap.info.clone(),
        fields,
    })
}
