//! Root filesystems from snapshots. Each layer is unpacked once into `snapshots/<id>/` (keyed by chain id in
//! the database); a writable rootfs ("active snapshot") is an overlay of those directories under its own
//! upper and work directories, or, where overlayfs cannot be used, a plain copy of the merged layers (vfs).

use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::mount::{
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount, FsMountFlags, FsOpenFlags,
    MountAttrFlags, MoveMountFlags,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// overlayfs, falling back to vfs when the kernel or the filesystem refuses it.
    Overlay,
    /// Copies: slower and bigger, works everywhere (podman calls it vfs).
    Vfs,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Overlay => "overlay",
            Driver::Vfs => "vfs",
        }
    }

    pub fn parse(s: &str) -> Option<Driver> {
        match s {
            "overlay" | "overlay2" | "overlayfs" => Some(Driver::Overlay),
            "vfs" | "copy" => Some(Driver::Vfs),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("overlay mount at {target}: {op}: {source}")]
    Overlay {
        target: PathBuf,
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("overlay mount at {target}: {count} layers is more than overlayfs stacks (500)")]
    TooDeep { target: PathBuf, count: usize },
    #[error("unmount {path}: {source}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// overlayfs refuses more lower layers than this (OVL_MAX_STACK).
const MAX_LOWERS: usize = 500;

/// Mounts an overlay of `lowers` (bottom first, as the image lists them) under `upper`/`work` at `target`.
/// The new mount API's `lowerdir+` takes one layer per call, so deep images need no option string that fits a
/// page; kernels before 6.8 get the classic mount(2) string instead.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    readonly: bool,
) -> Result<(), MountError> {
    if lowers.len() > MAX_LOWERS {
        return Err(MountError::TooDeep {
            target: target.to_path_buf(),
            count: lowers.len(),
        });
    }
    let err = |op: &str| {
        let target = target.to_path_buf();
        let op = op.to_string();
        move |e: rustix::io::Errno| MountError::Overlay {
            target,
            op,
            source: e.into(),
        }
    };
    let fs_fd = match fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOSYS) => {
            return mount_overlay_legacy(lowers, upper, work, target, readonly)
        }
        Err(e) => return Err(err("fsopen overlay")(e)),
    };
    // Top layer first: overlay stacks lowerdir+ entries from the top down.
    for (i, l) in lowers.iter().rev().enumerate() {
        if let Err(e) = fsconfig_set_string(fs_fd.as_fd(), "lowerdir+", l) {
            if i == 0 && e == rustix::io::Errno::INVAL {
                // lowerdir+ is 6.8+; older kernels take the whole list in one string.
                return mount_overlay_legacy(lowers, upper, work, target, readonly);
            }
            return Err(err(&format!("lowerdir+ {}", l.display()))(e));
        }
    }
    fsconfig_set_string(fs_fd.as_fd(), "upperdir", upper).map_err(err("upperdir"))?;
    fsconfig_set_string(fs_fd.as_fd(), "workdir", work).map_err(err("workdir"))?;
    fsconfig_create(fs_fd.as_fd()).map_err(err("create"))?;
    let attrs = if readonly {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    } else {
        MountAttrFlags::empty()
    };
    let mnt =
        fsmount(fs_fd.as_fd(), FsMountFlags::FSMOUNT_CLOEXEC, attrs).map_err(err("fsmount"))?;
    move_mount(
        mnt.as_fd(),
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(err("move_mount"))
}

fn mount_overlay_legacy(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    readonly: bool,
) -> Result<(), MountError> {
    let lower = lowers
        .iter()
        .rev()
        .map(|p| p.to_string_lossy().replace(':', "\\:"))
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    let mut flags = rustix::mount::MountFlags::empty();
    if readonly {
        flags |= rustix::mount::MountFlags::RDONLY;
    }
    let data = std::ffi::CString::new(data).map_err(|e| MountError::Overlay {
        target: target.to_path_buf(),
        op: "mount options".into(),
        source: io::Error::new(io::ErrorKind::InvalidInput, e),
    })?;
    rustix::mount::mount("overlay", target, "overlay", flags, Some(data.as_c_str())).map_err(|e| {
        MountError::Overlay {
            target: target.to_path_buf(),
            op: "mount".into(),
            source: e.into(),
        }
    })
}

/// Whether a mount error means "overlayfs cannot work here" (use vfs) rather than a bug to report.
pub fn overlay_unsupported(e: &MountError) -> bool {
    match e {
        MountError::Overlay { source, .. } => {
            use rustix::io::Errno;
            let code = source.raw_os_error();
            [Errno::NODEV, Errno::OPNOTSUPP, Errno::INVAL]
                .iter()
                .any(|e| Some(e.raw_os_error()) == code)
        }
        _ => false,
    }
}

pub fn unmount(path: &Path) -> Result<(), MountError> {
    match rustix::mount::unmount(path, rustix::mount::UnmountFlags::NOFOLLOW) {
        Ok(()) => Ok(()),
        // Not mounted (already gone, or never was): nothing to do.
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(MountError::Unmount {
            path: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

/// Whether `path` is a mount point (its mount id differs from its parent's).
pub fn is_mounted(path: &Path) -> bool {
    let Some(parent) = path.parent() else {
        return false;
    };
    match (
        rustix::fs::statx(
            rustix::fs::CWD,
            path,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            rustix::fs::StatxFlags::MNT_ID,
        ),
        rustix::fs::statx(
            rustix::fs::CWD,
            parent,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            rustix::fs::StatxFlags::MNT_ID,
        ),
    ) {
        (Ok(a), Ok(b)) => a.stx_mnt_id != b.stx_mnt_id,
        _ => false,
    }
}

/// Mount points at or below `dir`, from /proc/self/mountinfo (octal escapes decoded).
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes a directory tree that may hold overlay whiteouts and read-only modes; missing is fine.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes() {
        assert_eq!(super::unescape_mountinfo("/a\\040b\\011c"), "/a b\tc");
        assert_eq!(super::unescape_mountinfo("/plain"), "/plain");
        assert_eq!(super::unescape_mountinfo("/end\\04"), "/end\\04");
    }
}
