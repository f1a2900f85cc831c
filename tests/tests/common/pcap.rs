//! Reading DHCP replies back from a tcpdump capture (classic pcap, Ethernet): what the clients
//! were really told, as opposed to what the server believes it said.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use dhcproto::v4::MessageType;

/// Every DHCPACK with an address in the capture, in order: (client MAC, address).
pub fn acks(path: &Path) -> Vec<(String, Ipv4Addr)> {
    let data = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    if data.len() < 24 {
        return out;
    }
    // Global header: magic, version, zone, sigfigs, snaplen, link type (1 = Ethernet).
    assert_eq!(
        &data[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian microsecond pcap expected"
    );
    let mut at = 24;
    while at + 16 <= data.len() {
        let incl = u32::from_le_bytes(data[at + 8..at + 12].try_into().unwrap()) as usize;
        let Some(frame) = data.get(at + 16..at + 16 + incl) else {
            break; // the last record may be cut short by the kill
        };
        at += 16 + incl;
        if let Some((mac, ip)) = ack(frame) {
            out.push((mac, ip));
        }
    }
    out
}

fn ack(frame: &[u8]) -> Option<(String, Ipv4Addr)> {
    // Ethernet II, IPv4, UDP.
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if *ip.get(9)? != 17 {
        return None;
    }
    let payload = ip.get(ihl + 8..)?;
    let msg = seed::dhcp::parse(payload).ok()?;
    if msg.opts().msg_type()? != MessageType::Ack || msg.yiaddr() == Ipv4Addr::UNSPECIFIED {
        return None;
    }
    let mac = msg.chaddr()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    Some((mac, msg.yiaddr()))
}

/// The last address each MAC was ACKed.
pub fn last_ack_by_mac(acks: &[(String, Ipv4Addr)]) -> BTreeMap<String, Ipv4Addr> {
    acks.iter().cloned().collect()
}
