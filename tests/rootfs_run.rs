//! `elfpack PROG --rootfs DIR`, run for real. Each program is packed on its
//! own (so one program's libraries cannot hide another's missing ones) and
//! run chrooted in
//! - **E**: DIR holding only elfpack's output (no /proc, no /dev);
//! - **D+tmp**: E plus what a container runtime adds to a `FROM scratch`
//!   image (/proc, /dev nodes, /etc/hosts, hostname, resolv.conf), keeping the
//!   image's /tmp;
//! - **D**: the same without /tmp, to show nothing needs it.
//!
//! Outputs are compared with the same program run on the host where the
//! output does not depend on the root, otherwise with what the root holds.
//! Also: the tree's contents, bad input, scripts, static programs,
//! `--install-to`.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Output;

use common::*;

type Check<'a> = &'a dyn Fn(&Path, &Output) -> Result<(), String>;

/// Success, and stdout exactly WANT.
fn stdout_is(want: String) -> impl Fn(&Path, &Output) -> Result<(), String> {
    move |_, o| {
        if o.status.success() && o.stdout == want.as_bytes() {
            Ok(())
        } else {
            Err(format!("wanted exit 0 and stdout {want:?}"))
        }
    }
}

/// Success, and stdout equal to the same command run on the host.
fn same_as_host(argv: &[&str]) -> impl Fn(&Path, &Output) -> Result<(), String> + use<> {
    let host = run_host(argv);
    assert!(host.status.success(), "on the host: {}", describe(&host));
    assert!(!host.stdout.is_empty());
    stdout_is(text(&host.stdout))
}

fn check(root: &Path, label: &str, argv: &[&str], check: Check) {
    let o = run_in(root, argv);
    if let Err(e) = check(root, &o) {
        panic!("root {label}: {argv:?}: {e}\ngot: {}", describe(&o));
    }
}

/// Runs ARGV in E (unless it NEEDS_DEV, e.g. opens /dev/null), then in D
/// with the image's /tmp, then in D without /tmp. ROOT is elfpack's output.
fn in_all_roots(root: &Path, argv: &[&str], needs_dev: bool, c: Check) {
    if !needs_dev {
        check(root, "E", argv, c);
    }
    let d = RootD::keeping_tmp(root);
    check(root, "D+tmp", argv, c);
    d.remove_tmp();
    check(root, "D", argv, c);
    let proc_dir = root.join("proc");
    drop(d);
    assert!(!is_mount_point(&proc_dir), "proc left mounted");
}

/// Packs PROGS alone into a fresh root, returns (workdir, root).
fn packed(progs: &[&Path], extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let w = workdir();
    let root = w.path().join("rootfs");
    let o = pack_with(progs, &root, extra);
    assert!(o.status.success(), "elfpack {progs:?}: {}", describe(&o));
    (w, root)
}

/// Compiles a fixture, packs it alone and runs it in every root.
fn fixture_everywhere(src: &str, cflags: &[&str], want: &str) {
    if !require_root(src) {
        return;
    }
    let w = workdir();
    let prog = compile(w.path(), src, cflags);
    let p = prog.to_str().unwrap();
    // The fixture works on the host, printing what it should.
    let host = run_host(&[p]);
    assert_eq!(
        text(&host.stdout),
        want,
        "{src} on the host: {}",
        describe(&host)
    );
    let (_t, root) = packed(&[&prog], &[]);
    in_all_roots(&root, &[p], false, &stdout_is(want.to_string()));
}

// ---- fixtures compiled at test time ----------------------------------

#[test]
fn hello_c() {
    fixture_everywhere("hello.c", &[], "hello from C\n");
}

#[test]
fn hello_cpp_iostream_string_exception() {
    fixture_everywhere("hello.cpp", &[], "hello from C++, exception caught\n");
}

#[test]
fn nss_getpwuid_and_getaddrinfo() {
    fixture_everywhere("nss.c", &[], "user root, localhost resolves\n");
}

#[test]
fn pthread_cancel_loads_libgcc_s() {
    fixture_everywhere("cancel.c", &["-pthread"], "cancelled\n");
}

/// The two checks above can fail: without what elfpack adds for them, the
/// same programs fail in E.
#[test]
fn negative_controls_fail_without_libgcc_s_and_scratch_etc() {
    if !require_root("negative controls") {
        return;
    }
    let w = workdir();
    let cancel = compile(w.path(), "cancel.c", &["-pthread"]);
    let nss = compile(w.path(), "nss.c", &[]);
    // cancel.c does not link libgcc_s: elfpack adds it as a run-time load.
    let (_t, root) = packed(&[&cancel], &[]);
    let libgcc = walk(&root)
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "libgcc_s.so.1"));
    assert!(
        libgcc.is_some(),
        "libgcc_s.so.1 not shipped for pthread_cancel"
    );
    let (_t2, root) = packed(&[&cancel], &["--exclude", "libgcc_s.so.1"]);
    let o = run_in(&root, &[cancel.to_str().unwrap()]);
    assert!(
        !o.status.success() && text(&o.stderr).contains("libgcc_s.so.1"),
        "cancel without libgcc_s should abort: {}",
        describe(&o)
    );
    // Without the scratch /etc, getpwuid(0) finds no passwd.
    let (_t3, root) = packed(&[&nss], &["--no-etc"]);
    assert!(!root.join("etc/passwd").exists());
    let o = run_in(&root, &[nss.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    assert_eq!(text(&o.stdout), "getpwuid(0) failed\n");
}

// ---- real Debian programs ----------------------------------------------

fn debian_everywhere(argv: &[&str], needs_dev: bool, c: Check) {
    if !require_root(argv[0]) {
        return;
    }
    let (_t, root) = packed(&[Path::new(argv[0])], &[]);
    in_all_roots(&root, argv, needs_dev, c);
}

#[test]
fn curl_version() {
    let argv = ["/usr/bin/curl", "--version"];
    debian_everywhere(&argv, false, &same_as_host(&argv));
}

#[test]
fn curl_reads_a_file_url() {
    if !require_root("curl file://") {
        return;
    }
    let (_t, root) = packed(&[Path::new("/usr/bin/curl")], &[]);
    // Content made now, so only a real read can print it.
    let content = format!(
        "elfpack test {} {:?}\n",
        std::process::id(),
        std::time::SystemTime::now()
    );
    std::fs::create_dir_all(root.join("srv")).unwrap();
    std::fs::write(root.join("srv/f.txt"), &content).unwrap();
    in_all_roots(
        &root,
        &["/usr/bin/curl", "-s", "file:///srv/f.txt"],
        false,
        &stdout_is(content),
    );
}

#[test]
fn git_version() {
    // git opens /dev/null at start ("could not open '/dev/null'"): D only.
    let argv = ["/usr/bin/git", "--version"];
    debian_everywhere(&argv, true, &same_as_host(&argv));
}

#[test]
fn ls_l_root_names_owners() {
    let c = |root: &Path, o: &Output| -> Result<(), String> {
        if !o.status.success() {
            return Err("exit status".into());
        }
        let out = text(&o.stdout);
        let mut names: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut listed = Vec::new();
        for line in out.lines().filter(|l| !l.starts_with("total ")) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 9 || f[2] != "root" || f[3] != "root" {
                return Err(format!("owner not root root: {line:?}"));
            }
            listed.push(f[8].to_string());
        }
        listed.sort();
        if listed != names {
            return Err(format!("listed {listed:?}, the root holds {names:?}"));
        }
        Ok(())
    };
    debian_everywhere(&["/usr/bin/ls", "-l", "/"], false, &c);
}

#[test]
fn getent_passwd_root() {
    let c = |root: &Path, o: &Output| -> Result<(), String> {
        let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
        let line = passwd.lines().find(|l| l.starts_with("root:")).unwrap();
        assert!(line.starts_with("root:x:0:0:"), "{line}");
        stdout_is(format!("{line}\n"))(root, o)
    };
    debian_everywhere(&["/usr/bin/getent", "passwd", "root"], false, &c);
}

#[test]
fn openssl_version() {
    let argv = ["/usr/bin/openssl", "version"];
    debian_everywhere(&argv, false, &same_as_host(&argv));
}

#[test]
fn sqlite3_select() {
    debian_everywhere(
        &["/usr/bin/sqlite3", ":memory:", "select 40+2;"],
        false,
        &stdout_is("42\n".into()),
    );
}

// ---- what the tree holds ------------------------------------------------

/// Lexically resolves the relative symlink LINK (inside ROOT) one step; None
/// when it climbs out of ROOT.
fn link_target_in_root(root: &Path, link: &Path) -> Option<PathBuf> {
    let target = std::fs::read_link(link).unwrap();
    let mut parts: Vec<_> = link
        .parent()
        .unwrap()
        .strip_prefix(root)
        .unwrap()
        .components()
        .collect();
    for c in target.components() {
        match c {
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            Component::Normal(_) => parts.push(c),
            _ => return None,
        }
    }
    Some(root.join(parts.iter().collect::<PathBuf>()))
}

#[test]
fn tree_has_scratch_etc_relative_links_host_copies() {
    let (_t, root) = packed(&[Path::new("/usr/bin/curl")], &[]);
    // Scratch accounts, none of the host's.
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    for (file, ours) in [("passwd", &passwd), ("group", &group)] {
        assert!(ours.lines().any(|l| l.starts_with("root:x:0:")), "{ours}");
        let host = std::fs::read_to_string(format!("/etc/{file}")).unwrap();
        // Debian's static accounts (base-passwd) are in the image on purpose.
        let base = std::fs::read_to_string(format!("/usr/share/base-passwd/{file}.master"))
            .unwrap_or_default();
        let base: Vec<&str> = base.lines().filter_map(|l| l.split(':').next()).collect();
        for name in host.lines().filter_map(|l| l.split(':').next()) {
            if ["nonroot", ""].contains(&name) || base.contains(&name) {
                continue;
            }
            assert!(
                !ours.lines().any(|l| l.split(':').next() == Some(name)),
                "host account {name} in the image's /etc/{file}:\n{ours}"
            );
        }
    }
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
    for f in ["shadow", "gshadow"] {
        assert!(!root.join("etc").join(f).exists(), "/etc/{f} shipped");
    }
    // /tmp 1777.
    let tmp = std::fs::symlink_metadata(root.join("tmp")).unwrap();
    assert!(tmp.is_dir());
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    // /run 0755, where daemons put pid files (nginx -t needs it).
    let run = std::fs::symlink_metadata(root.join("run")).unwrap();
    assert!(run.is_dir());
    assert_eq!(run.permissions().mode() & 0o7777, 0o755);
    // The image's own ld.so.cache, in the new format, naming curl's library.
    let cache = std::fs::read(root.join("etc/ld.so.cache")).unwrap();
    assert!(cache.starts_with(b"glibc-ld.so.cache1.1"), "cache magic");
    assert!(
        cache.windows(12).any(|w| w == b"libcurl.so.4"),
        "libcurl.so.4 not in the image's ld.so.cache"
    );
    let all = walk(&root);
    let mut files = 0;
    for p in &all {
        let m = std::fs::symlink_metadata(p).unwrap();
        let rel = Path::new("/").join(p.strip_prefix(&root).unwrap());
        if m.file_type().is_symlink() {
            let target = std::fs::read_link(p).unwrap();
            assert!(
                target.is_relative(),
                "{} -> {}",
                rel.display(),
                target.display()
            );
            let inside = link_target_in_root(&root, p);
            let ok = inside
                .as_ref()
                .is_some_and(|t| t.symlink_metadata().is_ok());
            assert!(
                ok,
                "{} -> {}: dangling or leaves the root",
                rel.display(),
                target.display()
            );
        } else if m.is_file()
            && !rel.starts_with("/etc")
            // Generated: the package metadata scanners read.
            && !rel.starts_with("/var/lib/dpkg/status.d")
        {
            // Programs and libraries: the host's bytes and mode.
            let host = std::fs::metadata(&rel).unwrap();
            assert_eq!(m.mode() & 0o7777, host.mode() & 0o7777, "{}", rel.display());
            assert!(
                std::fs::read(p).unwrap() == std::fs::read(&rel).unwrap(),
                "{} differs from the host's",
                rel.display()
            );
            files += 1;
        }
    }
    assert!(files > 10, "only {files} files for curl: {all:?}");
    // The loader at the program's PT_INTERP, reached inside the root.
    assert!(
        root.join("lib64/ld-linux-x86-64.so.2").exists(),
        "no /lib64/ld-linux-x86-64.so.2 in {all:?}"
    );
}

// ---- bad input ------------------------------------------------------------

/// elfpack on PROG must fail with one line naming the file and containing
/// one of WORDS (case-insensitive), and leave nothing in the output's parent.
fn refused(prog: &Path, words: &[&str]) -> String {
    refused_as(prog, words, &[])
}

fn refused_as(prog: &Path, words: &[&str], wrapper: &[&str]) -> String {
    let w = workdir();
    let out_parent = w.path().join("out");
    std::fs::create_dir(&out_parent).unwrap();
    let root = out_parent.join("rootfs");
    let mut cmd = if wrapper.is_empty() {
        elfpack()
    } else {
        let mut c = std::process::Command::new(wrapper[0]);
        c.args(&wrapper[1..]).arg(ELFPACK);
        c
    };
    let o = cmd
        .arg(prog)
        .arg("--rootfs")
        .arg(&root)
        .arg("--dockerfile")
        .arg(out_parent.join("Dockerfile"))
        .output()
        .unwrap();
    let err = text(&o.stderr);
    let what = format!("elfpack {}: {}", prog.display(), describe(&o));
    assert!(!o.status.success(), "accepted: {what}");
    assert_ne!(o.status.code(), None, "killed by a signal: {what}");
    assert!(o.stdout.is_empty(), "{what}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {what}");
    let line = lines[0].to_string();
    assert!(
        line.contains(prog.to_str().unwrap()),
        "file not named: {what}"
    );
    let lower = line.to_lowercase();
    assert!(
        words.iter().any(|w| lower.contains(&w.to_lowercase())),
        "says none of {words:?}: {what}"
    );
    let left: Vec<_> = std::fs::read_dir(&out_parent).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?} ({what})");
    line
}

#[test]
fn refuses_a_text_file() {
    let w = workdir();
    let f = w.path().join("notes.txt");
    std::fs::write(&f, "just some text, no #! line\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
    refused(&f, &["not an ELF", "not ELF"]);
}

#[test]
fn refuses_a_truncated_elf() {
    let w = workdir();
    let f = w.path().join("ls-truncated");
    let ls = std::fs::read("/usr/bin/ls").unwrap();
    std::fs::write(&f, &ls[..100]).unwrap();
    refused(&f, &["truncated"]);
}

#[test]
fn refuses_the_wrong_architecture() {
    let w = workdir();
    let f = w.path().join("ls-aarch64");
    let mut ls = std::fs::read("/usr/bin/ls").unwrap();
    // e_machine (byte 18, little endian) = EM_AARCH64.
    ls[18..20].copy_from_slice(&183u16.to_le_bytes());
    std::fs::write(&f, &ls).unwrap();
    refused(&f, &["architecture", "machine"]);
}

#[test]
fn refuses_a_program_whose_library_is_missing() {
    let w = workdir();
    let d = w.path();
    compile_c(
        d,
        "libgone.so",
        "int gone(void) { return 7; }\n",
        &["-shared", "-fPIC"],
    );
    let prog = compile_c(
        d,
        "needs-gone",
        "int gone(void);\nint main(void) { return gone(); }\n",
        &["-L", d.to_str().unwrap(), "-l:libgone.so"],
    );
    std::fs::remove_file(d.join("libgone.so")).unwrap();
    let line = refused(&prog, &["not found", "missing", "cannot find"]);
    assert!(line.contains("libgone.so"), "library not named: {line}");
    assert!(
        line.contains("/usr/lib/x86_64-linux-gnu") || line.contains("/lib/x86_64-linux-gnu"),
        "searched dirs not listed: {line}"
    );
}

#[test]
fn refuses_a_library_whose_own_dependency_is_missing() {
    // prog -> libmid.so ($ORIGIN RUNPATH) -> libleaf.so, deleted: the error
    // must name libleaf.so, libmid.so as the one needing it, and where it
    // looked (libmid's RUNPATH, i.e. the fixture dir).
    let w = workdir();
    let d = w.path();
    let ds = d.to_str().unwrap();
    compile_c(
        d,
        "libleaf.so",
        "int leaf(void) { return 3; }\n",
        &["-shared", "-fPIC"],
    );
    compile_c(
        d,
        "libmid.so",
        "int leaf(void);\nint mid(void) { return leaf(); }\n",
        &[
            "-shared",
            "-fPIC",
            "-L",
            ds,
            "-l:libleaf.so",
            "-Wl,--enable-new-dtags,-rpath,$ORIGIN",
        ],
    );
    let prog = compile_c(
        d,
        "needs-mid",
        "int mid(void);\nint main(void) { return mid(); }\n",
        &[
            "-L",
            ds,
            "-l:libmid.so",
            "-Wl,--enable-new-dtags,-rpath,$ORIGIN",
        ],
    );
    assert!(run_host(&[prog.to_str().unwrap()]).status.code() == Some(3));
    std::fs::remove_file(d.join("libleaf.so")).unwrap();
    let line = refused(&prog, &["not found", "missing", "cannot find"]);
    assert!(line.contains("libleaf.so"), "library not named: {line}");
    assert!(line.contains("libmid.so"), "who needs it not named: {line}");
    assert!(
        line.contains(ds),
        "RUNPATH dir not among those searched: {line}"
    );
}

#[test]
fn refuses_an_unreadable_file() {
    if !require_root("unreadable file") {
        return;
    }
    let w = workdir();
    let f = w.path().join("secret");
    std::fs::copy("/usr/bin/true", &f).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads any file; drop the capabilities that let it.
    let drop_caps = [
        "/usr/bin/setpriv",
        "--bounding-set",
        "-dac_override,-dac_read_search",
    ];
    let probe = std::process::Command::new(drop_caps[0])
        .args(&drop_caps[1..])
        .args(["/usr/bin/cat"])
        .arg(&f)
        .output();
    match probe {
        Ok(o) if !o.status.success() && text(&o.stderr).contains("Permission denied") => {}
        other => {
            eprintln!("skipped: cannot make a file unreadable for root here ({other:?})");
            return;
        }
    }
    refused_as(
        &f,
        &["permission denied", "cannot read", "unreadable"],
        &drop_caps,
    );
}

#[test]
fn refuses_a_directory() {
    let w = workdir();
    let dir = w.path().join("adir");
    std::fs::create_dir(&dir).unwrap();
    refused(&dir, &["directory"]);
}

#[test]
fn refuses_a_symlink_loop() {
    let w = workdir();
    let a = w.path().join("loop-a");
    let b = w.path().join("loop-b");
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    refused(&a, &["symbolic link", "symlink", "loop"]);
}

#[test]
fn refuses_a_missing_file() {
    let w = workdir();
    refused(
        &w.path().join("no-such-program"),
        &["no such file", "not found", "does not exist"],
    );
}

#[test]
fn existing_output_is_refused_without_force_and_replaced_with_it() {
    let w = workdir();
    let root = w.path().join("rootfs");
    // An empty directory is fine.
    std::fs::create_dir(&root).unwrap();
    let o = pack_with(&[Path::new("/usr/bin/true")], &root, &[]);
    assert!(o.status.success(), "empty dir refused: {}", describe(&o));
    assert!(root.join("usr/bin/true").is_file());
    // Not empty: refused, untouched.
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("keep"), "mine\n").unwrap();
    let o = pack_with(&[Path::new("/usr/bin/true")], &root, &[]);
    assert!(
        !o.status.success(),
        "non-empty dir accepted: {}",
        describe(&o)
    );
    let err = text(&o.stderr);
    assert!(
        err.contains(root.to_str().unwrap()) && err.contains("--force"),
        "{err}"
    );
    let entries: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(entries, ["keep"], "touched without --force");
    let siblings: Vec<_> = std::fs::read_dir(w.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(siblings, ["rootfs"], "temporary left beside the output");
    // --force: replaced, the old content gone.
    let o = pack_with(&[Path::new("/usr/bin/true")], &root, &["--force"]);
    assert!(o.status.success(), "--force: {}", describe(&o));
    assert!(!root.join("keep").exists(), "old content kept with --force");
    assert!(root.join("usr/bin/true").is_file());
    let siblings: Vec<_> = std::fs::read_dir(w.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(siblings, ["rootfs"], "temporary left beside the output");
}

// ---- scripts, static programs, --install-to --------------------------------

fn script_everywhere(shebang: &str) {
    if !require_root("scripts") {
        return;
    }
    let w = workdir();
    let s = w.path().join("script");
    std::fs::write(&s, format!("{shebang}\necho \"script $0 got $1\"\n")).unwrap();
    std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sp = s.to_str().unwrap();
    let want = format!("script {sp} got arg\n");
    assert_eq!(text(&run_host(&[sp, "arg"]).stdout), want);
    let (_t, root) = packed(&[&s], &[]);
    assert_eq!(
        std::fs::read(root.join(s.strip_prefix("/").unwrap())).unwrap(),
        std::fs::read(&s).unwrap()
    );
    in_all_roots(&root, &[sp, "arg"], false, &stdout_is(want));
}

#[test]
fn script_bin_sh() {
    script_everywhere("#!/bin/sh");
}

#[test]
fn script_usr_bin_env_sh() {
    script_everywhere("#!/usr/bin/env sh");
}

#[test]
fn static_program_is_copied_as_is() {
    if !require_root("static program") {
        return;
    }
    let w = workdir();
    let prog = compile(w.path(), "hello.c", &["-static"]);
    let (_t, root) = packed(&[&prog], &[]);
    let inside = root.join(prog.strip_prefix("/").unwrap());
    assert!(
        std::fs::read(&inside).unwrap() == std::fs::read(&prog).unwrap(),
        "static program changed"
    );
    let all = walk(&root);
    assert!(
        !all.iter().any(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("ld-linux") || n.starts_with("libc.so")
        }),
        "a static program brought a loader or libc: {all:?}"
    );
    in_all_roots(
        &root,
        &[prog.to_str().unwrap()],
        false,
        &stdout_is("hello from C\n".into()),
    );
}

#[test]
fn install_to_moves_the_program_and_the_entrypoint() {
    if !require_root("--install-to") {
        return;
    }
    let w = workdir();
    let prog = compile(w.path(), "hello.cpp", &[]);
    let ctx = w.path().join("ctx");
    let root = ctx.join("rootfs");
    let o = pack_with(
        &[&prog],
        &root,
        &[
            "--install-to",
            "/app/hello",
            "--dockerfile",
            ctx.join("Dockerfile").to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", describe(&o));
    assert!(root.join("app/hello").is_file());
    assert!(
        !root.join(prog.strip_prefix("/").unwrap()).exists(),
        "also at its host path"
    );
    let df = std::fs::read_to_string(ctx.join("Dockerfile")).unwrap();
    assert!(df.starts_with("FROM scratch\n"), "{df}");
    assert!(df.lines().any(|l| l == r#"COPY ["rootfs/", "/"]"#), "{df}");
    assert!(
        df.lines().any(|l| l == r#"ENTRYPOINT ["/app/hello"]"#),
        "{df}"
    );
    in_all_roots(
        &root,
        &["/app/hello"],
        false,
        &stdout_is("hello from C++, exception caught\n".into()),
    );
}

#[test]
fn dockerfile_without_a_path_goes_beside_the_rootfs() {
    let w = workdir();
    let root = w.path().join("rootfs");
    let o = pack_with(&[Path::new("/usr/bin/true")], &root, &["--dockerfile"]);
    assert!(o.status.success(), "{}", describe(&o));
    let df = std::fs::read_to_string(w.path().join("Dockerfile")).unwrap();
    assert!(
        df.lines().any(|l| l == r#"ENTRYPOINT ["/usr/bin/true"]"#),
        "{df}"
    );
}

/// A program that finds its library through `$ORIGIN/../lib` (DT_RUNPATH or
/// DT_RPATH). glibc expands the main program's `$ORIGIN` from
/// /proc/self/exe, which root E lacks; the library must still be found there
/// (e.g. through the image's ld.so.cache, which comes after both in the
/// loader's search order).
fn origin_program_everywhere(dtags: &str) {
    if !require_root("$ORIGIN program") {
        return;
    }
    let w = workdir();
    let app = w.path().join("app");
    std::fs::create_dir_all(app.join("bin")).unwrap();
    std::fs::create_dir_all(app.join("lib")).unwrap();
    compile_c(
        &app.join("lib"),
        "libhi.so.1",
        "#include <stdio.h>\nvoid hi(void) { puts(\"hi through $ORIGIN\"); }\n",
        &["-shared", "-fPIC", "-Wl,-soname,libhi.so.1"],
    );
    let lib = app.join("lib");
    let rpath = format!("-Wl,{dtags},-rpath,$ORIGIN/../lib");
    let prog = compile_c(
        &app.join("bin"),
        "hi",
        "void hi(void);\nint main(void) { hi(); return 0; }\n",
        &["-L", lib.to_str().unwrap(), "-l:libhi.so.1", &rpath],
    );
    let p = prog.to_str().unwrap();
    let want = "hi through $ORIGIN\n".to_string();
    assert_eq!(text(&run_host(&[p]).stdout), want);
    let (_t, root) = packed(&[&prog], &[]);
    in_all_roots(&root, &[p], false, &stdout_is(want));
}

#[test]
fn origin_runpath_program() {
    origin_program_everywhere("--enable-new-dtags");
}

#[test]
fn origin_rpath_program() {
    origin_program_everywhere("--disable-new-dtags");
}

/// A Dockerfile that cannot COPY the rootfs (not in the Dockerfile's
/// directory, the build context) is refused before anything is written.
#[test]
fn dockerfile_outside_the_context_is_refused_without_leaving_the_rootfs() {
    let w = workdir();
    let ctx = w.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    let root = ctx.join("rootfs");
    let df = w.path().join("elsewhere/Dockerfile");
    let o = pack_with(
        &[Path::new("/usr/bin/true")],
        &root,
        &["--dockerfile", df.to_str().unwrap()],
    );
    assert!(!o.status.success(), "accepted: {}", describe(&o));
    assert_eq!(text(&o.stderr).lines().count(), 1, "{}", describe(&o));
    let left: Vec<_> = std::fs::read_dir(&ctx).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!df.exists());
}

/// The helper itself: root D's /proc is unmounted even when the test using
/// it panics (the panic message below is expected).
#[test]
fn root_d_unmounts_proc_when_a_test_panics() {
    if !require_root("RootD unmount") {
        return;
    }
    let (_t, root) = packed(&[Path::new("/usr/bin/true")], &[]);
    let r = root.clone();
    let res = std::thread::spawn(move || {
        let _d = RootD::new(&r);
        assert!(is_mount_point(&r.join("proc")));
        assert!(!r.join("tmp").exists(), "D keeps /tmp");
        let null = std::fs::metadata(r.join("dev/null")).unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), libc::makedev(1, 3));
        assert_eq!(null.mode() & 0o777, 0o666);
        panic!("deliberate panic while root D is set up");
    })
    .join();
    assert!(res.is_err());
    assert!(!is_mount_point(&root.join("proc")), "/proc leaked");
}
