//! The messages between a parent and its worker: one frame each, over two frame rings
//! (`NAME.i` to the worker, `NAME.o` back).
//!
//! ```text
//! frame:  | Head (32 B): kind, count, seq, fp, len | body (len bytes) |
//! body of CALL, INIT, REPLY and INIT_FAILED: count items, each
//!         | len: u32 LE | status: u8 | len bytes |
//! ```
//!
//! A body larger than the ring's inline limit travels out of line: the sender writes it
//! into a segment of its own (`BASE.xN`, kept when the sender drops it), and the frame
//! carries that segment's name with [`OUT_OF_LINE`] set in `kind`; the receiver copies it
//! out and unlinks the name. Whatever a frame says is checked before it is used: a length
//! that does not fit the frame or the segment is [`Error::Corrupt`], and nothing is
//! allocated for more bytes than are there.

use bytemuck::{Pod, Zeroable};

use crate::channel::frames;
use crate::error::{Error, Result};
use crate::segment::{Options, Segment};

/// Parent to worker: run the items of the body with task `fp`; `seq` names the call.
pub(crate) const CALL: u32 = 1;
/// Parent to worker: exit after the calls before this one.
pub(crate) const STOP: u32 = 2;
/// Parent to worker: the first message; run the initializer `fp` (0: none) with the one
/// item of the body, then answer [`READY`] or [`INIT_FAILED`].
pub(crate) const INIT: u32 = 3;
/// Worker to parent: the results of call `seq`, one item per item of the call.
pub(crate) const REPLY: u32 = 16;
/// Worker to parent: initialised; calls may come.
pub(crate) const READY: u32 = 17;
/// Worker to parent: the initializer failed (one item: the status and its message); the
/// worker exits.
pub(crate) const INIT_FAILED: u32 = 18;
/// Flag in `kind`: the body is the name of a segment that holds it.
pub(crate) const OUT_OF_LINE: u32 = 1 << 16;

/// Item status: the bytes are the encoded value.
pub(crate) const OK: u8 = 0;
/// Item status: the function panicked; the bytes are the message.
pub(crate) const PANICKED: u8 = 1;
/// Item status: an argument or result could not be encoded or decoded; the message.
pub(crate) const CODEC: u8 = 2;
/// Item status: the worker cannot run this task; the message says why.
pub(crate) const REFUSED: u8 = 3;

/// The fixed start of every message.
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub(crate) struct Head {
    pub(crate) kind: u32,
    pub(crate) count: u32,
    pub(crate) seq: u64,
    pub(crate) fp: u64,
    /// Body bytes (for an out-of-line body: its length in the segment).
    pub(crate) len: u64,
}

const HEAD: usize = size_of::<Head>();
const _: () = assert!(HEAD == 32);

/// The longest out-of-line body we accept (1 TiB): a bound on what a corrupt length can
/// make us map, never an allocation (we allocate what the segment holds).
const MAX_BODY: u64 = 1 << 40;

/// A message being built: the head's room, then the body.
#[derive(Debug)]
pub(crate) struct Builder {
    buf: Vec<u8>,
    count: u32,
}

impl Builder {
    pub(crate) fn new() -> Builder {
        Builder {
            buf: vec![0; HEAD],
            count: 0,
        }
    }

    /// Empties it for the next message, keeping the allocation.
    pub(crate) fn clear(&mut self) {
        self.buf.truncate(HEAD);
        self.count = 0;
    }

    /// Appends an item whose bytes `fill` writes (appending to the buffer it is given);
    /// `fill` returns the item's status.
    pub(crate) fn item(&mut self, fill: impl FnOnce(&mut Vec<u8>) -> u8) {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 5]);
        let status = fill(&mut self.buf);
        // `fill` only appends; should it have cut into the prefix, restore it.
        if self.buf.len() < at + 5 {
            self.buf.resize(at + 5, 0);
        }
        let len = (self.buf.len() - at - 5) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
        self.buf[at + 4] = status;
        self.count += 1;
    }

    /// Appends an item of `bytes` with `status`.
    pub(crate) fn item_bytes(&mut self, status: u8, bytes: &[u8]) {
        self.item(|b| {
            b.extend_from_slice(bytes);
            status
        });
    }

    /// The finished frame: the head written in front of the body.
    pub(crate) fn finish(&mut self, kind: u32, seq: u64, fp: u64) -> &[u8] {
        let head = Head {
            kind,
            count: self.count,
            seq,
            fp,
            len: (self.buf.len() - HEAD) as u64,
        };
        self.buf[..HEAD].copy_from_slice(bytemuck::bytes_of(&head));
        &self.buf
    }
}

/// A frame of `kind` whose body is `body` (with `count` items), as bytes.
pub(crate) fn frame(kind: u32, count: u32, seq: u64, fp: u64, body: &[u8]) -> Vec<u8> {
    let head = Head {
        kind,
        count,
        seq,
        fp,
        len: body.len() as u64,
    };
    let mut v = Vec::with_capacity(HEAD + body.len());
    v.extend_from_slice(bytemuck::bytes_of(&head));
    v.extend_from_slice(body);
    v
}

/// The largest frame sent inline on `tx`: a quarter of the ring, so that several calls
/// are in flight at once; larger bodies go out of line.
pub(crate) fn inline_limit(tx: &frames::Sender) -> usize {
    tx.max_frame() / 4
}

/// The frame to send for `frame_bytes`: itself (`None`), or (if longer than `limit`) a
/// frame naming a new segment, named `ool_name()`, that holds the body, which the receiver
/// removes; with that name.
pub(crate) fn spill(
    frame_bytes: &[u8],
    limit: usize,
    ool_name: impl FnOnce() -> String,
) -> Result<Option<(Vec<u8>, String)>> {
    if frame_bytes.len() <= limit {
        return Ok(None);
    }
    let ool_name = &ool_name();
    let head: Head = bytemuck::pod_read_unaligned(&frame_bytes[..HEAD]);
    let body = &frame_bytes[HEAD..];
    let seg = Segment::create(ool_name, body.len(), &Options::new().keep(true))?;
    // SAFETY: the segment is ours alone (just created, its name not yet sent anywhere)
    // and `body.len()` bytes long; the source is our own buffer.
    unsafe { std::ptr::copy_nonoverlapping(body.as_ptr(), seg.as_ptr(), body.len()) };
    let mut out = frame(
        head.kind | OUT_OF_LINE,
        head.count,
        head.seq,
        head.fp,
        ool_name.as_bytes(),
    );
    // The head gives the body's length in the segment, not the name's.
    let head = Head {
        kind: head.kind | OUT_OF_LINE,
        ..head
    };
    out[..HEAD].copy_from_slice(bytemuck::bytes_of(&head));
    Ok(Some((out, ool_name.clone())))
}

/// A received message: its head and body, checked to agree.
#[derive(Debug)]
pub(crate) struct Msg {
    pub(crate) head: Head,
    /// The body is `buf[at..]` (the received frame, not copied again).
    buf: Vec<u8>,
    at: usize,
}

impl Msg {
    /// Parses a received frame; fetches an out-of-line body (and removes its segment),
    /// which must be named `ool_prefix` and a number: a peer cannot make us open, let alone
    /// remove, any other segment.
    pub(crate) fn parse(frame: Vec<u8>, ool_prefix: &str) -> Result<Msg> {
        if frame.len() < HEAD {
            return Err(Error::corrupt(format!(
                "a process-layer message of {} bytes, shorter than its head",
                frame.len()
            )));
        }
        let head: Head = bytemuck::pod_read_unaligned(&frame[..HEAD]);
        let body_len = (frame.len() - HEAD) as u64;
        if head.kind & OUT_OF_LINE == 0 {
            if head.len != body_len {
                return Err(Error::corrupt(format!(
                    "a message says its body has {} bytes, the frame carries {body_len}",
                    head.len
                )));
            }
            return Ok(Msg {
                head,
                buf: frame,
                at: HEAD,
            });
        }
        let name = std::str::from_utf8(&frame[HEAD..])
            .ok()
            .filter(|n| {
                n.strip_prefix(ool_prefix)
                    .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
            })
            .ok_or_else(|| {
                Error::corrupt("an out-of-line message names a segment not of its channel")
            })?;
        let body = fetch(name, head.len)?;
        Ok(Msg {
            head: Head {
                kind: head.kind & !OUT_OF_LINE,
                ..head
            },
            buf: body,
            at: 0,
        })
    }

    /// The kind, without flags.
    pub(crate) fn kind(&self) -> u32 {
        self.head.kind
    }

    /// The items of the body, checked as they are read.
    pub(crate) fn items(&self) -> Items<'_> {
        Items {
            rest: &self.buf[self.at..],
            left: self.head.count,
        }
    }
}

/// Copies the out-of-line body in segment `name` (`len` bytes) and removes the segment.
fn fetch(name: &str, len: u64) -> Result<Vec<u8>> {
    let seg = Segment::open(name, &Options::new())?;
    // Remove the name first: whatever happens next, nothing is left behind.
    let _ = crate::admin::unlink(name);
    if len > MAX_BODY || len > seg.len() as u64 {
        return Err(Error::corrupt(format!(
            "an out-of-line message says {len} bytes; its segment holds {}",
            seg.len()
        )));
    }
    let n = len as usize;
    let mut v = Vec::with_capacity(n);
    // SAFETY: the segment is mapped for `seg.len() >= n` bytes; `v` has room for `n`; a
    // raw copy, so no reference is formed over bytes another process could still write.
    unsafe {
        std::ptr::copy_nonoverlapping(seg.as_ptr(), v.as_mut_ptr(), n);
        v.set_len(n);
    }
    Ok(v)
}

/// The items of a message body: `(status, bytes)`, or [`Error::Corrupt`] once (then the
/// iterator ends).
#[derive(Debug)]
pub(crate) struct Items<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for Items<'a> {
    type Item = Result<(u8, &'a [u8])>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let bad = |left: &mut u32| {
            *left = 0;
            Some(Err(Error::corrupt(
                "a process-layer message's items overrun its body",
            )))
        };
        if self.rest.len() < 5 {
            return bad(&mut self.left);
        }
        let len = u32::from_le_bytes(self.rest[..4].try_into().expect("4 bytes")) as usize;
        let status = self.rest[4];
        if self.rest.len() - 5 < len {
            return bad(&mut self.left);
        }
        let (item, rest) = self.rest[5..].split_at(len);
        self.rest = rest;
        Some(Ok((status, item)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_and_garbage_is_an_error() {
        let mut b = Builder::new();
        b.item_bytes(OK, b"abc");
        b.item(|v| {
            v.extend_from_slice(b"boom");
            PANICKED
        });
        let bytes = b.finish(REPLY, 7, 9).to_vec();
        let m = Msg::parse(bytes.clone(), "p.x").unwrap();
        assert_eq!((m.kind(), m.head.seq, m.head.fp), (REPLY, 7, 9));
        let items: Vec<_> = m.items().collect::<Result<_>>().unwrap();
        assert_eq!(items, [(OK, &b"abc"[..]), (PANICKED, &b"boom"[..])]);

        // A count larger than the items: one error, then the end.
        let mut lying = bytes.clone();
        lying[4] = 3;
        let m = Msg::parse(lying, "p.x").unwrap();
        let r: Vec<_> = m.items().collect();
        assert_eq!(r.len(), 3);
        assert!(matches!(r[2], Err(Error::Corrupt { .. })));
        // A body length that disagrees with the frame; a frame shorter than a head.
        let mut short = bytes.clone();
        short.pop();
        assert!(matches!(
            Msg::parse(short, "p.x"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            Msg::parse(vec![1; 10], "p.x"),
            Err(Error::Corrupt { .. })
        ));
        // An item length past the end.
        let mut long = bytes;
        long[32] = 200;
        let m = Msg::parse(long, "p.x").unwrap();
        assert!(m.items().any(|r| r.is_err()));
        // An out-of-line body that names a segment outside the channel: refused unopened.
        for name in ["orders.lock", "p.x", "p.x1/..", "p.xa"] {
            let f = frame(REPLY | OUT_OF_LINE, 0, 1, 1, name.as_bytes());
            assert!(
                matches!(Msg::parse(f, "p.x"), Err(Error::Corrupt { .. })),
                "{name}"
            );
        }
    }
}
