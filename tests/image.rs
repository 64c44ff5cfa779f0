//! OCI archives, reproducible bytes, several programs in one output, and
//! `--test`, checked with the tools users would use (podman, skopeo, sha256).

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn elfpack(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_elfpack"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("elfpack runs")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sha256(p: &Path) -> String {
    ok(&Command::new("sha256sum").arg(p).output().unwrap())
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn outputs_are_byte_for_byte_reproducible() {
    let t = tempfile::tempdir().unwrap();
    let p = |n: &str| t.path().join(n).display().to_string();
    ok(&elfpack(
        &[
            "/usr/bin/sqlite3",
            "--oci",
            &p("a.tar"),
            "-o",
            &p("a-root.tar"),
        ],
        &[],
    ));
    // Different wall-clock time and a different working directory: same bytes.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut c = Command::new(env!("CARGO_BIN_EXE_elfpack"));
    c.args([
        "/usr/bin/sqlite3",
        "--oci",
        &p("b.tar"),
        "-o",
        &p("b-root.tar"),
    ])
    .current_dir(t.path());
    ok(&c.output().unwrap());
    assert_eq!(
        sha256(&t.path().join("a.tar")),
        sha256(&t.path().join("b.tar"))
    );
    assert_eq!(
        sha256(&t.path().join("a-root.tar")),
        sha256(&t.path().join("b-root.tar"))
    );
    // Single files too.
    for n in ["a", "b"] {
        ok(&elfpack(
            &[
                "/usr/bin/sqlite3",
                "-o",
                &p(&format!("{n}.packed")),
                "--compress",
                "fast",
                "--no-layer-size",
            ],
            &[],
        ));
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    assert_eq!(
        sha256(&t.path().join("a.packed")),
        sha256(&t.path().join("b.packed"))
    );
    // SOURCE_DATE_EPOCH is the only clock that enters the output.
    ok(&elfpack(
        &["/usr/bin/sqlite3", "-o", &p("c-root.tar")],
        &[("SOURCE_DATE_EPOCH", "1700000000")],
    ));
    assert_ne!(
        sha256(&t.path().join("a-root.tar")),
        sha256(&t.path().join("c-root.tar"))
    );
    let listing = ok(&Command::new("tar")
        .args(["tvf", &p("c-root.tar")])
        .output()
        .unwrap());
    assert!(
        listing
            .lines()
            .all(|l| l.contains(" 0/0 ") && l.contains("2023-11-14")),
        "{listing}"
    );
}

#[test]
fn several_programs_share_libraries_and_need_an_explicit_entrypoint() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let r = root.display().to_string();
    let df = t.path().join("Dockerfile").display().to_string();
    let o = elfpack(
        &[
            "/usr/bin/git",
            "/usr/bin/curl",
            "--rootfs",
            &r,
            "--dockerfile",
            &df,
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--entrypoint"));
    assert!(
        !root.exists(),
        "nothing is written when the command line is refused"
    );
    ok(&elfpack(
        &[
            "/usr/bin/git",
            "/usr/bin/curl",
            "--rootfs",
            &r,
            "--dockerfile",
            &df,
            "--entrypoint",
            "/usr/bin/git",
        ],
        &[],
    ));
    // libc and libz serve both programs from one copy each.
    for lib in ["libc.so.6", "libz.so.1"] {
        let copies = walk(&root)
            .into_iter()
            .filter(|p| p.file_name().unwrap() == lib)
            .count();
        assert_eq!(copies, 1, "{lib}");
    }
    let dockerfile = std::fs::read_to_string(&df).unwrap();
    assert!(
        dockerfile.contains(r#"ENTRYPOINT ["/usr/bin/git"]"#),
        "{dockerfile}"
    );
    if is_root() {
        let out = ok(&Command::new("chroot")
            .arg(&root)
            .args(["/usr/bin/curl", "--version"])
            .output()
            .unwrap());
        assert!(out.starts_with("curl "), "{out}");
        // git wants /dev/null: run it where a runtime would, through --test.
        let o = elfpack(
            &[
                "/usr/bin/git",
                "/usr/bin/curl",
                "--entrypoint",
                "/usr/bin/git",
                "--test",
                "--",
                "--version",
            ],
            &[],
        );
        assert!(ok(&o).starts_with("git version"));
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn self_test_passes_for_real_programs_and_fails_for_a_missing_library() {
    if !is_root() {
        eprintln!("skipped: --test needs root");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let o = elfpack(
        &[
            "/usr/bin/sqlite3",
            "--test",
            "--",
            ":memory:",
            "select 40+2;",
        ],
        &[],
    );
    assert_eq!(ok(&o).trim(), "42");
    let o = elfpack(&["/usr/bin/ls", "--test", "--", "-ln", "/proc/self/"], &[]);
    assert!(
        ok(&o).contains("exe ->"),
        "/proc is mounted in the test root"
    );
    // Deliberately leave a library out: the program's own error and exit != 0.
    let out = t.path().join("r").display().to_string();
    let o = elfpack(
        &[
            "/usr/bin/curl",
            "--exclude",
            "libz.so.*",
            "--rootfs",
            &out,
            "--test",
            "--",
            "--version",
        ],
        &[],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("libz.so.1: cannot open shared object file"),
        "{err}"
    );
    assert!(err.contains("exited with 127"), "{err}");
}

#[test]
fn podman_loads_and_runs_the_oci_archive() {
    if !is_root() {
        eprintln!("skipped: podman needs root here");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("curl.tar").display().to_string();
    ok(&elfpack(
        &[
            "/usr/bin/curl",
            "--oci",
            &img,
            "--tag",
            "elfpack-oci-test:1",
            "--env",
            "GREETING=hi",
            "--user",
            "65532",
            "--workdir",
            "/tmp",
            "--cmd",
            "--version",
        ],
        &[],
    ));
    let config = ok(&Command::new("skopeo")
        .args(["inspect", "--config", &format!("oci-archive:{img}")])
        .output()
        .expect("skopeo is installed"));
    let v: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        v["config"]["Entrypoint"],
        serde_json::json!(["/usr/bin/curl"])
    );
    assert_eq!(v["config"]["Cmd"], serde_json::json!(["--version"]));
    assert_eq!(v["config"]["User"], "65532");
    assert_eq!(v["config"]["WorkingDir"], "/tmp");
    assert!(
        v["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "GREETING=hi")
    );
    assert_eq!(v["architecture"], "amd64");
    ok(&Command::new("podman")
        .args(["load", "-i", &img])
        .output()
        .expect("podman is installed"));
    let run = common::podman_run()
        .arg("localhost/elfpack-oci-test:1")
        .output()
        .unwrap();
    let _ = Command::new("podman")
        .args(["rmi", "-f", "localhost/elfpack-oci-test:1"])
        .output();
    let out = ok(&run);
    assert!(out.starts_with("curl "), "{out}");
}

/// The layer digests of an OCI archive's (single) image, bottom first.
fn layer_digests(archive: &Path, scratch: &Path) -> Vec<std::path::PathBuf> {
    std::fs::create_dir_all(scratch).unwrap();
    ok(&Command::new("tar")
        .arg("xf")
        .arg(archive)
        .arg("-C")
        .arg(scratch)
        .output()
        .unwrap());
    let json = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let blob = |d: &serde_json::Value| {
        scratch
            .join("blobs/sha256")
            .join(d.as_str().unwrap().trim_start_matches("sha256:"))
    };
    let index = json(&scratch.join("index.json"));
    let manifest = json(&blob(&index["manifests"][0]["digest"]));
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| blob(&l["digest"]))
        .collect()
}

#[test]
fn images_of_two_programs_share_one_c_runtime_layer() {
    let t = tempfile::tempdir().unwrap();
    let mut layers = Vec::new();
    for prog in ["/usr/bin/sqlite3", "/usr/bin/curl"] {
        let name = Path::new(prog).file_name().unwrap().to_str().unwrap();
        let img = t.path().join(format!("{name}.tar"));
        ok(&elfpack(
            &[prog, "--oci", img.to_str().unwrap(), "--no-layer-size"],
            &[],
        ));
        layers.push(layer_digests(&img, &t.path().join(name)));
    }
    let (sqlite, curl) = (&layers[0], &layers[1]);
    assert_eq!(sqlite.len(), 2);
    assert_eq!(curl.len(), 2);
    let same = |a: &Path, b: &Path| std::fs::read(a).unwrap() == std::fs::read(b).unwrap();
    assert!(same(&sqlite[0], &curl[0]), "the C runtime layer is shared");
    assert!(!same(&sqlite[1], &curl[1]));
    let list = |p: &Path| ok(&Command::new("tar").arg("tzf").arg(p).output().unwrap());
    let base = list(&curl[0]);
    for f in [
        "/libc.so.6",
        "/libm.so.6",
        "/libgcc_s.so.1",
        "/ld-linux-x86-64.so.2",
        "etc/passwd",
        "etc/nsswitch.conf",
    ] {
        assert!(base.lines().any(|l| l.ends_with(f)), "{f} in\n{base}");
    }
    assert!(!base.contains("curl"), "{base}");
    let own = list(&curl[1]);
    assert!(
        own.contains("usr/bin/curl") && own.contains("libcurl"),
        "{own}"
    );
    assert!(!own.contains("libc.so.6"), "{own}");
}
