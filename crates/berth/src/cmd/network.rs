//! `berth network create|ls|inspect|rm|prune`: docker's flags, output and exit codes over the network records
//! (crates/net's store) and the kernel state the engine keeps for them (crates/engine/src/network.rs).
//! "host" and "none" are listed as docker lists them; "bridge" (the default bridge network) is made on first use.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use net::store::{CreateNetwork, Network};
use serde_json::{json, Value};

use super::run::engine;
use super::Ctx;
use crate::template::Template;

#[derive(Subcommand)]
pub enum NetworkCommand {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
}

#[derive(Args)]
pub struct ConnectArgs {
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    ip: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "alias")]
    alias: Vec<String>,
    network: String,
    container: String,
}

#[derive(Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short = 'f', long)]
    force: bool,
    network: String,
    container: String,
}

#[derive(Args)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short = 'd', long, default_value = "bridge")]
    driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    subnet: Option<String>,
    /// IPv4 Gateway for the master subnet
    #[arg(long)]
    gateway: Option<String>,
    /// Restrict external access to the network
    #[arg(long)]
    internal: bool,
    /// Set metadata on a network
    #[arg(long = "label", value_name = "KEY=VALUE")]
    label: Vec<String>,
    name: String,
}

#[derive(Args)]
pub struct LsArgs {
    /// Only display network IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Pretty-print networks using a Go template (or json)
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
pub struct InspectArgs {
    /// Format the output using the given Go template
    #[arg(short = 'f', long)]
    format: Option<String>,
    #[arg(required = true)]
    networks: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    #[arg(required = true)]
    networks: Vec<String>,
}

#[derive(Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    force: bool,
}

pub fn run(ctx: &Ctx, c: NetworkCommand) -> Result<i32> {
    match c {
        NetworkCommand::Create(a) => create(ctx, a),
        NetworkCommand::Ls(a) => list(ctx, a),
        NetworkCommand::Inspect(a) => inspect(ctx, a),
        NetworkCommand::Rm(a) => rm(ctx, a),
        NetworkCommand::Prune(a) => prune(ctx, a),
        NetworkCommand::Connect(a) => connect(ctx, a),
        NetworkCommand::Disconnect(a) => disconnect(ctx, a),
    }
}

fn daemon_error(msg: impl std::fmt::Display) -> i32 {
    eprintln!("Error response from daemon: {msg}");
    1
}

/// The engine (opening it repairs containers whose monitor died, releasing what they held) and the store.
fn store(ctx: &Ctx) -> Result<(engine::container::Engine, net::store::Store)> {
    let e = engine(ctx)?;
    std::fs::create_dir_all(&ctx.root).with_context(|| format!("create {}", ctx.root.display()))?;
    Ok((e, engine::network::open_store(&ctx.root)?))
}

fn create(ctx: &Ctx, a: CreateArgs) -> Result<i32> {
    let mut labels = BTreeMap::new();
    for l in &a.label {
        let (k, v) = l.split_once('=').unwrap_or((l.as_str(), ""));
        labels.insert(k.to_string(), v.to_string());
    }
    let (_, store) = store(ctx)?;
    if a.name == "bridge" {
        // The default network exists (or comes into being) on its own, as docker's does.
        store.ensure_default()?;
        return Ok(daemon_error("network with name bridge already exists"));
    }
    match store.create(&CreateNetwork {
        name: a.name.clone(),
        subnet: a.subnet.clone(),
        gateway: a.gateway.clone(),
        internal: a.internal,
        labels,
        driver: a.driver.clone(),
    }) {
        Ok(n) => {
            println!("{}", n.id);
            Ok(0)
        }
        Err(e) => Ok(daemon_error(e)),
    }
}

/// docker's two built-in networks that are not bridges: listed, inspectable, never removable.
fn builtin(name: &str) -> Option<Value> {
    let id = match name {
        "host" => "h",
        "none" => "n",
        _ => return None,
    };
    let id: String = std::iter::repeat_n(id, 64).collect();
    Some(json!({
        "Name": name, "Id": id, "Created": "", "Scope": "local", "Driver": if name == "host" { "host" } else { "null" },
        "EnableIPv6": false, "IPAM": {"Driver": "default", "Options": null, "Config": []},
        "Internal": false, "Attachable": false, "Ingress": false, "ConfigOnly": false,
        "Containers": {}, "Options": {}, "Labels": {},
    }))
}

fn describe(
    e: &engine::container::Engine,
    store: &net::store::Store,
    n: &Network,
) -> Result<Value> {
    let mut containers = serde_json::Map::new();
    for l in store.leases(&n.id)? {
        let name = e.get(&l.container_id).map(|c| c.name).unwrap_or_default();
        containers.insert(
            l.container_id.clone(),
            json!({
                "Name": name,
                "EndpointID": l.container_id,
                "MacAddress": l.mac,
                "IPv4Address": format!("{}/{}", l.ip, n.subnet.prefix()),
                "IPv6Address": "",
            }),
        );
    }
    let mut options = serde_json::Map::new();
    options.insert(
        "com.docker.network.bridge.name".into(),
        json!(n.bridge.clone()),
    );
    Ok(json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": {}, "Config": [{"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()}]},
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": options,
        "Labels": n.labels,
    }))
}

fn list(ctx: &Ctx, a: LsArgs) -> Result<i32> {
    let (_, store) = store(ctx)?;
    store.ensure_default()?;
    let mut rows: Vec<Value> = store
        .list()?
        .iter()
        .map(|n| json!({"ID": n.id, "Name": n.name, "Driver": n.driver, "Scope": "local", "Internal": n.internal, "Labels": n.labels}))
        .collect();
    for b in ["host", "none"] {
        let v = builtin(b).unwrap_or_default();
        rows.push(json!({"ID": v["Id"], "Name": b, "Driver": v["Driver"], "Scope": "local", "Internal": false, "Labels": {}}));
    }
    rows.sort_by(|x, y| x["Name"].as_str().cmp(&y["Name"].as_str()));
    let short = |id: &Value| -> String {
        let s = id.as_str().unwrap_or_default();
        if a.no_trunc {
            s.to_string()
        } else {
            s.chars().take(12).collect()
        }
    };
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for r in &rows {
            writeln!(out, "{}", short(&r["ID"]))?;
        }
        return Ok(0);
    }
    match a.format.as_deref() {
        Some("json") => {
            for r in &rows {
                writeln!(out, "{r}")?;
            }
        }
        Some(t) if !t.starts_with("table") => {
            let tpl = Template::parse(t)?;
            for r in &rows {
                writeln!(out, "{}", tpl.render(r)?)?;
            }
        }
        _ => {
            let lines: Vec<Vec<String>> = std::iter::once(
                ["NETWORK ID", "NAME", "DRIVER", "SCOPE"]
                    .map(String::from)
                    .to_vec(),
            )
            .chain(rows.iter().map(|r| {
                vec![
                    short(&r["ID"]),
                    r["Name"].as_str().unwrap_or_default().to_string(),
                    r["Driver"].as_str().unwrap_or_default().to_string(),
                    "local".to_string(),
                ]
            }))
            .collect();
            write!(out, "{}", crate::output::table(&lines))?;
        }
    }
    Ok(0)
}

fn inspect(ctx: &Ctx, a: InspectArgs) -> Result<i32> {
    let (e, store) = store(ctx)?;
    let mut values = Vec::new();
    let mut code = 0;
    for name in &a.networks {
        if let Some(b) = builtin(name) {
            values.push(b);
            continue;
        }
        let got = if name == "bridge" {
            store.ensure_default()
        } else {
            store.get(name)
        };
        match got {
            Ok(n) => values.push(describe(&e, &store, &n)?),
            Err(e) => code = daemon_error(e),
        }
    }
    let mut out = std::io::stdout().lock();
    match a.format.as_deref() {
        Some(t) => {
            let tpl = Template::parse(t)?;
            for v in &values {
                writeln!(out, "{}", tpl.render(v)?)?;
            }
        }
        None => writeln!(out, "{}", serde_json::to_string_pretty(&values)?)?,
    }
    Ok(code)
}

fn rm(ctx: &Ctx, a: RmArgs) -> Result<i32> {
    engine(ctx)?;
    let mut code = 0;
    for name in &a.networks {
        if name == "host" || name == "none" {
            code = daemon_error(format!(
                "{name} is a pre-defined network and cannot be removed"
            ));
            continue;
        }
        match engine::network::remove_network(&ctx.root, name) {
            Ok(_) => println!("{name}"),
            Err(e) => code = daemon_error(e),
        }
    }
    Ok(code)
}

fn prune(ctx: &Ctx, a: PruneArgs) -> Result<i32> {
    if !a.force {
        eprint!("WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let (_, store) = store(ctx)?;
    let mut removed = Vec::new();
    for n in store.list()? {
        if n.name == "bridge" || !store.leases(&n.id)?.is_empty() {
            continue;
        }
        if engine::network::remove_network(&ctx.root, &n.id).is_ok() {
            removed.push(n.name);
        }
    }
    if !removed.is_empty() {
        println!("Deleted Networks:");
        for n in removed {
            println!("{n}");
        }
    }
    Ok(0)
}

/// The container and, if it runs, its process (whose namespace gets the interface).
fn target(
    ctx: &Ctx,
    name: &str,
) -> Result<std::result::Result<(engine::records::Container, Option<i32>), String>> {
    let e = engine(ctx)?;
    let c = match e.get(name) {
        Ok(c) => c,
        Err(err) => return Ok(Err(err.to_string())),
    };
    let mode = engine::container::settings_of(&c).run.network;
    if mode != engine::spec::NetworkMode::Bridge {
        return Ok(Err(format!(
            "container {name} is not on a bridge network (--network {}): it cannot be connected to another",
            engine::container::settings_of(&c).run.network_name()
        )));
    }
    use engine::records::Status;
    let pid = match c.status {
        Status::Running | Status::Paused => c.pid.map(|p| p as i32),
        _ => None,
    };
    Ok(Ok((c, pid)))
}

fn connect(ctx: &Ctx, a: ConnectArgs) -> Result<i32> {
    let (c, pid) = match target(ctx, &a.container)? {
        Ok(t) => t,
        Err(msg) => return Ok(daemon_error(msg)),
    };
    match engine::network::connect(
        &ctx.root,
        &c.id,
        &c.name,
        pid,
        &a.network,
        a.ip.as_deref(),
        &a.alias,
    ) {
        Ok(_) => Ok(0),
        Err(e) => Ok(daemon_error(e)),
    }
}

fn disconnect(ctx: &Ctx, a: DisconnectArgs) -> Result<i32> {
    let _ = a.force;
    let (c, _) = match target(ctx, &a.container)? {
        Ok(t) => t,
        Err(msg) => return Ok(daemon_error(msg)),
    };
    match engine::network::disconnect(&ctx.root, &c.id, &a.network) {
        Ok(_) => Ok(0),
        Err(e) => Ok(daemon_error(e)),
    }
}
