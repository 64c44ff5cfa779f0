//! Helpers shared by the tests that pack programs and run them in scratch
//! roots:
//! - **E**: a directory holding only elfpack's output, entered with
//!   `chroot DIR PROG ARGS` — no /proc, no /dev;
//! - **D**: what a container runtime gives a `FROM scratch` image: the same
//!   tree plus /proc mounted, /dev/{null,zero,full,random,urandom,tty}, and
//!   the runtime's /etc/hosts, hostname and resolv.conf ([`RootD`]).
//!
//! Everything here panics with a message on failure; mounts made by
//! [`RootD`] are undone when it is dropped, also while a failed assertion
//! unwinds.
#![allow(dead_code)]

pub mod registry;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

/// The elfpack binary cargo built for these tests.
pub const ELFPACK: &str = env!("CARGO_BIN_EXE_elfpack");

/// Python that imports modules from the standard library and extension
/// modules with libraries of their own (_ssl, _sqlite3, _ctypes, _decimal).
pub const PY_CODE: &str = "import json,ssl,sqlite3,ctypes,decimal; print(1)";

pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// True when the test can run; otherwise says why it is skipped. CI runs as
/// root, so there these tests really run.
pub fn require_root(what: &str) -> bool {
    if is_root() {
        return true;
    }
    eprintln!("skipped {what}: needs root (chroot, mount, mknod); CI runs as root");
    false
}

/// A scratch directory that is not under /tmp: root D may have no /tmp, and
/// packed programs keep their absolute paths, so a program built under /tmp
/// would disappear with it.
pub fn workdir() -> tempfile::TempDir {
    // The checkout itself may live under /tmp (CI clones anywhere): fall
    // back to /var/tmp then.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let base = if target.starts_with("/tmp") {
        Path::new("/var/tmp")
    } else {
        target
    };
    tempfile::tempdir_in(base).unwrap()
}

/// `elfpack` with no arguments yet.
pub fn elfpack() -> Command {
    Command::new(ELFPACK)
}

/// Runs elfpack with `args`.
pub fn run_elfpack(args: &[&str]) -> Output {
    elfpack().args(args).output().unwrap()
}

/// The stdout of a command that must have succeeded (else both streams).
pub fn stdout_ok(o: Output) -> String {
    assert!(o.status.success(), "{}", describe(&o));
    text(&o.stdout)
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Bind-mounts `root` read-only over itself (recursively, keeping /proc)
/// until dropped: root RO.
pub struct ReadOnly(CString);

impl ReadOnly {
    pub fn new(root: &Path) -> Self {
        let c = cpath(root);
        unsafe {
            let rc = libc::mount(
                c.as_ptr(),
                c.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            );
            assert_eq!(rc, 0, "bind mount");
            let rc = libc::mount(
                std::ptr::null(),
                c.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                std::ptr::null(),
            );
            assert_eq!(rc, 0, "read-only remount");
        }
        ReadOnly(c)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Exit status, stdout and stderr of a finished command, for messages.
pub fn describe(o: &Output) -> String {
    format!(
        "{}\n--- stdout:\n{}--- stderr:\n{}",
        o.status,
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// Compiles `fixtures/SRC` into `dir` (gcc, or g++ for .cpp), returning the
/// program's path: `dir/` + SRC without its extension.
pub fn compile(dir: &Path, src: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(src.split('.').next().unwrap());
    compile_to(&out, src, extra)
}

/// Compiles `fixtures/SRC` into the program `out`.
pub fn compile_to(out: &Path, src: &str, extra: &[&str]) -> PathBuf {
    let cc = if src.ends_with(".cpp") { "g++" } else { "gcc" };
    let o = Command::new(cc)
        .arg(format!("{FIXTURES}/{src}"))
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("{cc}: {e} (.ci/run installs gcc and g++)"));
    assert!(o.status.success(), "{cc} {src}: {}", describe(&o));
    out.to_path_buf()
}

/// `gcc ARGS`, failing the test with gcc's stderr when it fails.
#[allow(dead_code)]
pub fn gcc(args: &[&str]) {
    let o = Command::new("gcc")
        .args(args)
        .output()
        .expect("gcc runs (test.sh installs it)");
    assert!(o.status.success(), "gcc {args:?}: {}", text(&o.stderr));
}

/// `readelf ARGS FILE`'s output, failing the test when readelf fails or
/// warns (on stderr, or "Warning" in its output): an edited file must read
/// as cleanly as a linker's.
#[allow(dead_code)]
pub fn readelf(args: &[&str], p: &Path) -> String {
    let o = Command::new("readelf").args(args).arg(p).output().unwrap();
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(
        o.status.success() && err.trim().is_empty() && !out.contains("Warning"),
        "readelf {args:?} {}: {err}",
        p.display()
    );
    out
}

/// Compiles C source given as text (for throwaway programs and libraries).
pub fn compile_c(dir: &Path, name: &str, source: &str, args: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let out = dir.join(name);
    let o = Command::new("gcc")
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "gcc {name}: {}", describe(&o));
    out
}

/// `elfpack PROGS... --rootfs ROOT EXTRA...`, whatever its outcome.
pub fn pack_with(progs: &[&Path], root: &Path, extra: &[&str]) -> Output {
    elfpack()
        .args(progs)
        .arg("--rootfs")
        .arg(root)
        .args(extra)
        .output()
        .unwrap()
}

/// `elfpack PROGS... --rootfs ROOT`, which must succeed.
pub fn pack(progs: &[&Path], root: &Path) {
    let o = pack_with(progs, root, &[]);
    assert!(o.status.success(), "elfpack: {}", describe(&o));
}

/// Runs ARGV chrooted in ROOT with only PATH in the environment.
pub fn run_in(root: &Path, argv: &[&str]) -> Output {
    Command::new("/usr/sbin/chroot")
        .arg(root)
        .args(argv)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap()
}

/// Runs ARGV on the host (the reference output for a packed program).
pub fn run_host(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap()
}

/// Every entry under ROOT (not following symlinks), ROOT excluded.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
            all.push(e.path());
        }
    }
    all.sort();
    all
}

/// Whether P is a mount point now (from /proc/self/mountinfo).
pub fn is_mount_point(p: &Path) -> bool {
    let want = p.as_os_str().as_bytes();
    let info = std::fs::read("/proc/self/mountinfo").unwrap();
    info.split(|&b| b == b'\n')
        .filter_map(|l| l.split(|&b| b == b' ').nth(4))
        .any(|m| m == want)
}

/// The device nodes a runtime creates in every container (name, major, minor).
pub const DEV_NODES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// What podman writes into a container for the network-related files.
pub const RUNTIME_HOSTS: &str =
    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n10.88.0.2\tcontainer\n";
pub const RUNTIME_HOSTNAME: &str = "container\n";
pub const RUNTIME_RESOLV: &str = "nameserver 127.0.0.53\n";

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Root D over an elfpack tree: /proc mounted, the /dev nodes, the runtime's
/// /etc/hosts, hostname and resolv.conf (copied over elfpack's, as a runtime
/// bind-mounts its own over the image's). [`RootD::new`] also removes /tmp
/// (a runtime adds none; nothing may need it); [`RootD::keeping_tmp`] keeps
/// the image's. /proc is unmounted on drop, also while a test panics.
pub struct RootD {
    root: PathBuf,
    proc_dir: PathBuf,
}

impl RootD {
    /// D without /tmp.
    pub fn new(root: &Path) -> RootD {
        let d = RootD::keeping_tmp(root);
        d.remove_tmp();
        d
    }

    /// D with whatever /tmp the image has (elfpack writes one, mode 1777).
    pub fn keeping_tmp(root: &Path) -> RootD {
        assert!(root.is_dir(), "{}: no such root", root.display());
        let dev = root.join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        for (name, major, minor) in DEV_NODES {
            let node = dev.join(name);
            let _ = std::fs::remove_file(&node);
            let p = cpath(&node);
            let rc = unsafe {
                libc::mknod(
                    p.as_ptr(),
                    libc::S_IFCHR | 0o666,
                    libc::makedev(major, minor),
                )
            };
            assert_eq!(rc, 0, "mknod {name}: {}", std::io::Error::last_os_error());
            // mknod applies the umask.
            unsafe { libc::chmod(p.as_ptr(), 0o666) };
        }
        let etc = root.join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        for (name, content) in [
            ("hosts", RUNTIME_HOSTS),
            ("hostname", RUNTIME_HOSTNAME),
            ("resolv.conf", RUNTIME_RESOLV),
        ] {
            let f = etc.join(name);
            // Replace a symlink instead of writing through it.
            let _ = std::fs::remove_file(&f);
            std::fs::write(&f, content).unwrap();
        }
        let proc_dir = root.join("proc");
        std::fs::create_dir_all(&proc_dir).unwrap();
        let p = cpath(&proc_dir);
        // Mounted last: nothing after this can fail before the guard exists.
        let rc = unsafe {
            libc::mount(
                c"proc".as_ptr(),
                p.as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "mount proc: {}", std::io::Error::last_os_error());
        RootD {
            root: root.to_path_buf(),
            proc_dir,
        }
    }

    /// Removes the image's /tmp (D as the issue defines it: no /tmp).
    pub fn remove_tmp(&self) {
        let tmp = self.root.join("tmp");
        if tmp.symlink_metadata().is_ok() {
            assert!(!is_mount_point(&tmp), "{}: a mount point", tmp.display());
            std::fs::remove_dir_all(&tmp).unwrap();
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for RootD {
    fn drop(&mut self) {
        let p = cpath(&self.proc_dir);
        // A plain unmount first; if something still holds it, a lazy one.
        if unsafe { libc::umount2(p.as_ptr(), 0) } != 0
            && unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) } != 0
        {
            eprintln!(
                "warning: cannot unmount {}: {}",
                self.proc_dir.display(),
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Builds fixtures/cgo-internal (cgo through the standard library only, so
/// Go's internal linker links it) into `dir`, offline.
pub fn build_cgo_internal(dir: &Path) -> PathBuf {
    build_go(dir, "cgo-internal", &[])
}

fn build_go(dir: &Path, fixture: &str, flags: &[&str]) -> PathBuf {
    let bin = dir.join(fixture);
    let src = dir.join(format!("{fixture}-src"));
    std::fs::create_dir_all(&src).unwrap();
    for f in ["main.go", "go.mod"] {
        std::fs::copy(format!("{FIXTURES}/{fixture}/{f}"), src.join(f)).unwrap();
    }
    let o = Command::new("go")
        .arg("build")
        .args(flags)
        .arg("-o")
        .arg(&bin)
        .arg(".")
        .current_dir(&src)
        .env("CGO_ENABLED", "1")
        .env("GOCACHE", dir.join("gocache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local")
        .output()
        .expect("go (golang-go) is installed");
    assert!(o.status.success(), "go build: {}", describe(&o));
    bin
}

/// Builds fixtures/cgo (a CGo program whose user and host lookups go
/// through glibc's NSS) into `dir`, offline.
pub fn build_cgo(dir: &Path) -> PathBuf {
    build_go(dir, "cgo", &["-tags", "netcgo"])
}

/// `openssl s_server` on 127.0.0.1 with a certificate from a fresh test CA;
/// killed when dropped.
pub struct TlsServer {
    child: std::process::Child,
    pub port: u16,
    /// The host's CA bundle plus the test CA.
    pub bundle: PathBuf,
}

impl TlsServer {
    /// Makes the CA, the server certificate and `bundle.pem` in `dir`.
    pub fn start(dir: &Path) -> TlsServer {
        let openssl = |args: &[&str]| {
            let o = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap();
            assert!(o.status.success(), "openssl {args:?}: {}", describe(&o));
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=elfpack test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        let mut bundle =
            std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
        bundle.push_str(&std::fs::read_to_string(dir.join("ca.pem")).unwrap());
        std::fs::write(dir.join("bundle.pem"), bundle).unwrap();

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("timeout")
            .args(["120", "openssl", "s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-cert", "srv.pem", "-key", "srv.key"])
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server = TlsServer {
            child,
            port,
            bundle: dir.join("bundle.pem"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "s_server did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        server
    }

    /// `openssl s_client` arguments (after the program) that verify the
    /// server, failing unless its chain verifies.
    pub fn client_args(&self) -> Vec<String> {
        [
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", self.port),
            "-verify_return_error",
            "-verify_ip",
            "127.0.0.1",
            "-brief",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `podman --runtime /usr/sbin/runc run --rm --network=none` with NOFILE at
/// the host's hard limit (runc may not raise it past ours) and NPROC at
/// 4096, as the tests run images; callers add options, the image and its
/// arguments.
#[allow(dead_code)]
pub fn podman_run() -> Command {
    let hard = Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .expect("sh runs");
    let hard = text(&hard.stdout).trim().to_string();
    let mut c = Command::new("podman");
    c.args([
        "--runtime",
        "/usr/sbin/runc",
        "run",
        "--rm",
        "--network=none",
    ])
    .args(["--ulimit", &format!("nofile={hard}:{hard}")])
    .args(["--ulimit", "nproc=4096:4096"]);
    c
}

/// `podman load -i TAR`. Images share their C runtime layer, and loads that
/// run in parallel (tests in one file) can race in podman's storage on that
/// layer ("layer not known"); that race, and only it, is retried.
#[allow(dead_code)]
pub fn podman_load(tar: &Path) -> Output {
    let mut attempt = 0;
    loop {
        let r = Command::new("podman")
            .arg("load")
            .arg("-i")
            .arg(tar)
            .output()
            .expect("podman is installed (test.sh installs it)");
        attempt += 1;
        if r.status.success() || !text(&r.stderr).contains("layer not known") || attempt == 3 {
            return r;
        }
    }
}
