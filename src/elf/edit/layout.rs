//! Where an edit's new bytes go.
//!
//! Whatever outgrows its place (the interpreter string, the dynamic string
//! table, the dynamic section) is appended to one read-write PT_LOAD at the
//! end of the file: the *added segment*. A later edit grows that segment
//! (it is the last PT_LOAD, it ends at the end of the file and has no bss)
//! instead of adding another, so a file can be edited any number of times.
//!
//! Adding the segment needs one more program header. The table stays where
//! the kernel (and qemu-user, and older kernels, which compute AT_PHDR as
//! "first mapped page + e_phoff") expect it, inside the first PT_LOAD:
//! 1. if the bytes after the table are free (Go's internal linker leaves most
//!    of the first page empty), the table just grows;
//! 2. in an ET_EXEC file, the file's contents after the table shift by whole
//!    pages (of the file's own maximum page size) and the first PT_LOAD starts
//!    that much lower in memory, so every other byte keeps its address;
//! 3. in an ET_DYN file (PIE, library) the sections right after the table
//!    (`.interp`, notes, hash tables, `.dynsym`, ... only ones found through
//!    program headers, dynamic tags and section headers) move into the added
//!    segment and their references follow;
//! 4. failing that the table itself moves into the added segment (kernels
//!    since 5.18 and ld.so find it through PT_PHDR / the PT_LOAD holding it).
//!
//! PT_PHDR follows the table, the new PT_LOAD is inserted after the last
//! PT_LOAD (ascending addresses), and its address is congruent to its file
//! offset modulo the file's largest PT_LOAD alignment.

use anyhow::{Context, Result, bail};

use super::raw::{Fmt, Phdr, SHF_ALLOC, Shdr};

pub const PT_NULL: u32 = 0;
pub const PT_LOAD: u32 = 1;
pub const PT_DYNAMIC: u32 = 2;
pub const PT_INTERP: u32 = 3;
pub const PT_PHDR: u32 = 6;
pub const PT_GNU_STACK: u32 = 0x6474_e551;
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;
pub const ET_EXEC: u16 = 2;
const SHT_DYNAMIC: u32 = 6;

/// A parsed file being edited; `data` is the output.
pub struct Image {
    pub f: Fmt,
    pub data: Vec<u8>,
    pub e_type: u16,
    pub phoff: u64,
    pub shoff: u64,
    pub phdrs: Vec<Phdr>,
    pub shdrs: Vec<Shdr>,
    /// `--page-size`: overrides the alignment of an added segment.
    pub page_size: Option<u64>,
    /// Address ranges moved by this edit: (start, end, delta).
    pub moved: Vec<(u64, u64, i64)>,
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a.max(1)) * a.max(1)
}

impl Image {
    pub fn parse(data: Vec<u8>) -> Result<Image> {
        let f = Fmt::of(&data)?;
        let d = &data;
        let (phoff, shoff, at) = if f.is64 {
            (f.u64(d, 32)?, f.u64(d, 40)?, 54)
        } else {
            (f.u32(d, 28)?.into(), f.u32(d, 32)?.into(), 42)
        };
        let phentsize = f.u16(d, at)? as u64;
        let phnum = f.u16(d, at + 2)? as u64;
        let shentsize = f.u16(d, at + 4)? as u64;
        let mut shnum = f.u16(d, at + 6)? as u64;
        let shstrndx = f.u16(d, at + 8)? as u64;
        if phnum > 0 && phentsize != f.phent() {
            bail!("unexpected program header size {phentsize}");
        }
        let fits = |off: u64, n: u64, size: u64| {
            n.checked_mul(size)
                .and_then(|len| off.checked_add(len))
                .is_some_and(|end| end <= d.len() as u64)
        };
        if !fits(phoff, phnum, f.phent()) {
            bail!("truncated: the program header table ends past the end of the file");
        }
        let mut phdrs = Vec::new();
        for i in 0..phnum {
            let p = Phdr::read(f, d, phoff + i * f.phent())?;
            if p.offset
                .checked_add(p.filesz)
                .is_none_or(|e| e > d.len() as u64)
                && p.p_type != PT_NULL
            {
                bail!("truncated: a segment ends past the end of the file");
            }
            if p.vaddr
                .checked_add(p.memsz)
                .is_none_or(|e| e > u64::MAX / 2)
            {
                bail!("a segment's addresses overflow");
            }
            phdrs.push(p);
        }
        let mut shdrs = Vec::new();
        if shoff != 0 && shnum == 0 && fits(shoff, 1, f.shent()) {
            // More than 0xff00 sections: the count is in section 0.
            shnum = Shdr::read(f, d, shoff)?.size;
        }
        if shoff != 0 && shnum != 0 {
            if shentsize != f.shent() {
                bail!("unexpected section header size {shentsize}");
            }
            if !fits(shoff, shnum, f.shent()) {
                bail!("truncated: the section header table ends past the end of the file");
            }
            for i in 0..shnum {
                shdrs.push(Shdr::read(f, d, shoff + i * f.shent())?);
            }
            if let Some(names) = shdrs.get(shstrndx as usize).cloned() {
                for s in &mut shdrs {
                    s.name = (|| {
                        let t = d.get(names.offset as usize..)?;
                        let t = t.get(..(names.size as usize).min(t.len()))?;
                        let tail = t.get(s.name_off as usize..)?;
                        let end = tail.iter().position(|&b| b == 0)?;
                        Some(String::from_utf8_lossy(&tail[..end]).into_owned())
                    })()
                    .unwrap_or_default();
                }
            }
            for s in &shdrs {
                if s.in_file()
                    && s.offset
                        .checked_add(s.size)
                        .is_none_or(|e| e > d.len() as u64)
                {
                    bail!(
                        "truncated: section {} ends past the end of the file",
                        s.name
                    );
                }
            }
        }
        Ok(Image {
            f,
            e_type: f.u16(d, 16)?,
            data,
            phoff,
            shoff,
            phdrs,
            shdrs,
            page_size: None,
            moved: Vec::new(),
        })
    }

    pub fn find_phdr(&self, t: u32) -> Option<usize> {
        self.phdrs.iter().position(|p| p.p_type == t)
    }

    pub fn find_section(&self, name: &str) -> Option<usize> {
        self.shdrs.iter().position(|s| s.name == name)
    }

    pub fn vaddr_to_off(&self, vaddr: u64, len: u64) -> Option<u64> {
        self.phdrs
            .iter()
            .filter(|p| p.p_type == PT_LOAD)
            .find(|p| vaddr >= p.vaddr && vaddr.saturating_add(len) <= p.vaddr + p.filesz)
            .map(|p| vaddr - p.vaddr + p.offset)
    }

    /// Where the dynamic section is: (file offset, address, size), from
    /// PT_DYNAMIC or else from the `.dynamic` section header.
    pub fn dynamic_place(&self) -> Option<(u64, u64, u64)> {
        if let Some(i) = self.find_phdr(PT_DYNAMIC) {
            let p = self.phdrs[i];
            return Some((p.offset, p.vaddr, p.filesz));
        }
        let s = self.shdrs.iter().find(|s| s.sh_type == SHT_DYNAMIC)?;
        Some((s.offset, s.addr, s.size))
    }

    /// The largest PT_LOAD alignment (the page size the file was linked for).
    pub fn max_align(&self) -> u64 {
        if let Some(p) = self.page_size {
            return p;
        }
        self.phdrs
            .iter()
            .filter(|p| p.p_type == PT_LOAD)
            .map(|p| p.align)
            .max()
            .unwrap_or(0)
            .max(0x1000)
    }

    /// The added segment of an earlier edit, which can grow at its end.
    pub fn growable(&self) -> Option<usize> {
        let last = self.phdrs.iter().rposition(|p| p.p_type == PT_LOAD)?;
        let p = self.phdrs[last];
        let top = self
            .phdrs
            .iter()
            .filter(|p| p.p_type == PT_LOAD)
            .map(|p| p.mem_end())
            .max()?;
        (p.file_end() == self.data.len() as u64
            && p.memsz == p.filesz
            && p.mem_end() == top
            && p.flags == PF_R | PF_W)
            .then_some(last)
    }

    /// Appends `bytes` to the added segment `seg` at an offset aligned to
    /// `align`; returns its (file offset, address).
    pub fn append(&mut self, seg: usize, bytes: &[u8], align: u64) -> (u64, u64) {
        let off = align_up(self.data.len() as u64, align);
        self.data.resize(off as usize, 0);
        self.data.extend_from_slice(bytes);
        let p = &mut self.phdrs[seg];
        p.filesz = self.data.len() as u64 - p.offset;
        p.memsz = p.filesz;
        (off, off - p.offset + p.vaddr)
    }

    /// The added segment, created if need be. A new one starts at the file
    /// bytes of address `from` when given (the segment then maps the file
    /// from there, so a table there can grow at the end of the file without
    /// a copy).
    pub fn segment(&mut self, from: Option<u64>) -> Result<usize> {
        self.segment_with(from, 0)
    }

    /// [`Image::segment`], leaving `extra` PT_NULL headers at the end of the
    /// table when it creates the segment.
    /// With `extra` > 0 and an added segment already there, room for the
    /// headers is made the same ways, moving what must move into it.
    fn segment_with(&mut self, from: Option<u64>, extra: u64) -> Result<usize> {
        let grown = self.growable();
        if let (Some(i), 0) = (grown, extra) {
            return Ok(i);
        }
        if !self.phdrs.iter().any(|p| p.p_type == PT_LOAD) {
            bail!("the file has no PT_LOAD segment");
        }
        let align = self.max_align();
        let phent = self.f.phent();
        let table_end = self.phoff + self.phdrs.len() as u64 * phent;
        let need_end = table_end + phent * (1 + extra);
        if self.shoff >= table_end && self.shoff < need_end {
            // Go's linker puts the section headers right after the program
            // headers; nothing loads them, so they move to the end.
            self.move_section_headers();
        }
        let room = self.free_after(table_end);
        enum Way {
            InPlace,
            Blob(u64, u64),
            MoveTable,
        }
        let way = if room >= need_end {
            Way::InPlace
        } else if self.e_type == ET_EXEC && self.can_shift(align) {
            self.shift(table_end, align);
            Way::InPlace
        } else if let Some((start, end)) = self.movable_blob(table_end, need_end) {
            Way::Blob(start, end)
        } else {
            Way::MoveTable
        };
        let seg = match grown {
            Some(_) => self
                .growable()
                .context("internal error: the added segment moved")?,
            None => self.new_segment(from, align)?,
        };
        match way {
            Way::InPlace => {}
            Way::Blob(start, end) => {
                let bytes = self.data[start as usize..end as usize].to_vec();
                // Keep the blob's alignment within a 64-byte line.
                let pad = (start % 64 + 64 - self.data.len() as u64 % 64) % 64;
                let len = self.data.len() as u64 + pad;
                self.data.resize(len as usize, 0);
                let (noff, nvaddr) = self.append(seg, &bytes, 1);
                self.data[start as usize..end as usize].fill(0);
                let old_vaddr = self.off_to_vaddr(start).context("the moved sections")?;
                let dv = nvaddr as i64 - old_vaddr as i64;
                let doff = noff - start;
                for p in &mut self.phdrs {
                    if p.p_type != PT_LOAD
                        && p.p_type != PT_PHDR
                        && p.filesz > 0
                        && p.offset >= start
                        && p.file_end() <= end
                    {
                        p.offset += doff;
                        p.vaddr = (p.vaddr as i64 + dv) as u64;
                        p.paddr = (p.paddr as i64 + dv) as u64;
                    }
                }
                for s in &mut self.shdrs {
                    if s.in_file() && s.offset >= start && s.offset + s.size <= end {
                        s.offset += doff;
                        if s.flags & SHF_ALLOC != 0 {
                            s.addr = (s.addr as i64 + dv) as u64;
                        }
                    }
                }
                self.moved.push((old_vaddr, old_vaddr + (end - start), dv));
            }
            Way::MoveTable => {
                let n = self.phdrs.len() as u64 + extra;
                let (noff, nvaddr) = self.append(seg, &vec![0; (n * phent) as usize], 8);
                self.phoff = noff;
                if let Some(i) = self.find_phdr(PT_PHDR) {
                    let p = &mut self.phdrs[i];
                    p.offset = noff;
                    p.vaddr = nvaddr;
                    p.paddr = nvaddr;
                }
            }
        }
        for _ in 0..extra {
            self.phdrs.push(Phdr {
                p_type: PT_NULL,
                flags: 0,
                offset: 0,
                vaddr: 0,
                paddr: 0,
                filesz: 0,
                memsz: 0,
                align: 0,
            });
        }
        let size = self.phdrs.len() as u64 * phent;
        if let Some(i) = self.find_phdr(PT_PHDR) {
            self.phdrs[i].filesz = size;
            self.phdrs[i].memsz = size;
        }
        Ok(seg)
    }

    /// A new added segment after the last PT_LOAD, from the file bytes of
    /// `from` or the end of the file; returns its index.
    fn new_segment(&mut self, from: Option<u64>, align: u64) -> Result<usize> {
        let top = self
            .phdrs
            .iter()
            .filter(|p| p.p_type == PT_LOAD)
            .map(|p| p.mem_end())
            .max()
            .unwrap_or(0);
        // (Looked up only now: making room may have shifted the file.)
        let from = from.filter(|&v| self.remap(v) == v);
        let off0 = match from.and_then(|v| self.vaddr_to_off(v, 1)) {
            Some(o) => o,
            None => {
                let o = align_up(self.data.len() as u64, 16);
                self.data.resize(o as usize, 0);
                o
            }
        };
        let vaddr0 = align_up(top, align) + off0 % align;
        let last_load = self
            .phdrs
            .iter()
            .rposition(|p| p.p_type == PT_LOAD)
            .unwrap();
        let seg = last_load + 1;
        self.phdrs.insert(
            seg,
            Phdr {
                p_type: PT_LOAD,
                flags: PF_R | PF_W,
                offset: off0,
                vaddr: vaddr0,
                paddr: vaddr0,
                filesz: self.data.len() as u64 - off0,
                memsz: self.data.len() as u64 - off0,
                align,
            },
        );
        Ok(seg)
    }

    /// Adds a program header at the end of the table (a PT_LOAD above
    /// every other one); returns its index.
    pub fn add_phdr(&mut self, p: Phdr) -> Result<usize> {
        if self.find_phdr(PT_NULL).is_none() {
            let phent = self.f.phent();
            let table_end = self.phoff + self.phdrs.len() as u64 * phent;
            if self.free_after(table_end) >= table_end + phent {
                self.phdrs.push(p);
                self.grow_pt_phdr();
                return Ok(self.phdrs.len() - 1);
            }
            self.segment_with(None, 1)?;
        }
        let i = self.find_phdr(PT_NULL).expect("made above");
        self.phdrs[i] = p;
        Ok(i)
    }

    fn grow_pt_phdr(&mut self) {
        let size = self.phdrs.len() as u64 * self.f.phent();
        if let Some(i) = self.find_phdr(PT_PHDR) {
            self.phdrs[i].filesz = size;
            self.phdrs[i].memsz = size;
        }
    }

    fn move_section_headers(&mut self) {
        let len = self.shdrs.len() as u64 * self.f.shent();
        let old = self.shoff as usize;
        let table = self.data[old..old + len as usize].to_vec();
        self.data[old..old + len as usize].fill(0);
        let new = align_up(self.data.len() as u64, 8);
        self.data.resize(new as usize, 0);
        self.data.extend_from_slice(&table);
        self.shoff = new;
    }

    fn off_to_vaddr(&self, off: u64) -> Option<u64> {
        self.phdrs
            .iter()
            .find(|p| p.p_type == PT_LOAD && off >= p.offset && off < p.file_end())
            .map(|p| off - p.offset + p.vaddr)
    }

    /// The end of the free bytes after the program header table (which must
    /// stay inside the PT_LOAD that maps it).
    fn free_after(&self, table_end: u64) -> u64 {
        let mut end = self
            .phdrs
            .iter()
            .find(|p| p.p_type == PT_LOAD && p.offset <= self.phoff && table_end <= p.file_end())
            .map_or(table_end, |p| p.file_end());
        for s in &self.shdrs {
            if s.in_file() && s.offset + s.size > self.phoff {
                if s.offset < table_end {
                    return table_end;
                }
                end = end.min(s.offset);
            }
        }
        for p in &self.phdrs {
            if p.p_type != PT_LOAD && p.p_type != PT_PHDR && p.filesz > 0 && p.offset >= table_end {
                end = end.min(p.offset);
            }
        }
        if self.shoff >= table_end {
            end = end.min(self.shoff);
        }
        end
    }

    fn first_load(&self) -> Option<usize> {
        self.phdrs
            .iter()
            .position(|p| p.p_type == PT_LOAD && p.offset == 0)
    }

    fn can_shift(&self, align: u64) -> bool {
        let Some(i) = self.first_load() else {
            return false;
        };
        let first = self.phdrs[i];
        let lowest = self
            .phdrs
            .iter()
            .filter(|p| p.p_type == PT_LOAD)
            .map(|p| p.vaddr)
            .min();
        first.vaddr >= align + 0x10000 && lowest == Some(first.vaddr) && self.phoff < first.filesz
    }

    /// Inserts `align` zero bytes at `at` (the end of the program header
    /// table); the first PT_LOAD starts that much lower, so nothing else
    /// changes address.
    fn shift(&mut self, at: u64, align: u64) {
        let tail = self.data.split_off(at as usize);
        self.data.resize((at + align) as usize, 0);
        self.data.extend_from_slice(&tail);
        for p in &mut self.phdrs {
            if p.p_type == PT_NULL {
                continue;
            }
            if p.offset >= at {
                p.offset += align;
            } else if p.p_type == PT_LOAD && p.offset == 0 {
                p.vaddr -= align;
                p.paddr = p.paddr.saturating_sub(align);
                p.filesz += align;
                p.memsz += align;
            } else if p.p_type == PT_PHDR {
                p.vaddr -= align;
                p.paddr = p.paddr.saturating_sub(align);
            } else if p.filesz > 0 && p.file_end() > at {
                // A segment straddling the table: grow it over the gap.
                p.filesz += align;
                p.memsz += align;
            }
        }
        for s in &mut self.shdrs {
            if s.offset >= at && s.sh_type != super::raw::SHT_NULL {
                s.offset += align;
            }
        }
        if self.shoff >= at {
            self.shoff += align;
        }
    }

    /// The sections between `table_end` and `need_end` (widened to whole
    /// sections and segments), if all are found only through headers and
    /// dynamic tags and so can move.
    fn movable_blob(&self, table_end: u64, need_end: u64) -> Option<(u64, u64)> {
        let mut end = need_end;
        loop {
            let mut grew = false;
            for s in &self.shdrs {
                if s.in_file() && s.offset < end && s.offset + s.size > table_end {
                    if s.offset < table_end || !movable(s) {
                        return None;
                    }
                    if s.offset + s.size > end {
                        end = s.offset + s.size;
                        grew = true;
                    }
                }
            }
            for p in &self.phdrs {
                if p.p_type != PT_LOAD
                    && p.p_type != PT_PHDR
                    && p.filesz > 0
                    && p.offset < end
                    && p.file_end() > table_end
                {
                    if p.offset < table_end {
                        return None;
                    }
                    if p.file_end() > end {
                        end = p.file_end();
                        grew = true;
                    }
                }
            }
            if !grew {
                break;
            }
        }
        // All of it inside the PT_LOAD holding the table.
        let i = self.first_load()?;
        (end <= self.phdrs[i].file_end() && self.phoff >= self.phdrs[i].offset)
            .then_some((table_end, end))
    }

    /// An address after this edit's moves.
    pub fn remap(&self, v: u64) -> u64 {
        for &(lo, hi, d) in &self.moved {
            if v >= lo && v < hi {
                return (v as i64 + d) as u64;
            }
        }
        v
    }

    /// Writes the headers back (program header table, section headers,
    /// e_phoff, e_phnum, e_shoff).
    pub fn finish(&mut self) -> Result<()> {
        let f = self.f;
        let n = self.phdrs.len();
        if n > 0xffff {
            bail!("too many program headers");
        }
        let phent = f.phent();
        let end = self.phoff + n as u64 * phent;
        if end > self.data.len() as u64 {
            bail!("internal error: program header table past the end of the file");
        }
        for (i, p) in self.phdrs.iter().enumerate() {
            p.write(f, &mut self.data, self.phoff + i as u64 * phent);
        }
        if self.shoff != 0 {
            for (i, s) in self.shdrs.iter().enumerate() {
                s.write_place(f, &mut self.data, self.shoff + i as u64 * f.shent());
            }
        }
        let d = &mut self.data;
        if f.is64 {
            f.put64(d, 32, self.phoff);
            f.put64(d, 40, self.shoff);
            f.put16(d, 56, n as u16);
        } else {
            f.put32(d, 28, self.phoff as u32);
            f.put32(d, 32, self.shoff as u32);
            f.put16(d, 44, n as u16);
        }
        Ok(())
    }
}

/// Sections the loader finds only through program headers and dynamic
/// tags (which [`Image::remap`] follows), so they can move.
fn movable(s: &Shdr) -> bool {
    const MOVABLE: [u32; 12] = [
        3,           // SHT_STRTAB (.dynstr)
        4,           // SHT_RELA
        5,           // SHT_HASH
        7,           // SHT_NOTE
        9,           // SHT_REL
        11,          // SHT_DYNSYM
        19,          // SHT_RELR
        0x6fff_fff6, // SHT_GNU_HASH
        0x6fff_fffd, // SHT_GNU_verdef
        0x6fff_fffe, // SHT_GNU_verneed
        0x6fff_ffff, // SHT_GNU_versym
        0x6fff_fff5, // SHT_GNU_ATTRIBUTES
    ];
    s.flags & SHF_ALLOC != 0
        && s.flags & 1 == 0 // not SHF_WRITE
        && s.flags & 4 == 0 // not SHF_EXECINSTR
        && (MOVABLE.contains(&s.sh_type) || s.name == ".interp")
        && (s.sh_type != 4 && s.sh_type != 9 || s.name.starts_with(".rel"))
}
