//! A real registry for the tests: Debian's docker-registry on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// A docker-registry on 127.0.0.1 on a free port, killed when dropped.
pub struct Registry {
    child: Child,
    pub port: u16,
    store: PathBuf,
}

pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Registry {
    pub fn start(dir: &Path, tls: Option<&Tls>, htpasswd: Option<&Path>) -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = dir.join("store");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            store.display()
        );
        if let Some(t) = tls {
            config += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                t.cert.display(),
                t.key.display()
            );
        }
        if let Some(h) = htpasswd {
            config += &format!(
                "auth:\n  htpasswd:\n    realm: elfpack-test\n    path: {}\n",
                h.display()
            );
        }
        let cfg = dir.join("config.yml");
        std::fs::write(&cfg, config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(std::fs::File::create(dir.join("registry.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("registry.err")).unwrap())
            .spawn()
            .expect("docker-registry runs (test.sh installs it)");
        let r = Registry { child, port, store };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "docker-registry did not listen on {port}: {}",
            std::fs::read_to_string(dir.join("registry.err")).unwrap_or_default()
        );
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Blob files the registry stores (layers, configs, manifests).
    pub fn stored_blobs(&self) -> usize {
        let dir = self.store.join("docker/registry/v2/blobs/sha256");
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|p| std::fs::read_dir(p.path()).map_or(0, |e| e.count()))
                    .sum()
            })
            .unwrap_or(0)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
