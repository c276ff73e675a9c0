//! Removing what a later entry, a whiteout or an opaque directory replaces, without following symlinks.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Deeper trees than this are refused rather than risking the stack: no real image nests anywhere near it.
pub(super) const MAX_DEPTH: usize = 2048;

/// Removes `name` in `dir` whatever it is, a directory with everything in it. A missing `name` is fine.
pub(super) fn remove_any(dir: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    remove_at(dir, name, 0)
}

fn remove_at(dir: BorrowedFd<'_>, name: &[u8], depth: usize) -> Result<(), Errno> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e),
    }
    let sub = rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    empty_at(sub.as_fd(), depth + 1)?;
    drop(sub);
    rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}

/// Removes everything inside the directory open as `dir` (opened for reading).
pub(super) fn empty_dir(dir: BorrowedFd<'_>) -> Result<(), Errno> {
    empty_at(dir, 0)
}

fn empty_at(dir: BorrowedFd<'_>, depth: usize) -> Result<(), Errno> {
    if depth > MAX_DEPTH {
        return Err(Errno::LOOP);
    }
    // Names are collected before anything is removed: unlinking while getdents walks the directory may
    // make it skip entries.
    let mut names: Vec<(CString, FileType)> = Vec::new();
    let mut it = Dir::read_from(dir)?;
    while let Some(ent) = it.read() {
        let ent = ent?;
        let name = ent.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        names.push((ent.file_name().to_owned(), ent.file_type()));
    }
    drop(it);
    for (name, kind) in names {
        if kind == FileType::Directory {
            // Skip the unlink attempt that remove_at would make first.
            let sub = rfs::openat(
                dir,
                name.as_c_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            empty_at(sub.as_fd(), depth + 1)?;
            drop(sub);
            rfs::unlinkat(dir, name.as_c_str(), AtFlags::REMOVEDIR)?;
        } else {
            remove_at(dir, name.as_bytes(), depth)?;
        }
    }
    Ok(())
}
