//! What the host's glibc loader would derive from the CPU and its build
//! configuration: which subdirectories it probes under every search directory,
//! and what `$LIB` and `$PLATFORM` expand to.
//!
//! The values mirror glibc 2.36 on Debian x86-64 (`ld.so --help` and
//! `ld.so --list-diagnostics` print them); they are computed from CPUID here so
//! that resolution never has to run the loader.

/// The loader's view of this machine.
#[derive(Debug, Clone)]
pub struct HostCaps {
    /// glibc-hwcaps subdirectories the CPU supports, best first
    /// (e.g. `x86-64-v4`, `x86-64-v3`, `x86-64-v2`).
    pub hwcaps: Vec<&'static str>,
    /// Every subdirectory probed under a search directory, in the loader's
    /// order: `glibc-hwcaps/<level>` first, then the legacy hwcap/platform
    /// combinations, and finally the directory itself (`""`).
    pub subdirs: Vec<String>,
    /// Expansion of `$PLATFORM` (glibc upgrades `x86_64` to `haswell` or
    /// `xeon_phi` on CPUs that qualify).
    pub platform: String,
    /// Expansion of `$LIB` (Debian's multiarch directory).
    pub lib: &'static str,
    /// The loader's built-in search path ("system search path").
    pub system_dirs: Vec<&'static str>,
    /// The loader's default PT_INTERP, used for shared libraries given alone.
    pub default_interpreter: &'static str,
    /// The ELF machine (`e_machine`) this loader runs.
    pub machine: u16,
    /// ld.so.cache flags of this machine's 64-bit libraries.
    pub cache_flags: i32,
}

impl HostCaps {
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        let (hwcaps, platform, avx512_1) = detect_x86_64();
        #[cfg(not(target_arch = "x86_64"))]
        let (hwcaps, platform, avx512_1) = (Vec::new(), String::from("unknown"), false);

        // Legacy subdirectories: every subset of [tls, platform, avx512_1,
        // x86_64], enumerated like a binary counter from all-set down to none,
        // with `tls` the most significant component (`LD_DEBUG=libs` order).
        let mut parts: Vec<&str> = vec!["tls"];
        if platform != "x86_64" {
            parts.push(&platform);
        }
        if avx512_1 {
            parts.push("avx512_1");
        }
        parts.push("x86_64");
        let n = parts.len();
        let mut subdirs: Vec<String> = hwcaps.iter().map(|h| format!("glibc-hwcaps/{h}")).collect();
        for mask in (0..(1u32 << n)).rev() {
            let combo: Vec<&str> = (0..n)
                .filter(|i| mask & (1 << (n - 1 - i)) != 0)
                .map(|i| parts[i])
                .collect();
            subdirs.push(combo.join("/"));
        }
        HostCaps {
            hwcaps,
            subdirs,
            platform,
            lib: "lib/x86_64-linux-gnu",
            system_dirs: vec![
                "/lib/x86_64-linux-gnu",
                "/usr/lib/x86_64-linux-gnu",
                "/lib",
                "/usr/lib",
            ],
            default_interpreter: "/lib64/ld-linux-x86-64.so.2",
            machine: goblin::elf::header::EM_X86_64,
            cache_flags: crate::loader::ldcache::X86_64_LIBC6,
        }
    }

    /// The loader of another machine's system (`--sysroot`): x86-64 (this
    /// CPU's view) or aarch64 as glibc 2.36 on Debian sets it up (`ld.so
    /// --help` under qemu: no glibc-hwcaps subdirectories; legacy
    /// subdirectories from AT_PLATFORM `aarch64`, `tls` and the `atomics`
    /// hwcap, probed as every subset, `tls` first).
    pub fn for_machine(machine: u16) -> Option<Self> {
        match machine {
            goblin::elf::header::EM_X86_64 => Some(Self::detect()),
            goblin::elf::header::EM_AARCH64 => Some(HostCaps {
                hwcaps: Vec::new(),
                subdirs: [
                    "tls/aarch64/atomics",
                    "tls/aarch64",
                    "tls/atomics",
                    "tls",
                    "aarch64/atomics",
                    "aarch64",
                    "atomics",
                    "",
                ]
                .map(String::from)
                .to_vec(),
                platform: "aarch64".into(),
                lib: "lib/aarch64-linux-gnu",
                system_dirs: vec![
                    "/lib/aarch64-linux-gnu",
                    "/usr/lib/aarch64-linux-gnu",
                    "/lib",
                    "/usr/lib",
                ],
                default_interpreter: "/lib/ld-linux-aarch64.so.1",
                machine,
                // FLAG_AARCH64_LIB64 | FLAG_ELF_LIBC6 (glibc's ldconfig.h).
                cache_flags: 0x0a03,
            }),
            _ => None,
        }
    }

    /// Priority of a glibc-hwcaps subdirectory for ld.so.cache selection:
    /// higher is better, 0 means the CPU cannot use it.
    pub fn hwcaps_priority(&self, name: &str) -> u32 {
        match self.hwcaps.iter().position(|h| *h == name) {
            Some(i) => (self.hwcaps.len() - i) as u32,
            None => 0,
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn detect_x86_64() -> (Vec<&'static str>, String, bool) {
    use std::arch::is_x86_feature_detected as has;
    // x86-64 psABI micro-architecture levels, as glibc's
    // sysdeps/x86/get-isa-level.h checks them.
    let v2 = has!("cmpxchg16b")
        && has!("popcnt")
        && has!("sse3")
        && has!("sse4.1")
        && has!("sse4.2")
        && has!("ssse3");
    let v3 = v2
        && has!("avx")
        && has!("avx2")
        && has!("bmi1")
        && has!("bmi2")
        && has!("f16c")
        && has!("fma")
        && has!("lzcnt")
        && has!("movbe");
    let avx512_1 = has!("avx512f")
        && has!("avx512bw")
        && has!("avx512cd")
        && has!("avx512dq")
        && has!("avx512vl");
    let v4 = v3 && avx512_1;
    let mut levels = Vec::new();
    if v4 {
        levels.push("x86-64-v4");
    }
    if v3 {
        levels.push("x86-64-v3");
    }
    if v2 {
        levels.push("x86-64-v2");
    }
    // sysdeps/x86/cpu-features.c: "haswell" when AVX2, BMI1, BMI2, LZCNT,
    // MOVBE and POPCNT are usable; "xeon_phi" for AVX512ER parts.
    let platform = if has!("avx512f") && has!("avx512cd") && is_xeon_phi() {
        "xeon_phi"
    } else if has!("avx2")
        && has!("bmi1")
        && has!("bmi2")
        && has!("lzcnt")
        && has!("movbe")
        && has!("popcnt")
    {
        "haswell"
    } else {
        "x86_64"
    };
    (levels, platform.to_string(), avx512_1)
}

#[cfg(target_arch = "x86_64")]
fn is_xeon_phi() -> bool {
    // AVX512ER is CPUID.(EAX=7,ECX=0):EBX bit 27; std has no name for it.
    let leaf = std::arch::x86_64::__cpuid_count(7, 0);
    leaf.ebx & (1 << 27) != 0
}
