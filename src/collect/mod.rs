//! Stage 3, collect: from the programs a user names to everything that must
//! ship with them.
//!
//! Takes program paths and [`Options`]; gives a [`Collection`]: the ELF
//! closures ([`crate::loader`]) of programs and `#!` interpreters
//! ([`script`]), what libc itself loads later ([`runtime`]: NSS, libgcc_s,
//! gconv), and the files no ELF header names ([`extras`]: `--trace`,
//! `--add`, CA bundle, time zones, locales). It says what ships, not where:
//! that is [`crate::plan`]'s job.

pub mod dpkg;
pub mod extras;
pub mod locale_archive;
pub mod options;
pub mod package_data;
pub mod runtime;
pub mod script;
pub mod trace;

pub use options::{ExtraArgs, ExtraOptions, Options, Program};

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::loader::resolve::{Closure, Resolver};

#[derive(Debug, Default)]
pub struct Collection {
    pub programs: Vec<Program>,
    /// Closures of every ELF file to run: programs, interpreters, env targets.
    pub closures: Vec<Closure>,
    /// Non-ELF files needed at run time (gconv configuration, scripts).
    pub data_files: Vec<PathBuf>,
    pub warnings: Vec<String>,
    /// Files from --trace, --add, --ca-certs, --tzdata, --locale.
    pub extras: crate::collect::extras::Extras,
    /// The system the closures' paths are inside (`/`, or `--sysroot`);
    /// see [`crate::loader::root`].
    pub root: PathBuf,
}

/// Scripts may name a script as interpreter; the kernel allows a few levels.
const MAX_INTERPRETER_DEPTH: usize = 4;

pub fn collect(
    resolver: &mut Resolver,
    programs: &[PathBuf],
    opts: &Options,
) -> Result<Collection> {
    let mut out = Collection {
        root: resolver.root().to_path_buf(),
        ..Default::default()
    };
    for p in programs {
        let path = if out.root == Path::new("/") {
            absolute_program(p)?
        } else {
            // A program of another system is named by its path there.
            if !p.is_absolute() {
                bail!(
                    "{}: with --sysroot, name the program by its absolute path inside {}",
                    p.display(),
                    out.root.display()
                );
            }
            absolute_program(&resolver.host_path(p)).map_err(|e| {
                anyhow::anyhow!(
                    "{}: in --sysroot {}: {e:#}",
                    p.display(),
                    out.root.display()
                )
            })?;
            p.clone()
        };
        let shebang = add_executable(resolver, &path, opts, &mut out, 0)?;
        out.programs.push(Program { path, shebang });
    }
    out.extras = extras::collect(resolver, &out.programs, &out.closures, opts)?;
    out.warnings.append(&mut out.extras.warnings);
    for c in &mut out.closures {
        out.warnings.append(&mut c.warnings);
    }
    out.warnings.dedup();
    Ok(out)
}

fn add_executable(
    resolver: &mut Resolver,
    path: &Path,
    opts: &Options,
    out: &mut Collection,
    depth: usize,
) -> Result<Option<script::Shebang>> {
    if depth > MAX_INTERPRETER_DEPTH {
        bail!("{}: too many levels of #! interpreters", path.display());
    }
    if let Some(sb) = script::read_shebang(&resolver.host_path(path), &opts.search_path)? {
        out.data_files.push(path.to_path_buf());
        add_executable(resolver, &sb.interpreter, opts, out, depth + 1)
            .with_context(|| format!("{}: its #! interpreter", path.display()))?;
        if let Some(t) = &sb.env_target {
            add_executable(resolver, t, opts, out, depth + 1).with_context(|| {
                format!(
                    "{}: the program its #! line runs through env",
                    path.display()
                )
            })?;
        }
        return Ok(Some(sb));
    }
    // What the kernel needs first (it reads the program headers before
    // anything the loader looks at), so broken headers get their own reason.
    if crate::elf::has_elf_magic(path) {
        crate::elf::check_runnable(path)?;
    }
    let mut closure = resolver.resolve(path).map_err(|e| name_file(e, path))?;
    let data = runtime::add_runtime_loads(resolver, &mut closure, &opts.nsswitch, &opts.gconv)
        .with_context(|| format!("{}: run-time libraries", path.display()))?;
    out.data_files.extend(data);
    out.closures.push(closure);
    Ok(None)
}

impl Collection {
    /// Refuses shared libraries among the programs to run: a library without
    /// PT_INTERP (unlike libc.so.6, which has one) cannot be started, so a
    /// packed one could never run. `deps` accepts them, as ldd does.
    pub fn refuse_libraries(&self) -> Result<()> {
        for c in &self.closures {
            if let Some(o) = c.objects.first()
                && o.info.kind == crate::elf::Kind::SharedLibrary
            {
                let script = self.programs.iter().find(|p| {
                    p.shebang.as_ref().is_some_and(|s| {
                        s.interpreter == o.path || s.env_target.as_ref() == Some(&o.path)
                    })
                });
                let via = script
                    .map(|p| format!("{}: its #! interpreter ", p.path.display()))
                    .unwrap_or_default();
                bail!(
                    "{via}{}: a shared library, not a program (it has no PT_INTERP, so nothing can run it)",
                    o.path.display()
                );
            }
        }
        Ok(())
    }
}

/// Checks a command-line program and makes its path absolute (lexically, so
/// the program keeps the name it was given).
fn absolute_program(p: &Path) -> Result<PathBuf> {
    let meta = std::fs::metadata(p).map_err(|e| match e.raw_os_error() {
        Some(40) => anyhow::anyhow!(
            "{}: too many levels of symbolic links (a symlink loop?)",
            p.display()
        ),
        _ => anyhow::anyhow!("{}: {}", p.display(), e),
    })?;
    if meta.is_dir() {
        bail!("{}: is a directory, not a program", p.display());
    }
    if !meta.is_file() {
        bail!("{}: is not a regular file", p.display());
    }
    std::fs::File::open(p).with_context(|| format!("{}: cannot open", p.display()))?;
    std::path::absolute(p)
        .with_context(|| format!("{}: cannot make the path absolute", p.display()))
}

/// Prefixes an error with `path` unless its message already starts with it.
fn name_file(e: anyhow::Error, path: &Path) -> anyhow::Error {
    let shown = path.display().to_string();
    if format!("{e:#}").starts_with(&shown) {
        e
    } else {
        e.context(shown)
    }
}
