//! Stage 2, loader: glibc's dynamic loader, emulated.
//!
//! Takes an ELF file (read by [`crate::elf`]); gives its [`resolve::Closure`],
//! the files `ld.so` would map for it, in the order it maps them, found with
//! glibc's own search rules (DT_RPATH, LD_LIBRARY_PATH, DT_RUNPATH,
//! `/etc/ld.so.cache`, default dirs, glibc-hwcaps). Never runs `ldd` or the
//! program: [`host`] and [`ldcache`]/[`ldconf`] read the facts the real
//! loader reads, so the result is the same on any host. With [`root`], the
//! system is another one's root directory (`--sysroot`), for its machine.

pub mod host;
pub mod ldcache;
pub mod ldconf;
pub mod resolve;
pub mod root;
