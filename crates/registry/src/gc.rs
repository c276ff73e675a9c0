//! Mark-and-sweep garbage collection of blobs.
//!
//! Mark: every manifest of every repository (tagged or not) keeps itself, its config, layers and index
//! children; referrers are manifests of their repository, so they stay too. Sweep: every other blob whose
//! mtime is older than the grace period. Uploads finish and mounts link by touching the blob, so a push in
//! flight keeps what it relies on young.
//!
//! Racing pushes: marking runs without blocking anyone, while `tracking` records every digest a push commits
//! meanwhile; the sweep takes the write side of `lock`, which manifest PUTs hold for reading between their
//! blob check and their commit, so no manifest can be committed against a blob the sweep is removing.

use std::collections::HashSet;
use std::fs;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use image::Digest;

use crate::storage::{err, Storage, StorageError};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcStats {
    pub manifests: u64,
    pub blobs_kept: u64,
    pub blobs_removed: u64,
    pub bytes_removed: u64,
    pub links_removed: u64,
    pub uploads_removed: u64,
}

#[derive(Default)]
pub struct GcGuard {
    pub lock: Arc<tokio::sync::RwLock<()>>,
    /// `Some` while a collection marks: digests committed in the meantime.
    tracking: Mutex<Option<HashSet<Digest>>>,
    running: Mutex<()>,
}

impl GcGuard {
    /// Records digests a push just committed (call while holding `lock` for reading).
    pub fn track(&self, digests: impl IntoIterator<Item = Digest>) {
        if let Ok(mut t) = self.tracking.lock() {
            if let Some(set) = t.as_mut() {
                set.extend(digests);
            }
        }
    }
}

/// The digests a manifest document references (config, layers, index children).
pub fn references(bytes: &[u8]) -> Vec<Digest> {
    #[derive(serde::Deserialize)]
    struct Desc {
        digest: Digest,
    }
    #[derive(serde::Deserialize)]
    struct Doc {
        config: Option<Desc>,
        #[serde(default)]
        layers: Vec<Desc>,
        #[serde(default)]
        manifests: Vec<Desc>,
    }
    let Ok(doc) = serde_json::from_slice::<Doc>(bytes) else {
        return Vec::new();
    };
    doc.config
        .into_iter()
        .chain(doc.layers)
        .chain(doc.manifests)
        .map(|d| d.digest)
        .collect()
}

/// Blocking; must not run on an async worker (takes the lock with `blocking_write`).
pub fn collect(st: &Storage, grace: Duration, guard: &GcGuard) -> Result<GcStats, StorageError> {
    let _one = guard.running.lock().unwrap_or_else(|p| p.into_inner());
    if let Ok(mut t) = guard.tracking.lock() {
        *t = Some(HashSet::new());
    }
    let result = mark_and_sweep(st, grace, guard);
    if let Ok(mut t) = guard.tracking.lock() {
        *t = None;
    }
    result
}

fn mark_and_sweep(st: &Storage, grace: Duration, guard: &GcGuard) -> Result<GcStats, StorageError> {
    let mut stats = GcStats::default();
    let mut marked: HashSet<Digest> = HashSet::new();
    let repos = st.repositories()?;
    for repo in &repos {
        for m in st.revisions(repo)? {
            stats.manifests += 1;
            if let Ok(bytes) = st.read_blob(&m, 64 << 20) {
                marked.extend(references(&bytes));
            }
            marked.insert(m);
        }
    }

    let _sweep = guard.lock.blocking_write();
    if let Ok(mut t) = guard.tracking.lock() {
        if let Some(set) = t.as_mut() {
            marked.extend(set.drain());
        }
    }
    let now = SystemTime::now();
    for alg in ["sha256", "sha512"] {
        let dir = st.blobs_dir().join(alg);
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(err("listing", &dir)(e)),
        };
        for e in rd {
            let e = e.map_err(err("listing", &dir))?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(d) = Digest::parse(&format!("{alg}:{name}")) else {
                continue;
            };
            if marked.contains(&d) {
                stats.blobs_kept += 1;
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            let young = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_none_or(|age| age < grace);
            if young {
                stats.blobs_kept += 1;
                continue;
            }
            let p = e.path();
            match fs::remove_file(&p) {
                Ok(()) => {
                    stats.blobs_removed += 1;
                    stats.bytes_removed += meta.len();
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(err("removing", &p)(e)),
            }
        }
    }
    // Repository links to blobs that are gone.
    for repo in &repos {
        for d in st.layer_links(repo)? {
            if st.blob_size(&d).is_none() && st.unlink_blob(repo, &d)? {
                stats.links_removed += 1;
            }
        }
    }
    drop(_sweep);
    stats.uploads_removed = st.remove_stale_uploads(crate::UPLOAD_EXPIRY)?;
    Ok(stats)
}
