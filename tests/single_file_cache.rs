//! The single-file launcher's cache and installs under attack (issue 13,
//! items 16-23; issue 16, the launcher's part): a failed candidate
//! directory does not poison the next, a first start killed as PID 1 does
//! not block later ones, huge environments, execute-only files, many
//! simultaneous first starts and a killed lock holder, the packer's own
//! cache kept apart, nothing installed into a host's root, installs into an
//! image's own root, tampered cache entries re-extracted.

mod common;

use std::ffi::CString;
use std::io::BufRead;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{RootD, compile, describe, require_root, text};

fn pack(prog: &Path, out: &Path, extra: &[&str]) {
    let o = Command::new(common::ELFPACK)
        .arg(prog)
        .arg("-o")
        .arg(out)
        .args(["--no-layer-size", "--force"])
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", describe(&o));
}

/// The packed file run with only `env` set (and ELFPACK_DEBUG=1).
fn run(packed: &Path, env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(packed);
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("ELFPACK_DEBUG", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The cache entry's name (the content key) in `cache`.
fn key_in(cache: &Path) -> String {
    let keys: Vec<String> = names(cache)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(keys.len(), 1, "{}: {keys:?}", cache.display());
    keys[0].clone()
}

/// A tmpfs of `size` at `dir` until dropped.
struct Tmpfs(CString);
impl Tmpfs {
    fn new(dir: &Path, opts: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let c = CString::new(dir.as_os_str().as_bytes()).unwrap();
        let o = CString::new(opts).unwrap();
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                c.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                o.as_ptr().cast(),
            )
        };
        assert_eq!(rc, 0, "mount tmpfs: {}", std::io::Error::last_os_error());
        Tmpfs(c)
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Item 16: the first candidate (ELFPACK_CACHE_DIR on a full tmpfs) fails;
/// the next one (TMPDIR) must still work, and nothing of the failed one
/// stays behind.
#[test]
fn a_failed_candidate_does_not_poison_the_next() {
    if !require_root("a_failed_candidate_does_not_poison_the_next") {
        return;
    }
    let t = common::workdir();
    let d = t.path();
    let probe = compile(d, "probe.c", &[]);
    let packed = d.join("probe.packed");
    pack(&probe, &packed, &["--compress", "fast"]);
    let full = d.join("full");
    let _fs = Tmpfs::new(&full, "size=64k,mode=0755");
    let tmpdir = d.join("tmpdir");
    std::fs::create_dir(&tmpdir).unwrap();
    let o = run(
        &packed,
        &[
            ("ELFPACK_CACHE_DIR", &full.join("sub")),
            ("TMPDIR", &tmpdir),
        ],
    );
    assert!(o.status.success(), "{}", describe(&o));
    let exe = text(&o.stdout);
    let want = tmpdir.join("elfpack-0");
    assert!(
        exe.contains(&format!("exe={}/", want.display())),
        "runs from the second candidate, not from memory: {}",
        describe(&o)
    );
    assert_eq!(
        names(&full),
        Vec::<String>::new(),
        "nothing left on the full tmpfs"
    );
}

/// Item 17: a first start killed (SIGKILL) while extracting as PID 1 must
/// not block later PID-1 starts of the same cache, nor leave its temporary
/// tree for ever.
#[test]
fn a_first_start_killed_as_pid1_does_not_block_the_next() {
    if !require_root("a_first_start_killed_as_pid1_does_not_block_the_next") {
        return;
    }
    let t = common::workdir();
    let d = t.path();
    let hello = compile(d, "hello.c", &[]);
    // A big payload makes the extraction last long enough to be killed in.
    let big = d.join("big");
    let data: Vec<u8> = (0..48u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&big, data).unwrap();
    let packed = d.join("hello.packed");
    let add = format!("{}:/data/big", big.display());
    pack(&hello, &packed, &["--compress", "none", "--add", &add]);
    let cache = d.join("cache");
    let pid1 = |packed: &Path| {
        let mut c = Command::new("unshare");
        c.args(["--pid", "--fork", "--kill-child"])
            .arg(packed)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("ELFPACK_DEBUG", "1")
            .env("ELFPACK_CACHE_DIR", &cache);
        c
    };
    let mut first = pid1(&packed)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(first.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 && !line.contains("extracting into") {}
    assert!(line.contains(".tmp-"), "{line}");
    unsafe { libc::kill(first.id() as i32, libc::SIGKILL) };
    first.wait().unwrap();
    for _ in 0..2 {
        let o = pid1(&packed).output().unwrap();
        assert_eq!(text(&o.stdout), "hello from C\n", "{}", describe(&o));
        let left: Vec<String> = names(&cache)
            .into_iter()
            .filter(|n| n.starts_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "stale temporary trees: {left:?}");
        key_in(&cache);
    }
}

/// Item 18: more than 131,071 environment entries.
#[test]
fn a_huge_environment_passes_through() {
    let t = common::workdir();
    let d = t.path();
    let packed = d.join("env.packed");
    pack(Path::new("/usr/bin/env"), &packed, &["--compress", "fast"]);
    let n = 140_000;
    let mut c = Command::new(&packed);
    c.env_clear().env("ELFPACK_CACHE_DIR", d.join("cache"));
    for i in 0..n {
        c.env(format!("V{i}"), "1");
    }
    unsafe {
        c.pre_exec(|| {
            // Room for the strings (a quarter of the stack limit).
            let r = libc::rlimit {
                rlim_cur: 64 << 20,
                rlim_max: libc::RLIM_INFINITY,
            };
            libc::setrlimit(libc::RLIMIT_STACK, &r);
            Ok(())
        });
    }
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let lines = text(&o.stdout)
        .lines()
        .filter(|l| l.starts_with('V'))
        .count();
    assert_eq!(lines, n);
}

/// Item 19: an execute-only packed file runs for another user.
#[test]
fn an_execute_only_file_runs_for_other_users() {
    if !require_root("an_execute_only_file_runs_for_other_users") {
        return;
    }
    let t = common::workdir();
    let d = t.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hello = compile(d, "hello.c", &[]);
    let packed = d.join("hello.packed");
    pack(&hello, &packed, &["--compress", "balanced"]);
    std::fs::set_permissions(&packed, std::fs::Permissions::from_mode(0o711)).unwrap();
    let cache = d.join("nobody");
    std::fs::create_dir(&cache).unwrap();
    std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).unwrap();
    let o = Command::new(&packed)
        .env_clear()
        .env("ELFPACK_CACHE_DIR", cache.join("c"))
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(text(&o.stdout), "hello from C\n", "{}", describe(&o));
}

/// Item 20: 100 simultaneous first starts extract once; a lock holder that
/// dies does not block the others.
#[test]
fn simultaneous_first_starts_extract_once() {
    let t = common::workdir();
    let d = t.path();
    let hello = compile(d, "hello.c", &[]);
    let packed = d.join("hello.packed");
    pack(&hello, &packed, &["--compress", "balanced"]);
    let cache = d.join("cache");
    let children: Vec<_> = (0..100)
        .map(|_| {
            Command::new(&packed)
                .env("ELFPACK_CACHE_DIR", &cache)
                .env("ELFPACK_DEBUG", "1")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut extractions = 0;
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert_eq!(text(&o.stdout), "hello from C\n", "{}", describe(&o));
        extractions += text(&o.stderr).matches("extracting into").count();
    }
    assert_eq!(extractions, 1, "one extraction for 100 first starts");
    let key = key_in(&cache);

    // A holder of the lock that dies: hold it here, plant the partial tree
    // it would leave, start the launcher, then let go.
    let cache2 = d.join("cache2");
    std::fs::create_dir(&cache2).unwrap();
    std::fs::set_permissions(&cache2, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A directory the bundle holds (its tree's first level): the launcher
    // removes only what its records name.
    let top = names(&cache.join(&key))
        .into_iter()
        .find(|n| !n.starts_with('.'))
        .unwrap();
    std::fs::create_dir_all(cache2.join(format!(".tmp-{key}/{top}"))).unwrap();
    let lock = std::fs::File::create(cache2.join(format!(".lock-{key}"))).unwrap();
    use std::os::fd::AsRawFd;
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let mut waiter = Command::new(&packed)
        .env("ELFPACK_CACHE_DIR", &cache2)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        waiter.try_wait().unwrap().is_none(),
        "waits while another start holds the lock"
    );
    drop(lock);
    let o = waiter.wait_with_output().unwrap();
    assert_eq!(text(&o.stdout), "hello from C\n");
    assert_eq!(
        names(&cache2),
        vec![format!(".lock-{key}"), key.clone()],
        "the dead holder's tree is gone"
    );
}

/// Item 21: the packer's layer-size cache does not take the launcher's
/// cache directory (created with the umask's mode, it was refused for
/// ever), and its file stays bounded.
#[test]
fn the_packers_cache_stays_apart_and_bounded() {
    let t = common::workdir();
    let d = t.path();
    let hello = compile(d, "hello.c", &[]);
    let home = d.join("home");
    std::fs::create_dir(&home).unwrap();
    let packed = d.join("hello.packed");
    let pack_umask = |out: &Path| {
        let mut c = Command::new(common::ELFPACK);
        c.arg(&hello)
            .arg("-o")
            .arg(out)
            // The layer figure (and so the packer's cache) is on request.
            .args(["--force", "--layer-size"])
            .env_remove("XDG_CACHE_HOME")
            .env("HOME", &home);
        unsafe {
            c.pre_exec(|| {
                libc::umask(0o002);
                Ok(())
            });
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", describe(&o));
    };
    pack_umask(&packed);
    let tmpdir = d.join("tmpdir");
    std::fs::create_dir(&tmpdir).unwrap();
    let o = run(&packed, &[("HOME", &home), ("TMPDIR", &tmpdir)]);
    assert_eq!(text(&o.stdout), "hello from C\n", "{}", describe(&o));
    key_in(&home.join(".cache/elfpack"));
    assert!(names(&tmpdir).is_empty(), "{}", describe(&o));
    // The packer's file: found beside, private, bounded.
    let files: Vec<PathBuf> = common::walk(&home.join(".cache"))
        .into_iter()
        .filter(|p| p.is_file() && !p.starts_with(home.join(".cache/elfpack")))
        .collect();
    let [file] = files.as_slice() else {
        panic!("one packer cache file: {files:?}")
    };
    assert_eq!(
        std::fs::metadata(file).unwrap().permissions().mode() & 0o077,
        0,
        "it names host paths: private"
    );
    let junk: String = (0..60_000)
        .map(|i| format!("/x/{i}|644|0|1:{i}|1|0.0|0.0\t100\n"))
        .collect();
    std::fs::write(file, junk).unwrap();
    pack_umask(&d.join("again.packed"));
    let lines = std::fs::read_to_string(file).unwrap().lines().count();
    assert!(lines <= 20_000, "{lines} lines");
}

/// A root like a host's: the host's /usr (with /bin/sh and /usr/bin/env)
/// bind-mounted, an /etc without nsswitch.conf or hosts.
struct HostLike {
    root: PathBuf,
    usr: CString,
}
impl HostLike {
    fn new(root: &Path) -> Self {
        std::fs::create_dir_all(root.join("usr")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        for l in ["bin", "lib", "lib64", "sbin"] {
            std::os::unix::fs::symlink(format!("usr/{l}"), root.join(l)).unwrap();
        }
        let usr = CString::new(root.join("usr").as_os_str().as_bytes()).unwrap();
        let rc = unsafe {
            libc::mount(
                c"/usr".as_ptr(),
                usr.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | libc::MS_REC,
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0);
        HostLike {
            root: root.to_path_buf(),
            usr,
        }
    }
}
impl Drop for HostLike {
    fn drop(&mut self) {
        unsafe { libc::umount2(self.usr.as_ptr(), libc::MNT_DETACH) };
        let _ = &self.root;
    }
}

/// Item 22 (and issue 16): as root in a root that is not an image's own
/// (a host's), also as PID 1, the launcher writes nothing outside its
/// cache: no /etc files, no /tmp, none of the bundle's absolute paths.
#[test]
fn nothing_is_installed_into_a_hosts_root() {
    if !require_root("nothing_is_installed_into_a_hosts_root") {
        return;
    }
    let t = common::workdir();
    let d = t.path();
    let nss = compile(d, "nss.c", &[]);
    let data = d.join("data.txt");
    std::fs::write(&data, "bundled data\n").unwrap();
    let root = d.join("host");
    let host = HostLike::new(&root);
    let add = format!("{}:/srv/data.txt", data.display());
    pack(&nss, &root.join("nss.packed"), &["--add", &add]);
    let before = names(&root);
    for pid1 in [false, true] {
        let mut c = Command::new("unshare");
        if pid1 {
            c.args(["--pid", "--fork", "--kill-child"]);
        }
        let o = c
            .arg("/usr/sbin/chroot")
            .arg(&root)
            .arg("/nss.packed")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        // No /etc/passwd here: the lookup fails, as the host's would.
        assert!(
            text(&o.stdout).contains("getpwuid(0) failed"),
            "{}",
            describe(&o)
        );
        let mut now = names(&root);
        now.retain(|n| n != ".elfpack-cache-0");
        assert_eq!(now, before, "pid1={pid1}: nothing new in /");
        assert!(names(&root.join("etc")).is_empty(), "nothing in /etc");
    }
    drop(host);
}

/// Issue 16 item 2: in an image's own root (D, as root) the launcher
/// installs what the bundle has at absolute paths where missing, never
/// replacing a file, and creates /tmp 1777.
#[test]
fn an_images_root_gets_the_bundles_absolute_paths() {
    if !require_root("an_images_root_gets_the_bundles_absolute_paths") {
        return;
    }
    let t = common::workdir();
    let d = t.path();
    let nss = compile(d, "nss.c", &[]);
    let data = d.join("data.txt");
    std::fs::write(&data, "bundled data\n").unwrap();
    let root = d.join("img");
    std::fs::create_dir(&root).unwrap();
    let add = format!("{}:/srv/app/data.txt", data.display());
    pack(&nss, &root.join("nss.packed"), &["--add", &add]);
    let rd = RootD::new(&root);
    let o = Command::new("/usr/sbin/chroot")
        .arg(&root)
        .arg("/nss.packed")
        .env_clear()
        .output()
        .unwrap();
    assert!(text(&o.stdout).contains("user root"), "{}", describe(&o));
    assert_eq!(
        std::fs::read_to_string(root.join("srv/app/data.txt")).unwrap(),
        "bundled data\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hosts")).unwrap(),
        common::RUNTIME_HOSTS,
        "the runtime's /etc/hosts is kept"
    );
    let tmp = std::fs::metadata(root.join("tmp")).unwrap();
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    drop(rd);
}

/// Item 23: a cache entry whose library was truncated or deleted is
/// noticed and extracted again.
#[test]
fn a_tampered_cache_entry_is_extracted_again() {
    let t = common::workdir();
    let d = t.path();
    let hello = compile(d, "hello.c", &[]);
    let packed = d.join("hello.packed");
    pack(&hello, &packed, &["--compress", "fast"]);
    let cache = d.join("cache");
    let env: &[(&str, &Path)] = &[("ELFPACK_CACHE_DIR", &cache)];
    assert_eq!(text(&run(&packed, env).stdout), "hello from C\n");
    let entry = cache.join(key_in(&cache));
    let libc_so = common::walk(&entry)
        .into_iter()
        .find(|p| p.file_name().unwrap() == "libc.so.6")
        .expect("libc in the cache");
    let size = std::fs::metadata(&libc_so).unwrap().len();
    for tamper in ["truncate", "delete"] {
        if tamper == "truncate" {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&libc_so)
                .unwrap();
            f.set_len(size / 2).unwrap();
        } else {
            std::fs::remove_file(&libc_so).unwrap();
        }
        let o = run(&packed, env);
        assert_eq!(
            text(&o.stdout),
            "hello from C\n",
            "{tamper}: {}",
            describe(&o)
        );
        assert_eq!(
            std::fs::metadata(&libc_so).map(|m| m.len()).ok(),
            Some(size),
            "{tamper}: extracted again"
        );
    }
}

/// Issue 16 item 3: with no writable place at all (a read-only root, uid
/// 65532), a program that needs only libraries runs from memory; one that
/// needs a directory of its files (here TZDIR) exits with one line that
/// says how to give it one.
#[test]
fn without_a_writable_place_a_program_needing_files_says_how_to_give_one() {
    if !require_root("without_a_writable_place_...") {
        return;
    }
    let t = common::workdir();
    let d = t.path();
    let root = d.join("ro");
    std::fs::create_dir(&root).unwrap();
    let hello = compile(d, "hello.c", &[]);
    pack(&hello, &root.join("hello.packed"), &["--compress", "fast"]);
    pack(
        Path::new("/usr/bin/date"),
        &root.join("date.packed"),
        &["--compress", "fast", "--tzdata"],
    );
    let _d = RootD::new(&root);
    let _ro = common::ReadOnly::new(&root);
    let run = |prog: &str| {
        Command::new("/usr/sbin/chroot")
            .arg("--userspec=65532:65532")
            .arg(&root)
            .arg(prog)
            .env_clear()
            .env("TZ", "Europe/Paris")
            .output()
            .unwrap()
    };
    assert_eq!(text(&run("/hello.packed").stdout), "hello from C\n");
    let o = run("/date.packed");
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(127), "{}", describe(&o));
    assert!(
        err.lines().count() == 1
            && err.contains("needs a writable directory")
            && err.contains("--tmpfs /tmp")
            && err.contains("ELFPACK_CACHE_DIR"),
        "{err}"
    );
}

/// Issue 16 item 4: run from memory (read-only root, uid 65532), a library
/// needed under a name that is not its SONAME (as ffmpeg needs
/// libsndio.so.7.0, SONAME libsndio.so.7) is found.
#[test]
fn from_memory_a_library_is_found_by_every_name_it_is_needed_under() {
    if !require_root("from_memory_a_library_...") {
        return;
    }
    let t = common::workdir();
    let d = t.path();
    let lib = d.join("foo.c");
    std::fs::write(&lib, "int foo(void) { return 42; }\n").unwrap();
    // Linked against a copy without SONAME: DT_NEEDED is the file name.
    let (bare, real) = (d.join("bare"), d.join("lib"));
    std::fs::create_dir(&bare).unwrap();
    std::fs::create_dir(&real).unwrap();
    let l = lib.to_str().unwrap();
    common::gcc(&[
        "-shared",
        "-fPIC",
        "-o",
        bare.join("libfoo.so.1.0").to_str().unwrap(),
        l,
    ]);
    common::gcc(&[
        "-shared",
        "-fPIC",
        "-Wl,-soname,libfoo.so.1",
        "-o",
        real.join("libfoo.so.1.0").to_str().unwrap(),
        l,
    ]);
    let main = d.join("main.c");
    std::fs::write(
        &main,
        "#include <stdio.h>\nint foo(void);\nint main(void) { printf(\"foo %d\\n\", foo()); return 0; }\n",
    )
    .unwrap();
    let prog = d.join("needs-alias");
    common::gcc(&[
        main.to_str().unwrap(),
        "-o",
        prog.to_str().unwrap(),
        &format!("-L{}", bare.display()),
        "-l:libfoo.so.1.0",
        &format!("-Wl,-rpath,{}", real.display()),
    ]);
    assert_eq!(
        text(&Command::new(&prog).output().unwrap().stdout),
        "foo 42\n"
    );
    let root = d.join("ro");
    std::fs::create_dir(&root).unwrap();
    pack(&prog, &root.join("prog.packed"), &["--compress", "fast"]);
    let _d = RootD::new(&root);
    let _ro = common::ReadOnly::new(&root);
    let o = Command::new("/usr/sbin/chroot")
        .arg("--userspec=65532:65532")
        .arg(&root)
        .arg("/prog.packed")
        .env_clear()
        .env("ELFPACK_DEBUG", "1")
        .output()
        .unwrap();
    assert_eq!(text(&o.stdout), "foo 42\n", "{}", describe(&o));
    assert!(text(&o.stderr).contains("from memory"), "{}", describe(&o));
}
