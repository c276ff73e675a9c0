//! An IPv4 subnet in CIDR notation ("10.1.0.0/24"). Our own small type: the crate needs only parsing, printing,
//! containment and overlap, not a dependency.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::NetError;

/// An address and a prefix length. The address may have host bits set (as typed by a user: "10.1.0.5/24");
/// [`Ipv4Net::network`] is the masked one, and the store insists they are equal for a subnet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// `prefix` must be 0..=32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Ipv4Net, NetError> {
        if prefix > 32 {
            return Err(NetError::Invalid(format!(
                "invalid CIDR address: {addr}/{prefix}: the prefix length must be 0..=32"
            )));
        }
        Ok(Ipv4Net { addr, prefix })
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask as an integer (0 for /0: a shift by 32 would overflow).
    pub fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// The network address: the address with its host bits cleared.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The broadcast address: all host bits set.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// The same prefix with the host bits cleared.
    pub fn trunc(&self) -> Ipv4Net {
        Ipv4Net {
            addr: self.network(),
            prefix: self.prefix,
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// Whether the two share any address: for prefixes, one then contains the other's network address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Ipv4Net, NetError> {
        let bad = |why: &str| NetError::Invalid(format!("invalid CIDR address: {s}: {why}"));
        let (addr, prefix) = s.split_once('/').ok_or_else(|| bad("want a.b.c.d/n"))?;
        // A colon can only be IPv6: say so rather than "not an IPv4 address", the user's input may be right.
        if addr.contains(':') {
            return Err(NetError::Invalid(format!(
                "IPv6 subnet {s} is not supported yet (only IPv4)"
            )));
        }
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| bad("the address is not an IPv4 address"))?;
        // u8::from_str takes a leading '+', which CIDR notation does not.
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the prefix length is not a number"));
        }
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad("the prefix length must be 0..=32"))?;
        if prefix > 32 {
            return Err(bad("the prefix length must be 0..=32"));
        }
        Ok(Ipv4Net { addr, prefix })
    }
}

/// As a string, the way docker's inspect output shows a subnet.
impl Serialize for Ipv4Net {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ipv4Net, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect(s)
    }

    #[test]
    fn parse_and_display() {
        let n = net("10.1.0.5/24");
        assert_eq!(n.addr(), Ipv4Addr::new(10, 1, 0, 5));
        assert_eq!(n.prefix(), 24);
        assert_eq!(n.to_string(), "10.1.0.5/24");
        assert_eq!(n.trunc().to_string(), "10.1.0.0/24");
        assert_eq!(n.network(), Ipv4Addr::new(10, 1, 0, 0));
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 1, 0, 255));
        assert_eq!(net("0.0.0.0/0").broadcast(), Ipv4Addr::BROADCAST);
        assert_eq!(net("1.2.3.4/32").network(), Ipv4Addr::new(1, 2, 3, 4));
    }

    #[test]
    fn parse_errors() {
        for (s, want) in [
            ("10.1.0.0", "invalid CIDR address: 10.1.0.0: want a.b.c.d/n"),
            (
                "10.1.0/24",
                "invalid CIDR address: 10.1.0/24: the address is not an IPv4 address",
            ),
            (
                "10.1.0.0/33",
                "invalid CIDR address: 10.1.0.0/33: the prefix length must be 0..=32",
            ),
            (
                "10.1.0.0/+8",
                "invalid CIDR address: 10.1.0.0/+8: the prefix length is not a number",
            ),
            (
                "10.1.0.0/",
                "invalid CIDR address: 10.1.0.0/: the prefix length is not a number",
            ),
            (
                "fd00::/64",
                "IPv6 subnet fd00::/64 is not supported yet (only IPv4)",
            ),
        ] {
            let e = s.parse::<Ipv4Net>().expect_err(s);
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn contains_and_overlaps() {
        let a = net("10.1.0.0/16");
        assert!(a.contains(Ipv4Addr::new(10, 1, 255, 255)));
        assert!(!a.contains(Ipv4Addr::new(10, 2, 0, 0)));
        assert!(a.overlaps(&net("10.1.3.0/24")));
        assert!(net("10.1.3.0/24").overlaps(&a));
        assert!(net("10.0.0.0/8").overlaps(&a));
        assert!(!a.overlaps(&net("10.2.0.0/16")));
    }

    #[test]
    fn serde_as_string() {
        let n = net("172.17.0.0/16");
        let j = serde_json::to_string(&n).expect("serialize");
        assert_eq!(j, "\"172.17.0.0/16\"");
        assert_eq!(serde_json::from_str::<Ipv4Net>(&j).expect("deserialize"), n);
        assert!(serde_json::from_str::<Ipv4Net>("\"nope\"").is_err());
    }
}
