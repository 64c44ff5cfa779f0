//! The launcher's payload decoders. A crate of their own so that the
//! launcher's profile can build them for speed (they are the whole first
//! start) and everything else for size (the launcher is in every file).
#![no_std]

pub mod bcj;
pub mod lzma;
