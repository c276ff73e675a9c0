//! The content store: blobs under `content/sha256/<hex>`, each written to a temporary file, checked against its
//! digest, fsynced and renamed into place, so a blob that fails its digest is never visible and a crash leaves
//! at most a stray temporary file (removed by the next garbage collection).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("content store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob {expected}: digest mismatch, the bytes hash to {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest}: size mismatch, expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0} is not in the content store")]
    NotFound(Digest),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ContentError + '_ {
    move |source| ContentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Clone, Debug)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// `root` is `<store>/content`; created if missing.
    pub fn open(root: &Path) -> Result<ContentStore, ContentError> {
        for d in [root.join("sha256"), root.join("sha512"), root.join("tmp")] {
            fs::create_dir_all(&d).map_err(io_err(&d))?;
        }
        Ok(ContentStore {
            root: root.to_path_buf(),
        })
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join(digest.algorithm()).join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File, ContentError> {
        let p = self.path(digest);
        File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ContentError::NotFound(digest.clone())
            } else {
                ContentError::Io { path: p, source: e }
            }
        })
    }

    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, ContentError> {
        let mut f = self.open_blob(digest)?;
        let mut v = Vec::new();
        f.read_to_end(&mut v).map_err(io_err(&self.path(digest)))?;
        Ok(v)
    }

    /// Stores bytes already in memory (manifests, configs), verified like any other blob.
    pub fn write_all(&self, digest: &Digest, data: &[u8]) -> Result<(), ContentError> {
        if self.contains(digest) {
            return Ok(());
        }
        let mut w = self.writer_for(digest)?;
        w.write_all(data).map_err(io_err(&w.path))?;
        w.commit(digest, Some(data.len() as u64))
    }

    /// A writer into a fresh temporary file, hashing with sha256 (`digest` tells the result); nothing is
    /// visible until `commit` checks the digest.
    pub fn writer(&self) -> Result<BlobWriter, ContentError> {
        self.new_writer(Some(Hasher::sha256()))
    }

    /// A writer for a blob whose digest is known, hashing with that digest's algorithm.
    pub fn writer_for(&self, expected: &Digest) -> Result<BlobWriter, ContentError> {
        self.new_writer(Some(expected.hasher()))
    }

    /// A writer for bytes whose source verifies the digest itself before its last read succeeds (the registry
    /// client's blob reader does): `commit` then checks the size only, and the bytes are hashed once, not twice.
    pub fn writer_for_verified_source(&self) -> Result<BlobWriter, ContentError> {
        self.new_writer(None)
    }

    fn new_writer(&self, hasher: Option<Hasher>) -> Result<BlobWriter, ContentError> {
        let dir = self.root.join("tmp");
        let tmp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&dir)
            .map_err(io_err(&dir))?;
        let (file, path) = tmp.keep().map_err(|e| ContentError::Io {
            path: dir.clone(),
            source: e.error,
        })?;
        Ok(BlobWriter {
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
            path,
            hasher,
            written: 0,
            store: self.clone(),
        })
    }

    pub fn delete(&self, digest: &Digest) -> Result<(), ContentError> {
        let p = self.path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ContentError::Io { path: p, source: e }),
        }
    }

    /// Every stored blob, for garbage collection.
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        let mut out = Vec::new();
        for alg in ["sha256", "sha512"] {
            let dir = self.root.join(alg);
            for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
                let e = e.map_err(io_err(&dir))?;
                let name = e.file_name();
                if let Ok(d) = Digest::parse(&format!("{alg}:{}", name.to_string_lossy())) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// Removes temporary files that no writer holds any more (left by a crash). Callers hold the store's
    /// exclusive lock, so no writer is running.
    pub fn remove_temporaries(&self) -> Result<u64, ContentError> {
        let dir = self.root.join("tmp");
        let mut n = 0;
        for e in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let e = e.map_err(io_err(&dir))?;
            if fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    pub fn size(&self, digest: &Digest) -> Option<u64> {
        fs::metadata(self.path(digest)).ok().map(|m| m.len())
    }
}

/// A blob being written. Dropped without `commit`, its temporary file is removed.
pub struct BlobWriter {
    file: Option<io::BufWriter<File>>,
    path: PathBuf,
    /// None when the source has verified the digest already.
    hasher: Option<Hasher>,
    written: u64,
    store: ContentStore,
}

impl BlobWriter {
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The digest of what was written so far (None for a writer of a verified source).
    pub fn digest(&self) -> Option<Digest> {
        self.hasher.clone().map(Hasher::finish)
    }

    /// Checks size and digest, then fsyncs and renames the file to its final name.
    pub fn commit(mut self, expected: &Digest, size: Option<u64>) -> Result<(), ContentError> {
        if let Some(size) = size {
            if size != self.written {
                return Err(ContentError::SizeMismatch {
                    digest: expected.clone(),
                    expected: size,
                    actual: self.written,
                });
            }
        }
        if let Some(actual) = self.hasher.clone().map(Hasher::finish) {
            if &actual != expected {
                return Err(ContentError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let Some(buf) = self.file.take() else {
            return Ok(());
        };
        let file = buf.into_inner().map_err(|e| ContentError::Io {
            path: self.path.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_err(&self.path))?;
        drop(file);
        let dest = self.store.path(expected);
        fs::rename(&self.path, &dest).map_err(io_err(&dest))?;
        if let Some(dir) = dest.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(dir))?;
        }
        Ok(())
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already committed"))?;
        let n = f.write(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Wraps a reader so that everything read from it is also written into a blob writer: the download and the
/// layer extraction share one pass over the bytes.
pub struct Tee<'a, R> {
    pub inner: R,
    pub writer: &'a mut BlobWriter,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.writer.write_all(&buf[..n])?;
        Ok(n)
    }
}
