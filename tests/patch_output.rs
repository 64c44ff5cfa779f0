//! Where `elfpack patch` writes, following patchelf (0.14, Debian 12): a
//! symlink given as the file is edited through (the link stays, its target
//! changes), and `-o` onto an existing file replaces its content, through a
//! symlink too.

mod common;

use common::{describe, run_elfpack};
use std::path::Path;

fn rpath(p: &Path) -> String {
    let o = run_elfpack(&["patch", "--print-rpath", p.to_str().unwrap()]);
    assert!(o.status.success(), "{}", describe(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn patch_edits_a_symlinks_target_and_output_follows_links() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let prog = d.join("prog");
    std::fs::copy("/bin/true", &prog).unwrap();
    let link = d.join("link");
    std::os::unix::fs::symlink("prog", &link).unwrap();

    // In place through a symlink: the link stays a link, the target changes.
    let o = run_elfpack(&["patch", "--set-rpath", "/x", link.to_str().unwrap()]);
    assert!(o.status.success(), "{}", describe(&o));
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(meta.file_type().is_symlink(), "the symlink was replaced");
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("prog"));
    assert_eq!(rpath(&prog), "/x");

    // -o onto an existing file replaces it, as patchelf --output does.
    let existing = d.join("existing");
    std::fs::write(&existing, "old").unwrap();
    let o = run_elfpack(&[
        "patch",
        "--set-rpath",
        "/y",
        prog.to_str().unwrap(),
        "-o",
        existing.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", describe(&o));
    assert_eq!(rpath(&existing), "/y");
    assert_eq!(rpath(&prog), "/x", "the input changed");

    // -o onto a symlink writes where it points; the link stays.
    let out_link = d.join("out-link");
    std::os::unix::fs::symlink("existing", &out_link).unwrap();
    let o = run_elfpack(&[
        "patch",
        "--set-rpath",
        "/z",
        prog.to_str().unwrap(),
        "-o",
        out_link.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", describe(&o));
    assert!(
        std::fs::symlink_metadata(&out_link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(rpath(&existing), "/z");
    // The edited program still runs.
    let o = std::process::Command::new(&existing).output().unwrap();
    assert!(o.status.success(), "{}", describe(&o));
}
