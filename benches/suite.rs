//! The benchmark suite: `cargo bench --bench suite` (full) or
//! `cargo bench --bench suite -- --quick` (what CI runs: one fixture, few
//! runs, no peers). It builds the fixtures dynamically and with `gcc -static`,
//! `g++ -static` and `musl-gcc -static` (when musl-tools is installed), packs
//! them and real programs in every output mode, measures size, image-layer
//! size, pack time, first start and later starts (medians), side by side with
//! the peers that are installed (staticx and exodus-bundler from PyPI,
//! magicpak from crates.io; `--install-peers` installs them under
//! target/bench-peers), and prints one markdown table (also written to
//! target/bench-report.md). Any measured command that fails makes it exit 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

struct Opts {
    quick: bool,
    runs: usize,
    install_peers: bool,
}

struct Subject {
    name: String,
    prog: PathBuf,
    args: Vec<String>,
    /// Runs from a bare chroot (no /dev, /proc): start times are measured.
    startable: bool,
    /// Static builds to compare with: (label, path).
    statics: Vec<(String, PathBuf)>,
}

struct Row {
    subject: String,
    tool: String,
    size: u64,
    layer: Option<u64>,
    pack_ms: Option<f64>,
    first_ms: Option<f64>,
    later_ms: Option<f64>,
}

fn elfpack() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("elfpack")
}

fn time(c: &mut Command) -> Result<Duration, String> {
    let t = Instant::now();
    let o = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{c:?}: {e}"))?;
    let d = t.elapsed();
    if !o.status.success() {
        return Err(format!(
            "{c:?}: {}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    Ok(d)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(
    runs: usize,
    mut f: impl FnMut(usize) -> Result<Duration, String>,
) -> Result<f64, String> {
    let mut v = (0..runs).map(&mut f).collect::<Result<Vec<_>, _>>()?;
    v.sort();
    Ok(ms(v[v.len() / 2]))
}

fn du(p: &Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if m.is_dir() {
        std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| du(&e.path())).sum())
            .unwrap_or(0)
    } else if m.is_file() {
        m.len()
    } else {
        0
    }
}

/// Size of `tar c DIR-or-file | gzip -6`: the layer `COPY` would add.
fn layer_of(p: &Path) -> u64 {
    let (dir, what) = if p.is_dir() {
        (p.to_path_buf(), ".".to_string())
    } else {
        (
            p.parent().unwrap().to_path_buf(),
            p.file_name().unwrap().to_string_lossy().into_owned(),
        )
    };
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C '{}' -cf - '{}' | gzip -6 -n | wc -c",
            dir.display(),
            what
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

fn which(name: &str, peers: &Path) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let home = std::env::var("HOME")
        .map(|h| format!("{h}/.cargo/bin"))
        .unwrap_or_default();
    let extra = [
        peers.join("venv/bin").display().to_string(),
        peers.join("bin").display().to_string(),
        home,
    ];
    path.split(':')
        .map(String::from)
        .chain(extra)
        .map(|d| Path::new(&d).join(name))
        .find(|p| p.is_file())
}

fn install_peers(peers: &Path) {
    let venv = peers.join("venv");
    if !venv.join("bin/staticx").exists() {
        let _ = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status();
        let _ = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "staticx", "exodus-bundler"])
            .status();
    }
    if !peers.join("bin/magicpak").exists() {
        let _ = Command::new("cargo")
            .args(["install", "-q", "--locked", "magicpak", "--root"])
            .arg(peers)
            .status();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let opts = Opts {
        quick,
        runs: if quick { 3 } else { 21 },
        install_peers: args.iter().any(|a| a == "--install-peers"),
    };
    match run(&opts) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("suite: a measured command failed: {e}");
            std::process::exit(1);
        }
    }
}

fn build(dir: &Path, src: &str, out: &str, cc: &str, flags: &[&str]) -> Option<PathBuf> {
    let p = dir.join(out);
    let ok = Command::new(cc)
        .arg(format!("{FIX}/{src}"))
        .arg("-o")
        .arg(&p)
        .args(flags)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(p)
}

fn run(o: &Opts) -> Result<(), String> {
    let bin = elfpack();
    if !bin.exists() {
        return Err("build the CLI first: cargo build --release".into());
    }
    let target = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target"));
    let peers_dir = target.join("bench-peers");
    if o.install_peers {
        install_peers(&peers_dir);
    }
    let t = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let d = t.path();
    let musl = Command::new("musl-gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mut subjects = Vec::new();
    let fixtures: &[(&str, &str, &[&str])] = if o.quick {
        &[("hello.c", "gcc", &[])]
    } else {
        &[
            ("hello.c", "gcc", &[]),
            ("hello.cpp", "g++", &[]),
            ("nss.c", "gcc", &[]),
            ("cancel.c", "gcc", &["-pthread"]),
        ]
    };
    for (src, cc, flags) in fixtures {
        let stem = src.replace('.', "-");
        let dynamic = build(d, src, &stem, cc, flags).ok_or(format!("{cc} {src} failed"))?;
        let mut statics = Vec::new();
        let mut static_flags = flags.to_vec();
        static_flags.push("-static");
        if let Some(p) = build(d, src, &format!("{stem}-static"), cc, &static_flags) {
            statics.push((format!("{cc} -static"), p));
        }
        let musl_build = (musl && src.ends_with(".c") && *src != "nss.c")
            .then(|| build(d, src, &format!("{stem}-musl"), "musl-gcc", &static_flags))
            .flatten();
        if let Some(p) = musl_build {
            statics.push(("musl-gcc -static".into(), p));
        }
        subjects.push(Subject {
            name: src.to_string(),
            prog: dynamic,
            args: vec![],
            startable: true,
            statics,
        });
    }
    if !o.quick {
        for (p, args, startable) in [
            ("/usr/bin/curl", vec!["--version"], true),
            ("/usr/bin/git", vec!["--version"], false),
            ("/usr/bin/python3", vec!["-c", "pass"], false),
            ("/usr/bin/openssl", vec!["version"], true),
            ("/usr/bin/sqlite3", vec![":memory:", "select 1;"], true),
        ] {
            subjects.push(Subject {
                name: Path::new(p)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                prog: p.into(),
                args: args.into_iter().map(String::from).collect(),
                startable,
                statics: vec![],
            });
        }
    }
    let staticx = which("staticx", &peers_dir);
    let exodus = which("exodus", &peers_dir);
    let magicpak = which("magicpak", &peers_dir);
    let mut rows: Vec<Row> = Vec::new();
    for s in &subjects {
        let w = d.join(format!("w-{}", s.name));
        std::fs::create_dir_all(&w).unwrap();
        let chroot_run = |root: &Path, prog: &Path| {
            let mut c = Command::new("/usr/sbin/chroot");
            c.arg(root).arg(prog).args(&s.args);
            c
        };
        // elfpack --rootfs (also gives the report's layer size).
        let root = w.join("rootfs");
        let pack = time(Command::new(&bin).arg(&s.prog).arg("--rootfs").arg(&root))?;
        let start = if s.startable {
            Some(median(o.runs, |_| time(&mut chroot_run(&root, &s.prog)))?)
        } else {
            None
        };
        rows.push(Row {
            subject: s.name.clone(),
            tool: "elfpack --rootfs".into(),
            size: du(&root),
            layer: Some(layer_of(&root)),
            pack_ms: Some(ms(pack)),
            first_ms: start,
            later_ms: start,
        });
        if !o.quick {
            let tar = w.join("image.tar");
            let pack = time(
                Command::new(&bin)
                    .arg(&s.prog)
                    .arg("-o")
                    .arg(&tar)
                    .arg("--no-layer-size"),
            )?;
            rows.push(Row {
                subject: s.name.clone(),
                tool: "elfpack -o .tar".into(),
                size: du(&tar),
                layer: Some(layer_of(&tar)),
                pack_ms: Some(ms(pack)),
                first_ms: None,
                later_ms: None,
            });
            let oci = w.join("oci.tar");
            let pack = time(
                Command::new(&bin)
                    .arg(&s.prog)
                    .arg("--oci")
                    .arg(&oci)
                    .arg("--no-layer-size"),
            )?;
            rows.push(Row {
                subject: s.name.clone(),
                tool: "elfpack --oci".into(),
                size: du(&oci),
                layer: None,
                pack_ms: Some(ms(pack)),
                first_ms: None,
                later_ms: None,
            });
            let pre = w.join("prefix");
            let pack = time(
                Command::new(&bin)
                    .arg(&s.prog)
                    .args(["--prefix", "/opt/b", "--rootfs"])
                    .arg(&pre)
                    .arg("--no-layer-size"),
            )?;
            rows.push(Row {
                subject: s.name.clone(),
                tool: "elfpack --prefix".into(),
                size: du(&pre),
                layer: Some(layer_of(&pre)),
                pack_ms: Some(ms(pack)),
                first_ms: None,
                later_ms: None,
            });
        }
        for compress in if o.quick {
            vec!["fast"]
        } else {
            vec!["max", "fast"]
        } {
            let file = w.join(format!("single-{compress}"));
            let pack = time(Command::new(&bin).arg(&s.prog).arg("-o").arg(&file).args([
                "--compress",
                compress,
                "--no-layer-size",
            ]))?;
            let (first, later) = if s.startable {
                let first = median(o.runs, |i| {
                    let mut c = Command::new(&file);
                    c.args(&s.args)
                        .env("ELFPACK_CACHE_DIR", w.join(format!("cache-{compress}-{i}")));
                    time(&mut c)
                })?;
                let later = median(o.runs, |_| {
                    let mut c = Command::new(&file);
                    c.args(&s.args)
                        .env("ELFPACK_CACHE_DIR", w.join(format!("cache-{compress}-0")));
                    time(&mut c)
                })?;
                (Some(first), Some(later))
            } else {
                (None, None)
            };
            rows.push(Row {
                subject: s.name.clone(),
                tool: format!("elfpack -o FILE --compress {compress}"),
                size: du(&file),
                layer: Some(layer_of(&file)),
                pack_ms: Some(ms(pack)),
                first_ms: first,
                later_ms: later,
            });
        }
        for (label, p) in &s.statics {
            let start = median(o.runs, |_| time(Command::new(p).args(&s.args)))?;
            rows.push(Row {
                subject: s.name.clone(),
                tool: label.clone(),
                size: du(p),
                layer: Some(layer_of(p)),
                pack_ms: None,
                first_ms: Some(start),
                later_ms: Some(start),
            });
        }
        if let Some(sx) = &staticx {
            let out = w.join("staticx");
            if let Ok(pack) = time(Command::new(sx).arg(&s.prog).arg(&out)) {
                // A peer that cannot run the program is a finding, not an error.
                let start = s
                    .startable
                    .then(|| median(o.runs, |_| time(Command::new(&out).args(&s.args))));
                rows.push(Row {
                    subject: s.name.clone(),
                    tool: peer_label("staticx", &start),
                    size: du(&out),
                    layer: Some(layer_of(&out)),
                    pack_ms: Some(ms(pack)),
                    first_ms: start.clone().and_then(Result::ok),
                    later_ms: start.and_then(Result::ok),
                });
            }
        }
        if let Some(ex) = &exodus {
            let out = w.join("exodus.sh");
            if let Ok(pack) = time(Command::new(ex).arg("-q").arg("-o").arg(&out).arg(&s.prog)) {
                rows.push(Row {
                    subject: s.name.clone(),
                    tool: "exodus (installer .sh)".into(),
                    size: du(&out),
                    layer: Some(layer_of(&out)),
                    pack_ms: Some(ms(pack)),
                    first_ms: None,
                    later_ms: None,
                });
            }
        }
        if let Some(mp) = &magicpak {
            let out = w.join("magicpak");
            if let Ok(pack) = time(Command::new(mp).arg(&s.prog).arg(&out)) {
                let start = s
                    .startable
                    .then(|| median(o.runs, |_| time(&mut chroot_run(&out, &s.prog))));
                rows.push(Row {
                    subject: s.name.clone(),
                    tool: peer_label("magicpak", &start),
                    size: du(&out),
                    layer: Some(layer_of(&out)),
                    pack_ms: Some(ms(pack)),
                    first_ms: start.clone().and_then(Result::ok),
                    later_ms: start.and_then(Result::ok),
                });
            }
        }
    }
    let report = table(
        o,
        &rows,
        [staticx.is_some(), exodus.is_some(), magicpak.is_some()],
    );
    print!("{report}");
    let _ = std::fs::write(target.join("bench-report.md"), &report);
    Ok(())
}

fn peer_label(tool: &str, start: &Option<Result<f64, String>>) -> String {
    match start {
        Some(Err(_)) => format!("{tool} (the packed program fails)"),
        _ => tool.to_string(),
    }
}

fn table(o: &Opts, rows: &[Row], peers: [bool; 3]) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let uname = Command::new("uname")
        .arg("-r")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut s = format!(
        "elfpack benchmark suite ({}), {date}; {} cores, {cpu}, Linux {uname}; medians of {} runs; peers: staticx {}, exodus {}, magicpak {}\n\n",
        if o.quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        o.runs,
        if peers[0] { "yes" } else { "not installed" },
        if peers[1] { "yes" } else { "not installed" },
        if peers[2] { "yes" } else { "not installed" },
    );
    s += "| program | tool / mode | size (B) | layer (B) | pack (ms) | first start (ms) | later start (ms) | size / static | layer / static | start / static | size, first start, pack / peer |\n";
    s += "|---|---|---|---|---|---|---|---|---|---|---|\n";
    let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.1}"));
    for r in rows {
        let st = rows.iter().find(|x| {
            x.subject == r.subject && x.tool.ends_with("-static") && x.tool.starts_with(['g'])
        });
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        };
        let (rs, rl, rt) = match st {
            Some(st) => (
                ratio(Some(r.size as f64), Some(st.size as f64)),
                ratio(r.layer.map(|x| x as f64), st.layer.map(|x| x as f64)),
                ratio(r.later_ms, st.later_ms),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        // Each elfpack mode against the peer that makes the same kind of
        // output: a single file against staticx, a tree against magicpak.
        let peer = if r.tool.starts_with("elfpack -o FILE") {
            Some("staticx")
        } else if r.tool == "elfpack --rootfs" {
            Some("magicpak")
        } else {
            None
        };
        let vs = peer
            .and_then(|p| rows.iter().find(|x| x.subject == r.subject && x.tool == p))
            .map_or("-".to_string(), |p| {
                format!(
                    "{} ({}), {}, {}",
                    ratio(Some(r.size as f64), Some(p.size as f64)),
                    p.tool,
                    ratio(r.first_ms, p.first_ms),
                    ratio(r.pack_ms, p.pack_ms)
                )
            });
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {rs} | {rl} | {rt} | {vs} |\n",
            r.subject,
            r.tool,
            r.size,
            r.layer.map_or("-".into(), |x| x.to_string()),
            f(r.pack_ms),
            f(r.first_ms),
            f(r.later_ms)
        );
    }
    s
}
