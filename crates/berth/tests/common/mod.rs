//! A private berth store and docker config per test, removed (with anything mounted in it) on drop.

#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use berth_testsupport::images::{
    deep_image, Compression, Entry, ImageBuilder, Layer, Layout, Written,
};
pub use berth_testsupport::registry::Registry;
pub use berth_testsupport::{mounts_under, output_via_files, output_with_input, stderr, stdout};

pub struct Env {
    root: tempfile::TempDir,
    config: tempfile::TempDir,
    pub driver: &'static str,
    /// With networking: a network namespace of the test's own, where berth runs (it plays the host).
    netns: Option<NetnsHolder>,
}

/// `unshare --net sleep infinity`, started and ended (by pid) by the test: its namespace outlives nothing.
pub struct NetnsHolder {
    child: std::process::Child,
}

impl NetnsHolder {
    pub fn new() -> NetnsHolder {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "infinity"])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("unshare --net");
        let h = NetnsHolder { child };
        // unshare switches namespaces right after the spawn.
        let ours = std::fs::read_link("/proc/self/ns/net").expect("own netns");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_link(h.path()).map_or(true, |n| n == ours) {
            assert!(
                std::time::Instant::now() < deadline,
                "netns holder did not unshare"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let o = h.exec(&["ip", "link", "set", "lo", "up"]);
        assert!(o.status.success(), "lo up: {}", stderr(&o));
        h
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.child.id()))
    }

    /// A command run in this namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        c
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        output_via_files(self.cmd(args[0]).args(&args[1..]))
    }
}

impl Drop for NetnsHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Env {
    pub fn new() -> Env {
        Env::with_driver("overlay")
    }

    pub fn with_driver(driver: &'static str) -> Env {
        Env {
            root: tempfile::Builder::new()
                .prefix("berth-store-")
                .tempdir()
                .expect("tempdir"),
            config: tempfile::Builder::new()
                .prefix("berth-docker-config-")
                .tempdir()
                .expect("tempdir"),
            driver,
            // bridge is the default network: every test's berth runs in a namespace of the test's own, so
            // no bridge, veth or firewall rule ever reaches the machine's.
            netns: Some(NetnsHolder::new()),
        }
    }

    /// berth in the test's own network namespace instead: for a test that serves something on the host's
    /// 127.0.0.1 to berth itself (an ADD URL) and runs no bridge-networked container.
    pub fn host_network() -> Env {
        Env::new().in_host_network()
    }

    /// As [`Env::host_network`], for any driver: for tests that talk to a registry on the host's 127.0.0.1
    /// and run no container.
    pub fn in_host_network(mut self) -> Env {
        self.netns = None;
        self
    }

    /// (Every Env has its network namespace; kept for the network tests' readability.)
    pub fn with_netns(self) -> Env {
        self
    }

    pub fn netns(&self) -> &NetnsHolder {
        self.netns.as_ref().expect("Env::with_netns")
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn docker_config(&self) -> &Path {
        self.config.path()
    }

    pub fn cmd(&self) -> Command {
        let mut c = match &self.netns {
            Some(n) => n.cmd(env!("CARGO_BIN_EXE_berth")),
            None => Command::new(env!("CARGO_BIN_EXE_berth")),
        };
        c.arg("--root")
            .arg(self.root.path())
            .arg("--storage-driver")
            .arg(self.driver)
            .env("DOCKER_CONFIG", self.config.path())
            .env_remove("BERTH_ROOT");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        // In the machine's own network namespace a container on the default bridge network would put a
        // bridge and firewall rules there: such a test must say which network it wants.
        if self.netns.is_none() && matches!(args.first(), Some(&"run") | Some(&"create")) {
            assert!(
                args.iter()
                    .any(|a| *a == "--network" || a.starts_with("--network=")),
                "berth {args:?} from a host-network Env needs an explicit --network"
            );
        }
        output_via_files(self.cmd().args(args))
    }

    /// Runs and insists on success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "berth {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            o.status,
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    /// Runs and insists on failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            !o.status.success(),
            "berth {args:?} should have failed:\nstdout: {}\nstderr: {}",
            stdout(&o),
            stderr(&o)
        );
        assert_eq!(
            o.status.code(),
            Some(1),
            "exit code of {args:?}: {}",
            stderr(&o)
        );
        stderr(&o)
    }

    pub fn blobs(&self) -> Vec<String> {
        list(&self.root().join("content/sha256"))
    }

    /// Snapshot directories (not lock files).
    pub fn snapshots(&self) -> Vec<String> {
        list(&self.root().join("snapshots"))
            .into_iter()
            .filter(|n| !n.ends_with(".lock"))
            .collect()
    }

    pub fn temporaries(&self) -> Vec<String> {
        let mut v = list(&self.root().join("content/tmp"));
        v.extend(list(&self.root().join("tmp")));
        v
    }
}

pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

impl Env {
    /// Loads `image` into this store as `name` (through a docker-archive and `berth load`).
    pub fn load(&self, image: ImageBuilder, name: &str) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("image.tar");
        let layout = Layout::new();
        layout.add("t", image);
        layout.to_docker_archive("t", &file, name);
        self.ok(&["load", "-i", file.to_str().expect("utf-8 path")]);
    }

    /// busybox (sh as its command) as `busybox:latest`.
    pub fn load_busybox(&self) {
        self.load(busybox_image(), "busybox:latest");
    }

    /// Every container of this store, as full ids.
    pub fn containers(&self) -> Vec<String> {
        let o = self.run(&["ps", "-aq", "--no-trunc"]);
        stdout(&o).lines().map(str::to_string).collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Containers first (their monitors, processes, cgroups and mounts), then whatever is still mounted.
        let ids = self.containers();
        if !ids.is_empty() {
            let mut c = self.cmd();
            c.args(["rm", "-f", "-v"]).args(&ids);
            let _ = output_via_files(&mut c);
        }
        // Unmount what a failed test left mounted, deepest first, so the tempdir can go.
        let mut mounts = mounts_under(self.root.path());
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in &mounts {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        if !std::thread::panicking() {
            assert!(mounts.is_empty(), "mounts left under the store: {mounts:?}");
        }
    }
}

/// Pushes one image to the registry as `repo:tag`, returns what was written.
pub fn push(reg: &Registry, repo_tag: &str, image: ImageBuilder) -> Written {
    push_to(&reg.addr, repo_tag, image)
}

/// Pushes one image with skopeo to any registry at `addr` (127.0.0.1:PORT, plain HTTP).
pub fn push_to(addr: &str, repo_tag: &str, image: ImageBuilder) -> Written {
    let layout = Layout::new();
    let w = layout.add("t", image);
    layout.push("t", addr, repo_tag);
    w
}

pub fn busybox_image() -> ImageBuilder {
    ImageBuilder::new().layer(Layer::busybox()).cmd(["sh"])
}

pub fn path_in(dir: &str, rel: &str) -> PathBuf {
    Path::new(dir.trim()).join(rel)
}
