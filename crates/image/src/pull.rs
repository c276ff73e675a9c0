//! `pull`: manifest (choosing the platform from an index), config, then every missing layer in parallel, each
//! in one streaming pass: download -> content store writer (sha256) -> decompressor -> tar extraction into the
//! layer's snapshot directory. Nothing becomes visible before its digest checked out.

use std::io::{self, Read};

use crate::content::{BlobWriter, Tee};
use crate::db::ImageRow;
use crate::layer::{self, LayerError};
use crate::media::{
    self, chain_ids, Compression, Descriptor, ImageConfig, Index, Manifest, Platform,
};
use crate::reference::Reference;
use crate::registry::{Client, RegistryError};
use crate::snapshot;
use crate::store::{io_err, now, Store, StoreError};
use crate::Digest;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{reference}: unsupported manifest media type {media_type:?}")]
    UnsupportedManifest {
        reference: String,
        media_type: String,
    },
    #[error("{reference}: manifest {digest} is not valid JSON for {media_type}: {reason}")]
    BadManifest {
        reference: String,
        digest: Digest,
        media_type: String,
        reason: String,
    },
    #[error(
        "no matching manifest for {wanted} in the manifest list entries (available: {available})"
    )]
    NoPlatform { wanted: String, available: String },
    #[error("{reference}: config {digest} has media type {media_type:?}: not a container image")]
    NotAnImage {
        reference: String,
        digest: Digest,
        media_type: String,
    },
    #[error("{reference}: layer {digest}: unsupported layer media type {media_type:?}")]
    UnsupportedLayer {
        reference: String,
        digest: Digest,
        media_type: String,
    },
    #[error("{reference}: image config {digest}: {reason}")]
    BadConfig {
        reference: String,
        digest: Digest,
        reason: String,
    },
    #[error("layer {digest}: {source}")]
    Layer {
        digest: Digest,
        #[source]
        source: LayerError,
    },
    #[error("layer {digest}: {source}")]
    Download {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("layer {digest}: uncompressed content hashes to {actual}, but the image config says {expected}")]
    DiffIdMismatch {
        digest: Digest,
        expected: Digest,
        actual: Digest,
    },
}

/// What a pull reports as it goes; the CLI draws bars or prints lines from it.
pub trait Progress: Sync {
    fn resolved(&self, _reference: &Reference, _layers: &[Descriptor]) {}
    fn layer_exists(&self, _layer: &Descriptor) {}
    fn layer_bytes(&self, _layer: &Descriptor, _downloaded: u64) {}
    fn layer_done(&self, _layer: &Descriptor) {}
}

pub struct NoProgress;
impl Progress for NoProgress {}

#[derive(Debug, Clone)]
pub struct Pulled {
    /// The image id (config digest).
    pub image: Digest,
    pub manifest: Digest,
    /// What the registry served for the reference: an index or the manifest.
    pub repo_digest: Digest,
    /// The tag record written, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// False when everything was already in the store and the tag already pointed here.
    pub downloaded: bool,
}

/// The platform of this machine, as image indexes name it.
pub fn host_platform() -> Platform {
    let (arch, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", None),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "powerpc64" => ("ppc64le", None),
        "s390x" => ("s390x", None),
        "riscv64" => ("riscv64", None),
        other => (other, None),
    };
    Platform {
        architecture: arch.to_string(),
        os: "linux".to_string(),
        variant: variant.map(str::to_string),
        os_version: None,
        os_features: None,
    }
}

/// `os/arch[/variant]`, as `--platform` takes it.
pub fn parse_platform(s: &str) -> Option<Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    Some(Platform {
        os: parts[0].to_string(),
        architecture: parts[1].to_string(),
        variant: parts.get(2).map(|v| v.to_string()),
        os_version: None,
        os_features: None,
    })
}

pub fn platform_string(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{}", p.os, p.architecture, v),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// Picks the index entry for `want`. Without a wanted variant, an entry with the architecture's usual variant
/// (arm64: v8 or none) wins over others.
pub fn choose_platform<'a>(index: &'a Index, want: &Platform) -> Result<&'a Descriptor, PullError> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == want.os && p.architecture == want.architecture)
        })
        .collect();
    let variant_of = |d: &Descriptor| d.platform.as_ref().and_then(|p| p.variant.clone());
    let found = match &want.variant {
        Some(v) => candidates
            .iter()
            .find(|d| variant_of(d).as_deref() == Some(v.as_str()))
            .or_else(|| {
                // arm64 images often leave out the v8 every arm64 machine is.
                (want.architecture == "arm64" && v == "v8")
                    .then(|| candidates.iter().find(|d| variant_of(d).is_none()))
                    .flatten()
            })
            .copied(),
        None => candidates
            .iter()
            .find(|d| matches!(variant_of(d).as_deref(), None | Some("v8")))
            .or_else(|| candidates.first())
            .copied(),
    };
    found.ok_or_else(|| PullError::NoPlatform {
        wanted: platform_string(want),
        available: index
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref())
            .filter(|p| p.os != "unknown")
            .map(platform_string)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

fn is_index(mt: &str) -> bool {
    mt == media::OCI_INDEX || mt == media::DOCKER_MANIFEST_LIST
}

fn is_manifest(mt: &str) -> bool {
    mt == media::OCI_MANIFEST || mt == media::DOCKER_MANIFEST
}

/// Some registries serve OCI documents as plain JSON; the body's own mediaType or shape tells.
fn sniff_media_type(served: &str, bytes: &[u8]) -> String {
    if is_index(served) || is_manifest(served) {
        return served.to_string();
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(Probe {
            media_type: Some(mt),
            ..
        }) => mt,
        Ok(Probe {
            manifests: Some(_), ..
        }) => media::OCI_INDEX.to_string(),
        Ok(Probe {
            config: Some(_), ..
        }) => media::OCI_MANIFEST.to_string(),
        _ => served.to_string(),
    }
}

struct Counting<'a, R> {
    inner: R,
    n: u64,
    desc: &'a Descriptor,
    progress: &'a dyn Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        self.progress.layer_bytes(self.desc, self.n);
        Ok(n)
    }
}

pub fn pull(
    store: &Store,
    client: &Client,
    reference: &Reference,
    want: &Platform,
    progress: &dyn Progress,
) -> Result<Pulled, PullError> {
    let _lock = store.shared_lock()?;
    let registry = reference.registry.as_str();
    let repo = reference.repository.as_str();
    let refname = reference.to_string();
    let wanted_ref = match (&reference.digest, &reference.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_string(),
    };
    let top = client.fetch_manifest(registry, repo, &wanted_ref)?;
    let repo_digest = top.digest.clone();
    let mut mt = sniff_media_type(&top.media_type, &top.bytes);
    let mut manifest_bytes = top.bytes;
    let mut manifest_digest = top.digest;
    let mut downloaded = false;
    if is_index(&mt) {
        let index: Index =
            serde_json::from_slice(&manifest_bytes).map_err(|e| PullError::BadManifest {
                reference: refname.clone(),
                digest: manifest_digest.clone(),
                media_type: mt.clone(),
                reason: e.to_string(),
            })?;
        let chosen = choose_platform(&index, want)?.clone();
        store
            .content()
            .write_all(&manifest_digest, &manifest_bytes)
            .map_err(StoreError::from)?;
        let m = client.fetch_manifest(registry, repo, chosen.digest.as_str())?;
        mt = sniff_media_type(&m.media_type, &m.bytes);
        manifest_bytes = m.bytes;
        manifest_digest = m.digest;
    }
    if !is_manifest(&mt) {
        return Err(PullError::UnsupportedManifest {
            reference: refname,
            media_type: mt,
        });
    }
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| PullError::BadManifest {
            reference: refname.clone(),
            digest: manifest_digest.clone(),
            media_type: mt.clone(),
            reason: e.to_string(),
        })?;
    if manifest.config.media_type != media::OCI_CONFIG
        && manifest.config.media_type != media::DOCKER_CONFIG
    {
        return Err(PullError::NotAnImage {
            reference: refname,
            digest: manifest.config.digest.clone(),
            media_type: manifest.config.media_type.clone(),
        });
    }
    let mut compressions = Vec::with_capacity(manifest.layers.len());
    for l in &manifest.layers {
        compressions.push(Compression::from_media_type(&l.media_type).ok_or_else(|| {
            PullError::UnsupportedLayer {
                reference: refname.clone(),
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
            }
        })?);
    }
    progress.resolved(reference, &manifest.layers);

    let config_digest = manifest.config.digest.clone();
    let config_bytes = if store.content().contains(&config_digest) {
        store
            .content()
            .read(&config_digest)
            .map_err(StoreError::from)?
    } else {
        downloaded = true;
        if manifest.config.size > 16 << 20 {
            return Err(PullError::BadConfig {
                reference: refname,
                digest: config_digest,
                reason: format!(
                    "{} bytes is too big for an image config",
                    manifest.config.size
                ),
            });
        }
        let mut buf = Vec::with_capacity(manifest.config.size as usize);
        client
            .fetch_blob(registry, repo, &manifest.config)?
            .read_to_end(&mut buf)
            .map_err(|e| PullError::Download {
                digest: config_digest.clone(),
                source: e,
            })?;
        store
            .content()
            .write_all(&config_digest, &buf)
            .map_err(StoreError::from)?;
        buf
    };
    let config: ImageConfig =
        serde_json::from_slice(&config_bytes).map_err(|e| PullError::BadConfig {
            reference: refname.clone(),
            digest: config_digest.clone(),
            reason: e.to_string(),
        })?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(PullError::BadConfig {
            reference: refname,
            digest: config_digest,
            reason: format!(
                "{} diff_ids for {} layers",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            ),
        });
    }
    let chains = chain_ids(&config.rootfs.diff_ids);

    // Layers run in parallel; the first failure stops the others from starting.
    let done = crate::parallel::run(manifest.layers.len(), 4, |i| {
        LayerJob {
            store,
            client: Some(client),
            registry,
            repo,
            desc: &manifest.layers[i],
            compression: compressions[i],
            chain_id: &chains[i],
            diff_id: &config.rootfs.diff_ids[i],
            progress,
        }
        .run()
    })?;
    if done.iter().any(|(_, fetched)| *fetched) {
        downloaded = true;
    }
    store
        .content()
        .write_all(&manifest_digest, &manifest_bytes)
        .map_err(StoreError::from)?;
    let name = match (&reference.tag, &reference.digest) {
        (Some(_), None) => refname.clone(),
        (None, Some(d)) => format!("{}/{}@{}", reference.registry, reference.repository, d),
        (Some(t), Some(d)) => format!(
            "{}/{}:{}@{}",
            reference.registry, reference.repository, t, d
        ),
        (None, None) => format!("{}/{}:latest", reference.registry, reference.repository),
    };
    let size: u64 = done.iter().map(|(size, _)| size).sum();
    let mut db = store.db();
    let previous = db.tag(&name).map_err(StoreError::from)?;
    if previous.as_ref().map(|t| &t.image) != Some(&config_digest) {
        downloaded = true;
    }
    let stored = db
        .image(&config_digest)
        .map_err(StoreError::from)?
        .map(|r| r.created)
        .unwrap_or_else(now);
    db.put_image(
        &ImageRow {
            id: config_digest.clone(),
            manifest: manifest_digest.clone(),
            created: stored,
            size,
        },
        &[(name.clone(), Some(repo_digest.clone()))],
    )
    .map_err(StoreError::from)?;
    drop(db);
    // The old image a moved tag leaves behind stays as a dangling image, as docker keeps it.
    Ok(Pulled {
        image: config_digest,
        manifest: manifest_digest,
        repo_digest,
        name,
        downloaded,
    })
}

pub(crate) struct LayerJob<'a> {
    pub(crate) store: &'a Store,
    pub(crate) client: Option<&'a Client>,
    pub(crate) registry: &'a str,
    pub(crate) repo: &'a str,
    pub(crate) desc: &'a Descriptor,
    pub(crate) compression: Compression,
    pub(crate) chain_id: &'a Digest,
    pub(crate) diff_id: &'a Digest,
    pub(crate) progress: &'a dyn Progress,
}

impl LayerJob<'_> {
    /// Returns the unpacked size and whether anything was downloaded.
    pub(crate) fn run(&self) -> Result<(u64, bool), PullError> {
        let store = self.store;
        let have_blob = store.content().contains(&self.desc.digest);
        let row = store
            .db()
            .claim_snapshot(self.chain_id, self.diff_id)
            .map_err(StoreError::from)?;
        if row.ready && have_blob {
            self.progress.layer_exists(self.desc);
            return Ok((row.size, false));
        }
        // One extraction per chain across processes: whoever holds the lock unpacks, the others wait and reuse.
        let dir = store.snapshot_dir(row.id);
        let lock_path = dir.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            StoreError::Io {
                path: lock_path.clone(),
                source: e.into(),
            }
        })?;
        // Re-read under the lock: another process may have finished this layer while we waited.
        // (Bound first: a guard in the match scrutinee would live through the arms and deadlock below.)
        let existing = store
            .db()
            .snapshot(self.chain_id)
            .map_err(StoreError::from)?;
        let row = match existing {
            Some(r) => r,
            None => store
                .db()
                .claim_snapshot(self.chain_id, self.diff_id)
                .map_err(StoreError::from)?,
        };
        let have_blob = store.content().contains(&self.desc.digest);
        if row.ready && have_blob {
            self.progress.layer_exists(self.desc);
            return Ok((row.size, false));
        }
        // The blob reader checks size and digest before its last read succeeds; nothing commits before that.
        let mut writer = store
            .content()
            .writer_for_verified_source()
            .map_err(StoreError::from)?;
        if row.ready {
            // Unpacked already (say, by `load` from another compression) but this blob is new: store it only.
            let mut src = self.download()?;
            io::copy(&mut src, &mut writer).map_err(|e| PullError::Download {
                digest: self.desc.digest.clone(),
                source: e,
            })?;
            writer
                .commit(&self.desc.digest, Some(self.desc.size))
                .map_err(StoreError::from)?;
            self.progress.layer_done(self.desc);
            return Ok((row.size, true));
        }
        snapshot::remove_tree(&dir).map_err(io_err(&dir))?;
        std::fs::create_dir(&dir).map_err(io_err(&dir))?;
        let result = if have_blob {
            // The blob is here (verified when it was stored); only the snapshot is missing.
            let f = store
                .content()
                .open_blob(&self.desc.digest)
                .map_err(StoreError::from)?;
            drop(writer);
            self.extract(io::BufReader::with_capacity(1 << 20, f), None, &dir)
        } else {
            let src = self.download()?;
            self.extract(src, Some(writer), &dir)
        };
        match result {
            Ok(size) => {
                store
                    .db()
                    .mark_snapshot_ready(row.id, size)
                    .map_err(StoreError::from)?;
                self.progress.layer_done(self.desc);
                Ok((size, !have_blob))
            }
            Err(e) => {
                let _ = snapshot::remove_tree(&dir);
                Err(e)
            }
        }
    }

    fn download(&self) -> Result<Counting<'_, impl Read + '_>, PullError> {
        let Some(client) = self.client else {
            return Err(PullError::Store(StoreError::Content(
                crate::content::ContentError::NotFound(self.desc.digest.clone()),
            )));
        };
        let body = client.fetch_blob(self.registry, self.repo, self.desc)?;
        Ok(Counting {
            inner: body,
            n: 0,
            desc: self.desc,
            progress: self.progress,
        })
    }

    fn extract(
        &self,
        src: impl Read,
        writer: Option<BlobWriter>,
        dir: &std::path::Path,
    ) -> Result<u64, PullError> {
        let layer_err = |source| PullError::Layer {
            digest: self.desc.digest.clone(),
            source,
        };
        let mut writer = writer;
        let applied = match writer.as_mut() {
            Some(w) => {
                let mut tee = Tee {
                    inner: src,
                    writer: w,
                };
                match layer::apply(&mut tee, self.compression, dir) {
                    Ok(a) => a,
                    Err(e) => {
                        // Bytes that do not match their digest explain a broken stream better than the tar or
                        // gzip error they caused: read the rest, and the blob reader reports the mismatch.
                        if let Err(read) = io::copy(&mut tee.inner, &mut io::sink()) {
                            if read.kind() == io::ErrorKind::InvalidData {
                                return Err(PullError::Download {
                                    digest: self.desc.digest.clone(),
                                    source: read,
                                });
                            }
                        }
                        return Err(layer_err(e));
                    }
                }
            }
            None => layer::apply(src, self.compression, dir).map_err(layer_err)?,
        };
        if applied.diff_id != *self.diff_id {
            return Err(PullError::DiffIdMismatch {
                digest: self.desc.digest.clone(),
                expected: self.diff_id.clone(),
                actual: applied.diff_id,
            });
        }
        // Only a layer whose content matched the config makes its blob visible.
        if let Some(w) = writer {
            w.commit(&self.desc.digest, Some(self.desc.size))
                .map_err(StoreError::from)?;
        }
        Ok(applied.size)
    }
}
