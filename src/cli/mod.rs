//! The command line: argument parsing and wiring only; every behaviour is in
//! the library modules it calls.

mod patch;

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::collect::runtime::Gconv;
use crate::collect::{self, Collection};
use crate::loader::resolve::Resolver;
use crate::measure::{self, OutputSize, PackReport, StartTimes};
use crate::plan::layout::{self, RootfsOptions};
use crate::plan::scratch_etc;
use crate::{emit, report};

/// Make a dynamically linked program run where nothing else exists.
#[derive(Parser, Debug)]
#[command(
    name = "elfpack",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    /// No progress bars and no report on stderr (warnings and errors still print).
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    pack: PackArgs,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once
enum Command {
    /// Print the files the loader would load for each program, and why (a static ldd).
    Deps(DepsArgs),
    /// Edit an ELF file the way patchelf does (interpreter, RPATH, DT_NEEDED, SONAME).
    Patch(patch::PatchArgs),
}

#[derive(Args, Debug)]
struct DepsArgs {
    /// Print JSON: {"programs":[{"path","interpreter","libraries":[{"name","path","needed_by"}]}]}.
    #[arg(long)]
    json: bool,
    /// Print each file a pack would ship with its package and version (from the dpkg database, or
    /// an ELF file's .note.package); with --json: {"files":[...],"packages":[...]}.
    #[arg(long)]
    packages: bool,
    #[arg(required = true)]
    programs: Vec<PathBuf>,
    /// Arguments for the traced run (--trace).
    #[arg(last = true, value_name = "ARGS", requires = "trace")]
    args: Vec<String>,
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
    /// Resolve, copy and patch from another system's root (e.g. an arm64 Debian made with dpkg-deb -x or
    /// mmdebstrap); programs are named by their path inside it. Repeat with --oci/--push for a multi-platform image.
    #[arg(long, value_name = "DIR")]
    sysroot: Vec<PathBuf>,
    #[command(flatten)]
    extras: crate::collect::ExtraArgs,
}

#[derive(Args, Debug)]
struct PackArgs {
    /// The programs to pack (ELF executables or #! scripts).
    #[arg(required = true)]
    programs: Vec<PathBuf>,
    /// Write a root filesystem tree for `COPY rootfs/ /` in a FROM scratch image.
    #[arg(long, value_name = "DIR")]
    rootfs: Option<PathBuf>,
    /// Write FILE: one self-extracting executable (a reproducible tarball of the tree when FILE ends in .tar).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Compression of a single file (-o FILE): balanced (the default: LZMA in parallel chunks), max (LZMA, one chunk, smallest), fast (LZ4, quickest first start), none.
    #[arg(long, value_enum)]
    compress: Option<crate::emit::single_file::Compression>,
    /// Write an OCI image-layout archive (podman load -i, skopeo inspect oci-archive:).
    #[arg(long, value_name = "IMAGE.tar")]
    oci: Option<PathBuf>,
    /// Push the image to a registry (HOST[:PORT]/NAME[:TAG]) with the OCI distribution API; prints the digest.
    #[arg(long, value_name = "REF")]
    push: Option<String>,
    /// Allow plain HTTP to a registry that is not on loopback (--push).
    #[arg(long, requires = "push")]
    insecure: bool,
    #[command(flatten)]
    image: ImageArgs,
    /// Replace an existing non-empty output.
    #[arg(long)]
    force: bool,
    /// Bundle under this directory (every file at its own path under PREFIX) with PT_INTERP and RPATH
    /// rewritten, so it runs beside any other libc; with --rootfs, -o NAME.tar or --oci.
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<PathBuf>,
    /// Put the program at this path in the image (a path ending in / is a directory for all programs).
    #[arg(long, value_name = "PATH")]
    install_to: Option<String>,
    /// Also write a FROM scratch Dockerfile (default: Dockerfile beside the rootfs directory).
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    dockerfile: Option<Option<PathBuf>>,
    /// Do not generate /etc (passwd, group, nsswitch.conf, hosts) and /tmp.
    #[arg(long)]
    no_etc: bool,
    /// Leave out libraries matching this name or glob (DT_NEEDED name, SONAME or file name); repeatable.
    #[arg(long, value_name = "NAME")]
    exclude: Vec<glob::Pattern>,
    /// Copy the build host's /etc/passwd and /etc/group instead of generating them.
    #[arg(long)]
    host_users: bool,
    /// Keep set-user-ID and set-group-ID bits (dropped by default: packed files belong to root,
    /// or to whoever unpacks them).
    #[arg(long)]
    keep_setid: bool,
    /// Do not write the package metadata scanners read (/var/lib/dpkg/status.d/PKG and PKG.md5sums for
    /// each Debian package with a shipped file, /etc/os-release).
    #[arg(long)]
    no_package_metadata: bool,
    /// Write an SPDX 2.3 JSON SBOM of the output (packages with purls, files with checksums); with
    /// --oci it also goes into the archive as an artifact referring to the image.
    #[arg(long, value_name = "FILE")]
    sbom: Option<PathBuf>,
    /// After packing, run the result in an isolated empty root (namespaces, /proc, /dev nodes, no helpers)
    /// and fail when the program fails.
    #[arg(long)]
    test: bool,
    /// Run the --test as this user of the image (NAME|UID[:GID], looked up in the image's /etc/passwd;
    /// default: --user, else root).
    #[arg(long, value_name = "NAME|UID", requires = "test")]
    test_user: Option<String>,
    /// Report the size of a -static build of the same program beside the packed one.
    #[arg(long, value_name = "STATIC_PROG")]
    compare: Option<PathBuf>,
    /// Also time both (median over --runs runs) with the trailing ARGS; needs root (chroot).
    #[arg(long)]
    compare_run: bool,
    /// Runs for --compare-run (default 20).
    #[arg(long)]
    runs: Option<usize>,
    /// Print the pack report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Report the gzip'd image-layer size `COPY` of the output would add (gzips every file; without
    /// it --oci/--push report their layers as built; --compare implies it).
    #[arg(long, conflicts_with = "no_layer_size")]
    layer_size: bool,
    /// Report no image-layer size at all, not even an image's.
    #[arg(long)]
    no_layer_size: bool,
    /// Arguments for the program when elfpack runs it (--test, --compare-run, --trace).
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
    #[command(flatten)]
    collect: CollectArgs,
}

/// How the image runs its program (OCI config, Dockerfile).
#[derive(Args, Debug)]
struct ImageArgs {
    /// Image name for --oci (default elfpack:latest).
    #[arg(long, value_name = "NAME:TAG")]
    tag: Option<String>,
    /// The program the image runs (required when several programs are packed).
    #[arg(long, value_name = "PATH")]
    entrypoint: Option<String>,
    /// Default arguments (repeat for several).
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    cmd: Vec<String>,
    /// Environment variable for the image (repeat for several).
    #[arg(long, value_name = "K=V")]
    env: Vec<String>,
    /// User the image runs as (e.g. 65532 or nonroot).
    #[arg(long)]
    user: Option<String>,
    /// Working directory of the image.
    #[arg(long, value_name = "DIR")]
    workdir: Option<String>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::progress::enable(!cli.quiet && std::io::stderr().is_terminal());
    let result = match &cli.command {
        Some(Command::Deps(a)) => deps(a),
        Some(Command::Patch(a)) => patch::run(a),
        None => pack(&cli.pack, cli.quiet),
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
    trailing: &[String],
) -> Result<(Resolver, Collection, String)> {
    match args.sysroot.as_slice() {
        [] => collect_in(programs, args, trailing, None),
        [one] => collect_in(programs, args, trailing, Some(one)),
        _ => bail!("several --sysroot: only --oci and --push make one image of several systems"),
    }
}

fn collect_in(
    programs: &[PathBuf],
    args: &CollectArgs,
    trailing: &[String],
    sysroot: Option<&Path>,
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
        search_path: crate::emit::oci::DEFAULT_PATH.to_string(),
        extras: args.extras.options(trailing)?,
    };
    let mut resolver = match sysroot {
        Some(root) => Resolver::with_root(root)?,
        None => Resolver::new()?,
    };
    let col = collect::collect(&mut resolver, programs, &opts)?;
    Ok((resolver, col, nsswitch))
}

/// The system a plan's files are read from: `/` or a `--sysroot`.
fn plan_root(plan: &crate::plan::Plan) -> PathBuf {
    match plan.root.as_os_str().is_empty() {
        true => PathBuf::from("/"),
        false => plan.root.clone(),
    }
}

/// The dpkg database of the system a plan's files come from.
fn dpkg_of(plan: &crate::plan::Plan) -> Result<Option<crate::collect::dpkg::Dpkg>> {
    crate::collect::dpkg::Dpkg::open_root(&plan_root(plan))
}

/// Where each of the plan's files comes from, from `db`; says once when
/// there is no database.
fn provenance_with(
    plan: &crate::plan::Plan,
    db: Option<&crate::collect::dpkg::Dpkg>,
    quiet: bool,
) -> crate::plan::package_metadata::Provenance {
    if db.is_none() && !quiet {
        eprintln!(
            "elfpack: note: {}: no dpkg database ({}/status): package metadata is unavailable; the SBOM lists files and checksums only",
            plan_root(plan).display(),
            crate::collect::dpkg::ADMIN_DIR
        );
    }
    crate::plan::package_metadata::provenance(plan, db)
}

/// Where each of the plan's files comes from (see [`provenance_with`]).
fn provenance_of(
    plan: &crate::plan::Plan,
    quiet: bool,
) -> Result<crate::plan::package_metadata::Provenance> {
    Ok(provenance_with(plan, dpkg_of(plan)?.as_ref(), quiet))
}

/// Notes for the programs no package owns: the paths their strings name
/// that exist here but are not shipped (README "Package data").
fn named_paths_notes(
    plan: &crate::plan::Plan,
    programs: &[crate::collect::Program],
    db: Option<&crate::collect::dpkg::Dpkg>,
    bundle: Option<&Path>,
) -> Vec<String> {
    let root = plan_root(plan);
    let in_root: Vec<PathBuf> = programs
        .iter()
        .map(|p| match p.path.strip_prefix(&root) {
            Ok(rel) if root != Path::new("/") => Path::new("/").join(rel),
            _ => p.path.clone(),
        })
        .collect();
    let owners = match db {
        Some(db) => db
            .owners_of(&in_root)
            .into_iter()
            .map(|o| !o.is_empty())
            .collect(),
        None => vec![false; programs.len()],
    };
    programs
        .iter()
        .zip(owners)
        .filter(|(p, owned)| !owned && p.shebang.is_none())
        .filter_map(|(p, _)| {
            let bytes = std::fs::read(&p.path).ok()?;
            let paths = crate::report::named_paths::not_shipped(&bytes, &root, plan, bundle);
            crate::report::named_paths::note(&p.path, &paths)
        })
        .collect()
}

/// An output's file name, naming it in an SBOM.
fn file_label(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

fn warn_all(warnings: &[String]) {
    for w in warnings {
        eprintln!("elfpack: warning: {w}");
    }
}

fn deps(a: &DepsArgs) -> Result<()> {
    let (resolver, col, nsswitch) = collect_programs(&a.programs, &a.collect, &a.args)?;
    if a.packages {
        // The files a default --rootfs pack ships.
        let opts = RootfsOptions {
            install_to: None,
            scratch_etc: true,
            host_users: false,
            nsswitch,
            exclude: Vec::new(),
            shared_runtime: false,
        };
        let plan = layout::rootfs_plan(&col, resolver.ld_cache(), &opts)?;
        let prov = provenance_of(&plan, false)?;
        let text = match a.json {
            true => report::packages::json(&plan, &prov) + "\n",
            false => report::packages::text(&plan, &prov),
        };
        std::io::stdout().write_all(text.as_bytes())?;
        warn_all(&col.warnings);
        return Ok(());
    }
    let text = if a.json {
        report::json(&col) + "\n"
    } else {
        report::tree(&col) + &crate::report::extras::report(&col.extras)
    };
    std::io::stdout().write_all(text.as_bytes())?;
    warn_all(&col.warnings);
    Ok(())
}

fn pack(a: &PackArgs, quiet: bool) -> Result<()> {
    if a.collect.sysroot.len() > 1 {
        return pack_platforms(a);
    }
    let tarball = a
        .output
        .as_ref()
        .filter(|o| o.extension().is_some_and(|e| e == "tar"));
    let single = a.output.as_ref().filter(|_| tarball.is_none());
    let image = a.oci.is_some() || a.push.is_some();
    if single.is_some() && (a.rootfs.is_some() || image || a.prefix.is_some()) {
        bail!(
            "a single file (-o FILE) is written on its own: drop --rootfs, --oci, --push and --prefix"
        );
    }
    refuse_unused_options(a, single.is_some())?;
    if a.rootfs.is_none() && a.output.is_none() && !image && !a.test {
        bail!(
            "no output chosen: give -o FILE (one executable), --rootfs DIR, -o NAME.tar, --oci IMAGE.tar or --push REF"
        );
    }
    let registry = a
        .push
        .as_deref()
        .map(|r| emit::registry::Registry::new(r, a.insecure))
        .transpose()?;
    let dockerfile = a.dockerfile.as_ref().map(|p| match (p, &a.rootfs) {
        (Some(p), _) => p.clone(),
        (None, Some(dir)) => dir.parent().unwrap_or(Path::new("")).join("Dockerfile"),
        (None, None) => PathBuf::from("Dockerfile"),
    });
    match (&dockerfile, &a.rootfs) {
        (Some(_), None) => bail!("--dockerfile needs --rootfs DIR (the Dockerfile COPYs it)"),
        (Some(d), Some(dir)) => {
            emit::dockerfile::context_path(d, dir, a.force)?;
        }
        _ => {}
    }
    for out in [&dockerfile, &a.output, &a.oci].into_iter().flatten() {
        crate::output::check_file_output(out, a.force)?;
    }
    if let Some(dir) = &a.rootfs {
        crate::output::check_dir_output(dir, a.force)?;
    }
    if let Some(f) = single.filter(|f| crate::output::is_pipe(f))
        && (a.test || a.compare_run)
    {
        bail!(
            "{}: a pipe cannot be run afterwards: --test and --compare-run need a file output",
            f.display()
        );
    }
    for e in &a.image.env {
        crate::plan::bundle::env_var(e)?;
    }
    let (resolver, col, nsswitch) = collect_programs(&a.programs, &a.collect, &a.args)?;
    let machine = resolver.caps.machine;
    if single.is_some() && machine != goblin::elf::header::EM_X86_64 {
        bail!(
            "a single file for {} needs a launcher built for it, and this elfpack has only the x86-64 one \
             (no aarch64 Rust target here): use --rootfs, -o NAME.tar, --oci, --push or --prefix",
            crate::elf::machine_name(true, machine)
        );
    }
    col.refuse_libraries()?;
    let opts = RootfsOptions {
        install_to: a.install_to.clone(),
        scratch_etc: !a.no_etc,
        host_users: a.host_users,
        nsswitch,
        exclude: a.exclude.clone(),
        shared_runtime: image,
    };
    let mut launch = crate::plan::bundle::Launch::default();
    let mut warnings = col.warnings.clone();
    // A single file is a bundle under the placeholder its launcher replaces.
    let bundle_prefix = match (&a.prefix, single) {
        (_, Some(_)) => Some(crate::emit::single_file::placeholder_prefix()),
        (Some(p), None) => Some(p.clone()),
        (None, None) => None,
    };
    let mut load_order = Vec::new();
    let mut plan = match &bundle_prefix {
        Some(prefix) => {
            let b = crate::plan::prefix::bundle_plan(
                &col,
                resolver.ld_cache(),
                &opts,
                prefix,
                single.is_some(),
            )?;
            warnings.extend(b.warnings);
            load_order = b.load_order;
            let mut plan = b.plan;
            if let Some(e) = &a.image.entrypoint {
                plan.entrypoint = vec![bundle_entrypoint(&plan, &col, prefix, e)?];
            }
            let base = match single {
                Some(_) => crate::plan::bundle::BUNDLE_TOKEN.to_string(),
                None => prefix.display().to_string(),
            };
            launch = crate::plan::bundle::launch(&mut plan, &col, prefix, &base, &a.image.env)?;
            if single.is_none() && !launch.env.is_empty() {
                // Nothing runs before a --prefix program to set these.
                plan.add_data(
                    &prefix.join("etc/elfpack.env"),
                    crate::plan::bundle::env_file(&launch).into_bytes(),
                    0o644,
                )?;
            }
            plan
        }
        None => {
            let mut plan = layout::rootfs_plan(&col, resolver.ld_cache(), &opts)?;
            if let Some(e) = &a.image.entrypoint {
                plan.entrypoint = vec![e.clone()];
            }
            plan
        }
    };
    let needs_entrypoint = dockerfile.is_some() || image || a.test;
    if needs_entrypoint && plan.entrypoint.is_empty() {
        bail!(
            "{} programs packed: choose the one the image runs with --entrypoint PATH",
            a.programs.len()
        );
    }
    // Dockerfiles, OCI configs and the launcher's records hold UTF-8 only.
    if (needs_entrypoint || single.is_some())
        && plan.entrypoint.iter().any(|e| e.contains('\u{FFFD}'))
        && let Some(p) = col.programs.iter().find(|p| p.path.to_str().is_none())
    {
        bail!(
            "{}: the program's path is not UTF-8, which a Dockerfile, an OCI config or a single file cannot name; rename it or choose its path in the image with --install-to",
            p.path.display()
        );
    }
    let cfg = emit::oci::ImageConfig {
        tag: a
            .image
            .tag
            .clone()
            .unwrap_or_else(|| "elfpack:latest".into()),
        entrypoint: plan.entrypoint.clone(),
        cmd: a.image.cmd.clone(),
        // A --prefix bundle's image sets what `. PREFIX/etc/elfpack.env` would.
        env: match (&a.prefix, single) {
            (Some(_), None) => launch.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            _ => a.image.env.clone(),
        },
        user: a.image.user.clone(),
        workdir: a.image.workdir.clone(),
    };
    if image {
        emit::oci::check_config(&plan, &cfg)?;
    }
    // Nothing that is being packed may be replaced by an output (checked
    // before any note is printed, so a refusal is one line).
    let inputs: Vec<&Path> = plan
        .nodes
        .values()
        .filter_map(|n| match n {
            crate::plan::Node::File { src, .. } => Some(src.as_path()),
            _ => None,
        })
        .chain(col.programs.iter().map(|p| p.path.as_path()))
        .collect();
    for out in [&a.rootfs, &dockerfile, &a.output, &a.oci, &a.sbom]
        .into_iter()
        .flatten()
    {
        crate::output::refuse_inputs_inside(out, inputs.iter().copied())?;
    }
    if let Some(f) = &a.sbom {
        crate::output::check_file_output(f, a.force)?;
    }
    // What scanners read: written into image-shaped outputs (a single file
    // is not an image), and the SBOM's source.
    let want_metadata = single.is_none() && !a.no_package_metadata;
    let db = dpkg_of(&plan)?;
    for n in named_paths_notes(&plan, &col.programs, db.as_ref(), bundle_prefix.as_deref()) {
        eprintln!("elfpack: note: {n}");
    }
    let sbom = if want_metadata || a.sbom.is_some() {
        let prov = provenance_with(&plan, db.as_ref(), quiet);
        if want_metadata {
            crate::plan::package_metadata::add_metadata(&mut plan, &prov)?;
        }
        match &a.sbom {
            Some(f) => {
                let (name, under, purpose) = match (single, &a.oci, &a.rootfs, tarball) {
                    (Some(f), ..) => (
                        file_label(f),
                        Some(crate::emit::single_file::placeholder_prefix()),
                        "APPLICATION",
                    ),
                    (None, Some(_), ..) | (None, None, None, None) => {
                        (cfg.tag.clone(), None, "CONTAINER")
                    }
                    (None, None, Some(d), _) => (file_label(d), None, "CONTAINER"),
                    (None, None, None, Some(t)) => (file_label(t), None, "CONTAINER"),
                };
                let doc =
                    crate::emit::sbom::document(&plan, &prov, &name, under.as_deref(), purpose)?;
                Some((f, doc))
            }
            None => None,
        }
    } else {
        None
    };
    if !a.keep_setid {
        let dropped = plan.drop_setid();
        if let Some(first) = dropped.first() {
            eprintln!(
                "elfpack: note: dropped the set-user-ID/set-group-ID bits of {}{} (--keep-setid keeps them)",
                first.display(),
                match dropped.len() {
                    1 => String::new(),
                    n => format!(" and {} more", n - 1),
                }
            );
        }
    }
    warn_all(&warnings);
    if let (Some(note), false) = (
        launch_note(&launch, single.is_some(), a.prefix.as_deref()),
        quiet,
    ) {
        eprintln!("{note}");
    }
    if let (Some(s), false) = (crate::report::extras::summary(&col.extras), quiet) {
        eprintln!("{s}");
    }
    let mut outputs = Vec::new();
    let mut oci_layers = None;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let (files, input_bytes) = plan.totals();
    if let Some(dir) = &a.rootfs {
        emit::rootfs::write(&plan, dir, a.force)?;
        outputs.push(OutputSize {
            path: dir.clone(),
            kind: "rootfs",
            bytes: input_bytes,
        });
    }
    if let (Some(d), Some(dir)) = (&dockerfile, &a.rootfs) {
        emit::dockerfile::write(&plan, d, dir, a.force, &cfg)?;
        outputs.push(OutputSize {
            path: d.clone(),
            kind: "Dockerfile",
            bytes: size(d),
        });
    }
    if let Some(f) = single {
        crate::emit::single_file::write_single_file(
            &plan,
            &load_order,
            &launch,
            f,
            a.compress
                .unwrap_or(crate::emit::single_file::Compression::Balanced),
            a.force,
        )?;
        outputs.push(OutputSize {
            path: f.to_path_buf(),
            kind: "single file",
            bytes: size(f),
        });
    }
    if let Some(t) = tarball {
        emit::tar::write_file(&plan, t, a.force)?;
        outputs.push(OutputSize {
            path: t.clone(),
            kind: "tarball",
            bytes: size(t),
        });
    }
    let mut push = None;
    if image {
        let set = emit::oci::build(&[(&plan, emit::oci::Platform::of(machine)?)], &cfg)?;
        // What the image's layers weigh, known without more work.
        oci_layers = Some(
            set.images[0]
                .layers
                .iter()
                .map(|l| l.bytes.len() as u64)
                .sum(),
        );
        use emit::oci::Destination as _;
        if let Some(o) = &a.oci {
            let archived = match &sbom {
                Some((_, doc)) => emit::oci::attach_sbom(set.clone(), doc.clone())?,
                None => set.clone(),
            };
            emit::oci::Archive {
                out: o.clone(),
                tag: cfg.tag.clone(),
                force: a.force,
            }
            .publish(&archived)?;
            outputs.push(OutputSize {
                path: o.clone(),
                kind: "OCI archive",
                bytes: size(o),
            });
        }
        if let Some(mut r) = registry {
            r.publish(&set)?;
            push = Some(r.stats);
        }
    }
    if let Some((f, doc)) = &sbom {
        crate::output::atomic_write(f, a.force, |w| Ok(w.write_all(doc)?))
            .with_context(|| format!("{}: cannot write the SBOM", f.display()))?;
        outputs.push(OutputSize {
            path: f.to_path_buf(),
            kind: "SBOM",
            bytes: size(f),
        });
    }
    let mut report = PackReport {
        files,
        input_bytes,
        outputs,
        // Gzipping every file for this figure made a --rootfs pack 3-8 times
        // slower: it comes free with an image (its layers as built), and is
        // computed (the tree as the one layer `COPY` adds) only on request.
        layer_bytes: match (a.no_layer_size, a.layer_size || a.compare.is_some(), single) {
            (true, _, _) => None,
            (false, true, Some(f)) if crate::output::is_pipe(f) => None,
            (false, true, Some(f)) => Some(measure::file_layer_size(f)?),
            (false, true, None) => Some(measure::layer_size(&plan)?),
            (false, false, _) => oci_layers,
        },
        static_build: a
            .compare
            .as_deref()
            .map(measure::static_build)
            .transpose()?,
        start_ms: None,
        push,
    };
    let packed = if a.compare_run || a.test {
        Some(packed_root(&plan, a, single)?)
    } else {
        None
    };
    if let (Some(p), true) = (&packed, a.compare_run) {
        report.start_ms = Some(time_starts(p, a)?);
    }
    if !quiet {
        eprintln!(
            "elfpack: entrypoint {}; {}",
            entrypoint_text(&plan),
            report.text()
        );
    }
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else if let Some(p) = &report.push {
        // Like ko: the pushed reference on stdout, for scripts.
        println!("{}", p.pushed);
    }
    if let (Some(p), true) = (&packed, a.test) {
        // A --prefix bundle's settings, as `. PREFIX/etc/elfpack.env` gives them.
        let bundle_env: Vec<String> = match (&a.prefix, single) {
            (Some(_), None) => launch.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            _ => Vec::new(),
        };
        self_test(p, &plan, a, &bundle_env)?;
    }
    Ok(())
}

/// Several `--sysroot`s (`/` is this host): one image per system's machine
/// under one index, written with --oci and/or pushed with --push.
fn pack_platforms(a: &PackArgs) -> Result<()> {
    if a.sbom.is_some() {
        bail!(
            "--sbom describes one system's files: with several --sysroot, pack each platform on its own to get its SBOM"
        );
    }
    let tree_outputs = a.rootfs.is_some()
        || a.output.is_some()
        || a.prefix.is_some()
        || a.dockerfile.is_some()
        || a.test
        || a.compare.is_some();
    if tree_outputs || (a.oci.is_none() && a.push.is_none()) {
        bail!(
            "several --sysroot make one multi-platform image: give --oci IMAGE.tar and/or --push REF, and no tree, file, --prefix or --test"
        );
    }
    if let Some(o) = a.oci.as_ref().filter(|o| o.exists() && !a.force) {
        bail!("{}: exists (use --force to replace it)", o.display());
    }
    let registry = a
        .push
        .as_deref()
        .map(|r| emit::registry::Registry::new(r, a.insecure))
        .transpose()?;
    let mut plans = Vec::new();
    for root in &a.collect.sysroot {
        let host = std::fs::canonicalize(root).is_ok_and(|r| r == Path::new("/"));
        let sysroot = (!host).then_some(root.as_path());
        let (resolver, col, nsswitch) = collect_in(&a.programs, &a.collect, &a.args, sysroot)
            .with_context(|| format!("--sysroot {}", root.display()))?;
        warn_all(&col.warnings);
        let opts = RootfsOptions {
            install_to: a.install_to.clone(),
            scratch_etc: !a.no_etc,
            host_users: a.host_users,
            nsswitch,
            exclude: a.exclude.clone(),
            shared_runtime: true,
        };
        let mut plan = layout::rootfs_plan(&col, resolver.ld_cache(), &opts)?;
        if let Some(e) = &a.image.entrypoint {
            plan.entrypoint = vec![e.clone()];
        }
        if !a.no_package_metadata {
            let prov = provenance_of(&plan, false)?;
            crate::plan::package_metadata::add_metadata(&mut plan, &prov)?;
        }
        if plan.entrypoint.is_empty() {
            bail!(
                "{} programs packed: choose the one the image runs with --entrypoint PATH",
                a.programs.len()
            );
        }
        let platform = emit::oci::Platform::of(resolver.caps.machine)?;
        if plans.iter().any(|(_, p)| *p == platform) {
            bail!(
                "--sysroot {}: a second system for {:?}: one --sysroot per machine",
                root.display(),
                platform.architecture
            );
        }
        let (files, bytes) = plan.totals();
        eprintln!(
            "elfpack: {} {}: entrypoint {}; {files} files, {bytes} B",
            root.display(),
            platform.architecture,
            entrypoint_text(&plan)
        );
        plans.push((plan, platform));
    }
    let cfg = emit::oci::ImageConfig {
        tag: a
            .image
            .tag
            .clone()
            .unwrap_or_else(|| "elfpack:latest".into()),
        entrypoint: Vec::new(),
        cmd: a.image.cmd.clone(),
        env: a.image.env.clone(),
        user: a.image.user.clone(),
        workdir: a.image.workdir.clone(),
    };
    let refs: Vec<(&crate::plan::Plan, emit::oci::Platform)> =
        plans.iter().map(|(p, pl)| (p, pl.clone())).collect();
    let set = emit::oci::build(&refs, &cfg)?;
    use emit::oci::Destination as _;
    if let Some(o) = &a.oci {
        let digest = emit::oci::Archive {
            out: o.clone(),
            tag: cfg.tag.clone(),
            force: a.force,
        }
        .publish(&set)?;
        eprintln!("elfpack: OCI archive {}: index {digest}", o.display());
    }
    if let Some(mut r) = registry {
        r.publish(&set)?;
        let p = &r.stats;
        eprintln!(
            "elfpack: pushed {}: {} blob(s) uploaded ({} B), {} mounted, {} already there",
            p.pushed, p.uploaded, p.uploaded_bytes, p.mounted, p.present
        );
        if a.json {
            println!("{}", serde_json::json!({ "push": p }));
        } else {
            println!("{}", p.pushed);
        }
    }
    Ok(())
}

/// Options that would have no effect with the outputs chosen are refused,
/// with the reason, rather than silently ignored.
fn refuse_unused_options(a: &PackArgs, single: bool) -> Result<()> {
    let image_config = a.oci.is_some() || a.push.is_some() || a.dockerfile.is_some();
    if a.compress.is_some() && !single {
        bail!("--compress applies to a single file (-o FILE) only");
    }
    if a.image.tag.is_some() && a.oci.is_none() && a.push.is_none() {
        bail!("--tag names the image of --oci IMAGE.tar or --push; neither was given");
    }
    if a.no_package_metadata && single {
        bail!(
            "--no-package-metadata: a single file carries no package metadata (it is not an image); --sbom still describes it"
        );
    }
    for (set, name, single_why) in [
        (
            !a.image.cmd.is_empty(),
            "--cmd",
            "pass the arguments when running it",
        ),
        (a.image.user.is_some(), "--user", "run it as that user"),
        (
            a.image.workdir.is_some(),
            "--workdir",
            "start it in that directory",
        ),
    ] {
        if set && single {
            bail!("{name}: a single file has no image configuration to hold it; {single_why}");
        }
        if set && !image_config {
            bail!("{name} goes into an image configuration: add --oci IMAGE.tar or --dockerfile");
        }
    }
    if !a.image.env.is_empty() && !single && a.prefix.is_none() && !image_config && !a.test {
        bail!(
            "--env is set by a single file's launcher, a --prefix bundle's etc/elfpack.env or an image              configuration (--oci, --dockerfile); none was chosen"
        );
    }
    if a.host_users && a.no_etc {
        bail!(
            "--host-users ships the host's /etc/passwd and /etc/group, which --no-etc leaves out"
        );
    }
    if a.collect.nsswitch.is_some() && a.no_etc {
        bail!("--nsswitch ships an /etc/nsswitch.conf, which --no-etc leaves out");
    }
    if a.runs.is_some() && !a.compare_run {
        bail!("--runs counts the runs of --compare-run, which was not given");
    }
    Ok(())
}

/// A root holding just what was packed, and the command that runs it there:
/// the single file alone at `/NAME`, or the tree (the --rootfs output when
/// one was written, else a fresh copy).
struct PackedRoot {
    _tmp: Option<tempfile::TempDir>,
    root: PathBuf,
    argv: Vec<String>,
}

impl PackedRoot {
    /// Whether `root` is the user's output, which a test must not change.
    fn is_output(&self) -> bool {
        self._tmp.is_none()
    }
}

fn packed_root(
    plan: &crate::plan::Plan,
    a: &PackArgs,
    single: Option<&PathBuf>,
) -> Result<PackedRoot> {
    if let (Some(dir), None) = (&a.rootfs, single) {
        return Ok(PackedRoot {
            _tmp: None,
            root: dir.clone(),
            argv: plan.entrypoint.clone(),
        });
    }
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let root = tmp.path().join("root");
    let argv = match single {
        Some(file) => {
            let name = file.file_name().context("the single file has no name")?;
            std::fs::create_dir(&root)?;
            std::fs::copy(file, root.join(name))
                .with_context(|| format!("{}: cannot copy", file.display()))?;
            vec![format!("/{}", name.to_string_lossy())]
        }
        None => {
            emit::rootfs::write(plan, &root, false)?;
            plan.entrypoint.clone()
        }
    };
    Ok(PackedRoot {
        _tmp: Some(tmp),
        root,
        argv,
    })
}

/// Median start times of the packed program (chrooted into what was packed)
/// and of the static build, run the same way with the same arguments.
fn time_starts(packed: &PackedRoot, a: &PackArgs) -> Result<StartTimes> {
    let mut argv = packed.argv.clone();
    argv.extend(a.args.iter().cloned());
    let packed = measure::median_start(&argv, Some(&packed.root), a.runs.unwrap_or(20))?;
    let static_build = match &a.compare {
        Some(st) => {
            let mut argv = vec![std::path::absolute(st)?.display().to_string()];
            argv.extend(a.args.iter().cloned());
            Some(measure::median_start(&argv, None, a.runs.unwrap_or(20))?)
        }
        None => None,
    };
    Ok(StartTimes {
        runs: a.runs.unwrap_or(20),
        packed,
        static_build,
    })
}

/// Runs what was packed in an isolated root, as a container runtime would,
/// never writing into the output: on an overlay of it, or (where the kernel
/// refuses the overlay) on a fresh copy. `bundle_env`: a `--prefix`
/// bundle's settings, which include the `--env` values, resolved.
fn self_test(
    packed: &PackedRoot,
    plan: &crate::plan::Plan,
    a: &PackArgs,
    bundle_env: &[String],
) -> Result<()> {
    let mut argv = packed.argv.clone();
    argv.extend(a.image.cmd.iter().cloned());
    argv.extend(a.args.iter().cloned());
    let mut env = vec![format!("PATH={}", crate::emit::oci::DEFAULT_PATH)];
    if bundle_env.is_empty() {
        env.extend(a.image.env.iter().cloned());
    } else {
        env.extend(bundle_env.iter().cloned());
    }
    let who = a
        .test_user
        .as_deref()
        .or(a.image.user.as_deref())
        .map(|u| format!(" as user {u}"))
        .unwrap_or_default();
    eprintln!(
        "elfpack: --test: running {}{who} in an isolated root",
        argv.join(" ")
    );
    let mut opts = crate::selftest::Options {
        user: a.test_user.clone().or_else(|| a.image.user.clone()),
        overlay: packed.is_output(),
    };
    let code = match crate::selftest::run(&packed.root, &argv, &env, &opts) {
        Err(e) if e.downcast_ref::<crate::selftest::NoOverlay>().is_some() => {
            let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
            let copy = tmp.path().join("root");
            emit::rootfs::write(plan, &copy, false)?;
            opts.overlay = false;
            crate::selftest::run(&copy, &argv, &env, &opts)?
        }
        r => r?,
    };
    if code != 0 {
        bail!(
            "--test: {} exited with {code} in the isolated root",
            argv.join(" ")
        );
    }
    eprintln!("elfpack: --test: passed");
    Ok(())
}

/// `--entrypoint E` in a bundle under `prefix`: E's image path (absolute,
/// with or without the prefix) or the name of one of the packed programs.
fn bundle_entrypoint(
    plan: &crate::plan::Plan,
    col: &Collection,
    prefix: &Path,
    e: &str,
) -> Result<String> {
    let p = Path::new(e);
    let candidate = if p.is_absolute() {
        match p.strip_prefix(prefix) {
            Ok(_) => p.to_path_buf(),
            Err(_) => prefix.join(p.strip_prefix("/").unwrap_or(p)),
        }
    } else {
        let Some(prog) = col
            .programs
            .iter()
            .find(|pr| pr.path.file_name().is_some_and(|n| n == p.as_os_str()))
        else {
            bail!("--entrypoint {e}: not one of the packed programs (give its path)");
        };
        prefix.join(prog.path.strip_prefix("/").unwrap_or(&prog.path))
    };
    if plan.lookup(&candidate).is_none() {
        bail!("--entrypoint {e}: not in the bundle");
    }
    Ok(candidate.display().to_string())
}

/// Tells what a bundle's program will find through its environment, since
/// a bundle keeps run-time files under its own directory, not at their paths.
fn launch_note(
    launch: &crate::plan::bundle::Launch,
    single: bool,
    prefix: Option<&Path>,
) -> Option<String> {
    if launch.env.is_empty() {
        return None;
    }
    let vars: Vec<String> = launch.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Some(match (single, prefix) {
        (true, _) => format!(
            "elfpack: the launcher sets, unless already set: {} (${{ELFPACK_BUNDLE}}: where it unpacks)",
            vars.join(" ")
        ),
        (false, Some(p)) => format!(
            "elfpack: the bundle's programs need {}: `. {}/etc/elfpack.env` sets them",
            vars.join(" "),
            p.display()
        ),
        (false, None) => return None,
    })
}

fn entrypoint_text(plan: &crate::plan::Plan) -> String {
    let placeholder = crate::emit::single_file::placeholder_prefix();
    if let Some(inside) = plan
        .entrypoint
        .first()
        .and_then(|e| Path::new(e).strip_prefix(&placeholder).ok())
    {
        return format!("{} (inside the file)", inside.display());
    }
    if plan.entrypoint.is_empty() {
        "(none: several programs, see --entrypoint)".into()
    } else {
        plan.entrypoint.join(" ")
    }
}
