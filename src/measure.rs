//! The figures every pack reports, and the comparison with a `-static` build
//! of the same program that people make before choosing between the two.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::emit::tar as tarball;
use crate::plan::{Node, Plan};

#[derive(Debug, Serialize)]
pub struct PackReport {
    pub files: usize,
    /// Bytes of every file the output holds, before any packing.
    pub input_bytes: u64,
    /// Each output written and its size on disk.
    pub outputs: Vec<OutputSize>,
    /// Size of the gzip'd image layer `COPY` of this tree would add
    /// (a reproducible tar.gz, gzip level 6, what registries store): the
    /// `--oci` archive's layer, or computed with `--layer-size`/`--compare`;
    /// null otherwise.
    pub layer_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_build: Option<StaticBuild>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_ms: Option<StartTimes>,
    /// What `--push` sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<crate::emit::registry::PushStats>,
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

/// Size of the gzip'd tar layer of `plan`, exactly as `--oci` writes it.
///
/// Each tar entry is its own gzip member, so the size is a sum; members of
/// host files are remembered by file identity in the user's cache dir, which
/// makes the report nearly free when the same libraries are packed again.
pub fn layer_size(plan: &Plan) -> Result<u64> {
    let mtime = tarball::source_date_epoch();
    let mut cache = SizeCache::load();
    let mut total = tarball::end_member()?.len() as u64;
    let mut missing = Plan::default();
    let mut missing_keys = Vec::new();
    for (path, node) in &plan.nodes {
        let key = member_key(path, node, mtime);
        match key.as_ref().and_then(|k| cache.sizes.get(k)) {
            Some(size) => total += size,
            None => {
                missing.nodes.insert(path.clone(), node.clone());
                missing_keys.push(key);
            }
        }
    }
    let members = tarball::gzip_members(&missing, mtime)?;
    for (key, m) in missing_keys.into_iter().zip(&members) {
        total += m.len() as u64;
        if let Some(k) = key {
            cache.add(k, m.len() as u64);
        }
    }
    cache.save();
    Ok(total)
}

/// The layer `COPY FILE /` adds for one file (a single-file output).
pub fn file_layer_size(file: &Path) -> Result<u64> {
    let mut plan = Plan::default();
    let name = file
        .file_name()
        .with_context(|| format!("{}: no file name", file.display()))?;
    plan.add_file_as(file, &Path::new("/").join(name))?;
    layer_size(&plan)
}

/// What determines a host file's layer member: its place and mode in the
/// image, the timestamp, and the file's identity and change times.
fn member_key(path: &Path, node: &Node, mtime: u64) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let Node::File { src, mode, .. } = node else {
        return None;
    };
    let m = std::fs::metadata(src).ok()?;
    Some(format!(
        "{}|{mode:o}|{mtime}|{}:{}|{}|{}.{}|{}.{}",
        path.display(),
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    ))
}

/// `<cache dir>/elfpack-packer/layer-members-<version>`: lines
/// `key<TAB>size`. Not in `<cache dir>/elfpack`, the launcher's, which must
/// stay private to it (a directory made here with the umask's mode was
/// refused by the launcher for ever). The directory and file are private
/// (keys name host paths); past [`SizeCache::MAX`] lines the file starts
/// over.
#[derive(Default)]
struct SizeCache {
    path: Option<PathBuf>,
    sizes: std::collections::HashMap<String, u64>,
    new: Vec<(String, u64)>,
}

impl SizeCache {
    fn load() -> Self {
        let dir = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")));
        let Some(path) = dir.map(|d| {
            d.join("elfpack-packer")
                .join(concat!("layer-members-", env!("CARGO_PKG_VERSION")))
        }) else {
            return Self::default();
        };
        let sizes = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.rsplit_once('\t'))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect();
        SizeCache {
            path: Some(path),
            sizes,
            new: Vec::new(),
        }
    }

    const MAX: usize = 20_000;

    fn add(&mut self, key: String, size: u64) {
        self.new.push((key, size));
    }

    /// Appends new entries; a cache that cannot be written is just skipped.
    fn save(&self) {
        let (Some(path), false) = (&self.path, self.new.is_empty()) else {
            return;
        };
        let text: String = self
            .new
            .iter()
            .map(|(k, v)| format!("{k}\t{v}\n"))
            .collect();
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path.parent().unwrap_or(Path::new("/")));
        let full = self.sizes.len() + self.new.len() > Self::MAX;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(!full)
            .write(true)
            .truncate(full)
            .mode(0o600)
            .open(path)
        {
            use std::io::Write;
            let _ = f.write_all(text.as_bytes());
        }
    }
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
        if let Some(p) = &self.push {
            s += &format!(
                "\n  pushed {}: {} blob(s) uploaded ({}), {} mounted from another repository, {} already there",
                p.pushed,
                p.uploaded,
                human(p.uploaded_bytes),
                p.mounted,
                p.present
            );
        }
        if let Some(st) = &self.static_build {
            s += &format!(
                "\n  static build {}: {} (layer {})",
                st.path.display(),
                human(st.bytes),
                human(st.layer_bytes),
            );
            if let Some(l) = self.layer_bytes {
                s += &format!(
                    "; packed/static layer = {:.2}",
                    l as f64 / st.layer_bytes as f64
                );
            }
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
