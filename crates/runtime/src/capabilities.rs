//! The five capability sets of a process: bounding is trimmed with PR_CAPBSET_DROP while the runtime still has
//! CAP_SETPCAP, the rest are set with capset(2) after the uid switch, ambient raised last.

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

pub fn number(c: Capability) -> u32 {
    use Capability::*;
    match c {
        Chown => 0,
        DacOverride => 1,
        DacReadSearch => 2,
        Fowner => 3,
        Fsetid => 4,
        Kill => 5,
        Setgid => 6,
        Setuid => 7,
        Setpcap => 8,
        LinuxImmutable => 9,
        NetBindService => 10,
        NetBroadcast => 11,
        NetAdmin => 12,
        NetRaw => 13,
        IpcLock => 14,
        IpcOwner => 15,
        SysModule => 16,
        SysRawio => 17,
        SysChroot => 18,
        SysPtrace => 19,
        SysPacct => 20,
        SysAdmin => 21,
        SysBoot => 22,
        SysNice => 23,
        SysResource => 24,
        SysTime => 25,
        SysTtyConfig => 26,
        Mknod => 27,
        Lease => 28,
        AuditWrite => 29,
        AuditControl => 30,
        Setfcap => 31,
        MacOverride => 32,
        MacAdmin => 33,
        Syslog => 34,
        WakeAlarm => 35,
        BlockSuspend => 36,
        AuditRead => 37,
        Perfmon => 38,
        Bpf => 39,
        CheckpointRestore => 40,
    }
}

/// Every capability name berth knows, for `features`.
pub fn all_names() -> Vec<String> {
    let mut v: Vec<(u32, String)> = ALL
        .iter()
        .map(|c| (number(*c), format!("CAP_{c}")))
        .collect();
    v.sort();
    v.into_iter().map(|(_, n)| n).collect()
}

const ALL: [Capability; 41] = {
    use Capability::*;
    [
        Chown,
        DacOverride,
        DacReadSearch,
        Fowner,
        Fsetid,
        Kill,
        Setgid,
        Setuid,
        Setpcap,
        LinuxImmutable,
        NetBindService,
        NetBroadcast,
        NetAdmin,
        NetRaw,
        IpcLock,
        IpcOwner,
        SysModule,
        SysRawio,
        SysChroot,
        SysPtrace,
        SysPacct,
        SysAdmin,
        SysBoot,
        SysNice,
        SysResource,
        SysTime,
        SysTtyConfig,
        Mknod,
        Lease,
        AuditWrite,
        AuditControl,
        Setfcap,
        MacOverride,
        MacAdmin,
        Syslog,
        WakeAlarm,
        BlockSuspend,
        AuditRead,
        Perfmon,
        Bpf,
        CheckpointRestore,
    ]
};

fn mask(set: &Option<Capabilities>) -> u64 {
    set.as_ref()
        .map(|s| s.iter().fold(0u64, |m, c| m | (1u64 << number(*c))))
        .unwrap_or(0)
}

/// The highest capability this kernel knows (from /proc/sys/kernel/cap_last_cap).
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Masks computed once, before the uid switch, so nothing is parsed in between.
#[derive(Debug, Clone, Copy)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
    last: u32,
}

impl CapSets {
    pub fn from_spec(caps: Option<&LinuxCapabilities>) -> CapSets {
        match caps {
            Some(c) => CapSets {
                bounding: mask(c.bounding()),
                effective: mask(c.effective()),
                permitted: mask(c.permitted()),
                inheritable: mask(c.inheritable()),
                ambient: mask(c.ambient()),
                last: last_cap(),
            },
            // No capabilities object: the process gets none (runc does the same).
            None => CapSets {
                bounding: 0,
                effective: 0,
                permitted: 0,
                inheritable: 0,
                ambient: 0,
                last: last_cap(),
            },
        }
    }

    /// Drops from the bounding set everything not listed. Needs CAP_SETPCAP, so it runs before the uid switch.
    pub fn drop_bounding(&self) -> std::io::Result<()> {
        for cap in 0..=self.last {
            if self.bounding & (1 << cap) == 0 {
                // SAFETY: prctl with integer arguments.
                let r =
                    unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
                if r != 0 {
                    let e = std::io::Error::last_os_error();
                    // EINVAL: the kernel does not know this capability.
                    if e.raw_os_error() != Some(libc::EINVAL) {
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// Sets effective, permitted and inheritable, then raises the ambient ones.
    pub fn apply(&self) -> std::io::Result<()> {
        let known = if self.last >= 63 {
            u64::MAX
        } else {
            (1u64 << (self.last + 1)) - 1
        };
        crate::syscall::capset(
            self.effective & known,
            self.permitted & known,
            self.inheritable & known,
        )?;
        for cap in 0..=self.last {
            if self.ambient & (1 << cap) != 0 {
                // SAFETY: prctl with integer arguments.
                let r = unsafe {
                    libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                        cap as libc::c_ulong,
                        0,
                        0,
                    )
                };
                if r != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
        }
        Ok(())
    }
}

/// Parses `CAP_X` or `X` (exec --cap).
pub fn parse(name: &str) -> Result<Capability, String> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| format!("unknown capability {name:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_unique_and_dense() {
        let mut seen: Vec<u32> = ALL.iter().map(|c| number(*c)).collect();
        seen.sort();
        assert_eq!(seen, (0..41).collect::<Vec<_>>());
        assert_eq!(all_names()[21], "CAP_SYS_ADMIN");
        assert_eq!(number(parse("sys_admin").unwrap()), 21);
        assert!(parse("CAP_BOGUS").is_err());
    }
}
