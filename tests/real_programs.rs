//! Real Debian programs in `FROM scratch` images (issue 15, items 3-6):
//! `--trace` with several runs, the directories a daemon writes in
//! (nginx -t with Debian's config), a run as another user for a program
//! that refuses root (postgres initdb), the accounts Debian daemons expect
//! in the generated /etc, `--test` that never writes into the output and
//! runs as a chosen user, and warnings that only fire where they matter.
//!
//! Needs root (podman, chroot, namespaces); podman, nginx, postgresql and
//! openjdk-17-jre-headless come from test.sh. Each check comes with a
//! control that shows it can fail.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use common::{
    ELFPACK, compile, describe, elfpack, require_root, run_elfpack, stdout_ok, text, walk, workdir,
};

const INITDB: &str = "/usr/lib/postgresql/15/bin/initdb";

/// An image loaded into podman from an OCI archive; removed when dropped.
struct Image(String);

impl Image {
    /// `elfpack ARGS --oci DIR/NAME.tar --tag NAME:test`, then `podman load`.
    fn pack(name: &str, args: &[&str], env: &[(&str, &str)]) -> Image {
        let w = workdir();
        let tar = w.path().join(format!("{name}.tar"));
        let o = elfpack()
            .args(args)
            .arg("--oci")
            .arg(&tar)
            .arg("--tag")
            .arg(format!("{name}:test"))
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(o.status.success(), "elfpack {args:?}: {}", describe(&o));
        Image::load(&tar, name)
    }

    /// `podman load -i TAR` of an archive tagged NAME:test.
    fn load(tar: &Path, name: &str) -> Image {
        let l = common::podman_load(tar);
        assert!(l.status.success(), "podman load: {}", describe(&l));
        Image(format!("localhost/{name}:test"))
    }

    /// `podman run --rm --network=none [--user USER] [-e K=V]... IMAGE ARGS`.
    fn run(&self, user: Option<&str>, env: &[&str], args: &[&str]) -> Output {
        let hard = rlimit_nofile();
        let nofile = format!("nofile={hard}:{hard}");
        let mut argv = vec![
            "run",
            "--rm",
            "--network=none",
            "--ulimit",
            &nofile,
            "--ulimit",
            "nproc=4096:4096",
        ];
        if let Some(u) = user {
            argv.extend(["--user", u]);
        }
        for e in env {
            argv.extend(["-e", e]);
        }
        argv.push(&self.0);
        argv.extend_from_slice(args);
        podman(&argv)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "-f", &self.0]);
    }
}

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(["--runtime", "/usr/sbin/runc"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("podman {args:?}: {e} (test.sh installs podman and runc)"))
}

fn rlimit_nofile() -> String {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_max == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        lim.rlim_max.to_string()
    }
}

fn needs(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing (test.sh installs {package})"
    );
}

/// The generated /etc has Debian's static accounts (base-passwd), so
/// getgrnam("nogroup") and getpwnam("www-data") work in the image, as root
/// and as nonroot (65532); `--no-etc` is the control.
#[test]
fn base_accounts_resolve_in_a_scratch_image() {
    if !require_root("accounts in podman") {
        return;
    }
    let w = workdir();
    let prog = compile(w.path(), "accounts.c", &[]);
    let root = w.path().join("root");
    let o = common::pack_with(&[&prog], &root, &[]);
    assert!(o.status.success(), "{}", describe(&o));
    // Debian's defaults, id for id (base-passwd's master files, not the
    // host's passwd).
    for (file, master) in [
        ("etc/passwd", "/usr/share/base-passwd/passwd.master"),
        ("etc/group", "/usr/share/base-passwd/group.master"),
    ] {
        let ours = std::fs::read_to_string(root.join(file)).unwrap();
        let master = std::fs::read_to_string(master).unwrap();
        for l in master.lines() {
            let f: Vec<&str> = l.split(':').collect();
            let want = format!("{}:x:{}:", f[0], f[2]);
            assert!(ours.contains(&want), "{file} lacks {want}:\n{ours}");
        }
    }
    let prog_s = prog.to_str().unwrap();
    let img = Image::pack("elfpack-real-accounts", &[prog_s], &[]);
    for user in [None, Some("65532")] {
        let o = img.run(user, &[], &[]);
        let out = text(&o.stdout);
        assert!(o.status.success(), "{user:?}: {}", describe(&o));
        assert!(out.contains("nogroup 65534\n"), "{out}");
        assert!(out.contains("www-data 33 33\n"), "{out}");
        assert!(out.contains("daemon 1 1\n"), "{out}");
        assert!(out.contains("65532 is nonroot\n"), "{out}");
    }
    // Control: without the generated /etc nothing resolves.
    let o = run_elfpack(&[prog_s, "--no-etc", "--test"]);
    assert!(!o.status.success(), "{}", describe(&o));
    assert!(text(&o.stdout).contains("failed"), "{}", describe(&o));
}

/// `nginx -t` with Debian's config: the trace ships the config and creates
/// the directories nginx writes in (/run for its pid file, /var/log/nginx)
/// with the host's modes, but not the files it wrote; the image passes the
/// config test as root in podman (Debian's config runs workers as www-data
/// in group nogroup, from the generated /etc). Control: the ELF closure
/// alone fails.
#[test]
fn nginx_config_test_runs_from_scratch_with_its_write_dirs() {
    if !require_root("nginx in podman") {
        return;
    }
    needs("/usr/sbin/nginx", "nginx");
    let w = workdir();
    let root = w.path().join("root");
    let tar = w.path().join("nginx.tar");
    let o = common::pack_with(
        &[Path::new("/usr/sbin/nginx")],
        &root,
        &[
            "--oci",
            tar.to_str().unwrap(),
            "--tag",
            "elfpack-real-nginx:test",
            "--trace-run",
            "nginx -t",
            "--test",
            "--",
            "-t",
        ],
    );
    assert!(o.status.success(), "{}", describe(&o));
    for dir in ["/run", "/var/log/nginx"] {
        let ours = std::fs::symlink_metadata(root.join(&dir[1..])).unwrap();
        let host = std::fs::metadata(dir).unwrap();
        assert!(ours.is_dir(), "{dir}");
        assert_eq!(
            ours.permissions().mode() & 0o7777,
            host.permissions().mode() & 0o7777,
            "{dir}: the host's mode"
        );
    }
    assert!(root.join("etc/nginx/nginx.conf").is_file());
    for written in ["run/nginx.pid", "var/log/nginx/error.log"] {
        assert!(
            !root.join(written).exists(),
            "{written}: a file the run wrote shipped"
        );
    }
    let img = Image::load(&tar, "elfpack-real-nginx");
    let o = img.run(None, &[], &["-t"]);
    assert!(o.status.success(), "nginx -t: {}", describe(&o));
    assert!(
        text(&o.stderr).contains("test is successful"),
        "{}",
        describe(&o)
    );
    // Control: the ELF closure alone has no config and no /run.
    let bare = Image::pack(
        "elfpack-real-nginx-bare",
        &["/usr/sbin/nginx", "--no-package-data"],
        &[],
    );
    let o = bare.run(None, &[], &["-t"]);
    assert!(!o.status.success(), "{}", describe(&o));
}

/// postgres's initdb refuses to run as root: traced as another user
/// (--trace-user nobody) it brings the server it runs through
/// `popen` -> /bin/sh -c, with their closures, and its share files; the
/// image initialises a cluster in podman as uid 65532. Control: traced as
/// root, the run fails and elfpack says so.
#[test]
fn initdb_traced_as_another_user_initialises_a_cluster_as_nonroot() {
    if !require_root("initdb in podman") {
        return;
    }
    needs(INITDB, "postgresql-15");
    // A data directory nobody may write, outside the output.
    let data_parent = tempfile::Builder::new()
        .prefix("elfpack-initdb")
        .tempdir_in("/tmp")
        .unwrap();
    std::os::unix::fs::chown(data_parent.path(), Some(65534), Some(65534)).unwrap();
    let data = data_parent.path().join("data");
    let data_s = data.to_str().unwrap();
    let args = [
        "-D",
        data_s,
        "-N",
        "--no-locale",
        "-E",
        "UTF8",
        "-A",
        "trust",
    ];
    let env = [("TZ", "UTC")];

    // Control first: as root initdb refuses, and the trace fails.
    let o = elfpack()
        .args(["deps", INITDB, "--trace", "--"])
        .args(args)
        .envs(env)
        .current_dir("/")
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", describe(&o));
    assert!(
        text(&o.stderr).contains("cannot be run as root"),
        "{}",
        describe(&o)
    );

    let w = workdir();
    let root = w.path().join("root");
    let tar = w.path().join("initdb.tar");
    let o = Command::new(ELFPACK)
        .arg(INITDB)
        .arg("--rootfs")
        .arg(&root)
        .arg("--oci")
        .arg(&tar)
        .args(["--tag", "elfpack-real-initdb:test"])
        .args(["--trace", "--trace-user", "nobody", "--"])
        .args(args)
        .envs(env)
        .current_dir("/")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", describe(&o));
    // What it ran: the server (by absolute path, through /bin/sh -c).
    for p in ["usr/lib/postgresql/15/bin/postgres", "bin/sh"] {
        let m = std::fs::metadata(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(m.is_file() && m.mode() & 0o111 != 0, "{p}");
    }
    assert!(!root.join(&data_s[1..]).exists(), "the run's data shipped");

    let img = Image::load(&tar, "elfpack-real-initdb");
    let o = img.run(
        Some("65532"),
        &["TZ=UTC"],
        &[
            "-D",
            "/tmp/data",
            "-N",
            "--no-locale",
            "-E",
            "UTF8",
            "-A",
            "trust",
        ],
    );
    assert!(o.status.success(), "initdb as 65532: {}", describe(&o));
    assert!(text(&o.stdout).contains("Success."), "{}", describe(&o));
}

/// Several traced runs in one pack, of different programs: each brings
/// its own modules.
#[test]
fn several_trace_runs_in_one_pack() {
    if !require_root("chroot") {
        return;
    }
    let w = workdir();
    let root = w.path().join("root");
    let o = common::pack_with(
        &[Path::new("/usr/bin/python3"), Path::new("/usr/bin/perl")],
        &root,
        &[
            "--trace-run",
            "python3 -c 'import json; print(json.dumps([1]))'",
            "--trace-run",
            "perl -MPOSIX -e 'print floor(2.5)'",
        ],
    );
    assert!(o.status.success(), "{}", describe(&o));
    let d = common::RootD::new(&root);
    let py = common::run_in(
        d.root(),
        &[
            "/usr/bin/python3",
            "-c",
            "import json; print(json.dumps([1]))",
        ],
    );
    assert_eq!(text(&py.stdout), "[1]\n", "{}", describe(&py));
    let pl = common::run_in(
        d.root(),
        &["/usr/bin/perl", "-MPOSIX", "-e", "print floor(2.5)"],
    );
    assert_eq!(text(&pl.stdout), "2", "{}", describe(&pl));
    // The report names both runs.
    let o = run_elfpack(&[
        "deps",
        "/usr/bin/python3",
        "/usr/bin/perl",
        "--trace-run",
        "python3 -c 'import json'",
        "--trace-run",
        "perl -MPOSIX -e 1",
    ]);
    let out = stdout_ok(o);
    assert!(
        out.contains("traced `/usr/bin/python3 -c 'import json'`"),
        "{out}"
    );
    assert!(out.contains("traced `/usr/bin/perl -MPOSIX -e 1`"), "{out}");
    // A name that is neither packed nor on PATH is one clear error.
    let o = run_elfpack(&["deps", "/usr/bin/perl", "--trace-run", "no-such-prog-x -v"]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("no-such-prog-x is neither") && err.lines().count() == 1,
        "{err}"
    );
}

/// `--rootfs DIR --test` leaves DIR as packing wrote it, although the
/// program writes a private key (in an overlay that is thrown away);
/// `--test-user` runs it as that user: nonroot may not write into /etc,
/// root may.
#[test]
fn test_never_writes_into_the_output_and_runs_as_the_test_user() {
    if !require_root("--test") {
        return;
    }
    let w = workdir();
    let tested = w.path().join("tested");
    let plain = w.path().join("plain");
    let keygen = Path::new("/usr/bin/ssh-keygen");
    let args = ["-q", "-t", "ed25519", "-N", "", "-f", "/etc/key"];
    let mut with_test = vec!["--test", "--"];
    with_test.extend(args);
    let o = common::pack_with(&[keygen], &tested, &with_test);
    assert!(o.status.success(), "{}", describe(&o));
    common::pack(&[keygen], &plain);
    let list = |r: &Path| -> Vec<String> {
        let mut v: Vec<String> = walk(r)
            .iter()
            .map(|p| p.strip_prefix(r).unwrap().display().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(list(&tested), list(&plain), "--test changed the output");
    assert!(!tested.join("etc/key").exists());
    // As nonroot the same command fails (it may not write /etc), as root it
    // passed: --test-user really switches.
    let mut as_nonroot = vec!["--test", "--test-user", "65532", "--"];
    as_nonroot.extend(args);
    let o = common::pack_with(&[keygen], &w.path().join("nonroot"), &as_nonroot);
    assert!(!o.status.success(), "{}", describe(&o));
    let o = run_elfpack(&["/usr/bin/id", "--test", "--test-user", "nonroot"]);
    assert_eq!(
        stdout_ok(o),
        "uid=65532(nonroot) gid=65532(nonroot) groups=65532(nonroot)\n"
    );
}

/// Warnings that matter: libraries that import iconv_open (libstdc++,
/// libunistring under curl) do not warn; a program that converts charsets
/// itself does, and names the fix. java's libjava.so finds the libjvm.so
/// the JVM loaded before it.
#[test]
fn warnings_fire_only_where_they_matter() {
    let w = workdir();
    let hello = compile(w.path(), "hello.cpp", &[]);
    for p in [hello.to_str().unwrap(), "/usr/bin/curl"] {
        let o = run_elfpack(&["deps", p]);
        assert!(o.status.success(), "{}", describe(&o));
        assert!(!text(&o.stderr).contains("iconv"), "{p}: {}", describe(&o));
    }
    let o = run_elfpack(&["deps", "/usr/bin/iconv"]);
    let err = text(&o.stderr);
    assert!(
        err.contains("/usr/bin/iconv calls iconv_open") && err.contains("--gconv"),
        "{err}"
    );
    needs("/usr/bin/java", "openjdk-17-jre-headless");
    let o = run_elfpack(&["deps", "/usr/bin/java", "--trace", "--", "-version"]);
    let out = stdout_ok(o.clone());
    assert!(out.contains("/lib/server/libjvm.so"), "{out}");
    assert!(
        !text(&o.stderr).contains("shipped without its libraries"),
        "{}",
        describe(&o)
    );
}
