//! Places the files [`crate::collect::extras`] collected into a plan: each
//! item at its image path, symlinks made relative so the tree is correct
//! wherever it is unpacked.

use std::path::Path;

use anyhow::{Context, Result};

use crate::collect::extras::{Extras, Item};
use crate::plan::{Node, Plan, relative_to};

/// Puts every extra item into `plan`. Explicitly named files (`FileAs`)
/// replace what is already at their destination (e.g. a generated /etc file).
pub fn place(plan: &mut Plan, extras: &Extras) -> Result<()> {
    for a in &extras.added {
        match &a.item {
            Item::HostPath(p) => {
                if std::fs::metadata(p).is_ok_and(|m| m.is_dir()) {
                    plan.add_host_dir(p).map(|_| ())
                } else {
                    plan.add_host_path(p).map(|_| ())
                }
            }
            Item::FileAs { src, dest } => {
                if matches!(
                    plan.nodes.get(dest),
                    Some(Node::File { .. } | Node::Data { .. } | Node::Symlink { .. })
                ) {
                    plan.nodes.remove(dest);
                }
                plan.add_file_as(src, dest)
            }
            Item::DirAs { dest, mode } => match plan.nodes.get(dest) {
                Some(_) => Ok(()),
                None => plan.add_dir(dest, *mode),
            },
            Item::Symlink { dest, target } => place_symlink(plan, dest, target),
            Item::Data { dest, bytes } => plan.add_data(dest, bytes.clone(), 0o644),
        }
        .with_context(|| format!("{} ({})", a.source, a.why))?;
    }
    Ok(())
}

fn place_symlink(plan: &mut Plan, dest: &Path, target: &Path) -> Result<()> {
    let parent = dest.parent().unwrap_or(Path::new("/"));
    if !plan.nodes.contains_key(parent) && parent != Path::new("/") {
        plan.add_dir(parent, 0o755)?;
    }
    let rel = if target.is_absolute() {
        relative_to(parent, target)
    } else {
        target.to_path_buf()
    };
    plan.insert(dest, Node::Symlink { target: rel })
}
