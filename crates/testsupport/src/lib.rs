//! Test helpers for berth: busybox bundles in temporary directories, a private runtime state root, unique
//! container ids, and guards that delete containers and check nothing is left, also when a test fails.

pub mod daemons;
pub mod images;
pub mod registry;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{json, Value};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Unique across parallel tests and test binaries: cgroup names derive from container ids.
pub fn unique_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// The host's static busybox.
pub fn busybox() -> PathBuf {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("busybox-static is not installed (apt-get install busybox-static)");
}

/// A bundle: `rootfs/` with /bin/busybox and a link per applet, and a config.json.
pub struct Bundle {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Bundle {
    /// runc's default config with `terminal: false` and the given args.
    pub fn new(args: &[&str]) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("berth-bundle-")
            .tempdir()
            .expect("tempdir");
        let path = dir.path().to_path_buf();
        make_busybox_rootfs(&path.join("rootfs"));
        let b = Bundle { _dir: dir, path };
        b.write_config(&default_config(args));
        b
    }

    pub fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }

    pub fn config(&self) -> Value {
        let data = std::fs::read(self.path.join("config.json")).expect("read config.json");
        serde_json::from_slice(&data).expect("parse config.json")
    }

    pub fn write_config(&self, v: &Value) {
        std::fs::write(
            self.path.join("config.json"),
            serde_json::to_vec_pretty(v).expect("json"),
        )
        .expect("write config.json");
    }

    pub fn edit(&self, f: impl FnOnce(&mut Value)) -> &Self {
        let mut v = self.config();
        f(&mut v);
        self.write_config(&v);
        self
    }
}

pub fn make_busybox_rootfs(root: &Path) {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir rootfs/bin");
    for d in ["proc", "sys", "dev", "etc", "tmp", "root"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir rootfs dir");
    }
    std::fs::copy(busybox(), bin.join("busybox")).expect("copy busybox");
    // The host's busybox, not the fresh copy: another test thread forking right now may still hold the
    // copy open for writing, and executing it would fail with ETXTBSY.
    let out = Command::new(busybox())
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/tmp:/bin/sh\n",
    )
    .expect("write passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\nuser:x:1000:\n").expect("write group");
}

/// `berth-runtime spec`'s config (runc's), without a terminal, running `args`, with hostname "berth".
pub fn default_config(args: &[&str]) -> Value {
    let mut v = runtime::spec::default_spec_json(false);
    v["process"]["terminal"] = json!(false);
    v["process"]["args"] = json!(args);
    v["hostname"] = json!("berth");
    v
}

/// Receives one descriptor sent with SCM_RIGHTS (a console socket's pty master, a seccomp notify fd) and
/// the message that came with it.
pub fn recv_fd(conn: &std::os::unix::net::UnixStream) -> (std::os::fd::OwnedFd, Vec<u8>) {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut buf = [0u8; 8192];
    let mut cmsg = [0u8; 64];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: a zeroed msghdr pointing at our buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = cmsg.len();
    // SAFETY: a valid socket and msghdr.
    let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, 0) };
    assert!(n >= 0, "recvmsg: {}", std::io::Error::last_os_error());
    // SAFETY: the kernel filled the control buffer; we check for a header before reading it.
    let fd = unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        assert!(!c.is_null(), "no descriptor came with the message");
        std::os::fd::OwnedFd::from_raw_fd(*(libc::CMSG_DATA(c) as *const i32))
    };
    (fd, buf[..n as usize].to_vec())
}

/// A private state root for berth-runtime; on drop every container it created is force-deleted, and the
/// root must then be empty.
pub struct Runtime {
    root: tempfile::TempDir,
    bin: PathBuf,
    ids: std::cell::RefCell<Vec<String>>,
}

impl Runtime {
    pub fn new(bin: impl Into<PathBuf>) -> Runtime {
        Runtime {
            root: tempfile::Builder::new()
                .prefix("berth-state-")
                .tempdir()
                .expect("tempdir"),
            bin: bin.into(),
            ids: Default::default(),
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// A command with `--root` set. Track ids you create with [`Runtime::track`].
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root.path());
        c
    }

    pub fn track(&self, id: &str) {
        self.ids.borrow_mut().push(id.to_string());
    }

    /// A fresh id, tracked for cleanup.
    pub fn id(&self, prefix: &str) -> String {
        let id = unique_id(prefix);
        self.track(&id);
        id
    }

    /// Runs berth-runtime to completion. Output goes through files, not pipes: a container started by
    /// `create` or `run -d` inherits them and would hold a pipe open long after the command has exited.
    pub fn run(&self, args: &[&str]) -> Output {
        output_via_files(self.cmd().args(args))
    }

    pub fn state(&self, id: &str) -> Value {
        let out = self.run(&["state", id]);
        assert!(
            out.status.success(),
            "state {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("state JSON")
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// `exec -d --pid-file` of `args` in container `id`; returns the new process's pid from the pid file,
    /// which goes into `dir`.
    pub fn exec_detached(&self, id: &str, dir: &Path, args: &[&str]) -> i32 {
        let pidf = dir.join("exec.pid");
        let mut a = vec![
            "exec",
            "-d",
            "--pid-file",
            pidf.to_str().expect("utf-8 path"),
            id,
        ];
        a.extend_from_slice(args);
        let o = self.run(&a);
        assert!(o.status.success(), "exec in {id}: {}", stderr(&o));
        std::fs::read_to_string(&pidf)
            .expect("read exec pid file")
            .trim()
            .parse()
            .expect("pid in pid file")
    }

    /// The container's cgroup directories (from the state file), to check they are gone after delete.
    pub fn cgroup_dirs(&self, id: &str) -> Vec<PathBuf> {
        let p = self.root.path().join(id).join("state.json");
        let Ok(data) = std::fs::read(p) else {
            return Vec::new();
        };
        let v: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
        v["cgroup"]["dirs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = self.cmd().args(["delete", "--force", id]).output();
        }
        if std::thread::panicking() {
            return;
        }
        let left: Vec<_> = std::fs::read_dir(self.root.path())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "state left behind in {}: {left:?}",
            self.root.path().display()
        );
    }
}

/// Mount points under `dir` in our mount namespace (there must be none after a container is gone).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let d = dir.to_string_lossy().to_string();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| mp.starts_with(&d))
        .map(String::from)
        .collect()
}

/// Like `Command::output`, but waits for the process rather than for EOF on its output.
pub fn output_via_files(cmd: &mut Command) -> Output {
    output_with_input(cmd, None)
}

/// [`output_via_files`] with `input` (or nothing) as stdin.
pub fn output_with_input(cmd: &mut Command, input: Option<&[u8]>) -> Output {
    let stdin = match input {
        Some(data) => {
            use std::io::{Seek, Write};
            let mut f = tempfile::tempfile().expect("tempfile");
            f.write_all(data).expect("write stdin");
            f.rewind().expect("rewind");
            std::process::Stdio::from(f)
        }
        None => std::process::Stdio::null(),
    };
    let mut out = tempfile::tempfile().expect("tempfile");
    let mut err = tempfile::tempfile().expect("tempfile");
    let status = cmd
        .stdin(stdin)
        .stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"))
        .status()
        .expect("spawn");
    use std::io::{Read, Seek};
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    out.rewind().expect("rewind");
    out.read_to_end(&mut stdout).expect("read stdout");
    err.rewind().expect("rewind");
    err.read_to_end(&mut stderr).expect("read stderr");
    Output {
        status,
        stdout,
        stderr,
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
