//! NAT, isolation and published ports with nftables, in berth's own table `table ip berth` only (other
//! tables, including other programs' NAT, are never read or changed).
//!
//! Decision: every change is one `nft -f -` transaction (atomic: packets see the old rules or the new ones,
//! never a half), run inside the target network namespace (entered with setns, see `command`). Why:
//! atomicity, no netlink code to maintain, and `nft list table ip berth` is what operators debug with.
//!
//! Layout, chosen so that every change can be written without knowing what else is in the table (two berth
//! processes may change it at the same time):
//! - fixed base chains `forward`, `prerouting`, `output`, `postrouting` whose rules only look things up in
//!   four verdict maps. Every transaction re-creates them with `add` (a no-op when they exist), `flush` and
//!   the same fixed rules, so whichever transaction runs last leaves the same base chains.
//! - one pair of chains per network, `net-<id12>-fwd` (filter) and `net-<id12>-nat` (masquerade), reached
//!   through the maps `nets_fwd` and `nets_nat` whose keys are the network's bridge name (looked up both as
//!   the input and as the output interface).
//! - one chain per container with published ports, `ctr-<id12>`, holding its DNAT rules, reached through
//!   `ports_ip` (host address . protocol . host port) and `ports_any` (protocol . host port, for 0.0.0.0).
//!
//! Why chains reached through maps instead of jump rules in the base chains: a rule can only be removed by
//! its handle, which would have to be read first and could change under a concurrent writer, and `add rule`
//! is not idempotent; map elements are (adding an identical element is a no-op), and removing exactly one
//! network's or container's rules is deleting its elements and its chains. A deletion is written as
//! `add` then `delete` in the same transaction so that it succeeds whether or not the thing was there.
//!
//! The table is deleted when no network or container chain is left. That check and the deletion are two
//! steps, so they run under an exclusive `flock` on the network namespace's own nsfs file (the same inode for
//! every opener of that namespace, so no lock file is needed); the other changes take it shared.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::command::{check_id, check_ifname, run};
use crate::link::Netns;
use crate::NetError;

const TABLE: &str = "ip berth";

/// A network as the firewall needs it.
#[derive(Clone, Debug)]
pub struct FwNetwork {
    pub id: String,
    pub bridge: String,
    /// "a.b.c.d/n".
    pub subnet: String,
    /// No traffic in or out of the bridge, only within it.
    pub internal: bool,
}

/// One published port: host_ip:host_port (0.0.0.0 = any local address) to container_ip:container_port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRule {
    /// "tcp" or "udp".
    pub proto: String,
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

/// Adds (or replaces) network `n`'s rules: outbound masquerade (not for internal networks), forwarding
/// within the bridge, out of it (not internal) and DNATed into it, isolation from other bridges, and the
/// masquerades that make hairpin and 127.0.0.1 published ports work. Idempotent.
pub fn setup_network(ns: &Netns, n: &FwNetwork) -> Result<(), NetError> {
    let (fwd, nat) = net_chains(n)?;
    let subnet = network_of(&n.subnet)?;
    let br = &n.bridge;
    let mut s = base();
    s += &format!("add chain {TABLE} {fwd}\nflush chain {TABLE} {fwd}\n");
    s += &format!("add chain {TABLE} {nat}\nflush chain {TABLE} {nat}\n");
    // Forwarding. Within the bridge: only routed traffic comes here (a hairpin DNAT back into the bridge).
    s += &format!("add rule {TABLE} {fwd} iifname \"{br}\" oifname \"{br}\" accept\n");
    if n.internal {
        s += &format!("add rule {TABLE} {fwd} drop\n");
    } else {
        // Published ports are reachable from anywhere, other berth networks included.
        s += &format!("add rule {TABLE} {fwd} oifname \"{br}\" ct status dnat accept\n");
        // Into the bridge otherwise: other berth bridges (isolation) and unsolicited outside traffic.
        // Out of the bridge falls through to the base chain's accept, unless the other side is a berth
        // bridge whose own chain drops it.
        s += &format!("add rule {TABLE} {fwd} oifname \"{br}\" drop\n");
        // Outbound NAT.
        s += &format!("add rule {TABLE} {nat} iifname \"{br}\" oifname != \"{br}\" ip saddr {subnet} masquerade\n");
        // Hairpin: a container reaching its own or a neighbour's published port through a host address
        // gets the reply from the host, not directly from the neighbour, only if the source is rewritten.
        // Not keyed on iifname: with br_netfilter loaded, the bridged frame reaches postrouting without one.
        s += &format!(
            "add rule {TABLE} {nat} oifname \"{br}\" ip saddr {subnet} ct status dnat masquerade\n"
        );
        // The host's own connections to 127.0.0.1:PORT: a container cannot answer 127.0.0.1.
        s += &format!("add rule {TABLE} {nat} oifname \"{br}\" ip saddr 127.0.0.0/8 masquerade\n");
    }
    s += &format!("add element {TABLE} nets_fwd {{ \"{br}\" : jump {fwd} }}\n");
    s += &format!("add element {TABLE} nets_nat {{ \"{br}\" : jump {nat} }}\n");
    let _lock = NsLock::shared(ns)?;
    nft(ns, &s)
}

/// Whether network `n`'s rules are in place: its element in `nets_fwd`, which `setup_network` adds in the
/// same transaction as everything else of the network's (and `teardown_network` removes with it). A
/// missing table or element is `false`; `nft get element` fails for both, and for nothing else expected.
pub fn network_ready(ns: &Netns, n: &FwNetwork) -> Result<bool, NetError> {
    net_chains(n)?;
    let key = format!("{{ \"{}\" }}", n.bridge);
    let (family, name) = TABLE.split_once(' ').unwrap_or(("ip", TABLE));
    let get = ["nft", "get", "element", family, name, "nets_fwd", &key];
    Ok(run(ns, &get, None).is_ok())
}

/// Removes exactly network `n`'s rules; deletes the table when nothing of berth's is left. Idempotent.
pub fn teardown_network(ns: &Netns, n: &FwNetwork) -> Result<(), NetError> {
    let (fwd, nat) = net_chains(n)?;
    let br = &n.bridge;
    let mut s = base();
    for (map, chain) in [("nets_fwd", &fwd), ("nets_nat", &nat)] {
        // Added first so that the deletes succeed whether or not a previous teardown got there.
        s += &format!("add chain {TABLE} {chain}\n");
        s += &format!("add element {TABLE} {map} {{ \"{br}\" : jump {chain} }}\n");
        s += &format!("delete element {TABLE} {map} {{ \"{br}\" }}\n");
        s += &format!("delete chain {TABLE} {chain}\n");
    }
    let _lock = NsLock::exclusive(ns)?;
    nft(ns, &s)?;
    delete_table_if_unused(ns)
}

/// Publishes `rules` for container `container_id` (whose address is on `bridge`), replacing what it
/// published before. Host traffic (output) and traffic arriving from elsewhere (prerouting) to a local
/// address are DNATed.
pub fn publish(
    ns: &Netns,
    container_id: &str,
    bridge: &str,
    rules: &[PortRule],
) -> Result<(), NetError> {
    check_ifname(bridge)?;
    let chain = ctr_chain(container_id)?;
    let mut s = base();
    s += &format!("add chain {TABLE} {chain}\nflush chain {TABLE} {chain}\n");
    let mut elements = String::new();
    for r in rules {
        if r.proto != "tcp" && r.proto != "udp" {
            return Err(NetError::Invalid(format!(
                "invalid protocol {:?} for published port {}: tcp or udp",
                r.proto, r.host_port
            )));
        }
        if r.host_port == 0 || r.container_port == 0 {
            return Err(NetError::Invalid(format!(
                "invalid published port {}:{} (0)",
                r.host_port, r.container_port
            )));
        }
        let (key, map, daddr) = if r.host_ip.is_unspecified() {
            (
                format!("{} . {}", r.proto, r.host_port),
                "ports_any",
                String::new(),
            )
        } else {
            (
                format!("{} . {} . {}", r.host_ip, r.proto, r.host_port),
                "ports_ip",
                format!("ip daddr {} ", r.host_ip),
            )
        };
        s += &format!(
            "add rule {TABLE} {chain} {daddr}meta l4proto {} th dport {} dnat to {}:{}\n",
            r.proto, r.host_port, r.container_ip, r.container_port
        );
        elements += &format!("add element {TABLE} {map} {{ {key} : jump {chain} }}\n");
    }
    let _lock = NsLock::shared(ns)?;
    // What this container published before goes in the same transaction as what it publishes now.
    let stale = read_table(ns)?
        .map(|t| port_elements(&t, &chain))
        .unwrap_or_default();
    for (map, key) in stale {
        s += &format!("delete element {TABLE} {map} {{ {key} }}\n");
    }
    s += &elements;
    nft(ns, &s)
}

/// Removes container `container_id`'s published ports; deletes the table when nothing of berth's is left.
/// Idempotent.
pub fn unpublish(ns: &Netns, container_id: &str) -> Result<(), NetError> {
    let chain = ctr_chain(container_id)?;
    let _lock = NsLock::exclusive(ns)?;
    let Some(table) = read_table(ns)? else {
        return Ok(());
    };
    let mut s = base();
    s += &format!("add chain {TABLE} {chain}\n");
    // The elements were read under the exclusive lock, so they are still there.
    for (map, key) in port_elements(&table, &chain) {
        s += &format!("delete element {TABLE} {map} {{ {key} }}\n");
    }
    s += &format!("delete chain {TABLE} {chain}\n");
    nft(ns, &s)?;
    delete_table_if_unused(ns)
}

/// The table, its maps and its base chains with their fixed rules. Every transaction starts with it, so it
/// works on an empty ruleset and leaves the same base whoever ran last.
fn base() -> String {
    let mut s = format!("add table {TABLE}\n");
    s += &format!("add map {TABLE} nets_fwd {{ type ifname : verdict; }}\n");
    s += &format!("add map {TABLE} nets_nat {{ type ifname : verdict; }}\n");
    s += &format!(
        "add map {TABLE} ports_ip {{ type ipv4_addr . inet_proto . inet_service : verdict; }}\n"
    );
    s += &format!("add map {TABLE} ports_any {{ type inet_proto . inet_service : verdict; }}\n");
    let chains = [
        (
            "forward",
            "type filter hook forward priority filter; policy accept;",
            &[
                "ct state established,related accept",
                "iifname vmap @nets_fwd",
                "oifname vmap @nets_fwd",
            ][..],
        ),
        (
            "prerouting",
            "type nat hook prerouting priority dstnat; policy accept;",
            &PORT_LOOKUPS[..],
        ),
        (
            "output",
            "type nat hook output priority -100; policy accept;",
            &PORT_LOOKUPS[..],
        ),
        (
            "postrouting",
            "type nat hook postrouting priority srcnat; policy accept;",
            &["iifname vmap @nets_nat", "oifname vmap @nets_nat"][..],
        ),
    ];
    for (name, spec, rules) in chains {
        s += &format!("add chain {TABLE} {name} {{ {spec} }}\nflush chain {TABLE} {name}\n");
        for rule in rules {
            s += &format!("add rule {TABLE} {name} {rule}\n");
        }
    }
    s
}

const PORT_LOOKUPS: [&str; 2] = [
    "fib daddr type local ip daddr . meta l4proto . th dport vmap @ports_ip",
    "fib daddr type local meta l4proto . th dport vmap @ports_any",
];

pub(crate) fn nft(ns: &Netns, script: &str) -> Result<(), NetError> {
    run(ns, &["nft", "-f", "-"], Some(script)).map(drop)
}

/// `nft -j list table ip berth`, or None when there is no such table.
fn read_table(ns: &Netns) -> Result<Option<serde_json::Value>, NetError> {
    read_named_table(ns, TABLE)
}

/// `nft -j list table FAMILY NAME` (`table` is "FAMILY NAME"), or None when there is no such table.
pub(crate) fn read_named_table(
    ns: &Netns,
    table: &str,
) -> Result<Option<serde_json::Value>, NetError> {
    let (family, name) = table.split_once(' ').unwrap_or(("ip", table));
    // Telling "no table" from other failures by a second command would race; nft's failure to list a
    // missing table is the only expected one, and any other failure shows up in the transaction that follows.
    let Ok(out) = run(ns, &["nft", "-j", "list", "table", family, name], None) else {
        return Ok(None);
    };
    serde_json::from_str(&out)
        .map(Some)
        .map_err(|e| NetError::Command {
            command: format!("nft -j list table {table} (in {ns})"),
            message: format!("unreadable JSON: {e}"),
        })
}

/// The (map, key) of every published-port element that jumps to `chain`, keys written as nft syntax.
fn port_elements(table: &serde_json::Value, chain: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for obj in table
        .get("nftables")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
    {
        let Some(map) = obj.get("map") else { continue };
        let Some(name) = map.get("name").and_then(|v| v.as_str()) else {
            continue;
        };
        if name != "ports_ip" && name != "ports_any" {
            continue;
        }
        for elem in map
            .get("elem")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            let (Some(key), Some(verdict)) = (elem.get(0), elem.get(1)) else {
                continue;
            };
            let target = verdict
                .get("jump")
                .and_then(|j| j.get("target"))
                .and_then(|t| t.as_str());
            if target != Some(chain) {
                continue;
            }
            let parts: Option<Vec<String>> =
                key.get("concat").and_then(|c| c.as_array()).map(|items| {
                    items
                        .iter()
                        .map(|i| {
                            i.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| i.to_string())
                        })
                        .collect()
                });
            if let Some(parts) = parts {
                found.push((name.to_string(), parts.join(" . ")));
            }
        }
    }
    found
}

/// Deletes the table when no network or container chain is left in it. Called under the exclusive lock,
/// so no other berth adds one between the look and the delete.
fn delete_table_if_unused(ns: &Netns) -> Result<(), NetError> {
    let Some(table) = read_table(ns)? else {
        return Ok(());
    };
    let in_use = table
        .get("nftables")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .any(|obj| {
            obj.get("chain")
                .and_then(|c| c.get("name"))
                .and_then(|n| n.as_str())
                .is_some_and(|n| n.starts_with("net-") || n.starts_with("ctr-"))
        });
    if in_use {
        return Ok(());
    }
    nft(ns, &format!("delete table {TABLE}\n"))
}

fn net_chains(n: &FwNetwork) -> Result<(String, String), NetError> {
    check_id("network", &n.id)?;
    check_ifname(&n.bridge)?;
    let id = short(&n.id);
    Ok((format!("net-{id}-fwd"), format!("net-{id}-nat")))
}

fn ctr_chain(container_id: &str) -> Result<String, NetError> {
    check_id("container", container_id)?;
    Ok(format!("ctr-{}", short(container_id)))
}

/// The first 12 characters of an id (ids are checked to be ASCII), as docker shortens them.
pub(crate) fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// "a.b.c.d/n" with the host bits cleared (nft refuses a prefix with host bits set).
fn network_of(subnet: &str) -> Result<String, NetError> {
    let invalid = || NetError::Invalid(format!("invalid subnet {subnet:?}: expected a.b.c.d/n"));
    let (addr, prefix) = subnet.split_once('/').ok_or_else(invalid)?;
    let addr: Ipv4Addr = addr.parse().map_err(|_| invalid())?;
    let prefix: u32 = prefix.parse().map_err(|_| invalid())?;
    if prefix > 32 {
        return Err(invalid());
    }
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    Ok(format!(
        "{}/{prefix}",
        Ipv4Addr::from(u32::from(addr) & mask)
    ))
}

/// An flock on the network namespace's nsfs file, released when dropped (the file is closed).
pub(crate) struct NsLock(#[allow(dead_code)] File);

impl NsLock {
    pub(crate) fn shared(ns: &Netns) -> Result<NsLock, NetError> {
        NsLock::take(ns, libc::LOCK_SH)
    }

    pub(crate) fn exclusive(ns: &Netns) -> Result<NsLock, NetError> {
        NsLock::take(ns, libc::LOCK_EX)
    }

    fn take(ns: &Netns, how: libc::c_int) -> Result<NsLock, NetError> {
        // The current namespace is the calling thread's: /proc/self would be the main thread's.
        let path: PathBuf = ns
            .path
            .clone()
            .unwrap_or_else(|| Path::new("/proc/thread-self/ns/net").to_path_buf());
        let file = File::open(&path).map_err(|source| NetError::Io {
            what: format!("opening {}", path.display()),
            source,
        })?;
        loop {
            // SAFETY: flock on a descriptor this function owns; no memory is passed.
            if unsafe { libc::flock(file.as_raw_fd(), how) } == 0 {
                return Ok(NsLock(file));
            }
            let source = std::io::Error::last_os_error();
            if source.kind() != std::io::ErrorKind::Interrupted {
                return Err(NetError::Io {
                    what: format!("locking {}", path.display()),
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_lose_their_host_bits() {
        assert_eq!(network_of("10.9.0.1/24").unwrap(), "10.9.0.0/24");
        assert_eq!(network_of("0.0.0.0/0").unwrap(), "0.0.0.0/0");
        assert!(network_of("10.9.0.1").is_err());
        assert!(network_of("10.9.0.1/33").is_err());
    }

    #[test]
    fn port_elements_are_found_by_their_chain() {
        let json: serde_json::Value = serde_json::from_str(
            r#"{"nftables": [{"map": {"name": "ports_ip", "elem": [[{"concat": ["127.0.0.1", "tcp", 8080]}, {"jump": {"target": "ctr-a"}}],
               [{"concat": ["127.0.0.1", "tcp", 8081]}, {"jump": {"target": "ctr-b"}}]]}},
               {"map": {"name": "ports_any", "elem": [[{"concat": ["udp", 53]}, {"jump": {"target": "ctr-a"}}]]}}]}"#,
        )
        .unwrap();
        assert_eq!(
            port_elements(&json, "ctr-a"),
            vec![
                ("ports_ip".to_string(), "127.0.0.1 . tcp . 8080".to_string()),
                ("ports_any".to_string(), "udp . 53".to_string())
            ]
        );
    }

    #[test]
    fn ids_and_names_are_checked_before_they_reach_a_script() {
        assert!(ctr_chain("abc; flush ruleset").is_err());
        let n = FwNetwork {
            id: "n1".into(),
            bridge: "br\"x".into(),
            subnet: "10.0.0.0/24".into(),
            internal: false,
        };
        assert!(net_chains(&n).is_err());
    }
}
