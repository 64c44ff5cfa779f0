//! `elfpack deps --packages`: each file a pack would ship, with the package
//! it comes from, as the image's package metadata and SBOM will say.

use serde_json::json;

use crate::plan::package_metadata::Provenance;
use crate::plan::{Node, Plan};

/// One line per regular file: `PATH<TAB>NAME VERSION ARCH`, or
/// `PATH<TAB>-` for a file no package owns (a user's program, generated
/// /etc files). Whether a package is dpkg's or an ELF note's is in `--json`.
pub fn text(plan: &Plan, prov: &Provenance) -> String {
    let mut out = String::new();
    for path in files(plan) {
        let owner = match prov.owner_of(path) {
            Some(p) => format!("{} {} {}", p.name, p.version, p.arch),
            None => "-".to_string(),
        };
        out.push_str(&format!("{}\t{owner}\n", path.display()));
    }
    out
}

/// `{"files":[{"path","package","version","arch","from"}],
/// "packages":[{"name","version","arch","purl","from"}]}`; `package` and
/// the rest are null for a file no package owns.
pub fn json(plan: &Plan, prov: &Provenance) -> String {
    let files: Vec<_> = files(plan)
        .map(|path| {
            let p = prov.owner_of(path);
            json!({
                "path": path.display().to_string(),
                "package": p.map(|p| &p.name),
                "version": p.map(|p| &p.version),
                "arch": p.map(|p| &p.arch),
                "from": p.map(|p| p.from),
            })
        })
        .collect();
    let packages: Vec<_> = prov
        .packages
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "version": p.version,
                "arch": p.arch,
                "source": format!("{} {}", p.source.0, p.source.1),
                "purl": prov.purl(p),
                "from": p.from,
            })
        })
        .collect();
    json!({ "files": files, "packages": packages }).to_string()
}

fn files(plan: &Plan) -> impl Iterator<Item = &std::path::PathBuf> {
    plan.nodes
        .iter()
        .filter(|(_, n)| matches!(n, Node::File { .. } | Node::Data { .. }))
        .map(|(p, _)| p)
}
