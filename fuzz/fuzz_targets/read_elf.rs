//! Arbitrary bytes through both ELF readers: the loader-facts reader used by
//! the resolver and the editor's reader. Neither may panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = elfpack::elf::parse(data);
    let _ = elfpack::elf::edit::inspect(data);
});
