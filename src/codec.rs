//! How typed values cross a process boundary as bytes: the [`Codec`] trait, its default
//! [`Postcard`], and [`Pod`] for plain-old-data items, which skips serialization.
//!
//! The process layer (task arguments and results) and the serde-typed collections encode
//! with [`Postcard`]; a [`Queue`](crate::Queue) takes its codec as its second type
//! parameter (`Queue<T>` is `Queue<T, Postcard>`; `Queue<T, codec::Pod>` copies the bytes
//! of a `bytemuck::Pod` item as they are). A codec is a zero-sized type: which one a
//! program uses is part of the types, and its [`Codec::ID`] goes into the fingerprints that
//! keep two programs that disagree about the encoding from exchanging garbage (a queue of
//! `u64` opened with the other codec is [`Error::LayoutMismatch`]).
//!
//! The trait is generic over the item type, `Codec<T>`, so that a codec can ask of `T`
//! what it needs: serde's traits for [`Postcard`], `bytemuck::Pod` for [`Pod`].
//!
//! Decoding is the side that meets untrusted bytes (a peer process wrote them): a codec
//! must return an error, never panic, on any input, and must not allocate more than the
//! input can justify. Postcard meets both: every length it reads is checked against the
//! bytes that remain before anything is allocated. [`Pod`] allocates nothing and takes
//! exactly `size_of::<T>()` bytes, which any bit pattern fills validly.
//!
//! This module touches no shared memory.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// A way to turn values of `T` into bytes and back.
///
/// ```
/// use shmkit::codec::{Codec, Postcard};
/// let mut buf = Vec::new();
/// Postcard::encode(&("A".to_string(), 7u32), &mut buf)?;
/// let (s, n): (String, u32) = Postcard::decode(&buf)?;
/// assert_eq!((s.as_str(), n), ("A", 7));
/// // Truncated: an error.
/// assert!(<Postcard as Codec<(String, u32)>>::decode(&buf[..1]).is_err());
/// # Ok::<(), shmkit::Error>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot encode and decode a `{T}`",
    note = "`Postcard` (the default) takes any `T: Serialize + DeserializeOwned`; \
            `codec::Pod` any `T: bytemuck::Pod`"
)]
pub trait Codec<T: ?Sized>: Send + Sync + 'static {
    /// A number naming the codec and its version, recorded in fingerprints. Two codecs
    /// (or two versions of one whose encodings differ) must not share one.
    const ID: u32;

    /// Appends the encoding of `value` to `out`. [`Error::Codec`] if the value cannot be
    /// encoded (what was appended before the failure is left for the caller to truncate).
    fn encode(value: &T, out: &mut Vec<u8>) -> Result<()>;

    /// Decodes one value that fills `bytes` exactly. [`Error::Codec`] on any input that is
    /// not such an encoding; never a panic.
    fn decode(bytes: &[u8]) -> Result<T>
    where
        T: Sized;
}

/// [`Postcard`]'s [`Codec::ID`]: also the codec of task and collection fingerprints.
pub(crate) const POSTCARD_ID: u32 = 0x7063_0001; // "pc", format 1

/// [postcard](https://docs.rs/postcard): compact (varints, no field names), stable wire
/// format (1.x), bounded allocation on decode. The default codec, for any
/// `Serialize + DeserializeOwned` type.
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

impl<T: Serialize + DeserializeOwned> Codec<T> for Postcard {
    const ID: u32 = POSTCARD_ID;

    fn encode(value: &T, out: &mut Vec<u8>) -> Result<()> {
        postcard_encode(value, out)
    }

    fn decode(bytes: &[u8]) -> Result<T> {
        postcard_decode(bytes)
    }
}

/// [`Postcard`]'s encoding, for unsized values too (a dictionary's `&str` key), which the
/// trait's impl cannot take: it decodes too, which needs `T: Sized`.
pub(crate) fn postcard_encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    // Appends to the caller's buffer, which it reuses from message to message.
    match postcard::to_extend(value, Append(out)) {
        Ok(_) => Ok(()),
        Err(e) => Err(Error::Codec {
            what: format!("cannot encode a {}: {e}", std::any::type_name::<T>()),
        }),
    }
}

/// [`Postcard`]'s decoding, for types that are only decoded here (a reply's result),
/// which the trait's impl would also ask to be `Serialize`.
pub(crate) fn postcard_decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(Error::Codec {
            what: format!(
                "{} trailing bytes after a {}",
                rest.len(),
                std::any::type_name::<T>()
            ),
        }),
        Err(e) => Err(Error::Codec {
            what: format!(
                "cannot decode a {} from {} bytes: {e}",
                std::any::type_name::<T>(),
                bytes.len()
            ),
        }),
    }
}

/// Plain-old-data items as their bytes: no serialization, for any
/// [`bytemuck::Pod`](trait@bytemuck::Pod) type (numbers, arrays of them, `#[repr(C)]`
/// structs without padding). The encoding is the value's `size_of::<T>()` bytes in
/// this machine's byte order, which is all a queue between processes of one machine
/// needs; decoding takes exactly that many bytes at any alignment, so any input is a
/// value or [`Error::Codec`] (a wrong length), never a panic, and allocates nothing.
///
/// Named after the bound it asks of `T`; where `bytemuck::Pod` is in scope too, write it
/// `codec::Pod`. For typed slots written and read in place (no copy into a buffer at
/// all), see [`mpmc`](crate::mpmc).
///
/// ```
/// use shmkit::bytemuck::{Pod, Zeroable};
/// use shmkit::codec::{self, Codec};
/// use shmkit::Queue;
///
/// #[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
/// #[bytemuck(crate = "shmkit::bytemuck")]
/// #[repr(C)]
/// struct Tick {
///     price: f64,
///     qty: u32,
///     venue: u32,
/// }
///
/// # let name = shmkit::__private::test_name("doc-podcodec");
/// let mut q = Queue::<Tick, codec::Pod>::create(&name, 64)?;
/// let mut other = Queue::<Tick, codec::Pod>::open(&name)?; // usually in another process
/// let t = Tick { price: 101.5, qty: 3, venue: 7 };
/// q.put(&t)?;
/// assert_eq!(other.get()?, t);
///
/// // The codec alone: 16 bytes, and a wrong length is an error, not a panic.
/// let mut buf = Vec::new();
/// codec::Pod::encode(&t, &mut buf)?;
/// assert_eq!(buf.len(), 16);
/// assert!(<codec::Pod as Codec<Tick>>::decode(&buf[..15]).is_err());
/// # Ok::<(), shmkit::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Pod;

impl<T: bytemuck::Pod> Codec<T> for Pod {
    const ID: u32 = 0x706f_0001; // "po", format 1

    fn encode(value: &T, out: &mut Vec<u8>) -> Result<()> {
        out.extend_from_slice(bytemuck::bytes_of(value));
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<T> {
        if bytes.len() != size_of::<T>() {
            return Err(Error::Codec {
                what: format!(
                    "a {} is {} bytes, not {}",
                    std::any::type_name::<T>(),
                    size_of::<T>(),
                    bytes.len()
                ),
            });
        }
        // Unaligned: the bytes come from a buffer of `u8`s.
        Ok(bytemuck::pod_read_unaligned(bytes))
    }
}

/// A fingerprint of values encoded with the codec whose [`Codec::ID`] is `codec`: FNV-1a
/// over `parts` (type names, a task's name), each followed by a 0xff separator, then the
/// codec's id. Two programs that agree on the parts and the codec agree on the
/// fingerprint.
pub(crate) fn fingerprint(codec: u32, parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let id = codec.to_le_bytes();
    for part in parts.iter().map(|p| p.as_bytes()).chain([&id[..]]) {
        for &b in part.iter().chain(&[0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Postcard's `to_extend` output, appending to a borrowed buffer.
struct Append<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Append<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_encode_leaves_the_buffer_usable() {
        // postcard cannot encode a sequence of unknown length (an iterator without a size
        // hint through `collect_seq`).
        struct Unsized;
        impl Serialize for Unsized {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.collect_seq((0..3u8).filter(|_| true))
            }
        }
        let mut buf = vec![1, 2];
        assert!(matches!(
            postcard_encode(&Unsized, &mut buf),
            Err(Error::Codec { .. })
        ));
        assert_eq!(buf[..2], [1, 2]); // what was there stays
        buf.truncate(2);
        Postcard::encode(&5u8, &mut buf).unwrap();
        assert_eq!(buf, [1, 2, 5]);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic_nor_a_huge_allocation() {
        // A length prefix of ~2^63 followed by nothing: refused before allocating.
        let bytes = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(<Postcard as Codec<Vec<u64>>>::decode(&bytes).is_err());
        // Not UTF-8.
        assert!(<Postcard as Codec<String>>::decode(&[3, 0xff, 0xfe, 0xfd]).is_err());
        assert!(<Postcard as Codec<u8>>::decode(&[1, 2]).is_err()); // trailing bytes
    }

    #[test]
    fn pod_takes_exactly_its_size_at_any_alignment_and_else_is_an_error() {
        let v = [1u64, u64::MAX, 3];
        let mut buf = vec![0xaa]; // what was there stays; the value starts misaligned
        Pod::encode(&v, &mut buf).unwrap();
        assert_eq!(buf.len(), 1 + 24);
        assert_eq!(<Pod as Codec<[u64; 3]>>::decode(&buf[1..]).unwrap(), v);
        for bad in [&buf[..0], &buf[1..24], &buf[..]] {
            assert!(matches!(
                <Pod as Codec<[u64; 3]>>::decode(bad),
                Err(Error::Codec { .. })
            ));
        }
        // A zero-sized item: no bytes, and only no bytes.
        assert!(<Pod as Codec<()>>::decode(&[]).is_ok());
        assert!(<Pod as Codec<()>>::decode(&[0]).is_err());
    }

    #[test]
    fn the_codecs_have_distinct_ids_so_distinct_fingerprints() {
        let (pc, pod) = (<Postcard as Codec<u64>>::ID, <Pod as Codec<u64>>::ID);
        assert_ne!(pc, pod);
        assert_ne!(fingerprint(pc, &["u64"]), fingerprint(pod, &["u64"]));
    }
}
