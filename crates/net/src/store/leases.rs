//! Addresses of containers on networks: one lease per (network, container), handed out in one `BEGIN
//! IMMEDIATE` transaction each, with UNIQUE(network_id, ip) as the backstop.

use std::net::Ipv4Addr;

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

use super::{unique_violation, Network, PortBinding, Store};
use crate::NetError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub network_id: String,
    pub container_id: String,
    pub ip: Ipv4Addr,
    /// Docker's: 02:42 and the four bytes of the address, "02:42:ac:11:00:02".
    pub mac: String,
    /// The container's name and its --network-alias values, for the embedded DNS.
    pub names: Vec<String>,
}

/// What [`Store::release_all`] removed, so the caller can undo the kernel state that went with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Released {
    pub leases: Vec<Lease>,
    pub ports: Vec<PortBinding>,
}

/// Docker's MAC for an address, so the same address always has the same MAC (no stale ARP entries).
pub fn mac_of(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("02:42:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

const LEASE_COLS: &str = "network_id, container_id, ip, mac, names";

type RawLease = (String, String, i64, String, String);

fn raw_lease(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawLease> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

impl Store {
    fn lease_from(
        &self,
        (network_id, container_id, ip, mac, names): RawLease,
    ) -> Result<Lease, NetError> {
        let ip = u32::try_from(ip).map(Ipv4Addr::from).map_err(|_| {
            self.corrupt(format!(
                "lease of container {container_id} on network {network_id}: bad address {ip}"
            ))
        })?;
        let names = serde_json::from_str(&names).map_err(|e| {
            self.corrupt(format!(
                "lease of container {container_id} on network {network_id}: names: {e}"
            ))
        })?;
        Ok(Lease {
            network_id,
            container_id,
            ip,
            mac,
            names,
        })
    }

    /// Leases matching `cond` (an SQL condition on the leases table), by network and address.
    fn query_leases(
        &self,
        conn: &Connection,
        cond: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Lease>, NetError> {
        let sql = format!("SELECT {LEASE_COLS} FROM leases WHERE {cond} ORDER BY network_id, ip");
        let mut st = conn.prepare(&sql).map_err(|e| self.db(e))?;
        let rows = st
            .query_map(args, raw_lease)
            .map_err(|e| self.db(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.db(e))?;
        rows.into_iter().map(|r| self.lease_from(r)).collect()
    }

    /// Gives `container_id` an address on the network with id `network_id`: `requested` (docker's --ip), or the
    /// lowest free host address. A container has one lease per network: asking again returns it unchanged.
    pub fn allocate(
        &self,
        network_id: &str,
        container_id: &str,
        requested: Option<Ipv4Addr>,
        names: &[String],
    ) -> Result<Lease, NetError> {
        if container_id.is_empty() {
            return Err(NetError::Invalid(format!(
                "network {network_id}: an address needs a container id"
            )));
        }
        let tx = self.begin()?;
        let (net, user_subnet) = self.by_id(&tx, network_id)?;
        let existing = self.query_leases(
            &tx,
            "network_id = ?1 AND container_id = ?2",
            &[&net.id, &container_id],
        )?;
        if let Some(lease) = existing.into_iter().next() {
            if let Some(ip) = requested.filter(|ip| *ip != lease.ip) {
                return Err(NetError::Conflict(format!(
                    "container {} already has address {} on network {}, cannot also have {ip}",
                    short(container_id),
                    lease.ip,
                    net.name
                )));
            }
            return Ok(lease);
        }
        let leased = self.query_leases(&tx, "network_id = ?1", &[&net.id])?;
        let ip = match requested {
            Some(ip) => {
                check_requested(&net, user_subnet, ip)?;
                if let Some(other) = leased.iter().find(|l| l.ip == ip) {
                    return Err(in_use(&net, ip, &other.container_id));
                }
                ip
            }
            None => lowest_free(&net, &leased)?,
        };
        let names_json = serde_json::to_string(names)
            .map_err(|e| NetError::Invalid(format!("network {}: names: {e}", net.name)))?;
        let mac = mac_of(ip);
        let res = tx.execute(
            &format!("INSERT INTO leases ({LEASE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
            params![net.id, container_id, u32::from(ip), mac, names_json],
        );
        if let Err(e) = res {
            // Unreachable while every writer takes the write lock first; the constraint keeps it so.
            return Err(match unique_violation(&e) {
                Some(_) => in_use(&net, ip, "(another)"),
                None => self.db(e),
            });
        }
        tx.commit().map_err(|e| self.db(e))?;
        Ok(Lease {
            network_id: net.id,
            container_id: container_id.to_string(),
            ip,
            mac,
            names: names.to_vec(),
        })
    }

    /// Gives back a container's address on a network (full ids). Nothing to release is fine.
    pub fn release(&self, network_id: &str, container_id: &str) -> Result<(), NetError> {
        self.conn
            .execute(
                "DELETE FROM leases WHERE network_id = ?1 AND container_id = ?2",
                [network_id, container_id],
            )
            .map_err(|e| self.db(e))?;
        Ok(())
    }

    /// Removes every lease and every port of a container (its removal, or repair after a crash) and returns
    /// them, so the caller can take down the veths and rules that went with them.
    pub fn release_all(&self, container_id: &str) -> Result<Released, NetError> {
        let tx = self.begin()?;
        let leases = self.query_leases(&tx, "container_id = ?1", &[&container_id])?;
        let ports = self.query_ports(&tx, "container_id = ?1", &[&container_id])?;
        tx.execute("DELETE FROM leases WHERE container_id = ?1", [container_id])
            .map_err(|e| self.db(e))?;
        tx.execute("DELETE FROM ports WHERE container_id = ?1", [container_id])
            .map_err(|e| self.db(e))?;
        tx.execute(
            "DELETE FROM attached WHERE container_id = ?1",
            [container_id],
        )
        .map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))?;
        Ok(Released { leases, ports })
    }

    /// Marks a container's interfaces as up (it runs) or down (it stopped). A stopped container keeps its
    /// leases until it is removed, but only attached ones have names in the embedded DNS (docker's: a
    /// stopped container's name does not resolve).
    pub fn set_attached(&self, container_id: &str, attached: bool) -> Result<(), NetError> {
        let sql = if attached {
            "INSERT OR IGNORE INTO attached (container_id) VALUES (?1)"
        } else {
            "DELETE FROM attached WHERE container_id = ?1"
        };
        self.conn
            .execute(sql, [container_id])
            .map_err(|e| self.db(e))?;
        Ok(())
    }

    /// The leases on a network (full id) of the containers that are attached now, by address.
    pub fn attached_leases(&self, network_id: &str) -> Result<Vec<Lease>, NetError> {
        self.query_leases(
            &self.conn,
            "network_id = ?1 AND container_id IN (SELECT container_id FROM attached)",
            &[&network_id],
        )
    }

    /// The leases on a network (full id), by address.
    pub fn leases(&self, network_id: &str) -> Result<Vec<Lease>, NetError> {
        self.query_leases(&self.conn, "network_id = ?1", &[&network_id])
    }

    /// A container's leases with their networks, by network name.
    pub fn leases_of(&self, container_id: &str) -> Result<Vec<(Network, Lease)>, NetError> {
        let leases = self.query_leases(&self.conn, "container_id = ?1", &[&container_id])?;
        let mut out = Vec::with_capacity(leases.len());
        for lease in leases {
            let (net, _) = self.by_id(&self.conn, &lease.network_id)?;
            out.push((net, lease));
        }
        out.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        Ok(out)
    }
}

fn in_use(net: &Network, ip: Ipv4Addr, holder: &str) -> NetError {
    NetError::Conflict(format!(
        "Address already in use: {ip} on network {} is leased to container {}",
        net.name,
        short(holder)
    ))
}

/// Docker's rules for --ip.
fn check_requested(net: &Network, user_subnet: bool, ip: Ipv4Addr) -> Result<(), NetError> {
    let name = &net.name;
    if !user_subnet {
        return Err(NetError::Invalid(format!(
            "user specified IP address is supported only when connecting to networks with user configured subnets (network {name})"
        )));
    }
    let subnet = &net.subnet;
    if !subnet.contains(ip) {
        return Err(NetError::Invalid(format!(
            "requested address {ip} is out of range: not in subnet {subnet} of network {name}"
        )));
    }
    let what = if ip == net.gateway {
        "the gateway"
    } else if ip == subnet.network() {
        "the network address"
    } else if ip == subnet.broadcast() {
        "the broadcast address"
    } else {
        return Ok(());
    };
    Err(NetError::Invalid(format!(
        "requested address {ip} is {what} of network {name} ({subnet})"
    )))
}

/// The lowest host address that is neither the gateway nor leased; `leased` is sorted by address.
fn lowest_free(net: &Network, leased: &[Lease]) -> Result<Ipv4Addr, NetError> {
    // Saturating: a stored /31 or /32 (never written by us) makes an empty range rather than an overflow.
    let first = u32::from(net.subnet.network()).saturating_add(1);
    let last = u32::from(net.subnet.broadcast()).saturating_sub(1);
    let gateway = u32::from(net.gateway);
    let mut taken = leased.iter().map(|l| u32::from(l.ip)).peekable();
    for candidate in first..=last {
        while taken.next_if(|t| *t < candidate).is_some() {}
        if candidate == gateway || taken.peek() == Some(&candidate) {
            continue;
        }
        return Ok(Ipv4Addr::from(candidate));
    }
    Err(NetError::Conflict(format!(
        "no available IPv4 addresses on this network's address pools: {} ({})",
        net.name, net.id
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_macs() {
        assert_eq!(mac_of(Ipv4Addr::new(172, 17, 0, 2)), "02:42:ac:11:00:02");
        assert_eq!(mac_of(Ipv4Addr::new(10, 1, 255, 254)), "02:42:0a:01:ff:fe");
    }
}
