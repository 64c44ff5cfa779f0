//! Where outputs go and what they may replace (issue 13 items 1, 2, 6, 7,
//! 10, 12, 13; issue 12 item 5): every rule lives in src/output.rs, so each
//! is checked here against the outputs that use it.

mod common;

use common::{describe, elfpack, text, workdir};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A small dynamically linked program every Debian has.
const PROG: &str = "/usr/bin/true";

fn run(dir: &Path, args: &[&str]) -> Output {
    elfpack()
        .current_dir(dir)
        .args(args)
        .arg("--no-layer-size")
        .output()
        .unwrap()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", describe(o));
}

/// Fails with one line that contains each of `words`.
fn refused(o: &Output, words: &[&str]) -> String {
    assert_eq!(o.status.code(), Some(1), "{}", describe(o));
    let err = text(&o.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {}", describe(o));
    for w in words {
        assert!(lines[0].contains(w), "no {w:?} in: {}", lines[0]);
    }
    lines[0].to_string()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Item 1: `cd d && elfpack P --rootfs ../d --force` replaces d.
#[test]
fn force_onto_the_current_directory_given_relatively() {
    let w = workdir();
    let d = w.path().join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("old"), "x").unwrap();
    let o = run(&d, &[PROG, "--rootfs", "../d", "--force"]);
    ok(&o);
    assert!(!d.join("old").exists(), "not replaced");
    assert!(d.join("usr/bin/true").is_file(), "{:?}", names(&d));
    assert_eq!(names(w.path()), ["d"], "left beside the output");
}

/// Item 2: an output that holds an input is refused; nothing is touched.
#[test]
fn force_onto_a_directory_holding_the_input_is_refused() {
    let w = workdir();
    let d = w.path().join("d");
    std::fs::create_dir(&d).unwrap();
    std::fs::copy(PROG, d.join("prog")).unwrap();
    std::fs::write(d.join("sibling"), "keep").unwrap();
    let prog = d.join("prog");
    let o = run(
        w.path(),
        &[prog.to_str().unwrap(), "--rootfs", "d", "--force"],
    );
    refused(&o, &["d: holds", "prog", "one of the inputs"]);
    assert_eq!(names(&d), ["prog", "sibling"]);
    // The program itself as a file output.
    let o = run(
        w.path(),
        &[prog.to_str().unwrap(), "-o", "d/prog", "--force"],
    );
    refused(&o, &["d/prog: is", "one of the inputs"]);
    // A library of the closure (found through a symlinked path).
    let o = run(
        w.path(),
        &[PROG, "--rootfs", "/usr/lib/x86_64-linux-gnu", "--force"],
    );
    refused(
        &o,
        &["/usr/lib/x86_64-linux-gnu: holds", "one of the inputs"],
    );
    assert!(Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6").exists());
    assert_eq!(names(w.path()), ["d"]);
}

/// Item 6: devices and sockets are refused (even with --force, even behind a
/// symlink); a pipe is written into.
#[test]
fn devices_and_sockets_are_refused_and_pipes_written_through() {
    let w = workdir();
    let d = w.path();
    let mut specials: Vec<PathBuf> = Vec::new();
    if common::is_root() {
        let null = d.join("null");
        let c = std::ffi::CString::new(null.to_str().unwrap()).unwrap();
        let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
        assert_eq!(rc, 0);
        specials.push(null);
    }
    let sock = d.join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    specials.push(sock.clone());
    let link = d.join("link");
    std::os::unix::fs::symlink(&sock, &link).unwrap();
    specials.push(link);
    for s in &specials {
        for mode in [&["-o"][..], &["--oci"]] {
            let mut args = vec![PROG];
            args.extend(mode);
            args.extend([s.to_str().unwrap(), "--force"]);
            let o = run(d, &args);
            refused(
                &o,
                &[s.to_str().unwrap(), "elfpack writes only regular files"],
            );
        }
    }
    for s in &specials {
        let m = std::fs::symlink_metadata(s).unwrap();
        assert!(!m.is_file(), "{} was replaced by a file", s.display());
    }
    assert!(std::fs::metadata(&sock).unwrap().file_type().is_socket());

    // A FIFO (what /dev/stdout is in a pipeline): written into.
    let fifo = d.join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let o = run(d, &[PROG, "-o", fifo.to_str().unwrap()]);
    ok(&o);
    let bytes = reader.join().unwrap();
    assert!(bytes.starts_with(b"\x7fELF"), "{} bytes", bytes.len());
    assert_eq!(&bytes[bytes.len() - 64..][..8], b"ELFPACK3");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());

    // /dev/stdout into a pipe: the single file arrives on stdout.
    let o = elfpack()
        .current_dir(d)
        .args([PROG, "-o", "/dev/stdout", "--force", "--no-layer-size"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    ok(&o);
    assert!(o.stdout.starts_with(b"\x7fELF"), "{}", describe(&o));
    assert!(
        std::fs::symlink_metadata("/dev/stdout")
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

/// Item 7: archives follow the umask like every other output.
#[test]
fn outputs_follow_the_umask() {
    let w = workdir();
    let d = w.path();
    let with_umask = |mask: u32, args: &[&str]| {
        let mut c = elfpack();
        c.current_dir(d).args(args).arg("--no-layer-size");
        unsafe {
            c.pre_exec(move || {
                libc::umask(mask);
                Ok(())
            });
        }
        c.output().unwrap()
    };
    let mode = |p: &str| std::fs::metadata(d.join(p)).unwrap().permissions().mode() & 0o777;
    for (mask, file, dir) in [(0o002, 0o664, 0o775), (0o077, 0o600, 0o700)] {
        for f in ["a.tar", "single", "Dockerfile", "b.tar"] {
            let _ = std::fs::remove_file(d.join(f));
        }
        let _ = std::fs::remove_dir_all(d.join("r"));
        ok(&with_umask(mask, &[PROG, "-o", "a.tar"]));
        ok(&with_umask(mask, &[PROG, "--oci", "b.tar"]));
        ok(&with_umask(mask, &[PROG, "-o", "single"]));
        ok(&with_umask(mask, &[PROG, "--rootfs", "r", "--dockerfile"]));
        assert_eq!(mode("a.tar"), file, "tar under umask {mask:o}");
        assert_eq!(mode("b.tar"), file, "OCI under umask {mask:o}");
        assert_eq!(mode("Dockerfile"), file, "Dockerfile under umask {mask:o}");
        assert_eq!(mode("single"), dir, "single file under umask {mask:o}");
    }
}

/// Item 10: a relative --rootfs with a default --dockerfile.
#[test]
fn relative_rootfs_with_dockerfile() {
    let w = workdir();
    let o = run(w.path(), &[PROG, "--rootfs", "r1", "--dockerfile"]);
    ok(&o);
    let df = std::fs::read_to_string(w.path().join("Dockerfile")).unwrap();
    assert!(df.contains("COPY [\"r1/\", \"/\"]"), "{df}");
    let o = run(w.path(), &[PROG, "--rootfs", "sub/r2", "--dockerfile"]);
    ok(&o);
    let df = std::fs::read_to_string(w.path().join("sub/Dockerfile")).unwrap();
    assert!(df.contains("COPY [\"r2/\", \"/\"]"), "{df}");
}

/// Item 12 (and issue 12 item 5): every output creates its missing parent
/// directories, as --rootfs always did; a parent that is a file is named.
#[test]
fn every_output_creates_missing_parents_alike() {
    let w = workdir();
    let d = w.path();
    ok(&run(d, &[PROG, "-o", "a/b/single"]));
    ok(&run(d, &[PROG, "-o", "c/d/x.tar"]));
    ok(&run(d, &[PROG, "--oci", "e/f/img.tar"]));
    ok(&run(d, &[PROG, "--rootfs", "g/h/root"]));
    for p in [
        "a/b/single",
        "c/d/x.tar",
        "e/f/img.tar",
        "g/h/root/usr/bin/true",
    ] {
        assert!(d.join(p).is_file(), "{p}");
    }
    std::fs::write(d.join("file"), "x").unwrap();
    for args in [
        &["-o", "file/sub/single"][..],
        &["--oci", "file/img.tar"],
        &["--rootfs", "file/sub/root"],
    ] {
        let o = run(d, &[&[PROG][..], args].concat());
        refused(&o, &["file is not a directory"]);
    }
    // A failed pack leaves no directory it would have created.
    let o = run(d, &["/no/such/program", "-o", "new/dir/single"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!d.join("new").exists());
}

fn temporaries(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.contains(".elfpack-"))
        .collect()
}

/// Item 13: SIGINT or SIGTERM while a tree is written removes it (and the
/// directories made for it); temporaries of killed runs are removed by the
/// next run.
#[test]
fn signals_remove_temporaries_and_stale_ones_go_next_time() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let w = workdir();
        let d = w.path();
        let mut child = elfpack()
            .current_dir(d)
            .args([PROG, "--add", "/usr/include", "--rootfs", "out/root"])
            .arg("--no-layer-size")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        let mut seen = false;
        while start.elapsed().as_secs() < 60 {
            if d.join("out").exists() && !temporaries(&d.join("out")).is_empty() {
                seen = true;
                break;
            }
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(seen, "no temporary tree seen");
        unsafe { libc::kill(child.id() as i32, sig) };
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(sig), "{status}");
        assert_eq!(names(d), Vec::<String>::new(), "left behind");
    }

    // A SIGKILLed run's temporaries: removed when their process is gone.
    let w = workdir();
    let d = w.path();
    let dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    let mut dead = dead;
    dead.wait().unwrap();
    let stale_dir = d.join(format!(".root.elfpack-{dead_pid}-AbCdEf"));
    std::fs::create_dir_all(stale_dir.join("usr/lib")).unwrap();
    std::fs::write(stale_dir.join("usr/lib/big"), "x").unwrap();
    std::fs::set_permissions(
        stale_dir.join("usr"),
        std::fs::Permissions::from_mode(0o555),
    )
    .unwrap();
    let stale_file = d.join(format!(".other.tar.elfpack-{dead_pid}-XyZ123"));
    std::fs::write(&stale_file, "x").unwrap();
    // A live process's temporary and a user's look-alike stay.
    let live = d.join(format!(".root.elfpack-{}-LiVe00", std::process::id()));
    std::fs::write(&live, "x").unwrap();
    std::fs::write(d.join(".notes.elfpack-old"), "x").unwrap();
    ok(&run(d, &[PROG, "--rootfs", "root"]));
    let left = temporaries(d);
    assert_eq!(
        left,
        [
            ".notes.elfpack-old".to_string(),
            format!(".root.elfpack-{}-LiVe00", std::process::id())
        ]
    );
}
