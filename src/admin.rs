//! Operator tools over this crate's named segments: [`list`], [`inspect`], [`clean`] and
//! [`unlink`] (behind `shmkit list`, `inspect` and `clean`).
//!
//! Everything here reads segment files with plain reads (nothing is mapped, no endpoint is
//! registered), so looking never disturbs the processes using a segment, and a corrupt or
//! truncated segment is reported, not trusted. Whether a segment is in use is the kernel's
//! word: every open handle holds a shared OFD lock on the segment's holder byte (see the
//! `segment` module), which [`clean`] takes exclusively before it unlinks. Inspected
//! values are a snapshot: a busy channel moves on while it is displayed.

use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::channel;
use crate::error::{Error, Result};
use crate::os;
use crate::segment::{
    hold, map_io_err, os_path, Header, Kind, HEADER_SIZE, HOLDER_BYTE, LIVENESS_BASE, MAGIC,
    MAX_TOKEN, PREFIX, TMP_PREFIX, VERSION,
};

/// Removes the named segment `name`. Processes that have it mapped keep their mapping.
pub fn unlink(name: &str) -> Result<()> {
    let path = os_path(name)?;
    // Hold it while removing it, as an opener would: a cleaner that holds it exclusively
    // is removing it already, and one that comes later finds the name gone or reused, so
    // it can never remove a segment created under the same name after ours.
    let fd = os::open_rw(&path).map_err(|e| map_io_err(name, "open", e))?;
    if !hold(&fd, &path)? {
        return Err(Error::NotFound {
            name: name.to_owned(),
        });
    }
    os::unlink(&path).map_err(|e| map_io_err(name, "unlink", e))
}

/// What [`list`] reports about one segment.
///
/// ```
/// # let name = shmkit::__private::test_name("doc-info");
/// let _v = shmkit::Value::<u32>::create(&name, 0)?;
/// let info = shmkit::list()?.into_iter().find(|i| i.name == name).unwrap();
/// assert_eq!(info.kind, Some(shmkit::Kind::Value));
/// assert!(info.held); // our handle holds it
/// assert_eq!(info.mode, 0o600);
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// The user-facing name.
    pub name: String,
    /// The object kind; `None` if the header is not a valid shmkit header of this version.
    pub kind: Option<Kind>,
    /// The file has our prefix but not our magic number: shmkit did not create it (names
    /// are published only once their header is written). [`clean`] leaves such files alone
    /// unless asked with [`CleanMode::RemoveIncludingForeign`].
    pub foreign: bool,
    /// Size of the file in bytes.
    pub size: u64,
    /// The creator's pid as recorded (for display only).
    pub creator_pid: u32,
    /// When the segment was created, as recorded.
    pub created: Option<SystemTime>,
    /// The permission bits.
    pub mode: u32,
    /// The owner's uid.
    pub uid: u32,
    /// Whether a live process has it open (decided by the kernel, through the lock each
    /// open handle holds; never by pid). [`clean`] removes only segments nobody holds.
    pub held: bool,
}

/// Whether the file starts with our magic number (read with a plain read, through a
/// duplicate of the descriptor: the same open file description and its locks).
fn has_magic(fd: &std::os::fd::OwnedFd) -> bool {
    let Ok(dup) = fd.try_clone() else {
        return false;
    };
    let mut b = [0u8; 8];
    os::read_exact_at(&std::fs::File::from(dup), &mut b, 0).unwrap_or(false)
        && u64::from_ne_bytes(b) == MAGIC
}

/// The names of the files in `/dev/shm` (names that are not UTF-8 are never ours).
fn shm_files() -> Result<Vec<String>> {
    let dir = std::fs::read_dir(os::SHM_DIR).map_err(|e| Error::io("read_dir /dev/shm", e))?;
    Ok(dir
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect())
}

/// Lists this crate's named segments (files in `/dev/shm` with our prefix). Reads headers
/// with plain reads, without mapping anything.
pub fn list() -> Result<Vec<SegmentInfo>> {
    let mut out = Vec::new();
    for fname in shm_files()? {
        let Some(name) = fname.strip_prefix(PREFIX) else {
            continue;
        };
        let path = format!("{}/{fname}", os::SHM_DIR);
        let Ok((f, st)) = os::open_read(&path) else {
            continue;
        };
        let mut b = [0u8; HEADER_SIZE];
        let h: Option<Header> = os::read_exact_at(&f, &mut b, 0)
            .unwrap_or(false)
            .then(|| bytemuck::pod_read_unaligned(&b));
        let held = os::ofd_is_locked(f.as_raw_fd(), HOLDER_BYTE).unwrap_or(true);
        let valid = h.filter(|h| h.magic == MAGIC && h.version == VERSION);
        out.push(SegmentInfo {
            name: name.to_owned(),
            kind: valid.and_then(|h| Kind::from_u32(h.kind)),
            foreign: h.is_none_or(|h| h.magic != MAGIC),
            size: st.size,
            creator_pid: valid.map_or(0, |h| h.creator_pid),
            created: valid.map(|h| UNIX_EPOCH + Duration::from_nanos(h.created_ns)),
            mode: st.mode,
            uid: st.uid,
            held,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A snapshot of a named segment's header for inspection: read with plain reads (nothing
/// mapped), the fixed prefix checked; everything else is only for display.
pub(crate) struct Snapshot {
    pub(crate) file: std::fs::File,
    pub(crate) header: Header,
    pub(crate) info: SegmentInfo,
}

impl Snapshot {
    /// Reads `name`'s header.
    pub(crate) fn read(name: &str) -> Result<Snapshot> {
        let path = os_path(name)?;
        let (file, st) = os::open_read(&path).map_err(|e| map_io_err(name, "open", e))?;
        if !st.is_file {
            return Err(Error::PermissionDenied {
                name: name.to_owned(),
                reason: "it is not a regular file".into(),
            });
        }
        let mut b = [0u8; HEADER_SIZE];
        if !os::read_exact_at(&file, &mut b, 0).map_err(|e| Error::io("read", e))? {
            return Err(Error::corrupt(format!(
                "segment `{name}`: {} bytes, shorter than a header",
                st.size
            )));
        }
        let h: Header = bytemuck::pod_read_unaligned(&b);
        if h.magic != MAGIC {
            return Err(Error::corrupt(format!(
                "`{name}` is not a shmkit segment (bad magic {:#018x}): shmkit did not create \
                 it, and `shmkit clean` leaves it unless given --foreign",
                h.magic
            )));
        }
        if h.version != VERSION || h.header_size != HEADER_SIZE as u32 {
            return Err(Error::LayoutMismatch {
                name: name.to_owned(),
                what: format!(
                    "format version {} with a {}-byte header (this build reads version {VERSION})",
                    h.version, h.header_size
                ),
            });
        }
        let held = os::ofd_is_locked(file.as_raw_fd(), HOLDER_BYTE).unwrap_or(true);
        let info = SegmentInfo {
            name: name.to_owned(),
            kind: Kind::from_u32(h.kind),
            size: st.size,
            creator_pid: h.creator_pid,
            created: Some(UNIX_EPOCH + Duration::from_nanos(h.created_ns)),
            mode: st.mode,
            uid: st.uid,
            held,
            foreign: false,
        };
        Ok(Snapshot {
            file,
            header: h,
            info,
        })
    }

    /// Up to `max` bytes of the body (fewer if the file is shorter).
    pub(crate) fn body(&self, max: usize) -> Vec<u8> {
        let len = (self
            .header
            .body_len
            .min(self.info.size.saturating_sub(HEADER_SIZE as u64)) as usize)
            .min(max);
        let mut b = vec![0u8; len];
        match os::read_exact_at(&self.file, &mut b, HEADER_SIZE as u64) {
            Ok(true) => b,
            _ => Vec::new(),
        }
    }

    /// Whether the process that registered liveness `token` in this segment is alive.
    pub(crate) fn alive(&self, token: u32) -> bool {
        token != 0
            && token <= MAX_TOKEN
            && os::ofd_is_locked(self.file.as_raw_fd(), LIVENESS_BASE + u64::from(token))
                .unwrap_or(false)
    }
}

/// What [`clean`] does.
///
/// ```
/// // What would go, without removing anything:
/// let stale = shmkit::clean("my-service.", shmkit::CleanMode::DryRun)?;
/// # let _ = stale;
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanMode {
    /// Report what would be removed; remove nothing.
    DryRun,
    /// Remove what no live process holds.
    Remove,
    /// As [`CleanMode::Remove`], and also remove files under our prefix that shmkit did
    /// not create (no shmkit header; see [`SegmentInfo::foreign`]). Their users, not being
    /// shmkit, hold no lock on them: such a file goes even if a program still uses it.
    RemoveIncludingForeign,
}

/// For `QUEUE.xPID.N`, the name of a serde queue's out-of-line item: `QUEUE`.
pub(crate) fn item_queue(name: &str) -> Option<&str> {
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let (rest, n) = name.rsplit_once('.')?;
    let (queue, pid) = rest.rsplit_once(".x")?;
    (digits(pid) && digits(n) && !queue.is_empty()).then_some(queue)
}

/// Whether a live process holds the segment `name` (any error: as if it did).
fn is_held(name: &str) -> bool {
    let path = format!("{}/{PREFIX}{name}", os::SHM_DIR);
    os::open_rw(&path)
        .is_ok_and(|fd| os::ofd_is_locked(fd.as_raw_fd(), HOLDER_BYTE).unwrap_or(true))
}

/// Removes this crate's segments that no live process holds: named segments left behind by
/// processes that died (or kept on purpose with [`Options::keep`](crate::Options::keep) and no longer open), and
/// temporary files of creators that died before publishing. A file under our prefix without
/// a shmkit header was not created by shmkit (a name is published only once its header is
/// written) and is left alone, unless [`CleanMode::RemoveIncludingForeign`] asks otherwise.
/// Returns the OS file names (in
/// `/dev/shm`) removed, or that would be with [`CleanMode::DryRun`]. Only segments whose
/// name starts with `prefix` are considered (`""`: all of them).
///
/// ```
/// # let name = shmkit::__private::test_name("doc-clean");
/// let opts = shmkit::Options::new().keep(true);
/// drop(shmkit::Segment::create(&name, 64, &opts)?); // kept, and nobody holds it now
/// let live = shmkit::Segment::create(&format!("{name}.live"), 64, &shmkit::Options::new())?;
/// let removed = shmkit::clean(&name, shmkit::CleanMode::Remove)?;
/// assert_eq!(removed, [format!("shmkit.{name}")]); // the held one stays
/// # Ok::<(), shmkit::Error>(())
/// ```
///
/// Safe to run at any time and from several processes at once: a segment that any live
/// process has open is never touched (each open handle holds a shared kernel lock on its
/// file, which a cleaner must take exclusively before it unlinks), a process never opens a
/// segment that is being removed, and each stale file is removed by exactly one cleaner.
/// Files of other users are left alone.
///
/// An out-of-line item of a serde [`Queue`](crate::Queue) (a segment of its own, named
/// `QUEUE.xPID.N`, which nobody holds between its producer's `put` and its consumer's
/// `get`) is left alone while its queue is held by a live process.
pub fn clean(prefix: &str, mode: CleanMode) -> Result<Vec<String>> {
    clean_with(prefix, mode, Spare::LiveQueuesItems)
}

/// What [`clean_with`] leaves alone, besides segments that a live process holds.
#[derive(Clone, Copy)]
pub(crate) enum Spare<'a> {
    /// The out-of-line items of queues that live processes hold (what [`clean`] does).
    LiveQueuesItems,
    /// Everything but the out-of-line items of this queue (its creator, removing the
    /// queue, removes its items, and nothing else that starts with its name).
    AllButItemsOf(&'a str),
}

/// [`clean`], leaving alone what `spare` says.
pub(crate) fn clean_with(prefix: &str, mode: CleanMode, spare: Spare<'_>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for fname in shm_files()? {
        let fname = fname.as_str();
        // Published `shmkit.NAME`, or a creator's temporary `shmkit~NAME~UNIQUE`.
        let user_name = match fname.strip_prefix(PREFIX) {
            Some(n) => n,
            None => match fname.strip_prefix(TMP_PREFIX) {
                Some(rest) => rest.rsplit_once('~').map_or(rest, |(n, _)| n),
                None => continue,
            },
        };
        if !user_name.starts_with(prefix) {
            continue;
        }
        let spared = match spare {
            // (A creator's temporary file is never an item in flight: published names only.)
            Spare::LiveQueuesItems => {
                fname.starts_with(PREFIX) && item_queue(user_name).is_some_and(is_held)
            }
            Spare::AllButItemsOf(queue) => item_queue(user_name) != Some(queue),
        };
        if spared {
            continue;
        }
        let path = format!("{}/{fname}", os::SHM_DIR);
        // Our own open file description: the write lock below conflicts with every
        // holder's shared lock, whoever it is.
        let Ok(fd) = os::open_rw(&path) else {
            continue; // gone already, or not ours to open
        };
        let Ok(st) = os::fstat(fd.as_raw_fd()) else {
            continue;
        };
        if st.uid != os::geteuid() || !st.is_file {
            continue;
        }
        let published = fname.starts_with(PREFIX);
        if published && mode != CleanMode::RemoveIncludingForeign && !has_magic(&fd) {
            continue; // not ours (see `SegmentInfo::foreign`)
        }
        if mode == CleanMode::DryRun {
            // Only look (a lock taken here would make a concurrent open fail).
            if !os::ofd_is_locked(fd.as_raw_fd(), HOLDER_BYTE).unwrap_or(true) {
                out.push(fname.to_owned());
            }
            continue;
        }
        if !os::ofd_try_lock(fd.as_raw_fd(), HOLDER_BYTE).unwrap_or(false) {
            continue; // held by a live process, another cleaner is on it, or unlockable
        }
        // The name may have been removed and reused since we opened it.
        if !os::stat_path(&path).is_ok_and(|now| (now.dev, now.ino) == (st.dev, st.ino)) {
            continue;
        }
        // Exactly one cleaner gets here for a given file: the others found the write lock
        // taken, or (after we close) the name gone or naming another file.
        if os::unlink(&path).is_ok() {
            out.push(fname.to_owned());
        }
        // Dropping `fd` releases the lock.
    }
    out.sort();
    Ok(out)
}

/// What [`inspect`] found.
///
/// ```
/// # let name = shmkit::__private::test_name("doc-inspection");
/// let _sem = shmkit::Semaphore::create(&name, 3)?;
/// let report = shmkit::inspect(&name)?;
/// assert_eq!(report.info.kind, Some(shmkit::Kind::Semaphore));
/// for (field, value) in &report.fields {
///     println!("{field}: {value}");
/// }
/// # Ok::<(), shmkit::Error>(())
/// ```
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
/// # let name = shmkit::__private::test_name("doc-inspect");
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
        Some(k @ (Kind::Dict | Kind::List)) => {
            fields.extend(crate::collections::describe(k, &body))
        }
        _ => {}
    }
    Ok(Inspection {
        info: snap.info.clone(),
        fields,
    })
}
