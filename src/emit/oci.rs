//! OCI images: the blobs of one image per platform (a gzip layer for the
//! C runtime the plan shares, one for the rest, a config, a manifest, and an
//! index when there are several platforms), built once and handed to a
//! [`Destination`]: an image-layout archive ([`Archive`], what `podman load`
//! and `skopeo inspect oci-archive:` read) or a registry
//! ([`crate::emit::registry`]), as ko's publishers share one image. No
//! container engine is involved, and the bytes depend only on the inputs.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, HistoryBuilder, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, Os, PlatformBuilder, RootFsBuilder,
};
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

/// Refuses a config the image could not start with, at pack time rather
/// than at `podman run`: a relative working directory, a user or group name
/// the image's /etc/passwd or /etc/group does not have (a numeric ID is
/// always fine), an environment entry that is not `NAME=VALUE`.
pub fn check_config(plan: &Plan, cfg: &ImageConfig) -> Result<()> {
    if let Some(w) = &cfg.workdir
        && !w.starts_with('/')
    {
        anyhow::bail!("--workdir {w}: must be an absolute path (runtimes refuse a relative one)");
    }
    if let Some(u) = &cfg.user {
        let (user, group) = match u.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (u.as_str(), None),
        };
        check_id(plan, u, user, "/etc/passwd", "user")?;
        if let Some(g) = group {
            check_id(plan, u, g, "/etc/group", "group")?;
        }
    }
    for e in &cfg.env {
        crate::plan::bundle::env_var(e)?;
    }
    Ok(())
}

fn check_id(plan: &Plan, spec: &str, name: &str, file: &str, what: &str) -> Result<()> {
    if name.is_empty() {
        anyhow::bail!("--user {spec}: the {what} is empty");
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(());
    }
    let text = match plan.nodes.get(Path::new(file)) {
        Some(Node::Data { bytes, .. }) => String::from_utf8_lossy(bytes).into_owned(),
        Some(Node::File { src, .. }) => std::fs::read_to_string(src).unwrap_or_default(),
        _ => anyhow::bail!(
            "--user {spec}: the image has no {file} to find the {what} {name:?} in; give a numeric ID"
        ),
    };
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split(':').next())
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .collect();
    if !names.contains(&name) {
        anyhow::bail!(
            "--user {spec}: no {what} {name:?} in the image's {file} (it has {}); give a numeric ID or --host-users",
            names.join(", ")
        );
    }
    Ok(())
}

/// One content-addressed piece of an image.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: MediaType,
    /// `sha256:<hex>`.
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: MediaType, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type,
            digest: format!("sha256:{}", sha256_hex(&bytes)),
            bytes,
        }
    }

    pub fn descriptor(&self) -> Result<Descriptor> {
        Ok(Descriptor::new(
            self.media_type.clone(),
            self.bytes.len() as u64,
            oci_spec::image::Digest::try_from(self.digest.as_str())?,
        ))
    }

    /// The hex part of the digest (the blob's file name in a layout).
    pub fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }
}

/// The machine an image runs on, as OCI names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub architecture: Arch,
    pub variant: Option<String>,
}

impl Default for Platform {
    fn default() -> Self {
        Platform {
            architecture: Arch::Amd64,
            variant: None,
        }
    }
}

impl Platform {
    /// The OCI platform of an ELF machine (`e_machine`).
    pub fn of(machine: u16) -> Result<Platform> {
        match machine {
            goblin::elf::header::EM_X86_64 => Ok(Platform::default()),
            goblin::elf::header::EM_AARCH64 => Ok(Platform {
                architecture: Arch::ARM64,
                variant: Some("v8".into()),
            }),
            m => anyhow::bail!("no OCI platform for ELF machine {m}"),
        }
    }

    fn descriptor_platform(&self) -> Result<oci_spec::image::Platform> {
        let mut b = PlatformBuilder::default()
            .architecture(self.architecture.clone())
            .os(Os::Linux);
        if let Some(v) = &self.variant {
            b = b.variant(v.clone());
        }
        Ok(b.build()?)
    }
}

/// One platform's image.
#[derive(Debug, Clone)]
pub struct Image {
    pub platform: Platform,
    /// Bottom first: the shared C runtime (when the plan has one), then the rest.
    pub layers: Vec<Blob>,
    pub config: Blob,
    pub manifest: Blob,
}

/// What a destination receives: one image, or one per platform under an index.
#[derive(Debug, Clone)]
pub struct ImageSet {
    pub images: Vec<Image>,
    pub index: Option<Blob>,
    /// Artifacts that refer to an image (an SBOM): their manifests, then
    /// their configs and contents. Listed by the index.
    pub artifacts: Vec<Blob>,
}

impl ImageSet {
    /// The manifest or index a tag names.
    pub fn top(&self) -> &Blob {
        self.index.as_ref().unwrap_or(&self.images[0].manifest)
    }

    /// Every layer and config, each once, in image order.
    pub fn data_blobs(&self) -> Vec<&Blob> {
        let mut out: Vec<&Blob> = Vec::new();
        for i in &self.images {
            for b in i.layers.iter().chain([&i.config]) {
                if !out.iter().any(|o| o.digest == b.digest) {
                    out.push(b);
                }
            }
        }
        out
    }
}

/// A place images go (an OCI archive, a registry). Returns the digest of what
/// the tag names (the manifest, or the index of a multi-platform image).
pub trait Destination {
    fn publish(&mut self, images: &ImageSet) -> Result<String>;
}

/// Builds the image of each plan (one per platform; several make an index).
pub fn build(plans: &[(&Plan, Platform)], cfg: &ImageConfig) -> Result<ImageSet> {
    let mtime = tarball::source_date_epoch();
    let mut images = Vec::new();
    for (plan, platform) in plans {
        images.push(image(plan, platform, cfg, mtime)?);
    }
    let index = match images.as_slice() {
        [_] => None,
        _ => {
            let mut manifests = Vec::new();
            for i in &images {
                let mut d = i.manifest.descriptor()?;
                d.set_platform(Some(i.platform.descriptor_platform()?));
                manifests.push(d);
            }
            let index = ImageIndexBuilder::default()
                .schema_version(2u32)
                .media_type(MediaType::ImageIndex)
                .manifests(manifests)
                .build()?;
            Some(Blob::new(
                MediaType::ImageIndex,
                serde_json::to_vec(&index)?,
            ))
        }
    };
    Ok(ImageSet {
        images,
        index,
        artifacts: Vec::new(),
    })
}

/// The media type of an SPDX JSON document (SPDX 2.3, annex: media types).
pub const SPDX_JSON: &str = "application/spdx+json";

/// `set` with `sbom` attached as an OCI 1.1 artifact: a manifest with
/// `artifactType` application/spdx+json, the empty config, the document as
/// its one layer and the image manifest as its `subject`. An archive has no
/// referrers API, so an index lists both, the image with its platform: a
/// runtime picks the image by platform (containers/image, containerd do),
/// and tools that follow `subject` find the SBOM, as with buildx's
/// attestations. One image only: a multi-platform index would need one SBOM
/// per platform.
pub fn attach_sbom(set: ImageSet, sbom: Vec<u8>) -> Result<ImageSet> {
    let [image] = set.images.as_slice() else {
        anyhow::bail!("an SBOM is attached to a single-platform image only");
    };
    let spdx = MediaType::Other(SPDX_JSON.to_string());
    let empty = Blob::new(MediaType::EmptyJSON, b"{}".to_vec());
    let doc = Blob::new(spdx.clone(), sbom);
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(spdx.clone())
        .config(empty.descriptor()?)
        .layers(vec![doc.descriptor()?])
        .subject(image.manifest.descriptor()?)
        .build()?;
    let artifact = Blob::new(MediaType::ImageManifest, serde_json::to_vec(&manifest)?);
    let mut image_desc = image.manifest.descriptor()?;
    image_desc.set_platform(Some(image.platform.descriptor_platform()?));
    let mut artifact_desc = artifact.descriptor()?;
    artifact_desc.set_artifact_type(Some(spdx));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![image_desc, artifact_desc])
        .build()?;
    Ok(ImageSet {
        index: Some(Blob::new(
            MediaType::ImageIndex,
            serde_json::to_vec(&index)?,
        )),
        artifacts: vec![artifact, empty, doc],
        ..set
    })
}

/// `cfg.entrypoint` when set, else the plan's own (each platform's plan
/// names its program).
fn image(plan: &Plan, platform: &Platform, cfg: &ImageConfig, mtime: u64) -> Result<Image> {
    let entrypoint = if cfg.entrypoint.is_empty() {
        plan.entrypoint.clone()
    } else {
        cfg.entrypoint.clone()
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for layer_plan in plan.layers() {
        let layer = tarball::gzip_layer(&layer_plan, mtime)?;
        // The diff_id is the digest of the uncompressed layer.
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(layer.as_slice()).read_to_end(&mut tar)?;
        diff_ids.push(format!("sha256:{}", sha256_hex(&tar)));
        layers.push(Blob::new(MediaType::ImageLayerGzip, layer));
    }
    let mut env = vec![format!("PATH={DEFAULT_PATH}")];
    for e in &cfg.env {
        let key = e.split('=').next().unwrap_or(e);
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    let mut config = ConfigBuilder::default().entrypoint(entrypoint).env(env);
    if !cfg.cmd.is_empty() {
        config = config.cmd(cfg.cmd.clone());
    }
    if let Some(u) = &cfg.user {
        config = config.user(u.clone());
    }
    if let Some(w) = &cfg.workdir {
        config = config.working_dir(w.clone());
    }
    let created = rfc3339(mtime);
    let history: Vec<_> = layers
        .iter()
        .map(|_| {
            HistoryBuilder::default()
                .created(created.clone())
                .created_by("elfpack")
                .build()
        })
        .collect::<Result<_, _>>()?;
    let mut image_config = ImageConfigurationBuilder::default()
        .created(created.clone())
        .architecture(platform.architecture.clone())
        .os(Os::Linux)
        .config(config.build()?)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()?,
        )
        .history(history);
    if let Some(v) = &platform.variant {
        image_config = image_config.variant(v.clone());
    }
    let config = Blob::new(
        MediaType::ImageConfig,
        serde_json::to_vec(&image_config.build()?)?,
    );
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config.descriptor()?)
        .layers(
            layers
                .iter()
                .map(Blob::descriptor)
                .collect::<Result<Vec<_>>>()?,
        )
        .build()?;
    let manifest = Blob::new(MediaType::ImageManifest, serde_json::to_vec(&manifest)?);
    Ok(Image {
        platform: platform.clone(),
        layers,
        config,
        manifest,
    })
}

/// An OCI image-layout directory as one reproducible tar file; its
/// index.json names the image (or multi-platform index) with the tag.
pub struct Archive {
    pub out: PathBuf,
    pub tag: String,
    pub force: bool,
}

impl Archive {
    /// The archive's bytes.
    pub fn bytes(&self, set: &ImageSet) -> Result<Vec<u8>> {
        let top = set.top();
        let mut named = top.descriptor()?;
        named.set_annotations(Some(
            [(
                "org.opencontainers.image.ref.name".to_string(),
                self.tag.clone(),
            )]
            .into(),
        ));
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .manifests(vec![named])
            .build()?;
        let mut layout = Plan::default();
        let put = |layout: &mut Plan, path: &str, bytes: Vec<u8>| {
            layout.add_data(Path::new(path), bytes, 0o644)
        };
        put(
            &mut layout,
            "/oci-layout",
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        )?;
        put(&mut layout, "/index.json", serde_json::to_vec(&index)?)?;
        let manifests = set.images.iter().map(|i| &i.manifest);
        for b in set
            .data_blobs()
            .into_iter()
            .chain(manifests)
            .chain(&set.index)
            .chain(&set.artifacts)
        {
            put(
                &mut layout,
                &format!("/blobs/sha256/{}", b.hex()),
                b.bytes.clone(),
            )?;
        }
        for node in layout.nodes.values_mut() {
            if let Node::Dir { mode } = node {
                *mode = 0o755;
            }
        }
        tarball::to_vec(&layout, tarball::source_date_epoch())
    }
}

impl Destination for Archive {
    fn publish(&mut self, set: &ImageSet) -> Result<String> {
        let bytes = self.bytes(set)?;
        crate::output::atomic_write(&self.out, self.force, |f| Ok(f.write_all(&bytes)?))
            .with_context(|| format!("{}: cannot write the OCI archive", self.out.display()))?;
        Ok(set.top().digest.clone())
    }
}

/// Builds the image of `plan` for this machine and writes it as an archive.
pub fn write_file(plan: &Plan, cfg: &ImageConfig, out: &Path, force: bool) -> Result<()> {
    check_config(plan, cfg)?;
    let set = build(&[(plan, Platform::default())], cfg)?;
    Archive {
        out: out.to_path_buf(),
        tag: cfg.tag.clone(),
        force,
    }
    .publish(&set)?;
    Ok(())
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (days-to-civil, proleptic Gregorian).
pub fn rfc3339(secs: u64) -> String {
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
