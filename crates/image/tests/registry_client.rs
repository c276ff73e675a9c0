//! The registry client against a real distribution registry (Debian's docker-registry), directly and through
//! small in-test HTTP proxies that add bearer auth, cut connections or serve wrong content.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use berth_testsupport::registry::Registry;
use image::media::{OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use image::registry::{credentials, Client, ClientOptions, RegistryError};
use image::{Descriptor, Digest};

fn client_with(auth_file: &Path) -> Client {
    Client::new(ClientOptions {
        tls_verify: true,
        insecure_registries: Vec::new(),
        // Always explicit, so the tests never read the host's ~/.docker/config.json.
        auth_file: Some(auth_file.to_path_buf()),
        user_agent: "berth-test".into(),
    })
    .expect("client")
}

/// A client with an empty (absent) auth file.
fn anon_client(dir: &tempfile::TempDir) -> Client {
    client_with(&dir.path().join("none.json"))
}

fn write_auth_file(dir: &Path, registry: &str, user: &str, pass: &str) -> PathBuf {
    let p = dir.join("config.json");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let doc = serde_json::json!({ "auths": { registry: { "auth": auth } } });
    std::fs::write(&p, doc.to_string()).unwrap();
    p
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn desc(media_type: &str, data: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: Digest::sha256_of(data),
        size: data.len() as u64,
        urls: None,
        annotations: None,
        platform: None,
        artifact_type: None,
    }
}

fn push(c: &Client, reg: &str, repo: &str, data: &[u8]) -> Descriptor {
    let d = desc(OCI_LAYER, data);
    c.push_blob(reg, repo, &d.digest, d.size, data)
        .expect("push blob");
    d
}

struct Pushed {
    manifest: Vec<u8>,
    digest: Digest,
    layers: Vec<(Descriptor, Vec<u8>)>,
}

/// Pushes a config, the given layers and an OCI manifest tagged `tag`.
fn push_image(c: &Client, reg: &str, repo: &str, tag: &str, layers: Vec<Vec<u8>>) -> Pushed {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let mut config_desc = push(c, reg, repo, config);
    config_desc.media_type = OCI_CONFIG.into();
    let layers: Vec<(Descriptor, Vec<u8>)> = layers
        .into_iter()
        .map(|l| (push(c, reg, repo, &l), l))
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": layers.iter().map(|(d, _)| d).collect::<Vec<_>>(),
    }))
    .unwrap();
    let digest = c
        .put_manifest(reg, repo, tag, OCI_MANIFEST, &manifest)
        .expect("put manifest");
    assert_eq!(digest, Digest::sha256_of(&manifest));
    Pushed {
        manifest,
        digest,
        layers,
    }
}

fn read_all(c: &Client, reg: &str, repo: &str, d: &Descriptor) -> std::io::Result<Vec<u8>> {
    let mut r = c.fetch_blob(reg, repo, d).map_err(std::io::Error::other)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)?;
    Ok(out)
}

#[test]
fn push_then_pull_by_tag_and_digest() {
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let c = anon_client(&dir);
    let r = &reg.addr;
    let img = push_image(
        &c,
        r,
        "berth/app",
        "v1",
        vec![pseudo_random(100_000, 1), b"small layer".to_vec()],
    );

    let by_tag = c.fetch_manifest(r, "berth/app", "v1").expect("by tag");
    assert_eq!(by_tag.bytes, img.manifest);
    assert_eq!(by_tag.digest, img.digest);
    assert_eq!(by_tag.media_type, OCI_MANIFEST);
    let by_digest = c
        .fetch_manifest(r, "berth/app", img.digest.as_str())
        .expect("by digest");
    assert_eq!(by_digest.bytes, img.manifest);

    for (d, data) in &img.layers {
        assert!(c.blob_exists(r, "berth/app", &d.digest).unwrap());
        assert_eq!(&read_all(&c, r, "berth/app", d).unwrap(), data);
    }
    let absent = Digest::sha256_of(b"never pushed");
    assert!(!c.blob_exists(r, "berth/app", &absent).unwrap());

    // Layers of one image download in parallel through clones of one client.
    std::thread::scope(|s| {
        for (d, data) in &img.layers {
            let c = c.clone();
            s.spawn(move || assert_eq!(&read_all(&c, r, "berth/app", d).unwrap(), data));
        }
    });
}

#[test]
fn unknown_tag_wrong_digest_and_missing_blob() {
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let c = anon_client(&dir);
    let r = &reg.addr;
    push_image(&c, r, "a/b", "v1", vec![b"x".to_vec()]);

    let e = c.fetch_manifest(r, "a/b", "nosuch").unwrap_err();
    assert!(matches!(e, RegistryError::ManifestUnknown { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("manifest unknown"), "{msg}");
    assert!(msg.contains(&format!("{r}/a/b:nosuch")), "{msg}");
    assert_eq!(e.status(), Some(404));

    let other = Digest::sha256_of(b"some other manifest");
    let e = c.fetch_manifest(r, "a/b", other.as_str()).unwrap_err();
    assert!(e.to_string().contains(other.as_str()), "{e}");

    let e = c.fetch_manifest(r, "nosuch/repo", "latest").unwrap_err();
    assert!(e.to_string().contains("nosuch/repo:latest"), "{e}");

    let missing = desc(OCI_LAYER, b"not there");
    let e = c
        .fetch_blob(r, "a/b", &missing)
        .err()
        .expect("missing blob");
    assert!(matches!(e, RegistryError::BlobUnknown { .. }), "{e:?}");
    assert!(e.to_string().contains(missing.digest.as_str()), "{e}");

    // A digest the client computes itself disagreeing with the one asked for.
    let e = c
        .put_manifest(r, "a/b", other.as_str(), OCI_MANIFEST, b"{}")
        .unwrap_err();
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e:?}");
}

#[test]
fn mount_between_repositories() {
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let c = anon_client(&dir);
    let r = &reg.addr;
    let d = push(&c, r, "src/repo", b"shared layer");
    assert!(!c.blob_exists(r, "dst/repo", &d.digest).unwrap());
    assert!(c.mount_blob(r, "dst/repo", "src/repo", &d.digest).unwrap());
    assert!(c.blob_exists(r, "dst/repo", &d.digest).unwrap());
    assert_eq!(read_all(&c, r, "dst/repo", &d).unwrap(), b"shared layer");
    // Nothing to mount: the registry opens a plain upload instead, which the client cancels.
    let absent = Digest::sha256_of(b"absent");
    assert!(!c.mount_blob(r, "dst/repo", "src/repo", &absent).unwrap());
}

#[test]
fn corrupt_blob_is_a_read_error() {
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let c = anon_client(&dir);
    let r = &reg.addr;
    let data = pseudo_random(50_000, 7);
    let d = push(&c, r, "c/x", &data);
    let mut bad = data.clone();
    bad[25_000] ^= 0xff;
    std::fs::write(reg.blob_path(d.digest.hex()), &bad).unwrap();

    let e = read_all(&c, r, "c/x", &d).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    let msg = e.to_string();
    assert!(msg.contains("digest mismatch"), "{msg}");
    assert!(msg.contains(d.digest.as_str()), "{msg}");
    assert!(msg.contains(Digest::sha256_of(&bad).as_str()), "{msg}");

    // A descriptor claiming fewer bytes than the registry serves.
    let short = Descriptor {
        size: d.size - 1,
        ..d.clone()
    };
    assert!(read_all(&c, r, "c/x", &short).is_err());
}

#[test]
fn basic_auth_from_the_auth_file() {
    let reg = Registry::start_with_auth("alice", "s3cret");
    let r = &reg.addr;
    let dir = tempfile::tempdir().unwrap();

    let good = client_with(&write_auth_file(dir.path(), r, "alice", "s3cret"));
    let img = push_image(&good, r, "team/app", "v1", vec![b"layer".to_vec()]);
    let m = good.fetch_manifest(r, "team/app", "v1").unwrap();
    assert_eq!(m.digest, img.digest);
    assert_eq!(
        read_all(&good, r, "team/app", &img.layers[0].0).unwrap(),
        b"layer"
    );
    good.check_login(r, "alice", "s3cret").unwrap();

    let e = good.check_login(r, "alice", "wrong").unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e:?}");

    let wrong_dir = tempfile::tempdir().unwrap();
    let wrong = client_with(&write_auth_file(wrong_dir.path(), r, "alice", "nope"));
    let e = wrong.fetch_manifest(r, "team/app", "v1").unwrap_err();
    assert!(matches!(e, RegistryError::Unauthorized { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("registry {r}: unauthorized: wrong username or password")
    );

    let anon = anon_client(&dir);
    let e = anon.fetch_manifest(r, "team/app", "v1").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("registry {r}: unauthorized: authentication required")
    );
    // Login checks work without anything stored.
    anon.check_login(r, "alice", "s3cret").unwrap();
    assert!(anon.check_login(r, "bob", "s3cret").is_err());
}

#[test]
fn bearer_token_flow() {
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let direct = anon_client(&dir);
    let img = push_image(
        &direct,
        &reg.addr,
        "x",
        "latest",
        vec![b"one".to_vec(), b"two".to_vec()],
    );

    let token_requests = Arc::new(AtomicUsize::new(0));
    let bad_scope = Arc::new(Mutex::new(None::<String>));
    let proxy = {
        let token_requests = token_requests.clone();
        let bad_scope = bad_scope.clone();
        let realm = Arc::new(Mutex::new(String::new()));
        let realm_in = realm.clone();
        let p = Proxy::start(&reg.addr, move |req| {
            if let Some(query) = req.path.strip_prefix("/token?") {
                token_requests.fetch_add(1, Ordering::SeqCst);
                // Anonymous tokens are fine; given credentials must be right.
                let good = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("alice:pw")
                );
                if req.header("authorization").is_some_and(|a| a != good) {
                    return Action::respond(401, &[], b"");
                }
                let scope = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("scope="))
                    .map(|s| s.replace("%3A", ":").replace("%3a", ":"));
                // No scope: a login (docker asks for a token without one).
                if scope.as_deref().is_some_and(|s| s != "repository:x:pull")
                    || !query.contains("service=test")
                {
                    *lock(&bad_scope) = Some(query.to_string());
                    return Action::respond(400, &[], b"bad scope");
                }
                return Action::respond(200, &[], br#"{"token":"T","expires_in":300}"#);
            }
            if req.header("authorization") == Some("Bearer T") {
                return Action::forward();
            }
            let challenge = format!(
                r#"Bearer realm="{}",service="test",scope="repository:x:pull""#,
                lock(&realm_in)
            );
            Action::respond(401, &[("WWW-Authenticate", &challenge)], b"")
        });
        *lock(&realm) = format!("http://{}/token", p.addr);
        p
    };

    let c = anon_client(&dir);
    let m = c
        .fetch_manifest(&proxy.addr, "x", "latest")
        .expect("manifest");
    assert_eq!(m.bytes, img.manifest);
    let m = c
        .fetch_manifest(&proxy.addr, "x", img.digest.as_str())
        .expect("manifest by digest");
    assert_eq!(m.digest, img.digest);
    for (d, data) in &img.layers {
        assert_eq!(&read_all(&c, &proxy.addr, "x", d).unwrap(), data);
        assert!(c.blob_exists(&proxy.addr, "x", &d.digest).unwrap());
    }
    assert_eq!(*lock(&bad_scope), None);
    assert_eq!(token_requests.load(Ordering::SeqCst), 1);
    // Every request after the first challenge carried the token.
    let seen = proxy.seen();
    let unauth = seen
        .iter()
        .filter(|r| !r.path.starts_with("/token") && r.header("authorization").is_none())
        .count();
    assert!(unauth <= 2, "{unauth} anonymous requests: {seen:?}");

    // Logins go through the token flow with the given credentials, and do not reuse cached tokens.
    c.check_login(&proxy.addr, "alice", "pw").expect("login");
    assert_eq!(token_requests.load(Ordering::SeqCst), 2);
    let e = c.check_login(&proxy.addr, "alice", "bad").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "registry {}: unauthorized: wrong username or password",
            proxy.addr
        )
    );
    assert_eq!(*lock(&bad_scope), None);
}

#[test]
fn blob_download_resumes_after_a_cut() {
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let c = anon_client(&dir);
    let data = pseudo_random(3 << 20, 42);
    let d = push(&c, &reg.addr, "big/blob", &data);
    let blob_path = format!("/v2/big/blob/blobs/{}", d.digest);

    for ignore_range in [false, true] {
        let cut = Arc::new(AtomicBool::new(false));
        let proxy = {
            let cut = cut.clone();
            let blob_path = blob_path.clone();
            Proxy::start(&reg.addr, move |req| {
                if req.path == blob_path && !cut.swap(true, Ordering::SeqCst) {
                    return Action::Forward {
                        strip_range: false,
                        cut_after: Some((3 << 20) / 2),
                    };
                }
                Action::Forward {
                    strip_range: ignore_range,
                    cut_after: None,
                }
            })
        };
        let got = read_all(&c, &proxy.addr, "big/blob", &d).expect("resumed download");
        assert!(
            got == data,
            "resumed bytes differ (ignore_range={ignore_range})"
        );
        let ranges: Vec<String> = proxy
            .seen()
            .iter()
            .filter(|r| r.path == blob_path)
            .filter_map(|r| r.header("range").map(str::to_string))
            .collect();
        assert_eq!(ranges.len(), 1, "{ranges:?}");
        let n: u64 = ranges[0]
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad range {:?}", ranges[0]));
        assert!(n > 0 && n <= (3 << 20) / 2, "{n}");
    }
}

#[test]
fn manifest_not_matching_the_asked_digest() {
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let c = anon_client(&dir);
    let a = push_image(&c, &reg.addr, "m/x", "a", vec![b"a".to_vec()]);
    let b = push_image(&c, &reg.addr, "m/x", "b", vec![b"b".to_vec()]);
    // A registry (or man in the middle) answering B's digest with A's document.
    let proxy = {
        let a_path = format!("/v2/m/x/manifests/{}", a.digest);
        let b_path = format!("/v2/m/x/manifests/{}", b.digest);
        Proxy::start(&reg.addr, move |req| {
            if req.path == b_path {
                let mut r = req.clone();
                r.path = a_path.clone();
                return Action::ForwardAs(r);
            }
            Action::forward()
        })
    };
    let e = c
        .fetch_manifest(&proxy.addr, "m/x", b.digest.as_str())
        .unwrap_err();
    assert!(matches!(e, RegistryError::DigestMismatch { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains(b.digest.as_str()) && msg.contains(a.digest.as_str()),
        "{msg}"
    );
    // The honest path through the same proxy still works.
    assert_eq!(
        c.fetch_manifest(&proxy.addr, "m/x", a.digest.as_str())
            .unwrap()
            .bytes,
        a.manifest
    );
}

#[test]
fn credentials_round_trip_keeps_other_keys() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.json");
    std::fs::write(
        &p,
        r#"{"auths":{"other.io":{"auth":"b3RoZXI6cHc=","email":"x@y"}},"credsStore":"desktop","proxies":{"default":{"httpProxy":"http://p:3128"}}}"#,
    )
    .unwrap();

    let mut f = credentials::load(Some(&p)).unwrap();
    assert_eq!(f.get("other.io"), Some(("other".into(), "pw".into())));
    f.store("127.0.0.1:5000", "u", "p:with:colons").unwrap();
    f.store("docker.io", "hubuser", "hubpw").unwrap();

    let f2 = credentials::load(Some(&p)).unwrap();
    assert_eq!(
        f2.get("127.0.0.1:5000"),
        Some(("u".into(), "p:with:colons".into()))
    );
    assert_eq!(
        f2.get("docker.io"),
        Some(("hubuser".into(), "hubpw".into()))
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    assert_eq!(doc["credsStore"], "desktop");
    assert_eq!(doc["proxies"]["default"]["httpProxy"], "http://p:3128");
    assert_eq!(doc["auths"]["other.io"]["email"], "x@y");
    assert!(doc["auths"][credentials::DOCKER_HUB_KEY]["auth"].is_string());
    let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // No temp files left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let mut f3 = credentials::load(Some(&p)).unwrap();
    assert!(f3.erase("127.0.0.1:5000").unwrap());
    assert!(!f3.erase("127.0.0.1:5000").unwrap());
    assert!(f3.erase("docker.io").unwrap());
    let f4 = credentials::load(Some(&p)).unwrap();
    assert_eq!(f4.get("127.0.0.1:5000"), None);
    assert_eq!(f4.get("docker.io"), None);
    assert_eq!(f4.get("other.io"), Some(("other".into(), "pw".into())));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    assert_eq!(doc["credsStore"], "desktop");
}

#[test]
fn redirected_blobs_do_not_carry_credentials_elsewhere() {
    let reg = Registry::start_with_auth("alice", "s3cret");
    let dir = tempfile::tempdir().unwrap();
    let auth_file = write_auth_file(dir.path(), &reg.addr, "alice", "s3cret");
    let direct = client_with(&auth_file);
    let d = push(&direct, &reg.addr, "r/x", b"redirected content");

    // "Storage": another host (127.0.0.2), which authorises by itself, as a presigned URL would.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
    );
    let storage = Proxy::start_on("127.0.0.2", &reg.addr, move |req| {
        let mut r = req.clone();
        r.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
        r.headers.push(("Authorization".into(), basic.clone()));
        Action::ForwardAs(r)
    });
    let front = {
        let storage_addr = storage.addr.clone();
        Proxy::start(&reg.addr, move |req| {
            // Unauthenticated requests reach the registry, whose challenge makes the client log in.
            if req.method == "GET"
                && req.path.contains("/blobs/sha256:")
                && req.header("authorization").is_some()
            {
                let to = format!("http://{storage_addr}{}", req.path);
                return Action::respond(307, &[("Location", &to)], b"");
            }
            Action::forward()
        })
    };
    // The front is reached by the name the auth file knows it under.
    let p = write_auth_file(dir.path(), &front.addr, "alice", "s3cret");
    let c = client_with(&p);
    assert_eq!(
        read_all(&c, &front.addr, "r/x", &d).unwrap(),
        b"redirected content"
    );
    let front_seen = front.seen();
    assert!(front_seen
        .iter()
        .any(|r| r.path.contains("/blobs/") && r.header("authorization").is_some()));
    let storage_seen = storage.seen();
    assert!(!storage_seen.is_empty());
    assert!(
        storage_seen
            .iter()
            .all(|r| r.header("authorization").is_none()),
        "{storage_seen:?}"
    );
}

#[test]
fn retries_5xx_and_429_but_not_other_4xx() {
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let c = anon_client(&dir);
    let img = push_image(&c, &reg.addr, "t/x", "v1", vec![b"l".to_vec()]);

    let count = Arc::new(AtomicUsize::new(0));
    let proxy = {
        let count = count.clone();
        Proxy::start(&reg.addr, move |req| {
            if !req.path.contains("/manifests/") {
                return Action::forward();
            }
            match (req.path.ends_with("/v1"), count.fetch_add(1, Ordering::SeqCst)) {
                (true, 0) => Action::respond(503, &[], b"busy"),
                (true, 1) => Action::respond(429, &[("Retry-After", "0")], b""),
                (true, _) => Action::forward(),
                (false, _) => Action::respond(
                    400,
                    &[("Content-Type", "application/json")],
                    br#"{"errors":[{"code":"NAME_INVALID","message":"invalid repository name","detail":"nope"}]}"#,
                ),
            }
        })
    };
    let m = c.fetch_manifest(&proxy.addr, "t/x", "v1").unwrap();
    assert_eq!(m.digest, img.digest);
    assert_eq!(count.load(Ordering::SeqCst), 3);

    count.store(100, Ordering::SeqCst);
    let e = c.fetch_manifest(&proxy.addr, "t/x", "v2").unwrap_err();
    assert_eq!(e.status(), Some(400));
    let msg = e.to_string();
    assert!(
        msg.contains("NAME_INVALID: invalid repository name; nope"),
        "{msg}"
    );
    assert!(msg.contains("t/x:v2") && msg.contains(&proxy.addr), "{msg}");
    assert_eq!(count.load(Ordering::SeqCst), 101, "a 400 is not retried");
}

// ---------------------------------------------------------------------------------------------------------
// A small HTTP/1.1 proxy: each request goes to a handler that answers it or forwards it to the registry.

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone, Debug)]
struct Req {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

enum Action {
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    Forward {
        strip_range: bool,
        /// Send only this many body bytes, then drop the connection.
        cut_after: Option<usize>,
    },
    ForwardAs(Req),
}

impl Action {
    fn respond(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Action {
        Action::Respond {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        }
    }

    fn forward() -> Action {
        Action::Forward {
            strip_range: false,
            cut_after: None,
        }
    }
}

type Handler = Arc<dyn Fn(&Req) -> Action + Send + Sync>;

struct Proxy {
    addr: String,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Req>>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start(upstream: &str, handler: impl Fn(&Req) -> Action + Send + Sync + 'static) -> Proxy {
        Proxy::start_on("127.0.0.1", upstream, handler)
    }

    fn start_on(
        ip: &str,
        upstream: &str,
        handler: impl Fn(&Req) -> Action + Send + Sync + 'static,
    ) -> Proxy {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let thread = {
            let (stop, seen, upstream) = (stop.clone(), seen.clone(), upstream.to_string());
            std::thread::spawn(move || {
                let mut conns = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            let (stop, seen, upstream, handler) = (
                                stop.clone(),
                                seen.clone(),
                                upstream.clone(),
                                handler.clone(),
                            );
                            conns.push(std::thread::spawn(move || {
                                serve(s, &upstream, &*handler, &seen, &stop)
                            }));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                for c in conns {
                    let _ = c.join();
                }
            })
        };
        Proxy {
            addr,
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Req> {
        lock(&self.seen).clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads until `buf` holds `want` bytes (or a full head when `want` is None). False: closed or stopping.
fn fill(s: &mut TcpStream, buf: &mut Vec<u8>, want: Option<usize>, stop: &AtomicBool) -> bool {
    loop {
        match want {
            Some(n) if buf.len() >= n => return true,
            None if find(buf, b"\r\n\r\n").is_some() => return true,
            // A TLS ClientHello (the client probing https first): not for this plain-http proxy.
            None if buf.first() == Some(&0x16) || buf.len() > 64 << 10 => return false,
            _ => {}
        }
        let mut chunk = [0u8; 16 << 10];
        match s.read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                if stop.load(Ordering::SeqCst) {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
}

fn parse_head(head: &str) -> Option<(String, Vec<(String, String)>)> {
    let mut lines = head.split("\r\n");
    let first = lines.next()?.to_string();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Some((first, headers))
}

fn serve(
    mut s: TcpStream,
    upstream: &str,
    handler: &dyn Fn(&Req) -> Action,
    seen: &Mutex<Vec<Req>>,
    stop: &AtomicBool,
) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = Vec::new();
    loop {
        if !fill(&mut s, &mut buf, None, stop) {
            return;
        }
        let Some(end) = find(&buf, b"\r\n\r\n") else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let Some((first, headers)) = parse_head(&head) else {
            return;
        };
        let mut parts = first.split(' ');
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            return;
        };
        let mut req = Req {
            method: method.to_string(),
            path: path.to_string(),
            headers,
            body: Vec::new(),
        };
        let len: usize = req
            .header("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        if !fill(&mut s, &mut buf, Some(end + 4 + len), stop) {
            return;
        }
        req.body = buf[end + 4..end + 4 + len].to_vec();
        buf.drain(..end + 4 + len);
        lock(seen).push(req.clone());

        let ok = match handler(&req) {
            Action::Respond {
                status,
                headers,
                body,
            } => {
                let mut out = format!("HTTP/1.1 {status} X\r\n");
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                s.write_all(out.as_bytes()).is_ok() && s.write_all(&body).is_ok()
            }
            Action::Forward {
                strip_range,
                cut_after,
            } => forward(&mut s, upstream, &req, strip_range, cut_after),
            Action::ForwardAs(r) => forward(&mut s, upstream, &r, false, None),
        };
        if !ok {
            return;
        }
    }
}

/// Sends the request upstream as HTTP/1.0 (so the response is delimited by the close) and relays it.
fn forward(
    client: &mut TcpStream,
    upstream: &str,
    req: &Req,
    strip_range: bool,
    cut_after: Option<usize>,
) -> bool {
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return false;
    };
    let _ = up.set_read_timeout(Some(Duration::from_secs(20)));
    let mut out = format!("{} {} HTTP/1.0\r\n", req.method, req.path);
    for (k, v) in &req.headers {
        let k_l = k.to_ascii_lowercase();
        if k_l == "connection" || k_l == "content-length" || (strip_range && k_l == "range") {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", req.body.len()));
    if up.write_all(out.as_bytes()).is_err() || up.write_all(&req.body).is_err() {
        return false;
    }
    let mut resp = Vec::new();
    if up.read_to_end(&mut resp).is_err() {
        return false;
    }
    let Some(end) = find(&resp, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&resp[..end]).to_string();
    let Some((status_line, headers)) = parse_head(&head) else {
        return false;
    };
    let body = &resp[end + 4..];
    let status = status_line.split_once(' ').map_or("502 Bad", |(_, s)| s);
    let mut out = format!("HTTP/1.1 {status}\r\n");
    let mut head_length = None;
    for (k, v) in &headers {
        let k_l = k.to_ascii_lowercase();
        if k_l == "content-length" {
            head_length = Some(v.clone());
        }
        if [
            "connection",
            "content-length",
            "transfer-encoding",
            "keep-alive",
        ]
        .contains(&k_l.as_str())
        {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    let length = if req.method == "HEAD" {
        head_length.unwrap_or_else(|| "0".into())
    } else {
        body.len().to_string()
    };
    out.push_str(&format!("Content-Length: {length}\r\n\r\n"));
    if client.write_all(out.as_bytes()).is_err() {
        return false;
    }
    if req.method == "HEAD" {
        return true;
    }
    match cut_after {
        Some(n) => {
            let _ = client.write_all(&body[..n.min(body.len())]);
            let _ = client.flush();
            let _ = client.shutdown(Shutdown::Both);
            false
        }
        None => client.write_all(body).is_ok(),
    }
}
