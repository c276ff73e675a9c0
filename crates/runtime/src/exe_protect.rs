//! CVE-2019-5736: a container must not be able to write to the runtime's binary through /proc/PID/exe of a
//! runtime process that joined it (the init before exec, an `exec` before exec, or `#!/proc/self/exe`).
//!
//! youki copies its whole binary into a sealed memfd on every call (~3.5 ms). berth has two cheaper ways:
//!
//! 1. An installed binary marked immutable (`chattr +i`, done once by `scripts/install.sh`) cannot be opened
//!    for writing by anyone, root included, and only CAP_LINUX_IMMUTABLE can clear the flag. When the binary
//!    is immutable and the container's bounding set lacks that capability, the protection costs one ioctl.
//! 2. Otherwise berth re-executes itself once from a read-only bind mount of its own binary in a private
//!    mount namespace: the exe link of every runtime process then points into a read-only mount, so opening
//!    it for writing fails with EROFS. That costs an unshare, two mounts and an execve; nothing is copied.
//!    The same holds when the binary already lives on a read-only mount: nothing to do.

use std::ffi::CString;
use std::path::PathBuf;

use nix::mount::{mount, MsFlags};

pub const ENV: &str = "_BERTH_RUNTIME_SEALED";

#[derive(Debug, thiserror::Error)]
#[error("protect runtime binary ({step}): {source}")]
pub struct ExeProtectError {
    step: &'static str,
    #[source]
    source: std::io::Error,
}

fn e(step: &'static str) -> impl FnOnce(nix::Error) -> ExeProtectError {
    move |x| ExeProtectError {
        step,
        source: x.into(),
    }
}

/// Is the running binary already on a read-only mount?
pub fn is_sealed() -> bool {
    nix::sys::statvfs::statvfs("/proc/self/exe")
        .map(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
        .unwrap_or(false)
}

const FS_IMMUTABLE_FL: libc::c_long = 0x10;

/// Is the running binary marked immutable (FS_IMMUTABLE_FL)?
pub fn is_immutable() -> bool {
    let Ok(f) = std::fs::File::open("/proc/self/exe") else {
        return false;
    };
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one long into `flags`.
    let r = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            libc::FS_IOC_GETFLAGS,
            &mut flags,
        )
    };
    r == 0 && flags & FS_IMMUTABLE_FL != 0
}

/// Whether the re-exec is needed, given whether the binary is immutable ([`is_immutable`]) and whether the
/// container's processes may hold CAP_LINUX_IMMUTABLE. Call [`seal`] when it is.
pub fn needs_seal(immutable: bool, may_clear_immutable: bool) -> bool {
    if std::env::var_os(ENV).is_some() || is_sealed() {
        return false;
    }
    may_clear_immutable || !immutable
}

/// Re-executes the current process from a read-only view of its binary, unless already done. Returns only on
/// error or when nothing was needed.
pub fn seal() -> Result<(), ExeProtectError> {
    if std::env::var_os(ENV).is_some() || is_sealed() {
        return Ok(());
    }
    let exe: PathBuf = std::fs::read_link("/proc/self/exe").map_err(|source| ExeProtectError {
        step: "readlink /proc/self/exe",
        source,
    })?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(e("unshare mount namespace"))?;
    // Our namespace only receives from the host from here on; the bind below must not leak back.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(e("set propagation"))?;
    mount(
        Some(&exe),
        &exe,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(e("bind mount"))?;
    mount(
        None::<&str>,
        &exe,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(e("remount read-only"))?;
    let path = crate::syscall::cstr(&exe).map_err(|source| ExeProtectError {
        step: "path",
        source,
    })?;
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.into_encoded_bytes()).unwrap_or_default())
        .collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut b = k.into_encoded_bytes();
            b.push(b'=');
            b.extend(v.into_encoded_bytes());
            CString::new(b).unwrap_or_default()
        })
        .collect();
    env.push(CString::new(format!("{ENV}=1")).unwrap_or_default());
    let err = nix::unistd::execve(&path, &args, &env).unwrap_err();
    Err(e("re-exec")(err))
}
