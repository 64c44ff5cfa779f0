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
    // A program header for the packer to turn into the PT_LOAD that maps
    // the payload (see PAYLOAD_VADDR): this note's PT_NOTE.
    ".section .note.elfpack,\"aR\",@note",
    ".balign 4",
    ".long 8, 0, 1",
    ".asciz \"elfpack\"",
    ".text",
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
#[derive(Clone)]
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

/// Where the packer maps the file from its payload on (`PT_LOAD`, see
/// elfpack's `format::PAYLOAD_VADDR`): file offset X is at this address + X.
/// The kernel maps it at exec, so an execute-only (0711) file, which this
/// process may not open, still reads its payload.
const PAYLOAD_VADDR: u64 = 1 << 40;
const AT_PHDR: usize = 3;
const AT_PHNUM: usize = 5;

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
    let mut aux = unsafe { envp.add(env::count(envp) + 1) } as *const usize;
    let mut execfn: Option<&[u8]> = None;
    let (mut phdr, mut phnum) = (0usize, 0usize);
    unsafe {
        while *aux != 0 {
            let v = *aux.add(1);
            match *aux {
                AT_EXECFN => execfn = Some(cstr(v as *const u8)),
                AT_PHDR => phdr = v,
                AT_PHNUM => phnum = v,
                _ => {}
            }
            aux = aux.add(2);
        }
    }
    let mut me = Path::new();
    me.push(execfn.unwrap_or(b"/proc/self/exe"));
    ctx.say(&[b"running from ", me.bytes()]);
    // The segment the packer added: (file offset, length).
    let mut seg = None;
    for i in 0..phnum {
        let ph = unsafe { core::slice::from_raw_parts((phdr + 56 * i) as *const u8, 56) };
        if u32_at(ph, 0) == 1 && u64_at(ph, 16) >= PAYLOAD_VADDR {
            seg = Some((u64_at(ph, 8), u64_at(ph, 32)));
        }
    }
    // Reading past the end of the file would be SIGBUS: its size first
    // (stat needs no read permission).
    let size = stat(me.c())
        .or_else(|_| stat(b"/proc/self/exe\0"))
        .map(|s| s.size)
        .unwrap_or_else(|_| die(&[b"cannot find my own file ", me.bytes()]));
    let whole = match seg {
        Some((off, len)) if off.checked_add(len) == Some(size) && len >= TRAILER as u64 => unsafe {
            core::slice::from_raw_parts((PAYLOAD_VADDR + off) as *const u8, len as usize)
        },
        _ => die(&[
            me.bytes(),
            b": no elfpack payload: the file is truncated or not a packed program",
        ]),
    };
    let off = size - whole.len() as u64;
    let t = &whole[whole.len() - TRAILER..];
    if &t[..8] != MAGIC {
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
        payload_off: u64_at(t, 8),
        payload_len: u64_at(t, 16),
        raw_len: u64_at(t, 24),
        codec: u32_at(t, 32),
        chunks: u32_at(t, 36),
        table_hash: u64_at(t, 40),
        key,
    };
    if tr.payload_off < off
        || tr.payload_off.checked_add(tr.payload_len) != Some(size - TRAILER as u64)
    {
        die(&[
            me.bytes(),
            b": the payload does not fit the file: truncated or corrupted",
        ]);
    }
    let at = (tr.payload_off - off) as usize;
    let payload = &whole[at..at + tr.payload_len as usize];
    // An image's own root gets a /tmp (1777) first: the cache goes there.
    let image = image_root();
    if image && lstat(b"/tmp\0").is_err() && mkdir(b"/tmp\0", 0o1777) == 0 {
        chmod(b"/tmp\0", 0o1777);
        ctx.say(&[b"created /tmp"]);
    }
    let mut unpacked: Option<&'static [u8]> = None;
    for base in 0..BASES {
        let mut dir = Path::new();
        let mut made_parent = false;
        if !cache_dir(&ctx, base, &mut dir, &mut made_parent) {
            continue;
        }
        let got = use_or_extract(&ctx, payload, &tr, &mut unpacked, &mut dir);
        if let Some(final_dir) = got {
            exec(&ctx, &final_dir, image);
        }
        if made_parent {
            // Nothing of a failed candidate stays behind.
            let slash = dir.bytes().iter().rposition(|&c| c == b'/').unwrap_or(0);
            dir.truncate(slash);
            rmdir(dir.c());
        }
        if unpacked.is_some_and(|r| r.is_empty()) {
            corrupted(&me);
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
    let raw = unpacked
        .or_else(|| unpack(&ctx, payload, &tr))
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| corrupted(&me));
    run_from_memory(&ctx, raw)
}

/// The launcher's scratch memory: room for the argv and environment it
/// passes on (as many entries as the caller gave, however many) and 1 MiB
/// for the bundle's own strings.
fn arena(ctx: &Ctx) -> env::Arena {
    env::Arena::new((1 << 20) + 16 * (env::count(ctx.argv) + env::count(ctx.envp)))
}

/// No writable place: every file becomes a memfd, and the bundled loader
/// runs the program with the libraries preloaded in the order the loader
/// would map them (they are then found by SONAME). /proc/self/exe is the
/// loader in this mode.
fn run_from_memory(ctx: &Ctx, raw: &[u8]) -> ! {
    let Some(h) = header(raw) else {
        die(&[b"the payload's archive is malformed"])
    };
    let mut arena = arena(ctx);
    let mut loader: Option<*const u8> = None;
    let mut program: Option<*const u8> = None;
    let mut preload_order: &[u8] = &[];
    let mut fds: [(usize, isize); 256] = [(0, -1); 256];
    let aliases = record(raw, Some(b".elfpack-alias"), 0).map_or(&[][..], |r| &raw[r]);
    let mut nfds = 0;
    let ok = records(raw, |i, kind, _, rel, data| {
        if rel == b".elfpack-preload" {
            preload_order = &raw[data];
            return true;
        }
        // Every ELF file of the bundle, wherever it sits.
        let is_elf = raw[data.clone()].starts_with(b"\x7fELF");
        if kind != 1 || !is_elf || nfds == fds.len() {
            return true;
        }
        let mut name = Path::new();
        name.push(rel);
        let fd = memfd_create(name.c());
        if fd < 0 {
            return false;
        }
        write(fd as usize, &raw[data]);
        // Needed under another name than its SONAME: the name becomes the
        // SONAME, which the preloaded library is known by.
        let mut at = 0;
        while at + 8 < aliases.len() {
            let end = aliases[at + 8..]
                .iter()
                .position(|&c| c == 0)
                .map_or(aliases.len(), |n| at + 9 + n);
            if u32_at(aliases, at) as usize == i {
                let name = &aliases[at + 8..end];
                unsafe {
                    syscall6(
                        18,
                        fd as usize,
                        name.as_ptr() as usize,
                        name.len(),
                        u32_at(aliases, at + 4) as usize,
                        0,
                        0,
                    )
                };
            }
            at = end;
        }
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
    // A static program: the header names a stand-in record, the entry
    // record the program, which runs by itself (no loader, no preloads).
    let entry = record(raw, Some(b".elfpack-entry"), 0).map_or(&[][..], |r| &raw[r]);
    let mut is_static = false;
    let mut direct: Option<*const u8> = None;
    // Map record indices back to names to find the loader and the program.
    records(raw, |i, _, _, rel, _| {
        if i == h.program && rel == b".elfpack-static" {
            is_static = true;
        }
        if let Some(&(_, fd)) = fds[..nfds].iter().find(|(j, _)| *j == i) {
            fd_path(fd, &mut p);
            if rel == entry {
                direct = Some(arena.cstr(&[p.bytes()]));
            }
            if file_name(rel).starts_with(b"ld-linux") {
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
        let mut found = false;
        records(raw, |i, _, _, rel, _| {
            // The first file of that name only: never one library twice.
            // The preload list names each file by its path in the bundle
            // (or, in older files, by its name).
            let matches = !found && (rel == name || file_name(rel) == name);
            if let Some(&(_, fd)) = fds[..nfds].iter().find(|(j, _)| matches && *j == i) {
                found = true;
                if list.len > 0 {
                    list.push(b" ");
                }
                fd_path(fd, &mut p);
                list.push(p.bytes());
            }
            true
        });
    }
    let (loader, program) = match (is_static, direct, loader, program) {
        (true, Some(d), _, _) => (None, d),
        (false, _, Some(l), Some(p)) => (Some(l), p),
        _ => die(&[b"the payload has no loader or program"]),
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
    // a directory (TZDIR, PYTHONHOME...) cannot: such a program needs a
    // writable place.
    let mut needs_dir = false;
    let mut to_memfd = |rest: &[u8], out: &mut Path| {
        let rel = rest.strip_prefix(b"/").unwrap_or(rest);
        let Some(data) = record(raw, Some(rel), 0) else {
            needs_dir = true;
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
    match loader {
        Some(loader) => {
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
        }
        None => args.push(arena.cstr(&[argv0])),
    }
    // A #! script: the program is its interpreter; the rest of its argv.
    env::push_lines(&mut arena, argv_rec, 1, &mut base, &mut args);
    args.extend(ctx.argv, 1);
    if needs_dir {
        die(&[
            argv0,
            b": this program needs a writable directory for its files and none is usable: ",
            b"give it one (podman/docker run --tmpfs /tmp, a Kubernetes emptyDir at /tmp) ",
            b"or set ELFPACK_CACHE_DIR to a writable directory that allows exec",
        ]);
    }
    unsafe {
        ctx.say(&[match loader {
            Some(_) => b"exec the loader from memory",
            None => b"exec the static program from memory",
        }]);
        let r = execve(
            cstr(loader.unwrap_or(program)),
            args.p as *const *const u8,
            envp,
        );
        let mut n = Path::new();
        n.num((-r) as u64);
        die(&[
            b"cannot execute the loader from memory (errno ",
            n.bytes(),
            b")",
        ])
    }
}

/// The last component of a path.
fn file_name(rel: &[u8]) -> &[u8] {
    rel.rsplit(|&c| c == b'/').next().unwrap_or(rel)
}

const BASES: usize = 8;

/// The cache directory for candidate `i`; private per-user names in shared
/// places. Returns false when the candidate does not apply.
/// `made_parent` tells that it created the candidate's parent (~/.cache),
/// to be removed again if the candidate fails.
fn cache_dir(ctx: &Ctx, i: usize, out: &mut Path, made_parent: &mut bool) -> bool {
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
                *made_parent = mkdir(out.c(), 0o700) == 0;
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
    matches!(lstat(path), Ok(s) if s.mode & S_IFMT == S_IFDIR && s.uid == geteuid() && s.mode & 0o022 == 0)
}

/// The cached copy in `dir` (made private to this user), extracting it
/// first when missing or broken. Extraction happens under an exclusive
/// `flock` of `dir/.lock-KEY`: of many first starts one extracts and the
/// others wait, then use its copy; the lock dies with its holder, and a
/// temporary tree it leaves is removed by the next holder (its name has no
/// PID, so nothing stale can block or pile up). Nothing is left in `dir` if
/// this fails, and `dir` itself is removed when this created it.
fn use_or_extract(
    ctx: &Ctx,
    payload: &'static [u8],
    tr: &Trailer,
    unpacked: &mut Option<&'static [u8]>,
    dir: &mut Path,
) -> Option<Path> {
    // A read-only or noexec mount is no use; check before creating anything.
    let slash = dir.bytes().iter().rposition(|&c| c == b'/').unwrap_or(0);
    let mut parent = Path::new();
    parent.push(&dir.bytes()[..slash.max(1)]);
    let usable = |p: &Path| match mount_flags(p.c()) {
        Some(f) if f & (ST_RDONLY | ST_NOEXEC) != 0 => {
            ctx.say(&[b"skip ", p.bytes(), b": read-only or noexec mount"]);
            false
        }
        f => f.is_some(),
    };
    if !usable(&parent) {
        return None;
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
    let mut lock = Path::new();
    lock.push(dir.bytes()).push(b"/.lock-").push(&tr.key);
    let got = if usable(dir) {
        extract_locked(ctx, payload, tr, unpacked, dir, &lock)
    } else {
        None
    };
    if got.is_none() && r == 0 {
        unlink(lock.c());
        rmdir(dir.c());
    }
    got
}

fn extract_locked(
    ctx: &Ctx,
    payload: &'static [u8],
    tr: &Trailer,
    unpacked: &mut Option<&'static [u8]>,
    dir: &Path,
    lock: &Path,
) -> Option<Path> {
    let mut fin = Path::new();
    fin.push(dir.bytes()).push(b"/").push(&tr.key);
    if complete(ctx, &fin) {
        ctx.say(&[b"using the cached copy in ", fin.bytes()]);
        return Some(fin);
    }
    let lfd = open(lock.c(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600);
    ctx.say(&[b"locking ", lock.bytes()]);
    let locked = lfd >= 0 && lock_exclusive(lfd);
    let got = extract(ctx, payload, tr, unpacked, dir, &fin, locked);
    close(lfd);
    got
}

#[allow(clippy::too_many_arguments)]
fn extract(
    ctx: &Ctx,
    payload: &'static [u8],
    tr: &Trailer,
    unpacked: &mut Option<&'static [u8]>,
    dir: &Path,
    fin: &Path,
    locked: bool,
) -> Option<Path> {
    if locked && complete(ctx, fin) {
        ctx.say(&[b"another launch extracted first; using ", fin.bytes()]);
        return Some(fin.clone());
    }
    let mut tmp = Path::new();
    tmp.push(dir.bytes()).push(b"/.tmp-").push(&tr.key);
    if !locked {
        // No lock on this file system: a name of our own.
        tmp.push(b"-").num(getpid() as u64);
    }
    let exists = lstat(fin.c()).is_ok();
    if exists && !(locked && trusted_dir(fin.c())) {
        ctx.say(&[
            b"skip ",
            fin.bytes(),
            b": exists but is not a complete copy made by this user",
        ]);
        return None;
    }
    // Unpack once, whichever directory ends up used.
    // Empty when corrupted: the caller says so once nothing is left behind.
    let raw = *unpacked.get_or_insert_with(|| unpack(ctx, payload, tr).unwrap_or(&[]));
    if raw.is_empty() {
        return None;
    }
    if locked {
        // What a killed holder left, and a broken copy (same key, same
        // records), go.
        remove_tree(raw, &mut tmp);
        if exists {
            ctx.say(&[b"re-extracting the broken copy ", fin.bytes()]);
            rename(fin.c(), tmp.c());
            remove_tree(raw, &mut tmp);
        }
    }
    if mkdir(tmp.c(), 0o700) < 0 {
        ctx.say(&[
            b"skip ",
            dir.bytes(),
            b": cannot create a private temporary directory",
        ]);
        return None;
    }
    ctx.say(&[b"extracting into ", tmp.bytes()]);
    if !write_tree(ctx, raw, &tmp, fin) {
        remove_tree(raw, &mut tmp);
        return None;
    }
    if rename(tmp.c(), fin.c()) < 0 {
        // Unlocked, another copy finished first: use it, drop ours.
        remove_tree(raw, &mut tmp);
        return complete(ctx, fin).then(|| fin.clone());
    }
    ctx.say(&[b"extracted into ", fin.bytes()]);
    Some(fin.clone())
}

/// Written last into an extracted tree: the list of its records (see
/// [`manifest_entry`]), which tells the tree is complete and what it held.
const MARKER: &[u8] = b"/.elfpack-complete";

/// One record of the marker: kind u8 | mode u32 | size u64 | mtime s u64 |
/// mtime ns u64 | path NUL. Size and mtime are those of the file as
/// written (zero for directories and symlinks).
const MANIFEST_FIXED: usize = 1 + 4 + 8 + 8 + 8;

/// Calls `f(kind, mode, stat, path)` for each record of a marker; false
/// when the marker is malformed.
fn manifest(m: &[u8], mut f: impl FnMut(u8, u32, Stat, &[u8]) -> bool) -> bool {
    let mut at = 0;
    while at < m.len() {
        let Some(len) = m
            .get(at + MANIFEST_FIXED..)
            .and_then(|r| r.iter().position(|&c| c == 0))
        else {
            return false;
        };
        let st = Stat {
            mode: S_IFREG,
            uid: 0,
            size: u64_at(m, at + 5),
            mtime: [u64_at(m, at + 13), u64_at(m, at + 21)],
        };
        let path = &m[at + MANIFEST_FIXED..at + MANIFEST_FIXED + len];
        if !f(m[at], u32_at(m, at + 1), st, path) {
            return false;
        }
        at += MANIFEST_FIXED + len + 1;
    }
    true
}

/// Reads a small file whole into fresh memory ("" when it cannot).
fn slurp(path: &Path) -> &'static mut [u8] {
    let fd = open(path.c(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
    let size = if fd < 0 {
        0
    } else {
        fstat_size(fd).unwrap_or(0) as usize
    };
    let buf = mmap_anon(size).unwrap_or_else(|| die(&[b"out of memory"]));
    let n = if size > 0 { pread(fd, buf, 0) } else { 0 };
    close(fd);
    let n = n.max(0) as usize;
    &mut buf[..n]
}

/// A complete, intact copy made by this user: the tree is ours, its
/// marker is, and every file is still there with the size and mtime it was
/// written with (a truncated, deleted or rewritten library is caught by one
/// lstat per file, without reading anything).
fn complete(ctx: &Ctx, fin: &Path) -> bool {
    let mut m = Path::new();
    m.push(fin.bytes()).push(MARKER);
    if !trusted_dir(fin.c())
        || !matches!(lstat(m.c()), Ok(s) if s.mode & S_IFMT == S_IFREG && s.uid == geteuid())
    {
        return false;
    }
    let list = slurp(&m);
    let mut p = Path::new();
    let ok = !list.is_empty()
        && manifest(list, |kind, _, want, rel| {
            if kind != 1 {
                return true;
            }
            p.truncate(0);
            p.push(fin.bytes()).push(b"/").push(rel);
            let same = matches!(lstat(p.c()), Ok(s) if s.mode & S_IFMT == S_IFREG
                && s.size == want.size && s.mtime == want.mtime);
            if !same {
                ctx.say(&[p.bytes(), b": changed since it was extracted"]);
            }
            same
        });
    munmap(list);
    ok
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

/// Checks and decompresses the payload into fresh memory: chunk 0 here,
/// every other chunk at the same time in a child sharing this memory.
/// Dies for a corrupted payload.
fn corrupted(me: &Path) -> ! {
    die(&[
        me.bytes(),
        b": the payload is corrupted (checksum mismatch or bad data); nothing was run",
    ])
}

/// None when the payload is corrupted.
fn unpack(ctx: &Ctx, packed: &'static [u8], tr: &Trailer) -> Option<&'static [u8]> {
    populate_read(packed);
    let n = tr.chunks as usize;
    let table_at = n
        .checked_mul(CHUNK_ENTRY)
        .filter(|&t| n > 0 && t <= packed.len())
        .map(|t| packed.len() - t)?;
    let (packed, table) = packed.split_at(table_at);
    if checksum(table) != tr.table_hash {
        return None;
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
            return None;
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
        return None;
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
                return None;
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
        return None;
    }
    Some(raw)
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

fn write_tree(ctx: &Ctx, raw: &[u8], tmp: &Path, fin: &Path) -> bool {
    let Some(h) = header(raw) else { return false };
    if fin.len > h.prefix_len {
        ctx.say(&[b"skip: the cache path is longer than the space reserved for it"]);
        return false;
    }
    // The placeholders to overwrite with `fin`: the program's interpreter
    // and RPATH, and those of other ELF programs of the bundle (run by
    // the program). (record index, offset) pairs.
    let sites = record(raw, Some(b".elfpack-patch"), 0).unwrap_or(0..0);
    let sites = &raw[sites];
    let slots_of = |i: usize, f: &mut dyn FnMut(usize)| {
        if i == h.program {
            h.slots.iter().for_each(|&s| f(s));
        }
        for e in sites.chunks_exact(8) {
            if u32_at(e, 0) as usize == i {
                f(u32_at(e, 4) as usize);
            }
        }
    };
    let mut size = 0;
    records(raw, |_, _, _, rel, _| {
        size += MANIFEST_FIXED + rel.len() + 1;
        true
    });
    let list = mmap_anon(size).unwrap_or_else(|| die(&[b"out of memory"]));
    let mut used = 0;
    let base = tmp.len;
    let mut path = Path::new();
    path.push(tmp.bytes());
    let ok = records(raw, |i, kind, mode, rel, data| {
        path.truncate(base);
        path.push(b"/").push(rel);
        let mut st = Stat {
            mode: 0,
            uid: 0,
            size: 0,
            mtime: [0, 0],
        };
        let r = match kind {
            0 => mkdir(path.c(), 0o700),
            1 => {
                // Patched in a copy: the archive stays as it came, for the
                // next candidate directory if this one fails.
                let mut n = 0;
                slots_of(i, &mut |_| n += 1);
                let mut copy: Option<&'static mut [u8]> = None;
                let len = data.len();
                if n > 0 {
                    let c = mmap_anon(len).unwrap_or_else(|| die(&[b"out of memory"]));
                    c.copy_from_slice(&raw[data.clone()]);
                    let mut done = 0;
                    let mut good = true;
                    slots_of(i, &mut |slot| {
                        if slot >= done {
                            match patch(c, slot, h.prefix_len, fin) {
                                Some(end) => done = end,
                                None => good = false,
                            }
                        }
                    });
                    if !good {
                        return false;
                    }
                    copy = Some(c);
                }
                let fd = open(
                    path.c(),
                    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    0o600,
                );
                let off = {
                    let bytes: &[u8] = match &copy {
                        Some(c) => c,
                        None => &raw[data.clone()],
                    };
                    let mut off = 0;
                    while fd >= 0 && off < len {
                        let w = sys(1, fd as usize, bytes[off..].as_ptr() as usize, len - off);
                        if w <= 0 {
                            break;
                        }
                        off += w as usize;
                    }
                    off
                };
                if let Some(c) = copy {
                    munmap(c);
                }
                match fstat(fd) {
                    Ok(s) if off == len => {
                        st = s;
                        close(fd);
                        0
                    }
                    _ => {
                        close(fd);
                        -5
                    }
                }
            }
            _ => {
                let mut target = Path::new();
                target.push(&raw[data]);
                symlink(target.c(), path.c())
            }
        };
        let e = &mut list[used..used + MANIFEST_FIXED];
        e[0] = kind;
        e[1..5].copy_from_slice(&mode.to_le_bytes());
        e[5..13].copy_from_slice(&st.size.to_le_bytes());
        e[13..21].copy_from_slice(&st.mtime[0].to_le_bytes());
        e[21..29].copy_from_slice(&st.mtime[1].to_le_bytes());
        used += MANIFEST_FIXED;
        list[used..used + rel.len()].copy_from_slice(rel);
        used += rel.len() + 1;
        r >= 0 && (kind == 2 || chmod(path.c(), mode & 0o700) >= 0)
    });
    if !ok {
        ctx.say(&[b"cannot write ", path.bytes()]);
        munmap(list);
        return false;
    }
    path.truncate(base);
    path.push(MARKER);
    let fd = open(path.c(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600);
    let mut off = 0;
    while fd >= 0 && off < used {
        let w = sys(1, fd as usize, list[off..].as_ptr() as usize, used - off);
        if w <= 0 {
            break;
        }
        off += w as usize;
    }
    close(fd);
    munmap(list);
    // The tree itself stays private to its owner.
    fd >= 0 && off == used && chmod(tmp.c(), 0o700) >= 0
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

/// Overwrites every placeholder prefix in the string at `slot` of `data`
/// with `fin`, moving the rest left and padding with NULs. Returns where
/// the string ended, or None when there is no placeholder at `slot`.
fn patch(data: &mut [u8], slot: usize, prefix_len: usize, fin: &Path) -> Option<usize> {
    let field = data.get_mut(slot..)?;
    let nul = field.iter().position(|&b| b == 0)?;
    let is_placeholder = |s: &[u8]| {
        s.len() >= prefix_len && s[0] == b'/' && s[1..prefix_len].iter().all(|&c| c == b'_')
    };
    if !is_placeholder(&field[..nul]) {
        return None;
    }
    let (mut r, mut w) = (0, 0);
    while r < nul {
        if is_placeholder(&field[r..nul]) {
            field[w..w + fin.len].copy_from_slice(fin.bytes());
            w += fin.len;
            r += prefix_len;
        } else {
            field[w] = field[r];
            w += 1;
            r += 1;
        }
    }
    field[w..nul].fill(0);
    Some(slot + nul)
}

/// Removes what `write_tree` created below `tmp` (deepest first), and
/// `tmp` itself.
fn remove_tree(raw: &[u8], tmp: &mut Path) {
    let base = tmp.len;
    if lstat(tmp.c()).is_err() {
        return;
    }
    // Directories written with fewer rights than their owner needs to
    // empty them.
    chmod(tmp.c(), 0o700);
    records(raw, |_, kind, _, rel, _| {
        if kind == 0 {
            tmp.truncate(base);
            tmp.push(b"/").push(rel);
            chmod(tmp.c(), 0o700);
        }
        true
    });
    tmp.truncate(base);
    tmp.push(MARKER);
    unlink(tmp.c());
    // Files and links, then directories until none goes (children first).
    let mut removed = 1;
    let mut pass = 0;
    while removed > 0 {
        removed = 0;
        records(raw, |_, kind, _, rel, _| {
            if (kind == 0) == (pass > 0) {
                tmp.truncate(base);
                tmp.push(b"/").push(rel);
                let r = if kind == 0 {
                    rmdir(tmp.c())
                } else {
                    unlink(tmp.c())
                };
                removed += (r == 0) as usize;
            }
            true
        });
        pass += 1;
        removed += (pass == 1) as usize;
    }
    tmp.truncate(base);
    rmdir(tmp.c());
}

fn exec(ctx: &Ctx, fin: &Path, image: bool) -> ! {
    let mut arena = arena(ctx);
    // The program's path inside the cache, as written at pack time.
    let rel = env::read(&mut arena, fin.bytes(), b".elfpack-entry");
    if rel.is_empty() {
        die(&[fin.bytes(), b": no entry point recorded"]);
    }
    let mut prog = Path::new();
    prog.push(fin.bytes()).push(b"/").push(rel);
    if image {
        install(ctx, fin);
    }
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

/// Whether `/` is a container image's own root, into which the launcher
/// may install what the bundle has at absolute paths: only for root, and
/// only in a root without a distribution: neither /bin/sh nor /usr/bin/env
/// exists. Every Linux host has both (system(3) and `#!` lines need them),
/// while a `FROM scratch` or distroless image, or a chroot holding only the
/// file, has neither. Being PID 1 is not asked for: `unshare -fp` on a host
/// makes PID 1 too, and `--init` or a shared PID namespace makes the
/// entrypoint another PID; the root decides.
fn image_root() -> bool {
    geteuid() == 0 && lstat(b"/bin/sh\0").is_err() && lstat(b"/usr/bin/env\0").is_err()
}

/// Installs what the bundle holds at absolute paths where the root lacks
/// it, never replacing anything that exists (`.elfpack-install`: lines
/// `DIR<TAB>/ABS`, the bundle's DIR mirrors /ABS).
fn install(ctx: &Ctx, fin: &Path) {
    let mut p = Path::new();
    p.push(fin.bytes()).push(b"/.elfpack-install");
    let map = slurp(&p);
    p.truncate(fin.len);
    p.push(MARKER);
    let list = slurp(&p);
    for line in env::lines(map) {
        let Some(tab) = line.iter().position(|&c| c == b'\t') else {
            continue;
        };
        let (dir, abs) = (&line[..tab], &line[tab + 1..]);
        let abs = if abs == b"/" { &b""[..] } else { abs };
        manifest(list, |kind, mode, _, rel| {
            let Some(rest) = rel
                .strip_prefix(dir)
                .filter(|r| r.is_empty() || r[0] == b'/')
            else {
                return true;
            };
            let mut dst = Path::new();
            dst.push(abs).push(rest);
            if dst.len == 0 || lstat(dst.c()).is_ok() {
                return true;
            }
            let mut src = Path::new();
            src.push(fin.bytes()).push(b"/").push(rel);
            let ok = match kind {
                0 => mkdir(dst.c(), (mode & 0o7777) as usize) == 0,
                1 => copy_file(&src, &dst, mode & 0o7777),
                _ => {
                    let mut t = [0u8; PATH_MAX];
                    let n = sys(
                        89,
                        src.c().as_ptr() as usize,
                        t.as_mut_ptr() as usize,
                        PATH_MAX - 1,
                    );
                    n > 0 && symlink(&t[..=n as usize], dst.c()) == 0
                }
            };
            ctx.say(&[
                if ok {
                    b"installed "
                } else {
                    b"cannot install "
                },
                dst.bytes(),
            ]);
            true
        });
    }
    munmap(map);
    munmap(list);
}

/// Copies `src` to the new file `dst` with `mode`, in the kernel.
fn copy_file(src: &Path, dst: &Path, mode: u32) -> bool {
    let from = open(src.c(), O_RDONLY | O_CLOEXEC, 0);
    let Some(size) = fstat_size(from).filter(|_| from >= 0) else {
        return false;
    };
    let to = open(
        dst.c(),
        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
        mode as usize,
    );
    let mut left = size;
    while to >= 0 && left > 0 {
        let n = unsafe { syscall6(40, to as usize, from as usize, 0, left as usize, 0, 0) };
        if n <= 0 {
            break;
        }
        left -= n as u64;
    }
    close(from);
    close(to);
    // The umask must not narrow what the image's files allow.
    to >= 0 && left == 0 && chmod(dst.c(), mode) == 0
}
