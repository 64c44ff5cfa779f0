//! `elfpack deps`: a static `ldd` that says why each file is there
//! ([`packages`]: and which package each comes from).

pub mod extras;
pub mod named_paths;
pub mod packages;

use std::fmt::Write as _;

use serde::Serialize;

use crate::collect::Collection;
use crate::loader::resolve::{Closure, Reason, Via};

#[derive(Serialize)]
struct JsonReport<'a> {
    programs: Vec<JsonProgram<'a>>,
}

#[derive(Serialize)]
struct JsonProgram<'a> {
    path: String,
    interpreter: Option<String>,
    libraries: Vec<JsonLibrary<'a>>,
}

#[derive(Serialize)]
struct JsonLibrary<'a> {
    name: &'a str,
    path: String,
    needed_by: Vec<String>,
}

/// The machine-readable form: for each ELF closure, the libraries the loader
/// maps at start-up (`path` is the path it opens) and who needs each.
pub fn json(col: &Collection) -> String {
    let programs = col
        .closures
        .iter()
        .map(|c| JsonProgram {
            path: c.program().path.display().to_string(),
            interpreter: c.program().info.interpreter.clone(),
            libraries: c
                .libraries()
                .map(|o| JsonLibrary {
                    name: &o.name,
                    path: o.path.display().to_string(),
                    needed_by: o
                        .needed_by
                        .iter()
                        .map(|&i| c.objects[i].path.display().to_string())
                        .collect(),
                })
                .collect(),
        })
        .collect();
    serde_json::to_string(&JsonReport { programs }).expect("report serialises")
}

/// The human-readable tree: each library under the object that first pulled
/// it in, with how it was found; later requests point back.
pub fn tree(col: &Collection) -> String {
    let mut out = String::new();
    for p in &col.programs {
        if let Some(sb) = &p.shebang {
            let _ = write!(
                out,
                "{}  (script, #!{}",
                p.path.display(),
                sb.interpreter.display()
            );
            if let Some(t) = &sb.env_target {
                let _ = write!(out, " -> {}", t.display());
            }
            out.push_str(")\n");
        }
    }
    for c in &col.closures {
        let prog = c.program();
        let _ = writeln!(
            out,
            "{}  ({:?}, {})",
            prog.path.display(),
            prog.info.kind,
            prog.info.machine_name()
        );
        if let Some(i) = c.interpreter() {
            let _ = writeln!(out, "  interpreter {}", i.path.display());
        }
        print_children(&mut out, c, 0, 1);
        let extras: Vec<_> = c
            .objects
            .iter()
            .enumerate()
            .filter(|(_, o)| matches!(o.reason, Reason::RunTime(_)))
            .collect();
        if !extras.is_empty() {
            out.push_str("  loaded at run time:\n");
            for (i, o) in extras {
                if let Reason::RunTime(why) = &o.reason {
                    let _ = writeln!(
                        out,
                        "    {} => {}  [{}] ({why})",
                        o.name,
                        o.path.display(),
                        o.via
                    );
                }
                print_children(&mut out, c, i, 3);
            }
        }
        for o in c
            .objects
            .iter()
            .filter_map(|o| o.baseline.as_ref().map(|b| (o, b)))
        {
            let _ = writeln!(
                out,
                "  baseline copy of {} for any x86-64 CPU: {}",
                o.0.path.display(),
                o.1.display()
            );
        }
    }
    out
}

fn print_children(out: &mut String, c: &Closure, i: usize, depth: usize) {
    let indent = "  ".repeat(depth);
    for name in &c.objects[i].info.needed {
        let target = c.objects.iter().position(|o| {
            o.needed_by.contains(&i)
                && (o.name == *name
                    || o.info.soname.as_deref() == Some(name)
                    || o.path.as_os_str() == name.as_str())
        });
        match target {
            Some(t) if c.objects[t].loader == Some(i) && c.objects[t].reason == Reason::Needed => {
                let o = &c.objects[t];
                let _ = writeln!(out, "{indent}{} => {}  [{}]", name, o.path.display(), o.via);
                print_children(out, c, t, depth + 1);
            }
            Some(t) if c.objects[t].via == Via::Interpreter => {
                let _ = writeln!(
                    out,
                    "{indent}{name} => {}  (the interpreter)",
                    c.objects[t].path.display()
                );
            }
            Some(t) => {
                let first = c.objects[t]
                    .loader
                    .map(|l| c.objects[l].path.display().to_string())
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{indent}{name} => {}  (first needed by {first})",
                    c.objects[t].path.display()
                );
            }
            None => {
                let _ = writeln!(out, "{indent}{name} => ?");
            }
        }
    }
}
