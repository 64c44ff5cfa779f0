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
    // Without --layer-size (or --compare) a tree reports no layer figure:
    // gzipping every file is most of a pack's time.
    let pack = |extra: &[&std::ffi::OsStr]| -> serde_json::Value {
        let o = Command::new(env!("CARGO_BIN_EXE_elfpack"))
            .arg(d.join("h"))
            .args(extra)
            .arg("--json")
            .env("XDG_CACHE_HOME", d.join("cache"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    let null = serde_json::Value::Null;
    let tree = d.join("tree");
    assert_eq!(
        pack(&[&os("--rootfs"), tree.as_os_str()])["layer_bytes"],
        null
    );
    let tree2 = d.join("tree2");
    let r2 = pack(&[&os("--rootfs"), tree2.as_os_str(), &os("--no-layer-size")]);
    assert_eq!(r2["layer_bytes"], null);
    // An image's figure comes free: its layers as built.
    let oci2 = d.join("h2.oci.tar");
    let r3 = pack(&[&os("--oci"), oci2.as_os_str()]);
    assert_eq!(r3["layer_bytes"], oci_layer_sum(&oci2, &d.join("x2")));
    // --layer-size: the tree as the one gzip'd layer `COPY` adds, each entry
    // its own gzip member, so a little over gzip -6 of the whole tarball.
    let tar3 = d.join("h3.tar");
    let r4 = pack(&[&os("-o"), tar3.as_os_str(), &os("--layer-size")]);
    let reported = r4["layer_bytes"].as_u64().unwrap();
    let gz = Command::new("sh")
        .arg("-c")
        .arg(format!("gzip -6 -n -c {} | wc -c", tar3.display()))
        .output()
        .unwrap();
    let gz: u64 = String::from_utf8_lossy(&gz.stdout).trim().parse().unwrap();
    assert!(
        gz <= reported && reported < gz + gz / 5,
        "--layer-size said {reported} B, gzip -6 of the tarball is {gz} B"
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

/// The sizes of an OCI archive's layer blobs, added up (extracted into `x`).
fn oci_layer_sum(archive: &std::path::Path, x: &std::path::Path) -> u64 {
    std::fs::create_dir(x).unwrap();
    let st = Command::new("tar")
        .arg("xf")
        .arg(archive)
        .arg("-C")
        .arg(x)
        .status()
        .unwrap();
    assert!(st.success());
    let json = |p: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let blob = |digest: &serde_json::Value| {
        x.join("blobs/sha256")
            .join(digest.as_str().unwrap().trim_start_matches("sha256:"))
    };
    let index = json(x.join("index.json"));
    let manifest = json(blob(&index["manifests"][0]["digest"]));
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| std::fs::metadata(blob(&l["digest"])).unwrap().len())
        .sum()
}
