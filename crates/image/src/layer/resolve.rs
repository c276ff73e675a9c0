//! Turning entry names into safe relative paths, and paths into directory fds that are guaranteed to lie
//! beneath the destination.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::LayerError;

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// Why a name is refused.
pub(super) const ESCAPES: &str = "path escapes the layer root";

/// Writes the cleaned form of a tar entry name into `out`: components joined by `/`, without a leading
/// `./`, without `.` or empty components. Refuses absolute names and any `..` component, which is stricter
/// than needed for `a/../b` but no real layer contains one.
pub(super) fn clean(name: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
    out.clear();
    let name = name.strip_prefix(b"./").unwrap_or(name);
    if name.first() == Some(&b'/') {
        return Err(ESCAPES);
    }
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(ESCAPES),
            _ => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(comp);
            }
        }
    }
    Ok(())
}

/// Splits a cleaned path into its parent (empty for the root) and its last component.
pub(super) fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// Why resolving a directory failed, worded for an error message.
pub(super) fn explain(dir: &[u8], err: Errno) -> String {
    let dir = String::from_utf8_lossy(dir);
    match err {
        Errno::LOOP => format!("parent directory {dir:?} is a symlink or goes through one"),
        Errno::XDEV => format!("parent directory {dir:?} escapes the layer root"),
        Errno::NOTDIR => format!("parent directory {dir:?} is not a directory"),
        Errno::NOENT => format!("parent directory {dir:?} does not exist"),
        e => format!(
            "resolving parent directory {dir:?}: {}",
            std::io::Error::from(e)
        ),
    }
}

/// Opens the directory `rel` (a cleaned path, empty for `root` itself) beneath `root` as an `O_PATH` fd, to
/// serve as the dirfd of `*at` calls. With `create`, missing directories are made (0755, owned by root), as
/// tar does when a layer lists a file before, or without, its parent.
pub(super) fn open_dir(root: BorrowedFd<'_>, rel: &[u8], create: bool) -> Result<OwnedFd, Errno> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
    match rfs::openat2(root, rel, flags, Mode::empty(), RESOLVE) {
        Err(Errno::NOENT) if create => {}
        // openat2 asks for a retry when a rename raced the lookup; nothing renames inside a private
        // destination, so one retry is enough and the second answer stands.
        Err(Errno::AGAIN) => return rfs::openat2(root, rel, flags, Mode::empty(), RESOLVE),
        other => return other,
    }
    // Slow path, once per missing directory: walk one component at a time, creating as we go.
    let mut cur: Option<OwnedFd> = None;
    for comp in rel.split(|&b| b == b'/') {
        let at = match &cur {
            Some(fd) => fd.as_fd(),
            None => root,
        };
        let next = match rfs::openat2(at, comp, flags, Mode::empty(), RESOLVE) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                match rfs::mkdirat(at, comp, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e),
                }
                let fd = rfs::openat2(at, comp, flags, Mode::empty(), RESOLVE)?;
                // The umask and a setgid parent would otherwise decide mode and group.
                rfs::chownat(
                    &fd,
                    "",
                    Some(rfs::Uid::ROOT),
                    Some(rfs::Gid::ROOT),
                    rfs::AtFlags::EMPTY_PATH,
                )?;
                rfs::chmodat(at, comp, Mode::from_raw_mode(0o755), rfs::AtFlags::empty())?;
                fd
            }
            Err(e) => return Err(e),
        };
        cur = Some(next);
    }
    match cur {
        Some(fd) => Ok(fd),
        None => rfs::openat2(root, ".", flags, Mode::empty(), RESOLVE),
    }
}

/// Reopens a directory fd (possibly `O_PATH`) for reading, which `fsetxattr`, `fchmod`, `futimens` and
/// `getdents` need.
pub(super) fn reopen_dir(dir: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    rfs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Maps a resolution failure of the parent of `entry` into the error `apply` reports.
pub(super) fn parent_error(entry: &[u8], dir: &[u8], err: Errno) -> LayerError {
    match err {
        Errno::LOOP | Errno::XDEV | Errno::NOTDIR | Errno::NOENT => {
            LayerError::refused(entry, explain(dir, err))
        }
        e => LayerError::entry(entry, "opening its parent directory", e),
    }
}
