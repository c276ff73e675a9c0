//! The mounts of a docker container: moby's oci/defaults.go set, then the user's binds, volumes and
//! tmpfs mounts (which replace defaults at the same destination), as daemon/oci_linux.go WithMounts.

use std::path::Path;

use serde_json::{json, Value};

use crate::spec::{MountSpec, SpecError};

pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Where `--init` puts the init binary (docker's path).
pub const INIT_PATH: &str = "/sbin/docker-init";

pub fn defaults(privileged: bool) -> Vec<Value> {
    let sys_ro = if privileged { "rw" } else { "ro" };
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", sys_ro]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": [sys_ro, "nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]}),
    ]
}

fn clean_dst(dst: &str, what: &str) -> Result<String, SpecError> {
    if !dst.starts_with('/') {
        return Err(SpecError::Invalid(format!(
            "{what} destination {dst:?}: must be an absolute path"
        )));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in dst.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(SpecError::Invalid(format!(
            "{what} destination {dst:?}: can't be '/'"
        )));
    }
    Ok(format!("/{}", parts.join("/")))
}

fn bind(src: &Path, dst: &str, readonly: bool, what: &str) -> Result<Value, SpecError> {
    if !src.is_absolute() {
        return Err(SpecError::Invalid(format!(
            "{what} source {:?}: must be an absolute path",
            src.display().to_string()
        )));
    }
    let mut options = vec!["rbind", "rprivate"];
    if readonly {
        options.push("ro");
    }
    Ok(json!({
        "destination": clean_dst(dst, what)?,
        "type": "bind",
        "source": src,
        "options": options,
    }))
}

fn user_mount(m: &MountSpec) -> Result<Value, SpecError> {
    match m {
        MountSpec::Bind { src, dst, readonly } => bind(src, dst, *readonly, "bind mount"),
        MountSpec::Volume {
            host_dir,
            dst,
            readonly,
        } => bind(host_dir, dst, *readonly, "volume"),
        MountSpec::Tmpfs { dst, size, mode } => {
            let mut options = vec![
                "nosuid".to_string(),
                "nodev".to_string(),
                "noexec".to_string(),
            ];
            if let Some(s) = size {
                if *s < 0 {
                    return Err(SpecError::Invalid(format!(
                        "--tmpfs {dst}: size {s} must not be negative"
                    )));
                }
                options.push(format!("size={s}"));
            }
            if let Some(m) = mode {
                if *m > 0o7777 {
                    return Err(SpecError::Invalid(format!(
                        "--tmpfs {dst}: mode {m:o} is not a file mode"
                    )));
                }
                options.push(format!("mode={m:o}"));
            }
            Ok(json!({
                "destination": clean_dst(dst, "tmpfs")?,
                "type": "tmpfs",
                "source": "tmpfs",
                "options": options,
            }))
        }
    }
}

fn depth(m: &Value) -> usize {
    m["destination"]
        .as_str()
        .map(|d| d.split('/').filter(|c| !c.is_empty()).count())
        .unwrap_or(0)
}

/// The container's mounts: defaults not overridden by a user mount (a user /dev drops /dev/*), then the
/// user's mounts, parents before children, then the init binary.
pub fn all(
    privileged: bool,
    read_only: bool,
    user: &[MountSpec],
    init: Option<&Path>,
) -> Result<Vec<Value>, SpecError> {
    let mut mine: Vec<Value> = user.iter().map(user_mount).collect::<Result<_, _>>()?;
    if let Some(init) = init {
        mine.push(bind(init, INIT_PATH, true, "--init binary")?);
    }
    let mut seen = std::collections::BTreeSet::new();
    for m in &mine {
        let d = m["destination"].as_str().unwrap_or_default().to_string();
        if !seen.insert(d.clone()) {
            return Err(SpecError::Invalid(format!("duplicate mount point: {d}")));
        }
    }
    // docker sorts user mounts by depth (stable) so a parent is mounted before what goes inside it.
    mine.sort_by_key(depth);
    let user_dev = seen.contains("/dev");
    let mut out: Vec<Value> = defaults(privileged)
        .into_iter()
        .filter(|m| {
            let d = m["destination"].as_str().unwrap_or_default();
            let replaced = seen.contains(d) || (user_dev && d.starts_with("/dev/"));
            !replaced
        })
        .collect();
    if read_only {
        // --read-only: everything but the kernel's own per-container filesystems is read-only too.
        for m in out.iter_mut() {
            let d = m["destination"].as_str().unwrap_or_default();
            if ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"].contains(&d) {
                continue;
            }
            if let Some(opts) = m["options"].as_array_mut() {
                opts.retain(|o| o != "rw");
                if !opts.iter().any(|o| o == "ro") {
                    opts.push(json!("ro"));
                }
            }
        }
    }
    out.extend(mine);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn dests(v: &[Value]) -> Vec<&str> {
        v.iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect()
    }

    fn find<'a>(v: &'a [Value], d: &str) -> &'a Value {
        v.iter().find(|m| m["destination"] == d).unwrap()
    }

    #[test]
    fn defaults_are_dockers() {
        let m = all(false, false, &[], None).unwrap();
        assert_eq!(
            dests(&m),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm"
            ]
        );
        assert_eq!(
            find(&m, "/dev/shm")["options"],
            json!(["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"])
        );
        assert!(find(&m, "/sys")["options"]
            .as_array()
            .unwrap()
            .contains(&json!("ro")));
        assert!(find(&m, "/sys/fs/cgroup")["options"]
            .as_array()
            .unwrap()
            .contains(&json!("ro")));
        let p = all(true, false, &[], None).unwrap();
        assert!(!find(&p, "/sys")["options"]
            .as_array()
            .unwrap()
            .contains(&json!("ro")));
        assert!(!find(&p, "/sys/fs/cgroup")["options"]
            .as_array()
            .unwrap()
            .contains(&json!("ro")));
    }

    #[test]
    fn user_mounts_override_and_sort() {
        let user = vec![
            MountSpec::Bind {
                src: "/host/a/b".into(),
                dst: "/data/sub".into(),
                readonly: true,
            },
            MountSpec::Volume {
                host_dir: "/var/lib/berth/volumes/v/_data".into(),
                dst: "/data/".into(),
                readonly: false,
            },
            MountSpec::Tmpfs {
                dst: "/dev/shm".into(),
                size: Some(1 << 20),
                mode: Some(0o1777),
            },
        ];
        let m = all(
            false,
            false,
            &user,
            Some(Path::new("/usr/libexec/berth-init")),
        )
        .unwrap();
        assert_eq!(
            dests(&m),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/data",
                "/data/sub",
                "/dev/shm",
                "/sbin/docker-init"
            ]
        );
        assert_eq!(
            find(&m, "/data/sub"),
            &json!({"destination": "/data/sub", "type": "bind", "source": "/host/a/b", "options": ["rbind", "rprivate", "ro"]})
        );
        assert_eq!(find(&m, "/data")["options"], json!(["rbind", "rprivate"]));
        assert_eq!(
            find(&m, "/dev/shm"),
            &json!({"destination": "/dev/shm", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "noexec", "size=1048576", "mode=1777"]})
        );
        assert_eq!(
            find(&m, INIT_PATH)["options"],
            json!(["rbind", "rprivate", "ro"])
        );
    }

    #[test]
    fn user_dev_drops_dev_submounts() {
        let user = vec![MountSpec::Bind {
            src: "/dev".into(),
            dst: "/dev".into(),
            readonly: false,
        }];
        let m = all(false, false, &user, None).unwrap();
        assert_eq!(dests(&m), ["/proc", "/sys", "/sys/fs/cgroup", "/dev"]);
    }

    #[test]
    fn read_only_makes_sys_ro_even_privileged() {
        let m = all(true, true, &[], None).unwrap();
        let o = find(&m, "/sys")["options"].as_array().unwrap().clone();
        assert!(o.contains(&json!("ro")) && !o.contains(&json!("rw")));
        assert!(!find(&m, "/dev/shm")["options"]
            .as_array()
            .unwrap()
            .contains(&json!("ro")));
    }

    #[test]
    fn bad_mounts() {
        let rel = MountSpec::Bind {
            src: PathBuf::from("rel"),
            dst: "/x".into(),
            readonly: false,
        };
        assert!(all(false, false, &[rel], None)
            .unwrap_err()
            .to_string()
            .contains("absolute"));
        let root = MountSpec::Tmpfs {
            dst: "/".into(),
            size: None,
            mode: None,
        };
        assert!(all(false, false, &[root], None)
            .unwrap_err()
            .to_string()
            .contains("'/'"));
        let reldst = MountSpec::Tmpfs {
            dst: "x".into(),
            size: None,
            mode: None,
        };
        assert!(all(false, false, &[reldst], None).is_err());
        let dup = vec![
            MountSpec::Tmpfs {
                dst: "/x".into(),
                size: None,
                mode: None,
            },
            MountSpec::Tmpfs {
                dst: "/x/".into(),
                size: None,
                mode: None,
            },
        ];
        assert!(all(false, false, &dup, None)
            .unwrap_err()
            .to_string()
            .contains("duplicate"));
    }
}
