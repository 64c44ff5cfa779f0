//! A ready `FROM scratch` Dockerfile for a rootfs directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::plan::Plan;

/// The Dockerfile text; `rootfs_rel` is the rootfs directory relative to the
/// build context (the Dockerfile's directory).
pub fn render(plan: &Plan, rootfs_rel: &Path) -> String {
    let entry = serde_json::to_string(&plan.entrypoint).expect("strings serialise");
    // The JSON form of COPY, so directory names with blanks survive.
    let src =
        serde_json::to_string(&format!("{}/", rootfs_rel.display())).expect("strings serialise");
    format!("FROM scratch\nCOPY [{src}, \"/\"]\nENTRYPOINT {entry}\n")
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
pub fn write(plan: &Plan, path: &Path, rootfs: &Path, force: bool) -> Result<()> {
    let rel = context_path(path, rootfs, force)?;
    crate::output::atomic_write(path, force, |f| {
        use std::io::Write;
        Ok(f.write_all(render(plan, &rel).as_bytes())?)
    })
}
