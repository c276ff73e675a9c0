//! Garbage collection: what goes, what stays, and pushes racing collections.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use image::Digest;

fn age(reg: &Reg, d: &Digest, by: Duration) {
    let p = reg.root().join("blobs/sha256").join(d.hex());
    let f = std::fs::File::open(p).unwrap();
    f.set_modified(SystemTime::now() - by).unwrap();
}

#[test]
fn sweeps_only_old_unreferenced_blobs() {
    let reg = start();
    let c = client(reg.dir.path());
    let p = push_image(&c, &reg.host, "g", "v1", 1, 2);
    let untagged = push_image(&c, &reg.host, "g", "v2", 2, 1);
    curl(&["-X", "DELETE", &reg.url("/v2/g/manifests/v2")]);
    let old = push_blob(&c, &reg.host, "g", b"old and unreferenced");
    let young = push_blob(&c, &reg.host, "g", b"young and unreferenced");
    let deleted = push_image(&c, &reg.host, "g", "v3", 3, 1);
    curl(&[
        "-X",
        "DELETE",
        &reg.url(&format!("/v2/g/manifests/{}", deleted.digest)),
    ]);
    let hour = Duration::from_secs(3600);
    for d in [
        &old,
        &p.digest,
        &p.config.0,
        &p.layers[0].0,
        &p.layers[1].0,
        &untagged.digest,
        &untagged.layers[0].0,
        &deleted.digest,
        &deleted.layers[0].0,
    ] {
        age(&reg, d, hour);
    }
    let stats = registry::gc(&reg.root()).unwrap();
    assert_eq!(stats.blobs_removed, 3, "{stats:?}");
    assert!(!c.blob_exists(&reg.host, "g", &old).unwrap());
    assert!(!c.blob_exists(&reg.host, "g", &deleted.layers[0].0).unwrap());
    assert!(c.blob_exists(&reg.host, "g", &young).unwrap());
    verify_pull(&c, &reg.host, "g", "v1", &p);
    // Untagged manifests keep their blobs.
    verify_pull(&c, &reg.host, "g", untagged.digest.as_str(), &untagged);
    assert_eq!(registry::gc(&reg.root()).unwrap().blobs_removed, 0);
    assert!(stats.links_removed >= 2, "{stats:?}");
}

#[test]
fn stale_uploads_are_collected() {
    let reg = start();
    let r = curl(&["-X", "POST", &reg.url("/v2/s/blobs/uploads/")]);
    let uuid = r.header("Docker-Upload-UUID").unwrap().to_string();
    let data = reg.root().join("uploads").join(&uuid).join("data");
    std::fs::File::open(&data)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(2 * 86400))
        .unwrap();
    let stats = registry::gc(&reg.root()).unwrap();
    assert_eq!(stats.uploads_removed, 1);
    assert_eq!(curl(&[&reg.url(r.header("Location").unwrap())]).status, 404);
}

#[test]
fn gc_racing_pushes_never_breaks_a_push() {
    let reg = start_with(|c| {
        c.gc_interval = Some(Duration::from_millis(20));
        c.gc_grace = Duration::from_secs(5);
    });
    let c = client(reg.dir.path());
    // A base layer every image shares, old enough for GC to consider.
    let base = random_bytes(50_000, 99);
    let base_d = push_blob(&c, &reg.host, "race/base", &base);
    let cfg = push_blob(&c, &reg.host, "race/base", b"{}");
    let m = manifest_json((&cfg, 2), &[(base_d.clone(), base.len())], None, None);
    c.put_manifest(
        &reg.host,
        "race/base",
        "base",
        image::media::OCI_MANIFEST,
        &m,
    )
    .unwrap();
    age(&reg, &base_d, Duration::from_secs(3600));
    age(&reg, &cfg, Duration::from_secs(3600));
    let stop = Arc::new(AtomicBool::new(false));
    let host = reg.host.clone();
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let c = c.clone();
            let host = host.clone();
            let stop = stop.clone();
            let base = base.clone();
            std::thread::spawn(move || {
                let mut done = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let repo = format!("race/r{t}");
                    // The shared blob by mount (no upload), as a client that found it would.
                    assert!(c
                        .mount_blob(&host, &repo, "race/base", &Digest::sha256_of(&base))
                        .unwrap());
                    let p = push_image(&c, &host, &repo, &format!("t{i}"), t * 1000 + i, 2);
                    let mut layers = vec![(Digest::sha256_of(&base), base.len())];
                    layers.extend(p.layers.iter().map(|(d, b)| (d.clone(), b.len())));
                    let m = manifest_json((&p.config.0, p.config.1.len()), &layers, None, None);
                    c.put_manifest(
                        &host,
                        &repo,
                        &format!("b{i}"),
                        image::media::OCI_MANIFEST,
                        &m,
                    )
                    .unwrap();
                    done.push((repo, format!("t{i}"), p));
                    i += 1;
                }
                done
            })
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(3);
    let mut offline = 0;
    while Instant::now() < until {
        registry::gc_with_grace(&reg.root(), Duration::from_secs(5)).unwrap();
        offline += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let mut pushed = 0;
    for w in workers {
        for (repo, tag, p) in w.join().unwrap() {
            verify_pull(&c, &reg.host, &repo, &tag, &p);
            pushed += 1;
        }
    }
    assert!(
        pushed > 4 && offline > 3,
        "{pushed} images, {offline} collections"
    );
    // The base blob stays: images reference it.
    assert!(c.blob_exists(&reg.host, "race/r0", &base_d).unwrap());
}
