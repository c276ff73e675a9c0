//! cgroups v1, v2 and hybrid behind one interface. INTERFACE STUB: the cgroups helper replaces the bodies.
//!
//! Contract used by berth-runtime (keep these signatures):
//! - `Cgroup::create(cgroups_path, id, resources)` creates the container's cgroup(s) and applies resources.
//!   A relative (or absent) cgroupsPath nests under the caller's own cgroup per hierarchy (runc's rule);
//!   absent means `<own cgroup>/<id>`. On error nothing it created is left behind.
//! - Everything needed later (delete, exec, pause, update, events) comes back via `from_state(state())`.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("cgroup {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroup: {0}")]
    Unsupported(String),
}

/// Persisted in the container's state.json.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CgroupState {
    pub dirs: Vec<PathBuf>,
}

/// How /sys/fs/cgroup is shown inside the container.
#[derive(Debug, Clone)]
pub struct CgroupMount {
    /// Relative to the mount's destination (for v1 a controller directory such as "memory"; "" for v2).
    pub subdir: PathBuf,
    pub source: CgroupMountSource,
}

#[derive(Debug, Clone)]
pub enum CgroupMountSource {
    /// Bind-mount this host directory (the container's own cgroup).
    Bind(PathBuf),
    /// Mount a fresh cgroup filesystem (only inside a cgroup namespace): fstype and data.
    Fs { fstype: String, data: String },
}

pub struct Cgroup {
    state: CgroupState,
}

impl Cgroup {
    pub fn create(
        _cgroups_path: Option<&Path>,
        _id: &str,
        _resources: Option<&LinuxResources>,
    ) -> Result<Cgroup, CgroupError> {
        Ok(Cgroup {
            state: CgroupState::default(),
        })
    }
    pub fn from_state(state: &CgroupState) -> Cgroup {
        Cgroup {
            state: state.clone(),
        }
    }
    pub fn state(&self) -> CgroupState {
        self.state.clone()
    }
    /// Moves a process (and, for a new process, its future children) into the container's cgroups.
    pub fn add_process(&self, _pid: i32) -> Result<(), CgroupError> {
        Ok(())
    }
    /// `update`: applies resources to a running container.
    pub fn update(&self, _resources: &LinuxResources) -> Result<(), CgroupError> {
        Ok(())
    }
    pub fn freeze(&self) -> Result<(), CgroupError> {
        Ok(())
    }
    pub fn thaw(&self) -> Result<(), CgroupError> {
        Ok(())
    }
    pub fn is_frozen(&self) -> bool {
        false
    }
    /// Every process in the container's cgroup tree.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        Ok(Vec::new())
    }
    /// runc's `events --stats` data object (cpu, memory, pids, blkio, hugetlb), as containerd reads it.
    pub fn stats(&self) -> Result<serde_json::Value, CgroupError> {
        Ok(serde_json::json!({}))
    }
    /// Number of OOM kills in the container's memory cgroup so far.
    pub fn oom_kills(&self) -> u64 {
        0
    }
    /// Removes the container's cgroup directories (the caller has killed its processes). Missing is fine.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        Ok(())
    }
    /// How to mount the cgroup filesystem(s) at the container's /sys/fs/cgroup.
    pub fn mounts(&self, _cgroupns: bool) -> Vec<CgroupMount> {
        Vec::new()
    }
}

/// The `linux.cgroup` object of `berth-runtime features`.
pub fn features() -> serde_json::Value {
    serde_json::json!({"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false})
}
