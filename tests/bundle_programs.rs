//! Real programs as single files and as `--prefix` bundles, run from
//! `FROM scratch` images under podman, as root and as uid 65532 with a
//! tmpfs /tmp (what Kubernetes' emptyDir gives): java (finds its home from
//! its own path), perl (modules through PERL5LIB), vim (its runtime through
//! VIMRUNTIME), and a program that finds its library through
//! `$ORIGIN/../lib` and its data through `/proc/self/exe/../../share`.
//! Run-time files ship through `--trace` (and `--add`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{compile_c, describe, elfpack, require_root, text, workdir};

const RUNC: &str = "/usr/sbin/runc";

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .arg("--runtime")
        .arg(RUNC)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("podman {args:?}: {e} (test.sh installs podman and runc)"))
}

/// An image tag removed when dropped, also when the test fails.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "-f", &self.0]);
    }
}

/// `FROM scratch`, `COPY root/ /`, built with podman.
fn build(ctx: &Path, tag: &str) -> Image {
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY root/ /\n").unwrap();
    let image = Image(tag.to_string());
    let o = podman(&[
        "build",
        "--isolation",
        "chroot",
        "-t",
        tag,
        ctx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "podman build: {}", describe(&o));
    image
}

/// Runs `argv` in `image` as `user` with a tmpfs /tmp and `env`.
fn run(image: &Image, user: &str, env: &[(String, String)], argv: &[String]) -> Output {
    // runc sets the limits it is given; it may not raise NOFILE past ours.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    let hard = if lim.rlim_max == libc::RLIM_INFINITY {
        "unlimited".to_string()
    } else {
        lim.rlim_max.to_string()
    };
    let mut args: Vec<String> = [
        "run",
        "--rm",
        "--network=none",
        "--tmpfs",
        "/tmp:mode=1777",
        "--user",
        user,
        "--ulimit",
        "nproc=4096:4096",
        "--ulimit",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("nofile={hard}:{hard}"));
    for (k, v) in env {
        args.push("--env".into());
        args.push(format!("{k}={v}"));
    }
    args.push(image.0.clone());
    args.extend(argv.iter().cloned());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    podman(&a)
}

/// One program: how to pack it and run it, and what it must print.
struct Case {
    name: &'static str,
    program: PathBuf,
    /// elfpack options besides the output (e.g. --trace, --add).
    opts: Vec<String>,
    /// Arguments for the traced run and the test run.
    args: Vec<String>,
    expect: &'static str,
}

/// `NAME=VALUE` pairs of a bundle's etc/elfpack.env.
fn env_file(path: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let l = l.split_once("|| { ")?.1;
            let (k, rest) = l.split_once("='")?;
            let v = rest.split_once("'; export")?.0;
            Some((k.to_string(), v.replace("'\\''", "'")))
        })
        .collect()
}

/// The program that finds its library through `$ORIGIN/../lib` (RUNPATH)
/// and its data relative to /proc/self/exe, installed under `dir`.
fn origin_program(dir: &Path) -> PathBuf {
    let app = dir.join("app");
    for d in ["bin", "lib", "share"] {
        std::fs::create_dir_all(app.join(d)).unwrap();
    }
    std::fs::write(app.join("share/greeting.txt"), "found beside me\n").unwrap();
    compile_c(
        &app.join("lib"),
        "libgreet.so",
        "const char *greet_prefix(void) { return \"origin says: \"; }\n",
        &["-shared", "-fPIC"],
    );
    compile_c(
        &app.join("bin"),
        "origin",
        r#"#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <libgen.h>
const char *greet_prefix(void);
int main(void) {
    char exe[4096], path[4200], line[256];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n < 0) { perror("readlink"); return 2; }
    exe[n] = 0;
    snprintf(path, sizeof path, "%s/../share/greeting.txt", dirname(exe));
    FILE *f = fopen(path, "r");
    if (!f || !fgets(line, sizeof line, f)) { perror(path); return 3; }
    printf("%s%s", greet_prefix(), line);
    return 0;
}
"#,
        &[
            "-L",
            app.join("lib").to_str().unwrap(),
            "-lgreet",
            "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../lib",
        ],
    )
}

fn cases(dir: &Path) -> Vec<Case> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let origin = origin_program(dir);
    let greeting = origin
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("share/greeting.txt");
    vec![
        Case {
            name: "java",
            program: PathBuf::from("/usr/bin/java"),
            opts: s(&["--trace"]),
            args: s(&["-XshowSettings:properties", "-version"]),
            expect: "java.home = /",
        },
        Case {
            name: "perl",
            program: PathBuf::from("/usr/bin/perl"),
            opts: s(&["--trace"]),
            args: s(&[
                "-MList::Util=sum",
                "-MPOSIX",
                "-e",
                "print 'sum ', sum(1..4), qq{\\n}",
            ]),
            expect: "sum 10",
        },
        Case {
            name: "vim",
            program: PathBuf::from("/usr/bin/vim.basic"),
            opts: s(&["--trace"]),
            args: s(&[
                "-Nes",
                "-c",
                "syntax on",
                "-c",
                "call writefile([exists('g:syntax_on') ? 'syntax ok' : 'no syntax'], '/dev/stdout')",
                "-c",
                "qa!",
            ]),
            expect: "syntax ok",
        },
        Case {
            name: "origin",
            program: origin,
            opts: vec!["--add".into(), greeting.display().to_string()],
            args: vec![],
            expect: "origin says: found beside me",
        },
    ]
}

#[test]
fn real_programs_as_single_files_and_prefix_bundles_under_podman() {
    if !require_root("podman, bundles of real programs") {
        return;
    }
    let w = workdir();
    let cases = cases(w.path());
    // One image of single files, one of --prefix bundles (each under /opt/NAME).
    let single_ctx = w.path().join("single");
    let prefix_ctx = w.path().join("prefix");
    std::fs::create_dir_all(single_ctx.join("root")).unwrap();
    let mut prefix_env = Vec::new();
    for c in &cases {
        let mut args: Vec<String> = vec![c.program.display().to_string()];
        args.extend(c.opts.iter().cloned());
        args.extend(["--compress", "fast", "--no-layer-size", "-o"].map(String::from));
        args.push(single_ctx.join("root").join(c.name).display().to_string());
        args.push("--".into());
        args.extend(c.args.iter().cloned());
        let o = elfpack().args(&args).output().unwrap();
        assert!(
            o.status.success(),
            "{}: elfpack -o: {}",
            c.name,
            describe(&o)
        );

        let tree = w.path().join(format!("tree-{}", c.name));
        let mut args: Vec<String> = vec![c.program.display().to_string()];
        args.extend(c.opts.iter().cloned());
        args.extend(["--no-layer-size", "--prefix"].map(String::from));
        args.push(format!("/opt/{}", c.name));
        args.push("--rootfs".into());
        args.push(tree.display().to_string());
        args.push("--".into());
        args.extend(c.args.iter().cloned());
        let o = elfpack().args(&args).output().unwrap();
        assert!(
            o.status.success(),
            "{}: elfpack --prefix: {}",
            c.name,
            describe(&o)
        );
        prefix_env.push(env_file(
            &tree.join(format!("opt/{}/etc/elfpack.env", c.name)),
        ));
        // The trees share /etc and /tmp; copy them into one.
        std::fs::create_dir_all(prefix_ctx.join("root")).unwrap();
        let st = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", tree.display()))
            .arg(prefix_ctx.join("root"))
            .status()
            .unwrap();
        assert!(st.success());
    }
    let single = build(&single_ctx, "elfpack-test-bundle-programs-single");
    let prefix = build(&prefix_ctx, "elfpack-test-bundle-programs-prefix");
    let mut failed = Vec::new();
    for user in ["0", "65532"] {
        for (c, env) in cases.iter().zip(&prefix_env) {
            let mut argv = vec![format!("/{}", c.name)];
            argv.extend(c.args.iter().cloned());
            let o = run(&single, user, &[], &argv);
            if !(o.status.success() && (text(&o.stdout) + &text(&o.stderr)).contains(c.expect)) {
                failed.push(format!(
                    "single file {} as {user}: {}",
                    c.name,
                    describe(&o)
                ));
            }
            let mut argv = vec![format!("/opt/{}{}", c.name, c.program.display())];
            argv.extend(c.args.iter().cloned());
            let o = run(&prefix, user, env, &argv);
            if !(o.status.success() && (text(&o.stdout) + &text(&o.stderr)).contains(c.expect)) {
                failed.push(format!("--prefix {} as {user}: {}", c.name, describe(&o)));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}
