//! Helpers shared by the tests that run packed programs in scratch roots.
#![allow(dead_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Compiles `fixtures/SRC` into `dir`, returning the program's path.
pub fn compile(dir: &Path, src: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(src.split('.').next().unwrap());
    let cc = if src.ends_with(".cpp") { "g++" } else { "gcc" };
    let st = Command::new(cc)
        .arg(format!("{FIXTURES}/{src}"))
        .arg("-o")
        .arg(&out)
        .args(extra)
        .status()
        .unwrap();
    assert!(st.success(), "{cc} {src}");
    out
}

pub fn pack(progs: &[&Path], root: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_elfpack"))
        .args(progs)
        .arg("--rootfs")
        .arg(root)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "elfpack: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

pub fn run_in(root: &Path, argv: &[&str]) -> Output {
    Command::new("/usr/sbin/chroot")
        .arg(root)
        .args(argv)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap()
}

/// Root D: mounts are undone on drop, even when an assertion fails.
pub struct RootD {
    proc_mount: CString,
}

impl RootD {
    pub fn new(root: &Path) -> RootD {
        let _ = std::fs::remove_dir_all(root.join("tmp"));
        std::fs::create_dir_all(root.join("proc")).unwrap();
        let dev = root.join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        for (name, major, minor) in [
            ("null", 1, 3),
            ("zero", 1, 5),
            ("full", 1, 7),
            ("random", 1, 8),
            ("urandom", 1, 9),
            ("tty", 5, 0),
        ] {
            let p = CString::new(dev.join(name).as_os_str().as_bytes()).unwrap();
            let rc = unsafe {
                libc::mknod(
                    p.as_ptr(),
                    libc::S_IFCHR | 0o666,
                    libc::makedev(major, minor),
                )
            };
            assert_eq!(rc, 0, "mknod {name}: {}", std::io::Error::last_os_error());
            unsafe { libc::chmod(p.as_ptr(), 0o666) };
        }
        // What runtimes write into every container.
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/hosts"),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n10.88.0.2\tcontainer\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/hostname"), "container\n").unwrap();
        std::fs::write(root.join("etc/resolv.conf"), "nameserver 127.0.0.53\n").unwrap();
        let proc_mount = CString::new(root.join("proc").as_os_str().as_bytes()).unwrap();
        let rc = unsafe {
            libc::mount(
                c"proc".as_ptr(),
                proc_mount.as_ptr(),
                c"proc".as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "mount proc: {}", std::io::Error::last_os_error());
        RootD { proc_mount }
    }
}

impl Drop for RootD {
    fn drop(&mut self) {
        unsafe { libc::umount2(self.proc_mount.as_ptr(), libc::MNT_DETACH) };
    }
}
