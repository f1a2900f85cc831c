//! The deploy ramdisk's DHCPv4 client (RFC 2131 §3.1, §4.4.1): DISCOVER, the first OFFER,
//! REQUEST of it, ACK. Just enough for the agent to reach seed from the boot NIC for the few
//! minutes a deploy takes: no renewal (seed reserves a known node's address; an unknown
//! machine's discovery lease outlives an inspection), no INIT-REBOOT.
//!
//! It uses the kernel's UDP socket, not a packet socket: bound to the interface
//! (`SO_BINDTODEVICE`), Linux sends a limited broadcast from 0.0.0.0 on an interface with no
//! address, and delivers the server's broadcast reply (measured in a network namespace; udhcpc
//! and dhclient use packet sockets for the kernels where this was not so). The broadcast flag
//! (RFC 2131 §4.1) asks the server to broadcast, since the kernel would drop a unicast to an
//! address the interface does not have yet.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

use crate::net::MacAddr;

/// What the server leased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The address.
    pub address: Ipv4Addr,
    /// Its prefix length (option 1; /24 when the server sends none).
    pub prefix: u8,
    /// The first router (option 3), when the server is not on the link.
    pub router: Option<Ipv4Addr>,
    /// The server that leased it (option 54).
    pub server: Ipv4Addr,
    /// Lease time in seconds (option 51).
    pub lease_secs: u32,
}

/// Why no lease was had.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    /// The socket could not be opened or bound.
    #[error("DHCP on {interface}: {source}")]
    Socket {
        /// The interface.
        interface: String,
        /// Why.
        source: std::io::Error,
    },
    /// No server answered in time.
    #[error("DHCP on {interface}: no {wanted} within {secs} s ({sent} requests sent)")]
    NoAnswer {
        /// The interface.
        interface: String,
        /// OFFER or ACK.
        wanted: &'static str,
        /// How long it tried.
        secs: u64,
        /// How many DISCOVERs or REQUESTs went out.
        sent: u32,
    },
    /// The server refused the address it offered (NAK) every time.
    #[error("DHCP on {interface}: the server refused ({why})")]
    Refused {
        /// The interface.
        interface: String,
        /// Its option 56, printable.
        why: String,
    },
}

const CLIENT_PORT: u16 = 68;
const SERVER_PORT: u16 = 67;

/// Leases an address for `mac` on `interface`, trying for at most `within`. The interface must
/// be up. Retransmits at 1, 2, 4, … s (RFC 2131 §4.1 asks for 4 s doubling, randomised; a
/// ramdisk on a quiet provisioning network is better served by trying sooner).
pub fn lease(interface: &str, mac: MacAddr, within: Duration) -> Result<Lease, DhcpError> {
    let socket_error = |source| DhcpError::Socket {
        interface: interface.to_string(),
        source,
    };
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .map_err(socket_error)?;
    socket.set_broadcast(true).map_err(socket_error)?;
    socket.set_reuse_address(true).map_err(socket_error)?;
    socket
        .bind_device(Some(interface.as_bytes()))
        .map_err(socket_error)?;
    socket
        .bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT).into())
        .map_err(socket_error)?;
    let socket = std::net::UdpSocket::from(socket);
    let deadline = Instant::now() + within;
    let mut refused = None;
    // A NAK (the offer was taken meanwhile) starts over, a few times.
    for _ in 0..4 {
        let xid = xid(mac);
        let (offer, _) = exchange(
            &socket,
            interface,
            deadline,
            "OFFER",
            &request(mac, xid, MessageType::Discover, None),
            |m| m.xid() == xid && m.opts().msg_type() == Some(MessageType::Offer),
        )?;
        let Some(server) = server_id(&offer) else {
            continue;
        };
        let offered = offer.yiaddr();
        let (answer, _) = exchange(
            &socket,
            interface,
            deadline,
            "ACK",
            &request(mac, xid, MessageType::Request, Some((offered, server))),
            |m| {
                m.xid() == xid
                    && matches!(
                        m.opts().msg_type(),
                        Some(MessageType::Ack | MessageType::Nak)
                    )
                    && server_id(m) == Some(server)
            },
        )?;
        if answer.opts().msg_type() == Some(MessageType::Nak) {
            refused = Some(match answer.opts().get(OptionCode::Message) {
                Some(DhcpOption::Message(m)) => crate::net::printable(m),
                _ => "no reason given".into(),
            });
            continue;
        }
        return Ok(lease_of(&answer, server));
    }
    Err(DhcpError::Refused {
        interface: interface.to_string(),
        why: refused.unwrap_or_else(|| "no server identifier in its offers".into()),
    })
}

/// Sends `packet` until an answer `wanted` accepts arrives, resending at 1, 2, 4, 8 s.
fn exchange(
    socket: &std::net::UdpSocket,
    interface: &str,
    deadline: Instant,
    wanted: &'static str,
    packet: &[u8],
    accept: impl Fn(&Message) -> bool,
) -> Result<(Message, SocketAddrV4), DhcpError> {
    let started = Instant::now();
    let mut wait = Duration::from_secs(1);
    let mut sent = 0u32;
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        socket
            .send_to(packet, SocketAddrV4::new(Ipv4Addr::BROADCAST, SERVER_PORT))
            .map_err(|source| DhcpError::Socket {
                interface: interface.to_string(),
                source,
            })?;
        sent += 1;
        let resend = (Instant::now() + wait).min(deadline);
        while let Some(left) = resend.checked_duration_since(Instant::now())
            && !left.is_zero()
        {
            let _ = socket.set_read_timeout(Some(left));
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                break;
            };
            let std::net::SocketAddr::V4(from) = from else {
                continue;
            };
            // Other clients' answers, other servers' and anything undecodable are skipped.
            if let Ok(msg) = Message::decode(&mut Decoder::new(&buf[..n]))
                && msg.opcode() == Opcode::BootReply
                && accept(&msg)
            {
                return Ok((msg, from));
            }
        }
        wait = (wait * 2).min(Duration::from_secs(8));
    }
    Err(DhcpError::NoAnswer {
        interface: interface.to_string(),
        wanted,
        secs: started.elapsed().as_secs(),
        sent,
    })
}

fn server_id(msg: &Message) -> Option<Ipv4Addr> {
    match msg.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    }
}

fn lease_of(ack: &Message, server: Ipv4Addr) -> Lease {
    let opts = ack.opts();
    let prefix = match opts.get(OptionCode::SubnetMask) {
        Some(DhcpOption::SubnetMask(mask)) => {
            let bits = u32::from(*mask);
            // A mask that is not contiguous ones is taken as far as it is.
            u8::try_from(bits.leading_ones()).unwrap_or(24)
        }
        _ => 24,
    };
    let router = match opts.get(OptionCode::Router) {
        Some(DhcpOption::Router(routers)) => routers.first().copied(),
        _ => None,
    };
    let lease_secs = match opts.get(OptionCode::AddressLeaseTime) {
        Some(DhcpOption::AddressLeaseTime(secs)) => *secs,
        _ => 0,
    };
    Lease {
        address: ack.yiaddr(),
        prefix,
        router,
        server,
        lease_secs,
    }
}

/// A DISCOVER, or a REQUEST of `(offered, server)` (RFC 2131 §4.3.2: SELECTING state, option 50
/// and 54, ciaddr zero).
fn request(
    mac: MacAddr,
    xid: u32,
    kind: MessageType,
    selected: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Vec<u8> {
    // hlen is taken from chaddr's length: 6, an Ethernet address (seed drops anything else).
    let mut msg = Message::new_with_id(
        xid,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac.0,
    );
    msg.set_opcode(Opcode::BootRequest)
        .set_flags(Flags::default().set_broadcast());
    let opts = msg.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    // RFC 4361-style identity is not needed: seed knows nodes by chaddr.
    opts.insert(DhcpOption::ClassIdentifier(b"seed-agent".to_vec()));
    opts.insert(DhcpOption::ParameterRequestList(vec![
        OptionCode::SubnetMask,
        OptionCode::Router,
        OptionCode::ServerIdentifier,
        OptionCode::AddressLeaseTime,
    ]));
    if let Some((offered, server)) = selected {
        opts.insert(DhcpOption::RequestedIpAddress(offered));
        opts.insert(DhcpOption::ServerIdentifier(server));
    }
    let mut buf = Vec::with_capacity(300);
    // Encoding a message built here from fixed parts does not fail.
    let _ = msg.encode(&mut Encoder::new(&mut buf));
    buf
}

/// A transaction id, different for two agents booting at once so neither takes the other's
/// answers: the MAC and the clock, mixed (splitmix64). Not from getrandom(2) or std's hasher
/// keys: before the kernel's random pool is seeded both block, and in a ramdisk on a virtual
/// machine without an RNG device that took minutes (measured in the lab: the DISCOVER never
/// left). An xid only has to differ, not to be secret.
fn xid(mac: MacAddr) -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let mut x = u64::from_be_bytes([
        0, 0, mac.0[0], mac.0[1], mac.0[2], mac.0[3], mac.0[4], mac.0[5],
    ]);
    // The low 64 bits of the clock; truncation is the point.
    #[allow(clippy::cast_possible_truncation)]
    let nanos = nanos as u64;
    x ^= nanos.rotate_left(24);
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    #[allow(clippy::cast_possible_truncation)]
    let xid = x as u32;
    xid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_the_offer_and_asks_for_a_broadcast_answer() {
        let mac: MacAddr = "52:54:00:5e:ed:02".parse().unwrap();
        let bytes = request(
            mac,
            7,
            MessageType::Request,
            Some((Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 1))),
        );
        let msg = Message::decode(&mut Decoder::new(&bytes)).unwrap();
        assert_eq!(msg.xid(), 7);
        assert!(msg.flags().broadcast());
        assert_eq!(
            msg.hlen(),
            6,
            "an Ethernet address; seed drops other lengths"
        );
        assert_eq!(&msg.chaddr()[..6], &mac.0);
        assert_eq!(msg.opts().msg_type(), Some(MessageType::Request));
        assert_eq!(
            msg.opts().get(OptionCode::RequestedIpAddress),
            Some(&DhcpOption::RequestedIpAddress(Ipv4Addr::new(10, 0, 0, 5)))
        );
        assert_eq!(server_id(&msg), Some(Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn the_lease_takes_mask_router_and_time_from_the_ack() {
        let mut ack = Message::default();
        ack.set_yiaddr(Ipv4Addr::new(10, 1, 0, 21));
        ack.opts_mut()
            .insert(DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 252, 0)));
        ack.opts_mut()
            .insert(DhcpOption::Router(vec![Ipv4Addr::new(10, 1, 0, 254)]));
        ack.opts_mut().insert(DhcpOption::AddressLeaseTime(3600));
        let lease = lease_of(&ack, Ipv4Addr::new(10, 9, 0, 1));
        assert_eq!(lease.prefix, 22);
        assert_eq!(lease.router, Some(Ipv4Addr::new(10, 1, 0, 254)));
        assert_eq!(lease.lease_secs, 3600);
        assert_eq!(lease.address, Ipv4Addr::new(10, 1, 0, 21));
    }
}
