//! The lease writer: commits granted leases in batches, then sends their ACKs.
//!
//! A thread of its own (rusqlite is synchronous), fed by a channel. It takes whatever has queued
//! up while the previous commit ran, commits it in one transaction (one fsync with
//! `synchronous=FULL`), and only then sends the ACKs. If the commit fails, no ACK is sent:
//! the clients retry, and nothing was promised that the disk does not hold.

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::net::MacAddr;
use crate::store::{Discovered, Lease, Store};

/// The most leases in one transaction.
const MAX_BATCH: usize = 512;

enum Job {
    Grant {
        lease: Lease,
        reply: Vec<u8>,
        dest: SocketAddr,
    },
    Release(MacAddr),
    Seen(Discovered),
}

/// Handle to the writer thread.
pub struct LeaseWriter {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl LeaseWriter {
    /// Start the thread; `socket` sends the ACKs.
    ///
    /// `socket` is a `try_clone` of the server's socket and shares its file description, so it
    /// stays non-blocking (making it blocking would block the async server too).
    pub fn start(store: Store, socket: UdpSocket) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("dhcp-leases".into())
            .spawn(move || run(store, socket, rx))?;
        Ok(Self {
            jobs: Some(tx),
            thread: Some(thread),
        })
    }

    /// Commit `lease`, then send `reply` to `dest`.
    pub fn commit_then_send(&self, lease: Lease, reply: Vec<u8>, dest: SocketAddr) {
        self.send(Job::Grant { lease, reply, dest });
    }

    /// Record a machine that is not in the config.
    pub fn seen(&self, machine: Discovered) {
        self.send(Job::Seen(machine));
    }

    /// Forget `mac`'s lease on disk.
    pub fn release(&self, mac: MacAddr) {
        self.send(Job::Release(mac));
    }

    fn send(&self, job: Job) {
        if let Some(jobs) = &self.jobs
            && jobs.send(job).is_err()
        {
            tracing::error!("the DHCP lease writer has stopped; lease not recorded, no ACK sent");
        }
    }

    /// Finish what is queued and stop.
    pub fn stop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the DHCP lease writer panicked");
        }
    }
}

impl Drop for LeaseWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(mut store: Store, socket: UdpSocket, jobs: mpsc::Receiver<Job>) {
    let mut leases = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    let mut seen = Vec::new();
    while let Ok(first) = jobs.recv() {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Grant { lease, reply, dest } => {
                    leases.push(lease);
                    replies.push((reply, dest));
                }
                Job::Seen(machine) => seen.push(machine),
                Job::Release(mac) => {
                    if let Err(e) = store.release_lease(mac) {
                        tracing::error!(%mac, error = %e, "cannot record lease release");
                    }
                }
            }
            if leases.len() < MAX_BATCH {
                next = jobs.try_recv().ok();
            }
        }
        if !seen.is_empty() {
            if let Err(e) = store.record_discovered(&seen) {
                tracing::warn!(error = %e, "cannot record discovered machines");
            }
            seen.clear();
        }
        if leases.is_empty() {
            continue;
        }
        match store.commit_leases(&leases) {
            Ok(()) => {
                for (reply, dest) in replies.drain(..) {
                    send(&socket, &reply, dest);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, leases = leases.len(), "cannot commit leases; their ACKs are not sent");
                replies.clear();
            }
        }
        leases.clear();
    }
}

/// Send on the non-blocking socket; a full send buffer is retried for a little while (bounded:
/// a lost ACK is retried by the client, a stuck writer would stall every client).
fn send(socket: &UdpSocket, reply: &[u8], dest: SocketAddr) {
    for _ in 0..100 {
        match socket.send_to(reply, dest) {
            Ok(_) => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => {
                tracing::warn!(%dest, error = %e, "cannot send DHCP ACK");
                return;
            }
        }
    }
    tracing::warn!(%dest, "DHCP ACK dropped: send buffer full for 100 ms");
}
