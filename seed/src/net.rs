//! Small network value types: IPv4 subnets and MAC addresses, and text from the network made fit
//! for a terminal ([`printable`]).
//!
//! Both parse strictly and say exactly what is wrong, because they come from an operator's
//! config file and a typo here ends up as a node that never boots.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::Serialize;

/// An IPv4 subnet in CIDR form whose host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    network: Ipv4Addr,
    prefix: u8,
}

/// Why a subnet or MAC did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not `a.b.c.d/n`.
    #[error("`{0}` is not a subnet in CIDR notation (like 10.1.10.0/24)")]
    NotCidr(String),
    /// Prefix length above 32.
    #[error("prefix length /{0} is longer than 32")]
    PrefixTooLong(u8),
    /// Address with host bits set, e.g. 10.1.10.5/24.
    #[error("`{given}` has host bits set; the subnet is {network}")]
    HostBitsSet {
        /// What was written.
        given: String,
        /// What was probably meant.
        network: Ipv4Net,
    },
    /// Not six hex octets.
    #[error("`{0}` is not a MAC address (six hex octets separated by `:` or `-`)")]
    NotMac(String),
}

impl Ipv4Net {
    /// A subnet from its network address and prefix length.
    pub fn new(network: Ipv4Addr, prefix: u8) -> Result<Self, ParseError> {
        if prefix > 32 {
            return Err(ParseError::PrefixTooLong(prefix));
        }
        let net = Self { network, prefix };
        let masked = Ipv4Addr::from(u32::from(network) & net.mask_bits());
        if masked != network {
            return Err(ParseError::HostBitsSet {
                given: format!("{network}/{prefix}"),
                network: Self {
                    network: masked,
                    prefix,
                },
            });
        }
        Ok(net)
    }

    fn mask_bits(&self) -> u32 {
        // checked_shl: a /0 mask is 0, and `u32 << 32` would overflow.
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// The network address (all host bits zero).
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask, e.g. 255.255.255.0 for a /24.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask_bits())
    }

    /// The largest host offset inside the subnet (255 for a /24): the broadcast address's offset.
    pub fn hostmask(&self) -> u32 {
        !self.mask_bits()
    }

    /// The broadcast address (all host bits one).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | self.hostmask())
    }

    /// Whether `addr` is inside the subnet (network and broadcast included).
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask_bits() == u32::from(self.network)
    }

    /// Whether two subnets share any address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }

    /// The address at `offset` from the network address, if it is inside the subnet.
    pub fn nth(&self, offset: u32) -> Option<Ipv4Addr> {
        (offset <= self.hostmask()).then(|| Ipv4Addr::from(u32::from(self.network) + offset))
    }
}

impl FromStr for Ipv4Net {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let not_cidr = || ParseError::NotCidr(s.to_string());
        let (addr, prefix) = s.trim().split_once('/').ok_or_else(not_cidr)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| not_cidr())?;
        let prefix: u8 = prefix.parse().map_err(|_| not_cidr())?;
        Self::new(addr, prefix)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An Ethernet MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The octets joined by `-`, as iPXE's `${mac:hexhyp}` and the `BOOTIF=01-…` kernel argument write it.
    pub fn hexhyp(&self) -> String {
        self.0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join("-")
    }

    /// A MAC as a BMC writes it (`3C:EC:EF:10:00:21`, `3c-ec-ef-10-00-21`, `3cec.ef10.0021`):
    /// twelve hex digits between any of `:`, `-` and `.`. `None` for anything else, and for
    /// the all-zero and group addresses some BMCs report for ports without a MAC (a disabled
    /// LOM, an unconfigured virtual function): no NIC of the node answers DHCP with those.
    pub fn from_reported(s: &str) -> Option<Self> {
        let digits: Vec<u8> = s
            .bytes()
            .filter(|b| !matches!(b, b':' | b'-' | b'.'))
            .collect();
        if digits.len() != 12 || !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let mut octets = [0u8; 6];
        for (octet, pair) in octets.iter_mut().zip(digits.chunks(2)) {
            *octet = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        (octets != [0; 6] && octets[0] & 1 == 0).then_some(Self(octets))
    }
}

impl FromStr for MacAddr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let not_mac = || ParseError::NotMac(s.to_string());
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut octets = [0u8; 6];
        let mut parts = s.split(sep);
        for octet in &mut octets {
            let part = parts.next().ok_or_else(not_mac)?;
            if part.len() != 2 {
                return Err(not_mac());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| not_mac())?;
        }
        if parts.next().is_some() {
            return Err(not_mac());
        }
        Ok(Self(octets))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnet_parses_and_reports_host_bits() {
        let net: Ipv4Net = "10.1.10.0/24".parse().unwrap();
        assert_eq!(net.broadcast(), Ipv4Addr::new(10, 1, 10, 255));
        assert_eq!(net.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(net.contains(Ipv4Addr::new(10, 1, 10, 200)));
        assert!(!net.contains(Ipv4Addr::new(10, 1, 11, 1)));
        let err = "10.1.10.5/24".parse::<Ipv4Net>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "`10.1.10.5/24` has host bits set; the subnet is 10.1.10.0/24"
        );
        assert!("10.1.10.0".parse::<Ipv4Net>().is_err());
        assert!("10.1.10.0/33".parse::<Ipv4Net>().is_err());
        let all: Ipv4Net = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(203, 0, 113, 1)));
        let small: Ipv4Net = "10.1.10.16/28".parse().unwrap();
        assert_eq!(small.nth(15), Some(Ipv4Addr::new(10, 1, 10, 31)));
        assert_eq!(small.nth(16), None);
    }

    #[test]
    fn overlapping_subnets() {
        let a: Ipv4Net = "10.1.0.0/16".parse().unwrap();
        let b: Ipv4Net = "10.1.40.0/24".parse().unwrap();
        let c: Ipv4Net = "10.2.0.0/24".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
    }

    #[test]
    fn mac_parses_both_separators() {
        let mac: MacAddr = "52:54:00:AB:cd:01".parse().unwrap();
        // As BMCs write them (iDRAC upper case, iLO lower, Cisco-style dots).
        for reported in ["52:54:00:AB:CD:01", "52-54-00-ab-cd-01", "5254.00ab.cd01"] {
            assert_eq!(MacAddr::from_reported(reported), Some(mac), "{reported}");
        }
        for junk in [
            "00:00:00:00:00:00",
            "01:00:5e:00:00:01",
            "52:54:00:ab:cd",
            "",
            "zz:54:00:ab:cd:01",
        ] {
            assert_eq!(MacAddr::from_reported(junk), None, "{junk}");
        }
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:01");
        assert_eq!(mac.hexhyp(), "52-54-00-ab-cd-01");
        assert_eq!("52-54-00-ab-cd-01".parse::<MacAddr>().unwrap(), mac);
        for bad in [
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:01:02",
            "5254.00ab.cd01",
            "52:54:00:ab:cd:g1",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}

/// Text that came from the network (DHCP options, iPXE's query, installer events, BMC messages)
/// fit for a terminal: control characters (escape sequences, BEL, CR/LF, C1's CSI among them)
/// and the bidirectional overrides that reorder what is shown appear escaped, never acted on.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod printable_tests {
    #[test]
    fn terminal_escapes_from_the_network_are_shown_escaped() {
        assert_eq!(
            super::printable("ok\u{1b}[2Jgone\r\n\u{7}\u{9b}31m\u{202e}x"),
            "ok\\u{1b}[2Jgone\\r\\n\\u{7}\\u{9b}31m\\u{202e}x"
        );
        assert_eq!(
            super::printable("PXEClient:Arch:00007"),
            "PXEClient:Arch:00007"
        );
    }
}
