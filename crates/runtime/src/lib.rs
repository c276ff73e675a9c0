//! berth's OCI runtime: turns a bundle (rootfs + config.json) into an isolated, limited process.
//!
//! The library knows nothing of images, networks or the engine (DESIGN.md: arrows point down). The
//! `berth-runtime` binary is a thin clap layer over [`container`].
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod capabilities;

pub mod console;
pub mod container;
pub mod exe_protect;
pub mod features;
pub mod foreground;
pub mod hooks;
pub mod namespaces;
pub mod netdev;
pub mod paths;
pub mod process;
pub mod rootfs;

pub mod signals;
pub mod spec;
pub mod state;
pub mod sync;
pub mod syscall;

pub use oci_spec::runtime as oci;
