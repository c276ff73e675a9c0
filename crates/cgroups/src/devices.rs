//! The device allow-list as cgroup v1 evaluates it (runc's devices emulator).
//!
//! Both drivers go through this: v1 writes the resulting clean rules to devices.allow/deny, v2
//! compiles them into an eBPF program. Running the v1 semantics for v2 as well means a spec
//! behaves the same on both (including refusing to "punch holes" into wildcard rules, which v1
//! would silently ignore).

use std::collections::BTreeMap;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::CgroupError;

/// Device node type of an exception rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DevType {
    Block,
    Char,
}

impl DevType {
    pub fn letter(self) -> char {
        match self {
            DevType::Block => 'b',
            DevType::Char => 'c',
        }
    }
}

pub const ACC_MKNOD: u8 = 1;
pub const ACC_READ: u8 = 2;
pub const ACC_WRITE: u8 = 4;
pub const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// (type, major, minor); None = wildcard.
pub type DevMeta = (DevType, Option<u32>, Option<u32>);

/// An exception to the default action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevRule {
    pub meta: DevMeta,
    pub access: u8,
}

impl DevRule {
    /// "c 1:3 rwm" as devices.allow/deny take it.
    pub fn cgroup_string(&self) -> String {
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |v| v.to_string());
        format!(
            "{} {}:{} {}",
            self.meta.0.letter(),
            num(self.meta.1),
            num(self.meta.2),
            access_string(self.access)
        )
    }
}

pub fn access_string(a: u8) -> String {
    let mut s = String::new();
    if a & ACC_READ != 0 {
        s.push('r');
    }
    if a & ACC_WRITE != 0 {
        s.push('w');
    }
    if a & ACC_MKNOD != 0 {
        s.push('m');
    }
    s
}

/// Result of evaluating the spec's rules: a default and exceptions with the opposite action.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceRules {
    pub default_allow: bool,
    pub exceptions: Vec<DevRule>,
}

fn field_err(i: usize, msg: impl std::fmt::Display) -> CgroupError {
    CgroupError::Invalid(format!("linux.resources.devices[{i}]: {msg}"))
}

fn parse_access(i: usize, a: Option<&str>) -> Result<u8, CgroupError> {
    // runc treats an absent access as "rwm", like the kernel does for a bare "c 1:3".
    let a = a.unwrap_or("");
    if a.is_empty() {
        return Ok(ACC_ALL);
    }
    let mut v = 0;
    for c in a.chars() {
        v |= match c {
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            'm' => ACC_MKNOD,
            _ => return Err(field_err(i, format!("invalid access {a:?}"))),
        };
    }
    Ok(v)
}

fn num(i: usize, what: &str, v: Option<i64>) -> Result<Option<u32>, CgroupError> {
    match v {
        None => Ok(None),
        Some(n) if n < 0 => Ok(None), // runc uses -1 for the wildcard
        Some(n) => u32::try_from(n)
            .map(Some)
            .map_err(|_| field_err(i, format!("{what} {n} out of range"))),
    }
}

/// Evaluates the rules in order, as the v1 kernel code does; starts from deny-all.
pub fn evaluate(rules: &[LinuxDeviceCgroup]) -> Result<DeviceRules, CgroupError> {
    let mut default_allow = false;
    let mut ex: BTreeMap<DevMeta, u8> = BTreeMap::new();
    for (i, r) in rules.iter().enumerate() {
        let typ = match r.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => None,
            LinuxDeviceType::B => Some(DevType::Block),
            LinuxDeviceType::C | LinuxDeviceType::U => Some(DevType::Char),
            LinuxDeviceType::P => {
                return Err(field_err(
                    i,
                    "type \"p\" (FIFO) is not supported by the devices cgroup",
                ))
            }
        };
        let access = parse_access(i, r.access().as_deref())?;
        let Some(typ) = typ else {
            // Type "a" resets everything, whatever major/minor/access say (as in the kernel).
            default_allow = r.allow();
            ex.clear();
            continue;
        };
        let meta = (
            typ,
            num(i, "major", r.major())?,
            num(i, "minor", r.minor())?,
        );
        if r.allow() == default_allow {
            // Removing (part of) an exception.
            for partial in [(typ, None, None), (typ, None, meta.2), (typ, meta.1, None)] {
                if partial == meta {
                    continue;
                }
                if ex.get(&partial).is_some_and(|p| p & access != 0) {
                    return Err(field_err(
                        i,
                        format!(
                            "rule {} cannot punch a hole in the wildcard rule {} (not supported by the devices cgroup)",
                            DevRule { meta, access }.cgroup_string(),
                            DevRule { meta: partial, access: ex.get(&partial).copied().unwrap_or(0) }.cgroup_string()
                        ),
                    ));
                }
            }
            if let Some(p) = ex.get_mut(&meta) {
                *p &= !access;
                if *p == 0 {
                    ex.remove(&meta);
                }
            }
        } else {
            *ex.entry(meta).or_insert(0) |= access;
        }
    }
    Ok(DeviceRules {
        default_allow,
        exceptions: ex
            .into_iter()
            .map(|(meta, access)| DevRule { meta, access })
            .collect(),
    })
}

/// Lines for v1: the reset line for devices.allow/deny, then the exceptions for the other file.
pub fn v1_lines(rules: &DeviceRules) -> Vec<(&'static str, String)> {
    let (reset, other) = if rules.default_allow {
        ("devices.allow", "devices.deny")
    } else {
        ("devices.deny", "devices.allow")
    };
    let mut out = vec![(reset, "a".to_string())];
    out.extend(rules.exceptions.iter().map(|e| (other, e.cgroup_string())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).unwrap_or_default()
    }

    #[test]
    fn docker_like_allowlist() {
        let r = evaluate(&rules(
            r#"[{"allow":false,"access":"rwm"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"rwm"},
                {"allow":true,"type":"c","access":"m"},
                {"allow":true,"type":"c","major":1,"minor":3,"access":"r"}]"#,
        ))
        .ok();
        let r = r.as_ref();
        assert_eq!(r.map(|r| r.default_allow), Some(false));
        let lines: Vec<String> = r
            .map(|r| r.exceptions.iter().map(DevRule::cgroup_string).collect())
            .unwrap_or_default();
        assert_eq!(lines, vec!["c *:* m", "c 1:3 rwm"]);
    }

    #[test]
    fn empty_is_deny_all_and_allow_all_resets() {
        assert_eq!(evaluate(&[]).ok(), Some(DeviceRules::default()));
        let r = evaluate(&rules(
            r#"[{"allow":true,"type":"c","major":1,"minor":3},{"allow":true,"type":"a"},{"allow":false,"type":"b","major":8,"access":"w"}]"#,
        ))
        .ok();
        assert_eq!(r.as_ref().map(|r| r.default_allow), Some(true));
        assert_eq!(
            r.map(|r| r
                .exceptions
                .iter()
                .map(DevRule::cgroup_string)
                .collect::<Vec<_>>()),
            Some(vec!["b 8:* w".to_string()])
        );
    }

    #[test]
    fn deny_removes_exception_and_refuses_holes() {
        let r = evaluate(&rules(
            r#"[{"allow":true,"type":"c","major":1,"minor":3,"access":"rw"},{"allow":false,"type":"c","major":1,"minor":3,"access":"w"}]"#,
        ))
        .ok();
        assert_eq!(
            r.map(|r| r
                .exceptions
                .iter()
                .map(DevRule::cgroup_string)
                .collect::<Vec<_>>()),
            Some(vec!["c 1:3 r".to_string()])
        );
        assert!(evaluate(&rules(
            r#"[{"allow":true,"type":"c","access":"rwm"},{"allow":false,"type":"c","major":1,"minor":3,"access":"w"}]"#,
        ))
        .is_err());
        assert!(evaluate(&rules(r#"[{"allow":true,"type":"p"}]"#)).is_err());
    }

    #[test]
    fn v1_lines_order() {
        let r = DeviceRules {
            default_allow: false,
            exceptions: vec![DevRule {
                meta: (DevType::Char, Some(1), Some(3)),
                access: ACC_ALL,
            }],
        };
        assert_eq!(
            v1_lines(&r),
            vec![
                ("devices.deny", "a".to_string()),
                ("devices.allow", "c 1:3 rwm".to_string())
            ]
        );
    }
}
