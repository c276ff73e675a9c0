//! The container's root filesystem, built inside its own mount namespace: propagation, the rootfs bind, the
//! config's mounts in order, devices, pivot_root, then masked and read-only paths and a read-only root.
//!
//! Every function here refuses to run in the runtime's own mount namespace (see [`guard_own_mount_ns`]): the
//! same code run on the host could unmount the machine.

pub mod devices;
pub mod mounts;
pub mod options;

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::Spec;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RootfsError {
    #[error("{step} {path}: {source}")]
    Io {
        step: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

pub(crate) fn err(
    step: impl Into<String>,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> RootfsError {
    let step = step.into();
    let path = path.into();
    move |source| RootfsError::Io { step, path, source }
}

pub(crate) fn errno(
    step: impl Into<String>,
    path: impl Into<PathBuf>,
) -> impl FnOnce(nix::Error) -> RootfsError {
    let f = err(step, path);
    move |e| f(io::Error::from(e))
}

/// What the rootfs code needs from the spec and the runtime.
pub struct Plan<'a> {
    pub spec: &'a Spec,
    /// Absolute host path of the rootfs.
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub cgroup: &'a cgroups::Cgroup,
    pub cgroupns: bool,
    pub userns: bool,
    pub no_pivot: bool,
    /// Inode of the runtime's mount namespace, recorded before any namespace was created.
    pub host_mnt_ns: u64,
    /// User namespaces made for idmapped mounts, by mount destination.
    pub idmap_userns: &'a [(PathBuf, OwnedFd)],
}

/// Refuses to touch mounts unless this process is in a mount namespace other than the runtime's.
pub fn guard_own_mount_ns(host_mnt_ns: u64) -> Result<(), RootfsError> {
    let own =
        crate::namespaces::ns_inode("self", "mnt").map_err(err("stat", "/proc/self/ns/mnt"))?;
    if own == host_mnt_ns {
        return Err(RootfsError::Refused(
            "refusing to set up mounts: the process is still in the runtime's mount namespace"
                .into(),
        ));
    }
    Ok(())
}

fn propagation_flag(p: &oci_spec::runtime::Linux) -> Option<MsFlags> {
    let s = p.rootfs_propagation().as_deref()?;
    Some(match s {
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

pub fn validate_propagation(spec: &Spec) -> Result<(), String> {
    if let Some(l) = spec.linux() {
        if let Some(p) = l.rootfs_propagation() {
            if propagation_flag(l).is_none() {
                return Err(format!("linux.rootfsPropagation: unknown value {p:?}"));
            }
        }
    }
    Ok(())
}

/// Everything before pivot_root. Returns the rootfs descriptor.
pub fn prepare(plan: &Plan) -> Result<OwnedFd, RootfsError> {
    guard_own_mount_ns(plan.host_mnt_ns)?;
    let linux = plan.spec.linux().as_ref();
    let prop = linux.and_then(propagation_flag);
    // Cut propagation back to the host first: nothing done below may show up outside.
    let root_flag = match prop {
        Some(f) if f.contains(MsFlags::MS_SHARED) => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some(f) => f | MsFlags::MS_REC,
        None => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    mount(None::<&str>, "/", None::<&str>, root_flag, None::<&str>)
        .map_err(errno("set propagation of", "/"))?;
    // pivot_root refuses a new root whose parent mount is shared.
    make_parent_private(plan.rootfs)?;
    mount(
        Some(plan.rootfs),
        plan.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(errno("bind mount rootfs", plan.rootfs))?;
    let rootfd =
        crate::paths::open_root_dir(plan.rootfs).map_err(err("open rootfs", plan.rootfs))?;

    let mut dev_bound = false;
    if let Some(ms) = plan.spec.mounts() {
        for m in ms {
            mounts::mount_one(plan, rootfd.as_fd(), m)?;
            if m.destination() == Path::new("/dev")
                && options::parse(m.options().as_deref().unwrap_or(&[])).bind()
            {
                dev_bound = true;
            }
        }
    }
    if !dev_bound {
        devices::create(plan, rootfd.as_fd())?;
    }
    Ok(rootfd)
}

/// If the mount holding `path`'s parent is shared, make it private (in our namespace only).
fn make_parent_private(path: &Path) -> Result<(), RootfsError> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(err("read", "/proc/self/mountinfo"))?;
    let mut best: Option<(&str, bool)> = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 7 {
            continue;
        }
        let mp = f[4];
        let under = path.starts_with(mp);
        if under && best.is_none_or(|(b, _)| mp.len() >= b.len()) {
            let shared = f[6..]
                .iter()
                .take_while(|x| **x != "-")
                .any(|x| x.starts_with("shared:"));
            best = Some((mp, shared));
        }
    }
    if let Some((mp, true)) = best {
        mount(
            None::<&str>,
            mp,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(errno("make private", mp))?;
    }
    Ok(())
}

/// pivot_root into the rootfs (or move + chroot with --no-pivot), leaving the old root unmounted.
pub fn pivot(plan: &Plan, rootfd: OwnedFd) -> Result<(), RootfsError> {
    guard_own_mount_ns(plan.host_mnt_ns)?;
    if plan.no_pivot {
        nix::unistd::fchdir(&rootfd).map_err(errno("chdir", plan.rootfs))?;
        mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .map_err(errno("move mount", plan.rootfs))?;
        nix::unistd::chroot(".").map_err(errno("chroot", plan.rootfs))?;
    } else {
        let oldroot = std::fs::File::open("/").map_err(err("open", "/"))?;
        nix::unistd::fchdir(&rootfd).map_err(errno("chdir", plan.rootfs))?;
        nix::unistd::pivot_root(".", ".").map_err(errno("pivot_root", plan.rootfs))?;
        // The old root is now stacked under the new one at "."; detach it without propagating.
        nix::unistd::fchdir(&oldroot).map_err(errno("chdir", "old root"))?;
        mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(errno("set propagation of", "old root"))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(errno("unmount", "old root"))?;
    }
    nix::unistd::chdir("/").map_err(errno("chdir", "/"))?;
    Ok(())
}

/// After pivot_root: paths are the container's own and cannot lead out of it.
pub fn finalize(plan: &Plan) -> Result<(), RootfsError> {
    guard_own_mount_ns(plan.host_mnt_ns)?;
    let Some(linux) = plan.spec.linux() else {
        return Ok(());
    };
    // Before readonlyPaths: /proc/sys is usually among them.
    if let Some(sysctl) = linux.sysctl() {
        for (k, v) in sysctl {
            let path = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
            std::fs::write(&path, v).map_err(err(format!("set sysctl {k}"), &path))?;
        }
    }
    if let Some(paths) = linux.masked_paths() {
        for p in paths {
            mask(Path::new(p))?;
        }
    }
    if let Some(paths) = linux.readonly_paths() {
        for p in paths {
            readonly(Path::new(p))?;
        }
    }
    if plan
        .spec
        .root()
        .as_ref()
        .is_some_and(|r| r.readonly() == Some(true))
    {
        remount_ro(Path::new("/")).map_err(err("remount read-only", "/"))?;
    }
    if let Some(f) = propagation_flag(linux) {
        mount(None::<&str>, "/", None::<&str>, f, None::<&str>)
            .map_err(errno("set rootfs propagation of", "/"))?;
    }
    Ok(())
}

fn mask(p: &Path) -> Result<(), RootfsError> {
    let md = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err("mask", p)(e)),
    };
    if md.is_dir() {
        mount(
            Some("tmpfs"),
            p,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(errno("mask", p))
    } else {
        mount(
            Some("/dev/null"),
            p,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(errno("mask", p))
    }
}

fn readonly(p: &Path) -> Result<(), RootfsError> {
    match mount(
        Some(p),
        p,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Ok(()) => {}
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(errno("bind mount read-only path", p)(e)),
    }
    remount_ro(p).map_err(err("remount read-only", p))
}

/// The flags a remount must keep: in a user namespace the kernel locks nosuid/nodev/noexec/atime settings.
pub(crate) fn locked_flags(p: &Path) -> io::Result<MsFlags> {
    let st = nix::sys::statvfs::statvfs(p).map_err(io::Error::from)?;
    use nix::sys::statvfs::FsFlags;
    let f = st.flags();
    let mut m = MsFlags::empty();
    for (a, b) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(a) {
            m |= b;
        }
    }
    Ok(m)
}

pub(crate) fn remount_ro(p: &Path) -> io::Result<()> {
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(p)?;
    mount(None::<&str>, p, None::<&str>, flags, None::<&str>).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guard every mount path goes through: in the runtime's own mount namespace it must refuse.
    #[test]
    fn refuses_to_mount_in_the_runtimes_namespace() {
        let own = crate::namespaces::ns_inode("self", "mnt").unwrap();
        let e = guard_own_mount_ns(own).unwrap_err();
        assert!(e.to_string().contains("refusing"), "{e}");
        assert!(guard_own_mount_ns(own + 1).is_ok());
    }
}
