//! The command line: argument parsing and wiring only; every behaviour is in
//! the library modules it calls.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::collect::{self, Collection};
use crate::layout::{self, RootfsOptions};
use crate::resolve::Resolver;
use crate::runtime::Gconv;
use crate::{emit, report, scratch_etc};

/// Make a dynamically linked program run where nothing else exists.
#[derive(Parser, Debug)]
#[command(
    name = "elfpack",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    pack: PackArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the files the loader would load for each program, and why (a static ldd).
    Deps(DepsArgs),
}

#[derive(Args, Debug)]
struct DepsArgs {
    /// Print JSON: {"programs":[{"path","interpreter","libraries":[{"name","path","needed_by"}]}]}.
    #[arg(long)]
    json: bool,
    #[arg(required = true)]
    programs: Vec<PathBuf>,
    #[command(flatten)]
    collect: CollectArgs,
}

/// Options that change what is collected (shared by packing and `deps`).
#[derive(Args, Debug)]
struct CollectArgs {
    /// Ship this nsswitch.conf instead of the generated one (its sources decide which NSS modules ship).
    #[arg(long, value_name = "FILE")]
    nsswitch: Option<PathBuf>,
    /// gconv modules for iconv: "all", "none" or a comma-separated list of charsets.
    #[arg(long, value_name = "SPEC", default_value = "none")]
    gconv: Gconv,
    #[command(flatten)]
    extras: crate::extras::ExtraArgs,
}

#[derive(Args, Debug)]
struct PackArgs {
    /// The programs to pack (ELF executables or #! scripts).
    #[arg(required = true)]
    programs: Vec<PathBuf>,
    /// Write a root filesystem tree for `COPY rootfs/ /` in a FROM scratch image.
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// Replace an existing non-empty output.
    #[arg(long)]
    force: bool,
    /// Put the program at this path in the image (a path ending in / is a directory for all programs).
    #[arg(long, value_name = "PATH")]
    install_to: Option<String>,
    /// Also write a FROM scratch Dockerfile (default: Dockerfile beside the rootfs directory).
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "")]
    dockerfile: Option<PathBuf>,
    /// Do not generate /etc (passwd, group, nsswitch.conf, hosts) and /tmp.
    #[arg(long)]
    no_etc: bool,
    /// Copy the build host's /etc/passwd and /etc/group instead of generating them.
    #[arg(long)]
    host_users: bool,
    #[command(flatten)]
    collect: CollectArgs,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Deps(a)) => deps(a),
        None => pack(&cli.pack),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("elfpack: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn collect_programs(
    programs: &[PathBuf],
    args: &CollectArgs,
) -> Result<(Resolver, Collection, String)> {
    let nsswitch = match &args.nsswitch {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("{}: cannot read", f.display()))?
        }
        None => scratch_etc::NSSWITCH.to_string(),
    };
    let opts = collect::Options {
        nsswitch: nsswitch.clone(),
        gconv: args.gconv.clone(),
        search_path: std::env::var("PATH")
            .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        extras: args.extras.options(),
    };
    let mut resolver = Resolver::new()?;
    let col = collect::collect(&mut resolver, programs, &opts)?;
    Ok((resolver, col, nsswitch))
}

fn warn_all(warnings: &[String]) {
    for w in warnings {
        eprintln!("elfpack: warning: {w}");
    }
}

fn deps(a: &DepsArgs) -> Result<()> {
    let (_, col, _) = collect_programs(&a.programs, &a.collect)?;
    let text = if a.json {
        report::json(&col) + "\n"
    } else {
        report::tree(&col) + &crate::extras::report(&col.extras)
    };
    std::io::stdout().write_all(text.as_bytes())?;
    warn_all(&col.warnings);
    Ok(())
}

fn pack(a: &PackArgs) -> Result<()> {
    let Some(dir) = &a.rootfs else {
        bail!("no output chosen: give --rootfs DIR");
    };
    let dockerfile = a.dockerfile.as_ref().map(|p| {
        if p.as_os_str().is_empty() {
            dir.parent().unwrap_or(Path::new("")).join("Dockerfile")
        } else {
            p.clone()
        }
    });
    if let Some(d) = dockerfile.as_ref().filter(|d| d.exists() && !a.force) {
        bail!("{}: exists (use --force to replace it)", d.display());
    }
    let (resolver, col, nsswitch) = collect_programs(&a.programs, &a.collect)?;
    let opts = RootfsOptions {
        install_to: a.install_to.clone(),
        scratch_etc: !a.no_etc,
        host_users: a.host_users,
        nsswitch,
    };
    let plan = layout::rootfs_plan(&col, resolver.ld_cache(), &opts)?;
    warn_all(&col.warnings);
    warn_all(&layout::origin_warnings(&col, &opts));
    eprint!(
        "{}",
        crate::extras::summary(&col.extras)
            .map(|s| s + "\n")
            .unwrap_or_default()
    );
    emit::rootfs::write(&plan, dir, a.force)?;
    if let Some(d) = &dockerfile {
        emit::dockerfile::write(&plan, d, dir, a.force)?;
    }
    let (files, bytes) = plan.totals();
    eprintln!(
        "elfpack: wrote {}: {files} files, {bytes} bytes, entrypoint {}",
        dir.display(),
        plan.entrypoint.join(" ")
    );
    if let Some(d) = &dockerfile {
        eprintln!("elfpack: wrote {}", d.display());
    }
    Ok(())
}
