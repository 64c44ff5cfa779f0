//! `--locale NAME` for a locale that exists only in glibc's locale-archive,
//! where locale-gen puts every locale it generates. It ships as a locale
//! directory, byte for byte what `localedef --no-archive` writes, and works
//! in a tree (glibc's fallback when there is no archive) and in a single
//! file (whose launcher sets LOCPATH, and glibc then reads only directories).
//!
//! The archive is made with `localedef --prefix` and shown to elfpack in a
//! private mount namespace, so the host's own locales stay untouched.

mod common;

use std::path::Path;
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

/// elfpack ARGS, seeing `locales` at /usr/lib/locale.
fn elfpack_seeing(locales: &Path, args: &[&str]) -> Output {
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount --bind "$0" /usr/lib/locale && exec "$@""#)
        .arg(locales)
        .arg(ELFPACK)
        .args(args)
        .output()
        .unwrap()
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
    let o = elfpack_seeing(
        &locales,
        &[
            DATE[0],
            "--locale",
            "de_DE.UTF-8",
            "--rootfs",
            tree.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", describe(&o));
    let shipped = tree.join("usr/lib/locale/de_DE.utf8");
    let reference = w.join("ref/de_DE.utf8");
    let rel = |root: &Path| -> Vec<_> {
        let mut v: Vec<_> = common::walk(root)
            .into_iter()
            .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
            .collect();
        v.sort();
        v
    };
    assert_eq!(rel(&shipped), rel(&reference));
    for f in rel(&reference) {
        let r = reference.join(&f);
        if r.is_file() {
            assert!(
                std::fs::read(shipped.join(&f)).unwrap() == std::fs::read(&r).unwrap(),
                "{}: differs from localedef's",
                f.display()
            );
        }
    }
    assert!(!tree.join("usr/lib/locale/locale-archive").exists());
    assert_eq!(stdout_ok(date_in(&tree, DATE[0], &de)), want);
    assert_eq!(
        stdout_ok(date_in(&tree, DATE[0], &[])),
        "Thursday January\n"
    );

    // A single file, alone in root D.
    let root = w.join("root");
    std::fs::create_dir(&root).unwrap();
    let o = elfpack_seeing(
        &locales,
        &[
            DATE[0],
            "--locale",
            "de_DE.UTF-8",
            "--compress",
            "fast",
            "-o",
            root.join("date").to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", describe(&o));
    let _d = RootD::new(&root);
    assert_eq!(stdout_ok(date_in(&root, "/date", &de)), want);
    // A control without the option.
    let bare = w.join("bare");
    let o = elfpack_seeing(&locales, &[DATE[0], "--rootfs", bare.to_str().unwrap()]);
    assert!(o.status.success(), "{}", describe(&o));
    assert_ne!(text(&date_in(&bare, DATE[0], &de).stdout), want);

    // A locale that is nowhere: the error names what there is; no output.
    let none = w.join("none");
    let o = elfpack_seeing(
        &locales,
        &[
            DATE[0],
            "--locale",
            "fr_FR.UTF-8",
            "--rootfs",
            none.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("--locale fr_FR.UTF-8") && err.contains("de_DE.utf8"),
        "{err}"
    );
    assert!(!none.exists());
}
