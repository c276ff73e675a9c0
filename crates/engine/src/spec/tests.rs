use super::*;

fn image(cfg: Value) -> ImageConfig {
    serde_json::from_value(json!({
        "architecture": "amd64", "os": "linux",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": []}
    }))
    .unwrap()
}

fn rootfs() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("etc")).unwrap();
    std::fs::write(
        d.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("etc/group"),
        "root:x:0:\napp:x:1000:\nextra:x:2000:app\n",
    )
    .unwrap();
    d
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn build_ok(img: &ImageConfig, opts: &RunOptions) -> Value {
    let d = rootfs();
    let v = build_with_env("0123456789abcdef", d.path(), img, opts, &no_env).unwrap();
    // Whatever we produce must be a spec berth-runtime accepts.
    let spec = runtime::spec::parse(v.to_string().as_bytes()).unwrap();
    runtime::spec::validate(&spec).unwrap();
    v
}

fn err(img: &ImageConfig, opts: &RunOptions) -> String {
    let d = rootfs();
    build_with_env("0123456789abcdef", d.path(), img, opts, &no_env)
        .unwrap_err()
        .to_string()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn opts() -> RunOptions {
    RunOptions::default()
}

#[test]
fn args_merge_like_docker() {
    let img = image(json!({"Entrypoint": ["/ep"], "Cmd": ["a", "b"]}));
    assert_eq!(
        strs(&build_ok(&img, &opts())["process"]["args"]),
        ["/ep", "a", "b"]
    );
    let o = RunOptions {
        cmd: vec!["c".into()],
        ..opts()
    };
    assert_eq!(strs(&build_ok(&img, &o)["process"]["args"]), ["/ep", "c"]);
    // --entrypoint drops the image's Cmd.
    let o = RunOptions {
        entrypoint: Some(vec!["/other".into()]),
        ..opts()
    };
    assert_eq!(strs(&build_ok(&img, &o)["process"]["args"]), ["/other"]);
    let o = RunOptions {
        entrypoint: Some(vec!["/other".into()]),
        cmd: vec!["x".into()],
        ..opts()
    };
    assert_eq!(
        strs(&build_ok(&img, &o)["process"]["args"]),
        ["/other", "x"]
    );
    // --entrypoint "" clears it: the command alone.
    let o = RunOptions {
        entrypoint: Some(vec![]),
        cmd: vec!["sh".into()],
        ..opts()
    };
    assert_eq!(strs(&build_ok(&img, &o)["process"]["args"]), ["sh"]);
    let o = RunOptions {
        entrypoint: Some(vec![]),
        ..opts()
    };
    assert_eq!(err(&img, &o), "no command specified");
    assert_eq!(err(&image(json!({})), &opts()), "no command specified");
    let cmd_only = image(json!({"Cmd": ["sh"]}));
    assert_eq!(
        strs(&build_ok(&cmd_only, &opts())["process"]["args"]),
        ["sh"]
    );
    // An image without a config object at all.
    let bare: ImageConfig =
        serde_json::from_value(json!({"rootfs": {"type": "layers", "diff_ids": []}})).unwrap();
    let o = RunOptions {
        cmd: vec!["true".into()],
        ..opts()
    };
    assert_eq!(strs(&build_ok(&bare, &o)["process"]["args"]), ["true"]);
}

#[test]
fn init_wraps_the_command() {
    let img = image(json!({"Cmd": ["sh"]}));
    let o = RunOptions {
        init: true,
        init_path: Some("/usr/lib/berth/init".into()),
        ..opts()
    };
    let v = build_ok(&img, &o);
    assert_eq!(
        strs(&v["process"]["args"]),
        ["/sbin/docker-init", "--", "sh"]
    );
    let m = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/sbin/docker-init")
        .unwrap();
    assert_eq!(m["source"], "/usr/lib/berth/init");
    let o = RunOptions {
        init: true,
        ..opts()
    };
    assert!(err(&img, &o).contains("--init"));
}

#[test]
fn environment_order_and_overrides() {
    let img = image(json!({"Cmd": ["sh"], "Env": ["PATH=/image/bin", "A=1", "B=2"]}));
    let o = RunOptions {
        env: vec![
            "B=3".into(),
            "C=4".into(),
            "FROM_CALLER".into(),
            "UNSET".into(),
        ],
        tty: true,
        hostname: Some("box".into()),
        ..opts()
    };
    let d = rootfs();
    let caller = |k: &str| (k == "FROM_CALLER").then(|| "yes".to_string());
    let v = build_with_env("id", d.path(), &img, &o, &caller).unwrap();
    assert_eq!(
        strs(&v["process"]["env"]),
        [
            "PATH=/image/bin",
            "HOSTNAME=box",
            "TERM=xterm",
            "A=1",
            "B=3",
            "C=4",
            "FROM_CALLER=yes",
            "HOME=/root"
        ]
    );
    let v = build_ok(&image(json!({"Cmd": ["sh"]})), &opts());
    assert_eq!(
        strs(&v["process"]["env"]),
        [
            format!("PATH={DEFAULT_PATH}"),
            "HOSTNAME=0123456789ab".into(),
            "HOME=/root".into()
        ]
    );
    let o = RunOptions {
        env: vec!["HOME=/x".into()],
        user: Some("app".into()),
        ..opts()
    };
    let v = build_ok(&image(json!({"Cmd": ["sh"]})), &o);
    assert!(strs(&v["process"]["env"]).contains(&"HOME=/x".to_string()));
    let o = RunOptions {
        user: Some("app".into()),
        ..opts()
    };
    let v = build_ok(&image(json!({"Cmd": ["sh"]})), &o);
    assert!(strs(&v["process"]["env"]).contains(&"HOME=/home/app".to_string()));
    let o = RunOptions {
        env: vec!["=x".into()],
        ..opts()
    };
    assert!(err(&image(json!({"Cmd": ["sh"]})), &o).contains("-e"));
}

#[test]
fn user_and_cwd() {
    let img = image(json!({"Cmd": ["sh"], "User": "app", "WorkingDir": "/srv"}));
    let v = build_ok(&img, &opts());
    assert_eq!(
        v["process"]["user"],
        json!({"uid": 1000, "gid": 1000, "additionalGids": [2000]})
    );
    assert_eq!(v["process"]["cwd"], "/srv");
    let o = RunOptions {
        user: Some("0:0".into()),
        workdir: Some("/w".into()),
        ..opts()
    };
    let v = build_ok(&img, &o);
    assert_eq!(v["process"]["user"], json!({"uid": 0, "gid": 0}));
    assert_eq!(v["process"]["cwd"], "/w");
    let v = build_ok(&image(json!({"Cmd": ["sh"]})), &opts());
    assert_eq!(v["process"]["cwd"], "/");
    let e = err(&image(json!({"Cmd": ["sh"], "User": "ghost"})), &opts());
    assert!(
        e.contains("image config User") && e.contains("ghost"),
        "{e}"
    );
    let e = err(
        &img,
        &RunOptions {
            user: Some("nobody2".into()),
            ..opts()
        },
    );
    assert!(e.contains("--user") && e.contains("nobody2"), "{e}");
    let e = err(
        &img,
        &RunOptions {
            workdir: Some("rel".into()),
            ..opts()
        },
    );
    assert!(e.contains("--workdir"), "{e}");
}

#[test]
fn default_security() {
    let v = build_ok(&image(json!({"Cmd": ["sh"]})), &opts());
    let c = &v["process"]["capabilities"];
    assert_eq!(strs(&c["bounding"]), caps::DEFAULT);
    assert_eq!(c["bounding"], c["effective"]);
    assert_eq!(c["bounding"], c["permitted"]);
    assert!(c.get("inheritable").is_none() && c.get("ambient").is_none());
    assert!(v["process"].get("noNewPrivileges").is_none());
    assert_eq!(strs(&v["linux"]["maskedPaths"]), mounts::MASKED_PATHS);
    assert_eq!(strs(&v["linux"]["readonlyPaths"]), mounts::READONLY_PATHS);
    assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(
        v["linux"]["resources"]["devices"],
        json!([{"allow": false, "access": "rwm"}])
    );
    let ns: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(ns, ["pid", "ipc", "uts", "mount", "cgroup", "network"]);
    assert_eq!(v["linux"]["cgroupsPath"], "berth/0123456789abcdef");
    assert_eq!(v["hostname"], "0123456789ab");
    assert_eq!(v["process"]["terminal"], false);
    assert_eq!(v["root"]["readonly"], false);
    assert!(v["process"].get("rlimits").is_none());
    assert!(v.get("annotations").is_none());
}

#[test]
fn privileged_opens_everything() {
    let o = RunOptions {
        privileged: true,
        seccomp: SeccompChoice::Default,
        ..opts()
    };
    let v = build_ok(&image(json!({"Cmd": ["sh"]})), &o);
    assert_eq!(
        strs(&v["process"]["capabilities"]["bounding"]),
        caps::all_supported()
    );
    assert!(v["linux"].get("seccomp").is_none());
    assert!(v["linux"].get("maskedPaths").is_none());
    assert!(v["linux"].get("readonlyPaths").is_none());
    assert_eq!(
        v["linux"]["resources"]["devices"],
        json!([{"allow": true, "access": "rwm"}])
    );
    let sys = v["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/sys")
        .unwrap();
    assert!(!sys["options"].as_array().unwrap().contains(&json!("ro")));
}

#[test]
fn caps_seccomp_and_nnp() {
    let img = image(json!({"Cmd": ["sh"]}));
    let o = RunOptions {
        cap_add: vec!["sys_admin".into()],
        cap_drop: vec!["CAP_NET_RAW".into()],
        no_new_privileges: true,
        ..opts()
    };
    let v = build_ok(&img, &o);
    let b = strs(&v["process"]["capabilities"]["bounding"]);
    assert!(b.contains(&"CAP_SYS_ADMIN".into()) && !b.contains(&"CAP_NET_RAW".into()));
    assert_eq!(v["process"]["noNewPrivileges"], true);
    let rules = v["linux"]["seccomp"]["syscalls"].as_array().unwrap();
    assert!(rules
        .iter()
        .any(|r| r["names"].as_array().unwrap().contains(&json!("mount"))));
    let e = err(
        &img,
        &RunOptions {
            cap_add: vec!["CAP_FOO".into()],
            ..opts()
        },
    );
    assert_eq!(e, "unknown capability \"CAP_FOO\" in --cap-add");
    let v = build_ok(
        &img,
        &RunOptions {
            seccomp: SeccompChoice::Unconfined,
            ..opts()
        },
    );
    assert!(v["linux"].get("seccomp").is_none());
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("custom.json");
    std::fs::write(&f, r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap();
    let v = build_ok(
        &img,
        &RunOptions {
            seccomp: SeccompChoice::File(f.clone()),
            ..opts()
        },
    );
    assert_eq!(
        v["linux"]["seccomp"],
        json!({"defaultAction": "SCMP_ACT_ALLOW"})
    );
    std::fs::write(&f, "[").unwrap();
    let e = err(
        &img,
        &RunOptions {
            seccomp: SeccompChoice::File(f),
            ..opts()
        },
    );
    assert!(
        e.contains("custom.json") && e.contains("invalid JSON"),
        "{e}"
    );
}

#[test]
fn resources_and_rlimits() {
    let img = image(json!({"Cmd": ["sh"]}));
    let o = RunOptions {
        memory: Some(parse_memory("512m").unwrap()),
        memory_swap: Some(parse_memory("1g").unwrap()),
        cpus: Some(1.0),
        cpu_shares: Some(1024),
        pids_limit: Some(64),
        ulimits: vec![parse_ulimit("nofile=1024:2048").unwrap()],
        ..opts()
    };
    let v = build_ok(&img, &o);
    let r = &v["linux"]["resources"];
    assert_eq!(r["memory"], json!({"limit": 512 << 20, "swap": 1 << 30}));
    assert_eq!(
        r["cpu"],
        json!({"quota": 100000, "period": 100000, "shares": 1024})
    );
    assert_eq!(r["pids"], json!({"limit": 64}));
    assert_eq!(
        v["process"]["rlimits"],
        json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048}])
    );
    assert_eq!(
        err(
            &img,
            &RunOptions {
                cpus: Some(0.0),
                ..opts()
            }
        ),
        "--cpus 0: must be more than 0"
    );
}

#[test]
fn tty_readonly_hostname_labels_network_cgroup() {
    let img = image(json!({"Cmd": ["sh"], "Labels": {"a": "image", "b": "image"}}));
    let mut labels = BTreeMap::new();
    labels.insert("b".to_string(), "flag".to_string());
    let o = RunOptions {
        tty: true,
        read_only: true,
        hostname: Some("web".into()),
        labels,
        network: NetworkMode::Host,
        cgroup_parent: Some("/docker/".into()),
        ..opts()
    };
    let v = build_ok(&img, &o);
    assert_eq!(v["process"]["terminal"], true);
    assert_eq!(v["root"]["readonly"], true);
    assert_eq!(v["hostname"], "web");
    assert_eq!(v["annotations"], json!({"a": "image", "b": "flag"}));
    assert!(!v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&json!({"type": "network"})));
    assert!(v["linux"].get("sysctl").is_none());
    assert_eq!(v["linux"]["cgroupsPath"], "/docker/berth-0123456789abcdef");
    // Host networking without --hostname: the host's name.
    let o = RunOptions {
        network: NetworkMode::Host,
        ..opts()
    };
    let v = build_ok(&img, &o);
    assert_eq!(v["hostname"].as_str(), host_hostname().as_deref());
    let o = RunOptions {
        hostname: Some("a b".into()),
        ..opts()
    };
    assert!(err(&img, &o).contains("--hostname"));
}

#[test]
fn etc_files_and_mounts() {
    let img = image(json!({"Cmd": ["sh"]}));
    let o = RunOptions {
        mounts: vec![MountSpec::Bind {
            src: "/srv/data".into(),
            dst: "/data".into(),
            readonly: true,
        }],
        ..opts()
    };
    let mut v = build_ok(&img, &o);
    add_etc_files(
        &mut v,
        Some(Path::new("/run/h/hosts")),
        None,
        Some(Path::new("/run/h/resolv.conf")),
    )
    .unwrap();
    add_etc_files(&mut v, Some(Path::new("/run/h2/hosts")), None, None).unwrap();
    let m = v["mounts"].as_array().unwrap();
    let d: Vec<&str> = m
        .iter()
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    assert_eq!(
        &d[d.len() - 3..],
        ["/data", "/etc/resolv.conf", "/etc/hosts"]
    );
    assert_eq!(m.last().unwrap()["source"], "/run/h2/hosts");
    assert_eq!(
        m.last().unwrap()["options"],
        json!(["rbind", "rprivate", "ro"])
    );
    assert!(add_etc_files(&mut v, Some(Path::new("rel")), None, None).is_err());
}

#[test]
fn stop_signal_precedence() {
    let img = image(json!({"StopSignal": "SIGQUIT"}));
    assert_eq!(stop_signal(&img, &opts()), "SIGQUIT");
    let o = RunOptions {
        stop_signal: Some("SIGINT".into()),
        ..opts()
    };
    assert_eq!(stop_signal(&img, &o), "SIGINT");
    assert_eq!(stop_signal(&image(json!({})), &opts()), "SIGTERM");
}
