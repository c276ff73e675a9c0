//! Seccomp: docker's default profile, adjusted for added capabilities as docker's profile does with its
//! `includes.caps` / `excludes.caps` rules, or a user's profile file.

use std::path::Path;

use serde_json::{json, Value};

use crate::spec::SpecError;

/// docker's default profile, already rendered to an OCI LinuxSeccomp object for the default capability set
/// on x86_64 (no includes/excludes left in it).
const DOCKER_DEFAULT: &str = include_str!("../../seccomp/profiles/docker-default.json");

/// Syscalls moby's default.json allows only when the container holds a capability beyond the default set.
const BY_CAP: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// docker's default profile for a container holding `caps`.
pub fn default_profile(caps: &[String]) -> Result<Value, SpecError> {
    let mut p: Value = serde_json::from_str(DOCKER_DEFAULT).map_err(|e| {
        SpecError::Invalid(format!("built-in seccomp profile is not valid JSON: {e}"))
    })?;
    let has = |c: &str| caps.iter().any(|x| x == c);
    if let Some(rules) = p["syscalls"].as_array_mut() {
        if has("CAP_SYS_ADMIN") {
            // The masked clone rule and clone3's ENOSYS are docker's `excludes: caps [CAP_SYS_ADMIN]`.
            rules.retain(|r| {
                let names = r["names"].as_array();
                let only = |n: &str| names.is_some_and(|a| a.len() == 1 && a[0] == n);
                !((only("clone") && r.get("args").is_some()) || only("clone3"))
            });
        }
        for (cap, names) in BY_CAP {
            if has(cap) {
                rules.push(json!({"names": names, "action": "SCMP_ACT_ALLOW"}));
            }
        }
    }
    Ok(p)
}

/// A user's profile: an OCI LinuxSeccomp object (docker's own format with includes/excludes is not
/// rendered here; such files are refused with a clear message).
pub fn load_file(path: &Path) -> Result<Value, SpecError> {
    let bad = |msg: String| {
        SpecError::Invalid(format!("--security-opt seccomp={}: {msg}", path.display()))
    };
    let data = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let v: Value = serde_json::from_slice(&data).map_err(|e| bad(format!("invalid JSON: {e}")))?;
    if !v.is_object() {
        return Err(bad("not a JSON object".into()));
    }
    if v.get("defaultAction").and_then(Value::as_str).is_none() {
        return Err(bad("defaultAction: missing or not a string".into()));
    }
    if let Some(rules) = v.get("syscalls").and_then(Value::as_array) {
        for (i, r) in rules.iter().enumerate() {
            if r.get("includes").is_some() || r.get("excludes").is_some() {
                return Err(bad(format!(
                    "syscalls[{i}]: includes/excludes (docker's profile template) are not supported yet"
                )));
            }
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(p: &Value, name: &str) -> bool {
        p["syscalls"].as_array().unwrap().iter().any(|r| {
            r["action"] == "SCMP_ACT_ALLOW"
                && r.get("args").is_none()
                && r["names"].as_array().unwrap().iter().any(|n| n == name)
        })
    }

    #[test]
    fn default_profile_is_plain_oci() {
        let p = default_profile(&[]).unwrap();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert!(allowed(&p, "read"));
        assert!(!allowed(&p, "mount"));
        assert!(!allowed(&p, "clone"));
        let raw: Value = serde_json::from_str(DOCKER_DEFAULT).unwrap();
        for r in raw["syscalls"].as_array().unwrap() {
            assert!(r.get("includes").is_none() && r.get("excludes").is_none());
        }
    }

    #[test]
    fn sys_admin_opens_mount_and_clone() {
        let p = default_profile(&["CAP_SYS_ADMIN".into()]).unwrap();
        assert!(allowed(&p, "mount") && allowed(&p, "clone") && allowed(&p, "unshare"));
        let rules = p["syscalls"].as_array().unwrap();
        assert!(!rules.iter().any(|r| r["names"] == json!(["clone3"])));
    }

    #[test]
    fn file_errors_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("p.json");
        std::fs::write(&f, "{ nope").unwrap();
        let e = load_file(&f).unwrap_err().to_string();
        assert!(
            e.contains(&f.display().to_string()) && e.contains("invalid JSON"),
            "{e}"
        );
        let e = load_file(&d.path().join("missing.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.json"), "{e}");
        std::fs::write(&f, r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}"#).unwrap();
        assert_eq!(load_file(&f).unwrap()["defaultAction"], "SCMP_ACT_ALLOW");
        std::fs::write(&f, r#"{"syscalls": []}"#).unwrap();
        assert!(load_file(&f)
            .unwrap_err()
            .to_string()
            .contains("defaultAction"));
    }
}
