//! `--add SRC[:DEST]`: files, directories and globs the user names.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::{Builder, Item, file_id, sorted_dir};

impl Builder<'_> {
    pub(super) fn add_spec(&mut self, spec: &str) -> Result<()> {
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
        if let Some(d) = &dest
            && d.components().any(|c| c == std::path::Component::ParentDir)
        {
            bail!(
                "--add {spec}: DEST {} must not contain '..' (give the path it means)",
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
                let root = std::fs::canonicalize(&s)
                    .with_context(|| format!("{}: cannot resolve", s.display()))?;
                let tree = Tree {
                    top: &s,
                    root: &root,
                    image_root: target.as_deref().unwrap_or(&s),
                };
                self.add_dir(&tree, &s, target.as_deref(), &source, 0)?;
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

    /// Adds `dir` recursively, at its own path or copied under `dest`.
    /// Symlinks stay symlinks when they point inside the added tree and are
    /// refused when they leave it: following one could ship a host secret
    /// (a link to /etc/shadow) as a regular file.
    fn add_dir(
        &mut self,
        tree: &Tree,
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
            if lmeta.file_type().is_symlink() {
                let target = std::fs::read_link(&entry)
                    .with_context(|| format!("{}: cannot read the link", entry.display()))?;
                let Ok(resolved) = std::fs::canonicalize(&entry) else {
                    self.out.warnings.push(format!(
                        "{}: a dangling symlink, not shipped",
                        entry.display()
                    ));
                    continue;
                };
                let Ok(inside) = resolved.strip_prefix(tree.root) else {
                    bail!(
                        "{}: a symlink to {}, outside the added directory {}; elfpack does not follow it (--add what it points to by name if that should ship)",
                        entry.display(),
                        target.display(),
                        tree.top.display()
                    );
                };
                let target = if target.is_absolute() {
                    tree.image_root.join(inside)
                } else {
                    target
                };
                self.push(
                    Item::Symlink {
                        dest: sub_dest.unwrap_or_else(|| entry.clone()),
                        target,
                    },
                    source,
                    "named on the command line",
                );
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
                self.add_dir(tree, &entry, sub_dest.as_deref(), source, depth + 1)?;
            } else if meta.is_file() {
                self.add_file(&entry, sub_dest.as_deref(), source);
            }
        }
        Ok(())
    }
}

/// A directory named by `--add`: as given, resolved, and where it goes in
/// the image.
struct Tree<'a> {
    top: &'a Path,
    root: &'a Path,
    image_root: &'a Path,
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

#[cfg(test)]
mod tests {
    use super::*;

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
