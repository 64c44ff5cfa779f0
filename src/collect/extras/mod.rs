//! Files a program needs that no ELF header names: what `--trace` sees it
//! load, what the user names with `--add`, the CA bundle (`--ca-certs`),
//! time zones (`--tzdata`) and locales (`--locale`). ELF files among them
//! bring their own closure.
//!
//! [`collect`] turns the options into [`Item`]s (host path -> image path),
//! each with the reason it ships; [`crate::plan::extras`] puts them into a
//! plan; [`crate::report::extras`] explains them, `deps`-style.
//!
//! Split by job: `add.rs` (`--add`), `traced.rs` (`--trace`), `host_data.rs`
//! (`--ca-certs`, `--tzdata`, `--locale`); this file holds the shared
//! `Builder` and the ELF closure of every ELF file they bring.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

mod add;
mod host_data;
mod packages;
mod traced;

pub use host_data::normalize_locale;

use crate::collect::options::{Options, Program};
use crate::collect::runtime;
use crate::collect::script;
use crate::collect::trace;
use crate::elf::Kind;
use crate::loader::resolve::{Closure, Reason, Resolver, Via};

/// Where one extra path goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Item {
    /// A host file or directory at its own path, with the symlinks on the way
    /// (a directory ships empty: its content ships only as items of its own).
    HostPath(PathBuf),
    /// The host file `src` (symlinks followed) at `dest`.
    FileAs { src: PathBuf, dest: PathBuf },
    /// An empty directory.
    DirAs { dest: PathBuf, mode: u32 },
    /// A symlink (made relative when placed).
    Symlink { dest: PathBuf, target: PathBuf },
    /// A file made by elfpack (a locale cut out of the locale archive).
    Data { dest: PathBuf, bytes: Vec<u8> },
}

/// What a prefix bundle (or single file) does with an item; a tree keeps
/// every item at its own path, so only bundles look at this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A file at its image path (data, modules loaded by path, programs).
    Data,
    /// A library the loader searches for by this name: a bundle keeps it in
    /// its flat lib dir, where the programs' DT_RPATH points.
    Library(String),
    /// The baseline twin of a glibc-hwcaps library: a bundle's flat lib dir
    /// has room for one copy per name, the one the host's loader picked.
    Baseline,
}

#[derive(Debug, Clone)]
pub struct Added {
    pub item: Item,
    pub role: Role,
    /// The option that asked for it (`--trace`, `--add SPEC`, ...).
    pub source: String,
    /// Why it is there, for the report.
    pub why: String,
}

#[derive(Debug, Clone, Default)]
pub struct Extras {
    pub added: Vec<Added>,
    pub warnings: Vec<String>,
    /// What each `--trace` run ran and what it left out.
    pub traces: Vec<trace::Traced>,
}

struct Builder<'a> {
    resolver: &'a mut Resolver,
    opts: &'a Options,
    /// (dev, inode) of every ELF object already in a closure.
    known: HashSet<(u64, u64)>,
    items: HashSet<Item>,
    out: Extras,
}

/// Collects the extra files for `col` (whose programs and closures are done).
pub fn collect(
    resolver: &mut Resolver,
    programs: &[Program],
    closures: &[Closure],
    opts: &Options,
) -> Result<Extras> {
    let e = &opts.extras;
    let mut b = Builder {
        known: closures
            .iter()
            .flat_map(|c| &c.objects)
            .filter_map(|o| file_id(&o.path))
            .collect(),
        resolver,
        opts,
        items: HashSet::new(),
        out: Extras::default(),
    };
    if let Some(t) = &e.trace {
        let packed: Vec<PathBuf> = programs.iter().map(|p| p.path.clone()).collect();
        for (program, args) in traced::runs(programs, t)? {
            b.trace(&program, &args, t, &packed)?;
        }
    }
    for spec in &e.add {
        b.add_spec(spec).with_context(|| format!("--add {spec}"))?;
    }
    if let Some(bundle) = &e.ca_certs {
        b.ca_certs(bundle.as_deref())?;
    }
    if e.tzdata {
        b.tzdata()?;
    }
    for l in &e.locales {
        b.locale(l).with_context(|| format!("--locale {l}"))?;
    }
    // Package data reads the build host's dpkg database: not a sysroot's (yet).
    let on_host = b.resolver.root() == Path::new("/");
    if on_host && (e.package_data || !e.packages.is_empty()) {
        let progs: Vec<PathBuf> = if e.package_data {
            programs
                .iter()
                .map(|p| p.path.clone())
                .chain(closures.iter().map(|c| c.program().path.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let libs: Vec<PathBuf> = closures
            .iter()
            .flat_map(|c| c.objects.iter().skip(1))
            .map(|o| o.path.clone())
            .collect();
        b.package_data(&progs, &libs, &e.packages)?;
    }
    Ok(b.out)
}

impl Builder<'_> {
    pub(super) fn push(&mut self, item: Item, source: &str, why: impl Into<String>) {
        self.push_as(item, Role::Data, source, why);
    }

    pub(super) fn push_as(&mut self, item: Item, role: Role, source: &str, why: impl Into<String>) {
        if !self.items.insert(item.clone()) {
            return;
        }
        self.out.added.push(Added {
            item,
            role,
            source: source.to_string(),
            why: why.into(),
        });
    }

    /// Ships the closure of ELF file `path` (already an item itself); libc's
    /// run-time loads too when it is a program that runs.
    pub(super) fn elf_closure(&mut self, path: &Path, runs: bool, source: &str) {
        self.elf_closure_in(path, runs, source, &[]);
    }

    /// [`Self::elf_closure`] for a file loaded into a process that had
    /// already loaded the ELF files `loaded` (see
    /// [`Resolver::resolve_in_process`]).
    pub(super) fn elf_closure_in(
        &mut self,
        path: &Path,
        runs: bool,
        source: &str,
        loaded: &[PathBuf],
    ) {
        let mut c = match self.resolver.resolve_in_process(path, loaded) {
            Ok(c) => c,
            Err(e) => {
                self.out.warnings.push(format!(
                    "{}: shipped without its libraries: {e:#}",
                    path.display()
                ));
                return;
            }
        };
        if runs && c.program().info.kind == Kind::Dynamic {
            match runtime::add_runtime_loads(
                self.resolver,
                &mut c,
                &self.opts.nsswitch,
                &self.opts.gconv,
            ) {
                Ok(data) => {
                    for d in data {
                        let why = format!("run-time data of {}", path.display());
                        self.push(Item::HostPath(d), source, why);
                    }
                }
                Err(e) => self
                    .out
                    .warnings
                    .push(format!("{}: run-time libraries: {e:#}", path.display())),
            }
        }
        self.out.warnings.append(&mut c.warnings);
        if let Some(id) = file_id(path) {
            self.known.insert(id);
        }
        for o in &c.objects[1..] {
            if o.via == Via::Loaded {
                // Shipped (and resolved) as an item of its own.
                continue;
            }
            let Some(id) = file_id(&o.path) else { continue };
            if !self.known.insert(id) {
                continue;
            }
            let why = match &o.reason {
                Reason::Needed => format!(
                    "{} for {} [{}]",
                    o.name,
                    c.objects[o.loader.unwrap_or(0)].path.display(),
                    o.via
                ),
                Reason::RunTime(r) => format!("{} for {} ({r})", o.name, path.display()),
            };
            let role = match o.lib_name() {
                Ok(name) => Role::Library(name),
                Err(_) => Role::Data,
            };
            self.push_as(Item::HostPath(o.path.clone()), role, source, why);
            if let Some(b) = &o.baseline {
                let why = format!("baseline copy of {} for any x86-64 CPU", o.path.display());
                self.push_as(Item::HostPath(b.clone()), Role::Baseline, source, why);
            }
        }
    }

    /// A `#!` script that was run: its interpreter (which the kernel opens
    /// without a traced syscall) and that interpreter's closure.
    pub(super) fn script_interpreter(&mut self, path: &Path, source: &str) -> Result<()> {
        let Ok(Some(sb)) = script::read_shebang(path, &self.opts.search_path) else {
            return Ok(());
        };
        for p in std::iter::once(sb.interpreter).chain(sb.env_target) {
            if trace::excluded(&p, None).is_some() || !p.is_file() {
                continue;
            }
            let why = format!("#! interpreter of {}", path.display());
            self.push(Item::HostPath(p.clone()), source, why);
            if file_id(&p).is_some_and(|id| !self.known.contains(&id)) {
                self.elf_closure(&p, true, source);
            }
        }
        Ok(())
    }
}

pub(super) fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    v.sort();
    Ok(v)
}

/// (device, inode) of `p`, symlinks followed: one file under any name.
pub(crate) fn file_id(p: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}
