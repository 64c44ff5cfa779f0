//! The x86 branch filter: elfpack encodes before compressing (its
//! `src/pack` compiles this very file), the launcher decodes after
//! decompressing.
//!
//! Machine code calls the same functions from many places; as rel32
//! displacements those calls are all different bytes, as absolute targets
//! they repeat, and LZMA finds them. Only CALL/JMP (E8/E9) displacements
//! within ±16 MiB are rewritten (their top byte is 00 or FF, and so is the
//! rewritten value's, a 25-bit sign-extended address), which keeps the
//! filter reversible without side information. The scan advances 5 bytes
//! past every E8/E9, rewritten or not: the path then only depends on opcode
//! bytes, which the filter never changes, so both directions visit the same
//! positions. Positions count from the start of each chunk.

/// Displacements become absolute addresses.
#[allow(dead_code)] // the launcher only decodes
pub fn encode(b: &mut [u8]) {
    filter(b, u32::wrapping_add)
}

/// Undoes [`encode`].
#[allow(dead_code)] // elfpack only encodes (its tests decode)
pub fn decode(b: &mut [u8]) {
    filter(b, u32::wrapping_sub)
}

fn filter(b: &mut [u8], op: fn(u32, u32) -> u32) {
    let mut i = 0usize;
    while i + 5 <= b.len() {
        if b[i] & 0xFE != 0xE8 {
            i += 1;
            continue;
        }
        if b[i + 4] == 0 || b[i + 4] == 0xFF {
            let v = u32::from_le_bytes([b[i + 1], b[i + 2], b[i + 3], b[i + 4]]);
            let d = op(v, i as u32 + 5) & 0x01FF_FFFF;
            let d = if d & 0x0100_0000 != 0 {
                d | 0xFE00_0000
            } else {
                d
            };
            b[i + 1..i + 5].copy_from_slice(&d.to_le_bytes());
        }
        i += 5;
    }
}
