//! The channels' shared-memory layouts as numbers: byte offsets and sizes computed from the
//! real structs (`offset_of!`, `size_of`), for tests and fuzz targets that write into a
//! channel's segment by hand (see `shmkit::__layout`). Offsets are from the start of the
//! body (after the segment header). Nothing here touches shared memory.

use std::mem::{offset_of, size_of};

use super::typed::Slot;
use super::{EndpointSlot, Header, Line, RECEIVER, SENDER};
use crate::__layout::offsets;

/// A slot of spsc and mpmc: the stamp, then the value.
pub mod slot {
    use super::*;

    /// Offset of the stamp (`u64`) in a slot.
    pub const STAMP: usize = offset_of!(Slot<u64>, stamp);

    /// Size of a slot carrying a `T`: slot `i` is at `header size + i * size::<T>()`.
    pub const fn size<T>() -> usize {
        size_of::<Slot<T>>()
    }
}

/// The header of spsc and frames channels; the ring follows it.
pub mod pair {
    use super::*;

    /// Size of the header: the ring follows.
    pub const SIZE: usize = size_of::<Header>();
    /// Size of one endpoint slot.
    pub const END_SIZE: usize = size_of::<EndpointSlot>();
    /// Index of the sender's endpoint slot.
    pub const SENDER: usize = super::SENDER;
    /// Index of the receiver's endpoint slot.
    pub const RECEIVER: usize = super::RECEIVER;

    offsets!(Header;
        /// The endpoint slots, sender then receiver.
        ENDS: [EndpointSlot; 2] = ends,
        /// The sender's published position.
        TAIL: u64 = tail,
        /// The receiver's published position.
        HEAD: u64 = head,
        DATA: u32 = data, SPACE: u32 = space,
    );
    offsets!(EndpointSlot;
        /// The liveness token.
        END_TOKEN: u32 = token,
        END_PID: u32 = pid,
        /// Whether an endpoint ever attached.
        END_EVER: u32 = ever,
    );
}

/// The mpmc header and registrations; the slots follow the header.
pub mod mpmc {
    use super::*;
    use crate::channel::mpmc::ring::{Header, Registration};

    /// Size of the header: the slots follow.
    pub const SIZE: usize = size_of::<Header>();
    /// Size of one registration line.
    pub const REG_SIZE: usize = size_of::<Line<Registration>>();
    /// The pending word of an endpoint that claims nothing.
    pub const IDLE: u64 = crate::channel::mpmc::ring::IDLE;

    offsets!(Header;
        TAIL: u64 = tail, HEAD: u64 = head, DATA: u32 = data, SPACE: u32 = space,
        LOST: u64 = lost,
        /// The sender registrations, one line each.
        SENDERS: [Line<Registration>; MAX_ENDPOINTS] = senders,
        /// The receiver registrations, one line each.
        RECEIVERS: [Line<Registration>; MAX_ENDPOINTS] = receivers,
    );
    offsets!(Registration;
        /// The endpoint slot (its fields as in [`super::pair`]).
        REG_END: EndpointSlot = end,
        PENDING: u64 = pending,
    );

    /// `(cap + 1).next_power_of_two()`: the distance between a slot's positions.
    pub const fn one_lap(cap: u64) -> u64 {
        (cap + 1).next_power_of_two()
    }
}

/// The frame ring's records: `[stamp][len | PAD][payload][padding]`.
pub mod frames {
    use crate::channel::frames::ring;

    /// Size of a record header (stamp and length words).
    pub const REC_HDR: usize = ring::REC_HDR as usize;
    /// Records start at multiples of this.
    pub const ALIGN: usize = ring::ALIGN as usize;
    /// Marks a padding record in the length word.
    pub const PAD: u64 = ring::PAD;
    /// Offset of the stamp (`u64`) in a record.
    pub const STAMP: usize = ring::STAMP_AT;
    /// Offset of the length word (`u64`) in a record.
    pub const LEN: usize = ring::LEN_AT;
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_what_the_formats_say() {
        assert_eq!((pair::TAIL, pair::HEAD, pair::SIZE), (128, 256, 640));
        assert_eq!((pair::END_SIZE, pair::END_EVER), (12, 8));
        assert_eq!((mpmc::LOST, mpmc::SENDERS, mpmc::PENDING), (512, 640, 16));
        assert_eq!(mpmc::SIZE, (5 + 2 * crate::mpmc::MAX_ENDPOINTS) * 128);
        assert_eq!((slot::STAMP, slot::size::<u64>()), (0, 16));
        assert_eq!((frames::REC_HDR, frames::LEN), (16, 8));
    }
}
