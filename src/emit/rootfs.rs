//! Writes a plan as a directory tree, atomically: everything goes into a
//! private sibling directory that is renamed into place only once complete,
//! so a failure (or a kill) never leaves a half-written root behind.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};

use crate::plan::{Node, Plan};

/// Writes `plan` to `dir`. An existing non-empty `dir` is replaced only with
/// `force`.
pub fn write(plan: &Plan, dir: &Path, force: bool) -> Result<()> {
    crate::output::replace_dir(dir, force, |tmp| {
        write_tree(plan, tmp)?;
        // The root directory itself: readable by everyone, like `/`.
        fs::set_permissions(tmp, fs::Permissions::from_mode(0o755))?;
        Ok(())
    })
}

fn write_tree(plan: &Plan, root: &Path) -> Result<()> {
    let at = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    for (path, node) in &plan.nodes {
        if crate::output::stopping() {
            anyhow::bail!("{}: interrupted", root.display());
        }
        let dest = at(path);
        match node {
            Node::Dir { .. } => fs::create_dir(&dest)
                .with_context(|| format!("{}: cannot create", dest.display()))?,
            Node::File { src, mode, .. } => {
                fs::copy(src, &dest).with_context(|| {
                    format!("{}: cannot copy to {}", src.display(), dest.display())
                })?;
                fs::set_permissions(&dest, fs::Permissions::from_mode(*mode))?;
            }
            Node::Data { bytes, mode } => {
                fs::write(&dest, bytes)
                    .with_context(|| format!("{}: cannot write", dest.display()))?;
                fs::set_permissions(&dest, fs::Permissions::from_mode(*mode))?;
            }
            Node::Symlink { target } => std::os::unix::fs::symlink(target, &dest)
                .with_context(|| format!("{}: cannot create symlink", dest.display()))?,
        }
    }
    // Directory modes last, deepest first, so read-only directories do not
    // stop their own children from being written.
    for (path, node) in plan.nodes.iter().rev() {
        if let Node::Dir { mode } = node {
            fs::set_permissions(at(path), fs::Permissions::from_mode(*mode))?;
        }
    }
    Ok(())
}
