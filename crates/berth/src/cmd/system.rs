//! `berth info` (`system info`) and `berth version`: docker's plain-text layouts, and `--format` templates over
//! objects with docker's key names. berth has no daemon, so the "server" is this host and this store.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use anyhow::Result;
use clap::{Args, Subcommand};
use engine::records::Status;
use serde::Serialize;
use serde_json::{json, Value};

use super::run::engine;
use super::Ctx;
use crate::output::{bytes_size, tabwrite};
use crate::template::Template;

/// The Docker Engine API version berth's answers follow.
pub const API_VERSION: &str = "1.43";
/// The oldest API version docker's clients may negotiate down to.
const MIN_API_VERSION: &str = "1.12";
const VERSION: &str = env!("CARGO_PKG_VERSION");
const DEFAULT_RUNTIME: &str = "berth-runtime";
/// Runtimes `--runtime NAME` can use when they are on PATH; berth-runtime is found next to berth as well.
const KNOWN_RUNTIMES: [&str; 4] = ["berth-runtime", "runc", "crun", "youki"];

#[derive(Subcommand)]
pub enum SystemCommand {
    /// Display system-wide information
    Info(InfoArgs),
}

#[derive(Args)]
pub struct InfoArgs {
    /// Format output using a custom template ("json": the whole object as JSON)
    #[arg(short = 'f', long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct VersionArgs {
    /// Format output using a custom template ("json": the whole object as JSON)
    #[arg(short = 'f', long)]
    format: Option<String>,
}

pub fn run(ctx: &Ctx, c: SystemCommand) -> Result<i32> {
    match c {
        SystemCommand::Info(a) => info(ctx, a),
    }
}

/// `--format` as docker reads it for info and version: "json" is `{{json .}}`; a template that does not parse
/// is exit 64 with docker's "template parsing error".
fn format_template(format: &str) -> std::result::Result<Template, i32> {
    let src = if format == "json" {
        "{{json .}}"
    } else {
        format
    };
    Template::parse(src).map_err(|e| {
        eprintln!("template parsing error: {e}");
        64
    })
}

fn render(t: &Template, v: &Value) -> Result<i32> {
    let text = t.render(v)?;
    writeln!(std::io::stdout().lock(), "{text}")?;
    Ok(0)
}

/// JSON indented by four spaces, as docker's inspect prints it.
pub(super) fn docker_json(v: &impl Serialize) -> Result<String> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    v.serialize(&mut ser)?;
    Ok(String::from_utf8(buf)?)
}

/// Go's GOARCH for this build: docker prints linux/amd64, not linux/x86_64.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// KEY=VALUE lines of os-release(5), values unquoted.
fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = match v.as_bytes().first() {
            Some(q @ (b'"' | b'\'')) if v.len() >= 2 && v.as_bytes()[v.len() - 1] == *q => {
                let inner = &v[1..v.len() - 1];
                if *q == b'"' {
                    // Shell double quotes: a backslash escapes the next character.
                    let mut s = String::new();
                    let mut chars = inner.chars();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => s.extend(chars.next()),
                            c => s.push(c),
                        }
                    }
                    s
                } else {
                    inner.to_string()
                }
            }
            _ => v.to_string(),
        };
        out.insert(k.trim().to_string(), v);
    }
    out
}

/// /etc/os-release, else /usr/lib/os-release (the spec's fallback).
fn os_release() -> BTreeMap<String, String> {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| parse_os_release(&t))
        .unwrap_or_default()
}

fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let kb = l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?;
                kb.trim().parse::<u64>().ok()
            })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// CPUs this process may run on (Go's runtime.NumCPU, which docker reports).
fn ncpu() -> usize {
    // SAFETY: sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into a zeroed set we own;
    // CPU_COUNT only reads it.
    let n = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            usize::try_from(libc::CPU_COUNT(&set)).unwrap_or(0)
        } else {
            0
        }
    };
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// The filesystem under the store, by docker's names for it ("extfs" for ext2/3/4).
fn backing_filesystem(p: &Path) -> &'static str {
    let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
        return "<unknown>";
    };
    // SAFETY: statfs fills a struct we own from a NUL-terminated path.
    let st = unsafe {
        let mut s: libc::statfs = std::mem::zeroed();
        if libc::statfs(c.as_ptr(), &mut s) != 0 {
            return "<unknown>";
        }
        s
    };
    match fs_magic(&st) {
        0xEF53 => "extfs",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlayfs",
        0x2FC1_2FC1 => "zfs",
        0xF2F5_2010 => "f2fs",
        0x6969 => "nfs",
        _ => "<unknown>",
    }
}

// f_type is a signed or an unsigned word depending on the architecture: on some the cast is a no-op.
#[allow(clippy::unnecessary_cast)]
fn fs_magic(s: &libc::statfs) -> i64 {
    s.f_type as i64
}

fn cgroup_version() -> &'static str {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    }
}

/// docker info's object: the server's fields at the top level, the client's under ClientInfo.
fn info_object(ctx: &Ctx) -> Result<Value> {
    let mut e = engine(ctx)?;
    let (mut running, mut paused, mut stopped) = (0, 0, 0);
    let containers = e.records().list(true)?;
    for c in &containers {
        // dockerd's state counter: restarting, created, exited and dead containers are all "stopped".
        match c.status {
            Status::Running => running += 1,
            Status::Paused => paused += 1,
            _ => stopped += 1,
        }
    }
    let images = e.store()?.list()?.len();
    let root = std::fs::canonicalize(e.root()).unwrap_or_else(|_| e.root().to_path_buf());
    let runtimes: BTreeMap<&str, Value> = KNOWN_RUNTIMES
        .iter()
        .filter_map(|n| {
            let oci = engine::oci::resolve(n, &root).ok()?;
            Some((*n, json!({ "path": oci.bin })))
        })
        .collect();
    let os = os_release();
    let insecure: BTreeMap<&str, Value> = ctx
        .insecure
        .iter()
        .map(|h| {
            let cfg = json!({"Name": h, "Mirrors": [], "Secure": false, "Official": false});
            (h.as_str(), cfg)
        })
        .collect();
    Ok(json!({
        "ID": "",
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersPaused": paused,
        "ContainersStopped": stopped,
        "Images": images,
        "Driver": e.driver().name(),
        "DriverStatus": [["Backing Filesystem", backing_filesystem(&root)]],
        "Plugins": {
            "Volume": ["local"],
            "Network": ["host", "null"],
            "Authorization": null,
            "Log": ["json-file"],
        },
        "Debug": false,
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "KernelVersion": read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        "OperatingSystem": os.get("PRETTY_NAME").cloned().unwrap_or_else(|| "<unknown>".into()),
        "OSVersion": os.get("VERSION_ID").cloned().unwrap_or_default(),
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "NCPU": ncpu(),
        "MemTotal": mem_total(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"InsecureRegistryCIDRs": [], "IndexConfigs": insecure, "Mirrors": []},
        "DockerRootDir": root,
        "Name": read_trimmed("/proc/sys/kernel/hostname").unwrap_or_default(),
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": VERSION,
        "Runtimes": runtimes,
        "DefaultRuntime": DEFAULT_RUNTIME,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false,
                  "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": false,
        "Isolation": "",
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "Warnings": null,
        "ClientInfo": {"Debug": false, "Version": VERSION, "Context": "default", "Plugins": [],
                       "Warnings": null},
    }))
}

/// docker info's plain text (its prettyPrintInfo, for the fields berth has).
fn info_text(v: &Value) -> String {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let list = |v: &Value| {
        v.as_array()
            .map(|a| a.iter().map(s).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    line("Client:".into());
    line(format!(" Version:    {}", s(&v["ClientInfo"]["Version"])));
    line(format!(" Context:    {}", s(&v["ClientInfo"]["Context"])));
    line(format!(" Debug Mode: {}", s(&v["ClientInfo"]["Debug"])));
    line(String::new());
    line("Server:".into());
    line(format!(" Containers: {}", s(&v["Containers"])));
    line(format!("  Running: {}", s(&v["ContainersRunning"])));
    line(format!("  Paused: {}", s(&v["ContainersPaused"])));
    line(format!("  Stopped: {}", s(&v["ContainersStopped"])));
    line(format!(" Images: {}", s(&v["Images"])));
    line(format!(" Server Version: {}", s(&v["ServerVersion"])));
    line(format!(" Storage Driver: {}", s(&v["Driver"])));
    for pair in v["DriverStatus"].as_array().into_iter().flatten() {
        line(format!("  {}: {}", s(&pair[0]), s(&pair[1])));
    }
    line(format!(" Logging Driver: {}", s(&v["LoggingDriver"])));
    line(format!(" Cgroup Driver: {}", s(&v["CgroupDriver"])));
    line(format!(" Cgroup Version: {}", s(&v["CgroupVersion"])));
    line(" Plugins:".into());
    line(format!("  Volume: {}", list(&v["Plugins"]["Volume"])));
    line(format!("  Network: {}", list(&v["Plugins"]["Network"])));
    line(format!("  Log: {}", list(&v["Plugins"]["Log"])));
    line(format!(" Swarm: {}", s(&v["Swarm"]["LocalNodeState"])));
    let runtimes: Vec<&str> = v["Runtimes"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    if !runtimes.is_empty() {
        line(format!(" Runtimes: {}", runtimes.join(" ")));
    }
    line(format!(" Default Runtime: {}", s(&v["DefaultRuntime"])));
    line(" Security Options:".into());
    for opt in v["SecurityOptions"].as_array().into_iter().flatten() {
        // "name=seccomp,profile=builtin" -> "  seccomp" and "   Profile: builtin"
        for kv in s(opt).split(',') {
            match kv.split_once('=') {
                Some(("name", n)) => line(format!("  {n}")),
                Some(("profile", p)) => line(format!("   Profile: {p}")),
                _ => {}
            }
        }
    }
    line(format!(" Kernel Version: {}", s(&v["KernelVersion"])));
    line(format!(" Operating System: {}", s(&v["OperatingSystem"])));
    line(format!(" OSType: {}", s(&v["OSType"])));
    line(format!(" Architecture: {}", s(&v["Architecture"])));
    line(format!(" CPUs: {}", s(&v["NCPU"])));
    line(format!(
        " Total Memory: {}",
        bytes_size(v["MemTotal"].as_u64().unwrap_or(0))
    ));
    if !s(&v["Name"]).is_empty() {
        line(format!(" Name: {}", s(&v["Name"])));
    }
    line(format!(" Docker Root Dir: {}", s(&v["DockerRootDir"])));
    line(format!(" Debug Mode: {}", s(&v["Debug"])));
    line(format!(" Experimental: {}", s(&v["ExperimentalBuild"])));
    if let Some(m) = v["RegistryConfig"]["IndexConfigs"].as_object() {
        if !m.is_empty() {
            line(" Insecure Registries:".into());
            for name in m.keys() {
                line(format!("  {name}"));
            }
        }
    }
    line(format!(
        " Live Restore Enabled: {}",
        s(&v["LiveRestoreEnabled"])
    ));
    line(String::new());
    out
}

pub fn info(ctx: &Ctx, a: InfoArgs) -> Result<i32> {
    let template = match a.format.as_deref().filter(|f| !f.is_empty()) {
        Some(f) => match format_template(f) {
            Ok(t) => Some(t),
            Err(code) => return Ok(code),
        },
        None => None,
    };
    let v = info_object(ctx)?;
    match template {
        Some(t) => render(&t, &v),
        None => {
            write!(std::io::stdout().lock(), "{}", info_text(&v))?;
            Ok(0)
        }
    }
}

/// `<runtime> --version` as (version, commit): berth-runtime prints "berth-runtime 0.1.0"; runc and crun print
/// "runc version 1.1.12" and a "commit: ..." line.
fn runtime_version(bin: &Path) -> Option<(String, String)> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.lines().next()?.split_whitespace().last()?.to_string();
    let commit = text
        .lines()
        .find_map(|l| l.strip_prefix("commit:"))
        .map(|c| c.trim().to_string())
        .unwrap_or_default();
    Some((version, commit))
}

/// docker version's object: Client, and Server with its components (the engine and the default runtime).
fn version_object(ctx: &Ctx) -> Value {
    // Packagers may set BERTH_GIT_COMMIT at build time; docker prints an empty commit the same way.
    let commit = option_env!("BERTH_GIT_COMMIT").unwrap_or("");
    let kernel = read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut components = vec![json!({
        "Name": "Engine",
        "Version": VERSION,
        "Details": {
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": commit,
            "Os": "linux",
            "Arch": go_arch(),
            "KernelVersion": kernel,
            "Experimental": "false",
        },
    })];
    if let Some((version, rcommit)) = engine::oci::resolve(DEFAULT_RUNTIME, &ctx.root)
        .ok()
        .and_then(|oci| runtime_version(&oci.bin))
    {
        components.push(json!({
            "Name": DEFAULT_RUNTIME,
            "Version": version,
            "Details": {"GitCommit": rcommit},
        }));
    }
    json!({
        "Client": {
            "Version": VERSION,
            "ApiVersion": API_VERSION,
            "DefaultAPIVersion": API_VERSION,
            "GitCommit": commit,
            "Os": "linux",
            "Arch": go_arch(),
            "Context": "default",
        },
        "Server": {
            "Platform": {"Name": "berth"},
            "Components": components,
            "Version": VERSION,
            "ApiVersion": API_VERSION,
            "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": commit,
            "Os": "linux",
            "Arch": go_arch(),
            "KernelVersion": kernel,
        },
    })
}

/// docker version's default template, for the fields berth has (no Go version or build time).
fn version_text(v: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let c = &v["Client"];
    let mut lines = vec![
        "Client:".to_string(),
        format!(" Version:\t{}", s(&c["Version"])),
        format!(" API version:\t{}", s(&c["ApiVersion"])),
    ];
    if !s(&c["GitCommit"]).is_empty() {
        lines.push(format!(" Git commit:\t{}", s(&c["GitCommit"])));
    }
    lines.push(format!(" OS/Arch:\t{}/{}", s(&c["Os"]), s(&c["Arch"])));
    lines.push(format!(" Context:\t{}", s(&c["Context"])));
    lines.push(String::new());
    let srv = &v["Server"];
    lines.push(format!("Server: {}", s(&srv["Platform"]["Name"])));
    for comp in srv["Components"].as_array().into_iter().flatten() {
        let d = &comp["Details"];
        lines.push(format!(" {}:", s(&comp["Name"])));
        lines.push(format!("  Version:\t{}", s(&comp["Version"])));
        if s(&comp["Name"]) == "Engine" {
            lines.push(format!(
                "  API version:\t{} (minimum version {})",
                s(&d["ApiVersion"]),
                s(&d["MinAPIVersion"])
            ));
            if !s(&d["GitCommit"]).is_empty() {
                lines.push(format!("  Git commit:\t{}", s(&d["GitCommit"])));
            }
            lines.push(format!("  OS/Arch:\t{}/{}", s(&d["Os"]), s(&d["Arch"])));
            lines.push(format!("  Experimental:\t{}", s(&d["Experimental"])));
        } else if let Some(m) = d.as_object() {
            for (k, val) in m {
                if !s(val).is_empty() {
                    lines.push(format!("  {k}:\t{}", s(val)));
                }
            }
        }
    }
    let mut text = tabwrite(&lines.join("\n"), 20, 1);
    text.push('\n');
    text
}

pub fn version(ctx: &Ctx, a: VersionArgs) -> Result<i32> {
    let template = match a.format.as_deref().filter(|f| !f.is_empty()) {
        Some(f) => match format_template(f) {
            Ok(t) => Some(t),
            Err(code) => return Ok(code),
        },
        None => None,
    };
    let v = version_object(ctx);
    match template {
        Some(t) => render(&t, &v),
        None => {
            write!(std::io::stdout().lock(), "{}", version_text(&v))?;
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::human_size4;

    #[test]
    fn sizes_like_go_units() {
        assert_eq!(human_size4(0), "0B");
        assert_eq!(human_size4(2), "2B");
        assert_eq!(human_size4(1_234_567), "1.235MB");
        assert_eq!(human_size4(1000), "1kB");
        assert_eq!(bytes_size(2 * 1024 * 1024 * 1024), "2GiB");
        assert_eq!(bytes_size(2_097_152_000), "1.953GiB");
        assert_eq!(bytes_size(512), "512B");
    }

    #[test]
    fn tabwriter_like_go() {
        assert_eq!(
            tabwrite("DRIVER\tVOLUME NAME\nlocal\tdata", 10, 3),
            "DRIVER    VOLUME NAME\nlocal     data"
        );
        // A line without a tab ends the column block.
        assert_eq!(
            tabwrite("a:\t1\nlonger label:\t2\nhead\n b:\t3", 4, 1),
            "a:            1\nlonger label: 2\nhead\n b: 3"
        );
        assert_eq!(
            tabwrite(" Version:\t0.1.0", 20, 1),
            " Version:           0.1.0"
        );
    }

    #[test]
    fn os_release_values() {
        let m = parse_os_release(
            "# comment\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID='12'\nID=debian\nX=\"a \\\"b\\\"\"\n",
        );
        assert_eq!(m["PRETTY_NAME"], "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(m["VERSION_ID"], "12");
        assert_eq!(m["ID"], "debian");
        assert_eq!(m["X"], "a \"b\"");
    }
}
