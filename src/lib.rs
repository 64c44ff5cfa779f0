//! elfpack: make a dynamically linked Linux program run where nothing else
//! exists (a `FROM scratch` image, another distro, a machine without its
//! libraries).
//!
//! The pipeline, one module per step:
//! 1. [`elf`] reads what the loader acts on (PT_INTERP, DT_NEEDED, RPATH...);
//! 2. [`resolve`] finds the files glibc's loader would open ([`host`] and
//!    [`ldcache`] supply its search facts), and [`runtime`] adds what libc
//!    itself loads later; [`collect`] does this for every program named;
//! 3. [`layout`] decides where each file goes, as a [`plan::Plan`];
//! 4. [`emit`] writes a plan out; [`report`] explains a closure.

pub mod cli;
pub mod collect;
pub mod elf;
pub mod elfedit;
pub mod emit;
pub mod extras;
pub mod host;
pub mod layout;
pub mod ldcache;
pub mod ldconf;
pub mod locale_archive;
pub mod measure;
pub mod pack;
pub mod plan;
pub mod prefix;
pub mod prefix_root;
pub mod report;
pub mod resolve;
pub mod runtime;
pub mod scratch_etc;
pub mod script;
pub mod selftest;
pub mod trace;
