//! Paths inside another system's root (`--sysroot DIR`): every path the
//! loader emulation and the planners handle is the path *inside* the root
//! (what the target's loader opens, what `deps` shows, where the file goes
//! in the image); only reading the file maps it to the build host, here.
//! Symlinks are followed inside the root, an absolute target starting again
//! at the root, as `chroot` or openat2's RESOLVE_IN_ROOT would, so a sysroot
//! made with `dpkg-deb -x` or mmdebstrap never leaks into the host's files.

use std::path::{Component, Path, PathBuf};

/// Symlinks followed while resolving one path (the kernel's ELOOP limit).
const MAX_SYMLINKS: usize = 40;

/// The host path of `path` inside `root` (`/` or empty: the path itself).
/// A path that does not exist maps to where it would be.
pub fn in_root(root: &Path, path: &Path) -> PathBuf {
    if root.as_os_str().is_empty() || root == Path::new("/") {
        return path.to_path_buf();
    }
    let mut cur = PathBuf::from("/");
    let mut rest: Vec<PathBuf> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(PathBuf::from(n)),
            Component::ParentDir => Some(PathBuf::from("..")),
            _ => None,
        })
        .collect();
    let mut hops = 0;
    while let Some(c) = rest.pop() {
        if c == Path::new("..") {
            cur.pop();
            continue;
        }
        let next = cur.join(&c);
        let host = root.join(next.strip_prefix("/").unwrap_or(&next));
        match std::fs::read_link(&host) {
            Ok(target) if hops < MAX_SYMLINKS => {
                hops += 1;
                if target.is_absolute() {
                    cur = PathBuf::from("/");
                }
                rest.extend(target.components().rev().filter_map(|c| match c {
                    Component::Normal(n) => Some(PathBuf::from(n)),
                    Component::ParentDir => Some(PathBuf::from("..")),
                    _ => None,
                }));
            }
            _ => cur = next,
        }
    }
    root.join(cur.strip_prefix("/").unwrap_or(&cur))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_links_stay_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        std::fs::write(r.join("usr/lib/libx.so"), b"x").unwrap();
        std::os::unix::fs::symlink("/usr/lib", r.join("lib")).unwrap();
        std::os::unix::fs::symlink("../../lib/libx.so", r.join("usr/lib/liby.so")).unwrap();
        assert_eq!(
            in_root(r, Path::new("/lib/libx.so")),
            r.join("usr/lib/libx.so")
        );
        assert_eq!(
            in_root(r, Path::new("/lib/liby.so")),
            r.join("usr/lib/libx.so")
        );
        assert_eq!(
            in_root(Path::new("/"), Path::new("/lib/x")),
            Path::new("/lib/x")
        );
        assert_eq!(
            in_root(r, Path::new("/../../etc/passwd")),
            r.join("etc/passwd")
        );
    }
}
