//! cgroup v1 controllers: one directory per hierarchy, files named per controller.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxNetwork, LinuxRdma,
};

use crate::devices::{self, DeviceRules};
use crate::fsutil::{self, limit_str, write};
use crate::CgroupError;

pub fn memory(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    let limit = m.limit().filter(|v| *v != 0);
    let mut swap = m.swap().filter(|v| *v != 0);
    let has_memsw = || dir.join("memory.memsw.limit_in_bytes").exists();
    // runc: an unlimited memory limit without a swap value also lifts the memory+swap limit,
    // otherwise the kernel keeps memsw (which must be >= memory) at the old value.
    if limit == Some(-1) && swap.is_none() && has_memsw() {
        swap = Some(-1);
    }
    if let Some(s) = swap {
        if !has_memsw() {
            if s != -1 {
                return Err(CgroupError::Unsupported(format!(
                    "linux.resources.memory.swap: {} is missing (swap accounting is disabled)",
                    dir.join("memory.memsw.limit_in_bytes").display()
                )));
            }
            swap = None;
        }
    }
    match (limit, swap) {
        (Some(l), Some(s)) => {
            // memsw must stay >= memory at every step: raise memsw first when growing.
            let cur = fsutil::read_u64(dir, "memory.limit_in_bytes").unwrap_or(u64::MAX);
            if s == -1 || cur < s as u64 {
                write(dir, "memory.memsw.limit_in_bytes", &limit_str(s, false))?;
                write(dir, "memory.limit_in_bytes", &limit_str(l, false))?;
            } else {
                write(dir, "memory.limit_in_bytes", &limit_str(l, false))?;
                write(dir, "memory.memsw.limit_in_bytes", &limit_str(s, false))?;
            }
        }
        (Some(l), None) => write(dir, "memory.limit_in_bytes", &limit_str(l, false))?,
        (None, Some(s)) => write(dir, "memory.memsw.limit_in_bytes", &limit_str(s, false))?,
        (None, None) => {}
    }
    if let Some(r) = m.reservation().filter(|v| *v != 0) {
        write(dir, "memory.soft_limit_in_bytes", &limit_str(r, false))?;
    }
    if let Some(t) = m.kernel_tcp().filter(|v| *v != 0) {
        // Like runc: only where the kernel still has TCP kmem accounting.
        if dir.join("memory.kmem.tcp.limit_in_bytes").exists() {
            write(dir, "memory.kmem.tcp.limit_in_bytes", &limit_str(t, false))?;
        }
    }
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(CgroupError::Invalid(format!(
                "linux.resources.memory.swappiness: {s} is not in 0..=100"
            )));
        }
        write(dir, "memory.swappiness", &s.to_string())?;
    }
    if m.disable_oom_killer() == Some(true) {
        write(dir, "memory.oom_control", "1")?;
    }
    if let Some(h) = m.use_hierarchy() {
        write(dir, "memory.use_hierarchy", if h { "1" } else { "0" })?;
    }
    Ok(())
}

pub fn cpu(dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(s) = c.shares().filter(|v| *v != 0) {
        write(dir, "cpu.shares", &s.to_string())?;
    }
    let quota = c.quota().filter(|v| *v != 0);
    let mut period_pending = None;
    if let Some(p) = c.period().filter(|v| *v != 0) {
        match write(dir, "cpu.cfs_period_us", &p.to_string()) {
            Ok(()) => {}
            // A smaller period can be refused while the old quota/new period would exceed
            // the parent's; retry after the quota is written (runc does the same).
            Err(CgroupError::Io { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) && quota.is_some() =>
            {
                period_pending = Some(p)
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(b) = c.burst() {
        write(dir, "cpu.cfs_burst_us", &b.to_string())?;
    }
    if let Some(q) = quota {
        write(dir, "cpu.cfs_quota_us", &limit_str(q, false))?;
        if let Some(p) = period_pending {
            write(dir, "cpu.cfs_period_us", &p.to_string())?;
        }
    }
    // rt_runtime must fit the period, so the period goes first.
    if let Some(p) = c.realtime_period().filter(|v| *v != 0) {
        write(dir, "cpu.rt_period_us", &p.to_string())?;
    }
    if let Some(r) = c.realtime_runtime().filter(|v| *v != 0) {
        write(dir, "cpu.rt_runtime_us", &r.to_string())?;
    }
    if let Some(i) = c.idle() {
        write(dir, "cpu.idle", &i.to_string())?;
    }
    Ok(())
}

pub fn cpuset(dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        write(dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        write(dir, "cpuset.mems", mems)?;
    }
    Ok(())
}

/// A new v1 cpuset starts with empty cpus/mems and then refuses tasks; copy the parent's.
pub fn cpuset_init(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for f in ["cpuset.cpus", "cpuset.mems"] {
        if fsutil::read(dir, f)?.trim().is_empty() {
            let v = fsutil::read(parent, f)?;
            write(dir, f, v.trim())?;
        }
    }
    Ok(())
}

pub fn pids(dir: &Path, limit: i64) -> Result<(), CgroupError> {
    write(dir, "pids.max", &limit_str(limit, true))
}

pub fn blkio(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let wants_weight = crate::set_weight(b.weight()).is_some()
        || b.weight_device()
            .as_ref()
            .is_some_and(|d| d.iter().any(|w| crate::set_weight(w.weight()).is_some()));
    // BFQ exposes its own weight files; CFQ (old kernels) used the plain names.
    let (weight, weight_device) = if !wants_weight || dir.join("blkio.bfq.weight").exists() {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    } else if dir.join("blkio.weight").exists() {
        ("blkio.weight", "blkio.weight_device")
    } else {
        return Err(CgroupError::Unsupported(format!(
            "linux.resources.blockIO.weight: no blkio.bfq.weight or blkio.weight in {} (no BFQ/CFQ I/O scheduler)",
            dir.display()
        )));
    };
    if let Some(w) = crate::set_weight(b.weight()) {
        write(dir, weight, &w.to_string())?;
    }
    if let Some(w) = crate::set_weight(b.leaf_weight()) {
        write(dir, "blkio.leaf_weight", &w.to_string())?;
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = crate::set_weight(d.weight()) {
            write(
                dir,
                weight_device,
                &format!("{}:{} {}", d.major(), d.minor(), w),
            )?;
        }
        if let Some(w) = crate::set_weight(d.leaf_weight()) {
            write(
                dir,
                "blkio.leaf_weight_device",
                &format!("{}:{} {}", d.major(), d.minor(), w),
            )?;
        }
    }
    for (list, file) in [
        (
            b.throttle_read_bps_device(),
            "blkio.throttle.read_bps_device",
        ),
        (
            b.throttle_write_bps_device(),
            "blkio.throttle.write_bps_device",
        ),
        (
            b.throttle_read_iops_device(),
            "blkio.throttle.read_iops_device",
        ),
        (
            b.throttle_write_iops_device(),
            "blkio.throttle.write_iops_device",
        ),
    ] {
        for t in list.iter().flatten() {
            write(
                dir,
                file,
                &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            )?;
        }
    }
    Ok(())
}

pub fn hugetlb(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
    for l in limits {
        let file = format!("hugetlb.{}.limit_in_bytes", l.page_size());
        if !dir.join(&file).exists() {
            return Err(CgroupError::Unsupported(format!(
                "linux.resources.hugepageLimits: page size {:?} not supported by the kernel",
                l.page_size()
            )));
        }
        write(dir, &file, &limit_str(l.limit(), false))?;
    }
    Ok(())
}

pub fn net_cls(dir: &Path, class_id: u32) -> Result<(), CgroupError> {
    write(dir, "net_cls.classid", &class_id.to_string())
}

pub fn net_prio(dir: &Path, n: &LinuxNetwork) -> Result<(), CgroupError> {
    for p in n.priorities().iter().flatten() {
        write(
            dir,
            "net_prio.ifpriomap",
            &format!("{} {}", p.name(), p.priority()),
        )?;
    }
    Ok(())
}

/// rdma.max lines, shared with v2 (same format).
pub fn rdma(dir: &Path, r: &HashMap<String, LinuxRdma>) -> Result<(), CgroupError> {
    for (dev, l) in r {
        let mut line = dev.clone();
        if let Some(h) = l.hca_handles() {
            line.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = l.hca_objects() {
            line.push_str(&format!(" hca_object={o}"));
        }
        if line.len() > dev.len() {
            write(dir, "rdma.max", &line)?;
        }
    }
    Ok(())
}

pub fn devices(dir: &Path, rules: &DeviceRules) -> Result<(), CgroupError> {
    for (file, line) in devices::v1_lines(rules) {
        write(dir, file, &line)?;
    }
    Ok(())
}

pub fn freezer_state(dir: &Path) -> Option<String> {
    fsutil::read(dir, "freezer.state")
        .ok()
        .map(|s| s.trim().to_string())
}

pub fn freeze(dir: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // Writing FROZEN again nudges tasks that were stuck in FREEZING (e.g. in vfork).
        write(dir, "freezer.state", "FROZEN")?;
        if freezer_state(dir).as_deref() == Some("FROZEN") {
            return Ok(());
        }
        if Instant::now() > deadline {
            let _ = write(dir, "freezer.state", "THAWED");
            return Err(CgroupError::Timeout(format!(
                "{} did not reach FROZEN",
                dir.join("freezer.state").display()
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub fn thaw(dir: &Path) -> Result<(), CgroupError> {
    write(dir, "freezer.state", "THAWED")
}
