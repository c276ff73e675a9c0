//! cgroups v1, v2 and hybrid behind one interface.
//!
//! - `Cgroup::create(cgroups_path, id, resources)` creates the container's cgroup(s) and applies
//!   resources. A relative (or absent) cgroupsPath nests under the caller's own cgroup per
//!   hierarchy (runc's rule); absent means `<own cgroup>/<id>`. On error nothing it created is
//!   left behind.
//! - Everything needed later (delete, exec, pause, update, events) comes back via
//!   `from_state(state())`, without looking at /proc again.
//!
//! Layouts: pure v2 (/sys/fs/cgroup is cgroup2), v1 (one hierarchy per mounted controller set,
//! found through /proc/self/mountinfo) and hybrid (v1 plus a cgroup2 mount, usually
//! /sys/fs/cgroup/unified, which drives only controllers v1 does not have, such as hugetlb).
//!
//! Pure v2 and the "no internal processes" rule: a child cgroup only gets controllers its
//! parent enables in cgroup.subtree_control, and a non-root cgroup that holds processes cannot
//! enable any. When the caller sits in such a leaf (e.g. a systemd scope), the container's cgroup
//! is still created (freeze, pids, kill, devices and stats of the core files work), but
//! resources that need a controller fail with an Unsupported error that explains why.

#![deny(clippy::undocumented_unsafe_blocks)]

mod devices;
mod devices_bpf;
mod fsutil;
mod mode;
mod paths;
mod stats;
mod v1;
mod v2;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use paths::container_cgroup_path;

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
    #[error("cgroup path: {0}")]
    InvalidPath(String),
    #[error("cgroup: {0}")]
    Invalid(String),
    #[error("cgroup device filter: {0}")]
    Bpf(String),
    #[error("cgroup: timed out: {0}")]
    Timeout(String),
}

/// Persisted in the container's state.json.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CgroupState {
    /// Directories this crate created, parents before children; destroy removes them in reverse.
    #[serde(default)]
    pub dirs: Vec<PathBuf>,
    /// The container's cgroup in each hierarchy.
    #[serde(default)]
    pub hierarchies: Vec<HierarchyState>,
}

/// The container's directory in one hierarchy.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HierarchyState {
    /// 1 or 2.
    pub version: u8,
    /// v1: the hierarchy's controllers ("name=systemd" included); v2: the controllers this crate
    /// drives there (all enabled ones on pure v2, only v1-less ones such as hugetlb on hybrid).
    pub controllers: Vec<String>,
    /// The container's cgroup directory on the host.
    pub path: PathBuf,
    /// v2: first directory whose cgroup.subtree_control may be written (caller's own cgroup,
    /// or the root for an absolute cgroupsPath).
    #[serde(default)]
    pub base: PathBuf,
    /// Directory name under /sys/fs/cgroup ("memory", "cpu,cpuacct", "unified", "" for pure v2).
    pub subdir: PathBuf,
    /// A relative cgroupsPath: the directories between `base` (the caller's own cgroup) and `path` are this
    /// runtime's, shared by the containers created there, so an empty one may be removed by whichever
    /// container leaves last. Never set for an absolute path (its parents belong to whoever made them).
    #[serde(default)]
    pub shared_parents: bool,
}

impl HierarchyState {
    fn v2(&self) -> bool {
        self.version == 2
    }
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

/// A blkio weight of 0 means "not set", as runc reads it: dockerd puts `"weight": 0` in every spec, and the
/// kernel refuses 0 (ERANGE).
pub(crate) fn set_weight(w: Option<u16>) -> Option<u16> {
    w.filter(|&w| w != 0)
}

fn unsupported(field: &str, controller: &str) -> CgroupError {
    CgroupError::Unsupported(format!("{field}: {controller} controller not available"))
}

/// Creates `dir` and missing parents, recording each created directory (parents first). A shared parent that
/// a parallel delete removes between our mkdirs (ENOENT) is made again.
fn mkdir_tracked(dir: &Path, created: &mut Vec<PathBuf>) -> Result<Vec<PathBuf>, CgroupError> {
    let mut mine = Vec::new();
    let mut attempts = 0;
    'again: loop {
        let mut missing = Vec::new();
        let mut cur = dir;
        while !cur.exists() {
            missing.push(cur.to_path_buf());
            match cur.parent() {
                Some(p) => cur = p,
                None => break,
            }
        }
        for d in missing.into_iter().rev() {
            match std::fs::create_dir(&d) {
                Ok(()) => {
                    created.push(d.clone());
                    mine.push(d);
                }
                // Someone else (a parallel create with a shared parent) was faster; not ours.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 20 => {
                    attempts += 1;
                    continue 'again;
                }
                Err(e) => return Err(fsutil::io_err("mkdir", &d, e)),
            }
        }
        return Ok(mine);
    }
}

/// rmdir `dir` after removing any child cgroups, retrying EBUSY while killed tasks exit.
fn remove_cgroup_dir(dir: &Path) -> Result<(), CgroupError> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_dir(&e.path())?;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut wait = Duration::from_millis(1);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(fsutil::io_err("rmdir", dir, e)),
        }
    }
}

fn read_procs(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let procs = fsutil::read(dir, "cgroup.procs")?;
    out.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    let rd = std::fs::read_dir(dir).map_err(|e| fsutil::io_err("readdir", dir, e))?;
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            read_procs(&e.path(), out)?;
        }
    }
    Ok(())
}

impl Cgroup {
    pub fn create(
        cgroups_path: Option<&Path>,
        id: &str,
        resources: Option<&LinuxResources>,
    ) -> Result<Cgroup, CgroupError> {
        let layout = mode::discover()?;
        let mut cg = Cgroup {
            state: CgroupState::default(),
        };
        match cg.create_in(&layout, cgroups_path, id, resources) {
            Ok(()) => Ok(cg),
            Err(e) => {
                let _ = cg.destroy();
                Err(e)
            }
        }
    }

    fn create_in(
        &mut self,
        layout: &mode::Layout,
        cgroups_path: Option<&Path>,
        id: &str,
        resources: Option<&LinuxResources>,
    ) -> Result<(), CgroupError> {
        let absolute = cgroups_path.is_some_and(Path::is_absolute);
        for h in &layout.hierarchies {
            let cgpath = paths::container_cgroup_path(&h.own, cgroups_path, id)?;
            let dir = paths::host_dir(&h.mount, &cgpath)?;
            let base = if absolute {
                h.mount.mount_point.clone()
            } else {
                paths::host_dir(&h.mount, &h.own)?
            };
            let created = mkdir_tracked(&dir, &mut self.state.dirs)?;
            if !h.mount.v2 && h.controllers.iter().any(|c| c == "cpuset") {
                // For a relative path every level from the base down, not only the ones made here: a shared
                // parent that a parallel create has just made may not have its cpus and mems yet, and a child
                // copied from it would start empty (ENOSPC when a task joins).
                let mut levels = Vec::new();
                if absolute {
                    levels.extend(created.iter().rev().cloned());
                } else {
                    let mut cur = Some(dir.as_path());
                    while let Some(p) = cur {
                        if p == base || !p.starts_with(&base) {
                            break;
                        }
                        levels.push(p.to_path_buf());
                        cur = p.parent();
                    }
                }
                for d in levels.iter().rev() {
                    v1::cpuset_init(d)?;
                }
            }
            let mut controllers = h.controllers.clone();
            if h.mount.v2 && layout.pure_v2 {
                // Enable everything the caller's cgroup offers so stats and later updates work.
                // If the caller's cgroup cannot delegate (it has processes), go on without:
                // resources that need a controller report it below.
                let _ = v2::enable_controllers(&base, &dir, &controllers);
                controllers = v2::controllers(&dir);
            }
            self.state.hierarchies.push(HierarchyState {
                version: if h.mount.v2 { 2 } else { 1 },
                controllers,
                path: dir,
                base,
                subdir: h.subdir.clone(),
                shared_parents: !absolute,
            });
        }
        if let Some(r) = resources {
            self.apply(r)?;
        }
        Ok(())
    }

    pub fn from_state(state: &CgroupState) -> Cgroup {
        Cgroup {
            state: state.clone(),
        }
    }

    pub fn state(&self) -> CgroupState {
        self.state.clone()
    }

    fn find(&self, controller: &str) -> Option<&HierarchyState> {
        // v1 first: in hybrid mode a controller present in both is driven through v1.
        self.state
            .hierarchies
            .iter()
            .find(|h| !h.v2() && h.controllers.iter().any(|c| c == controller))
            .or_else(|| {
                self.state
                    .hierarchies
                    .iter()
                    .find(|h| h.v2() && h.controllers.iter().any(|c| c == controller))
            })
    }

    fn v2_hierarchy(&self) -> Option<&HierarchyState> {
        self.state.hierarchies.iter().find(|h| h.v2())
    }

    fn pure_v2(&self) -> bool {
        self.state.hierarchies.len() == 1 && self.state.hierarchies[0].v2()
    }

    /// The hierarchy for `controller`, or Unsupported naming `field`.
    fn need(&self, controller: &str, field: &str) -> Result<&HierarchyState, CgroupError> {
        if let Some(h) = self.find(controller) {
            if h.v2() && !self.pure_v2() {
                // Hybrid: unified-only controllers are enabled on first use, so hosts that never
                // ask for them see no change to the caller's cgroup.subtree_control.
                v2::enable_controllers(&h.base, &h.path, &[controller.to_string()])?;
            }
            return Ok(h);
        }
        // Hybrid: the unified mount may offer it once enabled down the path (hugetlb here).
        if !self.pure_v2() {
            if let Some(h) = self.v2_hierarchy() {
                let offered = fsutil::read(&h.base, "cgroup.controllers").unwrap_or_default();
                let v1_has = self
                    .state
                    .hierarchies
                    .iter()
                    .any(|x| !x.v2() && x.controllers.iter().any(|c| c == controller));
                if !v1_has && offered.split_whitespace().any(|c| c == controller) {
                    v2::enable_controllers(&h.base, &h.path, &[controller.to_string()])?;
                    return Ok(h);
                }
            }
        }
        if let Some(h) = self.v2_hierarchy().filter(|_| self.pure_v2()) {
            let busy = h.path.parent() == Some(h.base.as_path())
                && fsutil::read(&h.base, "cgroup.procs").is_ok_and(|s| !s.trim().is_empty())
                && h.base
                    .parent()
                    .is_some_and(|p| p.join("cgroup.procs").exists());
            if busy {
                return Err(CgroupError::Unsupported(format!(
                    "{field}: {controller} controller not enabled for {}: the caller's cgroup {} has processes, so cgroup v2 (no internal processes rule) cannot delegate it; run from a cgroup without processes or use an absolute cgroupsPath",
                    h.path.display(),
                    h.base.display()
                )));
            }
        }
        Err(unsupported(field, controller))
    }

    fn apply(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        if let Some(m) = r.memory() {
            let any = m.limit().is_some_and(|v| v != 0)
                || m.reservation().is_some_and(|v| v != 0)
                || m.swap().is_some_and(|v| v != 0)
                || m.swappiness().is_some()
                || m.disable_oom_killer().is_some()
                || m.use_hierarchy().is_some();
            if any {
                let h = self.need("memory", "linux.resources.memory")?;
                if h.v2() {
                    v2::memory(&h.path, m)?
                } else {
                    v1::memory(&h.path, m)?
                }
            }
        }
        if let Some(c) = r.cpu() {
            let any = c.shares().is_some_and(|v| v != 0)
                || c.quota().is_some_and(|v| v != 0)
                || c.period().is_some_and(|v| v != 0)
                || c.burst().is_some()
                || c.idle().is_some()
                || c.realtime_period().is_some_and(|v| v != 0)
                || c.realtime_runtime().is_some_and(|v| v != 0);
            if any {
                let h = self.need("cpu", "linux.resources.cpu")?;
                if h.v2() {
                    v2::cpu(&h.path, c)?
                } else {
                    v1::cpu(&h.path, c)?
                }
            }
            if c.cpus().as_deref().is_some_and(|s| !s.is_empty())
                || c.mems().as_deref().is_some_and(|s| !s.is_empty())
            {
                let h = self.need("cpuset", "linux.resources.cpu.cpus/mems")?;
                // Same file names on v1 and v2.
                v1::cpuset(&h.path, c)?;
            }
        }
        if let Some(p) = r.pids().filter(|p| p.limit() != 0) {
            let h = self.need("pids", "linux.resources.pids")?;
            if h.v2() {
                v2::pids(&h.path, p.limit())?
            } else {
                v1::pids(&h.path, p.limit())?
            }
        }
        if let Some(b) = r.block_io() {
            let any = crate::set_weight(b.weight()).is_some()
                || crate::set_weight(b.leaf_weight()).is_some()
                || [
                    b.throttle_read_bps_device(),
                    b.throttle_write_bps_device(),
                    b.throttle_read_iops_device(),
                    b.throttle_write_iops_device(),
                ]
                .iter()
                .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()))
                || b.weight_device().as_ref().is_some_and(|l| !l.is_empty());
            if any {
                match self.find("blkio") {
                    Some(h) => v1::blkio(&h.path, b)?,
                    None => {
                        let h = self.need("io", "linux.resources.blockIO")?;
                        v2::io(&h.path, b)?
                    }
                }
            }
        }
        if let Some(l) = r.hugepage_limits().as_ref().filter(|l| !l.is_empty()) {
            let h = self.need("hugetlb", "linux.resources.hugepageLimits")?;
            if h.v2() {
                v2::hugetlb(&h.path, l)?
            } else {
                v1::hugetlb(&h.path, l)?
            }
        }
        if let Some(n) = r.network() {
            if let Some(id) = n.class_id() {
                let h = self.need("net_cls", "linux.resources.network.classID")?;
                if h.v2() {
                    return Err(unsupported("linux.resources.network.classID", "net_cls"));
                }
                v1::net_cls(&h.path, id)?;
            }
            if n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
                let h = self.need("net_prio", "linux.resources.network.priorities")?;
                if h.v2() {
                    return Err(unsupported(
                        "linux.resources.network.priorities",
                        "net_prio",
                    ));
                }
                v1::net_prio(&h.path, n)?;
            }
        }
        if let Some(rd) = r.rdma().as_ref().filter(|m| !m.is_empty()) {
            let h = self.need("rdma", "linux.resources.rdma")?;
            v1::rdma(&h.path, rd)?;
        }
        if let Some(list) = r.devices() {
            let rules = devices::evaluate(list)?;
            if let Some(h) = self.find("devices") {
                v1::devices(&h.path, &rules)?;
            } else if let Some(h) = self.v2_hierarchy() {
                devices_bpf::apply(&h.path, &rules)?;
            } else {
                return Err(unsupported("linux.resources.devices", "devices"));
            }
        }
        if let Some(u) = r.unified().as_ref().filter(|u| !u.is_empty()) {
            match self.v2_hierarchy().filter(|_| self.pure_v2()) {
                Some(h) => v2::unified(&h.path, u)?,
                None => {
                    return Err(CgroupError::Unsupported(
                        "linux.resources.unified: needs a pure cgroup v2 host".to_string(),
                    ))
                }
            }
        }
        Ok(())
    }

    /// Moves a process (and, for a new process, its future children) into the container's cgroups.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        let s = pid.to_string();
        for h in &self.state.hierarchies {
            fsutil::write(&h.path, "cgroup.procs", &s)?;
        }
        Ok(())
    }

    /// `update`: applies resources to a running container.
    pub fn update(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        self.apply(resources)
    }

    fn freezer(&self) -> Result<&HierarchyState, CgroupError> {
        self.find("freezer")
            .or_else(|| self.v2_hierarchy())
            .ok_or_else(|| unsupported("pause", "freezer"))
    }

    pub fn freeze(&self) -> Result<(), CgroupError> {
        let h = self.freezer()?;
        if h.v2() {
            v2::set_frozen(&h.path, true)
        } else {
            v1::freeze(&h.path)
        }
    }

    pub fn thaw(&self) -> Result<(), CgroupError> {
        let h = self.freezer()?;
        if h.v2() {
            v2::set_frozen(&h.path, false)
        } else {
            v1::thaw(&h.path)
        }
    }

    pub fn is_frozen(&self) -> bool {
        match self.freezer() {
            Ok(h) if h.v2() => v2::is_frozen(&h.path),
            Ok(h) => v1::freezer_state(&h.path).as_deref() == Some("FROZEN"),
            Err(_) => false,
        }
    }

    /// Every process in the container's cgroup tree.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let h = if self.pure_v2() {
            self.v2_hierarchy()
        } else {
            self.find("freezer")
                .or_else(|| self.find("pids"))
                .or_else(|| self.state.hierarchies.first())
        };
        let Some(h) = h else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        read_procs(&h.path, &mut out)?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// runc's `events --stats` data object (cpu, memory, pids, blkio, hugetlb), as containerd reads it.
    pub fn stats(&self) -> Result<serde_json::Value, CgroupError> {
        let find = |c: &str| -> Option<(&Path, bool)> {
            // cpu.stat exists on every v2 cgroup (core), even without the cpu controller.
            let h = self
                .find(c)
                .or_else(|| self.v2_hierarchy().filter(|_| c == "cpu" && self.pure_v2()))?;
            Some((h.path.as_path(), h.v2()))
        };
        Ok(stats::collect(&find))
    }

    /// Number of OOM kills in the container's memory cgroup so far.
    pub fn oom_kills(&self) -> u64 {
        self.find("memory")
            .map_or(0, |h| stats::oom_kills(&h.path, h.v2()))
    }

    /// Removes the container's cgroup directories (the caller has killed its processes). Missing is fine.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        // A frozen v1 cgroup keeps its (killed) tasks from exiting; thaw it first.
        if let Some(h) = self.find("freezer").filter(|h| !h.v2()) {
            if v1::freezer_state(&h.path).is_some_and(|s| s != "THAWED") {
                let _ = v1::thaw(&h.path);
            }
        }
        let mut first_err = None;
        let leaves: Vec<&PathBuf> = self.state.hierarchies.iter().map(|h| &h.path).collect();
        for d in self.state.dirs.iter().rev() {
            if leaves.contains(&d) {
                if let Err(e) = remove_cgroup_dir(d) {
                    first_err.get_or_insert(e);
                }
            } else {
                // A parent this container created may be shared by now: remove it only if it is empty.
                let _ = std::fs::remove_dir(d);
            }
        }
        // Parents between the container's cgroup and the base it was created under (the caller's own
        // cgroup for a relative cgroupsPath) may have been created by another container that is gone: the
        // last one out removes them when they are empty.
        for h in &self.state.hierarchies {
            if !h.shared_parents || !self.state.dirs.contains(&h.path) {
                continue;
            }
            let mut cur = h.path.parent();
            while let Some(p) = cur {
                if p == h.base || !p.starts_with(&h.base) || std::fs::remove_dir(p).is_err() {
                    break;
                }
                cur = p.parent();
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// How to mount the cgroup filesystem(s) at the container's /sys/fs/cgroup.
    pub fn mounts(&self, cgroupns: bool) -> Vec<CgroupMount> {
        self.state
            .hierarchies
            .iter()
            .map(|h| CgroupMount {
                subdir: h.subdir.clone(),
                source: if cgroupns {
                    CgroupMountSource::Fs {
                        fstype: if h.v2() { "cgroup2" } else { "cgroup" }.to_string(),
                        data: if h.v2() {
                            String::new()
                        } else {
                            h.controllers.join(",")
                        },
                    }
                } else {
                    CgroupMountSource::Bind(h.path.clone())
                },
            })
            .collect()
    }
}

/// The `linux.cgroup` object of `berth-runtime features`.
pub fn features() -> serde_json::Value {
    let layout = mode::discover().unwrap_or_default();
    let rdma = layout
        .hierarchies
        .iter()
        .any(|h| h.controllers.iter().any(|c| c == "rdma"));
    serde_json::json!({
        "v1": layout.has_v1(),
        "v2": layout.has_v2(),
        "systemd": false,
        "systemdUser": false,
        "rdma": rdma,
    })
}
