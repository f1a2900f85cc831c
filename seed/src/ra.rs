//! IPv6 router advertisements without a prefix ("ra-only") on the provisioning interface.
//!
//! iPXE waits about 16 s per DHCP stage for IPv6 autoconfiguration when no router advertises
//! anything on the segment (measured on these machines). One RA, even one that offers no prefix
//! and no default route, ends the wait. seed sends one periodically and in answer to every
//! router solicitation; its router lifetime is 0, so no host takes seed for a default router
//! (RFC 4861 section 4.2), and it carries no prefix, so nobody autoconfigures an address.

use std::io::{self, Read};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::net::MacAddr;

/// ICMPv6 router solicitation.
const ROUTER_SOLICITATION: u8 = 133;
/// ICMPv6 router advertisement.
const ROUTER_ADVERTISEMENT: u8 = 134;
/// Unsolicited RAs this often; solicited ones at once.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// A router advertisement: no flags, router lifetime 0, no prefix; the source link-layer
/// address option when the interface's MAC is known. The kernel fills in the checksum.
pub fn advertisement(mac: Option<MacAddr>) -> Vec<u8> {
    let mut ra = vec![
        ROUTER_ADVERTISEMENT,
        0, // code
        0,
        0,  // checksum (kernel)
        64, // current hop limit suggested to hosts
        0,  // M and O flags off: no DHCPv6
        0,
        0, // router lifetime 0: not a default router
        0,
        0,
        0,
        0, // reachable time: unspecified
        0,
        0,
        0,
        0, // retrans timer: unspecified
    ];
    if let Some(mac) = mac {
        // Option 1, source link-layer address, length 1 (8 bytes).
        ra.extend([1, 1]);
        ra.extend(mac.0);
    }
    ra
}

/// An ICMPv6 socket on `interface` for sending RAs to all nodes and hearing solicitations.
pub fn bind(interface: &str) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    socket.bind_device(Some(interface.as_bytes()))?;
    // RFC 4861 6.1.2: hosts drop an RA whose hop limit is not 255.
    socket.set_multicast_hops_v6(255)?;
    socket.set_unicast_hops_v6(255)?;
    // Wake up regularly to send the unsolicited RA and to notice `stop`.
    socket.set_read_timeout(Some(Duration::from_millis(500)))?;
    Ok(socket)
}

/// Send RAs on `socket` (from [`bind`]) for interface `ifindex` until `stop` is set. Blocking:
/// run it on a thread of its own.
pub fn run(socket: &Socket, ifindex: u32, mac: Option<MacAddr>, stop: &AtomicBool) {
    let all_nodes = SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), 0, 0, ifindex);
    let ra = advertisement(mac);
    let mut buf = [0u8; 1500];
    let mut last: Option<Instant> = None;
    tracing::info!(
        ifindex,
        "sending IPv6 router advertisements (no prefix, lifetime 0)"
    );
    while !stop.load(Ordering::Relaxed) {
        // A raw ICMPv6 socket delivers the ICMPv6 message without the IPv6 header.
        let solicited =
            matches!((&*socket).read(&mut buf), Ok(n) if n > 0 && buf[0] == ROUTER_SOLICITATION);
        let due = last.is_none_or(|t| t.elapsed() >= INTERVAL);
        if !(solicited || due) {
            continue;
        }
        match socket.send_to(&ra, &all_nodes.into()) {
            Ok(_) => {
                last = Some(Instant::now());
                tracing::trace!(solicited, "router advertisement sent");
            }
            // The link-local address is still tentative (DAD) right after the link comes up.
            Err(e) => tracing::debug!(error = %e, "cannot send router advertisement yet"),
        }
    }
}

/// The interface's index and MAC.
pub fn interface_info(interface: &str) -> io::Result<(u32, Option<MacAddr>)> {
    let index = nix::net::if_::if_nametoindex(interface).map_err(io::Error::from)?;
    let mac = nix::ifaddrs::getifaddrs()
        .map_err(io::Error::from)?
        .filter(|a| a.interface_name == interface)
        .find_map(|a| {
            a.address
                .and_then(|s| s.as_link_addr().and_then(|l| l.addr()))
                .map(MacAddr)
        });
    Ok((index, mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertisement_offers_no_prefix_and_no_default_route() {
        let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        let ra = advertisement(Some(mac));
        assert_eq!(ra[0], ROUTER_ADVERTISEMENT);
        assert_eq!(&ra[6..8], &[0, 0], "router lifetime 0");
        assert_eq!(ra[5], 0, "no M/O flags");
        assert_eq!(
            ra.len(),
            16 + 8,
            "header and source link-layer address only: no prefix"
        );
        assert_eq!(&ra[16..18], &[1, 1]);
        assert_eq!(&ra[18..], &mac.0);
    }
}
