//! Resolving mount and device destinations *inside* the container's rootfs. Every lookup goes through
//! openat2(RESOLVE_IN_ROOT) on the rootfs directory, so `..` and symlinks in the image (absolute or relative)
//! can never lead a mount or a device node outside it.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use crate::syscall::{openat2, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS};

const RESOLVE: u64 = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;

/// Opens `path` (taken as relative to `root` even when absolute) with O_PATH, resolved inside `root`.
pub fn open_in_root(root: BorrowedFd, path: &Path) -> io::Result<OwnedFd> {
    openat2(root, &relative(path), libc::O_PATH, 0, RESOLVE)
}

fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// mkdir -p inside `root`; returns an O_PATH descriptor of the final directory. A symlink on the way whose
/// target does not exist yet is followed (inside the root) and its target created, as securejoin does.
pub fn mkdir_all_in_root(root: BorrowedFd, path: &Path, mode: u32) -> io::Result<OwnedFd> {
    mkdir_all_depth(root, &relative(path), mode, 0)
}

fn mkdir_all_depth(root: BorrowedFd, path: &Path, mode: u32, depth: u32) -> io::Result<OwnedFd> {
    if depth > 40 {
        return Err(io::Error::from_raw_os_error(libc::ELOOP));
    }
    match openat2(root, path, libc::O_PATH | libc::O_DIRECTORY, 0, RESOLVE) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let comps: Vec<Component> = path.components().collect();
    let mut so_far = PathBuf::new();
    for (i, comp) in comps.iter().enumerate() {
        let name = match comp {
            Component::Normal(n) => *n,
            Component::ParentDir => {
                so_far.push("..");
                continue;
            }
            _ => continue,
        };
        let parent = openat2(
            root,
            if so_far.as_os_str().is_empty() {
                Path::new(".")
            } else {
                &so_far
            },
            libc::O_PATH | libc::O_DIRECTORY,
            0,
            RESOLVE,
        )?;
        so_far.push(name);
        match openat2(root, &so_far, libc::O_PATH | libc::O_DIRECTORY, 0, RESOLVE) {
            Ok(_) => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let c = crate::syscall::cstr(Path::new(name))?;
        // SAFETY: `parent` is an open directory fd and `c` a valid single-component name.
        let r =
            unsafe { libc::mkdirat(std::os::fd::AsRawFd::as_raw_fd(&parent), c.as_ptr(), mode) };
        if r == 0 {
            continue;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
        // `name` exists but does not resolve: a dangling symlink. Create its target, inside the root.
        let target = nix::fcntl::readlinkat(&parent, name).map_err(io::Error::from)?;
        let target = PathBuf::from(target);
        let mut next = if target.is_absolute() {
            relative(&target)
        } else {
            so_far.parent().map(|p| p.join(&target)).unwrap_or(target)
        };
        for rest in &comps[i + 1..] {
            next.push(rest.as_os_str());
        }
        return mkdir_all_depth(root, &next, mode, depth + 1);
    }
    openat2(root, path, libc::O_PATH | libc::O_DIRECTORY, 0, RESOLVE)
}

/// Makes sure a file exists at `path` inside `root` (for bind-mounting a file); returns it O_PATH.
pub fn create_file_in_root(root: BorrowedFd, path: &Path) -> io::Result<OwnedFd> {
    if let Some(parent) = path.parent() {
        mkdir_all_in_root(root, parent, 0o755)?;
    }
    match open_in_root(root, path) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let f = openat2(
        root,
        &relative(path),
        libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW,
        0o644,
        RESOLVE,
    )?;
    drop(f);
    open_in_root(root, path)
}

/// Is the O_PATH descriptor a directory?
pub fn is_dir(fd: BorrowedFd) -> io::Result<bool> {
    let st = nix::sys::stat::fstat(fd).map_err(io::Error::from)?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// The rootfs directory, opened as the root for [`open_in_root`] and friends.
pub fn open_root_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(std::fs::File::open(path)?.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn symlinks_stay_inside_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../outside", root.join("rel")).unwrap();
        let rootfd = open_root_dir(&root).unwrap();
        mkdir_all_in_root(rootfd.as_fd(), Path::new("/abs/x/y"), 0o755).unwrap();
        mkdir_all_in_root(rootfd.as_fd(), Path::new("/rel/z"), 0o755).unwrap();
        mkdir_all_in_root(rootfd.as_fd(), Path::new("/../../q"), 0o755).unwrap();
        create_file_in_root(rootfd.as_fd(), Path::new("/abs/file")).unwrap();
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "nothing created outside"
        );
        assert!(root
            .join(outside.strip_prefix("/").unwrap())
            .join("x/y")
            .is_dir());
        assert!(root.join("outside/z").is_dir());
        assert!(root.join("q").is_dir());
    }
}
