//! An OCI image-layout archive (what `podman load` and
//! `skopeo inspect oci-archive:` read): one gzip layer holding the plan, an
//! image config, a manifest and an index naming the tag. No container engine
//! is involved, and the bytes depend only on the inputs.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::Result;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::emit::tar as tarball;
use crate::plan::{Node, Plan};

/// What the image runs and how; fields left empty are left out of the config.
#[derive(Debug, Clone, Default)]
pub struct ImageConfig {
    pub tag: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
}

/// The PATH container runtimes give an image that sets none; `#!/usr/bin/env
/// NAME` scripts are resolved against it, since that is where env will look.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Builds the whole archive in memory.
pub fn archive(plan: &Plan, cfg: &ImageConfig) -> Result<Vec<u8>> {
    let mtime = tarball::source_date_epoch();
    let layer = tarball::gzip_layer(plan, mtime)?;
    let layer_digest = sha256_hex(&layer);
    // The diff_id is the digest of the uncompressed layer.
    let mut tar = Vec::new();
    flate2::read::MultiGzDecoder::new(layer.as_slice()).read_to_end(&mut tar)?;
    let diff_id = sha256_hex(&tar);

    let mut config = serde_json::Map::new();
    config.insert("Entrypoint".into(), json!(cfg.entrypoint));
    if !cfg.cmd.is_empty() {
        config.insert("Cmd".into(), json!(cfg.cmd));
    }
    let mut env = vec![format!("PATH={}", crate::emit::oci::DEFAULT_PATH)];
    for e in &cfg.env {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    config.insert("Env".into(), json!(env));
    if let Some(u) = &cfg.user {
        config.insert("User".into(), json!(u));
    }
    if let Some(w) = &cfg.workdir {
        config.insert("WorkingDir".into(), json!(w));
    }
    let created = rfc3339(mtime);
    let image_config = serde_json::to_vec(&json!({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
        "history": [{"created": created, "created_by": "elfpack"}],
    }))?;
    let config_digest = sha256_hex(&image_config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_digest}"),
            "size": image_config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{layer_digest}"),
            "size": layer.len(),
        }],
    }))?;
    let manifest_digest = sha256_hex(&manifest);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": cfg.tag},
        }],
    }))?;

    // The archive is itself a reproducible tar of the image-layout directory.
    let mut layout = Plan::default();
    let put = |layout: &mut Plan, path: &str, bytes: Vec<u8>| {
        layout.add_data(Path::new(path), bytes, 0o644)
    };
    put(
        &mut layout,
        "/oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    )?;
    put(&mut layout, "/index.json", index)?;
    put(&mut layout, &format!("/blobs/sha256/{layer_digest}"), layer)?;
    put(
        &mut layout,
        &format!("/blobs/sha256/{config_digest}"),
        image_config,
    )?;
    put(
        &mut layout,
        &format!("/blobs/sha256/{manifest_digest}"),
        manifest,
    )?;
    for node in layout.nodes.values_mut() {
        if let Node::Dir { mode } = node {
            *mode = 0o755;
        }
    }
    tarball::to_vec(&layout, mtime)
}

pub fn write_file(plan: &Plan, cfg: &ImageConfig, out: &Path, force: bool) -> Result<()> {
    let bytes = archive(plan, cfg)?;
    crate::output::atomic_write(out, force, |f| Ok(f.write_all(&bytes)?))
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (days-to-civil, proleptic Gregorian).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
