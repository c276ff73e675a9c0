//! Containers on bridge networks, on top of the `net` crate: docker's `-p` syntax, the addresses and ports
//! a container holds (leased when it is created, kept until it is removed, so /etc/hosts and `inspect` are
//! right before it starts), and the kernel side done by the monitor around each run of the container
//! (veth into the container's namespace after `runtime create`, published ports while it runs).
//!
//! Everything happens in the network namespace berth itself runs in: that is "the host".

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use net::fastpath;
use net::firewall::{self, FwNetwork, PortRule};
use net::link::{self, Endpoint, Netns};
use net::store::{Lease, Network, PortBinding, PortRequest, Proto, Store};
use net::NetError;
use serde::{Deserialize, Serialize};

use crate::container::EngineError;
use crate::spec::short_id;

impl From<NetError> for EngineError {
    fn from(e: NetError) -> Self {
        match e {
            NetError::Invalid(m) => EngineError::Invalid(m),
            NetError::Conflict(m) | NetError::InUse(m) => EngineError::Conflict(m),
            NetError::NotFound(n) => EngineError::Invalid(format!("network {n} not found")),
            other => EngineError::Invalid(other.to_string()),
        }
    }
}

/// One `-p` mapping as given: docker's `[IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    pub proto: String,
    /// Empty: every local address.
    pub host_ip: String,
    /// None: a free port chosen when the container is created.
    pub host_port: Option<u16>,
    pub container_port: u16,
}

fn port_range(s: &str, what: &str, spec: &str) -> Result<(u16, u16), String> {
    let one = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("invalid {what} port {p:?} in -p {spec}")),
        }
    };
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if b < a {
                return Err(format!("invalid {what} port range {s} in -p {spec}"));
            }
            Ok((a, b))
        }
        None => {
            let p = one(s)?;
            Ok((p, p))
        }
    }
}

/// Parses one `-p`/`--publish` value into one mapping per container port (ranges expand).
pub fn parse_publish(spec: &str) -> Result<Vec<PortSpec>, String> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if proto != "tcp" && proto != "udp" {
        return Err(format!("invalid proto {proto:?} in -p {spec}: tcp or udp"));
    }
    if rest.starts_with('[') {
        return Err(format!(
            "-p {spec}: IPv6 host addresses are not supported yet"
        ));
    }
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [ip, h, c] => (*ip, *h, *c),
        _ => {
            return Err(format!(
                "invalid -p {spec}: use [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]"
            ))
        }
    };
    if !ip.is_empty() && ip.parse::<Ipv4Addr>().is_err() {
        return Err(format!("invalid IP address {ip:?} in -p {spec}"));
    }
    if container.is_empty() {
        return Err(format!("no container port in -p {spec}"));
    }
    let (c0, c1) = port_range(container, "container", spec)?;
    let hosts = if host.is_empty() {
        None
    } else {
        let (h0, h1) = port_range(host, "host", spec)?;
        if h1 - h0 != c1 - c0 {
            return Err(format!(
                "invalid -p {spec}: the host and container port ranges differ in length"
            ));
        }
        Some(h0)
    };
    let ip = if ip == "0.0.0.0" { "" } else { ip };
    Ok((c0..=c1)
        .enumerate()
        .map(|(i, c)| PortSpec {
            proto: proto.clone(),
            host_ip: ip.to_string(),
            host_port: hosts.map(|h| h + i as u16),
            container_port: c,
        })
        .collect())
}

/// `-P`: every port the image EXPOSEs ("80/tcp", "53/udp", "8080") to a free host port.
pub fn publish_all(exposed: &[String]) -> Vec<PortSpec> {
    exposed
        .iter()
        .filter_map(|e| {
            let (p, proto) = e.split_once('/').unwrap_or((e.as_str(), "tcp"));
            Some(PortSpec {
                proto: proto.to_ascii_lowercase(),
                host_ip: String::new(),
                host_port: None,
                container_port: p.parse().ok()?,
            })
        })
        .collect()
}

pub fn store_path(root: &Path) -> PathBuf {
    root.join("networks.db")
}

pub fn open_store(root: &Path) -> Result<Store, EngineError> {
    Ok(Store::open(&store_path(root))?)
}

/// The store for reading, if any network was ever used here (readers must not create it).
pub fn existing_store(root: &Path) -> Option<Store> {
    if !store_path(root).exists() {
        return None;
    }
    open_store(root).ok()
}

/// The host ports a container holds (none without bridge networking).
pub fn ports_of(store: Option<&Store>, container_id: &str) -> Vec<PortBinding> {
    store
        .and_then(|s| s.ports_of(container_id).ok())
        .unwrap_or_default()
}

/// The network a `--network` word names: "bridge" is docker's default network, made on first use.
pub fn resolve(store: &Store, name: &str) -> Result<Network, EngineError> {
    if name == "bridge" {
        return Ok(store.ensure_default()?);
    }
    Ok(store.get(name)?)
}

/// What a container holds on its network, recorded when it is created.
pub struct Attached {
    pub network: Network,
    pub lease: Lease,
    pub ports: Vec<PortBinding>,
}

/// Leases an address on `network` and reserves the host ports: all or nothing.
pub fn attach_at_create(
    store: &Store,
    network: &str,
    container_id: &str,
    ip: Option<&str>,
    names: &[String],
    ports: &[PortSpec],
) -> Result<Attached, EngineError> {
    let network = resolve(store, network)?;
    let ip = parse_ip(ip)?;
    let mut requests = Vec::new();
    for p in ports {
        requests.push(PortRequest {
            proto: if p.proto == "udp" {
                Proto::Udp
            } else {
                Proto::Tcp
            },
            host_ip: if p.host_ip.is_empty() {
                Ipv4Addr::UNSPECIFIED
            } else {
                p.host_ip.parse().map_err(|_| {
                    EngineError::Invalid(format!("invalid host address {}", p.host_ip))
                })?
            },
            host_port: p.host_port,
            container_port: p.container_port,
        });
    }
    let lease = store.allocate(&network.id, container_id, ip, names)?;
    let ports = match store.reserve_ports(container_id, &requests) {
        Ok(p) => p,
        Err(e) => {
            let _ = store.release(&network.id, container_id);
            return Err(e.into());
        }
    };
    Ok(Attached {
        network,
        lease,
        ports,
    })
}

/// The host end of a container's veth on a network: "v" + 7 hex of the container's id + 7 of the
/// network's (15 characters, IFNAMSIZ - 1), the same at every start and independent of the order of
/// connects and disconnects.
fn host_if(container_id: &str, network_id: &str) -> String {
    let c = &container_id[..7.min(container_id.len())];
    let n = &network_id[..7.min(network_id.len())];
    format!("v{c}{n}")
}

/// `--ip`, when given.
fn parse_ip(ip: Option<&str>) -> Result<Option<Ipv4Addr>, EngineError> {
    ip.map(|s| {
        s.parse::<Ipv4Addr>()
            .map_err(|_| EngineError::Invalid(format!("invalid --ip {s:?}: an IPv4 address")))
    })
    .transpose()
}

fn fw_network(n: &Network) -> FwNetwork {
    FwNetwork {
        id: n.id.clone(),
        bridge: n.bridge.clone(),
        subnet: n.subnet.to_string(),
        internal: n.internal,
    }
}

/// Brings a network's bridge and firewall rules up (idempotent: every start of a container on it asks).
pub fn ensure_network(n: &Network) -> Result<(), EngineError> {
    let host = Netns::default();
    link::ensure_bridge(&host, &n.bridge, n.gateway, n.subnet.prefix())?;
    let fw = fw_network(n);
    // The network's rules are added in one transaction, so finding them hooked up means all of them are
    // there: a look costs a third of writing them again. (A berth whose rules differ from the ones found
    // would not rewrite them: such a change must rename the chains or the map element looked at.)
    if !firewall::network_ready(&host, &fw)? {
        firewall::setup_network(&host, &fw)?;
    }
    Ok(())
}

/// After `runtime create`: the container's interfaces, addresses, routes and published ports.
pub fn connect_running(root: &Path, container_id: &str, pid: i32) -> Result<(), EngineError> {
    let store = open_store(root)?;
    let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let host = Netns::default();
    let leases = store.leases_of(container_id)?;
    let mut rules = Vec::new();
    let mut first_bridge = None;
    for (i, (network, lease)) in leases.iter().enumerate() {
        ensure_network(network)?;
        let ep = Endpoint {
            host_if: host_if(container_id, &network.id),
            container_if: format!("eth{i}"),
            mac: lease.mac.clone(),
            ip: lease.ip,
            prefix: network.subnet.prefix(),
            gateway: (i == 0).then_some(network.gateway),
        };
        link::attach(&host, &network.bridge, &netns, &ep)?;
        fastpath::plug(&host, &network.id, &ep.host_if, &ep.mac)?;
        if first_bridge.is_none() {
            first_bridge = Some((network.bridge.clone(), lease.ip));
        }
    }
    if let Some((bridge, ip)) = first_bridge {
        for p in store.ports_of(container_id)? {
            rules.push(PortRule {
                proto: p.proto.to_string(),
                host_ip: p.host_ip,
                host_port: p.host_port,
                container_ip: ip,
                container_port: p.container_port,
            });
        }
        if !rules.is_empty() {
            firewall::publish(&host, container_id, &bridge, &rules)?;
        }
    }
    if !leases.is_empty() {
        // From now on its names resolve for its neighbours.
        store.set_attached(container_id, true)?;
    }
    Ok(())
}

/// The embedded DNS server for a container whose network is user-defined (docker's default bridge has
/// none): names of the containers on its networks, everything else forwarded to `--dns` or the host's
/// resolvers.
pub fn start_dns(
    root: &Path,
    container_id: &str,
    pid: i32,
    run: &crate::spec::RunOptions,
) -> Result<Option<net::dns::Server>, EngineError> {
    if !uses_embedded_dns(run) {
        return Ok(None);
    }
    let upstream = if run.dns.is_empty() {
        net::dns::nameservers(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
    } else {
        run.dns
            .iter()
            .filter_map(|d| d.parse::<std::net::IpAddr>().ok())
            .map(|ip| std::net::SocketAddr::new(ip, 53))
            .collect()
    };
    let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let server = net::dns::Server::start(&netns, &store_path(root), container_id, upstream)
        .map_err(|e| EngineError::Invalid(e.to_string()))?;
    Ok(Some(server))
}

/// docker: containers on user-defined networks resolve through the embedded server.
pub fn uses_embedded_dns(run: &crate::spec::RunOptions) -> bool {
    run.network == crate::spec::NetworkMode::Bridge
        && !matches!(
            run.network_ref.as_deref(),
            None | Some("bridge") | Some("default")
        )
}

/// After the container's process is gone: its published ports stop forwarding, its veths go (the
/// kernel removes them with the namespace; this catches a namespace someone still holds).
pub fn disconnect_stopped(root: &Path, container_id: &str) {
    let host = Netns::default();
    let store = open_store(root).ok();
    if let Some(store) = &store {
        let _ = store.set_attached(container_id, false);
    }
    // Ports are published only for a container that leased some (they stay leased until rm), so one
    // without them has no rules to look for: two nft runs saved at every stop.
    let published = store
        .as_ref()
        .and_then(|s| s.ports_of(container_id).ok())
        .is_none_or(|p| !p.is_empty());
    if published {
        let _ = firewall::unpublish(&host, container_id);
    }
    if let Some(store) = store {
        if let Ok(leases) = store.leases_of(container_id) {
            for (network, lease) in &leases {
                let hif = host_if(container_id, &network.id);
                let _ = fastpath::unplug(&host, &network.id, &hif, &lease.mac);
                let _ = link::detach(&host, &hif);
            }
        }
    }
}

/// `berth network connect`: a lease on one more network and, if the container runs, its interface there
/// now (no default route: that stays with the first network).
pub fn connect(
    root: &Path,
    container_id: &str,
    name: &str,
    pid: Option<i32>,
    network: &str,
    ip: Option<&str>,
    aliases: &[String],
) -> Result<Network, EngineError> {
    let store = open_store(root)?;
    let n = resolve(&store, network)?;
    let existing = store.leases_of(container_id)?;
    if existing.iter().any(|(x, _)| x.id == n.id) {
        return Err(EngineError::Conflict(format!(
            "endpoint with name {name} already exists in network {}",
            n.name
        )));
    }
    let mut names = vec![name.to_string()];
    names.extend(aliases.iter().cloned());
    names.push(short_id(container_id));
    let ip = parse_ip(ip)?;
    let lease = store.allocate(&n.id, container_id, ip, &names)?;
    if let Some(pid) = pid {
        let host = Netns::default();
        let ep = Endpoint {
            host_if: host_if(container_id, &n.id),
            container_if: format!("eth{}", existing.len()),
            mac: lease.mac.clone(),
            ip: lease.ip,
            prefix: n.subnet.prefix(),
            gateway: None,
        };
        let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
        if let Err(e) = ensure_network(&n)
            .and_then(|_| link::attach(&host, &n.bridge, &netns, &ep).map_err(EngineError::from))
            .and_then(|_| {
                fastpath::plug(&host, &n.id, &ep.host_if, &ep.mac).map_err(EngineError::from)
            })
        {
            let _ = fastpath::unplug(&host, &n.id, &ep.host_if, &ep.mac);
            let _ = link::detach(&host, &ep.host_if);
            let _ = store.release(&n.id, container_id);
            return Err(e);
        }
    }
    Ok(n)
}

/// `berth network disconnect`: the lease goes, and the interface if the container runs.
pub fn disconnect(root: &Path, container_id: &str, network: &str) -> Result<Network, EngineError> {
    let store = open_store(root)?;
    let n = resolve(&store, network)?;
    let leases = store.leases_of(container_id)?;
    let Some((_, lease)) = leases.iter().find(|(x, _)| x.id == n.id) else {
        return Err(EngineError::Conflict(format!(
            "container {} is not connected to network {}",
            short_id(container_id),
            n.name
        )));
    };
    let hif = host_if(container_id, &n.id);
    fastpath::unplug(&Netns::default(), &n.id, &hif, &lease.mac)?;
    link::detach(&Netns::default(), &hif)?;
    store.release(&n.id, container_id)?;
    Ok(n)
}

/// At removal: everything the container held, in the kernel and in the records.
pub fn release(root: &Path, container_id: &str) -> Result<(), EngineError> {
    if !store_path(root).exists() {
        return Ok(());
    }
    // The kernel side went when the container stopped (its monitor, or the repair of a dead monitor, took
    // it down): only the records are left.
    let store = open_store(root)?;
    store.release_all(container_id)?;
    Ok(())
}

/// `berth network rm`: refused while containers use it; then its bridge and rules go.
pub fn remove_network(root: &Path, name: &str) -> Result<Network, EngineError> {
    let store = open_store(root)?;
    let n = store.remove(name)?;
    let host = Netns::default();
    fastpath::remove_network(&host, &n.id)?;
    firewall::teardown_network(&host, &fw_network(&n))?;
    link::delete_bridge(&host, &n.bridge)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(proto: &str, ip: &str, host: Option<u16>, c: u16) -> PortSpec {
        PortSpec {
            proto: proto.into(),
            host_ip: ip.into(),
            host_port: host,
            container_port: c,
        }
    }

    #[test]
    fn publish_forms() {
        assert_eq!(parse_publish("80").unwrap(), vec![p("tcp", "", None, 80)]);
        assert_eq!(
            parse_publish("8080:80").unwrap(),
            vec![p("tcp", "", Some(8080), 80)]
        );
        assert_eq!(
            parse_publish("127.0.0.1:8080:80/udp").unwrap(),
            vec![p("udp", "127.0.0.1", Some(8080), 80)]
        );
        assert_eq!(
            parse_publish("127.0.0.1::80").unwrap(),
            vec![p("tcp", "127.0.0.1", None, 80)]
        );
        assert_eq!(
            parse_publish("0.0.0.0:1:2").unwrap(),
            vec![p("tcp", "", Some(1), 2)]
        );
        assert_eq!(
            parse_publish("8000-8001:80-81").unwrap(),
            vec![p("tcp", "", Some(8000), 80), p("tcp", "", Some(8001), 81)]
        );
        assert_eq!(
            parse_publish("80-81").unwrap(),
            vec![p("tcp", "", None, 80), p("tcp", "", None, 81)]
        );
    }

    #[test]
    fn publish_errors() {
        for (bad, want) in [
            ("", "no container port"),
            ("8080:", "no container port"),
            ("0:80", "invalid host port"),
            ("x:80", "invalid host port"),
            ("80:70000", "invalid container port"),
            ("80/sctp", "invalid proto"),
            ("1.2.3:80:80", "invalid IP address"),
            ("8000-8002:80-81", "differ in length"),
            ("90-80", "invalid container port range"),
            ("a:b:c:d", "invalid -p"),
            ("[::1]:80:80", "IPv6"),
        ] {
            let e = parse_publish(bad).unwrap_err();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn publish_all_exposed() {
        let v = publish_all(&["80/tcp".into(), "53/udp".into(), "x/tcp".into()]);
        assert_eq!(v, vec![p("tcp", "", None, 80), p("udp", "", None, 53)]);
    }

    #[test]
    fn host_interface_names_fit() {
        assert_eq!(host_if("0123456789abcdef", "fedcba9876"), "v0123456fedcba9");
        assert_eq!(host_if("0123456789abcdef", "fedcba9876").len(), 15);
    }
}
