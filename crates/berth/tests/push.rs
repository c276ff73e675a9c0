//! berth push: to Debian's docker-registry (and, in registry.rs, to berth's own server), checked by pulling
//! back into another store and comparing digests.

mod common;

use common::*;
use serde_json::Value;

fn inspect(env: &Env, name: &str) -> Value {
    let v: Value =
        serde_json::from_str(&env.ok(&["image", "inspect", name])).expect("inspect json");
    v[0].clone()
}

#[test]
fn push_to_another_registry_and_pull_back_identically() {
    let a = Registry::start();
    let b = Registry::start();
    let w = push(
        &a,
        "src/app:1",
        busybox_image().layer(Layer::new(
            vec![Entry::file("x", "x", 0o644)],
            Compression::Zstd,
        )),
    );
    let env = Env::host_network();
    let src = format!("{}/src/app:1", a.addr);
    env.ok(&["pull", &src]);
    let dest = format!("{}/dst/app:2", b.addr);
    let out = env.ok(&["push", &src, &dest]);
    assert!(
        out.starts_with(&format!(
            "The push refers to repository [{}/dst/app]",
            b.addr
        )),
        "{out}"
    );
    assert_eq!(
        out.matches(": Pushed").count(),
        3,
        "two layers and the config: {out}"
    );
    assert!(
        out.contains(&format!("2: digest: {} size: ", w.manifest_digest)),
        "{out}"
    );

    let other = Env::host_network();
    other.ok(&["pull", &dest]);
    let i = inspect(&other, &dest);
    assert_eq!(i["Id"], w.config_digest.as_str());
    assert_eq!(
        i["RepoDigests"][0],
        format!("{}/dst/app@{}", b.addr, w.manifest_digest)
    );

    // Again: everything is there already.
    let out = env.ok(&["push", &src, &dest]);
    assert_eq!(out.matches("Layer already exists").count(), 3, "{out}");

    // Same registry, another repository: blobs are mounted, not uploaded.
    env.ok(&["tag", &src, &format!("{}/copy/app:3", a.addr)]);
    let out = env.ok(&["push", &format!("{}/copy/app:3", a.addr)]);
    assert_eq!(out.matches("Mounted from src/app").count(), 3, "{out}");
    let q = env.ok(&["push", "-q", &format!("{}/copy/app:3", a.addr)]);
    assert_eq!(q.trim(), w.manifest_digest);
}

#[test]
fn push_errors_are_clear() {
    let reg = Registry::start_with_auth("alice", "s3cret");
    let env = Env::host_network();
    let err = env.fails(&["push", "nothing:here"]);
    assert!(err.contains("No such image: nothing:here"), "{err}");
    // An image in the store, a registry that wants credentials we do not have.
    let layout = Layout::new();
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("a.tar");
    layout.add("t", busybox_image());
    layout.to_oci_archive("t", &archive);
    env.ok(&["load", "-i", archive.to_str().unwrap()]);
    let id = env.ok(&["images", "-q"]).trim().to_string();
    let err = env.fails(&["push", &id, &format!("{}/x/y:1", reg.addr)]);
    assert!(
        err.contains(&reg.addr) && err.contains("unauthorized"),
        "{err}"
    );
}
