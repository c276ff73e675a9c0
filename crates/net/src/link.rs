//! Bridges, veth pairs, addresses and routes.
//!
//! Decision: berth talks to the kernel through iproute2's `ip` (batch mode, `ip -batch -`, several
//! operations per exec) run inside the target network namespace when it is not the current one (see
//! `command`). Why: no netlink code to maintain, and `ip` is what operators debug with; the cost (a few ms
//! per exec) is measured in bench/.
//!
//! Each operation is made so that a failure leaves nothing half-made that berth would not find again:
//! - `ensure_bridge` and `delete_bridge`, `detach` are idempotent, so a retry after a crash converges;
//! - `attach` creates the veth pair with one `ip link add` (the kernel makes both ends or neither; the
//!   container end is created directly in the container's namespace under its final name and MAC, so there
//!   is no temporary name to clean up) and sets hairpin mode in the same `ip -batch` run, then configures
//!   the container end; if any of it fails the host end (whose name the caller derives from the container
//!   and the network, so it can only be this endpoint's) is deleted, which deletes its peer too.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::command::{check_ifname, run};
use crate::NetError;

/// Where a command runs: the current network namespace (None) or the one at `path` (e.g. /proc/PID/ns/net
/// or a bind mount of it). The path is opened by the tools themselves, so it must not be a /proc/self path.
#[derive(Clone, Debug, Default)]
pub struct Netns {
    pub path: Option<PathBuf>,
}

impl Netns {
    /// The network namespace at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Netns {
        Netns {
            path: Some(path.into()),
        }
    }
}

impl fmt::Display for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "netns {}", p.display()),
            None => f.write_str("the current netns"),
        }
    }
}

/// One container's connection to a bridge.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The host end, e.g. "veth" + 7 hex digits of the container id + an index (at most 15 characters).
    pub host_if: String,
    /// The container end's name, e.g. "eth0".
    pub container_if: String,
    /// The container end's MAC address, "xx:xx:xx:xx:xx:xx".
    pub mac: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// The default route goes through it. Internal networks keep the route too: the firewall is what stops
    /// their traffic from leaving, so a container sees the same setup on both kinds of network.
    pub gateway: Option<Ipv4Addr>,
}

/// Creates bridge `name` in `ns` if it is missing, gives it `gateway/prefix` if it lacks it, and brings it
/// up; also turns on IPv4 forwarding in `ns` and `route_localnet` on the bridge (so that published ports
/// reached via 127.0.0.1 can be DNATed to the bridge, see `firewall`). Idempotent.
pub fn ensure_bridge(
    ns: &Netns,
    name: &str,
    gateway: Ipv4Addr,
    prefix: u8,
) -> Result<(), NetError> {
    check_ifname(name)?;
    check_prefix(prefix)?;
    let exists = match run(ns, &["ip", "-d", "-j", "addr", "show", "dev", name], None) {
        Ok(json) => {
            let kind = link_kind(&json);
            if kind.as_deref() != Some("bridge") {
                return Err(NetError::Conflict(format!(
                    "interface {name} in {ns} exists but is not a bridge (kind {})",
                    kind.as_deref().unwrap_or("none")
                )));
            }
            Some(is_up_with(&json, gateway, prefix))
        }
        // Missing (or unreadable: then creating it fails with the kernel's reason).
        Err(_) => None,
    };
    // `addr replace` and `link set up` are idempotent; only `link add` is not.
    let configure =
        format!("address replace {gateway}/{prefix} brd + dev {name}\nlink set dev {name} up\n");
    if let Some(ready) = exists {
        // Every start of a container on the network comes here: a bridge that is already up with its
        // address costs no second `ip`.
        if !ready {
            run(ns, &["ip", "-batch", "-"], Some(&configure))?;
        }
    } else {
        let create = format!("link add name {name} type bridge\n{configure}");
        if let Err(first) = run(ns, &["ip", "-batch", "-"], Some(&create)) {
            // Another berth may have created it between our look and our add: configure what is there.
            run(ns, &["ip", "-batch", "-"], Some(&configure)).map_err(|_| first)?;
        }
    }
    set_sysctls(
        ns,
        &[
            ("net/ipv4/ip_forward".to_string(), "1"),
            (format!("net/ipv4/conf/{name}/route_localnet"), "1"),
        ],
    )
}

/// Deletes bridge `name` in `ns` (its ports are detached by the kernel). Idempotent.
pub fn delete_bridge(ns: &Netns, name: &str) -> Result<(), NetError> {
    check_ifname(name)?;
    delete_link(ns, name)
}

/// Connects the container whose network namespace is at `container_netns` to `bridge` (in `ns`): a veth
/// pair, host end `ep.host_if` enslaved to the bridge, up, in hairpin mode (so a container can reach its own
/// published port); container end `ep.container_if` with `ep.mac`, `ep.ip/ep.prefix`, up, loopback up, and a
/// default route via `ep.gateway`. On failure what was made is removed.
pub fn attach(
    ns: &Netns,
    bridge: &str,
    container_netns: &Path,
    ep: &Endpoint,
) -> Result<(), NetError> {
    check_ifname(bridge)?;
    check_ifname(&ep.host_if)?;
    check_ifname(&ep.container_if)?;
    check_mac(&ep.mac)?;
    check_prefix(ep.prefix)?;
    let cpath = container_netns.to_str().ok_or_else(|| {
        NetError::Invalid(format!(
            "container netns path {} is not UTF-8",
            container_netns.display()
        ))
    })?;
    // The pair is one netlink request (both ends exist afterwards or neither does); hairpin mode on the
    // host end follows in the same `ip` run. The container end's path goes into the batch line quoted.
    let host_side = format!(
        "link add name {h} master {bridge} up type veth peer name {c} address {mac} netns \"{cpath}\"\n\
         link set dev {h} type bridge_slave hairpin on\n",
        h = ep.host_if,
        c = ep.container_if,
        mac = ep.mac,
        cpath = quote_batch(cpath)?,
    );
    let configured = run(ns, &["ip", "-batch", "-"], Some(&host_side))
        .and_then(|_| configure_ends(container_netns, ep));
    if configured.is_err() {
        // Deleting the host end deletes the peer in the container too. The configuration error is the one
        // worth reporting; a failed cleanup leaves a veth that `detach` removes later.
        let _ = delete_link(ns, &ep.host_if);
    }
    configured
}

fn configure_ends(container_netns: &Path, ep: &Endpoint) -> Result<(), NetError> {
    let cif = &ep.container_if;
    let mut script = format!(
        "link set dev lo up\naddress add {}/{} brd + dev {cif}\nlink set dev {cif} up\n",
        ep.ip, ep.prefix
    );
    if let Some(gw) = ep.gateway {
        script.push_str(&format!("route add default via {gw} dev {cif}\n"));
    }
    run(
        &Netns::at(container_netns),
        &["ip", "-batch", "-"],
        Some(&script),
    )
    .map(drop)
}

/// Deletes the veth pair whose host end is `host_if` in `ns`. Idempotent (the pair also vanishes by itself
/// when the container's network namespace dies).
pub fn detach(ns: &Netns, host_if: &str) -> Result<(), NetError> {
    check_ifname(host_if)?;
    delete_link(ns, host_if)
}

/// Brings the loopback interface up in the network namespace at `container_netns` (containers on no
/// network, or before attaching).
pub fn loopback_up(container_netns: &Path) -> Result<(), NetError> {
    run(
        &Netns::at(container_netns),
        &["ip", "link", "set", "dev", "lo", "up"],
        None,
    )
    .map(drop)
}

/// `ip link del`, where "it is not there" counts as done. The absence is checked with a second look rather
/// than by matching iproute2's wording, which changes between versions.
fn delete_link(ns: &Netns, name: &str) -> Result<(), NetError> {
    if ns.path.is_none() && !exists_here(name) {
        // The usual case at a container's stop: the kernel took the veth with the container's namespace.
        return Ok(());
    }
    match run(ns, &["ip", "link", "del", "dev", name], None) {
        Ok(_) => Ok(()),
        Err(e) => match run(ns, &["ip", "-j", "link", "show", "dev", name], None) {
            Err(_) => Ok(()),
            Ok(_) => Err(e),
        },
    }
}

/// Whether interface `name` exists in the calling thread's network namespace (a lookup, no exec).
fn exists_here(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return true;
    };
    // SAFETY: a NUL-terminated string that outlives the call; if_nametoindex only reads it.
    unsafe { libc::if_nametoindex(c.as_ptr()) != 0 }
}

/// Whether the interface in `ip -j addr show` output is administratively up and has `addr/prefix`.
fn is_up_with(json: &str, addr: Ipv4Addr, prefix: u8) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return false;
    };
    let Some(link) = v.get(0) else { return false };
    let up = link
        .get("flags")
        .and_then(|f| f.as_array())
        .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("UP")));
    let addr = addr.to_string();
    let has_addr = link
        .get("addr_info")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
        .any(|a| {
            a.get("local").and_then(|l| l.as_str()) == Some(addr.as_str())
                && a.get("prefixlen").and_then(|p| p.as_u64()) == Some(u64::from(prefix))
        });
    up && has_addr
}

/// The `info_kind` of the interface in `ip -d -j link show` or `addr show` output ("bridge", "veth", ...).
fn link_kind(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v.get(0)?
        .get("linkinfo")?
        .get("info_kind")?
        .as_str()
        .map(str::to_string)
}

/// Writes `/proc/sys/<key>` in `ns`. Network sysctls belong to the namespace of whoever opens the file, so
/// inside another namespace they are written by a shell entered into it (keys and values are made by this
/// module from checked interface names, so they need no quoting).
fn set_sysctls(ns: &Netns, settings: &[(String, &str)]) -> Result<(), NetError> {
    if ns.path.is_none() {
        for (key, value) in settings {
            let path = format!("/proc/sys/{key}");
            std::fs::write(&path, value).map_err(|source| NetError::Io {
                what: format!("writing {path}"),
                source,
            })?;
        }
        return Ok(());
    }
    let script: Vec<String> = settings
        .iter()
        .map(|(key, value)| format!("echo {value} > /proc/sys/{key}"))
        .collect();
    run(ns, &["sh", "-e", "-c", &script.join("\n")], None).map(drop)
}

/// A path as one word of an `ip -batch` line: it is written in double quotes, so it may not contain
/// quotes, backslashes or line breaks (berth's own paths, /proc/PID/ns/net, never do).
fn quote_batch(path: &str) -> Result<&str, NetError> {
    if path.contains(['"', '\\', '\n', '\r']) {
        return Err(NetError::Invalid(format!(
            "container netns path {path:?} cannot be passed to ip"
        )));
    }
    Ok(path)
}

fn check_prefix(prefix: u8) -> Result<(), NetError> {
    if prefix <= 32 {
        Ok(())
    } else {
        Err(NetError::Invalid(format!(
            "invalid IPv4 prefix length /{prefix}"
        )))
    }
}

pub(crate) fn check_mac(mac: &str) -> Result<(), NetError> {
    let parts: Vec<&str> = mac.split(':').collect();
    if parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Ok(())
    } else {
        Err(NetError::Invalid(format!("invalid MAC address {mac:?}")))
    }
}
