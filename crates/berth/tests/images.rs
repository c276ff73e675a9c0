//! berth's image commands against a real registry (Debian's docker-registry on 127.0.0.1), with images the
//! tests build as OCI layouts and push with skopeo.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use common::*;
use serde_json::Value;

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn pull_lists_inspects_and_is_up_to_date_the_second_time() {
    let reg = Registry::start();
    let w = push(&reg, "test/busybox:1.0", busybox_image().env(["FOO=bar"]));
    let env = Env::host_network();
    let name = format!("{}/test/busybox:1.0", reg.addr);
    let out = env.ok(&["pull", &name]);
    assert!(out.contains("1.0: Pulling from test/busybox"), "{out}");
    assert!(out.contains(": Pull complete"), "{out}");
    assert!(
        out.contains(&format!("Digest: {}", w.manifest_digest)),
        "{out}"
    );
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}")),
        "{out}"
    );
    assert!(out.trim_end().ends_with(&name), "{out}");

    // Blobs are stored verified: manifest, config, layer.
    let blobs = env.blobs();
    for d in [&w.manifest_digest, &w.config_digest, &w.layer_digests[0]] {
        assert!(
            blobs.contains(&d.trim_start_matches("sha256:").to_string()),
            "{d} missing"
        );
    }
    assert!(env.temporaries().is_empty(), "{:?}", env.temporaries());

    let table = env.ok(&["images"]);
    let mut lines = table.lines();
    let header = lines.next().expect("header");
    assert!(header.starts_with("REPOSITORY"), "{table}");
    for col in ["TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(col), "{table}");
    }
    let row = lines.next().expect("a row");
    let short_id = &w.config_digest["sha256:".len().."sha256:".len() + 12];
    assert!(
        row.starts_with(&format!("{}/test/busybox", reg.addr)),
        "{table}"
    );
    assert!(row.contains("1.0") && row.contains(short_id), "{table}");

    let digests = env.ok(&["images", "--digests"]);
    assert!(digests.contains(&w.manifest_digest), "{digests}");
    assert_eq!(env.ok(&["images", "-q"]).trim(), short_id);
    let j = json_lines(&env.ok(&["images", "--format", "json"]));
    assert_eq!(j.len(), 1);
    assert_eq!(j[0]["Tag"], "1.0");
    assert_eq!(j[0]["ID"], short_id);
    assert_eq!(j[0]["Digest"], w.manifest_digest.as_str());

    let inspect: Value =
        serde_json::from_str(&env.ok(&["image", "inspect", &name])).expect("inspect json");
    let i = &inspect[0];
    assert_eq!(i["Id"], w.config_digest.as_str());
    assert_eq!(i["RepoTags"][0], name.as_str());
    assert_eq!(
        i["RepoDigests"][0],
        format!("{}/test/busybox@{}", reg.addr, w.manifest_digest)
    );
    assert_eq!(i["Config"]["Env"][0], "FOO=bar");
    assert_eq!(i["RootFS"]["Layers"][0], w.diff_ids[0].as_str());
    assert_eq!(i["Architecture"], "amd64");
    // By id prefix too.
    env.ok(&["image", "inspect", short_id]);

    let again = env.ok(&["pull", &name]);
    assert!(
        again.contains(&format!("Status: Image is up to date for {name}")),
        "{again}"
    );
    assert!(again.contains(": Already exists"), "{again}");
    assert_eq!(env.ok(&["pull", "-q", &name]).trim(), name);
}

#[test]
fn pull_by_digest_and_default_tag() {
    let reg = Registry::start();
    let w = push(&reg, "lib/bb:latest", busybox_image());
    let env = Env::host_network();
    let out = env.ok(&["pull", &format!("{}/lib/bb", reg.addr)]);
    assert!(out.starts_with("Using default tag: latest\n"), "{out}");
    let by_digest = format!("{}/lib/bb@{}", reg.addr, w.manifest_digest);
    let out = env.ok(&["pull", &by_digest]);
    assert!(out.trim_end().ends_with(&by_digest), "{out}");
    let rows = json_lines(&env.ok(&["images", "--format", "json"]));
    assert!(
        rows.iter()
            .any(|r| r["Tag"] == "<none>" && r["Digest"] == w.manifest_digest.as_str()),
        "{rows:?}"
    );
}

fn mount(env: &Env, image: &str) -> String {
    env.ok(&["image", "mount", image]).trim().to_string()
}

fn layered_image() -> ImageBuilder {
    busybox_image()
        .layer(Layer::new(
            vec![
                Entry::dir("data", 0o755),
                Entry::file("data/keep", "kept", 0o644),
                Entry::file("data/gone", "removed later", 0o644),
                Entry::dir("opaque", 0o755),
                Entry::file("opaque/old", "hidden by an opaque dir", 0o644),
                Entry::file("etc/original", "one", 0o600),
                Entry::FileOwned {
                    path: "etc/owned".into(),
                    data: b"owned".to_vec(),
                    mode: 0o4755,
                    uid: 1234,
                    gid: 5678,
                    mtime: 1_000_000_000,
                    xattrs: vec![("user.berth".into(), b"yes".to_vec())],
                },
            ],
            Compression::Gzip,
        ))
        .layer(Layer::new(
            vec![
                Entry::whiteout("data/gone"),
                Entry::opaque("opaque"),
                Entry::file("opaque/new", "new", 0o644),
                Entry::file("etc/original", "two", 0o600),
                Entry::hardlink("etc/link", "etc/original"),
                Entry::symlink("etc/sym", "original"),
                Entry::Fifo {
                    path: "etc/fifo".into(),
                },
                Entry::CharDev {
                    path: "etc/null".into(),
                    major: 1,
                    minor: 3,
                },
            ],
            Compression::Zstd,
        ))
}

fn check_layered_rootfs(root: &Path) {
    assert!(root.join("bin/busybox").is_file());
    assert_eq!(
        std::fs::read_to_string(root.join("data/keep")).unwrap(),
        "kept"
    );
    assert!(!root.join("data/gone").exists(), "whiteout ignored");
    assert!(!root.join("opaque/old").exists(), "opaque dir ignored");
    assert_eq!(
        std::fs::read_to_string(root.join("opaque/new")).unwrap(),
        "new"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/original")).unwrap(),
        "two"
    );
    let a = std::fs::metadata(root.join("etc/original")).unwrap();
    let b = std::fs::metadata(root.join("etc/link")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hardlink not kept");
    assert_eq!(
        std::fs::read_link(root.join("etc/sym")).unwrap(),
        Path::new("original")
    );
    let owned = std::fs::metadata(root.join("etc/owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (1234, 5678));
    assert_eq!(owned.mode() & 0o7777, 0o4755);
    assert_eq!(owned.mtime(), 1_000_000_000);
    let x = xattr_get(&root.join("etc/owned"), "user.berth");
    assert_eq!(x.as_deref(), Some(&b"yes"[..]));
    assert!(std::fs::symlink_metadata(root.join("etc/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let null = std::fs::symlink_metadata(root.join("etc/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
}

fn xattr_get(p: &Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
    let name = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and buf is writable for its length.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

#[test]
fn overlay_rootfs_applies_whiteouts_opaque_dirs_and_metadata() {
    let reg = Registry::start();
    push(&reg, "test/layered:1", layered_image());
    let env = Env::host_network();
    let name = format!("{}/test/layered:1", reg.addr);
    env.ok(&["pull", &name]);
    let dir = mount(&env, &name);
    assert_eq!(mounts_under(env.root()).len(), 1, "one overlay mount");
    check_layered_rootfs(Path::new(&dir));
    // Read-only, like podman's image mount.
    assert!(std::fs::write(Path::new(&dir).join("x"), "x").is_err());
    // In use: rmi refuses.
    let err = env.fails(&["rmi", &name]);
    assert!(err.contains("conflict"), "{err}");
    env.ok(&["image", "unmount", &name]);
    assert!(mounts_under(env.root()).is_empty());
    env.ok(&["rmi", &name]);
}

#[test]
fn vfs_driver_copies_the_same_tree() {
    let reg = Registry::start();
    push(&reg, "test/layered:1", layered_image());
    let env = Env::with_driver("vfs").in_host_network();
    let name = format!("{}/test/layered:1", reg.addr);
    env.ok(&["pull", &name]);
    let dir = mount(&env, &name);
    assert!(mounts_under(env.root()).is_empty(), "vfs mounts nothing");
    check_layered_rootfs(Path::new(&dir));
    env.ok(&["image", "unmount", &name]);
    assert!(!Path::new(&dir).exists());
}

#[test]
fn a_hundred_layers_mount() {
    let reg = Registry::start();
    push(&reg, "test/deep:1", deep_image(100));
    let env = Env::host_network();
    let name = format!("{}/test/deep:1", reg.addr);
    env.ok(&["pull", &name]);
    assert_eq!(env.snapshots().len(), 101);
    let dir = mount(&env, &name);
    for n in [0, 50, 99] {
        assert!(
            Path::new(&dir).join(format!("layers/{n}")).exists(),
            "layer {n} missing"
        );
    }
    assert!(Path::new(&dir).join("bin/busybox").exists());
    env.ok(&["image", "unmount", &name]);
}

#[test]
fn platform_is_chosen_from_an_index() {
    let reg = Registry::start();
    let layout = Layout::new();
    let (index_digest, written) = layout.add_index(
        "multi",
        vec![
            busybox_image().arch("amd64", None),
            busybox_image()
                .arch("arm64", Some("v8"))
                .label("arch", "arm64"),
            busybox_image()
                .arch("arm", Some("v7"))
                .label("arch", "armv7"),
        ],
    );
    layout.push("multi", &reg.addr, "test/multi:1");
    let env = Env::host_network();
    let name = format!("{}/test/multi:1", reg.addr);
    let out = env.ok(&["pull", &name]);
    assert!(out.contains(&format!("Digest: {index_digest}")), "{out}");
    let i: Value = serde_json::from_str(&env.ok(&["image", "inspect", &name])).unwrap();
    assert_eq!(i[0]["Id"], written[0].config_digest.as_str());

    let arm = Env::host_network();
    arm.ok(&["pull", "--platform", "linux/arm/v7", &name]);
    let i: Value = serde_json::from_str(&arm.ok(&["image", "inspect", &name])).unwrap();
    assert_eq!(i[0]["Id"], written[2].config_digest.as_str());
    assert_eq!(i[0]["Architecture"], "arm");

    let none = Env::host_network();
    let err = none.fails(&["pull", "--platform", "linux/s390x", &name]);
    assert!(
        err.contains("no matching manifest for linux/s390x"),
        "{err}"
    );
    assert!(
        err.contains("linux/amd64")
            && err.contains("linux/arm64/v8")
            && err.contains("linux/arm/v7"),
        "{err}"
    );
    assert!(none.ok(&["images", "-q"]).is_empty());
    let err = none.fails(&["pull", "--platform", "linux", &name]);
    assert!(err.contains("--platform"), "{err}");
}

#[test]
fn docker_media_types_and_uncompressed_layers() {
    let reg = Registry::start();
    push(
        &reg,
        "test/docker:1",
        ImageBuilder::new()
            .layer(Layer::busybox())
            .layer(Layer::new(
                vec![Entry::file("plain", "tar", 0o644)],
                Compression::None,
            ))
            .docker_media_types(),
    );
    let env = Env::host_network();
    let name = format!("{}/test/docker:1", reg.addr);
    env.ok(&["pull", &name]);
    let dir = mount(&env, &name);
    assert_eq!(
        std::fs::read_to_string(Path::new(&dir).join("plain")).unwrap(),
        "tar"
    );
    env.ok(&["image", "unmount", &name]);
}

/// Nothing of a failed pull is visible: no image, no blob of it, no snapshot, no temporary file.
fn assert_nothing_stored(env: &Env) {
    assert!(env.ok(&["images", "-q"]).is_empty());
    assert!(
        env.temporaries().is_empty(),
        "temporaries: {:?}",
        env.temporaries()
    );
    // Image prune collects leftovers of the failed attempt (rows of unfinished snapshots).
    env.ok(&["image", "prune", "-a"]);
    assert!(env.blobs().is_empty(), "blobs: {:?}", env.blobs());
    assert!(
        env.snapshots().is_empty(),
        "snapshots: {:?}",
        env.snapshots()
    );
}

#[test]
fn corrupt_blob_is_refused_and_nothing_is_stored() {
    let reg = Registry::start();
    let w = push(&reg, "test/corrupt:1", busybox_image());
    let blob = reg.blob_path(w.layer_digests[0].trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let env = Env::host_network();
    let err = env.fails(&["pull", &format!("{}/test/corrupt:1", reg.addr)]);
    assert!(err.contains(&w.layer_digests[0]), "{err}");
    assert!(
        err.contains("digest mismatch") || err.contains("corrupt") || err.contains("invalid"),
        "{err}"
    );
    assert!(env.ok(&["images", "-q"]).is_empty());
    assert!(!env
        .blobs()
        .contains(&w.layer_digests[0].trim_start_matches("sha256:").to_string()));
    assert_nothing_stored(&env);
}

#[test]
fn unsafe_layers_are_refused_with_the_entry_name() {
    let reg = Registry::start();
    let cases: Vec<(&str, Vec<Entry>, &str)> = vec![
        (
            "dotdot",
            vec![Entry::RawName {
                name: b"../../etc/x".to_vec(),
                data: b"x".to_vec(),
            }],
            "../../etc/x",
        ),
        (
            "absolute",
            vec![Entry::RawName {
                name: b"/etc/x".to_vec(),
                data: b"x".to_vec(),
            }],
            "/etc/x",
        ),
        (
            "symlink",
            vec![
                Entry::RawSymlink {
                    name: b"escape".to_vec(),
                    target: b"/tmp".to_vec(),
                },
                Entry::RawName {
                    name: b"escape/berth-pwned".to_vec(),
                    data: b"x".to_vec(),
                },
            ],
            "escape/berth-pwned",
        ),
        (
            "hardlink",
            vec![Entry::hardlink("link", "../../../../etc/passwd")],
            "link",
        ),
    ];
    for (tag, entries, needle) in cases {
        push(
            &reg,
            &format!("test/evil:{tag}"),
            busybox_image().layer(Layer::new(entries, Compression::Gzip)),
        );
        let env = Env::host_network();
        let err = env.fails(&["pull", &format!("{}/test/evil:{tag}", reg.addr)]);
        assert!(err.contains(needle), "{tag}: {err}");
        assert!(
            !Path::new("/tmp/berth-pwned").exists(),
            "{tag} wrote outside the layer"
        );
        assert!(env.ok(&["images", "-q"]).is_empty());
        env.ok(&["image", "prune", "-a"]);
        assert!(env.snapshots().is_empty(), "{tag}: {:?}", env.snapshots());
    }
}

#[test]
fn truncated_gzip_and_unknown_media_type_are_refused() {
    let reg = Registry::start();
    // A gzip stream cut short, whose digest is that of the cut bytes: only decompression can notice.
    let layer = Layer::new(
        vec![Entry::file("big", vec![7u8; 200_000], 0o644)],
        Compression::Gzip,
    );
    let (tar, gz) = layer.build();
    let _ = tar;
    let cut = gz[..gz.len() / 2].to_vec();
    push(
        &reg,
        "test/truncated:1",
        busybox_image().layer(Layer::raw_blob(cut, Compression::Gzip)),
    );
    let env = Env::host_network();
    let err = env.fails(&["pull", &format!("{}/test/truncated:1", reg.addr)]);
    assert!(err.contains("layer sha256:"), "{err}");
    assert_nothing_stored(&env);

    push(
        &reg,
        "test/unknown:1",
        busybox_image().layer_media_type(0, "application/vnd.example.layer.v1+squashfs"),
    );
    let err = env.fails(&["pull", &format!("{}/test/unknown:1", reg.addr)]);
    assert!(
        err.contains("unsupported layer media type") && err.contains("squashfs"),
        "{err}"
    );
    assert_nothing_stored(&env);
}

#[test]
fn unknown_image_and_bad_references() {
    let reg = Registry::start();
    let env = Env::host_network();
    let err = env.fails(&["pull", &format!("{}/nope/nothing:1", reg.addr)]);
    assert!(
        err.contains("nope/nothing") && err.contains("unknown"),
        "{err}"
    );
    let err = env.fails(&["pull", "docker.io/UPPER/case"]);
    assert!(
        err.contains("docker.io/UPPER/case") && err.contains("lowercase"),
        "{err}"
    );
    let err = env.fails(&["rmi", "missing:latest"]);
    assert!(err.contains("No such image: missing:latest"), "{err}");
    let err = env.fails(&["image", "inspect", "missing"]);
    assert!(err.contains("No such image"), "{err}");
    let o = env.run(&["pull", "--bogus-flag", "x"]);
    assert_eq!(o.status.code(), Some(125));
    assert_nothing_stored(&env);
}

#[test]
fn tag_rmi_and_prune_collect_blobs_and_snapshots() {
    let reg = Registry::start();
    push(&reg, "test/a:1", busybox_image());
    push(
        &reg,
        "test/b:1",
        busybox_image().layer(Layer::new(
            vec![Entry::file("b", "b", 0o644)],
            Compression::Gzip,
        )),
    );
    let env = Env::host_network();
    let a = format!("{}/test/a:1", reg.addr);
    let b = format!("{}/test/b:1", reg.addr);
    env.ok(&["pull", &a]);
    env.ok(&["pull", &b]);
    // The busybox layer is shared: unpacked once.
    assert_eq!(env.snapshots().len(), 2);
    env.ok(&["tag", &a, "mine/alias:v1"]);
    let rows = json_lines(&env.ok(&["images", "--format", "json"]));
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows
        .iter()
        .any(|r| r["Repository"] == "mine/alias" && r["Tag"] == "v1"));
    // Two names: rmi by id needs -f; by name it only untags.
    let id = env.ok(&["image", "inspect", &a]);
    let id: Value = serde_json::from_str(&id).unwrap();
    let id = id[0]["Id"].as_str().unwrap().to_string();
    let err = env.fails(&["rmi", &id[7..19]]);
    assert!(err.contains("must be forced"), "{err}");
    assert_eq!(
        env.ok(&["rmi", "mine/alias:v1"]).trim(),
        "Untagged: mine/alias:v1"
    );
    // A name wins over an id prefix, as in docker: tag b with a prefix of a's id.
    let prefix = &id[7..13];
    env.ok(&["tag", &b, prefix]);
    let i: Value = serde_json::from_str(&env.ok(&["image", "inspect", prefix])).unwrap();
    assert_ne!(
        i[0]["Id"],
        id.as_str(),
        "the name {prefix} should win over the id prefix"
    );
    let i: Value = serde_json::from_str(&env.ok(&["image", "inspect", &id[7..19]])).unwrap();
    assert_eq!(i[0]["Id"], id.as_str());
    env.ok(&["rmi", prefix]);
    let out = env.ok(&["rmi", &b]);
    assert!(
        out.contains("Untagged: ") && out.contains("Deleted: sha256:"),
        "{out}"
    );
    assert_eq!(
        env.snapshots().len(),
        1,
        "b's own layer goes, the shared one stays"
    );
    // Retagging an image away from a name leaves a dangling image that prune removes.
    env.ok(&["pull", &b]);
    env.ok(&["tag", &b, &a]);
    let rows = json_lines(&env.ok(&["images", "--format", "json"]));
    assert!(rows.iter().any(|r| r["Repository"] == "<none>"), "{rows:?}");
    let out = env.ok(&["image", "prune"]);
    assert!(
        out.contains("deleted: sha256:") && out.contains("Total reclaimed space"),
        "{out}"
    );
    let out = env.ok(&["image", "prune", "-a"]);
    assert!(out.contains("untagged:"), "{out}");
    assert!(env.ok(&["images", "-q"]).is_empty());
    assert!(env.blobs().is_empty(), "{:?}", env.blobs());
    assert!(env.snapshots().is_empty(), "{:?}", env.snapshots());
}

#[test]
fn save_and_load_round_trip_and_docker_archives_load() {
    let reg = Registry::start();
    let w = push(&reg, "test/saved:1", layered_image());
    let env = Env::host_network();
    let name = format!("{}/test/saved:1", reg.addr);
    env.ok(&["pull", &name]);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("saved.tar");
    env.ok(&["save", "-o", archive.to_str().unwrap(), &name]);
    let other = Env::host_network();
    let out = other.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.trim(), format!("Loaded image: {name}"));
    let i: Value = serde_json::from_str(&other.ok(&["image", "inspect", &name])).unwrap();
    assert_eq!(i[0]["Id"], w.config_digest.as_str());
    let dir = mount(&other, &name);
    check_layered_rootfs(Path::new(&dir));
    other.ok(&["image", "unmount", &name]);

    // An archive docker (or skopeo) writes: manifest.json, config, layer tars.
    let layout = Layout::new();
    let w2 = layout.add("t", busybox_image().cmd(["echo", "hi"]));
    let docker_tar = tmp.path().join("docker.tar");
    layout.to_docker_archive("t", &docker_tar, "example.com/app:2");
    let third = Env::host_network();
    let out = third.ok(&["load", "-i", docker_tar.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: example.com/app:2");
    let i: Value =
        serde_json::from_str(&third.ok(&["image", "inspect", "example.com/app:2"])).unwrap();
    assert_eq!(i[0]["Id"], w2.config_digest.as_str());
    assert_eq!(i[0]["Config"]["Cmd"][1], "hi");

    // An OCI layout in a tar, loaded through stdin.
    let oci_tar = tmp.path().join("oci.tar");
    layout.to_oci_archive("t", &oci_tar);
    let fourth = Env::host_network();
    let o = output_with_input(
        fourth.cmd().arg("load"),
        Some(&std::fs::read(&oci_tar).unwrap()),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        format!("Loaded image ID: {}", w2.config_digest)
    );

    // Garbage in: a clear error, nothing stored.
    let junk = tmp.path().join("junk.tar");
    std::fs::write(
        &junk,
        b"this is not a tar archive at all, not even close............",
    )
    .unwrap();
    let fifth = Env::host_network();
    let err = fifth.fails(&["load", "-i", junk.to_str().unwrap()]);
    assert!(err.contains("junk.tar"), "{err}");
    assert_nothing_stored(&fifth);
}

#[test]
fn login_logout_and_wrong_credentials() {
    let reg = Registry::start_with_auth("alice", "s3cret");
    let layout = Layout::new();
    layout.add("t", busybox_image());
    layout.push_with_creds("t", &reg.addr, "private/app:1", "alice:s3cret");
    let env = Env::host_network();
    let name = format!("{}/private/app:1", reg.addr);
    let err = env.fails(&["pull", &name]);
    assert!(
        err.to_lowercase().contains("unauthorized") || err.contains("authentication required"),
        "{err}"
    );

    let o = output_with_input(
        env.cmd()
            .args(["login", "-u", "alice", "--password-stdin", &reg.addr]),
        Some(b"wrong\n"),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(&reg.addr), "{}", stderr(&o));
    assert!(
        !env.docker_config().join("config.json").exists()
            || !std::fs::read_to_string(env.docker_config().join("config.json"))
                .unwrap()
                .contains(&reg.addr)
    );

    let o = output_with_input(
        env.cmd()
            .args(["login", "-u", "alice", "--password-stdin", &reg.addr]),
        Some(b"s3cret\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "Login Succeeded");
    let cfg: Value = serde_json::from_str(
        &std::fs::read_to_string(env.docker_config().join("config.json")).unwrap(),
    )
    .unwrap();
    assert!(cfg["auths"][&reg.addr]["auth"].is_string(), "{cfg}");
    env.ok(&["pull", &name]);
    let out = env.ok(&["logout", &reg.addr]);
    assert_eq!(
        out.trim(),
        format!("Removing login credentials for {}", reg.addr)
    );
    env.ok(&["rmi", &name]);
    env.fails(&["pull", &name]);
}

#[test]
fn concurrent_pulls_share_one_snapshot_per_layer() {
    let reg = Registry::start();
    push(&reg, "test/par:1", layered_image());
    let env = Env::host_network();
    let name = format!("{}/test/par:1", reg.addr);
    let children: Vec<_> = (0..4)
        .map(|_| {
            env.cmd()
                .args(["pull", "-q", &name])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(env.snapshots().len(), 3);
    assert!(env.temporaries().is_empty());
    let dir = mount(&env, &name);
    check_layered_rootfs(Path::new(&dir));
    env.ok(&["image", "unmount", &name]);
}

/// Pseudo-random bytes (xorshift): incompressible, so the pull has real work to do.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

#[test]
fn a_pull_killed_midway_leaves_a_store_the_next_pull_repairs() {
    let reg = Registry::start();
    push(
        &reg,
        "test/big:1",
        busybox_image().layer(Layer::new(
            vec![
                Entry::file("big1", noise(48 << 20, 1), 0o644),
                Entry::file("big2", noise(48 << 20, 2), 0o644),
            ],
            Compression::None,
        )),
    );
    let env = Env::host_network();
    let name = format!("{}/test/big:1", reg.addr);
    let mut child = env
        .cmd()
        .args(["pull", "-q", &name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it while a blob is being written (or as soon as anything landed in the store).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while list(&env.root().join("content/tmp")).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the pull finished before it could be killed"
    );
    // Nothing half-written is visible.
    assert!(env.ok(&["images", "-q"]).is_empty());
    // The next pull takes over the unfinished layer and completes.
    env.ok(&["pull", "-q", &name]);
    let dir = mount(&env, &name);
    assert_eq!(
        std::fs::metadata(Path::new(&dir).join("big2"))
            .unwrap()
            .len(),
        48 << 20
    );
    env.ok(&["image", "unmount", &name]);
    assert!(env.ok(&["images", "-q"]).lines().count() == 1);
    // Leftovers of the killed pull (its temporary blob) go with the next collection.
    env.ok(&["image", "prune"]);
    assert!(env.temporaries().is_empty(), "{:?}", env.temporaries());
    env.ok(&["rmi", &name]);
    assert!(env.blobs().is_empty() && env.snapshots().is_empty());
}
