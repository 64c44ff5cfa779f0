//! Where each shipped file comes from, in the terms vulnerability scanners
//! read: Debian packages and the distribution's os-release.
//!
//! Scanners (Trivy, Grype, Syft) find packages in an image by reading its
//! package database; files outside one are invisible to them. distroless
//! solved this for images without dpkg by shipping, per package,
//! `/var/lib/dpkg/status.d/<pkg>` (the package's `status` stanza) and
//! `/var/lib/dpkg/status.d/<pkg>.md5sums` (`<md5>  <path>` of the package's
//! files in the image, as dpkg's `info/<pkg>.md5sums`), plus
//! `/etc/os-release`; the scanners read that layout. [`provenance`] finds
//! each file's package in the build system's dpkg database (or in an ELF
//! file's `.note.package`, the systemd package-note format), and
//! [`add_metadata`] writes that layout into the plan. The SBOM emitter
//! ([`crate::emit::sbom`]) reads the same [`Provenance`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use md5::Digest as _;

use super::{Node, Plan};
use crate::collect::dpkg::Dpkg;

/// Where the scanners' layout lives in the image.
pub const STATUS_D: &str = "/var/lib/dpkg/status.d";

/// One package with at least one shipped file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippedPackage {
    /// The package format, the purl type: `deb`, or what a note says.
    pub kind: String,
    pub name: String,
    pub version: String,
    pub arch: String,
    /// Source package name and version (the binary's own when the same).
    pub source: (String, String),
    /// `Maintainer:` (the SPDX supplier).
    pub maintainer: Option<String>,
    /// The `status` stanza exactly as the database has it; `None` for a
    /// package known only from an ELF package note.
    pub stanza: Option<String>,
    /// Where it was found: `dpkg` or `note` (`.note.package`).
    pub from: &'static str,
}

/// The build system, from its os-release (`ID`, `VERSION_ID`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// The file as it is (it goes into the image).
    pub bytes: Vec<u8>,
    pub id: String,
    pub version_id: String,
    pub pretty_name: String,
}

impl OsRelease {
    /// Reads `etc/os-release`, else `usr/lib/os-release`, of `root`
    /// (os-release(5): the first is the one to read when both exist).
    pub fn read(root: &Path) -> Option<OsRelease> {
        ["etc/os-release", "usr/lib/os-release"]
            .iter()
            .find_map(|p| std::fs::read(root.join(p)).ok())
            .map(OsRelease::parse)
    }

    /// `KEY=value` lines, values optionally quoted (os-release(5)).
    pub fn parse(bytes: Vec<u8>) -> OsRelease {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let mut r = OsRelease {
            bytes,
            ..OsRelease::default()
        };
        for line in text.lines() {
            let Some((k, v)) = line.trim().split_once('=') else {
                continue;
            };
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v)
                .to_string();
            match k {
                "ID" => r.id = v,
                "VERSION_ID" => r.version_id = v,
                "PRETTY_NAME" => r.pretty_name = v,
                _ => {}
            }
        }
        r
    }

    /// The purl `distro` qualifier: `debian-12`.
    pub fn distro(&self) -> String {
        match self.version_id.as_str() {
            "" => self.id.clone(),
            v => format!("{}-{v}", self.id),
        }
    }
}

/// Every shipped file's package.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// Sorted by name, then architecture.
    pub packages: Vec<ShippedPackage>,
    /// Image path of a regular file -> index into `packages`.
    pub owner: BTreeMap<PathBuf, usize>,
    /// The system the files come from; `None` when it has no os-release.
    pub os_release: Option<OsRelease>,
    /// Whether a dpkg database was read (false: a host without dpkg).
    pub have_dpkg: bool,
}

impl Provenance {
    /// The package owning the file at image path `path`.
    pub fn owner_of(&self, path: &Path) -> Option<&ShippedPackage> {
        self.owner.get(path).map(|&i| &self.packages[i])
    }

    /// The purl of a package (purl-spec): for a dpkg package the `deb`
    /// type, namespaced by the distribution's ID with `distro` its
    /// ID-VERSION_ID (`pkg:deb/debian/libc6@2.36-9?arch=amd64&distro=debian-12`);
    /// for a package note, its own type, name and version (a note does not
    /// say which distribution built it in a form purl takes).
    pub fn purl(&self, p: &ShippedPackage) -> String {
        let mut s = format!("pkg:{}/", purl_escape(&p.kind));
        let mut distro = None;
        if p.from == "dpkg" {
            let (ns, d) = match &self.os_release {
                Some(o) if !o.id.is_empty() => (o.id.clone(), Some(o.distro())),
                _ => ("debian".to_string(), None),
            };
            s.push_str(&purl_escape(&ns));
            s.push('/');
            distro = d;
        }
        s.push_str(&format!(
            "{}@{}",
            purl_escape(&p.name),
            purl_escape(&p.version)
        ));
        let mut q = Vec::new();
        if !p.arch.is_empty() {
            q.push(format!("arch={}", purl_escape(&p.arch)));
        }
        if let Some(d) = distro {
            q.push(format!("distro={}", purl_escape(&d)));
        }
        if !q.is_empty() {
            s.push('?');
            s.push_str(&q.join("&"));
        }
        s
    }
}

/// Percent-encodes what purl-spec does not allow unencoded in a component
/// (`+` of Debian versions becomes `%2B`; `:` of an epoch stays).
fn purl_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b".-_~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The host path (inside `root`'s terms) whose bytes an image path holds:
/// the copied file, or the one a rewritten copy was made from.
fn origin<'a>(plan: &'a Plan, path: &Path, node: &'a Node) -> Option<&'a Path> {
    match node {
        Node::File { src, .. } => Some(src),
        Node::Data { .. } => plan.origins.get(path).map(PathBuf::as_path),
        _ => None,
    }
}

/// Finds the package of every regular file of `plan`: in `db` (the
/// database of the system the files come from) by the host path the file
/// was copied from, else in the file's own `.note.package`.
pub fn provenance(plan: &Plan, db: Option<&Dpkg>) -> Provenance {
    let root = if plan.root.as_os_str().is_empty() {
        PathBuf::from("/")
    } else {
        plan.root.clone()
    };
    let in_root = |src: &Path| -> PathBuf {
        match src.strip_prefix(&root) {
            Ok(rel) if root != Path::new("/") => Path::new("/").join(rel),
            _ => src.to_path_buf(),
        }
    };
    let files: Vec<(PathBuf, Option<PathBuf>)> = plan
        .nodes
        .iter()
        .filter(|(_, n)| matches!(n, Node::File { .. } | Node::Data { .. }))
        .map(|(p, n)| (p.clone(), origin(plan, p, n).map(&in_root)))
        .collect();
    let mut packages: BTreeMap<(String, String), ShippedPackage> = BTreeMap::new();
    let mut owner_key: BTreeMap<PathBuf, (String, String)> = BTreeMap::new();
    if let Some(db) = db {
        let (idx, srcs): (Vec<usize>, Vec<PathBuf>) = files
            .iter()
            .enumerate()
            .filter_map(|(i, (_, s))| s.clone().map(|s| (i, s)))
            .unzip();
        for (i, owners) in idx.into_iter().zip(db.owners_of(&srcs)) {
            let Some(pkg) = owners.into_iter().find(|p| p.installed()) else {
                continue;
            };
            let key = (pkg.name.clone(), pkg.arch.clone());
            packages
                .entry(key.clone())
                .or_insert_with(|| ShippedPackage {
                    kind: "deb".to_string(),
                    name: pkg.name.clone(),
                    version: pkg.version.clone(),
                    arch: pkg.arch.clone(),
                    source: pkg.source(),
                    maintainer: pkg.field("Maintainer").map(str::to_string),
                    stanza: Some(pkg.stanza.clone()),
                    from: "dpkg",
                });
            owner_key.insert(files[i].0.clone(), key);
        }
    }
    // Files no package owns may say in an ELF note which package built them.
    for (path, _) in &files {
        if owner_key.contains_key(path) {
            continue;
        }
        let note = match plan.nodes.get(path) {
            Some(Node::Data { bytes, .. }) => crate::elf::package_note(bytes),
            Some(Node::File { src, .. }) => read_note(src),
            _ => None,
        };
        let Some(n) = note else { continue };
        let key = (n.name.clone(), n.arch.clone());
        packages
            .entry(key.clone())
            .or_insert_with(|| ShippedPackage {
                kind: if n.kind.is_empty() {
                    "generic".to_string()
                } else {
                    n.kind.clone()
                },
                name: n.name.clone(),
                version: n.version.clone(),
                arch: n.arch.clone(),
                source: (n.name.clone(), n.version.clone()),
                maintainer: None,
                stanza: None,
                from: "note",
            });
        owner_key.insert(path.clone(), key);
    }
    let keys: Vec<(String, String)> = packages.keys().cloned().collect();
    let owner = owner_key
        .into_iter()
        .map(|(p, k)| (p, keys.binary_search(&k).expect("every key is a package")))
        .collect();
    Provenance {
        packages: packages.into_values().collect(),
        owner,
        os_release: OsRelease::read(&root),
        have_dpkg: db.is_some(),
    }
}

/// The package note of an ELF file on disk, reading only ELF files.
fn read_note(path: &Path) -> Option<crate::elf::PackageNote> {
    if !crate::elf::has_elf_magic(path) {
        return None;
    }
    let data = std::fs::read(path).ok()?;
    crate::elf::package_note(&data)
}

/// The file name of a package's entries in `status.d`: its name, with the
/// architecture when two shipped packages share the name (`Multi-Arch:
/// same` libraries of two architectures).
fn status_name(p: &ShippedPackage, all: &[ShippedPackage]) -> String {
    if all.iter().filter(|q| q.name == p.name).count() > 1 {
        format!("{}:{}", p.name, p.arch)
    } else {
        p.name.clone()
    }
}

/// Adds `status.d/<pkg>` and `<pkg>.md5sums` for each dpkg package with a
/// shipped file, and the system's os-release at `/etc/os-release` (unless
/// the plan has one). The md5sums hash the bytes the image holds, so
/// `md5sum -c` passes from the image's root even for rewritten files. A
/// package whose files are all in the shared base layer has its entries
/// there too, so that layer stays the same for every program.
pub fn add_metadata(plan: &mut Plan, prov: &Provenance) -> Result<()> {
    let mut by_pkg: BTreeMap<usize, Vec<&PathBuf>> = BTreeMap::new();
    for (path, &i) in &prov.owner {
        by_pkg.entry(i).or_default().push(path);
    }
    let mut new: Vec<(PathBuf, Vec<u8>, bool)> = Vec::new();
    for (i, paths) in by_pkg {
        let p = &prov.packages[i];
        let Some(stanza) = &p.stanza else { continue };
        let mut sums = String::new();
        for path in &paths {
            let digest = md5_of(plan, path)?;
            let rel = path.strip_prefix("/").unwrap_or(path);
            sums.push_str(&format!("{digest}  {}\n", rel.display()));
        }
        let shared = paths.iter().all(|p| plan.shared.contains(*p));
        let name = status_name(p, &prov.packages);
        let dir = Path::new(STATUS_D);
        let mut stanza = stanza.clone();
        if !stanza.ends_with('\n') {
            stanza.push('\n');
        }
        new.push((dir.join(&name), stanza.into_bytes(), shared));
        new.push((
            dir.join(format!("{name}.md5sums")),
            sums.into_bytes(),
            shared,
        ));
    }
    if let Some(os) = &prov.os_release
        && plan.lookup(Path::new("/etc/os-release")).is_none()
    {
        new.push((PathBuf::from("/etc/os-release"), os.bytes.clone(), true));
    }
    for (path, bytes, shared) in new {
        plan.add_parents_of(&path)?;
        plan.insert(&path, Node::Data { bytes, mode: 0o644 })?;
        if shared && !plan.shared.is_empty() {
            plan.shared.insert(path.clone());
            for a in path.ancestors().skip(1) {
                if a != Path::new("/") {
                    plan.shared.insert(a.to_path_buf());
                }
            }
        }
    }
    Ok(())
}

/// The md5 of the bytes the image holds at `path`, in hex.
fn md5_of(plan: &Plan, path: &Path) -> Result<String> {
    let mut h = md5::Md5::new();
    match plan.nodes.get(path) {
        Some(Node::Data { bytes, .. }) => h.update(bytes),
        Some(Node::File { src, .. }) => {
            h.update(std::fs::read(src).with_context(|| format!("{}: cannot read", src.display()))?)
        }
        _ => {}
    }
    Ok(hex(&h.finalize()))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_values_and_distro() {
        let o =
            OsRelease::parse(b"ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME='Debian 12'\n".to_vec());
        assert_eq!((o.id.as_str(), o.version_id.as_str()), ("debian", "12"));
        assert_eq!(o.pretty_name, "Debian 12");
        assert_eq!(o.distro(), "debian-12");
    }

    #[test]
    fn purl_escapes_plus_and_keeps_epoch_colon() {
        let prov = Provenance {
            os_release: Some(OsRelease::parse(b"ID=debian\nVERSION_ID=12\n".to_vec())),
            ..Provenance::default()
        };
        let p = ShippedPackage {
            kind: "deb".into(),
            name: "libc6".into(),
            version: "1:2.36-9+deb12u4".into(),
            arch: "amd64".into(),
            source: ("glibc".into(), "2.36-9+deb12u4".into()),
            maintainer: None,
            stanza: None,
            from: "dpkg",
        };
        assert_eq!(
            prov.purl(&p),
            "pkg:deb/debian/libc6@1:2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12"
        );
    }
}
