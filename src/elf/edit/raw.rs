//! ELF headers of either class (32/64-bit) and either byte order, read into
//! one native shape and written back in the file's own: every edit works on
//! these, so no other code needs to know which kind of file it holds.

use anyhow::{Result, bail};

/// Class and byte order of a file.
#[derive(Clone, Copy, Debug)]
pub struct Fmt {
    pub is64: bool,
    pub be: bool,
}

impl Fmt {
    pub fn of(data: &[u8]) -> Result<Fmt> {
        if data.len() < 52 || !data.starts_with(crate::elf::MAGIC) {
            bail!("not an ELF file (or shorter than an ELF header)");
        }
        let is64 = match data[4] {
            1 => false,
            2 => true,
            c => bail!("unknown ELF class {c}"),
        };
        let be = match data[5] {
            1 => false,
            2 => true,
            d => bail!("unknown ELF byte order {d}"),
        };
        if is64 && data.len() < 64 {
            bail!("shorter than an ELF header");
        }
        Ok(Fmt { is64, be })
    }

    pub fn phent(self) -> u64 {
        if self.is64 { 56 } else { 32 }
    }
    pub fn shent(self) -> u64 {
        if self.is64 { 64 } else { 40 }
    }
    /// Size of one dynamic entry (and of an address).
    pub fn dynent(self) -> u64 {
        if self.is64 { 16 } else { 8 }
    }
    pub fn word(self) -> u64 {
        if self.is64 { 8 } else { 4 }
    }

    pub fn u16(self, d: &[u8], o: u64) -> Result<u16> {
        let b: [u8; 2] = get(d, o, 2)?.try_into().unwrap();
        Ok(if self.be {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }
    pub fn u32(self, d: &[u8], o: u64) -> Result<u32> {
        let b: [u8; 4] = get(d, o, 4)?.try_into().unwrap();
        Ok(if self.be {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
    pub fn u64(self, d: &[u8], o: u64) -> Result<u64> {
        let b: [u8; 8] = get(d, o, 8)?.try_into().unwrap();
        Ok(if self.be {
            u64::from_be_bytes(b)
        } else {
            u64::from_le_bytes(b)
        })
    }
    /// An address-sized field (Elf32_Addr/Off/Word or Elf64_Addr/Off/Xword).
    pub fn addr(self, d: &[u8], o: u64) -> Result<u64> {
        if self.is64 {
            self.u64(d, o)
        } else {
            self.u32(d, o).map(u64::from)
        }
    }

    pub fn put16(self, d: &mut [u8], o: u64, v: u16) {
        let b = if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        d[o as usize..o as usize + 2].copy_from_slice(&b);
    }
    pub fn put32(self, d: &mut [u8], o: u64, v: u32) {
        let b = if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        d[o as usize..o as usize + 4].copy_from_slice(&b);
    }
    pub fn put64(self, d: &mut [u8], o: u64, v: u64) {
        let b = if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        d[o as usize..o as usize + 8].copy_from_slice(&b);
    }
    pub fn put_addr(self, d: &mut [u8], o: u64, v: u64) {
        if self.is64 {
            self.put64(d, o, v)
        } else {
            self.put32(d, o, v as u32)
        }
    }

    /// One dynamic entry as bytes.
    pub fn dyn_bytes(self, tag: i64, val: u64) -> Vec<u8> {
        let mut b = vec![0u8; self.dynent() as usize];
        self.put_addr(&mut b, 0, tag as u64);
        self.put_addr(&mut b, self.word(), val);
        b
    }

    pub fn read_dyn(self, d: &[u8], o: u64) -> Result<(i64, u64)> {
        let t = self.addr(d, o)?;
        let tag = if self.is64 {
            t as i64
        } else {
            t as u32 as i32 as i64
        };
        Ok((tag, self.addr(d, o + self.word())?))
    }
}

fn get(d: &[u8], o: u64, n: usize) -> Result<&[u8]> {
    let o = usize::try_from(o).unwrap_or(usize::MAX);
    match o.checked_add(n).and_then(|e| d.get(o..e)) {
        Some(b) => Ok(b),
        None => bail!("truncated at byte {o}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phdr {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

impl Phdr {
    pub fn read(f: Fmt, d: &[u8], b: u64) -> Result<Phdr> {
        Ok(if f.is64 {
            Phdr {
                p_type: f.u32(d, b)?,
                flags: f.u32(d, b + 4)?,
                offset: f.u64(d, b + 8)?,
                vaddr: f.u64(d, b + 16)?,
                paddr: f.u64(d, b + 24)?,
                filesz: f.u64(d, b + 32)?,
                memsz: f.u64(d, b + 40)?,
                align: f.u64(d, b + 48)?,
            }
        } else {
            Phdr {
                p_type: f.u32(d, b)?,
                offset: f.u32(d, b + 4)?.into(),
                vaddr: f.u32(d, b + 8)?.into(),
                paddr: f.u32(d, b + 12)?.into(),
                filesz: f.u32(d, b + 16)?.into(),
                memsz: f.u32(d, b + 20)?.into(),
                flags: f.u32(d, b + 24)?,
                align: f.u32(d, b + 28)?.into(),
            }
        })
    }

    pub fn write(&self, f: Fmt, d: &mut [u8], b: u64) {
        if f.is64 {
            f.put32(d, b, self.p_type);
            f.put32(d, b + 4, self.flags);
            f.put64(d, b + 8, self.offset);
            f.put64(d, b + 16, self.vaddr);
            f.put64(d, b + 24, self.paddr);
            f.put64(d, b + 32, self.filesz);
            f.put64(d, b + 40, self.memsz);
            f.put64(d, b + 48, self.align);
        } else {
            f.put32(d, b, self.p_type);
            f.put32(d, b + 4, self.offset as u32);
            f.put32(d, b + 8, self.vaddr as u32);
            f.put32(d, b + 12, self.paddr as u32);
            f.put32(d, b + 16, self.filesz as u32);
            f.put32(d, b + 20, self.memsz as u32);
            f.put32(d, b + 24, self.flags);
            f.put32(d, b + 28, self.align as u32);
        }
    }

    pub fn file_end(&self) -> u64 {
        self.offset + self.filesz
    }
    pub fn mem_end(&self) -> u64 {
        self.vaddr + self.memsz
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shdr {
    pub name_off: u32,
    pub sh_type: u32,
    pub flags: u64,
    pub addr: u64,
    pub offset: u64,
    pub size: u64,
    pub link: u32,
    pub info: u32,
    pub addralign: u64,
    pub entsize: u64,
    /// Resolved from the section name string table.
    pub name: String,
}

impl Shdr {
    pub fn read(f: Fmt, d: &[u8], b: u64) -> Result<Shdr> {
        Ok(if f.is64 {
            Shdr {
                name_off: f.u32(d, b)?,
                sh_type: f.u32(d, b + 4)?,
                flags: f.u64(d, b + 8)?,
                addr: f.u64(d, b + 16)?,
                offset: f.u64(d, b + 24)?,
                size: f.u64(d, b + 32)?,
                link: f.u32(d, b + 40)?,
                info: f.u32(d, b + 44)?,
                addralign: f.u64(d, b + 48)?,
                entsize: f.u64(d, b + 56)?,
                name: String::new(),
            }
        } else {
            Shdr {
                name_off: f.u32(d, b)?,
                sh_type: f.u32(d, b + 4)?,
                flags: f.u32(d, b + 8)?.into(),
                addr: f.u32(d, b + 12)?.into(),
                offset: f.u32(d, b + 16)?.into(),
                size: f.u32(d, b + 20)?.into(),
                link: f.u32(d, b + 24)?,
                info: f.u32(d, b + 28)?,
                addralign: f.u32(d, b + 32)?.into(),
                entsize: f.u32(d, b + 36)?.into(),
                name: String::new(),
            }
        })
    }

    /// Writes the fields an edit may change (address, offset, size).
    pub fn write_place(&self, f: Fmt, d: &mut [u8], b: u64) {
        if f.is64 {
            f.put64(d, b + 16, self.addr);
            f.put64(d, b + 24, self.offset);
            f.put64(d, b + 32, self.size);
        } else {
            f.put32(d, b + 12, self.addr as u32);
            f.put32(d, b + 16, self.offset as u32);
            f.put32(d, b + 20, self.size as u32);
        }
    }

    /// Writes every field (for a section header added or renumbered).
    pub fn write_full(&self, f: Fmt, d: &mut [u8], b: u64) {
        f.put32(d, b, self.name_off);
        f.put32(d, b + 4, self.sh_type);
        if f.is64 {
            f.put64(d, b + 8, self.flags);
            f.put64(d, b + 16, self.addr);
            f.put64(d, b + 24, self.offset);
            f.put64(d, b + 32, self.size);
            f.put32(d, b + 40, self.link);
            f.put32(d, b + 44, self.info);
            f.put64(d, b + 48, self.addralign);
            f.put64(d, b + 56, self.entsize);
        } else {
            f.put32(d, b + 8, self.flags as u32);
            f.put32(d, b + 12, self.addr as u32);
            f.put32(d, b + 16, self.offset as u32);
            f.put32(d, b + 20, self.size as u32);
            f.put32(d, b + 24, self.link);
            f.put32(d, b + 28, self.info);
            f.put32(d, b + 32, self.addralign as u32);
            f.put32(d, b + 36, self.entsize as u32);
        }
    }

    /// Occupies bytes in the file.
    pub fn in_file(&self) -> bool {
        self.sh_type != SHT_NOBITS && self.sh_type != SHT_NULL && self.size > 0
    }
}

pub const SHT_NULL: u32 = 0;
pub const SHT_NOBITS: u32 = 8;
pub const SHF_ALLOC: u64 = 2;
