//! `cargo bench --bench resolve`: prints how fast elfpack resolves closures
//! and writes a rootfs, beside magicpak when it is installed.
//!
//! Figures, not assertions: the machines are shared, so goals are read off
//! this table, with ratios taken within one run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use elfpack::loader::resolve::Resolver;

mod common;
use common::{ELFPACK, median_ms};

fn elf_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = ["/usr/bin", "/usr/sbin", "/usr/lib/x86_64-linux-gnu"]
        .map(PathBuf::from)
        .to_vec();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => {
                    let mut m = [0u8; 4];
                    use std::io::Read;
                    if std::fs::File::open(&p)
                        .and_then(|mut f| f.read_exact(&mut m))
                        .is_ok()
                        && &m == b"\x7fELF"
                    {
                        out.push(p);
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Median wall time of `runs` runs of `cmd` in ms (after one warm-up run).
fn time_command(runs: usize, mut cmd: impl FnMut() -> Command) -> Option<f64> {
    let ok = |c: &mut Command| c.output().map(|o| o.status.success()).unwrap_or(false);
    if !ok(&mut cmd()) {
        return None;
    }
    Some(median_ms(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                ok(&mut cmd());
                t.elapsed()
            })
            .collect(),
    ))
}

fn main() {
    let files = elf_files();
    let start = Instant::now();
    let mut resolver = Resolver::new().unwrap();
    let mut ok = 0;
    for f in &files {
        if resolver.resolve(f).is_ok() {
            ok += 1;
        }
    }
    let cold = start.elapsed();
    // A fresh resolver again: parsed ELF files are cached per resolver, so
    // this run is what one `elfpack deps` over many programs costs.
    let start = Instant::now();
    let mut resolver = Resolver::new().unwrap();
    for f in &files {
        let _ = resolver.resolve(f);
    }
    let warm = start.elapsed();

    println!("| benchmark | figure |");
    println!("|---|---|");
    println!(
        "| ELF files under /usr resolved | {} ({} without error) |",
        files.len(),
        ok
    );
    println!(
        "| resolve all, first pass (cold page cache possible) | {:.0} ms, {:.0} files/s |",
        cold.as_secs_f64() * 1e3,
        files.len() as f64 / cold.as_secs_f64()
    );
    println!(
        "| resolve all, second pass | {:.0} ms, {:.0} files/s |",
        warm.as_secs_f64() * 1e3,
        files.len() as f64 / warm.as_secs_f64()
    );

    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("rootfs");
    let runs = 15;
    let time_elfpack = |extra: &[&str]| {
        time_command(runs, || {
            let mut c = Command::new(ELFPACK);
            c.args(["/usr/bin/curl", "--rootfs"])
                .arg(&out)
                .arg("--force")
                .args(extra);
            c
        })
        .expect("elfpack --rootfs /usr/bin/curl failed")
    };
    let ours = time_elfpack(&[]);
    let with_layer = time_elfpack(&["--layer-size"]);
    println!(
        "| elfpack --rootfs /usr/bin/curl (the default), median of {runs} | {:.1} ms |",
        ours
    );
    println!(
        "| elfpack --rootfs /usr/bin/curl --layer-size (report's layer sizes cached), median of {runs} | {:.1} ms |",
        with_layer
    );
    let magicpak = which("magicpak");
    match magicpak.and_then(|m| {
        let out2 = tmp.path().join("magicpak");
        time_command(runs, || {
            let _ = std::fs::remove_dir_all(&out2);
            let mut c = Command::new(&m);
            c.arg("/usr/bin/curl").arg(&out2);
            c
        })
    }) {
        Some(theirs) => println!(
            "| magicpak /usr/bin/curl, median of {runs} | {:.1} ms (elfpack/magicpak = {:.2}) |",
            theirs,
            ours / theirs
        ),
        None => println!("| magicpak /usr/bin/curl | not installed (cargo install magicpak) |"),
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").ok()?;
    let home_bin = std::env::var("HOME")
        .map(|h| format!("{h}/.cargo/bin"))
        .unwrap_or_default();
    path.split(':')
        .chain([home_bin.as_str()])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}
