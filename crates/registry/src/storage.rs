//! The on-disk layout, all blocking filesystem code (callers run it on tokio's blocking pool):
//!
//! ```text
//! root/blobs/<alg>/<hex>                                   content-addressed blobs and manifests
//! root/repositories/<name>/_layers/<alg>/<hex>             "this repository holds that blob" (empty file)
//! root/repositories/<name>/_manifests/revisions/<alg>/<hex>  a manifest of the repository; holds its media type
//! root/repositories/<name>/_manifests/tags/<tag>           the digest the tag points at
//! root/repositories/<name>/_referrers/<alg>/<subject hex>/<alg>-<hex>  descriptor JSON of a referrer
//! root/uploads/<uuid>/{data,repo}                          upload sessions
//! root/uploads/.tmp-*                                      files being written before their rename into place
//! ```
//!
//! Everything a reader can see arrives by `rename` of a fully written, fsynced file, so a crash or a dropped
//! connection never exposes a partial blob, link or tag, and concurrent writers of the same name just replace
//! each other with identical (blobs) or whole (tags) content.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use image::Digest;

#[derive(Debug, thiserror::Error)]
#[error("storage: {what} {path}: {source}")]
pub struct StorageError {
    pub what: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

pub(crate) fn err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Random lowercase hex from the system's CSPRNG (upload ids, temporary names).
pub fn random_hex(bytes: usize) -> String {
    use ring::rand::SecureRandom as _;
    let mut buf = vec![0u8; bytes];
    if ring::rand::SystemRandom::new().fill(&mut buf).is_err() {
        // The kernel's RNG does not fail on Linux; a time-derived name still avoids collisions here.
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8 ^ (std::process::id() as u8);
        }
    }
    image::digest::hex(&buf)
}

#[derive(Clone, Debug)]
pub struct Storage {
    root: PathBuf,
}

/// A referrer as the referrers API lists it.
pub type ReferrerDescriptor = serde_json::Value;

impl Storage {
    pub fn open(root: &Path) -> Result<Storage, StorageError> {
        for sub in ["blobs/sha256", "blobs/sha512", "repositories", "uploads"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(err("creating", &p))?;
        }
        Ok(Storage {
            root: root.to_path_buf(),
        })
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    pub fn repos_dir(&self) -> PathBuf {
        self.root.join("repositories")
    }

    pub fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.algorithm()).join(d.hex())
    }

    pub fn repo_dir(&self, name: &str) -> PathBuf {
        self.repos_dir().join(name)
    }

    fn layer_link(&self, name: &str, d: &Digest) -> PathBuf {
        self.repo_dir(name)
            .join("_layers")
            .join(d.algorithm())
            .join(d.hex())
    }

    fn revision_link(&self, name: &str, d: &Digest) -> PathBuf {
        self.repo_dir(name)
            .join("_manifests/revisions")
            .join(d.algorithm())
            .join(d.hex())
    }

    fn tags_dir(&self, name: &str) -> PathBuf {
        self.repo_dir(name).join("_manifests/tags")
    }

    fn referrers_dir(&self, name: &str, subject: &Digest) -> PathBuf {
        self.repo_dir(name)
            .join("_referrers")
            .join(subject.algorithm())
            .join(subject.hex())
    }

    /// A fresh temporary path on the same filesystem as the blobs (for the rename into place).
    pub fn temp_path(&self) -> PathBuf {
        self.uploads_dir().join(format!(".tmp-{}", random_hex(12)))
    }

    pub fn repo_exists(&self, name: &str) -> bool {
        let dir = self.repo_dir(name);
        dir.join("_manifests").is_dir() || dir.join("_layers").is_dir()
    }

    /// The size of a stored blob, if it is stored.
    pub fn blob_size(&self, d: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(d)).ok().map(|m| m.len())
    }

    /// The blob's size when `name` may serve it: linked into the repository (or one of its manifests).
    pub fn repo_blob_size(&self, name: &str, d: &Digest) -> Option<u64> {
        if self.layer_link(name, d).exists() || self.revision_link(name, d).exists() {
            self.blob_size(d)
        } else {
            None
        }
    }

    /// Marks a blob as just used, so GC's grace period protects it while a push that found it goes on.
    pub fn touch_blob(&self, d: &Digest) {
        if let Ok(f) = fs::File::open(self.blob_path(d)) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    /// Touches the blob only when its mtime is older than `age` (HEAD/GET: no write per request).
    pub fn freshen_blob(&self, d: &Digest, age: std::time::Duration) {
        let p = self.blob_path(d);
        let old = fs::metadata(&p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|a| a > age);
        if old {
            self.touch_blob(d);
        }
    }

    pub fn link_blob(&self, name: &str, d: &Digest) -> Result<(), StorageError> {
        let link = self.layer_link(name, d);
        if link.exists() {
            return Ok(());
        }
        write_atomic(&link, b"", self)
    }

    pub fn unlink_blob(&self, name: &str, d: &Digest) -> Result<bool, StorageError> {
        remove_if_exists(&self.layer_link(name, d))
    }

    /// Moves a verified, fsynced file into the blob store (or drops it when the blob is already there).
    pub fn commit_blob(&self, tmp: &Path, d: &Digest) -> Result<(), StorageError> {
        let dest = self.blob_path(d);
        if dest.exists() {
            let _ = fs::remove_file(tmp);
            self.touch_blob(d);
            return Ok(());
        }
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).map_err(err("creating", dir))?;
        }
        fs::rename(tmp, &dest).map_err(err("renaming into", &dest))?;
        sync_dir(dest.parent());
        Ok(())
    }

    /// Stores a manifest's bytes as a blob and links it into the repository (and tags it, and records it as a
    /// referrer of its subject).
    pub fn put_manifest(
        &self,
        name: &str,
        d: &Digest,
        media_type: &str,
        bytes: &[u8],
        tag: Option<&str>,
        referrer: Option<(&Digest, &ReferrerDescriptor)>,
    ) -> Result<(), StorageError> {
        if self.blob_size(d) != Some(bytes.len() as u64) {
            let tmp = self.temp_path();
            write_synced(&tmp, bytes)?;
            self.commit_blob(&tmp, d)?;
        } else {
            self.touch_blob(d);
        }
        write_atomic(&self.revision_link(name, d), media_type.as_bytes(), self)?;
        if let Some((subject, desc)) = referrer {
            let p =
                self.referrers_dir(name, subject)
                    .join(format!("{}-{}", d.algorithm(), d.hex()));
            let body = serde_json::to_vec(desc).unwrap_or_default();
            write_atomic(&p, &body, self)?;
        }
        if let Some(tag) = tag {
            write_atomic(&self.tags_dir(name).join(tag), d.as_str().as_bytes(), self)?;
        }
        Ok(())
    }

    /// The media type of a manifest of this repository, if it has it.
    pub fn manifest_media_type(&self, name: &str, d: &Digest) -> Option<String> {
        fs::read_to_string(self.revision_link(name, d)).ok()
    }

    pub fn resolve_tag(&self, name: &str, tag: &str) -> Option<Digest> {
        let s = fs::read_to_string(self.tags_dir(name).join(tag)).ok()?;
        Digest::parse(s.trim()).ok()
    }

    pub fn read_blob(&self, d: &Digest, max: u64) -> Result<Vec<u8>, StorageError> {
        use std::io::Read as _;
        let p = self.blob_path(d);
        let mut out = Vec::new();
        fs::File::open(&p)
            .map_err(err("opening", &p))?
            .take(max)
            .read_to_end(&mut out)
            .map_err(err("reading", &p))?;
        Ok(out)
    }

    /// Removes a manifest from a repository with the tags pointing at it and its referrer entry.
    pub fn delete_manifest(&self, name: &str, d: &Digest) -> Result<bool, StorageError> {
        let link = self.revision_link(name, d);
        if !link.exists() {
            return Ok(false);
        }
        for tag in self.tags(name)? {
            if self.resolve_tag(name, &tag).as_ref() == Some(d) {
                remove_if_exists(&self.tags_dir(name).join(&tag))?;
            }
        }
        if let Ok(bytes) = self.read_blob(d, 64 << 20) {
            if let Some(subject) = subject_of(&bytes) {
                let p = self.referrers_dir(name, &subject).join(format!(
                    "{}-{}",
                    d.algorithm(),
                    d.hex()
                ));
                remove_if_exists(&p)?;
            }
        }
        remove_if_exists(&link)
    }

    pub fn delete_tag(&self, name: &str, tag: &str) -> Result<bool, StorageError> {
        remove_if_exists(&self.tags_dir(name).join(tag))
    }

    /// The repository's tags, sorted.
    pub fn tags(&self, name: &str) -> Result<Vec<String>, StorageError> {
        let dir = self.tags_dir(name);
        let mut out = Vec::new();
        match fs::read_dir(&dir) {
            Ok(rd) => {
                for e in rd {
                    let e = e.map_err(err("listing", &dir))?;
                    if let Some(n) = e.file_name().to_str() {
                        if crate::names::valid_tag(n) {
                            out.push(n.to_string());
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err("listing", &dir)(e)),
        }
        out.sort();
        Ok(out)
    }

    /// Every repository name, sorted.
    pub fn repositories(&self) -> Result<Vec<String>, StorageError> {
        let mut out = Vec::new();
        let base = self.repos_dir();
        walk_repos(&base, "", &mut out)?;
        out.sort();
        Ok(out)
    }

    /// The manifest digests of a repository.
    pub fn revisions(&self, name: &str) -> Result<Vec<Digest>, StorageError> {
        let mut out = Vec::new();
        let base = self.repo_dir(name).join("_manifests/revisions");
        for alg in ["sha256", "sha512"] {
            list_digests(&base.join(alg), alg, &mut out)?;
        }
        Ok(out)
    }

    /// The blobs linked into a repository.
    pub fn layer_links(&self, name: &str) -> Result<Vec<Digest>, StorageError> {
        let mut out = Vec::new();
        let base = self.repo_dir(name).join("_layers");
        for alg in ["sha256", "sha512"] {
            list_digests(&base.join(alg), alg, &mut out)?;
        }
        Ok(out)
    }

    pub fn referrers(
        &self,
        name: &str,
        subject: &Digest,
    ) -> Result<Vec<ReferrerDescriptor>, StorageError> {
        let dir = self.referrers_dir(name, subject);
        let mut out = Vec::new();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(err("listing", &dir)(e)),
        };
        for e in rd {
            let e = e.map_err(err("listing", &dir))?;
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if let Ok(bytes) = fs::read(e.path()) {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                    out.push(v);
                }
            }
        }
        out.sort_by(|a, b| a["digest"].as_str().cmp(&b["digest"].as_str()));
        Ok(out)
    }

    // ----- uploads -----

    pub fn upload_dir(&self, uuid: &str) -> PathBuf {
        self.uploads_dir().join(uuid)
    }

    pub fn upload_data(&self, uuid: &str) -> PathBuf {
        self.upload_dir(uuid).join("data")
    }

    pub fn create_upload(&self, name: &str) -> Result<String, StorageError> {
        let uuid = random_hex(16);
        let dir = self.upload_dir(&uuid);
        fs::create_dir_all(&dir).map_err(err("creating", &dir))?;
        let repo = dir.join("repo");
        fs::write(&repo, name).map_err(err("writing", &repo))?;
        let data = dir.join("data");
        fs::File::create(&data).map_err(err("creating", &data))?;
        Ok(uuid)
    }

    /// The repository an upload belongs to, when the upload exists.
    pub fn upload_repo(&self, uuid: &str) -> Option<String> {
        if uuid.len() != 32 || !uuid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        fs::read_to_string(self.upload_dir(uuid).join("repo")).ok()
    }

    pub fn upload_len(&self, uuid: &str) -> Option<u64> {
        fs::metadata(self.upload_data(uuid)).ok().map(|m| m.len())
    }

    pub fn remove_upload(&self, uuid: &str) -> Result<bool, StorageError> {
        let dir = self.upload_dir(uuid);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(err("removing", &dir)(e)),
        }
    }

    /// Removes uploads (and temporary files) untouched for longer than `age`; returns how many.
    pub fn remove_stale_uploads(&self, age: std::time::Duration) -> Result<u64, StorageError> {
        let dir = self.uploads_dir();
        let mut n = 0;
        let rd = fs::read_dir(&dir).map_err(err("listing", &dir))?;
        let now = SystemTime::now();
        for e in rd {
            let e = e.map_err(err("listing", &dir))?;
            let p = e.path();
            let probe = if p.is_dir() {
                p.join("data")
            } else {
                p.clone()
            };
            let mtime = fs::symlink_metadata(&probe)
                .or_else(|_| fs::symlink_metadata(&p))
                .and_then(|m| m.modified());
            let stale = match mtime {
                Ok(t) => now.duration_since(t).is_ok_and(|a| a > age),
                Err(_) => false,
            };
            if stale {
                let r = if p.is_dir() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                match r {
                    Ok(()) => n += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(err("removing", &p)(e)),
                }
            }
        }
        Ok(n)
    }
}

/// The `subject` digest of a manifest document, if it has one.
pub fn subject_of(bytes: &[u8]) -> Option<Digest> {
    #[derive(serde::Deserialize)]
    struct S {
        subject: Option<Subject>,
    }
    #[derive(serde::Deserialize)]
    struct Subject {
        digest: Digest,
    }
    serde_json::from_slice::<S>(bytes)
        .ok()?
        .subject
        .map(|s| s.digest)
}

fn list_digests(dir: &Path, alg: &str, out: &mut Vec<Digest>) -> Result<(), StorageError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err("listing", dir)(e)),
    };
    for e in rd {
        let e = e.map_err(err("listing", dir))?;
        if let Some(n) = e.file_name().to_str() {
            if let Ok(d) = Digest::parse(&format!("{alg}:{n}")) {
                out.push(d);
            }
        }
    }
    Ok(())
}

fn walk_repos(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), StorageError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err("listing", dir)(e)),
    };
    for e in rd {
        let e = e.map_err(err("listing", dir))?;
        let Some(n) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if n.starts_with('_') || n.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = if prefix.is_empty() {
            n.clone()
        } else {
            format!("{prefix}/{n}")
        };
        let p = e.path();
        if p.join("_manifests").is_dir() || p.join("_layers").is_dir() {
            out.push(name.clone());
        }
        walk_repos(&p, &name, out)?;
    }
    Ok(())
}

fn remove_if_exists(p: &Path) -> Result<bool, StorageError> {
    match fs::remove_file(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(err("removing", p)(e)),
    }
}

fn write_synced(p: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    let mut f = fs::File::create(p).map_err(err("creating", p))?;
    f.write_all(bytes).map_err(err("writing", p))?;
    f.sync_all().map_err(err("syncing", p))
}

/// Writes a small file by rename of a synced temporary (in the uploads directory, same filesystem).
pub fn write_atomic(p: &Path, bytes: &[u8], st: &Storage) -> Result<(), StorageError> {
    if let Some(dir) = p.parent() {
        fs::create_dir_all(dir).map_err(err("creating", dir))?;
    }
    let tmp = st.temp_path();
    write_synced(&tmp, bytes)?;
    if let Err(e) = fs::rename(&tmp, p) {
        let _ = fs::remove_file(&tmp);
        return Err(err("renaming into", p)(e));
    }
    sync_dir(p.parent());
    Ok(())
}

/// Makes a rename durable; failures only weaken durability, never correctness, so they are ignored.
pub fn sync_dir(dir: Option<&Path>) {
    if let Some(d) = dir {
        if let Ok(f) = fs::File::open(d) {
            let _ = f.sync_all();
        }
    }
}
