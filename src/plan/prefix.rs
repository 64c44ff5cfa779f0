//! Prefix bundles: the program and its closure under one directory (say
//! `/opt/NAME`), independent of the libraries of the system it lands on, so
//! a glibc program can live inside an Alpine/musl image or an old distro.
//!
//! Layout: programs in `PREFIX/bin`, the loader and every library flat in
//! `PREFIX/lib` under the name the loader asks for. Each program's PT_INTERP
//! is the bundled loader's absolute path and its DT_RPATH is `PREFIX/lib`:
//! DT_RPATH, not DT_RUNPATH, because DT_RPATH applies to the whole
//! dependency chain and to libc's own dlopens (libgcc_s, NSS modules), while
//! DT_RUNPATH only serves the object that carries it. Libraries lose their own
//! RPATH/RUNPATH, so every search starts in `PREFIX/lib` and nothing resolves
//! outside it. No `$ORIGIN` is used: paths are absolute (PT_INTERP has to be
//! anyway), so nothing depends on /proc being mounted.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::collect::Collection;
use crate::elf::edit::{self, Edits};
use crate::loader::resolve::{Object, Via};
use crate::plan::Plan;

/// Files under `PREFIX/etc` a single file's launcher installs into `/etc`
/// when they are missing there (a `FROM scratch` image has none).
pub fn add_scratch_etc(plan: &mut Plan, prefix: &Path) -> Result<()> {
    for (path, content, mode) in crate::plan::scratch_etc::files() {
        let rel = Path::new(path).strip_prefix("/").unwrap_or(Path::new(path));
        plan.add_data(&prefix.join(rel), content.as_bytes().to_vec(), mode)?;
    }
    Ok(())
}

/// `bytes` (of `src`, read as `info`) without RPATH/RUNPATH, so that every
/// search starts in the bundle's lib dir.
pub fn without_rpath(bytes: Vec<u8>, info: &crate::elf::ElfInfo, src: &Path) -> Result<Vec<u8>> {
    if info.rpath.is_none() && info.runpath.is_none() {
        return Ok(bytes);
    }
    let edits = Edits {
        remove_rpath: true,
        ..Default::default()
    };
    edit::edit_bytes(&bytes, &edits)
        .with_context(|| format!("{}: cannot remove its RPATH/RUNPATH", src.display()))
}

/// `bytes` (a program from `src`) pointed at the bundle: PT_INTERP at the
/// loader called `loader` in `lib`, DT_RPATH at `lib`.
pub fn to_bundled_loader(bytes: &[u8], loader: &Path, lib: &Path, src: &Path) -> Result<Vec<u8>> {
    let edits = Edits {
        interpreter: Some(lib.join(loader).display().to_string()),
        rpath: Some(lib.display().to_string()),
        force_rpath: true,
        ..Default::default()
    };
    edit::edit_bytes(bytes, &edits)
        .with_context(|| format!("{}: cannot set its interpreter and RPATH", src.display()))
}

pub fn prefix_plan(col: &Collection, prefix: &Path) -> Result<Plan> {
    if !prefix.is_absolute() {
        bail!("--prefix {}: must be an absolute path", prefix.display());
    }
    let lib = prefix.join("lib");
    let bin = prefix.join("bin");
    let mut plan = Plan {
        root: col.root.clone(),
        ..Plan::default()
    };
    plan.add_dir(&lib, 0o755)?;
    plan.add_dir(&bin, 0o755)?;
    for c in &col.closures {
        let interp = c.interpreter();
        // gconv modules live under PREFIX/root (crate::plan::bundle).
        for o in c.objects[1..]
            .iter()
            .filter(|o| !o.path.starts_with(crate::collect::runtime::GCONV_DIR))
        {
            let dest = lib.join(o.lib_name()?);
            let data = std::fs::read(plan.host(&o.path))
                .with_context(|| format!("{}: cannot read", o.path.display()))?;
            let bytes = without_rpath(data, &o.info, &o.path)?;
            add_unique(&mut plan, &dest, bytes, 0o755, &o.path)?;
        }
        let prog = c.program();
        let name = file_name(&prog.path)?;
        let data = std::fs::read(plan.host(&prog.path))
            .with_context(|| format!("{}: cannot read", prog.path.display()))?;
        let bytes = match interp {
            Some(i) => to_bundled_loader(&data, Path::new(&file_name(&i.path)?), &lib, &prog.path)?,
            None => data,
        };
        add_unique(&mut plan, &bin.join(name), bytes, 0o755, &prog.path)?;
    }
    if let [only] = col.programs.as_slice() {
        plan.entrypoint = vec![bin.join(file_name(&only.path)?).display().to_string()];
    }
    Ok(plan)
}

/// Library names in the order the loader maps them for the first program
/// (run-time loads last), without the loader itself.
pub fn load_order(col: &Collection) -> Result<Vec<String>> {
    let Some(c) = col.closures.first() else {
        return Ok(Vec::new());
    };
    c.objects[1..]
        .iter()
        .filter(|o| o.via != Via::Interpreter)
        .map(Object::lib_name)
        .collect()
}

/// The last component of `p`, as a string.
pub(crate) fn file_name(p: &Path) -> Result<String> {
    Ok(p.file_name()
        .with_context(|| format!("{}: no file name", p.display()))?
        .to_string_lossy()
        .into_owned())
}

/// Two different files wanting one name in the flat lib dir cannot both be
/// found by the loader: refuse rather than ship the wrong one.
pub(crate) fn add_unique(
    plan: &mut Plan,
    dest: &PathBuf,
    bytes: Vec<u8>,
    mode: u32,
    src: &Path,
) -> Result<()> {
    if let Some(crate::plan::Node::Data { bytes: old, .. }) = plan.nodes.get(dest) {
        if *old == bytes {
            return Ok(());
        }
        bail!(
            "{}: two different files would be {} in the bundle",
            src.display(),
            dest.display()
        );
    }
    plan.add_data(dest, bytes, mode)
}
