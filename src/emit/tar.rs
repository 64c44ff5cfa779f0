//! A plan as a tar stream, byte-for-byte reproducible: entries in sorted path
//! order, owner 0:0 with no names, one fixed timestamp (`SOURCE_DATE_EPOCH`
//! or 0), nothing taken from the build host but file contents and modes.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use flate2::write::GzEncoder;

use crate::plan::{Node, Plan};

/// The timestamp every output carries: `SOURCE_DATE_EPOCH` when set
/// (reproducible-builds.org convention), else the epoch.
pub fn source_date_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Writes `plan` as a tar archive (paths relative to `/`) into `w`.
pub fn write<W: Write>(plan: &Plan, w: W, mtime: u64) -> Result<W> {
    let mut b = tar::Builder::new(w);
    for (path, node) in &plan.nodes {
        let rel = path.strip_prefix("/").unwrap_or(path);
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        match node {
            Node::Dir { mode } => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, dir_name(rel), std::io::empty())?;
            }
            Node::File { src, mode, .. } => {
                let f = std::fs::File::open(src)
                    .with_context(|| format!("{}: cannot read", src.display()))?;
                let len = f.metadata()?.len();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(len);
                b.append_data(&mut h, rel, f)
                    .with_context(|| format!("{}: cannot archive", src.display()))?;
            }
            Node::Data { bytes, mode } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(bytes.len() as u64);
                b.append_data(&mut h, rel, bytes.as_slice())?;
            }
            Node::Symlink { target } => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, rel, target)?;
            }
        }
    }
    Ok(b.into_inner()?)
}

fn dir_name(rel: &Path) -> std::path::PathBuf {
    let mut s = rel.as_os_str().to_os_string();
    s.push("/");
    s.into()
}

/// The plan as an uncompressed tar in memory.
pub fn to_vec(plan: &Plan, mtime: u64) -> Result<Vec<u8>> {
    write(plan, Vec::new(), mtime)
}

/// Deterministic gzip (no name, zero mtime in the gzip header, fixed level).
pub fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data)?;
    Ok(e.finish()?)
}

/// The plan as a gzip'd tar layer: one gzip member per tar entry (plus one
/// for the end-of-archive blocks). Concatenated members are one valid gzip
/// stream for every reader (RFC 1952; Go's, hence podman's and Docker's,
/// reads them by default), entries compress in parallel, and the bytes stay
/// a pure function of the plan.
pub fn gzip_layer(plan: &Plan, mtime: u64) -> Result<Vec<u8>> {
    let mut layer: Vec<u8> = gzip_members(plan, mtime)?.concat();
    layer.extend(end_member()?);
    Ok(layer)
}

/// The closing member of a layer: the two zero blocks that end a tar.
pub fn end_member() -> Result<Vec<u8>> {
    gzip(&[0u8; END_OF_ARCHIVE])
}

/// One gzip member per plan entry, in plan order, compressed in parallel.
pub fn gzip_members(plan: &Plan, mtime: u64) -> Result<Vec<Vec<u8>>> {
    let entries: Vec<(&std::path::PathBuf, &Node)> = plan.nodes.iter().collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(entries.len().max(1));
    let progress = crate::progress::Progress::bytes("gzipping the image layer", plan.totals().1);
    let progress = &progress;
    // Interleave entries over threads so large libraries spread out.
    let members: Vec<Result<Vec<Member>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let entries = &entries;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for (i, (path, node)) in entries.iter().enumerate().skip(t).step_by(threads) {
                        let mut one = Plan::default();
                        one.nodes.insert((*path).clone(), (*node).clone());
                        let mut tar = write(&one, Vec::new(), mtime)?;
                        tar.truncate(tar.len() - END_OF_ARCHIVE);
                        out.push((i, gzip(&tar)?));
                        progress.inc(match node {
                            Node::File { size, .. } => *size,
                            Node::Data { bytes, .. } => bytes.len() as u64,
                            _ => 0,
                        });
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("compression thread panicked"))
            .collect()
    });
    let mut all: Vec<Member> = Vec::with_capacity(entries.len());
    for m in members {
        all.extend(m?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, m)| m).collect())
}

/// A compressed entry and its index in plan order.
type Member = (usize, Vec<u8>);

/// Two zero blocks end a tar archive.
const END_OF_ARCHIVE: usize = 1024;

/// Writes `plan` as a tar file at `out`, atomically.
pub fn write_file(plan: &Plan, out: &Path, force: bool) -> Result<()> {
    crate::output::atomic_write(out, force, |f| {
        write(plan, std::io::BufWriter::new(f), source_date_epoch())?.flush()?;
        Ok(())
    })
}
