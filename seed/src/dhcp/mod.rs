//! The DHCPv4 server (RFC 2131): packets in, [`provision`](crate::provision) decides, replies out.
//!
//! The caller binds the socket ([`bind`] for production, anything for tests) and passes a
//! shutdown signal. One task owns the lease table, so the packet path takes no lock and runs no
//! SQL. Leases are made durable by a writer thread (`writer`) that commits a batch of them in
//! one transaction and only then sends their ACKs: a lease is on disk before the client hears of
//! it, and a burst of clients costs one fsync per batch, not one per client.

mod packet;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dhcproto::v4::MessageType;
use tokio::net::UdpSocket;

use crate::leases::LeaseTable;
use crate::loglimit::LogLimit;
use crate::metrics::Metrics;
use crate::net::MacAddr;
use crate::provision::{DhcpAnswer, Provisioner};
use crate::store::{Lease, now_ms};

pub use packet::{CLIENT_PORT, SERVER_PORT, parse, request_facts};
pub use writer::{AckSink, LeaseStore};

/// The PXE boot server port, where firmware asks a proxyDHCP server for its boot file.
pub const PXE_PORT: u16 = 4011;

/// Packets per second one MAC may send before the rest are dropped: a flooding client must not
/// starve the others. Firmware sends a handful per boot stage.
const PER_MAC_PER_SECOND: u32 = 50;
/// A machine outside the config is written to the store at most this often (ms).
const DISCOVERED_REFRESH_MS: i64 = 60_000;
/// How many unknown MACs are remembered between store writes. A flood of random MACs must not
/// grow memory without bound; forgetting them only costs one more store write each.
const DISCOVERED_MEMORY: usize = 16_384;
/// Lines per 10 s for each kind of log line a client can cause (bad packets, declines, requests
/// not answered, new machines); the rest are counted in the next line.
const LOG_LINES: u32 = 5;
const LOG_WINDOW: Duration = Duration::from_secs(10);
/// MACs tracked by the per-second rate limit; a flood of random MACs starts a new window
/// instead of growing the map.
const RATE_LIMIT_MACS: usize = 16_384;
/// Addresses one MAC may have in decline probation at once: a client that declines every address
/// it is offered must not empty the pool.
const DECLINES_PER_MAC: usize = 2;

/// Bind the DHCP socket on `interface` the way a DHCP server must: `0.0.0.0:port` so broadcasts
/// arrive, SO_BINDTODEVICE so only that interface's, SO_BROADCAST to answer by broadcast.
pub fn bind(interface: &str, port: u16) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    socket.bind_device(Some(interface.as_bytes()))?;
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Counters for the log line at shutdown (`/metrics` counts in [`Metrics`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Packets received.
    pub received: u64,
    /// Packets that did not parse or were not BOOTREQUESTs.
    pub malformed: u64,
    /// Packets dropped by the per-MAC rate limit.
    pub rate_limited: u64,
    /// Requests the decision module declined to answer.
    pub ignored: u64,
    /// Replies handed to the socket or the lease writer.
    pub replied: u64,
}

/// Run the server on `socket` (port 67) until `shutdown` resolves. `pxe_socket` (port 4011) is
/// for proxyDHCP mode. `store` is the writer thread's own connection; the lease table is
/// loaded from it.
pub async fn serve(
    socket: std::net::UdpSocket,
    pxe_socket: Option<std::net::UdpSocket>,
    provisioner: Arc<Provisioner>,
    store: impl LeaseStore,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<Stats> {
    let leases = LeaseTable::new(store.leases().map_err(std::io::Error::other)?);
    let send_socket = socket.try_clone()?;
    let writer = writer::LeaseWriter::start(store, send_socket)?;
    let socket = UdpSocket::from_std(socket)?;
    let pxe_socket = pxe_socket.map(UdpSocket::from_std).transpose()?;
    let mut server = Server::new(provisioner, metrics, leases, writer);
    let proxy = server.proxy;
    tracing::info!(local = %socket.local_addr()?, proxy, leases = server.leases.len(), "DHCP server running");
    let mut buf = vec![0u8; 4096];
    let mut pxe_buf = vec![0u8; 4096];
    tokio::pin!(shutdown);
    loop {
        let (received, on_pxe_port) = tokio::select! {
            _ = &mut shutdown => break,
            r = socket.recv_from(&mut buf) => (r.map(|(n, p)| (&buf[..n], p)), false),
            r = recv_optional(pxe_socket.as_ref(), &mut pxe_buf) => (r.map(|(n, p)| (&pxe_buf[..n], p)), true),
        };
        let (bytes, peer) = match received {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors from earlier sends surface here on Linux; never fatal.
                tracing::debug!(error = %e, "DHCP receive error");
                continue;
            }
        };
        let Some((reply, dest)) = server.handle(bytes, peer, on_pxe_port) else {
            continue;
        };
        // A reply leaves from the port its request came to.
        let out = match (&pxe_socket, on_pxe_port) {
            (Some(pxe), true) => pxe,
            _ => &socket,
        };
        if let Err(e) = out.send_to(&reply, dest).await {
            crate::limited!(server.logs.send, warn, %dest, error = %e, "cannot send DHCP reply");
        }
    }
    server.writer.stop();
    tracing::info!(?server.stats, "DHCP server stopped");
    Ok(server.stats)
}

/// Receive on `socket`, or never when there is none.
async fn recv_optional(
    socket: Option<&UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

struct Server {
    proxy: bool,
    metrics: Arc<Metrics>,
    provisioner: Arc<Provisioner>,
    leases: LeaseTable,
    writer: writer::LeaseWriter,
    stats: Stats,
    per_mac: HashMap<MacAddr, u32>,
    /// When each undiscovered-until-now MAC was last written to the store.
    discovered: HashMap<MacAddr, i64>,
    window: Instant,
    logs: Logs,
}

/// A log budget per kind of line a client can cause.
struct Logs {
    bad: LogLimit,
    decline: LogLimit,
    ignored: LogLimit,
    discovered: LogLimit,
    nak: LogLimit,
    send: LogLimit,
}

impl Default for Logs {
    fn default() -> Self {
        let limit = || LogLimit::new(LOG_LINES, LOG_WINDOW);
        Self {
            bad: limit(),
            decline: limit(),
            ignored: limit(),
            discovered: limit(),
            nak: limit(),
            send: limit(),
        }
    }
}

impl Server {
    /// A server deciding with `provisioner` over `leases` (loaded from the store `writer`
    /// commits to).
    fn new(
        provisioner: Arc<Provisioner>,
        metrics: Arc<Metrics>,
        leases: LeaseTable,
        writer: writer::LeaseWriter,
    ) -> Self {
        provisioner.sightings().dhcp_started();
        Self {
            proxy: provisioner.config().seed.dhcp.proxy,
            metrics,
            provisioner,
            leases,
            writer,
            stats: Stats::default(),
            per_mac: HashMap::new(),
            discovered: HashMap::new(),
            window: Instant::now(),
            logs: Logs::default(),
        }
    }

    /// One packet. Returns a reply to send now (OFFER, NAK, INFORM's ACK); lease ACKs go to the
    /// writer, which sends them after their commit.
    fn handle(
        &mut self,
        bytes: &[u8],
        peer: SocketAddr,
        on_pxe_port: bool,
    ) -> Option<(Vec<u8>, SocketAddr)> {
        self.stats.received += 1;
        // The rate limit comes before decoding: a flood from one MAC costs a table lookup per
        // packet, not a parse, so seed drains its socket faster than the flood fills it.
        if let Some(mac) = packet::hardware_address(bytes)
            && !self.allow(mac)
        {
            self.stats.rate_limited += 1;
            self.metrics.dhcp_dropped();
            return None;
        }
        let msg = match parse(bytes) {
            Ok(msg) => msg,
            Err(why) => {
                self.bad_packet(peer, &why);
                return None;
            }
        };
        let Some(facts) = request_facts(&msg) else {
            self.bad_packet(peer, "not an Ethernet BOOTREQUEST with a DHCP message type");
            return None;
        };
        self.metrics.dhcp_received(u8::from(facts.kind));
        if facts.kind == MessageType::Discover
            && facts.request.client.ipxe
            && let Some(node) = self.provisioner.node_of(facts.request.client.mac)
        {
            // A network boot of a node: what an install attempt counts.
            self.provisioner.sightings().booted(&node.name);
        }
        if self.proxy {
            return self.handle_proxy(&msg, &facts, peer, on_pxe_port);
        }
        let now = now_ms();
        match facts.kind {
            MessageType::Discover | MessageType::Request | MessageType::Inform => {}
            MessageType::Release => {
                if self
                    .leases
                    .get(facts.request.client.mac)
                    .is_some_and(|l| l.ip == msg.ciaddr())
                {
                    self.leases.release(facts.request.client.mac);
                    self.writer.release(facts.request.client.mac);
                    tracing::info!(mac = %facts.request.client.mac, ip = %msg.ciaddr(), "lease released");
                }
                return None;
            }
            MessageType::Decline => {
                self.decline(&facts, msg.ciaddr(), now);
                return None;
            }
            other => {
                self.bad_packet(peer, &format!("{other:?} is not a client message"));
                return None;
            }
        }
        let answer = self.provisioner.dhcp(&facts.request, &self.leases, now);
        if self.provisioner.node_of(facts.request.client.mac).is_none() {
            let offered = match &answer {
                DhcpAnswer::Lease(offer) => Some((offer.address, offer.zone.clone())),
                DhcpAnswer::Ignore(_) => None,
            };
            self.record_discovered(&facts.request, offered, now);
        }
        let offer = match answer {
            DhcpAnswer::Lease(offer) => offer,
            DhcpAnswer::Ignore(reason) => {
                self.stats.ignored += 1;
                self.metrics.dhcp_unanswered(&reason);
                crate::limited!(self.logs.ignored, info, mac = %facts.request.client.mac, kind = ?facts.kind, %reason, "not answering");
                return None;
            }
        };
        let server = offer.server;
        match facts.kind {
            MessageType::Discover => {
                self.replied(MessageType::Offer);
                let reply = packet::reply(&msg, MessageType::Offer, &offer);
                Some((
                    packet::encode(&reply),
                    packet::destination(&msg, MessageType::Offer),
                ))
            }
            MessageType::Inform => {
                // RFC 2131 4.3.5: configuration only, no address, no lease.
                self.replied(MessageType::Ack);
                let reply = packet::inform_ack(&msg, &offer);
                Some((
                    packet::encode(&reply),
                    packet::destination(&msg, MessageType::Ack),
                ))
            }
            _ => {
                // REQUEST. SELECTING names a server: if not us, the client chose another.
                if facts.server_id.is_some_and(|s| s != server) {
                    return None;
                }
                // Option 50, or ciaddr when renewing.
                let wanted = facts.request.requested;
                if wanted != Some(offer.address) {
                    self.replied(MessageType::Nak);
                    // RFC 2131 4.3.2: wrong address (another network, a stale lease) → NAK, so
                    // the client starts over instead of keeping an address seed did not give.
                    crate::limited!(self.logs.nak, info, mac = %facts.request.client.mac, ?wanted, offered = %offer.address, "NAK");
                    let reply = packet::nak(&msg, server);
                    return Some((
                        packet::encode(&reply),
                        packet::destination(&msg, MessageType::Nak),
                    ));
                }
                let lease = Lease {
                    mac: facts.request.client.mac,
                    ip: offer.address,
                    node: offer.node.clone(),
                    expires_at: now + i64::from(offer.lease_secs) * 1000,
                };
                self.leases.record(lease.clone());
                self.replied(MessageType::Ack);
                let reply = packet::reply(&msg, MessageType::Ack, &offer);
                self.writer.commit_then_send(
                    lease,
                    packet::encode(&reply),
                    packet::destination(&msg, MessageType::Ack),
                );
                None
            }
        }
    }

    /// proxyDHCP: a DISCOVER on port 67 gets a boot-only OFFER, a REQUEST on port 4011 gets the
    /// boot-only ACK. Everything else belongs to the site's DHCP server.
    fn handle_proxy(
        &mut self,
        msg: &dhcproto::v4::Message,
        facts: &packet::Facts,
        peer: SocketAddr,
        on_pxe_port: bool,
    ) -> Option<(Vec<u8>, SocketAddr)> {
        if facts.kind == MessageType::Request
            && self.provisioner.node_of(facts.request.client.mac).is_some()
        {
            // The address the site's server gives a node: option 50 of its broadcast REQUEST
            // (or ciaddr when renewing), or ciaddr of its port-4011 REQUEST. Its install
            // script will be asked from there.
            let address = if on_pxe_port {
                msg.ciaddr()
            } else {
                facts.request.requested.unwrap_or(msg.ciaddr())
            };
            self.provisioner
                .sightings()
                .proxied(facts.request.client.mac, address);
        }
        let kind = match (facts.kind, on_pxe_port) {
            (MessageType::Discover, false) => MessageType::Offer,
            (MessageType::Request, true) => MessageType::Ack,
            _ => return None,
        };
        match self.provisioner.proxy(&facts.request.client) {
            Ok(boot) => {
                self.replied(kind);
                let server = self.provisioner.config().seed.address;
                let reply = packet::proxy(msg, kind, &boot, server);
                let dest = if on_pxe_port {
                    peer
                } else {
                    packet::destination(msg, kind)
                };
                Some((packet::encode(&reply), dest))
            }
            Err(reason) => {
                self.stats.ignored += 1;
                self.metrics.dhcp_unanswered(&reason);
                tracing::debug!(mac = %facts.request.client.mac, %reason, "proxyDHCP: not answering");
                None
            }
        }
    }

    /// Count a reply handed to the socket or the lease writer.
    fn replied(&mut self, kind: MessageType) {
        self.stats.replied += 1;
        self.metrics.dhcp_sent(u8::from(kind));
    }

    /// Remember a machine outside the config (at most once a minute per MAC).
    fn record_discovered(
        &mut self,
        req: &crate::provision::DhcpRequest,
        offered: Option<(Ipv4Addr, String)>,
        now: i64,
    ) {
        let due = self
            .discovered
            .get(&req.client.mac)
            .is_none_or(|last| now - last >= DISCOVERED_REFRESH_MS);
        if !due {
            return;
        }
        if self.discovered.len() >= DISCOVERED_MEMORY {
            self.discovered.clear();
        }
        if !self.discovered.contains_key(&req.client.mac) {
            let class = req
                .client
                .vendor_class
                .as_deref()
                .map(crate::net::printable);
            crate::limited!(self.logs.discovered, info, mac = %req.client.mac, ?class, arch = ?req.client.arch, "discovered a machine that is not in the config");
        }
        self.discovered.insert(req.client.mac, now);
        self.writer.seen(crate::store::Discovered {
            mac: req.client.mac,
            first_seen: now,
            last_seen: now,
            vendor_class: req.client.vendor_class.clone(),
            arch: req.client.arch,
            address: offered.as_ref().map(|(a, _)| *a),
            zone: offered.map(|(_, z)| z),
            relay: req.relay,
            inspected_at: None,
        });
    }

    /// DHCPDECLINE (RFC 2131 4.3.3): the client found the address it was given in use. Only the
    /// MAC holding that lease can say so (anyone can send a DECLINE naming any address), and one
    /// MAC keeps at most [`DECLINES_PER_MAC`] addresses out of the pool at once.
    fn decline(&mut self, facts: &packet::Facts, ciaddr: Ipv4Addr, now: i64) {
        let mac = facts.request.client.mac;
        let ip = facts.request.requested.unwrap_or(ciaddr);
        if self.leases.get(mac).is_none_or(|lease| lease.ip != ip) {
            crate::limited!(self.logs.decline, warn, %mac, %ip, "DECLINE ignored: that address is not leased to this MAC");
            return;
        }
        let until = now + i64::from(self.provisioner.config().seed.dhcp.lease_secs) * 1000;
        if !self.leases.decline(mac, ip, until, now, DECLINES_PER_MAC) {
            crate::limited!(self.logs.decline, warn, %mac, %ip, "DECLINE ignored: this MAC already declined {DECLINES_PER_MAC} addresses");
            return;
        }
        // Its lease is void: it will ask again and get another address.
        self.leases.release(mac);
        self.writer.release(mac);
        crate::limited!(self.logs.decline, warn, %mac, %ip, "address declined: something else answers for it on the network");
    }

    /// Per-MAC packets-per-second limit, in one-second windows.
    fn allow(&mut self, mac: MacAddr) -> bool {
        if self.window.elapsed() >= Duration::from_secs(1) || self.per_mac.len() >= RATE_LIMIT_MACS
        {
            self.per_mac.clear();
            self.window = Instant::now();
        }
        let count = self.per_mac.entry(mac).or_default();
        *count += 1;
        *count <= PER_MAC_PER_SECOND
    }

    fn bad_packet(&mut self, peer: SocketAddr, why: &str) {
        self.stats.malformed += 1;
        self.metrics.dhcp_dropped();
        crate::limited!(self.logs.bad, warn, %peer, reason = why, "malformed DHCP packet dropped");
    }
}
