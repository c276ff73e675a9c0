//! Networks for berth's containers (DESIGN.md's `net` layer; knows nothing of images or the engine).
//!
//! - `store`: the networks and their IP address leases and published host ports, in SQLite
//!   (`<root>/networks.db`), so no address or port is handed out twice, also across concurrent `berth run`s
//!   and after a crash.
//! - `link`: bridges, veth pairs, addresses and routes (in the host's network namespace or a given one).
//! - `firewall`: NAT, isolation and published ports through nftables, in berth's own table only.
//! - `fastpath`: frames between containers on one network go veth to veth, past the bridge.

mod command;
pub mod dns;
pub mod error;
pub mod fastpath;
pub mod firewall;
pub mod ipv4net;
pub mod link;
pub mod store;

pub use error::NetError;
pub use firewall::{FwNetwork, PortRule};
pub use ipv4net::Ipv4Net;
pub use link::{Endpoint, Netns};
pub use store::{CreateNetwork, Lease, Network, PortBinding, PortRequest, Proto, Released, Store};
