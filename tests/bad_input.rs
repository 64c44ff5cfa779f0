//! The bad-input table (issue 13): every kind of bad program, script,
//! option or output path must end with exit status 1, one line on stderr that
//! names the file (or option) and says what is wrong, no panic, nothing on
//! stdout, and nothing left behind where the outputs would have gone.
//!
//! The fixtures are made once, by editing copies of /usr/bin/true, so the
//! whole table runs in a few seconds.

mod common;

use common::{describe, elfpack, text, workdir};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const TRUE: &str = "/usr/bin/true";

/// Where outputs go in a row.
#[derive(Clone, Copy, PartialEq)]
enum Outputs {
    /// Twice: `--rootfs OUT/root --dockerfile OUT/Dockerfile`, then
    /// `-o OUT/single`.
    Both,
    /// Only the row's own arguments (they name their outputs under OUT).
    Own,
}

struct Row {
    kind: String,
    prog: PathBuf,
    args: Vec<String>,
    outputs: Outputs,
    /// Must appear in the error line (the file or option at fault).
    names: String,
    /// One of these must appear too (case-insensitive): the problem.
    words: Vec<&'static str>,
    /// Run without the capabilities that let root read any file.
    no_dac: bool,
    /// A directory whose listing must not change (besides OUT staying empty).
    watch: Option<PathBuf>,
}

fn row(kind: &str, prog: &Path, words: &[&'static str]) -> Row {
    Row {
        kind: kind.to_string(),
        prog: prog.to_path_buf(),
        args: Vec::new(),
        outputs: Outputs::Both,
        names: prog.to_string_lossy().into_owned(),
        words: words.to_vec(),
        no_dac: false,
        watch: None,
    }
}

fn opt_row(kind: &str, args: &[&str], names: &str, words: &[&'static str]) -> Row {
    Row {
        args: args.iter().map(|s| s.to_string()).collect(),
        outputs: Outputs::Own,
        names: names.to_string(),
        ..row(kind, Path::new(TRUE), words)
    }
}

/// The ELF program header fields the rows edit.
struct Ph {
    at: usize,
}

fn phdrs(b: &[u8]) -> Vec<Ph> {
    let phoff = u64_at(b, 32) as usize;
    let phnum = u16::from_le_bytes(b[56..58].try_into().unwrap()) as usize;
    (0..phnum).map(|i| Ph { at: phoff + 56 * i }).collect()
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;

fn first_load(b: &[u8]) -> usize {
    phdrs(b)
        .into_iter()
        .find(|p| u32_at(b, p.at) == PT_LOAD)
        .unwrap()
        .at
}

/// Makes the fixtures in `d` and returns the table.
fn table(d: &Path) -> Vec<Row> {
    let elf = std::fs::read(TRUE).unwrap();
    let put = |name: &str, bytes: &[u8]| -> PathBuf {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    let edit = |name: &str, f: &dyn Fn(&mut Vec<u8>)| -> PathBuf {
        let mut b = elf.clone();
        f(&mut b);
        put(name, &b)
    };
    let mut rows = Vec::new();

    // ---- files that are not programs
    rows.push(row(
        "missing file",
        &d.join("no-such-program"),
        &["no such file"],
    ));
    let dir = d.join("a-directory");
    std::fs::create_dir(&dir).unwrap();
    rows.push(row("directory", &dir, &["is a directory"]));
    rows.push(row("empty file", &put("empty", b""), &["empty"]));
    rows.push(row("text file", &put("text", b"hello\n"), &["not an ELF"]));
    rows.push(row(
        "only the magic",
        &put("magic", b"\x7fELF"),
        &["truncated"],
    ));
    let lp = d.join("loop");
    std::os::unix::fs::symlink(&lp, &lp).unwrap();
    rows.push(row("symlink loop", &lp, &["symbolic links"]));
    let dangling = d.join("dangling");
    std::os::unix::fs::symlink("/no/such/target", &dangling).unwrap();
    rows.push(row("dangling symlink", &dangling, &["no such file"]));
    rows.push(row(
        "character device",
        Path::new("/dev/zero"),
        &["not a regular file"],
    ));
    let fifo = d.join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    rows.push(row("fifo", &fifo, &["not a regular file"]));
    let sock = d.join("sock");
    std::mem::forget(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    rows.push(row("socket", &sock, &["not a regular file"]));
    let unreadable = put("unreadable", &elf);
    std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).unwrap();
    rows.push(Row {
        no_dac: true,
        ..row("unreadable file", &unreadable, &["permission denied"])
    });
    let locked = d.join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::copy(TRUE, locked.join("prog")).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    rows.push(Row {
        no_dac: true,
        ..row(
            "program in an unreadable directory",
            &locked.join("prog"),
            &["permission denied"],
        )
    });

    // ---- truncations at many offsets
    let seg_end = phdrs(&elf)
        .iter()
        .filter(|p| u32_at(&elf, p.at) == PT_LOAD)
        .map(|p| u64_at(&elf, p.at + 8) + u64_at(&elf, p.at + 32))
        .max()
        .unwrap() as usize;
    let mut cuts = vec![
        1, 2, 3, 5, 16, 17, 18, 20, 40, 52, 58, 63, 64, 65, 120, 300, 700, 1000, 2000, 4000,
    ];
    cuts.extend([seg_end / 3, seg_end / 2, seg_end * 3 / 4, seg_end - 1]);
    for n in cuts {
        rows.push(row(
            &format!("truncated at {n} of {} bytes", elf.len()),
            &put(&format!("cut-{n}"), &elf[..n]),
            &["truncated", "not an ELF", "malformed"],
        ));
    }

    // ---- wrong machines, classes, byte orders, types
    for (name, m) in [
        ("aarch64", 183u16),
        ("arm", 40),
        ("i386", 3),
        ("riscv", 243),
        ("ppc64", 21),
        ("s390", 22),
        ("an unknown machine", 0x1234),
    ] {
        rows.push(row(
            &format!("machine {name}"),
            &edit(&format!("machine-{m}"), &|b| {
                b[18..20].copy_from_slice(&m.to_le_bytes())
            }),
            &["wrong architecture"],
        ));
    }
    rows.push(row(
        "32-bit class",
        &edit("class32", &|b| b[4] = 1),
        &["truncated", "malformed", "wrong architecture"],
    ));
    rows.push(row(
        "unknown class",
        &edit("class7", &|b| b[4] = 7),
        &["class", "malformed"],
    ));
    rows.push(row(
        "big-endian",
        &edit("big-endian", &|b| b[5] = 2),
        &["big-endian", "malformed"],
    ));
    rows.push(row(
        "core dump",
        &edit("core", &|b| b[16] = 4),
        &["core dump"],
    ));
    rows.push(row(
        "object file",
        &edit("object", &|b| b[16] = 1),
        &["object file", "neither an executable"],
    ));
    rows.push(row(
        "shared library",
        Path::new("/usr/lib/x86_64-linux-gnu/libz.so.1"),
        &["a shared library, not a program"],
    ));

    // ---- broken program headers
    rows.push(row(
        "garbage program headers",
        &edit("garbage-phdrs", &|b| {
            let (at, n) = (u64_at(b, 32) as usize, phdrs(b).len());
            for (i, x) in b[at..at + 56 * n].iter_mut().enumerate() {
                *x = (i * 131 + 7) as u8;
            }
        }),
        &["program headers", "malformed", "truncated"],
    ));
    rows.push(row(
        "wrong program header size",
        &edit("phentsize", &|b| b[54] = 40),
        &["program headers", "malformed"],
    ));
    rows.push(row(
        "program headers past the end",
        &edit("phoff", &|b| put64(b, 32, 1 << 40)),
        &["truncated", "malformed"],
    ));
    rows.push(row(
        "65535 program headers",
        &edit("phnum", &|b| b[56..58].copy_from_slice(&[0xff, 0xff])),
        &["truncated", "malformed"],
    ));
    rows.push(row(
        "no loadable segment",
        &edit("no-load", &|b| {
            for p in phdrs(b) {
                if u32_at(b, p.at) == PT_LOAD {
                    b[p.at..p.at + 4].copy_from_slice(&6u32.to_le_bytes()); // PT_PHDR
                }
            }
        }),
        &["no loadable segment"],
    ));
    rows.push(row(
        "segment past the end of the file",
        &edit("load-offset", &|b| {
            let at = first_load(b);
            put64(b, at + 8, 1 << 30);
        }),
        &["truncated", "segment"],
    ));
    rows.push(row(
        "segment with more file than memory",
        &edit("filesz", &|b| {
            let at = first_load(b);
            let mem = u64_at(b, at + 40);
            put64(b, at + 32, mem + 4096);
        }),
        &["more file bytes than memory", "truncated"],
    ));
    rows.push(row(
        "entry point outside the segments",
        &edit("entry", &|b| put64(b, 24, 1 << 44)),
        &["entry point"],
    ));
    rows.push(row(
        "interpreter missing",
        &edit("interp-missing", &|b| {
            let p = phdrs(b)
                .into_iter()
                .find(|p| u32_at(b, p.at) == PT_INTERP)
                .unwrap();
            let off = u64_at(b, p.at + 8) as usize;
            let s = b"/lib/no-such-ld.so\0";
            b[off..off + s.len()].copy_from_slice(s);
        }),
        &["/lib/no-such-ld.so"],
    ));
    rows.push(row(
        "interpreter is a text file",
        &edit("interp-text", &|b| {
            let p = phdrs(b)
                .into_iter()
                .find(|p| u32_at(b, p.at) == PT_INTERP)
                .unwrap();
            let off = u64_at(b, p.at + 8) as usize;
            let s = b"/etc/passwd\0";
            b[off..off + s.len()].copy_from_slice(s);
        }),
        &["/etc/passwd", "interpreter"],
    ));
    rows.push(row(
        "interpreter string unterminated",
        &edit("interp-unterminated", &|b| {
            let p = phdrs(b)
                .into_iter()
                .find(|p| u32_at(b, p.at) == PT_INTERP)
                .unwrap();
            let (off, len) = (u64_at(b, p.at + 8) as usize, u64_at(b, p.at + 32) as usize);
            b[off..off + len].fill(b'x');
        }),
        &["PT_INTERP", "unterminated"],
    ));
    let needs = d.join("needs-missing");
    let o = elfpack()
        .args(["patch", "--add-needed", "libno-such-lib.so.7", TRUE, "-o"])
        .arg(&needs)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", describe(&o));
    rows.push(row(
        "needed library missing",
        &needs,
        &["libno-such-lib.so.7"],
    ));

    // ---- scripts
    rows.push(row(
        "CRLF #! line",
        &put("crlf", b"#!/bin/sh\r\necho hi\r\n"),
        &["carriage return"],
    ));
    rows.push(row(
        "interpreter of a script missing",
        &put("no-interp", b"#!/no/such/interpreter\n"),
        &["/no/such/interpreter"],
    ));
    rows.push(row(
        "env program not on PATH",
        &put("env-missing", b"#!/usr/bin/env no-such-tool-here\n"),
        &["no-such-tool-here is not on PATH"],
    ));
    rows.push(row(
        "empty #! line",
        &put("empty-shebang", b"#!\n"),
        &["empty #! line"],
    ));
    rows.push(row(
        "interpreter is a directory",
        &put("interp-dir", b"#!/usr\n"),
        &["is a directory"],
    ));
    let text_interp = put("text-interp", b"plain text\n");
    rows.push(row(
        "script interpreter is a text file",
        &put(
            "script-text-interp",
            format!("#!{}\n", text_interp.display()).as_bytes(),
        ),
        &["not an ELF"],
    ));
    let a = d.join("script-a");
    let b = d.join("script-b");
    std::fs::write(&a, format!("#!{}\n", b.display())).unwrap();
    std::fs::write(&b, format!("#!{}\n", a.display())).unwrap();
    rows.push(row("scripts naming each other", &a, &["too many levels"]));
    rows.push(row(
        "script interpreter is a library",
        &put("lib-interp", b"#!/usr/lib/x86_64-linux-gnu/libz.so.1\n"),
        &["a shared library, not a program"],
    ));

    // ---- options
    rows.push(opt_row(
        "--env with a bad name",
        &[
            "--env",
            "X+x}\" ] || touch /tmp/P #=1",
            "--prefix",
            "/opt/p",
            "--rootfs",
            "OUT/p",
        ],
        "--env",
        &["not a variable name"],
    ));
    rows.push(opt_row(
        "--env without =",
        &["--env", "noequals", "--oci", "OUT/i.tar"],
        "noequals",
        &["NAME=VALUE"],
    ));
    rows.push(opt_row(
        "--user unknown",
        &["--user", "alice", "--oci", "OUT/i.tar"],
        "alice",
        &["no user"],
    ));
    rows.push(opt_row(
        "--workdir relative",
        &["--workdir", "rel/dir", "--oci", "OUT/i.tar"],
        "rel/dir",
        &["absolute"],
    ));
    rows.push(opt_row(
        "--add missing",
        &["--add", "/no/such/extra", "--rootfs", "OUT/root"],
        "/no/such/extra",
        &["no such file"],
    ));
    rows.push(opt_row(
        "--add glob matching nothing",
        &["--add", "/no/such/*.conf", "-o", "OUT/single"],
        "/no/such/*.conf",
        &["matches nothing"],
    ));
    rows.push(opt_row(
        "--add DEST with ..",
        &["--add", "/etc/hostname:/data/../../x", "-o", "OUT/single"],
        "/data/../../x",
        &["'..'"],
    ));
    let tree = d.join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", tree.join("shadow")).unwrap();
    let tree_arg = format!("{}:/data", tree.display());
    rows.push(opt_row(
        "--add tree with a link outside",
        &["--add", &tree_arg, "--rootfs", "OUT/root"],
        "/etc/shadow",
        &["outside the added directory"],
    ));
    rows.push(opt_row(
        "--nsswitch missing",
        &[
            "--nsswitch",
            "/no/such/nsswitch.conf",
            "--rootfs",
            "OUT/root",
        ],
        "/no/such/nsswitch.conf",
        &["no such file"],
    ));
    let odd = d.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    std::fs::copy(TRUE, &odd).unwrap();
    rows.push(Row {
        args: vec!["--oci".into(), "OUT/i.tar".into()],
        outputs: Outputs::Own,
        ..row("non-UTF-8 program path with --oci", &odd, &["not UTF-8"])
    });

    // ---- output paths
    let specials = d.join("specials");
    std::fs::create_dir(&specials).unwrap();
    let null = specials.join("null");
    let c = std::ffi::CString::new(null.as_os_str().as_bytes()).unwrap();
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    if rc == 0 {
        rows.push(Row {
            watch: Some(specials.clone()),
            ..opt_row(
                "-o onto a character device",
                &["-o", null.to_str().unwrap(), "--force"],
                null.to_str().unwrap(),
                &["character device"],
            )
        });
    }
    let osock = specials.join("sock");
    std::mem::forget(std::os::unix::net::UnixListener::bind(&osock).unwrap());
    rows.push(Row {
        watch: Some(specials.clone()),
        ..opt_row(
            "--oci onto a socket",
            &["--oci", osock.to_str().unwrap(), "--force"],
            osock.to_str().unwrap(),
            &["socket"],
        )
    });
    let plain = specials.join("plain-file");
    std::fs::write(&plain, "x").unwrap();
    rows.push(Row {
        watch: Some(specials.clone()),
        ..opt_row(
            "--rootfs onto a file",
            &["--rootfs", plain.to_str().unwrap(), "--force"],
            plain.to_str().unwrap(),
            &["not a directory"],
        )
    });
    let under_file = format!("{}/sub/single", plain.display());
    rows.push(Row {
        watch: Some(specials.clone()),
        ..opt_row(
            "-o below a file",
            &["-o", &under_file],
            &under_file,
            &["not a directory"],
        )
    });
    let holder = d.join("holder");
    std::fs::create_dir(&holder).unwrap();
    let held = holder.join("prog");
    std::fs::copy(TRUE, &held).unwrap();
    rows.push(Row {
        prog: held.clone(),
        watch: Some(holder.clone()),
        ..opt_row(
            "--rootfs --force onto the input's directory",
            &["--rootfs", holder.to_str().unwrap(), "--force"],
            holder.to_str().unwrap(),
            &["one of the inputs"],
        )
    });
    rows.push(Row {
        prog: held.clone(),
        watch: Some(holder.clone()),
        ..opt_row(
            "-o --force onto the input",
            &["-o", held.to_str().unwrap(), "--force"],
            held.to_str().unwrap(),
            &["one of the inputs"],
        )
    });
    rows.push(opt_row(
        "--dockerfile without --rootfs",
        &["--dockerfile", "OUT/Dockerfile", "--oci", "OUT/i.tar"],
        "--dockerfile",
        &["needs --rootfs"],
    ));
    rows
}

fn listing(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs one row in one output mode; returns what went wrong, if anything.
fn check(row: &Row, out: &Path, outputs: &[String]) -> Option<String> {
    let mut cmd = if row.no_dac {
        let mut c = std::process::Command::new("/usr/bin/setpriv");
        c.args(["--bounding-set", "-dac_override,-dac_read_search"])
            .arg(common::ELFPACK);
        c
    } else {
        elfpack()
    };
    let args: Vec<String> = row
        .args
        .iter()
        .chain(outputs)
        .map(|a| a.replace("OUT", out.to_str().unwrap()))
        .collect();
    let before = row.watch.as_deref().map(listing);
    let o = cmd
        .arg(&row.prog)
        .args(&args)
        .arg("--no-layer-size")
        .output()
        .unwrap();
    let what = || format!("{} ({args:?}): {}", row.kind, describe(&o));
    if o.status.code() != Some(1) {
        return Some(format!("exit status not 1: {}", what()));
    }
    let err = text(&o.stderr);
    if err.contains("panicked") {
        return Some(format!("panic: {}", what()));
    }
    if !o.stdout.is_empty() {
        return Some(format!("wrote to stdout: {}", what()));
    }
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() != 1 {
        return Some(format!("not one line: {}", what()));
    }
    let line = lines[0];
    if !line.starts_with("elfpack: error: ") {
        return Some(format!("not an elfpack error: {}", what()));
    }
    if !line.contains(&row.names) {
        return Some(format!("does not name {:?}: {}", row.names, what()));
    }
    let lower = line.to_lowercase();
    if !row.words.iter().any(|w| lower.contains(&w.to_lowercase())) {
        return Some(format!("says none of {:?}: {}", row.words, what()));
    }
    let left = listing(out);
    if !left.is_empty() {
        return Some(format!("left behind {left:?}: {}", what()));
    }
    if let (Some(d), Some(b)) = (&row.watch, before)
        && listing(d) != b
    {
        return Some(format!("changed {}: {}", d.display(), what()));
    }
    None
}

#[test]
fn bad_input_table() {
    if !common::require_root("the bad-input table (devices, unreadable files)") {
        return;
    }
    let w = workdir();
    let fixtures = w.path().join("fixtures");
    std::fs::create_dir(&fixtures).unwrap();
    let rows = table(&fixtures);
    let kinds: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds.len(), rows.len(), "duplicate kinds");
    assert!(rows.len() >= 50, "only {} kinds", rows.len());
    let out = w.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let both = [
        vec![
            "--rootfs".to_string(),
            "OUT/root".into(),
            "--dockerfile".into(),
            "OUT/Dockerfile".into(),
        ],
        vec!["-o".to_string(), "OUT/new-dir/single".into()],
    ];
    let mut failures = Vec::new();
    let mut runs = 0;
    for r in &rows {
        let modes: &[Vec<String>] = match r.outputs {
            Outputs::Both => &both,
            Outputs::Own => &[Vec::new()],
        };
        for m in modes {
            runs += 1;
            if let Some(f) = check(r, &out, m) {
                failures.push(f);
            }
        }
    }
    // Unlock what the rows locked, so the work dir can be removed.
    std::fs::set_permissions(
        fixtures.join("locked"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    assert!(
        failures.is_empty(),
        "{} of {runs} runs ({} kinds) failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n\n")
    );
    eprintln!("{} kinds, {runs} runs, all refused cleanly", rows.len());
}
