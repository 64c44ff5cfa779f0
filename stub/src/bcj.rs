//! Undoes elfpack's x86 branch filter (see `src/pack/bcj.rs` in elfpack).
//!
//! CALL/JMP rel32 (E8/E9) displacements within ±16 MiB were rewritten to
//! absolute targets, 25 bits sign-extended, so that repeated calls to one
//! function become repeated bytes for the compressor. The scan advances 5
//! bytes past every E8/E9 whether it was rewritten or not: the scan path then
//! only depends on opcode bytes, which the filter never changes, so encoder
//! and decoder visit the same positions.

pub fn decode(b: &mut [u8]) {
    let mut i = 0usize;
    while i + 5 <= b.len() {
        if b[i] & 0xFE != 0xE8 {
            i += 1;
            continue;
        }
        if b[i + 4] == 0 || b[i + 4] == 0xFF {
            let v = u32::from_le_bytes([b[i + 1], b[i + 2], b[i + 3], b[i + 4]]);
            let s = v.wrapping_sub(i as u32 + 5) & 0x01FF_FFFF;
            let s = if s & 0x0100_0000 != 0 {
                s | 0xFE00_0000
            } else {
                s
            };
            b[i + 1..i + 5].copy_from_slice(&s.to_le_bytes());
        }
        i += 5;
    }
}
