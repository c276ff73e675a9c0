//! A directory of changes (an overlay upper directory) into a new layer and a new image on top of a parent:
//! what `docker commit` does, and what each RUN step of a build does.
//!
//! The diff is written as an OCI layer: overlay whiteouts (char 0:0) become `.wh.NAME` entries, an opaque
//! directory (`trusted.overlay.opaque=y`) gets a `.wh..wh..opq` entry, hard links inside the diff stay links.
//! Entries are sorted and, with an epoch (SOURCE_DATE_EPOCH), times are clamped to it and owner names left
//! empty, so the same changes give the same layer digest.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hasher};
use crate::media::{self, chain_ids, Compression, Descriptor, History, ImageConfig, Manifest};
use crate::pull::{LayerJob, NoProgress};
use crate::reference::Reference;
use crate::store::{io_err, now, Store, StoreError};

/// What the new image is made of besides the diff.
#[derive(Clone, Debug)]
pub struct CommitOptions {
    /// The parent image's id; None: a first layer (FROM scratch).
    pub parent: Option<Digest>,
    /// The new image's `config` section (what containers inherit); None keeps the parent's.
    pub config: Option<media::ContainerConfig>,
    /// The history entry of this step (created_by, comment, author).
    pub history: History,
    pub author: Option<String>,
    /// RFC 3339 creation time; None: now (or the epoch, when given).
    pub created: Option<String>,
    /// SOURCE_DATE_EPOCH: layer times clamped to it, and the image's creation time when `created` is None.
    pub epoch: Option<i64>,
    /// Names to tag the new image with (as `berth tag` takes them).
    pub tags: Vec<String>,
    pub compression: Compression,
}

impl Default for CommitOptions {
    fn default() -> Self {
        CommitOptions {
            parent: None,
            config: None,
            history: History::default(),
            author: None,
            created: None,
            epoch: None,
            tags: Vec::new(),
            compression: Compression::Gzip,
        }
    }
}

pub struct Committed {
    pub id: Digest,
    pub manifest: Digest,
    /// The new layer, if the diff had anything in it.
    pub layer: Option<Descriptor>,
}

/// Counts and hashes what passes through (the uncompressed tar: its sha256 is the diff_id).
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Hasher,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(names) = xattr_list(path) else {
        return out;
    };
    for name in names {
        // overlay's own bookkeeping is turned into whiteouts, never copied.
        if name.starts_with("trusted.overlay.") {
            continue;
        }
        if let Ok(Some(v)) = xattr_get(path, &name) {
            out.push((name, v));
        }
    }
    out.sort();
    out
}

fn xattr_list(path: &Path) -> io::Result<Vec<String>> {
    let mut buf = vec![0u8; 4096];
    loop {
        match rustix::fs::llistxattr(path, &mut buf) {
            Ok(n) => {
                return Ok(buf[..n]
                    .split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect())
            }
            Err(rustix::io::Errno::RANGE) => buf.resize(buf.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn xattr_get(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 4096];
    loop {
        match rustix::fs::lgetxattr(path, name, &mut buf) {
            Ok(n) => return Ok(Some(buf[..n].to_vec())),
            Err(rustix::io::Errno::RANGE) => buf.resize(buf.len() * 4, 0),
            Err(rustix::io::Errno::NODATA) | Err(rustix::io::Errno::NOTSUP) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

struct DiffWriter<W: Write> {
    tar: tar::Builder<W>,
    epoch: Option<i64>,
    /// (dev, inode) of files already written, for hard links within the diff.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> DiffWriter<W> {
    fn header(&self, meta: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(u64::from(meta.uid()));
        h.set_gid(u64::from(meta.gid()));
        let mtime = meta.mtime().max(0);
        let mtime = match self.epoch {
            Some(e) => mtime.min(e),
            None => mtime,
        };
        h.set_mtime(mtime as u64);
        h.set_size(0);
        h
    }

    fn pax(&mut self, path: &Path) -> io::Result<()> {
        let attrs = xattrs(path);
        if attrs.is_empty() {
            return Ok(());
        }
        let keyed: Vec<(String, Vec<u8>)> = attrs
            .into_iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v))
            .collect();
        self.tar
            .append_pax_extensions(keyed.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
    }

    fn whiteout(&mut self, rel: &Path, name: &OsStr, meta: &fs::Metadata) -> io::Result<()> {
        let mut wh = std::ffi::OsString::from(".wh.");
        wh.push(name);
        let path = rel.parent().unwrap_or(Path::new("")).join(wh);
        let mut h = self.header(meta, tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        self.tar.append_data(&mut h, path, io::empty())
    }

    fn walk(&mut self, root: &Path, rel: &Path) -> io::Result<()> {
        let dir = root.join(rel);
        let mut names: Vec<std::ffi::OsString> = fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let rel_path = rel.join(&name);
            let full = root.join(&rel_path);
            let meta = fs::symlink_metadata(&full)?;
            let ft = meta.file_type();
            if ft.is_char_device() && meta.rdev() == 0 {
                self.whiteout(&rel_path, &name, &meta)?;
                continue;
            }
            if ft.is_dir() {
                self.pax(&full)?;
                let mut h = self.header(&meta, tar::EntryType::Directory);
                self.tar
                    .append_data(&mut h, format!("{}/", rel_path.display()), io::empty())?;
                if xattr_get(&full, "trusted.overlay.opaque")?.as_deref() == Some(b"y") {
                    let mut o = self.header(&meta, tar::EntryType::Regular);
                    o.set_mode(0o644);
                    o.set_uid(0);
                    o.set_gid(0);
                    self.tar
                        .append_data(&mut o, rel_path.join(".wh..wh..opq"), io::empty())?;
                }
                self.walk(root, &rel_path)?;
                continue;
            }
            if ft.is_file() && meta.nlink() > 1 {
                if let Some(first) = self.links.get(&(meta.dev(), meta.ino())).cloned() {
                    let mut h = self.header(&meta, tar::EntryType::Link);
                    self.tar.append_link(&mut h, &rel_path, &first)?;
                    continue;
                }
                self.links
                    .insert((meta.dev(), meta.ino()), rel_path.clone());
            }
            self.pax(&full)?;
            if ft.is_file() {
                let mut h = self.header(&meta, tar::EntryType::Regular);
                h.set_size(meta.len());
                let f = fs::File::open(&full)?;
                self.tar.append_data(&mut h, &rel_path, f)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&full)?;
                let mut h = self.header(&meta, tar::EntryType::Symlink);
                self.tar.append_link(&mut h, &rel_path, &target)?;
            } else {
                let kind = if ft.is_char_device() {
                    tar::EntryType::Char
                } else if ft.is_block_device() {
                    tar::EntryType::Block
                } else if ft.is_fifo() {
                    tar::EntryType::Fifo
                } else {
                    // Sockets do not go into layers (docker skips them too).
                    continue;
                };
                let mut h = self.header(&meta, kind);
                let rdev = meta.rdev();
                h.set_device_major(rustix::fs::major(rdev))?;
                h.set_device_minor(rustix::fs::minor(rdev))?;
                self.tar.append_data(&mut h, &rel_path, io::empty())?;
            }
        }
        Ok(())
    }
}

/// Writes `dir` (an overlay upper directory, or any directory of changes) as an OCI layer tar.
pub fn write_diff(dir: &Path, out: impl Write, epoch: Option<i64>) -> io::Result<()> {
    let mut w = DiffWriter {
        tar: tar::Builder::new(out),
        epoch,
        links: HashMap::new(),
    };
    w.tar.mode(tar::HeaderMode::Complete);
    w.walk(dir, Path::new(""))?;
    w.tar.finish()
}

/// Unix seconds as RFC 3339 in UTC ("2023-11-14T22:13:20Z").
pub fn rfc3339(secs: i64) -> String {
    // Days to civil date (Howard Hinnant's algorithm), as the rest of berth formats times.
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let z = days + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A new image: the parent's layers, plus `diff` as one more layer if it is given and not empty.
pub fn commit(
    store: &Store,
    diff: Option<&Path>,
    opts: &CommitOptions,
) -> Result<Committed, StoreError> {
    let _lock = store.shared_lock()?;
    let (mut config, mut layers, mut size) = match &opts.parent {
        Some(p) => {
            let info = store.resolve(p.as_str())?;
            (info.config.clone(), info.manifest.layers.clone(), info.size)
        }
        None => (
            ImageConfig {
                architecture: crate::pull::host_platform().architecture,
                os: "linux".into(),
                rootfs: media::RootFs {
                    kind: "layers".into(),
                    diff_ids: Vec::new(),
                },
                ..Default::default()
            },
            Vec::new(),
            0,
        ),
    };
    let created = opts
        .created
        .clone()
        .unwrap_or_else(|| rfc3339(opts.epoch.unwrap_or_else(now)));

    let mut new_layer = None;
    let has_changes = diff.is_some_and(|d| {
        fs::read_dir(d)
            .map(|mut r| r.next().is_some())
            .unwrap_or(false)
    });
    if let (Some(dir), true) = (diff, has_changes) {
        let compression = opts.compression;
        let mut blob = store.content().writer()?;
        let (diff_id, _tar_bytes) = {
            let sink: Box<dyn Write + '_> = match compression {
                Compression::Gzip => Box::new(flate2::write::GzEncoder::new(
                    &mut blob,
                    flate2::Compression::default(),
                )),
                Compression::Zstd => Box::new(
                    zstd::stream::write::Encoder::new(&mut blob, 3)
                        .map_err(io_err(dir))?
                        .auto_finish(),
                ),
                Compression::None => Box::new(&mut blob),
            };
            let mut hw = HashingWriter {
                inner: sink,
                hasher: Hasher::sha256(),
                bytes: 0,
            };
            write_diff(dir, &mut hw, opts.epoch).map_err(io_err(dir))?;
            hw.flush().map_err(io_err(dir))?;
            let HashingWriter {
                inner,
                hasher,
                bytes,
            } = hw;
            drop(inner);
            (hasher.finish(), bytes)
        };
        let blob_size = blob.written();
        let digest = blob
            .digest()
            .ok_or_else(|| StoreError::Conflict("layer writer kept no hash".into()))?;
        blob.commit(&digest, Some(blob_size))?;
        let oci = layers
            .iter()
            .any(|l| l.media_type.starts_with("application/vnd.oci"))
            || compression == Compression::Zstd;
        let media_type = match (compression, oci) {
            (Compression::Zstd, _) => media::OCI_LAYER_ZSTD,
            (Compression::Gzip, true) => media::OCI_LAYER_GZIP,
            (Compression::Gzip, false) => media::DOCKER_LAYER_GZIP,
            (Compression::None, true) => media::OCI_LAYER,
            (Compression::None, false) => media::DOCKER_LAYER_TAR,
        };
        let desc = Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: blob_size,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
        };
        config.rootfs.diff_ids.push(diff_id.clone());
        let chains = chain_ids(&config.rootfs.diff_ids);
        let job = LayerJob {
            store,
            client: None,
            registry: "",
            repo: "",
            desc: &desc,
            compression,
            chain_id: &chains[chains.len() - 1],
            diff_id: &diff_id,
            progress: &NoProgress,
        };
        size += job
            .run()
            .map_err(|e| StoreError::Conflict(format!("unpack the new layer: {e}")))?
            .0;
        layers.push(desc.clone());
        new_layer = Some(desc);
    }

    if let Some(c) = &opts.config {
        config.config = Some(c.clone());
    }
    config.created = Some(created.clone());
    if opts.author.is_some() {
        config.author = opts.author.clone();
    }
    let mut h = opts.history.clone();
    h.created = Some(created);
    h.empty_layer = new_layer.is_none();
    config.history.push(h);

    // One family of media types per manifest: OCI as soon as any layer is OCI.
    let oci = layers
        .iter()
        .any(|l| l.media_type.starts_with("application/vnd.oci"));
    if oci {
        for l in &mut layers {
            l.media_type = match l.media_type.as_str() {
                media::DOCKER_LAYER_TAR => media::OCI_LAYER.into(),
                media::DOCKER_LAYER_GZIP => media::OCI_LAYER_GZIP.into(),
                other => other.into(),
            };
        }
    }
    let cbytes = serde_json::to_vec(&config)
        .map_err(|e| StoreError::Conflict(format!("image config: {e}")))?;
    let id = Digest::sha256_of(&cbytes);
    store.content().write_all(&id, &cbytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(
            if oci {
                media::OCI_MANIFEST
            } else {
                media::DOCKER_MANIFEST
            }
            .into(),
        ),
        artifact_type: None,
        config: Descriptor {
            media_type: if oci {
                media::OCI_CONFIG
            } else {
                media::DOCKER_CONFIG
            }
            .into(),
            digest: id.clone(),
            size: cbytes.len() as u64,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
        },
        layers,
        subject: None,
        annotations: None,
    };
    let mbytes = serde_json::to_vec(&manifest)
        .map_err(|e| StoreError::Conflict(format!("manifest: {e}")))?;
    let mdigest = Digest::sha256_of(&mbytes);
    store.content().write_all(&mdigest, &mbytes)?;
    let mut tags = Vec::new();
    for t in &opts.tags {
        let r = Reference::parse(t).map_err(|e| StoreError::BadReference {
            input: t.clone(),
            reason: e.to_string(),
        })?;
        tags.push((r.to_string(), None));
    }
    store.db().put_image(
        &crate::db::ImageRow {
            id: id.clone(),
            manifest: mdigest.clone(),
            created: now(),
            size,
        },
        &tags,
    )?;
    Ok(Committed {
        id,
        manifest: mdigest,
        layer: new_layer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType)> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                    e.header().entry_type(),
                )
            })
            .collect()
    }

    #[test]
    fn overlay_whiteouts_become_oci_whiteouts_and_output_is_stable() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("etc/app")).unwrap();
        fs::write(root.join("etc/app/conf"), "x=1\n").unwrap();
        fs::hard_link(root.join("etc/app/conf"), root.join("etc/app/conf2")).unwrap();
        std::os::unix::fs::symlink("conf", root.join("etc/app/link")).unwrap();
        // An overlay whiteout: a 0:0 character device.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("etc/gone"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0),
            0,
        )
        .unwrap();
        fs::create_dir(root.join("opaque")).unwrap();
        rustix::fs::setxattr(
            root.join("opaque"),
            "trusted.overlay.opaque",
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        let mut a = Vec::new();
        write_diff(root, &mut a, Some(0)).unwrap();
        let names = entries(&a);
        let just: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            just,
            vec![
                "etc/",
                "etc/app/",
                "etc/app/conf",
                "etc/app/conf2",
                "etc/app/link",
                "etc/.wh.gone",
                "opaque/",
                "opaque/.wh..wh..opq"
            ]
        );
        assert_eq!(names[3].1, tar::EntryType::Link);
        assert_eq!(names[4].1, tar::EntryType::Symlink);
        // Same input, same bytes (times clamped to the epoch).
        let mut b = Vec::new();
        write_diff(root, &mut b, Some(0)).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
