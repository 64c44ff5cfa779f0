//! How a bundle's program is started (a `--prefix` bundle's, or a single
//! file's): the environment that points its runtime at the bundle's files,
//! and for a `#!` script, the interpreter that runs it.
//!
//! A bundle keeps every file at its host path under its own directory
//! ([`crate::plan::prefix`]); a runtime that looks for its data at a path
//! compiled in (`/usr/share/zoneinfo`, perl's `@INC`, vim's runtime...) does
//! not find it there, so the program is told through the variables those
//! runtimes read, derived from what the bundle holds
//! ([`crate::plan::runtime_env`]). A single file's launcher sets them when the
//! user has not; a `--prefix` bundle writes them to `PREFIX/etc/elfpack.env`,
//! since nothing runs before its programs.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::collect::Collection;
use crate::plan::{Node, Plan};

/// What a single file's launcher replaces with the directory it unpacked
/// into (the bundle directory); usable in `--env` values of single files.
pub const BUNDLE_TOKEN: &str = "${ELFPACK_BUNDLE}";

/// How a bundle's program must be started to find its run-time files.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Environment defaults (NAME, VALUE), set only where the user has not
    /// set NAME; values start with the bundle's directory (the prefix, or
    /// [`BUNDLE_TOKEN`] in a single file).
    pub env: Vec<(String, String)>,
    /// For a `#!` script: what the kernel would run for it, with the
    /// bundled interpreter and script (the user's arguments follow).
    pub argv: Vec<String>,
}

/// Says how to launch the program of `plan` (a bundle under `prefix`, made
/// by [`crate::plan::prefix::bundle_plan`]). `base` is how the bundle
/// directory is written in the environment: the prefix itself, or
/// [`BUNDLE_TOKEN`] for a single file. `user_env` (`--env K=V`) is added to
/// the defaults, and wins over them. A `--prefix` bundle's script gets its
/// `#!` line pointed at the bundled interpreter.
pub fn launch(
    plan: &mut Plan,
    col: &Collection,
    prefix: &Path,
    base: &str,
    user_env: &[String],
) -> Result<Launch> {
    let mut launch = Launch {
        env: crate::plan::runtime_env::derive(plan, prefix, base),
        argv: Vec::new(),
    };
    if let [program] = col.programs.as_slice()
        && let Some(sb) = &program.shebang
    {
        launch.argv = script_launch(plan, col, program, sb, prefix, base)?;
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

/// Returns the argv a single file's launcher runs script `program` with; a
/// `--prefix` bundle gets the script with its `#!` line pointed at the
/// bundled interpreter instead.
fn script_launch(
    plan: &mut Plan,
    col: &Collection,
    program: &crate::collect::Program,
    sb: &crate::collect::script::Shebang,
    prefix: &Path,
    base: &str,
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
    let inside = |p: &Path| prefix.join(p.strip_prefix("/").unwrap_or(p));
    let (interp_real, _) = plan.lookup(&inside(interp)).with_context(|| {
        format!(
            "{}: its interpreter {} is not in the bundle",
            script.display(),
            interp.display()
        )
    })?;
    let interp_real = interp_real.clone();
    // The script where the plan put it (--install-to may have moved it).
    let entry = plan
        .entrypoint
        .first()
        .cloned()
        .unwrap_or_else(|| inside(script).display().to_string());
    let (script_real, node) = plan
        .lookup(Path::new(&entry))
        .with_context(|| format!("{}: the script is not in the bundle", script.display()))?;
    let (script_real, node) = (script_real.clone(), node.clone());
    let rel = |p: &Path| p.strip_prefix(prefix).unwrap_or(p).display().to_string();
    if base == BUNDLE_TOKEN {
        let mut argv = vec![format!("{base}/{}", rel(&interp_real))];
        argv.extend(args);
        argv.push(format!("{base}/{}", rel(&script_real)));
        plan.entrypoint = vec![interp_real.display().to_string()];
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
    let (bytes, mode) = match node {
        Node::Data { bytes, mode } => (bytes, mode),
        Node::File { src, mode, .. } => (
            std::fs::read(&src).with_context(|| format!("{}: cannot read", src.display()))?,
            mode,
        ),
        _ => bail!(
            "{}: the script is not a file in the bundle",
            script.display()
        ),
    };
    let body = bytes
        .iter()
        .position(|&b| b == b'\n')
        .map_or(&[][..], |n| &bytes[n..]);
    let mut line = format!("#!{}", interp_real.display());
    for a in &args {
        line.push(' ');
        line.push_str(a);
    }
    let mut new = line.into_bytes();
    new.extend_from_slice(body);
    plan.nodes
        .insert(script_real, Node::Data { bytes: new, mode });
    plan.entrypoint = vec![entry];
    Ok(Vec::new())
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
