//! The loader's search rules on small libraries built here: each case is
//! checked against `ld.so --list` (the oracle) and, where it matters, by
//! running the program.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::gcc;
use elfpack::collect::{self, Collection};
use elfpack::loader::ldcache::LdCache;
use elfpack::loader::resolve::{NotFound, Resolver};

const FIX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/resolve");

/// Builds liba (with `mark`) as `dir/liba.so`.
fn liba(dir: &Path, mark: &str, extra: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join("liba.so");
    let define = format!("-DMARK=\"{mark}\"");
    let mut args = vec![
        "-shared",
        "-fPIC",
        "-o",
        out.to_str().unwrap(),
        &define,
        "-Wl,-soname,liba.so",
    ];
    args.extend_from_slice(extra);
    let src = format!("{FIX}/liba.c");
    args.push(&src);
    gcc(&args);
}

/// Builds `dir/libb.so` needing liba (linked against `a_dir`), with `flags`.
fn libb(dir: &Path, a_dir: &Path, flags: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join("libb.so");
    let l = format!("-L{}", a_dir.display());
    let src = format!("{FIX}/libb.c");
    let mut args = vec![
        "-shared",
        "-fPIC",
        "-o",
        out.to_str().unwrap(),
        &src,
        &l,
        "-la",
        "-Wl,-soname,libb.so",
    ];
    args.extend_from_slice(flags);
    gcc(&args);
}

/// Builds `path` (main.c) linked against libb in `b_dir`, with `flags`.
fn program(path: &Path, b_dir: &Path, flags: &[&str]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let l = format!("-L{}", b_dir.display());
    let src = format!("{FIX}/main.c");
    let mut args = vec![
        "-o",
        path.to_str().unwrap(),
        &src,
        &l,
        "-lb",
        "-Wl,--allow-shlib-undefined",
    ];
    args.extend_from_slice(flags);
    gcc(&args);
}

fn oracle(prog: &Path) -> Result<BTreeSet<PathBuf>, String> {
    let out = Command::new("/lib64/ld-linux-x86-64.so.2")
        .arg("--list")
        .arg(prog)
        .env_clear()
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if text.contains("not found") || !out.status.success() {
        return Err(text + &String::from_utf8_lossy(&out.stderr));
    }
    let mut set: BTreeSet<PathBuf> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let p = l.split_once(" => ").map(|(_, r)| r).unwrap_or(l);
            let p = p.rsplit_once(" (").map(|(p, _)| p).unwrap_or(p);
            p.starts_with('/')
                .then(|| std::fs::canonicalize(p).unwrap())
        })
        .collect();
    set.insert(std::fs::canonicalize("/lib64/ld-linux-x86-64.so.2").unwrap());
    Ok(set)
}

fn ours(r: &mut Resolver, prog: &Path) -> anyhow::Result<BTreeSet<PathBuf>> {
    let c = r.resolve(prog)?;
    Ok(c.objects[1..]
        .iter()
        .map(|o| std::fs::canonicalize(&o.path).unwrap())
        .collect())
}

/// Asserts elfpack and the loader agree; returns the real path of liba used.
fn agree(prog: &Path) -> PathBuf {
    let expected = oracle(prog).unwrap_or_else(|e| panic!("ld.so --list {}: {e}", prog.display()));
    let got = ours(&mut Resolver::new().unwrap(), prog).unwrap();
    assert_eq!(
        got,
        expected,
        "elfpack vs ld.so --list for {}",
        prog.display()
    );
    got.into_iter()
        .find(|p| p.file_name().unwrap() == "liba.so")
        .expect("liba in the closure")
}

fn run(prog: &Path) -> String {
    let out = Command::new(prog).output().unwrap();
    assert!(out.status.success(), "{} failed: {:?}", prog.display(), out);
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn origin_runpath_chain() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    liba(&d.join("lib/deeper"), "origin", &[]);
    libb(
        &d.join("lib"),
        &d.join("lib/deeper"),
        &["-Wl,--enable-new-dtags,-rpath,$ORIGIN/deeper"],
    );
    program(
        &d.join("bin/prog"),
        &d.join("lib"),
        &["-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib"],
    );
    assert_eq!(
        agree(&d.join("bin/prog")),
        d.join("lib/deeper/liba.so").canonicalize().unwrap()
    );
    assert_eq!(run(&d.join("bin/prog")), "liba: origin\n");
}

#[test]
fn rpath_is_inherited_by_dependencies_but_runpath_is_not() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    liba(&d.join("adir"), "from-rpath", &[]);
    libb(&d.join("bdir"), &d.join("adir"), &[]);
    let rpath = format!(
        "-Wl,--disable-new-dtags,-rpath,{}:{}",
        d.join("bdir").display(),
        d.join("adir").display()
    );
    program(&d.join("bin/with-rpath"), &d.join("bdir"), &[&rpath]);
    assert_eq!(
        agree(&d.join("bin/with-rpath")),
        d.join("adir/liba.so").canonicalize().unwrap()
    );
    assert_eq!(run(&d.join("bin/with-rpath")), "liba: from-rpath\n");

    // The same paths as DT_RUNPATH only serve the program's own DT_NEEDED:
    // libb's need for liba is not found, by the loader or by elfpack.
    let runpath = rpath.replace("--disable-new-dtags", "--enable-new-dtags");
    program(&d.join("bin/with-runpath"), &d.join("bdir"), &[&runpath]);
    let prog = d.join("bin/with-runpath");
    assert!(oracle(&prog).is_err(), "the loader should not find liba");
    let err = ours(&mut Resolver::new().unwrap(), &prog).unwrap_err();
    let nf = err.downcast_ref::<NotFound>().expect("a NotFound error");
    assert_eq!(nf.name, "liba.so");
    assert!(nf.needed_by.ends_with("bdir/libb.so"), "{err:#}");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("ld.so.cache") && msg.contains("/usr/lib/x86_64-linux-gnu"),
        "{msg}"
    );
}

#[test]
fn runpath_of_the_requester_disables_the_rpath_chain() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    liba(&d.join("adir"), "program-rpath", &[]);
    liba(&d.join("cdir"), "libb-runpath", &[]);
    let libb_runpath = format!("-Wl,--enable-new-dtags,-rpath,{}", d.join("cdir").display());
    libb(&d.join("bdir"), &d.join("adir"), &[&libb_runpath]);
    let rpath = format!(
        "-Wl,--disable-new-dtags,-rpath,{}:{}",
        d.join("adir").display(),
        d.join("bdir").display()
    );
    program(&d.join("prog"), &d.join("bdir"), &[&rpath]);
    // With an RPATH chain, the program's adir would win; libb's RUNPATH
    // switches that rule off, so cdir's copy loads.
    assert_eq!(
        agree(&d.join("prog")),
        d.join("cdir/liba.so").canonicalize().unwrap()
    );
    assert_eq!(run(&d.join("prog")), "liba: libb-runpath\n");
}

#[test]
fn wrong_class_candidates_are_skipped() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    // A 32-bit liba earlier in the path: the loader skips it silently.
    liba(&d.join("dir32"), "i386", &["-m32", "-nostdlib"]);
    liba(&d.join("dir64"), "x86-64", &[]);
    libb(&d.join("bdir"), &d.join("dir64"), &[]);
    let rpath = format!(
        "-Wl,--disable-new-dtags,-rpath,{}:{}:{}",
        d.join("dir32").display(),
        d.join("dir64").display(),
        d.join("bdir").display()
    );
    program(&d.join("prog"), &d.join("bdir"), &[&rpath]);
    assert_eq!(
        agree(&d.join("prog")),
        d.join("dir64/liba.so").canonicalize().unwrap()
    );
    assert_eq!(run(&d.join("prog")), "liba: x86-64\n");
}

#[test]
fn hwcaps_copy_is_chosen_and_brings_its_baseline() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    liba(&d.join("adir"), "baseline", &[]);
    liba(&d.join("adir/glibc-hwcaps/x86-64-v2"), "v2", &[]);
    libb(&d.join("bdir"), &d.join("adir"), &[]);
    let rpath = format!(
        "-Wl,--disable-new-dtags,-rpath,{}:{}",
        d.join("adir").display(),
        d.join("bdir").display()
    );
    program(&d.join("prog"), &d.join("bdir"), &[&rpath]);
    assert_eq!(
        agree(&d.join("prog")),
        d.join("adir/glibc-hwcaps/x86-64-v2/liba.so")
            .canonicalize()
            .unwrap()
    );
    assert_eq!(run(&d.join("prog")), "liba: v2\n");
    let c = Resolver::new().unwrap().resolve(&d.join("prog")).unwrap();
    let a = c.objects.iter().find(|o| o.name == "liba.so").unwrap();
    assert_eq!(
        a.baseline.as_deref(),
        Some(d.join("adir/liba.so").as_path())
    );
}

#[test]
fn nodeflib_refuses_default_dirs() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    liba(&d.join("adir"), "x", &[]);
    libb(&d.join("bdir"), &d.join("adir"), &[]);
    let rpath = format!(
        "-Wl,--disable-new-dtags,-rpath,{}:{}",
        d.join("adir").display(),
        d.join("bdir").display()
    );
    program(
        &d.join("prog"),
        &d.join("bdir"),
        &[&rpath, "-Wl,-z,nodefaultlib"],
    );
    // libc.so.6 lives only in system dirs: neither the cache hit nor the
    // default dirs may be used for the program's own needs.
    assert!(oracle(&d.join("prog")).is_err());
    let err = ours(&mut Resolver::new().unwrap(), &d.join("prog")).unwrap_err();
    assert_eq!(
        err.downcast_ref::<NotFound>().unwrap().name,
        "libc.so.6",
        "{err:#}"
    );
}

/// A library the host finds only through ld.so.conf (an ldconfig-built cache)
/// must be found in the rootfs too: elfpack ships the matching cache entries.
#[test]
fn library_known_only_to_ld_so_cache_runs_in_rootfs() {
    if !nix_root() {
        eprintln!("skipped: needs root for chroot");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let d = t.path().canonicalize().unwrap();
    let libdir = d.join("opt/vendor/lib");
    liba(&libdir, "via-cache", &[]);
    libb(&libdir, &libdir, &[]);
    program(&d.join("prog"), &libdir, &[]);
    // A cache holding the host's entries plus the vendor dir, like running
    // ldconfig after adding it to /etc/ld.so.conf.d.
    let conf = d.join("ld.so.conf");
    std::fs::write(
        &conf,
        format!("include /etc/ld.so.conf\n{}\n", libdir.display()),
    )
    .unwrap();
    let cache = d.join("ld.so.cache");
    let st = Command::new("ldconfig")
        .arg("-C")
        .arg(&cache)
        .arg("-f")
        .arg(&conf)
        .status()
        .unwrap();
    assert!(st.success());
    let mut r = Resolver::with_cache(LdCache::load(&cache).unwrap());
    let opts = collect::Options {
        nsswitch: elfpack::plan::scratch_etc::NSSWITCH.into(),
        gconv: Default::default(),
        search_path: String::new(),
        extras: Default::default(),
    };
    let col: Collection = collect::collect(&mut r, &[d.join("prog")], &opts).unwrap();
    let c = &col.closures[0];
    let a = c.objects.iter().find(|o| o.name == "liba.so").unwrap();
    assert_eq!(a.via, elfpack::loader::resolve::Via::Cache);
    let ropts = elfpack::plan::layout::RootfsOptions {
        scratch_etc: true,
        nsswitch: opts.nsswitch.clone(),
        ..Default::default()
    };
    let plan = elfpack::plan::layout::rootfs_plan(&col, r.ld_cache(), &ropts).unwrap();
    let root = d.join("root");
    elfpack::emit::rootfs::write(&plan, &root, false).unwrap();
    let out = Command::new("chroot")
        .arg(&root)
        .arg(d.join("prog"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "liba: via-cache\n");
}

fn nix_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}
