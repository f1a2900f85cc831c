//! seed: a bare-metal provisioning appliance in one binary.
//!
//! How a boot flows through these modules is in `docs/ARCHITECTURE.md`. In short: [`config`]
//! reads and validates the operator's YAML once; [`plan`] derives every node's addresses from its
//! BMC address; [`provision`] makes every decision the protocol servers ask for ([`dhcp`],
//! [`tftp`], and [`ra`] beside them), reading the [`leases`] table and the [`store`] (lifecycle
//! state, leases, events in SQLite; [`lifecycle`] says which state changes are allowed);
//! [`install`] turns a node into its autoinstall documents; [`cli`] is the command line over
//! all of them.

pub mod agent;
pub mod cache;
pub mod cli;
pub mod config;
pub mod deploy;
pub mod dhcp;
pub mod disk;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod install;
pub mod inventory;
pub mod lab;
pub mod leases;
pub mod lifecycle;
pub mod loglimit;
pub mod metrics;
pub mod mirror;
pub mod net;
pub mod plan;
pub mod power;
pub mod preflight;
pub mod provision;
pub mod ra;
pub mod redfish;
pub mod registry;
pub mod sd_notify;
pub mod statedir;
pub mod store;
pub mod tftp;
pub mod tree;

/// An error and its causes, `: `-joined.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}
