//! Progress bars: drawn on a terminal, never when stderr is a pipe or a file
//! (logs, CI) and never with `--quiet`.
//!
//! `ELFPACK_PROGRESS_AFTER_MS=0` shows a bar at once, so a quick pack (a
//! single file of hello.c) stands in for the long ones.

mod common;

use std::io::Read as _;
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};

/// Packs hello.c into a single file with stderr on `stderr`; returns what
/// was written there (read from `capture`, the pty's other side, if given).
fn pack(dir: &Path, name: &str, quiet: bool, stderr: Stdio, capture: Option<OwnedFd>) -> String {
    let hello = common::compile(dir, "hello.c", &[]);
    let mut c = Command::new(common::ELFPACK);
    c.arg(&hello)
        .arg("-o")
        .arg(dir.join(name))
        .args(["--compress", "fast"])
        .env("ELFPACK_PROGRESS_AFTER_MS", "0")
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    if quiet {
        c.arg("--quiet");
    }
    let mut child = c.spawn().unwrap();
    // Our copy of the terminal side must be closed (dropped with `c`) for
    // the read below to end when the child exits.
    drop(c);
    let mut out = Vec::new();
    match capture {
        Some(master) => {
            let mut f = std::fs::File::from(master);
            let mut buf = [0u8; 4096];
            // A pty's master reads EIO once every slave fd is closed.
            while let Ok(n @ 1..) = f.read(&mut buf) {
                out.extend_from_slice(&buf[..n]);
            }
        }
        None => {
            child.stderr.take().unwrap().read_to_end(&mut out).unwrap();
        }
    }
    assert!(
        child.wait().unwrap().success(),
        "elfpack failed: {}",
        String::from_utf8_lossy(&out)
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// A pseudo-terminal: (master, slave).
fn pty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two fds; the other pointers may be null.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds are fresh and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

fn has_bar(s: &str) -> bool {
    s.contains("compressing") || s.contains('\r') || s.contains('\x1b')
}

#[test]
fn a_bar_on_a_terminal_only_and_never_with_quiet() {
    let t = common::workdir();
    let d = t.path();

    // Stderr a pipe: the report, no bar.
    let piped = pack(d, "piped", false, Stdio::piped(), None);
    assert!(piped.contains("single file"), "no report: {piped:?}");
    assert!(!has_bar(&piped), "progress drawn into a pipe: {piped:?}");

    // Stderr a terminal: the bar (this shows the check above can fail).
    let (master, slave) = pty();
    let shown = pack(d, "tty", false, Stdio::from(slave), Some(master));
    assert!(
        shown.contains("compressing"),
        "no progress bar on a terminal: {shown:?}"
    );

    // A terminal with --quiet: nothing at all (no bar, no report).
    let (master, slave) = pty();
    let quiet = pack(d, "quiet", true, Stdio::from(slave), Some(master));
    assert!(
        !has_bar(&quiet),
        "progress drawn despite --quiet: {quiet:?}"
    );
    assert!(
        !quiet.contains("single file"),
        "report despite --quiet: {quiet:?}"
    );
}
