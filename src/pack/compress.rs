//! Payload compression, in chunks the launcher decodes in parallel.
//!
//! LZMA gives the smallest files but decodes at only tens of MB/s, which is
//! most of a first start. The archive is therefore cut into chunks at record
//! boundaries, each compressed on its own (in parallel here) and decoded on
//! its own (in parallel by the launcher). Files are dealt to chunks largest
//! first, each to the chunk with the fewest bytes so far, so the chunks come
//! out balanced; every chunk is its own LZMA stream, so matches across chunks
//! are lost, which costs about 1% against one stream (measured on curl's
//! closure). The number of chunks depends only on the input, never on the
//! packing machine, so the output stays reproducible.

use std::io::Write;

use anyhow::{Context, Result};

use super::{Compression, bcj};

/// liblzma's LZMA_PRESET_EXTREME flag (xz -e).
const PRESET_EXTREME: u32 = 0x8000_0000;

/// Archives below this size are one chunk: splitting them saves little time.
const SPLIT_ABOVE: usize = 1 << 20;

/// How many chunks `small` cuts an archive into. Two: the parallelism of
/// the smallest machines people run containers on, and each further chunk
/// costs size.
const SMALL_CHUNKS: usize = 2;

/// The codec ids in the trailer, shared with the launcher.
pub const CODEC_NONE: u32 = 0;
pub const CODEC_LZ4: u32 = 1;
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
        Compression::Small if raw_len > SPLIT_ABOVE => SMALL_CHUNKS,
        _ => 1,
    }
}

/// Deals items of the given sizes to `n` chunks, largest first to the
/// lightest chunk; returns each item's chunk.
pub fn deal(sizes: &[u64], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(sizes[i]), i));
    let mut load = vec![0u64; n.max(1)];
    let mut chunk = vec![0; sizes.len()];
    for i in order {
        let lightest = (0..load.len()).min_by_key(|&c| (load[c], c)).unwrap();
        load[lightest] += sizes[i];
        chunk[i] = lightest;
    }
    chunk
}

/// Compresses `raw[bounds[k]..bounds[k+1]]` as chunk k, all chunks at once.
pub fn compress(raw: &[u8], bounds: &[usize], c: Compression) -> Result<(u32, Vec<Chunk>)> {
    let codec = match c {
        Compression::None => CODEC_NONE,
        Compression::Fast => CODEC_LZ4,
        Compression::Small | Compression::Max => CODEC_LZMA_BCJ,
    };
    let pieces: Vec<&[u8]> = bounds.windows(2).map(|w| &raw[w[0]..w[1]]).collect();
    let chunks = std::thread::scope(|s| {
        let jobs: Vec<_> = pieces
            .iter()
            .map(|piece| s.spawn(move || compress_chunk(piece, c)))
            .collect();
        jobs.into_iter()
            .map(|j| j.join().expect("compression thread panicked"))
            .collect::<Result<Vec<_>>>()
    })?;
    Ok((codec, chunks))
}

fn compress_chunk(piece: &[u8], c: Compression) -> Result<Chunk> {
    let (props, data) = match c {
        Compression::None => (0, piece.to_vec()),
        Compression::Fast => (0, lz4_flex::block::compress(piece)),
        Compression::Small | Compression::Max => {
            let mut filtered = piece.to_vec();
            bcj::encode(&mut filtered);
            lzma(&filtered, c == Compression::Max)?
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
fn lzma(data: &[u8], extreme: bool) -> Result<(u8, Vec<u8>)> {
    use xz2::stream::{LzmaOptions, Stream};
    let preset = if extreme { 9 | PRESET_EXTREME } else { 6 };
    let mut opts = LzmaOptions::new_preset(preset)?;
    // A dictionary as large as the chunk: every earlier byte can be matched
    // (the launcher decodes into the whole chunk, so this costs it nothing).
    let dict = (data.len() as u64)
        .next_power_of_two()
        .clamp(1 << 16, 1 << 28) as u32;
    opts.dict_size(dict);
    let stream = Stream::new_lzma_encoder(&opts).context("cannot set up the LZMA encoder")?;
    let mut enc = xz2::write::XzEncoder::new_stream(Vec::new(), stream);
    enc.write_all(data)?;
    let mut out = enc.finish()?;
    anyhow::ensure!(out.len() >= 13, "the LZMA encoder wrote no header");
    let props = out[0];
    out.drain(..13);
    Ok((props, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::{stub_bcj, stub_lzma};

    fn round_trip(orig: &[u8], c: Compression) {
        let (_, chunks) = compress(orig, &[0, orig.len()], c).unwrap();
        let mut out = vec![0u8; orig.len()];
        assert!(stub_lzma::decode(
            &chunks[0].data,
            chunks[0].props,
            &mut out
        ));
        stub_bcj::decode(&mut out);
        assert!(
            out == orig,
            "the launcher's decoders do not restore the input"
        );
    }

    #[test]
    fn launcher_decodes_what_elfpack_encodes() {
        let libc = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        let mut x = 0x2545_f491_u32;
        let noise: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                [0xE8, 0xE9, 0, 0xFF, x as u8][(x >> 8) as usize % 5]
            })
            .collect();
        for input in [
            &libc[..],
            &noise,
            b"a",
            &[0xE8, 0, 0, 0, 0],
            &[7u8; 100_000],
        ] {
            round_trip(input, Compression::Small);
        }
        round_trip(&libc[..300_000], Compression::Max);
    }

    #[test]
    fn filter_changes_code_and_is_undone() {
        let libc = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        let mut b = libc.clone();
        bcj::encode(&mut b);
        assert_ne!(b, libc);
        stub_bcj::decode(&mut b);
        assert!(b == libc);
    }

    #[test]
    fn corrupt_or_short_streams_are_refused() {
        let libc = std::fs::read("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        let (_, chunks) = compress(&libc, &[0, libc.len()], Compression::Small).unwrap();
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
        stub_bcj::decode(&mut out);
        assert!(!ok || out != libc, "a flipped bit went unnoticed");
        assert!(!stub_lzma::decode(&c.data, 9 * 5 * 5, &mut out));
    }

    #[test]
    fn dealing_balances_chunks() {
        let sizes = [100, 90, 50, 40, 30, 5];
        let chunk = deal(&sizes, 2);
        let load = |k| -> u64 { (0..6).filter(|&i| chunk[i] == k).map(|i| sizes[i]).sum() };
        assert_eq!((load(0), load(1)), (170, 145));
    }
}
