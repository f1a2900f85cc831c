//! A read-only TFTP server for the iPXE binaries (RFC 1350), with the option extension
//! (RFC 2347), blksize (RFC 2348), tsize and timeout (RFC 2349) and windowsize (RFC 7440).
//!
//! Written on tokio's UdpSocket rather than async-tftp: the firmware pattern that matters most,
//! "RRQ with tsize → OACK → client ERROR → RRQ again" (OVMF's PXE, measured), must end the first
//! transfer quietly and serve the second from the same client address at once; a
//! server that keys transfers by peer address and ignores ERROR after OACK (async-tftp 0.4)
//! gets it wrong. Each transfer runs in its own task on its own socket (the TID of
//! RFC 1350), so one slow client never holds up another.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

use crate::loglimit::LogLimit;
use crate::metrics::{Metrics, TftpOutcome};
use crate::tree::{OpenError, Tree};

const RRQ: u16 = 1;
const WRQ: u16 = 2;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;

/// RFC 1350 error codes.
const ERR_UNDEFINED: u16 = 0;
const ERR_NOT_FOUND: u16 = 1;
const ERR_ACCESS: u16 = 2;
const ERR_ILLEGAL: u16 = 4;

/// Retransmissions of one window before a transfer is given up.
const MAX_RETRIES: u32 = 5;
/// Transfers at once, in all and per client address: each holds a socket (a file descriptor)
/// and a window of memory, and a client that never acknowledges must not hold them all.
/// A PXE client runs one transfer (two with the tsize probe).
pub const MAX_TRANSFERS: usize = 256;
/// See [`MAX_TRANSFERS`].
pub const MAX_TRANSFERS_PER_CLIENT: usize = 8;
/// The longest `timeout` option acknowledged (s). RFC 2349 lets the server only take or leave
/// the client's value; a larger one is left (not acknowledged), so an abandoned transfer ends
/// within (retries + 1) × this.
const MAX_TIMEOUT_SECS: u64 = 5;
/// The largest `windowsize` granted (RFC 7440 lets the server answer less). UEFI asks for 4
/// at most in the field; 64 blocks keep a window's memory and its retransmission small.
const MAX_WINDOW: u16 = 64;
/// A transfer that is still running after this is ended: a client acknowledging one block per
/// timeout could otherwise hold a socket for hours. ipxe.efi takes well under a second.
const MAX_TRANSFER_TIME: Duration = Duration::from_secs(120);
/// Receive buffer per transfer: clients send only ACKs and ERRORs (the longest an ERROR with a
/// message); a larger datagram is cut, which does not matter for either.
const REPLY_BUFFER: usize = 1024;
/// Files larger than this are refused: TFTP is for the small iPXE binaries; kernels, initrds
/// and ISOs go over HTTP.
const MAX_FILE: u64 = 64 << 20;

/// What the server hands out: named in-memory files (the embedded iPXE binaries) and, behind
/// them, an optional operator directory.
#[derive(Debug, Clone, Default)]
pub struct Files {
    embedded: BTreeMap<String, &'static [u8]>,
    root: Option<Arc<Tree>>,
}

/// An open file to serve: embedded bytes, or a file read block by block (memory stays at one
/// window per transfer, whatever the file size or the number of clients).
#[derive(Debug)]
pub enum Source {
    /// An embedded binary.
    Static(&'static [u8]),
    /// A file of the operator directory, and its length.
    File(std::fs::File, u64),
}

impl Source {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Self::Static(b) => b.len() as u64,
            Self::File(_, len) => *len,
        }
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `len` bytes at `offset`.
    pub fn read_at(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let end = (offset + len as u64).min(self.len());
        let offset = offset.min(end);
        match self {
            Self::Static(b) => Ok(b[offset as usize..end as usize].to_vec()),
            Self::File(file, _) => {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; (end - offset) as usize];
                file.read_exact_at(&mut buf, offset)?;
                Ok(buf)
            }
        }
    }
}

/// Why a file cannot be served; the TFTP error sent back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// RFC 1350 error code.
    pub code: u16,
    /// Message for the client and the log.
    pub message: String,
}

impl Files {
    /// The embedded iPXE binaries, and `root` if given.
    pub fn new(root: Option<PathBuf>) -> Self {
        let embedded = ipxe::binaries::BINARIES
            .iter()
            .map(|b| (b.name.to_string(), b.bytes))
            .collect();
        Self {
            embedded,
            root: root.map(|r| Arc::new(Tree::new(r))),
        }
    }

    /// The file `name`, or why not. Names are relative; `..`, absolute paths, NUL bytes and
    /// symlinks that leave the root are refused.
    pub fn open(&self, name: &str) -> Result<Source, Refusal> {
        let refuse = |code, message: String| Err(Refusal { code, message });
        if name.contains('\0') {
            return refuse(ERR_ACCESS, "NUL byte in file name".into());
        }
        let path = Path::new(name);
        if path.is_absolute() {
            return refuse(ERR_ACCESS, format!("{name}: absolute paths are not served"));
        }
        if path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return refuse(ERR_ACCESS, format!("{name}: path leaves the TFTP root"));
        }
        if let Some(bytes) = self.embedded.get(name) {
            return Ok(Source::Static(bytes));
        }
        let Some(root) = &self.root else {
            return refuse(ERR_NOT_FOUND, format!("{name}: no such file"));
        };
        let file = match root.open(name) {
            Ok(file) => file,
            Err(OpenError::Leaves) => {
                return refuse(ERR_ACCESS, format!("{name}: path leaves the TFTP root"));
            }
            Err(OpenError::Missing) => {
                return refuse(ERR_NOT_FOUND, format!("{name}: no such file"));
            }
            Err(OpenError::Io(e)) => return refuse(ERR_ACCESS, format!("{name}: {e}")),
        };
        match file.metadata() {
            Ok(m) if !m.is_file() => refuse(ERR_NOT_FOUND, format!("{name}: not a file")),
            Ok(m) if m.len() > MAX_FILE => refuse(
                ERR_ACCESS,
                format!("{name}: too large for TFTP; serve it over HTTP"),
            ),
            Ok(m) => Ok(Source::File(file, m.len())),
            Err(e) => refuse(ERR_ACCESS, format!("{name}: {e}")),
        }
    }
}

/// The options a read request asked for, as negotiated.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Options {
    blksize: usize,
    timeout: Duration,
    windowsize: u16,
    /// Options to acknowledge, in the order the client sent them.
    ack: Vec<(String, String)>,
}

/// A parsed read request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Request {
    file: String,
    options: Options,
}

fn parse_request(packet: &[u8], max_blksize: usize) -> Result<Request, Refusal> {
    let illegal = |m: &str| Refusal {
        code: ERR_ILLEGAL,
        message: m.to_string(),
    };
    let op = packet
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
        .ok_or_else(|| illegal("short packet"))?;
    match op {
        RRQ => {}
        WRQ => {
            return Err(Refusal {
                code: ERR_ACCESS,
                message: "this server is read-only".into(),
            });
        }
        _ => return Err(illegal("expected a read request")),
    }
    // Zero-terminated strings: file name, mode, then option/value pairs.
    let body = &packet[2..];
    if body.last() != Some(&0) {
        return Err(illegal("request not terminated"));
    }
    let fields: Vec<String> = body[..body.len() - 1]
        .split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    let (file, mode) = match fields.as_slice() {
        [file, mode, ..] => (file.clone(), mode.to_ascii_lowercase()),
        _ => return Err(illegal("no file name or mode")),
    };
    if mode != "octet" && mode != "netascii" {
        return Err(illegal("mode must be octet"));
    }
    let mut options = Options {
        blksize: 512,
        timeout: Duration::from_secs(1),
        windowsize: 1,
        ack: Vec::new(),
    };
    for pair in fields[2..].chunks(2) {
        let [name, value] = pair else { break };
        let name = name.to_ascii_lowercase();
        let Ok(n) = value.parse::<u64>() else {
            continue;
        };
        match name.as_str() {
            // RFC 2348: 8-65464; 1468 fills an Ethernet frame and is what UEFI asks for. A
            // larger block than the link's MTU carries would be IP-fragmented, and PXE ROMs
            // drop fragments: the server may answer a smaller value than asked (RFC 2348).
            "blksize" if (8..=65464).contains(&n) => {
                let n = (n as usize).min(max_blksize);
                options.blksize = n;
                options.ack.push((name, n.to_string()));
            }
            // RFC 2349: 1-255, and the server takes it as it is or not at all.
            "timeout" if (1..=MAX_TIMEOUT_SECS).contains(&n) => {
                options.timeout = Duration::from_secs(n);
                options.ack.push((name, n.to_string()));
            }
            // RFC 7440: 1-65535; the OACK may carry a smaller value.
            "windowsize" if (1..=65535).contains(&n) => {
                let n = (n as u16).min(MAX_WINDOW);
                options.windowsize = n;
                options.ack.push((name, n.to_string()));
            }
            // The value is filled in with the file's size once it is known.
            "tsize" => options.ack.push((name, String::new())),
            _ => {} // unknown or out of range: not acknowledged (RFC 2347)
        }
    }
    Ok(Request { file, options })
}

/// [`crate::fuzzing::tftp`]: a request as the server reads it; the file name asked for.
#[doc(hidden)]
pub fn parse_for_fuzzing(packet: &[u8]) -> Result<String, Refusal> {
    parse_request(packet, 65464).map(|r| r.file)
}

fn error_packet(code: u16, message: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(5 + message.len());
    p.extend(ERROR.to_be_bytes());
    p.extend(code.to_be_bytes());
    p.extend(message.as_bytes());
    p.push(0);
    p
}

/// The largest block that fits one IPv4 packet on a link of `mtu` bytes: the MTU less the IPv4
/// (20), UDP (8) and TFTP DATA (4) headers; 1468 on Ethernet.
pub fn max_blksize(mtu: u16) -> usize {
    usize::from(mtu).saturating_sub(32).clamp(512, 65464)
}

/// Serve on `socket` (port 69, bound by the caller) until `shutdown` resolves. Blocks are at
/// most `max_blksize` bytes (see [`max_blksize`]).
pub async fn serve(
    socket: std::net::UdpSocket,
    files: Arc<Files>,
    max_blksize: usize,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let local_ip = socket.local_addr()?.ip();
    let socket = UdpSocket::from_std(socket)?;
    tracing::info!(local = %socket.local_addr()?, "TFTP server running");
    let mut buf = vec![0u8; 1500];
    tokio::pin!(shutdown);
    let mut transfers = tokio::task::JoinSet::new();
    let mut active: HashMap<IpAddr, usize> = HashMap::new();
    let mut refused_log = LogLimit::new(5, Duration::from_secs(10));
    let ended_log = Arc::new(std::sync::Mutex::new(LogLimit::new(
        5,
        Duration::from_secs(10),
    )));
    loop {
        let (len, peer) = tokio::select! {
            _ = &mut shutdown => break,
            Some(done) = transfers.join_next(), if !transfers.is_empty() => {
                if let Ok(ip) = done {
                    release(&mut active, ip);
                }
                continue;
            }
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "TFTP receive error");
                    continue;
                }
            },
        };
        let request = match parse_request(&buf[..len], max_blksize) {
            Ok(r) => r,
            Err(refusal) => {
                metrics.tftp_transfer(TftpOutcome::Failed, 0);
                crate::limited!(refused_log, info, %peer, reason = %refusal.message, "TFTP request refused");
                let _ = socket
                    .send_to(&error_packet(refusal.code, &refusal.message), peer)
                    .await;
                continue;
            }
        };
        let from_peer = active.get(&peer.ip()).copied().unwrap_or(0);
        if transfers.len() >= MAX_TRANSFERS || from_peer >= MAX_TRANSFERS_PER_CLIENT {
            metrics.tftp_transfer(TftpOutcome::Failed, 0);
            crate::limited!(refused_log, warn, %peer, running = transfers.len(), from_peer, "TFTP request refused: too many transfers");
            let _ = socket
                .send_to(
                    &error_packet(ERR_UNDEFINED, "too many transfers; try again later"),
                    peer,
                )
                .await;
            continue;
        }
        *active.entry(peer.ip()).or_default() += 1;
        let files = Arc::clone(&files);
        let metrics = Arc::clone(&metrics);
        let ended_log = Arc::clone(&ended_log);
        transfers.spawn(async move {
            let mut sent = 0;
            let run = transfer(local_ip, peer, request, &files, &mut sent);
            let (outcome, why) = match tokio::time::timeout(MAX_TRANSFER_TIME, run).await {
                Ok(Ok(outcome)) => (outcome, None),
                Ok(Err(e)) => (TftpOutcome::Failed, Some(e.to_string())),
                Err(_) => (
                    TftpOutcome::Aborted,
                    Some(format!(
                        "still running after {} s",
                        MAX_TRANSFER_TIME.as_secs()
                    )),
                ),
            };
            if let Some(why) = why {
                let mut log = ended_log
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                crate::limited!(log, info, %peer, error = %why, "TFTP transfer ended");
            }
            metrics.tftp_transfer(outcome, sent);
            peer.ip()
        });
    }
    transfers.abort_all();
    Ok(())
}

/// One transfer of `ip` ended.
fn release(active: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
    if let Some(n) = active.get_mut(&ip) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            active.remove(&ip);
        }
    }
}

/// One read transfer, on a socket of its own.
async fn transfer(
    local_ip: std::net::IpAddr,
    peer: SocketAddr,
    request: Request,
    files: &Files,
    sent: &mut u64,
) -> std::io::Result<TftpOutcome> {
    let socket = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await?;
    socket.connect(peer).await?;
    let data = match files.open(&request.file) {
        Ok(d) => d,
        Err(refusal) => {
            socket
                .send(&error_packet(refusal.code, &refusal.message))
                .await?;
            // Logged (within the log budget) by the caller.
            return Err(std::io::Error::other(format!(
                "read refused: {}",
                crate::net::printable(&refusal.message)
            )));
        }
    };
    let Options {
        blksize,
        timeout,
        windowsize,
        ack,
    } = request.options;
    let mut buf = vec![0u8; REPLY_BUFFER];
    if !ack.is_empty() {
        // RFC 2347: an OACK, answered by ACK 0 (or by an ERROR: the tsize probe of PXE ROMs).
        let mut oack = OACK.to_be_bytes().to_vec();
        for (name, value) in &ack {
            let value = if name == "tsize" {
                data.len().to_string()
            } else {
                value.clone()
            };
            oack.extend(name.as_bytes());
            oack.push(0);
            oack.extend(value.as_bytes());
            oack.push(0);
        }
        match exchange(&socket, &oack, timeout, &mut buf).await? {
            Reply::Ack(0) => {}
            Reply::Ack(_) => return Ok(TftpOutcome::Aborted),
            Reply::Error => return Ok(TftpOutcome::Aborted), // the probe is over; the client will ask again
        }
    }
    let blocks = (data.len() / blksize as u64 + 1) as usize; // the last block is short, possibly empty
    let mut ahead = ReadAhead::default();
    let mut base = 0usize; // blocks acknowledged so far
    // One block until the client has acknowledged a DATA block: a request (and an ACK 0) from
    // a forged address then costs its owner one block and its retransmissions, not a window.
    let mut receiving = false;
    while base < blocks {
        let size = if receiving {
            usize::from(windowsize)
        } else {
            1
        };
        let end = (base + size).min(blocks);
        let offset = base as u64 * blksize as u64;
        let len = (end - base) * blksize;
        // The embedded binaries are sent from where they lie; a file through its read-ahead.
        let bytes: &[u8] = match &data {
            Source::Static(all) => {
                let from = (offset as usize).min(all.len());
                &all[from..(from + len).min(all.len())]
            }
            Source::File(..) => ahead.get(&data, offset, len)?,
        };
        let window: Vec<([u8; 4], &[u8])> = (base..end)
            .enumerate()
            .map(|(k, i)| {
                let chunk =
                    &bytes[(k * blksize).min(bytes.len())..((k + 1) * blksize).min(bytes.len())];
                // Block numbers wrap at 65535 (RFC 7440 and common practice for large files).
                let no = (((i + 1) % 65536) as u16).to_be_bytes();
                let [d0, d1] = DATA.to_be_bytes();
                ([d0, d1, no[0], no[1]], chunk)
            })
            .collect();
        let last = ((end % 65536) as u16, end);
        match send_window(&socket, &window, base, last, timeout, &mut buf).await? {
            Some(acked) => {
                *sent = (acked as u64 * blksize as u64).min(data.len());
                base = acked;
                receiving = true;
            }
            None => return Ok(TftpOutcome::Aborted),
        }
    }
    Ok(TftpOutcome::Completed)
}

/// What a transfer read from its file beyond the current window. A lock-step transfer at
/// blksize 512 would otherwise make one `pread` per block; the page cache makes a larger read
/// cost about the same as a small one.
#[derive(Default)]
struct ReadAhead {
    offset: u64,
    bytes: Vec<u8>,
}

/// How far a transfer reads ahead of its window.
const READ_AHEAD: usize = 64 * 1024;

impl ReadAhead {
    /// Up to `len` bytes of `data` at `offset`.
    fn get(&mut self, data: &Source, offset: u64, len: usize) -> std::io::Result<&[u8]> {
        let have = self.offset..self.offset + self.bytes.len() as u64;
        let end = (offset + len as u64).min(data.len());
        if offset < have.start || end > have.end {
            self.bytes = data.read_at(offset, len.max(READ_AHEAD))?;
            self.offset = offset;
        }
        let from = (offset - self.offset) as usize;
        let to = (end.max(offset) - self.offset) as usize;
        Ok(&self.bytes[from..to])
    }
}

enum Reply {
    Ack(u16),
    Error,
}

/// Send `packet` and wait for an ACK (or ERROR), retransmitting on timeout.
async fn exchange(
    socket: &UdpSocket,
    packet: &[u8],
    timeout: Duration,
    buf: &mut [u8],
) -> std::io::Result<Reply> {
    for _ in 0..=MAX_RETRIES {
        socket.send(packet).await?;
        match tokio::time::timeout(timeout, socket.recv(buf)).await {
            Ok(Ok(n)) if n >= 4 => match u16::from_be_bytes([buf[0], buf[1]]) {
                ACK => return Ok(Reply::Ack(u16::from_be_bytes([buf[2], buf[3]]))),
                ERROR => return Ok(Reply::Error),
                _ => {}
            },
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(_elapsed) => {}
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "no answer from the client",
    ))
}

/// Send a window of blocks starting after block `base`; returns how many blocks are
/// acknowledged afterwards (all of the window, or up to the client's last ACK, RFC 7440), or
/// `None` when the client sent an ERROR.
async fn send_window(
    socket: &UdpSocket,
    window: &[([u8; 4], &[u8])],
    base: usize,
    (last_no, last): (u16, usize),
    timeout: Duration,
    buf: &mut [u8],
) -> std::io::Result<Option<usize>> {
    for _ in 0..=MAX_RETRIES {
        send_all(socket, window).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, socket.recv(buf)).await {
                Ok(Ok(n)) if n >= 4 => match u16::from_be_bytes([buf[0], buf[1]]) {
                    ACK => {
                        let no = u16::from_be_bytes([buf[2], buf[3]]);
                        if no == last_no {
                            return Ok(Some(last));
                        }
                        // A partial ACK inside the window: resend from there (RFC 7440 4).
                        let offset = usize::from(no.wrapping_sub((base % 65536) as u16));
                        if offset > 0 && offset < window.len() {
                            return Ok(Some(base + offset));
                        }
                    }
                    ERROR => return Ok(None),
                    _ => {}
                },
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_elapsed) => break, // retransmit the window
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "no acknowledgement from the client",
    ))
}

/// Send every packet of a window on the connected `socket`, as few `sendmmsg` calls as the
/// socket buffer allows: one system call for a window of eight instead of eight.
async fn send_all(socket: &UdpSocket, packets: &[([u8; 4], &[u8])]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut sent = 0;
    while sent < packets.len() {
        socket.writable().await?;
        let batch = socket.try_io(tokio::io::Interest::WRITABLE, || {
            send_batch(socket.as_raw_fd(), &packets[sent..]).map_err(std::io::Error::from)
        });
        match batch {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One `sendmmsg(2)` of `packets` (header, data) on the connected socket `fd`; how many went out.
fn send_batch(fd: std::os::fd::RawFd, packets: &[([u8; 4], &[u8])]) -> nix::Result<usize> {
    use nix::sys::socket::{ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, sendmmsg};
    let slices: Vec<[std::io::IoSlice<'_>; 2]> = packets
        .iter()
        .map(|(header, data)| [std::io::IoSlice::new(header), std::io::IoSlice::new(data)])
        .collect();
    // Connected: no address per message.
    let addresses: Vec<Option<SockaddrStorage>> = vec![None; packets.len()];
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(packets.len(), None);
    let none: [ControlMessage<'_>; 0] = [];
    let sent = sendmmsg(
        fd,
        &mut headers,
        &slices,
        &addresses,
        none,
        MsgFlags::empty(),
    )?;
    Ok(sent.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rrq(fields: &[&str]) -> Vec<u8> {
        let mut p = RRQ.to_be_bytes().to_vec();
        for f in fields {
            p.extend(f.as_bytes());
            p.push(0);
        }
        p
    }

    #[test]
    fn options_are_negotiated_within_their_ranges() {
        let r = parse_request(
            &rrq(&[
                "ipxe.efi",
                "octet",
                "tsize",
                "0",
                "blksize",
                "1468",
                "windowsize",
                "4",
                "timeout",
                "0",
            ]),
            65464,
        )
        .unwrap();
        assert_eq!(r.file, "ipxe.efi");
        assert_eq!(r.options.blksize, 1468);
        assert_eq!(r.options.windowsize, 4);
        assert_eq!(
            r.options.timeout,
            Duration::from_secs(1),
            "timeout 0 is out of range"
        );
        let names: Vec<&str> = r.options.ack.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["tsize", "blksize", "windowsize"]);
        let too_big = parse_request(&rrq(&["x", "octet", "blksize", "70000"]), 65464).unwrap();
        assert_eq!(too_big.options.blksize, 512);
        // The attacker's request: a timeout that would pin a socket for 25 minutes is left
        // out of the OACK, a window of 65535 blocks is answered with 64.
        let r = parse_request(
            &rrq(&["x", "octet", "timeout", "255", "windowsize", "65535"]),
            1468,
        )
        .unwrap();
        assert_eq!(r.options.timeout, Duration::from_secs(1));
        assert_eq!(r.options.windowsize, MAX_WINDOW);
        assert_eq!(
            r.options.ack,
            [("windowsize".to_string(), MAX_WINDOW.to_string())]
        );
    }

    #[test]
    fn blksize_is_capped_to_what_the_link_carries() {
        // A 9000-byte request on a 1500-MTU zone gets 1468 back in the OACK.
        let r = parse_request(&rrq(&["x", "octet", "blksize", "8972"]), 1468).unwrap();
        assert_eq!(r.options.blksize, 1468);
        assert_eq!(r.options.ack, [("blksize".to_string(), "1468".to_string())]);
        let r = parse_request(&rrq(&["x", "octet", "blksize", "1024"]), 1468).unwrap();
        assert_eq!(r.options.blksize, 1024);
        assert_eq!(max_blksize(1500), 1468);
        assert_eq!(max_blksize(9000), 8968);
    }

    #[test]
    fn writes_and_garbage_are_refused() {
        let mut wrq = rrq(&["x", "octet"]);
        wrq[1] = WRQ as u8;
        assert_eq!(parse_request(&wrq, 65464).unwrap_err().code, ERR_ACCESS);
        assert_eq!(
            parse_request(&[0, 1, b'x'], 65464).unwrap_err().code,
            ERR_ILLEGAL
        );
        assert_eq!(
            parse_request(&rrq(&["x", "mail"]), 65464).unwrap_err().code,
            ERR_ILLEGAL
        );
    }

    #[test]
    fn paths_that_leave_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("hello.txt"), "hi").unwrap();
        std::fs::write(dir.path().join("secret"), "no").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
        let files = Files::new(Some(root));
        let hello = files.open("hello.txt").unwrap();
        assert_eq!(hello.read_at(0, 512).unwrap(), b"hi");
        assert_eq!(hello.read_at(1, 512).unwrap(), b"i");
        assert!(hello.read_at(5, 512).unwrap().is_empty());
        assert_eq!(
            files.open("ipxe.efi").unwrap().read_at(0, 2).unwrap(),
            b"MZ"
        );
        for bad in [
            "../secret",
            "/etc/passwd",
            "a/../../secret",
            "link",
            "hello.txt\0",
        ] {
            let r = files.open(bad).unwrap_err();
            assert_eq!(r.code, ERR_ACCESS, "{bad}: {r:?}");
        }
        assert_eq!(files.open("missing").unwrap_err().code, ERR_NOT_FOUND);
    }
}
