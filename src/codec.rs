//! How typed values cross a process boundary as bytes: the [`Codec`] trait and its default,
//! [`Postcard`].
//!
//! The process layer (task arguments and results) encodes with a codec; so will the
//! serde-typed queues. A codec is a zero-sized type: which one a program uses is part of
//! the types, and its [`Codec::ID`] goes into the fingerprints that keep two programs that
//! disagree about the encoding from exchanging garbage.
//!
//! Decoding is the side that meets untrusted bytes (a peer process wrote them): a codec
//! must return an error, never panic, on any input, and must not allocate more than the
//! input can justify. Postcard meets both: every length it reads is checked against the
//! bytes that remain before anything is allocated.
//!
//! This module touches no shared memory.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// A way to turn values into bytes and back.
///
/// ```
/// use shmkit::codec::{Codec, Postcard};
/// let mut buf = Vec::new();
/// Postcard::encode(&("A".to_string(), 7u32), &mut buf)?;
/// let (s, n): (String, u32) = Postcard::decode(&buf)?;
/// assert_eq!((s.as_str(), n), ("A", 7));
/// assert!(Postcard::decode::<(String, u32)>(&buf[..1]).is_err()); // truncated: an error
/// # Ok::<(), shmkit::Error>(())
/// ```
pub trait Codec: Send + Sync + 'static {
    /// A number naming the codec and its version, recorded in fingerprints.
    const ID: u32;

    /// Appends the encoding of `value` to `out`. [`Error::Codec`] if the value cannot be
    /// encoded (what was appended before the failure is left for the caller to truncate).
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()>;

    /// Decodes one value that fills `bytes` exactly. [`Error::Codec`] on any input that is
    /// not such an encoding; never a panic.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T>;
}

/// [postcard](https://docs.rs/postcard): compact (varints, no field names), stable wire
/// format (1.x), bounded allocation on decode. The default codec.
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

impl Codec for Postcard {
    const ID: u32 = 0x7063_0001; // "pc", format 1

    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
        // Appends to the caller's buffer, which it reuses from message to message.
        match postcard::to_extend(value, Append(out)) {
            Ok(_) => Ok(()),
            Err(e) => Err(Error::Codec {
                what: format!("cannot encode a {}: {e}", std::any::type_name::<T>()),
            }),
        }
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
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
}

/// A fingerprint of values encoded with codec `C`: FNV-1a over `parts` (type names, a
/// task's name), each followed by a 0xff separator, then the codec's id. Two programs that
/// agree on the parts and the codec agree on the fingerprint.
pub(crate) fn fingerprint<C: Codec>(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let id = C::ID.to_le_bytes();
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
            Postcard::encode(&Unsized, &mut buf),
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
        assert!(Postcard::decode::<Vec<u64>>(&bytes).is_err());
        assert!(Postcard::decode::<String>(&[3, 0xff, 0xfe, 0xfd]).is_err()); // not UTF-8
        assert!(Postcard::decode::<u8>(&[1, 2]).is_err()); // trailing bytes
    }
}
