//! Raw Linux x86-64 system calls and the few libc-like helpers a program
//! without libc needs.

use core::arch::asm;

pub const O_RDONLY: usize = 0;
pub const O_WRONLY: usize = 1;
pub const O_RDWR: usize = 2;
pub const O_CREAT: usize = 0o100;
pub const O_EXCL: usize = 0o200;
pub const O_NOFOLLOW: usize = 0o400000;
pub const O_CLOEXEC: usize = 0o2000000;
pub const EEXIST: isize = -17;
pub const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const ST_RDONLY: u64 = 1;
pub const ST_NOEXEC: u64 = 8;

#[inline(always)]
pub unsafe fn syscall6(
    n: usize,
    a: usize,
    b: usize,
    c: usize,
    d: usize,
    e: usize,
    f: usize,
) -> isize {
    let ret: isize;
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a, in("rsi") b, in("rdx") c,
             in("r10") d, in("r8") e, in("r9") f, lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

pub fn sys(n: usize, a: usize, b: usize, c: usize) -> isize {
    unsafe { syscall6(n, a, b, c, 0, 0, 0) }
}

pub fn write(fd: usize, s: &[u8]) {
    let mut off = 0;
    while off < s.len() {
        let r = sys(1, fd, s[off..].as_ptr() as usize, s.len() - off);
        if r <= 0 {
            return;
        }
        off += r as usize;
    }
}

pub fn exit(code: i32) -> ! {
    loop {
        sys(231, code as usize, 0, 0);
    }
}

/// `path` must be NUL-terminated.
pub fn open(path: &[u8], flags: usize, mode: usize) -> isize {
    sys(2, path.as_ptr() as usize, flags, mode)
}

pub fn close(fd: isize) {
    sys(3, fd as usize, 0, 0);
}

pub fn pread(fd: isize, buf: &mut [u8], off: u64) -> isize {
    unsafe {
        syscall6(
            17,
            fd as usize,
            buf.as_mut_ptr() as usize,
            buf.len(),
            off as usize,
            0,
            0,
        )
    }
}

pub fn mkdir(path: &[u8], mode: usize) -> isize {
    sys(83, path.as_ptr() as usize, mode, 0)
}

pub fn rmdir(path: &[u8]) -> isize {
    sys(84, path.as_ptr() as usize, 0, 0)
}

pub fn unlink(path: &[u8]) -> isize {
    sys(87, path.as_ptr() as usize, 0, 0)
}

pub fn symlink(target: &[u8], path: &[u8]) -> isize {
    sys(88, target.as_ptr() as usize, path.as_ptr() as usize, 0)
}

pub fn rename(from: &[u8], to: &[u8]) -> isize {
    sys(82, from.as_ptr() as usize, to.as_ptr() as usize, 0)
}

pub fn chmod(path: &[u8], mode: u32) -> isize {
    sys(90, path.as_ptr() as usize, mode as usize, 0)
}

/// An anonymous in-memory file that survives exec (no MFD_CLOEXEC).
pub fn memfd_create(name: &[u8]) -> isize {
    sys(319, name.as_ptr() as usize, 0, 0)
}

pub fn geteuid() -> u32 {
    sys(107, 0, 0, 0) as u32
}

pub fn getpid() -> u32 {
    sys(39, 0, 0, 0) as u32
}

pub fn execve(path: &[u8], argv: *const *const u8, envp: *const *const u8) -> isize {
    sys(59, path.as_ptr() as usize, argv as usize, envp as usize)
}

pub fn mmap_anon(len: usize) -> Option<&'static mut [u8]> {
    // PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS
    let p = unsafe { syscall6(9, 0, len.max(1), 3, 0x22, usize::MAX, 0) };
    if p < 0 {
        return None;
    }
    Some(unsafe { core::slice::from_raw_parts_mut(p as *mut u8, len) })
}

/// Fresh memory for megabytes of output, faulted in up front: huge pages
/// where the kernel allows them (THP "madvise" mode is the default), then
/// one populate call instead of a page fault per 4 KiB while decoding.
pub fn mmap_big(len: usize) -> Option<&'static mut [u8]> {
    const MADV_HUGEPAGE: usize = 14;
    const MADV_POPULATE_WRITE: usize = 23;
    let b = mmap_anon(len)?;
    // Both are hints: older kernels say EINVAL and the faults happen later.
    sys(28, b.as_mut_ptr() as usize, len, MADV_HUGEPAGE);
    sys(28, b.as_mut_ptr() as usize, len, MADV_POPULATE_WRITE);
    Some(b)
}

/// Asks the kernel to read `b` (a file mapping) in now, not a page
/// fault at a time; a hint, ignored by old kernels.
pub fn populate_read(b: &[u8]) {
    const MADV_POPULATE_READ: usize = 22;
    let start = b.as_ptr() as usize & !4095;
    let end = b.as_ptr() as usize + b.len();
    sys(28, start, end - start, MADV_POPULATE_READ);
}

/// What the launcher needs of a `struct stat`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub mode: u32,
    pub uid: u32,
    pub size: u64,
    /// Modification time, seconds and nanoseconds.
    pub mtime: [u64; 2],
}

/// `stat` (4), `fstat` (5) or `lstat` (6) on `arg` (a path or an fd).
fn stat_call(nr: usize, arg: usize) -> Result<Stat, isize> {
    let mut st = [0u64; 18];
    let r = sys(nr, arg, st.as_mut_ptr() as usize, 0);
    if r < 0 {
        return Err(r);
    }
    Ok(Stat {
        mode: st[3] as u32,
        uid: (st[3] >> 32) as u32,
        size: st[6],
        mtime: [st[11], st[12]],
    })
}

/// `lstat`, or the negative errno.
pub fn lstat(path: &[u8]) -> Result<Stat, isize> {
    stat_call(6, path.as_ptr() as usize)
}

/// `stat` (follows symlinks).
pub fn stat(path: &[u8]) -> Result<Stat, isize> {
    stat_call(4, path.as_ptr() as usize)
}

pub fn fstat(fd: isize) -> Result<Stat, isize> {
    stat_call(5, fd as usize)
}

pub fn fstat_size(fd: isize) -> Option<u64> {
    fstat(fd).ok().map(|s| s.size)
}

/// `flock(fd, LOCK_EX)`, waiting through signals; false when the file
/// system cannot lock.
pub fn lock_exclusive(fd: isize) -> bool {
    loop {
        let r = sys(73, fd as usize, 2, 0);
        if r != -4 {
            return r == 0;
        }
    }
}

pub fn munmap(b: &mut [u8]) {
    sys(11, b.as_mut_ptr() as usize, b.len().max(1), 0);
}

/// `statfs` mount flags (ST_RDONLY, ST_NOEXEC...).
pub fn mount_flags(path: &[u8]) -> Option<u64> {
    let mut st = [0u64; 15];
    (sys(137, path.as_ptr() as usize, st.as_mut_ptr() as usize, 0) >= 0).then_some(st[10])
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _, options(nostack))
    };
    dst
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
        return unsafe { memcpy(dst, src, n) };
    }
    // Overlapping with dst after src: copy backwards.
    unsafe {
        asm!("std", "rep movsb", "cld", inout("rcx") n => _, inout("rdi") dst.add(n - 1) => _,
             inout("rsi") src.add(n - 1) => _, options(nostack));
    }
    dst
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8, options(nostack))
    };
    dst
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        let (x, y) = unsafe {
            (
                core::ptr::read_volatile(a.add(i)),
                core::ptr::read_volatile(b.add(i)),
            )
        };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    unsafe { memcmp(a, b, n) }
}

#[unsafe(no_mangle)]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    while unsafe { core::ptr::read_volatile(s.add(n)) } != 0 {
        n += 1;
    }
    n
}

/// Starts `f(arg)` in a child process that shares our memory (clone with
/// CLONE_VM and no exit signal, so an inherited SIGCHLD=SIG_IGN cannot
/// reap it behind our back) on the stack ending at `stack_top` (16-byte
/// aligned). Returns the child's pid or a negative errno.
///
/// # Safety
/// `f` must never return and must only touch memory the parent leaves alone
/// until [`wait_child`] returns.
pub unsafe fn spawn(stack_top: *mut u8, f: extern "C" fn(*mut u8) -> !, arg: *mut u8) -> isize {
    const CLONE_VM: usize = 0x100;
    let ret: isize;
    unsafe {
        asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            // The child, on its own stack.
            "mov rdi, r13",
            "call r12",
            "ud2",
            "2:",
            inlateout("rax") 56isize => ret,
            in("rdi") CLONE_VM,
            in("rsi") stack_top,
            in("rdx") 0,
            in("r10") 0,
            in("r8") 0,
            in("r12") f,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// Waits for a child started by [`spawn`]; true if it exited with status 0.
pub fn wait_child(pid: isize) -> bool {
    const WALL: usize = 0x4000_0000;
    let mut status: i32 = -1;
    loop {
        let r = unsafe {
            syscall6(
                61,
                pid as usize,
                &mut status as *mut i32 as usize,
                WALL,
                0,
                0,
                0,
            )
        };
        if r == -4 {
            continue; // EINTR
        }
        return r == pid && status == 0;
    }
}

/// `exit` of this task only (the child of [`spawn`]).
pub fn exit_task(code: i32) -> ! {
    loop {
        sys(60, code as usize, 0, 0);
    }
}
