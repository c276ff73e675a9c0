//! /dev: the default devices every container gets, the config's linux.devices, and the standard symlinks.
//! Nodes are made with mknod; in a user namespace (where mknod is refused) the host's node is bind-mounted.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::LinuxDeviceType;

use super::{err, errno, Plan, RootfsError};
use crate::paths::{create_file_in_root, mkdir_all_in_root};
use crate::syscall::{cstr, fd_path};

pub struct Dev {
    pub path: PathBuf,
    pub kind: u32,
    pub major: i64,
    pub minor: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// runtime-spec "Default Devices".
pub fn defaults() -> Vec<Dev> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .iter()
    .map(|(n, ma, mi)| Dev {
        path: PathBuf::from(format!("/dev/{n}")),
        kind: libc::S_IFCHR,
        major: *ma,
        minor: *mi,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

pub fn from_spec(plan: &Plan) -> Vec<Dev> {
    let mut v = defaults();
    if let Some(devs) = plan
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_ref())
    {
        for d in devs {
            let kind = match d.typ() {
                LinuxDeviceType::B => libc::S_IFBLK,
                LinuxDeviceType::P => libc::S_IFIFO,
                _ => libc::S_IFCHR,
            };
            v.retain(|x| x.path != *d.path());
            v.push(Dev {
                path: d.path().clone(),
                kind,
                major: d.major(),
                minor: d.minor(),
                mode: d.file_mode().unwrap_or(0o666) & 0o7777,
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
            });
        }
    }
    v
}

pub fn create(plan: &Plan, root: BorrowedFd) -> Result<(), RootfsError> {
    // One descriptor of /dev serves every node there and the links; other parents are opened as needed.
    let devfd = mkdir_all_in_root(root, Path::new("/dev"), 0o755).map_err(err("create", "/dev"))?;
    let dirfd = std::fs::File::open(fd_path(devfd.as_fd())).map_err(err("open", "/dev"))?;
    for d in from_spec(plan) {
        make_node(plan, root, &dirfd, &d)?;
    }
    // Standard links; an image's own entries win.
    let mut links = vec![
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("core", "/proc/kcore"));
    }
    // /dev/ptmx must be the link into this container's devpts instance, even if an image shipped a node.
    for (name, target) in links {
        let n = cstr(Path::new(name)).map_err(err("symlink", name))?;
        let t = cstr(Path::new(target)).map_err(err("symlink", name))?;
        if name == "ptmx" {
            // SAFETY: valid dirfd and name; failure (ENOENT) is fine.
            unsafe { libc::unlinkat(dirfd.as_raw_fd(), n.as_ptr(), 0) };
        }
        // SAFETY: valid strings and an open directory descriptor.
        let r = unsafe { libc::symlinkat(t.as_ptr(), dirfd.as_raw_fd(), n.as_ptr()) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(err("symlink", format!("/dev/{name}"))(e));
            }
        }
    }
    Ok(())
}

fn make_node(
    plan: &Plan,
    root: BorrowedFd,
    dev: &std::fs::File,
    d: &Dev,
) -> Result<(), RootfsError> {
    let parent = d.path.parent().unwrap_or(Path::new("/dev"));
    let name = d.path.file_name().ok_or_else(|| {
        RootfsError::Refused(format!("linux.devices: bad path {}", d.path.display()))
    })?;
    let other;
    let dir = if parent == Path::new("/dev") {
        dev
    } else {
        let pfd = mkdir_all_in_root(root, parent, 0o755).map_err(err("create", parent))?;
        other = std::fs::File::open(fd_path(pfd.as_fd())).map_err(err("open", parent))?;
        &other
    };
    let cname = cstr(Path::new(name)).map_err(err("mknod", &d.path))?;
    if !plan.userns {
        // SAFETY: valid dirfd and name.
        unsafe { libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), 0) };
        let dev = libc::makedev(d.major as u32, d.minor as u32);
        // SAFETY: valid dirfd and name; mknodat creates at most one node.
        let r = unsafe { libc::mknodat(dir.as_raw_fd(), cname.as_ptr(), d.kind | d.mode, dev) };
        if r == 0 {
            // SAFETY: valid dirfd and name; AT_SYMLINK_NOFOLLOW keeps it on the node we made.
            let r = unsafe {
                libc::fchownat(
                    dir.as_raw_fd(),
                    cname.as_ptr(),
                    d.uid,
                    d.gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            if r != 0 {
                return Err(err("chown", &d.path)(std::io::Error::last_os_error()));
            }
            // SAFETY: as above; mknod applied the umask, set the exact mode.
            let r = unsafe { libc::fchmodat(dir.as_raw_fd(), cname.as_ptr(), d.mode, 0) };
            if r != 0 {
                return Err(err("chmod", &d.path)(std::io::Error::last_os_error()));
            }
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EPERM) {
            return Err(err("mknod", &d.path)(e));
        }
    }
    // Bind the host's node onto an empty file.
    let target = create_file_in_root(root, &d.path).map_err(err("create", &d.path))?;
    mount(
        Some(&d.path),
        &fd_path(target.as_fd()),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(errno("bind mount device", &d.path))
}
