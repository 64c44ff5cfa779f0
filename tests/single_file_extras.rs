//! Issue 6's checks for programs that load code and data at run time, as
//! single files (`-o FILE`) and `--prefix` bundles: `--trace`, `--add`,
//! `--ca-certs`, `--tzdata`, `--locale`, `#!` scripts and CGo. Each single
//! file runs alone in root D (an empty directory holding just the file, plus
//! /proc, the /dev nodes and the runtime's /etc files), where the files the
//! options bring exist only inside the bundle. Most checks come with a
//! control packed without the option, which must fail.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use common::{PY_CODE, ReadOnly, RootD, describe, require_root, stdout_ok, text};

/// A single file packed from `args`, alone in a fresh root D.
struct Single {
    // Dropped first: /proc is unmounted before the directory is removed.
    _d: RootD,
    _work: tempfile::TempDir,
    root: PathBuf,
    name: String,
}

impl Single {
    /// `elfpack ARGS -o NAME` (with `env` for the pack), then root D around it.
    fn pack(name: &str, args: &[&str], env: &[(&str, &str)]) -> Single {
        let work = common::workdir();
        let root = work.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let o = common::elfpack()
            .arg("-o")
            .arg(root.join(name))
            .args(["--compress", "fast", "--no-layer-size"])
            .args(args)
            .envs(env.iter().copied())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "elfpack {args:?}: {}", describe(&o));
        let d = RootD::new(&root);
        Single {
            _d: d,
            _work: work,
            root,
            name: name.to_string(),
        }
    }

    /// Runs `/NAME ARGS` chrooted (as `user` when given) with only PATH and
    /// `env` set, for at most 60 s.
    fn run_as(&self, user: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut c = Command::new("timeout");
        c.args(["60", "/usr/sbin/chroot"]);
        if let Some(u) = user {
            c.arg(format!("--userspec={u}"));
        }
        c.arg(&self.root)
            .arg(format!("/{}", self.name))
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn run(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        self.run_as(None, env, args)
    }
}

#[test]
fn python_traced_as_a_single_file_runs_its_imports() {
    if !require_root("python single file") {
        return;
    }
    let s = Single::pack(
        "python3",
        &["/usr/bin/python3", "--trace", "--", "-c", PY_CODE],
        &[],
    );
    assert_eq!(stdout_ok(s.run(&[], &["-c", PY_CODE])), "1\n");
    // The stdlib comes from inside the bundle, through PYTHONHOME.
    let prefix = stdout_ok(s.run(&[], &["-c", "import sys; print(sys.prefix)"]));
    assert!(
        prefix.starts_with("/tmp/elfpack-0/") && prefix.ends_with("/usr\n"),
        "{prefix}"
    );
    // The user's PYTHONHOME wins over the bundle's: this one has no stdlib.
    let o = s.run(&[("PYTHONHOME", "/nowhere")], &["-c", PY_CODE]);
    assert!(!o.status.success(), "{}", describe(&o));

    let bare = Single::pack("python3", &["/usr/bin/python3", "--no-package-data"], &[]);
    let o = bare.run(&[], &["-c", PY_CODE]);
    assert!(
        !o.status.success(),
        "python3 ran without its stdlib?\n{}",
        describe(&o)
    );
}

#[test]
fn script_with_an_added_module_directory_as_a_single_file() {
    if !require_root("script single file") {
        return;
    }
    let script = format!("{}/trace/main.py", common::FIXTURES);
    let mods = format!("{}/trace/mods", common::FIXTURES);
    let add = format!("{mods}:/opt/mods");
    // /opt/mods does not exist where a single file runs as a user: --env
    // points the script at the bundle's copy. As root in an image's own
    // root, the launcher installs it at /opt/mods.
    let with_env = |env: bool| {
        let mut args = vec![script.as_str(), "--trace", "--add", &add];
        if env {
            args.extend(["--env", "GREET_PATH=${ELFPACK_BUNDLE}/opt/mods"]);
        }
        Single::pack("main", &args, &[("GREET_PATH", &mods)])
    };
    let s = with_env(true);
    assert_eq!(
        stdout_ok(s.run(&[], &[])),
        "hello from greet: added module\n"
    );
    let bare = with_env(false);
    let cache = bare.root.join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::os::unix::fs::chown(&cache, Some(65532), Some(65532)).unwrap();
    let o = bare.run_as(Some("65532:65532"), &[("ELFPACK_CACHE_DIR", "/cache")], &[]);
    assert!(
        !o.status.success() && text(&o.stderr).contains("No module named 'greet'"),
        "{}",
        describe(&o)
    );
    assert_eq!(
        stdout_ok(bare.run(&[], &[])),
        "hello from greet: added module\n"
    );
    assert!(
        bare.root.join("opt/mods/greet").is_dir(),
        "installed at /opt/mods"
    );
}

#[test]
fn scripts_get_the_kernels_argv() {
    if !require_root("script argv") {
        return;
    }
    let work = common::workdir();
    for line in ["#!/bin/sh -e", "#!/usr/bin/env sh", "#!/bin/sh"] {
        let script = work.path().join("args.sh");
        std::fs::write(
            &script,
            format!(
                "{line}\nprintf '%s|' \"$0\" \"$@\"; case $- in *e*) echo e;; *) echo;; esac\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let s = Single::pack("args", &[script.to_str().unwrap()], &[]);
        let out = stdout_ok(s.run(&[], &["a b", "c"]));
        // $0 is the bundled script, at its own path under the bundle's root.
        let (zero, rest) = out.split_once('|').unwrap();
        assert!(
            zero.starts_with("/tmp/elfpack-0/") && zero.ends_with(&script.display().to_string()),
            "{line}: {out}"
        );
        let flags = if line.ends_with("-e") { "e" } else { "" };
        assert_eq!(rest, format!("a b|c|{flags}\n"), "{line}");
    }
}

#[test]
fn cgo_program_as_a_single_file() {
    if !require_root("cgo single file") {
        return;
    }
    let work = common::workdir();
    let bin = common::build_cgo(work.path());
    let s = Single::pack("cgo", &[bin.to_str().unwrap()], &[]);
    let out = stdout_ok(s.run(&[("GODEBUG", "netdns=cgo")], &[]));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("root 0 root"), "{out}");
    assert!(
        lines.any(|a| a == "127.0.0.1" || a == "::1"),
        "no loopback address in {out}"
    );
}

#[test]
fn ca_certs_as_a_single_file_verify_a_local_tls_server() {
    if !require_root("ca-certs single file") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let server = common::TlsServer::start(tmp.path());
    let args = server.client_args();
    let client: Vec<&str> = args.iter().map(String::as_str).collect();
    let verified = |o: &Output| o.status.success() && text(&o.stderr).contains("Verification: OK");
    let ca_opt = format!("--ca-certs={}", server.bundle.display());
    let s = Single::pack("openssl", &["/usr/bin/openssl", &ca_opt], &[]);
    let o = s.run(&[], &client);
    assert!(verified(&o), "{}", describe(&o));
    // SSL_CERT_FILE set by the user wins: the host's bundle alone fails.
    std::fs::copy(
        "/etc/ssl/certs/ca-certificates.crt",
        s.root.join("host.pem"),
    )
    .unwrap();
    let o = s.run(&[("SSL_CERT_FILE", "/host.pem")], &client);
    assert!(
        !verified(&o),
        "the user's SSL_CERT_FILE was replaced?\n{}",
        describe(&o)
    );

    // Read-only root as uid 65532 with the package data (OpenSSL's
    // module directories, named by OPENSSL_MODULES): no place to unpack a
    // directory, so one line says how to give the program one.
    let ro_guard = ReadOnly::new(&s.root);
    let o = s.run_as(Some("65532:65532"), &[], &client);
    let err = text(&o.stderr);
    assert!(
        o.status.code() == Some(127)
            && err.lines().count() == 1
            && err.contains("needs a writable directory")
            && err.contains("ELFPACK_CACHE_DIR"),
        "{}",
        describe(&o)
    );
    drop(ro_guard);

    // Without package data (CA bundle and libraries only): no cache
    // directory, the launcher runs from memory and the bundle becomes a
    // memfd.
    let ro = Single::pack(
        "openssl",
        &["/usr/bin/openssl", &ca_opt, "--no-package-data"],
        &[],
    );
    let ro_guard = ReadOnly::new(&ro.root);
    let o = ro.run_as(Some("65532:65532"), &[("ELFPACK_DEBUG", "1")], &client);
    assert!(verified(&o), "{}", describe(&o));
    assert!(
        text(&o.stderr).contains("running from memory"),
        "{}",
        describe(&o)
    );
    drop(ro_guard);

    for (label, opts) in [("no bundle", vec![]), ("host bundle", vec!["--ca-certs"])] {
        let mut args = vec!["/usr/bin/openssl"];
        args.extend(opts);
        let c = Single::pack("openssl", &args, &[]);
        let o = c.run(&[], &client);
        assert!(!verified(&o), "{label}: verified?\n{}", describe(&o));
    }
}

#[test]
fn tzdata_and_locale_as_single_files() {
    if !require_root("tzdata single file") {
        return;
    }
    let host = text(
        &Command::new("date")
            .arg("+%Z")
            .env("TZ", "Europe/Paris")
            .output()
            .unwrap()
            .stdout,
    );
    assert!(host == "CET\n" || host == "CEST\n", "host says {host:?}");
    let tz = [("TZ", "Europe/Paris")];
    let s = Single::pack("date", &["/usr/bin/date", "--tzdata"], &[]);
    assert_eq!(stdout_ok(s.run(&tz, &["+%Z"])), host);
    let bare = Single::pack("date", &["/usr/bin/date"], &[]);
    assert_ne!(text(&bare.run(&tz, &["+%Z"]).stdout), host);

    let utf8 = [("LC_ALL", "C.UTF-8")];
    let s = Single::pack("locale", &["/usr/bin/locale", "--locale", "C.UTF-8"], &[]);
    assert_eq!(stdout_ok(s.run(&utf8, &["charmap"])), "UTF-8\n");
    let bare = Single::pack("locale", &["/usr/bin/locale"], &[]);
    assert_ne!(text(&bare.run(&utf8, &["charmap"]).stdout), "UTF-8\n");
}

#[test]
fn prefix_bundle_with_trace_and_a_script() {
    if !require_root("prefix extras") {
        return;
    }
    let work = common::workdir();
    let script = format!("{}/trace/main.py", common::FIXTURES);
    let mods = format!("{}/trace/mods", common::FIXTURES);
    let add = format!("{mods}:/opt/mods");
    let root = work.path().join("root");
    let o = common::elfpack()
        .args([
            &script,
            "--prefix",
            "/opt/app",
            "--trace",
            "--add",
            &add,
            "--env",
            "GREET_PATH=${ELFPACK_BUNDLE}/opt/mods",
            "--rootfs",
        ])
        .arg(&root)
        .env("GREET_PATH", &mods)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", describe(&o));
    assert!(
        text(&o.stderr).contains("/opt/app/etc/elfpack.env"),
        "{}",
        describe(&o)
    );
    let env = std::fs::read_to_string(root.join("opt/app/etc/elfpack.env")).unwrap();
    assert!(
        env.contains("PYTHONHOME='/opt/app/usr'") && env.contains("GREET_PATH='/opt/app/opt/mods'"),
        "{env}"
    );
    let _d = RootD::new(&root);
    // The script's #! line names the bundled interpreter.
    let run = |source: bool| {
        let chroot = format!(
            "{}exec /usr/sbin/chroot {} /opt/app{script}",
            if source {
                format!(". {}/opt/app/etc/elfpack.env; ", root.display())
            } else {
                String::new()
            },
            root.display()
        );
        Command::new("sh")
            .args(["-c", &chroot])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap()
    };
    assert_eq!(stdout_ok(run(true)), "hello from greet: added module\n");
    // Without the settings the interpreter has no stdlib.
    assert!(!run(false).status.success());
}

#[test]
fn added_programs_run_from_inside_the_single_file() {
    if !require_root("added program single file") {
        return;
    }
    // sqlite3 is not the entry: it sits at its own path in the bundle with the bundled loader
    // and lib dir written into it by the launcher at unpack time.
    let s = Single::pack(
        "sh",
        &[
            "/bin/sh",
            "--add",
            "/usr/bin/sqlite3",
            "--env",
            "SQ=${ELFPACK_BUNDLE}/usr/bin/sqlite3",
        ],
        &[],
    );
    let o = s.run(&[], &["-c", "\"$SQ\" :memory: 'select 40+2;'"]);
    assert_eq!(stdout_ok(o), "42\n");
    // The user's own SQ is kept.
    let o = s.run(
        &[("SQ", "/nonexistent")],
        &["-c", "\"$SQ\" :memory: 'select 1;'"],
    );
    assert!(!o.status.success(), "{}", describe(&o));
}
