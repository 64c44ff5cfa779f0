//! Package metadata for vulnerability scanners (issue 17), checked with the
//! tools that read it: `dpkg-query --admindir` over the image's
//! `/var/lib/dpkg/status.d` stanzas, `md5sum -c` of its `.md5sums` files
//! from the image's root, `pyspdxtools` (PyPI spdx-tools; test.sh installs it
//! into a venv under the target directory) on the `--sbom` document, skopeo
//! and podman on an OCI archive that carries the SBOM as an artifact
//! manifest. The host's dpkg database is the oracle for versions, stanzas
//! and file ownership; `sha1sum`, `sha256sum` for the SBOM's checksums.
//! Package notes (`.note.package`, fixtures/package-note.c) name the package
//! of a file dpkg does not own; a `--sysroot` without a dpkg database gets
//! an SBOM of files alone.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use common::{describe, elfpack, stdout_ok, text, workdir};

const CURL: &str = "/usr/bin/curl";
const STATUS_D: &str = "var/lib/dpkg/status.d";
/// Packages curl's closure must bring (the list, plus curl itself).
const CURL_PACKAGES: [&str; 6] = [
    "curl",
    "libcurl4",
    "libc6",
    "libssl3",
    "libnghttp2-14",
    "zlib1g",
];
const SPDX_MEDIA_TYPE: &str = "application/spdx+json";

/// `elfpack ARGS`, SOURCE_DATE_EPOCH removed unless `epoch` sets it.
fn run(args: &[&str], epoch: Option<&str>) -> Output {
    let mut c = elfpack();
    c.args(args).env_remove("SOURCE_DATE_EPOCH");
    if let Some(e) = epoch {
        c.env("SOURCE_DATE_EPOCH", e);
    }
    c.output().unwrap()
}

/// `elfpack ARGS`, which must succeed.
fn run_ok(args: &[&str]) -> Output {
    let o = run(args, None);
    assert!(o.status.success(), "elfpack {args:?}: {}", describe(&o));
    o
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A command that must succeed; its stdout.
fn cmd_ok(c: &mut Command) -> String {
    let o = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(o.status.success(), "{c:?}: {}", describe(&o));
    text(&o.stdout)
}

fn query(args: &[&str]) -> String {
    cmd_ok(Command::new("dpkg-query").args(args))
}

/// `dpkg-query -W -f '${Version}' PKG` (PKG may be `name:arch`).
fn host_version(pkg: &str) -> String {
    query(&["-W", "-f", "${Version}", pkg])
}

/// The host's `/etc/os-release` values `ID` and `VERSION_ID` (debian, 12).
fn host_distro() -> (String, String) {
    let os = std::fs::read_to_string("/etc/os-release").unwrap();
    let get = |k: &str| {
        os.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    (get("ID"), get("VERSION_ID"))
}

/// The purl the issue specifies:
/// `pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=debian-12`, `+` as `%2B`.
fn expected_purl(name: &str, version: &str, arch: &str) -> String {
    let (id, version_id) = host_distro();
    format!(
        "pkg:deb/{id}/{name}@{}?arch={arch}&distro={id}-{version_id}",
        version.replace('+', "%2B")
    )
}

/// The host's `status` stanzas by (Package, Architecture), each as the
/// database has it, without the blank line that ends it.
fn host_stanzas() -> BTreeMap<(String, String), String> {
    let status = std::fs::read_to_string("/var/lib/dpkg/status").unwrap();
    let mut out = BTreeMap::new();
    for para in status.split("\n\n") {
        let para = para.trim_start_matches('\n');
        if para.is_empty() {
            continue;
        }
        let stanza = format!("{}\n", para.trim_end_matches('\n'));
        let (name, arch) = (field(&stanza, "Package"), field(&stanza, "Architecture"));
        out.insert((name, arch), stanza);
    }
    out
}

/// A field of a stanza (first line only), empty when absent.
fn field(stanza: &str, key: &str) -> String {
    stanza
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}: ")))
        .unwrap_or("")
        .to_string()
}

/// One package of an image's `status.d`.
#[derive(Debug)]
struct Shipped {
    /// The entry's file name: the package name, `name:arch` only when two
    /// shipped packages share the name.
    file: String,
    name: String,
    arch: String,
    version: String,
    stanza: String,
    /// Paths of its `.md5sums`, relative to the image root.
    files: Vec<String>,
}

/// Reads `ROOT/var/lib/dpkg/status.d`.
fn read_status_d(root: &Path) -> Vec<Shipped> {
    let dir = root.join(STATUS_D);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut out = Vec::new();
    for f in names.iter().filter(|n| !n.ends_with(".md5sums")) {
        assert!(
            names.contains(&format!("{f}.md5sums")),
            "{f} has no {f}.md5sums in {names:?}"
        );
        let stanza = std::fs::read_to_string(dir.join(f)).unwrap();
        let sums = std::fs::read_to_string(dir.join(format!("{f}.md5sums"))).unwrap();
        let files = sums
            .lines()
            .map(|l| {
                let (sum, path) = l.split_once("  ").unwrap_or_else(|| panic!("{f}: {l:?}"));
                assert!(
                    sum.len() == 32 && sum.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{f}.md5sums: {l:?}"
                );
                assert!(
                    !path.starts_with('/') && !path.is_empty(),
                    "{f}.md5sums: {l:?}"
                );
                path.to_string()
            })
            .collect();
        out.push(Shipped {
            file: f.clone(),
            name: field(&stanza, "Package"),
            arch: field(&stanza, "Architecture"),
            version: field(&stanza, "Version"),
            stanza,
            files,
        });
    }
    for f in names.iter().filter_map(|n| n.strip_suffix(".md5sums")) {
        assert!(names.iter().any(|n| n == f), "{f}.md5sums without {f}");
    }
    out
}

/// Regular files (not symlinks) under ROOT, relative to it, sorted.
fn regular_files(root: &Path) -> Vec<String> {
    common::walk(root)
        .into_iter()
        .filter(|p| p.symlink_metadata().unwrap().file_type().is_file())
        .map(|p| p.strip_prefix(root).unwrap().to_str().unwrap().to_string())
        .collect()
}

/// Whether image path REL is package metadata rather than a shipped file.
fn is_metadata(rel: &str) -> bool {
    rel.starts_with(&format!("{STATUS_D}/")) || rel == "etc/os-release"
}

/// The host files of a package, canonicalized (merged /usr: dpkg says
/// /lib/x86_64-linux-gnu/libc.so.6, the image has usr/lib/...).
fn host_files(pkg: &str) -> BTreeSet<PathBuf> {
    query(&["-L", pkg])
        .lines()
        .filter_map(|l| std::fs::canonicalize(l).ok())
        .filter(|p| p.is_file())
        .collect()
}

/// Everything the issue says of an image's package metadata, on the tree
/// ROOT (an image's root; `prefix` is the bundle prefix without its leading
/// slash, with a trailing one: "opt/curl/", or ""). Returns status.d.
fn check_tree(root: &Path, prefix: &str) -> Vec<Shipped> {
    let shipped = read_status_d(root);
    let stanzas = host_stanzas();
    let names: Vec<&str> = shipped.iter().map(|p| p.name.as_str()).collect();
    for want in CURL_PACKAGES {
        assert!(names.contains(&want), "{want} not in status.d: {names:?}");
    }
    let mut listed: BTreeMap<&str, &str> = BTreeMap::new();
    for p in &shipped {
        // The entry's name: the package's, or name:arch for a shared name.
        let shared = names.iter().filter(|n| **n == p.name).count() > 1;
        let want_file = if shared {
            format!("{}:{}", p.name, p.arch)
        } else {
            p.name.clone()
        };
        assert_eq!(p.file, want_file);
        // The stanza verbatim, ending with one newline, no blank line.
        let host = stanzas
            .get(&(p.name.clone(), p.arch.clone()))
            .unwrap_or_else(|| panic!("{} {}: not in the host's status", p.name, p.arch));
        assert_eq!(&p.stanza, host, "status.d/{}", p.file);
        assert!(
            p.stanza.ends_with('\n') && !p.stanza.contains("\n\n"),
            "{:?}",
            p.stanza
        );
        assert_eq!(
            p.version,
            host_version(&format!("{}:{}", p.name, p.arch)),
            "{}",
            p.name
        );
        // md5sums: passes `md5sum -c` from the image's root; only the
        // package's own regular files, each listed once.
        assert!(!p.files.is_empty(), "{}.md5sums is empty", p.file);
        let sums = root.join(STATUS_D).join(format!("{}.md5sums", p.file));
        let o = Command::new("md5sum")
            .args(["-c", "--strict"])
            .arg(&sums)
            .current_dir(root)
            .output()
            .unwrap();
        assert!(o.status.success(), "md5sum -c {}: {}", p.file, describe(&o));
        let own = host_files(&format!("{}:{}", p.name, p.arch));
        for f in &p.files {
            assert!(
                root.join(f)
                    .symlink_metadata()
                    .unwrap()
                    .file_type()
                    .is_file(),
                "{}.md5sums: {f} is not a regular file in the image",
                p.file
            );
            let host = f
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("{}.md5sums: {f} outside the prefix {prefix}", p.file));
            let host = std::fs::canonicalize(Path::new("/").join(host))
                .unwrap_or_else(|e| panic!("{}.md5sums: /{host}: {e}", p.file));
            assert!(
                own.contains(&host),
                "{}.md5sums lists {f}, which it does not own on the host ({})",
                p.file,
                host.display()
            );
            if let Some(other) = listed.insert(f, &p.file) {
                panic!("{f} is listed by both {other} and {}", p.file);
            }
        }
    }
    // Every shipped file under usr/ (curl's closure: all Debian's) has its
    // package.
    let usr = format!("{prefix}usr/");
    for f in regular_files(root) {
        if f.starts_with(&usr) {
            assert!(listed.contains_key(f.as_str()), "{f}: in no .md5sums");
        }
    }
    // os-release: the host's bytes.
    assert_eq!(
        text(&std::fs::read(root.join("etc/os-release")).unwrap()),
        text(&std::fs::read("/etc/os-release").unwrap()),
        "etc/os-release"
    );
    // dpkg itself reads the stanzas as a database.
    let adm = tempfile::tempdir().unwrap();
    std::fs::create_dir(adm.path().join("info")).unwrap();
    let joined: Vec<&str> = shipped.iter().map(|p| p.stanza.as_str()).collect();
    std::fs::write(adm.path().join("status"), joined.join("\n")).unwrap();
    let listed_by_dpkg: BTreeSet<String> = query(&[
        &format!("--admindir={}", s(adm.path())),
        "-W",
        "-f",
        "${Package} ${Version}\n",
    ])
    .lines()
    .map(str::to_string)
    .collect();
    let want: BTreeSet<String> = shipped
        .iter()
        .map(|p| {
            format!(
                "{} {}",
                p.name,
                host_version(&format!("{}:{}", p.name, p.arch))
            )
        })
        .collect();
    assert_eq!(listed_by_dpkg, want);
    shipped
}

/// `sha1sum` or `sha256sum` of FILES (relative to ROOT): path -> hex.
fn sums(tool: &str, root: &Path, files: &[String]) -> BTreeMap<String, String> {
    let out = cmd_ok(Command::new(tool).arg("--").args(files).current_dir(root));
    out.lines()
        .map(|l| {
            let (sum, path) = l.split_once("  ").unwrap();
            (path.to_string(), sum.to_string())
        })
        .collect()
}

/// pyspdxtools from the venv test.sh makes under the target directory,
/// else from PATH.
fn pyspdxtools() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("spdx-tools/bin/pyspdxtools");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("pyspdxtools")
    }
}

/// `pyspdxtools -i SBOM` exits 0 (it exits 1 on an invalid document).
fn validate(sbom: &Path) {
    let tool = pyspdxtools();
    let o = Command::new(&tool)
        .arg("-i")
        .arg(sbom)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (./test.sh installs PyPI's spdx-tools into target/spdx-tools)",
                tool.display()
            )
        });
    assert!(o.status.success(), "pyspdxtools -i: {}", describe(&o));
}

/// An SBOM read back: files by fileName, packages by SPDXID, relationships.
struct Sbom {
    doc: Value,
    /// fileName -> (SPDXID, SHA1, SHA256).
    files: BTreeMap<String, (String, String, String)>,
    packages: BTreeMap<String, Value>,
    relationships: BTreeSet<(String, String, String)>,
}

impl Sbom {
    fn read(path: &Path) -> Sbom {
        let doc: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(doc["spdxVersion"], "SPDX-2.3", "{doc:#}");
        assert_eq!(doc["SPDXID"], "SPDXRef-DOCUMENT");
        let mut files = BTreeMap::new();
        for f in doc["files"].as_array().expect("files") {
            let name = f["fileName"].as_str().unwrap().to_string();
            let sum = |alg: &str| {
                f["checksums"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["algorithm"] == alg)
                    .and_then(|c| c["checksumValue"].as_str())
                    .unwrap_or_else(|| panic!("{name}: no {alg} checksum: {f}"))
                    .to_string()
            };
            let id = f["SPDXID"].as_str().unwrap().to_string();
            let (sha1, sha256) = (sum("SHA1"), sum("SHA256"));
            assert!(
                files.insert(name.clone(), (id, sha1, sha256)).is_none(),
                "{name} twice"
            );
        }
        let packages = doc["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .map(|p| (p["SPDXID"].as_str().unwrap().to_string(), p.clone()))
            .collect();
        let relationships = doc["relationships"]
            .as_array()
            .expect("relationships")
            .iter()
            .map(|r| {
                (
                    r["spdxElementId"].as_str().unwrap().to_string(),
                    r["relationshipType"].as_str().unwrap().to_string(),
                    r["relatedSpdxElement"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        Sbom {
            doc,
            files,
            packages,
            relationships,
        }
    }

    fn has(&self, a: &str, rel: &str, b: &str) -> bool {
        self.relationships
            .contains(&(a.to_string(), rel.to_string(), b.to_string()))
    }

    /// The packages named NAME (not the image).
    fn named(&self, name: &str) -> Vec<(&String, &Value)> {
        self.packages
            .iter()
            .filter(|(id, p)| *id != "SPDXRef-Image" && p["name"] == name)
            .collect()
    }

    /// The purls of a package's externalRefs, with PACKAGE-MANAGER (or
    /// PACKAGE_MANAGER) as their category.
    fn purls(p: &Value) -> Vec<String> {
        p["externalRefs"]
            .as_array()
            .map(|refs| {
                refs.iter()
                    .filter(|r| r["referenceType"] == "purl")
                    .map(|r| {
                        let cat = r["referenceCategory"].as_str().unwrap_or("");
                        assert!(cat == "PACKAGE-MANAGER" || cat == "PACKAGE_MANAGER", "{r}");
                        r["referenceLocator"].as_str().unwrap().to_string()
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The image's files have SBOM entries `./PATH` with the SHA-1 and
    /// SHA-256 of the bytes in ROOT, and the SBOM names no other file
    /// (metadata files may be listed or not).
    fn check_files(&self, root: &Path) {
        let all = regular_files(root);
        let sha1 = sums("sha1sum", root, &all);
        let sha256 = sums("sha256sum", root, &all);
        for f in &all {
            let entry = self.files.get(&format!("./{f}"));
            if is_metadata(f) && entry.is_none() {
                continue;
            }
            let (_, s1, s256) = entry.unwrap_or_else(|| panic!("./{f} not in the SBOM's files"));
            assert_eq!(s1, &sha1[f], "SHA1 of {f}");
            assert_eq!(s256, &sha256[f], "SHA256 of {f}");
        }
        for name in self.files.keys() {
            let rel = name
                .strip_prefix("./")
                .unwrap_or_else(|| panic!("fileName {name} does not start with ./"));
            assert!(all.iter().any(|f| f == rel), "{name}: not in the image");
        }
    }
}

/// The SBOM against the image tree ROOT and its status.d: validates; the
/// document describes SPDXRef-Image, which contains each package (with
/// version and purl) and the files no package owns; each package contains
/// its files.
fn check_sbom(path: &Path, root: &Path, shipped: &[Shipped]) -> Sbom {
    validate(path);
    let sbom = Sbom::read(path);
    assert!(
        sbom.packages.contains_key("SPDXRef-Image"),
        "{:?}",
        sbom.packages.keys()
    );
    assert!(sbom.has("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image"));
    sbom.check_files(root);
    // The deb packages are status.d's.
    let sbom_names: BTreeSet<&str> = sbom
        .packages
        .iter()
        .filter(|(id, _)| *id != "SPDXRef-Image")
        .map(|(_, p)| p["name"].as_str().unwrap())
        .collect();
    let status_names: BTreeSet<&str> = shipped.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(sbom_names, status_names);
    let mut owned = BTreeSet::new();
    for p in shipped {
        let found = sbom.named(&p.name);
        let (id, pkg) = found
            .iter()
            .find(|(_, q)| q["versionInfo"] == p.version.as_str())
            .unwrap_or_else(|| panic!("{} {}: {found:?}", p.name, p.version));
        assert_eq!(
            Sbom::purls(pkg),
            vec![expected_purl(&p.name, &p.version, &p.arch)],
            "{pkg:#}"
        );
        assert!(sbom.has("SPDXRef-Image", "CONTAINS", id), "{id}");
        for f in &p.files {
            let (fid, _, _) = &sbom.files[&format!("./{f}")];
            assert!(sbom.has(id, "CONTAINS", fid), "{} CONTAINS ./{f}", p.name);
            owned.insert(f.clone());
        }
    }
    for (name, (fid, _, _)) in &sbom.files {
        if !owned.contains(&name[2..]) {
            assert!(
                sbom.has("SPDXRef-Image", "CONTAINS", fid),
                "SPDXRef-Image CONTAINS {name}"
            );
        }
    }
    sbom
}

/// Extracts an OCI archive into DIR, checking every blob's digest and size
/// as it is read. Returns index.json.
fn unpack_archive(archive: &Path, dir: &Path) -> Value {
    std::fs::create_dir_all(dir).unwrap();
    cmd_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(dir),
    );
    serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap()
}

/// The bytes of the blob a descriptor points to, digest and size checked.
fn blob(dir: &Path, desc: &Value) -> Vec<u8> {
    let digest = desc["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let path = dir.join("blobs/sha256").join(hex);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(desc["size"].as_u64().unwrap(), bytes.len() as u64, "{desc}");
    let got = cmd_ok(Command::new("sha256sum").arg(&path));
    assert_eq!(got.split_whitespace().next().unwrap(), hex, "{desc}");
    bytes
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

/// The image manifest's descriptor: index.json's one entry, or, when that
/// is an image index, its entry with a platform.
fn image_descriptor(dir: &Path, index: &Value) -> Value {
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{index:#}");
    let top = &entries[0];
    if top["mediaType"] == "application/vnd.oci.image.index.v1+json" {
        let inner = json(&blob(dir, top));
        inner["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m.get("platform").is_some())
            .unwrap_or_else(|| panic!("no manifest with a platform: {inner:#}"))
            .clone()
    } else {
        top.clone()
    }
}

/// Unpacks the image's layers, bottom first, into ROOT.
fn unpack_layers(dir: &Path, manifest_desc: &Value, root: &Path) {
    let manifest = json(&blob(dir, manifest_desc));
    std::fs::create_dir_all(root).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        blob(dir, layer);
        let hex = layer["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        cmd_ok(
            Command::new("tar")
                .arg("-xf")
                .arg(dir.join("blobs/sha256").join(hex))
                .arg("-C")
                .arg(root),
        );
    }
}

/// Whether podman tests can run here: root (podman's storage) and podman.
fn podman_here(what: &str) -> bool {
    if !common::require_root(what) {
        return false;
    }
    if Command::new("podman").arg("--version").output().is_err() {
        eprintln!("skipped {what}: no podman (test.sh installs it)");
        return false;
    }
    true
}

#[test]
fn rootfs_has_status_d_md5sums_and_os_release() {
    let w = workdir();
    let root = w.path().join("root");
    run_ok(&[CURL, "--rootfs", s(&root)]);
    check_tree(&root, "");
}

#[test]
fn tar_output_has_the_metadata() {
    let w = workdir();
    let tar = w.path().join("curl.tar");
    run_ok(&[CURL, "-o", s(&tar)]);
    let root = w.path().join("root");
    std::fs::create_dir(&root).unwrap();
    cmd_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&root),
    );
    check_tree(&root, "");
}

#[test]
fn oci_layers_have_the_metadata() {
    let w = workdir();
    let img = w.path().join("curl.tar");
    run_ok(&[CURL, "--oci", s(&img)]);
    let dir = w.path().join("archive");
    let index = unpack_archive(&img, &dir);
    let root = w.path().join("root");
    unpack_layers(&dir, &image_descriptor(&dir, &index), &root);
    check_tree(&root, "");
}

/// A --prefix bundle rewrites files (interpreter, RUNPATH); md5sums hash
/// the bytes the image holds, so `md5sum -c` still passes.
#[test]
fn prefix_bundle_md5sums_hold_rewritten_bytes() {
    let w = workdir();
    let root = w.path().join("root");
    run_ok(&[CURL, "--prefix", "/opt/curl", "--rootfs", s(&root)]);
    let shipped = check_tree(&root, "opt/curl/");
    // Some listed file differs from the host's copy: the check above
    // really covered rewritten files.
    let rewritten = shipped.iter().flat_map(|p| &p.files).any(|f| {
        let host = Path::new("/").join(f.strip_prefix("opt/curl/").unwrap());
        std::fs::read(root.join(f)).unwrap() != std::fs::read(host).unwrap()
    });
    assert!(rewritten, "no md5sums entry is of a rewritten file");
}

#[test]
fn no_package_metadata_writes_none() {
    let w = workdir();
    let root = w.path().join("root");
    run_ok(&[CURL, "--rootfs", s(&root), "--no-package-metadata"]);
    assert!(root.join("usr/bin/curl").is_file());
    assert!(!root.join("var/lib/dpkg").exists());
    assert!(root.join("etc/os-release").symlink_metadata().is_err());
    let img = w.path().join("curl.tar");
    run_ok(&[CURL, "--oci", s(&img), "--no-package-metadata"]);
    let dir = w.path().join("archive");
    let index = unpack_archive(&img, &dir);
    let layers = w.path().join("layers");
    unpack_layers(&dir, &image_descriptor(&dir, &index), &layers);
    assert!(layers.join("usr/bin/curl").is_file());
    assert!(!layers.join("var/lib/dpkg").exists());
    assert!(layers.join("etc/os-release").symlink_metadata().is_err());
}

/// `elfpack curl --rootfs DIR/root --sbom DIR/image.spdx.json` (the
/// output names enter the document: each pack gets the same ones).
fn pack_with_sbom(dir: &Path, epoch: Option<&str>) -> (PathBuf, PathBuf) {
    let (root, sbom) = (dir.join("root"), dir.join("image.spdx.json"));
    let o = run(&[CURL, "--rootfs", s(&root), "--sbom", s(&sbom)], epoch);
    assert!(o.status.success(), "{}", describe(&o));
    (root, sbom)
}

#[test]
fn sbom_validates_and_matches_the_tree() {
    let w = workdir();
    let (root, sbom) = pack_with_sbom(&w.path().join("a"), None);
    let shipped = check_tree(&root, "");
    let doc = check_sbom(&sbom, &root, &shipped).doc;
    assert_eq!(doc["creationInfo"]["created"], "1970-01-01T00:00:00Z");
    // Reproducible: a second pack writes the same bytes.
    let (_, sbom2) = pack_with_sbom(&w.path().join("b"), None);
    assert!(
        std::fs::read(&sbom).unwrap() == std::fs::read(&sbom2).unwrap(),
        "two packs wrote different SBOMs: {} {}",
        sbom.display(),
        sbom2.display()
    );
    // SOURCE_DATE_EPOCH is the creation time, and changes nothing else
    // (but the namespace, which may be made from the whole document).
    let (_, sbom3) = pack_with_sbom(&w.path().join("c"), Some("1700000000"));
    let doc3 = Sbom::read(&sbom3).doc;
    assert_eq!(doc3["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    let mut same = doc3.clone();
    for k in ["creationInfo", "documentNamespace"] {
        same[k] = doc[k].clone();
    }
    assert_eq!(same, doc);
    let (_, sbom4) = pack_with_sbom(&w.path().join("d"), Some("1700000000"));
    assert!(std::fs::read(&sbom3).unwrap() == std::fs::read(&sbom4).unwrap());
}

/// `--oci --sbom`: index.json's one entry is an image index holding the
/// image manifest and an SPDX artifact manifest whose subject is the image.
#[test]
fn oci_archive_carries_the_sbom_as_an_artifact() {
    let w = workdir();
    let (img, sbom) = (w.path().join("curl.tar"), w.path().join("curl.spdx.json"));
    let tag = "elfpack-sbom-test:1";
    run_ok(&[CURL, "--oci", s(&img), "--sbom", s(&sbom), "--tag", tag]);
    let dir = w.path().join("archive");
    let index = unpack_archive(&img, &dir);
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{index:#}");
    assert_eq!(
        entries[0]["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index:#}"
    );
    let inner = json(&blob(&dir, &entries[0]));
    let manifests = inner["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 2, "{inner:#}");
    let (with_platform, other): (Vec<&Value>, Vec<&Value>) =
        manifests.iter().partition(|m| m.get("platform").is_some());
    assert_eq!((with_platform.len(), other.len()), (1, 1), "{inner:#}");
    let (image, artifact) = (with_platform[0], other[0]);
    assert_eq!(
        image["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let image_manifest = json(&blob(&dir, image));
    assert!(
        image_manifest.get("artifactType").is_none(),
        "{image_manifest:#}"
    );
    let art = json(&blob(&dir, artifact));
    assert_eq!(art["artifactType"], SPDX_MEDIA_TYPE, "{art:#}");
    for k in ["mediaType", "digest", "size"] {
        assert_eq!(art["subject"][k], image[k], "subject.{k}: {art:#}");
    }
    let layers = art["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "{art:#}");
    assert_eq!(layers[0]["mediaType"], SPDX_MEDIA_TYPE);
    assert!(
        blob(&dir, &layers[0]) == std::fs::read(&sbom).unwrap(),
        "the artifact's layer is not the --sbom file"
    );
    // The SBOM describes the image the archive holds.
    let root = w.path().join("root");
    unpack_layers(&dir, image, &root);
    let shipped = check_tree(&root, "");
    check_sbom(&sbom, &root, &shipped);

    if !podman_here("skopeo inspect, podman load and run") {
        return;
    }
    let config = cmd_ok(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}", s(&img))),
    );
    let v: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(v["Architecture"], "amd64", "{v:#}");
    let full = format!("localhost/{tag}");
    struct Rmi<'a>(&'a str);
    impl Drop for Rmi<'_> {
        fn drop(&mut self) {
            let _ = Command::new("podman").args(["rmi", "-f", self.0]).output();
        }
    }
    let _rmi = Rmi(&full);
    let o = common::podman_load(&img);
    assert!(o.status.success(), "podman load: {}", describe(&o));
    let out = cmd_ok(common::podman_run().arg(&full).arg("--version"));
    assert!(out.starts_with("curl "), "{out}");
}

/// One parsed `deps --packages` line: path -> "NAME VERSION ARCH" or "-".
fn deps_lines(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .map(|l| {
            let (path, pkg) = l
                .split_once('\t')
                .unwrap_or_else(|| panic!("no tab in {l:?}"));
            assert!(path.starts_with('/'), "{l:?}");
            assert!(
                pkg == "-" || pkg.split(' ').count() == 3,
                "not NAME VERSION ARCH: {l:?}"
            );
            (path.to_string(), pkg.to_string())
        })
        .collect()
}

/// The `deps --packages --json` files, as the text form would print them.
fn deps_json_as_lines(v: &Value) -> BTreeMap<String, String> {
    v["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap().to_string();
            let pkg = if f["package"].is_null() {
                "-".to_string()
            } else {
                format!(
                    "{} {} {}",
                    f["package"].as_str().unwrap(),
                    f["version"].as_str().unwrap(),
                    f["arch"].as_str().unwrap()
                )
            };
            (path, pkg)
        })
        .collect()
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap()
}

#[test]
fn deps_packages_names_libcurl4() {
    let out = stdout_ok(run(&["deps", "--packages", CURL], None));
    let lines = deps_lines(&out);
    let libcurl4 = format!("libcurl4 {} amd64", host_version("libcurl4:amd64"));
    let libcurl: Vec<_> = lines
        .iter()
        .filter(|(p, _)| file_name(p).starts_with("libcurl.so.4"))
        .collect();
    assert!(!libcurl.is_empty(), "{out}");
    for (_, pkg) in &libcurl {
        assert_eq!(**pkg, libcurl4, "{out}");
    }
    assert_eq!(
        lines[CURL],
        format!("curl {} amd64", host_version("curl:amd64"))
    );
    let libc6 = format!("libc6 {} amd64", host_version("libc6:amd64"));
    assert!(
        lines
            .iter()
            .any(|(p, pkg)| file_name(p) == "libc.so.6" && *pkg == libc6),
        "{out}"
    );

    let v: Value = serde_json::from_str(&stdout_ok(run(
        &["deps", "--packages", "--json", CURL],
        None,
    )))
    .expect("deps --packages --json prints JSON");
    assert_eq!(deps_json_as_lines(&v), lines);
    for f in v["files"].as_array().unwrap() {
        let from = f["from"].as_str();
        if f["package"].is_null() {
            assert!(from.is_none(), "{f}");
        } else {
            assert_eq!(from, Some("dpkg"), "{f}");
        }
    }
    let packages = v["packages"].as_array().expect("packages");
    let p = packages
        .iter()
        .find(|p| p["name"] == "libcurl4")
        .unwrap_or_else(|| panic!("{v:#}"));
    let version = host_version("libcurl4:amd64");
    assert_eq!(p["version"], version.as_str());
    assert_eq!(p["arch"], "amd64");
    assert_eq!(p["from"], "dpkg");
    assert_eq!(
        p["purl"],
        expected_purl("libcurl4", &version, "amd64").as_str()
    );
    for want in CURL_PACKAGES {
        assert!(packages.iter().any(|p| p["name"] == want), "{want}: {v:#}");
    }
}

/// A program no package owns, carrying a `.note.package`: deps and the
/// SBOM name the note's package; the same program without a note is "-".
#[test]
fn package_note_names_an_unowned_program() {
    let w = workdir();
    let noted = common::compile(w.path(), "package-note.c", &[]);
    let plain = common::compile(w.path(), "hello.c", &[]);
    let readelf = cmd_ok(Command::new("readelf").arg("-n").arg(&noted));
    assert!(readelf.contains("\"name\":\"hello-note\""), "{readelf}");

    let v: Value = serde_json::from_str(&stdout_ok(run(
        &["deps", "--packages", "--json", s(&noted), s(&plain)],
        None,
    )))
    .unwrap();
    let file = |p: &Path| {
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == s(p))
            .unwrap_or_else(|| panic!("{}: {v:#}", p.display()))
            .clone()
    };
    let f = file(&noted);
    assert_eq!(
        (&f["package"], &f["version"], &f["arch"], &f["from"]),
        (
            &Value::from("hello-note"),
            &Value::from("1.2-3"),
            &Value::from("amd64"),
            &Value::from("note")
        ),
        "{f}"
    );
    assert!(file(&plain)["package"].is_null());
    let p = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "hello-note")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(
        (&p["version"], &p["from"]),
        (&Value::from("1.2-3"), &Value::from("note"))
    );

    // The SBOM: a package hello-note 1.2-3 containing the program.
    let (root, sbom) = (w.path().join("root"), w.path().join("note.spdx.json"));
    run_ok(&[s(&noted), "--rootfs", s(&root), "--sbom", s(&sbom)]);
    validate(&sbom);
    let doc = Sbom::read(&sbom);
    doc.check_files(&root);
    let found = doc.named("hello-note");
    assert_eq!(found.len(), 1, "{:#}", doc.doc);
    let (id, pkg) = found[0];
    assert_eq!(pkg["versionInfo"], "1.2-3");
    assert!(doc.has("SPDXRef-Image", "CONTAINS", id));
    let rel = format!(".{}", s(&noted));
    let (fid, _, _) = doc
        .files
        .get(&rel)
        .unwrap_or_else(|| panic!("{rel} not in the SBOM's files"));
    assert!(doc.has(id, "CONTAINS", fid), "hello-note CONTAINS {rel}");
    assert!(!doc.named("libc6").is_empty());

    // The text form: PATH<TAB>NAME VERSION ARCH, as the JSON says.
    let out = stdout_ok(run(&["deps", "--packages", s(&noted), s(&plain)], None));
    let lines = deps_lines(&out);
    assert_eq!(lines[s(&noted)], "hello-note 1.2-3 amd64", "{out}");
    assert_eq!(lines[s(&plain)], "-", "{out}");
    let libc6 = format!("libc6 {} amd64", host_version("libc6:amd64"));
    assert!(
        lines
            .iter()
            .any(|(p, pkg)| file_name(p) == "libc.so.6" && *pkg == libc6),
        "{out}"
    );
    assert_eq!(deps_json_as_lines(&v), lines);
}

/// A root with no dpkg database (a copy of a program and its libraries):
/// one warning, and an SBOM of files with checksums but no packages.
#[test]
fn sysroot_without_dpkg_gets_an_sbom_of_files() {
    let w = workdir();
    let sys = w.path().join("sysroot");
    let lib = sys.join("usr/lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::create_dir_all(sys.join("usr/lib64")).unwrap();
    std::fs::create_dir_all(sys.join("opt")).unwrap();
    std::os::unix::fs::symlink("usr/lib", sys.join("lib")).unwrap();
    std::os::unix::fs::symlink("usr/lib64", sys.join("lib64")).unwrap();
    for f in ["libc.so.6", "ld-linux-x86-64.so.2", "libgcc_s.so.1"] {
        std::fs::copy(Path::new("/lib/x86_64-linux-gnu").join(f), lib.join(f)).unwrap();
    }
    std::os::unix::fs::symlink(
        "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        sys.join("usr/lib64/ld-linux-x86-64.so.2"),
    )
    .unwrap();
    common::compile_to(&sys.join("opt/hello"), "hello.c", &[]);
    assert!(!sys.join("var/lib/dpkg/status").exists());

    let (root, sbom) = (w.path().join("root"), w.path().join("sys.spdx.json"));
    let o = run(
        &[
            "--sysroot",
            s(&sys),
            "/opt/hello",
            "--rootfs",
            s(&root),
            "--sbom",
            s(&sbom),
        ],
        None,
    );
    assert!(o.status.success(), "{}", describe(&o));
    let stderr = text(&o.stderr);
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("package metadata is unavailable"))
            .count(),
        1,
        "{stderr}"
    );
    assert!(root.join("opt/hello").is_file());
    assert!(!root.join(STATUS_D).exists());
    validate(&sbom);
    let doc = Sbom::read(&sbom);
    assert_eq!(
        doc.packages.keys().collect::<Vec<_>>(),
        vec!["SPDXRef-Image"],
        "{:#}",
        doc.doc
    );
    assert!(doc.has("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image"));
    doc.check_files(&root);
    for want in ["./opt/hello", "./usr/lib/x86_64-linux-gnu/libc.so.6"] {
        let (id, _, sha256) = doc
            .files
            .get(want)
            .unwrap_or_else(|| panic!("{want} not in the SBOM: {:#}", doc.doc));
        assert_eq!(sha256.len(), 64);
        assert!(doc.has("SPDXRef-Image", "CONTAINS", id), "{want}");
    }

    // deps --packages: every file unowned.
    let o = run(
        &["deps", "--packages", "--sysroot", s(&sys), "/opt/hello"],
        None,
    );
    let lines = deps_lines(&stdout_ok(o));
    assert!(lines.contains_key("/opt/hello"), "{lines:?}");
    assert!(lines.values().all(|p| p == "-"), "{lines:?}");
}
