//! What the launcher adds to the program's start: environment defaults that
//! point at files in the bundle (`.elfpack-env`: `NAME=VALUE` lines, set
//! only when NAME is not set, so the user always wins) and, for a `#!`
//! script, the argv the kernel would have built for it (`.elfpack-argv`:
//! interpreter, optional argument, script; the user's arguments follow).
//! `${ELFPACK_BUNDLE}` in both stands for the unpacked directory.
//!
//! No allocator: strings and pointer arrays go into one anonymous mapping,
//! which execve copies and the exec'd program never sees.

use crate::Path;
use crate::sys::*;

const TOKEN: &[u8] = b"${ELFPACK_BUNDLE}";

/// How `${ELFPACK_BUNDLE}` expands.
pub enum Base<'a> {
    /// The unpacked directory: every occurrence becomes this path.
    Dir(&'a [u8]),
    /// No directory (in-memory mode): a value that is the token followed by
    /// `/PATH` of a bundled file gets what the closure writes (a memfd's
    /// /proc/self/fd path); false drops the entry.
    Mem(&'a mut dyn FnMut(&[u8], &mut Path) -> bool),
}

/// A bump allocator over one anonymous mapping.
pub struct Arena {
    buf: &'static mut [u8],
    used: usize,
}

impl Arena {
    pub fn new(len: usize) -> Arena {
        Arena {
            buf: mmap_anon(len).unwrap_or_else(|| crate::die(&[b"out of memory"])),
            used: 0,
        }
    }

    fn take(&mut self, n: usize) -> *mut u8 {
        let at = (self.used + 7) & !7;
        if at + n > self.buf.len() {
            crate::die(&[b"the bundle's environment or argv is too large"]);
        }
        self.used = at + n;
        self.buf[at..].as_mut_ptr()
    }

    /// A NUL-terminated copy of the concatenated parts.
    pub fn cstr(&mut self, parts: &[&[u8]]) -> *const u8 {
        let n: usize = parts.iter().map(|p| p.len()).sum();
        let p = self.take(n + 1);
        let mut at = 0;
        for s in parts {
            unsafe { core::ptr::copy_nonoverlapping(s.as_ptr(), p.add(at), s.len()) };
            at += s.len();
        }
        unsafe { *p.add(at) = 0 };
        p
    }

    /// Room for `n` pointers.
    pub fn ptrs(&mut self, n: usize) -> Ptrs {
        Ptrs {
            p: self.take(n * 8) as *mut *const u8,
            len: 0,
        }
    }
}

/// A NULL-terminated pointer array under construction (room is reserved
/// by the caller, who counts first).
pub struct Ptrs {
    pub p: *mut *const u8,
    pub len: usize,
}

impl Ptrs {
    pub fn push(&mut self, s: *const u8) {
        unsafe {
            *self.p.add(self.len) = s;
            *self.p.add(self.len + 1) = core::ptr::null();
        }
        self.len += 1;
    }
    /// Appends a NULL-terminated array, from index `from`.
    pub fn extend(&mut self, arr: *const *const u8, from: usize) {
        let n = count(arr);
        for k in from..n {
            self.push(unsafe { *arr.add(k) });
        }
    }
}

pub fn count(arr: *const *const u8) -> usize {
    let mut n = 0;
    while !unsafe { *arr.add(n) }.is_null() {
        n += 1;
    }
    n
}

pub fn lines(rec: &[u8]) -> impl Iterator<Item = &[u8]> {
    rec.split(|&c| c == b'\n').filter(|l| !l.is_empty())
}

/// `value` with the token expanded into `out`; false when `base` drops it.
fn expand(value: &[u8], base: &mut Base, out: &mut Path) -> bool {
    out.truncate(0);
    match base {
        Base::Dir(dir) => {
            let mut rest = value;
            while let Some(i) = rest.windows(TOKEN.len()).position(|w| w == TOKEN) {
                out.push(&rest[..i]).push(dir);
                rest = &rest[i + TOKEN.len()..];
            }
            out.push(rest);
            true
        }
        Base::Mem(f) => match value.strip_prefix(TOKEN) {
            Some(rest) => f(rest, out),
            None => {
                out.push(value);
                true
            }
        },
    }
}

/// Pushes the expanded lines of `rec`, from line `from`, onto `out`.
pub fn push_lines(arena: &mut Arena, rec: &[u8], from: usize, base: &mut Base, out: &mut Ptrs) {
    let mut v = Path::new();
    for line in lines(rec).skip(from) {
        if expand(line, base, &mut v) {
            out.push(arena.cstr(&[v.bytes()]));
        }
    }
}

/// The environment to exec with: the caller's, plus every `NAME=VALUE` of
/// `rec` whose NAME the caller's does not set.
pub fn envp(ctx: &crate::Ctx, arena: &mut Arena, rec: &[u8], base: &mut Base) -> *const *const u8 {
    let mut out = arena.ptrs(count(ctx.envp) + lines(rec).count() + 1);
    out.extend(ctx.envp, 0);
    let mut v = Path::new();
    for line in lines(rec) {
        let Some(eq) = line.iter().position(|&c| c == b'=') else {
            continue;
        };
        let name = &line[..eq];
        if ctx.getenv(name).is_some() || !expand(&line[eq + 1..], base, &mut v) {
            continue;
        }
        ctx.say(&[b"setting ", name, b"=", v.bytes()]);
        out.push(arena.cstr(&[name, b"=", v.bytes()]));
    }
    out.p as *const *const u8
}

/// Reads a small file of the unpacked bundle ("" when it is missing).
pub fn read(arena: &mut Arena, dir: &[u8], name: &[u8]) -> &'static [u8] {
    let mut p = Path::new();
    p.push(dir).push(b"/").push(name);
    let fd = open(p.c(), O_RDONLY | O_CLOEXEC, 0);
    if fd < 0 {
        return &[];
    }
    let size = fstat_size(fd).unwrap_or(0) as usize;
    let buf = arena.take(size);
    let buf = unsafe { core::slice::from_raw_parts_mut(buf, size) };
    let n = pread(fd, buf, 0);
    close(fd);
    if n as usize != size {
        crate::die(&[p.bytes(), b": cannot read"]);
    }
    buf
}
