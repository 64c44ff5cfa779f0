//! Single files (`elfpack PROG -o FILE`) run where nothing else exists:
//! roots E (only the file), D (what a runtime gives), D with /tmp, RO (D
//! read-only, uid 65532) and D with a noexec /tmp; the launcher keeps the
//! PID, argv[0], exit codes and signals; extraction is atomic under 32
//! parallel first runs; corrupted files and planted cache paths are refused.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{ReadOnly, RootD, compile, is_root};

fn pack(prog: &Path, out: &Path, compress: &str) {
    let o = Command::new(env!("CARGO_BIN_EXE_elfpack"))
        .arg(prog)
        .arg("-o")
        .arg(out)
        // The ELF closure alone: package data brings directories that the
        // run-time variables name (git's GIT_EXEC_PATH, OpenSSL's modules),
        // which the read-only root's in-memory mode cannot give; that
        // refusal is tested in single_file_extras.rs.
        .args(["--compress", compress, "--no-layer-size", "--force"])
        .arg("--no-package-data")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An empty root holding only `files` at its top.
fn root_with(dir: &Path, files: &[&Path]) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    for f in files {
        std::fs::copy(f, root.join(f.file_name().unwrap())).unwrap();
    }
    root
}

fn chroot(root: &Path, user: Option<&str>, argv: &[&str]) -> Output {
    let mut c = Command::new("/usr/sbin/chroot");
    if let Some(u) = user {
        c.arg(format!("--userspec={u}"));
    }
    c.arg(root)
        .args(argv)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap()
}

fn expect(o: Output, want: &str, label: &str) {
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains(want),
        "{label}: {}\nstdout: {out}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A tmpfs at `dir` (noexec when asked) until dropped.
struct Tmpfs(CString);
impl Tmpfs {
    fn new(dir: &Path, noexec: bool) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let c = CString::new(dir.as_os_str().as_bytes()).unwrap();
        let flags = if noexec { libc::MS_NOEXEC } else { 0 };
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                c.as_ptr(),
                c"tmpfs".as_ptr(),
                flags,
                c"mode=1777".as_ptr().cast(),
            )
        };
        assert_eq!(rc, 0);
        Tmpfs(c)
    }
}
impl Drop for Tmpfs {
    fn drop(&mut self) {
        unsafe { libc::umount2(self.0.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn packed_programs_run_in_every_root() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let t = common::workdir();
    let d = t.path();
    let bins = d.join("bins");
    std::fs::create_dir(&bins).unwrap();
    let hello = compile(&bins, "hello.cpp", &[]);
    let nss = compile(&bins, "nss.c", &[]);
    let cancel = compile(&bins, "cancel.c", &["-pthread"]);
    // A static program: no loader, so from memory its memfd runs itself.
    let static_hello = common::compile_to(&bins.join("static-hello"), "hello.c", &["-static"]);
    let mut packed = Vec::new();
    for (prog, compress) in [
        (hello.as_path(), "balanced"),
        (&nss, "max"),
        (&cancel, "fast"),
        (&static_hello, "balanced"),
        (Path::new("/usr/bin/curl"), "balanced"),
        (Path::new("/usr/bin/git"), "fast"),
        (Path::new("/usr/bin/ls"), "balanced"),
        (Path::new("/usr/bin/getent"), "fast"),
        (Path::new("/usr/bin/openssl"), "fast"),
        (Path::new("/usr/bin/sqlite3"), "none"),
    ] {
        let out = d.join(format!(
            "{}.packed",
            prog.file_name().unwrap().to_str().unwrap()
        ));
        pack(prog, &out, compress);
        packed.push(out);
    }
    let refs: Vec<&Path> = packed.iter().map(PathBuf::as_path).collect();
    // (argv, expected output, needs /dev or /proc)
    let cases: &[(&[&str], &str, bool)] = &[
        (
            &["/hello.packed"],
            "hello from C++, exception caught",
            false,
        ),
        (&["/nss.packed"], "user root, localhost resolves", false),
        (&["/cancel.packed"], "cancelled", false),
        (&["/static-hello.packed"], "hello from C", false),
        (&["/curl.packed", "--version"], "curl ", false),
        (&["/git.packed", "--version"], "git version", true),
        (&["/ls.packed", "-ln", "/"], " 0 0 ", false),
        (&["/getent.packed", "passwd", "root"], "root:x:0:0:", false),
        (&["/openssl.packed", "version"], "OpenSSL 3", false),
        (
            &["/sqlite3.packed", ":memory:", "select 40+2;"],
            "42",
            false,
        ),
    ];
    let run_all = |root: &Path, user: Option<&str>, label: &str, with_dev: bool| {
        for (argv, want, needs_dev) in cases {
            if *needs_dev && !with_dev {
                continue;
            }
            expect(chroot(root, user, argv), want, &format!("{label} {argv:?}"));
        }
    };
    // E: nothing but the files (the launcher creates /tmp 1777, caches there
    // and installs the scratch /etc it carries).
    let e = root_with(&d.join("e"), &refs);
    run_all(&e, None, "E", false);
    assert!(
        e.join("etc/passwd").exists(),
        "scratch /etc installed in an empty root"
    );
    // `ls -l` names owners once /etc/passwd exists.
    expect(
        chroot(&e, None, &["/ls.packed", "-l", "/"]),
        " root root ",
        "E ls -l",
    );

    // D: what a runtime gives, no /tmp.
    let droot = root_with(&d.join("d"), &refs);
    let _d = RootD::new(&droot);
    run_all(&droot, None, "D", true);
    // D + /tmp: the cache goes to /tmp.
    let _tmp = Tmpfs::new(&droot.join("tmp"), false);
    let before: Vec<_> = std::fs::read_dir(droot.join("tmp")).unwrap().collect();
    assert!(before.is_empty());
    expect(
        chroot(&droot, None, &["/hello.packed"]),
        "hello from C++",
        "D+/tmp",
    );
    assert!(
        droot.join("tmp/elfpack-0").is_dir(),
        "cache under /tmp when it exists"
    );
    drop(_tmp);
    // /tmp mounted noexec: the launcher must not use it.
    let _noexec = Tmpfs::new(&droot.join("tmp"), true);
    expect(
        chroot(&droot, None, &["/hello.packed"]),
        "hello from C++",
        "D + noexec /tmp",
    );
    assert!(
        !droot.join("tmp/elfpack-0").exists(),
        "noexec /tmp is skipped"
    );
    drop(_noexec);
    // RO: read-only root, uid 65532, no writable directory at all.
    let ro = root_with(&d.join("ro"), &refs);
    let _rod = RootD::new(&ro);
    // The runtime's passwd for the image user (a read-only image carries its own).
    std::fs::write(
        ro.join("etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(ro.join("etc/group"), "root:x:0:\nnonroot:x:65532:\n").unwrap();
    let _ro = ReadOnly::new(&ro);
    run_all(&ro, Some("65532:65532"), "RO", true);
}

fn probe_lines(o: &Output) -> std::collections::HashMap<String, String> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn launcher_keeps_pid_argv0_exit_codes_and_signals() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let probe = compile(d, "probe.c", &[]);
    let packed = d.join("probe.packed");
    pack(&probe, &packed, "fast");
    let cache = d.join("cache");
    let o = Command::new(&packed)
        .arg("7")
        .env("ELFPACK_CACHE_DIR", &cache)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(7), "exit code passes through");
    let kv = probe_lines(&o);
    assert_eq!(kv["argv0"], s(&packed), "argv[0] as invoked");
    assert!(
        kv["exe"].starts_with(s(&cache)) && kv["exe"].ends_with(s(&probe)),
        "/proc/self/exe is the real program: {}",
        kv["exe"]
    );
    assert_eq!(
        kv["ppid"],
        std::process::id().to_string(),
        "no launcher process in between"
    );
    // Same PID, and a signal to it reaches the program.
    let mut child = Command::new(&packed)
        .arg("wait")
        .env("ELFPACK_CACHE_DIR", &cache)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    for _ in 0..4 {
        reader.read_line(&mut first).unwrap();
    }
    assert!(first.contains(&format!("pid={}\n", child.id())), "{first}");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGTERM));
}

#[test]
fn parallel_first_runs_extract_once() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let hello = compile(d, "hello.c", &[]);
    let packed = d.join("hello.packed");
    pack(&hello, &packed, "max");
    let cache = d.join("cache");
    let children: Vec<_> = (0..32)
        .map(|_| {
            Command::new(&packed)
                .env("ELFPACK_CACHE_DIR", &cache)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success());
        assert_eq!(String::from_utf8_lossy(&o.stdout), "hello from C\n");
    }
    let entries: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        // The extraction's lock file stays beside the entry (0 bytes).
        .filter(|n| !n.starts_with(".lock-"))
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "one extraction, no temporary directories left: {entries:?}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(cache.join(&entries[0]))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the extracted tree is private to its owner"
    );
}

#[test]
fn corrupted_and_truncated_files_never_run() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let hello = compile(d, "hello.c", &[]);
    for compress in ["balanced", "max", "fast"] {
        let packed = d.join(format!("hello.{compress}"));
        pack(&hello, &packed, compress);
        let data = std::fs::read(&packed).unwrap();
        let trailer = &data[data.len() - 64..];
        let payload_off = u64::from_le_bytes(trailer[8..16].try_into().unwrap()) as usize;
        let chunks = u32::from_le_bytes(trailer[36..40].try_into().unwrap()) as usize;
        if compress == "balanced" {
            assert_eq!(
                chunks, 2,
                "libc and the loader are split for parallel decoding"
            );
        }
        let table = data.len() - 64 - 32 * chunks;
        let cache = d.join("cache");
        // A flipped byte in the first chunk, the last chunk, the chunk table.
        let mut files = Vec::new();
        for (name, at) in [
            ("first", payload_off + 100),
            ("last", table - 1000),
            ("table", table + 3),
        ] {
            let mut bad = data.clone();
            bad[at] ^= 0x55;
            let f = d.join(format!("corrupt-{name}-{compress}"));
            std::fs::write(&f, &bad).unwrap();
            files.push((f, "corrupted"));
        }
        let truncated = d.join(format!("truncated-{compress}"));
        std::fs::write(&truncated, &data[..data.len() - 5000]).unwrap();
        files.push((truncated, "truncated"));
        for (f, word) in &files {
            std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
            let o = Command::new(f)
                .env("ELFPACK_CACHE_DIR", &cache)
                .output()
                .unwrap();
            assert_eq!(o.status.code(), Some(127), "{f:?}");
            assert!(o.stdout.is_empty());
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(err.contains(word), "{f:?}: {err}");
            assert!(
                !cache.exists() || std::fs::read_dir(&cache).unwrap().next().is_none(),
                "nothing extracted"
            );
        }
    }
}

#[test]
fn planted_cache_paths_are_not_used() {
    if !is_root() {
        eprintln!("skipped: needs root to plant files as another user");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let hello = compile(d, "hello.c", &[]);
    let packed = d.join("hello.packed");
    pack(&hello, &packed, "fast");
    // Learn the content key from a clean run.
    let clean = d.join("clean");
    assert!(
        Command::new(&packed)
            .env("ELFPACK_CACHE_DIR", &clean)
            .status()
            .unwrap()
            .success()
    );
    // The extracted tree, not the launcher's `.lock-KEY` beside it.
    let key = std::fs::read_dir(&clean)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .find(|n| !n.as_encoded_bytes().starts_with(b"."))
        .unwrap();
    // An attacker's tree with a program that would print EVIL.
    let evil = d.join("evil");
    std::fs::create_dir_all(evil.join("bin")).unwrap();
    std::fs::write(evil.join("bin/hello"), "#!/bin/sh\necho EVIL\n").unwrap();
    std::fs::write(evil.join(".elfpack-entry"), "bin/hello").unwrap();
    std::fs::write(evil.join(".elfpack-complete"), "").unwrap();
    let chown = |p: &Path| {
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        unsafe { libc::lchown(c.as_ptr(), 1234, 1234) };
    };
    for p in [
        "",
        "bin",
        "bin/hello",
        ".elfpack-entry",
        ".elfpack-complete",
    ] {
        chown(&evil.join(p));
    }
    let home = d.join("home");
    std::fs::create_dir(&home).unwrap();
    // 1. A symlink at the cache path; 2. a directory of another user there;
    // 3. the whole cache dir owned by another user.
    let symlinked = d.join("c1");
    std::fs::create_dir(&symlinked).unwrap();
    std::os::unix::fs::symlink(&evil, symlinked.join(&key)).unwrap();
    let foreign = d.join("c2");
    std::fs::create_dir(&foreign).unwrap();
    Command::new("cp")
        .arg("-a")
        .arg(&evil)
        .arg(foreign.join(&key))
        .status()
        .unwrap();
    let other_owner = d.join("c3");
    std::fs::create_dir(&other_owner).unwrap();
    chown(&other_owner);
    for cache in [&symlinked, &foreign, &other_owner] {
        let o = Command::new(&packed)
            .env("ELFPACK_CACHE_DIR", cache)
            .env("HOME", &home)
            .env("ELFPACK_DEBUG", "1")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            out,
            "hello from C\n",
            "{}: {}",
            cache.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("skip"),
            "{}: {}",
            cache.display(),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
