//! Paths a program names in its read-only strings that exist on the build
//! system but are not shipped.
//!
//! A program no package owns (a user's own build, /usr/local, /opt) gets
//! no package data: only its exact ELF closure ships. What else it needs is
//! often spelled out in its strings: a data directory, a config file, a
//! helper it runs. Those that exist here and are not in the plan are
//! reported once, each with the `--add` that ships it, so the user decides;
//! shipping them unasked could pull in anything a string happens to name.

use std::path::{Component, Path, PathBuf};

use crate::plan::Plan;

/// Standard directories: a string naming only these (`/usr/lib`, `/etc`)
/// says nothing about what the program needs.
const GENERIC: &[&str] = &[
    "bin",
    "sbin",
    "lib",
    "lib32",
    "lib64",
    "libx32",
    "libexec",
    "usr",
    "local",
    "share",
    "etc",
    "var",
    "opt",
    "srv",
    "include",
    "x86_64-linux-gnu",
    "aarch64-linux-gnu",
    "cache",
    "log",
    "spool",
    "mail",
    "misc",
];

/// Places never shipped (kernel interfaces, per-machine and per-user state).
const NEVER: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/tmp",
    "/var/tmp",
    "/home",
    "/root",
    "/mnt",
    "/media",
    "/boot",
    "/lost+found",
];

/// Absolute paths among `data`'s NUL-terminated printable strings (each
/// starting right after a NUL, as `strings` finds them), at most 256 bytes.
pub fn absolute_strings(data: &[u8]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let printable = |b: u8| b.is_ascii_alphanumeric() || b"/._+-@:".contains(&b);
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'/' && (i == 0 || data[i - 1] == 0) {
            let len = data[i..].iter().take_while(|&&b| printable(b)).count();
            if (2..=256).contains(&len) && data.get(i + len) == Some(&0) {
                use std::os::unix::ffi::OsStrExt;
                out.push(PathBuf::from(std::ffi::OsStr::from_bytes(
                    &data[i..i + len],
                )));
            }
            i += len.max(1);
        } else {
            i += 1;
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Whether `p` is worth reporting: not only standard directory names, not
/// under a place that is never shipped, no `..`.
fn specific(p: &Path) -> bool {
    if NEVER.iter().any(|n| p.starts_with(n)) {
        return false;
    }
    let mut specific = false;
    for c in p.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => {
                if !GENERIC.iter().any(|g| n == *g) {
                    specific = true;
                }
            }
            _ => return false,
        }
    }
    specific
}

/// Where the C library and the loader sit in a Debian root (x86-64,
/// aarch64, merged /usr or not).
const C_RUNTIME: &[&str] = &[
    "lib/x86_64-linux-gnu/libc.so.6",
    "usr/lib/x86_64-linux-gnu/libc.so.6",
    "lib64/ld-linux-x86-64.so.2",
    "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "lib/aarch64-linux-gnu/libc.so.6",
    "usr/lib/aarch64-linux-gnu/libc.so.6",
    "lib/ld-linux-aarch64.so.1",
    "usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1",
];

/// The paths glibc and its loader name themselves (`/etc/ld.so.cache`,
/// `/usr/lib/locale`, gconv...): a static program carries them, and they
/// say nothing about what the program needs beyond what libc's own
/// options (`--locale`, `--gconv`) ship.
fn c_runtime_strings(root: &Path) -> std::collections::HashSet<PathBuf> {
    C_RUNTIME
        .iter()
        .filter_map(|rel| std::fs::read(root.join(rel)).ok())
        .flat_map(|bytes| absolute_strings(&bytes))
        .collect()
}

/// The paths `program` (its bytes) names that exist under `root` (the
/// build system) and that `plan` does not ship (at their own paths, or
/// under `bundle`, a bundle's prefix).
pub fn not_shipped(
    program: &[u8],
    root: &Path,
    plan: &Plan,
    bundle: Option<&Path>,
) -> Vec<PathBuf> {
    let shipped = |p: &Path| {
        plan.lookup(p).is_some()
            || bundle.is_some_and(|b| {
                plan.lookup(&b.join(p.strip_prefix("/").unwrap_or(p)))
                    .is_some()
            })
    };
    let libc = c_runtime_strings(root);
    absolute_strings(program)
        .into_iter()
        .filter(|p| specific(p) && !libc.contains(p))
        .filter(|p| !shipped(p))
        .filter(|p| {
            crate::loader::root::in_root(root, p)
                .symlink_metadata()
                .is_ok()
        })
        .collect()
}

/// One note per program: `PROG names paths that exist here but are not
/// shipped: PATH (--add PATH), ...`.
pub fn note(program: &Path, paths: &[PathBuf]) -> Option<String> {
    if paths.is_empty() {
        return None;
    }
    let list: Vec<String> = paths
        .iter()
        .map(|p| format!("{} (--add {})", p.display(), p.display()))
        .collect();
    Some(format!(
        "{}: named by the program but not shipped (it belongs to no package, so only its ELF closure ships): {}",
        program.display(),
        list.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_whole_strings_only() {
        let data = b"\0/usr/share/myapp\0x/etc/not-this\0/etc/myapp.conf\0/a b\0";
        assert_eq!(
            absolute_strings(data),
            vec![
                PathBuf::from("/etc/myapp.conf"),
                PathBuf::from("/usr/share/myapp")
            ]
        );
    }

    #[test]
    fn standard_directories_are_not_specific() {
        assert!(!specific(Path::new("/usr/lib/x86_64-linux-gnu")));
        assert!(!specific(Path::new("/proc/self/exe")));
        assert!(specific(Path::new("/usr/share/myapp")));
        assert!(specific(Path::new("/bin/sh")));
    }
}
