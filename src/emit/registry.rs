//! Pushing an image to a registry with the OCI distribution API, so no
//! container engine or `skopeo copy` is needed: every layer and config blob
//! is checked with HEAD and sent only when the repository lacks it (mounted
//! from another repository of the same registry when elfpack pushed it there
//! before, which is how the shared C runtime layer is sent once per
//! registry), then each manifest by digest, then the index (several
//! platforms), then the tag.
//!
//! Transport: HTTPS; loopback registries (localhost, 127.0.0.0/8, ::1) may
//! answer plain HTTP, as ko and crane allow, and `--insecure` allows it for
//! any host. Trusted roots: `SSL_CERT_FILE` or the system bundle, plus the
//! per-registry CAs podman and docker read from
//! `/etc/containers/certs.d/HOST/` and `/etc/docker/certs.d/HOST/`.
//! Credentials: the first of `REGISTRY_AUTH_FILE`,
//! `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.docker/config.json` with an
//! entry for the registry; sent as HTTP basic auth, or exchanged for a bearer
//! token when the registry's challenge asks for one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use oci_spec::distribution::Reference;
use ureq::http::{self, Method, Response};

use crate::emit::oci::{Blob, Destination, ImageSet};

/// What a push did, for the report and the tests.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PushStats {
    /// `REGISTRY/REPO@sha256:...`: what the tag now names.
    pub pushed: String,
    /// Blobs sent in full, and their bytes.
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    /// Blobs mounted from another repository of the registry.
    pub mounted: usize,
    /// Blobs the repository already had.
    pub present: usize,
}

/// A registry repository and tag to push to.
pub struct Registry {
    reference: Reference,
    /// `REGISTRY` as given (the credentials' key), and the API host.
    host: String,
    repo: String,
    tag: String,
    insecure: bool,
    pub stats: PushStats,
}

impl Registry {
    /// Parses `REF` (`[HOST[:PORT]/]NAME[:TAG]`; Docker Hub names are
    /// completed as docker and podman do).
    pub fn new(reference: &str, insecure: bool) -> Result<Registry> {
        let parsed: Reference = reference
            .parse()
            .map_err(|e| anyhow!("--push {reference}: not an image reference: {e}"))?;
        if parsed.digest().is_some() {
            bail!(
                "--push {reference}: name a tag, not a digest (the digest is what the push makes)"
            );
        }
        Ok(Registry {
            host: parsed.resolve_registry().to_string(),
            repo: parsed.repository().to_string(),
            tag: parsed.tag().unwrap_or("latest").to_string(),
            reference: parsed,
            insecure,
            stats: PushStats::default(),
        })
    }
}

impl Destination for Registry {
    fn publish(&mut self, set: &ImageSet) -> Result<String> {
        let mut s = Session::open(
            &self.host,
            &self.repo,
            self.reference.registry(),
            self.insecure,
        )?;
        let mut seen = BlobRecord::load();
        for blob in set.data_blobs() {
            match s.put_blob(blob, &seen.repos(&self.host, &blob.digest))? {
                Sent::Present => self.stats.present += 1,
                Sent::Mounted => self.stats.mounted += 1,
                Sent::Uploaded => {
                    self.stats.uploaded += 1;
                    self.stats.uploaded_bytes += blob.bytes.len() as u64;
                }
            }
            seen.add(&self.host, &blob.digest, &self.repo);
        }
        for image in &set.images {
            s.put_manifest(&image.manifest, &image.manifest.digest)?;
        }
        if let Some(index) = &set.index {
            s.put_manifest(index, &index.digest)?;
        }
        let top = set.top();
        s.put_manifest(top, &self.tag)?;
        seen.save();
        self.stats.pushed = format!("{}/{}@{}", self.reference.registry(), self.repo, top.digest);
        Ok(top.digest.clone())
    }
}

enum Sent {
    Present,
    Mounted,
    Uploaded,
}

/// One registry conversation: the base URL that answered, and the
/// credentials and token it asked for.
struct Session {
    agent: ureq::Agent,
    base: String,
    repo: String,
    credentials: Option<(String, String)>,
    /// Where the credentials were read from, for error messages.
    auth_source: String,
    authorization: Option<String>,
}

impl Session {
    fn open(host: &str, repo: &str, registry: &str, insecure: bool) -> Result<Session> {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(root_certs(host)?)
            .build();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .timeout_connect(Some(std::time::Duration::from_secs(30)))
            .user_agent(concat!("elfpack/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let (credentials, auth_source) = match credentials(registry, repo)? {
            Some((c, src)) => (Some(c), src),
            None => (None, String::new()),
        };
        let mut s = Session {
            agent,
            base: String::new(),
            repo: repo.to_string(),
            credentials,
            auth_source,
            authorization: None,
        };
        let plain_allowed = insecure || is_loopback(host);
        let mut tls_error = None;
        for scheme in ["https", "http"] {
            if scheme == "http" && !plain_allowed {
                break;
            }
            s.base = format!("{scheme}://{host}");
            let https_failed = || {
                tls_error
                    .as_ref()
                    .map(|t| format!("over HTTPS: {t:#}; "))
                    .unwrap_or_default()
            };
            match s.call(Method::GET, "/v2/", &[], &[]) {
                Ok(r) if r.status().is_success() => return Ok(s),
                Ok(r) => bail!(
                    "{host}: cannot use the registry ({}{} answers /v2/ with {})",
                    https_failed(),
                    s.base,
                    r.status()
                ),
                // Only a connection that failed may be retried in plain HTTP.
                Err(e) if scheme == "https" && e.downcast_ref::<ureq::Error>().is_some() => {
                    tls_error = Some(e)
                }
                Err(e) if scheme == "https" => return Err(e),
                Err(e) => bail!(
                    "{host}: cannot reach the registry ({}over HTTP: {e:#})",
                    https_failed()
                ),
            }
        }
        let e = tls_error.expect("https was tried");
        bail!("{host}: cannot reach the registry over HTTPS: {e:#} (--insecure allows plain HTTP)")
    }

    /// Sends one request, answering an authentication challenge once.
    fn call(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response<ureq::Body>> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut retried = false;
        loop {
            let mut req = http::Request::builder().method(method.clone()).uri(&url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(a) = &self.authorization {
                req = req.header("Authorization", a);
            }
            let req = req.body(body)?;
            let resp = self
                .agent
                .run(req)
                .with_context(|| format!("{method} {url}"))?;
            if resp.status() != 401 || retried {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            self.authenticate(&challenge)?;
            retried = true;
        }
    }

    /// Answers a `WWW-Authenticate` challenge: basic auth with the
    /// credentials, or a bearer token fetched from the realm it names.
    fn authenticate(&mut self, challenge: &str) -> Result<()> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        let params = parse_challenge(params);
        let basic = self.credentials.as_ref().map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let no_credentials = || {
            anyhow!(
                "{}: the registry asks for credentials and none were found (REGISTRY_AUTH_FILE, \
                 $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json; `podman login` writes them)",
                self.base
            )
        };
        if scheme.eq_ignore_ascii_case("basic") {
            self.authorization = Some(basic.ok_or_else(no_credentials)?);
            return Ok(());
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            bail!(
                "{}: unsupported authentication scheme {scheme:?}",
                self.base
            );
        }
        let realm = params
            .get("realm")
            .ok_or_else(|| anyhow!("{}: bearer challenge without a realm", self.base))?;
        let mut req = self.agent.get(realm);
        if let Some(service) = params.get("service") {
            req = req.query("service", service);
        }
        let ours = format!("repository:{}:pull,push", self.repo);
        req = req.query("scope", &ours);
        if let Some(scope) = params.get("scope").filter(|s| **s != ours) {
            req = req.query("scope", scope);
        }
        if let Some(b) = &basic {
            req = req.header("Authorization", b);
        }
        let mut resp = req.call().with_context(|| format!("GET {realm}"))?;
        if !resp.status().is_success() {
            if basic.is_none() {
                return Err(no_credentials());
            }
            bail!(
                "{realm}: the token service refused the credentials from {} ({})",
                self.auth_source,
                resp.status()
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&resp.body_mut().read_to_vec()?)
            .with_context(|| format!("{realm}: the token answer is not JSON"))?;
        let token = v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .ok_or_else(|| anyhow!("{realm}: the token answer has no token"))?;
        self.authorization = Some(format!("Bearer {token}"));
        Ok(())
    }

    fn put_blob(&mut self, blob: &Blob, mount_from: &[String]) -> Result<Sent> {
        let repo = self.repo.clone();
        let head = self.call(
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{}", blob.digest),
            &[],
            &[],
        )?;
        if head.status().is_success() {
            return Ok(Sent::Present);
        }
        // A mount that the registry cannot do starts a plain upload session,
        // so asking costs no extra request.
        let start = match mount_from.iter().find(|r| **r != repo) {
            Some(from) => format!(
                "/v2/{repo}/blobs/uploads/?mount={}&from={from}",
                blob.digest
            ),
            None => format!("/v2/{repo}/blobs/uploads/"),
        };
        let resp = self.call(Method::POST, &start, &[("Content-Length", "0")], &[])?;
        match resp.status().as_u16() {
            201 => return Ok(Sent::Mounted),
            202 => {}
            _ => {
                return Err(api_error(
                    resp,
                    &format!("starting the upload of {}", blob.digest),
                ));
            }
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("{}: the upload session has no Location", self.base))?;
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = format!("{location}{sep}digest={}", blob.digest);
        let len = blob.bytes.len().to_string();
        let resp = self.call(
            Method::PUT,
            &put,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", &len),
            ],
            &blob.bytes,
        )?;
        if resp.status().as_u16() != 201 {
            return Err(api_error(resp, &format!("uploading {}", blob.digest)));
        }
        Ok(Sent::Uploaded)
    }

    fn put_manifest(&mut self, m: &Blob, reference: &str) -> Result<()> {
        let repo = self.repo.clone();
        let media_type = m.media_type.to_string();
        let resp = self.call(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", &media_type)],
            &m.bytes,
        )?;
        if resp.status().as_u16() != 201 {
            return Err(api_error(
                resp,
                &format!("putting the manifest {reference}"),
            ));
        }
        Ok(())
    }
}

/// A failed API call as one line: what was being done, the status, and the
/// registry's own error codes and messages.
fn api_error(mut resp: Response<ureq::Body>, doing: &str) -> anyhow::Error {
    let status = resp.status();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            let errs = v["errors"].as_array()?.clone();
            Some(
                errs.iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e["code"].as_str().unwrap_or("?"),
                            e["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
        .unwrap_or_else(|| body.trim().chars().take(200).collect());
    anyhow!("{doing}: the registry answered {status}: {detail}")
}

/// `key="value", key=value` pairs of a challenge.
fn parse_challenge(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (&q[..end], q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        out.insert(k.trim().to_ascii_lowercase(), v.to_string());
        rest = next.trim_start_matches([',', ' ']);
    }
    out
}

fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The system's trusted roots (`SSL_CERT_FILE`, as OpenSSL reads it, else
/// Debian's bundle) plus the registry's own CA files, the way podman and
/// docker find them.
fn root_certs(host: &str) -> Result<ureq::tls::RootCerts> {
    let mut files: Vec<PathBuf> = Vec::new();
    match std::env::var_os("SSL_CERT_FILE") {
        Some(f) => files.push(f.into()),
        None => files.push("/etc/ssl/certs/ca-certificates.crt".into()),
    }
    for d in ["/etc/containers/certs.d", "/etc/docker/certs.d"] {
        let dir = Path::new(d).join(host);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut crts: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "crt"))
                .collect();
            crts.sort();
            files.extend(crts);
        }
    }
    let mut certs = Vec::new();
    for f in files.iter().filter(|f| f.exists()) {
        let pem = std::fs::read(f).with_context(|| format!("{}: cannot read", f.display()))?;
        for item in ureq::tls::parse_pem(&pem) {
            if let ureq::tls::PemItem::Certificate(c) =
                item.with_context(|| format!("{}: not a PEM certificate file", f.display()))?
            {
                certs.push(c);
            }
        }
    }
    if certs.is_empty() {
        return Ok(ureq::tls::RootCerts::WebPki);
    }
    Ok(ureq::tls::RootCerts::Specific(Arc::new(certs)))
}

/// The first auth file holding an entry for `registry`, as podman and docker
/// look them up: `REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
/// `~/.docker/config.json`. Entries may name the registry or a repository
/// under it (the longest match wins). Returns the user, password and file.
fn credentials(registry: &str, repo: &str) -> Result<Option<((String, String), String)>> {
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
        files.push(f.into());
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        files.push(Path::new(&d).join("containers/auth.json"));
    }
    if let Some(h) = std::env::var_os("HOME") {
        files.push(Path::new(&h).join(".docker/config.json"));
    }
    let mut keys: Vec<String> = Vec::new();
    let mut path = format!("{registry}/{repo}");
    loop {
        keys.push(path.clone());
        match path.rsplit_once('/') {
            Some((p, _)) => path = p.to_string(),
            None => break,
        }
    }
    keys.extend([format!("https://{registry}"), format!("http://{registry}")]);
    if registry == "docker.io" {
        keys.push("https://index.docker.io/v1/".into());
    }
    for f in files.iter().filter(|f| f.is_file()) {
        let text = std::fs::read(f).with_context(|| format!("{}: cannot read", f.display()))?;
        let v: serde_json::Value = serde_json::from_slice(&text)
            .with_context(|| format!("{}: not a JSON auth file", f.display()))?;
        for k in &keys {
            let Some(auth) = v["auths"][k]["auth"].as_str() else {
                continue;
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    anyhow!(
                        "{}: the auth for {k} is not base64 user:password",
                        f.display()
                    )
                })?;
            let (user, pass) = decoded
                .split_once(':')
                .ok_or_else(|| anyhow!("{}: the auth for {k} is not user:password", f.display()))?;
            return Ok(Some((
                (user.to_string(), pass.to_string()),
                f.display().to_string(),
            )));
        }
    }
    Ok(None)
}

/// Which repositories of a registry elfpack pushed each blob to, so a later
/// push to another repository can mount the blob instead of sending it (a
/// registry only mounts from a repository named in the request). Kept as
/// `$XDG_CACHE_HOME/elfpack-registry/blobs.json` (else under
/// `~/.cache`); losing it only costs uploads.
struct BlobRecord {
    path: Option<PathBuf>,
    /// registry -> digest -> repositories, most recent last.
    map: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    changed: bool,
}

/// Repositories remembered per blob.
const REPOS_PER_BLOB: usize = 4;

impl BlobRecord {
    fn load() -> BlobRecord {
        let dir = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")));
        let path = dir.map(|d| d.join("elfpack-registry/blobs.json"));
        let map = path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        BlobRecord {
            path,
            map,
            changed: false,
        }
    }

    fn repos(&self, registry: &str, digest: &str) -> Vec<String> {
        let mut r = self
            .map
            .get(registry)
            .and_then(|m| m.get(digest))
            .cloned()
            .unwrap_or_default();
        r.reverse();
        r
    }

    fn add(&mut self, registry: &str, digest: &str, repo: &str) {
        let list = self
            .map
            .entry(registry.to_string())
            .or_default()
            .entry(digest.to_string())
            .or_default();
        if list.last().map(String::as_str) == Some(repo) {
            return;
        }
        list.retain(|r| r != repo);
        list.push(repo.to_string());
        if list.len() > REPOS_PER_BLOB {
            list.remove(0);
        }
        self.changed = true;
    }

    /// Best effort: a record that cannot be written costs later uploads only.
    fn save(&self) {
        let (Some(path), true) = (&self.path, self.changed) else {
            return;
        };
        let Some(dir) = path.parent() else { return };
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        let Ok(bytes) = serde_json::to_vec(&self.map) else {
            return;
        };
        if let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir) {
            use std::io::Write;
            if tmp.write_all(&bytes).is_ok() {
                let _ = tmp.persist(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_and_hosts() {
        let c = parse_challenge(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(c["realm"], "https://auth.example/token");
        assert_eq!(c["service"], "registry.example");
        assert_eq!(c["scope"], "repository:a/b:pull,push");
        assert_eq!(
            parse_challenge(r#"realm="Registry Realm""#)["realm"],
            "Registry Realm"
        );
        for h in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "localhost",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "registry.example",
            "10.0.0.1:5000",
            "localhost.example:5000",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn references() {
        let r = Registry::new("127.0.0.1:5000/app/hello:1", false).unwrap();
        assert_eq!(
            (r.host.as_str(), r.repo.as_str(), r.tag.as_str()),
            ("127.0.0.1:5000", "app/hello", "1")
        );
        let r = Registry::new("busybox", false).unwrap();
        assert_eq!(
            (r.repo.as_str(), r.tag.as_str()),
            ("library/busybox", "latest")
        );
        assert!(Registry::new("Bad:Name:x", false).is_err());
    }
}
