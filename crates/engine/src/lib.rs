//! berth's engine: it composes images and the runtime into containers. This first module turns an image
//! config plus `docker run` options into an OCI runtime spec (config.json), the way dockerd does.

pub mod attach;
mod caps;
pub mod container;
pub mod copy;
pub mod exec;
pub mod lock;
pub mod logs;
pub mod monitor;
mod mounts;
pub mod names;
pub mod network;
pub mod oci;
pub mod records;
mod resources;
mod seccomp;
pub mod spec;
pub mod stats;
mod user;
pub mod volumes;

pub use spec::{
    add_etc_files, build, parse_memory, parse_ulimit, stop_signal, MountSpec, NetworkMode,
    RunOptions, SeccompChoice, SpecError, Ulimit,
};
pub use user::{resolve as resolve_user, ResolvedUser};
