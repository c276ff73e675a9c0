//! Bridge networks, as docker's: `berth network create|ls|inspect|rm|prune`, `run --network NAME|bridge|
//! container:ID`, `-p`/`-P`, `--ip`, `--add-host`, `--dns`, `berth port`. Every test runs berth in a network
//! namespace of its own (Env::with_netns), which plays the host: bridges, veths and firewall rules are made
//! there and die with it; the test checks from that namespace.

mod common;

use common::*;
use serde_json::Value;

/// busybox plus /lib and /lib64 links, so `-v /usr:/usr:ro` brings the host's python3 (a UDP server: busybox
/// has none).
fn env() -> Env {
    let e = Env::new().with_netns();
    e.load(
        busybox_image().layer(Layer::new(
            vec![
                Entry::symlink("lib", "usr/lib"),
                Entry::symlink("lib64", "usr/lib64"),
                Entry::dir("usr", 0o755),
                Entry::dir("www", 0o755),
                Entry::file("www/index.html", "hello from the container\n", 0o644),
            ],
            Compression::Gzip,
        )),
        "busybox:latest",
    );
    e
}

fn inspect(e: &Env, what: &str) -> Value {
    let v: Value = serde_json::from_str(&e.ok(&["inspect", what])).unwrap();
    v[0].clone()
}

fn ip_of(e: &Env, c: &str, network: &str) -> String {
    inspect(e, c)["NetworkSettings"]["Networks"][network]["IPAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Run in the test's namespace (the host of the containers).
fn host(e: &Env, args: &[&str]) -> std::process::Output {
    e.netns().exec(args)
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `berth run -d --name NAME FLAGS... busybox sleep 1000`.
fn sleeper(e: &Env, name: &str, flags: &[&str]) -> String {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(flags);
    args.extend(["busybox", "sleep", "1000"]);
    e.ok(&args)
}

fn links(e: &Env) -> String {
    stdout(&host(e, &["ip", "-o", "link", "show"]))
}

fn berth_table(e: &Env) -> String {
    stdout(&host(e, &["nft", "list", "table", "ip", "berth"]))
}

#[test]
fn containers_on_a_user_network_reach_each_other_and_the_host() {
    let e = env();
    let id = e.ok(&[
        "network",
        "create",
        "--subnet",
        "10.89.0.0/24",
        "--label",
        "k=v",
        "testnet",
    ]);
    assert_eq!(id.trim().len(), 64);
    let ls = e.ok(&["network", "ls"]);
    for n in ["bridge", "host", "none", "testnet"] {
        assert!(
            ls.lines().any(|l| l.split_whitespace().nth(1) == Some(n)),
            "{ls}"
        );
    }
    let n: Value = serde_json::from_str(&e.ok(&["network", "inspect", "testnet"])).unwrap();
    assert_eq!(n[0]["IPAM"]["Config"][0]["Subnet"], "10.89.0.0/24");
    assert_eq!(n[0]["IPAM"]["Config"][0]["Gateway"], "10.89.0.1");
    assert_eq!(n[0]["Labels"]["k"], "v");

    sleeper(&e, "ca", &["--network", "testnet"]);
    sleeper(&e, "cb", &["--network", "testnet", "--ip", "10.89.0.50"]);
    assert_eq!(ip_of(&e, "ca", "testnet"), "10.89.0.2");
    assert_eq!(ip_of(&e, "cb", "testnet"), "10.89.0.50");
    // Inside: eth0 with the address, a default route via the gateway, /etc/hosts names the container.
    let addr = e.ok(&["exec", "ca", "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert!(addr.contains("10.89.0.2/24"), "{addr}");
    let route = e.ok(&["exec", "ca", "ip", "route"]);
    assert!(route.contains("default via 10.89.0.1"), "{route}");
    let hosts = e.ok(&["exec", "ca", "cat", "/etc/hosts"]);
    assert!(hosts.contains("10.89.0.2\t"), "{hosts}");
    // a -> b, b -> a, the host -> a, a -> the host (its gateway address).
    e.ok(&["exec", "ca", "ping", "-c", "1", "-W", "2", "10.89.0.50"]);
    e.ok(&["exec", "cb", "ping", "-c", "1", "-W", "2", "10.89.0.2"]);
    let o = host(&e, &["busybox", "ping", "-c", "1", "-W", "2", "10.89.0.2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    e.ok(&["exec", "ca", "ping", "-c", "1", "-W", "2", "10.89.0.1"]);
    // inspect lists both on the network.
    let n: Value = serde_json::from_str(&e.ok(&["network", "inspect", "testnet"])).unwrap();
    assert_eq!(n[0]["Containers"].as_object().unwrap().len(), 2, "{n}");
    // The short way between them (crates/net/src/fastpath.rs): both MACs in the network's map, a chain on
    // each host end; with their bridge ports disabled they still reach each other, the gateway does not.
    let fast = stdout(&host(&e, &["nft", "list", "table", "netdev", "berth"]));
    assert!(
        fast.contains("02:42:0a:59:00:02") && fast.contains("02:42:0a:59:00:32"),
        "{fast}"
    );
    assert_eq!(fast.matches("fwd to ether daddr map").count(), 2, "{fast}");
    let bridge = format!("br-{}", &id.trim()[..12]);
    let ports = stdout(&host(&e, &["ip", "-o", "link", "show", "master", &bridge]));
    let ports: Vec<&str> = ports
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|p| p.split('@').next().unwrap_or(p))
        .collect();
    assert_eq!(ports.len(), 2, "{ports:?}");
    for p in &ports {
        let o = host(&e, &["bridge", "link", "set", "dev", p, "state", "0"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    e.ok(&["exec", "ca", "ping", "-c", "1", "-W", "2", "10.89.0.50"]);
    e.ok(&["exec", "cb", "ping", "-c", "1", "-W", "2", "10.89.0.2"]);
    e.fails(&["exec", "ca", "ping", "-c", "1", "-W", "1", "10.89.0.1"]);
    for p in &ports {
        let o = host(&e, &["bridge", "link", "set", "dev", p, "state", "3"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }

    // A network in use cannot go.
    let err = e.fails(&["network", "rm", "testnet"]);
    assert!(err.contains("has active endpoints"), "{err}");
    // container:ID shares ca's namespace: same address.
    let shared = e.ok(&[
        "run",
        "--rm",
        "--network",
        "container:ca",
        "busybox",
        "ip",
        "-o",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(shared.contains("10.89.0.2/24"), "{shared}");

    // After rm of everything: no veth, no bridge, no rule, no lease.
    e.ok(&["rm", "-f", "ca", "cb"]);
    let n: Value = serde_json::from_str(&e.ok(&["network", "inspect", "testnet"])).unwrap();
    assert!(n[0]["Containers"].as_object().unwrap().is_empty(), "{n}");
    assert!(!links(&e).contains("veth"), "{}", links(&e));
    let o = host(&e, &["nft", "list", "tables"]);
    assert!(!stdout(&o).contains("netdev berth"), "{}", stdout(&o));
    e.ok(&["network", "rm", "testnet"]);
    let l = links(&e);
    assert!(!l.contains("br-") && !l.contains("veth"), "{l}");
    let t = berth_table(&e);
    assert!(!t.contains(&id.trim()[..12]), "{t}");
    assert!(!e.ok(&["network", "ls"]).contains("testnet"));
}

#[test]
fn published_ports_answer_from_the_host_and_from_other_containers() {
    let e = env();
    e.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "bridge",
        "-p",
        "8080:80",
        "-p",
        "127.0.0.1::81",
        "-p",
        "5353:5353/udp",
        "-v",
        "/usr:/usr:ro",
        "busybox",
        "sh",
        "-c",
        "httpd -p 80 -h /www; httpd -p 81 -h /www; exec python3 -c \"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', 5353))
while True:
    d, a = s.recvfrom(100)
    s.sendto(b'echo ' + d, a)
\"",
    ]);
    let ports = e.ok(&["port", "web"]);
    assert!(ports.contains("80/tcp -> 0.0.0.0:8080"), "{ports}");
    assert!(ports.contains("5353/udp -> 0.0.0.0:5353"), "{ports}");
    let p81 = e.ok(&["port", "web", "81/tcp"]);
    assert!(p81.starts_with("127.0.0.1:"), "{p81}");
    let ps = e.ok(&["ps", "--format", "{{.Ports}}"]);
    assert!(ps.contains("0.0.0.0:8080->80/tcp"), "{ps}");
    let web_ip = ip_of(&e, "web", "bridge");
    let gateway = inspect(&e, "web")["NetworkSettings"]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();

    let get = |url: &str| {
        stdout(&host(
            &e,
            // curl: Debian's static busybox wget crashes in getaddrinfo.
            &["curl", "-s", "-m", "3", url],
        ))
    };
    wait_until("httpd up", || {
        get(&format!("http://{web_ip}:80/")).contains("hello")
    });
    // From the host: localhost and the host's own address (the bridge's gateway).
    assert_eq!(get("http://127.0.0.1:8080/"), "hello from the container\n");
    assert_eq!(
        get(&format!("http://{gateway}:8080/")),
        "hello from the container\n"
    );
    assert_eq!(
        get(&format!("http://{}/", p81.trim())),
        "hello from the container\n"
    );
    // UDP from the host.
    let o = host(
        &e,
        &[
            "python3",
            "-c",
            "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); \
          s.sendto(b'ping', ('127.0.0.1', 5353)); print(s.recvfrom(100)[0].decode())",
        ],
    );
    assert_eq!(stdout(&o), "echo ping\n", "{}", stderr(&o));
    // Hairpin: another container, and the container itself, through the host's address.
    sleeper(&e, "client", &["--network", "bridge"]);
    let page = e.ok(&[
        "exec",
        "client",
        "sh",
        "-c",
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {gateway} 8080"),
    ]);
    assert!(page.ends_with("hello from the container\n"), "{page}");
    let page = e.ok(&[
        "exec",
        "web",
        "sh",
        "-c",
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {gateway} 8080"),
    ]);
    assert!(page.ends_with("hello from the container\n"), "{page}");

    // The same host port again: refused before anything runs, nothing left.
    let before = e.containers().len();
    let o = e.run(&[
        "run",
        "-d",
        "--network",
        "bridge",
        "-p",
        "8080:80",
        "busybox",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert!(err.contains("port is already allocated"), "{err}");
    assert_eq!(e.containers().len(), before);

    // Stopped: the port stops forwarding; removed: the rule goes.
    e.ok(&["stop", "-t", "1", "web"]);
    assert!(get("http://127.0.0.1:8080/").is_empty());
    e.ok(&["rm", "-f", "web", "client"]);
    let t = berth_table(&e);
    assert!(!t.contains("8080"), "{t}");
    assert!(!links(&e).contains("veth"));
}

#[test]
fn publish_all_add_host_and_dns() {
    let e = env();
    e.load(
        busybox_image().config_field(
            "ExposedPorts",
            serde_json::json!({"7000/tcp": {}, "7001/udp": {}}),
        ),
        "exposing:1",
    );
    e.ok(&[
        "create",
        "--name",
        "cx",
        "--network",
        "bridge",
        "-P",
        "--add-host",
        "db:10.1.2.3",
        "--dns",
        "192.0.2.53",
        "exposing:1",
    ]);
    let ports = e.ok(&["port", "cx"]);
    assert!(ports.contains("7000/tcp -> 0.0.0.0:49153"), "{ports}");
    assert!(ports.contains("7001/udp -> 0.0.0.0:49153"), "{ports}");
    let dir = e
        .root()
        .join("containers")
        .join(inspect(&e, "cx")["Id"].as_str().unwrap());
    let hosts = std::fs::read_to_string(dir.join("hosts")).unwrap();
    assert!(hosts.contains("10.1.2.3\tdb"), "{hosts}");
    let resolv = std::fs::read_to_string(dir.join("resolv.conf")).unwrap();
    assert!(resolv.contains("nameserver 192.0.2.53"), "{resolv}");
    assert_eq!(resolv.matches("nameserver").count(), 1, "{resolv}");
}

#[test]
fn bad_network_input_is_refused_cleanly() {
    let e = env();
    e.ok(&["network", "create", "--subnet", "10.90.0.0/16", "one"]);
    for (args, want) in [
        (
            vec!["network", "create", "--subnet", "10.90.1.0/24", "two"],
            "overlaps",
        ),
        (
            vec!["network", "create", "--subnet", "10.91.0.5/24", "two"],
            "10.91.0.0/24",
        ),
        (
            vec![
                "network",
                "create",
                "--subnet",
                "10.92.0.0/24",
                "--gateway",
                "10.93.0.1",
                "two",
            ],
            "gateway",
        ),
        (
            vec!["network", "create", "--subnet", "nonsense", "two"],
            "nonsense",
        ),
        (vec!["network", "create", "one"], "already exists"),
        (vec!["network", "create", "bad name"], "bad name"),
        (vec!["network", "rm", "nosuch"], "nosuch"),
        (vec!["network", "rm", "host"], "pre-defined"),
        (
            vec!["run", "--network", "nosuch", "busybox", "true"],
            "nosuch",
        ),
        (
            vec![
                "run",
                "--network",
                "one",
                "--ip",
                "10.99.0.5",
                "busybox",
                "true",
            ],
            "10.99.0.5",
        ),
        (
            vec![
                "run",
                "--network",
                "bridge",
                "--ip",
                "172.17.0.9",
                "busybox",
                "true",
            ],
            "user configured subnets",
        ),
        (
            vec![
                "run",
                "--network",
                "bridge",
                "-p",
                "80:70000",
                "busybox",
                "true",
            ],
            "70000",
        ),
        (
            vec![
                "run",
                "--network",
                "bridge",
                "-p",
                "x:80",
                "busybox",
                "true",
            ],
            "invalid host port",
        ),
        (
            vec![
                "run",
                "--network",
                "bridge",
                "-p",
                "80/sctp",
                "busybox",
                "true",
            ],
            "sctp",
        ),
        (
            vec!["run", "--network", "container:nosuch", "busybox", "true"],
            "nosuch",
        ),
        (
            vec!["run", "--add-host", "nocolon", "busybox", "true"],
            "nocolon",
        ),
    ] {
        let o = e.run(&args);
        let err = stderr(&o);
        assert!(
            matches!(o.status.code(), Some(1 | 125)),
            "{args:?}: {:?} {err}",
            o.status
        );
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
    }
    assert!(e.containers().is_empty());
    let n: Value = serde_json::from_str(&e.ok(&["network", "inspect", "one"])).unwrap();
    assert!(n[0]["Containers"].as_object().unwrap().is_empty());
    e.ok(&["network", "rm", "one"]);
    assert!(!links(&e).contains("br-"));
}

#[test]
fn names_and_aliases_resolve_on_a_user_network_and_the_rest_is_forwarded() {
    let e = env();
    e.ok(&["network", "create", "--subnet", "10.88.0.0/24", "appnet"]);
    // A resolver on the host (the test's namespace) that answers every A query with 192.0.2.7: what the
    // embedded server forwards to (--dns 127.0.0.1, reached from the monitor, which runs on the host).
    let upstream = e
        .netns()
        .cmd("python3")
        .args([
            "-c",
            "import socket, signal\n\
             signal.alarm(60)\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.bind(('127.0.0.1', 53))\n\
             while True:\n\
             \x20   q, a = s.recvfrom(512)\n\
             \x20   end = q.index(b'\\0', 12) + 5\n\
             \x20   r = q[:2] + b'\\x81\\x80' + q[4:6] + b'\\x00\\x01\\x00\\x00\\x00\\x00' + q[12:end]\n\
             \x20   r += b'\\xc0\\x0c\\x00\\x01\\x00\\x01\\x00\\x00\\x00\\x3c\\x00\\x04' + bytes([192, 0, 2, 7])\n\
             \x20   s.sendto(r, a)\n",
        ])
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _upstream = Kill(upstream);
    sleeper(
        &e,
        "db1",
        &["--network", "appnet", "--network-alias", "database"],
    );
    sleeper(
        &e,
        "app",
        &[
            "--network",
            "appnet",
            "--dns",
            "127.0.0.1",
            "-v",
            "/usr:/usr:ro",
        ],
    );
    let resolv = e.ok(&["exec", "app", "cat", "/etc/resolv.conf"]);
    assert!(resolv.starts_with("nameserver 127.0.0.11\n"), "{resolv}");
    let db_ip = ip_of(&e, "db1", "appnet");
    for name in ["db1", "database", "DB1"] {
        let out = e.ok(&["exec", "app", "busybox", "nslookup", name]);
        assert!(out.contains(&db_ip), "{name}: {out}");
    }
    // By name, as programs do (getaddrinfo through the host's libc under /usr).
    e.ok(&["exec", "app", "ping", "-c", "1", "-W", "2", "database"]);
    let out = e.ok(&["exec", "app", "busybox", "nslookup", "www.example.test"]);
    assert!(out.contains("192.0.2.7"), "forwarded: {out}");
    // A stopped container's names do not resolve (its lease stays until rm), so the question goes on to
    // the upstream; started again, they are back.
    e.ok(&["stop", "-t", "0", "db1"]);
    for name in ["db1", "database"] {
        let out = e.ok(&["exec", "app", "busybox", "nslookup", name]);
        assert!(
            !out.contains(&db_ip) && out.contains("192.0.2.7"),
            "{name} while db1 is stopped: {out}"
        );
    }
    e.ok(&["start", "db1"]);
    assert_eq!(ip_of(&e, "db1", "appnet"), db_ip);
    let out = e.ok(&["exec", "app", "busybox", "nslookup", "database"]);
    assert!(out.contains(&db_ip), "after start: {out}");
    // A container on the default bridge has no embedded DNS (as docker's).
    sleeper(&e, "lone", &["--network", "bridge"]);
    let resolv = e.ok(&["exec", "lone", "cat", "/etc/resolv.conf"]);
    assert!(!resolv.contains("127.0.0.11"), "{resolv}");
}

#[test]
fn connect_and_disconnect_a_running_container() {
    let e = env();
    e.ok(&["network", "create", "--subnet", "10.81.0.0/24", "front"]);
    e.ok(&["network", "create", "--subnet", "10.82.0.0/24", "back"]);
    sleeper(&e, "proxy", &["--network", "front"]);
    sleeper(&e, "api", &["--network", "back"]);
    // Isolated networks: proxy cannot reach api yet.
    let api = ip_of(&e, "api", "back");
    let o = e.run(&["exec", "proxy", "ping", "-c", "1", "-W", "1", &api]);
    assert!(!o.status.success(), "front reached back before connect");
    e.ok(&[
        "network",
        "connect",
        "--alias",
        "gateway",
        "--ip",
        "10.82.0.100",
        "back",
        "proxy",
    ]);
    let addrs = e.ok(&["exec", "proxy", "ip", "-o", "-4", "addr"]);
    assert!(
        addrs.contains("eth1") && addrs.contains("10.82.0.100/24"),
        "{addrs}"
    );
    e.ok(&["exec", "proxy", "ping", "-c", "1", "-W", "2", &api]);
    // The new network's names resolve from both sides.
    let out = e.ok(&["exec", "api", "busybox", "nslookup", "gateway"]);
    assert!(out.contains("10.82.0.100"), "{out}");
    assert_eq!(ip_of(&e, "proxy", "back"), "10.82.0.100");
    for (args, want) in [
        (
            vec!["network", "connect", "back", "proxy"],
            "already exists",
        ),
        (vec!["network", "connect", "nosuch", "proxy"], "nosuch"),
        (
            vec!["network", "disconnect", "front", "api"],
            "not connected",
        ),
    ] {
        let err = e.fails(&args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    e.ok(&["network", "disconnect", "back", "proxy"]);
    let addrs = e.ok(&["exec", "proxy", "ip", "-o", "-4", "addr"]);
    assert!(!addrs.contains("10.82.0.100"), "{addrs}");
    assert_eq!(ip_of(&e, "proxy", "back"), "");
    // A container without a bridge network cannot be connected.
    sleeper(&e, "lonely", &["--network", "none"]);
    let err = e.fails(&["network", "connect", "front", "lonely"]);
    assert!(err.contains("not on a bridge network"), "{err}");
}
