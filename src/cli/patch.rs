//! `elfpack patch`: patchelf's options over [`crate::elf::edit`].

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::elf::edit::{self, Edits};

#[derive(Args, Debug)]
pub struct PatchArgs {
    /// The ELF file to edit (in place, atomically, unless -o is given).
    file: PathBuf,
    /// Write the result here instead of replacing FILE.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    output: Option<PathBuf>,
    #[arg(long, value_name = "INTERPRETER")]
    set_interpreter: Option<String>,
    /// Set DT_RUNPATH (DT_RPATH with --force-rpath).
    #[arg(long, value_name = "RPATH")]
    set_rpath: Option<String>,
    #[arg(long)]
    force_rpath: bool,
    #[arg(long)]
    remove_rpath: bool,
    #[arg(long, value_name = "LIB")]
    add_needed: Vec<String>,
    #[arg(long, value_name = "LIB")]
    remove_needed: Vec<String>,
    #[arg(long, num_args = 2, value_names = ["OLD", "NEW"])]
    replace_needed: Vec<String>,
    #[arg(long, value_name = "SONAME")]
    set_soname: Option<String>,
    #[arg(long)]
    print_interpreter: bool,
    #[arg(long)]
    print_rpath: bool,
    #[arg(long)]
    print_needed: bool,
    #[arg(long)]
    print_soname: bool,
}

pub fn run(a: &PatchArgs) -> Result<()> {
    let edits = Edits {
        interpreter: a.set_interpreter.clone(),
        rpath: a.set_rpath.clone(),
        force_rpath: a.force_rpath,
        remove_rpath: a.remove_rpath,
        add_needed: a.add_needed.clone(),
        remove_needed: a.remove_needed.clone(),
        replace_needed: a
            .replace_needed
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect(),
        soname: a.set_soname.clone(),
    };
    if !edits.is_empty() {
        let out = a.output.as_ref().unwrap_or(&a.file);
        edit::edit_file(&a.file, out, &edits)?;
    } else if let Some(out) = &a.output {
        std::fs::copy(&a.file, out).with_context(|| format!("{}: cannot write", out.display()))?;
    }
    let target = a.output.as_ref().unwrap_or(&a.file);
    let data =
        std::fs::read(target).with_context(|| format!("{}: cannot read", target.display()))?;
    let info = edit::inspect(&data).with_context(|| target.display().to_string())?;
    if a.print_interpreter {
        let interp = info
            .interpreter
            .with_context(|| format!("{}: no PT_INTERP", target.display()))?;
        println!("{interp}");
    }
    if a.print_rpath {
        println!("{}", info.runpath.or(info.rpath).unwrap_or_default());
    }
    if a.print_needed {
        for n in &info.needed {
            println!("{n}");
        }
    }
    if a.print_soname {
        println!("{}", info.soname.unwrap_or_default());
    }
    Ok(())
}
