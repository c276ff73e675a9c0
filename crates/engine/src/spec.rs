//! Image config + `docker run` options => OCI runtime spec (config.json), the way dockerd builds it
//! (moby daemon/oci_linux.go, oci/defaults.go, the container create path).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::media::{ContainerConfig, ImageConfig};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::{caps, mounts, resources, seccomp, user};

pub use crate::resources::{parse_memory, parse_ulimit};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Bad input: the message names the flag or field and the value.
    #[error("{0}")]
    Invalid(String),
    #[error("no command specified")]
    NoCommand,
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum SeccompChoice {
    #[default]
    Default,
    Unconfined,
    File(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// Lower case, without RLIMIT_: "nofile".
    pub name: String,
    /// -1 is unlimited.
    pub soft: i64,
    pub hard: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MountSpec {
    Bind {
        src: PathBuf,
        dst: String,
        readonly: bool,
    },
    /// `host_dir` is the volume's directory, already resolved (created) by the caller.
    Volume {
        host_dir: PathBuf,
        dst: String,
        readonly: bool,
    },
    Tmpfs {
        dst: String,
        /// Bytes.
        size: Option<i64>,
        mode: Option<u32>,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// A new network namespace (only `lo`, brought up by whoever sets up networking).
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A new network namespace with an interface on a bridge network (`--network bridge|NAME`, named in
    /// `RunOptions::network_ref`).
    Bridge,
    /// Another container's network namespace (`--network container:ID`).
    Container,
}

/// What `docker run` / `docker create` flags say. `None` / empty = not given.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunOptions {
    /// `--entrypoint`; `Some(vec![])` (from `--entrypoint ""`) clears the image's entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// The arguments after the image.
    pub cmd: Vec<String>,
    /// `-e K=V`; a bare `K` takes the caller's value if set, else is dropped. `--env-file` already expanded.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub tty: bool,
    /// Keeps stdin open: the monitor's business, nothing in the spec.
    pub interactive: bool,
    pub read_only: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub seccomp: SeccompChoice,
    pub no_new_privileges: bool,
    pub memory: Option<i64>,
    /// Memory plus swap; -1 is unlimited swap.
    pub memory_swap: Option<i64>,
    pub cpus: Option<f64>,
    pub cpu_shares: Option<u64>,
    pub pids_limit: Option<i64>,
    pub ulimits: Vec<Ulimit>,
    pub mounts: Vec<MountSpec>,
    pub network: NetworkMode,
    /// Bridge: the network's name or id; Container: the container whose namespace is joined.
    #[serde(default)]
    pub network_ref: Option<String>,
    /// Container: the namespace to join (`/proc/PID/ns/net` of that container's process), set by the engine.
    #[serde(default)]
    pub netns_path: Option<String>,
    /// `-p`, each mapping expanded.
    #[serde(default)]
    pub publish: Vec<crate::network::PortSpec>,
    /// `-P`: the image's exposed ports to free host ports.
    #[serde(default)]
    pub publish_all: bool,
    /// `--ip` on the (first) network.
    #[serde(default)]
    pub ip: Option<String>,
    /// `--dns` servers for /etc/resolv.conf.
    #[serde(default)]
    pub dns: Vec<String>,
    /// `--add-host NAME:IP` lines for /etc/hosts.
    #[serde(default)]
    pub add_hosts: Vec<String>,
    /// `--network-alias`: more names on the network.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--init`: run `init_path` (bind-mounted at /sbin/docker-init) as pid 1 in front of the command.
    pub init: bool,
    pub init_path: Option<PathBuf>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    /// cgroupsPath becomes "<parent>/berth-<id>", or relative "berth/<id>" (under the caller's cgroup).
    pub cgroup_parent: Option<String>,
}

impl RunOptions {
    /// docker's HostConfig.NetworkMode word.
    pub fn network_name(&self) -> String {
        let r = self.network_ref.as_deref().unwrap_or_default();
        match self.network {
            NetworkMode::None => "none".into(),
            NetworkMode::Host => "host".into(),
            NetworkMode::Bridge if r.is_empty() => "bridge".into(),
            NetworkMode::Bridge => r.into(),
            NetworkMode::Container => format!("container:{r}"),
        }
    }
}

fn config(image: &ImageConfig) -> ContainerConfig {
    image.config.clone().unwrap_or_default()
}

/// The signal `docker stop` sends: `--stop-signal`, else the image's StopSignal, else SIGTERM.
pub fn stop_signal(image: &ImageConfig, opts: &RunOptions) -> String {
    opts.stop_signal
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| config(image).stop_signal.filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "SIGTERM".into())
}

/// Entrypoint + Cmd as docker merges them.
fn args(cfg: &ContainerConfig, opts: &RunOptions) -> Result<Vec<String>, SpecError> {
    let (entrypoint, image_cmd) = match &opts.entrypoint {
        // --entrypoint drops the image's Cmd too.
        Some(e) => (e.clone(), Vec::new()),
        None => (
            cfg.entrypoint.clone().unwrap_or_default(),
            cfg.cmd.clone().unwrap_or_default(),
        ),
    };
    let cmd = if opts.cmd.is_empty() {
        image_cmd
    } else {
        opts.cmd.clone()
    };
    let mut a = entrypoint;
    a.extend(cmd);
    if a.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(a)
}

fn env_key(kv: &str) -> &str {
    kv.split_once('=').map(|(k, _)| k).unwrap_or(kv)
}

/// docker's ReplaceOrAppendEnvValues: a later K=V replaces an earlier K.
fn replace_or_append(env: &mut Vec<String>, kv: String) {
    let k = env_key(&kv).to_string();
    match env.iter_mut().find(|e| env_key(e) == k) {
        Some(e) => *e = kv,
        None => env.push(kv),
    }
}

/// The process environment: PATH, HOSTNAME, TERM (with a tty), then the image's Env, then -e (by key),
/// then HOME from /etc/passwd if still unset (runc's init does that; berth-runtime does not).
fn environment(
    cfg: &ContainerConfig,
    opts: &RunOptions,
    hostname: &str,
    home: &str,
    caller_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, SpecError> {
    let mut env = vec![
        format!("PATH={DEFAULT_PATH}"),
        format!("HOSTNAME={hostname}"),
    ];
    if opts.tty {
        env.push("TERM=xterm".into());
    }
    for kv in cfg.env.iter().flatten() {
        if kv.contains('=') {
            replace_or_append(&mut env, kv.clone());
        }
    }
    for kv in &opts.env {
        let kv = if kv.contains('=') {
            kv.clone()
        } else {
            match caller_env(kv) {
                Some(v) => format!("{kv}={v}"),
                None => continue,
            }
        };
        if env_key(&kv).is_empty() {
            return Err(SpecError::Invalid(format!(
                "invalid -e {kv:?}: variable name is empty"
            )));
        }
        if kv.contains('\0') {
            return Err(SpecError::Invalid(format!(
                "invalid -e {kv:?}: contains a NUL byte"
            )));
        }
        replace_or_append(&mut env, kv);
    }
    if !env.iter().any(|e| env_key(e) == "HOME") {
        env.push(format!("HOME={home}"));
    }
    Ok(env)
}

fn host_hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn cwd(cfg: &ContainerConfig, opts: &RunOptions) -> Result<String, SpecError> {
    let (dir, source) = match (&opts.workdir, &cfg.working_dir) {
        (Some(w), _) if !w.is_empty() => (w.clone(), "--workdir"),
        (_, Some(w)) if !w.is_empty() => (w.clone(), "image config WorkingDir"),
        _ => return Ok("/".into()),
    };
    if !dir.starts_with('/') {
        return Err(SpecError::Invalid(format!(
            "{source} {dir:?}: the working directory must be an absolute path"
        )));
    }
    Ok(dir)
}

/// Builds config.json for container `container_id` whose root filesystem is at `rootfs`.
pub fn build(
    container_id: &str,
    rootfs: &Path,
    image: &ImageConfig,
    opts: &RunOptions,
) -> Result<Value, SpecError> {
    build_with_env(container_id, rootfs, image, opts, &|k| {
        std::env::var(k).ok()
    })
}

fn build_with_env(
    container_id: &str,
    rootfs: &Path,
    image: &ImageConfig,
    opts: &RunOptions,
    caller_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Value, SpecError> {
    if container_id.is_empty() {
        return Err(SpecError::Invalid("empty container id".into()));
    }
    let cfg = config(image);

    let mut args = args(&cfg, opts)?;
    if opts.init {
        if opts.init_path.is_none() {
            return Err(SpecError::Invalid(
                "--init: no init binary is configured".into(),
            ));
        }
        let mut a = vec![mounts::INIT_PATH.to_string(), "--".to_string()];
        a.append(&mut args);
        args = a;
    }

    let hostname = match (&opts.hostname, opts.network) {
        (Some(h), _) if !h.is_empty() => h.clone(),
        (_, NetworkMode::Host) => host_hostname().unwrap_or_else(|| short_id(container_id)),
        _ => short_id(container_id),
    };
    if hostname.len() > 64 || hostname.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(SpecError::Invalid(format!(
            "invalid --hostname {hostname:?}"
        )));
    }

    // No user at all is root, still looked up for HOME (as runc's init does).
    let u = match (&opts.user, &cfg.user) {
        (Some(u), _) if !u.is_empty() => user::resolve(rootfs, u, "--user")?,
        (_, Some(u)) if !u.is_empty() => user::resolve(rootfs, u, "image config User")?,
        _ => user::resolve(rootfs, "0", "--user")?,
    };
    let (uid, gid, additional, home) = (u.uid, u.gid, u.additional_gids, u.home);
    let env = environment(&cfg, opts, &hostname, &home, caller_env)?;

    let caps = caps::tweak(&opts.cap_add, &opts.cap_drop, opts.privileged)?;

    let mut process = Map::new();
    process.insert("terminal".into(), json!(opts.tty));
    let mut user_obj = json!({"uid": uid, "gid": gid});
    if !additional.is_empty() {
        user_obj["additionalGids"] = json!(additional);
    }
    process.insert("user".into(), user_obj);
    process.insert("args".into(), json!(args));
    process.insert("env".into(), json!(env));
    process.insert("cwd".into(), json!(cwd(&cfg, opts)?));
    process.insert(
        "capabilities".into(),
        json!({"bounding": caps, "effective": caps, "permitted": caps}),
    );
    if !opts.ulimits.is_empty() {
        process.insert("rlimits".into(), json!(resources::rlimits(&opts.ulimits)));
    }
    if opts.no_new_privileges {
        process.insert("noNewPrivileges".into(), json!(true));
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "cgroup"}),
    ];
    let mut sysctl = Map::new();
    if opts.network == NetworkMode::Container {
        let path = opts.netns_path.as_deref().ok_or_else(|| {
            SpecError::Invalid("--network container: no namespace to join".into())
        })?;
        namespaces.push(json!({"type": "network", "path": path}));
    } else if opts.network != NetworkMode::Host {
        namespaces.push(json!({"type": "network"}));
        // docker (20.10+) lets unprivileged processes bind low ports and ping in their own netns.
        sysctl.insert("net.ipv4.ip_unprivileged_port_start".into(), json!("0"));
        sysctl.insert("net.ipv4.ping_group_range".into(), json!("0 2147483647"));
    }

    let mut res = resources::resources(opts)?;
    // The runtime adds the standard device rules (null, zero, full, random, urandom, tty, pts) after these.
    res.insert(
        "devices".into(),
        json!([{"allow": opts.privileged, "access": "rwm"}]),
    );

    let cgroups_path = match opts.cgroup_parent.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => format!("{}/berth-{container_id}", p.trim_end_matches('/')),
        None => format!("berth/{container_id}"),
    };

    let mut linux = Map::new();
    linux.insert("namespaces".into(), json!(namespaces));
    linux.insert("resources".into(), Value::Object(res));
    linux.insert("cgroupsPath".into(), json!(cgroups_path));
    if !sysctl.is_empty() {
        linux.insert("sysctl".into(), Value::Object(sysctl));
    }
    if !opts.privileged {
        linux.insert("maskedPaths".into(), json!(mounts::MASKED_PATHS));
        linux.insert("readonlyPaths".into(), json!(mounts::READONLY_PATHS));
        let profile = match &opts.seccomp {
            SeccompChoice::Default => Some(seccomp::default_profile(&caps)?),
            SeccompChoice::Unconfined => None,
            SeccompChoice::File(p) => Some(seccomp::load_file(p)?),
        };
        if let Some(p) = profile {
            linux.insert("seccomp".into(), p);
        }
    }

    let init = if opts.init {
        opts.init_path.as_deref()
    } else {
        None
    };
    let mounts = mounts::all(opts.privileged, opts.read_only, &opts.mounts, init)?;

    let mut annotations = cfg.labels.clone().unwrap_or_default();
    annotations.extend(opts.labels.clone());

    let mut spec = json!({
        "ociVersion": "1.2.0",
        "process": Value::Object(process),
        "root": {"path": rootfs, "readonly": opts.read_only},
        "hostname": hostname,
        "mounts": mounts,
        "linux": Value::Object(linux),
    });
    if !annotations.is_empty() {
        spec["annotations"] = json!(annotations);
    }
    Ok(spec)
}

/// The first 12 characters of an id, as docker shows it.
pub(crate) fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

/// Adds read-only binds of the engine's /etc/hosts, /etc/hostname and /etc/resolv.conf files (each only if
/// given), replacing any mount already at that destination.
pub fn add_etc_files(
    spec: &mut Value,
    hosts: Option<&Path>,
    hostname: Option<&Path>,
    resolv: Option<&Path>,
) -> Result<(), SpecError> {
    let mounts = spec["mounts"]
        .as_array_mut()
        .ok_or_else(|| SpecError::Invalid("spec has no mounts array".into()))?;
    for (dst, src) in [
        ("/etc/hosts", hosts),
        ("/etc/hostname", hostname),
        ("/etc/resolv.conf", resolv),
    ] {
        let Some(src) = src else { continue };
        if !src.is_absolute() {
            return Err(SpecError::Invalid(format!(
                "{dst} source {:?}: must be an absolute path",
                src.display().to_string()
            )));
        }
        mounts.retain(|m| m["destination"] != dst);
        mounts.push(json!({
            "destination": dst,
            "type": "bind",
            "source": src,
            "options": ["rbind", "rprivate", "ro"],
        }));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
