//! Where cgroup hierarchies are mounted and where a container's cgroup goes in each of them.
//!
//! Everything here is pure text processing over /proc/self/mountinfo and /proc/self/cgroup so
//! it can be unit-tested with sample input.

use std::path::{Component, Path, PathBuf};

use crate::CgroupError;

/// One cgroup filesystem mount from /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMountInfo {
    /// "major:minor" of the superblock: several mounts of one hierarchy share it.
    pub dev: String,
    /// The directory of the hierarchy that is mounted (not "/" for bind mounts or cgroupns views).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// true for cgroup2.
    pub v2: bool,
    /// Superblock options without rw/ro, e.g. ["cpu", "cpuacct"] or ["name=systemd"].
    pub options: Vec<String>,
}

/// Undoes mountinfo's octal escapes (\040 for a space, ...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// All cgroup and cgroup2 mounts, first mount of each superblock only, preferring mounts below
/// /sys/fs/cgroup (the canonical place) over bind mounts elsewhere.
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMountInfo> {
    let mut found: Vec<CgroupMountInfo> = Vec::new();
    for line in text.lines() {
        // id parent major:minor root mount_point opts [optional fields...] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let v2 = match r[0] {
            "cgroup" => false,
            "cgroup2" => true,
            _ => continue,
        };
        let m = CgroupMountInfo {
            dev: l[2].to_string(),
            root: PathBuf::from(unescape(l[3])),
            mount_point: PathBuf::from(unescape(l[4])),
            v2,
            options: r[2]
                .split(',')
                .filter(|o| *o != "rw" && *o != "ro" && !o.is_empty())
                .map(str::to_string)
                .collect(),
        };
        let canonical = |p: &Path| p.starts_with("/sys/fs/cgroup");
        match found.iter_mut().find(|f| f.dev == m.dev) {
            Some(f) if !canonical(&f.mount_point) && canonical(&m.mount_point) => *f = m,
            Some(_) => {}
            None => found.push(m),
        }
    }
    found
}

/// One line of /proc/self/cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnCgroup {
    /// Empty for the v2 line ("0::/...").
    pub controllers: Vec<String>,
    pub path: PathBuf,
}

pub fn parse_proc_cgroup(text: &str) -> Vec<OwnCgroup> {
    text.lines()
        .filter_map(|line| {
            let mut it = line.splitn(3, ':');
            let _id = it.next()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            Some(OwnCgroup {
                controllers: ctrls
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: PathBuf::from(path),
            })
        })
        .collect()
}

/// The cgroup path (relative to the hierarchy root, starting with "/") runc would use:
/// absent → `<own>/<id>`, relative → `<own>/<given>`, absolute → as given.
pub fn container_cgroup_path(
    own: &Path,
    cgroups_path: Option<&Path>,
    id: &str,
) -> Result<PathBuf, CgroupError> {
    let joined = match cgroups_path {
        None => {
            if id.is_empty() || id.contains('/') || id == "." || id == ".." {
                return Err(CgroupError::InvalidPath(format!(
                    "container id {id:?} is not usable as a cgroup name"
                )));
            }
            own.join(id)
        }
        Some(p) if p.is_absolute() => p.to_path_buf(),
        Some(p) => own.join(p),
    };
    let mut clean = PathBuf::from("/");
    for c in joined.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => clean.push(n),
            // Any ".." could leave the subtree the caller is allowed to manage; refuse it
            // outright instead of resolving it lexically.
            Component::ParentDir | Component::Prefix(_) => {
                return Err(CgroupError::InvalidPath(format!(
                    "cgroupsPath {:?} contains '..'",
                    cgroups_path.unwrap_or(Path::new(id))
                )))
            }
        }
    }
    if clean == Path::new("/") {
        return Err(CgroupError::InvalidPath(
            "cgroupsPath resolves to the hierarchy root".to_string(),
        ));
    }
    Ok(clean)
}

/// Host directory of `cgroup_path` in a hierarchy mounted at `mount` (whose mounted root is
/// `mount.root`, "/" unless we are ourselves inside a container's view).
pub fn host_dir(mount: &CgroupMountInfo, cgroup_path: &Path) -> Result<PathBuf, CgroupError> {
    let rel = cgroup_path.strip_prefix(&mount.root).map_err(|_| {
        CgroupError::InvalidPath(format!(
            "cgroup {} is outside the part {} of the hierarchy mounted at {}",
            cgroup_path.display(),
            mount.root.display(),
            mount.mount_point.display()
        ))
    })?;
    Ok(mount.mount_point.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:5 - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
99 23 0:32 /foo /mnt/mem\\040x rw - cgroup cgroup rw,memory
";

    #[test]
    fn mountinfo_hybrid() {
        let m = parse_mountinfo(HYBRID);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].options, vec!["cpu", "cpuacct"]);
        assert_eq!(
            m[0].mount_point,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(m[1].mount_point, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(m[2].options, vec!["xattr", "name=systemd"]);
        assert!(m[3].v2);
    }

    #[test]
    fn mountinfo_prefers_canonical_and_unescapes() {
        let text = "\
99 23 0:32 /foo /mnt/mem\\040x rw - cgroup cgroup rw,memory
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].mount_point, PathBuf::from("/sys/fs/cgroup/memory"));
        let only = parse_mountinfo(
            &text
                .lines()
                .next()
                .map(|l| format!("{l}\n"))
                .unwrap_or_default(),
        );
        assert_eq!(only[0].mount_point, PathBuf::from("/mnt/mem x"));
        assert_eq!(only[0].root, PathBuf::from("/foo"));
    }

    #[test]
    fn proc_cgroup() {
        let c = parse_proc_cgroup(
            "4:memory:/process_api/abc\n2:cpu,cpuacct:/\n1:name=systemd:/user.slice\n0::/x.scope\n",
        );
        assert_eq!(c[0].controllers, vec!["memory"]);
        assert_eq!(c[0].path, PathBuf::from("/process_api/abc"));
        assert_eq!(c[1].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(c[2].controllers, vec!["name=systemd"]);
        assert!(c[3].controllers.is_empty());
        assert_eq!(c[3].path, PathBuf::from("/x.scope"));
    }

    #[test]
    fn runc_path_rule() {
        let own = Path::new("/process_api/abc");
        let p = |cp: Option<&str>| container_cgroup_path(own, cp.map(Path::new), "ctr1");
        assert_eq!(p(None).ok(), Some(PathBuf::from("/process_api/abc/ctr1")));
        assert_eq!(
            p(Some("a/b")).ok(),
            Some(PathBuf::from("/process_api/abc/a/b"))
        );
        assert_eq!(p(Some("/abs/x")).ok(), Some(PathBuf::from("/abs/x")));
        assert_eq!(
            p(Some("./a//b/")).ok(),
            Some(PathBuf::from("/process_api/abc/a/b"))
        );
        assert!(p(Some("../escape")).is_err());
        assert!(p(Some("/a/../../b")).is_err());
        assert!(p(Some("/")).is_err());
        assert!(container_cgroup_path(own, None, "a/b").is_err());
        assert!(container_cgroup_path(own, None, "..").is_err());
    }

    #[test]
    fn host_dir_respects_mount_root() {
        let m = parse_mountinfo(HYBRID);
        let d = host_dir(&m[1], Path::new("/process_api/abc/c")).ok();
        assert_eq!(
            d,
            Some(PathBuf::from("/sys/fs/cgroup/memory/process_api/abc/c"))
        );
        let nested = CgroupMountInfo {
            root: PathBuf::from("/docker/x"),
            ..m[1].clone()
        };
        assert_eq!(
            host_dir(&nested, Path::new("/docker/x/c")).ok(),
            Some(PathBuf::from("/sys/fs/cgroup/memory/c"))
        );
        assert!(host_dir(&nested, Path::new("/other")).is_err());
    }
}
