//! 20 clients pushing and pulling distinct and shared blobs (and racing on one tag) for ~5 s.

mod common;

use std::io::Read as _;
use std::time::{Duration, Instant};

use common::*;
use image::{media, Digest};

#[test]
fn twenty_clients() {
    let reg = start();
    let c = client(reg.dir.path());
    let shared: Vec<Vec<u8>> = (0..4).map(|i| random_bytes(200_000, 1000 + i)).collect();
    let until = Instant::now() + Duration::from_secs(5);
    let threads: Vec<_> = (0..20u64)
        .map(|t| {
            let c = c.clone();
            let host = reg.host.clone();
            let shared = shared.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                let repo = format!("load/c{t}");
                while Instant::now() < until {
                    // The same blob pushed by many clients at once.
                    let s = &shared[((t + n) % 4) as usize];
                    let sd = push_blob(&c, &host, &repo, s);
                    let p = push_image(&c, &host, &repo, &format!("v{n}"), t * 100_000 + n, 2);
                    let m = manifest_json(
                        (&p.config.0, p.config.1.len()),
                        &[(sd.clone(), s.len())],
                        None,
                        None,
                    );
                    // Everyone writes the same tag in one repository.
                    for b in [&p.config.1, s] {
                        push_blob(&c, &host, "load/shared", b);
                    }
                    c.put_manifest(&host, "load/shared", "latest", media::OCI_MANIFEST, &m)
                        .unwrap();
                    verify_pull(&c, &host, &repo, &format!("v{n}"), &p);
                    let desc = image::Descriptor {
                        media_type: media::OCI_LAYER.into(),
                        digest: sd.clone(),
                        size: s.len() as u64,
                        urls: None,
                        annotations: None,
                        platform: None,
                        artifact_type: None,
                    };
                    let mut got = Vec::new();
                    c.fetch_blob(&host, &repo, &desc)
                        .unwrap()
                        .read_to_end(&mut got)
                        .unwrap();
                    assert_eq!(&got, s);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(total >= 20, "only {total} rounds");
    // The tag points at one whole manifest; every stored blob matches its name.
    let m = c
        .fetch_manifest(&reg.host, "load/shared", "latest")
        .unwrap();
    assert_eq!(m.digest, Digest::sha256_of(&m.bytes));
    for e in std::fs::read_dir(reg.root().join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let bytes = std::fs::read(e.path()).unwrap();
        assert_eq!(
            Digest::sha256_of(&bytes).hex(),
            e.file_name().to_str().unwrap()
        );
    }
    eprintln!("{total} rounds by 20 clients");
}
