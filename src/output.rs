//! Writing the user's outputs safely. Every output elfpack makes (trees,
//! archives, single files, edited ELF files) reaches its final path only when
//! complete, so a failure never leaves a half-written file where the user
//! expects a good one. Shared by the ELF editor and every emitter, so it
//! belongs to no pipeline stage, and every rule about output paths lives here
//! once:
//! - paths are made absolute first, so replacing the current directory (or an
//!   ancestor of it) cannot make a relative path point elsewhere half-way;
//! - missing parent directories are created (for every output alike), and
//!   removed again when the output is not written;
//! - an existing symlink is written through (like a shell redirect, `cp` and
//!   patchelf); a pipe is written into; devices and sockets are refused;
//! - an output never replaces a tree or file that holds one of the inputs;
//! - temporaries are named `.NAME.elfpack-PID-XXXXXX` beside the output: they
//!   are removed on SIGINT/SIGTERM, and those of dead processes (a SIGKILL)
//!   are removed by the next run that writes into the same directory;
//! - files get the modes the umask allows, like any other program's output.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, Once};

use anyhow::{Context, Result, bail};

/// Writes a file through `fill` into a temporary file beside `out`, renamed
/// over `out` only once complete: a failure never leaves a partial output.
/// The file's mode is 0666 less the umask unless `fill` sets one.
pub fn atomic_write(
    out: &Path,
    force: bool,
    fill: impl FnOnce(&mut fs::File) -> Result<()>,
) -> Result<()> {
    let path = match file_target(out, force)? {
        Target::Pipe(p) => {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .with_context(|| format!("{}: cannot open the pipe", out.display()))?;
            return fill(&mut f).with_context(|| format!("{}: cannot write", out.display()));
        }
        Target::File(p) => p,
    };
    let (dir, name) = split(&path)?;
    let parents = Parents::ensure(&dir, out)?;
    remove_stale(&dir);
    // Registered before it exists: a signal between creating the temporary
    // and registering it would otherwise leave it behind.
    let _temps = Registered::new(&dir.join(temp_prefix(&name, false)), Cleanup::Temps);
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(&name, false))
        .tempfile_in(&dir)
        .with_context(|| format!("{}: cannot create a temporary file", dir.display()))?;
    let _reg = Registered::new(tmp.path(), Cleanup::File);
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(default_mode(0o666)))?;
    fill(tmp.as_file_mut()).with_context(|| format!("{}: cannot write", out.display()))?;
    tmp.as_file().sync_all().ok();
    tmp.persist(&path)
        .with_context(|| format!("{}: cannot rename into place", out.display()))?;
    parents.keep();
    Ok(())
}

/// Writes a directory tree through `fill` (given an empty private directory)
/// and puts it at `dir` only once complete. An existing non-empty `dir` is
/// replaced only with `force`, swapped atomically where the file system can.
pub fn replace_dir(dir: &Path, force: bool, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let existing = check_dir_output(dir, force)?;
    let abs = absolute(dir)?;
    let (parent, name) = split(&abs)?;
    let parents = Parents::ensure(&parent, dir)?;
    remove_stale(&parent);
    // Registered before it exists (see `atomic_write`).
    let _temps = Registered::new(&parent.join(temp_prefix(&name, false)), Cleanup::Temps);
    let tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(&name, false))
        .tempdir_in(&parent)
        .with_context(|| format!("{}: cannot create a temporary directory", parent.display()))?;
    let _reg = Registered::new(tmp.path(), Cleanup::Tree);
    fill(tmp.path())?;
    let target = parent.join(&name);
    match existing {
        DirState::Missing | DirState::Empty => {
            // rename(2) replaces an empty directory.
            fs::rename(tmp.path(), &target)
                .with_context(|| format!("{}: cannot rename into place", dir.display()))?;
            let _ = tmp.keep();
        }
        DirState::Full => {
            // Swap both trees in one step, so `dir` is never missing; the
            // old tree is then at the temporary name and goes with it.
            if exchange(tmp.path(), &target).is_ok() {
                make_writable(tmp.path());
            } else {
                let old = tempfile::Builder::new()
                    .prefix(&temp_prefix(&name, true))
                    .tempdir_in(&parent)?;
                let _old_reg = Registered::new(old.path(), Cleanup::Tree);
                fs::rename(&target, old.path().join("x"))
                    .with_context(|| format!("{}: cannot move aside", dir.display()))?;
                fs::rename(tmp.path(), &target)
                    .with_context(|| format!("{}: cannot rename into place", dir.display()))?;
                let _ = tmp.keep();
            }
        }
    }
    parents.keep();
    Ok(())
}

/// What is at a directory output's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirState {
    Missing,
    Empty,
    Full,
}

/// Checks a directory output before anything is done: not a file, device or
/// symlink, and not a non-empty directory unless `force`.
pub fn check_dir_output(dir: &Path, force: bool) -> Result<DirState> {
    if dir.as_os_str().is_empty() {
        bail!("an output path is empty");
    }
    let state = match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            let empty = fs::read_dir(dir)
                .with_context(|| format!("{}: cannot list", dir.display()))?
                .next()
                .is_none();
            if empty {
                DirState::Empty
            } else {
                DirState::Full
            }
        }
        Ok(m) => bail!(
            "{}: exists and is {}, not a directory",
            dir.display(),
            kind_of(&m)
        ),
        Err(_) => DirState::Missing,
    };
    if state == DirState::Full && !force {
        bail!(
            "{}: exists and is not empty (use --force to replace it)",
            dir.display()
        );
    }
    check_parent(dir)?;
    Ok(state)
}

/// Checks a file output before anything is done (see [`atomic_write`]).
pub fn check_file_output(out: &Path, force: bool) -> Result<()> {
    match file_target(out, force)? {
        Target::File(p) => check_parent(&p),
        Target::Pipe(_) => Ok(()),
    }
}

/// True when `out` is (or points to) a pipe, which is written into directly.
pub fn is_pipe(out: &Path) -> bool {
    fs::metadata(out).is_ok_and(|m| m.file_type().is_fifo())
}

/// Refuses an output that is, or holds, one of `inputs`: replacing it would
/// destroy what is being packed.
pub fn refuse_inputs_inside<'a>(
    out: &Path,
    inputs: impl IntoIterator<Item = &'a Path>,
) -> Result<()> {
    let Ok(o) = fs::canonicalize(out) else {
        return Ok(()); // nothing there yet, so nothing in it
    };
    let is_dir = o.is_dir();
    for input in inputs {
        let Ok(i) = fs::canonicalize(input) else {
            continue;
        };
        if i == o {
            bail!(
                "{}: is {}, one of the inputs; choose another output",
                out.display(),
                input.display()
            );
        }
        if is_dir && i.starts_with(&o) {
            bail!(
                "{}: holds {}, one of the inputs, and replacing it would delete it; choose another output",
                out.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// `max` less the process's umask: the mode a newly created output gets.
pub fn default_mode(max: u32) -> u32 {
    max & !umask()
}

fn umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        // /proc tells without changing it (umask(2) can only set it).
        fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            .unwrap_or(0o022)
    })
}

/// Where a file output goes.
enum Target {
    /// A regular file (to create, or to replace), symlinks resolved.
    File(PathBuf),
    /// A pipe, written into.
    Pipe(PathBuf),
}

fn file_target(out: &Path, force: bool) -> Result<Target> {
    if out.as_os_str().is_empty() {
        bail!("an output path is empty");
    }
    let lmeta = match fs::symlink_metadata(out) {
        Err(_) => return Ok(Target::File(absolute(out)?)),
        Ok(m) => m,
    };
    let meta = if lmeta.file_type().is_symlink() {
        fs::metadata(out).with_context(|| {
            format!(
                "{}: a symlink that points nowhere (elfpack writes where a symlink points)",
                out.display()
            )
        })?
    } else {
        lmeta
    };
    let ft = meta.file_type();
    if ft.is_fifo() {
        return Ok(Target::Pipe(out.to_path_buf()));
    }
    if !meta.is_file() {
        bail!(
            "{}: is {}; elfpack writes only regular files (or into a pipe)",
            out.display(),
            kind_of(&meta)
        );
    }
    if !force {
        bail!("{}: exists (use --force to replace it)", out.display());
    }
    let path = fs::canonicalize(out)
        .with_context(|| format!("{}: cannot resolve the path", out.display()))?;
    Ok(Target::File(path))
}

fn kind_of(m: &fs::Metadata) -> &'static str {
    let ft = m.file_type();
    if ft.is_dir() {
        "a directory"
    } else if ft.is_symlink() {
        "a symlink"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_fifo() {
        "a pipe"
    } else {
        "a file"
    }
}

/// The path made absolute against the current directory, without `.` parts;
/// a last part `.` or `..` is resolved, since an output needs a name.
fn absolute(p: &Path) -> Result<PathBuf> {
    let abs = std::path::absolute(p)
        .with_context(|| format!("{}: cannot make it absolute", p.display()))?;
    match abs.components().next_back() {
        Some(Component::Normal(_)) => Ok(abs),
        _ => fs::canonicalize(&abs).with_context(|| format!("{}: cannot resolve", p.display())),
    }
}

fn split(p: &Path) -> Result<(PathBuf, std::ffi::OsString)> {
    match (p.parent(), p.file_name()) {
        (Some(d), Some(n)) => Ok((d.to_path_buf(), n.to_owned())),
        _ => bail!("{}: not a file or directory name", p.display()),
    }
}

/// Refuses a parent path that exists but is not a directory; a missing one
/// will be created.
fn check_parent(out: &Path) -> Result<()> {
    let abs = absolute(out)?;
    let mut d = abs.parent();
    while let Some(dir) = d {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => bail!(
                "{}: cannot be created: {} is not a directory",
                out.display(),
                dir.display()
            ),
            Err(_) => d = dir.parent(),
        }
    }
    Ok(())
}

/// The parent directories an output needed that did not exist: created
/// when the output is written, removed again if it is not.
struct Parents {
    created: Vec<PathBuf>,
    _regs: Vec<Registered>,
}

impl Parents {
    fn ensure(dir: &Path, out: &Path) -> Result<Parents> {
        let mut missing = Vec::new();
        let mut d = Some(dir);
        while let Some(p) = d {
            match fs::metadata(p) {
                Ok(m) if m.is_dir() => break,
                Ok(_) => bail!(
                    "{}: cannot be created: {} is not a directory",
                    out.display(),
                    p.display()
                ),
                Err(_) => {
                    missing.push(p.to_path_buf());
                    d = p.parent();
                }
            }
        }
        let mut parents = Parents {
            created: Vec::new(),
            _regs: Vec::new(),
        };
        for p in missing.into_iter().rev() {
            fs::create_dir(&p).with_context(|| {
                format!(
                    "{}: cannot create its directory {}",
                    out.display(),
                    p.display()
                )
            })?;
            parents._regs.push(Registered::new(&p, Cleanup::EmptyDir));
            parents.created.push(p);
        }
        Ok(parents)
    }

    fn keep(mut self) {
        self.created.clear();
    }
}

impl Drop for Parents {
    fn drop(&mut self) {
        for p in self.created.iter().rev() {
            let _ = fs::remove_dir(p);
        }
    }
}

/// `renameat2(RENAME_EXCHANGE)`: swaps two paths atomically.
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let ca = std::ffi::CString::new(a.as_os_str().as_bytes())?;
    let cb = std::ffi::CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: two valid NUL-terminated paths.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

// ---- temporaries: names, signals, stale ones --------------------------------

/// `.NAME.elfpack-PID-` (or `.NAME.elfpack-old-PID-` for a tree moved
/// aside): the PID tells a later run whether its writer is gone.
fn temp_prefix(name: &std::ffi::OsStr, old: bool) -> String {
    format!(
        ".{}.elfpack-{}{}-",
        name.to_string_lossy(),
        if old { "old-" } else { "" },
        std::process::id()
    )
}

/// The PID in a temporary's name made by [`temp_prefix`].
fn temp_pid(name: &str) -> Option<i32> {
    if !name.starts_with('.') {
        return None;
    }
    let at = name.rfind(".elfpack-")?;
    let rest = &name[at + ".elfpack-".len()..];
    let rest = rest.strip_prefix("old-").unwrap_or(rest);
    let (pid, suffix) = rest.split_once('-')?;
    if suffix.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Removes the temporaries in `dir` left by elfpack runs that were killed
/// (their PID is gone) and that belong to this user.
fn remove_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = temp_pid(&name.to_string_lossy()) else {
            continue;
        };
        // SAFETY: signal 0 only checks that the process exists.
        let gone = unsafe { libc::kill(pid, 0) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        let Ok(m) = e.path().symlink_metadata() else {
            continue;
        };
        if !gone || m.uid() != uid || pid as u32 == std::process::id() {
            continue;
        }
        let _ = if m.is_dir() {
            make_writable(&e.path());
            fs::remove_dir_all(e.path())
        } else {
            fs::remove_file(e.path())
        };
    }
}

/// Removes a tree a writer may still be adding files to (it stops at the
/// next file, see [`stopping`]).
fn remove_tree_retrying(p: &Path) {
    for _ in 0..20 {
        make_writable(p);
        if fs::remove_dir_all(p).is_ok() || !p.exists() {
            break;
        }
    }
}

/// The entries of `prefix`'s directory whose names start with its file name.
fn remove_temps(prefix: &Path) {
    let (Some(dir), Some(start)) = (prefix.parent(), prefix.file_name()) else {
        return;
    };
    let start = start.as_encoded_bytes();
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if !e.file_name().as_encoded_bytes().starts_with(start) {
            continue;
        }
        let p = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree_retrying(&p);
        } else {
            let _ = fs::remove_file(&p);
        }
    }
}

/// Trees hold read-only directories (modes are set last, but a kill can come
/// after): make them writable so they can be removed.
fn make_writable(dir: &Path) {
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                make_writable(&e.path());
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Cleanup {
    File,
    Tree,
    EmptyDir,
    /// Every entry of the path's directory whose name starts with the
    /// path's file name (this process's temporaries of one output).
    Temps,
}

/// Set once SIGINT/SIGTERM arrived: writers stop creating files, so the
/// handler's removal of their temporaries is not raced by new ones.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the process was told to stop: a writer that loops over many
/// files checks it before each one.
pub fn stopping() -> bool {
    STOPPING.load(std::sync::atomic::Ordering::SeqCst)
}

/// What to remove if the process is told to stop, newest last.
static PENDING: Mutex<Vec<(PathBuf, Cleanup)>> = Mutex::new(Vec::new());

/// A path removed on SIGINT/SIGTERM while this lives.
struct Registered(PathBuf);

impl Registered {
    fn new(p: &Path, how: Cleanup) -> Registered {
        static HANDLER: Once = Once::new();
        HANDLER.call_once(install_handler);
        PENDING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((p.to_path_buf(), how));
        Registered(p.to_path_buf())
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut v = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = v.iter().rposition(|(p, _)| *p == self.0) {
            v.remove(i);
        }
    }
}

/// A thread that waits for SIGINT/SIGTERM, removes the pending temporaries
/// and then dies of the signal as it would have without elfpack's handler.
fn install_handler() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            // Held to the end: nothing registers a new temporary, and a
            // writer that gives up blocks in its cleanup until we exit.
            let pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
            STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
            // Let a writer finish the file it is on and see the flag.
            std::thread::sleep(std::time::Duration::from_millis(100));
            for (p, how) in pending.iter().rev() {
                match how {
                    Cleanup::File => {
                        let _ = fs::remove_file(p);
                    }
                    Cleanup::EmptyDir => {
                        let _ = fs::remove_dir(p);
                    }
                    Cleanup::Temps => remove_temps(p),
                    Cleanup::Tree => remove_tree_retrying(p),
                }
            }
            let _ = signal_hook::low_level::emulate_default_handler(sig);
            std::process::exit(128 + sig);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_carry_their_pid() {
        let n = temp_prefix(std::ffi::OsStr::new("root"), false) + "AbC123";
        assert_eq!(temp_pid(&n), Some(std::process::id() as i32));
        assert_eq!(temp_pid(".x.elfpack-old-42-zzzzzz"), Some(42));
        assert_eq!(temp_pid(".x.elfpack-abc"), None);
        assert_eq!(temp_pid("x.elfpack-42-a"), None);
        assert_eq!(temp_pid(".x.elfpack-42-"), None);
    }
}
