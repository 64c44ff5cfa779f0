//! Arbitrary bytes through every kind of edit; an edit that succeeds must
//! give a file the readers accept again.
#![no_main]

use elfpack::elf::edit::{Edits, edit_bytes, inspect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    // The first byte picks the edit, the rest is the file.
    let (pick, file) = (data[0], &data[1..]);
    let long = "/a/path/long/enough/to/need/a/new/segment/for/its/string/ld-linux-x86-64.so.2".to_string();
    let edits = match pick % 6 {
        0 => Edits { interpreter: Some(long), ..Default::default() },
        1 => Edits { interpreter: Some("/l".into()), ..Default::default() },
        2 => Edits { rpath: Some(long), force_rpath: pick & 0x80 != 0, ..Default::default() },
        3 => Edits { remove_rpath: true, remove_needed: vec!["libc.so.6".into()], ..Default::default() },
        4 => Edits { add_needed: vec!["libm.so.6".into()], soname: Some("libx.so".into()), ..Default::default() },
        _ => Edits { replace_needed: vec![("libc.so.6".into(), "libc-other.so.6".into())], ..Default::default() },
    };
    if let Ok(out) = edit_bytes(file, &edits) {
        inspect(&out).expect("an edited file must read back");
    }
});
