//! The minimal /etc a `FROM scratch` image needs so that user, group and host
//! lookups work: generated, never copied from the build host (whose passwd,
//! group and shadow name real accounts).

/// Users: root, nobody, and the distroless convention `nonroot` (65532).
pub const PASSWD: &str = "\
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
";

pub const GROUP: &str = "\
root:x:0:
nobody:x:65534:
nonroot:x:65532:
";

/// Only sources glibc has built in, so no NSS module has to ship.
pub const NSSWITCH: &str = "\
passwd:     files
group:      files
shadow:     files
hosts:      files dns
networks:   files
protocols:  files
services:   files
";

pub const HOSTS: &str = "\
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
";

/// The generated files: (path in the image, content, mode).
pub fn files() -> Vec<(&'static str, &'static str, u32)> {
    vec![
        ("/etc/passwd", PASSWD, 0o644),
        ("/etc/group", GROUP, 0o644),
        ("/etc/nsswitch.conf", NSSWITCH, 0o644),
        ("/etc/hosts", HOSTS, 0o644),
    ]
}
