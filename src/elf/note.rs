//! The package note: which package an ELF file was built for, carried in
//! the file itself.
//!
//! Format: systemd's "Package Metadata for Executable Files"
//! (<https://systemd.io/ELF_PACKAGE_METADATA/>, adopted by Fedora and
//! others): an ELF note in section `.note.package` with owner `FDO`, type
//! `0xcafe1a7e`, whose descriptor is a NUL-terminated JSON object with at
//! least `type`, `name` and `version`. It names the package of a file that
//! no package database on the build machine owns (a vendor's binary, a
//! program built elsewhere).

use goblin::elf::Elf;

/// `n_type` of the package note.
pub const NT_FDO_PACKAGING_METADATA: u32 = 0xcafe_1a7e;

/// What a package note says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageNote {
    /// `type`: the package format (`deb`, `rpm`...).
    pub kind: String,
    pub name: String,
    pub version: String,
    /// `architecture`, empty when the note has none.
    pub arch: String,
    /// `osCpe` (e.g. `cpe:/o:fedoraproject:fedora:33`), empty when absent.
    pub os_cpe: String,
}

/// The package note of an in-memory ELF file, from its `.note.package`
/// section or, in a file without section headers, any PT_NOTE segment.
pub fn package_note(bytes: &[u8]) -> Option<PackageNote> {
    let elf = Elf::parse(bytes).ok()?;
    let from_sections = elf
        .iter_note_sections(bytes, Some(".note.package"))
        .into_iter()
        .flatten()
        .flatten()
        .find(|n| n.n_type == NT_FDO_PACKAGING_METADATA && n.name == "FDO")
        .map(|n| n.desc.to_vec());
    let desc = from_sections.or_else(|| {
        elf.iter_note_headers(bytes)
            .into_iter()
            .flatten()
            .flatten()
            .find(|n| n.n_type == NT_FDO_PACKAGING_METADATA && n.name == "FDO")
            .map(|n| n.desc.to_vec())
    })?;
    let json = desc.split(|&b| b == 0).next()?;
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    let note = PackageNote {
        kind: field("type"),
        name: field("name"),
        version: field("version"),
        arch: field("architecture"),
        os_cpe: field("osCpe"),
    };
    (!note.name.is_empty()).then_some(note)
}
