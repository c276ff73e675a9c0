//! Test images: layer tarballs built entry by entry, OCI image layouts on disk (single images and
//! multi-platform indexes, OCI or Docker schema 2 media types), pushed to a real registry with skopeo.
//!
//! Bytes are deterministic (fixed mtimes, uid/gid 0, sorted JSON keys, gzip header without a time), so
//! the same image built twice has the same digests.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// The mtime of every entry that does not set its own, and of the files in an OCI archive.
pub const MTIME: u64 = 1_700_000_000;
/// `created` in configs and history.
pub const CREATED: &str = "2023-11-14T22:13:20Z";

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// `org.opencontainers.image.ref.name`: how index.json names a tag.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `sha256:HEX` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    let mut s = String::from("sha256:");
    for b in Sha256::digest(data) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// One tar entry. Entries are written in order; parents are not added implicitly.
#[derive(Clone, Debug)]
pub enum Entry {
    /// A directory (the tar name gets a trailing `/`), uid/gid 0.
    Dir {
        path: String,
        mode: u32,
    },
    /// A regular file, uid/gid 0, mtime [`MTIME`].
    File {
        path: String,
        data: Vec<u8>,
        mode: u32,
    },
    /// A regular file with owner, mtime and extended attributes (PAX `SCHILY.xattr.NAME` records; uid,
    /// gid and mtime too large for the ustar fields also get PAX records).
    FileOwned {
        path: String,
        data: Vec<u8>,
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        xattrs: Vec<(String, Vec<u8>)>,
    },
    Symlink {
        path: String,
        target: String,
    },
    /// A hard link to `target`, an earlier entry's name.
    Hardlink {
        path: String,
        target: String,
    },
    CharDev {
        path: String,
        major: u32,
        minor: u32,
    },
    Fifo {
        path: String,
    },
    /// Deletes `DIR/NAME` of a lower layer: writes an empty `DIR/.wh.NAME`.
    Whiteout {
        path: String,
    },
    /// Hides everything a lower layer has in `dir`: writes an empty `DIR/.wh..wh..opq`.
    Opaque {
        dir: String,
    },
    /// A regular file (mode 0644) whose header name bytes are written as they are (at most 100 bytes):
    /// `../../etc/x`, `/etc/x`, which `tar::Builder` refuses.
    RawName {
        name: Vec<u8>,
        data: Vec<u8>,
    },
    /// A symlink whose name and target bytes are written as they are (at most 100 bytes each).
    RawSymlink {
        name: Vec<u8>,
        target: Vec<u8>,
    },
}

impl Entry {
    pub fn dir(path: &str, mode: u32) -> Entry {
        Entry::Dir {
            path: path.into(),
            mode,
        }
    }

    pub fn file(path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Entry {
        Entry::File {
            path: path.into(),
            data: data.into(),
            mode,
        }
    }

    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry::Symlink {
            path: path.into(),
            target: target.into(),
        }
    }

    pub fn hardlink(path: &str, target: &str) -> Entry {
        Entry::Hardlink {
            path: path.into(),
            target: target.into(),
        }
    }

    pub fn whiteout(path: &str) -> Entry {
        Entry::Whiteout { path: path.into() }
    }

    pub fn opaque(dir: &str) -> Entry {
        Entry::Opaque { dir: dir.into() }
    }
}

#[derive(Clone, Debug)]
pub struct Layer {
    pub entries: Vec<Entry>,
    pub compression: Compression,
    /// Blob bytes used as they are (a deliberately broken stream); the diff_id is then that of `entries`.
    pub raw: Option<Vec<u8>>,
}

/// The applets `Layer::busybox()` links to bin/busybox.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "true", "false", "sleep", "id", "env", "test", "hostname", "ps",
    "kill", "head", "tail", "wc", "grep", "mkdir", "touch", "rm", "stat", "ip", "mount", "pwd",
    "printf", "yes", "dd", "seq", "tee", "readlink", "nc", "httpd", "wget", "ping", "uname", "top",
    "date", "tty", "stty",
];

impl Layer {
    pub fn new(entries: Vec<Entry>, compression: Compression) -> Layer {
        Layer {
            entries,
            compression,
            raw: None,
        }
    }

    /// A layer whose blob is exactly `blob` (say, a truncated gzip stream), with the media type of
    /// `compression` and an empty layer's diff_id in the config.
    pub fn raw_blob(blob: Vec<u8>, compression: Compression) -> Layer {
        Layer {
            entries: Vec::new(),
            compression,
            raw: Some(blob),
        }
    }

    /// bin/busybox (the host's static busybox) with symlinks bin/{sh,ls,cat,echo,true,false,sleep,id,env,
    /// test} -> busybox, and the directories etc, tmp (1777), root, proc, sys, dev; gzip.
    pub fn busybox() -> Layer {
        let mut entries = vec![Entry::dir("bin", 0o755)];
        for (d, mode) in [
            ("etc", 0o755),
            ("tmp", 0o1777),
            ("root", 0o700),
            ("proc", 0o555),
            ("sys", 0o555),
            ("dev", 0o755),
        ] {
            entries.push(Entry::dir(d, mode));
        }
        let data = std::fs::read(crate::busybox()).expect("read the host's busybox");
        entries.push(Entry::file("bin/busybox", data, 0o755));
        for a in BUSYBOX_APPLETS {
            entries.push(Entry::symlink(&format!("bin/{a}"), "busybox"));
        }
        Layer::new(entries, Compression::Gzip)
    }

    /// The uncompressed tar.
    pub fn tar(&self) -> Vec<u8> {
        build_tar(&self.entries)
    }

    /// (uncompressed tar, blob as stored: compressed per `self.compression`).
    pub fn build(&self) -> (Vec<u8>, Vec<u8>) {
        let tar = self.tar();
        let blob = compress(&tar, self.compression);
        (tar, blob)
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h.set_size(size);
    h
}

fn raw_name(h: &mut tar::Header, field: &str, bytes: &[u8]) {
    let ustar = h.as_ustar_mut().expect("ustar header");
    let slot: &mut [u8] = if field == "name" {
        &mut ustar.name
    } else {
        &mut ustar.linkname
    };
    assert!(
        bytes.len() <= slot.len(),
        "raw tar {field} longer than {} bytes: {:?}",
        slot.len(),
        String::from_utf8_lossy(bytes)
    );
    slot.fill(0);
    slot[..bytes.len()].copy_from_slice(bytes);
}

fn whiteout_name(path: &str, what: &str) -> String {
    let path = path.trim_end_matches('/');
    match path.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/{what}{name}"),
        None => format!("{what}{path}"),
    }
}

/// The uncompressed tar of `entries`, in order, ending with the two zero blocks.
pub fn build_tar(entries: &[Entry]) -> Vec<u8> {
    use tar::EntryType as T;
    let mut b = tar::Builder::new(Vec::new());
    let empty: &[u8] = &[];
    for e in entries {
        let res = match e {
            Entry::Dir { path, mode } => {
                let mut h = header(T::Directory, *mode, 0);
                let p = if path.ends_with('/') {
                    path.clone()
                } else {
                    format!("{path}/")
                };
                b.append_data(&mut h, p, empty)
            }
            Entry::File { path, data, mode } => {
                let mut h = header(T::Regular, *mode, data.len() as u64);
                b.append_data(&mut h, path, &data[..])
            }
            Entry::FileOwned {
                path,
                data,
                mode,
                uid,
                gid,
                mtime,
                xattrs,
            } => {
                let mut pax: Vec<(String, Vec<u8>)> = xattrs
                    .iter()
                    .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.clone()))
                    .collect();
                // ustar's octal fields: 7 digits for ids, 11 for the mtime.
                if *uid > 0o7777777 {
                    pax.push(("uid".into(), uid.to_string().into_bytes()));
                }
                if *gid > 0o7777777 {
                    pax.push(("gid".into(), gid.to_string().into_bytes()));
                }
                if *mtime > 0o77777777777 {
                    pax.push(("mtime".into(), mtime.to_string().into_bytes()));
                }
                b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                    .expect("append PAX records");
                let mut h = header(T::Regular, *mode, data.len() as u64);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_mtime(*mtime);
                b.append_data(&mut h, path, &data[..])
            }
            Entry::Symlink { path, target } => {
                let mut h = header(T::Symlink, 0o777, 0);
                b.append_link(&mut h, path, target)
            }
            Entry::Hardlink { path, target } => {
                let mut h = header(T::Link, 0o644, 0);
                b.append_link(&mut h, path, target)
            }
            Entry::CharDev { path, major, minor } => {
                let mut h = header(T::Char, 0o666, 0);
                h.set_device_major(*major).expect("device major");
                h.set_device_minor(*minor).expect("device minor");
                b.append_data(&mut h, path, empty)
            }
            Entry::Fifo { path } => {
                let mut h = header(T::Fifo, 0o644, 0);
                b.append_data(&mut h, path, empty)
            }
            Entry::Whiteout { path } => {
                let mut h = header(T::Regular, 0o644, 0);
                b.append_data(&mut h, whiteout_name(path, ".wh."), empty)
            }
            Entry::Opaque { dir } => {
                let mut h = header(T::Regular, 0o644, 0);
                let dir = dir.trim_end_matches('/');
                let name = if dir.is_empty() {
                    ".wh..wh..opq".to_string()
                } else {
                    format!("{dir}/.wh..wh..opq")
                };
                b.append_data(&mut h, name, empty)
            }
            Entry::RawName { name, data } => {
                let mut h = header(T::Regular, 0o644, data.len() as u64);
                raw_name(&mut h, "name", name);
                h.set_cksum();
                b.append(&h, &data[..])
            }
            Entry::RawSymlink { name, target } => {
                let mut h = header(T::Symlink, 0o777, 0);
                raw_name(&mut h, "name", name);
                raw_name(&mut h, "linkname", target);
                h.set_cksum();
                b.append(&h, empty)
            }
        };
        res.unwrap_or_else(|err| panic!("tar entry {e:?}: {err}"));
    }
    b.into_inner().expect("finish tar")
}

/// Compressed blobs by (sha256 of the tar, compression): the busybox layer is in most test images and
/// compressing 2 MB in a debug build is not free.
type BlobCache = Mutex<HashMap<(String, Compression), Vec<u8>>>;

fn compress_cache() -> &'static BlobCache {
    static CACHE: OnceLock<BlobCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// `tar` compressed with `c` (gzip: default level, no name or time in the header; zstd: level 3).
pub fn compress(tar: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::None => tar.to_vec(),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(tar).expect("gzip");
            enc.finish().expect("gzip")
        }
        Compression::Zstd => zstd::encode_all(tar, 3).expect("zstd"),
    }
}

fn compress_cached(tar: &[u8], diff_id: &str, c: Compression) -> Vec<u8> {
    if c == Compression::None || tar.len() < 64 * 1024 {
        return compress(tar, c);
    }
    let key = (diff_id.to_string(), c);
    if let Some(b) = compress_cache().lock().expect("cache lock").get(&key) {
        return b.clone();
    }
    let blob = compress(tar, c);
    compress_cache()
        .lock()
        .expect("cache lock")
        .insert(key, blob.clone());
    blob
}

/// One image: layers and config.
#[derive(Clone, Debug)]
pub struct ImageBuilder {
    layers: Vec<Layer>,
    arch: String,
    os: String,
    variant: Option<String>,
    config: Map<String, Value>,
    docker: bool,
    layer_media_types: HashMap<usize, String>,
    config_edits: Vec<Value>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn strings<I, S>(items: I) -> Value
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    Value::Array(
        items
            .into_iter()
            .map(|s| Value::String(s.as_ref().to_string()))
            .collect(),
    )
}

impl ImageBuilder {
    /// No layers, linux/amd64, empty config, OCI media types.
    pub fn new() -> Self {
        ImageBuilder {
            layers: Vec::new(),
            arch: "amd64".into(),
            os: "linux".into(),
            variant: None,
            config: Map::new(),
            docker: false,
            layer_media_types: HashMap::new(),
            config_edits: Vec::new(),
        }
    }

    /// The busybox layer, nothing else.
    pub fn busybox() -> Self {
        Self::new().layer(Layer::busybox())
    }

    pub fn layer(mut self, l: Layer) -> Self {
        self.layers.push(l);
        self
    }

    /// `architecture` and `variant` (os stays linux).
    pub fn arch(mut self, arch: &str, variant: Option<&str>) -> Self {
        self.arch = arch.into();
        self.variant = variant.map(String::from);
        self
    }

    pub fn os(mut self, os: &str) -> Self {
        self.os = os.into();
        self
    }

    /// `config.Cmd` (replaces).
    pub fn cmd<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, args: I) -> Self {
        self.config.insert("Cmd".into(), strings(args));
        self
    }

    /// `config.Entrypoint` (replaces).
    pub fn entrypoint<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, args: I) -> Self {
        self.config.insert("Entrypoint".into(), strings(args));
        self
    }

    /// Appends `KEY=VALUE` strings to `config.Env`.
    pub fn env<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, vars: I) -> Self {
        let v = self
            .config
            .entry("Env")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let (Value::Array(a), Value::Array(new)) = (v, strings(vars)) {
            a.extend(new);
        }
        self
    }

    pub fn workdir(mut self, dir: &str) -> Self {
        self.config.insert("WorkingDir".into(), json!(dir));
        self
    }

    pub fn user(mut self, user: &str) -> Self {
        self.config.insert("User".into(), json!(user));
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        let v = self
            .config
            .entry("Labels")
            .or_insert_with(|| Value::Object(Map::new()));
        v[key] = json!(value);
        self
    }

    /// Adds `path` to `config.Volumes`.
    pub fn volume(mut self, path: &str) -> Self {
        let v = self
            .config
            .entry("Volumes")
            .or_insert_with(|| Value::Object(Map::new()));
        v[path] = json!({});
        self
    }

    pub fn stop_signal(mut self, sig: &str) -> Self {
        self.config.insert("StopSignal".into(), json!(sig));
        self
    }

    /// Sets `config.KEY` to any JSON value (ExposedPorts, Healthcheck, a wrong type on purpose...).
    pub fn config_field(mut self, key: &str, value: Value) -> Self {
        self.config.insert(key.into(), value);
        self
    }

    /// Merges `patch` into the top level of the finished config JSON (a `null` removes the key), e.g. to
    /// write wrong diff_ids on purpose.
    pub fn config_patch(mut self, patch: Value) -> Self {
        self.config_edits.push(patch);
        self
    }

    /// Docker schema 2 manifest, config and layer media types instead of OCI.
    pub fn docker_media_types(mut self) -> Self {
        self.docker = true;
        self
    }

    /// The media type written for layer `index` in the manifest (the blob itself does not change).
    pub fn layer_media_type(mut self, index: usize, mt: &str) -> Self {
        self.layer_media_types.insert(index, mt.into());
        self
    }

    pub fn uses_docker_media_types(&self) -> bool {
        self.docker
    }

    fn manifest_media_type(&self) -> &'static str {
        if self.docker {
            DOCKER_MANIFEST
        } else {
            OCI_MANIFEST
        }
    }

    fn platform(&self) -> Value {
        let mut p = json!({"architecture": self.arch, "os": self.os});
        if let Some(v) = &self.variant {
            p["variant"] = json!(v);
        }
        p
    }

    fn default_layer_media_type(&self, i: usize, c: Compression) -> String {
        if let Some(mt) = self.layer_media_types.get(&i) {
            return mt.clone();
        }
        match (self.docker, c) {
            (false, Compression::None) => OCI_LAYER,
            (false, Compression::Gzip) => OCI_LAYER_GZIP,
            (false, Compression::Zstd) => OCI_LAYER_ZSTD,
            (true, Compression::None) => DOCKER_LAYER,
            (true, Compression::Gzip) => DOCKER_LAYER_GZIP,
            (true, Compression::Zstd) => panic!(
                "Docker schema 2 has no zstd layer media type: set one with layer_media_type({i}, ..)"
            ),
        }
        .to_string()
    }

    /// Writes the layer blobs, the config and the manifest into `blobs`; returns the digests and the
    /// manifest's descriptor (without annotations).
    fn write(&self, blobs: &Path) -> (Written, Value) {
        let mut layer_descs = Vec::new();
        let mut layer_digests = Vec::new();
        let mut diff_ids = Vec::new();
        let mut history = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            let tar = l.tar();
            let diff_id = sha256_digest(&tar);
            let blob = match &l.raw {
                Some(raw) => raw.clone(),
                None => compress_cached(&tar, &diff_id, l.compression),
            };
            let digest = write_blob(blobs, &blob);
            layer_descs.push(json!({
                "mediaType": self.default_layer_media_type(i, l.compression),
                "digest": digest,
                "size": blob.len(),
            }));
            history.push(json!({
                "created": CREATED,
                "created_by": format!("berth-testsupport layer {i}"),
            }));
            layer_digests.push(digest);
            diff_ids.push(diff_id);
        }
        let mut config = json!({
            "created": CREATED,
            "architecture": self.arch,
            "os": self.os,
            "config": Value::Object(self.config.clone()),
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        });
        if let Some(v) = &self.variant {
            config["variant"] = json!(v);
        }
        for patch in &self.config_edits {
            for (k, v) in patch.as_object().expect("config_patch wants an object") {
                if v.is_null() {
                    config.as_object_mut().expect("object").remove(k);
                } else {
                    config[k] = v.clone();
                }
            }
        }
        let config_bytes = serde_json::to_vec(&config).expect("config JSON");
        let config_digest = write_blob(blobs, &config_bytes);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": self.manifest_media_type(),
            "config": {
                "mediaType": if self.docker { DOCKER_CONFIG } else { OCI_CONFIG },
                "digest": config_digest,
                "size": config_bytes.len(),
            },
            "layers": layer_descs,
        });
        let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest JSON");
        let manifest_digest = write_blob(blobs, &manifest_bytes);
        let desc = json!({
            "mediaType": self.manifest_media_type(),
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
        });
        (
            Written {
                manifest_digest,
                config_digest,
                layer_digests,
                diff_ids,
            },
            desc,
        )
    }
}

/// What [`Layout::add`] wrote: `sha256:HEX` digests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub manifest_digest: String,
    pub config_digest: String,
    /// The blobs as stored (compressed), in manifest order.
    pub layer_digests: Vec<String>,
    /// sha256 of each uncompressed tar, as in the config's rootfs.
    pub diff_ids: Vec<String>,
}

fn write_blob(blobs: &Path, data: &[u8]) -> String {
    let digest = sha256_digest(data);
    let path = blobs.join(&digest["sha256:".len()..]);
    if !path.exists() {
        std::fs::write(&path, data).expect("write blob");
    }
    digest
}

/// An OCI image layout (oci-layout, index.json, blobs/sha256/HEX) in a temporary directory that lives as
/// long as this value.
pub struct Layout {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    lock: Mutex<()>,
}

impl Default for Layout {
    fn default() -> Self {
        Self::new()
    }
}

fn run(cmd: &mut Command, what: &str) -> Vec<u8> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out.stdout
}

/// skopeo with a permissive signature policy, so the host's /etc/containers/policy.json does not matter.
pub fn skopeo() -> Command {
    let mut c = Command::new("skopeo");
    c.arg("--insecure-policy");
    c
}

impl Layout {
    pub fn new() -> Layout {
        let tmp = tempfile::Builder::new()
            .prefix("berth-layout-")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(dir.join("blobs/sha256")).expect("mkdir blobs/sha256");
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("write oci-layout");
        let l = Layout {
            _tmp: tmp,
            dir,
            lock: Mutex::new(()),
        };
        l.write_index(&[]);
        l
    }

    fn blobs(&self) -> PathBuf {
        self.dir.join("blobs/sha256")
    }

    /// The file of blob `sha256:HEX`.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.blobs().join(hex)
    }

    pub fn blob(&self, digest: &str) -> Vec<u8> {
        std::fs::read(self.blob_path(digest)).expect("read blob")
    }

    /// index.json's manifests.
    pub fn index(&self) -> Vec<Value> {
        let data = std::fs::read(self.dir.join("index.json")).expect("read index.json");
        let v: Value = serde_json::from_slice(&data).expect("index.json");
        v["manifests"].as_array().cloned().unwrap_or_default()
    }

    fn write_index(&self, manifests: &[Value]) {
        let v = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": manifests,
        });
        // Through a rename: `single` and `index` read it without the lock.
        let tmp = self.dir.join(".index.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&v).expect("json")).expect("write index.json");
        std::fs::rename(&tmp, self.dir.join("index.json")).expect("rename index.json");
    }

    fn tag(&self, tag: &str, mut desc: Value) {
        let _g = self.lock.lock().expect("layout lock");
        desc["annotations"] = json!({ REF_NAME: tag });
        let mut m = self.index();
        m.retain(|d| d["annotations"][REF_NAME] != json!(tag));
        m.push(desc);
        self.write_index(&m);
    }

    /// Writes the image and tags its manifest `tag` in index.json.
    pub fn add(&self, tag: &str, image: ImageBuilder) -> Written {
        let (w, desc) = image.write(&self.blobs());
        self.tag(tag, desc);
        w
    }

    /// Writes the images and an index over them (each with its platform), tagged `tag`. The index is a
    /// Docker manifest list when every image uses Docker media types, an OCI image index otherwise.
    pub fn add_index(&self, tag: &str, images: Vec<ImageBuilder>) -> (String, Vec<Written>) {
        let docker = !images.is_empty() && images.iter().all(|i| i.docker);
        let mut written = Vec::new();
        let mut descs = Vec::new();
        for img in &images {
            let (w, mut d) = img.write(&self.blobs());
            d["platform"] = img.platform();
            descs.push(d);
            written.push(w);
        }
        let mt = if docker {
            DOCKER_MANIFEST_LIST
        } else {
            OCI_INDEX
        };
        let index = json!({"schemaVersion": 2, "mediaType": mt, "manifests": descs});
        let bytes = serde_json::to_vec(&index).expect("index JSON");
        let digest = write_blob(&self.blobs(), &bytes);
        self.tag(
            tag,
            json!({"mediaType": mt, "digest": digest, "size": bytes.len()}),
        );
        (digest, written)
    }

    /// `oci:DIR:TAG`. skopeo 1.9 finds a tag only on OCI manifest and index descriptors ("no descriptor
    /// found for reference"); [`Layout::push`] and [`Layout::to_docker_archive`] go through
    /// [`Layout::single`] instead, which works for Docker media types too.
    pub fn reference(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.dir.display())
    }

    /// A scratch layout whose index.json holds only `tag`'s descriptor, with `blobs` a symlink to this
    /// layout's blobs, and the `oci:DIR` reference (no tag) to it: with a single descriptor skopeo takes it
    /// whatever its media type.
    pub fn single(&self, tag: &str) -> (tempfile::TempDir, String) {
        let desc = self.descriptor(tag);
        let tmp = tempfile::Builder::new()
            .prefix("berth-layout-tag-")
            .tempdir()
            .expect("tempdir");
        std::fs::copy(self.dir.join("oci-layout"), tmp.path().join("oci-layout"))
            .expect("copy oci-layout");
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]});
        std::fs::write(
            tmp.path().join("index.json"),
            serde_json::to_vec(&index).expect("json"),
        )
        .expect("write index.json");
        std::os::unix::fs::symlink(self.dir.join("blobs"), tmp.path().join("blobs"))
            .expect("symlink blobs");
        let r = format!("oci:{}", tmp.path().display());
        (tmp, r)
    }

    /// Pushes image (or index) `tag` to `registry_addr` (`127.0.0.1:PORT`, plain http) as `dest`
    /// (`repo:tag`), every manifest and blob byte for byte: `skopeo --insecure-policy copy --all
    /// --preserve-digests --dest-tls-verify=false oci:SCRATCH docker://ADDR/DEST`, SCRATCH from
    /// [`Layout::single`]. Without --preserve-digests skopeo 1.9 gzips uncompressed layers (and so rewrites
    /// the manifest); zstd layers and Docker media types it copies as they are either way. Panics with
    /// skopeo's stderr on failure.
    pub fn push(&self, tag: &str, registry_addr: &str, dest: &str) {
        self.push_as(tag, registry_addr, dest, None)
    }

    /// [`Layout::push`] to a registry that wants basic auth (`creds` = "user:password").
    pub fn push_with_creds(&self, tag: &str, registry_addr: &str, dest: &str, creds: &str) {
        self.push_as(tag, registry_addr, dest, Some(creds))
    }

    fn push_as(&self, tag: &str, registry_addr: &str, dest: &str, creds: Option<&str>) {
        let (_scratch, src) = self.single(tag);
        let mut cmd = skopeo();
        cmd.args([
            "copy",
            "--quiet",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ]);
        if let Some(c) = creds {
            cmd.arg(format!("--dest-creds={c}"));
        }
        run(
            cmd.arg(&src)
                .arg(format!("docker://{registry_addr}/{dest}")),
            &format!("skopeo copy {tag} to {registry_addr}/{dest}"),
        );
    }

    /// `skopeo copy oci:DIR:TAG docker-archive:FILE:NAME`: what `docker save` writes (manifest.json,
    /// CONFIGHEX.json, layers stored uncompressed as DIFFIDHEX.tar; skopeo normalizes NAME, e.g.
    /// `busybox:latest` becomes `docker.io/library/busybox:latest`). skopeo 1.9 refuses zstd layers
    /// there ("zstd compression is not supported for docker images").
    pub fn to_docker_archive(&self, tag: &str, file: &Path, name: &str) {
        let (_scratch, src) = self.single(tag);
        run(
            skopeo()
                .args(["copy", "--quiet"])
                .arg(&src)
                .arg(format!("docker-archive:{}:{name}", file.display())),
            &format!("skopeo copy {tag} to docker-archive {}", file.display()),
        );
    }

    /// The descriptor index.json has for `tag`.
    pub fn descriptor(&self, tag: &str) -> Value {
        self.index()
            .into_iter()
            .find(|d| d["annotations"][REF_NAME] == json!(tag))
            .unwrap_or_else(|| panic!("no tag {tag:?} in {}", self.dir.display()))
    }

    /// The digests reachable from a manifest or index blob: itself, child manifests, configs, layers.
    pub fn reachable(&self, digest: &str) -> Vec<String> {
        let mut out = vec![digest.to_string()];
        let m: Value = serde_json::from_slice(&self.blob(digest)).expect("manifest JSON");
        for child in m["manifests"].as_array().into_iter().flatten() {
            for d in self.reachable(child["digest"].as_str().expect("child digest")) {
                if !out.contains(&d) {
                    out.push(d);
                }
            }
        }
        let config = m["config"]["digest"].as_str().into_iter();
        let layers = m["layers"].as_array().into_iter().flatten();
        for d in config.chain(layers.filter_map(|l| l["digest"].as_str())) {
            if !out.iter().any(|o| o == d) {
                out.push(d.to_string());
            }
        }
        out
    }

    /// An OCI archive of `tag`, as `podman save --format oci-archive` writes one: a tar of a layout
    /// directory with oci-layout, an index.json holding only `tag`'s descriptor, blobs/, blobs/sha256/ and
    /// the blobs `tag` reaches (sorted by digest); fixed mtimes, written with `tar::Builder`.
    pub fn to_oci_archive(&self, tag: &str, file: &Path) {
        let desc = self.descriptor(tag);
        let mut digests = self.reachable(desc["digest"].as_str().expect("digest"));
        digests.sort();
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]});
        let index = serde_json::to_vec(&index).expect("json");
        let layout = std::fs::read(self.dir.join("oci-layout")).expect("read oci-layout");

        let f = std::fs::File::create(file).expect("create OCI archive");
        let mut b = tar::Builder::new(std::io::BufWriter::new(f));
        let empty: &[u8] = &[];
        for (name, data) in [("oci-layout", &layout), ("index.json", &index)] {
            let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
            b.append_data(&mut h, name, &data[..])
                .expect("append to OCI archive");
        }
        for d in ["blobs/", "blobs/sha256/"] {
            let mut h = header(tar::EntryType::Directory, 0o755, 0);
            b.append_data(&mut h, d, empty)
                .expect("append to OCI archive");
        }
        for d in digests {
            let f = std::fs::File::open(self.blob_path(&d)).expect("open blob");
            let len = f.metadata().expect("stat blob").len();
            let mut h = header(tar::EntryType::Regular, 0o644, len);
            let name = format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
            b.append_data(&mut h, name, f)
                .expect("append to OCI archive");
        }
        b.into_inner()
            .expect("finish OCI archive")
            .flush()
            .expect("flush OCI archive");
    }
}

/// The busybox layer and `n` layers on top, layer N adding `/layers/N` (content "N\n"), all gzip.
pub fn deep_image(n: usize) -> ImageBuilder {
    let mut img = ImageBuilder::new().layer(Layer::busybox());
    for i in 0..n {
        img = img.layer(Layer::new(
            vec![
                Entry::dir("layers", 0o755),
                Entry::file(&format!("layers/{i}"), format!("{i}\n"), 0o644),
            ],
            Compression::Gzip,
        ));
    }
    img
}
