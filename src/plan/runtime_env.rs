//! The variables that point a program's runtime at a bundle's files.
//!
//! Runtimes look for their data at absolute paths compiled in
//! (`/usr/share/zoneinfo`, perl's `@INC`, `/usr/share/vim/vim90`...). In a
//! bundle those files sit under the bundle's directory instead, so each
//! runtime that has an override variable is given one. The variables are
//! derived from what the bundle holds, never from program names: a rule
//! fires when a path it names ships (so the rules also serve a library such
//! as libmagic or ImageMagick's whatever program links it). The table is
//! documented in `docs/runtime-env.md`; a test keeps the two in step.

use std::path::{Path, PathBuf};

use crate::plan::{Node, Plan};

/// What a matched path must be.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Dir,
    File,
}

/// How many matches the value holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Join {
    /// The first match, in the order of the patterns.
    First,
    /// Every match, `:`-separated, in the order of the patterns.
    All,
}

/// One variable: the image paths (globs; `*` stays within a component)
/// whose presence sets it, and how the value is made from them.
struct Rule {
    var: &'static str,
    want: Want,
    patterns: &'static [&'static str],
    join: Join,
    /// How many directories up from the match the value points (1: the
    /// match's parent).
    up: usize,
}

const fn rule(
    var: &'static str,
    want: Want,
    patterns: &'static [&'static str],
    join: Join,
    up: usize,
) -> Rule {
    Rule {
        var,
        want,
        patterns,
        join,
        up,
    }
}

use Join::{All, First};
use Want::{Dir, File};

/// The table (docs/runtime-env.md explains each line).
const RULES: &[Rule] = &[
    // libc and the TLS libraries.
    rule(
        "SSL_CERT_FILE",
        File,
        &[
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pki/tls/certs/ca-bundle.crt",
            "/etc/ssl/cert.pem",
            "/usr/lib/ssl/cert.pem",
        ],
        First,
        0,
    ),
    rule("TZDIR", Dir, &["/usr/share/zoneinfo"], First, 0),
    // LOCPATH holds locale directories; glibc then ignores any archive.
    rule("LOCPATH", Dir, &["/usr/lib/locale/*"], First, 1),
    rule(
        "GCONV_PATH",
        File,
        &[
            "/usr/lib/x86_64-linux-gnu/gconv/gconv-modules",
            "/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache",
        ],
        First,
        1,
    ),
    rule(
        "OPENSSL_CONF",
        File,
        &["/usr/lib/ssl/openssl.cnf", "/etc/ssl/openssl.cnf"],
        First,
        0,
    ),
    rule(
        "OPENSSL_MODULES",
        Dir,
        &["/usr/lib/x86_64-linux-gnu/ossl-modules"],
        First,
        0,
    ),
    rule(
        "OPENSSL_ENGINES",
        Dir,
        &["/usr/lib/x86_64-linux-gnu/engines-3"],
        First,
        0,
    ),
    // Interpreters.
    rule(
        "PYTHONHOME",
        File,
        &[
            "/usr/lib/python3*/os.py",
            "/usr/local/lib/python3*/os.py",
            "/opt/**/lib/python3*/os.py",
        ],
        First,
        3,
    ),
    // Debian's perl @INC, in perl's order.
    rule(
        "PERL5LIB",
        Dir,
        &[
            "/etc/perl",
            "/usr/local/lib/x86_64-linux-gnu/perl/5.*",
            "/usr/local/share/perl/5.*",
            "/usr/lib/x86_64-linux-gnu/perl5/5.*",
            "/usr/share/perl5",
            "/usr/lib/x86_64-linux-gnu/perl-base",
            "/usr/lib/x86_64-linux-gnu/perl/5.*",
            "/usr/share/perl/5.*",
            "/usr/local/lib/site_perl",
        ],
        All,
        0,
    ),
    // Debian's ruby $LOAD_PATH, in ruby's order.
    rule(
        "RUBYLIB",
        Dir,
        &[
            "/usr/local/lib/site_ruby/3.*",
            "/usr/local/lib/x86_64-linux-gnu/site_ruby",
            "/usr/local/lib/site_ruby",
            "/usr/lib/ruby/vendor_ruby/3.*",
            "/usr/lib/x86_64-linux-gnu/ruby/vendor_ruby/3.*",
            "/usr/lib/ruby/vendor_ruby",
            "/usr/lib/ruby/3.*",
            "/usr/lib/x86_64-linux-gnu/ruby/3.*",
        ],
        All,
        0,
    ),
    rule(
        "GEM_PATH",
        Dir,
        &[
            "/var/lib/gems/3.*",
            "/usr/local/lib/ruby/gems/3.*",
            "/usr/lib/ruby/gems/3.*",
            "/usr/lib/x86_64-linux-gnu/ruby/gems/3.*",
            "/usr/share/rubygems-integration/3.*",
            "/usr/share/rubygems-integration/all",
            "/usr/lib/x86_64-linux-gnu/rubygems-integration/3.*",
        ],
        All,
        0,
    ),
    rule(
        "TCL_LIBRARY",
        File,
        &["/usr/share/tcltk/tcl8.*/init.tcl"],
        First,
        1,
    ),
    rule(
        "TK_LIBRARY",
        File,
        &["/usr/share/tcltk/tk8.*/tk.tcl"],
        First,
        1,
    ),
    rule(
        "GUILE_LOAD_PATH",
        Dir,
        &["/usr/share/guile/3.*", "/usr/share/guile/site/3.*"],
        All,
        0,
    ),
    rule(
        "GUILE_LOAD_COMPILED_PATH",
        Dir,
        &[
            "/usr/lib/x86_64-linux-gnu/guile/3.*/ccache",
            "/usr/lib/x86_64-linux-gnu/guile/3.*/site-ccache",
        ],
        All,
        0,
    ),
    rule(
        "NODE_PATH",
        Dir,
        &[
            "/usr/local/lib/node_modules",
            "/usr/lib/x86_64-linux-gnu/nodejs",
            "/usr/share/nodejs",
            "/usr/lib/nodejs",
        ],
        All,
        0,
    ),
    rule(
        "AWKPATH",
        Dir,
        &["/usr/local/share/awk", "/usr/share/awk"],
        All,
        0,
    ),
    rule(
        "AWKLIBPATH",
        Dir,
        &["/usr/lib/x86_64-linux-gnu/gawk"],
        First,
        0,
    ),
    // Programs and libraries with data or plug-in directories.
    rule("VIMRUNTIME", Dir, &["/usr/share/vim/vim[0-9]*"], First, 0),
    rule("VIM", Dir, &["/usr/share/vim/vim[0-9]*"], First, 1),
    rule(
        "TERMINFO_DIRS",
        Dir,
        &[
            "/etc/terminfo",
            "/lib/terminfo",
            "/usr/lib/terminfo",
            "/usr/share/terminfo",
        ],
        All,
        0,
    ),
    rule(
        "MAGIC",
        File,
        &["/usr/share/misc/magic.mgc", "/usr/lib/file/magic.mgc"],
        First,
        0,
    ),
    rule(
        "MAGICK_CONFIGURE_PATH",
        Dir,
        &[
            "/etc/ImageMagick-*",
            "/usr/lib/x86_64-linux-gnu/ImageMagick-*/config-Q*",
            "/usr/share/ImageMagick-*",
        ],
        All,
        0,
    ),
    rule(
        "MAGICK_CODER_MODULE_PATH",
        Dir,
        &["/usr/lib/x86_64-linux-gnu/ImageMagick-*/modules-Q*/coders"],
        First,
        0,
    ),
    rule(
        "MAGICK_CODER_FILTER_PATH",
        Dir,
        &["/usr/lib/x86_64-linux-gnu/ImageMagick-*/modules-Q*/filters"],
        First,
        0,
    ),
    rule(
        "GVBINDIR",
        Dir,
        &["/usr/lib/x86_64-linux-gnu/graphviz"],
        First,
        0,
    ),
    // espeak-ng reads $ESPEAK_DATA_PATH/espeak-ng-data.
    rule(
        "ESPEAK_DATA_PATH",
        Dir,
        &[
            "/usr/lib/x86_64-linux-gnu/espeak-ng-data",
            "/usr/share/espeak-ng-data",
        ],
        First,
        1,
    ),
    rule("GIT_EXEC_PATH", Dir, &["/usr/lib/git-core"], First, 0),
    rule(
        "GIT_TEMPLATE_DIR",
        Dir,
        &["/usr/share/git-core/templates"],
        First,
        0,
    ),
    rule(
        "TESSDATA_PREFIX",
        Dir,
        &["/usr/share/tesseract-ocr/*/tessdata"],
        First,
        0,
    ),
    rule("PROJ_DATA", Dir, &["/usr/share/proj"], First, 0),
    rule("PROJ_LIB", Dir, &["/usr/share/proj"], First, 0),
    rule("GDAL_DATA", Dir, &["/usr/share/gdal"], First, 0),
    rule("FONTCONFIG_PATH", Dir, &["/etc/fonts"], First, 0),
    rule(
        "GDK_PIXBUF_MODULEDIR",
        Dir,
        &["/usr/lib/x86_64-linux-gnu/gdk-pixbuf-2.0/2.10.0/loaders"],
        First,
        0,
    ),
    rule(
        "GIO_MODULE_DIR",
        Dir,
        &["/usr/lib/x86_64-linux-gnu/gio/modules"],
        First,
        0,
    ),
    rule(
        "GSETTINGS_SCHEMA_DIR",
        Dir,
        &["/usr/share/glib-2.0/schemas"],
        First,
        0,
    ),
    rule(
        "GST_PLUGIN_SYSTEM_PATH_1_0",
        Dir,
        &["/usr/lib/x86_64-linux-gnu/gstreamer-1.0"],
        First,
        0,
    ),
    rule(
        "QT_PLUGIN_PATH",
        Dir,
        &[
            "/usr/lib/x86_64-linux-gnu/qt6/plugins",
            "/usr/lib/x86_64-linux-gnu/qt5/plugins",
        ],
        All,
        0,
    ),
    rule(
        "LIBVA_DRIVERS_PATH",
        Dir,
        &["/usr/lib/x86_64-linux-gnu/dri"],
        First,
        0,
    ),
    rule("ALSA_CONFIG_DIR", Dir, &["/usr/share/alsa"], First, 0),
    rule(
        "ALSA_PLUGIN_DIR",
        Dir,
        &["/usr/lib/x86_64-linux-gnu/alsa-lib"],
        First,
        0,
    ),
    rule(
        "SASL_PATH",
        Dir,
        &["/usr/lib/x86_64-linux-gnu/sasl2"],
        First,
        0,
    ),
];

/// Every variable the table can set (for the documentation test).
pub fn variables() -> impl Iterator<Item = &'static str> {
    RULES.iter().map(|r| r.var)
}

/// The variables for the bundle under `prefix` in `plan`, their values
/// written with `base` for the bundle's directory.
pub fn derive(plan: &Plan, prefix: &Path, base: &str) -> Vec<(String, String)> {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    // Image paths of the bundle (without the prefix).
    let paths: Vec<(PathBuf, &PathBuf)> = plan
        .nodes
        .keys()
        .filter_map(|k| {
            let rel = k.strip_prefix(prefix).ok()?;
            (!rel.as_os_str().is_empty()).then(|| (Path::new("/").join(rel), k))
        })
        .collect();
    let mut env = Vec::new();
    for r in RULES {
        let mut values: Vec<String> = Vec::new();
        let mut reals: Vec<PathBuf> = Vec::new();
        for pat in r.patterns {
            let Ok(pattern) = glob::Pattern::new(pat) else {
                continue;
            };
            for (image, key) in &paths {
                if !pattern.matches_path_with(image, opts) {
                    continue;
                }
                // Symlinks count as what they lead to.
                let Some((real, node)) = plan.lookup(key) else {
                    continue;
                };
                let kind_ok = match r.want {
                    Want::Dir => matches!(node, Node::Dir { .. }),
                    Want::File => matches!(node, Node::File { .. } | Node::Data { .. }),
                };
                let mut real = real.clone();
                let mut value = image.clone();
                for _ in 0..r.up {
                    real.pop();
                    value.pop();
                }
                if !kind_ok || reals.contains(&real) {
                    continue;
                }
                reals.push(real);
                values.push(format!("{base}{}", value.display()));
            }
        }
        let value = match r.join {
            Join::First => values.into_iter().next(),
            Join::All if values.is_empty() => None,
            Join::All => Some(values.join(":")),
        };
        if let Some(v) = value {
            env.push((r.var.to_string(), v));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(files: &[&str], links: &[(&str, &str)]) -> Plan {
        let mut plan = Plan::default();
        for f in files {
            plan.add_data(&Path::new("/b").join(&f[1..]), vec![], 0o644)
                .unwrap();
        }
        for (l, t) in links {
            plan.add_parents_of(&Path::new("/b").join(&l[1..])).unwrap();
            plan.insert(
                &Path::new("/b").join(&l[1..]),
                Node::Symlink {
                    target: PathBuf::from(t),
                },
            )
            .unwrap();
        }
        plan
    }

    fn get(env: &[(String, String)], k: &str) -> Option<String> {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn derives_from_what_ships() {
        let plan = bundle(
            &[
                "/usr/share/perl5/Foo.pm",
                "/usr/lib/x86_64-linux-gnu/perl-base/strict.pm",
                "/usr/share/perl/5.36.0/Carp.pm",
                "/usr/share/vim/vim90/defaults.vim",
                "/usr/lib/python3.11/os.py",
                "/usr/lib/x86_64-linux-gnu/espeak-ng-data/phontab",
                "/usr/lib/file/magic.mgc",
            ],
            &[
                ("/usr/share/perl/5.36", "5.36.0"),
                ("/usr/share/misc/magic.mgc", "../../lib/file/magic.mgc"),
            ],
        );
        let env = derive(&plan, Path::new("/b"), "B");
        assert_eq!(
            get(&env, "PERL5LIB").unwrap(),
            "B/usr/share/perl5:B/usr/lib/x86_64-linux-gnu/perl-base:B/usr/share/perl/5.36"
        );
        assert_eq!(get(&env, "VIMRUNTIME").unwrap(), "B/usr/share/vim/vim90");
        assert_eq!(get(&env, "VIM").unwrap(), "B/usr/share/vim");
        assert_eq!(get(&env, "PYTHONHOME").unwrap(), "B/usr");
        assert_eq!(
            get(&env, "ESPEAK_DATA_PATH").unwrap(),
            "B/usr/lib/x86_64-linux-gnu"
        );
        assert_eq!(get(&env, "MAGIC").unwrap(), "B/usr/share/misc/magic.mgc");
        assert_eq!(get(&env, "TZDIR"), None);
        assert_eq!(get(&env, "RUBYLIB"), None);
    }

    #[test]
    fn every_variable_is_documented() {
        let doc = include_str!("../../docs/runtime-env.md");
        for v in variables() {
            assert!(
                doc.contains(&format!("`{v}`")),
                "{v} is not in docs/runtime-env.md"
            );
        }
    }
}
