//! `cargo bench --bench single_file`: the single-file goals, measured side by
//! side in one run and printed as a table: stub size, packed sizes (beside
//! staticx when it is on PATH or in $STATICX), first and later starts of
//! hello.cpp against the same program run from its `--rootfs` tree, and the
//! time to pack /usr/bin/curl.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn elfpack_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("elfpack")
}

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

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn staticx() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STATICX") {
        return Some(p.into());
    }
    std::env::var("PATH")
        .ok()?
        .split(':')
        .map(|d| Path::new(d).join("staticx"))
        .find(|p| p.is_file())
}

fn main() {
    let runs = 21;
    let bin = elfpack_bin();
    assert!(bin.exists(), "build the CLI first: cargo build --release");
    let t = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let d = t.path();
    let hello = d.join("hello");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hello.cpp");
    assert!(
        Command::new("g++")
            .arg(src)
            .arg("-o")
            .arg(&hello)
            .status()
            .unwrap()
            .success()
    );
    let hello_static = d.join("hello-static");
    assert!(
        Command::new("g++")
            .arg(src)
            .arg("-static")
            .arg("-o")
            .arg(&hello_static)
            .status()
            .unwrap()
            .success()
    );
    let sx = staticx();

    println!("| figure | elfpack | reference | ratio |");
    println!("|---|---|---|---|");
    let stub = elfpack::pack::STUB.len() as u64;
    println!(
        "| stub size | {stub} B | goal 32768 B | {:.2} |",
        stub as f64 / 32768.0
    );
    let programs: Vec<(&str, PathBuf)> = vec![
        ("hello.cpp", hello.clone()),
        ("curl", "/usr/bin/curl".into()),
        ("python3", "/usr/bin/python3".into()),
        ("git", "/usr/bin/git".into()),
    ];
    for (name, prog) in &programs {
        for compress in ["max", "fast"] {
            let out = d.join(format!("{name}.{compress}"));
            let took = run_ok(Command::new(&bin).arg(prog).arg("-o").arg(&out).args([
                "--compress",
                compress,
                "--no-layer-size",
            ]));
            let ours = size(&out);
            let reference = match &sx {
                Some(sx) if compress == "max" => {
                    let theirs = d.join(format!("{name}.staticx"));
                    let t2 = run_ok(Command::new(sx).arg(prog).arg(&theirs));
                    format!(
                        "staticx {} B (packed in {:.0} ms vs ours {:.0} ms)",
                        size(&theirs),
                        t2.as_secs_f64() * 1e3,
                        took.as_secs_f64() * 1e3
                    )
                }
                _ => String::from("-"),
            };
            let ratio = reference
                .strip_prefix("staticx ")
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse::<f64>().ok())
                .map_or(String::from("-"), |r| format!("{:.3}", ours as f64 / r));
            println!(
                "| {name} --compress {compress}: size (pack time {:.0} ms) | {ours} B | {reference} | {ratio} |",
                took.as_secs_f64() * 1e3
            );
        }
    }
    let max = size(&d.join("hello.cpp.max"));
    println!(
        "| hello.cpp max vs g++ -static | {max} B | {} B | {:.3} (goal 0.76) |",
        size(&hello_static),
        max as f64 / size(&hello_static) as f64
    );

    // Starts: first (fresh cache every run) and later (warm cache), against
    // the program run from its --rootfs tree.
    let root = d.join("root");
    run_ok(
        Command::new(&bin)
            .arg(&hello)
            .arg("--rootfs")
            .arg(&root)
            .arg("--no-layer-size"),
    );
    let rootfs_start = median(
        (0..runs)
            .map(|_| run_ok(Command::new("/usr/sbin/chroot").arg(&root).arg(&hello)))
            .collect(),
    );
    println!("| hello.cpp from --rootfs (chroot), median of {runs} | {rootfs_start:.2} ms | | |");
    for compress in ["max", "fast"] {
        let packed = d.join(format!("hello.cpp.{compress}"));
        let first = median(
            (0..runs)
                .map(|i| {
                    let cache = d.join(format!("cache-{compress}-{i}"));
                    run_ok(Command::new(&packed).env("ELFPACK_CACHE_DIR", &cache))
                })
                .collect(),
        );
        let cache = d.join(format!("cache-{compress}-0"));
        let later = median(
            (0..runs)
                .map(|_| run_ok(Command::new(&packed).env("ELFPACK_CACHE_DIR", &cache)))
                .collect(),
        );
        println!(
            "| hello.cpp {compress}: first start / later start, median of {runs} | {first:.2} ms / {later:.2} ms | staticx 124 ms every start (FACTS.md) | first {:.3}, later/rootfs {:.2} |",
            first / 124.0,
            later / rootfs_start
        );
    }
    if let Some(sx) = &sx {
        let theirs = d.join("hello.cpp.staticx");
        let start = median(
            (0..runs)
                .map(|_| run_ok(&mut Command::new(&theirs)))
                .collect(),
        );
        println!(
            "| staticx hello.cpp start, median of {runs} (measured, {}) | | {start:.2} ms | |",
            sx.display()
        );
    }
}
