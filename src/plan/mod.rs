//! Stage 4, plan: where each file goes.
//!
//! Takes a [`crate::collect::Collection`]; gives a [`Plan`]: every path an
//! output will contain, and where its bytes come from. [`layout`] makes the
//! plan of an image tree (files at their host paths), [`prefix`] and
//! [`bundle`] the plan of a relocatable bundle (PT_INTERP and RPATH rewritten,
//! run-time files mirrored under `PREFIX/root`), [`extras`] places what the
//! user added, [`scratch_etc`] generates the /etc a scratch image lacks.
//! Emitters only walk a plan; they never look at ELF files or search paths.

pub mod bundle;
pub mod extras;
pub mod layout;
pub mod package_metadata;
pub mod prefix;
pub mod runtime_env;
pub mod scratch_etc;

use std::collections::VecDeque;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

/// One path in the output tree. Paths are absolute, as seen inside the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir {
        mode: u32,
    },
    /// A copy of a host file.
    File {
        src: PathBuf,
        mode: u32,
        size: u64,
    },
    /// Generated content (scratch /etc files, ld.so.cache).
    Data {
        bytes: Vec<u8>,
        mode: u32,
    },
    /// Always relative, so the tree can be moved or `COPY`d anywhere.
    Symlink {
        target: PathBuf,
    },
}

#[derive(Debug, Default, Clone)]
pub struct Plan {
    pub nodes: BTreeMap<PathBuf, Node>,
    /// The command the image runs (`ENTRYPOINT`).
    pub entrypoint: Vec<String>,
    /// Paths that make the shared base layer of an image (the C runtime:
    /// loader, glibc, libgcc_s, the generated /etc), the same bytes for every
    /// program packed from one system, so registries and hosts store them
    /// once. Image emitters write them as their own layer; see [`Plan::layers`].
    pub shared: BTreeSet<PathBuf>,
    /// The system host paths are read from: empty or `/`, or a `--sysroot`
    /// (paths stay those inside it; see [`crate::loader::root`]).
    pub root: PathBuf,
    /// Image path -> the host file a [`Node::Data`] was made from (an ELF
    /// file a bundle rewrote), so the file's package is still known.
    pub origins: BTreeMap<PathBuf, PathBuf>,
}

/// Symlinks followed while materialising one path, as in the kernel (ELOOP).
const MAX_SYMLINKS: usize = 40;

impl Plan {
    /// Adds host path `path` at the same place in the image, recreating every
    /// symlink met on the way (directory links like /lib -> usr/lib included)
    /// as a relative link, and the regular file it ends at. Returns the real
    /// host path it resolved to.
    pub fn add_host_path(&mut self, path: &Path) -> Result<PathBuf> {
        self.add_host(path, false)
    }

    /// Like [`Plan::add_host_path`] for a path that ends at a directory,
    /// which is added empty (its contents are added one by one).
    pub fn add_host_dir(&mut self, path: &Path) -> Result<PathBuf> {
        self.add_host(path, true)
    }

    /// Where `path` inside [`Plan::root`] is on this host.
    pub fn host(&self, path: &Path) -> PathBuf {
        crate::loader::root::in_root(&self.root, path)
    }

    fn add_host(&mut self, path: &Path, want_dir: bool) -> Result<PathBuf> {
        let root = self.root.clone();
        let in_root = |p: &Path| -> PathBuf {
            if root.as_os_str().is_empty() || root == Path::new("/") {
                p.to_path_buf()
            } else {
                root.join(p.strip_prefix("/").unwrap_or(p))
            }
        };
        if !path.is_absolute() {
            bail!(
                "{}: internal error: plan paths must be absolute",
                path.display()
            );
        }
        let mut cur = PathBuf::from("/");
        let mut rest: VecDeque<OsString> = normal_components(path);
        let mut hops = 0;
        while let Some(comp) = rest.pop_front() {
            if comp == ".." {
                cur.pop();
                continue;
            }
            let next = cur.join(&comp);
            let host = in_root(&next);
            let meta = std::fs::symlink_metadata(&host)
                .with_context(|| format!("{}: cannot stat", host.display()))?;
            if meta.file_type().is_symlink() {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    bail!(
                        "{}: too many levels of symbolic links (a symlink loop?)",
                        path.display()
                    );
                }
                let target = std::fs::read_link(&host)
                    .with_context(|| format!("{}: cannot read link", host.display()))?;
                let rel = if target.is_absolute() {
                    relative_to(&cur, &target)
                } else {
                    target.clone()
                };
                self.insert(&next, Node::Symlink { target: rel })?;
                if target.is_absolute() {
                    cur = PathBuf::from("/");
                }
                let mut comps = normal_components(&target);
                comps.extend(rest);
                rest = comps;
                continue;
            }
            let mode = meta.permissions().mode() & 0o7777;
            if rest.is_empty() && want_dir {
                if !meta.is_dir() {
                    bail!("{}: is not a directory", path.display());
                }
                self.insert(&next, Node::Dir { mode })?;
            } else if rest.is_empty() {
                if meta.is_dir() {
                    bail!("{}: is a directory, not a file", path.display());
                }
                if !meta.is_file() {
                    bail!("{}: is not a regular file", path.display());
                }
                self.insert(
                    &next,
                    Node::File {
                        src: host.clone(),
                        mode,
                        size: meta.len(),
                    },
                )?;
            } else if !meta.is_dir() {
                bail!("{}: {} is not a directory", path.display(), next.display());
            } else {
                self.insert(&next, Node::Dir { mode })?;
            }
            cur = next;
        }
        Ok(cur)
    }

    /// Copies the host file `src` (following symlinks) to `dest` in the image.
    pub fn add_file_as(&mut self, src: &Path, dest: &Path) -> Result<()> {
        let meta =
            std::fs::metadata(src).with_context(|| format!("{}: cannot stat", src.display()))?;
        self.add_parents(dest)?;
        self.insert(
            dest,
            Node::File {
                src: src.to_path_buf(),
                mode: meta.permissions().mode() & 0o7777,
                size: meta.len(),
            },
        )
    }

    pub fn add_data(&mut self, dest: &Path, bytes: Vec<u8>, mode: u32) -> Result<()> {
        self.add_parents(dest)?;
        self.insert(dest, Node::Data { bytes, mode })
    }

    /// Adds (or re-modes) a directory.
    pub fn add_dir(&mut self, dest: &Path, mode: u32) -> Result<()> {
        self.add_parents(dest)?;
        match self.nodes.get_mut(dest) {
            Some(Node::Dir { mode: m }) => {
                *m = mode;
                Ok(())
            }
            _ => self.insert(dest, Node::Dir { mode }),
        }
    }

    /// Adds the directories above `dest` that are missing (mode 0755).
    pub fn add_parents_of(&mut self, dest: &Path) -> Result<()> {
        self.add_parents(dest)
    }

    fn add_parents(&mut self, dest: &Path) -> Result<()> {
        let mut p = PathBuf::from("/");
        let comps: Vec<_> = normal_components(dest).into_iter().collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            p.push(c);
            match self.nodes.get(&p) {
                Some(Node::Dir { .. }) => {}
                Some(_) => bail!(
                    "{}: cannot create, {} is not a directory in the output",
                    dest.display(),
                    p.display()
                ),
                None => {
                    self.nodes.insert(p.clone(), Node::Dir { mode: 0o755 });
                }
            }
        }
        Ok(())
    }

    /// Adds `node` at `dest`; the same node twice is fine, two different
    /// ones are an error.
    pub fn insert(&mut self, dest: &Path, node: Node) -> Result<()> {
        match self.nodes.get(dest) {
            None => {
                self.nodes.insert(dest.to_path_buf(), node);
                Ok(())
            }
            Some(old) if *old == node => Ok(()),
            Some(Node::Dir { .. }) if matches!(node, Node::Dir { .. }) => Ok(()),
            Some(old) => bail!(
                "{}: two different files want this path ({old:?} and {node:?})",
                dest.display()
            ),
        }
    }

    /// Resolves `path` inside the plan (following its symlinks) to the node
    /// it names, if any.
    pub fn lookup(&self, path: &Path) -> Option<(&PathBuf, &Node)> {
        let mut cur = PathBuf::from("/");
        let mut rest = normal_components(path);
        let mut hops = 0;
        while let Some(c) = rest.pop_front() {
            if c == ".." {
                cur.pop();
                continue;
            }
            let next = cur.join(&c);
            match self.nodes.get_key_value(&next)? {
                (_, Node::Symlink { target }) => {
                    hops += 1;
                    if hops > MAX_SYMLINKS {
                        return None;
                    }
                    if target.is_absolute() {
                        cur = PathBuf::from("/");
                    }
                    let mut comps = normal_components(target);
                    comps.extend(rest);
                    rest = comps;
                }
                (k, n) => {
                    if rest.is_empty() {
                        return Some((k, n));
                    }
                    cur = next;
                }
            }
        }
        None
    }

    /// The plan cut into image layers, bottom first: the [`Plan::shared`]
    /// paths, then everything else. Each layer carries the directories that
    /// lead to its own entries, so either reads alone as a tree. A plan with
    /// nothing shared (or nothing else) is one layer.
    pub fn layers(&self) -> Vec<Plan> {
        let mut base = Plan::default();
        let mut rest = Plan::default();
        for (path, node) in &self.nodes {
            let layer = if self.shared.contains(path) {
                &mut base
            } else {
                &mut rest
            };
            layer.nodes.insert(path.clone(), node.clone());
            for a in path.ancestors().skip(1) {
                if let Some(dir @ Node::Dir { .. }) = self.nodes.get(a) {
                    layer.nodes.entry(a.to_path_buf()).or_insert(dir.clone());
                }
            }
        }
        let layers: Vec<Plan> = [base, rest]
            .into_iter()
            .filter(|l| !l.nodes.is_empty())
            .collect();
        if layers.len() < 2 {
            return vec![self.clone()];
        }
        layers
    }

    /// Clears the set-user-ID and set-group-ID bits of every file, returning
    /// the paths that had them: in an image the files belong to root (or to
    /// whoever unpacks the tree), which the bits would make a privilege.
    pub fn drop_setid(&mut self) -> Vec<PathBuf> {
        let mut dropped = Vec::new();
        for (path, node) in &mut self.nodes {
            if let Node::File { mode, .. } | Node::Data { mode, .. } = node
                && *mode & 0o6000 != 0
            {
                *mode &= !0o6000;
                dropped.push(path.clone());
            }
        }
        dropped
    }

    /// Files (copied or generated) and the bytes they hold.
    pub fn totals(&self) -> (usize, u64) {
        self.nodes.values().fold((0, 0), |(n, b), node| match node {
            Node::File { size, .. } => (n + 1, b + size),
            Node::Data { bytes, .. } => (n + 1, b + bytes.len() as u64),
            _ => (n, b),
        })
    }
}

fn normal_components(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// The relative path from directory `from` to `to` (both absolute, `from`
/// free of symlinks), computed lexically.
pub fn relative_to(from: &Path, to: &Path) -> PathBuf {
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links() {
        assert_eq!(
            relative_to(Path::new("/lib64"), Path::new("/usr/lib64/ld.so")),
            Path::new("../usr/lib64/ld.so")
        );
        assert_eq!(
            relative_to(Path::new("/usr/lib"), Path::new("/usr/lib/x")),
            Path::new("x")
        );
    }

    #[test]
    fn materialises_symlink_chains_and_directory_links() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::write(root.join("usr/lib/libfoo.so.1.2.3"), b"x").unwrap();
        std::os::unix::fs::symlink("libfoo.so.1.2.3", root.join("usr/lib/libfoo.so.1")).unwrap();
        std::os::unix::fs::symlink(root.join("usr/lib"), root.join("lib")).unwrap();
        let mut plan = Plan::default();
        let real = plan.add_host_path(&root.join("lib/libfoo.so.1")).unwrap();
        assert_eq!(real, root.join("usr/lib/libfoo.so.1.2.3"));
        assert!(
            matches!(plan.nodes.get(&root.join("lib")), Some(Node::Symlink { target }) if target == Path::new("usr/lib"))
        );
        assert!(matches!(
            plan.nodes.get(&root.join("usr/lib/libfoo.so.1")),
            Some(Node::Symlink { .. })
        ));
        let (k, _) = plan.lookup(&root.join("lib/libfoo.so.1")).unwrap();
        assert_eq!(k, &root.join("usr/lib/libfoo.so.1.2.3"));
    }

    #[test]
    fn symlink_loop_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        std::os::unix::fs::symlink("b", root.join("a")).unwrap();
        std::os::unix::fs::symlink("a", root.join("b")).unwrap();
        let err = Plan::default().add_host_path(&root.join("a")).unwrap_err();
        assert!(format!("{err:#}").contains("symbolic links"), "{err:#}");
    }
}
