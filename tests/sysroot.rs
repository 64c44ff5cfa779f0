//! `--sysroot`: packing another machine's programs from its root. The root
//! is an arm64 Debian made here from Debian's own arm64 packages
//! (`dpkg-deb -x` of libc6, libstdc++6 and libgcc-s1, downloaded once into
//! the target directory), the program a C++ hello built by
//! `aarch64-linux-gnu-g++`; the results run under `chroot` through
//! qemu-user-static registered in binfmt_misc with the F (fix binary) flag,
//! so the chroot needs no qemu inside.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{describe, stdout_ok, text};

const HELLO: &str = "hello from C++, exception caught\n";

/// The arm64 root (with /opt/hello in it), made once per test run.
fn sysroot() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("arm64");
        let debs = base.join("debs");
        std::fs::create_dir_all(&debs).unwrap();
        let want = ["libc6", "libstdc++6", "libgcc-s1"];
        let have = |d: &Path| -> usize {
            std::fs::read_dir(d)
                .map(|e| {
                    e.flatten()
                        .filter(|e| e.file_name().to_string_lossy().ends_with("_arm64.deb"))
                        .count()
                })
                .unwrap_or(0)
        };
        if have(&debs) < want.len() {
            let sh = format!(
                "set -e; dpkg --print-foreign-architectures | grep -qx arm64 || \
                 {{ dpkg --add-architecture arm64; apt-get update -qq; }}; \
                 cd {}; apt-get download -qq {} || {{ apt-get update -qq; apt-get download -qq {}; }}",
                debs.display(),
                want.map(|p| format!("{p}:arm64")).join(" "),
                want.map(|p| format!("{p}:arm64")).join(" "),
            );
            let o = Command::new("sh").arg("-c").arg(sh).output().unwrap();
            assert!(o.status.success(), "arm64 packages: {}", describe(&o));
        }
        let root = base.join("root");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("opt")).unwrap();
        for deb in std::fs::read_dir(&debs).unwrap().flatten() {
            let o = Command::new("dpkg-deb")
                .arg("-x")
                .arg(deb.path())
                .arg(&root)
                .output()
                .unwrap();
            assert!(o.status.success(), "dpkg-deb: {}", describe(&o));
        }
        let o = Command::new("aarch64-linux-gnu-g++")
            .arg(format!("{}/hello.cpp", common::FIXTURES))
            .arg("-O2")
            .arg("-o")
            .arg(root.join("opt/hello"))
            .output()
            .expect("aarch64-linux-gnu-g++ runs (test.sh installs g++-aarch64-linux-gnu)");
        assert!(o.status.success(), "aarch64 g++: {}", describe(&o));
        root
    })
}

/// Registers qemu-aarch64 in binfmt_misc with Debian's line (flags OCF or
/// OPF: F opens the interpreter now, so chroots need no qemu).
fn binfmt_aarch64() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = Path::new("/proc/sys/fs/binfmt_misc");
        if !dir.join("register").exists() {
            let o = Command::new("mount")
                .args(["-t", "binfmt_misc", "binfmt_misc"])
                .arg(dir)
                .output()
                .unwrap();
            assert!(o.status.success(), "mount binfmt_misc: {}", describe(&o));
        }
        let entry = dir.join("qemu-aarch64");
        if !entry.exists() {
            let line = std::fs::read("/usr/lib/binfmt.d/qemu-aarch64.conf")
                .expect("qemu-user-static's binfmt line (test.sh installs qemu-user-static)");
            // Another test may register it between the check and the write.
            let _ = std::fs::write(dir.join("register"), line);
        }
        let state = std::fs::read_to_string(&entry).unwrap();
        assert!(state.starts_with("enabled"), "{state}");
        assert!(
            state.contains("flags: ")
                && state
                    .lines()
                    .any(|l| l.starts_with("flags:") && l.contains('F')),
            "{state}"
        );
    });
}

fn elfpack(args: &[&str]) -> std::process::Output {
    common::elfpack()
        .arg("--sysroot")
        .arg(sysroot())
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn deps_resolves_inside_the_sysroot() {
    let out = stdout_ok(
        common::elfpack()
            .args(["deps", "--json", "--sysroot"])
            .arg(sysroot())
            .arg("/opt/hello")
            .output()
            .unwrap(),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let p = &v["programs"][0];
    assert_eq!(p["interpreter"], "/lib/ld-linux-aarch64.so.1");
    let libs: Vec<(String, String)> = p["libraries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_string(),
                l["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (name, path) in [
        (
            "libstdc++.so.6",
            "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
        ),
        ("libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6"),
        ("libgcc_s.so.1", "/lib/aarch64-linux-gnu/libgcc_s.so.1"),
        ("libm.so.6", "/lib/aarch64-linux-gnu/libm.so.6"),
    ] {
        assert!(
            libs.contains(&(name.to_string(), path.to_string())),
            "{name} at {path} in {libs:?}"
        );
    }
    // The host's x86-64 libraries never enter: the same name on the host
    // is another file.
    assert!(!out.contains("x86_64"), "{out}");
}

#[test]
fn rootfs_tarball_and_prefix_of_an_arm64_program_run_under_qemu() {
    if !common::require_root("sysroot runs (chroot, binfmt_misc)") {
        return;
    }
    binfmt_aarch64();
    let w = common::workdir();
    let root = w.path().join("root");
    let o = elfpack(&["/opt/hello", "--rootfs", root.to_str().unwrap()]);
    assert!(o.status.success(), "{}", describe(&o));
    assert!(root.join("lib/aarch64-linux-gnu/libc.so.6").is_file());
    assert!(!root.join("lib/x86_64-linux-gnu").exists());
    assert_eq!(text(&common::run_in(&root, &["/opt/hello"]).stdout), HELLO);

    let tar = w.path().join("hello.tar");
    let o = elfpack(&["/opt/hello", "-o", tar.to_str().unwrap()]);
    assert!(o.status.success(), "{}", describe(&o));
    let x = w.path().join("x");
    std::fs::create_dir(&x).unwrap();
    let o = Command::new("tar")
        .arg("xf")
        .arg(&tar)
        .arg("-C")
        .arg(&x)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", describe(&o));
    assert_eq!(text(&common::run_in(&x, &["/opt/hello"]).stdout), HELLO);

    let pfx = w.path().join("pfx");
    let o = elfpack(&[
        "/opt/hello",
        "--prefix",
        "/opt/hb",
        "--rootfs",
        pfx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", describe(&o));
    assert_eq!(
        text(&common::run_in(&pfx, &["/opt/hb/opt/hello"]).stdout),
        HELLO
    );
}

#[test]
fn bad_sysroot_input_is_one_clear_line() {
    let w = common::workdir();
    let single = w.path().join("hello.packed");
    let o = elfpack(&["/opt/hello", "-o", single.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("aarch64") && err.contains("launcher"), "{err}");
    assert!(!single.exists());
    let o = elfpack(&[
        "opt/hello",
        "--rootfs",
        w.path().join("r").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("absolute path inside"),
        "{}",
        describe(&o)
    );
    let o = common::elfpack()
        .args([
            "--sysroot",
            "/nonexistent-sysroot",
            "/opt/hello",
            "--rootfs",
        ])
        .arg(w.path().join("r"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("--sysroot /nonexistent-sysroot"),
        "{}",
        describe(&o)
    );
    assert!(!w.path().join("r").exists());
}

#[test]
fn two_systems_make_one_multi_platform_image() {
    if !common::require_root("multi-platform image (podman, binfmt_misc)") {
        return;
    }
    binfmt_aarch64();
    let w = common::workdir();
    // The same program path on this host and inside the arm64 root.
    let host_hello = common::compile(w.path(), "hello.cpp", &["-O2"]);
    let in_root = sysroot().join(host_hello.strip_prefix("/").unwrap());
    std::fs::create_dir_all(in_root.parent().unwrap()).unwrap();
    let o = Command::new("aarch64-linux-gnu-g++")
        .arg(format!("{}/hello.cpp", common::FIXTURES))
        .args(["-O2", "-o"])
        .arg(&in_root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", describe(&o));
    let oci = w.path().join("multi.tar");
    let reg = common::registry::Registry::start(w.path(), None, None);
    let pushed = format!("{}/sysroot-multi/hello:1", reg.host());
    let o = common::elfpack()
        .args(["--sysroot", "/", "--sysroot"])
        .arg(sysroot())
        .arg(&host_hello)
        .arg("--oci")
        .arg(&oci)
        .args(["--tag", "sysroot-multi:1", "--push", &pushed])
        .env("XDG_CACHE_HOME", w.path().join("cache"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", describe(&o));
    let raw = stdout_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}", oci.display()))
            .output()
            .unwrap(),
    );
    let index: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{raw}"
    );
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            format!(
                "{}/{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap(),
                p["variant"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64/", "linux/arm64/v8"], "{raw}");
    // What elfpack pushed is that index, byte for byte.
    let remote = stdout_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{pushed}"))
            .output()
            .unwrap(),
    );
    assert_eq!(remote, raw);
    // skopeo copies the archive's every platform to the registry too.
    let copied = format!("{}/sysroot-multi/copied:1", reg.host());
    let o = Command::new("skopeo")
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}", oci.display()))
        .arg(format!("docker://{copied}"))
        .output()
        .unwrap();
    assert!(o.status.success(), "skopeo copy --all: {}", describe(&o));
    for (reference, platform) in [
        (&pushed, "linux/arm64"),
        (&copied, "linux/arm64"),
        (&pushed, "linux/amd64"),
    ] {
        let out = podman_platform_run(reference, platform);
        assert_eq!(out, HELLO, "{reference} on {platform}");
    }
}

/// `podman run --platform P` of a registry image (pulled over plain HTTP).
fn podman_platform_run(reference: &str, platform: &str) -> String {
    let pulled = Command::new("podman")
        .args([
            "pull",
            "-q",
            "--tls-verify=false",
            "--platform",
            platform,
            reference,
        ])
        .output()
        .expect("podman is installed");
    assert!(
        pulled.status.success(),
        "podman pull: {}",
        describe(&pulled)
    );
    let run = common::podman_run()
        .args(["--platform", platform])
        .arg(reference)
        .output()
        .unwrap();
    let _ = Command::new("podman")
        .args(["rmi", "-f", reference])
        .output();
    stdout_ok(run)
}
