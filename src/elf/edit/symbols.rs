//! `--rename-dynamic-symbols`: new names for `.dynsym` entries, and the
//! symbol hash tables rebuilt for them.
//!
//! A DT_GNU_HASH table needs the hashed symbols ordered by bucket, so a
//! renamed symbol may change places in `.dynsym`: its `.gnu.version` entry
//! and every relocation that names it follow. A DT_HASH table only links
//! symbol indices, so it is rebuilt in place. Both keep their sizes (bucket
//! count, bloom filter words, shift), which are valid for any names.

use anyhow::{Context, Result, bail};

use super::Dynamic;
use super::layout::Image;
use super::raw::Shdr;

const SHT_RELA: u32 = 4;
const SHT_HASH: u32 = 5;
const SHT_REL: u32 = 9;
const SHT_DYNSYM: u32 = 11;
const SHT_GNU_HASH: u32 = 0x6fff_fff6;
const SHT_GNU_VERSYM: u32 = 0x6fff_ffff;

fn dynsym(img: &Image) -> Option<(usize, u64, u64)> {
    let i = img.shdrs.iter().position(|s| s.sh_type == SHT_DYNSYM)?;
    let s = &img.shdrs[i];
    let ent = if s.entsize != 0 {
        s.entsize
    } else if img.f.is64 {
        24
    } else {
        16
    };
    Some((i, ent, s.size / ent))
}

/// The symbols to rename: (index in `.dynsym`, offset of the new name as
/// `add` gives it).
pub(super) fn plan_renames(
    img: &Image,
    d: &Dynamic,
    map: &[(String, String)],
    mut add: impl FnMut(&str) -> u64,
) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    if map.is_empty() {
        return Ok(out);
    }
    let Some((i, ent, n)) = dynsym(img) else {
        return Ok(out);
    };
    let off = img.shdrs[i].offset;
    for k in 0..n {
        let name = img.f.u32(&img.data, off + k * ent)? as u64;
        let Some(old) = d.str_at(name) else { continue };
        if let Some((_, new)) = map.iter().find(|(o, _)| o == old) {
            out.push((k, add(new)));
        }
    }
    Ok(out)
}

/// Writes the new st_name values (offsets into the final `.dynstr`) and
/// rebuilds the hash tables.
pub(super) fn rename(img: &mut Image, names: &[(u64, u64)]) -> Result<()> {
    let f = img.f;
    let (si, ent, n) = dynsym(img).context("no .dynsym section")?;
    let base = img.shdrs[si].offset;
    for &(k, name) in names {
        f.put32(&mut img.data, base + k * ent, name as u32);
    }
    let strtab = img
        .shdrs
        .get(img.shdrs[si].link as usize)
        .filter(|s| s.in_file())
        .context(".dynsym links to no string table")?;
    let strs = img
        .data
        .get(strtab.offset as usize..(strtab.offset + strtab.size) as usize)
        .context(".dynstr is outside the file")?
        .to_vec();
    let name_of = |data: &[u8], k: u64| -> Result<Vec<u8>> {
        let o = f.u32(data, base + k * ent)? as usize;
        let tail = strs.get(o..).context("a symbol name is outside .dynstr")?;
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        Ok(tail[..end].to_vec())
    };
    if let Some(gi) = find(img, SHT_GNU_HASH) {
        let sh = img.shdrs[gi].clone();
        let o = sh.offset;
        let nb = f.u32(&img.data, o)? as u64;
        let symndx = f.u32(&img.data, o + 4)? as u64;
        let words = f.u32(&img.data, o + 8)? as u64;
        let shift2 = f.u32(&img.data, o + 12)?;
        let wbytes = if f.is64 { 8 } else { 4 };
        let bits = wbytes * 8;
        if nb == 0 || words == 0 {
            bail!(".gnu.hash has no buckets or no bloom filter");
        }
        if symndx < n {
            let need = 16 + words * wbytes + nb * 4 + (n - symndx) * 4;
            if need > sh.size {
                bail!(".gnu.hash is smaller than its symbols need");
            }
            let mut entries = Vec::new();
            for k in symndx..n {
                let h = gnu_hash(&name_of(&img.data, k)?);
                entries.push((h, k));
            }
            // Stable: symbols keep their order within a bucket.
            entries.sort_by_key(|&(h, _)| h as u64 % nb);
            let order: Vec<u64> = entries.iter().map(|e| e.1).collect();
            if order.iter().zip(symndx..).any(|(&a, b)| a != b) {
                reorder(img, si, ent, symndx, &order)?;
            }
            let bloom = o + 16;
            let buckets = bloom + words * wbytes;
            let chains = buckets + nb * 4;
            img.data[bloom as usize..(chains + (n - symndx) * 4) as usize].fill(0);
            for (i, &(h, _)) in entries.iter().enumerate() {
                let h = h as u64;
                let w = bloom + (h / bits % words) * wbytes;
                let mask = (1u64 << (h % bits)) | (1u64 << ((h >> shift2) % bits));
                if f.is64 {
                    let v = f.u64(&img.data, w)? | mask;
                    f.put64(&mut img.data, w, v);
                } else {
                    let v = f.u32(&img.data, w)? | mask as u32;
                    f.put32(&mut img.data, w, v);
                }
                let b = buckets + (h % nb) * 4;
                if f.u32(&img.data, b)? == 0 {
                    f.put32(&mut img.data, b, (symndx + i as u64) as u32);
                }
                let last = entries
                    .get(i + 1)
                    .is_none_or(|&(h2, _)| h2 as u64 % nb != h % nb);
                let c = if last { h as u32 | 1 } else { h as u32 & !1 };
                f.put32(&mut img.data, chains + i as u64 * 4, c);
            }
        }
    }
    if let Some(hi) = find(img, SHT_HASH) {
        let sh = img.shdrs[hi].clone();
        let o = sh.offset;
        let nb = f.u32(&img.data, o)? as u64;
        let nchain = f.u32(&img.data, o + 4)? as u64;
        if nb == 0 || nchain > n || 8 + (nb + nchain) * 4 > sh.size {
            bail!(".hash does not fit its symbols");
        }
        let first = n - nchain;
        let buckets = o + 8;
        let chains = buckets + nb * 4;
        img.data[buckets as usize..(chains + nchain * 4) as usize].fill(0);
        for k in first.max(1)..n {
            let i = k - first;
            let b = buckets + (sysv_hash(&name_of(&img.data, k)?) as u64 % nb) * 4;
            let head = f.u32(&img.data, b)?;
            f.put32(&mut img.data, chains + i * 4, head);
            f.put32(&mut img.data, b, i as u32);
        }
    }
    Ok(())
}

fn find(img: &Image, t: u32) -> Option<usize> {
    img.shdrs
        .iter()
        .position(|s: &Shdr| s.sh_type == t && s.in_file())
}

/// Puts `.dynsym` entries `from..` in `order` (old indices), with their
/// `.gnu.version` entries, and renumbers the relocations that name them.
fn reorder(img: &mut Image, si: usize, ent: u64, from: u64, order: &[u64]) -> Result<()> {
    let f = img.f;
    let n = from + order.len() as u64;
    let mut new_of = vec![0u64; order.len()];
    for (i, &old) in order.iter().enumerate() {
        new_of[(old - from) as usize] = from + i as u64;
    }
    let permute = |data: &mut Vec<u8>, at: u64, size: u64| {
        let old = data[(at + from * size) as usize..(at + n * size) as usize].to_vec();
        for (i, &k) in order.iter().enumerate() {
            let src = ((k - from) * size) as usize;
            let dst = (at + (from + i as u64) * size) as usize;
            data[dst..dst + size as usize].copy_from_slice(&old[src..src + size as usize]);
        }
    };
    let base = img.shdrs[si].offset;
    permute(&mut img.data, base, ent);
    if let Some(vi) = find(img, SHT_GNU_VERSYM) {
        let v = &img.shdrs[vi];
        if v.size / 2 != n {
            bail!(".gnu.version has {} entries for {n} symbols", v.size / 2);
        }
        permute(&mut img.data, v.offset, 2);
    }
    let rels: Vec<Shdr> = img
        .shdrs
        .iter()
        .filter(|s| {
            (s.sh_type == SHT_REL || s.sh_type == SHT_RELA) && s.link as usize == si && s.in_file()
        })
        .cloned()
        .collect();
    for r in rels {
        let size = match (r.sh_type == SHT_RELA, f.is64) {
            (true, true) => 24,
            (false, true) => 16,
            (true, false) => 12,
            (false, false) => 8,
        };
        let size = if r.entsize != 0 { r.entsize } else { size };
        for j in 0..r.size / size {
            let at = r.offset + j * size + f.word();
            let info = f.addr(&img.data, at)?;
            let (sym, shift) = if f.is64 {
                (info >> 32, 32)
            } else {
                (info >> 8, 8)
            };
            if sym >= from && sym < n {
                let t = info & ((1u64 << shift) - 1);
                let new = (new_of[(sym - from) as usize] << shift) | t;
                f.put_addr(&mut img.data, at, new);
            }
        }
    }
    Ok(())
}

fn gnu_hash(name: &[u8]) -> u32 {
    name.iter()
        .fold(5381u32, |h, &c| h.wrapping_mul(33).wrapping_add(c as u32))
}

fn sysv_hash(name: &[u8]) -> u32 {
    let mut h = 0u32;
    for &c in name {
        h = (h << 4).wrapping_add(c as u32);
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
        }
        h &= !g;
    }
    h
}
