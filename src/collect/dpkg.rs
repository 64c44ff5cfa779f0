//! The dpkg database, read directly: which package owns a file, what its
//! control stanza says, which files and checksums it installed, and what it
//! depends on.
//!
//! Why here and not by running `dpkg-query`: elfpack asks about every file
//! it collects, a subprocess per question would cost more than packing a
//! small program, and a sysroot (another machine's tree) has no dpkg to run.
//! So this reads the admin directory (`ROOT/var/lib/dpkg`) itself:
//! - `status`: one stanza per package, kept verbatim (scanner metadata must
//!   be the host's bytes) and split into fields;
//! - `info/<pkg>.list` and `info/<pkg>.md5sums` (`<pkg>:<arch>` for
//!   `Multi-Arch: same` packages), read only when asked for; the index of
//!   every listed path is built once, on the first ownership question;
//! - `diversions` (from, to, diverting package): a diverted file lives at
//!   `to` although its package lists `from`;
//! - `/etc/alternatives` links, which no package lists: a path that goes
//!   through one is owned by the package of the file it ends at.
//!
//! Paths are compared the way the kernel sees them: on a merged-/usr system
//! (`/bin -> usr/bin`) bash lists `/bin/bash` while the file is reached as
//! `/usr/bin/bash`; both name the same file, so lookups resolve the
//! directories of the asked path inside ROOT, and listed paths under a
//! symlinked top-level directory are indexed under its target.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

/// The default admin directory, relative to the root.
pub const ADMIN_DIR: &str = "var/lib/dpkg";

/// One package of the `status` file.
#[derive(Debug, Clone)]
pub struct Package {
    /// `Package:`.
    pub name: String,
    /// `Architecture:` (`all`, `amd64`...).
    pub arch: String,
    /// `Version:`.
    pub version: String,
    /// The stanza exactly as `status` has it, without the blank line after it.
    pub stanza: String,
    /// `(field, value)` in stanza order; continuation lines kept in the value
    /// (joined with '\n', their leading space kept).
    pub fields: Vec<(String, String)>,
    /// `Multi-Arch: same`: its info files are named `name:arch`.
    multi_arch_same: bool,
}

impl Package {
    /// A field's value, the name compared without case as dpkg does.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `${binary:Package}` of dpkg-query: `name:arch` for `Multi-Arch: same`
    /// packages, the name otherwise. Also the stem of its info files.
    pub fn id(&self) -> String {
        if self.multi_arch_same {
            format!("{}:{}", self.name, self.arch)
        } else {
            self.name.clone()
        }
    }

    /// Whether its files are on disk (dpkg's states from `unpacked` on;
    /// `config-files` and `not-installed` have none).
    pub fn installed(&self) -> bool {
        let state = self
            .field("Status")
            .and_then(|s| s.split_whitespace().nth(2))
            .unwrap_or("");
        !matches!(state, "" | "not-installed" | "config-files")
    }

    /// `Pre-Depends` then `Depends`, parsed.
    pub fn depends(&self) -> Vec<Vec<Dep>> {
        ["Pre-Depends", "Depends"]
            .iter()
            .filter_map(|f| self.field(f))
            .flat_map(parse_relations)
            .collect()
    }

    /// `Source:` name and version: the binary's own when the field is absent,
    /// the binary's version when it names none (`Source: name (version)`).
    pub fn source(&self) -> (String, String) {
        match self.field("Source") {
            None => (self.name.clone(), self.version.clone()),
            Some(s) => {
                let mut it = s.split_whitespace();
                let name = it.next().unwrap_or(&self.name).to_string();
                let version = it
                    .next()
                    .map(|v| v.trim_start_matches('(').trim_end_matches(')').to_string())
                    .unwrap_or_else(|| self.version.clone());
                (name, version)
            }
        }
    }
}

/// One alternative of a dependency: `name[:archqual] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dep {
    pub name: String,
    /// `any`, `native` or an architecture, after ':'.
    pub arch: Option<String>,
    /// `(">=", "2.34")`.
    pub version: Option<(String, String)>,
}

/// Parses a relationship field (`a (>= 1), b | c:any`) into groups of
/// alternatives.
pub fn parse_relations(value: &str) -> Vec<Vec<Dep>> {
    value
        .split(',')
        .map(|group| {
            group
                .split('|')
                .filter_map(|alt| {
                    let alt = alt.trim();
                    // Build profiles and arch restrictions only appear in source
                    // stanzas; cut them off if they do.
                    let alt = alt.split(['[', '<']).next().unwrap_or("").trim();
                    let (head, version) = match alt.split_once('(') {
                        Some((h, v)) => {
                            let v = v.trim_end_matches(')').trim();
                            let op_end = v
                                .find(|c: char| !matches!(c, '<' | '>' | '='))
                                .unwrap_or(v.len());
                            let (op, ver) = v.split_at(op_end);
                            (h.trim(), Some((op.to_string(), ver.trim().to_string())))
                        }
                        None => (alt, None),
                    };
                    if head.is_empty() {
                        return None;
                    }
                    let (name, arch) = match head.split_once(':') {
                        Some((n, a)) => (n, Some(a.to_string())),
                        None => (head, None),
                    };
                    Some(Dep {
                        name: name.to_string(),
                        arch,
                        version,
                    })
                })
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect()
}

/// One line triple of `diversions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diversion {
    pub from: PathBuf,
    pub to: PathBuf,
    /// The diverting package, or `None` for a local diversion (`:`).
    pub by: Option<String>,
}

/// A path that reaches its file through `/etc/alternatives`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative {
    /// The alternative's name (`java` for /etc/alternatives/java).
    pub name: String,
    /// The file the chain ends at.
    pub target: PathBuf,
}

/// An opened dpkg database; everything past `status` is read on demand.
pub struct Dpkg {
    root: PathBuf,
    admin: PathBuf,
    packages: Vec<Package>,
    by_name: HashMap<String, Vec<usize>>,
    native_arch: String,
    diversions: Vec<Diversion>,
    /// Top-level symlinked directories of the root: (`/bin`, `/usr/bin`).
    aliases: Vec<(PathBuf, PathBuf)>,
    /// Every listed path (aliases applied, diversions applied) -> packages.
    owners: OnceLock<OwnerIndex>,
    provides: OnceLock<HashMap<String, Vec<usize>>>,
}

impl std::fmt::Debug for Dpkg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dpkg")
            .field("root", &self.root)
            .field("admin", &self.admin)
            .field("packages", &self.packages.len())
            .finish()
    }
}

impl Dpkg {
    /// The host's database (`/var/lib/dpkg`), or `None` when the host has no
    /// dpkg (no `status` file).
    pub fn host() -> Result<Option<Dpkg>> {
        Self::open_root(Path::new("/"))
    }

    /// The database of the tree at `root` (`/` or a sysroot), or `None` when
    /// it has no `var/lib/dpkg/status`.
    pub fn open_root(root: &Path) -> Result<Option<Dpkg>> {
        let admin = root.join(ADMIN_DIR);
        if !admin.join("status").is_file() {
            return Ok(None);
        }
        Self::open(root, &admin).map(Some)
    }

    /// The database in `admin` for the files of the tree at `root`.
    pub fn open(root: &Path, admin: &Path) -> Result<Dpkg> {
        let status_path = admin.join("status");
        let text = std::fs::read(&status_path)
            .with_context(|| format!("{}: cannot read", status_path.display()))?;
        let text = String::from_utf8_lossy(&text);
        let packages = parse_status(&text).with_context(|| status_path.display().to_string())?;
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in packages.iter().enumerate() {
            by_name.entry(p.name.clone()).or_default().push(i);
        }
        let native_arch = by_name
            .get("dpkg")
            .and_then(|v| v.first())
            .map(|&i| packages[i].arch.clone())
            .unwrap_or_else(|| "amd64".to_string());
        let div_path = admin.join("diversions");
        let diversions = match std::fs::read(&div_path) {
            Ok(b) => parse_diversions(&b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(e).with_context(|| format!("{}: cannot read", div_path.display()));
            }
        };
        let aliases = top_level_aliases(root);
        Ok(Dpkg {
            root: root.to_path_buf(),
            admin: admin.to_path_buf(),
            packages,
            by_name,
            native_arch,
            diversions,
            aliases,
            owners: OnceLock::new(),
            provides: OnceLock::new(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn admin_dir(&self) -> &Path {
        &self.admin
    }

    /// The architecture of the `dpkg` package (the native one).
    pub fn native_arch(&self) -> &str {
        &self.native_arch
    }

    pub fn diversions(&self) -> &[Diversion] {
        &self.diversions
    }

    /// Every stanza of `status`, installed or not.
    pub fn packages(&self) -> &[Package] {
        &self.packages
    }

    /// An installed package by `name` or `name:arch`; for a bare name the
    /// native (or `all`) instance first.
    pub fn package(&self, name: &str) -> Option<&Package> {
        self.package_index(name).map(|i| &self.packages[i])
    }

    /// [`Self::package`]'s index in [`Self::packages`].
    fn package_index(&self, name: &str) -> Option<usize> {
        let (n, arch) = match name.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (name, None),
        };
        let cands = self.by_name.get(n)?;
        let mut best: Option<usize> = None;
        for &i in cands {
            let p = &self.packages[i];
            if !p.installed() {
                continue;
            }
            match arch {
                Some("any") | None => {}
                Some(a) if p.arch == a => {}
                Some("native") if p.arch == self.native_arch || p.arch == "all" => {}
                Some(_) => continue,
            }
            let native = p.arch == self.native_arch || p.arch == "all";
            if best.is_none() || native {
                best = Some(i);
                if native {
                    break;
                }
            }
        }
        best
    }

    /// The installed package that satisfies one group of alternatives
    /// (`a | b`): a real package of that name first, then one that
    /// `Provides` it. Versions are not compared: dpkg already did, when it
    /// installed them.
    pub fn satisfy(&self, group: &[Dep]) -> Option<&Package> {
        for d in group {
            let arch = d.arch.as_deref().filter(|a| *a != "any");
            let key = match arch {
                Some(a) => format!("{}:{a}", d.name),
                None => d.name.clone(),
            };
            if let Some(p) = self.package(&key) {
                return Some(p);
            }
        }
        let provides = self.provides.get_or_init(|| {
            let mut m: HashMap<String, Vec<usize>> = HashMap::new();
            for (i, p) in self.packages.iter().enumerate() {
                if !p.installed() {
                    continue;
                }
                for g in p.field("Provides").map(parse_relations).unwrap_or_default() {
                    for d in g {
                        m.entry(d.name).or_default().push(i);
                    }
                }
            }
            m
        });
        group.iter().find_map(|d| {
            provides
                .get(&d.name)
                .and_then(|v| v.first())
                .map(|&i| &self.packages[i])
        })
    }

    /// The installed packages `pkg` depends on (Pre-Depends and Depends),
    /// each group satisfied by the first installed alternative; groups no
    /// installed package satisfies are left out.
    pub fn dependencies(&self, pkg: &Package) -> Vec<&Package> {
        let mut out: Vec<&Package> = Vec::new();
        for g in pkg.depends() {
            if let Some(p) = self.satisfy(&g)
                && !out.iter().any(|q| std::ptr::eq(*q, p))
            {
                out.push(p);
            }
        }
        out
    }

    fn info_file(&self, pkg: &Package, ext: &str) -> PathBuf {
        self.admin.join("info").join(format!("{}.{ext}", pkg.id()))
    }

    /// The paths `pkg` installed, as its `.list` has them (directories too;
    /// diverted files under their listed name).
    pub fn files(&self, pkg: &Package) -> Result<Vec<PathBuf>> {
        let p = self.info_file(pkg, "list");
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("{}: cannot read", p.display())),
        };
        Ok(bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| PathBuf::from(OsStr::from_bytes(l)))
            .collect())
    }

    /// Where a listed path of `pkg` is on disk: elsewhere when another
    /// package (or the admin) diverted it.
    pub fn installed_path(&self, pkg: &Package, listed: &Path) -> PathBuf {
        for d in &self.diversions {
            if d.from == listed && d.by.as_deref() != Some(pkg.name.as_str()) {
                return d.to.clone();
            }
        }
        listed.to_path_buf()
    }

    /// `(path, md5)` from `pkg`'s `.md5sums` (paths made absolute; conffiles
    /// are not in it, their sums are in the stanza's `Conffiles` field).
    pub fn md5sums(&self, pkg: &Package) -> Result<Vec<(PathBuf, String)>> {
        let p = self.info_file(pkg, "md5sums");
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("{}: cannot read", p.display())),
        };
        let mut out = Vec::new();
        for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let Some(sp) = line.iter().position(|&b| b == b' ') else {
                bail!("{}: line {}: no checksum", p.display(), n + 1);
            };
            let sum = String::from_utf8_lossy(&line[..sp]).into_owned();
            let mut rest = &line[sp..];
            while let [b' ' | b'*', r @ ..] = rest {
                rest = r;
            }
            let mut path = PathBuf::from("/");
            path.push(OsStr::from_bytes(rest));
            out.push((path, sum));
        }
        Ok(out)
    }

    /// [`Self::owners`] for several paths at once. Before the index exists
    /// this scans every `.list` once for just these paths, which costs a
    /// fraction of building the index: packing a program no package owns
    /// asks only about its libraries.
    pub fn owners_of(&self, paths: &[PathBuf]) -> Vec<Vec<&Package>> {
        if self.owners.get().is_some() {
            return paths.iter().map(|p| self.owners(p)).collect();
        }
        if let Some(v) = self.owners_by_guess(paths) {
            return v;
        }
        // Keys as owners() tries them: aliased as given, then resolved.
        let mut keys: HashMap<Vec<u8>, Vec<(usize, u8)>> = HashMap::new();
        for (i, p) in paths.iter().enumerate() {
            let a = self.alias(p).into_os_string();
            keys.entry(a.as_bytes().to_vec()).or_default().push((i, 0));
            if let Some(c) = self.canonical_parent(p) {
                keys.entry(c.into_os_string().as_bytes().to_vec())
                    .or_default()
                    .push((i, 1));
            }
        }
        // Per path: owners found under each of its two keys.
        let mut found: Vec<[Vec<u32>; 2]> = vec![[Vec::new(), Vec::new()]; paths.len()];
        let mut buf = Vec::new();
        for (pi, p) in self.packages.iter().enumerate() {
            if !p.installed() {
                continue;
            }
            buf.clear();
            let Ok(mut f) = std::fs::File::open(self.info_file(p, "list")) else {
                continue;
            };
            if std::io::Read::read_to_end(&mut f, &mut buf).is_err() {
                continue;
            }
            for line in buf.split(|&b| b == b'\n') {
                if line.is_empty() {
                    continue;
                }
                let mut key: std::borrow::Cow<[u8]> = line.into();
                if let Some(d) = self
                    .diversions
                    .iter()
                    .find(|d| d.from.as_os_str().as_bytes() == line)
                    && d.by.as_deref() != Some(p.name.as_str())
                {
                    key = d.to.as_os_str().as_bytes().to_vec().into();
                }
                if let Some(a) = self.alias_bytes(&key) {
                    key = a.into();
                }
                if let Some(hits) = keys.get(key.as_ref()) {
                    for &(i, k) in hits {
                        let v = &mut found[i][k as usize];
                        if v.last() != Some(&(pi as u32)) {
                            v.push(pi as u32);
                        }
                    }
                }
            }
        }
        found
            .into_iter()
            .zip(paths)
            .map(|([given, resolved], path)| {
                let v = if !given.is_empty() { given } else { resolved };
                if !v.is_empty() {
                    return v.iter().map(|&i| &self.packages[i as usize]).collect();
                }
                match self.alternative(path) {
                    Some(alt) if alt.target != *path => self
                        .owners_of(std::slice::from_ref(&alt.target))
                        .pop()
                        .unwrap_or_default(),
                    _ => Vec::new(),
                }
            })
            .collect()
    }

    /// Answers without reading every `.list` when it can: a shared library's
    /// package is named after its SONAME (Debian policy 8.1: libfoo.so.3 is
    /// in libfoo3, libfoo2.so.1 in libfoo2-1), the loader and libm are in
    /// libc's package, and no package installs outside the FHS's package
    /// directories (a user's build under /home, /work or /usr/local). Each
    /// guess is checked against the package's own list; `None` when a
    /// question stays open.
    fn owners_by_guess(&self, paths: &[PathBuf]) -> Option<Vec<Vec<&Package>>> {
        const PACKAGE_DIRS: &[&str] = &[
            "/bin", "/boot", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/opt", "/sbin",
            "/usr", "/var",
        ];
        const NEVER: &[&str] = &["/usr/local", "/var/local", "/var/tmp", "/var/lib/dpkg"];
        let mut lists: HashMap<usize, Vec<u8>> = HashMap::new();
        let mut out = Vec::new();
        for path in paths {
            let real = self.canonical_parent(path)?;
            let packaged = |p: &Path| {
                PACKAGE_DIRS.iter().any(|d| p.starts_with(d))
                    && !NEVER.iter().any(|d| p.starts_with(d))
            };
            if !packaged(path) && !packaged(&real) {
                out.push(Vec::new());
                continue;
            }
            let name = real.file_name()?.to_string_lossy().into_owned();
            let (stem, ver) = name.split_once(".so.")?;
            let ver = ver.split('.').next().unwrap_or("");
            let stem = stem.to_ascii_lowercase().replace('_', "-");
            let guess = if stem.ends_with(|c: char| c.is_ascii_digit()) {
                format!("{stem}-{ver}")
            } else {
                format!("{stem}{ver}")
            };
            let mut cands: Vec<usize> = Vec::new();
            for n in [guess.as_str(), "libc6"] {
                if let Some(i) = self.package_index(n) {
                    cands.push(i);
                }
            }
            let key = self.alias(&real).into_os_string();
            let mut hit = None;
            for i in cands {
                let list = lists.entry(i).or_insert_with(|| {
                    std::fs::read(self.info_file(&self.packages[i], "list")).unwrap_or_default()
                });
                let listed = list.split(|&b| b == b'\n').any(|l| {
                    let a = self.alias_bytes(l);
                    a.as_deref().unwrap_or(l) == key.as_bytes()
                });
                if listed {
                    hit = Some(&self.packages[i]);
                    break;
                }
            }
            out.push(vec![hit?]);
        }
        Some(out)
    }

    /// The packages owning `path` (usually one; directories have many), as
    /// `dpkg -S` would answer for the file the path names: the path's
    /// directories are resolved inside the root (merged /usr), diversions
    /// applied, and a path that goes through `/etc/alternatives` is owned by
    /// the owner of the file it ends at.
    pub fn owners(&self, path: &Path) -> Vec<&Package> {
        let index = self.owner_index();
        let found = |k: &Path| {
            let v = index.get(k.as_os_str().as_bytes());
            (!v.is_empty()).then(|| v.iter().map(|&i| &self.packages[i as usize]).collect())
        };
        if let Some(v) = found(&self.alias(path)) {
            return v;
        }
        if let Some(c) = self.canonical_parent(path)
            && let Some(v) = found(&c)
        {
            return v;
        }
        if let Some(alt) = self.alternative(path)
            && alt.target != path
        {
            return self.owners(&alt.target);
        }
        Vec::new()
    }

    /// The one package owning the file `path`: the first of [`Self::owners`]
    /// (a file, unlike a directory, has one owner unless packages share it).
    pub fn owner(&self, path: &Path) -> Option<&Package> {
        self.owners(path).into_iter().next()
    }

    /// Whether `path`'s chain of symlinks goes through `/etc/alternatives`,
    /// and where it ends.
    pub fn alternative(&self, path: &Path) -> Option<Alternative> {
        let alt_dir = Path::new("/etc/alternatives");
        let mut cur = self.canonical_parent(path)?;
        let mut name = None;
        for _ in 0..40 {
            if let Ok(rest) = cur.strip_prefix(alt_dir)
                && name.is_none()
            {
                name = Some(rest.to_string_lossy().into_owned());
            }
            let host = self.in_root(&cur);
            let Ok(target) = std::fs::read_link(&host) else {
                break;
            };
            let next = if target.is_absolute() {
                target
            } else {
                cur.parent().unwrap_or(Path::new("/")).join(target)
            };
            cur = self.canonical_parent(&lexical(&next))?;
        }
        name.map(|name| Alternative { name, target: cur })
    }

    /// `path` (absolute, as seen inside the root) on this machine.
    pub fn in_root(&self, path: &Path) -> PathBuf {
        match path.strip_prefix("/") {
            Ok(rel) => self.root.join(rel),
            Err(_) => self.root.join(path),
        }
    }

    /// `path` with its directories resolved inside the root (symlinks
    /// followed, absolute ones taken relative to the root), the last
    /// component kept: the name dpkg would list for that file.
    pub fn canonical_parent(&self, path: &Path) -> Option<PathBuf> {
        let path = lexical(path);
        let name = path.file_name()?;
        let dir = self.resolve_dir(path.parent()?, 0)?;
        Some(dir.join(name))
    }

    fn resolve_dir(&self, dir: &Path, depth: usize) -> Option<PathBuf> {
        if depth > 40 {
            return None;
        }
        let mut out = PathBuf::from("/");
        for c in dir.components() {
            match c {
                Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(n) => {
                    let next = out.join(n);
                    match std::fs::read_link(self.in_root(&next)) {
                        Ok(t) => {
                            let t = if t.is_absolute() { t } else { out.join(t) };
                            out = self.resolve_dir(&lexical(&t), depth + 1)?;
                        }
                        Err(_) => out = next,
                    }
                }
            }
        }
        Some(out)
    }

    /// A listed path with a symlinked top-level directory replaced by its
    /// target (`/bin/bash` -> `/usr/bin/bash`).
    fn alias(&self, path: &Path) -> PathBuf {
        for (from, to) in &self.aliases {
            if let Ok(rest) = path.strip_prefix(from) {
                return if rest.as_os_str().is_empty() {
                    to.clone()
                } else {
                    to.join(rest)
                };
            }
        }
        path.to_path_buf()
    }

    /// `path` (bytes) with a top-level alias replaced, or `None` if none applies.
    fn alias_bytes(&self, path: &[u8]) -> Option<Vec<u8>> {
        for (from, to) in &self.aliases {
            let f = from.as_os_str().as_bytes();
            if let Some(rest) = path.strip_prefix(f)
                && (rest.is_empty() || rest[0] == b'/')
            {
                let mut v = to.as_os_str().as_bytes().to_vec();
                v.extend_from_slice(rest);
                return Some(v);
            }
        }
        None
    }

    fn owner_index(&self) -> &OwnerIndex {
        self.owners.get_or_init(|| {
            let mut ix = OwnerIndex::default();
            ix.table.reserve(1 << 17, |_| 0);
            for (i, p) in self.packages.iter().enumerate() {
                if !p.installed() {
                    continue;
                }
                let start = ix.buf.len();
                let Ok(mut f) = std::fs::File::open(self.info_file(p, "list")) else {
                    continue;
                };
                if std::io::Read::read_to_end(&mut f, &mut ix.buf).is_err() {
                    ix.buf.truncate(start);
                    continue;
                }
                let end = ix.buf.len();
                let mut at = start;
                while at < end {
                    let nl = memchr::memchr(b'\n', &ix.buf[at..end]).map_or(end, |n| at + n);
                    let (mut ks, mut kl) = (at, nl - at);
                    at = nl + 1;
                    if kl == 0 {
                        continue;
                    }
                    let line = &ix.buf[ks..ks + kl];
                    let mut rewritten = None;
                    // A handful of diversions: a scan beats hashing every line twice.
                    if let Some(d) = self
                        .diversions
                        .iter()
                        .find(|d| d.from.as_os_str().as_bytes() == line)
                        && d.by.as_deref() != Some(p.name.as_str())
                    {
                        rewritten = Some(d.to.as_os_str().as_bytes().to_vec());
                    }
                    let cur = rewritten.as_deref().unwrap_or(line);
                    if let Some(a) = self.alias_bytes(cur) {
                        rewritten = Some(a);
                    }
                    if let Some(r) = rewritten {
                        ks = ix.buf.len();
                        kl = r.len();
                        ix.buf.extend_from_slice(&r);
                    }
                    ix.insert(ks, kl, i as u32);
                }
            }
            ix
        })
    }
}

/// Path -> owning packages over one buffer holding every `.list` file: a
/// map of 130,000 owned keys would cost more to build than packing a small
/// program does.
#[derive(Default)]
struct OwnerIndex {
    buf: Vec<u8>,
    table: hashbrown::HashTable<Slot>,
    /// Further owners of a path: (package, next) chains.
    more: Vec<(u32, u32)>,
    hasher: hashbrown::DefaultHashBuilder,
}

#[derive(Clone, Copy)]
struct Slot {
    start: u32,
    len: u32,
    pkg: u32,
    /// Index into `more`, or `u32::MAX`.
    next: u32,
}

impl OwnerIndex {
    fn key(&self, s: &Slot) -> &[u8] {
        &self.buf[s.start as usize..(s.start + s.len) as usize]
    }

    fn insert(&mut self, start: usize, len: usize, pkg: u32) {
        use std::hash::BuildHasher;
        let key = &self.buf[start..start + len];
        let h = self.hasher.hash_one(key);
        let (buf, hasher) = (&self.buf, &self.hasher);
        let k = |s: &Slot| &buf[s.start as usize..(s.start + s.len) as usize];
        match self.table.find_mut(h, |s| k(s) == key) {
            Some(slot) => {
                if slot.pkg == pkg {
                    return;
                }
                // Newest first, so a repeated package is caught at the head.
                let old = *slot;
                self.more.push((old.pkg, old.next));
                slot.pkg = pkg;
                slot.next = (self.more.len() - 1) as u32;
            }
            None => {
                self.table.insert_unique(
                    h,
                    Slot {
                        start: start as u32,
                        len: len as u32,
                        pkg,
                        next: u32::MAX,
                    },
                    |s| hasher.hash_one(k(s)),
                );
            }
        }
    }

    /// The packages listing `key`, in package order.
    fn get(&self, key: &[u8]) -> Vec<u32> {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(key);
        let Some(s) = self.table.find(h, |s| self.key(s) == key) else {
            return Vec::new();
        };
        let mut v = vec![s.pkg];
        let mut n = s.next;
        while n != u32::MAX {
            let (p, next) = self.more[n as usize];
            v.push(p);
            n = next;
        }
        v.reverse();
        v
    }
}

/// `.` and `..` removed without touching the disk.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Symlinks among the root's top-level entries that lead to directories:
/// merged /usr's `/bin -> usr/bin`, `/lib64 -> usr/lib64`...
fn top_level_aliases(root: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(root) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(t) = std::fs::read_link(e.path()) else {
            continue;
        };
        if !e.path().is_dir() {
            continue;
        }
        let from = Path::new("/").join(e.file_name());
        let to = lexical(&Path::new("/").join(t));
        if to != from {
            out.push((from, to));
        }
    }
    out.sort();
    out
}

/// Splits `status` into packages.
fn parse_status(text: &str) -> Result<Vec<Package>> {
    let mut out = Vec::new();
    let mut lines = text.split_inclusive('\n').peekable();
    let mut line_no = 0usize;
    loop {
        while lines.peek().is_some_and(|l| l.trim().is_empty()) {
            lines.next();
            line_no += 1;
        }
        if lines.peek().is_none() {
            break;
        }
        let start = line_no + 1;
        let mut stanza = String::new();
        let mut fields: Vec<(String, String)> = Vec::new();
        while let Some(l) = lines.next_if(|l| !l.trim().is_empty()) {
            line_no += 1;
            stanza.push_str(l);
            let body = l.strip_suffix('\n').unwrap_or(l);
            if body.starts_with([' ', '\t']) {
                let Some((_, v)) = fields.last_mut() else {
                    bail!("line {line_no}: a continuation line before any field");
                };
                v.push('\n');
                v.push_str(body);
            } else {
                let Some((k, v)) = body.split_once(':') else {
                    bail!("line {line_no}: not a 'Field: value' line");
                };
                fields.push((k.to_string(), v.trim().to_string()));
            }
        }
        let stanza = stanza.trim_end_matches('\n').to_string();
        let get = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let Some(name) = get("Package") else {
            bail!("line {start}: a stanza without a Package field");
        };
        let multi_arch_same = get("Multi-Arch").as_deref() == Some("same");
        out.push(Package {
            arch: get("Architecture").unwrap_or_default(),
            version: get("Version").unwrap_or_default(),
            name,
            stanza,
            fields,
            multi_arch_same,
        });
    }
    Ok(out)
}

/// `diversions`: triples of lines (from, to, package or ':').
fn parse_diversions(bytes: &[u8]) -> Vec<Diversion> {
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    lines
        .chunks_exact(3)
        .filter(|c| !c[0].is_empty())
        .map(|c| Diversion {
            from: PathBuf::from(OsStr::from_bytes(c[0])),
            to: PathBuf::from(OsStr::from_bytes(c[1])),
            by: (c[2] != b":").then(|| String::from_utf8_lossy(c[2]).into_owned()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations() {
        let g = parse_relations("libc6 (>= 2.34), perl:any | perl-base (= 5.36), libx [amd64]");
        assert_eq!(g.len(), 3);
        assert_eq!(g[0][0].name, "libc6");
        assert_eq!(
            g[0][0].version,
            Some((">=".to_string(), "2.34".to_string()))
        );
        assert_eq!(g[1][0].arch.as_deref(), Some("any"));
        assert_eq!(g[1][1].name, "perl-base");
        assert_eq!(g[2][0].name, "libx");
    }

    #[test]
    fn status_stanzas_verbatim() {
        let text = "Package: a\nStatus: install ok installed\nDescription: x\n y\n .\n\n\
                    Package: b\nStatus: deinstall ok config-files\nVersion: 1\n";
        let p = parse_status(text).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0].stanza,
            "Package: a\nStatus: install ok installed\nDescription: x\n y\n ."
        );
        assert_eq!(p[0].field("description"), Some("x\n y\n ."));
        assert!(p[0].installed());
        assert!(!p[1].installed());
        assert!(parse_status("no colon here\n").is_err());
    }

    #[test]
    fn diversions_triples() {
        let d = parse_diversions(b"/a\n/a.real\npkg\n/b\n/b.local\n:\n");
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].by.as_deref(), Some("pkg"));
        assert_eq!(d[1].by, None);
    }
}
