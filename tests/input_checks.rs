//! What elfpack must refuse, or pack differently, at pack time (issue 13
//! items 3, 4, 5, 8, 9, 11, 14): each case would otherwise give an output
//! that cannot start, leaks a host file, or injects code.

mod common;

use common::{RootD, describe, elfpack, run_in, text, workdir};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

const PROG: &str = "/usr/bin/true";

fn run(dir: &Path, args: &[&str]) -> Output {
    elfpack()
        .current_dir(dir)
        .args(args)
        .arg("--no-layer-size")
        .output()
        .unwrap()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", describe(o));
}

/// Exit 1, one line holding each of `words`, and `dir` holds only `keep`.
fn refused(o: &Output, words: &[&str]) {
    assert_eq!(o.status.code(), Some(1), "{}", describe(o));
    let err = text(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {}", describe(o));
    for w in words {
        assert!(lines[0].contains(w), "no {w:?} in: {}", lines[0]);
    }
}

/// Item 3: --env names are checked; values are quoted safely.
#[test]
fn env_names_are_checked_and_values_quoted() {
    let w = workdir();
    let d = w.path();
    let marker = d.join("injected");
    let evil = format!("X+x}}\" ] || touch {} #=1", marker.display());
    for mode in [
        &["--prefix", "/opt/p", "--rootfs", "p"][..],
        &["--oci", "i.tar"],
        &["-o", "single"],
    ] {
        for bad in [evil.as_str(), "=x", "noequals", "1X=2", "A-B=1"] {
            let env = format!("--env={bad}");
            let o = run(d, &[&[PROG, env.as_str()][..], mode].concat());
            refused(&o, &["--env"]);
        }
    }
    assert_eq!(std::fs::read_dir(d).unwrap().count(), 0);
    // A value with quotes, $ and a newline survives as it is.
    let value = "it's $HOME `id` \"q\"\nline2";
    let env = format!("--env=GREETING={value}");
    ok(&run(
        d,
        &["/usr/bin/env", &env, "--prefix", "/opt/p", "--rootfs", "p"],
    ));
    let file = d.join("p/opt/p/etc/elfpack.env");
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(". {} && printf %s \"$GREETING\"", file.display()))
        .env_remove("GREETING")
        .output()
        .unwrap();
    assert_eq!(text(&o.stdout), value, "{}", describe(&o));
    assert!(!marker.exists());
}

/// Item 4: symlinks in an added directory stay links inside it and are
/// refused when they leave it; nothing is read through them.
#[test]
fn added_directories_keep_inner_links_and_refuse_outer_ones() {
    let w = workdir();
    let d = w.path();
    let app = d.join("app");
    std::fs::create_dir_all(app.join("conf")).unwrap();
    std::fs::write(app.join("conf/real.toml"), "x = 1\n").unwrap();
    std::os::unix::fs::symlink("conf/real.toml", app.join("rel")).unwrap();
    std::os::unix::fs::symlink(app.join("conf"), app.join("abs-dir")).unwrap();
    std::os::unix::fs::symlink(".", app.join("conf/self")).unwrap();
    for (spec, at) in [
        (app.display().to_string(), app.clone()),
        (
            format!("{}:/data", app.display()),
            Path::new("/data").to_path_buf(),
        ),
    ] {
        let _ = std::fs::remove_dir_all(d.join("r"));
        ok(&run(d, &[PROG, "--add", &spec, "--rootfs", "r"]));
        let root = d.join("r");
        let inside = root.join(at.strip_prefix("/").unwrap());
        for l in ["rel", "abs-dir", "conf/self"] {
            let m = std::fs::symlink_metadata(inside.join(l)).unwrap();
            assert!(m.file_type().is_symlink(), "{l} in {spec} is not a link");
        }
        assert!(inside.join("conf/real.toml").is_file());
        // Links resolve inside the root.
        let o = run_in(&root, &["/usr/bin/true"]);
        assert!(o.status.success(), "{}", describe(&o));
        let abs = std::fs::read_link(inside.join("abs-dir")).unwrap();
        assert!(abs.is_relative(), "{}", abs.display());
        assert_eq!(
            std::fs::read_to_string(inside.join("abs-dir/real.toml")).unwrap(),
            "x = 1\n"
        );
    }
    // Links that leave the tree: refused, in both modes, relative or not.
    std::fs::write(d.join("secret"), "host secret\n").unwrap();
    for (name, target) in [("shadow", "/etc/shadow"), ("up", "../secret")] {
        std::os::unix::fs::symlink(target, app.join(name)).unwrap();
        for spec in [
            app.display().to_string(),
            format!("{}:/data", app.display()),
        ] {
            let _ = std::fs::remove_dir_all(d.join("r"));
            let o = run(d, &[PROG, "--add", &spec, "--rootfs", "r"]);
            refused(&o, &[name, target, "outside the added directory"]);
            assert!(!d.join("r").exists());
        }
        std::fs::remove_file(app.join(name)).unwrap();
    }
}

/// Item 5: set-user-ID and set-group-ID bits are dropped unless asked for.
#[test]
fn setid_bits_are_dropped_unless_kept() {
    let w = workdir();
    let d = w.path();
    let prog = d.join("prog");
    std::fs::copy(PROG, &prog).unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o6755)).unwrap();
    let data = d.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("f"), "x").unwrap();
    std::fs::set_permissions(data.join("f"), std::fs::Permissions::from_mode(0o2644)).unwrap();
    let add = format!("{}:/data", data.display());
    let o = run(d, &[prog.to_str().unwrap(), "--add", &add, "--rootfs", "r"]);
    ok(&o);
    assert!(text(&o.stderr).contains("--keep-setid"), "{}", describe(&o));
    let mode = |p: &str| std::fs::metadata(d.join(p)).unwrap().permissions().mode() & 0o7777;
    let rel = prog.strip_prefix("/").unwrap().display().to_string();
    assert_eq!(mode(&format!("r/{rel}")), 0o755);
    assert_eq!(mode("r/data/f"), 0o644);
    // In archives too.
    ok(&run(d, &[prog.to_str().unwrap(), "-o", "a.tar"]));
    let o = std::process::Command::new("tar")
        .args(["tvf", "a.tar"])
        .current_dir(d)
        .output()
        .unwrap();
    let listing = text(&o.stdout);
    assert!(
        !listing.lines().any(|l| l[..10].contains(['s', 'S'])),
        "{listing}"
    );
    ok(&run(
        d,
        &[
            prog.to_str().unwrap(),
            "--add",
            &add,
            "--rootfs",
            "k",
            "--keep-setid",
        ],
    ));
    assert_eq!(mode(&format!("k/{rel}")), 0o6755);
    assert_eq!(mode("k/data/f"), 0o2644);
}

/// Item 8: an OCI config that could not start is refused at pack time.
#[test]
fn image_user_workdir_and_entrypoint_are_checked() {
    let w = workdir();
    let d = w.path();
    for (args, words) in [
        (
            &["--user", "alice"][..],
            &["--user alice", "no user \"alice\"", "nonroot"][..],
        ),
        (
            &["--user", "nonroot:no-such-group"],
            &["no group \"no-such-group\""],
        ),
        (&["--user", "alice", "--no-etc"], &["no /etc/passwd"]),
        (
            &["--workdir", "relative/dir"],
            &["--workdir relative/dir", "absolute"],
        ),
    ] {
        let o = run(d, &[&[PROG, "--oci", "i.tar"][..], args].concat());
        refused(&o, words);
    }
    for args in [
        &["--user", "nonroot"][..],
        &["--user", "1000:1000"],
        &["--user", "root:root", "--workdir", "/tmp"],
    ] {
        let _ = std::fs::remove_file(d.join("i.tar"));
        ok(&run(d, &[&[PROG, "--oci", "i.tar"][..], args].concat()));
    }
    std::fs::remove_file(d.join("i.tar")).unwrap();
    // A program path that is not UTF-8 cannot be an ENTRYPOINT.
    use std::os::unix::ffi::OsStrExt;
    let odd = d.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    std::fs::copy(PROG, &odd).unwrap();
    for args in [
        &["--oci", "i.tar"][..],
        &["--rootfs", "r", "--dockerfile"],
        &["-o", "single"],
    ] {
        let o = elfpack()
            .current_dir(d)
            .arg(&odd)
            .args(args)
            .output()
            .unwrap();
        refused(&o, &["not UTF-8"]);
    }
    let left: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

/// Item 9: `..` in an --add DEST is refused in every mode.
#[test]
fn add_dest_with_dotdot_is_refused_everywhere() {
    let w = workdir();
    let d = w.path();
    std::fs::write(d.join("src"), "x").unwrap();
    for mode in [
        &["-o", "single"][..],
        &["--rootfs", "r"],
        &["--oci", "i.tar"],
        &["--prefix", "/opt/p", "--rootfs", "p"],
    ] {
        let o = run(
            d,
            &[&[PROG, "--add", "src:/data/../../x"][..], mode].concat(),
        );
        refused(&o, &["/data/../../x", "'..'"]);
    }
    assert_eq!(std::fs::read_dir(d).unwrap().count(), 1);
}

/// Item 11: static and static-pie programs make single files that run.
#[test]
fn static_programs_make_single_files() {
    if !common::require_root("static single files in root D") {
        return;
    }
    let w = workdir();
    let d = w.path();
    let root = d.join("root");
    std::fs::create_dir(&root).unwrap();
    for (name, flag) in [("st", "-static"), ("stpie", "-static-pie")] {
        let prog = common::compile_to(&d.join(name), "hello.c", &[flag]);
        let out = root.join(name);
        let o = run(d, &[prog.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        ok(&o);
        let want = text(&std::process::Command::new(&prog).output().unwrap().stdout);
        let _d = RootD::new(&root);
        let o = run_in(&root, &[&format!("/{name}")]);
        assert!(o.status.success(), "{name}: {}", describe(&o));
        assert_eq!(text(&o.stdout), want, "{name}");
    }
}

/// Item 14: files the kernel could not run are refused, each with its reason.
#[test]
fn unrunnable_programs_are_refused() {
    let w = workdir();
    let d = w.path();
    let hello = std::fs::read(PROG).unwrap();
    let put = |name: &str, bytes: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    let phoff = u64::from_le_bytes(hello[32..40].try_into().unwrap()) as usize;
    let phnum = u16::from_le_bytes(hello[56..58].try_into().unwrap()) as usize;
    let mut garbage = hello.clone();
    for (i, b) in garbage[phoff..phoff + 56 * phnum].iter_mut().enumerate() {
        *b = (i * 131 + 7) as u8;
    }
    let mut core = hello.clone();
    core[16] = 4; // ET_CORE
    let cases = [
        (put("garbage", &garbage), "program headers"),
        (put("core", &core), "core dump"),
        (
            Path::new("/usr/lib/x86_64-linux-gnu/libz.so.1").to_path_buf(),
            "a shared library, not a program",
        ),
        (put("crlf", b"#!/bin/sh\r\necho hi\r\n"), "carriage return"),
        (put("cut", &hello[..hello.len() / 2]), "truncated"),
    ];
    for (p, why) in &cases {
        for mode in [&["--rootfs", "r"][..], &["-o", "single"]] {
            let o = run(d, &[&[p.to_str().unwrap()][..], mode].concat());
            refused(&o, &[p.to_str().unwrap(), why]);
        }
    }
    // `deps` still reads libraries, as ldd does.
    let o = run_elf_deps("/usr/lib/x86_64-linux-gnu/libz.so.1");
    ok(&o);
    assert!(!d.join("r").exists() && !d.join("single").exists());
}

fn run_elf_deps(p: &str) -> Output {
    elfpack().args(["deps", p]).output().unwrap()
}
