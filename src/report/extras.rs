//! Explains the files no ELF header names: what each option added and why.

use std::fmt::Write as _;

use crate::collect::extras::{Added, Extras, Item};

/// Images paths that hold too many files to list one by one in the report.
const LIST_LIMIT: usize = 40;

/// The `deps`-style explanation: what each option added and why, and what
/// the trace saw but left out.
pub fn report(extras: &Extras) -> String {
    let mut out = String::new();
    for t in &extras.traces {
        let _ = writeln!(
            out,
            "traced `{}` ({:?}, {} process(es)/thread(s))",
            t.command, t.outcome, t.processes
        );
    }
    let mut sources: Vec<&str> = Vec::new();
    for a in &extras.added {
        if !sources.contains(&a.source.as_str()) {
            sources.push(&a.source);
        }
    }
    for s in sources {
        let items: Vec<&Added> = extras.added.iter().filter(|a| a.source == s).collect();
        let _ = writeln!(out, "added by {s}: {} path(s)", items.len());
        if items.len() > LIST_LIMIT && s != "--trace" && !s.starts_with("package ") {
            let _ = writeln!(out, "  {} ... ({})", shown(&items[0].item), items[0].why);
            continue;
        }
        for a in items {
            let _ = writeln!(out, "  {}  [{}]", shown(&a.item), a.why);
        }
    }
    // Each path once, even when several runs used it.
    let mut seen = std::collections::HashSet::new();
    let skipped: Vec<_> = extras
        .traces
        .iter()
        .flat_map(|t| &t.skipped)
        .filter(|(p, _)| seen.insert(p))
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(out, "seen by --trace but not shipped:");
        for (p, why) in skipped {
            let _ = writeln!(out, "  {}  ({why})", p.display());
        }
    }
    out
}

fn shown(item: &Item) -> String {
    match item {
        Item::HostPath(p) => p.display().to_string(),
        Item::FileAs { src, dest } => format!("{} <- {}", dest.display(), src.display()),
        Item::DirAs { dest, .. } => format!("{}/", dest.display()),
        Item::Symlink { dest, target } => format!("{} -> {}", dest.display(), target.display()),
        Item::Data { dest, bytes } => format!("{} ({} bytes)", dest.display(), bytes.len()),
    }
}

/// One line for the packing summary.
pub fn summary(extras: &Extras) -> Option<String> {
    if extras.added.is_empty() {
        return None;
    }
    let traced = extras
        .added
        .iter()
        .filter(|a| a.source == "--trace")
        .count();
    Some(format!(
        "elfpack: {} extra path(s) added ({traced} from --trace); `elfpack deps` with the same options lists them and why",
        extras.added.len()
    ))
}
