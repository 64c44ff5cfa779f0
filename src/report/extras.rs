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
    // What package data added, the part of a default pack a user did not ask
    // for by name (issue 15: its size is reported).
    let packaged: Vec<&Added> = extras
        .added
        .iter()
        .filter(|a| a.source.starts_with("package "))
        .collect();
    let packaged_bytes: u64 = packaged.iter().map(|a| item_bytes(&a.item)).sum();
    let package_part = match packaged.len() {
        0 => String::new(),
        n => format!(
            ", {n} from package data: {} (--no-package-data leaves them out)",
            human_bytes(packaged_bytes)
        ),
    };
    Some(format!(
        "elfpack: {} extra path(s) added ({traced} from --trace{package_part}); `elfpack deps` with the same options lists them and why",
        extras.added.len()
    ))
}

/// The bytes a regular file item ships (0 for directories and links).
fn item_bytes(item: &Item) -> u64 {
    let src = match item {
        Item::HostPath(p) => p,
        Item::FileAs { src, .. } => src,
        Item::Data { bytes, .. } => return bytes.len() as u64,
        _ => return 0,
    };
    std::fs::symlink_metadata(src)
        .ok()
        .filter(|m| m.is_file())
        .map_or(0, |m| m.len())
}

/// `1.2 MiB`, `340 KiB`, `12 B`.
fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.0} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
