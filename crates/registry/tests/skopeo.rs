//! skopeo (containers/image) against the registry: an OCI layout made by umoci, copied up and back down.

mod common;

use std::process::Command;

use common::*;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tools() -> bool {
    ["skopeo", "umoci"].iter().all(|t| {
        Command::new(t)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn layout(dir: &std::path::Path) -> String {
    let d = dir.join("layout");
    let ds = d.to_str().unwrap().to_string();
    run(Command::new("umoci").args(["init", "--layout", &ds]));
    run(Command::new("umoci").args(["new", "--image", &format!("{ds}:t")]));
    run(Command::new("umoci").args([
        "insert",
        "--image",
        &format!("{ds}:t"),
        "/bin/busybox",
        "/bin/busybox",
    ]));
    ds
}

fn raw(reference: &str, extra: &[&str]) -> String {
    run(Command::new("skopeo")
        .arg("inspect")
        .args(extra)
        .args(["--raw", reference]))
}

#[test]
fn copy_up_and_down() {
    if !tools() {
        eprintln!("skipping: skopeo or umoci missing");
        return;
    }
    let reg = start();
    let src = layout(reg.dir.path());
    let dst = reg.dir.path().join("back");
    let remote = format!("docker://{}/x/y:t", reg.host);
    run(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{src}:t"),
        &remote,
    ]));
    run(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &remote,
        &format!("oci:{}:t", dst.display()),
    ]));
    let a = raw(&format!("oci:{src}:t"), &[]);
    let b = raw(&remote, &["--tls-verify=false"]);
    let c = raw(&format!("oci:{}:t", dst.display()), &[]);
    assert_eq!(a, b);
    assert_eq!(a, c);
    let tags = run(Command::new("skopeo").args([
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/x/y", reg.host),
    ]));
    assert!(tags.contains("\"t\""), "{tags}");
}

#[test]
fn copy_with_credentials() {
    if !tools() {
        eprintln!("skipping: skopeo or umoci missing");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let hp = tmp.path().join("htpasswd");
    std::fs::write(&hp, format!("bob:{}\n", bcrypt::hash("pw", 4).unwrap())).unwrap();
    let reg = start_with(|c| c.htpasswd = Some(hp.clone()));
    let src = layout(tmp.path());
    let remote = format!("docker://{}/auth/img:t", reg.host);
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "bob:wrong",
            &format!("oci:{src}:t"),
            &remote,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    run(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "bob:pw",
        &format!("oci:{src}:t"),
        &remote,
    ]));
    let a = raw(&format!("oci:{src}:t"), &[]);
    let b = raw(&remote, &["--tls-verify=false", "--creds", "bob:pw"]);
    assert_eq!(a, b);
}
