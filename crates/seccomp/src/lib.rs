//! OCI seccomp profile (`linux.seccomp`, runtime-spec 1.2) -> classic BPF, with an on-disk cache of compiled
//! programs.
//!
//! # Why no libseccomp
//!
//! This crate is a pure-Rust compiler rather than bindings to libseccomp, because:
//! 1. there is no C library to build, link or ship;
//! 2. the compiled program is cached on disk by the SHA-256 of the profile, so a container start with docker's
//!    default profile costs a file read instead of the 7-8 ms of CPU that crun/runc spend compiling it through
//!    libseccomp on every start;
//! 3. we control the spec's semantics fully (and can test them with an interpreter, see the tests).
//!
//! # Semantics
//!
//! - **Architectures.** The native ABI is always filtered; listed ABIs the host kernel can report are added
//!   (x86_64 host: SCMP_ARCH_X86_64, SCMP_ARCH_X32, SCMP_ARCH_X86; arm64 host: SCMP_ARCH_AARCH64, SCMP_ARCH_ARM).
//!   Other listed architectures (mips, s390x, ...) can never appear in `seccomp_data.arch` on this kernel, so
//!   they are ignored. A syscall from an ABI that is not filtered gets [`SECCOMP_RET_KILL_PROCESS`]
//!   (libseccomp's bad-arch default is KILL_THREAD; killing the process avoids leaving it half-dead). On x86_64,
//!   x32 syscalls (number | 0x40000000) follow the x32 rules when SCMP_ARCH_X32 is listed and get the bad-arch
//!   action otherwise, as with libseccomp; x32 numbers are the x86_64 ones except the 512-547 compat entries.
//! - **Names** unknown to an ABI are skipped for that ABI; a name unknown everywhere is skipped silently (runc
//!   only logs it). On i386, multiplexed `socketcall`/`ipc` calls are matched by those names only: unlike
//!   libseccomp, a rule for `socket` does not also generate a `socketcall(SYS_SOCKET, ...)` rule.
//! - **Rules.** Conditions in one entry are ANDed (several on the same index included). Several entries naming
//!   the same syscall are tried in profile order and the first whose conditions all hold decides; an entry
//!   without conditions ends the list. libseccomp instead merges them into one tree and rejects some conflicts;
//!   first-match is what a reader of the profile expects and is identical for profiles without conflicting
//!   entries, such as docker's. When no entry matches, the default action applies.
//! - **Arguments** are compared as 64-bit values (high half, then low half) on 64-bit ABIs and as their low 32
//!   bits on 32-bit ABIs (x86, arm, x32), as libseccomp does. SCMP_CMP_MASKED_EQ is `(arg & value) == valueTwo`.
//! - **Actions.** SCMP_ACT_ERRNO/SCMP_ACT_TRACE use `errnoRet` (default EPERM); SCMP_ACT_KILL is KILL_THREAD;
//!   SCMP_ACT_NOTIFY makes `install` pass SECCOMP_FILTER_FLAG_NEW_LISTENER and return the listener fd (it needs
//!   `listenerPath` and cannot be the default action, as with runc).
//! - **Flags** map to SECCOMP_FILTER_FLAG_*; unknown names are already rejected when the spec is parsed (by
//!   serde, naming the value). WAIT_KILLABLE_RECV is dropped without a listener (the kernel would reject it).
//!
//! [`SECCOMP_RET_KILL_PROCESS`]: libc::SECCOMP_RET_KILL_PROCESS

#![deny(clippy::undocumented_unsafe_blocks)]

mod arch;
mod bpf;
mod cache;
mod compile;
mod install;
#[cfg(test)]
mod tests;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SeccompError {
    #[error("seccomp: {0}")]
    Invalid(String),
    #[error("seccomp: install filter: {0}")]
    Install(#[source] std::io::Error),
    #[error("seccomp: send notify fd to listener {}: {source}", path.display())]
    Listener {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where `Filter::prepare` got its program from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// No cache directory was given.
    Disabled,
    /// Read from the cache.
    Hit,
    /// Compiled and written to the cache.
    Stored,
    /// Compiled, but the cache could not be written (the filter is still usable; the cache is only an
    /// optimization).
    StoreFailed,
}

/// A compiled seccomp program, ready to install.
pub struct Filter {
    insns: Vec<libc::sock_filter>,
    flags: u32,
    listener_path: Option<PathBuf>,
    cache: CacheStatus,
}

impl Filter {
    /// Compiles `profile`, or loads its compiled program from `cache_dir/<sha256>.bpf` (creating the directory,
    /// mode 0700, and the entry when missing). An unreadable or corrupt entry is recompiled and rewritten.
    pub fn prepare(
        profile: &LinuxSeccomp,
        cache_dir: Option<&Path>,
    ) -> Result<Filter, SeccompError> {
        let listener_path = profile.listener_path().clone();
        let Some(dir) = cache_dir else {
            let c = compile::compile(profile)?;
            return Ok(Filter {
                insns: c.insns,
                flags: c.flags,
                listener_path,
                cache: CacheStatus::Disabled,
            });
        };
        let key = cache::key(profile)?;
        if let Some(c) = cache::load(dir, &key) {
            return Ok(Filter {
                insns: c.insns,
                flags: c.flags,
                listener_path,
                cache: CacheStatus::Hit,
            });
        }
        let c = compile::compile(profile)?;
        let cache = match cache::store(dir, &key, &c) {
            Ok(()) => CacheStatus::Stored,
            Err(_) => CacheStatus::StoreFailed,
        };
        Ok(Filter {
            insns: c.insns,
            flags: c.flags,
            listener_path,
            cache,
        })
    }

    /// Loads the filter into the calling thread (TSYNC when asked). Returns the user-notification fd when the
    /// profile uses SCMP_ACT_NOTIFY.
    ///
    /// Safe to call in a forked child of a multi-threaded process: it does not allocate. The caller must have set
    /// no_new_privs or hold CAP_SYS_ADMIN, or the kernel answers EACCES.
    pub fn install(&self) -> Result<Option<OwnedFd>, SeccompError> {
        install::install(&self.insns, self.flags).map_err(SeccompError::Install)
    }

    /// `linux.seccomp.listenerPath`, when the profile has one.
    pub fn listener_path(&self) -> Option<&Path> {
        self.listener_path.as_deref()
    }

    /// The compiled program.
    pub fn instructions(&self) -> &[libc::sock_filter] {
        &self.insns
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits `install` passes to seccomp(2).
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Whether `install` returns a user-notification fd.
    pub fn uses_notify(&self) -> bool {
        self.flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32 != 0
    }

    /// Where the program came from.
    pub fn cache_status(&self) -> CacheStatus {
        self.cache
    }
}

/// Sends the notify fd and the container process state JSON to the listener socket, as runc does.
pub fn send_to_listener(path: &Path, fd: &OwnedFd, state_json: &[u8]) -> Result<(), SeccompError> {
    install::send_fd(path, fd, state_json).map_err(|source| SeccompError::Listener {
        path: path.to_path_buf(),
        source,
    })
}

const ACTIONS: [&str; 9] = [
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];
const OPERATORS: [&str; 7] = [
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];
const FLAGS: [(&str, libc::c_ulong); 4] = [
    ("SECCOMP_FILTER_FLAG_TSYNC", libc::SECCOMP_FILTER_FLAG_TSYNC),
    ("SECCOMP_FILTER_FLAG_LOG", libc::SECCOMP_FILTER_FLAG_LOG),
    (
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    ),
    // Only valid together with a listener, so it is probed with one.
    (
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
    ),
];

/// The `linux.seccomp` object of `berth-runtime features`. `supportedFlags` is probed from the running kernel.
pub fn features() -> serde_json::Value {
    let archs: Vec<&str> = arch::host_abis().iter().map(|a| a.scmp_name()).collect();
    let known: Vec<&str> = FLAGS.iter().map(|(n, _)| *n).collect();
    let supported: Vec<&str> = FLAGS
        .iter()
        .filter(|(_, f)| install::kernel_accepts(*f))
        .map(|(n, _)| *n)
        .collect();
    serde_json::json!({
        "enabled": true,
        "actions": ACTIONS,
        "operators": OPERATORS,
        "archs": archs,
        "knownFlags": known,
        "supportedFlags": supported,
    })
}
