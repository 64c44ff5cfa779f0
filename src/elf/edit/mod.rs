//! patchelf-style edits of ELF64 little-endian files: interpreter, RPATH /
//! RUNPATH, DT_NEEDED and DT_SONAME.
//!
//! Edits that fit are made in place (a shorter interpreter, removing dynamic
//! entries). Edits that grow the interpreter string, the dynamic string table
//! or the dynamic section append one new read-write PT_LOAD segment at the
//! end of the file holding the new interpreter, a copy of `.dynstr` with the
//! new strings added (old offsets stay valid, so symbol and version tables
//! need no change) and the new dynamic section. Its program header is the
//! first PT_NOTE entry, turned into PT_LOAD: the program header table keeps
//! its size and place, so PT_PHDR stays valid for the kernel and ld.so, and
//! the PT_LOADs stay in ascending address order because notes follow them.
//! The dynamic section moves to writable memory, as ld.so writes to it
//! (DT_DEBUG, and it relocates d_ptr entries in place).
//!
//! Section headers are kept consistent (`.interp`, `.dynstr`, `.dynamic`), so
//! `readelf -a` stays silent; files without section headers are refused,
//! since nothing could be checked against them.
//!
//! object's `build::elf::Builder` (and object-rewrite on top of it) re-lays
//! out the whole file; this module instead changes only what an edit needs,
//! which keeps every byte of code and data where the linker put it.

mod layout;

use std::path::Path;

use anyhow::{Context, Result, bail};

pub use layout::DynInfo;
use layout::Elf;

/// The edits `elfpack patch` offers, with patchelf's meanings.
#[derive(Default, Clone, Debug)]
pub struct Edits {
    pub interpreter: Option<String>,
    /// Sets DT_RUNPATH, or DT_RPATH with `force_rpath` or when the file
    /// already uses DT_RPATH; the other one is removed.
    pub rpath: Option<String>,
    pub force_rpath: bool,
    /// Removes both DT_RPATH and DT_RUNPATH.
    pub remove_rpath: bool,
    pub add_needed: Vec<String>,
    pub remove_needed: Vec<String>,
    pub replace_needed: Vec<(String, String)>,
    pub soname: Option<String>,
}

impl Edits {
    pub fn is_empty(&self) -> bool {
        self.interpreter.is_none()
            && self.rpath.is_none()
            && !self.remove_rpath
            && self.add_needed.is_empty()
            && self.remove_needed.is_empty()
            && self.replace_needed.is_empty()
            && self.soname.is_none()
    }
}

/// What `--print-*` shows.
pub fn inspect(data: &[u8]) -> Result<DynInfo> {
    Ok(Elf::parse(data)?.dyn_info())
}

/// Applies `edits` to an in-memory ELF file.
pub fn edit_bytes(data: &[u8], edits: &Edits) -> Result<Vec<u8>> {
    let elf = Elf::parse(data)?;
    if elf.shdrs.is_empty() {
        bail!("the file has no section headers; refusing to edit what cannot be checked");
    }
    if edits.is_empty() {
        return Ok(data.to_vec());
    }
    let mut strings = StringTable::new(&elf);
    let mut dyns: Vec<(i64, u64)> = elf
        .dynamic
        .iter()
        .copied()
        .filter(|(t, _)| *t != layout::DT_NULL)
        .collect();
    let touches_dynamic = edits.rpath.is_some()
        || edits.remove_rpath
        || !edits.add_needed.is_empty()
        || !edits.remove_needed.is_empty()
        || !edits.replace_needed.is_empty()
        || edits.soname.is_some();
    if touches_dynamic && elf.dynamic_index.is_none() {
        bail!("the file has no dynamic section (statically linked?)");
    }

    if let Some(new_path) = &edits.rpath {
        let tag = if edits.force_rpath
            || (elf.has_tag(layout::DT_RPATH) && !elf.has_tag(layout::DT_RUNPATH))
        {
            layout::DT_RPATH
        } else {
            layout::DT_RUNPATH
        };
        let off = strings.add(new_path);
        dyns.retain(|(t, _)| *t != layout::DT_RPATH && *t != layout::DT_RUNPATH);
        insert_before_strtab(&mut dyns, (tag, off));
    } else if edits.remove_rpath {
        dyns.retain(|(t, _)| *t != layout::DT_RPATH && *t != layout::DT_RUNPATH);
    }
    for name in &edits.remove_needed {
        dyns.retain(|&(t, v)| !(t == layout::DT_NEEDED && elf.dynstr_at(v) == Some(name.as_str())));
    }
    for (old, new) in &edits.replace_needed {
        let positions: Vec<usize> = dyns
            .iter()
            .enumerate()
            .filter(|(_, (t, v))| {
                *t == layout::DT_NEEDED && elf.dynstr_at(*v) == Some(old.as_str())
            })
            .map(|(i, _)| i)
            .collect();
        if !positions.is_empty() {
            let off = strings.add(new);
            for i in positions {
                dyns[i].1 = off;
            }
        }
    }
    // patchelf puts added DT_NEEDED entries first.
    for name in edits.add_needed.iter().rev() {
        let already = dyns
            .iter()
            .any(|&(t, v)| t == layout::DT_NEEDED && elf.dynstr_at(v) == Some(name.as_str()));
        if !already {
            let off = strings.add(name);
            dyns.insert(0, (layout::DT_NEEDED, off));
        }
    }
    if let Some(soname) = &edits.soname {
        let off = strings.add(soname);
        match dyns.iter_mut().find(|(t, _)| *t == layout::DT_SONAME) {
            Some(e) => e.1 = off,
            None => insert_before_strtab(&mut dyns, (layout::DT_SONAME, off)),
        }
    }

    let interp = edits.interpreter.as_deref();
    if interp.is_some() && elf.interp_index.is_none() {
        bail!("the file has no PT_INTERP to change (a shared library or a static program)");
    }
    let interp_fits = interp.is_none_or(|i| i.len() < elf.interp_capacity());
    let dyn_fits = !strings.grew() && dyns.len() < elf.dynamic.len();
    let mut out = data.to_vec();
    if interp_fits && (dyn_fits || !touches_dynamic) {
        if let Some(i) = interp {
            elf.write_interp_in_place(&mut out, i);
        }
        if touches_dynamic {
            elf.write_dynamic_in_place(&mut out, &dyns);
        }
    } else {
        elf.append_segment(&mut out, interp, &strings, &mut dyns, touches_dynamic)?;
    }
    // Tables that overlap in a malformed input could make the writes above
    // clobber each other: never hand back a file that does not read.
    Elf::parse(&out)
        .context("the edit would produce a malformed file (overlapping ELF tables?)")?;
    Ok(out)
}

/// Keeps new string-valued entries ahead of DT_STRTAB, as linkers order them.
fn insert_before_strtab(dyns: &mut Vec<(i64, u64)>, entry: (i64, u64)) {
    let at = dyns
        .iter()
        .position(|(t, _)| *t == layout::DT_STRTAB)
        .unwrap_or(dyns.len());
    dyns.insert(at, entry);
}

/// `.dynstr` plus the strings an edit adds; existing offsets never change.
pub(crate) struct StringTable {
    pub bytes: Vec<u8>,
    original_len: usize,
}

impl StringTable {
    fn new(elf: &Elf) -> Self {
        let bytes = elf.dynstr.to_vec();
        StringTable {
            original_len: bytes.len(),
            bytes,
        }
    }

    fn add(&mut self, s: &str) -> u64 {
        // Reuse an identical string already present (as a whole entry).
        let needle: Vec<u8> = [s.as_bytes(), b"\0"].concat();
        let whole = |&(pos, w): &(usize, &[u8])| {
            w == needle.as_slice() && (pos == 0 || self.bytes[pos - 1] == 0)
        };
        if let Some((pos, _)) = self.bytes.windows(needle.len()).enumerate().find(whole) {
            return pos as u64;
        }
        let off = self.bytes.len() as u64;
        self.bytes.extend_from_slice(&needle);
        off
    }

    fn grew(&self) -> bool {
        self.bytes.len() != self.original_len
    }
}

/// Edits `input` into `output` (which may be the same path) atomically,
/// keeping the file's mode.
pub fn edit_file(input: &Path, output: &Path, edits: &Edits) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let data = std::fs::read(input).with_context(|| format!("{}: cannot read", input.display()))?;
    let mode = std::fs::metadata(input)?.permissions().mode();
    let edited = edit_bytes(&data, edits).with_context(|| input.display().to_string())?;
    crate::output::atomic_write(output, true, |f| {
        use std::io::Write;
        f.write_all(&edited)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        Ok(())
    })
}
