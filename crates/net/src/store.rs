//! The records of networks, IP address leases and published host ports, in SQLite (`<root>/networks.db`, WAL),
//! with docker's rules and error texts.
//!
//! Several berth commands may run at once: every read-modify-write (create a network, hand out an address or a
//! port) is one `BEGIN IMMEDIATE` transaction, so the check and the insert see the same state and two processes
//! never get the same address or port. UNIQUE constraints are the backstop.
//!
//! - this file: opening, networks (create, the default "bridge", lookup, remove);
//! - `leases`: addresses of containers on networks;
//! - `ports`: published host ports.

mod leases;
mod ports;
mod util;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, ErrorCode, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::{Ipv4Net, NetError};

pub use leases::{mac_of, Lease, Released};
pub use ports::{PortBinding, PortRequest, Proto, EPHEMERAL_FIRST, EPHEMERAL_LAST};

/// Docker's default network: its name, and our name for its bridge (docker's is "docker0").
pub const DEFAULT_NETWORK: &str = "bridge";
pub const DEFAULT_BRIDGE: &str = "berth0";

/// Names docker keeps for its predefined networks.
const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CreateNetwork {
    pub name: String,
    /// CIDR, "10.1.0.0/24"; None: the first free one of docker's default pools.
    pub subnet: Option<String>,
    /// None: the subnet's first host address.
    pub gateway: Option<String>,
    /// No route out (docker's --internal).
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    /// Only "bridge"; empty means "bridge" (docker's default driver).
    pub driver: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Network {
    /// 64 random hex digits.
    pub id: String,
    pub name: String,
    pub driver: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    /// The Linux bridge: "berth0" for the default network, else "br-" and the id's first 12 digits.
    pub bridge: String,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    /// RFC 3339, UTC.
    pub created: String,
}

/// Subnets and gateways are stored as text (they are read whole, and the overlap checks are done in Rust);
/// lease and port addresses as integers, so that SQLite orders them numerically.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS networks (
    id          TEXT NOT NULL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    driver      TEXT NOT NULL,
    subnet      TEXT NOT NULL,                 -- a.b.c.d/n, the network address
    user_subnet INTEGER NOT NULL,              -- 1 if the user chose the subnet (docker's rule for --ip)
    gateway     TEXT NOT NULL,
    bridge      TEXT NOT NULL UNIQUE,
    internal    INTEGER NOT NULL,
    labels      TEXT NOT NULL,                 -- JSON object
    created     TEXT NOT NULL                  -- RFC 3339
);
CREATE TABLE IF NOT EXISTS leases (
    network_id   TEXT NOT NULL,
    container_id TEXT NOT NULL,
    ip           INTEGER NOT NULL,             -- the IPv4 address as u32
    mac          TEXT NOT NULL,
    names        TEXT NOT NULL,                -- JSON array: container name and aliases
    PRIMARY KEY (network_id, container_id),
    UNIQUE (network_id, ip)
);
CREATE INDEX IF NOT EXISTS leases_container ON leases(container_id);
CREATE TABLE IF NOT EXISTS ports (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,  -- reservation order: ports_of() keeps the user's order
    container_id   TEXT NOT NULL,
    proto          TEXT NOT NULL,                      -- tcp or udp
    host_ip        INTEGER NOT NULL,                   -- u32; 0 = 0.0.0.0, every address
    host_port      INTEGER NOT NULL,
    container_port INTEGER NOT NULL,
    UNIQUE (proto, host_ip, host_port)
);
CREATE INDEX IF NOT EXISTS ports_container ON ports(container_id);
CREATE TABLE IF NOT EXISTS attached (              -- containers whose interfaces are up now (running)
    container_id   TEXT NOT NULL PRIMARY KEY
);
";

const NET_COLS: &str =
    "id, name, driver, subnet, gateway, bridge, internal, labels, created, user_subnet";

/// A network row as stored, before its subnet, gateway and labels are parsed.
struct RawNetwork {
    id: String,
    name: String,
    driver: String,
    subnet: String,
    gateway: String,
    bridge: String,
    internal: bool,
    labels: String,
    created: String,
    user_subnet: bool,
}

fn raw_network(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawNetwork> {
    Ok(RawNetwork {
        id: r.get(0)?,
        name: r.get(1)?,
        driver: r.get(2)?,
        subnet: r.get(3)?,
        gateway: r.get(4)?,
        bridge: r.get(5)?,
        internal: r.get(6)?,
        labels: r.get(7)?,
        created: r.get(8)?,
        user_subnet: r.get(9)?,
    })
}

/// Docker's default address pools, in the order it takes them: 172.17-31.0.0/16, then 192.168.0-240.0/20.
fn default_pools() -> impl Iterator<Item = Ipv4Net> {
    let big = (17..=31).map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16));
    let small = (0..16).map(|i| Ipv4Net::new(Ipv4Addr::new(192, 168, i * 16, 0), 20));
    // Prefixes 16 and 20 are valid: new() cannot fail here.
    big.chain(small).filter_map(Result::ok)
}

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn valid_name(name: &str) -> bool {
    let mut b = name.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A user's subnet: IPv4, prefix 8..=30 (smaller has no room for a gateway and a container), and written as
/// its network address, as docker insists.
fn parse_subnet(s: &str) -> Result<Ipv4Net, NetError> {
    let net: Ipv4Net = s.parse()?;
    if !(8..=30).contains(&net.prefix()) {
        return Err(NetError::Invalid(format!(
            "invalid subnet {net}: the prefix length must be between 8 and 30"
        )));
    }
    if net.addr() != net.network() {
        return Err(NetError::Invalid(format!(
            "invalid subnet {net}: it should be {}",
            net.trunc()
        )));
    }
    Ok(net)
}

fn parse_gateway(s: &str, subnet: &Ipv4Net) -> Result<Ipv4Addr, NetError> {
    let gw: Ipv4Addr = s
        .parse()
        .map_err(|_| NetError::Invalid(format!("invalid gateway {s}: not an IPv4 address")))?;
    if !subnet.contains(gw) {
        return Err(NetError::Invalid(format!(
            "no matching subnet for gateway {gw} (subnet {subnet})"
        )));
    }
    if gw == subnet.network() || gw == subnet.broadcast() {
        let what = if gw == subnet.network() {
            "network"
        } else {
            "broadcast"
        };
        return Err(NetError::Invalid(format!(
            "invalid gateway {gw}: it is the {what} address of subnet {subnet}"
        )));
    }
    Ok(gw)
}

/// Which UNIQUE column a constraint failure is about ("networks.name", ...), if it is one.
fn unique_violation(e: &rusqlite::Error) -> Option<&str> {
    match e {
        rusqlite::Error::SqliteFailure(f, Some(msg))
            if f.code == ErrorCode::ConstraintViolation =>
        {
            msg.strip_prefix("UNIQUE constraint failed: ")
        }
        _ => None,
    }
}

/// A network to insert, validated.
struct NewNetwork<'a> {
    name: &'a str,
    /// None: the first free default pool.
    subnet: Option<Ipv4Net>,
    gateway: Option<Ipv4Addr>,
    internal: bool,
    labels: &'a BTreeMap<String, String>,
    /// None: "br-" and the id's first 12 digits.
    bridge: Option<&'a str>,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating it and its schema if needed) the database at `path`, usually `<root>/networks.db`.
    pub fn open(path: &Path) -> Result<Store, NetError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| NetError::Io {
                what: format!("creating {}", dir.display()),
                source,
            })?;
        }
        let err = |source| NetError::Db {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(err)?;
        // Several first opens at once: switching to WAL can fail with SQLITE_BUSY without going through the busy
        // handler, so that part is retried here (for as long as the busy timeout).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match Self::setup(&mut conn) {
                Ok(()) => break,
                Err(e)
                    if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(err(e)),
            }
        }
        Ok(Store {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn setup(conn: &mut Connection) -> rusqlite::Result<()> {
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            conn.pragma_update(None, "journal_mode", "WAL")?;
        }
        // NORMAL in WAL mode: a commit is atomic and survives any process being killed; a power loss can take
        // back the last commits, and then the kernel state (bridges, rules) is gone with the reboot too.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // IMMEDIATE: concurrent first opens queue up instead of failing on a stale snapshot.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(SCHEMA)?;
        tx.commit()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A write transaction that takes the write lock up front (two processes that read first and then upgrade
    /// would deadlock). Unchecked because the store's methods take `&self`; none of them nests transactions.
    fn begin(&self) -> Result<Transaction<'_>, NetError> {
        Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(|e| self.db(e))
    }

    fn db(&self, source: rusqlite::Error) -> NetError {
        NetError::Db {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, what: String) -> NetError {
        NetError::Corrupt {
            path: self.path.clone(),
            what,
        }
    }

    fn network_from(&self, raw: RawNetwork) -> Result<Network, NetError> {
        let id = &raw.id;
        let subnet = raw
            .subnet
            .parse()
            .map_err(|e| self.corrupt(format!("network {id}: subnet: {e}")))?;
        let gateway = raw
            .gateway
            .parse()
            .map_err(|_| self.corrupt(format!("network {id}: bad gateway {:?}", raw.gateway)))?;
        let labels = serde_json::from_str(&raw.labels)
            .map_err(|e| self.corrupt(format!("network {id}: labels: {e}")))?;
        Ok(Network {
            id: raw.id,
            name: raw.name,
            driver: raw.driver,
            subnet,
            gateway,
            bridge: raw.bridge,
            internal: raw.internal,
            labels,
            created: raw.created,
        })
    }

    /// Networks matching `cond` (an SQL condition on the networks table), by name, each with whether the user
    /// chose its subnet.
    fn query_networks(
        &self,
        conn: &Connection,
        cond: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<(Network, bool)>, NetError> {
        let sql = format!("SELECT {NET_COLS} FROM networks WHERE {cond} ORDER BY name");
        let mut st = conn.prepare(&sql).map_err(|e| self.db(e))?;
        let rows = st
            .query_map(args, raw_network)
            .map_err(|e| self.db(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.db(e))?;
        rows.into_iter()
            .map(|r| {
                let user_subnet = r.user_subnet;
                Ok((self.network_from(r)?, user_subnet))
            })
            .collect()
    }

    /// Docker's lookup order: full id, exact name, then a unique id prefix.
    fn find(&self, conn: &Connection, name_or_id: &str) -> Result<(Network, bool), NetError> {
        if name_or_id.is_empty() {
            return Err(NetError::NotFound(String::new()));
        }
        for cond in ["id = ?1", "name = ?1"] {
            if let Some(found) = self.query_networks(conn, cond, &[&name_or_id])?.pop() {
                return Ok(found);
            }
        }
        // instr() rather than LIKE: the user's text needs no escaping.
        let mut found = self.query_networks(conn, "instr(id, ?1) = 1", &[&name_or_id])?;
        match found.len() {
            0 => Err(NetError::NotFound(name_or_id.to_string())),
            1 => Ok(found.remove(0)),
            count => Err(NetError::Ambiguous {
                prefix: name_or_id.to_string(),
                count,
            }),
        }
    }

    /// The network with exactly this id, for the lease and port operations (which callers make with ids they
    /// got from us).
    fn by_id(&self, conn: &Connection, id: &str) -> Result<(Network, bool), NetError> {
        self.query_networks(conn, "id = ?1", &[&id])?
            .pop()
            .ok_or_else(|| NetError::NotFound(id.to_string()))
    }

    /// A network by exact name, full id or unique id prefix.
    pub fn get(&self, name_or_id: &str) -> Result<Network, NetError> {
        self.find(&self.conn, name_or_id).map(|(n, _)| n)
    }

    /// All networks, sorted by name.
    pub fn list(&self) -> Result<Vec<Network>, NetError> {
        Ok(self
            .query_networks(&self.conn, "1", &[])?
            .into_iter()
            .map(|(n, _)| n)
            .collect())
    }

    /// Creates a user-defined network (docker network create).
    pub fn create(&self, req: &CreateNetwork) -> Result<Network, NetError> {
        let name = req.name.as_str();
        if !valid_name(name) {
            return Err(NetError::Invalid(format!(
                "invalid network name {name:?}, only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        if PREDEFINED.contains(&name) {
            return Err(NetError::Invalid(format!(
                "operation is not permitted on predefined {name} network"
            )));
        }
        if !(req.driver.is_empty() || req.driver == "bridge") {
            return Err(NetError::Invalid(format!(
                "network {name}: driver {:?} is not supported (only bridge)",
                req.driver
            )));
        }
        let subnet = req.subnet.as_deref().map(parse_subnet).transpose()?;
        let gateway = match (&req.gateway, &subnet) {
            (None, _) => None,
            (Some(g), Some(s)) => Some(parse_gateway(g, s)?),
            // Docker's text: a gateway belongs to a subnet the user gave.
            (Some(g), None) => {
                return Err(NetError::Invalid(format!(
                    "every ip-range or gateway must have a corresponding subnet (gateway {g})"
                )))
            }
        };
        let tx = self.begin()?;
        let net = self.insert_network(
            &tx,
            &NewNetwork {
                name,
                subnet,
                gateway,
                internal: req.internal,
                labels: &req.labels,
                bridge: None,
            },
        )?;
        tx.commit().map_err(|e| self.db(e))?;
        Ok(net)
    }

    /// The default network "bridge" (bridge "berth0"), created on first use: 172.17.0.0/16 unless a
    /// user-defined network already overlaps it, then the next free default pool.
    pub fn ensure_default(&self) -> Result<Network, NetError> {
        // Reading first is enough for the common case; the transaction below decides a race.
        if let Some((n, _)) = self
            .query_networks(&self.conn, "name = ?1", &[&DEFAULT_NETWORK])?
            .pop()
        {
            return Ok(n);
        }
        let tx = self.begin()?;
        if let Some((n, _)) = self
            .query_networks(&tx, "name = ?1", &[&DEFAULT_NETWORK])?
            .pop()
        {
            return Ok(n);
        }
        let net = self.insert_network(
            &tx,
            &NewNetwork {
                name: DEFAULT_NETWORK,
                subnet: None,
                gateway: None,
                internal: false,
                labels: &BTreeMap::new(),
                bridge: Some(DEFAULT_BRIDGE),
            },
        )?;
        tx.commit().map_err(|e| self.db(e))?;
        Ok(net)
    }

    /// Checks the name and the subnet against the other networks and inserts, inside the caller's transaction.
    fn insert_network(
        &self,
        tx: &Transaction<'_>,
        new: &NewNetwork<'_>,
    ) -> Result<Network, NetError> {
        if !self
            .query_networks(tx, "name = ?1", &[&new.name])?
            .is_empty()
        {
            return Err(NetError::Exists(new.name.to_string()));
        }
        let others = self.query_networks(tx, "1", &[])?;
        let subnet = match new.subnet {
            Some(s) => {
                if let Some((o, _)) = others.iter().find(|(o, _)| o.subnet.overlaps(&s)) {
                    return Err(NetError::Conflict(format!(
                        "invalid pool request: Pool overlaps with other one on this address space: {s} overlaps {} of network {}",
                        o.subnet, o.name
                    )));
                }
                s
            }
            None => default_pools()
                .find(|p| others.iter().all(|(o, _)| !o.subnet.overlaps(p)))
                .ok_or_else(|| {
                    NetError::Conflict(format!(
                        "network {}: could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network",
                        new.name
                    ))
                })?,
        };
        // The first host address; every subnet here is /30 or larger, so it is not the broadcast address.
        let gateway = new
            .gateway
            .unwrap_or_else(|| Ipv4Addr::from(u32::from(subnet.network()) + 1));
        let labels = serde_json::to_string(new.labels)
            .map_err(|e| NetError::Invalid(format!("network {}: labels: {e}", new.name)))?;
        let created = util::now_rfc3339();
        // A new id on the (astronomically unlikely) collision of an id or of its 12-digit bridge name.
        for _ in 0..10 {
            let id = util::random_id()?;
            let bridge = match new.bridge {
                Some(b) => b.to_string(),
                None => format!("br-{}", &id[..12]),
            };
            let res = tx.execute(
                &format!("INSERT INTO networks ({NET_COLS}) VALUES (?1, ?2, 'bridge', ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                params![
                    id,
                    new.name,
                    subnet.to_string(),
                    gateway.to_string(),
                    bridge,
                    new.internal,
                    labels,
                    created,
                    new.subnet.is_some()
                ],
            );
            match res {
                Ok(_) => {
                    return Ok(Network {
                        id,
                        name: new.name.to_string(),
                        driver: "bridge".to_string(),
                        subnet,
                        gateway,
                        bridge,
                        internal: new.internal,
                        labels: new.labels.clone(),
                        created,
                    })
                }
                Err(e) => match unique_violation(&e) {
                    Some("networks.name") => return Err(NetError::Exists(new.name.to_string())),
                    Some("networks.bridge") if new.bridge.is_some() => {
                        return Err(NetError::Conflict(format!(
                            "network {}: bridge {bridge} is already used by another network",
                            new.name
                        )))
                    }
                    Some("networks.id" | "networks.bridge") => continue,
                    _ => return Err(self.db(e)),
                },
            }
        }
        Err(NetError::Conflict(format!(
            "network {}: could not generate an unused network id",
            new.name
        )))
    }

    /// Removes a network's record (docker network rm), refused while containers have addresses on it. Only the
    /// record: the caller takes down the bridge and the rules.
    pub fn remove(&self, name_or_id: &str) -> Result<Network, NetError> {
        let tx = self.begin()?;
        let (net, _) = self.find(&tx, name_or_id)?;
        if net.name == DEFAULT_NETWORK {
            return Err(NetError::InUse(format!(
                "{DEFAULT_NETWORK} is a pre-defined network and cannot be removed"
            )));
        }
        let leases: i64 = tx
            .query_row(
                "SELECT count(*) FROM leases WHERE network_id = ?1",
                [&net.id],
                |r| r.get(0),
            )
            .map_err(|e| self.db(e))?;
        if leases > 0 {
            return Err(NetError::InUse(format!(
                "error while removing network: network {} id {} has active endpoints",
                net.name, net.id
            )));
        }
        tx.execute("DELETE FROM networks WHERE id = ?1", [&net.id])
            .map_err(|e| self.db(e))?;
        tx.commit().map_err(|e| self.db(e))?;
        Ok(net)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "A1", "my-net", "my_net.2", "0"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", ".a", "_a", "a b", "a/b", "é", "a:b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn pools_in_docker_order() {
        let pools: Vec<String> = default_pools().map(|p| p.to_string()).collect();
        assert_eq!(pools.len(), 15 + 16);
        assert_eq!(pools[0], "172.17.0.0/16");
        assert_eq!(pools[14], "172.31.0.0/16");
        assert_eq!(pools[15], "192.168.0.0/20");
        assert_eq!(pools[16], "192.168.16.0/20");
        assert_eq!(pools[30], "192.168.240.0/20");
    }
}
