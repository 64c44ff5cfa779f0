//! Writes a plan as a directory tree, atomically: everything goes into a
//! private sibling directory that is renamed into place only once complete,
//! so a failure (or a kill) never leaves a half-written root behind.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::plan::{Node, Plan};

/// Writes `plan` to `dir`. An existing non-empty `dir` is replaced only with
/// `force`.
pub fn write(plan: &Plan, dir: &Path, force: bool) -> Result<()> {
    let existing = match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            let empty = fs::read_dir(dir)
                .with_context(|| format!("{}: cannot list", dir.display()))?
                .next()
                .is_none();
            Some(empty)
        }
        Ok(_) => bail!("{}: exists and is not a directory", dir.display()),
        Err(_) => None,
    };
    if existing == Some(false) && !force {
        bail!(
            "{}: exists and is not empty (use --force to replace it)",
            dir.display()
        );
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::env::current_dir()?,
    };
    fs::create_dir_all(&parent).with_context(|| format!("{}: cannot create", parent.display()))?;
    let name = dir
        .file_name()
        .with_context(|| format!("{}: not a directory name", dir.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.elfpack-", name.to_string_lossy()))
        .tempdir_in(&parent)
        .with_context(|| format!("{}: cannot create a temporary directory", parent.display()))?;
    write_tree(plan, tmp.path())?;
    // The root directory itself: readable by everyone, like `/`.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))?;
    match existing {
        None => {}
        Some(true) => {
            fs::remove_dir(dir).with_context(|| format!("{}: cannot replace", dir.display()))?
        }
        Some(false) => {
            let old = tempfile::Builder::new()
                .prefix(".elfpack-old-")
                .tempdir_in(&parent)?;
            fs::rename(dir, old.path().join("x"))
                .with_context(|| format!("{}: cannot move aside", dir.display()))?;
        }
    }
    let tmp = tmp.keep();
    fs::rename(&tmp, dir)
        .with_context(|| format!("{}: cannot rename into place", dir.display()))?;
    Ok(())
}

fn write_tree(plan: &Plan, root: &Path) -> Result<()> {
    let at = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    for (path, node) in &plan.nodes {
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
