//! Package data: the files a program's Debian packages installed for it to
//! use at run time (interpreter standard libraries, modules, plugins, data,
//! configuration), which no ELF header names.
//!
//! Why a rule over packages rather than a list of programs: the files a
//! real program needs (perl's modules, the JVM's `lib/`, vim's runtime,
//! ImageMagick's coders) are all recorded by dpkg as belonging to the
//! program's package or to a package split off from it, so one rule fits
//! them all. The rule (README "Package data"):
//! 1. The packages of each program (the owner of the path as given and of
//!    the file it ends at, e.g. python3-minimal and python3.11-minimal) and
//!    those named with `--package` are *program packages*; so is every
//!    package one of them depends on or recommends that was built from the
//!    same source (Debian splits one upstream into several: python3.11 ->
//!    libpython3.11-stdlib, vim -> vim-runtime, imagemagick ->
//!    libmagickcore), and every package one of them depends on that holds
//!    no programs and no shared objects (a *data package*, e.g. media-types).
//! 2. A library that is in the image only because something links to it
//!    brings just the data packages its package depends on (libmagic1 ->
//!    libmagic-mgc).
//! 3. Of those packages, every file ships except what a program cannot use
//!    at run time: documentation, man and info pages, translations,
//!    completions, desktop files and icons, headers, static and import
//!    libraries, pkg-config and init-system files, shared libraries in the
//!    loader's directories (the ELF closure decides those), other programs
//!    (except those in the packed program's own directory when it is not a
//!    shared bin directory: initdb runs the postgres beside it), and
//!    scripts whose interpreter is not in the image; and what elfpack's own
//!    options govern (gconv modules, compiled locales, the generated /etc).
//! 4. Files no package lists in a directory only chosen packages own: what
//!    their maintainer scripts generated (graphviz's plugin config).
//!
//! This module only selects; [`crate::collect::extras`] ships the files and
//! the closures of the ELF files among them.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::collect::dpkg::{Dpkg, Package};

/// One file (or directory) the rule ships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub path: PathBuf,
    pub package: String,
    /// Why the package is in: "owns /usr/bin/perl", "vim depends on it"...
    pub why: String,
    pub is_dir: bool,
    /// An ELF file: it ships with its closure.
    pub elf: bool,
    /// An ELF program (in the packed program's own directory) that may run.
    pub runs: bool,
}

/// Directories whose programs are every package's: none of them ship as
/// package data.
const BIN_DIRS: &[&str] = &[
    "/usr/bin",
    "/usr/sbin",
    "/bin",
    "/sbin",
    "/usr/games",
    "/usr/local/bin",
    "/usr/local/sbin",
];

/// The loader's default directories (plus merged-/usr twins): shared
/// libraries directly in them ship only through the ELF closure.
const LOADER_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib",
    "/usr/lib",
    "/lib64",
    "/usr/lib64",
];

/// Trees nothing runs from: docs, manuals, translations, completions,
/// desktop integration, build-time files, init systems.
const EXCLUDED_TREES: &[&str] = &[
    "/usr/share/doc",
    "/usr/share/doc-base",
    "/usr/share/man",
    "/usr/share/info",
    "/usr/share/locale",
    "/usr/share/lintian",
    "/usr/share/bug",
    "/usr/share/bash-completion",
    "/usr/share/zsh",
    "/usr/share/fish",
    "/etc/bash_completion.d",
    "/usr/share/icons",
    "/usr/share/pixmaps",
    "/usr/share/applications",
    "/usr/share/menu",
    "/usr/share/metainfo",
    "/usr/share/appdata",
    "/usr/share/mime",
    "/usr/share/gtk-doc",
    "/usr/share/help",
    "/usr/share/pkgconfig",
    "/usr/lib/pkgconfig",
    "/usr/lib/x86_64-linux-gnu/pkgconfig",
    "/usr/include",
    "/usr/src",
    "/usr/lib/systemd",
    "/lib/systemd",
    "/usr/lib/tmpfiles.d",
    "/usr/lib/sysusers.d",
    "/etc/systemd",
    "/etc/init.d",
    "/etc/init",
    "/etc/cron.d",
    "/etc/cron.daily",
    "/etc/cron.weekly",
    "/etc/cron.monthly",
    "/etc/cron.hourly",
    "/etc/logrotate.d",
    "/etc/apparmor.d",
    "/etc/X11/Xsession.d",
    "/etc/xdg/autostart",
    "/etc/default",
    "/usr/share/debhelper",
    "/usr/share/dh-python",
    // Governed by elfpack's own options: --gconv, --locale, the generated /etc.
    "/usr/lib/x86_64-linux-gnu/gconv",
    "/usr/lib/locale",
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/nsswitch.conf",
    "/etc/hosts",
    "/etc/ld.so.cache",
];

/// Whether `p` is something no program uses at run time.
pub fn excluded(p: &Path) -> bool {
    if EXCLUDED_TREES.iter().any(|t| p.starts_with(t)) {
        return true;
    }
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    // Static libraries and compiled translations anywhere; libtool files
    // only beside the loader's libraries (in a plugin directory libltdl
    // finds the plugins through them: ImageMagick's coders).
    name.ends_with(".a")
        || name.ends_with(".mo")
        || (name.ends_with(".la") && in_dirs(p, LOADER_DIRS))
}

fn in_dirs(p: &Path, dirs: &[&str]) -> bool {
    p.parent()
        .is_some_and(|d| dirs.iter().any(|b| d == Path::new(b)))
}

fn is_shared_object_name(p: &Path) -> bool {
    let n = p
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    n.ends_with(".so") || n.contains(".so.")
}

/// A package with no programs and no shared objects: only data.
pub fn is_data_package(db: &Dpkg, pkg: &Package) -> bool {
    let Ok(files) = db.files(pkg) else {
        return false;
    };
    !files.is_empty()
        && !files
            .iter()
            .any(|f| in_dirs(f, BIN_DIRS) || is_shared_object_name(f))
}

/// The first bytes of a regular file.
fn head(p: &Path) -> Vec<u8> {
    let mut buf = vec![0u8; 256];
    let n = std::fs::File::open(p)
        .and_then(|mut f| f.read(&mut buf))
        .unwrap_or(0);
    buf.truncate(n);
    buf
}

/// The packages the rule starts from and how each got in, by package id.
struct Chosen<'a> {
    db: &'a Dpkg,
    order: Vec<&'a Package>,
    why: BTreeMap<String, String>,
}

impl<'a> Chosen<'a> {
    fn add(&mut self, p: &'a Package, why: String) -> bool {
        if self.why.contains_key(&p.id()) {
            return false;
        }
        self.why.insert(p.id(), why);
        self.order.push(p);
        true
    }

    /// Rule 1's closure over Depends, Pre-Depends and Recommends.
    fn expand_programs(&mut self) {
        let mut i = 0;
        while i < self.order.len() {
            let p = self.order[i];
            i += 1;
            let src = p.source().0;
            for (field, recommends) in [
                ("Pre-Depends", false),
                ("Depends", false),
                ("Recommends", true),
            ] {
                let Some(v) = p.field(field) else { continue };
                for g in crate::collect::dpkg::parse_relations(v) {
                    let Some(q) = self.db.satisfy(&g) else {
                        continue;
                    };
                    let verb = if recommends {
                        "recommends"
                    } else {
                        "depends on"
                    };
                    if q.source().0 == src {
                        self.add(q, format!("{} {verb} it (same source {src})", p.name));
                    } else if !recommends && is_data_package(self.db, q) {
                        self.add(q, format!("{} {verb} it (a data package)", p.name));
                    }
                }
            }
        }
    }

    /// Data packages `p` depends on, transitively.
    fn add_data_deps(&mut self, p: &'a Package, via: &str) {
        let mut stack = vec![p];
        while let Some(p) = stack.pop() {
            for q in self.db.dependencies(p) {
                if !self.why.contains_key(&q.id()) && is_data_package(self.db, q) {
                    self.add(
                        q,
                        format!("{} depends on it (a data package) [{via}]", p.name),
                    );
                    stack.push(q);
                }
            }
        }
    }
}

/// What the rule ships for `programs` (paths as given), whose start-up
/// closures hold `libraries`, plus the packages `named` (`--package`).
/// Unknown `--package` names are errors; files that vanished are skipped.
pub fn select(
    db: &Dpkg,
    programs: &[PathBuf],
    libraries: &[PathBuf],
    named: &[String],
) -> anyhow::Result<Vec<Selected>> {
    let mut chosen = Chosen {
        db,
        order: Vec::new(),
        why: BTreeMap::new(),
    };
    // Programs, as given and as the file they end at.
    let mut program_files: HashSet<PathBuf> = HashSet::new();
    let mut program_names: HashSet<String> = HashSet::new();
    let mut own_dirs: HashSet<PathBuf> = HashSet::new();
    // Every ownership question of rules 1 and 2 in one pass over the lists.
    let mut asked: Vec<PathBuf> = Vec::new();
    for p in programs {
        let real = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        asked.push(p.clone());
        asked.push(real);
    }
    asked.extend(libraries.iter().cloned());
    let answers = db.owners_of(&asked);
    for (k, p) in programs.iter().enumerate() {
        let real = &asked[2 * k + 1];
        for (j, q) in [p, real].into_iter().enumerate() {
            program_files.insert(q.clone());
            if let Some(n) = q.file_name() {
                program_names.insert(n.to_string_lossy().into_owned());
            }
            for o in &answers[2 * k + j] {
                chosen.add(o, format!("owns {}", q.display()));
            }
        }
        if let Some(d) = real.parent()
            && !BIN_DIRS.iter().any(|b| d == Path::new(b))
        {
            own_dirs.insert(d.to_path_buf());
        }
    }
    for n in named {
        let Some(p) = db.package(n) else {
            anyhow::bail!("--package {n}: no installed package of that name");
        };
        chosen.add(p, "named with --package".to_string());
    }
    chosen.expand_programs();
    let programs_end = chosen.order.len();
    for i in 0..programs_end {
        let p = chosen.order[i];
        chosen.add_data_deps(p, "program package");
    }
    // Rule 2: libraries bring their data packages.
    let mut lib_pkgs: Vec<(&Package, &PathBuf)> = Vec::new();
    for (l, owners) in libraries.iter().zip(&answers[2 * programs.len()..]) {
        if let Some(&o) = owners.first()
            && !lib_pkgs.iter().any(|(p, _)| p.id() == o.id())
        {
            lib_pkgs.push((o, l));
        }
    }
    for (p, l) in lib_pkgs {
        chosen.add_data_deps(p, &format!("{} for {}", p.name, l.display()));
    }

    let mut out = Vec::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    for p in chosen.order.clone() {
        let why = chosen.why[&p.id()].clone();
        let files = db.files(p)?;
        // Directories ship only as leaves (/var/log/nginx): the others come
        // with the files in them.
        let parents: HashSet<&Path> = files.iter().filter_map(|f| f.parent()).collect();
        for listed in &files {
            if listed == Path::new("/.") {
                continue;
            }
            let path = db.installed_path(p, listed);
            if excluded(&path) || program_files.contains(&path) || in_dirs(&path, BIN_DIRS) {
                continue;
            }
            let host = db.in_root(&path);
            let Ok(meta) = std::fs::symlink_metadata(&host) else {
                continue;
            };
            // A symlink ships with what it points at; a dangling one is skipped.
            let Ok(target_meta) = std::fs::metadata(&host) else {
                continue;
            };
            // A symlink ships only when it leads to a file of these packages
            // (openssl's cert.pem leads to the generated CA bundle: not its data).
            if meta.is_symlink() && !target_meta.is_dir() {
                let inside = std::fs::canonicalize(&host)
                    .ok()
                    .and_then(|t| db.owner(&t))
                    .is_some_and(|o| chosen.why.contains_key(&o.id()));
                if !inside {
                    continue;
                }
            }
            if target_meta.is_dir() {
                if !meta.is_symlink()
                    && !parents.contains(listed.as_path())
                    && seen.insert(path.clone())
                {
                    out.push(Selected {
                        path,
                        package: p.id(),
                        why: why.clone(),
                        is_dir: true,
                        elf: false,
                        runs: false,
                    });
                }
                continue;
            }
            if !target_meta.is_file() {
                continue;
            }
            let so_name = is_shared_object_name(&path);
            if so_name && in_dirs(&path, LOADER_DIRS) {
                continue;
            }
            let exec = target_meta.permissions().mode() & 0o111 != 0;
            let (mut elf, mut runs) = (false, false);
            if exec || so_name {
                let h = head(&host);
                elf = h.starts_with(b"\x7fELF");
                if elf && exec && !so_name {
                    // Another program: only from the packed program's own directory.
                    if !path.parent().is_some_and(|d| own_dirs.contains(d)) {
                        continue;
                    }
                    runs = true;
                } else if !elf && exec && h.starts_with(b"#!") {
                    let line = h[2..].split(|&b| b == b'\n').next().unwrap_or(&[]);
                    let line = String::from_utf8_lossy(line);
                    let mut words = line.split_whitespace();
                    let interp = PathBuf::from(words.next().unwrap_or(""));
                    let runs_in_image = if interp.file_name().is_some_and(|n| n == "env") {
                        words
                            .find(|w| !w.starts_with('-'))
                            .is_some_and(|w| program_names.contains(w))
                    } else {
                        program_files.contains(&interp)
                            || std::fs::canonicalize(&interp)
                                .is_ok_and(|r| program_files.contains(&r))
                    };
                    if !runs_in_image {
                        continue;
                    }
                }
            }
            if seen.insert(path.clone()) {
                out.push(Selected {
                    path,
                    package: p.id(),
                    why: why.clone(),
                    is_dir: false,
                    elf,
                    runs,
                });
            }
        }
    }
    // Files a maintainer script generated (graphviz's config6a) live in the
    // package's own directories but no package lists them: ship the regular
    // files of every directory whose owners are all chosen packages.
    let dirs: std::collections::BTreeSet<PathBuf> = out
        .iter()
        .filter(|s| !s.is_dir)
        .filter_map(|s| s.path.parent().map(Path::to_path_buf))
        .collect();
    for d in dirs {
        let owners = db.owners(&d);
        if owners.is_empty() || !owners.iter().all(|o| chosen.why.contains_key(&o.id())) {
            continue;
        }
        let Ok(rd) = std::fs::read_dir(db.in_root(&d)) else {
            continue;
        };
        let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for n in names {
            let path = d.join(&n);
            let host = db.in_root(&path);
            let is_file = std::fs::symlink_metadata(&host).is_ok_and(|m| m.is_file());
            if !is_file || seen.contains(&path) || excluded(&path) || !db.owners(&path).is_empty() {
                continue;
            }
            seen.insert(path.clone());
            out.push(Selected {
                path,
                package: owners[0].id(),
                why: format!(
                    "in {}'s own directory, generated there (no package lists it)",
                    owners[0].name
                ),
                is_dir: false,
                elf: false,
                runs: false,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusions() {
        for p in [
            "/usr/share/doc/x/copyright",
            "/usr/share/man/man1/ls.1.gz",
            "/usr/share/locale/de/LC_MESSAGES/x.mo",
            "/usr/share/vim/vim90/lang/de/LC_MESSAGES/vim.mo",
            "/usr/lib/x86_64-linux-gnu/libfoo.a",
            "/usr/include/stdio.h",
            "/usr/share/bash-completion/completions/git",
            "/lib/systemd/system/nginx.service",
        ] {
            assert!(excluded(Path::new(p)), "{p}");
        }
        for p in [
            "/usr/lib/python3.11/json/__init__.py",
            "/usr/share/vim/vim90/syntax/c.vim",
            "/usr/share/vim/vim90/doc/help.txt",
            "/etc/nginx/nginx.conf",
            "/usr/lib/x86_64-linux-gnu/gawk/filefuncs.so",
        ] {
            assert!(!excluded(Path::new(p)), "{p}");
        }
    }
}
