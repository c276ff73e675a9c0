//! Helpers shared by the registry's integration tests: a server on its own tempdir, the berth client, curl.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use image::registry::{Client, ClientOptions};
use image::{media, Digest};
use registry::{Config, Server};

pub struct Reg {
    pub server: Server,
    pub dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`
    pub host: String,
}

impl Reg {
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host)
    }
}

pub fn start() -> Reg {
    start_with(|_| {})
}

pub fn start_with(f: impl FnOnce(&mut Config)) -> Reg {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new("127.0.0.1:0".parse().unwrap(), dir.path().join("root"));
    cfg.log_requests = std::env::var_os("REGISTRY_TEST_LOG").is_some();
    f(&mut cfg);
    let server = Server::start(cfg).unwrap();
    let host = server.addr.to_string();
    Reg { server, dir, host }
}

/// A client with no credentials (an empty auth file in `dir`).
pub fn client(dir: &Path) -> Client {
    let auth = dir.join("client-auth.json");
    client_with_auth(&auth)
}

pub fn client_with_auth(auth_file: &Path) -> Client {
    Client::new(ClientOptions {
        auth_file: Some(auth_file.to_path_buf()),
        ..ClientOptions::default()
    })
    .unwrap()
}

pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    // xorshift: deterministic per seed, distinct across seeds.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn push_blob(c: &Client, host: &str, repo: &str, data: &[u8]) -> Digest {
    let d = Digest::sha256_of(data);
    c.push_blob(host, repo, &d, data.len() as u64, data)
        .unwrap();
    d
}

pub struct Pushed {
    pub manifest: Vec<u8>,
    pub digest: Digest,
    pub config: (Digest, Vec<u8>),
    pub layers: Vec<(Digest, Vec<u8>)>,
}

pub fn manifest_json(
    config: (&Digest, usize),
    layers: &[(Digest, usize)],
    subject: Option<(&Digest, usize)>,
    artifact_type: Option<&str>,
) -> Vec<u8> {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config.0, "size": config.1},
        "layers": layers.iter().map(|(d, s)| serde_json::json!({
            "mediaType": media::OCI_LAYER_GZIP, "digest": d, "size": s})).collect::<Vec<_>>(),
    });
    if let Some((d, s)) = subject {
        m["subject"] =
            serde_json::json!({"mediaType": media::OCI_MANIFEST, "digest": d, "size": s});
    }
    if let Some(at) = artifact_type {
        m["artifactType"] = serde_json::json!(at);
    }
    serde_json::to_vec(&m).unwrap()
}

/// Pushes a config and `layers` random layers, then the manifest under `tag`.
pub fn push_image(
    c: &Client,
    host: &str,
    repo: &str,
    tag: &str,
    seed: u64,
    layers: usize,
) -> Pushed {
    let config_bytes = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[]}}}}").into_bytes();
    let cd = push_blob(c, host, repo, &config_bytes);
    let mut ls = Vec::new();
    for i in 0..layers {
        let data = random_bytes(
            1000 + (seed as usize % 5000) + i * 100,
            seed * 31 + i as u64,
        );
        let d = push_blob(c, host, repo, &data);
        ls.push((d, data));
    }
    let sizes: Vec<(Digest, usize)> = ls.iter().map(|(d, b)| (d.clone(), b.len())).collect();
    let manifest = manifest_json((&cd, config_bytes.len()), &sizes, None, None);
    let digest = c
        .put_manifest(host, repo, tag, media::OCI_MANIFEST, &manifest)
        .unwrap();
    Pushed {
        manifest,
        digest,
        config: (cd, config_bytes),
        layers: ls,
    }
}

/// Pulls the manifest by tag and every blob, checking bytes and digests.
pub fn verify_pull(c: &Client, host: &str, repo: &str, reference: &str, p: &Pushed) {
    use std::io::Read as _;
    let m = c.fetch_manifest(host, repo, reference).unwrap();
    assert_eq!(m.bytes, p.manifest);
    assert_eq!(m.digest, p.digest);
    assert_eq!(m.media_type, media::OCI_MANIFEST);
    for (d, data) in std::iter::once(&p.config).chain(p.layers.iter()) {
        let desc = image::Descriptor {
            media_type: media::OCI_LAYER_GZIP.into(),
            digest: d.clone(),
            size: data.len() as u64,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
        };
        let mut got = Vec::new();
        c.fetch_blob(host, repo, &desc)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(&got, data);
    }
}

pub struct CurlResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl CurlResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// Runs curl with `args` (method, headers, data, URL ...); the response's status, headers and body.
pub fn curl(args: &[&str]) -> CurlResponse {
    let dir = tempfile::tempdir().unwrap();
    let hdr = dir.path().join("h");
    let body = dir.path().join("b");
    let out = Command::new("curl")
        .args([
            "-sS",
            "-D",
            hdr.to_str().unwrap(),
            "-o",
            body.to_str().unwrap(),
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&hdr).unwrap();
    // The last response block (after any 100 Continue).
    let block = text.trim_end().rsplit("\r\n\r\n").next().unwrap_or("");
    let mut lines = block.lines();
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    CurlResponse {
        status,
        headers,
        body: std::fs::read(&body).unwrap_or_default(),
    }
}
