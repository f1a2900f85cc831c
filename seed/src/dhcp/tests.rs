//! The RFC 2131 state machine in process: packets into [`Server::handle`], replies out of it and
//! out of the lease writer, over a store that can be told to fail. No root, no sockets; the
//! same machine is driven by udhcpc, dhclient and perfdhcp in `tests/tests/dhcp.rs`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

use super::writer::{AckSink, LeaseStore, LeaseWriter};
use super::{PER_MAC_PER_SECOND, Server};
use crate::leases::LeaseTable;
use crate::metrics::Metrics;
use crate::net::MacAddr;
use crate::provision::Provisioner;
use crate::store::{Discovered, Lease, StoreError};

/// cmp3 of examples/osism-rack.yaml: BMC 10.1.0.23 → 10.1.10.23 in the provisioning zone.
const NODE: &str = "3c:ec:ef:10:00:23";
const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 10, 23);
/// `seed.address` of the example.
const SEED: Ipv4Addr = Ipv4Addr::new(10, 1, 10, 5);
/// A machine the example does not name: it gets a discovery-pool address (10.1.10.200-249).
const STRANGER: &str = "02:00:00:00:00:01";
const CLIENT: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68));

/// What the fake store was asked, and whether its next commits fail.
#[derive(Default)]
struct Disk {
    committed: Mutex<Vec<Lease>>,
    released: Mutex<Vec<MacAddr>>,
    fail: AtomicBool,
}

struct FakeStore(Arc<Disk>);

impl LeaseStore for FakeStore {
    fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        Ok(Vec::new())
    }
    fn commit_leases(&mut self, leases: &[Lease]) -> Result<(), StoreError> {
        if self.0.fail.load(Ordering::SeqCst) {
            // What a full disk says to SQLite.
            return Err(StoreError::Sql(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(13),
                Some("database or disk is full".into()),
            )));
        }
        self.0.committed.lock().unwrap().extend_from_slice(leases);
        Ok(())
    }
    fn release_lease(&mut self, mac: MacAddr) -> Result<(), StoreError> {
        self.0.released.lock().unwrap().push(mac);
        Ok(())
    }
    fn record_discovered(&mut self, _: &[Discovered]) -> Result<(), StoreError> {
        Ok(())
    }
}

struct Acks(Mutex<mpsc::Sender<(Vec<u8>, SocketAddr)>>);

impl AckSink for Acks {
    fn send_ack(&self, reply: &[u8], dest: SocketAddr) {
        let _ = self.0.lock().unwrap().send((reply.to_vec(), dest));
    }
}

struct Rig {
    server: Server,
    disk: Arc<Disk>,
    acks: mpsc::Receiver<(Vec<u8>, SocketAddr)>,
}

fn rig(edit: impl FnOnce(String) -> String) -> Rig {
    let text = edit(crate::config::EXAMPLE.to_string());
    let config = crate::config::parse(&text, Path::new("osism-rack.yaml")).unwrap();
    let provisioner = Arc::new(Provisioner::new(Arc::new(config)));
    let disk = Arc::new(Disk::default());
    let (tx, acks) = mpsc::channel();
    let writer = LeaseWriter::start(FakeStore(Arc::clone(&disk)), Acks(Mutex::new(tx))).unwrap();
    let server = Server::new(
        provisioner,
        Arc::new(Metrics::default()),
        LeaseTable::default(),
        writer,
    );
    Rig { server, disk, acks }
}

fn rack() -> Rig {
    rig(|t| t)
}

/// A client packet the way udhcpc builds one (broadcast flag clear, no giaddr).
fn packet(mac: &str, kind: MessageType, opts: Vec<DhcpOption>, ciaddr: Ipv4Addr) -> Vec<u8> {
    let mac: MacAddr = mac.parse().unwrap();
    let mut msg = Message::new(
        ciaddr,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        Ipv4Addr::UNSPECIFIED,
        &mac.0,
    );
    msg.opts_mut().insert(DhcpOption::MessageType(kind));
    for opt in opts {
        msg.opts_mut().insert(opt);
    }
    let mut buf = Vec::new();
    msg.encode(&mut Encoder::new(&mut buf)).unwrap();
    buf
}

fn request(mac: &str, address: Ipv4Addr, server: Option<Ipv4Addr>) -> Vec<u8> {
    let mut opts = vec![DhcpOption::RequestedIpAddress(address)];
    opts.extend(server.map(DhcpOption::ServerIdentifier));
    packet(mac, MessageType::Request, opts, Ipv4Addr::UNSPECIFIED)
}

fn decode(bytes: &[u8]) -> Message {
    Message::decode(&mut Decoder::new(bytes)).unwrap()
}

fn kind(msg: &Message) -> MessageType {
    msg.opts().msg_type().unwrap()
}

impl Rig {
    fn handle(&mut self, bytes: &[u8]) -> Option<(Message, SocketAddr)> {
        self.handle_on(bytes, CLIENT, false)
    }

    fn handle_on(
        &mut self,
        bytes: &[u8],
        peer: SocketAddr,
        pxe_port: bool,
    ) -> Option<(Message, SocketAddr)> {
        self.server
            .handle(bytes, peer, pxe_port)
            .map(|(reply, dest)| (decode(&reply), dest))
    }

    /// The next ACK the writer sent, waiting for its commit at most 10 s.
    fn ack(&self) -> (Message, SocketAddr) {
        let (bytes, dest) = self
            .acks
            .recv_timeout(Duration::from_secs(10))
            .expect("no ACK within 10 s");
        (decode(&bytes), dest)
    }

    /// Let the writer finish what is queued; then no more ACKs can come.
    fn drain(&mut self) -> Vec<Message> {
        self.server.writer.stop();
        self.acks.try_iter().map(|(b, _)| decode(&b)).collect()
    }

    fn committed(&self) -> Vec<(MacAddr, Ipv4Addr)> {
        let committed = self.disk.committed.lock().unwrap();
        committed.iter().map(|l| (l.mac, l.ip)).collect()
    }

    /// DISCOVER then REQUEST of the offered address; returns the ACKed address.
    fn lease(&mut self, mac: &str) -> Ipv4Addr {
        let (offer, _) = self
            .handle(&packet(
                mac,
                MessageType::Discover,
                vec![],
                Ipv4Addr::UNSPECIFIED,
            ))
            .expect("no OFFER");
        assert_eq!(kind(&offer), MessageType::Offer);
        assert!(
            self.handle(&request(mac, offer.yiaddr(), Some(SEED)))
                .is_none(),
            "an ACK goes through the writer, after its commit"
        );
        let (ack, _) = self.ack();
        assert_eq!(kind(&ack), MessageType::Ack);
        ack.yiaddr()
    }
}

#[test]
fn an_ack_is_sent_only_after_its_lease_is_committed() {
    let mut rig = rack();
    assert_eq!(rig.lease(NODE), NODE_IP);
    assert_eq!(rig.committed(), vec![(NODE.parse().unwrap(), NODE_IP)]);
}

#[test]
fn a_failed_commit_sends_no_ack_and_the_retry_after_it_is_acked() {
    let mut rig = rack();
    rig.disk.fail.store(true, Ordering::SeqCst);
    assert!(rig.handle(&request(NODE, NODE_IP, None)).is_none());
    // Nothing promised that the disk does not hold: the writer ran the commit and sent nothing.
    rig.server.writer.flush();
    assert!(
        rig.acks.try_recv().is_err(),
        "an ACK for a lease not on disk"
    );
    assert!(rig.committed().is_empty());
    // The disk is back; the client's retry is acknowledged.
    rig.disk.fail.store(false, Ordering::SeqCst);
    assert!(rig.handle(&request(NODE, NODE_IP, None)).is_none());
    let (ack, _) = rig.ack();
    assert_eq!((kind(&ack), ack.yiaddr()), (MessageType::Ack, NODE_IP));
    assert!(rig.drain().is_empty());
}

#[test]
fn a_request_for_an_address_seed_did_not_give_is_naked() {
    let mut rig = rack();
    // RFC 2131 4.3.2: a node asking for an address that is not its own (a stale lease from
    // another network) is told NAK, at once, by broadcast (the client has no address).
    let wrong = Ipv4Addr::new(10, 1, 10, 99);
    let (nak, dest) = rig.handle(&request(NODE, wrong, None)).expect("no NAK");
    assert_eq!(kind(&nak), MessageType::Nak);
    assert_eq!(nak.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        nak.opts().get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(SEED))
    );
    assert_eq!(dest, SocketAddr::from((Ipv4Addr::BROADCAST, 68)));
    assert!(rig.drain().is_empty());
    assert!(rig.committed().is_empty());
}

#[test]
fn a_request_that_chose_another_server_is_left_alone() {
    let mut rig = rack();
    let other = Ipv4Addr::new(10, 1, 10, 6);
    // SELECTING with option 54 naming another server: the client took its offer. No NAK (that
    // would break the other server's lease), no ACK, no lease.
    assert!(rig.handle(&request(NODE, NODE_IP, Some(other))).is_none());
    assert!(rig.drain().is_empty());
    assert!(rig.committed().is_empty());
}

#[test]
fn release_and_decline_count_only_from_the_lease_holder() {
    let mut rig = rack();
    let address = rig.lease(STRANGER);
    assert!((200..250).contains(&address.octets()[3]), "{address}");
    // Anyone can send a RELEASE or DECLINE naming any address: another MAC naming this one
    // changes nothing.
    let other = "02:00:00:00:00:02";
    for kind in [MessageType::Release, MessageType::Decline] {
        let opts = if kind == MessageType::Decline {
            vec![DhcpOption::RequestedIpAddress(address)]
        } else {
            vec![]
        };
        assert!(rig.handle(&packet(other, kind, opts, address)).is_none());
    }
    assert!(rig.server.leases.get(STRANGER.parse().unwrap()).is_some());
    // The holder's DECLINE voids its lease (on disk too) and keeps the address out of the pool:
    // its next DISCOVER is offered another one.
    let decline = packet(
        STRANGER,
        MessageType::Decline,
        vec![DhcpOption::RequestedIpAddress(address)],
        Ipv4Addr::UNSPECIFIED,
    );
    assert!(rig.handle(&decline).is_none());
    assert!(rig.server.leases.get(STRANGER.parse().unwrap()).is_none());
    let next = rig.lease(STRANGER);
    assert_ne!(next, address, "offered the declined address again");
    // RELEASE from the holder (ciaddr = its address) frees it.
    assert!(
        rig.handle(&packet(STRANGER, MessageType::Release, vec![], next))
            .is_none()
    );
    assert!(rig.server.leases.get(STRANGER.parse().unwrap()).is_none());
    rig.drain();
    let released = rig.disk.released.lock().unwrap().clone();
    assert_eq!(released, vec![STRANGER.parse().unwrap(); 2]);
}

#[test]
fn one_mac_over_its_rate_is_dropped_and_others_are_still_answered() {
    let mut rig = rack();
    let discover = packet(
        STRANGER,
        MessageType::Discover,
        vec![],
        Ipv4Addr::UNSPECIFIED,
    );
    let answered = (0..PER_MAC_PER_SECOND + 20)
        .filter(|_| rig.handle(&discover).is_some())
        .count();
    // One window is a second; the loop takes far less, even on a loaded machine, but a window
    // that turned over mid-loop would allow up to twice the rate.
    assert!(
        (PER_MAC_PER_SECOND as usize..2 * PER_MAC_PER_SECOND as usize).contains(&answered),
        "{answered} answered"
    );
    assert_eq!(
        rig.server.stats.rate_limited,
        u64::from(PER_MAC_PER_SECOND) + 20 - answered as u64
    );
    let node = packet(NODE, MessageType::Discover, vec![], Ipv4Addr::UNSPECIFIED);
    let (offer, _) = rig.handle(&node).expect("the node was starved");
    assert_eq!(offer.yiaddr(), NODE_IP);
    // The limit is read from the raw header: a flood of undecodable packets from one MAC is
    // throttled too, before it costs a parse.
    let mut broken = discover.clone();
    broken.truncate(239);
    let before = rig.server.stats.malformed;
    for _ in 0..PER_MAC_PER_SECOND * 2 {
        rig.handle(&broken);
    }
    assert!(rig.server.stats.malformed - before <= u64::from(PER_MAC_PER_SECOND));
}

#[test]
fn proxy_dhcp_answers_discover_on_67_and_request_on_4011_only() {
    let mut rig = rig(|t| t.replacen("  state_dir:", "  dhcp: { proxy: true }\n  state_dir:", 1));
    assert!(rig.server.proxy);
    let pxe = || {
        vec![
            DhcpOption::ClassIdentifier(b"PXEClient:Arch:00007:UNDI:003016".to_vec()),
            DhcpOption::ClientSystemArchitecture(dhcproto::v4::Architecture::from(7)),
        ]
    };
    let firmware: SocketAddr = "10.1.10.23:68".parse().unwrap();
    // Port 67: a DISCOVER gets the boot-only OFFER by broadcast, no address; a REQUEST there
    // belongs to the site's DHCP server.
    let discover = packet(NODE, MessageType::Discover, pxe(), Ipv4Addr::UNSPECIFIED);
    let (offer, dest) = rig.handle(&discover).expect("no proxy OFFER");
    assert_eq!(kind(&offer), MessageType::Offer);
    assert_eq!(offer.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(dest, SocketAddr::from((Ipv4Addr::BROADCAST, 68)));
    let mut req = pxe();
    req.push(DhcpOption::RequestedIpAddress(NODE_IP));
    let on_67 = packet(NODE, MessageType::Request, req, Ipv4Addr::UNSPECIFIED);
    assert!(rig.handle(&on_67).is_none());
    // Port 4011: the REQUEST (from the address the site gave it) gets the ACK back to where
    // it came from; a DISCOVER there is nobody's.
    let on_4011 = packet(NODE, MessageType::Request, pxe(), NODE_IP);
    let (ack, dest) = rig.handle_on(&on_4011, firmware, true).expect("no ACK");
    assert_eq!(kind(&ack), MessageType::Ack);
    assert_eq!(dest, firmware);
    // UEFI PXE fetches ipxe.efi over TFTP from siaddr.
    let file = ack.fname().unwrap_or_default().split(|b| *b == 0).next();
    assert_eq!((file, ack.siaddr()), (Some(&b"ipxe.efi"[..]), SEED));
    assert!(rig.handle_on(&discover, firmware, true).is_none());
    // Nothing is leased in proxy mode.
    assert!(rig.drain().is_empty());
    assert!(rig.committed().is_empty());
    // A stranger is not booted beside a foreign server.
    let stranger = packet(
        STRANGER,
        MessageType::Discover,
        pxe(),
        Ipv4Addr::UNSPECIFIED,
    );
    assert!(rig.handle(&stranger).is_none());
}
