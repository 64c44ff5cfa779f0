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
    let oci = d.join("h.oci.tar");
    let o = Command::new(env!("CARGO_BIN_EXE_elfpack"))
        .arg(d.join("h"))
        .arg("-o")
        .arg(&tar)
        .arg("--oci")
        .arg(&oci)
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
        r["outputs"][1]["bytes"],
        std::fs::metadata(&oci).unwrap().len()
    );
    assert_eq!(
        r["static_build"]["bytes"],
        std::fs::metadata(d.join("h.static")).unwrap().len()
    );
    // The OCI archive has two layers, the shared C runtime then the program;
    // together they hold exactly the tarball's entries, and the reported
    // layer (the tree as one gzip'd layer, what `COPY` adds) differs from
    // their sum only by the directories both repeat and one more tar end.
    let x = d.join("x");
    std::fs::create_dir(&x).unwrap();
    assert!(
        Command::new("tar")
            .arg("xf")
            .arg(&oci)
            .arg("-C")
            .arg(&x)
            .status()
            .unwrap()
            .success()
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.join("index.json")).unwrap()).unwrap();
    let blob = |digest: &str| {
        x.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let layers: Vec<_> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| blob(l["digest"].as_str().unwrap()))
        .collect();
    assert_eq!(layers.len(), 2, "{manifest}");
    let listing = |args: &[&std::path::Path], z: &str| {
        let mut all = std::collections::BTreeSet::new();
        for a in args {
            let o = Command::new("tar").arg(z).arg(a).output().unwrap();
            assert!(o.status.success());
            all.extend(String::from_utf8_lossy(&o.stdout).lines().map(String::from));
        }
        all
    };
    assert_eq!(
        listing(
            &layers.iter().map(|l| l.as_path()).collect::<Vec<_>>(),
            "tzvf"
        ),
        listing(&[tar.as_path()], "tvf")
    );
    let sum: u64 = layers
        .iter()
        .map(|l| std::fs::metadata(l).unwrap().len())
        .sum();
    let reported = r["layer_bytes"].as_u64().unwrap();
    assert!(
        sum >= reported && sum - reported < 2048,
        "layers {sum} B, reported {reported} B"
    );
    // Input bytes = the files in the tarball.
    let list = Command::new("tar").arg("tvf").arg(&tar).output().unwrap();
    let sum: u64 = String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(|l| l.split_whitespace().nth(2).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(r["input_bytes"], sum);
}
