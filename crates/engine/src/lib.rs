//! berth's engine: it composes images and the runtime into containers. This first module turns an image
//! config plus `docker run` options into an OCI runtime spec (config.json), the way dockerd does.

mod caps;
pub mod logs;
mod mounts;
pub mod names;
pub mod records;
mod resources;
mod seccomp;
pub mod spec;
mod user;

pub use spec::{
    add_etc_files, build, parse_memory, parse_ulimit, stop_signal, MountSpec, NetworkMode,
    RunOptions, SeccompChoice, SpecError, Ulimit,
};
