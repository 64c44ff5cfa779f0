//! `--trace`: run the program once on the build machine under ptrace and
//! find what it loads at run time that no ELF header names: a script
//! interpreter's modules, dlopen'd libraries, data and configuration files,
//! programs it runs.
//!
//! [`ptrace`] records every path a file-name syscall succeeded on; this
//! module decides which of them may ship: regular files (or symlinks to
//! them) and directories that existed before the run, outside the virtual
//! and private places listed in [`excluded`].

mod ptrace;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Result, bail};

pub use ptrace::{Access, Outcome, What};

#[derive(Debug, Clone)]
pub struct Options {
    /// Arguments for the run (not including the program).
    pub args: Vec<OsString>,
    /// Standard input for the run (default: /dev/null).
    pub stdin: Option<PathBuf>,
    pub timeout: Duration,
    /// Use the run even when it fails (non-zero exit or killed by a signal).
    pub allow_fail: bool,
}

/// A path the run used that may ship.
#[derive(Debug, Clone)]
pub struct Found {
    pub access: Access,
    pub is_dir: bool,
    pub is_elf: bool,
}

#[derive(Debug, Clone)]
pub struct Traced {
    /// The command line that was run, for the report.
    pub command: String,
    pub outcome: Outcome,
    pub processes: usize,
    pub found: Vec<Found>,
    /// Paths the run used that do not ship, and why.
    pub skipped: Vec<(PathBuf, String)>,
    pub warnings: Vec<String>,
}

/// Runs `program` with `opts` under ptrace and sorts what it touched.
pub fn trace(program: &Path, opts: &Options) -> Result<Traced> {
    let command = std::iter::once(program.display().to_string())
        .chain(opts.args.iter().map(|a| shell_quote(&a.to_string_lossy())))
        .collect::<Vec<_>>()
        .join(" ");
    let run = ptrace::run(&ptrace::TraceCommand {
        program: program.to_path_buf(),
        args: opts.args.clone(),
        stdin: opts.stdin.clone(),
        timeout: opts.timeout,
    })?;
    let failed = match run.outcome {
        Outcome::Exited(0) => None,
        Outcome::Exited(n) => Some(format!("exited with status {n}")),
        Outcome::Signaled(s) => Some(format!("was killed by signal {s}")),
        Outcome::TimedOut => Some(format!(
            "did not finish within {} s (--trace-timeout)",
            opts.timeout.as_secs()
        )),
    };
    let mut warnings = Vec::new();
    if let Some(why) = &failed {
        let tail = output_tail(&run.output, 10);
        if run.outcome == Outcome::TimedOut || !opts.allow_fail {
            bail!(
                "--trace: `{command}` {why}; its files are not used{}{tail}",
                if run.outcome == Outcome::TimedOut {
                    ""
                } else {
                    " (--trace-allow-fail uses them anyway)"
                }
            );
        }
        warnings.push(format!(
            "--trace: `{command}` {why}; using what it loaded anyway (--trace-allow-fail)"
        ));
    }
    if run.leftovers > 0 {
        warnings.push(format!(
            "--trace: `{command}` left {} process(es) running; they were killed when it ended",
            run.leftovers
        ));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let started = run
        .started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i128;
    let (found, skipped) = select(&run.accesses, home.as_deref(), started);
    Ok(Traced {
        command,
        outcome: run.outcome,
        processes: run.processes,
        found,
        skipped,
        warnings,
    })
}

/// Keeps the first successful non-writing access of each path that may ship;
/// `started` is the run's start in ns since the epoch.
fn select(
    accesses: &[Access],
    home: Option<&Path>,
    started: i128,
) -> (Vec<Found>, Vec<(PathBuf, String)>) {
    let mut written: HashSet<PathBuf> = HashSet::new();
    for a in accesses.iter().filter(|a| a.what == What::Write) {
        written.insert(a.path.clone());
        if let Ok(c) = std::fs::canonicalize(&a.path) {
            written.insert(c);
        }
    }
    // One access per path, in first-seen order: the one that says most
    // (an exec over an open over a stat: python stats an extension module
    // before it dlopens it).
    let rank = |w: What| match w {
        What::Exec => 3,
        What::Read => 2,
        _ => 1,
    };
    let mut index: HashMap<&Path, usize> = HashMap::new();
    let mut unique: Vec<&Access> = Vec::new();
    for a in accesses.iter().filter(|a| a.what != What::Write) {
        match index.get(a.path.as_path()) {
            Some(&i) => {
                if rank(a.what) > rank(unique[i].what) {
                    unique[i] = a;
                }
            }
            None => {
                index.insert(&a.path, unique.len());
                unique.push(a);
            }
        }
    }
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for a in unique {
        let canonical = std::fs::canonicalize(&a.path).ok();
        if let Some(why) =
            excluded(&a.path, home).or_else(|| canonical.as_deref().and_then(|c| excluded(c, home)))
        {
            skipped.push((a.path.clone(), why.to_string()));
            continue;
        }
        if written.contains(&a.path) || canonical.as_ref().is_some_and(|c| written.contains(c)) {
            skipped.push((a.path.clone(), "created or written during the run".into()));
            continue;
        }
        let Ok(meta) = std::fs::metadata(&a.path) else {
            skipped.push((
                a.path.clone(),
                "not there after the run (or a dangling symlink)".into(),
            ));
            continue;
        };
        if meta.is_dir() {
            found.push(Found {
                access: a.clone(),
                is_dir: true,
                is_elf: false,
            });
            continue;
        }
        if !meta.is_file() {
            skipped.push((a.path.clone(), "not a regular file".into()));
            continue;
        }
        let ctime = meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128;
        if ctime >= started {
            skipped.push((a.path.clone(), "changed during the run".into()));
            continue;
        }
        found.push(Found {
            is_elf: crate::elf::has_elf_magic(&a.path),
            access: a.clone(),
            is_dir: false,
        });
    }
    (found, skipped)
}

/// Files that never ship from a trace: virtual file systems, the run-time
/// state of the host, the build user's home, secrets, and the files the image
/// generates itself (its own passwd, group, nsswitch.conf, hosts,
/// ld.so.cache) or gets from the container runtime (hostname, resolv.conf).
pub fn excluded(path: &Path, home: Option<&Path>) -> Option<&'static str> {
    const VIRTUAL: &[&str] = &["/proc", "/sys", "/dev", "/run", "/var/run"];
    const SECRETS: &[&str] = &[
        "/etc/shadow",
        "/etc/shadow-",
        "/etc/gshadow",
        "/etc/gshadow-",
        "/etc/sudoers",
        "/etc/sudoers.d",
        "/etc/ssl/private",
        "/etc/security/opasswd",
        "/etc/krb5.keytab",
        "/etc/machine-id",
        "/var/lib/dbus/machine-id",
        "/var/lib/sudo",
    ];
    const GENERATED: &[&str] = &[
        "/etc/passwd",
        "/etc/passwd-",
        "/etc/group",
        "/etc/group-",
        "/etc/nsswitch.conf",
        "/etc/hosts",
        "/etc/ld.so.cache",
        "/etc/hostname",
        "/etc/resolv.conf",
    ];
    let under = |p: &str| path.starts_with(p);
    if VIRTUAL.iter().any(|p| under(p)) {
        return Some("virtual or run-time file system");
    }
    if home.is_some_and(|h| h.parent().is_some() && path.starts_with(h)) {
        return Some("in the build user's home ($HOME)");
    }
    if SECRETS.iter().any(|p| under(p))
        || path.components().any(|c| {
            let c = c.as_os_str();
            c == ".ssh" || c == ".gnupg"
        })
        || (path.starts_with("/etc/ssh")
            && path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ssh_host_")))
    {
        return Some("a secret");
    }
    if GENERATED.iter().any(|p| path == Path::new(p)) {
        return Some("the image has its own");
    }
    None
}

fn output_tail(out: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(out);
    let all: Vec<&str> = text.lines().collect();
    if all.is_empty() {
        return String::new();
    }
    let tail = &all[all.len().saturating_sub(lines)..];
    format!("; its output ended with:\n  {}", tail.join("\n  "))
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_ships_virtual_private_or_generated_files() {
        let home = Some(Path::new("/home/me"));
        for p in [
            "/proc/self/maps",
            "/sys/devices/system/cpu/online",
            "/dev/urandom",
            "/run/systemd/userdb",
            "/home/me/.python_history",
            "/etc/shadow",
            "/etc/sudoers.d/admin",
            "/etc/ssh/ssh_host_ed25519_key",
            "/srv/x/.ssh/id_rsa",
            "/etc/passwd",
            "/etc/group",
            "/etc/ld.so.cache",
        ] {
            assert!(excluded(Path::new(p), home).is_some(), "{p}");
        }
        for p in [
            "/usr/lib/python3.11/json/__init__.py",
            "/etc/ssl/openssl.cnf",
            "/home/other/file",
            "/etc/passwdx",
        ] {
            assert!(excluded(Path::new(p), home).is_none(), "{p}");
        }
        // HOME=/ must not exclude everything.
        assert!(excluded(Path::new("/usr/bin/ls"), Some(Path::new("/"))).is_none());
    }

    #[test]
    fn select_drops_written_and_new_files() {
        let t = tempfile::tempdir().unwrap();
        let old = t.path().join("old");
        let written = t.path().join("written");
        std::fs::write(&old, b"x").unwrap();
        std::fs::write(&written, b"x").unwrap();
        let started = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128
            + 1_000_000_000;
        let acc = |p: &Path, what| Access {
            path: p.to_path_buf(),
            what,
            syscall: "openat",
            pid: 1,
            program: PathBuf::from("/bin/x"),
        };
        let accesses = vec![
            acc(&old, What::Read),
            acc(&written, What::Write),
            acc(&written, What::Read),
            acc(t.path(), What::Stat),
            acc(Path::new("/proc/self/status"), What::Read),
        ];
        let (found, skipped) = select(&accesses, None, started);
        let paths: Vec<_> = found.iter().map(|f| f.access.path.clone()).collect();
        assert_eq!(paths, vec![old.clone(), t.path().to_path_buf()]);
        assert!(found[1].is_dir);
        assert_eq!(skipped.len(), 2);
        // A file changed after the run started is not shipped.
        let (found, _) = select(&accesses[..1], None, 0);
        assert!(found.is_empty());
    }
}
