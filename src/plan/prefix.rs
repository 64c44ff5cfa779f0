//! Prefix bundles: the image tree of [`crate::plan::layout`] moved under one
//! directory (say `/opt/NAME`), independent of the libraries of the system
//! it lands on, so a glibc program can live inside an Alpine/musl image or
//! an old distro. A single file is such a bundle under a placeholder prefix.
//!
//! Layout: every file at its host path under the prefix (`/usr/bin/curl` at
//! `PREFIX/usr/bin/curl`, with the symlinks that lead to it), exactly as in
//! the rootfs tree, so whatever a program finds relative to its own location
//! is there: java's home from /proc/self/exe, initdb's `postgres` beside
//! itself, `$ORIGIN/../share`. Each program's PT_INTERP is the bundled
//! loader's absolute path and its DT_RPATH lists the bundle's library
//! directories: DT_RPATH, not DT_RUNPATH, because DT_RPATH applies to the
//! whole dependency chain and to libc's own dlopens (libgcc_s, NSS modules),
//! while DT_RUNPATH only serves the object that carries it. Libraries lose
//! their own RPATH/RUNPATH, so every search starts in the bundle and nothing
//! resolves outside it (gconv modules keep theirs: glibc opens them by path
//! and they find their helpers through `$ORIGIN`). No `$ORIGIN` is used in
//! the programs: paths are absolute (PT_INTERP has to be anyway), so nothing
//! depends on /proc being mounted.
//!
//! What stays at the image root: for `--prefix`, the generated /etc files
//! (accounts, nsswitch.conf, hosts) and /tmp, which glibc and programs look
//! for at those absolute paths (a bundle written with `--rootfs` is a whole
//! image); a single file's launcher installs its bundle's /etc itself. No
//! bundle ships an /etc/ld.so.cache: its paths could not be relocated.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::collect::Collection;
use crate::collect::extras::{Item, Role};
use crate::collect::runtime::GCONV_DIR;
use crate::elf::edit::{self, Edits};
use crate::loader::ldcache::LdCache;
use crate::loader::resolve::Via;
use crate::plan::layout::{self, RootfsOptions};
use crate::plan::{Node, Plan, relative_to};

/// A bundle's plan and what the loader will search in it.
#[derive(Debug)]
pub struct Bundle {
    pub plan: Plan,
    /// The library directories (image paths, without the prefix) in the
    /// programs' DT_RPATH, in search order.
    pub lib_dirs: Vec<PathBuf>,
    /// The first program's libraries in the loader's mapping order, as
    /// paths relative to the prefix (for a single file's in-memory mode).
    pub load_order: Vec<String>,
    pub warnings: Vec<String>,
}

/// `bytes` (of `src`, read as `info`) without RPATH/RUNPATH, so that every
/// search starts in the bundle's lib dirs.
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

/// `bytes` (a program from `src`) pointed at the bundle: PT_INTERP at
/// `loader`, DT_RPATH `rpath`.
pub fn to_bundled_loader(bytes: &[u8], loader: &Path, rpath: &str, src: &Path) -> Result<Vec<u8>> {
    let edits = Edits {
        interpreter: Some(loader.display().to_string()),
        rpath: Some(rpath.to_string()),
        force_rpath: true,
        ..Default::default()
    };
    edit::edit_bytes(bytes, &edits)
        .with_context(|| format!("{}: cannot set its interpreter and RPATH", src.display()))
}

/// The plan of a bundle under `prefix`: a `--prefix` bundle, or a single
/// file's when `single` (then `prefix` is the placeholder the launcher
/// replaces, and nothing stays at the image root).
pub fn bundle_plan(
    col: &Collection,
    cache: &LdCache,
    opts: &RootfsOptions,
    prefix: &Path,
    single: bool,
) -> Result<Bundle> {
    if !prefix.is_absolute() || prefix == Path::new("/") {
        bail!(
            "--prefix {}: must be an absolute path below /",
            prefix.display()
        );
    }
    let mut tree = layout::rootfs_plan(col, cache, opts)?;
    if matches!(
        tree.nodes.get(Path::new("/etc/ld.so.cache")),
        Some(Node::Data { .. })
    ) {
        tree.nodes.remove(Path::new("/etc/ld.so.cache"));
    }
    let mut warnings = Vec::new();
    let lib_dirs = lib_dirs(col, &mut tree, &mut warnings)?;
    let at_root: HashSet<PathBuf> = if single || !opts.scratch_etc {
        HashSet::new()
    } else {
        crate::plan::scratch_etc::files()
            .into_iter()
            .map(|(p, _, _)| PathBuf::from(p))
            .chain([PathBuf::from("/tmp"), PathBuf::from("/run")])
            .collect()
    };
    let inside = |p: &Path| prefix.join(p.strip_prefix("/").unwrap_or(p));
    let rpath = lib_dirs
        .iter()
        .map(|d| inside(d).display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    // Programs by file identity: the tree's nodes name the host files they copy.
    let programs: HashSet<(u64, u64)> = col
        .closures
        .iter()
        .filter_map(|c| crate::collect::extras::file_id(&tree.host(&c.program().path)))
        .collect();
    let mut plan = Plan {
        root: tree.root.clone(),
        ..Plan::default()
    };
    for (path, node) in &tree.nodes {
        if at_root.contains(path) {
            plan.add_parents_of(path)?;
            plan.insert(path, node.clone())?;
            continue;
        }
        if single && path == Path::new("/tmp") {
            continue;
        }
        let dest = inside(path);
        let node = match node {
            Node::File { src, mode, .. }
                if !path.starts_with(GCONV_DIR) && crate::elf::has_elf_magic(src) =>
            {
                let bytes = std::fs::read(src)
                    .with_context(|| format!("{}: cannot read", src.display()))?;
                let bytes = match crate::elf::parse(&bytes) {
                    Ok(info) => match &info.interpreter {
                        Some(interp)
                            if info.soname.is_none()
                                || crate::collect::extras::file_id(src)
                                    .is_some_and(|id| programs.contains(&id)) =>
                        {
                            let (loader, _) =
                                tree.lookup(Path::new(interp)).with_context(|| {
                                    format!(
                                        "{}: its interpreter {interp} is not in the bundle",
                                        src.display()
                                    )
                                })?;
                            let rpath = if rpath.is_empty() {
                                inside(loader.parent().unwrap_or(Path::new("/")))
                                    .display()
                                    .to_string()
                            } else {
                                rpath.clone()
                            };
                            to_bundled_loader(&bytes, &inside(loader), &rpath, src)?
                        }
                        _ => without_rpath(bytes, &info, src)?,
                    },
                    Err(_) => bytes,
                };
                plan.origins.insert(dest.clone(), src.clone());
                Node::Data { bytes, mode: *mode }
            }
            other => other.clone(),
        };
        plan.add_parents_of(&dest)?;
        plan.insert(&dest, node)?;
    }
    plan.entrypoint = tree
        .entrypoint
        .iter()
        .map(|e| inside(Path::new(e)).display().to_string())
        .collect();
    let load_order = load_order(col, &tree);
    Ok(Bundle {
        plan,
        lib_dirs,
        load_order,
        warnings,
    })
}

/// The directory the loader searches to find `path`: its own, or for a copy
/// in a glibc-hwcaps (or legacy tls/x86_64) subdirectory, the directory
/// above, which the loader probes those subdirectories of.
fn search_dir(path: &Path) -> PathBuf {
    let mut dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = |d: &Path| d.file_name().map(|n| n.to_string_lossy().into_owned());
    if name(&dir).is_some_and(|n| n.starts_with("x86-64-v"))
        && dir
            .parent()
            .and_then(name)
            .is_some_and(|n| n == "glibc-hwcaps")
    {
        dir.pop();
        dir.pop();
    }
    while name(&dir).is_some_and(|n| n == "tls" || n == "x86_64") {
        dir.pop();
    }
    dir
}

/// What the loader finds for `name` in directory `dir` of `tree`: the
/// glibc-hwcaps subdirectories first, as it probes them.
fn find_in<'a>(tree: &'a Plan, dir: &Path, name: &str) -> Option<&'a PathBuf> {
    [
        "glibc-hwcaps/x86-64-v4",
        "glibc-hwcaps/x86-64-v3",
        "glibc-hwcaps/x86-64-v2",
        "",
    ]
    .iter()
    .find_map(|sub| {
        let p = dir.join(sub).join(name);
        tree.lookup(&p)
            .filter(|(_, n)| matches!(n, Node::File { .. } | Node::Data { .. }))
            .map(|(k, _)| k)
    })
}

/// The directories (real paths in `tree`) holding the libraries the loader
/// searches for by name, in the order they are first needed. Where a
/// library's file is not called by the name it is needed under (an
/// ld.so.cache alias), a symlink of that name is added beside it; where an
/// earlier directory would shadow a library with another file of its name,
/// a warning says so.
fn lib_dirs(col: &Collection, tree: &mut Plan, warnings: &mut Vec<String>) -> Result<Vec<PathBuf>> {
    let mut libs: Vec<(String, PathBuf)> = Vec::new();
    for o in col.closures.iter().flat_map(|c| &c.objects) {
        if matches!(o.via, Via::Program | Via::Interpreter | Via::Path)
            || o.path.starts_with(GCONV_DIR)
        {
            continue;
        }
        libs.push((o.lib_name()?, o.path.clone()));
    }
    for a in &col.extras.added {
        if let (Role::Library(name), Item::HostPath(p)) = (&a.role, &a.item)
            && !p.starts_with(GCONV_DIR)
        {
            libs.push((name.clone(), p.clone()));
        }
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut seen: HashSet<(String, PathBuf)> = HashSet::new();
    let mut real_of: HashMap<PathBuf, PathBuf> = HashMap::new();
    for (name, path) in &libs {
        // Left out (--exclude): nothing to find.
        let Some((real, _)) = tree.lookup(path) else {
            continue;
        };
        let real = real.clone();
        let Some((dir, _)) = tree.lookup(&search_dir(path)) else {
            continue;
        };
        let dir = dir.clone();
        if !dirs.contains(&dir) {
            dirs.push(dir.clone());
        }
        if seen.insert((name.clone(), real.clone())) {
            real_of.insert(real.clone(), dir);
        }
    }
    for (name, real) in seen.iter().cloned().collect::<Vec<_>>() {
        let found = dirs.iter().find_map(|d| find_in(tree, d, &name)).cloned();
        match found {
            Some(f) if f == real => {}
            Some(f) => warnings.push(format!(
                "{name}: the bundle's library path finds {} before {}",
                f.display(),
                real.display()
            )),
            None => {
                let dir = &real_of[&real];
                let link = dir.join(&name);
                tree.insert(
                    &link,
                    Node::Symlink {
                        target: relative_to(dir, &real),
                    },
                )?;
            }
        }
    }
    Ok(dirs)
}

/// The first program's libraries in the order the loader maps them
/// (run-time loads last), without the loader, as paths relative to the
/// bundle's root.
fn load_order(col: &Collection, tree: &Plan) -> Vec<String> {
    let Some(c) = col.closures.first() else {
        return Vec::new();
    };
    c.objects[1..]
        .iter()
        .filter(|o| o.via != Via::Interpreter)
        .filter_map(|o| tree.lookup(&o.path))
        .map(|(k, _)| k.strip_prefix("/").unwrap_or(k).display().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hwcaps_copies_are_searched_from_their_base_dir() {
        assert_eq!(
            search_dir(Path::new(
                "/usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libz.so.1"
            )),
            Path::new("/usr/lib/x86_64-linux-gnu")
        );
        assert_eq!(
            search_dir(Path::new("/lib/x86_64-linux-gnu/tls/x86_64/libz.so.1")),
            Path::new("/lib/x86_64-linux-gnu")
        );
        assert_eq!(
            search_dir(Path::new("/usr/lib/x86_64-linux-gnu/libz.so.1")),
            Path::new("/usr/lib/x86_64-linux-gnu")
        );
    }
}
