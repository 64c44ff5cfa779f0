//! The payload's integrity check, computed by elfpack (its `src/emit/single_file`
//! compiles this very file) and verified by the launcher before it decodes
//! anything.
//!
//! It runs over every packed byte on every first start, so it works a word
//! at a time (FxHash's step: rotate, xor, multiply), several times faster
//! than a byte-wise FNV-1a. It catches truncation and corruption; it is
//! not meant to stop a forger, who could as well rewrite the whole file.

const K: u64 = 0x517c_c1b7_2722_0a95;

pub fn checksum(data: &[u8]) -> u64 {
    let step = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(K);
    let words = data.chunks_exact(8);
    let tail = words.remainder();
    let mut h = step(0, data.len() as u64);
    for w in words {
        let mut a = [0u8; 8];
        a.copy_from_slice(w);
        h = step(h, u64::from_le_bytes(a));
    }
    let mut a = [0u8; 8];
    a[..tail.len()].copy_from_slice(tail);
    // A final rotate-multiply spreads the last word's high bits.
    step(step(h, u64::from_le_bytes(a)), 0)
}
