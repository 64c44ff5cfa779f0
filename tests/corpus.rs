//! The real-program corpus of issue 15, as an ignored test that reports
//! numbers rather than asserting them: each Debian program is packed with
//! plain defaults into `--rootfs` and run by `--test` (an empty root with
//! /proc and /dev, as a `FROM scratch` runtime gives), once with
//! `--no-package-data` (elfpack before package data) and once with the
//! defaults. Programs not installed here are listed as skipped.
//!
//! `corpus_in_every_output` (issue 16) packs and runs the same cases in each
//! output: `--rootfs` under `--test` as root and as uid 65532, a single file
//! (`-o`) alone in an empty root as root and as 65532, and a `--prefix`
//! bundle chrooted into as root and as 65532 (`CORPUS_ONLY=WORD`: only the
//! cases whose name contains WORD).
//!
//! ```sh
//! apt-get install graphviz espeak-ng gawk ruby imagemagick lua5.4 xmlstarlet nginx postgresql \
//!     jq nodejs bc tcl ffmpeg default-jre-headless vim
//! cargo test --release --test corpus -- --ignored --nocapture
//! ```

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{RootD, elfpack, workdir};

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

/// The user the unprivileged runs use (distroless's `nonroot`).
const USER: u32 = 65532;

/// Where `--prefix` bundles go.
const PREFIX: &str = "/opt/c";

/// The columns of `corpus_in_every_output`'s table: output / user.
const MODES: [&str; 6] = [
    "rootfs/root",
    "rootfs/65532",
    "file/root",
    "file/65532",
    "prefix/root",
    "prefix/65532",
];

/// One (mode, case): whether it ran, its first meaningful error line, what
/// it printed around that (for the details after the table), and its first
/// line of output (stdout, else stderr), for telling whether an exit status
/// 0 did what the arguments ask.
struct Outcome {
    ok: bool,
    line: String,
    detail: String,
    said: String,
}

/// The first non-empty line of `stdout`, else of `stderr`.
fn first_said<'a>(stdout: &'a str, stderr: impl Iterator<Item = &'a str>) -> String {
    stdout
        .lines()
        .chain(stderr)
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no output)")
        .chars()
        .take(100)
        .collect()
}

/// `timeout SECS PROG`: a hung pack or run fails its case instead of the
/// whole measurement.
fn timed(secs: u32, prog: &str) -> Command {
    let mut c = Command::new("timeout");
    c.arg(secs.to_string()).arg(prog).stdin(Stdio::null());
    c
}

fn status_text(o: &Output) -> String {
    match o.status.code() {
        Some(124) => "timed out".to_string(),
        Some(n) => format!("exit {n}"),
        None => o.status.to_string(),
    }
}

/// The first line among `lines` that reads like an error (programs print
/// notes and warnings before the line that tells why they stopped), else
/// the first non-empty one.
fn meaningful<'a>(lines: impl Iterator<Item = &'a str> + Clone) -> Option<&'a str> {
    const WORDS: [&str; 15] = [
        "error",
        "emerg",
        "fail",
        "cannot",
        "can't",
        "unable",
        "no such",
        "denied",
        "not found",
        "fatal",
        "abort",
        "panic",
        "exception",
        "killed",
        "segmentation",
    ];
    let mut nonempty = lines.filter(|l| !l.trim().is_empty());
    nonempty
        .clone()
        .find(|l| {
            let l = l.to_lowercase();
            WORDS.iter().any(|w| l.contains(w))
        })
        .or_else(|| nonempty.next())
}

/// The outcome of a pack with `--test`: the program's own output sits
/// between elfpack's "--test: running" line and its closing error; a pack
/// that failed before running has only elfpack's error.
fn test_outcome(o: &Output) -> Outcome {
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    let Some(start) = lines
        .iter()
        .position(|l| l.starts_with("elfpack: --test: running"))
    else {
        return pack_outcome(o);
    };
    let after = &lines[start + 1..];
    let line = meaningful(
        after
            .iter()
            .copied()
            .filter(|l| !l.starts_with("elfpack: ")),
    )
    .or_else(|| {
        after
            .iter()
            .copied()
            .find(|l| l.starts_with("elfpack: error"))
    })
    .map_or_else(|| status_text(o), str::to_string);
    Outcome {
        ok: o.status.success(),
        line,
        detail: after
            .iter()
            .take(15)
            .copied()
            .collect::<Vec<_>>()
            .join("\n"),
        said: first_said(
            &String::from_utf8_lossy(&o.stdout),
            after
                .iter()
                .copied()
                .filter(|l| !l.starts_with("elfpack: ")),
        ),
    }
}

/// The outcome of a pack without `--test` (only failures are looked at).
fn pack_outcome(o: &Output) -> Outcome {
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("elfpack: error"))
        .or_else(|| err.lines().rev().find(|l| !l.trim().is_empty()))
        .map_or_else(|| status_text(o), |l| format!("pack: {l}"));
    Outcome {
        ok: o.status.success(),
        line,
        detail: {
            let all: Vec<&str> = err.lines().collect();
            all[all.len().saturating_sub(15)..].join("\n")
        },
        said: String::new(),
    }
}

/// The outcome of a chrooted run: the first meaningful line it wrote to
/// stderr (else stdout), with its exit status.
fn run_outcome(o: &Output) -> Outcome {
    let err = String::from_utf8_lossy(&o.stderr);
    let out = String::from_utf8_lossy(&o.stdout);
    let first = meaningful(err.lines())
        .or_else(|| meaningful(out.lines()))
        .unwrap_or("(no output)");
    Outcome {
        ok: o.status.success(),
        line: format!("[{}] {first}", status_text(o)),
        detail: format!(
            "{}\n--- stderr:\n{}\n--- stdout:\n{}",
            o.status,
            err.lines().take(15).collect::<Vec<_>>().join("\n"),
            out.lines().take(5).collect::<Vec<_>>().join("\n")
        ),
        said: first_said(&out, err.lines()),
    }
}

/// Modes 1 and 2: `elfpack PROG --rootfs D --test [--test-user 65532]`.
fn run_rootfs(case: &Case, as_user: bool) -> Outcome {
    let (_, prog, args, extra) = case;
    let w = workdir();
    let mut cmd = timed(1800, common::ELFPACK);
    cmd.arg(prog)
        .arg("--rootfs")
        .arg(w.path().join("rootfs"))
        .args(["--no-layer-size", "--test"]);
    if as_user {
        cmd.args(["--test-user", &USER.to_string()]);
    }
    cmd.args(*extra).arg("--").args(*args);
    test_outcome(&cmd.output().unwrap())
}

/// The paths a case ships with `--add` (its input files: the DOT graph,
/// the Tcl script).
fn added(extra: &'static [&'static str]) -> Vec<&'static str> {
    extra
        .windows(2)
        .filter(|w| w[0] == "--add")
        .map(|w| w[1])
        .collect()
}

/// `ROOT/PATH` for an absolute PATH.
fn inside(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// What a runtime sets for the user (as `--test` does): the default PATH
/// and HOME of root or of the image's nonroot.
fn chroot_cmd(root: &Path, as_user: bool, env: &[(String, String)], argv: &[&str]) -> Command {
    let mut c = timed(120, "/usr/sbin/chroot");
    if as_user {
        c.arg(format!("--userspec={USER}:{USER}"));
    }
    c.arg(root).args(argv).env_clear();
    c.env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    c.env("HOME", if as_user { "/home/nonroot" } else { "/root" });
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// A fresh directory of mode 0755 (a root uid 65532 can enter).
fn fresh_root(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Modes 3 and 4: `elfpack PROG -o F --compress fast`, then F alone at
/// /NAME (the program's file name) in an empty root with /proc, the /dev nodes, the runtime's
/// /etc/hosts etc. and a /tmp of mode 1777 (the runtime's `--tmpfs /tmp`).
fn run_file(case: &Case) -> [Outcome; 2] {
    let (_, prog, args, extra) = case;
    let w = workdir();
    let f = w.path().join("prog");
    // F is named after the program (/dot, /perl), as a user names it: dot
    // takes its layout engine from its argv[0] ("/prog": no engine "prog").
    let name = prog.rsplit('/').next().unwrap();
    // --compress fast (LZ4) only keeps the measurement short: the launcher
    // does the same with any codec.
    let o = timed(1800, common::ELFPACK)
        .arg(prog)
        .arg("-o")
        .arg(&f)
        .args(["--compress", "fast", "--no-layer-size"])
        .args(*extra)
        .output()
        .unwrap();
    if !o.status.success() {
        return [pack_outcome(&o), pack_outcome(&o)];
    }
    [false, true].map(|as_user| {
        let r = w.path().join(if as_user { "r-user" } else { "r-root" });
        fresh_root(&r);
        std::fs::copy(&f, r.join(name)).unwrap();
        let tmp = r.join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
        // The case's input files (shipped inside F by --add, where the
        // program cannot find them at their own path) are given to the
        // container at their paths, as a volume would.
        for p in added(extra) {
            let dst = inside(&r, p);
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(p, dst).unwrap();
        }
        let _d = RootD::keeping_tmp(&r);
        let exe = format!("/{name}");
        let mut argv = vec![exe.as_str()];
        argv.extend(args.iter());
        run_outcome(&chroot_cmd(&r, as_user, &[], &argv).output().unwrap())
    })
}

/// The value of a shell word in `text` (single quotes, double quotes
/// without expansions, backslashes, plain characters), up to an unquoted
/// blank, `;` or `}`; with the rest of `text`.
fn shell_word(text: &str) -> (String, &str) {
    let mut out = String::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' => {
                for (_, c) in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    out.push(c);
                }
            }
            '"' => {
                while let Some((_, c)) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            let (_, n) = chars.next().unwrap();
                            if !"$`\"\\".contains(n) {
                                out.push('\\');
                            }
                            out.push(n);
                        }
                        '$' | '`' => panic!("elfpack.env: expansion in {text:?}"),
                        c => out.push(c),
                    }
                }
            }
            '\\' => out.push(chars.next().unwrap().1),
            '$' | '`' => panic!("elfpack.env: expansion in {text:?}"),
            c if c.is_whitespace() || c == ';' || c == '}' => return (out, &text[i..]),
            c => out.push(c),
        }
    }
    (out, "")
}

/// `NAME=WORD` at the start of `text`.
fn assignment(text: &str) -> Option<(String, String)> {
    let (name, rest) = text.split_once('=')?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    Some((name.to_string(), shell_word(rest).0))
}

/// The variables a `--prefix` bundle's etc/elfpack.env sets when they are
/// unset, from the lines it holds: `[ -n "${V+x}" ] || { V='...'; export V; }`
/// (what elfpack writes now), `: "${V:=...}"`, `export V=...` and `V=...`.
/// A line of any other shape fails the test rather than being skipped.
fn parse_env_file(text: &str) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = if let Some(rest) = line.strip_prefix("[ -n \"${") {
            rest.split_once("] ||")
                .map(|(_, r)| r.trim().trim_start_matches('{').trim())
                .and_then(assignment)
        } else if let Some(rest) = line.strip_prefix(": \"${") {
            rest.strip_suffix("}\"").and_then(|r| {
                let (k, v) = r.split_once(":=").or_else(|| r.split_once('='))?;
                let (v, _) = shell_word(&format!("\"{v}\""));
                Some((k.to_string(), v))
            })
        } else if let Some(rest) = line.strip_prefix("export ") {
            assignment(rest)
        } else {
            assignment(line)
        };
        let (k, v) = parsed.unwrap_or_else(|| panic!("elfpack.env: cannot read {line:?}"));
        if !vars.iter().any(|(n, _)| *n == k) {
            vars.push((k, v));
        }
    }
    vars
}

/// Modes 5 and 6: `elfpack PROG --prefix /opt/c --rootfs D`, then each run
/// in a copy of D with /proc and /dev, the variables of
/// D/opt/c/etc/elfpack.env set, `chroot D /opt/c/PROG ARGS`.
fn run_prefix(case: &Case) -> [Outcome; 2] {
    let (_, prog, args, extra) = case;
    let w = workdir();
    let d = w.path().join("d");
    let o = timed(1800, common::ELFPACK)
        .arg(prog)
        .args(["--prefix", PREFIX, "--rootfs"])
        .arg(&d)
        .arg("--no-layer-size")
        .args(*extra)
        .output()
        .unwrap();
    if !o.status.success() {
        return [pack_outcome(&o), pack_outcome(&o)];
    }
    // The input files went into the bundle with everything else: the
    // arguments name them there.
    let inputs = added(extra);
    let args: Vec<String> = args
        .iter()
        .map(|a| match inputs.contains(a) {
            true => format!("{PREFIX}{a}"),
            false => a.to_string(),
        })
        .collect();
    let program = format!("{PREFIX}{prog}");
    [false, true].map(|as_user| {
        let r = w.path().join(if as_user { "d-user" } else { "d-root" });
        let cp = Command::new("cp")
            .arg("-a")
            .arg(&d)
            .arg(&r)
            .output()
            .unwrap();
        assert!(cp.status.success(), "{}", common::describe(&cp));
        let env = std::fs::read_to_string(inside(&r, &format!("{PREFIX}/etc/elfpack.env")))
            .map(|t| parse_env_file(&t))
            .unwrap_or_default();
        let _d = RootD::keeping_tmp(&r);
        let mut argv = vec![program.as_str()];
        argv.extend(args.iter().map(String::as_str));
        run_outcome(&chroot_cmd(&r, as_user, &env, &argv).output().unwrap())
    })
}

#[test]
#[ignore]
fn corpus_in_every_output() {
    if !common::require_root("corpus_in_every_output") {
        return;
    }
    std::fs::write(DOT, "digraph { a -> b }\n").unwrap();
    std::fs::write(TCL, "puts [info patchlevel]\n").unwrap();
    // CORPUS_ONLY=WORD measures only the cases whose name contains WORD.
    let only = std::env::var("CORPUS_ONLY").unwrap_or_default();
    let mut rows: Vec<(&str, Vec<Outcome>)> = Vec::new();
    for case in CORPUS.iter().filter(|c| c.0.contains(only.as_str())) {
        if !Path::new(case.1).exists() {
            println!("{:28} skipped: {} is not installed", case.0, case.1);
            continue;
        }
        let [file_root, file_user] = run_file(case);
        let [prefix_root, prefix_user] = run_prefix(case);
        let outcomes = vec![
            run_rootfs(case, false),
            run_rootfs(case, true),
            file_root,
            file_user,
            prefix_root,
            prefix_user,
        ];
        println!("--- {}", case.0);
        for (mode, r) in MODES.iter().zip(&outcomes) {
            match r.ok {
                true => println!("  {mode:12} ok: {}", r.said),
                false => println!("  {mode:12} FAIL: {}", r.line),
            }
        }
        for (mode, r) in MODES.iter().zip(&outcomes) {
            if !r.ok {
                println!("=== {} / {mode}: {}\n{}\n", case.0, r.line, r.detail);
            }
        }
        rows.push((case.0, outcomes));
    }
    let mut header = format!("{:28}", "case");
    for mode in MODES {
        header.push_str(&format!(" {mode:>12}"));
    }
    println!("{header}");
    for (name, outcomes) in &rows {
        let mut row = format!("{name:28}");
        for r in outcomes {
            row.push_str(&format!(" {:>12}", if r.ok { "ok" } else { "FAIL" }));
        }
        println!("{row}");
    }
    for (i, mode) in MODES.iter().enumerate() {
        let ok = rows.iter().filter(|(_, o)| o[i].ok).count();
        println!("{mode}: {ok}/{}", rows.len());
    }
    println!("failures (first meaningful line):");
    for (name, outcomes) in &rows {
        for (mode, r) in MODES.iter().zip(outcomes) {
            if !r.ok {
                let line: String = r.line.chars().take(160).collect();
                println!("  {mode:12} {name:28} {line}");
            }
        }
    }
}
