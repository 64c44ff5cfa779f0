//! A ready `FROM scratch` Dockerfile for a rootfs directory.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::plan::Plan;

/// The Dockerfile text; `rootfs_rel` is the rootfs directory relative to the
/// build context (the Dockerfile's directory).
pub fn render(plan: &Plan, rootfs_rel: &Path) -> String {
    let entry = serde_json::to_string(&plan.entrypoint).expect("strings serialise");
    format!(
        "FROM scratch\nCOPY {}/ /\nENTRYPOINT {entry}\n",
        rootfs_rel.display()
    )
}

/// Writes the Dockerfile at `path` for the rootfs at `rootfs`; both must be
/// in the same build context (the rootfs below the Dockerfile's directory).
pub fn write(plan: &Plan, path: &Path, rootfs: &Path, force: bool) -> Result<()> {
    if path.exists() && !force {
        bail!("{}: exists (use --force to replace it)", path.display());
    }
    let ctx = std::path::absolute(path.parent().unwrap_or(Path::new(".")))?;
    let root = std::path::absolute(rootfs)?;
    let rel = root.strip_prefix(&ctx).with_context(|| {
        format!(
            "{}: the rootfs {} must be inside the Dockerfile's directory",
            path.display(),
            rootfs.display()
        )
    })?;
    let tmp = tempfile::NamedTempFile::new_in(&ctx)?;
    std::fs::write(tmp.path(), render(plan, rel))?;
    tmp.persist(path)
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(())
}
