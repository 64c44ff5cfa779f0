//! A cgo program linked by Go's internal linker (standard library only, no
//! `import "C"`) has PT_NOTE before its PT_LOADs and its section headers
//! right after the program headers; it packs as a single file and as a
//! `--prefix` bundle, and both run in root D.

mod common;

use common::{RootD, build_cgo_internal, describe, is_root, run_elfpack, workdir};

use std::path::Path;
use std::process::Command;

fn chroot(root: &Path, argv: &[&str]) -> String {
    let o = Command::new("chroot")
        .arg(root)
        .args(argv)
        .output()
        .unwrap();
    assert!(o.status.success(), "chroot {argv:?}: {}", describe(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn expect_lookups(out: &str, what: &str) {
    assert!(out.contains("uid 0: root\n"), "{what}: {out}");
    assert!(
        out.contains("localhost: [127.0.0.1") || out.contains("localhost: [::1"),
        "{what}: {out}"
    );
}

#[test]
fn internally_linked_cgo_program_packs_as_single_file_and_prefix_bundle() {
    if !is_root() {
        eprintln!("skipped: needs root for chroot");
        return;
    }
    let t = workdir();
    let d = t.path();
    let prog = build_cgo_internal(d);
    // It really is the layout the old editor could not handle.
    let o = Command::new("readelf")
        .arg("-lW")
        .arg(&prog)
        .output()
        .unwrap();
    let phdrs = String::from_utf8_lossy(&o.stdout);
    let note = phdrs.find("  NOTE ").expect("a PT_NOTE");
    let load = phdrs.find("  LOAD ").expect("a PT_LOAD");
    assert!(note < load, "PT_NOTE before the PT_LOADs:\n{phdrs}");

    // Single file, in root D.
    let packed = d.join("cgo-internal.packed");
    let o = run_elfpack(&[
        prog.to_str().unwrap(),
        "-o",
        packed.to_str().unwrap(),
        "--force",
    ]);
    assert!(o.status.success(), "elfpack -o: {}", describe(&o));
    let root = d.join("d");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::copy(&packed, root.join("prog")).unwrap();
    {
        let _d = RootD::new(&root);
        expect_lookups(&chroot(&root, &["/prog"]), "single file in D");
    }

    // --prefix bundle, in root D (whose system has its own passwd).
    let root = d.join("prefix-root");
    let o = run_elfpack(&[
        prog.to_str().unwrap(),
        "--prefix",
        "/opt/cgi",
        "--rootfs",
        root.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "elfpack --prefix: {}", describe(&o));
    {
        let _d = RootD::new(&root);
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        expect_lookups(
            // Every file keeps its host path under the prefix.
            &chroot(&root, &[&format!("/opt/cgi{}", prog.display())]),
            "prefix bundle in D",
        );
    }
}
