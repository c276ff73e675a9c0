//! What the registry refuses, and what it leaves behind when clients misbehave.

mod common;

use std::io::Write as _;
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use image::{media, Digest};

fn blob_files(reg: &Reg) -> usize {
    std::fs::read_dir(reg.root().join("blobs/sha256"))
        .unwrap()
        .count()
}

#[test]
fn digest_mismatch_stores_nothing() {
    let reg = start();
    let wrong = Digest::sha256_of(b"something else");
    let r = curl(&[
        "-X",
        "POST",
        "--data-binary",
        "payload",
        &reg.url(&format!("/v2/a/blobs/uploads/?digest={wrong}")),
    ]);
    assert_eq!((r.status, r.error_code().as_str()), (400, "DIGEST_INVALID"));
    let r = curl(&["-X", "POST", &reg.url("/v2/a/blobs/uploads/")]);
    let loc = r.header("Location").unwrap().to_string();
    let r = curl(&[
        "-X",
        "PUT",
        "--data-binary",
        "payload",
        &reg.url(&format!("{loc}?digest={wrong}")),
    ]);
    assert_eq!((r.status, r.error_code().as_str()), (400, "DIGEST_INVALID"));
    assert_eq!(blob_files(&reg), 0);
    assert_eq!(
        curl(&["-I", &reg.url(&format!("/v2/a/blobs/{wrong}"))]).status,
        404
    );
    let r = curl(&["-X", "PUT", &reg.url(&format!("{loc}?digest=sha256:xyz"))]);
    assert_ne!(r.status, 201);
    let r = curl(&[
        "-X",
        "POST",
        "--data-binary",
        "x",
        &reg.url("/v2/a/blobs/uploads/?digest=md5:00"),
    ]);
    assert_eq!((r.status, r.error_code().as_str()), (400, "DIGEST_INVALID"));
}

#[test]
fn bad_manifests() {
    let reg = start_with(|c| c.max_manifest_bytes = 2000);
    let c = client(reg.dir.path());
    let cfg = push_blob(&c, &reg.host, "m", b"{}");
    let missing = Digest::sha256_of(b"missing layer");
    let m = manifest_json((&cfg, 2), &[(missing.clone(), 13)], None, None);
    let put = |body: &str, ct: &str, reference: &str| {
        curl(&[
            "-X",
            "PUT",
            "-H",
            &format!("Content-Type: {ct}"),
            "--data-binary",
            body,
            &reg.url(&format!("/v2/m/manifests/{reference}")),
        ])
    };
    let r = put(std::str::from_utf8(&m).unwrap(), media::OCI_MANIFEST, "v1");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "MANIFEST_BLOB_UNKNOWN")
    );
    assert_eq!(r.json()["errors"][0]["detail"]["digest"], missing.as_str());
    // The same blob in another repository does not count.
    push_blob(&c, &reg.host, "other", b"missing layer");
    let r = put(std::str::from_utf8(&m).unwrap(), media::OCI_MANIFEST, "v1");
    assert_eq!(r.error_code(), "MANIFEST_BLOB_UNKNOWN");
    c.mount_blob(&reg.host, "m", "other", &missing).unwrap();
    let r = put(std::str::from_utf8(&m).unwrap(), media::OCI_MANIFEST, "v1");
    assert_eq!(r.status, 201);

    let r = put("{not json", media::OCI_MANIFEST, "v2");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "MANIFEST_INVALID")
    );
    let r = put(r#"{"schemaVersion":2}"#, media::OCI_MANIFEST, "v2");
    assert_eq!(r.error_code(), "MANIFEST_INVALID");
    let r = put(
        std::str::from_utf8(&m).unwrap(),
        media::DOCKER_MANIFEST,
        "v2",
    );
    assert_eq!(
        r.error_code(),
        "MANIFEST_INVALID",
        "mediaType disagrees with Content-Type"
    );
    let r = put(std::str::from_utf8(&m).unwrap(), "text/plain", "v2");
    assert_eq!(r.error_code(), "MANIFEST_INVALID");
    let r = put(
        std::str::from_utf8(&m).unwrap(),
        media::OCI_MANIFEST,
        &Digest::sha256_of(b"x").to_string(),
    );
    assert_eq!(r.error_code(), "DIGEST_INVALID");
    let r = put(
        std::str::from_utf8(&m).unwrap(),
        media::OCI_MANIFEST,
        "bad/tag",
    );
    assert_eq!(r.status, 404);
    let big = format!("{{\"schemaVersion\":2,\"pad\":\"{}\"}}", "x".repeat(3000));
    let r = put(&big, media::OCI_MANIFEST, "v3");
    assert_eq!(r.status, 413);
    assert!(c.fetch_manifest(&reg.host, "m", "v2").is_err());
    assert!(c.fetch_manifest(&reg.host, "m", "v3").is_err());
}

#[test]
fn invalid_names() {
    let reg = start();
    for path in [
        "/v2/a/../b/tags/list",
        "/v2/A/tags/list",
        "/v2/a__-b/manifests/x",
        "/v2/a//b/blobs/uploads/",
    ] {
        let r = curl(&[
            "--path-as-is",
            "-X",
            if path.ends_with('/') { "POST" } else { "GET" },
            &reg.url(path),
        ]);
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (400, "NAME_INVALID"),
            "{path}"
        );
    }
    let long = format!("/v2/{}/tags/list", "a".repeat(256));
    assert_eq!(curl(&[&reg.url(&long)]).error_code(), "NAME_INVALID");
}

#[test]
fn disconnect_mid_upload() {
    let reg = start();
    let data = random_bytes(1 << 20, 5);
    let d = Digest::sha256_of(&data);
    // A session's chunk cut short: nothing visible, the session can be resumed or cancelled.
    let r = curl(&["-X", "POST", &reg.url("/v2/cut/blobs/uploads/")]);
    let loc = r.header("Location").unwrap().to_string();
    let mut s = TcpStream::connect(&reg.host).unwrap();
    write!(s, "PATCH {loc} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n", reg.host, data.len()).unwrap();
    s.write_all(&data[..100_000]).unwrap();
    drop(s);
    // Monolithic upload cut short: its session disappears with it.
    let mut s = TcpStream::connect(&reg.host).unwrap();
    write!(
        s,
        "POST /v2/cut/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
        reg.host,
        data.len()
    )
    .unwrap();
    s.write_all(&data[..200_000]).unwrap();
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        curl(&["-I", &reg.url(&format!("/v2/cut/blobs/{d}"))]).status,
        404
    );
    assert_eq!(blob_files(&reg), 0);
    let r = curl(&[&reg.url(&loc)]);
    assert_eq!(r.status, 204);
    let sessions: Vec<_> = std::fs::read_dir(reg.root().join("uploads"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    // Resume from where the server got to.
    let have: usize = r
        .header("Range")
        .unwrap()
        .split('-')
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        + 1;
    assert!(have <= 100_000);
    let f = reg.dir.path().join("rest");
    std::fs::write(&f, &data[have..]).unwrap();
    let r = curl(&[
        "-X",
        "PUT",
        "-H",
        &format!("Content-Range: {have}-{}", data.len() - 1),
        "--data-binary",
        &format!("@{}", f.display()),
        &reg.url(&format!("{loc}?digest={d}")),
    ]);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(curl(&[&reg.url(&format!("/v2/cut/blobs/{d}"))]).body, data);
    assert_eq!(
        std::fs::read_dir(reg.root().join("uploads"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn read_only() {
    let reg = start();
    let c = client(reg.dir.path());
    let p = push_image(&c, &reg.host, "ro", "v1", 2, 1);
    let root = reg.root();
    drop(reg.server);
    let dir = reg.dir;
    let ro = start_with(|cfg| {
        cfg.root = root.clone();
        cfg.read_only = true;
    });
    let c = client(dir.path());
    verify_pull(&c, &ro.host, "ro", "v1", &p);
    let r = curl(&["-X", "POST", &ro.url("/v2/ro/blobs/uploads/")]);
    assert_eq!((r.status, r.error_code().as_str()), (405, "UNSUPPORTED"));
    let r = curl(&["-X", "DELETE", &ro.url("/v2/ro/manifests/v1")]);
    assert_eq!(r.status, 405);
    let r = curl(&[
        "-X",
        "PUT",
        "-H",
        &format!("Content-Type: {}", media::OCI_MANIFEST),
        "--data-binary",
        "{}",
        &ro.url("/v2/ro/manifests/v2"),
    ]);
    assert_eq!(r.status, 405);
    let r = curl(&["-X", "OPTIONS", &ro.url("/v2/ro/manifests/v1")]);
    assert_eq!(r.status, 405);
}

#[test]
fn upload_size_limit() {
    let reg = start_with(|c| c.max_upload_bytes = Some(1000));
    let small = b"small".to_vec();
    let c = client(reg.dir.path());
    push_blob(&c, &reg.host, "lim", &small);
    let big = random_bytes(5000, 1);
    let d = Digest::sha256_of(&big);
    let err = c
        .push_blob(&reg.host, "lim", &d, big.len() as u64, &big[..])
        .unwrap_err();
    assert!(
        err.to_string().contains("413") || err.to_string().contains("SIZE_INVALID"),
        "{err}"
    );
    assert!(!c.blob_exists(&reg.host, "lim", &d).unwrap());
}
