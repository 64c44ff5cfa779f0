//! `--trace`: run the program once on the build machine under ptrace and
//! find what it loads at run time that no ELF header names: a script
//! interpreter's modules, dlopen'd libraries, data and configuration files,
//! programs it runs.
//!
//! [`ptrace`] records every path a file-name syscall succeeded on; this
//! module decides which of them may ship: regular files (or symlinks to
//! them) and directories that existed before the run, outside the virtual
//! and private places listed in [`excluded`]. Files the run writes never
//! ship, but the directories it writes them in do, empty and with the
//! host's modes ([`write_dirs`]): a daemon's `/run` or `/var/log/nginx` is
//! not there in a `FROM scratch` image, and it refuses to start without it.
//!
//! A run can happen as another user ([`RunAs`], `--trace-user`): some
//! programs refuse to run as root (postgres's `initdb`).

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
    /// Command lines of `--trace-run` (program first). Empty: each packed
    /// program runs once with `args`.
    pub runs: Vec<Vec<OsString>>,
    /// Arguments for the default runs (not including the program).
    pub args: Vec<OsString>,
    /// Standard input for each run (default: /dev/null).
    pub stdin: Option<PathBuf>,
    pub timeout: Duration,
    /// Use the run even when it fails (non-zero exit or killed by a signal).
    pub allow_fail: bool,
    /// `--trace-user NAME|UID`: the user the runs happen as.
    pub user: Option<String>,
}

/// The identity a traced run takes (`--trace-user`), looked up in the build
/// host's user database: the run happens on the build host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (`getgrouplist`).
    pub groups: Vec<u32>,
    /// Name and home, when the host's passwd lists the user: the run gets
    /// them as USER, LOGNAME and HOME.
    pub name: Option<String>,
    pub home: Option<PathBuf>,
}

impl RunAs {
    /// `spec`: a user name, or a numeric uid (which need not be listed: its
    /// group is then the same number and it has no supplementary groups).
    pub fn lookup(spec: &str) -> Result<RunAs> {
        let numeric = spec.parse::<u32>().ok();
        let pw = match numeric {
            Some(uid) => passwd_entry(PwKey::Uid(uid)),
            None => passwd_entry(PwKey::Name(spec)),
        };
        match (pw, numeric) {
            (Some((name, uid, gid, home)), _) => {
                let groups = group_list(&name, gid);
                Ok(RunAs {
                    uid,
                    gid,
                    groups,
                    name: Some(name),
                    home: Some(home),
                })
            }
            (None, Some(uid)) => Ok(RunAs {
                uid,
                gid: uid,
                groups: vec![uid],
                name: None,
                home: None,
            }),
            (None, None) => bail!(
                "--trace-user {spec}: no such user on this machine (give a name from /etc/passwd or a numeric uid)"
            ),
        }
    }
}

enum PwKey<'a> {
    Uid(u32),
    Name(&'a str),
}

/// (name, uid, gid, home) from the host's user database (getpwnam_r /
/// getpwuid_r, so NSS sources count too).
fn passwd_entry(key: PwKey) -> Option<(String, u32, u32, PathBuf)> {
    use std::ffi::{CStr, CString};
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0u8; 16384];
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    let rc = match key {
        PwKey::Uid(uid) => unsafe {
            libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out)
        },
        PwKey::Name(name) => {
            let name = CString::new(name).ok()?;
            unsafe {
                libc::getpwnam_r(
                    name.as_ptr(),
                    &mut pw,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut out,
                )
            }
        }
    };
    if rc != 0 || out.is_null() {
        return None;
    }
    // SAFETY: getpw*_r filled `pw` with strings inside `buf`, alive here.
    let (name, home) = unsafe {
        (
            CStr::from_ptr(pw.pw_name).to_string_lossy().into_owned(),
            PathBuf::from(std::ffi::OsStr::from_bytes(
                CStr::from_ptr(pw.pw_dir).to_bytes(),
            )),
        )
    };
    Some((name, pw.pw_uid, pw.pw_gid, home))
}

/// The groups `name` is in, its primary group `gid` first.
fn group_list(name: &str, gid: u32) -> Vec<u32> {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return vec![gid];
    };
    let mut n: libc::c_int = 64;
    loop {
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            groups.truncate(n as usize);
            return groups;
        }
        if n as usize <= groups.len() {
            return vec![gid];
        }
    }
}

/// A path the run used that may ship.
#[derive(Debug, Clone)]
pub struct Found {
    pub access: Access,
    /// Position of `access` among all the run's accesses (`found` is in
    /// first-seen order of paths, which can differ).
    pub seq: usize,
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
    /// Directories the run wrote files in (or created entries in), each with
    /// the first write that put it here: they ship empty.
    pub write_dirs: Vec<(PathBuf, Access)>,
    /// Paths the run used that do not ship, and why.
    pub skipped: Vec<(PathBuf, String)>,
    pub warnings: Vec<String>,
}

/// Runs `program` with `args` under ptrace (as `opts.user`, if given) and
/// sorts what it touched.
pub fn trace(program: &Path, args: &[OsString], opts: &Options) -> Result<Traced> {
    let user = opts.user.as_deref().map(RunAs::lookup).transpose()?;
    let command = std::iter::once(program.display().to_string())
        .chain(args.iter().map(|a| shell_quote(&a.to_string_lossy())))
        .collect::<Vec<_>>()
        .join(" ");
    let progress = crate::progress::Progress::spinner(&format!("--trace: running {command}"));
    let run = ptrace::run(&ptrace::TraceCommand {
        program: program.to_path_buf(),
        args: args.to_vec(),
        stdin: opts.stdin.clone(),
        timeout: opts.timeout,
        user: user.clone(),
    })?;
    drop(progress);
    let as_user = match (&opts.user, &run.outcome) {
        (Some(u), o) if *o != Outcome::Exited(0) => format!(" (run as user {u}, --trace-user)"),
        _ => String::new(),
    };
    let failed = match run.outcome {
        Outcome::Exited(0) => None,
        Outcome::Exited(n) => Some(format!("exited with status {n}{as_user}")),
        Outcome::Signaled(s) => Some(format!("was killed by signal {s}{as_user}")),
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
    // Private places: the packing user's home, and the home of the user
    // the run happened as.
    let homes: Vec<PathBuf> = std::env::var_os("HOME")
        .map(PathBuf::from)
        .into_iter()
        .chain(user.and_then(|u| u.home))
        .collect();
    let started = run
        .started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i128;
    let (found, mut skipped) = select(&run.accesses, &homes, started);
    let cwd = std::env::current_dir().ok();
    let (write_dirs, not_dirs) = write_dirs(&run.accesses, &homes, cwd.as_deref());
    skipped.extend(not_dirs);
    Ok(Traced {
        command,
        outcome: run.outcome,
        processes: run.processes,
        found,
        write_dirs,
        skipped,
        warnings,
    })
}

/// Paths left out, each with the reason.
type Skipped = Vec<(PathBuf, String)>;

/// Paths created during the run (written files, made directories, link
/// and rename targets), as named and as resolved.
fn created(accesses: &[Access]) -> HashSet<PathBuf> {
    let mut written: HashSet<PathBuf> = HashSet::new();
    for a in accesses.iter().filter(|a| a.what == What::Write) {
        written.insert(a.path.clone());
        if let Ok(c) = std::fs::canonicalize(&a.path) {
            written.insert(c);
        }
    }
    written
}

/// The directories the run wrote in, which ship empty with their host
/// modes (and the symlinks on the way, e.g. /var/run -> /run). Left out:
/// directories the run created itself (it will create them again), those
/// under /proc, /sys and /dev, a home, /tmp and /var/tmp (scratch space;
/// the image has its own /tmp), the working directory of the run and what
/// is below it (where the user keeps its output), and secrets.
fn write_dirs(
    accesses: &[Access],
    homes: &[PathBuf],
    cwd: Option<&Path>,
) -> (Vec<(PathBuf, Access)>, Skipped) {
    const SCRATCH: &[&str] = &["/proc", "/sys", "/dev", "/tmp", "/var/tmp"];
    let created = created(accesses);
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut dirs = Vec::new();
    let mut skipped = Vec::new();
    for a in accesses.iter().filter(|a| a.what == What::Write) {
        let Some(dir) = a.path.parent() else { continue };
        if dir == Path::new("/") || !seen.insert(dir.to_path_buf()) {
            continue;
        }
        let real = std::fs::canonicalize(dir).ok();
        let under =
            |p: &Path| dir.starts_with(p) || real.as_deref().is_some_and(|r| r.starts_with(p));
        let why = if created.contains(dir) || real.as_ref().is_some_and(|r| created.contains(r)) {
            Some("a directory the run created (it will again)")
        } else if SCRATCH.iter().any(|p| under(Path::new(p))) {
            Some("written in, but virtual or scratch space")
        } else if homes.iter().any(|h| h.parent().is_some() && under(h)) {
            Some("written in, but in a home directory")
        } else if cwd.is_some_and(|c| c != Path::new("/") && under(c)) {
            Some("written in, but the run's working directory")
        } else if is_secret(dir) || real.as_deref().is_some_and(is_secret) {
            Some("written in, but a secret")
        } else if !real.as_deref().is_some_and(Path::is_dir) {
            Some("written in, but not a directory after the run")
        } else {
            None
        };
        match why {
            Some(w) => skipped.push((dir.to_path_buf(), w.to_string())),
            None => dirs.push((dir.to_path_buf(), a.clone())),
        }
    }
    (dirs, skipped)
}

/// Keeps the first successful non-writing access of each path that may ship;
/// `started` is the run's start in ns since the epoch.
fn select(
    accesses: &[Access],
    homes: &[PathBuf],
    started: i128,
) -> (Vec<Found>, Vec<(PathBuf, String)>) {
    let written = created(accesses);
    let skip_why = |p: &Path| {
        homes
            .iter()
            .find_map(|h| excluded(p, Some(h)))
            .or_else(|| excluded(p, None))
    };
    // One access per path, in first-seen order: the one that says most
    // (an exec over an open over a stat: python stats an extension module
    // before it dlopens it).
    let rank = |w: What| match w {
        What::Exec => 3,
        What::Read => 2,
        _ => 1,
    };
    let mut index: HashMap<&Path, usize> = HashMap::new();
    let mut unique: Vec<(usize, &Access)> = Vec::new();
    for (seq, a) in accesses
        .iter()
        .enumerate()
        .filter(|(_, a)| a.what != What::Write)
    {
        match index.get(a.path.as_path()) {
            Some(&i) => {
                if rank(a.what) > rank(unique[i].1.what) {
                    unique[i] = (seq, a);
                }
            }
            None => {
                index.insert(&a.path, unique.len());
                unique.push((seq, a));
            }
        }
    }
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for (seq, a) in unique {
        let canonical = std::fs::canonicalize(&a.path).ok();
        if let Some(why) = skip_why(&a.path).or_else(|| canonical.as_deref().and_then(skip_why)) {
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
                seq,
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
            seq,
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
    if VIRTUAL.iter().any(|p| path.starts_with(p)) {
        return Some("virtual or run-time file system");
    }
    if home.is_some_and(|h| h.parent().is_some() && path.starts_with(h)) {
        return Some("in the build user's home ($HOME)");
    }
    if is_secret(path) {
        return Some("a secret");
    }
    if GENERATED.iter().any(|p| path == Path::new(p)) {
        return Some("the image has its own");
    }
    None
}

/// Password hashes, keys, sudo rules, the machine's identity.
fn is_secret(path: &Path) -> bool {
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
    SECRETS.iter().any(|p| path.starts_with(p))
        || path.components().any(|c| {
            let c = c.as_os_str();
            c == ".ssh" || c == ".gnupg"
        })
        || (path.starts_with("/etc/ssh")
            && path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ssh_host_")))
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
    fn write_dirs_ship_where_the_run_wrote_but_not_scratch_or_its_own() {
        // Real directories outside /tmp (scratch space to the rule).
        let base = env!("CARGO_MANIFEST_DIR");
        if base.starts_with("/tmp") || base.starts_with("/var/tmp") {
            eprintln!("skipped: the checkout is under /tmp");
            return;
        }
        let t = tempfile::tempdir_in(base).unwrap();
        let logs = t.path().join("log");
        let cwd = t.path().join("cwd");
        let made = logs.join("made");
        for d in [&logs, &cwd, &made] {
            std::fs::create_dir_all(d).unwrap();
        }
        let acc = |p: &Path| Access {
            path: p.to_path_buf(),
            what: What::Write,
            syscall: "openat",
            pid: 1,
            program: PathBuf::from("/usr/sbin/d"),
        };
        let accesses = vec![
            acc(&logs.join("error.log")),
            acc(&logs.join("access.log")),
            acc(&made),
            acc(&made.join("x")),
            acc(&cwd.join("out")),
            acc(Path::new("/tmp/d.sock")),
            acc(Path::new("/dev/null")),
            acc(Path::new("/home/me/.d_history")),
        ];
        let (dirs, skipped) = write_dirs(&accesses, &[PathBuf::from("/home/me")], Some(&cwd));
        let dirs: Vec<&PathBuf> = dirs.iter().map(|(d, _)| d).collect();
        assert_eq!(dirs, vec![&logs], "{skipped:?}");
        let why = |p: &Path| {
            skipped
                .iter()
                .find(|(s, _)| s == p)
                .map(|(_, w)| w.clone())
                .unwrap_or_default()
        };
        assert!(why(&made).contains("created"), "{skipped:?}");
        assert!(why(&cwd).contains("working directory"), "{skipped:?}");
        assert!(why(Path::new("/tmp")).contains("scratch"), "{skipped:?}");
        assert!(why(Path::new("/dev")).contains("scratch"), "{skipped:?}");
        assert!(why(Path::new("/home/me")).contains("home"), "{skipped:?}");
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
        let (found, skipped) = select(&accesses, &[], started);
        let paths: Vec<_> = found.iter().map(|f| f.access.path.clone()).collect();
        assert_eq!(paths, vec![old.clone(), t.path().to_path_buf()]);
        assert!(found[1].is_dir);
        assert_eq!(skipped.len(), 2);
        // A file changed after the run started is not shipped.
        let (found, _) = select(&accesses[..1], &[], 0);
        assert!(found.is_empty());
    }
}
