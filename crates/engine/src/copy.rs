//! `docker cp`: files between a container and the host (or a tar stream), with docker's rules for files,
//! directories, a trailing `/.` and a destination that exists or not (moby pkg/archive/copy.go).
//!
//! Every path inside a container is resolved inside it: openat2(RESOLVE_IN_ROOT) from the container's rootfs
//! (or from the host directory of the bind mount or volume whose destination is the longest prefix of the
//! path), and every entry is created with *at() calls on a single name below a directory descriptor resolved
//! that way. A symlink in the container (`/etc`, `../../..`) therefore resolves to a place inside the
//! container, never on the host, even while the container's processes change the tree under us.
//!
//! Data moves as a tar stream, as in docker: the source side writes a tar of the source path, the
//! destination side unpacks it. The same stream is what `docker cp CONTAINER:PATH -` prints and what
//! `docker cp - CONTAINER:PATH` reads.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use image::{Digest, Store, StoreError};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;
use serde_json::Value;

use crate::container::{Engine, EngineError};
use crate::lock::Lock;
use crate::records::{Container, Status};

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A failed system call on a path, worded as docker (Go) words it: "lstat /x: no such file or directory".
    #[error("{what} {}: {}", path.display(), errno_text(source))]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("Could not find the file {path} in container {container}")]
    NotFound { path: String, container: String },
    #[error("{0}")]
    Invalid(String),
    #[error("container rootfs is marked read-only")]
    ReadOnlyRootfs,
    #[error("mounted volume is marked read-only")]
    ReadOnlyVolume,
    #[error("tar stream: {0}")]
    Tar(String),
    /// Something the container side said (docker prints these as the daemon's errors).
    #[error("{0}")]
    InContainer(Box<CopyError>),
}

impl CopyError {
    /// Whether docker would report this as the daemon's error (the container side failed).
    pub fn from_container(&self) -> bool {
        matches!(
            self,
            CopyError::InContainer(_)
                | CopyError::NotFound { .. }
                | CopyError::Engine(_)
                | CopyError::Store(_)
        )
    }
}

/// Go's error text for an errno: "no such file or directory", without Rust's " (os error 2)".
fn errno_text(e: &io::Error) -> String {
    let s = match e.raw_os_error() {
        Some(n) => {
            let full = io::Error::from_raw_os_error(n).to_string();
            full.split(" (os error").next().unwrap_or(&full).to_string()
        }
        None => e.to_string(),
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => s,
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CopyError + 'a {
    move |source| CopyError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn errno<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> CopyError + 'a {
    move |e| CopyError::Io {
        what,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// A path as the user wrote it: absolute and lexically clean, plus whether it ended in `/` or `/.` (docker
/// gives those meaning: "must be a directory", "the directory's contents").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CPath {
    pub clean: PathBuf,
    pub trailing_slash: bool,
    pub trailing_dot: bool,
}

impl CPath {
    /// `raw` relative to `base` (a container path is relative to `/`, a host path to the working directory),
    /// `..` resolved lexically and never above `/` (docker: filepath.Join("/", path)).
    pub fn parse(raw: &OsStr, base: &Path) -> CPath {
        let bytes = raw.as_bytes();
        let trailing_dot = bytes == b"." || bytes.ends_with(b"/.");
        let trailing_slash = !trailing_dot && bytes.ends_with(b"/");
        let joined = base.join(Path::new(raw));
        CPath {
            clean: clean(&joined),
            trailing_slash,
            trailing_dot,
        }
    }

    fn plain(clean: PathBuf) -> CPath {
        CPath {
            clean,
            trailing_slash: false,
            trailing_dot: false,
        }
    }

    /// Says "this must be a directory": a trailing `/` or `/.`.
    pub fn asserts_dir(&self) -> bool {
        self.trailing_slash || self.trailing_dot
    }

    fn parent(&self) -> CPath {
        CPath::plain(
            self.clean
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/")),
        )
    }

    /// The last name; None for `/`.
    fn base(&self) -> Option<&OsStr> {
        self.clean.file_name()
    }

    /// The path with its trailing `/` or `/.` (as the kernel should see it).
    fn with_trailing(&self) -> PathBuf {
        let mut s = self.clean.clone().into_os_string();
        if self.trailing_dot {
            s.push(if self.clean == Path::new("/") {
                "."
            } else {
                "/."
            });
        } else if self.trailing_slash && self.clean != Path::new("/") {
            s.push("/");
        }
        PathBuf::from(s)
    }
}

impl std::fmt::Display for CPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.with_trailing().display())
    }
}

/// `/a/./b/../c` -> `/a/c`; never above `/`.
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

#[derive(Clone, Debug)]
pub struct Info {
    pub kind: Kind,
    pub mode: u32,
    pub size: u64,
    /// A symlink's target.
    pub link: Option<PathBuf>,
}

fn kind_of(mode: u32) -> Kind {
    match FileType::from_raw_mode(mode) {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink,
        _ => Kind::Other,
    }
}

/// One place a tree's paths resolve in: the tree's own root (`/`), or a bind mount / volume.
struct Root {
    dst: PathBuf,
    host: PathBuf,
    /// O_PATH descriptor of the directory; None for a mounted file (`/etc/hosts`).
    dir: Option<OwnedFd>,
    readonly: bool,
}

/// A file tree whose paths never resolve outside it: the host's (`/`), or a container's (its rootfs and the
/// bind mounts and volumes in its config.json).
pub struct Tree {
    /// Longest destination first, so the deepest mount wins.
    roots: Vec<Root>,
}

fn open_dir_path(path: &Path) -> Result<OwnedFd, CopyError> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno("open", path))
}

impl Tree {
    /// The host's tree: paths resolve as they always do (in the root `/`).
    pub fn host() -> Result<Tree, CopyError> {
        Ok(Tree {
            roots: vec![Root {
                dst: "/".into(),
                host: "/".into(),
                dir: Some(open_dir_path(Path::new("/"))?),
                readonly: false,
            }],
        })
    }

    /// A container's tree from its config.json: the rootfs at `rootfs`, then every bind mount (binds,
    /// volumes, the /etc files berth provides) at its destination. Mounts whose source is gone are left out.
    pub fn container(config: &Value, rootfs: &Path) -> Result<Tree, CopyError> {
        let mut roots = vec![Root {
            dst: "/".into(),
            host: rootfs.to_path_buf(),
            dir: Some(open_dir_path(rootfs)?),
            readonly: config["root"]["readonly"].as_bool().unwrap_or(false),
        }];
        for m in config["mounts"].as_array().into_iter().flatten() {
            let options: Vec<&str> = m["options"]
                .as_array()
                .map(|o| o.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let is_bind =
                m["type"] == "bind" || options.iter().any(|o| *o == "bind" || *o == "rbind");
            let (Some(dst), Some(src)) = (m["destination"].as_str(), m["source"].as_str()) else {
                continue;
            };
            if !is_bind || !dst.starts_with('/') {
                continue;
            }
            let host = PathBuf::from(src);
            let Ok(meta) = std::fs::metadata(&host) else {
                continue;
            };
            let dir = if meta.is_dir() {
                Some(open_dir_path(&host)?)
            } else {
                None
            };
            let dst = clean(Path::new(dst));
            // A later mount at the same destination hides an earlier one, as in the container.
            roots.retain(|r| r.dst != dst);
            roots.push(Root {
                dst,
                host,
                dir,
                readonly: options.contains(&"ro"),
            });
        }
        roots.sort_by_key(|r| std::cmp::Reverse(r.dst.components().count()));
        Ok(Tree { roots })
    }

    /// The root a clean path falls in and the path relative to it.
    fn locate<'a>(&self, path: &'a Path) -> (&Root, &'a Path) {
        for r in &self.roots {
            if let Ok(rel) = path.strip_prefix(&r.dst) {
                return (r, rel);
            }
        }
        // Unreachable while "/" is among the roots; answer the last (the shallowest) anyway.
        let r = &self.roots[self.roots.len() - 1];
        (r, path.strip_prefix("/").unwrap_or(path))
    }

    /// The mount whose destination is exactly `path` (not the tree's root).
    fn mount_at(&self, path: &Path) -> Option<&Root> {
        self.roots
            .iter()
            .find(|r| r.dst == path && r.dst != Path::new("/"))
    }

    fn writable(&self, path: &Path) -> Result<(), CopyError> {
        let (r, _) = self.locate(path);
        if !r.readonly {
            return Ok(());
        }
        Err(if r.dst == Path::new("/") {
            CopyError::ReadOnlyRootfs
        } else {
            CopyError::ReadOnlyVolume
        })
    }

    /// The symlink at exactly `p` (resolved in its root, not following a link at its end), if there is one.
    fn link_at(&self, p: &Path) -> Option<PathBuf> {
        let (root, rel) = self.locate(p);
        let dir = root.dir.as_ref()?;
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let fd = rustix::fs::openat2(
            dir,
            rel,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
        .ok()?;
        let st = rustix::fs::fstat(&fd).ok()?;
        if kind_of(st.st_mode) != Kind::Symlink {
            return None;
        }
        let t = rustix::fs::readlinkat(&fd, "", Vec::new()).ok()?;
        Some(PathBuf::from(OsString::from_vec(t.into_bytes())))
    }

    /// `p` with each symlink before its last component replaced by its target, read as a path of this tree,
    /// so that a link into a mount reaches the mount (the kernel resolves a link within the root it started
    /// in). Every lookup is itself confined; missing components stay as they are.
    fn resolve_parents(&self, p: &Path) -> PathBuf {
        // With no mounts the kernel's confined resolution is the whole story.
        if self.roots.len() == 1 {
            return p.to_path_buf();
        }
        let Some(last) = p.file_name() else {
            return p.to_path_buf();
        };
        let mut pending: Vec<OsString> = p
            .parent()
            .map(|d| {
                d.components()
                    .map(|c| c.as_os_str().to_os_string())
                    .collect()
            })
            .unwrap_or_default();
        pending.reverse();
        let mut out = PathBuf::from("/");
        let mut hops = 0;
        while let Some(c) = pending.pop() {
            match c.as_bytes() {
                b"/" | b"." | b"" => continue,
                b".." => {
                    out.pop();
                    continue;
                }
                _ => {}
            }
            let next = out.join(&c);
            // Past 40 links the kernel's own lookup reports the loop.
            match self.link_at(&next).filter(|_| hops < 40) {
                Some(target) => {
                    hops += 1;
                    if target.is_absolute() {
                        out = PathBuf::from("/");
                    }
                    let mut parts: Vec<OsString> = target
                        .components()
                        .map(|c| c.as_os_str().to_os_string())
                        .collect();
                    parts.reverse();
                    pending.extend(parts);
                }
                None => out = next,
            }
        }
        out.join(last)
    }

    /// Opens `p` in its root. `follow`: whether a symlink as the last component is followed (earlier ones
    /// always are, inside the tree).
    fn open(&self, p: &CPath, flags: OFlags, follow: bool) -> io::Result<OwnedFd> {
        let resolved = self.resolve_parents(&p.clean);
        let (root, rel) = self.locate(&resolved);
        let mut flags = flags | OFlags::CLOEXEC;
        if !follow {
            flags |= OFlags::NOFOLLOW;
        }
        let Some(dir) = &root.dir else {
            if !rel.as_os_str().is_empty() || p.asserts_dir() {
                return Err(Errno::NOTDIR.into());
            }
            // The mounted file is the host path the user named: a symlink there is theirs to follow.
            return Ok(rustix::fs::open(
                &root.host,
                flags - OFlags::NOFOLLOW,
                Mode::empty(),
            )?);
        };
        let mut rel = rel.as_os_str().to_os_string();
        if rel.is_empty() {
            rel.push(".");
        } else if p.trailing_dot {
            rel.push("/.");
        } else if p.trailing_slash {
            rel.push("/");
        }
        Ok(rustix::fs::openat2(
            dir,
            &rel,
            flags,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )?)
    }

    /// lstat: None when nothing is there.
    pub fn lstat(&self, p: &CPath) -> Result<Option<Info>, CopyError> {
        let fd = match self.open(p, OFlags::PATH, false) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(io_err("lstat", &p.with_trailing())(e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(errno("lstat", &p.with_trailing()))?;
        let kind = kind_of(st.st_mode);
        let link = if kind == Kind::Symlink {
            let t =
                rustix::fs::readlinkat(&fd, "", Vec::new()).map_err(errno("readlink", &p.clean))?;
            Some(PathBuf::from(OsString::from_vec(t.into_bytes())))
        } else {
            None
        };
        Ok(Some(Info {
            kind,
            mode: st.st_mode,
            size: st.st_size as u64,
            link,
        }))
    }

    /// Follows a symlink at the end of `p` (up to 10 times), each target read as a path of this tree;
    /// returns the final path and what is there. As docker's CopyInfoDestinationPath: a missing last
    /// component is fine when its parent is a directory.
    pub fn follow(&self, p: &CPath) -> Result<(CPath, Option<Info>), CopyError> {
        let mut cur = p.clone();
        for _ in 0..=10 {
            match self.lstat(&cur)? {
                Some(info) if info.kind == Kind::Symlink => {
                    let target = info.link.unwrap_or_default();
                    let joined = cur.parent().clean.join(&target);
                    let mut next = CPath::plain(clean(&joined));
                    // `link/` and `link/.` keep saying "directory" about the target.
                    next.trailing_slash = cur.trailing_slash;
                    next.trailing_dot = cur.trailing_dot;
                    cur = next;
                }
                other => return Ok((cur, other)),
            }
        }
        Err(CopyError::Invalid(format!("too many symlinks in {p}")))
    }

    /// Writes a tar of `src` (not following a symlink at its end) to `out`. Entries are named `top`,
    /// `top/child`, ...; with `top` None the source itself is `.` and its children are `child`, ... Returns
    /// `out` and the bytes of file data written.
    pub fn archive<W: Write>(
        &self,
        src: &CPath,
        top: Option<&OsStr>,
        out: W,
    ) -> Result<(W, u64), CopyError> {
        let mut w = Archiver {
            tree: self,
            b: tar::Builder::new(out),
            links: HashMap::new(),
            bytes: 0,
        };
        w.b.mode(tar::HeaderMode::Complete);
        let name = match top {
            Some(t) => PathBuf::from(t),
            None => PathBuf::from("."),
        };
        w.node(Node::Path(src), &src.clean, &name)?;
        let bytes = w.bytes;
        let out =
            w.b.into_inner()
                .map_err(|e| CopyError::Tar(format!("finish: {e}")))?;
        Ok((out, bytes))
    }

    /// Unpacks a tar stream into the directory `dir` of this tree. `prefix`: a name put in front of every
    /// entry (docker's rebase of the top entry onto the destination's name). Returns the bytes of file
    /// data written.
    pub fn extract<R: Read>(
        &self,
        dir: &CPath,
        input: R,
        prefix: Option<&OsStr>,
        owner: Owner,
    ) -> Result<u64, CopyError> {
        // Entries are compared with the destination in its resolved form (see `resolve_parents`).
        let dir = &CPath::plain(self.resolve_parents(&dir.clean));
        let mut ar = tar::Archive::new(input);
        let mut x = Extractor {
            tree: self,
            owner,
            prefix: prefix.map(PathBuf::from),
            dirs: Vec::new(),
            bytes: 0,
        };
        let entries = ar
            .entries()
            .map_err(|e| CopyError::Tar(format!("read: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| CopyError::Tar(format!("read: {e}")))?;
            let raw = entry.path_bytes().into_owned();
            let mut rel = entry_path(&raw)?;
            if let Some(p) = prefix {
                rel = Path::new(p).join(rel);
            }
            let target = clean(&dir.clean.join(&rel));
            x.entry(&mut entry, &target, dir)?;
        }
        x.finish()?;
        Ok(x.bytes)
    }
}

/// A tar entry's name as a relative path: no `..` (an entry may not leave the destination), no leading
/// `/` or `./`.
fn entry_path(raw: &[u8]) -> Result<PathBuf, CopyError> {
    let mut out = PathBuf::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                return Err(CopyError::Tar(format!(
                    "entry {:?} leaves the destination (..)",
                    String::from_utf8_lossy(raw)
                )))
            }
            p => out.push(OsStr::from_bytes(p)),
        }
    }
    Ok(out)
}

/// Who owns what `extract` creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The uid and gid in the tar (`cp -a`).
    Keep,
    /// root:root (docker's default inside the container).
    Root,
    /// Whoever runs the copy (docker's default on the host).
    Caller,
}

enum Node<'a> {
    /// The source itself, by its path in the tree.
    Path(&'a CPath),
    /// A name in an open directory.
    Child(BorrowedFd<'a>, &'a OsStr),
}

struct Archiver<'t, W: Write> {
    tree: &'t Tree,
    b: tar::Builder<W>,
    /// Files seen with more than one link, by (dev, ino): later ones become hard links to the first name.
    links: HashMap<(u64, u64), PathBuf>,
    bytes: u64,
}

impl<W: Write> Archiver<'_, W> {
    fn open(&self, node: &Node, at: &Path, flags: OFlags) -> Result<OwnedFd, CopyError> {
        let r = match node {
            Node::Path(p) => self.tree.open(p, flags, false),
            Node::Child(dir, name) => rustix::fs::openat(
                dir,
                *name,
                flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io::Error::from),
        };
        r.map_err(io_err("open", at))
    }

    fn tar_err(at: &Path) -> impl FnOnce(io::Error) -> CopyError + '_ {
        move |e| CopyError::Tar(format!("add {}: {e}", at.display()))
    }

    /// Adds the node at tree path `at` as `name`, and below it everything it holds.
    fn node(&mut self, node: Node, at: &Path, name: &Path) -> Result<(), CopyError> {
        // A mount point inside the walk is read from the mount, as the container sees it.
        let mount_point;
        let node = match node {
            Node::Child(..) if self.tree.mount_at(at).is_some() => {
                mount_point = CPath::plain(at.to_path_buf());
                Node::Path(&mount_point)
            }
            n => n,
        };
        let fd = self.open(&node, at, OFlags::PATH)?;
        let st = rustix::fs::fstat(&fd).map_err(errno("lstat", at))?;
        let mut h = tar::Header::new_gnu();
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(u64::from(st.st_uid));
        h.set_gid(u64::from(st.st_gid));
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                h.set_entry_type(tar::EntryType::Directory);
                let mut dir_name = name.as_os_str().to_os_string();
                if !dir_name.as_bytes().ends_with(b"/") {
                    dir_name.push("/");
                }
                self.b
                    .append_data(&mut h, Path::new(&dir_name), io::empty())
                    .map_err(Self::tar_err(at))?;
                let dfd = self.open(&node, at, OFlags::RDONLY | OFlags::DIRECTORY)?;
                let mut names: Vec<OsString> = Vec::new();
                let dir = rustix::fs::Dir::read_from(&dfd).map_err(errno("read directory", at))?;
                for e in dir {
                    let e = e.map_err(errno("read directory", at))?;
                    let n = e.file_name().to_bytes();
                    if n != b"." && n != b".." {
                        names.push(OsString::from_vec(n.to_vec()));
                    }
                }
                // Mounts here show even where the rootfs has no mount point (yet), as in the container.
                for r in &self.tree.roots {
                    if r.dst.parent() == Some(at) {
                        if let Some(n) = r.dst.file_name() {
                            if !names.iter().any(|x| x == n) {
                                names.push(n.to_os_string());
                            }
                        }
                    }
                }
                names.sort();
                for n in &names {
                    let child_at = at.join(n);
                    let child_name = name.join(n);
                    self.node(Node::Child(dfd.as_fd(), n), &child_at, &child_name)?;
                }
            }
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        let first = first.clone();
                        return self
                            .b
                            .append_link(&mut h, name, first)
                            .map_err(Self::tar_err(at));
                    }
                    self.links.insert(key, name.to_path_buf());
                }
                // O_NONBLOCK: if a FIFO was swapped in meanwhile, opening it must not hang.
                let f = File::from(self.open(&node, at, OFlags::RDONLY | OFlags::NONBLOCK)?);
                let now = rustix::fs::fstat(&f).map_err(errno("stat", at))?;
                if FileType::from_raw_mode(now.st_mode) != FileType::RegularFile {
                    return Err(CopyError::Invalid(format!(
                        "{}: changed while being copied",
                        at.display()
                    )));
                }
                // The size in the header is what gets read: a file that grows is cut, one that shrinks
                // is an error from the tar writer.
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(now.st_size as u64);
                self.b
                    .append_data(&mut h, name, f.take(now.st_size as u64))
                    .map_err(Self::tar_err(at))?;
                self.bytes += now.st_size as u64;
            }
            FileType::Symlink => {
                let t =
                    rustix::fs::readlinkat(&fd, "", Vec::new()).map_err(errno("readlink", at))?;
                h.set_entry_type(tar::EntryType::Symlink);
                self.b
                    .append_link(&mut h, name, OsStr::from_bytes(t.as_bytes()))
                    .map_err(Self::tar_err(at))?;
            }
            t @ (FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo) => {
                h.set_entry_type(match t {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                if t != FileType::Fifo {
                    let (maj, min) = (rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev));
                    h.set_device_major(maj).map_err(Self::tar_err(at))?;
                    h.set_device_minor(min).map_err(Self::tar_err(at))?;
                }
                self.b
                    .append_data(&mut h, name, io::empty())
                    .map_err(Self::tar_err(at))?;
            }
            // Sockets have no tar form; docker leaves them out too.
            _ => {}
        }
        Ok(())
    }
}

struct Extractor<'t> {
    tree: &'t Tree,
    owner: Owner,
    /// Put in front of every entry's name (and a hard link's target).
    prefix: Option<PathBuf>,
    /// Directories whose mode, owner and times are set at the end (writing into them changes their times;
    /// a read-only mode could stop the writes).
    dirs: Vec<(PathBuf, tar::Header)>,
    bytes: u64,
}

impl Extractor<'_> {
    fn ids(&self, h: &tar::Header) -> Option<(u32, u32)> {
        match self.owner {
            Owner::Caller => None,
            Owner::Root => Some((0, 0)),
            Owner::Keep => Some((
                u32::try_from(h.uid().unwrap_or(0)).unwrap_or(0),
                u32::try_from(h.gid().unwrap_or(0)).unwrap_or(0),
            )),
        }
    }

    /// The directory `p`, created (0755, with missing parents) if it is not there.
    fn dir(&self, p: &Path) -> Result<OwnedFd, CopyError> {
        let cp = CPath::plain(p.to_path_buf());
        match self.tree.open(&cp, OFlags::PATH | OFlags::DIRECTORY, true) {
            Ok(fd) => Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && p != Path::new("/") => {
                let parent = p.parent().unwrap_or(Path::new("/"));
                let name = p.file_name().unwrap_or_default();
                let pfd = self.dir(parent)?;
                self.tree.writable(p)?;
                match rustix::fs::mkdirat(&pfd, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(errno("mkdir", p)(e)),
                }
                self.tree
                    .open(&cp, OFlags::PATH | OFlags::DIRECTORY, true)
                    .map_err(io_err("open", p))
            }
            Err(e) => Err(io_err("open", p)(e)),
        }
    }

    fn entry<R: Read>(
        &mut self,
        e: &mut tar::Entry<R>,
        target: &Path,
        dest: &CPath,
    ) -> Result<(), CopyError> {
        // Earlier entries may have made symlinks of the directories on the way: follow them (inside the
        // tree) so a mount point or a read-only mount behind one is seen as such.
        let target = &self.tree.resolve_parents(target);
        let h = e.header().clone();
        let ty = h.entry_type();
        let is_dir = ty == tar::EntryType::Directory;
        if !(ty.is_file()
            || is_dir
            || ty.is_symlink()
            || ty.is_hard_link()
            || ty.is_character_special()
            || ty.is_block_special()
            || ty.is_fifo())
        {
            // pax and GNU extension headers are read by the tar reader; anything else has no file form.
            return Ok(());
        }
        // The destination directory itself (the `.` entry of a `/.` copy, or a tar of the directory).
        // docker leaves the destination directory as it is.
        if *target == dest.clean {
            if !is_dir {
                return Err(CopyError::Invalid(format!(
                    "cannot overwrite directory {:?} with non-directory",
                    target.display().to_string()
                )));
            }
            return Ok(());
        }
        self.tree.writable(target)?;
        if let Some(m) = self.tree.mount_at(target) {
            // A mount point cannot be replaced: a directory entry describes it, a file entry fills it.
            return match (&m.dir, is_dir, ty.is_file()) {
                (Some(_), true, _) => {
                    self.dirs.push((target.to_path_buf(), h));
                    Ok(())
                }
                (None, _, true) => {
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .truncate(true)
                        .open(&m.host)
                        .map_err(io_err("open", target))?;
                    self.bytes += io::copy(e, &mut f).map_err(io_err("write", target))?;
                    Ok(())
                }
                _ => Err(CopyError::Invalid(format!(
                    "cannot overwrite mount point {} with a different kind of file",
                    target.display()
                ))),
            };
        }
        let parent = target.parent().unwrap_or(Path::new("/"));
        let name = target.file_name().unwrap_or_default();
        let pfd = self.dir(parent)?;
        match rustix::fs::statat(&pfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let was_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                match (was_dir, is_dir) {
                    (true, true) => {
                        self.dirs.push((target.to_path_buf(), h));
                        return Ok(());
                    }
                    (true, false) => {
                        return Err(CopyError::Invalid(format!(
                            "cannot overwrite directory {:?} with non-directory",
                            target.display().to_string()
                        )))
                    }
                    (false, true) => {
                        return Err(CopyError::Invalid(format!(
                            "cannot overwrite non-directory {:?} with directory",
                            target.display().to_string()
                        )))
                    }
                    // A file, symlink or device is replaced (never written through: a symlink there
                    // must not redirect the write).
                    (false, false) => rustix::fs::unlinkat(&pfd, name, AtFlags::empty())
                        .map_err(errno("remove", target))?,
                }
            }
            Err(Errno::NOENT) => {}
            Err(err) => return Err(errno("lstat", target)(err)),
        }
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let ids = self.ids(&h);
        let mtime = h.mtime().unwrap_or(0);
        if is_dir {
            rustix::fs::mkdirat(&pfd, name, Mode::from_raw_mode(0o700))
                .map_err(errno("mkdir", target))?;
            self.dirs.push((target.to_path_buf(), h));
            return Ok(());
        }
        if ty.is_file() {
            let fd = rustix::fs::openat(
                &pfd,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(errno("create", target))?;
            let mut f = File::from(fd);
            self.bytes += io::copy(e, &mut f).map_err(io_err("write", target))?;
            // Owner before mode: chown clears set-uid and set-gid bits.
            if let Some((u, g)) = ids {
                rustix::fs::fchown(
                    &f,
                    Some(rustix::fs::Uid::from_raw(u)),
                    Some(rustix::fs::Gid::from_raw(g)),
                )
                .map_err(errno("chown", target))?;
            }
            rustix::fs::fchmod(&f, Mode::from_raw_mode(mode)).map_err(errno("chmod", target))?;
            rustix::fs::futimens(&f, &times(mtime)).map_err(errno("set times of", target))?;
            return Ok(());
        }
        if ty.is_symlink() || ty.is_hard_link() {
            let link = e
                .link_name_bytes()
                .map(|l| l.into_owned())
                .unwrap_or_default();
            if ty.is_symlink() {
                // A symlink is only text: it resolves inside the container whenever it is used.
                rustix::fs::symlinkat(OsStr::from_bytes(&link), &pfd, name)
                    .map_err(errno("symlink", target))?;
            } else {
                // The link's target is an earlier entry of this same stream, below the destination.
                let mut rel = entry_path(&link)?;
                if let Some(p) = &self.prefix {
                    rel = p.join(rel);
                }
                let from = clean(&dest.clean.join(rel));
                let from_parent = self.dir(from.parent().unwrap_or(Path::new("/")))?;
                rustix::fs::linkat(
                    &from_parent,
                    from.file_name().unwrap_or_default(),
                    &pfd,
                    name,
                    AtFlags::empty(),
                )
                .map_err(errno("link", target))?;
                return Ok(());
            }
        } else {
            let ft = if ty.is_character_special() {
                FileType::CharacterDevice
            } else if ty.is_block_special() {
                FileType::BlockDevice
            } else {
                FileType::Fifo
            };
            let dev = rustix::fs::makedev(
                h.device_major().ok().flatten().unwrap_or(0),
                h.device_minor().ok().flatten().unwrap_or(0),
            );
            rustix::fs::mknodat(&pfd, name, ft, Mode::from_raw_mode(mode), dev)
                .map_err(errno("mknod", target))?;
        }
        if let Some((u, g)) = ids {
            rustix::fs::chownat(
                &pfd,
                name,
                Some(rustix::fs::Uid::from_raw(u)),
                Some(rustix::fs::Gid::from_raw(g)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(errno("chown", target))?;
        }
        if !ty.is_symlink() {
            rustix::fs::chmodat(&pfd, name, Mode::from_raw_mode(mode), AtFlags::empty())
                .map_err(errno("chmod", target))?;
        }
        rustix::fs::utimensat(&pfd, name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(errno("set times of", target))?;
        Ok(())
    }

    /// Directory metadata, deepest first.
    fn finish(&mut self) -> Result<(), CopyError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (p, h) in dirs {
            let fd = self
                .tree
                .open(
                    &CPath::plain(p.clone()),
                    OFlags::RDONLY | OFlags::DIRECTORY,
                    false,
                )
                .map_err(io_err("open", &p))?;
            if let Some((u, g)) = self.ids(&h) {
                rustix::fs::fchown(
                    &fd,
                    Some(rustix::fs::Uid::from_raw(u)),
                    Some(rustix::fs::Gid::from_raw(g)),
                )
                .map_err(errno("chown", &p))?;
            }
            let mode = h.mode().unwrap_or(0o755) & 0o7777;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(errno("chmod", &p))?;
            rustix::fs::futimens(&fd, &times(h.mtime().unwrap_or(0)))
                .map_err(errno("set times of", &p))?;
        }
        Ok(())
    }
}

fn times(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(0),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// A container's files, readable and writable whether it runs or not. A stopped container's rootfs is
/// mounted for the copy (and unmounted after) under the container's lock, so it cannot start meanwhile.
pub struct ContainerFiles {
    pub container: Container,
    tree: Tree,
    /// Set when this copy mounted the rootfs: the store to unmount it with.
    mounted: Option<Store>,
    _lock: Option<Lock>,
}

/// How long a copy waits for a container that is being started or stopped by someone else.
const BUSY_WAIT: Duration = Duration::from_secs(30);

impl ContainerFiles {
    pub fn open(engine: &mut Engine, id_or_name: &str) -> Result<ContainerFiles, CopyError> {
        let c = engine.get(id_or_name)?;
        let paths = engine.paths(&c.id);
        let lock_path = paths.lock();
        let active = engine.store()?.active_path(&c.id);
        let deadline = std::time::Instant::now() + BUSY_WAIT;
        loop {
            let c = engine.get(&c.id)?;
            if c.status == Status::Dead {
                return Err(CopyError::Invalid(format!(
                    "container {} is marked for removal",
                    c.id
                )));
            }
            let lock = Lock::try_take(&lock_path).map_err(io_err("lock", &lock_path))?;
            let up = matches!(
                c.status,
                Status::Running | Status::Paused | Status::Restarting
            );
            let mounted_now = image::snapshot::is_mounted(&active);
            match lock {
                Some(lock) => {
                    // Nobody runs it: mount its rootfs for us, unless it is mounted already.
                    let digest = Digest::parse(&c.image_id).map_err(|e| {
                        CopyError::Invalid(format!("container {}: image id: {e}", c.id))
                    })?;
                    let store = Store::open(engine.root(), engine.driver())?;
                    let rootfs = store.remount(&c.id, &digest)?;
                    let ours = !mounted_now && image::snapshot::is_mounted(&rootfs);
                    let mounted = ours.then_some(store);
                    let tree = match container_tree(engine, &c, &rootfs) {
                        Ok(t) => t,
                        Err(e) => {
                            if let Some(s) = mounted {
                                let _ = s.unmount_active(&c.id);
                            }
                            return Err(e);
                        }
                    };
                    return Ok(ContainerFiles {
                        container: c,
                        tree,
                        mounted,
                        _lock: Some(lock),
                    });
                }
                // Its monitor holds the lock: the rootfs is mounted while the container is up (a vfs
                // rootfs is a plain directory, always there).
                None if up && (mounted_now || engine.driver() == image::snapshot::Driver::Vfs) => {
                    let tree = container_tree(engine, &c, &active)?;
                    return Ok(ContainerFiles {
                        container: c,
                        tree,
                        mounted: None,
                        _lock: None,
                    });
                }
                // Being started, stopped or removed by another command: wait for it to settle.
                None => {
                    if std::time::Instant::now() >= deadline {
                        return Err(CopyError::Invalid(format!(
                            "container {} is busy (being started or stopped by another command)",
                            c.id
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }

    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// Unmounts what `open` mounted; an unmount error is reported (dropping does the same silently).
    pub fn close(mut self) -> Result<(), CopyError> {
        self.release()
    }

    fn release(&mut self) -> Result<(), CopyError> {
        // The tree's descriptors keep the mount busy: close them first.
        self.tree.roots.clear();
        if let Some(store) = self.mounted.take() {
            store.unmount_active(&self.container.id)?;
        }
        Ok(())
    }
}

impl Drop for ContainerFiles {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

fn container_tree(engine: &Engine, c: &Container, rootfs: &Path) -> Result<Tree, CopyError> {
    let path = engine.paths(&c.id).config();
    let bytes = std::fs::read(&path).map_err(io_err("read", &path))?;
    let config: Value = serde_json::from_slice(&bytes)
        .map_err(|e| CopyError::Invalid(format!("{}: {e}", path.display())))?;
    Tree::container(&config, rootfs)
}

/// `docker cp`'s options.
#[derive(Clone, Copy, Debug, Default)]
pub struct CopyOptions {
    /// `-L`: copy what a symlink source points to (named as the link).
    pub follow_link: bool,
    /// `-a`: keep uid and gid.
    pub archive: bool,
}

/// A resolved source: where it is, what it is and the name its copy takes.
struct Source {
    path: CPath,
    info: Info,
    /// The name the copy takes (the link's name when `-L` followed it).
    name: Option<OsString>,
}

fn wrap(side_is_container: bool) -> impl Fn(CopyError) -> CopyError {
    move |e| {
        if side_is_container && !e.from_container() {
            CopyError::InContainer(Box::new(e))
        } else {
            e
        }
    }
}

fn source(tree: &Tree, raw: &str, base: &Path, follow: bool) -> Result<Option<Source>, CopyError> {
    let requested = CPath::parse(OsStr::new(raw), base);
    let (path, info) = if follow {
        tree.follow(&requested)?
    } else {
        let i = tree.lstat(&requested)?;
        (requested.clone(), i)
    };
    let Some(info) = info else {
        return Ok(None);
    };
    let name = if requested.trailing_dot || requested.clean == Path::new("/") {
        None
    } else {
        requested.base().map(OsStr::to_os_string)
    };
    Ok(Some(Source { path, info, name }))
}

/// Where an archive goes: (directory to unpack in, name for its top entry).
fn plan(
    src: &Source,
    dst: &CPath,
    dst_info: Option<&Info>,
) -> Result<(CPath, Option<OsString>), CopyError> {
    let src_dir = src.info.kind == Kind::Dir;
    match dst_info {
        Some(d) if d.kind == Kind::Dir => Ok((dst.clone(), src.name.clone())),
        Some(_) if src_dir => Err(CopyError::Invalid(format!(
            "cannot copy a directory to the file {dst}"
        ))),
        _ if !src_dir && dst_info.is_none() && dst.asserts_dir() => {
            Err(CopyError::Invalid(format!("no such directory: {dst}")))
        }
        // A file over a file, a directory or a file to a new name: unpack in the parent under the
        // destination's name.
        _ => Ok((dst.parent(), dst.base().map(OsStr::to_os_string))),
    }
}

/// What the destination is, following symlinks at its end; its parent must be a directory when it is not
/// there.
fn destination(tree: &Tree, raw: &str, base: &Path) -> Result<(CPath, Option<Info>), CopyError> {
    let requested = CPath::parse(OsStr::new(raw), base);
    let (path, info) = tree.follow(&requested)?;
    if info.is_none() {
        let parent = path.parent();
        match tree.follow(&parent)? {
            (_, Some(i)) if i.kind == Kind::Dir => {}
            (_, Some(_)) => {
                return Err(CopyError::Io {
                    what: "stat",
                    path: parent.clean.clone(),
                    source: Errno::NOTDIR.into(),
                })
            }
            (_, None) => {
                return Err(CopyError::Io {
                    what: "stat",
                    path: parent.clean.clone(),
                    source: Errno::NOENT.into(),
                })
            }
        }
    }
    Ok((path, info))
}

/// One side of a copy: its tree, and whether it is the container's (its errors are the daemon's).
#[derive(Clone, Copy)]
struct End<'a> {
    tree: &'a Tree,
    container: bool,
}

/// Streams a tar of `src` into `to` at `dir` (one thread writes the tar, this one unpacks it).
fn pipe_copy(
    from: End,
    src: &Source,
    to: End,
    dir: &CPath,
    prefix: Option<&OsStr>,
    owner: Owner,
) -> Result<u64, CopyError> {
    let (r, w) = rustix::pipe::pipe().map_err(|e| CopyError::Io {
        what: "pipe",
        path: PathBuf::from("-"),
        source: e.into(),
    })?;
    std::thread::scope(|s| {
        let writer = s.spawn(move || {
            from.tree
                .archive(&src.path, None, File::from(w))
                .map(|_| ())
                .map_err(wrap(from.container))
        });
        let read = to
            .tree
            .extract(dir, File::from(r), prefix, owner)
            .map_err(wrap(to.container));
        let wrote = writer
            .join()
            .unwrap_or_else(|_| Err(CopyError::Invalid("the archive writer panicked".into())));
        // The reader's own failure (a conflict, a read-only volume) stopped the writer; otherwise the
        // writer's error explains a short stream.
        match (wrote, read) {
            (_, Err(r)) if !is_stream_error(&r) => Err(r),
            (Err(w), _) => Err(w),
            (Ok(()), r) => r,
        }
    })
}

fn is_stream_error(e: &CopyError) -> bool {
    match e {
        CopyError::Tar(_) => true,
        CopyError::InContainer(inner) => is_stream_error(inner),
        _ => false,
    }
}

/// `docker cp CONTAINER:SRC DST` in the container tree `ct` (named `name` in messages): DST a host path, or `out` (a tar stream) when None. `cwd` is what a
/// relative host path is relative to. Returns the bytes of file data copied.
pub fn copy_from_container<W: Write>(
    ct: &Tree,
    name: &str,
    src: &str,
    dst: Option<&str>,
    out: W,
    cwd: &Path,
    opts: CopyOptions,
) -> Result<u64, CopyError> {
    let s = source(ct, src, Path::new("/"), opts.follow_link)
        .map_err(wrap(true))?
        .ok_or_else(|| CopyError::NotFound {
            path: src.to_string(),
            container: name.to_string(),
        })?;
    if s.path.asserts_dir() && s.info.kind != Kind::Dir {
        return Err(CopyError::InContainer(Box::new(CopyError::Io {
            what: "lstat",
            path: s.path.with_trailing(),
            source: Errno::NOTDIR.into(),
        })));
    }
    let Some(dst) = dst else {
        let (_, n) = ct
            .archive(
                &s.path,
                Some(s.name.as_deref().unwrap_or(OsStr::new("."))),
                out,
            )
            .map_err(wrap(true))?;
        return Ok(n);
    };
    let host = Tree::host()?;
    let (dpath, dinfo) = destination(&host, dst, cwd)?;
    let (dir, top) = plan(&s, &dpath, dinfo.as_ref())?;
    let owner = if opts.archive {
        Owner::Keep
    } else {
        Owner::Caller
    };
    pipe_copy(
        End {
            tree: ct,
            container: true,
        },
        &s,
        End {
            tree: &host,
            container: false,
        },
        &dir,
        top.as_deref(),
        owner,
    )
}

/// `docker cp SRC CONTAINER:DST` into the container tree `ct`: SRC a host path, or `input` (a tar stream, unpacked into the directory
/// DST) when None.
pub fn copy_to_container<R: Read>(
    ct: &Tree,
    name: &str,
    src: Option<&str>,
    input: R,
    dst: &str,
    cwd: &Path,
    opts: CopyOptions,
) -> Result<u64, CopyError> {
    let owner = if opts.archive {
        Owner::Keep
    } else {
        Owner::Root
    };
    let (dpath, dinfo) = destination(ct, dst, Path::new("/")).map_err(wrap(true))?;
    let Some(src) = src else {
        if dinfo.as_ref().map(|i| i.kind) != Some(Kind::Dir) {
            return Err(CopyError::Invalid(format!(
                "destination \"{name}:{dst}\" must be a directory"
            )));
        }
        return ct.extract(&dpath, input, None, owner).map_err(wrap(true));
    };
    let host = Tree::host()?;
    let s = source(&host, src, cwd, opts.follow_link)?.ok_or_else(|| CopyError::Io {
        what: "lstat",
        path: CPath::parse(OsStr::new(src), cwd).with_trailing(),
        source: Errno::NOENT.into(),
    })?;
    if s.path.asserts_dir() && s.info.kind != Kind::Dir {
        return Err(CopyError::Io {
            what: "lstat",
            path: s.path.with_trailing(),
            source: Errno::NOTDIR.into(),
        });
    }
    if let Some(i) = &dinfo {
        if !matches!(i.kind, Kind::Dir | Kind::File) {
            return Err(CopyError::Invalid(format!(
                "destination \"{name}:{dst}\" must be a directory or a regular file"
            )));
        }
    }
    let (dir, top) = plan(&s, &dpath, dinfo.as_ref()).map_err(wrap(true))?;
    pipe_copy(
        End {
            tree: &host,
            container: false,
        },
        &s,
        End {
            tree: ct,
            container: true,
        },
        &dir,
        top.as_deref(),
        owner,
    )
}

#[cfg(test)]
mod tests;
