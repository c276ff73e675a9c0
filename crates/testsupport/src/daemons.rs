//! containerd and dockerd for berth-runtime's compatibility tests, each on its own sockets, root and state
//! under a temporary directory.
//!
//! containerd runs in a private mount namespace whose /run is a tmpfs: containerd 1.6's v2 shim always puts its
//! sockets under /run/containerd and the runc state under /run/containerd/runc, and dockerd writes
//! /run/docker. dockerd joins the same namespace (its overlay mounts must be visible to the shim and the
//! runtime), so every mount a test makes dies with the namespace and none reaches the host's table. Cgroups
//! go below the test's own cgroup under a unique relative parent, removed on drop.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The relative cgroup parent a daemon's containers go under (nested below the caller's cgroup by
/// berth-runtime and runc).
fn cgroup_parent() -> String {
    crate::unique_id("berth-test")
}

/// What the CRI plugin needs: the sandbox ("pause") image and the runtime handlers.
pub struct Cri {
    pub sandbox_image: String,
    /// (handler name, BinaryName) pairs, each an `io.containerd.runc.v2` runtime; the first is the default.
    pub handlers: Vec<(String, PathBuf)>,
}

pub struct Containerd {
    pub dir: TempDir,
    child: Child,
    /// The private mount namespace, recorded at start: it outlives containerd in its shims.
    mnt_ns: Option<MountNs>,
    pub socket: PathBuf,
    pub cgroup_parent: String,
}

impl Containerd {
    pub fn start(cri: Option<&Cri>) -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("berth-ctrd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let socket = d.join("containerd.sock");
        // Top-level keys come before the first table.
        let disabled = if cri.is_none() {
            "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"
        } else {
            ""
        };
        let mut config = format!(
            r#"version = 2
{disabled}root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#,
            d = d.display(),
            sock = socket.display()
        );
        if let Some(cri) = cri {
            for sub in ["cni/bin", "cni/conf"] {
                std::fs::create_dir_all(d.join(sub)).expect("cni dirs");
            }
            config.push_str(&format!(
                r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # The sandbox asks for oom_score_adj -998; lowering it needs CAP_SYS_RESOURCE, which this machine's
  # bounding set lacks (runc and berth-runtime both fail without this, as in rootless setups).
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
bin_dir = "{d}/cni/bin"
conf_dir = "{d}/cni/conf"
  [plugins."io.containerd.grpc.v1.cri".containerd]
snapshotter = "overlayfs"
default_runtime_name = "{default}"
"#,
                image = cri.sandbox_image,
                default = cri.handlers.first().map_or("runc", |h| h.0.as_str()),
                d = d.display()
            ));
            for (name, bin) in &cri.handlers {
                config.push_str(&format!(
                    r#"    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}.options]
    BinaryName = "{bin}"
"#,
                    bin = bin.display()
                ));
            }
        }
        std::fs::write(d.join("config.toml"), config).expect("containerd config");
        let log = std::fs::File::create(d.join("containerd.log")).expect("containerd log");
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg("mount -t tmpfs -o mode=755 berth-test-run /run && exec \"$@\"")
            .arg("sh")
            .arg("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn containerd (is Debian's containerd installed?)");
        let mnt_ns = wait_for_own_mount_ns(child.id());
        let c = Containerd {
            dir,
            child,
            mnt_ns,
            socket,
            cgroup_parent: cgroup_parent(),
        };
        c.wait_ready();
        c
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.socket.exists()
                && self
                    .ctr()
                    .args(["version"])
                    .output()
                    .is_ok_and(|o| o.status.success())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not come up: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILLs containerd itself (its shims and containers keep running), as a crash would: for testing
    /// that the guard still cleans up.
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr` against this containerd.
    pub fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&self.socket);
        c
    }

    /// `ctr -n NS ARGS`, panicking with its output unless it succeeds.
    pub fn ctr_ok(&self, ns: &str, args: &[&str]) -> String {
        let o = self
            .ctr()
            .args(["-n", ns])
            .args(args)
            .output()
            .expect("run ctr");
        assert!(
            o.status.success(),
            "ctr -n {ns} {args:?}: {}{}",
            crate::stdout(&o),
            crate::stderr(&o)
        );
        crate::stdout(&o)
    }

    /// A path inside the daemons' mount namespace (its private /run), seen from the host.
    pub fn ns_path(&self, p: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{p}", self.child.id()))
    }

    /// A relative cgroup path for a container: nested below the test's cgroup by the runtime.
    pub fn cgroup(&self, id: &str) -> String {
        format!("{}/{id}", self.cgroup_parent)
    }

    /// Removes every task and container through the API, as a user would.
    fn remove_all(&self) {
        let namespaces = self
            .ctr()
            .args(["namespaces", "ls", "-q"])
            .output()
            .map(|o| crate::stdout(&o))
            .unwrap_or_default();
        for ns in namespaces.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let list = |what: &str| -> Vec<String> {
                self.ctr()
                    .args(["-n", ns, what, "ls", "-q"])
                    .output()
                    .map(|o| {
                        crate::stdout(&o)
                            .lines()
                            .map(|l| l.trim().to_string())
                            .filter(|l| !l.is_empty())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            for task in list("tasks") {
                let _ = quiet(
                    self.ctr()
                        .args(["-n", ns, "tasks", "kill", "-a", "-s", "SIGKILL", &task]),
                );
                let _ = quiet(self.ctr().args(["-n", ns, "tasks", "rm", "-f", &task]));
            }
            for c in list("containers") {
                let _ = quiet(self.ctr().args(["-n", ns, "containers", "rm", &c]));
            }
        }
    }
}

/// A mount namespace's identity (`mnt:[inode]`) and an open handle on it. The handle keeps the namespace,
/// and so its inode number, alive: once a namespace is freed the kernel hands its number to the next one
/// created (say, another test's container), and a process found by the number alone would not be ours.
struct MountNs {
    id: PathBuf,
    _hold: std::fs::File,
}

/// `unshare` switches namespaces right after the spawn: wait until `pid`'s mount namespace differs from ours.
fn wait_for_own_mount_ns(pid: u32) -> Option<MountNs> {
    let ours = std::fs::read_link("/proc/self/ns/mnt").ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match std::fs::read_link(format!("/proc/{pid}/ns/mnt")) {
            Ok(ns) if ns != ours => {
                let hold = std::fs::File::open(format!("/proc/{pid}/ns/mnt")).ok()?;
                // The namespace the handle holds, whatever `pid` did in between.
                let id = std::fs::read_link(format!("/proc/self/fd/{}", hold.as_raw_fd())).ok()?;
                return Some(MountNs { id, _hold: hold });
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => return None,
        }
    }
    None
}

fn quiet(c: &mut Command) -> std::io::Result<Output> {
    c.stdin(Stdio::null()).output()
}

/// Sends SIGTERM to `child` and waits up to `grace`; then SIGKILL.
fn stop(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Kills what a failed test can leave once containerd is gone: every process still in the daemons' private
/// mount namespace (shims: containerd 1.6's runc v2 shim writes no pid file) and each container's init
/// (init.pid in its bundle), the latter only while its cgroup is still below this test's parent, so a
/// reused pid is never hit. All were started for this test; they are ended by pid.
fn kill_leftovers(state: &Path, mnt_ns: Option<&Path>, cgroup_parent: &str) {
    let mut pids = Vec::new();
    if let Ok(namespaces) = std::fs::read_dir(state) {
        for ns in namespaces.flatten() {
            let Ok(bundles) = std::fs::read_dir(ns.path()) else {
                continue;
            };
            for b in bundles.flatten() {
                let pid = std::fs::read_to_string(b.path().join("init.pid"))
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                    .filter(|&p| p > 1);
                let ours = |pid: i32| {
                    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                        .is_ok_and(|c| c.contains(&format!("/{cgroup_parent}/")))
                };
                pids.extend(pid.filter(|&p| ours(p)));
            }
        }
    }
    if let (Some(ns), Ok(procs)) = (mnt_ns, std::fs::read_dir("/proc")) {
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if std::fs::read_link(p.path().join("ns/mnt")).is_ok_and(|l| l == ns) {
                pids.push(pid);
            }
        }
    }
    for &pid in &pids {
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // Their cgroups can only go once they are gone.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}")).exists())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `rel` (a path relative to the test's own cgroup) in every mounted hierarchy.
pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    let Ok(own) = std::fs::read_to_string("/proc/self/cgroup") else {
        return Vec::new();
    };
    let mut dirs = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let mount = if controllers.is_empty() {
            let unified = Path::new("/sys/fs/cgroup/unified");
            if unified.is_dir() {
                unified.to_path_buf()
            } else {
                PathBuf::from("/sys/fs/cgroup")
            }
        } else {
            Path::new("/sys/fs/cgroup").join(controllers.trim_start_matches("name="))
        };
        if mount.is_dir() {
            dirs.push(mount.join(path.trim_start_matches('/')).join(rel));
        }
    }
    dirs
}

/// Whether the cgroup `rel` (relative to the test's own) is frozen: the v1 freezer's state where that
/// hierarchy exists, else cgroup v2's cgroup.freeze.
pub fn is_frozen(rel: &str) -> bool {
    let dirs = cgroup_dirs(rel);
    let read = |p: PathBuf| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    match dirs.iter().find(|d| d.join("freezer.state").exists()) {
        Some(d) => read(d.join("freezer.state")) == "FROZEN",
        None => dirs.iter().any(|d| read(d.join("cgroup.freeze")) == "1"),
    }
}

/// Removes `parent` (relative to the test's own cgroup) from every hierarchy, deepest directories first;
/// only empty cgroups can go, so a busy one is left (and the test that made it fails on its own).
pub fn remove_cgroup_tree(parent: &str) {
    for top in cgroup_dirs(parent) {
        remove_deepest_first(&top);
    }
}

fn remove_deepest_first(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_deepest_first(&e.path());
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.remove_all();
        stop(&mut self.child, Duration::from_secs(10));
        kill_leftovers(
            &self.dir.path().join("state/io.containerd.runtime.v2.task"),
            self.mnt_ns.as_ref().map(|n| n.id.as_path()),
            &self.cgroup_parent,
        );
        remove_cgroup_tree(&self.cgroup_parent);
        // Let the namespace (and whatever is still mounted in it) go before the temp dir is removed.
        self.mnt_ns = None;
    }
}

/// dockerd on a private socket and roots, using its own [`Containerd`] (in that containerd's mount
/// namespace), with no bridge, no iptables and a cgroup parent below the test's cgroup.
pub struct Dockerd {
    child: Child,
    pub socket: PathBuf,
    pub dir: PathBuf,
    // Dropped after dockerd is stopped (fields drop after `drop`).
    pub containerd: Containerd,
}

impl Dockerd {
    /// Starts dockerd with `runtimes` as `--add-runtime NAME=PATH`.
    pub fn start(runtimes: &[(&str, &Path)]) -> Dockerd {
        let containerd = Containerd::start(None);
        let dir = containerd.dir.path().join("docker");
        std::fs::create_dir_all(&dir).expect("docker dir");
        let socket = dir.join("docker.sock");
        // The trust key would otherwise go to /etc/docker/key.json (docker 20.10 has no flag for it).
        std::fs::write(
            dir.join("daemon.json"),
            serde_json::json!({ "deprecated-key-path": dir.join("key.json") }).to_string(),
        )
        .expect("daemon.json");
        let log = std::fs::File::create(dir.join("dockerd.log")).expect("dockerd log");
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--mount=/proc/{}/ns/mnt", containerd.pid()))
            .args(["--", "dockerd", "--config-file"])
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("root"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .arg("--containerd")
            .arg(&containerd.socket)
            .args([
                "--bridge",
                "none",
                "--iptables=false",
                "--ip-masq=false",
                "--ip6tables=false",
            ])
            .args([
                "--storage-driver",
                "overlay2",
                "--cgroup-parent",
                &containerd.cgroup_parent,
            ]);
        for (name, path) in runtimes {
            cmd.arg("--add-runtime")
                .arg(format!("{name}={}", path.display()));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn dockerd (is Debian's docker.io installed?)");
        let d = Dockerd {
            child,
            socket,
            dir,
            containerd,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !d
            .docker()
            .args(["version"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            assert!(
                Instant::now() < deadline,
                "dockerd did not come up: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// Debian's docker CLI (not whatever else is first on PATH) against this dockerd.
    pub fn docker(&self) -> Command {
        let mut c = Command::new("/usr/bin/docker");
        c.arg("--host")
            .arg(format!("unix://{}", self.socket.display()));
        c.env("DOCKER_CONFIG", self.dir.join("client"));
        c
    }

    /// `docker ARGS`, panicking with its output unless it succeeds; returns stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let o = self
            .docker()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker");
        assert!(
            o.status.success(),
            "docker {args:?}: {}{}\n{}",
            crate::stdout(&o),
            crate::stderr(&o),
            tail(&self.log(), 20)
        );
        crate::stdout(&o)
    }

    /// Loads a docker-archive tarball.
    pub fn load(&self, archive: &Path) {
        self.docker_ok(&["load", "-q", "-i", archive.to_str().expect("utf-8 path")]);
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Removing the containers first keeps dockerd's shutdown short (it would wait out stop timeouts).
        if let Ok(o) = self.docker().args(["ps", "-aq"]).output() {
            let ids: Vec<String> = crate::stdout(&o).lines().map(str::to_string).collect();
            if !ids.is_empty() {
                let _ = quiet(self.docker().args(["rm", "-f"]).args(&ids));
            }
        }
        stop(&mut self.child, Duration::from_secs(20));
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
