//! `--test`: run a packed tree the way a container runtime runs a
//! `FROM scratch` image — new mount, PID, UTS and IPC namespaces, /proc and a
//! tmpfs /dev with the standard nodes, nothing else added (no shell, no
//! busybox) — so a missing file shows up before the image ships.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

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
pub fn run(root: &Path, argv: &[String], env: &[String]) -> Result<i32> {
    if argv.is_empty() {
        bail!("--test: no entrypoint to run");
    }
    if unsafe { libc::geteuid() } != 0 {
        bail!("--test needs root (it creates namespaces, mounts /proc and makes device nodes)");
    }
    for d in ["proc", "dev"] {
        let p = root.join(d);
        if !p.exists() {
            std::fs::create_dir(&p).with_context(|| format!("{}: cannot create", p.display()))?;
        }
    }
    // Everything the children need is allocated before fork: after it only
    // async-signal-safe calls are made.
    let root_c = cstr(root.as_os_str().as_bytes())?;
    let proc_c = cstr(root.join("proc").as_os_str().as_bytes())?;
    let dev_c = cstr(root.join("dev").as_os_str().as_bytes())?;
    let devs: Vec<(CString, libc::dev_t)> = DEVICES
        .iter()
        .map(|(n, ma, mi)| {
            Ok((
                cstr(root.join("dev").join(n).as_os_str().as_bytes())?,
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

    // SAFETY: elfpack is single-threaded here; the children only make raw
    // system calls on memory prepared above, then exec or _exit.
    unsafe {
        let pid = libc::fork();
        if pid < 0 {
            bail!("fork: {}", std::io::Error::last_os_error());
        }
        if pid == 0 {
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
                    && libc::chroot(root_c.as_ptr()) == 0
                    && libc::chdir(c"/".as_ptr()) == 0;
                if !ok {
                    libc::write(2, fail.as_ptr().cast(), fail.count_bytes());
                    libc::_exit(125);
                }
                libc::execve(arg_ptrs[0], arg_ptrs.as_ptr(), env_ptrs.as_ptr());
                libc::write(2, exec_fail.as_ptr().cast(), exec_fail.count_bytes());
                libc::_exit(127);
            }
            libc::_exit(wait_code(init));
        }
        Ok(wait_code(pid))
    }
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
