//! The distribution API end to end: the berth client, curl.

mod common;

use common::*;
use image::{media, Digest};

#[test]
fn push_pull_head_range() {
    let reg = start();
    let c = client(reg.dir.path());
    let p = push_image(&c, &reg.host, "x/y", "v1", 1, 2);
    verify_pull(&c, &reg.host, "x/y", "v1", &p);
    verify_pull(&c, &reg.host, "x/y", p.digest.as_str(), &p);
    assert!(c.blob_exists(&reg.host, "x/y", &p.layers[0].0).unwrap());
    assert!(!c.blob_exists(&reg.host, "other", &p.layers[0].0).unwrap());

    let (ld, data) = &p.layers[0];
    let url = reg.url(&format!("/v2/x/y/blobs/{ld}"));
    let r = curl(&["-H", "Range: bytes=10-19", &url]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, data[10..20]);
    assert_eq!(
        r.header("Content-Range"),
        Some(format!("bytes 10-19/{}", data.len()).as_str())
    );
    let r = curl(&["-H", "Range: bytes=100-", &url]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, data[100..]);
    let r = curl(&["-H", &format!("Range: bytes={}-", data.len()), &url]);
    assert_eq!(r.status, 416);

    let r = curl(&["-I", &url]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("Content-Length"),
        Some(data.len().to_string().as_str())
    );
    assert_eq!(r.header("Docker-Content-Digest"), Some(ld.as_str()));

    let r = curl(&["-I", &reg.url("/v2/x/y/manifests/v1")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some(media::OCI_MANIFEST));
    assert_eq!(r.header("Docker-Content-Digest"), Some(p.digest.as_str()));
    assert_eq!(
        r.header("Content-Length"),
        Some(p.manifest.len().to_string().as_str())
    );
    let r = curl(&[&reg.url("/v2/")]);
    assert_eq!(r.status, 200);
    let r = curl(&[&reg.url("/v2/x/y/manifests/nope")]);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    let r = curl(&[&reg.url(&format!("/v2/x/y/blobs/{}", Digest::sha256_of(b"nope")))]);
    assert_eq!((r.status, r.error_code().as_str()), (404, "BLOB_UNKNOWN"));
}

#[test]
fn chunked_upload_and_wrong_offset() {
    let reg = start();
    let data = random_bytes(300_000, 7);
    let d = Digest::sha256_of(&data);
    let r = curl(&["-X", "POST", &reg.url("/v2/chunky/blobs/uploads/")]);
    assert_eq!(r.status, 202);
    assert!(r.header("Docker-Upload-UUID").is_some());
    assert_eq!(r.header("Range"), Some("0-0"));
    let mut loc = r.header("Location").unwrap().to_string();
    let f = reg.dir.path().join("chunk");
    let mut off = 0;
    for part in data.chunks(100_000) {
        std::fs::write(&f, part).unwrap();
        let range = format!("Content-Range: {}-{}", off, off + part.len() - 1);
        let r = curl(&[
            "-X",
            "PATCH",
            "-H",
            &range,
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &format!("@{}", f.display()),
            &reg.url(&loc),
        ]);
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        off += part.len();
        assert_eq!(r.header("Range"), Some(format!("0-{}", off - 1).as_str()));
        loc = r.header("Location").unwrap().to_string();
    }
    // A chunk at the wrong offset.
    let r = curl(&[
        "-X",
        "PATCH",
        "-H",
        "Content-Range: 5-9",
        "--data-binary",
        "hello",
        &reg.url(&loc),
    ]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("Range"), Some(format!("0-{}", off - 1).as_str()));
    let r = curl(&[&reg.url(&loc)]);
    assert_eq!(r.status, 204);
    assert_eq!(r.header("Range"), Some(format!("0-{}", off - 1).as_str()));
    let r = curl(&["-X", "PUT", &reg.url(&format!("{loc}?digest={d}"))]);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.header("Location"),
        Some(format!("/v2/chunky/blobs/{d}").as_str())
    );
    let r = curl(&[&reg.url(&format!("/v2/chunky/blobs/{d}"))]);
    assert_eq!(r.body, data);
    // The session is gone.
    let r = curl(&[&reg.url(&loc)]);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "BLOB_UPLOAD_UNKNOWN")
    );

    // Final chunk with the PUT; and cancel.
    let r = curl(&["-X", "POST", &reg.url("/v2/chunky/blobs/uploads/")]);
    let loc = r.header("Location").unwrap().to_string();
    let r = curl(&["-X", "PATCH", "--data-binary", "abc", &reg.url(&loc)]);
    assert_eq!(r.status, 202);
    let d2 = Digest::sha256_of(b"abcdef");
    let r = curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Range: 3-5",
        "--data-binary",
        "def",
        &reg.url(&format!("{loc}?digest={d2}")),
    ]);
    assert_eq!(r.status, 201);
    let r = curl(&["-X", "POST", &reg.url("/v2/chunky/blobs/uploads/")]);
    let loc = r.header("Location").unwrap().to_string();
    assert_eq!(curl(&["-X", "DELETE", &reg.url(&loc)]).status, 204);
    assert_eq!(curl(&[&reg.url(&loc)]).status, 404);
}

#[test]
fn monolithic_post_and_mount() {
    let reg = start();
    let data = b"monolithic blob".to_vec();
    let d = Digest::sha256_of(&data);
    let r = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        "monolithic blob",
        &reg.url(&format!("/v2/a/blobs/uploads/?digest={d}")),
    ]);
    assert_eq!(r.status, 201);
    assert_eq!(r.header("Docker-Content-Digest"), Some(d.as_str()));
    let c = client(reg.dir.path());
    assert!(c.blob_exists(&reg.host, "a", &d).unwrap());
    assert!(!c.blob_exists(&reg.host, "b", &d).unwrap());
    assert!(c.mount_blob(&reg.host, "b", "a", &d).unwrap());
    assert!(c.blob_exists(&reg.host, "b", &d).unwrap());
    // From a repository that does not have it: an ordinary upload session instead.
    let r = curl(&[
        "-X",
        "POST",
        &reg.url(&format!("/v2/c/blobs/uploads/?mount={d}&from=nothere")),
    ]);
    assert_eq!(r.status, 202);
    assert!(!c.mount_blob(&reg.host, "c", "nothere", &d).unwrap());
}

#[test]
fn tags_catalog_pagination() {
    let reg = start();
    let c = client(reg.dir.path());
    let p = push_image(&c, &reg.host, "lib/app", "t0", 3, 1);
    for t in ["t1", "t2", "t3", "t4"] {
        c.put_manifest(&reg.host, "lib/app", t, media::OCI_MANIFEST, &p.manifest)
            .unwrap();
    }
    push_image(&c, &reg.host, "zeta", "latest", 4, 1);
    push_image(&c, &reg.host, "alpha/beta", "latest", 5, 1);
    let r = curl(&[&reg.url("/v2/lib/app/tags/list")]);
    assert_eq!(
        r.json()["tags"],
        serde_json::json!(["t0", "t1", "t2", "t3", "t4"])
    );
    assert_eq!(r.json()["name"], "lib/app");
    let r = curl(&[&reg.url("/v2/lib/app/tags/list?n=2")]);
    assert_eq!(r.json()["tags"], serde_json::json!(["t0", "t1"]));
    assert_eq!(
        r.header("Link"),
        Some("</v2/lib/app/tags/list?n=2&last=t1>; rel=\"next\"")
    );
    let r = curl(&[&reg.url("/v2/lib/app/tags/list?n=2&last=t3")]);
    assert_eq!(r.json()["tags"], serde_json::json!(["t4"]));
    assert_eq!(r.header("Link"), None);
    let r = curl(&[&reg.url("/v2/lib/app/tags/list?n=0")]);
    assert_eq!(r.json()["tags"], serde_json::json!([]));
    let r = curl(&[&reg.url("/v2/none/tags/list")]);
    assert_eq!((r.status, r.error_code().as_str()), (404, "NAME_UNKNOWN"));

    let r = curl(&[&reg.url("/v2/_catalog")]);
    assert_eq!(
        r.json()["repositories"],
        serde_json::json!(["alpha/beta", "lib/app", "zeta"])
    );
    let r = curl(&[&reg.url("/v2/_catalog?n=1&last=alpha/beta")]);
    assert_eq!(r.json()["repositories"], serde_json::json!(["lib/app"]));
    assert!(r.header("Link").unwrap().contains("last=lib/app"));
}

#[test]
fn delete_manifest_and_blob() {
    let reg = start();
    let c = client(reg.dir.path());
    let p = push_image(&c, &reg.host, "del", "v1", 9, 1);
    c.put_manifest(&reg.host, "del", "v2", media::OCI_MANIFEST, &p.manifest)
        .unwrap();
    // A tag only.
    let r = curl(&["-X", "DELETE", &reg.url("/v2/del/manifests/v2")]);
    assert_eq!(r.status, 202);
    assert!(c.fetch_manifest(&reg.host, "del", "v2").is_err());
    assert!(c.fetch_manifest(&reg.host, "del", "v1").is_ok());
    // The manifest: its tags go with it.
    let r = curl(&[
        "-X",
        "DELETE",
        &reg.url(&format!("/v2/del/manifests/{}", p.digest)),
    ]);
    assert_eq!(r.status, 202);
    assert!(c.fetch_manifest(&reg.host, "del", "v1").is_err());
    assert!(c
        .fetch_manifest(&reg.host, "del", p.digest.as_str())
        .is_err());
    let r = curl(&[&reg.url("/v2/del/tags/list")]);
    assert_eq!(r.json()["tags"], serde_json::json!([]));
    let r = curl(&[
        "-X",
        "DELETE",
        &reg.url(&format!("/v2/del/manifests/{}", p.digest)),
    ]);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (404, "MANIFEST_UNKNOWN")
    );
    let ld = &p.layers[0].0;
    let r = curl(&["-X", "DELETE", &reg.url(&format!("/v2/del/blobs/{ld}"))]);
    assert_eq!(r.status, 202);
    assert!(!c.blob_exists(&reg.host, "del", ld).unwrap());
    let r = curl(&["-X", "DELETE", &reg.url(&format!("/v2/del/blobs/{ld}"))]);
    assert_eq!((r.status, r.error_code().as_str()), (404, "BLOB_UNKNOWN"));
}

#[test]
fn referrers() {
    let reg = start();
    let c = client(reg.dir.path());
    let base = push_image(&c, &reg.host, "ref", "v1", 11, 1);
    let empty = push_blob(&c, &reg.host, "ref", b"{}");
    let mut pushed = Vec::new();
    for (i, at) in [
        "application/vnd.example.sbom",
        "application/vnd.example.sig",
    ]
    .iter()
    .enumerate()
    {
        let layer = push_blob(&c, &reg.host, "ref", format!("artifact {i}").as_bytes());
        let m = manifest_json(
            (&empty, 2),
            &[(layer, 10)],
            Some((&base.digest, base.manifest.len())),
            Some(at),
        );
        let d = Digest::sha256_of(&m);
        let r = curl(&[
            "-X",
            "PUT",
            "-H",
            &format!("Content-Type: {}", media::OCI_MANIFEST),
            "--data-binary",
            &String::from_utf8(m).unwrap(),
            &reg.url(&format!("/v2/ref/manifests/{d}")),
        ]);
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("OCI-Subject"), Some(base.digest.as_str()));
        pushed.push(d);
    }
    let r = curl(&[&reg.url(&format!("/v2/ref/referrers/{}", base.digest))]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Content-Type"), Some(media::OCI_INDEX));
    assert_eq!(r.header("OCI-Filters-Applied"), None);
    let ms = r.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(ms.len(), 2);
    let mut ds: Vec<&str> = ms.iter().map(|m| m["digest"].as_str().unwrap()).collect();
    ds.sort();
    let mut want: Vec<&str> = pushed.iter().map(|d| d.as_str()).collect();
    want.sort();
    assert_eq!(ds, want);
    let r = curl(&[&reg.url(&format!(
        "/v2/ref/referrers/{}?artifactType=application/vnd.example.sig",
        base.digest
    ))]);
    assert_eq!(r.header("OCI-Filters-Applied"), Some("artifactType"));
    let ms = r.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(ms.len(), 1);
    assert_eq!(ms[0]["digest"], pushed[1].as_str());
    assert_eq!(ms[0]["artifactType"], "application/vnd.example.sig");
    // Deleting a referrer removes it from the list.
    curl(&[
        "-X",
        "DELETE",
        &reg.url(&format!("/v2/ref/manifests/{}", pushed[0])),
    ]);
    let r = curl(&[&reg.url(&format!("/v2/ref/referrers/{}", base.digest))]);
    assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 1);
    // An unknown subject: an empty index.
    let r = curl(&[&reg.url(&format!("/v2/ref/referrers/{}", Digest::sha256_of(b"x")))]);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["manifests"], serde_json::json!([]));
}

#[test]
fn index_needs_its_children() {
    let reg = start();
    let c = client(reg.dir.path());
    let p = push_image(&c, &reg.host, "ix", "v1", 12, 1);
    let index = |d: &Digest| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_INDEX,
            "manifests": [{"mediaType": media::OCI_MANIFEST, "digest": d, "size": 10,
                            "platform": {"architecture": "amd64", "os": "linux"}}]
        }))
        .unwrap()
    };
    let d = c
        .put_manifest(
            &reg.host,
            "ix",
            "multi",
            media::OCI_INDEX,
            &index(&p.digest),
        )
        .unwrap();
    let m = c.fetch_manifest(&reg.host, "ix", "multi").unwrap();
    assert_eq!((m.digest, m.media_type.as_str()), (d, media::OCI_INDEX));
    let err = c
        .put_manifest(
            &reg.host,
            "ix",
            "bad",
            media::OCI_INDEX,
            &index(&Digest::sha256_of(b"q")),
        )
        .unwrap_err();
    assert!(err.to_string().contains("MANIFEST_BLOB_UNKNOWN"), "{err}");
}

#[test]
fn tls() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipping: no openssl");
        return;
    }
    let reg = start_with(|c| c.tls = Some((cert.clone(), key.clone())));
    let r = curl(&["-k", &format!("https://{}/v2/", reg.host)]);
    assert_eq!(r.status, 200);
    let c = client(tmp.path());
    let p = push_image(&c, &reg.host, "secure", "v1", 4, 1);
    verify_pull(&c, &reg.host, "secure", "v1", &p);
}
