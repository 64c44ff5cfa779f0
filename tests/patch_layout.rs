//! `elfpack patch` against the cases patchelf's own suite covers, written
//! anew: any number of growing edits, symbol versions through
//! --replace-needed, patchelf's RPATH semantics and options, its command
//! line, and a large `.dynstr` that must not be copied.

mod common;

use common::{describe, readelf, run_elfpack, stdout_ok, workdir};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn patch(args: &[&str]) -> String {
    let mut all = vec!["patch"];
    all.extend_from_slice(args);
    stdout_ok(run_elfpack(&all))
}

fn run(p: &Path) -> String {
    stdout_ok(Command::new(p).output().unwrap())
}

fn gcc(dir: &Path, name: &str, src: &str, args: &[&str]) -> PathBuf {
    common::compile_c(dir, name, src, args)
}

fn loads(p: &Path) -> usize {
    readelf(&["-lW"], p)
        .lines()
        .filter(|l| l.trim_start().starts_with("LOAD "))
        .count()
}

/// A library with no PT_NOTE to spare (`--build-id=none`) and a program
/// using it, each given a 100-byte longer RPATH twenty times; the program
/// runs after every edit and each file has one PT_LOAD more at the end.
#[test]
fn twenty_growing_rpath_edits_run_after_each() {
    let t = workdir();
    let d = t.path();
    let lib = gcc(
        d,
        "libgrow.so",
        "int grow(void) { return 42; }\n",
        &["-shared", "-fPIC", "-Wl,--build-id=none"],
    );
    let lib_loads = loads(&lib);
    for (name, flags) in [("pie", "-pie"), ("nopie", "-no-pie")] {
        let prog = gcc(
            d,
            name,
            "#include <stdio.h>\nint grow(void);\nint main(void){printf(\"grow %d\\n\", grow());return 0;}\n",
            &[flags, "-L", s(d), "-lgrow", "-Wl,--build-id=none"],
        );
        let prog_loads = loads(&prog);
        let mut rpath = s(d).to_string();
        for i in 0..20 {
            rpath = format!("{rpath}:/{i:02}{}", "x".repeat(96));
            patch(&["--set-rpath", &rpath, s(&prog)]);
            patch(&["--set-rpath", &rpath, s(&lib)]);
            assert_eq!(run(&prog), "grow 42\n", "{name} after edit {}", i + 1);
            for f in [&prog, &lib] {
                let dynamic = readelf(&["-a", "-W"], f);
                assert!(dynamic.contains(&rpath), "edit {}: {dynamic}", i + 1);
                let before = if f == &prog { prog_loads } else { lib_loads };
                assert_eq!(loads(f), before + 1, "{}: one added PT_LOAD", f.display());
            }
        }
        // Shrinking back works too, in place.
        patch(&["--set-rpath", s(d), s(&prog)]);
        assert_eq!(run(&prog), "grow 42\n");
    }
}

/// `.gnu.version_r` names libraries by their DT_NEEDED strings: renaming
/// one must rename it there too, or ld.so asserts.
#[test]
fn replace_needed_renames_version_needs() {
    let t = workdir();
    let d = t.path();
    let prog = gcc(
        d,
        "hello",
        "#include <stdio.h>\nint main(void){puts(\"hello\");return 0;}\n",
        &[],
    );
    let libc = std::fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
    patch(&["--replace-needed", "libc.so.6", s(&libc), s(&prog)]);
    assert_eq!(run(&prog), "hello\n");
    let v = readelf(&["-V", "-W"], &prog);
    assert!(v.contains(&format!("File: {}", libc.display())), "{v}");
    assert!(!v.contains("File: libc.so.6"), "{v}");
}

/// patchelf's RPATH meanings, string reuse, and its other options.
#[test]
fn patchelf_semantics() {
    let t = workdir();
    let d = t.path();
    let lib = gcc(
        d,
        "libsem.so",
        "#include <math.h>\n#include <stdio.h>\ndouble f(double x){puts(\"f\");return sqrt(x);}\n",
        &[
            "-shared",
            "-fPIC",
            "-lm",
            "-Wl,--disable-new-dtags,-rpath,/old/rpath",
        ],
    );
    let dynamic = |f: &Path| readelf(&["-d", "-W"], f);
    // --set-rpath converts DT_RPATH to DT_RUNPATH, --force-rpath back.
    patch(&["--set-rpath", "/a", s(&lib)]);
    assert!(dynamic(&lib).contains("(RUNPATH)            Library runpath: [/a]"));
    assert!(!dynamic(&lib).contains("(RPATH)"));
    patch(&["--force-rpath", "--set-rpath", "/a", s(&lib)]);
    assert!(dynamic(&lib).contains("(RPATH)              Library rpath: [/a]"));
    assert!(!dynamic(&lib).contains("(RUNPATH)"));
    // --add-rpath appends; --remove-rpath wins over --set-rpath.
    patch(&["--add-rpath", "/b", s(&lib)]);
    assert_eq!(patch(&["--print-rpath", s(&lib)]), "/a:/b\n");
    patch(&["--set-rpath", "/x", "--remove-rpath", s(&lib)]);
    assert_eq!(patch(&["--print-rpath", s(&lib)]), "\n");
    // --shrink-rpath keeps the dirs holding a needed library, and relative
    // ones; --allowed-rpath-prefixes drops the others first.
    let libs = d.join("libs");
    std::fs::create_dir_all(&libs).unwrap();
    std::fs::copy("/lib/x86_64-linux-gnu/libm.so.6", libs.join("libm.so.6")).unwrap();
    let rp = format!(
        "/nonexistent:$ORIGIN/x:{}:/usr/lib/x86_64-linux-gnu",
        s(&libs)
    );
    patch(&["--set-rpath", &rp, s(&lib)]);
    patch(&["--shrink-rpath", s(&lib)]);
    assert_eq!(
        patch(&["--print-rpath", s(&lib)]),
        format!("$ORIGIN/x:{}:/usr/lib/x86_64-linux-gnu\n", s(&libs))
    );
    patch(&[
        "--shrink-rpath",
        "--allowed-rpath-prefixes",
        "/usr",
        s(&lib),
    ]);
    assert_eq!(
        patch(&["--print-rpath", s(&lib)]),
        "$ORIGIN/x:/usr/lib/x86_64-linux-gnu\n"
    );
    // OS ABI, executable stack, DT_FLAGS_1 NODEFLIB, DT_DEBUG.
    assert_eq!(patch(&["--print-os-abi", s(&lib)]), "System V\n");
    patch(&["--set-os-abi", "linux", s(&lib)]);
    assert_eq!(patch(&["--print-os-abi", s(&lib)]), "Linux\n");
    assert_eq!(patch(&["--print-execstack", s(&lib)]), "execstack: -\n");
    patch(&["--set-execstack", s(&lib)]);
    assert_eq!(patch(&["--print-execstack", s(&lib)]), "execstack: X\n");
    patch(&["--clear-execstack", s(&lib)]);
    assert_eq!(patch(&["--print-execstack", s(&lib)]), "execstack: -\n");
    patch(&["--no-default-lib", "--add-debug-tag", s(&lib)]);
    let dy = dynamic(&lib);
    assert!(dy.contains("NODEFLIB") && dy.contains("(DEBUG)"), "{dy}");
    readelf(&["-a", "-W"], &lib);
    // The library still loads.
    let prog = gcc(
        d,
        "uselib",
        "#include <stdio.h>\ndouble f(double);\nint main(void){printf(\"%g\\n\", f(16));return 0;}\n",
        &["-L", s(d), "-lsem", "-Wl,-rpath", s(d)],
    );
    assert_eq!(run(&prog), "f\n4\n");
    // A name already in .dynstr is reused: nothing grows.
    let before = std::fs::metadata(&lib).unwrap().len();
    patch(&["--replace-needed", "libm.so.6", "libc.so.6", s(&lib)]);
    assert_eq!(std::fs::metadata(&lib).unwrap().len(), before);
    assert_eq!(
        patch(&["--print-needed", s(&lib)]),
        "libc.so.6\nlibc.so.6\n"
    );
}

/// patchelf's command line: options after the files, several files and
/// edits per call, `@FILE` arguments, and printing into a closed pipe.
#[test]
fn patchelf_command_line() {
    let t = workdir();
    let d = t.path();
    let a = gcc(d, "a", "int main(void){return 0;}\n", &[]);
    let b = gcc(d, "b", "int main(void){return 0;}\n", &[]);
    std::fs::write(d.join("arg"), "/from/a/file").unwrap();
    patch(&[
        s(&a),
        "--set-rpath",
        "/r",
        s(&b),
        "--add-needed",
        "libm.so.6",
    ]);
    for f in [&a, &b] {
        assert_eq!(patch(&["--print-rpath", s(f)]), "/r\n");
        assert_eq!(patch(&[s(f), "--print-needed"]), "libm.so.6\nlibc.so.6\n");
        run(f);
    }
    let at = format!("@{}", s(&d.join("arg")));
    patch(&["--add-rpath", &at, s(&a)]);
    assert_eq!(patch(&["--print-rpath", s(&a)]), "/r:/from/a/file\n");
    // -o leaves the input alone; several files with -o are refused.
    let out = d.join("out");
    patch(&["--set-soname", "libx.so", "--output", s(&out), s(&a)]);
    assert_eq!(patch(&["--print-soname", s(&out)]), "libx.so\n");
    assert_eq!(patch(&["--print-soname", s(&a)]), "");
    let o = run_elfpack(&["patch", "--output", s(&out), s(&a), s(&b)]);
    assert!(!o.status.success());
    // A reader that goes away early is no reason to panic.
    let mut args = vec!["patch", "--print-needed"];
    args.extend(std::iter::repeat_n(s(&a), 2000));
    let mut child = Command::new(env!("CARGO_BIN_EXE_elfpack"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panick"), "{}", describe(&o));
    // Bad input: one line naming the file.
    let junk = d.join("junk");
    std::fs::write(&junk, b"not an ELF file at all, really not").unwrap();
    let o = run_elfpack(&["patch", "--set-rpath", "/x", s(&junk)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("junk") && !err.contains("panick"));
}

/// A program whose `.dynstr` is large: its `--prefix` bundle, whose edits
/// add strings, is at most 2% larger than its `--rootfs` tree.
#[test]
fn large_dynstr_is_not_copied() {
    let t = workdir();
    let d = t.path();
    let mut src = String::from("#include <stdio.h>\n");
    for i in 0..20000 {
        src += &format!(
            "int a_rather_long_exported_function_name_to_fill_the_dynamic_string_table_{i:05}(void){{return {i};}}\n"
        );
    }
    src += "int main(void){puts(\"big\");return 0;}\n";
    let prog = gcc(d, "bigdynstr", &src, &["-rdynamic", "-O0"]);
    let sections = readelf(&["-SW"], &prog);
    let dynstr = sections.lines().find(|l| l.contains(" .dynstr ")).unwrap();
    let cols: Vec<&str> = dynstr.split_whitespace().collect();
    let at = cols.iter().position(|c| *c == "STRTAB").unwrap();
    let size = u64::from_str_radix(cols[at + 3], 16).unwrap();
    assert!(size > 1_500_000, "{dynstr}");
    let tree_size = |root: &Path| -> u64 {
        common::walk(root)
            .iter()
            .filter_map(|p| std::fs::symlink_metadata(p).ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    };
    let plain = d.join("plain");
    stdout_ok(run_elfpack(&[s(&prog), "--rootfs", s(&plain)]));
    let prefixed = d.join("prefixed");
    stdout_ok(run_elfpack(&[
        s(&prog),
        "--prefix",
        "/opt/big",
        "--rootfs",
        s(&prefixed),
    ]));
    let (a, b) = (tree_size(&plain), tree_size(&prefixed));
    assert!(
        b * 100 <= a * 102,
        "prefix bundle {b} B vs rootfs tree {a} B"
    );
    // Every file keeps its host path under the prefix.
    let in_image = format!("/opt/big{}", prog.display());
    let bundled = prefixed.join(&in_image[1..]);
    readelf(&["-a", "-W"], &bundled);
    if common::is_root() {
        let o = Command::new("chroot")
            .arg(&prefixed)
            .arg(&in_image)
            .output()
            .unwrap();
        assert_eq!(stdout_ok(o), "big\n");
    }
}
