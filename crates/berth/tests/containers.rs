//! The container lifecycle through the berth binary: real containers (berth-runtime, overlay rootfs, the
//! monitor) in a private store per test.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn inspect(env: &Env, c: &str, fmt: &str) -> String {
    env.ok(&["inspect", "-f", fmt, c]).trim().to_string()
}

fn status(env: &Env, c: &str) -> String {
    inspect(env, c, "{{.State.Status}}")
}

fn pid_alive(pid: i64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Nothing of any container left in the store: records, directories, rootfs, runtime state, mounts.
fn assert_nothing_left(env: &Env) {
    assert!(
        env.containers().is_empty(),
        "containers: {:?}",
        env.containers()
    );
    for d in ["containers", "active", "runtime/berth-runtime"] {
        let left: Vec<String> = list(&env.root().join(d))
            .into_iter()
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{d}: {left:?}");
    }
    assert!(
        mounts_under(env.root()).is_empty(),
        "{:?}",
        mounts_under(env.root())
    );
}

#[test]
fn run_passes_output_and_exit_code_through() {
    let env = Env::new();
    env.load_busybox();
    let o = env.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");
    assert_nothing_left(&env);
    // A command that does not exist is 127, one that cannot run 126, as docker's.
    let o = env.run(&["run", "--rm", "busybox", "nosuchcommand"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(stderr(&o).contains("nosuchcommand"), "{}", stderr(&o));
    let o = env.run(&["run", "--rm", "busybox", "/etc"]);
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    assert_nothing_left(&env);
}

#[test]
fn stdin_with_i_and_signals_by_exit_code() {
    let env = Env::new();
    env.load_busybox();
    let mut c = env.cmd();
    c.args(["run", "-i", "--rm", "busybox", "sh", "-c", "wc -l"]);
    let o = output_with_input(&mut c, Some(b"a\nb\nc\n"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "3");
    // Without -i the container's stdin is empty.
    let mut c = env.cmd();
    c.args(["run", "--rm", "busybox", "cat"]);
    let o = output_with_input(&mut c, Some(b"ignored\n"));
    assert_eq!(stdout(&o), "");
    // Killed by a signal: 128+N.
    // (pid 1 cannot be SIGKILLed from inside its namespace: a child shell is.)
    let o = env.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "sh -c 'kill -9 $$'; exit $?",
    ]);
    assert_eq!(o.status.code(), Some(137));
}

#[test]
fn options_reach_the_process() {
    let env = Env::new();
    env.load_busybox();
    let dir = tempfile::tempdir().unwrap();
    let envfile = dir.path().join("env");
    std::fs::write(&envfile, "# comment\nFROM_FILE=yes\n\nB=file\n").unwrap();
    let out = env.ok(&[
        "run",
        "--rm",
        "-e",
        "A=1",
        "-e",
        "B=flag",
        "--env-file",
        envfile.to_str().unwrap(),
        "-w",
        "/tmp/work",
        "-u",
        "65534:65534",
        "--hostname",
        "boat",
        "busybox",
        "sh",
        "-c",
        "echo $A $B $FROM_FILE; pwd; id -u; id -g; hostname; cat /etc/hostname",
    ]);
    assert_eq!(out, "1 flag yes\n/tmp/work\n65534\n65534\nboat\nboat\n");
    // --entrypoint replaces the image's entrypoint and drops its Cmd.
    let out = env.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "echo",
        "busybox",
        "via",
        "entrypoint",
    ]);
    assert_eq!(out, "via entrypoint\n");
    // Labels, stop signal and restart policy land in inspect.
    let id = env.ok(&[
        "create",
        "--label",
        "team=boats",
        "--stop-signal",
        "SIGUSR1",
        "--restart",
        "on-failure:3",
        "--name",
        "labelled",
        "busybox",
        "true",
    ]);
    assert_eq!(id.trim().len(), 64);
    assert_eq!(
        inspect(&env, "labelled", "{{index .Config.Labels \"team\"}}"),
        "boats"
    );
    assert_eq!(
        inspect(&env, "labelled", "{{.Config.StopSignal}}"),
        "SIGUSR1"
    );
    assert_eq!(
        inspect(
            &env,
            "labelled",
            "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "on-failure:3"
    );
    assert_eq!(status(&env, "labelled"), "created");
    assert_eq!(inspect(&env, "labelled", "{{.Name}}"), "/labelled");
}

#[test]
fn security_options() {
    let env = Env::new();
    env.load_busybox();
    let caps = |extra: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["busybox", "sh", "-c", "grep CapBnd /proc/self/status"]);
        env.ok(&args).trim().to_string()
    };
    assert_eq!(caps(&[]), "CapBnd:\t00000000a80425fb");
    assert_eq!(caps(&["--cap-drop", "ALL"]), "CapBnd:\t0000000000000000");
    assert_eq!(
        caps(&["--cap-drop", "ALL", "--cap-add", "NET_ADMIN"]),
        "CapBnd:\t0000000000001000"
    );
    assert_ne!(caps(&["--privileged"]), "CapBnd:\t00000000a80425fb");
    // Default seccomp on; unconfined off; no-new-privileges.
    let seccomp = |extra: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "busybox",
            "sh",
            "-c",
            "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status",
        ]);
        env.ok(&args)
    };
    assert!(seccomp(&[]).contains("Seccomp:\t2"));
    assert!(seccomp(&["--security-opt", "seccomp=unconfined"]).contains("Seccomp:\t0"));
    assert!(seccomp(&["--security-opt", "no-new-privileges"]).contains("NoNewPrivs:\t1"));
    // --read-only: the root cannot be written, a tmpfs can.
    let o = env.run(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    env.ok(&[
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/scratch",
        "busybox",
        "touch",
        "/scratch/x",
    ]);
    // --ulimit
    let out = env.ok(&[
        "run",
        "--rm",
        "--ulimit",
        "nofile=512:1024",
        "busybox",
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn",
    ]);
    assert_eq!(out, "512\n1024\n");
}

#[test]
fn limits_are_visible_in_the_cgroup() {
    let env = Env::new();
    env.load_busybox();
    let c = env.ok(&[
        "run",
        "-d",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "512",
        "busybox",
        "sleep",
        "300",
    ]);
    let c = c.trim();
    let pid: i64 = inspect(&env, c, "{{.State.Pid}}").parse().unwrap();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path_of = |ctrl: &str| {
        cg.lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
                ctrls
                    .split(',')
                    .any(|x| x == ctrl)
                    .then(|| path.to_string())
            })
            .unwrap_or_else(|| panic!("no {ctrl} in {cg}"))
    };
    let read = |ctrl: &str, file: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/{ctrl}{}/{file}", path_of(ctrl)))
            .unwrap_or_else(|e| panic!("{ctrl}/{file}: {e}"))
            .trim()
            .to_string()
    };
    assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
    assert_eq!(read("pids", "pids.max"), "50");
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(read("cpu", "cpu.shares"), "512");
    assert!(path_of("memory").contains(&c[..12]) || path_of("memory").contains(c));
    let memory_dir = format!("/sys/fs/cgroup/memory{}", path_of("memory"));
    env.ok(&["rm", "-f", c]);
    assert!(
        !std::path::Path::new(&memory_dir).exists(),
        "{memory_dir} left behind"
    );
    assert_nothing_left(&env);
}

#[test]
fn detached_container_logs_and_follow() {
    let env = Env::new();
    env.load_busybox();
    let c = env.ok(&[
        "run",
        "-d",
        "busybox",
        "sh",
        "-c",
        "echo one; echo warn >&2; sleep 1; echo two",
    ]);
    let c = c.trim();
    assert_eq!(c.len(), 64);
    // -f prints what there is, then follows until the container exits.
    let o = env.run(&["logs", "-f", c]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "one\ntwo\n");
    assert_eq!(stderr(&o), "warn\n");
    assert_eq!(status(&env, c), "exited");
    assert_eq!(env.ok(&["logs", "--tail", "1", c]), "two\n");
    let ts = env.ok(&["logs", "-t", c]);
    assert!(
        ts.lines()
            .all(|l| l.len() > 30 && l.contains('T') && l.contains("Z ")),
        "{ts}"
    );
    assert_eq!(env.ok(&["wait", c]), "0\n");
    // Start again: logs accumulate.
    env.ok(&["start", c]);
    assert_eq!(env.ok(&["wait", c]), "0\n");
    assert_eq!(env.ok(&["logs", c]), "one\ntwo\none\ntwo\n");
}

#[test]
fn create_start_attach_wait_and_start_a() {
    let env = Env::new();
    env.load_busybox();
    let c = env.ok(&[
        "create",
        "--name",
        "later",
        "busybox",
        "sh",
        "-c",
        "echo started; exit 4",
    ]);
    assert_eq!(status(&env, c.trim()), "created");
    let o = env.run(&["start", "-a", "later"]);
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(stdout(&o), "started\n");
    assert_eq!(status(&env, "later"), "exited");
    assert_eq!(inspect(&env, "later", "{{.State.ExitCode}}"), "4");
    env.ok(&["start", "later"]);
    assert_eq!(env.ok(&["wait", "later"]), "4\n");
    // attach to a running container sees its later output and its exit code.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "sleep 1; echo tick; exit 2",
    ]);
    let o = env.run(&["attach", "ticker"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(stdout(&o), "tick\n");
    let err = env.fails(&["attach", "ticker"]);
    assert!(err.contains("stopped container"), "{err}");
}

#[test]
fn stop_kill_restart_pause() {
    let env = Env::new();
    env.load_busybox();
    // pid 1 without a TERM handler ignores TERM: stop waits -t seconds, then SIGKILL.
    env.ok(&["run", "-d", "--name", "stubborn", "busybox", "sleep", "300"]);
    let t = Instant::now();
    env.ok(&["stop", "-t", "1", "stubborn"]);
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(took < Duration::from_secs(8), "{took:?}");
    assert_eq!(status(&env, "stubborn"), "exited");
    assert_eq!(inspect(&env, "stubborn", "{{.State.ExitCode}}"), "137");
    // A handler: stop returns as soon as it exits, with its code.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "polite",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 7' TERM; while :; do sleep 0.1; done",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    env.ok(&["stop", "polite"]);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(inspect(&env, "polite", "{{.State.ExitCode}}"), "7");
    // restart brings it back with a new process.
    env.ok(&["restart", "-t", "0", "polite"]);
    assert_eq!(status(&env, "polite"), "running");
    // kill -s
    env.ok(&["kill", "-s", "TERM", "polite"]);
    assert_eq!(env.ok(&["wait", "polite"]), "7\n");
    let err = env.fails(&["kill", "polite"]);
    assert!(err.contains("is not running"), "{err}");
    // pause / unpause
    env.ok(&["run", "-d", "--name", "frozen", "busybox", "sleep", "300"]);
    env.ok(&["pause", "frozen"]);
    assert_eq!(status(&env, "frozen"), "paused");
    let ps = env.ok(&[
        "ps",
        "--filter",
        "status=paused",
        "--format",
        "{{.Names}} {{.Status}}",
    ]);
    assert!(
        ps.starts_with("frozen Up ") && ps.trim_end().ends_with("(Paused)"),
        "{ps}"
    );
    assert!(env.fails(&["pause", "frozen"]).contains("already paused"));
    env.ok(&["unpause", "frozen"]);
    assert_eq!(status(&env, "frozen"), "running");
    // stop of a paused container works too.
    env.ok(&["pause", "frozen"]);
    env.ok(&["stop", "-t", "0", "frozen"]);
    assert_eq!(status(&env, "frozen"), "exited");
    env.ok(&["rm", "stubborn", "polite", "frozen"]);
    assert_nothing_left(&env);
}

#[test]
fn restart_policies() {
    let env = Env::new();
    env.load_busybox();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    wait_until("on-failure to give up", Duration::from_secs(20), || {
        status(&env, "flaky") == "exited" && inspect(&env, "flaky", "{{.RestartCount}}") == "2"
    });
    assert_eq!(env.ok(&["logs", "flaky"]), "run\nrun\nrun\n");
    assert_eq!(inspect(&env, "flaky", "{{.State.ExitCode}}"), "1");
    // on-failure does not restart a success.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "fine",
        "--restart",
        "on-failure",
        "busybox",
        "true",
    ]);
    assert_eq!(env.ok(&["wait", "fine"]), "0\n");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(inspect(&env, "fine", "{{.RestartCount}}"), "0");
    assert_eq!(status(&env, "fine"), "exited");
    // always restarts even a success, until stopped by the user.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "forever",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "sleep 0.2",
    ]);
    wait_until("always to restart", Duration::from_secs(20), || {
        inspect(&env, "forever", "{{.RestartCount}}")
            .parse::<i64>()
            .unwrap_or(0)
            >= 2
    });
    env.ok(&["stop", "-t", "1", "forever"]);
    assert_eq!(status(&env, "forever"), "exited");
    let count = inspect(&env, "forever", "{{.RestartCount}}");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(status(&env, "forever"), "exited");
    assert_eq!(inspect(&env, "forever", "{{.RestartCount}}"), count);
    // --rm and --restart conflict, as in docker.
    let o = env.run(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("Conflicting options: --restart and --rm"),
        "{}",
        stderr(&o)
    );
    env.ok(&["rm", "-f", "flaky", "fine", "forever"]);
    assert_nothing_left(&env);
}

#[test]
fn detached_rm_removes_itself_and_rm_rules() {
    let env = Env::new();
    env.load_busybox();
    let c = env.ok(&["run", "-d", "--rm", "busybox", "sh", "-c", "sleep 0.3"]);
    wait_until("--rm container to go", Duration::from_secs(10), || {
        env.containers().is_empty()
    });
    assert!(!env.root().join("containers").join(c.trim()).exists());
    env.ok(&["run", "-d", "--name", "busy", "busybox", "sleep", "300"]);
    let o = env.run(&["rm", "busy"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("You cannot remove a running container"),
        "{}",
        stderr(&o)
    );
    assert_eq!(env.ok(&["rm", "-f", "busy"]), "busy\n");
    assert_nothing_left(&env);
}

#[test]
fn volumes_are_filled_from_the_image_and_survive_rm() {
    let env = Env::new();
    env.load(
        busybox_image()
            .layer(Layer::new(
                vec![
                    Entry::dir("data", 0o755),
                    Entry::file("data/seed", "from-image\n", 0o644),
                ],
                Compression::Gzip,
            ))
            .volume("/data"),
        "withvol:latest",
    );
    env.load_busybox();
    // The image's VOLUME becomes an anonymous volume filled from the image.
    let out = env.ok(&["run", "--name", "anon", "withvol", "cat", "/data/seed"]);
    assert_eq!(out, "from-image\n");
    let mounts = inspect(
        &env,
        "anon",
        "{{range .Mounts}}{{.Type}} {{.Name}} {{.Destination}}{{end}}",
    );
    assert!(
        mounts.starts_with("volume ") && mounts.ends_with(" /data"),
        "{mounts}"
    );
    let anon = mounts.split(' ').nth(1).unwrap().to_string();
    assert!(env.root().join("volumes").join(&anon).exists());
    // rm -v removes the anonymous volume.
    env.ok(&["rm", "-v", "anon"]);
    assert!(!env.root().join("volumes").join(&anon).exists());
    // A named volume is filled on first use, and keeps what containers write after they are gone.
    env.ok(&[
        "run",
        "--rm",
        "-v",
        "keep:/data",
        "withvol",
        "sh",
        "-c",
        "cat /data/seed; echo mine > /data/f",
    ]);
    let out = env.ok(&[
        "run",
        "--rm",
        "-v",
        "keep:/data:ro",
        "busybox",
        "sh",
        "-c",
        "cat /data/f /data/seed; touch /data/x 2>&1 || true",
    ]);
    assert!(out.starts_with("mine\nfrom-image\n"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(env.root().join("volumes/keep/_data/f").exists());
    // A bind mount with -v creates a missing host directory; --mount refuses a missing source.
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("made");
    let spec = format!("{}:/mnt", host.display());
    env.ok(&[
        "run",
        "--rm",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "echo hi > /mnt/file",
    ]);
    assert_eq!(std::fs::read_to_string(host.join("file")).unwrap(), "hi\n");
    let missing = dir.path().join("missing");
    let m = format!("type=bind,source={},target=/mnt", missing.display());
    let o = env.run(&["run", "--rm", "--mount", &m, "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("bind source path does not exist"),
        "{}",
        stderr(&o)
    );
    assert!(!missing.exists());
    assert_nothing_left(&env);
}

#[test]
fn ps_lists_filters_and_formats() {
    let env = Env::new();
    env.load_busybox();
    env.ok(&[
        "run", "-d", "--name", "up1", "--label", "role=web", "busybox", "sleep", "300",
    ]);
    assert_eq!(
        env.run(&["run", "--name", "done1", "busybox", "sh", "-c", "exit 2"])
            .status
            .code(),
        Some(2)
    );
    let ps = env.ok(&["ps"]);
    let lines: Vec<&str> = ps.lines().collect();
    assert!(lines[0].starts_with("CONTAINER ID   IMAGE "), "{ps}");
    assert!(lines[0].ends_with("NAMES"), "{ps}");
    assert_eq!(lines.len(), 2, "{ps}");
    assert!(lines[1].contains("up1") && lines[1].contains("Up "), "{ps}");
    assert!(lines[1].contains("\"sleep 300\""), "{ps}");
    let all = env.ok(&["ps", "-a", "--format", "{{.Names}}\t{{.Status}}"]);
    assert!(all.contains("done1\tExited (2) "), "{all}");
    assert_eq!(env.ok(&["ps", "-a", "-q"]).lines().count(), 2);
    assert!(env.ok(&["ps", "-a", "-q"]).lines().all(|l| l.len() == 12));
    assert!(env
        .ok(&["ps", "-a", "-q", "--no-trunc"])
        .lines()
        .all(|l| l.len() == 64));
    assert_eq!(
        env.ok(&["ps", "-a", "--filter", "exited=2", "--format", "{{.Names}}"]),
        "done1\n"
    );
    assert_eq!(
        env.ok(&["ps", "--filter", "label=role=web", "--format", "{{.Names}}"]),
        "up1\n"
    );
    assert_eq!(
        env.ok(&[
            "ps",
            "-a",
            "--filter",
            "name=done",
            "--format",
            "{{.Names}}"
        ]),
        "done1\n"
    );
    let json = env.ok(&["ps", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["Names"], "up1");
    assert_eq!(v["State"], "running");
    let table = env.ok(&["ps", "--format", "table {{.Names}}\t{{.State}}"]);
    assert_eq!(table, "NAMES   STATE\nup1     running\n");
    // rename
    env.ok(&["rename", "up1", "up2"]);
    assert_eq!(inspect(&env, "up2", "{{.Name}}"), "/up2");
    // Bad filters and templates.
    let o = env.run(&["ps", "--filter", "status=sleepy"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("status=sleepy"), "{}", stderr(&o));
    let o = env.run(&["ps", "--format", "{{.Names"]);
    assert_ne!(o.status.code(), Some(0));
    // container prune removes the stopped one only.
    let pruned = env.ok(&["container", "prune", "-f"]);
    assert!(pruned.starts_with("Deleted Containers:\n"), "{pruned}");
    assert_eq!(env.ok(&["ps", "-a", "--format", "{{.Names}}"]), "up2\n");
}

#[test]
fn bad_input_is_refused_cleanly() {
    let env = Env::new();
    env.load_busybox();
    let refused = |args: &[&str], code: i32, needle: &str| {
        let o = env.run(args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(needle), "{args:?}: {err}");
        // clap's own usage errors come with its usage lines; everything else is one line.
        if !err.starts_with("error: unexpected argument") {
            assert_eq!(
                err.trim_end().lines().count(),
                1,
                "{args:?}: not one line: {err}"
            );
        }
    };
    refused(
        &["run", "--pull", "never", "nosuchimage"],
        125,
        "No such image: nosuchimage",
    );
    refused(&["run", "--memory", "lots", "busybox", "true"], 125, "lots");
    refused(
        &["run", "--restart", "sometimes", "busybox", "true"],
        125,
        "sometimes",
    );
    refused(&["run", "--cpus", "-1", "busybox", "true"], 125, "--cpus");
    refused(
        &["run", "--ulimit", "nofile=x", "busybox", "true"],
        125,
        "nofile=x",
    );
    refused(
        &["run", "-v", "rel/dir:/data", "busybox", "true"],
        125,
        "rel/dir",
    );
    refused(
        &["run", "--mount", "type=nfs,target=/x", "busybox", "true"],
        125,
        "nfs",
    );
    refused(
        &[
            "run",
            "--security-opt",
            "seccomp=/no/such/profile.json",
            "busybox",
            "true",
        ],
        125,
        "/no/such/profile.json",
    );
    refused(
        &["run", "--cap-add", "NOT_A_CAP", "busybox", "true"],
        125,
        "NOT_A_CAP",
    );
    refused(
        &["run", "-w", "relative", "busybox", "true"],
        125,
        "relative",
    );
    refused(
        &["run", "--network", "nowhere", "busybox", "true"],
        125,
        "nowhere",
    );
    refused(
        &["run", "--runtime", "/no/such/runtime", "busybox", "true"],
        125,
        "/no/such/runtime",
    );
    refused(&["run", "--bogus-flag", "busybox"], 125, "--bogus-flag");
    refused(&["stop", "nosuch"], 1, "No such container: nosuch");
    refused(&["rm", "nosuch"], 1, "No such container: nosuch");
    refused(&["logs", "nosuch"], 1, "No such container: nosuch");
    refused(&["kill", "-s", "NOPE", "nosuch"], 1, "nosuch");
    env.ok(&["create", "--name", "taken", "busybox", "true"]);
    refused(
        &["run", "--name", "taken", "busybox", "true"],
        125,
        "is already in use",
    );
    refused(
        &["run", "--name", "bad name!", "busybox", "true"],
        125,
        "Invalid container name",
    );
    // Only the one container that was meant to exist does; no rootfs or directory was left by the others.
    assert_eq!(env.containers().len(), 1);
    assert_eq!(list(&env.root().join("containers")).len(), 1);
    assert_eq!(list(&env.root().join("active")).len(), 1);
    env.ok(&["rm", "taken"]);
    assert_nothing_left(&env);
}

#[test]
fn init_network_modes_and_other_runtimes() {
    let env = Env::new();
    env.load_busybox();
    // --init puts docker-init (tini) in front as pid 1.
    let out = env.ok(&["run", "--rm", "--init", "busybox", "cat", "/proc/1/cmdline"]);
    assert!(out.starts_with("/sbin/docker-init\0--\0cat"), "{out:?}");
    // none: only lo, and it is up.
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "cat",
        "/proc/net/dev",
    ]);
    let ifaces: Vec<&str> = out
        .lines()
        .skip(2)
        .map(|l| l.split(':').next().unwrap().trim())
        .collect();
    assert_eq!(ifaces, vec!["lo"]);
    env.ok(&[
        "run",
        "--rm",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "2",
        "127.0.0.1",
    ]);
    // host: the caller's network namespace, here one this test makes with a dummy interface in it.
    let script = format!(
        "ip link add berthtest0 type veth peer name berthtest1 && {} --root {} run --rm --network host busybox cat /proc/net/dev",
        env!("CARGO_BIN_EXE_berth"),
        env.root().display()
    );
    let o = Command::new("unshare")
        .args(["--net", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("berthtest0"));
    // runc runs the same container when asked for.
    if std::path::Path::new("/usr/bin/runc").exists()
        || std::path::Path::new("/usr/sbin/runc").exists()
    {
        let out = env.ok(&[
            "run",
            "--rm",
            "--runtime",
            "runc",
            "busybox",
            "sh",
            "-c",
            "echo via runc; exit 0",
        ]);
        assert_eq!(out, "via runc\n");
        assert!(list(&env.root().join("runtime/runc")).is_empty());
    }
    assert_nothing_left(&env);
}

/// A pty pair for driving `-it` as a terminal would.
fn openpty() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut m, mut s) = (0, 0);
    // SAFETY: openpty fills two descriptors we then own.
    let r = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty");
    unsafe { (std::fs::File::from_raw_fd(m), std::fs::File::from_raw_fd(s)) }
}

#[test]
fn interactive_tty_through_a_real_pty() {
    use std::io::{Read, Write};
    let env = Env::new();
    env.load_busybox();
    let (mut master, slave) = openpty();
    let mut cmd = env.cmd();
    cmd.args(["run", "-it", "--rm", "busybox", "sh"])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    let mut child = cmd.spawn().unwrap();
    master
        .write_all(b"tty; echo hi-$((1+2)); exit 4\n")
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            let _ = tx.send(String::from_utf8_lossy(&seen).into_owned());
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while !text.contains("hi-3") {
        text = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("output through the pty");
    }
    assert!(text.contains("/dev/pts/"), "{text}");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(4), "{text}");
    drop(master);
    assert_nothing_left(&env);
}

#[test]
fn fifty_parallel_runs_and_nothing_leaks() {
    let env = Env::new();
    env.load_busybox();
    let children: Vec<_> = (0..50)
        .map(|i| {
            let mut c = env.cmd();
            c.args([
                "run",
                "-d",
                "--name",
                &format!("par{i}"),
                "busybox",
                "sleep",
                "300",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    for ch in children {
        let o = ch.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let running = env.ok(&["ps", "-q"]);
    assert_eq!(running.lines().count(), 50, "{running}");
    let pids: Vec<i64> = env
        .containers()
        .iter()
        .map(|c| inspect(&env, c, "{{.State.Pid}}").parse().unwrap())
        .collect();
    let ids = env.containers();
    let mut rm = env.cmd();
    rm.args(["rm", "-f"]).args(&ids);
    let o = output_via_files(&mut rm);
    assert!(o.status.success(), "{}", stderr(&o));
    for p in pids {
        assert!(!pid_alive(p), "pid {p} still alive");
    }
    assert_nothing_left(&env);
}

#[test]
fn a_killed_monitor_or_cli_leaves_records_the_next_command_repairs() {
    let env = Env::new();
    env.load_busybox();
    // The monitor SIGKILLed while its container runs: the next command marks it exited and kills the orphan.
    let c = env.ok(&["run", "-d", "--name", "orphan", "busybox", "sleep", "300"]);
    let c = c.trim().to_string();
    let pid: i64 = inspect(&env, &c, "{{.State.Pid}}").parse().unwrap();
    let status_file = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let monitor: i32 = status_file
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{monitor}/cmdline")).unwrap();
    assert!(comm.contains("container-monitor"), "{comm:?}");
    // SAFETY: kill of a pid this test's container started.
    unsafe { libc::kill(monitor, libc::SIGKILL) };
    wait_until("monitor to die", Duration::from_secs(5), || {
        !pid_alive(i64::from(monitor))
    });
    assert_eq!(status(&env, "orphan"), "exited");
    assert_eq!(inspect(&env, "orphan", "{{.State.ExitCode}}"), "137");
    wait_until("the orphan to be killed", Duration::from_secs(5), || {
        !pid_alive(pid)
    });
    assert!(mounts_under(env.root()).is_empty());
    // It starts again as usual.
    env.ok(&["start", "orphan"]);
    assert_eq!(status(&env, "orphan"), "running");
    env.ok(&["rm", "-f", "orphan"]);

    // The CLI SIGKILLed at random points of `run -d` / `rm -f`: whatever it left, the next commands clean up.
    for i in 0..12u64 {
        let mut cmd = env.cmd();
        cmd.args(["run", "-d", "busybox", "sleep", "300"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut ch = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(15 * i));
        let _ = ch.kill();
        let _ = ch.wait();
    }
    let ids = env.containers();
    for id in &ids {
        let o = env.run(&["rm", "-f", id]);
        assert!(o.status.success(), "rm -f {id}: {}", stderr(&o));
    }
    // A foreground CLI killed mid-run leaves its container running under its monitor.
    let mut cmd = env.cmd();
    cmd.args(["run", "--name", "fg", "busybox", "sleep", "300"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut ch = cmd.spawn().unwrap();
    wait_until("fg to run", Duration::from_secs(10), || {
        env.run(&["inspect", "-f", "{{.State.Status}}", "fg"])
            .status
            .success()
            && status(&env, "fg") == "running"
    });
    let _ = ch.kill();
    let _ = ch.wait();
    assert_eq!(status(&env, "fg"), "running");
    env.ok(&["stop", "-t", "0", "fg"]);
    env.ok(&["rm", "fg"]);
    assert_nothing_left(&env);
}

#[test]
fn stop_signal_swap_limit_seccomp_file_and_logs_since() {
    let env = Env::new();
    env.load_busybox();
    // --stop-signal is what stop sends.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "usr1",
        "--stop-signal",
        "USR1",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 9' USR1; while :; do sleep 0.1; done",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    env.ok(&["stop", "-t", "5", "usr1"]);
    assert_eq!(inspect(&env, "usr1", "{{.State.ExitCode}}"), "9");
    // --memory-swap reaches the cgroup where the kernel accounts swap.
    let c = env.ok(&[
        "run",
        "-d",
        "--memory",
        "32m",
        "--memory-swap",
        "64m",
        "busybox",
        "sleep",
        "300",
    ]);
    let pid: i64 = inspect(&env, c.trim(), "{{.State.Pid}}").parse().unwrap();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mem = cg
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
        .expect("memory cgroup");
    let dir = format!("/sys/fs/cgroup/memory{mem}");
    assert_eq!(
        std::fs::read_to_string(format!("{dir}/memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        "33554432"
    );
    if let Ok(sw) = std::fs::read_to_string(format!("{dir}/memory.memsw.limit_in_bytes")) {
        assert_eq!(sw.trim(), "67108864");
    }
    env.ok(&["rm", "-f", c.trim()]);
    // A seccomp profile file: this one refuses mkdir with EPERM.
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("profile.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let opt = format!("seccomp={}", profile.display());
    let o = env.run(&[
        "run",
        "--rm",
        "--security-opt",
        &opt,
        "busybox",
        "mkdir",
        "/tmp/x",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Operation not permitted"),
        "{}",
        stderr(&o)
    );
    // logs --since: only what came after.
    env.ok(&[
        "run",
        "--name",
        "chatty",
        "busybox",
        "sh",
        "-c",
        "echo early; sleep 2; echo late",
    ]);
    // (late came 3 s after early; 2 s leaves room for a slow machine between the run and this logs.)
    let since = env.ok(&["logs", "--since", "2s", "chatty"]);
    assert_eq!(since, "late\n", "only the last line: {since:?}");
    let recent = env.ok(&["logs", "--since", "60s", "chatty"]);
    assert_eq!(recent, "early\nlate\n");
    assert_nothing_left_but(&env, &["usr1", "chatty"]);
}

/// Only the named containers remain.
fn assert_nothing_left_but(env: &Env, names: &[&str]) {
    let left = env.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    let mut left: Vec<&str> = left.lines().collect();
    left.sort();
    let mut want = names.to_vec();
    want.sort();
    assert_eq!(left, want);
}

#[test]
fn container_prune_asks_first() {
    let env = Env::new();
    env.load_busybox();
    env.ok(&["create", "--name", "idle", "busybox", "true"]);
    // No answer (stdin at EOF) keeps everything, as docker's prompt does.
    let mut c = env.cmd();
    c.args(["container", "prune"]);
    let o = output_with_input(&mut c, Some(b""));
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("Are you sure you want to continue? [y/N]"),
        "{}",
        stdout(&o)
    );
    assert_eq!(env.containers().len(), 1);
    let mut c = env.cmd();
    c.args(["container", "prune"]);
    let o = output_with_input(&mut c, Some(b"y\n"));
    assert!(stdout(&o).contains("Deleted Containers:"), "{}", stdout(&o));
    assert!(env.containers().is_empty());
}
