//! Files a prefix bundle (and so a single file) needs at run time that are
//! not libraries: what `--trace`, `--add`, `--ca-certs`, `--tzdata` and
//! `--locale` bring, gconv modules, `#!` scripts.
//!
//! A tree ships them at their own absolute paths. A bundle cannot: it must
//! not touch the paths of the system it lands on, and a single file does
//! not even know its directory before it runs. So they live mirrored under
//! `PREFIX/root/PATH`, and the programs are told where through the
//! environment variables libc and the usual runtimes read (`SSL_CERT_FILE`,
//! `TZDIR`, `LOCPATH`, `GCONV_PATH`, `PYTHONHOME`), which [`Launch::env`]
//! lists. A single file's launcher sets them when the user has not; a
//! `--prefix` bundle writes them to `PREFIX/etc/elfpack.env`, since nothing
//! runs before its programs.
//!
//! Libraries that ELF files among the extras need go to `PREFIX/lib` like
//! every other library (the programs' DT_RPATH reaches them, also from
//! modules dlopen'd by path, since the executable's DT_RPATH applies to
//! every object without DT_RUNPATH); so extra ELF files lose their own
//! RPATH/RUNPATH, and extra ELF programs get the bundled loader and RPATH.
//! gconv modules are the exception: glibc opens them by path from
//! `GCONV_PATH`, and they find their helper libraries through
//! `RUNPATH=$ORIGIN`, so they stay together and unedited.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::collect::Collection;
use crate::collect::extras::{Extras, Item, Role, file_id};
use crate::collect::runtime::GCONV_DIR;
use crate::plan::prefix::file_name;
use crate::plan::{Node, Plan, relative_to};

/// What a single file's launcher replaces with the directory it unpacked
/// into (the bundle directory); usable in `--env` values of single files.
pub const BUNDLE_TOKEN: &str = "${ELFPACK_BUNDLE}";

/// CA bundles OpenSSL, GnuTLS and Go look for, first match wins.
const CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/usr/lib/ssl/cert.pem",
];

/// How a bundle's program must be started to find its run-time files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Environment defaults (NAME, VALUE), set only where the user has not
    /// set NAME; values start with the bundle's run-time directory (the
    /// prefix, or [`BUNDLE_TOKEN`] in a single file).
    pub env: Vec<(String, String)>,
    /// For a `#!` script: what the kernel would run for it, with the
    /// bundled interpreter and script (the user's arguments follow).
    pub argv: Vec<String>,
}

/// The mirror of the image's absolute paths inside the bundle.
pub fn root_dir(prefix: &Path) -> PathBuf {
    prefix.join("root")
}

/// Adds to `plan` (made by [`crate::plan::prefix::prefix_plan`] for `prefix`)
/// the run-time files of `col` and says how to launch its program. `base`
/// is how the bundle directory is written in the environment: the prefix
/// itself, or [`BUNDLE_TOKEN`] for a single file. `user_env` (`--env K=V`)
/// is added to the defaults, and wins over them.
pub fn add_run_time_files(
    plan: &mut Plan,
    col: &Collection,
    prefix: &Path,
    base: &str,
    user_env: &[String],
) -> Result<Launch> {
    let root = root_dir(prefix);
    let lib = prefix.join("lib");
    // Files already in bin/ or lib/: the trace sees the program itself under
    // other names (python3 -> python3.11), which need no second copy.
    let in_bundle: HashSet<(u64, u64)> = col
        .closures
        .iter()
        .flat_map(|c| &c.objects)
        .filter(|o| !o.path.starts_with(GCONV_DIR))
        .filter_map(|o| file_id(&o.path))
        .collect();

    let mut tree = Plan::default();
    for f in &col.data_files {
        tree.add_host_path(f)?;
    }
    // gconv modules of the closures: opened by path from GCONV_PATH.
    for o in col.closures.iter().flat_map(|c| &c.objects) {
        if o.path.starts_with(GCONV_DIR) {
            tree.add_host_path(&o.path)?;
        }
    }
    let mut data = Extras::default();
    for a in &col.extras.added {
        match (&a.role, &a.item) {
            (Role::Baseline, _) => {}
            (Role::Library(_), Item::HostPath(p)) if p.starts_with(GCONV_DIR) => {
                data.added.push(a.clone())
            }
            (Role::Library(name), Item::HostPath(p)) => {
                let bytes =
                    std::fs::read(p).with_context(|| format!("{}: cannot read", p.display()))?;
                let bytes = match crate::elf::parse(&bytes) {
                    Ok(info) => crate::plan::prefix::without_rpath(bytes, &info, p)?,
                    Err(_) => bytes,
                };
                crate::plan::prefix::add_unique(plan, &lib.join(name), bytes, 0o755, p)
                    .with_context(|| format!("{} ({})", a.source, a.why))?;
            }
            (_, Item::HostPath(p))
                if std::fs::metadata(p).is_ok_and(|m| m.is_file())
                    && file_id(p).is_some_and(|id| in_bundle.contains(&id)) => {}
            _ => data.added.push(a.clone()),
        }
    }
    crate::plan::extras::place(&mut tree, &data)?;
    if !tree.nodes.is_empty() {
        plan.add_dir(&root, 0o755)?;
    }
    for (path, node) in &tree.nodes {
        let dest = root.join(path.strip_prefix("/").unwrap_or(path));
        let node = match node {
            Node::File { src, mode, .. } => {
                let bytes = std::fs::read(src)
                    .with_context(|| format!("{}: cannot read", src.display()))?;
                Node::Data {
                    bytes: fix_elf(bytes, path, &lib)?,
                    mode: *mode,
                }
            }
            other => other.clone(),
        };
        plan.insert(&dest, node)?;
    }

    let mut launch = Launch {
        env: run_time_env(plan, &root, base),
        argv: Vec::new(),
    };
    if let [program] = col.programs.as_slice()
        && let Some(sb) = &program.shebang
    {
        launch.argv = script_launch(plan, col, program, sb, prefix, base, &tree)?;
    }
    for kv in user_env {
        let (k, v) = env_var(kv)?;
        launch.env.retain(|(name, _)| name != k);
        let v = if base == BUNDLE_TOKEN {
            v.to_string()
        } else {
            v.replace(BUNDLE_TOKEN, base)
        };
        launch.env.push((k.to_string(), v));
    }
    Ok(launch)
}

/// The variables that point libc and runtimes at files in `root`.
fn run_time_env(plan: &Plan, root: &Path, base: &str) -> Vec<(String, String)> {
    let in_root = |p: &str| root.join(p.trim_start_matches('/'));
    let node = |p: &str| plan.lookup(&in_root(p)).map(|(_, n)| n.clone());
    let is_dir = |p: &str| matches!(node(p), Some(Node::Dir { .. }));
    let at = |p: &str| format!("{base}/root{p}");
    let mut env = Vec::new();
    if let Some(f) = CA_FILES
        .iter()
        .find(|f| matches!(node(f), Some(Node::Data { .. } | Node::File { .. })))
    {
        env.push(("SSL_CERT_FILE".to_string(), at(f)));
    }
    if is_dir("/usr/share/zoneinfo") {
        env.push(("TZDIR".into(), at("/usr/share/zoneinfo")));
    }
    // LOCPATH holds locale directories; glibc then ignores any archive.
    let locales = in_root("/usr/lib/locale");
    if plan
        .nodes
        .iter()
        .any(|(p, n)| matches!(n, Node::Dir { .. }) && p.parent() == Some(&locales))
    {
        env.push(("LOCPATH".into(), at("/usr/lib/locale")));
    }
    if ["gconv-modules", "gconv-modules.cache"]
        .iter()
        .any(|f| node(&format!("{GCONV_DIR}/{f}")).is_some())
    {
        env.push(("GCONV_PATH".into(), at(GCONV_DIR)));
    }
    // A Python standard library: HOME/lib/pythonX.Y/os.py.
    for p in plan.nodes.keys() {
        let Ok(rel) = p.strip_prefix(root) else {
            continue;
        };
        let is_stdlib = rel.file_name().is_some_and(|f| f == "os.py")
            && rel
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|d| d.to_string_lossy().starts_with("python3"))
            && rel
                .parent()
                .and_then(Path::parent)
                .and_then(Path::file_name)
                .is_some_and(|d| d == "lib");
        if let Some(home) = rel.ancestors().nth(3).filter(|_| is_stdlib) {
            env.push((
                "PYTHONHOME".into(),
                at(&Path::new("/").join(home).display().to_string()),
            ));
            break;
        }
    }
    env
}

/// Places script `program` (already in `tree` at its host path) and returns
/// the argv a single file's launcher runs it with; a `--prefix` bundle gets
/// the script with its `#!` line pointed at the bundled interpreter instead,
/// and `PREFIX/bin/NAME` linking to it.
fn script_launch(
    plan: &mut Plan,
    col: &Collection,
    program: &crate::collect::Program,
    sb: &crate::collect::script::Shebang,
    prefix: &Path,
    base: &str,
    tree: &Plan,
) -> Result<Vec<String>> {
    let script = &program.path;
    // `#!/usr/bin/env NAME` would search PATH, where the bundle is not:
    // run NAME directly, with the words -S splits off.
    let (interp, args): (&Path, Vec<String>) = match &sb.env_target {
        Some(t) => {
            let words: Vec<&str> = sb.arg.split_whitespace().collect();
            let split = words
                .iter()
                .any(|w| w.starts_with("-S") || *w == "--split-string");
            let rest = words
                .iter()
                .skip_while(|w| w.starts_with('-') || w.contains('='))
                .skip(1);
            (
                t,
                if split {
                    rest.map(|w| w.to_string()).collect()
                } else {
                    vec![]
                },
            )
        }
        None if sb.arg.is_empty() => (&sb.interpreter, vec![]),
        None => (&sb.interpreter, vec![sb.arg.clone()]),
    };
    if !col.closures.iter().any(|c| c.program().path == interp) {
        bail!(
            "{}: its #! interpreter {} is not an ELF program (a script as interpreter): \
             use --rootfs, --oci or -o NAME.tar",
            script.display(),
            interp.display()
        );
    }
    let interp_bin = prefix.join("bin").join(file_name(interp)?);
    // The script's real path in the tree (its symlinks are in the tree too).
    let (real, _) = tree
        .lookup(script)
        .with_context(|| format!("{}: the script is not in the bundle", script.display()))?;
    let in_root = root_dir(prefix).join(real.strip_prefix("/").unwrap_or(real));
    if base == BUNDLE_TOKEN {
        let mut argv = vec![format!("{base}/bin/{}", file_name(interp)?)];
        argv.extend(args);
        argv.push(format!("{base}/root{}", real.display()));
        plan.entrypoint = vec![interp_bin.display().to_string()];
        return Ok(argv);
    }
    if args.len() > 1 {
        bail!(
            "{}: #!{} {}: the kernel passes one argument; cannot rewrite it for --prefix",
            script.display(),
            sb.interpreter.display(),
            sb.arg
        );
    }
    let Some(Node::Data { bytes, mode }) = plan.nodes.get(&in_root).cloned() else {
        bail!("{}: the script is not in the bundle", script.display());
    };
    let body = bytes
        .iter()
        .position(|&b| b == b'\n')
        .map_or(&[][..], |n| &bytes[n..]);
    let mut line = format!("#!{}", interp_bin.display());
    for a in &args {
        line.push(' ');
        line.push_str(a);
    }
    let mut new = line.into_bytes();
    new.extend_from_slice(body);
    plan.nodes
        .insert(in_root.clone(), Node::Data { bytes: new, mode });
    let link = prefix.join("bin").join(file_name(script)?);
    plan.insert(
        &link,
        Node::Symlink {
            target: relative_to(&prefix.join("bin"), &in_root),
        },
    )?;
    plan.entrypoint = vec![link.display().to_string()];
    Ok(Vec::new())
}

/// Points an ELF program among the extras at the bundled loader and lib
/// dir, and strips other ELF files' RPATH/RUNPATH so their libraries are
/// looked up in the bundle; gconv modules stay as they are.
fn fix_elf(bytes: Vec<u8>, image_path: &Path, lib: &Path) -> Result<Vec<u8>> {
    if !bytes.starts_with(crate::elf::MAGIC) || image_path.starts_with(GCONV_DIR) {
        return Ok(bytes);
    }
    let Ok(info) = crate::elf::parse(&bytes) else {
        return Ok(bytes);
    };
    match &info.interpreter {
        Some(i) => {
            let loader = Path::new(Path::new(i).file_name().unwrap_or_default());
            crate::plan::prefix::to_bundled_loader(&bytes, loader, lib, image_path)
        }
        None => crate::plan::prefix::without_rpath(bytes, &info, image_path),
    }
}

/// Splits a `--env NAME=VALUE`, NAME being a portable variable name
/// (`[A-Za-z_][A-Za-z0-9_]*`): anything else could not be set by a shell
/// (and, written into `etc/elfpack.env`, would be shell code).
pub fn env_var(spec: &str) -> Result<(&str, &str)> {
    let Some((k, v)) = spec.split_once('=') else {
        bail!("--env {spec:?}: expected NAME=VALUE");
    };
    if !valid_env_name(k) {
        bail!(
            "--env {spec:?}: {k:?} is not a variable name (letters, digits and _, not starting with a digit)"
        );
    }
    Ok((k, v))
}

pub fn valid_env_name(k: &str) -> bool {
    let mut b = k.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// `PREFIX/etc/elfpack.env` for a `--prefix` bundle: POSIX shell that sets
/// each variable unless it is set (`. PREFIX/etc/elfpack.env`).
pub fn env_file(launch: &Launch) -> String {
    let mut out = String::from(
        "# Run-time settings of this elfpack bundle: `. THIS_FILE` before running its programs.\n",
    );
    // Names are checked where they come in (`env_var`); one that is not a
    // name never reaches the shell.
    for (k, v) in launch.env.iter().filter(|(k, _)| valid_env_name(k)) {
        let quoted = v.replace('\'', "'\\''");
        out.push_str(&format!(
            "[ -n \"${{{k}+x}}\" ] || {{ {k}='{quoted}'; export {k}; }}\n"
        ));
    }
    out
}
