//! The build context on disk: the entries `.dockerignore` leaves in it, in walk order.

use std::collections::HashMap;
use std::fs::{self, FileType, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{Ignore, DOCKERIGNORE};

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("build context {}: {source}", path.display())]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("build context {}: not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("reading build context: {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// A symlink and what it points to, as stored (never followed by the walk).
    Symlink(PathBuf),
    /// A fifo, socket or device node.
    Other,
}

/// One file, directory or symlink of the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the context root; empty for the root itself.
    pub path: PathBuf,
    pub kind: EntryKind,
    /// Permission bits with setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Bytes, for a regular file; 0 otherwise.
    pub size: u64,
}

impl Entry {
    fn new(path: PathBuf, abs: &Path, meta: &Metadata) -> Result<Self, ContextError> {
        let ft = meta.file_type();
        let kind = if ft.is_symlink() {
            let target = fs::read_link(abs).map_err(|source| ContextError::Read {
                path: abs.to_owned(),
                source,
            })?;
            EntryKind::Symlink(target)
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else {
            EntryKind::Other
        };
        let size = if kind == EntryKind::File {
            meta.len()
        } else {
            0
        };
        Ok(Entry {
            path,
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size,
        })
    }

    /// The path with `/` between components, for matching (lossy for a name that is not UTF-8).
    pub fn path_str(&self) -> std::borrow::Cow<'_, str> {
        self.path.to_string_lossy()
    }
}

/// A scanned context: its root and the entries the ignore rules leave, in walk order (each directory's entries
/// sorted by name, a directory before what it holds, so a directory's subtree is contiguous).
#[derive(Debug, Clone)]
pub struct Context {
    root: PathBuf,
    root_entry: Entry,
    entries: Vec<Entry>,
    index: HashMap<PathBuf, usize>,
    dirs_read: usize,
}

impl Context {
    /// Walks `dir` (symlinks to it are resolved first, as docker resolves the context path) under `ignore`.
    ///
    /// Nothing is followed: a symlink is an entry. An excluded directory is not read unless an exception rule
    /// could match something below it; if something is, the directory is listed (before it) as well.
    pub fn scan(dir: &Path, ignore: &Ignore) -> Result<Self, ContextError> {
        let root = fs::canonicalize(dir).map_err(|source| ContextError::Root {
            path: dir.to_owned(),
            source,
        })?;
        let meta = fs::metadata(&root).map_err(|source| ContextError::Root {
            path: dir.to_owned(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(ContextError::NotADirectory {
                path: dir.to_owned(),
            });
        }
        let root_entry = Entry::new(PathBuf::new(), &root, &meta)?;
        let mut walker = Walker {
            ignore,
            entries: Vec::new(),
            pending: Vec::new(),
            dirs_read: 0,
        };
        walker.dir(&root, Path::new(""), "", None)?;
        let index = walker
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.path.clone(), i))
            .collect();
        Ok(Context {
            root,
            root_entry,
            entries: walker.entries,
            index,
            dirs_read: walker.dirs_read,
        })
    }

    /// The context directory, canonical.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn into_entries(self) -> Vec<Entry> {
        self.entries
    }

    /// The entry at `path` (relative; empty for the root), without following symlinks.
    pub fn get(&self, path: &Path) -> Option<&Entry> {
        if path.as_os_str().is_empty() {
            return Some(&self.root_entry);
        }
        self.index.get(path).map(|&i| &self.entries[i])
    }

    /// Everything below directory `dir` (empty for the root), in walk order.
    pub fn below(&self, dir: &Path) -> &[Entry] {
        if dir.as_os_str().is_empty() {
            return &self.entries;
        }
        let Some(&i) = self.index.get(dir) else {
            return &[];
        };
        let rest = &self.entries[i + 1..];
        let n = rest.iter().take_while(|e| e.path.starts_with(dir)).count();
        &rest[..n]
    }

    /// How many directories the scan read: the ones excluded and skipped are not (a measure of the pruning).
    pub fn dirs_read(&self) -> usize {
        self.dirs_read
    }
}

/// Lists what is sent as the build context of `context_dir`: what `ignore` leaves, plus `.dockerignore`, the
/// ignore file read and the Dockerfile (`dockerfile`, its path on disk) when they are inside the context, even
/// if the rules exclude them: docker sends those regardless (the builder needs them), and takes the excluded
/// ones out again before COPY sees the context, which is why [`Context::select`] runs on
/// `Context::scan(dir, ignore)` rather than on this list.
pub fn walk(
    context_dir: &Path,
    ignore: &Ignore,
    dockerfile: Option<&Path>,
) -> Result<Vec<Entry>, ContextError> {
    let root = fs::canonicalize(context_dir).map_err(|source| ContextError::Root {
        path: context_dir.to_owned(),
        source,
    })?;
    let mut rules = ignore.clone();
    rules.keep(DOCKERIGNORE);
    for path in [ignore.source(), dockerfile].into_iter().flatten() {
        if let Some(rel) = inside(&root, path) {
            rules.keep(&rel);
        }
    }
    Ok(Context::scan(&root, &rules)?.into_entries())
}

/// `path` relative to the (canonical) context root, if it lies inside it.
fn inside(root: &Path, path: &Path) -> Option<String> {
    let abs = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    let name = abs.file_name()?;
    let parent = fs::canonicalize(abs.parent()?).ok()?;
    let full = parent.join(name);
    let rel = full.strip_prefix(root).ok()?.to_str()?;
    (!rel.is_empty()).then(|| rel.to_owned())
}

struct Walker<'a> {
    ignore: &'a Ignore,
    entries: Vec<Entry>,
    /// Excluded directories being walked because an exception may re-include something below them, and
    /// whether they have been listed yet (they are, once something below them is).
    pending: Vec<(Entry, bool)>,
    dirs_read: usize,
}

impl Walker<'_> {
    /// Walks directory `abs` (`rel` / `rel_str` relative to the root), `info` being which rules matched it.
    fn dir(
        &mut self,
        abs: &Path,
        rel: &Path,
        rel_str: &str,
        info: Option<&[bool]>,
    ) -> Result<(), ContextError> {
        let read_err = |path: &Path, source| ContextError::Read {
            path: path.to_owned(),
            source,
        };
        let in_excluded = !self.pending.is_empty();
        let rd = match fs::read_dir(abs) {
            Ok(rd) => rd,
            // As BuildKit does: an unreadable directory that is excluded anyway is no error.
            Err(e) if in_excluded && e.kind() == io::ErrorKind::PermissionDenied => return Ok(()),
            Err(e) => return Err(read_err(abs, e)),
        };
        self.dirs_read += 1;
        let mut children: Vec<(std::ffi::OsString, FileType)> = Vec::new();
        for de in rd {
            let de = de.map_err(|e| read_err(abs, e))?;
            let ft = de.file_type().map_err(|e| read_err(&de.path(), e))?;
            children.push((de.file_name(), ft));
        }
        children.sort_by(|a, b| a.0.cmp(&b.0));

        for (name, ft) in children {
            let child_abs = abs.join(&name);
            let child_rel = rel.join(&name);
            let lossy = name.to_string_lossy();
            let child_str = if rel_str.is_empty() {
                lossy.into_owned()
            } else {
                format!("{rel_str}/{lossy}")
            };
            let (excluded, child_info) = if self.ignore.is_empty() {
                (false, Vec::new())
            } else {
                self.ignore.matches_in_walk(&child_str, info)
            };
            if excluded && !(ft.is_dir() && self.ignore.may_include_below(&child_str)) {
                continue;
            }
            let meta = match fs::symlink_metadata(&child_abs) {
                Ok(m) => m,
                // Gone since the directory was read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(read_err(&child_abs, e)),
            };
            let entry = Entry::new(child_rel.clone(), &child_abs, &meta)?;
            if excluded {
                self.pending.push((entry, false));
                let walked = self.dir(&child_abs, &child_rel, &child_str, Some(&child_info));
                self.pending.pop();
                walked?;
                continue;
            }
            for (parent, listed) in &mut self.pending {
                if !*listed {
                    self.entries.push(parent.clone());
                    *listed = true;
                }
            }
            let is_dir = entry.kind == EntryKind::Dir;
            self.entries.push(entry);
            if is_dir {
                self.dir(&child_abs, &child_rel, &child_str, Some(&child_info))?;
            }
        }
        Ok(())
    }
}
