//! Programs that load code and data at run time (issue 6): `--trace`,
//! `--add`, `--ca-certs`, `--tzdata`, `--locale`, scripts and CGo, each run in
//! root D: elfpack's `--rootfs` output plus /proc, the /dev nodes and the
//! runtime's /etc files, what a container runtime gives a FROM scratch
//! image. Needs root (chroot, mount).
//!
//! Most checks come with a control that packs the same program without the
//! option and expects the run to fail, so a check cannot pass by accident.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{ELFPACK, FIXTURES as FIX, PY_CODE, describe as show, run_elfpack as elfpack, text};

/// elfpack's `--rootfs` output in root D ([`common::RootD`], keeping the
/// image's /tmp).
struct Tree {
    // Dropped first: /proc is unmounted before the directory is removed.
    d: common::RootD,
    _work: tempfile::TempDir,
}

impl Tree {
    /// Runs elfpack with `args` + `--rootfs DIR` (and the extra environment
    /// `env`), then adds what a container runtime adds.
    fn pack(args: &[&str], env: &[(&str, &str)]) -> Tree {
        let work = common::workdir();
        let dir = work.path().join("root");
        let out = common::elfpack()
            .arg("--rootfs")
            .arg(&dir)
            .args(args)
            .envs(env.iter().copied())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .unwrap();
        assert!(out.status.success(), "elfpack {args:?}: {}", show(&out));
        Tree {
            d: common::RootD::keeping_tmp(&dir),
            _work: work,
        }
    }

    /// Runs `argv` in the root with only `env` (and PATH) set, for at most 60 s.
    fn run(&self, env: &[(&str, &str)], argv: &[&str]) -> Output {
        Command::new("timeout")
            .arg("60")
            .arg("/usr/sbin/chroot")
            .arg(self.d.root())
            .args(argv)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn has(&self, path: &str) -> bool {
        self.d
            .root()
            .join(path.trim_start_matches('/'))
            .symlink_metadata()
            .is_ok()
    }
}

#[test]
fn python_with_trace_runs_its_imports() {
    // /usr/bin/python3 is Debian's (the first python3 on PATH may be another).
    let d = Tree::pack(&["/usr/bin/python3", "--trace", "--", "-c", PY_CODE], &[]);
    let o = d.run(&[], &["/usr/bin/python3", "-c", PY_CODE]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(text(&o.stdout), "1\n");
    // An extension module was dlopen'd and shipped with its own library.
    assert!(d.has("/usr/lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so"));
    assert!(d.has("/lib/x86_64-linux-gnu/libssl.so.3"));

    // Control: without --trace (and package data) the interpreter has no standard library.
    let bare = Tree::pack(&["/usr/bin/python3", "--no-package-data"], &[]);
    let o = bare.run(&[], &["/usr/bin/python3", "-c", PY_CODE]);
    assert!(
        !o.status.success(),
        "python3 ran without its stdlib?\n{}",
        show(&o)
    );
}

#[test]
fn deps_reports_what_the_trace_added_and_why() {
    let o = elfpack(&["deps", "/usr/bin/python3", "--trace", "--", "-c", PY_CODE]);
    assert!(o.status.success(), "{}", show(&o));
    let out = text(&o.stdout);
    assert!(out.contains("traced `/usr/bin/python3 -c"), "{out}");
    let ssl = out
        .lines()
        .find(|l| l.contains("lib-dynload/_ssl."))
        .unwrap_or_else(|| panic!("no _ssl line in\n{out}"));
    assert!(ssl.contains("openat by pid"), "{ssl}");
    assert!(
        out.lines()
            .any(|l| l.contains("libssl.so.3")
                && l.contains("for /usr/lib/python3.11/lib-dynload/_ssl")),
        "{out}"
    );
    // --trace-stdin feeds the run; --trace-arg and `--` both give arguments.
    let tmp = tempfile::tempdir().unwrap();
    let code = tmp.path().join("code.py");
    std::fs::write(&code, "import decimal\n").unwrap();
    let o = elfpack(&[
        "deps",
        "/usr/bin/python3",
        "--no-package-data",
        "--trace",
        "--trace-stdin",
        code.to_str().unwrap(),
        "--trace-arg",
        "-S",
        "--",
        "-",
    ]);
    assert!(o.status.success(), "{}", show(&o));
    let with_stdin = text(&o.stdout);
    assert!(
        with_stdin.contains("traced `/usr/bin/python3 -S -`"),
        "{with_stdin}"
    );
    assert!(with_stdin.contains("lib-dynload/_decimal."), "{with_stdin}");
    assert!(!with_stdin.contains("lib-dynload/_ssl."), "{with_stdin}");
    // The host's loader cache is seen but never shipped as is.
    assert!(
        out.contains("/etc/ld.so.cache  (the image has its own)"),
        "{out}"
    );
}

#[test]
fn script_with_trace_and_added_module_directory() {
    let script = format!("{FIX}/trace/main.py");
    let mods = format!("{FIX}/trace/mods");
    let add = format!("{mods}:/opt/mods");
    // On the build machine the script finds the module through GREET_PATH;
    // in the image only at /opt/mods, where --add puts it.
    let d = Tree::pack(
        &[&script, "--trace", "--add", &add],
        &[("GREET_PATH", &mods)],
    );
    assert!(d.has("/usr/bin/python3"), "the interpreter is packed");
    let o = d.run(&[], &[&script]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(text(&o.stdout), "hello from greet: added module\n");
    assert!(d.has("/opt/mods/greet/words.py"));
}

#[test]
fn added_elf_brings_its_closure_and_globs_expand() {
    let d = Tree::pack(
        &[
            "/usr/bin/true",
            "--add",
            "/usr/bin/sqlite3",
            "--add",
            "/usr/share/zoneinfo/Europe/Par*:/zones/",
        ],
        &[],
    );
    let o = d.run(&[], &["/usr/bin/sqlite3", ":memory:", "select 40+2;"]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(text(&o.stdout), "42\n");
    assert!(d.has("/zones/Paris"));
}

#[test]
fn cgo_program_asks_nss_for_users_and_hosts() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = common::build_cgo(tmp.path());
    let bin = bin.to_str().unwrap();
    // A cgo binary is dynamic: it has an interpreter.
    let deps = elfpack(&["deps", bin]);
    assert!(
        text(&deps.stdout).contains("interpreter"),
        "{}",
        show(&deps)
    );

    let d = Tree::pack(&[bin], &[]);
    let o = d.run(&[("GODEBUG", "netdns=cgo")], &[bin]);
    assert!(o.status.success(), "{}", show(&o));
    let out = text(&o.stdout);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("root 0 root"), "{out}");
    let addrs: Vec<&str> = lines.collect();
    assert!(
        addrs.iter().any(|a| *a == "127.0.0.1" || *a == "::1"),
        "no loopback address in {out}"
    );
}

#[test]
fn ca_certs_bundle_verifies_a_local_tls_server() {
    let tmp = tempfile::tempdir().unwrap();
    let server = common::TlsServer::start(tmp.path());
    let args = server.client_args();
    let mut client = vec!["/usr/bin/openssl"];
    client.extend(args.iter().map(String::as_str));
    let client = client.as_slice();
    let ca_opt = format!("--ca-certs={}", server.bundle.display());
    let d = Tree::pack(&["/usr/bin/openssl", &ca_opt], &[]);
    assert!(d.has("/etc/ssl/certs/ca-certificates.crt"));
    assert!(d.has("/usr/lib/ssl/cert.pem"));
    let o = d.run(&[], client);
    assert!(o.status.success(), "{}", show(&o));
    assert!(text(&o.stderr).contains("Verification: OK"), "{}", show(&o));

    // Controls: without a bundle, and with only the host's, the test CA is unknown.
    let none = Tree::pack(&["/usr/bin/openssl"], &[]);
    let o = none.run(&[], client);
    assert!(
        !o.status.success(),
        "verified without any CA?\n{}",
        show(&o)
    );
    let host = Tree::pack(&["/usr/bin/openssl", "--ca-certs"], &[]);
    let o = host.run(&[], client);
    assert!(
        !o.status.success(),
        "verified with the host bundle?\n{}",
        show(&o)
    );
}

#[test]
fn tzdata_gives_named_time_zones() {
    let host = Command::new("date")
        .arg("+%Z")
        .env("TZ", "Europe/Paris")
        .output()
        .unwrap();
    let want = text(&host.stdout);
    assert!(want == "CET\n" || want == "CEST\n", "host says {want:?}");
    let d = Tree::pack(&["/usr/bin/date", "--tzdata"], &[]);
    let o = d.run(&[("TZ", "Europe/Paris")], &["/usr/bin/date", "+%Z"]);
    assert!(o.status.success(), "{}", show(&o));
    assert_eq!(text(&o.stdout), want);
    // The host's own setting (zoneinfo/localtime -> /etc/localtime) stays out.
    assert!(!d.has("/usr/share/zoneinfo/localtime"));

    let bare = Tree::pack(&["/usr/bin/date"], &[]);
    let o = bare.run(&[("TZ", "Europe/Paris")], &["/usr/bin/date", "+%Z"]);
    assert_ne!(text(&o.stdout), want, "time zones without tzdata?");
}

#[test]
fn locale_c_utf8_ships() {
    let d = Tree::pack(&["/usr/bin/locale", "--locale", "C.UTF-8"], &[]);
    let o = d.run(&[("LC_ALL", "C.UTF-8")], &["/usr/bin/locale", "charmap"]);
    assert_eq!(text(&o.stdout), "UTF-8\n", "{}", show(&o));
    let bare = Tree::pack(&["/usr/bin/locale"], &[]);
    let o = bare.run(&[("LC_ALL", "C.UTF-8")], &["/usr/bin/locale", "charmap"]);
    assert_ne!(text(&o.stdout), "UTF-8\n", "C.UTF-8 built in?");
}

#[test]
fn trace_never_ships_secrets_or_virtual_files() {
    let d = Tree::pack(
        &[
            "/usr/bin/cat",
            "--trace",
            "--",
            "/etc/shadow",
            "/etc/passwd",
            "/proc/version",
            "/etc/debian_version",
        ],
        &[],
    );
    assert!(d.has("/etc/debian_version"), "a plain file it read ships");
    assert!(!d.has("/etc/shadow"));
    // /proc is empty in the output (the test mounts it afterwards).
    let passwd = std::fs::read_to_string(d.d.root().join("etc/passwd")).unwrap();
    assert!(
        passwd.contains("nonroot:x:65532"),
        "generated passwd: {passwd}"
    );
}

#[test]
fn a_failing_or_hanging_run_is_an_error() {
    let o = elfpack(&["deps", "/usr/bin/false", "--trace"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("exited with status 1"),
        "{}",
        show(&o)
    );
    let o = elfpack(&["deps", "/usr/bin/false", "--trace", "--trace-allow-fail"]);
    assert!(o.status.success(), "{}", show(&o));

    let start = Instant::now();
    let o = elfpack(&[
        "deps",
        "/usr/bin/sleep",
        "--trace",
        "--trace-timeout",
        "1",
        "--",
        "30",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("did not finish within 1 s"),
        "{}",
        show(&o)
    );
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn trace_follows_forks_and_execs() {
    // sh runs date in a child process: date's closure and the zone file it
    // opened come through the trace.
    let o = Command::new(ELFPACK)
        .args([
            "deps",
            "/bin/sh",
            "--trace",
            "--",
            "-c",
            "/usr/bin/date >/dev/null; exit 0",
        ])
        .env("TZ", "Europe/Paris")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", show(&o));
    let out = text(&o.stdout);
    let date = out
        .lines()
        .find(|l| l.starts_with("  /usr/bin/date "))
        .unwrap_or_else(|| panic!("date not traced:\n{out}"));
    assert!(date.contains("execve by pid"), "{date}");
    assert!(out.contains("/usr/share/zoneinfo/Europe/Paris"), "{out}");
}
