//! The pack report's figures match what `ls -l` and gzip say.

use std::process::Command;

#[test]
fn report_figures_match_the_files() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    let src = d.join("h.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\nint main(void){puts(\"hello\");return 0;}\n",
    )
    .unwrap();
    for (out, extra) in [("h", vec![]), ("h.static", vec!["-static"])] {
        let st = Command::new("gcc")
            .arg(&src)
            .arg("-o")
            .arg(d.join(out))
            .args(extra)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let tar = d.join("h.tar");
    let o = Command::new(env!("CARGO_BIN_EXE_elfpack"))
        .arg(d.join("h"))
        .arg("-o")
        .arg(&tar)
        .arg("--compare")
        .arg(d.join("h.static"))
        .arg("--json")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        r["outputs"][0]["bytes"],
        std::fs::metadata(&tar).unwrap().len()
    );
    assert_eq!(
        r["static_build"]["bytes"],
        std::fs::metadata(d.join("h.static")).unwrap().len()
    );
    // The layer is the tarball gzip'd deterministically: gzip -6 -n gives
    // the same compressed stream (both are zlib-compatible deflate at level 6).
    let gz = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -6 -n -c {} | wc -c", tar.display()))
        .output()
        .unwrap();
    let gz: u64 = String::from_utf8_lossy(&gz.stdout).trim().parse().unwrap();
    let ours = r["layer_bytes"].as_u64().unwrap();
    // Different deflate implementations may differ by a few bytes per block.
    let diff = ours.abs_diff(gz) as f64 / gz as f64;
    assert!(diff < 0.01, "layer {ours} vs gzip -6 {gz}");
    // Input bytes = the files in the tarball.
    let list = Command::new("tar").arg("tvf").arg(&tar).output().unwrap();
    let sum: u64 = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| l.split_whitespace().nth(2).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(r["input_bytes"], sum);
}
