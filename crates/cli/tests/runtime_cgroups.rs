//! berth-runtime's cgroup behaviour end to end, as root, on busybox bundles: memory limits and OOM kills,
//! pids limits, pause/resume, update, cpu and cpuset files, device rules, events/stats, ps, kill --all, the
//! cgroup namespace, and that every cgroup directory is gone after delete.
//!
//! The same tests run on this host (cgroup v1 hybrid) and in the pure-v2 QEMU guest
//! (scripts/test-cgroup-v2.sh). Where a property differs between versions the test branches on
//! [`v2`] explicitly and asserts what is right for each; nothing is skipped silently.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testsupport::{stderr, stdout, Bundle, Runtime};

const BIN: &str = env!("CARGO_BIN_EXE_berth-runtime");

const MIB: i64 = 1 << 20;

/// The guest is software-emulated and much slower than this host: deadlines are generous.
const WAIT: Duration = Duration::from_secs(60);

/// testsupport's Bundle::new runs the busybox it has just copied into the rootfs; while another test thread
/// is between fork and exec the child still holds the copy's write fd and that exec fails with ETXTBSY (see
/// the report). Until that is fixed there, retry.
fn bundle(args: &[&str]) -> Bundle {
    for _ in 0..10 {
        if let Ok(b) = std::panic::catch_unwind(|| Bundle::new(args)) {
            return b;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Bundle::new(args)
}

fn rt() -> Runtime {
    Runtime::new(BIN)
}

/// Pure cgroup v2 (the QEMU guest) rather than v1 / hybrid (this host).
fn v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

fn sh(script: &str) -> Vec<&str> {
    vec!["sh", "-c", script]
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Like testsupport's output_via_files, but with `stdin` fed from `input`.
fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut inp = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut inp, input).unwrap();
    inp.rewind().unwrap();
    let mut out = tempfile::tempfile().unwrap();
    let mut err = tempfile::tempfile().unwrap();
    let status = cmd
        .stdin(inp)
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .status()
        .unwrap();
    let (mut o, mut e) = (Vec::new(), Vec::new());
    out.rewind().unwrap();
    out.read_to_end(&mut o).unwrap();
    err.rewind().unwrap();
    err.read_to_end(&mut e).unwrap();
    Output {
        status,
        stdout: o,
        stderr: e,
    }
}

/// `run --detach`, asserting success and "running"; returns the cgroup dirs from state.json.
fn run_detached(rt: &Runtime, b: &Bundle, id: &str) -> Vec<PathBuf> {
    let o = rt.run(&["run", "--detach", "--bundle", b.path.to_str().unwrap(), id]);
    assert!(o.status.success(), "run -d {id}: {}", stderr(&o));
    assert_eq!(rt.status(id), "running");
    let dirs = rt.cgroup_dirs(id);
    assert!(!dirs.is_empty(), "state.json of {id} lists no cgroup dirs");
    for d in &dirs {
        assert!(d.is_dir(), "cgroup dir {} listed but missing", d.display());
    }
    dirs
}

/// The container's host directory for `controller`, from state.json's hierarchies: the v1 hierarchy that has
/// it, else (pure v2, or hybrid-only controllers) the v2 one.
fn cg_dir(rt: &Runtime, id: &str, controller: &str) -> PathBuf {
    let data = std::fs::read(rt.root().join(id).join("state.json")).expect("state.json");
    let v: Value = serde_json::from_slice(&data).unwrap();
    let hs = v["cgroup"]["hierarchies"].as_array().expect("hierarchies");
    let has = |h: &&Value| {
        h["controllers"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c == controller))
    };
    let h = hs
        .iter()
        .find(|h| h["version"] == 1 && has(h))
        .or_else(|| hs.iter().find(|h| h["version"] == 2 && has(h)))
        .unwrap_or_else(|| panic!("no hierarchy with {controller} in {hs:?}"));
    PathBuf::from(h["path"].as_str().unwrap())
}

/// The container's cgroup2 directory (pure v2: its only one; hybrid: the one under the unified mount).
fn v2_dir(rt: &Runtime, id: &str) -> PathBuf {
    let data = std::fs::read(rt.root().join(id).join("state.json")).expect("state.json");
    let v: Value = serde_json::from_slice(&data).unwrap();
    let h = v["cgroup"]["hierarchies"]
        .as_array()
        .and_then(|hs| hs.iter().find(|h| h["version"] == 2))
        .expect("a v2 hierarchy");
    PathBuf::from(h["path"].as_str().unwrap())
}

fn cg_read(rt: &Runtime, id: &str, controller: &str, file: &str) -> String {
    let p = cg_dir(rt, id, controller).join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// `exec` in the container: (exit code, stdout, stderr).
fn exec(rt: &Runtime, id: &str, script: &str) -> (i32, String, String) {
    let o = rt.run(&["exec", id, "sh", "-c", script]);
    (o.status.code().unwrap_or(-1), stdout(&o), stderr(&o))
}

/// kill + delete through the CLI and the "nothing left" property: no state dir, every cgroup dir listed in
/// state.json gone.
fn delete_and_check(rt: &Runtime, id: &str, dirs: &[PathBuf]) {
    let o = rt.run(&["delete", "--force", id]);
    assert!(o.status.success(), "delete --force {id}: {}", stderr(&o));
    assert_no_cgroups(rt, id, dirs);
}

fn assert_no_cgroups(rt: &Runtime, id: &str, dirs: &[PathBuf]) {
    assert!(!rt.root().join(id).exists(), "state dir of {id} left");
    for d in dirs {
        assert!(!d.exists(), "cgroup {} left after delete", d.display());
    }
}

/// Our own memory cgroup (v1) has swap accounting: then memory.swap can be set.
fn v1_swap_accounting() -> bool {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    own.lines()
        .filter_map(|l| {
            l.splitn(3, ':')
                .collect::<Vec<_>>()
                .get(1..3)
                .map(|s| (s[0].to_string(), s[1].to_string()))
        })
        .find(|(c, _)| c.split(',').any(|c| c == "memory"))
        .is_some_and(|(_, p)| {
            Path::new("/sys/fs/cgroup/memory")
                .join(p.trim_start_matches('/'))
                .join("memory.memsw.limit_in_bytes")
                .exists()
        })
}

/// A memory limit of `limit` with swap disabled where that can be said: swap == limit (memory+swap) on v1 with
/// swap accounting, and on v2 (where it means memory.swap.max = 0).
fn memory_limit(limit: i64) -> Value {
    if v2() || v1_swap_accounting() {
        json!({"limit": limit, "swap": limit})
    } else {
        json!({"limit": limit})
    }
}

/// Something that really allocates: dd's block buffer is malloc'd and every page is written by the read.
const ALLOC_100M: &str = "dd if=/dev/zero of=/dev/null bs=100M count=1";

/// Spawns `run` in the foreground, collects the cgroup dirs while it runs, and returns (code, stdout+stderr, dirs).
fn run_foreground_collect_dirs(rt: &Runtime, b: &Bundle, id: &str) -> (i32, String, Vec<PathBuf>) {
    let mut out = tempfile::tempfile().unwrap();
    let mut child = rt
        .cmd()
        .args(["run", "--bundle", b.path.to_str().unwrap(), id])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out.try_clone().unwrap())
        .spawn()
        .unwrap();
    let mut dirs = Vec::new();
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if dirs.is_empty() {
            dirs = rt.cgroup_dirs(id);
        }
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("run {id} did not finish");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut s = String::new();
    out.rewind().unwrap();
    out.read_to_string(&mut s).unwrap();
    (status.code().unwrap_or(-1), s, dirs)
}

#[test]
fn memory_limit_oom_kills_a_foreground_run_with_137() {
    let rt = rt();
    // The sleep gives the test time to read state.json's cgroup dirs before the OOM kill.
    let b = bundle(&sh(&format!("usleep 300000; exec {ALLOC_100M}")));
    b.edit(|c| c["linux"]["resources"]["memory"] = memory_limit(32 * MIB));
    let id = rt.id("oomfg");
    let (code, out, dirs) = run_foreground_collect_dirs(&rt, &b, &id);
    assert_eq!(code, 137, "dd must be OOM-killed (SIGKILL): {out}");
    assert!(!dirs.is_empty(), "never saw the container's cgroup dirs");
    assert_no_cgroups(&rt, &id, &dirs);

    // Control: the same allocation below the limit succeeds.
    let b = bundle(&sh(
        "dd if=/dev/zero of=/dev/null bs=8M count=1 2>/dev/null && echo ok",
    ));
    b.edit(|c| c["linux"]["resources"]["memory"] = memory_limit(32 * MIB));
    let id = rt.id("oomctl");
    let (code, out, dirs) = run_foreground_collect_dirs(&rt, &b, &id);
    assert_eq!((code, out.as_str()), (0, "ok\n"));
    assert_no_cgroups(&rt, &id, &dirs);
}

#[test]
fn oom_in_detached_container_shows_in_events_and_stats() {
    let rt = rt();
    let b = bundle(&["sleep", "600"]);
    b.edit(|c| c["linux"]["resources"]["memory"] = memory_limit(32 * MIB));
    let id = rt.id("oomev");
    let dirs = run_detached(&rt, &b, &id);
    // The limits landed in the host files.
    if v2() {
        assert_eq!(
            cg_read(&rt, &id, "memory", "memory.max"),
            (32 * MIB).to_string()
        );
        let swap_max = cg_dir(&rt, &id, "memory").join("memory.swap.max");
        if swap_max.exists() {
            // OCI swap is memory+swap: swap == limit means no swap at all.
            assert_eq!(
                std::fs::read_to_string(&swap_max).unwrap().trim(),
                "0",
                "memory.swap.max"
            );
        }
    } else {
        assert_eq!(
            cg_read(&rt, &id, "memory", "memory.limit_in_bytes"),
            (32 * MIB).to_string()
        );
        if v1_swap_accounting() {
            assert_eq!(
                cg_read(&rt, &id, "memory", "memory.memsw.limit_in_bytes"),
                (32 * MIB).to_string()
            );
        }
    }

    // `events` (streaming) establishes its OOM baseline with the first stats line, then reports the kill.
    let evf = tempfile::NamedTempFile::new().unwrap();
    let mut events = rt
        .cmd()
        .args(["events", "--interval", "100ms", &id])
        .stdin(Stdio::null())
        .stdout(evf.reopen().unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let read_events = || std::fs::read_to_string(evf.path()).unwrap_or_default();
    wait_until("first events line", || read_events().contains("\"stats\""));

    let (code, _, err) = exec(&rt, &id, ALLOC_100M);
    assert_eq!(code, 137, "exec'd dd must be OOM-killed: {err}");
    wait_until("an oom event", || {
        read_events()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|v| v["type"] == "oom" && v["id"] == id.as_str())
    });
    let _ = events.kill(); // our own child, by pid
    let _ = events.wait();

    // The init (tiny sleep) was not the victim: the container still runs.
    assert_eq!(rt.status(&id), "running");
    let oom_file = if v2() {
        "memory.events"
    } else {
        "memory.oom_control"
    };
    let kills: u64 = cg_read(&rt, &id, "memory", oom_file)
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .expect("oom_kill counter")
        .trim()
        .parse()
        .unwrap();
    assert!(kills >= 1, "oom_kill = {kills}");

    let o = rt.run(&["events", "--stats", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("one JSON object");
    let usage = &v["data"]["memory"]["usage"];
    assert_eq!(usage["limit"], 32 * MIB, "{v}");
    // Peak usage reached the limit (v1 max_usage_in_bytes; v2 memory.peak where the kernel has it).
    let max = usage["max"].as_u64().unwrap();
    assert!(
        max >= 24 * MIB as u64 || (v2() && max == 0),
        "peak usage near the limit: {v}"
    );
    if v2() {
        // memory.events "max": times usage hit memory.max.
        assert!(
            usage["failcnt"].as_u64().unwrap() > 0,
            "the limit was hit: {v}"
        );
    }
    // (v1: memory.failcnt stays 0 on this host's 6.18 kernel even after an OOM kill, checked by hand on a
    // bare cgroup, so it is not asserted; the oom_kill counter above is the v1 evidence.)

    delete_and_check(&rt, &id, &dirs);
}

#[test]
fn pids_limit_makes_fork_fail_and_kill_all_reaches_every_process() {
    let rt = rt();
    let b = bundle(&["sleep", "600"]);
    b.edit(|c| c["linux"]["resources"]["pids"] = json!({"limit": 5}));
    let id = rt.id("pids");
    let dirs = run_detached(&rt, &b, &id);
    assert_eq!(cg_read(&rt, &id, "pids", "pids.max"), "5");

    let (code, _, err) = exec(
        &rt,
        &id,
        "for i in 1 2 3 4 5 6 7 8; do sleep 600 & done; echo spawned",
    );
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("can't fork") || err.contains("Resource temporarily unavailable"),
        "fork must fail: {err}"
    );
    let current: u64 = cg_read(&rt, &id, "pids", "pids.current").parse().unwrap();
    assert!((2..=5).contains(&current), "pids.current = {current}");

    let o = rt.run(&["events", "--stats", &id]);
    let v: Value = serde_json::from_str(stdout(&o).trim()).expect("stats JSON");
    assert_eq!(v["data"]["pids"]["limit"], 5, "{v}");
    assert_eq!(v["data"]["pids"]["current"], current, "{v}");

    let ps: Vec<i32> =
        serde_json::from_slice(&rt.run(&["ps", "--format", "json", &id]).stdout).unwrap();
    assert_eq!(ps.len() as u64, current, "ps lists every process: {ps:?}");
    let init = rt.state(&id)["pid"].as_i64().unwrap() as i32;
    assert!(ps.contains(&init), "{ps:?} lacks init {init}");

    // kill --all: every process, not only the init, gets the signal.
    let o = rt.run(&["kill", "--all", &id, "KILL"]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("all processes dead", || {
        ps.iter().all(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).map_or(true, |s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
        })
    });
    wait_until("stopped", || rt.status(&id) == "stopped");
    let o = rt.run(&["delete", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_no_cgroups(&rt, &id, &dirs);
}

#[test]
fn pids_limit_in_a_foreground_run() {
    let rt = rt();
    let b = bundle(&sh(
        "for i in 1 2 3 4 5 6 7 8; do sleep 30 & done; echo spawned-all",
    ));
    b.edit(|c| c["linux"]["resources"]["pids"] = json!({"limit": 5}));
    let id = rt.id("pidsfg");
    let (code, out, dirs) = run_foreground_collect_dirs(&rt, &b, &id);
    assert_ne!(code, 0, "{out}");
    assert!(!out.contains("spawned-all"), "{out}");
    assert!(
        out.contains("can't fork") || out.contains("Resource temporarily unavailable"),
        "{out}"
    );
    assert_no_cgroups(&rt, &id, &dirs);
}

fn counter(b: &Bundle) -> u64 {
    std::fs::read_to_string(b.rootfs().join("tmp/counter"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn pause_freezes_and_resume_continues() {
    let rt = rt();
    let b = bundle(&sh(
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/counter.new; mv /tmp/counter.new /tmp/counter; usleep 10000; done",
    ));
    b.edit(|c| c["root"]["readonly"] = json!(false));
    let id = rt.id("pause");
    let dirs = run_detached(&rt, &b, &id);
    wait_until("counter running", || counter(&b) >= 3);

    let o = rt.run(&["pause", &id]);
    assert!(o.status.success(), "pause: {}", stderr(&o));
    assert_eq!(rt.status(&id), "paused");
    if v2() {
        let dir = v2_dir(&rt, &id);
        assert_eq!(
            std::fs::read_to_string(dir.join("cgroup.freeze"))
                .unwrap()
                .trim(),
            "1"
        );
        let events = std::fs::read_to_string(dir.join("cgroup.events")).unwrap();
        assert!(events.lines().any(|l| l == "frozen 1"), "{events}");
    } else {
        assert_eq!(cg_read(&rt, &id, "freezer", "freezer.state"), "FROZEN");
    }
    let init = rt.state(&id)["pid"].as_i64().unwrap();
    let st = std::fs::read_to_string(format!("/proc/{init}/status")).unwrap();
    let state_line = st
        .lines()
        .find(|l| l.starts_with("State:"))
        .unwrap()
        .to_string();
    // v1 (and the kernel's TASK_FROZEN) shows D; the v2 freezer parks tasks in an interruptible trap (S).
    assert!(
        state_line.contains("D (") || state_line.contains("S (") || state_line.contains("T ("),
        "{state_line}"
    );
    let frozen_at = counter(&b);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(counter(&b), frozen_at, "the counter moved while paused");
    // Pausing twice and resuming a running container are refused.
    assert!(
        !rt.run(&["pause", &id]).status.success(),
        "pause of a paused container"
    );
    let ps: Vec<i32> =
        serde_json::from_slice(&rt.run(&["ps", "--format", "json", &id]).stdout).unwrap();
    assert!(ps.contains(&(init as i32)), "ps works while paused: {ps:?}");

    let o = rt.run(&["resume", &id]);
    assert!(o.status.success(), "resume: {}", stderr(&o));
    assert_eq!(rt.status(&id), "running");
    assert!(
        !rt.run(&["resume", &id]).status.success(),
        "resume of a running container"
    );
    wait_until("counter moving after resume", || {
        counter(&b) > frozen_at + 2
    });

    // delete --force of a paused container kills it and removes its cgroups (a frozen v1 cgroup must be thawed).
    let o = rt.run(&["pause", &id]);
    assert!(o.status.success(), "pause: {}", stderr(&o));
    delete_and_check(&rt, &id, &dirs);
    assert!(
        std::fs::read_to_string(format!("/proc/{init}/stat")).map_or(true, |s| s.contains(") Z")),
        "init {init} survived delete --force of a paused container"
    );
}

#[test]
fn update_changes_limits_of_a_running_container() {
    let rt = rt();
    let b = bundle(&["sleep", "600"]);
    b.edit(|c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 64 * MIB});
        c["linux"]["resources"]["pids"] = json!({"limit": 100});
    });
    let id = rt.id("update");
    let dirs = run_detached(&rt, &b, &id);
    let (mem_file, cpu_check) = if v2() {
        ("memory.max", "cpu.max")
    } else {
        ("memory.limit_in_bytes", "cpu.cfs_quota_us")
    };
    assert_eq!(
        cg_read(&rt, &id, "memory", mem_file),
        (64 * MIB).to_string()
    );
    assert_eq!(cg_read(&rt, &id, "pids", "pids.max"), "100");

    let o = rt.run(&[
        "update",
        "--memory",
        "48m",
        "--pids-limit",
        "20",
        "--cpu-period",
        "100000",
        "--cpu-quota",
        "50000",
        &id,
    ]);
    assert!(o.status.success(), "update: {}", stderr(&o));
    assert_eq!(
        cg_read(&rt, &id, "memory", mem_file),
        (48 * MIB).to_string()
    );
    assert_eq!(cg_read(&rt, &id, "pids", "pids.max"), "20");
    if v2() {
        assert_eq!(cg_read(&rt, &id, "cpu", cpu_check), "50000 100000");
    } else {
        assert_eq!(cg_read(&rt, &id, "cpu", cpu_check), "50000");
        assert_eq!(cg_read(&rt, &id, "cpu", "cpu.cfs_period_us"), "100000");
    }
    // The container sees the same values in its own /sys/fs/cgroup (cgroup namespace).
    let inside = if v2() {
        "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max"
    } else {
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us"
    };
    let (code, out, err) = exec(&rt, &id, inside);
    assert_eq!(code, 0, "{err}");
    let want_cpu = if v2() { "50000 100000" } else { "50000" };
    assert_eq!(out, format!("{}\n20\n{want_cpu}\n", 48 * MIB));

    // --resources - : linux.resources JSON on stdin.
    let o = run_with_stdin(
        rt.cmd().args(["update", "--resources", "-", &id]),
        json!({"memory": {"limit": 80 * MIB}, "pids": {"limit": 30}, "cpu": {"quota": 25000, "period": 100000}})
            .to_string()
            .as_bytes(),
    );
    assert!(o.status.success(), "update -r -: {}", stderr(&o));
    assert_eq!(
        cg_read(&rt, &id, "memory", mem_file),
        (80 * MIB).to_string()
    );
    assert_eq!(cg_read(&rt, &id, "pids", "pids.max"), "30");
    let want_cpu = if v2() { "25000 100000" } else { "25000" };
    assert_eq!(cg_read(&rt, &id, "cpu", cpu_check), want_cpu);

    // A swap limit, as dockerd's `update --memory-swap` sends it: OCI swap is memory+swap; v2's
    // memory.swap.max is the swap alone.
    if v2() || v1_swap_accounting() {
        let o = run_with_stdin(
            rt.cmd().args(["update", "--resources", "-", &id]),
            json!({"memory": {"limit": 80 * MIB, "swap": 160 * MIB}})
                .to_string()
                .as_bytes(),
        );
        assert!(o.status.success(), "update swap: {}", stderr(&o));
        let (file, want) = if v2() {
            ("memory.swap.max", 80 * MIB)
        } else {
            ("memory.memsw.limit_in_bytes", 160 * MIB)
        };
        assert_eq!(cg_read(&rt, &id, "memory", file), want.to_string());
    }

    // Unlimited again: -1.
    // (The `=` form: clap rejects a separate "-1" value, see the report.)
    let o = rt.run(&["update", "--pids-limit=-1", "--cpu-quota=-1", &id]);
    assert!(o.status.success(), "update -1: {}", stderr(&o));
    assert_eq!(cg_read(&rt, &id, "pids", "pids.max"), "max");
    if v2() {
        assert_eq!(cg_read(&rt, &id, "cpu", cpu_check), "max 100000");
    } else {
        assert_eq!(cg_read(&rt, &id, "cpu", cpu_check), "-1");
    }

    // Bad input: a clear error, limits unchanged.
    let o = run_with_stdin(rt.cmd().args(["update", "-r", "-", &id]), b"{\"memory\": ");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("invalid linux.resources JSON"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        cg_read(&rt, &id, "memory", mem_file),
        (80 * MIB).to_string()
    );

    delete_and_check(&rt, &id, &dirs);
    // update of a gone container fails.
    assert!(!rt
        .run(&["update", "--pids-limit", "7", &id])
        .status
        .success());
}

#[test]
fn cpu_shares_quota_and_cpuset_are_written() {
    let rt = rt();
    let b = bundle(&["sleep", "600"]);
    b.edit(|c| {
        c["linux"]["resources"]["cpu"] =
            json!({"shares": 512, "quota": 20000, "period": 100000, "cpus": "0", "mems": "0"})
    });
    let id = rt.id("cpu");
    let dirs = run_detached(&rt, &b, &id);
    if v2() {
        // runc's shares → weight mapping: 512 → 59.
        assert_eq!(cg_read(&rt, &id, "cpu", "cpu.weight"), "59");
        assert_eq!(cg_read(&rt, &id, "cpu", "cpu.max"), "20000 100000");
        assert_eq!(cg_read(&rt, &id, "cpuset", "cpuset.cpus"), "0");
        assert_eq!(cg_read(&rt, &id, "cpuset", "cpuset.mems"), "0");
        assert_eq!(cg_read(&rt, &id, "cpuset", "cpuset.cpus.effective"), "0");
    } else {
        assert_eq!(cg_read(&rt, &id, "cpu", "cpu.shares"), "512");
        assert_eq!(cg_read(&rt, &id, "cpu", "cpu.cfs_quota_us"), "20000");
        assert_eq!(cg_read(&rt, &id, "cpu", "cpu.cfs_period_us"), "100000");
        assert_eq!(cg_read(&rt, &id, "cpuset", "cpuset.cpus"), "0");
        assert_eq!(cg_read(&rt, &id, "cpuset", "cpuset.mems"), "0");
    }
    // The init really is confined to CPU 0.
    let (code, out, err) = exec(&rt, &id, "grep Cpus_allowed_list /proc/1/status");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.split_whitespace().last(), Some("0"), "{out}");

    // update --cpu-share / --cpuset-cpus.
    let o = rt.run(&["update", "--cpu-share", "1024", "--cpuset-cpus", "0", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    if v2() {
        assert_eq!(cg_read(&rt, &id, "cpu", "cpu.weight"), "100");
    } else {
        assert_eq!(cg_read(&rt, &id, "cpu", "cpu.shares"), "1024");
    }
    delete_and_check(&rt, &id, &dirs);
}

#[test]
fn device_rules_deny_what_is_not_allowed() {
    let rt = rt();
    let b = bundle(&["sleep", "600"]);
    let caps = json!(["CAP_MKNOD", "CAP_DAC_OVERRIDE", "CAP_KILL"]);
    b.edit(|c| {
        c["process"]["capabilities"] =
            json!({"bounding": caps, "effective": caps, "permitted": caps})
    });
    // Nodes made on the host, inside the image: c 1:1 (/dev/mem, not allowed) and c 1:5 (/dev/zero, allowed).
    // Only the device cgroup can refuse them (opening a node on a nodev mount would be EACCES, not EPERM).
    for (name, minor) in [("hostmem", 1), ("hostzero", 5)] {
        let p = std::ffi::CString::new(b.rootfs().join(name).to_str().unwrap()).unwrap();
        // SAFETY: valid C string; mknod has no memory-safety preconditions.
        let r = unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, minor)) };
        assert_eq!(r, 0, "mknod {name}: {}", std::io::Error::last_os_error());
    }
    let id = rt.id("dev");
    let dirs = run_detached(&rt, &b, &id);

    let (code, out, err) = exec(&rt, &id, "head -c1 /dev/zero | wc -c; head -c1 /hostzero | wc -c; echo x > /dev/null && echo null-ok");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1\n1\nnull-ok\n", "{err}");

    let (code, _, err) = exec(&rt, &id, "head -c1 /hostmem");
    assert_ne!(code, 0);
    assert!(
        err.contains("Operation not permitted"),
        "open of c 1:1 must be EPERM: {err}"
    );

    // mknod inside, with CAP_MKNOD: an allowed device works, a denied one is refused by the device cgroup.
    let (code, out, err) = exec(
        &rt,
        &id,
        "mknod /dev/n2 c 1 3 && echo y > /dev/n2 && echo mknod-null-ok",
    );
    assert_eq!((code, out.as_str()), (0, "mknod-null-ok\n"), "{err}");
    let (code, _, err) = exec(&rt, &id, "mknod /dev/m2 c 1 1");
    assert_ne!(code, 0);
    assert!(
        err.contains("Operation not permitted"),
        "mknod c 1:1 must be EPERM: {err}"
    );

    if !v2() {
        let list = cg_read(&rt, &id, "devices", "devices.list");
        assert!(list.lines().any(|l| l == "c 1:5 rwm"), "{list}");
        assert!(
            !list.lines().any(|l| l.starts_with("a ")),
            "deny-all first: {list}"
        );
        assert!(!list.lines().any(|l| l.starts_with("c 1:1 ")), "{list}");
    }
    // (v2: the rules are a BPF program attached to the cgroup; the behaviour above is the check.)
    delete_and_check(&rt, &id, &dirs);
}

#[test]
fn events_stats_and_ps() {
    let rt = rt();
    let b = bundle(&["sleep", "600"]);
    b.edit(|c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 100 * MIB});
        c["linux"]["resources"]["pids"] = json!({"limit": 50});
    });
    let id = rt.id("stats");
    let dirs = run_detached(&rt, &b, &id);
    let extra = rt.exec_detached(&id, &b.path, &["sleep", "600"]);

    let o = rt.run(&["events", "--stats", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert_eq!(text.lines().count(), 1, "exactly one JSON line: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], id.as_str());
    let d = &v["data"];
    assert_eq!(d["memory"]["usage"]["limit"], 100 * MIB, "{d}");
    assert!(d["memory"]["usage"]["usage"].as_u64().unwrap() > 0, "{d}");
    assert!(
        d["memory"]["raw"]
            .as_object()
            .is_some_and(|m| !m.is_empty()),
        "{d}"
    );
    assert!(d["cpu"]["usage"]["total"].as_u64().unwrap() > 0, "{d}");
    assert!(d["cpu"]["throttling"].is_object(), "{d}");
    assert_eq!(d["pids"]["current"], 2, "{d}");
    assert_eq!(d["pids"]["limit"], 50, "{d}");

    let ps: Vec<i32> =
        serde_json::from_slice(&rt.run(&["ps", "--format", "json", &id]).stdout).unwrap();
    let init = rt.state(&id)["pid"].as_i64().unwrap() as i32;
    let mut want = vec![init, extra];
    want.sort();
    assert_eq!(ps, want);
    // The table form keeps ps's header and only the container's processes.
    let table = stdout(&rt.run(&["ps", &id]));
    assert!(
        table.lines().next().unwrap_or("").contains("PID"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 3, "{table}");

    delete_and_check(&rt, &id, &dirs);
    let o = rt.run(&["events", "--stats", &id]);
    assert!(!o.status.success(), "events --stats of a deleted container");
}

#[test]
fn cgroup_namespace_shows_root_paths_and_own_cgroup() {
    let rt = rt();
    let script = if v2() {
        "cat /proc/self/cgroup; echo ---; cat /sys/fs/cgroup/memory.max; cat /sys/fs/cgroup/cgroup.procs | wc -l"
    } else {
        "cat /proc/self/cgroup; echo ---; cat /sys/fs/cgroup/memory/memory.limit_in_bytes; cat /sys/fs/cgroup/memory/cgroup.procs | wc -l"
    };
    let b = bundle(&sh(script));
    b.edit(|c| c["linux"]["resources"]["memory"] = json!({"limit": 48 * MIB}));
    let id = rt.id("cgns");
    let (code, out, dirs) = run_foreground_collect_dirs(&rt, &b, &id);
    assert_eq!(code, 0, "{out}");
    let (cg, rest) = out.split_once("---\n").expect(&out);
    assert!(!cg.trim().is_empty(), "{out}");
    for l in cg.lines() {
        assert!(
            l.ends_with(":/"),
            "cgroupns: every path is /: {l:?} in {cg}"
        );
    }
    if v2() {
        assert_eq!(cg.trim(), "0::/");
    }
    let mut r = rest.lines();
    assert_eq!(r.next(), Some((48 * MIB).to_string().as_str()), "{out}");
    // sh, cat, wc (and maybe a subshell): only the container's processes, not the host's.
    let n: usize = r.next().unwrap().trim().parse().unwrap();
    assert!((1..=4).contains(&n), "{out}");
    assert_no_cgroups(&rt, &id, &dirs);

    // Without a cgroup namespace, /proc/self/cgroup shows host paths and /sys/fs/cgroup is a bind of the
    // container's own cgroup.
    let b = bundle(&sh(script));
    b.edit(|c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 40 * MIB});
        c["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|n| n["type"] != "cgroup");
    });
    let id = rt.id("nocgns");
    let (code, out, dirs) = run_foreground_collect_dirs(&rt, &b, &id);
    assert_eq!(code, 0, "{out}");
    let (cg, rest) = out.split_once("---\n").expect(&out);
    assert!(
        cg.contains(&format!("/{id}\n")),
        "host paths end in the id: {cg}"
    );
    assert_eq!(
        rest.lines().next(),
        Some((40 * MIB).to_string().as_str()),
        "{out}"
    );
    assert_no_cgroups(&rt, &id, &dirs);
}

#[test]
fn create_then_delete_without_start_removes_cgroups() {
    let rt = rt();
    let b = bundle(&["sleep", "600"]);
    b.edit(|c| {
        c["linux"]["resources"]["memory"] = json!({"limit": 64 * MIB});
        c["linux"]["resources"]["pids"] = json!({"limit": 10});
    });
    let id = rt.id("created");
    let o = rt.run(&["create", "--bundle", b.path.to_str().unwrap(), &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(rt.status(&id), "created");
    let dirs = rt.cgroup_dirs(&id);
    assert!(!dirs.is_empty());
    let init = rt.state(&id)["pid"].as_i64().unwrap() as i32;
    let ps: Vec<i32> =
        serde_json::from_slice(&rt.run(&["ps", "--format", "json", &id]).stdout).unwrap();
    assert_eq!(ps, vec![init], "the waiting init is already in the cgroup");
    let o = rt.run(&["delete", &id]);
    assert!(
        o.status.success(),
        "delete of a created container: {}",
        stderr(&o)
    );
    assert_no_cgroups(&rt, &id, &dirs);

    // An invalid limit fails create and leaves no cgroup behind (and no state).
    let b = bundle(&["true"]);
    b.edit(|c| c["linux"]["resources"]["memory"] = json!({"limit": 32 * MIB, "swap": 16 * MIB}));
    let id = rt.id("badswap");
    let o = rt.run(&["create", "--bundle", b.path.to_str().unwrap(), &id]);
    assert!(!o.status.success(), "swap below the limit must be refused");
    assert!(!rt.root().join(&id).exists());
    let parent_mem = own_cgroup_dir_for_memory();
    if let Some(p) = parent_mem {
        assert!(
            !p.join(&id).exists(),
            "cgroup {} left",
            p.join(&id).display()
        );
    }
}

/// The memory cgroup directory this test process is in (where relative container cgroups nest).
fn own_cgroup_dir_for_memory() -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for l in own.lines() {
        let mut it = l.splitn(3, ':');
        let (_, c, p) = (it.next()?, it.next()?, it.next()?);
        let rel = p.trim_start_matches('/');
        if v2() && c.is_empty() {
            return Some(Path::new("/sys/fs/cgroup").join(rel));
        }
        if !v2() && c.split(',').any(|c| c == "memory") {
            return Some(Path::new("/sys/fs/cgroup/memory").join(rel));
        }
    }
    None
}
