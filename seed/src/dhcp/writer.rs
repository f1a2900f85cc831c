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
use crate::store::{Discovered, Lease, Store, StoreError};

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
    /// Answered once everything queued before it is done (tests wait on it).
    #[cfg(test)]
    Barrier(mpsc::Sender<()>),
}

/// The durable side of the lease table: the four calls DHCP makes to storage. [`Store`] is the
/// real one; the in-process tests put one here that fails a commit.
pub trait LeaseStore: Send + 'static {
    /// Every lease on record, to load the table at start.
    fn leases(&self) -> Result<Vec<Lease>, StoreError>;
    /// Make `leases` durable, all or none.
    fn commit_leases(&mut self, leases: &[Lease]) -> Result<(), StoreError>;
    /// Forget the lease of `mac`.
    fn release_lease(&mut self, mac: MacAddr) -> Result<(), StoreError>;
    /// Remember machines that are not in the config.
    fn record_discovered(&mut self, seen: &[Discovered]) -> Result<(), StoreError>;
}

impl LeaseStore for Store {
    fn leases(&self) -> Result<Vec<Lease>, StoreError> {
        Store::leases(self)
    }
    fn commit_leases(&mut self, leases: &[Lease]) -> Result<(), StoreError> {
        Store::commit_leases(self, leases)
    }
    fn release_lease(&mut self, mac: MacAddr) -> Result<(), StoreError> {
        Store::release_lease(self, mac).map(drop)
    }
    fn record_discovered(&mut self, seen: &[Discovered]) -> Result<(), StoreError> {
        Store::record_discovered(self, seen)
    }
}

/// Where an ACK goes once its lease is committed: the server's socket, or a test's channel.
pub trait AckSink: Send + 'static {
    /// Send `reply` to `dest`; a failure is logged, never retried for long (the client retries).
    fn send_ack(&self, reply: &[u8], dest: SocketAddr);
}

impl AckSink for UdpSocket {
    fn send_ack(&self, reply: &[u8], dest: SocketAddr) {
        send(self, reply, dest);
    }
}

/// Handle to the writer thread.
pub struct LeaseWriter {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl LeaseWriter {
    /// Start the thread; `acks` sends the ACKs.
    ///
    /// In `seed serve` `acks` is a `try_clone` of the server's socket and shares its file
    /// description, so it stays non-blocking (making it blocking would block the async server
    /// too).
    pub fn start(store: impl LeaseStore, acks: impl AckSink) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("dhcp-leases".into())
            .spawn(move || run(store, acks, rx))?;
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

    /// Wait until everything queued so far is committed (or failed) and its ACKs sent.
    #[cfg(test)]
    pub fn flush(&self) {
        let (tx, rx) = mpsc::channel();
        self.send(Job::Barrier(tx));
        let _ = rx.recv();
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

fn run(mut store: impl LeaseStore, acks: impl AckSink, jobs: mpsc::Receiver<Job>) {
    let mut leases = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    let mut seen = Vec::new();
    #[cfg(test)]
    let mut barriers: Vec<mpsc::Sender<()>> = Vec::new();
    while let Ok(first) = jobs.recv() {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Grant { lease, reply, dest } => {
                    leases.push(lease);
                    replies.push((reply, dest));
                }
                Job::Seen(machine) => seen.push(machine),
                #[cfg(test)]
                Job::Barrier(done) => barriers.push(done),
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
        if !leases.is_empty() {
            commit(&mut store, &acks, &mut leases, &mut replies);
        }
        #[cfg(test)]
        for done in barriers.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Commit a batch, then send its ACKs; none if the commit fails.
fn commit(
    store: &mut impl LeaseStore,
    acks: &impl AckSink,
    leases: &mut Vec<Lease>,
    replies: &mut Vec<(Vec<u8>, SocketAddr)>,
) {
    match store.commit_leases(leases) {
        Ok(()) => {
            for (reply, dest) in replies.drain(..) {
                acks.send_ack(&reply, dest);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, leases = leases.len(), "cannot commit leases; their ACKs are not sent");
            replies.clear();
        }
    }
    leases.clear();
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
