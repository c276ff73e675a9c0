//! `berth info`, `berth system info` and `berth version` through the berth binary: docker's layout and keys,
//! counts that follow the store's containers and images.

mod common;

use common::*;
use serde_json::Value;

fn os_pretty_name() -> String {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .expect("os-release");
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .expect("PRETTY_NAME")
        .trim_matches('"')
        .to_string()
}

fn cgroup_version() -> &'static str {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

#[test]
fn info_counts_containers_and_images() {
    let env = Env::new();
    // An empty store first.
    let out = env.ok(&["info"]);
    for want in [
        "Client:\n Version:    ",
        "\nServer:\n Containers: 0\n  Running: 0\n  Paused: 0\n  Stopped: 0\n Images: 0\n",
        "\n Logging Driver: json-file\n Cgroup Driver: cgroupfs\n",
        "\n Default Runtime: berth-runtime\n",
    ] {
        assert!(out.contains(want), "{want:?} not in:\n{out}");
    }
    let root = std::fs::canonicalize(env.root()).expect("root");
    let lines: Vec<&str> = out.lines().collect();
    for want in [
        format!(" Server Version: {}", env!("CARGO_PKG_VERSION")),
        " Storage Driver: overlay".to_string(),
        format!(" Cgroup Version: {}", cgroup_version()),
        format!(" Operating System: {}", os_pretty_name()),
        format!(
            " Kernel Version: {}",
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .expect("osrelease")
                .trim()
        ),
        format!(" Docker Root Dir: {}", root.display()),
        format!(" Architecture: {}", std::env::consts::ARCH),
        " OSType: linux".to_string(),
    ] {
        assert!(lines.contains(&want.as_str()), "{want:?} not in:\n{out}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(" Runtimes: ") && l.contains("berth-runtime")),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(" CPUs: ") && l[7..].parse::<u32>().is_ok_and(|n| n > 0)),
        "{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(" Total Memory: ") && l.ends_with("iB")),
        "{out}"
    );

    env.load_busybox();
    let running = env.ok(&["run", "-d", "busybox", "sleep", "300"]);
    let paused = env.ok(&["run", "-d", "busybox", "sleep", "300"]);
    env.ok(&["pause", paused.trim()]);
    env.ok(&["create", "busybox", "true"]);
    env.ok(&["run", "busybox", "true"]);
    let out = env.ok(&["system", "info"]);
    assert!(
        out.contains("\n Containers: 4\n  Running: 1\n  Paused: 1\n  Stopped: 2\n Images: 1\n"),
        "{out}"
    );

    // --format: a template over docker's keys, and the whole object as JSON.
    assert_eq!(
        env.ok(&["info", "--format", "{{.Containers}} {{.ContainersRunning}} {{.ContainersPaused}} {{.ContainersStopped}} {{.Images}}"]),
        "4 1 1 2 1\n"
    );
    assert_eq!(
        env.ok(&[
            "info",
            "-f",
            "{{.DockerRootDir}}|{{.CgroupVersion}}|{{.Driver}}"
        ]),
        format!("{}|{}|overlay\n", root.display(), cgroup_version())
    );
    let j: Value = serde_json::from_str(&env.ok(&["info", "--format", "json"])).expect("info json");
    assert_eq!(j["Containers"], 4);
    assert_eq!(j["ContainersRunning"], 1);
    assert_eq!(j["ContainersPaused"], 1);
    assert_eq!(j["ContainersStopped"], 2);
    assert_eq!(j["Images"], 1);
    assert_eq!(j["ServerVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(j["OperatingSystem"], os_pretty_name());
    assert_eq!(j["DefaultRuntime"], "berth-runtime");
    assert_eq!(j["LoggingDriver"], "json-file");
    assert_eq!(j["CgroupDriver"], "cgroupfs");
    assert!(j["NCPU"].as_u64().is_some_and(|n| n > 0), "{j}");
    assert!(j["MemTotal"].as_u64().is_some_and(|n| n > 0), "{j}");
    assert!(j["KernelVersion"].as_str().is_some_and(|k| !k.is_empty()));
    assert!(j["Runtimes"]["berth-runtime"]["path"].is_string(), "{j}");

    env.ok(&["unpause", paused.trim()]);
    env.ok(&["rm", "-f", running.trim(), paused.trim()]);
    assert_eq!(
        env.ok(&["info", "-f", "{{.ContainersRunning}}/{{.Containers}}"]),
        "0/2\n"
    );
}

#[test]
fn info_and_version_reject_bad_templates() {
    let env = Env::new();
    for args in [
        &["info", "--format", "{{.Containers"][..],
        &["version", "--format", "{{range .Client}}"][..],
    ] {
        let o = env.run(args);
        assert_eq!(o.status.code(), Some(64), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.starts_with("template parsing error: "), "{e}");
    }
    for args in [
        &["info", "--format", "{{.NoSuchKey}}"][..],
        &["version", "-f", "{{.Client.Nope}}"][..],
    ] {
        let e = env.fails(args);
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(
            e.starts_with("Error: ") && (e.contains("Nope") || e.contains("NoSuchKey")),
            "{e}"
        );
    }
}

#[test]
fn version_shows_client_server_and_runtime() {
    let env = Env::new();
    let v = env!("CARGO_PKG_VERSION");
    let out = env.ok(&["version"]);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert!(
        out.starts_with(&format!(
            "Client:\n Version:           {v}\n API version:       1.43\n"
        )),
        "{out}"
    );
    for want in [
        format!(" OS/Arch:           linux/{arch}\n Context:           default\n\nServer: berth\n Engine:\n  Version:          {v}\n  API version:      1.43 (minimum version 1.12)\n"),
        format!("  OS/Arch:          linux/{arch}\n  Experimental:     false\n berth-runtime:\n  Version:          {v}\n"),
    ] {
        assert!(out.contains(&want), "{want:?} not in:\n{out}");
    }
    assert_eq!(
        env.ok(&["version", "--format", "{{.Client.Version}}"]),
        format!("{v}\n")
    );
    assert_eq!(
        env.ok(&[
            "version",
            "-f",
            "{{.Server.Version}} {{.Server.ApiVersion}} {{.Server.Os}}/{{.Server.Arch}}"
        ]),
        format!("{v} 1.43 linux/{arch}\n")
    );
    assert_eq!(
        env.ok(&[
            "version",
            "-f",
            "{{range .Server.Components}}{{.Name}}={{.Version}};{{end}}"
        ]),
        format!("Engine={v};berth-runtime={v};\n")
    );
    let j: Value =
        serde_json::from_str(&env.ok(&["version", "--format", "json"])).expect("version json");
    assert_eq!(j["Client"]["ApiVersion"], "1.43");
    assert_eq!(j["Server"]["Components"][1]["Name"], "berth-runtime");
    // clap's own flag is still there.
    assert_eq!(env.ok(&["--version"]), format!("berth {v}\n"));
}
