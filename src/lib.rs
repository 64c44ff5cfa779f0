//! elfpack: make a dynamically linked Linux program run where nothing else
//! exists (a `FROM scratch` image, another distro, a machine without its
//! libraries).
//!
//! The pipeline, one folder per stage; data flows one way, each stage uses
//! only the ones before it:
//! 1. [`elf`] reads what the loader acts on (PT_INTERP, DT_NEEDED, RPATH...)
//!    and edits it ([`elf::edit`], `elfpack patch`);
//! 2. [`loader`] finds the files glibc's loader would open;
//! 3. [`collect`] adds what libc loads later and what no ELF header names;
//! 4. [`plan`] decides where each file goes, as a [`plan::Plan`];
//! 5. [`emit`] writes a plan out as a tree, tarball, OCI image or single file.
//!
//! Beside it: [`report`] explains a collection (`elfpack deps`), [`measure`]
//! sizes and times outputs, [`selftest`] runs a result in an empty root,
//! [`output`] writes every output atomically, [`progress`] shows long work
//! on a terminal, [`cli`] is the command line.

pub mod cli;
pub mod collect;
pub mod elf;
pub mod emit;
pub mod loader;
pub mod measure;
pub mod output;
pub mod plan;
pub mod progress;
pub mod report;
pub mod selftest;
