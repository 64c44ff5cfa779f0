//! The loader is the oracle: for every ELF file under /usr/bin, /usr/sbin and
//! /usr/lib/x86_64-linux-gnu that `ld.so --list` accepts, elfpack's closure
//! must name exactly the files the loader maps (compared as real paths).

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use elfpack::elf::Kind;
use elfpack::loader::resolve::{NotFound, Resolver};

const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

fn elf_files(dirs: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.iter().map(PathBuf::from).collect();
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let mut magic = [0u8; 4];
                if std::fs::File::open(&p)
                    .and_then(|mut f| f.read_exact(&mut magic))
                    .is_ok()
                    && &magic == b"\x7fELF"
                {
                    out.push(p);
                }
            }
        }
    }
    out.sort();
    out
}

/// What `ld.so --list` says of a file.
enum Listing {
    /// Real paths of the objects it maps.
    Maps(BTreeSet<PathBuf>),
    /// "statically linked": nothing but the file itself (it also says this
    /// for shared libraries without DT_NEEDED).
    Nothing,
    /// A needed library was not found.
    NotFound,
    /// It refused or crashed on the file (relocatable objects, archives...).
    Refused,
}

fn loader_list(file: &Path) -> Listing {
    let Ok(out) = Command::new(LOADER)
        .arg("--list")
        .arg(file)
        .env_clear()
        .output()
    else {
        return Listing::Refused;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    if text.contains("not found") || err.contains("cannot open shared object file") {
        return Listing::NotFound;
    }
    if !out.status.success() {
        return Listing::Refused;
    }
    if text.contains("statically linked") {
        return Listing::Nothing;
    }
    let mut set = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        let path = match line.split_once(" => ") {
            Some((_, rest)) => rest.rsplit_once(" (").map(|(p, _)| p).unwrap_or(rest),
            None => line.rsplit_once(" (").map(|(p, _)| p).unwrap_or(line),
        };
        if path.starts_with('/') {
            set.insert(std::fs::canonicalize(path).unwrap());
        }
    }
    Listing::Maps(set)
}

#[test]
fn closures_match_the_loader_on_every_elf_file_under_usr() {
    let files = elf_files(&["/usr/bin", "/usr/sbin", "/usr/lib/x86_64-linux-gnu"]);
    assert!(
        files.len() > 500,
        "expected a Debian userland, found {} ELF files",
        files.len()
    );
    let loader_real = std::fs::canonicalize(LOADER).unwrap();
    let mut resolver = Resolver::new().unwrap();
    let (mut compared, mut refused, mut not_found) = (0, 0, 0);
    let mut mismatches = Vec::new();
    for f in &files {
        let real = std::fs::canonicalize(f).unwrap();
        if real == loader_real {
            continue;
        }
        let listing = loader_list(&real);
        let resolved = resolver.resolve(&real);
        let mut expected = match (listing, &resolved) {
            (Listing::Refused, _) => {
                refused += 1;
                continue;
            }
            (Listing::NotFound, Err(e)) if e.downcast_ref::<NotFound>().is_some() => {
                not_found += 1;
                continue;
            }
            (Listing::NotFound, _) => {
                mismatches.push(format!(
                    "{}: the loader finds no library, elfpack: {:?}",
                    real.display(),
                    resolved.err()
                ));
                continue;
            }
            (Listing::Maps(set), _) => set,
            (Listing::Nothing, _) => BTreeSet::new(),
        };
        let ours = match resolved {
            Ok(c) => {
                if !matches!(c.program().info.kind, Kind::Static | Kind::StaticPie) {
                    // `--list` leaves ld.so itself out of its output when no
                    // object names it in DT_NEEDED (rtld.c unlinks it from the
                    // map list), yet it is what runs: always in the closure.
                    expected.insert(loader_real.clone());
                }
                c.objects[1..]
                    .iter()
                    .map(|o| std::fs::canonicalize(&o.path).unwrap())
                    .collect::<BTreeSet<_>>()
            }
            Err(e) => {
                mismatches.push(format!("{}: elfpack failed: {e:#}", real.display()));
                continue;
            }
        };
        compared += 1;
        if ours != expected {
            let missing: Vec<_> = expected.difference(&ours).collect();
            let extra: Vec<_> = ours.difference(&expected).collect();
            mismatches.push(format!(
                "{}: loader-only {missing:?}, elfpack-only {extra:?}",
                real.display()
            ));
        }
    }
    eprintln!(
        "oracle: {} ELF files, {compared} closures compared with ld.so --list, {not_found} missing a library \
         for both, {refused} refused by it, {} mismatches",
        files.len(),
        mismatches.len()
    );
    assert!(compared > 500, "too few files compared: {compared}");
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
