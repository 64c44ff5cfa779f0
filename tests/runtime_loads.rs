//! What glibc loads after start-up: libgcc_s, NSS modules named by the
//! shipped nsswitch.conf, gconv modules on request — checked by running
//! programs that need them in a root holding only elfpack's output.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn elfpack(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_elfpack"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// `echo héllo | iconv -f UTF-8 -t CHARSET` chrooted into `root`.
fn iconv_in(root: &Path, charset: &str) -> Output {
    let mut c = Command::new("chroot")
        .arg(root)
        .args(["/usr/bin/iconv", "-f", "UTF-8", "-t", charset])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::{ErrorKind, Write};
    // iconv that cannot open the conversion exits before reading its input,
    // so a broken pipe here is the failure under test, not a test error.
    match c.stdin.take().unwrap().write_all("h\u{e9}llo\n".as_bytes()) {
        Err(e) if e.kind() != ErrorKind::BrokenPipe => panic!("writing to iconv: {e}"),
        _ => {}
    }
    c.wait_with_output().unwrap()
}

#[test]
fn gconv_modules_ship_on_request_and_iconv_uses_them() {
    let t = tempfile::tempdir().unwrap();
    let with = t.path().join("with");
    let without = t.path().join("without");
    let o = ok(elfpack(&[
        "/usr/bin/iconv",
        "--rootfs",
        with.to_str().unwrap(),
        "--gconv",
        "eucjp",
    ]));
    assert!(String::from_utf8_lossy(&o.stderr).contains("files"));
    let gconv = with.join("usr/lib/x86_64-linux-gnu/gconv");
    assert!(gconv.join("EUC-JP.so").is_file());
    assert!(
        gconv.join("libJIS.so").is_file(),
        "EUC-JP.so needs libJIS.so through $ORIGIN"
    );
    assert!(gconv.join("gconv-modules").is_file());
    assert!(
        !gconv.join("KOI8-R.so").exists(),
        "only the named charset ships"
    );
    let o = ok(elfpack(&[
        "/usr/bin/iconv",
        "--rootfs",
        without.to_str().unwrap(),
    ]));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("iconv_open"),
        "warns that no gconv modules ship"
    );
    if !is_root() {
        return;
    }
    let good = iconv_in(&with, "EUC-JP");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    // The same bytes as the host's own iconv produces.
    assert_eq!(good.stdout, iconv_in(Path::new("/"), "EUC-JP").stdout);
    assert_eq!(good.stdout, b"h\x8f\xab\xb1llo\n");
    let bad = iconv_in(&without, "EUC-JP");
    assert!(
        !bad.status.success(),
        "without gconv modules EUC-JP cannot convert"
    );
}

#[test]
fn nss_modules_follow_the_shipped_nsswitch_conf() {
    let t = tempfile::tempdir().unwrap();
    let conf = t.path().join("nsswitch.conf");
    std::fs::write(
        &conf,
        "passwd: files systemd\ngroup: files [NOTFOUND=return] compat\nhosts: files dns\n",
    )
    .unwrap();
    let root = t.path().join("root");
    ok(elfpack(&[
        "/usr/bin/getent",
        "--rootfs",
        root.to_str().unwrap(),
        "--nsswitch",
        conf.to_str().unwrap(),
    ]));
    let lib = root.join("usr/lib/x86_64-linux-gnu");
    assert!(lib.join("libnss_compat.so.2").exists());
    assert!(
        !lib.join("libnss_files.so.2").exists(),
        "files and dns are built into glibc 2.36"
    );
    if Path::new("/lib/x86_64-linux-gnu/libnss_systemd.so.2").exists() {
        assert!(lib.join("libnss_systemd.so.2").exists());
    }
    assert_eq!(
        std::fs::read(root.join("etc/nsswitch.conf")).unwrap(),
        std::fs::read(&conf).unwrap()
    );
    if is_root() {
        let o = ok(Command::new("chroot")
            .arg(&root)
            .args(["/usr/bin/getent", "passwd", "root"])
            .output()
            .unwrap());
        assert!(o.stdout.starts_with(b"root:x:0:0:"));
    }
}

#[test]
fn libgcc_s_ships_wherever_libc_does() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let o = ok(elfpack(&["deps", "/usr/bin/true"]));
    let tree = String::from_utf8_lossy(&o.stdout);
    assert!(
        tree.contains("libgcc_s.so.1") && tree.contains("pthread_cancel"),
        "{tree}"
    );
    ok(elfpack(&[
        "/usr/bin/true",
        "--rootfs",
        root.to_str().unwrap(),
    ]));
    assert!(root.join("usr/lib/x86_64-linux-gnu/libgcc_s.so.1").exists());
}
