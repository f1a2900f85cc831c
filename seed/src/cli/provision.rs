//! `seed provision`: mark nodes for installation and network-boot them, through the same
//! decision as the API's `POST /api/v1/nodes/<name>/provision`.
//!
//! The work is [`crate::provision::start`]: preflight, mark (a new secret token and instance
//! id, the state `provisioning`: the node's next network boot installs it), one network boot
//! and a power cycle through its driver (`redfish`, or QMP for lab machines; `manual` nodes
//! are network-booted by hand). This module parses, follows and prints.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::follow::{self, Until, lines};
use super::global::Global;
use super::selection::Selection;
use crate::config::{Config, Firmware, PowerDriver};
use crate::provision::{How, Nodes, Provisioner, start};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    #[command(flatten)]
    which: Selection,
    /// Reinstall nodes that are installed, deployed or failed (new token and instance id).
    #[arg(long)]
    force: bool,
    /// Only mark the nodes; leave their power alone (they are network-booted another way).
    /// Implies --no-wait.
    #[arg(long)]
    no_power: bool,
    /// Skip the preflight checks (Secure Boot, boot targets, MACs, …) that otherwise refuse
    /// a node whose BMC reports a problem.
    #[arg(long)]
    no_preflight: bool,
    /// Return once the nodes are started instead of following them until installed.
    #[arg(long)]
    no_wait: bool,
    /// How many nodes install at once (a rack pulls its images through one management link).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    parallel: u16,
    /// Seconds one node may take from its start until installed; then it is failed.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
}

pub fn run(global: &Global, args: ProvisionArgs) -> anyhow::Result<ExitCode> {
    let config = Arc::new(global.load_config()?);
    let names = args.which.names(&config)?;
    let state_dir = global.state_dir(Some(&config));
    let nodes = open_nodes(&config, &state_dir)?;
    let how = How {
        source: "cli",
        force: args.force,
        power: !args.no_power,
        preflight: !args.no_preflight,
    };
    if !(args.no_wait || args.no_power) {
        let never = AtomicBool::new(false);
        let plan = follow::Follow {
            nodes: names
                .iter()
                .map(|n| {
                    let label = config.node(n).map_or(String::new(), |node| {
                        format!(
                            "{}, {}",
                            firmware_name(node.firmware),
                            driver_name(node.bmc.driver)
                        )
                    });
                    (n.clone(), label)
                })
                .collect(),
            how,
            until: Until::Installed,
            parallel: usize::from(args.parallel),
            timeout: Duration::from_secs(args.timeout),
            interrupted: &never,
            on_done: &|_| {},
        };
        let ok = follow::run(&nodes, &state_dir, &plan)?;
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let mut failed = false;
    for name in &names {
        match start(&nodes, &state_dir, name, &how) {
            Ok(started) => lines(&started).iter().for_each(|l| println!("{l}")),
            Err(e) => {
                eprintln!("{e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn firmware_name(f: Firmware) -> &'static str {
    match f {
        Firmware::Uefi => "uefi",
        Firmware::Bios => "bios",
    }
}

fn driver_name(d: PowerDriver) -> &'static str {
    match d {
        PowerDriver::Redfish => "redfish",
        PowerDriver::Qemu => "qemu",
        PowerDriver::Manual => "manual",
    }
}

/// The decisions over the store of `state_dir`.
pub(crate) fn open_nodes(config: &Arc<Config>, state_dir: &Path) -> anyhow::Result<Nodes> {
    let store = Store::open(state_dir)
        .with_context(|| format!("cannot open state in {}", state_dir.display()))?;
    Ok(Nodes::new(
        Arc::new(Provisioner::new(Arc::clone(config))),
        store,
        images::Catalogue::new(state_dir.join("images")),
    ))
}
