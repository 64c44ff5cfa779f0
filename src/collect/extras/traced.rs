//! `--trace`: what the programs opened, ran or stat'ed in real runs ships,
//! and the directories they wrote in. Several runs go into one pack: each
//! packed program once (`--trace`), or the command lines the user gives
//! (`--trace-run`), e.g. a server's config test and its init step.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::{Builder, Item, file_id};
use crate::collect::options::Program;
use crate::collect::trace;

/// The runs to trace: (program, arguments). Default: each packed program
/// with the `--trace-arg`/`--` arguments; with `--trace-run`, those command
/// lines, whose first word is a packed program's file name, a path, or a
/// name on PATH.
pub(super) fn runs(
    programs: &[Program],
    opts: &trace::Options,
) -> Result<Vec<(PathBuf, Vec<OsString>)>> {
    if opts.runs.is_empty() {
        if programs.is_empty() {
            bail!("--trace: no program to run");
        }
        return Ok(programs
            .iter()
            .map(|p| (p.path.clone(), opts.args.clone()))
            .collect());
    }
    opts.runs
        .iter()
        .map(|words| {
            let line = words
                .iter()
                .map(|w| w.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ");
            let program = run_program(programs, Path::new(&words[0]))
                .map_err(|e| anyhow::anyhow!("--trace-run '{line}': {e}"))?;
            Ok((program, words[1..].to_vec()))
        })
        .collect()
}

/// The program a `--trace-run` line names.
fn run_program(programs: &[Program], word: &Path) -> Result<PathBuf> {
    if word.components().count() > 1 {
        let p = std::path::absolute(word)?;
        if !p.is_file() {
            bail!("{}: no such program", p.display());
        }
        return Ok(p);
    }
    if let Some(p) = programs
        .iter()
        .find(|p| p.path.file_name() == Some(word.as_os_str()))
    {
        return Ok(p.path.clone());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path).filter(|d| d.is_absolute()) {
        let p = dir.join(word);
        if std::fs::metadata(&p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0) {
            return Ok(p);
        }
    }
    bail!(
        "{} is neither the file name of a packed program nor on PATH",
        word.display()
    )
}

impl Builder<'_> {
    /// One traced run; `packed`: the programs the layout places itself.
    pub(super) fn trace(
        &mut self,
        program: &Path,
        args: &[OsString],
        opts: &trace::Options,
        packed: &[PathBuf],
    ) -> Result<()> {
        let t = trace::trace(program, args, opts)?;
        self.out.warnings.extend(t.warnings.iter().cloned());
        for f in &t.found {
            let a = &f.access;
            if packed.contains(&a.path) {
                // A packed program: placed by the layout (maybe elsewhere, --install-to).
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
                // What the same program had loaded before counts as loaded
                // (the JVM's libjvm.so for libjava.so).
                let loaded: Vec<PathBuf> = t
                    .found
                    .iter()
                    .filter(|e| {
                        e.is_elf
                            && e.seq < f.seq
                            && e.access.what == trace::What::Read
                            && e.access.program == a.program
                    })
                    .map(|e| e.access.path.clone())
                    .collect();
                self.elf_closure_in(&a.path, a.what == trace::What::Exec, "--trace", &loaded);
            } else if a.what == trace::What::Exec && !f.is_elf {
                self.script_interpreter(&a.path, "--trace")?;
            }
        }
        for (dir, a) in &t.write_dirs {
            let why = format!(
                "a directory {} writes in: {} ({} by pid {}); ships empty",
                a.program.display(),
                a.path.display(),
                a.syscall,
                a.pid
            );
            self.push(Item::HostPath(dir.clone()), "--trace", why);
        }
        self.out.traces.push(t);
        Ok(())
    }
}
