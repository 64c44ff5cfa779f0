//! A ready `FROM scratch` Dockerfile for a rootfs directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::plan::Plan;

/// The Dockerfile text; `rootfs_rel` is the rootfs directory relative to the
/// build context (the Dockerfile's directory). `cfg` gives what else the
/// image sets (`--cmd`, `--env`, `--user`, `--workdir`), as an OCI image's
/// config would.
pub fn render(plan: &Plan, rootfs_rel: &Path, cfg: &crate::emit::oci::ImageConfig) -> String {
    let entry = json(&plan.entrypoint);
    // The JSON form of COPY, so directory names with blanks survive.
    let src = json(&format!("{}/", rootfs_rel.display()));
    let mut out = format!("FROM scratch\nCOPY [{src}, \"/\"]\n");
    for kv in &cfg.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        out.push_str(&format!("ENV {k}={}\n", json(v)));
    }
    if let Some(u) = &cfg.user {
        out.push_str(&format!("USER {u}\n"));
    }
    if let Some(w) = &cfg.workdir {
        out.push_str(&format!("WORKDIR {w}\n"));
    }
    out.push_str(&format!("ENTRYPOINT {entry}\n"));
    if !cfg.cmd.is_empty() {
        out.push_str(&format!("CMD {}\n", json(&cfg.cmd)));
    }
    out
}

/// JSON text of strings and string lists (Dockerfile exec forms and values).
fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string(v).expect("strings serialise")
}

/// The rootfs relative to the Dockerfile's directory (the build context);
/// checked before anything is written, since `COPY` cannot reach outside it.
pub fn context_path(path: &Path, rootfs: &Path, force: bool) -> Result<PathBuf> {
    crate::output::check_file_output(path, force)?;
    // A bare file name's directory is the current one.
    let ctx = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let ctx = std::path::absolute(ctx)
        .with_context(|| format!("{}: cannot make it absolute", path.display()))?;
    let root = std::path::absolute(rootfs)
        .with_context(|| format!("{}: cannot make it absolute", rootfs.display()))?;
    let rel = root.strip_prefix(&ctx).with_context(|| {
        format!(
            "{}: the rootfs {} must be inside the Dockerfile's directory",
            path.display(),
            rootfs.display()
        )
    })?;
    if rel.as_os_str().is_empty() {
        bail!(
            "{}: the rootfs {} cannot be the build context itself",
            path.display(),
            rootfs.display()
        );
    }
    Ok(rel.to_path_buf())
}

/// Writes the Dockerfile at `path` for the rootfs at `rootfs` (see
/// [`context_path`]), atomically.
pub fn write(
    plan: &Plan,
    path: &Path,
    rootfs: &Path,
    force: bool,
    cfg: &crate::emit::oci::ImageConfig,
) -> Result<()> {
    let rel = context_path(path, rootfs, force)?;
    crate::output::atomic_write(path, force, |f| {
        use std::io::Write;
        Ok(f.write_all(render(plan, &rel, cfg).as_bytes())?)
    })
}
