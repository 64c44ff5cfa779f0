//! Builds the static launcher in `stub/` and hands its bytes to the library
//! (`include_bytes!` in src/emit/single_file). The stub is its own crate with its own
//! profile (panic=abort, no libc), built into OUT_DIR with the same cargo,
//! so a plain `cargo build` of elfpack is all it takes.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("stub/Cargo.toml");
    println!("cargo:rerun-if-changed=stub/src");
    println!("cargo:rerun-if-changed=stub/Cargo.toml");
    println!("cargo:rerun-if-changed=stub/build.rs");
    println!("cargo:rerun-if-changed=stub/.cargo");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target_dir = out.join("stub-target");
    let mut cmd = Command::new(cargo);
    // From stub/, so that stub/.cargo/config.toml (its rustflags) applies.
    cmd.current_dir(manifest.parent().unwrap());
    cmd.args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir);
    // Nothing of the outer build's flags or wrappers (clippy, coverage,
    // sanitizers) may leak into the stub.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("cannot run cargo to build the stub");
    assert!(status.success(), "building stub/ failed");
    let bin = target_dir.join("release/elfpack-stub");
    std::fs::copy(&bin, out.join("elfpack-stub")).expect("stub binary missing");
}
