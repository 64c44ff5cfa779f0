//! The x86-64 branch and RIP-relative filter: elfpack encodes before
//! compressing (its `src/emit/single_file` compiles this very file), the launcher
//! decodes after decompressing.
//!
//! Machine code reaches the same functions and globals from many places; as
//! displacements those references are all different bytes, as absolute
//! addresses they repeat, and LZMA finds them. Two kinds of 32-bit
//! displacement are rewritten:
//! - CALL/JMP rel32 (E8/E9), as xz's x86 BCJ filter does;
//! - RIP-relative memory operands of one-byte opcodes (ModRM mod=00 rm=101:
//!   `lea`, `mov`, `cmp`, `call *`...), which position-independent code
//!   uses for every global, GOT entry and string. On the curl closure this
//!   makes the LZMA stream 2.6% smaller than E8/E9 alone. (Near Jcc made it
//!   larger: those targets are local, and relative is what repeats.)
//!
//! The rewrite must be undone without side information, so every choice the
//! scan makes depends only on bytes the filter never changes: the opcode
//! (and ModRM) at the scan position, which lie before any field a later
//! position could rewrite, and whether the field's top byte is 00 or FF.
//! Only displacements within ±16 MiB are rewritten, into a 25-bit
//! sign-extended address, so that top byte stays 00 or FF both ways. The
//! scan steps past every matched field, rewritten or not. Positions count
//! from the start of each chunk.

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

/// One-byte opcodes with a ModRM byte whose memory operand may be
/// RIP-relative and which are common in compiled code.
const fn takes_modrm(op: u8) -> bool {
    matches!(
        op,
        0x01 | 0x03
            | 0x09
            | 0x0B
            | 0x11
            | 0x13
            | 0x19
            | 0x1B
            | 0x21
            | 0x23
            | 0x29
            | 0x2B
            | 0x31
            | 0x33
            | 0x39
            | 0x3B
            | 0x63
            | 0x80..=0x8B | 0x8D | 0xC6 | 0xC7 | 0xF6 | 0xF7 | 0xFE | 0xFF
    )
}

/// [`takes_modrm`] as a bitmap, so the scan tests it without a branch.
const MODRM: [u64; 4] = {
    let mut t = [0u64; 4];
    let mut op = 0;
    while op < 256 {
        if takes_modrm(op as u8) {
            t[op >> 6] |= 1 << (op & 63);
        }
        op += 1;
    }
    t
};

fn filter(b: &mut [u8], op: fn(u32, u32) -> u32) {
    use core::arch::x86_64::*;
    let mut next = 0usize; // the first position not inside a field
    let mut i = 0usize;
    // Sixteen positions at a time (SSE2, which every x86-64 has): only
    // those whose byte could be E8/E9 or whose next byte could be a
    // RIP-relative ModRM, about one in twenty, are looked at one by one.
    while i + 17 <= b.len() {
        let mask = unsafe {
            let p = b.as_ptr().add(i);
            let v = _mm_loadu_si128(p as *const __m128i);
            let m = _mm_loadu_si128(p.add(1) as *const __m128i);
            let call = _mm_cmpeq_epi8(
                _mm_and_si128(v, _mm_set1_epi8(0xFEu8 as i8)),
                _mm_set1_epi8(0xE8u8 as i8),
            );
            let rip = _mm_cmpeq_epi8(
                _mm_and_si128(m, _mm_set1_epi8(0xC7u8 as i8)),
                _mm_set1_epi8(0x05),
            );
            _mm_movemask_epi8(_mm_or_si128(call, rip)) as u32
        };
        let mut bits = mask;
        while bits != 0 {
            let at = i + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if at >= next {
                next = step(b, at, op).unwrap_or(next);
            }
        }
        i += 16;
    }
    for at in i.max(next)..b.len() {
        if at >= next {
            next = step(b, at, op).unwrap_or(next);
        }
    }
}

/// Rewrites the field starting at `at` if it is one; returns where the scan
/// goes on after it.
fn step(b: &mut [u8], at: usize, op: fn(u32, u32) -> u32) -> Option<usize> {
    if at + 6 > b.len() {
        return None;
    }
    let (o, m) = (b[at], b[at + 1]);
    let call = o & 0xFE == 0xE8;
    let rip = (MODRM[(o >> 6) as usize] >> (o & 63)) & 1 != 0 && m & 0xC7 == 0x05;
    if !(call || rip) {
        return None;
    }
    let field = at + 2 - call as usize;
    let end = field + 4;
    if b[end - 1] == 0 || b[end - 1] == 0xFF {
        let v = u32::from_le_bytes([b[field], b[field + 1], b[field + 2], b[field + 3]]);
        let d = op(v, end as u32) & 0x01FF_FFFF;
        let d = if d & 0x0100_0000 != 0 {
            d | 0xFE00_0000
        } else {
            d
        };
        b[field..end].copy_from_slice(&d.to_le_bytes());
    }
    Some(end)
}

#[cfg(test)]
mod tests {
    /// The filter as first written, one position at a time: the vector
    /// scan must make exactly its choices.
    fn reference(b: &mut [u8]) {
        let mut i = 0;
        while i + 6 <= b.len() {
            let at = if b[i] & 0xFE == 0xE8 {
                i + 1
            } else if super::takes_modrm(b[i]) && b[i + 1] & 0xC7 == 0x05 {
                i + 2
            } else {
                i += 1;
                continue;
            };
            let end = at + 4;
            if b[end - 1] == 0 || b[end - 1] == 0xFF {
                let v = u32::from_le_bytes(b[at..end].try_into().unwrap());
                let d = v.wrapping_add(end as u32) & 0x01FF_FFFF;
                let d = if d & 0x0100_0000 != 0 {
                    d | 0xFE00_0000
                } else {
                    d
                };
                b[at..end].copy_from_slice(&d.to_le_bytes());
            }
            i = end;
        }
    }

    #[test]
    fn vector_scan_matches_the_reference_and_is_undone() {
        let libc = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        let mut x = 0x9E37_79B9_u32;
        let noise: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                [0xE8, 0xE9, 0x8B, 0x05, 0x0D, 0, 0xFF, x as u8][(x >> 8) as usize % 8]
            })
            .collect();
        for input in [&libc[..], &noise[..], &noise[..23], &[0xE8, 0, 0, 0, 0][..]] {
            // Every alignment of the 16-byte blocks against the data.
            for skip in 0..17.min(input.len()) {
                let orig = &input[skip..];
                let (mut fast, mut slow) = (orig.to_vec(), orig.to_vec());
                super::encode(&mut fast);
                reference(&mut slow);
                assert!(fast == slow, "differs from the reference (skip {skip})");
                super::decode(&mut fast);
                assert!(fast == orig, "not undone (skip {skip})");
            }
        }
    }
}
