//! Client addresses: CIDR sets, and the client's address as seen through trusted proxies.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use crate::ConfigError;
use crate::http::Request;

/// A set of address ranges, from CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet {
    nets: Vec<IpNet>,
}

impl CidrSet {
    /// Parses each entry; the error names the entry's index (`[2]`).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, ConfigError> {
        let mut nets = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            nets.push(
                parse_one(entry.as_ref())
                    .map_err(|reason| ConfigError::new(format!("[{i}]"), reason))?,
            );
        }
        Ok(CidrSet { nets })
    }

    /// A comma-separated list, as ingress-nginx's annotations hold them.
    pub fn parse_list(list: &str) -> Result<Self, ConfigError> {
        let entries: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        Self::parse(&entries)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }
}

fn parse_one(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    if let Ok(net) = entry.parse::<IpNet>() {
        // `10.1.2.3/8` is accepted as `10.0.0.0/8`, as nginx and Kubernetes accept it.
        return Ok(net.trunc());
    }
    entry.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        format!("{entry:?} is not an IP address or CIDR (like 10.0.0.0/8 or 2001:db8::/32)")
    })
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, as a dual-stack socket reports IPv4 peers)
/// are matched as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

impl<'de> Deserialize<'de> for CidrSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(deserializer)?;
        CidrSet::parse(&entries).map_err(|e| {
            let entry = e.field.trim_start_matches('[').trim_end_matches(']');
            serde::de::Error::custom(format!("entry {entry}: {}", e.reason))
        })
    }
}

/// How to find the client's address: the connection's peer, unless that peer is a trusted proxy,
/// in which case `X-Forwarded-For` is read from the right, skipping trusted proxies, as nginx's
/// `real_ip_recursive` does. A client can put anything in `X-Forwarded-For`, so only the hops
/// added by trusted proxies are believed.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientAddress {
    /// Proxies (load balancers) in front of Gantry whose `X-Forwarded-For` is believed.
    #[serde(default)]
    pub trusted_proxies: CidrSet,
}

impl ClientAddress {
    pub fn of(&self, request: &Request) -> Option<IpAddr> {
        let peer = canonical(request.peer_address()?);
        if !self.trusted_proxies.contains(peer) {
            return Some(peer);
        }
        let forwarded = request.header("x-forwarded-for").unwrap_or_default();
        Some(self.through(peer, &forwarded))
    }

    /// The client behind `peer`, given the `X-Forwarded-For` it sent.
    pub fn through(&self, peer: IpAddr, forwarded_for: &str) -> IpAddr {
        let mut client = peer;
        for hop in forwarded_for.rsplit(',') {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                // A hop that is not an address ends what can be believed.
                break;
            };
            client = canonical(ip);
            if !self.trusted_proxies.contains(client) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_of_both_families_and_single_addresses() {
        let set = CidrSet::parse(&["10.0.0.0/8", "2001:db8::/32", "192.168.1.7"]).unwrap();
        assert!(set.contains(ip("10.200.3.4")));
        assert!(!set.contains(ip("11.0.0.1")));
        assert!(set.contains(ip("2001:db8:1::5")));
        assert!(!set.contains(ip("2001:db9::1")));
        assert!(set.contains(ip("192.168.1.7")));
        assert!(!set.contains(ip("192.168.1.8")));
        assert!(
            set.contains(ip("::ffff:10.1.1.1")),
            "IPv4-mapped IPv6 is IPv4"
        );
    }

    #[test]
    fn bad_entries_are_named_by_index() {
        let error = CidrSet::parse(&["10.0.0.0/8", "10.0.0.0/33"]).unwrap_err();
        assert_eq!(error.field, "[1]");
        assert!(error.reason.contains("10.0.0.0/33"), "{error}");
        assert!(CidrSet::parse_list("10.0.0.0/8, 192.168.0.0/16 ,::1").is_ok());
        assert_eq!(
            CidrSet::parse_list("10.0.0.0/8, nope").unwrap_err().field,
            "[1]"
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let client = ClientAddress {
            trusted_proxies: CidrSet::parse(&["10.0.0.0/8"]).unwrap(),
        };
        // The load balancer 10.0.0.2 saw 203.0.113.9, which claimed to be 1.2.3.4.
        assert_eq!(
            client.through(ip("10.0.0.2"), "1.2.3.4, 203.0.113.9"),
            ip("203.0.113.9")
        );
        // Two trusted hops.
        assert_eq!(
            client.through(ip("10.0.0.2"), "198.51.100.1, 10.9.9.9"),
            ip("198.51.100.1")
        );
        // Only trusted hops: the leftmost one.
        assert_eq!(client.through(ip("10.0.0.2"), "10.1.1.1"), ip("10.1.1.1"));
        // Nothing forwarded: the peer.
        assert_eq!(client.through(ip("10.0.0.2"), ""), ip("10.0.0.2"));
        // Garbage stops the walk at the last believable hop.
        assert_eq!(
            client.through(ip("10.0.0.2"), "1.2.3.4, junk, 10.3.3.3"),
            ip("10.3.3.3")
        );
    }
}
