//! DHCP packets: parsing what clients send and building what seed answers. No decisions here.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use dhcproto::v4::relay::{RelayCode, RelayInfo};
use dhcproto::v4::{
    DhcpOption, Flags, HType, Message, MessageType, Opcode, OptionCode, UnknownOption,
};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

use crate::net::MacAddr;
use crate::provision::{Boot, BootClient, DhcpRequest, Offer};

/// The client port (RFC 2131 section 4.1).
pub const CLIENT_PORT: u16 = 68;
/// The server (and relay) port.
pub const SERVER_PORT: u16 = 67;

/// iPXE's encapsulated options (option 175); sub-option 176 = 1 is "no-pxedhcp": do not wait
/// for a proxyDHCP offer (saves about 3 s per iPXE DHCP).
const IPXE_ENCAP: u8 = 175;
const IPXE_NO_PXEDHCP: [u8; 3] = [176, 1, 1];

/// What a request says, distilled for the decision module and the state machine.
#[derive(Debug, Clone)]
pub struct Facts {
    /// DHCP message type.
    pub kind: MessageType,
    /// The client, as the decision module sees it (including the address it asks for).
    pub request: DhcpRequest,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
}

/// The client's Ethernet address from the fixed BOOTP header (htype 1, hlen 6, chaddr at byte
/// 28; RFC 2131 section 2), without decoding the rest: the rate limit asks this first.
pub fn hardware_address(bytes: &[u8]) -> Option<MacAddr> {
    if bytes.get(1..3)? != [1, 6] {
        return None;
    }
    Some(MacAddr(bytes.get(28..34)?.try_into().ok()?))
}

/// Decode a packet; the error says why not.
pub fn parse(bytes: &[u8]) -> Result<Message, String> {
    // 236 bytes of BOOTP header plus the 4-byte magic cookie.
    if bytes.len() < 240 {
        return Err(format!(
            "{} bytes is shorter than a DHCP header",
            bytes.len()
        ));
    }
    check_options(&bytes[240..])?;
    Message::decode(&mut Decoder::new(bytes)).map_err(|e| e.to_string())
}

/// Walk the options area (RFC 2132 section 2): every option's length must fit in the packet.
/// dhcproto stops quietly at an option that overruns and keeps the ones before it; a packet cut
/// short is refused here instead, with the option that ran over named.
fn check_options(mut opts: &[u8]) -> Result<(), String> {
    while let Some((&code, rest)) = opts.split_first() {
        match code {
            0 => opts = rest,
            255 => return Ok(()),
            _ => {
                let Some((&len, rest)) = rest.split_first() else {
                    return Err(format!("option {code} has no length byte"));
                };
                let len = usize::from(len);
                if len > rest.len() {
                    return Err(format!(
                        "option {code} claims {len} bytes but only {} remain",
                        rest.len()
                    ));
                }
                opts = &rest[len..];
            }
        }
    }
    Ok(())
}

/// The facts of a client request, or `None` if it is not one seed can answer.
pub fn request_facts(msg: &Message) -> Option<Facts> {
    if msg.opcode() != Opcode::BootRequest || msg.htype() != HType::Eth || msg.hlen() != 6 {
        return None;
    }
    let kind = msg.opts().msg_type()?;
    let chaddr = msg.chaddr();
    let mac = MacAddr(chaddr.get(..6)?.try_into().ok()?);
    let opts = msg.opts();
    let arch = match opts.get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) => Some(u16::from(*a)),
        _ => None,
    };
    let vendor_class = match opts.get(OptionCode::ClassIdentifier) {
        Some(DhcpOption::ClassIdentifier(c)) => Some(String::from_utf8_lossy(c).into_owned()),
        _ => None,
    };
    let user_class_ipxe = matches!(
        opts.get(OptionCode::UserClass),
        Some(DhcpOption::UserClass(c)) if c.windows(4).any(|w| w == b"iPXE")
    );
    let ipxe_encap = opts.get(OptionCode::Unknown(IPXE_ENCAP)).is_some();
    let requested = match opts.get(OptionCode::RequestedIpAddress) {
        Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
        _ => None,
    };
    let server_id = match opts.get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
        _ => None,
    };
    // The subnet to serve: option 82's link-selection (RFC 3527) when a relay names one (its
    // giaddr may be on another subnet than the client), else giaddr.
    let link_selection = match opts.get(OptionCode::RelayAgentInformation) {
        Some(DhcpOption::RelayAgentInformation(info)) => match info.get(RelayCode::LinkSelection) {
            Some(RelayInfo::LinkSelection(ip)) => Some(*ip),
            _ => None,
        },
        _ => None,
    };
    let relay =
        link_selection.or_else(|| (msg.giaddr() != Ipv4Addr::UNSPECIFIED).then_some(msg.giaddr()));
    Some(Facts {
        kind,
        request: DhcpRequest {
            client: BootClient {
                mac,
                arch,
                vendor_class,
                ipxe: user_class_ipxe || ipxe_encap,
            },
            relay,
            requested: requested
                .or_else(|| (msg.ciaddr() != Ipv4Addr::UNSPECIFIED).then_some(msg.ciaddr())),
        },
        server_id,
    })
}

fn base(req: &Message, kind: MessageType, server: Ipv4Addr) -> Message {
    let mut reply = Message::new_with_id(
        req.xid(),
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        req.giaddr(),
        req.chaddr(),
    );
    reply.set_opcode(Opcode::BootReply).set_flags(req.flags());
    let opts = reply.opts_mut();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(server));
    // RFC 3046: a relay's option 82 is echoed back unchanged.
    if let Some(relay) = req.opts().get(OptionCode::RelayAgentInformation) {
        opts.insert(relay.clone());
    }
    reply
}

/// An OFFER or ACK carrying `offer`.
pub fn reply(req: &Message, kind: MessageType, offer: &Offer) -> Message {
    let mut reply = base(req, kind, offer.server);
    reply.set_yiaddr(offer.address);
    let opts = reply.opts_mut();
    opts.insert(DhcpOption::AddressLeaseTime(offer.lease_secs));
    // T1/T2 at the RFC 2131 defaults (0.5 and 0.875 of the lease).
    opts.insert(DhcpOption::Renewal(offer.lease_secs / 2));
    opts.insert(DhcpOption::Rebinding(offer.lease_secs / 8 * 7));
    add_zone_options(&mut reply, offer);
    if let Some(boot) = &offer.boot {
        add_boot(&mut reply, boot);
    }
    reply
}

/// Option 43 for PXE clients: discovery control (sub-option 6) = 8, "boot from the file in
/// this offer, skip boot server discovery", then the end mark.
const PXE_BOOT_FILE_IN_OFFER: [u8; 4] = [6, 1, 8, 255];

/// A proxyDHCP OFFER (port 67) or ACK (port 4011): no address, only boot information, as PXE
/// specification 2.1 and pixiecore do it: option 60 `PXEClient`, option 43 with PXE discovery
/// control (sub-option 6) = 8, "boot from the file in this offer, skip boot server discovery",
/// and the client's machine identifier (option 97) echoed, which some ROMs insist on.
pub fn proxy(req: &Message, kind: MessageType, boot: &Boot, server: Ipv4Addr) -> Message {
    let mut reply = base(req, kind, server);
    add_boot(&mut reply, boot);
    if reply.siaddr() == Ipv4Addr::UNSPECIFIED {
        reply.set_siaddr(server);
    }
    let opts = reply.opts_mut();
    if !matches!(boot, Boot::Http { .. }) {
        opts.insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
    }
    opts.insert(DhcpOption::VendorExtensions(
        PXE_BOOT_FILE_IN_OFFER.to_vec(),
    ));
    if let Some(guid) = req.opts().get(OptionCode::ClientMachineIdentifier) {
        opts.insert(guid.clone());
    }
    reply
}

/// The ACK to a DHCPINFORM: the zone's options, no address and no lease time (RFC 2131 4.3.5).
pub fn inform_ack(req: &Message, offer: &Offer) -> Message {
    let mut reply = base(req, MessageType::Ack, offer.server);
    reply.set_ciaddr(req.ciaddr());
    add_zone_options(&mut reply, offer);
    reply
}

/// A NAK (RFC 2131 table 3: only the server identifier and a message).
pub fn nak(req: &Message, server: Ipv4Addr) -> Message {
    let mut reply = base(req, MessageType::Nak, server);
    // A NAK through a relay must be broadcast by the relay (RFC 2131 4.3.2).
    if req.giaddr() != Ipv4Addr::UNSPECIFIED {
        reply.set_flags(Flags::default().set_broadcast());
    }
    reply
        .opts_mut()
        .insert(DhcpOption::Message("requested address is not yours".into()));
    reply
}

fn add_zone_options(reply: &mut Message, offer: &Offer) {
    let opts = reply.opts_mut();
    opts.insert(DhcpOption::SubnetMask(offer.netmask));
    if let Some(router) = offer.router {
        opts.insert(DhcpOption::Router(vec![router]));
    }
    if !offer.dns.is_empty() {
        opts.insert(DhcpOption::DomainNameServer(offer.dns.clone()));
    }
    if !offer.ntp.is_empty() {
        opts.insert(DhcpOption::NtpServers(offer.ntp.clone()));
    }
}

fn add_boot(reply: &mut Message, boot: &Boot) {
    match boot {
        Boot::Tftp { server, file } => {
            // seed's own address: always IPv4 here (config's `seed.address`).
            let next_server = match server {
                IpAddr::V4(v4) => *v4,
                IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
            };
            // UEFI PXE uses siaddr and ignores option 66: a wrong siaddr fails with PXE-E18.
            reply.set_siaddr(next_server).set_fname_str(file);
            let opts = reply.opts_mut();
            opts.insert(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
            opts.insert(DhcpOption::TFTPServerName(
                next_server.to_string().into_bytes(),
            ));
            opts.insert(DhcpOption::BootfileName(file.clone().into_bytes()));
            // PXE discovery control (PXE 2.1, option 43 sub-option 6) = 8: boot the file in
            // this offer. Without it EDK2 (OVMF and real UEFI NIC firmware) files an offer
            // with `PXEClient` as "BINL", asks a boot server on port 4011 and, with nobody
            // there, fails with PXE-E16 "No valid offer received" (seen with OVMF in the lab).
            opts.insert(DhcpOption::VendorExtensions(
                PXE_BOOT_FILE_IN_OFFER.to_vec(),
            ));
        }
        Boot::Http { url } => {
            // UEFI HTTP boot only takes an offer that echoes HTTPClient.
            reply.set_fname_str(url);
            let opts = reply.opts_mut();
            opts.insert(DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()));
            opts.insert(DhcpOption::BootfileName(url.clone().into_bytes()));
        }
        Boot::Script { url } => {
            reply.set_fname_str(url);
            let opts = reply.opts_mut();
            opts.insert(DhcpOption::BootfileName(url.clone().into_bytes()));
            opts.insert(DhcpOption::Unknown(UnknownOption::new(
                OptionCode::Unknown(IPXE_ENCAP),
                IPXE_NO_PXEDHCP.to_vec(),
            )));
        }
    }
}

/// Where a reply goes (RFC 2131 section 4.1): through the relay when there is one; to the
/// client's address when it has one (renewing); otherwise broadcast. seed broadcasts rather than
/// unicasting to yiaddr because a client without an address cannot answer ARP for it, and
/// broadcast needs no ARP-table injection; every client accepts it.
pub fn destination(req: &Message, kind: MessageType) -> SocketAddr {
    let giaddr = req.giaddr();
    if giaddr != Ipv4Addr::UNSPECIFIED {
        return SocketAddr::V4(SocketAddrV4::new(giaddr, SERVER_PORT));
    }
    if kind != MessageType::Nak && req.ciaddr() != Ipv4Addr::UNSPECIFIED {
        return SocketAddr::V4(SocketAddrV4::new(req.ciaddr(), CLIENT_PORT));
    }
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT))
}

/// Encode a reply. Encoding a message seed built itself does not fail; if it ever did, an
/// empty datagram is sent instead of taking the server down.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut buf = Vec::with_capacity(576);
    let mut enc = Encoder::new(&mut buf);
    if let Err(e) = msg.encode(&mut enc) {
        tracing::error!(error = %e, "cannot encode DHCP reply");
        buf.clear();
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Vec<u8> {
        let mut p = vec![1, 1, 6, 0];
        p.extend([0; 4 + 20]);
        p.extend([0x02, 0, 0, 0, 0, 0x99]);
        p.extend([0; 10 + 192]);
        p.extend([99, 130, 83, 99]);
        p
    }

    fn with(opts: &[u8]) -> Vec<u8> {
        let mut p = header();
        p.extend(opts);
        p
    }

    #[test]
    fn broken_packets_are_errors_or_not_requests() {
        assert!(parse(&header()[..100]).is_err(), "truncated header");
        assert!(
            parse(&vec![0xab; 1500]).is_err()
                || request_facts(&parse(&vec![0xab; 1500]).unwrap()).is_none(),
            "garbage"
        );
        let overrun = parse(&with(&[53, 1, 1, 61, 200, 1, 2]));
        assert!(
            overrun.is_err(),
            "an option longer than the packet: {overrun:?}"
        );
        let offer = parse(&with(&[53, 1, 2, 255])).unwrap();
        assert_eq!(
            request_facts(&offer).map(|f| f.kind),
            Some(MessageType::Offer)
        );
    }

    #[test]
    fn link_selection_names_the_subnet_over_giaddr() {
        let mut p = header();
        p[24..28].copy_from_slice(&[10, 1, 0, 1]); // giaddr
        p.extend([53, 1, 1, 82, 6, 5, 4, 10, 1, 30, 0, 255]);
        let facts = request_facts(&parse(&p).unwrap()).unwrap();
        assert_eq!(facts.request.relay, Some(Ipv4Addr::new(10, 1, 30, 0)));
        let mut q = header();
        q[24..28].copy_from_slice(&[10, 1, 0, 1]);
        q.extend([53, 1, 1, 255]);
        assert_eq!(
            request_facts(&parse(&q).unwrap()).unwrap().request.relay,
            Some(Ipv4Addr::new(10, 1, 0, 1))
        );
    }

    #[test]
    fn a_zero_length_option_is_tolerated() {
        // A zero-length host name (option 12) is odd but harmless: answer the client.
        let msg = parse(&with(&[53, 1, 1, 12, 0, 255])).unwrap();
        assert_eq!(
            request_facts(&msg).map(|f| f.kind),
            Some(MessageType::Discover)
        );
    }
}
