//! From the programs a user names to everything that must ship with them:
//! ELF closures (start-up and run-time loads), script interpreters, and the
//! data files libc reads. This is the step between resolving and planning.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::resolve::{Closure, Resolver};
use crate::runtime::{self, Gconv};
use crate::script;

#[derive(Debug, Clone)]
pub struct Options {
    /// The nsswitch.conf that will ship (decides which NSS modules load).
    pub nsswitch: String,
    pub gconv: Gconv,
    /// PATH used to resolve `#!/usr/bin/env NAME`.
    pub search_path: String,
    /// --trace, --add, --ca-certs, --tzdata, --locale (see crate::extras).
    pub extras: crate::extras::Options,
}

/// One program named on the command line.
#[derive(Debug, Clone)]
pub struct Program {
    /// Absolute path as given (symlinks kept, so /usr/bin/python3 stays python3).
    pub path: PathBuf,
    /// Its `#!` line, for scripts.
    pub shebang: Option<script::Shebang>,
}

#[derive(Debug, Default)]
pub struct Collection {
    pub programs: Vec<Program>,
    /// Closures of every ELF file to run: programs, interpreters, env targets.
    pub closures: Vec<Closure>,
    /// Non-ELF files needed at run time (gconv configuration, scripts).
    pub data_files: Vec<PathBuf>,
    pub warnings: Vec<String>,
    /// Files from --trace, --add, --ca-certs, --tzdata, --locale.
    pub extras: crate::extras::Extras,
}

/// Scripts may name a script as interpreter; the kernel allows a few levels.
const MAX_INTERPRETER_DEPTH: usize = 4;

pub fn collect(
    resolver: &mut Resolver,
    programs: &[PathBuf],
    opts: &Options,
) -> Result<Collection> {
    let mut out = Collection::default();
    for p in programs {
        let path = absolute_program(p)?;
        let shebang = add_executable(resolver, &path, opts, &mut out, 0)?;
        out.programs.push(Program { path, shebang });
    }
    out.extras = crate::extras::collect(resolver, &out, opts)?;
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
    if let Some(sb) = script::read_shebang(path, &opts.search_path)? {
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
    let mut closure = resolver.resolve(path).map_err(|e| name_file(e, path))?;
    let data = runtime::add_runtime_loads(resolver, &mut closure, &opts.nsswitch, &opts.gconv)
        .with_context(|| format!("{}: run-time libraries", path.display()))?;
    out.data_files.extend(data);
    out.closures.push(closure);
    Ok(None)
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
