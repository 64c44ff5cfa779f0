//! `elfpack patch` on other machines' files: 32-bit (armhf, i686), 64-bit
//! big-endian (s390x) and little-endian (aarch64, ppc64le) programs built by
//! Debian's cross compilers, edited so that they need an added segment, and
//! run under qemu-user with their sysroot. The added segment keeps the
//! file's own page size (64 KiB on aarch64 and ppc64le).

mod common;

use common::{describe, run_elfpack, stdout_ok, workdir};

use std::path::Path;
use std::process::Command;

/// (cross-compiler triple, qemu name)
const TARGETS: &[(&str, &str)] = &[
    ("aarch64-linux-gnu", "aarch64"),
    ("arm-linux-gnueabihf", "arm"),
    ("powerpc64le-linux-gnu", "ppc64le"),
    ("s390x-linux-gnu", "s390x"),
    ("i686-linux-gnu", "i386"),
];

struct Load {
    offset: u64,
    vaddr: u64,
    align: u64,
}

fn loads(p: &Path) -> Vec<Load> {
    let o = Command::new("readelf").arg("-lW").arg(p).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with("LOAD "))
        .map(|l| {
            let c: Vec<u64> = l
                .split_whitespace()
                .filter_map(|w| u64::from_str_radix(w.strip_prefix("0x")?, 16).ok())
                .collect();
            Load {
                offset: c[0],
                vaddr: c[1],
                align: *c.last().unwrap(),
            }
        })
        .collect()
}

#[test]
fn foreign_programs_edited_and_run_under_qemu() {
    let t = workdir();
    let d = t.path();
    let src = d.join("hello.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nint main(void){puts(\"hello cross\");return 0;}\n",
    )
    .unwrap();
    for (triple, qemu) in TARGETS {
        for pie in ["-pie", "-no-pie"] {
            let prog = d.join(format!("hello-{qemu}{pie}"));
            let o = Command::new(format!("{triple}-gcc"))
                .arg(&src)
                .arg(pie)
                .arg("-o")
                .arg(&prog)
                .output()
                .unwrap_or_else(|e| panic!("{triple}-gcc: {e} (test.sh installs gcc-{triple})"));
            assert!(o.status.success(), "{triple}-gcc: {}", describe(&o));
            let before = loads(&prog);
            let p = prog.to_str().unwrap();
            let interp = stdout_ok(run_elfpack(&["patch", "--print-interpreter", p]));
            // A longer interpreter (the sysroot's copy by its host path) and
            // a long RPATH: both need the added segment.
            let sysroot = format!("/usr/{triple}");
            let long_interp = format!("{sysroot}{}", interp.trim());
            let rpath = format!("{sysroot}/lib:/{}", "r".repeat(300));
            stdout_ok(run_elfpack(&[
                "patch",
                "--set-interpreter",
                &long_interp,
                "--set-rpath",
                &rpath,
                "--add-needed",
                "libc.so.6",
                p,
            ]));
            let o = Command::new("readelf")
                .args(["-a", "-W"])
                .arg(&prog)
                .output()
                .unwrap();
            assert!(
                o.status.success() && o.stderr.is_empty(),
                "readelf {p}: {}",
                describe(&o)
            );
            assert_eq!(
                stdout_ok(run_elfpack(&["patch", "--print-rpath", p])),
                format!("{rpath}\n")
            );
            let after = loads(&prog);
            assert_eq!(after.len(), before.len() + 1, "{p}: one added PT_LOAD");
            let max_align = before.iter().map(|l| l.align).max().unwrap();
            let added = after.last().unwrap();
            assert_eq!(added.align, max_align, "{p}: the file's own page size");
            assert_eq!(
                (added.vaddr - added.offset) % max_align,
                0,
                "{p}: address and offset congruent modulo p_align"
            );
            let o = Command::new(format!("qemu-{qemu}-static"))
                .arg("-L")
                .arg(&sysroot)
                .arg(&prog)
                .output()
                .unwrap_or_else(|e| {
                    panic!("qemu-{qemu}-static: {e} (test.sh installs qemu-user-static)")
                });
            assert_eq!(stdout_ok(o), "hello cross\n", "{p} under qemu-{qemu}");
            // A second growing edit grows the added segment.
            let rpath2 = format!("{rpath}:/{}", "s".repeat(300));
            stdout_ok(run_elfpack(&["patch", "--set-rpath", &rpath2, p]));
            assert_eq!(
                loads(&prog).len(),
                before.len() + 1,
                "{p}: still one added PT_LOAD"
            );
            let o = Command::new(format!("qemu-{qemu}-static"))
                .arg("-L")
                .arg(&sysroot)
                .arg(&prog)
                .output()
                .unwrap();
            assert_eq!(
                stdout_ok(o),
                "hello cross\n",
                "{p} under qemu-{qemu}, edited twice"
            );
        }
    }
}
