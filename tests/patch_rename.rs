//! `elfpack patch --rename-dynamic-symbols`: a library and the program that
//! uses it, renamed with the same map, still run (with lazy and immediate
//! binding), whatever hash tables the linker gave them.

mod common;

use common::{gcc, run_elfpack as elfpack, stdout_ok as ok};

fn readelf_clean(p: &Path) {
    common::readelf(&["-a", "-W"], p);
}

use std::path::Path;
use std::process::Command;

const N: usize = 40;

fn dynamic_names(p: &Path) -> Vec<String> {
    let o = ok(Command::new("nm").arg("-D").arg(p).output().unwrap());
    o.lines()
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run(dir: &Path, prog: &Path, bind_now: bool) -> String {
    let mut c = Command::new(prog);
    c.env("LD_LIBRARY_PATH", dir);
    if bind_now {
        c.env("LD_BIND_NOW", "1");
    }
    ok(c.output().unwrap())
}

/// Sources of a library with `N` versioned functions and a data object, and
/// of a program calling each through the PLT.
fn sources(d: &Path) {
    let mut lib = String::new();
    let mut main = String::from("#include <stdio.h>\nextern int counter;\n");
    lib += "int counter = 1;\n";
    for i in 0..N {
        lib += &format!("int fun_{i}(int x) {{ return x * {i} + counter; }}\n");
        main += &format!("int fun_{i}(int);\n");
    }
    main += "int main(void) {\n  long s = 0;\n";
    for i in 0..N {
        main += &format!("  s += fun_{i}({i});\n");
    }
    main += "  printf(\"%ld %d\\n\", s, counter);\n  return 0;\n}\n";
    std::fs::write(d.join("lib.c"), lib).unwrap();
    std::fs::write(d.join("main.c"), main).unwrap();
    std::fs::write(
        d.join("lib.map"),
        "VERS_1 { global: fun_*; counter; local: *; };\n",
    )
    .unwrap();
}

#[test]
fn renamed_library_and_program_run_with_every_hash_style() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    sources(d);
    let mut map = String::new();
    let mut back = String::new();
    for i in 0..N {
        map += &format!("fun_{i} fun_{i}_renamed_for_the_test\n");
        back += &format!("fun_{i}_renamed_for_the_test fun_{i}\n");
    }
    map += "counter counter_renamed\n";
    back += "counter_renamed counter\n";
    std::fs::write(d.join("map"), map).unwrap();
    std::fs::write(d.join("back"), back).unwrap();
    for style in ["gnu", "sysv", "both"] {
        for pie in ["-pie", "-no-pie"] {
            let dir = d.join(format!("{style}{pie}"));
            std::fs::create_dir(&dir).unwrap();
            let lib = dir.join("libfun.so");
            let prog = dir.join("prog");
            let hash = format!("-Wl,--hash-style={style}");
            let vs = format!("-Wl,--version-script={}", s(&d.join("lib.map")));
            gcc(&[
                "-shared",
                "-fPIC",
                &hash,
                &vs,
                "-Wl,-soname,libfun.so",
                s(&d.join("lib.c")),
                "-o",
                s(&lib),
            ]);
            let pic = if pie == "-pie" { "-fPIE" } else { "-fno-PIE" };
            gcc(&[
                pic,
                pie,
                &hash,
                s(&d.join("main.c")),
                "-o",
                s(&prog),
                "-L",
                s(&dir),
                "-lfun",
            ]);
            let before = run(&dir, &prog, true);
            ok(elfpack(&[
                "patch",
                "--rename-dynamic-symbols",
                s(&d.join("map")),
                s(&lib),
                s(&prog),
            ]));
            for f in [&lib, &prog] {
                readelf_clean(f);
                let names = dynamic_names(f);
                assert!(
                    names
                        .iter()
                        .any(|n| n.starts_with("fun_7_renamed_for_the_test@")),
                    "{style}{pie} {}: {names:?}",
                    f.display()
                );
                assert!(
                    !names.iter().any(|n| n.starts_with("fun_7@")),
                    "{style}{pie}: {names:?}"
                );
            }
            assert_eq!(run(&dir, &prog, true), before, "{style}{pie}");
            assert_eq!(run(&dir, &prog, false), before, "{style}{pie}");

            // Only the library renamed: the program's symbols are gone.
            let other = dir.join("other");
            std::fs::create_dir(&other).unwrap();
            std::fs::copy(&lib, other.join("libfun.so")).unwrap();
            let p2 = other.join("prog");
            std::fs::copy(&prog, &p2).unwrap();
            ok(elfpack(&[
                "patch",
                "--rename-dynamic-symbols",
                s(&d.join("back")),
                s(&p2),
            ]));
            let o = Command::new(&p2)
                .env("LD_LIBRARY_PATH", &other)
                .env("LD_BIND_NOW", "1")
                .output()
                .unwrap();
            assert!(!o.status.success(), "{style}{pie}: ran with the old names");

            // Renamed back, both run again.
            ok(elfpack(&[
                "patch",
                "--rename-dynamic-symbols",
                s(&d.join("back")),
                "--set-rpath",
                "$ORIGIN",
                s(&lib),
                s(&prog),
            ]));
            readelf_clean(&lib);
            readelf_clean(&prog);
            assert_eq!(run(&dir, &prog, true), before, "{style}{pie} back");
        }
    }
}

#[test]
fn map_file_errors_and_no_match() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    sources(d);
    let lib = d.join("libfun.so");
    gcc(&["-shared", "-fPIC", s(&d.join("lib.c")), "-o", s(&lib)]);
    let orig = std::fs::read(&lib).unwrap();
    for (text, msg) in [
        ("fun_1\n", "missing the second element"),
        ("fun_1 a\nfun_1 b\n", "appears twice"),
        ("fun_1@V a\n", "version tag"),
    ] {
        std::fs::write(d.join("bad"), text).unwrap();
        let o = elfpack(&[
            "patch",
            "--rename-dynamic-symbols",
            s(&d.join("bad")),
            s(&lib),
        ]);
        assert!(!o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(msg),
            "{text:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(std::fs::read(&lib).unwrap(), orig);
    }
    // A name nothing has leaves the symbols alone; other edits still apply.
    std::fs::write(d.join("none"), "no_such_symbol other\n").unwrap();
    let out = d.join("out.so");
    ok(elfpack(&[
        "patch",
        "--set-rpath",
        "changed",
        "--rename-dynamic-symbols",
        s(&d.join("none")),
        "--output",
        s(&out),
        s(&lib),
    ]));
    readelf_clean(&out);
    assert_eq!(dynamic_names(&out), dynamic_names(&lib));
    let rp = ok(elfpack(&["patch", "--print-rpath", s(&out)]));
    assert_eq!(rp.trim(), "changed");
}
