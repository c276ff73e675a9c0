//! The rest of the runtime spec through berth-runtime: seccomp, user namespaces, --no-pivot, time namespaces,
//! sysctl, scheduling, personality, devices, preserved fds, namespaces joined by path.

use serde_json::json;
use testsupport::{mounts_under, stderr, stdout, Bundle, Runtime};

const BIN: &str = env!("CARGO_BIN_EXE_berth-runtime");

fn run(rt: &Runtime, b: &Bundle, extra: &[&str]) -> (i32, String, String) {
    let id = rt.id("spec");
    let mut args = vec!["run", "--bundle", b.path.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(&id);
    let o = rt.run(&args);
    assert!(!rt.root().join(&id).exists(), "state left for {id}");
    assert!(mounts_under(&b.path).is_empty());
    (o.status.code().unwrap_or(-1), stdout(&o), stderr(&o))
}

fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

#[test]
fn seccomp_denied_syscall_returns_configured_errno() {
    let rt = Runtime::new(BIN);
    let b = Bundle::new(&sh("mkdir /tmp/x; echo rc=$?; echo still-running"));
    b.edit(|c| {
        c["root"]["readonly"] = json!(false);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95}]
        })
    });
    let (code, out, err) = run(&rt, &b, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("Operation not supported") || out.contains("Operation not supported"),
        "{out}{err}"
    );
    assert!(
        out.contains("rc=1") && out.contains("still-running"),
        "{out}"
    );
    // The compiled filter was cached under the state root.
    assert!(std::fs::read_dir(rt.root().join(".seccomp-cache"))
        .unwrap()
        .next()
        .is_some());
}

#[test]
fn docker_default_seccomp_profile_runs_a_shell_and_blocks_mount() {
    let rt = Runtime::new(BIN);
    let profile: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../seccomp/profiles/docker-default.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let b = Bundle::new(&sh(
        "echo ok; unshare -m true 2>&1; ls / >/dev/null && echo ls-ok",
    ));
    b.edit(|c| {
        c["linux"]["seccomp"] = profile;
        c["process"]["capabilities"] = json!({
            "bounding": ["CAP_SYS_ADMIN"], "effective": ["CAP_SYS_ADMIN"], "permitted": ["CAP_SYS_ADMIN"]
        });
    });
    let (code, out, err) = run(&rt, &b, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ok\n"), "{out}");
    assert!(
        out.contains("Operation not permitted"),
        "unshare is denied by the profile: {out}"
    );
    assert!(out.contains("ls-ok"), "{out}");
}

#[test]
fn user_namespace_maps_ids() {
    let rt = Runtime::new(BIN);
    let b = Bundle::new(&sh(
        "id -u; cat /proc/self/uid_map; cat /proc/self/gid_map; touch /tmp/f && stat -c %u /tmp/f",
    ));
    // The rootfs must be owned by the mapped root to be writable from inside.
    let uid_base = 100000u32;
    b.edit(|c| {
        c["root"]["readonly"] = json!(false);
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": uid_base, "size": 65536}]);
        c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": uid_base, "size": 65536}]);
        // sysfs cannot be mounted from a user namespace without its own netns? We have one; keep it.
    });
    chown_tree(&b.rootfs(), uid_base);
    let (code, out, err) = run(&rt, &b, &[]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "{out}");
    assert!(
        lines[1].split_whitespace().eq(["0", "100000", "65536"]),
        "{out}"
    );
    assert_eq!(lines.last().unwrap().trim(), "0", "{out}");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(b.rootfs().join("tmp/f")).unwrap().uid(),
        uid_base
    );
}

fn chown_tree(p: &std::path::Path, id: u32) {
    let st = std::process::Command::new("chown")
        .args(["-R", "-h", &format!("{id}:{id}")])
        .arg(p)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn no_pivot_uses_chroot() {
    let rt = Runtime::new(BIN);
    let b = Bundle::new(&sh("ls / | head -3; test -e /proc/1/root && echo root-ok"));
    let (code, out, err) = run(&rt, &b, &["--no-pivot"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("bin") && out.contains("root-ok"), "{out}");
}

#[test]
fn sysctl_domainname_umask_nnp_oom_score() {
    let rt = Runtime::new(BIN);
    let b = Bundle::new(&sh(
        "cat /proc/sys/net/ipv4/ip_forward; cat /proc/sys/kernel/domainname; umask; \
         grep NoNewPrivs /proc/self/status; cat /proc/self/oom_score_adj",
    ));
    b.edit(|c| {
        c["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
        c["domainname"] = json!("example.org");
        c["process"]["user"]["umask"] = json!(0o027);
        c["process"]["oomScoreAdj"] = json!(500);
    });
    let (code, out, err) = run(&rt, &b, &[]);
    assert_eq!(code, 0, "{err}");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "1");
    assert_eq!(l[1], "example.org");
    assert_eq!(l[2], "0027");
    assert_eq!(l[3], "NoNewPrivs:\t1");
    assert_eq!(l[4], "500");
}

#[test]
fn rlimits_scheduler_ioprio_personality() {
    let rt = Runtime::new(BIN);
    let b = Bundle::new(&sh("ulimit -n; ulimit -c; cut -d' ' -f19 /proc/self/stat; uname -m; cut -d' ' -f41 /proc/self/stat"));
    b.edit(|c| {
        c["process"]["rlimits"] = json!([
            {"type": "RLIMIT_NOFILE", "hard": 200, "soft": 100},
            {"type": "RLIMIT_CORE", "hard": 0, "soft": 0}
        ]);
        c["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
        c["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 4});
        c["linux"]["personality"] = json!({"domain": "LINUX32"});
    });
    let (code, out, err) = run(&rt, &b, &[]);
    assert_eq!(code, 0, "{err}");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "100");
    assert_eq!(l[1], "0");
    assert_eq!(l[2], "7");
    assert_eq!(l[3], "i686", "LINUX32 personality: {out}");
    assert_eq!(l[4], "3", "SCHED_BATCH policy: {out}");
}

#[test]
fn time_namespace_offsets() {
    let rt = Runtime::new(BIN);
    let b = Bundle::new(&sh("cut -d' ' -f1 /proc/uptime"));
    b.edit(|c| {
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "time"}));
        c["linux"]["timeOffsets"] = json!({"boottime": {"secs": 86400 * 365, "nanosecs": 0}});
    });
    let (code, out, err) = run(&rt, &b, &[]);
    assert_eq!(code, 0, "{err}");
    let up: f64 = out.trim().parse().unwrap();
    assert!(up > 86400.0 * 365.0, "uptime in the container: {up}");
}

#[test]
fn linux_devices_and_default_devices() {
    let rt = Runtime::new(BIN);
    let b = Bundle::new(&sh("ls -l /dev/fuse /dev/null | cut -c1-10; stat -c '%t %T %u %g' /dev/fuse; head -c 4 /dev/zero | wc -c"));
    b.edit(|c| {
        c["linux"]["devices"] = json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o600, "uid": 5, "gid": 6}]);
    });
    let (code, out, err) = run(&rt, &b, &[]);
    assert_eq!(code, 0, "{err}");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l[0], "crw-------");
    assert_eq!(l[1], "crw-rw-rw-");
    assert_eq!(l[2], "a e5 5 6");
    assert_eq!(l[3].trim(), "4");
}

#[test]
fn preserve_fds_passes_extra_descriptors() {
    use std::os::unix::process::CommandExt;
    let rt = Runtime::new(BIN);
    let b = Bundle::new(&sh("cat <&3"));
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("in");
    std::fs::write(&f, "through fd 3\n").unwrap();
    let file = std::fs::File::open(&f).unwrap();
    let id = rt.id("fds");
    let mut cmd = rt.cmd();
    cmd.args([
        "run",
        "--preserve-fds",
        "1",
        "--bundle",
        b.path.to_str().unwrap(),
        &id,
    ]);
    let raw = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: dup2 in the child before exec, async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // dup2(3, 3) would keep FD_CLOEXEC: clear it explicitly.
            if libc::dup2(raw, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = testsupport::output_via_files(&mut cmd);
    assert_eq!(stdout(&o), "through fd 3\n", "{}", stderr(&o));
}

#[test]
fn join_a_namespace_by_path() {
    // Two containers share one network and uts namespace: the second joins the first's by path.
    let rt = Runtime::new(BIN);
    let a = Bundle::new(&["sleep", "30"]);
    let ida = rt.id("nsa");
    let o = rt.run(&["run", "-d", "--bundle", a.path.to_str().unwrap(), &ida]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pid = rt.state(&ida)["pid"].as_i64().unwrap();
    let b = Bundle::new(&sh("hostname; readlink /proc/self/ns/uts"));
    b.edit(|c| {
        c["hostname"] = json!(null);
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        for n in ns.iter_mut() {
            if n["type"] == "uts" {
                n["path"] = json!(format!("/proc/{pid}/ns/uts"));
            }
        }
    });
    let (code, out, err) = run(&rt, &b, &[]);
    assert_eq!(code, 0, "{err}");
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/uts")).unwrap();
    assert!(out.starts_with("berth\n"), "{out}");
    assert!(
        out.contains(theirs.to_str().unwrap()),
        "{out} vs {theirs:?}"
    );
    assert!(rt.run(&["delete", "--force", &ida]).status.success());
}

#[test]
fn unsupported_features_are_refused_by_name() {
    let rt = Runtime::new(BIN);
    let b = Bundle::new(&["true"]);
    b.edit(|c| c["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0"));
    let (code, _, err) = run(&rt, &b, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("process.selinuxLabel"), "{err}");
    // AppArmor: applied where the kernel has it, refused by name where it does not.
    let b = Bundle::new(&["true"]);
    b.edit(|c| c["process"]["apparmorProfile"] = json!("unconfined"));
    let (code, _, err) = run(&rt, &b, &[]);
    let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y");
    if apparmor {
        assert_eq!(code, 0, "{err}");
    } else {
        assert_eq!(code, 1);
        assert!(err.contains("process.apparmorProfile"), "{err}");
    }
    let b = Bundle::new(&["true"]);
    b.edit(|c| c["linux"]["intelRdt"] = json!({"closID": "x"}));
    let (_, _, err) = run(&rt, &b, &[]);
    assert!(err.contains("linux.intelRdt"), "{err}");
    let b = Bundle::new(&["true"]);
    b.edit(|c| c["mounts"].as_array_mut().unwrap().push(json!({"destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]})));
    let (code, _, err) = run(&rt, &b, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("tmpcopyup"), "{err}");
}

#[test]
fn foreground_terminal_is_relayed_without_a_console_socket() {
    let rt = Runtime::new(BIN);
    let b = Bundle::new(&sh("tty; echo relayed; exit 4"));
    b.edit(|c| c["process"]["terminal"] = json!(true));
    let (code, out, err) = run(&rt, &b, &[]);
    assert_eq!(code, 4, "{err}");
    assert!(
        out.contains("/dev/pts/0") && out.contains("relayed"),
        "{out:?}"
    );
}

#[test]
fn net_devices_move_into_the_container() {
    // The test plays the host inside its own network namespace, with a dummy interface to hand over.
    let rt = Runtime::new(BIN);
    let b = Bundle::new(&sh("ip -o link show | cut -d: -f2 | tr -d ' '"));
    b.edit(|c| c["linux"]["netDevices"] = json!({"bdummy0": {"name": "eth9"}}));
    let id = rt.id("netdev");
    let script = format!(
        "ip link add bdummy0 type veth peer name bpeer0 && exec {BIN} --root {} run --bundle {} {id}",
        rt.root().display(),
        b.path.display()
    );
    let o = testsupport::output_via_files(
        std::process::Command::new("unshare").args(["--net", "sh", "-c", &script]),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let names: Vec<String> = stdout(&o)
        .lines()
        .map(|l| l.split('@').next().unwrap_or(l).to_string())
        .collect();
    assert!(names.contains(&"eth9".to_string()), "{names:?}");
    let b = Bundle::new(&["true"]);
    b.edit(|c| c["linux"]["netDevices"] = json!({"nosuchdev0": {}}));
    let (code, _, err) = run(&rt, &b, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("linux.netDevices") && err.contains("nosuchdev0"),
        "{err}"
    );
}

#[test]
fn idmapped_bind_mount() {
    use std::os::unix::fs::MetadataExt;
    let rt = Runtime::new(BIN);
    let data = tempfile::tempdir().unwrap();
    // On disk the file is root's; through a mount idmapped with 0 -> 1000 it shows as 1000 (a container with
    // the same user namespace mapping then sees it as its root).
    std::fs::write(data.path().join("f"), "x").unwrap();
    let b = Bundle::new(&sh("stat -c '%u %g' /data/f"));
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "type": "bind", "source": data.path(), "options": ["bind", "idmap"],
            "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]
        }))
    });
    let (code, out, err) = run(&rt, &b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "1000 1000",
        "on-disk 0 shows as 1000 through the idmapped mount"
    );
    assert_eq!(std::fs::metadata(data.path().join("f")).unwrap().uid(), 0);
}

#[test]
fn recursive_read_only_and_propagation_options() {
    let rt = Runtime::new(BIN);
    let data = tempfile::tempdir().unwrap();
    let b = Bundle::new(&sh(
        "touch /data/x 2>&1; grep ' /data ' /proc/self/mountinfo",
    ));
    b.edit(|c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/data", "type": "bind", "source": data.path(), "options": ["rbind", "rro", "rprivate"]
        }));
        c["linux"]["rootfsPropagation"] = json!("rslave");
    });
    let (code, out, err) = run(&rt, &b, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains(" ro,") || out.contains(" ro "), "{out}");
    assert!(!out.contains("shared:"), "rprivate: {out}");
}

#[test]
fn propagation_of_a_new_tmpfs_mount() {
    // dockerd's `--tmpfs /tmp`: a tmpfs with "rprivate" (the change applies to the new mount, not to the
    // directory underneath it); "rshared" shows as a peer group in mountinfo.
    let rt = Runtime::new(BIN);
    let b = Bundle::new(&sh("grep -E ' /(tmp|shared) ' /proc/self/mountinfo"));
    b.edit(|c| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(json!({
            "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
            "options": ["noexec", "nosuid", "nodev", "rprivate"]
        }));
        mounts.push(json!({
            "destination": "/shared", "type": "tmpfs", "source": "tmpfs", "options": ["rshared"]
        }));
    });
    let (code, out, err) = run(&rt, &b, &[]);
    assert_eq!(code, 0, "{err}");
    let line = |dest: &str| {
        out.lines()
            .find(|l| l.split(' ').nth(4) == Some(dest))
            .unwrap_or_else(|| panic!("no {dest} in {out}"))
            .to_string()
    };
    assert!(line("/tmp").contains("nosuid,nodev,noexec"), "{out}");
    assert!(!line("/tmp").contains("shared:"), "{out}");
    assert!(line("/shared").contains("shared:"), "{out}");
}

#[test]
fn container_hooks_and_timeouts() {
    let rt = Runtime::new(BIN);
    let b = Bundle::new(&["cat", "/tmp/started"]);
    let log = b.path.join("log");
    b.edit(|c| {
        c["root"]["readonly"] = json!(false);
        c["hooks"] = json!({
            // Runs in the container's namespaces, before pivot_root: paths are the host's.
            "createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", format!("hostname >> {}", log.display())]}],
            // Runs in the container after start, with the container's root.
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "echo from-start-hook > /tmp/started"]}],
        })
    });
    let (code, out, err) = run(&rt, &b, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "from-start-hook\n");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "berth\n",
        "createContainer ran in the container's uts namespace"
    );

    let b = Bundle::new(&["true"]);
    b.edit(|c| {
        c["hooks"] =
            json!({"prestart": [{"path": "/bin/sleep", "args": ["sleep", "10"], "timeout": 1}]})
    });
    let t = std::time::Instant::now();
    let (code, _, err) = run(&rt, &b, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("timed out after 1s"), "{err}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn older_and_newer_1x_configs_are_accepted() {
    let rt = Runtime::new(BIN);
    for v in ["1.0.0", "1.0.2-dev", "1.1.0", "1.2.1"] {
        let b = Bundle::new(&["true"]);
        b.edit(|c| c["ociVersion"] = json!(v));
        let (code, _, err) = run(&rt, &b, &[]);
        assert_eq!(code, 0, "{v}: {err}");
    }
    let b = Bundle::new(&["true"]);
    b.edit(|c| c["ociVersion"] = json!("0.9.0"));
    let (code, _, err) = run(&rt, &b, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("ociVersion"), "{err}");
}

#[test]
fn ambient_capabilities_and_console_size() {
    let rt = Runtime::new(BIN);
    let b = Bundle::new(&sh("grep -E 'CapAmb|CapInh' /proc/self/status; stty size"));
    let caps = json!(["CAP_NET_BIND_SERVICE", "CAP_KILL"]);
    b.edit(|c| {
        c["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        c["process"]["capabilities"] = json!({
            "bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps, "ambient": caps
        });
        c["process"]["terminal"] = json!(true);
        c["process"]["consoleSize"] = json!({"height": 33, "width": 111});
    });
    let (code, out, err) = run(&rt, &b, &[]);
    assert_eq!(code, 0, "{err}");
    // CAP_KILL (5) and CAP_NET_BIND_SERVICE (10) survive the switch to uid 1000 as ambient capabilities.
    assert!(out.contains("CapInh:\t0000000000000420"), "{out}");
    assert!(out.contains("CapAmb:\t0000000000000420"), "{out}");
    assert!(out.contains("33 111"), "consoleSize: {out:?}");
}

#[test]
fn exec_cpu_affinity() {
    let rt = Runtime::new(BIN);
    let a = Bundle::new(&["sleep", "30"]);
    let id = rt.id("affinity");
    assert!(rt
        .run(&["run", "-d", "--bundle", a.path.to_str().unwrap(), &id])
        .status
        .success());
    let dir = tempfile::tempdir().unwrap();
    let pf = dir.path().join("p.json");
    std::fs::write(
        &pf,
        serde_json::to_vec(&json!({
            "args": ["sh", "-c", "grep Cpus_allowed_list /proc/self/status"], "cwd": "/",
            "user": {"uid": 0, "gid": 0}, "execCPUAffinity": {"initial": "0", "final": "0"}
        }))
        .unwrap(),
    )
    .unwrap();
    let o = rt.run(&["exec", "--process", pf.to_str().unwrap(), &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).split_whitespace().last(),
        Some("0"),
        "{}",
        stdout(&o)
    );
    assert!(rt.run(&["delete", "--force", &id]).status.success());
}
