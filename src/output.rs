//! Writing the user's outputs safely. Every output elfpack makes (trees,
//! archives, single files, edited ELF files) reaches its final path only when
//! complete, so a failure never leaves a half-written file where the user
//! expects a good one. Shared by the ELF editor and every emitter, so it
//! belongs to no pipeline stage.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// Writes a file through `fill` into a temporary file beside `out`, renamed
/// over `out` only once complete: a failure never leaves a partial output.
pub fn atomic_write(
    out: &Path,
    force: bool,
    fill: impl FnOnce(&mut std::fs::File) -> Result<()>,
) -> Result<()> {
    if out.exists() && !force {
        bail!("{}: exists (use --force to replace it)", out.display());
    }
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".elfpack-")
        .tempfile_in(dir)
        .with_context(|| format!("{}: cannot create a temporary file", dir.display()))?;
    fill(tmp.as_file_mut()).with_context(|| format!("{}: cannot write", out.display()))?;
    tmp.as_file().sync_all().ok();
    tmp.persist(out)
        .with_context(|| format!("{}: cannot rename into place", out.display()))?;
    Ok(())
}
