//! Seccomp: docker's default profile, adjusted for the container's capabilities as docker's profile does with
//! its `includes.caps` / `excludes.caps` rules, or a user's profile file.
//!
//! Checked against moby's profiles/seccomp/default.json as shipped in moby 26.x and 27.x (and in the later
//! 25.0.x releases, which got the same update through moby#47344): the 24.0-branch file (moby/moby commit
//! 00f3d189e420d485e42d15fe494f96d272284e0e) with moby#46762 (io_uring_* no longer allowed) and moby#47341
//! (cachestat, fchmodat2, map_shadow_stack, futex_wake, futex_wait, futex_requeue) applied. Later
//! additions (moby 28+ / moby/profiles: uretprobe, mseal, statmount, listmount, the *xattrat calls,
//! lsm_* for CAP_SYS_ADMIN, a socket-domain allow list) are not in it.

use std::path::Path;

use serde_json::{json, Value};

use crate::caps;
use crate::spec::SpecError;

/// docker's default profile, already rendered to an OCI LinuxSeccomp object for docker's default capability
/// set ([`caps::DEFAULT`]) on x86_64 (amd64 with the x86 and x32 sub-architectures; no includes/excludes
/// left in it). Its arch-only rules (arch_prctl, modify_ldt) are in; those for other architectures are not.
const DOCKER_DEFAULT: &str = include_str!("../../seccomp/profiles/docker-default.json");

/// moby's `includes.caps` rules, in default.json's order: the rule's syscalls are allowed only when the
/// container holds the capability. None of these rules carries args, `includes.arches` or `minKernel`.
/// Rules for a capability in [`caps::DEFAULT`] (only CAP_SYS_CHROOT) are already in [`DOCKER_DEFAULT`] and are
/// taken out again when that capability is dropped; the others are appended when it is added.
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
    ("CAP_SYS_CHROOT", &["chroot"]),
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

/// The syscalls of moby's one `minKernel` rule (4.8): allowed for every container on kernels from 4.8 on, where
/// ptrace can no longer be used to get around seccomp.
const MIN_KERNEL_4_8: &[&str] = &["process_vm_readv", "process_vm_writev", "ptrace"];

/// docker's default profile for a container holding `caps`.
pub fn default_profile(caps: &[String]) -> Result<Value, SpecError> {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|r| kernel_version(&r));
    render(caps, kernel)
}

/// `major.minor` of a kernel release string such as "6.8.0-45-generic".
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.trim().split(['.', '-', '+']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// The profile for `caps` on a kernel `kernel` (`None`: unknown, taken as new enough).
fn render(caps: &[String], kernel: Option<(u32, u32)>) -> Result<Value, SpecError> {
    let mut p: Value = serde_json::from_str(DOCKER_DEFAULT).map_err(|e| {
        SpecError::Invalid(format!("built-in seccomp profile is not valid JSON: {e}"))
    })?;
    let has = |c: &str| caps.iter().any(|x| x == c);
    // A plain allow rule (no args) for exactly `names`.
    let is_rule = |r: &Value, names: &[&str]| {
        r.get("args").is_none()
            && r["action"] == "SCMP_ACT_ALLOW"
            && r["names"].as_array().is_some_and(|a| {
                a.len() == names.len() && a.iter().zip(names).all(|(x, n)| x == *n)
            })
    };
    if let Some(rules) = p["syscalls"].as_array_mut() {
        if kernel.is_some_and(|k| k < (4, 8)) {
            rules.retain(|r| !is_rule(r, MIN_KERNEL_4_8));
        }
        if has("CAP_SYS_ADMIN") {
            // docker's `excludes: caps [CAP_SYS_ADMIN]`: the clone rule that masks out the namespace flags and
            // clone3's ENOSYS (the CAP_SYS_ADMIN rule allows both outright).
            rules.retain(|r| {
                let only = |n: &str| r["names"] == json!([n]);
                !((only("clone") && r.get("args").is_some())
                    || (only("clone3") && r["action"] == "SCMP_ACT_ERRNO"))
            });
        }
        for (cap, names) in BY_CAP {
            if caps::DEFAULT.contains(cap) {
                if !has(cap) {
                    rules.retain(|r| !is_rule(r, names));
                }
            } else if has(cap) {
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

    fn caps_with(add: &[&str], drop: &[&str]) -> Vec<String> {
        caps::DEFAULT
            .iter()
            .chain(add)
            .filter(|c| !drop.contains(c))
            .map(|c| c.to_string())
            .collect()
    }

    fn rules(p: &Value) -> &Vec<Value> {
        p["syscalls"].as_array().unwrap()
    }

    /// Allowed outright (a rule without args).
    fn allowed(p: &Value, name: &str) -> bool {
        rules(p).iter().any(|r| {
            r["action"] == "SCMP_ACT_ALLOW"
                && r.get("args").is_none()
                && r["names"].as_array().unwrap().iter().any(|n| n == name)
        })
    }

    fn rules_for<'a>(p: &'a Value, name: &str) -> Vec<&'a Value> {
        rules(p)
            .iter()
            .filter(|r| r["names"].as_array().unwrap().iter().any(|n| n == name))
            .collect()
    }

    #[test]
    fn default_profile_is_plain_oci() {
        let p = default_profile(&caps_with(&[], &[])).unwrap();
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["defaultErrnoRet"], 1);
        assert_eq!(
            p["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        assert!(allowed(&p, "read") && allowed(&p, "chroot"));
        assert!(!allowed(&p, "mount"));
        assert!(!allowed(&p, "clone"));
        let raw: Value = serde_json::from_str(DOCKER_DEFAULT).unwrap();
        for r in rules(&raw) {
            assert!(r.get("includes").is_none() && r.get("excludes").is_none());
        }
        // The default capability set leaves the rendered profile as it is.
        assert_eq!(p, raw);
    }

    #[test]
    fn rendered_profile_matches_moby() {
        let raw: Value = serde_json::from_str(DOCKER_DEFAULT).unwrap();
        let first = rules(&raw)[0]["names"].as_array().unwrap();
        assert_eq!(first.len(), 352);
        // moby 26 / 27 (and 25.0 after moby#47344): io_uring is out, the kernel 6.5 - 6.7 syscalls are in.
        for n in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
            assert!(!allowed(&raw, n) && rules_for(&raw, n).is_empty(), "{n}");
        }
        for n in [
            "cachestat",
            "fchmodat2",
            "map_shadow_stack",
            "futex_wake",
            "futex_wait",
            "futex_requeue",
            "futex_waitv",
            "memfd_secret",
        ] {
            assert!(allowed(&raw, n), "{n}");
        }
        // socket(2) except AF_VSOCK; personality only for the five values docker allows.
        assert_eq!(
            rules_for(&raw, "socket"),
            [&json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]})]
        );
        let personas: Vec<&Value> = rules_for(&raw, "personality")
            .iter()
            .map(|r| &r["args"][0]["value"])
            .collect();
        assert_eq!(
            personas,
            [0, 8, 0x20000, 0x20008, 0xffff_ffffu64]
                .map(|v| json!(v))
                .each_ref()
        );
        assert!(!allowed(&raw, "personality"));
        // A syscall of a capability outside docker's default set is not in the rendered profile, but for
        // ptrace and process_vm_*, which moby's minKernel 4.8 rule allows to everyone.
        for (cap, names) in BY_CAP {
            for n in *names {
                let expect = caps::DEFAULT.contains(cap) || MIN_KERNEL_4_8.contains(n);
                assert_eq!(allowed(&raw, n), expect, "{cap} {n}");
            }
        }
    }

    #[test]
    fn only_amd64_arch_rules() {
        let p = default_profile(&caps_with(&[], &[])).unwrap();
        // `includes.arches: [amd64, x32]` and `[amd64, x32, x86]`.
        assert!(allowed(&p, "arch_prctl") && allowed(&p, "modify_ldt"));
        // Rules for ppc64le, arm/arm64, s390/s390x and riscv64.
        for n in [
            "sync_file_range2",
            "swapcontext",
            "arm_fadvise64_64",
            "breakpoint",
            "cacheflush",
            "set_tls",
            "s390_runtime_instr",
            "riscv_flush_icache",
        ] {
            assert!(rules_for(&p, n).is_empty(), "{n}");
        }
        // The s390 clone rule (args index 1) is not there either: only the amd64 one.
        let clone = rules_for(&p, "clone");
        assert_eq!(clone.len(), 1);
        assert_eq!(
            clone[0]["args"][0],
            json!({"index": 0, "value": 0x7E02_0000u64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"})
        );
    }

    #[test]
    fn sys_admin_opens_mount_and_clone() {
        let p = default_profile(&caps_with(&["CAP_SYS_ADMIN"], &[])).unwrap();
        for n in [
            "mount", "clone", "clone3", "unshare", "setns", "bpf", "syslog",
        ] {
            assert!(allowed(&p, n), "{n}");
        }
        // The masked clone rule and clone3's ENOSYS are gone.
        assert!(!rules(&p)
            .iter()
            .any(|r| r.get("args").is_some() && r["names"] == json!(["clone"])));
        assert!(!rules(&p).iter().any(|r| r["action"] == "SCMP_ACT_ERRNO"));
        let d = default_profile(&caps_with(&[], &[])).unwrap();
        // Two rules out, one in.
        assert_eq!(rules(&d).len(), rules(&p).len() + 1);
        assert!(rules(&d).iter().any(|r| r["names"] == json!(["clone3"])
            && r["action"] == "SCMP_ACT_ERRNO"
            && r["errnoRet"] == 38));
    }

    #[test]
    fn sys_ptrace_adds_its_rule() {
        let d = default_profile(&caps_with(&[], &[])).unwrap();
        let p = default_profile(&caps_with(&["CAP_SYS_PTRACE"], &[])).unwrap();
        assert_eq!(
            rules(&p).last().unwrap(),
            &json!({"names": ["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv",
                "process_vm_writev", "ptrace"], "action": "SCMP_ACT_ALLOW"})
        );
        for n in ["kcmp", "pidfd_getfd", "process_madvise"] {
            assert!(allowed(&p, n) && !allowed(&d, n), "{n}");
        }
        for n in ["ptrace", "process_vm_readv"] {
            assert!(allowed(&p, n) && allowed(&d, n), "{n}");
        }
    }

    #[test]
    fn every_added_capability_allows_its_syscalls() {
        let d = default_profile(&caps_with(&[], &[])).unwrap();
        for (cap, names) in BY_CAP.iter().filter(|(c, _)| !caps::DEFAULT.contains(c)) {
            let p = default_profile(&caps_with(&[cap], &[])).unwrap();
            // One rule more (CAP_SYS_ADMIN also takes out the two it excludes).
            let more = if *cap == "CAP_SYS_ADMIN" { -1 } else { 1 };
            assert_eq!(
                rules(&p).len() as isize,
                rules(&d).len() as isize + more,
                "{cap}"
            );
            for n in *names {
                assert!(allowed(&p, n), "{cap} {n}");
            }
        }
        let p = default_profile(&caps_with(&["CAP_SYS_TIME", "CAP_SYS_NICE"], &[])).unwrap();
        for n in ["clock_settime64", "set_mempolicy_home_node"] {
            assert!(allowed(&p, n) && !allowed(&d, n), "{n}");
        }
    }

    #[test]
    fn dropping_sys_chroot_takes_chroot_out() {
        let p = default_profile(&caps_with(&[], &["CAP_SYS_CHROOT"])).unwrap();
        assert!(!allowed(&p, "chroot") && rules_for(&p, "chroot").is_empty());
        let d = default_profile(&caps_with(&[], &[])).unwrap();
        assert_eq!(rules(&p).len(), rules(&d).len() - 1);
        // Dropping a capability no rule depends on changes nothing.
        assert_eq!(
            default_profile(&caps_with(&[], &["CAP_NET_RAW"])).unwrap(),
            d
        );
    }

    #[test]
    fn ptrace_needs_kernel_4_8() {
        let caps = caps_with(&[], &[]);
        assert_eq!(kernel_version("6.8.0-45-generic\n"), Some((6, 8)));
        assert_eq!(kernel_version("4.19.112+"), Some((4, 19)));
        assert_eq!(kernel_version("5.4-rc1"), Some((5, 4)));
        assert_eq!(kernel_version("nonsense"), None);
        let old = render(&caps, Some((4, 4))).unwrap();
        assert!(!allowed(&old, "ptrace") && !allowed(&old, "process_vm_writev"));
        for k in [Some((4, 8)), Some((6, 1)), None] {
            assert!(allowed(&render(&caps, k).unwrap(), "ptrace"), "{k:?}");
        }
        // CAP_SYS_PTRACE still allows them on an old kernel.
        let old = render(&caps_with(&["CAP_SYS_PTRACE"], &[]), Some((4, 4))).unwrap();
        assert!(allowed(&old, "ptrace"));
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
