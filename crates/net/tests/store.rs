//! The network store against a real SQLite file in a temp dir (no root needed).

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use net::{CreateNetwork, NetError, Network, PortRequest, Proto, Store};

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state").join("networks.db");
    (dir, path)
}

fn open(path: &Path) -> Store {
    Store::open(path).expect("open store")
}

fn req(name: &str, subnet: Option<&str>) -> CreateNetwork {
    CreateNetwork {
        name: name.to_string(),
        subnet: subnet.map(str::to_string),
        ..CreateNetwork::default()
    }
}

fn create(s: &Store, name: &str, subnet: Option<&str>) -> Network {
    s.create(&req(name, subnet)).expect(name)
}

fn err_text<T: std::fmt::Debug>(r: Result<T, NetError>) -> String {
    r.expect_err("an error").to_string()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect(s)
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

fn tcp(host_port: Option<u16>, container_port: u16) -> PortRequest {
    PortRequest {
        proto: Proto::Tcp,
        host_ip: Ipv4Addr::UNSPECIFIED,
        host_port,
        container_port,
    }
}

#[test]
fn create_and_get_by_name_id_and_prefix() {
    let (_d, path) = tmp();
    let s = open(&path);
    let mut r = req("front", Some("10.1.0.0/24"));
    r.labels = BTreeMap::from([("tier".to_string(), "web".to_string())]);
    r.internal = true;
    let n = s.create(&r).expect("create");
    assert_eq!(n.id.len(), 64);
    assert!(n.id.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(n.name, "front");
    assert_eq!(n.driver, "bridge");
    assert_eq!(n.subnet.to_string(), "10.1.0.0/24");
    assert_eq!(n.gateway, ip("10.1.0.1"));
    assert_eq!(n.bridge, format!("br-{}", &n.id[..12]));
    assert!(n.bridge.len() <= 15);
    assert!(n.internal);
    assert_eq!(n.labels["tier"], "web");
    assert!(n.created.ends_with('Z') && n.created.contains('T'));

    assert_eq!(s.get("front").expect("by name"), n);
    assert_eq!(s.get(&n.id).expect("by id"), n);
    assert_eq!(s.get(&n.id[..5]).expect("by prefix"), n);
    assert_eq!(err_text(s.get("nope")), "network nope not found");
    assert_eq!(err_text(s.get("")), "network  not found");

    // Ambiguity: the empty-ish prefix of two ids that share their first digit.
    let mut others = vec![n.clone()];
    let shared = loop {
        let m = create(&s, &format!("n{}", others.len()), None);
        if let Some(o) = others.iter().find(|o| o.id[..1] == m.id[..1]) {
            break o.id[..1].to_string();
        }
        others.push(m);
    };
    let e = s.get(&shared).expect_err("ambiguous");
    assert!(matches!(e, NetError::Ambiguous { count: 2, .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!("network {shared} is ambiguous (2 matches found based on ID prefix)")
    );
}

#[test]
fn explicit_gateway_and_driver() {
    let (_d, path) = tmp();
    let s = open(&path);
    let mut r = req("gw", Some("10.9.0.0/16"));
    r.gateway = Some("10.9.200.7".to_string());
    r.driver = "bridge".to_string();
    let n = s.create(&r).expect("create");
    assert_eq!(n.gateway, ip("10.9.200.7"));
    // Automatic addresses skip only the gateway, wherever it is.
    let l = s.allocate(&n.id, "c1", None, &[]).expect("allocate");
    assert_eq!(l.ip, ip("10.9.0.1"));

    let mut r = req("mac", None);
    r.driver = "macvlan".to_string();
    assert_eq!(
        err_text(s.create(&r)),
        "network mac: driver \"macvlan\" is not supported (only bridge)"
    );
}

#[test]
fn default_network() {
    let (_d, path) = tmp();
    let s = open(&path);
    let d = s.ensure_default().expect("default");
    assert_eq!(d.name, "bridge");
    assert_eq!(d.bridge, "berth0");
    assert_eq!(d.subnet.to_string(), "172.17.0.0/16");
    assert_eq!(d.gateway, ip("172.17.0.1"));
    assert!(!d.internal);
    assert_eq!(s.ensure_default().expect("again"), d);
    assert_eq!(s.get("bridge").expect("get"), d);
    assert_eq!(
        err_text(s.remove("bridge")),
        "bridge is a pre-defined network and cannot be removed"
    );
    assert_eq!(
        err_text(s.remove(&d.id)),
        "bridge is a pre-defined network and cannot be removed"
    );
    // No --ip on the default network (docker's rule).
    assert_eq!(
        err_text(s.allocate(&d.id, "c1", Some(ip("172.17.0.9")), &[])),
        "user specified IP address is supported only when connecting to networks with user configured subnets (network bridge)"
    );
    assert_eq!(
        s.allocate(&d.id, "c1", None, &[]).expect("auto").mac,
        "02:42:ac:11:00:02"
    );
}

#[test]
fn default_network_moves_off_a_taken_pool() {
    let (_d, path) = tmp();
    let s = open(&path);
    create(&s, "mine", Some("172.16.0.0/12"));
    let d = s.ensure_default().expect("default");
    assert_eq!(d.subnet.to_string(), "192.168.0.0/20");
    assert_eq!(d.bridge, "berth0");
}

#[test]
fn list_is_sorted_by_name() {
    let (_d, path) = tmp();
    let s = open(&path);
    for name in ["zeta", "Alpha", "mid", "alpha"] {
        create(&s, name, None);
    }
    s.ensure_default().expect("default");
    let names: Vec<String> = s
        .list()
        .expect("list")
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["Alpha", "alpha", "bridge", "mid", "zeta"]);
}

#[test]
fn duplicate_and_reserved_and_bad_names() {
    let (_d, path) = tmp();
    let s = open(&path);
    create(&s, "dup", None);
    let e = s.create(&req("dup", None)).expect_err("duplicate");
    assert!(matches!(e, NetError::Exists(_)));
    assert_eq!(e.to_string(), "network with name dup already exists");
    for name in ["bridge", "host", "none"] {
        assert_eq!(
            err_text(s.create(&req(name, None))),
            format!("operation is not permitted on predefined {name} network")
        );
    }
    for name in ["", "-x", "a b", "a/b", ".hidden"] {
        assert_eq!(
            err_text(s.create(&req(name, None))),
            format!("invalid network name {name:?}, only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        );
    }
    // Nothing half-created.
    assert_eq!(s.list().expect("list").len(), 1);
}

#[test]
fn bad_subnets_and_gateways() {
    let (_d, path) = tmp();
    let s = open(&path);
    for (subnet, want) in [
        (
            "10.1.0.5/24",
            "invalid subnet 10.1.0.5/24: it should be 10.1.0.0/24",
        ),
        (
            "10.0.0.0/7",
            "invalid subnet 10.0.0.0/7: the prefix length must be between 8 and 30",
        ),
        (
            "10.0.0.0/31",
            "invalid subnet 10.0.0.0/31: the prefix length must be between 8 and 30",
        ),
        (
            "fd00:1::/64",
            "IPv6 subnet fd00:1::/64 is not supported yet (only IPv4)",
        ),
        ("10.1.0.0", "invalid CIDR address: 10.1.0.0: want a.b.c.d/n"),
        (
            "10.1.0.300/24",
            "invalid CIDR address: 10.1.0.300/24: the address is not an IPv4 address",
        ),
    ] {
        assert_eq!(
            err_text(s.create(&req("n", Some(subnet)))),
            want,
            "{subnet}"
        );
    }
    for (gw, want) in [
        (
            "10.2.0.1",
            "no matching subnet for gateway 10.2.0.1 (subnet 10.1.0.0/24)",
        ),
        (
            "10.1.0.0",
            "invalid gateway 10.1.0.0: it is the network address of subnet 10.1.0.0/24",
        ),
        (
            "10.1.0.255",
            "invalid gateway 10.1.0.255: it is the broadcast address of subnet 10.1.0.0/24",
        ),
        ("nope", "invalid gateway nope: not an IPv4 address"),
    ] {
        let mut r = req("n", Some("10.1.0.0/24"));
        r.gateway = Some(gw.to_string());
        assert_eq!(err_text(s.create(&r)), want, "{gw}");
    }
    let mut r = req("n", None);
    r.gateway = Some("10.1.0.1".to_string());
    assert_eq!(
        err_text(s.create(&r)),
        "every ip-range or gateway must have a corresponding subnet (gateway 10.1.0.1)"
    );
    assert!(s.list().expect("list").is_empty());
}

#[test]
fn overlapping_subnets() {
    let (_d, path) = tmp();
    let s = open(&path);
    create(&s, "wide", Some("10.0.0.0/8"));
    assert_eq!(
        err_text(s.create(&req("inner", Some("10.5.0.0/16")))),
        "invalid pool request: Pool overlaps with other one on this address space: 10.5.0.0/16 overlaps 10.0.0.0/8 of network wide"
    );
    create(&s, "small", Some("192.168.1.0/24"));
    assert_eq!(
        err_text(s.create(&req("outer", Some("192.168.0.0/16")))),
        "invalid pool request: Pool overlaps with other one on this address space: 192.168.0.0/16 overlaps 192.168.1.0/24 of network small"
    );
    create(&s, "next", Some("192.168.2.0/24"));
}

#[test]
fn automatic_pools_skip_taken_ranges() {
    let (_d, path) = tmp();
    let s = open(&path);
    assert_eq!(create(&s, "a", None).subnet.to_string(), "172.17.0.0/16");
    create(&s, "user", Some("172.18.5.0/24"));
    // 172.18.0.0/16 overlaps "user".
    assert_eq!(create(&s, "b", None).subnet.to_string(), "172.19.0.0/16");
    s.remove("a").expect("remove a");
    // Freed pools are reused, lowest first.
    assert_eq!(create(&s, "c", None).subnet.to_string(), "172.17.0.0/16");
    let mut i = 0;
    let last = loop {
        let n = create(&s, &format!("fill{i}"), None);
        i += 1;
        if n.subnet.prefix() == 20 {
            break n;
        }
    };
    assert_eq!(last.subnet.to_string(), "192.168.0.0/20");
    // 172.20..=31 (12 pools) went first.
    assert_eq!(i, 13);
    create(&s, "hole", Some("192.168.16.0/24"));
    assert_eq!(
        create(&s, "after", None).subnet.to_string(),
        "192.168.32.0/20"
    );
    for j in 0..13 {
        create(&s, &format!("more{j}"), None);
    }
    assert_eq!(
        err_text(s.create(&req("full", None))),
        "network full: could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"
    );
}

#[test]
fn allocation_order_release_and_idempotence() {
    let (_d, path) = tmp();
    let s = open(&path);
    let n = create(&s, "app", Some("10.1.0.0/24"));
    let a = s
        .allocate(&n.id, "ca", None, &names(&["web", "www"]))
        .expect("a");
    assert_eq!(a.ip, ip("10.1.0.2"));
    assert_eq!(a.mac, "02:42:0a:01:00:02");
    assert_eq!(a.names, ["web", "www"]);
    assert_eq!(a.network_id, n.id);
    assert_eq!(a.container_id, "ca");
    let b = s.allocate(&n.id, "cb", None, &[]).expect("b");
    assert_eq!(b.ip, ip("10.1.0.3"));
    let c = s.allocate(&n.id, "cc", None, &[]).expect("c");
    assert_eq!(c.ip, ip("10.1.0.4"));
    // Again: the same lease, names unchanged.
    assert_eq!(s.allocate(&n.id, "ca", None, &[]).expect("again"), a);
    assert_eq!(
        s.allocate(&n.id, "ca", Some(ip("10.1.0.2")), &[])
            .expect("again with its ip"),
        a
    );
    assert_eq!(
        err_text(s.allocate(&n.id, "ca", Some(ip("10.1.0.50")), &[])),
        "container ca already has address 10.1.0.2 on network app, cannot also have 10.1.0.50"
    );
    // A released address is the lowest free one again.
    s.release(&n.id, "cb").expect("release");
    s.release(&n.id, "cb").expect("release is idempotent");
    s.release("no-such-network", "cb")
        .expect("release anywhere");
    assert_eq!(
        s.allocate(&n.id, "cd", None, &[]).expect("d").ip,
        ip("10.1.0.3")
    );
    let ips: Vec<Ipv4Addr> = s
        .leases(&n.id)
        .expect("leases")
        .iter()
        .map(|l| l.ip)
        .collect();
    assert_eq!(ips, [ip("10.1.0.2"), ip("10.1.0.3"), ip("10.1.0.4")]);
    assert_eq!(
        err_text(s.allocate("nonexistent", "cx", None, &[])),
        "network nonexistent not found"
    );
}

#[test]
fn requested_addresses() {
    let (_d, path) = tmp();
    let s = open(&path);
    let n = create(&s, "app", Some("10.1.0.0/24"));
    let l = s
        .allocate(&n.id, "c1", Some(ip("10.1.0.77")), &[])
        .expect("requested");
    assert_eq!(l.ip, ip("10.1.0.77"));
    assert_eq!(l.mac, "02:42:0a:01:00:4d");
    assert_eq!(
        err_text(s.allocate(&n.id, "c2", Some(ip("10.1.0.77")), &[])),
        "Address already in use: 10.1.0.77 on network app is leased to container c1"
    );
    assert_eq!(
        err_text(s.allocate(&n.id, "c2", Some(ip("10.2.0.5")), &[])),
        "requested address 10.2.0.5 is out of range: not in subnet 10.1.0.0/24 of network app"
    );
    assert_eq!(
        err_text(s.allocate(&n.id, "c2", Some(ip("10.1.0.1")), &[])),
        "requested address 10.1.0.1 is the gateway of network app (10.1.0.0/24)"
    );
    assert_eq!(
        err_text(s.allocate(&n.id, "c2", Some(ip("10.1.0.0")), &[])),
        "requested address 10.1.0.0 is the network address of network app (10.1.0.0/24)"
    );
    assert_eq!(
        err_text(s.allocate(&n.id, "c2", Some(ip("10.1.0.255")), &[])),
        "requested address 10.1.0.255 is the broadcast address of network app (10.1.0.0/24)"
    );
    // Automatic choice goes around a requested address.
    assert_eq!(
        s.allocate(&n.id, "c2", None, &[]).expect("auto").ip,
        ip("10.1.0.2")
    );

    let auto = create(&s, "auto", None);
    assert_eq!(
        err_text(s.allocate(&auto.id, "c1", Some(ip("172.18.0.5")), &[])),
        "user specified IP address is supported only when connecting to networks with user configured subnets (network auto)"
    );
}

#[test]
fn a_slash_30_has_one_address_for_containers() {
    let (_d, path) = tmp();
    let s = open(&path);
    let n = create(&s, "tiny", Some("10.7.0.0/30"));
    assert_eq!(
        s.allocate(&n.id, "c1", None, &[]).expect("one").ip,
        ip("10.7.0.2")
    );
    assert_eq!(
        err_text(s.allocate(&n.id, "c2", None, &[])),
        format!(
            "no available IPv4 addresses on this network's address pools: tiny ({})",
            n.id
        )
    );
}

#[test]
fn remove_refused_while_leased() {
    let (_d, path) = tmp();
    let s = open(&path);
    let n = create(&s, "busy", Some("10.3.0.0/24"));
    s.allocate(&n.id, "c1", None, &[]).expect("allocate");
    assert_eq!(
        err_text(s.remove("busy")),
        format!(
            "error while removing network: network busy id {} has active endpoints",
            n.id
        )
    );
    s.release(&n.id, "c1").expect("release");
    assert_eq!(s.remove(&n.id[..10]).expect("remove"), n);
    assert_eq!(err_text(s.get("busy")), "network busy not found");
    assert_eq!(err_text(s.remove("busy")), "network busy not found");
}

#[test]
fn release_all_returns_what_it_removed() {
    let (_d, path) = tmp();
    let s = open(&path);
    let a = create(&s, "a", Some("10.1.0.0/24"));
    let b = create(&s, "b", Some("10.2.0.0/24"));
    let la = s.allocate(&a.id, "c1", None, &names(&["one"])).expect("a");
    let lb = s.allocate(&b.id, "c1", None, &[]).expect("b");
    s.allocate(&a.id, "c2", None, &[]).expect("other");
    let ports = s
        .reserve_ports("c1", &[tcp(Some(8080), 80)])
        .expect("ports");
    s.reserve_ports("c2", &[tcp(Some(8081), 80)])
        .expect("ports");

    let of = s.leases_of("c1").expect("leases_of");
    assert_eq!(of, vec![(a.clone(), la.clone()), (b.clone(), lb.clone())]);

    let gone = s.release_all("c1").expect("release_all");
    let mut leases = gone.leases.clone();
    leases.sort_by_key(|x| x.ip);
    assert_eq!(leases, vec![la, lb]);
    assert_eq!(gone.ports, ports);
    assert!(s.leases_of("c1").expect("leases_of").is_empty());
    assert!(s.ports_of("c1").expect("ports_of").is_empty());
    assert_eq!(s.leases(&a.id).expect("c2 kept").len(), 1);
    assert_eq!(s.ports_of("c2").expect("c2 ports kept").len(), 1);
    assert_eq!(
        s.release_all("c1").expect("again"),
        net::Released::default()
    );
}

#[test]
fn explicit_ports_and_conflicts() {
    let (_d, path) = tmp();
    let s = open(&path);
    let lo = Ipv4Addr::LOCALHOST;
    let got = s
        .reserve_ports(
            "c1",
            &[
                tcp(Some(8080), 80),
                PortRequest {
                    proto: Proto::Udp,
                    host_ip: lo,
                    host_port: Some(5353),
                    container_port: 53,
                },
            ],
        )
        .expect("reserve");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].host_port, 8080);
    assert_eq!(got[0].container_port, 80);
    assert_eq!(got[0].proto, Proto::Tcp);
    assert_eq!(got[1].host_ip, lo);
    assert_eq!(s.ports_of("c1").expect("ports_of"), got);

    // 0.0.0.0:8080/tcp is taken for every address.
    assert_eq!(
        err_text(s.reserve_ports("c2", &[tcp(Some(8080), 81)])),
        "Bind for 0.0.0.0:8080 failed: port is already allocated"
    );
    let on_lo = PortRequest {
        host_ip: lo,
        ..tcp(Some(8080), 81)
    };
    assert_eq!(
        err_text(s.reserve_ports("c2", &[on_lo])),
        "Bind for 127.0.0.1:8080 failed: port is already allocated"
    );
    // udp and tcp are independent.
    let udp = PortRequest {
        proto: Proto::Udp,
        ..tcp(Some(8080), 81)
    };
    s.reserve_ports("c2", &[udp]).expect("udp 8080");

    // A specific address blocks 0.0.0.0 on that port, not other specific addresses.
    let udp_any = PortRequest {
        proto: Proto::Udp,
        host_ip: Ipv4Addr::UNSPECIFIED,
        host_port: Some(5353),
        container_port: 53,
    };
    assert_eq!(
        err_text(s.reserve_ports("c3", &[udp_any])),
        "Bind for 0.0.0.0:5353 failed: port is already allocated"
    );
    let udp_other = PortRequest {
        host_ip: ip("192.168.1.5"),
        ..udp_any
    };
    s.reserve_ports("c3", &[udp_other]).expect("other address");

    // Within one call too.
    assert_eq!(
        err_text(s.reserve_ports("c4", &[tcp(Some(9000), 1), tcp(Some(9000), 2)])),
        "Bind for 0.0.0.0:9000 failed: port is already allocated"
    );
    assert_eq!(
        err_text(s.reserve_ports("c4", &[tcp(Some(0), 1)])),
        "invalid host port 0 for 0.0.0.0:1: ports are 1-65535 (no host port: any free one)"
    );
    assert_eq!(
        err_text(s.reserve_ports("c4", &[tcp(None, 0)])),
        "invalid container port 0 for tcp: ports are 1-65535"
    );
    assert!(s.ports_of("c4").expect("ports_of").is_empty());
    s.reserve_ports("c4", &[tcp(Some(65535), 65535), tcp(Some(1), 1)])
        .expect("the ends of the range");
}

#[test]
fn automatic_ports() {
    let (_d, path) = tmp();
    let s = open(&path);
    let got = s
        .reserve_ports("c1", &[tcp(None, 80), tcp(None, 443)])
        .expect("auto");
    assert_eq!(got[0].host_port, 49153);
    assert_eq!(got[1].host_port, 49154);
    // The explicit 49155 of the same call is not taken by the automatic pick before it.
    let got = s
        .reserve_ports("c2", &[tcp(None, 80), tcp(Some(49155), 81)])
        .expect("mixed");
    assert_eq!(got[0].host_port, 49156);
    assert_eq!(got[1].host_port, 49155);
    // Per protocol, and a specific address only avoids what overlaps it.
    let udp = PortRequest {
        proto: Proto::Udp,
        ..tcp(None, 53)
    };
    assert_eq!(
        s.reserve_ports("c3", &[udp]).expect("udp")[0].host_port,
        49153
    );
    s.release_ports("c1").expect("release");
    s.release_ports("c1").expect("release again");
    assert!(s.ports_of("c1").expect("ports_of").is_empty());
    let lo = PortRequest {
        host_ip: Ipv4Addr::LOCALHOST,
        ..tcp(None, 80)
    };
    assert_eq!(
        s.reserve_ports("c4", &[lo]).expect("lo")[0].host_port,
        49153
    );
}

#[test]
fn ports_all_or_nothing() {
    let (_d, path) = tmp();
    let s = open(&path);
    s.reserve_ports("c1", &[tcp(Some(8080), 80)])
        .expect("first");
    assert_eq!(
        err_text(s.reserve_ports(
            "c2",
            &[tcp(Some(7070), 70), tcp(None, 90), tcp(Some(8080), 80)]
        )),
        "Bind for 0.0.0.0:8080 failed: port is already allocated"
    );
    assert!(s.ports_of("c2").expect("ports_of").is_empty());
    // 7070 and 49153 were not kept.
    let got = s
        .reserve_ports("c3", &[tcp(Some(7070), 70), tcp(None, 90)])
        .expect("free");
    assert_eq!(got[1].host_port, 49153);
}

#[test]
fn only_attached_containers_are_listed_for_dns() {
    let (_d, path) = tmp();
    let s = open(&path);
    let n = create(&s, "dnsnet", Some("10.5.0.0/24"));
    let a = s.allocate(&n.id, "ca", None, &names(&["a"])).expect("a");
    let b = s.allocate(&n.id, "cb", None, &names(&["b"])).expect("b");
    assert!(s.attached_leases(&n.id).expect("none yet").is_empty());
    s.set_attached("ca", true).expect("attach");
    s.set_attached("ca", true).expect("twice");
    s.set_attached("cb", true).expect("attach");
    assert_eq!(s.attached_leases(&n.id).expect("both"), vec![a.clone(), b]);
    s.set_attached("cb", false).expect("detach");
    s.set_attached("cb", false).expect("twice");
    assert_eq!(s.attached_leases(&n.id).expect("a"), vec![a]);
    assert_eq!(s.leases(&n.id).expect("leases kept").len(), 2);
    // Removal forgets it too: a new container with the same id starts detached.
    s.release_all("ca").expect("release");
    let a2 = s
        .allocate(&n.id, "ca", None, &names(&["a"]))
        .expect("again");
    assert!(s.attached_leases(&n.id).expect("none").is_empty(), "{a2:?}");
}

#[test]
fn records_survive_reopen() {
    let (_d, path) = tmp();
    let (n, d, lease, ports) = {
        let s = open(&path);
        let d = s.ensure_default().expect("default");
        let n = create(&s, "keep", Some("10.4.0.0/24"));
        let lease = s
            .allocate(&n.id, "c1", None, &names(&["db", "postgres"]))
            .expect("allocate");
        let ports = s.reserve_ports("c1", &[tcp(None, 5432)]).expect("ports");
        (n, d, lease, ports)
    };
    let s = open(&path);
    assert_eq!(s.get("keep").expect("get"), n);
    assert_eq!(s.ensure_default().expect("default"), d);
    assert_eq!(s.leases(&n.id).expect("leases"), vec![lease]);
    assert_eq!(s.ports_of("c1").expect("ports"), ports);
    assert_eq!(
        s.allocate(&n.id, "c2", None, &[]).expect("next").ip,
        ip("10.4.0.3")
    );
    assert_eq!(s.path(), path);
}

#[test]
fn concurrent_stores_never_share_an_address_or_port() {
    let (_d, path) = tmp();
    let net_id = create(&open(&path), "shared", Some("10.8.0.0/24")).id;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let path = path.clone();
            let net_id = net_id.clone();
            std::thread::spawn(move || {
                // Each thread its own connection, as separate berth processes would have.
                let s = Store::open(&path).expect("open in thread");
                let mut out = Vec::new();
                for i in 0..25 {
                    let container = format!("t{t}-c{i}");
                    let lease = s
                        .allocate(&net_id, &container, None, &[])
                        .expect("allocate");
                    let port = s.reserve_ports(&container, &[tcp(None, 80)]).expect("port");
                    out.push((lease.ip, port[0].host_port));
                }
                out
            })
        })
        .collect();
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for t in threads {
        for (ip, port) in t.join().expect("thread") {
            assert!(ips.insert(ip), "{ip} handed out twice");
            assert!(ports.insert(port), "{port} handed out twice");
        }
    }
    assert_eq!(ips.len(), 200);
    assert_eq!(ports.len(), 200);
    // And they are exactly the 200 lowest: nothing was skipped either.
    let want: HashSet<Ipv4Addr> = (2..202).map(|i| Ipv4Addr::new(10, 8, 0, i)).collect();
    assert_eq!(ips, want);
    let want: HashSet<u16> = (49153..49353).collect();
    assert_eq!(ports, want);
    assert_eq!(open(&path).leases(&net_id).expect("leases").len(), 200);
}

#[test]
fn concurrent_first_opens_agree_on_the_default_network() {
    let (_d, path) = tmp();
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                Store::open(&path)
                    .expect("open in thread")
                    .ensure_default()
                    .expect("default")
            })
        })
        .collect();
    let ids: HashSet<String> = threads
        .into_iter()
        .map(|t| t.join().expect("thread").id)
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(open(&path).list().expect("list").len(), 1);
}
