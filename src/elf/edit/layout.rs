//! The raw ELF64 little-endian structures an edit touches, read and written
//! at their file offsets.

use anyhow::{Result, bail};

use super::StringTable;

pub const DT_NULL: i64 = 0;
pub const DT_NEEDED: i64 = 1;
pub const DT_STRTAB: i64 = 5;
pub const DT_STRSZ: i64 = 10;
pub const DT_SONAME: i64 = 14;
pub const DT_RPATH: i64 = 15;
pub const DT_RUNPATH: i64 = 29;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_NOTE: u32 = 4;
const PF_W: u32 = 2;
const PF_R: u32 = 4;
const PAGE: u64 = 0x1000;
/// Free DT_NULL slots left after a moved dynamic section, so later edits
/// (e.g. the single-file launcher's) can add entries in place.
const SPARE_DYN: usize = 4;

#[derive(Debug, Clone, Copy)]
pub struct Phdr {
    pub p_type: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// A program header to write.
struct NewPhdr {
    p_type: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    size: u64,
    align: u64,
}

#[derive(Debug, Clone)]
pub struct Shdr {
    pub name: String,
}

/// What `--print-*` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynInfo {
    pub interpreter: Option<String>,
    pub rpath: Option<String>,
    pub runpath: Option<String>,
    pub needed: Vec<String>,
    pub soname: Option<String>,
}

pub struct Elf<'a> {
    pub data: &'a [u8],
    phoff: u64,
    phentsize: u64,
    shoff: u64,
    shentsize: u64,
    pub phdrs: Vec<Phdr>,
    pub shdrs: Vec<Shdr>,
    /// All dynamic entries, trailing DT_NULLs included (they are capacity).
    pub dynamic: Vec<(i64, u64)>,
    pub dynamic_index: Option<usize>,
    pub interp_index: Option<usize>,
    pub dynstr: &'a [u8],
}

fn u16_at(d: &[u8], o: u64) -> Result<u16> {
    let o = o as usize;
    match o.checked_add(2).and_then(|e| d.get(o..e)) {
        Some(b) => Ok(u16::from_le_bytes(b.try_into().unwrap())),
        None => bail!("truncated at byte {o}"),
    }
}
fn u32_at(d: &[u8], o: u64) -> Result<u32> {
    let o = o as usize;
    match o.checked_add(4).and_then(|e| d.get(o..e)) {
        Some(b) => Ok(u32::from_le_bytes(b.try_into().unwrap())),
        None => bail!("truncated at byte {o}"),
    }
}
fn u64_at(d: &[u8], o: u64) -> Result<u64> {
    let o = o as usize;
    match o.checked_add(8).and_then(|e| d.get(o..e)) {
        Some(b) => Ok(u64::from_le_bytes(b.try_into().unwrap())),
        None => bail!("truncated at byte {o}"),
    }
}
fn put_u32(d: &mut [u8], o: u64, v: u32) {
    d[o as usize..o as usize + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(d: &mut [u8], o: u64, v: u64) {
    d[o as usize..o as usize + 8].copy_from_slice(&v.to_le_bytes());
}
fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

impl<'a> Elf<'a> {
    pub fn parse(data: &'a [u8]) -> Result<Self> {
        if data.len() < 64 || !data.starts_with(crate::elf::MAGIC) {
            bail!("not an ELF file (or shorter than an ELF header)");
        }
        if data[4] != 2 || data[5] != 1 {
            bail!("only 64-bit little-endian ELF files can be edited");
        }
        let phoff = u64_at(data, 32)?;
        let shoff = u64_at(data, 40)?;
        let phentsize = u16_at(data, 54)? as u64;
        let phnum = u16_at(data, 56)? as u64;
        let shentsize = u16_at(data, 58)? as u64;
        let shnum = u16_at(data, 60)? as u64;
        let shstrndx = u16_at(data, 62)? as u64;
        if phnum > 0 && phentsize != 56 {
            bail!("unexpected program header size {phentsize}");
        }
        let table_fits = |off: u64, n: u64, size: u64| {
            n.checked_mul(size)
                .and_then(|len| off.checked_add(len))
                .is_some_and(|end| end <= data.len() as u64)
        };
        if !table_fits(phoff, phnum, phentsize) {
            bail!("truncated: the program header table ends past the end of the file");
        }
        let mut phdrs = Vec::new();
        for i in 0..phnum {
            let b = phoff + i * phentsize;
            phdrs.push(Phdr {
                p_type: u32_at(data, b)?,
                offset: u64_at(data, b + 8)?,
                vaddr: u64_at(data, b + 16)?,
                filesz: u64_at(data, b + 32)?,
                memsz: u64_at(data, b + 40)?,
            });
        }
        for p in &phdrs {
            if p.offset
                .checked_add(p.filesz)
                .is_none_or(|e| e > data.len() as u64)
            {
                bail!("truncated: a segment ends past the end of the file");
            }
            if p.vaddr
                .checked_add(p.memsz)
                .is_none_or(|e| e > u64::MAX / 2)
            {
                bail!("a segment's addresses overflow");
            }
        }
        let mut shdrs = Vec::new();
        if shoff != 0 && shnum != 0 {
            if shentsize != 64 {
                bail!("unexpected section header size {shentsize}");
            }
            if !table_fits(shoff, shnum, shentsize) {
                bail!("truncated: the section header table ends past the end of the file");
            }
            // (name offset, file offset, size) of every section.
            let raw: Vec<(u32, u64, u64)> = (0..shnum)
                .map(|i| {
                    let b = shoff + i * shentsize;
                    Ok((
                        u32_at(data, b)?,
                        u64_at(data, b + 24)?,
                        u64_at(data, b + 32)?,
                    ))
                })
                .collect::<Result<_>>()?;
            let names = raw
                .get(shstrndx as usize)
                .map(|&(_, off, size)| (off, size));
            for &(name, _, _) in &raw {
                let name = names
                    .and_then(|(off, size)| {
                        let s = data.get(off as usize..off.checked_add(size)? as usize)?;
                        let tail = s.get(name as usize..)?;
                        let end = tail.iter().position(|&b| b == 0)?;
                        Some(String::from_utf8_lossy(&tail[..end]).into_owned())
                    })
                    .unwrap_or_default();
                shdrs.push(Shdr { name });
            }
        }
        let dynamic_index = phdrs.iter().position(|p| p.p_type == PT_DYNAMIC);
        let interp_index = phdrs.iter().position(|p| p.p_type == PT_INTERP);
        let mut dynamic = Vec::new();
        if let Some(i) = dynamic_index {
            let p = phdrs[i];
            for k in 0..p.filesz / 16 {
                dynamic.push((
                    u64_at(data, p.offset + k * 16)? as i64,
                    u64_at(data, p.offset + k * 16 + 8)?,
                ));
            }
        }
        let mut elf = Elf {
            data,
            phoff,
            phentsize,
            shoff,
            shentsize,
            phdrs,
            shdrs,
            dynamic,
            dynamic_index,
            interp_index,
            dynstr: &[],
        };
        if let (Some(strtab), Some(strsz)) = (elf.tag(DT_STRTAB), elf.tag(DT_STRSZ)) {
            let off = elf
                .vaddr_to_offset(strtab)
                .ok_or_else(|| anyhow::anyhow!("DT_STRTAB is outside every segment"))?;
            elf.dynstr = data
                .get(off as usize..off.saturating_add(strsz) as usize)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "truncated: the dynamic string table ends past the end of the file"
                    )
                })?;
        }
        Ok(elf)
    }

    pub fn tag(&self, tag: i64) -> Option<u64> {
        self.live_dynamic()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| *v)
    }

    pub fn has_tag(&self, tag: i64) -> bool {
        self.tag(tag).is_some()
    }

    fn live_dynamic(&self) -> impl Iterator<Item = &(i64, u64)> {
        self.dynamic.iter().take_while(|(t, _)| *t != DT_NULL)
    }

    pub fn dynstr_at(&self, off: u64) -> Option<&str> {
        let tail = self.dynstr.get(off as usize..)?;
        let end = tail.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&tail[..end]).ok()
    }

    fn vaddr_to_offset(&self, vaddr: u64) -> Option<u64> {
        self.phdrs
            .iter()
            .find(|p| p.p_type == PT_LOAD && vaddr >= p.vaddr && vaddr < p.vaddr + p.filesz)
            .map(|p| vaddr - p.vaddr + p.offset)
    }

    pub fn interpreter(&self) -> Option<String> {
        let p = self.phdrs[self.interp_index?];
        let s = self
            .data
            .get(p.offset as usize..(p.offset + p.filesz) as usize)?;
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        Some(String::from_utf8_lossy(&s[..end]).into_owned())
    }

    pub fn dyn_info(&self) -> DynInfo {
        let string = |tag| {
            self.tag(tag)
                .and_then(|v| self.dynstr_at(v))
                .map(str::to_string)
        };
        DynInfo {
            interpreter: self.interpreter(),
            rpath: string(DT_RPATH),
            runpath: string(DT_RUNPATH),
            needed: self
                .live_dynamic()
                .filter(|(t, _)| *t == DT_NEEDED)
                .filter_map(|(_, v)| self.dynstr_at(*v).map(str::to_string))
                .collect(),
            soname: string(DT_SONAME),
        }
    }

    /// Bytes available for the interpreter string, its NUL included.
    pub fn interp_capacity(&self) -> usize {
        self.interp_index
            .map_or(0, |i| self.phdrs[i].filesz as usize)
    }

    fn phdr_at(&self, i: usize) -> u64 {
        self.phoff + i as u64 * self.phentsize
    }

    /// Writes program header `i` (p_paddr = p_vaddr, p_memsz = p_filesz).
    fn set_phdr(&self, out: &mut [u8], i: usize, seg: NewPhdr) {
        let b = self.phdr_at(i);
        put_u32(out, b, seg.p_type);
        put_u32(out, b + 4, seg.flags);
        put_u64(out, b + 8, seg.offset);
        put_u64(out, b + 16, seg.vaddr);
        put_u64(out, b + 24, seg.vaddr);
        put_u64(out, b + 32, seg.size);
        put_u64(out, b + 40, seg.size);
        put_u64(out, b + 48, seg.align);
    }

    fn set_section(&self, out: &mut [u8], name: &str, offset: u64, addr: u64, size: u64) {
        if let Some(i) = self.shdrs.iter().position(|s| s.name == name) {
            let b = self.shoff + i as u64 * self.shentsize;
            put_u64(out, b + 16, addr);
            put_u64(out, b + 24, offset);
            put_u64(out, b + 32, size);
        }
    }

    pub fn write_interp_in_place(&self, out: &mut [u8], interp: &str) {
        let i = self.interp_index.expect("checked by the caller");
        let p = self.phdrs[i];
        let start = p.offset as usize;
        out[start..start + p.filesz as usize].fill(0);
        out[start..start + interp.len()].copy_from_slice(interp.as_bytes());
        let len = interp.len() as u64 + 1;
        let b = self.phdr_at(i);
        put_u64(out, b + 32, len);
        put_u64(out, b + 40, len);
        self.set_section(out, ".interp", p.offset, p.vaddr, len);
    }

    /// Rewrites the dynamic entries where they are; the rest of the
    /// original capacity becomes DT_NULL.
    pub fn write_dynamic_in_place(&self, out: &mut [u8], dyns: &[(i64, u64)]) {
        let p = self.phdrs[self.dynamic_index.expect("checked by the caller")];
        out[p.offset as usize..(p.offset + p.filesz) as usize].fill(0);
        for (k, (t, v)) in dyns.iter().enumerate() {
            put_u64(out, p.offset + k as u64 * 16, *t as u64);
            put_u64(out, p.offset + k as u64 * 16 + 8, *v);
        }
    }

    /// Appends a new RW PT_LOAD (taking over the first PT_NOTE header)
    /// holding whatever outgrew its place.
    pub fn append_segment(
        &self,
        out: &mut Vec<u8>,
        interp: Option<&str>,
        strings: &StringTable,
        dyns: &mut [(i64, u64)],
        touches_dynamic: bool,
    ) -> Result<()> {
        let last_load = self.phdrs.iter().rposition(|p| p.p_type == PT_LOAD);
        let Some(last_load) = last_load else {
            bail!("the file has no PT_LOAD segment")
        };
        let note = self
            .phdrs
            .iter()
            .enumerate()
            .position(|(i, p)| i > last_load && p.p_type == PT_NOTE)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no PT_NOTE program header after the PT_LOADs to reuse for a new segment"
                )
            })?;
        let end = self
            .phdrs
            .iter()
            .filter(|p| p.p_type == PT_LOAD)
            .map(|p| p.vaddr + p.memsz)
            .max()
            .unwrap_or(0);
        let file_off = align_up(out.len() as u64, PAGE);
        let vaddr = align_up(end, PAGE);
        out.resize(file_off as usize, 0);
        let mut seg: Vec<u8> = Vec::new();
        if let Some(i) = interp {
            let at = seg.len() as u64;
            seg.extend_from_slice(i.as_bytes());
            seg.push(0);
            let len = i.len() as u64 + 1;
            let pi = self.interp_index.expect("checked by the caller");
            self.set_phdr(
                out,
                pi,
                NewPhdr {
                    p_type: PT_INTERP,
                    flags: PF_R,
                    offset: file_off + at,
                    vaddr: vaddr + at,
                    size: len,
                    align: 1,
                },
            );
            self.set_section(out, ".interp", file_off + at, vaddr + at, len);
        }
        if touches_dynamic {
            let strtab_at = seg.len() as u64;
            seg.extend_from_slice(&strings.bytes);
            for e in dyns.iter_mut() {
                match e.0 {
                    DT_STRTAB => e.1 = vaddr + strtab_at,
                    DT_STRSZ => e.1 = strings.bytes.len() as u64,
                    _ => {}
                }
            }
            self.set_section(
                out,
                ".dynstr",
                file_off + strtab_at,
                vaddr + strtab_at,
                strings.bytes.len() as u64,
            );
            while !seg.len().is_multiple_of(8) {
                seg.push(0);
            }
            let dyn_at = seg.len() as u64;
            for (t, v) in dyns.iter() {
                seg.extend_from_slice(&(*t as u64).to_le_bytes());
                seg.extend_from_slice(&v.to_le_bytes());
            }
            seg.extend(std::iter::repeat_n(0u8, 16 * (1 + SPARE_DYN)));
            let dyn_size = seg.len() as u64 - dyn_at;
            let di = self.dynamic_index.expect("checked by the caller");
            let dynamic = NewPhdr {
                p_type: PT_DYNAMIC,
                flags: PF_R | PF_W,
                offset: file_off + dyn_at,
                vaddr: vaddr + dyn_at,
                size: dyn_size,
                align: 8,
            };
            self.set_phdr(out, di, dynamic);
            self.set_section(out, ".dynamic", file_off + dyn_at, vaddr + dyn_at, dyn_size);
        }
        let load = NewPhdr {
            p_type: PT_LOAD,
            flags: PF_R | PF_W,
            offset: file_off,
            vaddr,
            size: seg.len() as u64,
            align: PAGE,
        };
        self.set_phdr(out, note, load);
        out.extend_from_slice(&seg);
        Ok(())
    }
}
