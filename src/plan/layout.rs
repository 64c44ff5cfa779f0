//! Where collected files go in a root filesystem image.
//!
//! Every file keeps its host path, with the symlinks that lead to it, so each
//! library's `$ORIGIN` and the loader's search see exactly what they saw on
//! the host. An `/etc/ld.so.cache` holding just the shipped libraries makes
//! libraries found through `ld.so.conf` (e.g. /usr/local/lib) findable in the
//! image too.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::collect::Collection;
use crate::loader::ldcache::LdCache;
use crate::plan::scratch_etc;
use crate::plan::{Node, Plan};

#[derive(Debug, Clone, Default)]
pub struct RootfsOptions {
    /// Where the (single) program goes instead of its own path; a path ending
    /// in `/` is a directory for every program.
    pub install_to: Option<String>,
    /// Write the generated scratch /etc, /tmp and /run.
    pub scratch_etc: bool,
    /// Ship the host's /etc/passwd and /etc/group instead of generated ones.
    pub host_users: bool,
    /// nsswitch.conf content to ship (when `scratch_etc`).
    pub nsswitch: String,
    /// Libraries to leave out (matched against the DT_NEEDED name, SONAME
    /// and file name), e.g. a GPU driver the target provides.
    pub exclude: Vec<glob::Pattern>,
    /// Ship the C runtime as a shared base layer (image outputs): every
    /// library of [`C_RUNTIME_LIBS`], needed or not, so the layer is the
    /// same for every program (see [`crate::plan::Plan::shared`]).
    pub shared_runtime: bool,
}

impl RootfsOptions {
    fn excludes(&self, o: &crate::loader::resolve::Object) -> bool {
        let file = o
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let names = [
            Some(o.name.as_str()),
            o.info.soname.as_deref(),
            Some(file.as_str()),
        ];
        self.exclude
            .iter()
            .any(|p| names.iter().flatten().any(|n| p.matches(n)))
    }
}

pub fn rootfs_plan(col: &Collection, cache: &LdCache, opts: &RootfsOptions) -> Result<Plan> {
    let mut plan = Plan {
        root: col.root.clone(),
        ..Plan::default()
    };
    for c in &col.closures {
        for o in c.objects[1..].iter().filter(|o| !opts.excludes(o)) {
            plan.add_host_path(&o.path)?;
            if let Some(b) = &o.baseline {
                plan.add_host_path(b)?;
            }
        }
    }
    for f in &col.data_files {
        plan.add_host_path(f)?;
    }
    let targets = install_targets(col, opts.install_to.as_deref())?;
    for (prog, dest) in col.programs.iter().zip(&targets) {
        match dest {
            None => {
                plan.add_host_path(&prog.path)?;
            }
            Some(dest) => plan.add_file_as(&plan.host(&prog.path), dest)?,
        }
    }
    // Interpreters and env targets of scripts are closures without a
    // program entry of their own.
    for c in &col.closures {
        let p = &c.program().path;
        if !col.programs.iter().any(|pr| &pr.path == p) {
            plan.add_host_path(p)?;
        }
    }
    // With several programs the user must say which one the image runs.
    if let [only] = targets.as_slice() {
        let path = only.clone().unwrap_or_else(|| col.programs[0].path.clone());
        plan.entrypoint = vec![path.display().to_string()];
    }

    if opts.scratch_etc {
        for (path, content, mode) in scratch_etc::files() {
            let content = match path {
                "/etc/nsswitch.conf" => opts.nsswitch.as_str(),
                _ => content,
            };
            plan.add_data(Path::new(path), content.as_bytes().to_vec(), mode)?;
        }
        if opts.host_users {
            for f in ["/etc/passwd", "/etc/group"] {
                plan.nodes.remove(Path::new(f));
                plan.add_file_as(Path::new(f), Path::new(f))?;
            }
        }
        plan.add_dir(Path::new("/tmp"), 0o1777)?;
        // Daemons put their pid files and sockets in /run (nginx's
        // --pid-path), which base-files makes on a Debian system.
        plan.add_dir(Path::new("/run"), 0o755)?;
    }
    crate::plan::extras::place(&mut plan, &col.extras)?;
    if opts.shared_runtime {
        mark_c_runtime(&mut plan, col, opts)?;
    }
    if !col.closures.iter().all(|c| c.objects.len() == 1) {
        let extra = search_path_fallbacks(col, cache);
        // The host's cache lists about a thousand libraries; the plan holds a
        // few: a name match first spares most of the symlink-following lookups.
        let names: std::collections::HashSet<&std::ffi::OsStr> =
            plan.nodes.keys().filter_map(|k| k.file_name()).collect();
        let bytes = cache.write_subset(
            |p| p.file_name().is_some_and(|n| names.contains(n)) && plan.lookup(p).is_some(),
            &extra,
        );
        plan.nodes.remove(Path::new("/etc/ld.so.cache"));
        plan.add_data(Path::new("/etc/ld.so.cache"), bytes, 0o644)?;
    }
    Ok(plan)
}

/// The libraries of glibc that programs link against (the rest of what
/// Debian's libc6 ships, e.g. libmvec, libnsl, NSS modules and debugging
/// preloads, goes with the programs that use it), and libgcc_s, which libc
/// itself loads for cancellation and unwinding.
pub const C_RUNTIME_LIBS: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libresolv.so.2",
    "libutil.so.1",
    "libanl.so.1",
    "libgcc_s.so.1",
];

/// Marks the C runtime as the plan's shared layer: the loader, every one of
/// [`C_RUNTIME_LIBS`] beside the libc the programs load (whether or not this
/// program needs it: the layer must be the same for every program from this
/// system), the generated /etc and /tmp. Files another program would not
/// get the same (an `--exclude`d library, a libc from an RPATH) only change
/// which bytes the layer holds, never what the image contains.
fn mark_c_runtime(plan: &mut Plan, col: &Collection, opts: &RootfsOptions) -> Result<()> {
    let mut base = Plan {
        root: plan.root.clone(),
        ..Plan::default()
    };
    for c in &col.closures {
        let Some(libc) = c.objects.iter().find(|o| o.name == "libc.so.6") else {
            continue;
        };
        if opts.excludes(libc) {
            continue;
        }
        if let Some(ld) = c.interpreter() {
            base.add_host_path(&ld.path)?;
        }
        let dir = libc.path.parent().unwrap_or(Path::new("/"));
        for name in C_RUNTIME_LIBS {
            let excluded = opts.exclude.iter().any(|p| p.matches(name));
            let path = dir.join(name);
            if !excluded && plan.host(&path).exists() {
                base.add_host_path(&path)?;
            }
        }
    }
    if base.nodes.is_empty() {
        return Ok(());
    }
    let generated = scratch_etc::files()
        .into_iter()
        .map(|(p, ..)| p)
        .chain(["/tmp", "/run"]);
    for path in generated.map(Path::new) {
        if let Some(node) = plan.nodes.get(path) {
            base.add_dir(Path::new("/etc"), 0o755)?;
            base.nodes.insert(path.to_path_buf(), node.clone());
        }
    }
    for (path, node) in base.nodes {
        // A directory another file of the plan already made keeps its mode.
        let node = match (plan.nodes.get(&path), node) {
            (Some(d @ Node::Dir { .. }), Node::Dir { .. }) => d.clone(),
            (_, n) => n,
        };
        plan.insert(&path, node)?;
        plan.shared.insert(path);
    }
    Ok(())
}

/// Libraries found through an RPATH or RUNPATH, listed in the image's
/// ld.so.cache too: the loader consults the cache after those paths, so a
/// `$ORIGIN` path that cannot be expanded (no /proc for the program's own
/// origin) or a moved program (`--install-to`) still finds them. Only names
/// the host's cache and the default directories do not know are added, so
/// no other lookup changes.
fn search_path_fallbacks(col: &Collection, cache: &LdCache) -> Vec<(String, PathBuf)> {
    use crate::loader::resolve::Via;
    let system = [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib",
        "/usr/lib",
    ];
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    let mut ambiguous = Vec::new();
    for o in col.closures.iter().flat_map(|c| &c.objects) {
        let by_search_path = matches!(o.via, Via::Rpath(_) | Via::Runpath);
        if !by_search_path
            || cache
                .lookup(&o.name, crate::loader::ldcache::X86_64_LIBC6, |_| 0)
                .is_some()
            || system.iter().any(|d| Path::new(d).join(&o.name).exists())
        {
            continue;
        }
        match out.iter().find(|(n, _)| *n == o.name) {
            Some((_, p)) if *p != o.path => ambiguous.push(o.name.clone()),
            Some(_) => {}
            None => out.push((o.name.clone(), o.path.clone())),
        }
    }
    out.retain(|(n, _)| !ambiguous.contains(n));
    out
}

/// Destination of each program: `None` keeps its own path.
fn install_targets(col: &Collection, install_to: Option<&str>) -> Result<Vec<Option<PathBuf>>> {
    let Some(to) = install_to else {
        return Ok(vec![None; col.programs.len()]);
    };
    if !to.starts_with('/') {
        bail!("--install-to {to}: must be an absolute path in the image");
    }
    if to.ends_with('/') {
        return Ok(col
            .programs
            .iter()
            .map(|p| Some(Path::new(to).join(p.path.file_name().unwrap_or_default())))
            .collect());
    }
    if col.programs.len() > 1 {
        bail!(
            "--install-to {to}: names one file but {} programs were given (end it with / for a directory)",
            col.programs.len()
        );
    }
    Ok(vec![Some(PathBuf::from(to))])
}
