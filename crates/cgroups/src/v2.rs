//! cgroup v2 (unified hierarchy): one directory, controllers enabled top-down.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory};

use crate::fsutil::{self, limit_str, write};
use crate::CgroupError;

/// Enables `controllers` in cgroup.subtree_control of every directory from `base` (the caller's
/// own cgroup, or the root for absolute paths) down to the parent of `leaf`, so that `leaf` gets
/// them. Only missing ones are written. Returns the first level that refused, with the error.
pub fn enable_controllers(
    base: &Path,
    leaf: &Path,
    controllers: &[String],
) -> Result<(), CgroupError> {
    if controllers.is_empty() {
        return Ok(());
    }
    let Ok(rel) = leaf.strip_prefix(base) else {
        return Ok(());
    };
    let mut dir = base.to_path_buf();
    for comp in rel.components() {
        let have = fsutil::read(&dir, "cgroup.subtree_control")?;
        let have: Vec<&str> = have.split_whitespace().collect();
        let missing: Vec<&String> = controllers
            .iter()
            .filter(|c| !have.contains(&c.as_str()))
            .collect();
        if !missing.is_empty() {
            let line = missing
                .iter()
                .map(|c| format!("+{c}"))
                .collect::<Vec<_>>()
                .join(" ");
            if let Err(all) = write(&dir, "cgroup.subtree_control", &line) {
                // One write enables all or none: a single controller the kernel refuses (or a transient
                // refusal while sibling cgroups come and go) must not cost the others. Try each alone;
                // report the first refusal once all were tried.
                let mut first = None;
                for c in &missing {
                    if let Err(e) = write(&dir, "cgroup.subtree_control", &format!("+{c}")) {
                        first.get_or_insert(e);
                    }
                }
                if let Some(e) = first
                    .or(Some(all))
                    .filter(|_| missing_after(&dir, &missing))
                {
                    return Err(hint(&dir, e));
                }
            }
        }
        dir.push(comp);
    }
    Ok(())
}

/// Whether any of `wanted` is still not enabled in `dir`'s cgroup.subtree_control.
fn missing_after(dir: &Path, wanted: &[&String]) -> bool {
    let have = fsutil::read(dir, "cgroup.subtree_control").unwrap_or_default();
    let have: Vec<&str> = have.split_whitespace().collect();
    wanted.iter().any(|c| !have.contains(&c.as_str()))
}

/// EBUSY from subtree_control is the "no internal processes" rule; say so.
fn hint(dir: &Path, e: CgroupError) -> CgroupError {
    match e {
        CgroupError::Io { source, path, .. } if source.raw_os_error() == Some(libc::EBUSY) => {
            CgroupError::Unsupported(format!(
                "cannot enable controllers in {}: {} has processes and cgroup v2 does not let a cgroup with processes delegate controllers (no internal processes rule); run the runtime from a cgroup without other processes or use an absolute cgroupsPath outside it",
                path.display(),
                dir.display()
            ))
        }
        e => e,
    }
}

/// The controllers `dir` actually has (its parent enabled for it).
pub fn controllers(dir: &Path) -> Vec<String> {
    fsutil::read(dir, "cgroup.controllers")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// runc's swap conversion: OCI swap is memory+swap, memory.swap.max is swap alone.
pub fn swap_value(swap: i64, memory: i64) -> Result<i64, CgroupError> {
    if memory == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    if memory == 0 || memory == -1 {
        return Err(CgroupError::Invalid(
            "linux.resources.memory.swap: a swap limit needs a memory limit on cgroup v2"
                .to_string(),
        ));
    }
    if swap < memory {
        return Err(CgroupError::Invalid(format!(
            "linux.resources.memory.swap: memory+swap limit {swap} is lower than the memory limit {memory}"
        )));
    }
    Ok(swap - memory)
}

pub fn memory(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    let limit = m.limit().unwrap_or(0);
    let swap = swap_value(m.swap().unwrap_or(0), limit)?;
    // runc: memory+swap equal to the memory limit (swap_value 0, which otherwise means "unset")
    // disables swap: memory.swap.max = 0.
    let no_swap = swap == 0 && m.swap().is_some_and(|s| s > 0);
    // swap.max first: lowering memory.max never fails, but swap may need to be lifted first.
    if swap != 0 || no_swap {
        if !dir.join("memory.swap.max").exists() {
            // Without swap accounting there is no swap to disable.
            if swap != -1 && !no_swap {
                return Err(CgroupError::Unsupported(format!(
                    "linux.resources.memory.swap: {} is missing (swap accounting is disabled)",
                    dir.join("memory.swap.max").display()
                )));
            }
        } else {
            write(dir, "memory.swap.max", &limit_str(swap, true))?;
        }
    }
    if limit != 0 {
        write(dir, "memory.max", &limit_str(limit, true))?;
    }
    if let Some(r) = m.reservation().filter(|v| *v != 0) {
        write(dir, "memory.low", &limit_str(r, true))?;
    }
    // swappiness, disableOOMKiller, useHierarchy and kernel limits have no v2 files; runc
    // ignores them too.
    Ok(())
}

/// runc's cpu.shares → cpu.weight mapping: a quadratic in log2(shares) that maps 2 → 1,
/// 1024 → 100 (both defaults) and 262144 → 10000.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    if shares <= 2 {
        return 1;
    }
    if shares >= 262_144 {
        return 10_000;
    }
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    10f64.powf(exponent).ceil() as u64
}

pub fn cpu(dir: &Path, c: &LinuxCpu) -> Result<(), CgroupError> {
    if c.realtime_period().is_some_and(|v| v != 0) || c.realtime_runtime().is_some_and(|v| v != 0) {
        return Err(CgroupError::Unsupported(
            "linux.resources.cpu.realtimePeriod/realtimeRuntime: not supported on cgroup v2"
                .to_string(),
        ));
    }
    if let Some(s) = c.shares().filter(|v| *v != 0) {
        write(dir, "cpu.weight", &shares_to_weight(s).to_string())?;
    }
    if let Some(i) = c.idle() {
        write(dir, "cpu.idle", &i.to_string())?;
    }
    let quota = c.quota().filter(|v| *v != 0);
    let period = c.period().filter(|v| *v != 0);
    if quota.is_some() || period.is_some() {
        let mut s = match quota {
            Some(q) if q > 0 => q.to_string(),
            _ => "max".to_string(),
        };
        if let Some(p) = period {
            s.push_str(&format!(" {p}"));
        }
        write(dir, "cpu.max", &s)?;
    }
    if let Some(b) = c.burst() {
        write(dir, "cpu.max.burst", &b.to_string())?;
    }
    Ok(())
}

pub fn pids(dir: &Path, limit: i64) -> Result<(), CgroupError> {
    write(dir, "pids.max", &limit_str(limit, true))
}

/// blkio weight (10..1000) → io.weight (1..10000), runc's linear mapping.
pub fn blkio_weight_to_io(w: u16) -> u64 {
    if w == 0 {
        return 0;
    }
    1 + (u64::from(w).saturating_sub(10)) * 9999 / 990
}

pub fn io(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let wants_weight = crate::set_weight(b.weight()).is_some()
        || b.weight_device()
            .as_ref()
            .is_some_and(|d| d.iter().any(|w| crate::set_weight(w.weight()).is_some()));
    // With BFQ, io.bfq.weight takes the blkio range unchanged; otherwise convert for io.weight.
    let bfq = wants_weight && dir.join("io.bfq.weight").exists();
    if wants_weight && !bfq && !dir.join("io.weight").exists() {
        return Err(CgroupError::Unsupported(format!(
            "linux.resources.blockIO.weight: neither io.bfq.weight nor io.weight in {}",
            dir.display()
        )));
    }
    let (file, conv): (&str, fn(u16) -> u64) = if bfq {
        ("io.bfq.weight", u64::from)
    } else {
        ("io.weight", blkio_weight_to_io)
    };
    if let Some(w) = crate::set_weight(b.weight()) {
        write(dir, file, &conv(w).to_string())?;
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = crate::set_weight(d.weight()) {
            write(
                dir,
                file,
                &format!("{}:{} {}", d.major(), d.minor(), conv(w)),
            )?;
        }
    }
    for (list, key) in [
        (b.throttle_read_bps_device(), "rbps"),
        (b.throttle_write_bps_device(), "wbps"),
        (b.throttle_read_iops_device(), "riops"),
        (b.throttle_write_iops_device(), "wiops"),
    ] {
        for t in list.iter().flatten() {
            let rate = if t.rate() == 0 {
                "max".to_string()
            } else {
                t.rate().to_string()
            };
            write(
                dir,
                "io.max",
                &format!("{}:{} {key}={rate}", t.major(), t.minor()),
            )?;
        }
    }
    Ok(())
}

pub fn hugetlb(dir: &Path, limits: &[LinuxHugepageLimit]) -> Result<(), CgroupError> {
    for l in limits {
        let file = format!("hugetlb.{}.max", l.page_size());
        if !dir.join(&file).exists() {
            return Err(CgroupError::Unsupported(format!(
                "linux.resources.hugepageLimits: page size {:?} not supported ({} missing)",
                l.page_size(),
                dir.join(&file).display()
            )));
        }
        let v = limit_str(l.limit(), true);
        // The reservation counter is what really bounds hugetlb use; set it where it exists.
        let rsvd = format!("hugetlb.{}.rsvd.max", l.page_size());
        if dir.join(&rsvd).exists() {
            write(dir, &rsvd, &v)?;
        }
        write(dir, &file, &v)?;
    }
    Ok(())
}

pub fn unified(dir: &Path, u: &HashMap<String, String>) -> Result<(), CgroupError> {
    for (k, v) in u {
        if k.is_empty() || k.contains('/') || k.starts_with('.') {
            return Err(CgroupError::Invalid(format!(
                "linux.resources.unified: invalid key {k:?}"
            )));
        }
        write(dir, k, v).map_err(|e| match e {
            // cgroupfs refuses to create files (EACCES), so a missing one is the usual cause.
            CgroupError::Io { path, .. } if !path.exists() => CgroupError::Unsupported(format!(
                "linux.resources.unified: {k}: {} does not exist (controller not enabled?)",
                path.display()
            )),
            e => e,
        })?;
    }
    Ok(())
}

pub fn is_frozen(dir: &Path) -> bool {
    fsutil::read(dir, "cgroup.freeze").is_ok_and(|s| s.trim() == "1")
}

fn wait_frozen(dir: &Path, want: u64) -> Result<(), CgroupError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if fsutil::kv_get(&fsutil::read_kv(dir, "cgroup.events"), "frozen") == Some(want) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CgroupError::Timeout(format!(
                "{} did not report frozen {want}",
                dir.join("cgroup.events").display()
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub fn set_frozen(dir: &Path, frozen: bool) -> Result<(), CgroupError> {
    if !dir.join("cgroup.freeze").exists() {
        return Err(CgroupError::Unsupported(format!(
            "freeze: {} missing (kernel older than 5.2)",
            dir.join("cgroup.freeze").display()
        )));
    }
    write(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
    let r = wait_frozen(dir, u64::from(frozen));
    if r.is_err() && frozen {
        let _ = write(dir, "cgroup.freeze", "0");
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_weight() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 100);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
        // monotonic
        let mut last = 0;
        for s in (2..262_144).step_by(997) {
            let w = shares_to_weight(s);
            assert!(w >= last);
            last = w;
        }
    }

    #[test]
    fn swap_conversion() {
        assert_eq!(swap_value(0, -1).ok(), Some(-1));
        assert_eq!(swap_value(-1, 100).ok(), Some(-1));
        assert_eq!(swap_value(0, 100).ok(), Some(0));
        assert_eq!(swap_value(300, 100).ok(), Some(200));
        assert!(swap_value(50, 100).is_err());
        assert!(swap_value(50, 0).is_err());
    }

    #[test]
    fn blkio_weight() {
        assert_eq!(blkio_weight_to_io(10), 1);
        assert_eq!(blkio_weight_to_io(1000), 10_000);
        assert_eq!(blkio_weight_to_io(500), 1 + 490 * 9999 / 990);
    }
}
