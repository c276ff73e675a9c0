//! Ownership, permissions, times and xattrs of created files.

use std::io::Write as _;
use std::os::fd::{AsRawFd, BorrowedFd};

use rustix::fs::{self as rfs, AtFlags, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

/// Xattr values and name lists are at most 64 KiB (XATTR_SIZE_MAX, XATTR_LIST_MAX).
pub(super) const XATTR_MAX: usize = 64 * 1024;

/// overlayfs keeps its own state (whiteout dirs, redirects, metacopy) in `trusted.overlay.*`.
pub(super) const OVERLAY_XATTR_PREFIX: &[u8] = b"trusted.overlay.";

pub(super) fn owner(uid: u32, gid: u32) -> (Option<Uid>, Option<Gid>) {
    // from_raw_unchecked: -1 would mean "unchanged" to the kernel; tar headers cannot hold it in octal and a
    // PAX header saying 4294967295 is its own bad luck, not a safety issue.
    (
        Some(Uid::from_raw_unchecked(uid)),
        Some(Gid::from_raw_unchecked(gid)),
    )
}

pub(super) fn mode(bits: u32) -> Mode {
    Mode::from_raw_mode(bits & 0o7777)
}

pub(super) fn times(atime: Timespec, mtime: Timespec) -> Timestamps {
    Timestamps {
        last_access: atime,
        last_modification: mtime,
    }
}

/// `chown` without following a final symlink.
pub(super) fn chown_at(dir: BorrowedFd<'_>, name: &[u8], uid: u32, gid: u32) -> Result<(), Errno> {
    let (u, g) = owner(uid, gid);
    rfs::chownat(dir, name, u, g, AtFlags::SYMLINK_NOFOLLOW)
}

/// `utimensat` without following a final symlink.
pub(super) fn utimes_at(dir: BorrowedFd<'_>, name: &[u8], t: &Timestamps) -> Result<(), Errno> {
    rfs::utimensat(dir, name, t, AtFlags::SYMLINK_NOFOLLOW)
}

/// A path naming `name` inside an open directory through `/proc/self/fd`, for the xattr calls on symlinks
/// and device nodes, which have no `*at` form and cannot be opened for `f*xattr`. `/proc/self/fd/N` is
/// followed as a magic link to exactly that directory; the `l*xattr` calls then leave `name` itself unfollowed.
pub(super) struct ProcPath(Vec<u8>);

impl ProcPath {
    pub(super) fn new() -> Self {
        ProcPath(Vec::with_capacity(64))
    }

    pub(super) fn at(&mut self, dir: BorrowedFd<'_>, name: &[u8]) -> &[u8] {
        self.0.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(self.0, "/proc/self/fd/{}/", dir.as_raw_fd());
        self.0.extend_from_slice(name);
        &self.0
    }
}

pub(super) fn lset_xattr(path: &[u8], name: &[u8], value: &[u8]) -> Result<(), Errno> {
    rfs::lsetxattr(path, name, value, XattrFlags::empty())
}

pub(super) fn fset_xattr(fd: BorrowedFd<'_>, name: &[u8], value: &[u8]) -> Result<(), Errno> {
    rfs::fsetxattr(fd, name, value, XattrFlags::empty())
}

/// Iterates a NUL-separated xattr name list as the kernel returns it.
pub(super) fn names(list: &[u8]) -> impl Iterator<Item = &[u8]> {
    list.split(|&b| b == 0).filter(|n| !n.is_empty())
}
