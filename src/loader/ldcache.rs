//! `/etc/ld.so.cache`: reading it the way `ld.so` does, and writing a subset of
//! it into an image so the image's loader finds libraries exactly where the
//! host's loader found them (including directories known only through
//! `ld.so.conf`, such as /usr/local/lib).
//!
//! Format (glibc `dl-cache.h`, "new" format, written by ldconfig since 2.32):
//! a 48-byte header `glibc-ld.so.cache1.1`, then 24-byte entries sorted with
//! `_dl_cache_libcmp`, then a string table; string offsets are relative to the
//! start of the header. An optional extension directory names the
//! glibc-hwcaps subdirectory of entries whose `hwcap` has bit 62 set.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

const MAGIC_NEW: &[u8] = b"glibc-ld.so.cache1.1";
const MAGIC_OLD: &[u8] = b"ld.so-1.7.0";
const HEADER_LEN: usize = 48;
const ENTRY_LEN: usize = 24;
const EXTENSION_MAGIC: u32 = 0xeaa4_2174;
const EXTENSION_TAG_HWCAPS: u32 = 1;
const HWCAP_EXTENSION_MARK: u64 = 1 << 62;

/// `FLAG_ELF_LIBC6 | FLAG_X8664_LIB64`: the id of x86-64 glibc libraries.
pub const X86_64_LIBC6: i32 = 0x0303;

#[derive(Debug, Clone)]
pub struct Entry {
    pub flags: i32,
    pub name: String,
    pub path: PathBuf,
    /// The raw hwcap word, kept so a written subset preserves it.
    hwcap: u64,
    /// The glibc-hwcaps subdirectory (e.g. `x86-64-v3`) for hwcaps entries.
    pub hwcaps_subdir: Option<String>,
}

#[derive(Debug, Default)]
pub struct LdCache {
    /// All entries in file order (which is ldconfig's sort order).
    entries: Vec<Entry>,
    by_name: HashMap<String, Vec<usize>>,
}

impl LdCache {
    /// Reads `path`; a missing file is an empty cache, as for the loader.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => Self::parse(&bytes).with_context(|| format!("{}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("{}: cannot read", path.display())),
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.starts_with(MAGIC_OLD) {
            bail!("old-format (libc5 compatible) ld.so.cache is not supported; run ldconfig");
        }
        if !bytes.starts_with(MAGIC_NEW) || bytes.len() < HEADER_LEN {
            bail!("not a glibc ld.so.cache (bad magic)");
        }
        let nlibs = u32_at(bytes, 20)? as usize;
        let ext_offset = u32_at(bytes, 32)? as usize;
        if HEADER_LEN + nlibs * ENTRY_LEN > bytes.len() {
            bail!(
                "truncated: {nlibs} entries do not fit in {} bytes",
                bytes.len()
            );
        }
        let hwcaps = if ext_offset != 0 {
            read_hwcaps_extension(bytes, ext_offset)?
        } else {
            Vec::new()
        };
        let mut cache = LdCache::default();
        for i in 0..nlibs {
            let at = HEADER_LEN + i * ENTRY_LEN;
            let flags = u32_at(bytes, at)? as i32;
            let name = c_str(bytes, u32_at(bytes, at + 4)? as usize)?;
            let path = c_str(bytes, u32_at(bytes, at + 8)? as usize)?;
            let hwcap = u64::from_le_bytes(bytes[at + 16..at + 24].try_into().unwrap());
            let hwcaps_subdir = if hwcap >> 32 == HWCAP_EXTENSION_MARK >> 32 {
                let idx = (hwcap & 0xffff_ffff) as usize;
                Some(hwcaps.get(idx).cloned().unwrap_or_default())
            } else {
                None
            };
            cache.push(Entry {
                flags,
                name,
                path: PathBuf::from(path),
                hwcap,
                hwcaps_subdir,
            });
        }
        Ok(cache)
    }

    fn push(&mut self, e: Entry) {
        self.by_name
            .entry(e.name.clone())
            .or_default()
            .push(self.entries.len());
        self.entries.push(e);
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `_dl_load_cache_lookup`: among entries for `name` with the right flags,
    /// a glibc-hwcaps entry whose subdirectory the CPU supports wins by
    /// priority (`hwcaps_priority` gives higher numbers to better levels, 0 to
    /// unsupported); otherwise the first plain entry.
    pub fn lookup(
        &self,
        name: &str,
        flags: i32,
        hwcaps_priority: impl Fn(&str) -> u32,
    ) -> Option<&Entry> {
        let mut best: Option<(&Entry, u32)> = None;
        for &i in self.by_name.get(name)? {
            let e = &self.entries[i];
            if e.flags != flags && e.flags != 1 {
                continue;
            }
            let prio = match &e.hwcaps_subdir {
                Some(sub) => match hwcaps_priority(sub) {
                    0 => continue,
                    p => p,
                },
                None => 0,
            };
            if best.is_none_or(|(_, bp)| prio > bp) {
                best = Some((e, prio));
            }
        }
        best.map(|(e, _)| e)
    }

    /// Serialises the entries whose path satisfies `keep`, plus `extra`
    /// (name, path) entries for libraries the host finds by other means,
    /// sorted as ldconfig sorts them so the loader's binary search works.
    pub fn write_subset(
        &self,
        keep: impl Fn(&Path) -> bool,
        extra: &[(String, PathBuf)],
    ) -> Vec<u8> {
        let added: Vec<Entry> = extra
            .iter()
            .map(|(name, path)| Entry {
                flags: X86_64_LIBC6,
                name: name.clone(),
                path: path.clone(),
                hwcap: 0,
                hwcaps_subdir: None,
            })
            .collect();
        let mut kept: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| keep(&e.path))
            .chain(&added)
            .collect();
        // Descending _dl_cache_libcmp order (ldconfig compares e2 with e1);
        // the sort is stable, so equal names keep the host's preference.
        kept.sort_by(|a, b| libcmp(&b.name, &a.name));
        let mut hwcaps: Vec<String> = Vec::new();
        for e in &kept {
            if let Some(s) = e.hwcaps_subdir.as_ref().filter(|s| !hwcaps.contains(s)) {
                hwcaps.push(s.clone());
            }
        }
        let entries_end = HEADER_LEN + kept.len() * ENTRY_LEN;
        let mut strings: Vec<u8> = Vec::new();
        let mut offsets: HashMap<String, u32> = HashMap::new();
        let mut intern = |s: &str, strings: &mut Vec<u8>| -> u32 {
            *offsets.entry(s.to_string()).or_insert_with(|| {
                let off = (entries_end + strings.len()) as u32;
                strings.extend_from_slice(s.as_bytes());
                strings.push(0);
                off
            })
        };
        let mut body = Vec::with_capacity(kept.len() * ENTRY_LEN);
        for e in &kept {
            let key = intern(&e.name, &mut strings);
            let value = intern(&e.path.to_string_lossy(), &mut strings);
            let hwcap = match &e.hwcaps_subdir {
                Some(s) => {
                    HWCAP_EXTENSION_MARK | hwcaps.iter().position(|h| h == s).unwrap() as u64
                }
                None => e.hwcap,
            };
            body.extend_from_slice(&e.flags.to_le_bytes());
            body.extend_from_slice(&key.to_le_bytes());
            body.extend_from_slice(&value.to_le_bytes());
            body.extend_from_slice(&0u32.to_le_bytes());
            body.extend_from_slice(&hwcap.to_le_bytes());
        }
        let hwcap_offsets: Vec<u32> = hwcaps.iter().map(|s| intern(s, &mut strings)).collect();
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC_NEW);
        out.extend_from_slice(&(kept.len() as u32).to_le_bytes());
        out.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        out.push(2); // cache_file_new.flags: little endian
        out.extend_from_slice(&[0; 3]);
        let ext_at_field = out.len();
        out.extend_from_slice(&[0; 4 + 12]);
        out.extend_from_slice(&body);
        out.extend_from_slice(&strings);
        if !hwcap_offsets.is_empty() {
            while out.len() % 4 != 0 {
                out.push(0);
            }
            let ext = out.len();
            out[ext_at_field..ext_at_field + 4].copy_from_slice(&(ext as u32).to_le_bytes());
            let data = ext + 8 + 16;
            out.extend_from_slice(&EXTENSION_MAGIC.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(&EXTENSION_TAG_HWCAPS.to_le_bytes());
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&(data as u32).to_le_bytes());
            out.extend_from_slice(&((hwcap_offsets.len() * 4) as u32).to_le_bytes());
            for o in hwcap_offsets {
                out.extend_from_slice(&o.to_le_bytes());
            }
        }
        out
    }
}

/// glibc's `_dl_cache_libcmp`: byte order, except that runs of digits
/// compare as numbers and sort after non-digits.
pub fn libcmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() {
        let (ca, cb) = (a[i], b.get(j).copied().unwrap_or(0));
        match (ca.is_ascii_digit(), cb.is_ascii_digit()) {
            (true, true) => {
                let num = |s: &[u8], k: &mut usize| {
                    let mut v: u64 = 0;
                    while *k < s.len() && s[*k].is_ascii_digit() {
                        v = v.wrapping_mul(10).wrapping_add((s[*k] - b'0') as u64);
                        *k += 1;
                    }
                    v
                };
                let (va, vb) = (num(a, &mut i), num(b, &mut j));
                if va != vb {
                    return va.cmp(&vb);
                }
            }
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            (false, false) if ca != cb => return ca.cmp(&cb),
            (false, false) => {
                i += 1;
                j += 1;
            }
        }
    }
    0u8.cmp(&b.get(j).copied().unwrap_or(0))
}

fn read_hwcaps_extension(bytes: &[u8], at: usize) -> Result<Vec<String>> {
    if u32_at(bytes, at)? != EXTENSION_MAGIC {
        return Ok(Vec::new());
    }
    let count = u32_at(bytes, at + 4)? as usize;
    for i in 0..count {
        let sec = at + 8 + i * 16;
        if u32_at(bytes, sec)? == EXTENSION_TAG_HWCAPS {
            let off = u32_at(bytes, sec + 8)? as usize;
            let size = u32_at(bytes, sec + 12)? as usize;
            return (0..size / 4)
                .map(|j| c_str(bytes, u32_at(bytes, off + j * 4)? as usize))
                .collect();
        }
    }
    Ok(Vec::new())
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32> {
    match bytes.get(at..at + 4) {
        Some(b) => Ok(u32::from_le_bytes(b.try_into().unwrap())),
        None => bail!("truncated at byte {at}"),
    }
}

fn c_str(bytes: &[u8], at: usize) -> Result<String> {
    let tail = bytes
        .get(at..)
        .with_context(|| format!("string offset {at} out of range"))?;
    let end = tail
        .iter()
        .position(|&b| b == 0)
        .context("unterminated string")?;
    Ok(String::from_utf8_lossy(&tail[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_cache_round_trips_through_write_subset() {
        let host = LdCache::load(Path::new("/etc/ld.so.cache")).unwrap();
        assert!(!host.is_empty(), "this test needs the host's ld.so.cache");
        // The host's cache is in ldconfig's order: our comparator agrees.
        for w in host.entries.windows(2) {
            assert_ne!(
                libcmp(&w[0].name, &w[1].name),
                std::cmp::Ordering::Less,
                "{} before {}",
                w[0].name,
                w[1].name
            );
        }
        let copy = LdCache::parse(&host.write_subset(|_| true, &[])).unwrap();
        assert_eq!(copy.entries.len(), host.entries.len());
        for (a, b) in host.entries.iter().zip(&copy.entries) {
            assert_eq!(
                (a.flags, &a.name, &a.path, &a.hwcaps_subdir),
                (b.flags, &b.name, &b.path, &b.hwcaps_subdir)
            );
        }
        let libc = host.lookup("libc.so.6", X86_64_LIBC6, |_| 1).unwrap();
        assert!(libc.path.ends_with("libc.so.6"));
    }

    #[test]
    fn subset_keeps_only_chosen_paths_and_hwcaps_names() {
        let mut c = LdCache::default();
        for (name, path, sub) in [
            ("liba.so.1", "/usr/local/lib/liba.so.1", None),
            (
                "libb.so.2",
                "/usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libb.so.2",
                Some("x86-64-v3"),
            ),
            ("libb.so.2", "/usr/lib/x86_64-linux-gnu/libb.so.2", None),
        ] {
            c.push(Entry {
                flags: X86_64_LIBC6,
                name: name.into(),
                path: path.into(),
                hwcap: 0,
                hwcaps_subdir: sub.map(String::from),
            });
        }
        let extra = [(
            "libzz.so.1".to_string(),
            PathBuf::from("/app/lib/libzz.so.1"),
        )];
        let sub =
            LdCache::parse(&c.write_subset(|p| !p.starts_with("/usr/local"), &extra)).unwrap();
        assert_eq!(
            sub.lookup("libzz.so.1", X86_64_LIBC6, |_| 0).unwrap().path,
            Path::new("/app/lib/libzz.so.1")
        );
        assert!(sub.lookup("liba.so.1", X86_64_LIBC6, |_| 1).is_none());
        let v3 = sub
            .lookup("libb.so.2", X86_64_LIBC6, |s| (s == "x86-64-v3") as u32)
            .unwrap();
        assert_eq!(v3.hwcaps_subdir.as_deref(), Some("x86-64-v3"));
        let base = sub.lookup("libb.so.2", X86_64_LIBC6, |_| 0).unwrap();
        assert_eq!(base.path, Path::new("/usr/lib/x86_64-linux-gnu/libb.so.2"));
    }
}
