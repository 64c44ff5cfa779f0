//! `--locale NAME` for a locale that exists only in glibc's locale-archive,
//! where locale-gen puts every locale it generates. It ships as a locale
//! directory, byte for byte what `localedef --no-archive` writes, and works
//! in a tree (glibc's fallback when there is no archive) and in a single
//! file (whose launcher sets LOCPATH, and glibc then reads only directories).
//!
//! The archive is made with `localedef --prefix` and shown to elfpack in a
//! private mount namespace, so the host's own locales stay untouched.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{ELFPACK, RootD, describe, require_root, stdout_ok, text};

const DATE: [&str; 4] = ["/usr/bin/date", "-u", "-d", "@0"];

/// `localedef -i de_DE -f UTF-8 ARGS`, which must succeed.
fn localedef(args: &[&str]) {
    let o = Command::new("localedef")
        .args(["-i", "de_DE", "-f", "UTF-8"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "localedef {args:?}: {}", describe(&o));
}

/// `elfpack /usr/bin/date ARGS` seeing `locales` at /usr/lib/locale.
fn pack_date(locales: &Path, args: &[&str]) -> Output {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$0" /usr/lib/locale && exec "$@""#)
        .arg(locales)
        .args([ELFPACK, DATE[0]])
        .args(args)
        .output()
        .unwrap()
}

/// Every path under `dir`, relative, with a file's bytes.
fn contents(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut v: Vec<_> = common::walk(dir)
        .into_iter()
        .map(|p| {
            let bytes = p.is_file().then(|| std::fs::read(&p).unwrap());
            (p.strip_prefix(dir).unwrap().to_path_buf(), bytes)
        })
        .collect();
    v.sort();
    v
}

/// `date -u -d @0 +FORMAT` chrooted into `root` with only `env` set.
fn date_in(root: &Path, exe: &str, env: &[(&str, &str)]) -> Output {
    Command::new("/usr/sbin/chroot")
        .arg(root)
        .arg(exe)
        .args(&DATE[1..])
        .arg("+%A %B")
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_locale_from_the_archive_ships_as_its_directory() {
    if !require_root("locale archive (mount namespace, chroot)") {
        return;
    }
    let work = common::workdir();
    let w = work.path();
    let locales = w.join("prefix/usr/lib/locale");
    std::fs::create_dir_all(&locales).unwrap();
    let path = |p: &str| w.join(p).to_str().unwrap().to_string();
    localedef(&["--prefix", &path("prefix"), "de_DE.UTF-8"]);
    assert!(locales.join("locale-archive").is_file());
    std::fs::create_dir(w.join("ref")).unwrap();
    localedef(&["--no-archive", &path("ref/de_DE.utf8")]);

    let de = [("LC_ALL", "de_DE.UTF-8")];
    let want = "Donnerstag Januar\n";

    // A tree: the same files as localedef's directory, and date speaks German.
    let tree = w.join("tree");
    let de_de = ["--locale", "de_DE.UTF-8"];
    let o = pack_date(
        &locales,
        &[&de_de[..], &["--rootfs", &path("tree")]].concat(),
    );
    assert!(o.status.success(), "{}", describe(&o));
    let shipped = contents(&tree.join("usr/lib/locale/de_DE.utf8"));
    assert!(
        shipped == contents(&w.join("ref/de_DE.utf8")),
        "differs from localedef's"
    );
    assert!(!tree.join("usr/lib/locale/locale-archive").exists());
    assert_eq!(stdout_ok(date_in(&tree, DATE[0], &de)), want);
    assert_eq!(
        stdout_ok(date_in(&tree, DATE[0], &[])),
        "Thursday January\n"
    );

    // A single file, alone in root D.
    let root = w.join("root");
    std::fs::create_dir(&root).unwrap();
    let single = ["--compress", "fast", "-o", &path("root/date")];
    let o = pack_date(&locales, &[&de_de[..], &single].concat());
    assert!(o.status.success(), "{}", describe(&o));
    let _d = RootD::new(&root);
    assert_eq!(stdout_ok(date_in(&root, "/date", &de)), want);
    // A control without the option.
    let o = pack_date(&locales, &["--rootfs", &path("bare")]);
    assert!(o.status.success(), "{}", describe(&o));
    assert_ne!(text(&date_in(&w.join("bare"), DATE[0], &de).stdout), want);

    // A locale that is nowhere: the error names what there is; no output.
    let o = pack_date(
        &locales,
        &["--locale", "fr_FR.UTF-8", "--rootfs", &path("none")],
    );
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("--locale fr_FR.UTF-8") && err.contains("de_DE.utf8"),
        "{err}"
    );
    assert!(!w.join("none").exists());
}
