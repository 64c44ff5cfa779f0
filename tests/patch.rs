//! `elfpack patch` checked by running what it writes: every patched program
//! still runs and prints what the original printed, and `readelf -a` has no
//! complaint about the result.

mod common;

use common::{gcc, run_elfpack as elfpack, stdout_ok as ok};

fn readelf_clean(p: &Path) {
    common::readelf(&["-a", "-W"], p);
}

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

fn run(p: &Path) -> String {
    ok(Command::new(p).output().unwrap())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A copy of the loader under a long directory name.
fn long_loader(dir: &Path) -> PathBuf {
    let d = dir.join("a-rather-long-directory-name-so-the-interpreter-cannot-fit-in-place/lib");
    std::fs::create_dir_all(&d).unwrap();
    let l = d.join("ld-linux-x86-64.so.2");
    std::fs::copy("/lib64/ld-linux-x86-64.so.2", &l).unwrap();
    l
}

#[test]
fn longer_interpreter_and_growing_rpath_on_pie_non_pie_and_relr() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let loader = long_loader(d);
    for (name, flags) in [
        ("pie", vec!["-pie"]),
        ("nopie", vec!["-no-pie"]),
        ("relr", vec!["-pie", "-Wl,-z,pack-relative-relocs"]),
        ("cxx", vec![]),
    ] {
        let bin = d.join(name);
        let src = if name == "cxx" {
            format!("{FIX}/hello.cpp")
        } else {
            format!("{FIX}/hello.c")
        };
        let mut args = vec![src.as_str(), "-o", s(&bin)];
        args.extend(flags.iter().copied());
        if name == "cxx" {
            args.push("-lstdc++");
        }
        gcc(&args);
        let before = run(&bin);
        let out = d.join(format!("{name}.patched"));
        let rpath = format!(
            "{}:/opt/some/other/place/that/makes/the/string/table/grow",
            loader.parent().unwrap().display()
        );
        ok(elfpack(&[
            "patch",
            s(&bin),
            "-o",
            s(&out),
            "--set-interpreter",
            s(&loader),
            "--set-rpath",
            &rpath,
        ]));
        readelf_clean(&out);
        assert_eq!(run(&out), before, "{name}");
        let printed = ok(elfpack(&[
            "patch",
            s(&out),
            "--print-interpreter",
            "--print-rpath",
        ]));
        assert_eq!(printed, format!("{}\n{rpath}\n", loader.display()));
        let dynamic = ok(Command::new("readelf")
            .arg("-d")
            .arg(&out)
            .output()
            .unwrap());
        assert!(
            dynamic.contains("(RUNPATH)"),
            "--set-rpath writes DT_RUNPATH by default"
        );
        // And back to a short interpreter, in place.
        ok(elfpack(&[
            "patch",
            s(&out),
            "--set-interpreter",
            "/lib64/ld-linux-x86-64.so.2",
            "--force-rpath",
            "--set-rpath",
            "/x",
        ]));
        readelf_clean(&out);
        assert_eq!(run(&out), before);
        let dynamic = ok(Command::new("readelf")
            .arg("-d")
            .arg(&out)
            .output()
            .unwrap());
        assert!(
            dynamic.contains("(RPATH)") && !dynamic.contains("(RUNPATH)"),
            "{dynamic}"
        );
    }
    let relr = ok(Command::new("readelf")
        .args(["-d"])
        .arg(d.join("relr.patched"))
        .output()
        .unwrap());
    assert!(
        relr.contains("RELR"),
        "the RELR fixture really has RELR relocations"
    );
}

#[test]
fn shared_libraries_soname_and_needed_edits() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let r = format!("{FIX}/resolve");
    gcc(&[
        "-shared",
        "-fPIC",
        "-DMARK=\"renamed\"",
        "-Wl,-soname,liba.so",
        "-o",
        s(&d.join("liba.so")),
        &format!("{r}/liba.c"),
    ]);
    gcc(&[
        "-shared",
        "-fPIC",
        "-o",
        s(&d.join("libb.so")),
        &format!("{r}/libb.c"),
        &format!("-L{}", d.display()),
        "-la",
    ]);
    // DT_RPATH, so libb's own needs are searched there too.
    let rp = format!("-Wl,--disable-new-dtags,-rpath,{}", d.display());
    gcc(&[
        &format!("{r}/main.c"),
        "-o",
        s(&d.join("prog")),
        &format!("-L{}", d.display()),
        "-lb",
        &rp,
        "-Wl,--allow-shlib-undefined",
    ]);
    // Rename liba to libnew.so: its SONAME and libb's DT_NEEDED follow.
    ok(elfpack(&[
        "patch",
        s(&d.join("liba.so")),
        "-o",
        s(&d.join("libnew.so")),
        "--set-soname",
        "libnew.so",
    ]));
    std::fs::remove_file(d.join("liba.so")).unwrap();
    ok(elfpack(&[
        "patch",
        s(&d.join("libb.so")),
        "--replace-needed",
        "liba.so",
        "libnew.so",
    ]));
    for f in ["libnew.so", "libb.so"] {
        readelf_clean(&d.join(f));
    }
    assert_eq!(
        ok(elfpack(&[
            "patch",
            s(&d.join("libnew.so")),
            "--print-soname"
        ])),
        "libnew.so\n"
    );
    assert_eq!(
        ok(elfpack(&["patch", s(&d.join("libb.so")), "--print-needed"])),
        "libnew.so\n"
    );
    assert_eq!(run(&d.join("prog")), "liba: renamed\n");
    // add/remove needed on the program.
    ok(elfpack(&[
        "patch",
        s(&d.join("prog")),
        "--add-needed",
        "libm.so.6",
    ]));
    let needed = ok(elfpack(&["patch", s(&d.join("prog")), "--print-needed"]));
    assert!(needed.starts_with("libm.so.6\n"), "{needed}");
    let ldd = ok(Command::new("/lib64/ld-linux-x86-64.so.2")
        .arg("--list")
        .arg(d.join("prog"))
        .output()
        .unwrap());
    assert!(ldd.contains("libm.so.6"));
    ok(elfpack(&[
        "patch",
        s(&d.join("prog")),
        "--remove-needed",
        "libm.so.6",
        "--remove-rpath",
    ]));
    let needed = ok(elfpack(&[
        "patch",
        s(&d.join("prog")),
        "--print-needed",
        "--print-rpath",
    ]));
    assert_eq!(
        needed, "\nlibb.so\nlibc.so.6\n",
        "empty rpath, then the needed list"
    );
    readelf_clean(&d.join("prog"));
}

#[test]
fn files_without_section_headers_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let f = t.path().join("noshdr");
    let mut data = std::fs::read("/usr/bin/true").unwrap();
    data[40..48].fill(0); // e_shoff
    data[60..64].fill(0); // e_shnum, e_shstrndx
    std::fs::write(&f, &data).unwrap();
    let o = elfpack(&["patch", s(&f), "--set-interpreter", "/x/ld.so"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("noshdr") && err.contains("no section headers"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&f).unwrap(),
        data,
        "the file is left as it was"
    );
    for bad in [&b"not elf at all"[..], &data[..100]] {
        std::fs::write(&f, bad).unwrap();
        let o = elfpack(&["patch", s(&f), "--set-rpath", "/x"]);
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("noshdr"));
    }
}

/// Runs `prog` with `arg` (argv[0] as given), stdin closed, for at most 10 s.
fn capture(prog: &Path, argv0: &str, arg: &str) -> Option<(Option<i32>, Vec<u8>)> {
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(prog)
        .arg0(argv0)
        .arg(arg)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(st) = c.try_wait().ok()? {
            let mut out = Vec::new();
            use std::io::Read;
            c.stdout.take()?.read_to_end(&mut out).ok()?;
            return Some((st.code(), out));
        }
        if std::time::Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Sweep: programs from /usr/bin bundled under one prefix (interpreter and
/// RPATH rewritten to a copy of their closure) print what the originals print.
#[test]
fn sweep_of_usr_bin_programs_under_a_prefix() {
    let t = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let prefix = t.path().join("bundle");
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/bin")
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| elfpack::elf::read(p).is_ok_and(|i| i.kind == elfpack::elf::Kind::Dynamic))
        .collect();
    candidates.sort();
    // Programs whose --version output is stable run to run.
    let mut chosen = Vec::new();
    for p in candidates {
        let name = p.display().to_string();
        for arg in ["--version", "--help"] {
            if let (Some(a), Some(b)) = (capture(&p, &name, arg), capture(&p, &name, arg))
                && a == b
                && a.0 == Some(0)
                && !a.1.is_empty()
            {
                chosen.push((p.clone(), arg));
                break;
            }
        }
    }
    assert!(
        chosen.len() >= 200,
        "only {} programs answer --version/--help",
        chosen.len()
    );
    let progs: Vec<&str> = chosen.iter().map(|(p, _)| p.to_str().unwrap()).collect();
    let root = t.path().join("root");
    let mut args = progs.clone();
    args.extend([
        "--prefix",
        s(&prefix),
        "--rootfs",
        s(&root),
        "--no-layer-size",
    ]);
    ok(elfpack(&args));
    std::fs::rename(root.join(prefix.strip_prefix("/").unwrap()), &prefix).unwrap();
    let mut differ = Vec::new();
    for (p, arg) in &chosen {
        let bundled = prefix.join(p.strip_prefix("/").unwrap());
        let name = p.display().to_string();
        // A second try before calling it a difference: on a loaded machine
        // a program that runs others (groff) can hit the 10 s limit once.
        // Programs that run helpers concurrently (groff) print their lines in
        // varying order: compare exit codes and the lines as a multiset.
        let lines = |c: Option<(Option<i32>, Vec<u8>)>| {
            c.map(|(code, out)| {
                let mut l: Vec<Vec<u8>> = out.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
                l.sort();
                (code, l)
            })
        };
        let same = || lines(capture(p, &name, arg)) == lines(capture(&bundled, &name, arg));
        if !same() && !same() {
            differ.push(format!("{name} {arg}"));
        }
    }
    eprintln!(
        "sweep: {} programs bundled, {} differ",
        chosen.len(),
        differ.len()
    );
    assert!(differ.is_empty(), "output differs for: {differ:?}");
}
