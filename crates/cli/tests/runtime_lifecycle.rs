//! berth-runtime end to end, as root, on busybox bundles: lifecycle, isolation, limits, errors, cleanup.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use testsupport::{mounts_under, stderr, stdout, Bundle, Runtime};

const BIN: &str = env!("CARGO_BIN_EXE_berth-runtime");

fn rt() -> Runtime {
    Runtime::new(BIN)
}

/// `run` in the foreground: (exit code, stdout, stderr).
fn run(rt: &Runtime, b: &Bundle, id: &str) -> (i32, String, String) {
    let o = rt.run(&["run", "--bundle", b.path.to_str().unwrap(), id]);
    (o.status.code().unwrap_or(-1), stdout(&o), stderr(&o))
}

fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

fn assert_gone(rt: &Runtime, b: &Bundle, id: &str, cgroups: &[std::path::PathBuf]) {
    assert!(!rt.root().join(id).exists(), "state dir of {id} left");
    assert!(
        mounts_under(&b.path).is_empty(),
        "mounts left: {:?}",
        mounts_under(&b.path)
    );
    for d in cgroups {
        assert!(!d.exists(), "cgroup {} left", d.display());
    }
}

#[test]
fn run_prints_output_and_exit_code() {
    let rt = rt();
    let b = Bundle::new(&sh("echo hello; exit 3"));
    let id = rt.id("run");
    let (code, out, err) = run(&rt, &b, &id);
    assert_eq!(code, 3, "stderr: {err}");
    assert_eq!(out, "hello\n");
    assert_gone(&rt, &b, &id, &[]);
}

#[test]
fn killed_by_signal_exits_128_plus_n() {
    let rt = rt();
    let b = Bundle::new(&["sleep", "30"]);
    let id = rt.id("sig");
    let out = tempfile::tempfile().unwrap();
    let mut child = rt
        .cmd()
        .args(["run", "--bundle", b.path.to_str().unwrap(), &id])
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let o = rt.run(&["state", &id]);
        if o.status.success() && stdout(&o).contains("\"running\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = rt.run(&["kill", &id, "9"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(137));
    assert!(
        !rt.root().join(&id).exists(),
        "run removes the container after it exits"
    );
}

#[test]
fn isolation_pid1_hostname_proc_and_caps() {
    let rt = rt();
    let b = Bundle::new(&sh(
        "echo pid=$$; hostname; ps -o pid | tail -n +2 | wc -l; grep CapEff /proc/self/status; \
         cat /proc/kcore | wc -c; touch /x 2>&1 || echo ro-ok; ulimit -n; id -u; \
         test -c /dev/null && test -c /dev/urandom && test -L /dev/ptmx && echo devs-ok",
    ));
    let id = rt.id("iso");
    let (code, out, err) = run(&rt, &b, &id);
    assert_eq!(code, 0, "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid=1");
    assert_eq!(lines[1], "berth");
    // sh, ps, tail, wc: only the container's own processes are visible.
    assert!(lines[2].trim().parse::<i32>().unwrap() <= 4, "{out}");
    // CAP_KILL(5), CAP_NET_BIND_SERVICE(10), CAP_AUDIT_WRITE(29)
    assert_eq!(lines[3], "CapEff:\t0000000020000420");
    assert_eq!(lines[4].trim(), "0", "/proc/kcore is masked");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("\n1024\n"), "RLIMIT_NOFILE: {out}");
    assert!(out.contains("\n0\n"), "uid 0: {out}");
    assert!(out.contains("devs-ok"), "{out}");
}

#[test]
fn user_uid_gid_and_additional_groups() {
    let rt = rt();
    let b = Bundle::new(&sh("id -u; id -g; id -G"));
    b.edit(|c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 100]})
    });
    let id = rt.id("user");
    let (code, out, err) = run(&rt, &b, &id);
    assert_eq!(code, 0, "stderr: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "1000");
    assert!(lines[2].contains('5') && lines[2].contains("100"), "{out}");
}

#[test]
fn create_start_state_delete_lifecycle() {
    let rt = rt();
    let b = Bundle::new(&sh("echo started > /tmp/marker; sleep 30"));
    b.edit(|c| c["root"]["readonly"] = json!(false));
    let id = rt.id("life");
    let pidfile = b.path.join("init.pid");
    let o = rt.run(&[
        "create",
        "--bundle",
        b.path.to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ]);
    assert!(o.status.success(), "create: {}", stderr(&o));
    let st = rt.state(&id);
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], id.as_str());
    assert_eq!(
        st["bundle"],
        b.path.canonicalize().unwrap().to_str().unwrap()
    );
    let pid: i64 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(st["pid"].as_i64().unwrap(), pid);
    assert!(st["created"].as_str().unwrap().ends_with('Z'));
    // The init waits: the user's command has not run yet.
    assert!(!b.rootfs().join("tmp/marker").exists());
    let cgroups = rt.cgroup_dirs(&id);

    // Duplicate ids are refused with runc's message.
    let dup = rt.run(&["create", "--bundle", b.path.to_str().unwrap(), &id]);
    assert!(!dup.status.success());
    assert!(
        stderr(&dup).contains("container with id exists"),
        "{}",
        stderr(&dup)
    );

    let o = rt.run(&["start", &id]);
    assert!(o.status.success(), "start: {}", stderr(&o));
    assert_eq!(rt.status(&id), "running");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.rootfs().join("tmp/marker").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        b.rootfs().join("tmp/marker").exists(),
        "process ran after start"
    );

    // A second start is refused.
    assert!(!rt.run(&["start", &id]).status.success());
    // Delete without --force refuses a running container.
    let o = rt.run(&["delete", &id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("running"), "{}", stderr(&o));

    let list = rt.run(&["list", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v[0]["id"], id.as_str());
    let table = stdout(&rt.run(&["list"]));
    assert!(table.starts_with("ID") && table.contains(&id), "{table}");

    let o = rt.run(&["kill", &id, "KILL"]);
    assert!(o.status.success(), "kill: {}", stderr(&o));
    let deadline = Instant::now() + Duration::from_secs(5);
    while rt.status(&id) != "stopped" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(rt.status(&id), "stopped");
    assert_eq!(rt.state(&id)["pid"], 0);
    assert!(
        !rt.run(&["kill", &id, "KILL"]).status.success(),
        "kill of a stopped container fails"
    );
    let o = rt.run(&["delete", &id]);
    assert!(o.status.success(), "delete: {}", stderr(&o));
    assert_gone(&rt, &b, &id, &cgroups);
}

#[test]
fn unknown_id_errors() {
    let rt = rt();
    for cmd in ["state", "start", "delete", "pause", "resume"] {
        let o = rt.run(&[cmd, "nosuch"]);
        assert_eq!(o.status.code(), Some(1), "{cmd}");
        assert!(
            stderr(&o).contains("does not exist"),
            "{cmd}: {}",
            stderr(&o)
        );
    }
    // runc: delete --force of a missing container is not an error.
    assert!(rt.run(&["delete", "--force", "nosuch"]).status.success());
    let o = rt.run(&["kill", "nosuch", "BOGUS"]);
    assert!(stderr(&o).contains("invalid signal"), "{}", stderr(&o));
    let o = rt.run(&["create", "--bundle", "/nonexistent", "bad/id"]);
    assert!(!o.status.success());
}

#[test]
fn delete_force_of_running_container() {
    let rt = rt();
    let b = Bundle::new(&["sleep", "60"]);
    let id = rt.id("force");
    let o = rt.run(&["run", "--detach", "--bundle", b.path.to_str().unwrap(), &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(rt.status(&id), "running");
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let cgroups = rt.cgroup_dirs(&id);
    let o = rt.run(&["delete", "--force", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !Path::new(&format!("/proc/{pid}/stat")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap()
                .contains(") Z")
    );
    assert_gone(&rt, &b, &id, &cgroups);
}

#[test]
fn exec_joins_the_container() {
    let rt = rt();
    let b = Bundle::new(&["sleep", "60"]);
    let id = rt.id("exec");
    let o = rt.run(&["run", "-d", "--bundle", b.path.to_str().unwrap(), &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = rt.run(&[
        "exec",
        &id,
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; hostname; id -u",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("sleep 60"), "{out}");
    assert!(out.contains("berth"), "{out}");
    // Exit codes pass through; env, cwd and user flags apply.
    let o = rt.run(&[
        "exec",
        "--env",
        "FOO=bar",
        "--cwd",
        "/tmp",
        "--user",
        "1000:1000",
        &id,
        "sh",
        "-c",
        "echo $FOO $(pwd) $(id -u); exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(stdout(&o), "bar /tmp 1000\n");
    // A process file.
    let pf = b.path.join("process.json");
    std::fs::write(&pf, serde_json::to_vec(&json!({"args": ["sh", "-c", "echo from-file"], "cwd": "/", "user": {"uid": 0, "gid": 0}})).unwrap()).unwrap();
    let o = rt.run(&["exec", "--process", pf.to_str().unwrap(), &id]);
    assert_eq!(stdout(&o), "from-file\n", "{}", stderr(&o));
    // A missing binary is a clear error.
    let o = rt.run(&["exec", &id, "nosuchcmd"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("executable file not found"),
        "{}",
        stderr(&o)
    );
    // Detached exec with a pid file.
    let p = rt.exec_detached(&id, &b.path, &["sleep", "30"]);
    assert!(Path::new(&format!("/proc/{p}")).exists());
    let ps: Vec<i32> =
        serde_json::from_slice(&rt.run(&["ps", "--format", "json", &id]).stdout).unwrap();
    assert!(ps.contains(&p), "{ps:?} {p}");
    let o = rt.run(&["kill", "--all", &id, "KILL"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let deadline = Instant::now() + Duration::from_secs(5);
    while rt.status(&id) != "stopped" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(rt.status(&id), "stopped");
    assert!(rt.run(&["delete", &id]).status.success());
}

#[test]
fn malformed_config_names_the_field_and_leaves_nothing() {
    let rt = rt();
    let b = Bundle::new(&["true"]);
    let id = rt.id("bad");
    b.edit(|c| c["process"]["rlimits"][0]["type"] = json!("RLIMIT_BOGUS"));
    let o = rt.run(&["create", "--bundle", b.path.to_str().unwrap(), &id]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("process.rlimits[0].type"), "{e}");
    assert_eq!(e.lines().count(), 1, "one line: {e}");
    assert!(!rt.root().join(&id).exists());

    std::fs::write(
        b.path.join("config.json"),
        "{\"ociVersion\": \"1.0.0\", \"process\": ",
    )
    .unwrap();
    let o = rt.run(&["create", "--bundle", b.path.to_str().unwrap(), &id]);
    assert!(stderr(&o).contains("config.json"), "{}", stderr(&o));
    assert!(!rt.root().join(&id).exists());

    let b = Bundle::new(&["true"]);
    b.edit(|c| {
        c["linux"]["namespaces"] = json!([{"type": "pid"}]);
        c["hostname"] = json!(null);
    });
    let o = rt.run(&["create", "--bundle", b.path.to_str().unwrap(), &id]);
    assert!(
        stderr(&o).contains("mount namespace is required"),
        "{}",
        stderr(&o)
    );

    let b = Bundle::new(&["nosuchbinary"]);
    let o = rt.run(&["create", "--bundle", b.path.to_str().unwrap(), &id]);
    assert!(
        stderr(&o).contains("executable file not found"),
        "{}",
        stderr(&o)
    );
    assert!(!rt.root().join(&id).exists());
    assert!(mounts_under(&b.path).is_empty());
}

#[test]
fn setup_failure_is_one_line_with_step_and_path() {
    let rt = rt();
    let b = Bundle::new(&["true"]);
    let id = rt.id("mnt");
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/data", "type": "bind", "source": "/nonexistent/src", "options": ["bind"]}))
    });
    let o = rt.run(&["run", "--bundle", b.path.to_str().unwrap(), &id]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("/nonexistent/src") && e.contains("No such file"),
        "{e}"
    );
    assert!(!rt.root().join(&id).exists());
    assert!(mounts_under(&b.path).is_empty());
}

#[test]
fn symlinks_in_the_image_cannot_redirect_mounts_outside() {
    let rt = rt();
    let b = Bundle::new(&sh("ls /escape/"));
    let outside = tempfile::tempdir().unwrap();
    // The image has /escape -> <host dir>; a tmpfs mounted at /escape/sub must land inside the rootfs.
    std::os::unix::fs::symlink(outside.path(), b.rootfs().join("escape")).unwrap();
    b.edit(|c| {
        c["root"]["readonly"] = json!(false);
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/escape/sub", "type": "tmpfs", "source": "tmpfs"}))
    });
    let id = rt.id("escape");
    let (code, _, err) = run(&rt, &b, &id);
    assert_eq!(code, 0, "{err}");
    assert!(
        std::fs::read_dir(outside.path()).unwrap().next().is_none(),
        "nothing created outside the rootfs"
    );
}

#[test]
fn bind_mounts_ro_and_tmpfs_options() {
    let rt = rt();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f"), "host-data").unwrap();
    let b = Bundle::new(&sh("cat /data/f; echo x > /data/g 2>/dev/null || echo ro; grep ' /scratch ' /proc/mounts; echo y > /rw/h && echo rw"));
    let rw = tempfile::tempdir().unwrap();
    b.edit(|c| {
        let m = c["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/data", "type": "bind", "source": data.path(), "options": ["rbind", "ro"]}));
        m.push(json!({"destination": "/rw", "type": "bind", "source": rw.path(), "options": ["bind"]}));
        m.push(json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "mode=700", "noexec"]}));
    });
    let id = rt.id("bind");
    let (code, out, err) = run(&rt, &b, &id);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("host-data"), "{out}");
    assert!(out.contains("ro\n"), "{out}");
    assert!(out.contains("noexec") && out.contains("mode=700"), "{out}");
    assert!(out.contains("rw\n"), "{out}");
    assert_eq!(std::fs::read_to_string(rw.path().join("h")).unwrap(), "y\n");
}

#[test]
fn hooks_run_with_state_on_stdin() {
    let rt = rt();
    let b = Bundle::new(&["true"]);
    let out = b.path.join("hooks.log");
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} $(cat) >> {}", out.display())]});
    b.edit(|c| {
        c["hooks"] = json!({
            "prestart": [hook("prestart")],
            "createRuntime": [hook("createRuntime")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
        })
    });
    let id = rt.id("hooks");
    let (code, _, err) = run(&rt, &b, &id);
    assert_eq!(code, 0, "{err}");
    let log = std::fs::read_to_string(&out).unwrap();
    let names: Vec<&str> = log.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        names,
        ["prestart", "createRuntime", "poststart", "poststop"],
        "{log}"
    );
    assert!(log.contains(&format!("\"id\":\"{id}\"")), "{log}");

    // A failing prestart hook fails create and leaves nothing.
    let b = Bundle::new(&["true"]);
    b.edit(|c| c["hooks"] = json!({"prestart": [{"path": "/bin/false"}]}));
    let id = rt.id("hookfail");
    let (code, _, err) = run(&rt, &b, &id);
    assert_eq!(code, 1);
    assert!(err.contains("prestart hook /bin/false"), "{err}");
    assert!(!rt.root().join(&id).exists());
}

#[test]
fn spec_and_features() {
    let dir = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(BIN)
        .args(["spec", "--bundle", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(v["process"]["args"], json!(["sh"]));
    let o = std::process::Command::new(BIN)
        .args(["spec", "--bundle", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success(), "refuses to overwrite");
    let o = std::process::Command::new(BIN)
        .arg("features")
        .output()
        .unwrap();
    let f: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert!(f["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "pid"));
    assert!(f["linux"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "CAP_SYS_ADMIN"));
    assert!(f["mountOptions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "rbind"));
}

#[test]
fn systemd_cgroup_flag_is_a_clear_error() {
    let o = std::process::Command::new(BIN)
        .args(["--systemd-cgroup", "list"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("systemd"), "{}", stderr(&o));
}

/// CVE-2019-5736: while the init waits in `created`, its /proc/1/exe is the runtime's binary. A process in
/// the container grabs it, waits until no runtime process runs it any more (so the kernel's ETXTBSY no longer
/// protects it), then tries to write through it. Runs `bin` (a private copy, so other tests' runtime
/// processes cannot keep it busy). Returns (the attacker's error, whether the init ran from a read-only
/// mount, whether the binary is unchanged).
fn exe_attack(bin: &Path, caps: serde_json::Value) -> (String, bool, bool) {
    let before = std::fs::read(bin).unwrap();
    let rt = Runtime::new(bin);
    let b = Bundle::new(&["sleep", "10"]);
    b.edit(|c| {
        c["root"]["readonly"] = json!(false);
        c["process"]["capabilities"] =
            json!({"bounding": caps, "effective": caps, "permitted": caps});
    });
    let id = rt.id("cve");
    let o = rt.run(&["create", "--bundle", b.path.to_str().unwrap(), &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let sealed = nix_statvfs(&format!("/proc/{pid}/exe"));
    let o = rt.run(&["exec", "-d", &id, "sh", "-c",
        "exec 3</proc/1/exe; while [ ! -e /tmp/started ] || grep -q berth /proc/1/cmdline; do usleep 20000; done; \\
         (echo pwned >> /proc/self/fd/3) 2>/tmp/err; echo $? > /tmp/rc"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::thread::sleep(Duration::from_millis(200));
    assert!(rt.run(&["start", &id]).status.success());
    // Only now has every runtime process running this binary exited (older kernels check ETXTBSY first).
    std::fs::write(b.rootfs().join("tmp/started"), "").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.rootfs().join("tmp/rc").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = std::fs::read_to_string(b.rootfs().join("tmp/err")).unwrap_or_default();
    (err, sealed, std::fs::read(bin).unwrap() == before)
}

#[test]
fn runtime_binary_is_read_only_to_the_container() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("berth-runtime");
    std::fs::copy(BIN, &bin).unwrap();
    let caps = json!(["CAP_SYS_PTRACE", "CAP_DAC_OVERRIDE", "CAP_KILL"]);
    let (err, sealed, unchanged) = exe_attack(&bin, caps);
    assert!(
        unchanged,
        "the binary was overwritten; attack stderr: {err:?}"
    );
    assert!(
        err.contains("Read-only file system"),
        "attack result: {err:?}"
    );
    assert!(sealed, "the init's binary is on a read-only mount");
}

/// Sets or clears FS_IMMUTABLE_FL; the guard clears it so the temporary directory can be removed.
struct Immutable(std::path::PathBuf);

fn set_immutable(p: &Path, on: bool) {
    let f = std::fs::File::open(p).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let mut flags: libc::c_long = 0;
    // SAFETY: FS_IOC_GETFLAGS/SETFLAGS read and write one long.
    unsafe {
        assert_eq!(libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags), 0);
        flags = if on { flags | 0x10 } else { flags & !0x10 };
        assert_eq!(
            libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &flags),
            0,
            "{}",
            std::io::Error::last_os_error()
        );
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        set_immutable(&self.0, false);
    }
}

#[test]
fn immutable_binary_needs_no_reexec_unless_the_container_could_unlock_it() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("berth-runtime");
    std::fs::copy(BIN, &bin).unwrap();
    set_immutable(&bin, true);
    let _guard = Immutable(bin.clone());
    // Without CAP_LINUX_IMMUTABLE the flag alone protects the binary: no read-only re-exec was needed.
    let (err, sealed, unchanged) = exe_attack(
        &bin,
        json!(["CAP_SYS_PTRACE", "CAP_DAC_OVERRIDE", "CAP_KILL"]),
    );
    assert!(
        unchanged,
        "the binary was overwritten; attack stderr: {err:?}"
    );
    assert!(
        err.contains("Operation not permitted"),
        "attack result: {err:?}"
    );
    assert!(!sealed, "no re-exec for an immutable binary");
    // A container that could clear the flag gets the read-only re-exec as well.
    let (err, sealed, unchanged) = exe_attack(
        &bin,
        json!([
            "CAP_SYS_PTRACE",
            "CAP_DAC_OVERRIDE",
            "CAP_KILL",
            "CAP_LINUX_IMMUTABLE"
        ]),
    );
    assert!(unchanged, "attack stderr: {err:?}");
    assert!(
        sealed,
        "CAP_LINUX_IMMUTABLE in the bounding set: sealed by re-exec"
    );
}

fn nix_statvfs(p: &str) -> bool {
    let c = std::ffi::CString::new(p).unwrap();
    // SAFETY: zeroed statvfs filled by the kernel.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and out-pointer.
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut s) }, 0);
    s.f_flag & libc::ST_RDONLY != 0
}

#[test]
fn console_socket_receives_the_pty_master() {
    use std::os::unix::net::UnixListener;
    let rt = rt();
    let b = Bundle::new(&sh("tty; echo hi-from-tty"));
    b.edit(|c| c["process"]["terminal"] = json!(true));
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let id = rt.id("tty");
    let h = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        testsupport::recv_fd(&conn).0
    });
    let o = rt.run(&[
        "run",
        "-d",
        "--console-socket",
        sock.to_str().unwrap(),
        "--bundle",
        b.path.to_str().unwrap(),
        &id,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let master = h.join().unwrap();
    let mut f = std::fs::File::from(master);
    let mut out = Vec::new();
    let _ = std::io::Read::read_to_end(&mut f, &mut out); // EIO once the slave closes
    let s = String::from_utf8_lossy(&out);
    assert!(s.contains("/dev/pts/0") && s.contains("hi-from-tty"), "{s}");
}

/// The container's cgroup directory in every v1 hierarchy (or the v2 one), by runc's nesting rule.
fn expected_cgroup_dirs(id: &str) -> Vec<std::path::PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut v = Vec::new();
    for line in own.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        let base = if ctrls.is_empty() {
            if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                "/sys/fs/cgroup".to_string()
            } else {
                continue;
            }
        } else {
            format!("/sys/fs/cgroup/{}", ctrls.trim_start_matches("name="))
        };
        v.push(Path::new(&base).join(path.trim_start_matches('/')).join(id));
    }
    v
}

#[test]
fn failed_create_leaves_no_cgroup_and_logs_json() {
    let rt = rt();
    let b = Bundle::new(&["true"]);
    b.edit(|c| {
        c["mounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"destination": "/x", "type": "nosuchfs", "source": "none"}))
    });
    let id = rt.id("failcg");
    let log = b.path.join("runtime.log");
    let o = rt.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "create",
        "--bundle",
        b.path.to_str().unwrap(),
        &id,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("mount nosuchfs on /x"),
        "{}",
        stderr(&o)
    );
    for d in expected_cgroup_dirs(&id) {
        assert!(
            !d.exists(),
            "cgroup {} left after a failed create",
            d.display()
        );
    }
    assert!(!rt.root().join(&id).exists());
    let line = std::fs::read_to_string(&log).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert_eq!(v["level"], "error");
    assert!(v["msg"].as_str().unwrap().contains("nosuchfs"), "{v}");
    assert!(v["time"].as_str().is_some());
}

#[test]
fn exec_tty_sends_the_master_to_the_console_socket() {
    use std::os::unix::net::UnixListener;
    let rt = rt();
    let b = Bundle::new(&["sleep", "30"]);
    let id = rt.id("exectty");
    assert!(rt
        .run(&["run", "-d", "--bundle", b.path.to_str().unwrap(), &id])
        .status
        .success());
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("c.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let h = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        testsupport::recv_fd(&conn).0
    });
    let o = rt.run(&[
        "exec",
        "-t",
        "-d",
        "--console-socket",
        sock.to_str().unwrap(),
        &id,
        "sh",
        "-c",
        "tty; echo exec-tty",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut f = std::fs::File::from(h.join().unwrap());
    let mut out = Vec::new();
    let _ = std::io::Read::read_to_end(&mut f, &mut out);
    let s = String::from_utf8_lossy(&out);
    assert!(s.contains("/dev/pts/") && s.contains("exec-tty"), "{s}");
}

#[test]
fn seccomp_notify_fd_reaches_the_listener() {
    use std::os::unix::net::UnixListener;
    let rt = rt();
    let b = Bundle::new(&["true"]);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    b.edit(|c| {
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock,
            "syscalls": [{"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY"}]
        })
    });
    let id = rt.id("notify");
    let h = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let (_fd, msg) = testsupport::recv_fd(&conn);
        String::from_utf8_lossy(&msg).into_owned()
    });
    let o = rt.run(&["create", "--bundle", b.path.to_str().unwrap(), &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    // recv_fd asserts the notify fd came with SCM_RIGHTS.
    let state = h.join().unwrap();
    assert!(state.contains(&id), "{state}");
    assert!(rt.run(&["delete", "--force", &id]).status.success());
}
