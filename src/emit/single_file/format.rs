//! The single-file format, shared with the launcher in `stub/src/main.rs`.
//!
//! ```text
//! [stub ELF][payload = chunk 0 .. chunk n-1, chunk table][trailer, 64 bytes]
//! trailer: "ELFPACK3" | payload_off u64 | payload_len u64 | raw_len u64
//!          | codec u32 (0 none, 1 LZ4 block, 2 LZMA; 1 and 2 after the x86 filter)
//!          | chunk count u32 | checksum of the chunk table u64
//!          | cache key: 16 bytes of SHA-256(archive)
//! chunk table: per chunk, comp_len u64 | raw_len u64 | checksum of the
//!          compressed chunk u64 | LZMA properties u8 | 7 zero bytes
//! archive (the chunks' raw bytes, concatenated):
//!          "EPA1" | count u32 | program record index u32 | prefix length u32
//!          | interpreter slot u32 | rpath slot u32
//!          then `count` records: kind u8 (0 dir, 1 file, 2 symlink) | mode u32
//!          | path_len u32 | data_len u64 | relative path | data
//! ```
//! Chunks are consecutive pieces of the archive (a cut may fall inside a
//! record), so the launcher decodes them in parallel into one buffer, each
//! checked against its own checksum (stub/src/checksum.rs) first. The
//! program's PT_INTERP and each entry of its DT_RPATH hold a placeholder
//! prefix followed by an image path; the slots are the offsets of the two
//! strings in the program's data, and the launcher replaces every
//! placeholder in each string. The launcher overwrites the prefix with the
//! real cache directory. The record `.elfpack-entry` holds the path of the
//! program to exec, `.elfpack-preload` the libraries' paths in the bundle in
//! load order (for running from memory without a cache).

pub const MAGIC: &[u8; 8] = b"ELFPACK3";
pub const CHUNK_ENTRY_LEN: usize = 32;
pub const ARCHIVE_MAGIC: &[u8; 4] = b"EPA1";
pub const TRAILER_LEN: usize = 64;
pub const ENTRY_RECORD: &str = ".elfpack-entry";
/// The libraries' paths in the bundle, in load order, one a line, for the
/// launcher's memfd mode.
pub const PRELOAD_RECORD: &str = ".elfpack-preload";
/// `NAME=VALUE` lines the launcher adds to the environment unless NAME is
/// set; `${ELFPACK_BUNDLE}` in a value stands for the unpacked directory.
pub const ENV_RECORD: &str = ".elfpack-env";
/// For a `#!` script: the argv (one a line, `${ELFPACK_BUNDLE}` expanded)
/// the launcher execs, its first line being the program; the user's
/// arguments follow.
pub const ARGV_RECORD: &str = ".elfpack-argv";
/// For a static program: the placeholders the launcher rewrites in the
/// header's program record (this one), since the program has none.
pub const STATIC_RECORD: &str = ".elfpack-static";
/// More placeholders to overwrite, besides the header's two slots in the
/// entry program: (record index u32, offset in its data u32) pairs.
pub const PATCH_RECORD: &str = ".elfpack-patch";
/// For the launcher's in-memory mode, which preloads the libraries (then
/// known to the loader by SONAME only): the DT_NEEDED strings naming a
/// bundled library by another name, to overwrite with its SONAME.
/// Entries: record index u32 | offset in its data u32 | SONAME, NUL.
pub const ALIAS_RECORD: &str = ".elfpack-alias";
/// Where the launcher installs bundle files when it runs in a container
/// image's own root: lines `DIR<TAB>/ABS` (the bundle's DIR mirrors /ABS).
pub const INSTALL_RECORD: &str = ".elfpack-install";
/// The launcher's PT_NOTE becomes a PT_LOAD mapping the file from the
/// payload's page on at this address + file offset (stub/src/main.rs has
/// the same constant): the kernel maps it at exec, so the launcher reads
/// its payload without opening its own file, also when that file is
/// execute-only (mode 0711).
pub const PAYLOAD_VADDR: u64 = 1 << 40;

/// `stub` with its PT_NOTE turned into that PT_LOAD, for a file of
/// `file_len` bytes whose payload starts at `payload_off`.
pub fn map_payload(stub: &[u8], payload_off: u64, file_len: u64) -> Option<Vec<u8>> {
    const PT_LOAD: u32 = 1;
    const PT_NOTE: u32 = 4;
    const PF_R: u32 = 4;
    let mut out = stub.to_vec();
    let phoff = u64::from_le_bytes(stub.get(32..40)?.try_into().ok()?);
    let phnum = u16::from_le_bytes(stub.get(56..58)?.try_into().ok()?) as u64;
    let off = payload_off & !0xfff;
    for i in 0..phnum {
        let ph = (phoff + 56 * i) as usize;
        let entry = out.get_mut(ph..ph + 56)?;
        if u32::from_le_bytes(entry[..4].try_into().ok()?) != PT_NOTE {
            continue;
        }
        let len = file_len - off;
        for (at, v) in [
            (8, off),
            (16, PAYLOAD_VADDR + off),
            (24, PAYLOAD_VADDR + off),
            (32, len),
            (40, len),
            (48, 0x1000),
        ] {
            entry[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        entry[..4].copy_from_slice(&PT_LOAD.to_le_bytes());
        entry[4..8].copy_from_slice(&PF_R.to_le_bytes());
        return Some(out);
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir = 0,
    File = 1,
    Symlink = 2,
}

pub struct Record<'a> {
    pub kind: Kind,
    pub mode: u32,
    pub path: &'a str,
    pub data: &'a [u8],
}

pub struct ArchiveHeader {
    pub program: u32,
    pub prefix_len: u32,
    pub slots: [u32; 2],
}

/// The archive bytes.
pub fn archive(h: &ArchiveHeader, records: &[Record]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        records
            .iter()
            .map(|r| r.data.len() + r.path.len() + 17)
            .sum::<usize>()
            + 24,
    );
    out.extend_from_slice(ARCHIVE_MAGIC);
    for v in [
        records.len() as u32,
        h.program,
        h.prefix_len,
        h.slots[0],
        h.slots[1],
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for r in records {
        out.push(r.kind as u8);
        out.extend_from_slice(&r.mode.to_le_bytes());
        out.extend_from_slice(&(r.path.len() as u32).to_le_bytes());
        out.extend_from_slice(&(r.data.len() as u64).to_le_bytes());
        out.extend_from_slice(r.path.as_bytes());
        out.extend_from_slice(r.data);
    }
    out
}

pub struct Trailer {
    pub payload_off: u64,
    pub payload_len: u64,
    pub raw_len: u64,
    pub codec: u32,
    pub chunks: u32,
    pub table_hash: u64,
    pub key: [u8; 16],
}

impl Trailer {
    pub fn to_bytes(&self) -> [u8; TRAILER_LEN] {
        let mut t = [0u8; TRAILER_LEN];
        t[..8].copy_from_slice(MAGIC);
        t[8..16].copy_from_slice(&self.payload_off.to_le_bytes());
        t[16..24].copy_from_slice(&self.payload_len.to_le_bytes());
        t[24..32].copy_from_slice(&self.raw_len.to_le_bytes());
        t[32..36].copy_from_slice(&self.codec.to_le_bytes());
        t[36..40].copy_from_slice(&self.chunks.to_le_bytes());
        t[40..48].copy_from_slice(&self.table_hash.to_le_bytes());
        t[48..64].copy_from_slice(&self.key);
        t
    }
}

/// One chunk table entry.
pub fn chunk_entry(comp: &[u8], raw_len: u64, props: u8) -> [u8; CHUNK_ENTRY_LEN] {
    let mut e = [0u8; CHUNK_ENTRY_LEN];
    e[..8].copy_from_slice(&(comp.len() as u64).to_le_bytes());
    e[8..16].copy_from_slice(&raw_len.to_le_bytes());
    e[16..24].copy_from_slice(&super::checksum::checksum(comp).to_le_bytes());
    e[24] = props;
    e
}
