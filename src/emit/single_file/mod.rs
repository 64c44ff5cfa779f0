//! Single-file output: `elfpack ./hello -o hello.packed`.
//!
//! The bundle is a prefix bundle ([`crate::plan::prefix`]) whose prefix is a
//! placeholder; the launcher (`stub/`) unpacks it into a per-user cache
//! directory, writes that directory into the program's PT_INTERP and
//! DT_RPATH, and execs the program.

/// The x86-64 branch and RIP-relative filter, one file for both directions
/// (the launcher's).
#[path = "../../../stub/src/bcj.rs"]
mod bcj;
#[path = "../../../stub/src/checksum.rs"]
mod checksum;
mod compress;
pub mod format;

/// The launcher's decoder, compiled into elfpack's tests so that the
/// encoder is tested against the decoder that will run it.
#[cfg(test)]
#[path = "../../../stub/src/lzma.rs"]
mod stub_lzma;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::plan::{Node, Plan};
use format::{ArchiveHeader, Kind, Record};

/// The launcher, built from `stub/` by build.rs.
pub static STUB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/elfpack-stub"));

/// Room reserved in PT_INTERP and DT_RPATH for the cache directory's path.
const PREFIX_LEN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compression {
    /// No compression: largest file.
    None,
    /// LZ4 (liblz4 HC) after the x86-64 filter, in two chunks: about 1.45
    /// times the size of `max`, decompresses in milliseconds.
    Fast,
    /// LZMA after the x86-64 filter, in chunks compressed and decompressed
    /// in parallel (two, or one per 24 MiB for big bundles, up to 16):
    /// 0.7-1.9% larger than `max`, packs in about half its time and
    /// first-starts in about two thirds.
    Balanced,
    /// LZMA at its strongest setting in one chunk: smallest file.
    Max,
}

/// The placeholder prefix the launcher replaces: an absolute path of
/// exactly PREFIX_LEN bytes.
pub fn placeholder_prefix() -> PathBuf {
    PathBuf::from(format!("/{}", "_".repeat(PREFIX_LEN - 1)))
}

pub struct PackStats {
    pub raw_bytes: u64,
    pub payload_bytes: u64,
    pub file_bytes: u64,
}

/// Writes the single file for `plan` (a prefix plan made with
/// [`placeholder_prefix`]) whose entrypoint is the program to run;
/// `launch` is what the launcher adds to its environment and argv.
pub fn write_single_file(
    plan: &Plan,
    load_order: &[String],
    launch: &crate::plan::bundle::Launch,
    out: &Path,
    compression: Compression,
    force: bool,
) -> Result<PackStats> {
    let prefix = placeholder_prefix();
    let [entry] = plan.entrypoint.as_slice() else {
        bail!("a single file runs one program: choose it with --entrypoint");
    };
    // The file the entry path leads to (through the bundle's symlinks).
    let entry_rel = plan
        .lookup(Path::new(entry))
        .and_then(|(real, _)| real.strip_prefix(&prefix).ok())
        .with_context(|| format!("--entrypoint {entry}: not one of the packed programs"))?
        .to_string_lossy()
        .into_owned();
    // Copied files are read here, all at once: the archive holds them all.
    let mut contents: Vec<Vec<u8>> = Vec::new();
    let mut read_at = std::collections::HashMap::new();
    for (path, node) in &plan.nodes {
        if let Node::File { src, .. } = node {
            let bytes =
                std::fs::read(src).with_context(|| format!("{}: cannot read", src.display()))?;
            read_at.insert(path.clone(), contents.len());
            contents.push(bytes);
        }
    }
    let mut records = Vec::new();
    let mut program_data = None;
    for (path, node) in &plan.nodes {
        let Ok(rel) = path.strip_prefix(&prefix) else {
            continue;
        };
        let rel = rel
            .to_str()
            .with_context(|| format!("{}: not UTF-8", path.display()))?;
        if rel.is_empty() {
            continue;
        }
        let (kind, mode, data): (Kind, u32, &[u8]) = match node {
            Node::Dir { mode } => (Kind::Dir, *mode, &[]),
            Node::Data { bytes, mode } => (Kind::File, *mode, bytes),
            Node::Symlink { target } => {
                (Kind::Symlink, 0o777, target.as_os_str().as_encoded_bytes())
            }
            Node::File { mode, .. } => (Kind::File, *mode, &contents[read_at[path]]),
        };
        if rel == entry_rel {
            program_data = Some(data);
        }
        records.push(Record {
            kind,
            mode,
            path: rel,
            data,
        });
    }
    let Some(program_data) = program_data else {
        bail!("{entry}: the program is not in the bundle")
    };
    // A static program has no PT_INTERP or RPATH for the launcher to point
    // at the cache: a stand-in record takes the placeholders the launcher
    // rewrites, and the launcher execs the program (named by the entry
    // record) as it is.
    let placeholder = prefix.as_os_str().as_encoded_bytes();
    let is_static = find(program_data, placeholder).is_none()
        && crate::elf::parse(program_data).is_ok_and(|i| {
            matches!(
                i.kind,
                crate::elf::Kind::Static | crate::elf::Kind::StaticPie
            )
        });
    let stand_in = [placeholder, b"/lib/ld-\0", placeholder, b"/lib\0"].concat();
    let (slots, more_sites) = if is_static {
        records.push(Record {
            kind: Kind::File,
            mode: 0o400,
            path: format::STATIC_RECORD,
            data: &stand_in,
        });
        let second = placeholder.len() + b"/lib/ld-\0".len();
        ([0, second as u32], Vec::new())
    } else {
        program_slots(program_data, entry)?
    };
    let program_record = if is_static {
        format::STATIC_RECORD
    } else {
        entry_rel.as_str()
    };
    records.push(Record {
        kind: Kind::File,
        mode: 0o400,
        path: format::ENTRY_RECORD,
        data: entry_rel.as_bytes(),
    });
    // For the in-memory fallback, which preloads the libraries in this order.
    let preload = load_order.join("\n");
    records.push(Record {
        kind: Kind::File,
        mode: 0o400,
        path: format::PRELOAD_RECORD,
        data: preload.as_bytes(),
    });
    // In a container image's own root the launcher installs the bundle's
    // files at their absolute paths (the bundle keeps the tree's shape):
    // every top-level directory, /etc first.
    let mut install = String::new();
    let mut tops: Vec<&str> = records
        .iter()
        .filter(|r| r.kind == Kind::Dir && !r.path.contains('/') && !r.path.starts_with('.'))
        .map(|r| r.path)
        .collect();
    tops.sort_by_key(|t| (*t != "etc", *t));
    for dir in tops {
        install.push_str(&format!("{dir}\t/{dir}\n"));
    }
    records.push(Record {
        kind: Kind::File,
        mode: 0o400,
        path: format::INSTALL_RECORD,
        data: install.as_bytes(),
    });
    let (mut records, n_chunks) = order_for_chunks(records, compression);
    let program = records
        .iter()
        .position(|r| r.path == program_record)
        .expect("the program record survives ordering");
    // After ordering: the patch sites name records by their final index.
    // Appended, they join the last chunk.
    let launch_records = launch_records(launch, &records, program, &more_sites)?;
    records.extend(launch_records.iter().map(|(path, data)| Record {
        kind: Kind::File,
        mode: 0o400,
        path,
        data,
    }));
    let header = ArchiveHeader {
        program: program as u32,
        prefix_len: PREFIX_LEN as u32,
        slots,
    };
    let raw = format::archive(&header, &records);
    let bounds = compress::cut(&raw, n_chunks);
    // The cache key is hashed while the chunks compress.
    let (digest, compressed) = std::thread::scope(|s| {
        let digest = s.spawn(|| Sha256::digest(&raw));
        let compressed = compress::compress(&raw, &bounds, compression);
        (digest.join().expect("hashing thread panicked"), compressed)
    });
    let (codec, chunks) = compressed?;
    let mut table = Vec::with_capacity(chunks.len() * format::CHUNK_ENTRY_LEN);
    for c in &chunks {
        table.extend_from_slice(&format::chunk_entry(&c.data, c.raw_len, c.props));
    }
    let payload_len = chunks.iter().map(|c| c.data.len()).sum::<usize>() + table.len();
    let key: [u8; 16] = digest[..16].try_into().unwrap();
    let trailer = format::Trailer {
        payload_off: STUB.len() as u64,
        payload_len: payload_len as u64,
        raw_len: raw.len() as u64,
        codec,
        chunks: chunks.len() as u32,
        table_hash: checksum::checksum(&table),
        key,
    };
    let file_len = (STUB.len() + payload_len + format::TRAILER_LEN) as u64;
    let stub = format::map_payload(STUB, STUB.len() as u64, file_len)
        .context("internal error: the launcher has no PT_NOTE to map its payload with")?;
    crate::output::atomic_write(out, force, |f| {
        use std::os::unix::fs::PermissionsExt;
        f.write_all(&stub)?;
        for c in &chunks {
            f.write_all(&c.data)?;
        }
        f.write_all(&table)?;
        f.write_all(&trailer.to_bytes())?;
        f.set_permissions(std::fs::Permissions::from_mode(
            crate::output::default_mode(0o777),
        ))?;
        Ok(())
    })?;
    Ok(PackStats {
        raw_bytes: raw.len() as u64,
        payload_bytes: payload_len as u64,
        file_bytes: file_len,
    })
}

/// Orders the records for chunking: directories, then symlinks (a file's
/// directory must exist before the file), then the files chunk by chunk as
/// [`compress::deal`] groups them. Returns the records and the number of
/// chunks.
fn order_for_chunks(records: Vec<Record>, c: Compression) -> (Vec<Record>, usize) {
    let total = records.iter().map(|r| r.data.len()).sum();
    let n = compress::chunk_count(total, c);
    let files: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].kind == Kind::File)
        .collect();
    let data: Vec<&[u8]> = files.iter().map(|&i| records[i].data).collect();
    let mut dealt = vec![0; records.len()];
    for (&i, c) in files.iter().zip(compress::deal(&data, n)) {
        dealt[i] = c;
    }
    let mut keyed: Vec<((usize, u8, usize), Record)> = records
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let chunk = dealt[i];
            let rank = match r.kind {
                Kind::Dir => 0,
                Kind::Symlink => 1,
                Kind::File => 2,
            };
            ((chunk, rank, i), r)
        })
        .collect();
    keyed.sort_by_key(|(k, _)| *k);
    (keyed.into_iter().map(|(_, r)| r).collect(), n)
}

/// The records the launcher reads besides the entry: environment defaults,
/// a `#!` script's argv, and the placeholders in ELF programs other than
/// the entry (extra programs pointed at the bundled loader).
fn launch_records(
    launch: &crate::plan::bundle::Launch,
    records: &[Record],
    program: usize,
    program_sites: &[usize],
) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let mut out = Vec::new();
    let line_safe = |s: &str, what: &str| -> Result<()> {
        if s.contains(['\n', '\0']) {
            bail!("{what} {s:?}: a newline or NUL cannot be passed on");
        }
        Ok(())
    };
    if !launch.env.is_empty() {
        let mut env = String::new();
        for (k, v) in &launch.env {
            line_safe(k, "environment variable")?;
            line_safe(v, "environment value")?;
            env.push_str(&format!("{k}={v}\n"));
        }
        out.push((format::ENV_RECORD, env.into_bytes()));
    }
    if !launch.argv.is_empty() {
        for a in &launch.argv {
            line_safe(a, "argument")?;
        }
        out.push((format::ARGV_RECORD, launch.argv.join("\n").into_bytes()));
    }
    let mut sites = Vec::new();
    // Each site is a string the launcher patches whole.
    for &at in program_sites {
        sites.extend_from_slice(&(program as u32).to_le_bytes());
        sites.extend_from_slice(&(at as u32).to_le_bytes());
    }
    for (i, r) in records.iter().enumerate() {
        if i == program || r.kind != Kind::File || !r.data.starts_with(crate::elf::MAGIC) {
            continue;
        }
        for at in placeholder_sites(r.data) {
            sites.extend_from_slice(&(i as u32).to_le_bytes());
            sites.extend_from_slice(&(at as u32).to_le_bytes());
        }
    }
    if !sites.is_empty() {
        out.push((format::PATCH_RECORD, sites));
    }
    let aliases = alias_sites(records);
    if !aliases.is_empty() {
        out.push((format::ALIAS_RECORD, aliases));
    }
    Ok(out)
}

/// [`format::ALIAS_RECORD`]: where an ELF file of the bundle needs a
/// bundled library under a name that is not the library's SONAME (ffmpeg
/// needs `libsndio.so.7.0`, whose SONAME is `libsndio.so.7`). Only a
/// SONAME that fits in the needed name's string can replace it.
fn alias_sites(records: &[Record]) -> Vec<u8> {
    let elf = |r: &Record| {
        (r.kind == Kind::File && r.data.starts_with(crate::elf::MAGIC))
            .then(|| crate::elf::parse(r.data).ok())
            .flatten()
    };
    let mut soname_of = std::collections::HashMap::new();
    for r in records {
        let name = r.path.rsplit('/').next().unwrap_or(r.path);
        if let Some(soname) = elf(r).and_then(|i| i.soname)
            && soname != name
        {
            soname_of.insert(name.to_string(), soname);
        }
    }
    let mut out = Vec::new();
    if soname_of.is_empty() {
        return out;
    }
    for (i, r) in records.iter().enumerate() {
        for needed in elf(r).map(|i| i.needed).unwrap_or_default() {
            let Some(soname) = soname_of.get(&needed).filter(|s| s.len() <= needed.len()) else {
                continue;
            };
            // The string in .dynstr (also named by .gnu.version_r); every
            // copy, as an edited file may keep its old .dynstr too.
            let needle = [b"\0", needed.as_bytes(), b"\0"].concat();
            let mut from = 0;
            while let Some(at) = find(&r.data[from..], &needle).map(|a| a + from) {
                out.extend_from_slice(&(i as u32).to_le_bytes());
                out.extend_from_slice(&(at as u32 + 1).to_le_bytes());
                out.extend_from_slice(soname.as_bytes());
                out.push(0);
                from = at + 1;
            }
        }
    }
    out
}

/// Every string of `data` that starts with the placeholder prefix (the
/// launcher replaces every placeholder in such a string: PT_INTERP, and
/// DT_RPATH whose entries each start with one).
fn placeholder_sites(data: &[u8]) -> Vec<usize> {
    let needle = placeholder_prefix();
    let needle = needle.as_os_str().as_encoded_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(pos) = find(&data[at..], needle) {
        let site = at + pos;
        if site == 0 || data[site - 1] == 0 {
            out.push(site);
        }
        at = site + needle.len();
    }
    out
}

/// The entry program's placeholders: the header's two slots (PT_INTERP
/// and DT_RPATH); nothing more for the patch record.
fn program_slots(data: &[u8], entry: &str) -> Result<([u32; 2], Vec<usize>)> {
    let info = crate::elf::parse(data)
        .with_context(|| format!("{entry}: a single file's program must be an ELF program"))?;
    let interp = info.interpreter.with_context(|| {
        format!("{entry}: a static program needs no single file: copy it as is")
    })?;
    let needle = [interp.as_bytes(), b"\0"].concat();
    let interp_at = find(data, &needle)
        .filter(|_| interp.starts_with(&placeholder_prefix().display().to_string()))
        .with_context(|| format!("{entry}: the placeholder for its interpreter is missing"))?;
    let rpath = placeholder_sites(data)
        .into_iter()
        .find(|&at| at != interp_at)
        .with_context(|| format!("{entry}: the placeholder for its RPATH is missing"))?;
    Ok(([interp_at as u32, rpath as u32], Vec::new()))
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut from = 0;
    while let Some(p) = hay[from..].iter().position(|&b| b == first) {
        let at = from + p;
        if hay[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}
