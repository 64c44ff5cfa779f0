//! End to end with a real container runtime: `FROM scratch` + `COPY` +
//! `ENTRYPOINT` from `--dockerfile`, built by podman and run with runc.

use std::path::Path;
use std::process::{Command, Output};

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn podman_run(image: &str, args: &[&str]) -> Output {
    let hard = ok(Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .unwrap())
    .trim()
    .to_string();
    Command::new("podman")
        .args([
            "--runtime",
            "/usr/sbin/runc",
            "run",
            "--rm",
            "--network=none",
        ])
        .args([
            "--ulimit",
            &format!("nofile={hard}:{hard}"),
            "--ulimit",
            "nproc=4096:4096",
        ])
        .arg(image)
        .args(args)
        .output()
        .expect("podman is installed (.ci/run installs it)")
}

fn build_image(prog: &Path, tag: &str) {
    let t = tempfile::tempdir().unwrap();
    let ctx = t.path();
    let o = Command::new(env!("CARGO_BIN_EXE_elfpack"))
        .arg(prog)
        .arg("--rootfs")
        .arg(ctx.join("rootfs"))
        .arg("--dockerfile")
        .arg(ctx.join("Dockerfile"))
        .output()
        .unwrap();
    ok(o);
    let df = std::fs::read_to_string(ctx.join("Dockerfile")).unwrap();
    assert!(
        df.starts_with("FROM scratch\nCOPY rootfs/ /\nENTRYPOINT "),
        "{df}"
    );
    ok(Command::new("podman")
        .args([
            "--runtime",
            "/usr/sbin/runc",
            "build",
            "--isolation",
            "chroot",
            "-q",
            "-t",
            tag,
        ])
        .arg(ctx)
        .output()
        .unwrap());
}

#[test]
fn from_scratch_images_run_under_runc() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: podman needs root here");
        return;
    }
    build_image(Path::new("/usr/bin/curl"), "elfpack-e2e-curl");
    let out = podman_run("elfpack-e2e-curl", &["--version"]);
    let _ = Command::new("podman")
        .args(["rmi", "-f", "elfpack-e2e-curl"])
        .output();
    assert!(ok(out).starts_with("curl "));

    // NSS: user and host lookups inside the container, on the generated /etc.
    let t = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let nss = t.path().join("nss");
    let st = Command::new("gcc")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/nss.c"))
        .arg("-o")
        .arg(&nss)
        .status()
        .unwrap();
    assert!(st.success());
    build_image(&nss, "elfpack-e2e-nss");
    let out = podman_run("elfpack-e2e-nss", &[]);
    let _ = Command::new("podman")
        .args(["rmi", "-f", "elfpack-e2e-nss"])
        .output();
    assert_eq!(ok(out), "user root, localhost resolves\n");
}
