//! `#!` scripts: the program to pack is the interpreter (and, for
//! `#!/usr/bin/env NAME`, the NAME that env finds on PATH).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// What a `#!` line asks the kernel (and env) to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shebang {
    pub interpreter: PathBuf,
    /// The one argument the kernel passes after the interpreter ("" for none).
    pub arg: String,
    /// For `env NAME` (also `env -S NAME ...`): NAME as found on PATH.
    pub env_target: Option<PathBuf>,
}

/// Returns the shebang of `path`, or `None` when it does not start with `#!`.
pub fn read_shebang(path: &Path, search_path: &str) -> Result<Option<Shebang>> {
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let head = &head[..n];
    if !head.starts_with(b"#!") {
        return Ok(None);
    }
    let line = head[2..].split(|&b| b == b'\n').next().unwrap_or_default();
    if line.ends_with(b"\r") {
        bail!(
            "{}: its #! line ends in a carriage return (DOS line endings), so the kernel would look for an interpreter named {:?}; convert the file with dos2unix",
            path.display(),
            String::from_utf8_lossy(line)
                .split([' ', '\t'])
                .find(|w| !w.is_empty())
                .unwrap_or_default()
        );
    }
    let line = String::from_utf8_lossy(line);
    // The kernel splits at the first blank: interpreter, then one argument.
    let line = line.trim();
    let (interp, arg) = match line.split_once([' ', '\t']) {
        Some((i, a)) => (i, a.trim()),
        None => (line, ""),
    };
    if interp.is_empty() {
        bail!("{}: empty #! line", path.display());
    }
    let interpreter = PathBuf::from(interp);
    let env_target = if interpreter.file_name().is_some_and(|n| n == "env") {
        let mut words = arg
            .split_whitespace()
            .skip_while(|w| w.starts_with('-') || w.contains('='));
        match words.next() {
            Some(name) if name.contains('/') => Some(PathBuf::from(name)),
            Some(name) => Some(which(name, search_path).with_context(|| {
                format!(
                    "{}: #!{} {}: {} is not on PATH ({})",
                    path.display(),
                    interp,
                    arg,
                    name,
                    search_path
                )
            })?),
            None => None,
        }
    } else {
        None
    };
    Ok(Some(Shebang {
        interpreter,
        arg: arg.to_string(),
        env_target,
    }))
}

/// The first executable regular file called `name` in the `:`-separated dirs.
pub fn which(name: &str, search_path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    search_path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_direct_and_env_shebangs() {
        let t = tempfile::tempdir().unwrap();
        let s = t.path().join("s");
        std::fs::write(&s, "#!/bin/sh -e\necho\n").unwrap();
        let sb = read_shebang(&s, "").unwrap().unwrap();
        assert_eq!(
            sb,
            Shebang {
                interpreter: "/bin/sh".into(),
                arg: "-e".into(),
                env_target: None
            }
        );
        std::fs::write(&s, "#!/usr/bin/env -S sh -e\n").unwrap();
        let sb = read_shebang(&s, "/usr/bin:/bin").unwrap().unwrap();
        assert_eq!(sb.env_target.unwrap().file_name().unwrap(), "sh");
        std::fs::write(&s, "#!/usr/bin/env no-such-program-here\n").unwrap();
        assert!(read_shebang(&s, "/usr/bin").is_err());
        std::fs::write(&s, "\x7fELF").unwrap();
        assert!(read_shebang(&s, "").unwrap().is_none());
    }
}
