//! A static emulation of glibc's `_dl_map_object_deps`: which files the
//! dynamic loader would open for a program, found without running anything.
//!
//! The rules follow glibc 2.36 `elf/dl-load.c` and `elf/dl-deps.c`:
//! - dependencies are mapped breadth-first; an object's "loader" is the object
//!   whose DT_NEEDED first pulled it in;
//! - a name is matched against every loaded object's request names, opened
//!   path and DT_SONAME before any search, and a found file that is already
//!   loaded under another path (same device and inode) is reused;
//! - a name without `/` is searched in: the DT_RPATH of the loader and of its
//!   loaders up to the executable, then the executable's DT_RPATH (all only if
//!   the requesting object has no DT_RUNPATH, and an object with DT_RUNPATH
//!   has no effective DT_RPATH); then the requester's own DT_RUNPATH; then
//!   ld.so.cache (hits in system dirs refused under DF_1_NODEFLIB); then the
//!   default dirs unless DF_1_NODEFLIB. Every directory is probed with the
//!   glibc-hwcaps and legacy subdirectories first;
//! - a candidate of the wrong class or machine is skipped, a candidate that is
//!   not ELF at all stops the search with an error, as in `open_verify`.
//!
//! LD_LIBRARY_PATH and LD_PRELOAD are deliberately ignored: a packed program
//! must not depend on the packing user's environment.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};

use crate::elf::{self, ElfInfo, Kind, NotElf};
use crate::loader::host::HostCaps;
use crate::loader::ldcache::LdCache;

/// How an object came to be loaded; shown by `elfpack deps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// The program itself.
    Program,
    /// The program's PT_INTERP.
    Interpreter,
    /// A DT_NEEDED entry containing `/` (after `$ORIGIN` etc. expansion).
    Path,
    /// The DT_RPATH of the named object.
    Rpath(PathBuf),
    /// The requesting object's DT_RUNPATH.
    Runpath,
    /// /etc/ld.so.cache.
    Cache,
    /// The loader's built-in directories.
    DefaultDirs,
    /// Already in the process (loaded by path before, e.g. the JVM's
    /// libjvm.so): matched by DT_SONAME, no search.
    Loaded,
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Via::Program => f.write_str("program"),
            Via::Interpreter => f.write_str("PT_INTERP"),
            Via::Path => f.write_str("path in DT_NEEDED"),
            Via::Rpath(of) => write!(f, "DT_RPATH of {}", of.display()),
            Via::Runpath => f.write_str("DT_RUNPATH"),
            Via::Cache => f.write_str("ld.so.cache"),
            Via::DefaultDirs => f.write_str("default dirs"),
            Via::Loaded => f.write_str("already loaded by the process"),
        }
    }
}

/// Why a run-time-loaded object is in the closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Mapped at start-up because of DT_NEEDED (or is the program/loader).
    Needed,
    /// Loaded later by libc itself (dlopen of libgcc_s, NSS modules, gconv).
    RunTime(String),
}

#[derive(Debug, Clone)]
pub struct Object {
    /// The name it was first requested by (DT_NEEDED string, or the path).
    pub name: String,
    /// The path the loader opens (not resolved through symlinks; `$ORIGIN`
    /// of this object is its directory).
    pub path: PathBuf,
    pub info: Arc<ElfInfo>,
    /// Index of the object whose request first mapped this one (`l_loader`).
    pub loader: Option<usize>,
    /// Indices of every object that requested it.
    pub needed_by: Vec<usize>,
    pub via: Via,
    pub reason: Reason,
    /// For a copy found in a glibc-hwcaps or legacy subdirectory: the copy the
    /// loader would pick on a CPU without those features, shipped too so the
    /// result runs on any x86-64.
    pub baseline: Option<PathBuf>,
    id: (u64, u64),
}

impl Object {
    /// The name this object is found by in a flat lib dir (a bundle's): the
    /// loader keeps its file name; libraries take the name the loader
    /// searches for (the DT_NEEDED string, or the file name for objects
    /// requested by path).
    pub fn lib_name(&self) -> anyhow::Result<String> {
        match self.via {
            Via::Interpreter | Via::Path => Ok(self
                .path
                .file_name()
                .ok_or_else(|| anyhow::anyhow!("{}: no file name", self.path.display()))?
                .to_string_lossy()
                .into_owned()),
            _ => Ok(self.name.clone()),
        }
    }
}

/// The objects one program needs, in the loader's mapping order:
/// `objects[0]` is the program, then its interpreter (if any), then the rest.
#[derive(Debug, Clone)]
pub struct Closure {
    pub objects: Vec<Object>,
    pub warnings: Vec<String>,
}

impl Closure {
    pub fn program(&self) -> &Object {
        &self.objects[0]
    }

    pub fn interpreter(&self) -> Option<&Object> {
        self.objects.iter().find(|o| o.via == Via::Interpreter)
    }

    /// Libraries mapped at start-up (DT_NEEDED closure), without program and loader.
    pub fn libraries(&self) -> impl Iterator<Item = &Object> {
        self.objects.iter().filter(|o| {
            !matches!(o.via, Via::Program | Via::Interpreter) && o.reason == Reason::Needed
        })
    }

    pub fn index_of_soname(&self, soname: &str) -> Option<usize> {
        self.objects
            .iter()
            .position(|o| o.info.soname.as_deref() == Some(soname) || o.name == soname)
    }
}

/// Resolves closures; caches parsed ELF files and directory probes so that
/// resolving thousands of programs stays fast.
pub struct Resolver {
    pub caps: HostCaps,
    /// The system resolved in: `/`, or another system's root (`--sysroot`),
    /// whose machine is taken from the first program.
    root: PathBuf,
    /// Without an ld.so.cache in a sysroot: the directories its ld.so.conf
    /// names, searched where the cache would be (what ldconfig would index).
    conf_dirs: Vec<String>,
    cache: LdCache,
    elf_cache: HashMap<PathBuf, Result<Arc<ElfInfo>, String>>,
    dir_cache: HashMap<PathBuf, bool>,
    /// Objects the process had loaded before (see [`Resolver::resolve_in_process`]).
    loaded_before: Vec<PathBuf>,
}

enum Probe {
    Found(PathBuf, Arc<ElfInfo>),
    /// The file is there but of another class or machine: keep searching.
    WrongClass,
    Missing,
}

impl Resolver {
    pub fn new() -> Result<Self> {
        Ok(Self::with_cache(LdCache::load(Path::new(
            "/etc/ld.so.cache",
        ))?))
    }

    /// Resolves inside another system's root: its ld.so.cache when it has
    /// one, else the directories its ld.so.conf (or ld.so.conf.d) names,
    /// then the default directories of the programs' machine.
    pub fn with_root(root: &Path) -> Result<Self> {
        let meta = std::fs::metadata(root)
            .with_context(|| format!("--sysroot {}: cannot use", root.display()))?;
        if !meta.is_dir() {
            bail!("--sysroot {}: is not a directory", root.display());
        }
        let root = std::fs::canonicalize(root)?;
        let cache_file = crate::loader::root::in_root(&root, Path::new("/etc/ld.so.cache"));
        let mut r = Self::with_cache(LdCache::load(&cache_file)?);
        if r.cache.is_empty() {
            let conf = crate::loader::root::in_root(&root, Path::new("/etc/ld.so.conf"));
            let mut dirs = crate::loader::ldconf::dirs(&conf);
            if !conf.exists() {
                let d = crate::loader::root::in_root(&root, Path::new("/etc/ld.so.conf.d"));
                let mut confs: Vec<PathBuf> = std::fs::read_dir(d)
                    .map(|e| e.flatten().map(|e| e.path()).collect())
                    .unwrap_or_default();
                confs.retain(|p| p.extension().is_some_and(|e| e == "conf"));
                confs.sort();
                for c in confs {
                    dirs.extend(crate::loader::ldconf::dirs(&c));
                }
            }
            r.conf_dirs = dirs
                .into_iter()
                .map(|(d, _)| d.display().to_string())
                .collect();
        }
        r.root = root;
        Ok(r)
    }

    /// The root resolved in (`/` unless `--sysroot`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the file at `path` inside the root is on this host.
    pub fn host_path(&self, path: &Path) -> PathBuf {
        crate::loader::root::in_root(&self.root, path)
    }

    pub fn with_cache(cache: LdCache) -> Self {
        Resolver {
            caps: HostCaps::detect(),
            root: PathBuf::from("/"),
            conf_dirs: Vec::new(),
            cache,
            elf_cache: HashMap::new(),
            dir_cache: HashMap::new(),
            loaded_before: Vec::new(),
        }
    }

    pub fn ld_cache(&self) -> &LdCache {
        &self.cache
    }

    /// Parses `path` once; later calls share the result.
    pub fn read_elf(&mut self, path: &Path) -> Result<Arc<ElfInfo>> {
        if let Some(r) = self.elf_cache.get(path) {
            return r.clone().map_err(|e| anyhow!(e));
        }
        let r = elf::read(&self.host_path(path)).map(Arc::new);
        let stored = match &r {
            Ok(i) => Ok(i.clone()),
            Err(e) if e.root_cause().downcast_ref::<NotElf>().is_some() => Err(format!("{e:#}")),
            // I/O errors are not cached: they may be transient.
            Err(_) => return r,
        };
        self.elf_cache.insert(path.to_path_buf(), stored);
        r
    }

    /// The closure of the ELF program at `program` (an absolute path).
    pub fn resolve(&mut self, program: &Path) -> Result<Closure> {
        let info = self.read_elf(program)?;
        self.target(&info, program)?;
        let program_id = file_id(&self.host_path(program))?;
        let mut c = Closure {
            objects: vec![Object {
                name: program.display().to_string(),
                path: program.to_path_buf(),
                info: info.clone(),
                loader: None,
                needed_by: vec![],
                via: Via::Program,
                reason: Reason::Needed,
                baseline: None,
                id: program_id,
            }],
            warnings: vec![],
        };
        if matches!(info.kind, Kind::Static | Kind::StaticPie) {
            return Ok(c);
        }
        let interp_path = info
            .interpreter
            .clone()
            .unwrap_or_else(|| self.caps.default_interpreter.to_string());
        let interp = PathBuf::from(&interp_path);
        let interp_info = self.read_elf(&interp).with_context(|| {
            format!(
                "{}: its interpreter {} cannot be used",
                program.display(),
                interp.display()
            )
        })?;
        if !interp_info.matches(info.class64, info.machine) {
            bail!(
                "{}: interpreter {} is for {}, the program for {}",
                program.display(),
                interp.display(),
                interp_info.machine_name(),
                info.machine_name()
            );
        }
        c.objects.push(Object {
            name: interp_path,
            id: file_id(&self.host_path(&interp))?,
            path: interp,
            info: interp_info,
            loader: None,
            needed_by: vec![],
            via: Via::Interpreter,
            reason: Reason::Needed,
            baseline: None,
        });
        self.map_deps(&mut c, 0)?;
        Ok(c)
    }

    /// The closure of `object` as `dlopen` maps it into a process that has
    /// already loaded the objects at `loaded`: a DT_NEEDED name equal to one
    /// of their paths or DT_SONAMEs is that object, before any search
    /// (`_dl_name_match_p`). The JVM loads `lib/server/libjvm.so` by path,
    /// then `lib/libjava.so`, whose DT_NEEDED `libjvm.so` no search path of
    /// its own reaches.
    pub fn resolve_in_process(&mut self, object: &Path, loaded: &[PathBuf]) -> Result<Closure> {
        self.loaded_before = loaded.to_vec();
        let r = self.resolve(object);
        self.loaded_before.clear();
        r
    }

    /// The first object of [`Self::loaded_before`] that `name` matches.
    fn loaded_match(&mut self, name: &str) -> Option<(PathBuf, Arc<ElfInfo>)> {
        let candidates = self.loaded_before.clone();
        for p in candidates {
            let Ok(info) = self.read_elf(&p) else {
                continue;
            };
            if p.as_os_str() == name || info.soname.as_deref() == Some(name) {
                return Some((p, info));
            }
        }
        None
    }

    /// Checks the program's machine: x86-64 on this host; in a sysroot, the
    /// first program's machine (x86-64 or aarch64) is the system's.
    fn target(&mut self, info: &ElfInfo, program: &Path) -> Result<()> {
        if info.matches(true, self.caps.machine) {
            return Ok(());
        }
        let sysroot = self.root != Path::new("/");
        if sysroot
            && self.elf_cache.len() <= 1
            && info.class64
            && let Some(caps) = HostCaps::for_machine(info.machine)
        {
            self.caps = caps;
            return Ok(());
        }
        let machine = crate::elf::machine_name(true, self.caps.machine);
        if sysroot {
            bail!(
                "{}: wrong architecture: the program is for {}, elfpack packs x86-64 and aarch64, one machine per --sysroot ({machine} here)",
                program.display(),
                info.machine_name()
            );
        }
        bail!(
            "{}: wrong architecture: the program is for {}, elfpack packs for {machine} (--sysroot DIR packs another machine's system)",
            program.display(),
            info.machine_name()
        )
    }

    /// Breadth-first mapping of DT_NEEDED from object `start` on, as
    /// `_dl_map_object_deps` does for the program or a dlopen'd object.
    fn map_deps(&mut self, c: &mut Closure, start: usize) -> Result<()> {
        let mut i = start;
        while i < c.objects.len() {
            if c.objects[i].via != Via::Interpreter {
                let needed = c.objects[i].info.needed.clone();
                for name in needed {
                    self.map_object(c, &name, i, Reason::Needed)?;
                }
            }
            i += 1;
            // dlopen'd objects (run-time extras) are appended after the start-up
            // set; their own needs are mapped when they are added.
        }
        Ok(())
    }

    /// Maps what libc itself would `dlopen(name)` at run time (its caller is
    /// libc, so the search uses libc's loader chain and the program's
    /// DT_RPATH, but not the program's DT_RUNPATH). Returns `None` when the
    /// host has no such library.
    pub fn map_runtime(&mut self, c: &mut Closure, name: &str, why: &str) -> Result<Option<usize>> {
        let Some(libc) = c.index_of_soname("libc.so.6") else {
            return Ok(None);
        };
        let before = c.objects.len();
        match self.map_object(c, name, libc, Reason::RunTime(why.to_string())) {
            Ok(idx) => {
                if c.objects.len() > before {
                    self.map_deps(c, before)?;
                }
                Ok(Some(idx))
            }
            Err(e) if e.downcast_ref::<NotFound>().is_some() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn map_object(
        &mut self,
        c: &mut Closure,
        name: &str,
        loader: usize,
        reason: Reason,
    ) -> Result<usize> {
        if let Some(idx) = find_loaded(c, name) {
            if !c.objects[idx].needed_by.contains(&loader) {
                c.objects[idx].needed_by.push(loader);
            }
            return Ok(idx);
        }
        let loaded = if self.loaded_before.is_empty() {
            None
        } else {
            self.loaded_match(name)
        };
        let (path, info, via, used_subdir) = if let Some((path, info)) = loaded {
            (path, info, Via::Loaded, false)
        } else if name.contains('/') {
            let expanded = self.expand_dst(name, &c.objects[loader]).ok_or_else(|| {
                anyhow!("{}: cannot expand {name}", c.objects[loader].path.display())
            })?;
            let path = PathBuf::from(expanded);
            let info = self.read_elf(&path).with_context(|| {
                format!("{} (needed by {})", name, c.objects[loader].path.display())
            })?;
            (path, info, Via::Path, false)
        } else {
            self.search(c, name, loader, true)?
        };
        let main = &c.objects[0].info;
        if !info.matches(main.class64, main.machine) {
            bail!(
                "{}: is {} but {} needs {}",
                path.display(),
                info.machine_name(),
                c.objects[loader].path.display(),
                main.machine_name()
            );
        }
        let id = file_id(&self.host_path(&path))?;
        if let Some(idx) = c.objects.iter().position(|o| o.id == id) {
            c.objects[idx].needed_by.push(loader);
            return Ok(idx);
        }
        let baseline = if used_subdir {
            match self.search(c, name, loader, false) {
                Ok((p, ..)) => Some(p),
                Err(_) => {
                    c.warnings.push(format!(
                        "{} is only in a CPU-specific directory ({}); the result needs a CPU like this one",
                        name,
                        path.display()
                    ));
                    None
                }
            }
        } else {
            None
        };
        c.objects.push(Object {
            name: name.to_string(),
            path,
            info,
            loader: Some(loader),
            needed_by: vec![loader],
            via,
            reason,
            baseline,
            id,
        });
        Ok(c.objects.len() - 1)
    }

    /// `_dl_map_object`'s search for a name without `/`. With `subdirs`
    /// false, only the plain directories are probed (for the baseline copy).
    fn search(
        &mut self,
        c: &Closure,
        name: &str,
        loader: usize,
        subdirs: bool,
    ) -> Result<(PathBuf, Arc<ElfInfo>, Via, bool)> {
        let mut searched: Vec<String> = Vec::new();
        let req = &c.objects[loader];
        if req.info.runpath.is_none() {
            // The loader chain, then the executable (dl-load.c: "If
            // dynamically linked, try the DT_RPATH of the executable itself").
            let mut chain = Vec::new();
            let mut l = Some(loader);
            while let Some(i) = l {
                chain.push(i);
                l = c.objects[i].loader;
            }
            if !chain.contains(&0) {
                chain.push(0);
            }
            for i in chain {
                let o = &c.objects[i];
                if let (Some(rpath), None) = (&o.info.rpath, &o.info.runpath) {
                    let dirs = self.expand_path_list(rpath, o);
                    searched.push(format!(
                        "DT_RPATH of {} ({})",
                        o.path.display(),
                        dirs.join(":")
                    ));
                    if let Some((p, info, sub)) = self.probe_dirs(&dirs, name, subdirs)? {
                        return Ok((p, info, Via::Rpath(o.path.clone()), sub));
                    }
                }
            }
        }
        if let Some(runpath) = &req.info.runpath {
            let dirs = self.expand_path_list(runpath, req);
            searched.push(format!("DT_RUNPATH ({})", dirs.join(":")));
            if let Some((p, info, sub)) = self.probe_dirs(&dirs, name, subdirs)? {
                return Ok((p, info, Via::Runpath, sub));
            }
        }
        let flags = if c.objects[0].info.class64 {
            self.caps.cache_flags
        } else {
            0x0003
        };
        let caps = &self.caps;
        let hit = self
            .cache
            .lookup(name, flags, |s| {
                if subdirs { caps.hwcaps_priority(s) } else { 0 }
            })
            .map(|e| e.path.clone());
        searched.push("ld.so.cache".into());
        if let Some(path) = hit {
            let in_system_dir = self.caps.system_dirs.iter().any(|d| path.starts_with(d));
            if !(req.info.nodeflib && in_system_dir)
                && let Probe::Found(p, info) = self.probe_file(path)?
            {
                let sub = p.components().any(|s| s.as_os_str() == "glibc-hwcaps");
                return Ok((p, info, Via::Cache, sub));
            }
        }
        if !self.conf_dirs.is_empty() && !req.info.nodeflib {
            let dirs = self.conf_dirs.clone();
            searched.push(format!("ld.so.conf dirs ({})", dirs.join(":")));
            if let Some((p, info, sub)) = self.probe_dirs(&dirs, name, subdirs)? {
                return Ok((p, info, Via::Cache, sub));
            }
        }
        if !req.info.nodeflib {
            let dirs: Vec<String> = self
                .caps
                .system_dirs
                .iter()
                .map(|s| s.to_string())
                .collect();
            searched.push(format!("default dirs ({})", dirs.join(":")));
            if let Some((p, info, sub)) = self.probe_dirs(&dirs, name, subdirs)? {
                return Ok((p, info, Via::DefaultDirs, sub));
            }
        }
        let stale_cache =
            crate::loader::ldconf::dirs(&self.host_path(Path::new("/etc/ld.so.conf")))
                .into_iter()
                .find(|(d, _)| self.host_path(&d.join(name)).is_file())
                .map(|(d, conf)| (d.join(name), conf));
        Err(anyhow!(NotFound {
            name: name.to_string(),
            needed_by: req.path.clone(),
            searched,
            stale_cache
        }))
    }

    fn probe_dirs(
        &mut self,
        dirs: &[String],
        name: &str,
        subdirs: bool,
    ) -> Result<Option<(PathBuf, Arc<ElfInfo>, bool)>> {
        for dir in dirs {
            let dir = Path::new(dir);
            let n = if subdirs { self.caps.subdirs.len() } else { 1 };
            for k in 0..n {
                // The plain directory is the last entry of `subdirs`.
                let sub = if subdirs {
                    self.caps.subdirs[k].as_str()
                } else {
                    ""
                };
                let in_subdir = !sub.is_empty();
                let d = if in_subdir {
                    dir.join(sub)
                } else {
                    dir.to_path_buf()
                };
                if !self.dir_exists(&d) {
                    continue;
                }
                if let Probe::Found(p, info) = self.probe_file(d.join(name))? {
                    return Ok(Some((p, info, in_subdir)));
                }
            }
        }
        Ok(None)
    }

    fn probe_file(&mut self, path: PathBuf) -> Result<Probe> {
        match std::fs::metadata(self.host_path(&path)) {
            Err(_) => return Ok(Probe::Missing),
            Ok(m) if m.is_dir() => return Ok(Probe::Missing),
            Ok(_) => {}
        }
        match self.read_elf(&path) {
            Ok(info) => {
                let host64 = cfg!(target_pointer_width = "64");
                if info.class64 == host64 && info.machine == self.caps.machine {
                    Ok(Probe::Found(path, info))
                } else {
                    Ok(Probe::WrongClass)
                }
            }
            // A file the loader cannot even open is skipped (EACCES); one that
            // is not ELF is a fatal "invalid ELF header" in the loader too.
            Err(e) if e.root_cause().downcast_ref::<NotElf>().is_some() => Err(e),
            Err(_) => Ok(Probe::Missing),
        }
    }

    fn dir_exists(&mut self, d: &Path) -> bool {
        if let Some(&b) = self.dir_cache.get(d) {
            return b;
        }
        let b = self.host_path(d).is_dir();
        self.dir_cache.insert(d.to_path_buf(), b);
        b
    }

    /// Splits an RPATH/RUNPATH and expands dynamic string tokens; elements
    /// whose tokens cannot be expanded are dropped, as glibc does.
    fn expand_path_list(&self, list: &str, obj: &Object) -> Vec<String> {
        list.split(':')
            .filter_map(|e| {
                if e.is_empty() {
                    return Some(".".to_string());
                }
                let d = self.expand_dst(e, obj)?;
                let trimmed = d.trim_end_matches('/');
                Some(if trimmed.is_empty() {
                    "/".to_string()
                } else {
                    trimmed.to_string()
                })
            })
            .collect()
    }

    /// Expands `$ORIGIN`, `$LIB`, `$PLATFORM` (and their `${}` forms).
    pub fn expand_dst(&self, s: &str, obj: &Object) -> Option<String> {
        if !s.contains('$') {
            return Some(s.to_string());
        }
        let mut out = String::new();
        let mut rest = s;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            let (token, len) = if let Some(b) = after.strip_prefix('{') {
                match b.find('}') {
                    Some(end) => (&b[..end], end + 2),
                    None => ("", 0),
                }
            } else {
                let end = after
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                    .unwrap_or(after.len());
                (&after[..end], end)
            };
            match token {
                "ORIGIN" => out.push_str(&origin_of(obj, &self.root)?),
                "LIB" => out.push_str(self.caps.lib),
                "PLATFORM" => out.push_str(&self.caps.platform),
                _ => {
                    out.push('$');
                    rest = after;
                    continue;
                }
            }
            rest = &after[len..];
        }
        out.push_str(rest);
        Some(out)
    }
}

/// `$ORIGIN`: the directory of the path an object was opened by; for the
/// program, of its real path (the kernel's /proc/self/exe).
fn origin_of(obj: &Object, root: &Path) -> Option<String> {
    let p = if obj.via == Via::Program && root != Path::new("/") {
        // The real path inside the root, as /proc/self/exe is there.
        let host = crate::loader::root::in_root(root, &obj.path);
        Path::new("/").join(host.strip_prefix(root).ok()?)
    } else if obj.via == Via::Program {
        std::fs::canonicalize(&obj.path).ok()?
    } else if obj.path.is_absolute() {
        obj.path.clone()
    } else {
        std::env::current_dir().ok()?.join(&obj.path)
    };
    Some(p.parent()?.to_string_lossy().into_owned())
}

fn find_loaded(c: &Closure, name: &str) -> Option<usize> {
    c.objects.iter().position(|o| {
        (o.via != Via::Program && (o.name == name || o.path.as_os_str() == name))
            || o.info.soname.as_deref() == Some(name)
    })
}

fn file_id(p: &Path) -> Result<(u64, u64)> {
    let m = std::fs::metadata(p).with_context(|| format!("{}: cannot stat", p.display()))?;
    Ok((m.dev(), m.ino()))
}

/// A library the loader would not find: says which, who needs it, and where
/// the search looked.
#[derive(Debug)]
pub struct NotFound {
    pub name: String,
    pub needed_by: PathBuf,
    pub searched: Vec<String>,
    /// The library exists in a directory of ld.so.conf (which names it) but
    /// the cache does not list it: ldconfig has not been run.
    pub stale_cache: Option<(PathBuf, PathBuf)>,
}

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "library {} needed by {} not found (searched {})",
            self.name,
            self.needed_by.display(),
            self.searched.join(", ")
        )?;
        if let Some((lib, conf)) = &self.stale_cache {
            write!(
                f,
                "; {} exists in a directory {} lists, but ld.so.cache is stale: run ldconfig",
                lib.display(),
                conf.display()
            )?;
        }
        Ok(())
    }
}
impl std::error::Error for NotFound {}
