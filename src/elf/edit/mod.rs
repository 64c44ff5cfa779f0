//! patchelf-style edits of ELF files of either class and byte order:
//! interpreter, RPATH / RUNPATH, DT_NEEDED, DT_SONAME, OS ABI, executable
//! stack, DT_FLAGS_1 NODEFLIB, DT_DEBUG, symbol versions, dynamic symbol
//! names ([`symbols`]) and NixOS's resolution cache note ([`cache`]).
//!
//! Edits that fit are made in place (a shorter interpreter, a dynamic
//! section with free DT_NULL slots). New strings never overwrite old ones
//! (a string may be shared by several references, or be the tail of
//! another): they are appended, so every old offset into `.dynstr` stays
//! valid and symbol and version tables need no change. Whatever outgrows its
//! place goes into one added segment that later edits grow ([`layout`] says
//! how room is made for its program header). A large `.dynstr` is not
//! copied: the added segment then maps the file from the table on, so new
//! strings at the end of the file extend the table where it is.
//!
//! Section headers are kept consistent (`.interp`, `.dynstr`, `.dynamic`,
//! moved sections), so `readelf -a` stays silent; files without section
//! headers are refused, since nothing could be checked against them.
//!
//! object's `build::elf::Builder` (and object-rewrite on top of it) re-lays
//! out the whole file; this module instead changes only what an edit needs,
//! which keeps every byte of code and data where the linker put it.

mod cache;
mod layout;
mod raw;
mod symbols;

use std::path::Path;

use anyhow::{Context, Result, bail};

use layout::Image;

pub const DT_NULL: i64 = 0;
pub const DT_NEEDED: i64 = 1;
pub const DT_STRTAB: i64 = 5;
pub const DT_STRSZ: i64 = 10;
pub const DT_SONAME: i64 = 14;
pub const DT_RPATH: i64 = 15;
pub const DT_DEBUG: i64 = 21;
pub const DT_RUNPATH: i64 = 29;
const DT_FLAGS_1: i64 = 0x6fff_fffb;
const DT_VERSYM: i64 = 0x6fff_fff0;
const DT_VERNEED: i64 = 0x6fff_fffe;
const DT_VERNEEDNUM: i64 = 0x6fff_ffff;
const DT_SYMTAB: i64 = 6;
const DT_SYMENT: i64 = 11;
const DF_1_NODEFLIB: u64 = 0x800;
/// Dynamic tags whose value is an address (followed when sections move).
const ADDRESS_TAGS: [i64; 18] = [
    3,
    4,
    5,
    6,
    7,
    12,
    13,
    17,
    23,
    25,
    26,
    32,
    36,
    0x6fff_fef5,
    0x6fff_fff0,
    0x6fff_fffc,
    0x6fff_fffe,
    0x6fff_fef4,
];
/// Free DT_NULL slots left after a moved dynamic section, so later edits
/// can add entries in place.
const SPARE_DYN: usize = 4;
/// Strings up to this size are copied when they must grow; a larger table
/// is extended where it is (see the module doc).
const COPY_DYNSTR_MAX: usize = 64 * 1024;
/// Marks a string offset that is an index into the strings this edit adds.
const NEW: u64 = 1 << 62;

/// What `--print-*` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynInfo {
    pub interpreter: Option<String>,
    pub rpath: Option<String>,
    pub runpath: Option<String>,
    pub needed: Vec<String>,
    pub soname: Option<String>,
    /// e_ident[EI_OSABI].
    pub os_abi: u8,
    /// PT_GNU_STACK's PF_X, None without PT_GNU_STACK.
    pub execstack: Option<bool>,
}

/// How the RPATH changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RpathEdit {
    Set(String),
    Add(String),
    Remove,
    /// Keep only the directories holding a needed library (and relative
    /// ones), and with a non-empty list only those under these prefixes.
    Shrink(Vec<String>),
}

/// The edits `elfpack patch` offers, with patchelf's meanings.
#[derive(Default, Clone, Debug)]
pub struct Edits {
    pub interpreter: Option<String>,
    /// Sets DT_RUNPATH, or DT_RPATH with `force_rpath`; the other one goes.
    pub rpath: Option<String>,
    pub force_rpath: bool,
    /// Removes both DT_RPATH and DT_RUNPATH (and wins over `rpath`).
    pub remove_rpath: bool,
    /// `--add-rpath`: appended to the current one.
    pub add_rpath: Option<String>,
    /// `--shrink-rpath` with its `--allowed-rpath-prefixes`.
    pub shrink_rpath: Option<Vec<String>>,
    pub add_needed: Vec<String>,
    pub remove_needed: Vec<String>,
    pub replace_needed: Vec<(String, String)>,
    pub soname: Option<String>,
    /// e_ident[EI_OSABI].
    pub os_abi: Option<u8>,
    /// PT_GNU_STACK's PF_X.
    pub execstack: Option<bool>,
    pub no_default_lib: bool,
    pub add_debug_tag: bool,
    /// Symbols whose `.gnu.version` entry becomes global (unversioned).
    pub clear_symbol_version: Vec<String>,
    /// Alignment of an added segment instead of the file's own.
    pub page_size: Option<u64>,
    /// `--rename-dynamic-symbols`: (old name, new name) of `.dynsym`
    /// entries; the hash tables are rebuilt for the new names.
    pub rename_dynamic_symbols: Vec<(String, String)>,
    /// `--build-resolution-cache`: adds NixOS's note of where each
    /// DT_NEEDED library is found along the run path ([`cache`]).
    pub build_resolution_cache: bool,
}

impl Edits {
    pub fn is_empty(&self) -> bool {
        self.interpreter.is_none()
            && self.rpath_edit().is_none()
            && self.add_needed.is_empty()
            && self.remove_needed.is_empty()
            && self.replace_needed.is_empty()
            && self.soname.is_none()
            && self.os_abi.is_none()
            && self.execstack.is_none()
            && !self.no_default_lib
            && !self.add_debug_tag
            && self.clear_symbol_version.is_empty()
            && self.rename_dynamic_symbols.is_empty()
            && !self.build_resolution_cache
    }

    /// patchelf's precedence: shrink, remove, set, add.
    fn rpath_edit(&self) -> Option<RpathEdit> {
        if let Some(p) = &self.shrink_rpath {
            Some(RpathEdit::Shrink(p.clone()))
        } else if self.remove_rpath {
            Some(RpathEdit::Remove)
        } else if let Some(r) = &self.rpath {
            Some(RpathEdit::Set(r.clone()))
        } else {
            self.add_rpath.clone().map(RpathEdit::Add)
        }
    }
}

/// The dynamic view of a file: its entries and string table.
struct Dynamic {
    /// All entries, trailing DT_NULLs included (they are capacity).
    entries: Vec<(i64, u64)>,
    strtab_vaddr: u64,
    strtab: Vec<u8>,
}

impl Dynamic {
    fn read(img: &Image) -> Result<Option<Dynamic>> {
        let Some(place) = img.dynamic_place() else {
            return Ok(None);
        };
        let f = img.f;
        let mut entries = Vec::new();
        for k in 0..place.2 / f.dynent() {
            entries.push(f.read_dyn(&img.data, place.0 + k * f.dynent())?);
        }
        let live = |t| {
            entries
                .iter()
                .take_while(|(x, _)| *x != DT_NULL)
                .find(|(x, _)| *x == t)
                .map(|e| e.1)
        };
        let (mut strtab_vaddr, mut strtab) = (0, Vec::new());
        if let (Some(v), Some(sz)) = (live(DT_STRTAB), live(DT_STRSZ)) {
            let off = img.vaddr_to_off(v, sz).context(
                "the dynamic string table (DT_STRTAB, DT_STRSZ) is outside every segment",
            )?;
            strtab_vaddr = v;
            strtab = img.data[off as usize..(off + sz) as usize].to_vec();
        }
        Ok(Some(Dynamic {
            entries,
            strtab_vaddr,
            strtab,
        }))
    }

    fn live(&self) -> impl Iterator<Item = &(i64, u64)> {
        self.entries.iter().take_while(|(t, _)| *t != DT_NULL)
    }

    fn tag(&self, tag: i64) -> Option<u64> {
        self.live().find(|(t, _)| *t == tag).map(|e| e.1)
    }

    fn str_at(&self, off: u64) -> Option<&str> {
        let tail = self.strtab.get(off as usize..)?;
        let end = tail.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&tail[..end]).ok()
    }

    fn string(&self, tag: i64) -> Option<String> {
        self.tag(tag)
            .and_then(|v| self.str_at(v))
            .map(str::to_string)
    }
}

/// What `--print-*` reports.
pub fn inspect(data: &[u8]) -> Result<DynInfo> {
    let img = Image::parse(data.to_vec())?;
    let dynamic = Dynamic::read(&img)?;
    let interpreter = img.find_phdr(layout::PT_INTERP).and_then(|i| {
        let p = img.phdrs[i];
        let s = data.get(p.offset as usize..(p.offset + p.filesz) as usize)?;
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        Some(String::from_utf8_lossy(&s[..end]).into_owned())
    });
    let mut info = DynInfo {
        interpreter,
        os_abi: data[7],
        execstack: img
            .find_phdr(layout::PT_GNU_STACK)
            .map(|i| img.phdrs[i].flags & layout::PF_X != 0),
        ..Default::default()
    };
    if let Some(d) = dynamic {
        info.rpath = d.string(DT_RPATH);
        info.runpath = d.string(DT_RUNPATH);
        info.soname = d.string(DT_SONAME);
        info.needed = d
            .live()
            .filter(|(t, _)| *t == DT_NEEDED)
            .filter_map(|(_, v)| d.str_at(*v).map(str::to_string))
            .collect();
    }
    Ok(info)
}

/// The strings an edit adds after the existing table.
struct Strings {
    /// The table as it is (an edit may overwrite a string nothing else uses).
    old: Vec<u8>,
    added: Vec<u8>,
}

impl Strings {
    /// The offset of `s`: an existing copy (also the tail of a longer
    /// string) or a new one marked [`NEW`].
    fn add(&mut self, s: &str) -> u64 {
        let needle: Vec<u8> = [s.as_bytes(), b"\0"].concat();
        if let Some(p) = find(&self.old, &needle) {
            return p as u64;
        }
        if let Some(p) = find(&self.added, &needle) {
            return NEW | p as u64;
        }
        let off = self.added.len() as u64;
        self.added.extend_from_slice(&needle);
        NEW | off
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() == 1 {
        return hay.iter().position(|&b| b == 0);
    }
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        let rel = hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?;
        i += rel;
        if &hay[i..i + needle.len()] == needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Applies `edits` to an in-memory ELF file.
///
/// A resolution cache note that the edit makes stale (the run path or the
/// DT_NEEDED list changed) is removed; `--build-resolution-cache` then
/// adds one for the edited file.
pub fn edit_bytes(data: &[u8], edits: &Edits) -> Result<Vec<u8>> {
    let mut out = edit_tables(data, edits)?;
    if cache::present(&out) {
        let (before, after) = (inspect(data)?, inspect(&out)?);
        if (&before.needed, &before.rpath, &before.runpath)
            != (&after.needed, &after.rpath, &after.runpath)
        {
            out = cache::remove(out)?;
        }
    }
    if edits.build_resolution_cache {
        if edits.force_rpath {
            bail!("--build-resolution-cache cannot be combined with --force-rpath");
        }
        out = cache::build(out, edits.page_size)?;
    }
    inspect(&out).context("the edit would produce a malformed file (overlapping ELF tables?)")?;
    Ok(out)
}

/// [`edit_bytes`] but for the resolution cache note.
fn edit_tables(data: &[u8], edits: &Edits) -> Result<Vec<u8>> {
    let mut img = Image::parse(data.to_vec())?;
    if img.shdrs.is_empty() {
        bail!("the file has no section headers; refusing to edit what cannot be checked");
    }
    img.page_size = edits.page_size;
    if edits.is_empty() {
        return Ok(img.data);
    }
    if let Some(abi) = edits.os_abi {
        img.data[7] = abi;
    }
    if let Some(x) = edits.execstack {
        set_execstack(&mut img, x)?;
    }
    let dyn_edits = edits.rpath_edit().is_some()
        || !edits.add_needed.is_empty()
        || !edits.remove_needed.is_empty()
        || !edits.replace_needed.is_empty()
        || edits.soname.is_some()
        || edits.no_default_lib
        || edits.add_debug_tag
        || !edits.clear_symbol_version.is_empty()
        || !edits.rename_dynamic_symbols.is_empty();
    let dynamic = Dynamic::read(&img)?;
    let plan = match (&dynamic, dyn_edits) {
        (_, false) => None,
        (None, true) => bail!("the file has no dynamic section (statically linked?)"),
        (Some(d), true) => Some(plan_dynamic(&img, d, edits)?),
    };
    if let Some(p) = plan.as_ref().filter(|p| !p.version_clear.is_empty()) {
        clear_versions(&mut img, dynamic.as_ref().unwrap(), &p.version_clear)?;
    }

    let interp = edits.interpreter.as_deref();
    let interp_i = img.find_phdr(layout::PT_INTERP);
    if interp.is_some() && interp_i.is_none() {
        bail!("the file has no PT_INTERP to change (a shared library or a static program)");
    }
    let interp_fits = interp.is_none_or(|s| s.len() < img.phdrs[interp_i.unwrap()].filesz as usize);
    let (strings_grow, dyn_fits) = match (&plan, &dynamic) {
        (Some(p), Some(d)) => (!p.added.is_empty(), p.dyns.len() < d.entries.len()),
        _ => (false, true),
    };
    let need_segment = !interp_fits || strings_grow || !dyn_fits;
    let mut seg = None;
    if need_segment {
        // A large table that must grow is mapped where it is.
        let from = match &dynamic {
            Some(d) if strings_grow && d.strtab.len() > COPY_DYNSTR_MAX => {
                img.growable().is_none().then_some(d.strtab_vaddr)
            }
            _ => None,
        };
        seg = Some(img.segment(from)?);
    }

    if let Some(s) = interp {
        let i = interp_i.unwrap();
        let mut bytes = s.as_bytes().to_vec();
        bytes.push(0);
        let (off, vaddr) = if interp_fits {
            let p = img.phdrs[i];
            img.data[p.offset as usize..p.file_end() as usize].fill(0);
            img.data[p.offset as usize..p.offset as usize + bytes.len()].copy_from_slice(&bytes);
            (p.offset, p.vaddr)
        } else {
            img.append(seg.unwrap(), &bytes, 1)
        };
        let p = &mut img.phdrs[i];
        p.offset = off;
        p.vaddr = vaddr;
        p.paddr = vaddr;
        p.filesz = bytes.len() as u64;
        p.memsz = bytes.len() as u64;
        if let Some(si) = img.find_section(".interp") {
            let sh = &mut img.shdrs[si];
            sh.offset = off;
            sh.addr = vaddr;
            sh.size = bytes.len() as u64;
        }
    }

    if let (Some(mut p), Some(d)) = (plan, dynamic) {
        let f = img.f;
        // Addresses of sections that moved to make room.
        for e in p.dyns.iter_mut() {
            if ADDRESS_TAGS.contains(&e.0) {
                e.1 = img.remap(e.1);
            }
        }
        let strtab_vaddr = img.remap(d.strtab_vaddr);
        if !p.added.is_empty() {
            let seg = seg.unwrap();
            let sp = img.phdrs[seg];
            // The table's bytes, when the added segment maps them (it was
            // put there by an earlier edit, or maps the file from it).
            let mapped = img
                .vaddr_to_off(strtab_vaddr, d.strtab.len() as u64)
                .filter(|&o| o >= sp.offset && o < sp.file_end())
                .map(|o| o - sp.offset + sp.vaddr);
            let (base_vaddr, base) = if let Some(at) = mapped {
                // Extend the table where it is: new strings at the end.
                let (_, v) = img.append(seg, &p.added, 1);
                (at, v - at)
            } else {
                let mut bytes = p.table.clone();
                p.table_changed = false;
                let base = bytes.len() as u64;
                bytes.extend_from_slice(&p.added);
                let (_, v) = img.append(seg, &bytes, 1);
                if let Some(o) = img.vaddr_to_off(strtab_vaddr, d.strtab.len() as u64) {
                    // Nothing refers to the old copy any more.
                    img.data[o as usize..o as usize + d.strtab.len()].fill(0);
                }
                (v, base)
            };
            let size = base + p.added.len() as u64;
            for e in p.dyns.iter_mut() {
                if e.1 & NEW != 0 && is_string_tag(e.0) {
                    e.1 = base + (e.1 & !NEW);
                }
                match e.0 {
                    DT_STRTAB => e.1 = base_vaddr,
                    DT_STRSZ => e.1 = size,
                    _ => {}
                }
            }
            for v in p.vn_file.iter_mut().chain(p.sym_names.iter_mut()) {
                if v.1 & NEW != 0 {
                    v.1 = base + (v.1 & !NEW);
                }
            }
            if let Some(si) = img.find_section(".dynstr") {
                let off = img
                    .vaddr_to_off(base_vaddr, size)
                    .context("the new string table")?;
                let sh = &mut img.shdrs[si];
                sh.offset = off;
                sh.addr = base_vaddr;
                sh.size = size;
            }
        }
        if p.table_changed {
            let o = img
                .vaddr_to_off(strtab_vaddr, p.table.len() as u64)
                .context("the dynamic string table")?;
            img.data[o as usize..o as usize + p.table.len()].copy_from_slice(&p.table);
        }
        // The dynamic section, in place or moved.
        let mut bytes = Vec::new();
        for (t, v) in &p.dyns {
            bytes.extend_from_slice(&f.dyn_bytes(*t, *v));
        }
        let (off, vaddr, size) = if p.dyns.len() < d.entries.len() {
            // (Read again: making room may have shifted the file.)
            let (off, vaddr, size) = img.dynamic_place().context("the dynamic section")?;
            bytes.resize(size as usize, 0);
            img.data[off as usize..(off + size) as usize].copy_from_slice(&bytes);
            (off, vaddr, size)
        } else {
            bytes.resize(bytes.len() + f.dynent() as usize * (1 + SPARE_DYN), 0);
            let (off, vaddr) = img.append(seg.unwrap(), &bytes, f.word());
            (off, vaddr, bytes.len() as u64)
        };
        if let Some(i) = img.find_phdr(layout::PT_DYNAMIC) {
            let ph = &mut img.phdrs[i];
            ph.offset = off;
            ph.vaddr = vaddr;
            ph.paddr = vaddr;
            ph.filesz = size;
            ph.memsz = size;
            ph.flags |= layout::PF_W;
        }
        if let Some(si) = img.shdrs.iter().position(|s| s.sh_type == 6) {
            let sh = &mut img.shdrs[si];
            sh.offset = off;
            sh.addr = vaddr;
            sh.size = size;
        }
        // `.gnu.version_r` names the libraries by their DT_NEEDED strings.
        for (field_vaddr, val) in &p.vn_file {
            let at = img.remap(*field_vaddr);
            let o = img.vaddr_to_off(at, 4).context("the version needs table")?;
            f.put32(&mut img.data, o, *val as u32);
        }
        if !p.sym_names.is_empty() {
            symbols::rename(&mut img, &p.sym_names)?;
        }
    }
    img.finish()?;
    // Tables that overlap in a malformed input could make the writes above
    // clobber each other: never hand back a file that does not read.
    inspect(&img.data)
        .context("the edit would produce a malformed file (overlapping ELF tables?)")?;
    Ok(img.data)
}

fn is_string_tag(t: i64) -> bool {
    matches!(t, DT_NEEDED | DT_SONAME | DT_RPATH | DT_RUNPATH)
}

/// The new dynamic entries and strings.
struct Plan {
    dyns: Vec<(i64, u64)>,
    added: Vec<u8>,
    /// The string table with any string overwritten in place.
    table: Vec<u8>,
    table_changed: bool,
    /// (address of a vn_file field, its new string offset).
    vn_file: Vec<(u64, u64)>,
    version_clear: Vec<String>,
    /// (index in `.dynsym`, new st_name) of renamed symbols.
    sym_names: Vec<(u64, u64)>,
}

fn plan_dynamic(img: &Image, d: &Dynamic, edits: &Edits) -> Result<Plan> {
    let mut strings = Strings {
        old: d.strtab.clone(),
        added: Vec::new(),
    };
    let mut table_changed = false;
    let mut dyns: Vec<(i64, u64)> = d.live().copied().collect();
    let name = |v: u64| d.str_at(v).map(str::to_string);

    if let Some(soname) = &edits.soname {
        let off = strings.add(soname);
        match dyns.iter_mut().find(|(t, _)| *t == DT_SONAME) {
            Some(e) => e.1 = off,
            None => insert_before_strtab(&mut dyns, (DT_SONAME, off)),
        }
    }
    if let Some(op) = edits.rpath_edit() {
        let runpath = d.string(DT_RUNPATH);
        let old = runpath.clone().or_else(|| d.string(DT_RPATH));
        let new = match &op {
            RpathEdit::Remove => None,
            RpathEdit::Set(s) => Some(s.clone()),
            RpathEdit::Add(s) => Some(match &old {
                Some(o) if !o.is_empty() => format!("{o}:{s}"),
                _ => s.clone(),
            }),
            RpathEdit::Shrink(prefixes) => old.as_ref().map(|o| {
                let needed: Vec<String> = d
                    .live()
                    .filter(|(t, _)| *t == DT_NEEDED)
                    .filter_map(|(_, v)| name(*v))
                    .collect();
                shrink(o, &needed, prefixes)
            }),
        };
        let removing = matches!(op, RpathEdit::Remove);
        let unchanged = old.is_some() && old == new;
        if removing {
            dyns.retain(|(t, _)| *t != DT_RPATH && *t != DT_RUNPATH);
        } else if let Some(new) = new {
            // patchelf: DT_RUNPATH unless --force-rpath, converting either.
            let tag = if edits.force_rpath {
                DT_RPATH
            } else {
                DT_RUNPATH
            };
            let cur = dyns
                .iter()
                .find(|(t, _)| *t == DT_RUNPATH || *t == DT_RPATH)
                .map(|e| e.1);
            let len = old.as_ref().map_or(0, |o| o.len());
            let off = match cur {
                Some(o) if unchanged => o,
                Some(o) if o & NEW == 0 && string_refs(img, d, o, o + len as u64)? <= 1 => {
                    // patchelf: a string nothing else uses is overwritten
                    // (with Xs first, so no trace of the old path stays).
                    let o = o as usize;
                    strings.old[o..o + len].fill(b'X');
                    table_changed = true;
                    if new.len() <= len {
                        strings.old[o..o + new.len()].copy_from_slice(new.as_bytes());
                        strings.old[o + new.len()] = 0;
                        o as u64
                    } else {
                        strings.add(&new)
                    }
                }
                _ => strings.add(&new),
            };
            let at = dyns
                .iter()
                .position(|(t, _)| *t == DT_RUNPATH || *t == DT_RPATH);
            dyns.retain(|(t, _)| *t != DT_RPATH && *t != DT_RUNPATH);
            match at {
                Some(i) => dyns.insert(i.min(dyns.len()), (tag, off)),
                None => insert_before_strtab(&mut dyns, (tag, off)),
            }
        }
    }
    for lib in &edits.remove_needed {
        dyns.retain(|&(t, v)| !(t == DT_NEEDED && d.str_at(v) == Some(lib.as_str())));
    }
    let mut renamed: Vec<(u64, u64)> = Vec::new();
    for (old, new) in &edits.replace_needed {
        let hits: Vec<usize> = dyns
            .iter()
            .enumerate()
            .filter(|(_, (t, v))| *t == DT_NEEDED && d.str_at(*v) == Some(old.as_str()))
            .map(|(i, _)| i)
            .collect();
        if !hits.is_empty() {
            let off = strings.add(new);
            for i in hits {
                renamed.push((dyns[i].1, off));
                dyns[i].1 = off;
            }
        }
    }
    // patchelf puts added DT_NEEDED entries first.
    for lib in edits.add_needed.iter().rev() {
        let already = dyns
            .iter()
            .any(|&(t, v)| t == DT_NEEDED && (v & NEW == 0) && d.str_at(v) == Some(lib.as_str()));
        if !already {
            let off = strings.add(lib);
            dyns.insert(0, (DT_NEEDED, off));
        }
    }
    if edits.no_default_lib {
        match dyns.iter_mut().find(|(t, _)| *t == DT_FLAGS_1) {
            Some(e) => e.1 |= DF_1_NODEFLIB,
            None => dyns.insert(0, (DT_FLAGS_1, DF_1_NODEFLIB)),
        }
    }
    if edits.add_debug_tag && !dyns.iter().any(|(t, _)| *t == DT_DEBUG) {
        dyns.insert(0, (DT_DEBUG, 0));
    }
    let vn_file = if renamed.is_empty() {
        Vec::new()
    } else {
        verneed_renames(img, d, &renamed)?
    };
    let sym_names =
        symbols::plan_renames(img, d, &edits.rename_dynamic_symbols, |n| strings.add(n))?;
    Ok(Plan {
        sym_names,
        dyns,
        added: strings.added,
        table: strings.old,
        table_changed,
        vn_file,
        version_clear: edits.clear_symbol_version.clone(),
    })
}

/// How many references (dynamic entries, dynamic symbols, version tables)
/// point into the string at `lo..=hi` (its NUL) of `.dynstr`.
fn string_refs(img: &Image, d: &Dynamic, lo: u64, hi: u64) -> Result<usize> {
    let f = img.f;
    let mut refs: Vec<u64> = d
        .live()
        .filter(|(t, _)| {
            is_string_tag(*t) || *t == 0x7fff_fffd || *t == 0x7fff_ffff // AUXILIARY, FILTER
        })
        .map(|e| e.1)
        .collect();
    let u32_at = |vaddr: u64| -> Result<u64> {
        let o = img.vaddr_to_off(vaddr, 4).context("a dynamic table")?;
        Ok(f.u32(&img.data, o)? as u64)
    };
    if let (Some(symtab), Some(i)) = (d.tag(DT_SYMTAB), img.find_section(".dynsym")) {
        let syment = d.tag(DT_SYMENT).unwrap_or(if f.is64 { 24 } else { 16 });
        for k in 0..img.shdrs[i].size / syment.max(1) {
            refs.push(u32_at(symtab + k * syment)?);
        }
    }
    // Version needs (vn_file, vna_name) and definitions (vda_name).
    for (tab, num, aux_name) in [
        (DT_VERNEED, DT_VERNEEDNUM, 8),
        (0x6fff_fffc, 0x6fff_fffd, 0),
    ] {
        let (Some(mut at), Some(n)) = (d.tag(tab), d.tag(num)) else {
            continue;
        };
        for _ in 0..n.min(0x10000) {
            let o = img.vaddr_to_off(at, 16).context("a version table")?;
            let (cnt, aux, next) = if tab == DT_VERNEED {
                refs.push(f.u32(&img.data, o + 4)? as u64);
                (
                    f.u16(&img.data, o + 2)?,
                    f.u32(&img.data, o + 8)?,
                    f.u32(&img.data, o + 12)?,
                )
            } else {
                (
                    f.u16(&img.data, o + 6)?,
                    f.u32(&img.data, o + 12)?,
                    f.u32(&img.data, o + 16)?,
                )
            };
            let mut a = at + aux as u64;
            for _ in 0..cnt {
                refs.push(u32_at(a + aux_name)?);
                let next_aux = u32_at(a + if tab == DT_VERNEED { 12 } else { 4 })?;
                if next_aux == 0 {
                    break;
                }
                a += next_aux;
            }
            if next == 0 {
                break;
            }
            at += next as u64;
        }
    }
    Ok(refs.iter().filter(|&&r| r >= lo && r <= hi).count())
}

/// patchelf's `--shrink-rpath`.
fn shrink(rpath: &str, needed: &[String], prefixes: &[String]) -> String {
    let mut found = vec![false; needed.len()];
    let mut keep: Vec<&str> = Vec::new();
    for dir in rpath.split(':') {
        if !dir.is_empty() && !dir.starts_with('/') {
            keep.push(dir);
            continue;
        }
        if !prefixes.is_empty() && !prefixes.iter().any(|p| dir.starts_with(p.as_str())) {
            continue;
        }
        let mut hit = false;
        for (j, lib) in needed.iter().enumerate() {
            if !found[j] && Path::new(dir).join(lib).is_file() {
                found[j] = true;
                hit = true;
            }
        }
        if hit {
            keep.push(dir);
        }
    }
    keep.join(":")
}

/// The vn_file fields of `.gnu.version_r` that name a renamed library:
/// (field address, new string offset). ld.so matches each against the
/// loaded objects' names and asserts when none matches.
fn verneed_renames(img: &Image, d: &Dynamic, renamed: &[(u64, u64)]) -> Result<Vec<(u64, u64)>> {
    let (Some(mut at), Some(num)) = (d.tag(DT_VERNEED), d.tag(DT_VERNEEDNUM)) else {
        return Ok(Vec::new());
    };
    let f = img.f;
    let mut out = Vec::new();
    for _ in 0..num.min(0x10000) {
        let o = img
            .vaddr_to_off(at, 16)
            .context("the version needs table (.gnu.version_r) is outside every segment")?;
        let file = f.u32(&img.data, o + 4)? as u64;
        let next = f.u32(&img.data, o + 12)? as u64;
        for &(old, new) in renamed {
            if d.str_at(file).is_some() && d.str_at(file) == d.str_at(old) {
                out.push((at + 4, new));
                break;
            }
        }
        if next == 0 {
            break;
        }
        at += next;
    }
    Ok(out)
}

fn insert_before_strtab(dyns: &mut Vec<(i64, u64)>, entry: (i64, u64)) {
    let at = dyns
        .iter()
        .position(|(t, _)| *t == DT_STRTAB)
        .unwrap_or(dyns.len());
    dyns.insert(at, entry);
}

/// Sets or clears PF_X of PT_GNU_STACK, turning a PT_NULL header into one,
/// or adding one, when there is none.
fn set_execstack(img: &mut Image, x: bool) -> Result<()> {
    let flags = layout::PF_R | layout::PF_W | if x { layout::PF_X } else { 0 };
    if let Some(i) = img.find_phdr(layout::PT_GNU_STACK) {
        let p = &mut img.phdrs[i];
        p.flags = if x {
            p.flags | layout::PF_X
        } else {
            p.flags & !layout::PF_X
        };
        return Ok(());
    }
    let stack = raw::Phdr {
        p_type: layout::PT_GNU_STACK,
        flags,
        offset: 0,
        vaddr: 0,
        paddr: 0,
        filesz: 0,
        memsz: 0,
        align: 1,
    };
    if let Some(i) = img.find_phdr(layout::PT_NULL) {
        img.phdrs[i] = stack;
        return Ok(());
    }
    img.add_phdr(stack).map(|_| ())
}

/// Makes the named symbols' `.gnu.version` entries global.
fn clear_versions(img: &mut Image, d: &Dynamic, names: &[String]) -> Result<()> {
    let (Some(versym), Some(symtab)) = (d.tag(DT_VERSYM), d.tag(DT_SYMTAB)) else {
        return Ok(());
    };
    let f = img.f;
    let syment = d.tag(DT_SYMENT).unwrap_or(if f.is64 { 24 } else { 16 });
    let count = img
        .find_section(".dynsym")
        .map(|i| img.shdrs[i].size / syment)
        .unwrap_or(0);
    for k in 0..count {
        let so = img
            .vaddr_to_off(symtab + k * syment, syment)
            .context("the dynamic symbol table")?;
        let name = f.u32(&img.data, so)? as u64;
        if d.str_at(name).is_some_and(|n| names.iter().any(|x| x == n)) {
            let vo = img
                .vaddr_to_off(versym + k * 2, 2)
                .context("the symbol version table")?;
            f.put16(&mut img.data, vo, 1);
        }
    }
    Ok(())
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
