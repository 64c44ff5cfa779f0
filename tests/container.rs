//! End to end with a real container runtime: elfpack writes a rootfs and a
//! `FROM scratch` Dockerfile, podman builds it, runc runs it (the recipe in
//! DEVELOPERS.md). podman must be installed (.ci/run installs it): when it is
//! missing this test fails instead of passing silently.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{compile, describe, elfpack, require_root, run_host, text, workdir};

const RUNC: &str = "/usr/sbin/runc";

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .arg("--runtime")
        .arg(RUNC)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("podman {args:?}: {e} (.ci/run installs podman and runc)"))
}

/// An image tag removed when dropped, also when the test fails.
struct Image(&'static str);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "-f", self.0]);
    }
}

/// `elfpack PROG --rootfs CTX/rootfs --dockerfile CTX/Dockerfile`, then
/// `podman build --isolation chroot -t TAG CTX`.
fn build(prog: &Path, tag: &'static str) -> Image {
    build_from(prog, "rootfs", tag)
}

/// [`build`] with the rootfs in CTX/ROOTFS_NAME.
fn build_from(prog: &Path, rootfs_name: &str, tag: &'static str) -> Image {
    let w = workdir();
    let ctx = w.path();
    let o = elfpack()
        .arg(prog)
        .arg("--rootfs")
        .arg(ctx.join(rootfs_name))
        .arg("--dockerfile")
        .arg(ctx.join("Dockerfile"))
        .output()
        .unwrap();
    assert!(o.status.success(), "elfpack: {}", describe(&o));
    let df = std::fs::read_to_string(ctx.join("Dockerfile")).unwrap();
    assert!(df.starts_with("FROM scratch\n"), "{df}");
    let image = Image(tag);
    let o = podman(&[
        "build",
        "--isolation",
        "chroot",
        "-t",
        tag,
        ctx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "podman build: {}", describe(&o));
    image
}

/// `podman run --rm --network=none` with the ulimits the recipe gives.
fn run(image: &Image, args: &[&str]) -> Output {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let hard = if lim.rlim_max == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        lim.rlim_max.to_string()
    };
    let nofile = format!("nofile={hard}:{hard}");
    let mut argv = vec![
        "run",
        "--rm",
        "--network=none",
        "--ulimit",
        &nofile,
        "--ulimit",
        "nproc=4096:4096",
        image.0,
    ];
    argv.extend_from_slice(args);
    podman(&argv)
}

#[test]
fn from_scratch_image_runs_under_podman_and_runc() {
    if !require_root("podman end-to-end") {
        return;
    }
    let v = Command::new("podman").arg("--version").output();
    assert!(
        v.as_ref().is_ok_and(|o| o.status.success()),
        "podman is missing (.ci/run installs it): {v:?}"
    );
    assert!(
        Path::new(RUNC).exists(),
        "{RUNC} is missing (apt-get install runc)"
    );

    // curl: the same output as on the host.
    let host = run_host(&["/usr/bin/curl", "--version"]);
    assert!(host.status.success());
    let curl = build(Path::new("/usr/bin/curl"), "elfpack-test-curl");
    let o = run(&curl, &["--version"]);
    assert!(o.status.success(), "podman run curl: {}", describe(&o));
    assert_eq!(text(&o.stdout), text(&host.stdout), "{}", describe(&o));

    // NSS in the container: getpwuid(0) and getaddrinfo("localhost").
    let w = workdir();
    let nss = compile(w.path(), "nss.c", &[]);
    let img = build(&nss, "elfpack-test-nss");
    let o = run(&img, &[]);
    assert!(o.status.success(), "podman run nss: {}", describe(&o));
    assert_eq!(
        text(&o.stdout),
        "user root, localhost resolves\n",
        "{}",
        describe(&o)
    );
}

/// The Dockerfile's COPY must name a rootfs directory whatever its name (a
/// space splits the shell form `COPY my root/ /` into three arguments).
#[test]
fn rootfs_directory_name_with_a_space() {
    if !require_root("podman, rootfs name with a space") {
        return;
    }
    let w = workdir();
    let hello = compile(w.path(), "hello.c", &[]);
    let img = build_from(&hello, "my root", "elfpack-test-space");
    let o = run(&img, &[]);
    assert!(o.status.success(), "podman run: {}", describe(&o));
    assert_eq!(text(&o.stdout), "hello from C\n");
}
