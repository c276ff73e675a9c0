//! berth-runtime under dockerd (Debian's docker.io 20.10) as `--add-runtime berth=PATH`: run --rm, -d, exec,
//! -it, stop, kill, pause/unpause, update, with docker's default seccomp profile in force.

use std::process::{Command, Stdio};

use serde_json::Value;
use testsupport::daemons::{cgroup_dirs, is_frozen, Dockerd};
use testsupport::images::{ImageBuilder, Layout};
use testsupport::{stderr, stdout};

const BIN: &str = env!("CARGO_BIN_EXE_berth-runtime");

fn dockerd() -> Dockerd {
    let d = Dockerd::start(&[("berth", std::path::Path::new(BIN))]);
    let layout = Layout::new();
    layout.add("latest", ImageBuilder::busybox());
    let archive = d.dir.join("busybox.tar");
    layout.to_docker_archive("latest", &archive, "busybox:latest");
    d.load(&archive);
    d
}

fn run(d: &Dockerd, args: &[&str]) -> (i32, String, String) {
    let o = d
        .docker()
        .args(["run", "--runtime", "berth", "--network", "none"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (o.status.code().unwrap_or(-1), stdout(&o), stderr(&o))
}

fn inspect(d: &Dockerd, name: &str) -> Value {
    let v: Value = serde_json::from_str(&d.docker_ok(&["inspect", name])).unwrap();
    v[0].clone()
}

#[test]
fn run_rm_with_the_default_seccomp_profile() {
    let d = dockerd();
    let (code, out, err) = run(
        &d,
        &[
            "--rm",
            "busybox",
            "sh",
            "-c",
            "echo hello; grep ^Seccomp: /proc/self/status; exit 3",
        ],
    );
    assert_eq!(code, 3, "{out}{err}");
    // Mode 2: a filter is installed (docker's default profile); unconfined turns it off.
    assert_eq!(out, "hello\nSeccomp:\t2\n", "{err}");
    let (code, out, err) = run(
        &d,
        &[
            "--rm",
            "--security-opt",
            "seccomp=unconfined",
            "busybox",
            "grep",
            "^Seccomp:",
            "/proc/self/status",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "Seccomp:\t0\n"), "{err}");
    // The profile blocks what it should: unshare(CLONE_NEWUSER) is refused (docker's profile denies it
    // without CAP_SYS_ADMIN), while unconfined lets the kernel decide.
    let (code, _, err) = run(&d, &["--rm", "busybox", "unshare", "-U", "true"]);
    assert_ne!(
        code, 0,
        "unshare -U allowed under the default profile: {err}"
    );
    assert!(d.docker_ok(&["ps", "-aq"]).is_empty());
}

#[test]
fn detached_exec_pause_update_stop_kill() {
    let d = dockerd();
    let (code, out, err) = run(&d, &["-d", "--name", "bg", "busybox", "sleep", "1000"]);
    assert_eq!(code, 0, "{out}{err}");
    let id = out.trim().to_string();
    let info = inspect(&d, "bg");
    assert_eq!(info["State"]["Running"], true);
    assert_eq!(info["HostConfig"]["Runtime"], "berth");
    // berth-runtime's own state, under the root dockerd 20.10 gives every runc-type runtime.
    let state_file = d
        .dir
        .join(format!("exec/runtime-runc/moby/{id}/state.json"));
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(&state_file)
            .unwrap_or_else(|e| panic!("{}: {e}", state_file.display())),
    )
    .unwrap();
    assert!(state["cgroup"]["hierarchies"].is_array(), "{state}");

    let o = d
        .docker()
        .args([
            "exec",
            "bg",
            "sh",
            "-c",
            "echo from exec; ps -o pid,args; exit 5",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("1 sleep 1000"), "{}", stdout(&o));
    let o = d
        .docker()
        .args(["exec", "-i", "bg", "sh", "-c", "read line; echo got $line"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"abc\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(stdout(&o), "got abc\n");

    d.docker_ok(&["pause", "bg"]);
    assert_eq!(inspect(&d, "bg")["State"]["Status"], "paused");
    assert!(is_frozen(&format!("{}/{id}", d.containerd.cgroup_parent)));
    d.docker_ok(&["unpause", "bg"]);
    assert_eq!(inspect(&d, "bg")["State"]["Status"], "running");

    // update goes through `berth-runtime update --resources -`.
    d.docker_ok(&[
        "update",
        "--memory",
        "64m",
        "--memory-swap",
        "128m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "50",
        "bg",
    ]);
    // The container sees its own cgroup (docker gives it a cgroup namespace on v2).
    let (files, want) = if std::path::Path::new("/sys/fs/cgroup/memory").is_dir() {
        (
            "memory/memory.limit_in_bytes memory/memory.memsw.limit_in_bytes cpu/cpu.cfs_quota_us pids/pids.max",
            "67108864\n134217728\n50000\n50\n",
        )
    } else {
        // v2: docker 20.10 sends no swap limit here (its swap detection finds none on a v2 host; berth-runtime
        // itself sets memory.swap.max from an update that has one: runtime_cgroups' update test).
        (
            "memory.max cpu.max pids.max",
            "67108864\n50000 100000\n50\n",
        )
    };
    let limits = d.docker_ok(&[
        "exec",
        "-w",
        "/sys/fs/cgroup",
        "bg",
        "sh",
        "-c",
        &format!("cat {files}"),
    ]);
    assert_eq!(limits, want);

    // stop: SIGTERM is ignored by a pid 1 without a handler, so SIGKILL after the timeout.
    d.docker_ok(&["stop", "-t", "1", "bg"]);
    let info = inspect(&d, "bg");
    assert_eq!(info["State"]["Status"], "exited");
    assert_eq!(info["State"]["ExitCode"], 137);
    // Started again, then killed with a signal the process handles.
    d.docker_ok(&["start", "bg"]);
    d.docker_ok(&["exec", "bg", "true"]);
    d.docker_ok(&["kill", "bg"]);
    d.docker_ok(&["wait", "bg"]);
    assert_eq!(inspect(&d, "bg")["State"]["ExitCode"], 137);
    d.docker_ok(&["rm", "bg"]);
    assert!(!state_file.exists(), "runtime state left");
    for dir in cgroup_dirs(&format!("{}/{id}", d.containerd.cgroup_parent)) {
        assert!(!dir.exists(), "cgroup {} left", dir.display());
    }
}

#[test]
fn run_it_and_exec_it_through_a_terminal() {
    let d = dockerd();
    // script(1) gives the docker CLI a terminal; -e returns the command's exit code.
    let in_pty = |args: &str| {
        let line = format!(
            "/usr/bin/docker --host unix://{} {args}",
            d.socket.display()
        );
        Command::new("script")
            .args(["-eqc", &line, "/dev/null"])
            .env("DOCKER_CONFIG", d.dir.join("client"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = in_pty("run -it --rm --runtime berth --network none busybox sh -c 'tty; exit 4'");
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("/dev/pts/0"), "{:?}", stdout(&o));

    run(&d, &["-d", "--name", "tt", "busybox", "sleep", "1000"]);
    let o = in_pty("exec -it tt sh -c 'tty; exit 6'");
    assert_eq!(o.status.code(), Some(6), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("/dev/pts/"), "{:?}", stdout(&o));
}

#[test]
fn a_missing_command_gives_dockers_exit_code() {
    let d = dockerd();
    let (code, out, err) = run(&d, &["--rm", "busybox", "/no/such/binary"]);
    // docker: 127 when the command is not found, with the runtime's reason in the message.
    assert_eq!(code, 127, "{out}{err}");
    assert!(err.contains("/no/such/binary"), "{err}");
    assert!(d.docker_ok(&["ps", "-aq"]).is_empty());
}

#[test]
fn run_flags_reach_the_container() {
    let d = dockerd();
    // --read-only with --tmpfs: docker asks for an "rprivate" tmpfs (found failing, fixed in the runtime).
    let (code, out, err) = run(
        &d,
        &[
            "--rm",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "busybox",
            "sh",
            "-c",
            "touch /tmp/x && echo tmp ok; touch /y",
        ],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out, "tmp ok\n");
    assert!(err.contains("Read-only file system"), "{err}");
    // User, capabilities, limits as docker puts them in the spec.
    let (code, out, err) = run(
        &d,
        &[
            "--rm",
            "-u",
            "1000:1000",
            "--group-add",
            "50",
            "--cap-drop",
            "ALL",
            "--cap-add",
            "NET_ADMIN",
            "--pids-limit",
            "20",
            "--ulimit",
            "nofile=512:1024",
            "-w",
            "/newdir",
            "-e",
            "FOO=bar",
            "busybox",
            "sh",
            "-c",
            "id; grep CapBnd /proc/self/status; cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || \
             cat /sys/fs/cgroup/pids.max; ulimit -n; pwd; echo $FOO",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "uid=1000 gid=1000 groups=50,1000\nCapBnd:\t0000000000001000\n20\n512\n/newdir\nbar\n"
    );
    // An OOM kill: exit 137, and the shim's OOM watch on the runtime's memory cgroup reports it.
    let (code, out, err) = run(
        &d,
        &[
            "--name",
            "oom",
            "-m",
            "8m",
            "--memory-swap",
            "8m",
            "busybox",
            "sh",
            "-c",
            "tail /dev/zero",
        ],
    );
    assert_eq!(code, 137, "{out}{err}");
    assert_eq!(inspect(&d, "oom")["State"]["OOMKilled"], true);
    d.docker_ok(&["rm", "oom"]);
}
