//! Published host ports (docker's -p). A host port is taken for a new binding when a binding with the same
//! protocol and port has an overlapping host address: the same one, or either is 0.0.0.0 (every address).

use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

use super::{unique_violation, Store};
use crate::NetError;

/// Docker's default range for a host port the user left to us (-p 80): 49153..=60999.
pub const EPHEMERAL_FIRST: u16 = 49153;
pub const EPHEMERAL_LAST: u16 = 60999;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Proto {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Proto, NetError> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            _ => Err(NetError::Invalid(format!(
                "invalid proto '{s}': only tcp and udp are supported"
            ))),
        }
    }
}

/// One port to publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRequest {
    pub proto: Proto,
    /// 0.0.0.0: every address of the host.
    pub host_ip: Ipv4Addr,
    /// None: the lowest free port of [`EPHEMERAL_FIRST`]..=[`EPHEMERAL_LAST`].
    pub host_port: Option<u16>,
    pub container_port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    pub container_id: String,
    pub proto: Proto,
    /// 0.0.0.0: every address of the host.
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
    pub container_port: u16,
}

const PORT_COLS: &str = "container_id, proto, host_ip, host_port, container_port";

type RawPort = (String, String, i64, i64, i64);

fn raw_port(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawPort> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

/// Whether two bindings of the same protocol and port would fight over the same socket address.
fn ips_overlap(a: Ipv4Addr, b: Ipv4Addr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

fn already_allocated(ip: Ipv4Addr, port: u16) -> NetError {
    NetError::Conflict(format!(
        "Bind for {ip}:{port} failed: port is already allocated"
    ))
}

impl Store {
    fn port_from(
        &self,
        (container_id, proto, ip, host, cont): RawPort,
    ) -> Result<PortBinding, NetError> {
        let bad =
            |what: &str| self.corrupt(format!("port of container {container_id}: bad {what}"));
        Ok(PortBinding {
            proto: proto.parse().map_err(|_| bad("protocol"))?,
            host_ip: u32::try_from(ip)
                .map(Ipv4Addr::from)
                .map_err(|_| bad("host address"))?,
            host_port: u16::try_from(host).map_err(|_| bad("host port"))?,
            container_port: u16::try_from(cont).map_err(|_| bad("container port"))?,
            container_id,
        })
    }

    /// Bindings matching `cond` (an SQL condition on the ports table), in reservation order.
    pub(super) fn query_ports(
        &self,
        conn: &Connection,
        cond: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<PortBinding>, NetError> {
        let sql = format!("SELECT {PORT_COLS} FROM ports WHERE {cond} ORDER BY seq");
        let mut st = conn.prepare(&sql).map_err(|e| self.db(e))?;
        let rows = st
            .query_map(args, raw_port)
            .map_err(|e| self.db(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.db(e))?;
        rows.into_iter().map(|r| self.port_from(r)).collect()
    }

    /// Reserves host ports for a container: all of them or, on the first conflict, none. The bindings come back
    /// in the order of `wanted`, with the automatically chosen ports filled in.
    pub fn reserve_ports(
        &self,
        container_id: &str,
        wanted: &[PortRequest],
    ) -> Result<Vec<PortBinding>, NetError> {
        if container_id.is_empty() {
            return Err(NetError::Invalid(
                "publishing ports needs a container id".to_string(),
            ));
        }
        for w in wanted {
            if w.container_port == 0 {
                return Err(NetError::Invalid(format!(
                    "invalid container port 0 for {}: ports are 1-65535",
                    w.proto
                )));
            }
            if w.host_port == Some(0) {
                return Err(NetError::Invalid(format!(
                    "invalid host port 0 for {}:{}: ports are 1-65535 (no host port: any free one)",
                    w.host_ip, w.container_port
                )));
            }
        }
        let tx = self.begin()?;
        // Everything reserved so far, by anyone, and below what this call adds as it goes.
        let mut taken: Vec<(Proto, Ipv4Addr, u16)> = self
            .query_ports(&tx, "1", &[])?
            .into_iter()
            .map(|b| (b.proto, b.host_ip, b.host_port))
            .collect();
        let mut chosen: Vec<Option<u16>> = vec![None; wanted.len()];
        // The explicit ports first: an automatic pick must not take a port that a later request of the same
        // call names.
        for (i, w) in wanted.iter().enumerate() {
            let Some(port) = w.host_port else { continue };
            let clash = taken
                .iter()
                .any(|&(p, ip, hp)| p == w.proto && hp == port && ips_overlap(ip, w.host_ip));
            if clash {
                return Err(already_allocated(w.host_ip, port));
            }
            taken.push((w.proto, w.host_ip, port));
            chosen[i] = Some(port);
        }
        for (i, w) in wanted.iter().enumerate() {
            if w.host_port.is_some() {
                continue;
            }
            let busy: HashSet<u16> = taken
                .iter()
                .filter(|&&(p, ip, _)| p == w.proto && ips_overlap(ip, w.host_ip))
                .map(|&(_, _, hp)| hp)
                .collect();
            let port = (EPHEMERAL_FIRST..=EPHEMERAL_LAST)
                .find(|p| !busy.contains(p))
                .ok_or_else(|| {
                    NetError::Conflict(format!(
                        "all ports are allocated: no free {} port in {EPHEMERAL_FIRST}-{EPHEMERAL_LAST} on {}",
                        w.proto, w.host_ip
                    ))
                })?;
            taken.push((w.proto, w.host_ip, port));
            chosen[i] = Some(port);
        }
        let mut out = Vec::with_capacity(wanted.len());
        for (w, port) in wanted.iter().zip(chosen) {
            // Both loops above fill every slot; a gap would be a bug here, reported rather than panicking.
            let host_port = port.ok_or_else(|| {
                NetError::Invalid(format!(
                    "no host port chosen for {}/{}",
                    w.container_port, w.proto
                ))
            })?;
            let res = tx.execute(
                &format!("INSERT INTO ports ({PORT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
                params![
                    container_id,
                    w.proto.as_str(),
                    u32::from(w.host_ip),
                    host_port,
                    w.container_port
                ],
            );
            if let Err(e) = res {
                // Unreachable while every writer takes the write lock first; the constraint keeps it so.
                return Err(match unique_violation(&e) {
                    Some(_) => already_allocated(w.host_ip, host_port),
                    None => self.db(e),
                });
            }
            out.push(PortBinding {
                container_id: container_id.to_string(),
                proto: w.proto,
                host_ip: w.host_ip,
                host_port,
                container_port: w.container_port,
            });
        }
        tx.commit().map_err(|e| self.db(e))?;
        Ok(out)
    }

    /// A container's published ports, in reservation order.
    pub fn ports_of(&self, container_id: &str) -> Result<Vec<PortBinding>, NetError> {
        self.query_ports(&self.conn, "container_id = ?1", &[&container_id])
    }

    /// Gives back all of a container's host ports. Nothing to release is fine.
    pub fn release_ports(&self, container_id: &str) -> Result<(), NetError> {
        self.conn
            .execute("DELETE FROM ports WHERE container_id = ?1", [container_id])
            .map_err(|e| self.db(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protos() {
        assert_eq!(Proto::Tcp.to_string(), "tcp");
        assert_eq!("udp".parse::<Proto>().expect("udp"), Proto::Udp);
        assert_eq!(
            "sctp".parse::<Proto>().expect_err("sctp").to_string(),
            "invalid proto 'sctp': only tcp and udp are supported"
        );
        assert_eq!(serde_json::to_string(&Proto::Udp).expect("json"), "\"udp\"");
    }

    #[test]
    fn overlap_rule() {
        let any = Ipv4Addr::UNSPECIFIED;
        let lo = Ipv4Addr::LOCALHOST;
        let other = Ipv4Addr::new(192, 168, 1, 2);
        assert!(ips_overlap(any, lo));
        assert!(ips_overlap(lo, any));
        assert!(ips_overlap(lo, lo));
        assert!(!ips_overlap(lo, other));
    }
}
