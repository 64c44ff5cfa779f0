//! Package data (`--no-package-data` turns it off, `--package NAME` adds a
//! package): the files [`crate::collect::package_data`] selects ship here,
//! ELF files among them with their closures.

use std::path::PathBuf;

use anyhow::Result;

use super::{Builder, Item, Role};
use crate::collect::dpkg::Dpkg;
use crate::collect::package_data;

impl Builder<'_> {
    pub(super) fn package_data(
        &mut self,
        programs: &[PathBuf],
        libraries: &[PathBuf],
        named: &[String],
    ) -> Result<()> {
        let db = match Dpkg::host() {
            Ok(Some(db)) => db,
            Ok(None) => {
                if !named.is_empty() {
                    anyhow::bail!(
                        "--package: this host has no dpkg database (/var/lib/dpkg/status)"
                    );
                }
                return Ok(());
            }
            Err(e) => {
                self.out
                    .warnings
                    .push(format!("package data left out: {e:#}"));
                return Ok(());
            }
        };
        let before = self.out.added.len();
        self.ship_package_data(package_data::select(&db, programs, libraries, named)?);
        // Libraries the shipped plugins link to bring their data packages too
        // (graphviz's pango plugin -> libfontconfig1 -> fontconfig-config).
        let more: Vec<PathBuf> = self.out.added[before..]
            .iter()
            .filter(|a| matches!(a.role, Role::Library(_)))
            .filter_map(|a| match &a.item {
                Item::HostPath(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        if !more.is_empty() {
            self.ship_package_data(package_data::select(&db, &[], &more, &[])?);
        }
        Ok(())
    }

    fn ship_package_data(&mut self, selected: Vec<package_data::Selected>) {
        let warned = self.out.warnings.len();
        // A plugin that needs a library its program loads by path first
        // (the JVM's lib/*.so and lib/server/libjvm.so) is fine when that
        // library ships too: no warning then.
        let shipped: Vec<String> = selected
            .iter()
            .filter_map(|s| s.path.file_name())
            .map(|n| format!("library {} needed by", n.to_string_lossy()))
            .collect();
        for s in selected {
            let source = format!("package {}", s.package);
            let item = Item::HostPath(s.path.clone());
            self.push_as(item, Role::Data, &source, s.why.clone());
            if s.elf && super::file_id(&s.path).is_some_and(|id| !self.known.contains(&id)) {
                self.elf_closure(&s.path, s.runs, &source);
            }
        }
        let mut i = warned;
        while i < self.out.warnings.len() {
            if shipped
                .iter()
                .any(|n| self.out.warnings[i].contains(n.as_str()))
            {
                self.out.warnings.remove(i);
            } else {
                i += 1;
            }
        }
    }
}
