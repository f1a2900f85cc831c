//! `seed provision`: mark nodes for installation, through the same decision as the API's
//! `POST /api/v1/nodes/<name>/provision`.
//!
//! Marking is the part every power driver shares: the node gets a new secret token and
//! instance id and the state `provisioning`, and its next network boot installs it. Power
//! control over Redfish and QEMU comes with the Redfish and lab work; until then the node is
//! network-booted by hand (or by its BMC's own tools).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;

use super::Global;
use crate::config::PowerDriver;
use crate::provision::{Nodes, Provisioner};
use crate::store::Store;

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// Nodes to install.
    #[arg(required_unless_present = "all")]
    nodes: Vec<String>,
    /// Every node of the config.
    #[arg(long, conflicts_with = "nodes")]
    all: bool,
    /// Reinstall nodes that are installed, deployed or failed (new token and instance id).
    #[arg(long)]
    force: bool,
}

pub fn run(global: &Global, args: ProvisionArgs) -> anyhow::Result<ExitCode> {
    let config = Arc::new(global.load_config()?);
    let names: Vec<String> = if args.all {
        config.nodes.iter().map(|n| n.name.clone()).collect()
    } else {
        args.nodes.clone()
    };
    for name in &names {
        if config.node(name).is_none() {
            bail!("no node named {name} in {}", config.source.display());
        }
    }
    let state_dir = global.state_dir(Some(&config));
    let store = Store::open(&state_dir)
        .with_context(|| format!("cannot open state in {}", state_dir.display()))?;
    let nodes = Nodes::new(
        Arc::new(Provisioner::new(Arc::clone(&config))),
        store,
        images::Catalogue::new(state_dir.join("images")),
    );
    let mut failed = false;
    for name in &names {
        match nodes.provision(name, "cli", args.force) {
            Ok(p) if p.started => {
                let driver = config.node(name).map(|n| n.bmc.driver);
                let power = match driver {
                    Some(PowerDriver::Manual) | None => "network-boot it now (manual power driver)",
                    Some(_) => "network-boot it now: seed does not drive its power yet",
                };
                println!("{name}: provisioning (instance {}); {power}", p.instance_id);
            }
            Ok(p) => println!(
                "{name}: already {} (instance {}); not started again",
                p.state, p.instance_id
            ),
            Err(e) => {
                eprintln!("{name}: {e}");
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
