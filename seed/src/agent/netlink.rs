//! The three rtnetlink requests the deploy ramdisk needs to put its DHCP lease on the boot NIC
//! (rtnetlink(7)): a link up (RTM_NEWLINK), an address (RTM_NEWADDR) and, when seed is behind
//! a router, a default route (RTM_NEWROUTE). Each is acknowledged by the kernel (NLM_F_ACK), so
//! an error names what was refused. There is no `ip` in the ramdisk, and ioctls would need
//! `unsafe`; netlink messages are plain bytes over a socket nix opens safely.

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

/// A refused or failed request.
#[derive(Debug, thiserror::Error)]
#[error("netlink {what} on {interface}: {source}")]
pub struct NetlinkError {
    /// What was asked (`link up`, `address 10.0.0.5/24`).
    pub what: String,
    /// The interface.
    pub interface: String,
    /// The kernel's errno.
    pub source: nix::Error,
}

// include/uapi/linux/netlink.h and rtnetlink.h
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const IFF_UP: u32 = 0x1;
const AF_INET: u8 = 2;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
/// The route came from DHCP (`proto dhcp` in `ip route`).
const RTPROT_DHCP: u8 = 16;
const RTN_UNICAST: u8 = 1;

/// One interface, by name, and a netlink socket to configure it with.
pub struct Link {
    name: String,
    index: u32,
    socket: OwnedFd,
    seq: u32,
}

impl Link {
    /// Opens `name` (it must exist).
    pub fn open(name: &str) -> Result<Self, NetlinkError> {
        let fail = |what: &str, source| NetlinkError {
            what: what.into(),
            interface: name.into(),
            source,
        };
        let index = nix::net::if_::if_nametoindex(name).map_err(|e| fail("lookup", e))?;
        let socket = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .map_err(|e| fail("socket", e))?;
        Ok(Self {
            name: name.into(),
            index,
            socket,
            seq: 0,
        })
    }

    /// Sets the link up (`ip link set NAME up`).
    pub fn up(&mut self) -> Result<(), NetlinkError> {
        // struct ifinfomsg: family, pad, type, index, flags, change
        let mut body = vec![0u8, 0];
        body.extend(0u16.to_ne_bytes());
        body.extend(self.index_i32().to_ne_bytes());
        body.extend(IFF_UP.to_ne_bytes());
        body.extend(IFF_UP.to_ne_bytes());
        self.request("link up", RTM_NEWLINK, 0, body)
    }

    /// Adds `address/prefix` (`ip addr replace`), with its broadcast address.
    pub fn add_address(&mut self, address: Ipv4Addr, prefix: u8) -> Result<(), NetlinkError> {
        let prefix = prefix.min(32);
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        let broadcast = Ipv4Addr::from(u32::from(address) | !mask);
        // struct ifaddrmsg: family, prefixlen, flags, scope, index
        let mut body = vec![AF_INET, prefix, 0, 0];
        body.extend(self.index.to_ne_bytes());
        attribute(&mut body, IFA_LOCAL, &address.octets());
        attribute(&mut body, IFA_ADDRESS, &address.octets());
        attribute(&mut body, IFA_BROADCAST, &broadcast.octets());
        self.request(
            &format!("address {address}/{prefix}"),
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_REPLACE,
            body,
        )
    }

    /// Adds the default route through `gateway` on this link (`ip route replace default`).
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<(), NetlinkError> {
        // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
        let mut body = vec![AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_DHCP, 0, RTN_UNICAST];
        body.extend(0u32.to_ne_bytes());
        attribute(&mut body, RTA_GATEWAY, &gateway.octets());
        attribute(&mut body, RTA_OIF, &self.index.to_ne_bytes());
        self.request(
            &format!("default route via {gateway}"),
            RTM_NEWROUTE,
            NLM_F_CREATE | NLM_F_REPLACE,
            body,
        )
    }

    fn index_i32(&self) -> i32 {
        i32::try_from(self.index).unwrap_or(i32::MAX)
    }

    /// Sends one request and reads its acknowledgement (an NLMSG_ERROR whose error is 0).
    fn request(
        &mut self,
        what: &str,
        kind: u16,
        flags: u16,
        body: Vec<u8>,
    ) -> Result<(), NetlinkError> {
        let fail = |source| NetlinkError {
            what: what.into(),
            interface: self.name.clone(),
            source,
        };
        self.seq += 1;
        let seq = self.seq;
        let len = u32::try_from(16 + body.len()).unwrap_or(u32::MAX);
        // struct nlmsghdr: len, type, flags, seq, pid (0: the kernel fills it in)
        let mut message = Vec::with_capacity(16 + body.len());
        message.extend(len.to_ne_bytes());
        message.extend(kind.to_ne_bytes());
        message.extend((flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        message.extend(seq.to_ne_bytes());
        message.extend(0u32.to_ne_bytes());
        message.extend(body);
        let kernel = NetlinkAddr::new(0, 0);
        sendto(
            std::os::fd::AsRawFd::as_raw_fd(&self.socket.as_fd()),
            &message,
            &kernel,
            MsgFlags::empty(),
        )
        .map_err(fail)?;
        let mut buf = [0u8; 4096];
        // Answers to earlier requests cannot be pending (each one is read); anything else
        // (a multicast this socket never joined) is skipped by its sequence number.
        for _ in 0..16 {
            let n = recv(
                std::os::fd::AsRawFd::as_raw_fd(&self.socket.as_fd()),
                &mut buf,
                MsgFlags::empty(),
            )
            .map_err(fail)?;
            if let Some(errno) = ack_of(&buf[..n], seq) {
                return match errno {
                    0 => Ok(()),
                    e => Err(fail(nix::Error::from_raw(-e))),
                };
            }
        }
        Err(fail(nix::Error::EPROTO))
    }
}

/// Appends a route attribute (struct rtattr: len, type, payload, padded to 4 bytes).
fn attribute(body: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
    body.extend(len.to_ne_bytes());
    body.extend(kind.to_ne_bytes());
    body.extend(payload);
    body.resize(body.len().next_multiple_of(4), 0);
}

/// The error code of the acknowledgement of request `seq` in `bytes`, if it holds one.
fn ack_of(bytes: &[u8], seq: u32) -> Option<i32> {
    let mut rest = bytes;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes(rest[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(rest[4..6].try_into().ok()?);
        let got = u32::from_ne_bytes(rest[8..12].try_into().ok()?);
        if len < 16 || len > rest.len() {
            return None;
        }
        if kind == NLMSG_ERROR && got == seq && len >= 20 {
            return Some(i32::from_ne_bytes(rest[16..20].try_into().ok()?));
        }
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_padded_to_four_bytes() {
        let mut body = Vec::new();
        attribute(&mut body, 3, b"eth0\0");
        assert_eq!(body.len(), 12);
        assert_eq!(&body[0..2], &9u16.to_ne_bytes());
    }

    #[test]
    fn only_the_ack_of_this_request_counts() {
        let mut message = Vec::new();
        message.extend(36u32.to_ne_bytes());
        message.extend(NLMSG_ERROR.to_ne_bytes());
        message.extend(0u16.to_ne_bytes());
        message.extend(7u32.to_ne_bytes());
        message.extend(0u32.to_ne_bytes());
        message.extend((-17i32).to_ne_bytes());
        message.resize(36, 0);
        assert_eq!(ack_of(&message, 7), Some(-17));
        assert_eq!(ack_of(&message, 8), None);
        assert_eq!(ack_of(&message[..10], 7), None);
    }
}
