//! `elfpack patch`: patchelf's command line over [`crate::elf::edit`].
//!
//! The arguments are read the way patchelf reads them (options and files in
//! any order, several files per call, `@FILE` for an argument kept in a
//! file), so scripts written for patchelf can call `elfpack patch` instead.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::elf::edit::{self, Edits};

const OPTIONS: &str = "Options (patchelf's): --set-interpreter I, --print-interpreter, \
--set-rpath R, --add-rpath R, --remove-rpath, --shrink-rpath, \
--allowed-rpath-prefixes P, --force-rpath, --print-rpath, --add-needed L, \
--remove-needed L, --replace-needed OLD NEW, --print-needed, --set-soname S, \
--print-soname, --print-os-abi, --set-os-abi ABI, --print-execstack, \
--set-execstack, --clear-execstack, --no-default-lib, --add-debug-tag, \
--clear-symbol-version SYM, --rename-dynamic-symbols MAP_FILE, --build-resolution-cache, --page-size N, --output FILE (-o), --debug, --no-sort";

#[derive(Args, Debug)]
#[command(
    disable_help_flag = true,
    after_help = OPTIONS
)]
pub struct PatchArgs {
    /// patchelf's options and the ELF files to edit (in place, atomically,
    /// unless --output is given).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        num_args = 1..,
        value_name = "OPTION|FILE"
    )]
    args: Vec<String>,
}

#[derive(Default)]
struct Cmd {
    edits: Edits,
    files: Vec<PathBuf>,
    output: Option<PathBuf>,
    print_interpreter: bool,
    print_rpath: bool,
    print_needed: bool,
    print_soname: bool,
    print_os_abi: bool,
    print_execstack: bool,
}

/// patchelf's `@FILE`: the argument is the file's contents.
fn resolve(arg: &str) -> Result<String> {
    match arg.strip_prefix('@') {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("getting info about {f}: cannot read")),
        None => Ok(arg.to_string()),
    }
}

fn os_abi(name: &str) -> Result<u8> {
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "system v" | "system-v" | "sysv" => 0,
        "hp-ux" => 1,
        "netbsd" => 2,
        "linux" | "gnu" => 3,
        "gnu hurd" | "gnu-hurd" | "hurd" => 4,
        "solaris" => 6,
        "aix" => 7,
        "irix" => 8,
        "freebsd" => 9,
        "tru64" => 10,
        "openbsd" => 12,
        "openvms" => 13,
        _ => bail!("unrecognized OS ABI {name:?}"),
    })
}

fn os_abi_name(abi: u8) -> String {
    match abi {
        0 => "System V".into(),
        1 => "HP-UX".into(),
        2 => "NetBSD".into(),
        3 => "Linux".into(),
        4 => "GNU Hurd".into(),
        6 => "Solaris".into(),
        7 => "AIX".into(),
        8 => "IRIX".into(),
        9 => "FreeBSD".into(),
        10 => "Tru64".into(),
        12 => "OpenBSD".into(),
        13 => "OpenVMS".into(),
        a => format!("0x{a:02X}"),
    }
}

/// patchelf's map file: `OLD NEW` per line, up to the first empty line.
fn read_rename_map(file: &str, map: &mut Vec<(String, String)>) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("Cannot open map file {file}"))?;
    for (n, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        let Some(from) = words.next() else { break };
        let to = words.next().with_context(|| {
            format!(
                "{file}:{}: Map file line is missing the second element",
                n + 1
            )
        })?;
        if map.iter().any(|(f, _)| f == from) {
            bail!(
                "{file}:{}: Name '{from}' appears twice in the map file",
                n + 1
            );
        }
        if from.contains('@') || to.contains('@') {
            bail!(
                "{file}:{}: Name pair contains version tag: {from} {to}",
                n + 1
            );
        }
        map.push((from.to_string(), to.to_string()));
    }
    Ok(())
}

fn parse(args: &[String]) -> Result<Cmd> {
    let mut c = Cmd::default();
    let mut it = args.iter();
    let value = |it: &mut std::slice::Iter<String>, opt: &str| -> Result<String> {
        let v = it
            .next()
            .with_context(|| format!("{opt}: missing argument"))?;
        resolve(v)
    };
    let (mut set_rpath, mut add_rpath, mut shrink, mut prefixes) = (None, None, false, Vec::new());
    let (mut set_x, mut clear_x) = (false, false);
    while let Some(a) = it.next() {
        let e = &mut c.edits;
        match a.as_str() {
            "--set-interpreter" | "--interpreter" => e.interpreter = Some(value(&mut it, a)?),
            "--page-size" => {
                let v = value(&mut it, a)?;
                let n: u64 = v
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("--page-size: invalid argument {v:?}"))?;
                e.page_size = Some(n);
            }
            "--print-interpreter" => c.print_interpreter = true,
            "--print-os-abi" => c.print_os_abi = true,
            "--set-os-abi" => e.os_abi = Some(os_abi(&value(&mut it, a)?)?),
            "--print-soname" => c.print_soname = true,
            "--set-soname" => e.soname = Some(value(&mut it, a)?),
            "--remove-rpath" => e.remove_rpath = true,
            "--shrink-rpath" => shrink = true,
            "--allowed-rpath-prefixes" => {
                prefixes = value(&mut it, a)?
                    .split(':')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "--set-rpath" => set_rpath = Some(value(&mut it, a)?),
            "--add-rpath" => add_rpath = Some(value(&mut it, a)?),
            "--print-rpath" => c.print_rpath = true,
            "--force-rpath" => e.force_rpath = true,
            "--print-needed" => c.print_needed = true,
            "--add-needed" => {
                let v = value(&mut it, a)?;
                if !e.add_needed.contains(&v) {
                    e.add_needed.push(v)
                }
            }
            "--remove-needed" => {
                let v = value(&mut it, a)?;
                e.remove_needed.push(v)
            }
            "--replace-needed" => {
                let old = value(&mut it, a)?;
                let new = value(&mut it, a)?;
                e.replace_needed.retain(|(o, _)| *o != old);
                e.replace_needed.push((old, new));
            }
            "--clear-symbol-version" => {
                let v = value(&mut it, a)?;
                e.clear_symbol_version.push(v)
            }
            "--rename-dynamic-symbols" => {
                let file = value(&mut it, a)?;
                read_rename_map(&file, &mut e.rename_dynamic_symbols)?;
            }
            "--build-resolution-cache" => e.build_resolution_cache = true,
            "--print-execstack" => c.print_execstack = true,
            "--set-execstack" => set_x = true,
            "--clear-execstack" => clear_x = true,
            "--output" | "-o" => c.output = Some(PathBuf::from(value(&mut it, a)?)),
            "--no-default-lib" => e.no_default_lib = true,
            "--add-debug-tag" => e.add_debug_tag = true,
            "--debug" | "--no-sort" => {}
            "--help" | "-h" => {
                println!("usage: elfpack patch [OPTION]... FILENAME... (as patchelf)\n{OPTIONS}");
                std::process::exit(0);
            }
            "--version" => {
                println!(
                    "elfpack patch {} (patchelf's command line)",
                    env!("CARGO_PKG_VERSION")
                );
                std::process::exit(0);
            }
            s if s.starts_with("--") && s.len() > 2 => bail!("unknown option {s}"),
            _ => c.files.push(PathBuf::from(a)),
        }
    }
    let e = &mut c.edits;
    e.rpath = set_rpath;
    e.add_rpath = add_rpath;
    if shrink {
        e.shrink_rpath = Some(prefixes);
    }
    // patchelf: --print-execstack wins, then --clear, then --set.
    if !c.print_execstack {
        if clear_x {
            e.execstack = Some(false);
        } else if set_x {
            e.execstack = Some(true);
        }
    }
    if c.files.is_empty() {
        bail!("missing filename (usage: elfpack patch [OPTION]... FILENAME..., as patchelf)");
    }
    if c.edits.force_rpath && c.edits.build_resolution_cache {
        bail!("--build-resolution-cache cannot be combined with --force-rpath");
    }
    if c.output.is_some() && c.files.len() > 1 {
        bail!("--output option only allowed with single input file");
    }
    Ok(c)
}

pub fn run(a: &PatchArgs) -> Result<()> {
    let c = parse(&a.args)?;
    for file in &c.files {
        run_one(&c, file)?;
    }
    Ok(())
}

fn run_one(c: &Cmd, file: &Path) -> Result<()> {
    let data = std::fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
    let info = edit::inspect(&data).with_context(|| file.display().to_string())?;
    // What patchelf prints, from the file as it was, in patchelf's order.
    let mut text = String::new();
    if c.print_interpreter {
        let interp = info
            .interpreter
            .clone()
            .with_context(|| format!("{}: no PT_INTERP", file.display()))?;
        text += &format!("{interp}\n");
    }
    if c.print_os_abi {
        text += &format!("{}\n", os_abi_name(info.os_abi));
    }
    if let (true, Some(s)) = (c.print_soname, &info.soname) {
        text += &format!("{s}\n");
    }
    if c.print_rpath {
        let rp = info
            .runpath
            .clone()
            .or(info.rpath.clone())
            .unwrap_or_default();
        text += &format!("{rp}\n");
    }
    if c.print_execstack {
        let x = match info.execstack {
            Some(true) => 'X',
            Some(false) => '-',
            None => '?',
        };
        text += &format!("execstack: {x}\n");
    }
    if c.print_needed {
        for n in &info.needed {
            text += &format!("{n}\n");
        }
    }
    // Into a closed pipe (`| head`), stop quietly instead of failing.
    let mut out = std::io::stdout().lock();
    if out
        .write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        return Ok(());
    }
    if !c.edits.is_empty() {
        let target = c.output.as_deref().unwrap_or(file);
        edit::edit_file(file, target, &c.edits)?;
    } else if let Some(out) = &c.output {
        std::fs::copy(file, out).with_context(|| format!("{}: cannot write", out.display()))?;
    }
    Ok(())
}
