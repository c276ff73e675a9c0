//! The short way between two containers on one network: a frame that leaves a container's veth addressed
//! to the MAC of another running container on the same network goes straight to that container's veth
//! (nftables' `fwd` in a netdev ingress chain on the host end) instead of through the bridge.
//!
//! Why: a bridged frame pays for the bridge and, wherever br_netfilter is loaded (docker's hosts, this
//! machine), for a trip through the IPv4 netfilter hooks and conntrack of the host's namespace. Turning
//! that off is a namespace-wide sysctl that other software (docker, kube-proxy) relies on, so berth leaves
//! it alone and takes its own traffic off the bridge instead. bench/network.sh measures both paths.
//!
//! The bridge still carries everything else: ARP, broadcast and multicast, traffic to the gateway, the host
//! and the outside, published ports and hairpin, so addressing, the DNS server and NAT are unchanged; and
//! a frame whose destination is not in the map (a neighbour not plugged yet) simply takes the bridge.
//! What is given up, as with any bridge bypass: container-to-container frames on one network no longer pass
//! the host's FORWARD hooks and do not show in `tcpdump -i <bridge>` (berth's own rules accept them anyway;
//! capture on the veths instead).
//!
//! Layout, in `table netdev berth` (nothing else of anyone's is read or changed):
//! - per network a map `l2-<net12>` (MAC : ifindex of the host end), the running containers on it;
//! - per container interface a base chain `in-<net12>-<host_if>` hooked at ingress of the host end, whose
//!   one rule is `fwd to ether daddr map @l2-<net12>`: a hit is forwarded, a miss falls through to the
//!   bridge. Networks are kept apart by the maps: a chain only looks in its own network's.
//!
//! The table goes when its last chain goes. Adding takes the network namespace's lock shared, removing
//! takes it exclusive (the same lock as `firewall`'s, see there).

use crate::command::{check_id, check_ifname};
use crate::firewall::{nft, read_named_table, short, NsLock};
use crate::link::{check_mac, Netns};
use crate::NetError;

const TABLE: &str = "netdev berth";

/// Puts the container interface whose host end is `host_if` (MAC `mac` on the container's side) on the
/// short way of network `network_id`. The veth must exist. Idempotent; replaces a stale entry for the
/// same MAC (left by a container whose monitor died).
pub fn plug(ns: &Netns, network_id: &str, host_if: &str, mac: &str) -> Result<(), NetError> {
    let (map, chain) = names(network_id, host_if)?;
    check_mac(mac)?;
    let mac = mac.to_ascii_lowercase();
    let mut s = format!("add table {TABLE}\n");
    s += &format!("add map {TABLE} {map} {{ type ether_addr : iface_index; }}\n");
    s += &format!(
        "add chain {TABLE} {chain} {{ type filter hook ingress device \"{host_if}\" priority filter; policy accept; }}\n"
    );
    s += &format!("flush chain {TABLE} {chain}\n");
    s += &format!("add rule {TABLE} {chain} fwd to ether daddr map @{map}\n");
    let element = format!("add element {TABLE} {map} {{ {mac} : \"{host_if}\" }}\n");
    {
        let _lock = NsLock::shared(ns)?;
        if nft(ns, &(s.clone() + &element)).is_ok() {
            return Ok(());
        }
    }
    // Most likely the MAC is still in the map with another interface's index (adding an element whose key
    // exists with other data fails): drop that one and try again, under the exclusive lock so that the look
    // and the change see the same map.
    let _lock = NsLock::exclusive(ns)?;
    if let Some(table) = read_named_table(ns, TABLE)? {
        if has_element(&table, &map, &mac) {
            s += &format!("delete element {TABLE} {map} {{ {mac} }}\n");
        }
    }
    nft(ns, &(s + &element))
}

/// Takes the interface whose host end is `host_if` off the short way of network `network_id`: its chain
/// and its MAC's entry go (also when the veth is already gone); the table goes when no chain is left.
/// Idempotent.
pub fn unplug(ns: &Netns, network_id: &str, host_if: &str, mac: &str) -> Result<(), NetError> {
    let (map, chain) = names(network_id, host_if)?;
    check_mac(mac)?;
    let mac = mac.to_ascii_lowercase();
    let _lock = NsLock::exclusive(ns)?;
    let Some(table) = read_named_table(ns, TABLE)? else {
        return Ok(());
    };
    let chains = chain_names(&table);
    let mut s = String::new();
    if chains.contains(&chain) {
        s += &format!("delete chain {TABLE} {chain}\n");
    }
    if has_element(&table, &map, &mac) {
        s += &format!("delete element {TABLE} {map} {{ {mac} }}\n");
    }
    if chains.iter().all(|c| *c == chain) {
        s = format!("delete table {TABLE}\n");
    }
    if s.is_empty() {
        return Ok(());
    }
    nft(ns, &s)
}

/// Removes network `network_id`'s map and whatever chains of it are left; the table goes when no chain is
/// left. Idempotent.
pub fn remove_network(ns: &Netns, network_id: &str) -> Result<(), NetError> {
    check_id("network", network_id)?;
    let map = map_name(network_id);
    let prefix = format!("in-{}-", short(network_id));
    let _lock = NsLock::exclusive(ns)?;
    let Some(table) = read_named_table(ns, TABLE)? else {
        return Ok(());
    };
    let chains = chain_names(&table);
    if chains.iter().all(|c| c.starts_with(&prefix)) {
        return nft(ns, &format!("delete table {TABLE}\n"));
    }
    let mut s = String::new();
    for c in chains.iter().filter(|c| c.starts_with(&prefix)) {
        s += &format!("delete chain {TABLE} {c}\n");
    }
    if map_names(&table).contains(&map) {
        s += &format!("delete map {TABLE} {map}\n");
    }
    if s.is_empty() {
        return Ok(());
    }
    nft(ns, &s)
}

fn map_name(network_id: &str) -> String {
    format!("l2-{}", short(network_id))
}

fn names(network_id: &str, host_if: &str) -> Result<(String, String), NetError> {
    check_id("network", network_id)?;
    check_ifname(host_if)?;
    Ok((
        map_name(network_id),
        format!("in-{}-{host_if}", short(network_id)),
    ))
}

fn objects<'a>(
    table: &'a serde_json::Value,
    kind: &'a str,
) -> impl Iterator<Item = &'a serde_json::Value> + 'a {
    table
        .get("nftables")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
        .filter_map(move |obj| obj.get(kind))
}

fn chain_names(table: &serde_json::Value) -> Vec<String> {
    objects(table, "chain")
        .filter_map(|c| c.get("name").and_then(|n| n.as_str()))
        .map(str::to_string)
        .collect()
}

fn map_names(table: &serde_json::Value) -> Vec<String> {
    objects(table, "map")
        .filter_map(|m| m.get("name").and_then(|n| n.as_str()))
        .map(str::to_string)
        .collect()
}

/// Whether map `map` has an element whose key is `mac` (lower case, as nft prints it).
fn has_element(table: &serde_json::Value, map: &str, mac: &str) -> bool {
    objects(table, "map")
        .filter(|m| m.get("name").and_then(|n| n.as_str()) == Some(map))
        .filter_map(|m| m.get("elem").and_then(|e| e.as_array()))
        .flatten()
        .any(|elem| {
            elem.get(0)
                .and_then(|k| k.as_str())
                .is_some_and(|k| k.eq_ignore_ascii_case(mac))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_they_reach_a_script() {
        assert!(names("n1; flush ruleset", "veth0").is_err());
        assert!(names("n1", "veth\"0").is_err());
        assert_eq!(
            names("0123456789abcdef", "vabc").unwrap(),
            (
                "l2-0123456789ab".to_string(),
                "in-0123456789ab-vabc".to_string()
            )
        );
    }

    #[test]
    fn elements_and_chains_are_read_from_nft_json() {
        let json: serde_json::Value = serde_json::from_str(
            r#"{"nftables": [{"metainfo": {}}, {"table": {"family": "netdev", "name": "berth"}},
               {"map": {"name": "l2-n1", "elem": [["02:42:0a:00:00:02", "vx"], ["02:42:0a:00:00:03", 17]]}},
               {"map": {"name": "l2-n2"}},
               {"chain": {"name": "in-n1-vx"}}, {"chain": {"name": "in-n1-vy"}}]}"#,
        )
        .unwrap();
        assert!(has_element(&json, "l2-n1", "02:42:0A:00:00:03"));
        assert!(!has_element(&json, "l2-n2", "02:42:0a:00:00:02"));
        assert_eq!(chain_names(&json), vec!["in-n1-vx", "in-n1-vy"]);
        assert_eq!(map_names(&json), vec!["l2-n1", "l2-n2"]);
    }
}
