//! Where and when seed saw a node boot, so that HTTP can tell the node from a stranger who only
//! knows its MAC: which address asked for the install script, and whether a new network boot
//! happened since the installer was last served.
//!
//! The DHCP side writes (every iPXE DISCOVER of a known node is a boot; in proxyDHCP mode a
//! node's REQUEST names the address the site's server gives it: option 50 of the broadcast
//! REQUEST, RFC 2131 4.3.2, or ciaddr of the PXE REQUEST on port 4011); the HTTP side reads.
//! Only configured nodes are remembered, so the maps are bounded by the config.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::net::MacAddr;

/// What the DHCP server saw of configured nodes since seed started.
#[derive(Debug, Default)]
pub struct Sightings {
    /// Whether seed's own DHCP server runs (it does unless `--no-dhcp`): without it there are
    /// no boots to count and every served installer counts as an attempt.
    dhcp_runs: bool,
    /// Network boots (iPXE DISCOVERs) per node.
    boots: HashMap<String, u64>,
    /// The boot whose installer serving was last counted, per node.
    counted: HashMap<String, u64>,
    /// proxyDHCP: the address each node's MAC last asked for or said it has.
    proxied: HashMap<MacAddr, Ipv4Addr>,
}

impl Sightings {
    /// seed's DHCP server runs in this process.
    pub fn dhcp_started(&mut self) {
        self.dhcp_runs = true;
    }

    /// Node `node` started a network boot (its iPXE asked DHCP).
    pub fn booted(&mut self, node: &str) {
        *self.boots.entry(node.to_string()).or_default() += 1;
    }

    /// proxyDHCP: `mac` (a configured node's) says it has `address`.
    pub fn proxied(&mut self, mac: MacAddr, address: Ipv4Addr) {
        if !address.is_unspecified() {
            self.proxied.insert(mac, address);
        }
    }

    /// The address a proxyDHCP exchange established for `mac`.
    pub fn proxied_address(&self, mac: MacAddr) -> Option<Ipv4Addr> {
        self.proxied.get(&mac).copied()
    }

    /// Would serving `node`'s installer now be a new attempt? It is when the node network-booted
    /// since the last counted serving (or when seed runs no DHCP and cannot see boots). Another
    /// fetch in the same boot (a script retried, a second iPXE in a chain) is not.
    pub fn is_new_attempt(&self, node: &str) -> bool {
        if !self.dhcp_runs {
            return true;
        }
        let boot = self.boots.get(node).copied().unwrap_or(0);
        self.counted.get(node) != Some(&boot)
    }

    /// `node`'s installer was served as a new attempt in its current boot.
    pub fn attempt_counted(&mut self, node: &str) {
        let boot = self.boots.get(node).copied().unwrap_or(0);
        self.counted.insert(node.to_string(), boot);
    }
}

/// The address a request came from, as IPv4 when it is one (an IPv4-mapped IPv6 address from a
/// dual-stack listener included).
pub fn requester_v4(peer: IpAddr) -> Option<Ipv4Addr> {
    match peer.to_canonical() {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_serving_counts_once_per_boot_when_dhcp_runs() {
        let mut s = Sightings::default();
        let serve = |s: &mut Sightings| {
            let new = s.is_new_attempt("cmp1");
            s.attempt_counted("cmp1");
            new
        };
        // Without DHCP every serving counts.
        assert!(serve(&mut s));
        assert!(serve(&mut s));
        s.dhcp_started();
        s.booted("cmp1");
        assert!(serve(&mut s));
        assert!(!serve(&mut s), "the same boot again");
        s.booted("cmp1");
        assert!(serve(&mut s), "a new boot");
        // Another node's boots do not count for this one.
        s.booted("cmp2");
        assert!(!serve(&mut s));
    }

    #[test]
    fn mapped_addresses_are_ipv4() {
        let mapped: IpAddr = "::ffff:10.0.0.5".parse().unwrap();
        assert_eq!(requester_v4(mapped), Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(requester_v4("::1".parse().unwrap()), None);
    }
}
