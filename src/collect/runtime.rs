//! What glibc itself loads after start-up, which no DT_NEEDED names:
//! libgcc_s (unwinding for pthread_cancel/pthread_exit), NSS service modules
//! and gconv charset modules.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::loader::resolve::{Closure, Resolver};

/// NSS sources glibc 2.36 has built in: they need no module.
const BUILTIN_NSS: &[&str] = &["files", "dns"];
pub const GCONV_DIR: &str = "/usr/lib/x86_64-linux-gnu/gconv";

/// Which gconv modules to ship.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Gconv {
    #[default]
    None,
    All,
    /// Charset names as iconv takes them (`EUC-JP`, `latin1`...).
    Named(Vec<String>),
}

impl std::str::FromStr for Gconv {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "none" => Gconv::None,
            "all" => Gconv::All,
            list => Gconv::Named(
                list.split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect(),
            ),
        })
    }
}

/// Adds libc's run-time loads to `closure`; returns the plain data files that
/// must ship with them (gconv configuration).
pub fn add_runtime_loads(
    resolver: &mut Resolver,
    closure: &mut Closure,
    nsswitch: &str,
    gconv: &Gconv,
) -> Result<Vec<PathBuf>> {
    if closure.index_of_soname("libc.so.6").is_none() {
        return Ok(Vec::new());
    }
    let why = "libc dlopens it for pthread_cancel, pthread_exit and C++ unwinding through C";
    if resolver
        .map_runtime(closure, "libgcc_s.so.1", why)?
        .is_none()
    {
        closure.warnings.push(
            "libgcc_s.so.1 is not installed here: pthread_cancel and pthread_exit will abort in the result".into(),
        );
    }
    for service in nss_services(nsswitch) {
        let module = format!("libnss_{service}.so.2");
        let why = format!("NSS module for the '{service}' source in nsswitch.conf");
        if resolver.map_runtime(closure, &module, &why)?.is_none() {
            closure.warnings.push(format!(
                "nsswitch.conf names '{service}' but {module} is not installed; glibc will skip it"
            ));
        }
    }
    let data = match gconv {
        Gconv::None => {
            if let Some(w) = gconv_warning(closure, Path::new(GCONV_DIR)) {
                closure.warnings.push(w);
            }
            Vec::new()
        }
        _ => add_gconv(resolver, closure, Path::new(GCONV_DIR), gconv)?,
    };
    Ok(data)
}

/// The warning for a program that ships without gconv modules, when they
/// can matter: only when the program's own code calls `iconv_open`. Such a
/// program converts charsets it is told (`iconv -t`, git's
/// `i18n.commitEncoding`, vim's `fileencoding`), and everything but glibc's
/// built-in charsets fails in the image. Libraries that import it
/// (libstdc++'s codecvt, libunistring and libidn2 under curl, libxml2...)
/// convert between UTF-8 and the locale's charset, which is ASCII or UTF-8
/// in an image: built in, so they get no warning (a warning on 13 of 24
/// real programs that never convert anything taught users to ignore it).
fn gconv_warning(closure: &Closure, dir: &Path) -> Option<String> {
    let program = closure.program();
    if !program.info.imports_iconv {
        return None;
    }
    let all: u64 = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    Some(format!(
        "{} calls iconv_open: without gconv modules it converts only between UTF-8, ASCII, UCS-2/4 and \
         UTF-16/32; if it must convert other charsets, add --gconv CHARSET,... (e.g. --gconv ISO-8859-15,CP1252: \
         just those modules) or --gconv all ({:.1} MB)",
        program.path.display(),
        all as f64 / 1e6
    ))
}

/// Sources named in nsswitch.conf that libc would dlopen, in first-seen order.
pub fn nss_services(nsswitch: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for line in nsswitch.lines() {
        let line = line.split('#').next().unwrap_or("");
        let Some((_, sources)) = line.split_once(':') else {
            continue;
        };
        let mut in_action = false;
        for tok in sources.split_whitespace() {
            // Skip `[NOTFOUND=return]` style actions, possibly split by spaces.
            if tok.starts_with('[') {
                in_action = !tok.ends_with(']');
                continue;
            }
            if in_action {
                in_action = !tok.ends_with(']');
                continue;
            }
            if !BUILTIN_NSS.contains(&tok) && !seen.iter().any(|s: &String| s == tok) {
                seen.push(tok.to_string());
            }
        }
    }
    seen
}

fn add_gconv(
    resolver: &mut Resolver,
    closure: &mut Closure,
    dir: &Path,
    which: &Gconv,
) -> Result<Vec<PathBuf>> {
    let mut configs: Vec<PathBuf> =
        vec![dir.join("gconv-modules"), dir.join("gconv-modules.cache")];
    let conf_d = dir.join("gconv-modules.d");
    if let Ok(rd) = std::fs::read_dir(&conf_d) {
        configs.extend(
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "conf")),
        );
    }
    configs.retain(|p| p.exists());
    configs.sort();
    let modules: BTreeSet<String> = match which {
        Gconv::None => BTreeSet::new(),
        Gconv::All => std::fs::read_dir(dir)
            .with_context(|| format!("{}: cannot list gconv modules", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".so"))
            .collect(),
        Gconv::Named(names) => {
            let mut text = String::new();
            for c in configs
                .iter()
                .filter(|p| !p.to_string_lossy().ends_with(".cache"))
            {
                text.push_str(
                    &std::fs::read_to_string(c)
                        .with_context(|| format!("{}: cannot read", c.display()))?,
                );
                text.push('\n');
            }
            let mut set = BTreeSet::new();
            for name in names {
                let found = gconv_modules_for(&text, name);
                if found.is_empty() {
                    anyhow::bail!(
                        "--gconv: no gconv module converts {name} (see {}/gconv-modules)",
                        dir.display()
                    );
                }
                set.extend(found);
            }
            set
        }
    };
    for m in modules {
        let path = dir.join(&m);
        resolver
            .map_runtime(
                closure,
                &path.to_string_lossy(),
                "gconv module loaded by iconv_open",
            )
            .with_context(|| format!("gconv module {}", path.display()))?;
    }
    Ok(configs)
}

/// The module files (`NAME.so`) that convert `charset` to or from INTERNAL,
/// following `alias` lines of gconv-modules.
fn gconv_modules_for(config: &str, charset: &str) -> Vec<String> {
    let norm = |s: &str| {
        let s = s.to_ascii_uppercase();
        if s.ends_with("//") {
            s
        } else {
            format!("{s}//")
        }
    };
    let mut want = norm(charset);
    for line in config.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 3 && f[0] == "alias" && norm(f[1]) == want {
            want = norm(f[2]);
            break;
        }
    }
    let mut out = Vec::new();
    for line in config.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 4 && f[0] == "module" && (norm(f[1]) == want || norm(f[2]) == want) {
            let file = format!("{}.so", f[3]);
            if !out.contains(&file) {
                out.push(file);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nss_sources_skip_builtins_and_actions() {
        let conf = "passwd: files systemd\n# hosts: nis\nhosts: files [NOTFOUND=return] mdns4_minimal [ NOTFOUND=return ] dns\nnetgroup: nis\n";
        assert_eq!(nss_services(conf), vec!["systemd", "mdns4_minimal", "nis"]);
        assert!(nss_services("passwd: files\nhosts: files dns\n").is_empty());
    }

    #[test]
    fn gconv_alias_leads_to_module() {
        let conf = "alias\tEUCJP//\tEUC-JP//\nmodule\tEUC-JP//\tINTERNAL\tEUC-JP\t1\nmodule\tINTERNAL\tEUC-JP//\tEUC-JP\t1\n";
        assert_eq!(gconv_modules_for(conf, "eucjp"), vec!["EUC-JP.so"]);
        assert!(gconv_modules_for(conf, "KOI8-R").is_empty());
    }
}
