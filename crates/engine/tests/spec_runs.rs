//! Builds a spec for a busybox rootfs with engine::build and runs it with the real berth-runtime binary
//! (as root): uid/gid, cwd, env and the capability mask must be docker's.

use std::path::PathBuf;

use berth_testsupport::{make_busybox_rootfs, stderr, stdout, Runtime};
use engine::{build, RunOptions};
use serde_json::json;

fn runtime_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_RUNTIME") {
        return PathBuf::from(p);
    }
    // Next to this test binary's directory: <target>/debug/deps/spec_runs-HASH -> <target>/debug/berth-runtime,
    // whatever the target directory is (cargo builds every workspace binary before the tests run).
    let exe = std::env::current_exe().expect("current_exe");
    let p = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("berth-runtime"))
        .expect("test binary directory");
    assert!(
        p.exists(),
        "{} not found: cargo build -p berth-cli --bin berth-runtime (or set BERTH_RUNTIME)",
        p.display()
    );
    p
}

#[test]
fn docker_like_spec_runs_in_berth_runtime() {
    if not_root() {
        eprintln!("skipped: needs root");
        return;
    }
    // Drop order: the Runtime guard (force-deletes the container, checks the state root is empty) runs
    // before the bundle directory goes.
    let bundle = tempfile::Builder::new()
        .prefix("berth-engine-bundle-")
        .tempdir()
        .expect("tempdir");
    let rt = Runtime::new(runtime_bin());
    let rootfs = bundle.path().join("rootfs");
    make_busybox_rootfs(&rootfs);

    let image: image::media::ImageConfig = serde_json::from_value(json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["FOO=from-image", "BAR=1"], "WorkingDir": "/tmp", "Cmd": ["false"]},
        "rootfs": {"type": "layers", "diff_ids": []}
    }))
    .expect("image config");
    let id = rt.id("engine-spec");
    let opts = RunOptions {
        cmd: vec![
            "sh".into(),
            "-c".into(),
            "id; pwd; echo $FOO; cat /proc/self/status | grep CapBnd".into(),
        ],
        env: vec!["FOO=from-flag".into()],
        user: Some("user".into()),
        ..Default::default()
    };
    let spec = build(&id, &rootfs, &image, &opts).expect("build spec");
    std::fs::write(
        bundle.path().join("config.json"),
        serde_json::to_vec_pretty(&spec).expect("json"),
    )
    .expect("write config.json");

    let out = rt.run(&[
        "run",
        "--bundle",
        bundle.path().to_str().expect("utf-8"),
        &id,
    ]);
    assert!(
        out.status.success(),
        "run failed: {}\nstdout: {}",
        stderr(&out),
        stdout(&out)
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("uid=1000(user) gid=1000(user)"),
        "{}",
        lines[0]
    );
    assert_eq!(lines[1], "/tmp");
    assert_eq!(lines[2], "from-flag");
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["CapBnd:", "00000000a80425fb"]
    );
}

fn not_root() -> bool {
    // /proc/self/status's Uid line: real, effective, saved, fs.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u != "0"))
        })
        .unwrap_or(true)
}
