//! Output writers: each turns a [`crate::plan::Plan`] into one kind of artefact.

pub mod dockerfile;
pub mod rootfs;
