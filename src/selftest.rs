//! `--test`: run a packed tree the way a container runtime runs a
//! `FROM scratch` image — new mount, PID, UTS and IPC namespaces, /proc and a
//! tmpfs /dev with the standard nodes, nothing else added (no shell, no
//! busybox) — so a missing file shows up before the image ships.
//!
//! The run never changes the tree it tests: with [`Options::overlay`] it
//! sees the tree through an overlay whose upper layer is a temporary
//! directory (a program that writes a key, a pid file or a database writes
//! it there), and /proc and /dev are mounted on the overlay. It can run as
//! another user ([`Options::user`]), resolved in the tree's own /etc/passwd
//! the way a container runtime resolves `--user`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `NAME|UID[:GROUP|GID]`, looked up in the tree's /etc/passwd and
    /// /etc/group; a uid it does not list runs with gid 0 (as podman and
    /// Docker do). `None`: root.
    pub user: Option<String>,
    /// Run on a throwaway overlay of the tree instead of the tree itself.
    pub overlay: bool,
}

/// The kernel refused the overlay (no overlayfs, or an upper directory it
/// cannot use): the caller tests on a copy instead.
#[derive(Debug)]
pub struct NoOverlay;

impl std::fmt::Display for NoOverlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cannot mount an overlay over the tree")
    }
}
impl std::error::Error for NoOverlay {}

/// (uid, gid, home) for `spec` in the passwd and group files of `root`.
pub fn resolve_user(root: &Path, spec: &str) -> Result<(u32, u32, String)> {
    let read = |f: &str| std::fs::read_to_string(root.join(f)).unwrap_or_default();
    let passwd = read("etc/passwd");
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && (f[0] == user || f[2] == user)).then(|| {
            (
                f[2].parse::<u32>().ok(),
                f[3].parse::<u32>().ok(),
                f[5].to_string(),
            )
        })
    });
    let (uid, gid, home) = match (entry, user.parse::<u32>()) {
        (Some((Some(uid), Some(gid), home)), _) => (uid, gid, home),
        (_, Ok(uid)) => (uid, 0, "/".to_string()),
        _ => bail!("--test-user {spec}: no user {user} in the image's /etc/passwd"),
    };
    let gid = match group {
        None => gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => read("etc/group")
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 3 && f[0] == g).then(|| f[2].parse::<u32>().ok())?
                })
                .with_context(|| {
                    format!("--test-user {spec}: no group {g} in the image's /etc/group")
                })?,
        },
    };
    Ok((uid, gid, home))
}

/// Device nodes every OCI runtime creates: (name, major, minor).
const DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn cstr(s: impl AsRef<[u8]>) -> Result<CString> {
    CString::new(s.as_ref().to_vec()).context("argument contains a NUL byte")
}

/// Runs `argv` (argv[0] an absolute path inside `root`) with `env`, isolated
/// as described above; returns its exit code (128 + signal if killed).
pub fn run(root: &Path, argv: &[String], env: &[String], opts: &Options) -> Result<i32> {
    if argv.is_empty() {
        bail!("--test: no entrypoint to run");
    }
    if unsafe { libc::geteuid() } != 0 {
        bail!("--test needs root (it creates namespaces, mounts /proc and makes device nodes)");
    }
    let user = opts
        .user
        .as_deref()
        .map(|u| resolve_user(root, u))
        .transpose()?;
    let mut env = env.to_vec();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!(
            "HOME={}",
            user.as_ref().map(|u| u.2.as_str()).unwrap_or("/root")
        ));
    }
    // The overlay: upper and work dirs beside the merged view, all thrown away.
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    let (top, overlay_opts): (PathBuf, Option<CString>) = if opts.overlay {
        for d in ["upper", "work", "merged"] {
            std::fs::create_dir(scratch.path().join(d))?;
        }
        let lower = std::path::absolute(root)?;
        for p in [&lower, &scratch.path().to_path_buf()] {
            if p.to_string_lossy().contains([',', ':', '\\']) {
                return Err(NoOverlay.into());
            }
        }
        let o = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            scratch.path().join("upper").display(),
            scratch.path().join("work").display()
        );
        (scratch.path().join("merged"), Some(cstr(o)?))
    } else {
        for d in ["proc", "dev"] {
            let p = root.join(d);
            if !p.exists() {
                std::fs::create_dir(&p)
                    .with_context(|| format!("{}: cannot create", p.display()))?;
            }
        }
        (root.to_path_buf(), None)
    };
    // Everything the children need is allocated before fork: after it only
    // async-signal-safe calls are made.
    let top_c = cstr(top.as_os_str().as_bytes())?;
    let proc_c = cstr(top.join("proc").as_os_str().as_bytes())?;
    let dev_c = cstr(top.join("dev").as_os_str().as_bytes())?;
    let devs: Vec<(CString, libc::dev_t)> = DEVICES
        .iter()
        .map(|(n, ma, mi)| {
            Ok((
                cstr(top.join("dev").join(n).as_os_str().as_bytes())?,
                libc::makedev(*ma, *mi),
            ))
        })
        .collect::<Result<_>>()?;
    let args: Vec<CString> = argv.iter().map(cstr).collect::<Result<_>>()?;
    let envs: Vec<CString> = env.iter().map(cstr).collect::<Result<_>>()?;
    let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    arg_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const libc::c_char> = envs.iter().map(|a| a.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    let fail = c"elfpack --test: cannot set up the isolated root\n";
    let exec_fail = c"elfpack --test: cannot execute the entrypoint in the root\n";
    let user_fail = c"elfpack --test: cannot switch to the test user\n";
    // The first child says through this pipe that the overlay failed.
    let mut pipe = [0 as libc::c_int; 2];
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }

    // SAFETY: elfpack is single-threaded here; the children only make raw
    // system calls on memory prepared above, then exec or _exit.
    let code = unsafe {
        let pid = libc::fork();
        if pid < 0 {
            bail!("fork: {}", std::io::Error::last_os_error());
        }
        if pid == 0 {
            libc::close(pipe[0]);
            let flags =
                libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
            if libc::unshare(flags) != 0
                || libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
            {
                libc::write(2, fail.as_ptr().cast(), fail.count_bytes());
                libc::_exit(125);
            }
            if let Some(o) = &overlay_opts {
                if libc::mount(
                    c"overlay".as_ptr(),
                    top_c.as_ptr(),
                    c"overlay".as_ptr(),
                    0,
                    o.as_ptr().cast(),
                ) != 0
                {
                    libc::write(pipe[1], c"o".as_ptr().cast(), 1);
                    libc::_exit(125);
                }
                // Mount points for /proc and /dev, in the upper layer.
                libc::mkdir(proc_c.as_ptr(), 0o755);
                libc::mkdir(dev_c.as_ptr(), 0o755);
            }
            let init = libc::fork();
            if init == 0 {
                let ok = libc::mount(
                    c"proc".as_ptr(),
                    proc_c.as_ptr(),
                    c"proc".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    std::ptr::null(),
                ) == 0
                    && libc::mount(
                        c"tmpfs".as_ptr(),
                        dev_c.as_ptr(),
                        c"tmpfs".as_ptr(),
                        libc::MS_NOSUID,
                        c"mode=755".as_ptr().cast(),
                    ) == 0
                    && devs.iter().all(|(p, d)| {
                        libc::mknod(p.as_ptr(), libc::S_IFCHR | 0o666, *d) == 0
                            && libc::chmod(p.as_ptr(), 0o666) == 0
                    })
                    && libc::sethostname(c"elfpack-test".as_ptr(), 12) == 0
                    && libc::chroot(top_c.as_ptr()) == 0
                    && libc::chdir(c"/".as_ptr()) == 0;
                if !ok {
                    libc::write(2, fail.as_ptr().cast(), fail.count_bytes());
                    libc::_exit(125);
                }
                if let Some((uid, gid, _)) = &user
                    && (libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(*gid) != 0
                        || libc::setuid(*uid) != 0)
                {
                    libc::write(2, user_fail.as_ptr().cast(), user_fail.count_bytes());
                    libc::_exit(125);
                }
                libc::execve(arg_ptrs[0], arg_ptrs.as_ptr(), env_ptrs.as_ptr());
                libc::write(2, exec_fail.as_ptr().cast(), exec_fail.count_bytes());
                libc::_exit(127);
            }
            libc::_exit(wait_code(init));
        }
        libc::close(pipe[1]);
        let code = wait_code(pid);
        let mut b = [0u8; 1];
        let n = libc::read(pipe[0], b.as_mut_ptr().cast(), 1);
        libc::close(pipe[0]);
        if n == 1 {
            return Err(NoOverlay.into());
        }
        code
    };
    drop(scratch);
    Ok(code)
}

/// Waits for `pid`; its exit code, or 128 + the signal that killed it.
unsafe fn wait_code(pid: libc::pid_t) -> i32 {
    if pid < 0 {
        return 125;
    }
    let mut status = 0;
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 125;
        }
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}
