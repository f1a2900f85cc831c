//! The service manager's notification protocol (sd_notify(3)), for `seed serve` as a systemd
//! `Type=notify` service: `READY=1` once every socket is bound and every server runs (so
//! `systemctl start seed` returns when seed answers, and units ordered after it start then),
//! `RELOADING=1` … `READY=1` around a SIGHUP reload, `STOPPING=1` at shutdown, `STATUS=` lines
//! for `systemctl status`, and `WATCHDOG=1` at half the `WatchdogSec=` the manager asked for.
//!
//! The protocol is one datagram per message on the `AF_UNIX` socket named by `NOTIFY_SOCKET`
//! (a path, or `@name` in the abstract namespace). Without that variable (a terminal, the lab,
//! a container without systemd) every call is a no-op. Pure std: no libsystemd, so the binary
//! stays static.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to the service manager, when seed runs under one.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    target: SocketAddr,
}

impl Notifier {
    /// The manager named by `NOTIFY_SOCKET`, or `None` when seed is not run as a notify service
    /// (or the variable names nothing usable, which is logged once).
    pub fn from_env() -> Option<Self> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        let name = name.to_string_lossy();
        let target = if let Some(abstract_name) = name.strip_prefix('@') {
            SocketAddr::from_abstract_name(abstract_name.as_bytes())
        } else if name.starts_with('/') {
            SocketAddr::from_pathname(name.as_ref())
        } else {
            tracing::warn!(
                "NOTIFY_SOCKET is neither a path nor @abstract; not notifying the service manager"
            );
            return None;
        };
        let made = target.and_then(|target| Ok((UnixDatagram::unbound()?, target)));
        match made {
            Ok((socket, target)) => Some(Self { socket, target }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the service manager's NOTIFY_SOCKET");
                None
            }
        }
    }

    /// Sends one message (`KEY=value` lines). A manager that went away is logged, not fatal.
    pub fn send(&self, message: &str) {
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.target) {
            tracing::warn!(error = %e, "cannot notify the service manager");
        }
    }
}

/// Sends `message` when there is a manager to send it to.
pub fn notify(notifier: Option<&Notifier>, message: &str) {
    if let Some(n) = notifier {
        n.send(message);
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC` (sd_watchdog_enabled(3)'s advice),
/// when the manager set it for this process (`WATCHDOG_PID`, when set, must be ours).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_arrive_as_datagrams_on_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier {
            socket: UnixDatagram::unbound().unwrap(),
            target: SocketAddr::from_pathname(&path).unwrap(),
        };
        notifier.send("READY=1\nSTATUS=serving");
        let mut buf = [0u8; 64];
        let n = manager.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving");
        // No manager: nothing to do, no panic.
        notify(None, "READY=1");
    }
}
