//! seed: a bare-metal provisioning appliance in one binary.
//!
//! How a boot flows through these modules is in `docs/ARCHITECTURE.md`. In short: [`config`]
//! reads and validates the operator's YAML once; [`plan`] derives every node's addresses from its
//! BMC address; [`store`] keeps lifecycle state, leases and events in SQLite; [`lifecycle`] says
//! which state changes are allowed; [`cli`] is the command line over all of them.

pub mod cli;
pub mod config;
pub mod dhcp;
pub mod install;
pub mod leases;
pub mod lifecycle;
pub mod net;
pub mod plan;
pub mod provision;
pub mod ra;
pub mod store;
pub mod tftp;
