//! The image store under `--root`: content, records, snapshots and rootfs activation, and the garbage
//! collector that keeps them consistent.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::FlockOperation;

use crate::content::{ContentError, ContentStore};
use crate::db::{Db, DbError, ImageRow, TagRow};
use crate::media::{chain_ids, ImageConfig, Manifest};
use crate::reference::Reference;
use crate::snapshot::{self, Driver, MountError};
use crate::Digest;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Layer(#[from] crate::layer::LayerError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("No such image: {0}")]
    NoSuchImage(String),
    #[error("{0}")]
    Conflict(String),
    #[error("invalid reference format: {input:?}: {reason}")]
    BadReference { input: String, reason: String },
    #[error("{what} {digest}: {reason}")]
    BadDocument {
        what: &'static str,
        digest: Digest,
        reason: String,
    },
    #[error("rootfs {0:?} is already active")]
    AlreadyActive(String),
    #[error("invalid rootfs key {0:?}: use letters, digits, '_', '.', '-' and ':'")]
    BadKey(String),
    #[error("layer {chain_id} of image {image} is not unpacked in this store")]
    MissingSnapshot { image: Digest, chain_id: Digest },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub struct Store {
    root: PathBuf,
    content: ContentStore,
    db: Mutex<Db>,
    driver: Driver,
}

/// A held flock on the store; pulls and activations share it, garbage collection takes it alone.
pub struct StoreLock {
    _file: File,
}

/// One image as the store knows it, with everything needed to show or use it.
#[derive(Clone, Debug)]
pub struct ImageInfo {
    pub id: Digest,
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config_bytes: Vec<u8>,
    pub config: ImageConfig,
    pub tags: Vec<TagRow>,
    pub stored: i64,
    pub size: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    Untagged(String),
    Deleted(Digest),
}

#[derive(Debug, Default)]
pub struct GcStats {
    pub blobs: u64,
    pub snapshots: u64,
    pub bytes: u64,
}

impl Store {
    pub fn open(root: &Path, driver: Driver) -> Result<Store, StoreError> {
        for d in ["snapshots", "active", "tmp"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let content = ContentStore::open(&root.join("content"))?;
        let db = Db::open(&root.join("images.db"))?;
        Ok(Store {
            root: root.to_path_buf(),
            content,
            db: Mutex::new(db),
            driver,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    pub fn driver(&self) -> Driver {
        self.driver
    }

    pub(crate) fn db(&self) -> std::sync::MutexGuard<'_, Db> {
        // A panic while holding the lock cannot leave the connection half-used: every statement is atomic.
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot_dir(&self, id: i64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    fn lock(&self, op: FlockOperation) -> Result<StoreLock, StoreError> {
        let p = self.root.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(io_err(&p))?;
        rustix::fs::flock(&f, op).map_err(|e| StoreError::Io {
            path: p.clone(),
            source: e.into(),
        })?;
        Ok(StoreLock { _file: f })
    }

    pub fn shared_lock(&self) -> Result<StoreLock, StoreError> {
        self.lock(FlockOperation::LockShared)
    }

    pub fn exclusive_lock(&self) -> Result<StoreLock, StoreError> {
        self.lock(FlockOperation::LockExclusive)
    }

    pub(crate) fn manifest(&self, digest: &Digest) -> Result<Manifest, StoreError> {
        let bytes = self.content.read(digest)?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::BadDocument {
            what: "manifest",
            digest: digest.clone(),
            reason: e.to_string(),
        })
    }

    pub(crate) fn config(&self, digest: &Digest) -> Result<(Vec<u8>, ImageConfig), StoreError> {
        let bytes = self.content.read(digest)?;
        let cfg = serde_json::from_slice(&bytes).map_err(|e| StoreError::BadDocument {
            what: "image config",
            digest: digest.clone(),
            reason: e.to_string(),
        })?;
        Ok((bytes, cfg))
    }

    pub fn info(&self, row: &ImageRow, tags: &[TagRow]) -> Result<ImageInfo, StoreError> {
        let manifest = self.manifest(&row.manifest)?;
        let (config_bytes, config) = self.config(&row.id)?;
        Ok(ImageInfo {
            id: row.id.clone(),
            manifest_digest: row.manifest.clone(),
            manifest,
            config_bytes,
            config,
            tags: tags.iter().filter(|t| t.image == row.id).cloned().collect(),
            stored: row.created,
            size: row.size,
        })
    }

    /// Every image, newest first, with its tags.
    pub fn list(&self) -> Result<Vec<ImageInfo>, StoreError> {
        let (rows, tags) = {
            let db = self.db();
            (db.images()?, db.tags()?)
        };
        rows.iter().map(|r| self.info(r, &tags)).collect()
    }

    /// Finds an image by name (as docker normalises it), by `name@digest`, or by a unique prefix of its id.
    pub fn resolve(&self, s: &str) -> Result<ImageInfo, StoreError> {
        let (rows, tags) = {
            let db = self.db();
            (db.images()?, db.tags()?)
        };
        let find = |id: &Digest| rows.iter().find(|r| &r.id == id);
        let hexish = s.strip_prefix("sha256:").unwrap_or(s);
        let is_hex = !hexish.is_empty()
            && hexish.len() <= 64
            && hexish
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        // As docker: a full id (or sha256:...) is an id; otherwise a name wins over an id prefix, so an
        // image named "abc" stays reachable when some id starts with "abc".
        let by_id = |prefix: &str| -> Option<Result<ImageInfo, StoreError>> {
            let matches: Vec<&ImageRow> = rows
                .iter()
                .filter(|r| r.id.hex().starts_with(prefix))
                .collect();
            match matches.len() {
                0 => None,
                1 => Some(self.info(matches[0], &tags)),
                n => Some(Err(StoreError::Conflict(format!(
                    "image id prefix {s:?} is ambiguous: {n} images match"
                )))),
            }
        };
        if is_hex && (hexish.len() == 64 || s.starts_with("sha256:")) {
            if let Some(r) = by_id(hexish) {
                return r;
            }
        }
        if let Ok(r) = Reference::parse(s) {
            let name = r.to_string();
            if let Some(t) = tags.iter().find(|t| t.name == name) {
                if let Some(row) = find(&t.image) {
                    return self.info(row, &tags);
                }
            }
            if let Some(d) = &r.digest {
                let repo = format!("{}/{}", r.registry, r.repository);
                for t in &tags {
                    let same_repo = Reference::parse(&t.name)
                        .map(|tr| format!("{}/{}", tr.registry, tr.repository) == repo)
                        .unwrap_or(false);
                    if same_repo && t.repo_digest.as_ref() == Some(d) {
                        if let Some(row) = find(&t.image) {
                            return self.info(row, &tags);
                        }
                    }
                }
                if let Some(row) = rows.iter().find(|r| &r.manifest == d) {
                    return self.info(row, &tags);
                }
            }
        }
        if is_hex {
            if let Some(r) = by_id(hexish) {
                return r;
            }
        }
        Err(StoreError::NoSuchImage(s.to_string()))
    }

    pub fn tag(&self, src: &str, dst: &str) -> Result<(), StoreError> {
        let img = self.resolve(src)?;
        let r = Reference::parse(dst).map_err(|e| StoreError::BadReference {
            input: dst.to_string(),
            reason: e.to_string(),
        })?;
        if r.digest.is_some() {
            return Err(StoreError::BadReference {
                input: dst.to_string(),
                reason: "a tag cannot name a digest".into(),
            });
        }
        self.db().set_tag(&r.to_string(), &img.id, None)?;
        Ok(())
    }

    /// `rmi`: untags a name, and deletes the image when no name and no rootfs use it any more.
    pub fn remove(&self, s: &str, force: bool) -> Result<Vec<Removed>, StoreError> {
        let img = self.resolve(s)?;
        let active: Vec<String> = self
            .db()
            .active()?
            .into_iter()
            .filter(|a| a.image == img.id)
            .map(|a| a.key)
            .collect();
        let by_name = Reference::parse(s)
            .ok()
            .map(|r| r.to_string())
            .filter(|n| img.tags.iter().any(|t| &t.name == n));
        let mut out = Vec::new();
        let untag: Vec<String> = match by_name {
            // One of several names: untag only that one (docker does the same).
            Some(n) if img.tags.len() > 1 => vec![n],
            Some(n) => {
                if !active.is_empty() && !force {
                    return Err(StoreError::Conflict(format!(
                        "conflict: unable to remove repository reference {s:?} (must force) - {} is using its referenced image {}",
                        active[0],
                        short(&img.id)
                    )));
                }
                vec![n]
            }
            None => {
                if img.tags.len() > 1 && !force {
                    return Err(StoreError::Conflict(format!(
                        "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                        short(&img.id)
                    )));
                }
                if !active.is_empty() {
                    return Err(StoreError::Conflict(format!(
                        "conflict: unable to delete {} (cannot be forced) - image is being used by {}",
                        short(&img.id),
                        active[0]
                    )));
                }
                img.tags.iter().map(|t| t.name.clone()).collect()
            }
        };
        {
            let db = self.db();
            for n in &untag {
                if db.remove_tag(n)? {
                    out.push(Removed::Untagged(n.clone()));
                }
            }
            if db.remove_image_if_unused(&img.id)? {
                out.push(Removed::Deleted(img.id.clone()));
            }
        }
        if out.iter().any(|r| matches!(r, Removed::Deleted(_))) {
            self.gc()?;
        }
        Ok(out)
    }

    /// `image prune`: removes untagged images (all unused ones with `all`), then their data.
    pub fn prune(&self, all: bool) -> Result<(Vec<Removed>, GcStats), StoreError> {
        let mut out = Vec::new();
        {
            let db = self.db();
            let tags = db.tags()?;
            for img in db.images()? {
                let tagged: Vec<&TagRow> = tags.iter().filter(|t| t.image == img.id).collect();
                if !tagged.is_empty() && !all {
                    continue;
                }
                if db.active()?.iter().any(|a| a.image == img.id) {
                    continue;
                }
                for t in tagged {
                    db.remove_tag(&t.name)?;
                    out.push(Removed::Untagged(t.name.clone()));
                }
                if db.remove_image_if_unused(&img.id)? {
                    out.push(Removed::Deleted(img.id.clone()));
                }
            }
        }
        let stats = self.gc()?;
        Ok((out, stats))
    }

    /// Removes every blob, snapshot and rootfs directory that no record references, and the leftovers of
    /// interrupted pulls. Waits for running pulls (they hold the shared lock).
    pub fn gc(&self) -> Result<GcStats, StoreError> {
        let _lock = self.exclusive_lock()?;
        let mut stats = GcStats::default();
        let (images, tags, active, snaps) = {
            let db = self.db();
            (db.images()?, db.tags()?, db.active()?, db.snapshots()?)
        };
        let mut blobs: HashSet<Digest> = HashSet::new();
        let mut chains: HashSet<Digest> = HashSet::new();
        for img in &images {
            blobs.insert(img.manifest.clone());
            blobs.insert(img.id.clone());
            // A record whose documents are unreadable keeps what it can; gc never guesses.
            if let Ok(m) = self.manifest(&img.manifest) {
                blobs.extend(m.layers.iter().map(|l| l.digest.clone()));
            }
            if let Ok((_, cfg)) = self.config(&img.id) {
                chains.extend(chain_ids(&cfg.rootfs.diff_ids));
            }
        }
        blobs.extend(tags.iter().filter_map(|t| t.repo_digest.clone()));
        for d in self.content.list()? {
            if !blobs.contains(&d) {
                stats.bytes += self.content.size(&d).unwrap_or(0);
                self.content.delete(&d)?;
                stats.blobs += 1;
            }
        }
        self.content.remove_temporaries()?;

        let mut keep_ids = HashSet::new();
        for s in &snaps {
            if s.ready && chains.contains(&s.chain_id) {
                keep_ids.insert(s.id.to_string());
                continue;
            }
            let dir = self.snapshot_dir(s.id);
            snapshot::remove_tree(&dir).map_err(io_err(&dir))?;
            let _ = fs::remove_file(dir.with_extension("lock"));
            self.db().remove_snapshot(s.id)?;
            stats.snapshots += 1;
            stats.bytes += s.size;
        }
        // Directories no row names: an extraction that crashed before its row existed.
        let sdir = self.root.join("snapshots");
        for e in fs::read_dir(&sdir).map_err(io_err(&sdir))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.trim_end_matches(".lock");
            if !keep_ids.contains(stem) {
                let p = e.path();
                if p.is_dir() {
                    snapshot::remove_tree(&p).map_err(io_err(&p))?;
                } else {
                    let _ = fs::remove_file(&p);
                }
            }
        }
        let keys: HashSet<String> = active.iter().map(|a| a.key.clone()).collect();
        let adir = self.root.join("active");
        for e in fs::read_dir(&adir).map_err(io_err(&adir))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keys.contains(&name) {
                self.remove_active_dir(&e.path())?;
            }
        }
        let tdir = self.root.join("tmp");
        for e in fs::read_dir(&tdir).map_err(io_err(&tdir))?.flatten() {
            let p = e.path();
            snapshot::remove_tree(&p).map_err(io_err(&p))?;
        }
        Ok(stats)
    }

    /// The snapshot directories of an image, bottom layer first.
    pub fn layer_dirs(&self, image: &Digest) -> Result<Vec<PathBuf>, StoreError> {
        let (_, cfg) = self.config(image)?;
        let db = self.db();
        chain_ids(&cfg.rootfs.diff_ids)
            .into_iter()
            .map(|c| match db.snapshot(&c)? {
                Some(s) if s.ready => Ok(self.snapshot_dir(s.id)),
                _ => Err(StoreError::MissingSnapshot {
                    image: image.clone(),
                    chain_id: c,
                }),
            })
            .collect()
    }

    /// A writable root filesystem for `key` (a container id): an overlay of the image's layers under its own
    /// upper directory, or a copy with the vfs driver. Returns the directory to use as the rootfs.
    pub fn activate(
        &self,
        key: &str,
        image: &Digest,
        readonly: bool,
    ) -> Result<PathBuf, StoreError> {
        if key.is_empty()
            || key.len() > 128
            || key.starts_with('.')
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-:".contains(&b))
        {
            return Err(StoreError::BadKey(key.to_string()));
        }
        let _lock = self.shared_lock()?;
        let lowers = self.layer_dirs(image)?;
        if !self
            .db()
            .add_active(key, image, self.driver.name(), now())?
        {
            return Err(StoreError::AlreadyActive(key.to_string()));
        }
        let dir = self.root.join("active").join(key);
        match self.build_rootfs(&dir, &lowers, readonly) {
            Ok(p) => Ok(p),
            Err(e) => {
                let _ = self.remove_active_dir(&dir);
                let _ = self.db().remove_active(key);
                Err(e)
            }
        }
    }

    fn build_rootfs(
        &self,
        dir: &Path,
        lowers: &[PathBuf],
        readonly: bool,
    ) -> Result<PathBuf, StoreError> {
        let merged = dir.join("merged");
        let upper = dir.join("upper");
        let work = dir.join("work");
        for d in [&merged, &upper, &work] {
            fs::create_dir_all(d).map_err(io_err(d))?;
        }
        let empty;
        let lowers = if lowers.is_empty() {
            // An image without layers (FROM scratch and nothing added) still gets a valid overlay.
            empty = vec![dir.join("empty")];
            fs::create_dir_all(&empty[0]).map_err(io_err(&empty[0]))?;
            &empty[..]
        } else {
            lowers
        };
        if self.driver == Driver::Overlay {
            match snapshot::mount_overlay(lowers, &upper, &work, &merged, readonly) {
                Ok(()) => return Ok(merged),
                Err(e) if snapshot::overlay_unsupported(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for l in lowers {
            crate::layer::merge(l, &merged)?;
        }
        Ok(merged)
    }

    /// Mounts again the rootfs of an activation whose overlay was unmounted ([`Store::unmount_active`]), keeping
    /// its upper directory: a stopped container starts again with its changes. A no-op when it is mounted or
    /// is a vfs copy.
    pub fn remount(&self, key: &str, image: &Digest) -> Result<PathBuf, StoreError> {
        if key.is_empty() || key.contains('/') || key.starts_with('.') {
            return Err(StoreError::BadKey(key.to_string()));
        }
        let dir = self.root.join("active").join(key);
        let merged = dir.join("merged");
        let upper = dir.join("upper");
        if !upper.is_dir() {
            return Err(StoreError::Conflict(format!(
                "rootfs {key:?} is not active (no upper directory in {})",
                dir.display()
            )));
        }
        if snapshot::is_mounted(&merged) {
            return Ok(merged);
        }
        let copied = fs::read_dir(&merged)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if copied {
            return Ok(merged);
        }
        let _lock = self.shared_lock()?;
        let lowers = self.layer_dirs(image)?;
        let empty;
        let lowers = if lowers.is_empty() {
            empty = vec![dir.join("empty")];
            fs::create_dir_all(&empty[0]).map_err(io_err(&empty[0]))?;
            empty
        } else {
            lowers
        };
        snapshot::mount_overlay(&lowers, &upper, &dir.join("work"), &merged, false)?;
        Ok(merged)
    }

    /// Unmounts an activation's overlay, keeping its directories and record (see [`Store::remount`]).
    pub fn unmount_active(&self, key: &str) -> Result<(), StoreError> {
        let merged = self.active_path(key);
        if snapshot::is_mounted(&merged) {
            snapshot::unmount(&merged)?;
        }
        Ok(())
    }

    /// Unmounts and removes a rootfs made by `activate`; false if there was none.
    pub fn deactivate(&self, key: &str) -> Result<bool, StoreError> {
        if key.is_empty() || key.contains('/') || key.starts_with('.') {
            return Err(StoreError::BadKey(key.to_string()));
        }
        let dir = self.root.join("active").join(key);
        self.remove_active_dir(&dir)?;
        Ok(self.db().remove_active(key)?)
    }

    /// A new image from a directory of changes on top of `opts.parent` (see [`crate::commit`]).
    pub fn commit_changes(
        &self,
        diff: &Path,
        opts: &crate::commit::CommitOptions,
    ) -> Result<crate::commit::Committed, StoreError> {
        crate::commit::commit(self, Some(diff), opts)
    }

    /// The writable layer of an activation: what a container changed (overlay whiteouts included).
    pub fn active_upper(&self, key: &str) -> PathBuf {
        self.root.join("active").join(key).join("upper")
    }

    pub fn active_path(&self, key: &str) -> PathBuf {
        self.root.join("active").join(key).join("merged")
    }

    fn remove_active_dir(&self, dir: &Path) -> Result<(), StoreError> {
        let merged = dir.join("merged");
        if snapshot::is_mounted(&merged) {
            snapshot::unmount(&merged)?;
        }
        // Removal walks into whatever is mounted below: refuse rather than delete through someone's mount.
        if let Some(m) = snapshot::mounts_below(dir).first() {
            return Err(StoreError::Conflict(format!(
                "{} is still mounted; unmount it before removing {}",
                m.display(),
                dir.display()
            )));
        }
        snapshot::remove_tree(dir).map_err(io_err(dir))
    }
}

/// docker's short image id: 12 hex digits.
pub fn short(d: &Digest) -> String {
    d.hex().chars().take(12).collect()
}
