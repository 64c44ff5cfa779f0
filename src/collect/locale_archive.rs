//! glibc's `locale-archive`: reading one locale out of it, so that it can
//! ship as a locale directory.
//!
//! `locale-gen` and `localedef` put every generated locale into the one
//! archive file, which glibc reads only when `LOCPATH` is unset. A bundle
//! must set `LOCPATH` (its files do not sit at /usr/lib/locale), and glibc
//! then looks only for directories `LOCPATH/NAME/LC_*`. A directory also
//! works in a tree without `LOCPATH`: glibc falls back to /usr/lib/locale/NAME
//! when there is no archive. So one locale is cut out of the archive (a few
//! MB) instead of shipping all of it (every locale generated on the host).
//!
//! Format (glibc `locale/locarchive.h`): a header of 14 little-endian u32
//! (magic, serial, then offset/used/size of the name hash table, the string
//! table, the locale record table and the sum hash table); name hash entries
//! are (hash, name offset, record offset), a record offset of 0 marking a
//! free slot; a record is a reference count and (offset, length) per
//! category, indexed by the `LC_*` numbers of `<locale.h>`. Each category's
//! bytes are the same as the file of that name in a locale directory
//! (`localedef --no-archive`), which the tests check.

use anyhow::{Context, Result, bail};

const MAGIC: u32 = 0xde02_0109;
const HEADER_LEN: usize = 14 * 4;
const NAMEHASH_ENTRY_LEN: usize = 3 * 4;
/// `__LC_LAST`: the categories a record has room for, `LC_ALL` (6) included.
const CATEGORIES: usize = 13;

/// Each category's file in a locale directory, by its `<locale.h>` number;
/// `LC_ALL` (the whole locale in one blob) has no file of its own.
const FILES: [Option<&str>; CATEGORIES] = [
    Some("LC_CTYPE"),
    Some("LC_NUMERIC"),
    Some("LC_TIME"),
    Some("LC_COLLATE"),
    Some("LC_MONETARY"),
    Some("LC_MESSAGES/SYS_LC_MESSAGES"),
    None,
    Some("LC_PAPER"),
    Some("LC_NAME"),
    Some("LC_ADDRESS"),
    Some("LC_TELEPHONE"),
    Some("LC_MEASUREMENT"),
    Some("LC_IDENTIFICATION"),
];

/// One locale found in an archive.
#[derive(Debug)]
pub struct Locale<'a> {
    /// The name it is stored under (codeset normalised: `de_DE.utf8`).
    pub name: String,
    /// (path inside the locale directory, bytes), in category order.
    pub files: Vec<(&'static str, &'a [u8])>,
}

fn u32_at(data: &[u8], off: usize) -> Option<u32> {
    let b = data.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// A table of `count` entries of `len` bytes at `off`, bounds-checked.
fn table(data: &[u8], off: u32, count: u32, len: usize) -> Option<&[u8]> {
    let start = off as usize;
    let end = start.checked_add((count as usize).checked_mul(len)?)?;
    data.get(start..end)
}

/// The names of every locale in `data`, in hash table order.
pub fn names(data: &[u8]) -> Result<Vec<String>> {
    Ok(entries(data)?.into_iter().map(|(name, _)| name).collect())
}

/// (name, record offset) of every used name hash slot.
fn entries(data: &[u8]) -> Result<Vec<(String, usize)>> {
    let magic = u32_at(data, 0).context("truncated header")?;
    if magic != MAGIC {
        bail!("not a glibc locale archive (magic {magic:#x}, expected {MAGIC:#x})");
    }
    if data.len() < HEADER_LEN {
        bail!("truncated header ({} bytes)", data.len());
    }
    let hash_off = u32_at(data, 8).unwrap_or(0);
    let hash_size = u32_at(data, 16).unwrap_or(0);
    let hash = table(data, hash_off, hash_size, NAMEHASH_ENTRY_LEN)
        .context("name hash table lies outside the file")?;
    let mut out = Vec::new();
    for slot in hash.chunks_exact(NAMEHASH_ENTRY_LEN) {
        let name_off = u32_at(slot, 4).unwrap_or(0) as usize;
        let record = u32_at(slot, 8).unwrap_or(0) as usize;
        if record == 0 {
            continue;
        }
        let tail = data
            .get(name_off..)
            .context("a locale name lies outside the file")?;
        let len = tail
            .iter()
            .position(|&b| b == 0)
            .context("a locale name is not terminated")?;
        out.push((String::from_utf8_lossy(&tail[..len]).into_owned(), record));
    }
    Ok(out)
}

/// The first of `candidates` that `data` holds, with its category files;
/// `None` when it holds none of them.
pub fn find<'a>(data: &'a [u8], candidates: &[String]) -> Result<Option<Locale<'a>>> {
    let entries = entries(data)?;
    let Some((name, record)) = candidates
        .iter()
        .find_map(|c| entries.iter().find(|(n, _)| n == c))
    else {
        return Ok(None);
    };
    let rec = table(data, *record as u32, 1, 4 + CATEGORIES * 8)
        .with_context(|| format!("locale {name}: record lies outside the file"))?;
    let mut files = Vec::new();
    for (cat, file) in FILES.iter().enumerate() {
        let Some(file) = file else { continue };
        let off = u32_at(rec, 4 + cat * 8).unwrap_or(0);
        let len = u32_at(rec, 8 + cat * 8).unwrap_or(0);
        let bytes = table(data, off, len, 1)
            .with_context(|| format!("locale {name}: {file} lies outside the file"))?;
        files.push((*file, bytes));
    }
    Ok(Some(Locale {
        name: name.clone(),
        files,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An archive holding `name` with category `c` = `c` repeated `c + 1` times.
    fn archive(name: &str) -> Vec<u8> {
        let hash_off = HEADER_LEN as u32;
        let name_off = hash_off + 2 * NAMEHASH_ENTRY_LEN as u32;
        let rec_off = name_off + name.len() as u32 + 1;
        let mut data_off = rec_off + 4 + CATEGORIES as u32 * 8;
        let mut head = vec![MAGIC, 0, hash_off, 1, 2];
        head.resize(14, 0);
        let mut out: Vec<u8> = head.iter().flat_map(|w| w.to_le_bytes()).collect();
        // A free slot, then the locale's.
        for w in [0u32, 0, 0, 7, name_off, rec_off] {
            out.extend(w.to_le_bytes());
        }
        out.extend(name.as_bytes());
        out.push(0);
        out.extend(1u32.to_le_bytes());
        let mut blobs = Vec::new();
        for c in 0..CATEGORIES as u32 {
            out.extend(data_off.to_le_bytes());
            out.extend((c + 1).to_le_bytes());
            blobs.extend(std::iter::repeat_n(c as u8, c as usize + 1));
            data_off += c + 1;
        }
        out.extend(blobs);
        out
    }

    #[test]
    fn finds_a_locale_by_any_candidate_name() {
        let a = archive("de_DE.utf8");
        assert_eq!(names(&a).unwrap(), ["de_DE.utf8"]);
        let want = ["de_DE.UTF-8".to_string(), "de_DE.utf8".to_string()];
        let l = find(&a, &want).unwrap().unwrap();
        assert_eq!(l.name, "de_DE.utf8");
        assert_eq!(l.files.len(), 12, "every category but LC_ALL");
        assert_eq!(l.files[0], ("LC_CTYPE", &[0u8][..]));
        assert_eq!(l.files[5], ("LC_MESSAGES/SYS_LC_MESSAGES", &[5u8; 6][..]));
        assert_eq!(l.files[6], ("LC_PAPER", &[7u8; 8][..]));
        assert!(find(&a, &["fr_FR.utf8".into()]).unwrap().is_none());
    }

    #[test]
    fn bad_archives_say_what_is_wrong() {
        let err = |d: &[u8]| format!("{:#}", find(d, &["x".into()]).unwrap_err());
        assert!(err(b"\x7fELF....").contains("not a glibc locale archive"));
        assert!(err(&[]).contains("truncated"));
        let a = archive("x");
        assert!(err(&a[..HEADER_LEN + 4]).contains("name hash table"));
        // The last category's bytes cut off.
        assert!(err(&a[..a.len() - 1]).contains("LC_IDENTIFICATION lies outside"));
    }
}
