//! What COPY sources pick from a context, and the digest the build cache keys them by.
//!
//! As BuildKit resolves them: a source is relative to the context root (a leading `/` changes nothing); a
//! source without wildcards names one path, its symlinks followed but kept inside the context (an absolute
//! target starts at the context root, `..` stops there); a source with wildcards splits at its first component
//! holding one, the part before is resolved the same way, and the rest is matched with `filepath.Match` against
//! everything below it in walk order, a matched directory not searched further; each match is then followed if
//! it is a symlink. A directory stands for itself and everything below it; symlinks below it are copied as
//! links. Excluded files are not in the context, so no source can reach them.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use super::context::{Context, Entry, EntryKind};
use super::pattern::{clean, has_wildcards, Glob, PatternError};

/// Symlinks followed while resolving one path before giving up, as continuity's `RootPath` does.
const MAX_LINKS: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("forbidden path outside the build context: {0}")]
    Outside(String),
    /// docker's words; the caller puts "COPY failed: " (or ADD) in front.
    #[error("file not found in build context or excluded by .dockerignore: stat {0}: file does not exist")]
    NotFound(String),
    #[error("source {pattern:?}: bad pattern: {source}")]
    Pattern {
        pattern: String,
        #[source]
        source: PatternError,
    },
    #[error("source {0}: too many levels of symbolic links")]
    Loop(String),
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What goes into the digest besides paths, kinds, modes, symlink targets and contents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HashOptions {
    /// Hash owners too (for a COPY that keeps them; docker's COPY sets 0:0 or --chown, so by default no).
    pub owners: bool,
}

/// One entry a COPY copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// Which source (index in the list given) picked it.
    pub source: usize,
    /// The path the source matched, relative to the context root (empty for the root, `COPY . /dst`): for a
    /// source without wildcards the path as written, a symlink's own path rather than its target's; for a glob
    /// the match, below its leading directories resolved. A file lands at the destination (or in it, under this
    /// path's last component); a directory's contents land in the destination.
    pub matched: PathBuf,
    /// This entry's path below `matched`; empty for the match itself.
    pub rel: PathBuf,
    /// The entry itself; `entry.path` is where it is in the context, which differs from `matched.join(rel)`
    /// when a symlink was followed.
    pub entry: Entry,
}

/// The entries a COPY source list picks, in the order COPY copies them, and their digest (`sha256:<hex>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub entries: Vec<Selected>,
    pub digest: String,
}

impl Context {
    /// Resolves `sources` (as written after COPY, relative to the context root) and hashes what they pick:
    /// a change to any picked entry's path, kind, mode, symlink target or content (or owner, with
    /// [`HashOptions::owners`]) changes the digest; nothing else does (not an mtime, not an unpicked file).
    /// A source that picks nothing is an error naming it, as is one that leaves the context.
    pub fn select<S: AsRef<str>>(
        &self,
        sources: &[S],
        opts: HashOptions,
    ) -> Result<Selection, SourceError> {
        let entries = self.pick(sources)?;
        let digest = self.digest(&entries, opts)?;
        Ok(Selection { entries, digest })
    }

    /// [`Context::select`] without reading any content.
    pub fn pick<S: AsRef<str>>(&self, sources: &[S]) -> Result<Vec<Selected>, SourceError> {
        let mut out = Vec::new();
        for (i, src) in sources.iter().enumerate() {
            self.pick_one(i, src.as_ref(), &mut out)?;
        }
        Ok(out)
    }

    fn pick_one(
        &self,
        source: usize,
        src: &str,
        out: &mut Vec<Selected>,
    ) -> Result<(), SourceError> {
        let rel = clean(src.trim_start_matches('/'));
        if rel == ".." || rel.starts_with("../") {
            return Err(SourceError::Outside(src.to_owned()));
        }
        let not_found = || SourceError::NotFound(src.to_owned());
        let parts: Vec<&str> = if rel == "." {
            Vec::new()
        } else {
            rel.split('/').collect()
        };
        let Some(wild) = parts.iter().position(|p| has_wildcards(p)) else {
            let matched = PathBuf::from(parts.join("/"));
            let real = self.resolve(&matched, src)?.ok_or_else(not_found)?;
            self.push(source, matched, &real, out);
            return Ok(());
        };
        let glob = Glob::new(&parts[wild..].join("/")).map_err(|e| SourceError::Pattern {
            pattern: src.to_owned(),
            source: e,
        })?;
        let base = self
            .resolve(Path::new(&parts[..wild].join("/")), src)?
            .ok_or_else(not_found)?;
        if self.get(&base).map(|e| &e.kind) != Some(&EntryKind::Dir) {
            return Err(not_found());
        }
        let below = self.below(&base);
        let mut found = false;
        let mut i = 0;
        while i < below.len() {
            let e = &below[i];
            i += 1;
            let name = e.path.strip_prefix(&base).unwrap_or(&e.path);
            if !glob.matches(&name.to_string_lossy()) {
                continue;
            }
            found = true;
            let real = self.resolve(&e.path, src)?.ok_or_else(not_found)?;
            self.push(source, e.path.clone(), &real, out);
            if e.kind == EntryKind::Dir {
                i += below[i..]
                    .iter()
                    .take_while(|d| d.path.starts_with(&e.path))
                    .count();
            }
        }
        if found {
            Ok(())
        } else {
            Err(not_found())
        }
    }

    /// Pushes the entry at `real` (a directory with everything below it) as picked by `matched`.
    fn push(&self, source: usize, matched: PathBuf, real: &Path, out: &mut Vec<Selected>) {
        let Some(entry) = self.get(real) else { return };
        out.push(Selected {
            source,
            matched: matched.clone(),
            rel: PathBuf::new(),
            entry: entry.clone(),
        });
        if entry.kind == EntryKind::Dir {
            for e in self.below(real) {
                let rel = e.path.strip_prefix(real).unwrap_or(&e.path).to_owned();
                out.push(Selected {
                    source,
                    matched: matched.clone(),
                    rel,
                    entry: e.clone(),
                });
            }
        }
    }

    /// Follows `path`'s symlinks inside the context (`None`: nothing there). `src` names the source for errors.
    fn resolve(&self, path: &Path, src: &str) -> Result<Option<PathBuf>, SourceError> {
        let mut todo: Vec<OsString> = Vec::new();
        push_components(&mut todo, path);
        let mut cur = PathBuf::new();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                cur.pop();
                continue;
            }
            let next = cur.join(&c);
            let Some(e) = self.get(&next) else {
                return Ok(None);
            };
            match &e.kind {
                EntryKind::Symlink(target) => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(SourceError::Loop(src.to_owned()));
                    }
                    if target.is_absolute() {
                        cur = PathBuf::new();
                    }
                    push_components(&mut todo, target);
                }
                EntryKind::Dir => cur = next,
                _ if todo.is_empty() => cur = next,
                // A file where a directory should be.
                _ => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    /// The digest of picked entries, in their order.
    pub fn digest(&self, entries: &[Selected], opts: HashOptions) -> Result<String, SourceError> {
        let mut h = Sha256::new();
        h.update(b"berth copy sources v1\0");
        for s in entries {
            h.update((s.source as u64).to_le_bytes());
            field(&mut h, s.matched.as_os_str().as_bytes());
            field(&mut h, s.rel.as_os_str().as_bytes());
            let tag = match s.entry.kind {
                EntryKind::File => b'f',
                EntryKind::Dir => b'd',
                EntryKind::Symlink(_) => b'l',
                EntryKind::Other => b'o',
            };
            h.update([tag]);
            h.update(s.entry.mode.to_le_bytes());
            if opts.owners {
                h.update(s.entry.uid.to_le_bytes());
                h.update(s.entry.gid.to_le_bytes());
            }
            match &s.entry.kind {
                EntryKind::File => h.update(file_digest(&self.root().join(&s.entry.path))?),
                EntryKind::Symlink(target) => field(&mut h, target.as_os_str().as_bytes()),
                EntryKind::Dir | EntryKind::Other => {}
            }
        }
        Ok(format!("sha256:{}", hex(&h.finalize())))
    }
}

/// Pushes `path`'s components onto a stack of components still to walk, so the first pops first.
fn push_components(todo: &mut Vec<OsString>, path: &Path) {
    for c in path.components().rev() {
        match c {
            Component::Normal(n) => todo.push(n.to_owned()),
            Component::ParentDir => todo.push("..".into()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
}

/// A length-prefixed field, so that no two different entries hash the same bytes.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn file_digest(path: &Path) -> Result<[u8; 32], SourceError> {
    let read = |source| SourceError::Read {
        path: path.to_owned(),
        source,
    };
    let mut f = File::open(path).map_err(read)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read(e)),
        };
        h.update(&buf[..n]);
        total += n as u64;
    }
    h.update(total.to_le_bytes());
    Ok(h.finalize().into())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}
