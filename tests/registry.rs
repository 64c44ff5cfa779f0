//! `--push` against a real registry: Debian's docker-registry (the
//! distribution registry) started on loopback by each test, once over plain
//! HTTP and once with htpasswd auth behind TLS (a CA made here). The images
//! are read back with skopeo and run with podman; what a second push sends
//! is counted by elfpack (`--json`) and checked against the registry's
//! storage.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::registry::{Registry, Tls};
use common::{describe, stdout_ok};

/// `elfpack PROG --push REF --json` with `env`; returns the push figures.
fn push(prog: &Path, reference: &str, env: &[(&str, &Path)]) -> serde_json::Value {
    let o = push_output(prog, reference, env);
    let r: serde_json::Value = serde_json::from_str(&stdout_ok(o)).unwrap();
    r["push"].clone()
}

fn push_output(prog: &Path, reference: &str, env: &[(&str, &Path)]) -> Output {
    let mut c = common::elfpack();
    c.arg(prog)
        .args(["--push", reference, "--json", "--no-layer-size"])
        .env_remove("SSL_CERT_FILE")
        .env_remove("REGISTRY_AUTH_FILE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// The layer digests of a pushed manifest, read back with skopeo.
fn layers(reference: &str, tls: &[&str]) -> Vec<String> {
    let raw = stdout_ok(
        Command::new("skopeo")
            .arg("inspect")
            .args(tls)
            .arg("--raw")
            .arg(format!("docker://{reference}"))
            .output()
            .expect("skopeo is installed"),
    );
    let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    v["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// Both tests' images share the C runtime layer: one test removing its
/// image while the other pulls the same layer races in podman's storage.
static PODMAN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `podman pull` then `podman run` of `reference`; its stdout.
fn podman_run(reference: &str, pull_args: &[&str], args: &[&str]) -> String {
    let _one_at_a_time = PODMAN.lock().unwrap_or_else(|e| e.into_inner());
    let pulled = Command::new("podman")
        .arg("pull")
        .arg("-q")
        .args(pull_args)
        .arg(reference)
        .output()
        .expect("podman is installed");
    assert!(
        pulled.status.success(),
        "podman pull: {}",
        describe(&pulled)
    );
    let run = common::podman_run()
        .arg(reference)
        .args(args)
        .output()
        .unwrap();
    let _ = Command::new("podman")
        .args(["rmi", "-f", reference])
        .output();
    stdout_ok(run)
}

#[test]
fn push_over_http_sends_the_c_runtime_once() {
    if !common::require_root("push_over_http (podman)") {
        return;
    }
    let w = common::workdir();
    let hello = common::compile(w.path(), "hello.cpp", &["-O2"]);
    let reg = Registry::start(w.path(), None, None);
    let host = reg.host();
    let cache = w.path().join("cache");
    let env = [("XDG_CACHE_HOME", cache.as_path())];
    let hello_ref = format!("{host}/push-http/hello:1");
    let curl_ref = format!("{host}/push-http/curl:1");

    let first = push(&hello, &hello_ref, &env);
    assert_eq!(first["uploaded"], 3, "{first}");
    let before = reg.stored_blobs();
    let second = push(Path::new("/usr/bin/curl"), &curl_ref, &env);
    // The C runtime layer is mounted from the first repository; only
    // curl's own layer and its config travel.
    assert_eq!(second["uploaded"], 2, "{second}");
    assert_eq!(second["mounted"], 1, "{second}");
    // The registry stored exactly those two blobs and the manifest.
    assert_eq!(reg.stored_blobs(), before + 3);
    // Pushing again sends nothing but the manifest.
    let again = push(Path::new("/usr/bin/curl"), &curl_ref, &env);
    assert_eq!(again["uploaded"], 0, "{again}");
    assert_eq!(again["present"], 3, "{again}");
    assert_eq!(again["pushed"], second["pushed"]);

    let plain = ["--tls-verify=false"];
    let (h, c) = (layers(&hello_ref, &plain), layers(&curl_ref, &plain));
    assert_eq!(h[0], c[0], "one shared C runtime layer");
    assert_ne!(h[1], c[1]);
    let pushed = second["pushed"].as_str().unwrap();
    assert!(
        pushed.starts_with(&format!("{host}/push-http/curl@sha256:")),
        "{pushed}"
    );
    assert_eq!(
        podman_run(&hello_ref, &plain, &[]),
        "hello from C++, exception caught\n"
    );
    let v = podman_run(&curl_ref, &plain, &["--version"]);
    assert!(v.starts_with("curl "), "{v}");
}

#[test]
fn push_with_htpasswd_over_tls() {
    if !common::require_root("push_with_htpasswd_over_tls (podman)") {
        return;
    }
    let w = common::workdir();
    let d = w.path();
    let hello = common::compile(d, "hello.cpp", &["-O2"]);
    let tls = test_ca(d);
    let htpasswd = d.join("htpasswd");
    let line = stdout_ok(
        Command::new("htpasswd")
            .args(["-Bbn", "elfpack", "s3cret"])
            .output()
            .expect("htpasswd runs (apache2-utils)"),
    );
    std::fs::write(&htpasswd, line.trim()).unwrap();
    let reg = Registry::start(d, Some(&tls), Some(&htpasswd));
    let host = reg.host();
    let reference = format!("{host}/push-tls/hello:1");
    let auth = d.join("auth.json");
    let token = base64_of("elfpack:s3cret");
    std::fs::write(
        &auth,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{token}"}}}}}}"#),
    )
    .unwrap();
    let ca = d.join("ca.pem");

    // Without the test CA the certificate is refused, and nothing falls
    // back to plain HTTP silently.
    let o = push_output(&hello, &reference, &[("REGISTRY_AUTH_FILE", &auth)]);
    assert!(!o.status.success());
    let err = common::text(&o.stderr);
    assert!(err.contains(&host) && err.contains("HTTPS"), "{err}");
    // Without credentials the registry's challenge is answered with a
    // clear error.
    let o = push_output(&hello, &reference, &[("SSL_CERT_FILE", &ca)]);
    assert!(!o.status.success());
    let err = common::text(&o.stderr);
    assert!(err.contains("credentials"), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("error")).count(),
        1,
        "{err}"
    );
    assert!(
        !err.contains("HTTP:"),
        "no plain HTTP try after a challenge: {err}"
    );

    let env = [
        ("SSL_CERT_FILE", ca.as_path()),
        ("REGISTRY_AUTH_FILE", auth.as_path()),
        ("XDG_CACHE_HOME", &d.join("cache")),
    ];
    let first = push(&hello, &reference, &env);
    assert_eq!(first["uploaded"], 3, "{first}");
    let curl_ref = format!("{host}/push-tls/curl:1");
    let second = push(Path::new("/usr/bin/curl"), &curl_ref, &env);
    assert_eq!(second["uploaded"], 2, "{second}");
    assert_eq!(second["mounted"], 1, "{second}");

    // podman and skopeo read the CA from a certs directory.
    let certs = d.join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::copy(&ca, certs.join("ca.crt")).unwrap();
    let certs = certs.display().to_string();
    let auth = auth.display().to_string();
    let tls_args = ["--cert-dir", &certs, "--authfile", &auth];
    assert_eq!(
        layers(&reference, &tls_args)[0],
        layers(&curl_ref, &tls_args)[0]
    );
    assert_eq!(
        podman_run(&reference, &tls_args, &[]),
        "hello from C++, exception caught\n"
    );
}

/// A CA and a certificate for 127.0.0.1 signed by it (ca.pem, server.pem,
/// server.key in `dir`).
fn test_ca(dir: &Path) -> Tls {
    let sh = format!(
        "set -e; cd {}; \
         openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
           -subj /CN=elfpack-test-ca 2>/dev/null; \
         openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr \
           -subj /CN=127.0.0.1 2>/dev/null; \
         printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext.cnf; \
         openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
           -out server.pem -days 2 -extfile ext.cnf 2>/dev/null",
        dir.display()
    );
    let o = Command::new("sh").arg("-c").arg(sh).output().unwrap();
    assert!(o.status.success(), "openssl: {}", describe(&o));
    Tls {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}

fn base64_of(s: &str) -> String {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s '{s}' | base64 -w0"))
        .output()
        .unwrap();
    stdout_ok(o)
}
