//! A mutation fuzzer that runs on stable Rust, over the same properties as
//! the cargo-fuzz targets in `fuzz/`: reading or editing arbitrary bytes
//! never panics, and a successful edit reads back. Seeds are real programs
//! and libraries. `ELFPACK_FUZZ_EXECS` sets the number of executions
//! (default 20,000 so `cargo test` stays quick; README gives the long run).

use elfpack::elf::edit::{Edits, edit_bytes, inspect};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x1000,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    u64::MAX,
    u64::MAX / 2,
];

/// Mutates where it matters most: the ELF header, the program headers and
/// the dynamic section (the first few KiB), plus occasional truncation.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let hot = d.len().min(if rng.below(4) == 0 { d.len() } else { 4096 });
        match rng.below(5) {
            0 => {
                let i = rng.below(hot);
                d[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(hot);
                d[i] = rng.next() as u8;
            }
            2 => {
                let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let w = [1, 2, 4, 8][rng.below(4)];
                if d.len() >= w {
                    let i = rng.below(hot.min(d.len() - w + 1));
                    d[i..i + w].copy_from_slice(&v[..w]);
                }
            }
            3 => {
                let n = rng.below(d.len());
                d.truncate(n);
            }
            _ => {
                // Point a header offset field somewhere random.
                let field = [32usize, 40, 56, 60][rng.below(4)];
                if d.len() > field + 8 {
                    let v = rng.below(seed.len() * 2) as u64;
                    d[field..field + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        if d.is_empty() {
            break;
        }
    }
    d
}

fn edits_for(pick: u64) -> Edits {
    let long =
        "/a/path/long/enough/to/need/a/new/segment/for/its/string/ld-linux-x86-64.so.2".to_string();
    match pick % 6 {
        0 => Edits {
            interpreter: Some(long),
            ..Default::default()
        },
        1 => Edits {
            interpreter: Some("/l".into()),
            ..Default::default()
        },
        2 => Edits {
            rpath: Some(long),
            force_rpath: pick & 8 != 0,
            ..Default::default()
        },
        3 => Edits {
            remove_rpath: true,
            remove_needed: vec!["libc.so.6".into()],
            ..Default::default()
        },
        4 => Edits {
            add_needed: vec!["libm.so.6".into()],
            soname: Some("libx.so".into()),
            ..Default::default()
        },
        _ => Edits {
            replace_needed: vec![("libc.so.6".into(), "libc-other.so.6".into())],
            ..Default::default()
        },
    }
}

#[test]
fn reading_and_editing_arbitrary_bytes_never_panics() {
    let execs: usize = std::env::var("ELFPACK_FUZZ_EXECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seeds: Vec<Vec<u8>> = [
        "/usr/bin/true",
        "/usr/bin/env",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
    ]
    .iter()
    .filter_map(|p| std::fs::read(p).ok())
    .collect();
    assert!(!seeds.is_empty());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ execs as u64);
    let (mut edited, mut refused) = (0usize, 0usize);
    for n in 0..execs {
        let seed = &seeds[n % seeds.len()];
        let data = mutate(&mut rng, seed);
        let _ = elfpack::elf::parse(&data);
        let _ = inspect(&data);
        match edit_bytes(&data, &edits_for(rng.next())) {
            Ok(out) => {
                edited += 1;
                inspect(&out).expect("an edited file must read back");
            }
            Err(_) => refused += 1,
        }
    }
    eprintln!("fuzz: {execs} executions, {edited} edited, {refused} refused");
    assert!(
        edited > execs / 20,
        "mutations should still leave many editable files ({edited})"
    );
}
