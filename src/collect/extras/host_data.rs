//! Host data libc and TLS libraries read by fixed paths: the CA bundle
//! (`--ca-certs`), the time zone database (`--tzdata`) and locales
//! (`--locale`, cut out of `locale-archive` where need be).

use std::path::Path;

use anyhow::{Context, Result, bail};

use super::{Builder, Item, sorted_dir};
use crate::collect::locale_archive;

impl Builder<'_> {
    /// The bundle at the path OpenSSL (OPENSSLDIR /usr/lib/ssl on Debian:
    /// cert.pem and certs/), GnuTLS and Go read by default.
    pub(super) fn ca_certs(&mut self, bundle: Option<&Path>) -> Result<()> {
        const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
        let src = "--ca-certs";
        match bundle {
            None => {
                if !Path::new(BUNDLE).is_file() {
                    bail!(
                        "--ca-certs: {BUNDLE} is not there (install ca-certificates, or give --ca-certs=FILE)"
                    );
                }
                let why = "the host's CA bundle";
                self.push(Item::HostPath(BUNDLE.into()), src, why);
            }
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("--ca-certs={}: cannot read", f.display()))?;
                if !text.contains("-----BEGIN CERTIFICATE-----") {
                    bail!("--ca-certs={}: holds no PEM certificate", f.display());
                }
                let why = format!("CA bundle {}", f.display());
                self.push(
                    Item::FileAs {
                        src: f.to_path_buf(),
                        dest: BUNDLE.into(),
                    },
                    src,
                    why,
                );
            }
        }
        for (link, target, why) in [
            (
                "/usr/lib/ssl/cert.pem",
                BUNDLE,
                "OpenSSL's default CA file (OPENSSLDIR/cert.pem)",
            ),
            (
                "/usr/lib/ssl/certs",
                "/etc/ssl/certs",
                "OpenSSL's default CA directory (OPENSSLDIR/certs)",
            ),
        ] {
            let item = Item::Symlink {
                dest: link.into(),
                target: target.into(),
            };
            self.push(item, src, why);
        }
        Ok(())
    }

    pub(super) fn tzdata(&mut self) -> Result<()> {
        let dir = Path::new("/usr/share/zoneinfo");
        if !dir.is_dir() {
            bail!("--tzdata: {} is not there (install tzdata)", dir.display());
        }
        let mut stack = vec![dir.to_path_buf()];
        self.push(
            Item::HostPath(dir.to_path_buf()),
            "--tzdata",
            "time zone database",
        );
        while let Some(d) = stack.pop() {
            for entry in sorted_dir(&d)? {
                let lmeta = std::fs::symlink_metadata(&entry)?;
                if lmeta.file_type().is_symlink() {
                    // Debian's links (posix/Europe -> ../Europe, Cuba ->
                    // America/Havana) stay links; localtime -> /etc/localtime
                    // is the host's own setting and stays out.
                    let target = std::fs::read_link(&entry)?;
                    let stays_inside = (!target.is_absolute() || target.starts_with(dir))
                        && std::fs::canonicalize(&entry).is_ok_and(|t| t.starts_with(dir));
                    if stays_inside {
                        self.push(Item::HostPath(entry), "--tzdata", "time zone database");
                    }
                } else if lmeta.is_dir() {
                    self.push(
                        Item::HostPath(entry.clone()),
                        "--tzdata",
                        "time zone database",
                    );
                    stack.push(entry);
                } else if lmeta.is_file() {
                    self.push(Item::HostPath(entry), "--tzdata", "time zone database");
                }
            }
        }
        Ok(())
    }

    /// A locale as glibc finds it: /usr/lib/locale/NAME (with the codeset
    /// normalised, C.UTF-8 -> C.utf8), else cut out of the locale archive
    /// into such a directory (see [`crate::collect::locale_archive`]).
    pub(super) fn locale(&mut self, name: &str) -> Result<()> {
        let base = Path::new("/usr/lib/locale");
        let source = format!("--locale {name}");
        let why = format!("locale {name}");
        let candidates = [name.to_string(), normalize_locale(name)];
        for c in &candidates {
            let dir = base.join(c);
            if dir.join("LC_CTYPE").is_file() {
                self.push(Item::HostPath(dir.clone()), &source, why.clone());
                for f in sorted_dir(&dir)? {
                    let meta = std::fs::symlink_metadata(&f)?;
                    if meta.is_dir() {
                        self.push(Item::HostPath(f.clone()), &source, why.clone());
                        for g in sorted_dir(&f)? {
                            self.push(Item::HostPath(g), &source, why.clone());
                        }
                    } else {
                        self.push(Item::HostPath(f), &source, why.clone());
                    }
                }
                return Ok(());
            }
        }
        let archive = base.join("locale-archive");
        let mut in_archive = Vec::new();
        if archive.is_file() {
            // Mapped: an archive of every locale is hundreds of MB, and one
            // locale is a few of them. SAFETY: read-only, as glibc itself
            // maps it; a concurrent truncation could fault, the same risk
            // as in `elf::read`.
            let bytes = std::fs::File::open(&archive)
                .and_then(|f| unsafe { memmap2::Mmap::map(&f) })
                .with_context(|| format!("{}: cannot read", archive.display()))?;
            let found = locale_archive::find(&bytes, &candidates)
                .with_context(|| format!("{}", archive.display()))?;
            if let Some(l) = found {
                for (file, data) in l.files {
                    let item = Item::Data {
                        dest: base.join(&l.name).join(file),
                        bytes: data.to_vec(),
                    };
                    self.push(item, &source, format!("{why}, from {}", archive.display()));
                }
                return Ok(());
            }
            in_archive = locale_archive::names(&bytes)?;
        }
        let have: Vec<String> = std::fs::read_dir(base)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("LC_CTYPE").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .chain(in_archive)
            .collect();
        const SHOWN: usize = 20;
        let mut there = have
            .iter()
            .take(SHOWN)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if have.is_empty() {
            there = "none".into();
        } else if have.len() > SHOWN {
            there += &format!(" and {} more", have.len() - SHOWN);
        }
        bail!(
            "no such locale in {} or its locale-archive (there: {there}); generate it with locale-gen or localedef",
            base.display(),
        )
    }
}

/// glibc's `_nl_normalize_codeset` applied to the codeset part of `name`:
/// lower-case alphanumerics only, "iso" before an all-digit codeset.
pub fn normalize_locale(name: &str) -> String {
    let (head, modifier) = match name.split_once('@') {
        Some((h, m)) => (h, Some(m)),
        None => (name, None),
    };
    let mut out = match head.split_once('.') {
        Some((lang, cs)) => {
            let norm: String = cs
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .map(|c| c.to_ascii_lowercase())
                .collect();
            if norm.chars().all(|c| c.is_ascii_digit()) {
                format!("{lang}.iso{norm}")
            } else {
                format!("{lang}.{norm}")
            }
        }
        None => head.to_string(),
    };
    if let Some(m) = modifier {
        out.push('@');
        out.push_str(m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locale_codesets_normalise_like_glibc() {
        assert_eq!(normalize_locale("C.UTF-8"), "C.utf8");
        assert_eq!(
            normalize_locale("de_DE.ISO-8859-1@euro"),
            "de_DE.iso88591@euro"
        );
        assert_eq!(normalize_locale("POSIX"), "POSIX");
    }
}
