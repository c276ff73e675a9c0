//! The copy fallback for hosts without overlayfs: laying an extracted layer over the rootfs built so far,
//! with overlayfs's reading of whiteouts and opaque directories.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{
    self as rfs, AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps,
};
use rustix::io::Errno;

use super::meta::{self, ProcPath, OVERLAY_XATTR_PREFIX, XATTR_MAX};
use super::remove::{empty_dir, remove_any, MAX_DEPTH};
use super::resolve::{open_dir, split};
use super::LayerError;

const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";
const COPY_BUF: usize = 1 << 20;
/// One copy_file_range call moves at most this much, so a huge file still makes progress visibly.
const RANGE_CHUNK: u64 = 1 << 30;

/// Copy fallback (no overlayfs): copies a directory produced by `apply` onto `dest`, interpreting its
/// overlay whiteouts (char device 0:0 => delete that path in dest; dir with xattr trusted.overlay.opaque=y
/// => empty that dir in dest first) and preserving everything else. Applying merge for layers 1..n in order
/// yields the image's rootfs.
pub fn merge(layer_dir: &Path, dest: &Path) -> Result<(), LayerError> {
    let open = |path: &Path, what| {
        rfs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| LayerError::Open {
            what,
            path: path.to_owned(),
            source: e.into(),
        })
    };
    let src = open(layer_dir, "extracted layer")?;
    let dst = open(dest, "merge destination")?;
    let mut m = Merger {
        root: dst.as_fd(),
        links: HashMap::new(),
        rel: Vec::new(),
        buf: Vec::new(),
        list: vec![0; XATTR_MAX],
        value: vec![0; XATTR_MAX],
        src_proc: ProcPath::new(),
        dst_proc: ProcPath::new(),
    };
    let st = rfs::fstat(&src).map_err(|e| m.err("inspecting", e))?;
    // The root is a directory like any other: overlayfs shows the topmost layer's root attributes.
    m.merge_dir(src.as_fd(), dst.as_fd(), &st, true, 0)
}

struct Merger<'a> {
    root: BorrowedFd<'a>,
    /// (dev, ino) of a multiply-linked file already copied => its path relative to the roots.
    links: HashMap<(u64, u64), Vec<u8>>,
    /// The path being merged, relative to both roots.
    rel: Vec<u8>,
    buf: Vec<u8>,
    list: Vec<u8>,
    value: Vec<u8>,
    src_proc: ProcPath,
    dst_proc: ProcPath,
}

impl Merger<'_> {
    fn err(&self, what: &'static str, e: impl Into<std::io::Error>) -> LayerError {
        let shown: &[u8] = if self.rel.is_empty() { b"." } else { &self.rel };
        LayerError::merge(shown, what, e)
    }

    /// Merges the directory `src` into the existing directory `dst`, then gives `dst` the metadata of `src`.
    fn merge_dir(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        st: &Stat,
        existed: bool,
        depth: usize,
    ) -> Result<(), LayerError> {
        if depth > MAX_DEPTH {
            return Err(self.err("descending", Errno::LOOP));
        }
        if existed && self.is_opaque(src) {
            empty_dir(dst).map_err(|e| self.err("emptying the opaque directory", e))?;
        }
        for name in list_dir(src).map_err(|e| self.err("listing the directory", e))? {
            let len = self.rel.len();
            if len != 0 {
                self.rel.push(b'/');
            }
            self.rel.extend_from_slice(name.as_bytes());
            let r = self.merge_one(src, dst, name.as_bytes(), depth);
            self.rel.truncate(len);
            r?;
        }
        let (u, g) = meta::owner(st.st_uid, st.st_gid);
        rfs::fchown(dst, u, g).map_err(|e| self.err("changing the owner", e))?;
        rfs::fchmod(dst, meta::mode(st.st_mode)).map_err(|e| self.err("changing the mode", e))?;
        self.copy_xattrs_fd(src, dst)
            .map_err(|e| self.err("copying xattrs", e))?;
        // Last: creating the children above changed the directory's times.
        rfs::futimens(dst, &stat_times(st)).map_err(|e| self.err("setting its times", e))
    }

    fn merge_one(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &[u8],
        depth: usize,
    ) -> Result<(), LayerError> {
        let st = rfs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.err("inspecting", e))?;
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind == FileType::CharacterDevice && st.st_rdev == 0 {
            return remove_any(dst, name).map_err(|e| self.err("removing the whited-out path", e));
        }
        if kind == FileType::Directory {
            let s = rfs::openat(
                src,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| self.err("opening", e))?;
            let existed = match rfs::statat(dst, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(d) if FileType::from_raw_mode(d.st_mode) == FileType::Directory => true,
                Ok(_) => {
                    rfs::unlinkat(dst, name, AtFlags::empty())
                        .map_err(|e| self.err("removing what it replaces", e))?;
                    false
                }
                Err(Errno::NOENT) => false,
                Err(e) => return Err(self.err("inspecting the destination", e)),
            };
            if !existed {
                rfs::mkdirat(dst, name, Mode::from_raw_mode(0o700))
                    .map_err(|e| self.err("creating the directory", e))?;
            }
            let d = rfs::openat2(
                dst,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
            )
            .map_err(|e| self.err("opening the destination directory", e))?;
            return self.merge_dir(s.as_fd(), d.as_fd(), &st, existed, depth + 1);
        }

        let key = link_key(&st);
        if let Some(key) = key {
            if let Some(first) = self.links.get(&key) {
                let (fdir, fbase) = split(first);
                let fparent = open_dir(self.root, fdir, false)
                    .map_err(|e| self.err("opening the hardlink target's directory", e))?;
                return replacing(dst, name, || {
                    rfs::linkat(&fparent, fbase, dst, name, AtFlags::empty())
                })
                .map_err(|e| self.err("creating the hardlink", e));
            }
        }

        match kind {
            FileType::RegularFile => self.copy_file(src, dst, name, &st)?,
            FileType::Symlink => {
                let target = rfs::readlinkat(src, name, Vec::new())
                    .map_err(|e| self.err("reading the symlink", e))?;
                replacing(dst, name, || rfs::symlinkat(target.as_c_str(), dst, name))
                    .map_err(|e| self.err("creating the symlink", e))?;
                self.node_meta(src, dst, name, &st, false)?;
            }
            FileType::CharacterDevice
            | FileType::BlockDevice
            | FileType::Fifo
            | FileType::Socket => {
                replacing(dst, name, || {
                    rfs::mknodat(dst, name, kind, meta::mode(st.st_mode), st.st_rdev)
                })
                .map_err(|e| self.err("creating the node", e))?;
                self.node_meta(src, dst, name, &st, true)?;
            }
            _ => return Err(self.err("copying", Errno::INVAL)),
        }
        if let Some(key) = key {
            self.links.insert(key, self.rel.clone());
        }
        Ok(())
    }

    fn copy_file(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &[u8],
        st: &Stat,
    ) -> Result<(), LayerError> {
        let s = rfs::openat(
            src,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.err("opening", e))?;
        let d = replacing(dst, name, || {
            rfs::openat(
                dst,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        })
        .map_err(|e| self.err("creating the file", e))?;
        copy_contents(&s, &d, st_size(st), &mut self.buf)
            .map_err(|e| self.err("copying the contents", e))?;
        let (u, g) = meta::owner(st.st_uid, st.st_gid);
        // Owner, then mode (chown clears setuid), then xattrs (chown drops security.capability).
        rfs::fchown(&d, u, g).map_err(|e| self.err("changing the owner", e))?;
        rfs::fchmod(&d, meta::mode(st.st_mode)).map_err(|e| self.err("changing the mode", e))?;
        self.copy_xattrs_fd(s.as_fd(), d.as_fd())
            .map_err(|e| self.err("copying xattrs", e))?;
        rfs::futimens(&d, &stat_times(st)).map_err(|e| self.err("setting its times", e))
    }

    /// Metadata of a symlink or device node, which cannot be opened.
    fn node_meta(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &[u8],
        st: &Stat,
        chmod: bool,
    ) -> Result<(), LayerError> {
        meta::chown_at(dst, name, st.st_uid, st.st_gid)
            .map_err(|e| self.err("changing the owner", e))?;
        if chmod {
            // chmodat follows a final symlink, but `name` is the node just made.
            rfs::chmodat(dst, name, meta::mode(st.st_mode), AtFlags::empty())
                .map_err(|e| self.err("changing the mode", e))?;
        }
        self.copy_xattrs_at(src, dst, name)
            .map_err(|e| self.err("copying xattrs", e))?;
        meta::utimes_at(dst, name, &stat_times(st)).map_err(|e| self.err("setting its times", e))
    }

    fn is_opaque(&mut self, dir: BorrowedFd<'_>) -> bool {
        matches!(rfs::fgetxattr(dir, OPAQUE_XATTR, &mut self.value[..]), Ok(n) if self.value[..n] == *b"y")
    }

    fn copy_xattrs_fd(&mut self, src: BorrowedFd<'_>, dst: BorrowedFd<'_>) -> Result<(), Errno> {
        let n = match rfs::flistxattr(src, &mut self.list[..]) {
            Ok(n) => n,
            Err(Errno::OPNOTSUPP) => return Ok(()),
            Err(e) => return Err(e),
        };
        for name in meta::names(&self.list[..n]) {
            if name.starts_with(OVERLAY_XATTR_PREFIX) {
                continue;
            }
            let len = match rfs::fgetxattr(src, name, &mut self.value[..]) {
                Ok(len) => len,
                Err(Errno::NODATA) => continue,
                Err(e) => return Err(e),
            };
            meta::fset_xattr(dst, name, &self.value[..len])?;
        }
        Ok(())
    }

    fn copy_xattrs_at(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
        name: &[u8],
    ) -> Result<(), Errno> {
        let spath = self.src_proc.at(src, name);
        let n = match rfs::llistxattr(spath, &mut self.list[..]) {
            Ok(n) => n,
            Err(Errno::OPNOTSUPP) => return Ok(()),
            Err(e) => return Err(e),
        };
        for xname in meta::names(&self.list[..n]) {
            if xname.starts_with(OVERLAY_XATTR_PREFIX) {
                continue;
            }
            let len = match rfs::lgetxattr(spath, xname, &mut self.value[..]) {
                Ok(len) => len,
                Err(Errno::NODATA) => continue,
                Err(e) => return Err(e),
            };
            meta::lset_xattr(self.dst_proc.at(dst, name), xname, &self.value[..len])?;
        }
        Ok(())
    }
}

fn list_dir(dir: BorrowedFd<'_>) -> Result<Vec<CString>, Errno> {
    let mut names = Vec::new();
    let mut it = Dir::read_from(dir)?;
    while let Some(ent) = it.read() {
        let ent = ent?;
        let name = ent.file_name();
        if name.to_bytes() != b"." && name.to_bytes() != b".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

fn replacing<T>(
    dir: BorrowedFd<'_>,
    name: &[u8],
    mut create: impl FnMut() -> Result<T, Errno>,
) -> Result<T, Errno> {
    match create() {
        Err(Errno::EXIST) => {
            remove_any(dir, name)?;
            create()
        }
        other => other,
    }
}

/// Clones the extents where the filesystem can (btrfs, xfs), lets the kernel copy where it can, and reads
/// and writes otherwise (copy_file_range refuses some pairs of filesystems).
fn copy_contents(src: &OwnedFd, dst: &OwnedFd, size: u64, buf: &mut Vec<u8>) -> Result<(), Errno> {
    if size == 0 || rfs::ioctl_ficlone(dst, src).is_ok() {
        return Ok(());
    }
    let (mut off_in, mut off_out) = (0u64, 0u64);
    while off_in < size {
        let chunk = usize::try_from((size - off_in).min(RANGE_CHUNK)).unwrap_or(usize::MAX);
        match rfs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), chunk) {
            Ok(0) => break,
            Ok(_) | Err(Errno::INTR) => {}
            Err(_) => break,
        }
    }
    if buf.is_empty() {
        buf.resize(COPY_BUF, 0);
    }
    loop {
        let n = match rustix::io::pread(src, &mut buf[..], off_in) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        };
        let mut done = 0;
        while done < n {
            match rustix::io::pwrite(dst, &buf[done..n], off_out) {
                Ok(0) => return Err(Errno::IO),
                Ok(w) => {
                    done += w;
                    off_out += w as u64;
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(e),
            }
        }
        off_in += n as u64;
    }
}

// Stat's field types differ between architectures; the casts are no-ops on some.
#[allow(clippy::unnecessary_cast)]
fn stat_times(st: &Stat) -> Timestamps {
    meta::times(
        Timespec {
            tv_sec: st.st_atime as i64,
            tv_nsec: st.st_atime_nsec as i64,
        },
        Timespec {
            tv_sec: st.st_mtime as i64,
            tv_nsec: st.st_mtime_nsec as i64,
        },
    )
}

#[allow(clippy::unnecessary_cast)]
fn link_key(st: &Stat) -> Option<(u64, u64)> {
    (st.st_nlink > 1).then_some((st.st_dev as u64, st.st_ino as u64))
}

#[allow(clippy::unnecessary_cast)]
fn st_size(st: &Stat) -> u64 {
    st.st_size.max(0) as u64
}
