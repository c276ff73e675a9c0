//! OCI seccomp profile -> classic BPF. INTERFACE STUB: the seccomp helper replaces the bodies.
//!
//! Contract used by berth-runtime (keep these signatures):
//! - `Filter::prepare(profile, cache_dir)` runs in the runtime before it forks the container: it compiles the
//!   profile, or loads the compiled program from `cache_dir/<sha256 of the profile>.bpf`.
//! - `Filter::install()` runs in the container's process just before exec (single-threaded, after fork).

use std::os::fd::OwnedFd;
use std::path::Path;

use oci_spec::runtime::LinuxSeccomp;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SeccompError {
    #[error("seccomp: {0}")]
    Invalid(String),
    #[error("seccomp: install filter: {0}")]
    Install(#[source] std::io::Error),
}

pub struct Filter {
    _private: (),
}

impl Filter {
    pub fn prepare(_profile: &LinuxSeccomp, _cache_dir: Option<&Path>) -> Result<Filter, SeccompError> {
        Ok(Filter { _private: () })
    }
    /// Loads the filter into the calling thread (TSYNC when asked). Returns the user-notification fd when the
    /// profile uses SCMP_ACT_NOTIFY.
    pub fn install(&self) -> Result<Option<OwnedFd>, SeccompError> {
        Ok(None)
    }
    /// `linux.seccomp.listenerPath`, when the profile has one.
    pub fn listener_path(&self) -> Option<&Path> {
        None
    }
}

/// Sends the notify fd and the container process state JSON to the listener socket, as runc does.
pub fn send_to_listener(_path: &Path, _fd: &OwnedFd, _state_json: &[u8]) -> Result<(), SeccompError> {
    Ok(())
}

/// The `linux.seccomp` object of `berth-runtime features`.
pub fn features() -> serde_json::Value {
    serde_json::json!({"enabled": true})
}
