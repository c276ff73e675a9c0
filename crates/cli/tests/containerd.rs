//! berth-runtime as the runc binary of containerd's io.containerd.runc.v2 shim, driven with `ctr` against a
//! private containerd (Debian's containerd 1.6): run, detached tasks, exec, kill, pause/resume, metrics, a
//! terminal through the console socket, and delete with nothing left behind.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use testsupport::daemons::{cgroup_dirs, is_frozen, Containerd};
use testsupport::images::{ImageBuilder, Layout};
use testsupport::{stderr, stdout};

const BIN: &str = env!("CARGO_BIN_EXE_berth-runtime");
const IMAGE: &str = "docker.io/library/busybox:latest";

/// A containerd with the busybox image imported into namespace `default`.
fn containerd() -> Containerd {
    let c = Containerd::start(None);
    let layout = Layout::new();
    layout.add("latest", ImageBuilder::busybox());
    let archive = c.dir.path().join("busybox.tar");
    layout.to_docker_archive("latest", &archive, IMAGE);
    c.ctr_ok("default", &["images", "import", archive.to_str().unwrap()]);
    c
}

/// `ctr run` arguments with berth-runtime as the shim's runc binary and a cgroup below the test's own.
fn run_args(c: &Containerd, id: &str) -> Vec<String> {
    vec![
        "run".into(),
        "--runc-binary".into(),
        BIN.into(),
        "--cgroup".into(),
        c.cgroup(id),
        "--fifo-dir".into(),
        fifo_dir(c),
    ]
}

/// ctr's IO fifos go under the test's directory: the shim sees the host's files but its own /run.
fn fifo_dir(c: &Containerd) -> String {
    c.dir.path().join("fifo").display().to_string()
}

fn task_status(c: &Containerd, id: &str) -> String {
    let out = c.ctr_ok("default", &["tasks", "ls"]);
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id)).then(|| f.get(2).unwrap_or(&"").to_string())
        })
        .next()
        .unwrap_or_default()
}

fn wait_status(c: &Containerd, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = task_status(c, id);
        if s == want {
            return;
        }
        assert!(Instant::now() < deadline, "task {id}: {s}, not {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// After delete: no runtime state, no bundle, no cgroup, no task.
fn assert_gone(c: &Containerd, id: &str) {
    let state = c.ns_path(&format!("/run/containerd/runc/default/{id}"));
    assert!(!state.exists(), "runtime state {} left", state.display());
    let bundle = c
        .dir
        .path()
        .join("state/io.containerd.runtime.v2.task/default")
        .join(id);
    assert!(!bundle.exists(), "bundle {} left", bundle.display());
    for d in cgroup_dirs(&c.cgroup(id)) {
        assert!(!d.exists(), "cgroup {} left", d.display());
    }
    assert_eq!(task_status(c, id), "", "task {id} still listed");
}

#[test]
fn run_rm_in_the_foreground_passes_output_and_exit_code() {
    let c = containerd();
    let mut args = run_args(&c, "fg");
    args.extend(["--rm".into(), IMAGE.into(), "fg".into()]);
    args.extend(["sh", "-c", "echo hello; cat /proc/self/cgroup; exit 3"].map(String::from));
    let o = c.ctr().args(&args).stdin(Stdio::null()).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("hello\n"), "{out}");
    // The cgroup is the relative one ctr asked for, nested below the test's own.
    assert!(out.contains(&c.cgroup("fg")), "{out}");
    assert_gone(&c, "fg");
}

#[test]
fn detached_task_exec_pause_resume_metrics_kill_delete() {
    let c = containerd();
    let id = "bg";
    let mut args = run_args(&c, id);
    args.extend([
        "-d".into(),
        IMAGE.into(),
        id.into(),
        "sleep".into(),
        "1000".into(),
    ]);
    let o = c.ctr().args(&args).stdin(Stdio::null()).output().unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    wait_status(&c, id, "RUNNING");

    // The shim really runs berth-runtime: its state file is berth's, under the shim's --root.
    let state_file = c.ns_path(&format!("/run/containerd/runc/default/{id}/state.json"));
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).unwrap()).unwrap();
    assert_eq!(state["id"], id);
    assert!(
        state["cgroup"]["hierarchies"].is_array(),
        "not berth-runtime's state: {state}"
    );

    // exec: output, exit code, and the process sees the container's pid 1.
    let o = c
        .ctr()
        .args([
            "tasks",
            "exec",
            "--fifo-dir",
            &fifo_dir(&c),
            "--exec-id",
            "e1",
            id,
            "sh",
            "-c",
            "echo exec; ps -o pid,args; exit 5",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(5), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("1 sleep 1000"), "{}", stdout(&o));

    c.ctr_ok("default", &["tasks", "pause", id]);
    wait_status(&c, id, "PAUSED");
    assert!(
        is_frozen(&c.cgroup(id)),
        "paused, but the cgroup is not frozen"
    );
    c.ctr_ok("default", &["tasks", "resume", id]);
    wait_status(&c, id, "RUNNING");

    let metrics: Value =
        serde_json::from_str(&c.ctr_ok("default", &["tasks", "metrics", "--format", "json", id]))
            .unwrap();
    assert!(
        metrics["pids"]["current"].as_u64().unwrap_or(0) >= 1,
        "{metrics}"
    );
    assert!(
        // cgroup v1's memory.usage.usage, v2's memory.usage
        metrics["memory"]["usage"]["usage"]
            .as_u64()
            .or(metrics["memory"]["usage"].as_u64())
            .unwrap_or(0)
            > 0,
        "{metrics}"
    );

    // `ctr tasks ps` asks the shim, which runs `berth-runtime ps --format json`.
    let ps = c.ctr_ok("default", &["tasks", "ps", id]);
    let init = c
        .ctr_ok("default", &["tasks", "ls"])
        .lines()
        .find_map(|l| {
            l.split_whitespace()
                .nth(1)
                .filter(|_| l.starts_with(id))
                .map(str::to_string)
        })
        .unwrap();
    assert!(
        ps.lines()
            .any(|l| l.split_whitespace().next() == Some(init.as_str())),
        "{ps}"
    );

    // exec with a terminal (the console socket again, for an exec process).
    let line = format!(
        "ctr --address '{}' tasks exec -t --fifo-dir '{}' --exec-id e2 {id} sh -c 'tty; exit 6'",
        c.socket.display(),
        fifo_dir(&c)
    );
    let o = Command::new("script")
        .args(["-eqc", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(6), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("/dev/pts/"), "{:?}", stdout(&o));

    // SIGTERM to a pid 1 without a handler does nothing (as with runc); SIGKILL ends it.
    c.ctr_ok("default", &["tasks", "kill", "-s", "SIGKILL", id]);
    wait_status(&c, id, "STOPPED");
    c.ctr_ok("default", &["tasks", "rm", id]);
    c.ctr_ok("default", &["containers", "rm", id]);
    assert_gone(&c, id);
}

#[test]
fn run_with_a_terminal_through_the_console_socket() {
    let c = containerd();
    let mut args = run_args(&c, "tty");
    args.extend(["--rm", "-t", IMAGE, "tty", "sh", "-c", "tty; exit 4"].map(String::from));
    // script(1) gives ctr a terminal of its own; -e returns the command's exit code.
    let line = std::iter::once("ctr".to_string())
        .chain(["--address".to_string(), c.socket.display().to_string()])
        .chain(args)
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let o = Command::new("script")
        .args(["-eqc", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("/dev/pts/0"), "{:?}", stdout(&o));
    assert_gone(&c, "tty");
}

#[test]
fn a_failing_start_is_reported_and_leaves_nothing() {
    let c = containerd();
    let mut args = run_args(&c, "bad");
    args.extend(["--rm", IMAGE, "bad", "/no/such/binary"].map(String::from));
    let o = c.ctr().args(&args).stdin(Stdio::null()).output().unwrap();
    assert!(!o.status.success());
    // The runtime's error reaches the user through the shim (runc's --log JSON).
    let err = stderr(&o);
    assert!(err.contains("/no/such/binary"), "{err}");
    let _ = c.ctr().args(["containers", "rm", "bad"]).output();
    assert_gone(&c, "bad");
    assert!(Path::new(BIN).exists());
}

#[test]
fn the_guard_cleans_up_after_containerd_dies() {
    let mut c = containerd();
    let id = "orphan";
    let mut args = run_args(&c, id);
    args.extend(["-d", IMAGE, id, "sleep", "1000"].map(String::from));
    let o = c.ctr().args(&args).stdin(Stdio::null()).output().unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    wait_status(&c, id, "RUNNING");
    let pid: i32 = std::fs::read_to_string(
        c.dir
            .path()
            .join("state/io.containerd.runtime.v2.task/default")
            .join(id)
            .join("init.pid"),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    let cgroups = cgroup_dirs(&c.cgroup(id));
    c.crash();
    // The shim and the container outlive containerd...
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(c);
    // ...and the guard ends both (by pid) and removes the cgroups.
    let gone = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z'))
    });
    assert!(gone, "container init {pid} left");
    for d in cgroups {
        assert!(!d.exists(), "cgroup {} left", d.display());
    }
}
