//! `--build-resolution-cache`: NixOS's library resolution cache note.
//!
//! The note (owner `NixOS`, type [`NT_NIXOS_LD_CACHE`]) tells a loader
//! patched to read it where each DT_NEEDED library was found along the run
//! path when the file was patched. Its descriptor is a list of
//! NUL-terminated pairs, a library name then a `:`-separated list of
//! entries in run-path order: `=PATH` for a file found there, `?DIR` for a
//! directory only the loader can search (empty or relative, with `$`
//! tokens, or holding `glibc-hwcaps` subdirectories); an empty name ends
//! it. It lives in a read-only PT_LOAD of its own at the end of the file,
//! with a PT_NOTE and an allocated `.note.nixos.ldcache` section.
//!
//! A note no longer describes the file once the run path or the DT_NEEDED
//! list change, so such edits remove it ([`remove`]).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::inspect;
use super::layout::{self, Image};
use super::raw::{Phdr, SHF_ALLOC, Shdr};

pub const SECTION: &str = ".note.nixos.ldcache";
const OWNER: &[u8] = b"NixOS\0";
pub const NT_NIXOS_LD_CACHE: u32 = 0x63a8_6cb6;
const PT_NOTE: u32 = 4;
const SHT_NOTE: u32 = 7;
const SHT_SYMTAB: u32 = 2;
const SHT_DYNSYM: u32 = 11;
const SHT_REL: u32 = 9;
const SHT_RELA: u32 = 4;
const SHN_LORESERVE: u16 = 0xff00;

fn align4(v: usize) -> usize {
    v.div_ceil(4) * 4
}

/// The descriptor for these libraries and run path, None when nothing
/// resolves (or there is nothing to resolve).
fn descriptor(needed: &[String], runpath: &str) -> Option<Vec<u8>> {
    if needed.is_empty() || runpath.is_empty() {
        return None;
    }
    // A name with a slash is opened as it is, without a search.
    let searched: Vec<&String> = needed.iter().filter(|n| !n.contains('/')).collect();
    let mut cache: BTreeMap<String, String> = BTreeMap::new();
    let mut add = |lib: &str, entry: String| {
        let e = cache.entry(lib.to_string()).or_default();
        if !e.is_empty() {
            e.push(':');
        }
        e.push_str(&entry);
    };
    for dir in runpath.split(':') {
        let runtime_only = !dir.starts_with('/')
            || dir.contains('$')
            || Path::new(dir).join("glibc-hwcaps").exists();
        for lib in &searched {
            if runtime_only {
                add(lib, format!("?{dir}"));
            } else {
                let path = format!("{dir}/{lib}");
                if std::fs::File::open(&path).is_ok() {
                    add(lib, format!("={path}"));
                }
            }
        }
    }
    if cache.is_empty() {
        return None;
    }
    let mut desc = Vec::new();
    for (lib, paths) in cache {
        desc.extend_from_slice(lib.as_bytes());
        desc.push(0);
        desc.extend_from_slice(paths.as_bytes());
        desc.push(0);
    }
    desc.push(0);
    Some(desc)
}

/// The descriptor of the note section `s`, None when it does not parse.
fn existing_descriptor(img: &Image, s: &Shdr) -> Option<Vec<u8>> {
    let f = img.f;
    let end = s.offset.checked_add(s.size)?.min(img.data.len() as u64);
    let bytes = img.data.get(s.offset as usize..end as usize)?;
    if bytes.len() < 12 {
        return None;
    }
    let namesz = align4(f.u32(bytes, 0).ok()? as usize);
    let descsz = f.u32(bytes, 4).ok()? as usize;
    let start = 12usize.checked_add(namesz)?;
    bytes
        .get(start..start.checked_add(descsz)?)
        .map(<[u8]>::to_vec)
}

fn warn(what: &str) {
    eprintln!("warning: --build-resolution-cache: {what}; no cache written");
}

/// Adds the note to `data` (unchanged when there is nothing to resolve or
/// the note there already says the same).
pub fn build(data: Vec<u8>, page_size: Option<u64>) -> Result<Vec<u8>> {
    let info = inspect(&data)?;
    let mut img = Image::parse(data)?;
    img.page_size = page_size;
    let existing = img.find_section(SECTION);
    let stale = || -> Result<Vec<u8>> {
        bail!(
            "--build-resolution-cache: a resolution cache note is already present; \
             rebuild from an unpatched binary"
        )
    };
    let runpath = info.runpath.clone().or(info.rpath.clone());
    let has_dynamic = img.find_phdr(layout::PT_DYNAMIC).is_some();
    let desc = if !has_dynamic {
        None
    } else {
        descriptor(&info.needed, runpath.as_deref().unwrap_or(""))
    };
    let Some(desc) = desc else {
        if existing.is_some() {
            return stale();
        }
        warn(if !has_dynamic {
            "no dynamic section (statically linked?)"
        } else if info.needed.is_empty() || runpath.as_deref().unwrap_or("").is_empty() {
            "no DT_NEEDED entries or run path to resolve"
        } else {
            "no libraries resolved against the run path"
        });
        return Ok(img.data);
    };
    if let Some(i) = existing {
        if existing_descriptor(&img, &img.shdrs[i]).as_deref() == Some(&desc[..]) {
            return Ok(img.data);
        }
        return stale();
    }
    if img.shdrs.len() >= SHN_LORESERVE as usize {
        bail!("too many sections to add the resolution cache note");
    }
    let f = img.f;
    let page = img.max_align();

    // The note.
    let mut note = Vec::new();
    let mut word = [0u8; 4];
    for v in [OWNER.len() as u32, desc.len() as u32, NT_NIXOS_LD_CACHE] {
        f.put32(&mut word, 0, v);
        note.extend_from_slice(&word);
    }
    note.extend_from_slice(OWNER);
    note.resize(12 + align4(OWNER.len()), 0);
    note.extend_from_slice(&desc);
    note.resize(align4(note.len()), 0);
    let size = note.len() as u64;

    // Its program headers first: making room for them may move things.
    let blank = Phdr {
        p_type: PT_NOTE,
        flags: layout::PF_R,
        offset: 0,
        vaddr: 0,
        paddr: 0,
        filesz: 0,
        memsz: 0,
        align: 4,
    };
    let load_i = img.add_phdr(blank)?;
    let note_i = img.add_phdr(blank)?;
    remap_dynamic(&mut img)?;
    let top = img
        .phdrs
        .iter()
        .enumerate()
        .filter(|(i, p)| p.p_type == layout::PT_LOAD && *i != load_i)
        .map(|(_, p)| p.mem_end())
        .max()
        .context("the file has no PT_LOAD segment")?;
    let offset = (img.data.len() as u64).div_ceil(page) * page;
    let vaddr = top.div_ceil(page) * page;
    img.data.resize(offset as usize, 0);
    img.data.extend_from_slice(&note);
    for (i, p_type, align) in [(load_i, layout::PT_LOAD, page), (note_i, PT_NOTE, 4)] {
        img.phdrs[i] = Phdr {
            p_type,
            flags: layout::PF_R,
            offset,
            vaddr,
            paddr: vaddr,
            filesz: size,
            memsz: size,
            align,
        };
    }
    sort_loads(&mut img);

    // Its name, in a grown copy of the section name table at the end.
    let strndx = shstrndx(&img)?;
    let names = img
        .shdrs
        .get(strndx)
        .context("no section name table")?
        .clone();
    let mut table = img
        .data
        .get(names.offset as usize..(names.offset + names.size) as usize)
        .context("the section name table is outside the file")?
        .to_vec();
    let needle = [SECTION.as_bytes(), b"\0"].concat();
    let name_off = match table.windows(needle.len()).position(|w| w == needle) {
        Some(p) => p,
        None => {
            let p = table.len();
            table.extend_from_slice(&needle);
            let at = img.data.len() as u64;
            img.data.extend_from_slice(&table);
            let s = &mut img.shdrs[strndx];
            s.offset = at;
            s.size = table.len() as u64;
            p
        }
    };
    img.shdrs.push(Shdr {
        name_off: name_off as u32,
        sh_type: SHT_NOTE,
        flags: SHF_ALLOC,
        addr: vaddr,
        offset,
        size,
        link: 0,
        info: 0,
        addralign: 4,
        entsize: 0,
        name: SECTION.to_string(),
    });
    // The section header table, one entry longer, moves to the end.
    let old = (img.shoff, (img.shdrs.len() as u64 - 1) * f.shent());
    if !img
        .phdrs
        .iter()
        .any(|p| p.p_type == layout::PT_LOAD && old.0 < p.file_end() && old.0 + old.1 > p.offset)
    {
        img.data[old.0 as usize..(old.0 + old.1) as usize].fill(0);
    }
    let shoff = (img.data.len() as u64).div_ceil(8) * 8;
    img.data
        .resize((shoff + img.shdrs.len() as u64 * f.shent()) as usize, 0);
    img.shoff = shoff;
    write_headers(&mut img, strndx)?;
    Ok(img.data)
}

/// Follows, in the dynamic section, the sections that moved to make room
/// for program headers.
fn remap_dynamic(img: &mut Image) -> Result<()> {
    if img.moved.is_empty() {
        return Ok(());
    }
    let Some(i) = img.find_phdr(layout::PT_DYNAMIC) else {
        return Ok(());
    };
    let (f, p) = (img.f, img.phdrs[i]);
    let mut o = p.offset;
    while o + f.dynent() <= p.file_end() {
        let (tag, val) = f.read_dyn(&img.data, o)?;
        if tag == super::DT_NULL {
            break;
        }
        if super::ADDRESS_TAGS.contains(&tag) {
            let v = img.remap(val);
            f.put_addr(&mut img.data, o + f.word(), v);
        }
        o += f.dynent();
    }
    Ok(())
}

/// Whether `data` has the note's section.
pub fn present(data: &[u8]) -> bool {
    Image::parse(data.to_vec()).is_ok_and(|img| img.find_section(SECTION).is_some())
}

/// Removes the note: its section header (later sections are renumbered),
/// the PT_LOAD and PT_NOTE that map it (they become PT_NULL), and its
/// bytes (zeroed, so no stale path stays in the file).
pub fn remove(data: Vec<u8>) -> Result<Vec<u8>> {
    let mut img = Image::parse(data)?;
    let Some(k) = img.find_section(SECTION) else {
        return Ok(img.data);
    };
    let f = img.f;
    let s = img.shdrs[k].clone();
    let end = (s.offset.saturating_add(s.size)).min(img.data.len() as u64);
    if s.offset < end {
        img.data[s.offset as usize..end as usize].fill(0);
    }
    for p in &mut img.phdrs {
        if (p.p_type == layout::PT_LOAD || p.p_type == PT_NOTE)
            && p.offset == s.offset
            && p.filesz == s.size
        {
            *p = Phdr {
                p_type: layout::PT_NULL,
                flags: 0,
                offset: 0,
                vaddr: 0,
                paddr: 0,
                filesz: 0,
                memsz: 0,
                align: 0,
            };
        }
    }
    let mut strndx = shstrndx(&img)?;
    if strndx == k {
        bail!("cannot remove the resolution cache note: it is the section name table");
    }
    if strndx > k {
        strndx -= 1;
    }
    img.shdrs.remove(k);
    let k32 = k as u32;
    for sh in &mut img.shdrs {
        if sh.link == k32 {
            sh.link = 0;
        } else if sh.link > k32 {
            sh.link -= 1;
        }
        if sh.sh_type == SHT_REL || sh.sh_type == SHT_RELA {
            if sh.info == k32 {
                sh.info = 0;
            } else if sh.info > k32 {
                sh.info -= 1;
            }
        }
    }
    // Symbols defined relative to a later section.
    let (entsize, shndx_at) = if f.is64 { (24, 6) } else { (16, 14) };
    for sh in img.shdrs.clone() {
        if sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM || !sh.in_file() {
            continue;
        }
        for i in 0..sh.size / entsize {
            let at = sh.offset + i * entsize + shndx_at;
            let ndx = f.u16(&img.data, at)?;
            if ndx as usize > k && ndx < SHN_LORESERVE {
                f.put16(&mut img.data, at, ndx - 1);
            }
        }
    }
    // The table's last entry is no longer part of it.
    let last = img.shoff + img.shdrs.len() as u64 * f.shent();
    img.data[last as usize..(last + f.shent()) as usize].fill(0);
    write_headers(&mut img, strndx)?;
    Ok(img.data)
}

fn shstrndx(img: &Image) -> Result<usize> {
    let at = if img.f.is64 { 62 } else { 50 };
    Ok(img.f.u16(&img.data, at)? as usize)
}

/// [`Image::finish`], then every section header field, e_shnum and
/// e_shstrndx.
fn write_headers(img: &mut Image, strndx: usize) -> Result<()> {
    img.finish()?;
    let f = img.f;
    for (i, s) in img.shdrs.iter().enumerate() {
        s.write_full(f, &mut img.data, img.shoff + i as u64 * f.shent());
    }
    let at = if f.is64 { 60 } else { 48 };
    f.put16(&mut img.data, at, img.shdrs.len() as u16);
    f.put16(&mut img.data, at + 2, strndx as u16);
    Ok(())
}

/// Puts the PT_LOAD headers in address order (the loader maps from the
/// first to the last), in the slots they occupy.
fn sort_loads(img: &mut Image) {
    let slots: Vec<usize> = (0..img.phdrs.len())
        .filter(|&i| img.phdrs[i].p_type == layout::PT_LOAD)
        .collect();
    let mut loads: Vec<Phdr> = slots.iter().map(|&i| img.phdrs[i]).collect();
    loads.sort_by_key(|p| p.vaddr);
    for (i, p) in slots.into_iter().zip(loads) {
        img.phdrs[i] = p;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_and_paths_in_run_path_order() {
        let dir = std::env::temp_dir().join(format!("elfpack-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("libfoo.so"), b"").unwrap();
        let d = dir.display();
        let needed = vec!["libfoo.so".to_string(), "/abs/libx.so".to_string()];
        let desc = descriptor(&needed, &format!(":rel:$ORIGIN/x:{d}")).unwrap();
        let want = format!("libfoo.so\0?:?rel:?$ORIGIN/x:={d}/libfoo.so\0\0");
        assert_eq!(String::from_utf8(desc).unwrap(), want);
        assert!(descriptor(&needed, "/nonexistent-dir").is_none());
        assert!(descriptor(&[], &d.to_string()).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
