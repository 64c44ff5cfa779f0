//! The elfpack launcher: the static front of a single-file output.
//!
//! It finds its own file (AT_EXECFN, no /proc needed), checks the trailer and
//! the payload's checksum, unpacks the payload once into a content-addressed
//! cache directory (private temporary directory, then rename; a directory
//! planted by another user or a symlink is never used), writes the cache
//! directory's real path into the placeholder PT_INTERP and DT_RPATH of the
//! program, and execs it: same PID, argv and environment untouched,
//! /proc/self/exe the real program. It takes no arguments of its own;
//! `ELFPACK_DEBUG=1` makes it tell on stderr what it does.
//!
//! File layout: `[this stub][payload][64-byte trailer]`; see
//! `src/emit/single_file/format.rs` in elfpack for the writer's side.

#![no_std]
#![no_main]

mod bcj;
mod checksum;
mod env;
mod lzma;
mod sys;

use core::arch::global_asm;

use checksum::checksum;
use sys::*;

global_asm!(
    ".globl _start",
    "_start:",
    "xor rbp, rbp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call stub_main",
    "ud2",
);

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    write(2, b"elfpack: internal error in the launcher\n");
    exit(127)
}

const TRAILER: usize = 64;
const MAGIC: &[u8; 8] = b"ELFPACK3";
const CHUNK_ENTRY: usize = 32;
/// Stack of each decoding child: the LZMA model (~30 KiB) and little else.
const CHILD_STACK: usize = 256 << 10;
const AT_EXECFN: usize = 31;
const PATH_MAX: usize = 4096;

/// A NUL-terminated path under construction.
struct Path {
    buf: [u8; PATH_MAX],
    len: usize,
}

impl Path {
    fn new() -> Self {
        Path {
            buf: [0; PATH_MAX],
            len: 0,
        }
    }
    fn push(&mut self, s: &[u8]) -> &mut Self {
        let n = s.len().min(PATH_MAX - 1 - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
        self.buf[self.len] = 0;
        self
    }
    fn num(&mut self, mut v: u64) -> &mut Self {
        let mut d = [0u8; 20];
        let mut i = d.len();
        loop {
            i -= 1;
            d[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&d[i..]);
        self
    }
    fn c(&self) -> &[u8] {
        &self.buf[..=self.len]
    }
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
    fn truncate(&mut self, len: usize) {
        self.len = len;
        self.buf[len] = 0;
    }
}

struct Ctx {
    argv: *const *const u8,
    envp: *const *const u8,
    debug: bool,
}

unsafe fn cstr<'a>(p: *const u8) -> &'a [u8] {
    let mut n = 0;
    while unsafe { *p.add(n) } != 0 {
        n += 1;
    }
    unsafe { core::slice::from_raw_parts(p, n) }
}

impl Ctx {
    fn getenv(&self, name: &[u8]) -> Option<&'static [u8]> {
        let mut e = self.envp;
        unsafe {
            while !(*e).is_null() {
                let s = cstr(*e);
                if s.len() > name.len() && s.starts_with(name) && s[name.len()] == b'=' {
                    return Some(&s[name.len() + 1..]);
                }
                e = e.add(1);
            }
        }
        None
    }
    fn say(&self, parts: &[&[u8]]) {
        if self.debug {
            write(2, b"elfpack: ");
            for p in parts {
                write(2, p);
            }
            write(2, b"\n");
        }
    }
}

fn die(parts: &[&[u8]]) -> ! {
    write(2, b"elfpack: ");
    for p in parts {
        write(2, p);
    }
    write(2, b"\n");
    exit(127)
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[o..o + 4]);
    u32::from_le_bytes(a)
}

struct Trailer {
    payload_off: u64,
    payload_len: u64,
    raw_len: u64,
    codec: u32,
    chunks: u32,
    table_hash: u64,
    key: [u8; 32],
}

#[unsafe(no_mangle)]
unsafe extern "C" fn stub_main(sp: *const usize) -> ! {
    let argc = unsafe { *sp };
    let argv = unsafe { sp.add(1) } as *const *const u8;
    let envp = unsafe { argv.add(argc + 1) };
    let mut ctx = Ctx {
        argv,
        envp,
        debug: false,
    };
    ctx.debug = ctx.getenv(b"ELFPACK_DEBUG") == Some(b"1");
    // The auxiliary vector follows the environment.
    let mut p = envp;
    unsafe {
        while !(*p).is_null() {
            p = p.add(1);
        }
    }
    let mut aux = unsafe { p.add(1) } as *const usize;
    let mut execfn: Option<&[u8]> = None;
    unsafe {
        while *aux != 0 {
            if *aux == AT_EXECFN {
                execfn = Some(cstr(*aux.add(1) as *const u8));
            }
            aux = aux.add(2);
        }
    }
    let mut me = Path::new();
    match execfn {
        Some(f) => me.push(f),
        None => me.push(b"/proc/self/exe"),
    };
    ctx.say(&[b"running from ", me.bytes()]);
    let fd = open(me.c(), O_RDONLY | O_CLOEXEC, 0);
    let fd = if fd < 0 {
        open(b"/proc/self/exe\0", O_RDONLY | O_CLOEXEC, 0)
    } else {
        fd
    };
    if fd < 0 {
        die(&[
            b"cannot open my own file ",
            me.bytes(),
            b" (nor /proc/self/exe)",
        ]);
    }
    let size = fstat_size(fd).unwrap_or(0);
    let mut t = [0u8; TRAILER];
    if size < TRAILER as u64
        || pread(fd, &mut t, size - TRAILER as u64) != TRAILER as isize
        || &t[..8] != MAGIC
    {
        die(&[
            me.bytes(),
            b": no elfpack trailer: the file is truncated or not a packed program",
        ]);
    }
    let mut key = [0u8; 32];
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in 0..16 {
        key[2 * i] = HEX[(t[48 + i] >> 4) as usize];
        key[2 * i + 1] = HEX[(t[48 + i] & 15) as usize];
    }
    let tr = Trailer {
        payload_off: u64_at(&t, 8),
        payload_len: u64_at(&t, 16),
        raw_len: u64_at(&t, 24),
        codec: u32_at(&t, 32),
        chunks: u32_at(&t, 36),
        table_hash: u64_at(&t, 40),
        key,
    };
    if tr.payload_off.checked_add(tr.payload_len) != Some(size - TRAILER as u64) {
        die(&[
            me.bytes(),
            b": the payload does not fit the file: truncated or corrupted",
        ]);
    }
    let mut unpacked: Option<&'static mut [u8]> = None;
    for base in 0..BASES {
        let mut dir = Path::new();
        if !cache_dir(&ctx, base, &mut dir) {
            continue;
        }
        if let Some(final_dir) = use_or_extract(&ctx, fd, &tr, &mut unpacked, &mut dir, &me) {
            exec(&ctx, &final_dir);
        }
    }
    if lstat(b"/proc/self/fd\0").is_err() {
        die(&[
            b"no writable, executable directory for the cache (tried $ELFPACK_CACHE_DIR, $XDG_CACHE_HOME, ",
            b"$HOME/.cache, $TMPDIR, /tmp, /var/tmp, /dev/shm, /) and no /proc for in-memory files; ",
            b"set ELFPACK_CACHE_DIR or mount /proc",
        ]);
    }
    ctx.say(&[b"no usable cache directory: running from memory (memfd) through the loader"]);
    if unpacked.is_none() {
        unpacked = Some(unpack(&ctx, fd, &tr, &me));
    }
    run_from_memory(&ctx, unpacked.as_ref().unwrap())
}

/// No writable place: every file becomes a memfd, and the bundled loader
/// runs the program with the libraries preloaded in the order the loader
/// would map them (they are then found by SONAME). /proc/self/exe is the
/// loader in this mode.
fn run_from_memory(ctx: &Ctx, raw: &[u8]) -> ! {
    let Some(h) = header(raw) else {
        die(&[b"the payload's archive is malformed"])
    };
    let mut arena = env::Arena::new(1 << 20);
    let mut loader: Option<*const u8> = None;
    let mut program: Option<*const u8> = None;
    let mut preload_order: &[u8] = &[];
    let mut fds: [(usize, isize); 256] = [(0, -1); 256];
    let mut nfds = 0;
    let ok = records(raw, |i, kind, _, rel, data| {
        if rel == b".elfpack-preload" {
            preload_order = &raw[data];
            return true;
        }
        let is_lib = rel.starts_with(b"lib/");
        if kind != 1 || !(is_lib || i == h.program) || nfds == fds.len() {
            return true;
        }
        let mut name = Path::new();
        name.push(rel);
        let fd = memfd_create(name.c());
        if fd < 0 {
            return false;
        }
        write(fd as usize, &raw[data]);
        fds[nfds] = (i, fd);
        nfds += 1;
        true
    });
    if !ok {
        die(&[b"cannot create in-memory files (memfd_create)"]);
    }
    let fd_path = |fd: isize, num: &mut Path| {
        num.truncate(0);
        num.push(b"/proc/self/fd/").num(fd as u64);
    };
    let mut p = Path::new();
    // Map record indices back to names to find the loader and the program.
    records(raw, |i, _, _, rel, _| {
        if let Some(&(_, fd)) = fds[..nfds].iter().find(|(j, _)| *j == i) {
            fd_path(fd, &mut p);
            if rel.starts_with(b"lib/ld-linux") {
                loader = Some(arena.cstr(&[p.bytes()]));
            } else if i == h.program {
                program = Some(arena.cstr(&[p.bytes()]));
            }
        }
        true
    });
    // The preload list, in the loader's order, as /proc/self/fd paths.
    let mut list = Path::new();
    for name in preload_order
        .split(|&c| c == b'\n')
        .filter(|n| !n.is_empty())
    {
        records(raw, |i, _, _, rel, _| {
            let matches =
                rel.len() == 4 + name.len() && rel.starts_with(b"lib/") && &rel[4..] == name;
            if let Some(&(_, fd)) = fds[..nfds].iter().find(|(j, _)| matches && *j == i) {
                if list.len > 0 {
                    list.push(b" ");
                }
                fd_path(fd, &mut p);
                list.push(p.bytes());
            }
            true
        });
    }
    let (Some(loader), Some(program)) = (loader, program) else {
        die(&[b"the payload has no loader or program"])
    };
    let argc = {
        let mut n = 0;
        while !unsafe { *ctx.argv.add(n) }.is_null() {
            n += 1;
        }
        n
    };
    let argv0 = if argc > 0 {
        unsafe { cstr(*ctx.argv) }
    } else {
        b"program"
    };
    // Files the environment or a script's argv name become memfds too;
    // directories (TZDIR, PYTHONHOME...) cannot, and are left unset.
    let mut to_memfd = |rest: &[u8], out: &mut Path| {
        let rel = rest.strip_prefix(b"/").unwrap_or(rest);
        let Some(data) = record(raw, Some(rel), 0) else {
            return false;
        };
        let fd = memfd_create(b"elfpack-data\0");
        write(fd as usize, &raw[data]);
        fd_path(fd, out);
        fd >= 0
    };
    let rec = |name: &[u8]| record(raw, Some(name), 0).map_or(&[][..], |r| &raw[r]);
    let (env_rec, argv_rec) = (rec(b".elfpack-env"), rec(b".elfpack-argv"));
    let mut base = env::Base::Mem(&mut to_memfd);
    let envp = env::envp(ctx, &mut arena, env_rec, &mut base);
    let mut args = arena.ptrs(argc + env::lines(argv_rec).count() + 8);
    for a in [
        loader,
        arena.cstr(&[b"--argv0"]),
        arena.cstr(&[argv0]),
        arena.cstr(&[b"--preload"]),
        arena.cstr(&[list.bytes()]),
        program,
    ] {
        args.push(a);
    }
    // A #! script: the program is its interpreter; the rest of its argv.
    env::push_lines(&mut arena, argv_rec, 1, &mut base, &mut args);
    args.extend(ctx.argv, 1);
    unsafe {
        ctx.say(&[b"exec the loader from memory"]);
        let r = execve(cstr(loader), args.p as *const *const u8, envp);
        let mut n = Path::new();
        n.num((-r) as u64);
        die(&[
            b"cannot execute the loader from memory (errno ",
            n.bytes(),
            b")",
        ])
    }
}

const BASES: usize = 8;

/// The cache directory for candidate `i`; private per-user names in shared
/// places. Returns false when the candidate does not apply.
fn cache_dir(ctx: &Ctx, i: usize, out: &mut Path) -> bool {
    let uid = geteuid() as u64;
    let env = |n: &[u8]| ctx.getenv(n).filter(|v| !v.is_empty() && v[0] == b'/');
    match i {
        0 => match env(b"ELFPACK_CACHE_DIR") {
            Some(d) => {
                out.push(d);
            }
            None => return false,
        },
        1 => match env(b"XDG_CACHE_HOME") {
            Some(d) => {
                out.push(d).push(b"/elfpack");
            }
            None => return false,
        },
        2 => match env(b"HOME") {
            Some(d) if d != b"/" => {
                // Create ~/.cache if missing, as XDG programs do.
                out.push(d).push(b"/.cache");
                mkdir(out.c(), 0o700);
                out.push(b"/elfpack");
            }
            _ => return false,
        },
        3 => match env(b"TMPDIR") {
            Some(d) => {
                out.push(d).push(b"/elfpack-").num(uid);
            }
            None => return false,
        },
        4 => {
            out.push(b"/tmp/elfpack-").num(uid);
        }
        5 => {
            out.push(b"/var/tmp/elfpack-").num(uid);
        }
        6 => {
            out.push(b"/dev/shm/elfpack-").num(uid);
        }
        _ => {
            out.push(b"/.elfpack-cache-").num(uid);
        }
    }
    true
}

/// A directory we may trust: a real directory (not a symlink), ours, and
/// writable by nobody else.
fn trusted_dir(path: &[u8]) -> bool {
    matches!(lstat(path), Ok((mode, uid, _)) if mode & S_IFMT == S_IFDIR && uid == geteuid() && mode & 0o022 == 0)
}

fn use_or_extract(
    ctx: &Ctx,
    fd: isize,
    tr: &Trailer,
    unpacked: &mut Option<&'static mut [u8]>,
    dir: &mut Path,
    me: &Path,
) -> Option<Path> {
    // A read-only or noexec mount is no use; check before creating anything.
    let slash = dir.bytes().iter().rposition(|&c| c == b'/').unwrap_or(0);
    let mut parent = Path::new();
    parent.push(&dir.bytes()[..slash.max(1)]);
    match mount_flags(parent.c()) {
        Some(f) if f & (ST_RDONLY | ST_NOEXEC) != 0 => {
            ctx.say(&[b"skip ", dir.bytes(), b": read-only or noexec mount"]);
            return None;
        }
        None => return None,
        _ => {}
    }
    let r = mkdir(dir.c(), 0o700);
    if r < 0 && r != EEXIST {
        ctx.say(&[b"skip ", dir.bytes(), b": cannot create"]);
        return None;
    }
    if !trusted_dir(dir.c()) {
        ctx.say(&[
            b"skip ",
            dir.bytes(),
            b": not a private directory of this user (or a symlink)",
        ]);
        return None;
    }
    match mount_flags(dir.c()) {
        Some(f) if f & (ST_RDONLY | ST_NOEXEC) != 0 => {
            ctx.say(&[b"skip ", dir.bytes(), b": read-only or noexec mount"]);
            return None;
        }
        None => return None,
        _ => {}
    }
    let base_len = dir.len;
    let mut fin = Path::new();
    fin.push(dir.bytes()).push(b"/").push(&tr.key);
    if complete(&fin) {
        ctx.say(&[b"using the cached copy in ", fin.bytes()]);
        return Some(fin);
    }
    if lstat(fin.c()).is_ok() {
        ctx.say(&[
            b"skip ",
            fin.bytes(),
            b": exists but is not a complete copy made by this user",
        ]);
        return None;
    }
    // Unpack once, whichever directory ends up used.
    if unpacked.is_none() {
        *unpacked = Some(unpack(ctx, fd, tr, me));
    }
    let raw = unpacked.as_mut().unwrap();
    let mut tmp = Path::new();
    tmp.push(dir.bytes())
        .push(b"/.tmp-")
        .push(&tr.key)
        .push(b"-")
        .num(getpid() as u64);
    dir.truncate(base_len);
    if mkdir(tmp.c(), 0o700) < 0 {
        ctx.say(&[
            b"skip ",
            dir.bytes(),
            b": cannot create a private temporary directory",
        ]);
        return None;
    }
    ctx.say(&[b"extracting into ", tmp.bytes()]);
    if !write_tree(ctx, raw, &tmp, &fin) {
        remove_tree(raw, &mut tmp);
        return None;
    }
    if rename(tmp.c(), fin.c()) < 0 {
        // Another copy finished first: use it, drop ours.
        remove_tree(raw, &mut tmp);
        if complete(&fin) {
            ctx.say(&[b"another launch extracted first; using ", fin.bytes()]);
            return Some(fin);
        }
        return None;
    }
    ctx.say(&[b"extracted into ", fin.bytes()]);
    Some(fin)
}

const MARKER: &[u8] = b"/.elfpack-complete";

fn complete(fin: &Path) -> bool {
    let mut m = Path::new();
    m.push(fin.bytes()).push(MARKER);
    trusted_dir(fin.c())
        && matches!(lstat(m.c()), Ok((mode, uid, _)) if mode & S_IFMT == S_IFREG && uid == geteuid())
}

/// One chunk to decode: its compressed bytes, its checksum and codec, and
/// where its output goes.
struct Job {
    src: &'static [u8],
    out: &'static mut [u8],
    codec: u32,
    props: u8,
    hash: u64,
}

impl Job {
    /// Checks the chunk against its checksum before decoding anything.
    fn run(&mut self) -> bool {
        if checksum(self.src) != self.hash {
            return false;
        }
        let ok = match self.codec {
            0 if self.src.len() == self.out.len() => {
                self.out.copy_from_slice(self.src);
                return true;
            }
            1 => lz4_flex::block::decompress_into(self.src, self.out)
                .is_ok_and(|n| n == self.out.len()),
            2 => lzma::decode(self.src, self.props, self.out),
            _ => return false,
        };
        // Both codecs compress what the x86-64 filter made of the chunk.
        bcj::decode(self.out);
        ok
    }
}

extern "C" fn run_job(job: *mut u8) -> ! {
    let job = unsafe { &mut *(job as *mut Job) };
    exit_task(if job.run() { 0 } else { 1 })
}

/// The payload read into memory, where the file cannot be mapped.
fn read_all(fd: isize, tr: &Trailer, me: &Path) -> &'static [u8] {
    let packed = mmap_anon(tr.payload_len as usize).unwrap_or_else(|| die(&[b"out of memory"]));
    let mut got = 0usize;
    while got < packed.len() {
        let r = pread(fd, &mut packed[got..], tr.payload_off + got as u64);
        if r <= 0 {
            die(&[me.bytes(), b": cannot read the payload"]);
        }
        got += r as usize;
    }
    packed
}

/// Checks and decompresses the payload into fresh memory: chunk 0 here,
/// every other chunk at the same time in a child sharing this memory.
fn unpack(ctx: &Ctx, fd: isize, tr: &Trailer, me: &Path) -> &'static mut [u8] {
    let corrupted = || -> ! {
        die(&[
            me.bytes(),
            b": the payload is corrupted (checksum mismatch or bad data); nothing was run",
        ])
    };
    let packed = mmap_file(fd, tr.payload_off, tr.payload_len as usize)
        .unwrap_or_else(|| read_all(fd, tr, me));
    let n = tr.chunks as usize;
    let Some(table_at) = n
        .checked_mul(CHUNK_ENTRY)
        .filter(|&t| n > 0 && t <= packed.len())
        .map(|t| packed.len() - t)
    else {
        corrupted()
    };
    let (packed, table) = packed.split_at(table_at);
    if checksum(table) != tr.table_hash {
        corrupted();
    }
    let raw = mmap_big(tr.raw_len as usize).unwrap_or_else(|| die(&[b"out of memory"]));
    let jobs =
        mmap_anon(n * core::mem::size_of::<Job>()).unwrap_or_else(|| die(&[b"out of memory"]));
    let jobs = unsafe { core::slice::from_raw_parts_mut(jobs.as_mut_ptr() as *mut Job, n) };
    // The jobs own disjoint pieces of `raw` until they are all done.
    let mut dst: &'static mut [u8] =
        unsafe { core::slice::from_raw_parts_mut(raw.as_mut_ptr(), raw.len()) };
    let mut src: &'static [u8] = packed;
    for (k, e) in table.chunks_exact(CHUNK_ENTRY).enumerate() {
        let (comp, len) = (u64_at(e, 0) as usize, u64_at(e, 8) as usize);
        if comp > src.len() || len > dst.len() {
            corrupted();
        }
        let (s, rest) = src.split_at(comp);
        let (d, rest_out) = core::mem::take(&mut dst).split_at_mut(len);
        src = rest;
        dst = rest_out;
        let job = Job {
            src: s,
            out: d,
            codec: tr.codec,
            props: e[24],
            hash: u64_at(e, 16),
        };
        unsafe { core::ptr::write(&mut jobs[k], job) };
    }
    if !src.is_empty() || !dst.is_empty() {
        corrupted();
    }
    let mut count = Path::new();
    count.num(n as u64);
    ctx.say(&[b"decompressing ", count.bytes(), b" chunk(s) in parallel"]);
    let mut children = [0isize; 16];
    for (k, job) in jobs.iter_mut().enumerate().skip(1) {
        let stack = mmap_anon(CHILD_STACK);
        let pid = match stack {
            Some(st) if k < children.len() => unsafe {
                spawn(
                    st.as_mut_ptr().add(CHILD_STACK),
                    run_job,
                    job as *mut Job as *mut u8,
                )
            },
            _ => -1,
        };
        if pid <= 0 {
            // No child: decode it here, after the others.
            if !job.run() {
                corrupted();
            }
        } else {
            children[k] = pid;
        }
    }
    let mut ok = jobs[0].run();
    for &pid in children.iter().filter(|&&p| p > 0) {
        ok &= wait_child(pid);
    }
    if !ok {
        corrupted();
    }
    raw
}

/// The archive: a header, then records `kind:u8 mode:u32 path_len:u32
/// data_len:u64 path data`. See elfpack's src/emit/single_file/format.rs.
struct Header {
    count: usize,
    program: usize,
    prefix_len: usize,
    slots: [usize; 2],
}

const ARCHIVE_MAGIC: &[u8; 4] = b"EPA1";
const HEADER: usize = 4 + 4 * 5;
const RECORD: usize = 1 + 4 + 4 + 8;

fn header(raw: &[u8]) -> Option<Header> {
    if raw.len() < HEADER || &raw[..4] != ARCHIVE_MAGIC {
        return None;
    }
    Some(Header {
        count: u32_at(raw, 4) as usize,
        program: u32_at(raw, 8) as usize,
        prefix_len: u32_at(raw, 12) as usize,
        slots: [u32_at(raw, 16) as usize, u32_at(raw, 20) as usize],
    })
}

/// Calls `f(index, kind, mode, path, data_range)` for each record.
fn records(
    raw: &[u8],
    mut f: impl FnMut(usize, u8, u32, &[u8], core::ops::Range<usize>) -> bool,
) -> bool {
    let Some(h) = header(raw) else { return false };
    let mut at = HEADER;
    for i in 0..h.count {
        if at + RECORD > raw.len() {
            return false;
        }
        let kind = raw[at];
        let mode = u32_at(raw, at + 1);
        let plen = u32_at(raw, at + 5) as usize;
        let dlen = u64_at(raw, at + 9) as usize;
        let p = at + RECORD;
        let Some(end) = p
            .checked_add(plen)
            .and_then(|e| e.checked_add(dlen))
            .filter(|&e| e <= raw.len())
        else {
            return false;
        };
        let path = &raw[p..p + plen];
        // Relative paths only, never climbing out of the directory.
        if path.is_empty() || path[0] == b'/' || path.split(|&c| c == b'/').any(|c| c == b"..") {
            return false;
        }
        if !f(i, kind, mode, path, p + plen..end) {
            return false;
        }
        at = end;
    }
    true
}

fn write_tree(ctx: &Ctx, raw: &mut [u8], tmp: &Path, fin: &Path) -> bool {
    let Some(h) = header(raw) else { return false };
    // Point the program's placeholder interpreter and RPATH at `fin`.
    let Some(range) = record(raw, None, h.program) else {
        die(&[b"the payload's archive is malformed"]);
    };
    if fin.len > h.prefix_len {
        ctx.say(&[b"skip: the cache path is longer than the space reserved for it"]);
        return false;
    }
    for slot in h.slots {
        if !patch(raw, range.clone(), slot, h.prefix_len, fin) {
            return false;
        }
    }
    // Other ELF programs of the bundle (run by the program) carry the
    // placeholder too.
    for at in record(raw, Some(b".elfpack-patch"), 0)
        .unwrap_or(0..0)
        .step_by(8)
    {
        let (index, slot) = (u32_at(raw, at) as usize, u32_at(raw, at + 4) as usize);
        if !record(raw, None, index).is_some_and(|t| patch(raw, t, slot, h.prefix_len, fin)) {
            return false;
        }
    }
    let base = tmp.len;
    let mut path = Path::new();
    path.push(tmp.bytes());
    let ok = records(raw, |_, kind, mode, rel, data| {
        path.truncate(base);
        path.push(b"/").push(rel);
        let r = match kind {
            0 => mkdir(path.c(), 0o700),
            1 => {
                let fd = open(
                    path.c(),
                    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    0o600,
                );
                if fd < 0 {
                    fd
                } else {
                    let mut off = data.start;
                    while off < data.end {
                        let w = sys(1, fd as usize, raw.as_ptr() as usize + off, data.end - off);
                        if w <= 0 {
                            break;
                        }
                        off += w as usize;
                    }
                    close(fd);
                    if off == data.end { 0 } else { -5 }
                }
            }
            _ => {
                let mut target = Path::new();
                target.push(&raw[data]);
                symlink(target.c(), path.c())
            }
        };
        r >= 0 && (kind == 2 || chmod(path.c(), mode & 0o700) >= 0)
    });
    if !ok {
        ctx.say(&[b"cannot write ", path.bytes()]);
        return false;
    }
    path.truncate(base);
    path.push(MARKER);
    let fd = open(path.c(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600);
    close(fd);
    // The tree itself stays private to its owner.
    fd >= 0 && chmod(tmp.c(), 0o700) >= 0
}

/// The data of the file record called `path`, or of record `index` when
/// `path` is None.
/// None also when the archive is malformed.
fn record(raw: &[u8], path: Option<&[u8]>, index: usize) -> Option<core::ops::Range<usize>> {
    let mut found = None;
    let ok = records(raw, |i, kind, _, rel, data| {
        if found.is_none() && kind == 1 && path.map_or(i == index, |p| p == rel) {
            found = Some(data);
        }
        true
    });
    found.filter(|_| ok)
}

/// Overwrites the placeholder prefix of the string at `slot` in the record
/// `range` with `fin`, moving the rest of the string left.
fn patch(
    raw: &mut [u8],
    range: core::ops::Range<usize>,
    slot: usize,
    prefix_len: usize,
    fin: &Path,
) -> bool {
    let Some(field) = range
        .start
        .checked_add(slot)
        .and_then(|at| raw.get_mut(at..range.end))
    else {
        return false;
    };
    let Some(nul) = field.iter().position(|&b| b == 0) else {
        return false;
    };
    if nul < prefix_len {
        return false;
    }
    // The string is PREFIX + suffix; the suffix moves left after `fin`.
    field.copy_within(prefix_len..=nul, fin.len);
    field[..fin.len].copy_from_slice(fin.bytes());
    true
}

/// Removes what `write_tree` created below `tmp` (deepest first).
fn remove_tree(raw: &[u8], tmp: &mut Path) {
    let base = tmp.len;
    tmp.push(MARKER);
    unlink(tmp.c());
    let Some(h) = header(raw) else { return };
    for pass in (0..h.count).rev() {
        records(raw, |i, kind, _, rel, _| {
            if i == pass {
                tmp.truncate(base);
                tmp.push(b"/").push(rel);
                if kind == 0 {
                    rmdir(tmp.c())
                } else {
                    unlink(tmp.c())
                };
            }
            true
        });
    }
    tmp.truncate(base);
    rmdir(tmp.c());
}

fn exec(ctx: &Ctx, fin: &Path) -> ! {
    let mut arena = env::Arena::new(1 << 20);
    // The program's path inside the cache, as written at pack time.
    let rel = env::read(&mut arena, fin.bytes(), b".elfpack-entry");
    if rel.is_empty() {
        die(&[fin.bytes(), b": no entry point recorded"]);
    }
    let mut prog = Path::new();
    prog.push(fin.bytes()).push(b"/").push(rel);
    install_etc(ctx, fin);
    let mut base = env::Base::Dir(fin.bytes());
    let env_rec = env::read(&mut arena, fin.bytes(), b".elfpack-env");
    let envp = env::envp(ctx, &mut arena, env_rec, &mut base);
    let argv_rec = env::read(&mut arena, fin.bytes(), b".elfpack-argv");
    let mut argv = ctx.argv;
    if !argv_rec.is_empty() {
        // A #! script: exec its bundled interpreter as the kernel would.
        let mut a = arena.ptrs(env::lines(argv_rec).count() + env::count(ctx.argv) + 1);
        env::push_lines(&mut arena, argv_rec, 0, &mut base, &mut a);
        a.extend(ctx.argv, 1);
        prog.truncate(0);
        prog.push(unsafe { cstr(*a.p) });
        argv = a.p as *const *const u8;
    }
    ctx.say(&[b"exec ", prog.bytes()]);
    let r = execve(prog.c(), argv, envp);
    let mut n = Path::new();
    n.num((-r) as u64);
    die(&[
        b"cannot execute ",
        prog.bytes(),
        b" (errno ",
        n.bytes(),
        b")",
    ])
}

/// A `FROM scratch` image has no /etc: give it the bundle's minimal passwd,
/// group, nsswitch.conf and hosts, never replacing a file that exists.
fn install_etc(ctx: &Ctx, fin: &Path) {
    for name in [&b"passwd"[..], b"group", b"nsswitch.conf", b"hosts"] {
        let mut dst = Path::new();
        dst.push(b"/etc/").push(name);
        if lstat(dst.c()).is_ok() {
            continue;
        }
        let mut src = Path::new();
        src.push(fin.bytes()).push(b"/etc/").push(name);
        let fd = open(src.c(), O_RDONLY | O_CLOEXEC, 0);
        if fd < 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        let n = pread(fd, &mut buf, 0);
        close(fd);
        if n <= 0 {
            continue;
        }
        mkdir(b"/etc\0", 0o755);
        let out = open(
            dst.c(),
            O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
            0o644,
        );
        if out < 0 {
            ctx.say(&[b"cannot create ", dst.bytes(), b" (read-only root?)"]);
            continue;
        }
        write(out as usize, &buf[..n as usize]);
        close(out);
        ctx.say(&[b"installed ", dst.bytes()]);
    }
}
