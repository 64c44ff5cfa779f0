//! `elfpack patch --build-resolution-cache`: NixOS's note of where each
//! DT_NEEDED library is found along the run path. A program with the note
//! reads cleanly and still runs; a rebuild is a no-op; a later run-path
//! change removes the note (and its bytes).

mod common;

use common::{gcc, readelf, run_elfpack as elfpack, stdout_ok as ok};

use std::path::Path;
use std::process::{Command, Output};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn failed(o: &Output) -> String {
    assert!(!o.status.success(), "expected a failure");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn note_resolves_runs_and_goes_with_the_run_path() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let libs = d.join("libs");
    let other = d.join("other");
    std::fs::create_dir_all(&libs).unwrap();
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(d.join("lib.c"), "int answer(void) { return 42; }\n").unwrap();
    std::fs::write(
        d.join("main.c"),
        "#include <stdio.h>\nint answer(void);\n\
         int main(void) { printf(\"%d\\n\", answer()); return 0; }\n",
    )
    .unwrap();
    let lib = libs.join("libanswer.so");
    gcc(&["-shared", "-fPIC", s(&d.join("lib.c")), "-o", s(&lib)]);
    std::fs::copy(&lib, other.join("libanswer.so")).unwrap();
    for pie in ["-pie", "-no-pie"] {
        let prog = d.join(format!("prog{pie}"));
        gcc(&[
            pie,
            s(&d.join("main.c")),
            "-o",
            s(&prog),
            "-L",
            s(&libs),
            "-lanswer",
        ]);
        // `$ORIGIN` cannot be resolved now: a `?` hint, before the path.
        let rpath = format!("$ORIGIN/none:{}", s(&libs));
        ok(elfpack(&["patch", "--set-rpath", &rpath, s(&prog)]));
        ok(elfpack(&["patch", "--build-resolution-cache", s(&prog)]));

        let notes = readelf(&["-n", "-W"], &prog);
        assert!(
            notes.contains("NixOS") && notes.contains("0x63a86cb6"),
            "{notes}"
        );
        let desc = readelf(&["-p", ".note.nixos.ldcache"], &prog);
        let want = format!("?$ORIGIN/none:={}", s(&lib));
        assert!(
            desc.contains("libanswer.so") && desc.contains(&want),
            "{desc}"
        );
        readelf(&["-a", "-W"], &prog);
        let segments = readelf(&["-l", "-W"], &prog);
        assert!(segments.contains("NOTE"), "{segments}");
        assert_eq!(ok(Command::new(&prog).output().unwrap()).trim(), "42");

        // The same again is a no-op.
        let before = std::fs::read(&prog).unwrap();
        ok(elfpack(&["patch", "--build-resolution-cache", s(&prog)]));
        assert_eq!(before, std::fs::read(&prog).unwrap());
        // With --force-rpath it is refused.
        let err = failed(&elfpack(&[
            "patch",
            "--force-rpath",
            "--build-resolution-cache",
            s(&prog),
        ]));
        assert!(err.contains("--force-rpath"), "{err}");

        // A new run path: the note goes, its paths with it.
        ok(elfpack(&["patch", "--set-rpath", s(&other), s(&prog)]));
        let sections = readelf(&["-S", "-W"], &prog);
        assert!(!sections.contains(".note.nixos.ldcache"), "{sections}");
        readelf(&["-a", "-W"], &prog);
        let bytes = std::fs::read(&prog).unwrap();
        let old = format!("={}", s(&lib));
        assert!(!bytes.windows(old.len()).any(|w| w == old.as_bytes()));
        assert_eq!(ok(Command::new(&prog).output().unwrap()).trim(), "42");

        // Rebuilt, it names the new directory; an unrelated edit keeps it.
        ok(elfpack(&["patch", "--build-resolution-cache", s(&prog)]));
        ok(elfpack(&[
            "patch",
            "--remove-needed",
            "libabsent.so",
            s(&prog),
        ]));
        let desc = readelf(&["-p", ".note.nixos.ldcache"], &prog);
        assert!(desc.contains(s(&other.join("libanswer.so"))), "{desc}");
        // A stale note is an error, not silently kept.
        std::fs::remove_file(other.join("libanswer.so")).unwrap();
        let err = failed(&elfpack(&["patch", "--build-resolution-cache", s(&prog)]));
        assert!(err.contains("already present"), "{err}");
        std::fs::copy(&lib, other.join("libanswer.so")).unwrap();
    }
}
