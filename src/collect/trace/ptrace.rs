//! The ptrace loop: runs one command, follows every process and thread it
//! creates, and records the paths that file-name syscalls succeed on.
//!
//! x86_64 only (syscall numbers and the `PTRACE_GET_SYSCALL_INFO` layout);
//! syscalls made through the 32-bit ABI are not looked at.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};

/// What a successful syscall says about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum What {
    /// Opened for reading (open, openat, openat2).
    Read,
    /// Looked at without opening (stat family, access, readlink).
    Stat,
    /// Run (execve, execveat).
    Exec,
    /// Created or written (O_CREAT/O_WRONLY/O_RDWR/O_TRUNC opens, creat,
    /// mkdir, rename/link/symlink targets, truncate): not shipped (the
    /// directory it happened in is, see `super::write_dirs`).
    Write,
}

/// One successful access.
#[derive(Debug, Clone)]
pub struct Access {
    /// Absolute, as the program named it (joined to its cwd or dirfd; symlinks
    /// and `..` kept, so shipping it recreates what the program walked).
    pub path: PathBuf,
    pub what: What,
    pub syscall: &'static str,
    pub pid: i32,
    /// The program the process was running (its last execve).
    pub program: PathBuf,
}

/// How the traced command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Signaled(i32),
    TimedOut,
}

#[derive(Debug)]
pub struct Run {
    pub accesses: Vec<Access>,
    pub outcome: Outcome,
    /// Wall-clock time just before the command started.
    pub started: SystemTime,
    pub processes: usize,
    /// Processes still running when the first one ended (killed then).
    pub leftovers: usize,
    /// The command's output (stdout and stderr interleaved).
    pub output: Vec<u8>,
}

pub struct TraceCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub stdin: Option<PathBuf>,
    pub timeout: Duration,
    /// Run as this user instead of elfpack's (`--trace-user`).
    pub user: Option<super::RunAs>,
}

const AT_FDCWD: i32 = -100;
const AT_EMPTY_PATH: u64 = 0x1000;
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
const PATH_MAX: usize = 4096;

/// What a syscall entry wants recorded if the syscall succeeds.
struct Pending {
    path: PathBuf,
    what: What,
    syscall: &'static str,
}

struct Tracee {
    pending: Option<Pending>,
    program: PathBuf,
    /// Created by fork/clone and not yet past its initial SIGSTOP.
    fresh: bool,
}

/// Runs `cmd` under ptrace until its first process ends (or the timeout).
pub fn run(cmd: &TraceCommand) -> Result<Run> {
    let out = tempfile::tempfile().context("cannot create a temporary file for the output")?;
    let stdin = match &cmd.stdin {
        Some(f) => Stdio::from(
            std::fs::File::open(f).with_context(|| format!("{}: cannot open", f.display()))?,
        ),
        None => Stdio::null(),
    };
    let mut command = Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .stdin(stdin)
        .stdout(out.try_clone()?)
        .stderr(out.try_clone()?);
    let user = cmd.user.clone();
    if let Some(u) = &user {
        if unsafe { libc::geteuid() } != 0 {
            bail!(
                "--trace-user needs root (elfpack switches to the user before running the program)"
            );
        }
        if let Some(name) = &u.name {
            command.env("USER", name).env("LOGNAME", name);
        }
        if let Some(home) = &u.home {
            command.env("HOME", home);
        }
    }
    // SAFETY: only async-signal-safe calls between fork and exec (`user`
    // was built before the fork).
    unsafe {
        command.pre_exec(move || {
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // Its own process group, so a timeout can kill everything it started.
            libc::setpgid(0, 0);
            if let Some(u) = &user
                && (libc::setgroups(u.groups.len(), u.groups.as_ptr()) != 0
                    || libc::setgid(u.gid) != 0
                    || libc::setuid(u.uid) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = SystemTime::now();
    let child = command
        .spawn()
        .with_context(|| format!("{}: cannot run it to trace it", cmd.program.display()))?;
    let root = child.id() as i32;
    drop(child);

    let mut status = 0;
    // The exec of the command stops it with SIGTRAP (PTRACE_TRACEME).
    if unsafe { libc::waitpid(root, &mut status, libc::__WALL) } != root
        || !libc::WIFSTOPPED(status)
    {
        bail!(
            "{}: did not stop under ptrace (is ptrace allowed here?)",
            cmd.program.display()
        );
    }
    let options = libc::PTRACE_O_TRACESYSGOOD
        | libc::PTRACE_O_TRACEFORK
        | libc::PTRACE_O_TRACEVFORK
        | libc::PTRACE_O_TRACECLONE
        | libc::PTRACE_O_TRACEEXEC
        | libc::PTRACE_O_EXITKILL;
    if unsafe { libc::ptrace(libc::PTRACE_SETOPTIONS, root, 0, options as libc::c_long) } == -1 {
        let e = std::io::Error::last_os_error();
        unsafe { libc::kill(root, libc::SIGKILL) };
        bail!("ptrace(PTRACE_SETOPTIONS): {e}");
    }

    let live: Arc<Mutex<HashSet<i32>>> = Arc::new(Mutex::new(HashSet::from([root])));
    let timed_out = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = {
        let live = live.clone();
        let timed_out = timed_out.clone();
        let timeout = cmd.timeout;
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(timeout) {
                timed_out.store(true, Ordering::SeqCst);
                unsafe { libc::kill(-root, libc::SIGKILL) };
                for &p in live.lock().unwrap().iter() {
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            }
        })
    };

    let mut tracees: HashMap<i32, Tracee> = HashMap::new();
    tracees.insert(
        root,
        Tracee {
            pending: None,
            program: cmd.program.clone(),
            fresh: false,
        },
    );
    let mut accesses = vec![Access {
        path: cmd.program.clone(),
        what: What::Exec,
        syscall: "execve",
        pid: root,
        program: cmd.program.clone(),
    }];
    let mut processes = 1;
    let mut leftovers = 0;
    let mut root_status = None;
    restart(root, 0);

    loop {
        let tid = unsafe { libc::waitpid(-1, &mut status, libc::__WALL) };
        if tid == -1 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                _ => break, // ECHILD: nothing left to wait for
            }
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            tracees.remove(&tid);
            live.lock().unwrap().remove(&tid);
            if tid == root {
                root_status = Some(status);
                // Whatever it left running is killed: the run is over.
                let rest: Vec<i32> = live.lock().unwrap().iter().copied().collect();
                leftovers = rest.len();
                for p in rest {
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            }
            continue;
        }
        if !libc::WIFSTOPPED(status) {
            continue;
        }
        let sig = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xff;
        // A new process or thread: its first stop is a SIGSTOP, which may be
        // seen before or after its creator's event stop; it is not passed on.
        let t = tracees.entry(tid).or_insert_with(|| {
            processes += 1;
            live.lock().unwrap().insert(tid);
            Tracee {
                pending: None,
                program: PathBuf::new(),
                fresh: true,
            }
        });
        if t.fresh && sig == libc::SIGSTOP && event == 0 {
            t.fresh = false;
            restart(tid, 0);
            continue;
        }
        if sig == libc::SIGTRAP | 0x80 {
            on_syscall(tid, &mut tracees, &mut accesses);
            restart(tid, 0);
        } else if event != 0 {
            let mut msg: libc::c_ulong = 0;
            unsafe { libc::ptrace(libc::PTRACE_GETEVENTMSG, tid, 0, &mut msg) };
            match event {
                libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                    let parent_prog = tracees[&tid].program.clone();
                    let new = msg as i32;
                    let t = tracees.entry(new).or_insert_with(|| {
                        processes += 1;
                        Tracee {
                            pending: None,
                            program: PathBuf::new(),
                            fresh: true,
                        }
                    });
                    t.program = parent_prog;
                    live.lock().unwrap().insert(new);
                }
                libc::PTRACE_EVENT_EXEC => {
                    // A non-leader thread that execs takes over the leader's id.
                    let former = msg as i32;
                    if former != tid
                        && let Some(t) = tracees.remove(&former)
                    {
                        live.lock().unwrap().remove(&former);
                        tracees.insert(tid, t);
                    }
                }
                _ => {}
            }
            restart(tid, 0);
        } else {
            // A signal for the tracee (pass it on) or a group-stop (which
            // GETSIGINFO refuses; resume as if it had not happened).
            let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
            if unsafe { libc::ptrace(libc::PTRACE_GETSIGINFO, tid, 0, &mut si) } == -1 {
                restart(tid, 0);
            } else {
                restart(tid, sig);
            }
        }
    }
    let _ = done_tx.send(());
    let _ = watchdog.join();

    let outcome = if timed_out.load(Ordering::SeqCst) {
        Outcome::TimedOut
    } else {
        match root_status {
            Some(s) if libc::WIFEXITED(s) => Outcome::Exited(libc::WEXITSTATUS(s)),
            Some(s) => Outcome::Signaled(libc::WTERMSIG(s)),
            None => Outcome::Signaled(libc::SIGKILL),
        }
    };
    let output = {
        use std::io::{Read, Seek};
        let mut f = out;
        let mut v = Vec::new();
        f.seek(std::io::SeekFrom::Start(0))?;
        f.read_to_end(&mut v)?;
        v
    };
    Ok(Run {
        accesses,
        outcome,
        started,
        processes,
        leftovers,
        output,
    })
}

fn restart(tid: i32, sig: i32) {
    unsafe { libc::ptrace(libc::PTRACE_SYSCALL, tid, 0, sig as libc::c_long) };
}

/// Handles a syscall-entry or -exit stop of `tid`.
fn on_syscall(tid: i32, tracees: &mut HashMap<i32, Tracee>, accesses: &mut Vec<Access>) {
    // struct ptrace_syscall_info: op (u8) @0, arch (u32) @4, union @24:
    // entry {nr, args[6]}, exit {rval (s64), is_error (u8)}.
    let mut buf = [0u64; 12];
    let n = unsafe {
        libc::ptrace(
            libc::PTRACE_GET_SYSCALL_INFO,
            tid,
            std::mem::size_of_val(&buf),
            buf.as_mut_ptr(),
        )
    };
    if n <= 0 {
        return;
    }
    let op = (buf[0] & 0xff) as u8;
    let arch = (buf[0] >> 32) as u32;
    let Some(t) = tracees.get_mut(&tid) else {
        return;
    };
    match op {
        libc::PTRACE_SYSCALL_INFO_ENTRY => {
            t.pending = if arch == AUDIT_ARCH_X86_64 {
                let args: [u64; 6] = buf[4..10].try_into().unwrap();
                on_entry(tid, buf[3], &args)
            } else {
                None
            };
        }
        libc::PTRACE_SYSCALL_INFO_EXIT => {
            let ok = (buf[4] & 0xff) == 0 && (buf[3] as i64) >= 0;
            if let Some(p) = t.pending.take()
                && ok
            {
                if p.what == What::Exec {
                    t.program = p.path.clone();
                }
                accesses.push(Access {
                    path: p.path,
                    what: p.what,
                    syscall: p.syscall,
                    pid: tid,
                    program: t.program.clone(),
                });
            }
        }
        _ => {}
    }
}

/// For a syscall that names a path: the path (made absolute) and what
/// success would mean.
fn on_entry(tid: i32, nr: u64, a: &[u64; 6]) -> Option<Pending> {
    let opened = |flags: u64| {
        let w = (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC) as u64;
        if flags & w != 0 {
            What::Write
        } else {
            What::Read
        }
    };
    let fd = |x: u64| x as u32 as i32;
    let (syscall, dirfd, addr, what): (&'static str, i32, u64, What) = match nr as i64 {
        libc::SYS_open => ("open", AT_FDCWD, a[0], opened(a[1])),
        libc::SYS_creat => ("creat", AT_FDCWD, a[0], What::Write),
        libc::SYS_openat => ("openat", fd(a[0]), a[1], opened(a[2])),
        libc::SYS_openat2 => {
            // struct open_how starts with the u64 flags.
            let mut flags = [0u8; 8];
            if !read_mem(tid, a[2], &mut flags) {
                return None;
            }
            ("openat2", fd(a[0]), a[1], opened(u64::from_ne_bytes(flags)))
        }
        libc::SYS_stat => ("stat", AT_FDCWD, a[0], What::Stat),
        libc::SYS_lstat => ("lstat", AT_FDCWD, a[0], What::Stat),
        libc::SYS_newfstatat => ("newfstatat", fd(a[0]), a[1], What::Stat),
        libc::SYS_statx => ("statx", fd(a[0]), a[1], What::Stat),
        libc::SYS_access => ("access", AT_FDCWD, a[0], What::Stat),
        libc::SYS_faccessat => ("faccessat", fd(a[0]), a[1], What::Stat),
        libc::SYS_faccessat2 => ("faccessat2", fd(a[0]), a[1], What::Stat),
        libc::SYS_readlink => ("readlink", AT_FDCWD, a[0], What::Stat),
        libc::SYS_readlinkat => ("readlinkat", fd(a[0]), a[1], What::Stat),
        libc::SYS_execve => ("execve", AT_FDCWD, a[0], What::Exec),
        libc::SYS_execveat if a[4] & AT_EMPTY_PATH == 0 => ("execveat", fd(a[0]), a[1], What::Exec),
        libc::SYS_truncate => ("truncate", AT_FDCWD, a[0], What::Write),
        libc::SYS_rename => ("rename", AT_FDCWD, a[1], What::Write),
        libc::SYS_renameat | libc::SYS_renameat2 => ("renameat", fd(a[2]), a[3], What::Write),
        libc::SYS_link => ("link", AT_FDCWD, a[1], What::Write),
        libc::SYS_linkat => ("linkat", fd(a[2]), a[3], What::Write),
        libc::SYS_symlink => ("symlink", AT_FDCWD, a[1], What::Write),
        libc::SYS_symlinkat => ("symlinkat", fd(a[1]), a[2], What::Write),
        libc::SYS_mknod => ("mknod", AT_FDCWD, a[0], What::Write),
        libc::SYS_mknodat => ("mknodat", fd(a[0]), a[1], What::Write),
        libc::SYS_mkdir => ("mkdir", AT_FDCWD, a[0], What::Write),
        libc::SYS_mkdirat => ("mkdirat", fd(a[0]), a[1], What::Write),
        _ => return None,
    };
    let raw = read_cstr(tid, addr)?;
    if raw.is_empty() {
        // AT_EMPTY_PATH: the call is about the fd, which was counted when opened.
        return None;
    }
    let path = absolute(tid, dirfd, OsStr::from_bytes(&raw))?;
    Some(Pending {
        path,
        what,
        syscall,
    })
}

/// `path` as the kernel would start resolving it in `tid`: against its cwd
/// or the directory `dirfd` refers to.
fn absolute(tid: i32, dirfd: i32, path: &OsStr) -> Option<PathBuf> {
    let p = Path::new(path);
    if p.is_absolute() {
        return Some(p.to_path_buf());
    }
    let base = if dirfd == AT_FDCWD {
        std::fs::read_link(format!("/proc/{tid}/cwd")).ok()?
    } else {
        std::fs::read_link(format!("/proc/{tid}/fd/{dirfd}")).ok()?
    };
    if !base.is_absolute() {
        return None; // e.g. "pipe:[123]", or a deleted directory
    }
    Some(base.join(p))
}

fn read_mem(tid: i32, addr: u64, buf: &mut [u8]) -> bool {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let n = unsafe { libc::process_vm_readv(tid, &local, 1, &remote, 1, 0) };
    n == buf.len() as isize
}

/// Reads a NUL-terminated string of at most PATH_MAX bytes from the tracee,
/// a page at a time (a string may end just before an unmapped page).
fn read_cstr(tid: i32, addr: u64) -> Option<Vec<u8>> {
    if addr == 0 {
        return None;
    }
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < PATH_MAX {
        let chunk = (4096 - (at % 4096)) as usize;
        let mut buf = vec![0u8; chunk.min(PATH_MAX - out.len()).max(1)];
        if !read_mem(tid, at, &mut buf) {
            return None;
        }
        if let Some(end) = buf.iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Some(out);
        }
        at += buf.len() as u64;
        out.extend_from_slice(&buf);
    }
    None
}
