//! Syscall ABIs the compiler knows, and how a profile's `architectures` map onto them.
//!
//! The kernel reports the ABI of a syscall in `seccomp_data.arch` (an `AUDIT_ARCH_*` token). An x86_64 kernel can
//! only ever report `AUDIT_ARCH_X86_64` (native and x32 syscalls) and `AUDIT_ARCH_I386` (int 0x80 / compat); an
//! arm64 kernel only `AUDIT_ARCH_AARCH64` and `AUDIT_ARCH_ARM`. So a profile's architectures outside the host's
//! family (e.g. SCMP_ARCH_S390X in docker's profile on an x86_64 host) can never match a syscall and are dropped
//! from the program: this changes no decision, it only keeps the program small.

use std::str::FromStr;

use oci_spec::runtime::Arch;

/// `AUDIT_ARCH_*` tokens (linux/audit.h).
pub(crate) const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
pub(crate) const AUDIT_ARCH_I386: u32 = 0x4000_0003;
pub(crate) const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
pub(crate) const AUDIT_ARCH_ARM: u32 = 0x4000_0028;

/// x32 syscalls arrive with `AUDIT_ARCH_X86_64` and this bit set in the syscall number.
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// x32 syscalls whose x86_64 entry takes 64-bit structures have their own numbers, 512..=547, in this order
/// (arch/x86/entry/syscalls/syscall_64.tbl); every other x32 syscall uses the x86_64 number.
const X32_COMPAT: [&str; 36] = [
    "rt_sigaction",
    "rt_sigreturn",
    "ioctl",
    "readv",
    "writev",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "execve",
    "ptrace",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "sigaltstack",
    "timer_create",
    "mq_notify",
    "kexec_load",
    "waitid",
    "set_robust_list",
    "get_robust_list",
    "vmsplice",
    "move_pages",
    "preadv",
    "pwritev",
    "rt_tgsigqueueinfo",
    "recvmmsg",
    "sendmmsg",
    "process_vm_readv",
    "process_vm_writev",
    "setsockopt",
    "getsockopt",
    "io_setup",
    "io_submit",
    "execveat",
    "preadv2",
    "pwritev2",
];

/// A syscall ABI: one numbering of syscalls plus the `seccomp_data.arch` token it is reported with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Abi {
    X86_64,
    X32,
    I386,
    Aarch64,
    Arm,
}

impl Abi {
    pub(crate) fn audit_arch(self) -> u32 {
        match self {
            Abi::X86_64 | Abi::X32 => AUDIT_ARCH_X86_64,
            Abi::I386 => AUDIT_ARCH_I386,
            Abi::Aarch64 => AUDIT_ARCH_AARCH64,
            Abi::Arm => AUDIT_ARCH_ARM,
        }
    }

    /// The syscall number as the filter sees it in `seccomp_data.nr`, or None when the ABI has no such syscall.
    pub(crate) fn lookup(self, name: &str) -> Option<u32> {
        let nr = match self {
            Abi::X86_64 => syscalls::x86_64::Sysno::from_str(name).ok()?.id(),
            Abi::X32 => {
                let nr = match X32_COMPAT.iter().position(|n| *n == name) {
                    Some(i) => 512 + i as i32,
                    None => syscalls::x86_64::Sysno::from_str(name).ok()?.id(),
                };
                return Some(nr as u32 | X32_SYSCALL_BIT);
            }
            Abi::I386 => syscalls::x86::Sysno::from_str(name).ok()?.id(),
            Abi::Aarch64 => syscalls::aarch64::Sysno::from_str(name).ok()?.id(),
            Abi::Arm => syscalls::arm::Sysno::from_str(name).ok()?.id(),
        };
        u32::try_from(nr).ok()
    }

    /// Whether argument comparisons use only the low 32 bits, as libseccomp does for 32-bit ABIs (x32 included:
    /// its longs and pointers are 32 bits). The value in the rule is truncated too, so a rule written with a
    /// sign-extended -1 still matches a 32-bit -1.
    pub(crate) fn args_are_32bit(self) -> bool {
        matches!(self, Abi::X32 | Abi::I386 | Abi::Arm)
    }

    pub(crate) fn scmp_name(self) -> &'static str {
        match self {
            Abi::X86_64 => "SCMP_ARCH_X86_64",
            Abi::X32 => "SCMP_ARCH_X32",
            Abi::I386 => "SCMP_ARCH_X86",
            Abi::Aarch64 => "SCMP_ARCH_AARCH64",
            Abi::Arm => "SCMP_ARCH_ARM",
        }
    }

    fn from_oci(arch: Arch) -> Option<Abi> {
        match arch {
            Arch::ScmpArchNative => Some(native()),
            Arch::ScmpArchX86_64 => Some(Abi::X86_64),
            Arch::ScmpArchX32 => Some(Abi::X32),
            Arch::ScmpArchX86 => Some(Abi::I386),
            Arch::ScmpArchAarch64 => Some(Abi::Aarch64),
            Arch::ScmpArchArm => Some(Abi::Arm),
            _ => None,
        }
    }
}

/// The ABI of the running kernel's native syscalls.
pub(crate) fn native() -> Abi {
    if cfg!(target_arch = "aarch64") {
        Abi::Aarch64
    } else {
        Abi::X86_64
    }
}

/// Every ABI the running kernel can report to a filter.
pub(crate) fn host_abis() -> &'static [Abi] {
    if cfg!(target_arch = "aarch64") {
        &[Abi::Aarch64, Abi::Arm]
    } else {
        &[Abi::X86_64, Abi::X32, Abi::I386]
    }
}

/// The ABIs to compile for: the native one always (libseccomp's `seccomp_init` adds it and runc never removes it),
/// plus every listed architecture this kernel can report. Others are ignored (see the module comment).
pub(crate) fn selected(profile_archs: Option<&Vec<Arch>>) -> Vec<Abi> {
    let mut abis = vec![native()];
    for arch in profile_archs.into_iter().flatten() {
        if let Some(abi) = Abi::from_oci(*arch) {
            if host_abis().contains(&abi) && !abis.contains(&abi) {
                abis.push(abi);
            }
        }
    }
    abis.sort();
    abis
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(Abi::X86_64.lookup("read"), Some(0));
        assert_eq!(Abi::I386.lookup("read"), Some(3));
        assert_eq!(Abi::X32.lookup("read"), Some(X32_SYSCALL_BIT));
        assert_eq!(Abi::X32.lookup("execve"), Some(520 | X32_SYSCALL_BIT));
        assert_eq!(Abi::X32.lookup("pwritev2"), Some(547 | X32_SYSCALL_BIT));
        assert_eq!(Abi::Aarch64.lookup("openat"), Some(56));
        assert_eq!(Abi::Aarch64.lookup("open"), None);
        assert_eq!(Abi::X86_64.lookup("no_such_syscall"), None);
        assert_eq!(Abi::I386.lookup("_llseek"), Some(140));
    }

    #[test]
    fn selection() {
        assert_eq!(selected(None), vec![native()]);
        let archs = vec![Arch::ScmpArchX86, Arch::ScmpArchS390x, Arch::ScmpArchNative];
        if cfg!(target_arch = "x86_64") {
            assert_eq!(selected(Some(&archs)), vec![Abi::X86_64, Abi::I386]);
        }
    }
}
