//! Payload compression, in chunks the launcher decodes in parallel.
//!
//! LZMA gives the smallest files but decodes at only tens of MB/s, which is
//! most of a first start. The archive is therefore cut into chunks, each
//! compressed on its own (in parallel here) and decoded on its own (in
//! parallel by the launcher). Every chunk is its own LZMA stream, so
//! matches across chunks are lost: with preset 6 instead of 9e, that costs
//! 0.7-1.9% against `max` (git to hello.c); [`deal`] orders the files so that those
//! sharing strings sit on the same side of a cut, and [`cut`] places the
//! cuts where the decoding work is even, inside a file if need be (a C
//! program's closure is mostly libc). The number of chunks depends only on
//! the input, never on the packing machine, so the output stays
//! reproducible.

use std::io::Write;

use anyhow::{Context, Result};

use super::{Compression, bcj};
use crate::progress::Progress;

/// liblzma's LZMA_PRESET_EXTREME flag (xz -e).
const PRESET_EXTREME: u32 = 0x8000_0000;

/// Archives below this size are one chunk: splitting them saves little time.
const SPLIT_ABOVE: usize = 1 << 20;

/// How many chunks `balanced` and `fast` cut an archive into at least. Two:
/// the parallelism of the smallest machines people run containers on, and
/// each further LZMA chunk costs size (LZ4's 64 KiB window loses nothing).
const CHUNKS: usize = 2;

/// Big archives get a chunk per this many bytes (up to [`MAX_CHUNKS`]), so
/// that packing and the first start use more cores where there are more:
/// a chunk this size is several LZMA dictionaries long, so cutting it off
/// costs little.
const BYTES_PER_CHUNK: usize = 24 << 20;

/// Archives above this size (a big closure: ffmpeg's is 235 MiB) are
/// compressed with a shallower match search (see [`lzma`]): packing them
/// took minutes, and there the search depth is most of the time.
const BIG_ARCHIVE: usize = 64 << 20;

/// The launcher decodes at most this many chunks at once.
const MAX_CHUNKS: usize = 16;

/// The codec ids in the trailer, shared with the launcher.
pub const CODEC_NONE: u32 = 0;
pub const CODEC_LZ4_BCJ: u32 = 1;
pub const CODEC_LZMA_BCJ: u32 = 2;

pub struct Chunk {
    pub raw_len: u64,
    /// The LZMA properties byte (lc, lp, pb); 0 for other codecs.
    pub props: u8,
    pub data: Vec<u8>,
}

/// How many chunks to cut an archive of `raw_len` bytes into.
pub fn chunk_count(raw_len: usize, c: Compression) -> usize {
    match c {
        Compression::Balanced | Compression::Fast if raw_len > SPLIT_ABOVE => {
            (raw_len / BYTES_PER_CHUNK).clamp(CHUNKS, MAX_CHUNKS)
        }
        _ => 1,
    }
}

/// Deals files to `n` chunks. A chunk is its own LZMA stream, so a file
/// compresses best beside files that share byte strings with it: largest
/// first, each file goes to the chunk it shares the most with, among the
/// chunks it fits in without going past 5% over an even share of the
/// decoding work ([`decode_cost`]); ties and misfits go to the lightest
/// chunk. Sharing is estimated from sampled 8-byte strings ([`sketch`]). On
/// curl's closure this makes the file 0.5% smaller than dealing by size
/// alone (libcrypto, libgnutls, libc and libkrb5 end up in one chunk).
pub fn deal(files: &[&[u8]], n: usize) -> Vec<usize> {
    let n = n.max(1);
    if n == 1 {
        return vec![0; files.len()];
    }
    let sketches: Vec<Vec<u32>> = files.iter().map(|f| sketch(f)).collect();
    let costs: Vec<u64> = files.iter().map(|f| decode_cost(f)).collect();
    let cap = costs.iter().sum::<u64>().div_ceil(n as u64) * 21 / 20;
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(costs[i]), i));
    let mut load = vec![0u64; n];
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut chunk = vec![0; files.len()];
    for i in order {
        let cost = costs[i];
        let lightest = (0..n).min_by_key(|&c| (load[c], c)).unwrap();
        let best = (0..n)
            .filter(|&c| load[c] + cost <= cap)
            .max_by_key(|&c| {
                let shared: usize = members[c]
                    .iter()
                    .map(|&j| shared(&sketches[i], &sketches[j]))
                    .sum();
                (shared, std::cmp::Reverse(load[c]), std::cmp::Reverse(c))
            })
            .unwrap_or(lightest);
        load[best] += cost;
        members[best].push(i);
        chunk[i] = best;
    }
    chunk
}

/// Cuts `raw` into `n` pieces of about equal decoding work: the bounds,
/// from 0 to `raw.len()`. The work is estimated per 64 KiB block.
pub fn cut(raw: &[u8], n: usize) -> Vec<usize> {
    const BLOCK: usize = 64 << 10;
    let costs: Vec<u64> = raw.chunks(BLOCK).map(decode_cost).collect();
    let total: u64 = costs.iter().sum();
    let mut bounds = vec![0];
    let mut done = 0u64;
    for (b, cost) in costs.iter().enumerate() {
        done += cost;
        // Past the k-th n-th of the work: cut after this block.
        if (done * n as u64) / total.max(1) >= bounds.len() as u64 && bounds.len() < n {
            bounds.push(((b + 1) * BLOCK).min(raw.len()));
        }
    }
    bounds.push(raw.len());
    bounds.dedup();
    bounds
}

/// The launcher's time to decode `data`, in arbitrary units. LZMA spends
/// most of it per compressed bit and the rest per output byte; timed on
/// the chunks of hello.c and hello.cpp, about 39 ms per compressed MB and
/// 5 ms per output MB. The LZ4 size stands in for the LZMA size (their
/// ratio stays within 0.52-0.63 across hello.cpp's libraries) at a
/// hundredth of the cost: 0.57 x 39 : 5 is about 4 : 1.
fn decode_cost(data: &[u8]) -> u64 {
    4 * lz4_flex::block::compress(data).len() as u64 + data.len() as u64
}

/// A sample of the 8-byte strings in `data`: the hashes of those whose hash
/// is 0 modulo 64, sorted and deduplicated. Two files' samples overlap in
/// proportion to the strings they share.
fn sketch(data: &[u8]) -> Vec<u32> {
    let mut out: Vec<u32> = data
        .windows(8)
        .map(|w| {
            (u64::from_le_bytes(w.try_into().unwrap()).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32)
                as u32
        })
        .filter(|h| h % 64 == 0)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// How many hashes two sorted samples share.
fn shared(a: &[u32], b: &[u32]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// Compresses `raw[bounds[k]..bounds[k+1]]` as chunk k, all chunks at once.
pub fn compress(raw: &[u8], bounds: &[usize], c: Compression) -> Result<(u32, Vec<Chunk>)> {
    let codec = match c {
        Compression::None => CODEC_NONE,
        Compression::Fast => CODEC_LZ4_BCJ,
        Compression::Balanced | Compression::Max => CODEC_LZMA_BCJ,
    };
    let pieces: Vec<&[u8]> = bounds.windows(2).map(|w| &raw[w[0]..w[1]]).collect();
    let big = raw.len() > BIG_ARCHIVE;
    // As many encoders at once as there are cores (each holds its match
    // finder's memory), at least two; the biggest chunks first.
    let threads = std::thread::available_parallelism()
        .map_or(CHUNKS, |n| n.get())
        .max(CHUNKS)
        .min(pieces.len())
        .max(1);
    let mut order: Vec<usize> = (0..pieces.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(pieces[i].len()));
    let progress = match c {
        Compression::None => Progress::hidden(),
        _ => Progress::bytes("compressing", raw.len() as u64),
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new((0..pieces.len()).map(|_| None).collect::<Vec<_>>());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&i) = order.get(k) else { break };
                    let r = compress_chunk(pieces[i], c, big, &progress);
                    results.lock().expect("no thread panics holding it")[i] = Some(r);
                }
            });
        }
    });
    let chunks = results
        .into_inner()
        .expect("no thread panics holding it")
        .into_iter()
        .map(|r| r.expect("every chunk was compressed"))
        .collect::<Result<Vec<_>>>()?;
    Ok((codec, chunks))
}

fn compress_chunk(piece: &[u8], c: Compression, big: bool, progress: &Progress) -> Result<Chunk> {
    // Both codecs compress what the x86-64 filter makes of the chunk.
    let filtered = || {
        let mut f = piece.to_vec();
        bcj::encode(&mut f);
        f
    };
    let (props, data) = match c {
        Compression::None => (0, piece.to_vec()),
        Compression::Fast => {
            // liblz4's optimal-parsing (HC) level 9: a quarter smaller than
            // greedy LZ4, decoded as fast, packs at ~20 MB/s.
            let hc = lz4::block::CompressionMode::HIGHCOMPRESSION(9);
            let data = lz4::block::compress(&filtered(), Some(hc), false)
                .context("LZ4 compression failed")?;
            progress.inc(piece.len() as u64);
            (0, data)
        }
        Compression::Balanced | Compression::Max => {
            lzma(&filtered(), c == Compression::Max, big, progress)?
        }
    };
    Ok(Chunk {
        raw_len: piece.len() as u64,
        props,
        data,
    })
}

/// A raw LZMA stream: liblzma's `.lzma` output without its 13-byte header
/// (properties byte, dictionary size, length), whose properties byte is
/// returned beside the stream.
fn lzma(data: &[u8], extreme: bool, big: bool, progress: &Progress) -> Result<(u8, Vec<u8>)> {
    use xz2::stream::{LzmaOptions, Stream};
    let preset = if extreme { 9 | PRESET_EXTREME } else { 6 };
    let mut opts = LzmaOptions::new_preset(preset)?;
    // The launcher decodes into the whole chunk, so the dictionary costs it
    // nothing. `max` matches back across its whole stream; the parallel
    // chunks keep preset 6's 8 MiB, whose smaller match finder runs faster
    // with two encoders sharing the memory bus and, measured on curl, is
    // not larger.
    let most = if extreme { 1 << 28 } else { 1 << 23 };
    let dict = (data.len() as u64).next_power_of_two().clamp(1 << 16, most) as u32;
    opts.dict_size(dict);
    if !extreme {
        // Preset 6 stops extending a match at 64 bytes; at 32 it packs
        // curl's closure about 14% faster for 0.05% more bytes.
        opts.nice_len(32);
    }
    if big && !extreme {
        // The binary-tree match finder follows at most 4 candidates instead
        // of preset 6's 24: on a 16 MiB slice of ffmpeg's closure 1.5 times
        // as fast for 1.8% more bytes (measured with xz --lzma1 depth=4).
        opts.depth(4);
    }
    let stream = Stream::new_lzma_encoder(&opts).context("cannot set up the LZMA encoder")?;
    let mut enc = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
    // In slices, so a progress bar moves: the encoder keeps its state
    // between writes, the stream is the same.
    for slice in data.chunks(1 << 20) {
        enc.write_all(slice)?;
        progress.inc(slice.len() as u64);
    }
    let mut out = enc.finish()?;
    anyhow::ensure!(out.len() >= 13, "the LZMA encoder wrote no header");
    let props = out[0];
    out.drain(..13);
    Ok((props, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emit::single_file::stub_lzma;

    /// xorshift32: the same noise on every run.
    struct XorShift(u32);

    impl Iterator for XorShift {
        type Item = u32;
        fn next(&mut self) -> Option<u32> {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 17;
            self.0 ^= self.0 << 5;
            Some(self.0)
        }
    }

    fn round_trip(orig: &[u8], c: Compression) {
        let (_, chunks) = compress(orig, &[0, orig.len()], c).unwrap();
        let mut out = vec![0u8; orig.len()];
        let c0 = &chunks[0];
        if c == Compression::Fast {
            // The launcher's LZ4 decoder reads what liblz4 HC writes.
            let n = lz4_flex::block::decompress_into(&c0.data, &mut out).unwrap();
            assert_eq!(n, orig.len());
        } else {
            assert!(stub_lzma::decode(&c0.data, c0.props, &mut out));
        }
        bcj::decode(&mut out);
        assert!(
            out == orig,
            "the launcher's decoders do not restore the input"
        );
    }

    #[test]
    fn launcher_decodes_what_elfpack_encodes() {
        let libc = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        let noise: Vec<u8> = XorShift(0x2545_f491)
            .take(200_000)
            .map(|x| [0xE8, 0xE9, 0x8B, 0x05, 0, 0xFF, x as u8][(x >> 8) as usize % 7])
            .collect();
        for input in [
            &libc[..],
            &noise,
            b"a",
            &[0xE8, 0, 0, 0, 0],
            &[0x8B, 0x05, 0, 0, 0, 0],
            &[7u8; 100_000],
        ] {
            round_trip(input, Compression::Balanced);
            round_trip(input, Compression::Fast);
        }
        round_trip(&libc[..300_000], Compression::Max);
    }

    #[test]
    fn filter_changes_code_and_is_undone() {
        let libc = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        let mut b = libc.clone();
        bcj::encode(&mut b);
        assert_ne!(b, libc);
        bcj::decode(&mut b);
        assert!(b == libc);
    }

    #[test]
    fn corrupt_or_short_streams_are_refused() {
        let libc = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        let (_, chunks) = compress(&libc, &[0, libc.len()], Compression::Balanced).unwrap();
        let c = &chunks[0];
        let mut out = vec![0u8; libc.len()];
        assert!(stub_lzma::decode(&c.data, c.props, &mut out));
        assert!(!stub_lzma::decode(
            &c.data[..c.data.len() / 2],
            c.props,
            &mut out
        ));
        let mut bad = c.data.clone();
        bad[1000] ^= 0x55;
        let ok = stub_lzma::decode(&bad, c.props, &mut out);
        bcj::decode(&mut out);
        assert!(!ok || out != libc, "a flipped bit went unnoticed");
        assert!(!stub_lzma::decode(&c.data, 9 * 5 * 5, &mut out));
    }

    /// The launcher decodes a chunk only after its checksum matched, but a
    /// crafted file can carry matching checksums: no input may make the
    /// decoder index out of bounds (a panic here), loop forever or write
    /// past its output.
    #[test]
    fn decoder_survives_mutated_streams() {
        let libc = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        let piece = &libc[..200_000];
        let (_, chunks) = compress(piece, &[0, piece.len()], Compression::Balanced).unwrap();
        let c = &chunks[0];
        let mut rng = XorShift(0x9E37_79B9);
        let mut next = || rng.next().unwrap() as usize;
        let mut out = vec![0u8; piece.len()];
        for _ in 0..2_000 {
            let mut bad = c.data.clone();
            for _ in 0..1 + next() % 4 {
                let i = next() % bad.len();
                bad[i] = next() as u8;
            }
            let cut = bad.len() - next() % 64;
            let _ = stub_lzma::decode(&bad[..cut], c.props, &mut out);
        }
        let _ = stub_lzma::decode(&[0, 0xFF, 0xFF, 0xFF, 0xFF], c.props, &mut out);
    }

    #[test]
    fn cuts_even_out_the_work_not_the_bytes() {
        let mut raw: Vec<u8> = XorShift(0x2545_f491)
            .take(1 << 20)
            .map(|x| x as u8)
            .collect();
        raw.extend(std::iter::repeat_n(0u8, 3 << 20));
        // A megabyte of noise is most of the work; three of zeros are not.
        let b = cut(&raw, 2);
        assert_eq!(b.len(), 3, "{b:?}");
        assert!(b[0] == 0 && b[2] == raw.len(), "{b:?}");
        assert!(b[1] > 1 << 19 && b[1] < 1 << 20, "{b:?}");
        assert_eq!(cut(&raw, 1), [0, raw.len()]);
        assert_eq!(cut(b"tiny", 2), [0, 4]);
    }

    #[test]
    fn dealing_keeps_related_files_together_and_balanced() {
        let mut rng = XorShift(0x2545_f491);
        let mut noise = |n: usize| -> Vec<u8> { rng.by_ref().take(n).map(|x| x as u8).collect() };
        // Two families of files: each file is its family's text, varied.
        let (fam_a, fam_b) = (noise(60_000), noise(60_000));
        let mut files = Vec::new();
        for k in 0..4 {
            for fam in [&fam_a, &fam_b] {
                let mut f = fam.clone();
                f.extend(noise(1_000 * (k + 1)));
                files.push(f);
            }
        }
        let refs: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
        let chunk = deal(&refs, 2);
        for k in 0..4 {
            assert_eq!(chunk[2 * k], chunk[0], "family A together: {chunk:?}");
            assert_eq!(chunk[2 * k + 1], chunk[1], "family B together: {chunk:?}");
        }
        assert_ne!(chunk[0], chunk[1], "one family a chunk: {chunk:?}");
        // Unrelated files: balanced by size (noise all compresses alike),
        // as largest-first dealing does (here 170,000 against 145,000).
        let sizes = [100_000, 90_000, 50_000, 40_000, 30_000, 5_000];
        let files: Vec<Vec<u8>> = sizes.iter().map(|&n| noise(n)).collect();
        let refs: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
        let chunk = deal(&refs, 2);
        let load = |c| -> usize { (0..6).filter(|&i| chunk[i] == c).map(|i| sizes[i]).sum() };
        assert!(
            load(0).abs_diff(load(1)) <= 30_000,
            "{} vs {}",
            load(0),
            load(1)
        );
        // One file of noise and two that compress to nothing, all of one
        // size: by bytes the noise would share a chunk, by decoding work it
        // is a chunk's whole share.
        let files = [noise(100_000), vec![0; 100_000], vec![7; 100_000]];
        let refs: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
        let chunk = deal(&refs, 2);
        assert!(chunk[1] == chunk[2] && chunk[0] != chunk[1], "{chunk:?}");
    }
}
