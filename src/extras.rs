//! Files a program needs that no ELF header names: what `--trace` sees it
//! load, what the user names with `--add`, the CA bundle (`--ca-certs`),
//! time zones (`--tzdata`) and locales (`--locale`). ELF files among them
//! bring their own closure.
//!
//! [`collect`] turns the options into [`Item`]s (host path -> image path),
//! each with the reason it ships; [`place`] puts them into a rootfs plan;
//! [`report`] explains them, `deps`-style.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::collect::Collection;
use crate::elf::Kind;
use crate::locale_archive;
use crate::plan::{Node, Plan, relative_to};
use crate::resolve::{Reason, Resolver};
use crate::{runtime, script, trace};

/// The command-line flags (flattened into the shared collect options).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ExtraArgs {
    /// Run the (first) program once here under ptrace and also ship every existing file it opens,
    /// stats or runs (and the libraries of ELF files among them).
    #[arg(long)]
    pub trace: bool,
    /// An argument for the traced run (repeatable; or give them after `--`, for packing and deps).
    #[arg(
        long = "trace-arg",
        value_name = "ARG",
        allow_hyphen_values = true,
        requires = "trace"
    )]
    pub trace_arg: Vec<OsString>,
    /// Standard input of the traced run (default: /dev/null).
    #[arg(long, value_name = "FILE", requires = "trace")]
    pub trace_stdin: Option<PathBuf>,
    /// Seconds the traced run may take.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub trace_timeout: u64,
    /// Use the traced run even if it exits non-zero or is killed by a signal.
    #[arg(long, requires = "trace")]
    pub trace_allow_fail: bool,
    /// Ship a file, directory (recursively) or glob; at DEST in the image instead of its own path.
    #[arg(long, value_name = "SRC[:DEST]")]
    pub add: Vec<String>,
    /// Ship a CA bundle where OpenSSL, GnuTLS and Go look by default
    /// (/etc/ssl/certs/ca-certificates.crt, /usr/lib/ssl/cert.pem): the host's, or FILE with
    /// --ca-certs=FILE. SSL_CERT_FILE / SSL_CERT_DIR still override it at run time.
    #[arg(long, value_name = "FILE", num_args = 0..=1, require_equals = true)]
    pub ca_certs: Option<Option<PathBuf>>,
    /// Ship the time zone database (/usr/share/zoneinfo) for TZ=Area/City.
    #[arg(long)]
    pub tzdata: bool,
    /// Ship a compiled locale, e.g. C.UTF-8 (repeatable).
    #[arg(long, value_name = "NAME")]
    pub locale: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub trace: Option<trace::Options>,
    /// `SRC[:DEST]` specs.
    pub add: Vec<String>,
    /// `Some(None)`: the host's bundle.
    pub ca_certs: Option<Option<PathBuf>>,
    pub tzdata: bool,
    pub locales: Vec<String>,
}

impl ExtraArgs {
    /// Whether any of these options was given.
    pub fn any(&self) -> bool {
        self.trace
            || !self.add.is_empty()
            || self.ca_certs.is_some()
            || self.tzdata
            || !self.locale.is_empty()
    }

    /// `trailing`: the command line's `-- ARGS`, which the traced run gets
    /// after the --trace-arg ones.
    pub fn options(&self, trailing: &[String]) -> Options {
        Options {
            trace: self.trace.then(|| trace::Options {
                args: self
                    .trace_arg
                    .iter()
                    .cloned()
                    .chain(trailing.iter().map(OsString::from))
                    .collect(),
                stdin: self.trace_stdin.clone(),
                timeout: Duration::from_secs(self.trace_timeout),
                allow_fail: self.trace_allow_fail,
            }),
            add: self.add.clone(),
            ca_certs: self.ca_certs.clone(),
            tzdata: self.tzdata,
            locales: self.locale.clone(),
        }
    }
}

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
    /// What `--trace` ran and what it left out.
    pub trace: Option<trace::Traced>,
}

/// Images paths that hold too many files to list one by one in the report.
const LIST_LIMIT: usize = 40;

struct Builder<'a> {
    resolver: &'a mut Resolver,
    opts: &'a crate::collect::Options,
    /// (dev, inode) of every ELF object already in a closure.
    known: HashSet<(u64, u64)>,
    items: HashSet<Item>,
    out: Extras,
}

/// Collects the extra files for `col` (whose programs and closures are done).
pub fn collect(
    resolver: &mut Resolver,
    col: &Collection,
    opts: &crate::collect::Options,
) -> Result<Extras> {
    let e = &opts.extras;
    let mut b = Builder {
        known: col
            .closures
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
        let Some(first) = col.programs.first() else {
            bail!("--trace: no program to run");
        };
        if col.programs.len() > 1 {
            bail!(
                "--trace runs one program; name only one (pack the others separately or --add them)"
            );
        }
        b.trace(&first.path, t)?;
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
    Ok(b.out)
}

impl Builder<'_> {
    fn push(&mut self, item: Item, source: &str, why: impl Into<String>) {
        self.push_as(item, Role::Data, source, why);
    }

    fn push_as(&mut self, item: Item, role: Role, source: &str, why: impl Into<String>) {
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

    fn trace(&mut self, program: &Path, opts: &trace::Options) -> Result<()> {
        let t = trace::trace(program, opts)?;
        self.out.warnings.extend(t.warnings.iter().cloned());
        for f in &t.found {
            let a = &f.access;
            if a.path == program {
                // The program itself: placed by the layout (maybe elsewhere, --install-to).
                continue;
            }
            let why = format!("{} by pid {} ({})", a.syscall, a.pid, a.program.display());
            self.push(Item::HostPath(a.path.clone()), "--trace", why);
            if f.is_dir {
                continue;
            }
            let elf_needs_closure = f.is_elf
                && matches!(a.what, trace::What::Read | trace::What::Exec)
                && file_id(&a.path).is_some_and(|id| !self.known.contains(&id));
            if elf_needs_closure {
                self.elf_closure(&a.path, a.what == trace::What::Exec, "--trace");
            } else if a.what == trace::What::Exec && !f.is_elf {
                self.script_interpreter(&a.path, "--trace")?;
            }
        }
        self.out.trace = Some(t);
        Ok(())
    }

    /// Ships the closure of ELF file `path` (already an item itself); libc's
    /// run-time loads too when it is a program that runs.
    fn elf_closure(&mut self, path: &Path, runs: bool, source: &str) {
        let mut c = match self.resolver.resolve(path) {
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
            let role = match crate::prefix::lib_name(o) {
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
    fn script_interpreter(&mut self, path: &Path, source: &str) -> Result<()> {
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

    fn add_spec(&mut self, spec: &str) -> Result<()> {
        let source = format!("--add {spec}");
        let (src, dest) = split_spec(spec);
        if let Some(d) = &dest
            && !d.is_absolute()
        {
            bail!(
                "{}: DEST must be an absolute path in the image",
                d.display()
            );
        }
        let pattern = src.to_string_lossy();
        let srcs: Vec<PathBuf> = if pattern.contains(['*', '?', '[']) && !src.exists() {
            let mut v: Vec<PathBuf> = glob::glob(&pattern)
                .with_context(|| format!("{pattern}: bad glob pattern"))?
                .filter_map(|p| p.ok())
                .collect();
            v.sort();
            if v.is_empty() {
                bail!("{pattern}: matches nothing");
            }
            v
        } else {
            vec![src.clone()]
        };
        let many = srcs.len() > 1 || pattern.contains(['*', '?', '[']) && !src.exists();
        for s in srcs {
            let s = std::path::absolute(&s)
                .with_context(|| format!("{}: cannot make it absolute", s.display()))?;
            let meta =
                std::fs::metadata(&s).with_context(|| format!("{}: cannot add", s.display()))?;
            let target = dest.as_ref().map(|d| {
                if many || d.as_os_str().to_string_lossy().ends_with('/') {
                    d.join(s.file_name().unwrap_or_default())
                } else {
                    d.clone()
                }
            });
            if meta.is_dir() {
                self.add_dir(&s, target.as_deref(), &source, 0)?;
            } else if meta.is_file() {
                self.add_file(&s, target.as_deref(), &source);
            } else {
                bail!("{}: not a regular file or directory", s.display());
            }
        }
        Ok(())
    }

    fn add_file(&mut self, src: &Path, dest: Option<&Path>, source: &str) {
        let item = match dest {
            None => Item::HostPath(src.to_path_buf()),
            Some(d) => Item::FileAs {
                src: src.to_path_buf(),
                dest: d.to_path_buf(),
            },
        };
        self.push(item, source, "named on the command line");
        if crate::elf::has_elf_magic(src)
            && file_id(src).is_some_and(|id| !self.known.contains(&id))
        {
            if dest.is_some() {
                self.out.warnings.push(format!(
                    "{}: an ELF file moved by --add; libraries it finds through $ORIGIN may not be found",
                    src.display()
                ));
            }
            self.elf_closure(src, true, source);
        }
    }

    /// Adds `dir` recursively: at its own path (symlinks kept as symlinks) or
    /// copied under `dest` (symlinks followed).
    fn add_dir(
        &mut self,
        dir: &Path,
        dest: Option<&Path>,
        source: &str,
        depth: usize,
    ) -> Result<()> {
        if depth > 32 {
            bail!(
                "{}: directories nested too deep (a symlink loop?)",
                dir.display()
            );
        }
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
        match dest {
            None => self.push(
                Item::HostPath(dir.to_path_buf()),
                source,
                "named on the command line",
            ),
            Some(d) => self.push(
                Item::DirAs {
                    dest: d.to_path_buf(),
                    mode,
                },
                source,
                "named on the command line",
            ),
        }
        for entry in sorted_dir(dir)? {
            let name = entry.file_name().unwrap_or_default().to_owned();
            let lmeta = std::fs::symlink_metadata(&entry)?;
            let sub_dest = dest.map(|d| d.join(&name));
            if lmeta.file_type().is_symlink() && dest.is_none() {
                match std::fs::metadata(&entry) {
                    Ok(_) => self.push(
                        Item::HostPath(entry.clone()),
                        source,
                        "named on the command line",
                    ),
                    Err(_) => self.out.warnings.push(format!(
                        "{}: a dangling symlink, not shipped",
                        entry.display()
                    )),
                }
                continue;
            }
            let Ok(meta) = std::fs::metadata(&entry) else {
                self.out.warnings.push(format!(
                    "{}: a dangling symlink, not shipped",
                    entry.display()
                ));
                continue;
            };
            if meta.is_dir() {
                self.add_dir(&entry, sub_dest.as_deref(), source, depth + 1)?;
            } else if meta.is_file() {
                self.add_file(&entry, sub_dest.as_deref(), source);
            }
        }
        Ok(())
    }

    /// The bundle at the path OpenSSL (OPENSSLDIR /usr/lib/ssl on Debian:
    /// cert.pem and certs/), GnuTLS and Go read by default.
    fn ca_certs(&mut self, bundle: Option<&Path>) -> Result<()> {
        const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
        let src = "--ca-certs";
        match bundle {
            None => {
                if !Path::new(BUNDLE).is_file() {
                    bail!(
                        "--ca-certs: {BUNDLE} is not there (install ca-certificates, or give --ca-certs=FILE)"
                    );
                }
                let why = "the host's CA bundle";
                self.push(Item::HostPath(BUNDLE.into()), src, why);
            }
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("--ca-certs={}: cannot read", f.display()))?;
                if !text.contains("-----BEGIN CERTIFICATE-----") {
                    bail!("--ca-certs={}: holds no PEM certificate", f.display());
                }
                let why = format!("CA bundle {}", f.display());
                self.push(
                    Item::FileAs {
                        src: f.to_path_buf(),
                        dest: BUNDLE.into(),
                    },
                    src,
                    why,
                );
            }
        }
        for (link, target, why) in [
            (
                "/usr/lib/ssl/cert.pem",
                BUNDLE,
                "OpenSSL's default CA file (OPENSSLDIR/cert.pem)",
            ),
            (
                "/usr/lib/ssl/certs",
                "/etc/ssl/certs",
                "OpenSSL's default CA directory (OPENSSLDIR/certs)",
            ),
        ] {
            let item = Item::Symlink {
                dest: link.into(),
                target: target.into(),
            };
            self.push(item, src, why);
        }
        Ok(())
    }

    fn tzdata(&mut self) -> Result<()> {
        let dir = Path::new("/usr/share/zoneinfo");
        if !dir.is_dir() {
            bail!("--tzdata: {} is not there (install tzdata)", dir.display());
        }
        let mut stack = vec![dir.to_path_buf()];
        self.push(
            Item::HostPath(dir.to_path_buf()),
            "--tzdata",
            "time zone database",
        );
        while let Some(d) = stack.pop() {
            for entry in sorted_dir(&d)? {
                let lmeta = std::fs::symlink_metadata(&entry)?;
                if lmeta.file_type().is_symlink() {
                    // Debian's links (posix/Europe -> ../Europe, Cuba ->
                    // America/Havana) stay links; localtime -> /etc/localtime
                    // is the host's own setting and stays out.
                    let target = std::fs::read_link(&entry)?;
                    let stays_inside = (!target.is_absolute() || target.starts_with(dir))
                        && std::fs::canonicalize(&entry).is_ok_and(|t| t.starts_with(dir));
                    if stays_inside {
                        self.push(Item::HostPath(entry), "--tzdata", "time zone database");
                    }
                } else if lmeta.is_dir() {
                    self.push(
                        Item::HostPath(entry.clone()),
                        "--tzdata",
                        "time zone database",
                    );
                    stack.push(entry);
                } else if lmeta.is_file() {
                    self.push(Item::HostPath(entry), "--tzdata", "time zone database");
                }
            }
        }
        Ok(())
    }

    /// A locale as glibc finds it: /usr/lib/locale/NAME (with the codeset
    /// normalised, C.UTF-8 -> C.utf8), else cut out of the locale archive
    /// into such a directory (see [`locale_archive`]).
    fn locale(&mut self, name: &str) -> Result<()> {
        let base = Path::new("/usr/lib/locale");
        let source = format!("--locale {name}");
        let why = format!("locale {name}");
        let candidates = [name.to_string(), normalize_locale(name)];
        for c in &candidates {
            let dir = base.join(c);
            if dir.join("LC_CTYPE").is_file() {
                self.push(Item::HostPath(dir.clone()), &source, why.clone());
                for f in sorted_dir(&dir)? {
                    let meta = std::fs::symlink_metadata(&f)?;
                    if meta.is_dir() {
                        self.push(Item::HostPath(f.clone()), &source, why.clone());
                        for g in sorted_dir(&f)? {
                            self.push(Item::HostPath(g), &source, why.clone());
                        }
                    } else {
                        self.push(Item::HostPath(f), &source, why.clone());
                    }
                }
                return Ok(());
            }
        }
        let archive = base.join("locale-archive");
        let mut in_archive = Vec::new();
        if archive.is_file() {
            // Mapped: an archive of every locale is hundreds of MB, and one
            // locale is a few of them. SAFETY: read-only, as glibc itself
            // maps it; a concurrent truncation could fault, the same risk
            // as in `elf::read`.
            let bytes = std::fs::File::open(&archive)
                .and_then(|f| unsafe { memmap2::Mmap::map(&f) })
                .with_context(|| format!("{}: cannot read", archive.display()))?;
            let found = locale_archive::find(&bytes, &candidates)
                .with_context(|| format!("{}", archive.display()))?;
            if let Some(l) = found {
                for (file, data) in l.files {
                    let item = Item::Data {
                        dest: base.join(&l.name).join(file),
                        bytes: data.to_vec(),
                    };
                    self.push(item, &source, format!("{why}, from {}", archive.display()));
                }
                return Ok(());
            }
            in_archive = locale_archive::names(&bytes)?;
        }
        let have: Vec<String> = std::fs::read_dir(base)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("LC_CTYPE").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .chain(in_archive)
            .collect();
        const SHOWN: usize = 20;
        let mut there = have
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if have.is_empty() {
            there = "none".into();
        } else if have.len() > SHOWN {
            there += &format!(" and {} more", have.len() - SHOWN);
        }
        bail!(
            "no such locale in {} or its locale-archive (there: {there}); generate it with locale-gen or localedef",
            base.display(),
        )
    }
}

/// glibc's `_nl_normalize_codeset` applied to the codeset part of `name`:
/// lower-case alphanumerics only, "iso" before an all-digit codeset.
pub fn normalize_locale(name: &str) -> String {
    let (head, modifier) = match name.split_once('@') {
        Some((h, m)) => (h, Some(m)),
        None => (name, None),
    };
    let mut out = match head.split_once('.') {
        Some((lang, cs)) => {
            let norm: String = cs
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .map(|c| c.to_ascii_lowercase())
                .collect();
            if norm.chars().all(|c| c.is_ascii_digit()) {
                format!("{lang}.iso{norm}")
            } else {
                format!("{lang}.{norm}")
            }
        }
        None => head.to_string(),
    };
    if let Some(m) = modifier {
        out.push('@');
        out.push_str(m);
    }
    out
}

/// `SRC[:DEST]`, DEST being what follows the last `:` when it is absolute
/// (and SRC itself is not an existing path).
fn split_spec(spec: &str) -> (PathBuf, Option<PathBuf>) {
    if Path::new(spec).exists() {
        return (spec.into(), None);
    }
    match spec.rsplit_once(':') {
        Some((s, d)) if d.starts_with('/') && !s.is_empty() => (s.into(), Some(d.into())),
        _ => (spec.into(), None),
    }
}

fn sorted_dir(dir: &Path) -> Result<Vec<PathBuf>> {
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

/// Puts every extra item into `plan`. Explicitly named files (`FileAs`)
/// replace what is already at their destination (e.g. a generated /etc file).
pub fn place(plan: &mut Plan, extras: &Extras) -> Result<()> {
    for a in &extras.added {
        match &a.item {
            Item::HostPath(p) => {
                if std::fs::metadata(p).is_ok_and(|m| m.is_dir()) {
                    plan.add_host_dir(p).map(|_| ())
                } else {
                    plan.add_host_path(p).map(|_| ())
                }
            }
            Item::FileAs { src, dest } => {
                if matches!(
                    plan.nodes.get(dest),
                    Some(Node::File { .. } | Node::Data { .. } | Node::Symlink { .. })
                ) {
                    plan.nodes.remove(dest);
                }
                plan.add_file_as(src, dest)
            }
            Item::DirAs { dest, mode } => match plan.nodes.get(dest) {
                Some(_) => Ok(()),
                None => plan.add_dir(dest, *mode),
            },
            Item::Symlink { dest, target } => place_symlink(plan, dest, target),
            Item::Data { dest, bytes } => plan.add_data(dest, bytes.clone(), 0o644),
        }
        .with_context(|| format!("{} ({})", a.source, a.why))?;
    }
    Ok(())
}

fn place_symlink(plan: &mut Plan, dest: &Path, target: &Path) -> Result<()> {
    let parent = dest.parent().unwrap_or(Path::new("/"));
    if !plan.nodes.contains_key(parent) && parent != Path::new("/") {
        plan.add_dir(parent, 0o755)?;
    }
    let rel = if target.is_absolute() {
        relative_to(parent, target)
    } else {
        target.to_path_buf()
    };
    plan.insert(dest, Node::Symlink { target: rel })
}

/// The `deps`-style explanation: what each option added and why, and what
/// the trace saw but left out.
pub fn report(extras: &Extras) -> String {
    let mut out = String::new();
    if let Some(t) = &extras.trace {
        let _ = writeln!(
            out,
            "traced `{}` ({:?}, {} process(es)/thread(s))",
            t.command, t.outcome, t.processes
        );
    }
    let mut sources: Vec<&str> = Vec::new();
    for a in &extras.added {
        if !sources.contains(&a.source.as_str()) {
            sources.push(&a.source);
        }
    }
    for s in sources {
        let items: Vec<&Added> = extras.added.iter().filter(|a| a.source == s).collect();
        let _ = writeln!(out, "added by {s}: {} path(s)", items.len());
        if items.len() > LIST_LIMIT && s != "--trace" {
            let _ = writeln!(out, "  {} ... ({})", shown(&items[0].item), items[0].why);
            continue;
        }
        for a in items {
            let _ = writeln!(out, "  {}  [{}]", shown(&a.item), a.why);
        }
    }
    if let Some(t) = &extras.trace
        && !t.skipped.is_empty()
    {
        let _ = writeln!(out, "seen by --trace but not shipped:");
        for (p, why) in &t.skipped {
            let _ = writeln!(out, "  {}  ({why})", p.display());
        }
    }
    out
}

fn shown(item: &Item) -> String {
    match item {
        Item::HostPath(p) => p.display().to_string(),
        Item::FileAs { src, dest } => format!("{} <- {}", dest.display(), src.display()),
        Item::DirAs { dest, .. } => format!("{}/", dest.display()),
        Item::Symlink { dest, target } => format!("{} -> {}", dest.display(), target.display()),
        Item::Data { dest, bytes } => format!("{} ({} bytes)", dest.display(), bytes.len()),
    }
}

/// One line for the packing summary.
pub fn summary(extras: &Extras) -> Option<String> {
    if extras.added.is_empty() {
        return None;
    }
    let traced = extras
        .added
        .iter()
        .filter(|a| a.source == "--trace")
        .count();
    Some(format!(
        "elfpack: {} extra path(s) added ({traced} from --trace); `elfpack deps` with the same options lists them and why",
        extras.added.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_codesets_normalise_like_glibc() {
        assert_eq!(normalize_locale("C.UTF-8"), "C.utf8");
        assert_eq!(
            normalize_locale("de_DE.ISO-8859-1@euro"),
            "de_DE.iso88591@euro"
        );
        assert_eq!(normalize_locale("POSIX"), "POSIX");
    }

    #[test]
    fn specs_split_at_an_absolute_dest() {
        assert_eq!(
            split_spec("conf/app.toml:/etc/app.toml"),
            (
                PathBuf::from("conf/app.toml"),
                Some(PathBuf::from("/etc/app.toml"))
            )
        );
        assert_eq!(split_spec("a:b"), (PathBuf::from("a:b"), None));
        assert_eq!(
            split_spec("/no/such/dir"),
            (PathBuf::from("/no/such/dir"), None)
        );
    }
}
