//! The minimal /etc a `FROM scratch` image needs so that user, group and host
//! lookups work: generated, never copied from the build host (whose passwd,
//! group and shadow name real accounts, with ids that differ per machine).

/// Users: Debian's base-passwd defaults (`/usr/share/base-passwd/passwd.master`
/// of bookworm's base-passwd 3.6.1, the static ids every Debian system
/// shares, so daemons that look up `daemon`, `www-data` or `nobody` find
/// them), plus the distroless convention `nonroot` (65532). No shell ships,
/// so every login shell is nologin; no password field is usable (`x`, and
/// no shadow file).
pub const PASSWD: &str = "\
root:x:0:0:root:/root:/usr/sbin/nologin
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
sync:x:4:65534:sync:/bin:/bin/sync
games:x:5:60:games:/usr/games:/usr/sbin/nologin
man:x:6:12:man:/var/cache/man:/usr/sbin/nologin
lp:x:7:7:lp:/var/spool/lpd:/usr/sbin/nologin
mail:x:8:8:mail:/var/mail:/usr/sbin/nologin
news:x:9:9:news:/var/spool/news:/usr/sbin/nologin
uucp:x:10:10:uucp:/var/spool/uucp:/usr/sbin/nologin
proxy:x:13:13:proxy:/bin:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
backup:x:34:34:backup:/var/backups:/usr/sbin/nologin
list:x:38:38:Mailing List Manager:/var/list:/usr/sbin/nologin
irc:x:39:39:ircd:/run/ircd:/usr/sbin/nologin
_apt:x:42:65534::/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin
";

/// Groups: base-passwd's `group.master` (with `nogroup`, 65534, which
/// Debian's daemons default to, e.g. nginx's `user www-data;`), plus
/// `nonroot` (65532).
pub const GROUP: &str = "\
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
news:x:9:
uucp:x:10:
man:x:12:
proxy:x:13:
kmem:x:15:
dialout:x:20:
fax:x:21:
voice:x:22:
cdrom:x:24:
floppy:x:25:
tape:x:26:
sudo:x:27:
audio:x:29:
dip:x:30:
www-data:x:33:
backup:x:34:
operator:x:37:
list:x:38:
irc:x:39:
src:x:40:
shadow:x:42:
utmp:x:43:
video:x:44:
sasl:x:45:
plugdev:x:46:
staff:x:50:
games:x:60:
users:x:100:
nogroup:x:65534:
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line has 7 (passwd) or 4 (group) fields, names and ids are
    /// unique, and each user's primary group exists.
    #[test]
    fn accounts_are_well_formed() {
        let mut gids = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for l in GROUP.lines() {
            let f: Vec<&str> = l.split(':').collect();
            assert_eq!(f.len(), 4, "{l}");
            assert!(names.insert(f[0]), "duplicate group {l}");
            assert!(
                gids.insert(f[2].parse::<u32>().unwrap()),
                "duplicate gid {l}"
            );
        }
        let mut uids = std::collections::HashSet::new();
        let mut users = std::collections::HashSet::new();
        for l in PASSWD.lines() {
            let f: Vec<&str> = l.split(':').collect();
            assert_eq!(f.len(), 7, "{l}");
            assert!(users.insert(f[0]), "duplicate user {l}");
            assert!(
                uids.insert(f[2].parse::<u32>().unwrap()),
                "duplicate uid {l}"
            );
            assert!(
                gids.contains(&f[3].parse::<u32>().unwrap()),
                "no group for {l}"
            );
        }
        for u in [
            "root", "daemon", "bin", "sys", "www-data", "nobody", "nonroot",
        ] {
            assert!(users.contains(u), "{u}");
        }
        assert!(GROUP.contains("\nnogroup:x:65534:\n"));
    }
}
