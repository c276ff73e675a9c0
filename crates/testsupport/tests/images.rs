//! The image fixtures make valid OCI layouts, and skopeo pushes them to a real registry without changing
//! a byte: the registry serves every manifest under the digest `Written` reports.

use std::io::Read;
use std::process::Command;

use berth_testsupport::images::*;
use berth_testsupport::registry::Registry;
use serde_json::Value;

const ACCEPT: &str = "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// GET /v2/REPO/manifests/REFERENCE: (status, Content-Type, Docker-Content-Digest, body).
fn get_manifest(addr: &str, repo: &str, reference: &str) -> (u16, String, String, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-H", ACCEPT])
        .arg(format!("http://{addr}/v2/{repo}/manifests/{reference}"))
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl failed: {:?}", out);
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    (
        status,
        header("Content-Type"),
        header("Docker-Content-Digest"),
        body,
    )
}

fn blob_status(addr: &str, repo: &str, digest: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-I", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{addr}/v2/{repo}/blobs/{digest}"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The registry serves `tag` and the manifest's digest under the tag is `w.manifest_digest`, with the
/// layout's exact bytes; the config and every layer blob are there.
fn assert_pushed(layout: &Layout, reg: &Registry, repo: &str, tag: &str, w: &Written) {
    let (status, ct, dcd, body) = get_manifest(&reg.addr, repo, tag);
    assert_eq!(
        status,
        200,
        "{repo}:{tag}: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        sha256_digest(&body),
        w.manifest_digest,
        "{repo}:{tag} rewritten"
    );
    assert_eq!(dcd, w.manifest_digest);
    assert_eq!(body, layout.blob(&w.manifest_digest));
    let m: Value = serde_json::from_slice(&body).expect("manifest JSON");
    assert_eq!(ct, m["mediaType"].as_str().expect("mediaType"));
    assert_eq!(m["config"]["digest"], w.config_digest.as_str());
    let layers: Vec<&str> = m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest"))
        .collect();
    assert_eq!(layers, w.layer_digests);
    for d in std::iter::once(&w.config_digest).chain(&w.layer_digests) {
        assert_eq!(blob_status(&reg.addr, repo, d), "200", "blob {d} of {repo}");
    }
}

fn skopeo_inspect_raw(addr: &str, image: &str) -> Vec<u8> {
    let out = skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{addr}/{image}"))
        .output()
        .expect("skopeo inspect");
    assert!(
        out.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn busybox_image_is_a_valid_layout_and_pushes_unchanged() {
    let layout = Layout::new();
    let w = layout.add(
        "latest",
        ImageBuilder::new()
            .layer(Layer::busybox())
            .cmd(["sh"])
            .env(["PATH=/bin"])
            .workdir("/tmp")
            .label("a", "b")
            .volume("/data")
            .stop_signal("SIGINT"),
    );
    assert_eq!(w.layer_digests.len(), 1);
    // The config says what was asked for.
    let cfg: Value = serde_json::from_slice(&layout.blob(&w.config_digest)).unwrap();
    assert_eq!(cfg["architecture"], "amd64");
    assert_eq!(cfg["os"], "linux");
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(cfg["config"]["StopSignal"], "SIGINT");
    assert_eq!(cfg["rootfs"]["diff_ids"][0], w.diff_ids[0].as_str());
    assert_eq!(cfg["history"].as_array().unwrap().len(), 1);

    // umoci accepts the layout and unpacks bin/busybox and the links.
    let out = tempfile::tempdir().unwrap();
    let bundle = out.path().join("bundle");
    let o = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", layout.dir.display()))
        .arg(&bundle)
        .output()
        .expect("umoci");
    assert!(
        o.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rootfs = bundle.join("rootfs");
    assert!(rootfs.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_link(rootfs.join("bin/sh")).unwrap(),
        std::path::Path::new("busybox")
    );
    use std::os::unix::fs::PermissionsExt;
    let tmp_mode = std::fs::metadata(rootfs.join("tmp")).unwrap().permissions();
    assert_eq!(tmp_mode.mode() & 0o7777, 0o1777);

    let reg = Registry::start();
    layout.push("latest", &reg.addr, "busybox:latest");
    assert_pushed(&layout, &reg, "busybox", "latest", &w);
    assert_eq!(
        sha256_digest(&skopeo_inspect_raw(&reg.addr, "busybox:latest")),
        w.manifest_digest
    );

    // docker-archive: a tar with manifest.json.
    let archive = out.path().join("docker.tar");
    layout.to_docker_archive("latest", &archive, "busybox:latest");
    let mut names = Vec::new();
    let mut manifest = Vec::new();
    let mut ar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().to_string_lossy().into_owned();
        if p == "manifest.json" {
            e.read_to_end(&mut manifest).unwrap();
        }
        names.push(p);
    }
    let m: Value = serde_json::from_slice(&manifest).expect("manifest.json in docker archive");
    // skopeo writes the name normalized: docker.io/library/busybox:latest.
    let tag = m[0]["RepoTags"][0].as_str().unwrap_or_default();
    assert!(tag.ends_with("/busybox:latest"), "{m}");
    assert!(names.iter().any(|n| n.ends_with(".tar")), "{names:?}");

    // oci archive: the layout directory as a tar; skopeo reads it back to the same manifest.
    let oci = out.path().join("oci.tar");
    layout.to_oci_archive("latest", &oci);
    let o = skopeo()
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}:latest", oci.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sha256_digest(&o.stdout), w.manifest_digest);
}

#[test]
fn same_image_same_digests() {
    let build = || {
        let l = Layout::new();
        let w = l.add(
            "t",
            ImageBuilder::new()
                .layer(Layer::busybox())
                .layer(Layer::new(
                    vec![Entry::file("a", "x", 0o644)],
                    Compression::Zstd,
                ))
                .cmd(["sh"]),
        );
        (l, w)
    };
    let (_a, wa) = build();
    let (_b, wb) = build();
    assert_eq!(wa, wb);
}

#[test]
fn docker_media_types_push_unchanged() {
    let layout = Layout::new();
    let w = layout.add(
        "v1",
        ImageBuilder::new()
            .layer(Layer::busybox())
            .layer(Layer::new(
                vec![Entry::file("etc/hello", "hi\n", 0o644)],
                Compression::None,
            ))
            .docker_media_types()
            .entrypoint(["/bin/sh", "-c"])
            .cmd(["echo hi"]),
    );
    let m: Value = serde_json::from_slice(&layout.blob(&w.manifest_digest)).unwrap();
    assert_eq!(m["mediaType"], DOCKER_MANIFEST);
    assert_eq!(m["config"]["mediaType"], DOCKER_CONFIG);
    assert_eq!(m["layers"][0]["mediaType"], DOCKER_LAYER_GZIP);
    assert_eq!(m["layers"][1]["mediaType"], DOCKER_LAYER);
    let reg = Registry::start();
    layout.push("v1", &reg.addr, "dockerish:v1");
    assert_pushed(&layout, &reg, "dockerish", "v1", &w);
}

#[test]
fn uncompressed_oci_layer_pushes_unchanged() {
    let layout = Layout::new();
    let w = layout.add(
        "raw",
        ImageBuilder::new()
            .layer(Layer::busybox())
            .layer(Layer::new(
                vec![Entry::file("plain", "plain\n", 0o644)],
                Compression::None,
            )),
    );
    let reg = Registry::start();
    layout.push("raw", &reg.addr, "plain:raw");
    assert_pushed(&layout, &reg, "plain", "raw", &w);
}

fn check_index(layout: &Layout, reg: &Registry, repo: &str, digest: &str, written: &[Written]) {
    let (status, ct, dcd, body) = get_manifest(&reg.addr, repo, "multi");
    assert_eq!(status, 200);
    assert_eq!(dcd, digest);
    assert_eq!(sha256_digest(&body), digest);
    assert_eq!(body, layout.blob(digest));
    let idx: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ct, idx["mediaType"].as_str().unwrap());
    assert_eq!(
        sha256_digest(&skopeo_inspect_raw(&reg.addr, &format!("{repo}:multi"))),
        digest
    );
    for w in written {
        // Each platform's manifest by digest, and its blobs.
        let (status, _, _, body) = get_manifest(&reg.addr, repo, &w.manifest_digest);
        assert_eq!(status, 200, "{}", w.manifest_digest);
        assert_eq!(sha256_digest(&body), w.manifest_digest);
        for d in std::iter::once(&w.config_digest).chain(&w.layer_digests) {
            assert_eq!(blob_status(&reg.addr, repo, d), "200");
        }
    }
}

fn platform_images() -> Vec<ImageBuilder> {
    [("amd64", None), ("arm64", Some("v8")), ("arm", Some("v7"))]
        .into_iter()
        .map(|(a, v)| {
            ImageBuilder::new()
                .arch(a, v)
                .layer(Layer::new(
                    vec![Entry::file("arch", a, 0o644)],
                    Compression::Gzip,
                ))
                .cmd(["/arch"])
        })
        .collect()
}

#[test]
fn multi_platform_index_pushes_unchanged() {
    let layout = Layout::new();
    let (digest, written) = layout.add_index("multi", platform_images());
    assert_eq!(written.len(), 3);
    let idx: Value = serde_json::from_slice(&layout.blob(&digest)).unwrap();
    assert_eq!(idx["mediaType"], OCI_INDEX);
    assert_eq!(idx["manifests"][2]["platform"]["variant"], "v7");
    let cfg: Value = serde_json::from_slice(&layout.blob(&written[2].config_digest)).unwrap();
    assert_eq!(cfg["architecture"], "arm");
    assert_eq!(cfg["variant"], "v7");
    let reg = Registry::start();
    layout.push("multi", &reg.addr, "multi:multi");
    check_index(&layout, &reg, "multi", &digest, &written);

    // The same with Docker media types: a manifest list.
    let dl = Layout::new();
    let images = platform_images()
        .into_iter()
        .map(|i| i.docker_media_types())
        .collect();
    let (digest, written) = dl.add_index("multi", images);
    let idx: Value = serde_json::from_slice(&dl.blob(&digest)).unwrap();
    assert_eq!(idx["mediaType"], DOCKER_MANIFEST_LIST);
    dl.push("multi", &reg.addr, "dlist:multi");
    check_index(&dl, &reg, "dlist", &digest, &written);

    // Its OCI archive: the layout files and the 1 + 3 * 3 blobs the list reaches, nothing else; skopeo
    // reads the list back (untagged: one descriptor).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("list.tar");
    dl.add("other", ImageBuilder::new().layer(Layer::busybox()));
    dl.to_oci_archive("multi", &file);
    let mut ar = tar::Archive::new(std::fs::File::open(&file).unwrap());
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        &names[..4],
        ["oci-layout", "index.json", "blobs/", "blobs/sha256/"]
    );
    assert_eq!(names.len(), 4 + 10, "{names:?}");
    assert!(names.contains(&format!("blobs/sha256/{}", &digest[7..])));
    let o = skopeo()
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", file.display()))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sha256_digest(&o.stdout), digest);
}

#[test]
fn zstd_layer_pushes_unchanged() {
    let layout = Layout::new();
    let w = layout.add(
        "z",
        ImageBuilder::new()
            .layer(Layer {
                compression: Compression::Zstd,
                ..Layer::busybox()
            })
            .layer(Layer::new(
                vec![Entry::file("z", "zstd\n", 0o644)],
                Compression::Zstd,
            )),
    );
    let m: Value = serde_json::from_slice(&layout.blob(&w.manifest_digest)).unwrap();
    assert_eq!(m["layers"][0]["mediaType"], OCI_LAYER_ZSTD);
    let blob = layout.blob(&w.layer_digests[1]);
    assert_eq!(&blob[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
    let reg = Registry::start();
    layout.push("z", &reg.addr, "zstd:z");
    assert_pushed(&layout, &reg, "zstd", "z", &w);
}

#[test]
fn special_entries_and_unknown_media_type_push_unchanged() {
    let upper = Layer::new(
        vec![
            Entry::whiteout("etc/gone"),
            Entry::opaque("root"),
            Entry::dir("data", 0o755),
            Entry::file("data/a", "a\n", 0o600),
            Entry::hardlink("data/b", "data/a"),
            Entry::FileOwned {
                path: "data/owned".into(),
                data: b"o\n".to_vec(),
                mode: 0o4755,
                uid: 1000,
                gid: 3_000_000,
                mtime: 1234,
                xattrs: vec![("user.test".into(), b"value".to_vec())],
            },
            Entry::CharDev {
                path: "dev/null".into(),
                major: 1,
                minor: 3,
            },
            Entry::Fifo {
                path: "data/fifo".into(),
            },
            Entry::symlink("data/link", "/etc/passwd"),
        ],
        Compression::Gzip,
    );
    // What a reader sees in the tar.
    let tar = upper.tar();
    let mut ar = tar::Archive::new(&tar[..]);
    let mut seen = Vec::new();
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        if path == "data/owned" {
            let h = e.header();
            assert_eq!(h.uid().unwrap(), 1000);
            assert_eq!(h.mtime().unwrap(), 1234);
            let pax: Vec<(String, Vec<u8>)> = e
                .pax_extensions()
                .unwrap()
                .expect("PAX records")
                .map(|x| {
                    let x = x.unwrap();
                    (x.key().unwrap().to_string(), x.value_bytes().to_vec())
                })
                .collect();
            assert!(pax.contains(&("SCHILY.xattr.user.test".into(), b"value".to_vec())));
            assert!(pax.contains(&("gid".into(), b"3000000".to_vec())));
        }
        if path == "data/b" {
            assert_eq!(e.header().entry_type(), tar::EntryType::Link);
            assert_eq!(e.link_name().unwrap().unwrap().to_str(), Some("data/a"));
        }
        if path == "dev/null" {
            assert_eq!(e.header().device_major().unwrap(), Some(1));
        }
        seen.push(path);
    }
    assert!(seen.contains(&"etc/.wh.gone".to_string()), "{seen:?}");
    assert!(seen.contains(&"root/.wh..wh..opq".to_string()), "{seen:?}");

    let layout = Layout::new();
    let w = layout.add(
        "special",
        ImageBuilder::new().layer(Layer::busybox()).layer(upper),
    );
    let reg = Registry::start();
    layout.push("special", &reg.addr, "special:special");
    assert_pushed(&layout, &reg, "special", "special", &w);

    // A layer media type nobody knows still goes through byte for byte.
    let w = layout.add(
        "unknown",
        ImageBuilder::new()
            .layer(Layer::busybox())
            .layer_media_type(0, "application/vnd.example.unknown"),
    );
    layout.push("unknown", &reg.addr, "special:unknown");
    assert_pushed(&layout, &reg, "special", "unknown", &w);
}

#[test]
fn deep_image_pushes_unchanged() {
    let layout = Layout::new();
    let w = layout.add("deep", deep_image(100));
    assert_eq!(w.layer_digests.len(), 101);
    assert_eq!(w.diff_ids.len(), 101);
    let reg = Registry::start();
    layout.push("deep", &reg.addr, "deep:deep");
    assert_pushed(&layout, &reg, "deep", "deep", &w);
}

#[test]
fn raw_names_are_written_as_they_are_and_push_unchanged() {
    let evil = Layer::new(
        vec![
            Entry::RawName {
                name: b"../../etc/x".to_vec(),
                data: b"evil\n".to_vec(),
            },
            Entry::RawName {
                name: b"/etc/y".to_vec(),
                data: b"abs\n".to_vec(),
            },
            Entry::RawSymlink {
                name: b"escape".to_vec(),
                target: b"../../../../".to_vec(),
            },
        ],
        Compression::Gzip,
    );
    let tar = evil.tar();
    assert_eq!(&tar[..11], b"../../etc/x");
    assert_eq!(header_checksum(&tar[..512]), tar_checksum(&tar[..512]));
    let layout = Layout::new();
    let w = layout.add("evil", ImageBuilder::new().layer(evil));
    let reg = Registry::start();
    layout.push("evil", &reg.addr, "evil:evil");
    assert_pushed(&layout, &reg, "evil", "evil", &w);
}

/// The header checksum computed over the bytes (the checksum field counting as spaces).
fn tar_checksum(h: &[u8]) -> u32 {
    h.iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                *b as u32
            }
        })
        .sum()
}

/// The checksum the header stores (octal).
fn header_checksum(h: &[u8]) -> u32 {
    let field = String::from_utf8_lossy(&h[148..156]);
    u32::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8).expect("octal")
}
