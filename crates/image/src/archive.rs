//! `save` and `load`: image archives as docker writes them (manifest.json with Config/RepoTags/Layers) and
//! OCI image layouts in a tar (index.json, blobs/). `save` writes both at once, as docker 25 does, so old
//! docker, new docker, podman and skopeo all read berth's archives.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::db::ImageRow;
use crate::media::{self, chain_ids, Compression, Descriptor, ImageConfig, Index, Manifest};
use crate::pull::{self, LayerJob, NoProgress, PullError};
use crate::reference::Reference;
use crate::store::{now, Store, StoreError};
use crate::Digest;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Pull(#[from] PullError),
    #[error("archive: {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("archive entry {entry:?}: {reason}")]
    Entry { entry: String, reason: String },
    #[error("archive: {0}")]
    Invalid(String),
}

fn aio(path: &Path) -> impl FnOnce(io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// What `load` stored: a name per tag, or the id of an untagged image.
#[derive(Debug)]
pub enum Loaded {
    Tagged(String),
    Untagged(Digest),
}

const NAME_ANNOTATION: &str = "io.containerd.image.name";
const REF_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// Unpacks the archive (tar, or tar compressed with gzip or zstd) into a private directory, then imports it.
pub fn load(store: &Store, input: impl Read) -> Result<Vec<Loaded>, ArchiveError> {
    let _lock = store.shared_lock()?;
    let tmp_root = store.root().join("tmp");
    let tmp = tempfile::Builder::new()
        .prefix("load-")
        .tempdir_in(&tmp_root)
        .map_err(aio(&tmp_root))?;
    let mut input = BufReader::with_capacity(1 << 20, input);
    let magic = {
        use std::io::BufRead;
        input
            .fill_buf()
            .map_err(aio(Path::new("<input>")))?
            .to_vec()
    };
    let reader: Box<dyn Read> = match Compression::detect(&magic) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(input).map_err(aio(Path::new("<input>")))?)
        }
        Compression::None => Box::new(input),
    };
    let mut ar = tar::Archive::new(reader);
    let entries = ar.entries().map_err(aio(Path::new("<input>")))?;
    let mut count = 0;
    for e in entries {
        let mut e = e.map_err(|e| ArchiveError::Invalid(format!("not a tar archive: {e}")))?;
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let kind = e.header().entry_type();
        if !(kind.is_file()
            || kind.is_dir()
            || kind.is_symlink()
            || kind.is_pax_global_extensions())
        {
            return Err(ArchiveError::Entry {
                entry: name,
                reason: format!("unexpected entry type {kind:?} in an image archive"),
            });
        }
        // unpack_in refuses `..` and absolute names, and never writes through a symlink out of the directory.
        let inside = e.unpack_in(tmp.path()).map_err(|err| ArchiveError::Entry {
            entry: name.clone(),
            reason: err.to_string(),
        })?;
        if !inside {
            return Err(ArchiveError::Entry {
                entry: name,
                reason: "path escapes the archive root".into(),
            });
        }
        count += 1;
    }
    if count == 0 {
        return Err(ArchiveError::Invalid("empty archive".into()));
    }
    let dir = tmp.path();
    if dir.join("index.json").is_file() && dir.join("blobs").is_dir() {
        load_oci(store, dir)
    } else if dir.join("manifest.json").is_file() {
        load_docker(store, dir)
    } else {
        Err(ArchiveError::Invalid(
            "neither a docker archive (manifest.json) nor an OCI layout (index.json, blobs/)"
                .into(),
        ))
    }
}

/// A file inside the unpacked archive, refusing names that leave it.
fn inside(dir: &Path, rel: &str) -> Result<PathBuf, ArchiveError> {
    let p = Path::new(rel);
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(ArchiveError::Entry {
            entry: rel.to_string(),
            reason: "path escapes the archive root".into(),
        });
    }
    let full = dir.join(p);
    let canon = full.canonicalize().map_err(aio(&full))?;
    let root = dir.canonicalize().map_err(aio(dir))?;
    if !canon.starts_with(&root) {
        return Err(ArchiveError::Entry {
            entry: rel.to_string(),
            reason: "symlink points out of the archive".into(),
        });
    }
    Ok(canon)
}

/// Copies a file into the content store, hashing it; returns its digest and size.
fn import_file(store: &Store, path: &Path) -> Result<(Digest, u64), ArchiveError> {
    let mut w = store.content().writer().map_err(StoreError::from)?;
    let mut f = File::open(path).map_err(aio(path))?;
    io::copy(&mut f, &mut w).map_err(aio(path))?;
    let size = w.written();
    let d = w
        .digest()
        .ok_or_else(|| ArchiveError::Invalid("blob writer without a hash".into()))?;
    w.commit(&d, Some(size)).map_err(StoreError::from)?;
    Ok((d, size))
}

fn import_verified(store: &Store, path: &Path, digest: &Digest) -> Result<u64, ArchiveError> {
    if store.content().contains(digest) {
        return Ok(fs::metadata(path).map_err(aio(path))?.len());
    }
    let mut w = store
        .content()
        .writer_for(digest)
        .map_err(StoreError::from)?;
    let mut f = File::open(path).map_err(aio(path))?;
    io::copy(&mut f, &mut w).map_err(aio(path))?;
    let size = w.written();
    w.commit(digest, Some(size)).map_err(StoreError::from)?;
    Ok(size)
}

fn unpack_layers(
    store: &Store,
    manifest: &Manifest,
    config: &ImageConfig,
) -> Result<u64, ArchiveError> {
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(ArchiveError::Invalid(format!(
            "image config {}: {} diff_ids for {} layers",
            manifest.config.digest,
            config.rootfs.diff_ids.len(),
            manifest.layers.len()
        )));
    }
    let chains = chain_ids(&config.rootfs.diff_ids);
    let mut total = 0;
    for (i, desc) in manifest.layers.iter().enumerate() {
        let compression = Compression::from_media_type(&desc.media_type).ok_or_else(|| {
            ArchiveError::Invalid(format!(
                "layer {}: unsupported layer media type {:?}",
                desc.digest, desc.media_type
            ))
        })?;
        let job = LayerJob {
            store,
            client: None,
            registry: "",
            repo: "",
            desc,
            compression,
            chain_id: &chains[i],
            diff_id: &config.rootfs.diff_ids[i],
            progress: &NoProgress,
        };
        total += job.run()?.0;
    }
    Ok(total)
}

fn load_docker(store: &Store, dir: &Path) -> Result<Vec<Loaded>, ArchiveError> {
    let mpath = dir.join("manifest.json");
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(&fs::read(&mpath).map_err(aio(&mpath))?)
            .map_err(|e| ArchiveError::Invalid(format!("manifest.json: {e}")))?;
    let mut out = Vec::new();
    for entry in entries {
        let cpath = inside(dir, &entry.config)?;
        let (config_digest, config_size) = import_file(store, &cpath)?;
        let (_, config): (Vec<u8>, ImageConfig) = store
            .config(&config_digest)
            .map_err(|e| ArchiveError::Invalid(format!("{}: {e}", entry.config)))?;
        let mut layers = Vec::new();
        let mut any_zstd = false;
        for l in &entry.layers {
            let lpath = inside(dir, l)?;
            let mut magic = [0u8; 4];
            let n = File::open(&lpath)
                .and_then(|mut f| f.read(&mut magic))
                .map_err(aio(&lpath))?;
            let compression = Compression::detect(&magic[..n]);
            let (digest, size) = import_file(store, &lpath)?;
            let media_type = match compression {
                Compression::None => media::DOCKER_LAYER_TAR,
                Compression::Gzip => media::DOCKER_LAYER_GZIP,
                Compression::Zstd => {
                    any_zstd = true;
                    media::OCI_LAYER_ZSTD
                }
            };
            layers.push(Descriptor {
                media_type: media_type.to_string(),
                digest,
                size,
                urls: None,
                annotations: None,
                platform: None,
                artifact_type: None,
            });
        }
        if any_zstd {
            // Docker schema 2 has no zstd layer type; an OCI manifest says the same thing.
            for l in &mut layers {
                l.media_type = match l.media_type.as_str() {
                    media::DOCKER_LAYER_TAR => media::OCI_LAYER.into(),
                    media::DOCKER_LAYER_GZIP => media::OCI_LAYER_GZIP.into(),
                    other => other.into(),
                };
            }
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(
                if any_zstd {
                    media::OCI_MANIFEST
                } else {
                    media::DOCKER_MANIFEST
                }
                .into(),
            ),
            artifact_type: None,
            config: Descriptor {
                media_type: if any_zstd {
                    media::OCI_CONFIG
                } else {
                    media::DOCKER_CONFIG
                }
                .into(),
                digest: config_digest.clone(),
                size: config_size,
                urls: None,
                annotations: None,
                platform: None,
                artifact_type: None,
            },
            layers,
            subject: None,
            annotations: None,
        };
        let mbytes =
            serde_json::to_vec(&manifest).map_err(|e| ArchiveError::Invalid(e.to_string()))?;
        let mdigest = Digest::sha256_of(&mbytes);
        let size = unpack_layers(store, &manifest, &config)?;
        store
            .content()
            .write_all(&mdigest, &mbytes)
            .map_err(StoreError::from)?;
        let mut tags = Vec::new();
        for t in entry.repo_tags.unwrap_or_default() {
            let r = Reference::parse(&t)
                .map_err(|e| ArchiveError::Invalid(format!("RepoTags {t:?}: {e}")))?;
            tags.push((r.to_string(), None));
        }
        record(store, &config_digest, &mdigest, size, &tags)?;
        if tags.is_empty() {
            out.push(Loaded::Untagged(config_digest));
        } else {
            out.extend(tags.into_iter().map(|(n, _)| Loaded::Tagged(n)));
        }
    }
    Ok(out)
}

fn record(
    store: &Store,
    id: &Digest,
    manifest: &Digest,
    size: u64,
    tags: &[(String, Option<Digest>)],
) -> Result<(), ArchiveError> {
    let mut db = store.db();
    let created = db
        .image(id)
        .map_err(StoreError::from)?
        .map(|r| r.created)
        .unwrap_or_else(now);
    db.put_image(
        &ImageRow {
            id: id.clone(),
            manifest: manifest.clone(),
            created,
            size,
        },
        tags,
    )
    .map_err(StoreError::from)?;
    Ok(())
}

fn blob_path(dir: &Path, d: &Digest) -> Result<PathBuf, ArchiveError> {
    inside(dir, &format!("blobs/{}/{}", d.algorithm(), d.hex()))
}

fn load_oci(store: &Store, dir: &Path) -> Result<Vec<Loaded>, ArchiveError> {
    let ipath = dir.join("index.json");
    let index: Index = serde_json::from_slice(&fs::read(&ipath).map_err(aio(&ipath))?)
        .map_err(|e| ArchiveError::Invalid(format!("index.json: {e}")))?;
    let want = pull::host_platform();
    let mut out = Vec::new();
    for top in &index.manifests {
        let top_path = blob_path(dir, &top.digest)?;
        import_verified(store, &top_path, &top.digest)?;
        let mut desc = top.clone();
        if desc.media_type == media::OCI_INDEX || desc.media_type == media::DOCKER_MANIFEST_LIST {
            let nested: Index = serde_json::from_slice(
                &store
                    .content()
                    .read(&desc.digest)
                    .map_err(StoreError::from)?,
            )
            .map_err(|e| ArchiveError::Invalid(format!("index {}: {e}", desc.digest)))?;
            desc = pull::choose_platform(&nested, &want)?.clone();
            import_verified(store, &blob_path(dir, &desc.digest)?, &desc.digest)?;
        } else if desc.media_type != media::OCI_MANIFEST
            && desc.media_type != media::DOCKER_MANIFEST
        {
            return Err(ArchiveError::Invalid(format!(
                "index.json: {}: unsupported media type {:?}",
                desc.digest, desc.media_type
            )));
        }
        let manifest: Manifest = serde_json::from_slice(
            &store
                .content()
                .read(&desc.digest)
                .map_err(StoreError::from)?,
        )
        .map_err(|e| ArchiveError::Invalid(format!("manifest {}: {e}", desc.digest)))?;
        import_verified(
            store,
            &blob_path(dir, &manifest.config.digest)?,
            &manifest.config.digest,
        )?;
        for l in &manifest.layers {
            import_verified(store, &blob_path(dir, &l.digest)?, &l.digest)?;
        }
        let (_, config) = store.config(&manifest.config.digest)?;
        let size = unpack_layers(store, &manifest, &config)?;
        let annotations = top.annotations.clone().unwrap_or_default();
        let name = annotations
            .get(NAME_ANNOTATION)
            .or_else(|| {
                annotations
                    .get(REF_ANNOTATION)
                    .filter(|r| r.contains('/') || r.contains(':'))
            })
            .and_then(|n| Reference::parse(n).ok());
        let repo_digest = (top.digest != desc.digest).then(|| top.digest.clone());
        let tags: Vec<(String, Option<Digest>)> = name
            .map(|r| {
                vec![(
                    r.to_string(),
                    repo_digest.clone().or(Some(desc.digest.clone())),
                )]
            })
            .unwrap_or_default();
        record(store, &manifest.config.digest, &desc.digest, size, &tags)?;
        if tags.is_empty() {
            out.push(Loaded::Untagged(manifest.config.digest.clone()));
        } else {
            out.extend(tags.into_iter().map(|(n, _)| Loaded::Tagged(n)));
        }
    }
    Ok(out)
}

/// Writes the images as one archive that is both a docker archive and an OCI layout.
pub fn save(store: &Store, names: &[String], out: impl Write) -> Result<(), ArchiveError> {
    let mut images = Vec::new();
    for n in names {
        let img = store.resolve(n)?;
        // Saved by name: that tag only; by id: all of the image's tags.
        let tags: Vec<String> = match Reference::parse(n) {
            Ok(r) if img.tags.iter().any(|t| t.name == r.to_string()) && r.digest.is_none() => {
                vec![r.to_string()]
            }
            _ => img
                .tags
                .iter()
                .filter(|t| !t.name.contains('@'))
                .map(|t| t.name.clone())
                .collect(),
        };
        images.push((img, tags));
    }
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut written = std::collections::HashSet::new();
    let mut index = Vec::new();
    let mut docker = Vec::new();
    let add_bytes =
        |tar: &mut tar::Builder<_>, name: &str, data: &[u8]| -> Result<(), ArchiveError> {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mtime(0);
            tar.append_data(&mut h, name, data)
                .map_err(aio(Path::new(name)))
        };
    tar_dir(&mut tar, "blobs/")?;
    tar_dir(&mut tar, "blobs/sha256/")?;
    for (img, tags) in &images {
        let mut blobs = vec![img.manifest_digest.clone(), img.id.clone()];
        blobs.extend(img.manifest.layers.iter().map(|l| l.digest.clone()));
        for d in blobs {
            if !written.insert(d.clone()) {
                continue;
            }
            let p = store.content().path(&d);
            let mut f = store.content().open_blob(&d).map_err(StoreError::from)?;
            let len = f.metadata().map_err(aio(&p))?.len();
            let mut h = tar::Header::new_gnu();
            h.set_size(len);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mtime(0);
            tar.append_data(
                &mut h,
                format!("blobs/{}/{}", d.algorithm(), d.hex()),
                &mut f,
            )
            .map_err(aio(&p))?;
        }
        let mbytes = store
            .content()
            .read(&img.manifest_digest)
            .map_err(StoreError::from)?;
        let mt = img
            .manifest
            .media_type
            .clone()
            .unwrap_or_else(|| media::OCI_MANIFEST.to_string());
        let familiar: Vec<String> = tags
            .iter()
            .filter_map(|t| Reference::parse(t).ok())
            .map(|r| {
                format!(
                    "{}:{}",
                    r.familiar(),
                    r.tag.clone().unwrap_or_else(|| "latest".into())
                )
            })
            .collect();
        let base = Descriptor {
            media_type: mt,
            digest: img.manifest_digest.clone(),
            size: mbytes.len() as u64,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
        };
        if tags.is_empty() {
            index.push(base.clone());
        }
        for t in tags {
            let mut d = base.clone();
            let mut a = BTreeMap::new();
            a.insert(NAME_ANNOTATION.to_string(), t.clone());
            if let Ok(r) = Reference::parse(t) {
                if let Some(tag) = r.tag {
                    a.insert(REF_ANNOTATION.to_string(), tag);
                }
            }
            d.annotations = Some(a);
            index.push(d);
        }
        docker.push(DockerManifestEntry {
            config: format!("blobs/sha256/{}", img.id.hex()),
            repo_tags: Some(familiar),
            layers: img
                .manifest
                .layers
                .iter()
                .map(|l| format!("blobs/{}/{}", l.digest.algorithm(), l.digest.hex()))
                .collect(),
        });
    }
    let idx = Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.into()),
        artifact_type: None,
        manifests: index,
        subject: None,
        annotations: None,
    };
    let json =
        |v: Result<Vec<u8>, serde_json::Error>| v.map_err(|e| ArchiveError::Invalid(e.to_string()));
    add_bytes(&mut tar, "index.json", &json(serde_json::to_vec(&idx))?)?;
    add_bytes(
        &mut tar,
        "manifest.json",
        &json(serde_json::to_vec(&docker))?,
    )?;
    add_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(aio(Path::new("<output>")))?;
    Ok(())
}

fn tar_dir<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> Result<(), ArchiveError> {
    let mut h = tar::Header::new_gnu();
    h.set_size(0);
    h.set_mode(0o755);
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mtime(0);
    tar.append_data(&mut h, name, io::empty())
        .map_err(aio(Path::new(name)))
}
