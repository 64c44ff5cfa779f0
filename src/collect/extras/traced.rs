//! `--trace`: what the program opened, ran or stat'ed in a real run ships.

use std::path::Path;

use anyhow::Result;

use super::{Builder, Item, file_id};
use crate::collect::trace;

impl Builder<'_> {
    pub(super) fn trace(&mut self, program: &Path, opts: &trace::Options) -> Result<()> {
        let t = trace::trace(program, opts)?;
        self.out.warnings.extend(t.warnings.iter().cloned());
        for f in &t.found {
            let a = &f.access;
            if a.path == program {
                // The program itself: placed by the layout (maybe elsewhere, --install-to).
                continue;
            }
            let why = format!("{} by pid {} ({})", a.syscall, a.pid, a.program.display());
            self.push(Item::HostPath(a.path.clone()), "--trace", why);
            if f.is_dir {
                continue;
            }
            let elf_needs_closure = f.is_elf
                && matches!(a.what, trace::What::Read | trace::What::Exec)
                && file_id(&a.path).is_some_and(|id| !self.known.contains(&id));
            if elf_needs_closure {
                self.elf_closure(&a.path, a.what == trace::What::Exec, "--trace");
            } else if a.what == trace::What::Exec && !f.is_elf {
                self.script_interpreter(&a.path, "--trace")?;
            }
        }
        self.out.trace = Some(t);
        Ok(())
    }
}
