//! The build cache: a step whose parent image and inputs (the instruction after substitution, the build
//! args it sees, the content digest of the files it copies) match an earlier build reuses that build's
//! image. Entries are files `<root>/build-cache/<key>` holding an image id, written through a temporary file
//! and renamed; an entry whose image is gone from the store is a miss.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use image::digest::Hasher;
use image::{Digest, Store};

pub struct Cache {
    dir: PathBuf,
}

/// A cache key: sha256 over the parent's id and the step's inputs, each length-prefixed so that parts cannot
/// run into each other.
pub fn key(parent: Option<&Digest>, parts: &[&[u8]]) -> String {
    let mut h = Hasher::sha256();
    let p = parent.map(|d| d.as_str()).unwrap_or("scratch");
    for part in std::iter::once(p.as_bytes()).chain(parts.iter().copied()) {
        h.update(&(part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finish().hex().to_string()
}

impl Cache {
    pub fn open(root: &Path) -> io::Result<Cache> {
        let dir = root.join("build-cache");
        fs::create_dir_all(&dir)?;
        Ok(Cache { dir })
    }

    /// The image an earlier step with this key made, if the store still has it.
    pub fn get(&self, key: &str, store: &Store) -> Option<Digest> {
        let text = fs::read_to_string(self.dir.join(key)).ok()?;
        let id = Digest::parse(text.trim()).ok()?;
        store.resolve(id.as_str()).ok().map(|i| i.id)
    }

    pub fn put(&self, key: &str, id: &Digest) -> io::Result<()> {
        let tmp = self.dir.join(format!(".{key}.{}", std::process::id()));
        fs::write(&tmp, id.as_str())?;
        fs::rename(&tmp, self.dir.join(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_their_parts() {
        let a = key(None, &[b"RUN a", b"b"]);
        let b = key(None, &[b"RUN ab", b""]);
        assert_ne!(a, b);
        assert_eq!(a, key(None, &[b"RUN a", b"b"]));
        let d = Digest::sha256_of(b"x");
        assert_ne!(key(Some(&d), &[b"RUN a", b"b"]), a);
        assert_eq!(a.len(), 64);
    }
}
