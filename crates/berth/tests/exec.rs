//! `berth exec` and `berth top` against real containers (berth-runtime, overlay rootfs, the monitor).

mod common;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// busybox plus an /etc/passwd and /etc/group with a user "bob".
fn load_busybox_with_users(env: &Env) {
    let users = Layer::new(
        vec![
            Entry::file(
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1001:Bob:/home/bob:/bin/sh\n",
                0o644,
            ),
            Entry::file(
                "etc/group",
                "root:x:0:\nbobs:x:1001:\nwheel:x:10:bob\n",
                0o644,
            ),
        ],
        Compression::Gzip,
    );
    env.load(busybox_image().layer(users), "busybox:latest");
}

fn sleeper(env: &Env, extra: &[&str]) -> String {
    let mut args = vec!["run", "-d"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "sleep", "300"]);
    env.ok(&args).trim().to_string()
}

#[test]
fn exec_runs_with_the_containers_env_and_passes_the_exit_code() {
    let env = Env::new();
    env.load_busybox();
    let id = sleeper(&env, &["-e", "FOO=bar", "--name", "ex1"]);
    let o = env.run(&[
        "exec",
        "ex1",
        "sh",
        "-c",
        "echo $FOO; hostname; echo err >&2; exit 7",
    ]);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("bar\n{}\n", &id[..12]));
    assert_eq!(stderr(&o), "err\n");
    // `container exec` and a full id work the same; arguments that look like flags belong to the command.
    let o = env.run(&["container", "exec", &id, "echo", "-n", "x"]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), "x"));
}

#[test]
fn exec_flags_env_workdir_user_privileged() {
    let env = Env::new();
    load_busybox_with_users(&env);
    let id = sleeper(&env, &["-e", "KEEP=1", "-e", "DROP=2"]);
    let envfile = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(envfile.path(), "# comment\nFROMFILE=f\n").unwrap();
    let out = env.ok(&[
        "exec",
        "-e",
        "KEEP=changed",
        "-e",
        "NEW=n",
        "-e",
        "DROP",
        "--env-file",
        envfile.path().to_str().unwrap(),
        "-w",
        "/tmp",
        &id,
        "sh",
        "-c",
        "echo $KEEP $NEW ${DROP:-unset} $FROMFILE; pwd",
    ]);
    assert_eq!(out, "changed n unset f\n/tmp\n");
    // -u by name from the container's /etc/passwd (with its groups and HOME), and numerically.
    let out = env.ok(&[
        "exec",
        "-u",
        "bob",
        &id,
        "sh",
        "-c",
        "id -u; id -g; id -G; echo $HOME",
    ]);
    assert_eq!(out, "1000\n1001\n1001 10\n/home/bob\n");
    let out = env.ok(&["exec", "-u", "4242:4343", &id, "sh", "-c", "id -u; id -g"]);
    assert_eq!(out, "4242\n4343\n");
    // The container's own user stays root.
    assert_eq!(env.ok(&["exec", &id, "id", "-u"]), "0\n");
    // --privileged: every capability, where the container has docker's default set.
    let caps = |priv_: bool| {
        let mut a = vec!["exec"];
        if priv_ {
            a.push("--privileged");
        }
        a.extend_from_slice(&[&id, "grep", "CapEff", "/proc/self/status"]);
        env.ok(&a)
    };
    let (plain, privileged) = (caps(false), caps(true));
    assert!(plain.contains("00000000a80425fb"), "{plain}");
    assert_ne!(plain, privileged);
}

#[test]
fn exec_stdin_only_with_i_and_detached_runs_in_the_background() {
    let env = Env::new();
    env.load_busybox();
    let id = sleeper(&env, &[]);
    let o = output_with_input(
        env.cmd().args(["exec", "-i", &id, "cat"]),
        Some(b"hello\nworld\n"),
    );
    assert_eq!(stdout(&o), "hello\nworld\n", "{}", stderr(&o));
    // Without -i the command's stdin is empty.
    let o = output_with_input(env.cmd().args(["exec", &id, "cat"]), Some(b"ignored"));
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), ""));
    // -d prints nothing and returns while the command still runs: it waits (up to 20 s) for a file the test
    // creates only after berth has returned.
    let o = env.run(&[
        "exec",
        "-d",
        &id,
        "sh",
        "-c",
        "for i in $(seq 200); do [ -e /tmp/go ] && break; sleep 0.1; done; echo done > /tmp/marker",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!((stdout(&o).as_str(), stderr(&o).as_str()), ("", ""));
    let o = env.run(&["exec", &id, "cat", "/tmp/marker"]);
    assert_ne!(o.status.code(), Some(0), "-d waited for the command");
    env.ok(&["exec", &id, "touch", "/tmp/go"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = env.run(&["exec", &id, "cat", "/tmp/marker"]);
        if stdout(&o) == "done\n" {
            break;
        }
        assert!(Instant::now() < deadline, "the detached exec never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn exec_into_a_container_that_is_not_running_is_dockers_error() {
    let env = Env::new();
    env.load_busybox();
    let created = env.ok(&["create", "--name", "idle", "busybox", "true"]);
    let created = created.trim();
    let o = env.run(&["exec", "idle", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!("Error response from daemon: container {created} is not running\n")
    );
    let e = env.fails(&["exec", "nope", "true"]);
    assert_eq!(e, "Error response from daemon: No such container: nope\n");
    // Paused: docker's own wording.
    let id = sleeper(&env, &[]);
    env.ok(&["pause", &id]);
    let e = env.fails(&["exec", &id, "true"]);
    assert!(
        e.contains("is paused, unpause the container before exec"),
        "{e}"
    );
    env.ok(&["unpause", &id]);
}

#[test]
fn exec_command_errors_are_126_and_127() {
    let env = Env::new();
    env.load_busybox();
    let id = sleeper(&env, &[]);
    let o = env.run(&["exec", &id, "no-such-command"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(stderr(&o).contains("no-such-command"), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    env.ok(&["exec", &id, "sh", "-c", "echo x > /tmp/not-executable"]);
    let o = env.run(&["exec", &id, "/tmp/not-executable"]);
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
}

#[test]
fn exec_bad_input_is_one_line_and_nonzero() {
    let env = Env::new();
    load_busybox_with_users(&env);
    let id = sleeper(&env, &[]);
    for (args, want) in [
        (vec!["exec", "-w", "relative", &id, "true"], "absolute path"),
        (vec!["exec", "-u", "carol", &id, "true"], "carol"),
        (
            vec!["exec", "-e", "=x", &id, "true"],
            "variable name is empty",
        ),
        (
            vec!["exec", "--env-file", "/nonexistent/env", &id, "true"],
            "/nonexistent/env",
        ),
    ] {
        let o = env.run(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // -it with a stdin that is not a terminal.
    let e = env.fails(&["exec", "-it", &id, "sh"]);
    assert!(e.contains("the input device is not a TTY"), "{e}");
    // Flags berth's parser rejects: docker's 125.
    let o = env.run(&["exec", &id]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let o = env.run(&["exec", "--bogus", &id, "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
}

#[test]
fn exec_t_without_a_terminal_still_gets_one() {
    let env = Env::new();
    env.load_busybox();
    let id = sleeper(&env, &[]);
    let o = env.run(&["exec", "-t", &id, "sh", "-c", "tty; echo $TERM"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("/dev/pts/"), "{out:?}");
    assert!(out.contains("xterm"), "{out:?}");
}

/// A pty pair: (master, slave).
fn openpty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into our integers; names and settings are not asked for.
    let r = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(r, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are fresh and ours.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

#[test]
fn exec_it_through_a_real_terminal() {
    let env = Env::new();
    env.load_busybox();
    let id = sleeper(&env, &[]);
    let (master, slave) = openpty();
    let mut child = env
        .cmd()
        .args(["exec", "-it", &id, "sh"])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .expect("spawn berth exec");
    let mut m = std::fs::File::from(master);
    // The terminal relay reads what the test writes; the shell answers through the same terminal.
    m.write_all(b"echo hi-$((1+2))\n").unwrap();
    let reader = {
        let mut m = m.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // EIO once the last slave descriptor closes (berth and the runtime exited).
            while let Ok(n) = m.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            seen
        })
    };
    // Wait to see the answer before asking the shell to exit (the answer must come from the shell).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent_exit = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "exec -it never finished");
        if !sent_exit {
            std::thread::sleep(Duration::from_millis(300));
            m.write_all(b"exit 5\n").unwrap();
            sent_exit = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(m);
    let seen = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    assert!(seen.contains("hi-3"), "terminal output: {seen:?}");
    assert_eq!(status.code(), Some(5), "terminal output: {seen:?}");
}

fn top_rows(out: &str) -> (Vec<String>, Vec<String>) {
    let mut lines = out.lines();
    let header = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    (header, lines.map(str::to_string).collect())
}

#[test]
fn top_lists_only_the_containers_processes() {
    let env = Env::new();
    env.load_busybox();
    let id = sleeper(&env, &["--name", "topper"]);
    let out = env.ok(&["top", "topper"]);
    let (header, rows) = top_rows(&out);
    assert_eq!(
        header,
        vec!["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    assert_eq!(rows.len(), 1, "{out}");
    assert!(rows[0].ends_with("sleep 300"), "{out}");
    // docker's tabwriter: columns at least 20 wide.
    assert!(
        out.starts_with(&format!("UID{}PID", " ".repeat(17))),
        "{out}"
    );
    // A second process shows up; ps options are passed through.
    env.ok(&["exec", "-d", &id, "sleep", "299"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = env.ok(&["container", "top", &id, "-o", "pid,args"]);
        let (header, rows) = top_rows(&out);
        assert_eq!(header, vec!["PID", "COMMAND"]);
        if rows.len() == 2 {
            assert!(rows.iter().any(|r| r.ends_with("sleep 299")), "{out}");
            break;
        }
        assert!(Instant::now() < deadline, "{out}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // What docker refuses, and a stopped container.
    let e = env.fails(&["top", &id, "-o", "comm=PID"]);
    assert!(e.contains("not allowed"), "{e}");
    env.ok(&["stop", "-t", "0", &id]);
    let e = env.fails(&["top", &id]);
    assert_eq!(
        e,
        format!("Error response from daemon: container {id} is not running\n")
    );
    let e = env.fails(&["top", "nope"]);
    assert_eq!(e, "Error response from daemon: No such container: nope\n");
}
