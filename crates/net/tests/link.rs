//! Bridges, veth pairs and nftables rules against the real kernel (as root). Every test works only in
//! network namespaces it creates: one plays "the host", others play containers or an outside network; the
//! machine's own namespace is never changed.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use net::fastpath;
use net::firewall::{self, FwNetwork, PortRule};
use net::link::{self, Endpoint, Netns};

/// A network namespace held by `unshare --net sleep infinity`; killed (by pid) and reaped on drop.
struct NsHolder {
    child: Child,
    path: PathBuf,
}

impl NsHolder {
    fn new() -> NsHolder {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "infinity"])
            .spawn()
            .expect("spawn unshare");
        let path = PathBuf::from(format!("/proc/{}/ns/net", child.id()));
        let holder = NsHolder { child, path };
        // Until unshare has run, the child's namespace is ours: using it then would change the machine's
        // own network. Wait until it differs.
        let ours = std::fs::read_link("/proc/self/ns/net").expect("own netns");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(&holder.path)
            .ok()
            .is_none_or(|l| l == ours)
        {
            assert!(
                Instant::now() < deadline,
                "unshare --net did not make a new namespace"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        holder
    }

    fn ns(&self) -> Netns {
        Netns::at(&self.path)
    }

    /// Runs a command inside the namespace; returns (success, stdout).
    fn sh(&self, script: &str) -> (bool, String) {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.path.display()))
            .args(["sh", "-c", script])
            .output()
            .expect("nsenter");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        )
    }

    fn ok(&self, script: &str) -> String {
        let (ok, out) = self.sh(script);
        assert!(ok, "failed in {}: {script}: {out}", self.path.display());
        out
    }

    fn links(&self) -> String {
        self.ok("ip -br link | awk '{print $1}' | tr '\\n' ' '")
    }

    fn table(&self) -> Option<String> {
        let (ok, out) = self.sh("nft list table ip berth 2>/dev/null");
        ok.then_some(out)
    }

    /// A server answering `count` requests with "TAG PEER_IP" (see SERVER), ready when this returns.
    fn serve(&self, proto: &str, port: u16, tag: &str, count: u32) -> Server {
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", self.path.display()))
            .args([
                "python3",
                "-c",
                SERVER,
                proto,
                &port.to_string(),
                tag,
                &count.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("server stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("server ready line");
        assert_eq!(line.trim(), "ready");
        Server(child)
    }

    /// The server's answer to a request from this namespace, or None (timeout, refused).
    fn ask(&self, proto: &str, addr: &str, port: u16) -> Option<String> {
        let (ok, out) = self.sh(&format!(
            "timeout 5 python3 -c '{CLIENT}' {proto} {addr} {port}"
        ));
        ok.then_some(out)
    }
}

impl Drop for NsHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const SERVER: &str = r#"
import signal, socket, sys
# Bounded even if a test dies before killing it.
signal.alarm(20)
proto, port, tag, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
if proto == "tcp":
    s.listen(8)
print("ready", flush=True)
for _ in range(count):
    if proto == "tcp":
        c, peer = s.accept()
        c.sendall(("%s %s" % (tag, peer[0])).encode())
        c.close()
    else:
        data, peer = s.recvfrom(100)
        s.sendto(("%s %s" % (tag, peer[0])).encode(), peer)
"#;

const CLIENT: &str = r#"
import socket, sys
proto, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.settimeout(2)
if proto == "tcp":
    s.connect((addr, port))
else:
    s.connect((addr, port))
    s.send(b"hi")
print(s.recv(100).decode())
"#;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn endpoint(host_if: &str, n: u8, net: u8) -> Endpoint {
    Endpoint {
        host_if: host_if.into(),
        container_if: "eth0".into(),
        mac: format!("02:42:0a:{net:02x}:00:{n:02x}"),
        ip: ip(&format!("10.{net}.0.{n}")),
        prefix: 24,
        gateway: Some(ip(&format!("10.{net}.0.1"))),
    }
}

/// A bridge `br<net>` with subnet 10.<net>.0.0/24 in `host`, with its firewall rules.
fn network(host: &NsHolder, net: u8, internal: bool) -> FwNetwork {
    let bridge = format!("br{net}");
    link::ensure_bridge(&host.ns(), &bridge, ip(&format!("10.{net}.0.1")), 24).unwrap();
    let n = FwNetwork {
        id: format!("net{net}0123456789abcdef"),
        bridge,
        subnet: format!("10.{net}.0.0/24"),
        internal,
    };
    firewall::setup_network(&host.ns(), &n).unwrap();
    n
}

fn container(host: &NsHolder, net: u8, n: u8) -> NsHolder {
    let c = NsHolder::new();
    link::attach(
        &host.ns(),
        &format!("br{net}"),
        &c.path,
        &endpoint(&format!("veth{net}x{n}"), n, net),
    )
    .unwrap();
    c
}

/// An "outside" namespace joined to `host` by a veth: host side 10.99.0.1/24, outside 10.99.0.2/24.
fn outside(host: &NsHolder) -> NsHolder {
    let o = NsHolder::new();
    host.ok(&format!(
        "ip link add up0 type veth peer name up1 netns {p} && ip addr add 10.99.0.1/24 dev up0 && ip link set up0 up",
        p = o.path.display()
    ));
    o.ok("ip addr add 10.99.0.2/24 dev up1 && ip link set up1 up && ip link set lo up");
    o
}

fn ping(from: &NsHolder, addr: &str) -> bool {
    from.sh(&format!("timeout 5 ping -c1 -W1 {addr}")).0
}

#[test]
fn bridge_attach_ping_detach() {
    let host = NsHolder::new();
    let ns = host.ns();
    link::ensure_bridge(&ns, "br7", ip("10.7.0.1"), 24).unwrap();
    link::ensure_bridge(&ns, "br7", ip("10.7.0.1"), 24).unwrap();
    // A bridge found down or without its address is brought back.
    host.ok("ip link set br7 down && ip addr flush dev br7");
    link::ensure_bridge(&ns, "br7", ip("10.7.0.1"), 24).unwrap();
    let br = host.ok("ip -o -4 addr show dev br7; ip -br link show br7");
    assert!(br.contains("10.7.0.1/24") && br.contains(",UP,"), "{br}");
    assert_eq!(
        host.ok("cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf/br7/route_localnet"),
        "1\n1"
    );
    let a = container(&host, 7, 2);
    let b = container(&host, 7, 3);
    assert!(host.ok("ip -d link show veth7x2").contains("hairpin on"));
    assert!(a.ok("ip link show eth0").contains("02:42:0a:07:00:02"));
    assert!(a.ok("ip route").contains("default via 10.7.0.1 dev eth0"));
    assert!(
        a.ok("ip -br link show lo").contains("UP")
            || a.ok("ip -br link show lo").contains("UNKNOWN")
    );
    assert!(ping(&a, "10.7.0.3"), "a -> b");
    assert!(ping(&b, "10.7.0.2"), "b -> a");
    assert!(ping(&a, "10.7.0.1"), "a -> gateway");
    link::detach(&ns, "veth7x2").unwrap();
    link::detach(&ns, "veth7x2").unwrap();
    assert!(!ping(&b, "10.7.0.2"), "a is gone");
    assert!(
        !a.ok("ip -br link").contains("eth0"),
        "the peer went with the host end"
    );
    link::delete_bridge(&ns, "br7").unwrap();
    link::delete_bridge(&ns, "br7").unwrap();
    link::detach(&ns, "veth7x3").unwrap();
    assert_eq!(host.links(), "lo");
}

#[test]
fn a_failed_attach_leaves_nothing() {
    let host = NsHolder::new();
    let ns = host.ns();
    link::ensure_bridge(&ns, "br8", ip("10.8.0.1"), 24).unwrap();
    let c = NsHolder::new();
    // The route cannot be added (gateway not on the subnet): the pair must be removed again.
    let mut ep = endpoint("veth8x2", 2, 8);
    ep.gateway = Some(ip("192.0.2.1"));
    let err = link::attach(&ns, "br8", &c.path, &ep)
        .unwrap_err()
        .to_string();
    assert!(err.contains("route add default via 192.0.2.1"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    assert_eq!(host.links(), "lo br8");
    assert_eq!(c.links(), "lo");
    // A container end that already exists: nothing is made, and someone else's is not touched.
    link::attach(&ns, "br8", &c.path, &endpoint("veth8x2", 2, 8)).unwrap();
    let err = link::attach(&ns, "br8", &c.path, &endpoint("veth8x3", 3, 8)).unwrap_err();
    assert!(err.to_string().contains("veth8x3"), "{err}");
    assert!(
        host.links().starts_with("lo br8 veth8x2@"),
        "{}",
        host.links()
    );
    // A bridge name taken by something else is an error, not a silent success.
    host.ok("ip link add dummy8 type veth peer name dummy8p");
    assert!(link::ensure_bridge(&ns, "dummy8", ip("10.8.1.1"), 24).is_err());
    assert!(link::ensure_bridge(&ns, "this-name-is-too-long", ip("10.8.1.1"), 24).is_err());
    link::loopback_up(&c.path).unwrap();
}

#[test]
fn published_ports_tcp_udp_localhost_and_hairpin() {
    let host = NsHolder::new();
    // A fresh namespace's loopback is down; a real host's is up (127.0.0.1 is unroutable otherwise).
    link::loopback_up(&host.path).unwrap();
    let _out = outside(&host);
    let n = network(&host, 11, false);
    let a = container(&host, 11, 2);
    let b = container(&host, 11, 3);
    let rules = [
        PortRule {
            proto: "tcp".into(),
            host_ip: ip("0.0.0.0"),
            host_port: 8080,
            container_ip: ip("10.11.0.2"),
            container_port: 80,
        },
        PortRule {
            proto: "udp".into(),
            host_ip: ip("0.0.0.0"),
            host_port: 5353,
            container_ip: ip("10.11.0.2"),
            container_port: 53,
        },
        PortRule {
            proto: "tcp".into(),
            host_ip: ip("127.0.0.1"),
            host_port: 9090,
            container_ip: ip("10.11.0.2"),
            container_port: 80,
        },
    ];
    firewall::publish(&host.ns(), "aaaa0123456789", "br11", &rules).unwrap();
    // Publishing again replaces, it does not duplicate.
    firewall::publish(&host.ns(), "aaaa0123456789", "br11", &rules).unwrap();
    let table = host.table().unwrap();
    assert_eq!(table.matches("dnat to").count(), 3, "{table}");

    let _tcp = a.serve("tcp", 80, "A", 6);
    let _udp = a.serve("udp", 53, "A", 2);
    // The host's own connections: 127.0.0.1 (masqueraded to the gateway) and its other addresses.
    assert_eq!(
        host.ask("tcp", "127.0.0.1", 8080).as_deref(),
        Some("A 10.11.0.1")
    );
    assert_eq!(
        host.ask("tcp", "127.0.0.1", 9090).as_deref(),
        Some("A 10.11.0.1")
    );
    assert_eq!(
        host.ask("tcp", "10.11.0.1", 8080).as_deref(),
        Some("A 10.11.0.1")
    );
    assert_eq!(
        host.ask("udp", "127.0.0.1", 5353).as_deref(),
        Some("A 10.11.0.1")
    );
    // 127.0.0.1:9090 only: not on the host's other addresses.
    assert_eq!(host.ask("tcp", "10.99.0.1", 9090), None);
    // Hairpin: a neighbour, and the container itself, through the host's address.
    assert_eq!(
        b.ask("tcp", "10.99.0.1", 8080).as_deref(),
        Some("A 10.11.0.1")
    );
    assert_eq!(
        a.ask("tcp", "10.99.0.1", 8080).as_deref(),
        Some("A 10.11.0.1")
    );
    assert_eq!(
        b.ask("udp", "10.99.0.1", 5353).as_deref(),
        Some("A 10.11.0.1")
    );

    firewall::unpublish(&host.ns(), "aaaa0123456789").unwrap();
    firewall::unpublish(&host.ns(), "aaaa0123456789").unwrap();
    assert_eq!(host.ask("tcp", "127.0.0.1", 8080), None);
    let table = host.table().unwrap();
    assert!(
        !table.contains("ctr-") && !table.contains("dnat to"),
        "{table}"
    );
    firewall::teardown_network(&host.ns(), &n).unwrap();
    assert_eq!(host.table(), None);
}

#[test]
fn published_ports_reach_from_outside_and_across_networks() {
    let host = NsHolder::new();
    let out = outside(&host);
    let _n1 = network(&host, 12, false);
    let _n2 = network(&host, 13, false);
    let a = container(&host, 12, 2);
    let b = container(&host, 13, 2);
    let rule = PortRule {
        proto: "tcp".into(),
        host_ip: ip("10.99.0.1"),
        host_port: 8080,
        container_ip: ip("10.12.0.2"),
        container_port: 80,
    };
    firewall::publish(&host.ns(), "bbbb0123456789", "br12", &[rule]).unwrap();
    let _tcp = a.serve("tcp", 80, "A", 3);
    // From another machine: no masquerade, the container sees the real client.
    assert_eq!(
        out.ask("tcp", "10.99.0.1", 8080).as_deref(),
        Some("A 10.99.0.2")
    );
    // From a container of another (isolated) network: published ports are reachable (its outbound
    // masquerade gives it the address of the bridge it leaves through).
    assert_eq!(
        b.ask("tcp", "10.99.0.1", 8080).as_deref(),
        Some("A 10.12.0.1")
    );
    // Isolation: not directly.
    assert!(!ping(&b, "10.12.0.2"));
    assert!(!ping(&a, "10.13.0.2"));
    // And unsolicited traffic from outside to a container address is dropped (given a route to it).
    out.ok("ip route add 10.12.0.0/24 via 10.99.0.1");
    assert!(!ping(&out, "10.12.0.2"));
}

#[test]
fn outbound_nat_internal_networks_and_exact_teardown() {
    let host = NsHolder::new();
    let out = outside(&host);
    let fresh = FwNetwork {
        id: "net130123456789abcdef".into(),
        bridge: "br13".into(),
        subnet: "10.13.0.0/24".into(),
        internal: false,
    };
    assert!(
        !firewall::network_ready(&host.ns(), &fresh).unwrap(),
        "no table yet"
    );
    let n1 = network(&host, 14, false);
    let n2 = network(&host, 15, true);
    assert!(firewall::network_ready(&host.ns(), &n1).unwrap());
    assert!(
        !firewall::network_ready(&host.ns(), &fresh).unwrap(),
        "not set up"
    );
    let a = container(&host, 14, 2);
    let i1 = container(&host, 15, 2);
    let i2 = container(&host, 15, 3);
    let _srv = out.serve("tcp", 9000, "O", 2);
    // Masqueraded: the outside sees the host's address.
    assert_eq!(
        a.ask("tcp", "10.99.0.2", 9000).as_deref(),
        Some("O 10.99.0.1")
    );
    assert!(ping(&a, "10.99.0.2"));
    // Internal: nothing out, not even to the gateway's other side; within the bridge is fine.
    assert_eq!(i1.ask("tcp", "10.99.0.2", 9000), None);
    assert!(!ping(&i1, "10.99.0.2"));
    assert!(!ping(&i1, "10.14.0.2"));
    assert!(ping(&i1, "10.15.0.3"));
    assert!(ping(&i2, "10.15.0.2"));
    let table = host.table().unwrap();
    assert!(
        table.contains("net-net150123456-fwd") && table.contains("net-net140123456-nat"),
        "{table}"
    );

    let rule = PortRule {
        proto: "tcp".into(),
        host_ip: ip("0.0.0.0"),
        host_port: 8081,
        container_ip: ip("10.14.0.2"),
        container_port: 80,
    };
    firewall::publish(&host.ns(), "cccc0123456789", "br14", &[rule]).unwrap();
    // Teardown removes exactly one network's rules; the table stays while anything is left.
    firewall::teardown_network(&host.ns(), &n2).unwrap();
    firewall::teardown_network(&host.ns(), &n2).unwrap();
    assert!(!firewall::network_ready(&host.ns(), &n2).unwrap());
    assert!(firewall::network_ready(&host.ns(), &n1).unwrap());
    let table = host.table().unwrap();
    assert!(
        !table.contains("net-net15") && !table.contains("br15"),
        "{table}"
    );
    assert!(
        table.contains("net-net140123456-fwd") && table.contains("ctr-cccc01234567"),
        "{table}"
    );
    assert!(ping(&a, "10.99.0.2"), "the other network still works");
    firewall::teardown_network(&host.ns(), &n1).unwrap();
    assert!(host.table().unwrap().contains("ctr-cccc01234567"));
    firewall::unpublish(&host.ns(), "cccc0123456789").unwrap();
    assert_eq!(host.table(), None, "the table goes with the last chain");
    firewall::teardown_network(&host.ns(), &n1).unwrap();
    assert_eq!(host.table(), None);
}

/// The short way: with the bridge ports of two containers disabled, only `fastpath` can carry frames
/// between them; ARP (broadcast) still needs the bridge, so addresses are resolved before the ports go down.
#[test]
fn fast_path_carries_frames_past_the_bridge_and_goes_cleanly() {
    let host = NsHolder::new();
    let ns = host.ns();
    let n30 = network(&host, 30, false);
    let n31 = network(&host, 31, false);
    let a = container(&host, 30, 2);
    let b = container(&host, 30, 3);
    let c = container(&host, 31, 2);
    let netdev = || {
        let (ok, out) = host.sh("nft list table netdev berth 2>/dev/null");
        ok.then_some(out)
    };
    for (n, hif, ep) in [
        (&n30, "veth30x2", endpoint("veth30x2", 2, 30)),
        (&n30, "veth30x3", endpoint("veth30x3", 3, 30)),
        (&n31, "veth31x2", endpoint("veth31x2", 2, 31)),
    ] {
        fastpath::plug(&ns, &n.id, hif, &ep.mac).unwrap();
        fastpath::plug(&ns, &n.id, hif, &ep.mac).unwrap();
    }
    let table = netdev().unwrap();
    // Each network's map holds its own containers only.
    assert!(
        table.contains("02:42:0a:1e:00:02 : \"veth30x2\"")
            && table.contains("02:42:0a:1e:00:03 : \"veth30x3\"")
            && table.contains("02:42:0a:1f:00:02 : \"veth31x2\""),
        "{table}"
    );
    assert_eq!(
        table.matches("fwd to ether daddr map").count(),
        3,
        "{table}"
    );
    assert!(ping(&a, "10.30.0.3") && ping(&b, "10.30.0.2"));
    let ports_off = |state: u8| {
        host.ok(&format!(
            "bridge link set dev veth30x2 state {state} && bridge link set dev veth30x3 state {state}"
        ));
    };
    ports_off(0);
    assert!(
        ping(&a, "10.30.0.3"),
        "a -> b with the bridge ports disabled"
    );
    assert!(
        ping(&b, "10.30.0.2"),
        "b -> a with the bridge ports disabled"
    );
    assert!(!ping(&a, "10.30.0.1"), "the gateway is behind the bridge");

    // A stale entry (b's monitor died: its veth went, the element stayed) is replaced by the next plug.
    link::detach(&ns, "veth30x3").unwrap();
    host.ok("bridge link set dev veth30x2 state 3");
    link::attach(&ns, "br30", &b.path, &endpoint("veth30x3", 3, 30)).unwrap();
    fastpath::plug(&ns, &n30.id, "veth30x3", "02:42:0A:1E:00:03").unwrap();
    assert!(ping(&a, "10.30.0.3") && ping(&b, "10.30.0.2"));
    ports_off(0);
    assert!(ping(&a, "10.30.0.3"), "a -> b again, past the bridge");

    // Unplugged, b is out of the map: with the ports disabled nothing reaches it any more.
    fastpath::unplug(&ns, &n30.id, "veth30x3", "02:42:0a:1e:00:03").unwrap();
    fastpath::unplug(&ns, &n30.id, "veth30x3", "02:42:0a:1e:00:03").unwrap();
    assert!(!ping(&a, "10.30.0.3"));
    let table = netdev().unwrap();
    assert!(
        !table.contains("veth30x3") && !table.contains("02:42:0a:1e:00:03"),
        "{table}"
    );
    // An interface whose veth is already gone is unplugged all the same.
    link::detach(&ns, "veth30x2").unwrap();
    fastpath::unplug(&ns, &n30.id, "veth30x2", "02:42:0a:1e:00:02").unwrap();
    assert!(!netdev().unwrap().contains("in-net300123456"));
    // The network's removal takes its map; the table goes with the last chain.
    fastpath::remove_network(&ns, &n30.id).unwrap();
    assert!(!netdev().unwrap().contains("l2-net300123456"));
    assert!(ping(&c, "10.31.0.1"), "the other network is untouched");
    fastpath::unplug(&ns, &n31.id, "veth31x2", "02:42:0a:1f:00:02").unwrap();
    assert_eq!(netdev(), None, "the table goes with the last chain");
    fastpath::remove_network(&ns, &n31.id).unwrap();
    assert!(fastpath::plug(&ns, "net; flush ruleset", "veth31x2", "02:42:0a:1f:00:02").is_err());
    assert!(fastpath::plug(&ns, &n31.id, "veth31x2", "02:42:0a:1f:00").is_err());
    assert_eq!(netdev(), None);
}

#[test]
fn concurrent_changes_leave_a_consistent_table() {
    let host = NsHolder::new();
    let ns = host.ns();
    let nets: Vec<FwNetwork> = (20..28)
        .map(|i| FwNetwork {
            id: format!("net{i}"),
            bridge: format!("br{i}"),
            subnet: format!("10.{i}.0.0/24"),
            internal: i % 2 == 0,
        })
        .collect();
    std::thread::scope(|s| {
        for n in &nets {
            let ns = ns.clone();
            s.spawn(move || {
                firewall::setup_network(&ns, n).unwrap();
                let rule = PortRule {
                    proto: "tcp".into(),
                    host_ip: ip("0.0.0.0"),
                    host_port: 1000 + n.bridge[2..].parse::<u16>().unwrap(),
                    container_ip: ip("10.1.0.2"),
                    container_port: 80,
                };
                firewall::publish(&ns, &n.id, &n.bridge, &[rule]).unwrap();
            });
        }
    });
    let table = host.table().unwrap();
    assert_eq!(table.matches("dnat to").count(), 8, "{table}");
    assert_eq!(
        table.matches("iifname vmap @nets_fwd").count(),
        1,
        "{table}"
    );
    std::thread::scope(|s| {
        for n in &nets {
            let ns = ns.clone();
            s.spawn(move || {
                firewall::unpublish(&ns, &n.id).unwrap();
                firewall::teardown_network(&ns, n).unwrap();
            });
        }
    });
    assert_eq!(host.table(), None);
}

#[test]
fn bad_input_is_refused_before_any_command() {
    let ns = Netns::at(Path::new("/nonexistent/ns"));
    let bad = PortRule {
        proto: "icmp".into(),
        host_ip: ip("0.0.0.0"),
        host_port: 1,
        container_ip: ip("10.0.0.2"),
        container_port: 1,
    };
    let err = firewall::publish(&ns, "abc", "br0", &[bad])
        .unwrap_err()
        .to_string();
    assert!(err.contains("icmp"), "{err}");
    let n = FwNetwork {
        id: "x".into(),
        bridge: "br0".into(),
        subnet: "10.0.0.0".into(),
        internal: false,
    };
    assert!(firewall::setup_network(&ns, &n)
        .unwrap_err()
        .to_string()
        .contains("10.0.0.0"));
    let mut ep = endpoint("veth0", 2, 1);
    ep.mac = "nope".into();
    assert!(link::attach(&ns, "br0", Path::new("/nonexistent"), &ep)
        .unwrap_err()
        .to_string()
        .contains("nope"));
}

/// Prints an example table (run with --nocapture for the report); also checks internal networks have no NAT.
#[test]
fn example_table() {
    let host = NsHolder::new();
    let _n1 = network(&host, 30, false);
    let _n2 = network(&host, 31, true);
    let rule = PortRule {
        proto: "tcp".into(),
        host_ip: ip("0.0.0.0"),
        host_port: 8080,
        container_ip: ip("10.30.0.2"),
        container_port: 80,
    };
    firewall::publish(&host.ns(), "dddd0123456789", "br30", &[rule]).unwrap();
    let table = host.table().unwrap();
    println!("{table}");
    assert!(
        table.contains("chain net-net310123456-nat {\n\t}"),
        "{table}"
    );
}
