//! ELF reading tells the kinds of program apart and reports bad input
//! precisely, on files compiled here.

use std::path::Path;
use std::process::Command;

use elfpack::elf::{self, Kind};

fn build(dir: &Path, name: &str, flags: &[&str]) -> std::path::PathBuf {
    let src = dir.join("p.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nint main(void){puts(\"hi\");return 0;}\n",
    )
    .unwrap();
    let out = dir.join(name);
    let st = Command::new("gcc")
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .args(flags)
        .status()
        .unwrap();
    assert!(st.success(), "gcc {flags:?}");
    out
}

#[test]
fn kinds_are_told_apart() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let cases = [
        ("dyn", vec!["-pie"], Kind::Dynamic),
        ("nopie", vec!["-no-pie"], Kind::Dynamic),
        ("static", vec!["-static"], Kind::Static),
        ("static-pie", vec!["-static-pie"], Kind::StaticPie),
        (
            "lib.so",
            vec![
                "-shared",
                "-fPIC",
                "-Wl,-soname,libp.so.1",
                "-Wl,-z,nodefaultlib",
            ],
            Kind::SharedLibrary,
        ),
    ];
    for (name, flags, kind) in cases {
        let info = elf::read(&build(d, name, &flags)).unwrap();
        assert_eq!(info.kind, kind, "{name}");
        assert!(info.class64 && info.machine_name() == "x86-64");
        match kind {
            Kind::Dynamic => {
                assert_eq!(
                    info.interpreter.as_deref(),
                    Some("/lib64/ld-linux-x86-64.so.2")
                );
                assert_eq!(info.needed, ["libc.so.6"]);
            }
            Kind::SharedLibrary => {
                assert_eq!(info.soname.as_deref(), Some("libp.so.1"));
                assert!(info.nodeflib);
            }
            _ => assert!(info.interpreter.is_none() && info.needed.is_empty()),
        }
    }
    let info = elf::read(&build(
        d,
        "rp",
        &["-Wl,--disable-new-dtags,-rpath,/a:$ORIGIN/b"],
    ))
    .unwrap();
    assert_eq!(
        (info.rpath.as_deref(), info.runpath.as_deref()),
        (Some("/a:$ORIGIN/b"), None)
    );
    let info = elf::read(&build(d, "rn", &["-Wl,--enable-new-dtags,-rpath,/c"])).unwrap();
    assert_eq!(
        (info.rpath.as_deref(), info.runpath.as_deref()),
        (None, Some("/c"))
    );
}

#[test]
fn bad_input_names_the_problem() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let err = |p: &Path| format!("{:#}", elf::read(p).unwrap_err());
    std::fs::write(d.join("text"), "hello\n").unwrap();
    assert!(err(&d.join("text")).contains("not an ELF file"));
    let ls = std::fs::read("/usr/bin/ls").unwrap();
    for cut in [3, 20, 100, 1000] {
        std::fs::write(d.join("cut"), &ls[..cut]).unwrap();
        let e = err(&d.join("cut"));
        assert!(e.contains(&d.join("cut").display().to_string()), "{e}");
        assert!(
            e.contains("truncated") || e.contains("malformed") || e.contains("not an ELF"),
            "{cut}: {e}"
        );
    }
    std::fs::write(d.join("empty"), "").unwrap();
    assert!(err(&d.join("empty")).contains("empty file"));
    assert!(err(d).contains("is a directory"));
    assert!(err(&d.join("missing")).contains("cannot open"));
}
