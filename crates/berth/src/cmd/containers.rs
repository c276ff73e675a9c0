//! stop, kill, restart, rm, ps, logs, wait, pause, unpause, rename, container prune, inspect, port, and the
//! hidden `container-monitor` entry point.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};
use clap::Args;
use engine::container::{settings_of, Engine};
use engine::logs::{self, ReadOptions};
use engine::records::{Container, Status};
use serde_json::{json, Value};

use super::run::engine;
use super::Ctx;
use crate::output::{human_duration, table};
use crate::template::Template;

#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(
        short = 't',
        long = "time",
        alias = "timeout",
        allow_hyphen_values = true
    )]
    time: Option<i64>,
    /// Signal to send instead of the container's stop signal
    #[arg(short = 's', long)]
    signal: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct ContainersArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    all: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Filter output based on conditions provided (status, name, id, label, exited, ancestor)
    #[arg(short = 'f', long = "filter")]
    filter: Vec<String>,
    /// Format output: table, json, or a Go template
    #[arg(long)]
    format: Option<String>,
    /// Show n last created containers (includes all states)
    #[arg(short = 'n', long = "last")]
    last: Option<usize>,
    /// Show the latest created container (includes all states)
    #[arg(short = 'l', long)]
    latest: bool,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    follow: bool,
    /// Number of lines to show from the end of the logs ("all" for all)
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// Show logs since timestamp (RFC 3339) or relative (42m)
    #[arg(long)]
    since: Option<String>,
    /// Show logs before a timestamp or relative time
    #[arg(long)]
    until: Option<String>,
    /// Show timestamps
    #[arg(short = 't', long)]
    timestamps: bool,
    container: String,
}

#[derive(Args)]
pub struct RenameArgs {
    container: String,
    new_name: String,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    force: bool,
    /// Provide filter values (label=..., until=...)
    #[arg(long)]
    filter: Vec<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format the output using a Go template
    #[arg(short = 'f', long)]
    format: Option<String>,
    /// Display total file sizes (accepted; sizes are not computed)
    #[arg(short = 's', long)]
    size: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct MonitorArgs {
    id: String,
    #[arg(long = "wait-attach")]
    wait_attach: bool,
}

pub fn monitor(ctx: &Ctx, a: MonitorArgs) -> Result<i32> {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("berth"));
    Ok(engine::monitor::main(engine::monitor::MonitorArgs {
        root: ctx.root.clone(),
        driver: ctx.driver,
        exe,
        id: a.id,
        wait_attach: a.wait_attach,
    }))
}

/// Runs `f` for each container named, printing the name on success and docker's error line otherwise.
fn each(
    e: &mut Engine,
    names: &[String],
    mut f: impl FnMut(&mut Engine, &str) -> Result<()>,
) -> Result<i32> {
    let mut code = 0;
    for n in names {
        match f(e, n) {
            Ok(()) => println!("{n}"),
            Err(err) => {
                eprintln!("Error response from daemon: {}", super::error_line(&err));
                code = 1;
            }
        }
    }
    Ok(code)
}

pub fn stop(ctx: &Ctx, a: StopArgs) -> Result<i32> {
    let mut e = engine(ctx)?;
    let sig = a.signal.clone();
    each(&mut e, &a.containers, |e, n| {
        if let Some(s) = &sig {
            let c = e.get(n)?;
            if matches!(c.status, Status::Running | Status::Paused) {
                e.kill(n, s)?;
            }
        }
        Ok(e.stop(n, a.time)?)
    })
}

pub fn kill(ctx: &Ctx, a: KillArgs) -> Result<i32> {
    let mut e = engine(ctx)?;
    let sig = a.signal.clone();
    each(&mut e, &a.containers, |e, n| Ok(e.kill(n, &sig)?))
}

pub fn restart(ctx: &Ctx, a: StopArgs) -> Result<i32> {
    let mut e = engine(ctx)?;
    each(&mut e, &a.containers, |e, n| {
        e.stop(n, a.time)?;
        e.start(n, None)?;
        Ok(())
    })
}

pub fn rm(ctx: &Ctx, a: RmArgs) -> Result<i32> {
    let mut e = engine(ctx)?;
    each(&mut e, &a.containers, |e, n| {
        e.remove(n, a.force, a.volumes)?;
        Ok(())
    })
}

pub fn pause(ctx: &Ctx, a: ContainersArgs) -> Result<i32> {
    let mut e = engine(ctx)?;
    each(&mut e, &a.containers, |e, n| Ok(e.pause(n)?))
}

pub fn unpause(ctx: &Ctx, a: ContainersArgs) -> Result<i32> {
    let mut e = engine(ctx)?;
    each(&mut e, &a.containers, |e, n| Ok(e.unpause(n)?))
}

pub fn wait(ctx: &Ctx, a: ContainersArgs) -> Result<i32> {
    let mut e = engine(ctx)?;
    let mut code = 0;
    for n in &a.containers {
        match e.wait(n) {
            Ok(c) => println!("{c}"),
            Err(err) => {
                eprintln!("Error response from daemon: {err}");
                code = 1;
            }
        }
    }
    Ok(code)
}

pub fn rename(ctx: &Ctx, a: RenameArgs) -> Result<i32> {
    let mut e = engine(ctx)?;
    let c = e.get(&a.container)?;
    e.records().rename(&c.id, &a.new_name)?;
    Ok(0)
}

pub fn prune(ctx: &Ctx, a: PruneArgs) -> Result<i32> {
    if !a.force
        && !super::volume::confirm(
            "WARNING! This will remove all stopped containers.\nAre you sure you want to continue?",
        )?
    {
        return Ok(0);
    }
    let mut e = engine(ctx)?;
    let now = now_secs();
    let mut until = None;
    let mut labels = Vec::new();
    for f in &a.filter {
        match f.split_once('=') {
            Some(("until", v)) => until = Some(parse_until(v, now)?),
            Some(("label", v)) => labels.push(v.to_string()),
            _ => bail!("invalid filter {f:?}: use until=DURATION or label=K[=V]"),
        }
    }
    println!("Deleted Containers:");
    let mut freed = 0u64;
    for c in e.records().list(true)? {
        if !matches!(c.status, Status::Exited | Status::Created | Status::Dead) {
            continue;
        }
        if let Some(u) = until {
            if c.created_at / 1_000_000_000 >= u {
                continue;
            }
        }
        if !labels.iter().all(|l| label_matches(&c, l)) {
            continue;
        }
        freed += super::volume::dir_size(
            &e.store()?.active_upper(&c.id),
            &mut std::collections::HashSet::new(),
        );
        e.remove(&c.id, false, false)?;
        println!("{}", c.id);
    }
    println!();
    println!(
        "Total reclaimed space: {}",
        crate::output::human_size(freed)
    );
    Ok(0)
}

fn parse_until(v: &str, now: i64) -> Result<i64> {
    if let Some(t) = crate::output::parse_rfc3339(v) {
        return Ok(t);
    }
    let d = humantime_like(v)
        .ok_or_else(|| anyhow!("invalid until {v:?}: use 10m, 2h or a timestamp"))?;
    Ok(now - d)
}

/// "90s", "10m", "2h", "1d" in seconds.
fn humantime_like(v: &str) -> Option<i64> {
    let (num, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = num.parse().ok()?;
    Some(match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return None,
    })
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn label_matches(c: &Container, f: &str) -> bool {
    match f.split_once('=') {
        Some((k, v)) => c.labels.get(k).map(String::as_str) == Some(v),
        None => c.labels.contains_key(f),
    }
}

fn read_config(e: &Engine, c: &Container) -> Value {
    std::fs::read(e.paths(&c.id).config())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// docker's status column: "Up 5 seconds", "Exited (0) 3 minutes ago", "Created", ...
pub fn status_text(c: &Container, now: i64) -> String {
    let ago =
        |t: Option<i64>| human_duration(now - t.unwrap_or(now * 1_000_000_000) / 1_000_000_000);
    match c.status {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", ago(c.started_at)),
        Status::Paused => format!("Up {} (Paused)", ago(c.started_at)),
        Status::Restarting => format!(
            "Restarting ({}) {} ago",
            c.exit_code.unwrap_or(0),
            ago(c.finished_at)
        ),
        Status::Exited => format!(
            "Exited ({}) {} ago",
            c.exit_code.unwrap_or(0),
            ago(c.finished_at)
        ),
        Status::Dead => "Dead".into(),
    }
}

fn ps_filter(c: &Container, f: &str) -> Result<bool> {
    let (k, v) = f
        .split_once('=')
        .ok_or_else(|| anyhow!("invalid filter {f:?}: expected KEY=VALUE"))?;
    Ok(match k {
        "status" => {
            if Status::parse(v).is_none() {
                bail!("invalid filter 'status={v}': use created, restarting, running, paused, exited or dead");
            }
            c.status.as_str() == v
        }
        "name" => c.name.contains(v.trim_start_matches('/')),
        "id" => c.id.starts_with(v),
        "label" => label_matches(c, v),
        "exited" => {
            c.status == Status::Exited && c.exit_code.map(|x| x.to_string()) == Some(v.into())
        }
        "ancestor" => c.image == v || c.image_id.contains(v),
        _ => bail!("invalid filter {k:?}: use status, name, id, label, exited or ancestor"),
    })
}

pub fn ps(ctx: &Ctx, a: PsArgs) -> Result<i32> {
    let mut e = engine(ctx)?;
    let all = a.all || a.last.is_some() || a.latest;
    let mut list = e.records().list(all)?;
    let mut keep = Vec::new();
    for c in list.drain(..) {
        let mut ok = true;
        for f in &a.filter {
            ok &= ps_filter(&c, f)?;
        }
        if ok {
            keep.push(c);
        }
    }
    if let Some(n) = a.last {
        keep.truncate(n);
    }
    if a.latest {
        keep.truncate(1);
    }
    let now = now_secs();
    let trunc = |s: &str| -> String {
        if a.no_trunc {
            s.to_string()
        } else {
            s.chars().take(12).collect()
        }
    };
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for c in &keep {
            writeln!(out, "{}", trunc(&c.id))?;
        }
        return Ok(0);
    }
    let net_store = engine::network::existing_store(&ctx.root);
    let objects: Vec<Value> = keep
        .iter()
        .map(|c| {
            let mut cmd = engine::container::command_line(&read_config(&e, c));
            if !a.no_trunc && cmd.chars().count() > 20 {
                cmd = format!("{}…", cmd.chars().take(19).collect::<String>());
            }
            let labels = c
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            json!({
                "ID": trunc(&c.id),
                "Image": c.image,
                "Command": format!("\"{cmd}\""),
                "CreatedAt": crate::output::format_utc(c.created_at / 1_000_000_000),
                "RunningFor": format!("{} ago", human_duration(now - c.created_at / 1_000_000_000)),
                "Ports": ports_text(net_store.as_ref(), &c.id),
                "State": c.status.as_str(),
                "Status": status_text(c, now),
                "Size": "0B",
                "Names": c.name,
                "Labels": labels,
                "Mounts": "",
                "Networks": settings_of(c).run.network_name(),
            })
        })
        .collect();
    match a.format.as_deref() {
        Some("json") => {
            for o in &objects {
                writeln!(out, "{o}")?;
            }
        }
        Some(t) if t != "table" => {
            let (header, body) = match t.strip_prefix("table") {
                Some(rest) => (true, rest.trim_start().to_string()),
                None => (false, t.to_string()),
            };
            let tpl = Template::parse(&body)?;
            let mut rows = Vec::new();
            if header {
                let h = Template::parse(&body)?.render(&header_object())?;
                rows.push(h.split('\t').map(str::to_string).collect::<Vec<_>>());
            }
            for o in &objects {
                let line = tpl.render(o)?;
                if header {
                    rows.push(line.split('\t').map(str::to_string).collect());
                } else {
                    writeln!(out, "{line}")?;
                }
            }
            if header {
                write!(out, "{}", table(&rows))?;
            }
        }
        _ => {
            let mut rows = vec![vec![
                "CONTAINER ID".to_string(),
                "IMAGE".into(),
                "COMMAND".into(),
                "CREATED".into(),
                "STATUS".into(),
                "PORTS".into(),
                "NAMES".into(),
            ]];
            for o in &objects {
                let s = |k: &str| o[k].as_str().unwrap_or("").to_string();
                rows.push(vec![
                    s("ID"),
                    s("Image"),
                    s("Command"),
                    s("RunningFor"),
                    s("Status"),
                    s("Ports"),
                    s("Names"),
                ]);
            }
            write!(out, "{}", table(&rows))?;
        }
    }
    Ok(0)
}

/// docker's column titles for `--format "table ..."`.
fn header_object() -> Value {
    json!({
        "ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
        "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
        "Names": "NAMES", "Labels": "LABELS", "Mounts": "MOUNTS", "Networks": "NETWORKS",
    })
}

pub fn logs(ctx: &Ctx, a: LogsArgs) -> Result<i32> {
    let e = engine(ctx)?;
    let c = e.get(&a.container)?;
    let paths = e.paths(&c.id);
    let now = SystemTime::now();
    let tail = match a.tail.as_str() {
        "all" | "-1" => None,
        n => Some(
            n.parse::<usize>()
                .map_err(|_| anyhow!("invalid --tail {n:?}: a number or \"all\""))?,
        ),
    };
    let opts = ReadOptions {
        tail,
        since: a
            .since
            .as_deref()
            .map(|s| logs::parse_since(s, now))
            .transpose()?,
        until: a
            .until
            .as_deref()
            .map(|s| logs::parse_since(s, now))
            .transpose()?,
        timestamps: a.timestamps,
        stdout: true,
        stderr: true,
    };
    let path = paths.log(&c.id);
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let mut emit = |entry: &logs::LogEntry| -> bool {
        let bytes = entry.render(a.timestamps);
        let r = match entry.stream {
            logs::Stream::Stdout => out.write_all(&bytes).and_then(|_| out.flush()),
            logs::Stream::Stderr => err.write_all(&bytes).and_then(|_| err.flush()),
        };
        r.is_ok()
    };
    if !path.exists() {
        return Ok(0);
    }
    if a.follow {
        let lock = paths.lock();
        let id = c.id.clone();
        let root = ctx.root.clone();
        let stop = move || {
            // Done when no monitor holds the container (it exited, or never started) or it is gone.
            !engine::lock::held(&lock) || !root.join("containers").join(&id).exists()
        };
        logs::follow(&path, &opts, &mut emit, &stop)?;
    } else {
        for entry in logs::read(&path, &opts)? {
            if !emit(&entry) {
                break;
            }
        }
    }
    Ok(0)
}

fn rfc3339(nanos: Option<i64>) -> String {
    match nanos {
        Some(n) if n > 0 => logs::format_rfc3339_nano(UNIX_EPOCH + Duration::from_nanos(n as u64)),
        _ => "0001-01-01T00:00:00Z".into(),
    }
}

/// docker inspect's shape for a container.
pub fn inspect_value(e: &Engine, c: &Container) -> Value {
    let s = settings_of(c);
    let config = read_config(e, c);
    let args: Vec<Value> = config["process"]["args"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let (path, rest) = match args.split_first() {
        Some((p, r)) => (p.clone(), r.to_vec()),
        None => (json!(""), vec![]),
    };
    let mounts: Vec<Value> = s
        .mounts
        .iter()
        .filter_map(|m| match m {
            engine::volumes::MountRequest::Bind { src, dst, readonly, .. } => Some(json!({
                "Type": "bind", "Source": src, "Destination": dst, "Mode": "", "RW": !readonly,
                "Propagation": "rprivate"})),
            _ => None,
        })
        .chain(s.volumes.iter().map(|(name, dst)| {
            json!({"Type": "volume", "Name": name,
                   "Source": e.root().join("volumes").join(name).join("_data"),
                   "Destination": dst, "Driver": "local", "Mode": "", "RW": true, "Propagation": ""})
        }))
        .collect();
    let paths = e.paths(&c.id);
    let st = c.status;
    json!({
        "Id": c.id,
        "Created": rfc3339(Some(c.created_at)),
        "Path": path,
        "Args": rest,
        "State": {
            "Status": st.as_str(),
            "Running": matches!(st, Status::Running | Status::Paused | Status::Restarting),
            "Paused": st == Status::Paused,
            "Restarting": st == Status::Restarting,
            "OOMKilled": c.oom_killed,
            "Dead": st == Status::Dead,
            "Pid": c.pid.unwrap_or(0),
            "ExitCode": c.exit_code.unwrap_or(0),
            "Error": "",
            "StartedAt": rfc3339(c.started_at),
            "FinishedAt": rfc3339(c.finished_at),
        },
        "Image": c.image_id,
        "ResolvConfPath": paths.dir.join("resolv.conf"),
        "HostnamePath": paths.dir.join("hostname"),
        "HostsPath": paths.dir.join("hosts"),
        "LogPath": paths.log(&c.id),
        "Name": format!("/{}", c.name),
        "RestartCount": c.restart_count,
        "Driver": e.driver().name(),
        "Platform": "linux",
        "HostConfig": {
            "Binds": s.mounts.iter().filter_map(|m| match m {
                engine::volumes::MountRequest::Bind { src, dst, readonly, .. } =>
                    Some(format!("{}:{}{}", src.display(), dst, if *readonly { ":ro" } else { "" })),
                _ => None,
            }).collect::<Vec<_>>(),
            "NetworkMode": s.run.network_name(),
            "RestartPolicy": {"Name": s.restart.name(), "MaximumRetryCount": match s.restart {
                engine::container::RestartPolicy::OnFailure(n) => n, _ => 0 }},
            "AutoRemove": s.auto_remove,
            "CapAdd": s.run.cap_add,
            "CapDrop": s.run.cap_drop,
            "Privileged": s.run.privileged,
            "ReadonlyRootfs": s.run.read_only,
            "SecurityOpt": Value::Null,
            "Memory": s.run.memory.unwrap_or(0),
            "MemorySwap": s.run.memory_swap.unwrap_or(0),
            "NanoCpus": s.run.cpus.map(|c| (c * 1e9) as i64).unwrap_or(0),
            "CpuShares": s.run.cpu_shares.unwrap_or(0),
            "PidsLimit": s.run.pids_limit,
            "Init": s.run.init,
            "Runtime": c.runtime,
            "LogConfig": {"Type": "json-file", "Config": {}},
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": config["hostname"],
            "User": s.run.user.clone().unwrap_or_default(),
            "Tty": s.run.tty,
            "OpenStdin": s.interactive,
            "Env": config["process"]["env"],
            "Cmd": if s.run.cmd.is_empty() { Value::Null } else { json!(s.run.cmd) },
            "Image": c.image,
            "WorkingDir": config["process"]["cwd"],
            "Entrypoint": s.run.entrypoint,
            "Labels": c.labels,
            "StopSignal": s.stop_signal,
            "StopTimeout": s.stop_timeout,
        },
        "NetworkSettings": network_settings(e.root(), &c.id),
    })
}

/// docker's NetworkSettings: the published ports and, per network, the address the container holds.
fn network_settings(root: &std::path::Path, id: &str) -> Value {
    let mut ports = serde_json::Map::new();
    let mut networks = serde_json::Map::new();
    let mut first = json!({"IPAddress": "", "Gateway": "", "MacAddress": "", "IPPrefixLen": 0});
    if let Some(store) = engine::network::existing_store(root) {
        for p in store.ports_of(id).unwrap_or_default() {
            let key = format!("{}/{}", p.container_port, p.proto);
            let entry = ports.entry(key).or_insert_with(|| json!([]));
            if let Some(a) = entry.as_array_mut() {
                a.push(
                    json!({"HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string()}),
                );
            }
        }
        for (i, (n, l)) in store
            .leases_of(id)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let v = json!({
                "NetworkID": n.id,
                "EndpointID": id,
                "Gateway": n.gateway.to_string(),
                "IPAddress": l.ip.to_string(),
                "IPPrefixLen": n.subnet.prefix(),
                "MacAddress": l.mac,
                "Aliases": l.names,
            });
            if i == 0 {
                first = json!({"IPAddress": v["IPAddress"], "Gateway": v["Gateway"],
                    "MacAddress": v["MacAddress"], "IPPrefixLen": v["IPPrefixLen"]});
            }
            networks.insert(n.name.clone(), v);
        }
    }
    let mut v = json!({"Ports": ports, "Networks": networks});
    if let (Some(o), Some(f)) = (v.as_object_mut(), first.as_object()) {
        for (k, x) in f {
            o.insert(k.clone(), x.clone());
        }
    }
    v
}

pub fn inspect(ctx: &Ctx, a: InspectArgs) -> Result<i32> {
    let e = engine(ctx)?;
    let mut values = Vec::new();
    let mut code = 0;
    for n in &a.containers {
        match e.get(n) {
            Ok(c) => values.push(inspect_value(&e, &c)),
            Err(err) => {
                eprintln!("Error: {err}");
                code = 1;
            }
        }
    }
    let mut out = std::io::stdout().lock();
    match &a.format {
        Some(f) => {
            let t = Template::parse(f)?;
            for v in &values {
                writeln!(out, "{}", t.render(v)?)?;
            }
        }
        None => writeln!(out, "{}", serde_json::to_string_pretty(&values)?)?,
    }
    Ok(code)
}

/// `berth port CONTAINER [PRIVATE_PORT[/PROTO]]`: docker's "80/tcp -> 0.0.0.0:8080" lines.
pub fn port(ctx: &Ctx, a: ContainersArgs) -> Result<i32> {
    let e = engine(ctx)?;
    let (name, filter) = match a.containers.as_slice() {
        [c] => (c, None),
        [c, p] => (c, Some(p.clone())),
        _ => bail!("\"port\" requires 1 or 2 arguments: CONTAINER [PRIVATE_PORT[/PROTO]]"),
    };
    let c = e.get(name)?;
    let mut out = std::io::stdout().lock();
    let mut found = false;
    let store = engine::network::existing_store(&ctx.root);
    for p in engine::network::ports_of(store.as_ref(), &c.id) {
        let key = format!("{}/{}", p.container_port, p.proto);
        let wanted = match &filter {
            None => true,
            Some(f) if f.contains('/') => *f == key,
            Some(f) => *f == p.container_port.to_string() && p.proto.to_string() == "tcp",
        };
        if !wanted {
            continue;
        }
        found = true;
        if filter.is_some() {
            writeln!(out, "{}:{}", p.host_ip, p.host_port)?;
        } else {
            writeln!(out, "{key} -> {}:{}", p.host_ip, p.host_port)?;
        }
    }
    if let (Some(f), false) = (filter, found) {
        eprintln!("Error: No public port '{f}' published for {name}");
        return Ok(1);
    }
    Ok(0)
}

/// ps's PORTS column: "0.0.0.0:8080->80/tcp, ...".
fn ports_text(store: Option<&net::store::Store>, id: &str) -> String {
    engine::network::ports_of(store, id)
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p.host_ip, p.host_port, p.container_port, p.proto
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
