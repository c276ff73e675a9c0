//! Which cgroup layout the host has (v1, hybrid or pure v2) and where each hierarchy is.

use std::path::{Path, PathBuf};

use crate::fsutil;
use crate::paths::{self, CgroupMountInfo};
use crate::CgroupError;

const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// A hierarchy the container will have a directory in.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub mount: CgroupMountInfo,
    /// v1: the hierarchy's controllers as /proc/self/cgroup names them ("name=systemd"
    /// included); v2: controllers this crate drives through the v2 hierarchy.
    pub controllers: Vec<String>,
    /// The caller's own cgroup in this hierarchy.
    pub own: PathBuf,
    /// Directory name under /sys/fs/cgroup used when showing it to the container.
    pub subdir: PathBuf,
}

#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub pure_v2: bool,
    pub hierarchies: Vec<Discovered>,
}

impl Layout {
    pub fn has_v1(&self) -> bool {
        self.hierarchies.iter().any(|h| !h.mount.v2)
    }
    pub fn has_v2(&self) -> bool {
        self.hierarchies.iter().any(|h| h.mount.v2)
    }
}

fn is_pure_v2(root: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs is plain-old-data; zeroed is a valid value for it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a valid out-pointer for the call.
    let r = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    r == 0 && st.f_type as i64 == CGROUP2_SUPER_MAGIC
}

/// Reads /proc/self/mountinfo, /proc/self/cgroup (once each) and statfs(/sys/fs/cgroup).
pub fn discover() -> Result<Layout, CgroupError> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| fsutil::io_err("read", Path::new("/proc/self/mountinfo"), e))?;
    let pc = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| fsutil::io_err("read", Path::new("/proc/self/cgroup"), e))?;
    let pure = is_pure_v2(Path::new("/sys/fs/cgroup"));
    let layout = from_text(&mi, &pc, pure, |dir| {
        fsutil::read(dir, "cgroup.controllers").unwrap_or_default()
    });
    if layout.hierarchies.is_empty() {
        return Err(CgroupError::Unsupported(
            "no cgroup hierarchy is mounted (see /proc/self/mountinfo)".to_string(),
        ));
    }
    Ok(layout)
}

/// mountinfo lists mounts in the order they were made: a later mount at the same place or above it hides an
/// earlier one (peer-ns.sh hides the hybrid cgroup2 mount that way). Keeps only the lines still visible.
fn visible_mounts(mountinfo: &str) -> String {
    let lines: Vec<&str> = mountinfo.lines().collect();
    fn point(l: &str) -> Option<&Path> {
        l.split(' ').nth(4).map(Path::new)
    }
    lines
        .iter()
        .enumerate()
        .filter(|(i, l)| {
            let Some(mp) = point(l) else { return false };
            !lines[i + 1..]
                .iter()
                .filter_map(|x| point(x))
                .any(|later| mp.starts_with(later))
        })
        .map(|(_, l)| format!("{l}\n"))
        .collect()
}

/// The pure part of `discover`; `controllers_of` reads a v2 directory's cgroup.controllers.
pub fn from_text(
    mountinfo: &str,
    proc_cgroup: &str,
    pure_v2: bool,
    controllers_of: impl Fn(&Path) -> String,
) -> Layout {
    let mounts = paths::parse_mountinfo(&visible_mounts(mountinfo));
    let own = paths::parse_proc_cgroup(proc_cgroup);
    let mut out = Layout {
        pure_v2,
        hierarchies: Vec::new(),
    };
    let v2_own = own
        .iter()
        .find(|o| o.controllers.is_empty())
        .map(|o| o.path.clone());
    let v2_mount = || {
        mounts.iter().filter(|m| m.v2).min_by_key(|m| {
            (
                m.mount_point != Path::new("/sys/fs/cgroup"),
                m.mount_point != Path::new("/sys/fs/cgroup/unified"),
            )
        })
    };
    if pure_v2 {
        if let (Some(m), Some(own)) = (v2_mount(), v2_own) {
            let dir = paths::host_dir(m, &own).unwrap_or_else(|_| m.mount_point.clone());
            out.hierarchies.push(Discovered {
                controllers: controllers_of(&dir)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect(),
                mount: m.clone(),
                own,
                subdir: PathBuf::new(),
            });
        }
        return out;
    }
    for o in own.iter().filter(|o| !o.controllers.is_empty()) {
        let Some(m) = mounts
            .iter()
            .find(|m| !m.v2 && o.controllers.iter().all(|c| m.options.contains(c)))
        else {
            continue; // a hierarchy the kernel has but nobody mounted
        };
        out.hierarchies.push(Discovered {
            mount: m.clone(),
            controllers: o.controllers.clone(),
            own: o.path.clone(),
            subdir: m
                .mount_point
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_default(),
        });
    }
    // Hybrid: the cgroup2 mount next to the v1 ones drives only what v1 does not have.
    if let (Some(m), Some(own)) = (v2_mount(), v2_own) {
        let v1: Vec<&String> = out
            .hierarchies
            .iter()
            .flat_map(|h| &h.controllers)
            .collect();
        let dir = paths::host_dir(m, &own).unwrap_or_else(|_| m.mount_point.clone());
        let controllers = controllers_of(&dir)
            .split_whitespace()
            .filter(|c| !v1.iter().any(|v| v.as_str() == *c))
            .map(str::to_string)
            .collect();
        out.hierarchies.push(Discovered {
            mount: m.clone(),
            controllers,
            own,
            subdir: m
                .mount_point
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_default(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const PC: &str =
        "4:memory:/process_api/abc\n2:cpu,cpuacct:/\n1:name=systemd:/\n3:pids:/\n0::/\n";

    #[test]
    fn hybrid_layout() {
        let l = from_text(MI, PC, false, |_| "memory hugetlb pids".to_string());
        assert!(!l.pure_v2);
        let names: Vec<String> = l
            .hierarchies
            .iter()
            .map(|h| h.controllers.join(","))
            .collect();
        // pids is not mounted, so it is skipped; v2 keeps what v1 lacks.
        assert_eq!(
            names,
            vec!["memory", "cpu,cpuacct", "name=systemd", "hugetlb,pids"]
        );
        assert_eq!(l.hierarchies[0].own, PathBuf::from("/process_api/abc"));
        assert_eq!(l.hierarchies[1].subdir, PathBuf::from("cpu,cpuacct"));
        assert_eq!(l.hierarchies[3].subdir, PathBuf::from("unified"));
    }

    #[test]
    fn covered_mounts_are_ignored() {
        // A tmpfs mounted over the unified hierarchy afterwards (as peer-ns.sh does) hides it.
        let mi = format!(
            "{}\n99 31 0:99 / /sys/fs/cgroup/unified rw - tmpfs tmpfs rw\n",
            MI.trim_end()
        );
        let l = from_text(&mi, PC, false, |_| "hugetlb".to_string());
        assert!(
            l.hierarchies.iter().all(|h| !h.mount.v2),
            "{:?}",
            l.hierarchies
        );
        assert!(!l.hierarchies.is_empty());
    }

    #[test]
    fn pure_v2_layout() {
        let mi = "25 21 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let l = from_text(mi, "0::/system.slice/x.scope\n", true, |d| {
            assert_eq!(d, Path::new("/sys/fs/cgroup/system.slice/x.scope"));
            "cpu memory".to_string()
        });
        assert_eq!(l.hierarchies.len(), 1);
        assert_eq!(l.hierarchies[0].controllers, vec!["cpu", "memory"]);
        assert_eq!(l.hierarchies[0].subdir, PathBuf::new());
    }
}
