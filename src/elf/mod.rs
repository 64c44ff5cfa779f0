//! Stage 1, elf: reading (this module) and editing ([`edit`]) ELF files.
//!
//! Reading covers the few ELF facts the dynamic loader acts on.
//!
//! Only the ELF header, the program headers and the dynamic segment are read:
//! that is all `ld.so` looks at when it maps an object, and skipping section
//! headers and symbol tables keeps resolution of thousands of files fast.

pub mod edit;
mod note;

pub use note::{PackageNote, package_note};

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use goblin::elf::dynamic::{self, Dynamic};
use goblin::elf::header::{self, Header};
use goblin::elf::program_header::{self, ProgramHeader};
use memmap2::Mmap;

/// What kind of ELF file this is, as far as running it is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// ET_EXEC or ET_DYN with PT_INTERP: needs the dynamic loader.
    Dynamic,
    /// ET_DYN without PT_INTERP but with a dynamic section: a shared library
    /// (some, like libc.so.6 or ld.so itself, can also be run).
    SharedLibrary,
    /// ET_EXEC without PT_INTERP: runs on its own.
    Static,
    /// ET_DYN without PT_INTERP that relocates itself (`-static-pie`).
    StaticPie,
}

/// The loader-relevant facts of one ELF file.
#[derive(Debug, Clone)]
pub struct ElfInfo {
    pub class64: bool,
    pub machine: u16,
    pub kind: Kind,
    pub interpreter: Option<String>,
    pub needed: Vec<String>,
    pub rpath: Option<String>,
    pub runpath: Option<String>,
    pub soname: Option<String>,
    /// DF_1_NODEFLIB: the loader must not look in the default directories
    /// (nor take system-directory hits from ld.so.cache) for this object's needs.
    pub nodeflib: bool,
    /// Names `iconv_open` in its dynamic symbols without being libc: such a
    /// program may need gconv modules at run time.
    pub imports_iconv: bool,
}

impl ElfInfo {
    /// The loader (see `elf_machine_matches_host` in glibc) only accepts objects
    /// of its own class and machine; anything else is skipped during a search.
    pub fn matches(&self, class64: bool, machine: u16) -> bool {
        self.class64 == class64 && self.machine == machine
    }

    pub fn machine_name(&self) -> &'static str {
        machine_name(self.class64, self.machine)
    }
}

pub fn machine_name(class64: bool, machine: u16) -> &'static str {
    match (class64, machine) {
        (true, header::EM_X86_64) => "x86-64",
        (false, header::EM_X86_64) => "x32",
        (_, header::EM_386) => "i386",
        (_, header::EM_AARCH64) => "aarch64",
        (_, header::EM_ARM) => "arm",
        (_, header::EM_RISCV) => "riscv",
        (_, header::EM_PPC64) => "ppc64",
        (_, header::EM_S390) => "s390",
        _ => "an unknown machine",
    }
}

/// Why a file is not a loadable ELF object. Kept distinct from I/O errors so a
/// search can skip such candidates the way the loader does, while a file named
/// on the command line gets a precise message.
#[derive(Debug)]
pub struct NotElf(pub String);

impl std::fmt::Display for NotElf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for NotElf {}

pub const MAGIC: &[u8; 4] = b"\x7fELF";

/// True when `path` starts with the ELF magic: a cheap test before parsing.
pub fn has_elf_magic(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *MAGIC
}

/// Maps and parses `path`. Errors name the file and say what is wrong.
pub fn read(path: &Path) -> Result<ElfInfo> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("{}: cannot stat", path.display()))?;
    if meta.is_dir() {
        bail!("{}: is a directory, not an ELF file", path.display());
    }
    if meta.len() == 0 {
        return Err(anyhow!(NotElf("empty file, not ELF".into())))
            .with_context(|| path.display().to_string());
    }
    // SAFETY: the map is read-only and private; a concurrent truncation could
    // fault, which is the same risk every ELF tool that maps files takes.
    let map =
        unsafe { Mmap::map(&file) }.with_context(|| format!("{}: cannot map", path.display()))?;
    parse(&map).with_context(|| path.display().to_string())
}

/// Parses an in-memory ELF image.
pub fn parse(bytes: &[u8]) -> Result<ElfInfo> {
    if bytes.len() < 4 || &bytes[..4] != b"\x7fELF" {
        return Err(NotElf("not an ELF file (no \\x7fELF magic)".into()).into());
    }
    if bytes.len() < header::SIZEOF_IDENT + 2 {
        return Err(NotElf("truncated ELF header".into()).into());
    }
    let hdr: Header = goblin::elf::Elf::parse_header(bytes)
        .map_err(|e| NotElf(format!("truncated or malformed ELF header: {e}")))?;
    let class64 = match hdr.e_ident[header::EI_CLASS] {
        header::ELFCLASS64 => true,
        header::ELFCLASS32 => false,
        c => return Err(NotElf(format!("unknown ELF class {c}")).into()),
    };
    if hdr.e_ident[header::EI_DATA] != header::ELFDATA2LSB {
        return Err(NotElf("big-endian ELF files are not supported".into()).into());
    }
    let ctx = goblin::container::Ctx::new(
        if class64 {
            goblin::container::Container::Big
        } else {
            goblin::container::Container::Little
        },
        goblin::container::Endian::Little,
    );
    let phoff = hdr.e_phoff as usize;
    let phnum = hdr.e_phnum as usize;
    let phsize = hdr.e_phentsize as usize;
    let ph_end = phoff.checked_add(phnum * phsize);
    if phnum > 0 && ph_end.is_none_or(|end| end > bytes.len()) {
        return Err(NotElf(format!(
            "truncated: program headers end at byte {} but the file has {} bytes",
            ph_end.map_or_else(|| "(overflow)".to_string(), |e| e.to_string()),
            bytes.len()
        ))
        .into());
    }
    let phdrs = ProgramHeader::parse(bytes, phoff, phnum, ctx)
        .map_err(|e| NotElf(format!("malformed program headers: {e}")))?;
    let interpreter = phdrs
        .iter()
        .find(|p| p.p_type == program_header::PT_INTERP)
        .map(|p| c_string_at(bytes, p.p_offset as usize, p.p_filesz as usize))
        .transpose()
        .map_err(|e| NotElf(format!("PT_INTERP: {e}")))?;

    let dynamic = Dynamic::parse(bytes, &phdrs, ctx)
        .map_err(|e| NotElf(format!("truncated or malformed dynamic segment: {e}")))?;

    let mut info = ElfInfo {
        class64,
        machine: hdr.e_machine,
        kind: Kind::Static,
        interpreter,
        needed: Vec::new(),
        rpath: None,
        runpath: None,
        soname: None,
        nodeflib: false,
        imports_iconv: false,
    };
    if let Some(dynamic) = &dynamic {
        let strtab = dynamic.info.strtab;
        let strsz = dynamic.info.strsz;
        if strtab
            .checked_add(strsz)
            .is_none_or(|end| end > bytes.len())
        {
            return Err(NotElf(format!(
                "truncated: dynamic string table ends at byte {} but the file has {} bytes",
                strtab.saturating_add(strsz),
                bytes.len()
            ))
            .into());
        }
        let strings = &bytes[strtab..strtab + strsz];
        let string = |off: u64| -> Result<String> {
            c_string_at(
                strings,
                off as usize,
                strings.len().saturating_sub(off as usize),
            )
            .map_err(|e| NotElf(format!("dynamic string table: {e}")).into())
        };
        for d in &dynamic.dyns {
            match d.d_tag {
                dynamic::DT_NEEDED => info.needed.push(string(d.d_val)?),
                dynamic::DT_RPATH => info.rpath = Some(string(d.d_val)?),
                dynamic::DT_RUNPATH => info.runpath = Some(string(d.d_val)?),
                dynamic::DT_SONAME => info.soname = Some(string(d.d_val)?),
                dynamic::DT_FLAGS_1 => info.nodeflib = d.d_val & dynamic::DF_1_NODEFLIB != 0,
                _ => {}
            }
        }
        info.imports_iconv = info.soname.as_deref() != Some("libc.so.6")
            && strings.windows(12).any(|w| w == b"\0iconv_open\0");
    }
    info.kind = match (hdr.e_type, info.interpreter.is_some(), dynamic.is_some()) {
        (_, true, _) => Kind::Dynamic,
        (header::ET_EXEC, false, _) => Kind::Static,
        (header::ET_DYN, false, true) if is_static_pie(&dynamic) => Kind::StaticPie,
        (header::ET_DYN, false, _) => Kind::SharedLibrary,
        (t, ..) => {
            return Err(NotElf(format!(
                "ELF type {} is neither an executable nor a shared library",
                header::et_to_str(t)
            ))
            .into());
        }
    };
    Ok(info)
}

/// `-static-pie` output is ET_DYN with DF_1_PIE, no PT_INTERP and no DT_NEEDED;
/// a shared library may carry DF_1_PIE only if it is a PIE executable too.
fn is_static_pie(dynamic: &Option<Dynamic>) -> bool {
    dynamic
        .as_ref()
        .is_some_and(|d| d.info.flags_1 & dynamic::DF_1_PIE != 0 && d.info.needed_count == 0)
}

/// Refuses an ELF file the kernel could not start as a program, which
/// [`parse`] alone lets through because the loader's search only needs the
/// headers: a core dump or relocatable object, no loadable segment, a
/// segment past the end of the file (truncated), or an entry point outside
/// every segment (garbage program headers).
pub fn check_runnable(path: &Path) -> Result<()> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    // SAFETY: as in [`read`].
    let map =
        unsafe { Mmap::map(&file) }.with_context(|| format!("{}: cannot map", path.display()))?;
    check_runnable_bytes(&map).with_context(|| path.display().to_string())
}

fn check_runnable_bytes(bytes: &[u8]) -> Result<()> {
    let hdr = goblin::elf::Elf::parse_header(bytes)
        .map_err(|e| NotElf(format!("truncated or malformed ELF header: {e}")))?;
    match hdr.e_type {
        header::ET_EXEC | header::ET_DYN => {}
        header::ET_CORE => bail!("a core dump (ELF type CORE), not a program"),
        header::ET_REL => bail!("an object file (ELF type REL), not a linked program"),
        t => bail!("ELF type {} is not a program", header::et_to_str(t)),
    }
    let class64 = hdr.e_ident[header::EI_CLASS] == header::ELFCLASS64;
    let want = if class64 { 56 } else { 32 };
    if hdr.e_phentsize as usize != want {
        bail!(
            "malformed program headers: entries of {} bytes, not {want}",
            hdr.e_phentsize
        );
    }
    let ctx = goblin::container::Ctx::new(
        if class64 {
            goblin::container::Container::Big
        } else {
            goblin::container::Container::Little
        },
        goblin::container::Endian::Little,
    );
    let end = (hdr.e_phoff as usize).checked_add(hdr.e_phnum as usize * want);
    if end.is_none_or(|e| e > bytes.len()) {
        bail!(
            "truncated: the program headers end past the file's {} bytes",
            bytes.len()
        );
    }
    let phdrs = ProgramHeader::parse(bytes, hdr.e_phoff as usize, hdr.e_phnum as usize, ctx)
        .map_err(|e| anyhow!("malformed program headers: {e}"))?;
    let loads: Vec<&ProgramHeader> = phdrs
        .iter()
        .filter(|p| p.p_type == program_header::PT_LOAD)
        .collect();
    if loads.is_empty() {
        bail!("malformed program headers: no loadable segment (PT_LOAD)");
    }
    for (i, p) in loads.iter().enumerate() {
        if p.p_filesz > p.p_memsz {
            bail!("malformed program headers: segment {i} has more file bytes than memory");
        }
        let end = p.p_offset.checked_add(p.p_filesz);
        if end.is_none_or(|e| e > bytes.len() as u64) {
            bail!(
                "truncated: loadable segment {i} ends at byte {} but the file has {} bytes",
                end.map_or_else(|| "(overflow)".to_string(), |e| e.to_string()),
                bytes.len()
            );
        }
    }
    let entry = hdr.e_entry;
    if !loads
        .iter()
        .any(|p| entry >= p.p_vaddr && entry - p.p_vaddr < p.p_memsz)
    {
        bail!("malformed: the entry point {entry:#x} is outside every loadable segment");
    }
    Ok(())
}

fn c_string_at(bytes: &[u8], off: usize, max: usize) -> Result<String> {
    let Some(tail) = bytes.get(off..) else {
        bail!("string offset {off} is past the end");
    };
    let tail = &tail[..max.min(tail.len())];
    let end = tail
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| anyhow!("unterminated string at offset {off}"))?;
    Ok(String::from_utf8_lossy(&tail[..end]).into_owned())
}
