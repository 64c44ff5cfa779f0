//! The figures every pack reports, and the comparison with a `-static` build
//! of the same program that people make before choosing between the two.

use std::io::{self, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::emit::tar as tarball;
use crate::plan::Plan;

#[derive(Debug, Serialize)]
pub struct PackReport {
    pub files: usize,
    /// Bytes of every file the output holds, before any packing.
    pub input_bytes: u64,
    /// Each output written and its size on disk.
    pub outputs: Vec<OutputSize>,
    /// Size of the gzip'd image layer `COPY` of this tree would add
    /// (a reproducible tar.gz, gzip level 6, what registries store).
    pub layer_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_build: Option<StaticBuild>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<StartTimes>,
}

#[derive(Debug, Serialize)]
pub struct OutputSize {
    pub path: PathBuf,
    pub kind: &'static str,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct StaticBuild {
    pub path: PathBuf,
    pub bytes: u64,
    pub layer_bytes: u64,
}

/// Median wall-clock start-to-exit times over `runs` runs.
#[derive(Debug, Serialize)]
pub struct StartTimes {
    pub runs: usize,
    pub packed: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_build: Option<f64>,
}

/// Counts bytes written, so a layer can be measured without storing it.
struct Counter(u64);
impl Write for Counter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Size of the deterministic gzip'd tar layer of `plan`.
pub fn layer_size(plan: &Plan) -> Result<u64> {
    let gz = flate2::write::GzEncoder::new(Counter(0), flate2::Compression::new(6));
    let gz = tarball::write(plan, gz, tarball::source_date_epoch())?;
    Ok(gz.finish()?.0)
}

/// The static build's size and the layer `COPY` of it alone would add.
pub fn static_build(path: &Path) -> Result<StaticBuild> {
    let info = crate::elf::read(path)?;
    if !matches!(
        info.kind,
        crate::elf::Kind::Static | crate::elf::Kind::StaticPie
    ) {
        bail!(
            "{}: --compare wants a statically linked build, this one is {:?}",
            path.display(),
            info.kind
        );
    }
    let mut plan = Plan::default();
    let abs = std::path::absolute(path)?;
    plan.add_file_as(&abs, &abs)?;
    Ok(StaticBuild {
        path: abs,
        bytes: std::fs::metadata(path)?.len(),
        layer_bytes: layer_size(&plan)?,
    })
}

/// Median time of `runs` runs of `argv`, optionally chrooted into `root`,
/// output discarded; fails if any run fails.
pub fn median_start(argv: &[String], root: Option<&Path>, runs: usize) -> Result<f64> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(root) = root {
            let root = root.to_path_buf();
            // SAFETY: chroot and chdir are async-signal-safe.
            unsafe {
                c.pre_exec(move || {
                    std::os::unix::fs::chroot(&root)?;
                    std::env::set_current_dir("/")
                });
            }
        }
        let t = Instant::now();
        let st = c
            .status()
            .with_context(|| format!("cannot run {}", argv[0]))?;
        times.push(t.elapsed());
        if !st.success() {
            bail!("{} exited with {st} while timing it", argv.join(" "));
        }
    }
    times.sort();
    Ok(ms(times[times.len() / 2]))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl PackReport {
    /// The short human report printed after every pack.
    pub fn text(&self) -> String {
        let mut s = format!(
            "{} files, {} before packing",
            self.files,
            human(self.input_bytes)
        );
        for o in &self.outputs {
            s += &format!("; {} {}: {}", o.kind, o.path.display(), human(o.bytes));
        }
        if let Some(l) = self.layer_bytes {
            s += &format!("; image layer {}", human(l));
        }
        if let Some(st) = &self.static_build {
            s += &format!(
                "\n  static build {}: {} (layer {}); packed/static layer = {:.2}",
                st.path.display(),
                human(st.bytes),
                human(st.layer_bytes),
                self.layer_bytes.unwrap_or(0) as f64 / st.layer_bytes as f64
            );
        }
        if let Some(t) = &self.start_ms {
            s += &format!(
                "\n  median start over {} runs: packed {:.2} ms",
                t.runs, t.packed
            );
            if let Some(st) = t.static_build {
                s += &format!(", static {st:.2} ms (ratio {:.2})", t.packed / st);
            }
        }
        s
    }
}

fn human(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB ({b} B)", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{b} B")
    }
}
