//! Root integration tests against the host's real cgroups (v1/hybrid on the host, pure v2 in
//! the VM). Every cgroup is created below the test's own cgroup with a unique name and removed
//! by a Drop guard, also when an assertion fails. Tests are independent and run in parallel.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cgroups::{Cgroup, CgroupMountSource, CgroupState};
use oci_spec::runtime::LinuxResources;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique(tag: &str) -> String {
    format!(
        "berth-test-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        tag
    )
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn pure_v2() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains(" /sys/fs/cgroup ") && l.contains(" - cgroup2 "))
}

/// Own v2 cgroup is a non-root leaf with processes (e.g. run-in-vm.sh -g): controllers cannot be
/// delegated below it, see lib.rs.
fn v2_busy_leaf() -> bool {
    pure_v2()
        && std::fs::read_to_string("/proc/self/cgroup")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("0::/") && l.trim() != "0::/")
}

fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("test resources JSON")
}

/// Owns the cgroup and the child processes of one test; cleans up in Drop.
struct Guard {
    cg: Option<Cgroup>,
    children: Vec<Child>,
}

impl Guard {
    fn new(cg: Cgroup) -> Guard {
        Guard {
            cg: Some(cg),
            children: Vec::new(),
        }
    }
    fn cg(&self) -> &Cgroup {
        self.cg.as_ref().expect("cgroup present")
    }
    fn spawn(&mut self, args: &[&str]) -> i32 {
        let c = Command::new(args[0])
            .args(&args[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let pid = c.id() as i32;
        self.children.push(c);
        pid
    }
    /// SIGKILL only: a frozen v1 cgroup holds the signal until thawed, so waiting here could hang.
    fn kill_no_wait(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
        }
    }
    fn kill_children(&mut self) {
        self.kill_no_wait();
        if let Some(cg) = &self.cg {
            let _ = cg.thaw();
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(cg) = &self.cg {
            let _ = cg.thaw();
        }
        self.kill_children();
        if let Some(cg) = self.cg.take() {
            let _ = cg.destroy();
        }
    }
}

fn read(dir: &Path, f: &str) -> String {
    std::fs::read_to_string(dir.join(f))
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.join(f).display()))
        .trim()
        .to_string()
}

/// Directory of the container in the hierarchy that has `controller` (v1) or the v2 one.
fn dir_for(st: &CgroupState, controller: &str) -> PathBuf {
    st.hierarchies
        .iter()
        .find(|h| h.controllers.iter().any(|c| c == controller))
        .or_else(|| st.hierarchies.iter().find(|h| h.version == 2))
        .map(|h| h.path.clone())
        .expect("hierarchy")
}

fn proc_state(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("State:"))
        .unwrap_or("")
        .to_string()
}

#[test]
fn create_destroy_leaves_nothing_and_state_round_trips() {
    if !is_root() {
        return;
    }
    let id = unique("plain");
    let cg = Cgroup::create(None, &id, None).expect("create");
    let st = cg.state();
    assert!(!st.dirs.is_empty());
    for d in &st.dirs {
        assert!(d.is_dir(), "{} created", d.display());
        assert!(d.ends_with(&id), "{} named after the id", d.display());
    }
    let json = serde_json::to_string(&st).expect("serialize");
    let back: CgroupState = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, st);
    // Old state files had only "dirs".
    let old: CgroupState = serde_json::from_str(r#"{"dirs":["/nonexistent"]}"#).expect("old");
    assert_eq!(old.dirs.len(), 1);
    let g = Guard::new(Cgroup::from_state(&back));
    g.cg().destroy().expect("destroy");
    for d in &st.dirs {
        assert!(!d.exists(), "{} removed", d.display());
    }
    g.cg().destroy().expect("second destroy is fine");
}

#[test]
fn nested_relative_path_and_bad_paths() {
    if !is_root() {
        return;
    }
    let id = unique("nested");
    let rel = PathBuf::from(format!("{id}/inner"));
    let g = Guard::new(Cgroup::create(Some(&rel), &id, None).expect("create nested"));
    let st = g.cg().state();
    for h in &st.hierarchies {
        assert!(h.path.ends_with(&rel), "{}", h.path.display());
    }
    g.cg().destroy().expect("destroy");
    for d in &st.dirs {
        assert!(!d.exists(), "{} removed", d.display());
    }
    let bad = PathBuf::from("../escape");
    assert!(Cgroup::create(Some(&bad), "x", None).is_err());
}

#[test]
fn failed_create_removes_what_it_made() {
    if !is_root() {
        return;
    }
    let id = unique("fail");
    // A bogus unified key fails on every layout (v1: unified not allowed, v2: no such file).
    let r = res(r#"{"unified":{"berth.no.such.file":"1"}}"#);
    let err = match Cgroup::create(None, &id, Some(&r)) {
        Ok(cg) => {
            let _ = Guard::new(cg);
            panic!("create must fail");
        }
        Err(e) => e.to_string(),
    };
    assert!(err.contains("linux.resources.unified"), "{err}");
    let pc = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    // Nothing named after the id is left in any hierarchy.
    for line in pc.lines() {
        let own = line.splitn(3, ':').nth(2).unwrap_or("/");
        for root in [
            "/sys/fs/cgroup",
            "/sys/fs/cgroup/memory",
            "/sys/fs/cgroup/unified",
        ] {
            let p = Path::new(root).join(own.trim_start_matches('/')).join(&id);
            assert!(!p.exists(), "{} left behind", p.display());
        }
    }
}

#[test]
fn limits_are_written() {
    if !is_root() || v2_busy_leaf() {
        return;
    }
    let id = unique("limits");
    let r = res(
        r#"{"memory":{"limit":67108864,"reservation":33554432,"swap":134217728},
            "cpu":{"shares":1024,"quota":50000,"period":100000,"cpus":"0","mems":"0"},
            "pids":{"limit":50}}"#,
    );
    let g = Guard::new(Cgroup::create(None, &id, Some(&r)).expect("create with limits"));
    let st = g.cg().state();
    let mem = dir_for(&st, "memory");
    let cpu = dir_for(&st, "cpu");
    let cpuset = dir_for(&st, "cpuset");
    let pids = dir_for(&st, "pids");
    if pure_v2() {
        assert_eq!(read(&mem, "memory.max"), "67108864");
        assert_eq!(read(&mem, "memory.low"), "33554432");
        if mem.join("memory.swap.max").exists() {
            assert_eq!(read(&mem, "memory.swap.max"), "67108864");
        }
        assert_eq!(read(&cpu, "cpu.weight"), "100");
        assert_eq!(read(&cpu, "cpu.max"), "50000 100000");
        assert_eq!(read(&pids, "pids.max"), "50");
    } else {
        assert_eq!(read(&mem, "memory.limit_in_bytes"), "67108864");
        assert_eq!(read(&mem, "memory.soft_limit_in_bytes"), "33554432");
        if mem.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(read(&mem, "memory.memsw.limit_in_bytes"), "134217728");
        }
        assert_eq!(read(&cpu, "cpu.shares"), "1024");
        assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(&pids, "pids.max"), "50");
    }
    assert_eq!(read(&cpuset, "cpuset.cpus"), "0");
    assert_eq!(read(&cpuset, "cpuset.mems"), "0");

    // update: lower memory (and swap), raise pids.
    g.cg()
        .update(&res(
            r#"{"memory":{"limit":33554432,"swap":33554432},"pids":{"limit":-1}}"#,
        ))
        .expect("update");
    assert_eq!(read(&pids, "pids.max"), "max");
    if pure_v2() {
        assert_eq!(read(&mem, "memory.max"), "33554432");
    } else {
        assert_eq!(read(&mem, "memory.limit_in_bytes"), "33554432");
    }
}

#[test]
fn hugetlb_limit() {
    if !is_root() || v2_busy_leaf() {
        return;
    }
    // On a hybrid host, creating a cgroup with hugepage limits enables hugetlb in the caller's own unified
    // cgroup (the root here). Put back what this test found there.
    let _restore = SubtreeRestore::new("/sys/fs/cgroup/unified", "hugetlb");
    let id = unique("huge");
    let r = res(r#"{"hugepageLimits":[{"pageSize":"2MB","limit":4194304}]}"#);
    let cg = match Cgroup::create(None, &id, Some(&r)) {
        Ok(cg) => cg,
        Err(e) => {
            // Only acceptable when the kernel really has no hugetlb for 2MB pages.
            let msg = e.to_string();
            assert!(msg.contains("linux.resources.hugepageLimits"), "{msg}");
            eprintln!("hugetlb unavailable: {msg}");
            return;
        }
    };
    let g = Guard::new(cg);
    let st = g.cg().state();
    let dir = dir_for(&st, "hugetlb");
    let file = if st
        .hierarchies
        .iter()
        .any(|h| h.version == 2 && h.path == dir)
    {
        "hugetlb.2MB.max"
    } else {
        "hugetlb.2MB.limit_in_bytes"
    };
    assert_eq!(read(&dir, file), "4194304");
    let stats = g.cg().stats().expect("stats");
    assert!(stats["hugetlb"]["2MB"].is_object(), "{stats}");
}

#[test]
fn process_freeze_thaw_pids_stats_destroy() {
    if !is_root() {
        return;
    }
    let id = unique("proc");
    let mut g = Guard::new(Cgroup::create(None, &id, None).expect("create"));
    let pid = g.spawn(&["sleep", "1000"]);
    g.cg().add_process(pid).expect("add_process");
    let pids = g.cg().pids().expect("pids");
    assert_eq!(pids, vec![pid]);
    for h in &g.cg().state().hierarchies {
        assert!(read(&h.path, "cgroup.procs")
            .lines()
            .any(|l| l == pid.to_string()));
    }

    assert!(!g.cg().is_frozen());
    g.cg().freeze().expect("freeze");
    assert!(g.cg().is_frozen());
    let frozen_state = proc_state(pid);
    // v1 freezer: "D (disk sleep)"; v2: the task sits in a stopped/sleeping state.
    assert!(!frozen_state.contains("R ("), "{frozen_state}");
    eprintln!("frozen: {frozen_state}");
    g.cg().thaw().expect("thaw");
    assert!(!g.cg().is_frozen());
    // The thawed task may still be on its way back to sleep for a moment.
    let mut state = proc_state(pid);
    for _ in 0..200 {
        if state.contains("S (") {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
        state = proc_state(pid);
    }
    assert!(state.contains("S ("), "{state}");

    let stats = g.cg().stats().expect("stats");
    for k in ["cpu", "memory", "pids", "blkio", "hugetlb"] {
        assert!(stats.get(k).is_some(), "{k} in {stats}");
    }
    assert!(stats["cpu"]["usage"]["total"].is_u64(), "{stats}");
    if !v2_busy_leaf() {
        assert_eq!(stats["pids"]["current"], 1, "{stats}");
        // Charges do not move with a migrated task, so usage may be 0; the limit is always set.
        assert!(
            stats["memory"]["usage"]["limit"].as_u64().unwrap_or(0) > 0,
            "{stats}"
        );
    }
    assert_eq!(g.cg().oom_kills(), 0);

    // Freeze, then destroy straight after killing: destroy thaws (v1) and retries EBUSY.
    g.cg().freeze().expect("freeze again");
    g.kill_no_wait();
    let st = g.cg().state();
    g.cg().destroy().expect("destroy");
    for c in &mut g.children {
        let _ = c.wait();
    }
    for d in &st.dirs {
        assert!(!d.exists(), "{} removed", d.display());
    }
}

/// Runs a shell in the cgroup that reports which device opens worked.
fn device_probe(g: &mut Guard) -> String {
    let pid = g.spawn(&[
        "sh",
        "-c",
        "read _; (: </dev/null) 2>/dev/null && echo null-ok; (: </dev/zero) 2>/dev/null && echo zero-ok; echo done",
    ]);
    g.cg().add_process(pid).expect("add_process");
    let child = g.children.last_mut().expect("child");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin).expect("go");
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    let lines: Vec<String> = out.lines().map_while(Result::ok).collect();
    lines.join(",")
}

#[test]
fn device_rules_enforced_and_replaced() {
    if !is_root() {
        return;
    }
    let id = unique("dev");
    let r = res(r#"{"devices":[{"allow":false,"access":"rwm"},
                       {"allow":true,"type":"c","major":1,"minor":3,"access":"rw"}]}"#);
    let mut g = Guard::new(Cgroup::create(None, &id, Some(&r)).expect("create with devices"));
    assert_eq!(device_probe(&mut g), "null-ok,done");
    if !pure_v2() {
        let dir = dir_for(&g.cg().state(), "devices");
        assert_eq!(read(&dir, "devices.list"), "c 1:3 rw");
    }
    // Update replaces the rules (v2: the old program must be detached, or it still denies).
    g.cg()
        .update(&res(r#"{"devices":[{"allow":true,"access":"rwm"}]}"#))
        .expect("update devices");
    assert_eq!(device_probe(&mut g), "null-ok,zero-ok,done");
    g.kill_children();
    std::thread::sleep(Duration::from_millis(10));
}

#[test]
fn mounts_describe_each_hierarchy() {
    if !is_root() {
        return;
    }
    let id = unique("mounts");
    let g = Guard::new(Cgroup::create(None, &id, None).expect("create"));
    let st = g.cg().state();
    let binds = g.cg().mounts(false);
    assert_eq!(binds.len(), st.hierarchies.len());
    for (m, h) in binds.iter().zip(&st.hierarchies) {
        match &m.source {
            CgroupMountSource::Bind(p) => assert_eq!(p, &h.path),
            other => panic!("bind expected, got {other:?}"),
        }
    }
    for m in g.cg().mounts(true) {
        match &m.source {
            CgroupMountSource::Fs { fstype, data } if fstype == "cgroup2" => {
                assert!(data.is_empty());
                if pure_v2() {
                    assert_eq!(m.subdir, PathBuf::new());
                } else {
                    assert_eq!(m.subdir, PathBuf::from("unified"));
                }
            }
            CgroupMountSource::Fs { fstype, data } => {
                assert_eq!(fstype, "cgroup");
                assert!(!data.is_empty());
                assert!(!m.subdir.as_os_str().is_empty());
            }
            other => panic!("fs expected, got {other:?}"),
        }
    }
    let f = cgroups::features();
    assert_eq!(f["v2"], true, "{f}");
    assert_eq!(f["v1"], !pure_v2(), "{f}");
}

#[test]
fn oom_kill_is_counted() {
    if !is_root() || v2_busy_leaf() {
        return;
    }
    let id = unique("oom");
    // 16 MiB with no swap; dd's 64 MiB buffer cannot fit.
    let r = res(r#"{"memory":{"limit":16777216,"swap":16777216}}"#);
    let mut g = Guard::new(Cgroup::create(None, &id, Some(&r)).expect("create"));
    let pid = g.spawn(&[
        "sh",
        "-c",
        "read _; exec dd if=/dev/zero of=/dev/null bs=64M count=1",
    ]);
    g.cg().add_process(pid).expect("add");
    let child = g.children.last_mut().expect("child");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin).expect("go");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "dd must be OOM-killed");
    assert!(
        g.cg().oom_kills() >= 1,
        "oom_kills = {}",
        g.cg().oom_kills()
    );
}

#[test]
fn v2_busy_leaf_reports_clearly() {
    if !is_root() || !v2_busy_leaf() {
        return;
    }
    let id = unique("leaf");
    let err = match Cgroup::create(None, &id, Some(&res(r#"{"pids":{"limit":10}}"#))) {
        Ok(cg) => {
            let _g = Guard::new(cg);
            eprintln!("caller cgroup already delegates pids");
            return;
        }
        Err(e) => e.to_string(),
    };
    eprintln!("busy leaf error: {err}");
    assert!(err.contains("no internal processes"), "{err}");
    // Without resources it works.
    let g = Guard::new(Cgroup::create(None, &id, None).expect("create without resources"));
    g.cg().destroy().expect("destroy");
}

/// Disables `controller` in `dir`'s cgroup.subtree_control on drop if it was not enabled when created.
struct SubtreeRestore {
    file: std::path::PathBuf,
    controller: &'static str,
    was_on: bool,
}

impl SubtreeRestore {
    fn new(dir: &str, controller: &'static str) -> SubtreeRestore {
        let file = std::path::Path::new(dir).join("cgroup.subtree_control");
        let was_on = std::fs::read_to_string(&file)
            .map(|s| s.split_whitespace().any(|c| c == controller))
            .unwrap_or(true);
        SubtreeRestore {
            file,
            controller,
            was_on,
        }
    }
}

impl Drop for SubtreeRestore {
    fn drop(&mut self) {
        if !self.was_on && self.file.exists() {
            let _ = std::fs::write(&self.file, format!("-{}", self.controller));
        }
    }
}
