//! `berth registry serve` with real clients: skopeo both ways, berth push/pull, docker-registry as the peer.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// `berth registry serve` on a free port, stopped by pid (SIGTERM, then SIGKILL) when dropped.
struct Server {
    child: Option<Child>,
    root: tempfile::TempDir,
    addr: String,
    extra: Vec<String>,
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let root = tempfile::Builder::new()
            .prefix("berth-registry-")
            .tempdir()
            .unwrap();
        let mut s = Server {
            child: None,
            root,
            addr: String::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn("127.0.0.1:0");
        s
    }

    fn spawn(&mut self, addr: &str) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["registry", "serve", "--addr", addr, "--root"])
            .arg(self.root.path())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or("")
            .trim_start_matches("http://")
            .to_string();
        assert!(
            addr.starts_with("127.0.0.1:"),
            "unexpected first line {line:?}"
        );
        self.addr = addr;
        self.child = Some(child);
    }

    fn signal(&mut self, sig: i32) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the pid of a child this guard spawned and has not reaped.
            unsafe { libc::kill(c.id() as libc::pid_t, sig) };
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        let addr = self.addr.clone();
        self.spawn(&addr);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal(libc::SIGTERM);
    }
}

fn skopeo(args: &[&str]) -> String {
    let o = output_via_files(Command::new("skopeo").arg("--insecure-policy").args(args));
    assert!(o.status.success(), "skopeo {args:?}: {}", stderr(&o));
    stdout(&o)
}

fn raw_manifest_digest(reference: &str) -> String {
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", reference]);
    berth_testsupport::images::sha256_digest(raw.as_bytes())
}

#[test]
fn skopeo_copies_to_and_from_berth_registry() {
    let srv = Server::start(&[]);
    let layout = Layout::new();
    let w = layout.add(
        "t",
        busybox_image().layer(Layer::new(
            vec![Entry::file("z", "z", 0o644)],
            Compression::Zstd,
        )),
    );
    layout.push("t", &srv.addr, "lib/app:1");
    let dest = format!("docker://{}/lib/app:1", srv.addr);
    assert_eq!(raw_manifest_digest(&dest), w.manifest_digest);
    // And back out into an OCI layout, byte for byte.
    let out = tempfile::tempdir().unwrap();
    let oci = format!("oci:{}:t", out.path().join("copy").display());
    skopeo(&[
        "copy",
        "--quiet",
        "--preserve-digests",
        "--src-tls-verify=false",
        &dest,
        &oci,
    ]);
    assert_eq!(raw_manifest_digest(&oci), w.manifest_digest);
    // Registry to registry: berth's to Debian's and back.
    let peer = Registry::start();
    let peer_ref = format!("docker://{}/from/berth:1", peer.addr);
    skopeo(&[
        "copy",
        "--quiet",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &dest,
        &peer_ref,
    ]);
    let back = format!("docker://{}/from/peer:1", srv.addr);
    skopeo(&[
        "copy",
        "--quiet",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &peer_ref,
        &back,
    ]);
    assert_eq!(raw_manifest_digest(&back), w.manifest_digest);
    // A multi-platform index too.
    let (index, _) = layout.add_index(
        "multi",
        vec![
            busybox_image().arch("amd64", None),
            busybox_image().arch("arm64", Some("v8")),
        ],
    );
    layout.push("multi", &srv.addr, "lib/multi:1");
    assert_eq!(
        raw_manifest_digest(&format!("docker://{}/lib/multi:1", srv.addr)),
        index
    );
}

#[test]
fn berth_push_and_pull_through_both_registries_give_the_same_digests() {
    let srv = Server::start(&[]);
    let peer = Registry::start();
    let w = push(&peer, "orig/app:1", busybox_image().env(["A=1"]));
    let env = Env::host_network();
    let src = format!("{}/orig/app:1", peer.addr);
    env.ok(&["pull", &src]);
    let mine = format!("{}/copy/app:1", srv.addr);
    let out = env.ok(&["push", &src, &mine]);
    assert!(
        out.contains(&format!("1: digest: {}", w.manifest_digest)),
        "{out}"
    );
    let other = Env::host_network();
    other.ok(&["pull", &mine]);
    let i: Value = serde_json::from_str(&other.ok(&["image", "inspect", &mine])).unwrap();
    assert_eq!(i[0]["Id"], w.config_digest.as_str());
    assert_eq!(
        i[0]["RepoDigests"][0],
        format!("{}/copy/app@{}", srv.addr, w.manifest_digest)
    );
    // Pushed by berth to berth's registry, pulled by skopeo: same digest.
    assert_eq!(
        raw_manifest_digest(&format!("docker://{mine}")),
        w.manifest_digest
    );
}

#[test]
fn a_killed_server_keeps_what_was_pushed_and_nothing_partial() {
    let mut srv = Server::start(&[]);
    push_to(&srv.addr, "keep/app:1", busybox_image());
    // Start an upload and leave it half done, then kill the server hard.
    let addr = srv.addr.clone();
    let o = Command::new("curl")
        .args([
            "-s",
            "-i",
            "-X",
            "POST",
            &format!("http://{addr}/v2/keep/app/blobs/uploads/"),
        ])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&o.stdout).to_string();
    let location = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("Location: ")
                .or_else(|| l.strip_prefix("location: "))
        })
        .expect("upload location")
        .trim()
        .to_string();
    let url = if location.starts_with("http") {
        location
    } else {
        format!("http://{addr}{location}")
    };
    let chunk = vec![1u8; 1 << 20];
    let chunk_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(chunk_file.path(), &chunk).unwrap();
    let o = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/octet-stream",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", chunk_file.path().display()))
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "202");
    srv.signal(libc::SIGKILL);
    srv.restart();
    // What was pushed before still pulls; the half upload is no blob.
    let env = Env::host_network();
    env.ok(&["pull", &format!("{}/keep/app:1", srv.addr)]);
    let blobs = common::list(&srv.root.path().join("blobs/sha256"));
    let half = berth_testsupport::images::sha256_digest(&chunk);
    assert!(!blobs.contains(&half.trim_start_matches("sha256:").to_string()));
}
