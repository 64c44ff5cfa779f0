//! `--sbom FILE`: an SPDX 2.3 JSON document of what an output holds.
//!
//! Follows SPDX 2.3 (<https://spdx.github.io/spdx-spec/v2.3/>): the output
//! is the root package (`SPDXRef-Image`), which the document DESCRIBES and
//! which CONTAINS every Debian package with a shipped file; each package
//! CONTAINS its files, and the root package the files no package owns (a
//! user's program, /usr/local). Every regular file has its SHA-1 (2.3
//! requires it) and SHA-256 of the bytes the output holds. Packages carry
//! a purl (purl-spec `deb` type), the identifier scanners match
//! vulnerabilities on. Licences are NOASSERTION: Debian packages state
//! theirs in free-form copyright files, which elfpack does not interpret.
//!
//! The document is reproducible: entries are sorted, the creation time is
//! `SOURCE_DATE_EPOCH` (0 when unset), and the namespace is derived from
//! the content, so the same inputs give the same bytes.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;
use sha1::Digest as _;

use crate::plan::package_metadata::{Provenance, ShippedPackage, hex};
use crate::plan::{Node, Plan};

/// The root package's SPDX identifier.
pub const ROOT_ID: &str = "SPDXRef-Image";

/// SPDX identifiers allow letters, digits, `.` and `-` only.
fn spdx_id(prefix: &str, s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{prefix}{clean}")
}

fn package_id(p: &ShippedPackage) -> String {
    spdx_id(
        "SPDXRef-Package-",
        &format!("{}-{}-{}", p.from, p.name, p.arch),
    )
}

/// `Name <mail>` (a Debian Maintainer field) as an SPDX actor:
/// `Organization: Name (mail)`.
fn supplier(maintainer: Option<&str>) -> String {
    match maintainer {
        None => "NOASSERTION".to_string(),
        Some(m) => match m.split_once('<') {
            Some((name, mail)) => format!(
                "Organization: {} ({})",
                name.trim(),
                mail.trim_end_matches('>').trim()
            ),
            None => format!("Organization: {}", m.trim()),
        },
    }
}

/// The SPDX document of `plan`. `name` names the output (an image tag, a
/// directory); `under` is a prefix stripped from the image paths (a single
/// file's placeholder) so file names are those inside the output.
pub fn document(
    plan: &Plan,
    prov: &Provenance,
    name: &str,
    under: Option<&Path>,
    purpose: &str,
) -> Result<Vec<u8>> {
    let mut files = Vec::new();
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": ROOT_ID,
    })];
    let mut content = sha2::Sha256::new();
    // Per containing package: its files' SHA-1s, for its verification code.
    let mut contained: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for p in &prov.packages {
        relationships.push(json!({
            "spdxElementId": ROOT_ID,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": package_id(p),
        }));
    }
    for (n, (path, node)) in plan
        .nodes
        .iter()
        .filter(|(_, n)| matches!(n, Node::File { .. } | Node::Data { .. }))
        .enumerate()
    {
        let (sha1, sha256) = digests(node)?;
        let shown = match under.map(|u| path.strip_prefix(u)) {
            Some(Ok(rel)) => Path::new("/").join(rel),
            _ => path.clone(),
        };
        let file_name = format!(".{}", shown.display());
        content.update(file_name.as_bytes());
        content.update(sha256.as_bytes());
        let id = format!("SPDXRef-File-{n}");
        files.push(json!({
            "SPDXID": id,
            "fileName": file_name,
            "checksums": [
                {"algorithm": "SHA1", "checksumValue": sha1},
                {"algorithm": "SHA256", "checksumValue": sha256},
            ],
            "licenseConcluded": "NOASSERTION",
            "copyrightText": "NOASSERTION",
        }));
        let container = match prov.owner_of(path) {
            Some(p) => package_id(p),
            None => ROOT_ID.to_string(),
        };
        contained
            .entry(container.clone())
            .or_default()
            .push(sha1.clone());
        relationships.push(json!({
            "spdxElementId": container,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }
    let mut packages = vec![json!({
        "SPDXID": ROOT_ID,
        "name": name,
        "downloadLocation": "NOASSERTION",
        "primaryPackagePurpose": purpose,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "supplier": "NOASSERTION",
    })];
    for p in &prov.packages {
        content.update(p.name.as_bytes());
        content.update(p.version.as_bytes());
        let mut pkg = json!({
            "SPDXID": package_id(p),
            "name": p.name,
            "versionInfo": p.version,
            "supplier": supplier(p.maintainer.as_deref()),
            "downloadLocation": "NOASSERTION",
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
            "copyrightText": "NOASSERTION",
        });
        pkg["externalRefs"] = json!([{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": prov.purl(p),
        }]);
        if p.source != (p.name.clone(), p.version.clone()) {
            pkg["sourceInfo"] = json!(format!(
                "built from source package {} {}",
                p.source.0, p.source.1
            ));
        }
        if p.from == "note" {
            pkg["comment"] = json!("from the file's ELF package note (.note.package)");
        }
        packages.push(pkg);
    }
    // A package that CONTAINS files has had them analysed (SPDX 2.3, 7.8),
    // which needs their verification code (7.9).
    for pkg in &mut packages {
        let id = pkg["SPDXID"].as_str().unwrap_or_default().to_string();
        match contained.get_mut(&id) {
            Some(sums) => {
                sums.sort();
                let code = hex(&sha1::Sha1::digest(sums.concat().as_bytes()));
                pkg["filesAnalyzed"] = json!(true);
                pkg["packageVerificationCode"] = json!({ "packageVerificationCodeValue": code });
            }
            None => pkg["filesAnalyzed"] = json!(false),
        }
    }
    let digest = hex(&content.finalize());
    let mut comment = String::from("Made by elfpack from the files of its output.");
    match &prov.os_release {
        Some(o) if !o.pretty_name.is_empty() => {
            comment.push_str(&format!(" Files come from {}.", o.pretty_name))
        }
        _ => {}
    }
    if !prov.have_dpkg {
        comment.push_str(" No dpkg database: packages are unknown, files and checksums only.");
    }
    let doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": format!(
            "https://spdx.org/spdxdocs/elfpack/{}-{}",
            spdx_id("", name),
            &digest[..32]
        ),
        "comment": comment,
        "creationInfo": {
            "created": crate::emit::oci::rfc3339(crate::emit::tar::source_date_epoch()),
            "creators": [format!("Tool: elfpack-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "files": files,
        "relationships": relationships,
    });
    let mut out = serde_json::to_vec_pretty(&doc)?;
    out.push(b'\n');
    Ok(out)
}

/// SHA-1 and SHA-256 of a file node's bytes, in hex.
fn digests(node: &Node) -> Result<(String, String)> {
    let mut s1 = sha1::Sha1::new();
    let mut s256 = sha2::Sha256::new();
    let mut feed = |b: &[u8]| {
        s1.update(b);
        s256.update(b);
    };
    match node {
        Node::Data { bytes, .. } => feed(bytes),
        Node::File { src, .. } => {
            let bytes =
                std::fs::read(src).with_context(|| format!("{}: cannot read", src.display()))?;
            feed(&bytes);
        }
        _ => {}
    }
    Ok((hex(&s1.finalize()), hex(&s256.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintainers_become_spdx_actors() {
        assert_eq!(
            supplier(Some("GNU Libc Maintainers <debian-glibc@lists.debian.org>")),
            "Organization: GNU Libc Maintainers (debian-glibc@lists.debian.org)"
        );
        assert_eq!(supplier(None), "NOASSERTION");
    }

    #[test]
    fn ids_hold_only_allowed_characters() {
        assert_eq!(
            spdx_id("SPDXRef-", "libstdc++6:amd64"),
            "SPDXRef-libstdc--6-amd64"
        );
    }
}
