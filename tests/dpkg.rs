//! `collect::dpkg` against the host's real database, with `dpkg-query` and
//! `dpkg -S` as the oracle; diversions and a sysroot on a database made here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use elfpack::collect::dpkg::Dpkg;

fn host() -> Dpkg {
    Dpkg::host()
        .unwrap()
        .expect("these tests run on Debian, which has /var/lib/dpkg/status")
}

/// CPU time of this thread (the machine is shared: wall time says little).
fn cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn query(args: &[&str]) -> String {
    let o = Command::new("dpkg-query").args(args).output().unwrap();
    assert!(o.status.success(), "dpkg-query {args:?}: {o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every installed package: id, version, architecture, Depends and
/// Pre-Depends, and the stanza (dpkg-query -s prints it as `status` has it).
#[test]
fn packages_match_dpkg_query() {
    let db = host();
    let t = Instant::now();
    let mut ours = BTreeMap::new();
    for p in db.packages().iter().filter(|p| p.installed()) {
        ours.insert(
            p.id(),
            format!(
                "{}\t{}\t{}\t{}",
                p.version,
                p.arch,
                p.field("Pre-Depends").unwrap_or(""),
                p.field("Depends").unwrap_or("")
            ),
        );
    }
    let mut theirs = BTreeMap::new();
    let fmt = "${db:Status-Status}\t${binary:Package}\t${Version}\t${Architecture}\t${Pre-Depends}\t${Depends}\n";
    for line in query(&["-W", "-f", fmt]).lines() {
        let mut it = line.splitn(3, '\t');
        let (status, id, rest) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
        if !matches!(status, "not-installed" | "config-files") {
            theirs.insert(id.to_string(), rest.to_string());
        }
    }
    assert!(theirs.len() > 100, "{} packages", theirs.len());
    // dpkg-query joins continuation lines of these fields; so do we, for this comparison.
    let ours: BTreeMap<_, _> = ours
        .into_iter()
        .map(|(k, v)| (k, v.replace("\n ", " ").replace('\n', " ")))
        .collect();
    assert_eq!(ours, theirs);
    for name in ["bash", "libc6", "coreutils", "dpkg"] {
        let p = db.package(name).unwrap();
        assert_eq!(format!("{}\n", p.stanza), query(&["-s", &p.id()]), "{name}");
        assert_eq!(p.field("package"), Some(name));
    }
    eprintln!("status parsed and compared in {:?}", t.elapsed());
}

/// Ownership of every 7th file of every installed package, as `dpkg -S`
/// answers it; and the same files reached through merged-/usr aliases.
#[test]
fn owners_match_dpkg_s() {
    let db = host();
    let mut sample: Vec<PathBuf> = Vec::new();
    for (n, p) in db.packages().iter().filter(|p| p.installed()).enumerate() {
        let files = db.files(p).unwrap();
        sample.extend(
            files
                .iter()
                .filter(|f| Path::new(f).symlink_metadata().is_ok() && !Path::new(f).is_dir())
                .step_by(7)
                .cloned(),
        );
        // dpkg -L for every 5th package (one process each).
        if n % 5 != 0 {
            continue;
        }
        let mut theirs: Vec<PathBuf> = query(&["-L", &p.id()])
            .lines()
            .filter(|l| l.starts_with('/'))
            .map(PathBuf::from)
            .collect();
        theirs.retain(|f| f != Path::new("/."));
        let mine: Vec<PathBuf> = files
            .iter()
            .filter(|f| *f != Path::new("/."))
            .cloned()
            .collect();
        assert_eq!(mine, theirs, "files of {}", p.id());
    }
    sample.sort();
    sample.dedup();
    assert!(sample.len() > 1000, "{} files", sample.len());
    // The one-pass scan (before the index exists) answers as the index does,
    // merged-/usr twins and alternatives included.
    let mut asked: Vec<PathBuf> = sample.iter().step_by(40).cloned().collect();
    asked.push(PathBuf::from("/usr/bin/bash"));
    asked.push(PathBuf::from("/no/such/file"));
    let (t, cpu) = (Instant::now(), cpu_time());
    let scanned: Vec<Vec<String>> = db
        .owners_of(&asked)
        .iter()
        .map(|v| v.iter().map(|p| p.id()).collect())
        .collect();
    eprintln!(
        "{} questions in one scan: {:?}, {:?} CPU",
        asked.len(),
        t.elapsed(),
        cpu_time() - cpu
    );
    let (t, cpu) = (Instant::now(), cpu_time());
    let first = db.owner(&sample[0]);
    eprintln!(
        "first ownership question (builds the index): {:?}, {:?} CPU",
        t.elapsed(),
        cpu_time() - cpu
    );
    assert!(first.is_some());
    // dpkg -S with many patterns at once: "pkg1, pkg2: path" per path.
    let mut theirs: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    for chunk in sample.chunks(500) {
        let o = Command::new("dpkg").arg("-S").args(chunk).output().unwrap();
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            if line.starts_with("diversion by") {
                continue;
            }
            let (pkgs, path) = line.split_once(": ").unwrap();
            theirs.insert(
                PathBuf::from(path),
                pkgs.split(", ").map(String::from).collect(),
            );
        }
    }
    let t = Instant::now();
    let mut ours: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    for f in &sample {
        let owners: BTreeSet<String> = db.owners(f).iter().map(|p| p.id()).collect();
        ours.insert(f.clone(), owners);
    }
    eprintln!("{} ownership questions: {:?}", sample.len(), t.elapsed());
    let indexed: Vec<Vec<String>> = db
        .owners_of(&asked)
        .iter()
        .map(|v| v.iter().map(|p| p.id()).collect())
        .collect();
    assert_eq!(scanned, indexed);
    assert_eq!(scanned[scanned.len() - 2], ["bash"]);
    assert!(scanned[scanned.len() - 1].is_empty());
    // Diverted paths: dpkg -S names the lister, the file is the diverter's.
    for d in db.diversions() {
        ours.remove(&d.from);
        theirs.remove(&d.from);
    }
    let diff: Vec<String> = ours
        .keys()
        .chain(theirs.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| ours.get(*k) != theirs.get(*k))
        .map(|k| {
            format!(
                "{}: ours {:?}, dpkg -S {:?}",
                k.display(),
                ours.get(k),
                theirs.get(k)
            )
        })
        .collect();
    assert!(
        diff.is_empty(),
        "{} differences:\n{}",
        diff.len(),
        diff[..diff.len().min(20)].join("\n")
    );

    // Merged /usr: /bin/bash is listed, /usr/bin/bash is the same file.
    let aliased: Vec<&PathBuf> = sample
        .iter()
        .filter(|f| f.starts_with("/bin") || f.starts_with("/lib") || f.starts_with("/sbin"))
        .collect();
    if Path::new("/bin").is_symlink() {
        assert!(!aliased.is_empty());
        for f in aliased {
            let real = Path::new("/usr").join(f.strip_prefix("/").unwrap());
            assert_eq!(
                db.owner(&real).map(|p| p.id()),
                db.owner(f).map(|p| p.id()),
                "{}",
                real.display()
            );
        }
        assert_eq!(
            db.owner(Path::new("/usr/bin/bash"))
                .map(|p| p.name.as_str()),
            Some("bash")
        );
    }
    assert!(db.owner(Path::new("/no/such/file")).is_none());
}

/// Paths under /usr/bin that go through /etc/alternatives belong to the
/// package of the file they end at.
#[test]
fn alternatives_resolve_to_their_target() {
    let db = host();
    let mut seen = 0;
    for e in std::fs::read_dir("/usr/bin").unwrap().flatten() {
        let link = e.path();
        let Ok(t) = std::fs::read_link(&link) else {
            continue;
        };
        if !t.starts_with("/etc/alternatives") {
            continue;
        }
        let Ok(real) = std::fs::canonicalize(&link) else {
            continue;
        };
        let alt = db.alternative(&link).unwrap();
        assert_eq!(alt.target, real, "{}", link.display());
        assert_eq!(
            alt.name,
            t.file_name().unwrap().to_string_lossy(),
            "{}",
            link.display()
        );
        let o = Command::new("dpkg").arg("-S").arg(&real).output().unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        let Some(line) = out.lines().find(|l| !l.starts_with("diversion")) else {
            continue;
        };
        let theirs = line.split_once(": ").unwrap().0;
        assert_eq!(
            db.owner(&link).map(|p| p.id()).as_deref(),
            Some(theirs.split(", ").next().unwrap()),
            "{}",
            link.display()
        );
        seen += 1;
    }
    assert!(seen > 0, "no /usr/bin link goes through /etc/alternatives");
    assert!(db.alternative(Path::new("/usr/bin/ls")).is_none());
}

/// md5sums are the package's own (dpkg-query --control-show), with absolute
/// paths; dependencies resolve to installed packages, virtual ones too.
#[test]
fn md5sums_and_dependencies() {
    let db = host();
    for name in ["coreutils", "bash", "libc6"] {
        let p = db.package(name).unwrap();
        let sums = db.md5sums(p).unwrap();
        let theirs = query(&["--control-show", &p.id(), "md5sums"]);
        let theirs: Vec<(PathBuf, String)> = theirs
            .lines()
            .map(|l| {
                let (s, f) = l.split_once("  ").unwrap();
                (Path::new("/").join(f), s.to_string())
            })
            .collect();
        assert_eq!(sums, theirs, "{name}");
    }
    let coreutils = db.package("coreutils").unwrap();
    let deps: Vec<&str> = db
        .dependencies(coreutils)
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert!(deps.contains(&"libc6"), "{deps:?}");
    // Every dependency of every installed package is satisfied by an installed one.
    for p in db.packages().iter().filter(|p| p.installed()) {
        for g in p.depends() {
            assert!(
                db.satisfy(&g).is_some(),
                "{}: nothing installed satisfies {g:?}",
                p.id()
            );
        }
    }
}

/// A database made here, read from a sysroot: diversions move a file to
/// another name, merged-/usr aliases inside the sysroot, stanza bytes kept.
#[test]
fn sysroot_with_diversions() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let admin = root.join("var/lib/dpkg");
    std::fs::create_dir_all(admin.join("info")).unwrap();
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
    std::fs::write(root.join("usr/bin/tool"), "diverter's").unwrap();
    std::fs::write(root.join("usr/bin/tool.real"), "original").unwrap();
    std::fs::write(root.join("usr/bin/sh"), "").unwrap();
    let status = "Package: orig\nStatus: install ok installed\nVersion: 1.0\nArchitecture: amd64\n\
                  Depends: virt, libfoo (>= 2) | libbar\nDescription: one\n two\n\n\
                  Package: diverter\nStatus: install ok installed\nVersion: 2:3-4\n\
                  Architecture: all\nProvides: virt\nSource: div-src (3)\n\n\
                  Package: libbar\nStatus: install ok installed\nMulti-Arch: same\n\
                  Version: 5\nArchitecture: amd64\n\n\
                  Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n";
    std::fs::write(admin.join("status"), status).unwrap();
    std::fs::write(
        admin.join("diversions"),
        "/usr/bin/tool\n/usr/bin/tool.real\ndiverter\n",
    )
    .unwrap();
    std::fs::write(
        admin.join("info/orig.list"),
        "/.\n/usr\n/usr/bin\n/usr/bin/tool\n/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        admin.join("info/diverter.list"),
        "/.\n/usr\n/usr/bin\n/usr/bin/tool\n",
    )
    .unwrap();
    std::fs::write(
        admin.join("info/libbar:amd64.md5sums"),
        "0123456789abcdef0123456789abcdef  usr/lib/libbar.so.5\n",
    )
    .unwrap();
    let db = Dpkg::open_root(root).unwrap().unwrap();
    let owner = |p: &str| db.owner(Path::new(p)).map(|p| p.name.clone());
    assert_eq!(owner("/usr/bin/tool").as_deref(), Some("diverter"));
    assert_eq!(owner("/usr/bin/tool.real").as_deref(), Some("orig"));
    assert_eq!(owner("/usr/bin/sh").as_deref(), Some("orig"));
    assert_eq!(owner("/bin/sh").as_deref(), Some("orig"));
    assert_eq!(owner("/usr/bin/none"), None);
    let orig = db.package("orig").unwrap();
    assert_eq!(
        db.installed_path(orig, Path::new("/usr/bin/tool")),
        Path::new("/usr/bin/tool.real")
    );
    assert_eq!(orig.field("Description"), Some("one\n two"));
    assert!(orig.stanza.ends_with("Description: one\n two"));
    let deps: Vec<&str> = db
        .dependencies(orig)
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(deps, ["diverter", "libbar"]);
    let bar = db.package("libbar").unwrap();
    assert_eq!(bar.id(), "libbar:amd64");
    assert_eq!(
        db.md5sums(bar).unwrap()[0].0,
        Path::new("/usr/lib/libbar.so.5")
    );
    let div = db.package("diverter").unwrap();
    assert_eq!(div.source(), ("div-src".to_string(), "3".to_string()));
    assert_eq!(orig.source(), ("orig".to_string(), "1.0".to_string()));
    assert!(db.package("gone").is_none());
    // A root without a database.
    assert!(Dpkg::open_root(&root.join("usr")).unwrap().is_none());
    // A broken status file is one error naming it.
    std::fs::write(admin.join("status"), "Package: x\nbroken line\n").unwrap();
    let e = format!("{:#}", Dpkg::open_root(root).unwrap_err());
    assert!(e.contains("status") && e.contains("line 2"), "{e}");
}
