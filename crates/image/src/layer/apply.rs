//! Extracting one layer tar into an empty directory, OCI whiteouts becoming overlayfs whiteouts.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps,
};
use rustix::io::Errno;
use tar::EntryType;

use super::meta::{self, ProcPath, OVERLAY_XATTR_PREFIX};
use super::remove::remove_any;
use super::resolve::{self, clean, open_dir, parent_error, split};
use super::stream::{Decoder, Hashing};
use super::{Applied, LayerError};
use crate::digest::Hasher;
use crate::Compression;

/// File data moves through one buffer this big: fewer, larger writes.
const COPY_BUF: usize = 1 << 20;
/// Read-ahead of the decompressed stream: the tar parser reads each 512-byte header on its own.
const STREAM_BUF: usize = 256 << 10;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_XATTR: &[u8] = b"trusted.overlay.opaque";

/// Extracts one layer (a tar stream, compressed as given) into `dest`, an existing empty directory,
/// converting OCI whiteouts to overlayfs whiteouts. Reads `input` to EOF.
///
/// On error `dest` holds a partial extraction; the caller removes it.
pub fn apply(
    input: impl Read,
    compression: Compression,
    dest: &Path,
) -> Result<Applied, LayerError> {
    let root = rfs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LayerError::Open {
        what: "layer destination",
        path: dest.to_owned(),
        source: e.into(),
    })?;
    let stream = |source| LayerError::Stream { source };
    let hashing = Hashing {
        inner: Decoder::new(input, compression)?,
        hasher: Hasher::sha256(),
        size: 0,
    };
    let mut archive = tar::Archive::new(BufReader::with_capacity(STREAM_BUF, hashing));
    let mut x = Extractor::new(root).map_err(|e| LayerError::Open {
        what: "layer destination",
        path: dest.to_owned(),
        source: e.into(),
    })?;
    // Where the last entry's data ends, and the error if the stream ended while the parser skipped the
    // padding after it (see below).
    let mut data_end = None;
    let mut cut_padding = None;
    for entry in archive.entries().map_err(stream)? {
        match entry {
            Ok(mut e) => {
                data_end = Some(e.raw_file_position() + e.size());
                x.entry(&mut e)?;
            }
            Err(e) => {
                cut_padding = Some(e);
                break;
            }
        }
    }
    // The diff_id is over the whole decompressed stream, trailing zero blocks (and any padding after them)
    // included, and the decoder must see EOF to check the compressed stream's own end.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(stream)?;
    let hashing = rest.into_inner();
    if let Some(e) = cut_padding {
        // Some writers (umoci 0.4 among them) end a layer right after the last file's data, without its
        // padding or the end-of-archive blocks; Go's archive/tar, and so docker and containerd, accept that.
        // So does berth, but only when the stream ends exactly there: any other cut is an error.
        if data_end != Some(hashing.size) {
            return Err(stream(e));
        }
    }
    x.finish()?;
    hashing.inner.finish()?;
    Ok(Applied {
        diff_id: hashing.hasher.finish(),
        size: hashing.size,
    })
}

/// The last parent directory used: entries of one directory come together in a tar, so one slot saves
/// nearly every path walk.
struct DirCache {
    path: Vec<u8>,
    fd: OwnedFd,
}

impl DirCache {
    fn get<'a>(
        &'a mut self,
        root: BorrowedFd<'a>,
        dir: &[u8],
        entry: &[u8],
    ) -> Result<BorrowedFd<'a>, LayerError> {
        if dir.is_empty() {
            return Ok(root);
        }
        if self.path != dir {
            self.fd = open_dir(root, dir, true).map_err(|e| parent_error(entry, dir, e))?;
            self.path.clear();
            self.path.extend_from_slice(dir);
        }
        Ok(self.fd.as_fd())
    }
}

struct Meta {
    mode: Mode,
    uid: u32,
    gid: u32,
    times: Timestamps,
}

struct Extractor {
    root: OwnedFd,
    cache: DirCache,
    /// The entry's name as the archive has it, for error messages.
    name: Vec<u8>,
    /// The cleaned name.
    path: Vec<u8>,
    /// The cleaned hardlink target, or the raw symlink target.
    target: Vec<u8>,
    buf: Vec<u8>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Directory times are set last: creating children changes them.
    dirs: Vec<(Vec<u8>, Timestamps)>,
    proc: ProcPath,
}

impl Extractor {
    fn new(root: OwnedFd) -> Result<Self, Errno> {
        // The cache slot starts out holding the root under the never-looked-up name "".
        let fd = open_dir(root.as_fd(), b"", false)?;
        Ok(Extractor {
            root,
            cache: DirCache {
                path: Vec::new(),
                fd,
            },
            name: Vec::new(),
            path: Vec::new(),
            target: Vec::new(),
            buf: vec![0; COPY_BUF],
            xattrs: Vec::new(),
            dirs: Vec::new(),
            proc: ProcPath::new(),
        })
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), LayerError> {
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let Extractor {
            root,
            cache,
            name,
            path,
            target,
            buf,
            xattrs,
            dirs,
            proc,
        } = self;
        let root = root.as_fd();
        name.clear();
        name.extend_from_slice(&entry.path_bytes());
        let name: &[u8] = name;
        clean(name, path).map_err(|reason| LayerError::refused(name, reason))?;
        let path: &[u8] = path;

        let mut meta = header_meta(entry.header())
            .map_err(|e| LayerError::refused(name, format!("malformed header: {e}")))?;
        read_pax(entry, xattrs, &mut meta)
            .map_err(|e| LayerError::entry(name, "reading its PAX header", e))?;
        let xattrs: &[(Vec<u8>, Vec<u8>)] = xattrs;

        let (dir, base) = split(path);
        if let Some(wh) = base.strip_prefix(WHITEOUT_PREFIX) {
            let parent = cache.get(root, dir, name)?;
            return whiteout(root, parent, dir, wh, name, &meta);
        }

        let kind = match kind {
            // Pre-POSIX archives mark directories with a trailing slash on a regular entry.
            EntryType::Regular if name.ends_with(b"/") => EntryType::Directory,
            EntryType::Continuous | EntryType::GNUSparse => EntryType::Regular,
            k => k,
        };
        let err = |what| move |e| LayerError::entry(name, what, e);

        if path.is_empty() {
            if kind != EntryType::Directory {
                return Err(LayerError::refused(
                    name,
                    "only a directory can stand for the layer root",
                ));
            }
            rfs::fchown(
                root,
                meta::owner(meta.uid, meta.gid).0,
                meta::owner(meta.uid, meta.gid).1,
            )
            .map_err(err("changing the owner"))?;
            rfs::fchmod(root, meta.mode).map_err(err("changing the mode"))?;
            for (k, v) in xattrs {
                meta::fset_xattr(root, k, v).map_err(err("setting an xattr"))?;
            }
            dirs.push((Vec::new(), meta.times));
            return Ok(());
        }

        match kind {
            EntryType::Regular => {
                let parent = cache.get(root, dir, name)?;
                let fd = replacing(parent, base, || {
                    rfs::openat(
                        parent,
                        base,
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(0o600),
                    )
                })
                .map_err(err("creating the file"))?;
                let mut file = File::from(fd);
                copy_data(entry, &mut file, buf, name)?;
                let (u, g) = meta::owner(meta.uid, meta.gid);
                // Owner before mode: chown clears setuid/setgid, and it also drops security.capability,
                // hence xattrs after both.
                rfs::fchown(&file, u, g).map_err(err("changing the owner"))?;
                rfs::fchmod(&file, meta.mode).map_err(err("changing the mode"))?;
                for (k, v) in xattrs {
                    meta::fset_xattr(file.as_fd(), k, v).map_err(err("setting an xattr"))?;
                }
                rfs::futimens(&file, &meta.times).map_err(err("setting its times"))?;
            }
            EntryType::Directory => {
                let parent = cache.get(root, dir, name)?;
                match rfs::mkdirat(parent, base, Mode::from_raw_mode(0o700)) {
                    Ok(()) => {}
                    Err(Errno::EXIST) => {
                        let st = rfs::statat(parent, base, AtFlags::SYMLINK_NOFOLLOW)
                            .map_err(err("inspecting what it replaces"))?;
                        // A directory over a directory only updates its metadata.
                        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                            rfs::unlinkat(parent, base, AtFlags::empty())
                                .map_err(err("removing what it replaces"))?;
                            rfs::mkdirat(parent, base, Mode::from_raw_mode(0o700))
                                .map_err(err("creating the directory"))?;
                        }
                    }
                    Err(e) => return Err(err("creating the directory")(e)),
                }
                meta::chown_at(parent, base, meta.uid, meta.gid)
                    .map_err(err("changing the owner"))?;
                // chmodat follows a final symlink, but `base` is the directory made or checked above.
                rfs::chmodat(parent, base, meta.mode, AtFlags::empty())
                    .map_err(err("changing the mode"))?;
                if !xattrs.is_empty() {
                    let fd = rfs::openat(
                        parent,
                        base,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(err("opening the directory"))?;
                    for (k, v) in xattrs {
                        meta::fset_xattr(fd.as_fd(), k, v).map_err(err("setting an xattr"))?;
                    }
                }
                dirs.push((path.to_vec(), meta.times));
            }
            EntryType::Symlink => {
                target.clear();
                match entry.link_name_bytes() {
                    Some(t) if !t.is_empty() => target.extend_from_slice(&t),
                    _ => return Err(LayerError::refused(name, "symlink without a target")),
                }
                let parent = cache.get(root, dir, name)?;
                replacing(parent, base, || {
                    rfs::symlinkat(target.as_slice(), parent, base)
                })
                .map_err(err("creating the symlink"))?;
                finish_node(parent, base, &meta, xattrs, proc, false)
                    .map_err(|(w, e)| err(w)(e))?;
            }
            EntryType::Link => {
                let raw = match entry.link_name_bytes() {
                    Some(t) => t,
                    None => return Err(LayerError::refused(name, "hardlink without a target")),
                };
                let shown = String::from_utf8_lossy(&raw).into_owned();
                clean(&raw, target).map_err(|reason| {
                    LayerError::refused(name, format!("hardlink target {shown:?}: {reason}"))
                })?;
                if target.is_empty() {
                    return Err(LayerError::refused(name, "hardlink to the layer root"));
                }
                let (tdir, tbase) = split(target);
                let missing = || {
                    LayerError::refused(
                        name,
                        format!("hardlink target {shown:?} does not exist in this layer"),
                    )
                };
                let tfd = if tdir == dir {
                    None
                } else {
                    Some(open_dir(root, tdir, false).map_err(|e| match e {
                        Errno::NOENT => missing(),
                        Errno::LOOP | Errno::XDEV | Errno::NOTDIR => LayerError::refused(
                            name,
                            format!("hardlink target {shown:?}: {}", resolve::explain(tdir, e)),
                        ),
                        e => err("opening the hardlink target's directory")(e),
                    })?)
                };
                let parent = cache.get(root, dir, name)?;
                let tparent = tfd.as_ref().map_or(parent, |fd| fd.as_fd());
                match replacing(parent, base, || {
                    rfs::linkat(tparent, tbase, parent, base, AtFlags::empty())
                }) {
                    Ok(()) => {}
                    Err(Errno::NOENT) => return Err(missing()),
                    Err(e) => return Err(err("creating the hardlink")(e)),
                }
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let h = entry.header();
                let bad =
                    |e: io::Error| LayerError::refused(name, format!("malformed header: {e}"));
                let (ftype, dev) = match kind {
                    EntryType::Fifo => (FileType::Fifo, 0),
                    _ => {
                        let major = h.device_major().map_err(bad)?.unwrap_or(0);
                        let minor = h.device_minor().map_err(bad)?.unwrap_or(0);
                        let ftype = if kind == EntryType::Char {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (ftype, rfs::makedev(major, minor))
                    }
                };
                let parent = cache.get(root, dir, name)?;
                replacing(parent, base, || {
                    rfs::mknodat(parent, base, ftype, meta.mode, dev)
                })
                .map_err(err("creating the node"))?;
                finish_node(parent, base, &meta, xattrs, proc, true).map_err(|(w, e)| err(w)(e))?;
            }
            other => {
                return Err(LayerError::refused(
                    name,
                    format!("unsupported entry type {other:?}"),
                ))
            }
        }
        Ok(())
    }

    /// Sets directory times, now that nothing more is created inside them.
    fn finish(&mut self) -> Result<(), LayerError> {
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        for (path, times) in &self.dirs {
            let err = |e| LayerError::entry(path, "setting its times", e);
            if path.is_empty() {
                rfs::futimens(&self.root, times).map_err(err)?;
                continue;
            }
            match rfs::openat2(
                &self.root,
                path.as_slice(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                resolve,
            ) {
                Ok(fd) => rfs::futimens(&fd, times).map_err(err)?,
                // A later entry replaced or whited out the directory (or one above it).
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => {}
                Err(e) => return Err(err(e)),
            }
        }
        Ok(())
    }
}

/// Runs `create`; if something already has the name (from an earlier entry of this layer), removes it
/// and tries once more. Trying first saves a syscall per entry in the usual case of a fresh name.
fn replacing<T>(
    parent: BorrowedFd<'_>,
    base: &[u8],
    mut create: impl FnMut() -> Result<T, Errno>,
) -> Result<T, Errno> {
    match create() {
        Err(Errno::EXIST) => {
            remove_any(parent, base)?;
            create()
        }
        other => other,
    }
}

/// Owner, mode, xattrs and times of a node that cannot be opened: a symlink or a device/fifo.
fn finish_node(
    parent: BorrowedFd<'_>,
    base: &[u8],
    meta: &Meta,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    proc: &mut ProcPath,
    chmod: bool,
) -> Result<(), (&'static str, Errno)> {
    meta::chown_at(parent, base, meta.uid, meta.gid).map_err(|e| ("changing the owner", e))?;
    if chmod {
        // chmodat follows a final symlink, but `base` is the node just made.
        rfs::chmodat(parent, base, meta.mode, AtFlags::empty())
            .map_err(|e| ("changing the mode", e))?;
    }
    for (k, v) in xattrs {
        meta::lset_xattr(proc.at(parent, base), k, v).map_err(|e| ("setting an xattr", e))?;
    }
    meta::utimes_at(parent, base, &meta.times).map_err(|e| ("setting its times", e))
}

fn whiteout(
    root: BorrowedFd<'_>,
    parent: BorrowedFd<'_>,
    dir: &[u8],
    wh: &[u8],
    name: &[u8],
    meta: &Meta,
) -> Result<(), LayerError> {
    let err = |what| move |e| LayerError::entry(name, what, e);
    if wh == b".wh..opq" {
        let fd;
        let target = if dir.is_empty() {
            root
        } else {
            fd = resolve::reopen_dir(parent).map_err(err("opening the opaque directory"))?;
            fd.as_fd()
        };
        return meta::fset_xattr(target, OPAQUE_XATTR, b"y")
            .map_err(err("marking the directory opaque"));
    }
    // Other `.wh..wh.` names are aufs bookkeeping (hardlink dirs, plinks): nothing for overlayfs.
    if wh.starts_with(WHITEOUT_PREFIX) {
        return Ok(());
    }
    if wh.is_empty() || wh == b"." || wh == b".." {
        return Err(LayerError::refused(name, "whiteout of an invalid name"));
    }
    remove_any(parent, wh).map_err(err("removing the whited-out path"))?;
    rfs::mknodat(parent, wh, FileType::CharacterDevice, Mode::empty(), 0)
        .map_err(err("creating the whiteout device"))?;
    meta::chown_at(parent, wh, meta.uid, meta.gid).map_err(err("changing the owner"))?;
    meta::utimes_at(parent, wh, &meta.times).map_err(err("setting its times"))
}

fn header_meta(h: &tar::Header) -> io::Result<Meta> {
    let big = |what| io::Error::new(io::ErrorKind::InvalidData, format!("{what} out of range"));
    let uid = u32::try_from(h.uid()?).map_err(|_| big("uid"))?;
    let gid = u32::try_from(h.gid()?).map_err(|_| big("gid"))?;
    let mtime = Timespec {
        tv_sec: i64::try_from(h.mtime()?).map_err(|_| big("mtime"))?,
        tv_nsec: 0,
    };
    Ok(Meta {
        mode: meta::mode(h.mode()?),
        uid,
        gid,
        times: meta::times(mtime, mtime),
    })
}

/// Picks xattrs and sub-second times from the entry's PAX header.
fn read_pax<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    xattrs: &mut Vec<(Vec<u8>, Vec<u8>)>,
    meta: &mut Meta,
) -> io::Result<()> {
    xattrs.clear();
    let Some(exts) = entry.pax_extensions()? else {
        return Ok(());
    };
    let mut atime = None;
    for ext in exts {
        let ext = ext?;
        let key = ext.key_bytes();
        if let Some(x) = key.strip_prefix(b"SCHILY.xattr.") {
            // overlayfs reads its own metadata from these; only whiteout conversion may produce them, or a
            // layer could forge redirects and metacopy into lower layers.
            if !x.starts_with(OVERLAY_XATTR_PREFIX) {
                xattrs.push((x.to_vec(), ext.value_bytes().to_vec()));
            }
        } else if key == b"mtime" {
            if let Some(t) = pax_time(ext.value_bytes()) {
                meta.times.last_modification = t;
            }
        } else if key == b"atime" {
            atime = pax_time(ext.value_bytes());
        }
    }
    meta.times.last_access = atime.unwrap_or(meta.times.last_modification);
    Ok(())
}

/// A PAX time: decimal seconds, optionally negative, optionally with a fraction.
fn pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nsec: i64 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        if !d.is_ascii_digit() {
            return None;
        }
        nsec += i64::from(d - b'0') * 10i64.pow(8 - i as u32);
    }
    Some(if !neg {
        Timespec {
            tv_sec: secs,
            tv_nsec: nsec,
        }
    } else if nsec == 0 {
        Timespec {
            tv_sec: -secs,
            tv_nsec: 0,
        }
    } else {
        Timespec {
            tv_sec: -secs - 1,
            tv_nsec: 1_000_000_000 - nsec,
        }
    })
}

fn copy_data<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    file: &mut File,
    buf: &mut [u8],
    name: &[u8],
) -> Result<(), LayerError> {
    let mut left = entry.size();
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        let n = match entry.read(&mut buf[..want]) {
            Ok(0) => {
                let eof = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the layer stream ends inside the file",
                );
                return Err(LayerError::entry(name, "reading its data", eof));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LayerError::entry(name, "reading its data", e)),
        };
        file.write_all(&buf[..n])
            .map_err(|e| LayerError::entry(name, "writing the file", e))?;
        left -= n as u64;
    }
    Ok(())
}
