//! What every benchmark needs (each bench is its own crate, so they share
//! this module the way the tests share `tests/common`).
#![allow(dead_code)]

use std::time::Duration;

/// The elfpack binary cargo built for the benches.
pub const ELFPACK: &str = env!("CARGO_BIN_EXE_elfpack");

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The median of `v` (the upper one of an even count), in ms.
pub fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    ms(v[v.len() / 2])
}
