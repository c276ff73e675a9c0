//! COPY's file placement: sources from the context (or another stage's root filesystem) laid out in a staging
//! directory exactly as they land in the image, with `--chown` / `--chmod` applied; the staging directory then
//! becomes the layer. Docker's rules: a directory source copies its contents; a file source lands at DEST, or
//! at DEST/NAME when DEST ends with `/` or there are several sources; parents are created as root-owned 0755
//! directories; symlinks are copied as links, never followed.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("COPY: {0:?} leaves the destination root")]
    Escapes(String),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StageError + 'a {
    move |source| StageError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// How copied files are owned and moded.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ownership {
    /// `--chown`: None keeps root (0:0) for context files, as docker does; `keep` keeps the source's owner
    /// (COPY --from keeps the other stage's owners).
    pub chown: Option<(u32, u32)>,
    pub keep_owner: bool,
    pub chmod: Option<u32>,
}

/// `dest` inside `staged`, refusing `..` that would climb out.
pub(crate) fn inside(staged: &Path, dest: &str) -> Result<PathBuf, StageError> {
    let mut out = staged.to_path_buf();
    for c in Path::new(dest).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                if out == staged {
                    return Err(StageError::Escapes(dest.to_string()));
                }
                out.pop();
            }
            Component::Prefix(_) => return Err(StageError::Escapes(dest.to_string())),
        }
    }
    Ok(out)
}

pub(crate) fn mkdirs(staged: &Path, dir: &Path) -> Result<(), StageError> {
    let rel = dir.strip_prefix(staged).unwrap_or(dir);
    let mut cur = staged.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(StageError::Io {
                    what: "create directory",
                    path: cur.clone(),
                    source: io::Error::from(io::ErrorKind::AlreadyExists),
                })
            }
            Err(_) => {
                fs::create_dir(&cur).map_err(io_err("create directory", &cur))?;
                fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                    .map_err(io_err("chmod", &cur))?;
            }
        }
    }
    Ok(())
}

fn apply_owner(path: &Path, meta: &fs::Metadata, own: &Ownership) -> Result<(), StageError> {
    let (uid, gid) = match (own.chown, own.keep_owner) {
        (Some(ug), _) => ug,
        (None, true) => (meta.uid(), meta.gid()),
        (None, false) => (0, 0),
    };
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io_err("chown", path))
}

fn copy_entry(src: &Path, dst: &Path, own: &Ownership) -> Result<(), StageError> {
    let meta = fs::symlink_metadata(src).map_err(io_err("stat", src))?;
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(src).map_err(io_err("readlink", src))?;
        let _ = fs::remove_file(dst);
        std::os::unix::fs::symlink(&target, dst).map_err(io_err("symlink", dst))?;
        return apply_owner(dst, &meta, own);
    }
    if ft.is_dir() {
        if !dst.is_dir() {
            fs::create_dir(dst).map_err(io_err("create directory", dst))?;
        }
        let mut names: Vec<_> = fs::read_dir(src)
            .map_err(io_err("read directory", src))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err("read directory", src))?;
        names.sort();
        for n in names {
            copy_entry(&src.join(&n), &dst.join(&n), own)?;
        }
    } else if ft.is_file() {
        fs::copy(src, dst).map_err(io_err("copy", src))?;
    } else {
        // Devices, fifos and sockets are not copied from a build context (docker skips sockets too).
        return Ok(());
    }
    let mode = own.chmod.unwrap_or(meta.mode() & 0o7777);
    fs::set_permissions(dst, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", dst))?;
    apply_owner(dst, &meta, own)?;
    let mtime = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec() as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec() as _,
        },
    };
    let _ = rustix::fs::utimensat(
        rustix::fs::CWD,
        dst,
        &mtime,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    );
    Ok(())
}

/// Places `sources` (paths under `src_root`, already matched and checked) at `dest` (absolute in the image)
/// inside `staged`.
pub fn stage_copy(
    src_root: &Path,
    sources: &[PathBuf],
    dest: &str,
    own: &Ownership,
    staged: &Path,
) -> Result<(), StageError> {
    let into_dir = dest.ends_with('/') || sources.len() > 1;
    let dest_path = inside(staged, dest)?;
    for s in sources {
        let src = src_root.join(s);
        let meta = fs::symlink_metadata(&src).map_err(io_err("stat", &src))?;
        if meta.is_dir() {
            // A directory's contents go to DEST (the directory itself is not created inside it).
            mkdirs(staged, &dest_path)?;
            let mut names: Vec<_> = fs::read_dir(&src)
                .map_err(io_err("read directory", &src))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
                .map_err(io_err("read directory", &src))?;
            names.sort();
            for n in names {
                copy_entry(&src.join(&n), &dest_path.join(&n), own)?;
            }
        } else {
            let target = if into_dir {
                mkdirs(staged, &dest_path)?;
                dest_path.join(src.file_name().unwrap_or_default())
            } else {
                if let Some(parent) = dest_path.parent() {
                    mkdirs(staged, parent)?;
                }
                dest_path.clone()
            };
            copy_entry(&src, &target, own)?;
        }
    }
    Ok(())
}

/// Places what a COPY selected from the build context (see [`crate::ignore::Context::select`]) at `dest`:
/// entries one by one, so files the .dockerignore excluded inside a copied directory stay out.
pub fn stage_selection(
    ctx_root: &Path,
    selection: &crate::ignore::Selection,
    dest: &str,
    own: &Ownership,
    staged: &Path,
) -> Result<(), StageError> {
    let dest_path = inside(staged, dest)?;
    let mut tops: Vec<&Path> = selection
        .entries
        .iter()
        .filter(|s| s.rel.as_os_str().is_empty())
        .map(|s| s.matched.as_path())
        .collect();
    tops.dedup();
    let into_dir = dest.ends_with('/') || tops.len() > 1;
    for s in &selection.entries {
        let src = ctx_root.join(&s.entry.path);
        let is_dir = matches!(s.entry.kind, crate::ignore::EntryKind::Dir);
        let target = if !s.rel.as_os_str().is_empty() {
            dest_path.join(&s.rel)
        } else if is_dir {
            // A directory source: its contents go into DEST.
            mkdirs(staged, &dest_path)?;
            continue;
        } else if into_dir {
            dest_path.join(s.matched.file_name().unwrap_or_default())
        } else {
            dest_path.clone()
        };
        if let Some(parent) = target.parent() {
            mkdirs(staged, parent)?;
        }
        if is_dir {
            if !target.is_dir() {
                fs::create_dir(&target).map_err(io_err("create directory", &target))?;
            }
            let meta = fs::symlink_metadata(&src).map_err(io_err("stat", &src))?;
            let mode = own.chmod.unwrap_or(meta.mode() & 0o7777);
            fs::set_permissions(&target, fs::Permissions::from_mode(mode))
                .map_err(io_err("chmod", &target))?;
            apply_owner(&target, &meta, own)?;
        } else {
            copy_entry(&src, &target, own)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
            let mut es: Vec<_> = fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            es.sort();
            for p in es {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                let m = fs::symlink_metadata(&p).unwrap();
                if m.is_dir() {
                    out.push(format!(
                        "{rel}/ {:o} {}:{}",
                        m.mode() & 0o7777,
                        m.uid(),
                        m.gid()
                    ));
                    walk(root, &p, out);
                } else if m.file_type().is_symlink() {
                    out.push(format!("{rel} -> {}", fs::read_link(&p).unwrap().display()));
                } else {
                    out.push(format!(
                        "{rel} {:o} {}:{}",
                        m.mode() & 0o7777,
                        m.uid(),
                        m.gid()
                    ));
                }
            }
        }
        walk(dir, dir, &mut out);
        out
    }

    #[test]
    fn dockers_placement_rules() {
        let ctx = tempfile::tempdir().unwrap();
        let c = ctx.path();
        fs::create_dir_all(c.join("src/sub")).unwrap();
        fs::write(c.join("src/a.txt"), "a").unwrap();
        fs::write(c.join("src/sub/b.txt"), "b").unwrap();
        std::os::unix::fs::symlink("a.txt", c.join("src/link")).unwrap();
        fs::write(c.join("one"), "1").unwrap();
        fs::set_permissions(c.join("one"), fs::Permissions::from_mode(0o600)).unwrap();

        let st = tempfile::tempdir().unwrap();
        let s = st.path();
        // A file to a file name; a directory's contents into a directory; several files into a directory.
        stage_copy(
            c,
            &[PathBuf::from("one")],
            "/opt/renamed",
            &Ownership::default(),
            s,
        )
        .unwrap();
        stage_copy(c, &[PathBuf::from("src")], "/app", &Ownership::default(), s).unwrap();
        stage_copy(
            c,
            &[PathBuf::from("one"), PathBuf::from("src/a.txt")],
            "/many/",
            &Ownership {
                chown: Some((1000, 1000)),
                chmod: Some(0o640),
                keep_owner: false,
            },
            s,
        )
        .unwrap();
        assert_eq!(
            tree(s),
            vec![
                "app/ 755 0:0",
                "app/a.txt 644 0:0",
                "app/link -> a.txt",
                "app/sub/ 755 0:0",
                "app/sub/b.txt 644 0:0",
                "many/ 755 0:0",
                "many/a.txt 640 1000:1000",
                "many/one 640 1000:1000",
                "opt/ 755 0:0",
                "opt/renamed 600 0:0",
            ]
        );
        // `..` cannot climb out of the staging directory.
        assert!(matches!(
            stage_copy(
                c,
                &[PathBuf::from("one")],
                "/../../x",
                &Ownership::default(),
                s
            ),
            Err(StageError::Escapes(_))
        ));
    }
}
