//! Stage 5, emit: turns a [`crate::plan::Plan`] into one kind of artefact.
//!
//! Takes a finished plan (and for images, the image configuration); gives
//! files on disk. One module per destination, so adding an output never
//! touches another: a rootfs tree ([`rootfs`]), a tarball ([`tar`]), an OCI
//! image archive ([`oci`]), an image pushed to a registry ([`registry`],
//! behind the same [`oci::Destination`] as the archive), a Dockerfile beside a tree ([`dockerfile`]), a
//! self-extracting single file ([`single_file`]), and an SPDX document of
//! any of them ([`sbom`], which an OCI archive also carries as an artifact). A `--prefix` bundle is a
//! rootfs write of the plan made by [`crate::plan::prefix`] and
//! [`crate::plan::bundle`], so it needs no emitter of its own.

pub mod dockerfile;
pub mod oci;
pub mod registry;
pub mod rootfs;
pub mod sbom;
pub mod single_file;
pub mod tar;
