//! `berth commit`: a container's changes (new files, deleted files, opaque directories) as a new image that
//! runs, saves and loads like any other.

mod common;

use common::*;

#[test]
fn commit_keeps_changes_and_deletions_and_the_image_travels() {
    let env = Env::new();
    env.load_busybox();
    env.ok(&[
        "run",
        "--name",
        "changer",
        "-e",
        "GREETING=hi",
        "busybox",
        "sh",
        "-c",
        "echo new > /added; rm /bin/cat; mkdir -p /etc/app && echo 1 > /etc/app/conf; \
         ln /added /added-link; rm -rf /tmp; mkdir /tmp",
    ]);
    let id = env.ok(&[
        "commit",
        "-m",
        "first commit",
        "-a",
        "tester",
        "-c",
        "CMD [\"sh\", \"-c\", \"echo $GREETING; head /added\"]",
        "-c",
        "LABEL stage=one",
        "changer",
        "snap:1",
    ]);
    assert!(
        id.trim().starts_with("sha256:") && id.trim().len() == 71,
        "{id}"
    );
    // The new image's command, environment and files; the deletion is a whiteout.
    assert_eq!(env.ok(&["run", "--rm", "snap:1"]), "hi\nnew\n");
    let o = env.run(&["run", "--rm", "snap:1", "ls", "/bin/cat"]);
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(
        env.ok(&[
            "run",
            "--rm",
            "snap:1",
            "head",
            "/etc/app/conf",
            "/added-link"
        ]),
        "==> /etc/app/conf <==\n1\n\n==> /added-link <==\nnew\n"
    );
    let inspect = env.ok(&["image", "inspect", "snap:1"]);
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let img = &v[0];
    assert_eq!(
        img["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(2),
        "{inspect}"
    );
    assert_eq!(img["Config"]["Labels"]["stage"], "one");
    assert_eq!(img["Author"], "tester");
    // A commit of a container that changed nothing adds no layer.
    env.ok(&["create", "--name", "idle", "snap:1"]);
    env.ok(&["commit", "idle", "snap:2"]);
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["image", "inspect", "snap:2"])).unwrap();
    assert_eq!(v[0]["RootFS"]["Layers"].as_array().map(Vec::len), Some(2));
    // It saves and loads into another store and runs there.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.tar");
    env.ok(&["save", "-o", file.to_str().unwrap(), "snap:1"]);
    let other = Env::new();
    other.ok(&["load", "-i", file.to_str().unwrap()]);
    assert_eq!(other.ok(&["run", "--rm", "snap:1"]), "hi\nnew\n");
    // A running container is paused for the commit and runs on afterwards.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "live",
        "busybox",
        "sh",
        "-c",
        "echo live > /f; sleep 300",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    env.ok(&["commit", "live", "snap:live"]);
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.State.Status}}", "live"])
            .trim(),
        "running"
    );
    assert_eq!(
        env.ok(&["run", "--rm", "snap:live", "head", "/f"]),
        "live\n"
    );
    // Bad input.
    let err = env.fails(&["commit", "nosuch", "x:1"]);
    assert!(err.contains("No such container: nosuch"), "{err}");
    let err = env.fails(&["commit", "-c", "FROBNICATE x", "changer"]);
    assert!(err.contains("FROBNICATE"), "{err}");
    let err = env.fails(&["commit", "changer", "Bad Name"]);
    assert!(err.contains("Bad Name"), "{err}");
}
