//! Prefix bundles run hermetically: in a root whose system library dir holds
//! decoys that abort if loaded, and in a root with only a musl userland.

mod common;

use common::{is_root, run_elfpack as elfpack, stdout_ok as ok};

use std::path::Path;
use std::process::Command;

/// A shared library that kills the process if the loader ever maps it.
fn decoy(dir: &Path, name: &str) {
    let src = dir.join("decoy.c");
    std::fs::write(
        &src,
        "#include <unistd.h>\n__attribute__((constructor)) static void boom(void) { \
         write(2, \"DECOY LOADED\\n\", 13); _exit(99); }\n",
    )
    .unwrap();
    let out = dir.join(name);
    let soname = format!("-Wl,-soname,{name}");
    let st = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&out)
        .arg(&src)
        .arg(&soname)
        .status()
        .unwrap();
    assert!(st.success());
}

const PROGRAMS: &[(&str, &[&str], &str)] = &[
    ("/usr/bin/curl", &["--version"], "curl "),
    ("/usr/bin/openssl", &["version"], "OpenSSL"),
    ("/usr/bin/sqlite3", &[":memory:", "select 40+2;"], "42"),
    ("/usr/bin/getent", &["hosts", "localhost"], "localhost"),
];

#[test]
fn bundle_ignores_decoy_system_libraries() {
    if !is_root() {
        eprintln!("skipped: needs root for chroot");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    for (prog, args, expect) in PROGRAMS {
        let name = Path::new(prog).file_name().unwrap().to_str().unwrap();
        let prefix = format!("/opt/{name}");
        let _ = std::fs::remove_dir_all(&root);
        ok(elfpack(&[
            prog,
            "--prefix",
            &prefix,
            "--rootfs",
            root.to_str().unwrap(),
        ]));
        // Decoys for every library the bundle has, where a glibc system keeps them.
        let syslib = root.join("lib/x86_64-linux-gnu");
        std::fs::create_dir_all(&syslib).unwrap();
        for e in std::fs::read_dir(root.join(format!("opt/{name}/usr/lib/x86_64-linux-gnu")))
            .unwrap()
            .flatten()
        {
            let n = e.file_name().to_string_lossy().into_owned();
            if !n.starts_with("ld-linux") && !e.path().is_dir() {
                decoy(&syslib, &n);
            }
        }
        std::fs::create_dir_all(root.join("lib64")).unwrap();
        decoy(&root.join("lib64"), "ld-linux-x86-64.so.2");
        // The system the bundle lands on has its own /etc.
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        let out = Command::new("chroot")
            .arg(&root)
            .arg(format!("{prefix}{prog}"))
            .args(*args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{prog}: {out:?}");
        let stdout = ok(out);
        assert!(stdout.contains(expect), "{prog}: {stdout}");
    }
}

#[test]
fn bundle_runs_in_a_musl_userland() {
    if !is_root() {
        eprintln!("skipped: needs root for chroot");
        return;
    }
    let musl_loader = Path::new("/lib/ld-musl-x86_64.so.1");
    assert!(musl_loader.exists(), "CI installs Debian's musl package");
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    ok(elfpack(&[
        "/usr/bin/curl",
        "/usr/bin/sqlite3",
        "--prefix",
        "/opt/tools",
        "--rootfs",
        root.to_str().unwrap(),
    ]));
    // The musl userland: its loader (which is also its libc) and nothing of glibc.
    std::fs::create_dir_all(root.join("lib")).unwrap();
    std::fs::copy(musl_loader, root.join("lib/ld-musl-x86_64.so.1")).unwrap();
    let hello = t.path().join("hello-musl.c");
    std::fs::write(
        &hello,
        "#include <stdio.h>\nint main(void){puts(\"musl says hi\");return 0;}\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let st = Command::new("musl-gcc")
        .arg(&hello)
        .arg("-o")
        .arg(root.join("bin/hello"))
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        ok(Command::new("chroot")
            .arg(&root)
            .arg("/bin/hello")
            .output()
            .unwrap()),
        "musl says hi\n"
    );
    assert!(
        !root.join("lib/x86_64-linux-gnu").exists() && !root.join("lib64").exists(),
        "no glibc outside the prefix"
    );
    let out = ok(Command::new("chroot")
        .arg(&root)
        .args(["/opt/tools/usr/bin/curl", "--version"])
        .output()
        .unwrap());
    assert!(out.starts_with("curl "), "{out}");
    let out = ok(Command::new("chroot")
        .arg(&root)
        .args(["/opt/tools/usr/bin/sqlite3", ":memory:", "select 40+2;"])
        .output()
        .unwrap());
    assert_eq!(out.trim(), "42");
}

#[test]
fn bundle_programs_point_at_the_prefix() {
    let t = tempfile::tempdir().unwrap();
    let tarball = t.path().join("b.tar");
    ok(elfpack(&[
        "/usr/bin/curl",
        "--prefix",
        "/opt/c",
        "-o",
        tarball.to_str().unwrap(),
    ]));
    let x = t.path().join("x");
    std::fs::create_dir(&x).unwrap();
    assert!(
        Command::new("tar")
            .arg("xf")
            .arg(&tarball)
            .arg("-C")
            .arg(&x)
            .status()
            .unwrap()
            .success()
    );
    let prog = x.join("opt/c/usr/bin/curl");
    let out = ok(Command::new(env!("CARGO_BIN_EXE_elfpack"))
        .args(["patch", "--print-interpreter"])
        .arg(&prog)
        .output()
        .unwrap());
    assert_eq!(
        out.trim(),
        "/opt/c/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    );
    let re = Command::new("readelf")
        .arg("-d")
        .arg(&prog)
        .output()
        .unwrap();
    let dynamic = String::from_utf8_lossy(&re.stdout);
    assert!(
        dynamic.contains("(RPATH)") && dynamic.contains("[/opt/c/usr/lib/x86_64-linux-gnu]"),
        "{dynamic}"
    );
    assert!(!dynamic.contains("(RUNPATH)"));
    // No library keeps a search path that could lead outside the prefix.
    for e in std::fs::read_dir(x.join("opt/c/usr/lib/x86_64-linux-gnu"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
    {
        let re = Command::new("readelf")
            .arg("-d")
            .arg(e.path())
            .output()
            .unwrap();
        let d = String::from_utf8_lossy(&re.stdout);
        assert!(
            !d.contains("RPATH") && !d.contains("RUNPATH"),
            "{}: {d}",
            e.path().display()
        );
    }
}

/// Options that would do nothing with the outputs chosen are refused with
/// the reason, never silently ignored.
#[test]
fn options_without_effect_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let p = |n: &str| t.path().join(n).display().to_string();
    let cases: &[(&[&str], &str)] = &[
        (&["--rootfs", &p("r1"), "--compress", "max"], "--compress"),
        (&["--rootfs", &p("r2"), "--tag", "x:1"], "--tag"),
        (&["-o", &p("f1"), "--cmd", "--version"], "single file"),
        (&["-o", &p("f2"), "--user", "65532"], "single file"),
        (&["--rootfs", &p("r3"), "--workdir", "/tmp"], "--workdir"),
        (&["--rootfs", &p("r4"), "--env", "A=b"], "--env"),
        (&["-o", &p("f3"), "--host-users", "--no-etc"], "--no-etc"),
        (&["--rootfs", &p("r5"), "--runs", "3"], "--compare-run"),
        (&["-o", &p("f4"), "--no-package-metadata"], "not an image"),
    ];
    for (args, why) in cases {
        let mut all = vec!["/usr/bin/true"];
        all.extend(*args);
        let o = Command::new(env!("CARGO_BIN_EXE_elfpack"))
            .args(&all)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{all:?} was accepted");
        assert!(
            err.contains(why) && err.lines().count() == 1,
            "{all:?}: {err}"
        );
    }
    assert!(
        std::fs::read_dir(t.path()).unwrap().next().is_none(),
        "nothing written"
    );
}

/// `--host-users` reaches every output: a single file's bundle, a
/// `--prefix` tree (at the image root, with /tmp).
#[test]
fn host_users_and_etc_in_every_output() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    ok(elfpack(&[
        "/usr/bin/true",
        "--prefix",
        "/opt/t",
        "--rootfs",
        root.to_str().unwrap(),
        "--host-users",
    ]));
    assert_eq!(
        std::fs::read(root.join("etc/passwd")).unwrap(),
        std::fs::read("/etc/passwd").unwrap()
    );
    assert!(root.join("etc/nsswitch.conf").is_file());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(root.join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );
    // Generated accounts without --host-users.
    let root2 = t.path().join("root2");
    ok(elfpack(&[
        "/usr/bin/true",
        "--prefix",
        "/opt/t",
        "--rootfs",
        root2.to_str().unwrap(),
    ]));
    let passwd = std::fs::read_to_string(root2.join("etc/passwd")).unwrap();
    assert!(passwd.contains("nonroot:x:65532"), "{passwd}");
    if !is_root() {
        eprintln!("skipped the single file: needs root for chroot");
        return;
    }
    // A single file: its launcher installs the bundle's /etc into an empty root.
    let empty = t.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    ok(elfpack(&[
        "/usr/bin/getent",
        "-o",
        empty.join("getent").to_str().unwrap(),
        "--host-users",
        "--no-layer-size",
    ]));
    let out = ok(Command::new("chroot")
        .arg(&empty)
        .args(["/getent", "passwd"])
        .output()
        .unwrap());
    let host = std::fs::read_to_string("/etc/passwd").unwrap();
    assert_eq!(out, host);
}
