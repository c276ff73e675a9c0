//! `berth volume ...` through the berth binary: named and anonymous volumes, their use by real containers, and
//! docker's output, errors and exit codes.

mod common;

use common::*;
use serde_json::Value;

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn names(out: &str) -> Vec<String> {
    out.lines().map(str::to_string).collect()
}

/// Asserts one line on stderr and the exit code; returns the line.
fn one_line_error(env: &Env, args: &[&str], code: i32) -> String {
    let o = env.run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
    err.trim_end().to_string()
}

#[test]
fn create_list_inspect_remove() {
    let env = Env::new();
    assert_eq!(
        env.ok(&["volume", "create", "--label", "tier=db", "--label", "x", "data"]),
        "data\n"
    );
    let anon = env.ok(&["volume", "create"]).trim().to_string();
    assert!(is_hex64(&anon), "{anon}");
    // --name (docker's hidden spelling) and a second create of the same name: the same volume, untouched.
    assert_eq!(env.ok(&["volume", "create", "--name", "web-1"]), "web-1\n");
    let mountpoint = env.root().join("volumes/data/_data");
    std::fs::write(mountpoint.join("f"), "kept").expect("write into the volume");
    assert_eq!(env.ok(&["volume", "create", "data"]), "data\n");
    assert_eq!(
        std::fs::read_to_string(mountpoint.join("f")).expect("read"),
        "kept"
    );

    let mut sorted = vec![anon.clone(), "data".to_string(), "web-1".to_string()];
    sorted.sort();
    let table: String = std::iter::once("DRIVER    VOLUME NAME\n".to_string())
        .chain(sorted.iter().map(|n| format!("local     {n}\n")))
        .collect();
    assert_eq!(env.ok(&["volume", "ls"]), table);
    assert_eq!(
        env.ok(&["volume", "list", "-q"]),
        format!("{}\n", sorted.join("\n"))
    );

    // Filters: labels (key, key=value), names, and several at once (all must hold).
    assert_eq!(
        env.ok(&["volume", "ls", "-q", "--filter", "label=tier"]),
        "data\n"
    );
    assert_eq!(
        env.ok(&["volume", "ls", "-q", "-f", "label=tier=db", "-f", "label=x"]),
        "data\n"
    );
    assert_eq!(env.ok(&["volume", "ls", "-q", "-f", "label=tier=web"]), "");
    assert_eq!(
        env.ok(&[
            "volume",
            "ls",
            "-q",
            "-f",
            "label=com.docker.volume.anonymous"
        ]),
        format!("{anon}\n")
    );
    assert_eq!(env.ok(&["volume", "ls", "-q", "-f", "name=web"]), "web-1\n");
    assert_eq!(
        env.ok(&["volume", "ls", "-q", "-f", "name=^dat", "-f", "name=^web"]),
        "data\nweb-1\n"
    );
    assert_eq!(
        env.ok(&[
            "volume",
            "ls",
            "-q",
            "-f",
            "driver=local",
            "-f",
            "name=data"
        ]),
        "data\n"
    );
    // Nothing uses any of them yet.
    assert_eq!(
        names(&env.ok(&["volume", "ls", "-q", "-f", "dangling=true"])),
        sorted
    );
    assert_eq!(env.ok(&["volume", "ls", "-q", "-f", "dangling=0"]), "");

    // --format: a template, a table template with docker's headers, json lines.
    assert_eq!(
        env.ok(&[
            "volume",
            "ls",
            "-f",
            "name=data",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}} {{.Labels}}"
        ]),
        "data local local tier=db,x=\n"
    );
    assert_eq!(
        env.ok(&[
            "volume",
            "ls",
            "-f",
            "name=data",
            "--format",
            "table {{.Name}}\t{{.Mountpoint}}"
        ]),
        format!(
            "VOLUME NAME   MOUNTPOINT\ndata          {}\n",
            mountpoint.display()
        )
    );
    let line = env.ok(&["volume", "ls", "-f", "name=data", "--format", "json"]);
    let j: Value = serde_json::from_str(line.trim()).expect("json line");
    assert_eq!(j["Name"], "data");
    assert_eq!(j["Driver"], "local");
    assert_eq!(j["Mountpoint"], mountpoint.to_str().expect("utf-8"));
    assert_eq!(j["Links"], "N/A");

    // inspect: docker's object, four-space indented.
    let out = env.ok(&["volume", "inspect", "data"]);
    assert!(
        out.starts_with("[\n    {\n        \"CreatedAt\": "),
        "{out}"
    );
    let v: Value = serde_json::from_str(&out).expect("inspect json");
    let v = &v[0];
    assert_eq!(v["Name"], "data");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Mountpoint"], mountpoint.to_str().expect("utf-8"));
    assert_eq!(v["Labels"], serde_json::json!({"tier": "db", "x": ""}));
    assert_eq!(v["Options"], serde_json::json!({}));
    let created = v["CreatedAt"].as_str().expect("CreatedAt");
    let b = created.as_bytes();
    assert!(
        created.len() == 20 && b[4] == b'-' && b[10] == b'T' && created.ends_with('Z'),
        "{created}"
    );
    assert_eq!(
        env.ok(&[
            "volume",
            "inspect",
            "-f",
            "{{.Name}}={{index .Labels \"tier\"}}",
            "data",
            &anon
        ]),
        format!("data=db\n{anon}=<no value>\n")
    );
    assert_eq!(
        env.ok(&["volume", "inspect", "--format", "{{.Mountpoint}}", "data"]),
        format!("{}\n", mountpoint.display())
    );

    // A missing one among others: the found ones are printed, the error goes to stderr, exit 1.
    let o = env.run(&["volume", "inspect", "data", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&o)).expect("inspect json");
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    assert_eq!(stderr(&o), "Error: No such volume: nope\n");
    let o = env.run(&["volume", "inspect", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "[]\n");

    // rm: prints each name; a missing one fails (but the others still go); -f ignores missing ones.
    let o = env.run(&["volume", "rm", "web-1", "nope", &anon]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), format!("web-1\n{anon}\n"));
    assert_eq!(
        stderr(&o),
        "Error response from daemon: get nope: no such volume\n"
    );
    assert_eq!(
        env.ok(&["volume", "rm", "-f", "nope", "data"]),
        "nope\ndata\n"
    );
    assert!(!env.root().join("volumes/data").exists());
    assert!(!env.root().join("volumes").join(&anon).exists());
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "");
    assert_eq!(env.ok(&["volume", "ls"]), "DRIVER    VOLUME NAME\n");
}

#[test]
fn bad_input_gets_one_line_and_a_non_zero_exit() {
    let env = Env::new();
    env.ok(&["volume", "create", "good"]);
    for bad in ["a", "a/b", "with space", ".hidden", "x$y"] {
        let e = one_line_error(&env, &["volume", "create", bad], 1);
        assert!(
            e.starts_with(&format!("Error response from daemon: create {bad}: "))
                && e.contains("includes invalid characters for a local volume name"),
            "{e}"
        );
    }
    assert_eq!(
        one_line_error(&env, &["volume", "create", "-d", "nfs", "v2"], 1),
        "Error response from daemon: create v2: error looking up volume plugin nfs: plugin \"nfs\" not found"
    );
    assert_eq!(
        one_line_error(&env, &["volume", "create", "-o", "bogus=1", "v2"], 1),
        "Error response from daemon: create v2: invalid option key: \"bogus\""
    );
    assert!(
        one_line_error(&env, &["volume", "create", "-o", "type=tmpfs", "v2"], 1)
            .contains("not supported by berth")
    );
    assert_eq!(
        one_line_error(&env, &["volume", "create", "--label", "=v", "v2"], 125),
        "invalid argument \"=v\" for \"--label\" flag: invalid label '=v': empty name"
    );
    assert!(
        one_line_error(&env, &["volume", "create", "--name", "v3", "v2"], 1)
            .contains("conflicting options")
    );
    assert_eq!(
        one_line_error(&env, &["volume", "inspect", "nope"], 1),
        "Error: No such volume: nope"
    );
    assert_eq!(
        one_line_error(&env, &["volume", "rm", "nope"], 1),
        "Error response from daemon: get nope: no such volume"
    );
    assert_eq!(
        one_line_error(&env, &["volume", "ls", "-f", "colour=red"], 1),
        "Error response from daemon: invalid filter 'colour'"
    );
    assert_eq!(
        one_line_error(&env, &["volume", "ls", "-f", "dangling=maybe"], 1),
        "Error response from daemon: invalid filter 'dangling=[maybe]'"
    );
    assert_eq!(
        one_line_error(&env, &["volume", "ls", "-f", "dangling"], 125),
        "invalid argument \"dangling\" for \"-f, --filter\" flag: bad format of filter (expected name=value)"
    );
    assert!(
        one_line_error(&env, &["volume", "ls", "--format", "{{.Name"], 1)
            .starts_with("Error: template parsing error: template: unclosed action")
    );
    assert!(one_line_error(&env, &["volume", "ls", "--format", "{{.Nope}}"], 1).contains("Nope"));
    assert!(
        one_line_error(&env, &["volume", "inspect", "-f", "{{.Name", "good"], 64)
            .starts_with("Template parsing error: ")
    );
    assert!(
        one_line_error(&env, &["volume", "inspect", "-f", "{{.Nope}}", "good"], 1).contains("Nope")
    );
    assert_eq!(
        one_line_error(&env, &["volume", "prune", "-f", "--filter", "until=24h"], 1),
        "Error response from daemon: invalid filter 'until'"
    );
    assert_eq!(
        one_line_error(
            &env,
            &["volume", "prune", "-f", "-a", "--filter", "all=1"],
            1
        ),
        "Error: conflicting options: cannot specify both --all and --filter all=1"
    );
    // Nothing above left a volume behind or took the good one.
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "good\n");
}

#[test]
fn a_named_volume_outlives_its_container_and_is_shared() {
    let env = Env::new();
    env.load_busybox();
    env.ok(&[
        "run",
        "--name",
        "writer",
        "-v",
        "shared:/data",
        "busybox",
        "sh",
        "-c",
        "echo x > /data/f",
    ]);
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "shared\n");
    // Used by a stopped container: in use, not dangling.
    assert_eq!(env.ok(&["volume", "ls", "-q", "-f", "dangling=true"]), "");
    assert_eq!(
        env.ok(&["volume", "ls", "-q", "-f", "dangling=false"]),
        "shared\n"
    );
    env.ok(&["rm", "writer"]);
    assert_eq!(
        env.ok(&["volume", "ls", "-q", "-f", "dangling=true"]),
        "shared\n"
    );
    assert_eq!(
        std::fs::read_to_string(env.root().join("volumes/shared/_data/f"))
            .expect("file in the volume"),
        "x\n"
    );
    assert_eq!(
        env.ok(&[
            "run",
            "--rm",
            "-v",
            "shared:/data",
            "busybox",
            "cat",
            "/data/f"
        ]),
        "x\n"
    );
    // A running container and a second one at the same time: the second one's write is in the volume.
    let a = env.ok(&["run", "-d", "-v", "shared:/data", "busybox", "sleep", "300"]);
    env.ok(&[
        "run",
        "--rm",
        "-v",
        "shared:/data",
        "busybox",
        "sh",
        "-c",
        "echo y > /data/g",
    ]);
    assert_eq!(
        std::fs::read_to_string(env.root().join("volumes/shared/_data/g"))
            .expect("file in the volume"),
        "y\n"
    );
    env.fails(&["volume", "rm", "shared"]);
    env.ok(&["rm", "-f", a.trim()]);
    env.ok(&["volume", "rm", "shared"]);
}

#[test]
fn a_volume_in_use_cannot_be_removed() {
    let env = Env::new();
    env.load_busybox();
    env.ok(&["volume", "create", "data"]);
    let id = env.ok(&[
        "run",
        "-d",
        "--name",
        "user",
        "-v",
        "data:/data",
        "busybox",
        "sleep",
        "300",
    ]);
    let id = id.trim();
    let e = env.fails(&["volume", "rm", "data"]);
    assert_eq!(
        e,
        format!("Error response from daemon: remove data: volume is in use - [{id}]\n")
    );
    let e = env.fails(&["volume", "rm", "-f", "data"]);
    assert!(e.contains("volume is in use"), "{e}");
    // Stopped, the container still holds it (docker's rule: any container that refers to it).
    env.ok(&["stop", "-t", "0", "user"]);
    env.fails(&["volume", "rm", "data"]);
    assert!(env.root().join("volumes/data/_data").is_dir());
    env.ok(&["rm", "user"]);
    assert_eq!(env.ok(&["volume", "rm", "data"]), "data\n");
    assert!(!env.root().join("volumes/data").exists());
}

#[test]
fn prune_takes_only_unused_anonymous_volumes_unless_all() {
    let env = Env::new();
    env.load_busybox();
    env.ok(&["volume", "create", "named-unused"]);
    env.ok(&["volume", "create", "--label", "keep=yes", "named-kept"]);
    let anon_created = env.ok(&["volume", "create"]).trim().to_string();
    let anon_labelled = env
        .ok(&["volume", "create", "--label", "keep=yes"])
        .trim()
        .to_string();
    // An anonymous volume whose container is gone (rm without -v leaves it), with 4 bytes in it.
    let c = env.ok(&[
        "run",
        "-d",
        "-v",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "printf abcd > /scratch/f",
    ]);
    env.ok(&["wait", c.trim()]);
    let orphan = env
        .ok(&[
            "inspect",
            "-f",
            "{{range .Mounts}}{{.Name}}{{end}}",
            c.trim(),
        ])
        .trim()
        .to_string();
    assert!(is_hex64(&orphan), "{orphan}");
    env.ok(&["rm", c.trim()]);
    // In use: an anonymous and a named one held by a living container.
    let holder = env.ok(&[
        "run",
        "-d",
        "-v",
        "/held",
        "-v",
        "named-used:/n",
        "busybox",
        "sleep",
        "300",
    ]);

    // No -f and no "y" on stdin: docker's question, and nothing goes.
    let o = output_with_input(env.cmd().args(["volume", "prune"]), Some(b"n\n"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "WARNING! This will remove anonymous local volumes not used by at least one container.\nAre you sure you want to continue? [y/N] "
    );
    let before = names(&env.ok(&["volume", "ls", "-q"]));
    assert_eq!(before.len(), 7, "{before:?}");

    // A label filter first: only the anonymous, unused ones carrying it.
    let out = env.ok(&["volume", "prune", "-f", "--filter", "label=keep=yes"]);
    assert_eq!(
        out,
        format!("Deleted Volumes:\n{anon_labelled}\n\nTotal reclaimed space: 0B\n")
    );
    // label!=: all but those; the orphan's 4 bytes are reclaimed.
    let mut gone = [anon_created.clone(), orphan.clone()];
    gone.sort();
    let out = env.ok(&["volume", "prune", "-f", "--filter", "label!=keep"]);
    assert_eq!(
        out,
        format!(
            "Deleted Volumes:\n{}\n\nTotal reclaimed space: 4B\n",
            gone.join("\n")
        )
    );
    // Nothing anonymous and unused left.
    assert_eq!(
        env.ok(&["volume", "prune", "-f"]),
        "Total reclaimed space: 0B\n"
    );
    let left = names(&env.ok(&["volume", "ls", "-q"]));
    assert_eq!(left.len(), 4, "{left:?}");
    assert!(left.contains(&"named-unused".to_string()) && left.contains(&"named-kept".to_string()));

    // --all: named ones too, but never one in use; the label! filter still applies.
    assert_eq!(
        env.ok(&["volume", "prune", "-f", "-a", "--filter", "label!=keep=yes"]),
        "Deleted Volumes:\nnamed-unused\n\nTotal reclaimed space: 0B\n"
    );
    let o = output_with_input(env.cmd().args(["volume", "prune", "--all"]), Some(b"y\n"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "WARNING! This will remove all local volumes not used by at least one container.\nAre you sure you want to continue? [y/N] Deleted Volumes:\nnamed-kept\n\nTotal reclaimed space: 0B\n"
    );
    let left = names(&env.ok(&["volume", "ls", "-q"]));
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&"named-used".to_string()));

    // Once the container is gone (with -v: its anonymous volume goes with it), the named one is free.
    env.ok(&["rm", "-f", "-v", holder.trim()]);
    assert_eq!(
        env.ok(&["volume", "prune", "-f", "--filter", "all=true"]),
        "Deleted Volumes:\nnamed-used\n\nTotal reclaimed space: 0B\n"
    );
    assert_eq!(env.ok(&["volume", "ls", "-q"]), "");
}
