//! The embedded DNS server of user-defined networks, as docker's: it listens on 127.0.0.11:53 (UDP) inside a
//! container's network namespace, answers A queries for the names of the containers on the same networks
//! (container name, `--network-alias`es, short id) and forwards every other query to the host's resolvers.
//!
//! It is not a separate process: the container's monitor owns the two sockets and polls them with the rest of
//! its I/O (`fds`, then `handle` for a readable one), so a container costs no extra process or thread. Names
//! are looked up in the network store at each query (a few milliseconds; the monitor keeps no database open
//! while the container runs). Forwarding never blocks: an upstream query is remembered by a fresh id and the
//! answer relayed when it comes back (or forgotten after a few seconds).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::store::Store;

/// Where the server listens inside the container (docker's address).
pub const ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
const TTL: u32 = 600;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Server {
    /// Bound to 127.0.0.11:53 in the container's namespace.
    local: UdpSocket,
    /// In the monitor's (the host's) namespace, towards the host's resolvers.
    upstream: UdpSocket,
    servers: Vec<SocketAddr>,
    store: PathBuf,
    container_id: String,
    pending: HashMap<u16, (SocketAddr, u16, Instant)>,
    next_id: u16,
}

/// Creates `f()`'s socket in the network namespace at `netns` (the calling thread steps in and back out).
fn in_netns<T>(netns: &Path, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let own = File::open("/proc/thread-self/ns/net")?;
    let theirs = File::open(netns)?;
    // SAFETY: setns with descriptors we hold; we switch back before returning.
    if unsafe { libc::setns(theirs.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let r = f();
    // SAFETY: as above.
    if unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    r
}

/// The nameservers of a resolv.conf text (port 53).
pub fn nameservers(resolv: &str) -> Vec<SocketAddr> {
    resolv
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// The resolv.conf a container on a user-defined network gets: the embedded server, the host's search
/// domains and options (docker's ndots:0).
pub fn container_resolv_conf(host_resolv: &str) -> String {
    let mut out = format!("nameserver {ADDRESS}\n");
    for l in host_resolv.lines() {
        let t = l.trim();
        if t.starts_with("search") || t.starts_with("domain") {
            out.push_str(t);
            out.push('\n');
        }
    }
    out.push_str("options ndots:0\n");
    out
}

impl Server {
    /// Binds 127.0.0.11:53 in `netns` (whose `lo` must be up) and an upstream socket here.
    pub fn start(
        netns: &Path,
        store: &Path,
        container_id: &str,
        upstream: Vec<SocketAddr>,
    ) -> io::Result<Server> {
        let local = in_netns(netns, || UdpSocket::bind(SocketAddrV4::new(ADDRESS, 53)))
            .map_err(|e| io::Error::new(e.kind(), format!("embedded DNS on {ADDRESS}:53: {e}")))?;
        local.set_nonblocking(true)?;
        let up = UdpSocket::bind("0.0.0.0:0")?;
        up.set_nonblocking(true)?;
        Ok(Server {
            local,
            upstream: up,
            servers: upstream,
            store: store.to_path_buf(),
            container_id: container_id.to_string(),
            pending: HashMap::new(),
            next_id: (std::process::id() as u16).wrapping_mul(31),
        })
    }

    /// The descriptors to poll for reading.
    pub fn fds(&self) -> [RawFd; 2] {
        [self.local.as_raw_fd(), self.upstream.as_raw_fd()]
    }

    /// Serves what is readable on `fd` (one of `fds`), without blocking.
    pub fn handle(&mut self, fd: RawFd) {
        let mut buf = [0u8; 1500];
        if fd == self.local.as_raw_fd() {
            while let Ok((n, from)) = self.local.recv_from(&mut buf) {
                self.query(&buf[..n], from);
            }
        } else if fd == self.upstream.as_raw_fd() {
            while let Ok((n, _)) = self.upstream.recv_from(&mut buf) {
                self.relay(&mut buf[..n]);
            }
        }
        let now = Instant::now();
        self.pending
            .retain(|_, (_, _, t)| now.duration_since(*t) < FORWARD_TIMEOUT);
    }

    fn query(&mut self, msg: &[u8], from: SocketAddr) {
        let Some(q) = parse_query(msg) else { return };
        if q.qtype == TYPE_A || q.qtype == TYPE_AAAA {
            if let Some(ips) = self.lookup(&q.name) {
                // Known name: A records, or an empty answer for AAAA (IPv4 only), never forwarded.
                let ips = if q.qtype == TYPE_A { ips } else { Vec::new() };
                let _ = self.local.send_to(&answer(msg, &q, &ips, RCODE_OK), from);
                return;
            }
        }
        if self.servers.is_empty() {
            let _ = self
                .local
                .send_to(&answer(msg, &q, &[], RCODE_SERVFAIL), from);
            return;
        }
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let mut fwd = msg.to_vec();
        fwd[0..2].copy_from_slice(&id.to_be_bytes());
        self.pending.insert(id, (from, q.id, Instant::now()));
        for s in &self.servers {
            if self.upstream.send_to(&fwd, s).is_ok() {
                break;
            }
        }
    }

    fn relay(&mut self, msg: &mut [u8]) {
        if msg.len() < 12 {
            return;
        }
        let id = u16::from_be_bytes([msg[0], msg[1]]);
        if let Some((client, orig, _)) = self.pending.remove(&id) {
            msg[0..2].copy_from_slice(&orig.to_be_bytes());
            let _ = self.local.send_to(msg, client);
        }
    }

    /// The addresses `name` has on the networks this container is on (not on the default bridge, which has
    /// no DNS in docker either), among the containers that run. None: not a container name here.
    fn lookup(&self, name: &str) -> Option<Vec<Ipv4Addr>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let store = Store::open(&self.store).ok()?;
        let mut ips = Vec::new();
        for (network, _) in store.leases_of(&self.container_id).ok()? {
            if network.name == crate::store::DEFAULT_NETWORK {
                continue;
            }
            for l in store.attached_leases(&network.id).ok()? {
                if l.names.iter().any(|n| n.to_ascii_lowercase() == name) && !ips.contains(&l.ip) {
                    ips.push(l.ip);
                }
            }
        }
        (!ips.is_empty()).then_some(ips)
    }
}

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const RCODE_OK: u8 = 0;
const RCODE_SERVFAIL: u8 = 2;

#[derive(Debug, PartialEq)]
struct Query {
    id: u16,
    name: String,
    qtype: u16,
    /// Where the question section ends.
    end: usize,
}

/// A standard query with one question; anything else is not ours to parse (and gets no answer).
fn parse_query(msg: &[u8]) -> Option<Query> {
    if msg.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let qr_opcode = msg[2] & 0xf8;
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    if qr_opcode != 0 || qdcount != 1 {
        return None;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *msg.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(std::str::from_utf8(msg.get(i..i + len)?).ok()?.to_string());
        i += len;
    }
    let qtype = u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]);
    let end = i + 4;
    if msg.len() < end {
        return None;
    }
    Some(Query {
        id,
        name: labels.join("."),
        qtype,
        end,
    })
}

/// A response to `msg`'s question with one A record per address (a pointer to the question's name).
fn answer(msg: &[u8], q: &Query, ips: &[Ipv4Addr], rcode: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(q.end + ips.len() * 16);
    out.extend_from_slice(&msg[..q.end]);
    // QR=1, opcode 0, AA=1, RD copied; RA=1; rcode.
    out[2] = 0x80 | 0x04 | (msg[2] & 0x01);
    out[3] = 0x80 | (rcode & 0x0f);
    out[6..8].copy_from_slice(&(ips.len() as u16).to_be_bytes());
    out[8..12].copy_from_slice(&[0, 0, 0, 0]);
    for ip in ips {
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&TYPE_A.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&TTL.to_be_bytes());
        out.extend_from_slice(&4u16.to_be_bytes());
        out.extend_from_slice(&ip.octets());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            m.push(l.len() as u8);
            m.extend_from_slice(l.as_bytes());
        }
        m.push(0);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&1u16.to_be_bytes());
        m
    }

    #[test]
    fn parses_a_query_and_answers_it() {
        let m = query("web", TYPE_A);
        let q = parse_query(&m).unwrap();
        assert_eq!(
            (q.id, q.name.as_str(), q.qtype, q.end),
            (0x1234, "web", TYPE_A, m.len())
        );
        let a = answer(&m, &q, &[Ipv4Addr::new(10, 1, 0, 2)], RCODE_OK);
        assert_eq!(&a[0..2], &[0x12, 0x34]);
        assert_eq!(a[2] & 0x80, 0x80, "a response");
        assert_eq!(a[2] & 0x01, 0x01, "RD copied");
        assert_eq!(a[3] & 0x0f, 0);
        assert_eq!(u16::from_be_bytes([a[6], a[7]]), 1);
        assert_eq!(&a[a.len() - 4..], &[10, 1, 0, 2]);
        assert_eq!(a.len(), m.len() + 16);
    }

    #[test]
    fn refuses_what_is_not_a_plain_query() {
        assert!(parse_query(&[0; 5]).is_none());
        let mut m = query("x", TYPE_A);
        m[2] = 0x80; // a response
        assert!(parse_query(&m).is_none());
        let mut m = query("x", TYPE_A);
        m[5] = 2; // two questions
        assert!(parse_query(&m).is_none());
        let m = query("x", TYPE_A);
        assert!(parse_query(&m[..m.len() - 3]).is_none(), "truncated");
    }

    #[test]
    fn resolv_conf() {
        let host = "# x\nnameserver 10.0.0.1\nnameserver ::1\nsearch example.com\noptions rotate\n";
        assert_eq!(
            nameservers(host),
            vec!["10.0.0.1:53".parse().unwrap(), "[::1]:53".parse().unwrap()]
        );
        assert_eq!(
            container_resolv_conf(host),
            "nameserver 127.0.0.11\nsearch example.com\noptions ndots:0\n"
        );
    }
}
