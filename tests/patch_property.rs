//! Random sequences of edits (interpreter, RPATH, DT_NEEDED, SONAME; growing
//! and shrinking, in random order) on real Debian programs and libraries:
//! every result still runs (`--version`) or loads (`dlopen` with RTLD_NOW),
//! and `readelf -a` has nothing to warn about. The seed is printed; set
//! ELFPACK_PROPERTY_SEED to replay a run.

mod common;

use common::{compile_c, describe, run_elfpack, workdir};

use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAMS: &[(&str, &str)] = &[
    ("/usr/bin/curl", "--version"),
    ("/usr/bin/sqlite3", "-version"),
    ("/usr/bin/git", "--version"),
    ("/usr/bin/ls", "--version"),
    ("/usr/bin/getent", "--version"),
];

const LIBRARIES: &[&str] = &[
    "libz.so.1",
    "libcurl.so.4",
    "libsqlite3.so.0",
    "libssl.so.3",
];

const CASES: usize = 200;

/// xorshift64*: a dependency-free, replayable sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn path(&mut self) -> String {
        let len = 1 + self.below(300) as usize;
        (0..len)
            .map(|i| {
                if i % 40 == 0 {
                    '/'
                } else {
                    (b'a' + self.below(26) as u8) as char
                }
            })
            .collect()
    }
}

fn readelf_clean(p: &Path, what: &str) {
    let o = Command::new("readelf")
        .args(["-a", "-W"])
        .arg(p)
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{what}: readelf -a: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn random_edit_sequences_keep_files_working() {
    let seed = std::env::var("ELFPACK_PROPERTY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("seed {seed} (ELFPACK_PROPERTY_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let t = workdir();
    let d = t.path();
    let loader = compile_c(
        d,
        "dlopen-now",
        "#include <dlfcn.h>\n#include <stdio.h>\nint main(int c, char **v){\
         void *h = dlopen(v[1], RTLD_NOW);\
         if (!h) { fprintf(stderr, \"%s\\n\", dlerror()); return 1; }\
         puts(\"loaded\"); return 0; }\n",
        &[],
    );
    // Other names for the loader, shorter and longer than the usual one.
    let long_dir = d.join(format!("a-long-directory-{}", "l".repeat(120)));
    std::fs::create_dir_all(&long_dir).unwrap();
    std::os::unix::fs::symlink("/lib64/ld-linux-x86-64.so.2", long_dir.join("ld.so")).unwrap();
    std::os::unix::fs::symlink("/lib64/ld-linux-x86-64.so.2", d.join("l")).unwrap();
    let interpreters = [
        long_dir.join("ld.so").display().to_string(),
        d.join("l").display().to_string(),
        "/lib64/ld-linux-x86-64.so.2".to_string(),
        "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2".to_string(),
    ];
    let libdir = Path::new("/usr/lib/x86_64-linux-gnu");
    let mut inputs: Vec<(PathBuf, Option<&str>)> = PROGRAMS
        .iter()
        .map(|(p, arg)| (PathBuf::from(p), Some(*arg)))
        .collect();
    inputs.extend(LIBRARIES.iter().map(|l| (libdir.join(l), None)));
    for (input, _) in &inputs {
        assert!(input.exists(), "{}: test.sh installs it", input.display());
        readelf_clean(input, "the original");
    }
    let file = d.join("subject");
    for case in 0..CASES {
        let (input, arg) = &inputs[rng.below(inputs.len() as u64) as usize];
        std::fs::copy(input, &file).unwrap();
        let f = file.to_str().unwrap();
        let needed_before: Vec<String> =
            common::stdout_ok(run_elfpack(&["patch", "--print-needed", f]))
                .lines()
                .map(str::to_string)
                .collect();
        let mut added_libm = false;
        let mut replaced: Option<(String, String)> = None;
        let mut log = Vec::new();
        for _ in 0..1 + rng.below(6) {
            let mut args: Vec<String> = Vec::new();
            match rng.below(7) {
                0 if arg.is_some() => {
                    let i = &interpreters[rng.below(interpreters.len() as u64) as usize];
                    args.extend(["--set-interpreter".into(), i.clone()]);
                }
                1 => {
                    let force = rng.below(2) == 0;
                    if force {
                        args.push("--force-rpath".into());
                    }
                    args.extend(["--set-rpath".into(), format!("/nonexistent/{}", rng.path())]);
                }
                2 => args.push("--remove-rpath".into()),
                3 if !added_libm && !needed_before.iter().any(|n| n == "libm.so.6") => {
                    args.extend(["--add-needed".into(), "libm.so.6".into()]);
                    added_libm = true;
                }
                3 if added_libm => {
                    args.extend(["--remove-needed".into(), "libm.so.6".into()]);
                    added_libm = false;
                }
                4 => match replaced.take() {
                    // Back to the plain name.
                    Some((old, new)) => args.extend(["--replace-needed".into(), new, old]),
                    None => {
                        let n = &needed_before[rng.below(needed_before.len() as u64) as usize];
                        let full = std::fs::canonicalize(libdir.join(n))
                            .unwrap_or_else(|_| libdir.join(n))
                            .display()
                            .to_string();
                        args.extend(["--replace-needed".into(), n.clone(), full.clone()]);
                        replaced = Some((n.clone(), full));
                    }
                },
                5 if arg.is_none() => {
                    let name = input.file_name().unwrap().to_str().unwrap();
                    let soname = if rng.below(2) == 0 {
                        name.to_string()
                    } else {
                        format!("{name}.{}", rng.path().replace('/', "-"))
                    };
                    args.extend(["--set-soname".into(), soname]);
                }
                _ => {
                    args.extend(["--add-rpath".into(), format!("/nonexistent/{}", rng.path())]);
                }
            }
            let mut all = vec!["patch".to_string()];
            all.extend(args.iter().cloned());
            all.push(f.to_string());
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            let o = run_elfpack(&refs);
            log.push(args.join(" "));
            assert!(
                o.status.success(),
                "case {case} (seed {seed}) {}: {log:?}: {}",
                input.display(),
                describe(&o)
            );
        }
        let what = format!("case {case} (seed {seed}) {}: {log:?}", input.display());
        readelf_clean(&file, &what);
        let o = match arg {
            Some(a) => Command::new(&file).arg(a).output().unwrap(),
            None => Command::new(&loader).arg(&file).output().unwrap(),
        };
        assert!(o.status.success(), "{what}: {}", describe(&o));
    }
}
