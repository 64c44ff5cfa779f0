//! Package data (README "Package data"): real Debian programs packed with
//! plain defaults run from a `FROM scratch` image under podman, as root and
//! as uid 65532, using files no ELF header names (perl's POSIX, python's
//! standard library, vim's syntax files, the JVM's lib/). Negative control:
//! the same vim with `--no-package-data` finds no syntax file.
//!
//! The programs come from test.sh's apt packages (perl-base is essential).

mod common;

use std::process::{Command, Output};

use common::{describe, elfpack, require_root, text, workdir};

/// An image tag removed when dropped, also when the test fails.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rmi", "-f", &self.0]).output();
    }
}

/// Packs `prog` (plus `extra` options) into an OCI archive and loads it.
fn image(prog: &str, tag: &str, extra: &[&str]) -> Image {
    let w = workdir();
    let tar = w.path().join("image.tar");
    let full = format!("localhost/{tag}:test");
    let o = elfpack()
        .arg(prog)
        .arg("--oci")
        .arg(&tar)
        .args(["--tag", &format!("{tag}:test"), "--no-layer-size"])
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "elfpack {prog}: {}", describe(&o));
    let img = Image(full);
    let o = common::podman_load(&tar);
    assert!(o.status.success(), "podman load: {}", describe(&o));
    img
}

/// `podman run` of the image as `user`, with the ulimits DEVELOPERS.md gives.
fn run(img: &Image, user: &str, args: &[&str]) -> Output {
    common::podman_run()
        .args(["--user", user])
        .arg(&img.0)
        .args(args)
        .output()
        .unwrap()
}

/// Runs `args` as root and as 65532; both must print `want`.
fn runs_as_both(img: &Image, args: &[&str], want: &str) {
    for user in ["0", "65532"] {
        let o = run(img, user, args);
        assert!(o.status.success(), "{} as {user}: {}", img.0, describe(&o));
        assert_eq!(
            text(&o.stdout),
            want,
            "{} as {user}: {}",
            img.0,
            describe(&o)
        );
    }
}

#[test]
fn perl_with_posix_and_list_util() {
    if !require_root("podman, perl") {
        return;
    }
    let img = image("/usr/bin/perl", "elfpack-pkgdata-perl", &[]);
    runs_as_both(
        &img,
        &[
            "-MPOSIX",
            "-MList::Util=sum",
            "-e",
            "print sum(1,2), q( ), POSIX::floor(2.5), qq(\\n)",
        ],
        "3 2\n",
    );
}

#[test]
fn debian_python3_imports_its_standard_library() {
    if !require_root("podman, python3") {
        return;
    }
    // Debian's python3, not one a version manager put first on PATH.
    let img = image("/usr/bin/python3", "elfpack-pkgdata-python3", &[]);
    runs_as_both(&img, &["-c", common::PY_CODE], "1\n");
}

const VIM_ARGS: &[&str] = &[
    "--clean",
    "-es",
    "-c",
    "syntax on",
    "-c",
    "e /tmp/x.c",
    "-c",
    "put =b:current_syntax",
    "-c",
    "w",
    "-c",
    "%p",
    "-c",
    "qa!",
];

#[test]
fn vim_with_syntax_writes_a_file() {
    if !require_root("podman, vim") {
        return;
    }
    let img = image("/usr/bin/vim", "elfpack-pkgdata-vim", &[]);
    // The filetype is detected and c.vim's syntax loaded from vim-runtime,
    // then the buffer is written to /tmp and printed.
    runs_as_both(&img, VIM_ARGS, " \nc\n");
    // Without package data there is no runtime: no syntax, vim fails.
    let bare = image(
        "/usr/bin/vim",
        "elfpack-pkgdata-vim-bare",
        &["--no-package-data"],
    );
    let o = run(&bare, "0", VIM_ARGS);
    assert!(!o.status.success(), "{}", describe(&o));
}

#[test]
fn java_from_the_jdk_directory() {
    if !require_root("podman, java") {
        return;
    }
    let img = image("/usr/bin/java", "elfpack-pkgdata-java", &[]);
    for user in ["0", "65532"] {
        let o = run(&img, user, &["-version"]);
        assert!(o.status.success(), "java as {user}: {}", describe(&o));
        assert!(
            text(&o.stderr).contains("OpenJDK"),
            "java as {user}: {}",
            describe(&o)
        );
    }
}

/// `deps` names each package file with its package and why; a program no
/// package owns brings none; C services stay minimal.
#[test]
fn deps_lists_package_files_and_reasons() {
    let o = elfpack().args(["deps", "/usr/bin/perl"]).output().unwrap();
    assert!(o.status.success(), "{}", describe(&o));
    let out = text(&o.stdout);
    assert!(
        out.lines()
            .any(|l| l.contains("/perl-base/POSIX.pm") && l.contains("[owns /usr/bin/perl]")),
        "{out}"
    );
    assert!(out.contains("added by package perl-base:"), "{out}");
    assert!(!out.contains("/usr/share/doc/"), "{out}");
    assert!(!out.contains("/usr/share/man/"), "{out}");
    // Off switch.
    let o = elfpack()
        .args(["deps", "--no-package-data", "/usr/bin/perl"])
        .output()
        .unwrap();
    assert!(
        !text(&o.stdout).contains("added by package"),
        "{}",
        describe(&o)
    );
    // --package adds one, and an unknown name is one clear error.
    let w = workdir();
    let hello = common::compile(w.path(), "hello.c", &[]);
    let o = elfpack().arg("deps").arg(&hello).output().unwrap();
    assert!(
        !text(&o.stdout).contains("added by package"),
        "{}",
        describe(&o)
    );
    let o = elfpack()
        .arg("deps")
        .arg(&hello)
        .args(["--package", "tzdata"])
        .output()
        .unwrap();
    assert!(
        text(&o.stdout).contains("/usr/share/zoneinfo/Europe/Paris"),
        "{}",
        describe(&o)
    );
    let o = elfpack()
        .arg("deps")
        .arg(&hello)
        .args(["--package", "no-such-package-here"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("--package no-such-package-here"),
        "{}",
        describe(&o)
    );
}

/// Issue 15 item 2: a program no package owns keeps its exact ELF closure,
/// and the absolute paths its strings name that exist here but are not
/// shipped are reported, each with the option that adds it.
#[test]
fn unowned_programs_report_paths_they_name() {
    let w = workdir();
    let prog = common::compile_c(
        w.path(),
        "named",
        r#"#include <stdio.h>
int main(void) {
    FILE *f = fopen("/usr/share/zoneinfo/UTC", "r");
    puts(f ? "found" : "missing");
    puts("/etc/passwd");              /* generated in the image: not reported */
    puts("/usr/share/no-such-dir-x"); /* not here: not reported */
    return 0;
}
"#,
        &[],
    );
    let pack = |extra: &[&str]| {
        let root = w.path().join("root");
        let o = elfpack()
            .arg(&prog)
            .arg("--rootfs")
            .arg(&root)
            .arg("--force")
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", describe(&o));
        text(&o.stderr)
    };
    let err = pack(&[]);
    let note: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("named by the program but not shipped"))
        .collect();
    assert_eq!(note.len(), 1, "{err}");
    assert!(
        note[0].contains("/usr/share/zoneinfo/UTC (--add /usr/share/zoneinfo/UTC)"),
        "{err}"
    );
    assert!(
        !note[0].contains("/etc/passwd") && !note[0].contains("no-such-dir"),
        "{err}"
    );
    // Shipped with --add: nothing left to report.
    let err = pack(&["--add", "/usr/share/zoneinfo/UTC"]);
    assert!(!err.contains("named by the program"), "{err}");
    // A program a package owns gets its package data instead: no report.
    let o = elfpack()
        .args(["/usr/bin/curl", "--rootfs"])
        .arg(w.path().join("curl"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", describe(&o));
    assert!(
        !text(&o.stderr).contains("named by the program"),
        "{}",
        describe(&o)
    );
}
