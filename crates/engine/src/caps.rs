//! Capabilities as moby's daemon/caps.TweakCapabilities computes them.

use crate::spec::SpecError;

/// Every capability by number (CAP_CHECKPOINT_RESTORE = 40 is the last one Linux defines today).
pub const ALL: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// docker's default set (moby oci/caps/defaults.go), in its order.
pub const DEFAULT: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The capabilities this kernel knows (all of [`ALL`] up to /proc/sys/kernel/cap_last_cap) that berth itself
/// may still hand out (its bounding set): what a privileged container gets. docker takes the kernel's list
/// alone and then fails to start where its caller's bounding set is smaller; podman bounds it as here.
pub fn all_supported() -> Vec<String> {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(ALL.len() - 1);
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX);
    ALL.iter()
        .take(last.saturating_add(1))
        .enumerate()
        .filter(|(i, _)| *i >= 64 || bounding & (1u64 << i) != 0)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// "net_admin", "CAP_NET_ADMIN", "Net_Admin" => "CAP_NET_ADMIN"; "all" => "ALL".
fn normalize(names: &[String], flag: &str) -> Result<Vec<String>, SpecError> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        let up = n.trim().to_ascii_uppercase();
        let c = if up == "ALL" {
            up
        } else {
            let full = if up.starts_with("CAP_") {
                up
            } else {
                format!("CAP_{up}")
            };
            if !ALL.contains(&full.as_str()) {
                return Err(SpecError::Invalid(format!(
                    "unknown capability {n:?} in {flag}"
                )));
            }
            full
        };
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// The container's capability set (bounding = effective = permitted).
pub fn tweak(
    adds: &[String],
    drops: &[String],
    privileged: bool,
) -> Result<Vec<String>, SpecError> {
    let add = normalize(adds, "--cap-add")?;
    let drop = normalize(drops, "--cap-drop")?;
    if privileged {
        return Ok(all_supported());
    }
    let all = "ALL".to_string();
    let caps = if add.contains(&all) {
        all_supported()
            .into_iter()
            .filter(|c| !drop.contains(c))
            .collect()
    } else if drop.contains(&all) {
        add
    } else {
        let mut caps: Vec<String> = DEFAULT
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !drop.contains(c))
            .collect();
        for c in add {
            if !caps.contains(&c) {
                caps.push(c);
            }
        }
        caps
    };
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn mask(caps: &[String]) -> u64 {
        caps.iter()
            .map(|c| 1u64 << ALL.iter().position(|a| a == c).unwrap())
            .fold(0, |a, b| a | b)
    }

    #[test]
    fn default_set_is_dockers_mask() {
        let caps = tweak(&[], &[], false).unwrap();
        assert_eq!(caps, s(DEFAULT));
        assert_eq!(mask(&caps), 0xa80425fb);
    }

    #[test]
    fn add_and_drop_any_spelling() {
        let caps = tweak(
            &s(&["net_admin", "CAP_SYS_TIME"]),
            &s(&["Chown", "cap_kill"]),
            false,
        )
        .unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".into()) && caps.contains(&"CAP_SYS_TIME".into()));
        assert!(!caps.contains(&"CAP_CHOWN".into()) && !caps.contains(&"CAP_KILL".into()));
        assert_eq!(caps.len(), DEFAULT.len());
    }

    #[test]
    fn all_in_drop_keeps_only_adds() {
        let caps = tweak(&s(&["chown"]), &s(&["all"]), false).unwrap();
        assert_eq!(caps, s(&["CAP_CHOWN"]));
        assert!(tweak(&[], &s(&["ALL"]), false).unwrap().is_empty());
    }

    #[test]
    fn all_in_add_minus_drops() {
        let caps = tweak(&s(&["ALL"]), &s(&["sys_admin"]), false).unwrap();
        assert!(!caps.contains(&"CAP_SYS_ADMIN".into()));
        assert_eq!(caps.len(), all_supported().len() - 1);
    }

    #[test]
    fn privileged_gets_everything() {
        let caps = tweak(&[], &s(&["chown"]), true).unwrap();
        assert_eq!(caps, all_supported());
        assert!(caps.contains(&"CAP_CHOWN".into()));
    }

    #[test]
    fn unknown_names_the_flag() {
        let e = tweak(&s(&["CAP_FOO"]), &[], false).unwrap_err().to_string();
        assert_eq!(e, "unknown capability \"CAP_FOO\" in --cap-add");
        let e = tweak(&[], &s(&["bar"]), false).unwrap_err().to_string();
        assert_eq!(e, "unknown capability \"bar\" in --cap-drop");
    }
}
