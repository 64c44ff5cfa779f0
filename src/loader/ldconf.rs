//! `/etc/ld.so.conf`: the directories ldconfig indexes into ld.so.cache.
//!
//! The loader itself never reads this file, so resolution does not use it;
//! it explains failures: a library that sits in a configured directory but is
//! missing from the cache means ldconfig has not been run since it was
//! installed, and the loader will not find it either.

use std::path::{Path, PathBuf};

/// Directories named by `conf` and the files it includes, in order, each with
/// the file that named it. Unreadable includes are skipped, as ldconfig does.
pub fn dirs(conf: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    read_into(conf, &mut out, 0);
    out
}

fn read_into(conf: &Path, out: &mut Vec<(PathBuf, PathBuf)>, depth: usize) {
    let Ok(text) = std::fs::read_to_string(conf) else {
        return;
    };
    if depth > 8 {
        return;
    }
    let base = conf.parent().unwrap_or(Path::new("/"));
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if let Some(pattern) = line
            .strip_prefix("include")
            .filter(|r| r.starts_with([' ', '\t']))
        {
            for pat in pattern.split_whitespace() {
                let full = base.join(pat);
                let mut matches: Vec<PathBuf> = glob::glob(&full.to_string_lossy())
                    .map(|g| g.flatten().collect())
                    .unwrap_or_default();
                matches.sort();
                for m in matches {
                    read_into(&m, out, depth + 1);
                }
            }
        } else if line.starts_with("hwcap") || line.is_empty() {
            continue;
        } else {
            // Old syntax allowed "dir=type" and separators ',', ':' and blanks.
            for d in line
                .split([' ', '\t', ',', ':'])
                .filter(|d| d.starts_with('/'))
            {
                let d = d.split('=').next().unwrap_or(d);
                out.push((PathBuf::from(d), conf.to_path_buf()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_includes_in_order() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir(d.join("conf.d")).unwrap();
        std::fs::write(
            d.join("ld.so.conf"),
            "include conf.d/*.conf\n/opt/last # comment\n",
        )
        .unwrap();
        std::fs::write(d.join("conf.d/b.conf"), "/usr/local/lib\n").unwrap();
        std::fs::write(d.join("conf.d/a.conf"), "# multiarch\n/opt/a:/opt/b\n").unwrap();
        let got: Vec<_> = dirs(&d.join("ld.so.conf"))
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            got,
            ["/opt/a", "/opt/b", "/usr/local/lib", "/opt/last"].map(PathBuf::from)
        );
    }
}
