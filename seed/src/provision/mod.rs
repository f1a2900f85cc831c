//! The decisions. Protocol code (DHCP, HTTP) describes what a client asked for and this module
//! says what it gets, from the config, the address plan, the lease table and where a node was
//! seen booting ([`sightings`]).
//! It holds no sockets and sends nothing (pixiecore's `Booter`, matchbox's core).

pub mod catalogue;
mod decisions;
mod enlist;
pub mod inventory;
mod nodes;
pub mod sightings;
pub mod start;
pub mod supervise;

pub use decisions::{
    Boot, BootClient, BootScript, Decisions, DhcpAnswer, DhcpRequest, IpxeClient, Offer,
    Provisioner, Unanswered,
};
pub use nodes::{
    AWAITING_DISK_BOOT, Callback, Document, InstallerEvent, LOCAL_BOOT, NodeError, Nodes, Standing,
    boots_disk_through_bmc, note_in,
};
pub use start::{How, StartError, Started, start};
