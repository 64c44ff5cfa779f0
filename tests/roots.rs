//! "Runs in a scratch image", tested for real: each program is packed with
//! `--rootfs`, then run chrooted in two roots —
//! - E: the directory holding only elfpack's output;
//! - D: what a container runtime gives a `FROM scratch` image: the same tree
//!   with /proc mounted, /dev/{null,zero,full,random,urandom,tty}, runtime
//!   /etc/hosts, hostname and resolv.conf, and no /tmp.
//!
//! Programs that need /dev or /proc run in D only.

use std::path::{Path, PathBuf};

mod common;

use common::{RootD, compile, is_root, pack, run_in};

struct Case {
    argv: Vec<String>,
    expect: &'static str,
    /// Needs /dev or /proc, so it is only expected to pass in D.
    d_only: bool,
}

fn case(argv: &[&str], expect: &'static str, d_only: bool) -> Case {
    Case {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        expect,
        d_only,
    }
}

fn check(root: &Path, c: &Case, label: &str) {
    let argv: Vec<&str> = c.argv.iter().map(String::as_str).collect();
    let o = run_in(root, &argv);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains(c.expect),
        "root {label}: {argv:?} -> {}\nstdout: {out}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

fn run_cases(progs: &[&Path], cases: &[Case], setup: impl Fn(&Path)) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("rootfs");
    pack(progs, &root);
    setup(&root);
    for c in cases.iter().filter(|c| !c.d_only) {
        check(&root, c, "E");
    }
    let _d = RootD::new(&root);
    for c in cases {
        check(&root, c, "D");
    }
}

#[test]
fn fixtures_run_in_scratch_roots() {
    if !is_root() {
        eprintln!("skipped: chroot needs root");
        return;
    }
    // Not under /tmp: root D has no /tmp, and programs keep their paths.
    let t = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let bins: Vec<PathBuf> = [
        ("hello.c", vec![]),
        ("hello.cpp", vec![]),
        ("nss.c", vec![]),
        ("cancel.c", vec!["-pthread"]),
    ]
    .iter()
    .map(|(s, f)| compile(t.path(), s, f))
    .collect();
    let refs: Vec<&Path> = bins.iter().map(PathBuf::as_path).collect();
    let p = |i: usize| bins[i].display().to_string();
    let cases = [
        case(&[&p(0)], "hello from C", false),
        case(&[&p(1)], "hello from C++, exception caught", false),
        case(&[&p(2)], "user root, localhost resolves", false),
        case(&[&p(3)], "cancelled", false),
    ];
    run_cases(&refs, &cases, |_| {});
}

#[test]
fn debian_programs_run_in_scratch_roots() {
    if !is_root() {
        eprintln!("skipped: chroot needs root");
        return;
    }
    let progs = [
        "/usr/bin/curl",
        "/usr/bin/git",
        "/usr/bin/ls",
        "/usr/bin/getent",
        "/usr/bin/openssl",
        "/usr/bin/sqlite3",
    ];
    let refs: Vec<&Path> = progs.iter().map(Path::new).collect();
    let cases = [
        case(&["/usr/bin/curl", "--version"], "curl ", false),
        case(
            &["/usr/bin/curl", "-s", "file:///srv/f.txt"],
            "file contents via curl",
            false,
        ),
        case(&["/usr/bin/git", "--version"], "git version", true),
        case(&["/usr/bin/ls", "-l", "/"], " root root ", false),
        case(&["/usr/bin/getent", "passwd", "root"], "root:x:0:0:", false),
        case(&["/usr/bin/openssl", "version"], "OpenSSL 3", false),
        case(
            &["/usr/bin/sqlite3", ":memory:", "select 40+2;"],
            "42",
            false,
        ),
    ];
    run_cases(&refs, &cases, |root| {
        std::fs::create_dir_all(root.join("srv")).unwrap();
        std::fs::write(root.join("srv/f.txt"), "file contents via curl\n").unwrap();
    });
}

#[test]
fn rootfs_holds_no_host_accounts_and_keeps_links_relative() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("r");
    pack(&[Path::new("/usr/bin/ls")], &root);
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("root:x:0:0:") && passwd.contains("nonroot:x:65532:65532:"));
    assert!(
        !passwd.contains("_apt") && !passwd.contains("daemon:"),
        "host accounts leaked: {passwd}"
    );
    assert!(!root.join("etc/shadow").exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(root.join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );
    assert!(root.join("etc/ld.so.cache").is_file());
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                let target = std::fs::read_link(e.path()).unwrap();
                assert!(
                    target.is_relative(),
                    "{} -> {}",
                    e.path().display(),
                    target.display()
                );
            } else if ft.is_dir() {
                stack.push(e.path());
            }
        }
    }
    // Modes are kept.
    let host = std::fs::metadata("/usr/bin/ls")
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        std::fs::metadata(root.join("usr/bin/ls"))
            .unwrap()
            .permissions()
            .mode(),
        host
    );
}
