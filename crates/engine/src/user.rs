//! `--user` / image `User`: "name", "uid", "name:group", "uid:gid", resolved against the container's own
//! /etc/passwd and /etc/group the way runc's libcontainer/user.GetExecUser does (which is what dockerd uses).
//! The files are read through the rootfs with openat2(RESOLVE_IN_ROOT): a symlink in the image cannot make
//! us read a host file.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::spec::SpecError;

/// Largest /etc/passwd or /etc/group we read; beyond this the image is not telling us about users.
const MAX_FILE: u64 = 16 << 20;
/// runc's limit for uids and gids.
const MAX_ID: u64 = (1 << 31) - 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Reads `rel` (relative to the root) from inside `root`, resolving every symlink as if `root` were `/`.
/// A missing file is `Ok(None)`; so is anything that is not a regular file (a FIFO must not block us).
fn read_in_root(root: &OwnedFd, rel: &str) -> std::io::Result<Option<String>> {
    let fd = match rustix::fs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(e) if e == rustix::io::Errno::NOENT || e == rustix::io::Errno::NOTDIR => {
            return Ok(None)
        }
        Err(e) => return Err(e.into()),
    };
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Ok(None);
    }
    let mut data = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_FILE)
        .read_to_end(&mut data)?;
    Ok(Some(String::from_utf8_lossy(&data).into_owned()))
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.trim().parse().ok()?,
                gid: f.get(3)?.trim().parse().ok()?,
                home: f.get(5).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.trim().parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn numeric(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Resolves `spec` (from `source`, e.g. `--user` or `image config User`) inside `rootfs`.
pub fn resolve(rootfs: &Path, spec: &str, source: &str) -> Result<ResolvedUser, SpecError> {
    let bad = |msg: String| SpecError::Invalid(format!("{source} {spec:?}: {msg}"));
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid_arg = numeric(user_arg);
    let gid_arg = group_arg.and_then(numeric);
    if uid_arg.is_some_and(|u| u > MAX_ID) {
        return Err(bad(format!("uid {user_arg} is out of range")));
    }
    if gid_arg.is_some_and(|g| g > MAX_ID) {
        return Err(bad(format!(
            "gid {} is out of range",
            group_arg.unwrap_or("")
        )));
    }
    if user_arg.is_empty() && uid_arg.is_none() && group_arg.is_none() {
        return Err(bad("empty user".into()));
    }

    let root: OwnedFd = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SpecError::Io {
        what: "open rootfs",
        path: rootfs.to_path_buf(),
        source: e.into(),
    })?;
    let read = |rel: &str| {
        read_in_root(&root, rel).map_err(|e| SpecError::Io {
            what: "read",
            path: rootfs.join(rel),
            source: e,
        })
    };
    let passwd = read("etc/passwd")?
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();

    let mut out = ResolvedUser {
        uid: 0,
        gid: 0,
        additional_gids: Vec::new(),
        home: "/".into(),
    };
    let mut name: Option<String> = None;
    if !user_arg.is_empty() {
        let found = passwd
            .iter()
            .find(|p| p.name == user_arg || uid_arg.is_some_and(|u| u64::from(p.uid) == u));
        match (found, uid_arg) {
            (Some(p), _) => {
                out.uid = p.uid;
                out.gid = p.gid;
                if !p.home.is_empty() {
                    out.home = p.home.clone();
                }
                name = Some(p.name.clone());
            }
            // Checked against MAX_ID above.
            (None, Some(u)) => out.uid = u as u32,
            (None, None) => {
                return Err(bad(format!(
                    "no user {user_arg:?} in the image's /etc/passwd"
                )))
            }
        }
    }

    if group_arg.is_some() || name.is_some() {
        let groups = read("etc/group")?
            .map(|t| parse_group(&t))
            .unwrap_or_default();
        match group_arg {
            Some(g) if !g.is_empty() => {
                let found = groups
                    .iter()
                    .find(|e| e.name == g || gid_arg.is_some_and(|n| u64::from(e.gid) == n));
                out.gid = match (found, gid_arg) {
                    (Some(e), _) => e.gid,
                    (None, Some(n)) => n as u32,
                    (None, None) => {
                        return Err(bad(format!("no group {g:?} in the image's /etc/group")))
                    }
                };
            }
            _ => {
                // Supplementary groups only in the implicit form (runc: "only make sense if implicit").
                if let Some(n) = &name {
                    for e in groups.iter().filter(|e| e.members.iter().any(|m| m == n)) {
                        if !out.additional_gids.contains(&e.gid) {
                            out.additional_gids.push(e.gid);
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\n# comment\nbob:x:1000:1001:Bob:/home/bob:/bin/sh\nnohome:x:1002:1002::\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nbobs:x:1001:\nwheel:x:10:alice,bob\naudio:x:29:bob\nother:x:30:alice\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn name_resolves_with_supplementary_groups() {
        let d = rootfs();
        let u = resolve(d.path(), "bob", "--user").unwrap();
        assert_eq!(
            u,
            ResolvedUser {
                uid: 1000,
                gid: 1001,
                additional_gids: vec![10, 29],
                home: "/home/bob".into()
            }
        );
    }

    #[test]
    fn uid_found_in_passwd_takes_its_gid_and_groups() {
        let d = rootfs();
        let u = resolve(d.path(), "1000", "--user").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids),
            (1000, 1001, vec![10, 29])
        );
    }

    #[test]
    fn explicit_group_sets_gid_without_supplementary() {
        let d = rootfs();
        let u = resolve(d.path(), "bob:wheel", "--user").unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.len()), (1000, 10, 0));
        let u = resolve(d.path(), "bob:4242", "--user").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 4242));
        let u = resolve(d.path(), "0:audio", "--user").unwrap();
        assert_eq!((u.uid, u.gid), (0, 29));
    }

    #[test]
    fn numeric_works_without_files() {
        let d = tempfile::tempdir().unwrap();
        let u = resolve(d.path(), "1234:5678", "--user").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1234, 5678, "/"));
        let u = resolve(d.path(), "1234", "--user").unwrap();
        assert_eq!((u.uid, u.gid), (1234, 0));
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let d = rootfs();
        let e = resolve(d.path(), "carol", "--user")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--user") && e.contains("\"carol\""), "{e}");
        let e = resolve(d.path(), "bob:nogroup", "--user")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"nogroup\""), "{e}");
        let e = resolve(d.path(), "99999999999", "--user")
            .unwrap_err()
            .to_string();
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn empty_home_defaults_to_slash() {
        let d = rootfs();
        assert_eq!(resolve(d.path(), "nohome", "--user").unwrap().home, "/");
    }

    #[test]
    fn symlinked_passwd_does_not_escape_the_root() {
        let d = tempfile::tempdir().unwrap();
        let host = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(host.path(), "evil:x:4242:4242::/evil:/bin/sh\n").unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink(host.path(), root.join("etc/passwd")).unwrap();
        // Also a relative escape: etc/group -> ../../../../<host file>.
        let rel = format!("../../../../../../..{}", host.path().display());
        std::os::unix::fs::symlink(rel, root.join("etc/group")).unwrap();
        let e = resolve(&root, "evil", "--user").unwrap_err().to_string();
        assert!(e.contains("no user"), "{e}");
        let e = resolve(&root, "0:evil", "--user").unwrap_err().to_string();
        assert!(e.contains("no group"), "{e}");
        // A symlink that stays inside the root is followed (resolved against the root).
        std::fs::write(root.join("passwd.real"), "inside:x:7:8::/in:/bin/sh\n").unwrap();
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/passwd.real", root.join("etc/passwd")).unwrap();
        let u = resolve(&root, "inside", "--user").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (7, 8, "/in"));
    }

    #[test]
    fn fifo_passwd_does_not_block() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.path().join("etc/passwd"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        assert!(resolve(d.path(), "bob", "--user").is_err());
        assert_eq!(resolve(d.path(), "5", "--user").unwrap().uid, 5);
    }
}
