//! One config.json mount, placed at its destination resolved inside the rootfs.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Mount;

use super::options::{self, Options};
use super::{err, errno, Plan, RootfsError};
use crate::paths::{create_file_in_root, mkdir_all_in_root};
use crate::syscall::{fd_path, mount_setattr, MountAttr};

pub fn mount_one(plan: &Plan, rootfd: BorrowedFd, m: &Mount) -> Result<(), RootfsError> {
    let dest = m.destination();
    let typ = m.typ().as_deref().unwrap_or("none");
    let opts = options::parse(m.options().as_deref().unwrap_or(&[]));
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(plan, rootfd, dest, &opts);
    }
    if opts.bind() {
        return mount_bind(plan, rootfd, m, &opts);
    }
    let target_fd =
        mkdir_all_in_root(rootfd, dest, 0o755).map_err(err("create mount point", dest))?;
    let target = fd_path(target_fd.as_fd());
    let source = m
        .source()
        .as_ref()
        .map(|s| s.as_path())
        .unwrap_or(Path::new(typ));
    if opts.tmpcopyup {
        return Err(RootfsError::Refused(format!(
            "mount {}: tmpcopyup is not supported",
            dest.display()
        )));
    }
    let data = opts.data_string();
    let flags = opts.flags & !MsFlags::MS_REMOUNT;
    let r = mount(Some(source), &target, Some(typ), flags, data.as_deref());
    match r {
        Ok(()) => {}
        // sysfs in a user namespace without its own network namespace, and mqueue without its own ipc
        // namespace, cannot be mounted: fall back to binding the host's, read-only (runc does the same).
        Err(nix::errno::Errno::EPERM) if plan.userns && (typ == "sysfs" || typ == "mqueue") => {
            let host = if typ == "sysfs" {
                "/sys"
            } else {
                "/dev/mqueue"
            };
            mount(
                Some(host),
                &target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(errno(format!("mount {typ} (bind fallback) on"), dest))?;
            if typ == "sysfs" {
                super::remount_ro(&target).map_err(err("remount read-only", dest))?;
            }
        }
        Err(e) => return Err(errno(format!("mount {typ} on"), dest)(e)),
    }
    if opts.propagation.is_empty() && opts.rec_set == 0 && opts.rec_clr == 0 {
        return Ok(());
    }
    // Re-open: the fd we had points at the directory underneath the new mount, and a propagation change
    // there fails with EINVAL (docker's `--tmpfs /tmp` asks for rprivate).
    let t = crate::paths::open_in_root(rootfd, dest).map_err(err("open mount point", dest))?;
    finish(&fd_path(t.as_fd()), dest, &opts)
}

fn mount_bind(
    plan: &Plan,
    rootfd: BorrowedFd,
    m: &Mount,
    opts: &Options,
) -> Result<(), RootfsError> {
    let dest = m.destination();
    let src = m.source().as_ref().ok_or_else(|| {
        RootfsError::Refused(format!(
            "mount {}: bind mount without a source",
            dest.display()
        ))
    })?;
    let src: PathBuf = if src.is_absolute() {
        src.clone()
    } else {
        plan.bundle.join(src)
    };
    let md = std::fs::metadata(&src).map_err(err("bind mount source", &src))?;
    let target_fd = if md.is_dir() {
        mkdir_all_in_root(rootfd, dest, 0o755)
    } else {
        create_file_in_root(rootfd, dest)
    }
    .map_err(err("create mount point", dest))?;
    let target = fd_path(target_fd.as_fd());
    if let Some(recursive) = opts.idmap {
        idmapped_bind(plan, &src, &target, dest, m, recursive)?;
    } else {
        let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
        mount(Some(&src), &target, None::<&str>, flags, None::<&str>)
            .map_err(errno(format!("bind mount {} on", src.display()), dest))?;
    }
    // A bind mount ignores every other flag: apply them with a remount of the new mount point.
    let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if !extra.is_empty() {
        // Re-open: the fd we had points at the directory underneath the new mount.
        let t = crate::paths::open_in_root(rootfd, dest).map_err(err("open mount point", dest))?;
        let target = fd_path(t.as_fd());
        let keep = super::locked_flags(&target).map_err(err("statvfs", dest))? & !opts.clear;
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra | keep;
        mount(None::<&str>, &target, None::<&str>, flags, None::<&str>)
            .map_err(errno("remount bind mount", dest))?;
        return finish(&target, dest, opts);
    }
    let t = crate::paths::open_in_root(rootfd, dest).map_err(err("open mount point", dest))?;
    finish(&fd_path(t.as_fd()), dest, opts)
}

/// Propagation and recursive attributes, which apply to the mount now at `target`.
fn finish(target: &Path, dest: &Path, opts: &Options) -> Result<(), RootfsError> {
    for p in &opts.propagation {
        mount(None::<&str>, target, None::<&str>, *p, None::<&str>)
            .map_err(errno("set propagation of", dest))?;
    }
    if opts.rec_set != 0 || opts.rec_clr != 0 {
        let attr = MountAttr {
            attr_set: opts.rec_set,
            attr_clr: opts.rec_clr,
            ..Default::default()
        };
        let cwd = std::fs::File::open("/").map_err(err("open", "/"))?;
        mount_setattr(cwd.as_fd(), target, libc::AT_RECURSIVE as u32, &attr)
            .map_err(err("set recursive mount attributes on", dest))?;
    }
    Ok(())
}

fn mount_cgroup(
    plan: &Plan,
    rootfd: BorrowedFd,
    dest: &Path,
    opts: &Options,
) -> Result<(), RootfsError> {
    let list = plan.cgroup.mounts(plan.cgroupns);
    let base_fd =
        mkdir_all_in_root(rootfd, dest, 0o755).map_err(err("create mount point", dest))?;
    let base = fd_path(base_fd.as_fd());
    let flags = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    let single = list.len() == 1 && list[0].subdir.as_os_str().is_empty();
    if !single {
        // v1 and hybrid: a tmpfs holds one directory per hierarchy.
        mount(
            Some("tmpfs"),
            &base,
            Some("tmpfs"),
            flags & !MsFlags::MS_RDONLY,
            Some("mode=755"),
        )
        .map_err(errno("mount tmpfs for cgroups on", dest))?;
    }
    for cm in &list {
        let sub_dest = dest.join(&cm.subdir);
        let fd = mkdir_all_in_root(rootfd, &sub_dest, 0o755)
            .map_err(err("create mount point", &sub_dest))?;
        let target = fd_path(fd.as_fd());
        match &cm.source {
            cgroups::CgroupMountSource::Bind(host) => {
                mount(
                    Some(host),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(errno(
                    format!("bind mount cgroup {} on", host.display()),
                    &sub_dest,
                ))?;
                if !flags.is_empty() {
                    let t = crate::paths::open_in_root(rootfd, &sub_dest)
                        .map_err(err("open", &sub_dest))?;
                    let tp = fd_path(t.as_fd());
                    let keep = super::locked_flags(&tp).map_err(err("statvfs", &sub_dest))?;
                    mount(
                        None::<&str>,
                        &tp,
                        None::<&str>,
                        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | keep,
                        None::<&str>,
                    )
                    .map_err(errno("remount cgroup", &sub_dest))?;
                }
            }
            cgroups::CgroupMountSource::Fs { fstype, data } => {
                let data = if data.is_empty() {
                    None
                } else {
                    Some(data.as_str())
                };
                mount(
                    Some(fstype.as_str()),
                    &target,
                    Some(fstype.as_str()),
                    flags,
                    data,
                )
                .map_err(errno(format!("mount {fstype} on"), &sub_dest))?;
            }
        }
    }
    if !single && flags.contains(MsFlags::MS_RDONLY) {
        let t = crate::paths::open_in_root(rootfd, dest).map_err(err("open", dest))?;
        super::remount_ro(&fd_path(t.as_fd())).map_err(err("remount read-only", dest))?;
    }
    Ok(())
}

/// An idmapped bind mount (runtime-spec 1.2 `idmap`/`ridmap`): a detached copy of the source gets the mapping
/// of a user namespace made for it, then is moved onto the target.
fn idmapped_bind(
    plan: &Plan,
    src: &Path,
    target: &Path,
    dest: &Path,
    m: &Mount,
    recursive: bool,
) -> Result<(), RootfsError> {
    let _ = m;
    let userns = plan
        .idmap_userns
        .iter()
        .find(|(d, _)| d == dest)
        .map(|(_, fd)| fd)
        .ok_or_else(|| {
            RootfsError::Refused(format!(
                "mount {}: no user namespace for idmap",
                dest.display()
            ))
        })?;
    let cwd = std::fs::File::open("/").map_err(err("open", "/"))?;
    let mut flags = crate::syscall::OPEN_TREE_CLONE;
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    let tree = crate::syscall::open_tree(cwd.as_fd(), src, flags).map_err(err("open_tree", src))?;
    let attr = MountAttr {
        attr_set: crate::syscall::MOUNT_ATTR_IDMAP,
        userns_fd: std::os::fd::AsRawFd::as_raw_fd(userns) as u64,
        ..Default::default()
    };
    let rec = if recursive {
        libc::AT_RECURSIVE as u32
    } else {
        0
    };
    mount_setattr(
        tree.as_fd(),
        Path::new(""),
        libc::AT_EMPTY_PATH as u32 | rec,
        &attr,
    )
    .map_err(err("idmap mount", dest))?;
    crate::syscall::move_mount(tree.as_fd(), target)
        .map_err(err("move idmapped mount onto", dest))?;
    Ok(())
}
