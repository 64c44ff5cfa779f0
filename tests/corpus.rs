//! The real-program corpus of issue 15, as an ignored test that reports
//! numbers rather than asserting them: each Debian program is packed with
//! plain defaults into `--rootfs` and run by `--test` (an empty root with
//! /proc and /dev, as a `FROM scratch` runtime gives), once with
//! `--no-package-data` (elfpack before package data) and once with the
//! defaults. Programs not installed here are listed as skipped.
//!
//! ```sh
//! apt-get install graphviz espeak-ng gawk ruby imagemagick lua5.4 xmlstarlet nginx postgresql
//! cargo test --release --test corpus -- --ignored --nocapture
//! ```

mod common;

use std::path::Path;

use common::{elfpack, workdir};

/// (name, program, arguments, extra pack options).
type Case = (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
);

const DOT: &str = "/var/tmp/elfpack-corpus-g.dot";
const TCL: &str = "/var/tmp/elfpack-corpus-t.tcl";

const CORPUS: &[Case] = &[
    (
        "perl POSIX List::Util",
        "/usr/bin/perl",
        &[
            "-MPOSIX",
            "-MList::Util=sum",
            "-e",
            "print sum(1,2), POSIX::floor(2.5)",
        ],
        &[],
    ),
    (
        "python3 stdlib",
        "/usr/bin/python3",
        &["-c", common::PY_CODE],
        &[],
    ),
    (
        "vim syntax, writes a file",
        "/usr/bin/vim",
        &[
            "--clean",
            "-es",
            "-c",
            "syntax on",
            "-c",
            "e /tmp/x.c",
            "-c",
            "put =b:current_syntax",
            "-c",
            "w",
            "-c",
            "qa!",
        ],
        &[],
    ),
    ("java -version", "/usr/bin/java", &["-version"], &[]),
    ("nginx -t", "/usr/sbin/nginx", &["-t"], &[]),
    (
        "initdb --version",
        "/usr/lib/postgresql/15/bin/initdb",
        &["--version"],
        &[],
    ),
    (
        "convert xc:red png",
        "/usr/bin/convert",
        &["-size", "8x8", "xc:red", "/tmp/r.png"],
        &[],
    ),
    (
        "dot -Tsvg",
        "/usr/bin/dot",
        &["-Tsvg", "-o", "/tmp/g.svg", DOT],
        &["--add", DOT],
    ),
    (
        "espeak-ng to wav",
        "/usr/bin/espeak-ng",
        &["-w", "/tmp/x.wav", "hello"],
        &[],
    ),
    (
        "gawk -l filefuncs",
        "/usr/bin/gawk",
        &["-l", "filefuncs", "BEGIN { print \"ok\" }"],
        &[],
    ),
    (
        "ruby json",
        "/usr/bin/ruby",
        &["-e", "require 'json'; puts JSON.generate([1])"],
        &[],
    ),
    (
        "git init",
        "/usr/bin/git",
        &["init", "-q", "/tmp/repo"],
        &[],
    ),
    ("curl --version", "/usr/bin/curl", &["--version"], &[]),
    (
        "openssl rand",
        "/usr/bin/openssl",
        &["rand", "-hex", "4"],
        &[],
    ),
    (
        "sqlite3",
        "/usr/bin/sqlite3",
        &[":memory:", "select 40+2;"],
        &[],
    ),
    (
        "file (libmagic)",
        "/usr/bin/file",
        &["-b", "/etc/passwd"],
        &[],
    ),
    ("tclsh script", "/usr/bin/tclsh", &[TCL], &["--add", TCL]),
    (
        "lua",
        "/usr/bin/lua5.4",
        &["-e", "print(string.format('%d', 42))"],
        &[],
    ),
    ("jq", "/usr/bin/jq", &["-n", "1+1"], &[]),
    (
        "node",
        "/usr/bin/node",
        &["-e", "console.log(require('os').platform())"],
        &[],
    ),
    (
        "ssh-keygen",
        "/usr/bin/ssh-keygen",
        &["-q", "-t", "ed25519", "-N", "", "-f", "/tmp/k"],
        &[],
    ),
    ("gpg --version", "/usr/bin/gpg", &["--version"], &[]),
    ("xmlstarlet", "/usr/bin/xmlstarlet", &["--version"], &[]),
    ("ffmpeg -version", "/usr/bin/ffmpeg", &["-version"], &[]),
    ("bc", "/usr/bin/bc", &["--version"], &[]),
];

/// Packs and runs one case; `Ok(bytes)` when it ran, `Err(first error line)`.
fn run(case: &Case, package_data: bool) -> Result<u64, String> {
    let (_, prog, args, extra) = case;
    let w = workdir();
    let root = w.path().join("rootfs");
    let mut cmd = elfpack();
    cmd.arg(prog)
        .arg("--rootfs")
        .arg(&root)
        .args(["--no-layer-size", "--test"])
        .args(*extra);
    if !package_data {
        cmd.arg("--no-package-data");
    }
    let o = cmd.arg("--").args(*args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let bytes = err
        .lines()
        .find(|l| l.contains("before packing"))
        .and_then(|l| l.split(" MiB (").nth(1))
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if o.status.success() {
        Ok(bytes)
    } else {
        let line = err
            .lines()
            .rev()
            .find(|l| !l.starts_with("elfpack: --test") && !l.trim().is_empty())
            .unwrap_or("")
            .to_string();
        Err(line)
    }
}

#[test]
#[ignore]
fn corpus_before_and_after_package_data() {
    std::fs::write(DOT, "digraph { a -> b }\n").unwrap();
    std::fs::write(TCL, "puts [info patchlevel]\n").unwrap();
    let (mut before, mut after, mut total) = (0, 0, 0);
    for case in CORPUS {
        if !Path::new(case.1).exists() {
            println!("{:28} skipped: {} is not installed", case.0, case.1);
            continue;
        }
        total += 1;
        let b = run(case, false);
        let a = run(case, true);
        before += b.is_ok() as usize;
        after += a.is_ok() as usize;
        let show = |r: &Result<u64, String>| match r {
            Ok(n) => format!("ok {:>11} B", n),
            Err(e) => format!("FAIL ({})", e.chars().take(70).collect::<String>()),
        };
        println!("{:28} before: {:40} after: {}", case.0, show(&b), show(&a));
    }
    println!("ran from --rootfs: {before}/{total} before, {after}/{total} with package data");
}
