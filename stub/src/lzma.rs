//! An LZMA (LZMA1 range coder) decoder that decodes straight into the
//! final buffer.
//!
//! Why our own: the launcher must stay small (a general xz decoder with its
//! container, CRC tables and sliding dictionary was most of the old stub) and
//! decode fast. Every chunk is decoded whole into memory, so the output
//! itself is the dictionary: no window, no copying out, and a match is a copy
//! inside one buffer. The stream is what liblzma's `.lzma` encoder writes
//! after its 13-byte header (elfpack drops the header and keeps lc/lp/pb in
//! the chunk table). Decoding stops when the output is full, so an end
//! marker, if present, is never read.
//!
//! The algorithm follows Igor Pavlov's public-domain LZMA specification
//! (LzmaSpec.cpp).

const PROB_INIT: u16 = 1024;
const STATES: usize = 12;
const POS_STATES_MAX: usize = 16;
const END_POS_MODEL: u32 = 14;
/// The largest lc + lp the decoder accepts (elfpack writes lc=3, lp=0).
pub const MAX_LC_LP: u32 = 4;

struct Rc<'a> {
    src: &'a [u8],
    pos: usize,
    range: u32,
    code: u32,
}

impl<'a> Rc<'a> {
    fn new(src: &'a [u8]) -> Option<Self> {
        if src.len() < 5 || src[0] != 0 {
            return None;
        }
        let code = u32::from_be_bytes([src[1], src[2], src[3], src[4]]);
        Some(Rc {
            src,
            pos: 5,
            range: u32::MAX,
            code,
        })
    }

    /// Past the end reads zeros; `overrun` tells the caller afterwards.
    #[inline(always)]
    fn normalize(&mut self) {
        if self.range < 1 << 24 {
            let b = self.src.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
            self.range <<= 8;
            self.code = (self.code << 8) | b as u32;
        }
    }

    fn overrun(&self) -> bool {
        self.pos > self.src.len()
    }

    /// Branch-free: the bit is as good as random to the CPU's predictor,
    /// and selecting with masks is what makes this loop fast even when the
    /// launcher is optimised for size.
    #[inline(always)]
    fn bit(&mut self, p: &mut u16) -> u32 {
        let prob = *p as u32;
        let bound = (self.range >> 11) * prob;
        let one = (self.code >= bound) as u32;
        let mask = 0u32.wrapping_sub(one);
        self.range = (bound & !mask) | (self.range.wrapping_sub(bound) & mask);
        self.code = self.code.wrapping_sub(bound & mask);
        let zero_p = prob + ((2048 - prob) >> 5);
        let one_p = prob - (prob >> 5);
        *p = ((zero_p & !mask) | (one_p & mask)) as u16;
        self.normalize();
        one
    }

    #[inline(always)]
    fn tree(&mut self, probs: &mut [u16], bits: u32) -> u32 {
        let mut m = 1usize;
        for _ in 0..bits {
            m = (m << 1) | self.bit(&mut probs[m]) as usize;
        }
        m as u32 - (1 << bits)
    }

    fn reverse(&mut self, probs: &mut [u16], bits: u32) -> u32 {
        let mut m = 1usize;
        let mut sym = 0;
        for i in 0..bits {
            let b = self.bit(&mut probs[m]);
            m = (m << 1) | b as usize;
            sym |= b << i;
        }
        sym
    }

    fn direct(&mut self, bits: u32) -> u32 {
        let mut res = 0u32;
        for _ in 0..bits {
            self.range >>= 1;
            self.code = self.code.wrapping_sub(self.range);
            let t = 0u32.wrapping_sub(self.code >> 31);
            self.code = self.code.wrapping_add(self.range & t);
            self.normalize();
            res = (res << 1).wrapping_add(t.wrapping_add(1));
        }
        res
    }
}

struct Len {
    choice: u16,
    choice2: u16,
    low: [[u16; 8]; POS_STATES_MAX],
    mid: [[u16; 8]; POS_STATES_MAX],
    high: [u16; 256],
}

impl Len {
    const NEW: Len = Len {
        choice: PROB_INIT,
        choice2: PROB_INIT,
        low: [[PROB_INIT; 8]; POS_STATES_MAX],
        mid: [[PROB_INIT; 8]; POS_STATES_MAX],
        high: [PROB_INIT; 256],
    };

    #[inline(always)]
    fn decode(&mut self, rc: &mut Rc, pos_state: usize) -> usize {
        if rc.bit(&mut self.choice) == 0 {
            return rc.tree(&mut self.low[pos_state], 3) as usize;
        }
        if rc.bit(&mut self.choice2) == 0 {
            return 8 + rc.tree(&mut self.mid[pos_state], 3) as usize;
        }
        16 + rc.tree(&mut self.high, 8) as usize
    }
}

/// The adaptive probabilities: about 30 KiB, kept on the decoding thread's
/// stack.
struct Model {
    literal: [u16; 0x300 << MAX_LC_LP],
    is_match: [u16; STATES * POS_STATES_MAX],
    is_rep: [u16; STATES],
    is_rep_g0: [u16; STATES],
    is_rep_g1: [u16; STATES],
    is_rep_g2: [u16; STATES],
    is_rep0_long: [u16; STATES * POS_STATES_MAX],
    pos_slot: [[u16; 64]; 4],
    pos_special: [u16; 128],
    align: [u16; 16],
    len: Len,
    rep_len: Len,
}

/// Decodes `src` until `out` is full. `props` is the LZMA properties byte,
/// (pb * 5 + lp) * 9 + lc. Returns false on a corrupted or short stream.
pub fn decode(src: &[u8], props: u8, out: &mut [u8]) -> bool {
    let props = props as u32;
    let (lc, lp, pb) = (props % 9, props / 9 % 5, props / 45);
    if props >= 9 * 5 * 5 || lc + lp > MAX_LC_LP {
        return false;
    }
    let Some(mut rc) = Rc::new(src) else {
        return false;
    };
    let mut m = Model {
        literal: [PROB_INIT; 0x300 << MAX_LC_LP],
        is_match: [PROB_INIT; STATES * POS_STATES_MAX],
        is_rep: [PROB_INIT; STATES],
        is_rep_g0: [PROB_INIT; STATES],
        is_rep_g1: [PROB_INIT; STATES],
        is_rep_g2: [PROB_INIT; STATES],
        is_rep0_long: [PROB_INIT; STATES * POS_STATES_MAX],
        pos_slot: [[PROB_INIT; 64]; 4],
        pos_special: [PROB_INIT; 128],
        align: [PROB_INIT; 16],
        len: Len::NEW,
        rep_len: Len::NEW,
    };
    let pb_mask = (1usize << pb) - 1;
    let lp_mask = (1usize << lp) - 1;
    let mut state = 0usize;
    let mut reps = [0usize; 4];
    let mut pos = 0usize;
    let n = out.len();
    while pos < n {
        let pos_state = pos & pb_mask;
        if rc.bit(&mut m.is_match[(state << 4) + pos_state]) == 0 {
            let prev = if pos > 0 { out[pos - 1] as usize } else { 0 };
            let base = 0x300 * (((pos & lp_mask) << lc) + (prev >> (8 - lc)));
            let probs = &mut m.literal[base..base + 0x300];
            let mut sym = 1usize;
            if state >= 7 {
                // After a match: the byte at rep0 predicts this one, bit by
                // bit, until the first mismatch.
                let Some(&mb) = pos.checked_sub(reps[0] + 1).map(|i| &out[i]) else {
                    return false;
                };
                let mut mb = mb as usize;
                while sym < 0x100 {
                    let mbit = (mb >> 7) & 1;
                    mb <<= 1;
                    let b = rc.bit(&mut probs[((1 + mbit) << 8) + sym]) as usize;
                    sym = (sym << 1) | b;
                    if mbit != b {
                        break;
                    }
                }
            }
            while sym < 0x100 {
                sym = (sym << 1) | rc.bit(&mut probs[sym]) as usize;
            }
            out[pos] = sym as u8;
            pos += 1;
            state = if state < 4 {
                0
            } else if state < 10 {
                state - 3
            } else {
                state - 6
            };
            continue;
        }
        let len;
        if rc.bit(&mut m.is_rep[state]) != 0 {
            if pos == 0 {
                return false;
            }
            if rc.bit(&mut m.is_rep_g0[state]) == 0 {
                if rc.bit(&mut m.is_rep0_long[(state << 4) + pos_state]) == 0 {
                    // A single byte from rep0.
                    state = if state < 7 { 9 } else { 11 };
                    let Some(i) = pos.checked_sub(reps[0] + 1) else {
                        return false;
                    };
                    out[pos] = out[i];
                    pos += 1;
                    continue;
                }
            } else {
                let dist;
                if rc.bit(&mut m.is_rep_g1[state]) == 0 {
                    dist = reps[1];
                } else {
                    if rc.bit(&mut m.is_rep_g2[state]) == 0 {
                        dist = reps[2];
                    } else {
                        dist = reps[3];
                        reps[3] = reps[2];
                    }
                    reps[2] = reps[1];
                }
                reps[1] = reps[0];
                reps[0] = dist;
            }
            len = m.rep_len.decode(&mut rc, pos_state);
            state = if state < 7 { 8 } else { 11 };
        } else {
            reps[3] = reps[2];
            reps[2] = reps[1];
            reps[1] = reps[0];
            len = m.len.decode(&mut rc, pos_state);
            state = if state < 7 { 7 } else { 10 };
            let slot = rc.tree(&mut m.pos_slot[len.min(3)], 6);
            reps[0] = if slot < 4 {
                slot as usize
            } else {
                let bits = (slot >> 1) - 1;
                let base = (2 | (slot & 1)) << bits;
                if slot < END_POS_MODEL {
                    let off = (base - slot) as usize;
                    base as usize + rc.reverse(&mut m.pos_special[off..], bits) as usize
                } else {
                    let hi = rc.direct(bits - 4) << 4;
                    base as usize + hi as usize + rc.reverse(&mut m.align, 4) as usize
                }
            };
        }
        let len = len + 2;
        let dist = reps[0] + 1;
        if dist > pos || len > n - pos {
            // A distance before the start (or the end marker), or past the end.
            return false;
        }
        if dist >= len {
            out.copy_within(pos - dist..pos - dist + len, pos);
        } else {
            for i in pos..pos + len {
                out[i] = out[i - dist];
            }
        }
        pos += len;
    }
    !rc.overrun()
}
