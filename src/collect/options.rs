//! What the user asked the collect stage for: the programs and the options
//! that decide what ships beside their ELF closures. Kept apart from the
//! stage's code so every part of it can read them without importing another.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::collect::runtime::Gconv;
use crate::collect::script;
use crate::collect::trace;

#[derive(Debug, Clone)]
pub struct Options {
    /// The nsswitch.conf that will ship (decides which NSS modules load).
    pub nsswitch: String,
    pub gconv: Gconv,
    /// PATH used to resolve `#!/usr/bin/env NAME`.
    pub search_path: String,
    /// --trace, --add, --ca-certs, --tzdata, --locale (see crate::collect::extras).
    pub extras: ExtraOptions,
}

/// One program named on the command line.
#[derive(Debug, Clone)]
pub struct Program {
    /// Absolute path as given (symlinks kept, so /usr/bin/python3 stays python3).
    pub path: PathBuf,
    /// Its `#!` line, for scripts.
    pub shebang: Option<script::Shebang>,
}

/// The command-line flags (flattened into the shared collect options).
#[derive(clap::Args, Debug, Clone, Default)]
#[command(group(clap::ArgGroup::new("tracing").multiple(true)))]
pub struct ExtraArgs {
    /// Run each program once here under ptrace and also ship every existing file it opens, stats
    /// or runs (and the libraries of ELF files among them), and the directories it writes in.
    #[arg(long, group = "tracing")]
    pub trace: bool,
    /// A traced run of its own, instead of the default ones (repeatable; implies --trace): a
    /// command line split like a shell's (quotes, no expansion), e.g. 'nginx -t' or
    /// '/bin/sh -c "prog --init"'. Its first word is a packed program's file name, a path or a name on PATH.
    #[arg(long, value_name = "'PROG ARGS...'", group = "tracing")]
    pub trace_run: Vec<String>,
    /// An argument for the traced runs of the default ones (repeatable; or give them after `--`).
    #[arg(
        long = "trace-arg",
        value_name = "ARG",
        allow_hyphen_values = true,
        requires = "trace"
    )]
    pub trace_arg: Vec<OsString>,
    /// Standard input of the traced runs (default: /dev/null).
    #[arg(long, value_name = "FILE", requires = "tracing")]
    pub trace_stdin: Option<PathBuf>,
    /// Seconds each traced run may take.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub trace_timeout: u64,
    /// Use a traced run even if it exits non-zero or is killed by a signal.
    #[arg(long, requires = "tracing")]
    pub trace_allow_fail: bool,
    /// Run the traced runs as this user of the build machine (name or uid), e.g. for programs that
    /// refuse to run as root; needs root.
    #[arg(long, value_name = "NAME|UID", requires = "tracing")]
    pub trace_user: Option<String>,
    /// Ship a file, directory (recursively) or glob; at DEST in the image instead of its own path.
    #[arg(long, value_name = "SRC[:DEST]")]
    pub add: Vec<String>,
    /// Ship a CA bundle where OpenSSL, GnuTLS and Go look by default
    /// (/etc/ssl/certs/ca-certificates.crt, /usr/lib/ssl/cert.pem): the host's, or FILE with
    /// --ca-certs=FILE. SSL_CERT_FILE / SSL_CERT_DIR still override it at run time.
    #[arg(long, value_name = "FILE", num_args = 0..=1, require_equals = true)]
    pub ca_certs: Option<Option<PathBuf>>,
    /// Ship the time zone database (/usr/share/zoneinfo) for TZ=Area/City.
    #[arg(long)]
    pub tzdata: bool,
    /// Ship a compiled locale, e.g. C.UTF-8 (repeatable).
    #[arg(long, value_name = "NAME")]
    pub locale: Vec<String>,
    /// Do not ship the run-time files of the programs' Debian packages (README "Package data").
    #[arg(long)]
    pub no_package_data: bool,
    /// Also ship the run-time files of this installed Debian package (repeatable).
    #[arg(long, value_name = "NAME")]
    pub package: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ExtraOptions {
    pub trace: Option<trace::Options>,
    /// `SRC[:DEST]` specs.
    pub add: Vec<String>,
    /// `Some(None)`: the host's bundle.
    pub ca_certs: Option<Option<PathBuf>>,
    pub tzdata: bool,
    pub locales: Vec<String>,
    /// Package data for the programs (README "Package data").
    pub package_data: bool,
    /// `--package` names.
    pub packages: Vec<String>,
}

impl ExtraArgs {
    /// Whether any of these options was given.
    pub fn any(&self) -> bool {
        self.trace
            || !self.trace_run.is_empty()
            || !self.add.is_empty()
            || self.ca_certs.is_some()
            || self.tzdata
            || !self.locale.is_empty()
            || !self.package.is_empty()
    }

    /// `trailing`: the command line's `-- ARGS`, which the default traced
    /// runs get after the --trace-arg ones.
    pub fn options(&self, trailing: &[String]) -> Result<ExtraOptions> {
        let runs = self
            .trace_run
            .iter()
            .map(|line| match shlex::split(line) {
                Some(words) if !words.is_empty() => {
                    Ok(words.into_iter().map(OsString::from).collect())
                }
                Some(_) => bail!("--trace-run '{line}': empty command line"),
                None => bail!("--trace-run '{line}': unbalanced quotes"),
            })
            .collect::<Result<Vec<Vec<OsString>>>>()?;
        Ok(ExtraOptions {
            trace: (self.trace || !runs.is_empty()).then(|| trace::Options {
                runs,
                args: self
                    .trace_arg
                    .iter()
                    .cloned()
                    .chain(trailing.iter().map(OsString::from))
                    .collect(),
                stdin: self.trace_stdin.clone(),
                timeout: Duration::from_secs(self.trace_timeout),
                allow_fail: self.trace_allow_fail,
                user: self.trace_user.clone(),
            }),
            add: self.add.clone(),
            ca_certs: self.ca_certs.clone(),
            tzdata: self.tzdata,
            locales: self.locale.clone(),
            package_data: !self.no_package_data,
            packages: self.package.clone(),
        })
    }
}
