//! The address plan: every node's address in every zone, derived from its BMC address.
//!
//! A node's *suffix* is the last octet of its BMC's IPv4 address; its address in a zone is the
//! zone's network address plus the suffix (BMC 10.1.0.23 → management 10.1.10.23, api
//! 10.1.20.23, …), the convention of OSISM's `network.yml` (`{{ node_suffix }}`). No address is
//! typed by hand, so the only ways to get one wrong are the collisions [`check`] looks for.
//!
//! Pure code: config in, plan or conflicts out.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::config::model::{Config, Node, Zone};
use crate::net::{Ipv4Net, MacAddr};

/// The last octet of a BMC address.
pub fn node_suffix(bmc: Ipv4Addr) -> u8 {
    bmc.octets()[3]
}

/// The address with host offset `suffix` in `subnet`, or `None` when the subnet is too small to
/// hold it (a /28 has no room for .200).
pub fn address(subnet: &Ipv4Net, suffix: u8) -> Option<Ipv4Addr> {
    subnet.nth(u32::from(suffix))
}

/// The derived plan of a whole config.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// One entry per node, in config order.
    pub nodes: Vec<NodePlan>,
}

/// One node's place in every zone it joins.
#[derive(Debug, Clone, Serialize)]
pub struct NodePlan {
    /// Node name.
    pub name: String,
    /// Role name.
    pub role: String,
    /// BMC address.
    pub bmc: Ipv4Addr,
    /// Last octet of the BMC address.
    pub suffix: u8,
    /// Boot NIC MACs.
    pub macs: Vec<MacAddr>,
    /// The zones it joins, in config order.
    pub zones: Vec<Attachment>,
}

/// A node's interface in one zone.
#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    /// Zone name.
    pub zone: String,
    /// VLAN id.
    pub vlan: u16,
    /// Link the zone rides on.
    pub link: String,
    /// Interface name on the node (`bond0` when native, else `bond0.20`).
    pub interface: String,
    /// Untagged on the link.
    pub native: bool,
    /// MTU.
    pub mtu: u16,
    /// The node's address; `None` in zones without host addresses (external/provider).
    pub address: Option<Ipv4Addr>,
    /// Prefix length of the zone's subnet.
    pub prefix: u8,
    /// The zone's gateway.
    pub gateway: Option<Ipv4Addr>,
}

impl NodePlan {
    /// The node's attachment to `zone`.
    pub fn zone(&self, zone: &str) -> Option<&Attachment> {
        self.zones.iter().find(|a| a.zone == zone)
    }
}

impl Plan {
    /// The plan of node `name`.
    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// Derive the plan of a config. Addresses that do not fit their zone are left out; [`check`]
/// reports them.
pub fn derive(config: &Config) -> Plan {
    let nodes = config
        .nodes
        .iter()
        .map(|node| derive_node(config, node))
        .collect();
    Plan { nodes }
}

fn derive_node(config: &Config, node: &Node) -> NodePlan {
    let suffix = node_suffix(node.bmc.address);
    let zones = config
        .zones_of(node)
        .map(|zone| Attachment {
            zone: zone.name.clone(),
            vlan: zone.vlan,
            link: zone.link.clone(),
            interface: zone.interface(),
            native: zone.native,
            mtu: zone.mtu,
            address: zone
                .host_addresses
                .then(|| address(&zone.subnet, suffix))
                .flatten(),
            prefix: zone.subnet.prefix(),
            gateway: zone.gateway,
        })
        .collect();
    NodePlan {
        name: node.name.clone(),
        role: node.role.clone(),
        bmc: node.bmc.address,
        suffix,
        macs: node.macs.clone(),
        zones,
    }
}

/// A problem with the derived addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// What the problem is about.
    pub subject: Subject,
    /// The config field, relative to the subject (`bmc.address`, `discovery_pool`).
    pub field: &'static str,
    /// What is wrong, naming every node involved.
    pub message: String,
}

/// Where a conflict is reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A node, by name.
    Node(String),
    /// A zone, by name.
    Zone(String),
}

/// Every address conflict in the plan, all at once: duplicate suffixes, suffixes that do not fit
/// a zone or hit its network, broadcast or gateway address or seed's own address, and discovery
/// pools that contain a derived address.
pub fn check(config: &Config) -> Vec<Conflict> {
    let mut conflicts = Vec::new();
    // Suffixes clash only where two nodes share a zone with host addresses: racks of a routed
    // site each number their nodes from 1 in their own subnets.
    let mut by_suffix: HashMap<(&str, u8), &Node> = HashMap::new();
    for node in &config.nodes {
        let suffix = node_suffix(node.bmc.address);
        let conflict = |message: String| Conflict {
            subject: Subject::Node(node.name.clone()),
            field: "bmc.address",
            message,
        };
        let zones: Vec<&Zone> = config.zones_of(node).filter(|z| z.host_addresses).collect();
        if let Some((zone, first)) = zones.iter().find_map(|z| {
            by_suffix
                .get(&(z.name.as_str(), suffix))
                .map(|first| (z, *first))
        }) {
            conflicts.push(conflict(format!(
                "suffix {suffix} (BMC {}) is already node {}'s (BMC {}): both would get {} in zone {}",
                node.bmc.address,
                first.name,
                first.bmc.address,
                address(&zone.subnet, suffix).map_or_else(|| "one address".into(), |a| a.to_string()),
                zone.name
            )));
            continue;
        }
        for zone in zones {
            by_suffix.insert((zone.name.as_str(), suffix), node);
            if let Some(message) = suffix_problem(config, zone, suffix) {
                conflicts.push(conflict(format!("suffix {suffix} {message}")));
            }
        }
    }
    for zone in &config.zones {
        let Some(pool) = zone.discovery_pool else {
            continue;
        };
        for node in config.nodes.iter().filter(|n| {
            config.zones_of(n).any(|z| z.name == zone.name)
                && address(&zone.subnet, node_suffix(n.bmc.address))
                    .is_some_and(|a| pool.contains(a))
        }) {
            conflicts.push(Conflict {
                subject: Subject::Zone(zone.name.clone()),
                field: "discovery_pool",
                message: format!(
                    "pool {}-{} contains node {}'s address {}",
                    pool.start,
                    pool.end,
                    node.name,
                    address(&zone.subnet, node_suffix(node.bmc.address))
                        .map_or_else(String::new, |a| a.to_string())
                ),
            });
        }
    }
    conflicts
}

/// Why `suffix` cannot be a host address in `zone`, if it cannot.
fn suffix_problem(config: &Config, zone: &Zone, suffix: u8) -> Option<String> {
    let net = &zone.subnet;
    let Some(addr) = address(net, suffix) else {
        return Some(format!(
            "does not fit in zone {} ({net} holds host offsets 1-{})",
            zone.name,
            net.hostmask().saturating_sub(1)
        ));
    };
    if addr == net.network() {
        Some(format!(
            "gives {addr}, the network address of zone {} ({net})",
            zone.name
        ))
    } else if addr == net.broadcast() {
        Some(format!(
            "gives {addr}, the broadcast address of zone {} ({net})",
            zone.name
        ))
    } else if Some(addr) == zone.gateway {
        Some(format!("gives {addr}, the gateway of zone {}", zone.name))
    } else if addr == config.seed.address {
        Some(format!(
            "gives {addr}, seed's own address in zone {}",
            zone.name
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn suffix_is_the_last_octet() {
        assert_eq!(node_suffix(Ipv4Addr::new(10, 1, 0, 23)), 23);
        let mgmt: Ipv4Net = "10.1.10.0/24".parse().unwrap();
        assert_eq!(address(&mgmt, 23), Some(Ipv4Addr::new(10, 1, 10, 23)));
    }

    #[test]
    fn small_prefix_cannot_hold_a_large_suffix() {
        let small: Ipv4Net = "10.1.10.0/28".parse().unwrap();
        assert_eq!(address(&small, 14), Some(Ipv4Addr::new(10, 1, 10, 14)));
        assert_eq!(address(&small, 200), None);
    }

    #[test]
    fn a_wider_prefix_keeps_the_suffix_in_the_last_octet() {
        let wide: Ipv4Net = "10.1.8.0/22".parse().unwrap();
        assert_eq!(address(&wide, 23), Some(Ipv4Addr::new(10, 1, 8, 23)));
    }

    proptest! {
        /// The derived address is inside the zone, and for prefixes of /24 and wider its last
        /// octet is the suffix, so an operator can read a node's BMC from any of its addresses.
        #[test]
        fn derived_address_is_in_the_zone(a in any::<u8>(), b in any::<u8>(), c in any::<u8>(),
                                           prefix in 8u8..=30, suffix in any::<u8>()) {
            let raw = u32::from(Ipv4Addr::new(a, b, c, 0));
            let mask = u32::MAX << (32 - prefix);
            let net = Ipv4Net::new(Ipv4Addr::from(raw & mask), prefix).unwrap();
            match address(&net, suffix) {
                Some(addr) => {
                    prop_assert!(net.contains(addr));
                    prop_assert_eq!(u32::from(addr) - u32::from(net.network()), u32::from(suffix));
                    if prefix <= 24 {
                        prop_assert_eq!(addr.octets()[3], suffix);
                    }
                }
                None => prop_assert!(u32::from(suffix) > net.hostmask()),
            }
        }

        /// Two different suffixes never give the same address in the same zone.
        #[test]
        fn distinct_suffixes_give_distinct_addresses(prefix in 8u8..=30, s1 in any::<u8>(), s2 in any::<u8>()) {
            prop_assume!(s1 != s2);
            let net = Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), prefix).unwrap();
            if let (Some(x), Some(y)) = (address(&net, s1), address(&net, s2)) {
                prop_assert_ne!(x, y);
            }
        }
    }
}
