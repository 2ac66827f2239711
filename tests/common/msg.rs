//! Messages that show any damage, shared by the hostile-peer and soak tests:
//! (producer id, sequence number, length, checksum), then filler bytes derived from the
//! id and the sequence number; and a small reproducible random number generator.

/// The fixed-size message of spsc and mpmc: exactly the 32-byte header of a frame.
pub type Msg = [u64; 4];
pub const MSG_HDR: usize = 32;

pub fn mix(mut z: u64) -> u64 {
    // splitmix64's finaliser.
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn checksum(id: u64, seq: u64, len: u64) -> u64 {
    mix(id.rotate_left(48) ^ seq ^ len.rotate_left(24) ^ 0x5eed_c0ff_ee00_0001)
}

pub fn filler(id: u64, seq: u64, k: u64) -> u64 {
    mix(mix((id << 40) ^ seq) ^ k)
}

pub fn msg(id: u64, seq: u64) -> Msg {
    [id, seq, MSG_HDR as u64, checksum(id, seq, MSG_HDR as u64)]
}

/// Fills `buf` with message `seq` of producer `id` (its length is `buf.len()`, at least 32).
pub fn encode(buf: &mut [u8], id: u64, seq: u64) {
    let len = buf.len() as u64;
    let hdr = [id, seq, len, checksum(id, seq, len)];
    buf[..MSG_HDR].copy_from_slice(bytemuck::bytes_of(&hdr));
    for (k, chunk) in buf[MSG_HDR..].chunks_mut(8).enumerate() {
        let w = filler(id, seq, k as u64).to_le_bytes();
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
}

/// `(id, seq)` if `bytes` is an intact message.
pub fn decode(bytes: &[u8]) -> Option<(u64, u64)> {
    if bytes.len() < MSG_HDR {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
    let (id, seq, len, sum) = (word(0), word(1), word(2), word(3));
    if len != bytes.len() as u64 || sum != checksum(id, seq, len) {
        return None;
    }
    let filler_ok = bytes[MSG_HDR..]
        .chunks(8)
        .enumerate()
        .all(|(k, c)| c == &filler(id, seq, k as u64).to_le_bytes()[..c.len()]);
    filler_ok.then_some((id, seq))
}

/// xorshift64*: reproducible from a printed seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(mix(seed) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    t ^ (u64::from(std::process::id()) << 32)
}
